/**
 * The CPU backend's WebAssembly SIMD kernel: exhaustive dtype decoding, once-rounding encoders
 * against arithmetic rounding, merges with every tail shape against float64 truth, and the worker
 * threads (order, reuse of a tensor's factors across slabs, cancellation, non-finite results).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FloatDType } from '../src/dtype.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { CpuWorkerPool } from '../src/engine/cpu/cpu-worker-pool.js';
import { runWorkerJob, type PoolJob } from '../src/engine/cpu/cpu-worker-protocol.js';
import { RowBlockPool, type PoolWorker } from '../src/engine/cpu/row-block-pool.js';
import { createWasmKernel, paddedCols, wasmSimdAvailable } from '../src/engine/cpu/wasm-kernel.js';
import type { MergeOp } from '../src/engine/merge-op.js';
import { REPO_ROOT } from './helpers/cli.js';
import { compareWithReference, decodeF64, randomOp, roundedBits, seededRandom, type OpSpec } from './helpers/reference-math.js';
import { threadBackends } from './helpers/thread-backends.js';

const DTYPES: FloatDType[] = ['F32', 'F16', 'BF16'];

/** W (n values of `wDtype`) through the kernel with a zero update: a pure dtype conversion. */
async function convert(w: Uint8Array, wDtype: FloatDType, outDtype: FloatDType, cols: number): Promise<{ bits: Uint32Array; finite: boolean }> {
  const kernel = await createWasmKernel();
  const rows = w.byteLength / (wDtype === 'F32' ? 4 : 2) / cols;
  const out = new Uint8Array(rows * cols * (outDtype === 'F32' ? 4 : 2));
  const { finite } = kernel.run({
    w, wDtype, outDtype, rows, cols, rank: 1,
    left: new Float32Array(rows), rightKey: 1, right: new Float32Array(paddedCols(cols)),
  }, out);
  const bits = outDtype === 'F32' ? new Uint32Array(out.buffer) : Uint32Array.from(new Uint16Array(out.buffer));
  return { bits, finite };
}

const f32Bits = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0];
const isNanBits = (b: number, dtype: FloatDType): boolean =>
  dtype === 'F32' ? (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0
    : dtype === 'F16' ? (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0 : (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;

describe('WASM kernel dtype conversions', () => {
  it('validates here (Node 20 has 128-bit SIMD)', () => {
    expect(wasmSimdAvailable()).toBe(true);
  });

  const all16 = new Uint16Array(65536).map((_, i) => i);
  const all16Bytes = new Uint8Array(all16.buffer);

  for (const dtype of ['F16', 'BF16'] as const) {
    it(`${dtype} → f32 is exact for all 65 536 values; Inf and NaN are flagged`, async () => {
      const truth = decodeF64(all16Bytes, dtype);
      const { bits, finite } = await convert(all16Bytes, dtype, 'F32', 256);
      expect(finite).toBe(false);
      for (let h = 0; h < 65536; h++) {
        // W + 0: a negative zero becomes +0, as in IEEE arithmetic.
        const want = f32Bits(truth[h] + 0);
        if (Number.isNaN(truth[h])) expect(isNanBits(bits[h], 'F32'), `h = ${h.toString(16)}`).toBe(true);
        else if (bits[h] !== want) expect(bits[h], `h = ${h.toString(16)}`).toBe(want);
      }
    });

    it(`${dtype} → ${dtype} returns every non-NaN value unchanged (−0 + 0 = +0) and keeps NaN a NaN`, async () => {
      const { bits } = await convert(all16Bytes, dtype, dtype, 4096);
      for (let h = 0; h < 65536; h++) {
        const want = isNanBits(h, dtype) ? 'nan' : h === 0x8000 ? 0 : h;
        const got = isNanBits(bits[h], dtype) ? 'nan' : bits[h];
        if (got !== want) expect(got, `h = ${h.toString(16)}`).toBe(want);
      }
    });
  }

  /** f32 values over the whole range, dense around every f16/bf16 tie and the subnormal and overflow edges. */
  function hardF32s(): Float32Array {
    const rand = seededRandom(11);
    const bits: number[] = [];
    for (let e = 0; e < 255; e++) {
      for (let k = 0; k < 200; k++) {
        const m = Math.floor(rand() * 0x800000);
        const exp = (e << 23) >>> 0;
        bits.push(exp | m, exp | (m & ~0x1fff) | 0x1000, exp | (m & ~0xffff) | 0x8000,
          exp | ((m & ~0x1fff) | 0x1000) + 1, exp | ((m & ~0xffff) | 0x8000) - 1);
        // Ties of f16 subnormals: the dropped bits are 14 - (e - 112) + 13 wide below e = 113.
        if (e >= 102 && e < 113) {
          const drop = 126 - e;
          bits.push(exp | (m & ~((1 << drop) - 1)) | (1 << (drop - 1)));
        }
      }
    }
    bits.push(0x477ff000, 0x477fefff, 0x477fe000, 0x477fffff, 0x47800000, 0x7f800000, 0x33000000, 0x33000001, 0x32ffffff);
    const out = new Uint32Array(bits.length * 2);
    bits.forEach((b, i) => {
      out[2 * i] = b >>> 0;
      out[2 * i + 1] = (b | 0x80000000) >>> 0;
    });
    return new Float32Array(out.buffer);
  }

  for (const dtype of ['F16', 'BF16'] as const) {
    it(`f32 → ${dtype} rounds to nearest even: ties, subnormals, overflow to Inf, signs`, async () => {
      const xs = hardF32s();
      const cols = 8;
      const n = Math.floor(xs.length / cols) * cols;
      const { bits } = await convert(new Uint8Array(xs.buffer, 0, n * 4), 'F32', dtype, cols);
      for (let i = 0; i < n; i++) {
        const want = roundedBits(xs[i], dtype);
        if (bits[i] !== want) expect(bits[i], `x = ${xs[i]} (${f32Bits(xs[i]).toString(16)})`).toBe(want);
      }
    });
  }
});

/** f32: within 1e-5 relative. f16/bf16: never more than 1 ulp off; returns the exact count. */
function expectAccurate(op: MergeOp, out: Uint8Array): { exact: number; count: number } {
  const c = compareWithReference(op, out);
  if (op.outDtype === 'F32') expect(c.maxRelError, c.firstMismatch).toBeLessThanOrEqual(1e-5);
  else expect(c.maxUlp, c.firstMismatch).toBeLessThanOrEqual(1);
  return op.outDtype === 'F32' ? { exact: 0, count: 0 } : { exact: c.exact, count: c.count };
}

describe('WASM merges on the calling thread', () => {
  const backend = new CpuBackend('test');
  const tally = { exact: 0, count: 0 };

  it('is the WASM executor', () => {
    expect(backend.executor).toBe('wasm');
    expect(new CpuBackend('test', { executor: 'js' }).executor).toBe('js');
  });

  const rand = seededRandom(21);
  for (let i = 0; i < 18; i++) {
    const baseDtype = DTYPES[i % 3], outDtype = DTYPES[Math.floor(i / 3) % 3];
    const rows = 1 + Math.floor(rand() * 13), cols = 1 + Math.floor(rand() * 45);
    const ranks = i % 4 === 0 ? [1] : i % 4 === 1 ? [97] : [1 + Math.floor(rand() * 9), 1 + Math.floor(rand() * 5)];
    const layout = i % 2 ? 'in-out' as const : 'out-in' as const;
    it(`${baseDtype} → ${outDtype}, ${layout}, ${rows}×${cols}, ranks ${ranks.join('+')}`, async () => {
      const op = randomOp(100 + i, { rows, cols, baseDtype, outDtype, ranks, layout, factorDtype: DTYPES[(i + 1) % 3], weights: [1, -0.6] });
      const c = expectAccurate(op, await backend.merge(op));
      tally.exact += c.exact;
      tally.count += c.count;
    });
  }

  it('row slabs across several kernel blocks, r = 300', async () => {
    const op = randomOp(7, { rows: 700, cols: 131, baseDtype: 'F16', outDtype: 'F16', ranks: [300], rowStart: 9, rowCount: 611 });
    const c = expectAccurate(op, await backend.merge(op));
    tally.exact += c.exact;
    tally.count += c.count;
  });

  it('≥ 99.9 % of the 2-byte outputs above are bit exact', () => {
    expect(tally.count).toBeGreaterThan(50_000);
    expect(tally.exact / tally.count).toBeGreaterThanOrEqual(0.999);
  });

  it('Inf after rounding to bf16 → NON_FINITE naming the tensor', async () => {
    const op = randomOp(8, { rows: 5, cols: 19, ranks: [2], outDtype: 'BF16', name: 'embed.weight' });
    new Float32Array(op.base.data.buffer)[77] = 3.4e38;
    op.terms[0].scale = 1e30;
    await expect(backend.merge(op)).rejects.toMatchObject({ code: 'NON_FINITE', message: expect.stringContaining('tensor "embed.weight"') });
  });
});

describe('WASM merges on worker threads', () => {
  // The workers run the compiled script (npm test builds it first; the helper builds it when it is missing).
  const threads = threadBackends();
  let pool: CpuWorkerPool;
  let backend: CpuBackend;

  beforeAll(() => {
    pool = threads.pool(3);
    backend = threads.backend(pool);
  });

  it('slabs of one tensor (the same terms array) and of an interleaved second tensor are all correct', async () => {
    const specs: OpSpec[] = [
      { rows: 517, cols: 601, baseDtype: 'BF16', outDtype: 'F16', ranks: [16, 3] },
      { rows: 300, cols: 1003, baseDtype: 'F32', outDtype: 'BF16', ranks: [8], layout: 'in-out' },
    ];
    const ops = specs.map((s, i) => randomOp(30 + i, s));
    let exact = 0, count = 0, merges = 0;
    const before = { ...pool.sent };
    for (let start = 0; start < 517; start += 111) {
      for (const op of ops) {
        if (start >= op.rows) continue;
        const rowCount = Math.min(111, op.rows - start);
        const bytes = op.base.dtype === 'F32' ? 4 : 2;
        const slab: MergeOp = {
          ...op, rowStart: start, rowCount,
          base: { dtype: op.base.dtype, data: op.base.data.subarray(start * op.cols * bytes, (start + rowCount) * op.cols * bytes) },
        };
        const c = expectAccurate(slab, await backend.merge(slab));
        exact += c.exact;
        count += c.count;
        merges++;
      }
    }
    expect(exact / count).toBeGreaterThanOrEqual(0.999);
    // Alternating tensors: a worker gets a right factor again when the tensor changed under it (at
    // most once per merge), never for the next block of the same tensor.
    const blocks = pool.sent.blocks - before.blocks, rights = pool.sent.rightFactors - before.rightFactors;
    expect(merges).toBe(8);
    expect(blocks).toBeGreaterThan(merges * (pool.threads - 1));
    expect(rights).toBeLessThanOrEqual(merges * (pool.threads - 1));
  });

  it('slabs of one tensor send its right factor to each worker once', async () => {
    const op = randomOp(35, { rows: 1200, cols: 257, baseDtype: 'F16', outDtype: 'F16', ranks: [12] });
    const before = { ...pool.sent };
    for (let start = 0; start < 1200; start += 300) {
      const slab: MergeOp = { ...op, rowStart: start, rowCount: 300, base: { dtype: 'F16', data: op.base.data.subarray(start * 257 * 2, (start + 300) * 257 * 2) } };
      expectAccurate(slab, await backend.merge(slab));
    }
    expect(pool.sent.blocks - before.blocks).toBeGreaterThanOrEqual(8);
    expect(pool.sent.rightFactors - before.rightFactors).toBeLessThanOrEqual(pool.threads - 1);
  });

  it('concurrent merges do not share buffers', async () => {
    const ops = [0, 1, 2].map((i) => randomOp(40 + i, { rows: 257, cols: 263, baseDtype: 'F16', outDtype: 'F32', ranks: [5 + i] }));
    const outs = await Promise.all(ops.map((op) => backend.merge(op)));
    ops.forEach((op, i) => expectAccurate(op, outs[i]));
  });

  it('non-finite results → NON_FINITE; cancellation → ABORTED, also mid-merge', async () => {
    const op = randomOp(50, { rows: 300, cols: 300, baseDtype: 'F32', outDtype: 'F16', ranks: [2], name: 'lm_head.weight' });
    new Float32Array(op.base.data.buffer)[89_999] = 70000;
    await expect(backend.merge(op)).rejects.toMatchObject({ code: 'NON_FINITE', message: expect.stringContaining('tensor "lm_head.weight"') });
    const big = randomOp(51, { rows: 2048, cols: 1024, baseDtype: 'F16', outDtype: 'F16', ranks: [64] });
    const ctl = new AbortController();
    ctl.abort();
    await expect(backend.merge(big, ctl.signal)).rejects.toMatchObject({ code: 'ABORTED' });
    // Cancelled after three blocks were handed out (a signal that turns aborted on its fourth look,
    // so the test does not depend on timing): the rest are not started.
    let looks = 0;
    const midway = { get aborted() { return ++looks > 3; } } as AbortSignal;
    const blocksBefore = pool.sent.blocks;
    await expect(backend.merge(big, midway)).rejects.toMatchObject({ code: 'ABORTED' });
    expect(pool.sent.blocks - blocksBefore).toBeLessThanOrEqual(3);
    const fine = randomOp(52, { rows: 300, cols: 300, ranks: [4] });
    expectAccurate(fine, await backend.merge(fine));
  });

  it('after dispose, merges are refused', async () => {
    const other = threads.pool(2);
    other.dispose();
    await expect(new CpuBackend('test', { pool: other }).merge(randomOp(60, { rows: 300, cols: 300, ranks: [4] }))).rejects.toThrow(/disposed/);
  });
});

describe('what the pool posts to its workers', () => {
  /** Typed arrays anywhere in a job, with the path to each. */
  function typedArrays(value: unknown, path = 'job'): [string, ArrayBufferView][] {
    if (ArrayBuffer.isView(value)) return [[path, value]];
    if (!value || typeof value !== 'object' || value instanceof SharedArrayBuffer) return [];
    return Object.entries(value).flatMap(([k, v]) => typedArrays(v, `${path}.${k}`));
  }

  it('every array in a job is a view of shared memory (posted by reference, not copied), and the merges stay exact', async () => {
    // Workers that run the real job handler on this thread and keep every job they are given.
    const posted: PoolJob[] = [];
    const kernel = createWasmKernel();
    const workers: PoolWorker[] = [0, 1].map(() => {
      let reply: (r: Awaited<ReturnType<typeof runWorkerJob>>) => void = () => {};
      let queue = Promise.resolve();
      return {
        post: (job) => {
          posted.push(job);
          queue = queue.then(async () => reply(await runWorkerJob(kernel, job)));
        },
        listen: (onReply) => { reply = onReply; },
        hold: () => {},
        terminate: () => {},
      };
    });
    const pool = new RowBlockPool(workers, () => new Promise((r) => setTimeout(r, 0)), false);
    const backend = new CpuBackend('test', { pool });
    const specs: OpSpec[] = [
      { rows: 301, cols: 517, baseDtype: 'BF16', outDtype: 'BF16', ranks: [16, 3] },
      { rows: 129, cols: 1003, baseDtype: 'F32', outDtype: 'F16', ranks: [1], layout: 'in-out' },
      { rows: 64, cols: 70, baseDtype: 'F16', outDtype: 'F32', ranks: [40] },
    ];
    for (const [i, spec] of specs.entries()) {
      const op = randomOp(70 + i, spec);
      expectAccurate(op, await backend.merge(op));
    }
    expect(posted.length).toBeGreaterThanOrEqual(specs.length * 2);
    const arrays = posted.flatMap((job) => typedArrays(job));
    expect(arrays.some(([path]) => path === 'job.left')).toBe(true);
    expect(arrays.some(([path]) => path === 'job.right')).toBe(true);
    expect(arrays.some(([path]) => path === 'job.certify.gnl')).toBe(true);
    for (const [path, view] of arrays) expect(view.buffer instanceof SharedArrayBuffer, path).toBe(true);
    backend.dispose();
  });
});

describe('workers start when an op has pieces for them', () => {
  it('a merge of one small tensor starts none of --threads 8; larger ones start one per piece past the calling thread, never more than asked', async () => {
    // Workers that run the real job handler on this thread, counted as they start.
    const kernel = createWasmKernel();
    let started = 0;
    const start = (): PoolWorker => {
      started++;
      let reply: (r: Awaited<ReturnType<typeof runWorkerJob>>) => void = () => {};
      let queue = Promise.resolve();
      return {
        post: (job) => { queue = queue.then(async () => reply(await runWorkerJob(kernel, job))); },
        listen: (onReply) => { reply = onReply; },
        hold: () => {},
        terminate: () => {},
      };
    };
    const pool = new RowBlockPool({ count: 7, start }, () => new Promise((r) => setTimeout(r, 0)));
    const backend = new CpuBackend('test', { pool });
    expect(pool.threads).toBe(8);
    expect(started).toBe(0);
    // 4 rows (of 16384 columns: the backend sends ops of 64 Ki elements or more to the pool): one
    // block of 4, the smallest, which the calling thread takes.
    const small = randomOp(90, { rows: 4, cols: 16384, baseDtype: 'F16', outDtype: 'F16', ranks: [2] });
    expectAccurate(small, await backend.merge(small));
    expect(started).toBe(0);
    // 12 rows: three blocks of 4 (two per thread would be 16 pieces), so two workers.
    const three = randomOp(91, { rows: 12, cols: 16384, baseDtype: 'F16', outDtype: 'F16', ranks: [2] });
    expectAccurate(three, await backend.merge(three));
    expect(started).toBe(2);
    const big = randomOp(92, { rows: 640, cols: 128, baseDtype: 'BF16', outDtype: 'BF16', ranks: [3] });
    expectAccurate(big, await backend.merge(big));
    expect(started).toBe(7);
    expectAccurate(big, await backend.merge(big));
    expect([started, pool.workersStarted]).toEqual([7, 7]);
    backend.dispose();
  });

  it("Node's pool of 8 threads merges a small tensor with no worker started, and a script that never disposes a pool whose workers ran ends on its own", async () => {
    const workerScript = join(REPO_ROOT, 'dist/engine/cpu/cpu-worker.js');
    const pool = new CpuWorkerPool(pathToFileURL(workerScript), 8);
    const backend = new CpuBackend('test', { pool });
    const small = randomOp(93, { rows: 4, cols: 16384, baseDtype: 'F32', outDtype: 'F16', ranks: [4] });
    expectAccurate(small, await backend.merge(small));
    expect(pool.workersStarted).toBe(0);
    backend.dispose();
    const dist = (path: string) => JSON.stringify(pathToFileURL(join(REPO_ROOT, 'dist', path)).href);
    const script = `
      const { CpuWorkerPool } = await import(${dist('engine/cpu/cpu-worker-pool.js')});
      const { CpuBackend } = await import(${dist('engine/cpu/cpu-backend.js')});
      const pool = new CpuWorkerPool(new URL(${JSON.stringify(pathToFileURL(workerScript).href)}), 4);
      const backend = new CpuBackend('script', { pool });
      const rows = 512, cols = 256;
      await backend.merge({
        name: 'w', rows, cols, rowStart: 0, rowCount: rows, layout: 'out-in', outDtype: 'F32',
        base: { dtype: 'F32', data: new Uint8Array(rows * cols * 4) },
        terms: [{ a: { dtype: 'F32', data: new Uint8Array(cols * 4) }, b: { dtype: 'F32', data: new Uint8Array(rows * 4) }, rank: 1, scale: 1 }],
      });
      console.log(pool.workersStarted);
    `;
    // A script file. `node --input-type=module -e` would serve as well: a worker inherits the process's
    // flags less `--input-type`, which it refuses (workerExecArgv, tested in node-adapter-jobs.test.ts).
    const dir = mkdtempSync(join(tmpdir(), 'loramerge-pool-'));
    try {
      writeFileSync(join(dir, 'run.mjs'), script);
      // A timeout (a worker keeping the process alive) fails the test.
      const out = execFileSync(process.execPath, [join(dir, 'run.mjs')], { encoding: 'utf8', timeout: 60_000 });
      expect(Number(out.trim())).toBe(3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a worker that fails a piece', () => {
  it('stops the hand-out, and the call rejects only once the pieces in flight on other workers have answered', async () => {
    // The call's shared scratch goes back to the pool when it settles: a piece still running on
    // another worker would then write into the memory of the pool's next call.
    const kernel = createWasmKernel();
    let posted = 0, answered = 0;
    const failing: PoolWorker = (() => {
      let reply: (r: Awaited<ReturnType<typeof runWorkerJob>>) => void = () => {};
      return {
        post: (job) => { posted++; setTimeout(() => { answered++; reply({ id: job.id, error: 'out of memory' }); }, 0); },
        listen: (onReply) => { reply = onReply; },
        hold: () => {},
        terminate: () => {},
      };
    })();
    const slow: PoolWorker = (() => {
      let reply: (r: Awaited<ReturnType<typeof runWorkerJob>>) => void = () => {};
      return {
        post: (job) => {
          posted++;
          setTimeout(() => void runWorkerJob(kernel, job).then((r) => { answered++; reply(r); }), 150);
        },
        listen: (onReply) => { reply = onReply; },
        hold: () => {},
        terminate: () => {},
      };
    })();
    const pool = new RowBlockPool([failing, slow], () => new Promise((r) => setTimeout(r, 0)), false);
    // 64 rows of 8 at inner 4: four pieces of 16 rows; each worker takes one first.
    const inner = 4, cols = 8;
    const left = new Float32Array(64 * inner).fill(1);
    const error = await pool.product({ rows: 64, cols, inner, right: new Float32Array(inner * paddedCols(cols)).fill(1), left: (r0, n) => left.subarray(r0 * inner, (r0 + n) * inner) })
      .then(() => undefined, (e: unknown) => e);
    expect((error as Error).message).toMatch(/a CPU worker failed: out of memory/);
    expect({ posted, answered }).toEqual({ posted: 2, answered: 2 });
    pool.dispose();
  });
});
