/**
 * The merge plan and the ops it loads, checked against ΔW written out plainly in float64 from the
 * values stored in the adapter files (format semantics: PEFT, kohya/LyCORIS), and the ops evaluated
 * by a float64 loop that follows the MergeOp contract.
 */
import { describe, expect, it } from 'vitest';
import {
  buildSafetensors, decodeValues, encodeValues, randomValues, roundForDType, seededRandom,
  type FixtureDType, type FixtureTensor,
} from './helpers/fixtures.js';
import { openAdapter, type ParsedAdapter } from '../src/formats/adapter.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { assertPlanValid, buildMergePlan, type BaseTensorInfo, type MergePlan, type TensorUpdate } from '../src/plan/merge-plan.js';
import { loadBiasUpdate, loadMergeOp, loadReplacement } from '../src/plan/load-op.js';
import { estimateUpdateMagnitudes, layerIndex, moduleType } from '../src/plan/update-magnitudes.js';
import type { MergeOp } from '../src/engine/merge-op.js';
import { isMergeError } from '../src/errors.js';

// --- building inputs -------------------------------------------------------------------------

const FLOATS: FixtureDType[] = ['F32', 'F16', 'BF16'];

interface Stored {
  shape: number[];
  dtype: FixtureDType;
  /** The values as stored (already rounded to dtype). */
  values: Float64Array;
}

function stored(shape: number[], dtype: FixtureDType, rand: () => number, scale = 1): Stored {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = randomValues(n, rand, scale).map((v) => roundForDType(v, dtype));
  return { shape, dtype, values };
}

/** Magnitudes: |x| + offset, still on the dtype's grid. */
function positive(t: Stored, offset: number): Stored {
  return { ...t, values: t.values.map((x) => roundForDType(Math.abs(x) + offset, t.dtype)) };
}

function fixture(name: string, t: Stored): FixtureTensor {
  return { name, dtype: t.dtype, shape: t.shape, data: t.values };
}

/** A base model as the plan sees it, with its values for the reference. */
class FakeBase {
  readonly tensors = new Map<string, BaseTensorInfo>();
  readonly values = new Map<string, Stored>();
  add(key: string, t: Stored): Stored {
    this.tensors.set(key, { dtype: t.dtype as BaseTensorInfo['dtype'], shape: t.shape });
    this.values.set(key, t);
    return t;
  }
  bytes(key: string, rowStart = 0, rowCount?: number) {
    const t = this.values.get(key)!;
    const cols = t.shape.slice(1).reduce((a, b) => a * b, 1);
    const rows = rowCount ?? t.shape[0] - rowStart;
    const slice = t.values.subarray(rowStart * cols, (rowStart + rows) * cols);
    return { dtype: t.dtype as 'F32' | 'F16' | 'BF16', data: encodeValues(slice, t.dtype) };
  }
}

async function peft(name: string, config: object, tensors: FixtureTensor[]): Promise<ParsedAdapter> {
  return openAdapter(memoryInputFileSet({
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', ...config }),
    'adapter_model.safetensors': buildSafetensors(tensors),
  }, name));
}

async function kohya(name: string, tensors: FixtureTensor[], metadata?: Record<string, string>): Promise<ParsedAdapter> {
  return openAdapter(memoryInputFileSet({ [`${name}.safetensors`]: buildSafetensors(tensors, metadata) }, name));
}

// --- the float64 references ------------------------------------------------------------------

/** Evaluates an op as merge-op.ts defines it, in f64, without the final rounding. */
function evaluateOp(op: MergeOp): Float64Array {
  const rowStart = op.rowStart ?? 0;
  const rowCount = op.rowCount ?? op.rows - rowStart;
  const w = decodeValues(op.base.data, op.base.dtype);
  expect(w.length).toBe(rowCount * op.cols);
  for (const term of op.terms) {
    const a = decodeValues(term.a.data, term.a.dtype);
    const b = decodeValues(term.b.data, term.b.dtype);
    const r = term.rank;
    for (let i = 0; i < rowCount; i++) {
      for (let c = 0; c < op.cols; c++) {
        let sum = 0;
        for (let k = 0; k < r; k++) {
          sum += op.layout === 'out-in'
            ? b[(rowStart + i) * r + k] * a[k * op.cols + c]
            : b[c * r + k] * a[k * op.rows + rowStart + i];
        }
        w[i * op.cols + c] += term.scale * sum;
      }
    }
  }
  if (op.dora) {
    const m = decodeValues(op.dora.magnitude.data, op.dora.magnitude.dtype);
    const perRow = (op.dora.normAxis === 'out') === (op.layout === 'out-in');
    const norms = new Float64Array(perRow ? rowCount : op.cols);
    for (let i = 0; i < rowCount; i++) for (let c = 0; c < op.cols; c++) norms[perRow ? i : c] += w[i * op.cols + c] ** 2;
    for (let i = 0; i < rowCount; i++) {
      for (let c = 0; c < op.cols; c++) {
        const idx = perRow ? i : c;
        w[i * op.cols + c] *= m[perRow ? rowStart + i : c] / (Math.sqrt(norms[idx]) + op.dora.epsilon);
      }
    }
  }
  return w;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rel = 1e-12): void {
  expect(actual.length, what).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    if (Math.abs(actual[i] - expected[i]) > rel * (scale + 1e-300)) {
      expect.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/** W[o, i] + s · Σ_k B[o, k] A[k, i] for a W stored (out, in...) with `inner` = in·kernel. */
function addOutIn(w: Float64Array, out: number, inner: number, terms: { a: Float64Array; b: Float64Array; r: number; s: number }[]): Float64Array {
  const res = w.slice();
  for (const { a, b, r, s } of terms) {
    for (let o = 0; o < out; o++) for (let i = 0; i < inner; i++) {
      let sum = 0;
      for (let k = 0; k < r; k++) sum += b[o * r + k] * a[k * inner + i];
      res[o * inner + i] += s * sum;
    }
  }
  return res;
}

async function opFor(plan: MergePlan, base: FakeBase, key: string, outDtype: 'F32' | 'F16' | 'BF16' = 'F32'): Promise<{ op: MergeOp; update: TensorUpdate }> {
  const update = plan.updates.find((u) => u.baseKey === key);
  expect(update, `update for ${key}`).toBeDefined();
  return { op: await loadMergeOp(update!, base.bytes(key), outDtype), update: update! };
}

// --- tests -----------------------------------------------------------------------------------

describe('PEFT adapters in the plan', () => {
  it('applies rank_pattern, alpha_pattern and rsLoRA scales, summed with the user weight', async () => {
    const rand = seededRandom(1);
    const base = new FakeBase();
    const q = base.add('model.layers.0.self_attn.q_proj.weight', stored([7, 13], 'F16', rand));
    const v0 = base.add('model.layers.0.self_attn.v_proj.weight', stored([9, 13], 'BF16', rand));
    const v1 = base.add('model.layers.1.self_attn.v_proj.weight', stored([9, 13], 'F32', rand));
    base.add('model.norm.weight', stored([13], 'F32', rand));
    const fq = { a: stored([2, 13], 'BF16', rand), b: stored([7, 2], 'F32', rand) };
    const fv0 = { a: stored([5, 13], 'F16', rand), b: stored([9, 5], 'F16', rand) };
    const fv1 = { a: stored([5, 13], 'F32', rand), b: stored([9, 5], 'BF16', rand) };
    const p = 'base_model.model.model.layers';
    for (const rslora of [false, true]) {
      const adapter = await peft('pat', {
        r: 5, lora_alpha: 10, use_rslora: rslora,
        rank_pattern: { q_proj: 2 }, alpha_pattern: { 'layers\\.1\\.self_attn\\.v_proj': 3 },
      }, [
        fixture(`${p}.0.self_attn.q_proj.lora_A.weight`, fq.a), fixture(`${p}.0.self_attn.q_proj.lora_B.weight`, fq.b),
        fixture(`${p}.0.self_attn.v_proj.lora_A.weight`, fv0.a), fixture(`${p}.0.self_attn.v_proj.lora_B.weight`, fv0.b),
        fixture(`${p}.1.self_attn.v_proj.lora_A.weight`, fv1.a), fixture(`${p}.1.self_attn.v_proj.lora_B.weight`, fv1.b),
      ]);
      const weight = -0.75;
      const plan = await buildMergePlan(base, [{ adapter, weight }]);
      assertPlanValid(plan);
      const div = (r: number) => (rslora ? Math.sqrt(r) : r);
      const cases: [string, Stored, typeof fq, number, number][] = [
        ['model.layers.0.self_attn.q_proj.weight', q, fq, 2, 10 / div(2)],
        ['model.layers.0.self_attn.v_proj.weight', v0, fv0, 5, 10 / div(5)],
        ['model.layers.1.self_attn.v_proj.weight', v1, fv1, 5, 3 / div(5)],
      ];
      expect(plan.updates.map((u) => u.baseKey)).toEqual(cases.map((c) => c[0]));
      for (const [key, w, f, r, s] of cases) {
        const { op, update } = await opFor(plan, base, key);
        expect(update.terms[0].scale).toBeCloseTo(weight * s, 14);
        expect(update.layout).toBe('out-in');
        expectClose(evaluateOp(op), addOutIn(w.values, w.shape[0], 13, [{ a: f.a.values, b: f.b.values, r, s: weight * s }]), key);
      }
      expect(plan.summary.tensorsTouched).toBe(3);
      expect(plan.summary.flops).toBe(2 * (2 * 7 * 13 + 5 * 9 * 13 * 2));
    }
  });

  it('resolves GPT-2 keys without the transformer. prefix and transposes for fan_in_fan_out (with DoRA)', async () => {
    const rand = seededRandom(2);
    const base = new FakeBase();
    const inF = 5, outF = 11, r = 3;
    const w = base.add('h.0.attn.c_attn.weight', stored([inF, outF], 'F16', rand)); // Conv1D: (in, out)
    base.add('h.0.attn.c_attn.bias', stored([outF], 'F16', rand));
    const a = stored([r, inF], 'F32', rand), b = stored([outF, r], 'F32', rand);
    const m = positive(stored([outF], 'F32', rand, 4), 0.5);
    const adapter = await peft('gpt2', { r, lora_alpha: 6, fan_in_fan_out: true, use_dora: true }, [
      fixture('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', a),
      fixture('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight', b),
      fixture('base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector', m),
    ]);
    const plan = await buildMergePlan(base, [{ adapter, weight: 1 }]);
    assertPlanValid(plan);
    const { op, update } = await opFor(plan, base, 'h.0.attn.c_attn.weight');
    expect([update.layout, update.rows, update.cols, op.dora?.normAxis]).toEqual(['in-out', inF, outF, 'out']);
    // PEFT: V = Wᵀ + s·B·A (out × in), one norm per output row, W' = (m / ‖V_o‖) V, stored back (in, out).
    const s = 2;
    const expected = new Float64Array(inF * outF);
    for (let o = 0; o < outF; o++) {
      const row = new Float64Array(inF);
      for (let i = 0; i < inF; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += b.values[o * r + k] * a.values[k * inF + i];
        row[i] = w.values[i * outF + o] + s * sum;
      }
      const norm = Math.hypot(...row);
      for (let i = 0; i < inF; i++) expected[i * outF + o] = (m.values[o] / norm) * row[i];
    }
    expectClose(evaluateOp(op), expected, 'c_attn');
  });

  it('merges embeddings as (B·A)ᵀ, convs with their kernels, lora_bias, adapter-name keys and modules_to_save', async () => {
    const rand = seededRandom(3);
    const base = new FakeBase();
    const vocab = 17, dim = 6, re = 2;
    const emb = base.add('model.embed_tokens.weight', stored([vocab, dim], 'BF16', rand));
    const co = 5, ci = 3, kh = 3, kw = 2, rc = 4;
    const conv = base.add('unet.down.0.conv.weight', stored([co, ci, kh, kw], 'F32', rand));
    const lin = base.add('head.proj.weight', stored([4, 9], 'F16', rand));
    const bias = base.add('head.proj.bias', stored([4], 'F16', rand));
    base.add('score.weight', stored([2, 9], 'F16', rand));
    const ea = stored([re, vocab], 'F32', rand), eb = stored([dim, re], 'F16', rand);
    const ca = stored([rc, ci, kh, kw], 'F32', rand), cb = stored([co, rc, 1, 1], 'F32', rand);
    const la = stored([1, 9], 'F32', rand), lb = stored([4, 1], 'F32', rand), lbias = stored([4], 'F32', rand);
    const score = stored([2, 9], 'F32', rand);
    const adapter = await peft('mixed', { r: 4, lora_alpha: 8, rank_pattern: { embed_tokens: 2, proj: 1 }, lora_bias: true, modules_to_save: ['score'] }, [
      fixture('base_model.model.model.embed_tokens.lora_embedding_A.default', ea),
      fixture('base_model.model.model.embed_tokens.lora_embedding_B.default', eb),
      fixture('base_model.model.unet.down.0.conv.lora_A.default.weight', ca),
      fixture('base_model.model.unet.down.0.conv.lora_B.default.weight', cb),
      fixture('base_model.model.head.proj.lora_A.default.weight', la),
      fixture('base_model.model.head.proj.lora_B.default.weight', lb),
      fixture('base_model.model.head.proj.lora_B.default.bias', lbias),
      fixture('base_model.model.score.modules_to_save.default.weight', score),
    ]);
    const plan = await buildMergePlan(base, [{ adapter, weight: 1.5 }]);
    assertPlanValid(plan);

    // Embedding: W[v, d] += s · Σ_k B[d, k] A[k, v].
    const { op: eop, update: eu } = await opFor(plan, base, 'model.embed_tokens.weight');
    expect([eu.layout, eu.rows, eu.cols]).toEqual(['in-out', vocab, dim]);
    const eExp = emb.values.slice();
    for (let v = 0; v < vocab; v++) for (let d = 0; d < dim; d++) {
      let sum = 0;
      for (let k = 0; k < re; k++) sum += eb.values[d * re + k] * ea.values[k * vocab + v];
      eExp[v * dim + d] += 1.5 * (8 / 2) * sum;
    }
    expectClose(evaluateOp(eop), eExp, 'embedding');

    // Conv: ΔW[o, i, y, x] = Σ_k B[o, k, 0, 0] · A[k, i, y, x].
    const { op: cop, update: cu } = await opFor(plan, base, 'unet.down.0.conv.weight');
    expect([cu.layout, cu.rows, cu.cols]).toEqual(['out-in', co, ci * kh * kw]);
    const cExp = conv.values.slice();
    for (let o = 0; o < co; o++) for (let i = 0; i < ci; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
      let sum = 0;
      for (let k = 0; k < rc; k++) sum += cb.values[o * rc + k] * ca.values[((k * ci + i) * kh + y) * kw + x];
      cExp[((o * ci + i) * kh + y) * kw + x] += 1.5 * 2 * sum;
    }
    expectClose(evaluateOp(cop), cExp, 'conv');

    // r = 1 linear with lora_bias: bias' = bias + s · bias_B.
    const { op: lop } = await opFor(plan, base, 'head.proj.weight');
    expectClose(evaluateOp(lop), addOutIn(lin.values, 4, 9, [{ a: la.values, b: lb.values, r: 1, s: 1.5 * 8 }]), 'r=1');
    expect(plan.biasUpdates.map((u) => u.baseKey)).toEqual(['head.proj.bias']);
    const bop = await loadBiasUpdate(plan.biasUpdates[0], base.bytes('head.proj.bias'), 'F32');
    expectClose(evaluateOp(bop), bias.values.map((x, i) => x + 1.5 * 8 * lbias.values[i]), 'bias');

    // modules_to_save replaces the tensor, converted once to the output dtype.
    expect(plan.replacements.map((r) => r.baseKey)).toEqual(['score.weight']);
    const repl = await loadReplacement(plan.replacements[0], 'BF16');
    expect(Array.from(decodeValues(repl, 'BF16'))).toEqual(Array.from(score.values, (x) => roundForDType(x, 'BF16')));
    expect(plan.summary.tensorsTouched).toBe(5);
    expect(plan.warnings.some((w) => w.includes('score.weight'))).toBe(true); // weight 1.5 does not apply
  });

  it('sums several adapters on one tensor and slabs rows', async () => {
    const rand = seededRandom(4);
    const base = new FakeBase();
    const w = base.add('layers.0.mlp.fc.weight', stored([23, 10], 'F32', rand));
    const f1 = { a: stored([3, 10], 'F16', rand), b: stored([23, 3], 'F16', rand) };
    const f2 = { a: stored([1, 10], 'BF16', rand), b: stored([23, 1], 'F32', rand) };
    const ad1 = await peft('one', { r: 3, lora_alpha: 3 }, [
      fixture('base_model.model.layers.0.mlp.fc.lora_A.weight', f1.a), fixture('base_model.model.layers.0.mlp.fc.lora_B.weight', f1.b),
    ]);
    const ad2 = await kohya('two', [
      fixture('lora_unet_layers_0_mlp_fc.lora_down.weight', f2.a), fixture('lora_unet_layers_0_mlp_fc.lora_up.weight', f2.b),
      { name: 'lora_unet_layers_0_mlp_fc.alpha', dtype: 'F32', shape: [], data: [4] },
    ]);
    const plan = await buildMergePlan(base, [{ adapter: ad1, weight: 1 }, { adapter: ad2, weight: -0.7 }]);
    assertPlanValid(plan);
    expect(plan.updates).toHaveLength(1);
    const update = plan.updates[0];
    expect(update.terms.map((t) => t.scale)).toEqual([1, -0.7 * 4]);
    const full = addOutIn(w.values, 23, 10, [
      { a: f1.a.values, b: f1.b.values, r: 3, s: 1 }, { a: f2.a.values, b: f2.b.values, r: 1, s: -2.8 },
    ]);
    for (const [start, count] of [[0, 5], [5, 17], [22, 1]]) {
      const op = await loadMergeOp(update, base.bytes(update.baseKey, start, count), 'F16', { rowStart: start, rowCount: count });
      expectClose(evaluateOp(op), full.subarray(start * 10, (start + count) * 10), `rows ${start}+${count}`);
    }
  });

  it('matches random shapes, ranks and dtypes (odd sizes, r = 1, r larger than the matrix)', async () => {
    const rand = seededRandom(5);
    for (let trial = 0; trial < 24; trial++) {
      const base = new FakeBase();
      const out = 1 + Math.floor(rand() * 37), inF = 1 + Math.floor(rand() * 29);
      const r = trial % 4 === 0 ? 1 : trial % 4 === 1 ? 64 : 1 + Math.floor(rand() * 12);
      const fanInFanOut = trial % 3 === 0;
      const pick = () => FLOATS[Math.floor(rand() * 3)];
      const w = base.add('blk.proj.weight', stored(fanInFanOut ? [inF, out] : [out, inF], pick(), rand));
      const a = stored([r, inF], pick(), rand), b = stored([out, r], pick(), rand);
      const alpha = 1 + Math.floor(rand() * 32);
      const adapter = await peft('rnd', { r, lora_alpha: alpha, fan_in_fan_out: fanInFanOut }, [
        fixture('base_model.model.blk.proj.lora_A.weight', a), fixture('base_model.model.blk.proj.lora_B.weight', b),
      ]);
      const weight = rand() * 2 - 1;
      const plan = await buildMergePlan(base, [{ adapter, weight }]);
      assertPlanValid(plan);
      const { op } = await opFor(plan, base, 'blk.proj.weight', pick() as 'F32');
      const s = weight * alpha / r;
      const expected = w.values.slice();
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += b.values[o * r + k] * a.values[k * inF + i];
        expected[fanInFanOut ? i * out + o : o * inF + i] += s * sum;
      }
      expectClose(evaluateOp(op), expected, `trial ${trial} (${out}×${inF}, r=${r}, fifo=${fanInFanOut})`);
    }
  });
});

describe('kohya / LyCORIS adapters in the plan', () => {
  it('finds SD checkpoint keys by suffix, scales by alpha/rank, merges LoCon 3×3 and LyCORIS DoRA', async () => {
    const rand = seededRandom(6);
    const base = new FakeBase();
    const proj = base.add('model.diffusion_model.input_blocks.1.1.proj_in.weight', stored([8, 6, 1, 1], 'F16', rand));
    const q = base.add('cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', stored([6, 6], 'F16', rand));
    const conv = base.add('model.diffusion_model.input_blocks.1.0.in_layers.2.weight', stored([5, 4, 3, 3], 'F32', rand));
    const ff = base.add('model.diffusion_model.input_blocks.1.1.ff.weight', stored([7, 4], 'F32', rand));
    const pd = stored([4, 6], 'F16', rand), pu = stored([8, 4], 'F16', rand); // linear LoRA on a 1×1 conv
    const qd = stored([2, 6], 'F32', rand), qu = stored([6, 2], 'F32', rand);
    const cd = stored([3, 4, 3, 3], 'BF16', rand), cu = stored([5, 3, 1, 1], 'BF16', rand);
    const fd = stored([2, 4], 'F32', rand), fu = stored([7, 2], 'F32', rand);
    const dora = positive(stored([1, 4], 'F32', rand, 3), 0.25);
    const adapter = await kohya('sd', [
      fixture('lora_unet_input_blocks_1_1_proj_in.lora_down.weight', pd), fixture('lora_unet_input_blocks_1_1_proj_in.lora_up.weight', pu),
      { name: 'lora_unet_input_blocks_1_1_proj_in.alpha', dtype: 'F16', shape: [], data: [2] },
      fixture('lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight', qd),
      fixture('lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight', qu),
      fixture('lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight', cd), fixture('lora_unet_input_blocks_1_0_in_layers_2.lora_up.weight', cu),
      { name: 'lora_unet_input_blocks_1_0_in_layers_2.alpha', dtype: 'BF16', shape: [], data: [1] },
      fixture('lora_unet_input_blocks_1_1_ff.lora_down.weight', fd), fixture('lora_unet_input_blocks_1_1_ff.lora_up.weight', fu),
      fixture('lora_unet_input_blocks_1_1_ff.dora_scale', dora),
    ], { ss_network_dim: '4', ss_network_alpha: '2' });
    expect(adapter.format).toBe('kohya');
    expect(adapter.config).toEqual({ ss_network_dim: '4', ss_network_alpha: '2' });
    const plan = await buildMergePlan(base, [{ adapter, weight: 1 }]);
    assertPlanValid(plan);
    expect(plan.updates).toHaveLength(4);

    const { op: pop } = await opFor(plan, base, 'model.diffusion_model.input_blocks.1.1.proj_in.weight');
    expectClose(evaluateOp(pop), addOutIn(proj.values, 8, 6, [{ a: pd.values, b: pu.values, r: 4, s: 0.5 }]), 'proj_in');
    const { op: qop } = await opFor(plan, base, 'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight');
    expectClose(evaluateOp(qop), addOutIn(q.values, 6, 6, [{ a: qd.values, b: qu.values, r: 2, s: 1 }]), 'te q_proj (no alpha)');
    const { op: cop } = await opFor(plan, base, 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight');
    const cExp = conv.values.slice();
    for (let o = 0; o < 5; o++) for (let i = 0; i < 4; i++) for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) {
      let sum = 0;
      for (let k = 0; k < 3; k++) sum += cu.values[o * 3 + k] * cd.values[((k * 4 + i) * 3 + y) * 3 + x];
      cExp[((o * 4 + i) * 3 + y) * 3 + x] += (1 / 3) * sum;
    }
    expectClose(evaluateOp(cop), cExp, 'LoCon 3×3');

    // LyCORIS DoRA: V = W + s·ΔW; one norm per input column over the outputs, plus f32 eps.
    const { op: fop } = await opFor(plan, base, 'model.diffusion_model.input_blocks.1.1.ff.weight');
    const v = addOutIn(ff.values, 7, 4, [{ a: fd.values, b: fu.values, r: 2, s: 1 }]);
    const fExp = v.slice();
    for (let i = 0; i < 4; i++) {
      let ss = 0;
      for (let o = 0; o < 7; o++) ss += v[o * 4 + i] ** 2;
      for (let o = 0; o < 7; o++) fExp[o * 4 + i] = (dora.values[i] / (Math.sqrt(ss) + 2 ** -23)) * v[o * 4 + i];
    }
    expectClose(evaluateOp(fop), fExp, 'LyCORIS DoRA');
  });

  it('breaks suffix ties between text encoders by the module part', async () => {
    const rand = seededRandom(7);
    const base = new FakeBase();
    const te1 = 'conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight';
    const te2 = 'conditioner.embedders.1.model.text_model.encoder.layers.0.mlp.fc1.weight';
    base.add(te1, stored([4, 3], 'F16', rand));
    base.add(te2, stored([4, 3], 'F16', rand));
    const f = { a: stored([1, 3], 'F32', rand), b: stored([4, 1], 'F32', rand) };
    const name = 'text_model_encoder_layers_0_mlp_fc1';
    const adapter = await kohya('xl', [
      fixture(`lora_te1_${name}.lora_down.weight`, f.a), fixture(`lora_te1_${name}.lora_up.weight`, f.b),
      fixture(`lora_te2_${name}.lora_down.weight`, f.a), fixture(`lora_te2_${name}.lora_up.weight`, f.b),
    ]);
    const plan = await buildMergePlan(base, [{ adapter, weight: 1 }]);
    assertPlanValid(plan);
    expect(plan.updates.map((u) => [u.baseKey, u.terms[0].moduleName])).toEqual([
      [te1, `lora_te1_${name}`], [te2, `lora_te2_${name}`],
    ]);
  });
});

describe('plan problems', () => {
  it('reports every problem at once, each naming adapter and module', async () => {
    const rand = seededRandom(8);
    const base = new FakeBase();
    base.add('model.layers.0.q_proj.weight', stored([4, 6], 'F16', rand));
    base.add('model.layers.1.q_proj.weight', stored([4, 6], 'F16', rand));
    base.add('enc.layers.0.k_proj.weight', stored([4, 6], 'F16', rand));
    base.add('dec.layers.0.k_proj.weight', stored([4, 6], 'F16', rand));
    base.add('model.conv.weight', stored([4, 2, 3, 3], 'F32', rand));
    base.add('model.ids.weight', { shape: [4, 6], dtype: 'I64', values: new Float64Array(24) });
    base.add('model.head.weight', stored([3, 6], 'F32', rand));
    const lin = (prefix: string, r: number, out: number, inF: number): FixtureTensor[] => [
      fixture(`base_model.model.${prefix}.lora_A.weight`, stored([r, inF], 'F32', rand)),
      fixture(`base_model.model.${prefix}.lora_B.weight`, stored([out, r], 'F32', rand)),
    ];
    const bad = await peft('bad', { r: 2, lora_alpha: 2 }, [
      ...lin('model.layers.0.q_proj', 2, 5, 6), // out 5 vs 4
      ...lin('model.missing', 2, 4, 6),
      ...lin('layers.0.k_proj', 2, 4, 6), // enc. and dec. both end with it
      fixture('base_model.model.model.conv.lora_A.weight', stored([2, 2, 1, 3], 'F32', rand)), // kernel (1,3) vs (3,3)
      fixture('base_model.model.model.conv.lora_B.weight', stored([4, 2, 1, 1], 'F32', rand)),
      ...lin('model.ids', 2, 4, 6),
    ]);
    const dora = (name: string) => peft(name, { r: 1, use_dora: true }, [
      ...lin('model.layers.1.q_proj', 1, 4, 6),
      fixture('base_model.model.model.layers.1.q_proj.lora_magnitude_vector', stored([4], 'F32', rand)),
    ]);
    const saves = (name: string) => peft(name, { r: 1 }, [fixture('base_model.model.model.head.modules_to_save.default.weight', stored([3, 6], 'F32', rand))]);
    const plan = await buildMergePlan(base, [
      { adapter: bad, weight: 1 }, { adapter: await dora('d1'), weight: 1 }, { adapter: await dora('d2'), weight: 1 },
      { adapter: await saves('s1'), weight: 1 }, { adapter: await saves('s2'), weight: 1 },
    ]);
    const byModule = Object.fromEntries(plan.problems.map((p) => [`${p.adapter}|${p.module}`, p]));
    expect(byModule['bad|model.layers.0.q_proj']?.code).toBe('SHAPE_MISMATCH');
    expect(byModule['bad|model.missing']?.code).toBe('UNKNOWN_MODULE');
    expect(byModule['bad|layers.0.k_proj']?.code).toBe('AMBIGUOUS_MODULE');
    expect(byModule['bad|layers.0.k_proj']?.message).toContain('dec.layers.0.k_proj.weight');
    expect(byModule['bad|model.conv']?.message).toMatch(/kernel \(1, 3\).*\(3, 3\)/);
    expect(byModule['bad|model.ids']?.message).toContain('I64');
    // Two DoRA adapters on one tensor are no problem: they apply one after the other.
    expect(byModule['d1|model.layers.1.q_proj']).toBeUndefined();
    expect(plan.updates.find((u) => u.baseKey === 'model.layers.1.q_proj.weight')?.terms.map((t) => [t.adapter, !!t.dora])).toEqual([['d1', true], ['d2', true]]);
    expect(byModule['s2|model.head.weight']?.message).toContain('s1 also replaces');
    expect(plan.problems).toHaveLength(6);
    for (const p of plan.problems) expect(p.message.startsWith(`${p.adapter}: `)).toBe(true);
    try {
      assertPlanValid(plan);
      expect.fail('should throw');
    } catch (e) {
      expect(isMergeError(e) && e.code).toBe('PLAN_INVALID');
      const lines = (e as Error).message.split('\n');
      expect(lines[0]).toBe('6 problems in the merge plan:');
      expect(lines).toHaveLength(7);
    }
  });

  it('groups LyCORIS per-input DoRA on k×k convs by channel, refuses LoRA on a replaced tensor, warns about weighted DoRA', async () => {
    const rand = seededRandom(11);
    const base = new FakeBase();
    base.add('conv_in.weight', stored([4, 3, 3, 3], 'F32', rand));
    base.add('fc.weight', stored([4, 3], 'F32', rand));
    base.add('head.weight', stored([2, 3], 'F32', rand));
    const loha = await kohya('k', [
      fixture('lora_unet_conv_in.lora_down.weight', stored([2, 3, 3, 3], 'F32', rand)),
      fixture('lora_unet_conv_in.lora_up.weight', stored([4, 2, 1, 1], 'F32', rand)),
      fixture('lora_unet_conv_in.dora_scale', stored([1, 3, 1, 1], 'F32', rand)),
      fixture('lora_unet_head.lora_down.weight', stored([1, 3], 'F32', rand)),
      fixture('lora_unet_head.lora_up.weight', stored([2, 1], 'F32', rand)),
    ]);
    const dora = await peft('p', { r: 1, use_dora: true, modules_to_save: ['head'] }, [
      fixture('base_model.model.fc.lora_A.weight', stored([1, 3], 'F32', rand)),
      fixture('base_model.model.fc.lora_B.weight', stored([4, 1], 'F32', rand)),
      fixture('base_model.model.fc.lora_magnitude_vector', stored([4], 'F32', rand)),
      fixture('base_model.model.head.weight', stored([2, 3], 'F32', rand)),
    ]);
    const plan = await buildMergePlan(base, [{ adapter: loha, weight: 1 }, { adapter: dora, weight: 0.5 }]);
    expect(plan.problems.map((p) => [p.adapter, p.module, p.code])).toEqual([
      ['p', 'head.weight', 'PLAN_INVALID'],
    ]);
    // One magnitude per input channel, shared by its 3×3 kernel positions (9 columns of the flat view).
    expect(plan.updates.find((u) => u.baseKey === 'conv_in.weight')?.terms[0].dora).toMatchObject({ axis: 'in', group: 9 });
    expect(plan.problems[0].message).toContain('k (module "lora_unet_head")');
    expect(plan.warnings.join('\n')).toMatch(/DoRA module "fc" with weight 0.5/);
  });

  it('lists the first problems and counts the rest', async () => {
    const rand = seededRandom(9);
    const base = new FakeBase();
    base.add('x.weight', stored([2, 2], 'F32', rand));
    const tensors: FixtureTensor[] = [];
    for (let i = 0; i < 20; i++) {
      tensors.push(fixture(`base_model.model.nope${i}.lora_A.weight`, stored([1, 2], 'F32', rand)));
      tensors.push(fixture(`base_model.model.nope${i}.lora_B.weight`, stored([2, 1], 'F32', rand)));
    }
    const plan = await buildMergePlan(base, [{ adapter: await peft('many', { r: 1 }, tensors), weight: 1 }]);
    expect(() => assertPlanValid(plan)).toThrow(/^20 problems in the merge plan:\n(.*\n){12}  \.\.\. and 8 more$/);
  });
});

describe('update magnitudes', () => {
  it('computes ‖s·B·A‖ from Gram matrices and ‖W‖ exactly or from row samples', async () => {
    const rand = seededRandom(10);
    const base = new FakeBase();
    const small = base.add('model.layers.3.self_attn.o_proj.weight', stored([9, 7], 'F32', rand));
    // Every row of the big tensor has the same norm, so the sampled estimate is exact too.
    const rows = 300, cols = 50;
    const big = new Float64Array(rows * cols).map((_, i) => (((i * 7919) % 13) & 1 ? 0.5 : -0.5));
    base.add('model.layers.12.mlp.up_proj.weight', { shape: [rows, cols], dtype: 'F32', values: big });
    const fs = { a: stored([5, 7], 'F16', rand), b: stored([9, 5], 'BF16', rand) };
    const fb = { a: stored([3, cols], 'F32', rand), b: stored([rows, 3], 'F32', rand) };
    const adapter = await peft('mag', { r: 5, lora_alpha: 10, rank_pattern: { up_proj: 3 } }, [
      fixture('base_model.model.model.layers.3.self_attn.o_proj.lora_A.weight', fs.a),
      fixture('base_model.model.model.layers.3.self_attn.o_proj.lora_B.weight', fs.b),
      fixture('base_model.model.model.layers.12.mlp.up_proj.lora_A.weight', fb.a),
      fixture('base_model.model.model.layers.12.mlp.up_proj.lora_B.weight', fb.b),
    ]);
    const plan = await buildMergePlan(base, [{ adapter, weight: -2 }]);
    const reads: [string, number, number][] = [];
    const result = await estimateUpdateMagnitudes(plan, async (key, start, count) => {
      reads.push([key, start, count]);
      return base.bytes(key, start, count);
    }, { exactElements: 1000, sampleElements: 800, sampleChunks: 4 });
    const frob = (out: number, inF: number, r: number, a: Float64Array, b: Float64Array, s: number) => {
      let ss = 0;
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += b[o * r + k] * a[k * inF + i];
        ss += (s * sum) ** 2;
      }
      return Math.sqrt(ss);
    };
    const norm = (v: Float64Array) => Math.sqrt(v.reduce((n, x) => n + x * x, 0));
    expect(result).toHaveLength(2);
    const [o, u] = result;
    expect([o.layer, o.moduleType, o.weightNormExact, u.layer, u.moduleType, u.weightNormExact]).toEqual([3, 'o_proj', true, 12, 'up_proj', false]);
    expect(o.updateNorm).toBeCloseTo(frob(9, 7, 5, fs.a.values, fs.b.values, -2 * 2), 10);
    expect(u.updateNorm).toBeCloseTo(frob(rows, cols, 3, fb.a.values, fb.b.values, -2 * 10 / 3), 9);
    expect(o.weightNorm).toBeCloseTo(norm(small.values), 12);
    expect(u.weightNorm).toBeCloseTo(norm(big), 10);
    expect(o.ratio).toBeCloseTo(o.updateNorm / o.weightNorm, 12);
    const sampledRows = reads.filter(([k]) => k.includes('up_proj')).reduce((n, [, , c]) => n + c, 0);
    expect(sampledRows).toBe(16); // 4 runs of 800 / 50 / 4 rows, never the whole tensor
  });

  it('reads several updates\' samples at once, with the same results whatever order the reads finish in', async () => {
    const rand = seededRandom(11);
    const base = new FakeBase();
    const names = [0, 1, 2, 3, 4, 5, 6].map((i) => `model.layers.${i}.mlp.down_proj`);
    for (const name of names) base.add(`${name}.weight`, stored([40, 30], 'F32', rand));
    const adapter = await peft('many', { r: 2, lora_alpha: 2 }, names.flatMap((name) => [
      fixture(`base_model.model.${name}.lora_A.weight`, stored([2, 30], 'F32', rand)),
      fixture(`base_model.model.${name}.lora_B.weight`, stored([40, 2], 'F32', rand)),
    ]));
    const plan = await buildMergePlan(base, [{ adapter, weight: 1 }]);
    const measure = async (delay: (call: number) => number) => {
      let inFlight = 0, most = 0, call = 0;
      const result = await estimateUpdateMagnitudes(plan, async (key, start, count) => {
        most = Math.max(most, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, delay(call++)));
        inFlight--;
        return base.bytes(key, start, count);
      }, { exactElements: 500, sampleElements: 400, sampleChunks: 4 });
      return { result, most };
    };
    const soonest = await measure((call) => call % 7);
    const latest = await measure((call) => 7 - (call % 7));
    expect(soonest.most).toBeGreaterThan(4); // more than one update's four samples at a time
    expect(soonest.result.map((m) => m.baseKey)).toEqual(plan.updates.map((u) => u.baseKey));
    expect(latest.result).toEqual(soonest.result); // sums in row order, bit for bit
  });

  it('parses layer indices and module types from names', () => {
    expect(layerIndex('model.layers.17.self_attn.q_proj')).toBe(17);
    expect(layerIndex('transformer.h.4.attn.c_attn')).toBe(4);
    expect(layerIndex('lora_unet_down_blocks_2_attentions_1_proj_in')).toBe(2);
    expect(layerIndex('lm_head')).toBeNull();
    expect(moduleType('model.layers.0.mlp.down_proj.weight')).toBe('down_proj');
  });
});
