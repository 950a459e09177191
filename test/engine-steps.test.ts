/**
 * Sequences of update steps (adapters one after another, DoRA after the adapters before it, IA3
 * scales, GLoRA's V·P·Q, OFT block rotations, dense diffs) on every executor, whole and in row
 * slabs with column norms resolved over all slabs first, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { resolveColumnNorms } from '../src/engine/column-norms.js';
import { rowGranule } from '../src/engine/update-steps.js';
import { checkAgainstTruth, randomStepOp, referenceSteps, slabOf, type StepOpSpec } from './helpers/step-ops.js';
import { mergeBackends } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'both', gpuLimits: { 'webgpu (1 MiB bindings)': { maxStorageBufferBindingSize: 1 << 20, maxBufferSize: 1 << 20 } } });

const cases: Array<[string, StepOpSpec]> = [
  ['LoRA, then DoRA with per-input norms, then another LoRA (f16)', { rows: 37, cols: 29, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [1] }, { kind: 'dora', axis: 'in', epsilon: 1e-6 }, { kind: 'add', ranks: [3] }] }],
  ['two DoRAs on both axes between LoRAs (bf16 → f32)', { rows: 24, cols: 41, baseDtype: 'BF16', outDtype: 'F32', steps: [{ kind: 'add', ranks: [3, 2], weights: [1, -0.7] }, { kind: 'dora', axis: 'out' }, { kind: 'add', ranks: [2] }, { kind: 'dora', axis: 'in' }] }],
  ['PEFT DoRA (per-output norms) on a transposed weight, then LoRA (f16)', { rows: 33, cols: 20, layout: 'in-out', baseDtype: 'F16', steps: [{ kind: 'add', ranks: [4] }, { kind: 'dora', axis: 'out' }, { kind: 'add', ranks: [1] }] }],
  ['LoCon 3×3 with per-channel DoRA (9 columns per magnitude), then LoRA (f16)', { rows: 20, cols: 63, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [2] }, { kind: 'dora', axis: 'in', group: 9, epsilon: 1e-6 }, { kind: 'add', ranks: [1] }] }],
  ['dense diff and low-rank in one pass (bf16)', { rows: 19, cols: 50, baseDtype: 'BF16', factorDtype: 'BF16', steps: [{ kind: 'add', ranks: [2], dense: 1 }] }],
  ['dense diff as float64 products (full LoKr factors) beside low-rank (f16)', { rows: 21, cols: 46, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [2], dense: 1, exactDense: true }, { kind: 'dora', axis: 'out' }] }],
  ['IA3 on the output, then LoRA (f16 → bf16)', { rows: 40, cols: 24, baseDtype: 'F16', outDtype: 'BF16', steps: [{ kind: 'scale', axis: 'out' }, { kind: 'add', ranks: [2] }] }],
  ['LoRA then IA3 on the input: folds into the fused kernel (f16)', { rows: 45, cols: 31, baseDtype: 'F16', factorDtype: 'F16', steps: [{ kind: 'add', ranks: [5] }, { kind: 'scale', axis: 'in' }] }],
  ['IA3 alone: a scale with no low-rank term (bf16 → f16)', { rows: 23, cols: 37, baseDtype: 'BF16', outDtype: 'F16', steps: [{ kind: 'scale', axis: 'in' }] }],
  ['IA3 on the input of a transposed weight (f32)', { rows: 26, cols: 18, layout: 'in-out', steps: [{ kind: 'add', ranks: [1] }, { kind: 'scale', axis: 'in' }] }],
  ['GLoRA: V·P·Q, then LoRA (f32)', { rows: 21, cols: 35, steps: [{ kind: 'self', rank: 3 }, { kind: 'add', ranks: [2] }] }],
  ['MiSS bat: tiles of 5, each mapped by the block of its row tile, then LoRA (f16)', { rows: 25, cols: 30, baseDtype: 'F16', steps: [{ kind: 'tiles', size: 5 }, { kind: 'add', ranks: [2] }] }],
  ['HiRA: V ⊙ B·A between LoRAs (bf16)', { rows: 23, cols: 30, baseDtype: 'BF16', steps: [{ kind: 'add', ranks: [2] }, { kind: 'hadamard', rank: 4 }, { kind: 'add', ranks: [1] }] }],
  ['HiRA on a transposed weight (an embedding, a GPT-2 Conv1D), then LoRA (f16)', { rows: 26, cols: 19, layout: 'in-out', baseDtype: 'F16', steps: [{ kind: 'hadamard', rank: 3 }, { kind: 'add', ranks: [1] }] }],
  ['OFT rotation of the output in blocks of 4, then a rescale (bf16)', { rows: 32, cols: 27, baseDtype: 'BF16', steps: [{ kind: 'rotate', axis: 'out', block: 4 }, { kind: 'scale', axis: 'out' }] }],
  ['rotation of the input in blocks of 5 on a transposed weight (f16)', { rows: 30, cols: 22, layout: 'in-out', baseDtype: 'F16', steps: [{ kind: 'add', ranks: [2] }, { kind: 'rotate', axis: 'in', block: 5 }] }],
  ['rotation of the input in blocks of 3, rank 1, f32 → f16', { rows: 17, cols: 36, outDtype: 'F16', steps: [{ kind: 'rotate', axis: 'in', block: 3 }, { kind: 'add', ranks: [1] }] }],
  ['permuted blocks of 4 along the output within runs of 16, then LoRA (bf16)', { rows: 48, cols: 21, baseDtype: 'BF16', steps: [{ kind: 'permuted', axis: 'out', block: 4, span: 16 }, { kind: 'add', ranks: [2] }] }],
  ['butterfly factors of the input: runs of 6, 12, 24 (f16 → f32)', { rows: 19, cols: 24, baseDtype: 'F16', outDtype: 'F32', steps: [{ kind: 'permuted', axis: 'in', block: 6, span: 6 }, { kind: 'permuted', axis: 'in', block: 6, span: 12 }, { kind: 'permuted', axis: 'in', block: 6, span: 24 }] }],
  ['identity permutation with a short last block of the output (f16)', { rows: 35, cols: 17, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [1] }, { kind: 'permuted', axis: 'out', block: 8 }] }],
  ['permuted blocks of the input with a short last run, transposed weight (bf16 → f8 e4m3)', { rows: 30, cols: 26, layout: 'in-out', baseDtype: 'BF16', outDtype: 'F8_E4M3', steps: [{ kind: 'permuted', axis: 'in', block: 4, span: 8 }, { kind: 'scale', axis: 'out' }] }],
  ['permuted blocks of the output on a transposed weight (stored columns), f32 → f8 e5m2', { rows: 22, cols: 40, layout: 'in-out', outDtype: 'F8_E5M2', steps: [{ kind: 'permuted', axis: 'out', block: 5, span: 20 }] }],
  ['large rank, every kind of step (f16)', { rows: 48, cols: 40, baseDtype: 'F16', steps: [{ kind: 'add', ranks: [24, 8], dense: 1 }, { kind: 'dora', axis: 'in' }, { kind: 'self', rank: 2 }, { kind: 'rotate', axis: 'out', block: 8 }, { kind: 'scale', axis: 'in' }, { kind: 'add', ranks: [16] }] }],
];

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu', 'webgpu (1 MiB bindings)'])('%s', (name) => {
  it.each(cases)('whole tensor: %s', async (_, spec, ) => {
    const backend = backends[name];
    if (!backend) return;
    const op = randomStepOp(7, spec);
    const problem = checkAgainstTruth(referenceSteps(op), op, await backend.merge(op));
    expect(problem).toBeUndefined();
  });

  it.each(cases)('row slabs, column norms first: %s', async (_, spec) => {
    const backend = backends[name];
    if (!backend) return;
    const op = randomStepOp(11, spec);
    const truth = referenceSteps(op);
    const granule = rowGranule(op, op.steps!);
    const step = Math.max(granule, Math.ceil(op.rows / 3 / granule) * granule);
    const slabs: Array<[number, number]> = [];
    for (let r0 = 0; r0 < op.rows; r0 += step) slabs.push([r0, Math.min(step, op.rows - r0)]);
    const steps = await resolveColumnNorms(op, op.steps!, async (prefix) => {
      const sums = new Float64Array(op.cols);
      for (const [r0, n] of slabs) {
        const part = await backend.columnSumsOfSquares!(slabOf(op, prefix, r0, n));
        for (let c = 0; c < op.cols; c++) sums[c] += part[c];
      }
      return sums;
    });
    for (const [r0, n] of slabs) {
      const out = await backend.merge(slabOf(op, steps, r0, n));
      expect(checkAgainstTruth(truth, op, out, r0), `rows ${r0}+${n}`).toBeUndefined();
    }
  });
});

it('a slab that splits a rotation block is refused, naming the tensor', async () => {
  const op = randomStepOp(3, { rows: 16, cols: 8, steps: [{ kind: 'rotate', axis: 'out', block: 4 }] });
  await expect(backends['cpu (js)']!.merge(slabOf(op, op.steps!, 2, 8))).rejects.toThrow(/steps16x8.*splits a block of 4 rows/);
});

it('WebGPU: a tensor larger than a 1 MiB binding runs the steps in several slabs of its own', async (ctx) => {
  const backend = backends['webgpu (1 MiB bindings)'];
  if (!backend) return ctx.skip();
  const op = randomStepOp(5, {
    rows: 720, cols: 403, baseDtype: 'F16',
    steps: [{ kind: 'add', ranks: [3], dense: 1 }, { kind: 'dora', axis: 'out' }, { kind: 'rotate', axis: 'out', block: 6 }, { kind: 'self', rank: 2 }, { kind: 'dora', axis: 'in' }, { kind: 'scale', axis: 'in' }, { kind: 'permuted', axis: 'in', block: 13, span: 26 }, { kind: 'permuted', axis: 'out', block: 6, span: 24 }],
  });
  expect(checkAgainstTruth(referenceSteps(op), op, await backend.merge(op))).toBeUndefined();
});
