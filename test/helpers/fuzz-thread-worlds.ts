/**
 * The thread fuzzer's world (fuzz-threads.test.ts): quantized Llama layers just above the CPU
 * pool's 64 Ki-element floor for sending work to threads (cpu-backend.ts POOL_MIN_ELEMENTS), so
 * that their rows are decoded on the worker threads (formats/row-decoders.ts). Each case draws a
 * format and its parameters (bit width, group or block size, act-order, double quantization,
 * symmetric or not), an odd shape of 64 Ki–200 Ki elements for `q_proj` (the module a PEFT LoRA
 * changes) and a small or large `k_proj` (decoded and written unchanged), an output dtype and a
 * slab size that cuts the rows at odd places; and, for some cases, one hostile change: a NaN or
 * infinite statistic, a statistics or weight tensor one row short, or a weight of another shape.
 * Each case carries its float64 truth, W dequantized by the format's published formula (with the
 * hostile value in it), or null where the change leaves no weight the tool would load.
 *
 * The formats and their formulas (as in quantized-decode-threads*.test.ts and fp4-decode-threads.test.ts):
 *   - bitsandbytes NF4/FP4 (`dequantize_4bit`): T(f32(code[nibble] · absmax[⌊v/blocksize⌋])), high
 *     nibble first, double-quantized absmax = f32(f32(code₂[q] · nested_absmax[⌊j/256⌋]) + offset);
 *   - bitsandbytes LLM.int8 (`int8_vectorwise_dequant`): f32(f32(q · SCB[row]) · f32(1/127));
 *   - mlx affine (`mx.dequantize`): q·scale + bias of the group, codes one little-endian bit stream a row;
 *   - GPTQ (AutoGPTQ v1 zeros): (q[i, o] − (z[g(i), o] + 1)) · scale[g(i), o], g = g_idx or ⌊i/group⌋;
 *   - AWQ GEMM (`dequantize_gemm`): (q[i, o] − z[⌊i/g⌋, o]) · scale[⌊i/g⌋, o], AWQ's nibble order;
 *   - compressed-tensors (`dequantize`): (q[o, i] − z[o, g(i)]) · scale[o, g(i)], packed codes q + 2^(bits−1);
 *   - ModelOpt NVFP4 / ComfyUI nvfp4: f32(e2m1 · f32(e4m3(block scale) · weight_scale_2));
 *   - ComfyUI mxfp8: e4m3(code) · 2^(e − 127);
 *   - gpt-oss MXFP4 experts (transformers' convert_moe_packed_tensors): the parameter (E, in, out) is
 *     FP4_VALUES[code] · 2^(scale − 127), code 2k of a block in the low nibble of byte k, changed by
 *     PEFT's target_parameters LoRA (s·Σ_k B[o][k·E + e]·A[e·r + k][i]).
 */
import { fourBitStats, fourBitTruth, NF4, FP4 } from './bnb-tables.js';
import { blockedOrder, comfyNvfp4Value, e4m3Value, e8m0Value, modelOptNvfp4Value } from './e4m3-by-hand.js';
import { buildSafetensors, encodeValues, randomValues, roundForDType, seededRandom, type FixtureTensor } from './fixtures.js';
import { AWQ_ORDER, compressedTensorsConfig, pack, packGptq3 } from './int-packing.js';

export const THREAD_FORMATS = [
  'bnb-nf4', 'bnb-fp4', 'bnb-int8', 'mlx-affine', 'gptq', 'awq', 'ct-packed', 'ct-int8', 'modelopt-nvfp4', 'comfy-nvfp4', 'comfy-mxfp8', 'gpt-oss-mxfp4',
] as const;
export type ThreadFormat = (typeof THREAD_FORMATS)[number];

/** The hostile changes a case may carry. */
export type Hostility = 'nan' | 'inf' | 'short-stats' | 'short-weight' | 'wide-weight';

const L = 'model.layers.0';
export const Q = `${L}.self_attn.q_proj`;
export const K = `${L}.self_attn.k_proj`;

type Files = Record<string, Uint8Array | string>;

/** One generated case. */
export interface ThreadCase {
  /** Names the case (format, parameters, shapes, slab, change) at the head of every failure. */
  label: string;
  format: ThreadFormat;
  files: Files;
  adapter: Files;
  outDtype: 'f16' | 'bf16';
  slabBytes: number;
  /** Outputs of each Llama module (q_proj, k_proj); the experts' shapes are in `real`. */
  rows: Record<string, number>;
  cols: number;
  /** The hostile change, if any, and the module it was made in (the refusal names it). */
  hostile?: { kind: Hostility; module: string };
  /**
   * Per written weight, its shape, W in float64 (the hostile value included) and ΔW where the
   * adapter changes it; null where the files hold no loadable weight.
   */
  real: Map<string, Truth> | null;
  /** Zeros compared without sign (a −0 code under a merge's 0 + W). */
  unsignedZeros: boolean;
}

/** A written weight's truth. */
export interface Truth {
  shape: number[];
  w: Float64Array;
  delta?: Float64Array;
}

/** The options that pick what cases are drawn. */
export interface ThreadWorldOptions {
  /** Only these formats. */
  formats?: readonly ThreadFormat[];
  /** The share of cases with a hostile change (0…1). */
  hostileShare?: number;
}

const f32Bytes = (values: ArrayLike<number>) => new Uint8Array(Float32Array.from(values).buffer);
const jsonBytes = (value: object) => new TextEncoder().encode(JSON.stringify(value));

/** A case's random draws. */
interface Draw {
  rand: () => number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
}

interface ModuleOut {
  tensors: FixtureTensor[];
  w: Float64Array;
  /** The tool refuses the weight's values (mlx: one not exact in f32). */
  refused?: boolean;
}

/** Sets one random element of `values` to the hostile value (NaN or ±Inf); returns its index. */
function poison(d: Draw, values: number[], kind: 'nan' | 'inf'): number {
  const at = d.int(0, values.length - 1);
  values[at] = kind === 'nan' ? NaN : d.rand() < 0.5 ? Infinity : -Infinity;
  return at;
}

/** The format's parameters for a case, and its builder of one module of `rows` outputs. */
interface FormatPlan {
  name: string;
  /** Allowed column counts and row multiple. */
  cols: readonly number[];
  rowMultiple: number;
  /** Its dequantized values of one module of `rows` outputs, the hostile value put into its statistics where `scaleKind` says. */
  build(m: string, rows: number, cols: number, scaleKind: 'nan' | 'inf' | undefined): ModuleOut;
  config: Record<string, unknown>;
  extraFiles?: Files;
  unsignedZeros?: boolean;
}

function bnbFourBit(d: Draw, type: 'nf4' | 'fp4'): FormatPlan {
  const blocksize = d.pick([64, 128, 256, 512, 1024]);
  const dtype = d.pick(['BF16', 'F16'] as const);
  const nested = d.rand() < 0.5;
  const code = type === 'nf4' ? NF4 : FP4;
  return {
    name: `bitsandbytes ${type} blocksize ${blocksize} ${dtype}${nested ? ' double-quantized' : ''}`,
    // Odd rows of odd columns: a slab's piece may start on a byte's low nibble.
    cols: [448, 512, 576, 640, 768, 960, 577, 705],
    rowMultiple: 1,
    build(m, rows, cols, scaleKind) {
      const name = `${m}.weight`;
      const n = rows * cols;
      const blocks = Math.ceil(n / blocksize);
      // ⌈n/2⌉ bytes: an odd count's last low nibble is padding (zero, as torch packs it).
      const packed = Uint8Array.from({ length: Math.ceil(n / 2) }, (_, k) => (2 * k + 1 < n ? d.int(0, 255) : d.int(0, 15) << 4));
      const state: Record<string, unknown> = { quant_type: type, blocksize, dtype: dtype === 'BF16' ? 'bfloat16' : 'float16', shape: [rows, cols] };
      const { absmax, stats, state: nestedState } = fourBitStats(name, blocks, nested, d, scaleKind ? (values) => poison(d, values, scaleKind) : undefined);
      Object.assign(state, nestedState);
      const w = fourBitTruth(packed, n, code, absmax, blocksize, dtype);
      const tensors: FixtureTensor[] = [
        { name, dtype: 'U8', shape: [packed.length, 1], data: packed }, ...stats,
        { name: `${name}.quant_map`, dtype: 'F32', shape: [16], data: f32Bytes(code) },
        { name: `${name}.quant_state.bitsandbytes__${type}`, dtype: 'U8', shape: [jsonBytes(state).length], data: jsonBytes(state) },
      ];
      return { tensors, w };
    },
    config: {
      torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float16',
      quantization_config: {
        quant_method: 'bitsandbytes', load_in_4bit: true, load_in_8bit: false, bnb_4bit_quant_type: type, bnb_4bit_use_double_quant: nested,
        bnb_4bit_compute_dtype: 'bfloat16', bnb_4bit_quant_storage: 'uint8', llm_int8_threshold: 6.0,
      },
    },
  };
}

function bnbInt8(d: Draw): FormatPlan {
  const inv127 = Math.fround(7.874015718698502e-3);
  return {
    name: 'bitsandbytes LLM.int8',
    cols: [448, 512, 576, 640, 768, 960, 1000],
    rowMultiple: 1,
    build(m, rows, cols, scaleKind) {
      const q = Array.from({ length: rows * cols }, () => d.int(-127, 127));
      const scb = Array.from({ length: rows }, () => Math.fround(0.05 + d.rand() * 0.2));
      if (scaleKind) poison(d, scb, scaleKind);
      const w = Float64Array.from(q, (x, i) => Math.fround(Math.fround(x * scb[Math.floor(i / cols)]) * inv127));
      return {
        w,
        tensors: [
          { name: `${m}.SCB`, dtype: 'F32', shape: [rows], data: f32Bytes(scb) },
          { name: `${m}.weight`, dtype: 'I8', shape: [rows, cols], data: q },
          { name: `${m}.weight_format`, dtype: 'U8', shape: [], data: [0] },
        ],
      };
    },
    config: { torch_dtype: 'float16', quantization_config: { quant_method: 'bitsandbytes', load_in_4bit: false, load_in_8bit: true, llm_int8_threshold: 6.0, llm_int8_has_fp16_weight: false } },
  };
}

/** Codes as mlx packs a row: one little-endian bit stream over uint32 words. */
function mlxPack(codes: ArrayLike<number>, rows: number, cols: number, bits: number): Int32Array {
  const words = (cols * bits) / 32;
  const out = new Int32Array(rows * words);
  for (let o = 0; o < rows; o++) for (let i = 0; i < cols; i++) {
    const c = codes[o * cols + i];
    for (let b = 0; b < bits; b++) {
      if ((c >> b) & 1) {
        const bit = bits * i + b;
        out[o * words + (bit >>> 5)] |= 1 << (bit & 31);
      }
    }
  }
  return out;
}

function mlxAffine(d: Draw): FormatPlan {
  const bits = d.pick([2, 3, 4, 5, 6, 8]);
  const groupSize = d.pick([32, 64, 128]);
  return {
    name: `mlx affine ${bits}-bit group ${groupSize}`,
    cols: [512, 640, 768, 1024],
    rowMultiple: 1,
    build(m, rows, cols, scaleKind) {
      const groups = cols / groupSize;
      const codes = Uint8Array.from({ length: rows * cols }, () => d.int(0, 2 ** bits - 1));
      // bf16 scales of 2^-9…2^-8 and biases of ±2^-6…2^-5: q·scale + bias exact in f32, as mlx's are.
      const scales = Array.from({ length: rows * groups }, () => roundForDType(2 ** -9 * (1 + d.rand()), 'BF16'));
      const biases = Array.from({ length: rows * groups }, () => roundForDType((d.rand() < 0.5 ? -1 : 1) * 2 ** -6 * (1 + d.rand() * 0.99), 'BF16'));
      // A NaN case's value, half the time, is a bias far below its scales (2^-40): q·scale + bias is
      // then not exact in f32, which the decoder itself refuses, on whichever thread decodes it.
      const inexact = scaleKind === 'nan' && d.rand() < 0.5;
      if (inexact) biases[d.int(0, biases.length - 1)] = 2 ** -40;
      else if (scaleKind) poison(d, d.rand() < 0.5 ? scales : biases, scaleKind);
      const w = Float64Array.from(codes, (q, v) => {
        const g = Math.floor(v / cols) * groups + Math.floor((v % cols) / groupSize);
        return q * scales[g] + biases[g];
      });
      const refused = inexact && w.some((x) => Math.fround(x) !== x);
      const packed = mlxPack(codes, rows, cols, bits);
      return {
        w, refused,
        tensors: [
          { name: `${m}.biases`, dtype: 'BF16', shape: [rows, groups], data: biases },
          { name: `${m}.scales`, dtype: 'BF16', shape: [rows, groups], data: scales },
          { name: `${m}.weight`, dtype: 'U32', shape: [rows, (cols * bits) / 32], data: new Uint8Array(packed.buffer) },
        ],
      };
    },
    config: { quantization: { group_size: groupSize, bits }, quantization_config: { group_size: groupSize, bits } },
  };
}

/** An act-order `g_idx`: each input's group, a random permutation of group-sized runs. */
function actOrderGroups(d: Draw, cols: number, group: number): number[] {
  const order = Array.from({ length: cols }, (_, i) => i);
  for (let i = cols - 1; i > 0; i--) {
    const j = Math.floor(d.rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order.map((j) => Math.floor(j / group));
}

const f16Scale = (d: Draw) => roundForDType(0.0005 + d.rand() * 0.02, 'F16');

function gptq(d: Draw): FormatPlan {
  const bits = d.pick([2, 3, 4, 4, 8]);
  const group = d.pick([32, 64, 128]);
  const descAct = d.rand() < 0.5;
  return {
    name: `GPTQ ${bits}-bit group ${group}${descAct ? ' desc_act' : ''}`,
    cols: [512, 640, 768, 1024],
    // 3-bit zeros pack runs of 32 outputs; the others whole words of outputs.
    rowMultiple: bits === 3 ? 32 : 32 / bits,
    build(m, rows, cols, scaleKind) {
      const groups = cols / group;
      const gIdx = descAct ? actOrderGroups(d, cols, group) : Array.from({ length: cols }, (_, i) => Math.floor(i / group));
      const top = 2 ** bits - 1;
      const q = Array.from({ length: cols * rows }, () => d.int(0, top)); // (in, out)
      const z = Array.from({ length: groups * rows }, () => d.int(1, top)); // v1 stores z − 1
      const scale = Array.from({ length: groups * rows }, () => f16Scale(d));
      if (scaleKind) poison(d, scale, scaleKind);
      const w = new Float64Array(rows * cols);
      for (let o = 0; o < rows; o++) for (let i = 0; i < cols; i++) w[o * cols + i] = (q[i * rows + o] - z[gIdx[i] * rows + o]) * scale[gIdx[i] * rows + o];
      const packed = bits === 3 ? packGptq3(q, cols, rows, 'rows') : pack(q, cols, rows, bits, 'rows');
      const zeros = bits === 3 ? packGptq3(z.map((x) => x - 1), groups, rows, 'cols') : pack(z.map((x) => x - 1), groups, rows, bits, 'cols');
      const tensors: FixtureTensor[] = [
        { name: `${m}.qweight`, dtype: 'I32', ...packed },
        { name: `${m}.qzeros`, dtype: 'I32', ...zeros },
        { name: `${m}.scales`, dtype: 'F16', shape: [groups, rows], data: scale },
      ];
      if (descAct) tensors.push({ name: `${m}.g_idx`, dtype: 'I32', shape: [cols], data: gIdx });
      return { tensors, w };
    },
    config: {
      torch_dtype: 'float16',
      quantization_config: {
        bits, checkpoint_format: 'gptq', damp_percent: 0.1, desc_act: descAct, group_size: group, model_file_base_name: null,
        model_name_or_path: null, quant_method: 'gptq', static_groups: false, sym: false, true_sequential: true,
      },
    },
  };
}

function awq(d: Draw): FormatPlan {
  const group = d.pick([32, 64, 128]);
  return {
    name: `AWQ GEMM 4-bit group ${group}`,
    cols: [512, 640, 768, 1024],
    rowMultiple: 8,
    build(m, rows, cols, scaleKind) {
      const groups = cols / group;
      const q = Array.from({ length: cols * rows }, () => d.int(0, 15));
      const z = Array.from({ length: groups * rows }, () => d.int(0, 15));
      const scale = Array.from({ length: groups * rows }, () => f16Scale(d));
      if (scaleKind) poison(d, scale, scaleKind);
      const w = new Float64Array(rows * cols);
      for (let o = 0; o < rows; o++) for (let i = 0; i < cols; i++) {
        const g = Math.floor(i / group);
        w[o * cols + i] = (q[i * rows + o] - z[g * rows + o]) * scale[g * rows + o];
      }
      return {
        w,
        tensors: [
          { name: `${m}.qweight`, dtype: 'I32', ...pack(q, cols, rows, 4, 'cols', AWQ_ORDER) },
          { name: `${m}.qzeros`, dtype: 'I32', ...pack(z, groups, rows, 4, 'cols', AWQ_ORDER) },
          { name: `${m}.scales`, dtype: 'F16', shape: [groups, rows], data: scale },
        ],
      };
    },
    config: { torch_dtype: 'float16', quantization_config: { bits: 4, group_size: group, modules_to_not_convert: null, quant_method: 'awq', version: 'gemm', zero_point: true } },
  };
}


function ctPacked(d: Draw): FormatPlan {
  const bits = d.pick([4, 8]);
  const group = d.pick([32, 64, 128]);
  const actOrder = d.rand() < 0.4;
  const symmetric = d.rand() < 0.5;
  return {
    name: `compressed-tensors pack-quantized ${bits}-bit group ${group}${symmetric ? ' symmetric' : ''}${actOrder ? ' act-order' : ''}`,
    cols: [512, 640, 768, 1024],
    rowMultiple: symmetric ? 1 : 32 / bits,
    build(m, rows, cols, scaleKind) {
      const groups = cols / group;
      const half = 2 ** (bits - 1);
      const gIdx = actOrder ? actOrderGroups(d, cols, group) : Array.from({ length: cols }, (_, i) => Math.floor(i / group));
      const q = Array.from({ length: rows * cols }, () => d.int(-half, half - 1));
      const z = symmetric ? new Array<number>(rows * groups).fill(0) : Array.from({ length: rows * groups }, () => d.int(-half, half - 1));
      const scale = Array.from({ length: rows * groups }, () => roundForDType(0.0005 + d.rand() * 0.02, 'BF16'));
      if (scaleKind) poison(d, scale, scaleKind);
      const w = new Float64Array(rows * cols);
      for (let o = 0; o < rows; o++) for (let i = 0; i < cols; i++) w[o * cols + i] = (q[o * cols + i] - z[o * groups + gIdx[i]]) * scale[o * groups + gIdx[i]];
      const tensors: FixtureTensor[] = [
        { name: `${m}.weight_packed`, dtype: 'I32', ...pack(q.map((x) => x + half), rows, cols, bits, 'cols') },
        { name: `${m}.weight_scale`, dtype: 'BF16', shape: [rows, groups], data: scale },
        { name: `${m}.weight_shape`, dtype: 'I64', shape: [2], data: [rows, cols] },
      ];
      if (!symmetric) tensors.push({ name: `${m}.weight_zero_point`, dtype: 'I32', ...pack(z.map((x) => x + half), rows, groups, bits, 'rows') });
      if (actOrder) tensors.push({ name: `${m}.weight_g_idx`, dtype: 'I32', shape: [cols], data: gIdx });
      return { tensors, w };
    },
    config: {
      torch_dtype: 'bfloat16',
      quantization_config: compressedTensorsConfig('pack-quantized', { actorder: actOrder ? 'group' : null, group_size: group, num_bits: bits, strategy: 'group', symmetric }),
    },
  };
}

function ctInt8(d: Draw): FormatPlan {
  const grouped = d.rand() < 0.5;
  const group = grouped ? d.pick([64, 128]) : 0;
  return {
    name: `compressed-tensors int-quantized W8A16 ${grouped ? `group ${group}` : 'channel'}`,
    cols: [512, 640, 768, 1024],
    rowMultiple: 1,
    build(m, rows, cols, scaleKind) {
      const groups = grouped ? cols / group : 1;
      const q = Array.from({ length: rows * cols }, () => d.int(-128, 127));
      const scale = Array.from({ length: rows * groups }, () => roundForDType(0.0005 + d.rand() * 0.02, 'BF16'));
      if (scaleKind) poison(d, scale, scaleKind);
      const w = Float64Array.from(q, (x, i) => x * scale[Math.floor(i / cols) * groups + (grouped ? Math.floor((i % cols) / group) : 0)]);
      return {
        w,
        tensors: [
          { name: `${m}.weight`, dtype: 'I8', shape: [rows, cols], data: q },
          { name: `${m}.weight_scale`, dtype: 'BF16', shape: [rows, groups], data: scale },
        ],
      };
    },
    config: {
      torch_dtype: 'bfloat16',
      quantization_config: compressedTensorsConfig('int-quantized', { actorder: null, group_size: grouped ? group : null, num_bits: 8, strategy: grouped ? 'group' : 'channel', symmetric: true }),
    },
  };
}

/** e4m3 block-scale bytes as trained weights have them, with its edges now and then. */
function scaleByte(d: Draw): number {
  const u = d.rand();
  if (u < 0.02) return 0x00;
  if (u < 0.04) return 0x01;
  if (u < 0.06) return 0x7e;
  return 0x28 + Math.floor(d.rand() * 0x30);
}

function nvfp4(d: Draw, comfy: boolean): FormatPlan {
  return {
    name: comfy ? 'ComfyUI nvfp4 (comfy_quant)' : 'ModelOpt NVFP4 group 16',
    cols: [512, 640, 768, 1024],
    rowMultiple: comfy ? 16 : 1, // ComfyUI's nvfp4 rows come in 16s
    build(m, rows, cols, scaleKind) {
      const blocks = cols / 16;
      const codes = Uint8Array.from({ length: rows * cols }, () => Math.floor(d.rand() * 16));
      const scales = Array.from({ length: rows * blocks }, () => scaleByte(d));
      const s2 = [Math.fround(0.000123 + d.rand() * 0.0001)];
      // The hostile value: E4M3FN's NaN byte as a block scale, or a NaN/Inf weight_scale_2.
      if (scaleKind === 'nan' && d.rand() < 0.5) scales[d.int(0, scales.length - 1)] = d.pick([0x7f, 0xff]);
      else if (scaleKind) poison(d, s2, scaleKind);
      const value = comfy ? comfyNvfp4Value : modelOptNvfp4Value;
      const w = Float64Array.from(codes, (code, i) => value(code, scales[Math.floor(i / cols) * blocks + Math.floor((i % cols) / 16)], s2[0]));
      const packedCodes = Uint8Array.from({ length: (rows * cols) / 2 }, (_, k) => (comfy ? (codes[2 * k] << 4) | codes[2 * k + 1] : codes[2 * k] | (codes[2 * k + 1] << 4)));
      const tensors: FixtureTensor[] = [{ name: `${m}.weight`, dtype: 'U8', shape: [rows, cols / 2], data: packedCodes }];
      if (comfy) {
        const { order, shape } = blockedOrder(rows, blocks);
        const config = Array.from(new TextEncoder().encode('{"format": "nvfp4"}'));
        tensors.push(
          { name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : scales[at])) },
          { name: `${m}.weight_scale_2`, dtype: 'F32', shape: [], data: f32Bytes(s2) },
          { name: `${m}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
        );
      } else {
        tensors.push(
          { name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape: [rows, blocks], data: Uint8Array.from(scales) },
          { name: `${m}.weight_scale_2`, dtype: 'F32', shape: [], data: f32Bytes(s2) },
          { name: `${m}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.02)] },
        );
      }
      return { tensors, w };
    },
    config: { torch_dtype: 'bfloat16' },
    ...(comfy ? {} : { extraFiles: { 'hf_quant_config.json': JSON.stringify({ producer: { name: 'modelopt', version: '0.29.0' }, quantization: { quant_algo: 'NVFP4', kv_cache_quant_algo: null, group_size: 16, exclude_modules: ['lm_head'] } }) } }),
  };
}

function mxfp8(d: Draw): FormatPlan {
  return {
    name: 'ComfyUI mxfp8 (comfy_quant)',
    cols: [512, 640, 768, 1024],
    rowMultiple: 32, // ComfyUI's mxfp8 rows come in 32s
    unsignedZeros: true,
    build(m, rows, cols, scaleKind) {
      const blocks = cols / 32;
      // Any byte but E4M3FN's NaNs, unless hostile.
      const codes = Uint8Array.from({ length: rows * cols }, () => {
        const b = Math.floor(d.rand() * 254);
        return b >= 0x7f ? b + 1 : b;
      });
      const exponents = Array.from({ length: rows * blocks }, () => (d.rand() < 0.02 ? 0 : 112 + Math.floor(d.rand() * 8)));
      if (scaleKind === 'nan') codes[d.int(0, codes.length - 1)] = d.pick([0x7f, 0xff]);
      else if (scaleKind) exponents[d.int(0, exponents.length - 1)] = d.pick([254, 255]);
      const w = Float64Array.from(codes, (code, i) => e4m3Value(code) * e8m0Value(exponents[Math.floor(i / cols) * blocks + Math.floor((i % cols) / 32)]));
      const { order, shape } = blockedOrder(rows, blocks);
      const config = Array.from(new TextEncoder().encode('{"format": "mxfp8"}'));
      return {
        w,
        tensors: [
          { name: `${m}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], data: codes },
          { name: `${m}.weight_scale`, dtype: 'U8', shape, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : exponents[at])) },
          { name: `${m}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
        ],
      };
    },
    config: { torch_dtype: 'bfloat16' },
  };
}

function planFor(d: Draw, format: Exclude<ThreadFormat, 'gpt-oss-mxfp4'>): FormatPlan {
  switch (format) {
    case 'bnb-nf4': return bnbFourBit(d, 'nf4');
    case 'bnb-fp4': return bnbFourBit(d, 'fp4');
    case 'bnb-int8': return bnbInt8(d);
    case 'mlx-affine': return mlxAffine(d);
    case 'gptq': return gptq(d);
    case 'awq': return awq(d);
    case 'ct-packed': return ctPacked(d);
    case 'ct-int8': return ctInt8(d);
    case 'modelopt-nvfp4': return nvfp4(d, false);
    case 'comfy-nvfp4': return nvfp4(d, true);
    case 'comfy-mxfp8': return mxfp8(d);
  }
}

/** A row count of `multiple`s with rows × cols in [lo, hi], odd where the multiple allows. */
function rowCount(d: Draw, cols: number, multiple: number, lo: number, hi: number): number {
  const min = Math.ceil(lo / cols / multiple), max = Math.max(min, Math.floor(hi / cols / multiple));
  let k = d.int(min, max);
  if (k % 2 === 0 && k + 1 <= max && d.rand() < 0.8) k++;
  return k * multiple;
}

/** Case `index` of the run seeded `seed`. */
export function threadCase(seed: number, index: number, options: ThreadWorldOptions = {}): ThreadCase {
  const rand = seededRandom((seed * 7919 + index * 104729) >>> 0);
  const d: Draw = {
    rand,
    int: (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(rand() * xs.length)],
  };
  const format = d.pick(options.formats ?? THREAD_FORMATS);
  if (format === 'gpt-oss-mxfp4') return gptOssCase(d, seed, index, options);
  const plan = planFor(d, format);
  const cols = d.pick(plan.cols);
  // q_proj just above the pool's floor (64 Ki elements) up to 200 Ki; k_proj below it or above.
  const qRows = rowCount(d, cols, plan.rowMultiple, 65536 + 1, 200 * 1024);
  const kRows = d.rand() < 0.5 ? rowCount(d, cols, plan.rowMultiple, 8 * cols, 48 * cols) : rowCount(d, cols, plan.rowMultiple, 65536 + 1, 160 * 1024);
  const rows: Record<string, number> = { [Q]: qRows, [K]: kRows };
  const hostileKind: Hostility | undefined = d.rand() < (options.hostileShare ?? 0.3) ? d.pick(['nan', 'inf', 'short-stats', 'short-weight', 'wide-weight'] as const) : undefined;
  const hostileModule = d.rand() < 0.7 ? Q : K;
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Truth>();
  let loadable = true;
  for (const m of [Q, K]) {
    const scaleKind = m === hostileModule && (hostileKind === 'nan' || hostileKind === 'inf') ? hostileKind : undefined;
    const built = plan.build(m, rows[m], cols, scaleKind);
    real.set(`${m}.weight`, { shape: [rows[m], cols], w: built.w });
    tensors.push(...built.tensors);
    if (built.refused) loadable = false;
  }
  if (hostileKind === 'short-stats' || hostileKind === 'short-weight' || hostileKind === 'wide-weight') {
    const own = tensors.filter((t) => t.name.startsWith(`${hostileModule}.`) && t.shape.length > 0 && !t.name.includes('quant_state') && !t.name.endsWith('comfy_quant'));
    const weight = own.filter((t) => /\.(weight|qweight|weight_packed)$/.test(t.name));
    const stats = own.filter((t) => !weight.includes(t));
    const target = hostileKind === 'short-stats' && stats.length ? d.pick(stats) : d.pick(weight);
    const at = tensors.indexOf(target);
    // GPTQ's and AWQ's qweight are stored (in, out/p): the change goes to their outputs, which their
    // scales must match (one input word fewer is read as a ragged last group, as AutoGPTQ reads one).
    tensors[at] = target.name.endsWith('.qweight') ? lastDimension(target, hostileKind === 'wide-weight' ? 1 : -1) : hostileKind === 'wide-weight' ? widened(target) : shortened(target);
    loadable = false;
  }
  const delta = loraDelta(d, qRows, cols);
  real.get(`${Q}.weight`)!.delta = delta.delta;
  const outDtype = d.pick(['f16', 'bf16'] as const);
  // A slab of 64 Ki–220 Ki f32 values, odd in bytes now and then: its rows cut where they fall.
  const slabBytes = d.int(65536, 220 * 1024) * 4 + (d.rand() < 0.3 ? d.int(1, 3) : 0);
  const config = JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: cols, intermediate_size: 4 * cols, num_attention_heads: 8, num_hidden_layers: 1,
    torch_dtype: 'bfloat16', ...plan.config,
  });
  const hostile = hostileKind ? { kind: hostileKind, module: hostileModule } : undefined;
  return {
    label: `case ${index} (seed ${seed}): ${plan.name}, q_proj ${qRows}×${cols}, k_proj ${kRows}×${cols}, out ${outDtype}, slab ${slabBytes} B${hostile ? `, hostile: ${hostile.kind} in ${hostile.module}` : ''}`,
    format, files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': config, ...plan.extraFiles }, adapter: delta.files, outDtype, slabBytes,
    rows, cols, hostile, real: loadable ? real : null, unsignedZeros: !!plan.unsignedZeros,
  };
}

/** The tensor's data as bytes. */
function bytesOf(t: FixtureTensor): Uint8Array {
  return t.data instanceof Uint8Array ? t.data : encodeValues(t.data, t.dtype);
}

/** The tensor one row (its first dimension) short, bytes and shape alike. */
function shortened(t: FixtureTensor): FixtureTensor {
  const bytes = bytesOf(t);
  const rowBytes = bytes.length / t.shape[0];
  return { ...t, shape: [t.shape[0] - 1, ...t.shape.slice(1)], data: bytes.slice(0, bytes.length - rowBytes) };
}

/** The tensor with one column (its last dimension) more (+1) or fewer (−1), each row's bytes kept. */
function lastDimension(t: FixtureTensor, change: 1 | -1): FixtureTensor {
  const bytes = bytesOf(t);
  const rows = t.shape[0], rowBytes = bytes.length / rows, width = rowBytes / t.shape[t.shape.length - 1];
  const newRow = rowBytes + change * width;
  const data = new Uint8Array(rows * newRow);
  for (let r = 0; r < rows; r++) data.set(bytes.subarray(r * rowBytes, r * rowBytes + Math.min(rowBytes, newRow)), r * newRow);
  return { ...t, shape: [...t.shape.slice(0, -1), t.shape[t.shape.length - 1] + change], data };
}

/** The weight with one more row: its shape no longer that of its statistics. */
function widened(t: FixtureTensor): FixtureTensor {
  const bytes = bytesOf(t);
  const rowBytes = bytes.length / t.shape[0];
  const data = new Uint8Array(bytes.length + rowBytes);
  data.set(bytes);
  data.set(bytes.subarray(0, rowBytes), bytes.length);
  return { ...t, shape: [t.shape[0] + 1, ...t.shape.slice(1)], data };
}

/** A PEFT LoRA on q_proj (rank 1…16, f32 factors) and its ΔW = α/r·B·A in float64. */
function loraDelta(d: Draw, rows: number, cols: number): { files: Files; delta: Float64Array } {
  const r = d.int(1, 16);
  const alpha = d.pick([r, 2 * r, 16, 32]);
  const a = Array.from(randomValues(r * cols, d.rand, 0.3), Math.fround);
  const b = Array.from(randomValues(rows * r, d.rand, 0.3), Math.fround);
  const delta = new Float64Array(rows * cols);
  for (let o = 0; o < rows; o++) for (let k = 0; k < r; k++) {
    const bk = (alpha / r) * b[o * r + k];
    if (bk === 0) continue;
    for (let i = 0; i < cols; i++) delta[o * cols + i] += bk * a[k * cols + i];
  }
  const tensors: FixtureTensor[] = [
    { name: `base_model.model.${Q}.lora_A.weight`, dtype: 'F32', shape: [r, cols], data: a },
    { name: `base_model.model.${Q}.lora_B.weight`, dtype: 'F32', shape: [rows, r], data: b },
  ];
  return {
    files: {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: alpha, target_modules: ['q_proj'], bias: 'none', fan_in_fan_out: false }),
      'adapter_model.safetensors': buildSafetensors(tensors),
    },
    delta,
  };
}

/** transformers' FP4_VALUES: e2m1 by its 4-bit code, sign in bit 3. */
const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
const EXPERTS = 'model.layers.0.mlp.experts';

/**
 * A gpt-oss layer's MXFP4 experts (E of them; hidden H, intermediate I, both multiples of 32),
 * `gate_up_proj` (E, H, 2I) and `down_proj` (E, I, H) stored as `_blocks` U8 (E, out, in/32, 16)
 * and `_scales` U8 (E, out, in/32), with a PEFT 0.17 target_parameters LoRA on both.
 */
function gptOssCase(d: Draw, seed: number, index: number, options: ThreadWorldOptions): ThreadCase {
  // Big enough that a slab holds the 64 Ki f32 words (128 Ki bf16 values) the pool wants.
  const E = d.int(2, 3), H = d.pick([256, 320, 384]), I = d.pick([192, 224, 256]);
  const r = d.int(1, 4), alpha = d.pick([r, 2 * r, 8]);
  const hostileKind: Hostility | undefined = d.rand() < (options.hostileShare ?? 0.3) ? d.pick(['nan', 'inf', 'short-stats', 'short-weight', 'wide-weight'] as const) : undefined;
  const hostileParam = d.pick(['gate_up_proj', 'down_proj'] as const);
  const tensors: FixtureTensor[] = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [40, H], data: randomValues(40 * H, d.rand, 0.1) },
    { name: `${L}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [64, H], data: randomValues(64 * H, d.rand, 0.1) },
    { name: `${L}.mlp.router.weight`, dtype: 'BF16', shape: [E, H], data: randomValues(E * H, d.rand, 0.1) },
  ];
  const adapter: FixtureTensor[] = [];
  const real = new Map<string, Truth>();
  // Scale bytes as trained weights have them (2^-10 … 2^-3), a few tiny ones (bf16 subnormals) and a few large.
  const scale = () => {
    const u = d.rand();
    return u < 0.03 ? d.int(0, 2) : u < 0.05 ? d.int(127, 130) : d.int(117, 124);
  };
  let loadable = true;
  for (const [param, out, inF, wrapper] of [['gate_up_proj', 2 * I, H, `${EXPERTS}.base_layer`], ['down_proj', H, I, EXPERTS]] as const) {
    const groups = inF / 32;
    const blocks = Uint8Array.from({ length: E * out * groups * 16 }, () => d.int(0, 255));
    const scales = Uint8Array.from({ length: E * out * groups }, scale);
    // E8M0's NaN (255), or a scale whose blocks overflow bf16 (254), both refused by the reader.
    if (param === hostileParam && (hostileKind === 'nan' || hostileKind === 'inf')) {
      const at = d.int(0, scales.length - 1);
      scales[at] = hostileKind === 'nan' ? 255 : 254;
      // A block of 254 overflows only where a code is 1.5 or more: one is put there.
      if (hostileKind === 'inf') blocks[at * 16 + d.int(0, 15)] |= 0x07;
      loadable = false;
    }
    const w = new Float64Array(E * inF * out);
    for (let e = 0; e < E; e++) for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
      const g = Math.floor(i / 32);
      const byte = blocks[((e * out + o) * groups + g) * 16 + Math.floor((i % 32) / 2)];
      w[(e * inF + i) * out + o] = E2M1[i % 2 === 0 ? byte & 15 : byte >> 4] * 2 ** (scales[(e * out + o) * groups + g] - 127);
    }
    const a = Array.from(randomValues(r * E * inF, d.rand, 0.3), Math.fround);
    const b = Array.from(randomValues(out * r * E, d.rand, 0.3), Math.fround);
    const delta = new Float64Array(E * inF * out);
    for (let e = 0; e < E; e++) for (let i = 0; i < inF; i++) for (let o = 0; o < out; o++) {
      let sum = 0;
      for (let k = 0; k < r; k++) sum += b[o * r * E + k * E + e] * a[(e * r + k) * inF + i];
      delta[(e * inF + i) * out + o] = (alpha / r) * sum;
    }
    real.set(`${EXPERTS}.${param}`, { shape: [E, inF, out], w, delta });
    tensors.push(
      { name: `${EXPERTS}.${param}_blocks`, dtype: 'U8', shape: [E, out, groups, 16], data: blocks },
      { name: `${EXPERTS}.${param}_scales`, dtype: 'U8', shape: [E, out, groups], data: scales },
      { name: `${EXPERTS}.${param}_bias`, dtype: 'BF16', shape: [E, out], data: randomValues(E * out, d.rand, 0.1) },
    );
    adapter.push(
      { name: `base_model.model.${wrapper}.lora_A.weight`, dtype: 'F32', shape: [r * E, inF], data: a },
      { name: `base_model.model.${wrapper}.lora_B.weight`, dtype: 'F32', shape: [out, r * E], data: b },
    );
  }
  if (hostileKind === 'short-stats' || hostileKind === 'short-weight' || hostileKind === 'wide-weight') {
    const at = tensors.findIndex((t) => t.name === `${EXPERTS}.${hostileParam}_${hostileKind === 'short-stats' ? 'scales' : 'blocks'}`);
    // One output fewer (or more) in every expert: the second dimension.
    const t = tensors[at];
    const bytes = t.data as Uint8Array;
    const [e, out] = t.shape;
    const perOut = bytes.length / (e * out), change = hostileKind === 'wide-weight' ? 1 : -1;
    const data = new Uint8Array(e * (out + change) * perOut);
    for (let x = 0; x < e; x++) data.set(bytes.subarray(x * out * perOut, (x * out + Math.min(out, out + change)) * perOut), x * (out + change) * perOut);
    tensors[at] = { ...t, shape: [e, out + change, ...t.shape.slice(2)], data };
    loadable = false;
  }
  const config = JSON.stringify({
    architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', torch_dtype: 'bfloat16', hidden_size: H, intermediate_size: I,
    num_hidden_layers: 1, num_local_experts: E, experts_per_token: Math.min(2, E), num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16,
    vocab_size: 40, tie_word_embeddings: true, swiglu_limit: 7.0, layer_types: ['full_attention'],
    quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'] },
  });
  const slabBytes = d.int(140_000, 400_000) * 2 + (d.rand() < 0.3 ? d.int(1, 3) : 0);
  const hostile = hostileKind ? { kind: hostileKind, module: `${EXPERTS}.${hostileParam}` } : undefined;
  return {
    label: `case ${index} (seed ${seed}): gpt-oss MXFP4 experts, E ${E}, H ${H}, I ${I}, rank ${r}, out bf16, slab ${slabBytes} B${hostile ? `, hostile: ${hostile.kind} in ${hostile.module}` : ''}`,
    format: 'gpt-oss-mxfp4',
    files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': config },
    adapter: {
      'adapter_config.json': JSON.stringify({
        peft_type: 'LORA', r, lora_alpha: alpha, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', target_modules: [],
        target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj'], peft_version: '0.17.1',
      }),
      'adapter_model.safetensors': buildSafetensors(adapter),
    },
    outDtype: 'bf16', slabBytes, rows: {}, cols: 0, hostile, real: loadable ? real : null, unsignedZeros: false,
  };
}
