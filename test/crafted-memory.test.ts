/**
 * Memory is bounded by limits, not by what a file claims: crafted files that used to take gigabytes
 * are refused by a named limit with peak RSS under 400 MB (measured by a preload, as a user runs it).
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, runCli } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const MB = 1024 * 1024;
const LIMIT = 400 * MB;

/** Writes a safetensors file from header pieces; the data section is left sparse (zeros). */
function writeCrafted(path: string, headerParts: Iterable<string>, dataBytes: number): void {
  const parts = [...headerParts].map((p) => Buffer.from(p));
  let length = parts.reduce((n, p) => n + p.length, 0);
  const pad = (8 - (length % 8)) % 8;
  parts.push(Buffer.alloc(pad, 0x20));
  length += pad;
  const fd = openSync(path, 'w');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(length));
  writeSync(fd, prefix);
  for (const p of parts) writeSync(fd, p);
  ftruncateSync(fd, 8 + length + dataBytes);
  closeSync(fd);
}

function* manyTensors(count: number): Generator<string> {
  yield '{';
  for (let i = 0; i < count; i += 10_000) {
    const chunk: string[] = [];
    for (let j = i; j < Math.min(count, i + 10_000); j++) {
      chunk.push(`${j ? ',' : ''}"l.${String(j).padStart(7, '0')}.w":{"dtype":"F32","shape":[1],"data_offsets":[${j * 4},${j * 4 + 4}]}`);
    }
    yield chunk.join('');
  }
  yield '}';
}

async function peakRss(args: string[]): Promise<{ code: number; error: string; peak: number }> {
  const rssFile = join(temp.make(), 'rss.txt');
  const result = await runCli(args, { LORAMERGE_RSS_FILE: rssFile }, ['--import', join(__dirname, 'helpers', 'report-rss.mjs')]);
  const lines = errorLines(result.stderr);
  expect(lines, result.stderr).toHaveLength(1);
  expect(result.stderr).not.toMatch(/\n\s+at |internal error/);
  return { code: result.code, error: lines[0], peak: Number(readFileSync(rssFile, 'utf8')) };
}

describe('crafted files stay under 400 MB', () => {
  const dir = temp.make({ 'adapter/adapter_config.json': JSON.stringify({ r: 1, lora_alpha: 1 }) });
  const adapter = join(dir, 'adapter');

  it('a valid 99 MB header with 1.28 M tensors: refused by MAX_TENSORS', async () => {
    const path = join(dir, 'many.safetensors');
    writeCrafted(path, manyTensors(1_280_000), 1_280_000 * 4);
    writeCrafted(join(adapter, 'adapter_model.safetensors'), ['{"base_model.model.l.0000000.lora_A.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"base_model.model.l.0000000.lora_B.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]}}'], 8);
    for (const args of [['inspect', path], ['merge', '--base', path, '--adapter', adapter, '--out', join(dir, 'out.safetensors')]]) {
      const { code, error, peak } = await peakRss(args);
      expect(code).toBe(1);
      expect(error).toMatch(/many\.safetensors: more than 160000 tensors in one file \(the limit MAX_TENSORS\)/);
      expect(peak, `peak RSS ${(peak / MB).toFixed(0)} MiB`).toBeLessThan(LIMIT);
    }
  });

  it('a 48 MB header of nested arrays: refused by MAX_HEADER_NESTING', async () => {
    const path = join(dir, 'nested.safetensors');
    const depth = 24_000_000;
    writeCrafted(path, ['{"x":{"dtype":"F32","shape":', '['.repeat(depth), ']'.repeat(depth), ',"data_offsets":[0,4]}}'], 4);
    const { code, error, peak } = await peakRss(['inspect', path]);
    expect(code).toBe(1);
    expect(error).toMatch(/nested\.safetensors: header nests deeper than 64 levels \(the limit MAX_HEADER_NESTING\)/);
    expect(peak, `peak RSS ${(peak / MB).toFixed(0)} MiB`).toBeLessThan(LIMIT);
  });

  it('a rank-4096 adapter: refused by MAX_RANK before its factors are read', async () => {
    const d = 4096, r = 4096;
    const basePath = join(dir, 'base4096.safetensors');
    writeCrafted(basePath, [JSON.stringify({ 'model.layers.0.self_attn.q_proj.weight': { dtype: 'F16', shape: [d, d], data_offsets: [0, d * d * 2] } })], d * d * 2);
    const big = join(dir, 'rank4096');
    mkdirSync(big);
    writeFileSync(join(big, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: r }));
    writeCrafted(join(big, 'adapter_model.safetensors'), [JSON.stringify({
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { dtype: 'F32', shape: [r, d], data_offsets: [0, r * d * 4] },
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': { dtype: 'F32', shape: [d, r], data_offsets: [r * d * 4, 2 * r * d * 4] },
    })], 2 * r * d * 4);
    const { code, error, peak } = await peakRss(['merge', '--base', basePath, '--adapter', big, '--out', join(dir, 'o.safetensors'), '--backend', 'cpu']);
    expect(code).toBe(1);
    expect(error).toMatch(/module "model\.layers\.0\.self_attn\.q_proj": rank 4096 is above the limit of 1024 \(MAX_RANK\)/);
    expect(peak, `peak RSS ${(peak / MB).toFixed(0)} MiB`).toBeLessThan(LIMIT);
  });
});
