/**
 * merge() with URL inputs against servers that misbehave: each is refused with one error naming the
 * URL, nothing is left at the output, and nothing waits for ever. A well-behaved server is the
 * control: the same files merge exactly (float64 truth in checkMerged).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { urlInputFileSet } from '../src/io/url-input-files.js';
import { MAX_CONFIG_BYTES } from '../src/limits.js';
import { merge as browserMerge } from '../src/merge.js';
import { merge } from '../src/node-merge.js';
import { checkMerged, readSafetensors } from './helpers/demo-merge-check.js';
import { tempDirs } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { closeServer, listenLocally } from './helpers/local-server.js';

const dirs = tempDirs();
const fixture = llamaWithPeft(31);
const base = fixture.base;
const bytesOf = (x: Uint8Array | string) => (typeof x === 'string' ? new TextEncoder().encode(x) : x);

/** How the server misbehaves on the base's range requests, by the first path segment. */
type Mode = 'big-config' | 'spa' | 'spa-ranges' | 'ok' | 'no-range' | 'long-length' | 'short-length' | 'etag-changes' | 'size-changes' | 'stall' | 'loop' | 'error-500' | 'gzip' | 'gzip-head' | 'gated' | 'gone'
  | 'config-206-whole' | 'config-206-part' | 'config-206-bare' | 'config-206-unreadable' | 'config-206-gzip';
const rangeRequests = new Map<string, number>();
let server: Server;
let origin: string;

function serveRange(mode: Mode, request: IncomingMessage, response: ServerResponse, body: Uint8Array): void {
  const n = (rangeRequests.get(mode) ?? 0) + 1;
  rangeRequests.set(mode, n);
  const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range!)!;
  const [start, end] = [Number(a), Number(b)];
  const slice = body.subarray(start, end + 1);
  const partial = (headers: Record<string, string | number>, data: Uint8Array) => {
    response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': data.byteLength, ETag: '"v1"', ...headers });
    response.end(data);
  };
  // Past the first range (the header's length) the file is read mid-merge.
  const midMerge = n > 1;
  switch (mode) {
    case 'no-range': return void response.writeHead(200, { 'Content-Length': body.byteLength }).end(body);
    case 'long-length': case 'short-length': {
      if (!midMerge) return partial({}, slice);
      // Raw, so the length can lie: the body is one byte off what Content-Length says.
      const claimed = slice.byteLength + (mode === 'long-length' ? 1 : -1);
      const socket = response.socket!;
      socket.write(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${start}-${end}/${body.byteLength}\r\nContent-Length: ${claimed}\r\nConnection: close\r\n\r\n`);
      socket.end(slice);
      return;
    }
    case 'etag-changes': return partial(midMerge ? { ETag: '"v2"' } : {}, slice);
    case 'size-changes': {
      if (!midMerge) return partial({}, slice);
      response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength + 64}`, 'Content-Length': slice.byteLength });
      return void response.end(slice);
    }
    case 'stall':
      if (!midMerge) return partial({}, slice);
      // Headers and half the body, then nothing.
      response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': slice.byteLength });
      return void response.write(slice.subarray(0, slice.byteLength >> 1));
    case 'error-500': return midMerge ? void response.writeHead(500).end() : partial({}, slice);
    case 'gzip': {
      // A server that compresses what it sends: ranges of the compressed stream.
      const gz = gzipSync(body);
      response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${gz.byteLength}`, 'Content-Length': end - start + 1, 'Content-Encoding': 'gzip' });
      return void response.end(gz.subarray(start, end + 1));
    }
    default: return partial({}, slice);
  }
}

beforeAll(async () => {
  server = createServer((request, response) => {
    const [, mode, ...rest] = (request.url ?? '').split('/') as [string, Mode, ...string[]];
    const path = rest.join('/');
    if (mode === 'loop') return void response.writeHead(302, { Location: request.url }).end();
    // A gated Hugging Face file asks for a login; a file that is not there.
    if (mode === 'gated') return void response.writeHead(401).end();
    if (mode === 'gone') return void response.writeHead(404).end();
    if (mode === 'spa' || mode === 'spa-ranges') {
      // A single-page app's server: every path is its page, 200 (or, asked for a range, 206 of the page).
      const page = new TextEncoder().encode(`<!doctype html><html><head><title>app</title></head><body>${'<div></div>'.repeat(200)}</body></html>`);
      const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
      const headers = { 'Content-Type': 'text/html; charset=utf-8' };
      if (mode === 'spa-ranges' && range) {
        const [start, end] = [Number(range[1]), Math.min(Number(range[2]), page.byteLength - 1)];
        return void response.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${page.byteLength}`, 'Content-Length': end - start + 1 }).end(page.subarray(start, end + 1));
      }
      return void response.writeHead(200, { ...headers, 'Content-Length': page.byteLength }).end(request.method === 'HEAD' ? undefined : page);
    }
    if (mode === 'big-config') {
      // Chunked, with no length to refuse up front.
      response.writeHead(200);
      const chunk = new Uint8Array(1 << 20).fill(0x20);
      for (let i = 0; i <= MAX_CONFIG_BYTES >> 20; i++) response.write(chunk);
      return void response.end();
    }
    const body = path === 'llama.safetensors' ? base : fixture.files[path] !== undefined ? bytesOf(fixture.files[path]) : undefined;
    if (!body) return void response.writeHead(404).end();
    if (mode.startsWith('config-206') && path.endsWith('.json') && !request.headers.range && request.method === 'GET') {
      // A GET of the whole config answered 206 Partial Content: of all its bytes, of only the
      // first 40, with no Content-Range at all or one naming no range (what it holds cannot be
      // told), or all its bytes gzip-compressed (the range counting the compressed ones).
      if (mode === 'config-206-gzip') {
        const gz = gzipSync(body);
        return void response.writeHead(206, { 'Content-Range': `bytes 0-${gz.byteLength - 1}/${gz.byteLength}`, 'Content-Length': gz.byteLength, 'Content-Encoding': 'gzip' }).end(gz);
      }
      const end = mode === 'config-206-part' ? 39 : body.byteLength - 1;
      const range = mode === 'config-206-bare' ? {} : { 'Content-Range': mode === 'config-206-unreadable' ? `bytes */${body.byteLength}` : `bytes 0-${end}/${body.byteLength}` };
      return void response.writeHead(206, { ...range, 'Content-Length': end + 1 }).end(body.subarray(0, end + 1));
    }
    if (request.headers.range) return serveRange(path === 'llama.safetensors' ? mode : 'ok', request, response, body);
    if (mode === 'gzip-head' && request.method === 'HEAD') {
      // A server that compresses whole responses but serves ranges as they are: the HEAD's length is the compressed body's.
      return void response.writeHead(200, { 'Content-Length': gzipSync(body).byteLength, 'Content-Encoding': 'gzip', ETag: '"v1"' }).end();
    }
    response.writeHead(200, { 'Content-Length': body.byteLength, ETag: '"v1"' });
    response.end(request.method === 'HEAD' ? undefined : body);
  });
  origin = `http://127.0.0.1:${await listenLocally(server)}`;
});

afterAll(async () => {
  await closeServer(server);
  dirs.removeAll();
});

const adapterUrls = (mode: Mode) => ['adapter_config.json', 'adapter_model.safetensors'].map((f) => `${origin}/${mode}/llama-lora/${f}`);

async function mergeFrom(mode: Mode, extra: { signal?: AbortSignal } = {}) {
  const dir = dirs.make();
  const out = join(dir, 'merged.safetensors');
  const result = merge({ base: `${origin}/${mode}/llama.safetensors`, adapters: [adapterUrls(mode)], out, backend: 'cpu', ...extra });
  return { result, dir, out };
}

describe('merge() from misbehaving servers', () => {
  it('merges exactly from a server that behaves (the control)', async () => {
    const { result, out } = await mergeFrom('ok');
    await result;
    checkMerged(new Uint8Array(readFileSync(out)), readSafetensors(base), [{ tensors: readSafetensors(fixture.adapter), scale: fixture.alpha / fixture.rank }]);
  });

  it('takes the size from a range when the HEAD answers compressed, and merges exactly', async () => {
    const { result, out } = await mergeFrom('gzip-head');
    await result;
    checkMerged(new Uint8Array(readFileSync(out)), readSafetensors(base), [{ tensors: readSafetensors(fixture.adapter), scale: fixture.alpha / fixture.rank }]);
  });

  it.each<[Mode, string, RegExp]>([
    ['no-range', 'UNSUPPORTED_FORMAT', /: the server ignored a Range request \(HTTP 200 instead of 206\); download the file first$/],
    ['long-length', 'NOT_FOUND', /: the response broke off while sending bytes \d+–\d+ \(.+\)$/],
    ['short-length', 'TRUNCATED', /: got \d+ of \d+ bytes for bytes \d+–\d+$/],
    ['etag-changes', 'INPUT_CHANGED', /: changed on the server while it was read \(ETag "v1" → "v2"\); nothing was written; try again once it stays unchanged$/],
    ['size-changes', 'INPUT_CHANGED', /: changed on the server while it was read \(\d+ → \d+ bytes\); nothing was written/],
    ['loop', 'NOT_FOUND', /: could not be fetched for its size \(HEAD\) \(redirect count exceeded\)$/],
    ['error-500', 'NOT_FOUND', /: HTTP 500 Internal Server Error for bytes \d+–\d+; the server is busy or failing: try again later$/],
    ['gated', 'NOT_FOUND', /: HTTP 401 Unauthorized for its size \(HEAD\); the file needs a login or a fresh link \(a gated model\): download it with your account and give the file instead$/],
    ['gone', 'NOT_FOUND', /: HTTP 404 Not Found for its size \(HEAD\); check the URL$/],
    ['spa', 'NOT_FOUND', /: the server answered with a web page \(Content-Type: text\/html\), not the file; check the URL \(a site that answers every path with its page sends one for a file it does not have\)$/],
    ['spa-ranges', 'NOT_FOUND', /: the server answered with a web page \(Content-Type: text\/html\), not the file; check the URL/],
    ['gzip', 'UNSUPPORTED_FORMAT', /: the server compressed a byte range \(Content-Encoding: gzip\), so its offsets are not the file's; serve the file uncompressed$/],
  ])('%s: one error naming the URL, nothing written', async (mode, code, message) => {
    const { result, dir } = await mergeFrom(mode);
    const error = await result.then(() => undefined, (e: unknown) => e as { code: string; message: string });
    expect(error).toMatchObject({ code });
    expect(error!.message.startsWith(`${origin}/${mode}/llama.safetensors: `)).toBe(true);
    expect(error!.message).toMatch(message);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a stalled response is cancelled by the merge\'s AbortSignal at once', async () => {
    const controller = new AbortController();
    const { result, dir } = await mergeFrom('stall', { signal: controller.signal });
    const started = Date.now();
    setTimeout(() => controller.abort(), 300);
    await expect(result).rejects.toMatchObject({ code: 'ABORTED' });
    // Not the idle timeout's 60 s: 0.35 s when measured; the bound leaves a loaded machine room.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('without a signal, a stalled response is given up after the idle timeout, naming the URL', async () => {
    const dir = dirs.make();
    const url = `${origin}/stall/llama.safetensors`;
    const started = Date.now();
    const result = merge({
      base: urlInputFileSet([url], undefined, { idleTimeoutMs: 400 }), adapters: [adapterUrls('ok')], out: join(dir, 'merged.safetensors'), backend: 'cpu',
    });
    await expect(result).rejects.toMatchObject({ code: 'TRUNCATED', message: expect.stringMatching(new RegExp(`^${url}: the server sent nothing for 0.4 s while sending bytes \\d+–\\d+; gave up`)) });
    expect(Date.now() - started).toBeLessThan(30_000); // 0.42 s when measured; the default idle timeout is 60 s
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a config that is a site\'s web page is refused as one, naming the URL, not read as JSON', async () => {
    const url = `${origin}/spa/llama-lora/adapter_config.json`;
    await expect(urlInputFileSet([url]).readText('adapter_config.json')).rejects.toMatchObject({
      code: 'NOT_FOUND', message: expect.stringMatching(new RegExp(`^${url}: the server answered with a web page \\(Content-Type: text/html\\), not the file; check the URL`)),
    });
  });

  it.each<Mode>(['config-206-whole', 'config-206-gzip'])('%s: a config whose whole-file GET is answered 206 with every byte (Content-Range 0 to the end, compressed or not) is read, and merges exactly', async (mode) => {
    const { result, out } = await mergeFrom(mode);
    await result;
    checkMerged(new Uint8Array(readFileSync(out)), readSafetensors(base), [{ tensors: readSafetensors(fixture.adapter), scale: fixture.alpha / fixture.rank }]);
  });

  it.each<[Mode, string]>([
    ['config-206-part', 'the server sent bytes 0–39 of its \\d+ \\(HTTP 206 Partial Content\\) when asked for the whole file'],
    ['config-206-bare', 'the server sent part of the file \\(HTTP 206 Partial Content, without a Content-Range\\) when asked for the whole file'],
    ['config-206-unreadable', 'the server sent part of the file \\(HTTP 206 Partial Content, with a Content-Range that names no byte range\\) when asked for the whole file'],
  ])('%s: a config answered 206 with only part of it is refused in one line naming the URL, not read as JSON; nothing written', async (mode, why) => {
    const { result, dir } = await mergeFrom(mode);
    const error = await result.then(() => undefined, (e: unknown) => e as { code: string; message: string });
    const url = `${origin}/${mode}/llama-lora/adapter_config.json`;
    expect(error).toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
    expect(error!.message).toMatch(new RegExp(`^${url}: ${why}; serve it whole \\(HTTP 200\\) or download the file first$`));
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a config past MAX_CONFIG_BYTES is refused while it downloads, not read whole', async () => {
    const url = `${origin}/big-config/adapter_config.json`;
    await expect(urlInputFileSet([url]).readText('adapter_config.json')).rejects.toMatchObject({
      code: 'LIMIT_EXCEEDED', message: `${url}: more than ${MAX_CONFIG_BYTES} bytes is too large for a config or index (the limit MAX_CONFIG_BYTES is ${MAX_CONFIG_BYTES})`,
    });
  });
});

/**
 * A browser's fetch as WebIDL defines it: called with a `this` other than the global object (or
 * none), it throws, as Chromium's "Failed to execute 'fetch' on 'WorkerGlobalScope': Illegal invocation".
 */
function browserLikeFetch(): typeof fetch {
  const nodeFetch = globalThis.fetch;
  return function fetch(this: unknown, input: RequestInfo | URL, init?: RequestInit) {
    if (this !== undefined && this !== globalThis) throw new TypeError("Failed to execute 'fetch' on 'WorkerGlobalScope': Illegal invocation");
    return nodeFetch(input, init);
  };
}

describe('the browser entry with a browser\'s fetch', () => {
  const scale = fixture.alpha / fixture.rank;

  it('merges URLs exactly with the global fetch, which must not be called as a method of anything else', async () => {
    vi.stubGlobal('fetch', browserLikeFetch());
    try {
      const { blobs } = await browserMerge({ base: `${origin}/ok/llama.safetensors`, adapters: [adapterUrls('ok')], backend: 'cpu' });
      expect(blobs.map((b) => b.path)).toEqual(['llama.safetensors']);
      checkMerged(new Uint8Array(await blobs[0].blob.arrayBuffer()), readSafetensors(base), [{ tensors: readSafetensors(fixture.adapter), scale }]);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('merges with a page\'s own `window.fetch` passed as the fetch option', async () => {
    const fetch = browserLikeFetch();
    const { blobs } = await browserMerge({
      base: urlInputFileSet([`${origin}/ok/llama.safetensors`], undefined, { fetch }), adapters: [urlInputFileSet(adapterUrls('ok'), 'llama-lora', { fetch })], backend: 'cpu',
    });
    checkMerged(new Uint8Array(await blobs[0].blob.arrayBuffer()), readSafetensors(base), [{ tensors: readSafetensors(fixture.adapter), scale }]);
  });
});

describe('strings that are no absolute URL', () => {
  it('without a location (Node) one is refused naming it and where paths go, not as a bare "Invalid URL"', () => {
    const refusal = (() => {
      try {
        urlInputFileSet(['llama-lora/adapter_model.safetensors']);
      } catch (e) {
        return e as { code?: string; message: string };
      }
      return undefined;
    })();
    expect(refusal?.code).toBe('BAD_ARGUMENT');
    expect(refusal?.message).toMatch(/^"llama-lora\/adapter_model\.safetensors" is not a URL; a path is opened with openNodeInputFileSet \(loramerge\/node\)/);
  });

  it('in a page or worker one is fetched relative to its location, as fetch itself resolves it', async () => {
    const fetched: string[] = [];
    const fetchFn = async (input: RequestInfo | URL) => {
      fetched.push(String(input));
      return new Response('{"r": 8}', { headers: { 'content-length': '8' } });
    };
    const scope = globalThis as { location?: { href: string } };
    scope.location = { href: 'https://models.example/app/index.html' };
    try {
      const files = urlInputFileSet(['llama-lora/adapter_config.json'], 'llama-lora', fetchFn);
      expect(files.list()).toEqual(['adapter_config.json']);
      expect(await files.readText('adapter_config.json')).toBe('{"r": 8}');
    } finally {
      delete scope.location;
    }
    expect(fetched).toEqual(['https://models.example/app/llama-lora/adapter_config.json']);
  });

  it('takes a URL of another scheme only with a fetch of the caller\'s own (the global one reads http and https)', async () => {
    const fetched: string[] = [];
    const fetchFn = async (input: RequestInfo | URL) => {
      fetched.push(String(input));
      return new Response('{"r": 8}', { headers: { 'content-length': '8' } });
    };
    const url = 'ftp://models.example/lora/adapter_config.json';
    expect(() => urlInputFileSet([url], 'lora')).toThrow(/^ftp:\/\/models\.example\/lora\/adapter_config\.json: only http:\/\/ and https:\/\/ URLs are read/);
    for (const options of [fetchFn, { fetch: fetchFn }]) {
      expect(await urlInputFileSet([url], 'lora', options).readText('adapter_config.json')).toBe('{"r": 8}');
    }
    expect(fetched).toEqual([url, url]);
  });
});
