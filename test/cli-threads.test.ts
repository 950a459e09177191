/**
 * `merge --threads N`: the CPU merge on N threads (the calling one included), reported in the
 * backend line, with the same exact result; on WebGPU the backend line names the N threads that run
 * what the GPU leaves to the CPU; a count that is not an integer from 1 to 1024 is one usage line.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../src/cli/args.js';
import { defaultCpuThreads } from '../src/engine/cpu/default-threads.js';
import { expectOneLine, mergeArgs, runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, roundForDType, randomValues, seededRandom, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

// A Llama-style q_proj big enough to be cut into row pieces for the worker threads.
const rows = 320;
const cols = 256;
const rank = 4;
const alpha = 8;
const rand = seededRandom(41);
const w = randomValues(rows * cols, rand).map((x) => roundForDType(x, 'F16'));
const a = randomValues(rank * cols, rand, 0.1).map(Math.fround);
const b = randomValues(rows * rank, rand, 0.1).map(Math.fround);
const module = 'model.layers.0.self_attn.q_proj';

/** W + (α/r)·B·A in float64, rounded once to f16. */
function truth(): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let k = 0; k < rank; k++) s += b[i * rank + k] * a[k * cols + j];
      out[i * cols + j] = roundForDType(w[i * cols + j] + (alpha / rank) * s, 'F16');
    }
  }
  return out;
}

/**
 * Merges the q_proj LoRA through the CLI (`extra` arguments, `nodeArgs` before the script), expects
 * the backend line to say `threads` CPU threads (or to match `line`), and every element to be the float64 truth.
 */
async function mergeOnThreads(threads: number, extra: string[], nodeArgs: string[] = [], line?: RegExp, skip?: (stderr: string) => void): Promise<string> {
  const base = join(temp.make({ 'model.safetensors': buildSafetensors([{ name: `${module}.weight`, dtype: 'F16', shape: [rows, cols], data: w }]) }), 'model.safetensors');
  const adapter = temp.make({
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: alpha, target_modules: ['q_proj'] }),
    'adapter_model.safetensors': buildSafetensors([
      { name: `base_model.model.${module}.lora_A.weight`, dtype: 'F32', shape: [rank, cols], data: a },
      { name: `base_model.model.${module}.lora_B.weight`, dtype: 'F32', shape: [rows, rank], data: b },
    ]),
  });
  const out = join(temp.make(), 'merged.safetensors');
  const args = mergeArgs(base, adapter, out, ...extra);
  // A --backend in `extra` replaces mergeArgs' `--backend cpu` (the first one).
  if (extra.includes('--backend')) args.splice(args.indexOf('--backend'), 2);
  const run = await runCli(args, {}, nodeArgs);
  if (run.code !== 0) skip?.(run.stderr);
  expect(run.code, run.stderr).toBe(0);
  expect(run.stdout + run.stderr).toMatch(line ?? new RegExp(`backend: CPU \\(WebAssembly SIMD, ${threads} threads?\\b`));
  const merged = decodeSafetensors(readFileSync(out)).tensors.get(`${module}.weight`)!;
  const want = truth();
  let wrong = 0;
  for (let i = 0; i < want.length; i++) if (!Object.is(merged.values[i], want[i])) wrong++;
  expect(wrong).toBe(0);
  return run.stderr;
}

/** A preload that makes Node report `cores` processors (os.availableParallelism). */
function coresPreload(cores: number): string {
  const preload = join(temp.make(), 'cores.cjs');
  writeFileSync(preload, `const os = require('node:os'); os.availableParallelism = () => ${cores}; require('node:module').syncBuiltinESMExports();\n`);
  return preload;
}

describe('merge --threads', () => {
  it.each([3, 1])('merges on %i thread(s), says so, and every element is the float64 truth rounded once', async (threads) => {
    await mergeOnThreads(threads, ['--threads', String(threads)]);
  });

  // The machine's core count comes from a preload that reports `cores` (CI has 2).
  it.each([[32, 8], [3, 3]])('without --threads, on %i cores, merges on %i threads and says so', async (cores, expected) => {
    const stderr = await mergeOnThreads(expected, [], ['--require', coresPreload(cores)]);
    expect(stderr).not.toContain('warning:');
  });

  // Dawn's WebGPU (SwiftShader where there is no GPU): the f16 q_proj runs on the GPU, the line names the CPU's threads all the same.
  it.for([3, 1])('on WebGPU with --threads %i, the backend line names the CPU threads for what the GPU leaves to the CPU', async (threads, ctx) => {
    await mergeOnThreads(threads, ['--backend', 'webgpu', '--threads', String(threads)], [],
      new RegExp(`^backend: WebGPU: .+, with ${threads} CPU threads? for what the GPU leaves to the CPU$`, 'm'),
      (stderr) => { if (/WebGPU for Node could not start|no usable GPU|no GPU adapter/i.test(stderr)) ctx.skip(); });
  });

  it('merges on more threads than processors when asked, and warns what they cost', async () => {
    const stderr = await mergeOnThreads(3, ['--threads', '3'], ['--require', coresPreload(2)]);
    expect(stderr.split('\n').filter((l) => l.startsWith('warning:'))).toEqual([
      'warning: --threads 3 is more than the 2 processors here: the threads past them add no speed, and each takes about 14 MiB of memory',
    ]);
    expect(await mergeOnThreads(2, ['--threads', '2'], ['--require', coresPreload(2)])).not.toContain('warning:');
    expect(await mergeOnThreads(2, ['--threads', '2'], ['--require', coresPreload(1)])).toContain('more than the 1 processor here');
  });

  it('defaults to one thread per core, at most 8, in Node and in pages', () => {
    expect([1, 2, 7, 8, 9, 16, 128].map(defaultCpuThreads)).toEqual([1, 2, 7, 8, 8, 8, 8]);
    // navigator.hardwareConcurrency may be missing or 0 (privacy modes): one thread.
    expect([undefined, 0, Number.NaN].map(defaultCpuThreads)).toEqual([1, 1, 1]);
  });

  it('takes an integer from 1 to 1024, once', () => {
    const cmd = parseCommandLine(['merge', '--base', 'm', '--adapter', 'x', '--out', 'o', '--threads', '16']);
    expect(cmd).toMatchObject({ command: 'merge', threads: 16 });
    expect(parseCommandLine(['merge', '--base', 'm', '--adapter', 'x', '--out', 'o'])).not.toHaveProperty('threads');
    for (const bad of ['0', '-2', '1.5', '8.0', '1e1', 'eight', '1025', '0x8', ' 4']) {
      expect(() => parseCommandLine(['merge', '--base', 'm', '--adapter', 'x', '--out', 'o', '--threads', bad]), bad)
        .toThrow(`--threads must be an integer from 1 to 1024, not "${bad}" (see loramerge --help)`);
    }
    expect(() => parseCommandLine(['merge', '--base', 'm', '--adapter', 'x', '--out', 'o', '--threads', '2', '--threads', '4']))
      .toThrow('--threads given twice');
  });

  it('refuses a bad count in one line, exit 2, before reading any file', async () => {
    const run = await runCli(['merge', '--base', '/nonexistent/model.safetensors', '--adapter', '/nonexistent/a', '--out', '/nonexistent/o', '--threads', '-1']);
    expect(run.code).toBe(2);
    expectOneLine(run.stderr, /^error: --threads must be an integer from 1 to 1024, not "-1" \(see loramerge --help\)$/);
  });
});
