/**
 * MergeBackend on WebGPU. Per op: factors are prepared on the host (f32, scales folded, ranks of all
 * terms concatenated), W is streamed through the GPU in row slabs that fit the binding limits, each
 * slab is merged in one dispatch (two with DoRA) and read back. Buffers are reused across ops.
 */
import { decodeToF32, DTYPE_BYTES } from '../../dtype.js';
import { MergeError, throwIfAborted } from '../../errors.js';
import type { MergeBackend, MergeOp } from '../merge-op.js';
import { checkOp, type OpShape } from '../op-shape.js';
import { lowRankFactors, type LowRankFactors } from '../low-rank-factors.js';
import { mergeOnCpu } from '../cpu/cpu-merge.js';
import { columnSumsOfSquaresOnCpu, mergeStepsOnCpu } from '../cpu/cpu-steps.js';
import { hasColumnNorms, resolveWholeOp } from '../column-norms.js';
import { foldTrailingScale } from '../fold-scale.js';
import { isFusedForm } from '../update-steps.js';
import { StepChain } from './step-chain.js';
import type { MergeDevice } from './gpu-device.js';
import { ReusableBuffer } from './reusable-buffer.js';
import { dequantizeOnGpu, gpuDecodes } from './dequantize-program.js';
import {
  columnPadding, dispatchShape, mergeBindGroupLayout, mergePipeline, paramsBytes, RANK_STEP, TILE, PARAMS_BYTES, WORKGROUP_SIZE,
  type DoraMode, type MergeEntry, type MergeParams,
} from './merge-program.js';

/** Slabs larger than this gain nothing and cost host and GPU memory. */
const MAX_SLAB_BYTES = 128 * 1024 * 1024;
/**
 * Reading, converting and writing an element of W costs about as much as 20–30 rank steps on
 * SwiftShader (4096² f16: 279 ms at r = 16, 558 ms at r = 64). Only used to guess how long a
 * dispatch takes; the guess is scaled by the fastest rate seen, so an error makes it short, not long.
 */
const W_COST_IN_RANKS = 24;

interface SlabPlan {
  op: MergeOp;
  shape: OpShape;
  factors: LowRankFactors;
  /** Columns padded to a multiple of TILE: the row length of every GPU-side matrix. */
  paddedCols: number;
  /** The rank padded to a multiple of RANK_STEP with zero rows of Lᵀ and R. */
  paddedRank: number;
  slabRows: number;
  dora: DoraMode;
}

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;

export interface WebGpuBackendOptions {
  /**
   * Convert f16/bf16 in the kernel with float arithmetic instead of bit shifts. Both are exact;
   * the default is on for SwiftShader only, where it is faster and where its exactness is tested
   * (it needs IEEE adds that no compiler reassociates). Tests set it to cover both.
   */
  shiftFree?: boolean;
}

export class WebGpuBackend implements MergeBackend {
  readonly kind = 'webgpu' as const;
  description: string;
  /** The adapter is a CPU implementation (SwiftShader, WARP, …). */
  readonly isSoftware: boolean;
  private readonly device: GPUDevice;
  private lostReason: string | undefined;
  private readonly lost: Promise<never>;
  private disposed = false;
  /** Fastest observed milliseconds per unit of work (element × (rank + W cost)), on software GPUs. */
  private msPerWork: number | undefined;
  /** Ops share the buffers: each waits for the one before it. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly params: ReusableBuffer;
  private readonly wIn: ReusableBuffer;
  private readonly lt: ReusableBuffer;
  private readonly rt: ReusableBuffer;
  private readonly wOut: ReusableBuffer;
  private readonly flags: ReusableBuffer;
  private readonly norms: ReusableBuffer;
  private readonly magnitude: ReusableBuffer;
  private readonly staging: ReusableBuffer;
  /** The kernel converts f16/bf16 without bit shifts (see WebGpuBackendOptions). */
  readonly shiftFree: boolean;
  /** Ops with update steps beyond one low-rank pass and a DoRA (created on first use). */
  private chain: StepChain | undefined;

  constructor(private readonly gpu: MergeDevice, options: WebGpuBackendOptions = {}) {
    this.device = gpu.device;
    this.description = `WebGPU: ${gpu.description}`;
    this.isSoftware = gpu.isSoftware;
    this.shiftFree = options.shiftFree ?? /swiftshader/i.test(gpu.description);
    this.lost = gpu.device.lost.then((info) => {
      this.lostReason = info.message || info.reason;
      // merge() turns this into a GPU_FAILURE naming the tensor in flight.
      throw new Error(`the GPU device was lost (${this.lostReason})`);
    });
    this.lost.catch(() => {}); // observed by the ops that race it
    const S = GPUBufferUsage.STORAGE, D = GPUBufferUsage.COPY_DST, C = GPUBufferUsage.COPY_SRC;
    const max = gpu.maxBindingBytes;
    const buf = (label: string, usage: number, limit = max): ReusableBuffer =>
      new ReusableBuffer(this.device, `loramerge ${label}`, usage, limit);
    this.params = buf('params', GPUBufferUsage.UNIFORM | D, PARAMS_BYTES);
    this.wIn = buf('W in', S | D);
    this.lt = buf('left factor', S | D);
    this.rt = buf('right factor', S | D);
    this.wOut = buf('W out', S | C);
    this.flags = buf('non-finite flag', S | D | C);
    this.norms = buf('DoRA norms', S | D);
    this.magnitude = buf('DoRA magnitude', S | D);
    this.staging = buf('readback', GPUBufferUsage.MAP_READ | D);
  }

  merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    return this.enqueue(() => (op.steps?.length || (op.dora?.group ?? 1) > 1 ? this.mergeSteps(op, signal) : this.mergeNow(op, signal)));
  }

  columnSumsOfSquares(op: MergeOp, signal?: AbortSignal): Promise<Float64Array> {
    return this.enqueue(() => this.guarded(op, async () => {
      const shape = checkOp(op);
      if (hasColumnNorms(op)) throw new MergeError('PLAN_INVALID', `tensor "${op.name}": column sums of an op whose own DoRA norms are unresolved`);
      return await this.stepChain().columnSums(op, shape, signal) ?? columnSumsOfSquaresOnCpu(op, signal);
    }));
  }

  private enqueue<T>(run: () => Promise<T>): Promise<T> {
    const result = this.queue.then(run);
    this.queue = result.catch(() => {});
    return result;
  }

  /** GGML blocks decoded to f32 in WGSL (dequantize-program.ts); undefined for types it does not decode. */
  dequantize(type: string, blocks: Uint8Array, signal?: AbortSignal): Promise<Float32Array | undefined> {
    if (!gpuDecodes(type)) return Promise.resolve(undefined);
    const result = this.queue.then(() => {
      throwIfAborted(signal);
      return dequantizeOnGpu(this.device, type, blocks, this.gpu.maxBindingBytes, this.gpu.maxWorkgroupsPerDimension);
    });
    this.queue = result.catch(() => {});
    return result;
  }

  private stepChain(): StepChain {
    this.chain ??= new StepChain({ gpu: this.gpu, shiftFree: this.shiftFree, scoped: (op, body) => this.scoped(op, body), lost: this.lost });
    return this.chain;
  }

  /** Checks the device, and turns failures other than MergeErrors into GPU_FAILUREs naming the tensor. */
  private async guarded<T>(op: MergeOp, run: () => Promise<T>): Promise<T> {
    if (this.disposed) throw new MergeError('GPU_FAILURE', `tensor "${op.name}": the GPU backend was disposed`);
    if (this.lostReason !== undefined) {
      throw new MergeError('GPU_FAILURE', `tensor "${op.name}": GPU device lost: ${this.lostReason}`);
    }
    try {
      return await run();
    } catch (e) {
      if (e instanceof MergeError) throw e;
      throw new MergeError('GPU_FAILURE', `tensor "${op.name}": GPU merge failed: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Ops with steps: column norms first (whole ops), then the fused kernel where the op reduces to
   * W + L·R (a trailing scale folded in) or to one low-rank pass and a DoRA, else the step chain.
   */
  private async mergeSteps(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    const resolved = hasColumnNorms(op)
      ? await resolveWholeOp(op, (o) => this.guarded(o, async () => await this.stepChain().columnSums(o, checkOp(o), signal) ?? columnSumsOfSquaresOnCpu(o, signal)))
      : op;
    if (isFusedForm(resolved)) {
      const plain = foldTrailingScale(resolved);
      if (plain) return this.mergeNow(plain, signal);
    }
    return this.guarded(resolved, async () => await this.stepChain().merge(resolved, checkOp(resolved), signal) ?? mergeStepsOnCpu(resolved, signal));
  }

  private async mergeNow(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.disposed) throw new MergeError('GPU_FAILURE', `tensor "${op.name}": the GPU backend was disposed`);
    if (this.lostReason !== undefined) {
      throw new MergeError('GPU_FAILURE', `tensor "${op.name}": GPU device lost: ${this.lostReason}`);
    }
    const shape = checkOp(op);
    const plan = this.plan(op, shape);
    // A single row (or the right factor) larger than a binding: no slab fits, the CPU does it.
    if (!plan) return mergeOnCpu(op, signal);
    try {
      return await this.run(plan, signal);
    } catch (e) {
      if (e instanceof MergeError) throw e;
      throw new MergeError('GPU_FAILURE', `tensor "${op.name}": GPU merge failed: ${(e as Error).message}`, { cause: e });
    }
  }

  private plan(op: MergeOp, shape: OpShape): SlabPlan | undefined {
    const factors = lowRankFactors(op, shape);
    const paddedCols = roundUp(op.cols, columnPadding(op.base.dtype, op.outDtype));
    // The readback buffer holds a slab plus the flag: leave it room under the buffer size limit.
    const limit = Math.min(this.gpu.maxBindingBytes - 512, MAX_SLAB_BYTES);
    const paddedRank = roundUp(factors.rank, RANK_STEP);
    const rank = Math.max(paddedRank, 1);
    if (rank * paddedCols * 4 > limit) return undefined;
    const rowBytes = Math.max(paddedCols * DTYPE_BYTES[op.base.dtype], paddedCols * DTYPE_BYTES[op.outDtype], rank * 4);
    // Also keep each slab's dispatch within a 2-D grid of the device's size.
    const maxGroups = this.gpu.maxWorkgroupsPerDimension ** 2;
    const gridRows = Math.floor(maxGroups * WORKGROUP_SIZE / (paddedCols / TILE)) * TILE;
    const slabRows = Math.min(Math.floor(limit / rowBytes / TILE) * TILE, gridRows);
    if (slabRows < TILE) return undefined;
    const dora: DoraMode = shape.doraNorm === 'row' ? 1 : shape.doraNorm === 'col' ? 2 : 0;
    return { op, shape, factors, paddedCols, paddedRank, slabRows, dora };
  }

  private async run(plan: SlabPlan, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const { op, shape, factors, paddedCols, paddedRank, slabRows, dora } = plan;
    const q = this.device.queue;
    const result = new Uint8Array(shape.rowCount * op.cols * DTYPE_BYTES[op.outDtype]);

    await this.scoped(op, () => {
      const right = padRows(factors.right, factors.rank, op.cols, paddedCols, paddedRank);
      q.writeBuffer(this.rt.get(right.byteLength), 0, gpuSource(right));
      q.writeBuffer(this.flags.get(4), 0, new Uint32Array(4));
      if (dora) {
        // Padding rows/columns get magnitude 0 and norm 1: factor 0, so their (unread) results stay finite.
        const m = op.dora!.magnitude;
        const magnitude = new Float32Array(roundUp(m.data.byteLength / DTYPE_BYTES[m.dtype], TILE) + TILE);
        magnitude.set(decodeToF32(m.data, m.dtype));
        q.writeBuffer(this.magnitude.get(magnitude.byteLength), 0, gpuSource(magnitude));
        const norms = new Float32Array(magnitude.length).fill(1);
        norms.fill(0, 0, dora === 1 ? op.rows : op.cols);
        q.writeBuffer(this.norms.get(norms.byteLength), 0, gpuSource(norms));
      }
    });

    const slabs: Array<[number, number]> = [];
    for (let r0 = 0; r0 < shape.rowCount; r0 += slabRows) slabs.push([r0, Math.min(slabRows, shape.rowCount - r0)]);

    if (dora === 2) {
      // Column norms need every row before any output: a full sweep first.
      for (const [r0, n] of slabs) {
        throwIfAborted(signal);
        await this.scoped(op, () => {
          this.upload(plan, r0, n);
          this.dispatch(plan, 'normCols', r0, n);
        });
      }
    }
    for (const [r0, n] of slabs) {
      throwIfAborted(signal);
      await this.scoped(op, () => {
        if (dora !== 2 || slabs.length > 1) this.upload(plan, r0, n);
        if (dora === 1) this.dispatch(plan, 'normRows', r0, n);
        this.dispatch(plan, 'mergeTiles', r0, n);
      });
      const submitted = performance.now();
      const work = n * paddedCols * (paddedRank + W_COST_IN_RANKS) * (dora === 1 ? 2 : 1);
      await this.waitForSoftwareGpu(work);
      const done = await this.readBack(plan, r0, n, result);
      this.learnSpeed(work, done - submitted);
    }
    return result;
  }

  /**
   * Writes rows [r0, r0 + n) of W (rows padded to paddedCols, plus zero rows up to a multiple of
   * TILE) and the matching rows of Lᵀ to the GPU.
   */
  private upload(plan: SlabPlan, r0: number, n: number): void {
    const { op, factors, paddedCols, paddedRank } = plan;
    const q = this.device.queue;
    const inBytes = DTYPE_BYTES[op.base.dtype];
    const rowBytes = paddedCols * inBytes;
    const paddedRows = roundUp(n, TILE);
    const wIn = this.wIn.get(paddedRows * rowBytes);
    const slab = op.base.data.subarray(r0 * op.cols * inBytes, (r0 + n) * op.cols * inBytes);
    if (paddedCols === op.cols) {
      q.writeBuffer(wIn, 0, gpuSource(slab));
      if (paddedRows > n) q.writeBuffer(wIn, n * rowBytes, new Uint8Array((paddedRows - n) * rowBytes));
    } else {
      const padded = new Uint8Array(paddedRows * rowBytes);
      const srcRow = op.cols * inBytes;
      for (let r = 0; r < n; r++) padded.set(slab.subarray(r * srcRow, (r + 1) * srcRow), r * rowBytes);
      q.writeBuffer(wIn, 0, gpuSource(padded));
    }
    const lt = transposeLeft(factors, r0, n, paddedRows, paddedRank);
    q.writeBuffer(this.lt.get(lt.byteLength), 0, gpuSource(lt));
  }

  private dispatch(plan: SlabPlan, entry: MergeEntry, r0: number, n: number): void {
    const { op, shape, paddedCols, paddedRank, dora } = plan;
    const paddedRows = roundUp(n, TILE);
    const rowTiles = paddedRows / TILE;
    const colTiles = paddedCols / TILE;
    const items = entry === 'mergeTiles' ? rowTiles * colTiles : entry === 'normRows' ? rowTiles : colTiles;
    const grid = dispatchShape(items, this.gpu.maxWorkgroupsPerDimension);
    const p: MergeParams = {
      rows: n, paddedCols, paddedRows, rank: paddedRank, items, inDtype: op.base.dtype, outDtype: op.outDtype,
      normRow0: shape.rowStart + r0, eps: op.dora?.epsilon ?? 0,
    };
    const q = this.device.queue;
    q.writeBuffer(this.params.get(PARAMS_BYTES), 0, paramsBytes(p, grid));
    const bindGroup = this.device.createBindGroup({
      label: `merge "${op.name}" rows ${r0}+${n}`,
      layout: mergeBindGroupLayout(this.device),
      entries: [
        this.params.get(PARAMS_BYTES),
        this.wIn.get(paddedRows * paddedCols * DTYPE_BYTES[op.base.dtype]),
        this.lt.get(paddedRank * paddedRows * 4),
        this.rt.get(paddedRank * paddedCols * 4),
        this.wOut.get(paddedRows * paddedCols * DTYPE_BYTES[op.outDtype]),
        this.flags.get(4),
        this.norms.get(4),
        this.magnitude.get(4),
      ].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const enc = this.device.createCommandEncoder({ label: `merge "${op.name}" ${entry}` });
    const pass = enc.beginComputePass({ label: `merge "${op.name}" ${entry}` });
    pass.setPipeline(mergePipeline(this.device, { entry, inDtype: op.base.dtype, outDtype: op.outDtype, dora, shiftFree: this.shiftFree }));
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid.x, grid.y);
    pass.end();
    q.submit([enc.finish({ label: `merge "${op.name}" ${entry}` })]);
  }

  /**
   * Dawn for Node waits for the GPU by polling on the JavaScript thread, which on a software GPU takes
   * a CPU core away from the GPU's own threads. Sleep through most of the time the dispatch is
   * expected to take (from the fastest rate seen so far) before waiting on it.
   */
  private async waitForSoftwareGpu(work: number): Promise<void> {
    if (!this.isSoftware || this.msPerWork === undefined) return;
    const expected = 0.8 * work * this.msPerWork;
    if (expected > 2) await new Promise((resolve) => setTimeout(resolve, expected));
  }

  private learnSpeed(work: number, ms: number): void {
    const rate = ms / work;
    if (work > 1e6 && !(rate >= (this.msPerWork ?? Infinity))) this.msPerWork = rate;
  }

  /**
   * Copies the slab's output and the non-finite flag back and into `result`; returns the time at
   * which the GPU's results became readable.
   */
  private async readBack(plan: SlabPlan, r0: number, n: number, result: Uint8Array): Promise<number> {
    const { op, paddedCols } = plan;
    const outBytes = DTYPE_BYTES[op.outDtype];
    const bytes = n * paddedCols * outBytes;
    const flagAt = Math.ceil(bytes / 256) * 256;
    const staging = this.staging.get(flagAt + 4);
    await this.scoped(op, () => {
      const enc = this.device.createCommandEncoder({ label: `read back "${op.name}"` });
      enc.copyBufferToBuffer(this.wOut.get(bytes), 0, staging, 0, bytes);
      enc.copyBufferToBuffer(this.flags.get(4), 0, staging, flagAt, 4);
      this.device.queue.submit([enc.finish({ label: `read back "${op.name}"` })]);
    });
    await Promise.race([staging.mapAsync(GPUMapMode.READ, 0, flagAt + 4), this.lost]);
    const readable = performance.now();
    try {
      const flag = new Uint32Array(staging.getMappedRange(flagAt, 4))[0];
      if (flag !== 0) {
        throw new MergeError('NON_FINITE', `tensor "${op.name}": merged values are not finite (NaN or Inf in ${op.outDtype})`);
      }
      const out = new Uint8Array(staging.getMappedRange(0, bytes));
      const rowBytes = op.cols * outBytes;
      const at = r0 * rowBytes;
      if (paddedCols === op.cols) {
        result.set(out, at);
      } else {
        const strideBytes = paddedCols * outBytes;
        for (let r = 0; r < n; r++) result.set(out.subarray(r * strideBytes, r * strideBytes + rowBytes), at + r * rowBytes);
      }
    } finally {
      staging.unmap();
    }
    return readable;
  }

  /** Runs GPU calls inside validation and out-of-memory error scopes; errors name the tensor. */
  private async scoped(op: MergeOp, body: () => void): Promise<void> {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    let thrown: unknown;
    try {
      body();
    } catch (e) {
      thrown = e;
    }
    const validation = await Promise.race([this.device.popErrorScope(), this.lost]);
    const oom = await Promise.race([this.device.popErrorScope(), this.lost]);
    if (thrown) throw thrown;
    const err = validation ?? oom;
    if (err) {
      throw new MergeError('GPU_FAILURE', `tensor "${op.name}": GPU ${oom && !validation ? 'out of memory' : 'error'}: ${err.message}`);
    }
  }

  /** Appends why this backend was chosen to its description. */
  note(reason: string): void {
    this.description += ` (${reason})`;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of [this.params, this.wIn, this.lt, this.rt, this.wOut, this.flags, this.norms, this.magnitude, this.staging]) b.destroy();
    this.chain?.destroy();
    this.device.destroy();
  }
}

/**
 * A rows × cols matrix with its rows padded to `stride` elements and zero rows added up to
 * `outRows` (never empty).
 */
function padRows(m: Float32Array, rows: number, cols: number, stride: number, outRows: number): Float32Array {
  if (stride === cols && outRows === rows && m.length) return m;
  const out = new Float32Array(Math.max(outRows * stride, 4));
  for (let r = 0; r < rows; r++) out.set(m.subarray(r * cols, (r + 1) * cols), r * stride);
  return out;
}

/** Lᵀ for rows [r0, r0 + n): paddedRank × paddedRows, zero-filled past n and past the rank. */
function transposeLeft(f: LowRankFactors, r0: number, n: number, paddedRows: number, paddedRank: number): Float32Array {
  const out = new Float32Array(Math.max(paddedRank * paddedRows, 4));
  const rank = f.rank;
  for (let i = 0; i < n; i++) {
    const src = (r0 + i) * rank;
    for (let k = 0; k < rank; k++) out[k * paddedRows + i] = f.left[src + k];
  }
  return out;
}

/** Typed arrays here are never backed by a SharedArrayBuffer; the WebGPU typings want that said. */
function gpuSource(v: ArrayBufferView): ArrayBufferView<ArrayBuffer> {
  return v as ArrayBufferView<ArrayBuffer>;
}
