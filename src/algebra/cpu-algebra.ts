/**
 * The algebra's products on the CPU. The WebAssembly SIMD merge kernel already computes
 * out = W + L·R in f32 lanes for any inner size, so a product is a merge into zeros:
 *   A·Y:  L = a block of A's rows (no copy), R = Y;
 *   Aᵀ·Y: L = a block of A's columns, transposed, R = Y.
 * Where WASM SIMD is missing the same loops run in plain JavaScript. One thread.
 */
import { MergeError } from '../errors.js';
import { createWasmKernel, paddedCols, wasmSimdAvailable, type WasmKernel } from '../engine/cpu/wasm-kernel.js';
import { checkTimes, type AlgebraBackend, type ResidentMatrix } from './algebra-backend.js';
import type { Mat } from './matrix.js';

/** Rows of the output per kernel call: the block of L and the output stay in cache-sized pieces. */
const BLOCK_ROWS = 64;

class CpuResident implements ResidentMatrix {
  constructor(readonly m: Mat) {}
  get rows(): number { return this.m.rows; }
  get cols(): number { return this.m.cols; }
  release(): void {}
}

let nextRightKey = 1;

export class CpuAlgebra implements AlgebraBackend {
  readonly kind = 'cpu' as const;
  readonly description: string;
  private kernel: Promise<WasmKernel | null> | undefined;
  private readonly wasm: boolean;

  constructor(options: { executor?: 'wasm' | 'js' } = {}) {
    this.wasm = options.executor !== 'js' && wasmSimdAvailable();
    this.description = `CPU (${this.wasm ? 'WebAssembly SIMD' : 'JavaScript'}, one thread)`;
  }

  async upload(m: Mat): Promise<ResidentMatrix> {
    return new CpuResident(m);
  }

  async times(a: ResidentMatrix, y: Mat): Promise<Mat> {
    checkTimes(a, y, false);
    const A = (a as CpuResident).m;
    const kernel = await this.getKernel();
    if (!kernel) return timesJs(A, y);
    return runBlocks(kernel, A.rows, A.cols, y, (r0, rows) => A.data.subarray(r0 * A.cols, (r0 + rows) * A.cols));
  }

  async timesT(a: ResidentMatrix, y: Mat): Promise<Mat> {
    checkTimes(a, y, true);
    const A = (a as CpuResident).m;
    const kernel = await this.getKernel();
    if (!kernel) return timesTJs(A, y);
    const { rows: m, cols: n, data } = A;
    const block = new Float32Array(BLOCK_ROWS * m);
    return runBlocks(kernel, n, m, y, (c0, count) => {
      for (let i = 0; i < m; i++) {
        const row = i * n + c0;
        for (let j = 0; j < count; j++) block[j * m + i] = data[row + j];
      }
      return block.subarray(0, count * m);
    });
  }

  dispose(): void {}

  private getKernel(): Promise<WasmKernel | null> {
    if (!this.wasm) return Promise.resolve(null);
    this.kernel ??= createWasmKernel().catch(() => null);
    return this.kernel;
  }
}

/** out (rows × y.cols) = L · Y, L given block by block (`inner` values per row). */
function runBlocks(kernel: WasmKernel, rows: number, inner: number, y: Mat, left: (r0: number, n: number) => Float32Array): Mat {
  const l = y.cols;
  const out = new Float32Array(rows * l);
  if (rows === 0 || l === 0) return { rows, cols: l, data: out };
  const stride = paddedCols(l);
  const right = new Float32Array(inner * stride);
  for (let k = 0; k < inner; k++) right.set(y.data.subarray(k * l, (k + 1) * l), k * stride);
  const zeros = new Uint8Array(BLOCK_ROWS * l * 4);
  const rightKey = nextRightKey++;
  const target = new Uint8Array(out.buffer);
  for (let r0 = 0; r0 < rows; r0 += BLOCK_ROWS) {
    const n = Math.min(BLOCK_ROWS, rows - r0);
    const ok = kernel.run({
      w: zeros.subarray(0, n * l * 4), wDtype: 'F32', outDtype: 'F32', rows: n, cols: l, rank: inner,
      left: left(r0, n), rightKey, right,
    }, target.subarray(r0 * l * 4, (r0 + n) * l * 4)).finite;
    if (!ok) throw new MergeError('NON_FINITE', 'a product of the adapter algebra is Inf or NaN (an input holds Inf/NaN or values too large for f32)');
  }
  return { rows, cols: l, data: out };
}

function timesJs(a: Mat, y: Mat): Mat {
  const { rows: m, cols: n } = a;
  const l = y.cols;
  const out = new Float32Array(m * l);
  const acc = new Float32Array(l);
  for (let i = 0; i < m; i++) {
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

function timesTJs(a: Mat, y: Mat): Mat {
  const { rows: m, cols: n } = a;
  const l = y.cols;
  const out = new Float32Array(n * l);
  for (let i = 0; i < m; i++) {
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
    if (!Number.isFinite(m.data[i])) throw new MergeError('NON_FINITE', 'a product of the adapter algebra is Inf or NaN (an input holds Inf/NaN or values too large for f32)');
  }
  return m;
}
