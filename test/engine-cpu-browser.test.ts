/**
 * The CPU backend in a browser page (headless Chromium): the WASM kernel compiles and runs there on
 * the page's main thread (no synchronous compile of a module over 4 KB), with results checked
 * against float64 truth computed here. Browsers run the kernel on the calling thread, without workers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import puppeteer, { type Browser, type Page } from 'puppeteer';
import { createServer, type ViteDevServer } from 'vite';
import type { FloatDType } from '../src/dtype.js';
import type { MergeOp } from '../src/engine/merge-op.js';
import { chromiumPath } from './helpers/browser.js';
import { REPO_ROOT } from './helpers/cli.js';
import { compareWithReference, randomOp } from './helpers/reference-math.js';

let server: ViteDevServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  server = await createServer({
    configFile: false,
    root: REPO_ROOT,
    logLevel: 'error',
    server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false },
  });
  await server.listen();
  const address = server.httpServer!.address();
  if (!address || typeof address === 'string') throw new Error('dev server has no port');
  browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ['--no-sandbox', '--headless=new', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${address.port}/package.json`);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/** Runs the op through `new CpuBackend()` in the page; returns the description and output bytes. */
async function mergeInPage(op: MergeOp): Promise<{ description: string; executor: string; out: Uint8Array }> {
  const plain = {
    ...op,
    base: { dtype: op.base.dtype, data: Array.from(op.base.data) },
    terms: op.terms.map((t) => ({ ...t, a: { dtype: t.a.dtype, data: Array.from(t.a.data) }, b: { dtype: t.b.dtype, data: Array.from(t.b.data) } })),
  };
  // A string, not a function: the test runner rewrites import() inside functions it compiles.
  const script = `(async (o) => {
    const { CpuBackend } = await import('/src/engine/cpu/cpu-backend.ts');
    const bytes = (x) => ({ dtype: x.dtype, data: Uint8Array.from(x.data) });
    const backend = new CpuBackend('browser test');
    const out = await backend.merge({ ...o, base: bytes(o.base), terms: o.terms.map((t) => ({ ...t, a: bytes(t.a), b: bytes(t.b) })) });
    return { description: backend.description, executor: backend.executor, out: Array.from(out) };
  })(${JSON.stringify(plain)})`;
  const r = (await page.evaluate(script)) as { description: string; executor: string; out: number[] };
  return { ...r, out: Uint8Array.from(r.out) };
}

describe('CPU backend in Chromium', () => {
  const cases: [FloatDType, FloatDType, number, number, number[]][] = [
    ['F16', 'F16', 67, 131, [16]],
    ['BF16', 'F32', 9, 35, [1, 5]],
    ['F32', 'BF16', 41, 258, [33]],
  ];
  for (const [baseDtype, outDtype, rows, cols, ranks] of cases) {
    it(`${baseDtype} → ${outDtype}, ${rows}×${cols}, ranks ${ranks.join('+')}: WASM SIMD, within 1 ulp of the truth`, async () => {
      const op = randomOp(rows + cols, { rows, cols, baseDtype, outDtype, ranks });
      const { description, executor, out } = await mergeInPage(op);
      expect(executor).toBe('wasm');
      expect(description).toContain('WebAssembly SIMD');
      const c = compareWithReference(op, out);
      if (outDtype === 'F32') expect(c.maxRelError, c.firstMismatch).toBeLessThanOrEqual(1e-5);
      else {
        expect(c.maxUlp, c.firstMismatch).toBeLessThanOrEqual(1);
        expect(c.exact / c.count).toBeGreaterThanOrEqual(0.995);
      }
    });
  }
});

describe('CPU backend under a Content Security Policy without wasm-unsafe-eval', () => {
  it('says it runs JavaScript (not WebAssembly SIMD) and still merges exactly', async () => {
    const strict = await browser.newPage();
    try {
      const origin = new URL(page.url()).origin;
      await strict.setRequestInterception(true);
      strict.on('request', (request) => {
        if (request.url() === `${origin}/csp.html`) {
          void request.respond({ status: 200, contentType: 'text/html', headers: { 'Content-Security-Policy': "script-src 'self'" }, body: '<!doctype html><title>csp</title>' });
        } else {
          void request.continue();
        }
      });
      await strict.goto(`${origin}/csp.html`);
      const op = randomOp(5, { rows: 17, cols: 40, baseDtype: 'F16', outDtype: 'F16', ranks: [4] });
      const plain = { ...op, base: { dtype: op.base.dtype, data: Array.from(op.base.data) }, terms: op.terms.map((t) => ({ ...t, a: { dtype: t.a.dtype, data: Array.from(t.a.data) }, b: { dtype: t.b.dtype, data: Array.from(t.b.data) } })) };
      const script = `(async (o) => {
        const { CpuBackend } = await import('/src/engine/cpu/cpu-backend.ts');
        const bytes = (x) => ({ dtype: x.dtype, data: Uint8Array.from(x.data) });
        const backend = await new CpuBackend('browser test').ready();
        const out = await backend.merge({ ...o, base: bytes(o.base), terms: o.terms.map((t) => ({ ...t, a: bytes(t.a), b: bytes(t.b) })) });
        return { description: backend.description, executor: backend.executor, out: Array.from(out) };
      })(${JSON.stringify(plain)})`;
      const r = (await strict.evaluate(script)) as { description: string; executor: string; out: number[] };
      expect(r.executor).toBe('js');
      expect(r.description).toMatch(/^CPU \(JavaScript: WebAssembly may not be compiled here/);
      expect(r.description).not.toContain('SIMD');
      const c = compareWithReference(op, Uint8Array.from(r.out));
      expect(c.maxUlp, c.firstMismatch).toBeLessThanOrEqual(1);
    } finally {
      await strict.close();
    }
  });
});
