/**
 * Decoders of quantized weights' rows that any thread runs: the calling thread, or the CPU
 * backend's worker threads (Node worker_threads, Web Workers), which get a source's stored arrays
 * in shared memory and then row ranges of a slab to decode into shared output. A format's reader
 * (gptq.ts, awq.ts, compressed-tensors-int.ts) reads and checks its tensors into a
 * {@link RowSource} that names its decoder here (once per weight where a slab of rows needs every
 * stored row, as GPTQ's and AWQ's transposed codes do; else once per slab); the decoder is then a pure function of those arrays, so a row's
 * values are the same whichever thread decodes it and however a slab is cut. This module imports
 * nothing but errors.ts (a decoder's refusal of a value is a MergeError): it is loaded by every worker.
 */
import { MergeError } from '../errors.js';

/** A quantized weight's inputs to its decoder, read and checked on the calling thread. */
export interface RowSource {
  /** The weight it decodes (`<m>.weight`), for messages. */
  name: string;
  /** The model it is read from, named first in a decoder's refusal of a value (mlx affine). */
  model?: string;
  /** Its decoder in {@link ROW_DECODERS}. */
  decoder: RowDecoderName;
  /** Values per row. */
  cols: number;
  /** The weight's row that the arrays' first row holds: 0 for arrays of the whole weight. */
  firstRow: number;
  /** The stored arrays the decoder reads. */
  arrays: Readonly<Record<string, SourceArray>>;
  /** Its numbers: bit width, shape, group size. */
  params: Readonly<Record<string, number>>;
}

/** What a source's arrays are. */
export type SourceArray = Int8Array | Int32Array | Float32Array;

/** Writes rows [r0, r1) of `src`'s weight into `out` ((r1 − r0) × cols f32, row-major). */
type RowDecoder = (src: RowSource, r0: number, r1: number, out: Float32Array) => void;

/**
 * GPTQ (gptq.ts): W[o, i] = (q[i, o] − z[o, g(i)]) × scale[g(i), o]; arrays `q` (the packed
 * qweight), `zeros` (rows × groups, unpacked and checked), `scales` (groups × rows), `groupOf`
 * (cols); params `bits`, `rows`, `groups`. Values lie in runs of 32/bits values a word, or at 3
 * bits of 32 values over 3 words (values 10 and 21 straddle words).
 */
function gptqRows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { q, zeros, scales: s, groupOf } = src.arrays as Record<string, Int32Array> & { scales: Float32Array };
  const { bits, rows, groups } = src.params;
  const cols = src.cols;
  const mask = 2 ** bits - 1;
  if (bits !== 3) {
    // 2, 4 and 8 bits: whole codes per word. Output o's zero points and scales gathered once,
    // then each qweight word read once for its 32/bits inputs.
    const z = new Int32Array(groups);
    const sc = new Float32Array(groups);
    for (let o = r0; o < r1; o++) {
      for (let gi = 0; gi < groups; gi++) {
        z[gi] = zeros[o * groups + gi];
        sc[gi] = s[gi * rows + o];
      }
      const row = (o - r0) * cols;
      for (let k = 0, i = 0; i < cols; k++) {
        const word = q[k * rows + o];
        for (let shift = 0; shift < 32; shift += bits, i++) {
          const gi = groupOf[i];
          out[row + i] = (((word >>> shift) & mask) - z[gi]) * sc[gi];
        }
      }
    }
    return;
  }
  // 3 bits: each input's word row of qweight and bit within it (the same for every output).
  const inputWord = new Int32Array(cols);
  const inputShift = new Uint8Array(cols);
  for (let i = 0; i < cols; i++) {
    const bit = 3 * (i % 32);
    inputWord[i] = Math.floor(i / 32) * 3 + Math.floor(bit / 32);
    inputShift[i] = bit % 32;
  }
  for (let o = r0; o < r1; o++) for (let i = 0; i < cols; i++) {
    const at = inputWord[i] * rows + o;
    const shift = inputShift[i];
    const low = q[at] >>> shift;
    const code = (shift + 3 > 32 ? low | (q[at + rows] << (32 - shift)) : low) & mask;
    const gi = groupOf[i];
    out[(o - r0) * cols + i] = (code - zeros[o * groups + gi]) * s[gi * rows + o];
  }
}

/** Nibble of output 8k + j within its AWQ word. */
const AWQ_NIBBLE = [0, 4, 1, 5, 2, 6, 3, 7] as const;

/**
 * AWQ GEMM (awq.ts): W[o, i] = (q[i, o] − z[⌊i/group⌋, o]) × scale[⌊i/group⌋, o]; arrays `q` (in,
 * out/8) and `zeros` (groups, out/8) packed in AWQ's nibble order, `scales` (groups × rows);
 * params `rows`, `groups`, `groupSize`.
 */
function awqRows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { q, zeros: z, scales: s } = src.arrays as Record<string, Int32Array> & { scales: Float32Array };
  const { rows, groups, groupSize } = src.params;
  const cols = src.cols;
  const words = rows / 8;
  for (let o = r0; o < r1; o++) {
    const word = Math.floor(o / 8);
    const shift = 4 * AWQ_NIBBLE[o % 8];
    const row = (o - r0) * cols;
    // Group by group: its zero point and scale once, then its inputs' codes down the word column.
    for (let g = 0, i = 0; g < groups; g++) {
      const zero = (z[g * words + word] >>> shift) & 15;
      const scale = s[g * rows + o];
      for (const end = Math.min(i + groupSize, cols); i < end; i++) out[row + i] = (((q[i * words + word] >>> shift) & 15) - zero) * scale;
    }
  }
}

/**
 * compressed-tensors `pack-quantized` (compressed-tensors-int.ts): W[o, c] = (q − z[o, g(c)]) ×
 * scale[o, g(c)], q the code at bits num_bits·(c mod p) of word ⌊c/p⌋ of row o less 2^(bits−1);
 * arrays `q` (rows × words), `scales` and, where `zeroed` is 1, `zeros` (rows × groups, signed),
 * `groupOf` (cols), of the source's rows; params `bits`, `words`, `groups`, `zeroed`.
 */
function compressedTensorsPackedRows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { q, scales: s, zeros, groupOf } = src.arrays as Record<string, Int32Array> & { scales: Float32Array };
  const { bits, words, groups, zeroed } = src.params;
  const cols = src.cols;
  const z = zeroed ? zeros : undefined;
  const perWord = Math.floor(32 / bits);
  const mask = 2 ** bits - 1;
  const offset = 2 ** (bits - 1);
  for (let o = r0; o < r1; o++) {
    const r = o - src.firstRow, row = (o - r0) * cols;
    for (let c = 0; c < cols; c++) {
      const code = ((q[r * words + Math.floor(c / perWord)] >>> (bits * (c % perWord))) & mask) - offset;
      const g = groupOf[c];
      out[row + c] = (code - (z ? z[r * groups + g] : 0)) * s[r * groups + g];
    }
  }
}

/**
 * compressed-tensors `int-quantized` (compressed-tensors-int.ts): W[o, c] = (q − z[o, g]) ×
 * scale[o, g], g = ⌊c / size⌋; arrays `q` (rows × cols, int8), `scales` and, where `zeroed` is 1,
 * `zeros` (rows × groups), of the source's rows; params `groups`, `size`, `zeroed`.
 */
function compressedTensorsInt8Rows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { q, scales: s, zeros } = src.arrays as { q: Int8Array; scales: Float32Array; zeros: Int32Array };
  const { groups, size, zeroed } = src.params;
  const cols = src.cols;
  const z = zeroed ? zeros : undefined;
  for (let o = r0; o < r1; o++) {
    const r = o - src.firstRow, row = (o - r0) * cols;
    for (let c = 0; c < cols; c++) {
      const g = Math.floor(c / size);
      out[row + c] = (q[r * cols + c] - (z ? z[r * groups + g] : 0)) * s[r * groups + g];
    }
  }
}

/**
 * bitsandbytes 4-bit, NF4 or FP4 (bnb/bnb-base-model.ts), as bitsandbytes computes it element for
 * element (functional.py `dequantize_4bit`, `dequantize_blockwise`; csrc/kernels.cu
 * `kDequantizeBlockwise`): value v of the weight (row-major) is nibble v of the packed bytes, the
 * high nibble first, in block ⌊v / blocksize⌋; out = f32(code[nibble] · absmax[block]). Nested
 * (double-quantized) statistics: absmax[j] = f32(f32(code₂[q_j] · nested_absmax[⌊j /
 * nested_blocksize⌋]) + offset). Products of two float32 values are exact in a double, so
 * Math.fround rounds each once, as the float32 multiply does. Arrays `packed` (the bytes from
 * ⌊firstRow·cols / 2⌋ on, as int8), `code` (16 values) and either `absmax` (float32, blocks from
 * `block0`) or, where `nested` is 1, `absmaxCodes` (uint8 codes as int8, blocks from `block0`),
 * `nestedAbsmax` (nested blocks from `nested0`) and `nestedCode` (256 values); params
 * `blocksize`, `block0`, `nested`, `nestedBlocksize`, `nested0`, `offset`.
 */
function bnbFourBitRows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { packed, code, absmax, absmaxCodes, nestedAbsmax, nestedCode } = src.arrays as Record<string, Float32Array> & { packed: Int8Array; absmaxCodes: Int8Array };
  const { blocksize, block0, nested, nestedBlocksize, nested0, offset } = src.params;
  const cols = src.cols;
  const start = r0 * cols, end = r1 * cols;
  // The weight's element whose value is packed[0]'s high nibble (even: a value's nibble is its parity).
  const first = 2 * Math.floor((src.firstRow * cols) / 2);
  const off = Math.fround(offset);
  const scaled = new Float32Array(16);
  // Block by block: the 16 products code[q] · absmax are the only values a block can hold.
  for (let blockStart = Math.floor(start / blocksize) * blocksize; blockStart < end; blockStart += blocksize) {
    const j = blockStart / blocksize;
    const scale = nested
      ? Math.fround(Math.fround(nestedCode[absmaxCodes[j - block0] & 0xff] * nestedAbsmax[Math.floor(j / nestedBlocksize) - nested0]) + off)
      : absmax[j - block0];
    for (let q = 0; q < 16; q++) scaled[q] = Math.fround(code[q] * scale);
    // Offsets from `first` and from `start`: small integers, whatever the weight's size.
    const to = Math.min(blockStart + blocksize, end) - first;
    let d = Math.max(blockStart, start) - first;
    const at = first - start;
    if (d & 1 && d < to) {
      out[d + at] = scaled[packed[d >>> 1] & 0x0f];
      d++;
    }
    for (; d + 1 < to; d += 2) {
      const byte = packed[d >>> 1];
      out[d + at] = scaled[(byte >> 4) & 0x0f];
      out[d + 1 + at] = scaled[byte & 0x0f];
    }
    if (d < to) out[d + at] = scaled[(packed[d >>> 1] >> 4) & 0x0f];
  }
}

/** bitsandbytes' 1/127, as the float32 it becomes in the multiply. */
const BNB_INV_127 = Math.fround(7.874015718698502e-3);

/**
 * bitsandbytes 8-bit, LLM.int8 row-wise (bnb/bnb-base-model.ts; `int8_vectorwise_dequant`): out =
 * f32(f32(q · SCB[row]) · f32(1/127)); arrays `q` (int8, the source's rows) and `scb` (float32, one
 * per row).
 */
function bnbInt8Rows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { q, scb } = src.arrays as { q: Int8Array; scb: Float32Array };
  const cols = src.cols;
  for (let o = r0; o < r1; o++) {
    const r = o - src.firstRow, row = (o - r0) * cols, at = r * cols;
    const s = scb[r];
    for (let c = 0; c < cols; c++) out[row + c] = Math.fround(Math.fround(q[at + c] * s) * BNB_INV_127);
  }
}

/**
 * mlx affine (mlx-affine.ts; mx.dequantize): W[o, i] = q·scale + bias of i's group, q the code at
 * bits [bits·i, bits·i + bits) of row o's words read as one little-endian bit stream (whole codes
 * per word at 2, 4 and 8 bits; 3-, 5- and 6-bit codes straddle words). Each value is computed in
 * float64 and must be exact in f32; one that is not is refused, naming its element. Arrays `q`
 * (the source's rows of `words` words), `scales`, `biases` (float32, checked finite, groups per
 * row) and `shape` (the stored weight's shape, for the element's index: stacked experts'
 * leading dimensions); params `bits`, `words`, `groups`, `groupSize`.
 */
function mlxAffineRows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { q, scales: s, biases: b, shape } = src.arrays as Record<string, Int32Array> & { scales: Float32Array; biases: Float32Array };
  const { bits, words, groups, groupSize } = src.params;
  const cols = src.cols;
  const mask = 2 ** bits - 1;
  for (let o = r0; o < r1; o++) {
    const r = o - src.firstRow, word0 = r * words, row = (o - r0) * cols;
    for (let g = 0, i = 0; g < groups; g++) {
      const scale = s[r * groups + g], bias = b[r * groups + g];
      for (const end = i + groupSize; i < end; i++) {
        const bit = bits * i;
        const at = word0 + (bit >>> 5), shift = bit & 31;
        const low = q[at] >>> shift;
        const code = (shift + bits > 32 ? low | (q[at + 1] << (32 - shift)) : low) & mask;
        const product = code * scale; // exact in f64: at most 8 + 24 bits
        const value = product + bias;
        // Knuth's TwoSum: the rounding error of that sum, zero when it is exact.
        const bPart = value - product;
        const error = (product - (value - bPart)) + (bias - bPart);
        const stored = Math.fround(value);
        if (error !== 0 || stored !== value) {
          throw new MergeError('UNSUPPORTED_FORMAT', `${src.model}: ${src.name}[${storedIndex(shape, o, i)}] = ${code}·${scale} + ${bias} is not exact in f32, in which the merge reads dequantized weights`);
        }
        out[row + i] = stored;
      }
    }
  }
}

/** The index of row `row`, column `col` of a weight stored with `shape`'s leading dimensions, as messages name it. */
function storedIndex(shape: Int32Array, row: number, col: number): string {
  const index = [col];
  for (let d = shape.length - 2; d >= 0; d--) {
    index.unshift(row % shape[d]);
    row = Math.floor(row / shape[d]);
  }
  return index.join(', ');
}

/** The decoders by name: a format that decodes on the threads adds its entry here. */
export const ROW_DECODERS = {
  gptq: gptqRows, awq: awqRows, 'compressed-tensors-packed': compressedTensorsPackedRows, 'compressed-tensors-int8': compressedTensorsInt8Rows,
  'bnb-4bit': bnbFourBitRows, 'bnb-int8': bnbInt8Rows, 'mlx-affine': mlxAffineRows,
} satisfies Record<string, RowDecoder>;

/** A decoder's name in {@link ROW_DECODERS}. */
export type RowDecoderName = keyof typeof ROW_DECODERS;

/** Rows [r0, r1) of `src`'s weight, into `out` where given (else a new array). */
export function decodeSourceRows(src: RowSource, r0: number, r1: number, out: Float32Array = new Float32Array((r1 - r0) * src.cols)): Float32Array {
  const decode: RowDecoder | undefined = ROW_DECODERS[src.decoder];
  if (!decode) throw new Error(`no row decoder "${String(src.decoder)}"`);
  decode(src, r0, r1, out);
  return out;
}

/**
 * Decodes rows [r0, r1) of a source somewhere else (the CPU backend's worker threads), into `out`
 * where given, the bytes those of {@link decodeSourceRows}; undefined leaves them to the caller.
 */
export type RowDecodeRunner = (src: RowSource, r0: number, r1: number, out?: Float32Array) => Promise<Float32Array | undefined>;
