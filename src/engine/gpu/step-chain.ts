/**
 * WebGPU executor for any sequence of update steps: each row slab of W becomes V in f32 on the GPU
 * (with the first low-rank pass fused in), each step runs as one or two dispatches between two f32
 * buffers, and the last dispatch rounds V once to the output dtype (or adds its squares per column
 * into the norms of a DoRA pass). The low-rank passes, DoRA row norms and the rounding are the
 * merge-low-rank program's; the other steps are the update-steps program's.
 */
import { decodeToF32, DTYPE_BYTES, type FloatDType } from '../../dtype.js';
import { MergeError, throwIfAborted } from '../../errors.js';
import type { FloatTensorBytes, LowRankTerm, MergeOp } from '../merge-op.js';
import type { OpShape } from '../op-shape.js';
import { lowRankFactors } from '../low-rank-factors.js';
import { rowGranule, storedAxis, type UpdateStep } from '../update-steps.js';
import type { MergeDevice } from './gpu-device.js';
import {
  columnPadding, dispatchShape, mergeBindGroupLayout, mergePipeline, paramsBytes, RANK_STEP, TILE, PARAMS_BYTES,
  type DoraMode, type MergeEntry,
} from './merge-program.js';
import { ReusableBuffer } from './reusable-buffer.js';
import { runStep, STEP_PARAMS_BYTES, type StepEntry, type StepParams } from './steps-program.js';
import { permutedBlocksData, runPermutedBlocks } from './permuted-blocks-program.js';
import { blockCount } from '../permuted-blocks.js';

/** Slabs larger than this gain nothing and cost host and GPU memory. */
const MAX_SLAB_BYTES = 64 * 1024 * 1024;

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;
const f32 = (t: FloatTensorBytes): Float32Array<ArrayBuffer> => decodeToF32(t.data, t.dtype) as Float32Array<ArrayBuffer>;

export interface ChainHost {
  readonly gpu: MergeDevice;
  readonly shiftFree: boolean;
  /** Runs GPU calls inside error scopes; errors name the tensor. */
  scoped(op: MergeOp, body: () => void): Promise<void>;
  /** Rejects when the device is lost. */
  readonly lost: Promise<never>;
}

interface Slabbing {
  paddedCols: number;
  slabRows: number;
  /** Largest padded rank of any low-rank pass or projection. */
  rank: number;
  /** f32 values of the largest aux vector (factors, blocks, P). */
  auxLength: number;
}

export class StepChain {
  private readonly device: GPUDevice;
  private readonly buffers: ReusableBuffer[] = [];
  private readonly params: ReusableBuffer;
  private readonly stepParams: ReusableBuffer;
  private readonly wIn: ReusableBuffer;
  private readonly vA: ReusableBuffer;
  private readonly vB: ReusableBuffer;
  private readonly wOut: ReusableBuffer;
  private readonly lt: ReusableBuffer;
  private readonly rt: ReusableBuffer;
  private readonly aux: ReusableBuffer;
  private readonly dense: ReusableBuffer;
  private readonly flags: ReusableBuffer;
  private readonly norms: ReusableBuffer;
  /** Column sums of squares, accumulated over slabs (a pass of its own, see column-norms.ts). */
  private readonly sums: ReusableBuffer;
  private readonly magnitude: ReusableBuffer;
  private readonly staging: ReusableBuffer;
  /** σ and σ⁻¹ of a permuted block map. */
  private readonly perm: ReusableBuffer;

  constructor(private readonly host: ChainHost) {
    this.device = host.gpu.device;
    const S = GPUBufferUsage.STORAGE, D = GPUBufferUsage.COPY_DST, C = GPUBufferUsage.COPY_SRC;
    const buf = (label: string, usage: number, limit = host.gpu.maxBindingBytes): ReusableBuffer => {
      const b = new ReusableBuffer(this.device, `loramerge steps ${label}`, usage, limit);
      this.buffers.push(b);
      return b;
    };
    this.params = buf('params', GPUBufferUsage.UNIFORM | D, PARAMS_BYTES);
    this.stepParams = buf('step params', GPUBufferUsage.UNIFORM | D, STEP_PARAMS_BYTES);
    this.wIn = buf('W in', S | D);
    this.vA = buf('V a', S | D);
    this.vB = buf('V b', S | D);
    this.wOut = buf('W out', S | C);
    this.lt = buf('left factor', S | D);
    this.rt = buf('right factor', S | D);
    this.aux = buf('step data', S | D);
    this.dense = buf('dense term', S | D);
    this.flags = buf('non-finite flag', S | D | C);
    this.norms = buf('norms', S | D);
    this.sums = buf('column sums', S | D | C);
    this.magnitude = buf('DoRA magnitude', S | D);
    this.staging = buf('readback', GPUBufferUsage.MAP_READ | D);
    this.perm = buf('permutation', S | D);
  }

  /** Slab rows and buffer sizes for the op, or undefined when no slab fits the binding limits. */
  private slabbing(op: MergeOp, shape: OpShape): Slabbing | undefined {
    // fp8 rows are read and written as whole vec4s of 16 elements.
    const paddedCols = roundUp(op.cols, columnPadding(op.base.dtype, op.outDtype));
    const limit = Math.min(this.host.gpu.maxBindingBytes - 512, MAX_SLAB_BYTES);
    let rank = 0;
    let auxLength = 0;
    for (const s of shape.steps) {
      if (s.kind === 'add') rank = Math.max(rank, roundUp(s.terms.reduce((n, t) => n + t.rank, 0), RANK_STEP));
      if (s.kind === 'self') {
        rank = Math.max(rank, roundUp(s.rank, RANK_STEP));
        auxLength = Math.max(auxLength, paddedCols * roundUp(s.rank, RANK_STEP));
      }
      if (s.kind === 'scale') auxLength = Math.max(auxLength, Math.max(op.rows, paddedCols) + TILE);
      if (s.kind === 'rotate') auxLength = Math.max(auxLength, (s.axis === 'out' ? shape.outFeatures : shape.inFeatures) * s.blockSize);
      if (s.kind === 'permuted-blocks') {
        const n = s.axis === 'out' ? shape.outFeatures : shape.inFeatures;
        auxLength = Math.max(auxLength, blockCount(n, s.blockSize) * s.blockSize ** 2, 2 * n);
      }
    }
    if (Math.max(rank * paddedCols, auxLength, op.rows + TILE) * 4 > limit) return undefined;
    const granule = lcm(TILE, rowGranule(op, shape.steps));
    const rowBytes = Math.max(paddedCols * 4, rank * 4);
    const maxGroups = this.host.gpu.maxWorkgroupsPerDimension ** 2;
    const gridRows = Math.floor(maxGroups * 64 / paddedCols);
    const slabRows = Math.floor(Math.min(limit / rowBytes, gridRows) / granule) * granule;
    if (slabRows < granule) return undefined;
    return { paddedCols, slabRows, rank, auxLength };
  }

  /** W' for the op's rows, or undefined when the op does not fit (the caller runs it on the CPU). */
  async merge(op: MergeOp, shape: OpShape, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    const s = this.slabbing(op, shape);
    if (!s) return undefined;
    const result = new Uint8Array(shape.rowCount * op.cols * DTYPE_BYTES[op.outDtype]);
    await this.run(op, shape, s, signal, result);
    return result;
  }

  /** Σ V² per stored column over the op's rows, or undefined when the op does not fit. */
  async columnSums(op: MergeOp, shape: OpShape, signal?: AbortSignal): Promise<Float64Array | undefined> {
    const s = this.slabbing(op, shape);
    if (!s) return undefined;
    await this.run(op, shape, s, signal, undefined);
    const bytes = s.paddedCols * 4;
    const staging = this.staging.get(bytes);
    await this.host.scoped(op, () => {
      const enc = this.device.createCommandEncoder({ label: `read back norms "${op.name}"` });
      enc.copyBufferToBuffer(this.sums.get(bytes), 0, staging, 0, bytes);
      this.device.queue.submit([enc.finish()]);
    });
    await Promise.race([staging.mapAsync(GPUMapMode.READ, 0, bytes), this.host.lost]);
    try {
      return Float64Array.from(new Float32Array(staging.getMappedRange(0, bytes)).subarray(0, op.cols));
    } finally {
      staging.unmap();
    }
  }

  /** Runs every slab: into `result` (merge), or adding column sums into the norms buffer. */
  private async run(op: MergeOp, shape: OpShape, s: Slabbing, signal: AbortSignal | undefined, result: Uint8Array | undefined): Promise<void> {
    const { paddedCols, slabRows } = s;
    const q = this.device.queue;
    const maxRows = roundUp(Math.min(slabRows, shape.rowCount), TILE);
    const vBytes = maxRows * paddedCols * 4;
    // Every buffer at its final size before the first dispatch (a grown buffer replaces the old one).
    this.wIn.get(maxRows * paddedCols * DTYPE_BYTES[op.base.dtype]);
    this.vA.get(vBytes);
    this.vB.get(vBytes);
    this.dense.get(vBytes);
    this.wOut.get(maxRows * paddedCols * DTYPE_BYTES[op.outDtype]);
    this.lt.get(Math.max(s.rank, RANK_STEP) * maxRows * 4);
    this.rt.get(Math.max(s.rank, RANK_STEP) * paddedCols * 4);
    this.aux.get(Math.max(s.auxLength, 4) * 4);
    const normLength = Math.max(op.rows, paddedCols) + TILE;
    this.norms.get(normLength * 4);
    this.sums.get((paddedCols + TILE) * 4);
    this.magnitude.get(normLength * 4);
    this.flags.get(4);
    this.perm.get(Math.max(4, ...shape.steps.map((st) => (st.kind === 'permuted-blocks' ? 8 * (st.axis === 'out' ? shape.outFeatures : shape.inFeatures) : 4))));
    await this.host.scoped(op, () => {
      q.writeBuffer(this.flags.get(4), 0, new Uint32Array(4));
      if (!result) q.writeBuffer(this.sums.get(4), 0, new Float32Array(paddedCols + TILE));
    });

    for (let r0 = 0; r0 < shape.rowCount; r0 += slabRows) {
      throwIfAborted(signal);
      const n = Math.min(slabRows, shape.rowCount - r0);
      await this.host.scoped(op, () => this.slab(op, shape, s, r0, n, !!result));
      if (result) await this.readBack(op, paddedCols, r0, n, result);
    }
    if (!result) {
      // Surface a non-finite V (its sums would be Inf or NaN) like a merge would.
      await this.readFlag(op);
    }
  }

  /** Queues every dispatch of one slab. */
  private slab(op: MergeOp, shape: OpShape, s: Slabbing, r0: number, n: number, merge: boolean): void {
    const { paddedCols } = s;
    const paddedRows = roundUp(n, TILE);
    const q = this.device.queue;
    const row0 = shape.rowStart + r0;
    // W's rows, padded.
    const inBytes = DTYPE_BYTES[op.base.dtype];
    const slab = op.base.data.subarray(r0 * op.cols * inBytes, (r0 + n) * op.cols * inBytes);
    const padded = new Uint8Array(paddedRows * paddedCols * inBytes);
    for (let r = 0; r < n; r++) padded.set(slab.subarray(r * op.cols * inBytes, (r + 1) * op.cols * inBytes), r * paddedCols * inBytes);
    q.writeBuffer(this.wIn.get(padded.byteLength), 0, padded);

    let cur = this.vA, other = this.vB;
    const swap = () => ([cur, other] = [other, cur]);
    const steps = shape.steps;
    let i = 0;
    // V = W (+ the first low-rank pass), in f32.
    const first = steps[0]?.kind === 'add' ? steps[0] : undefined;
    const rank0 = this.uploadFactors(op, shape, first?.terms ?? [], r0, n, paddedRows, paddedCols);
    this.mergeTiles(op, 'mergeTiles', this.wIn, cur, { n, paddedRows, paddedCols, rank: rank0, inDtype: op.base.dtype, outDtype: 'F32', row0, dora: 0 });
    if (first) {
      this.addDense(op, first.dense ?? [], cur, other, r0, n, paddedRows, paddedCols);
      i = 1;
    }
    for (; i < steps.length; i++) {
      const step = steps[i];
      const base: StepParams = { rows: n, paddedRows, paddedCols, cols: op.cols, row0, block: 1, rank: 0, items: paddedRows * paddedCols, axis: 0, scale: 1 };
      switch (step.kind) {
        case 'add': {
          if (step.terms.length) {
            const rank = this.uploadFactors(op, shape, step.terms, r0, n, paddedRows, paddedCols);
            this.mergeTiles(op, 'mergeTiles', cur, other, { n, paddedRows, paddedCols, rank, inDtype: 'F32', outDtype: 'F32', row0, dora: 0 });
            swap();
          }
          this.addDense(op, step.dense ?? [], cur, other, r0, n, paddedRows, paddedCols);
          break;
        }
        case 'dora': {
          // Per stored row only: column norms were resolved into a scale step before.
          if (storedAxis(op, step.dora.normAxis) !== 'row') {
            throw new MergeError('PLAN_INVALID', `tensor "${op.name}": DoRA norms across rows reached the GPU unresolved`);
          }
          const m = new Float32Array(op.rows + TILE);
          m.set(f32(step.dora.magnitude));
          q.writeBuffer(this.magnitude.get(m.byteLength), 0, m);
          const ones = new Float32Array(op.rows + TILE).fill(1);
          q.writeBuffer(this.norms.get(ones.byteLength), 0, ones);
          const p = { n, paddedRows, paddedCols, rank: 0, inDtype: 'F32' as const, outDtype: 'F32' as const, row0, dora: 1 as const, eps: step.dora.epsilon };
          this.mergeTiles(op, 'normRows', cur, other, p);
          this.mergeTiles(op, 'mergeTiles', cur, other, p);
          swap();
          break;
        }
        case 'scale': {
          const row = storedAxis(op, step.axis) === 'row';
          const f = new Float32Array(row ? op.rows + TILE : paddedCols);
          f.set(f32(step.factors));
          q.writeBuffer(this.aux.get(f.byteLength), 0, f);
          this.step(op, 'scaleAxis', { ...base, axis: row ? 0 : 1 }, other, cur);
          break;
        }
        case 'self': {
          const rank = roundUp(step.rank, RANK_STEP);
          const p = f32(step.p);
          const pPadded = new Float32Array(paddedCols * rank);
          for (let c = 0; c < op.cols; c++) pPadded.set(p.subarray(c * step.rank, (c + 1) * step.rank), c * rank);
          q.writeBuffer(this.aux.get(pPadded.byteLength), 0, pPadded);
          this.step(op, 'projectRows', { ...base, rank, items: rank * paddedRows, scale: step.scale }, cur, this.lt);
          const qm = f32(step.q);
          const right = new Float32Array(rank * paddedCols);
          for (let k = 0; k < step.rank; k++) right.set(qm.subarray(k * op.cols, (k + 1) * op.cols), k * paddedCols);
          q.writeBuffer(this.rt.get(right.byteLength), 0, right);
          this.mergeTiles(op, 'mergeTiles', cur, other, { n, paddedRows, paddedCols, rank, inDtype: 'F32', outDtype: 'F32', row0, dora: 0 });
          swap();
          break;
        }
        case 'rotate': {
          const blocks = f32(step.blocks);
          q.writeBuffer(this.aux.get(blocks.byteLength), 0, blocks);
          const entry: StepEntry = storedAxis(op, step.axis) === 'row' ? 'rotateRows' : 'rotateCols';
          this.step(op, entry, { ...base, block: step.blockSize }, cur, other);
          swap();
          break;
        }
        case 'permuted-blocks': {
          const onRows = storedAxis(op, step.axis) === 'row';
          const axisLength = onRows ? op.rows : op.cols;
          const { blocks, perm } = permutedBlocksData(step, axisLength);
          q.writeBuffer(this.aux.get(blocks.byteLength), 0, blocks);
          q.writeBuffer(this.perm.get(perm.byteLength), 0, perm);
          runPermutedBlocks(this.device, onRows ? 'permutedRows' : 'permutedCols', step, axisLength, { rows: n, paddedRows, paddedCols, cols: op.cols, row0 }, {
            params: this.stepParams.get(STEP_PARAMS_BYTES), src: cur.get(4), dst: other.get(4), blocks: this.aux.get(4), perm: this.perm.get(4),
          }, this.host.gpu.maxWorkgroupsPerDimension, `steps "${op.name}"`);
          swap();
          break;
        }
      }
    }
    if (merge) {
      this.mergeTiles(op, 'mergeTiles', cur, this.wOut, { n, paddedRows, paddedCols, rank: 0, inDtype: 'F32', outDtype: op.outDtype, row0, dora: 0 });
    } else {
      this.mergeTiles(op, 'normCols', cur, other, { n, paddedRows, paddedCols, rank: 0, inDtype: 'F32', outDtype: 'F32', row0, dora: 2 }, this.sums);
    }
  }

  /** Uploads Lᵀ (slab rows) and R of these terms; returns the padded rank (0: no terms). */
  private uploadFactors(op: MergeOp, shape: OpShape, terms: readonly LowRankTerm[], r0: number, n: number, paddedRows: number, paddedCols: number): number {
    if (terms.length === 0) return 0;
    const slabShape = { ...shape, rowStart: shape.rowStart + r0, rowCount: n };
    const slabOp = { ...op, base: { ...op.base, data: op.base.data.subarray(0, 0) } };
    const f = lowRankFactors(slabOp, slabShape, terms);
    const rank = roundUp(f.rank, RANK_STEP);
    const lt = new Float32Array(rank * paddedRows);
    for (let i = 0; i < n; i++) for (let k = 0; k < f.rank; k++) lt[k * paddedRows + i] = f.left[i * f.rank + k];
    const right = new Float32Array(rank * paddedCols);
    for (let k = 0; k < f.rank; k++) right.set(f.right.subarray(k * op.cols, (k + 1) * op.cols), k * paddedCols);
    const q = this.device.queue;
    q.writeBuffer(this.lt.get(lt.byteLength), 0, lt);
    q.writeBuffer(this.rt.get(right.byteLength), 0, right);
    return rank;
  }

  /** V += s·D for each dense term, D's slab rows uploaded padded. */
  private addDense(op: MergeOp, dense: NonNullable<Extract<UpdateStep, { kind: 'add' }>['dense']>, cur: ReusableBuffer, other: ReusableBuffer, r0: number, n: number, paddedRows: number, paddedCols: number): void {
    for (const d of dense) {
      const values = f32(d.values);
      const padded = new Float32Array(paddedRows * paddedCols);
      for (let r = 0; r < n; r++) padded.set(values.subarray((r0 + r) * op.cols, (r0 + r + 1) * op.cols), r * paddedCols);
      this.device.queue.writeBuffer(this.dense.get(padded.byteLength), 0, padded);
      this.step(op, 'addDense', {
        rows: n, paddedRows, paddedCols, cols: op.cols, row0: 0, block: 1, rank: 0, items: paddedRows * paddedCols, axis: 0, scale: d.scale,
      }, other, cur, this.dense);
    }
  }

  private step(op: MergeOp, entry: StepEntry, p: StepParams, src: ReusableBuffer, dst: ReusableBuffer, aux = this.aux): void {
    runStep(this.device, entry, p, {
      params: this.stepParams.get(STEP_PARAMS_BYTES), src: src.get(4), dst: dst.get(4), aux: aux.get(4),
    }, this.host.gpu.maxWorkgroupsPerDimension, `steps "${op.name}"`);
  }

  private mergeTiles(op: MergeOp, entry: MergeEntry, src: ReusableBuffer, dst: ReusableBuffer, p: {
    n: number; paddedRows: number; paddedCols: number; rank: number; inDtype: FloatDType; outDtype: FloatDType; row0: number; dora: DoraMode; eps?: number;
  }, norms = this.norms): void {
    const rowTiles = p.paddedRows / TILE, colTiles = p.paddedCols / TILE;
    const items = entry === 'mergeTiles' ? rowTiles * colTiles : entry === 'normRows' ? rowTiles : colTiles;
    const grid = dispatchShape(items, this.host.gpu.maxWorkgroupsPerDimension);
    const q = this.device.queue;
    q.writeBuffer(this.params.get(PARAMS_BYTES), 0, paramsBytes({
      rows: p.n, paddedCols: p.paddedCols, paddedRows: p.paddedRows, rank: p.rank, items, inDtype: p.inDtype, outDtype: p.outDtype,
      normRow0: p.row0, eps: p.eps ?? 0,
    }, grid));
    const bindGroup = this.device.createBindGroup({
      label: `steps "${op.name}" ${entry}`,
      layout: mergeBindGroupLayout(this.device),
      entries: [this.params, src, this.lt, this.rt, dst, this.flags, norms, this.magnitude]
        .map((b, binding) => ({ binding, resource: { buffer: b.get(4) } })),
    });
    const enc = this.device.createCommandEncoder({ label: `steps "${op.name}" ${entry}` });
    const pass = enc.beginComputePass();
    pass.setPipeline(mergePipeline(this.device, { entry, inDtype: p.inDtype, outDtype: p.outDtype, dora: p.dora, shiftFree: this.host.shiftFree }));
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid.x, grid.y);
    pass.end();
    q.submit([enc.finish()]);
  }

  private async readBack(op: MergeOp, paddedCols: number, r0: number, n: number, result: Uint8Array): Promise<void> {
    const outBytes = DTYPE_BYTES[op.outDtype];
    const bytes = n * paddedCols * outBytes;
    const flagAt = Math.ceil(bytes / 256) * 256;
    const staging = this.staging.get(flagAt + 4);
    await this.host.scoped(op, () => {
      const enc = this.device.createCommandEncoder({ label: `read back "${op.name}"` });
      enc.copyBufferToBuffer(this.wOut.get(bytes), 0, staging, 0, bytes);
      enc.copyBufferToBuffer(this.flags.get(4), 0, staging, flagAt, 4);
      this.device.queue.submit([enc.finish()]);
    });
    await Promise.race([staging.mapAsync(GPUMapMode.READ, 0, flagAt + 4), this.host.lost]);
    try {
      if (new Uint32Array(staging.getMappedRange(flagAt, 4))[0] !== 0) throw nonFinite(op);
      const out = new Uint8Array(staging.getMappedRange(0, bytes));
      const rowBytes = op.cols * outBytes, stride = paddedCols * outBytes;
      for (let r = 0; r < n; r++) result.set(out.subarray(r * stride, r * stride + rowBytes), (r0 + r) * rowBytes);
    } finally {
      staging.unmap();
    }
  }

  private async readFlag(op: MergeOp): Promise<void> {
    const staging = this.staging.get(4);
    await this.host.scoped(op, () => {
      const enc = this.device.createCommandEncoder({ label: `read flag "${op.name}"` });
      enc.copyBufferToBuffer(this.flags.get(4), 0, staging, 0, 4);
      this.device.queue.submit([enc.finish()]);
    });
    await Promise.race([staging.mapAsync(GPUMapMode.READ, 0, 4), this.host.lost]);
    try {
      if (new Uint32Array(staging.getMappedRange(0, 4))[0] !== 0) throw nonFinite(op);
    } finally {
      staging.unmap();
    }
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}

function nonFinite(op: MergeOp): MergeError {
  return new MergeError('NON_FINITE', `tensor "${op.name}": merged values are not finite (NaN or Inf in ${op.outDtype})`);
}

function lcm(a: number, b: number): number {
  let x = a, y = b;
  while (y) [x, y] = [y, x % y];
  return (a / x) * b;
}
