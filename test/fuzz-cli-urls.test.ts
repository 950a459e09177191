/**
 * The command line's URL inputs, fuzzed: every command (merge, inspect, combine, resize, extract)
 * is given inputs that are http:// URLs served by a local server, paths on disk, or a mix, and the
 * server draws a behaviour for each file it serves:
 *   - correct (206 ranges with Content-Range and an ETag), or HEAD refused (405, 501) while GET ranges
 *     work, or HEAD answered compressed (its length is not the file's), or a redirect (301/302/307/
 *     308) to the same file on this server or another, served by any behaviour below;
 *   - at HEAD, at every range, or at the ranges of tensor data only: ignores Range (200 with the
 *     whole file), a Content-Length one byte short or long, a gzip-compressed range, an ETag, a
 *     Last-Modified date or a total size that changes, another range than the one asked for, HTTP 401/403/404/429/500, headers and half a body then nothing, or
 *     no answer at all (the idle timeout is made short for the in-process run);
 *   - a redirect loop;
 * and each URL is spelt in a drawn way: as is, `HTTP://`, with `#fragment`, `?download=true`, a
 * name that needs percent-escapes, a trailing slash, bad percent-escapes, `ftp://`, `file://`, one
 * part of a split GGUF (standing for both); --out a path, a folder, a folder that does not exist, or
 * a URL.
 * An adapter may also be a PEFT adapter on the Hugging Face Hub, by a URL spelt as its repository
 * (with a trailing slash or not), `tree/main`, `tree/REV/SUB` (a percent-encoded revision or
 * folder), the `resolve/…/adapter_model.safetensors` link (with `?download=true`), a `blob/` page
 * or with a bad escape (both refused before any request); on huggingface.co's host (the Hub's hosts
 * made `localhost:PORT`, reached through hubFetch; typed `https://`, `HTTPS://`, `http://` or with
 * `www.`) or on the mirror HF_ENDPOINT names (the local server at its root or under `/hub`; the
 * real process gets only these). Its two files each draw a behaviour: any of the above, or the config
 * absent (404: a weights link is then read alone, PEFT weights refused saying so, a kohya file of
 * that name merged; a repository or tree/ URL refused naming what was looked for), not JSON, an
 * HTML page or over MAX_CONFIG_BYTES; the weights absent; either gated (401/403 without the token).
 * HF_ENDPOINT (unset, the server's origin, or a path under it) and HF_TOKEN are drawn per case: the
 * token must reach exactly the requests hfTokenScope puts it on (the Hub's host over https,
 * HF_ENDPOINT's origin, plain URLs there too; none past a hop to the other server) and appear in
 * no output, and a 401/403's advice follows whether the token was sent, could have been, or not.
 * Each case works out, from what it drew, which fault the CLI meets first (the order it reads:
 * usage checks of --out; then each input in order, as typed, a Hub adapter's config fetched as it
 * is opened, before the next input is looked at; then the config parsed, and HEAD and the header
 * of each file in the order the inputs are given, a kohya adapter's α values with it; then --out's
 * folder; then tensor data, a Hub adapter's PEFT weights' among them) and so its exit code and a
 * pattern of its one error line, which names the URL typed or the file's URL as the CLI does. Every
 * case must then hold what the argument fuzz (fuzz-cli-args.test.ts) checks: one `error:` line at
 * most and last; no stack trace, `[object Object]`, `undefined` or `NaN`; the case's folder and the
 * input files on disk unchanged byte for byte after a refusal, no temporary or lock file left; a
 * merge's values against W + Σ w·α/r·B·A in float64 (a Hub adapter holds A's or B's factors under
 * PEFT's names, r and lora_alpha in its config), and combine (cat), resize and extract (full rank)
 * against their updates in float64.
 * `npm test` runs a bounded number of cases; `npm run fuzz` more (FUZZ_URL_RUNS, FUZZ_URL_CLI_RUNS,
 * FUZZ_SEED; FUZZ_PATH replays one case). Run `npm run build:lib` first: a few cases run the real
 * `loramerge` process.
 */
import fc from 'fast-check';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCommandLine } from '../src/cli/run-cli.js';
import { runCli, snapshot, type CliResult } from './helpers/cli.js';
import { fuzzSettings } from './helpers/cli-fuzz.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { readGguf, tensorValues } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, splitF16Llama, truthWithLora } from './helpers/gguf-models.js';
import { kohyaUpdates, relativeError } from './helpers/lora-truth.js';
import { expectMergedFile, type TruthTerm } from './helpers/merge-truth.js';
import { SDXL_NAMES } from './helpers/page-fixtures.js';
import type { Dense } from './helpers/svd-reference.js';
import { closeServer, listenLocally } from './helpers/local-server.js';
import { localFetch } from './helpers/hub-transport.js';
import { MAX_CONFIG_BYTES } from '../src/limits.js';

// The Hub's hosts (HF_TOKEN_HOSTS) made `localhost:PORT` of the local server: a Hub URL
// `https://localhost:PORT/…` reaches it through hubFetch below, as huggingface.co's would reach the Hub.
const hubHosts = vi.hoisted(() => [] as string[]);
vi.mock('../src/io/hf-token-hosts.js', () => ({ HF_TOKEN_HOSTS: hubHosts }));

// The idle timeout (60 s) made short for the in-process runs: a stalled response costs 2 s. Half a
// second was too short on a loaded machine: a case whose server (in this process) answered late was
// reported as a stall (seed 20261212, case 677, under a load average of 4 on 2 cores).
// MAX_CONFIG_BYTES made small too, so that a config over it costs little to serve (the real process
// keeps 32 MiB, and is drawn no such config).
vi.mock('../src/limits.js', async (importOriginal) => ({ ...(await importOriginal<typeof import('../src/limits.js')>()), URL_IDLE_TIMEOUT_MS: 2000, MAX_CONFIG_BYTES: 16384 }));
const IDLE_SECONDS = '2';

const settings = fuzzSettings('FUZZ_URL_RUNS', 'FUZZ_URL_CLI_RUNS', { runs: 150, cliRuns: 2 });
/** A case that has not ended after this long hangs (the slowest takes a few hundred ms). */
const HANG_MS = 15_000;

// --- the files, served and on disk ---------------------------------------------------------------

const DIM = 8;
const rand = seededRandom(20261205);
const kohyaKey = (name: string) => `lora_unet_${name.replace(/\.weight$/, '').replace(/\./g, '_')}`;
const BASE_VALUES = SDXL_NAMES.map(() => randomValues(DIM * DIM, rand, 0.5));
const BASE = buildSafetensors(SDXL_NAMES.map((name, i) => ({ name, dtype: 'F16' as const, shape: [DIM, DIM], data: BASE_VALUES[i] })));
// A fine-tune of the base: its first two tensors moved (extract finds those two).
const TUNED = buildSafetensors(SDXL_NAMES.map((name, i) => ({
  name, dtype: 'F16' as const, shape: [DIM, DIM], data: i < 2 ? BASE_VALUES[i].map((x, j) => x + 0.05 * Math.sin(j + i)) : BASE_VALUES[i],
})));
function kohya(rank: number, alpha: number, names: readonly string[]): Uint8Array {
  return buildSafetensors(names.flatMap((name): FixtureTensor[] => [
    { name: `${kohyaKey(name)}.lora_down.weight`, dtype: 'F32', shape: [rank, DIM], data: randomValues(rank * DIM, rand, 0.3) },
    { name: `${kohyaKey(name)}.lora_up.weight`, dtype: 'F32', shape: [DIM, rank], data: randomValues(DIM * rank, rand, 0.3) },
    { name: `${kohyaKey(name)}.alpha`, dtype: 'F32', shape: [], data: [alpha] },
  ]));
}
/** Two kohya LoRAs: r = 2, α = 3 on every module; r = 3, α = 1.5 on the first two. */
const ADAPTERS = { A: { bytes: kohya(2, 3, SDXL_NAMES), rank: 2 }, B: { bytes: kohya(3, 1.5, SDXL_NAMES.slice(0, 2)), rank: 3 } };
/**
 * A and B as PEFT adapters on the Hub (`adapter_config.json` + `adapter_model.safetensors`): the same
 * factors under PEFT's names, r and lora_alpha in the config, so their updates (and the float64
 * truth) are A's and B's.
 */
function peftOf(bytes: Uint8Array, rank: number, alpha: number, names: readonly string[], targets: string[]): { config: string; weights: Uint8Array } {
  const t = decodeSafetensors(bytes).tensors;
  const module = (name: string) => name.replace(/\.weight$/, '');
  return {
    config: JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: alpha, target_modules: targets, task_type: null }),
    weights: buildSafetensors(names.flatMap((name): FixtureTensor[] => [
      { name: `base_model.model.${module(name)}.lora_A.weight`, dtype: 'F32', shape: [rank, DIM], data: t.get(`${kohyaKey(name)}.lora_down.weight`)!.values },
      { name: `base_model.model.${module(name)}.lora_B.weight`, dtype: 'F32', shape: [DIM, rank], data: t.get(`${kohyaKey(name)}.lora_up.weight`)!.values },
    ]), { format: 'pt' }),
  };
}
const PEFT = { A: peftOf(ADAPTERS.A.bytes, 2, 3, SDXL_NAMES, ['to_q', 'to_k', 'to_out.0', 'proj']), B: peftOf(ADAPTERS.B.bytes, 3, 1.5, SDXL_NAMES.slice(0, 2), ['to_q', 'to_k']) };
const PEFT_CONFIG = 'adapter_config.json';
const PEFT_WEIGHTS = 'adapter_model.safetensors';
/** What a config that is not one holds: text that is no JSON, and the HTML page a proxy or login wall answers. */
const NOT_JSON = '{"peft_type": "LORA", "r": 2,, "lora_alpha"';
const HTML = '<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Sign in to continue</body></html>\n';
const TOKEN = 'hf_FuzzUrlTokenQ7w2Lk9Zr4';
const BEARER = `Bearer ${TOKEN}`;
const SPLIT = splitF16Llama();
const SPLIT_NAMES = Object.keys(SPLIT.files);
const GGUF_LORA = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 4, in: LLAMA.hidden, out: 128, aType: 'F32', bType: 'F16' }], 8);

/** Where tensor data begins in a safetensors file (ranges from here on are read while merging). */
const dataStartOf = (bytes: Uint8Array) => 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));

/** What an input slot holds: its file(s) under the names they are served and stored by. */
type Content = 'base' | 'tuned' | 'A' | 'B' | 'split' | 'gguf-lora';
const NAMES: Record<Content, string[]> = {
  base: ['sdxl unet.safetensors'], tuned: ['tuned.safetensors'], A: ['style.safetensors'], B: ['détail lora.safetensors'],
  split: SPLIT_NAMES, 'gguf-lora': ['lora.gguf'],
};
const BYTES: Record<string, Uint8Array> = {
  'sdxl unet.safetensors': BASE, 'tuned.safetensors': TUNED, 'style.safetensors': ADAPTERS.A.bytes, 'détail lora.safetensors': ADAPTERS.B.bytes,
  ...SPLIT.files, 'lora.gguf': GGUF_LORA.bytes,
};

// --- what the server does, per file ---------------------------------------------------------------

/** When a fault strikes: HEAD requests, every range (GET), or the ranges of tensor data only. */
type At = 'head' | 'get' | 'data';
type Behaviour =
  | { kind: 'ok' }
  /** HEAD is refused (405 Method Not Allowed, 501 Not Implemented); ranges work. */
  | { kind: 'head-refused'; status: 405 | 501 }
  | { kind: 'loop' }
  /** To the same file, on this server or on another (another origin, as a CDN). */
  | { kind: 'redirect'; status: 301 | 302 | 307 | 308; elsewhere: boolean; to: Behaviour }
  | { kind: 'no-range' | 'short-length' | 'long-length' | 'gzip' | 'etag' | 'modified' | 'size' | 'shifted' | 'stall-body' | 'stall-headers'; at: At }
  | { kind: 'status'; status: 401 | 403 | 404 | 429 | 500; at: At }
  /** A gated repository's file: 401 or 403 to every request that does not carry the token. */
  | { kind: 'gated'; status: 401 | 403 }
  /** A Hub config served correctly whose text is no config: not JSON, an HTML page, or over MAX_CONFIG_BYTES. */
  | { kind: 'not-json' | 'html' | 'oversize' };

const STATUSES = [401, 403, 404, 429, 500] as const;
const FAULTS = ['no-range', 'short-length', 'long-length', 'gzip', 'etag', 'modified', 'size', 'shifted', 'stall-body', 'stall-headers', 'status'] as const;

/** A behaviour from picks: mostly correct, else one fault (a redirect leads to another behaviour). */
function drawBehaviour(p: number[], i: number, stalls: boolean, depth = 0): Behaviour {
  const n = p[i % p.length];
  const choice = n % 32;
  if (choice < 18) return { kind: 'ok' };
  if (choice === 18) return { kind: 'head-refused', status: (n >> 5) % 2 ? 405 : 501 };
  if (choice === 19) return { kind: 'loop' };
  if ((choice === 20 || choice === 21) && depth === 0) return { kind: 'redirect', status: ([301, 302, 307, 308] as const)[(n >> 5) % 4], elsewhere: (n >> 7) % 2 === 1, to: drawBehaviour(p, i + 7, stalls, 1) };
  const kind = FAULTS[(n >> 5) % FAULTS.length];
  if (!stalls && kind.startsWith('stall')) return { kind: 'ok' };
  // A body fault needs a body: not at HEAD (a compressed HEAD is its own case: its length is the compressed one).
  const ats: At[] = kind === 'status' || kind === 'stall-headers' || kind === 'gzip' ? ['head', 'get', 'data'] : ['get', 'data'];
  const at = ats[(n >> 9) % ats.length];
  return kind === 'status' ? { kind, at, status: STATUSES[(n >> 11) % STATUSES.length] } : { kind, at };
}

const atEveryRange = (b: Behaviour): Behaviour => (b.kind === 'redirect' ? { ...b, to: atEveryRange(b.to) } : 'at' in b && b.at === 'data' ? { ...b, at: 'get' } : b);

/** Is `b` without effect when it strikes at `at` (a compressed HEAD: the size comes from a one-byte range)? */
const harmless = (b: Behaviour): boolean => b.kind === 'ok' || b.kind === 'head-refused' || (b.kind === 'gzip' && b.at === 'head') || (b.kind === 'redirect' && harmless(b.to));

interface Served {
  bytes: Uint8Array;
  dataStart: number;
  behaviour: Behaviour;
  /** The URL the CLI first asks for this file is one the token goes to (hfTokenScope), where a token is set. */
  tokenScope: boolean;
}
/** Each request either server saw: the path it asked (decoded, without `/via`), and its Authorization. */
const requests: { other: boolean; path: string; authorization: string | undefined }[] = [];
/** What names the version of every file served: an ETag and a date (a changed one is drawn as a fault). */
const VERSION = { ETag: '"v1"', 'Last-Modified': 'Sat, 05 Dec 2026 12:00:00 GMT' };
const LATER = 'Sat, 05 Dec 2026 12:30:00 GMT';
/** Path (decoded, without the `/via` a redirect adds) → what is served there. */
const routes = new Map<string, Served>();
let server: Server;
let origin: string;
let port: number;
/** A second server with the same files: another origin to redirect to. */
let otherServer: Server;
let otherOrigin: string;

function answer(served: Served, via: boolean, request: IncomingMessage, response: ServerResponse): void {
  let b = served.behaviour;
  if (b.kind === 'redirect') {
    if (!via) return void response.writeHead(b.status, { Location: `${b.elsewhere ? otherOrigin : ''}/via${request.url}` }).end();
    b = b.to;
  }
  if (b.kind === 'loop') return void response.writeHead(302, { Location: request.url }).end();
  const body = served.bytes;
  const head = request.method === 'HEAD';
  const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
  const [start, end] = range ? [Number(range[1]), Math.min(Number(range[2]), body.byteLength - 1)] : [0, body.byteLength - 1];
  if (b.kind === 'head-refused' && head) return void response.writeHead(b.status, { Allow: 'GET' }).end();
  if (b.kind === 'gated' && request.headers.authorization !== BEARER) return void response.writeHead(b.status).end('Access to this model is restricted');
  const strikes = 'at' in b && (b.at === 'head' ? head : !head && (b.at === 'get' || start >= served.dataStart));
  const slice = body.subarray(start, end + 1);
  const partial = (headers: Record<string, string | number> = {}) => {
    response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': slice.byteLength, ...VERSION, ...headers });
    response.end(slice);
  };
  if (strikes && 'at' in b) {
    switch (b.kind) {
      case 'status': return void response.writeHead(b.status).end();
      case 'stall-headers': return; // no answer; the client gives up
      case 'no-range': return void response.writeHead(200, { 'Content-Length': body.byteLength, ETag: '"v1"' }).end(body);
      case 'short-length': case 'long-length': {
        // Raw, so the length can lie: the body is one byte off what Content-Length says.
        const claimed = slice.byteLength + (b.kind === 'long-length' ? 1 : -1);
        const socket = response.socket!;
        socket.write(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${start}-${end}/${body.byteLength}\r\nContent-Length: ${claimed}\r\nETag: "v1"\r\nConnection: close\r\n\r\n`);
        socket.end(slice);
        return;
      }
      case 'gzip': {
        const gz = gzipSync(body);
        if (head) return void response.writeHead(200, { 'Content-Length': gz.byteLength, 'Content-Encoding': 'gzip', ETag: '"v1"' }).end();
        const part = gz.subarray(start, end + 1);
        response.writeHead(206, { 'Content-Range': `bytes ${start}-${start + part.byteLength - 1}/${gz.byteLength}`, 'Content-Length': part.byteLength, 'Content-Encoding': 'gzip' });
        return void response.end(part);
      }
      case 'etag': return partial({ ETag: '"v2"' });
      // The same ETag, another date: a server whose ETags stay put (or a CDN's).
      case 'modified': return partial({ 'Last-Modified': LATER });
      case 'size': return partial({ 'Content-Range': `bytes ${start}-${end}/${body.byteLength + 64}` });
      case 'shifted': {
        // Another range of the same length than the one asked for, said so in Content-Range.
        const from = end + 1 < body.byteLength ? start + 1 : start - 1;
        const other = body.subarray(from, from + slice.byteLength);
        response.writeHead(206, { 'Content-Range': `bytes ${from}-${from + other.byteLength - 1}/${body.byteLength}`, 'Content-Length': other.byteLength, ETag: '"v1"' });
        return void response.end(other);
      }
      case 'stall-body':
        response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': slice.byteLength, ETag: '"v1"' });
        return void response.write(slice.subarray(0, slice.byteLength >> 1));
    }
  }
  if (head || !range) {
    response.writeHead(200, { 'Content-Length': body.byteLength, ...VERSION, 'Accept-Ranges': 'bytes' });
    return void response.end(head ? undefined : body);
  }
  partial();
}

/** Both servers: `/c<case>/s<slot>/<file>`, and `/via/…` where a redirect leads. */
function route(request: IncomingMessage, response: ServerResponse): void {
  let path: string;
  try {
    path = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname);
  } catch {
    return void response.writeHead(400).end();
  }
  const via = path.startsWith('/via/');
  requests.push({ other: request.socket.localPort !== port, path: via ? path.slice(4) : path, authorization: request.headers.authorization });
  const served = routes.get(via ? path.slice(4) : path);
  if (!served) return void response.writeHead(404).end();
  answer(served, via, request, response);
}

beforeAll(async () => {
  [server, otherServer] = [createServer(route), createServer(route)];
  port = await listenLocally(server);
  origin = `http://127.0.0.1:${port}`;
  hubHosts.push(`localhost:${port}`);
  otherOrigin = `http://127.0.0.1:${await listenLocally(otherServer)}`;
});

afterAll(async () => {
  for (const s of [server, otherServer]) await closeServer(s);
});

// --- a case ----------------------------------------------------------------------------------------

/** How a URL is typed. */
type Spelling = 'plain' | 'upper-scheme' | 'fragment' | 'query' | 'query-fragment' | 'trailing-slash' | 'bad-percent' | 'ftp' | 'file';
/** Each usable spelling four times, each refused one once: most cases go on to the server. */
const SPELLINGS: Spelling[] = [
  ...(['plain', 'plain', 'upper-scheme', 'fragment', 'query', 'query-fragment'] as const).flatMap((x) => [x, x, x, x]),
  'trailing-slash', 'bad-percent', 'ftp', 'file',
];

/** One input as the case gives it. */
interface Input {
  option: string;
  content: Content;
  /** A path on disk, or a URL served by drawn behaviours. */
  url: boolean;
  spelling: Spelling;
  /** By file name (a split GGUF has two). */
  behaviours: Map<string, Behaviour>;
  /** For a split GGUF: the part the URL names (0 or 1). */
  part: number;
  typed: string;
  /** A PEFT adapter given by a Hub URL (its files are adapter_config.json and adapter_model.safetensors). */
  hub?: HubInput;
}

/** How a Hub adapter's URL is typed: the repository, a `tree/` page, the weights' `resolve/` link; a `blob/` page and bad percent-escapes are refused. */
type HubSpelling = 'repo' | 'repo-slash' | 'tree-main' | 'tree-sub' | 'tree-pr' | 'resolve' | 'resolve-sub-query' | 'blob' | 'bad-percent';
const HUB_SPELLINGS: HubSpelling[] = ['repo', 'repo', 'repo-slash', 'tree-main', 'tree-main', 'tree-sub', 'tree-pr', 'resolve', 'resolve', 'resolve', 'resolve-sub-query', 'resolve-sub-query', 'blob', 'bad-percent'];
/** huggingface.co typed `https://`, `HTTPS://`, `http://` or with `www.`; HF_ENDPOINT's host as set or `HTTP://`. */
type HubScheme = 'as-is' | 'upper' | 'http' | 'www';

interface HubInput {
  /** huggingface.co's host (through hubFetch), or HF_ENDPOINT's (the local server itself). */
  host: 'hub' | 'mirror';
  spelling: HubSpelling;
  scheme: HubScheme;
  /** `ROOT/ORG/NAME/resolve/REV/[SUB/]`, where the CLI reads the two files (segments as typed, on the Hub's own root). */
  folder: string;
  /** The URL is the weights' `resolve/` link: with the config absent, it is read alone. */
  weightsLink: boolean;
  /** What the weights hold: PEFT factors, or (only where the config is absent) a kohya file of that name. */
  weights: 'peft' | 'kohya';
  /** Read alone, the typed URL is one the token goes to (https on the Hub's host, or HF_ENDPOINT's origin). */
  typedTokenScope: boolean;
  /** Over hubFetch, which gives the response without its URL (so the CLI judges a login by the URL it asked). */
  transport: boolean;
}

type OutKind = 'file' | 'folder' | 'missing-folder' | 'url';
interface Case {
  command: 'merge' | 'inspect' | 'combine' | 'resize' | 'extract';
  inputs: Input[];
  weights: number[];
  dryRun: boolean;
  out?: { kind: OutKind; typed: string };
  argv: string[];
  /** HF_ENDPOINT: unset, the local server's origin, or a path under it (the mirror's Hub URLs are under it). */
  endpoint: 'none' | 'root' | 'path';
  /** HF_ENDPOINT's value, where set. */
  hfEndpoint?: string;
  /** HF_TOKEN is set (to TOKEN). */
  token: boolean;
}

interface Recipe { command: number; picks: number[] }
const recipe: fc.Arbitrary<Recipe> = fc.record({ command: fc.nat(1000), picks: fc.array(fc.nat(1 << 20), { minLength: 25, maxLength: 25 }) });

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The case folder's input files (on disk), shared by all cases; checked unchanged after each. */
let disk: string;

/** A Hub config's behaviour: absent (404), no config (not JSON, HTML, too large), gated, or any of the list. */
function drawConfigBehaviour(p: number[], i: number, inProcess: boolean): Behaviour {
  const n = p[i % p.length];
  switch (n % 10) {
    case 0: case 1: return { kind: 'status', status: 404, at: 'get' };
    // The real process keeps MAX_CONFIG_BYTES at 32 MiB: it is served the HTML page instead.
    case 2: return { kind: (['not-json', 'html', inProcess ? 'oversize' : 'html'] as const)[(n >> 4) % 3] };
    case 3: return { kind: 'gated', status: (n >> 4) % 2 ? 401 : 403 };
    default: return drawBehaviour(p, i, inProcess);
  }
}

/** A Hub adapter's weights: absent (404), gated, or any of the list. */
function drawWeightsBehaviour(p: number[], i: number, inProcess: boolean): Behaviour {
  const n = p[i % p.length];
  switch (n % 8) {
    case 0: return { kind: 'status', status: 404, at: 'head' };
    case 1: return { kind: 'gated', status: (n >> 4) % 2 ? 401 : 403 };
    default: return drawBehaviour(p, i, inProcess);
  }
}

/** The config is absent (HTTP 404 to its GET, perhaps after a redirect). */
const configAbsent = (b: Behaviour): boolean => (b.kind === 'redirect' ? configAbsent(b.to) : b.kind === 'status' && b.status === 404 && b.at === 'get');

/** The body served for a Hub config of behaviour `b`. */
function configBytes(b: Behaviour, content: 'A' | 'B'): Uint8Array {
  const text = b.kind === 'not-json' ? NOT_JSON : b.kind === 'html' ? HTML
    : b.kind === 'oversize' ? JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 3, padding: 'x'.repeat(MAX_CONFIG_BYTES) }) : PEFT[content].config;
  return new TextEncoder().encode(text);
}

function build(r: Recipe, n: number, inProcess: boolean, caseDir: string): Case {
  const stalls = inProcess;
  const p = r.picks;
  const command = (['merge', 'merge', 'merge', 'merge', 'inspect', 'combine', 'resize', 'extract'] as const)[r.command % 8];
  // The real process has no hubFetch: its Hub adapters are on HF_ENDPOINT's host, so it is always set there.
  const drawnEndpoint = (['none', 'none', 'root', 'path'] as const)[p[24] % 4];
  const endpoint = drawnEndpoint === 'none' && !inProcess ? 'root' : drawnEndpoint;
  const token = (p[24] >> 2) % 2 === 1;
  const endpointPath = endpoint === 'path' ? '/hub' : '';
  let slot = 0;
  const input = (option: string, content: Content): Input => {
    const k = slot++;
    const q = p[k * 3];
    const url = q % 4 !== 0;
    if (url && (content === 'A' || content === 'B') && (q >> 8) % 3 === 0) return hubInput(option, content, k, q);
    // A GGUF file's tensor data is read in no fixed order with the others': its faults strike at every range instead.
    const behaviours = new Map(NAMES[content].map((name, j) => {
      const b = drawBehaviour(p, k * 3 + 1 + j, stalls);
      return [name, name.endsWith('.gguf') ? atEveryRange(b) : b];
    }));
    const spelling = SPELLINGS[(q >> 2) % SPELLINGS.length];
    const part = content === 'split' ? (q >> 6) % 2 : 0;
    const name = NAMES[content][part];
    const i: Input = { option, content, url, spelling, behaviours, part, typed: '' };
    if (!url) {
      i.typed = join(disk, name);
      return i;
    }
    for (const [file, behaviour] of behaviours) routes.set(`/c${n}/s${k}/${file}`, { bytes: BYTES[file], dataStart: file.endsWith('.gguf') ? Infinity : dataStartOf(BYTES[file]), behaviour, tokenScope: endpoint !== 'none' });
    let href = `${origin}/c${n}/s${k}/${encodeURIComponent(name)}`;
    switch (spelling) {
      case 'upper-scheme': href = href.replace(/^http:/, 'HTTP:'); break;
      case 'fragment': href += '#main'; break;
      case 'query': href += '?download=true'; break;
      case 'query-fragment': href += '?download=true&x=%20#frag'; break;
      case 'trailing-slash': href += '/'; break;
      case 'bad-percent': href = href.replace(/\.(safetensors|gguf)$/, '%zz.$1'); break;
      case 'ftp': href = href.replace(/^http:/, 'ftp:'); break;
      case 'file': href = pathToFileURL(join(disk, name)).href; break;
      default: break;
    }
    i.typed = href;
    return i;
  };
  const hubInput = (option: string, content: 'A' | 'B', k: number, q: number): Input => {
    const host = endpoint === 'none' || (inProcess && (q >> 10) % 2 === 0) ? 'hub' : 'mirror';
    const spelling = HUB_SPELLINGS[(q >> 11) % HUB_SPELLINGS.length];
    const scheme = (host === 'hub' ? ['as-is', 'as-is', 'as-is', 'upper', 'http', 'www'] as const : ['as-is', 'as-is', 'upper'] as const)[(q >> 15) % (host === 'hub' ? 6 : 3)];
    const root = host === 'hub' ? `https://localhost:${port}` : `${origin}${endpointPath}`;
    const typedRoot = host === 'hub' ? { 'as-is': root, upper: `HTTPS://localhost:${port}`, http: `http://localhost:${port}`, www: `https://www.localhost:${port}` }[scheme]
      : scheme === 'upper' ? root.replace(/^http:/, 'HTTP:') : root;
    const repo = `/c${n}/s${k}`;
    const [rev, sub, rest] = ({
      repo: ['main', '', ''], 'repo-slash': ['main', '', '/'], 'tree-main': ['main', '', '/tree/main'], 'tree-sub': ['v1.0', 'style%20one/', '/tree/v1.0/style%20one'],
      'tree-pr': ['refs%2Fpr%2F3', 'sub/', '/tree/refs%2Fpr%2F3/sub/'], resolve: ['main', '', `/resolve/main/${PEFT_WEIGHTS}`],
      'resolve-sub-query': ['v1.0', 'style%20one/', `/resolve/v1.0/style%20one/${PEFT_WEIGHTS}?download=true`],
      blob: ['main', '', `/blob/main/${PEFT_WEIGHTS}`], 'bad-percent': ['main', '', '/tree/main/sub%zz'],
    } as Record<HubSpelling, [string, string, string]>)[spelling];
    const folder = `${root}${repo}/resolve/${rev}/${sub}`;
    const config = drawConfigBehaviour(p, k * 3 + 1, inProcess);
    const weightsBehaviour = drawWeightsBehaviour(p, k * 3 + 2, inProcess);
    const weightsLink = spelling === 'resolve' || spelling === 'resolve-sub-query';
    const weights = configAbsent(config) && (p[k * 3 + 2] >> 18) % 2 === 1 ? 'kohya' : 'peft';
    const typedTokenScope = host === 'mirror' || scheme === 'as-is' || scheme === 'upper';
    const hub: HubInput = { host, spelling, scheme, folder, weightsLink, weights, typedTokenScope, transport: host === 'hub' };
    const at = `${endpointPath}${repo}/resolve/${decodeURIComponent(rev)}/${decodeURIComponent(sub)}`;
    routes.set(`${host === 'mirror' ? at : at.slice(endpointPath.length)}${PEFT_CONFIG}`, { bytes: configBytes(config, content), dataStart: Infinity, behaviour: config, tokenScope: true });
    const weightBytes = weights === 'kohya' ? ADAPTERS[content].bytes : PEFT[content].weights;
    routes.set(`${host === 'mirror' ? at : at.slice(endpointPath.length)}${PEFT_WEIGHTS}`, {
      bytes: weightBytes, dataStart: dataStartOf(weightBytes), behaviour: weightsBehaviour,
      // Read alone (its config absent), the weights' link is fetched as typed.
      tokenScope: weightsLink && configAbsent(config) ? typedTokenScope : true,
    });
    return {
      option, content, url: true, spelling: 'plain', part: 0, hub, typed: `${typedRoot}${repo}${rest}`,
      behaviours: new Map([[PEFT_CONFIG, config], [PEFT_WEIGHTS, weightsBehaviour]]),
    };
  };
  const c: Case = { command, inputs: [], weights: [], dryRun: false, argv: [], endpoint, token,
    ...(endpoint === 'none' ? {} : { hfEndpoint: endpoint === 'root' ? origin : `${origin}${endpointPath}/` }) };
  const adapters = (): Content[] => (p[20] % 3 === 0 ? ['A', 'B'] : p[20] % 3 === 1 ? ['B', 'A'] : [p[21] % 2 ? 'A' : 'B']);
  const outOf = (file: string, folderOk: boolean): NonNullable<Case['out']> => {
    const kinds: OutKind[] = ['file', 'file', 'file', 'file', 'file', 'folder', 'folder', 'missing-folder', 'url'];
    const kind = kinds[p[22] % kinds.length] === 'folder' && !folderOk ? 'file' : kinds[p[22] % kinds.length];
    const typed = kind === 'file' ? join(caseDir, file) : kind === 'folder' ? `${caseDir}/` : kind === 'missing-folder' ? join(caseDir, 'missing', file)
      : [`${origin}/out/${file}`, `HTTP://127.0.0.1/${file}`, `ftp://example.com/${file}`][(p[22] >> 4) % 3];
    return { kind, typed };
  };
  const weight = (i: number) => [1, 0.5, -1, 2][p[23 - i] % 4];
  switch (command) {
    case 'merge': {
      const split = p[19] % 6 === 0;
      c.inputs.push(input('--base', split ? 'split' : 'base'));
      for (const a of split ? ['gguf-lora' as const] : adapters()) c.inputs.push(input('--adapter', a));
      c.weights = c.inputs.slice(1).map((_, i) => weight(i));
      c.dryRun = p[18] % 7 === 0;
      if (!c.dryRun) c.out = outOf(split ? 'merged' : 'merged.safetensors', !split);
      c.argv = ['merge', '--base', c.inputs[0].typed];
      c.inputs.slice(1).forEach((a, i) => c.argv.push('--adapter', a.typed, '--weight', String(c.weights[i])));
      c.argv.push(...(c.dryRun ? ['--dry-run'] : ['--out', c.out!.typed]), '--backend', 'cpu');
      break;
    }
    case 'inspect':
      c.inputs.push(input('inspect', (['base', 'A', 'B', 'split', 'gguf-lora'] as const)[p[19] % 5]));
      c.argv = ['inspect', c.inputs[0].typed];
      break;
    case 'combine':
      for (const a of adapters()) c.inputs.push(input('--adapter', a));
      c.weights = c.inputs.map((_, i) => weight(i));
      c.out = outOf('combined.safetensors', false);
      c.argv = ['combine', ...c.inputs.flatMap((a, i) => ['--adapter', a.typed, '--weight', String(c.weights[i])]), '--method', 'cat', '--out', c.out.typed, '--backend', 'cpu'];
      break;
    case 'resize': {
      const a = adapters()[0];
      c.inputs.push(input('--adapter', a));
      c.out = outOf('resized.safetensors', false);
      c.argv = ['resize', '--adapter', c.inputs[0].typed, '--rank', String(ADAPTERS[a as 'A' | 'B'].rank), '--out', c.out.typed, '--backend', 'cpu'];
      break;
    }
    case 'extract':
      c.inputs.push(input('--base', 'base'), input('--tuned', 'tuned'));
      c.out = outOf('extracted.safetensors', false);
      c.argv = ['extract', '--base', c.inputs[0].typed, '--tuned', c.inputs[1].typed, '--rank', String(DIM), '--out', c.out.typed, '--backend', 'cpu'];
      break;
  }
  return c;
}

// --- the outcome a case must have -----------------------------------------------------------------

interface Expected { code: number; why?: RegExp[]; what: string }

/** The URL as an error names it: as typed, or as fetch reads it (scheme in lower case). */
function urlPattern(typed: string): string {
  const forms = new Set([typed]);
  try {
    forms.add(new URL(typed).href);
  } catch { /* a usage error names it as typed */ }
  return `(${[...forms].map(escapeRe).join('|')})`;
}

/** The pattern of the error a fault gives where it strikes, for the file served at `url`. */
/**
 * Who the CLI takes to have answered a 401/403, which its advice follows: `token` where the request
 * carried the token (its URL where hfTokenScope puts the token, a token set, no hop elsewhere);
 * `no-token` where it could have (the URL answered is there: the one asked, over hubFetch, which
 * gives no response URL); `other` elsewhere.
 */
type Login = 'token' | 'no-token' | 'other';
function loginOf(c: Case, tokenScope: boolean, b: Behaviour, transport: boolean): Login {
  const elsewhere = b.kind === 'redirect' && b.elsewhere;
  if (!tokenScope) return 'other';
  if (c.token) return elsewhere ? 'other' : 'token';
  return transport || !elsewhere ? 'no-token' : 'other';
}

const LOGIN_ADVICE: Record<Login, string> = {
  token: '; the Hugging Face token was refused: check that it is valid and that your account has accepted the model\'s terms on its page',
  'no-token': '; the file needs a login \\(a gated model\\): set HF_TOKEN to a token of an account that has accepted the model\'s terms, or log in with `hf auth login`; or download it with your account and give the file instead',
  other: '; the file needs a login or a fresh link \\(a gated model\\): download it with your account and give the file instead',
};

/** The pattern of the error a fault gives where it strikes, for the file served at `url` (`whatText`: what was asked, where not HEAD or a range). */
function faultMessage(b: Behaviour, url: string, login: Login = 'other', whatText?: string): RegExp {
  const U = `^error: ${url}: `;
  const what = (at: At) => whatText ?? (at === 'head' ? 'its size \\(HEAD\\)' : 'bytes \\d+–\\d+');
  const advice: Record<number, string> = {
    401: LOGIN_ADVICE[login], 403: LOGIN_ADVICE[login],
    404: '; check the URL', 429: '; the server is busy or failing: try again later', 500: '; the server is busy or failing: try again later',
  };
  const changed = (how: string) => new RegExp(`${U}changed on the server while it was read \\(${how}\\); nothing was written; try again once it stays unchanged$`);
  switch (b.kind) {
    case 'redirect': return faultMessage(b.to, url, login, whatText);
    case 'loop': return new RegExp(`${U}could not be fetched for ${what('head')} \\(redirect count exceeded\\)$`);
    case 'gated': return new RegExp(`${U}HTTP ${b.status} [A-Za-z ]+ for ${what('head')}${advice[b.status]}$`);
    case 'no-range': return new RegExp(`${U}the server ignored a Range request \\(HTTP 200 instead of 206\\); download the file first$`);
    case 'short-length': return new RegExp(`${U}got (\\d+) of \\d+ bytes for ${what(b.at)}$`);
    case 'long-length': return new RegExp(`${U}the response broke off while sending ${what(b.at)} \\([^)]+\\)$`);
    case 'gzip': return new RegExp(`${U}the server compressed a byte range \\(Content-Encoding: gzip\\), so its offsets are not the file's; serve the file uncompressed$`);
    case 'etag': return changed('ETag "v1" → "v2"');
    case 'modified': return changed(`Last-Modified ${VERSION['Last-Modified']} → ${LATER}`);
    case 'size': return changed('(\\d+) → \\d+ bytes');
    case 'shifted': return new RegExp(`${U}the server sent bytes \\d+–\\d+ when asked for ${what(b.at)}; download the file first$`);
    case 'stall-body': return new RegExp(`${U}the server sent nothing for ${IDLE_SECONDS} s while sending ${what(b.at)}; gave up \\(check the server or the connection\\)$`);
    case 'stall-headers': return new RegExp(`${U}the server sent nothing for ${IDLE_SECONDS} s before answering for ${what(b.at)}; gave up \\(check the server or the connection\\)$`);
    case 'status': return new RegExp(`${U}HTTP ${b.status} [A-Za-z ]+ for ${what(b.at)}${advice[b.status]}$`);
    default: throw new Error(`no fault: ${b.kind}`);
  }
}

/** Where a fault strikes: at HEAD or the first ranges (opening the file), or at tensor data. */
const strikesAt = (b: Behaviour): At | undefined => (harmless(b) ? undefined : b.kind === 'loop' ? 'head' : b.kind === 'redirect' ? strikesAt(b.to) : 'at' in b ? b.at : undefined);

/** The URLs a URL input fetches, with their files' names. */
function fetched(i: Input): { name: string; url: string }[] {
  const names = NAMES[i.content];
  if (i.content !== 'split') return [{ name: names[0], url: urlPattern(i.typed) }];
  // The other part: the typed URL with its part number swapped (fetch reads it normalised).
  const href = new URL(i.typed).href;
  return names.map((name, j) => ({ name, url: escapeRe(j === i.part ? href : href.replace(NAMES.split[i.part].replace(/ /g, '%20'), name)) }));
}

/** What a fault's name is in the outcome counts. */
const label = (b: Behaviour): string => (b.kind === 'redirect' ? `redirect → ${label(b.to)}` : b.kind === 'status' || b.kind === 'gated' ? `${b.kind} ${b.status}` : b.kind);

/**
 * What the one GET of a Hub adapter's config (no Range, no HEAD, read whole up to MAX_CONFIG_BYTES)
 * meets: a fault of that request; the config absent (404); text that is no JSON; or the config.
 * A 206 is taken only where its Content-Range is the whole file and the body holds all of it.
 */
function configRead(c: Case, i: Input): { kind: 'fine' | 'absent' } | { kind: 'bad-json'; html?: boolean } | { kind: 'fault'; expected: Expected } {
  const b = i.behaviours.get(PEFT_CONFIG)!;
  const inner = b.kind === 'redirect' ? b.to : b;
  const url = escapeRe(`${i.hub!.folder}${PEFT_CONFIG}`);
  const fault = (why: RegExp = faultMessage(b, url, loginOf(c, true, b, i.hub!.transport), 'the file')) => ({ kind: 'fault' as const, expected: { code: 1, why: [why], what: `Hub config: ${label(b)}` } });
  switch (inner.kind) {
    case 'not-json': return { kind: 'bad-json' };
    case 'html': return { kind: 'bad-json', html: true };
    case 'oversize': return fault(new RegExp(`^error: ${url}: more than ${MAX_CONFIG_BYTES} bytes is too large for a config or index \\(the limit MAX_CONFIG_BYTES is ${MAX_CONFIG_BYTES}\\)$`));
    case 'gated': return c.token && !(b.kind === 'redirect' && b.elsewhere) ? { kind: 'fine' } : fault();
    case 'loop': return fault();
    case 'status': return inner.at !== 'get' ? { kind: 'fine' } : inner.status === 404 ? { kind: 'absent' } : fault();
    case 'stall-headers': case 'stall-body': case 'long-length': return inner.at === 'get' ? fault() : { kind: 'fine' };
    // The whole file's Content-Range over a body one byte short: refused as cut short, not parsed.
    case 'short-length': return inner.at === 'get' ? fault() : { kind: 'fine' };
    // A Content-Range of `bytes -1-…`, no range at all: refused as part of the file (seed 20261206, case 170).
    case 'shifted': return inner.at === 'get'
      ? fault(new RegExp(`^error: ${url}: the server sent part of the file \\(HTTP 206 Partial Content, with a Content-Range that names no byte range\\) when asked for the whole file; serve it whole \\(HTTP 200\\) or download the file first$`))
      : { kind: 'fine' };
    // The server sends the compressed text cut to the config's length, as a range of it: where
    // that is part of the compressed text it is refused as such; where the whole, fetch inflates it.
    case 'gzip': {
      const bytes = configBytes(inner, i.content as 'A' | 'B');
      return inner.at === 'get' && gzipSync(bytes).byteLength > bytes.byteLength ? fault(partOfTheFile(url)) : { kind: 'fine' };
    }
    // The whole file's range, of a larger total: part of the file (seed 20261206, case 228).
    case 'size': return inner.at === 'get' ? fault(partOfTheFile(url)) : { kind: 'fine' };
    // One whole GET: nothing to compare a version or a range with.
    default: return { kind: 'fine' };
  }
}

/** A config's GET answered with a 206 of part of the file (its Content-Range says which bytes of how many). */
function partOfTheFile(url: string): RegExp {
  return new RegExp(`^error: ${url}: the server sent bytes 0–\\d+ of its \\d+ \\(HTTP 206 Partial Content\\) when asked for the whole file; serve it whole \\(HTTP 200\\) or download the file first$`);
}

/** Where a Hub file's fault strikes: a gated file at its first request, unless the token reaches it. */
const hubStrikesAt = (c: Case, b: Behaviour, tokenScope: boolean): At | undefined => (b.kind === 'gated' ? (c.token && tokenScope ? undefined : 'head') : strikesAt(b));

/** A Hub adapter opened (after its config was fetched): its config parsed, then its weights' HEAD and header. */
function hubOpened(c: Case, i: Input): Expected | undefined {
  const h = i.hub!;
  const read = configRead(c, i);
  if (read.kind === 'bad-json') {
    // A login page is named for what it is; text cut short to nothing is empty.
    const why = read.html ? 'an HTML page, not JSON \\(an error or login page saved in place of the file\\?\\): download the file again'
      : '(not valid JSON \\(.+\\)|empty, not JSON \\(an interrupted download\\?\\): download the file again)';
    return { code: 1, why: [new RegExp(`^error: ${escapeRe(`${h.folder}${PEFT_CONFIG}`)}: ${why}$`)], what: `Hub config: ${label(i.behaviours.get(PEFT_CONFIG)!)} (not JSON)` };
  }
  const alone = read.kind === 'absent';
  const b = i.behaviours.get(PEFT_WEIGHTS)!;
  const tokenScope = alone ? h.typedTokenScope : true;
  const at = hubStrikesAt(c, b, tokenScope);
  // A kohya file's α values are tensor data, read as it is opened.
  if (at === 'head' || at === 'get' || (at === 'data' && alone && h.weights === 'kohya')) {
    return { code: 1, why: [faultMessage(b, alone ? urlPattern(i.typed) : escapeRe(`${h.folder}${PEFT_WEIGHTS}`), loginOf(c, tokenScope, b, h.transport))], what: `Hub weights${alone ? ' alone' : ''}: ${label(b)} at ${at}` };
  }
  if (alone && h.weights === 'peft') {
    return { code: 1, why: [new RegExp(`^error: ${escapeRe(i.typed)}: is a PEFT adapter's weights, which need its ${PEFT_CONFIG} \\(r and lora_alpha\\) beside them, and the repository has none there \\(${escapeRe(`${h.folder}${PEFT_CONFIG}`)}: HTTP 404\\); download the weights and their ${PEFT_CONFIG} into a folder and give the folder's path$`)], what: 'Hub config 404: PEFT weights alone' };
  }
  return undefined;
}

function expected(c: Case): Expected {
  const writes = c.command !== 'inspect' && !c.dryRun;
  // 1. Usage, before any request: a URL --out, an --out whose folder is missing; then each input in
  // order: as typed, and a Hub adapter's config fetched as it is opened (before the next input is looked at).
  if (writes && c.out!.kind === 'url') return { code: 2, why: [new RegExp(`^error: ${escapeRe(c.out!.typed)}: --out is a URL; the output is written to disk, so give a path for it$`)], what: 'usage: --out URL' };
  if (writes && c.out!.kind === 'missing-folder') return { code: 2, why: [/missing\/[\w.]+: folder .*missing does not exist; create it or choose another --out$/], what: 'usage: --out folder missing' };
  for (const i of c.inputs) {
    if (!i.url) continue;
    const u = `^error: ${escapeRe(i.typed)}: `;
    if (i.hub) {
      const h = i.hub;
      if (h.spelling === 'blob') {
        const link = new URL(i.typed);
        link.pathname = link.pathname.replace('/blob/', '/resolve/');
        return { code: 2, why: [new RegExp(`${u}is Hugging Face's web page about the file, not the file; give its download link ${escapeRe(link.href)}$`)], what: 'usage: Hub blob/ page' };
      }
      if (h.spelling === 'bad-percent') return { code: 2, why: [new RegExp(`${u}the URL's path is not valid percent-encoding; check the URL$`)], what: 'usage: Hub URL bad percent-escape' };
      const read = configRead(c, i);
      if (read.kind === 'fault') return read.expected;
      if (read.kind === 'absent' && !h.weightsLink) {
        return { code: 1, why: [new RegExp(`${u}no PEFT adapter there: looked for ${PEFT_CONFIG} and ${PEFT_WEIGHTS} at ${escapeRe(h.folder)} \\(${PEFT_CONFIG}: HTTP 404\\); a single-file LoRA is given by its file's download link, such as ${escapeRe(h.folder)}FILE\\.safetensors$`)], what: 'Hub config 404: no adapter at the repository' };
      }
      continue;
    }
    const what = i.option === 'inspect' ? 'inspect' : i.option;
    switch (i.spelling) {
      case 'trailing-slash': return { code: 2, why: [new RegExp(`${u}names a folder; ${what} takes the URL of one file`)], what: 'usage: folder URL' };
      case 'bad-percent': return { code: 2, why: [new RegExp(`${u}the URL's path is not valid percent-encoding; check the URL$`)], what: 'usage: bad percent-escape' };
      case 'ftp': return { code: 2, why: [new RegExp(`${u}${what} reads only http:// and https:// URLs, not ftp://; download the file and give its path$`)], what: 'usage: ftp://' };
      case 'file': return { code: 2, why: [new RegExp(`${u}${what} takes a path or an http\\(s\\) URL, not a file:// URL; give the path ${escapeRe(join(disk, NAMES[i.content][i.part]))} instead$`)], what: 'usage: file://' };
      default: break;
    }
  }
  // 2. Opening each input in order: HEAD and the header of each file; a kohya adapter's α values
  // (tensor data) are read as it is opened.
  const plainLogin = (b: Behaviour) => loginOf(c, c.endpoint !== 'none', b, false);
  for (const i of c.inputs) {
    if (!i.url) continue;
    if (i.hub) {
      const refused = hubOpened(c, i);
      if (refused) return refused;
      continue;
    }
    for (const { name, url } of fetched(i)) {
      const b = i.behaviours.get(name)!;
      const at = strikesAt(b);
      const kohyaAlpha = name.endsWith('.safetensors') && (i.content === 'A' || i.content === 'B');
      if (at === 'head' || at === 'get' || (at === 'data' && kohyaAlpha)) return { code: 1, why: [faultMessage(b, url, plainLogin(b))], what: `${label(b)} at ${at}` };
    }
  }
  if (!writes) return { code: 0, what: 'ok' };
  // 3. Tensor data: a fault in any file read then may be met first (a Hub adapter's PEFT weights: α is in its config).
  const data = c.inputs.filter((i) => i.url).flatMap((i) => {
    if (!i.hub) return fetched(i).map(({ name, url }) => ({ b: i.behaviours.get(name)!, url, login: plainLogin(i.behaviours.get(name)!) }));
    const b = i.behaviours.get(PEFT_WEIGHTS)!;
    return [{ b, url: escapeRe(`${i.hub.folder}${PEFT_WEIGHTS}`), login: loginOf(c, true, b, i.hub.transport) }];
  }).filter(({ b }) => strikesAt(b) === 'data');
  if (data.length) return { code: 1, why: data.map(({ b, url, login }) => faultMessage(b, url, login)), what: `${data.map(({ b }) => label(b)).join('+')} at data` };
  return { code: 0, what: 'ok' };
}

// --- the float64 truth ----------------------------------------------------------------------------

const decoded = (bytes: Uint8Array) => decodeSafetensors(bytes).tensors;

/** The merge of the safetensors base: W + Σ w·α/r·(up·down) per module, checked by expectMergedFile. */
function checkSafetensorsMerge(c: Case, outPath: string): void {
  const terms: TruthTerm[] = [];
  c.inputs.slice(1).forEach((a, i) => {
    const t = decoded(BYTES[NAMES[a.content][0]]);
    for (const name of SDXL_NAMES) {
      const key = kohyaKey(name);
      const down = t.get(`${key}.lora_down.weight`);
      if (!down) continue;
      terms.push({ baseKey: name, a: down, b: t.get(`${key}.lora_up.weight`)!, scale: c.weights[i] * t.get(`${key}.alpha`)!.values[0] / down.shape[0] });
    }
  });
  expectMergedFile(decoded(BASE), decoded(new Uint8Array(readFileSync(outPath))), terms);
}

/** The split GGUF merge: the same two parts, blk.0.attn_v.weight = W + w·α/r·B·A within half an F16 step. */
function checkGgufMerge(c: Case, outDir: string): void {
  expect(readdirSync(outDir).sort()).toEqual([...SPLIT_NAMES].sort());
  const part1 = readGguf(readFileSync(join(outDir, SPLIT_NAMES[0])));
  const got = tensorValues('F16', part1.tensors.find((t) => t.name === 'blk.0.attn_v.weight')!.data);
  const want = truthWithLora(SPLIT.tensors.get('blk.0.attn_v.weight')!.values, 128, LLAMA.hidden, GGUF_LORA.factors.get('blk.0.attn_v.weight')!, c.weights[0] * 8 / 4, false);
  for (let i = 0; i < want.length; i++) {
    const step = 2 ** Math.max(Math.floor(Math.log2(Math.abs(want[i]))) - 10, -24);
    expect(Math.abs(got[i] - want[i]), `element ${i}`).toBeLessThanOrEqual(step / 2);
  }
}

/**
 * A written kohya adapter's updates against `want` (kohya key → ΔW): within f32 work's error, or
 * the rounding of the factors to the type they are stored in (extract keeps the base's F16).
 */
function checkUpdates(outPath: string, want: Map<string, Dense>): void {
  const bytes = new Uint8Array(readFileSync(outPath));
  const got = kohyaUpdates(bytes);
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  const dtypes = new Set([...decoded(bytes)].filter(([k]) => k.endsWith('.weight')).map(([, t]) => t.dtype));
  // Two factors each rounded once: 2·2^-(mantissa bits + 1) of each, relative, with room for the f32 work.
  const tolerance = Math.max(...[...dtypes].map((d) => ({ F32: 1e-5, F16: 2 * 2 ** -11 + 1e-5, BF16: 2 * 2 ** -8 + 1e-5 } as Record<string, number>)[d]));
  for (const [key, w] of want) expect(relativeError(got.get(key)!, w), `${key} (${[...dtypes]})`).toBeLessThan(tolerance);
}

function addInto(sum: Map<string, Dense>, key: string, d: Dense, s: number): void {
  const into = sum.get(key) ?? { rows: d.rows, cols: d.cols, data: new Float64Array(d.data.length) };
  for (let j = 0; j < d.data.length; j++) into.data[j] += s * d.data[j];
  sum.set(key, into);
}

function checkOutput(c: Case, outPath: string, result: CliResult): string {
  switch (c.command) {
    case 'inspect': {
      const [i] = c.inputs;
      const peft = i.hub !== undefined && !(configRead(c, i).kind === 'absent' && i.hub.weights === 'kohya');
      expect(result.stdout).toMatch(peft ? /PEFT LoRA adapter \(\d modules\)/ : i.content === 'A' || i.content === 'B' ? /kohya\/LyCORIS LoRA \(\d modules\)/ : i.content === 'gguf-lora' ? /LoRA/ : /base model/);
      return i.hub ? `inspected (Hub via ${i.hub.host === 'hub' ? 'huggingface.co' : 'HF_ENDPOINT'})` : 'inspected';
    }
    case 'merge':
      if (c.dryRun) {
        expect(result.stdout).toMatch(c.inputs[0].content === 'split' ? /blk\.0\.attn_v\.weight/ : /attn1\.to_q/);
        return 'dry run';
      }
      if (c.inputs[0].content === 'split') checkGgufMerge(c, outPath);
      else checkSafetensorsMerge(c, outPath);
      return 'merged, matches float64';
    case 'resize':
      checkUpdates(outPath, kohyaUpdates(BYTES[NAMES[c.inputs[0].content][0]]));
      return 'resized, matches float64';
    case 'combine': {
      const want = new Map<string, Dense>();
      c.inputs.forEach((a, i) => {
        for (const [key, d] of kohyaUpdates(BYTES[NAMES[a.content][0]])) addInto(want, key, d, c.weights[i]);
      });
      checkUpdates(outPath, want);
      return 'combined, matches float64';
    }
    case 'extract': {
      // Full rank: the update is the tuned tensor less the base's, where they differ.
      const want = new Map<string, Dense>();
      const [base, tuned] = [decoded(BASE), decoded(TUNED)];
      for (const name of SDXL_NAMES) {
        const d = tuned.get(name)!.values.map((x, j) => x - base.get(name)!.values[j]);
        if (d.some((x) => x !== 0)) want.set(kohyaKey(name), { rows: DIM, cols: DIM, data: d });
      }
      checkUpdates(outPath, want);
      return 'extracted, matches float64';
    }
  }
}

// --- running and checking ---------------------------------------------------------------------------

/** Lines the CLI writes to stderr besides its one error line (the merge report, notes, warnings). */
const REPORT_LINE = /^(base: |adapter \d+: |plan: |backend: |warning: |note: |  )/;
const SUCCESS_LINE = new RegExp(`${REPORT_LINE.source}|^(merged |wrote |check: )`);

const realFetch = globalThis.fetch;
const toHub = localFetch(() => [port]);
/**
 * The in-process cases' fetch: the Hub's host (`localhost`, `www.localhost`) is carried to the local
 * server over plain HTTP, its response without its URL (test/helpers/hub-transport.ts); any other
 * URL is fetched as it is.
 */
const hubFetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => (
  /^(www\.)?localhost$/.test(new URL(String(input)).hostname) ? toHub(input, init) : realFetch(input, init));

/** The Hugging Face variables of a case: HF_ENDPOINT and HF_TOKEN as drawn, no other token anywhere (`home` is empty). */
function hfEnv(c: Case, home: string): Record<string, string> {
  return { HF_ENDPOINT: c.hfEndpoint ?? '', HF_TOKEN: c.token ? TOKEN : '', HUGGING_FACE_HUB_TOKEN: '', HF_TOKEN_PATH: '', HF_HUB_DISABLE_IMPLICIT_TOKEN: '', XDG_CACHE_HOME: '', HF_HOME: home, HOME: home };
}

/** The CLI in this process (the idle timeout made short), a hang reported rather than waited on. */
async function inProcess(argv: string[], env: Record<string, string>): Promise<CliResult & { ms: number }> {
  for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value);
  const out: string[] = [];
  const err: string[] = [];
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<number>((resolve) => { timer = setTimeout(() => resolve(-2), HANG_MS); });
  let code: number;
  try {
    code = await Promise.race([runCommandLine(argv, { out: (l) => out.push(l), err: (l) => err.push(l) }), hung]);
  } finally {
    clearTimeout(timer);
    vi.unstubAllEnvs();
  }
  if (code === -2) throw new Error(`hung for ${HANG_MS} ms: loramerge ${argv.map((a) => JSON.stringify(a)).join(' ')}`);
  return { code, stdout: out.join('\n'), stderr: err.join('\n'), ms: performance.now() - started };
}

describe('fuzzing the command line\'s URL inputs', () => {
  const temp = tempDirs();
  let root: string;
  let diskBefore: Map<string, Buffer | null>;
  /** An empty HOME and HF_HOME: no token file. */
  let home: string;
  beforeAll(() => {
    root = temp.make();
    home = temp.make();
    disk = join(root, 'inputs');
    for (const [name, bytes] of Object.entries(BYTES)) {
      mkdirSync(disk, { recursive: true });
      writeFileSync(join(disk, name), bytes);
    }
    diskBefore = snapshot(disk);
  });
  afterAll(() => temp.removeAll());
  const counts = new Map<string, number>();
  const count = (what: string) => counts.set(what, (counts.get(what) ?? 0) + 1);

  async function runCase(r: Recipe, n: number, inProcess: boolean, run: (argv: string[], env: Record<string, string>) => Promise<CliResult & { ms?: number }>): Promise<void> {
    const caseDir = join(root, `case-${n}`);
    mkdirSync(caseDir);
    try {
      const c = build(r, n, inProcess, caseDir);
      const want = expected(c);
      const asked = requests.length;
      const result = await run(c.argv, hfEnv(c, home));
      const shown = c.argv.map((a) => JSON.stringify(a)).join(' ');
      const drawn = c.inputs.map((i) => `${i.option} ${i.url ? `URL (${i.hub ? `Hub ${JSON.stringify(i.hub)}` : i.spelling}) ${JSON.stringify(Object.fromEntries(i.behaviours))}` : 'path'}`).join('; ');
      const seen = requests.slice(asked).filter((q) => routes.has(q.path));
      const context = `loramerge ${shown}\nenv: HF_ENDPOINT=${c.hfEndpoint ?? ''} HF_TOKEN=${c.token ? 'set' : ''}\ndrawn: ${drawn}\nrequests: ${seen.map((q) => `${q.other ? 'other' : 'this'}:${q.path}${q.authorization ? ' (token)' : ''}`).join(', ')}\nwanted: exit ${want.code} (${want.what})${want.why ? ` ${want.why.join(' or ')}` : ''}\n→ exit ${result.code}${result.ms !== undefined ? ` in ${result.ms.toFixed(0)} ms` : ''}\nstderr:\n${result.stderr}\nstdout:\n${result.stdout.slice(0, 400)}`;
      const typed = c.argv.join(' ');
      expect(result.stderr, context).not.toMatch(/^ {4}at |\n\s+at |internal error|runCommandLine threw|\[object Object\]/m);
      if (!typed.includes('undefined')) expect(result.stderr, context).not.toMatch(/undefined/);
      if (!typed.includes('NaN')) expect(result.stderr, context).not.toMatch(/NaN/);
      expect(result.code, `exit code\n${context}`).toBe(want.code);
      // The token goes where hfTokenScope says (the Hub's host over https, HF_ENDPOINT's origin), with
      // no hop elsewhere before; never into what the CLI prints.
      expect(`${result.stdout}\n${result.stderr}`, context).not.toContain(TOKEN);
      for (const q of seen) {
        expect(q.authorization, `the token sent to ${q.other ? 'the other server' : 'this server'} for ${q.path}\n${context}`)
          .toBe(c.token && !q.other && routes.get(q.path)!.tokenScope ? BEARER : undefined);
      }
      const lines = result.stderr.replace(/\n$/, '') === '' ? [] : result.stderr.replace(/\n$/, '').split('\n');
      const errors = lines.filter((l) => l.startsWith('error:'));
      // The inputs on disk are never touched.
      const diskAfter = snapshot(disk);
      expect([...diskAfter.keys()].sort(), `input files\n${context}`).toEqual([...diskBefore.keys()].sort());
      for (const [p, bytes] of diskBefore) if (bytes) expect(diskAfter.get(p)!.equals(bytes), `${p} changed\n${context}`).toBe(true);
      const left = snapshot(caseDir);
      if (result.code !== 0) {
        expect(errors, `one error line\n${context}`).toHaveLength(1);
        expect(lines[lines.length - 1], `the error line comes last\n${context}`).toBe(errors[0]);
        for (const l of lines.slice(0, -1)) expect(l, `a line that is not the CLI's report\n${context}`).toMatch(REPORT_LINE);
        expect(want.why!.some((why) => why.test(errors[0])), `the error names the fault and the URL\n${context}`).toBe(true);
        expect([...left.keys()], `files left after a refusal\n${context}`).toEqual([]);
        count(`${c.command}: refused ${result.code} (${want.what.replace(/ at (head|get|data)$/, '')})`);
        return;
      }
      expect(errors, context).toEqual([]);
      for (const l of lines) expect(l, `a line that is not the CLI's report\n${context}`).toMatch(SUCCESS_LINE);
      if (c.command === 'inspect' || c.dryRun) {
        expect([...left.keys()], `${c.command} wrote something\n${context}`).toEqual([]);
        count(`${c.command}: ${checkOutput(c, '', result)}`);
        return;
      }
      // Only the output, named as the case says (an --out folder takes the base's file name, decoded, without query).
      const name = c.out!.kind === 'folder' ? NAMES[c.inputs[0].content][0] : relative(caseDir, c.out!.typed);
      expect(readdirSync(caseDir), `what the output left\n${context}`).toEqual([name]);
      const hubs = [...new Set(c.inputs.filter((i) => i.hub).map((i) => (i.hub!.host === 'hub' ? 'huggingface.co' : 'HF_ENDPOINT')))];
      const mix = `${c.inputs.every((i) => i.url) ? 'URLs' : c.inputs.some((i) => i.url) ? 'URL and path' : 'paths'}${hubs.length ? ` (Hub via ${hubs.join(' and ')})` : ''}`;
      try {
        count(`${c.command}${c.inputs[0].content === 'split' ? ' (split GGUF)' : ''}: ${checkOutput(c, join(caseDir, name), result)} from ${mix}`);
      } catch (e) {
        throw new Error(`${(e as Error).message}\n${context}`);
      }
    } finally {
      rmSync(caseDir, { recursive: true, force: true });
      for (const key of [...routes.keys()]) if (key.startsWith(`/c${n}/`) || key.startsWith(`/hub/c${n}/`)) routes.delete(key);
    }
  }

  it(`${settings.runs} command lines with URL inputs through the CLI in-process`, async () => {
    let n = 0;
    const started = performance.now();
    vi.stubGlobal('fetch', hubFetch);
    try {
      await fc.assert(fc.asyncProperty(recipe, (r) => runCase(r, n++, true, inProcess)),
        { seed: settings.seed, numRuns: settings.path ? 1 : settings.runs, endOnFailure: true, ...(settings.path ? { path: settings.path } : {}) });
    } finally {
      vi.unstubAllGlobals();
    }
    const outcomes = [...counts].sort().map(([k, v]) => `${k} ×${v}`).join(', ');
    const total = (re: RegExp) => [...counts].filter(([k]) => re.test(k)).reduce((s, [, v]) => s + v, 0);
    console.log(`URL fuzz: ${n} cases in ${((performance.now() - started) / 1000).toFixed(1)} s: ${n - total(/refused/)} succeeded (${total(/matches float64/)} `
      + `outputs against float64, ${total(/merged, matches/)} of them merges), ${total(/refused 1/)} refused with exit 1, ${total(/refused 2/)} with exit 2: ${outcomes}`);
    if (!settings.path) {
      // The draws must reach every kind of outcome, or the property proves little.
      expect(total(/refused 1/)).toBeGreaterThan(settings.runs / 10);
      expect(total(/refused 2/)).toBeGreaterThan(0);
      expect(total(/merged, matches float64/)).toBeGreaterThan(settings.runs / 20);
      // Hub adapters, both read and refused.
      expect(total(/\(Hub via /)).toBeGreaterThan(0);
      expect(total(/refused 1 \(Hub /)).toBeGreaterThan(0);
    }
  }, Math.max(120_000, settings.runs * 2000));

  it(`${settings.cliRuns} command lines with URL inputs through the real loramerge process (no stalls: its idle timeout is 60 s)`, async () => {
    let n = 0;
    await fc.assert(fc.asyncProperty(recipe, (r) => runCase(r, 100_000 + n++, false, (argv, env) => runCli(argv, env))),
      { seed: settings.seed + 1, numRuns: settings.cliRuns, endOnFailure: true });
  }, Math.max(60_000, settings.cliRuns * 20_000));
});
