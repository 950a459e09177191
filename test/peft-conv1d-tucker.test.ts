/**
 * PEFT's LoHa and LoKr on an nn.Conv1d with use_effective_conv2d: the Tucker cores are
 * (r, r, k, 1) (a kernel of width 1) and get_delta_weight reshapes ΔW (out, in, k, 1) to the layer's
 * (out, in, k). Truth: make_weight_cp's einsum "i j k l, i p, j r -> p r k l", in float64.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { tuckerConv1d } from './helpers/peft-delta-truth.js';
import { mergePeftFolder } from './helpers/peft-method-folder.js';

const backend = new CpuBackend('test');
const rand = seededRandom(3131);
const values = (n: number) => randomValues(n, rand, 0.4).map((x) => roundForDType(x, 'F32'));
const t = (name: string, shape: number[], data: Float64Array): FixtureTensor => ({ name, dtype: 'F32', shape, data });
const MODULE = 'model.encoder.conv1';
const P = `base_model.model.${MODULE}`;
const OUT = 8, IN = 6, K = 3, R = 2, ALPHA = 3, WEIGHT = 0.5;

/** PEFT's Tucker core of this test's rank and kernel: (p, q, K) row-major. */
const cp = (core: Float64Array, wa: Float64Array, wb: Float64Array, p: number, q: number) => tuckerConv1d(core, wa, wb, R, p, q, K);

function expectMerged(got: ArrayLike<number>, w: Float64Array, delta: Float64Array): void {
  const want = w.map((x, i) => x + WEIGHT * (ALPHA / R) * delta[i]);
  const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  for (let i = 0; i < want.length; i++) if (Math.abs(got[i] - want[i]) > 1e-6 * scale) expect.fail(`[${i}]: got ${got[i]}, truth ${want[i]}`);
}

describe('PEFT Tucker cores (r, r, k, 1) on a Conv1d (out, in, k)', () => {
  it('LoHa: (cp(t1, w1_a, w1_b) ⊙ cp(t2, w2_a, w2_b)) reshaped to the layer', async () => {
    const w = values(OUT * IN * K);
    const t1 = values(R * R * K), t2 = values(R * R * K), w1a = values(R * OUT), w1b = values(R * IN), w2a = values(R * OUT), w2b = values(R * IN);
    const tensors = [
      t(`${P}.hada_t1`, [R, R, K, 1], t1), t(`${P}.hada_w1_a`, [R, OUT], w1a), t(`${P}.hada_w1_b`, [R, IN], w1b),
      t(`${P}.hada_t2`, [R, R, K, 1], t2), t(`${P}.hada_w2_a`, [R, OUT], w2a), t(`${P}.hada_w2_b`, [R, IN], w2b),
    ];
    const config = { peft_type: 'LOHA', r: R, alpha: ALPHA, target_modules: ['conv1'], use_effective_conv2d: true };
    const { tensors: out } = await mergePeftFolder(backend, [t(`${MODULE}.weight`, [OUT, IN, K], w)], config, tensors, WEIGHT);
    const s1 = cp(t1, w1a, w1b, OUT, IN), s2 = cp(t2, w2a, w2b, OUT, IN);
    expectMerged(out.get(`${MODULE}.weight`)!.values, w, s1.map((x, i) => x * s2[i]));
  });

  it('LoKr: kron(W₁, cp(t2, w2_a, w2_b)) reshaped to the layer', async () => {
    const w = values(OUT * IN * K);
    const w1 = values(2 * 2), t2 = values(R * R * K), w2a = values(R * 4), w2b = values(R * 3);
    const tensors = [t(`${P}.lokr_w1`, [2, 2], w1), t(`${P}.lokr_t2`, [R, R, K, 1], t2), t(`${P}.lokr_w2_a`, [R, 4], w2a), t(`${P}.lokr_w2_b`, [R, 3], w2b)];
    const config = { peft_type: 'LOKR', r: R, alpha: ALPHA, target_modules: ['conv1'], use_effective_conv2d: true };
    const { tensors: out } = await mergePeftFolder(backend, [t(`${MODULE}.weight`, [OUT, IN, K], w)], config, tensors, WEIGHT);
    const w2 = cp(t2, w2a, w2b, 4, 3);
    const delta = new Float64Array(OUT * IN * K);
    for (let i1 = 0; i1 < 2; i1++) for (let o2 = 0; o2 < 4; o2++) for (let c1 = 0; c1 < 2; c1++) for (let c2 = 0; c2 < 3; c2++) for (let k = 0; k < K; k++) {
      delta[((i1 * 4 + o2) * IN + c1 * 3 + c2) * K + k] = w1[i1 * 2 + c1] * w2[(o2 * 3 + c2) * K + k];
    }
    expectMerged(out.get(`${MODULE}.weight`)!.values, w, delta);
  });

});
