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
import type { MergeDevice } from './gpu-device.js';
import { ReusableBuffer } from './reusable-buffer.js';
import {
  dispatchShape, mergeBindGroupLayout, mergePipeline, paramsBytes, TILE, PARAMS_BYTES, WORKGROUP_SIZE,
  type DoraMode, type MergeEntry, type MergeParams,
} from './merge-program.js';

/** Slabs larger than this gain nothing and cost host and GPU memory. */
const MAX_SLAB_BYTES = 128 * 1024 * 1024;

interface SlabPlan {
  op: MergeOp;
  shape: OpShape;
  factors: LowRankFactors;
  outStride: number;
  slabRows: number;
  dora: DoraMode;
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
  private readonly params: ReusableBuffer;
  private readonly wIn: ReusableBuffer;
  private readonly lt: ReusableBuffer;
  private readonly rt: ReusableBuffer;
  private readonly wOut: ReusableBuffer;
  private readonly flags: ReusableBuffer;
  private readonly norms: ReusableBuffer;
  private readonly magnitude: ReusableBuffer;
  private readonly staging: ReusableBuffer;

  constructor(private readonly gpu: MergeDevice) {
    this.device = gpu.device;
    this.description = `WebGPU: ${gpu.description}`;
    this.isSoftware = gpu.isSoftware;
    this.lost = gpu.device.lost.then((info) => {
      this.lostReason = info.message || info.reason;
      throw new MergeError('GPU_FAILURE', `GPU device lost: ${this.lostReason}`);
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
    this.staging = buf('readback', GPUBufferUsage.MAP_READ | D, max + 256);
  }

  async merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
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
    const inBytes = DTYPE_BYTES[op.base.dtype];
    const outBytes = DTYPE_BYTES[op.outDtype];
    // 2-byte outputs with odd rows are written with an even row stride (compacted on readback),
    // so no two invocations share a 32-bit word.
    const outStride = outBytes === 2 && op.cols % 2 === 1 ? op.cols + 1 : op.cols;
    const limit = Math.min(this.gpu.maxBindingBytes, MAX_SLAB_BYTES);
    const rank = Math.max(factors.rank, 1);
    if (rank * Math.ceil(op.cols / TILE) * 16 > limit) return undefined;
    const rowBytes = Math.max(op.cols * inBytes, outStride * outBytes, rank * 4);
    // Also keep each slab's dispatch within a 2-D grid of the device's size.
    const maxGroups = this.gpu.maxWorkgroupsPerDimension ** 2;
    const gridRows = Math.floor(maxGroups * WORKGROUP_SIZE / Math.ceil(op.cols / TILE)) * TILE;
    const slabRows = Math.min(Math.floor(limit / rowBytes / TILE) * TILE, gridRows);
    if (slabRows < TILE) return undefined;
    const dora: DoraMode = shape.doraNorm === 'row' ? 1 : shape.doraNorm === 'col' ? 2 : 0;
    return { op, shape, factors, outStride, slabRows, dora };
  }

  private async run(plan: SlabPlan, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const { op, shape, factors, outStride, slabRows, dora } = plan;
    const q = this.device.queue;
    const outBytes = DTYPE_BYTES[op.outDtype];
    const result = new Uint8Array(shape.rowCount * op.cols * outBytes);

    await this.scoped(op, () => {
      q.writeBuffer(this.rt.get(factors.rank * Math.ceil(op.cols / TILE) * 16), 0, gpuSource(padRight(factors, op.cols)));
      q.writeBuffer(this.flags.get(4), 0, new Uint32Array(4));
      if (dora) {
        const magnitude = decodeToF32(op.dora!.magnitude.data, op.dora!.magnitude.dtype);
        q.writeBuffer(this.magnitude.get(magnitude.byteLength), 0, gpuSource(magnitude));
        const normCount = dora === 1 ? op.rows : op.cols;
        q.writeBuffer(this.norms.get(normCount * 4), 0, new Float32Array(normCount));
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
      await this.readBack(plan, r0, n, result);
    }
    return result;
  }

  /** Writes rows [r0, r0 + n) of W and of the left factor (transposed, padded) to the GPU. */
  private upload(plan: SlabPlan, r0: number, n: number): void {
    const { op, factors } = plan;
    const inBytes = DTYPE_BYTES[op.base.dtype];
    let w = op.base.data.subarray(r0 * op.cols * inBytes, (r0 + n) * op.cols * inBytes);
    if (w.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(w.byteLength / 4) * 4);
      padded.set(w);
      w = padded;
    }
    const q = this.device.queue;
    q.writeBuffer(this.wIn.get(w.byteLength), 0, gpuSource(w));
    const lt = transposeLeft(factors, r0, n);
    q.writeBuffer(this.lt.get(lt.byteLength), 0, gpuSource(lt));
  }

  private dispatch(plan: SlabPlan, entry: MergeEntry, r0: number, n: number): void {
    const { op, shape, factors, outStride, dora } = plan;
    const rowTiles = Math.ceil(n / TILE);
    const colTiles = Math.ceil(op.cols / TILE);
    const items = entry === 'mergeTiles' ? rowTiles * colTiles : entry === 'normRows' ? rowTiles : colTiles;
    const grid = dispatchShape(items, this.gpu.maxWorkgroupsPerDimension);
    const p: MergeParams = {
      rows: n, cols: op.cols, rank: factors.rank, items, outStride,
      normRow0: shape.rowStart + r0, eps: op.dora?.epsilon ?? 0,
    };
    const q = this.device.queue;
    q.writeBuffer(this.params.get(PARAMS_BYTES), 0, paramsBytes(p, grid));
    const inBytes = DTYPE_BYTES[op.base.dtype];
    const outBytes = DTYPE_BYTES[op.outDtype];
    const bindGroup = this.device.createBindGroup({
      label: `merge "${op.name}" rows ${r0}+${n}`,
      layout: mergeBindGroupLayout(this.device),
      entries: [
        this.params.get(PARAMS_BYTES),
        this.wIn.get(Math.ceil(n * op.cols * inBytes / 4) * 4),
        this.lt.get(factors.rank * rowTiles * 16),
        this.rt.get(factors.rank * colTiles * 16),
        this.wOut.get(n * outStride * outBytes),
        this.flags.get(4),
        this.norms.get(4),
        this.magnitude.get(4),
      ].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const enc = this.device.createCommandEncoder({ label: `merge "${op.name}" ${entry}` });
    const pass = enc.beginComputePass({ label: `merge "${op.name}" ${entry}` });
    pass.setPipeline(mergePipeline(this.device, { entry, inDtype: op.base.dtype, outDtype: op.outDtype, dora }));
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid.x, grid.y);
    pass.end();
    q.submit([enc.finish()]);
  }

  /** Copies the slab's output and the non-finite flag back and into `result`. */
  private async readBack(plan: SlabPlan, r0: number, n: number, result: Uint8Array): Promise<void> {
    const { op, outStride } = plan;
    const outBytes = DTYPE_BYTES[op.outDtype];
    const bytes = n * outStride * outBytes;
    const flagAt = Math.ceil(bytes / 256) * 256;
    const staging = this.staging.get(flagAt + 4);
    await this.scoped(op, () => {
      const enc = this.device.createCommandEncoder({ label: `read back "${op.name}"` });
      enc.copyBufferToBuffer(this.wOut.get(bytes), 0, staging, 0, bytes);
      enc.copyBufferToBuffer(this.flags.get(4), 0, staging, flagAt, 4);
      this.device.queue.submit([enc.finish()]);
    });
    await Promise.race([staging.mapAsync(GPUMapMode.READ, 0, flagAt + 4), this.lost]);
    try {
      const flag = new Uint32Array(staging.getMappedRange(flagAt, 4))[0];
      if (flag !== 0) {
        throw new MergeError('NON_FINITE', `tensor "${op.name}": merged values are not finite (NaN or Inf in ${op.outDtype})`);
      }
      const out = new Uint8Array(staging.getMappedRange(0, bytes));
      const rowBytes = op.cols * outBytes;
      const at = r0 * rowBytes;
      if (outStride === op.cols) {
        result.set(out, at);
      } else {
        const strideBytes = outStride * outBytes;
        for (let r = 0; r < n; r++) result.set(out.subarray(r * strideBytes, r * strideBytes + rowBytes), at + r * rowBytes);
      }
    } finally {
      staging.unmap();
    }
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
    this.device.destroy();
  }
}

/** R (rank × cols) with rows padded to a multiple of 4 columns, zero-filled. */
function padRight(f: LowRankFactors, cols: number): Float32Array {
  const stride = Math.ceil(cols / TILE) * TILE;
  if (stride === cols) return f.right.length ? f.right : new Float32Array(4);
  const out = new Float32Array(Math.max(f.rank * stride, 4));
  for (let k = 0; k < f.rank; k++) out.set(f.right.subarray(k * cols, (k + 1) * cols), k * stride);
  return out;
}

/** Lᵀ for rows [r0, r0 + n): rank × n, rows padded to a multiple of 4, zero-filled. */
function transposeLeft(f: LowRankFactors, r0: number, n: number): Float32Array {
  const stride = Math.ceil(n / TILE) * TILE;
  const out = new Float32Array(Math.max(f.rank * stride, 4));
  const rank = f.rank;
  for (let i = 0; i < n; i++) {
    const src = (r0 + i) * rank;
    for (let k = 0; k < rank; k++) out[k * stride + i] = f.left[src + k];
  }
  return out;
}

/** Typed arrays here are never backed by a SharedArrayBuffer; the WebGPU typings want that said. */
function gpuSource(v: ArrayBufferView): ArrayBufferView<ArrayBuffer> {
  return v as ArrayBufferView<ArrayBuffer>;
}
