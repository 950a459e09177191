/**
 * mlx-lm's stacked MoE experts in float: an unquantized mlx-lm checkpoint (mlx_lm.convert without
 * -q, or `mlx_lm.fuse --dequantize`) stores each layer's experts as `switch_mlp.gate_proj.weight`
 * (Llama 4's `feed_forward.experts.gate_proj.weight`),
 * `up_proj`, `down_proj` (E, out, in) in f32, f16 or bf16, the mx.stack of the per-expert weights
 * its model files' sanitize() builds. The plan sees such a tensor as its E·out rows (E·out, in),
 * as it sees mlx's quantized stacked experts (formats/mlx-affine.ts), so one expert's update is a
 * run of rows (layouts/mlx-switch-experts.ts); it is read and written as the file holds it, the
 * same bytes, in its stored shape.
 */
import type { SafetensorsBaseModel } from './base-model.js';
import { viewReplacing, type ViewTensor } from './base-model-view.js';

/**
 * The stacked projections mlx-lm's SwitchGLU holds, by the names layouts/mlx-switch-experts.ts places experts on:
 * `switch_mlp`, or `experts` in the model files that name it so (llama4, gpt_oss, dots1, afmoe, Klear). A 3-D
 * `experts.<proj>.weight` is mlx's: transformers stores experts one tensor each (`experts.N.gate_proj.weight`) or
 * fused without `.weight` (`experts.gate_up_proj`).
 */
const STACKED = /(^|\.)(?:switch_mlp|experts)\.(gate_proj|up_proj|down_proj)\.weight$/;

/** `base` with its float stacked experts seen as rows, or undefined when it has none. */
export function mlxStackedExpertsView(base: SafetensorsBaseModel): SafetensorsBaseModel | undefined {
  const stacked = new Map<string, ViewTensor>();
  for (const [key, t] of base.tensors) {
    if (!STACKED.test(key) || t.shape.length !== 3 || t.storedShape) continue;
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') continue;
    const [experts, out, inF] = t.shape;
    stacked.set(key, {
      name: key, dtype: t.dtype, shape: [experts * out, inF], storedShape: t.shape.slice(), byteLength: t.byteLength,
      // Row-major (E, out, in) and (E·out, in) are the same bytes.
      readPart: (start, length) => base.readPart(key, start, length),
    });
  }
  if (stacked.size === 0) return undefined;
  return viewReplacing(base, stacked);
}
