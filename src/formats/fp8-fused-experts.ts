/**
 * transformers' FP8 experts (FineGrainedFP8's `FP8Experts`, as Mistral Small 4 ships in transformers'
 * format): each fused expert parameter is stored under its own name, not as `<module>.weight`:
 * `mlp.experts.gate_up_proj` (E, 2·inter, hidden) and `mlp.experts.down_proj` (E, hidden, inter),
 * F8_E4M3 codes of each expert's (out, in) matrix, with `<param>_scale_inv` F32 of shape
 * (E, ⌈out/bm⌉, ⌈in/bn⌉), one grid of scales per expert (with `weight_block_size: null`, (E, 1, 1):
 * one scale per expert), and a static `<param>_activation_scale` beside them. Expert e's real weight
 * is code × scale_inv[e] of the code's block, as the block-wise fp8 weights of the same checkpoint.
 * transformers' own quantizer (Fp8Quantize) tiles the last two axes, the leading one kept: with
 * `weight_block_size: null` the block is a whole expert, one amax per expert; so a merged parameter
 * is quantized again here block by block of that grid, each expert by its own maximum (the
 * `reciprocal` rule of scaled-fp8.ts). It requires out and in to be multiples of the block.
 *
 * The merge views such a parameter as (E·out) × in (as it views every fused expert parameter:
 * plan/fused-experts.ts), so its scales are one grid over that matrix when no block crosses from
 * one expert into the next: blocks of bm × bn, or out × in per expert. A grid whose blocks end short
 * at each expert's last rows (out not a multiple of bm) is not read here, and stays refused by its
 * scale (plan/quantized-weights.ts).
 */
import { decodeToF32, type FloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import { badScales } from './bad-scales.js';
import type { BaseModel } from './base-model.js';
import type { ScaledFp8Weight } from './scaled-fp8.js';

const SCALE_DTYPES = new Set(['F32', 'BF16', 'F16']);

/**
 * Every fused FP8 expert parameter of `base` that a block-wise fp8 config (`block`: its
 * weight_block_size, or undefined for one scale per expert) describes, as one grid over its
 * (E·out) × in view. Scales of another shape, or not finite, throw naming the scale tensor.
 */
export async function readFusedFp8Experts(base: BaseModel, block: readonly [number, number] | undefined): Promise<ScaledFp8Weight[]> {
  const found: ScaledFp8Weight[] = [];
  for (const [key, t] of base.tensors) {
    const scaleKey = `${key}_scale_inv`;
    const scale = base.tensors.get(scaleKey);
    if (key.endsWith('.weight') || !scale || t.dtype !== 'F8_E4M3' || t.shape.length !== 3 || !SCALE_DTYPES.has(scale.dtype)) continue;
    const [experts, out, inputs] = t.shape;
    const [bm, bn] = block ?? [out, inputs];
    // A block grid whose last row block of each expert is short: not one grid over (E·out) × in.
    if (out % bm !== 0) continue;
    const expected = [experts, Math.ceil(out / bm), Math.ceil(inputs / bn)];
    if (scale.shape.length !== 3 || scale.shape.some((n, i) => n !== expected[i])) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${scaleKey}" has shape [${scale.shape.join(', ')}], which is no grid of scales over ${key} [${t.shape.join(', ')}] that config.json's quantization_config describes (expected [${expected.join(', ')}], one grid per expert)`);
    }
    const scales = Float64Array.from(decodeToF32(await base.read(scaleKey), scale.dtype as FloatDType));
    const bad = badScales(base.name, scaleKey, scales);
    if (bad) throw bad;
    const entry: ScaledFp8Weight = {
      weightKey: key, codeDtype: 'F8_E4M3', scaleKey, scaleDtype: scale.dtype as ScaledFp8Weight['scaleDtype'],
      rows: experts * out, cols: inputs, blockRows: bm, blockCols: bn, scales,
    };
    if (base.tensors.has(`${key}_activation_scale`)) entry.inputScaleKey = `${key}_activation_scale`;
    found.push(entry);
  }
  return found;
}
