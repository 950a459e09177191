/**
 * The one-call merge() of both entry points on inputs an embedder has: files served over HTTP
 * (read with Range requests, never downloaded whole), in-memory Files, and paths; its refusals:
 * a plan with problems, an unknown dtype, an output that is an input. Outputs are checked against
 * float64 truth computed here.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { merge as browserMerge } from '../src/merge.js';
import { merge } from '../src/node-merge.js';
import { generateSample } from '../src/sample/index.js';
import { checkMerged, readSafetensors } from './helpers/demo-merge-check.js';
import { tempDirs } from './helpers/fixtures.js';
import { llamaWithPeft, sdxlWithKohya } from './helpers/page-fixtures.js';
import { closeServer, listenLocally } from './helpers/local-server.js';

const dirs = tempDirs();
let server: Server;
let origin: string;
const files = new Map<string, Uint8Array>();
const ranges: string[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    const body = files.get(request.url ?? '');
    if (!body) return void response.writeHead(404).end();
    const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
    if (range) {
      ranges.push(request.headers.range!);
      const [start, end] = [Number(range[1]), Number(range[2])];
      response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': end - start + 1 });
      return void response.end(body.subarray(start, end + 1));
    }
    response.writeHead(200, { 'Content-Length': body.byteLength });
    response.end(request.method === 'HEAD' ? undefined : body);
  });
  origin = `http://127.0.0.1:${await listenLocally(server)}`;
});

afterAll(async () => {
  await closeServer(server);
  dirs.removeAll();
});

function truth(fixture: ReturnType<typeof llamaWithPeft>, weight: number) {
  return [{ tensors: readSafetensors(fixture.adapter), scale: weight * (fixture.alpha / fixture.rank) }];
}

describe('merge() in one call', () => {
  it('reads a base and an adapter over HTTP with Range requests and writes a file on disk', async () => {
    const fixture = llamaWithPeft(21);
    for (const [path, bytes] of Object.entries(fixture.files)) files.set(`/repo/${path}`, typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes);
    const out = join(dirs.make(), 'merged.safetensors');
    const result = await merge({
      base: `${origin}/repo/llama.safetensors`,
      adapters: [{ source: [`${origin}/repo/llama-lora/adapter_config.json`, `${origin}/repo/llama-lora/adapter_model.safetensors`], weight: -0.75 }],
      out,
      backend: 'cpu',
    });
    expect(result.files).toEqual(['llama.safetensors']);
    expect(result.plan.updates.length).toBe(4);
    expect(ranges.length).toBeGreaterThan(2);
    checkMerged(new Uint8Array(readFileSync(out)), readSafetensors(fixture.base), truth(fixture, -0.75));
  });

  it('takes Files in a browser-style call and returns Blobs, with progress and a chosen dtype', async () => {
    const sample = await generateSample('small');
    const asFiles = (record: Record<string, Uint8Array>) => Object.entries(record).map(([p, b]) => new File([b as Uint8Array<ArrayBuffer>], p));
    const phases = new Set<string>();
    const result = await browserMerge({
      base: asFiles(sample.base), adapters: [asFiles(sample.adapter)], dtype: 'f32', backend: 'cpu',
      onProgress: (e) => phases.add(e.phase),
    });
    expect(result.blobs.map((b) => b.path)).toEqual(['model.safetensors', 'config.json']);
    expect([...phases]).toEqual(['merge', 'done']);
    const config = JSON.parse(new TextDecoder().decode(sample.adapter['adapter_config.json']));
    const bytes = new Uint8Array(await result.blobs[0].blob.arrayBuffer());
    checkMerged(bytes, readSafetensors(sample.base['model.safetensors']),
      [{ tensors: readSafetensors(sample.adapter['adapter_model.safetensors']), scale: config.lora_alpha / config.r }], 'F32');
  });

  it('refuses a plan with problems, an unknown dtype and an output that is an input, leaving nothing', async () => {
    const llama = llamaWithPeft(22);
    const sdxl = sdxlWithKohya(23);
    const dir = dirs.make({ ...llama.files, ...sdxl.files });
    const out = join(dir, 'out.safetensors');
    await expect(merge({ base: join(dir, 'llama.safetensors'), adapters: [join(dir, 'sdxl-style.safetensors')], out }))
      .rejects.toMatchObject({ code: 'UNKNOWN_MODULE', message: expect.stringMatching(/\/sdxl-style\.safetensors: this adapter is for a diffusion UNet, but the base is a language model: none of its 4 modules has a tensor there/) });
    await expect(merge({ base: join(dir, 'llama.safetensors'), adapters: [join(dir, 'llama-lora')], out, dtype: 'f8' as 'f16' }))
      .rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringContaining('f8') });
    await expect(merge({ base: join(dir, 'llama.safetensors'), adapters: [join(dir, 'llama-lora')], out: join(dir, 'llama.safetensors') }))
      .rejects.toMatchObject({ code: 'OUTPUT_IS_INPUT' });
    expect(existsSync(out)).toBe(false);
    expect(readFileSync(join(dir, 'llama.safetensors'))).toEqual(Buffer.from(llama.base));
  });

  it('refuses an out path named for what the merged model is not, as the command line does, leaving nothing', async () => {
    const sample = await generateSample('small');
    const base = dirs.make(sample.base), adapter = dirs.make(sample.adapter);
    const dir = dirs.make();
    // A folder base gives a folder: a weight file's name for it would name a folder so.
    await expect(merge({ base, adapters: [adapter], out: join(dir, 'merged.safetensors'), backend: 'cpu' })).rejects.toMatchObject({
      code: 'BAD_ARGUMENT',
      message: `out "${join(dir, 'merged.safetensors')}": the base is a folder, so the merged model is a folder of the same files; name out as a folder, without .safetensors (or, where the base's weights are one file, give that file as base for one merged file)`,
    });
    // A safetensors base gives a safetensors file, whatever the name says.
    await expect(merge({ base: join(base, 'model.safetensors'), adapters: [adapter], out: join(dir, 'merged.gguf'), backend: 'cpu' })).rejects.toMatchObject({
      code: 'BAD_ARGUMENT',
      message: `out "${join(dir, 'merged.gguf')}": the base is a safetensors model and the merged model is written in the base's format, not GGUF (loramerge does not convert between safetensors and GGUF); name the output .safetensors`,
    });
    expect(readdirSync(dir)).toEqual([]);
    // The names that fit merge.
    await merge({ base, adapters: [adapter], out: join(dir, 'merged'), backend: 'cpu' });
    await merge({ base: join(base, 'model.safetensors'), adapters: [adapter], out: join(dir, 'merged.safetensors'), backend: 'cpu' });
    expect(readdirSync(dir).sort()).toEqual(['merged', 'merged.safetensors']);
    const config = JSON.parse(new TextDecoder().decode(sample.adapter['adapter_config.json']));
    const expected = [{ tensors: readSafetensors(sample.adapter['adapter_model.safetensors']), scale: config.lora_alpha / config.r }];
    checkMerged(new Uint8Array(readFileSync(join(dir, 'merged.safetensors'))), readSafetensors(sample.base['model.safetensors']), expected);
  });

  it('refuses a non-empty output folder unless overwrite, which replaces it whole once merged', async () => {
    const sample = await generateSample('small');
    const base = dirs.make(sample.base), adapter = dirs.make(sample.adapter);
    const out = dirs.make({ 'notes.txt': 'mine' });
    await expect(merge({ base, adapters: [adapter], out, backend: 'cpu' }))
      .rejects.toMatchObject({ code: 'OUTPUT_EXISTS', message: `${out}: folder exists and is not empty; choose another out, or pass overwrite: true to replace it once the merge has succeeded` });
    expect(readdirSync(out)).toEqual(['notes.txt']);
    await expect(merge({ base, adapters: [adapter], out, overwrite: 'yes' as unknown as boolean }))
      .rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringContaining('overwrite must be true or false') });
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const result = await merge({ base, adapters: [adapter], out, backend: 'cpu', overwrite: true });
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(result.files.sort()).toEqual(['config.json', 'model.safetensors']);
    const config = JSON.parse(new TextDecoder().decode(sample.adapter['adapter_config.json']));
    checkMerged(new Uint8Array(readFileSync(join(out, 'model.safetensors'))), readSafetensors(sample.base['model.safetensors']),
      [{ tensors: readSafetensors(sample.adapter['adapter_model.safetensors']), scale: config.lora_alpha / config.r }]);
  });
});
