/**
 * Every output element equals the exact result rounded once (to nearest, ties to even), on every
 * executor: random merges of every dtype, and merges built so that the exact values land on the
 * output's rounding boundaries (ties), a hair beside them (where f32 sums cannot tell), or come out
 * of cancelling terms. The truth is exact BigInt arithmetic (helpers/exact-truth.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FloatDType } from '../src/dtype.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { CpuWorkerPool } from '../src/engine/cpu/cpu-worker-pool.js';
import type { MergeBackend, MergeOp } from '../src/engine/merge-op.js';
import { REPO_ROOT } from './helpers/cli.js';
import { exactMergeBits } from './helpers/exact-truth.js';
import { tieOps, TIE_DTYPES } from './helpers/tie-cases.js';
import { encodeValues, outputBits, randomOp, type OpSpec } from './helpers/reference-math.js';

const OUT: FloatDType[] = ['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'];

/** Asserts 100 % bit equality with the exact truth, naming the first difference. */
export function expectCorrectlyRounded(op: MergeOp, out: Uint8Array): void {
  const want = exactMergeBits(op);
  const got = outputBits(out, op.outDtype);
  expect(got.length).toBe(want.length);
  let wrong = 0, first = '';
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) {
      if (!wrong) first = `element ${i}: got 0x${got[i].toString(16)}, exact 0x${want[i].toString(16)}`;
      wrong++;
    }
  }
  expect(`${wrong} of ${want.length} wrong${wrong ? `; ${first}` : ''}`).toBe(`0 of ${want.length} wrong`);
}

const workerScript = join(REPO_ROOT, 'dist/engine/cpu/cpu-worker.js');
const executors: { name: string; backend?: MergeBackend; make: () => MergeBackend }[] = [
  { name: 'WebAssembly, calling thread', make: () => new CpuBackend('test') },
  { name: 'WebAssembly, worker threads', make: () => new CpuBackend('test', { pool: new CpuWorkerPool(pathToFileURL(workerScript), 2) }) },
  { name: 'JavaScript', make: () => new CpuBackend('test', { executor: 'js' }) },
];

beforeAll(() => {
  if (!existsSync(workerScript)) {
    execFileSync(process.execPath, ['scripts/gen-wasm.mjs'], { cwd: REPO_ROOT });
    execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: REPO_ROOT });
  }
  for (const e of executors) e.backend = e.make();
});
afterAll(() => {
  for (const e of executors) e.backend?.dispose();
});

describe.each(executors)('$name', (executor) => {
  const merge = (op: MergeOp) => executor.backend!.merge(op);

  it.each(OUT)('random merges into %s: every element exact', async (outDtype) => {
    const specs: OpSpec[] = [
      { rows: 37, cols: 53, baseDtype: 'F16', ranks: [1] },
      { rows: 40, cols: 29, baseDtype: 'BF16', ranks: [16, 3], weights: [1, -0.7], layout: 'in-out' },
      { rows: 23, cols: 64, baseDtype: 'F32', ranks: [97] },
      { rows: 12, cols: 40, baseDtype: 'F8_E4M3', ranks: [4], factorDtype: 'F16' },
      { rows: 300, cols: 257, baseDtype: 'F16', ranks: [16] }, // big enough for the worker threads
      {
        rows: 30, cols: 17, baseDtype: 'BF16', ranks: [4, 2], rowStart: 10, rowCount: 12,
        placements: [{ deltaRows: 10, segments: [{ src: 0, dst: 12, count: 10 }] }, undefined],
      },
    ];
    for (const [i, spec] of specs.entries()) {
      const op = randomOp(100 + i, { ...spec, outDtype });
      expectCorrectlyRounded(op, await merge(op));
    }
  });

  it.each(TIE_DTYPES)('exact ties, near ties and cancellation in %s', async (outDtype) => {
    for (const op of tieOps(outDtype, 7)) expectCorrectlyRounded(op, await merge(op));
  });

  it('a trailing scale step (IA3-like) folded into the kernel stays exact', async () => {
    for (const [i, outDtype] of OUT.entries()) {
      const op = randomOp(200 + i, { rows: 33, cols: 41, baseDtype: 'F16', ranks: [8], outDtype });
      const rows = new Float32Array(33).map((_, r) => 0.5 + ((r * 37) % 17) / 16);
      const cols = new Float32Array(41).map((_, c) => 0.75 + ((c * 11) % 13) / 8);
      for (const [axis, f] of [['out', rows], ['in', cols]] as const) {
        const scaled: MergeOp = { ...op, steps: [{ kind: 'scale', axis, factors: { dtype: 'F32', data: encodeValues(f, 'F32') } }] };
        expectCorrectlyRounded(scaled, await merge(scaled));
      }
    }
  });

  it('a value just under f16 overflow stays finite when f32 sums reach the overflow tie', async () => {
    // W = 65504, ΔW = 16 − 2^-20: the exact 65519.999… rounds to 65504; an f32 sum lands on 65520 (→ Inf).
    const op: MergeOp = {
      name: 'edge', rows: 1, cols: 8, layout: 'out-in', outDtype: 'F16',
      base: { dtype: 'F32', data: encodeValues(new Array(8).fill(65504), 'F32') },
      terms: [
        { rank: 1, scale: 1, a: { dtype: 'F32', data: encodeValues(new Array(8).fill(16), 'F32') }, b: { dtype: 'F32', data: encodeValues([1], 'F32') } },
        { rank: 1, scale: -1, a: { dtype: 'F32', data: encodeValues(new Array(8).fill(2 ** -20), 'F32') }, b: { dtype: 'F32', data: encodeValues([1], 'F32') } },
      ],
    };
    const out = await merge(op);
    expectCorrectlyRounded(op, out);
    expect(outputBits(out, 'F16')[0]).toBe(0x7bff);
  });
});
