/**
 * Butterfly OFT end to end: LyCORIS BOFT in kohya-style files (4-D `oft_blocks`, `rescale`, the
 * constraint in `alpha`) and PEFT BOFT folders (`boft_R`, `boft_s`, adapter_config.json), linear and
 * conv, with other adapters on the same tensors, merged in row slabs on the CPU (JavaScript and
 * WebAssembly) and on WebGPU. The truth is float64 written here from the tools' code: LyCORIS's
 * unflatten/transpose/einsum loop as index arithmetic, and PEFT's dense P·diag(R)·Pᵀ products with
 * its block_butterfly_perm.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { isMergeError } from '../src/errors.js';
import { lycorisButterflyGather, peftButterflyGather } from '../src/algorithms/math/boft.js';
import { describePlan } from '../src/cli/plan-report.js';
import { estimateUpdateMagnitudes } from '../src/plan/update-magnitudes.js';
import { moduleLimitProblem } from '../src/plan/request-checks.js';
import type { AdapterModule } from '../src/formats/adapter.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { asMat, block, blockDiag, eye, flat, inverse, lin, mul, transpose, type Mat } from './helpers/dense-f64.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'both' });

interface T { shape: number[]; dtype: FixtureDType; v: Float64Array }
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const rnd = (rand: () => number, shape: number[], dtype: FixtureDType = 'F32', scale = 1): T =>
  ({ shape, dtype, v: randomValues(numel(shape), rand, scale).map((x) => roundForDType(x, dtype)) });
const fx = (name: string, t: T): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: t.v });
const scalar = (name: string, value: number): FixtureTensor => ({ name, dtype: 'F32', shape: [], data: [value] });

// --- LyCORIS: make_weight, transcribed -----------------------------------------------------------

/**
 * lycoris/modules/boft.py make_weight(scale = s) on W (out × cols): Q = B − Bᵀ, capped at α·out over
 * all blocks; R = (I + Q)(I − Q)⁻¹; for each factor i (k = 2^i·b/2), rows unflattened to (−1, 2, k),
 * transposed to (−1, k, 2), split into blocks of b, each mapped by s·R + (1 − s)·I, put back; then
 * every row times rescale.
 */
function lycorisTruth(w: Float64Array, out: number, blocks: T, alpha: number, s: number, rescale?: Float64Array): Float64Array {
  const [m, n, b] = blocks.shape;
  const cols = w.length / out;
  const q = blocks.v.map((_, idx) => {
    const base = idx - (idx % (b * b)), i = Math.floor((idx % (b * b)) / b), j = idx % b;
    return blocks.v[base + i * b + j] - blocks.v[base + j * b + i];
  });
  const norm = Math.sqrt(q.reduce((acc, x) => acc + x * x, 0)) + 1e-8;
  const kappa = alpha * out;
  const f = alpha > 0 && norm > kappa ? kappa / norm : 1;
  let inp: Mat = asMat(w, out, cols);
  for (let i = 0; i < m; i++) {
    const k = 2 ** i * (b / 2);
    // (c, g, kk) → (c, kk, g): permuted row c·2k + kk·2 + g is row c·2k + g·k + kk.
    const perm: Mat = new Array(out);
    for (let c = 0; c < out / (2 * k); c++) for (let kk = 0; kk < k; kk++) for (let g = 0; g < 2; g++) perm[c * 2 * k + kk * 2 + g] = inp[c * 2 * k + g * k + kk];
    const mapped: Mat = new Array(out);
    for (let d = 0; d < n; d++) {
      const Q = block(q, (i * n + d) * b * b, b).map((row) => row.map((x) => x * f));
      const R = mul(lin(eye(b), Q, 1, 1), inverse(lin(eye(b), Q, 1, -1)));
      const bi = lin(R, eye(b), s, 1 - s);
      const y = mul(bi, perm.slice(d * b, (d + 1) * b));
      y.forEach((row, r) => { mapped[d * b + r] = row; });
    }
    inp = new Array(out);
    for (let c = 0; c < out / (2 * k); c++) for (let kk = 0; kk < k; kk++) for (let g = 0; g < 2; g++) inp[c * 2 * k + g * k + kk] = mapped[c * 2 * k + kk * 2 + g];
  }
  if (rescale) inp = inp.map((row, o) => row.map((x) => x * rescale[o]));
  return flat(inp);
}

// --- PEFT: get_delta_weight and merge, transcribed -------------------------------------------------

/** tuners/boft/layer.py block_butterfly_perm(n, b, r, n_butterfly_factor), as written there. */
function blockButterflyPerm(n: number, b: number, r: number, nButterflyFactor: number): number[] {
  const indices = Array.from({ length: n }, (_, i) => i);
  if (nButterflyFactor === 0) return indices;
  const blockSize = n / b;
  const step = blockSize / r;
  const sortedSeq = [...Array.from({ length: Math.ceil(step / 2) }, (_, j) => 2 * j), ...Array.from({ length: Math.floor(step / 2) }, (_, j) => 2 * j + 1)];
  const sortedOrder = new Array<number>(blockSize);
  sortedSeq.forEach((pos, i) => { for (let t = 0; t < r; t++) sortedOrder[i * r + t] = pos * r + t; });
  const out = indices.slice();
  for (let i = 0; i < n; i += blockSize) for (let j = 0; j < blockSize; j++) out[i + j] = indices[i + sortedOrder[j]];
  return out;
}

/** perm2mat: P[i, idx] = 1. */
const perm2mat = (idx: number[]): Mat => idx.map((j) => idx.map((_, c) => (c === j ? 1 : 0)));

/**
 * PEFT BOFT's merged weight with user weight s (each rotation block I + s·(R − I), boft_s as
 * 1 + s·(boft_s − 1)): R_k = (I − S)(I + S)⁻¹, S = ½(A − Aᵀ); M_i = P_i·diag(R)·P_iᵀ;
 * R = M_{N−1}···M_0; W' = (R·Wᵀ)ᵀ ⊙ boft_s per output row.
 */
function peftTruth(w: Float64Array, out: number, boftR: T, boftS: Float64Array, s: number): Float64Array {
  const [N, D, H] = boftR.shape;
  const inF = D * H;
  let rot = eye(inF);
  for (let i = 0; i < N; i++) {
    const rs = Array.from({ length: D }, (_, d) => {
      const A = block(boftR.v, (i * D + d) * H * H, H);
      const S = lin(A, transpose(A), 0.5, -0.5);
      const R = mul(lin(eye(H), S, 1, -1), inverse(lin(eye(H), S, 1, 1)));
      return lin(R, eye(H), s, 1 - s);
    });
    const P = perm2mat(blockButterflyPerm(inF, D / 2 ** i, H / 2, N - 1));
    rot = mul(mul(mul(P, blockDiag(rs)), transpose(P)), rot);
  }
  const merged = transpose(mul(rot, transpose(asMat(w, out, inF))));
  return flat(merged.map((row, o) => row.map((x) => x * (1 + s * (boftS[o] - 1)))));
}

// --- merging -------------------------------------------------------------------------------------

interface Adapter { files: Record<string, Uint8Array>; name: string; weight: number }

async function merge(backend: MergeBackend, base: Record<string, T>, adapters: Adapter[], outDtype?: string) {
  const baseFile = buildSafetensors(Object.entries(base).map(([k, t]) => fx(k, t)));
  return (await mergeInMemory({ backend, base: { 'model.safetensors': baseFile }, adapters, outDtype })).tensors;
}

const peftFolder = (config: object, tensors: FixtureTensor[]) => ({
  'adapter_config.json': new TextEncoder().encode(JSON.stringify(config)), 'adapter_model.safetensors': buildSafetensors(tensors),
});

const flatName = (key: string) => key.replace(/\.weight$/, '').replace(/\./g, '_');

// --- fixed files ---------------------------------------------------------------------------------

const rand = seededRandom(31);
const UNET = {
  toQ: 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight',
  conv: 'down_blocks.0.resnets.0.conv1.weight',
  ff: 'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight',
};
const unet: Record<string, T> = {
  [UNET.toQ]: rnd(rand, [16, 12], 'BF16'),
  [UNET.conv]: rnd(rand, [8, 4, 3, 3], 'F16'),
  [UNET.ff]: rnd(rand, [32, 10], 'F32'),
};
// to_q: n = 4 blocks of b = 4, m = 3 factors, constraint α = 0.01 (κ = 0.16, reached), rescale.
const toqBlocks = rnd(rand, [3, 4, 4, 4], 'F32', 0.3);
const toqRescale: T = { shape: [16, 1], dtype: 'F32', v: randomValues(16, rand, 0.2).map((x) => Math.fround(1 + x)) };
// conv1: n = 4 blocks of b = 2, m = 3, no constraint (α = 0), no rescale, stored in bf16.
const convBlocks = rnd(rand, [3, 4, 2, 2], 'BF16', 0.4);
// ff.net.2: n = 2 blocks of 16, m = 2.
const ffBlocks = rnd(rand, [2, 2, 16, 16], 'F16', 0.05);
const lycoris = buildSafetensors([
  fx(`lora_unet_${flatName(UNET.toQ)}.oft_blocks`, toqBlocks), fx(`lora_unet_${flatName(UNET.toQ)}.rescale`, toqRescale), scalar(`lora_unet_${flatName(UNET.toQ)}.alpha`, 0.01),
  fx(`lora_unet_${flatName(UNET.conv)}.oft_blocks`, convBlocks), scalar(`lora_unet_${flatName(UNET.conv)}.alpha`, 0),
  fx(`lycoris_${flatName(UNET.ff)}.oft_blocks`, ffBlocks), scalar(`lycoris_${flatName(UNET.ff)}.alpha`, 0),
]);
// A LoRA on to_q after it: rank 2, α = 1.
const loraDown = rnd(rand, [2, 12], 'F16'), loraUp = rnd(rand, [16, 2], 'F16');
const lora = buildSafetensors([
  fx(`lora_unet_${flatName(UNET.toQ)}.lora_down.weight`, loraDown), fx(`lora_unet_${flatName(UNET.toQ)}.lora_up.weight`, loraUp), scalar(`lora_unet_${flatName(UNET.toQ)}.alpha`, 1),
]);

const LLM = { q: 'model.layers.0.self_attn.q_proj', v: 'model.layers.0.self_attn.v_proj', conv: 'vision.patch_embed.proj' };
const llm: Record<string, T> = {
  [`${LLM.q}.weight`]: rnd(rand, [20, 24], 'F16'),
  [`${LLM.v}.weight`]: rnd(rand, [12, 24], 'BF16'),
  [`${LLM.conv}.weight`]: rnd(rand, [6, 4, 3, 3], 'F32'),
};
// q_proj: 3 factors of 4 blocks of 6 (PEFT: boft_block_size 6, boft_n_butterfly_factor 3);
// v_proj: one factor of 8 blocks of 3 (P is the identity); the conv's 36 inputs: 2 factors of 6 blocks of 6.
const qR = rnd(rand, [3, 4, 6, 6], 'F32', 0.2), qS: T = { shape: [20, 1], dtype: 'F32', v: randomValues(20, rand, 0.1).map((x) => Math.fround(1 + x)) };
const vR = rnd(rand, [1, 8, 3, 3], 'BF16', 0.3), vS: T = { shape: [12, 1], dtype: 'BF16', v: randomValues(12, rand, 0.1).map((x) => roundForDType(1 + x, 'BF16')) };
const cR = rnd(rand, [2, 6, 6, 6], 'F32', 0.2), cS: T = { shape: [1, 6], dtype: 'F32', v: randomValues(6, rand, 0.1).map((x) => Math.fround(1 + x)) };
const peftBoft = peftFolder({ peft_type: 'BOFT', boft_block_size: 6, boft_block_num: 0, boft_n_butterfly_factor: 3, target_modules: ['q_proj', 'v_proj', 'proj'] }, [
  fx(`base_model.model.${LLM.q}.boft_R`, qR), fx(`base_model.model.${LLM.q}.boft_s`, qS),
  fx(`base_model.model.${LLM.v}.boft_R`, vR), fx(`base_model.model.${LLM.v}.boft_s`, vS),
  fx(`base_model.model.${LLM.conv}.boft_R`, cR), fx(`base_model.model.${LLM.conv}.boft_s`, cS),
]);
// A PEFT LoRA on q_proj before it: rank 3, α 6.
const qA = rnd(rand, [3, 24], 'F32'), qB = rnd(rand, [20, 3], 'F32');
const peftLora = peftFolder({ r: 3, lora_alpha: 6, target_modules: ['q_proj'] }, [fx(`base_model.model.${LLM.q}.lora_A.weight`, qA), fx(`base_model.model.${LLM.q}.lora_B.weight`, qB)]);

function addLowRank(w: Float64Array, up: T, down: T, scale: number): Float64Array {
  const [out, r] = up.shape, cols = down.v.length / r;
  return w.map((x, idx) => {
    const o = Math.floor(idx / cols), c = idx % cols;
    let d = 0;
    for (let k = 0; k < r; k++) d += up.v[o * r + k] * down.v[k * cols + c];
    return x + scale * d;
  });
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it('LyCORIS BOFT (linear with constraint and rescale, conv, lycoris_ names), then a LoRA', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const s = 0.7;
    const merged = await merge(backend, unet, [
      { name: 'boft.safetensors', files: { 'boft.safetensors': lycoris }, weight: s },
      { name: 'lora.safetensors', files: { 'lora.safetensors': lora }, weight: -0.5 },
    ]);
    const toQ = addLowRank(lycorisTruth(unet[UNET.toQ].v, 16, toqBlocks, 0.01, s, toqRescale.v), loraUp, loraDown, -0.5 / 2);
    expectMerged(merged.get(UNET.toQ)!.values, toQ, 'BF16', 'to_q');
    expectMerged(merged.get(UNET.conv)!.values, lycorisTruth(unet[UNET.conv].v, 8, convBlocks, 0, s), 'F16', 'conv1');
    expectMerged(merged.get(UNET.ff)!.values, lycorisTruth(unet[UNET.ff].v, 32, ffBlocks, 0, s), 'F32', 'ff.net.2');
  });

  it('PEFT BOFT after a PEFT LoRA: butterfly factors of the inputs, boft_s, a conv, row slabs', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const merged = await merge(backend, llm, [
      { name: 'lora', files: peftLora, weight: 1 },
      { name: 'boft', files: peftBoft, weight: 1 },
    ]);
    const q = peftTruth(addLowRank(llm[`${LLM.q}.weight`].v, qB, qA, 2), 20, qR, qS.v, 1);
    expectMerged(merged.get(`${LLM.q}.weight`)!.values, q, 'F16', 'q_proj');
    expectMerged(merged.get(`${LLM.v}.weight`)!.values, peftTruth(llm[`${LLM.v}.weight`].v, 12, vR, vS.v, 1), 'BF16', 'v_proj');
    expectMerged(merged.get(`${LLM.conv}.weight`)!.values, peftTruth(llm[`${LLM.conv}.weight`].v, 6, cR, cS.v, 1), 'F32', 'conv');
  });

  it('PEFT BOFT at weight 0.5: each block I + s·(R − I), boft_s 1 + s·(boft_s − 1), to f8_e4m3', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const merged = await merge(backend, llm, [{ name: 'boft', files: peftBoft, weight: 0.5 }], 'f8_e4m3');
    expectMerged(merged.get(`${LLM.q}.weight`)!.values, peftTruth(llm[`${LLM.q}.weight`].v, 20, qR, qS.v, 0.5), 'F8_E4M3', 'q_proj');
    expectMerged(merged.get(`${LLM.conv}.weight`)!.values, peftTruth(llm[`${LLM.conv}.weight`].v, 6, cR, cS.v, 0.5), 'F8_E4M3', 'conv');
  });
});

it('plans BOFT by name, and sizes it for the chart from ‖W′ − W‖', async () => {
  const prepared = await prepareMerge(memoryInputFileSet({ 'model.safetensors': buildSafetensors(Object.entries(unet).map(([k, t]) => fx(k, t))) }, 'base'),
    [{ files: memoryInputFileSet({ 'boft.safetensors': lycoris }, 'boft.safetensors'), weight: 1 }]);
  expect(describePlan(prepared, true)).toMatch(/to_q\.weight .* ← lora_unet_.*_to_q BOFT scale=1/);
  const magnitudes = await estimateUpdateMagnitudes(prepared.plan, async (key, r0, n) => {
    const t = unet[key];
    const cols = numel(t.shape.slice(1));
    return { dtype: 'F32', data: new Uint8Array(Float32Array.from(t.v.subarray(r0 * cols, (r0 + n) * cols)).buffer) };
  });
  await prepared.close();
  const q = magnitudes.find((m) => m.baseKey === UNET.toQ)!;
  const w = unet[UNET.toQ].v, merged = lycorisTruth(w, 16, toqBlocks, 0.01, 1, toqRescale.v);
  expect(q.updateNorm).toBeCloseTo(Math.sqrt(w.reduce((acc, x, i) => acc + (merged[i] - x) ** 2, 0)), 3);
});

describe('random shapes, factor counts and dtypes', () => {
  const DTYPES: FixtureDType[] = ['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'];
  describe.each(['cpu (wasm)', 'webgpu'])('%s', (name) => {
    it.each([1, 2, 3, 4, 5, 6])('LyCORIS and PEFT BOFT, seed %i', async (seed) => {
      const backend = backends[name];
      if (!backend) return;
      const r = seededRandom(500 + seed);
      const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
      const pick = <X>(xs: X[]) => xs[int(0, xs.length - 1)];
      const kernel = pick([[], [3, 3], [1, 1]]);
      const K = numel(kernel);
      const wDtype = pick(DTYPES);
      // LyCORIS: out = n·b rows, n a power of two, m = log2(n) + 1.
      const b = 2 * int(1, 3), n = 2 ** int(0, 3), out = n * b, inC = int(1, 6);
      const key = 'down_blocks.1.resnets.0.conv2.weight';
      const w = rnd(r, [out, inC, ...kernel], wDtype, 2);
      const blocks = rnd(r, [Math.log2(n) + 1, n, b, b], pick(['F32', 'BF16', 'F16']), 0.3);
      const alpha = pick([0, 0.005, 0.1]);
      const rescale = r() < 0.5 ? { shape: [out, 1, ...kernel.map(() => 1)], dtype: 'F32' as const, v: randomValues(out, r, 0.2).map((x) => Math.fround(1 + x)) } : undefined;
      const nm = `lora_unet_${flatName(key)}`;
      const file = buildSafetensors([fx(`${nm}.oft_blocks`, blocks), scalar(`${nm}.alpha`, alpha), ...(rescale ? [fx(`${nm}.rescale`, rescale)] : [])]);
      const s = pick([1, 0.6, -0.3]);
      const lyco = await merge(backend, { [key]: w }, [{ name: 'b.safetensors', files: { 'b.safetensors': file }, weight: s }]);
      expectMerged(lyco.get(key)!.values, lycorisTruth(w.v, out, blocks, alpha, s, rescale?.v), wDtype, `LyCORIS n=${n} b=${b} k=${K} α=${alpha}`);

      // PEFT: N factors of D blocks of H over in·K inputs; D divisible by 2^(N−1), H even when N > 1.
      const N = int(1, 3), H = N > 1 ? 2 * int(1, 3) : int(1, 5), D = 2 ** (N - 1) * int(1, 2);
      const inF = D * H;
      if (inF % K !== 0) return;
      const outP = int(1, 9);
      const base = 'model.layers.3.mlp.down_proj';
      const wp = rnd(r, [outP, inF / K, ...kernel], wDtype, 2);
      const R = rnd(r, [N, D, H, H], pick(['F32', 'BF16']), 0.3);
      const S: T = { shape: kernel.length ? [1, outP] : [outP, 1], dtype: 'F32', v: randomValues(outP, r, 0.2).map((x) => Math.fround(1 + x)) };
      const folder = peftFolder({ peft_type: 'BOFT', boft_block_size: H, boft_n_butterfly_factor: N }, [fx(`base_model.model.${base}.boft_R`, R), fx(`base_model.model.${base}.boft_s`, S)]);
      const sp = pick([1, 0.4]);
      const peft = await merge(backend, { [`${base}.weight`]: wp }, [{ name: 'p', files: folder, weight: sp }]);
      expectMerged(peft.get(`${base}.weight`)!.values, peftTruth(wp.v, outP, R, S.v, sp), wDtype, `PEFT N=${N} D=${D} H=${H} k=${K}`);
    });
  });
});

it('the engine permutations are the tools\' own', () => {
  // PEFT: σ_i inverts block_butterfly_perm; LyCORIS: the (2, k) → (k, 2) transpose.
  for (const [D, H, N] of [[8, 4, 4], [4, 6, 3], [6, 2, 2], [16, 2, 5]]) {
    for (let i = 0; i < N; i++) {
      const pi = blockButterflyPerm(D * H, D / 2 ** i, H / 2, N - 1);
      const sigma = peftButterflyGather(D * H, H, i, N);
      pi.forEach((src, p) => expect(sigma[src], `D=${D} H=${H} i=${i}`).toBe(p));
    }
  }
  const sigma = lycorisButterflyGather(8, 2, 1); // runs of 4 as (2, 2) → (2, 2)ᵀ
  expect([...sigma]).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  expect([...lycorisButterflyGather(8, 4, 0)]).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  expect([...lycorisButterflyGather(8, 4, 1)]).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
});

it('refuses rotation blocks above MAX_ROTATION_BLOCK before reading them', () => {
  const module = { algorithm: 'peft-boft', rank: 1, update: { kind: 'transform', cost: 3 * 4100, block: 4100 } } as unknown as AdapterModule;
  expect(moduleLimitProblem(module)).toMatch(/rotation blocks of 4100, above the limit of 4096 \(MAX_ROTATION_BLOCK\)/);
  expect(moduleLimitProblem({ ...module, update: { kind: 'transform', cost: 12, block: 4 } })).toBeUndefined();
});

it('refuses BOFT files that are not what the tools write, naming the module', async () => {
  const w = { [UNET.toQ]: rnd(rand, [16, 12], 'F32') };
  const fail = async (adapter: Record<string, Uint8Array>, pattern: RegExp) => {
    const e = await prepareMerge(memoryInputFileSet({ 'model.safetensors': buildSafetensors(Object.entries(w).map(([k, t]) => fx(k, t))) }, 'base'), [{ files: memoryInputFileSet(adapter, 'a') }])
      .then((p) => p.plan.problems.map((x) => x.message).join('\n'), (err: unknown) => (isMergeError(err) ? err.message : String(err)));
    expect(e).toMatch(pattern);
  };
  const n = `lora_unet_${flatName(UNET.toQ)}`;
  // Two factors of 4 blocks: LyCORIS builds log2(4) + 1 = 3.
  await fail({ 'a.safetensors': buildSafetensors([fx(`${n}.oft_blocks`, rnd(rand, [2, 4, 4, 4]))]) }, new RegExp(`module "${n}".*log2\\(n\\) \\+ 1 butterfly factors`));
  // Odd blocks.
  await fail({ 'a.safetensors': buildSafetensors([fx(`${n}.oft_blocks`, rnd(rand, [1, 1, 3, 3]))]) }, /b even/);
  // A rescale that is not one value per output row (16 here), for BOFT and diag-OFT alike.
  await fail({ 'a.safetensors': buildSafetensors([fx(`${n}.oft_blocks`, rnd(rand, [3, 4, 4, 4])), fx(`${n}.rescale`, rnd(rand, [8, 1]))]) }, new RegExp(`module "${n}".*rescale \\(8, 1\\) do not fit`));
  await fail({ 'a.safetensors': buildSafetensors([fx(`${n}.oft_blocks`, rnd(rand, [4, 4, 4])), fx(`${n}.rescale`, rnd(rand, [16, 2]))]) }, new RegExp(`module "${n}".*rescale \\(16, 2\\) do not fit`));
  // BOFT tensors outside a PEFT folder.
  await fail({ 'a.safetensors': buildSafetensors([fx(`${n}.boft_R`, rnd(rand, [1, 4, 3, 3])), fx(`${n}.boft_s`, rnd(rand, [16, 1]))]) }, /outside a PEFT folder/);
  // Three factors need a block count divisible by 4.
  await fail(peftFolder({ peft_type: 'BOFT' }, [fx('base_model.model.to_q.boft_R', rnd(rand, [3, 6, 2, 2])), fx('base_model.model.to_q.boft_s', rnd(rand, [16, 1]))]), /divisible by 4/);
});
