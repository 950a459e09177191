/**
 * Alternating page merges of several checkouts of this repository (each with its dependencies and
 * generated sources in place): the demo of each is built and served cross-origin isolated, and one
 * headless Chromium merges the same bench model in each page in turn (ABBA order, a pause before
 * each), as `bench/run.mjs --pairs` does for the page against the CLI. Prints each merge's time,
 * the browser's and renderer's CPU, the memory above idle, every checkout's median, and whether
 * all outputs' tensor data agree. For changes to the page's pipeline, where one build against
 * another on the same machine and in the same minutes is the only fair comparison.
 *
 * usage: node bench/page-variants.mjs [--rounds N] [--layers N] [--settle-ms MS] CHECKOUT CHECKOUT...
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_MODEL, writeAdapter, writeBaseModel } from './make-model.mjs';
import { launchBenchBrowser, mergeInPage } from './page-merge.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '3' }, layers: { type: 'string', default: '28' }, 'settle-ms': { type: 'string', default: '3000' } },
});
const rounds = Number(values.rounds), layers = Number(values.layers), settleMs = Number(values['settle-ms']);
if (positionals.length < 1 || !(rounds >= 1) || !Number.isInteger(layers) || layers < 1 || !(settleMs >= 0)) {
  console.error('usage: node bench/page-variants.mjs [--rounds N] [--layers N] [--settle-ms MS] CHECKOUT CHECKOUT...');
  process.exit(2);
}
const checkouts = positionals.map((p) => resolve(p));
const dir = await mkdtemp(join(tmpdir(), 'loramerge-variants-'));
const log = (line) => process.stderr.write(line + '\n');
const servers = [];
let browser;
try {
  const model = { ...BENCH_MODEL, layers };
  const base = await writeBaseModel(join(dir, 'base'), model);
  await writeAdapter(join(dir, 'adapter'), model);
  log(`model: ${(base.bytes / 1e9).toFixed(2)} GB f16 (${layers} layers)`);
  const files = async (d) => (await readdir(d)).map((f) => join(d, f));
  const baseFiles = await files(join(dir, 'base')), adapterFiles = await files(join(dir, 'adapter'));
  // Each checkout's own Vite and config: the config's root is relative, so build from its folder.
  for (const [i, root] of checkouts.entries()) {
    const { build, preview } = await import(join(root, 'node_modules/vite/dist/node/index.js'));
    const outDir = join(dir, `dist-${i}`);
    process.chdir(root);
    await build({ configFile: join(root, 'vite.config.ts'), logLevel: 'error', build: { outDir, emptyOutDir: true } });
    const server = await preview({ configFile: join(root, 'vite.config.ts'), logLevel: 'error', build: { outDir }, preview: { port: 0, open: false } });
    servers.push({ url: `http://127.0.0.1:${server.httpServer.address().port}/`, close: () => server.close() });
  }
  browser = await launchBenchBrowser();
  const seconds = checkouts.map(() => []);
  const outputs = checkouts.map(() => new Set());
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < checkouts.length; k++) {
      const i = r % 2 === 0 ? k : checkouts.length - 1 - k;
      await new Promise((done) => setTimeout(done, settleMs));
      const m = await mergeInPage(browser, servers[i].url, { base: baseFiles, adapterFiles });
      seconds[i].push(m.seconds);
      outputs[i].add(JSON.stringify(m.output.hashes));
      log(`round ${r + 1}, ${checkouts[i]}: ${m.seconds.toFixed(2)} s (CPU: browser ${m.cpu.browser.toFixed(2)} s, renderer ${m.cpu.renderer.toFixed(2)} s), ${((m.peakBytes - m.idleBytes) / 2 ** 20).toFixed(0)} MiB above idle`);
    }
  }
  for (const [i, list] of seconds.entries()) {
    const sorted = [...list].sort((a, b) => a - b);
    log(`${checkouts[i]}: median ${sorted[sorted.length >> 1].toFixed(2)} s [${list.map((s) => s.toFixed(2)).join(', ')}]`);
  }
  const all = new Set(outputs.flatMap((s) => [...s]));
  log(all.size === 1 ? 'outputs: identical tensor data' : `outputs: ${all.size} different results`);
  if (all.size !== 1) process.exitCode = 1;
} finally {
  await browser?.close();
  for (const s of servers) await s.close();
  await rm(dir, { recursive: true, force: true });
}
