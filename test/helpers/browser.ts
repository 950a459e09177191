/**
 * Drives the demo page like a person would: builds it with Vite into a temporary folder, serves it
 * on 127.0.0.1 with Vite's preview server, and opens it in the system Chromium with WebGPU on
 * (SwiftShader where there is no GPU). Every request that leaves the server's origin and every page
 * error is recorded so tests can fail on them.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer';
import { build, preview, type PreviewServer } from 'vite';

/**
 * Flags from the team's notes on WebGPU without a GPU; the last ones keep Chromium off the network:
 * every origin but the loopback one goes through a proxy that is not there, and no name resolves.
 */
const CHROMIUM_FLAGS = [
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
  '--no-sandbox',
  '--headless=new',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--disable-default-apps',
  '--disable-extensions',
  '--proxy-server=http://127.0.0.1:9',
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
];

export function chromiumPath(): string {
  const fromEnv = process.env.PUPPETEER_EXECUTABLE_PATH;
  if (fromEnv) return fromEnv;
  for (const candidate of ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('no Chromium found: set PUPPETEER_EXECUTABLE_PATH');
}

export interface DemoServer {
  /** Origin plus path of the page, e.g. http://127.0.0.1:41234/ */
  url: string;
  close(): Promise<void>;
}

/**
 * Builds the demo (the same static files `npm run build` ships) and serves them on a free port,
 * cross-origin isolated as the project's servers are; `{ crossOriginIsolated: false }` serves them
 * as a host that sends no such headers would.
 */
export async function serveDemo(options: { crossOriginIsolated?: boolean } = {}): Promise<DemoServer> {
  const outDir = mkdtempSync(join(tmpdir(), 'loramerge-demo-'));
  await build({ configFile: 'vite.config.ts', logLevel: 'error', build: { outDir, emptyOutDir: true } });
  const plainHost = { 'Cross-Origin-Opener-Policy': 'unsafe-none', 'Cross-Origin-Embedder-Policy': 'unsafe-none' };
  const server: PreviewServer = await preview({
    configFile: 'vite.config.ts',
    logLevel: 'error',
    build: { outDir },
    preview: {
      host: '127.0.0.1', port: 0, strictPort: false, open: false,
      ...(options.crossOriginIsolated === false ? { headers: plainHost } : {}),
    },
  });
  const address = server.httpServer.address();
  if (!address || typeof address === 'string') throw new Error('preview server has no port');
  return {
    url: `http://127.0.0.1:${address.port}/`,
    async close() {
      await server.close();
      rmSync(outDir, { recursive: true, force: true });
    },
  };
}

export async function launchChromium(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: CHROMIUM_FLAGS,
    defaultViewport: { width: 1280, height: 900 },
  });
}

export interface DemoPage {
  page: Page;
  /** URLs of requests that went anywhere but the demo's own origin. */
  foreignRequests: string[];
  /** Uncaught exceptions, console errors and failed same-origin requests. */
  errors: string[];
}

/**
 * Opens the page, recording foreign requests (which fail: the browser has no way off this machine)
 * and every error. `query` is added to the address: `?backend=webgpu` runs merges on WebGPU (the
 * default, `auto`, picks the CPU on SwiftShader, as the CLI does).
 * Requests are watched, not intercepted: with interception on, a request a Web Worker makes (the
 * merge worker's lazily loaded GGUF parser) sometimes never completes in Chromium, and the page
 * waits forever for its plan.
 */
export async function openDemo(browser: Browser, server: DemoServer, query = ''): Promise<DemoPage> {
  const page = await browser.newPage();
  const origin = new URL(server.url).origin;
  const foreignRequests: string[] = [];
  const errors: string[] = [];
  page.on('request', (request) => {
    const url = request.url();
    // blob: and data: URLs never leave the page; anything else must be our own origin.
    if (!url.startsWith('blob:') && !url.startsWith('data:') && new URL(url).origin !== origin) foreignRequests.push(url);
  });
  page.on('pageerror', (error) => errors.push(`pageerror: ${error instanceof Error ? error.message : String(error)}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('requestfailed', (request) => {
    if (new URL(request.url()).origin === origin) errors.push(`request failed: ${request.url()}`);
  });
  await page.goto(server.url + query, { waitUntil: 'load' });
  // The backend's line is filled in once the worker has answered, which moves everything below it:
  // a click aimed before that lands where the button was (a lost click on the sample button made
  // page tests wait for a merge that never started). Tests act once the page has settled.
  await page.waitForFunction(() => !/^(starting|$)/.test((document.getElementById('backend')?.textContent ?? '').trim()), { timeout: 30_000 })
    .catch(() => undefined);
  return { page, foreignRequests, errors };
}

/**
 * Page tests run once more when they fail. They used to wait now and then for a sample merge that
 * never started: the click landed where the button had been before the backend's line moved it
 * (openDemo now waits for that line). The retry stays as a net for such harness races in headless
 * Chromium; a test that fails twice still fails.
 */
export const PAGE_RETRY = { retry: 1 } as const;
