/**
 * A llama.cpp LoRA merged into a gpt-oss GGUF, whose expert tensors are MXFP4 (the MXFP4_MOE file
 * type: the other matrices Q8_0, norms, router, sinks and biases F32), with gpt-oss's tensor names
 * and metadata. The adapter (as convert_lora_to_gguf writes it) changes attn_q (2-D factors) and two
 * stacked expert tensors (3-D factors, one slice per expert). Checked on the CPU and on WebGPU
 * against float64 truth written here from the base's values (decoded by the plain transcription of
 * dequantize_row_mxfp4) and the factors: the merge in f32, then with the types kept, where each
 * merged MXFP4 or Q8_0 tensor is the reference quantizer's blocks for the f32 merge; and
 * `--dtype mxfp4`, which converts every matrix llama-quantize --pure would. And the other byte- or
 * mean-scaled types (NVFP4, Q1_0, Q2_0): a LoRA on such a matrix, kept in its type or written as Q8_0.
 * And a PEFT LoRA (Hugging Face module names) on the same base: attention lands unpermuted, expert
 * parameters (target_parameters) land as the converter lays them out.
 */
import { describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorData, tensorValues, typeName, type FixtureTensor, type MetaValue, type ReadGguf } from './helpers/gguf-builder.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { mixContext, typeMix } from '../src/formats/gguf/type-mixes.js';

const MXFP4_MOE = typeMix('mxfp4_moe')!;

const backends = mergeBackends({ cpu: 'default' });

const HIDDEN = 96; // gpt-oss's 2880 is a multiple of 32, not of 256: no k-quants
const HEADS = 4, KV_HEADS = 2, HEAD_DIM = 16, EXPERTS = 4, FFN = 64, VOCAB = 40;
const Q = 'blk.0.attn_q.weight', GATE = 'blk.0.ffn_gate_exps.weight', DOWN = 'blk.0.ffn_down_exps.weight', UP = 'blk.0.ffn_up_exps.weight';
const GATE_UP = 'blk.0.ffn_gate_up_exps.weight';

function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

const u32 = (value: number): MetaValue => ({ type: 'u32', value });

/**
 * The base: one gpt-oss block as convert_hf_to_gguf names it, quantized as llama-quantize's
 * MXFP4_MOE (or each type mapped by `typeOf`: BF16, as the converter writes it).
 */
function gptOssBase(typeOf: (type: string) => string = (type) => type, fuseGateUp = false) {
  const g = gaussian(3);
  const specs: { name: string; ne: number[]; type: string }[] = [
    { name: 'token_embd.weight', ne: [HIDDEN, VOCAB], type: 'Q8_0' },
    { name: 'blk.0.attn_norm.weight', ne: [HIDDEN], type: 'F32' },
    { name: Q, ne: [HIDDEN, HEADS * HEAD_DIM], type: 'Q8_0' },
    { name: 'blk.0.attn_q.bias', ne: [HEADS * HEAD_DIM], type: 'F32' },
    { name: 'blk.0.attn_k.weight', ne: [HIDDEN, KV_HEADS * HEAD_DIM], type: 'Q8_0' },
    { name: 'blk.0.attn_k.bias', ne: [KV_HEADS * HEAD_DIM], type: 'F32' },
    { name: 'blk.0.attn_v.weight', ne: [HIDDEN, KV_HEADS * HEAD_DIM], type: 'Q8_0' },
    { name: 'blk.0.attn_v.bias', ne: [KV_HEADS * HEAD_DIM], type: 'F32' },
    { name: 'blk.0.attn_output.weight', ne: [HEADS * HEAD_DIM, HIDDEN], type: 'Q8_0' },
    { name: 'blk.0.attn_output.bias', ne: [HIDDEN], type: 'F32' },
    { name: 'blk.0.attn_sinks.weight', ne: [HEADS], type: 'F32' },
    { name: 'blk.0.post_attention_norm.weight', ne: [HIDDEN], type: 'F32' },
    { name: 'blk.0.ffn_gate_inp.weight', ne: [HIDDEN, EXPERTS], type: 'F32' },
    { name: 'blk.0.ffn_gate_inp.bias', ne: [EXPERTS], type: 'F32' },
    { name: GATE, ne: [HIDDEN, FFN, EXPERTS], type: 'MXFP4' },
    { name: 'blk.0.ffn_gate_exps.bias', ne: [FFN, EXPERTS], type: 'F32' },
    { name: UP, ne: [HIDDEN, FFN, EXPERTS], type: 'MXFP4' },
    { name: 'blk.0.ffn_up_exps.bias', ne: [FFN, EXPERTS], type: 'F32' },
    { name: DOWN, ne: [FFN, HIDDEN, EXPERTS], type: 'MXFP4' },
    { name: 'blk.0.ffn_down_exps.bias', ne: [HIDDEN, EXPERTS], type: 'F32' },
    { name: 'output_norm.weight', ne: [HIDDEN], type: 'F32' },
    { name: 'output.weight', ne: [HIDDEN, VOCAB], type: 'Q8_0' },
  ];
  if (fuseGateUp) {
    // convert_hf_to_gguf --fuse-gate-up-exps: each expert's gate rows, then its up rows, in one tensor.
    const at = specs.findIndex((s) => s.name === GATE);
    specs.splice(at, 4, { name: GATE_UP, ne: [HIDDEN, 2 * FFN, EXPERTS], type: 'MXFP4' }, { name: 'blk.0.ffn_gate_up_exps.bias', ne: [2 * FFN, EXPERTS], type: 'F32' });
  }
  for (const s of specs) s.type = typeOf(s.type);
  const { tensors, values } = randomTensors(specs, g);
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: 'gpt-oss' }],
    ['general.name', { type: 'string', value: 'Gpt Oss Tiny' }],
    ['gpt-oss.block_count', u32(1)], ['gpt-oss.context_length', u32(4096)], ['gpt-oss.embedding_length', u32(HIDDEN)],
    ['gpt-oss.feed_forward_length', u32(FFN)], ['gpt-oss.expert_feed_forward_length', u32(FFN)],
    ['gpt-oss.attention.head_count', u32(HEADS)], ['gpt-oss.attention.head_count_kv', u32(KV_HEADS)],
    ['gpt-oss.attention.key_length', u32(HEAD_DIM)], ['gpt-oss.attention.value_length', u32(HEAD_DIM)],
    ['gpt-oss.attention.sliding_window', u32(128)], ['gpt-oss.expert_count', u32(EXPERTS)], ['gpt-oss.expert_used_count', u32(2)],
    ['gpt-oss.rope.freq_base', { type: 'f32', value: 150000 }], ['gpt-oss.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['general.file_type', u32(typeOf('MXFP4') === 'MXFP4' ? 38 : 32)], // LLAMA_FTYPE_MOSTLY_MXFP4_MOE, or _BF16
    ['general.quantization_version', u32(2)],
  ];
  return { bytes: buildGguf({ metadata, tensors }), values, specs };
}

interface Factors { a: Float64Array; b: Float64Array; rank: number; in: number; out: number; experts: number }

/** The adapter: A ne [in, r(, E)] and B ne [r, out(, E)] per tensor, as convert_lora_to_gguf writes them. */
function gptOssLora(alpha: number) {
  const g = gaussian(11);
  const targets = [
    { tensor: Q, in: HIDDEN, out: HEADS * HEAD_DIM, rank: 8, experts: 1, aType: 'F32', bType: 'F16' },
    { tensor: GATE, in: HIDDEN, out: FFN, rank: 4, experts: EXPERTS, aType: 'F16', bType: 'F16' },
    { tensor: DOWN, in: FFN, out: HIDDEN, rank: 1, experts: EXPERTS, aType: 'Q8_0', bType: 'F32' },
  ];
  const tensors: FixtureTensor[] = [];
  const factors = new Map<string, Factors>();
  for (const t of targets) {
    const aData = tensorData(t.aType, Float64Array.from({ length: t.experts * t.rank * t.in }, () => 0.05 * g()));
    const bData = tensorData(t.bType, Float64Array.from({ length: t.experts * t.out * t.rank }, () => 0.05 * g()));
    factors.set(t.tensor, { a: tensorValues(t.aType, aData), b: tensorValues(t.bType, bData), rank: t.rank, in: t.in, out: t.out, experts: t.experts });
    const stack = t.experts > 1 ? [t.experts] : [];
    tensors.push({ name: `${t.tensor}.lora_a`, type: t.aType, ne: [t.in, t.rank, ...stack], data: aData });
    tensors.push({ name: `${t.tensor}.lora_b`, type: t.bType, ne: [t.rank, t.out, ...stack], data: bData });
  }
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: 'gpt-oss' }], ['general.type', { type: 'string', value: 'adapter' }],
    ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: alpha }],
  ];
  return { bytes: buildGguf({ metadata, tensors }), factors };
}

/** W plus weight·α/r·B_e·A_e on each expert's rows, in float64. */
function truth(w: Float64Array, f: Factors, scale: number): Float64Array {
  const out = w.slice();
  for (let e = 0; e < f.experts; e++) {
    const a = f.a.subarray(e * f.rank * f.in), b = f.b.subarray(e * f.out * f.rank);
    for (let o = 0; o < f.out; o++) {
      for (let c = 0; c < f.in; c++) {
        let sum = 0;
        for (let k = 0; k < f.rank; k++) sum += b[o * f.rank + k] * a[k * f.in + c];
        out[(e * f.out + o) * f.in + c] += scale * sum;
      }
    }
  }
  return out;
}

const base = gptOssBase();
const ALPHA = 16, WEIGHT = 0.7;
const lora = gptOssLora(ALPHA);
const MERGED = [Q, GATE, DOWN];
const want = new Map(MERGED.map((name) => {
  const f = lora.factors.get(name)!;
  return [name, truth(base.values.get(name)!, f, (WEIGHT * ALPHA) / f.rank)];
}));

async function merge(backend: MergeBackend, outDtype?: string, dtypeMergedOnly = false): Promise<{ out: ReadGguf; warnings: string[] }> {
  const prepared = await prepareMerge(memoryInputFileSet({ 'gpt-oss-tiny-MXFP4.gguf': base.bytes }, 'base'), [
    { files: memoryInputFileSet({ 'gpt-oss-lora.gguf': lora.bytes }, 'gpt-oss-lora'), weight: WEIGHT },
  ]);
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    const warnings: string[] = [...prepared.plan.warnings];
    // 2 KiB slabs: the stacked experts arrive in many pieces, some splitting an expert.
    await mergeModel({ prepared, output, backend, outDtype, dtypeMergedOnly, slabBytes: 2048, onWarning: (w) => warnings.push(w) });
    return { out: readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer())), warnings };
  } finally {
    await prepared.close();
  }
}

const tensorOf = (file: ReadGguf, name: string) => file.tensors.find((t) => t.name === name)!;
const keptBytes = new Map<string, ReadGguf>();

describe.each(['cpu', 'webgpu'])('a gpt-oss GGUF with MXFP4 experts, on %s', (name) => {
  it('merges the LoRA as float64 truth says, then writes each merged tensor in its own type (MXFP4 blocks as quantize_row_mxfp4_ref writes the f32 merge)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { out: f32 } = await merge(backend, 'f32', true);
    const { out, warnings } = await merge(backend);
    keptBytes.set(name, out);
    const input = readGguf(base.bytes);
    for (const tensor of MERGED) {
      const merged = tensorValues('F32', tensorOf(f32, tensor).data);
      const truthValues = want.get(tensor)!;
      expect(merged.length).toBe(truthValues.length);
      let worst = 0;
      for (let i = 0; i < merged.length; i++) worst = Math.max(worst, Math.abs(merged[i] - truthValues[i]) / (Math.abs(truthValues[i]) + 1e-3));
      expect(worst, tensor).toBeLessThan(1e-5);
      // Kept type: the reference quantizer's blocks for the f32 merge, whose values then lie within
      // half of each block's largest |x| of the truth (MXFP4's coarsest step).
      const spec = base.specs.find((s) => s.name === tensor)!;
      const kept = tensorOf(out, tensor);
      expect(typeName(kept.typeId), tensor).toBe(spec.type);
      expect(kept.ne).toEqual(spec.ne);
      expect(Buffer.from(kept.data).equals(Buffer.from(tensorData(spec.type, merged))), tensor).toBe(true);
      const decoded = tensorValues(spec.type, kept.data);
      for (let b = 0; b < decoded.length; b += 32) {
        let amax = 0;
        for (let j = b; j < b + 32; j++) amax = Math.max(amax, Math.abs(merged[j]));
        for (let j = b; j < b + 32; j++) expect(Math.abs(decoded[j] - truthValues[j])).toBeLessThanOrEqual(amax / 2 + 1e-6);
      }
      // The update moved every expert's blocks.
      const experts = spec.ne[2] ?? 1;
      const slice = kept.data.length / experts;
      const before = tensorOf(input, tensor).data;
      for (let e = 0; e < experts; e++) expect(Buffer.from(kept.data.subarray(e * slice, (e + 1) * slice)).equals(Buffer.from(before.subarray(e * slice, (e + 1) * slice)))).toBe(false);
    }
    // Everything else is copied byte for byte; the metadata stays, file type included.
    for (const t of input.tensors.filter((x) => !MERGED.includes(x.name))) {
      expect(Buffer.from(tensorOf(out, t.name).data).equals(Buffer.from(t.data)), t.name).toBe(true);
      expect(tensorOf(out, t.name).typeId).toBe(t.typeId);
    }
    expect(out.metadata.get('general.architecture')!.value).toBe('gpt-oss');
    expect(out.metadata.get('general.file_type')!.value).toBe(38);
    expect(warnings.join('\n')).toMatch(/the merged tensors \(1 Q8_0, 2 MXFP4\) are re-quantized to their own types/);
    expect(warnings.join('\n')).not.toMatch(/reads but does not write/);
  });
});

it('writes the same bytes on the CPU and on WebGPU', (ctx) => {
  if (!backends.webgpu) return ctx.skip();
  expect([...keptBytes.keys()].sort()).toEqual(['cpu', 'webgpu']);
  for (const t of keptBytes.get('cpu')!.tensors) {
    expect(Buffer.from(tensorOf(keptBytes.get('webgpu')!, t.name).data).equals(Buffer.from(t.data)), t.name).toBe(true);
  }
});

it('--dtype mxfp4 writes every matrix llama-quantize --pure would as MXFP4; norms, router, sinks and biases stay F32', async (ctx) => {
  const backend = backends.cpu;
  if (!backend) return ctx.skip();
  const { out, warnings } = await merge(backend, 'mxfp4');
  const { out: f32 } = await merge(backend, 'f32', true);
  for (const spec of base.specs) {
    const t = tensorOf(out, spec.name);
    const matrix = spec.ne.length > 1 && spec.name.endsWith('weight') && !spec.name.includes('ffn_gate_inp');
    expect(typeName(t.typeId), spec.name).toBe(matrix ? 'MXFP4' : 'F32');
    if (!matrix) continue;
    // Merged: MXFP4 of the f32 merge; untouched: MXFP4 of the exactly decoded values.
    const values = MERGED.includes(spec.name) ? tensorValues('F32', tensorOf(f32, spec.name).data) : base.values.get(spec.name)!;
    expect(Buffer.from(t.data).equals(Buffer.from(tensorData('MXFP4', values))), spec.name).toBe(true);
  }
  expect(warnings.join('\n')).toMatch(/tensors already quantized \(6 Q8_0\) are quantized again to MXFP4/);
  expect(out.metadata.get('general.file_type')!.value).toBe(38);
});

describe.each(['NVFP4', 'Q1_0', 'Q2_0'])('a %s matrix a LoRA changes', (type) => {
  const rows = 64, cols = 256;
  const g = gaussian(type.length * 13);
  const up = tensorData(type, Float64Array.from({ length: rows * cols }, () => 0.02 * g()));
  const norm = tensorData('F32', new Float64Array(cols).fill(1));
  const llama = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', u32(4)]],
    tensors: [
      { name: 'blk.0.ffn_norm.weight', type: 'F32', ne: [cols], data: norm },
      { name: 'blk.0.ffn_up.weight', type, ne: [cols, rows], data: up },
    ],
  });
  const gl = gaussian(5);
  const rank = 3;
  const a = tensorData('F32', Float64Array.from({ length: rank * cols }, () => 0.05 * gl()));
  const b = tensorData('F32', Float64Array.from({ length: rows * rank }, () => 0.05 * gl()));
  const adapter = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['general.type', { type: 'string', value: 'adapter' }], ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 6 }]],
    tensors: [
      { name: 'blk.0.ffn_up.weight.lora_a', type: 'F32', ne: [cols, rank], data: a },
      { name: 'blk.0.ffn_up.weight.lora_b', type: 'F32', ne: [rank, rows], data: b },
    ],
  });

  async function run(outDtype?: string): Promise<ReadGguf> {
    const prepared = await prepareMerge(memoryInputFileSet({ 'm.gguf': llama }, 'base'), [{ files: memoryInputFileSet({ 'l.gguf': adapter }, 'lora') }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: backends.cpu!, outDtype, slabBytes: 1024 });
      return readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
    } finally {
      await prepared.close();
    }
  }

  it('is decoded exactly, merged, and written in its own type by the reference quantizer, or as Q8_0 when asked', async () => {
    const f = { a: tensorValues('F32', a), b: tensorValues('F32', b), rank, in: cols, out: rows, experts: 1 };
    const truthValues = truth(tensorValues(type, up), f, 6 / rank);
    const merged = tensorValues('F32', tensorOf(await run('f32'), 'blk.0.ffn_up.weight').data);
    for (let i = 0; i < merged.length; i++) expect(Math.abs(merged[i] - truthValues[i])).toBeLessThan(1e-6);
    const kept = tensorOf(await run(), 'blk.0.ffn_up.weight');
    expect(typeName(kept.typeId)).toBe(type);
    expect(Buffer.from(kept.data).equals(Buffer.from(tensorData(type, merged)))).toBe(true);
    const q8 = await run('q8_0');
    expect(Buffer.from(tensorOf(q8, 'blk.0.ffn_up.weight').data).equals(Buffer.from(tensorData('Q8_0', merged)))).toBe(true);
    expect(Buffer.from(tensorOf(q8, 'blk.0.ffn_norm.weight').data).equals(Buffer.from(norm))).toBe(true);
  });
});

describe('--dtype mxfp4_moe: llama-quantize\'s MXFP4_MOE mix', () => {
  it('types each tensor as llama_tensor_get_type does: stacked experts MXFP4, other matrices and the head Q8_0', () => {
    const model = (architecture: string, tensors: { name: string; shape: number[] }[]) => mixContext((key) => (key === 'general.architecture' ? architecture : undefined), tensors);
    const gptOss = model('gpt-oss', [{ name: 'output.weight', shape: [201088, 2880] }]);
    expect(MXFP4_MOE.typeOf('blk.0.ffn_gate_exps.weight', [32, 2880, 2880], gptOss)).toBe('MXFP4');
    expect(MXFP4_MOE.typeOf('blk.0.ffn_down_exps.weight', [32, 2880, 2880], gptOss)).toBe('MXFP4');
    expect(MXFP4_MOE.typeOf('blk.0.attn_q.weight', [4096, 2880], gptOss)).toBe('Q8_0');
    expect(MXFP4_MOE.typeOf('token_embd.weight', [201088, 2880], gptOss)).toBe('Q8_0');
    // The head: Q8_0 under this file type, whatever its width (Q6_K for the other mixes).
    expect(MXFP4_MOE.typeOf('output.weight', [201088, 2880], gptOss)).toBe('Q8_0');
    expect(MXFP4_MOE.typeOf('output.weight', [32000, 4096], gptOss)).toBe('Q8_0');
    // Tied embeddings: the token embedding is the head.
    const tied = model('llama', [{ name: 'token_embd.weight', shape: [32000, 4096] }]);
    expect(MXFP4_MOE.typeOf('token_embd.weight', [32000, 4096], tied)).toBe('Q8_0');
    // One expert: ne[2] is 1.
    expect(MXFP4_MOE.typeOf('blk.0.ffn_up_exps.weight', [1, 128, 64], gptOss)).toBe('Q8_0');
    // bailingmoe3's 3-D attention projections stay Q8_0; its experts take MXFP4.
    const bailing = model('bailingmoe3', [{ name: 'output.weight', shape: [32000, 4096] }]);
    expect(MXFP4_MOE.typeOf('blk.0.attn_kv_b.weight', [16, 128, 64], bailing)).toBe('Q8_0');
    expect(MXFP4_MOE.typeOf('blk.0.ffn_up_exps.weight', [16, 128, 64], bailing)).toBe('MXFP4');
  });

  it('converts a BF16 gpt-oss GGUF, merged, into MXFP4_MOE as llama-quantize would: each tensor the reference quantizer\'s blocks of the merge or of the stored values', async (ctx) => {
    const backend = backends.cpu;
    if (!backend) return ctx.skip();
    const bf16 = gptOssBase((type) => (type === 'F32' ? type : 'BF16'));
    const run = async (outDtype: string, dtypeMergedOnly = false) => {
      const prepared = await prepareMerge(memoryInputFileSet({ 'gpt-oss-tiny-BF16.gguf': bf16.bytes }, 'base'), [
        { files: memoryInputFileSet({ 'gpt-oss-lora.gguf': lora.bytes }, 'gpt-oss-lora'), weight: WEIGHT },
      ]);
      try {
        expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
        const output = createBlobOutputTarget();
        const warnings: string[] = [];
        await mergeModel({ prepared, output, backend, outDtype, dtypeMergedOnly, onWarning: (w) => warnings.push(w) });
        return { out: readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer())), warnings };
      } finally {
        await prepared.close();
      }
    };
    const { out, warnings } = await run('mxfp4_moe');
    const { out: f32 } = await run('f32', true);
    for (const spec of bf16.specs) {
      const t = tensorOf(out, spec.name);
      const matrix = spec.ne.length > 1 && spec.name.endsWith('weight') && !spec.name.includes('ffn_gate_inp');
      const expected = !matrix ? spec.type : spec.ne.length === 3 ? 'MXFP4' : 'Q8_0';
      expect(typeName(t.typeId), spec.name).toBe(expected);
      if (!matrix) continue;
      const values = MERGED.includes(spec.name) ? tensorValues('F32', tensorOf(f32, spec.name).data) : bf16.values.get(spec.name)!;
      expect(Buffer.from(t.data).equals(Buffer.from(tensorData(expected, values))), spec.name).toBe(true);
    }
    expect(warnings.join('\n')).not.toMatch(/is written as/);
    expect(warnings.join('\n')).not.toMatch(/quantized again/);
    expect(out.metadata.get('general.file_type')!.value).toBe(38);
  });
});

describe('a PEFT LoRA on a gpt-oss GGUF', () => {
  const R = 4, PEFT_ALPHA = 8;
  /** HF module → GGUF tensor, [out, in] of each (convert_hf_to_gguf's GptOssModel names, q and k not permuted). */
  const ATTENTION: [string, string, number, number][] = [
    ['q_proj', 'blk.0.attn_q.weight', HEADS * HEAD_DIM, HIDDEN],
    ['k_proj', 'blk.0.attn_k.weight', KV_HEADS * HEAD_DIM, HIDDEN],
    ['v_proj', 'blk.0.attn_v.weight', KV_HEADS * HEAD_DIM, HIDDEN],
    ['o_proj', 'blk.0.attn_output.weight', HIDDEN, HEADS * HEAD_DIM],
  ];
  const prefix = 'base_model.model.model.layers.0';

  /** The attention LoRA as PEFT saves it (TRL's gpt-oss recipe without its expert parameters). */
  function attentionLora() {
    const g = gaussian(23);
    const factors = new Map<string, Factors>();
    const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float64Array }[] = [];
    for (const [module, tensor, out, inDim] of ATTENTION) {
      const a = Float64Array.from({ length: R * inDim }, () => Math.fround(0.05 * g()));
      const b = Float64Array.from({ length: out * R }, () => Math.fround(0.05 * g()));
      factors.set(tensor, { a, b, rank: R, in: inDim, out, experts: 1 });
      tensors.push({ name: `${prefix}.self_attn.${module}.lora_A.weight`, dtype: 'F32', shape: [R, inDim], data: a });
      tensors.push({ name: `${prefix}.self_attn.${module}.lora_B.weight`, dtype: 'F32', shape: [out, R], data: b });
    }
    const config = { peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'openai/gpt-oss-20b', r: R, lora_alpha: PEFT_ALPHA, target_modules: ATTENTION.map(([m]) => m) };
    return { files: { 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) }, factors };
  }

  it.for(['cpu', 'webgpu'])('lands q/k/v/o on attn_q/k/v/output as they are (no row permutation), as float64 truth says, on %s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const lora = attentionLora();
    const prepared = await prepareMerge(memoryInputFileSet({ 'gpt-oss-tiny-MXFP4.gguf': base.bytes }, 'base'), [
      { files: memoryInputFileSet(lora.files, 'gpt-oss-attention-lora'), weight: WEIGHT },
    ]);
    let out: ReadGguf;
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend, outDtype: 'f32', dtypeMergedOnly: true });
      out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
    } finally {
      await prepared.close();
    }
    for (const [, tensor] of ATTENTION) {
      const f = lora.factors.get(tensor)!;
      const expected = truth(base.values.get(tensor)!, f, (WEIGHT * PEFT_ALPHA) / R);
      const merged = tensorValues('F32', tensorOf(out, tensor).data);
      expect(merged.length).toBe(expected.length);
      let worst = 0;
      for (let i = 0; i < merged.length; i++) worst = Math.max(worst, Math.abs(merged[i] - expected[i]) / (Math.abs(expected[i]) + 1e-3));
      expect(worst, tensor).toBeLessThan(1e-5);
    }
    const input = readGguf(base.bytes);
    const changed = ATTENTION.map(([, t]) => t);
    for (const t of input.tensors.filter((x) => !changed.includes(x.name))) {
      expect(Buffer.from(tensorOf(out, t.name).data).equals(Buffer.from(t.data)), t.name).toBe(true);
    }
  });

  /**
   * The OpenAI cookbook's gpt-oss recipe also targets expert parameters of chosen layers
   * (`target_parameters=["7.mlp.experts.gate_up_proj", "7.mlp.experts.down_proj", …]`). gpt-oss
   * stores them (E, in, out): gate_up_proj (E, hidden, 2·ffn) with gate and up in alternate columns,
   * down_proj (E, ffn, hidden). PEFT (0.19.1 on, for experts stored (E, in, out)) adds (B_e·A_e)ᵀ to
   * expert e, A (r·E, d1) grouped by expert, B (d2, r·E) interleaved. The converter transposes each
   * expert and splits gate_up by alternate columns (GptOssModel.modify_tensors).
   */
  function expertLora() {
    const g = gaussian(29);
    const gateUpA = Float64Array.from({ length: R * EXPERTS * HIDDEN }, () => Math.fround(0.05 * g()));
    const gateUpB = Float64Array.from({ length: 2 * FFN * R * EXPERTS }, () => Math.fround(0.05 * g()));
    const downA = Float64Array.from({ length: R * EXPERTS * FFN }, () => Math.fround(0.05 * g()));
    const downB = Float64Array.from({ length: HIDDEN * R * EXPERTS }, () => Math.fround(0.05 * g()));
    const files = {
      'adapter_config.json': JSON.stringify({
        peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'openai/gpt-oss-20b', r: R, lora_alpha: PEFT_ALPHA,
        target_modules: 'all-linear', target_parameters: ['0.mlp.experts.gate_up_proj', '0.mlp.experts.down_proj'], peft_version: '0.19.1',
      }),
      'adapter_model.safetensors': buildSafetensors([
        // Two parameters of one module: the inner wrapper holds the first registered (gate_up_proj).
        { name: `${prefix}.mlp.experts.base_layer.lora_A.weight`, dtype: 'F32', shape: [R * EXPERTS, HIDDEN], data: gateUpA },
        { name: `${prefix}.mlp.experts.base_layer.lora_B.weight`, dtype: 'F32', shape: [2 * FFN, R * EXPERTS], data: gateUpB },
        { name: `${prefix}.mlp.experts.lora_A.weight`, dtype: 'F32', shape: [R * EXPERTS, FFN], data: downA },
        { name: `${prefix}.mlp.experts.lora_B.weight`, dtype: 'F32', shape: [HIDDEN, R * EXPERTS], data: downB },
      ]),
    };
    /** ΔP_e[i][o] of a parameter (E, d1, d2) = (B_e·A_e)ᵀ, times the scale. */
    const delta = (a: Float64Array, b: Float64Array, d1: number, d2: number) => (e: number, i: number, o: number) => {
      let sum = 0;
      for (let k = 0; k < R; k++) sum += b[o * R * EXPERTS + k * EXPERTS + e] * a[(e * R + k) * d1 + i];
      return (WEIGHT * PEFT_ALPHA / R) * sum;
    };
    return { files, gateUp: delta(gateUpA, gateUpB, HIDDEN, 2 * FFN), down: delta(downA, downB, FFN, HIDDEN) };
  }

  /** The base tensor plus, at expert e's row j and column c, `change(e, j, c)`. */
  function plus(w: Float64Array, rows: number, cols: number, change: (e: number, j: number, c: number) => number): Float64Array {
    const out = w.slice();
    for (let e = 0; e < EXPERTS; e++) for (let j = 0; j < rows; j++) for (let c = 0; c < cols; c++) out[(e * rows + j) * cols + c] += change(e, j, c);
    return out;
  }

  async function mergeExperts(bytes: Uint8Array, backend: MergeBackend, files: Record<string, Uint8Array | string>): Promise<ReadGguf> {
    const prepared = await prepareMerge(memoryInputFileSet({ 'gpt-oss-tiny-MXFP4.gguf': bytes }, 'base'), [
      { files: memoryInputFileSet(files, 'gpt-oss-expert-lora'), weight: WEIGHT },
    ]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      const output = createBlobOutputTarget();
      // 2 KiB slabs: each expert arrives in several pieces.
      await mergeModel({ prepared, output, backend, outDtype: 'f32', dtypeMergedOnly: true, slabBytes: 2048 });
      return readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
    } finally {
      await prepared.close();
    }
  }

  function expectNear(merged: Float64Array, expected: Float64Array, tensor: string): void {
    expect(merged.length, tensor).toBe(expected.length);
    let worst = 0;
    for (let i = 0; i < merged.length; i++) worst = Math.max(worst, Math.abs(merged[i] - expected[i]) / (Math.abs(expected[i]) + 1e-3));
    expect(worst, tensor).toBeLessThan(1e-5);
  }

  it.for(['cpu', 'webgpu'])('lands expert parameters as the converter lays them out: each expert transposed, gate_up split by alternate columns into ffn_gate_exps and ffn_up_exps, on %s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const lora = expertLora();
    const out = await mergeExperts(base.bytes, backend, lora.files);
    // GGUF gate row j of expert e, column c (hidden) = W + ΔP_e[c][2j]; up: column 2j + 1; down row h, column f = W + ΔP_e[f][h].
    expectNear(tensorValues('F32', tensorOf(out, GATE).data), plus(base.values.get(GATE)!, FFN, HIDDEN, (e, j, c) => lora.gateUp(e, c, 2 * j)), GATE);
    expectNear(tensorValues('F32', tensorOf(out, UP).data), plus(base.values.get(UP)!, FFN, HIDDEN, (e, j, c) => lora.gateUp(e, c, 2 * j + 1)), UP);
    expectNear(tensorValues('F32', tensorOf(out, DOWN).data), plus(base.values.get(DOWN)!, HIDDEN, FFN, (e, h, f) => lora.down(e, f, h)), DOWN);
    const input = readGguf(base.bytes);
    for (const t of input.tensors.filter((x) => ![GATE, UP, DOWN].includes(x.name))) {
      expect(Buffer.from(tensorOf(out, t.name).data).equals(Buffer.from(t.data)), t.name).toBe(true);
    }
  });

  it('lands gate_up_proj on a --fuse-gate-up-exps GGUF: each expert\'s gate rows (even columns), then its up rows (odd)', async () => {
    const fused = gptOssBase(undefined, true);
    const lora = expertLora();
    const out = await mergeExperts(fused.bytes, backends.cpu!, lora.files);
    const change = (e: number, j: number, c: number) => (j < FFN ? lora.gateUp(e, c, 2 * j) : lora.gateUp(e, c, 2 * (j - FFN) + 1));
    expectNear(tensorValues('F32', tensorOf(out, GATE_UP).data), plus(fused.values.get(GATE_UP)!, 2 * FFN, HIDDEN, change), GATE_UP);
    expectNear(tensorValues('F32', tensorOf(out, DOWN).data), plus(fused.values.get(DOWN)!, HIDDEN, FFN, (e, h, f) => lora.down(e, f, h)), DOWN);
  });
});
