/**
 * LyCORIS DoRA (`dora_scale` (1, in, 1, 1), per input channel, its default before wd_on_output) on
 * LoHa and LoKr conv modules without Tucker cores: their factors hold the conv's in·kh·kw as one
 * dim (hada_w1_b (r, in·kh·kw), lokr_w2_b (r, d·kh·kw)), so the magnitude has one value per kh·kw
 * of ΔW's columns. Truth in float64 from LyCORIS's apply_weight_decompose.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';

const backend = new CpuBackend('test');
const rand = seededRandom(77);
const KEY = 'down_blocks.0.resnets.0.conv1.weight';
const MODULE = 'lora_unet_down_blocks_0_resnets_0_conv1';
const OUT = 8, IN = 4, K = 9;
const values = (n: number) => randomValues(n, rand, 0.3).map((x) => roundForDType(x, 'F32'));
const t = (name: string, shape: number[], data: Float64Array): FixtureTensor => ({ name, dtype: 'F32', shape, data });

/** (p × r)·(r × q), row-major. */
function mm(a: Float64Array, b: Float64Array, p: number, r: number, q: number): Float64Array {
  const out = new Float64Array(p * q);
  for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) for (let k = 0; k < r; k++) out[i * q + j] += a[i * r + k] * b[k * q + j];
  return out;
}

/** LyCORIS: V = W + scale·ΔW; W' = V·(s·(m / (‖V[:, c]‖ + eps) − 1) + 1), the norm per input channel c over out, kh, kw. */
function truth(w: Float64Array, delta: Float64Array, scale: number, m: Float64Array, s: number): Float64Array {
  const v = w.map((x, i) => x + scale * delta[i]);
  const out = new Float64Array(v.length);
  for (let c = 0; c < IN; c++) {
    let sum = 0;
    for (let o = 0; o < OUT; o++) for (let k = 0; k < K; k++) sum += v[(o * IN + c) * K + k] ** 2;
    const f = s * (m[c] / (Math.sqrt(sum) + 2 ** -23) - 1) + 1;
    for (let o = 0; o < OUT; o++) for (let k = 0; k < K; k++) out[(o * IN + c) * K + k] = v[(o * IN + c) * K + k] * f;
  }
  return out;
}

function expectClose(got: ArrayLike<number>, want: Float64Array): void {
  const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
  for (let i = 0; i < want.length; i++) if (Math.abs(got[i] - want[i]) > 1e-6 * scale) expect.fail(`[${i}]: got ${got[i]}, truth ${want[i]}`);
}

const w = values(OUT * IN * K);
const m = values(IN).map((x) => 1 + Math.abs(x));
const dora = t(`${MODULE}.dora_scale`, [1, IN, 1, 1], m);

// LoHa, r = 2: ΔW = (w1a·w1b) ⊙ (w2a·w2b), w*b (r, in·kh·kw).
const w1a = values(OUT * 2), w1b = values(2 * IN * K), w2a = values(OUT * 2), w2b = values(2 * IN * K);
const lohaDelta = mm(w1a, w1b, OUT, 2, IN * K).map((x, i) => x * mm(w2a, w2b, OUT, 2, IN * K)[i]);
const loha = [
  t(`${MODULE}.hada_w1_a`, [OUT, 2], w1a), t(`${MODULE}.hada_w1_b`, [2, IN * K], w1b),
  t(`${MODULE}.hada_w2_a`, [OUT, 2], w2a), t(`${MODULE}.hada_w2_b`, [2, IN * K], w2b),
  t(`${MODULE}.alpha`, [], Float64Array.of(1)), dora,
];

// LoKr: W₁ (2, 2) full, W₂ = lokr_w2_a (4, 1)·lokr_w2_b (1, 2·kh·kw); ΔW = kron(W₁, W₂), (8, 4·9).
const l1 = values(4), l2a = values(4), l2b = values(2 * K);
const w2 = mm(l2a, l2b, 4, 1, 2 * K);
const lokrDelta = new Float64Array(OUT * IN * K);
for (let a = 0; a < 2; a++) for (let b = 0; b < 4; b++) for (let c = 0; c < 2; c++) for (let j = 0; j < 2 * K; j++) {
  lokrDelta[(a * 4 + b) * IN * K + c * 2 * K + j] = l1[a * 2 + c] * w2[b * 2 * K + j];
}
const lokr = [
  t(`${MODULE}.lokr_w1`, [2, 2], l1), t(`${MODULE}.lokr_w2_a`, [4, 1], l2a), t(`${MODULE}.lokr_w2_b`, [1, 2 * K], l2b),
  t(`${MODULE}.alpha`, [], Float64Array.of(1)), dora,
];

const baseFile = (shape: number[]) => ({ 'diffusion_pytorch_model.safetensors': buildSafetensors([t(KEY, shape, w)]) });

describe('LyCORIS per-input DoRA on a conv whose factors flatten the kernel', () => {
  for (const [name, tensors, delta, scale] of [['LoHa', loha, lohaDelta, 1 / 2], ['LoKr', lokr, lokrDelta, 1]] as const) {
    for (const s of [1, 0.5]) {
      it(`${name} at weight ${s}: one norm per input channel over out, kh and kw`, async () => {
        const { tensors: out } = await mergeInMemory({ backend, base: baseFile([OUT, IN, 3, 3]), adapters: [{ files: { 'a.safetensors': buildSafetensors(tensors) }, weight: s }] });
        expectClose(out.get(KEY)!.values, truth(w, delta, scale, m, s));
      });
    }

    it(`${name}: refused where the base's input channels are not the magnitude's`, async () => {
      // in·kh·kw = 36 as the factors say, but as 12 channels of 1×3 kernels.
      const problems = await refusalsInMemory({ backend, base: baseFile([OUT, 12, 1, 3]), adapters: [{ files: { 'a.safetensors': buildSafetensors(tensors) } }] });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/DoRA magnitude \(1, 4, 1, 1\) has one value per input channel, but the base tensor \(8, 12, 1, 3\) has 12 input channels/);
    });
  }
});
