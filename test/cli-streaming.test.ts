/**
 * Streaming: a base model several times larger than the memory the merge may use merges with a
 * bounded peak RSS, because tensors go through in row slabs and are never held whole.
 */
import { closeSync, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { errorLines, runCli } from './helpers/cli.js';
import { buildRawSafetensors, buildSafetensors, decodeValues, roundForDType, seededRandom, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const MB = 1024 * 1024;

it('merges a 600 MB model with peak RSS under a third of its size', async () => {
  const dir = temp.make();
  // Six 100 MB f16 tensors, each 5120 × 10240; the first and the last get a rank-2 update.
  const rows = 5120, cols = 10240, tensors = 6;
  const names = Array.from({ length: tensors }, (_, i) => `model.layers.${i}.mlp.up_proj.weight`);
  const tensorBytes = rows * cols * 2;
  const header = Object.fromEntries(names.map((n, i) => [n, { dtype: 'F16', shape: [rows, cols], data_offsets: [i * tensorBytes, (i + 1) * tensorBytes] }]));
  const prefix = buildRawSafetensors(header); // header only; the data is streamed below
  const basePath = join(dir, 'base.safetensors');
  const fd = openSync(basePath, 'w');
  writeSync(fd, prefix);
  // A cheap deterministic pattern of small f16 values (exponent 0x38..0x3b: 0.5 to 1.9).
  const chunk = new Uint16Array(8 * MB / 2);
  for (let i = 0; i < chunk.length; i++) chunk[i] = 0x3800 | ((i * 2654435761) >>> 22 & 0x3ff) | ((i & 3) << 10);
  for (let written = 0; written < tensors * tensorBytes; written += chunk.byteLength) writeSync(fd, new Uint8Array(chunk.buffer));
  closeSync(fd);
  const modelBytes = statSync(basePath).size;
  expect(modelBytes).toBeGreaterThan(600 * 1e6);

  const rand = seededRandom(9);
  const r = 2;
  const factors = (n: number) => Array.from({ length: n }, () => roundForDType(rand() - 0.5, 'F32'));
  const targets = [names[0], names[tensors - 1]];
  const a = targets.map(() => factors(r * cols));
  const b = targets.map(() => factors(rows * r));
  const adapterDir = temp.make({
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4 }),
    'adapter_model.safetensors': buildSafetensors(targets.flatMap((t, j) => [
      { name: `base_model.model.${t.replace(/\.weight$/, '')}.lora_A.weight`, dtype: 'F32' as const, shape: [r, cols], data: a[j] },
      { name: `base_model.model.${t.replace(/\.weight$/, '')}.lora_B.weight`, dtype: 'F32' as const, shape: [rows, r], data: b[j] },
    ])),
  });

  const out = join(dir, 'merged.safetensors');
  const rssFile = join(dir, 'rss.txt');
  const result = await runCli(
    ['merge', '--base', basePath, '--adapter', adapterDir, '--out', out, '--backend', 'cpu'],
    { LORAMERGE_RSS_FILE: rssFile },
    ['--import', join(__dirname, 'helpers', 'report-rss.mjs')],
  );
  expect(errorLines(result.stderr), result.stderr).toEqual([]);
  expect(result.code).toBe(0);
  const peak = Number(readFileSync(rssFile, 'utf8'));
  expect(peak, `peak RSS ${(peak / MB).toFixed(0)} MiB for a ${(modelBytes / MB).toFixed(0)} MiB model`).toBeLessThan(modelBytes / 3);
  // Same data section; the header grew by the merge's provenance metadata.
  const outFd = openSync(out, 'r');
  const lengthBytes = new Uint8Array(8);
  readSync(outFd, lengthBytes, 0, 8, 0);
  const dataStart = 8 + Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
  expect(statSync(out).size - dataStart).toBe(tensors * tensorBytes);

  // Spot-check rows of the last tensor (the end of the file) against float64 truth.
  const j = 1;
  const t = tensors - 1;
  for (const row of [0, 2047, rows - 1]) {
    const bytes = new Uint8Array(cols * 2);
    const at = dataStart + t * tensorBytes + row * cols * 2;
    readSync(outFd, bytes, 0, bytes.byteLength, at);
    const got = decodeValues(bytes, 'F16');
    const base = decodeValues(new Uint8Array(chunk.buffer, ((t * tensorBytes + row * cols * 2) % chunk.byteLength), cols * 2), 'F16');
    for (let i = 0; i < cols; i += 97) {
      const exact = base[i] + 2 * (b[j][row * r] * a[j][i] + b[j][row * r + 1] * a[j][cols + i]);
      expect(Math.abs(got[i] - exact), `row ${row} col ${i}`).toBeLessThanOrEqual(2 ** (Math.floor(Math.log2(Math.abs(exact))) - 10));
    }
  }
  closeSync(outFd);
}, 300_000);

it('merges a LyCORIS DoRA (one norm per input column) on a 1 GiB tensor in row slabs, with bounded peak RSS', async () => {
  const dir = temp.make();
  // One 16384 × 32768 f16 weight (1 GiB). dora_scale holds one magnitude per input column, so the
  // norms need every row: they take a pass over the slabs of their own before the merge.
  const rows = 16384, cols = 32768, r = 2;
  const key = 'down_blocks.0.attentions.0.proj_in.weight';
  const tensorBytes = rows * cols * 2;
  const prefix = buildRawSafetensors({ [key]: { dtype: 'F16', shape: [rows, cols], data_offsets: [0, tensorBytes] } });
  const basePath = join(dir, 'base.safetensors');
  const fd = openSync(basePath, 'w');
  writeSync(fd, prefix);
  const chunk = new Uint16Array(8 * MB / 2);
  for (let i = 0; i < chunk.length; i++) chunk[i] = 0x3800 | ((i * 2654435761) >>> 22 & 0x3ff) | ((i & 3) << 10) | ((i & 4) << 13);
  for (let written = 0; written < tensorBytes; written += chunk.byteLength) writeSync(fd, new Uint8Array(chunk.buffer));
  closeSync(fd);
  const baseValues = decodeValues(new Uint8Array(chunk.buffer), 'F16');
  const w = (o: number, c: number) => baseValues[(o * cols + c) % baseValues.length];

  const rand = seededRandom(21);
  const factors = (n: number, scale: number) => Array.from({ length: n }, () => roundForDType((rand() - 0.5) * scale, 'F32'));
  const down = factors(r * cols, 1);
  const up = factors(rows * r, 1);
  const magnitude = Array.from({ length: cols }, () => roundForDType(60 + 40 * rand(), 'F32'));
  const name = 'lora_unet_down_blocks_0_attentions_0_proj_in';
  const adapterPath = join(dir, 'dora.safetensors');
  writeFileSync(adapterPath, buildSafetensors([
    { name: `${name}.lora_down.weight`, dtype: 'F32', shape: [r, cols], data: down },
    { name: `${name}.lora_up.weight`, dtype: 'F32', shape: [rows, r], data: up },
    { name: `${name}.alpha`, dtype: 'F32', shape: [], data: [1] },
    { name: `${name}.dora_scale`, dtype: 'F32', shape: [1, cols], data: magnitude },
  ]));

  const out = join(dir, 'merged.safetensors');
  const rssFile = join(dir, 'rss.txt');
  const result = await runCli(
    ['merge', '--base', basePath, '--adapter', adapterPath, '--out', out, '--backend', 'cpu'],
    { LORAMERGE_RSS_FILE: rssFile },
    ['--import', join(__dirname, 'helpers', 'report-rss.mjs')],
  );
  expect(errorLines(result.stderr), result.stderr).toEqual([]);
  expect(result.code).toBe(0);
  const peak = Number(readFileSync(rssFile, 'utf8'));
  expect(peak, `peak RSS ${(peak / MB).toFixed(0)} MiB for a ${(tensorBytes / MB).toFixed(0)} MiB tensor`).toBeLessThan(400 * 1e6);

  // Spot-check columns against float64 truth: V = W + (α/r)·up·down, each column scaled by
  // magnitude / (‖V column‖ + eps), with eps the f32 machine epsilon LyCORIS adds.
  const outFd = openSync(out, 'r');
  const lengthBytes = new Uint8Array(8);
  readSync(outFd, lengthBytes, 0, 8, 0);
  const dataStart = 8 + Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
  const v = (o: number, c: number) => w(o, c) + 0.5 * (up[o * r] * down[c] + up[o * r + 1] * down[cols + c]);
  for (const c of [0, 1, 12345, cols - 1]) {
    let ss = 0;
    for (let o = 0; o < rows; o++) ss += v(o, c) ** 2;
    const factor = magnitude[c] / (Math.sqrt(ss) + 2 ** -23);
    for (const o of [0, 777, rows - 1]) {
      const bytes = new Uint8Array(2);
      readSync(outFd, bytes, 0, 2, dataStart + (o * cols + c) * 2);
      const got = decodeValues(bytes, 'F16')[0];
      const exact = v(o, c) * factor;
      expect(Math.abs(got - exact), `row ${o} col ${c}`).toBeLessThanOrEqual(2 ** (Math.floor(Math.log2(Math.abs(exact))) - 10));
    }
  }
  closeSync(outFd);
}, 600_000);
