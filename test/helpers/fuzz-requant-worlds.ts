/**
 * The thread fuzzer's second world (fuzz-threads.test.ts): bases whose merged weights are written
 * quantized again in their own format, each weight just above the CPU pool's 64 Ki-element floor so
 * that its decoding, its maxima and its codes go to the worker threads. Each case draws a format and
 * its parameters, an odd shape for the merged module and a small or large unmerged one (copied as
 * stored), a slab size that cuts the rows at odd places, a PEFT LoRA on the merged module and, for
 * some cases, one hostile change: a NaN or infinite scale, a scale or weight one row short, a
 * weight of another shape, or a LoRA whose ΔW is near or past the largest value the format's
 * scales (a GGUF block's f16 d) or f32 can hold. Each case carries its checker: the written file against the format's
 * re-quantization of W' = W + ΔW computed here in float64 (helpers e4m3-by-hand.ts and
 * ggml-reference.ts, written from the tools' sources), the unmerged module's tensors byte for byte.
 *
 * The formats, with the key names and metadata of the files they stand for:
 *   - comfy-int8: ComfyUI's `int8_tensorwise` comfy_quant layers (`<m>.weight` I8, `<m>.weight_scale`
 *     F32 () per tensor or (rows, 1) per row, `<m>.comfy_quant` U8 JSON), re-quantized as
 *     comfy_kitchen's quantize_int8_tensorwise / _rowwise;
 *   - comfy-fp8mixed: Comfy-Org's fp8mixed layers (`<m>.weight` F8_E4M3, `<m>.weight_scale` F32 (),
 *     comfy_quant `{"format": "float8_e4m3fn"}`), re-quantized with the scale recalculated;
 *   - scaled-fp8: ComfyUI's older "scaled fp8" files (`<m>.weight` F8_E4M3 or F8_E5M2, `<m>.scale_weight`
 *     F32, the zero-size `scaled_fp8` marker; llava_llama3_fp8_scaled's Llama names): e4m3fn codes
 *     re-quantized as current ComfyUI does (the scale recalculated), e5m2 ones merged in place by
 *     their scale (code + ΔW / scale_weight rounded once, saturating), as ComfyUI patched them before;
 *   - block-fp8: Qwen3-FP8 / DeepSeek-V3 folders (`<m>.weight_scale_inv` F32 per 128 × 128 block, the
 *     last ones partial where a dimension is no multiple of 128; quantization_config fp8 with
 *     weight_block_size), re-quantized as transformers' FineGrainedFP8 quantizer per block;
 *   - gguf: a llama GGUF (Q8_0, Q4_0, Q5_1, Q4_K, Q5_K, Q6_K, Q3_K), ffn_up merged and quantized again
 *     to its type by ggml's reference quantizer, ffn_gate copied.
 */
import { blockedOrder, comfyInt8Requantize, comfyMxfp8Requantize, comfyNvfp4Requantize, comfyNvfp4Value, comfyRequantize, e4m3Value, e5m2Value, e8m0Value, fineGrainedFp8 } from './e4m3-by-hand.js';
import { buildSafetensors, decodeSafetensors, encodeValues, randomValues, roundF8Saturating, seededRandom, type DecodedTensor, type FixtureTensor } from './fixtures.js';
import { buildGguf, readGguf, type FixtureTensor as GgufTensor } from './gguf-builder.js';
import { REF_BLOCK, referenceDequantizeBlock, referenceQuantizeBlock, type RefType } from './ggml-reference.js';
import { peftLoraOn } from './thread-backends.js';
import { GGUF_LAYER_FORMATS, ggufLayerCase, type GgufLayerFormat } from './fuzz-gguf-layers.js';
import type { GgufMoreFormat } from './fuzz-gguf-moe.js';

export const REQUANT_FORMATS = ['comfy-int8', 'comfy-fp8mixed', 'scaled-fp8', 'block-fp8', 'gguf'] as const;
/**
 * The worlds added after the first five, drawn by their own count (so that a seed's cases of the
 * first five stay what they were): ComfyUI nvfp4 and mxfp8 layers written as nvfp4 / mxfp8 again,
 * and the llama GGUF layers of fuzz-gguf-layers.ts (any of a layer's matrices, q and k permuted;
 * `--dtype` re-typing; `--imatrix`).
 */
export const MORE_REQUANT_FORMATS = ['comfy-nvfp4-requant', 'comfy-mxfp8-requant', ...GGUF_LAYER_FORMATS] as const;
export type RequantFormat = (typeof REQUANT_FORMATS)[number] | (typeof MORE_REQUANT_FORMATS)[number];

/** The hostile changes: those of the first world, and 'huge', an adapter whose ΔW is near or past what the format (or f32) can hold. */
export type RequantHostility = 'nan' | 'inf' | 'short-stats' | 'short-weight' | 'wide-weight' | 'huge';

type Files = Record<string, Uint8Array | string>;

/** One generated case. */
export interface RequantCase {
  label: string;
  format: RequantFormat | GgufMoreFormat;
  files: Files;
  adapter: Files;
  /** The written file's name among the outputs. */
  output: string;
  /** Where the adapter is one file (a llama.cpp LoRA GGUF), its name among `adapter`: the command line is given that file, not the folder. */
  adapterFile?: string;
  slabBytes: number;
  /** mergeModel's outDtype and dtypeMergedOnly (the command line's --dtype, --dtype-merged-only), where the case gives them. */
  outDtype?: string;
  dtypeMergedOnly?: boolean;
  /** A llama-imatrix file (the command line's --imatrix; mergeModel's importance, read by readImportanceMatrix). */
  importance?: { name: string; bytes: Uint8Array };
  /**
   * The hostile change, if any: the module it was made in (a refusal names it), and whether the
   * file may still be merged: only where the change is in the module copied as stored and leaves
   * it what the tool loads (a NaN or infinite scale, loaded as it is; a weight of another shape
   * whose scales still cover it, per tensor or per 128 × 128 block, which is then simply a weight
   * of that shape).
   */
  hostile?: { kind: RequantHostility; module: string; mayMerge: boolean };
  /** The written file against the float64 truth: the first wrong thing's line, or undefined. */
  check(bytes: Uint8Array): string | undefined;
}

export interface Draw {
  rand: () => number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
}

const L = 'model.layers.0';
const Q = `${L}.self_attn.q_proj`;
const K = `${L}.self_attn.k_proj`;
const json = (s: string) => Array.from(new TextEncoder().encode(s));

/** A row count with rows × cols in [lo, hi], odd where it can be. */
function rowCount(d: Draw, cols: number, lo: number, hi: number): number {
  const min = Math.ceil(lo / cols), max = Math.max(min, Math.floor(hi / cols));
  let k = d.int(min, max);
  if (k % 2 === 0 && k + 1 <= max && d.rand() < 0.8) k++;
  return k;
}

/** A random e4m3fn code's value, never NaN, now and then 0 or ±448. */
function fp8Code(d: Draw): number {
  const u = d.rand();
  if (u < 0.01) return 0;
  if (u < 0.012) return d.rand() < 0.5 ? 448 : -448;
  let b: number;
  do b = d.int(0, 255); while ((b & 0x7f) === 0x7f);
  return e4m3Value(b);
}

const bytesOf = (t: FixtureTensor): Uint8Array => (t.data instanceof Uint8Array ? t.data : encodeValues(t.data, t.dtype));

/** The first element where `got` differs from `want` (NaN equal to NaN), or -1. */
function firstDifference(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Math.min(got.length, want.length);
  for (let i = 0; i < got.length; i++) if (!(Object.is(got[i], want[i]) || got[i] === want[i] || (Number.isNaN(got[i]) && Number.isNaN(want[i])))) return i;
  return -1;
}

/** One safetensors module of a format: its tensors, W in float64, and the checker of its re-quantized W'. */
interface ModuleOut {
  tensors: FixtureTensor[];
  w: Float64Array;
  /** The written tensors against the re-quantization of `real` (W'). */
  check(written: Map<string, DecodedTensor>, real: Float64Array): string | undefined;
}

interface SafetensorsPlan {
  name: string;
  cols: readonly number[];
  /** Rows come in multiples of this (ComfyUI's nvfp4: 16, mxfp8: 32). */
  rowMultiple?: number;
  build(m: string, rows: number, cols: number, poison: 'nan' | 'inf' | undefined): ModuleOut;
  /** Tensors of the file outside any module (a marker). */
  extra?: FixtureTensor[];
  config?: Record<string, unknown>;
}

function poisonOne(d: Draw, values: number[], kind: 'nan' | 'inf'): void {
  values[d.int(0, values.length - 1)] = kind === 'nan' ? NaN : d.rand() < 0.5 ? Infinity : -Infinity;
}

function comfyInt8(d: Draw): SafetensorsPlan {
  const perRow = d.rand() < 0.5;
  return {
    name: `ComfyUI int8_tensorwise ${perRow ? 'per row' : 'per tensor'}`,
    cols: [448, 512, 576, 640, 768, 960, 1000],
    build(m, rows, cols, poison) {
      const codes = Array.from({ length: rows * cols }, () => d.int(-128, 127));
      const scales = Array.from({ length: perRow ? rows : 1 }, () => Math.fround(0.0002 + d.rand() * 0.0006));
      if (poison) poisonOne(d, scales, poison);
      const w = Float64Array.from(codes, (q, i) => q * scales[perRow ? Math.floor(i / cols) : 0]);
      const config = json('{"format": "int8_tensorwise"}');
      return {
        w,
        tensors: [
          { name: `${m}.weight`, dtype: 'I8', shape: [rows, cols], data: codes },
          { name: `${m}.weight_scale`, dtype: 'F32', shape: perRow ? [rows, 1] : [], data: scales },
          { name: `${m}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
        ],
        check(written, real) {
          const want = comfyInt8Requantize(real, rows, perRow);
          const scale = written.get(`${m}.weight_scale`);
          if (!scale || scale.dtype !== 'F32' || scale.shape.join() !== (perRow ? `${rows},1` : '')) return `${m}.weight_scale is ${scale?.dtype} ${JSON.stringify(scale?.shape)}`;
          const s = firstDifference(scale.values, want.scales);
          if (s >= 0) return `${m}.weight_scale[${s}] is ${scale.values[s]}, expected ${want.scales[s]}`;
          const got = written.get(`${m}.weight`)!;
          if (got.dtype !== 'I8') return `${m}.weight is ${got.dtype}`;
          const c = firstDifference(got.values, want.codes);
          return c >= 0 ? `${m}.weight[${c}] is ${got.values[c]}, expected ${want.codes[c]} (W' ${real[c]})` : undefined;
        },
      };
    },
  };
}

/** A random e5m2 code's value, never NaN or ±Inf, now and then 0 or ±57344. */
function e5m2Code(d: Draw): number {
  const u = d.rand();
  if (u < 0.01) return 0;
  if (u < 0.012) return d.rand() < 0.5 ? 57344 : -57344;
  let b: number;
  do b = d.int(0, 255); while (((b >> 2) & 0x1f) === 0x1f);
  return e5m2Value(b);
}

/** fp8 codes with one per-tensor F32 scale: Comfy-Org's fp8mixed (`weight_scale`, comfy_quant) or ComfyUI's scaled fp8 (`scale_weight`, the marker). */
function perTensorFp8(d: Draw, kind: 'comfy-fp8mixed' | 'scaled-fp8'): SafetensorsPlan {
  const scaleKey = kind === 'scaled-fp8' ? 'scale_weight' : 'weight_scale';
  const e5m2 = kind === 'scaled-fp8' && d.rand() < 0.4;
  const codeDtype = e5m2 ? 'F8_E5M2' : 'F8_E4M3';
  return {
    name: kind === 'scaled-fp8' ? `ComfyUI scaled fp8 ${e5m2 ? 'e5m2' : 'e4m3fn'} (scale_weight, scaled_fp8 marker)` : 'Comfy-Org fp8mixed (weight_scale, comfy_quant float8_e4m3fn)',
    cols: [448, 512, 576, 640, 768, 960, 1000],
    build(m, rows, cols, poison) {
      const codes = Array.from({ length: rows * cols }, () => (e5m2 ? e5m2Code(d) : fp8Code(d)));
      const scale = [Math.fround(0.0004 + d.rand() * 0.0004)];
      if (poison) poisonOne(d, scale, poison);
      const w = Float64Array.from(codes, (c) => c * scale[0]);
      const tensors: FixtureTensor[] = [
        { name: `${m}.weight`, dtype: codeDtype, shape: [rows, cols], data: codes },
        { name: `${m}.${scaleKey}`, dtype: 'F32', shape: [], data: scale },
      ];
      if (kind === 'comfy-fp8mixed') {
        const config = json('{"format": "float8_e4m3fn"}');
        tensors.push({ name: `${m}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config });
      }
      return {
        w, tensors,
        check(written, real) {
          if (e5m2) {
            // In place: the scale as it was, each code W' / s = code + ΔW / s rounded once.
            const s = written.get(`${m}.${scaleKey}`);
            if (!s || s.values[0] !== scale[0]) return `${m}.${scaleKey} is ${s?.values[0]}, not kept as ${scale[0]}`;
            const got = written.get(`${m}.weight`)!;
            if (got.dtype !== 'F8_E5M2') return `${m}.weight is ${got.dtype}`;
            const want = Float64Array.from(real, (x, i) => roundF8Saturating(codes[i] + (x - codes[i] * scale[0]) / scale[0], 'F8_E5M2'));
            const c = firstDifference(got.values, want);
            return c >= 0 ? `${m}.weight[${c}] is ${got.values[c]}, expected ${want[c]} (code ${codes[c]}, W' ${real[c]})` : undefined;
          }
          const want = comfyRequantize(real);
          const s = written.get(`${m}.${scaleKey}`);
          if (!s || s.dtype !== 'F32' || s.values[0] !== want.scale) return `${m}.${scaleKey} is ${s?.dtype} ${s?.values[0]}, expected ${want.scale}`;
          const got = written.get(`${m}.weight`)!;
          if (got.dtype !== 'F8_E4M3') return `${m}.weight is ${got.dtype}`;
          const c = firstDifference(got.values, want.codes);
          return c >= 0 ? `${m}.weight[${c}] is ${got.values[c]}, expected ${want.codes[c]} (W' ${real[c]})` : undefined;
        },
      };
    },
    ...(kind === 'scaled-fp8' ? { extra: [{ name: 'scaled_fp8', dtype: codeDtype, shape: [0], data: [] }] } : {}),
  };
}

function blockFp8(d: Draw): SafetensorsPlan {
  return {
    name: 'block fp8 128 × 128 (weight_scale_inv)',
    // Some no multiple of 128: their last column block is partial.
    cols: [512, 640, 768, 1024, 576, 704, 1000],
    build(m, rows, cols, poison) {
      const grid = [Math.ceil(rows / 128), Math.ceil(cols / 128)];
      const codes = Array.from({ length: rows * cols }, () => fp8Code(d));
      const scales = Array.from({ length: grid[0] * grid[1] }, () => Math.fround(0.0004 + d.rand() * 0.0002));
      if (poison) poisonOne(d, scales, poison);
      const w = Float64Array.from(codes, (c, i) => c * scales[Math.floor(Math.floor(i / cols) / 128) * grid[1] + Math.floor((i % cols) / 128)]);
      return {
        w,
        tensors: [
          { name: `${m}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], data: codes },
          { name: `${m}.weight_scale_inv`, dtype: 'F32', shape: grid, data: scales },
        ],
        check(written, real) {
          const want = fineGrainedFp8(real, rows, cols);
          const s = written.get(`${m}.weight_scale_inv`);
          if (!s || s.dtype !== 'F32' || s.shape.join() !== grid.join()) return `${m}.weight_scale_inv is ${s?.dtype} ${JSON.stringify(s?.shape)}`;
          const at = firstDifference(s.values, want.scaleInv);
          if (at >= 0) return `${m}.weight_scale_inv[${at}] is ${s.values[at]}, expected ${want.scaleInv[at]}`;
          const got = written.get(`${m}.weight`)!;
          const c = firstDifference(got.values, want.codes);
          return c >= 0 ? `${m}.weight[${c}] is ${got.values[c]}, expected ${want.codes[c]} (W' ${real[c]})` : undefined;
        },
      };
    },
    // As Qwen3-8B-FP8's and DeepSeek-V3's config.json have it.
    config: { quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', weight_block_size: [128, 128] } },
  };
}

/** e4m3 block-scale bytes as trained weights have them (never NaN), now and then 0 or the smallest. */
function nvfp4ScaleByte(d: Draw): number {
  const u = d.rand();
  if (u < 0.02) return 0x00;
  if (u < 0.04) return 0x01;
  return 0x28 + Math.floor(d.rand() * 0x30);
}

/** The tensor's bytes compared with `want`: the first differing byte's line, or undefined. */
function sameBytes(name: string, t: DecodedTensor | undefined, dtype: string, shape: readonly number[], want: Uint8Array): string | undefined {
  if (!t || t.dtype !== dtype || t.shape.join() !== shape.join()) return `${name} is ${t?.dtype} ${JSON.stringify(t?.shape)}, not ${dtype} ${JSON.stringify(shape)}`;
  const at = firstDifference(t.bytes, want);
  return at >= 0 ? `${name} byte ${at} is ${t.bytes[at]}, expected ${want[at]}` : undefined;
}

/**
 * ComfyUI's nvfp4 layers (TensorCoreNVFP4Layout): `<m>.weight` U8 (rows, cols/2), element 2k in the
 * high nibble; `<m>.weight_scale` F8_E4M3 per 16 inputs in cuBLAS' swizzled layout; `<m>.weight_scale_2`
 * F32 (); `<m>.comfy_quant` {"format": "nvfp4"}. W as comfy_kitchen's dequantize_nvfp4 gives it;
 * a merged layer written as nvfp4 again (comfy_kitchen's quantize_nvfp4, nearest even: e4m3-by-hand.ts).
 * Hostile: a NaN block scale (E4M3FN's 0x7f / 0xff) or a NaN or ±Inf weight_scale_2.
 */
function comfyNvfp4(d: Draw): SafetensorsPlan {
  return {
    name: 'ComfyUI nvfp4 (comfy_quant), written as nvfp4',
    cols: [512, 640, 768, 1024],
    rowMultiple: 16,
    build(m, rows, cols, poison) {
      const blocks = cols / 16;
      const codes = Uint8Array.from({ length: rows * cols }, () => Math.floor(d.rand() * 16));
      const scales = Array.from({ length: rows * blocks }, () => nvfp4ScaleByte(d));
      const s2 = [Math.fround(0.000123 + d.rand() * 0.0001)];
      if (poison === 'nan' && d.rand() < 0.5) scales[d.int(0, scales.length - 1)] = d.pick([0x7f, 0xff]);
      else if (poison) poisonOne(d, s2, poison);
      const w = Float64Array.from(codes, (code, i) => comfyNvfp4Value(code, scales[Math.floor(i / cols) * blocks + Math.floor((i % cols) / 16)], s2[0]));
      const packed = Uint8Array.from({ length: (rows * cols) / 2 }, (_, k) => (codes[2 * k] << 4) | codes[2 * k + 1]);
      const { order, shape } = blockedOrder(rows, blocks);
      const config = json('{"format": "nvfp4"}');
      return {
        w,
        tensors: [
          { name: `${m}.weight`, dtype: 'U8', shape: [rows, cols / 2], data: packed },
          { name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : scales[at])) },
          { name: `${m}.weight_scale_2`, dtype: 'F32', shape: [], data: s2 },
          { name: `${m}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
        ],
        check(written, real) {
          const want = comfyNvfp4Requantize(real, rows, cols);
          const s = written.get(`${m}.weight_scale_2`);
          if (!s || s.dtype !== 'F32' || s.shape.length || !Object.is(s.values[0], want.s2)) return `${m}.weight_scale_2 is ${s?.dtype} ${s?.values[0]}, expected ${want.s2}`;
          return sameBytes(`${m}.weight_scale`, written.get(`${m}.weight_scale`), 'F8_E4M3', shape, want.scales)
            ?? sameBytes(`${m}.weight`, written.get(`${m}.weight`), 'U8', [rows, cols / 2], want.packed);
        },
      };
    },
  };
}

/**
 * ComfyUI's mxfp8 layers (TensorCoreMXFP8Layout): `<m>.weight` F8_E4M3, `<m>.weight_scale` U8 e8m0
 * per 32 inputs in the swizzled layout, `<m>.comfy_quant` {"format": "mxfp8"}; a merged layer written
 * as mxfp8 again (comfy/float.py's per-block exponent, nearest even: e4m3-by-hand.ts). Hostile: an
 * e8m0 byte 255 (NaN), or 254 under a code of 448 (past float32), or E4M3FN's NaN code.
 */
function comfyMxfp8(d: Draw): SafetensorsPlan {
  return {
    name: 'ComfyUI mxfp8 (comfy_quant), written as mxfp8',
    cols: [512, 640, 768, 1024],
    rowMultiple: 32,
    build(m, rows, cols, poison) {
      const blocks = cols / 32;
      const codes = Uint8Array.from({ length: rows * cols }, () => {
        const b = Math.floor(d.rand() * 254);
        return b >= 0x7f ? b + 1 : b;
      });
      const exponents = Array.from({ length: rows * blocks }, () => (d.rand() < 0.02 ? 0 : 112 + Math.floor(d.rand() * 8)));
      if (poison === 'nan') {
        if (d.rand() < 0.5) exponents[d.int(0, exponents.length - 1)] = 255;
        else codes[d.int(0, codes.length - 1)] = d.pick([0x7f, 0xff]);
      } else if (poison) {
        const b = d.int(0, exponents.length - 1);
        exponents[b] = 254;
        codes[Math.floor(b / blocks) * cols + (b % blocks) * 32 + d.int(0, 31)] = d.pick([0x7e, 0xfe]);
      }
      const w = Float64Array.from(codes, (code, i) => e4m3Value(code) * e8m0Value(exponents[Math.floor(i / cols) * blocks + Math.floor((i % cols) / 32)]));
      const { order, shape } = blockedOrder(rows, blocks);
      const config = json('{"format": "mxfp8"}');
      return {
        w,
        tensors: [
          { name: `${m}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], data: codes },
          { name: `${m}.weight_scale`, dtype: 'U8', shape, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : exponents[at])) },
          { name: `${m}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
        ],
        check(written, real) {
          const want = comfyMxfp8Requantize(real, rows, cols);
          const wrong = sameBytes(`${m}.weight_scale`, written.get(`${m}.weight_scale`), 'U8', shape, Uint8Array.from(order, (at) => (at < 0 ? 0 : want.exponents[at])));
          if (wrong) return wrong;
          const got = written.get(`${m}.weight`);
          if (!got || got.dtype !== 'F8_E4M3' || got.shape.join() !== `${rows},${cols}`) return `${m}.weight is ${got?.dtype} ${JSON.stringify(got?.shape)}`;
          const c = firstDifference(got.values, want.codes);
          return c >= 0 ? `${m}.weight[${c}] is ${got.values[c]}, expected ${want.codes[c]} (W' ${real[c]})` : undefined;
        },
      };
    },
  };
}

/** Case `index` of the run seeded `seed`, among `formats`. */
export function requantCase(seed: number, index: number, formats: readonly RequantFormat[] = REQUANT_FORMATS, hostileShare = 0.3): RequantCase {
  // Another stream than the first world's cases of the same seed and index.
  const rand = seededRandom((seed * 6007 + index * 130363 + 17) >>> 0);
  const d: Draw = { rand, int: (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)), pick: (xs) => xs[Math.floor(rand() * xs.length)] };
  const format = d.pick(formats);
  const hostileKind: RequantHostility | undefined = d.rand() < hostileShare ? d.pick(['nan', 'inf', 'short-stats', 'short-weight', 'wide-weight', 'huge'] as const) : undefined;
  // A huge ΔW is the merged module's.
  const hostileMerged = d.rand() < 0.7 || hostileKind === 'huge';
  if (format === 'gguf') return ggufCase(d, seed, index, hostileKind, hostileMerged);
  if ((GGUF_LAYER_FORMATS as readonly string[]).includes(format)) return ggufLayerCase(d, seed, index, format as GgufLayerFormat, hostileKind, hostileMerged);
  const plan = format === 'comfy-int8' ? comfyInt8(d) : format === 'block-fp8' ? blockFp8(d) : format === 'comfy-nvfp4-requant' ? comfyNvfp4(d)
    : format === 'comfy-mxfp8-requant' ? comfyMxfp8(d) : perTensorFp8(d, format as 'comfy-fp8mixed' | 'scaled-fp8');
  const cols = d.pick(plan.cols);
  const multiple = (rows: number) => (plan.rowMultiple ? Math.ceil(rows / plan.rowMultiple) * plan.rowMultiple : rows);
  const qRows = multiple(rowCount(d, cols, 65536 + 1, 160 * 1024));
  const kRows = multiple(d.rand() < 0.5 ? rowCount(d, cols, 8 * cols, 48 * cols) : rowCount(d, cols, 65536 + 1, 120 * 1024));
  const hostileModule = hostileMerged ? Q : K;
  const tensors: FixtureTensor[] = [...(plan.extra ?? [])];
  const built = new Map<string, ModuleOut>();
  /** A reshaped weight whose scales still cover it (per tensor, or its 128-row blocks as many): still a weight that loads. */
  let consistent = false;
  for (const [m, rows] of [[Q, qRows], [K, kRows]] as const) {
    const poison = m === hostileModule && (hostileKind === 'nan' || hostileKind === 'inf') ? hostileKind : undefined;
    const out = plan.build(m, rows, cols, poison);
    built.set(m, out);
    tensors.push(...out.tensors);
  }
  if (hostileKind === 'short-stats' || hostileKind === 'short-weight' || hostileKind === 'wide-weight') {
    const own = built.get(hostileModule)!.tensors;
    const weight = own.find((t) => t.name.endsWith('.weight'))!;
    // A per-tensor scale has no row to lose: its weight loses one instead.
    const stats = own.filter((t) => t !== weight && t.shape.length > 0 && !t.name.endsWith('comfy_quant'));
    const target = hostileKind === 'short-stats' && stats.length ? d.pick(stats) : weight;
    const change = hostileKind === 'wide-weight' ? 1 : -1;
    tensors[tensors.indexOf(target)] = reshaped(target, change);
    // Its scales still cover it: one per tensor, or a grid of 128-row blocks with as many rows as before.
    const rows = target.shape[0];
    consistent = target === weight && (!stats.length || (format === 'block-fp8' && Math.ceil((rows + change) / 128) === Math.ceil(rows / 128)));
  }
  const r = d.int(1, 16);
  // ΔW of about 0.05·α/r·√r: a huge one from 1e29 (f32 holds W') to 1e41 (it does not).
  const lora = peftLoraOn({ [Q]: qRows }, cols, r, hostileKind === 'huge' ? r * 10 ** d.int(30, 42) : d.pick([r, 2 * r, 16, 32]), d.rand);
  const originals = new Map(tensors.map((t) => [t.name, t]));
  const slabBytes = d.int(65536, 220 * 1024) * 4 + (d.rand() < 0.3 ? d.int(1, 3) : 0);
  const config = JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: cols, intermediate_size: 4 * cols, num_attention_heads: 8, num_hidden_layers: 1,
    torch_dtype: 'bfloat16', ...plan.config,
  });
  const mayMerge = hostileKind === 'huge' || (!hostileMerged && (hostileKind === 'nan' || hostileKind === 'inf' || consistent));
  const hostile = hostileKind ? { kind: hostileKind, module: hostileModule, mayMerge } : undefined;
  return {
    label: `case ${index} (seed ${seed}): ${plan.name}, q_proj ${qRows}×${cols}, k_proj ${kRows}×${cols}, rank ${r}, slab ${slabBytes} B${hostile ? `, hostile: ${hostile.kind} in ${hostile.module}` : ''}`,
    format, files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': config }, adapter: lora.files, output: 'model.safetensors', slabBytes, hostile,
    check(bytes) {
      const written = decodeSafetensors(bytes).tensors;
      const names = [...originals.keys()].sort();
      if ([...written.keys()].sort().join() !== names.join()) return `the file holds ${[...written.keys()].sort().join(', ')}, not ${names.join(', ')}`;
      // Everything but the merged module: byte for byte as stored.
      for (const [name, t] of originals) {
        if (name.startsWith(`${Q}.`)) continue;
        const got = written.get(name)!;
        if (got.dtype !== t.dtype || got.shape.join() !== t.shape.join() || !Buffer.from(got.bytes).equals(Buffer.from(bytesOf(t)))) return `${name} not copied as stored`;
      }
      const q = built.get(Q)!;
      const delta = lora.delta.get(Q)!;
      return q.check(written, q.w.map((w, i) => w + delta[i]));
    },
  };
}

/** The tensor with one row (its first dimension) more (+1: the first row again) or fewer (−1). */
function reshaped(t: FixtureTensor, change: 1 | -1): FixtureTensor {
  const bytes = bytesOf(t);
  const rowBytes = bytes.length / t.shape[0];
  const data = new Uint8Array(bytes.length + change * rowBytes);
  data.set(change > 0 ? bytes : bytes.subarray(0, data.length));
  if (change > 0) data.set(bytes.subarray(0, rowBytes), bytes.length);
  return { ...t, shape: [t.shape[0] + change, ...t.shape.slice(1)], data };
}

// --- GGUF ------------------------------------------------------------------------------------

const GGUF_TYPES: readonly RefType[] = ['Q8_0', 'Q4_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K', 'Q3_K'];
const GGUF_UP = 'blk.0.ffn_up.weight';
const GGUF_GATE = 'blk.0.ffn_gate.weight';

/** Blocks of `type` for `rows` × `cols` values drawn here, and the values they hold (ggml's dequantization). */
function ggufWeight(d: Draw, type: RefType, rows: number, cols: number): { data: Uint8Array; w: Float64Array } {
  const { size, bytes } = REF_BLOCK[type];
  const n = rows * cols, blocks = n / size;
  const values = randomValues(n, d.rand, 0.05);
  const data = new Uint8Array(blocks * bytes);
  const w = new Float64Array(n);
  for (let b = 0; b < blocks; b++) {
    const block = referenceQuantizeBlock(type, values.subarray(b * size, (b + 1) * size));
    data.set(block, b * bytes);
    w.set(referenceDequantizeBlock(type, block), b * size);
  }
  return { data, w };
}

/**
 * A llama GGUF of one layer whose ffn_up (ffn × hidden) a PEFT LoRA on mlp.up_proj changes and whose
 * ffn_gate is copied; the hostile change: a block's f16 scale d made NaN or ±Inf, or the merged or
 * copied tensor's data cut short (the file ending inside it).
 */
function ggufCase(d: Draw, seed: number, index: number, hostileKind: RequantHostility | undefined, hostileMerged: boolean): RequantCase {
  const type = d.pick(GGUF_TYPES);
  const size = REF_BLOCK[type].size;
  const hidden = d.pick(size === 256 ? [256, 512, 768] : [288, 320, 416, 512, 640]);
  const ffn = rowCount(d, hidden, 65536 + 1, 160 * 1024);
  const gate = ggufWeight(d, type, ffn, hidden);
  const up = ggufWeight(d, type, ffn, hidden);
  const hostileName = hostileMerged ? GGUF_UP : GGUF_GATE;
  let cut = false;
  if (hostileKind === 'nan' || hostileKind === 'inf') {
    // The f16 d at the start of a block (Q6_K's and Q3_K's at its end), of the blocks of the tensor made hostile.
    const target = hostileMerged ? up : gate;
    const blockBytes = REF_BLOCK[type].bytes;
    const at = d.int(0, target.data.length / blockBytes - 1) * blockBytes + (type === 'Q6_K' || type === 'Q3_K' ? blockBytes - 2 : 0);
    const bits = hostileKind === 'nan' ? 0x7e00 : d.rand() < 0.5 ? 0x7c00 : 0xfc00;
    target.data[at] = bits & 0xff;
    target.data[at + 1] = bits >> 8;
  } else if (hostileKind && hostileKind !== 'huge') cut = true;
  const r = d.int(1, 16);
  // ΔW of about 0.05·α/r·√r: a huge one from 1e3 (every d an f16) to 1e10 (Q8_0's d = amax/127 past f16 from 8.3e6).
  const alpha = hostileKind === 'huge' ? r * 10 ** d.int(4, 11) : d.pick([r, 2 * r, 16, 32]);
  const lora = peftLoraOn({ [`${L}.mlp.up_proj`]: ffn }, hidden, r, alpha, d.rand);
  const tensors: GgufTensor[] = [
    { name: 'blk.0.ffn_norm.weight', type: 'F32', ne: [hidden], data: new Uint8Array(Float32Array.from({ length: hidden }, () => 1).buffer) },
    { name: GGUF_UP, type, ne: [hidden, ffn], data: up.data },
    { name: GGUF_GATE, type, ne: [hidden, ffn], data: gate.data },
  ];
  // The tensor made hostile goes last, so that the file can end inside its data.
  if (cut && hostileMerged) tensors.push(tensors.splice(1, 1)[0]);
  const heads = 4;
  let file = buildGguf({
    metadata: [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['general.name', { type: 'string', value: 'Tiny Llama' }],
      ['llama.block_count', { type: 'u32', value: 1 }],
      ['llama.context_length', { type: 'u32', value: 2048 }],
      ['llama.embedding_length', { type: 'u32', value: hidden }],
      ['llama.feed_forward_length', { type: 'u32', value: ffn }],
      ['llama.attention.head_count', { type: 'u32', value: heads }],
      ['llama.attention.head_count_kv', { type: 'u32', value: heads }],
      ['llama.rope.freq_base', { type: 'f32', value: 500000 }],
      ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
      ['general.quantization_version', { type: 'u32', value: 2 }],
    ],
    tensors,
  });
  // Past the zeros that pad the last tensor's data to the alignment (32), into its data.
  if (cut) file = file.subarray(0, file.length - (32 - (tensors[tensors.length - 1].data.length % 32)) % 32 - d.int(1, REF_BLOCK[type].bytes * 3));
  const slabBytes = d.int(65536, 220 * 1024) * 4 + (d.rand() < 0.3 ? d.int(1, 3) : 0);
  const hostile = hostileKind ? { kind: hostileKind, module: hostileName, mayMerge: hostileKind === 'huge' || (!hostileMerged && !cut) } : undefined;
  const delta = lora.delta.get(`${L}.mlp.up_proj`)!;
  return {
    label: `case ${index} (seed ${seed}): llama GGUF ${type}, ffn_up ${ffn}×${hidden}, rank ${r}, slab ${slabBytes} B${hostile ? `, hostile: ${cut ? 'file ending inside' : hostile.kind} in ${hostile.module}` : ''}`,
    format: 'gguf', files: { 'model.gguf': file }, adapter: lora.files, output: 'model.gguf', slabBytes, hostile,
    check(bytes) {
      const written = readGguf(bytes);
      const got = new Map(written.tensors.map((t) => [t.name, t]));
      const names = tensors.map((t) => t.name).sort();
      if ([...got.keys()].sort().join() !== names.join()) return `the file holds ${[...got.keys()].sort().join(', ')}, not ${names.join(', ')}`;
      for (const t of tensors) {
        const g = got.get(t.name)!;
        if (g.ne.join() !== t.ne.join()) return `${t.name} has ne ${g.ne}`;
        if (t.name !== GGUF_UP && !Buffer.from(g.data.subarray(0, t.data.length)).equals(Buffer.from(t.data))) return `${t.name} not copied as stored`;
      }
      const { bytes: blockBytes } = REF_BLOCK[type];
      const real = up.w.map((w, i) => w + delta[i]);
      const data = got.get(GGUF_UP)!.data;
      for (let b = 0; b < real.length / size; b++) {
        const want = referenceQuantizeBlock(type, real.subarray(b * size, (b + 1) * size));
        const have = data.subarray(b * blockBytes, (b + 1) * blockBytes);
        if (!Buffer.from(have).equals(Buffer.from(want))) return `${GGUF_UP}: block ${b} differs from ggml's ${type} quantization of W' (${Buffer.from(have).toString('hex').slice(0, 24)}… vs ${Buffer.from(want).toString('hex').slice(0, 24)}…)`;
      }
      return undefined;
    },
  };
}
