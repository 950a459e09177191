/**
 * The package as an embedder gets it: `npm pack`, installed from the tarball into a fresh project
 * (its registry dependencies from npm's cache; `webgpu` left out, as browser-only users may), then
 * (1) a strict TypeScript Node script under a plain Node tsconfig that merges with the one-call
 * API from paths and from Blobs, and resizes an adapter from a path into a folder path (the Node
 * entry's own job and types), with the mistakes its types refuse (test/embedder/mistakes.ts, each
 * line a compile error) and the README's and TSDoc's examples (test/embedder/examples.ts), and a CommonJS script under the classic tsconfig (node10 resolution, which
 * reads no "exports"), and (2) a Web Worker bundled by Vite that merges Files, then URLs
 * read by the browser's own fetch, on the CPU backend's worker threads in Chromium. Outputs are
 * checked against float64 truth computed here.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSample } from '../src/sample/index.js';
import { chromiumPath } from './helpers/browser.js';
import { REPO_ROOT } from './helpers/cli.js';
import { checkMerged, readSafetensors } from './helpers/demo-merge-check.js';
import { tempDirs } from './helpers/fixtures.js';

const dirs = tempDirs();
let project: string;
const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, stdio: 'pipe', encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });

beforeAll(() => {
  project = dirs.make();
  // dist/ is built by `npm test` (and `npm run test:embed`) before vitest runs.
  npm(['pack', '--ignore-scripts', '--pack-destination', project], REPO_ROOT);
  const tarball = readdirSync(project).find((f) => f.endsWith('.tgz'))!;
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'embedder', private: true, type: 'module' }));
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--omit=optional', `./${tarball}`], project);
  // Tools an embedder has of their own: the repository's copies stand in for them.
  mkdirSync(join(project, 'node_modules/@types'), { recursive: true });
  symlinkSync(join(REPO_ROOT, 'node_modules/@types/node'), join(project, 'node_modules/@types/node'));
  cpSync(join(REPO_ROOT, 'test/embedder'), project, { recursive: true });
}, 180_000);

afterAll(() => dirs.removeAll());

function truth(sample: Awaited<ReturnType<typeof generateSample>>, weight: number) {
  const config = JSON.parse(new TextDecoder().decode(sample.adapter['adapter_config.json']));
  return [{ tensors: readSafetensors(sample.adapter['adapter_model.safetensors']), scale: weight * (config.lora_alpha / config.r) }];
}

/**
 * A Vite preview plugin serving the sample's files under `sample/base/` and `sample/adapter/` as a
 * file host does: HEAD, byte ranges, no compression (Vite's preview gzips any type it does not know,
 * ranges included, which the library rightly refuses).
 */
function serveSample(sample: Awaited<ReturnType<typeof generateSample>>) {
  const files = new Map<string, Uint8Array>();
  for (const [folder, record] of [['base', sample.base], ['adapter', sample.adapter]] as const) {
    for (const [path, bytes] of Object.entries(record)) files.set(`/sample/${folder}/${path}`, bytes);
  }
  return {
    name: 'serve-sample',
    configurePreviewServer(server: { middlewares: { use(handler: (req: IncomingMessage, res: ServerResponse, next: () => void) => void): void } }) {
      server.middlewares.use((request, response, next) => {
        const body = files.get(request.url ?? '');
        if (!body) return next();
        const headers = { 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', 'Cross-Origin-Resource-Policy': 'same-origin' };
        const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
        if (!range) return void response.writeHead(200, { ...headers, 'Content-Length': body.byteLength }).end(request.method === 'HEAD' ? undefined : body);
        const [start, end] = [Number(range[1]), Math.min(Number(range[2]), body.byteLength - 1)];
        response.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': end - start + 1 });
        response.end(body.subarray(start, end + 1));
      });
    },
  };
}

/** What tsc reports for the project `tsconfig` in `cwd`: '' where it compiles. */
function tscErrors(cwd: string, tsconfig: string): string {
  try {
    execFileSync(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', tsconfig], { cwd, encoding: 'utf8' });
    return '';
  } catch (e) {
    return String((e as { stdout?: string }).stdout);
  }
}

describe('the packed package in a fresh project', () => {
  it('ships no source maps, a LICENSE, and installs without webgpu', () => {
    const installed = join(project, 'node_modules/loramerge');
    const files = execFileSync('find', ['.', '-type', 'f'], { cwd: installed, encoding: 'utf8' }).split('\n');
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(files).toContain('./LICENSE');
    expect(readdirSync(join(project, 'node_modules'))).not.toContain('webgpu');
    // Tools that read a dependency's version or fields resolve its package.json through "exports".
    const resolved = execFileSync(process.execPath, ['-e', "console.log(require('loramerge/package.json').version)"], { cwd: project, encoding: 'utf8' });
    expect(resolved.trim()).toBe(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).version);
  });

  it('strict TypeScript under a plain Node tsconfig compiles, and the one-call merge is exact', async () => {
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022'], types: ['node'],
        strict: true, skipLibCheck: false, outDir: 'out',
      },
      include: ['merge.ts'],
    }));
    execFileSync(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: project, stdio: 'pipe' });
    const work = join(project, 'work');
    mkdirSync(work);
    // The script ends on its own although it never disposed its backend (a timeout fails the test).
    const stdout = execFileSync(process.execPath, [join(project, 'out/merge.js'), work], { cwd: project, encoding: 'utf8', timeout: 60_000 });
    const report = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(report.files).toEqual(['model.safetensors', 'config.json']);
    expect(report.backend).toMatch(/^CPU \(/); // no webgpu installed: auto takes the CPU
    expect(report.cpu).toMatch(/WebAssembly SIMD, \d+ threads/);
    expect(report.events).toBeGreaterThan(2);
    expect(report.lastPhase).toBe('done');
    expect(report.progressRises).toBe(true);
    expect(report.lastFraction).toBe(1);
    expect(report.blobPath).toBe('model.safetensors');
    expect(report.cancelled).toBe('AbortError ABORTED');
    expect(report.noWebgpu).toBe('GPU_UNAVAILABLE: WebGPU for Node could not start: the optional package "webgpu" (Dawn) is not installed; install it (npm install webgpu) or use the CPU backend');
    expect(report.resized).toEqual({ format: 'peft', ranks: [1], files: ['adapter_config.json', 'adapter_model.safetensors'] });
    expect(readdirSync(work)).not.toContain('cancelled');
    expect(readdirSync(work)).not.toContain('on-gpu');
    const sample = await generateSample(report.options);
    const base = readSafetensors(sample.base['model.safetensors']);
    checkMerged(new Uint8Array(readFileSync(join(work, 'merged/model.safetensors'))), base, truth(sample, 0.5), 'F16');
    checkMerged(new Uint8Array(readFileSync(join(work, 'from-blobs.safetensors'))), base, truth(sample, 1));
  });

  it('a CommonJS script under the classic tsconfig (module commonjs: node10 resolution) finds loramerge/node and its types, and require() runs it', async () => {
    const cjs = join(project, 'cjs');
    writeFileSync(join(cjs, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'CommonJS', lib: ['ES2022'], types: ['node'], strict: true, skipLibCheck: false, outDir: 'out' },
      include: ['merge.ts'],
    }));
    expect(tscErrors(cjs, 'tsconfig.json')).toBe('');
    cpSync(join(cjs, 'package.json'), join(cjs, 'out/package.json'));
    const work = join(cjs, 'work');
    mkdirSync(work);
    const stdout = execFileSync(process.execPath, [join(cjs, 'out/merge.js'), work], { cwd: cjs, encoding: 'utf8', timeout: 60_000 });
    const report = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(report.files).toEqual(['model.safetensors', 'config.json']);
    const sample = await generateSample(report.options);
    checkMerged(new Uint8Array(readFileSync(join(work, 'merged/model.safetensors'))), readSafetensors(sample.base['model.safetensors']), truth(sample, 0.25));
  });

  it('the declarations refuse at compile time, under a plain Node tsconfig, the mistakes a type can show', () => {
    // mistakes.ts marks each mistake @ts-expect-error: one the types let through fails tsc.
    writeFileSync(join(project, 'tsconfig.mistakes.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022'], types: ['node'],
        strict: true, skipLibCheck: false, noEmit: true,
      },
      include: ['mistakes.ts'],
    }));
    expect(tscErrors(project, 'tsconfig.mistakes.json')).toBe('');
  });

  it('the README\'s library examples and each TSDoc @example compile against the installed package (DOM lib added, as README says)', () => {
    writeFileSync(join(project, 'tsconfig.examples.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'], types: ['node'],
        strict: true, skipLibCheck: false, noEmit: true,
      },
      include: ['examples.ts'],
    }));
    expect(tscErrors(project, 'tsconfig.examples.json')).toBe('');
  });

  it('a page that imports two helpers gets two helpers: Vite leaves the engine out (package.json sideEffects)', async () => {
    const { build } = await import('vite');
    const outDir = join(project, 'shake-dist');
    await build({ root: join(project, 'shake'), configFile: false, logLevel: 'error', build: { outDir, target: 'es2022' } });
    const chunks = readdirSync(join(outDir, 'assets')).filter((f) => f.endsWith('.js'));
    const main = chunks.filter((f) => f.startsWith('index-'));
    expect(main).toHaveLength(1);
    const code = readFileSync(join(outDir, 'assets', main[0]), 'utf8');
    // formatBytes, isMergeError, MergeError and its message bounds are a few kB; the engine is hundreds.
    expect(code.length).toBeLessThan(10_000);
    for (const chunk of chunks) expect(readFileSync(join(outDir, 'assets', chunk), 'utf8')).not.toMatch(/["']webgpu["']/);
    // Vite bundles a worker when it transforms the module that starts it, before tree-shaking: the
    // two worker scripts come along, unused and never fetched (README, "What Vite emits").
    const others = chunks.filter((f) => !main.includes(f)).map((f) => f.replace(/-[\w-]{8}\.js$/, '')).sort();
    expect(others).toEqual(['browser-cpu-worker', 'opfs-writer-worker']);
  });

  it('a Vite-built Web Worker merges Files and URLs (read by the browser\'s fetch) on the CPU worker threads, exactly', async () => {
    const [{ build, preview }, { default: puppeteer }] = await Promise.all([import('vite'), import('puppeteer')]);
    const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
    const sample = await generateSample({ layers: 1, hidden: 256, intermediate: 512, vocab: 512 });
    const config = { root: project, configFile: false as const, logLevel: 'error' as const, worker: { format: 'es' as const } };
    await build({ ...config, build: { outDir: join(project, 'dist'), target: 'es2022' } });
    const server = await preview({
      ...config, build: { outDir: join(project, 'dist') }, preview: { host: '127.0.0.1', port: 0, headers: isolation }, plugins: [serveSample(sample)],
    });
    const browser = await puppeteer.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', '--headless=new', '--disable-background-networking'] });
    try {
      const page = await browser.newPage();
      const address = server.httpServer.address() as { port: number };
      await page.goto(`http://127.0.0.1:${address.port}/`);
      const result = await page.evaluate(async () => {
        type Result = { error?: string; description: string; paths: string[]; bytes: Uint8Array; urlPaths: string[]; urlBytes: Uint8Array; cancel: unknown; byNameBackend: string; byNameBytes: Uint8Array };
        const r = await (window as unknown as { result: Promise<Result> }).result;
        return {
          ...r, bytes: r.bytes ? Array.from(r.bytes) : [], urlBytes: r.urlBytes ? Array.from(r.urlBytes) : [], byNameBytes: r.byNameBytes ? Array.from(r.byNameBytes) : [],
        };
      });
      expect(result.error).toBeUndefined();
      expect(result.paths).toEqual(['model.safetensors', 'config.json']);
      expect(result.description).toMatch(/WebAssembly SIMD, \d+ threads/);
      checkMerged(Uint8Array.from(result.bytes), readSafetensors(sample.base['model.safetensors']), truth(sample, -1.5), 'BF16');
      expect(result.urlPaths).toEqual(['model.safetensors']);
      checkMerged(Uint8Array.from(result.urlBytes), readSafetensors(sample.base['model.safetensors']), truth(sample, -1.5), 'BF16');
      // backend: 'cpu' by name: merge()'s own Web Workers, from the script Vite bundled.
      expect(result.byNameBackend).toMatch(/^CPU \(WebAssembly SIMD, \d+ threads; requested\)$/);
      checkMerged(Uint8Array.from(result.byNameBytes), readSafetensors(sample.base['model.safetensors']), truth(sample, -1.5), 'BF16');
      // Cancelled mid-merge on the worker threads: the name an embedder's abort handling looks for.
      expect(result.cancel).toEqual({ name: 'AbortError', code: 'ABORTED', causeIsReason: true, blobs: 'none' });
    } finally {
      await browser.close();
      await server.close();
    }
  });
});
