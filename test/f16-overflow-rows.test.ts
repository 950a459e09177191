/**
 * The refusal of merged values past the output dtype ("merged values up to X overflow F16") counts
 * over the whole tensor and names its first and last row, as the NaN/Inf refusals do, not only the
 * slab the merge stopped in: a rank-1 PEFT LoRA on a Llama's f16 q_proj (256 × 256, 8 rows a slab of
 * 4096 bytes) whose B is nonzero in rows 10 and 100 only, two slabs apart. On the CPU (one thread and
 * worker threads) and WebGPU, the same line.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { threadBackends } from './helpers/thread-backends.js';
import { H, llama, mergeError, P, prepareLlama } from './helpers/non-finite-cases.js';

const rand = seededRandom(20261207);
const gpu = mergeBackends({ cpu: 'default' });
const backends: Record<string, MergeBackend> = {};

// The CPU on one thread and on worker threads (made and disposed by threadBackends).
const threads = threadBackends();
beforeAll(() => {
  backends['one thread'] = threads.backend();
  backends['worker threads'] = threads.backend(threads.sharedPool);
});

const Q = 'model.layers.0.self_attn.q_proj';
/** B's rows: 1 at row 10, −2 at row 100 (slabs 8–15 and 96–103), 0 elsewhere. */
const B_ROWS = new Map([[10, 1], [100, -2]]);
/** A's inputs: 1000·j, so row 10 passes f16 from input 66 on and row 100 from input 33 on, far from the rounding edge. */
const A = Array.from({ length: H }, (_, j) => 1000 * j);

describe.each(['one thread', 'worker threads', 'webgpu'])('%s: merged values past F16, over the whole tensor', (name) => {
  it('overflow in rows 10 and 100, two slabs apart: the count over both, the first and last row, the largest value', async (ctx) => {
    const backend = name === 'webgpu' ? gpu.webgpu : backends[name];
    if (!backend) return ctx.skip();
    const base = llama(rand);
    const W = base.find((t) => t.name === `${Q}.weight`)!.data as ArrayLike<number>;
    const adapter: FixtureTensor[] = [
      { name: `${P}.${Q}.lora_A.weight`, dtype: 'F32', shape: [1, H], data: A },
      { name: `${P}.${Q}.lora_B.weight`, dtype: 'F32', shape: [H, 1], data: Array.from({ length: H }, (_, r) => B_ROWS.get(r) ?? 0) },
    ];
    // By hand, in float64: W + (α/r = 1)·B·A; f16's largest finite is 65504, and values from 65520 on round to Inf.
    let count = 0, first = -1, last = -1, largest = 0;
    for (let r = 0; r < H; r++) {
      for (let j = 0; j < H; j++) {
        const v = Math.abs(W[r * H + j] + (B_ROWS.get(r) ?? 0) * A[j]);
        largest = Math.max(largest, v);
        if (v < 65520) continue;
        count++;
        if (first < 0) first = r;
        last = r;
      }
    }
    expect([count, first, last]).toEqual([(H - 66) + (H - 33), 10, 100]);
    expect(await mergeError(await prepareLlama(base, { r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, adapter), backend)).toBe(
      `base/model.safetensors: tensor "${Q}.weight": merged values up to ${largest.toPrecision(3)} overflow F16 (largest finite 65504): ` +
        `${count} values (first in row ${first}, last in row ${last}), after the update from adapter1 module "${Q}" (scale 1); write with --dtype bf16 or f32, or lower --weight`,
    );
  });
});
