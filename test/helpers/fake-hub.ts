/**
 * A tiny PEFT LoRA on a tiny Llama-like base, its merge in float64, and a local server laid out as
 * the Hugging Face Hub's download links are (`ORG/NAME/resolve/REV/FILE`), for the tests of Hub
 * URLs as adapter sources (test/library-hub-adapters.test.ts, library-hub-jobs, node-adapter-jobs,
 * hf-endpoint, cli-hub-adapters), with the hooks that start it for a test file (useFakeHub) and a
 * command-line merge checked against that float64 truth (expectExactCliMerge).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect, vi } from 'vitest';
import { listDir, runCliInProcess } from './cli.js';
import { localFetch, stubTokenlessHome } from './hub-transport.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom } from './fixtures.js';
import { closeServer, listenLocally } from './local-server.js';

const DIM = 16, V_ROWS = 8, R = 2, ALPHA = 8;
/** The adapter's rank (its α is 8: scale 4). */
export const RANK = R;
/** The base's two weights, each module's (out, in). */
export const SHAPES: Readonly<Record<string, [number, number]>> = {
  'model.layers.0.self_attn.q_proj': [DIM, DIM],
  'model.layers.0.self_attn.v_proj': [V_ROWS, DIM],
};

const rand = seededRandom(20261215);
/** The base (F16), one safetensors file. */
export const BASE = buildSafetensors(Object.entries(SHAPES).map(([m, [rows, cols]]) => ({ name: `${m}.weight`, dtype: 'F16' as const, shape: [rows, cols], data: randomValues(rows * cols, rand, 0.5) })));
/** Each module's PEFT factors, f32 values: A r × in, B out × r. */
const FACTORS = new Map(Object.entries(SHAPES).map(([m, [rows, cols]]) => [m, {
  a: randomValues(R * cols, rand, 0.3).map(Math.fround), b: randomValues(rows * R, rand, 0.3).map(Math.fround),
}]));
/** The PEFT adapter's adapter_config.json. */
export const PEFT_CONFIG = JSON.stringify({ peft_type: 'LORA', r: R, lora_alpha: ALPHA, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: 'org/tiny-llama', task_type: 'CAUSAL_LM' });
/** The PEFT adapter's adapter_model.safetensors. */
export const PEFT_WEIGHTS = buildSafetensors([...FACTORS].flatMap(([m, f]) => [
  { name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32' as const, shape: [R, SHAPES[m][1]], data: f.a },
  { name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32' as const, shape: [SHAPES[m][0], R], data: f.b },
]), { format: 'pt' });

/** ΔW = (α/r)·B·A of module `m`, in float64. */
export function moduleDelta(m: string): Float64Array {
  const [rows, cols] = SHAPES[m];
  const { a, b } = FACTORS.get(m)!;
  const out = new Float64Array(rows * cols);
  for (let o = 0; o < rows; o++) {
    for (let i = 0; i < cols; i++) {
      let s = 0;
      for (let k = 0; k < R; k++) s += b[o * R + k] * a[k * cols + i];
      out[o * cols + i] = (ALPHA / R) * s;
    }
  }
  return out;
}

/** Each base weight merged at `weight`: W + w·(α/r)·B·A in float64, rounded once to F16. */
export function mergedTruth(weight: number): Map<string, Float64Array> {
  const base = decodeSafetensors(BASE).tensors;
  return new Map(Object.keys(SHAPES).map((m) => {
    const w = base.get(`${m}.weight`)!.values;
    const d = moduleDelta(m);
    return [`${m}.weight`, Float64Array.from(w, (x, i) => roundForDType(x + weight * d[i], 'F16'))];
  }));
}

/** One request a fake Hub saw. */
export interface HubRequest {
  /** The path as sent (percent-encoded). */
  raw: string;
  /** The path's segments percent-decoded, joined by `/`, without the leading one. */
  path: string;
  authorization: string | undefined;
}

/** A fake Hub, listening on 127.0.0.1. */
export interface FakeHub {
  port: number;
  /** Every request, in order; clear it with `seen.length = 0`. */
  seen: HubRequest[];
  close(): Promise<void>;
}

/**
 * Starts a server that serves `files` by their decoded path (Range requests answered 206), where
 * a path under `gated/` answers 401 unless sent `Bearer ${token}`, and `redirect(path)` (where it
 * gives a Location) answers 302 there instead, and `status(path)` (where it gives one) answers that
 * HTTP status with no file.
 */
export async function startFakeHub(
  files: ReadonlyMap<string, Uint8Array | string>, token: string, redirect?: (path: string) => string | undefined, status?: (path: string) => number | undefined,
): Promise<FakeHub> {
  const seen: HubRequest[] = [];
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const raw = new URL(request.url ?? '/', 'http://x').pathname;
    const path = raw.split('/').slice(1).map(decodeURIComponent).join('/');
    seen.push({ raw, path, authorization: request.headers.authorization });
    if (path.startsWith('gated/') && request.headers.authorization !== `Bearer ${token}`) return void response.writeHead(401).end('Invalid credentials');
    const location = redirect?.(path);
    if (location !== undefined) return void response.writeHead(302, { Location: location }).end();
    const failing = status?.(path);
    if (failing !== undefined) return void response.writeHead(failing).end('failing');
    const stored = files.get(path);
    if (stored === undefined) return void response.writeHead(404).end('Entry not found');
    const body = typeof stored === 'string' ? new TextEncoder().encode(stored) : stored;
    const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
    if (!range) {
      response.writeHead(200, { 'Content-Length': body.byteLength, ETag: '"v1"' });
      return void response.end(request.method === 'HEAD' ? undefined : body);
    }
    const [start, end] = [Number(range[1]), Math.min(Number(range[2]), body.byteLength - 1)];
    response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': end - start + 1, ETag: '"v1"' });
    response.end(body.subarray(start, end + 1));
  });
  const port = await listenLocally(server);
  return { port, seen, close: () => closeServer(server) };
}

/**
 * A fake Hub for the tests of one file, on vitest's hooks: started before them with `files` and
 * `token`, its host (`localhost:PORT`) pushed onto `tokenHosts` (the array the file's vi.mock gives
 * as HF_TOKEN_HOSTS), the global fetch carried to it (hub-transport.ts) and no Hugging Face token in
 * the environment for each test, its requests counted afresh per test; closed, and `temp` removed,
 * after them. The returned object's `hub` is the server once started; `status` as startFakeHub's.
 */
export function useFakeHub(files: ReadonlyMap<string, Uint8Array | string>, token: string, tokenHosts: string[],
  temp: { make(): string; removeAll(): void }, status?: (path: string) => number | undefined): { readonly hub: FakeHub } {
  let hub: FakeHub | undefined;
  beforeAll(async () => {
    hub = await startFakeHub(files, token, undefined, status);
    tokenHosts.push(`localhost:${hub.port}`);
  });
  afterAll(async () => {
    await hub?.close();
    temp.removeAll();
  });
  beforeEach(() => {
    vi.stubGlobal('fetch', localFetch(() => [hub!.port]));
    stubTokenlessHome(() => temp.make());
    hub!.seen.length = 0;
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.unstubAllEnvs();
  });
  return { get hub() { return hub!; } };
}

/**
 * `loramerge merge` (in this process) of `adapter` into BASE, on disk in a new folder of `temp`,
 * at `weight`: exit 0, only the merged file written beside the base, and its weights exactly
 * mergedTruth(weight).
 */
export async function expectExactCliMerge(temp: { make(files?: Record<string, Uint8Array | string>): string }, adapter: string, weight = 1): Promise<void> {
  const dir = temp.make({ 'base.safetensors': BASE });
  const out = join(dir, 'merged.safetensors');
  const run = await runCliInProcess(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', adapter, '--weight', String(weight), '--out', out, '--backend', 'cpu']);
  expect(run.code, run.stderr).toBe(0);
  // The output is named as given, after the base; nothing else is written beside it.
  expect(listDir(dir)).toEqual(['base.safetensors', 'merged.safetensors']);
  for (const [name, got, want] of mergedAgainstTruth(new Uint8Array(readFileSync(out)), weight)) expect(got, name).toEqual(want);
}

/** The merged weights of a safetensors file against mergedTruth(weight), each as [name, got, want]. */
export function mergedAgainstTruth(bytes: Uint8Array, weight: number): [string, number[], number[]][] {
  const merged = decodeSafetensors(bytes).tensors;
  return [...mergedTruth(weight)].map(([name, want]) => [name, Array.from(merged.get(name)?.values ?? []), Array.from(want)]);
}
