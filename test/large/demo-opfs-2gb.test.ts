/**
 * A merge of more than 2 GB in the demo page with its default settings: the output goes to browser
 * storage (OPFS) and the download link points at that disk-backed file. The memory of every
 * Chromium process is sampled throughout and must stay within 512 MB of idle; the tensor data
 * must equal the CLI's merge of the same files. Numbers are printed for the README.
 * Run with `npm run test:large` (about a minute here; it writes 2 GB three times).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Browser } from 'puppeteer';
import { afterAll, beforeAll, expect, it } from 'vitest';
// @ts-expect-error plain JavaScript modules shared with the benchmark
import { mergeInPage, pieceHashes } from '../../bench/page-merge.mjs';
// @ts-expect-error plain JavaScript modules shared with the benchmark
import { BENCH_MODEL, writeAdapter, writeBaseModel } from '../../bench/make-model.mjs';
import { launchChromium, serveDemo, type DemoServer } from '../helpers/browser.js';
import { REPO_ROOT } from '../helpers/cli.js';

const MIB = 2 ** 20;
let dir: string;
let server: DemoServer;
let browser: Browser;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'loramerge-2gb-'));
  server = await serveDemo();
  browser = await launchChromium();
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('merges a 2 GB model through OPFS within 512 MB of idle browser memory, equal to the CLI', async () => {
  const model = { ...BENCH_MODEL, layers: 20 }; // 2.02 GB of f16
  const t0 = performance.now();
  const base = await writeBaseModel(join(dir, 'base'), model);
  await writeAdapter(join(dir, 'adapter'), model);
  const generated = (performance.now() - t0) / 1000;
  expect(base.bytes).toBeGreaterThan(2e9);

  const t1 = performance.now();
  execFileSync(process.execPath, [join(REPO_ROOT, 'bin/loramerge.js'), 'merge', '--base', base.path, '--adapter', join(dir, 'adapter'),
    '--out', join(dir, 'cli.safetensors'), '--backend', 'auto'], { stdio: 'ignore' });
  const cliSeconds = (performance.now() - t1) / 1000;
  const cliHashes = await pieceHashes(join(dir, 'cli.safetensors'));
  rmSync(join(dir, 'cli.safetensors'));

  const page = await mergeInPage(browser, server.url, {
    base: base.path, adapterFiles: ['adapter_config.json', 'adapter_model.safetensors'].map((f) => join(dir, 'adapter', f)),
  });
  const overIdle = (page.peakBytes - page.idleBytes) / MIB;
  process.stdout.write([
    `model ${(base.bytes / 1e9).toFixed(2)} GB (written in ${generated.toFixed(1)} s)`,
    `CLI --backend auto: ${cliSeconds.toFixed(1)} s`,
    `page (default settings, OPFS): ${page.seconds.toFixed(1)} s = ${(page.seconds / cliSeconds).toFixed(2)}× the CLI; ${page.report}`,
    `browser memory: idle ${(page.idleBytes / MIB).toFixed(0)} MiB, peak ${(page.peakBytes / MIB).toFixed(0)} MiB, ` +
      `${overIdle.toFixed(0)} MiB above idle over ${page.samples} samples`,
    `backend: ${page.backend}`,
  ].join('\n') + '\n');
  // Every 64 MiB piece of the tensor data (the headers differ only in how each front end names
  // its inputs in the provenance metadata).
  expect(page.output.hashes).toEqual(cliHashes);
  expect(overIdle).toBeLessThan(512);
}, 900_000);
