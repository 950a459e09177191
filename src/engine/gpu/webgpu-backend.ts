/**
 * MergeBackend on WebGPU. Plain ops (W + Σ low-rank terms, then at most a fixed scale, folded in)
 * with 16- and 8-bit outputs run on the GPU: factors are prepared on the host (f32, scales folded,
 * ranks of all terms concatenated, with the row and column norms of the error bound), W streams
 * through the GPU in row slabs that fit the binding limits, each slab is merged in one dispatch
 * and read back with the list of elements whose rounding the GPU could not vouch for, which the
 * host then settles in float64 or exactly (src/engine/exact/). Everything else runs on the CPU
 * executor, so that every output is correctly rounded and the same on every backend:
 * - f32 outputs: WGSL has no f64, and its f32 arithmetic is only faithfully rounded, so no f32 sum
 *   can be proven within an ulp of the exact result (conversions without terms are exact and stay);
 * - DoRA and the other update steps, which need whole rows (norms, rotations) in f64.
 * Buffers are reused across ops.
 */
import { BufferPool } from '../../buffer-pool.js';
import { DTYPE_BYTES } from '../../dtype.js';
import { MergeError, throwIfAborted } from '../../errors.js';
import type { MergeBackend, MergeOp } from '../merge-op.js';
import type { RowSource } from '../../formats/row-decoders.js';
import type { Fp8Encoding, Fp8Rows } from '../../formats/fp8-block-codes.js';
import type { ComfyRows } from '../../formats/comfy-requantize.js';
import { checkOp } from '../op-shape.js';
import { hasColumnNorms, resolveWholeOp } from '../column-norms.js';
import { f32KernelBound, U_WGSL } from '../exact/error-bounds.js';
import { asPlainOp, scaledBase, slabFactors32, tensorFactors, type PlainOp, type SlabFactors32, type TensorFactors } from '../exact/plain-op.js';
import { fixListed, newStats, type CertificationStats } from '../exact/recompute.js';
import { nonFiniteError, settleNonFinite } from '../cpu/plain-merge.js';
import { CpuBackend } from '../cpu/cpu-backend.js';
import type { MergeDevice } from './gpu-device.js';
import { ReusableBuffer } from './reusable-buffer.js';
import type { WorkgroupShape } from './workgroup-shape.js';
import { gpuSideThreads } from './gpu-side-threads.js';
import { dequantizeOnGpu, gpuDecodes } from './dequantize-program.js';
import {
  chooseWorkgroup, columnPadding, dispatchGroups, mergeBindGroupLayout, mergePipeline, paramsBytes, RANK_STEP, TILE, PARAMS_BYTES,
  type MergeParams,
} from './merge-program.js';

/** Slabs larger than this gain nothing and cost host and GPU memory. */
const MAX_SLAB_BYTES = 128 * 1024 * 1024;
/**
 * Reading, converting and writing an element of W costs about as much as 20–30 rank steps on
 * SwiftShader (4096² f16: 279 ms at r = 16, 558 ms at r = 64). Only used to guess how long a
 * dispatch takes; the guess is scaled by the fastest rate seen, so an error makes it short, not long.
 */
const W_COST_IN_RANKS = 24;
/** Room for listed indices per slab: far more than certification lists (under 0.1 % for f16). */
const LIST_SHARE = 1 / 16;

interface SlabPlan {
  p: PlainOp;
  tf: TensorFactors;
  /** The op's left factor and row bounds (f32, the GPU's bound). */
  slab: SlabFactors32;
  /** W's bytes as the GPU reads them: the op's, or f32 with a scale step folded in. */
  w: { dtype: MergeOp['base']['dtype']; data: Uint8Array };
  /** Columns padded (see columnPadding): the row length of every GPU-side matrix. */
  paddedCols: number;
  /** The rank padded to a multiple of RANK_STEP with zero rows of Lᵀ and R. */
  paddedRank: number;
  slabRows: number;
  /** Room for listed indices per slab; raised when a slab overflows it (see run). */
  listCap: number;
  u: number;
  certify: boolean;
}

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;

export interface WebGpuBackendOptions {
  /**
   * Convert f16/bf16 in the kernel with float arithmetic instead of bit shifts: faster on
   * SwiftShader, and exact only where f32 adds are IEEE and not reassociated, as there. Hardware
   * drivers may rewrite `(x + c) - c` (on an NVIDIA H200 through Vulkan, some elements came out one
   * step off), so `true` is refused on any other adapter. Default: on for SwiftShader only.
   */
  shiftFree?: boolean;
  /** Read f16 W as WGSL f16 (default: wherever the device has `shader-f16`). */
  nativeF16?: boolean;
  /** The workgroup shape (default: chosen from the adapter's limits and subgroup size). */
  workgroup?: WorkgroupShape;
  /**
   * The executor for what the GPU does not run (default: a CPU backend on the calling thread),
   * made with the backend (a CPU backend's pool starts no thread before it has work), so that the
   * description can say how many threads it has; the backend disposes it.
   */
  cpu?: () => MergeBackend;
}

export class WebGpuBackend implements MergeBackend {
  readonly kind = 'webgpu' as const;
  /** Why this backend was chosen, and other remarks (see {@link note}). */
  private readonly notes: string[] = [];
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
  private readonly staging: ReusableBuffer;
  /** The kernel converts f16/bf16 without bit shifts (see WebGpuBackendOptions). */
  readonly shiftFree: boolean;
  /** f16 W is read through WGSL's f16 (the device has `shader-f16`). */
  readonly nativeF16: boolean;
  readonly workgroup: WorkgroupShape;
  /** How many elements the host settled in float64 or exactly. */
  readonly certification: CertificationStats = newStats();
  /** Slabs run a second time because the kernel listed more elements than the list held. */
  relists = 0;
  /**
   * Outputs of the GPU's merges, reused once written (see {@link recycle}): a fresh output per op
   * is fresh memory for the OS to fault in and zero, as large as the op's W′.
   */
  private readonly outputs = new BufferPool();
  private readonly cpuBackend: MergeBackend;

  constructor(private readonly gpu: MergeDevice, options: WebGpuBackendOptions = {}) {
    this.device = gpu.device;
    this.isSoftware = gpu.isSoftware;
    const swiftShader = /swiftshader/i.test(gpu.description);
    if (options.shiftFree && !swiftShader) {
      throw new MergeError('GPU_UNAVAILABLE', `the shift-free f16/bf16 conversion is exact on SwiftShader only, not on ${gpu.description}`);
    }
    this.shiftFree = options.shiftFree ?? swiftShader;
    this.nativeF16 = options.nativeF16 ?? gpu.shaderF16;
    if (this.nativeF16 && !gpu.shaderF16) throw new MergeError('GPU_UNAVAILABLE', 'the GPU device has no shader-f16');
    this.workgroup = options.workgroup ?? chooseWorkgroup(gpu.device.limits, gpu.subgroupSize, gpu.isSoftware);
    this.cpuBackend = (options.cpu ?? (() => new CpuBackend('for what the GPU does not run')))();
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
    this.flags = buf('flags and listed elements', S | D | C);
    this.staging = buf('readback', GPUBufferUsage.MAP_READ | D);
  }

  /**
   * `WebGPU: <adapter> (<why chosen>), with 2 CPU threads for what the GPU leaves to the CPU`: the
   * threads those of the CPU executor (f32 outputs, DoRA and other update steps, a tensor the device
   * cannot bind), where it is a CPU backend.
   */
  get description(): string {
    const executor = this.cpuBackend;
    const notes = this.notes.map((n) => ` (${n})`).join('');
    return `WebGPU: ${this.gpu.description}${notes}${gpuSideThreads(executor instanceof CpuBackend ? executor.threads : undefined)}`;
  }

  merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    return this.enqueue(() => this.mergeNow(op, signal));
  }

  /**
   * Sums of squares per column of V (DoRA norms across row slabs), on the CPU executor: in f64,
   * in one order, so that the norms, and with them the outputs, are the same on every backend.
   */
  columnSumsOfSquares(op: MergeOp, signal?: AbortSignal): Promise<Float64Array> {
    return this.enqueue(() => this.cpu().columnSumsOfSquares!(op, signal));
  }

  // Quantized rows decoded and re-quantized on the CPU executor's worker threads (none of it is GPU
  // work): without these the pipeline runs them on the calling thread, same bytes, one core.
  decodeRows(source: RowSource, r0: number, r1: number, signal?: AbortSignal, out?: Float32Array): Promise<Float32Array | undefined> {
    return this.cpuBackend.decodeRows?.(source, r0, r1, signal, out) ?? Promise.resolve(undefined);
  }

  fp8Maxima(rows: Fp8Rows, signal?: AbortSignal): Promise<Float32Array | undefined> {
    return this.cpuBackend.fp8Maxima?.(rows, signal) ?? Promise.resolve(undefined);
  }

  fp8Codes(rows: Fp8Rows, enc: Fp8Encoding, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    return this.cpuBackend.fp8Codes?.(rows, enc, signal) ?? Promise.resolve(undefined);
  }

  comfyCodes(rows: ComfyRows, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    return this.cpuBackend.comfyCodes?.(rows, signal) ?? Promise.resolve(undefined);
  }

  private enqueue<T>(run: () => Promise<T>): Promise<T> {
    const result = this.queue.then(run);
    this.queue = result.catch(() => {});
    return result;
  }

  /** GGML blocks decoded to f32 in WGSL (dequantize-program.ts); undefined for types it does not decode. */
  dequantize(type: string, blocks: Uint8Array, signal?: AbortSignal): Promise<Float32Array | undefined> {
    if (!gpuDecodes(type)) return Promise.resolve(undefined);
    return this.enqueue(async () => {
      throwIfAborted(signal);
      return dequantizeOnGpu(this.device, type, blocks, this.gpu.maxBindingBytes, this.gpu.maxWorkgroupsPerDimension);
    });
  }

  /** The CPU executor for ops the GPU does not run. */
  private cpu(): MergeBackend {
    return this.cpuBackend;
  }

  private async mergeNow(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.disposed) throw new MergeError('GPU_FAILURE', `tensor "${op.name}": the GPU backend was disposed`);
    if (this.lostReason !== undefined) {
      throw new MergeError('GPU_FAILURE', `tensor "${op.name}": GPU device lost: ${this.lostReason}`);
    }
    let shape = checkOp(op);
    if (hasColumnNorms(op)) {
      const cpu = this.cpu();
      op = await resolveWholeOp(op, (o) => cpu.columnSumsOfSquares!(o, signal));
      shape = checkOp(op);
    }
    const p = asPlainOp(op, shape);
    const plan = p && this.plan(p);
    if (!plan) return this.cpu().merge(op, signal);
    try {
      return await this.run(plan, signal);
    } catch (e) {
      if (e instanceof MergeError) throw e;
      throw new MergeError('GPU_FAILURE', `tensor "${op.name}": GPU merge failed: ${(e as Error).message}`, { cause: e });
    }
  }

  /** How the GPU runs a plain op, or undefined when the CPU must (see the module comment). */
  private plan(p: PlainOp): SlabPlan | undefined {
    const { op, shape } = p;
    // A base scale goes into W (as f32) like a trailing one; only a trailing one into the factors.
    const folded = !!p.scale || !!p.baseScale;
    const tf = tensorFactors(p, !!p.scale);
    if (op.outDtype === 'F32' && (tf.rank > 0 || folded)) return undefined;
    const paddedCols = roundUp(op.cols, columnPadding(op.base.dtype, op.outDtype));
    const paddedRank = roundUp(tf.rank, RANK_STEP);
    // The readback buffer holds a slab plus the list: leave it room under the buffer size limit.
    const limit = Math.min(this.gpu.maxBindingBytes - 512, MAX_SLAB_BYTES);
    if ((paddedRank + 1) * paddedCols * 4 > limit) return undefined;
    const wDtype = folded ? 'F32' : op.base.dtype;
    const outBytes = DTYPE_BYTES[op.outDtype];
    const rowBytes = Math.max(paddedCols * DTYPE_BYTES[wDtype], paddedCols * outBytes * (1 + 4 * LIST_SHARE), (paddedRank + 1) * 4);
    // Keep each dispatch within the device's grid.
    const groups = dispatchGroups({ paddedCols, paddedRows: TILE }, this.workgroup);
    if (groups.x > this.gpu.maxWorkgroupsPerDimension) return undefined;
    const gridRows = this.gpu.maxWorkgroupsPerDimension * this.workgroup.y * TILE;
    const slabRows = Math.min(Math.floor(limit / rowBytes / TILE) * TILE, gridRows);
    if (slabRows < TILE) return undefined;
    const bound = f32KernelBound(tf.rank, U_WGSL, folded, tf.rightRounded);
    const slab = slabFactors32(p, tf, 0, shape.rowCount, bound, folded);
    const w = folded ? { dtype: 'F32' as const, data: bytesOf(scaledBase(p, 0, shape.rowCount)) } : op.base;
    const listCap = Math.ceil(Math.min(slabRows, roundUp(shape.rowCount, TILE)) * paddedCols * LIST_SHARE) + 1024;
    return { p, tf, slab, w, paddedCols, paddedRank, slabRows, listCap, u: bound.u, certify: tf.rank > 0 || folded };
  }

  private async run(plan: SlabPlan, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const { p, tf, paddedCols, paddedRank, slabRows } = plan;
    const { op, shape } = p;
    const q = this.device.queue;
    // Every byte is written below (each slab's rows whole), so a reused buffer need not be cleared.
    const result = this.outputs.take(shape.rowCount * op.cols * DTYPE_BYTES[op.outDtype]);

    await this.scoped(op, () => {
      // R's rank rows, then its column norms, each padded to paddedCols.
      const right = new Float32Array((paddedRank + 1) * paddedCols);
      for (let k = 0; k < tf.rank; k++) right.set(tf.right.subarray(k * tf.stride, k * tf.stride + op.cols), k * paddedCols);
      right.set(tf.nr.subarray(0, op.cols), paddedRank * paddedCols);
      q.writeBuffer(this.rt.get(right.byteLength), 0, right);
    });

    let nonFinite = false;
    for (let r0 = 0; r0 < shape.rowCount; r0 += slabRows) {
      throwIfAborted(signal);
      const n = Math.min(slabRows, shape.rowCount - r0);
      await this.scoped(op, () => {
        this.upload(plan, r0, n);
        this.dispatch(plan, n);
      });
      const submitted = performance.now();
      const work = n * paddedCols * (paddedRank + W_COST_IN_RANKS);
      await this.waitForSoftwareGpu(work);
      let back = await this.readBack(plan, r0, n, result, false);
      if (back.overflow !== undefined) {
        // The kernel listed more elements than the list holds (high ranks, narrow rows). Its inputs
        // are still on the GPU: run the slab again with room for all of them and keep that room for
        // the op's later slabs, rather than settling every element of the slab on the host.
        plan.listCap = back.overflow;
        await this.scoped(op, () => {
          q.writeBuffer(this.flags.get((2 + plan.listCap) * 4), 0, new Uint32Array(2));
          this.dispatch(plan, n);
        });
        this.relists++;
        back = await this.readBack(plan, r0, n, result, true);
      }
      const { readable, flagged } = back;
      if (flagged) nonFinite = true;
      this.learnSpeed(work, readable - submitted);
    }
    if (nonFinite && !settleNonFinite(plan, result, this.certification)) throw nonFiniteError(op.name, op.outDtype);
    this.certification.elements += shape.rowCount * op.cols;
    return result;
  }

  /**
   * Writes rows [r0, r0 + n) of W (rows padded to paddedCols, plus zero rows up to a multiple of
   * TILE), the matching rows of Lᵀ with their norms, and a cleared list to the GPU.
   */
  private upload(plan: SlabPlan, r0: number, n: number): void {
    const { p, tf, slab, paddedCols, paddedRank } = plan;
    const { op } = p;
    const q = this.device.queue;
    const inBytes = DTYPE_BYTES[plan.w.dtype];
    const rowBytes = paddedCols * inBytes;
    const paddedRows = roundUp(n, TILE);
    const wIn = this.wIn.get(paddedRows * rowBytes);
    const rows = plan.w.data.subarray(r0 * op.cols * inBytes, (r0 + n) * op.cols * inBytes);
    if (paddedCols === op.cols) {
      q.writeBuffer(wIn, 0, gpuSource(rows));
      if (paddedRows > n) q.writeBuffer(wIn, n * rowBytes, new Uint8Array((paddedRows - n) * rowBytes));
    } else {
      const padded = new Uint8Array(paddedRows * rowBytes);
      const srcRow = op.cols * inBytes;
      for (let r = 0; r < n; r++) padded.set(rows.subarray(r * srcRow, (r + 1) * srcRow), r * rowBytes);
      q.writeBuffer(wIn, 0, padded);
    }
    // Lᵀ: paddedRank rows of paddedRows, then the rows' bounds G · ‖L row‖.
    const lt = new Float32Array((paddedRank + 1) * paddedRows);
    const rank = tf.rank;
    for (let i = 0; i < n; i++) {
      const src = (r0 + i) * rank;
      for (let k = 0; k < rank; k++) lt[k * paddedRows + i] = slab.left[src + k];
      lt[paddedRank * paddedRows + i] = slab.gnl[r0 + i];
    }
    q.writeBuffer(this.lt.get(lt.byteLength), 0, lt);
    q.writeBuffer(this.flags.get((2 + plan.listCap) * 4), 0, new Uint32Array(2));
  }

  private dispatch(plan: SlabPlan, n: number): void {
    const { p, paddedCols, paddedRank } = plan;
    const { op } = p;
    const paddedRows = roundUp(n, TILE);
    const params: MergeParams = {
      rows: n, paddedCols, paddedRows, rank: paddedRank, inDtype: plan.w.dtype, outDtype: op.outDtype,
      u: plan.u, listCap: plan.listCap, certify: plan.certify,
    };
    const q = this.device.queue;
    q.writeBuffer(this.params.get(PARAMS_BYTES), 0, paramsBytes(params));
    const bindGroup = this.device.createBindGroup({
      label: `merge "${op.name}"`,
      layout: mergeBindGroupLayout(this.device),
      entries: [
        this.params.get(PARAMS_BYTES),
        this.wIn.get(paddedRows * paddedCols * DTYPE_BYTES[plan.w.dtype]),
        this.lt.get((paddedRank + 1) * paddedRows * 4),
        this.rt.get((paddedRank + 1) * paddedCols * 4),
        this.wOut.get(paddedRows * paddedCols * DTYPE_BYTES[op.outDtype]),
        this.flags.get((2 + plan.listCap) * 4),
      ].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const groups = dispatchGroups({ paddedCols, paddedRows }, this.workgroup);
    const enc = this.device.createCommandEncoder({ label: `merge "${op.name}"` });
    const pass = enc.beginComputePass({ label: `merge "${op.name}"` });
    pass.setPipeline(mergePipeline(this.device, {
      inDtype: plan.w.dtype, outDtype: op.outDtype, shiftFree: this.shiftFree, nativeF16: this.nativeF16, workgroup: this.workgroup,
    }));
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(groups.x, groups.y);
    pass.end();
    q.submit([enc.finish({ label: `merge "${op.name}"` })]);
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
   * Copies the slab's output and flags back, into `result`, and settles the listed elements.
   * Returns when the GPU's results became readable, and whether the GPU saw Inf or NaN; unless
   * `last`, a list that overflowed returns `overflow` (a list capacity with room for it) instead,
   * with nothing copied.
   */
  private async readBack(plan: SlabPlan, r0: number, n: number, result: Uint8Array, last: boolean):
  Promise<{ readable: number; flagged: boolean; overflow?: number }> {
    const { p, tf, paddedCols } = plan;
    const { op } = p;
    const outBytes = DTYPE_BYTES[op.outDtype];
    const bytes = n * paddedCols * outBytes;
    const flagAt = Math.ceil(bytes / 256) * 256;
    const flagBytes = (2 + plan.listCap) * 4;
    const staging = this.staging.get(flagAt + flagBytes);
    await this.scoped(op, () => {
      const enc = this.device.createCommandEncoder({ label: `read back "${op.name}"` });
      enc.copyBufferToBuffer(this.wOut.get(bytes), 0, staging, 0, bytes);
      enc.copyBufferToBuffer(this.flags.get(flagBytes), 0, staging, flagAt, flagBytes);
      this.device.queue.submit([enc.finish({ label: `read back "${op.name}"` })]);
    });
    await Promise.race([staging.mapAsync(GPUMapMode.READ, 0, flagAt + flagBytes), this.lost]);
    const readable = performance.now();
    const rowBytes = op.cols * outBytes;
    const at = r0 * rowBytes;
    const block = result.subarray(at, at + n * rowBytes);
    let listed: Uint32Array;
    let flagged: boolean;
    try {
      const header = new Uint32Array(staging.getMappedRange(flagAt, 8));
      flagged = header[0] !== 0;
      const count = header[1];
      const cap = Math.ceil(count * 1.25) + 1024;
      // The list overflowed and a list with room for it fits the binding and readback limits: the caller reruns the slab.
      if (!last && count > plan.listCap && flagAt + (2 + cap) * 4 <= this.gpu.maxBindingBytes) return { readable, flagged, overflow: cap };
      const out = new Uint8Array(staging.getMappedRange(0, bytes));
      if (paddedCols === op.cols) {
        block.set(out);
      } else {
        const strideBytes = paddedCols * outBytes;
        for (let r = 0; r < n; r++) block.set(out.subarray(r * strideBytes, r * strideBytes + rowBytes), r * rowBytes);
      }
      // Listed indices are row · paddedCols + column; more than the list holds: settle every element.
      listed = count > plan.listCap
        ? Uint32Array.from({ length: n * op.cols }, (_, i) => i)
        : toBlockIndices(new Uint32Array(staging.getMappedRange(flagAt + 8, count * 4)), paddedCols, op.cols);
    } finally {
      staging.unmap();
    }
    if (!fixListed(p, tf, block, listed, r0, this.certification)) flagged = true;
    return { readable, flagged };
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

  /** Takes back a written output of {@link merge} for reuse (see MergeBackend.recycle). */
  recycle(output: Uint8Array): void {
    this.outputs.recycle(output);
    // Outputs of ops the CPU executor ran are its own (each pool ignores what it did not hand out).
    this.cpuBackend.recycle?.(output);
  }

  /** Appends why this backend was chosen to its description. */
  note(reason: string): void {
    this.notes.push(reason);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of [this.params, this.wIn, this.lt, this.rt, this.wOut, this.flags, this.staging]) b.destroy();
    this.cpuBackend.dispose();
    this.device.destroy();
  }
}

/** Indices row · paddedCols + col → row · cols + col (padding columns are never listed; skipped). */
function toBlockIndices(list: Uint32Array, paddedCols: number, cols: number): Uint32Array {
  if (paddedCols === cols) return list.slice();
  const out: number[] = [];
  for (const index of list) {
    const r = Math.floor(index / paddedCols), c = index - r * paddedCols;
    if (c < cols) out.push(r * cols + c);
  }
  return Uint32Array.from(out);
}

function bytesOf(v: Float32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** Typed arrays here are never backed by a SharedArrayBuffer; the WebGPU typings want that said. */
function gpuSource(v: ArrayBufferView): ArrayBufferView<ArrayBuffer> {
  return v as ArrayBufferView<ArrayBuffer>;
}

