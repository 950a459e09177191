/**
 * Tensor layouts that LyCORIS's functional API (lycoris/functional/*.py) builds where its training
 * modules (lycoris/modules/*.py) save another: LoKr's `lokr_w2_b` kept (r, d, k…) rather than
 * flattened to (r, d·k…), LoHa's `hada_w*_b` kept (r, in, k…); also DyLoRA's conv layout (lora_up
 * 2-D beside a 4-D lora_down) and a square weight scaled by (IA)³ on either side. Each file is
 * merged and compared with float64 truth written here from LyCORIS's `diff_weight`/`make_kron`.
 * Layouts LyCORIS's modules never save or cannot apply (a 2-D LoCon on a 3×3 conv, BOFT with fewer
 * butterfly factors, a `scalar` tensor) are refused in one line.
 */
import { describe, expect, it } from 'vitest';
import { mm } from './helpers/dense-f64.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'both' });

interface T { shape: number[]; dtype: FixtureDType; v: Float64Array }
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const rnd = (rand: () => number, shape: number[], dtype: FixtureDType = 'F32', scale = 1): T =>
  ({ shape, dtype, v: randomValues(numel(shape), rand, scale).map((x) => roundForDType(x, dtype)) });
const fx = (name: string, t: T): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: t.v });
const scalar = (name: string, value: number, dtype: FixtureDType = 'F32'): FixtureTensor => ({ name, dtype, shape: [], data: [value] });

/**
 * LyCORIS make_kron: w1 (a, c) unsqueezed to (a, c, 1…), torch.kron with w2 (b, d, k…):
 * out[o1·b + o2, i1·d + i2, k…] = w1[o1, i1]·w2[o2, i2, k…], written index by index.
 */
function makeKron(w1: Float64Array, a: number, c: number, w2: Float64Array, b: number, d: number, K: number): Float64Array {
  const out = new Float64Array(a * b * c * d * K);
  for (let o1 = 0; o1 < a; o1++) for (let o2 = 0; o2 < b; o2++) for (let i1 = 0; i1 < c; i1++) for (let i2 = 0; i2 < d; i2++) for (let k = 0; k < K; k++) {
    const row = o1 * b + o2, col = i1 * d + i2;
    out[(row * c * d + col) * K + k] = w1[o1 * c + i1] * w2[(o2 * d + i2) * K + k];
  }
  return out;
}

function expectClose(got: Float64Array, want: Float64Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  for (let i = 0; i < want.length; i++) {
    if (Math.abs(got[i] - want[i]) > 2e-6 * scale) expect.fail(`${what}[${i}]: got ${got[i]}, truth ${want[i]}`);
  }
}

const CONV = 'down_blocks.0.resnets.0.conv1.weight';
const CONV_NAME = 'lora_unet_down_blocks_0_resnets_0_conv1';
const LINEAR = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight';
const LINEAR_NAME = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';

async function mergeOne(backendName: string, base: Record<string, T>, adapter: FixtureTensor[], weight: number) {
  const backend = backends[backendName]!;
  const { tensors } = await mergeInMemory({
    backend,
    base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(Object.entries(base).map(([k, t]) => fx(k, t))) },
    adapters: [{ name: 'lycoris', files: { 'lycoris.safetensors': buildSafetensors(adapter) }, weight }],
  });
  return tensors;
}

describe.each(['cpu (js)', 'cpu (wasm)'])('%s', (backendName) => {
  it.each([
    { what: 'Conv2d, lokr_w1 full', kernel: [3, 3], w1Rank: 0 },
    { what: 'Conv2d, lokr_w1_a·lokr_w1_b', kernel: [3, 3], w1Rank: 2 },
    { what: 'Conv1d, lokr_w1 full', kernel: [3], w1Rank: 0 },
  ])('LoKr with lokr_w2_b (r, d, k…) as functional/lokr.py builds it: $what', async ({ kernel, w1Rank }) => {
    if (!backends[backendName]) return;
    const rand = seededRandom(77 + kernel.length * 10 + w1Rank);
    // out 8 = a 2 · b 4, in 12 = c 3 · d 4 (factorization(8) = (2, 4), factorization(12) = (3, 4)).
    const a = 2, b = 4, c = 3, d = 4, r = 2, K = numel(kernel), alpha = 3;
    const baseW = rnd(rand, [a * b, c * d, ...kernel]);
    const t: FixtureTensor[] = [];
    let w1: Float64Array;
    if (w1Rank) {
      const w1a = rnd(rand, [a, w1Rank]), w1b = rnd(rand, [w1Rank, c]);
      t.push(fx(`${CONV_NAME}.lokr_w1_a`, w1a), fx(`${CONV_NAME}.lokr_w1_b`, w1b));
      w1 = mm(w1a.v, w1b.v, a, w1Rank, c);
    } else {
      const w1f = rnd(rand, [a, c]);
      t.push(fx(`${CONV_NAME}.lokr_w1`, w1f));
      w1 = w1f.v;
    }
    const w2a = rnd(rand, [b, r]), w2b = rnd(rand, [r, d, ...kernel], 'F32', 0.5);
    t.push(fx(`${CONV_NAME}.lokr_w2_a`, w2a), fx(`${CONV_NAME}.lokr_w2_b`, w2b), scalar(`${CONV_NAME}.alpha`, alpha));
    // diff_weight: w2 = w2a @ w2b.view(r, -1), viewed (b, d, k…); rank = w1a.shape[1] else w2a.shape[1].
    const w2 = mm(w2a.v, w2b.v, b, r, d * K);
    const rank = w1Rank || r;
    const delta = makeKron(w1, a, c, w2, b, d, K).map((x) => x * alpha / rank);
    const weight = 0.7;
    const got = await mergeOne(backendName, { [CONV]: baseW }, t, weight);
    expectClose(got.get(CONV)!.values, baseW.v.map((x, i) => x + weight * delta[i]), 'merged conv1');
  });

  it('LoHa with hada_w1_b and hada_w2_b (r, in, kh, kw), non-Tucker, as functional/loha.py reads them', async () => {
    if (!backends[backendName]) return;
    const rand = seededRandom(91);
    const out = 6, inF = 5, kernel = [3, 3], K = 9, r = 2, alpha = 1;
    const baseW = rnd(rand, [out, inF, ...kernel]);
    const w1a = rnd(rand, [out, r]), w1b = rnd(rand, [r, inF, ...kernel]);
    const w2a = rnd(rand, [out, r]), w2b = rnd(rand, [r, inF, ...kernel]);
    const t = [fx(`${CONV_NAME}.hada_w1_a`, w1a), fx(`${CONV_NAME}.hada_w1_b`, w1b), fx(`${CONV_NAME}.hada_w2_a`, w2a), fx(`${CONV_NAME}.hada_w2_b`, w2b), scalar(`${CONV_NAME}.alpha`, alpha)];
    // diff_weight: ((w1u @ w1d.reshape(R, -1)) * (w2u @ w2d.reshape(R, -1))) * γ, reshaped (O, I, k…).
    const x = mm(w1a.v, w1b.v, out, r, inF * K), y = mm(w2a.v, w2b.v, out, r, inF * K);
    const delta = x.map((v, i) => v * y[i] * alpha / r);
    const weight = -0.6;
    const got = await mergeOne(backendName, { [CONV]: baseW }, t, weight);
    expectClose(got.get(CONV)!.values, baseW.v.map((v, i) => v + weight * delta[i]), 'merged conv1');
  });

  it.each([0, 1])('(IA)³ on a square weight, on_input %i, scales the side LyCORIS scales', async (onInput) => {
    if (!backends[backendName]) return;
    const rand = seededRandom(5 + onInput);
    const n = 6;
    const baseW = rnd(rand, [n, n]);
    const w = rnd(rand, [n], 'F32', 0.5);
    const t = [fx(`${LINEAR_NAME}.weight`, w), scalar(`${LINEAR_NAME}.on_input`, onInput, 'I64' as FixtureDType)];
    const weight = 0.9;
    // make_weight: train_input: W * w (broadcast on the last, input, axis); else (Wᵀ * w)ᵀ, per output row.
    const want = baseW.v.map((x, i) => x * (1 + weight * w.v[onInput ? i % n : Math.floor(i / n)]));
    const got = await mergeOne(backendName, { [LINEAR]: baseW }, t, weight);
    expectClose(got.get(LINEAR)!.values, want, 'merged to_q');
  });

  it('LoCon with lora_mid (r, r, 3, 3) beside 2-D lora_down and lora_up, which functional/locon.py diff_weight reshapes', async () => {
    if (!backends[backendName]) return;
    const rand = seededRandom(14);
    const out = 8, inF = 4, K = 9, r = 2, alpha = 1;
    const baseW = rnd(rand, [out, inF, 3, 3]);
    const down = rnd(rand, [r, inF]), up = rnd(rand, [out, r]), mid = rnd(rand, [r, r, 3, 3]);
    const t = [fx(`${CONV_NAME}.lora_down.weight`, down), fx(`${CONV_NAME}.lora_up.weight`, up), fx(`${CONV_NAME}.lora_mid.weight`, mid), scalar(`${CONV_NAME}.alpha`, alpha)];
    // rebuild_tucker(m, uᵀ, d): Δ[p, q, k] = Σ_ij m[i, j, k] u[p, i] d[j, q]
    const delta = new Float64Array(out * inF * K);
    for (let p = 0; p < out; p++) for (let q = 0; q < inF; q++) for (let k = 0; k < K; k++) {
      let acc = 0;
      for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) acc += mid.v[(i * r + j) * K + k] * up.v[p * r + i] * down.v[j * inF + q];
      delta[(p * inF + q) * K + k] = acc * alpha / r;
    }
    const got = await mergeOne(backendName, { [CONV]: baseW }, t, 1);
    expectClose(got.get(CONV)!.values, baseW.v.map((v, i) => v + delta[i]), 'merged conv1');
  });

  it.each([0, 1])('(IA)³ on a square 3×3 conv, weight (1, C, 1, 1), on_input %i, scales the side LyCORIS scales at every kernel position', async (onInput) => {
    if (!backends[backendName]) return;
    const rand = seededRandom(21 + onInput);
    const n = 6, K = 9;
    const baseW = rnd(rand, [n, n, 3, 3]);
    const w = rnd(rand, [1, n, 1, 1], 'F32', 0.5);
    const t = [fx(`${CONV_NAME}.weight`, w), scalar(`${CONV_NAME}.on_input`, onInput, 'I64' as FixtureDType)];
    const weight = -0.4;
    // make_weight: train_input: W (out, in, kh, kw) * w (1, in, 1, 1); else (W.transpose(0, 1) * w).transpose(0, 1).
    const want = baseW.v.map((x, i) => {
      const o = Math.floor(i / (n * K)), c = Math.floor(i / K) % n;
      return x * (1 + weight * w.v[onInput ? c : o]);
    });
    const got = await mergeOne(backendName, { [CONV]: baseW }, t, weight);
    expectClose(got.get(CONV)!.values, want, 'merged conv1');
  });

  it('DyLoRA on a 3×3 conv: lora_down (r, in, 3, 3) with lora_up (out, r) 2-D, as modules/dylora.py saves them', async () => {
    if (!backends[backendName]) return;
    const rand = seededRandom(13);
    const out = 8, inF = 4, K = 9, r = 4, alpha = 2;
    const baseW = rnd(rand, [out, inF, 3, 3]);
    const down = rnd(rand, [r, inF, 3, 3]), up = rnd(rand, [out, r]);
    const t = [fx(`${CONV_NAME}.lora_down.weight`, down), fx(`${CONV_NAME}.lora_up.weight`, up), scalar(`${CONV_NAME}.alpha`, alpha)];
    // LoCon's loader takes them: up.view(out, -1) @ down.view(r, -1) · α/r, viewed as the weight.
    const delta = mm(up.v, down.v, out, r, inF * K).map((x) => x * alpha / r);
    const weight = 0.5;
    const got = await mergeOne(backendName, { [CONV]: baseW }, t, weight);
    expectClose(got.get(CONV)!.values, baseW.v.map((v, i) => v + weight * delta[i]), 'merged conv1');
  });
});

describe('layouts LyCORIS cannot apply to the weight are refused in one line', () => {
  // Read when a test runs: the backends are made before the tests, after this is collected.
  const refusals = (base: Record<string, T>, adapter: FixtureTensor[]) => refusalsInMemory({
    backend: backends['cpu (js)']!,
    base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(Object.entries(base).map(([k, t]) => fx(k, t))) },
    adapters: [{ name: 'lycoris', files: { 'lycoris.safetensors': buildSafetensors(adapter) } }],
  });

  it('LoCon from functional/locon.py weight_gen(tucker=False) on a 3×3 conv: lora_down (r, in), whose ΔW is (out, in)', async () => {
    const rand = seededRandom(3);
    const msgs = await refusals({ [CONV]: rnd(rand, [8, 4, 3, 3]) }, [
      fx(`${CONV_NAME}.lora_down.weight`, rnd(rand, [2, 4])), fx(`${CONV_NAME}.lora_up.weight`, rnd(rand, [8, 2])), scalar(`${CONV_NAME}.alpha`, 2),
    ]);
    expect(msgs.length).toBe(1);
    expect(msgs[0]).toMatch(/conv1.*ΔW \(8, 4\) does not fit .*\(8, 4, 3, 3\)/);
    expect(msgs[0]).not.toMatch(/\n/);
  });

  it('BOFT from functional/boft.py with boft_m below log2(n) + 1 (modules/boft.py always builds log2(n) + 1)', async () => {
    const rand = seededRandom(4);
    const msgs = await refusals({ [LINEAR]: rnd(rand, [16, 6]) }, [
      fx(`${LINEAR_NAME}.oft_blocks`, rnd(rand, [2, 8, 2, 2], 'F32', 0.1)), scalar(`${LINEAR_NAME}.alpha`, 0),
    ]);
    expect(msgs.length).toBe(1);
    expect(msgs[0]).toMatch(/oft_blocks \(2, 8, 2, 2\)/);
  });

  it('a LoCon module with a use_scalar `scalar` tensor saved beside it (LyCORIS saves none)', async () => {
    const rand = seededRandom(6);
    const msgs = await refusals({ [LINEAR]: rnd(rand, [8, 6]) }, [
      fx(`${LINEAR_NAME}.lora_down.weight`, rnd(rand, [2, 6])), fx(`${LINEAR_NAME}.lora_up.weight`, rnd(rand, [8, 2])),
      scalar(`${LINEAR_NAME}.alpha`, 2), scalar(`${LINEAR_NAME}.scalar`, 0.5),
    ]);
    // LyCORIS folds scalar into lora_up before saving (custom_state_dict) and resets it to 1 on load.
    expect(msgs.length).toBe(1);
    expect(msgs[0]).toMatch(/attn1_to_q.*unknown tensor "scalar"/);
  });
});
