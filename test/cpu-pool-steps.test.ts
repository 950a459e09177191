/**
 * Ops with general update steps (PEFT DoRA, dense diffs, rotations, GLoRA, butterfly blocks) on the
 * CPU worker pool: cut into row pieces on the op's row granule, each piece on some thread. Every
 * element must equal the exact result rounded once (exact BigInt truth, helpers/exact-steps.ts),
 * and the bytes must be those of one thread.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { CpuWorkerPool } from '../src/engine/cpu/cpu-worker-pool.js';
import { exactStepsBits } from './helpers/exact-steps.js';
import { outputBits } from './helpers/reference-math.js';
import { randomStepOp, type StepOpSpec } from './helpers/step-ops.js';
import { threadBackends } from './helpers/thread-backends.js';

const t = threadBackends();
let pool: CpuWorkerPool;
let threads: CpuBackend;
let one: CpuBackend;

beforeAll(() => {
  pool = t.sharedPool;
  threads = t.backend(pool);
  one = t.backend();
});

// Large enough for the pool (64 Ki elements at least), odd sizes, every kind of step.
const cases: [string, StepOpSpec][] = [
  ['LoRA r = 16, then PEFT DoRA (per-output norms), f16', { rows: 301, cols: 257, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [16] }, { kind: 'dora', axis: 'out' }] }],
  ['dense diff, scale, rotation, GLoRA, LoRA r = 1, bf16', { rows: 263, cols: 250, baseDtype: 'BF16', steps: [{ kind: 'add', ranks: [5], dense: 1 }, { kind: 'scale', axis: 'in' }, { kind: 'rotate', axis: 'in', block: 5 }, { kind: 'self', rank: 2 }, { kind: 'add', ranks: [1] }] }],
  ['row rotation (OFT on the output, blocks of 12), fp8 e4m3', { rows: 300, cols: 230, baseDtype: 'F32', outDtype: 'F8_E4M3', steps: [{ kind: 'add', ranks: [2] }, { kind: 'rotate', axis: 'out', block: 12 }] }],
  ['permuted blocks of the output in runs of 24, short last block, f16 → f32', { rows: 310, cols: 224, baseDtype: 'F16', outDtype: 'F32', steps: [{ kind: 'add', ranks: [3] }, { kind: 'permuted', axis: 'out', block: 8, span: 24 }] }],
  ['LyCORIS DoRA per input channel (norms across rows, their sums on the threads), then LoRA, bf16', { rows: 280, cols: 240, baseDtype: 'BF16', steps: [{ kind: 'add', ranks: [8] }, { kind: 'dora', axis: 'in', epsilon: 2 ** -23 }, { kind: 'add', ranks: [2] }] }],
  ['HiRA V ⊙ B·A, MiSS bat tiles of 8, LoRA, bf16', { rows: 272, cols: 248, baseDtype: 'BF16', steps: [{ kind: 'hadamard', rank: 3 }, { kind: 'tiles', size: 8 }, { kind: 'add', ranks: [2] }] }],
  ['transposed weight, DoRA per input (stored rows), f16 → fp8 e5m2', { rows: 290, cols: 240, layout: 'in-out', baseDtype: 'F16', outDtype: 'F8_E5M2', steps: [{ kind: 'add', ranks: [4] }, { kind: 'dora', axis: 'in' }] }],
];

describe('general update steps on the CPU worker pool', () => {
  it.each(cases)('%s: every element exact, the same bytes as one thread, shared by the threads', async (_, spec) => {
    const op = randomStepOp(31, spec);
    const before = pool.sent.stepPieces;
    const got = await threads.merge(op);
    expect(pool.sent.stepPieces).toBeGreaterThan(before);
    const want = exactStepsBits(op);
    const bits = outputBits(got, op.outDtype);
    let wrong = 0;
    for (let i = 0; i < want.length; i++) if (bits[i] !== want[i]) wrong++;
    expect(`${wrong} of ${want.length} wrong`).toBe(`0 of ${want.length} wrong`);
    expect(Buffer.from(got).equals(Buffer.from(await one.merge(op)))).toBe(true);
  });

  it('column sums of squares of V (the first pass of norms across rows): the float64 sums of one thread, bit for bit', async () => {
    const op = randomStepOp(33, { rows: 333, cols: 250, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [16] }, { kind: 'rotate', axis: 'out', block: 3 }] });
    const before = pool.sent.stepPieces;
    const got = await threads.columnSumsOfSquares(op);
    expect(pool.sent.stepPieces).toBeGreaterThan(before);
    const want = await one.columnSumsOfSquares(op);
    expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    // And against sums written here from the exact V rounded to f32 (relative error 2^-24 each).
    const v = new Float32Array(exactStepsBits({ ...op, outDtype: 'F32' }).buffer);
    for (let c = 0; c < op.cols; c += 37) {
      let ss = 0;
      for (let r = 0; r < op.rows; r++) ss += v[r * op.cols + c] ** 2;
      expect(Math.abs(got[c] - ss)).toBeLessThanOrEqual(ss * 2 ** -21);
    }
  });

  it('non-finite results are refused as on one thread; cancellation stops the pieces', async () => {
    const op = randomStepOp(32, cases[0][1]);
    const base = new Uint16Array(op.base.data.slice().buffer);
    base[base.length - 1] = 0x7c00; // +Inf in the last row: a piece on some thread sees it
    const bad = { ...op, base: { dtype: op.base.dtype, data: new Uint8Array(base.buffer) } };
    await expect(threads.merge(bad)).rejects.toMatchObject({ code: 'NON_FINITE' });
    await expect(one.merge(bad)).rejects.toMatchObject({ code: 'NON_FINITE' });
    const controller = new AbortController();
    controller.abort();
    await expect(threads.merge(op, controller.signal)).rejects.toMatchObject({ code: 'ABORTED' });
  });
});
