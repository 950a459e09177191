/**
 * merge()'s `threads` option (the command line's `merge --threads`), from both entry points:
 * `threads: 1` merges every tensor on the calling thread and the outcome's `backend` says
 * `1 thread`; `threads: 3` hands row pieces to 3 threads and says so; the bytes written are the
 * same, and every element is W + w·(α/r)·B·A in float64 rounded once to f16. A count that is not an
 * integer from 1 to 1024, or one given with a backend the caller made, is refused before any source
 * is opened. On WebGPU, what the GPU leaves to the CPU runs on the CPU's threads as asked, and the
 * description names how many (1 where the context cannot share memory). Threads
 * are counted by the jobs handed to them, never by time. The browser entry's Web Workers are stood
 * in for by a class that runs the library's worker job handler (test/helpers/stand-in-worker.ts);
 * the Node entry runs from the built library in a child process, whose worker threads' jobs a
 * preload counts (test/helpers/pool-watch.ts). The model: one Llama decoder layer's q_proj, up_proj
 * and down_proj in F16 (hidden 320, intermediate 640), a norm copied as stored, and a PEFT LoRA
 * (r 4, α 8, F32 factors) on the three projections, merged at weight 0.75.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createBackend, isMergeError, merge, type InputFileSet, type MergeOutcome } from '../src/index.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { merge as nodeMerge } from '../src/node.js';
import { REPO_ROOT } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, tempDirs } from './helpers/fixtures.js';
import { GPU_BUFFER_USAGE, narrowGpu } from './helpers/narrow-gpu.js';
import { poolWatch } from './helpers/pool-watch.js';
import { StandInWorker, jobsOnWorkers, stubIsolatedContext } from './helpers/stand-in-worker.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const HIDDEN = 320, INTERMEDIATE = 640, RANK = 4, ALPHA = 8, WEIGHT = 0.75;
const MODULES = [
  { name: 'model.layers.0.self_attn.q_proj', rows: HIDDEN, cols: HIDDEN },
  { name: 'model.layers.0.mlp.up_proj', rows: INTERMEDIATE, cols: HIDDEN },
  { name: 'model.layers.0.mlp.down_proj', rows: HIDDEN, cols: INTERMEDIATE },
] as const;
const NORM = 'model.layers.0.input_layernorm.weight';

const rand = seededRandom(73);
const weights = MODULES.map((m) => ({
  ...m,
  w: randomValues(m.rows * m.cols, rand, 0.05).map((x) => roundForDType(x, 'F16')),
  a: randomValues(RANK * m.cols, rand, 0.1).map(Math.fround),
  b: randomValues(m.rows * RANK, rand, 0.1).map(Math.fround),
}));
const norm = randomValues(HIDDEN, rand).map((x) => roundForDType(1 + x / 4, 'F16'));

const baseFiles = {
  'model.safetensors': buildSafetensors([
    { name: NORM, dtype: 'F16', shape: [HIDDEN], data: norm },
    ...weights.map((m) => ({ name: `${m.name}.weight`, dtype: 'F16' as const, shape: [m.rows, m.cols], data: m.w })),
  ]),
};
const adapterFiles = {
  'adapter_config.json': JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B',
    r: RANK, lora_alpha: ALPHA, lora_dropout: 0.05, bias: 'none', target_modules: ['q_proj', 'up_proj', 'down_proj'],
  }),
  'adapter_model.safetensors': buildSafetensors(weights.flatMap((m) => [
    { name: `base_model.model.${m.name}.lora_A.weight`, dtype: 'F32' as const, shape: [RANK, m.cols], data: m.a },
    { name: `base_model.model.${m.name}.lora_B.weight`, dtype: 'F32' as const, shape: [m.rows, RANK], data: m.b },
  ])),
};

/** W + weight·(α/r)·B·A for every element, in float64, rounded once to f16. */
function truth(m: (typeof weights)[number]): Float64Array {
  const out = new Float64Array(m.rows * m.cols);
  for (let i = 0; i < m.rows; i++) {
    for (let j = 0; j < m.cols; j++) {
      let s = 0;
      for (let k = 0; k < RANK; k++) s += m.b[i * RANK + k] * m.a[k * m.cols + j];
      out[i * m.cols + j] = roundForDType(m.w[i * m.cols + j] + WEIGHT * (ALPHA / RANK) * s, 'F16');
    }
  }
  return out;
}

/** Every merged element is the float64 truth rounded once; the norm is copied as stored. */
function expectTruth(bytes: Uint8Array): void {
  const tensors = decodeSafetensors(bytes).tensors;
  expect(Array.from(tensors.get(NORM)!.values)).toEqual(Array.from(norm));
  for (const m of weights) {
    const merged = tensors.get(`${m.name}.weight`)!;
    expect([merged.dtype, merged.shape]).toEqual(['F16', [m.rows, m.cols]]);
    const want = truth(m);
    let wrong = 0;
    for (let i = 0; i < want.length; i++) if (!Object.is(merged.values[i], want[i])) wrong++;
    expect(wrong, m.name).toBe(0);
  }
}

const browserMerge = (more: object) => merge({
  base: memoryInputFileSet(baseFiles, 'llama'), adapters: [{ source: memoryInputFileSet(adapterFiles, 'lora'), weight: WEIGHT }], backend: 'cpu', ...more,
});
const modelBytes = async (outcome: MergeOutcome) => new Uint8Array(await outcome.blobs.find((b) => b.path === 'model.safetensors')!.blob.arrayBuffer());

beforeEach(stubIsolatedContext);
afterEach(() => vi.unstubAllGlobals());

describe('threads of the browser entry\'s merge(), in a cross-origin isolated context', () => {
  it('threads 1 merges on the calling thread and says 1 thread; threads 3 hands row pieces to 3 Web Workers, says so and stops them; the same bytes, the float64 truth', async () => {
    const one = await browserMerge({ threads: 1 });
    expect(one.backend).toBe('CPU (WebAssembly SIMD, 1 thread; requested)');
    expect(StandInWorker.started).toEqual([]);

    const three = await browserMerge({ threads: 3 });
    expect(three.backend).toBe('CPU (WebAssembly SIMD, 3 threads; requested)');
    expect(StandInWorker.started.length).toBeGreaterThan(0);
    expect(StandInWorker.started.length).toBeLessThanOrEqual(3);
    expect(jobsOnWorkers()).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);

    const [a, b] = [await modelBytes(one), await modelBytes(three)];
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
    expectTruth(a);
  });

  it('where the context is not isolated, threads 3 still merges on one thread and says why', async () => {
    vi.stubGlobal('crossOriginIsolated', false);
    const outcome = await browserMerge({ threads: 3 });
    expect(outcome.backend).toBe('CPU (WebAssembly SIMD, 1 thread; requested; no worker threads: the page is not cross-origin isolated, so workers cannot share memory)');
    expect(StandInWorker.started).toEqual([]);
    expectTruth(await modelBytes(outcome));
  });

  it('on WebGPU, what the GPU leaves to the CPU runs on the threads asked for (1: none), and the bytes are the CPU\'s', async () => {
    const onCpu = await modelBytes(await browserMerge({ threads: 1 }));
    /** `said`: the CPU threads the description names (those asked for, unless the context cannot have them). */
    const gpuMerge = async (threads: number, said = threads) => {
      const narrow = narrowGpu();
      vi.stubGlobal('navigator', { hardwareConcurrency: 4, gpu: narrow.gpu });
      vi.stubGlobal('GPUBufferUsage', GPU_BUFFER_USAGE);
      const outcome = await browserMerge({ backend: 'webgpu', threads });
      expect(outcome.backend).toBe(`WebGPU: nvidia hopper (narrow bindings), with ${said} CPU thread${said === 1 ? '' : 's'} for what the GPU leaves to the CPU`);
      expect(narrow.destroyed()).toBe(true);
      return modelBytes(outcome);
    };

    StandInWorker.started = [];
    const three = await gpuMerge(3);
    expect(StandInWorker.started.length).toBeGreaterThan(0);
    expect(StandInWorker.started.length).toBeLessThanOrEqual(3);
    expect(jobsOnWorkers()).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);

    StandInWorker.started = [];
    const one = await gpuMerge(1);
    expect(StandInWorker.started).toEqual([]);

    // Not cross-origin isolated: no Web Workers, whatever was asked, and the description says 1.
    vi.stubGlobal('crossOriginIsolated', false);
    const lost = await gpuMerge(3, 1);
    expect(StandInWorker.started).toEqual([]);

    for (const bytes of [three, one, lost]) expect(Buffer.from(bytes).equals(Buffer.from(onCpu))).toBe(true);
  });
});

describe('a threads option merge() cannot take is refused before any source is opened', () => {
  /** An InputFileSet that records being listed or read: merge() opening it at all. */
  const opened: string[] = [];
  const spy = (name: string, files: Record<string, Uint8Array | string>): InputFileSet => {
    const inner = memoryInputFileSet(files, name);
    return { name, list: () => (opened.push(name), inner.list()), open: (p) => (opened.push(name), inner.open(p)), readText: (p) => (opened.push(name), inner.readText(p)) };
  };
  const refusal = (run: () => Promise<unknown>) => run().then(() => undefined, (e: unknown) => (isMergeError(e) ? [e.code, e.message] : e));
  const cases: [unknown, string | RegExp][] = [
    [0, 'threads must be a positive integer, not the number 0'],
    [-1, 'threads must be a positive integer, not the number -1'],
    [1.5, 'threads must be a positive integer, not the number 1.5'],
    ['4', 'threads must be a positive integer, not the string "4"'],
    [Number.NaN, 'threads must be a positive integer, not NaN'],
    [1025, /^threads is 1025; at most 1024 \(the limit MAX_THREADS/],
  ];

  it.each(cases)('threads %s, from both entry points', async (threads, message) => {
    opened.length = 0;
    const browser = await refusal(() => merge({ base: spy('llama', baseFiles), adapters: [spy('lora', adapterFiles)], threads } as never));
    // The Node entry, the same way: the path is never looked at.
    const node = await refusal(() => nodeMerge({ base: '/nonexistent/llama', adapters: ['/nonexistent/lora'], out: '/nonexistent/merged', threads } as never));
    for (const outcome of [browser, node]) expect(outcome).toEqual(['BAD_ARGUMENT', typeof message === 'string' ? message : expect.stringMatching(message)]);
    expect(opened).toEqual([]);
    expect(StandInWorker.started).toEqual([]);
  });

  it('threads with a backend the caller made, whose threads were set when it was made', async () => {
    opened.length = 0;
    const backend = await createBackend({ kind: 'cpu' });
    try {
      const e = await refusal(() => merge({ base: spy('llama', baseFiles), adapters: [spy('lora', adapterFiles)], backend, threads: 2 }));
      expect(e).toEqual(['BAD_ARGUMENT', 'threads is for the backend merge() makes; a backend you made has its threads from when it was made (createNodeBackend\'s threads, createBackend\'s cpuPool)']);
      expect(opened).toEqual([]);
    } finally {
      backend.dispose();
    }
  });
});

describe('threads of the Node entry\'s merge() (the built library, in a child process)', () => {
  it('threads 1 posts no job to a worker thread and says 1 thread; threads 3 posts them and says 3 threads; the same bytes, the float64 truth', () => {
    const dir = temp.make({
      ...Object.fromEntries(Object.entries(baseFiles).map(([f, b]) => [`llama/${f}`, b])),
      ...Object.fromEntries(Object.entries(adapterFiles).map(([f, b]) => [`lora/${f}`, b])),
    });
    const watch = poolWatch(dir);
    const node = pathToFileURL(join(REPO_ROOT, 'dist/node.js')).href;
    const script = `
      const { merge } = await import(${JSON.stringify(node)});
      const [dir, threads] = process.argv.slice(-2);
      const done = await merge({ base: dir + '/llama/model.safetensors', adapters: [{ source: dir + '/lora', weight: ${WEIGHT} }], backend: 'cpu', threads: Number(threads), out: dir + '/merged-' + threads + '.safetensors' });
      console.log(done.backend);
    `;
    const run = (threads: number) => {
      const backend = execFileSync(process.execPath, [...watch.nodeArgs, '--input-type=module', '-e', script, dir, String(threads)],
        { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...watch.env() } }).trim();
      return { backend, jobs: watch.jobs(), bytes: readFileSync(join(dir, `merged-${threads}.safetensors`)) };
    };
    const one = run(1), three = run(3);
    expect([one.backend, one.jobs]).toEqual(['CPU (WebAssembly SIMD, 1 thread; requested)', 0]);
    expect(three.backend).toBe('CPU (WebAssembly SIMD, 3 threads; requested)');
    expect(three.jobs).toBeGreaterThan(0);
    expect(three.bytes.equals(one.bytes)).toBe(true);
    expectTruth(one.bytes);
  });
});
