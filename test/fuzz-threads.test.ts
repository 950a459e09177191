/**
 * The thread fuzzer: quantized bases just above the CPU pool's floor for sending work to threads
 * (helpers/fuzz-thread-worlds.ts: bitsandbytes NF4/FP4/int8, mlx affine, GPTQ, AWQ,
 * compressed-tensors int, ModelOpt and ComfyUI NVFP4, ComfyUI mxfp8, gpt-oss MXFP4 experts), with odd shapes and slab
 * sizes and, for some cases, a hostile statistic or shape, merged with a PEFT LoRA on two threads
 * (slabs in shared memory, as the command line reads them), on two threads through the pool's
 * scratch (a page's pool), on four threads with shared slabs and on one thread with no pool. For
 * every case:
 *   - the four give the same outcome: the same bytes, or the same refusal (code and line);
 *   - a merge writes W + ΔW rounded once to the output dtype, W dequantized here in float64 by the
 *     format's published formula (NaN and infinities where the hostile value puts them), every
 *     unchanged weight exactly its dequantized value in that dtype;
 *   - a refusal is one line that names the module it is about, and comes only for a hostile case;
 *     a case whose files hold no loadable weight (a tensor one row short, a weight of another
 *     shape) is refused.
 * A second world (helpers/fuzz-requant-worlds.ts) holds bases whose merged weights are written
 * quantized again in their own format: ComfyUI int8_tensorwise (per tensor, per row), Comfy-Org
 * fp8mixed, ComfyUI scaled fp8 (`scale_weight`), block fp8 (`weight_scale_inv` per 128 × 128) and
 * llama GGUFs (Q8_0, Q4_0, Q5_1, Q3_K, Q4_K, Q5_K, Q6_K), on the same four backends: the same
 * outcome; a merge is the format's re-quantization of W' = W + ΔW computed in the test in float64
 * (the quantizers written from the tools' sources in the helpers), every unmerged tensor byte for
 * byte, and it went to the workers; a refusal is one line naming the module and comes only for a
 * hostile case, which is merged only where its change leaves a copied module what the tool loads.
 * Later re-quantizing worlds, drawn by a count and a stream of their own (so that a seed's cases
 * of the first five formats stay what they were): ComfyUI nvfp4 and mxfp8 layers written as nvfp4
 * and mxfp8 again, and llama GGUF layers (helpers/fuzz-gguf-layers.ts) whose merged matrix may be
 * any of a block's, attn_q and attn_k on llama.cpp's permuted rows, with `--dtype` re-typing
 * (merged-only or not) and `--imatrix` weighted quantizers in the float64 truth.
 * The GGUF worlds added last (helpers/fuzz-gguf-moe.ts), by a count and a stream of their own:
 * mixture-of-experts blocks (stacked 3-D `ffn_{gate,up,down}_exps`, per-expert or fused PEFT
 * LoRAs, llama.cpp MoE LoRAs, per-expert imatrix entries), IQ bases and outputs (IQ4_NL, IQ4_XS,
 * IQ3_S, IQ3_XXS; IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S and IQ1_M written with --imatrix, else F16), the Q4_K_M mix, `--dtype f16` / `bf16`, and the legacy `.dat` imatrix.
 * Last, the command line on 2, 4 and 1 threads in turn stopped by SIGINT at a drawn moment (cases
 * of the re-quantizing worlds without a hostile change, with their --dtype and --imatrix; a second
 * group, by a stream of its own, of the worlds added after the first five): exit
 * 130, its one line, nothing at --out or beside it and the inputs as they were, or, where the merge
 * had finished first, exit 0 and the checked output.
 * Seeded; `npm test` runs a few cases (12 of the first world, 5 of the second, 2 of the later ones,
 * 3 of the last GGUF ones, 3 + 2 Ctrl-C), FUZZ_THREAD_RUNS=<n> many more (and two fifths as many of the second, or
 * FUZZ_THREAD_REQUANT_RUNS=<m>; a sixth as many of the later ones, or FUZZ_THREAD_MORE_RUNS, else
 * FUZZ_THREAD_REQUANT_RUNS; as many of the last GGUF ones, or FUZZ_THREAD_GGUF_RUNS, else FUZZ_THREAD_MORE_RUNS;
 * a fortieth as many Ctrl-C, or FUZZ_THREAD_SIGINT_RUNS=<k>, and as many of the later worlds, or
 * FUZZ_THREAD_SIGINT_MORE_RUNS; FUZZ_SEED picks the seed,
 * FUZZ_THREAD_FROM=<i> starts at case i, FUZZ_THREAD_CASE=<i> replays case i alone, FUZZ_THREAD_FORMATS=<f>,<f> only those formats,
 * THREAD_FORMATS, REQUANT_FORMATS, MORE_REQUANT_FORMATS and GGUF_MORE_FORMATS name them; named formats also pick the Ctrl-C cases). The pools run the built worker script (`npm run build:lib`).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { CpuWorkerPool } from '../src/engine/cpu/cpu-worker-pool.js';
import { isMergeError } from '../src/errors.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { decodeSafetensors, roundForDType, seededRandom, tempDirs } from './helpers/fixtures.js';
import { MORE_REQUANT_FORMATS, REQUANT_FORMATS, requantCase, type RequantCase, type RequantFormat } from './helpers/fuzz-requant-worlds.js';
import { readImportanceMatrix } from '../src/formats/gguf/imatrix.js';
import { bytesSource } from '../src/io/memory-source.js';
import { GGUF_MORE_FORMATS, ggufMoreCase, iqSearchCase, type GgufMoreFormat } from './helpers/fuzz-gguf-moe.js';
import { THREAD_FORMATS, threadCase, type ThreadCase, type ThreadFormat } from './helpers/fuzz-thread-worlds.js';
import { errorLines, runCliActingAtStart, snapshot } from './helpers/cli.js';
import { threadBackends } from './helpers/thread-backends.js';

const RUNS = Number(process.env.FUZZ_THREAD_RUNS ?? 12);
/** The first case's index: a long run may be split into shards that run cases FROM…FROM + RUNS − 1. */
const FROM = Number(process.env.FUZZ_THREAD_FROM ?? 0);
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const ONLY = process.env.FUZZ_THREAD_CASE === undefined ? undefined : Number(process.env.FUZZ_THREAD_CASE);
const ALL_FORMATS: readonly string[] = [...THREAD_FORMATS, ...REQUANT_FORMATS, ...MORE_REQUANT_FORMATS, ...GGUF_MORE_FORMATS];
const NAMED = process.env.FUZZ_THREAD_FORMATS?.split(',').map((f) => f.trim());
for (const f of NAMED ?? []) if (!ALL_FORMATS.includes(f)) throw new Error(`FUZZ_THREAD_FORMATS: no format "${f}" (${ALL_FORMATS.join(', ')})`);
/** The first world's formats asked for (all where none were named). */
const FORMATS = NAMED?.filter((f): f is ThreadFormat => (THREAD_FORMATS as readonly string[]).includes(f));
/** The re-quantizing world's (its first five formats), and those of its worlds added later. */
const REQUANT_NAMED = NAMED?.filter((f): f is RequantFormat => (REQUANT_FORMATS as readonly string[]).includes(f));
const MORE_NAMED = NAMED?.filter((f): f is RequantFormat => (MORE_REQUANT_FORMATS as readonly string[]).includes(f));
const GGUF_MORE_NAMED = NAMED?.filter((f): f is GgufMoreFormat => (GGUF_MORE_FORMATS as readonly string[]).includes(f));
/**
 * The re-quantizing world's cases: two fifths as many as the first's (5 in `npm test`), or
 * FUZZ_THREAD_REQUANT_RUNS; none where only the first's formats are named.
 */
const REQUANT_RUNS = REQUANT_NAMED?.length === 0 ? 0 : Number(process.env.FUZZ_THREAD_REQUANT_RUNS ?? Math.round(RUNS * 0.4));
/**
 * The later re-quantizing worlds' cases (ComfyUI nvfp4 and mxfp8 written as such, llama GGUF layers
 * with q/k permuted, --dtype, --imatrix), drawn by a count and a stream of their own so that a
 * seed's cases above stay as they were: FUZZ_THREAD_MORE_RUNS, else FUZZ_THREAD_REQUANT_RUNS, else a
 * sixth of FUZZ_THREAD_RUNS and at least 2 (2 in `npm test`); none where formats are named and
 * none of these.
 */
const MORE_RUNS = MORE_NAMED?.length === 0 ? 0 : Number(process.env.FUZZ_THREAD_MORE_RUNS ?? process.env.FUZZ_THREAD_REQUANT_RUNS ?? Math.max(2, Math.round(RUNS / 6)));
/**
 * The GGUF worlds added last (helpers/fuzz-gguf-moe.ts: MoE expert tensors, IQ, f16 and bf16
 * re-typing, the Q4_K_M mix, the legacy .dat imatrix), drawn by a count and a stream of their own:
 * FUZZ_THREAD_GGUF_RUNS, else FUZZ_THREAD_MORE_RUNS, else a sixth of FUZZ_THREAD_RUNS and at least
 * 3 (3 in `npm test`); none where formats are named and none of these.
 */
const GGUF_MORE_RUNS = GGUF_MORE_NAMED?.length === 0 ? 0 : Number(process.env.FUZZ_THREAD_GGUF_RUNS ?? process.env.FUZZ_THREAD_MORE_RUNS ?? Math.max(3, Math.round(RUNS / 6)));
/** The formats the Ctrl-C cases draw from: the first five re-quantizing ones, or those named. */
const SIGINT_FORMATS: readonly RequantFormat[] = NAMED ? [...REQUANT_NAMED!, ...MORE_NAMED!] : REQUANT_FORMATS;
/** The formats the later Ctrl-C cases draw from: the worlds added after the first five, or those of them named. */
const SIGINT_MORE_FORMATS: readonly string[] = NAMED ? [...MORE_NAMED!, ...GGUF_MORE_NAMED!] : [...MORE_REQUANT_FORMATS, ...GGUF_MORE_FORMATS];
/**
 * Command-line merges cancelled by Ctrl-C at a drawn moment (a process each, 1 to 9 s), on 2, 4 and 1
 * threads in turn: 3 in `npm test`, a fortieth of FUZZ_THREAD_RUNS (50 in `npm run fuzz`), or
 * FUZZ_THREAD_SIGINT_RUNS.
 */
const SIGINT_RUNS = SIGINT_FORMATS.length === 0 ? 0 : Number(process.env.FUZZ_THREAD_SIGINT_RUNS ?? Math.max(3, Math.round(RUNS / 40)));
/**
 * Ctrl-C cases of the later worlds (their own stream, so that the cases above stay as they were):
 * 2 in `npm test`, FUZZ_THREAD_SIGINT_MORE_RUNS, else as many as FUZZ_THREAD_SIGINT_RUNS gives.
 */
const SIGINT_MORE_RUNS = SIGINT_MORE_FORMATS.length === 0 ? 0 : Number(process.env.FUZZ_THREAD_SIGINT_MORE_RUNS ?? (process.env.FUZZ_THREAD_RUNS || process.env.FUZZ_THREAD_SIGINT_RUNS ? SIGINT_RUNS : 2));
/** A later world's case from its stream: the re-quantizing worlds' or the last GGUF worlds'. */
function laterCase(seed: number, index: number, formats: readonly string[], hostileShare?: number): RequantCase {
  const gguf = formats.filter((f): f is GgufMoreFormat => (GGUF_MORE_FORMATS as readonly string[]).includes(f));
  const requant = formats.filter((f): f is RequantFormat => (MORE_REQUANT_FORMATS as readonly string[]).includes(f));
  // The last GGUF worlds by a draw of their own: about half of these cases where both are asked for.
  const useGguf = gguf.length && (!requant.length || seededRandom((seed * 131 + index * 7 + 5) >>> 0)() < 0.5);
  return useGguf ? ggufMoreCase(seed, index, gguf, hostileShare) : requantCase(seed, index, requant, hostileShare);
}
/** The Ctrl-C case's thread count: 2 (as all were before), 4, 1 in turn. */
const sigintThreads = (index: number) => [2, 4, 1][index % 3];
/** Threads of the wider pool each case also runs on. */
const WIDE = 4;

const threads = threadBackends();
let widePool: CpuWorkerPool | undefined;
beforeAll(() => {
  widePool = threads.pool(WIDE);
});
/** A backend on four threads with shared slabs (the command line's pool on a machine of more cores). */
function wide(): CpuBackend {
  return threads.backend(widePool!);
}

type Outcome = { kind: 'merged'; bytes: Uint8Array } | { kind: 'refused'; code: string; message: string };

async function mergeOn(c: ThreadCase | RequantCase, backend: CpuBackend): Promise<Outcome> {
  try {
    const prepared = await prepareMerge(memoryInputFileSet(c.files, 'model'), [{ files: memoryInputFileSet(c.adapter, 'adapter') }]);
    const output = createBlobOutputTarget();
    try {
      if (prepared.plan.problems.length) return { kind: 'refused', code: 'PLAN', message: prepared.plan.problems.map((p) => p.message).join('\n') };
      const importance = 'importance' in c && c.importance ? await readImportanceMatrix(bytesSource(c.importance.bytes, c.importance.name)) : undefined;
      await mergeModel({
        prepared, output, backend, ...('outDtype' in c ? { outDtype: c.outDtype } : {}), ...('dtypeMergedOnly' in c ? { dtypeMergedOnly: c.dtypeMergedOnly } : {}),
        ...(importance ? { importance } : {}), slabBytes: c.slabBytes,
      });
    } finally {
      await prepared.close();
    }
    const name = 'output' in c ? c.output : 'model.safetensors';
    const file = output.files().find((f) => f.path === name);
    if (!file) throw new Error(`no ${name} among the outputs (${output.files().map((f) => f.path).join(', ')})`);
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
  // None where only the re-quantizing world's formats are named.
  const indices = FORMATS?.length === 0 ? [] : ONLY !== undefined ? [ONLY] : Array.from({ length: RUNS }, (_, i) => FROM + i);
  // Chunks of 25 cases, each its own test: a long run shows its progress and a failure keeps its neighbours' results.
  const chunks = Array.from({ length: Math.ceil(indices.length / 25) }, (_, k) => indices.slice(25 * k, 25 * k + 25))
    .map((chunk) => ({ chunk, cases: `${chunk[0]}–${chunk[chunk.length - 1]}` }));
  const stats: Stats = { merged: 0, refused: 0, onWorkers: 0, cases: 0, byFormat: new Map() };

  it.skipIf(!indices.length).for(chunks)(`cases $cases (seed ${SEED}): two threads and one give the same outcome, merges equal to the float64 truth, refusals one line naming the module`, { timeout: 120_000 + 25 * 10_000 }, async ({ chunk }) => {
    const { shared, scratch, single } = threads.three();
    const wideBackend = wide();
    for (const index of chunk) {
      const c = threadCase(SEED, index, FORMATS?.length ? { formats: FORMATS } : {});
      const pieces = threads.sharedPool.sent.decodePieces;
      const onShared = await mergeOn(c, shared);
      const onWorkers = threads.sharedPool.sent.decodePieces > pieces;
      const onScratch = await mergeOn(c, scratch);
      const onOne = await mergeOn(c, single);
      const onWide = await mergeOn(c, wideBackend);
      const context = expectOneOutcome(c.label, { onShared, onScratch, onOne, onWide });
      countOutcome(stats, c.format, onShared, onWorkers, c.hostile && { module: c.hostile.module }, context);
      if (onShared.kind === 'refused') continue;
      expect(c.real, `files with no loadable weight were merged\n${context}`).not.toBeNull();
      const wrong = wrongElement(c, onShared.bytes);
      expect(wrong, context).toBeUndefined();
    }
    // Progress of a long run, as each chunk ends.
    if (chunks.length > 1) console.log(`fuzz threads: seed ${SEED}, cases ${chunk[0]}–${chunk[chunk.length - 1]} passed (${stats.cases} so far: ${stats.merged} merged, ${stats.refused} refused, ${stats.onWorkers} on the workers)`);
  });

  it.skipIf(!indices.length)('reached the worker threads', () => {
    console.log(`fuzz threads: seed ${SEED}, ${stats.cases} cases: ${stats.merged} merged, ${stats.refused} refused, ${stats.onWorkers} decoded on the workers; ${[...stats.byFormat].map(([f, t]) => `${f}: ${t.merged} merged, ${t.refused} refused`).join('; ')}`);
    // The merges did go to the workers: as many cases decoded there as merged, at least one (a hostile
    // case may be refused before any row is decoded, so a short run can refuse half of its cases).
    if (ONLY === undefined && stats.cases === indices.length) {
      expect(stats.onWorkers).toBeGreaterThan(0);
      expect(stats.onWorkers).toBeGreaterThanOrEqual(stats.merged);
    }
  });
});

type Stats = { merged: number; refused: number; onWorkers: number; cases: number; byFormat: Map<string, { merged: number; refused: number }> };

/**
 * The one outcome of a case merged on two threads (shared slabs and through the scratch), one
 * thread and WIDE threads: the same refusal on each, or the same bytes. Returns the context line
 * that names all four.
 */
function expectOneOutcome(label: string, o: { onShared: Outcome; onScratch: Outcome; onOne: Outcome; onWide: Outcome }): string {
  const context = `${label}\n  two threads, shared: ${show(o.onShared)}\n  two threads, scratch: ${show(o.onScratch)}\n  one thread: ${show(o.onOne)}\n  ${WIDE} threads, shared: ${show(o.onWide)}`;
  expect(key(o.onScratch), `two threads through the scratch differ from two on shared slabs\n${context}`).toBe(key(o.onShared));
  expect(key(o.onOne), `one thread differs from two\n${context}`).toBe(key(o.onShared));
  expect(key(o.onWide), `${WIDE} threads differ from two\n${context}`).toBe(key(o.onShared));
  if (o.onShared.kind === 'merged') {
    const bytes = Buffer.from(o.onShared.bytes);
    for (const other of [o.onOne, o.onWide, o.onScratch]) expect(Buffer.from(other.kind === 'merged' ? other.bytes : []).equals(bytes), context).toBe(true);
  }
  return context;
}

/**
 * Counts a case's outcome; a refusal must come from a hostile change (`hostile`, the module it is
 * in) and be one line naming that module.
 */
function countOutcome(stats: Stats, format: string, outcome: Outcome, onWorkers: boolean, hostile: { module: string } | undefined, context: string, planLists = false): void {
  const t = stats.byFormat.get(format) ?? { merged: 0, refused: 0 };
  stats.byFormat.set(format, t);
  stats.cases++;
  if (onWorkers) stats.onWorkers++;
  if (outcome.kind === 'merged') {
    t.merged++;
    stats.merged++;
    return;
  }
  t.refused++;
  stats.refused++;
  expect(hostile, `a case with no hostile change was refused\n${context}`).toBeDefined();
  // The plan's problems, where a world allows several (one per module: each expert an adapter
  // names), one line each, every one naming the module.
  const lines = planLists && outcome.code === 'PLAN' ? outcome.message.split('\n') : [outcome.message];
  for (const line of lines) {
    expect(line, `the refusal is not one line\n${context}`).not.toContain('\n');
    expect(line, `the refusal does not name the module\n${context}`).toContain(hostile!.module);
  }
}

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

/**
 * A re-quantizing world: `runs` cases drawn among `formats` from the stream `seed` (SEED for the
 * first five formats, another for the later ones), each on the four backends.
 */
function requantWorld(title: string, tag: string, seed: number, formats: readonly string[], runs: number, draw: (seed: number, index: number) => RequantCase = (sd, i) => requantCase(sd, i, formats as readonly RequantFormat[]), planLists = false): void {
  describe(title, () => {
    const indices = formats.length === 0 ? [] : ONLY !== undefined ? [ONLY] : Array.from({ length: runs }, (_, i) => FROM + i);
    const chunks = Array.from({ length: Math.ceil(indices.length / 25) }, (_, k) => indices.slice(25 * k, 25 * k + 25))
      .map((chunk) => ({ chunk, cases: `${chunk[0]}–${chunk[chunk.length - 1]}` }));
    const stats: Stats = { merged: 0, refused: 0, onWorkers: 0, cases: 0, byFormat: new Map() };
    /** Pieces of any kind the pools sent their workers (the merge's own row blocks too: an e5m2 scaled fp8 weight is merged in place, in its codes' domain). */
    const sentPieces = (pool: CpuWorkerPool) => pool.sent.blocks + pool.sent.decodePieces + pool.sent.encodePieces + pool.sent.fp8MaximaPieces + pool.sent.fp8CodePieces + pool.sent.comfyCodePieces;

    it.skipIf(!indices.length).for(chunks)(`cases $cases (seed ${SEED}): two threads (shared, scratch), ${WIDE} threads and one give the same outcome, merges the format's re-quantization of the float64 W', refusals one line naming the module`, { timeout: 120_000 + 25 * 20_000 }, async ({ chunk }) => {
      const { shared, scratch, single } = threads.three();
      const wideBackend = wide();
      for (const index of chunk) {
        const c = draw(seed, index);
        const pieces = sentPieces(threads.sharedPool);
        const onShared = await mergeOn(c, shared);
        const onWorkers = sentPieces(threads.sharedPool) > pieces;
        const onScratch = await mergeOn(c, scratch);
        const onOne = await mergeOn(c, single);
        const onWide = await mergeOn(c, wideBackend);
        const context = expectOneOutcome(c.label, { onShared, onScratch, onOne, onWide });
        countOutcome(stats, c.format, onShared, onWorkers, c.hostile && { module: c.hostile.module.replace(/\.weight$/, '') }, context, planLists);
        if (onShared.kind === 'refused') continue;
        // Every merged weight is above the pool's floor: its decoding, maxima or codes went to the workers.
        expect(onWorkers, `merged without the worker threads\n${context}`).toBe(true);
        // A hostile value in the merged module cannot give its re-quantized W'; anywhere, a weight
        // the tool would not load cannot be merged (see RequantCase.hostile); a huge ΔW merged is
        // checked as any other.
        if (c.hostile) expect(c.hostile.mayMerge, `merged with a hostile change\n${context}`).toBe(true);
        expect(c.check(onShared.bytes), context).toBeUndefined();
      }
      if (chunks.length > 1) console.log(`fuzz threads (${tag}): seed ${SEED}, cases ${chunk[0]}–${chunk[chunk.length - 1]} passed (${stats.cases} so far: ${stats.merged} merged, ${stats.refused} refused, ${stats.onWorkers} on the workers)`);
    });

    it.skipIf(!indices.length)('reached the worker threads', () => {
      console.log(`fuzz threads (${tag}): seed ${SEED}, ${stats.cases} cases: ${stats.merged} merged, ${stats.refused} refused, ${stats.onWorkers} on the workers; ${[...stats.byFormat].map(([f, t]) => `${f}: ${t.merged} merged, ${t.refused} refused`).join('; ')}`);
      // Each merge went to the workers (checked per case): here, that the run merged something at all.
      if (ONLY === undefined && stats.cases === indices.length) expect(stats.merged).toBeGreaterThan(0);
    });
  });
}

requantWorld('fuzzing re-quantized merges on the worker threads', 're-quantized', SEED, NAMED ? REQUANT_NAMED! : REQUANT_FORMATS, REQUANT_RUNS);
requantWorld('fuzzing re-quantized merges on the worker threads: nvfp4, mxfp8, GGUF layers, --dtype, --imatrix', 're-quantized, more', SEED + 2, NAMED ? MORE_NAMED! : MORE_REQUANT_FORMATS, MORE_RUNS);
const GGUF_MORE = NAMED ? GGUF_MORE_NAMED! : GGUF_MORE_FORMATS;
requantWorld('fuzzing GGUF merges on the worker threads: MoE experts, IQ types, f16/bf16 and Q4_K_M re-typed, legacy .dat imatrix', 'GGUF, last', SEED + 3, GGUF_MORE, GGUF_MORE_RUNS, (sd, i) => ggufMoreCase(sd, i, GGUF_MORE), true);
/**
 * The grid-search IQ types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ3_XXS) in turn, as the base's MoE type
 * and as the written one (helpers/fuzz-gguf-moe.ts iqSearchCase), by a count and a stream of their
 * own, so that `npm test` draws each where the cases above, few, may draw none:
 * FUZZ_THREAD_IQ_RUNS, else a twentieth of FUZZ_THREAD_RUNS and at least 5 (5 in `npm test`); none
 * where formats are named and gguf-moe is not.
 */
const IQ_RUNS = NAMED && !NAMED.includes('gguf-moe') ? 0 : Number(process.env.FUZZ_THREAD_IQ_RUNS ?? Math.max(5, Math.round(RUNS / 20)));
requantWorld('fuzzing GGUF merges on the worker threads: each grid-search IQ type, read and written', 'GGUF, IQ searches', SEED + 4, ['gguf-moe'], IQ_RUNS, (sd, i) => iqSearchCase(sd, i), true);

/**
 * `runs` command-line merges cancelled by Ctrl-C, each `draw(index)`'s case; `delaySeed` seeds the
 * moment (another for each group, so that the first group's stay as they were).
 */
function sigintWorld(title: string, tag: string, runs: number, draw: (index: number) => RequantCase, delaySeed: number): void {
describe(title, () => {
  const temp = tempDirs();
  afterAll(temp.removeAll);
  const indices = runs === 0 ? [] : ONLY !== undefined ? [ONLY] : Array.from({ length: runs }, (_, i) => FROM + i);
  const outcomes = { cancelled: 0, finished: 0, byThreads: new Map<number, { cancelled: number; finished: number }>() };

  // The re-quantizing world's cases with no hostile change (another draw than its fuzz's), SIGINT
  // sent 0–400 ms after the command says which backend it runs on: either it stops (exit 130, its one
  // line, nothing at --out or beside it, the inputs as they were) or it had finished (exit 0, the
  // format's re-quantization of W').
  it.skipIf(!indices.length).for(indices.map((index) => ({ index, name: String(index) })))(`case $name (seed ${SEED}): exit 130 and nothing written, or the whole merge`, { timeout: 60_000 }, async ({ index }) => {
    const c = draw(index);
    const threadCount = sigintThreads(index);
    const prefixed = (prefix: string, files: Record<string, Uint8Array | string>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [prefix + k, v]));
    const dir = temp.make({ ...prefixed('model/', c.files), ...prefixed('adapter/', c.adapter), ...(c.importance ? { [`imatrix/${c.importance.name}`]: c.importance.bytes } : {}) });
    const outDir = temp.make();
    const gguf = c.output.endsWith('.gguf');
    const out = join(outDir, gguf ? 'merged.gguf' : 'merged');
    const delay = Math.floor(seededRandom((delaySeed * 31 + index) >>> 0)() * 400);
    const before = snapshot(dir);
    const run = await runCliActingAtStart(
      [
        'merge', '--base', join(dir, 'model', gguf ? c.output : ''), '--adapter', join(dir, 'adapter', c.adapterFile ?? ''), '--out', out, '--backend', 'cpu', '--threads', String(threadCount),
        ...(c.outDtype ? ['--dtype', c.outDtype] : []), ...(c.dtypeMergedOnly ? ['--dtype-merged-only'] : []), ...(c.importance ? ['--imatrix', join(dir, 'imatrix', c.importance.name)] : []),
      ],
      (child) => setTimeout(() => child.kill('SIGINT'), delay),
    );
    const context = `${c.label}, --threads ${threadCount}, SIGINT ${delay} ms after the backend line\nexit ${run.code}\n${run.stderr}`;
    expect(run.stderr, context).toMatch(threadCount === 1 ? /backend: CPU \(WebAssembly SIMD, 1 thread\b/ : new RegExp(`backend: CPU \\(WebAssembly SIMD, ${threadCount} threads`));
    expect(run.stderr, context).not.toMatch(/\n\s+at |internal error/);
    expect([...snapshot(dir)].map(([p, b]) => [p, b && b.length]), `the inputs changed\n${context}`).toEqual([...before].map(([p, b]) => [p, b && b.length]));
    const mine = outcomes.byThreads.get(threadCount) ?? { cancelled: 0, finished: 0 };
    outcomes.byThreads.set(threadCount, mine);
    if (run.code === 130) {
      outcomes.cancelled++;
      mine.cancelled++;
      expect(errorLines(run.stderr), context).toEqual([`error: merge cancelled; nothing was written to ${out}`]);
      expect(readdirSync(outDir), `left in the output's folder\n${context}`).toEqual([]);
      return;
    }
    outcomes.finished++;
    mine.finished++;
    expect(run.code, context).toBe(0);
    expect(readdirSync(outDir), context).toEqual([gguf ? 'merged.gguf' : 'merged']);
    if (!gguf) expect(readdirSync(out).sort(), context).toEqual(['config.json', 'model.safetensors']);
    expect(c.check(readFileSync(gguf ? out : join(out, 'model.safetensors'))), context).toBeUndefined();
  });

  it.skipIf(!indices.length)('outcomes', () => {
    console.log(`fuzz threads (${tag}): seed ${SEED}, ${indices.length} cases: ${outcomes.cancelled} cancelled, ${outcomes.finished} finished first; ${[...outcomes.byThreads].sort(([a], [b]) => a - b).map(([t, o]) => `${t} thread${t === 1 ? '' : 's'}: ${o.cancelled} cancelled, ${o.finished} finished`).join('; ')}`);
  });
});
}

sigintWorld('merges on 2, 4 and 1 threads cancelled by Ctrl-C (the command line)', 'Ctrl-C', SIGINT_RUNS, (index) => requantCase(SEED + 1, index, SIGINT_FORMATS, 0), SEED);
sigintWorld('merges of the later worlds (nvfp4, mxfp8, GGUF layers, MoE experts, IQ, .dat imatrix) on 2, 4 and 1 threads cancelled by Ctrl-C', 'Ctrl-C, later worlds', SIGINT_MORE_RUNS, (index) => laterCase(SEED + 4, index, SIGINT_MORE_FORMATS, 0), SEED + 4);
