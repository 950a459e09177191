/**
 * The algebra's products on the CPU. The WebAssembly SIMD merge kernel already computes
 * out = W + L·R in f32 lanes for any inner size, so a product is a merge into zeros:
 *   A·Y:  L = a block of A's rows (no copy), R = Y;
 *   Aᵀ·Y: L = a block of A's columns, transposed, R = Y.
 * Where WASM SIMD is missing the same loops run in plain JavaScript. Given a pool (the CPU
 * backend's worker threads), large products run on its threads, in row blocks of the output: each
 * element is the same f32 sum in the same order as on one thread, so the values are the same.
 * A product given a signal sees it between blocks on either path; on one thread it also gives the
 * event loop a turn every TURN_MS (event-turns.ts), or no abort() could run while it computes.
 */
import { MergeError, throwIfAborted } from '../errors.js';
import { Pacer } from '../event-turns.js';
import { noWorkerThreads, type CpuMergePool } from '../engine/cpu/cpu-backend.js';
import { createWasmKernel, paddedCols, wasmSimdAvailable, type WasmKernel } from '../engine/cpu/wasm-kernel.js';
import { checkTimes, type AlgebraBackend, type ResidentMatrix } from './algebra-backend.js';
import type { Mat } from './matrix.js';

/** Rows of the output per kernel call: the block of L and the output stay in cache-sized pieces. */
const BLOCK_ROWS = 64;

/**
 * Products of fewer multiply-adds than this run on the calling thread: a round trip to the workers
 * costs more (a resize's factors, a small module's Gram matrices).
 */
export const POOL_MIN_PRODUCT = 1 << 20;

/** Options of {@link CpuAlgebra}. */
export interface CpuAlgebraOptions {
  /** `js` forces plain JavaScript; `wasm` (default) uses the SIMD kernel where it compiles. */
  executor?: 'wasm' | 'js';
  /** Threads for large products; the algebra disposes it (at once where it cannot use it). */
  pool?: CpuMergePool;
  /** Why there is no pool, said in the description (`no worker threads: …`) as the CPU backend says it. */
  noThreads?: string;
}

class CpuResident implements ResidentMatrix {
  constructor(readonly m: Mat) {}
  get rows(): number { return this.m.rows; }
  get cols(): number { return this.m.cols; }
  release(): void {}
}

let nextRightKey = 1;

export class CpuAlgebra implements AlgebraBackend {
  readonly kind = 'cpu' as const;
  private kernel: Promise<WasmKernel | null> | undefined;
  private wasm: boolean;
  private pool: CpuMergePool | undefined;
  private readonly noThreads: string | undefined;

  constructor(options: CpuAlgebraOptions = {}) {
    this.wasm = options.executor !== 'js' && wasmSimdAvailable();
    this.pool = this.wasm && options.pool?.product ? options.pool : undefined;
    if (!this.pool) options.pool?.dispose();
    this.noThreads = options.noThreads;
  }

  /** Threads its large products run on: the pool's, else 1. */
  get threads(): number {
    return this.pool?.threads ?? 1;
  }

  /** `CPU (WebAssembly SIMD, 4 threads)`, or one thread and, where known, why no more. */
  get description(): string {
    if (!this.wasm) return 'CPU (JavaScript, 1 thread)';
    if (this.pool) return `CPU (WebAssembly SIMD, ${this.pool.threads} threads)`;
    return `CPU (WebAssembly SIMD, 1 thread${this.noThreads ? `; ${noWorkerThreads(this.noThreads)}` : ''})`;
  }

  async upload(m: Mat): Promise<ResidentMatrix> {
    return new CpuResident(m);
  }

  async times(a: ResidentMatrix, y: Mat, signal?: AbortSignal): Promise<Mat> {
    checkTimes(a, y, false);
    const A = (a as CpuResident).m;
    const kernel = await this.getKernel();
    if (!kernel) return timesJs(A, y, signal);
    const left = (r0: number, rows: number) => A.data.subarray(r0 * A.cols, (r0 + rows) * A.cols);
    return (await this.onPool(A.rows, A.cols, y, left, signal)) ?? runBlocks(kernel, A.rows, A.cols, y, left, signal);
  }

  async timesT(a: ResidentMatrix, y: Mat, signal?: AbortSignal): Promise<Mat> {
    checkTimes(a, y, true);
    const A = (a as CpuResident).m;
    const kernel = await this.getKernel();
    if (!kernel) return timesTJs(A, y, signal);
    const { rows: m, cols: n, data } = A;
    let block = new Float32Array(0);
    const left = (c0: number, count: number) => {
      if (block.length < count * m) block = new Float32Array(count * m);
      for (let i = 0; i < m; i++) {
        const row = i * n + c0;
        for (let j = 0; j < count; j++) block[j * m + i] = data[row + j];
      }
      return block.subarray(0, count * m);
    };
    return (await this.onPool(n, m, y, left, signal)) ?? runBlocks(kernel, n, m, y, left, signal);
  }

  /** Stops the pool's threads, if any (idempotent). */
  dispose(): void {
    this.pool?.dispose();
    this.pool = undefined;
  }

  /**
   * L · Y on the pool's threads, L given block by block, `signal` checked between blocks; undefined
   * without a pool or for a small product (those run on this thread, see runBlocks).
   */
  private async onPool(rows: number, inner: number, y: Mat, left: (r0: number, n: number) => Float32Array, signal: AbortSignal | undefined): Promise<Mat | undefined> {
    if (!this.pool?.product || rows < 8 || rows * inner * y.cols < POOL_MIN_PRODUCT) return undefined;
    const { out, finite } = await this.pool.product({ rows, cols: y.cols, inner, right: paddedRight(y, inner), left }, signal);
    if (!finite) throw nonFinite();
    return { rows, cols: y.cols, data: out };
  }

  private getKernel(): Promise<WasmKernel | null> {
    if (!this.wasm) return Promise.resolve(null);
    this.kernel ??= createWasmKernel().catch(() => {
      // A page whose policy refuses WebAssembly: plain JavaScript on this thread, and said so.
      this.wasm = false;
      this.dispose();
      return null;
    });
    return this.kernel;
  }
}

/** Y (inner × y.cols) as the kernel reads its right factor: rows padded to paddedCols. */
function paddedRight(y: Mat, inner: number): Float32Array {
  const l = y.cols, stride = paddedCols(l);
  const right = new Float32Array(inner * stride);
  for (let k = 0; k < inner; k++) right.set(y.data.subarray(k * l, (k + 1) * l), k * stride);
  return right;
}

function nonFinite(): MergeError {
  return new MergeError('NON_FINITE', 'a product of the adapter algebra is Inf or NaN (an input holds Inf/NaN or values too large for f32)');
}

/**
 * Plain JavaScript checks `signal` every this many multiply-adds or so (a few ms of its loops); the
 * kernel's path checks it per block of BLOCK_ROWS rows (smaller blocks measurably slow the kernel).
 */
const CHECK_MACS = 1 << 20;

/**
 * A check of `signal` between blocks that also gives the event loop a turn every TURN_MS: a product
 * on one thread (no pool, or no WASM) of a large ΔW runs for seconds, and no abort() can run while
 * it computes. Without a signal nothing is checked and nothing yields, as before.
 */
function checkpoint(signal: AbortSignal | undefined): (() => Promise<void> | undefined) | undefined {
  if (!signal) return undefined;
  const pacer = new Pacer(signal);
  return () => {
    throwIfAborted(signal);
    return pacer.tick();
  };
}

/** out (rows × y.cols) = L · Y, L given block by block (`inner` values per row), `signal` seen between blocks. */
async function runBlocks(kernel: WasmKernel, rows: number, inner: number, y: Mat, left: (r0: number, n: number) => Float32Array, signal: AbortSignal | undefined): Promise<Mat> {
  const l = y.cols;
  const out = new Float32Array(rows * l);
  if (rows === 0 || l === 0) return { rows, cols: l, data: out };
  const check = checkpoint(signal);
  const right = paddedRight(y, inner);
  const zeros = new Uint8Array(BLOCK_ROWS * l * 4);
  const rightKey = nextRightKey++;
  const target = new Uint8Array(out.buffer);
  for (let r0 = 0; r0 < rows; r0 += BLOCK_ROWS) {
    // The kernel copies R again if another product ran on it during a turn (it keys R by rightKey).
    const turn = check?.();
    if (turn) await turn;
    const n = Math.min(BLOCK_ROWS, rows - r0);
    const ok = kernel.run({
      w: zeros.subarray(0, n * l * 4), wDtype: 'F32', outDtype: 'F32', rows: n, cols: l, rank: inner,
      left: left(r0, n), rightKey, right,
    }, target.subarray(r0 * l * 4, (r0 + n) * l * 4)).finite;
    if (!ok) throw nonFinite();
  }
  throwIfAborted(signal);
  return { rows, cols: l, data: out };
}

async function timesJs(a: Mat, y: Mat, signal: AbortSignal | undefined): Promise<Mat> {
  const { rows: m, cols: n } = a;
  const l = y.cols;
  const out = new Float32Array(m * l);
  const acc = new Float32Array(l);
  const check = checkpoint(signal);
  const every = Math.max(1, Math.floor(CHECK_MACS / Math.max(1, n * l)));
  for (let i = 0; i < m; i++) {
    const turn = i % every === 0 ? check?.() : undefined;
    if (turn) await turn;
    acc.fill(0);
    for (let k = 0; k < n; k++) {
      const x = a.data[i * n + k];
      if (x === 0) continue;
      const yr = k * l;
      for (let j = 0; j < l; j++) acc[j] += x * y.data[yr + j];
    }
    out.set(acc, i * l);
  }
  return checkFinite({ rows: m, cols: l, data: out });
}

async function timesTJs(a: Mat, y: Mat, signal: AbortSignal | undefined): Promise<Mat> {
  const { rows: m, cols: n } = a;
  const l = y.cols;
  const out = new Float32Array(n * l);
  const check = checkpoint(signal);
  const every = Math.max(1, Math.floor(CHECK_MACS / Math.max(1, n * l)));
  for (let i = 0; i < m; i++) {
    const turn = i % every === 0 ? check?.() : undefined;
    if (turn) await turn;
    const yr = i * l;
    for (let c = 0; c < n; c++) {
      const x = a.data[i * n + c];
      if (x === 0) continue;
      const orow = c * l;
      for (let j = 0; j < l; j++) out[orow + j] += x * y.data[yr + j];
    }
  }
  return checkFinite({ rows: n, cols: l, data: out });
}

function checkFinite(m: Mat): Mat {
  for (let i = 0; i < m.data.length; i++) {
    if (!Number.isFinite(m.data[i])) throw nonFinite();
  }
  return m;
}
