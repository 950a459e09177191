/**
 * Loads the WebAssembly SIMD merge kernel (wasm/merge-kernel.ts, embedded by scripts/gen-wasm.mjs)
 * and runs it on blocks of rows. One WasmKernel owns one instance and its memory; the right factor
 * stays in that memory between calls made with the same key, so slabs of one tensor copy it once.
 * Browser-safe (no Node imports).
 */
import type { FloatDType } from '../../dtype.js';
import { mergeKernelWasmBase64 } from './merge-kernel.generated.js';

let kernelBytes: Uint8Array<ArrayBuffer> | null | undefined;
let compiled: Promise<WebAssembly.Module> | undefined;

function validKernelBytes(): Uint8Array<ArrayBuffer> | null {
  if (kernelBytes !== undefined) return kernelBytes;
  kernelBytes = null;
  if (typeof WebAssembly !== 'object' || typeof atob !== 'function') return kernelBytes;
  const text = atob(mergeKernelWasmBase64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  // The kernel uses SIMD throughout, so validating it is the feature test.
  if (WebAssembly.validate(bytes)) kernelBytes = bytes;
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

const DTYPE_CODE: Record<FloatDType, number> = { F32: 0, F16: 1, BF16: 2, F8_E4M3: 3, F8_E5M2: 4 };
const BYTES: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1 };

/** right rows are padded to a multiple of 8 columns (the kernel's tile width). */
export function paddedCols(cols: number): number {
  return (cols + 7) & ~7;
}

/** A block of rows to merge: out = round(W + left · right). */
export interface RowJob {
  w: Uint8Array;
  wDtype: FloatDType;
  outDtype: FloatDType;
  rows: number;
  cols: number;
  rank: number;
  /** rows × rank. */
  left: Float32Array;
  /** Identifies `right`: a kernel that last saw this key already holds it. */
  rightKey: number;
  /** rank × paddedCols(cols), zero-padded; may be omitted when the kernel holds rightKey. */
  right?: Float32Array;
}

interface KernelExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  mergeRows(w: number, wType: number, out: number, outType: number, rows: number, cols: number,
    left: number, rank: number, right: number, rightStride: number, scratch: number): number;
}

const align16 = (n: number): number => (n + 15) & ~15;

export class WasmKernel {
  private readonly exports: KernelExports;
  private readonly base: number;
  private rightKey = -1;
  private rightBytes = 0;

  constructor(instance: WebAssembly.Instance) {
    this.exports = instance.exports as unknown as KernelExports;
    this.base = this.exports.heapBase();
  }

  /** True when the kernel still holds the right factor with this key. */
  holds(rightKey: number): boolean {
    return this.rightKey === rightKey;
  }

  /** Runs the job, writes its output bytes into `target`; returns false if any result is Inf or NaN. */
  run(job: RowJob, target: Uint8Array): boolean {
    const { rows, cols, rank } = job;
    const wBytes = BYTES[job.wDtype], outBytes = BYTES[job.outDtype];
    const stride = paddedCols(cols);
    const rightAt = this.base;
    const rightBytes = rank * stride * 4;
    const scratchAt = align16(rightAt + rightBytes);
    const leftAt = align16(scratchAt + 256 + 16 * rank + 4 * cols * (wBytes + outBytes));
    const wAt = align16(leftAt + rows * rank * 4);
    const outAt = align16(wAt + rows * cols * wBytes);
    this.reserve(outAt + rows * cols * outBytes);
    const heap = new Uint8Array(this.exports.memory.buffer);
    if (this.rightKey !== job.rightKey || this.rightBytes !== rightBytes) {
      if (!job.right || job.right.length !== rank * stride) throw new Error('the kernel does not hold this right factor');
      heap.set(new Uint8Array(job.right.buffer, job.right.byteOffset, rightBytes), rightAt);
      this.rightKey = job.rightKey;
      this.rightBytes = rightBytes;
    }
    heap.set(new Uint8Array(job.left.buffer, job.left.byteOffset, rows * rank * 4), leftAt);
    heap.set(job.w, wAt);
    const bad = this.exports.mergeRows(wAt, DTYPE_CODE[job.wDtype], outAt, DTYPE_CODE[job.outDtype], rows, cols,
      leftAt, rank, rightAt, stride, scratchAt);
    target.set(heap.subarray(outAt, outAt + rows * cols * outBytes));
    return bad === 0;
  }

  private reserve(bytes: number): void {
    const memory = this.exports.memory;
    const missing = bytes - memory.buffer.byteLength;
    if (missing > 0) memory.grow(Math.ceil(missing / 65536));
  }
}
