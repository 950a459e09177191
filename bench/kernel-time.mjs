/**
 * One op, no files: W (rows × cols) += s·B·A on the WebGPU backend and on the CPU backend, best of
 * N. For WebGPU it reports the whole op (host preparation, upload, dispatch, readback) and the
 * kernel alone, from timestamp queries written around each of the backend's compute passes (the
 * device is opened with `timestamp-query` and handed to the backend behind a thin proxy that adds
 * the timestamps). Prints one JSON line per case.
 *
 * usage: node bench/kernel-time.mjs [reps]
 */
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
// Internals, not the public surface: the benchmark times the kernels themselves.
import { CpuBackend } from '../dist/engine/cpu/cpu-backend.js';
import { WebGpuBackend } from '../dist/engine/gpu/webgpu-backend.js';
import { describeAdapter, adapterIsSoftware } from '../dist/engine/gpu/gpu-device.js';
import { chooseVulkanDriver } from '../dist/engine/gpu/node-gpu.js';
import { createXorshift, fillF16Pairs, fillUniformF32 } from './fill-random.mjs';

const CASES = [
  { rows: 4096, cols: 4096, rank: 16, dtype: 'F32' },
  { rows: 4096, cols: 4096, rank: 16, dtype: 'F16' },
  { rows: 4096, cols: 4096, rank: 64, dtype: 'F16' },
];
const MAX_PASSES = 64;
/** resolveQuerySet writes at offsets that are multiples of 256 bytes: one such slot per pass. */
const SLOT = 256;

export function makeOp({ rows, cols, rank, dtype }) {
  const next = createXorshift(rows * 31 + rank);
  let base;
  if (dtype === 'F16') {
    base = new Uint32Array(rows * cols / 2);
    fillF16Pairs(base, next);
  } else if (dtype === 'BF16') {
    // bf16 is the top half of an f32: draw f32 values, keep their top halves (truncation is fine for data).
    const f = new Float32Array(rows * cols);
    fillUniformF32(f, next, 0.05);
    base = new Uint16Array(rows * cols);
    const halves = new Uint16Array(f.buffer);
    for (let i = 0; i < base.length; i++) base[i] = halves[2 * i + 1];
  } else {
    base = new Float32Array(rows * cols);
    fillUniformF32(base, next, 0.05);
  }
  const a = new Float32Array(rank * cols);
  const b = new Float32Array(rows * rank);
  fillUniformF32(a, next, 1 / Math.sqrt(cols));
  fillUniformF32(b, next, 0.004);
  return {
    name: `bench ${rows}x${cols} r${rank} ${dtype}`, rows, cols, layout: 'out-in', outDtype: dtype,
    base: { dtype, data: new Uint8Array(base.buffer) },
    terms: [{ rank, scale: 2, a: { dtype: 'F32', data: new Uint8Array(a.buffer) }, b: { dtype: 'F32', data: new Uint8Array(b.buffer) } }],
  };
}

/** Binds a native object's methods to it, so the proxy can stand in for it in the backend's calls. */
function forward(target, overrides) {
  return new Proxy(target, {
    get(t, key) {
      if (key in overrides) return overrides[key];
      const v = Reflect.get(t, key);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

/** A device proxy whose compute passes write begin/end timestamps; `take()` returns and resets the total ns. */
function timestampedDevice(device) {
  const querySet = device.createQuerySet({ type: 'timestamp', count: MAX_PASSES * 2 });
  const resolve = device.createBuffer({ size: MAX_PASSES * SLOT, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: MAX_PASSES * SLOT, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  let passes = 0;
  const proxy = forward(device, {
    createCommandEncoder(desc) {
      const enc = device.createCommandEncoder(desc);
      let used = -1;
      return forward(enc, {
        beginComputePass(pd = {}) {
          if (passes >= MAX_PASSES) throw new Error('too many compute passes for one measurement');
          used = passes++;
          return enc.beginComputePass({
            ...pd,
            timestampWrites: { querySet, beginningOfPassWriteIndex: used * 2, endOfPassWriteIndex: used * 2 + 1 },
          });
        },
        finish(fd) {
          if (used >= 0) enc.resolveQuerySet(querySet, used * 2, 2, resolve, used * SLOT);
          return enc.finish(fd);
        },
      });
    },
  });
  return {
    device: proxy,
    async take() {
      const n = passes;
      passes = 0;
      if (n === 0) return 0;
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(resolve, 0, read, 0, n * SLOT);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ, 0, n * SLOT);
      const t = new BigUint64Array(read.getMappedRange(0, n * SLOT).slice(0));
      read.unmap();
      const step = SLOT / 8;
      let ns = 0n;
      for (let i = 0; i < n; i++) ns += t[step * i + 1] - t[step * i];
      return Number(ns);
    },
  };
}

/**
 * Without `timestamp-query`: a device proxy timing each queue submission from submit to
 * onSubmittedWorkDone (an upper bound on the kernel's time: it includes the queue's pending
 * uploads and the readback copy); `take()` returns and resets the total ns.
 */
function submitTimedDevice(device) {
  let total = 0;
  const pending = [];
  const queue = forward(device.queue, {
    submit(buffers) {
      const t0 = performance.now();
      device.queue.submit(buffers);
      pending.push(device.queue.onSubmittedWorkDone().then(() => { total += (performance.now() - t0) * 1e6; }));
    },
  });
  return {
    device: forward(device, { queue }),
    async take() {
      await Promise.all(pending.splice(0));
      const ns = total;
      total = 0;
      return ns;
    },
  };
}

export async function openTimedBackend() {
  // The Vulkan loader prints a warning when XDG_RUNTIME_DIR is unset, as on most servers (the CLI sets it too).
  if (process.platform === 'linux' && !process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = tmpdir();
  // Dawn's own instance rather than the library's: Dawn rounds timestamps to steps of 65.5 µs unless
  // told not to (seen on SwiftShader and on an H200), and single kernels on a real GPU take less.
  chooseVulkanDriver();
  const dawn = await import('webgpu');
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) globalThis[k] = v;
  let gpuInstance = dawn.create(['disable-dawn-features=timestamp_quantization']);
  const adapter = await gpuInstance.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter');
  const timestamps = adapter.features.has('timestamp-query');
  const device = await adapter.requestDevice({
    requiredFeatures: timestamps ? ['timestamp-query'] : [],
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
    },
  });
  const timer = timestamps ? timestampedDevice(device) : submitTimedDevice(device);
  const backend = new WebGpuBackend({
    adapter, device: timer ? timer.device : device,
    maxBindingBytes: Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize),
    maxWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
    description: describeAdapter(adapter), isSoftware: adapterIsSoftware(adapter),
  });
  return { backend, timer, timestamps, adapter, dispose: () => { backend.dispose(); gpuInstance = undefined; } };
}

export async function bestOf(reps, run) {
  let best = { ms: Infinity };
  for (let i = 0; i < reps; i++) {
    const r = await run();
    if (r.ms < best.ms) best = r;
  }
  return best;
}

async function main(reps) {
  const gpu = await openTimedBackend();
  const cpu = new CpuBackend();
  try {
    for (const c of CASES) {
      const op = makeOp(c);
      await gpu.backend.merge(op); // compiles the pipeline, sizes the buffers
      await gpu.timer.take();
      const g = await bestOf(reps, async () => {
        const t0 = performance.now();
        await gpu.backend.merge(op);
        const ms = performance.now() - t0;
        const kernelNs = await gpu.timer.take();
        return { ms, kernelMs: gpu.timestamps ? kernelNs / 1e6 : undefined };
      });
      const k = await bestOf(reps, async () => {
        const t0 = performance.now();
        await cpu.merge(op);
        return { ms: performance.now() - t0 };
      });
      const elements = c.rows * c.cols;
      const bytes = elements * (c.dtype === 'F32' ? 4 : 2) * 2; // W read once, W' written once
      const flops = 2 * c.rank * elements;
      console.log(JSON.stringify({
        case: `${c.rows}×${c.cols} ${c.dtype} r=${c.rank}`, bytes, flops,
        webgpuOpMs: g.ms, webgpuKernelMs: g.kernelMs ?? null, cpuOpMs: k.ms,
      }));
    }
  } finally {
    gpu.dispose();
  }
  process.exit(0);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main(Number(process.argv[2] ?? 3));
