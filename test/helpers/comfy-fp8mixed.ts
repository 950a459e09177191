/**
 * Comfy-Org's fp8mixed FLUX.2 base ("flux2_dev_fp8mixed.safetensors"): each block's Linear stored
 * as F8_E4M3 codes with `<m>.weight_scale` F32 () and `<m>.comfy_quant` U8 holding
 * `{"format": "float8_e4m3fn"}`; the other tensors BF16, in BFL's key names.
 * Nothing here imports the library under test.
 */
import { flux2BflTensors, type Flux2Dims } from './dit-fixtures.js';
import type { Rand } from './diffusion-fixtures.js';
import { e4m3Value } from './e4m3-by-hand.js';
import type { FixtureTensor } from './fixtures.js';

/** The weights fp8mixed stores as fp8 codes: each double and single block's Linears. */
export const FLUX2_FP8MIXED_QUANTIZED = /(double|single)_blocks\.\d+\.(img_attn\.qkv|txt_attn\.qkv|img_attn\.proj|txt_attn\.proj|img_mlp\.[02]|txt_mlp\.[02]|linear1|linear2)\.weight$/;

/**
 * The base's tensors, and each quantized weight's real values e4m3(code) × weight_scale in float64.
 * `code()` draws each code byte; `adjust` may change a weight's codes (row-major, `cols` a row)
 * before they are stored. Each weight_scale is an f32 in [0.0004, 0.0008).
 */
export function flux2Fp8mixed(
  rand: Rand, dims: Flux2Dims, prefix: string, code: () => number, adjust?: (codes: number[], cols: number) => void,
): { tensors: FixtureTensor[]; real: Map<string, Float64Array> } {
  const configBytes = Array.from(new TextEncoder().encode('{"format": "float8_e4m3fn"}'));
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Float64Array>();
  for (const t of flux2BflTensors(rand, 'BF16', dims, prefix)) {
    if (!FLUX2_FP8MIXED_QUANTIZED.test(t.name)) {
      tensors.push(t);
      continue;
    }
    const m = t.name.slice(0, -'.weight'.length);
    const [rows, cols] = t.shape;
    const codes = Array.from({ length: rows * cols }, () => e4m3Value(code()));
    adjust?.(codes, cols);
    const scale = Math.fround(0.0004 + rand() * 0.0004);
    real.set(t.name, Float64Array.from(codes, (c) => c * scale));
    tensors.push({ name: t.name, dtype: 'F8_E4M3', shape: [rows, cols], data: codes });
    tensors.push({ name: `${m}.weight_scale`, dtype: 'F32', shape: [], data: [scale] });
    tensors.push({ name: `${m}.comfy_quant`, dtype: 'U8', shape: [configBytes.length], data: configBytes });
  }
  return { tensors, real };
}
