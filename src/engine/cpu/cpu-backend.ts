/**
 * MergeBackend on the CPU: the same semantics as the WebGPU one. The WebAssembly SIMD kernel (f32
 * accumulation, like the GPU) runs the merges, spread over worker threads when a pool is given;
 * where WASM SIMD is missing, and for DoRA ops, the plain JS executor (f64) does.
 */
import type { MergeBackend, MergeOp } from '../merge-op.js';
import { hasColumnNorms, resolveWholeOp } from '../column-norms.js';
import { foldTrailingScale } from '../fold-scale.js';
import { isFusedForm } from '../update-steps.js';
import { mergeOnCpu } from './cpu-merge.js';
import { columnSumsOfSquaresOnCpu, mergeStepsOnCpu } from './cpu-steps.js';
import { createWasmKernel, wasmSimdAvailable, type WasmKernel } from './wasm-kernel.js';
import { mergeOnWasm } from './wasm-merge.js';

/** Runs WASM merges somewhere else (worker threads); see cpu-worker-pool.ts. */
export interface CpuMergePool {
  readonly threads: number;
  merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array>;
  dispose(): void;
}

export interface CpuBackendOptions {
  /** `js` forces the plain JavaScript executor; `wasm` (default) uses the SIMD kernel where it validates. */
  executor?: 'wasm' | 'js';
  /** Worker threads for WASM merges; the backend disposes it. */
  pool?: CpuMergePool;
}

/** Ops smaller than this many elements run on the calling thread: a round trip costs more. */
const POOL_MIN_ELEMENTS = 64 * 1024;

export class CpuBackend implements MergeBackend {
  readonly kind = 'cpu' as const;
  description: string;
  /** Which executor runs plain (non-DoRA) merges. */
  readonly executor: 'wasm' | 'js';
  /** null once compiling failed (e.g. a page's Content Security Policy forbids WebAssembly). */
  private kernel: Promise<WasmKernel | null> | undefined;
  private pool: CpuMergePool | undefined;

  constructor(reason = 'requested', options: CpuBackendOptions = {}) {
    const wasm = options.executor !== 'js' && wasmSimdAvailable();
    this.executor = wasm ? 'wasm' : 'js';
    this.pool = wasm ? options.pool : undefined;
    if (!this.pool) options.pool?.dispose();
    const how = !wasm ? 'JavaScript' : this.pool ? `WebAssembly SIMD, ${this.pool.threads} threads` : 'WebAssembly SIMD';
    this.description = `CPU (${how}; ${reason})`;
  }

  async merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    if (op.steps?.length || (op.dora?.group ?? 1) > 1) {
      // Sequences of steps: column norms first (whole ops only), then the fused kernel where the
      // op reduces to W + L·R, else the general executor.
      const resolved = hasColumnNorms(op) ? await resolveWholeOp(op, (o) => this.columnSumsOfSquares(o, signal)) : op;
      const plain = isFusedForm(resolved) ? foldTrailingScale(resolved) : undefined;
      if (!plain) return mergeStepsOnCpu(resolved, signal);
      op = plain;
    }
    if (this.executor === 'js' || op.dora) return mergeOnCpu(op, signal);
    const rowCount = op.rowCount ?? op.rows - (op.rowStart ?? 0);
    if (this.pool && rowCount * op.cols >= POOL_MIN_ELEMENTS) return this.pool.merge(op, signal);
    this.kernel ??= createWasmKernel().catch(() => null);
    const kernel = await this.kernel;
    return kernel ? mergeOnWasm(op, kernel, signal) : mergeOnCpu(op, signal);
  }

  async columnSumsOfSquares(op: MergeOp, signal?: AbortSignal): Promise<Float64Array> {
    return columnSumsOfSquaresOnCpu(op, signal);
  }

  /** Adds a remark to the description (e.g. the timings that chose this backend). */
  note(remark: string): void {
    this.description = `${this.description.slice(0, -1)}; ${remark})`;
  }

  dispose(): void {
    this.pool?.dispose();
    this.pool = undefined;
  }
}
