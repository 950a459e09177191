/**
 * Adapter algorithms beyond plain LoRA onto a GGUF base: a single-file LyCORIS adapter with Hugging
 * Face module names (LoHa on q and gate, LoKr, full diffs on v and on k, IA3 per input channel, a LoRA with LyCORIS's
 * dora_scale, whose norms run over every row slab) and then a PEFT DoRA adapter on a tensor the first
 * one already changed, onto a Q4_K_M-style llama. Checked against float64 truth written here from
 * the algorithms' definitions (W being the base's decoded values), merged in f32 and with the
 * types kept (blocks then equal the reference quantizer's for the f32 merge: requantized once), on
 * the CPU and on WebGPU. LoHa lands on llama's permuted q rows like a LoRA, a full diff on the
 * permuted k rows likewise, and so does a PEFT C3A block-circulant update; IA3 per output row there
 * takes each row's factor to the row's GGUF place, and DoRA there is refused by name.
 */
import { describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { REF_BLOCK, referenceQuantizeBlock, type RefType } from './helpers/ggml-reference.js';
import { readGguf, tensorValues, typeName, type ReadGguf } from './helpers/gguf-builder.js';
import { ggufRowOf, LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { dora, mm } from './helpers/dense-f64.js';
import { circulant } from './helpers/peft-delta-truth.js';

const backends = mergeBackends({ cpu: 'default' });

const FILE = 'tiny-llama-Q4_K_M.gguf';
const base = q4kmLlama();
const { hidden: h, heads, kvHeads, ffn } = LLAMA;
const kv = (h / heads) * kvHeads;
const rand = seededRandom(77);

function vals(n: number, dtype: FixtureDType = 'F32', scale = 0.05): Float64Array {
  return randomValues(n, rand, scale).map((x) => roundForDType(x, dtype));
}

const addScaled = (w: Float64Array, d: Float64Array, s: number) => w.map((x, i) => x + s * d[i]);

const W = (name: string) => base.tensors.get(name)!.values;
const GATE = 'blk.0.ffn_gate.weight', UP = 'blk.0.ffn_up.weight', DOWN = 'blk.0.ffn_down.weight';
const V = 'blk.0.attn_v.weight', O = 'blk.0.attn_output.weight', Q = 'blk.0.attn_q.weight', K = 'blk.0.attn_k.weight';

// Adapter 1 (weight 0.8): a LyCORIS file whose module names are the Hugging Face paths.
const s1 = 0.8;
const truth1: Record<string, (w: Float64Array) => Float64Array> = {};
const lycoris: FixtureTensor[] = [];
{
  const t = (name: string, dtype: FixtureDType, shape: number[], data: Float64Array | number[]) => lycoris.push({ name, dtype, shape, data });
  // LoHa on gate_proj (Q4_K, 256 × 256): r = 2, α = 1 → scale 1/2.
  const g = 'model.layers.0.mlp.gate_proj';
  const w1a = vals(ffn * 2, 'BF16', 0.2), w1b = vals(2 * h, 'BF16', 0.2), w2a = vals(ffn * 2, 'BF16', 0.2), w2b = vals(2 * h, 'BF16', 0.2);
  t(`${g}.hada_w1_a`, 'BF16', [ffn, 2], w1a); t(`${g}.hada_w1_b`, 'BF16', [2, h], w1b);
  t(`${g}.hada_w2_a`, 'BF16', [ffn, 2], w2a); t(`${g}.hada_w2_b`, 'BF16', [2, h], w2b); t(`${g}.alpha`, 'F32', [], [1]);
  const d1 = mm(w1a, w1b, ffn, 2, h), d2 = mm(w2a, w2b, ffn, 2, h);
  truth1[GATE] = (w) => addScaled(w, d1.map((x, i) => x * d2[i]), s1 * 0.5);
  // LoHa on q_proj (Q4_K, 256 × 256), r = 1, no α (scale 1): a low-rank form, so it lands on llama's
  // permuted q rows like a LoRA (HF row o is GGUF row ggufRowOf(o)).
  const q = 'model.layers.0.self_attn.q_proj';
  const q1a = vals(h, 'F32', 0.2), q1b = vals(h, 'F32', 0.2), q2a = vals(h, 'F32', 0.2), q2b = vals(h, 'F32', 0.2);
  t(`${q}.hada_w1_a`, 'F32', [h, 1], q1a); t(`${q}.hada_w1_b`, 'F32', [1, h], q1b);
  t(`${q}.hada_w2_a`, 'F32', [h, 1], q2a); t(`${q}.hada_w2_b`, 'F32', [1, h], q2b);
  truth1[Q] = (w) => {
    const out = w.slice();
    for (let o = 0; o < h; o++) for (let c = 0; c < h; c++) out[ggufRowOf(o, h, heads) * h + c] += s1 * q1a[o] * q1b[c] * q2a[o] * q2b[c];
    return out;
  };
  // LoKr on up_proj (Q4_K, 256 × 256): W1 (4 × 4) full, W2 = w2_a (64 × 2)·w2_b (2 × 64); α = 1, r = 2 → 1/2.
  const u = 'model.layers.0.mlp.up_proj';
  const k1 = vals(16, 'F32', 0.5), k2a = vals(64 * 2, 'F16', 0.3), k2b = vals(2 * 64, 'F16', 0.3);
  t(`${u}.lokr_w1`, 'F32', [4, 4], k1); t(`${u}.lokr_w2_a`, 'F16', [64, 2], k2a); t(`${u}.lokr_w2_b`, 'F16', [2, 64], k2b); t(`${u}.alpha`, 'F32', [], [1]);
  const k2 = mm(k2a, k2b, 64, 2, 64);
  const kron = new Float64Array(ffn * h);
  for (let o1 = 0; o1 < 4; o1++) for (let o2 = 0; o2 < 64; o2++) for (let i1 = 0; i1 < 4; i1++) for (let i2 = 0; i2 < 64; i2++) {
    kron[(o1 * 64 + o2) * h + i1 * 64 + i2] = k1[o1 * 4 + i1] * k2[o2 * 64 + i2];
  }
  truth1[UP] = (w) => addScaled(w, kron, s1 * 0.5);
  // A full diff on v_proj (Q6_K, 128 × 256).
  const v = 'model.layers.0.self_attn.v_proj';
  const diff = vals(kv * h, 'F16', 0.01);
  t(`${v}.diff`, 'F16', [kv, h], diff);
  truth1[V] = (w) => addScaled(w, diff, s1);
  // A full diff on k_proj (Q5_K, 128 × 256): a dense ΔW, whose rows land on llama's permuted k
  // rows as a LoRA's do (HF row o is GGUF row ggufRowOf(o)).
  const k = 'model.layers.0.self_attn.k_proj';
  const diffK = vals(kv * h, 'F16', 0.01);
  t(`${k}.diff`, 'F16', [kv, h], diffK);
  truth1[K] = (w) => {
    const out = w.slice();
    for (let o = 0; o < kv; o++) for (let c = 0; c < h; c++) out[ggufRowOf(o, kv, kvHeads) * h + c] += s1 * diffK[o * h + c];
    return out;
  };
  // IA3 per input channel on o_proj (Q4_K, 256 × 256).
  const o = 'model.layers.0.self_attn.o_proj';
  const ia3 = vals(h, 'F32', 0.5);
  t(`${o}.weight`, 'F32', [h], ia3); t(`${o}.on_input`, 'I64' as FixtureDType, [], [1]);
  truth1[O] = (w) => w.map((x, i) => x * (1 + s1 * ia3[i % h]));
  // A LoRA with LyCORIS's dora_scale on down_proj (Q6_K, 256 × 256): r = 2, α = 1 → 1/2; one norm
  // per input column (eps = f32 epsilon), over rows that arrive in many slabs.
  const d = 'model.layers.0.mlp.down_proj';
  const down = vals(2 * ffn, 'BF16', 0.2), up = vals(h * 2, 'BF16', 0.2), m = vals(ffn, 'F32', 0.1).map((x) => roundForDType(0.3 + x, 'F32'));
  t(`${d}.lora_down.weight`, 'BF16', [2, ffn], down); t(`${d}.lora_up.weight`, 'BF16', [h, 2], up);
  t(`${d}.alpha`, 'F32', [], [1]); t(`${d}.dora_scale`, 'F32', [1, ffn], m);
  // At weight s1 ≠ 1, LyCORIS's rule: V = W + α/r·ΔW whole, W' = V + s1·(m·V / (‖V‖ + eps) − V).
  truth1[DOWN] = (w) => {
    const v = addScaled(w, mm(up, down, h, 2, ffn), 0.5);
    const rescaled = dora(v, m, h, ffn, 'in', 2 ** -23);
    return v.map((x, i) => x + s1 * (rescaled[i] - x));
  };
}

// Adapter 2 (weight 1): PEFT DoRA (one norm per output row) on v_proj, after adapter 1's diff.
const peftA = vals(4 * h, 'F32', 0.2), peftB = vals(kv * 4, 'F32', 0.2), peftM = vals(kv, 'F32', 0.1).map((x) => roundForDType(0.5 + x, 'F32'));
const peftDora = {
  'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, use_dora: true, target_modules: ['v_proj'] }),
  'adapter_model.safetensors': buildSafetensors([
    { name: 'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight', dtype: 'F32', shape: [4, h], data: peftA },
    { name: 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight', dtype: 'F32', shape: [kv, 4], data: peftB },
    { name: 'base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector', dtype: 'F32', shape: [kv], data: peftM },
  ]),
};
const truth2: Record<string, (w: Float64Array) => Float64Array> = {
  [V]: (w) => dora(addScaled(w, mm(peftB, peftA, kv, 4, h), 2), peftM, kv, h, 'out', 0),
};

const truth = new Map([Q, K, GATE, UP, V, O, DOWN].map((name) => {
  let w = W(name);
  for (const step of [truth1, truth2]) if (step[name]) w = step[name](w);
  return [name, w] as const;
}));

async function merge(backend: MergeBackend, outDtype?: string): Promise<ReadGguf> {
  const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [
    { files: memoryInputFileSet({ 'lycoris.safetensors': buildSafetensors(lycoris) }, 'lycoris'), weight: s1 },
    { files: memoryInputFileSet(peftDora, 'peft-dora'), weight: 1 },
  ]);
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    // 4 KiB slabs: 19 rows of Q6_K at a time, so the dora_scale norms take many slabs.
    await mergeModel({ prepared, output, backend, outDtype, slabBytes: 4096 });
    const [file] = output.files();
    return readGguf(new Uint8Array(await file.blob.arrayBuffer()));
  } finally {
    await prepared.close();
  }
}

describe.each(['cpu', 'webgpu'])('%s', (name) => {
  let inF32: Promise<ReadGguf> | undefined;
  const mergedF32 = () => (inF32 ??= merge(backends[name]!, 'f32'));

  it('merges LoHa, LoKr, a full diff, IA3, LyCORIS DoRA (norms over every slab) and a PEFT DoRA after the diff, in f32, against float64 truth', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    const out = await mergedF32();
    for (const [tensor, want] of truth) {
      const t = out.tensors.find((x) => x.name === tensor)!;
      expect(typeName(t.typeId), tensor).toBe('F32');
      const got = tensorValues('F32', t.data);
      const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      // f32 accumulation: a few f32 ulps of the tensor's scale.
      expect(worst / scale, tensor).toBeLessThan(2e-6);
    }
  });

  it('keeps the types: each merged tensor is the f32 merge quantized once by the reference quantizer; the rest is byte-copied', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    const [out, f32] = [await merge(backends[name]!), await mergedF32()];
    const input = readGguf(base.files[FILE]);
    expect(out.tensors.map((t) => [t.name, t.typeId])).toEqual(input.tensors.map((t) => [t.name, t.typeId]));
    for (const t of out.tensors) {
      const original = input.tensors.find((x) => x.name === t.name)!;
      if (!truth.has(t.name)) {
        expect(Buffer.from(t.data).equals(Buffer.from(original.data)), `${t.name} is byte-copied`).toBe(true);
        continue;
      }
      const type = typeName(t.typeId) as RefType;
      const values = tensorValues('F32', f32.tensors.find((x) => x.name === t.name)!.data);
      const { size, bytes } = REF_BLOCK[type];
      for (let b = 0; b < values.length / size; b++) {
        const want = referenceQuantizeBlock(type, values.subarray(b * size, (b + 1) * size));
        expect([...t.data.subarray(b * bytes, (b + 1) * bytes)], `${t.name} block ${b}`).toEqual([...want]);
      }
    }
  });
});

it('refuses DoRA on llama\'s q rows (permuted for RoPE), naming the module in one short line', async () => {
  const q = 'model.layers.0.self_attn.q_proj';
  const doraPeft = {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 1, lora_alpha: 1, use_dora: true, target_modules: ['q_proj'] }),
    'adapter_model.safetensors': buildSafetensors([
      { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [1, h], data: vals(h) },
      { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [h, 1], data: vals(h) },
      { name: `base_model.model.${q}.lora_magnitude_vector`, dtype: 'F32', shape: [h], data: vals(h) },
    ]),
  };
  const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(doraPeft, 'a') }]);
  const messages = prepared.plan.problems.map((p) => p.message);
  await prepared.close();
  expect(messages).toHaveLength(1);
  expect(messages[0]).toMatch(/^a: module "model\.layers\.0\.self_attn\.q_proj": DoRA on a module whose rows the base stores in another order \(blk\.0\.attn_q\.weight, its rows reordered\) is not supported$/);
});

it('merges IA3 per output row on llama\'s q rows (permuted for RoPE): Hugging Face row o\'s factor scales GGUF row ggufRowOf(o), against float64 truth', async (ctx) => {
  if (!backends.cpu) return ctx.skip();
  const q = 'model.layers.0.self_attn.q_proj';
  const s = 0.7;
  const factors = vals(h, 'F32', 0.5);
  const ia3 = buildSafetensors([{ name: `${q}.weight`, dtype: 'F32', shape: [h], data: factors }, { name: `${q}.on_input`, dtype: 'I64' as FixtureDType, shape: [], data: [0] }]);
  const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet({ 'ia3.safetensors': ia3 }, 'a'), weight: s }]);
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: backends.cpu, outDtype: 'f32' });
    const [file] = output.files();
    const out = readGguf(new Uint8Array(await file.blob.arrayBuffer()));
    const got = tensorValues('F32', out.tensors.find((t) => t.name === Q)!.data);
    const w = W(Q), want = w.slice();
    for (let o = 0; o < h; o++) {
      const row = ggufRowOf(o, h, heads);
      for (let c = 0; c < h; c++) want[row * h + c] = w[row * h + c] * (1 + s * factors[o]);
    }
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - Math.fround(want[i])));
    expect(worst).toBe(0);
  } finally {
    await prepared.close();
  }
});

it('refuses PEFT HiRA, RoAd and MiSS bat on llama\'s q rows (permuted for RoPE), naming the module and the method as users know it in one short line', async () => {
  const q = 'model.layers.0.self_attn.q_proj';
  const folder = (config: object, tensors: FixtureTensor[]) => ({
    'adapter_config.json': JSON.stringify({ target_modules: ['q_proj'], ...config }),
    'adapter_model.safetensors': buildSafetensors(tensors.map((t) => ({ ...t, name: `base_model.model.${q}.${t.name}` }))),
  });
  const cases: [string, Record<string, string | Uint8Array>][] = [
    ['HiRA (PEFT)', folder({ peft_type: 'HIRA', r: 1 }, [{ name: 'hira_A', dtype: 'F32', shape: [1, h], data: vals(h) }, { name: 'hira_B', dtype: 'F32', shape: [h, 1], data: vals(h) }])],
    ['RoAd (PEFT)', folder({ peft_type: 'ROAD', variant: 'road_2', group_size: 2 }, [{ name: 'road_theta', dtype: 'F32', shape: [h], data: vals(h) }, { name: 'road_alpha', dtype: 'F32', shape: [h], data: vals(h) }])],
    ['MiSS (PEFT)', folder({ peft_type: 'MISS', r: 2, init_weights: 'bat' }, [{ name: 'miss_block', dtype: 'F32', shape: [h / 2, 2, 2], data: vals(h * 2) }])],
  ];
  for (const [algorithm, files] of cases) {
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(files, 'a') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    expect(messages, algorithm).toHaveLength(1);
    expect(messages[0]).toMatch(new RegExp(`^a: module "model\\.layers\\.0\\.self_attn\\.q_proj": ${algorithm.replace(/[()]/g, '\\$&')} on a module whose rows the base stores in another order \\(blk\\.0\\.attn_q\\.weight, its rows reordered\\) is not supported$`));
  }
});

describe.each(['cpu', 'webgpu'])('PEFT C3A on a GGUF, %s', (name) => {
  it("lands on llama's permuted q rows: HF row o of W + w·C/in is GGUF row ggufRowOf(o), against float64 truth", async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // block_size 4 on q_proj (256 × 256): a kernel of (out/4, in/4, 4); C block (m, n) row j, column t is kernel[m][n][(t − j) mod 4].
    const b = 4, weight = 0.7;
    const kernel = vals((h / b) * (h / b) * b, 'F32', 0.5);
    const files = {
      'adapter_config.json': JSON.stringify({
        peft_type: 'C3A', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.18.0', block_size: b,
        target_modules: ['q_proj'], bias: 'none', modules_to_save: null, block_size_pattern: {}, init_weights: 'xavier_uniform', inference_mode: true,
      }),
      'adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.c3a_kernel', dtype: 'F32', shape: [h / b, h / b, b], data: kernel },
      ]),
    };
    const c = circulant(kernel, h / b, h / b, b);
    const want = W(Q).slice();
    for (let o = 0; o < h; o++) for (let col = 0; col < h; col++) want[ggufRowOf(o, h, heads) * h + col] += weight * c[o * h + col] / h;
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(files, 'c3a'), weight }]);
    let out: ReadGguf;
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend, outDtype: 'f32', slabBytes: 4096 });
      out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
    } finally {
      await prepared.close();
    }
    const got = tensorValues('F32', out.tensors.find((x) => x.name === Q)!.data);
    const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    expect(worst / scale).toBeLessThan(2e-6);
  });
});
