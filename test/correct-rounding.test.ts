/**
 * Every output element equals the exact result rounded once (to nearest, ties to even), on every
 * executor: random merges of every dtype, and merges built so that the exact values land on the
 * output's rounding boundaries (ties), a hair beside them (where f32 sums cannot tell), or come out
 * of cancelling terms. The truth is exact BigInt arithmetic (helpers/exact-truth.ts).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FloatDType } from '../src/dtype.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import type { MergeBackend, MergeOp } from '../src/engine/merge-op.js';
import { describeAdapter, requestAdapter, requestMergeDevice } from '../src/engine/gpu/gpu-device.js';
import { getNodeGpu, type NodeGpu } from '../src/engine/gpu/node-gpu.js';
import { WebGpuBackend } from '../src/engine/gpu/webgpu-backend.js';
import { exactMergeBits } from './helpers/exact-truth.js';
import { tieOps, TIE_DTYPES } from './helpers/tie-cases.js';
import { decodeF64, encodeValues, outputBits, randomOp, seededRandom, type OpSpec } from './helpers/reference-math.js';
import { asPlainOp } from '../src/engine/exact/plain-op.js';
import { checkOp } from '../src/engine/op-shape.js';
import type { UpdateStep } from '../src/engine/update-steps.js';
import { exactStepsBits } from './helpers/exact-steps.js';
import { randomStepOp, slabOf, type StepOpSpec } from './helpers/step-ops.js';
import { threadBackends } from './helpers/thread-backends.js';
import { resolveColumnNorms } from '../src/engine/column-norms.js';
import { rowGranule } from '../src/engine/update-steps.js';

const OUT: FloatDType[] = ['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'];

/** Asserts 100 % bit equality with the exact truth (`want`, default: of the op), naming the first difference. */
function expectCorrectlyRounded(op: MergeOp, out: Uint8Array, want = exactMergeBits(op)): void {
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

const threads = threadBackends();
let nodeGpu: NodeGpu | undefined;
const webgpu = (options: ConstructorParameters<typeof WebGpuBackend>[1]) => async () =>
  new WebGpuBackend(await requestMergeDevice(await requestAdapter(nodeGpu!.gpu)), options);
const executors: { name: string; backend?: MergeBackend; make: () => MergeBackend | Promise<MergeBackend>; swiftShaderOnly?: boolean }[] = [
  { name: 'WebAssembly, calling thread', make: () => new CpuBackend('test') },
  // As a page runs them: W and the output copied through the pool's scratch memory.
  { name: 'WebAssembly, worker threads', make: () => threads.backend(threads.scratchPool) },
  // As a merge from a file runs in Node: W read into the pool's shared memory (a view inside a larger buffer), used in place, the output written in place.
  { name: 'WebAssembly, threads, shared W', make: () => baseInSharedMemory(threads.backend(threads.sharedPool)) },
  { name: 'JavaScript', make: () => new CpuBackend('test', { executor: 'js' }) },
  // SwiftShader here: both conversion styles, a small list (overflow → every element settled) and a 2-D workgroup.
  { name: 'WebGPU, bit shifts', make: webgpu({ shiftFree: false }) },
  // Shift-free runs on SwiftShader only (it is refused elsewhere: exact only with IEEE adds that are not reassociated).
  { name: 'WebGPU, shift-free, 8×4 workgroups', make: webgpu({ shiftFree: true, workgroup: { x: 8, y: 4 } }), swiftShaderOnly: true },
];

/** The backend, given every op's W as a view at an odd place in a larger SharedArrayBuffer. */
function baseInSharedMemory(backend: CpuBackend): MergeBackend {
  expect(backend.slabMemory).toBeDefined();
  return Object.assign(Object.create(backend) as CpuBackend, {
    merge(op: MergeOp, signal?: AbortSignal) {
      const bytes = op.base.data;
      const data = new Uint8Array(new SharedArrayBuffer(bytes.byteLength + 96), 32, bytes.byteLength);
      data.set(bytes);
      return backend.merge({ ...op, base: { dtype: op.base.dtype, data } }, signal);
    },
    dispose: () => backend.dispose(),
  });
}

beforeAll(async () => {
  nodeGpu = await getNodeGpu();
  const adapter = await requestAdapter(nodeGpu.gpu);
  const swiftShader = /swiftshader/i.test(describeAdapter(adapter));
  for (const e of executors) e.backend = e.swiftShaderOnly && !swiftShader ? undefined : await e.make();
});
afterAll(() => {
  for (const e of executors) e.backend?.dispose();
  nodeGpu?.dispose();
});

describe.each(executors)('$name', (executor) => {
  const merge = (op: MergeOp) => executor.backend!.merge(op);
  beforeEach((ctx) => {
    if (!executor.backend) ctx.skip('runs on SwiftShader only');
  });

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

  describe('a scale of W before the terms (fp8 codes times their scales, W·f + ΔW): every element exact', () => {
    // Random e4m3 codes over their whole range times scales like a checkpoint's (about 2^-10), or
    // randomStepOp's factors; sizes odd, r = 1 to 97, both layouts, one op big enough for the threads.
    const cases: [string, StepOpSpec, number?][] = [
      ['e4m3 codes, a factor per column (a block row of a block-wise grid), r = 1', { rows: 37, cols: 53, baseDtype: 'F8_E4M3', steps: [{ kind: 'scale', axis: 'in' }, { kind: 'add', ranks: [1] }] }, 2 ** -10],
      ['e4m3 codes, a factor per row (per channel), r = 16 + 3, transposed', { rows: 40, cols: 29, layout: 'in-out', baseDtype: 'F8_E4M3', steps: [{ kind: 'scale', axis: 'out' }, { kind: 'add', ranks: [16, 3] }] }, 2 ** -9],
      ['bf16 W, a factor per row, r = 97', { rows: 23, cols: 64, baseDtype: 'BF16', steps: [{ kind: 'scale', axis: 'out' }, { kind: 'add', ranks: [97] }] }],
      ['e4m3 codes, 300 × 257 (worker threads), a factor per column, r = 64', { rows: 300, cols: 257, baseDtype: 'F8_E4M3', steps: [{ kind: 'scale', axis: 'in' }, { kind: 'add', ranks: [64] }] }, 2 ** -11],
      ['e4m3 codes, 301 × 250 (worker threads), a factor per row, r = 1', { rows: 301, cols: 250, baseDtype: 'F8_E4M3', steps: [{ kind: 'scale', axis: 'out' }, { kind: 'add', ranks: [1] }] }, 2 ** -8],
      // A weight no adapter changes, dequantized: a sixteenth of code × scale are ties of f32.
      ['e4m3 codes, 260 × 257 (worker threads), a factor per column and no terms', { rows: 260, cols: 257, baseDtype: 'F8_E4M3', steps: [{ kind: 'scale', axis: 'in' }] }, 2 ** -10],
      ['e4m3 codes, 9 × 31, a factor per row and no terms', { rows: 9, cols: 31, baseDtype: 'F8_E4M3', steps: [{ kind: 'scale', axis: 'out' }] }, 2 ** -7],
    ];
    it.each(OUT)('random into %s', async (outDtype) => {
      for (const [i, [label, spec, scaleSize]] of cases.entries()) {
        const op = randomStepOp(300 + i, { ...spec, outDtype });
        if (scaleSize) {
          // Codes over e4m3's range (±448) and scales near scaleSize, as a checkpoint has them.
          const rand = seededRandom(400 + i);
          op.base = { dtype: 'F8_E4M3', data: encodeValues(Array.from({ length: op.rows * op.cols }, () => (rand() * 2 - 1) * 2 ** (rand() * 17.7 - 9)), 'F8_E4M3') };
          const scale = op.steps![0] as Extract<UpdateStep, { kind: 'scale' }>;
          const n = scale.factors.data.byteLength / 4;
          scale.factors = { dtype: 'F32', data: encodeValues(Array.from({ length: n }, () => scaleSize * (1 + rand())), 'F32') };
        }
        expect(asPlainOp(op, checkOp(op))?.baseScale, label).toBeDefined(); // the kernels' path, not the step executor
        expectCorrectlyRounded(op, await merge(op), exactStepsBits(op));
      }
    });
    it.each(TIE_DTYPES)('exact ties, near ties and cancellation in %s, W divided by the factors beforehand', async (outDtype) => {
      // tieOps' results with W = (W / f)·f for factors 2^k: the same exact values, so the same ties.
      for (const [i, op] of tieOps(outDtype, 13).entries()) {
        const axis = i % 2 ? 'out' : 'in';
        const n = axis === 'out' ? op.rows : op.cols;
        const f = Array.from({ length: n }, (_, j) => [1, 2, 0.5, 0.25][j % 4]);
        const w = decodeF64(op.base.data, 'F32');
        const scaled: MergeOp = {
          ...op, terms: [],
          base: { dtype: 'F32', data: encodeValues(Array.from(w, (x, j) => x / f[axis === 'out' ? Math.floor(j / op.cols) : j % op.cols]), 'F32') },
          steps: [{ kind: 'scale', axis, factors: { dtype: 'F32', data: encodeValues(f, 'F32') } }, { kind: 'add', terms: op.terms }],
        };
        expect(asPlainOp(scaled, checkOp(scaled))?.baseScale).toBeDefined();
        expectCorrectlyRounded(scaled, await merge(scaled), exactMergeBits(op));
      }
    });
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

  describe('update steps (on the CPU everywhere): every element exact', () => {
    const cases: [string, StepOpSpec][] = [
      ['LoRA, then PEFT DoRA (per-output norms), f16', { rows: 24, cols: 40, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [4] }, { kind: 'dora', axis: 'out' }] }],
      ['LyCORIS DoRA per input channel (groups of 3), then LoRA, bf16', { rows: 20, cols: 36, baseDtype: 'BF16', steps: [{ kind: 'add', ranks: [3] }, { kind: 'dora', axis: 'in', group: 3, epsilon: 2 ** -23 }, { kind: 'add', ranks: [2] }] }],
      ['dense diff, scale, rotation, GLoRA, LoRA, f16', { rows: 24, cols: 30, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [5], dense: 1 }, { kind: 'scale', axis: 'in' }, { kind: 'rotate', axis: 'in', block: 5 }, { kind: 'self', rank: 2 }, { kind: 'add', ranks: [3] }] }],
      ['MiSS bat tiles of 3 after LoRA, f16', { rows: 18, cols: 21, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [2] }, { kind: 'tiles', size: 3 }] }],
      ['HiRA V ⊙ B·A after LoRA, then a rotation, bf16', { rows: 20, cols: 18, baseDtype: 'BF16', steps: [{ kind: 'add', ranks: [2] }, { kind: 'hadamard', rank: 3 }, { kind: 'rotate', axis: 'in', block: 3 }] }],
      ['HiRA V ⊙ B·A on a transposed weight, f16 → bf16', { rows: 22, cols: 15, layout: 'in-out', baseDtype: 'F16', outDtype: 'BF16', steps: [{ kind: 'add', ranks: [1] }, { kind: 'hadamard', rank: 2 }] }],
      ['row rotation (OFT on the output), fp8 e4m3', { rows: 24, cols: 16, baseDtype: 'F32', outDtype: 'F8_E4M3', steps: [{ kind: 'add', ranks: [2] }, { kind: 'rotate', axis: 'out', block: 4 }] }],
      ['butterfly factors of the input (permuted blocks of 4 in runs of 8, 16), then LoRA, bf16', { rows: 20, cols: 16, baseDtype: 'BF16', steps: [{ kind: 'permuted', axis: 'in', block: 4, span: 8 }, { kind: 'permuted', axis: 'in', block: 4, span: 16 }, { kind: 'add', ranks: [3] }] }],
      ['permuted blocks of the output in runs of 12 with a short last block, f16 → fp8 e5m2', { rows: 30, cols: 14, baseDtype: 'F16', outDtype: 'F8_E5M2', steps: [{ kind: 'add', ranks: [2] }, { kind: 'permuted', axis: 'out', block: 4, span: 12 }] }],
      ['permuted blocks of the input on a transposed weight (stored rows), short last block, f16', { rows: 26, cols: 12, layout: 'in-out', baseDtype: 'F16', steps: [{ kind: 'add', ranks: [1] }, { kind: 'permuted', axis: 'in', block: 4, span: 8 }] }],
      ['two DoRAs on both axes between LoRAs, transposed weight, bf16 → f32', { rows: 18, cols: 22, layout: 'in-out', baseDtype: 'BF16', outDtype: 'F32', steps: [{ kind: 'add', ranks: [3] }, { kind: 'dora', axis: 'in' }, { kind: 'add', ranks: [2] }, { kind: 'dora', axis: 'out' }] }],
    ];
    it.each(cases)('whole tensor: %s', async (_, spec) => {
      const op = randomStepOp(21, spec);
      expectCorrectlyRounded(op, await merge(op), exactStepsBits(op));
    });
    it.each(TIE_DTYPES)('ties through a dense diff, a rotation, a permuted block map, GLoRA, HiRA and a scale in %s', async (outDtype) => {
      // tieOps' exact ties and near ties, carried through steps whose inputs are small dyadics, so
      // that the results stay on (or a hair beside) the rounding boundaries.
      for (const base of tieOps(outDtype, 9, 24, 16).slice(0, 2)) {
        const pairs = Array.from({ length: 8 }, (_, k) => [1, k % 2 ? 0.5 : 0, k % 3 ? -0.25 : 0, 1]).flat();
        const dense = Array.from({ length: 24 * 16 }, (_, i) => ((i * 7) % 5 - 2) * 2 ** -80);
        const op: MergeOp = {
          ...base, terms: [],
          steps: [
            { kind: 'add', terms: base.terms, dense: [{ scale: 1, values: { dtype: 'F32', data: encodeValues(dense, 'F32') } }] },
            { kind: 'rotate', axis: 'in', blockSize: 2, blocks: { dtype: 'F32', data: encodeValues(pairs, 'F32') } },
            // Pairs after σ reverses each run of 4, mixed by triangular blocks of small dyadics.
            { kind: 'permuted-blocks', axis: 'in', blockSize: 2, span: 4, gather: Uint32Array.from({ length: 16 }, (_, i) => i - (i % 4) + 3 - (i % 4)), blocks: { dtype: 'F32', data: encodeValues(Array.from({ length: 8 }, (_, k) => [1, k % 2 ? 0.5 : 0, 0, k % 3 ? -1 : 1]).flat(), 'F32') } },
            { kind: 'self', rank: 1, scale: 2 ** -90, p: { dtype: 'F32', data: encodeValues(new Array(16).fill(1), 'F32') }, q: { dtype: 'F32', data: encodeValues(new Array(16).fill(1), 'F32') } },
            { kind: 'hadamard', rank: 1, scale: 2 ** -80, a: { dtype: 'F32', data: encodeValues(new Array(16).fill(1), 'F32') }, b: { dtype: 'F32', data: encodeValues(new Array(24).fill(-1), 'F32') } },
            { kind: 'scale', axis: 'out', factors: { dtype: 'F32', data: encodeValues(Array.from({ length: 24 }, (_, r) => [1, 0.5, 2, -1][r % 4]), 'F32') } },
          ],
        };
        expectCorrectlyRounded(op, await merge(op), exactStepsBits(op));
      }
    });
    it.each(TIE_DTYPES)('ties through MiSS tiles (blocks of 8, each tile mapped by a tiny multiple of its own values) in %s', async (outDtype) => {
      for (const base of tieOps(outDtype, 9, 24, 16).slice(0, 2)) {
        // B_i = −I: each element moves off its tie by −2^-70 of itself, which only exact arithmetic sees.
        const blocks = Array.from({ length: 3 * 64 }, (_, k) => (k % 64) % 9 === 0 ? -1 : 0);
        const op: MergeOp = {
          ...base, terms: [],
          steps: [{ kind: 'add', terms: base.terms }, { kind: 'tiles', size: 8, scale: 2 ** -70, blocks: { dtype: 'F32', data: encodeValues(blocks, 'F32') } }],
        };
        expectCorrectlyRounded(op, await merge(op), exactStepsBits(op));
      }
    });
    it.each(cases)('row slabs, column norms resolved first: %s', async (_, spec) => {
      const op = randomStepOp(22, spec);
      const backend = executor.backend!;
      const want = exactStepsBits(op);
      const granule = rowGranule(op, op.steps!);
      const step = Math.max(granule, Math.ceil(op.rows / 3 / granule) * granule);
      const steps = await resolveColumnNorms(op, op.steps!, async (prefix) => {
        const sums = new Float64Array(op.cols);
        for (let r0 = 0; r0 < op.rows; r0 += step) {
          const part = await backend.columnSumsOfSquares!(slabOf(op, prefix, r0, Math.min(step, op.rows - r0)));
          for (let c = 0; c < op.cols; c++) sums[c] += part[c];
        }
        return sums;
      });
      for (let r0 = 0; r0 < op.rows; r0 += step) {
        const n = Math.min(step, op.rows - r0);
        const slab = slabOf(op, steps, r0, n);
        expectCorrectlyRounded(slab, await merge(slab), want.subarray(r0 * op.cols, (r0 + n) * op.cols));
      }
    });
  });
});
