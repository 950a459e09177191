/**
 * LyCORIS's bypass mode as kohya's train_network.py records it (`ss_network_module: "lycoris.kohya"`,
 * `ss_network_args` with `"bypass_mode": "True"`): every module was trained in its bypass forward
 * (lycoris/modules/*.py). LoKr's bypass_forward_diff scales kron(W₁, W₂)·x by the multiplier alone, so
 * the α/r its merge applies was never applied in training; GLoRA's _bypass_forward applies α/r twice;
 * LoCon and LoHa apply α/r once, as their merge does. Merged on the CPU (JavaScript and WebAssembly)
 * and WebGPU against float64 truth written from those forwards; the modules whose bypass forward no
 * merge can reproduce (OFT rotating the bias too, DoRA left out, DyLoRA unscaled, output-side (IA)³)
 * refused through the CLI.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mm } from './helpers/dense-f64.js';
import { expectMerged } from './helpers/expect-merged.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';

const backends = mergeBackends({ cpu: 'both' });
const temp = tempDirs();
afterAll(temp.removeAll);

interface T { shape: number[]; dtype: FixtureDType; v: Float64Array }
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const rand = seededRandom(4242);
const rnd = (shape: number[], dtype: FixtureDType, scale = 1): T =>
  ({ shape, dtype, v: randomValues(numel(shape), rand, scale).map((x) => roundForDType(x, dtype)) });
const fx = (name: string, t: T): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: t.v });
const scalar = (name: string, value: number, dtype: FixtureDType = 'F32'): FixtureTensor => ({ name, dtype, shape: [], data: [roundForDType(value, dtype)] });
const addScaled = (w: Float64Array, d: Float64Array, s: number) => w.map((x, i) => x + s * d[i]);

/** kron(W1 (a × c), W2 (b × d)): W[o1·b + o2, i1·d + i2] = W1[o1, i1]·W2[o2, i2]. */
function kron(w1: Float64Array, a: number, c: number, w2: Float64Array, b: number, d: number): Float64Array {
  const out = new Float64Array(a * b * c * d);
  for (let o1 = 0; o1 < a; o1++) for (let o2 = 0; o2 < b; o2++) for (let i1 = 0; i1 < c; i1++) for (let i2 = 0; i2 < d; i2++) {
    out[(o1 * b + o2) * (c * d) + i1 * d + i2] = w1[o1 * c + i1] * w2[o2 * d + i2];
  }
  return out;
}

const KEYS = {
  toK: 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight',
  toV: 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v.weight',
  projIn: 'down_blocks.0.attentions.0.proj_in.weight',
  timeEmb: 'down_blocks.0.resnets.0.time_emb_proj.weight',
  projOut: 'down_blocks.0.attentions.0.proj_out.weight',
};
const kohya = (key: string) => `lora_unet_${key.replace(/\.weight$/, '').replace(/\./g, '_')}`;
const base: Record<string, T> = {
  [KEYS.toK]: rnd([40, 60], 'F32'),
  [KEYS.toV]: rnd([24, 36], 'BF16'),
  [KEYS.projIn]: rnd([96, 40], 'F16'),
  [KEYS.timeEmb]: rnd([16, 20], 'BF16'),
  [KEYS.projOut]: rnd([24, 24], 'F32'),
  [KEYS.projOut.replace(/weight$/, 'bias')]: rnd([24], 'F32'),
};
const baseFile = () => ({ 'diffusion_pytorch_model.safetensors': buildSafetensors(Object.entries(base).map(([k, t]) => fx(k, t))) });

/** What train_network.py writes for a LyCORIS run (`--network_args algo=lokr bypass_mode=True …`). */
function lycorisMetadata(args: Record<string, string>, module = 'lycoris.kohya'): Record<string, string> {
  return {
    ss_network_module: module, ss_network_dim: '4', ss_network_alpha: '2.0',
    ss_network_args: JSON.stringify({ algo: 'lokr', preset: 'full', ...args }), ss_base_model_version: 'sd_v1',
  };
}

type Truth = (w: Float64Array, s: number) => Float64Array;

/**
 * One module of each kind, and its truth in training's forward: `bypass` for bypass_mode on, else the
 * merge LyCORIS's get_diff_weight / make_weight applies. `.alpha` as each module's __init__ stores it.
 */
function modules(bypass: boolean): { tensors: FixtureTensor[]; truth: Record<string, Truth> } {
  const tensors: FixtureTensor[] = [];
  const truth: Record<string, Truth> = {};
  {
    // to_k (40 × 60) = kron(W₁ (4, 6), W₂ (10, 1)·(1, 10)): merge α/r = 2/1, bypass 1.
    const r = 1, alpha = 2, n = kohya(KEYS.toK);
    const w1 = rnd([4, 6], 'F32'), w2a = rnd([10, r], 'F32'), w2b = rnd([r, 10], 'F32');
    tensors.push(fx(`${n}.lokr_w1`, w1), fx(`${n}.lokr_w2_a`, w2a), fx(`${n}.lokr_w2_b`, w2b), scalar(`${n}.alpha`, alpha));
    truth[KEYS.toK] = (w, s) => addScaled(w, kron(w1.v, 4, 6, mm(w2a.v, w2b.v, 10, r, 10), 10, 10), s * (bypass ? 1 : alpha / r));
  }
  {
    // to_v (24 × 36) = kron((4, 2)·(2, 6), (6, 2)·(2, 6)) (decompose_both): merge α/r with r from w1_b, bypass 1.
    const r = 2, alpha = 3, n = kohya(KEYS.toV);
    const w1a = rnd([4, r], 'BF16'), w1b = rnd([r, 6], 'BF16'), w2a = rnd([6, r], 'BF16'), w2b = rnd([r, 6], 'BF16');
    tensors.push(fx(`${n}.lokr_w1_a`, w1a), fx(`${n}.lokr_w1_b`, w1b), fx(`${n}.lokr_w2_a`, w2a), fx(`${n}.lokr_w2_b`, w2b), scalar(`${n}.alpha`, alpha, 'BF16'));
    truth[KEYS.toV] = (w, s) => addScaled(w, kron(mm(w1a.v, w1b.v, 4, r, 6), 4, 6, mm(w2a.v, w2b.v, 6, r, 6), 6, 6), s * (bypass ? 1 : alpha / r));
  }
  {
    // LoCon on proj_in: α/r in both forwards (bypass_forward_diff scales lora_up(lora_down(x)) by α/r).
    const r = 4, alpha = 8, n = kohya(KEYS.projIn);
    const down = rnd([r, 40], 'F16'), up = rnd([96, r], 'F16');
    tensors.push(fx(`${n}.lora_down.weight`, down), fx(`${n}.lora_up.weight`, up), scalar(`${n}.alpha`, alpha, 'F16'));
    truth[KEYS.projIn] = (w, s) => addScaled(w, mm(up.v, down.v, 96, r, 40), s * alpha / r);
  }
  {
    // LoHa on time_emb_proj: α/r in both (get_weight holds the scale either way).
    const r = 2, alpha = 3, n = kohya(KEYS.timeEmb);
    const d1 = rnd([r, 20], 'BF16'), u1 = rnd([16, r], 'BF16'), d2 = rnd([r, 20], 'BF16'), u2 = rnd([16, r], 'BF16');
    tensors.push(fx(`${n}.hada_w1_a`, u1), fx(`${n}.hada_w1_b`, d1), fx(`${n}.hada_w2_a`, u2), fx(`${n}.hada_w2_b`, d2), scalar(`${n}.alpha`, alpha, 'BF16'));
    const p1 = mm(u1.v, d1.v, 16, r, 20), p2 = mm(u2.v, d2.v, 16, r, 20);
    truth[KEYS.timeEmb] = (w, s) => addScaled(w, p1.map((x, i) => x * p2[i]), s * alpha / r);
  }
  {
    // GLoRA on proj_out: (W·a1·a2 + b1·b2)·α/r merged; bypass applies α/r to a2·x and b2·x and again
    // to a1's and b1's outputs, W(x + a1·a2·x·(α/r)²·s) + b1·b2·x·(α/r)²·s.
    const r = 3, alpha = 1.5, n = kohya(KEYS.projOut), d = 24;
    const a1 = rnd([d, r], 'F32', 0.3), a2 = rnd([r, d], 'F32', 0.3), b1 = rnd([d, r], 'F32'), b2 = rnd([r, d], 'F32');
    tensors.push(fx(`${n}.a1.weight`, a1), fx(`${n}.a2.weight`, a2), fx(`${n}.b1.weight`, b1), fx(`${n}.b2.weight`, b2), scalar(`${n}.alpha`, alpha));
    const scale = bypass ? (alpha / r) ** 2 : alpha / r;
    truth[KEYS.projOut] = (w, s) => addScaled(w, addScaled(mm(mm(w, a1.v, d, d, r), a2.v, d, r, d), mm(b1.v, b2.v, d, r, d), 1), s * scale);
  }
  return { tensors, truth };
}

async function mergeOne(name: string, tensors: FixtureTensor[], metadata: Record<string, string>, s: number) {
  const { tensors: merged } = await mergeInMemory({
    backend: backends[name]!, base: baseFile(), adapters: [{ name: 'lycoris', files: { 'lycoris.safetensors': buildSafetensors(tensors, metadata) }, weight: s }],
  });
  return merged;
}

function expectAll(merged: Awaited<ReturnType<typeof mergeOne>>, truth: Record<string, Truth>, s: number) {
  for (const [key, t] of Object.entries(truth)) expectMerged(merged.get(key)!.values, t(base[key].v, s), base[key].dtype, key);
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it('bypass_mode "True": LoKr unscaled, GLoRA at (α/r)², LoCon and LoHa at α/r', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    const { tensors, truth } = modules(true);
    const merged = await mergeOne(name, tensors, lycorisMetadata({ bypass_mode: 'True' }), 0.75);
    expectAll(merged, truth, 0.75);
  });

  it('bypass_mode "False", or none: every module at the scale its merge applies', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    for (const args of [{ bypass_mode: 'False' }, {}] as Record<string, string>[]) {
      const { tensors, truth } = modules(false);
      const merged = await mergeOne(name, tensors, lycorisMetadata(args), -0.5);
      expectAll(merged, truth, -0.5);
    }
  });
});

describe('bypass_mode read as LyCORIS reads it', () => {
  it('"true" and "1" are on (its str_bool is on for anything but "false"), and rs_lora does not matter under it', async () => {
    for (const args of [{ bypass_mode: 'true' }, { bypass_mode: '1', rs_lora: 'True' }] as Record<string, string>[]) {
      const { tensors, truth } = modules(true);
      const merged = await mergeOne('cpu (wasm)', tensors, lycorisMetadata(args), 1);
      expectMerged(merged.get(KEYS.toK)!.values, truth[KEYS.toK](base[KEYS.toK].v, 1), 'F32', KEYS.toK);
    }
  });

  it('a file of another network module is not read: musubi-tuner\'s own networks.lokr has no bypass mode', async () => {
    const { tensors, truth } = modules(false);
    const lokr = tensors.filter((t) => t.name.startsWith(kohya(KEYS.toK)));
    const merged = await mergeOne('cpu (wasm)', lokr, lycorisMetadata({ bypass_mode: 'True' }, 'networks.lokr'), 1);
    expectMerged(merged.get(KEYS.toK)!.values, truth[KEYS.toK](base[KEYS.toK].v, 1), 'F32', KEYS.toK);
  });
});

describe('refused through the CLI: one line, nothing written', () => {
  const d = 24, n = kohya(KEYS.projOut);
  const oft = [fx(`${n}.oft_blocks`, rnd([6, 4, 4], 'F32', 0.1)), scalar(`${n}.alpha`, 0.5)];
  const loraDora = (() => {
    const m = kohya(KEYS.projIn);
    return [fx(`${m}.lora_down.weight`, rnd([4, 40], 'F16')), fx(`${m}.lora_up.weight`, rnd([96, 4], 'F16')), scalar(`${m}.alpha`, 4, 'F16'), fx(`${m}.dora_scale`, rnd([1, 40], 'F16'))];
  })();
  const lokrDora = (() => {
    const m = kohya(KEYS.toK);
    return [fx(`${m}.lokr_w1`, rnd([4, 6], 'F32')), fx(`${m}.lokr_w2`, rnd([10, 10], 'F32')), scalar(`${m}.alpha`, 4), fx(`${m}.dora_scale`, rnd([1, 60], 'F32'))];
  })();
  const ia3Out = [fx(`${n}.weight`, rnd([d], 'F32')), scalar(`${n}.on_input`, 0)];
  const locon = (() => {
    const m = kohya(KEYS.projIn);
    return [fx(`${m}.lora_down.weight`, rnd([4, 40], 'F16')), fx(`${m}.lora_up.weight`, rnd([96, 4], 'F16')), scalar(`${m}.alpha`, 4, 'F16')];
  })();
  const full = [fx(`${n}.diff`, rnd([d, d], 'F32'))];
  const glora = modules(true).tensors.filter((t) => t.name.startsWith(`${n}.`));
  const module = (key: string) => `lycoris\\.safetensors: module "${kohya(key)}" `;
  const cases: [string, FixtureTensor[], Record<string, string>, RegExp][] = [
    ['OFT, whose bypass forward rotates the bias too', oft, lycorisMetadata({ algo: 'diag-oft', bypass_mode: 'True' }),
      new RegExp(`${module(KEYS.projOut)}is OFT, trained with LyCORIS's bypass_mode \\(metadata "ss_network_args"\\), whose forward rotates the layer's whole output, bias included`)],
    ['LoCon with DoRA, which the bypass forward leaves out', loraDora, lycorisMetadata({ algo: 'locon', dora_wd: 'True', bypass_mode: 'True' }),
      new RegExp(`${module(KEYS.projIn)}is LoRA with DoRA \\(dora_scale\\), trained with LyCORIS's bypass_mode .*leaves DoRA's norm out`)],
    ['LoKr with DoRA', lokrDora, lycorisMetadata({ dora_wd: 'True', bypass_mode: 'True' }),
      new RegExp(`${module(KEYS.toK)}is LoKr with DoRA \\(dora_scale\\)`)],
    ['(IA)³ on the output side, whose bypass forward scales the bias too', ia3Out, lycorisMetadata({ algo: 'ia3', bypass_mode: 'True' }),
      new RegExp(`${module(KEYS.projOut)}is \\(IA\\)³ on the output side, trained with LyCORIS's bypass_mode .*bias included`)],
    ['DyLoRA, saved under LoCon\'s names, unscaled in its bypass forward', locon, lycorisMetadata({ algo: 'dylora', bypass_mode: 'True' }),
      new RegExp(`${module(KEYS.projIn)}is DyLoRA \\(algo "dylora"\\), trained with LyCORIS's bypass_mode .*neither α/r nor DyLoRA's rank scale`)],
    ['a full diff, which LyCORIS does not train in bypass mode', full, lycorisMetadata({ algo: 'full', bypass_mode: 'True' }),
      new RegExp(`${module(KEYS.projOut)}is full diff, trained with LyCORIS's bypass_mode \\(metadata "ss_network_args"\\), which LyCORIS does not train full diff in`)],
    ['GLoRA with use_scalar, whose scalar the bypass forward never applies but the saved a2 and b2 carry', glora, lycorisMetadata({ algo: 'glora', use_scalar: 'True', bypass_mode: 'True' }),
      new RegExp(`${module(KEYS.projOut)}is GLoRA trained with use_scalar and LyCORIS's bypass_mode .*the saved factors are not the ones trained`)],
    ['bypass_mode on with no ss_network_module', locon, { ss_network_args: JSON.stringify({ algo: 'locon', bypass_mode: 'True' }) },
      /lycoris\.safetensors: metadata "ss_network_args" has bypass_mode "True" but no "ss_network_module" says which trainer read it/],
    ['ss_network_args that is not JSON, in a LyCORIS file', locon, { ...lycorisMetadata({}), ss_network_args: '{"algo": "locon", "bypass_mode": True}' },
      /lycoris\.safetensors: metadata "ss_network_args" is not valid JSON .*it may hold rs_lora, bypass_mode or split_qkv/],
  ];

  it.each(cases)('%s', async (_what, tensors, metadata, message) => {
    await expectRefusedByCliAndLibrary(temp.make, backends['cpu (wasm)']!, baseFile(), { 'lycoris.safetensors': buildSafetensors(tensors, metadata) }, message);
  });

  it('the same files without bypass_mode merge (the refusals are bypass_mode\'s)', async () => {
    for (const tensors of [oft, loraDora, lokrDora, ia3Out, locon, glora]) {
      const merged = await mergeOne('cpu (wasm)', tensors, lycorisMetadata({ bypass_mode: 'False' }), 1);
      expect(merged.size).toBeGreaterThan(0);
    }
  });
});
