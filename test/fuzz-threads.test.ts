/**
 * The thread fuzzer: quantized bases just above the CPU pool's floor for sending work to threads
 * (helpers/fuzz-thread-worlds.ts: bitsandbytes NF4/FP4/int8, mlx affine, GPTQ, AWQ,
 * compressed-tensors int, ModelOpt and ComfyUI NVFP4, ComfyUI mxfp8, gpt-oss MXFP4 experts), with odd shapes and slab
 * sizes and, for some cases, a hostile statistic or shape, merged with a PEFT LoRA on two threads
 * (slabs in shared memory, as the command line reads them), on two threads through the pool's
 * scratch (a page's pool) and on one thread with no pool. For every case:
 *   - the three give the same outcome: the same bytes, or the same refusal (code and line);
 *   - a merge writes W + ΔW rounded once to the output dtype, W dequantized here in float64 by the
 *     format's published formula (NaN and infinities where the hostile value puts them), every
 *     unchanged weight exactly its dequantized value in that dtype;
 *   - a refusal is one line that names the module it is about, and comes only for a hostile case;
 *     a case whose files hold no loadable weight (a tensor one row short, a weight of another
 *     shape) is refused.
 * Seeded; `npm test` runs a few cases, FUZZ_THREAD_RUNS=<n> many more (FUZZ_SEED picks the seed,
 * FUZZ_THREAD_FROM=<i> starts at case i, FUZZ_THREAD_CASE=<i> replays case i alone, FUZZ_THREAD_FORMATS=<f>,<f> only those formats,
 * THREAD_FORMATS names them). The pools run the built worker script (`npm run build:lib`).
 */
import { describe, expect, it } from 'vitest';
import type { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { isMergeError } from '../src/errors.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { decodeSafetensors, roundForDType } from './helpers/fixtures.js';
import { THREAD_FORMATS, threadCase, type ThreadCase, type ThreadFormat } from './helpers/fuzz-thread-worlds.js';
import { threadBackends } from './helpers/thread-backends.js';

const RUNS = Number(process.env.FUZZ_THREAD_RUNS ?? 12);
/** The first case's index: a long run may be split into shards that run cases FROM…FROM + RUNS − 1. */
const FROM = Number(process.env.FUZZ_THREAD_FROM ?? 0);
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const ONLY = process.env.FUZZ_THREAD_CASE === undefined ? undefined : Number(process.env.FUZZ_THREAD_CASE);
const FORMATS = process.env.FUZZ_THREAD_FORMATS?.split(',').map((f) => f.trim()) as ThreadFormat[] | undefined;
for (const f of FORMATS ?? []) if (!THREAD_FORMATS.includes(f)) throw new Error(`FUZZ_THREAD_FORMATS: no format "${f}" (${THREAD_FORMATS.join(', ')})`);

const threads = threadBackends();

type Outcome = { kind: 'merged'; bytes: Uint8Array } | { kind: 'refused'; code: string; message: string };

async function mergeOn(c: ThreadCase, backend: CpuBackend): Promise<Outcome> {
  try {
    const prepared = await prepareMerge(memoryInputFileSet(c.files, 'model'), [{ files: memoryInputFileSet(c.adapter, 'adapter') }]);
    const output = createBlobOutputTarget();
    try {
      if (prepared.plan.problems.length) return { kind: 'refused', code: 'PLAN', message: prepared.plan.problems.map((p) => p.message).join('\n') };
      await mergeModel({ prepared, output, backend, outDtype: c.outDtype, slabBytes: c.slabBytes });
    } finally {
      await prepared.close();
    }
    const file = output.files().find((f) => f.path === 'model.safetensors')!;
    return { kind: 'merged', bytes: new Uint8Array(await file.blob.arrayBuffer()) };
  } catch (e) {
    if (!isMergeError(e)) throw e;
    return { kind: 'refused', code: e.code, message: e.message };
  }
}

/** Half an ulp of `dtype` at the exact value, plus the float64 truth's own rounding on terms of `magnitude`. */
function tolerance(exact: number, magnitude: number, dtype: 'F16' | 'BF16'): number {
  const mant = dtype === 'F16' ? 10 : 7;
  const e = Math.max(exact === 0 ? -14 : Math.floor(Math.log2(Math.abs(exact))), dtype === 'F16' ? -14 : -126);
  return 2 ** (e - mant - 1) + 2 ** -40 * magnitude;
}

const same = (a: number, b: number, unsignedZeros: boolean) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)) || (unsignedZeros && a === 0 && b === 0);

/** The merged file against the float64 truth; the first wrong element's line, or undefined. */
function wrongElement(c: ThreadCase, bytes: Uint8Array): string | undefined {
  const dtype = c.outDtype === 'f16' ? 'F16' : 'BF16';
  const written = decodeSafetensors(bytes).tensors;
  for (const [key, { shape, w, delta }] of c.real!) {
    const t = written.get(key);
    if (!t) return `${key} not written (${[...written.keys()].join(', ')})`;
    if (t.dtype !== dtype || t.shape.join() !== shape.join()) return `${key} is ${t.dtype} ${JSON.stringify(t.shape)}`;
    for (let i = 0; i < w.length; i++) {
      const got = t.values[i];
      if (!delta || !Number.isFinite(w[i])) {
        // Unchanged (or not finite): the dequantized value in the output dtype, NaN and signs kept.
        const want = roundForDType(delta ? w[i] + delta[i] : w[i], dtype);
        if (!same(got, want, c.unsignedZeros || !!delta)) return `${key}[${i}] is ${got}, expected ${want}`;
        continue;
      }
      const exact = w[i] + delta[i];
      const bound = tolerance(exact, Math.abs(w[i]) + Math.abs(delta[i]), dtype);
      if (Number.isFinite(roundForDType(exact, dtype)) ? !(Math.abs(got - exact) <= bound) : got !== roundForDType(exact, dtype)) {
        return `${key}[${i}] is ${got}, expected ${exact} (bound ${bound})`;
      }
    }
  }
  return undefined;
}

describe('fuzzing quantized row decoding on the worker threads', () => {
  const indices = ONLY !== undefined ? [ONLY] : Array.from({ length: RUNS }, (_, i) => FROM + i);
  // Chunks of 25 cases, each its own test: a long run shows its progress and a failure keeps its neighbours' results.
  const chunks = Array.from({ length: Math.ceil(indices.length / 25) }, (_, k) => indices.slice(25 * k, 25 * k + 25))
    .map((chunk) => ({ chunk, cases: `${chunk[0]}–${chunk[chunk.length - 1]}` }));
  const stats = { merged: 0, refused: 0, onWorkers: 0, cases: 0, byFormat: new Map<string, { merged: number; refused: number }>() };

  it.for(chunks)(`cases $cases (seed ${SEED}): two threads and one give the same outcome, merges equal to the float64 truth, refusals one line naming the module`, { timeout: 120_000 + 25 * 10_000 }, async ({ chunk }) => {
    const { shared, scratch, single } = threads.three();
    for (const index of chunk) {
      const c = threadCase(SEED, index, FORMATS ? { formats: FORMATS } : {});
      const pieces = threads.sharedPool.sent.decodePieces;
      const onShared = await mergeOn(c, shared);
      const onWorkers = threads.sharedPool.sent.decodePieces > pieces;
      const onScratch = await mergeOn(c, scratch);
      const onOne = await mergeOn(c, single);
      const context = `${c.label}\n  two threads, shared: ${show(onShared)}\n  two threads, scratch: ${show(onScratch)}\n  one thread: ${show(onOne)}`;
      expect(key(onScratch), `two threads through the scratch differ from two on shared slabs\n${context}`).toBe(key(onShared));
      expect(key(onOne), `one thread differs from two\n${context}`).toBe(key(onShared));
      if (onShared.kind === 'merged') expect(Buffer.from(onOne.kind === 'merged' ? onOne.bytes : []).equals(Buffer.from(onShared.bytes)), context).toBe(true);
      const t = stats.byFormat.get(c.format) ?? { merged: 0, refused: 0 };
      stats.byFormat.set(c.format, t);
      stats.cases++;
      if (onWorkers) stats.onWorkers++;
      if (onShared.kind === 'refused') {
        t.refused++;
        stats.refused++;
        expect(c.hostile, `a case with no hostile change was refused\n${context}`).toBeDefined();
        expect(onShared.message, `the refusal is not one line\n${context}`).not.toContain('\n');
        expect(onShared.message, `the refusal does not name the module\n${context}`).toContain(c.hostile!.module);
        continue;
      }
      t.merged++;
      stats.merged++;
      expect(c.real, `files with no loadable weight were merged\n${context}`).not.toBeNull();
      const wrong = wrongElement(c, onShared.bytes);
      expect(wrong, context).toBeUndefined();
    }
    // Progress of a long run, as each chunk ends.
    if (chunks.length > 1) console.log(`fuzz threads: seed ${SEED}, cases ${chunk[0]}–${chunk[chunk.length - 1]} passed (${stats.cases} so far: ${stats.merged} merged, ${stats.refused} refused, ${stats.onWorkers} on the workers)`);
  });

  it('reached the worker threads', () => {
    console.log(`fuzz threads: seed ${SEED}, ${stats.cases} cases: ${stats.merged} merged, ${stats.refused} refused, ${stats.onWorkers} decoded on the workers; ${[...stats.byFormat].map(([f, t]) => `${f}: ${t.merged} merged, ${t.refused} refused`).join('; ')}`);
    // Most cases did go to the workers (a hostile one may be refused before any row is decoded).
    if (ONLY === undefined && stats.cases === indices.length) expect(stats.onWorkers).toBeGreaterThan(indices.length / 2);
  });
});

/** One string per outcome: a merge's size and digest, or a refusal's code and line. */
const key = (o: Outcome) => (o.kind === 'merged' ? `merged ${o.bytes.length} bytes, ${hash(o.bytes)}` : `refused ${o.code}: ${o.message}`);

function show(o: Outcome): string {
  return o.kind === 'merged' ? `merged (${o.bytes.length} bytes)` : `refused ${o.code}: ${o.message}`;
}

/** A short digest of the bytes, to compare outcomes in one string (FNV-1a). */
function hash(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return (h >>> 0).toString(16);
}
