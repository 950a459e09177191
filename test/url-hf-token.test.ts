/**
 * The Hugging Face token with URL inputs, against local servers standing in for Hugging Face and
 * for the CDN its download links redirect to: found where huggingface_hub finds it (HF_TOKEN,
 * HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH, HF_HOME/token, XDG_CACHE_HOME/huggingface/token), sent
 * only over https to a host of HF_TOKEN_HOSTS, never to the host a redirect leads to nor over plain
 * http, with a merge through the redirect exact against float64 truth; no token, a refused token
 * and a bad token file each refused in one line; the token in no output, ever.
 *
 * The token's hosts are made the local "hub" here (`localhost:PORT`), and the global fetch is a
 * transport that sends `https://localhost:PORT/…` to the plain HTTP server on that port: the code
 * under test sees https URLs and sets every header; the servers see exactly what it sent.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { findHfToken, hfTokenPath } from '../src/io/hf-token.js';
import * as browser from '../src/index.js';
import * as node from '../src/node.js';
import { listDir, oneErrorLine, runCliInProcess, type CliResult } from './helpers/cli.js';
import { decodeSafetensors, tempDirs } from './helpers/fixtures.js';
import { SDXL_NAMES } from './helpers/page-fixtures.js';
import { kohyaKey, sdxlKohyaPair } from './helpers/sdxl-kohya-pair.js';
import { localFetch, stubTokenlessHome } from './helpers/hub-transport.js';
import { closeServer, listenLocally } from './helpers/local-server.js';

const tokenHosts = vi.hoisted(() => [] as string[]);
vi.mock('../src/io/hf-token-hosts.js', () => ({ HF_TOKEN_HOSTS: tokenHosts }));
// The idle timeout (60 s) made short for a server that stops sending.
vi.mock('../src/limits.js', async (importOriginal) => ({ ...(await importOriginal<typeof import('../src/limits.js')>()), URL_IDLE_TIMEOUT_MS: 2000 }));

const temp = tempDirs();

const GOOD = 'hf_GoodTokenQ7x9Zr4mW2kV8pL3';
const WRONG = 'hf_WrongTokenB5n1Hs6tY0cJ4aE';
/** Every token string these tests use: none may appear in any output. */
const SECRETS = [GOOD, WRONG, 'hf_FileSecretK3u8Dq2'];

// A single-file diffusers UNet (F16) and a kohya LoRA on it: r = 2, α = 3 per module.
const { base: BASE, kohya: KOHYA, mergedTruth } = sdxlKohyaPair(8, 20261206);
const FILES: Record<string, Uint8Array> = { 'sdxl unet.safetensors': BASE, 'style lora.safetensors': KOHYA };
/** The end of the adapter's header: ranges from here on are its tensor data (its α values first). */
const KOHYA_DATA_START = 8 + Number(new DataView(KOHYA.buffer, KOHYA.byteOffset).getBigUint64(0, true));


/** One request as a server saw it. */
interface Seen {
  method: string;
  path: string;
  authorization: string | undefined;
  range: string | undefined;
}

/**
 * A file's bytes, with Range requests answered 206 (as Hugging Face's CDN does); `changing` answers
 * ranges with another ETag than HEAD's, `stall` sends half of a range of the adapter's tensor data
 * and then nothing.
 */
function serveFile(name: string, request: IncomingMessage, response: ServerResponse, fault?: 'changing' | 'stall'): void {
  const body = FILES[name];
  if (!body) return void response.writeHead(404).end();
  const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
  if (!range) {
    response.writeHead(200, { 'Content-Length': body.byteLength, ETag: '"v1"' });
    return void response.end(request.method === 'HEAD' ? undefined : body);
  }
  const [start, end] = [Number(range[1]), Number(range[2])];
  const slice = body.subarray(start, end + 1);
  response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': slice.byteLength, ETag: fault === 'changing' ? '"v2"' : '"v1"' });
  if (fault === 'stall' && body === KOHYA && start >= KOHYA_DATA_START) return void response.write(slice.subarray(0, slice.byteLength >> 1));
  response.end(slice);
}

let hub: Server, cdn: Server;
let hubPort: number, cdnPort: number;
const hubSeen: Seen[] = [], cdnSeen: Seen[] = [];
/** Everything any run printed or threw, searched for the tokens at the end. */
const outputs: string[] = [];

function record(seen: Seen[], request: IncomingMessage): string[] {
  const url = new URL(request.url ?? '/', 'http://x');
  seen.push({ method: request.method ?? '', path: url.pathname, authorization: request.headers.authorization, range: request.headers.range });
  // The mode and the file's name: the first path segment and the last.
  const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
  return [segments[0], segments[segments.length - 1]];
}

/**
 * The "hub", by the first path segment: `gated` answers 401 unless sent `Bearer GOOD`, then
 * redirects (302) to the CDN, another origin, with a signature of its own in the query
 * (`gated-changing` and `gated-stall` to a CDN path of that fault); `moved`
 * redirects (307, a relative Location) to `gated` on the same host, as a renamed repository does;
 * `open` serves the file to anyone; `loop` redirects to itself.
 */
function hubAnswer(request: IncomingMessage, response: ServerResponse): void {
  const [mode, name] = record(hubSeen, request);
  if (mode === 'open') return serveFile(name, request, response);
  if (mode === 'loop') return void response.writeHead(302, { Location: request.url }).end();
  if (mode === 'moved') return void response.writeHead(307, { Location: `/gated/repo/resolve/main/${encodeURIComponent(name)}` }).end();
  if (request.headers.authorization !== `Bearer ${GOOD}`) return void response.writeHead(401).end('Invalid credentials');
  const signed = mode.replace(/^gated/, 'signed');
  response.writeHead(302, { Location: `https://localhost:${cdnPort}/${signed}/${encodeURIComponent(name)}?Signature=cdn-own-signature` }).end();
}

beforeAll(async () => {
  hub = createServer(hubAnswer);
  cdn = createServer((request, response) => {
    const [mode, name] = record(cdnSeen, request);
    const fault = ({ signed: undefined, 'signed-changing': 'changing', 'signed-stall': 'stall' } as const)[mode as 'signed'];
    if (!mode.startsWith('signed') || !request.url?.includes('Signature=cdn-own-signature')) return void response.writeHead(403).end();
    serveFile(name, request, response, fault);
  });
  [hubPort, cdnPort] = [await listenLocally(hub), await listenLocally(cdn)];
  tokenHosts.push(`localhost:${hubPort}`);
});

afterAll(async () => {
  for (const server of [hub, cdn]) await closeServer(server);
  temp.removeAll();
});

/** A home of no token, and https:// carried to the two servers. */
beforeEach(() => {
  vi.stubGlobal('fetch', localFetch(() => [hubPort, cdnPort]));
  stubTokenlessHome(() => temp.make());
  hubSeen.length = 0;
  cdnSeen.length = 0;
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.unstubAllEnvs();
});

/** A download link as the Hub's are (`/ORG/REPO/resolve/REV/FILE`), the mode as its ORG. */
const hubUrl = (mode: string, name: string, host = `localhost:${hubPort}`, scheme = 'https') => `${scheme}://${host}/${mode}/repo/resolve/main/${encodeURIComponent(name)}`;
const BASE_URL = () => hubUrl('gated', 'sdxl unet.safetensors');
const ADAPTER_URL = () => hubUrl('gated', 'style lora.safetensors');

/** Runs the CLI in this process (so the mocked hosts and the transport apply), keeping all it printed. */
async function cli(args: string[]): Promise<CliResult> {
  const run = await runCliInProcess(args);
  outputs.push(run.stdout, run.stderr);
  return run;
}

/** The one error line of a run (no other), for a run that failed. */
const oneError = oneErrorLine;

const authorizations = (seen: Seen[]) => seen.map((s) => s.authorization);

describe('a Hugging Face token with URL inputs', () => {
  it('HF_TOKEN: the hub gets it, its 302 to the CDN (another origin) does not; a relative 307 on the hub keeps it; the merge is exact', async () => {
    vi.stubEnv('HF_TOKEN', `  ${GOOD}\n`);
    const dir = temp.make();
    const out = join(dir, 'merged.safetensors');
    const run = await cli(['merge', '--base', BASE_URL(), '--adapter', hubUrl('moved', 'style lora.safetensors'), '--weight', '0.5', '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    for (const [name, want] of mergedTruth(0.5)) expect(Array.from(merged.get(name)!.values), name).toEqual(Array.from(want));
    // Every request to the hub carried the token, trimmed; the CDN served the ranges and saw none.
    expect(hubSeen.length).toBeGreaterThan(0);
    expect(new Set(authorizations(hubSeen))).toEqual(new Set([`Bearer ${GOOD}`]));
    expect(hubSeen.some((s) => s.path.startsWith('/moved/'))).toBe(true);
    expect(cdnSeen.filter((s) => s.range !== undefined).length).toBeGreaterThan(1);
    expect(authorizations(cdnSeen).filter((a) => a !== undefined)).toEqual([]);
  });

  it('--dry-run with a token: the plan is printed, the token is not', async () => {
    vi.stubEnv('HF_TOKEN', GOOD);
    const run = await cli(['merge', '--base', BASE_URL(), '--adapter', ADAPTER_URL(), '--out', join(temp.make(), 'm.safetensors'), '--dry-run']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(kohyaKey(SDXL_NAMES[0]));
    expect(new Set(authorizations(hubSeen))).toEqual(new Set([`Bearer ${GOOD}`]));
  });

  it('no token anywhere: HTTP 401 in one line naming the URL and how to give one; exit 1, nothing at --out', async () => {
    const dir = temp.make();
    const run = await cli(['merge', '--base', BASE_URL(), '--adapter', ADAPTER_URL(), '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expect(run.code).toBe(1);
    expect(oneError(run)).toBe(`error: ${BASE_URL()}: HTTP 401 Unauthorized for its size (HEAD); the file needs a login (a gated model): set HF_TOKEN to a token of an account that has accepted the model's terms, or log in with \`hf auth login\`; or download it with your account and give the file instead`);
    expect(authorizations(hubSeen).filter((a) => a !== undefined)).toEqual([]);
    expect(listDir(dir)).toEqual([]);
  });

  it('a token the hub refuses: one line saying so, naming the URL; the token is not in it', async () => {
    vi.stubEnv('HF_TOKEN', WRONG);
    const run = await cli(['inspect', ADAPTER_URL()]);
    expect(run.code).toBe(1);
    expect(oneError(run)).toBe(`error: ${ADAPTER_URL()}: HTTP 401 Unauthorized for its size (HEAD); the Hugging Face token was refused: check that it is valid and that your account has accepted the model's terms on its page`);
    expect(authorizations(hubSeen)).toEqual([`Bearer ${WRONG}`]);
  });

  it('a host not in the list never gets the token, though it is the same server', async () => {
    vi.stubEnv('HF_TOKEN', GOOD);
    const run = await cli(['inspect', hubUrl('open', 'style lora.safetensors', `127.0.0.1:${hubPort}`)]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('kohya/LyCORIS LoRA (4 modules)');
    expect(hubSeen.length).toBeGreaterThan(1);
    expect(authorizations(hubSeen).filter((a) => a !== undefined)).toEqual([]);
  });

  it('plain http never gets the token, though the host is in the list', async () => {
    vi.stubEnv('HF_TOKEN', GOOD);
    const url = hubUrl('open', 'style lora.safetensors', `localhost:${hubPort}`, 'http');
    const run = await cli(['inspect', url]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('kohya/LyCORIS LoRA (4 modules)');
    expect(hubSeen.length).toBeGreaterThan(1);
    expect(authorizations(hubSeen).filter((a) => a !== undefined)).toEqual([]);
  });

  it.each([
    ['changes on the server', 'gated-changing', /: changed on the server while it was read \(ETag "v1" → "v2"\); nothing was written; try again once it stays unchanged$/],
    ['stops sending', 'gated-stall', /: the server sent nothing for 2 s while sending bytes \d+–\d+; gave up \(check the server or the connection\)$/],
  ])('through the token\'s redirect, a file that %s is refused as without a token: one line naming the URL', async (_, mode, message) => {
    vi.stubEnv('HF_TOKEN', GOOD);
    const url = hubUrl(mode, 'style lora.safetensors');
    const run = await cli(['inspect', url]);
    expect(run.code).toBe(1);
    const line = oneError(run);
    expect(line.startsWith(`error: ${url}: `), line).toBe(true);
    expect(line).toMatch(message);
    expect(authorizations(cdnSeen).filter((a) => a !== undefined)).toEqual([]);
  });

  it('a redirect loop with a token: refused as before, after a bounded number of requests', async () => {
    vi.stubEnv('HF_TOKEN', GOOD);
    const run = await cli(['inspect', hubUrl('loop', 'style lora.safetensors')]);
    expect(run.code).toBe(1);
    expect(oneError(run)).toBe(`error: ${hubUrl('loop', 'style lora.safetensors')}: could not be fetched for its size (HEAD) (redirect count exceeded)`);
    expect(hubSeen.length).toBe(21);
  });

  it.each([
    ['HF_TOKEN_PATH', (dir: string) => { writeFileSync(join(dir, 'my-token'), `${GOOD}\n`); vi.stubEnv('HF_TOKEN_PATH', join(dir, 'my-token')); }],
    ['HF_HOME/token', (dir: string) => { writeFileSync(join(dir, 'token'), GOOD); vi.stubEnv('HF_HOME', dir); }],
    ['XDG_CACHE_HOME/huggingface/token', (dir: string) => {
      mkdirSync(join(dir, 'huggingface'));
      writeFileSync(join(dir, 'huggingface', 'token'), `${GOOD}\r\n`);
      vi.stubEnv('HF_HOME', undefined);
      vi.stubEnv('XDG_CACHE_HOME', dir);
    }],
    ['~/.cache/huggingface/token', (dir: string) => {
      mkdirSync(join(dir, '.cache', 'huggingface'), { recursive: true });
      writeFileSync(join(dir, '.cache', 'huggingface', 'token'), GOOD);
      vi.stubEnv('HF_HOME', undefined);
      vi.stubEnv('HOME', dir);
    }],
    ['HUGGING_FACE_HUB_TOKEN', () => { vi.stubEnv('HUGGING_FACE_HUB_TOKEN', GOOD); }],
  ])('the token from %s is sent to the hub', async (_, setUp) => {
    setUp(temp.make());
    const run = await cli(['inspect', ADAPTER_URL()]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('kohya/LyCORIS LoRA (4 modules)');
    expect(new Set(authorizations(hubSeen))).toEqual(new Set([`Bearer ${GOOD}`]));
  });

  it('HF_HUB_DISABLE_IMPLICIT_TOKEN=true: no token is sent, and the 401 says that variable kept it back', async () => {
    vi.stubEnv('HF_TOKEN', GOOD);
    vi.stubEnv('HF_HUB_DISABLE_IMPLICIT_TOKEN', 'true');
    const run = await cli(['inspect', ADAPTER_URL()]);
    expect(run.code).toBe(1);
    expect(oneError(run)).toBe(`error: ${ADAPTER_URL()}: HTTP 401 Unauthorized for its size (HEAD); the file needs a login (a gated model): HF_HUB_DISABLE_IMPLICIT_TOKEN is set, so no token was sent: unset it to send HF_TOKEN or \`hf auth login\`'s token, or download the file with your account and give the file instead`);
    expect(authorizations(hubSeen)).toEqual([undefined]);
  });
});

describe('which token is found, and bad token files', () => {
  it('follows huggingface_hub\'s precedence', () => {
    const dir = temp.make({ 'a-token': ' from-path \n', 'token': 'from-home', 'xdg/huggingface/token': 'from-xdg', 'home/.cache/huggingface/token': 'from-default' });
    const all = { HF_TOKEN: 'from-env', HUGGING_FACE_HUB_TOKEN: 'from-legacy', HF_TOKEN_PATH: join(dir, 'a-token'), HF_HOME: dir, XDG_CACHE_HOME: join(dir, 'xdg'), HOME: join(dir, 'home') };
    const without = (...names: string[]) => Object.fromEntries(Object.entries(all).filter(([k]) => !names.includes(k)));
    vi.stubEnv('HOME', join(dir, 'home'));
    expect(findHfToken(all)).toBe('from-env');
    // An empty HF_TOKEN gives way to the older name; one of only whitespace to the file.
    expect(findHfToken({ ...all, HF_TOKEN: '' })).toBe('from-legacy');
    expect(findHfToken({ ...all, HF_TOKEN: ' \n' })).toBe('from-path');
    expect(findHfToken(without('HF_TOKEN'))).toBe('from-legacy');
    expect(findHfToken(without('HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'))).toBe('from-path');
    expect(findHfToken(without('HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH'))).toBe('from-home');
    expect(findHfToken(without('HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HOME'))).toBe('from-xdg');
    expect(findHfToken(without('HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HOME', 'XDG_CACHE_HOME'))).toBe('from-default');
    // A token path that names no file: no token, as in huggingface_hub.
    expect(findHfToken({ HF_TOKEN_PATH: join(dir, 'none') })).toBeUndefined();
    // `~` and variables in the paths are expanded.
    expect(hfTokenPath({ HF_TOKEN_PATH: '~/t', HOME: join(dir, 'home') })).toBe(join(dir, 'home', 't'));
    expect(hfTokenPath({ HF_HOME: '$SOMEWHERE/hf', SOMEWHERE: dir })).toBe(join(dir, 'hf', 'token'));
    for (const on of ['1', 'ON', 'yes', 'True']) expect(findHfToken({ ...all, HF_HUB_DISABLE_IMPLICIT_TOKEN: on })).toBeUndefined();
    expect(findHfToken({ ...all, HF_HUB_DISABLE_IMPLICIT_TOKEN: '0' })).toBe('from-env');
  });

  it.each([
    ['larger than 4 KiB', (path: string) => writeFileSync(path, `hf_FileSecretK3u8Dq2${'x'.repeat(5000)}`), /the Hugging Face token file is 5020 bytes, more than a token \(at most 4096\)/],
    ['not plain ASCII', (path: string) => writeFileSync(path, 'hf_FileSecretK3u8Dq2\u00e9'), /the Hugging Face token file holds characters no token has \(only visible ASCII is\)/],
    ['holding a NUL', (path: string) => writeFileSync(path, 'hf_FileSecretK3u8Dq2\0'), /the Hugging Face token file holds characters no token has/],
    ['a folder', (path: string) => mkdirSync(path), /the Hugging Face token file is not a file/],
    // Opening a FIFO for reading waits for a writer: the file is opened without waiting.
    ['a FIFO (named pipe)', (path: string) => execFileSync('mkfifo', [path]), /the Hugging Face token file is not a file/],
  ])('a token file %s: one line naming the file and what to do, exit 2, no request, its content never shown', async (_, make, message) => {
    const dir = temp.make();
    const path = join(dir, 'token');
    make(path);
    vi.stubEnv('HF_HOME', dir);
    const run = await cli(['inspect', ADAPTER_URL()]);
    expect(run.code).toBe(2);
    const line = oneError(run);
    expect(line.startsWith(`error: ${path}: `), line).toBe(true);
    expect(line).toMatch(message);
    expect(line).toMatch(/; fix or remove it, set HF_TOKEN, or set HF_HUB_DISABLE_IMPLICIT_TOKEN=1 to read URLs without a token$/);
    expect(hubSeen).toEqual([]);
  });

  it('an unreadable token file: one line naming it (where permissions bind this user)', async () => {
    const dir = temp.make({ token: 'hf_FileSecretK3u8Dq2' });
    chmodSync(join(dir, 'token'), 0o000);
    vi.stubEnv('HF_HOME', dir);
    const run = await cli(['inspect', ADAPTER_URL()]);
    chmodSync(join(dir, 'token'), 0o600);
    // Root reads any file: the token is then read, and the hub refuses it.
    if (process.getuid?.() === 0) return void expect(run.code).toBe(1);
    expect(run.code).toBe(2);
    expect(oneError(run)).toBe(`error: ${join(dir, 'token')}: the Hugging Face token file could not be read (EACCES); fix or remove it, set HF_TOKEN, or set HF_HUB_DISABLE_IMPLICIT_TOKEN=1 to read URLs without a token`);
  });

  it('a bad token file is not read for a URL that would not carry the token', async () => {
    const dir = temp.make();
    writeFileSync(join(dir, 'token'), 'x'.repeat(5000));
    vi.stubEnv('HF_HOME', dir);
    const run = await cli(['inspect', hubUrl('open', 'style lora.safetensors', `127.0.0.1:${hubPort}`)]);
    expect(run.code, run.stderr).toBe(0);
  });

  it('HF_TOKEN of characters no token has: one line naming the variable, not its value', async () => {
    vi.stubEnv('HF_TOKEN', `${GOOD} \u00e9`);
    const run = await cli(['inspect', ADAPTER_URL()]);
    expect(run.code).toBe(2);
    expect(oneError(run)).toBe('error: HF_TOKEN holds characters no Hugging Face token has (only visible ASCII is); set it to the token itself');
    expect(hubSeen).toEqual([]);
  });
});

describe('the library', () => {
  const errorText = (e: unknown): string => {
    const parts: string[] = [];
    for (let x = e; x instanceof Error; x = x.cause) parts.push(x.message, x.stack ?? '', JSON.stringify(x));
    return parts.join('\n');
  };

  it('merge() from loramerge/node finds the token as the CLI does; the CDN never sees it; the merge is exact', async () => {
    vi.stubEnv('HF_TOKEN', GOOD);
    const out = join(temp.make(), 'merged.safetensors');
    await node.merge({ base: BASE_URL(), adapters: [{ source: ADAPTER_URL(), weight: -1 }], out, backend: 'cpu' });
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    for (const [name, want] of mergedTruth(-1)) expect(Array.from(merged.get(name)!.values), name).toEqual(Array.from(want));
    expect(new Set(authorizations(hubSeen))).toEqual(new Set([`Bearer ${GOOD}`]));
    expect(cdnSeen.length).toBeGreaterThan(2);
    expect(authorizations(cdnSeen).filter((a) => a !== undefined)).toEqual([]);
  });

  it('merge() takes hfToken (over HF_TOKEN) and hfToken: false; a wrong token is refused saying so, in no error text', async () => {
    vi.stubEnv('HF_TOKEN', WRONG);
    const merged = await node.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfToken: GOOD, backend: 'cpu' });
    expect(merged.blobs.length).toBe(1);
    const wrong = await node.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], backend: 'cpu' }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(node.MergeError);
    expect((wrong as Error).message).toMatch(/: HTTP 401 Unauthorized for its size \(HEAD\); the Hugging Face token was refused/);
    const off = await node.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfToken: false, backend: 'cpu' }).catch((e: unknown) => e);
    expect((off as Error).message).toBe(`${BASE_URL()}: HTTP 401 Unauthorized for its size (HEAD); the file needs a login (a gated model): hfToken is false, so no token was sent: pass your Hugging Face token as hfToken, or download the file with your account and give the file instead`);
    outputs.push(errorText(wrong), errorText(off));
  });

  it('merge() refuses a bad hfToken and a misspelt option, naming neither value', async () => {
    const bad = await node.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfToken: `${GOOD}\u00e9` }).catch((e: unknown) => e);
    expect((bad as Error).message).toBe('hfToken must be a Hugging Face token (visible ASCII, not empty) or false; the string given holds other characters or none');
    const typo = await node.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfTokn: GOOD } as never).catch((e: unknown) => e);
    expect((typo as Error).message).toBe('merge() options: unknown option "hfTokn"; did you mean "hfToken"?');
    const notString = await node.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfToken: true as never }).catch((e: unknown) => e);
    expect((notString as Error).message).toBe('hfToken must be a Hugging Face token (a string) or false, not boolean true');
    // The browser entry's merge() checks its hfToken as the Node one does.
    const browserTypo = await browser.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfTokn: GOOD } as never).catch((e: unknown) => e);
    expect((browserTypo as Error).message).toBe('merge() options: unknown option "hfTokn"; did you mean "hfToken"?');
    const browserBad = await browser.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfToken: `${GOOD}\u00e9` }).catch((e: unknown) => e);
    expect((browserBad as Error).message).toBe('hfToken must be a Hugging Face token (visible ASCII, not empty) or false; the string given holds other characters or none');
    outputs.push(errorText(browserBad));
    expect(hubSeen).toEqual([]);
    outputs.push(errorText(bad), errorText(typo), errorText(browserTypo));
  });

  it('urlByteSource from loramerge/node sends the token; the browser entry\'s reads no environment: without hfToken it sends none', async () => {
    vi.stubEnv('HF_TOKEN', GOOD);
    const source = await node.urlByteSource(ADAPTER_URL());
    expect(source.size).toBe(KOHYA.byteLength);
    expect(Array.from(await source.read(8, 16))).toEqual(Array.from(KOHYA.subarray(8, 24)));
    const explicit = await node.urlInputFileSet([ADAPTER_URL()], 'lora', { hfToken: GOOD }).open('style lora.safetensors');
    expect(explicit.size).toBe(KOHYA.byteLength);
    expect(authorizations(cdnSeen).filter((a) => a !== undefined)).toEqual([]);
    hubSeen.length = 0;
    const refused = await browser.urlByteSource(ADAPTER_URL()).catch((e: unknown) => e);
    expect((refused as Error).message).toBe(`${ADAPTER_URL()}: HTTP 401 Unauthorized for its size (HEAD); the file needs a login (a gated model): no hfToken was given, so no token was sent: pass the Hugging Face token of an account that has accepted the model's terms as hfToken, or download the file with your account and give the file instead`);
    expect(authorizations(hubSeen)).toEqual([undefined]);
    outputs.push(errorText(refused));
  });
});

describe('the browser entry\'s hfToken', () => {
  const errorText = (e: unknown): string => {
    const parts: string[] = [];
    for (let x = e; x instanceof Error; x = x.cause) parts.push(x.message, x.stack ?? '', JSON.stringify(x));
    return parts.join('\n');
  };

  it('merge() sends it to the hub, through a relative 307 on the hub, not past its 302 to the CDN; HF_TOKEN is not read; the merge is exact', async () => {
    vi.stubEnv('HF_TOKEN', WRONG);
    const { blobs } = await browser.merge({
      base: BASE_URL(), adapters: [{ source: hubUrl('moved', 'style lora.safetensors'), weight: 0.5 }], hfToken: ` ${GOOD}\n`, backend: 'cpu',
    });
    const merged = decodeSafetensors(new Uint8Array(await blobs[0].blob.arrayBuffer())).tensors;
    for (const [name, want] of mergedTruth(0.5)) expect(Array.from(merged.get(name)!.values), name).toEqual(Array.from(want));
    expect(new Set(authorizations(hubSeen))).toEqual(new Set([`Bearer ${GOOD}`]));
    expect(hubSeen.some((s) => s.path.startsWith('/moved/'))).toBe(true);
    expect(cdnSeen.filter((s) => s.range !== undefined).length).toBeGreaterThan(1);
    expect(authorizations(cdnSeen).filter((a) => a !== undefined)).toEqual([]);
  });

  it('merge() without hfToken sends none, though HF_TOKEN is set, and the 401 says to pass hfToken; hfToken: false likewise', async () => {
    vi.stubEnv('HF_TOKEN', GOOD);
    const none = await browser.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], backend: 'cpu' }).catch((e: unknown) => e);
    expect((none as Error).message).toBe(`${BASE_URL()}: HTTP 401 Unauthorized for its size (HEAD); the file needs a login (a gated model): no hfToken was given, so no token was sent: pass the Hugging Face token of an account that has accepted the model's terms as hfToken, or download the file with your account and give the file instead`);
    const off = await browser.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfToken: false, backend: 'cpu' }).catch((e: unknown) => e);
    expect((off as Error).message).toBe(`${BASE_URL()}: HTTP 401 Unauthorized for its size (HEAD); the file needs a login (a gated model): hfToken is false, so no token was sent: pass your Hugging Face token as hfToken, or download the file with your account and give the file instead`);
    expect(authorizations(hubSeen)).toEqual([undefined, undefined]);
    outputs.push(errorText(none), errorText(off));
  });

  it('a wrong hfToken is refused saying so; a host not in the list and plain http to a listed host never get it', async () => {
    const wrong = await browser.merge({ base: BASE_URL(), adapters: [ADAPTER_URL()], hfToken: WRONG, backend: 'cpu' }).catch((e: unknown) => e);
    expect((wrong as Error).message).toBe(`${BASE_URL()}: HTTP 401 Unauthorized for its size (HEAD); the Hugging Face token was refused: check that it is valid and that your account has accepted the model's terms on its page`);
    outputs.push(errorText(wrong));
    hubSeen.length = 0;
    for (const url of [hubUrl('open', 'style lora.safetensors', `127.0.0.1:${hubPort}`), hubUrl('open', 'style lora.safetensors', `localhost:${hubPort}`, 'http')]) {
      const source = await browser.urlByteSource(url, { hfToken: GOOD });
      expect(Array.from(await source.read(8, 16))).toEqual(Array.from(KOHYA.subarray(8, 24)));
    }
    expect(hubSeen.length).toBeGreaterThan(3);
    expect(authorizations(hubSeen).filter((a) => a !== undefined)).toEqual([]);
  });

  it('combineLoras and resizeLora send it as merge() does: the hub gets it, the CDN never', async () => {
    const combined = await browser.combineLoras({ adapters: [ADAPTER_URL()], method: 'cat', hfToken: GOOD, backend: 'cpu' });
    expect(combined.modules.length).toBe(4);
    const resized = await browser.resizeLora({ adapter: ADAPTER_URL(), rule: { kind: 'rank', rank: 1 }, hfToken: GOOD, backend: 'cpu' });
    expect(resized.modules.length).toBe(4);
    expect(new Set(authorizations(hubSeen))).toEqual(new Set([`Bearer ${GOOD}`]));
    expect(cdnSeen.length).toBeGreaterThan(2);
    expect(authorizations(cdnSeen).filter((a) => a !== undefined)).toEqual([]);
  });

  it('with a browser\'s fetch, which answers redirect: "manual" opaquely, the hop is asked again to follow: the merge is exact, the CDN gets no token', async () => {
    const transport = localFetch(() => [hubPort, cdnPort]);
    const requests: { url: string; redirect: string | undefined; authorization: string | undefined }[] = [];
    // As the Fetch standard has a browser do: `manual` gives an opaque-redirect answer (status 0,
    // no headers); `follow` follows, dropping Authorization at a redirect to another origin.
    const browserFetch = async (input: string, init?: RequestInit): Promise<Response> => {
      let url = new URL(input);
      let headers: Record<string, string> = { ...(init?.headers as Record<string, string> | undefined) };
      requests.push({ url: url.href, redirect: init?.redirect, authorization: headers.Authorization });
      for (;;) {
        const response = await transport(url.href, { ...init, headers, redirect: 'manual' });
        const location = response.status >= 300 && response.status < 400 ? response.headers.get('location') : null;
        if (location === null) return response;
        await response.body?.cancel();
        if (init?.redirect === 'manual') {
          return { type: 'opaqueredirect', status: 0, ok: false, statusText: '', url: '', headers: new Headers(), body: null } as unknown as Response;
        }
        const next = new URL(location, url);
        if (next.origin !== url.origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
        url = next;
      }
    };
    const { blobs } = await browser.merge({
      base: urlInputFileSetOf(BASE_URL(), browserFetch), adapters: [{ source: browser.urlInputFileSet([ADAPTER_URL()], undefined, { fetch: browserFetch, hfToken: GOOD }), weight: 2 }], backend: 'cpu',
    });
    const merged = decodeSafetensors(new Uint8Array(await blobs[0].blob.arrayBuffer())).tensors;
    for (const [name, want] of mergedTruth(2)) expect(Array.from(merged.get(name)!.values), name).toEqual(Array.from(want));
    // The first request of each file set tried `manual`; once it came back opaque, every later one followed.
    expect(requests.filter((r) => r.redirect === 'manual').length).toBe(2);
    expect(requests.filter((r) => r.redirect === 'follow').length).toBeGreaterThan(4);
    expect(new Set(requests.map((r) => r.authorization))).toEqual(new Set([`Bearer ${GOOD}`]));
    expect(new Set(authorizations(hubSeen))).toEqual(new Set([`Bearer ${GOOD}`]));
    expect(authorizations(cdnSeen).filter((a) => a !== undefined)).toEqual([]);
  });
});

/** One URL as the browser entry's InputFileSet, read with `fetch` and the token. */
const urlInputFileSetOf = (url: string, fetch: (input: string, init?: RequestInit) => Promise<Response>) => browser.urlInputFileSet([url], undefined, { fetch, hfToken: GOOD });

it('no token string appears in anything printed or thrown above', () => {
  expect(outputs.length).toBeGreaterThan(20);
  for (const text of outputs) for (const secret of SECRETS) expect(text.includes(secret), `${secret} in output`).toBe(false);
});
