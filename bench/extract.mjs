/**
 * `npm run bench` (second part): extracts a rank-64 LoRA from a Llama-shaped pair of f16 models of
 * about 1 GB each (the merge benchmark's base, and the base merged with a random rank-64 LoRA), and
 * reports time and peak RSS beside a numpy full SVD of the same matrices where Python and numpy
 * are present, then how far the written adapter's error is above the Eckart–Young optimum.
 * Options: --layers N (default 8), --backend auto|cpu|webgpu (default auto), --skip numpy,
 * --json FILE.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BENCH_MODEL, writeAdapter, writeBaseModel } from './make-model.mjs';
import { runTimed } from './run-timed.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const log = (line) => process.stderr.write(line + '\n');
const pct = (x) => `${(100 * x).toFixed(4)}%`;

async function cli(args, dir) {
  const rssFile = join(dir, `rss-${Math.random().toString(36).slice(2)}`);
  const r = await runTimed(process.execPath, ['--import', join(here, 'rss-preload.mjs'), join(root, 'bin', 'loramerge.js'), ...args], { LORAMERGE_BENCH_RSS_FILE: rssFile });
  const kib = Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop());
  return { ...r, rssMiB: kib / 1024 };
}

async function main() {
  const { values } = parseArgs({ options: { layers: { type: 'string', default: '8' }, backend: { type: 'string', default: 'auto' }, skip: { type: 'string', default: '' }, json: { type: 'string' } } });
  const model = { ...BENCH_MODEL, layers: Number(values.layers), rank: 64, alpha: 64 };
  const dir = await mkdtemp(join(tmpdir(), 'loramerge-extract-bench-'));
  process.once('SIGINT', () => rm(dir, { recursive: true, force: true }).finally(() => process.exit(130)));
  try {
    log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`);
    const base = await writeBaseModel(join(dir, 'base'), model);
    await writeAdapter(join(dir, 'adapter'), model);
    const tunedPath = join(dir, 'tuned.safetensors');
    await runTimed(process.execPath, [join(root, 'bin', 'loramerge.js'), 'merge', '--base', base.path, '--adapter', join(dir, 'adapter'), '--out', tunedPath, '--backend', 'cpu']);
    log(`models: base and tuned ${(base.bytes / 1e9).toFixed(3)} GB each (f16, ${model.layers} layers, the tuned one = base + a random rank-64 LoRA on all seven projections)`);

    const extracted = join(dir, 'extracted');
    const ours = await cli(['extract', '--base', base.path, '--tuned', tunedPath, '--rank', '64', '--out', extracted, '--backend', values.backend], dir);
    // Report lines: module, rank, share of ‖T−B‖_F kept (four decimals).
    const kept = ours.stdout.split('\n').map((l) => /^(\S+)\s+(\d+)\s+([\d.]+)%$/.exec(l)).filter(Boolean).map((m) => ({ module: m[1], kept: Number(m[3]) / 100 }));
    const mean = (xs) => xs.reduce((t, x) => t + x.kept, 0) / xs.length;
    const layer0 = kept.filter((k) => k.module.startsWith('model.layers.0.'));
    const backend = /^backend: (.*)$/m.exec(ours.stderr)?.[1];
    const result = { model: { ...model, bytes: base.bytes }, loramerge: { seconds: ours.seconds, rssMiB: ours.rssMiB, backend, modules: kept.length, meanKept: mean(kept), layer0MeanKept: mean(layer0) } };
    log(`loramerge extract --rank 64 (${backend}): ${ours.seconds.toFixed(2)} s, peak RSS ${ours.rssMiB.toFixed(0)} MiB, ${kept.length} modules, mean share of ‖T−B‖_F kept ${pct(mean(kept))} (layer 0: ${pct(mean(layer0))})`);

    let numpy = false;
    if (!values.skip.split(',').includes('numpy')) numpy = await runTimed('python3', ['-c', 'import numpy']).then(() => true, () => false);
    if (numpy) {
      // A full SVD of every matrix takes numpy about 7 minutes per layer here: it runs on the first
      // layer's matrices and its time is scaled to the model's layers (printed as an estimate).
      // OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where set for old OpenBLAS builds, slow a current numpy.
      // Afterwards (untimed) it measures the error ‖D − B·A‖_F of our written adapter against the
      // Eckart–Young optimum, beside numpy's own rank-64 factors stored in the same dtype.
      const env = { OPENBLAS_CORETYPE: '', OPENBLAS_L2_SIZE: '' };
      const r = await runTimed('python3', [join(here, 'numpy-extract.py'), base.path, tunedPath, '64', 'model.layers.0.', extracted], env);
      const lines = r.stdout.trim().split('\n');
      const [summary, rss] = lines;
      const npKept = Number(/mean_kept ([\d.]+)/.exec(summary)?.[1]);
      const npSeconds = Number(/seconds ([\d.]+)/.exec(summary)?.[1]);
      const check = /check_summary dtype (\S+) ours_max (\S+) numpy_max (\S+)/.exec(lines.at(-1) ?? '');
      const estimate = npSeconds * model.layers;
      result.numpy = {
        layer0Seconds: npSeconds, estimatedSeconds: estimate, rssMiB: Number(rss) / 1024, layer0MeanKept: npKept,
        ...(check ? { factorsDtype: check[1], oursMaxExcessError: Number(check[2]), numpyMaxExcessError: Number(check[3]) } : {}),
      };
      log(`numpy full SVD (np.linalg.svd, f32) of layer 0's 7 matrices: ${npSeconds.toFixed(2)} s, peak RSS ${(Number(rss) / 1024).toFixed(0)} MiB, mean kept ${pct(npKept)} (loramerge, same matrices: ${pct(mean(layer0))}); all ${model.layers} layers ≈ ${estimate.toFixed(0)} s`);
      if (check) {
        log(`error ‖D − B·A‖_F above the optimum, layer 0, worst module: loramerge ${(100 * Number(check[2])).toFixed(3)}%, numpy's factors stored in ${check[1]} ${(100 * Number(check[3])).toFixed(3)}% (the bound the tests hold the SVDs to: 0.1%)`);
      }
      log(`loramerge is ≈ ${(estimate / ours.seconds).toFixed(1)}× ${estimate >= ours.seconds ? 'faster' : 'slower'} than numpy (estimate)`);
    } else {
      log('numpy: not present, skipped');
    }
    if (values.json) await writeFile(values.json, JSON.stringify(result, null, 2) + '\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  log(`bench failed: ${e.message}`);
  process.exit(1);
});
