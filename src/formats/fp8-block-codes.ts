/**
 * The two passes of fp8 re-quantization over merged values (pipeline/fp8-requantize.ts computes
 * the scales between them): each block's largest magnitude, then the codes e4m3(fl32(x · f)) or
 * e4m3(fl32(x / f)) with the block's factor f (e5m2 for ComfyUI's float8_e5m2 layers). Rows can be cut
 * anywhere and the pieces run on any thread (the CPU pool's workers run them, cpu-worker-protocol.ts):
 * a block's maximum over pieces is the maximum of their maxima, and a code depends on its value and
 * its block's factor alone. WebAssembly SIMD (wasm/fp8-requantize.ts) where it compiles, in pieces
 * of at most PIECE_VALUES values so its memory stays small; else the same arithmetic in
 * TypeScript, which gives the same bytes (an f32 product or quotient of two f32 values is correctly
 * rounded either way, and both encoders round to nearest even and saturate). Browser-safe.
 */
import { f32BitsToF8Bits } from '../dtype.js';
import { instantiateEmbeddedWasm } from '../embedded-wasm.js';
import { fp8RequantizeWasmBase64 } from '../pipeline/fp8-requantize.generated.js';

/** Values per call into WebAssembly: 4 MiB of f32 in, 1 MiB of codes out. */
const PIECE_VALUES = 1 << 20;

interface Exports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  blockMaxima(values: number, firstRow: number, rows: number, cols: number, blockRows: number, blockCols: number, out: number): void;
  encodeBlocks(values: number, out: number, firstRow: number, rows: number, cols: number, blockRows: number, blockCols: number, factors: number, divide: number): void;
}

let loaded: Exports | null | undefined;

/** The module, compiled synchronously where the engine allows it (it is small); else null. */
function wasm(): Exports | null {
  if (loaded !== undefined) return loaded;
  loaded = instantiateEmbeddedWasm<Exports>(fp8RequantizeWasmBase64);
  return loaded;
}

/**
 * Rows [rowStart, rowStart + rowCount) of a weight's merged values (f32, row-major, `cols` a row)
 * whose blocks are blockRows × blockCols (the last ones in each direction may be shorter).
 * `encoder`: WebAssembly where it compiles (the default) or TypeScript; `pieceValues`: values per
 * WebAssembly call (tests make it small).
 */
export interface Fp8Rows {
  values: Float32Array;
  rowStart: number;
  rowCount: number;
  cols: number;
  blockRows: number;
  blockCols: number;
  encoder?: 'wasm' | 'js';
  pieceValues?: number;
}

/** How codes are made from values: one factor per block, from the block row holding the rows' first row; multiply or divide; the code type. */
export interface Fp8Encoding {
  factors: Float32Array;
  divide: boolean;
  codeDtype: 'F8_E4M3' | 'F8_E5M2';
}

/** The block row that holds `row`. */
const bandOf = (rows: Fp8Rows, row: number) => Math.floor(row / rows.blockRows);

/** Block rows that rows [r0, r0 + n) touch. */
export function fp8Bands(rows: Fp8Rows, r0: number, n: number): number {
  return bandOf(rows, r0 + n - 1) - bandOf(rows, r0) + 1;
}

/**
 * max |x| of each block over rows [rowStart + p0, rowStart + p0 + n) (p0 counted from rowStart),
 * numbered row-major from the block row holding its first row; zeros give 0.
 */
export function fp8RowMaxima(rows: Fp8Rows, p0: number, n: number): Float32Array {
  const { values, cols, blockRows, blockCols } = rows;
  const first = rows.rowStart + p0;
  const band0 = bandOf(rows, first);
  const colBlocks = Math.ceil(cols / blockCols);
  const amax = new Float32Array(fp8Bands(rows, first, n) * colBlocks);
  const e = rows.encoder === 'js' ? null : wasm();
  if (e) {
    const rowsPerPiece = Math.max(1, Math.floor((rows.pieceValues ?? PIECE_VALUES) / cols));
    const { valuesAt, outAt } = place(e, rowsPerPiece, cols, amax.length);
    for (let q0 = 0; q0 < n; q0 += rowsPerPiece) {
      const m = Math.min(rowsPerPiece, n - q0);
      new Float32Array(e.memory.buffer, valuesAt, m * cols).set(values.subarray((p0 + q0) * cols, (p0 + q0 + m) * cols));
      e.blockMaxima(valuesAt, first + q0, m, cols, blockRows, blockCols, outAt);
      const at0 = (bandOf(rows, first + q0) - band0) * colBlocks;
      const maxima = new Float32Array(e.memory.buffer, outAt, fp8Bands(rows, first + q0, m) * colBlocks);
      for (let i = 0; i < maxima.length; i++) if (maxima[i] > amax[at0 + i]) amax[at0 + i] = maxima[i];
    }
    return amax;
  }
  for (let r = 0; r < n; r++) {
    const at0 = (bandOf(rows, first + r) - band0) * colBlocks;
    const o = (p0 + r) * cols;
    for (let c = 0; c < cols; c++) {
      const at = at0 + Math.floor(c / blockCols);
      const a = Math.abs(values[o + c]);
      if (a > amax[at]) amax[at] = a;
    }
  }
  return amax;
}

/**
 * Codes of rows [rowStart + p0, rowStart + p0 + n) into `out` (n × cols bytes); `enc.factors`
 * numbered from the block row holding rowStart (all of the rows' blocks).
 */
export function fp8RowCodes(rows: Fp8Rows, enc: Fp8Encoding, p0: number, n: number, out: Uint8Array): void {
  const { values, cols, blockRows, blockCols } = rows;
  const first = rows.rowStart + p0;
  const colBlocks = Math.ceil(cols / blockCols);
  const bandAt = (row: number) => (bandOf(rows, row) - bandOf(rows, rows.rowStart)) * colBlocks;
  // The WebAssembly encoder writes e4m3fn codes only; e5m2 codes are encoded here.
  const e = rows.encoder === 'js' || enc.codeDtype !== 'F8_E4M3' ? null : wasm();
  if (e) {
    const rowsPerPiece = Math.max(1, Math.floor((rows.pieceValues ?? PIECE_VALUES) / cols));
    const { valuesAt, outAt, factorsAt } = place(e, rowsPerPiece, cols, enc.factors.length);
    new Float32Array(e.memory.buffer, factorsAt, enc.factors.length).set(enc.factors);
    for (let q0 = 0; q0 < n; q0 += rowsPerPiece) {
      const m = Math.min(rowsPerPiece, n - q0);
      new Float32Array(e.memory.buffer, valuesAt, m * cols).set(values.subarray((p0 + q0) * cols, (p0 + q0 + m) * cols));
      e.encodeBlocks(valuesAt, outAt, first + q0, m, cols, blockRows, blockCols, factorsAt + bandAt(first + q0) * 4, enc.divide ? 1 : 0);
      out.set(new Uint8Array(e.memory.buffer, outAt, m * cols), q0 * cols);
    }
    return;
  }
  for (let r = 0; r < n; r++) {
    const at0 = bandAt(first + r);
    const o = (p0 + r) * cols;
    for (let c = 0; c < cols; c++) {
      const f = enc.factors[at0 + Math.floor(c / blockCols)];
      const x = values[o + c];
      out[r * cols + c] = fp8(enc.divide ? x / f : x * f, enc.codeDtype);
    }
  }
}

/** The module's memory laid out for a piece: values | codes | one f32 per block (maxima or factors). */
function place(e: Exports, rowsPerPiece: number, cols: number, blocks: number): { valuesAt: number; outAt: number; factorsAt: number } {
  const align = (n: number) => (n + 15) & ~15;
  const valuesAt = align(e.heapBase());
  const outAt = align(valuesAt + rowsPerPiece * cols * 4);
  const factorsAt = align(outAt + Math.max(rowsPerPiece * cols, blocks * 4));
  const need = factorsAt + blocks * 4;
  if (e.memory.buffer.byteLength < need) e.memory.grow(Math.ceil((need - e.memory.buffer.byteLength) / 65536));
  return { valuesAt, outAt, factorsAt };
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);
/** fp8 code of a value rounded to float32, to nearest even, saturated at ±448 or ±57344 (torch's clamp, then cast). */
export function fp8(x: number, dtype: 'F8_E4M3' | 'F8_E5M2'): number {
  f32[0] = x;
  return f32BitsToF8Bits(f32Bits[0], dtype);
}

/**
 * Where the two passes run: the backend's worker threads (MergeBackend.fp8Maxima and fp8Codes),
 * or undefined for the calling thread; the bytes are the same.
 */
export interface Fp8Threads {
  /** {@link fp8RowMaxima} of all the rows, or undefined (the caller computes them). */
  fp8Maxima?(rows: Fp8Rows, signal?: AbortSignal): Promise<Float32Array | undefined>;
  /** {@link fp8RowCodes} of all the rows, or undefined (the caller encodes them). */
  fp8Codes?(rows: Fp8Rows, enc: Fp8Encoding, signal?: AbortSignal): Promise<Uint8Array | undefined>;
}

/** Every block's maximum over all the rows, on `threads` where they take it. */
export async function fp8Maxima(rows: Fp8Rows, threads?: Fp8Threads, signal?: AbortSignal): Promise<Float32Array> {
  return (await threads?.fp8Maxima?.(rows, signal)) ?? fp8RowMaxima(rows, 0, rows.rowCount);
}

/** All the rows' codes, on `threads` where they take them. */
export async function fp8Codes(rows: Fp8Rows, enc: Fp8Encoding, threads?: Fp8Threads, signal?: AbortSignal): Promise<Uint8Array> {
  const pooled = await threads?.fp8Codes?.(rows, enc, signal);
  if (pooled) return pooled;
  const out = new Uint8Array(rows.rowCount * rows.cols);
  fp8RowCodes(rows, enc, 0, rows.rowCount, out);
  return out;
}
