/**
 * Decoders of quantized weights' rows that any thread runs: the calling thread, or the CPU
 * backend's worker threads (Node worker_threads, Web Workers), which get a source's stored arrays
 * in shared memory and then row ranges of a slab to decode into shared output. A format's reader
 * (gptq.ts, awq.ts, compressed-tensors-int.ts) reads and checks its tensors into a
 * {@link RowSource} that names its decoder here (once per weight where a slab of rows needs every
 * stored row, as GPTQ's and AWQ's transposed codes do; else once per slab); the decoder is then a pure function of those arrays, so a row's
 * values are the same whichever thread decodes it and however a slab is cut. This module imports
 * nothing but errors.ts (a decoder's refusal of a value is a MergeError) and e2m1.ts (the FP4
 * values): it is loaded by every worker.
 */
import { MergeError } from '../errors.js';
import { E2M1, e2m1CodeValues } from './e2m1.js';

/** A quantized weight's inputs to its decoder, read and checked on the calling thread. */
export interface RowSource {
  /** The weight it decodes (`<m>.weight`), for messages. */
  name: string;
  /** The model it is read from, named first in a decoder's refusal of a value (mlx affine). */
  model?: string;
  /** Its decoder in {@link ROW_DECODERS}. */
  decoder: RowDecoderName;
  /** Values per row: f32 words of `out` per row (a decoder that writes bf16 values writes two a word: mxfp4). */
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

/**
 * For one set of float32 values `bits` (256 e4m3 block-scale bytes × 16 e2m1 codes, the values as
 * f32 bits: nvfp4-values.ts makes them by the tools' formula), each block scale byte's 256 byte
 * pairs: pairs[s·256 + byte] the byte's two values as one 8-byte word, the even element's bits in
 * its low half (from the high nibble where `evenHigh`), so a block decodes a byte with one load
 * and one store. Two finite f32 values never form a double NaN, so the bits pass through a
 * Float64Array unchanged. Kept for the last table this thread was given (a weight's slabs come
 * in turn), matched by its values: a worker gets new arrays with every piece.
 */
let nvfp4Last: { bits: Uint32Array; evenHigh: number; pairs: Float64Array } | undefined;
function nvfp4Pairs(values: Float32Array, evenHigh: number): Float64Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const kept = nvfp4Last;
  if (kept && kept.evenHigh === evenHigh && sameWords(kept.bits, bits)) return kept.pairs;
  const pairs = new Float64Array(256 * 256);
  const halves = new Uint32Array(pairs.buffer);
  const [even, odd] = evenHigh ? [4, 0] : [0, 4];
  for (let s = 0; s < 256; s++) {
    for (let byte = 0; byte < 256; byte++) {
      const at = (s * 256 + byte) * 2;
      halves[at] = bits[s * 16 + ((byte >> even) & 0x0f)];
      halves[at + 1] = bits[s * 16 + ((byte >> odd) & 0x0f)];
    }
  }
  nvfp4Last = { bits: bits.slice(), evenHigh, pairs };
  return pairs;
}

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * NVFP4 (modelopt-nvfp4.ts, comfy-nvfp4.ts): W[o, c] = values[scale(o, ⌊c/group⌋)·16 + code(o, c)],
 * `values` the weight's 256 × 16 float32 products f32(e2m1(code) × f32(e4m3(s) × weight_scale_2))
 * as the tool computes them. Arrays (bytes as Int8Array): `codes`, two codes a byte of the source's
 * rows, element 2k in the low nibble (ModelOpt) or the high one (`evenHigh` 1, comfy_kitchen);
 * `scales`, the e4m3 block-scale bytes: row-major (rows × cols/group) from the source's first row,
 * or where `scaleCols` is not 0 cuBLAS' swizzled layout (ComfyUI's `to_blocked`: tiles of 128 rows
 * × 4 scale columns, 512 bytes each) from the tile of the source's first row; `values`. Params
 * `group`, `evenHigh`, `scaleCols`. The scale bytes were checked for NaN by the reader.
 */
function nvfp4Rows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { codes, scales, values } = src.arrays as { codes: Int8Array; scales: Int8Array; values: Float32Array };
  const { group, evenHigh, scaleCols } = src.params;
  const cols = src.cols;
  const groups = cols / group;
  const half = cols >> 1; // bytes a row
  const tileBase = Math.floor(src.firstRow / 128) * 128 * scaleCols;
  /** Where row o's block j has its scale byte in `scales`. */
  const scaleAt = (o: number, j: number) => (scaleCols
    ? (Math.floor(o / 128) * (scaleCols / 4) + Math.floor(j / 4)) * 512 + (o % 32) * 16 + Math.floor((o % 128) / 32) * 4 + (j % 4) - tileBase
    : (o - src.firstRow) * groups + j);
  if (group % 2 === 0) {
    const pairs = nvfp4Pairs(values, evenHigh);
    const bytes = group >> 1;
    if (out.byteOffset % 8 === 0) {
      const words = new Float64Array(out.buffer, out.byteOffset, out.length >> 1);
      for (let o = r0; o < r1; o++) {
        const from = (o - src.firstRow) * half, to = (o - r0) * half;
        for (let j = 0, p = 0; j < groups; j++) {
          const at = (scales[scaleAt(o, j)] & 0xff) << 8;
          for (const stop = p + bytes; p < stop; p++) words[to + p] = pairs[at | (codes[from + p] & 0xff)];
        }
      }
      return;
    }
    // Output not on an 8-byte boundary: each pair as its two f32 words.
    const halves = new Uint32Array(pairs.buffer);
    const dst = new Uint32Array(out.buffer, out.byteOffset, out.length);
    for (let o = r0; o < r1; o++) {
      const from = (o - src.firstRow) * half, to = (o - r0) * cols;
      for (let j = 0, p = 0; j < groups; j++) {
        const at = (scales[scaleAt(o, j)] & 0xff) << 8;
        for (const stop = p + bytes; p < stop; p++) {
          const pair = (at | (codes[from + p] & 0xff)) << 1;
          dst[to + 2 * p] = halves[pair];
          dst[to + 2 * p + 1] = halves[pair + 1];
        }
      }
    }
    return;
  }
  // An odd group (ModelOpt's config may name one): a byte's two values may have different scales, so each value is looked up on its own.
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const dst = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const [even, odd] = evenHigh ? [4, 0] : [0, 4];
  for (let o = r0; o < r1; o++) {
    const from = (o - src.firstRow) * half, to = (o - r0) * cols;
    for (let c = 0; c < cols; c++) {
      const s = scales[scaleAt(o, Math.floor(c / group))] & 0xff;
      dst[to + c] = bits[(s << 4) | ((codes[from + (c >> 1)] >> (c & 1 ? odd : even)) & 0x0f)];
    }
  }
}

/**
 * gpt-oss's MXFP4 e2m1 pairs: entry s·256 + b the bf16 bits of byte b's two values code ×
 * 2^(s − 127) (transformers' FP4_VALUES times its ldexp), the low nibble's in the low half. A
 * value has at most two significant bits, so from 2⁻¹²⁸ up it is exact in float32 and in bf16 (its
 * float32 bits' high half); scale bytes whose values overflow bf16 (255, and 6·2^(s−127) past its
 * range) are refused by the reader before a block with one is decoded. Made once per thread (256 KiB).
 */
let mxfp4Table: Uint32Array | undefined;
export function mxfp4Pairs(): Uint32Array {
  if (mxfp4Table) return mxfp4Table;
  const f32 = new Float32Array(256 * 16);
  for (let s = 0; s < 256; s++) for (let code = 0; code < 16; code++) f32[s * 16 + code] = (code & 8 ? -1 : 1) * E2M1[code & 7] * 2 ** (s - 127);
  const bits = new Uint32Array(f32.buffer);
  const table = new Uint32Array(256 * 256);
  for (let s = 0; s < 256; s++) {
    for (let byte = 0; byte < 256; byte++) table[s * 256 + byte] = ((bits[s * 16 + (byte & 0x0f)] >>> 16) | (bits[s * 16 + (byte >> 4)] & 0xffff0000)) >>> 0;
  }
  return (mxfp4Table = table);
}

/** Stored rows decoded together: their blocks' bytes (TILE · in/2) stay in the first-level cache while the rows of (in, out) are written. */
const MXFP4_TILE = 128;

/**
 * Rows [r0, r1) of one gpt-oss MXFP4 expert's (in, out) bf16 matrix into `dst` from `at`, the
 * source's first row its input 0: input i of output column o is nibble i mod 2 of byte
 * ⌊(i mod 32)/2⌋ of stored block (o, ⌊i/32⌋). Arrays (bytes as Int8Array): `blocks` (out,
 * in/32, 16) and `scales` (out, in/32) of the expert; params `out`, `groups` (in/32). Rows 2k and
 * 2k + 1 of a group come from the same bytes, so they are written together, one lookup a byte;
 * where the rows start on a 32-bit word, columns o and o + 1 of both rows go as two words.
 */
export function mxfp4ExpertRows(src: RowSource, r0: number, r1: number, dst: Uint16Array, at: number): void {
  const { blocks, scales } = src.arrays as { blocks: Int8Array; scales: Int8Array };
  const { out, groups } = src.params;
  const table = mxfp4Pairs();
  const rowBytes = groups * 16;
  const i0 = r0 - src.firstRow, i1 = r1 - src.firstRow;
  // The tile is even, so with `out` and `at` even every tile's columns are whole words.
  const words = out % 2 === 0 && at % 2 === 0 && dst.byteOffset % 4 === 0 ? new Uint32Array(dst.buffer, dst.byteOffset, dst.length >> 1) : undefined;
  for (let o0 = 0; o0 < out; o0 += MXFP4_TILE) {
    const o1 = Math.min(o0 + MXFP4_TILE, out);
    for (let i = i0; i < i1;) {
      const g = i >> 5;
      const row = at + (i - i0) * out;
      let from = o0 * rowBytes + g * 16 + ((i & 31) >> 1);
      let sc = o0 * groups + g;
      if ((i & 1) === 0 && i + 1 < i1 && words) {
        const lo = row >> 1;
        const hi = (row + out) >> 1;
        for (let w = o0 >> 1; w < o1 >> 1; w++, from += 2 * rowBytes, sc += 2 * groups) {
          const even = table[((scales[sc] & 0xff) << 8) | (blocks[from] & 0xff)];
          const odd = table[((scales[sc + groups] & 0xff) << 8) | (blocks[from + rowBytes] & 0xff)];
          words[lo + w] = (even & 0xffff) | (odd << 16);
          words[hi + w] = (even >>> 16) | (odd & 0xffff0000);
        }
        i += 2;
      } else if ((i & 1) === 0 && i + 1 < i1) {
        for (let o = o0; o < o1; o++, from += rowBytes, sc += groups) {
          const pair = table[((scales[sc] & 0xff) << 8) | (blocks[from] & 0xff)];
          dst[row + o] = pair & 0xffff;
          dst[row + out + o] = pair >>> 16;
        }
        i += 2;
      } else {
        const shift = (i & 1) << 4;
        for (let o = o0; o < o1; o++, from += rowBytes, sc += groups) dst[row + o] = (table[((scales[sc] & 0xff) << 8) | (blocks[from] & 0xff)] >>> shift) & 0xffff;
        i += 1;
      }
    }
  }
}

/**
 * gpt-oss MXFP4 experts (mxfp4-experts.ts), bf16 values two to each f32 word of `out`: the
 * source's `cols` is out/2 (the view gives the threads only experts of an even `out`, as
 * gpt-oss's are); see {@link mxfp4ExpertRows}.
 */
function mxfp4Rows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  mxfp4ExpertRows(src, r0, r1, new Uint16Array(out.buffer, out.byteOffset, out.length * 2), 0);
}

/**
 * ComfyUI mxfp8 (comfy-mxfp8.ts): W[o, c] = e4m3(code) × 2^(e − 127), exact in f32 (the reader
 * refuses products past it before they are decoded). Arrays: `codes` (bytes as Int8Array) and
 * `scales` (the block scales as f32 values, rows × nColBlocks, row-major), of the source's rows;
 * `table`, the 256 e4m3 values. Params `blockCols`, `nColBlocks`.
 */
function mxfp8Rows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { codes, scales, table } = src.arrays as { codes: Int8Array; scales: Float32Array; table: Float32Array };
  const { blockCols, nColBlocks } = src.params;
  const cols = src.cols;
  for (let o = r0; o < r1; o++) {
    const from = (o - src.firstRow) * cols, to = (o - r0) * cols, scaleRow = (o - src.firstRow) * nColBlocks;
    for (let j = 0, c = 0; j < nColBlocks; j++) {
      const scale = scales[scaleRow + j];
      for (const end = Math.min(c + blockCols, cols); c < end; c++) out[to + c] = table[codes[from + c] & 0xff] * scale;
    }
  }
}

/** DeepSeek-V4's FP4 scale bytes from which some code's value passes float32 (6·2^126 does) or is NaN (255): the reader decodes rows holding one itself, and refuses the value by name. */
export const DEEPSEEK_FP4_FIRST_UNSAFE_SCALE = 253;

/**
 * DeepSeek-V4's FP4 pairs: entry s·256 + b the f32 bits of byte b's two values f32(code × 2^(s − 127))
 * (the low nibble's, the even element's, in the word's low half; code 8 read as +0, as DeepSeek's
 * FP4_TABLE), for the scale bytes below {@link DEEPSEEK_FP4_FIRST_UNSAFE_SCALE}, whose values are
 * finite (so no pair is a double NaN, whose bits a Float64Array could change). Made once per thread (512 KiB).
 */
let deepseekFp4Table: Float64Array | undefined;
function deepseekFp4Pairs(): Float64Array {
  if (deepseekFp4Table) return deepseekFp4Table;
  const codes = e2m1CodeValues(false);
  const pairs = new Float64Array(256 * 256);
  const halves = new Float32Array(pairs.buffer);
  for (let s = 0; s < DEEPSEEK_FP4_FIRST_UNSAFE_SCALE; s++) {
    for (let byte = 0; byte < 256; byte++) {
      halves[(s * 256 + byte) * 2] = codes[byte & 0x0f] * 2 ** (s - 127);
      halves[(s * 256 + byte) * 2 + 1] = codes[byte >> 4] * 2 ** (s - 127);
    }
  }
  return (deepseekFp4Table = pairs);
}

/**
 * DeepSeek-V4's packed FP4 experts (deepseek-v4-fp4.ts): W[o, c] = e2m1(nibble c of row o) ×
 * 2^(scale[o, ⌊c/32⌋] − 127), element 2k in the low nibble of byte k. Arrays `codes` (the
 * source's rows, cols/2 bytes each) and `scales` (cols/32 bytes a row), bytes as Int8Array, every
 * scale byte below {@link DEEPSEEK_FP4_FIRST_UNSAFE_SCALE} (the reader checks). A group's 16 bytes
 * go as 16 table loads of two values each.
 */
function deepseekFp4Rows(src: RowSource, r0: number, r1: number, out: Float32Array): void {
  const { codes, scales } = src.arrays as { codes: Int8Array; scales: Int8Array };
  const cols = src.cols, groups = cols >> 5, half = cols >> 1;
  const pairs = deepseekFp4Pairs();
  if (out.byteOffset % 8 === 0) {
    const words = new Float64Array(out.buffer, out.byteOffset, out.length >> 1);
    for (let o = r0; o < r1; o++) {
      const r = o - src.firstRow;
      for (let g = 0, from = r * half, to = (o - r0) * half; g < groups; g++) {
        const at = (scales[r * groups + g] & 0xff) << 8;
        for (const stop = from + 16; from < stop; from++, to++) words[to] = pairs[at | (codes[from] & 0xff)];
      }
    }
    return;
  }
  // Output not on an 8-byte boundary: each pair as its two f32 words.
  const halves = new Uint32Array(pairs.buffer);
  const dst = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let o = r0; o < r1; o++) {
    const r = o - src.firstRow;
    for (let g = 0, from = r * half, to = (o - r0) * cols; g < groups; g++) {
      const at = (scales[r * groups + g] & 0xff) << 8;
      for (const stop = from + 16; from < stop; from++, to += 2) {
        const pair = (at | (codes[from] & 0xff)) << 1;
        dst[to] = halves[pair];
        dst[to + 1] = halves[pair + 1];
      }
    }
  }
}

/** The decoders by name: a format that decodes on the threads adds its entry here. */
export const ROW_DECODERS = {
  gptq: gptqRows, awq: awqRows, 'compressed-tensors-packed': compressedTensorsPackedRows, 'compressed-tensors-int8': compressedTensorsInt8Rows,
  'bnb-4bit': bnbFourBitRows, 'bnb-int8': bnbInt8Rows, 'mlx-affine': mlxAffineRows,
  nvfp4: nvfp4Rows, mxfp4: mxfp4Rows, mxfp8: mxfp8Rows, 'deepseek-fp4': deepseekFp4Rows,
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
