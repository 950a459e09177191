/**
 * The three CPU backends the thread tests compare, and the PEFT LoRA they merge: two threads on
 * shared slabs (the command line's pool), two threads through the pool's scratch (a page's pool,
 * whose slabs are no shared memory) and one thread with no pool. The pools run the compiled worker
 * script (npm test builds it first; built here when it is missing).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { CpuBackend } from '../../src/engine/cpu/cpu-backend.js';
import { CpuWorkerPool } from '../../src/engine/cpu/cpu-worker-pool.js';
import { buildSafetensors, randomValues, type FixtureTensor } from './fixtures.js';

const REPO_ROOT = join(import.meta.dirname, '..', '..');

/** The two pools and a maker of backends on them; every pool and backend made is disposed after the file. */
export interface ThreadBackends {
  /** Two threads whose slabs are shared memory (made on first use). */
  readonly sharedPool: CpuWorkerPool;
  /** Two threads that get copies through the pool's scratch (made on first use). */
  readonly scratchPool: CpuWorkerPool;
  /** A pool of its own of `threads` threads (shared slabs unless `sharedSlabs` is false), for a count or kind the two above are not. */
  pool(threads: number, options?: { sharedSlabs?: boolean }): CpuWorkerPool;
  /** A backend on `pool`, or on the calling thread alone without one. */
  backend(pool?: CpuWorkerPool): CpuBackend;
  /** One backend of each kind. */
  three(): { shared: CpuBackend; scratch: CpuBackend; single: CpuBackend };
}

/**
 * Registers the file's beforeAll/afterAll hooks: the first builds the worker script where it is
 * missing (call this before the file's own beforeAll makes backends), the second disposes every
 * pool and backend made.
 */
export function threadBackends(): ThreadBackends {
  let workerUrl: URL | undefined;
  let sharedPool: CpuWorkerPool | undefined;
  let scratchPool: CpuWorkerPool | undefined;
  const pools: CpuWorkerPool[] = [];
  const made: CpuBackend[] = [];
  beforeAll(() => {
    const workerScript = join(REPO_ROOT, 'dist/engine/cpu/cpu-worker.js');
    if (!existsSync(workerScript)) {
      execFileSync(process.execPath, ['scripts/gen-wasm.mjs'], { cwd: REPO_ROOT });
      execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: REPO_ROOT });
    }
    workerUrl = pathToFileURL(workerScript);
  });
  afterAll(() => {
    made.forEach((b) => b.dispose());
    pools.forEach((p) => p.dispose());
  });
  const result: ThreadBackends = {
    get sharedPool() { return (sharedPool ??= result.pool(2)); },
    get scratchPool() { return (scratchPool ??= result.pool(2, { sharedSlabs: false })); },
    pool(threads, options = {}) {
      if (!workerUrl) throw new Error('threadBackends: pools are made in or after beforeAll');
      const pool = new CpuWorkerPool(workerUrl, threads, options);
      pools.push(pool);
      return pool;
    },
    backend(pool) {
      const b = new CpuBackend('test', pool ? { pool } : {});
      made.push(b);
      return b;
    },
    three() {
      return { shared: result.backend(result.sharedPool), scratch: result.backend(result.scratchPool), single: result.backend() };
    },
  };
  return result;
}

/**
 * A PEFT LoRA with f32 factors on the `rows` modules (module path → its outputs) of `cols` inputs,
 * `target_modules` the paths' last names; its ΔW per module (α/r·B·A) in float64.
 */
export function peftLoraOn(
  rows: Readonly<Record<string, number>>,
  cols: number,
  r: number,
  alpha: number,
  rand: () => number,
): { files: Record<string, Uint8Array | string>; delta: Map<string, Float64Array> } {
  const tensors: FixtureTensor[] = [];
  const delta = new Map<string, Float64Array>();
  for (const [m, n] of Object.entries(rows)) {
    const a = Array.from(randomValues(r * cols, rand, 0.3), Math.fround);
    const b = Array.from(randomValues(n * r, rand, 0.3), Math.fround);
    const d = new Float64Array(n * cols);
    for (let o = 0; o < n; o++) for (let i = 0; i < cols; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += b[o * r + k] * a[k * cols + i];
      d[o * cols + i] = (alpha / r) * s;
    }
    delta.set(m, d);
    tensors.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32', shape: [r, cols], data: a });
    tensors.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32', shape: [n, r], data: b });
  }
  const targets = [...new Set(Object.keys(rows).map((m) => m.slice(m.lastIndexOf('.') + 1)))];
  return {
    files: {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: alpha, target_modules: targets, bias: 'none', fan_in_fan_out: false }),
      'adapter_model.safetensors': buildSafetensors(tensors),
    },
    delta,
  };
}
