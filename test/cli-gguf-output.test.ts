/**
 * The output guarantees hold for GGUF outputs too, split ones included: every part of a split base
 * is stamped and checked again before the output folder is moved into place (a part rewritten
 * mid-merge aborts it, nothing left at --out), and a second merge into the same folder is refused
 * while the first runs. `--dtype` refuses fp8 for a GGUF base, which has no fp8 type.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, errorLines, listDir, runCli } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';
import { buildGguf, tensorData, type MetaValue } from './helpers/gguf-builder.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const ARCH: [string, MetaValue] = ['general.architecture', { type: 'string', value: 'llama' }];
const N = 4096;
const RANK = 16;

/**
 * A split base whose second part holds a 4096 × 4096 matrix, and a LoRA for it. F16: 32 MB, long
 * enough to merge that a rewrite lands mid-merge; Q4_K (zero blocks): re-encoded for seconds.
 */
function bigSplitInputs(type: 'F16' | 'Q4_K' = 'F16'): string {
  const split = (no: number): [string, MetaValue][] => [
    ['split.no', { type: 'u16', value: no }], ['split.count', { type: 'u16', value: 2 }], ['split.tensors.count', { type: 'i32', value: 2 }],
  ];
  const lora = buildGguf({
    metadata: [ARCH, ['general.type', { type: 'string', value: 'adapter' }], ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: RANK }]],
    tensors: [
      { name: 'blk.0.ffn_up.weight.lora_a', type: 'F32', ne: [N, RANK], data: new Uint8Array(new Float32Array(N * RANK).fill(0.01).buffer) },
      { name: 'blk.0.ffn_up.weight.lora_b', type: 'F32', ne: [RANK, N], data: new Uint8Array(new Float32Array(N * RANK).fill(0.01).buffer) },
    ],
  });
  return temp.make({
    'big-00001-of-00002.gguf': buildGguf({ metadata: [ARCH, ...split(0)], tensors: [{ name: 'blk.0.attn_norm.weight', type: 'F32', ne: [N], data: tensorData('F32', new Float64Array(N).fill(1)) }] }),
    'big-00002-of-00002.gguf': buildGguf({
      metadata: split(1),
      tensors: [{ name: 'blk.0.ffn_up.weight', type, ne: [N, N], data: new Uint8Array(type === 'F16' ? N * N * 2 : (N * N / 256) * 144) }],
    }),
    'lora.gguf': lora,
  });
}

const mergeArgs = (dir: string, out: string) => ['merge', '--base', join(dir, 'big-00001-of-00002.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', out, '--backend', 'cpu'];

/** Starts a merge and resolves once it has printed its backend (the output target is open by then). */
function startMerge(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const started = (async () => {
    while (!stderr.includes('backend:') && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 5));
  })();
  return { started, exited, stderr: () => stderr };
}

describe('a split GGUF output', () => {
  it('aborts when a part of the base is rewritten in place during the merge, leaving nothing at --out', async () => {
    const dir = bigSplitInputs();
    const outDir = temp.make();
    const run = startMerge(mergeArgs(dir, join(outDir, 'merged')));
    await run.started;
    // Same size, new content, written in place like dd conv=notrunc, into the part --base did not name.
    const part = join(dir, 'big-00002-of-00002.gguf');
    const fd = openSync(part, 'r+');
    writeSync(fd, Buffer.from([0x00, 0x3c]), 0, 2, statSync(part).size - 2);
    closeSync(fd);
    const code = await run.exited;
    expect(code, run.stderr()).toBe(1);
    expect(errorLines(run.stderr())).toHaveLength(1);
    expect(errorLines(run.stderr())[0]).toMatch(/big-00002-of-00002\.gguf was modified while the merge read it; nothing was written/);
    expect(listDir(outDir)).toEqual([]);
  });

  it('refuses a second merge into the same folder at once while the first runs', async () => {
    const dir = bigSplitInputs('Q4_K');
    const outDir = temp.make();
    const out = join(outDir, 'merged');
    const first = startMerge(mergeArgs(dir, out));
    await first.started;
    const second = await runCli(mergeArgs(dir, out));
    expect(await first.exited, first.stderr()).toBe(0);
    expect(second.code).toBe(2);
    expect(errorLines(second.stderr)).toHaveLength(1);
    expect(errorLines(second.stderr)[0]).toMatch(/another merge \(process \d+\) is writing this output; wait for it to finish or choose another --out/);
    expect(listDir(outDir)).toEqual(['merged']);
    expect(listDir(out)).toEqual(['big-00001-of-00002.gguf', 'big-00002-of-00002.gguf']);
  });
});

it('refuses llama-quantize\'s file types that need an importance matrix, saying so and naming the mixes it writes', async () => {
  const dir = bigSplitInputs();
  const iq3xs = await runCli([...mergeArgs(dir, join(dir, 'out')), '--dtype', 'iq3_xs']);
  expect(iq3xs.code).toBe(2);
  expect(errorLines(iq3xs.stderr)).toEqual(['error: --dtype iq3_xs: llama-quantize\'s IQ3_XS file type gives attn_q, attn_k (without 8 experts) and the middle layers\' ffn_gate and ffn_up IQ3_XXS, which current llama-quantize writes only with an importance matrix; loramerge does not write this file type, with --imatrix or without; choose iq3_s_mix or iq3_m, or --dtype f16 and run llama-quantize --imatrix afterwards']);
  const q2ks = await runCli([...mergeArgs(dir, join(dir, 'out')), '--dtype', 'q2_k_s']);
  expect(errorLines(q2ks.stderr)).toEqual(['error: --dtype q2_k_s: llama-quantize writes its Q2_K_S file type only with an importance matrix (its Q2_K tensors need one); loramerge does not write this file type, with --imatrix or without; choose q2_k_mix, or --dtype f16 and run llama-quantize --imatrix afterwards']);
  expect(listDir(dir)).toEqual(['big-00001-of-00002.gguf', 'big-00002-of-00002.gguf', 'lora.gguf']);
});

it('refuses an fp8 --dtype for a GGUF base (GGUF has no fp8 type), naming the types it takes', async () => {
  const dir = bigSplitInputs();
  const run = await runCli([...mergeArgs(dir, join(dir, 'out')), '--dtype', 'f8_e4m3']);
  expect(run.code).toBe(2);
  expect(errorLines(run.stderr)).toEqual(['error: --dtype for a GGUF model must be one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, mxfp4, nvfp4, q1_0, q2_0, tq1_0, tq2_0, iq3_xxs, iq3_s, iq4_nl, iq4_xs, q1_0_mix, q2_0_mix, q4_0_mix, q4_1_mix, q5_0_mix, q5_1_mix, tq1_0_mix, tq2_0_mix, q2_k_mix, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k_mix, iq3_s_mix, iq3_m, iq4_nl_mix, iq4_xs_mix, mxfp4_moe, not "f8_e4m3"']);
  expect(listDir(dir)).toEqual(['big-00001-of-00002.gguf', 'big-00002-of-00002.gguf', 'lora.gguf']);
});
