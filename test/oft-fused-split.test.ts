/**
 * OFT modules trained on a fused projection (Flux's `double_blocks.N.img_attn.qkv`, q, k and v
 * stacked by rows, and `single_blocks.N.linear1`, q, k, v and the MLP's input) merged into a base that
 * holds those rows as separate tensors (diffusers' `transformer_blocks.N.attn.to_q/to_k/to_v`,
 * `single_transformer_blocks.N.attn.to_q/…/proj_mlp`).
 *
 * OneTrainer's OFT rotates the layer's inputs, W' = W·Rᵀ per block of inputs: every output row is
 * mapped alike, so each split tensor, which holds some of the fused layer's rows over the same
 * inputs, is rotated by the same R. LyCORIS's diag-OFT rotates the outputs in blocks of b rows,
 * W'_k = (s·R_k − s·I + I)ᵀ·W_k with Q scaled to norm α·out over all the fused module's blocks, then
 * every row times `rescale`: each split tensor takes the blocks and rescale values of its own rows,
 * which is exact where no block straddles two tensors; one that does is refused. PEFT's OFT and BOFT
 * rotate the inputs too (W' = (R·Wᵀ)ᵀ, BOFT's times boft_s per output row, cut likewise; with several
 * butterfly factors R's permutations reorder only the inputs, so that holds too). The truth is each
 * tool's formula on the fused weight in float64, then cut into the split tensors' rows.
 */
import { describe, expect, it } from 'vitest';
import { FLUX, fluxBflTensors, fluxDiffusersTensors, tensor } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { peftFolder } from './helpers/hf-folder.js';
import { expectWeightsMerged } from './helpers/merge-truth.js';
import { inverseFlat } from './helpers/dense-f64.js';

const rand = seededRandom(20261208);
const { h } = FLUX;
const base = fluxDiffusersTensors(rand, 'BF16');
const BASE_FILE = 'diffusion_pytorch_model.safetensors';
const FILE = 'flux_oft.safetensors';

// The split tensors a fused module's rows land on, in the fused order, with their row counts.
const QKV = ['to_q', 'to_k', 'to_v'].map((p) => ({ key: `transformer_blocks.0.attn.${p}.weight`, rows: h }));
const LINEAR1 = [...['to_q', 'to_k', 'to_v'].map((p) => ({ key: `single_transformer_blocks.0.attn.${p}.weight`, rows: h })), { key: 'single_transformer_blocks.0.proj_mlp.weight', rows: 4 * h }];

const values = (tensors: readonly FixtureTensor[], name: string) => Float64Array.from(tensors.find((t) => t.name === name)!.data as ArrayLike<number>);

function matmul(x: Float64Array, y: Float64Array, b: number): Float64Array {
  const z = new Float64Array(b * b);
  for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) for (let k = 0; k < b; k++) z[i * b + j] += x[i * b + k] * y[k * b + j];
  return z;
}


/** The fused weight: the split tensors' rows stacked in the fused order. */
function fused(parts: readonly { key: string }[]): Float64Array {
  return Float64Array.from(parts.flatMap((p) => [...values(base, p.key)]));
}

/** The fused truth cut back into the split tensors. */
function cut(w: Float64Array, parts: readonly { key: string; rows: number }[]): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  let at = 0;
  for (const p of parts) {
    out.set(p.key, w.slice(at * h, (at + p.rows) * h));
    at += p.rows;
  }
  return out;
}

/**
 * OneTrainer's OFT on the fused weight: R_k = I + 2Q + 2Q² + 2Q³ + Q⁴ from row k of oft_R (the one row
 * for every block when it has one), W'[o, kb + c] = Σ_j W[o, kb + j]·R_k[c][j].
 */
function oneTrainerTruth(w: Float64Array, rows: Float64Array, b: number): Float64Array {
  const n = (b * (b - 1)) / 2;
  const rotation = (row: Float64Array) => {
    const q = new Float64Array(b * b);
    let at = 0;
    for (let i = 0; i < b; i++) for (let j = i + 1; j < b; j++) { q[i * b + j] = row[at]; q[j * b + i] = -row[at]; at++; }
    const q2 = matmul(q, q, b), q3 = matmul(q2, q, b), q4 = matmul(q3, q, b);
    return q.map((_, i) => (Math.floor(i / b) === i % b ? 1 : 0) + 2 * q[i] + 2 * q2[i] + 2 * q3[i] + q4[i]);
  };
  const out = w.slice();
  for (let o = 0; o < w.length / h; o++) {
    for (let k = 0; k < h / b; k++) {
      const r = rotation(rows.length === n ? rows : rows.subarray(k * n, (k + 1) * n));
      for (let c = 0; c < b; c++) {
        let sum = 0;
        for (let j = 0; j < b; j++) sum += w[o * h + k * b + j] * r[c * b + j];
        out[o * h + k * b + c] = sum;
      }
    }
  }
  return out;
}

/**
 * PEFT's BOFT with one butterfly factor on the fused weight: R_k = (I − S)(I + S)⁻¹, S = ½(A_k − A_kᵀ)
 * per block of inputs, W' = (R·Wᵀ)ᵀ ⊙ boft_s: W'[o, kb + c] = boft_s[o]·Σ_j W[o, kb + j]·R_k[c][j].
 */
function boftTruth(w: Float64Array, blocks: Float64Array, b: number, scales: Float64Array): Float64Array {
  const eye = (i: number) => (Math.floor(i / b) === i % b ? 1 : 0);
  const rotations = Array.from({ length: h / b }, (_, k) => {
    const a = blocks.subarray(k * b * b, (k + 1) * b * b);
    const sk = a.map((x, i) => 0.5 * (x - a[(i % b) * b + Math.floor(i / b)]));
    return matmul(sk.map((x, i) => eye(i) - x), inverseFlat(sk.map((x, i) => eye(i) + x), b), b);
  });
  const out = w.slice();
  for (let o = 0; o < w.length / h; o++) {
    for (let k = 0; k < h / b; k++) {
      for (let c = 0; c < b; c++) {
        let sum = 0;
        for (let j = 0; j < b; j++) sum += w[o * h + k * b + j] * rotations[k][c * b + j];
        out[o * h + k * b + c] = sum * scales[o];
      }
    }
  }
  return out;
}

/**
 * PEFT's block_butterfly_perm(n, b, r, factors) as PEFT writes it: the identity for one factor;
 * otherwise each run of n / b indices is reordered in sub-runs of r, evens first, then odds.
 */
function peftButterflyPerm(n: number, b: number, r: number, factors: number): number[] {
  const indices = Array.from({ length: n }, (_, i) => i);
  if (factors === 0) return indices;
  const size = n / b, step = size / r;
  const seq = [...Array.from({ length: Math.ceil(step / 2) }, (_, i) => 2 * i), ...Array.from({ length: Math.floor(step / 2) }, (_, i) => 2 * i + 1)];
  const sorted = seq.flatMap((pos) => Array.from({ length: r }, (_, t) => pos * r + t));
  for (let i = 0; i < n; i += size) {
    const run = indices.slice(i, i + size);
    sorted.forEach((from, at) => { indices[i + at] = run[from]; });
  }
  return indices;
}

/**
 * PEFT's BOFT with N butterfly factors on the fused weight: P_i = perm2mat(block_butterfly_perm(in,
 * blocks / 2^i, b / 2, N − 1)) (P_i[row, perm[row]] = 1), F_i = P_i·diag(R_i,k)·P_iᵀ with R_i,k the
 * Cayley rotation of boft_R[i, k], R = F_{N−1}···F_0, W' = (R·Wᵀ)ᵀ ⊙ boft_s.
 */
function boftButterflyTruth(w: Float64Array, boftR: Float64Array, factors: number, blocks: number, b: number, scales: Float64Array): Float64Array {
  const n = blocks * b;
  const eye = (i: number, m: number) => (Math.floor(i / m) === i % m ? 1 : 0);
  let r: Float64Array = Float64Array.from({ length: n * n }, (_, i) => eye(i, n));
  for (let f = 0; f < factors; f++) {
    const diag = new Float64Array(n * n);
    for (let k = 0; k < blocks; k++) {
      const a = boftR.subarray((f * blocks + k) * b * b, (f * blocks + k + 1) * b * b);
      const sk = a.map((x, i) => 0.5 * (x - a[(i % b) * b + Math.floor(i / b)]));
      const rot = matmul(sk.map((x, i) => eye(i, b) - x), inverseFlat(sk.map((x, i) => eye(i, b) + x), b), b);
      for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) diag[(k * b + i) * n + k * b + j] = rot[i * b + j];
    }
    const perm = peftButterflyPerm(n, blocks / 2 ** f, b / 2, factors - 1);
    const p = new Float64Array(n * n);
    perm.forEach((idx, i) => { p[i * n + idx] = 1; });
    const pt = p.map((_, i) => p[(i % n) * n + Math.floor(i / n)]);
    r = matmul(matmul(matmul(p, diag, n), pt, n), r, n);
  }
  const out = w.slice();
  for (let o = 0; o < w.length / n; o++) {
    for (let c = 0; c < n; c++) {
      let sum = 0;
      for (let j = 0; j < n; j++) sum += w[o * n + j] * r[c * n + j];
      out[o * n + c] = sum * scales[o];
    }
  }
  return out;
}

/** PEFT's (I − S)(I + S)⁻¹ with S = ½(A − Aᵀ) for one b × b block. */
function peftCayley(a: Float64Array, b: number): Float64Array {
  const eye = (i: number) => (Math.floor(i / b) === i % b ? 1 : 0);
  const sk = a.map((x, i) => 0.5 * (x - a[(i % b) * b + Math.floor(i / b)]));
  return matmul(sk.map((x, i) => eye(i) - x), inverseFlat(sk.map((x, i) => eye(i) + x), b), b);
}

/** PEFT ≤ 0.15's `_project_batch` (COFT): each block's Frobenius norm capped at limit / √(oft_r's first dim). */
function coft(blocks: Float64Array, b: number, limit: number): Float64Array {
  const count = blocks.length / (b * b), cap = limit / Math.sqrt(count);
  const out = blocks.slice();
  for (let k = 0; k < count; k++) {
    const m = out.subarray(k * b * b, (k + 1) * b * b);
    const norm = Math.sqrt(m.reduce((x, y) => x + y * y, 0));
    if (norm > cap) m.forEach((x, i) => { m[i] = (cap * x) / norm; });
  }
  return out;
}

/** PEFT 0.13's OFT on the fused weight: W' = (Wᵀ·R)ᵀ, R = diag(R_k) over the outputs in blocks of n: W'[kn + m, c] = Σ_i R_k[i][m]·W[kn + i, c]. */
function peftOft013Truth(w: Float64Array, blocks: Float64Array, n: number): Float64Array {
  const out = w.slice();
  for (let k = 0; k < w.length / h / n; k++) {
    const r = peftCayley(blocks.subarray(k * n * n, (k + 1) * n * n), n);
    for (let m = 0; m < n; m++) {
      for (let c = 0; c < h; c++) {
        let sum = 0;
        for (let i = 0; i < n; i++) sum += r[i * n + m] * w[(k * n + i) * h + c];
        out[(k * n + m) * h + c] = sum;
      }
    }
  }
  return out;
}

/** LyCORIS's diag-OFT on the fused weight: Q = B − Bᵀ scaled to α·out, R = (I + Q)(I − Q)⁻¹, W'_k = (s·R − s·I + I)ᵀ·W_k, then rows × rescale. */
function lycorisTruth(w: Float64Array, blocks: Float64Array, b: number, alpha: number, s: number, rescale?: Float64Array): Float64Array {
  const n = blocks.length / (b * b), out = n * b;
  const q = blocks.map((_, i) => {
    const k = Math.floor(i / (b * b)), r = Math.floor(i / b) % b, c = i % b;
    return blocks[i] - blocks[k * b * b + c * b + r];
  });
  const norm = Math.sqrt(q.reduce((a, x) => a + x * x, 0)) + 1e-8;
  const f = norm > alpha * out ? (alpha * out) / norm : 1;
  const result = new Float64Array(w.length);
  for (let k = 0; k < n; k++) {
    const qk = q.subarray(k * b * b, (k + 1) * b * b).map((x) => x * f);
    const eye = (i: number) => (Math.floor(i / b) === i % b ? 1 : 0);
    const r = matmul(qk.map((x, i) => x + eye(i)), inverseFlat(qk.map((x, i) => eye(i) - x), b), b);
    const m = r.map((x, i) => s * x - s * eye(i) + eye(i));
    for (let mm = 0; mm < b; mm++) {
      for (let c = 0; c < h; c++) {
        let sum = 0;
        for (let nn = 0; nn < b; nn++) sum += m[nn * b + mm] * w[(k * b + nn) * h + c];
        result[(k * b + mm) * h + c] = rescale ? sum * rescale[k * b + mm] : sum;
      }
    }
  }
  return result;
}


const backends = mergeBackends({ cpu: 'both' });
const OT_HEADER = { 'modelspec.architecture': 'Flux.1-dev/lora', ot_branch: 'master', ot_revision: 'e928ddab' };
const adapter = (tensors: FixtureTensor[], weight = 1, metadata: Record<string, string> = {}) => [{ name: FILE, files: { [FILE]: buildSafetensors(tensors, metadata) }, weight }];
const merge = (name: string, tensors: FixtureTensor[], weight = 1, metadata: Record<string, string> = {}) =>
  mergeInMemory({ backend: backends[name]!, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: adapter(tensors, weight, metadata) });

// OneTrainer (KOHYA names): qkv in blocks of 4 (2 rows over h = 8 inputs), linear1 one shared block of 8.
const otQkv = tensor(rand, 'lora_unet_double_blocks_0_img_attn_qkv.oft_R.weight', [2, 6], 'BF16', 0.3);
const otLinear1 = tensor(rand, 'lora_unet_single_blocks_0_linear1.oft_R.weight', [1, 28], 'BF16', 0.2);
// LyCORIS diag-OFT: qkv's 24 rows in 6 blocks of 4 with rescale; linear1's 56 rows in 14 blocks of 4.
const lyQkv = tensor(rand, 'lycoris_double_blocks_0_img_attn_qkv.oft_blocks', [6, 4, 4], 'BF16', 0.3);
const lyQkvAlpha: FixtureTensor = { name: 'lycoris_double_blocks_0_img_attn_qkv.alpha', dtype: 'F32', shape: [], data: [0.01] }; // κ = 0.24 < ‖Q‖: capped
const lyRescale = { ...tensor(rand, 'lycoris_double_blocks_0_img_attn_qkv.rescale', [24, 1], 'BF16', 0.2) };
lyRescale.data = Float32Array.from(lyRescale.data as ArrayLike<number>, (x) => roundForDType(1 + x, 'BF16'));
const lyLinear1 = tensor(rand, 'lycoris_single_blocks_0_linear1.oft_blocks', [14, 4, 4], 'BF16', 0.1);
const lyLinear1Alpha: FixtureTensor = { name: 'lycoris_single_blocks_0_linear1.alpha', dtype: 'F32', shape: [], data: [1] };

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it('OneTrainer OFT on Flux img_attn.qkv and linear1: the same input rotation on each of to_q/to_k/to_v (and proj_mlp)', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    const { tensors } = await merge(name, [otQkv, otLinear1], 1, OT_HEADER);
    const truth = new Map([
      ...cut(oneTrainerTruth(fused(QKV), values([otQkv], otQkv.name), 4), QKV),
      ...cut(oneTrainerTruth(fused(LINEAR1), values([otLinear1], otLinear1.name), 8), LINEAR1),
    ]);
    expectWeightsMerged(tensors, truth, base, 'onetrainer');
  });

  it.for([1, 0.5])('LyCORIS diag-OFT on Flux img_attn.qkv (capped at α·24, rescale cut in thirds) and linear1 at weight %d', async (weight, ctx) => {
    if (!backends[name]) return ctx.skip();
    const { tensors } = await merge(name, [lyQkv, lyQkvAlpha, lyRescale, lyLinear1, lyLinear1Alpha], weight);
    const truth = new Map([
      ...cut(lycorisTruth(fused(QKV), values([lyQkv], lyQkv.name), 4, 0.01, weight, values([lyRescale], lyRescale.name)), QKV),
      ...cut(lycorisTruth(fused(LINEAR1), values([lyLinear1], lyLinear1.name), 4, 1, weight), LINEAR1),
    ]);
    expectWeightsMerged(tensors, truth, base, `lycoris weight ${weight}`);
  });
});

describe('PEFT folders in BFL\'s names (base_model.model.double_blocks.0.img_attn.qkv) on the diffusers base', () => {
  const peftMerge = (config: object, tensors: FixtureTensor[]) =>
    mergeInMemory({ backend: backends['cpu (js)']!, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ name: 'peft', files: peftFolder(config, tensors), weight: 1 }] });
  const M = 'base_model.model.double_blocks.0.img_attn.qkv';
  it('OFT (PEFT 0.18, 5 Cayley–Neumann terms): the same input rotation on to_q, to_k and to_v', async () => {
    const oftR = tensor(rand, `${M}.oft_R.weight`, [2, 6], 'F32', 0.3);
    const { tensors } = await peftMerge({ peft_type: 'OFT', r: 0, oft_block_size: 4, peft_version: '0.18.0', target_modules: ['qkv'] }, [oftR]);
    expectWeightsMerged(tensors, cut(oneTrainerTruth(fused(QKV), values([oftR], oftR.name), 4), QKV), base, 'peft oft');
  });
  it('BOFT with one butterfly factor: the same rotation on each, boft_s cut into each tensor\'s rows', async () => {
    const boftR = tensor(rand, `${M}.boft_R`, [1, 2, 4, 4], 'F32', 0.3);
    const boftS = { ...tensor(rand, `${M}.boft_s`, [24, 1], 'F32', 0.2) };
    boftS.data = Float32Array.from(boftS.data as ArrayLike<number>, (x) => Math.fround(1 + x));
    const { tensors } = await peftMerge({ peft_type: 'BOFT', boft_block_size: 4, boft_block_num: 0, boft_n_butterfly_factor: 1, peft_version: '0.18.0', target_modules: ['qkv'] }, [boftR, boftS]);
    expectWeightsMerged(tensors, cut(boftTruth(fused(QKV), values([boftR], boftR.name), 4, values([boftS], boftS.name)), QKV), base, 'peft boft');
  });
  it.for([[2, 2, 4], [3, 4, 2]])('BOFT with %d butterfly factors (%d blocks of %d): the permuted rotations of the inputs on each, boft_s cut into each tensor\'s rows', async ([factors, blocks, b]) => {
    const boftR = tensor(rand, `${M}.boft_R`, [factors, blocks, b, b], 'F32', 0.3);
    const boftS = { ...tensor(rand, `${M}.boft_s`, [24, 1], 'F32', 0.2) };
    boftS.data = Float32Array.from(boftS.data as ArrayLike<number>, (x) => Math.fround(1 + x));
    const { tensors } = await peftMerge({ peft_type: 'BOFT', boft_block_size: b, boft_block_num: 0, boft_n_butterfly_factor: factors, peft_version: '0.18.0', target_modules: ['qkv'] }, [boftR, boftS]);
    const truth = boftButterflyTruth(fused(QKV), values([boftR], boftR.name), factors, blocks, b, values([boftS], boftS.name));
    expectWeightsMerged(tensors, cut(truth, QKV), base, `peft boft ×${factors}`);
  });
});

describe('PEFT OFT before 0.16 (oft_r) in BFL\'s names on the diffusers base', () => {
  const files = (config: object, tensors: FixtureTensor[]) => ({ base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ name: 'peft', files: peftFolder(config, tensors), weight: 1 }] });
  const M = 'base_model.model.double_blocks.0.img_attn.qkv';
  const common = { peft_type: 'OFT', module_dropout: 0, init_weights: true, target_modules: ['qkv'] };
  const scales = () => {
    const t = { ...tensor(rand, `${M}.oft_s`, [24, 1], 'F32', 0.2) };
    t.data = Float32Array.from(t.data as ArrayLike<number>, (x) => Math.fround(1 + x));
    return t;
  };
  it('0.14–0.15 (oft_r + oft_s, COFT): the input rotation on each of to_q/to_k/to_v, oft_s cut into their rows, COFT\'s eps·⌈24/r⌉² from the fused layer', async () => {
    const oftR = tensor(rand, `${M}.oft_r`, [2, 4, 4], 'F32', 0.3), oftS = scales();
    const eps = 0.003; // eps·12² / √2 ≈ 0.31: below the blocks' norms, so the cap binds (with ⌈8/2⌉² it would be 0.034)
    const { tensors } = await mergeInMemory({ backend: backends['cpu (js)']!, ...files({ ...common, r: 2, oft_block_size: 0, coft: true, eps, block_share: false }, [oftR, oftS]) });
    const blocks = coft(values([oftR], oftR.name), 4, eps * 12 * 12);
    expectWeightsMerged(tensors, cut(boftTruth(fused(QKV), blocks, 4, values([oftS], oftS.name)), QKV), base, 'peft oft 0.15 coft');
  });
  it('0.14–0.15 with block_share: the one block on every input block of each tensor', async () => {
    const oftR = tensor(rand, `${M}.oft_r`, [1, 4, 4], 'F32', 0.3), oftS = scales();
    const { tensors } = await mergeInMemory({ backend: backends['cpu (js)']!, ...files({ ...common, r: 2, oft_block_size: 0, coft: false, eps: 6e-5, block_share: true }, [oftR, oftS]) });
    const one = values([oftR], oftR.name);
    expectWeightsMerged(tensors, cut(boftTruth(fused(QKV), Float64Array.from([...one, ...one]), 4, values([oftS], oftS.name)), QKV), base, 'peft oft 0.15 block_share');
  });
  it('0.13 (oft_r alone, COFT): its 6 blocks of 4 output rows, 2 whole blocks on each of to_q/to_k/to_v', async () => {
    const oftR = tensor(rand, `${M}.oft_r`, [6, 4, 4], 'F32', 0.3);
    const eps = 0.03; // eps·4² / √6 ≈ 0.2: the cap binds
    const { tensors } = await mergeInMemory({ backend: backends['cpu (js)']!, ...files({ ...common, r: 6, coft: true, eps, block_share: false }, [oftR]) });
    expectWeightsMerged(tensors, cut(peftOft013Truth(fused(QKV), coft(values([oftR], oftR.name), 4, eps * 16), 4), QKV), base, 'peft oft 0.13');
  });
  it('0.13 with blocks of 6 output rows, which straddle q and k: refused, naming the module and why', async () => {
    const oftR = tensor(rand, `${M}.oft_r`, [4, 6, 6], 'F32', 0.3);
    expect(await refusalsInMemory({ backend: backends['cpu (js)']!, ...files({ ...common, r: 4, coft: false, eps: 6e-5, block_share: false }, [oftR]) })).toEqual([
      'peft: module "double_blocks.0.img_attn.qkv": OFT (PEFT before 0.16) on a module that lands on part of a tensor (rows 0–7 of transformer_blocks.0.attn.to_q.weight, rows 0–7 of transformer_blocks.0.attn.to_k.weight, rows 0–7 of transformer_blocks.0.attn.to_v.weight): it rotates runs of 6 output rows, and transformer_blocks.0.attn.to_q.weight takes rows 0–7 of it, which cut a run',
    ]);
  });
});

describe('ComfyUI-trained OFT (diffusion_model.double_blocks.0.img_attn.qkv.oft_blocks, .alpha, .diff_b) on the diffusers base with biases', () => {
  // diffusers' Flux attention has biased to_q/to_k/to_v; the fixture's base leaves them out, so they are added here.
  const bRand = seededRandom(20261209);
  const biased = [...base, ...QKV.map((p) => tensor(bRand, p.key.replace(/weight$/, 'bias'), [h], 'BF16'))];
  const C = 'diffusion_model.double_blocks.0.img_attn.qkv';
  const blocks = tensor(bRand, `${C}.oft_blocks`, [6, 4, 4], 'BF16', 0.3);
  const comfyAlpha: FixtureTensor = { name: `${C}.alpha`, dtype: 'BF16', shape: [], data: [1] };
  const diffB = tensor(bRand, `${C}.diff_b`, [3 * h], 'BF16', 0.1);
  it.for([1, 0.5])('at weight %d: each tensor takes its two blocks, each bias its third of diff_b', async (s) => {
    const { tensors } = await mergeInMemory({ backend: backends['cpu (js)']!, base: { [BASE_FILE]: buildSafetensors(biased) }, adapters: [{ name: 'comfy.safetensors', files: { 'comfy.safetensors': buildSafetensors([blocks, comfyAlpha, diffB]) }, weight: s }] });
    // ComfyUI: Q capped at norm α = 1 over the fused module's blocks, W' = W + s·(s·R − s·I)ᵀ·W (LyCORIS's form at s², κ = 1).
    const truth = cut(lycorisTruth(fused(QKV), values([blocks], blocks.name), 4, 1 / 24, s * s), QKV);
    const bias = Float64Array.from(QKV.flatMap((p) => [...values(biased, p.key.replace(/weight$/, 'bias'))]), (x, i) => x + s * values([diffB], diffB.name)[i]);
    QKV.forEach((p, k) => truth.set(p.key.replace(/weight$/, 'bias'), bias.slice(k * h, (k + 1) * h)));
    expectWeightsMerged(tensors, truth, biased, `comfy oft diff_b weight ${s}`);
  });
  it('onto split tensors without biases: refused in one line, naming the module, diff_b and the biases missing', async () => {
    const lines = await refusalsInMemory({ backend: backends['cpu (js)']!, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ name: 'comfy.safetensors', files: { 'comfy.safetensors': buildSafetensors([blocks, comfyAlpha, diffB]) }, weight: 1 }] });
    expect(lines).toEqual([
      'comfy.safetensors: module "diffusion_model.double_blocks.0.img_attn.qkv": has diffusion_model.double_blocks.0.img_attn.qkv.diff_b, a change of its bias, but the base has no transformer_blocks.0.attn.to_q.bias, transformer_blocks.0.attn.to_k.bias or transformer_blocks.0.attn.to_v.bias',
    ]);
  });
});

describe('refused, naming the module', () => {
  const refusals = (tensors: FixtureTensor[], metadata: Record<string, string> = {}) =>
    refusalsInMemory({ backend: backends['cpu (js)']!, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: adapter(tensors, 1, metadata) });
  it('LyCORIS diag-OFT whose blocks straddle q and k (4 blocks of 6 over 24 rows)', async () => {
    const blocks = tensor(rand, 'lycoris_double_blocks_0_img_attn_qkv.oft_blocks', [4, 6, 6], 'BF16', 0.1);
    expect(await refusals([blocks, lyQkvAlpha])).toEqual([
      `${FILE}: module "lycoris_double_blocks_0_img_attn_qkv": OFT on a module that lands on part of a tensor (rows 0–7 of transformer_blocks.0.attn.to_q.weight, rows 0–7 of transformer_blocks.0.attn.to_k.weight, rows 0–7 of transformer_blocks.0.attn.to_v.weight): it rotates runs of 6 output rows, and transformer_blocks.0.attn.to_q.weight takes rows 0–7 of it, which cut a run`,
    ]);
  });
  it('LyCORIS BOFT, whose butterfly mixes rows across q, k and v (its factors span all 24 rows)', async () => {
    const blocks = tensor(rand, 'lycoris_double_blocks_0_img_attn_qkv.oft_blocks', [3, 4, 6, 6], 'BF16', 0.1);
    const [line, ...rest] = await refusals([blocks, lyQkvAlpha]);
    expect(rest).toEqual([]);
    expect(line).toMatch(/module "lycoris_double_blocks_0_img_attn_qkv": BOFT on a module that lands on part of a tensor \(rows 0–7 of transformer_blocks\.0\.attn\.to_q\.weight, .*\) is not supported$/);
  });
  it('OneTrainer OFT on diffusers\' to_q onto BFL\'s fused qkv: the rotation would turn k and v too', async () => {
    const bfl = fluxBflTensors(rand, 'BF16');
    const file = [tensor(rand, 'lora_transformer_transformer_blocks_0_attn_to_q.oft_R.weight', [2, 6], 'BF16', 0.3)];
    expect(await refusalsInMemory({ backend: backends['cpu (js)']!, base: { 'flux1-dev.safetensors': buildSafetensors(bfl) }, adapters: adapter(file, 1, OT_HEADER) })).toEqual([
      `${FILE}: module "lora_transformer_transformer_blocks_0_attn_to_q": OFT (OneTrainer) on a module that lands on part of a tensor (rows 0–7 of double_blocks.0.img_attn.qkv.weight): it maps every row of double_blocks.0.img_attn.qkv.weight, which takes only 8 of its 24 rows from this module`,
    ]);
  });
});
