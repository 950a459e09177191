/**
 * The algebra's products on WebGPU (shaders/algebra-products.wgsl). A resident matrix lives in row
 * slabs, each one storage buffer within the device's binding limit, rows padded to 4 columns and
 * slabs to 4 rows. `times` runs one dispatch per slab and reads each slab's rows of the result
 * back; `timesT` accumulates every slab's Aᵀ·Y into one output. One op at a time per device. A
 * signal is checked before a product starts (it may wait behind others), between `times`'s slabs
 * (each read back before the next) and once the result is read back; work submitted is not stopped.
 * A product the device cannot bind (a row wider than its largest binding, a Y or output too large
 * for one) runs on the CPU backend the algebra was given, the entry point's worker threads where it
 * has them (their count said in the description), made with the algebra, its threads started by the
 * first such product, and disposed with the algebra.
 */
import { MergeError, throwIfAborted } from '../errors.js';
import { webGpuUnavailable } from '../engine/gpu/browser-gpu.js';
import { requestAdapter, requestMergeDevice, type GpuLimitCaps, type MergeDevice } from '../engine/gpu/gpu-device.js';
import { algebraProductsWgsl } from '../engine/gpu/shaders.generated.js';
import { checkTimes, type AlgebraBackend, type ResidentMatrix } from './algebra-backend.js';
import { CpuAlgebra } from './cpu-algebra.js';
import { gpuSideThreads } from '../engine/gpu/gpu-side-threads.js';
import type { Mat } from './matrix.js';

const WORKGROUP = 64;
const PARAMS_BYTES = 32;
/** Slabs larger than this gain nothing. */
const MAX_SLAB_BYTES = 128 * 1024 * 1024;

const pad4 = (n: number): number => Math.ceil(n / 4) * 4;

interface Program {
  layout: GPUBindGroupLayout;
  times: GPUComputePipeline;
  timesT: GPUComputePipeline;
}

const programs = new WeakMap<GPUDevice, Program>();

function program(device: GPUDevice): Program {
  let p = programs.get(device);
  if (!p) {
    const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry =>
      ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    const layout = device.createBindGroupLayout({
      label: 'algebra-products bind group layout',
      entries: [entry(0, 'uniform'), entry(1, 'read-only-storage'), entry(2, 'read-only-storage'), entry(3, 'storage')],
    });
    const module = device.createShaderModule({ label: 'algebra-products.wgsl', code: algebraProductsWgsl });
    const pipelineLayout = device.createPipelineLayout({ label: 'algebra-products pipeline layout', bindGroupLayouts: [layout] });
    const make = (entryPoint: 'times' | 'timesT') => device.createComputePipeline({
      label: `algebra-products ${entryPoint}`,
      layout: pipelineLayout,
      compute: { module, entryPoint, constants: { WORKGROUP } },
    });
    p = { layout, times: make('times'), timesT: make('timesT') };
    programs.set(device, p);
  }
  return p;
}

class GpuResident implements ResidentMatrix {
  released = false;
  constructor(
    readonly rows: number,
    readonly cols: number,
    /** First row of each slab, its row count and its buffer. */
    readonly slabs: { row0: number; rows: number; buffer: GPUBuffer }[],
    /** Kept for products the GPU cannot bind (the CPU runs those). */
    readonly host: Mat,
  ) {}
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const s of this.slabs) s.buffer.destroy();
  }
}

/** The algebra on `gpu`'s adapter, its buffer limits capped by `limits`; `cpu` makes the CPU for the products it cannot bind (default: one thread). */
export async function createWebGpuAlgebra(gpu: GPU | undefined, limits?: GpuLimitCaps, cpu?: () => AlgebraBackend): Promise<GpuAlgebra> {
  if (!gpu) throw webGpuUnavailable();
  return new GpuAlgebra(await requestMergeDevice(await requestAdapter(gpu), limits), cpu);
}

export class GpuAlgebra implements AlgebraBackend {
  readonly kind = 'webgpu' as const;
  readonly isSoftware: boolean;
  private readonly device: GPUDevice;
  private readonly maxBinding: number;
  private readonly maxGroups: number;
  /**
   * The CPU for products the device cannot bind, made with the backend so that the description can
   * say its threads (a CpuAlgebra's pool starts no thread before a product needs one).
   */
  private fallback: AlgebraBackend | undefined;
  private lostReason: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /**
   * `cpu` makes the backend for the products the device cannot bind: the entry point's CPU, on its
   * threads (default: a CpuAlgebra on the calling thread).
   */
  constructor(private readonly gpu: MergeDevice, private readonly cpu: () => AlgebraBackend = () => new CpuAlgebra()) {
    this.device = gpu.device;
    this.fallback = cpu();
    this.isSoftware = gpu.isSoftware;
    this.maxBinding = Math.min(gpu.maxBindingBytes, MAX_SLAB_BYTES);
    this.maxGroups = gpu.maxWorkgroupsPerDimension;
    void gpu.device.lost.then((info) => { this.lostReason = info.message || info.reason; });
  }

  /** `WebGPU: <adapter>, with 2 CPU threads for what the GPU leaves to the CPU` (the products too wide to bind), where the CPU is a CpuAlgebra. */
  get description(): string {
    return `WebGPU: ${this.gpu.description}${gpuSideThreads(this.fallback instanceof CpuAlgebra ? this.fallback.threads : undefined)}`;
  }

  async upload(m: Mat): Promise<ResidentMatrix> {
    this.checkAlive();
    const colsPad = pad4(m.cols);
    const rowBytes = colsPad * 4;
    const slabRows = Math.floor(this.maxBinding / rowBytes / 4) * 4;
    const slabs: GpuResident['slabs'] = [];
    if (slabRows >= 4) {
      for (let row0 = 0; row0 < m.rows; row0 += slabRows) {
        const rows = Math.min(slabRows, m.rows - row0);
        const buffer = this.device.createBuffer({
          label: 'loramerge algebra slab', size: Math.max(16, pad4(rows) * rowBytes),
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
        });
        const padded = new Float32Array(pad4(rows) * colsPad);
        for (let i = 0; i < rows; i++) padded.set(m.data.subarray((row0 + i) * m.cols, (row0 + i + 1) * m.cols), i * colsPad);
        this.device.queue.writeBuffer(buffer, 0, padded);
        slabs.push({ row0, rows, buffer });
      }
    }
    return new GpuResident(m.rows, m.cols, slabs, m);
  }

  times(a: ResidentMatrix, y: Mat, signal?: AbortSignal): Promise<Mat> {
    checkTimes(a, y, false);
    return this.serial(() => this.timesNow(a as GpuResident, y, signal));
  }

  timesT(a: ResidentMatrix, y: Mat, signal?: AbortSignal): Promise<Mat> {
    checkTimes(a, y, true);
    return this.serial(() => this.timesTNow(a as GpuResident, y, signal));
  }

  dispose(): void {
    this.device.destroy();
    this.fallback?.dispose();
    this.fallback = undefined;
  }

  /** A product on the CPU, of `a` as uploaded. */
  private async onCpu(a: GpuResident, y: Mat, transposed: boolean, signal: AbortSignal | undefined): Promise<Mat> {
    const cpu = this.fallback ??= this.cpu();
    const resident = await cpu.upload(a.host);
    try {
      return await (transposed ? cpu.timesT(resident, y, signal) : cpu.times(resident, y, signal));
    } finally {
      resident.release();
    }
  }

  private serial<T>(run: () => Promise<T>): Promise<T> {
    const result = this.queue.then(async () => {
      this.checkAlive();
      try {
        return await run();
      } catch (e) {
        if (e instanceof MergeError) throw e;
        throw new MergeError('GPU_FAILURE', `GPU product failed: ${(e as Error).message}`, { cause: e });
      }
    });
    this.queue = result.catch(() => {});
    return result;
  }

  private checkAlive(): void {
    if (this.lostReason !== undefined) throw new MergeError('GPU_FAILURE', `GPU device lost: ${this.lostReason}`);
  }

  private async timesNow(a: GpuResident, y: Mat, signal: AbortSignal | undefined): Promise<Mat> {
    throwIfAborted(signal);
    const innerPad = pad4(a.cols), colsPad = pad4(y.cols);
    const yBytes = innerPad * colsPad * 4;
    const outRowBytes = colsPad * 4;
    const maxSlab = Math.max(0, ...a.slabs.map((s) => s.rows));
    if (a.slabs.length === 0 || yBytes > this.maxBinding || pad4(maxSlab) * outRowBytes > this.maxBinding || y.cols === 0) {
      return this.onCpu(a, y, false, signal);
    }
    const yBuffer = this.buffer(yBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, 'Y');
    this.device.queue.writeBuffer(yBuffer, 0, padColumns(y, innerPad, colsPad));
    const outBuffer = this.buffer(pad4(maxSlab) * outRowBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, 'out');
    const staging = this.buffer(pad4(maxSlab) * outRowBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'readback');
    const out = new Float32Array(a.rows * y.cols);
    try {
      for (const slab of a.slabs) {
        throwIfAborted(signal);
        const tiles = pad4(slab.rows) / 4;
        this.dispatch('times', slab.buffer, yBuffer, outBuffer, { rows: tiles, cols4: colsPad / 4, inner4: innerPad / 4, items: tiles * (colsPad / 4), accumulate: 0 },
          staging, pad4(slab.rows) * outRowBytes);
        await staging.mapAsync(GPUMapMode.READ);
        const got = new Float32Array(staging.getMappedRange(0, slab.rows * outRowBytes));
        for (let i = 0; i < slab.rows; i++) out.set(got.subarray(i * colsPad, i * colsPad + y.cols), (slab.row0 + i) * y.cols);
        staging.unmap();
      }
      throwIfAborted(signal);
    } finally {
      for (const b of [yBuffer, outBuffer, staging]) b.destroy();
    }
    return checkFinite({ rows: a.rows, cols: y.cols, data: out });
  }

  private async timesTNow(a: GpuResident, y: Mat, signal: AbortSignal | undefined): Promise<Mat> {
    throwIfAborted(signal);
    const innerPad = pad4(a.cols), colsPad = pad4(y.cols);
    const outBytes = innerPad * colsPad * 4;
    const maxSlab = Math.max(0, ...a.slabs.map((s) => s.rows));
    if (a.slabs.length === 0 || outBytes > this.maxBinding || maxSlab * colsPad * 4 > this.maxBinding || y.cols === 0) {
      return this.onCpu(a, y, true, signal);
    }
    const yBuffer = this.buffer(Math.max(16, maxSlab * colsPad * 4), GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, 'Y slab');
    const outBuffer = this.buffer(outBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, 'out');
    const staging = this.buffer(outBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'readback');
    try {
      // Every slab's dispatch is submitted in one go (they accumulate into one output): the signal
      // is seen before they start and once the sum is read back.
      a.slabs.forEach((slab, index) => {
        const ySlab = padColumns({ rows: slab.rows, cols: y.cols, data: y.data.subarray(slab.row0 * y.cols, (slab.row0 + slab.rows) * y.cols) }, slab.rows, colsPad);
        this.device.queue.writeBuffer(yBuffer, 0, ySlab);
        const last = index === a.slabs.length - 1;
        this.dispatch('timesT', slab.buffer, yBuffer, outBuffer,
          { rows: slab.rows, cols4: colsPad / 4, inner4: innerPad / 4, items: (innerPad / 4) * (colsPad / 4), accumulate: index === 0 ? 0 : 1 },
          last ? staging : undefined, outBytes);
      });
      await staging.mapAsync(GPUMapMode.READ);
      throwIfAborted(signal);
      const got = new Float32Array(staging.getMappedRange());
      const out = new Float32Array(a.cols * y.cols);
      for (let i = 0; i < a.cols; i++) out.set(got.subarray(i * colsPad, i * colsPad + y.cols), i * y.cols);
      staging.unmap();
      return checkFinite({ rows: a.cols, cols: y.cols, data: out });
    } finally {
      for (const b of [yBuffer, outBuffer, staging]) b.destroy();
    }
  }

  private buffer(size: number, usage: number, label: string): GPUBuffer {
    return this.device.createBuffer({ label: `loramerge algebra ${label}`, size: Math.max(16, Math.ceil(size / 16) * 16), usage });
  }

  /** One dispatch in its own submission (its uniforms are written just before), then an optional copy out. */
  private dispatch(entry: 'times' | 'timesT', a: GPUBuffer, y: GPUBuffer, out: GPUBuffer,
    params: { rows: number; cols4: number; inner4: number; items: number; accumulate: number },
    copyTo: GPUBuffer | undefined, copyBytes: number): void {
    const prog = program(this.device);
    const groups = Math.max(1, Math.ceil(params.items / WORKGROUP));
    const x = Math.min(groups, this.maxGroups);
    const gy = Math.ceil(groups / x);
    if (gy > this.maxGroups) throw new RangeError(`a product of ${params.items} tiles is too large to dispatch`);
    const uniform = this.buffer(PARAMS_BYTES, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'params');
    this.device.queue.writeBuffer(uniform, 0, new Uint32Array([params.rows, params.cols4, params.inner4, params.items, x * WORKGROUP, params.accumulate, 0, 0]));
    const bindGroup = this.device.createBindGroup({
      label: `algebra-products ${entry}`,
      layout: prog.layout,
      entries: [
        { binding: 0, resource: { buffer: uniform } },
        { binding: 1, resource: { buffer: a } },
        { binding: 2, resource: { buffer: y } },
        { binding: 3, resource: { buffer: out } },
      ],
    });
    const encoder = this.device.createCommandEncoder({ label: `algebra ${entry}` });
    const pass = encoder.beginComputePass({ label: `algebra ${entry}` });
    pass.setPipeline(prog[entry]);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, gy);
    pass.end();
    if (copyTo) encoder.copyBufferToBuffer(out, 0, copyTo, 0, copyBytes);
    this.device.queue.submit([encoder.finish()]);
    uniform.destroy();
  }
}

/** Rows of `m` padded to `colsPad` columns, `rowsPad` rows in all. */
function padColumns(m: Mat, rowsPad: number, colsPad: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(Math.max(4, rowsPad * colsPad));
  for (let i = 0; i < m.rows; i++) out.set(m.data.subarray(i * m.cols, (i + 1) * m.cols), i * colsPad);
  return out;
}

function checkFinite(m: Mat): Mat {
  for (let i = 0; i < m.data.length; i++) {
    if (!Number.isFinite(m.data[i])) throw new MergeError('NON_FINITE', 'a product of the adapter algebra is Inf or NaN (an input holds Inf/NaN or values too large for f32)');
  }
  return m;
}
