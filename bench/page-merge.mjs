/**
 * Drives the demo page through one merge as a person would (upload the base and the adapter, wait
 * for the plan, press Merge, wait for the download link) with the default settings: the result
 * goes to browser storage (OPFS). Samples the memory of every Chromium process throughout, and
 * hashes the output in 64 MiB pieces inside the page (never holding it) so it can be compared with
 * a file on disk. Used by `npm run bench` and by the large-model page test.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const HASH_PIECE = 64 * 1024 * 1024;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The demo built and served cross-origin isolated as `npm run build` ships it: { url, close() }. */
export async function serveDemo() {
  const { build, preview } = await import('vite');
  const outDir = await mkdtemp(join(tmpdir(), 'loramerge-bench-page-'));
  await build({ configFile: join(root, 'vite.config.ts'), logLevel: 'error', build: { outDir, emptyOutDir: true } });
  const server = await preview({ configFile: join(root, 'vite.config.ts'), logLevel: 'error', build: { outDir }, preview: { port: 0, open: false } });
  return {
    url: `http://127.0.0.1:${server.httpServer.address().port}/`,
    close: async () => {
      await server.close();
      await rm(outDir, { recursive: true, force: true });
    },
  };
}

/**
 * The Chromium to start: as root (where Chromium would raise its threads' priority above the CLI's,
 * whose niceness the bench's own is) through bench/chromium-same-nice.sh where `setpriv` exists, so
 * that page and CLI run at the same niceness.
 */
function benchChromium() {
  const chromium = process.env.PUPPETEER_EXECUTABLE_PATH ?? '/usr/bin/chromium';
  const asRoot = process.getuid?.() === 0;
  if (!asRoot || !['/usr/bin/setpriv', '/bin/setpriv'].some((p) => existsSync(p))) return { executablePath: chromium, env: process.env };
  return { executablePath: join(root, 'bench', 'chromium-same-nice.sh'), env: { ...process.env, LORAMERGE_BENCH_CHROMIUM: chromium } };
}

/** A fresh headless Chromium with WebGPU on whatever adapter it finds (SwiftShader without a GPU). */
export async function launchBenchBrowser() {
  const { default: puppeteer } = await import('puppeteer');
  return puppeteer.launch({
    ...benchChromium(),
    headless: true,
    args: ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--no-sandbox', '--headless=new',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** The pids of a process and all its descendants (a scan of /proc: tens of milliseconds of CPU). */
export async function processTree(rootPid) {
  const parents = new Map();
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // the process ended while we looked
    }
  }
  const inTree = (pid) => {
    for (let p = pid; p > 1; p = parents.get(p) ?? 0) if (p === rootPid) return true;
    return false;
  };
  return [...parents.keys()].filter(inTree);
}

const PAGE_BYTES = 4096;

/** Resident memory of these processes, in bytes (one small /proc read each). */
async function rssOf(pids) {
  let total = 0;
  for (const pid of pids) {
    try {
      total += Number((await readFile(`/proc/${pid}/statm`, 'utf8')).split(' ')[1]) * PAGE_BYTES;
    } catch {
      // the process ended while we looked
    }
  }
  return total;
}

/** The kernel's clock ticks per second, in which /proc/<pid>/stat counts CPU time (100 on Linux). */
const TICKS_PER_SECOND = 100;

/**
 * CPU seconds (user + system) so far of a process and its descendants, by Chromium process type:
 * `browser` (reads picked files and feeds them to the page), `renderer` (the page and its
 * workers), `other` (GPU, utility processes).
 */
export async function treeCpu(rootPid) {
  const out = { browser: 0, renderer: 0, other: 0 };
  for (const pid of await processTree(rootPid)) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const seconds = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
      const type = /--type=([\w-]+)/.exec(await readFile(`/proc/${pid}/cmdline`, 'utf8'))?.[1];
      out[pid === rootPid ? 'browser' : type === 'renderer' ? 'renderer' : 'other'] += seconds;
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/**
 * CPU seconds (user + system) and minor page faults so far of every thread of a process and its
 * descendants, keyed `pid/tid`: { type (as {@link treeCpu}), name (the thread's), seconds, faults }.
 * Chromium names its threads (Chrome_IOThread, ThreadPoolForegroundWorker, DedicatedWorker thread
 * for each worker, in the order the workers started), so the per-process figures can be split.
 */
export async function treeThreads(rootPid) {
  const out = new Map();
  for (const pid of await processTree(rootPid)) {
    try {
      const kind = /--type=([\w-]+)/.exec(await readFile(`/proc/${pid}/cmdline`, 'utf8'))?.[1];
      const type = pid === rootPid ? 'browser' : kind === 'renderer' ? 'renderer' : 'other';
      for (const tid of await readdir(`/proc/${pid}/task`)) {
        const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => undefined);
        if (!stat) continue;
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        out.set(`${pid}/${tid}`, {
          type, name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
          seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND, faults: Number(fields[7]),
        });
      }
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** Resident memory of a process and all its descendants, in bytes (Linux /proc). */
export async function treeRss(rootPid) {
  return rssOf(await processTree(rootPid));
}

/**
 * Samples `treeRss(pid)` every `ms` until stopped; returns { stop(): { peak, samples } }. The tree
 * is found again once a second, not at every sample: scanning all of /proc every 250 ms took a
 * tenth of a core from the merge it was measuring.
 */
export function sampleMemory(pid, ms = 250) {
  const samples = [];
  let running = true;
  const loop = (async () => {
    let pids = [];
    let foundAt = -Infinity;
    while (running) {
      const t = performance.now();
      if (t - foundAt >= 1000) {
        pids = await processTree(pid);
        foundAt = t;
      }
      samples.push({ t, bytes: await rssOf(pids) });
      await new Promise((r) => setTimeout(r, ms));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { peak: Math.max(0, ...samples.map((s) => s.bytes)), samples };
    },
  };
}

/**
 * SHA-256 of each 64 MiB piece of a safetensors file's tensor data (after the header, whose
 * provenance metadata names the inputs as each front end saw them).
 */
export async function pieceHashes(path) {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(HASH_PIECE);
    await handle.read(buffer, 0, 8, 0);
    const dataStart = 8 + Number(buffer.readBigUInt64LE(0));
    const out = [];
    for (let offset = dataStart; offset < size; offset += HASH_PIECE) {
      const length = Math.min(HASH_PIECE, size - offset);
      await handle.read(buffer, 0, length, offset);
      out.push(createHash('sha256').update(buffer.subarray(0, length)).digest('hex'));
    }
    return out;
  } finally {
    await handle.close();
  }
}

/**
 * One merge in the page at `url` (the demo, served cross-origin isolated). `base` is a file path (or the paths of a sharded base's files),
 * `adapterFiles` the adapter's file paths. Returns the merge's wall time (click to download link),
 * the CPU seconds each kind of Chromium process spent meanwhile, the page's own report, idle and
 * peak memory of the browser, and the output's piece hashes; with `threads`, also each thread's CPU
 * and page faults during the merge (see {@link treeThreads}).
 */
export async function mergeInPage(browser, url, { base, adapterFiles, backend = 'auto', sampleMs = 250, timeoutMs = 600_000, threads = false }) {
  const page = await browser.newPage();
  try {
    await page.goto(`${url}?backend=${backend}`, { waitUntil: 'load' });
    await page.waitForFunction(() => !/starting/.test(document.getElementById('backend')?.textContent ?? 'starting'), { timeout: 120_000 });
    const pid = browser.process().pid;
    const idle = await treeRss(pid);
    const memory = sampleMemory(pid, sampleMs);
    await (await page.$('[data-testid="base-input"]')).uploadFile(...[base].flat());
    await (await page.$('[data-testid="adapter-input"]')).uploadFile(...adapterFiles);
    await page.waitForFunction(() => !document.querySelector('[data-testid="merge-button"]').disabled, { timeout: 120_000 });
    const threadsBefore = threads ? await treeThreads(pid) : undefined;
    const cpuBefore = await treeCpu(pid);
    const t0 = performance.now();
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(
      () => !!document.querySelector('[data-testid="download-link"]')?.href || /error|failed/i.test(document.getElementById('progress-text')?.className ?? ''),
      { timeout: timeoutMs, polling: 100 },
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpuAfter = await treeCpu(pid);
    const threadsAfter = threads ? await treeThreads(pid) : undefined;
    const cpu = Object.fromEntries(Object.keys(cpuAfter).map((k) => [k, cpuAfter[k] - cpuBefore[k]]));
    const { peak, samples } = await memory.stop();
    const failure = await page.$eval('#progress-text', (e) => (e.className.includes('error') ? e.textContent : ''));
    if (failure) throw new Error(`the page's merge failed: ${failure}`);
    const report = await page.$eval('#progress-text', (e) => e.textContent);
    const backendText = await page.$eval('#backend', (e) => e.textContent);
    const hashes = await page.evaluate(async (piece) => {
      const href = document.querySelector('[data-testid="download-link"]').href;
      const blob = await (await fetch(href)).blob(); // a handle on the disk-backed file, not its bytes
      const out = [];
      const dataStart = 8 + Number(new DataView(await blob.slice(0, 8).arrayBuffer()).getBigUint64(0, true));
      for (let offset = dataStart; offset < blob.size; offset += piece) {
        const digest = await crypto.subtle.digest('SHA-256', await blob.slice(offset, offset + piece).arrayBuffer());
        out.push([...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join(''));
      }
      return { size: blob.size, hashes: out };
    }, HASH_PIECE);
    // With `threads`: each thread's CPU and page faults during the merge, threads that spent none left out.
    const perThread = threadsAfter && [...threadsAfter].map(([key, t]) => {
      const before = threadsBefore.get(key) ?? { seconds: 0, faults: 0 };
      return { key, type: t.type, name: t.name, seconds: t.seconds - before.seconds, faults: t.faults - before.faults };
    }).filter((t) => t.seconds > 0);
    return { seconds, cpu, idleBytes: idle, peakBytes: peak, samples: samples.length, report, backend: backendText, output: hashes, threads: perThread };
  } finally {
    await page.close();
  }
}
