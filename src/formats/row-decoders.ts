/**
 * Decoders of quantized weights' rows that any thread runs: the calling thread, or the CPU
 * backend's worker threads (Node worker_threads, Web Workers), which get a source's stored arrays
 * in shared memory and then row ranges of a slab to decode into shared output. A format's reader
 * (gptq.ts, awq.ts, compressed-tensors-int.ts) reads and checks its tensors into a
 * {@link RowSource} that names its decoder here (once per weight where a slab of rows needs every
 * stored row, as GPTQ's and AWQ's transposed codes do; else once per slab); the decoder is then a pure function of those arrays, so a row's
 * values are the same whichever thread decodes it and however a slab is cut. This module imports
 * nothing: it is loaded by every worker.
 */

/** A quantized weight's inputs to its decoder, read and checked on the calling thread. */
export interface RowSource {
  /** The weight it decodes (`<m>.weight`), for messages. */
  name: string;
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

/** The decoders by name: a format that decodes on the threads adds its entry here. */
export const ROW_DECODERS = {
  gptq: gptqRows, awq: awqRows, 'compressed-tensors-packed': compressedTensorsPackedRows, 'compressed-tensors-int8': compressedTensorsInt8Rows,
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
