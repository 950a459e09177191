/**
 * MergeBackend on the CPU: the same semantics as the WebGPU one. The WebAssembly SIMD kernel (f32
 * accumulation, like the GPU) runs the merges, spread over worker threads when a pool is given;
 * where WASM SIMD is missing or may not be compiled (a Content Security Policy without
 * `wasm-unsafe-eval`), and for DoRA ops, the plain JS executor (f64) does. The description says
 * which one actually runs: it changes once {@link CpuBackend.ready} has found out.
 */
import type { MergeBackend, MergeOp, WeightedRows } from '../merge-op.js';
import { hasColumnNorms, resolveWholeOp } from '../column-norms.js';
import { checkOp } from '../op-shape.js';
import { asPlainOp } from '../exact/plain-op.js';
import { newStats, type CertificationStats } from '../exact/recompute.js';
import { columnSumsOfSquaresOnCpu, mergeStepsOnCpu } from './cpu-steps.js';
import { mergePlainOnJs, mergePlainOnWasm, planPlain, type PlainPlan, type TakeOutput } from './plain-merge.js';
import { BufferPool } from '../../buffer-pool.js';
import { rowsSeparable } from './step-rows.js';
import { createWasmKernel, jobBytes, wasmSimdAvailable, type WasmKernel } from './wasm-kernel.js';
import { DTYPE_BYTES } from '../../dtype.js';
import { MergeError } from '../../errors.js';
import { MAX_ROW_KERNEL_BYTES } from '../../limits.js';
import type { RowSource } from '../../formats/row-decoders.js';
import type { Fp8Encoding, Fp8Rows } from '../../formats/fp8-block-codes.js';
import type { ComfyRows } from '../../formats/comfy-requantize.js';

/** Runs WASM merges somewhere else (worker threads); see cpu-worker-pool.ts. */
export interface CpuMergePool {
  /** Threads that merge, the calling one included. */
  readonly threads: number;
  /** Runs a planned plain op and returns W′ in its outDtype, like {@link MergeBackend.merge}. */
  merge(plan: PlainPlan, stats: CertificationStats, signal?: AbortSignal, take?: TakeOutput): Promise<Uint8Array>;
  /** Runs an op with general update steps on the threads (the float64 executor's bytes). */
  mergeSteps?(op: MergeOp, stats: CertificationStats, signal?: AbortSignal): Promise<Uint8Array>;
  /** Column sums of squares of V on the threads (the float64 executor's sums). */
  columnSumsOfSquares?(op: MergeOp, signal?: AbortSignal): Promise<Float64Array>;
  /** Encodes whole blocks of a GGML type from f32 values on the threads (GGUF requantization). */
  encodeBlocks?(type: string, blockSize: number, blockBytes: number, values: Float32Array, signal?: AbortSignal, weighted?: WeightedRows): Promise<Uint8Array>;
  /** Rows of a quantized weight decoded on the threads (formats/row-decoders.ts), the bytes of one thread. */
  decodeRows?(source: RowSource, r0: number, r1: number, signal?: AbortSignal, out?: Float32Array): Promise<Float32Array>;
  /** fp8 re-quantization's block maxima over the rows on the threads (formats/fp8-block-codes.ts), the bytes of one thread. */
  fp8Maxima?(rows: Fp8Rows, signal?: AbortSignal): Promise<Float32Array>;
  /** fp8 re-quantization's codes of the rows on the threads, the bytes of one thread. */
  fp8Codes?(rows: Fp8Rows, enc: Fp8Encoding, signal?: AbortSignal, take?: TakeOutput): Promise<Uint8Array>;
  /** ComfyUI's int8 or nvfp4 codes of the rows on the threads (formats/comfy-requantize.ts), the bytes and scales of one thread. */
  comfyCodes?(rows: ComfyRows, signal?: AbortSignal, take?: TakeOutput): Promise<Uint8Array>;
  /** An f32 product L · R of the adapter algebra on the threads (the pool runs it as a merge into zeros); `signal` cancels it between blocks (ABORTED). */
  product?(p: PoolProduct, signal?: AbortSignal): Promise<{ out: Float32Array; finite: boolean }>;
  /** Shared memory the threads read and write in place (see MergeBackend.slabMemory). */
  readonly slabMemory?: (bytes: number) => ArrayBuffer | SharedArrayBuffer;
  /** Stops the threads; merges in flight are rejected. */
  dispose(): void;
}

/**
 * out (rows × cols, f32) = L · R, the adapter algebra's product (algebra/cpu-algebra.ts) as the
 * merge kernel computes it: a merge into zeros, each row's sums in f32 in one order, so the values
 * do not depend on how the rows are cut among threads.
 */
export interface PoolProduct {
  rows: number;
  cols: number;
  /** Values per row of L (rows of R). */
  inner: number;
  /** R: inner × paddedCols(cols), zero-padded. */
  right: Float32Array;
  /** Rows [r0, r0 + n) of L; the view is read before the next call, so it may be reused. */
  left(r0: number, n: number): Float32Array;
}

/** How a CPU on one thread says why it has no more (a page that is not cross-origin isolated). */
export function noWorkerThreads(why: string): string {
  return `no worker threads: ${why}`;
}

/** Options of {@link CpuBackend}. */
export interface CpuBackendOptions {
  /** `js` forces the plain JavaScript executor; `wasm` (default) uses the SIMD kernel where it validates. */
  executor?: 'wasm' | 'js';
  /** Worker threads for WASM merges; the backend disposes it. */
  pool?: CpuMergePool;
}

/** Ops smaller than this many elements run on the calling thread: a round trip costs more. */
const POOL_MIN_ELEMENTS = 64 * 1024;

/** The CPU executor: WebAssembly SIMD (optionally on worker threads), else plain JavaScript. */
export class CpuBackend implements MergeBackend {
  readonly kind = 'cpu' as const;
  /** Which executor runs plain (non-DoRA) merges; `js` once WebAssembly turned out not to compile. */
  executor: 'wasm' | 'js';
  /** null once compiling failed (e.g. a page's Content Security Policy forbids WebAssembly). */
  private kernel: Promise<WasmKernel | null> | undefined;
  private pool: CpuMergePool | undefined;
  private readonly reason: string;
  private readonly remarks: string[] = [];
  private fallback: string | undefined;

  constructor(reason = 'requested', options: CpuBackendOptions = {}) {
    const wasm = options.executor !== 'js' && wasmSimdAvailable();
    this.executor = wasm ? 'wasm' : 'js';
    this.pool = wasm ? options.pool : undefined;
    if (!this.pool) options.pool?.dispose();
    if (!wasm && options.executor !== 'js') this.fallback = 'no WebAssembly SIMD in this engine';
    this.reason = reason;
    this.slabMemory = this.pool?.slabMemory;
    this.outputs = new BufferPool(this.slabMemory);
  }

  /** See MergeBackend.slabMemory: the pool's shared memory, where it has some. */
  readonly slabMemory?: (bytes: number) => ArrayBuffer | SharedArrayBuffer;

  /** Threads its merges run on: the pool's, the calling one included, else 1. */
  get threads(): number {
    return this.pool?.threads ?? 1;
  }

  /** "CPU (…)": the executor that runs, its threads, why the CPU was chosen, and any remarks. */
  get description(): string {
    const how = this.executor === 'js'
      ? `JavaScript${this.fallback ? `: ${this.fallback}` : ''}`
      : this.pool ? `WebAssembly SIMD, ${this.pool.threads} threads` : 'WebAssembly SIMD, 1 thread';
    return `CPU (${[how, this.reason, ...this.remarks].join('; ')})`;
  }

  /**
   * Compiles the WebAssembly kernel now, so that {@link description} is true before the first
   * merge; falls back to JavaScript (and says so) where compiling is refused.
   */
  async ready(): Promise<this> {
    if (this.executor === 'wasm') await this.localKernel();
    return this;
  }

  private localKernel(): Promise<WasmKernel | null> {
    this.kernel ??= createWasmKernel().catch((e: unknown) => {
      this.executor = 'js';
      this.fallback = `WebAssembly may not be compiled here (${e instanceof Error ? e.message : String(e)})`;
      this.pool?.dispose();
      this.pool = undefined;
      return null;
    });
    return this.kernel;
  }

  /** How many elements were settled in float64 or exactly (see src/engine/exact/). */
  readonly certification: CertificationStats = newStats();

  /**
   * Merges one op (see {@link MergeBackend.merge}): ops of the plain form (low-rank terms, then
   * at most a fixed scale) on the certified kernels, anything else on the general executor.
   */
  async merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    let shape = checkOp(op);
    if (hasColumnNorms(op)) {
      op = await resolveWholeOp(op, (o) => this.columnSumsOfSquares(o, signal));
      shape = checkOp(op);
    }
    const plain = asPlainOp(op, shape);
    if (!plain) {
      // Row by row after the norms across rows were resolved above, so the threads can share it.
      if (this.pool?.mergeSteps && shape.rowCount * op.cols >= POOL_MIN_ELEMENTS && rowsSeparable(op, shape)) {
        return this.pool.mergeSteps(op, newStats(), signal);
      }
      return mergeStepsOnCpu(op, signal);
    }
    const kernel = this.executor === 'wasm' ? await this.localKernel() : null;
    if (!kernel) return mergePlainOnJs(plain, this.certification, signal);
    const plan = planPlain(plain);
    refuseWideRows(plan);
    const take = (bytes: number) => this.outputs.take(bytes);
    if (this.pool && shape.rowCount * op.cols >= POOL_MIN_ELEMENTS) return this.pool.merge(plan, this.certification, signal, take);
    return mergePlainOnWasm(plan, kernel, this.certification, signal, take);
  }

  /** Output buffers of the WebAssembly merges, reused once written (see {@link recycle}). */
  private readonly outputs: BufferPool;

  /** Takes back a written output of {@link merge} for reuse (see MergeBackend.recycle). */
  recycle(output: Uint8Array): void {
    this.outputs.recycle(output);
  }

  /** GGML blocks encoded on the worker threads; undefined without a pool (the caller encodes). */
  async encodeBlocks(type: string, blockSize: number, blockBytes: number, values: Float32Array, signal?: AbortSignal, weighted?: WeightedRows): Promise<Uint8Array | undefined> {
    if (!this.pool?.encodeBlocks || values.length < POOL_MIN_ELEMENTS) return undefined;
    return this.pool.encodeBlocks(type, blockSize, blockBytes, values, signal, weighted);
  }

  /** Rows of a quantized weight decoded on the worker threads; undefined without a pool or for a few rows (the caller decodes). */
  async decodeRows(source: RowSource, r0: number, r1: number, signal?: AbortSignal, out?: Float32Array): Promise<Float32Array | undefined> {
    if (!this.pool?.decodeRows || (r1 - r0) * source.cols < POOL_MIN_ELEMENTS) return undefined;
    return this.pool.decodeRows(source, r0, r1, signal, out);
  }

  /** fp8 re-quantization's block maxima on the worker threads; undefined without a pool or for a few values (the caller computes them). */
  async fp8Maxima(rows: Fp8Rows, signal?: AbortSignal): Promise<Float32Array | undefined> {
    if (!this.pool?.fp8Maxima || rows.rowCount * rows.cols < POOL_MIN_ELEMENTS) return undefined;
    return this.pool.fp8Maxima(rows, signal);
  }

  /** fp8 re-quantization's codes on the worker threads; undefined without a pool or for a few values (the caller encodes them). */
  async fp8Codes(rows: Fp8Rows, enc: Fp8Encoding, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    if (!this.pool?.fp8Codes || rows.rowCount * rows.cols < POOL_MIN_ELEMENTS) return undefined;
    // Into this backend's outputs, which the pipeline gives back once written (recycle).
    return this.pool.fp8Codes(rows, enc, signal, (bytes) => this.outputs.take(bytes));
  }

  /** ComfyUI's int8 or nvfp4 codes on the worker threads; undefined without a pool or for a few values (the caller encodes them). */
  async comfyCodes(rows: ComfyRows, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    if (!this.pool?.comfyCodes || rows.rowCount * rows.cols < POOL_MIN_ELEMENTS) return undefined;
    // Into this backend's outputs, which the pipeline gives back once written (recycle).
    return this.pool.comfyCodes(rows, signal, (bytes) => this.outputs.take(bytes));
  }

  async columnSumsOfSquares(op: MergeOp, signal?: AbortSignal): Promise<Float64Array> {
    const shape = checkOp(op);
    if (this.pool?.columnSumsOfSquares && shape.rowCount * op.cols >= POOL_MIN_ELEMENTS && rowsSeparable(op, shape)) {
      return this.pool.columnSumsOfSquares(op, signal);
    }
    return columnSumsOfSquaresOnCpu(op, signal);
  }

  /** Adds a remark to the description (e.g. the timings that chose this backend). */
  note(remark: string): void {
    this.remarks.push(remark);
  }

  /** Stops the worker threads, if any (idempotent). */
  dispose(): void {
    this.pool?.dispose();
    this.pool = undefined;
  }
}

/**
 * Refuses an op whose rows are too wide for the kernel: rows are never cut, so its smallest job
 * (four rows, or the tensor's fewer) would take more memory than MAX_ROW_KERNEL_BYTES, and past
 * 4 GB more than a WebAssembly memory can address.
 */
function refuseWideRows(plan: PlainPlan): void {
  const { op, shape } = plan.p;
  const rows = Math.min(4, shape.rowCount);
  const bytes = jobBytes(rows, op.cols, plan.tf.rank, plan.mode !== 'f32', DTYPE_BYTES[plan.w.dtype], plan.kernelOutBytes, !!plan.wScale, plan.mode !== 'f64-values');
  if (bytes <= MAX_ROW_KERNEL_BYTES) return;
  throw new MergeError('LIMIT_EXCEEDED', `tensor "${op.name}": rows of ${op.cols} elements at rank ${plan.tf.rank} take ${Math.ceil(bytes / 2 ** 20)} MiB of CPU kernel memory, above the limit MAX_ROW_KERNEL_BYTES (${MAX_ROW_KERNEL_BYTES / 2 ** 20} MiB): no real weight has rows this wide; check that the base is the model the adapter was trained on`);
}

