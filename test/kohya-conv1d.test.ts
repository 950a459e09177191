/**
 * Adapters in kohya/LyCORIS file form (`lora_unet_…`) on an nn.Conv1d, weight (out, in, k): MMAudio's
 * ConvMLP `joint_blocks.<n>.latent_block.ffn.w1` (a Conv1d with kernel 3, padding 1). LyCORIS wraps
 * a Conv1d with 3-D factors: LoCon's lora_down (r, in, k) and lora_up (out, r, 1), or with use_tucker
 * lora_down (r, in, 1), lora_mid (r, r, k); LoHa's hada_w*_b (r, in·k), or with use_tucker
 * hada_t* (r, r, k) and hada_w*_a (r, out), hada_w*_b (r, in); LoKr's lokr_w2 (out/a, in/c, k) whole,
 * or lokr_w2_b (r, (in/c)·k). Truth in float64 from LyCORIS's formulas (locon.py, loha.py, lokr.py
 * make_weight / rebuild_tucker), written out plainly below; LyCORIS DoRA (`dora_scale` (1, in, 1)) from its
 * apply_weight_decompose, one norm per input channel over out and k.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeInMemory } from './helpers/merge-backends.js';

const backend = new CpuBackend('test');
const rand = seededRandom(1301);
const KEY = 'joint_blocks.0.latent_block.ffn.w1.weight';
const MODULE = 'lora_unet_joint_blocks_0_latent_block_ffn_w1';
const OUT = 8, IN = 4, K = 3, R = 2;
const values = (n: number) => randomValues(n, rand, 0.3).map((x) => roundForDType(x, 'F32'));
const t = (name: string, shape: number[], data: Float64Array): FixtureTensor => ({ name, dtype: 'F32', shape, data });
const alpha = (a: number) => t(`${MODULE}.alpha`, [], Float64Array.of(a));
/** ΔW as (out, in, k), row-major, from an element function. */
const delta = (f: (o: number, i: number, k: number) => number) => {
  const d = new Float64Array(OUT * IN * K);
  for (let o = 0; o < OUT; o++) for (let i = 0; i < IN; i++) for (let k = 0; k < K; k++) d[(o * IN + i) * K + k] = f(o, i, k);
  return d;
};
const sum = (n: number, f: (j: number) => number) => {
  let s = 0;
  for (let j = 0; j < n; j++) s += f(j);
  return s;
};

const w = values(OUT * IN * K);

// LoCon: ΔW[o, i, k] = Σ_j up[o, j]·down[j, i, k].
const down = values(R * IN * K), up = values(OUT * R);
const locon = delta((o, i, k) => sum(R, (j) => up[o * R + j] * down[(j * IN + i) * K + k]));
// LoCon with Tucker: ΔW[p, c, k] = Σ_{i,j} mid[i, j, k]·down[j, c]·up[p, i] (einsum 'i j k, j r, p i -> p r k').
const tDown = values(R * IN), mid = values(R * R * K), tUp = values(OUT * R);
const loconTucker = delta((p, c, k) => sum(R, (i) => sum(R, (j) => mid[(i * R + j) * K + k] * tDown[j * IN + c] * tUp[p * R + i])));

// LoHa: ΔW = (w1a·w1b) ⊙ (w2a·w2b), w*b (r, in·k) read as (out, in, k).
const h1a = values(OUT * R), h1b = values(R * IN * K), h2a = values(OUT * R), h2b = values(R * IN * K);
const loha = delta((o, i, k) => sum(R, (j) => h1a[o * R + j] * h1b[j * IN * K + i * K + k]) * sum(R, (j) => h2a[o * R + j] * h2b[j * IN * K + i * K + k]));
// LoHa with Tucker: each factor einsum('i j k, i p, j r -> p r k', t, wa (r, out), wb (r, in)).
const tt1 = values(R * R * K), t1a = values(R * OUT), t1b = values(R * IN), tt2 = values(R * R * K), t2a = values(R * OUT), t2b = values(R * IN);
const tucker = (tc: Float64Array, wa: Float64Array, wb: Float64Array) => (p: number, c: number, k: number) =>
  sum(R, (i) => sum(R, (j) => tc[(i * R + j) * K + k] * wa[i * OUT + p] * wb[j * IN + c]));
const lohaTucker = delta((p, c, k) => tucker(tt1, t1a, t1b)(p, c, k) * tucker(tt2, t2a, t2b)(p, c, k));

// LoKr, W₁ (2, 2) whole: ΔW[a·4 + b, c·2 + d, k] = W₁[a, c]·W₂[b, d, k], W₂ (4, 2, 3) whole, or lokr_w2_a (4, r)·lokr_w2_b (r, 2·3).
const k1 = values(4), k2 = values(4 * 2 * K), k2a = values(4 * R), k2b = values(R * 2 * K);
const kron = (w2: (b: number, d: number, k: number) => number) => delta((o, i, k) => k1[Math.floor(o / 4) * 2 + Math.floor(i / 2)] * w2(o % 4, i % 2, k));
const lokrFull = kron((b, d, k) => k2[(b * 2 + d) * K + k]);
const lokrLow = kron((b, d, k) => sum(R, (j) => k2a[b * R + j] * k2b[j * 2 * K + d * K + k]));

/** Each form: its tensors, ΔW and the scale LyCORIS applies (α/r, or 1 when LoKr's factors are both whole). */
const FORMS: [string, FixtureTensor[], Float64Array, number][] = [
  ['LoCon, lora_down (r, in, k)', [t(`${MODULE}.lora_down.weight`, [R, IN, K], down), t(`${MODULE}.lora_up.weight`, [OUT, R, 1], up), alpha(1)], locon, 1 / R],
  ['LoCon with a Tucker lora_mid (r, r, k)', [
    t(`${MODULE}.lora_down.weight`, [R, IN, 1], tDown), t(`${MODULE}.lora_mid.weight`, [R, R, K], mid), t(`${MODULE}.lora_up.weight`, [OUT, R, 1], tUp), alpha(1),
  ], loconTucker, 1 / R],
  ['LoHa, hada_w*_b (r, in·k)', [
    t(`${MODULE}.hada_w1_a`, [OUT, R], h1a), t(`${MODULE}.hada_w1_b`, [R, IN * K], h1b), t(`${MODULE}.hada_w2_a`, [OUT, R], h2a), t(`${MODULE}.hada_w2_b`, [R, IN * K], h2b), alpha(1),
  ], loha, 1 / R],
  ['LoHa with Tucker cores hada_t* (r, r, k)', [
    t(`${MODULE}.hada_t1`, [R, R, K], tt1), t(`${MODULE}.hada_w1_a`, [R, OUT], t1a), t(`${MODULE}.hada_w1_b`, [R, IN], t1b),
    t(`${MODULE}.hada_t2`, [R, R, K], tt2), t(`${MODULE}.hada_w2_a`, [R, OUT], t2a), t(`${MODULE}.hada_w2_b`, [R, IN], t2b), alpha(1),
  ], lohaTucker, 1 / R],
  // LyCORIS's make_kron pads W₁ with a trailing dim; ComfyUI (like PEFT) pads it at the front beside a
  // 3-D W₂, an order that moves ΔW's elements: this case pins LyCORIS's, which trained the file.
  ['LoKr, lokr_w2 (out/a, in/c, k) whole, in LyCORIS\'s kron order (not ComfyUI\'s)', [t(`${MODULE}.lokr_w1`, [2, 2], k1), t(`${MODULE}.lokr_w2`, [4, 2, K], k2), alpha(4)], lokrFull, 1],
  ['LoKr, lokr_w2_b (r, (in/c)·k)', [t(`${MODULE}.lokr_w1`, [2, 2], k1), t(`${MODULE}.lokr_w2_a`, [4, R], k2a), t(`${MODULE}.lokr_w2_b`, [R, 2 * K], k2b), alpha(1)], lokrLow, 1 / R],
];

/** LyCORIS DoRA: V = W + scale·ΔW; W' = V·(s·(m[c] / (‖V[:, c, :]‖ + eps) − 1) + 1), eps float32's. */
function doraTruth(d: Float64Array, scale: number, m: Float64Array, s: number): Float64Array {
  const v = w.map((x, i) => x + scale * d[i]);
  const out = new Float64Array(v.length);
  for (let c = 0; c < IN; c++) {
    const norm = Math.sqrt(sum(OUT, (o) => sum(K, (k) => v[(o * IN + c) * K + k] ** 2)));
    const f = s * (m[c] / (norm + 2 ** -23) - 1) + 1;
    for (let o = 0; o < OUT; o++) for (let k = 0; k < K; k++) out[(o * IN + c) * K + k] = v[(o * IN + c) * K + k] * f;
  }
  return out;
}

function expectClose(got: ArrayLike<number>, want: Float64Array): void {
  const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
  for (let i = 0; i < want.length; i++) if (Math.abs(got[i] - want[i]) > 1e-6 * scale) expect.fail(`[${i}]: got ${got[i]}, truth ${want[i]}`);
}

describe('kohya/LyCORIS adapters on a Conv1d (out, in, k)', () => {
  for (const [name, tensors, d, scale] of FORMS) {
    for (const s of [1, 0.5]) {
      it(`${name} at weight ${s}: W + s·scale·ΔW`, async () => {
        const { tensors: out } = await mergeInMemory({
          backend, base: { 'model.safetensors': buildSafetensors([t(KEY, [OUT, IN, K], w)]) }, adapters: [{ files: { 'a.safetensors': buildSafetensors(tensors) }, weight: s }],
        });
        expect(out.get(KEY)!.shape).toEqual([OUT, IN, K]);
        expectClose(out.get(KEY)!.values, w.map((x, i) => x + s * scale * d[i]));
      });
    }
  }

  const m = values(IN).map((x) => 1 + Math.abs(x));
  for (const s of [1, 0.5]) {
    it(`LoCon with dora_scale (1, in, 1) at weight ${s}: LyCORIS's per-input-channel magnitude over out and k`, async () => {
      const tensors = [...FORMS[0][1], t(`${MODULE}.dora_scale`, [1, IN, 1], m)];
      const { tensors: out } = await mergeInMemory({
        backend, base: { 'model.safetensors': buildSafetensors([t(KEY, [OUT, IN, K], w)]) }, adapters: [{ files: { 'a.safetensors': buildSafetensors(tensors) }, weight: s }],
      });
      expectClose(out.get(KEY)!.values, doraTruth(locon, 1 / R, m, s));
    });
  }
});
