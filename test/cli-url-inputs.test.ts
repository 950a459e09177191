/**
 * The command line with http(s) URLs as inputs, against a local server: a URL is one remote file,
 * read by Range requests, merged exactly as the same file on disk would be (float64 truth written
 * out below), from a server that refuses HEAD too; `inspect URL` describes it; a server that
 * ignores Range requests or answers another range, a file that changes on the server, a URL as
 * --out, a scheme other than http(s) and a lone PEFT weights file are each refused in one line with
 * nothing left at --out, and so is an adapter whose α values the server fails to send to inspect;
 * Ctrl-C ends a merge whose server has stopped sending at once, not after the idle timeout.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCommandLine } from '../src/cli/run-cli.js';
import { errorLines, expectOneLine, listDir, runCli, runCliActingAtStart } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, randomValues, seededRandom, tempDirs } from './helpers/fixtures.js';
import { readGguf, tensorValues } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, splitF16Llama, truthWithLora } from './helpers/gguf-models.js';
import { SDXL_NAMES } from './helpers/page-fixtures.js';
import { kohyaKey, PAIR_ALPHA, PAIR_RANK, sdxlKohyaPair } from './helpers/sdxl-kohya-pair.js';
import { closeServer, listenLocally } from './helpers/local-server.js';

// The idle timeout (60 s) made short for the in-process run below; the built CLI keeps its own.
vi.mock('../src/limits.js', async (importOriginal) => ({ ...(await importOriginal<typeof import('../src/limits.js')>()), URL_IDLE_TIMEOUT_MS: 400 }));

const temp = tempDirs();

// A single-file diffusers UNet (F16) and a kohya LoRA on it: r = 2, α = 3 per module.
const DIM = 12, RANK = PAIR_RANK, ALPHA = PAIR_ALPHA;
const { base: BASE, kohya: KOHYA, mergedTruth } = sdxlKohyaPair(DIM, 20261205);
const rand = seededRandom(20261207);
// A PEFT save's weights without their adapter_config.json.
const PEFT_WEIGHTS = buildSafetensors([
  { name: `base_model.model.${SDXL_NAMES[0].replace(/\.weight$/, '')}.lora_A.weight`, dtype: 'F32', shape: [RANK, DIM], data: randomValues(RANK * DIM, rand, 0.3) },
  { name: `base_model.model.${SDXL_NAMES[0].replace(/\.weight$/, '')}.lora_B.weight`, dtype: 'F32', shape: [DIM, RANK], data: randomValues(DIM * RANK, rand, 0.3) },
]);
const SPLIT = splitF16Llama();
const GGUF_LORA = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 4, in: LLAMA.hidden, out: 128, aType: 'F32', bType: 'F16' }], 8);

/** What the server holds, by decoded file name. */
const FILES: Record<string, Uint8Array> = {
  'sdxl unet.safetensors': BASE,
  'style lora.safetensors': KOHYA,
  'adapter_model.safetensors': PEFT_WEIGHTS,
  'lora.gguf': GGUF_LORA.bytes,
  ...SPLIT.files,
};

/** The end of the base's header: ranges from here on are tensor data, read while merging. */
const BASE_DATA_START = 8 + Number(new DataView(BASE.buffer, BASE.byteOffset).getBigUint64(0, true));
const KOHYA_DATA_START = 8 + Number(new DataView(KOHYA.buffer, KOHYA.byteOffset).getBigUint64(0, true));

/**
 * How the server answers, by the first path segment: `ok`; `no-range` sends the whole file (200)
 * to a Range request; `stall` answers a range of the base's tensor data with its headers and half
 * its bytes, then nothing; `no-head` refuses HEAD (405 Method Not Allowed) but serves ranges;
 * `shifted` answers a range of the base's tensor data with the range one byte further on, as its
 * Content-Range says; `changing` answers ranges with another ETag than HEAD's; `data-404`
 * answers 404 to the ranges of the kohya adapter's tensor data (its α values are read first), and
 * `data-416` 416 Range Not Satisfiable (as a server whose file became shorter does); `weak-etag`
 * answers ranges with HEAD's ETag weakened (`W/"v1"`), as some servers and proxies do for the
 * same bytes.
 */
type Mode = 'ok' | 'no-range' | 'stall' | 'no-head' | 'shifted' | 'changing' | 'data-404' | 'data-416' | 'weak-etag';
const requests = new Map<string, number>();
let server: Server;
let origin: string;

function answer(mode: Mode, name: string, request: IncomingMessage, response: ServerResponse): void {
  const body = FILES[name];
  if (!body) return void response.writeHead(404).end();
  if (mode === 'no-head' && request.method === 'HEAD') return void response.writeHead(405, { Allow: 'GET' }).end();
  const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
  if (!range) {
    response.writeHead(200, { 'Content-Length': body.byteLength, ETag: '"v1"' });
    return void response.end(request.method === 'HEAD' ? undefined : body);
  }
  if (mode === 'no-range') return void response.writeHead(200, { 'Content-Length': body.byteLength }).end(body);
  let [start, end] = [Number(range[1]), Number(range[2])];
  if (mode === 'data-404' && body === KOHYA && start >= KOHYA_DATA_START) return void response.writeHead(404).end();
  if (mode === 'data-416' && body === KOHYA && start >= KOHYA_DATA_START) return void response.writeHead(416, { 'Content-Range': `bytes */${KOHYA_DATA_START}` }).end();
  if (mode === 'shifted' && body === BASE && start >= BASE_DATA_START && end + 1 < body.byteLength) [start, end] = [start + 1, end + 1];
  const slice = body.subarray(start, end + 1);
  response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': slice.byteLength, ETag: mode === 'changing' ? '"v2"' : mode === 'weak-etag' ? 'W/"v1"' : '"v1"' });
  if (mode === 'stall' && body === BASE && start >= BASE_DATA_START) return void response.write(slice.subarray(0, slice.byteLength >> 1));
  response.end(slice);
}

beforeAll(async () => {
  server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://x');
    const [, mode, ...rest] = url.pathname.split('/');
    requests.set(mode, (requests.get(mode) ?? 0) + 1);
    answer(mode as Mode, decodeURIComponent(rest.join('/')), request, response);
  });
  origin = `http://127.0.0.1:${await listenLocally(server)}`;
});

afterAll(async () => {
  await closeServer(server);
  temp.removeAll();
});

const baseUrl = (mode: Mode) => `${origin}/${mode}/sdxl%20unet.safetensors?download=true#main`;
const kohyaUrl = (mode: Mode) => `${origin}/${mode}/style%20lora.safetensors`;


describe('loramerge with URL inputs', () => {
  it('merges a URL base and a URL kohya adapter exactly; an --out folder gets the URL\'s file name, decoded, without query', async () => {
    const dir = temp.make();
    const run = await runCli(['merge', '--base', baseUrl('ok'), '--adapter', kohyaUrl('ok'), '--weight', '0.5', '--out', `${dir}/`, '--backend', 'cpu']);
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code).toBe(0);
    expect(listDir(dir)).toEqual(['sdxl unet.safetensors']);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(join(dir, 'sdxl unet.safetensors')))).tensors;
    const truth = mergedTruth(0.5);
    expect([...merged.keys()].sort()).toEqual([...SDXL_NAMES].sort());
    for (const name of SDXL_NAMES) {
      expect(merged.get(name)!.dtype, name).toBe('F16');
      expect(Array.from(merged.get(name)!.values), name).toEqual(Array.from(truth.get(name)!));
    }
  });

  it('a server that refuses HEAD (405) but serves ranges: the size comes from a one-byte range, and the merge is exact', async () => {
    const dir = temp.make();
    const out = join(dir, 'm.safetensors');
    const run = await runCli(['merge', '--base', baseUrl('no-head'), '--adapter', kohyaUrl('no-head'), '--out', out, '--backend', 'cpu']);
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code).toBe(0);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    const truth = mergedTruth(1);
    for (const name of SDXL_NAMES) expect(Array.from(merged.get(name)!.values), name).toEqual(Array.from(truth.get(name)!));
  });

  it('merges a llama.cpp LoRA .gguf URL into a split GGUF named by one part URL, writing the same parts', async () => {
    const dir = temp.make();
    const out = join(dir, 'merged');
    const run = await runCli(['merge', '--base', `${origin}/ok/tiny-llama-F16-00002-of-00002.gguf`, '--adapter', `${origin}/ok/lora.gguf`, '--weight', '-1', '--out', out, '--backend', 'cpu']);
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code).toBe(0);
    expect(listDir(out)).toEqual(Object.keys(SPLIT.files));
    const part1 = readGguf(readFileSync(join(out, 'tiny-llama-F16-00001-of-00002.gguf')));
    const got = tensorValues('F16', part1.tensors.find((t) => t.name === 'blk.0.attn_v.weight')!.data);
    // α = 8, r = 4, weight -1; rounded once to F16: within half an F16 step (of the truth's binade).
    const want = truthWithLora(SPLIT.tensors.get('blk.0.attn_v.weight')!.values, 128, LLAMA.hidden, GGUF_LORA.factors.get('blk.0.attn_v.weight')!, -8 / 4, false);
    for (let i = 0; i < want.length; i++) {
      const step = 2 ** Math.max(Math.floor(Math.log2(Math.abs(want[i]))) - 10, -24);
      expect(Math.abs(got[i] - want[i]), `element ${i}`).toBeLessThanOrEqual(step / 2);
    }
  });

  it('a server that weakens the ETag in its range answers (W/"v1" for HEAD\'s "v1"): the same file, merged exactly', async () => {
    const dir = temp.make();
    const out = join(dir, 'merged.safetensors');
    const run = await runCli(['merge', '--base', baseUrl('weak-etag'), '--adapter', kohyaUrl('weak-etag'), '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    for (const [name, want] of mergedTruth(1)) expect(Array.from(merged.get(name)!.values), name).toEqual(Array.from(want));
  });

  it('inspect describes a URL adapter and a URL base', async () => {
    const adapter = await runCli(['inspect', kohyaUrl('ok')]);
    expect(adapter.code, adapter.stderr).toBe(0);
    expect(adapter.stdout).toMatch(new RegExp(`^${kohyaUrl('ok')}: kohya/LyCORIS LoRA \\(4 modules\\)`));
    expect(adapter.stdout).toContain(`${kohyaKey(SDXL_NAMES[0])}  r=2 α=3 scale=1.5`);
    const base = await runCli(['inspect', baseUrl('ok')]);
    expect(base.code, base.stderr).toBe(0);
    // One file, though its URL's query and escapes keep the name from ending in the file's.
    expect(base.stdout).toMatch(/: base model \(file\)\n/);
    expect(base.stdout).toContain('tensors: 4, ');
    expect(base.stdout).toContain('files: sdxl unet.safetensors');
  });

  it('combine reads a URL adapter: its one module\'s update is w·α/r·B·A', async () => {
    const dir = temp.make();
    const out = join(dir, 'combined.safetensors');
    const run = await runCli(['combine', '--adapter', kohyaUrl('ok'), '--weight', '0.5', '--method', 'cat', '--out', out, '--backend', 'cpu']);
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code).toBe(0);
    const combined = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    const lora = decodeSafetensors(KOHYA).tensors;
    for (const name of SDXL_NAMES) {
      const key = kohyaKey(name);
      const [down, up] = [combined.get(`${key}.lora_down.weight`)!, combined.get(`${key}.lora_up.weight`)!];
      const r = down.shape[0];
      const scale = (combined.get(`${key}.alpha`)?.values[0] ?? r) / r;
      const [wantDown, wantUp] = [lora.get(`${key}.lora_down.weight`)!.values, lora.get(`${key}.lora_up.weight`)!.values];
      for (let o = 0; o < DIM; o++) {
        for (let i = 0; i < DIM; i++) {
          let got = 0, want = 0;
          for (let k = 0; k < r; k++) got += up.values[o * r + k] * down.values[k * DIM + i];
          for (let k = 0; k < RANK; k++) want += wantUp[o * RANK + k] * wantDown[k * DIM + i];
          // f32 factors: a few units in the last place of the products' sum.
          expect(Math.abs(scale * got - 0.5 * ALPHA / RANK * want), `${key} [${o}, ${i}]`).toBeLessThan(1e-6);
        }
      }
    }
  });
});

describe('refusals of URL inputs and outputs', () => {
  it('a server that ignores Range requests: one line naming the URL, exit 1, nothing at --out', async () => {
    const dir = temp.make();
    const run = await runCli(['merge', '--base', baseUrl('no-range'), '--adapter', kohyaUrl('ok'), '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expectOneLine(run.stderr, /^error: http:\/\/127\.0\.0\.1:\d+\/no-range\/sdxl%20unet\.safetensors\?download=true#main: the server ignored a Range request \(HTTP 200 instead of 206\); download the file first$/);
    expect(run.code).toBe(1);
    expect(listDir(dir)).toEqual([]);
  });

  it('a server that answers another range than the one asked for: one line naming the URL and both ranges, exit 1, nothing at --out', async () => {
    const dir = temp.make();
    const run = await runCli(['merge', '--base', baseUrl('shifted'), '--adapter', kohyaUrl('ok'), '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expectOneLine(run.stderr, /^error: http:\/\/127\.0\.0\.1:\d+\/shifted\/sdxl%20unet\.safetensors\?download=true#main: the server sent bytes (\d+)–(\d+) when asked for bytes \d+–\d+; download the file first$/);
    const [from, to, asked, askedEnd] = /sent bytes (\d+)–(\d+) when asked for bytes (\d+)–(\d+)/.exec(run.stderr)!.slice(1).map(Number);
    expect([from, to]).toEqual([asked + 1, askedEnd + 1]);
    expect(run.code).toBe(1);
    expect(listDir(dir)).toEqual([]);
  });

  it('inspect of a URL adapter whose tensor data the server refuses: the HTTP error, exit 1 (not the adapter described as a base model)', async () => {
    const run = await runCli(['inspect', kohyaUrl('data-404')]);
    expectOneLine(run.stderr, /^error: http:\/\/127\.0\.0\.1:\d+\/data-404\/style%20lora\.safetensors: HTTP 404 Not Found for bytes \d+–\d+; check the URL$/);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
  });

  it('a range the server cannot satisfy (HTTP 416): one line naming the URL and that the file became shorter, exit 1, nothing at --out', async () => {
    const dir = temp.make();
    const run = await runCli(['merge', '--base', baseUrl('ok'), '--adapter', kohyaUrl('data-416'), '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expectOneLine(run.stderr, /^error: http:\/\/127\.0\.0\.1:\d+\/data-416\/style%20lora\.safetensors: HTTP 416 Range Not Satisfiable for bytes \d+–\d+; the file on the server is shorter than when it was first read: it changed, so try again once it stays unchanged$/);
    expect(run.code).toBe(1);
    expect(listDir(dir)).toEqual([]);
  });

  it.each([
    ['inspect', (dir: string) => ['inspect', kohyaUrl('changing')]],
    ['resize', (dir: string) => ['resize', '--adapter', kohyaUrl('changing'), '--rank', '1', '--out', join(dir, 'r.safetensors')]],
  ])('%s of a URL that changes on the server: one line that speaks of no merge, exit 1, nothing at --out', async (_, args) => {
    const dir = temp.make();
    const run = await runCli(args(dir));
    expectOneLine(run.stderr, /^error: http:\/\/127\.0\.0\.1:\d+\/changing\/style%20lora\.safetensors: changed on the server while it was read \(ETag "v1" → "v2"\); nothing was written; try again once it stays unchanged$/);
    expect(run.code).toBe(1);
    expect(listDir(dir)).toEqual([]);
  });

  it.each([
    ['merge', (out: string) => ['merge', '--base', baseUrl('ok'), '--adapter', kohyaUrl('ok'), '--out', out, '--backend', 'cpu']],
    ['resize', (out: string) => ['resize', '--adapter', kohyaUrl('ok'), '--rank', '1', '--out', out]],
  ])('%s: a URL as --out is a usage error (exit 2) before any input is read', async (_, args) => {
    const before = requests.get('ok') ?? 0;
    const run = await runCli(args(`${origin}/ok/merged.safetensors`));
    expectOneLine(run.stderr, /^error: http:\/\/127\.0\.0\.1:\d+\/ok\/merged\.safetensors: --out is a URL; the output is written to disk, so give a path for it$/);
    expect(run.code).toBe(2);
    expect(requests.get('ok') ?? 0).toBe(before);
  });

  it.each([
    [['merge', '--base', 'ftp://models.example/sdxl.safetensors', '--adapter', 'lora.safetensors', '--out', 'OUT'],
      /^error: ftp:\/\/models\.example\/sdxl\.safetensors: --base reads only http:\/\/ and https:\/\/ URLs, not ftp:\/\/; download the file and give its path$/],
    [['merge', '--base', 'BASE', '--adapter', 'file:///models/my%20lora.safetensors', '--out', 'OUT'],
      /^error: file:\/\/\/models\/my%20lora\.safetensors: --adapter takes a path or an http\(s\) URL, not a file:\/\/ URL; give the path \/models\/my lora\.safetensors instead$/],
    [['inspect', 'ftp://models.example/lora.safetensors'],
      /^error: ftp:\/\/models\.example\/lora\.safetensors: inspect reads only http:\/\/ and https:\/\/ URLs, not ftp:\/\/; download the file and give its path$/],
    [['extract', '--base', 'BASE', '--tuned', 'ftp://models.example/tuned.safetensors', '--rank', '2', '--out', 'OUT'],
      /^error: ftp:\/\/models\.example\/tuned\.safetensors: --tuned reads only http:\/\/ and https:\/\/ URLs, not ftp:\/\/; download the file and give its path$/],
  ])('%j: another scheme is a usage error (exit 2) naming the URL', async (args, message) => {
    const dir = temp.make({ 'base.safetensors': BASE, 'lora.safetensors': KOHYA });
    const local = (a: string) => (a === 'BASE' ? join(dir, 'base.safetensors') : a === 'OUT' ? join(dir, 'out.safetensors') : a === 'lora.safetensors' ? join(dir, a) : a);
    const run = await runCli(args.map(local));
    expectOneLine(run.stderr, message);
    expect(run.code).toBe(2);
    expect(listDir(dir)).toEqual(['base.safetensors', 'lora.safetensors']);
  });

  it.each([
    ['a folder', () => ['inspect', `${origin}/ok/`],
      () => new RegExp(`^error: ${origin}/ok/: names a folder; inspect takes the URL of one file \\(such as …/resolve/main/model\\.safetensors\\), or download the folder and give its path$`)],
    ['a Hugging Face file page', () => ['merge', '--base', 'https://huggingface.co/org/model/blob/main/model.safetensors?download=true', '--adapter', kohyaUrl('ok'), '--out', 'merged.safetensors'],
      () => /^error: https:\/\/huggingface\.co\/org\/model\/blob\/main\/model\.safetensors\?download=true: is Hugging Face's web page about the file, not the file; give its download link https:\/\/huggingface\.co\/org\/model\/resolve\/main\/model\.safetensors\?download=true$/],
    ['a split GGUF of more parts than a folder may hold files', () => ['inspect', `${origin}/ok/huge-00001-of-99999.gguf`],
      () => new RegExp(`^error: ${origin}/ok/huge-00001-of-99999\\.gguf: names 99999 parts, more than 10000 \\(the limit MAX_INPUT_FILES\\); download the parts and give one's path$`)],
  ])('a URL of %s is a usage error (exit 2) saying what to give instead, before any request', async (_, args, message) => {
    const before = requests.get('ok') ?? 0;
    const run = await runCli(args());
    expectOneLine(run.stderr, message());
    expect(run.code).toBe(2);
    expect(requests.get('ok') ?? 0).toBe(before);
  });

  it('a PEFT adapter_model.safetensors URL without its config: one line naming the URL and what to do, nothing at --out', async () => {
    const dir = temp.make();
    const url = `${origin}/ok/adapter_model.safetensors`;
    const run = await runCli(['merge', '--base', baseUrl('ok'), '--adapter', url, '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expectOneLine(run.stderr, new RegExp(`^error: ${url}: is a PEFT adapter's weights, which need its adapter_config\\.json \\(r and lora_alpha\\) beside them; a URL is read as one file, so download both into a folder and give the folder's path$`));
    expect(run.code).toBe(1);
    expect(listDir(dir)).toEqual([]);
  });

  it('a server that stops sending is given up after the idle timeout: one line naming the URL, exit 1, nothing at --out', async () => {
    const dir = temp.make();
    const err: string[] = [];
    const started = Date.now();
    const code = await runCommandLine(
      ['merge', '--base', baseUrl('stall'), '--adapter', kohyaUrl('ok'), '--out', join(dir, 'm.safetensors'), '--backend', 'cpu'],
      { out: () => undefined, err: (line) => err.push(line) },
    );
    expect(code).toBe(1);
    expect(errorLines(err.join('\n'))).toEqual([
      expect.stringMatching(new RegExp(`^error: ${origin}/stall/sdxl%20unet\\.safetensors\\?download=true#main: the server sent nothing for 0\\.4 s while sending bytes \\d+–\\d+; gave up \\(check the server or the connection\\)$`)),
    ]);
    expect(Date.now() - started).toBeLessThan(30_000); // 0.74 s when measured; the built-in idle timeout is 60 s
    expect(readdirSync(dir)).toEqual([]);
  });

  it('Ctrl-C while the server has stopped sending: the request is cancelled at once, exit 130, nothing at --out', async () => {
    const dir = temp.make();
    const started = Date.now();
    const run = await runCliActingAtStart(
      ['merge', '--base', baseUrl('stall'), '--adapter', kohyaUrl('ok'), '--out', join(dir, 'm.safetensors'), '--backend', 'cpu'],
      // Past the plan and into the reads of tensor data, which the server leaves hanging.
      (child) => setTimeout(() => child.kill('SIGINT'), 500),
    );
    expect(run.code, run.stderr).toBe(130);
    expect(errorLines(run.stderr)).toEqual([`error: merge cancelled; nothing was written to ${join(dir, 'm.safetensors')}`]);
    // The idle timeout is 60 s: a merge that waited for it would take that long. 1.6 s when measured,
    // the CLI's start included; the bound leaves a loaded machine room.
    expect(Date.now() - started).toBeLessThan(40_000);
    expect(readdirSync(dir)).toEqual([]);
  }, 90_000);
});
