/**
 * Tensors of very wide rows on the CPU backend. Its WebAssembly kernel never cuts a row, and pads
 * a short block to four rows in scratch (64 bytes a column), so a single row of 2^26 f32 (a 1 × N
 * linear of 256 MB) asked for about 10 GB of a memory that addresses 4 GB: the 32-bit scratch size
 * wrapped and the merge died with "internal error: memory access out of bounds" after 2.9 GB.
 * Such ops are refused in one line naming the tensor and MAX_ROW_KERNEL_BYTES; rows under it merge.
 */
import { closeSync, existsSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { rowsPerBlock } from '../src/engine/cpu/plain-merge.js';
import { jobBytes } from '../src/engine/cpu/wasm-kernel.js';
import type { MergeOp } from '../src/engine/merge-op.js';
import { MergeError } from '../src/errors.js';
import { MAX_ROW_KERNEL_BYTES } from '../src/limits.js';
import type { ByteSource, InputFileSet } from '../src/io/types.js';
import { assertPlanValid } from '../src/plan/merge-plan.js';
import { prepareMerge } from '../src/pipeline/prepare-merge.js';
import { errorLines, runCli } from './helpers/cli.js';
import { headerOf } from './helpers/deepseek-v3-headers.js';
import { tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const bytesOf = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A rank-1 LoRA term on one row of `cols` (a score head's weight [1, cols]): ΔW = scale · b · a. */
function oneRowOp(cols: number, wDtype: 'F32' | 'BF16', w: Uint8Array, a: Float32Array, b: number, scale: number): MergeOp {
  return {
    name: 'score.weight', rows: 1, cols, layout: 'out-in', base: { dtype: wDtype, data: w },
    terms: [{ a: { dtype: 'F32', data: bytesOf(a) }, b: { dtype: 'F32', data: bytesOf(new Float32Array([b])) }, rank: 1, scale }],
    outDtype: wDtype,
  };
}

describe('wide rows on the CPU kernel', () => {
  it('counts a job\'s memory in float64: a row of 2^26 columns is about 10 GB, not a wrapped 32-bit size', () => {
    // f64 sums (F32 out): right 4, norms 8, scratch 64, W 4, out 8, listed 4 bytes a column.
    expect(jobBytes(1, 2 ** 26, 1, true, 4, 8, false, true)).toBe(4 * 2 ** 26 + 8 * 2 ** 26 + 1024 + 32 + 64 * 2 ** 26 + 64 + 8 + 8 + 16 * 2 ** 26 + 112);
    expect(jobBytes(1, 2 ** 26, 1, true, 4, 8, false, true)).toBeGreaterThan(2 ** 32);
  });

  it('refuses a 1 × 2^24 row in one line naming the tensor and the limit, before the kernel runs', async () => {
    const cols = 2 ** 24;
    const backend = new CpuBackend('requested');
    try {
      // BF16 in and out (f32 sums): 80 bytes a column, 1280 MiB for the row.
      const op = oneRowOp(cols, 'BF16', new Uint8Array(cols * 2), new Float32Array(cols), 1, 1);
      const e = await backend.merge(op).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(MergeError);
      expect((e as MergeError).code).toBe('LIMIT_EXCEEDED');
      expect((e as MergeError).message).toBe(
        `tensor "score.weight": rows of ${cols} elements at rank 1 take ${Math.ceil(jobBytes(1, cols, 1, false, 2, 2, false, true) / 2 ** 20)} MiB of CPU kernel memory, above the limit MAX_ROW_KERNEL_BYTES (1024 MiB): no real weight has rows this wide; check that the base is the model the adapter was trained on`);
      expect((e as MergeError).message).not.toContain('\n');
    } finally {
      backend.dispose();
    }
  });

  it('merges a single row of 2^21 f32 under the limit, each element W + s·b·a rounded once', async () => {
    const cols = 2 ** 21;
    expect(jobBytes(1, cols, 1, true, 4, 8, false, true)).toBeLessThan(MAX_ROW_KERNEL_BYTES);
    const w = new Float32Array(cols), a = new Float32Array(cols);
    for (let i = 0; i < cols; i++) {
      w[i] = ((i * 7) % 1024) / 1024 - 0.5;
      a[i] = Math.fround(Math.sin(i) * 0.37);
    }
    const b = Math.fround(0.3), scale = 2 / 3;
    const backend = new CpuBackend('requested');
    try {
      const out = new Float32Array((await backend.merge(oneRowOp(cols, 'F32', bytesOf(w), a, b, scale))).slice().buffer);
      let wrong = 0;
      for (let i = 0; i < cols; i++) if (out[i] !== Math.fround(w[i] + scale * (b * a[i]))) wrong++;
      expect(wrong).toBe(0);
    } finally {
      backend.dispose();
    }
  });
});

/**
 * Files whose safetensors hold only their headers: a read of any byte past a header (tensor data)
 * throws and is counted, so a plan that reads no tensor data is all that can succeed.
 */
function headerOnlyFiles(name: string, files: Record<string, { header: Uint8Array; size: number } | string>, dataReads: string[]): InputFileSet {
  return {
    name,
    list: () => Object.keys(files).sort(),
    async open(path): Promise<ByteSource> {
      const f = files[path];
      if (typeof f === 'string') throw new Error(`${path} is text`);
      return {
        name: `${name}/${path}`,
        size: f.size,
        async read(offset, length) {
          if (offset + length > f.header.byteLength) {
            dataReads.push(`${path} [${offset}, ${offset + length})`);
            throw new Error(`tensor data of ${path} read`);
          }
          return f.header.slice(offset, offset + length);
        },
        async close() {},
      };
    },
    async readText(path) {
      const f = files[path];
      if (typeof f !== 'string') throw new Error(`${path} is not text`);
      return f;
    },
  };
}

/** A PEFT LoRA of rank r on `module` (out × in features as given), as PEFT saves it. */
function peftLora(module: string, r: number, out: number, inFeatures: number, alpha = 2 * r): Record<string, { header: Uint8Array; size: number } | string> {
  return {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: alpha, target_modules: [module.split('.').pop()], task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B' }),
    'adapter_model.safetensors': headerOf([
      { name: `base_model.model.${module}.lora_A.weight`, dtype: 'F32', shape: [r, inFeatures] },
      { name: `base_model.model.${module}.lora_B.weight`, dtype: 'F32', shape: [out, r] },
    ]),
  };
}

/**
 * The least the kernel's memory holds for one row of `cols` (a multiple of 8) at summed rank r,
 * whatever else is chosen: the right factor (4·r a column), its column norms (4), the scratch
 * (1024 + 32·r, and 64 a column), the certification block (64), the left factor (4·r) and its
 * norm (4) for the one row, W and the output at one byte each, and seven 16-byte alignments.
 */
function leastBytes(cols: number, r: number): number {
  return cols * (4 * r + 4 + 64 + 1 + 1) + 1024 + 32 * r + 64 + 4 * r + 4 + 7 * 16;
}

const limitLine = (adapter: string, tensor: string, shape: number[], cols: number, r: number) =>
  `${adapter}: tensor "${tensor}" (${shape.join(', ')}): rows of ${cols} elements at rank ${r} take at least ${Math.ceil(leastBytes(cols, r) / 2 ** 20)} MiB of CPU kernel memory, above the limit MAX_ROW_KERNEL_BYTES (1024 MiB): no real weight has rows this wide; check that the base is the model the adapter was trained on`;

describe('row blocks count the left factor', () => {
  // A block's rows each hold `rank` left values: 8-column rows at summed rank 2048 (a 262,144 × 8
  // weight) cut by W's bytes alone gave the pool 65,536-row jobs of 1 GiB of left factor, which
  // tripped the kernel's guard as an internal error.
  const plan = (cols: number, rank: number, w: 'F32' | 'BF16', kernelOutBytes: number) =>
    ({ p: { op: { cols } }, tf: { rank }, w: { dtype: w, data: new Uint8Array(0) }, kernelOutBytes });
  it('keeps a pool block of narrow rows at rank 2048 within the block size and the kernel limit', () => {
    const cap = 2 * 1024 * 1024; // the pool's block cap
    const step = rowsPerBlock(plan(8, 2048, 'F32', 8), cap);
    expect(step % 4).toBe(0);
    expect(step * 2048 * 8).toBeLessThanOrEqual(cap);
    expect(jobBytes(step, 8, 2048, true, 4, 8, false, true)).toBeLessThan(MAX_ROW_KERNEL_BYTES / 64);
  });
  it('still cuts ordinary rows by their W bytes, four rows at least', () => {
    // 4096 bf16 columns, f32 sums out as bf16 (2 bytes), rank 64: 8192 + 65·8 bytes a row.
    expect(rowsPerBlock(plan(4096, 64, 'BF16', 2), 256 * 1024)).toBe(Math.floor(256 * 1024 / (8192 + 65 * 8) / 4) * 4);
    expect(rowsPerBlock(plan(2 ** 20, 1, 'F32', 8), 256 * 1024)).toBe(4);
  });
});

describe('rows too wide for the CPU kernel, refused by the plan', () => {
  it('refuses a 1 × 2^26 f32 lm_head under a LoRA from the headers alone, reading no tensor data', async () => {
    // Read and factored before the kernel refused it, this peaked at 1.9 GB of RSS.
    const cols = 2 ** 26;
    const reads: string[] = [];
    const base = headerOnlyFiles('base', { 'model.safetensors': headerOf([{ name: 'lm_head.weight', dtype: 'F32', shape: [1, cols] }]) }, reads);
    const adapter = headerOnlyFiles('wide-lora', peftLora('lm_head', 1, 1, cols), reads);
    const prepared = await prepareMerge(base, [{ files: adapter, weight: 1 }]);
    expect(reads).toEqual([]);
    const line = limitLine('wide-lora', 'lm_head.weight', [1, cols], cols, 1);
    expect(prepared.plan.problems.map((p) => [p.code, p.message])).toEqual([['LIMIT_EXCEEDED', line]]);
    expect(() => assertPlanValid(prepared.plan)).toThrow(line);
  });

  it('counts the summed rank of every adapter on the tensor: two rank-8 LoRAs on rows of 2^23 each fit, together they do not', async () => {
    // Llama's mlp.down_proj, its rows (intermediate_size) 2^23 wide: at rank 8 one row's job takes 816 MiB, at 16 it takes 1072.
    const cols = 2 ** 23, rows = 8, module = 'model.layers.0.mlp.down_proj';
    expect(leastBytes(cols, 8)).toBeLessThan(MAX_ROW_KERNEL_BYTES);
    expect(leastBytes(cols, 16)).toBeGreaterThan(MAX_ROW_KERNEL_BYTES);
    const reads: string[] = [];
    const base = () => headerOnlyFiles('base', { 'model.safetensors': headerOf([
      { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [128, rows] },
      { name: `${module}.weight`, dtype: 'BF16', shape: [rows, cols] },
    ]) }, reads);
    const first = headerOnlyFiles('first', peftLora(module, 8, rows, cols), reads);
    const second = headerOnlyFiles('second', peftLora(module, 8, rows, cols, 8), reads);
    expect((await prepareMerge(base(), [{ files: first, weight: 1 }])).plan.problems).toEqual([]);
    const both = await prepareMerge(base(), [{ files: first, weight: 1 }, { files: second, weight: 0.5 }]);
    expect(both.plan.problems.map((p) => p.message)).toEqual([limitLine('first', `${module}.weight`, [rows, cols], cols, 16)]);
    expect(reads).toEqual([]);
  });

  it('shows the refusal in --dry-run, and a merge refuses it in the same one line, writing nothing', async () => {
    const cols = 2 ** 26;
    const dir = temp.make({});
    // Sparse files: the declared tensors' bytes are holes, so the fixture takes no disk.
    const write = (path: string, f: { header: Uint8Array; size: number }) => {
      const fd = openSync(path, 'w');
      writeSync(fd, f.header);
      ftruncateSync(fd, f.size);
      closeSync(fd);
    };
    write(join(dir, 'base.safetensors'), headerOf([{ name: 'lm_head.weight', dtype: 'F32', shape: [1, cols] }]));
    const adapterDir = temp.make({ 'adapter_config.json': peftLora('lm_head', 1, 1, cols)['adapter_config.json'] as string });
    write(join(adapterDir, 'adapter_model.safetensors'), peftLora('lm_head', 1, 1, cols)['adapter_model.safetensors'] as { header: Uint8Array; size: number });
    const line = limitLine(adapterDir, 'lm_head.weight', [1, cols], cols, 1);
    const dry = await runCli(['merge', '--dry-run', '--base', join(dir, 'base.safetensors'), '--adapter', adapterDir]);
    expect(dry.code).toBe(1);
    expect(dry.stdout.split('\n')).toContain(`problem: ${line}`);
    expect(errorLines(dry.stderr)).toEqual([`error: ${line}`]);
    const out = join(dir, 'merged.safetensors');
    const run = await runCli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', adapterDir, '--out', out, '--backend', 'cpu']);
    expect(run.code).toBe(1);
    expect(errorLines(run.stderr)).toEqual([`error: ${line}`]);
    expect(run.stderr).not.toMatch(/backend:|\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });
});
