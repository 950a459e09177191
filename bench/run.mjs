/**
 * `npm run bench`: file-to-file merges of a Llama-shaped f16 model (8 layers, hidden 2048, MLP
 * 5632, vocab 32000) with an r=16 LoRA on all seven projections, through the real CLI on each
 * backend, against baselines measured in the same run (cp of the base file, a numpy merge, a plain
 * JavaScript merge), plus kernel-only timings of one 4096×4096 op. Checks that every output agrees
 * with the others (backends within 1 ulp) and removes its temporary files.
 *
 * Then the GGUF case (bench/gguf-run.mjs): the same shape as a Q4_K_M-style GGUF, merged keeping
 * its types and as F16, with the error of the requantized tensors against float64 truth.
 *
 * Then the GPTQ case (bench/gptq-run.mjs): six layers' projections as a 4-bit GPTQ base, merged on
 * the CPU backend's threads and on one, with both outputs' hashes.
 *
 * Then the importance-matrix case (bench/imatrix-encode.mjs): a tensor re-quantized row by row with
 * importance weights (`--imatrix`) as each k-quant, legacy, IQ4, IQ3, IQ2 and IQ1 type, by the codec (WebAssembly) against the
 * TypeScript quantizer in the same run, with both outputs compared byte for byte (IQ3 also without weights).
 *
 * Then the fp8 cases (bench/fp8-run.mjs): a ComfyUI fp8mixed file (per-tensor weight_scale) and a
 * block-wise fp8 folder (weight_scale_inv), each merged and written as fp8 again with --threads 2
 * and --threads 1, with both outputs' hashes and the main thread's share of the CPU.
 *
 * Then the DeepSeek-V4 FP4 case (bench/fp4-run.mjs): routed experts as packed E2M1 codes with E8M0
 * scales per 32 inputs, merged and written as FP4 again with --threads 2 and --threads 1, against a
 * stream copy of the same file and the same merge on BF16 experts of the same shape.
 *
 * Also: the CPU and auto merges against a plain Node stream copy of the same file, and the
 * start-up of `loramerge sample` against Node's own.
 *
 * The large case: a 4.17 GB model (bench/big-model.mjs, written once into bench/.cache), merged by
 * the CPU and auto backends against a stream copy of the same file, for peak RSS (target: at most
 * 256 MB whatever the model's size). `--skip big` leaves it out.
 *
 * `--gpu`: the WebGPU kernel's achieved bandwidth as a fraction of the card's (bench/gpu-bandwidth.mjs;
 * `--gpu-bandwidth GBPS` gives the card's peak where the built-in table does not know it).
 *
 * `--pairs N`: then N alternating merges of the CLI (`auto`) and the page, each pair's ratio of
 * times and of CPU seconds, and their medians (bench/run.mjs pagePairs).
 *
 * `--threads` (with `--pairs`): each page merge's CPU and page faults per thread of every Chromium
 * process (which of the browser's and the renderer's threads spend what the CLI does not).
 *
 * `--layers N`: the bench model with N layers instead of 8 (20: 2.02 GB), to see how the timings
 * scale with the model's size.
 *
 * usage: node bench/run.mjs [--reps N] [--skip js,numpy,gguf,imatrix,gptq,fp8,fp4,sample,stream-copy,big,extract,…] [--settle-ms MS] [--pairs N [--threads]] [--layers N] [--gpu [--gpu-bandwidth GBPS]] [--json FILE]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { BENCH_MODEL, writeAdapter, writeBaseModel } from './make-model.mjs';
import { compareModelFiles } from './compare-outputs.mjs';
import { printTables } from './report.mjs';
import { printGgufTables, runGgufBench } from './gguf-run.mjs';
import { printGptqTable, runGptqBench } from './gptq-run.mjs';
import { printFp8Table, runFp8Bench } from './fp8-run.mjs';
import { printFp4Table, runFp4Bench } from './fp4-run.mjs';
import { printImatrixTable, runImatrixBench } from './imatrix-encode.mjs';
import { launchBenchBrowser, mergeInPage, pieceHashes, serveDemo } from './page-merge.mjs';
import { BIG_MODEL, ensureBigModel } from './big-model.mjs';
import { gpuBandwidth } from './gpu-bandwidth.mjs';
import { runTimed } from './run-timed.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const preload = join(here, 'rss-preload.mjs');

/**
 * A pause before each timed file-to-file run, so that no contestant writes into memory another (or
 * its own previous run) has just freed. Removing an output frees a model's worth of page cache; a
 * run that starts at once writes its own output into those pages again, one that starts later may
 * find them handed back to a hypervisor (free page reporting, as Firecracker VMs do 2 s after the
 * free), where each page's first touch is a host fault. On such a VM the CLI started straight after
 * removing its previous output took 2.56 and 2.72 s, and 2.91 and 3.28 s after a 15 s pause (system
 * time 1.2–1.3 s against 1.9–2.0 s); the page, in a fresh browser, never writes into pages just
 * freed. `--settle-ms 0` turns the pause off.
 */
const DEFAULT_SETTLE_MS = 3000;

/** A Node child with the RSS preload; returns { seconds, rssMiB, usage: { userSeconds, systemSeconds, minorFaults } }. */
async function runNode(script, args, dir) {
  const tag = Math.random().toString(36).slice(2);
  const rssFile = join(dir, `rss-${tag}`), usageFile = join(dir, `usage-${tag}`);
  const r = await runTimed(process.execPath, ['--import', preload, script, ...args], { LORAMERGE_BENCH_RSS_FILE: rssFile, LORAMERGE_BENCH_USAGE_FILE: usageFile });
  const kib = Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop());
  const usage = JSON.parse(await readFile(usageFile, 'utf8'));
  await rm(rssFile, { force: true });
  await rm(usageFile, { force: true });
  return { seconds: r.seconds, rssMiB: kib / 1024, usage, stderr: r.stderr };
}

async function hasNumpy() {
  try {
    await runTimed('python3', ['-c', 'import numpy']);
    return true;
  } catch {
    return false;
  }
}

/** The file-to-file contestants, in the order they run. Each writes `out` and returns { seconds, rssMiB }. */
function contestants(baseDir, adapterDir, numpy) {
  const baseFile = join(baseDir, 'model.safetensors');
  const cli = (backend) => async (out) => {
    const r = await runNode(join(root, 'bin', 'loramerge.js'),
      ['merge', '--base', baseFile, '--adapter', adapterDir, '--out', out, '--backend', backend], dirname(out));
    const chosen = /^backend: (.*)$/m.exec(r.stderr)?.[1];
    return { ...r, note: chosen };
  };
  const list = [
    { name: 'cp', kind: 'floor', run: async (out) => ({ ...(await runTimed('cp', [baseFile, out])), rssMiB: undefined }) },
    { name: 'stream-copy', kind: 'floor', run: (out) => runNode(join(here, 'stream-copy.mjs'), [baseFile, out], dirname(out)) },
    { name: 'webgpu', kind: 'backend', run: cli('webgpu') },
    { name: 'cpu', kind: 'backend', run: cli('cpu') },
    { name: 'auto', kind: 'backend', run: cli('auto') },
    { name: 'js', kind: 'baseline', run: (out) => runNode(join(here, 'js-merge.mjs'), [baseFile, adapterDir, out], dirname(out)) },
  ];
  list.push({ name: 'page', kind: 'page', run: () => pageRun(baseFile, adapterDir) });
  if (numpy) {
    list.push({
      name: 'numpy', kind: 'baseline',
      run: async (out) => {
        const r = await runTimed('python3', [join(here, 'numpy-merge.py'), baseFile, adapterDir, out]);
        return { seconds: r.seconds, rssMiB: Number(r.stdout.trim().split('\n').pop()) / 1024 };
      },
    });
  }
  return list;
}

/** `--threads`: the page's merges also count CPU and page faults per thread (treeThreads). */
let pageThreads = false;

/**
 * The threads of one page merge that spent at least 0.05 s, in the order they started: process
 * type, thread name, CPU and page faults ("renderer DedicatedWorker 2.93 s 78k faults").
 */
function threadLine(threads) {
  const order = (t) => t.key.split('/').map(Number);
  return threads.filter((t) => t.seconds >= 0.05)
    .sort((x, y) => order(x)[0] - order(y)[0] || order(x)[1] - order(y)[1])
    .map((t) => `${t.type} ${t.name} ${t.seconds.toFixed(2)} s${t.faults >= 1000 ? ` ${Math.round(t.faults / 1000)}k faults` : ''}`)
    .join(', ');
}

/** The demo, built and served once per bench run. */
let site;
const servedSite = () => (site ??= serveDemo());

async function closeSite() {
  const served = await site?.catch(() => undefined);
  site = undefined;
  await served?.close();
}

/**
 * The demo page's merge of the same files in a fresh headless Chromium with default settings (auto
 * backend, output to browser storage). Its RSS is the browser's (every process) above its idle
 * level, sampled throughout; its CPU that of each kind of Chromium process during the merge.
 */
async function pageRun(baseFile, adapterDir) {
  const { url } = await servedSite();
  const browser = await launchBenchBrowser();
  try {
    const r = await mergeInPage(browser, url, {
      base: baseFile, adapterFiles: ['adapter_config.json', 'adapter_model.safetensors'].map((f) => join(adapterDir, f)), threads: pageThreads,
    });
    return { seconds: r.seconds, cpu: r.cpu, threads: r.threads, rssMiB: (r.peakBytes - r.idleBytes) / 2 ** 20, note: r.backend, hashes: r.output.hashes };
  } finally {
    await browser.close();
  }
}

/**
 * `--pairs N`: the CLI (`--backend auto`) and the page merge the same files in turn, N times, each
 * after the settle pause; one pair is one ratio, and their median says more than the best of each
 * on a machine whose speed drifts between runs.
 */
async function pagePairs(count, auto, page, out, settle, log) {
  const pairs = [];
  for (let i = 0; i < count; i++) {
    await rm(out, { force: true });
    await settle();
    const cli = await auto.run(out);
    await settle();
    const inPage = await page.run(out);
    const cliCpuSeconds = cli.usage.userSeconds + cli.usage.systemSeconds;
    const pageCpuSeconds = inPage.cpu.browser + inPage.cpu.renderer + inPage.cpu.other;
    const pair = {
      cliSeconds: cli.seconds, pageSeconds: inPage.seconds, ratio: inPage.seconds / cli.seconds,
      cliCpuSeconds, pageCpu: inPage.cpu, cpuRatio: pageCpuSeconds / cliCpuSeconds, pageMemoryMiB: inPage.rssMiB,
    };
    pairs.push(pair);
    log(`pair ${i + 1}: CLI ${pair.cliSeconds.toFixed(2)} s (CPU ${pair.cliCpuSeconds.toFixed(2)} s), page ${pair.pageSeconds.toFixed(2)} s ` +
      `(CPU: browser process ${inPage.cpu.browser.toFixed(2)} s, renderer ${inPage.cpu.renderer.toFixed(2)} s, other ${inPage.cpu.other.toFixed(2)} s) ` +
      `= ${pair.ratio.toFixed(2)}× (CPU ${pair.cpuRatio.toFixed(2)}×), page memory ${pair.pageMemoryMiB.toFixed(0)} MiB above idle`);
    if (inPage.threads) log(`  page threads: ${threadLine(inPage.threads)}`);
  }
  await rm(out, { force: true });
  const ratios = pairs.map((p) => p.ratio).sort((a, b) => a - b);
  const median = medianOf(ratios);
  const cpuMedian = medianOf(pairs.map((p) => p.cpuRatio));
  log(`page / CLI over ${count} pairs: median ${median.toFixed(2)}×, range ${ratios[0].toFixed(2)}–${ratios.at(-1).toFixed(2)}× (target: at most 1.5×); ` +
    `CPU median ${cpuMedian.toFixed(2)}×`);
  // A CLI that ran on less than half a core waited: for the cores, where other jobs load the
  // machine (on a 2-core VM at load 15, at the same niceness and on tmpfs, the CLI got about a
  // third of a core and the page's threads together about four fifths), or for the disk it flushes
  // its output to as it goes (the page's copy in browser storage is not flushed). Its wall time
  // then says more about the load than about either merge.
  const cliWaits = pairs.filter((p) => p.cliSeconds > 2 * p.cliCpuSeconds).length;
  if (cliWaits > 0) log(`  in ${cliWaits} of ${count} pairs the CLI ran on less than half a core (CPU time under half its time): the machine was loaded, and the CPU ratio is the fairer figure`);
  return { pairs, median, cpuMedian };
}

/** The median of some numbers. */
function medianOf(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const half = sorted.length >> 1;
  return sorted.length % 2 ? sorted[half] : (sorted[half - 1] + sorted[half]) / 2;
}

/**
 * Start-up: `loramerge sample` end to end (write the small sample, merge it, check a tensor) per
 * backend, against Node starting and exiting alone; best of `reps` each.
 */
async function sampleTimes(dir, reps, log) {
  const best = async (args) => {
    let t = Infinity;
    for (let i = 0; i < reps; i++) t = Math.min(t, (await runTimed(process.execPath, args)).seconds);
    return t;
  };
  const sampleDir = join(dir, 'sample');
  const result = { node: await best(['-e', '']) };
  for (const backend of ['cpu', 'auto']) {
    result[backend] = await best([join(root, 'bin', 'loramerge.js'), 'sample', sampleDir, '--backend', backend]);
    await rm(sampleDir, { recursive: true, force: true });
  }
  log(`sample: cpu ${result.cpu.toFixed(2)} s, auto ${result.auto.toFixed(2)} s, node alone ${result.node.toFixed(2)} s`);
  return result;
}

/**
 * The large case: stream copy, cpu and auto on the 4.17 GB model, best time of `reps`, peak RSS
 * the highest seen. Outputs are deleted as soon as measured (each is 4 GB).
 */
async function bigModelRuns(dir, reps, log, settle) {
  const model = await ensureBigModel(log);
  const baseFile = join(model.baseDir, 'model.safetensors');
  const out = join(dir, 'big-out.safetensors');
  const runs = [];
  const contestants = [
    ['stream-copy', () => runNode(join(here, 'stream-copy.mjs'), [baseFile, out], dir)],
    ...['cpu', 'auto'].map((backend) => [backend, async () => {
      const r = await runNode(join(root, 'bin', 'loramerge.js'),
        ['merge', '--base', baseFile, '--adapter', model.adapterDir, '--out', out, '--backend', backend], dir);
      return { ...r, note: /^backend: (.*)$/m.exec(r.stderr)?.[1] };
    }]),
  ];
  for (const [name, run] of contestants) {
    let best;
    for (let i = 0; i < reps; i++) {
      await rm(out, { force: true });
      await settle();
      const r = await run();
      best = !best ? r : { ...(r.seconds < best.seconds ? r : best), rssMiB: Math.max(r.rssMiB, best.rssMiB) };
    }
    await rm(out, { force: true });
    runs.push({ name, seconds: best.seconds, rssMiB: best.rssMiB, note: best.note });
    log(`4 GB case, ${name}: ${best.seconds.toFixed(2)} s, peak RSS ${best.rssMiB.toFixed(0)} MiB`);
  }
  return { model: { ...BIG_MODEL, baseBytes: model.baseBytes, generateSeconds: model.generateSeconds }, runs };
}

async function kernelTimes(reps) {
  const r = await runTimed(process.execPath, [join(here, 'kernel-time.mjs'), String(reps)]);
  return r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

async function main() {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '1' }, skip: { type: 'string', default: '' }, json: { type: 'string' },
      gpu: { type: 'boolean', default: false }, 'gpu-bandwidth': { type: 'string' },
      'settle-ms': { type: 'string', default: String(DEFAULT_SETTLE_MS) }, pairs: { type: 'string', default: '0' },
      layers: { type: 'string', default: String(BENCH_MODEL.layers) }, threads: { type: 'boolean', default: false },
    },
  });
  const reps = Math.max(1, Number(values.reps) || 1);
  pageThreads = values.threads;
  const layers = Number(values.layers);
  if (!Number.isInteger(layers) || layers < 1) throw new Error(`--layers takes the bench model's number of layers (a positive integer), not "${values.layers}"`);
  const benchModel = { ...BENCH_MODEL, layers };
  const settleMs = Math.max(0, Number(values['settle-ms']) || 0);
  const settle = () => new Promise((resolve) => setTimeout(resolve, settleMs));
  const peakGBps = values['gpu-bandwidth'] === undefined ? undefined : Number(values['gpu-bandwidth']);
  if (peakGBps !== undefined && !(peakGBps > 0)) throw new Error(`--gpu-bandwidth takes the card's peak in GB/s (a positive number), not "${values['gpu-bandwidth']}"`);
  const skip = new Set(values.skip.split(',').filter(Boolean));
  const dir = await mkdtemp(join(tmpdir(), 'loramerge-bench-'));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  process.once('SIGINT', () => cleanup().finally(() => process.exit(130)));
  const log = (line) => process.stderr.write(line + '\n');
  try {
    const started = performance.now();
    log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`);
    const t0 = performance.now();
    const base = await writeBaseModel(join(dir, 'base'), benchModel);
    const adapter = await writeAdapter(join(dir, 'adapter'), benchModel);
    const model = { ...benchModel, baseBytes: base.bytes, adapterBytes: adapter.bytes, generateSeconds: (performance.now() - t0) / 1000 };
    log(`model: ${(base.bytes / 1e9).toFixed(3)} GB f16, adapter ${(adapter.bytes / 1e6).toFixed(1)} MB (written in ${model.generateSeconds.toFixed(1)} s)`);

    const runs = [];
    let reference; // the first backend's output: every other output is compared with it
    let autoHashes; // the CLI's auto merge, which the page's (same choice of backend) must equal
    const list = contestants(join(dir, 'base'), join(dir, 'adapter'), !skip.has('numpy') && (await hasNumpy()));
    for (const c of list) {
      if (skip.has(c.name)) continue;
      const out = join(dir, `out-${c.name}.safetensors`);
      let best;
      for (let i = 0; i < reps; i++) {
        await rm(out, { force: true });
        await settle();
        const r = await c.run(out);
        if (!best || r.seconds < best.seconds) best = { ...r, rssMiB: Math.max(r.rssMiB ?? 0, best?.rssMiB ?? 0) || undefined };
      }
      const run = { name: c.name, kind: c.kind, seconds: best.seconds, rssMiB: best.rssMiB, usage: best.usage, cpu: best.cpu, note: best.note };
      if (c.name === 'auto') autoHashes = await pieceHashes(out);
      if (c.kind === 'page') {
        run.identicalToAuto = autoHashes ? best.hashes.length === autoHashes.length && best.hashes.every((h, i) => h === autoHashes[i]) : undefined;
      } else if (c.kind !== 'floor') {
        if (!reference) {
          reference = { name: c.name, path: out };
        } else {
          run.agreement = { with: reference.name, ...(await compareModelFiles(reference.path, out)) };
          await rm(out, { force: true });
        }
      } else {
        await rm(out, { force: true });
      }
      runs.push(run);
      log(`${c.name}: ${run.seconds.toFixed(2)} s${run.rssMiB ? `, peak RSS ${run.rssMiB.toFixed(0)} MiB` : ''}`);
    }
    const pairCount = Math.max(0, Math.floor(Number(values.pairs) || 0));
    const pairs = pairCount > 0 && !skip.has('auto') && !skip.has('page')
      ? await pagePairs(pairCount, list.find((c) => c.name === 'auto'), list.find((c) => c.name === 'page'), join(dir, 'out-pairs.safetensors'), settle, log)
      : undefined;
    await closeSite();
    const sample = skip.has('sample') ? undefined : await sampleTimes(dir, Math.max(3, reps), log);
    const kernels = skip.has('kernel') ? [] : await kernelTimes(Math.max(3, reps));
    const gguf = skip.has('gguf') ? undefined : await runGgufBench(dir, BENCH_MODEL, { runNode, runTimed, root, log, reps });
    const imatrix = skip.has('imatrix') ? undefined : runImatrixBench({ reps: Math.max(2, reps), log });
    const gptq = skip.has('gptq') ? undefined : await runGptqBench(dir, BENCH_MODEL, { runNode, root, log, reps });
    const fp8 = skip.has('fp8') ? undefined : await runFp8Bench(dir, { runNode, root, log, reps });
    const fp4 = skip.has('fp4') ? undefined : await runFp4Bench(dir, { runNode, root, log, reps });
    const big = skip.has('big') ? undefined : await bigModelRuns(dir, reps, log, settle);
    const gpu = values.gpu ? await gpuBandwidth({ peakGBps, reps: Math.max(3, reps), log }) : undefined;
    const results = { model, runs, pairs, sample, kernels, gguf, imatrix, gptq, fp8, fp4, big, gpu, totalSeconds: (performance.now() - started) / 1000 };
    if (gguf) printGgufTables(gguf);
    const imatrixFailures = imatrix ? printImatrixTable(imatrix) : 0;
    const gptqFailures = gptq ? printGptqTable(gptq) : 0;
    const fp8Failures = fp8 ? printFp8Table(fp8) : 0;
    const fp4Failures = fp4 ? printFp4Table(fp4) : 0;
    const failures = printTables(results) + imatrixFailures + gptqFailures + fp8Failures + fp4Failures;
    if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2) + '\n');
    process.exitCode = failures ? 1 : 0;
  } finally {
    await closeSite();
    await cleanup();
  }
  // The extraction bench (its own model), here so that `npm run bench -- ARGS` gives ARGS to this script.
  if (!skip.has('extract')) {
    const code = await new Promise((resolve) => {
      const child = spawn(process.execPath, [join(here, 'extract.mjs')], { cwd: root, stdio: 'inherit' });
      child.on('close', resolve);
      child.on('error', () => resolve(1));
    });
    if (code !== 0) process.exitCode = 1;
  }
}

// A wrong option or a failed run: one line, not a stack trace.
await main().catch((e) => {
  process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
