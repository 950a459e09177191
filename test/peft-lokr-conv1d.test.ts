/**
 * PEFT's LoKr on an nn.Conv1d whose W₂ is stored whole, lokr_w2 (b, d, k): PEFT's make_kron adds
 * kernel dims to W₁ only beside a 4-D W₂, so torch.kron pads the 2-D W₁ (a, c) at the front to
 * (1, a, c), and get_delta_weight reshapes that (b, a·d, c·k) product to the layer's (a·b, c·d, k).
 * That is what PEFT trains and merges; the truth below is torch.kron's definition, written plainly
 * in float64, then the row-major reshape.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergePeftFolder } from './helpers/peft-method-folder.js';

const backend = new CpuBackend('test');
const rand = seededRandom(1515);
const values = (n: number) => randomValues(n, rand, 0.4).map((x) => roundForDType(x, 'F32'));
const t = (name: string, shape: number[], data: Float64Array): FixtureTensor => ({ name, dtype: 'F32', shape, data });
const MODULE = 'model.encoder.conv1';
const P = `base_model.model.${MODULE}`;

/** torch.kron(x (1, a, c), y (b, d, k)): (b, a·d, c·k), element [j, i·d + q, p·k + t] = x[0, i, p]·y[j, q, t]; row-major. */
function torchKron(x: Float64Array, a: number, c: number, y: Float64Array, b: number, d: number, k: number): Float64Array {
  const out = new Float64Array(a * b * c * d * k);
  for (let j = 0; j < b; j++) for (let i = 0; i < a; i++) for (let q = 0; q < d; q++) for (let p = 0; p < c; p++) for (let s = 0; s < k; s++) {
    out[(j * a * d + i * d + q) * c * k + p * k + s] = x[i * c + p] * y[(j * d + q) * k + s];
  }
  return out;
}

function mm(x: Float64Array, y: Float64Array, p: number, r: number, q: number): Float64Array {
  const out = new Float64Array(p * q);
  for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) for (let s = 0; s < r; s++) out[i * q + j] += x[i * r + s] * y[s * q + j];
  return out;
}

describe('PEFT LoKr on a Conv1d with lokr_w2 (b, d, k) whole', () => {
  // [a, c, b, d, k]: a product the engine merges as factors, one it writes out by rows, a 1-wide kernel.
  for (const [a, c, b, d, k, decomposed] of [[2, 2, 4, 6, 3, false], [4, 4, 4, 4, 3, false], [2, 4, 4, 2, 1, false], [4, 4, 2, 2, 3, true]] as const) {
    it(`W₁ (${a}, ${c})${decomposed ? ' as lokr_w1_a·lokr_w1_b' : ''}, W₂ (${b}, ${d}, ${k}) at weight 0.5`, async () => {
      const r = 2, alpha = 3, weight = 0.5;
      const w = values(a * b * c * d * k);
      const w2 = values(b * d * k);
      let w1: Float64Array;
      const tensors = [t(`${P}.lokr_w2`, [b, d, k], w2)];
      if (decomposed) {
        const w1a = values(a * r), w1b = values(r * c);
        w1 = mm(w1a, w1b, a, r, c);
        tensors.push(t(`${P}.lokr_w1_a`, [a, r], w1a), t(`${P}.lokr_w1_b`, [r, c], w1b));
      } else {
        w1 = values(a * c);
        tensors.push(t(`${P}.lokr_w1`, [a, c], w1));
      }
      const config = { peft_type: 'LOKR', r, alpha, target_modules: ['conv1'], decompose_both: decomposed };
      const { tensors: out } = await mergePeftFolder(backend, [t(`${MODULE}.weight`, [a * b, c * d, k], w)], config, tensors, weight);
      const delta = torchKron(w1, a, c, w2, b, d, k);
      const got = out.get(`${MODULE}.weight`)!.values;
      const want = w.map((x, i) => x + weight * (alpha / r) * delta[i]);
      const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      for (let i = 0; i < want.length; i++) if (Math.abs(got[i] - want[i]) > 1e-6 * scale) expect.fail(`[${i}]: got ${got[i]}, truth ${want[i]}`);
    });
  }
});
