/**
 * `npm run bench -- --gpu`: the WebGPU merge kernel's achieved bandwidth, as a fraction of the
 * card's. Bytes are what the kernel must move at least (W read, W' written, A and B read once);
 * time is from timestamp queries around its compute passes where the adapter grants
 * `timestamp-query`, else from submit to onSubmittedWorkDone (which also counts the queue's uploads
 * and the readback: the figure is then a lower bound). WebGPU does not tell a card's peak
 * bandwidth: it comes from --gpu-bandwidth, else from the table below, else it is "unknown peak".
 *
 * f16 cases only: f32 outputs are merged on the CPU (webgpu-backend.ts).
 *
 * Run alone: node bench/gpu-bandwidth.mjs [reps] [peak GB/s]   (one JSON line per case)
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { bestOf, makeOp, openTimedBackend } from './kernel-time.mjs';

/** Peak memory bandwidth in GB/s from vendors' data sheets, matched against the adapter's description. */
const PEAK_GBPS = [
  [/h200/i, 4800], [/h100.*(sxm|hbm3)/i, 3350], [/h100/i, 2000], [/a100.*80/i, 2039], [/a100/i, 1555],
  [/l40s?\b/i, 864], [/rtx 4090/i, 1008], [/rtx 4080/i, 717], [/rtx 3090/i, 936], [/rtx 3080/i, 760],
  [/rx 7900 xtx/i, 960], [/rx 6900/i, 512], [/apple m2 ultra/i, 800], [/apple m1 max|apple m2 max/i, 400],
];

const CASES = [
  { rows: 4096, cols: 4096, rank: 16, dtype: 'F16' },
  { rows: 11008, cols: 4096, rank: 16, dtype: 'F16' },
];
/**
 * On a hardware adapter only (SwiftShader would take minutes): a Llama-3-70B MLP weight (470 MB of
 * f16, far past any GPU's cache), bf16, and ranks where the kernel's 2·r flops per element, not its
 * bytes, set the time (on a big GPU's f32 units, from about r = 8 up).
 */
const HARDWARE_CASES = [
  { rows: 28672, cols: 8192, rank: 16, dtype: 'F16' },
  { rows: 8192, cols: 8192, rank: 16, dtype: 'BF16' },
  { rows: 8192, cols: 8192, rank: 64, dtype: 'F16' },
  { rows: 8192, cols: 8192, rank: 128, dtype: 'F16' },
];

function peakFor(description) {
  return PEAK_GBPS.find(([re]) => re.test(description))?.[1];
}

async function measure(reps, peakGiven) {
  const gpu = await openTimedBackend();
  const info = gpu.adapter.info;
  const description = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  const peak = peakGiven ?? peakFor(description);
  try {
    for (const c of gpu.backend.isSoftware ? CASES : [...CASES, ...HARDWARE_CASES]) {
      const op = makeOp(c);
      await gpu.backend.merge(op); // compiles the pipeline, sizes the buffers
      await gpu.timer.take();
      const best = await bestOf(reps, async () => {
        const t0 = performance.now();
        await gpu.backend.merge(op);
        const opMs = performance.now() - t0;
        return { ms: (await gpu.timer.take()) / 1e6, opMs };
      });
      if (!(best.ms > 0)) throw new Error(`${c.dtype} ${c.rows}×${c.cols}: no GPU work was timed`);
      const w = c.rows * c.cols * (c.dtype === 'F32' ? 4 : 2);
      const bytes = 2 * w + 4 * c.rank * (c.rows + c.cols);
      const gbps = bytes / best.ms / 1e6;
      console.log(JSON.stringify({
        case: `${c.rows}×${c.cols} ${c.dtype} r=${c.rank}`, adapter: description, timing: gpu.timestamps ? 'timestamp queries' : 'submit to done',
        bytes, kernelMs: best.ms, opMs: best.opMs, gbps, gflops: (2 * c.rank * c.rows * c.cols) / best.ms / 1e6, peakGBps: peak ?? null, peakSource: peakGiven ? '--gpu-bandwidth' : peak ? 'table' : null,
        fraction: peak ? gbps / peak : null,
      }));
    }
  } finally {
    gpu.dispose();
  }
}

/** Runs this file in a child (Dawn keeps its process alive); returns the cases and prints a table line per case. */
export async function gpuBandwidth({ peakGBps, reps = 3, log = () => {} }) {
  const args = [fileURLToPath(import.meta.url), String(reps), ...(peakGBps ? [String(peakGBps)] : [])];
  const stdout = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`gpu-bandwidth exited with ${code}`))));
  });
  const cases = stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  for (const c of cases) log(`gpu kernel ${c.case}: ${c.gbps.toFixed(2)} GB/s (${c.timing})`);
  return cases;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const peak = process.argv[3] ? Number(process.argv[3]) : undefined;
  await measure(Number(process.argv[2] ?? 3), peak && peak > 0 ? peak : undefined);
  process.exit(0);
}
