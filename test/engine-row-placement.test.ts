/**
 * Terms whose ΔW rows land on some rows of W only (row placements): thirds of a fused qkv tensor,
 * a 3:4 split like Flux's linear1, swapped halves, a permutation, one module on three tensors.
 * Every executor (plain JS, WASM on the calling thread and on worker threads, WebGPU with its own
 * sub-slabs) against float64 truth written plainly in the reference, with row slabs that some terms
 * miss entirely.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend, MergeOp, RowPlacement } from '../src/engine/merge-op.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { createWebGpuBackend } from '../src/engine/create-backend.js';
import { getNodeGpu, type NodeGpu } from '../src/engine/gpu/node-gpu.js';
import { lowRankFactors } from '../src/engine/low-rank-factors.js';
import { mergeTensor } from '../src/engine/merge-tensor.js';
import { checkOp } from '../src/engine/op-shape.js';
import { isMergeError } from '../src/errors.js';
import { compareWithReference, randomOp, type OpSpec } from './helpers/reference-math.js';
import { threadBackends } from './helpers/thread-backends.js';

const MiB = 1024 * 1024;
let nodeGpu: NodeGpu | undefined;
const backends: Record<string, MergeBackend | undefined> = {};

const threads = threadBackends();

beforeAll(async () => {
  backends.js = new CpuBackend('test', { executor: 'js' });
  backends.wasm = new CpuBackend('test');
  backends.pool = threads.backend(threads.sharedPool);
  nodeGpu = await getNodeGpu();
  try {
    backends.webgpu = await createWebGpuBackend(nodeGpu.gpu);
    // A 1 MiB binding limit: the GPU cuts each op into sub-slabs of its own.
    backends.webgpuSmall = await createWebGpuBackend(nodeGpu.gpu, { maxStorageBufferBindingSize: MiB, maxBufferSize: MiB });
  } catch (e) {
    if ((e as { code?: string }).code !== 'GPU_UNAVAILABLE') throw e;
  }
});

afterAll(() => {
  for (const b of Object.values(backends)) b?.dispose();
  nodeGpu?.dispose();
});

function expectAccurate(op: MergeOp, out: Uint8Array): void {
  const c = compareWithReference(op, out);
  if (op.outDtype === 'F32') expect(c.maxRelError, c.firstMismatch).toBeLessThanOrEqual(1e-5);
  else {
    expect(c.maxUlp, c.firstMismatch).toBeLessThanOrEqual(1);
    expect(c.count - c.exact, c.firstMismatch).toBeLessThanOrEqual(Math.max(1, Math.floor(c.count * 0.001)));
  }
}

/** ΔW rows [0, n) onto W rows [at, at + n). */
const slice = (deltaRows: number, at: number): RowPlacement => ({ deltaRows, segments: [{ src: 0, dst: at, count: deltaRows }] });

/** Merges the op whole and in row slabs (the pipeline's way), each slab checked on its own. */
async function mergeInSlabs(backend: MergeBackend, spec: OpSpec, seed: number, slabRows: number[]): Promise<void> {
  const whole = randomOp(seed, spec);
  expectAccurate(whole, await mergeTensor(whole, backend));
  // Slabs share one terms array, as the pipeline's do (the CPU caches its right factor per array).
  let start = 0;
  for (const rows of slabRows) {
    const slab = randomOp(seed + start + 1, { ...spec, rowStart: start, rowCount: rows });
    slab.terms = whole.terms;
    expectAccurate(slab, await mergeTensor(slab, backend));
    start += rows;
  }
  expect(start).toBe(spec.rows);
}

const h = 24;
const CASES: { name: string; spec: OpSpec; slabs: number[] }[] = [
  {
    name: 'q, k and v on thirds of a fused qkv (ranks 4, 1, 9), bf16 → bf16',
    spec: { rows: 3 * h, cols: 40, baseDtype: 'BF16', factorDtype: 'F16', ranks: [4, 1, 9], placements: [slice(h, 0), slice(h, h), slice(h, 2 * h)] },
    slabs: [10, 14, 30, 18], // the second slab ends on the q/k border; the last lies inside v only
  },
  {
    name: 'Flux linear1: q, k, v and proj_mlp (4h rows), with a whole-tensor term besides, f16 → f32',
    spec: {
      rows: 7 * 8, cols: 33, baseDtype: 'F16', outDtype: 'F32', ranks: [2, 3, 2, 16, 5],
      placements: [slice(8, 0), slice(8, 8), slice(8, 16), slice(32, 24), undefined], weights: [1, 1, 1, -0.5, 0.8],
    },
    slabs: [7, 17, 32],
  },
  {
    name: 'swapped halves (adaLN modulation: shift and scale in the other order), f32',
    spec: {
      rows: 2 * 21, cols: 19, ranks: [3],
      placements: [{ deltaRows: 42, segments: [{ src: 0, dst: 21, count: 21 }, { src: 21, dst: 0, count: 21 }] }],
    },
    slabs: [20, 2, 20],
  },
  {
    name: 'a row permutation in pairs (GGUF-style head reordering), r = 1, bf16 → f16',
    spec: {
      rows: 32, cols: 64, baseDtype: 'BF16', outDtype: 'F16', ranks: [1],
      placements: [{ deltaRows: 32, segments: Array.from({ length: 16 }, (_, i) => ({ src: 2 * i, dst: 2 * ((i * 5) % 16), count: 2 })) }],
    },
    slabs: [5, 27],
  },
  {
    name: 'only part of the tensor changes (rows nobody reaches stay W), large r',
    spec: { rows: 50, cols: 24, baseDtype: 'F16', ranks: [40], placements: [{ deltaRows: 30, segments: [{ src: 5, dst: 12, count: 20 }] }] },
    slabs: [12, 20, 18], // the first and last slabs get no term at all
  },
];

for (const kind of ['js', 'wasm', 'pool', 'webgpu', 'webgpuSmall']) {
  describe(`row placements on ${kind}`, () => {
    CASES.forEach(({ name, spec, slabs }, i) => {
      it(name, async (ctx) => {
        const backend = backends[kind];
        if (!backend) return ctx.skip('no WebGPU adapter on this machine');
        await mergeInSlabs(backend, spec, 100 + i, slabs);
      });
    });

    it('rows nobody reaches keep their bytes, −0 included (W + 0 would be +0); a reached −0 plus a zero ΔW is +0, as torch adds it', async (ctx) => {
      const backend = backends[kind];
      if (!backend) return ctx.skip('no WebGPU adapter on this machine');
      // bf16 (4, 2), every element −0 (0x8000); a rank-1 term on row 2 alone whose ΔW row is 0 and 1.
      const base = new Uint8Array(16);
      for (let j = 0; j < 8; j++) base[2 * j + 1] = 0x80;
      const f32 = (values: number[]) => ({ dtype: 'F32' as const, data: new Uint8Array(Float32Array.from(values).buffer) });
      const op: MergeOp = {
        name: 'w', rows: 4, cols: 2, layout: 'out-in', base: { dtype: 'BF16', data: base }, outDtype: 'BF16',
        terms: [{ a: f32([0, 1]), b: f32([1]), rank: 1, scale: 1, placement: { deltaRows: 1, segments: [{ src: 0, dst: 2, count: 1 }] } }],
      };
      const out = await mergeTensor(op, backend);
      // Row 2: −0 + 0 = +0 (0x0000), −0 + 1 = 1 (0x3f80); every other row −0.
      expect([...out]).toEqual([0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0, 0x80, 0x3f, 0, 0x80, 0, 0x80]);
    });

    it('a tensor large enough for the worker pool and for GPU sub-slabs: 3 × 128 rows of 700', async (ctx) => {
      const backend = backends[kind];
      if (!backend) return ctx.skip('no WebGPU adapter on this machine');
      await mergeInSlabs(backend, {
        rows: 384, cols: 700, baseDtype: 'BF16', outDtype: 'F32', ranks: [8, 8, 4], placements: [slice(128, 0), slice(128, 128), slice(128, 256)],
      }, 7, [100, 156, 128]);
    });
  });
}

describe('row placements: what the executors get', () => {
  it('leaves out terms whose rows miss the slab', () => {
    const op = randomOp(3, { rows: 30, cols: 8, ranks: [2, 3, 4], placements: [slice(10, 0), slice(10, 10), undefined], rowStart: 20, rowCount: 10 });
    const f = lowRankFactors(op, checkOp(op));
    expect(f.activeTerms).toEqual([2]);
    expect(f.rank).toBe(4);
    const straddling = randomOp(3, { rows: 30, cols: 8, ranks: [2, 3], placements: [slice(10, 0), slice(10, 10)], rowStart: 8, rowCount: 4 });
    expect(lowRankFactors(straddling, checkOp(straddling)).rank).toBe(5);
  });

  it('refuses placements outside ΔW or W, overlapping ones, wrong B sizes and transposed layouts', () => {
    const bad = (placement: RowPlacement, extra: Partial<OpSpec> = {}): string => {
      const op = randomOp(4, { rows: 10, cols: 6, ranks: [2], ...extra, placements: [placement] });
      try {
        checkOp(op);
      } catch (e) {
        if (isMergeError(e)) return e.message;
        throw e;
      }
      return expect.fail('checkOp should have refused the op');
    };
    expect(bad({ deltaRows: 4, segments: [{ src: 2, dst: 0, count: 3 }] })).toMatch(/outside ΔW's 4 rows/);
    expect(bad({ deltaRows: 4, segments: [{ src: 0, dst: 8, count: 4 }] })).toMatch(/W's 10/);
    expect(bad({ deltaRows: 6, segments: [{ src: 0, dst: 0, count: 3 }, { src: 3, dst: 2, count: 3 }] })).toMatch(/overlap at W row 2/);
    expect(bad({ deltaRows: 4, segments: [{ src: 0, dst: 0, count: 4 }] }, { layout: 'in-out' })).toMatch(/out-in layout/);
    const op = randomOp(4, { rows: 10, cols: 6, ranks: [2], placements: [slice(4, 0)] });
    op.terms[0] = { ...op.terms[0], placement: slice(5, 0) };
    expect(() => checkOp(op)).toThrow(/factor B \(5 × 2\) holds 32 bytes, expected 40/);
  });

  it('refuses a DoRA ε or strength that is no number, on the op and as a step alike', () => {
    const withDora = (epsilon: number, strength?: number): MergeOp => {
      const op = randomOp(5, { rows: 4, cols: 6, ranks: [2] });
      const magnitude = { dtype: 'F32' as const, data: new Uint8Array(new Float32Array(4).fill(1).buffer) };
      return { ...op, dora: { magnitude, normAxis: 'out', epsilon, ...(strength === undefined ? {} : { strength }) } };
    };
    expect(() => checkOp(withDora(0, 0.5))).not.toThrow();
    expect(() => checkOp(withDora(-1))).toThrow(/: DoRA epsilon -1 is not a finite number ≥ 0/);
    expect(() => checkOp(withDora(0, Infinity))).toThrow(/: DoRA strength Infinity is not finite/);
    const asStep = (dora: NonNullable<MergeOp['dora']>): MergeOp => ({ ...withDora(0), dora: undefined, steps: [{ kind: 'dora', dora }] });
    expect(() => checkOp(asStep(withDora(0, NaN).dora!))).toThrow(/step 0 \(dora\): DoRA strength NaN is not finite/);
  });
});
