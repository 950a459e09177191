/**
 * DeepSeek-V4's packed FP4 experts merged by the library in a browser page (headless Chromium, the
 * sources served by Vite as a bundler serves them): two routed experts in DeepSeek's names
 * (`layers.0.ffn.experts.E.w{1,2,3}.weight`, expert 0 as I8 (out, in/2), expert 1 as F4 (out, in),
 * each beside an F8_E8M0 `.scale` per 32 inputs) and a PEFT LoRA on the fused experts' down_proj
 * (`target_parameters`, PEFT 0.19.1). On a cross-origin isolated page the CPU backend's Web Workers
 * (the library's own worker script, started from `createBrowserCpuWorkerPool`'s default URL) decode
 * the codes and quantize W' again, which the page's posted jobs show; on a page without isolation
 * there is no pool and the calling thread gives the same bytes. Both are checked against float64
 * truth written plainly here (DeepSeek's convert.py table, kernel.py's fp4 quantizer); the w1 and
 * w3 the adapter leaves alone come out byte for byte.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import puppeteer, { type Browser, type Page } from 'puppeteer';
import { createServer, type ViteDevServer } from 'vite';
import { chromiumPath } from './helpers/browser.js';
import { REPO_ROOT } from './helpers/cli.js';
import { seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { hfModelFolder, peftFolder } from './helpers/hf-folder.js';
import { rawTensors } from './helpers/fp8-checkpoint-fixtures.js';
import { fp4QuantizeTruth, fp4Value } from './helpers/deepseek-fp4-truth.js';

const rand = seededRandom(20261209);
// moe_intermediate 256 × hidden 512: 131 072 values a weight, above the size the CPU cuts among its threads.
const HIDDEN = 512, INTER = 256, E = 2, r = 2, S = 2; // lora_alpha 4 / r 2

const raw = (name: string, dtype: string, shape: number[], data: Uint8Array): FixtureTensor => ({ name, dtype: dtype as FixtureDType, shape, data });
const randomBytes = (n: number, pick: () => number) => Uint8Array.from({ length: n }, pick);
/** Packed FP4 expert weight (I8 (out, in/2) or F4 (out, in)) + (out, in/32) E8M0 scales 2^-8 … 2^-4. */
const fp4 = (stem: string, out: number, inF: number, dtype: 'I8' | 'F4'): FixtureTensor[] => [
  raw(`${stem}.weight`, dtype, dtype === 'I8' ? [out, inF / 2] : [out, inF], randomBytes((out * inF) / 2, () => Math.floor(rand() * 256))),
  raw(`${stem}.scale`, 'F8_E8M0', [out, inF / 32], randomBytes((out * inF) / 32, () => 119 + Math.floor(rand() * 5))),
];
const BASE: FixtureTensor[] = Array.from({ length: E }, (_, e) => {
  const dtype = e === 0 ? 'I8' : 'F4';
  return [...fp4(`layers.0.ffn.experts.${e}.w1`, INTER, HIDDEN, dtype), ...fp4(`layers.0.ffn.experts.${e}.w2`, HIDDEN, INTER, dtype), ...fp4(`layers.0.ffn.experts.${e}.w3`, INTER, HIDDEN, dtype)];
}).flat();
const CONFIG = {
  architectures: ['DeepseekV4ForCausalLM'], model_type: 'deepseek_v4', torch_dtype: 'bfloat16', hidden_size: HIDDEN, num_hidden_layers: 1,
  n_routed_experts: E, moe_intermediate_size: INTER, vocab_size: 16, expert_dtype: 'fp4',
  quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', scale_fmt: 'ue8m0', weight_block_size: [128, 128] },
};
const bytesOf = (name: string) => BASE.find((t) => t.name === name)!.data as Uint8Array;

const factor = (n: number) => Float64Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * 64) / 1024);
const A = factor(r * E * INTER), B = factor(HIDDEN * r * E);
const ADAPTER = peftFolder({ r, lora_alpha: 4, peft_version: '0.19.1', target_modules: [], target_parameters: ['mlp.experts.down_proj'], base_model_name_or_path: 'deepseek-ai/DeepSeek-V4-Flash' }, [
  { name: 'base_model.model.model.layers.0.mlp.experts.lora_A.weight', dtype: 'F32', shape: [r * E, INTER], data: A },
  { name: 'base_model.model.model.layers.0.mlp.experts.lora_B.weight', dtype: 'F32', shape: [HIDDEN, r * E], data: B },
]);

/**
 * Expert e's w2 merged in float64 (code × 2^(s − 127) + S·B_e·A_e, PEFT's interleaved experts:
 * A_e = rows e·r … of A, B_e[o][k] = B[o][k·E + e]), rounded once to f32, then quantized as
 * kernel.py's fp4 quantizer: [packed codes, scale bytes].
 */
function w2Truth(e: number): [Uint8Array, Uint8Array] {
  const stem = `layers.0.ffn.experts.${e}.w2`;
  const packed = bytesOf(`${stem}.weight`), scale = bytesOf(`${stem}.scale`);
  const w = new Float32Array(HIDDEN * INTER);
  for (let o = 0; o < HIDDEN; o++) {
    for (let i = 0; i < INTER; i++) {
      const at = o * INTER + i;
      let d = 0;
      for (let k = 0; k < r; k++) d += B[o * r * E + k * E + e] * A[(e * r + k) * INTER + i];
      w[at] = fp4Value(at & 1 ? packed[at >> 1] >> 4 : packed[at >> 1] & 15) * 2 ** (scale[Math.floor(at / 32)] - 127) + S * d;
    }
  }
  return fp4QuantizeTruth(w);
}

/** The index of the first differing byte, or −1 (a plain loop: toEqual on 10⁵ bytes is slow). */
function firstDifference(x: Uint8Array, y: Uint8Array): number {
  if (x.length !== y.length) return Math.min(x.length, y.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

let server: ViteDevServer;
let browser: Browser;
let origin: string;

beforeAll(async () => {
  server = await createServer({
    configFile: false,
    root: REPO_ROOT,
    logLevel: 'error',
    worker: { format: 'es' },
    optimizeDeps: { entries: ['src/index.ts'] },
    // Every response may be embedded by an isolated page (COEP, CORP); only the page's own COOP
    // decides whether it is cross-origin isolated.
    server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false, headers: { 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin' } },
    plugins: [{
      name: 'fp4-page',
      configureServer(dev) {
        dev.middlewares.use((request, response, next) => {
          const url = new URL(request.url ?? '/', 'http://x');
          if (url.pathname !== '/fp4.html') return next();
          response.setHeader('Content-Type', 'text/html');
          response.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
          response.setHeader('Cross-Origin-Opener-Policy', url.searchParams.has('isolated') ? 'same-origin' : 'unsafe-none');
          response.end('<!doctype html><title>fp4</title><link rel="icon" href="data:,">');
        });
      },
    }],
  });
  await server.listen();
  const address = server.httpServer!.address();
  if (!address || typeof address === 'string') throw new Error('dev server has no port');
  origin = `http://127.0.0.1:${address.port}`;
  browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--no-sandbox', '--headless=new', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/**
 * A page at `/fp4.html`, served cross-origin isolated (COOP + COEP) or with no COOP, as a host
 * that does not isolate it; every job it posts to a worker is recorded (kind, and the decoder or code format).
 */
async function openPage(isolated: boolean): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error instanceof Error ? error.message : String(error)}`));
  page.on('console', (message) => { if (message.type() === 'error') errors.push(`console: ${message.text()}`); });
  page.on('response', (response) => { if (response.status() >= 400) errors.push(`${response.status()}: ${response.url()}`); });
  await page.evaluateOnNewDocument(() => {
    const post = Worker.prototype.postMessage;
    const jobs: string[] = [];
    (window as unknown as { postedJobs: string[] }).postedJobs = jobs;
    Worker.prototype.postMessage = function (this: Worker, message: { kind?: string; source?: { decoder?: string }; rows?: { format?: string } }, ...rest: unknown[]) {
      if (message?.kind) jobs.push(`${message.kind}:${message.source?.decoder ?? message.rows?.format ?? ''}`);
      (post as (...a: unknown[]) => void).call(this, message, ...rest);
    } as typeof Worker.prototype.postMessage;
  });
  await page.goto(`${origin}/fp4.html${isolated ? '?isolated' : ''}`);
  return { page, errors };
}

interface PageMerge { isolated: boolean; pool: boolean; unavailable: string | null; description: string; problems: string[]; jobs: string[]; files: Record<string, string> }

/** Merges the base and adapter in the page with the library on the CPU (its worker pool where the page may have one). */
async function mergeInPage(page: Page, kind: 'cpu' | 'webgpu' = 'cpu'): Promise<PageMerge> {
  const b64 = (files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [k, typeof v === 'string' ? v : Buffer.from(v).toString('base64')]));
  // A string, not a function: the test runner rewrites import() inside functions it compiles.
  const script = `(async (base, adapter, kind) => {
    const lib = await import('/src/index.ts');
    const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    const files = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, k.endsWith('.json') ? v : bytes(v)]));
    const pool = lib.createBrowserCpuWorkerPool({ threads: 2 });
    const backend = await lib.createBackend({ kind, cpuPool: () => pool });
    const prepared = await lib.prepareMerge(lib.memoryInputFileSet(files(base), 'base'), [{ files: lib.memoryInputFileSet(files(adapter), 'adapter1'), weight: 1 }]);
    const problems = prepared.plan.problems.map(String);
    const output = lib.createBlobOutputTarget();
    let description;
    try {
      await lib.mergeModel({ prepared, output, backend, slabBytes: 300000 });
      description = backend.description;
    } finally {
      await prepared.close();
      backend.dispose();
    }
    const out = {};
    for (const f of output.files()) {
      const b = new Uint8Array(await f.blob.arrayBuffer());
      let s = '';
      for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
      out[f.path] = btoa(s);
    }
    return { isolated: crossOriginIsolated, pool: pool !== undefined, unavailable: lib.browserCpuPoolUnavailable() ?? null, description, problems, jobs: window.postedJobs, files: out };
  })(${JSON.stringify(b64(hfModelFolder(BASE, CONFIG)))}, ${JSON.stringify(b64(ADAPTER))}, '${kind}')`;
  return (await page.evaluate(script)) as PageMerge;
}

/** Each expert's w2 is float64 truth's codes and scales; w1 and w3 the base's bytes. */
function expectTruth(result: PageMerge): void {
  expect(result.problems).toEqual([]);
  const out = rawTensors(Buffer.from(result.files['model.safetensors'], 'base64'));
  for (let e = 0; e < E; e++) {
    const stem = `layers.0.ffn.experts.${e}`;
    const [codes, scales] = w2Truth(e);
    const w2 = out.get(`${stem}.w2.weight`)!;
    expect([w2.dtype, w2.shape]).toEqual([e === 0 ? 'I8' : 'F4', e === 0 ? [HIDDEN, INTER / 2] : [HIDDEN, INTER]]);
    expect(firstDifference(w2.bytes, codes), `${stem}.w2.weight`).toBe(-1);
    expect(firstDifference(out.get(`${stem}.w2.scale`)!.bytes, scales), `${stem}.w2.scale`).toBe(-1);
    for (const key of [`${stem}.w1.weight`, `${stem}.w1.scale`, `${stem}.w3.weight`, `${stem}.w3.scale`]) {
      expect(firstDifference(out.get(key)!.bytes, bytesOf(key)), key).toBe(-1);
    }
  }
}

describe("DeepSeek-V4's FP4 experts merged in Chromium on the CPU backend", () => {
  it('cross-origin isolated: the Web Workers decode and re-quantize them, float64 truth\'s codes and scales', async () => {
    const { page, errors } = await openPage(true);
    try {
      const result = await mergeInPage(page);
      expect(result.isolated).toBe(true);
      expect(result.pool).toBe(true);
      expect(result.description).toMatch(/, 2 threads/);
      // The FP4 decode and the FP4 codes ran on the workers (the decoder's and the format's names in the jobs posted).
      expect(result.jobs.filter((j) => j === 'decode:deepseek-fp4').length).toBeGreaterThan(0);
      expect(result.jobs.filter((j) => j === 'comfy:fp4-e8m0').length).toBeGreaterThan(0);
      expectTruth(result);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('without cross-origin isolation: no pool, the calling thread writes the same bytes', async () => {
    const { page, errors } = await openPage(false);
    try {
      const result = await mergeInPage(page);
      expect(result.isolated).toBe(false);
      expect(result.pool).toBe(false);
      expect(result.unavailable).toMatch(/cross-origin isolat/);
      expect(result.jobs).toEqual([]);
      expectTruth(result);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('on the WebGPU backend: its CPU executor\'s Web Workers decode and re-quantize them, the same bytes', async () => {
    const { page, errors } = await openPage(true);
    try {
      const result = await mergeInPage(page, 'webgpu');
      expect(result.description).toMatch(/^WebGPU: .*, with 2 CPU threads for what the GPU leaves to the CPU$/);
      expect(result.jobs.filter((j) => j === 'decode:deepseek-fp4').length).toBeGreaterThan(0);
      expect(result.jobs.filter((j) => j === 'comfy:fp4-e8m0').length).toBeGreaterThan(0);
      expectTruth(result);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);
});
