/**
 * LyCORIS's rs_lora as kohya's train_network.py records it (`ss_network_module: "lycoris.kohya"`,
 * `ss_network_args` with `"rs_lora": "True"`): LyCORIS scales every module by α/√r. LoCon, LoHa and
 * LoKr with a decomposed factor store α·√r in `.alpha`, so α/r read back is already right; GLoRA
 * stores α itself (scale α/√r from the metadata) and LoKr with both factors full stores r·√r
 * (scale √r). Merged through the library on the CPU (JavaScript and WebAssembly) and WebGPU against
 * float64 truth written from LyCORIS's modules; bad metadata refused through the CLI. Also diffusers'
 * lora_adapter_metadata whose use_dora or lora_bias contradicts the file's tensors, and, without it, the
 * LoraConfig diffusers infers per component from the names, where PEFT would refuse it or not load the file as trained.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mm } from './helpers/dense-f64.js';
import { expectMerged } from './helpers/expect-merged.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';

const backends = mergeBackends({ cpu: 'both' });
const temp = tempDirs();
afterAll(temp.removeAll);

interface T { shape: number[]; dtype: FixtureDType; v: Float64Array }
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const rand = seededRandom(77);
const rnd = (shape: number[], dtype: FixtureDType, scale = 1): T =>
  ({ shape, dtype, v: randomValues(numel(shape), rand, scale).map((x) => roundForDType(x, dtype)) });
const fx = (name: string, t: T): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: t.v });
const scalar = (name: string, value: number, dtype: FixtureDType = 'F32'): FixtureTensor => ({ name, dtype, shape: [], data: [roundForDType(value, dtype)] });
const addScaled = (w: Float64Array, d: Float64Array, s: number) => w.map((x, i) => x + s * d[i]);

/** kron(W1 (a × c), W2 (b × d·K)) laid out as W (a·b, c·d, K…): W[o1·b + o2, (i1·d + i2)·K + k] = W1[o1, i1]·W2[o2, i2·K + k]. */
function kron(w1: Float64Array, a: number, c: number, w2: Float64Array, b: number, dK: number): Float64Array {
  const out = new Float64Array(a * b * c * dK);
  for (let i = 0; i < out.length; i++) {
    const row = Math.floor(i / (c * dK)), col = i % (c * dK);
    out[i] = w1[Math.floor(row / b) * c + Math.floor(col / dK)] * w2[(row % b) * dK + (col % dK)];
  }
  return out;
}

const KEYS = {
  projOut: 'down_blocks.0.attentions.0.proj_out.weight',
  toQ: 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight',
  ff: 'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight',
  conv1: 'down_blocks.0.resnets.0.conv1.weight',
  projIn: 'down_blocks.0.attentions.0.proj_in.weight',
  timeEmb: 'down_blocks.0.resnets.0.time_emb_proj.weight',
  toK: 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight',
};
const kohya = (key: string) => `lora_unet_${key.replace(/\.weight$/, '').replace(/\./g, '_')}`;
const base: Record<string, T> = {
  [KEYS.projOut]: rnd([24, 24], 'BF16'),
  [KEYS.toQ]: rnd([20, 36], 'F32'),
  [KEYS.ff]: rnd([21, 35], 'F16'),
  [KEYS.conv1]: rnd([16, 8, 3, 3], 'F32'),
  [KEYS.projIn]: rnd([96, 40], 'F16'),
  [KEYS.timeEmb]: rnd([16, 20], 'BF16'),
  [KEYS.toK]: rnd([40, 60], 'F32'),
  [KEYS.toQ.replace(/weight$/, 'bias')]: rnd([20], 'F32'),
};
const baseFile = () => ({ 'diffusion_pytorch_model.safetensors': buildSafetensors(Object.entries(base).map(([k, t]) => fx(k, t))) });

/** What train_network.py writes for a LyCORIS run (network_dim 16, conv_dim 10). */
function lycorisMetadata(args: Record<string, string>, module = 'lycoris.kohya'): Record<string, string> {
  return {
    ss_network_module: module, ss_network_dim: '16', ss_network_alpha: '8.0',
    ss_network_args: JSON.stringify({ conv_dim: '10', conv_alpha: '4', ...args }), ss_base_model_version: 'sd_v1',
  };
}

// One file of each kind LyCORIS trains under rs_lora: the `.alpha` each module's __init__ stores, and
// the scale it applies (modules/glora.py, lokr.py, locon.py, loha.py).
function glora(key: string, r: number, alpha: number, dtype: FixtureDType, rsLora: boolean) {
  const [out, inF] = base[key].shape;
  const a1 = rnd([inF, r], 'F32', 0.3), a2 = rnd([r, inF], 'F32', 0.3), b1 = rnd([out, r], dtype), b2 = rnd([r, inF], dtype);
  const n = kohya(key);
  const tensors = [fx(`${n}.a1.weight`, a1), fx(`${n}.a2.weight`, a2), fx(`${n}.b1.weight`, b1), fx(`${n}.b2.weight`, b2), scalar(`${n}.alpha`, alpha, dtype)];
  // GLoRA registers α itself; its scale is α/√r under rs_lora.
  const scale = alpha / (rsLora ? Math.sqrt(r) : r);
  const delta = (w: Float64Array) => addScaled(mm(mm(w, a1.v, out, inF, r), a2.v, out, r, inF), mm(b1.v, b2.v, out, r, inF), 1);
  return { tensors, truth: (w: Float64Array, s: number) => addScaled(w, delta(w), s * scale) };
}

/** LoKr with both factors full: α is set to lora_dim, the scale is lora_dim/√lora_dim and `.alpha` holds lora_dim·√lora_dim. */
function lokrFull(key: string, a: number, c: number, w2Shape: number[], loraDim: number, alphaDType: FixtureDType, rsLora: boolean) {
  const out = base[key].shape[0];
  const b = w2Shape[0], dK = numel(w2Shape.slice(1));
  expect(a * b).toBe(out);
  const w1 = rnd([a, c], 'F32', 0.5), w2 = rnd(w2Shape, 'BF16', 0.5);
  const n = kohya(key);
  const stored = rsLora ? loraDim * Math.sqrt(loraDim) : loraDim;
  const tensors = [fx(`${n}.lokr_w1`, w1), fx(`${n}.lokr_w2`, w2), scalar(`${n}.alpha`, stored, alphaDType)];
  const scale = rsLora ? Math.sqrt(loraDim) : 1;
  return { tensors, truth: (w: Float64Array, s: number) => addScaled(w, kron(w1.v, a, c, w2.v, b, dK), s * scale) };
}

/** LoCon (up·down), LoHa ((u1·d1)⊙(u2·d2)) and LoKr with w2 decomposed: `.alpha` holds α·√r, the scale α/√r. */
function adjustedAlpha(rsLora: boolean) {
  const tensors: FixtureTensor[] = [];
  const truth: Record<string, (w: Float64Array, s: number) => Float64Array> = {};
  const stored = (alpha: number, r: number) => (rsLora ? alpha * Math.sqrt(r) : alpha);
  const factor = (alpha: number, r: number) => alpha / (rsLora ? Math.sqrt(r) : r);
  {
    const r = 4, alpha = 8, n = kohya(KEYS.projIn);
    const down = rnd([r, 40], 'F16'), up = rnd([96, r], 'F16');
    tensors.push(fx(`${n}.lora_down.weight`, down), fx(`${n}.lora_up.weight`, up), scalar(`${n}.alpha`, stored(alpha, r), 'F16'));
    truth[KEYS.projIn] = (w, s) => addScaled(w, mm(up.v, down.v, 96, r, 40), s * factor(alpha, r));
  }
  {
    const r = 2, alpha = 3, n = kohya(KEYS.timeEmb);
    const d1 = rnd([r, 20], 'BF16'), u1 = rnd([16, r], 'BF16'), d2 = rnd([r, 20], 'BF16'), u2 = rnd([16, r], 'BF16');
    tensors.push(fx(`${n}.hada_w1_a`, u1), fx(`${n}.hada_w1_b`, d1), fx(`${n}.hada_w2_a`, u2), fx(`${n}.hada_w2_b`, d2), scalar(`${n}.alpha`, stored(alpha, r), 'BF16'));
    const p1 = mm(u1.v, d1.v, 16, r, 20), p2 = mm(u2.v, d2.v, 16, r, 20);
    // α·√2 is not a bf16 number: the scale is the stored α over r.
    truth[KEYS.timeEmb] = (w, s) => addScaled(w, p1.map((x, i) => x * p2[i]), s * roundForDType(stored(alpha, r), 'BF16') / r);
  }
  {
    // to_k (40 × 60): w1 (4, 6) full, w2 = (10, r)·(r, 10), r = 1.
    const r = 1, alpha = 2, n = kohya(KEYS.toK);
    const w1 = rnd([4, 6], 'F32'), w2a = rnd([10, r], 'F32'), w2b = rnd([r, 10], 'F32');
    tensors.push(fx(`${n}.lokr_w1`, w1), fx(`${n}.lokr_w2_a`, w2a), fx(`${n}.lokr_w2_b`, w2b), scalar(`${n}.alpha`, stored(alpha, r)));
    truth[KEYS.toK] = (w, s) => addScaled(w, kron(w1.v, 4, 6, mm(w2a.v, w2b.v, 10, r, 10), 10, 10), s * factor(alpha, r));
  }
  return { tensors, truth };
}

async function mergeOne(name: string, tensors: FixtureTensor[], metadata: Record<string, string>, s: number) {
  const backend = backends[name]!;
  const { tensors: merged } = await mergeInMemory({
    backend, base: baseFile(), adapters: [{ name: 'lycoris', files: { 'lycoris.safetensors': buildSafetensors(tensors, metadata) }, weight: s }],
  });
  return merged;
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it('rs_lora "True": GLoRA at α/√r, LoKr with both factors full at √r, LoCon/LoHa/LoKr at the stored α over r', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    const s = 0.75;
    const g3 = glora(KEYS.projOut, 3, 1.5, 'BF16', true);
    const g1 = glora(KEYS.toQ, 1, 4, 'F32', true);
    // ff.net.2 (21 × 35) = kron((3, 5), (7, 7)), network_dim 16: `.alpha` 64 in bf16, scale 4.
    const k16 = lokrFull(KEYS.ff, 3, 5, [7, 7], 16, 'BF16', true);
    // conv1 (16, 8, 3, 3) = kron((4, 2), (4, 4, 3, 3)), conv_dim 10: `.alpha` 10·√10 in f16 (31.625), scale √10.
    const k10 = lokrFull(KEYS.conv1, 4, 2, [4, 4, 3, 3], 10, 'F16', true);
    const rest = adjustedAlpha(true);
    const merged = await mergeOne(name, [...g3.tensors, ...g1.tensors, ...k16.tensors, ...k10.tensors, ...rest.tensors], lycorisMetadata({ algo: 'lokr', rs_lora: 'True' }), s);
    const truths: Record<string, (w: Float64Array, s: number) => Float64Array> = {
      [KEYS.projOut]: g3.truth, [KEYS.toQ]: g1.truth, [KEYS.ff]: k16.truth, [KEYS.conv1]: k10.truth, ...rest.truth,
    };
    for (const [key, truth] of Object.entries(truths)) expectMerged(merged.get(key)!.values, truth(base[key].v, s), base[key].dtype, key);
  });

  it('rs_lora "False" (and no rs_lora): GLoRA at α/r, LoKr with both factors full at 1', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    for (const args of [{ algo: 'glora', rs_lora: 'False' }, { algo: 'glora' }] as Record<string, string>[]) {
      const g3 = glora(KEYS.projOut, 3, 1.5, 'F32', false);
      const k16 = lokrFull(KEYS.ff, 3, 5, [7, 7], 16, 'F32', false);
      const merged = await mergeOne(name, [...g3.tensors, ...k16.tensors], lycorisMetadata(args), -0.5);
      expectMerged(merged.get(KEYS.projOut)!.values, g3.truth(base[KEYS.projOut].v, -0.5), 'BF16', KEYS.projOut);
      expectMerged(merged.get(KEYS.ff)!.values, k16.truth(base[KEYS.ff].v, -0.5), 'F16', KEYS.ff);
    }
  });
});

describe('rs_lora read only where it decides a scale', () => {
  it('a LoKr with both factors full whose rank is not recorded: r from the stored α (r·√r) alone', async () => {
    // network_dim 16 recorded, but this conv was trained at 7 (a preset's dim): 7·√7 in f32.
    const k7 = lokrFull(KEYS.conv1, 4, 2, [4, 4, 3, 3], 7, 'F32', true);
    const merged = await mergeOne('cpu (wasm)', k7.tensors, lycorisMetadata({ algo: 'lokr', rs_lora: 'true', conv_dim: '16' }), 1);
    expectMerged(merged.get(KEYS.conv1)!.values, k7.truth(base[KEYS.conv1].v, 1), 'F32', KEYS.conv1);
  });

  it('a LoKr with both factors full at a large rank, α in bf16: r is the recorded conv_dim, which α·(1 ± bf16 rounding) fits', async () => {
    // 10000·√10000 = 10⁶ is stored as 999424 in bf16, whose nearest r^1.5 is at r = 9996 (scale 99.98, not 100).
    const k = lokrFull(KEYS.conv1, 4, 2, [4, 4, 3, 3], 10000, 'BF16', true);
    const merged = await mergeOne('cpu (wasm)', k.tensors, lycorisMetadata({ algo: 'lokr', rs_lora: 'True', conv_dim: '10000' }), 0.01);
    expectMerged(merged.get(KEYS.conv1)!.values, k.truth(base[KEYS.conv1].v, 0.01), 'F32', KEYS.conv1);
  });

  it('metadata that cannot be read does not matter to a LoHa file, but does to LoCon and decomposed LoKr (bypass_mode may be in it)', async () => {
    const rest = adjustedAlpha(false);
    const refusals = (tensors: FixtureTensor[]) => refusalsInMemory({
      backend: backends['cpu (wasm)']!, base: baseFile(),
      adapters: [{ files: { 'locon.safetensors': buildSafetensors(tensors, { ...lycorisMetadata({}), ss_network_args: '{"algo": "locon", "rs_lora": ' }) } }],
    });
    expect(await refusals(rest.tensors.filter((t) => t.name.startsWith(kohya(KEYS.timeEmb))))).toEqual([]);
    // Under bypass_mode LyCORIS's LoKr applies no α/r, and its DyLoRA (saved under LoCon's names) none either.
    for (const key of [KEYS.projIn, KEYS.toK]) {
      expect(await refusals(rest.tensors.filter((t) => t.name.startsWith(kohya(key)))), key)
        .toEqual([expect.stringMatching(/locon\.safetensors: metadata "ss_network_args" is not valid JSON .*it may hold rs_lora, bypass_mode or split_qkv/)]);
    }
  });
});

describe('refused through the CLI: one line, nothing written', () => {
  const g = glora(KEYS.projOut, 3, 1.5, 'F32', true);
  const k = lokrFull(KEYS.ff, 3, 5, [7, 7], 16, 'F32', true);
  const cases: [string, FixtureTensor[], Record<string, string>, RegExp][] = [
    ['ss_network_args that is not JSON, with a GLoRA module', g.tensors, { ...lycorisMetadata({}), ss_network_args: '{"algo": "glora", "rs_lora": True}' },
      /lycoris\.safetensors: metadata "ss_network_args" is not valid JSON .*rs_lora/],
    ['rs_lora neither "True" nor "False"', g.tensors, lycorisMetadata({ algo: 'glora', rs_lora: '1' }),
      /lycoris\.safetensors: metadata "ss_network_args" has rs_lora "1", neither "True" nor "False"/],
    ['rs_lora "True" with no ss_network_module', k.tensors, { ss_network_args: JSON.stringify({ algo: 'lokr', rs_lora: 'True' }) },
      /lycoris\.safetensors: metadata "ss_network_args" has rs_lora "True" but no "ss_network_module"/],
    ['LoKr with both factors full whose α is r·√r for no whole r', [...k.tensors.slice(0, 2), scalar(`${kohya(KEYS.ff)}.alpha`, 50)], lycorisMetadata({ algo: 'lokr', rs_lora: 'True' }),
      /lycoris\.safetensors: module "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_2" is LoKr with both factors full, trained with rs_lora .* alpha 50 is not r·√r/],
  ];
  /** The CLI's one line and nothing written, and the library's one message (the same refusal, from the sources). */
  async function expectRefused(adapter: Uint8Array, message: RegExp) {
    await expectRefusedByCliAndLibrary(temp.make, backends['cpu (wasm)']!, baseFile(), { 'lycoris.safetensors': adapter }, message);
  }

  it.each(cases)('%s', async (_what, tensors, metadata, message) => {
    await expectRefused(buildSafetensors(tensors, metadata), message);
  });

  // diffusers' Flux/SD trainers: PEFT's names under `unet.`, the LoraConfig in lora_adapter_metadata.
  const q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
  const peftModule = (magnitude: boolean, bias = false): FixtureTensor[] => [
    fx(`unet.${q}.lora_A.weight`, rnd([2, 36], 'BF16')), fx(`unet.${q}.lora_B.weight`, rnd([20, 2], 'BF16')),
    ...(magnitude ? [fx(`unet.${q}.lora_magnitude_vector`, rnd([20], 'BF16'))] : []),
    ...(bias ? [fx(`unet.${q}.lora_B.bias`, rnd([20], 'BF16'))] : []),
  ];
  const diffusersMetadata = (useDora: boolean, loraBias = false) => ({ lora_adapter_metadata: JSON.stringify({
    'unet.r': 2, 'unet.lora_alpha': 4, 'unet.use_dora': useDora, 'unet.lora_bias': loraBias, 'unet.use_rslora': false, 'unet.peft_type': 'LORA',
  }) });
  const doraCases: [string, boolean, boolean, RegExp][] = [
    ['use_dora false with lora_magnitude_vector tensors', false, true,
      /lycoris\.safetensors: metadata "lora_adapter_metadata" has use_dora false for "unet" but the file holds 1 lora_magnitude_vector tensor \(first "unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q\.lora_magnitude_vector"\): diffusers would load it without DoRA/],
    ['use_dora true with no lora_magnitude_vector', true, false,
      /lycoris\.safetensors: metadata "lora_adapter_metadata" has use_dora true for "unet" but none of its 1 LoRA module has a lora_magnitude_vector/],
  ];
  it.each(doraCases)('diffusers: %s', async (_what, useDora, magnitude, message) => {
    await expectRefused(buildSafetensors(peftModule(magnitude), diffusersMetadata(useDora)), message);
  });

  it('diffusers: use_dora true with a magnitude on one module and none on another', async () => {
    const k = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k';
    await expectRefused(buildSafetensors([...peftModule(true), fx(`unet.${k}.lora_A.weight`, rnd([2, 36], 'BF16')), fx(`unet.${k}.lora_B.weight`, rnd([20, 2], 'BF16'))], diffusersMetadata(true)),
      /lycoris\.safetensors: metadata "lora_adapter_metadata" has use_dora true for "unet" but 1 of its LoRA modules has no lora_magnitude_vector \(first "unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_k"\)/);
  });

  it('diffusers: lora_bias false with lora_B.bias tensors', async () => {
    await expectRefused(buildSafetensors(peftModule(false, true), diffusersMetadata(false, false)),
      /lycoris\.safetensors: metadata "lora_adapter_metadata" has lora_bias false for "unet" but the file holds 1 lora_B bias \(first "unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q\.lora_B\.bias"\)/);
  });

  // Without lora_adapter_metadata diffusers infers each component's LoraConfig from its tensor
  // names (get_peft_kwargs): use_dora if any is a lora_magnitude_vector, lora_bias if any a lora_B bias.
  const kQ = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k';
  const plainK = (bias = false): FixtureTensor[] => [
    fx(`unet.${kQ}.lora_A.weight`, rnd([2, 60], 'BF16')), fx(`unet.${kQ}.lora_B.weight`, rnd([40, 2], 'BF16')),
    ...(bias ? [fx(`unet.${kQ}.lora_B.bias`, rnd([40], 'BF16'))] : []),
  ];
  it('diffusers, no metadata: a magnitude on one module of "unet" and none on another', async () => {
    await expectRefused(buildSafetensors([...peftModule(true), ...plainK()]),
      /lycoris\.safetensors: without "lora_adapter_metadata" diffusers sets use_dora true for "unet" from the tensor names \(it holds lora_magnitude_vector "unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q\.lora_magnitude_vector"\) but 1 of its LoRA modules has no lora_magnitude_vector \(first "unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_k"\): diffusers would start those magnitudes from the base weights instead of the file$/);
  });

  it('diffusers, no metadata: magnitudes and lora_B biases in one component (a LoraConfig PEFT refuses)', async () => {
    const message = /lycoris\.safetensors: without "lora_adapter_metadata" diffusers sets both use_dora and lora_bias for "unet" from the tensor names \(lora_magnitude_vector "unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q\.lora_magnitude_vector", lora_B bias "unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q\.lora_B\.bias"\), a LoraConfig PEFT refuses \("lora_bias=True is not supported for DoRA"\)/;
    await expectRefused(buildSafetensors(peftModule(true, true)), message);
    // On two modules: the magnitude on to_q, the bias on to_k (which then has no magnitude either; the pair is what PEFT refuses).
    await expectRefused(buildSafetensors([...peftModule(true), ...plainK(true)]), /sets both use_dora and lora_bias for "unet" from the tensor names \(lora_magnitude_vector "unet\.[^"]+\.to_q\.lora_magnitude_vector", lora_B bias "unet\.[^"]+\.to_k\.lora_B\.bias"\)/);
  });

  it('diffusers, no metadata: what diffusers infers agrees with the file, per component, and merges', async () => {
    // DoRA on every unet module, biases alone, plain LoRA; and DoRA in "unet" beside a plain
    // text_encoder module, whose config diffusers infers from its own tensors.
    const te = 'text_model.encoder.layers.0.self_attn.q_proj';
    const textEncoder = [fx(`text_encoder.${te}.lora_A.weight`, rnd([2, 36], 'BF16')), fx(`text_encoder.${te}.lora_B.weight`, rnd([20, 2], 'BF16'))];
    for (const tensors of [peftModule(true), peftModule(false, true), [...peftModule(false, true), ...plainK()], peftModule(false), [...peftModule(true), ...textEncoder]]) {
      const files = { 'a.safetensors': buildSafetensors(tensors) };
      expect(await refusalsInMemory({ backend: backends['cpu (wasm)']!, base: baseFile(), adapters: [{ files }] })).toEqual([]);
    }
  });

  it('diffusers: use_dora and lora_bias agreeing with the file merge', async () => {
    for (const [dora, bias] of [[false, false], [true, false], [false, true]]) {
      const files = { 'a.safetensors': buildSafetensors(peftModule(dora, bias), diffusersMetadata(dora, bias)) };
      expect(await refusalsInMemory({ backend: backends['cpu (wasm)']!, base: baseFile(), adapters: [{ files }] })).toEqual([]);
    }
  });
});
