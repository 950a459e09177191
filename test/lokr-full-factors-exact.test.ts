/**
 * A LoKr module with both factors full and a product rank past a quarter of ΔW's smaller side is
 * merged from ΔW = kron(W₁, W₂) by rows (lokrForm's dense form). Each element of ΔW is one product
 * of two f32 factors, up to 48 significant bits: it must reach the merge exact, as the low-rank
 * form's elements do, so that the output is the exact W + s·ΔW rounded once (README, "Rounding
 * guarantee"). Found by the surface fuzzer (`FUZZ_SEED=11 FUZZ_PATH=1396`, a PEFT LoKr folder on
 * an F16 q_proj): the kron was written out in f32 first, so an element whose f32 product landed on
 * an f16 midpoint came out one f16 step off; a product below f32's subnormals was lost and one past
 * f32's largest was Inf. The truth here is float64, written plainly: every value below is exact in
 * it (products of two f32 values, and sums whose bits span fewer than 53 places).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { CpuWorkerPool } from '../src/engine/cpu/cpu-worker-pool.js';
import { buildSafetensors, roundForDType, type FixtureDType } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { threadBackends } from './helpers/thread-backends.js';

const backends = mergeBackends({ cpu: 'both' });
// The CLI's CPU backend: ops with dense terms are cut into row pieces for its worker threads
// (step-rows.ts), which run the built worker (`npm run build:lib` first, as for cpu-pool-steps.test.ts).
const threads = threadBackends();
let pool: CpuWorkerPool;
beforeAll(() => {
  pool = threads.sharedPool;
  backends['cpu (2 threads)'] = threads.backend(pool);
});

const Q = 'model.layers.0.self_attn.q_proj.weight';
const PREFIX = 'base_model.model.model.layers.0.self_attn.q_proj';
/** q_proj (6, 8) = kron of lokr_w1 (2, 2) and lokr_w2 (3, 4): product rank 2 · 3 = 6 > min(6, 8) / 4, so the dense form. */
const [A, C, B, D] = [2, 2, 3, 4];

/** PEFT's adapter_config.json for a LoKr on q_proj, both factors full (decompose_both false, r above w2's sides). */
function config(alpha: number): string {
  return JSON.stringify({
    peft_type: 'LOKR', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.17.1',
    r: 1, alpha, rank_dropout: 0, module_dropout: 0, use_effective_conv2d: false, decompose_both: false, decompose_factor: -1,
    rank_dropout_scale: false, target_modules: ['q_proj'], init_weights: true, rank_pattern: {}, alpha_pattern: {},
  });
}

/** kron(w1 (a × c), w2 (b × d)) at [o1·b + o2, i1·d + i2], in float64 (each element one exact product). */
function kron(w1: number[], w2: number[], [a, c, b, d]: readonly number[]): Float64Array {
  const out = new Float64Array(a * b * c * d);
  for (let o1 = 0; o1 < a; o1++) for (let o2 = 0; o2 < b; o2++) for (let i1 = 0; i1 < c; i1++) for (let i2 = 0; i2 < d; i2++) {
    out[(o1 * b + o2) * c * d + i1 * d + i2] = w1[o1 * c + i1] * w2[o2 * d + i2];
  }
  return out;
}

interface Case {
  what: string;
  dtype: FixtureDType;
  w: number[];
  w1: number[];
  w2: number[];
  alpha: number;
  /** The element that shows the rounding, with its value rounded once from the exact sum. */
  at: number;
  want: number;
  /** (a, c, b, d): lokr_w1 (a, c), lokr_w2 (b, d); (2, 2, 3, 4) unless given. */
  dims?: readonly number[];
}

const base = (x: number, n = A * B * C * D) => Array.from({ length: n }, (_, i) => (i === 0 ? x : ((i % 7) - 3) / 64));
const rest = (first: number, n: number) => [first, ...Array.from({ length: n - 1 }, (_, i) => ((i % 5) - 2) / 8)];

const CASES: Case[] = [
  {
    // W = 1, w1·w2 = 2^-11 + 2^-47: f32 rounds the product to 2^-11, making 1 + 2^-11 an f16 tie
    // (to even: 1); the exact sum is past it, so 1 + 2^-10.
    what: 'an f32 product on an f16 midpoint, the exact one past it',
    dtype: 'F16', w: base(1), w1: rest(1 + 2 ** -12, A * C), w2: rest(0x1ffe002 * 2 ** -36, B * D), alpha: 1, at: 0, want: 1 + 2 ** -10,
  },
  {
    // w1·w2 = 2^-140 · 2^-20 = 2^-160, below f32's subnormals (0 in f32); α/r = 2^20 brings it to 2^-140.
    what: 'a product below f32’s subnormals, scaled back into range',
    dtype: 'F32', w: base(0), w1: rest(2 ** -140, A * C), w2: rest(2 ** -20, B * D), alpha: 2 ** 20, at: 0, want: 2 ** -140,
  },
  {
    // w1·w2 = 2^200, past f32 (Inf there); α/r = 2^-190 makes it 1024: W' = 1 + 1024.
    what: 'a product past f32’s largest, scaled back into range',
    dtype: 'F16', w: base(1), w1: rest(2 ** 100, A * C), w2: rest(2 ** 100, B * D), alpha: 2 ** -190, at: 0, want: 1025,
  },
  {
    // The first case on a (256, 256) q_proj, lokr_w1 and lokr_w2 (16, 16): 65 536 elements, enough
    // for the CPU backend to cut the op into row pieces for its threads.
    what: 'the f16 midpoint on a layer large enough for the worker threads',
    dtype: 'F16', w: base(1, 256 * 256), w1: rest(1 + 2 ** -12, 256), w2: rest(0x1ffe002 * 2 ** -36, 256), alpha: 1, at: 0, want: 1 + 2 ** -10, dims: [16, 16, 16, 16],
  },
];

describe.each(['cpu (js)', 'cpu (wasm)', 'cpu (2 threads)', 'webgpu'])('%s', (name) => {
  it.for(CASES)('PEFT LoKr, both factors full, merged exactly: $what', async (c, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const [a, cc, b, d] = c.dims ?? [A, C, B, D];
    const baseFile = buildSafetensors([{ name: Q, dtype: c.dtype, shape: [a * b, cc * d], data: c.w }]);
    const adapter = buildSafetensors([
      { name: `${PREFIX}.lokr_w1`, dtype: 'F32', shape: [a, cc], data: c.w1 },
      { name: `${PREFIX}.lokr_w2`, dtype: 'F32', shape: [b, d], data: c.w2 },
    ]);
    const { tensors } = await mergeInMemory({
      backend,
      // The whole layer in one slab, so that the large case reaches the threads.
      slabBytes: 1 << 20,
      base: { 'model.safetensors': baseFile },
      adapters: [{ name: 'adapter', files: { 'adapter_config.json': config(c.alpha), 'adapter_model.safetensors': adapter } }],
    });
    const got = tensors.get(Q)!;
    if (name === 'cpu (2 threads)' && c.dims) expect(pool.sent.stepPieces).toBeGreaterThan(0);
    expect(got.dtype).toBe(c.dtype);
    // PEFT's LoKr: W + (α / r)·kron(w1, w2), r = 1 here; each element rounded once to the base's dtype.
    const delta = kron(c.w1, c.w2, [a, cc, b, d]);
    const exact = Float64Array.from(c.w, (x, i) => x + c.alpha * delta[i]);
    expect(roundForDType(exact[c.at], c.dtype)).toBe(c.want);
    for (let i = 0; i < exact.length; i++) expect(got.values[i], `${Q}[${i}]: exact ${exact[i]}`).toBe(roundForDType(exact[i], c.dtype));
  });
});
