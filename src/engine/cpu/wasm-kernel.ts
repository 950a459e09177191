/**
 * Loads the WebAssembly SIMD merge kernel (wasm/merge-kernel.ts, embedded by scripts/gen-wasm.mjs)
 * and runs it on blocks of rows. One WasmKernel owns one instance and its memory; the right factor
 * (and its column norms) stays in that memory between calls made with the same key, so slabs of
 * one tensor copy it once. Browser-safe (no Node imports).
 */
import type { FloatDType } from '../../dtype.js';
import { mergeKernelWasmBase64 } from './merge-kernel.generated.js';
import { embeddedWasmBytes } from '../../embedded-wasm.js';
import { MAX_ROW_KERNEL_BYTES } from '../../limits.js';
import { jobBytes, paddedCols } from './kernel-memory.js';

export { jobBytes, paddedCols };

let kernelBytes: Uint8Array<ArrayBuffer> | null | undefined;
let compiled: Promise<WebAssembly.Module> | undefined;

function validKernelBytes(): Uint8Array<ArrayBuffer> | null {
  if (kernelBytes !== undefined) return kernelBytes;
  const bytes = embeddedWasmBytes(mergeKernelWasmBase64);
  // The kernel uses SIMD throughout, so validating it is the feature test.
  kernelBytes = bytes && WebAssembly.validate(bytes) ? bytes : null;
  return kernelBytes;
}

/** Whether this engine runs WebAssembly with 128-bit SIMD (checked once, synchronously). */
export function wasmSimdAvailable(): boolean {
  return validKernelBytes() !== null;
}

/**
 * A fresh kernel instance. Compiling and instantiating are asynchronous: browsers refuse to do
 * either synchronously on the main thread for modules over 4 KB.
 */
export async function createWasmKernel(): Promise<WasmKernel> {
  const bytes = validKernelBytes();
  if (!bytes) throw new Error('WebAssembly SIMD is not available');
  compiled ??= WebAssembly.compile(bytes);
  return new WasmKernel(await WebAssembly.instantiate(await compiled, {}));
}

/** What the kernel writes: a float dtype, or (f64 sums only) the f64 values themselves. */
export type KernelOutput = FloatDType | 'F64';

const DTYPE_CODE: Record<KernelOutput, number> = { F32: 0, F16: 1, BF16: 2, F8_E4M3: 3, F8_E5M2: 4, F64: 5 };
const BYTES: Record<KernelOutput, number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, F64: 8 };


/**
 * A block of rows to merge: out = round(W + left · right), f32 sums for a Float32Array left and
 * f64 sums for a Float64Array one (f32 outputs). With `certify`, the elements whose rounding the
 * kernel cannot vouch for are listed (see wasm/merge-kernel.ts).
 */
export interface RowJob {
  w: Uint8Array;
  wDtype: FloatDType;
  outDtype: KernelOutput;
  rows: number;
  cols: number;
  rank: number;
  /** rows × rank. */
  left: Float32Array | Float64Array;
  /** Identifies `right` (and `certify.nr`): a kernel that last saw this key already holds it. */
  rightKey: number;
  /** rank × paddedCols(cols), zero-padded; may be omitted when the kernel holds rightKey. */
  right?: Float32Array;
  certify?: Certification;
  /** W times these factors first, one per row of the block or per column (f32 sums: rounded to f32; f64 sums: exact). */
  wScale?: WScale;
}

/** Factors W is multiplied by before the terms are added (fp8 codes times their scales). */
export interface WScale {
  axis: 'row' | 'col';
  /** `rows` or `cols` values, each an f32 value (so that W · f is exact in f64, one rounding in f32). */
  factors: Float64Array;
}

/** The bound's parts (error-bounds.ts): B = gnl[row] · nr[col] + u · |V|. */
export interface Certification {
  /** Per row of the block, the same precision as `left`. */
  gnl: Float32Array | Float64Array;
  /** Per padded column, the same precision as `left`; may be omitted with `right`. */
  nr?: Float32Array | Float64Array;
  u: number;
}

/** What a job produced besides its output. */
export interface JobResult {
  /** No Inf or NaN among the kernel's results (listed elements may still change). */
  finite: boolean;
  /** Element indices (row · cols + col within the block) whose rounding the host must settle. */
  listed: Uint32Array;
}

interface KernelExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  scratchBytes(cols: number, rank: number): number;
  mergeRows(w: number, wType: number, out: number, outType: number, rows: number, cols: number,
    left: number, rank: number, right: number, rightStride: number, scratch: number, cert: number, scale: number, scaleAxis: number): number;
  mergeRows64(w: number, wType: number, out: number, outType: number, rows: number, cols: number,
    left: number, rank: number, right: number, rightStride: number, scratch: number, cert: number, scale: number, scaleAxis: number): number;
}

/** The next multiple of 16 (every view into memory the kernel reads stays aligned for f64). */
export const align16 = (n: number): number => (n + 15) & ~15;
const NO_LIST = new Uint32Array(0);

export class WasmKernel {
  private readonly exports: KernelExports;
  private readonly base: number;
  private rightKey = 0; // keys are never 0
  private rightBytes = 0;

  constructor(instance: WebAssembly.Instance) {
    this.exports = instance.exports as unknown as KernelExports;
    this.base = this.exports.heapBase();
  }

  /** True when the kernel still holds the right factor (and its norms) with this key. */
  holds(rightKey: number): boolean {
    return this.rightKey === rightKey;
  }

  /** Runs the job and writes its output bytes into `target`. */
  run(job: RowJob, target: Uint8Array): JobResult {
    const { rows, cols, rank } = job;
    const wide = job.left instanceof Float64Array;
    const wBytes = BYTES[job.wDtype], outBytes = BYTES[job.outDtype];
    const stride = paddedCols(cols);
    const lb = wide ? 8 : 4;
    // Memory: right | nr | scratch | cert block | W's factors | left | gnl | W | out | list.
    const rightAt = this.base;
    const rightBytes = Math.max(rank, 1) * stride * 4;
    const nrAt = align16(rightAt + rightBytes);
    const scratchAt = align16(nrAt + stride * lb);
    const certAt = align16(scratchAt + this.exports.scratchBytes(cols, rank));
    const wScale = job.wScale;
    // Padded with zeros to the kernel's tile (4 rows, 8 columns): the padding multiplies zeros.
    const scaleCount = !wScale ? 0 : wScale.axis === 'row' ? (rows + 3) & ~3 : stride;
    const scaleAt = align16(certAt + 64);
    const leftAt = align16(scaleAt + scaleCount * lb);
    const gnlAt = align16(leftAt + rows * rank * lb);
    const wAt = align16(gnlAt + rows * lb);
    const outAt = align16(wAt + rows * cols * wBytes);
    const listAt = align16(outAt + rows * cols * outBytes);
    const certify = job.certify;
    if (jobBytes(rows, cols, rank, wide, wBytes, outBytes, !!wScale, !!certify) > MAX_ROW_KERNEL_BYTES) {
      // The backend refuses such ops first (CpuBackend.merge); past 4 GB the kernel's addresses wrap.
      throw new Error(`a kernel job of ${rows} rows of ${cols} at rank ${rank} is above MAX_ROW_KERNEL_BYTES`);
    }
    this.reserve(listAt + (certify ? rows * cols * 4 : 0));
    const memory = this.exports.memory.buffer;
    const heap = new Uint8Array(memory);
    const holdsRight = this.rightKey === job.rightKey && this.rightBytes === rightBytes;
    if (!holdsRight) {
      if (!job.right || job.right.length < rank * stride) throw new Error('the kernel does not hold this right factor');
      heap.set(new Uint8Array(job.right.buffer, job.right.byteOffset, rank * stride * 4), rightAt);
      this.rightKey = job.rightKey;
      this.rightBytes = rightBytes;
    }
    if (certify?.nr) heap.set(bytesOf(certify.nr, stride), nrAt);
    else if (certify && !holdsRight) throw new Error('the kernel does not hold this factor\'s column norms');
    if (wScale) {
      const f = wide ? new Float64Array(memory, scaleAt, scaleCount) : new Float32Array(memory, scaleAt, scaleCount);
      f.set(wScale.factors.subarray(0, wScale.axis === 'row' ? rows : cols));
      f.fill(0, wScale.axis === 'row' ? rows : cols);
    }
    heap.set(bytesOf(job.left, rows * rank), leftAt);
    heap.set(job.w, wAt);
    if (certify) {
      heap.set(bytesOf(certify.gnl, rows), gnlAt);
      const u32 = new Uint32Array(memory, certAt, 8);
      u32[0] = gnlAt;
      u32[1] = nrAt;
      new Float32Array(memory, certAt + 8, 1)[0] = certify.u;
      u32[3] = listAt;
      u32[4] = 0;
      new Float64Array(memory, certAt + 24, 1)[0] = certify.u;
    }
    const fn = wide ? this.exports.mergeRows64 : this.exports.mergeRows;
    const bad = fn(wAt, DTYPE_CODE[job.wDtype], outAt, DTYPE_CODE[job.outDtype], rows, cols,
      leftAt, rank, rightAt, stride, scratchAt, certify ? certAt : 0, wScale ? scaleAt : 0, !wScale ? 0 : wScale.axis === 'row' ? 1 : 2);
    target.set(heap.subarray(outAt, outAt + rows * cols * outBytes));
    const count = certify ? new Int32Array(memory, certAt + 16, 1)[0] : 0;
    return { finite: bad === 0, listed: count ? new Uint32Array(memory, listAt, count).slice() : NO_LIST };
  }

  private reserve(bytes: number): void {
    const memory = this.exports.memory;
    const missing = bytes - memory.buffer.byteLength;
    if (missing > 0) memory.grow(Math.ceil(missing / 65536));
  }
}

function bytesOf(v: Float32Array | Float64Array, elements: number): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, elements * v.BYTES_PER_ELEMENT);
}
