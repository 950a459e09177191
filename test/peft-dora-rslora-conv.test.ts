/**
 * PEFT DoRA with rsLoRA on a diffusers UNet's 3×3 conv and an attention Linear: PEFT (tuners/lora
 * dora.py) merges W' = m / ‖W + ΔW‖ · (W + ΔW) with ΔW = scaling·B·A, scaling = lora_alpha/√r under
 * use_rslora; the norm is per output row of a Linear and per output channel of a conv, over
 * (in, kh, kw), the magnitude saved (1, out, 1, 1) for a conv. A user weight s scales `scaling`
 * (PEFT's scale_layer), so ΔW and the norm both see s·ΔW. Truth in float64, written out below.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftFolder } from './helpers/hf-folder.js';
import { mergeInMemory } from './helpers/merge-backends.js';

const backend = new CpuBackend('test');
const rand = seededRandom(2718);
const CONV = 'down_blocks.0.resnets.0.conv1';
const Q = 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q';
const R = 4, ALPHA = 8;
const OUT = 4, IN = 3, KK = 9, D = 6;
const values = (n: number, scale = 0.3) => randomValues(n, rand, scale).map((x) => roundForDType(x, 'F32'));
const t = (name: string, shape: number[], data: Float64Array): FixtureTensor => ({ name, dtype: 'F32', shape, data });

const wConv = values(OUT * IN * KK), aConv = values(R * IN * KK), bConv = values(OUT * R), mConv = values(OUT).map((x) => 1 + Math.abs(x));
const wQ = values(D * D), aQ = values(R * D), bQ = values(D * R), mQ = values(D).map((x) => 1 + Math.abs(x));

/** PEFT's DoRA merge of `rows` rows of `cols`: W' = m[o] / ‖W[o] + c·(B·A)[o]‖ · (W[o] + c·(B·A)[o]). */
function doraTruth(w: Float64Array, b: Float64Array, a: Float64Array, m: Float64Array, rows: number, cols: number, c: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let o = 0; o < rows; o++) {
    const v = new Float64Array(cols);
    for (let x = 0; x < cols; x++) {
      let d = 0;
      for (let j = 0; j < R; j++) d += b[o * R + j] * a[j * cols + x];
      v[x] = w[o * cols + x] + c * d;
    }
    const norm = Math.sqrt(v.reduce((s, y) => s + y * y, 0));
    for (let x = 0; x < cols; x++) out[o * cols + x] = (m[o] / norm) * v[x];
  }
  return out;
}

function expectClose(got: ArrayLike<number>, want: Float64Array): void {
  const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
  for (let i = 0; i < want.length; i++) if (Math.abs(got[i] - want[i]) > 1e-6 * scale) expect.fail(`[${i}]: got ${got[i]}, truth ${want[i]}`);
}

const config = {
  base_model_name_or_path: 'stabilityai/stable-diffusion-xl-base-1.0', r: R, lora_alpha: ALPHA, use_rslora: true, use_dora: true,
  target_modules: ['conv1', 'to_q'], init_lora_weights: 'gaussian', lora_dropout: 0, bias: 'none', fan_in_fan_out: false,
};
const adapter = peftFolder(config, [
  t(`base_model.model.${CONV}.lora_A.weight`, [R, IN, 3, 3], aConv), t(`base_model.model.${CONV}.lora_B.weight`, [OUT, R, 1, 1], bConv),
  t(`base_model.model.${CONV}.lora_magnitude_vector`, [1, OUT, 1, 1], mConv),
  t(`base_model.model.${Q}.lora_A.weight`, [R, D], aQ), t(`base_model.model.${Q}.lora_B.weight`, [D, R], bQ),
  t(`base_model.model.${Q}.lora_magnitude_vector`, [D], mQ),
]);
const base = { 'diffusion_pytorch_model.safetensors': buildSafetensors([t(`${CONV}.weight`, [OUT, IN, 3, 3], wConv), t(`${Q}.weight`, [D, D], wQ)]) };

describe('PEFT DoRA under use_rslora', () => {
  for (const s of [1, 0.5]) {
    it(`at weight ${s}: scaling α/√r, norms per output row (Linear) and per output channel over in·kh·kw (conv)`, async () => {
      const { tensors } = await mergeInMemory({ backend, base, adapters: [{ files: adapter, weight: s }] });
      const c = s * ALPHA / Math.sqrt(R);
      expectClose(tensors.get(`${CONV}.weight`)!.values, doraTruth(wConv, bConv, aConv, mConv, OUT, IN * KK, c));
      expectClose(tensors.get(`${Q}.weight`)!.values, doraTruth(wQ, bQ, aQ, mQ, D, D, c));
    });
  }
});
