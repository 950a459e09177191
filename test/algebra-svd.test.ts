/**
 * The adapter algebra's SVDs on both backends, against float64 references computed in the test:
 * factored (exact) and randomized SVDs reach the Eckart–Young optimum within 1e-3 (relative), a
 * planted low-rank matrix is recovered, and the f32 products agree with f64 ones. The realistic
 * cases build matrices from chosen singular values (so the optimum is known without an SVD): a
 * planted rank-64 part over a flat noise tail as in an extraction from a model saved in f16, and
 * steeply decaying spectra whose tall-skinny blocks are too ill-conditioned for a single
 * Gram-based orthonormalisation in f32.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AlgebraBackend } from '../src/algebra/algebra-backend.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import { createWebGpuAlgebra } from '../src/algebra/gpu-algebra.js';
import { denseExactSvd, factoredSvd, randomizedSvd, type TruncatedSvd } from '../src/algebra/truncated-svd.js';
import { isMergeError } from '../src/errors.js';
import { getNodeGpu, type NodeGpu } from '../src/engine/gpu/node-gpu.js';
import { seededRandom } from './helpers/fixtures.js';
import {
  dense, fromF32, frob2, gaussian, minus, optimalError, product, singularValues, tailNorm, withSpectrum, withSpectrumLarge, type Dense,
} from './helpers/svd-reference.js';

let nodeGpu: NodeGpu | undefined;
const backends: Record<string, AlgebraBackend | undefined> = { cpu: new CpuAlgebra(), 'cpu-js': new CpuAlgebra({ executor: 'js' }) };

beforeAll(async () => {
  nodeGpu = await getNodeGpu();
  try {
    backends.webgpu = await createWebGpuAlgebra(nodeGpu.gpu);
    // Small bindings: every resident matrix spans several buffers.
    backends['webgpu-small'] = await createWebGpuAlgebra(nodeGpu.gpu, { maxStorageBufferBindingSize: 64 * 1024, maxBufferSize: 64 * 1024 });
  } catch (e) {
    if ((e as { code?: string }).code !== 'GPU_UNAVAILABLE') throw e;
  }
});

afterAll(() => {
  for (const b of Object.values(backends)) b?.dispose();
  nodeGpu?.dispose();
});

const f32 = (d: Dense) => ({ rows: d.rows, cols: d.cols, data: Float32Array.from(d.data) });

async function rankKError(svd: TruncatedSvd, target: Dense, k: number): Promise<number> {
  const { up, down } = await svd.factors(k, 'up');
  const approx = product(fromF32(up.rows, up.cols, up.data), fromF32(down.rows, down.cols, down.data));
  return Math.sqrt(frob2(minus(target, approx)));
}

/** Within 1e-3 of the optimum, plus what f32 storage of the target itself costs. */
function expectNearOptimal(err: number, opt: number, target: Dense): void {
  const f32Floor = 1e-6 * Math.sqrt(frob2(target));
  expect(err).toBeLessThanOrEqual(opt * (1 + 1e-3) + f32Floor);
}

function randomDense(rows: number, cols: number, rand: () => number, scale = 1): Dense {
  return dense(rows, cols, () => gaussian(rand) * scale);
}

/**
 * Spectra of extraction-sized problems: `signal` planted singular values, then a gently falling
 * noise tail (as a Marchenko–Pastur spectrum falls) scaled to `tailShare` of the whole norm.
 */
function plantedSpectrum(p: number, signal: number[], tailShare: number): number[] {
  const signal2 = signal.reduce((t, x) => t + x * x, 0);
  const shape = Array.from({ length: p - signal.length }, (_, i) => 1 - 0.6 * i / (p - signal.length));
  const shape2 = shape.reduce((t, x) => t + x * x, 0);
  const scale = Math.sqrt((tailShare ** 2 / (1 - tailShare ** 2)) * signal2 / shape2);
  return [...signal, ...shape.map((x) => x * scale)];
}

interface RealisticCase { name: string; rows: number; cols: number; k: number; s: number[] }

const REALISTIC: RealisticCase[] = [
  {
    // The extraction benchmark's spectrum: a random rank-64 LoRA (σ within a factor 1.5) merged
    // into an f16 model, whose rounding adds a flat tail of 1–2 % of ‖T − B‖.
    name: 'rank 64 over an f16-rounding tail (1.5 % of the norm), 1024×512, k = 64',
    rows: 1024, cols: 512, k: 64,
    s: plantedSpectrum(512, Array.from({ length: 64 }, (_, i) => 1 - 0.35 * i / 63), 0.015),
  },
  {
    // A trained update: σ falling 100-fold over the rank, a tail of 1e-3: the range finder's
    // blocks have κ ≈ 10⁴, past what one f32 Gram-based orthonormalisation resolves.
    name: 'σ falling from 1 to 1e-2 over a 1e-3 tail, 512×1024, k = 64',
    rows: 512, cols: 1024, k: 64,
    s: plantedSpectrum(512, Array.from({ length: 64 }, (_, i) => Math.pow(1e-2, i / 63)), 1e-3),
  },
];

for (const name of ['cpu', 'cpu-js', 'webgpu', 'webgpu-small']) {
  describe(`${name} backend`, () => {
    const get = (skip: (note?: string) => void): AlgebraBackend => {
      const b = backends[name];
      if (!b) skip('no WebGPU adapter on this machine');
      return b!;
    };

    it('products agree with f64 (odd sizes)', async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(1);
      const a = randomDense(133, 71, rand);
      const y = randomDense(71, 9, rand);
      const y2 = randomDense(133, 5, rand);
      const resident = await backend.upload(f32(a));
      const ay = await backend.times(resident, f32(y));
      const aty = await backend.timesT(resident, f32(y2));
      resident.release();
      const ref1 = product(a, y);
      const at = dense(71, 133, (i, j) => a.data[j * 71 + i]);
      const ref2 = product(at, y2);
      for (const [got, ref] of [[ay.data, ref1], [aty.data, ref2]] as const) {
        const scale = Math.sqrt(frob2(ref) / ref.data.length);
        for (let i = 0; i < ref.data.length; i++) expect(Math.abs(got[i] - ref.data[i])).toBeLessThan(1e-5 * scale * 20);
      }
    });

    for (const [m, n, ranks, k] of [[64, 48, [4, 4], 3], [200, 90, [16, 8, 1], 12], [37, 300, [1], 1], [50, 40, [30, 30], 20]] as const) {
      it(`factored SVD of Σ B·A, ${m}×${n}, ranks ${ranks.join('+')}, k = ${k}: optimal`, async (ctx) => {
        const backend = get(ctx.skip);
        const rand = seededRandom(m * 7 + n);
        const R = ranks.reduce((s, r) => s + r, 0);
        const b = randomDense(m, R, rand);
        const a = randomDense(R, n, rand, 0.1);
        const target = product(b, a);
        const svd = await factoredSvd(backend, f32(b), f32(a));
        const ref = singularValues(target);
        for (let i = 0; i < Math.min(R, ref.length); i++) expect(Math.abs(svd.s[i] - ref[i])).toBeLessThanOrEqual(1e-5 * ref[0]);
        expectNearOptimal(await rankKError(svd, target, k), optimalError(target, k), target);
        // At full rank the product is reproduced to f32 accuracy.
        const full = Math.min(R, m, n);
        expect(await rankKError(svd, target, full)).toBeLessThan(1e-5 * Math.sqrt(frob2(target)));
      });
    }

    it('factored SVD of rank-deficient factors (repeated adapter, zero column)', async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(5);
      const b1 = randomDense(80, 6, rand), a1 = randomDense(6, 70, rand);
      // [B, B, 0] · [A; -0.5A; A]: rank 6, stacked rank 18.
      const b = dense(80, 18, (i, j) => (j < 12 ? b1.data[i * 6 + (j % 6)] : 0));
      const a = dense(18, 70, (i, j) => a1.data[(i % 6) * 70 + j] * (i < 6 ? 1 : i < 12 ? -0.5 : 1));
      const target = product(b, a);
      const svd = await factoredSvd(backend, f32(b), f32(a));
      expect(await rankKError(svd, target, 6)).toBeLessThan(1e-5 * Math.sqrt(frob2(target)));
      expectNearOptimal(await rankKError(svd, target, 3), optimalError(target, 3), target);
    });

    it('randomized SVD: decaying spectrum, 300×220, k = 10, within 1e-3 of optimal', async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(9);
      const spectrum = Array.from({ length: 60 }, (_, i) => Math.pow(0.85, i));
      const target = withSpectrum(300, 220, spectrum, rand);
      const resident = await backend.upload(f32(target));
      const svd = await randomizedSvd(backend, resident, { rank: 10 });
      resident.release();
      expectNearOptimal(await rankKError(svd, target, 10), optimalError(target, 10), target);
    });

    it('randomized SVD: planted rank 5 plus noise, 257×301', async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(11);
      const planted = withSpectrum(257, 301, [9, 7, 5, 3, 2], rand);
      const noise = randomDense(257, 301, rand, 1e-4);
      const target = dense(257, 301, (i, j) => planted.data[i * 301 + j] + noise.data[i * 301 + j]);
      const resident = await backend.upload(f32(target));
      const svd = await randomizedSvd(backend, resident, { rank: 5, seed: 3 });
      resident.release();
      expectNearOptimal(await rankKError(svd, target, 5), optimalError(target, 5), target);
      // The planted part is recovered: what remains is the noise's share in a rank-5 subspace,
      // a small fraction of the noise (√(5·(m+n)/(m·n)) ≈ 0.19 of it).
      const { up, down } = await svd.factors(5, 'sqrt');
      const approx = product(fromF32(up.rows, 5, up.data), fromF32(5, down.cols, down.data));
      expect(Math.sqrt(frob2(minus(approx, planted)))).toBeLessThan(0.3 * Math.sqrt(frob2(noise)));
    });

    // Realistic sizes cost seconds on SwiftShader; the small-binding device's slab splitting is
    // covered by the cases above.
    for (const c of name === 'webgpu-small' ? [] : REALISTIC) {
      it(`randomized SVD, ${c.name}: within 1e-3 of optimal, singular values to 1e-5`, async (ctx) => {
        const backend = get(ctx.skip);
        const target = withSpectrumLarge(c.rows, c.cols, c.s, seededRandom(c.rows + c.cols));
        const stored = f32(target);
        const roundoff = Math.sqrt(frob2(minus(fromF32(c.rows, c.cols, stored.data), target)));
        const resident = await backend.upload(stored);
        const svd = await randomizedSvd(backend, resident, { rank: c.k, seed: 21 });
        resident.release();
        // The input is `target` rounded to f32; its optimum is within `roundoff` of target's.
        const opt = tailNorm(c.s, c.k);
        expect(roundoff).toBeLessThan(1e-4 * opt);
        const err = await rankKError(svd, fromF32(c.rows, c.cols, stored.data), c.k);
        expect(err / opt - 1).toBeLessThanOrEqual(1e-3 + roundoff / opt);
        // What the report's "kept" share is computed from.
        for (let i = 0; i < c.k; i++) expect(Math.abs(svd.s[i] - c.s[i])).toBeLessThanOrEqual(1e-5 * c.s[0]);
      });
    }

    it('factored SVD of 4 stacked rank-32 factors, S in B (κ(B) = 10⁴), k = 64: within 1e-3 of optimal', async (ctx) => {
      const backend = get(ctx.skip);
      // B = U·diag(s)·G and A = Gᵀ·Vᵀ (S in the up factor, as kohya and resize write it), so
      // B·A = U·diag(s)·Vᵀ; U (512×128), V (256×128) and G are corners of random orthogonal matrices.
      const R = 128, k = 64, m = 512, n = 256;
      const s = Array.from({ length: R }, (_, i) => Math.pow(1e-4, i / (R - 1)));
      const rand = seededRandom(31);
      const g = withSpectrumLarge(R, R, Array(R).fill(1), rand);
      const u = withSpectrumLarge(m, R, Array(R).fill(1), rand);
      const v = withSpectrumLarge(n, R, Array(R).fill(1), rand);
      const b = product(u, dense(R, R, (i, j) => s[i] * g.data[i * R + j]));
      const a = dense(R, n, (i, j) => {
        let x = 0;
        for (let t = 0; t < R; t++) x += g.data[t * R + i] * v.data[j * R + t];
        return x;
      });
      const exact = product(dense(m, R, (i, j) => u.data[i * R + j] * s[j]), dense(R, n, (i, j) => v.data[j * R + i]));
      const [b32, a32] = [f32(b), f32(a)];
      const input = product(fromF32(m, R, b32.data), fromF32(R, n, a32.data));
      // The input is the product of f32 factors; its optimum is within `roundoff` of exact's.
      const roundoff = Math.sqrt(frob2(minus(input, exact)));
      const opt = tailNorm(s, k);
      expect(roundoff).toBeLessThan(1e-4 * opt);
      const svd = await factoredSvd(backend, b32, a32);
      const err = await rankKError(svd, input, k);
      expect(err / opt - 1).toBeLessThanOrEqual(1e-3 + roundoff / opt);
      for (let i = 0; i < k; i++) expect(Math.abs(svd.s[i] - s[i])).toBeLessThanOrEqual(1e-5 * s[0]);
    });

    it('dense exact SVD of a flat spectrum (Gaussian 90×60), k = 7', async (ctx) => {
      const backend = get(ctx.skip);
      const target = randomDense(90, 60, seededRandom(13));
      const svd = await denseExactSvd(backend, f32(target));
      expectNearOptimal(await rankKError(svd, target, 7), optimalError(target, 7), target);
      const wide = randomDense(40, 130, seededRandom(14));
      const svd2 = await denseExactSvd(backend, f32(wide));
      expectNearOptimal(await rankKError(svd2, wide, 11), optimalError(wide, 11), wide);
    });
  });
}

describe('webgpu products and a cancel', () => {
  it('times, one dispatch and read-back per slab, sees an abort between slabs; timesT, one submission of every slab, sees it once read back: ABORTED, its cause the reason', async (ctx) => {
    const backend = backends['webgpu-small'];
    if (!backend) return ctx.skip('no WebGPU adapter on this machine');
    // ΔW 2048 × 512 in 64 KiB bindings: 64 slabs of 32 rows (2 KiB each).
    const rand = seededRandom(61);
    const d = f32(randomDense(2048, 512, rand));
    const y = f32(randomDense(512, 28, rand)), yT = f32(randomDense(2048, 28, rand));
    const resident = await backend.upload(d);
    // Slabs counted, not milliseconds: each dispatch of `times` is one slab's product.
    const dispatch = vi.spyOn(backend as unknown as { dispatch(entry: 'times' | 'timesT', ...rest: unknown[]): void }, 'dispatch');
    const slabs = () => dispatch.mock.calls.filter(([entry]) => entry === 'times').length;
    try {
      const idle = new AbortController().signal;
      const whole = await backend.times(resident, y, idle);
      expect(slabs()).toBe(64);
      // A product indeed: one entry against f64.
      let x = 0;
      for (let k = 0; k < 512; k++) x += d.data[1000 * 512 + k] * y.data[k * 28 + 5];
      expect(Math.abs(whole.data[1000 * 28 + 5] - x)).toBeLessThan(1e-4 * Math.max(1, Math.abs(x)));

      const cancelled = async (run: (signal: AbortSignal) => Promise<unknown>) => {
        const controller = new AbortController();
        dispatch.mockClear();
        let slabsAtAbort = -1;
        const pending = run(controller.signal).then(() => undefined, (e: unknown) => e);
        setTimeout(() => {
          slabsAtAbort = slabs();
          controller.abort(new Error('stop'));
        }, 0);
        const error = await pending;
        return { error, slabsAtAbort, slabs: slabs(), reason: controller.signal.reason };
      };
      const a = await cancelled((signal) => backend.times(resident, y, signal));
      expect(isMergeError(a.error) && [a.error.code, a.error.cause]).toEqual(['ABORTED', a.reason]);
      // The abort comes while a slab is read back; no slab is dispatched after it, so the product
      // ends with few of its 64.
      expect(a.slabsAtAbort).toBeGreaterThan(0);
      expect(a.slabs, 'slabs dispatched after the abort').toBe(a.slabsAtAbort);
      expect(a.slabs).toBeLessThan(64);
      const b = await cancelled((signal) => backend.timesT(resident, yT, signal));
      expect(isMergeError(b.error) && [b.error.code, b.error.cause]).toEqual(['ABORTED', b.reason]);
      // The device still runs products after either cancel.
      expect((await backend.times(resident, y)).data).toEqual(whole.data);
    } finally {
      dispatch.mockRestore();
      resident.release();
    }
  });
});
