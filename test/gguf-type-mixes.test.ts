/**
 * `--dtype q4_k_m` and the other K-quant mixes: llama-quantize's choice of type per tensor
 * (llama-quant.cpp, llama_tensor_get_type_impl, without an importance matrix), checked against
 * tables written out here for real layer counts and tensor names, then end to end: a BF16 llama
 * GGUF merged with a llama.cpp LoRA and written as Q4_K_M, each tensor in the type the table gives
 * and holding the reference quantizer's blocks of the merged (or stored) values, labelled
 * general.file_type 15 as llama-quantize labels it.
 */
import { describe, expect, it } from 'vitest';
import { mixContext, typeMix, useMoreBits } from '../src/formats/gguf/type-mixes.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { bf16LlamaGguf } from './helpers/gguf-models.js';
import { seededRandom } from './helpers/fixtures.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });
const mix = (name: string) => typeMix(name)!;

/** A llama-style tensor list of `layers` blocks (shapes slowest first, as the container gives them). */
function llamaTensors(layers: number, opts: { hidden?: number; kv?: number; ffn?: number; vocab?: number; tied?: boolean; experts?: number } = {}) {
  const { hidden = 4096, kv = 1024, ffn = 14336, vocab = 128256, tied = false, experts = 0 } = opts;
  const tensors: { name: string; shape: number[] }[] = [{ name: 'token_embd.weight', shape: [vocab, hidden] }];
  for (let i = 0; i < layers; i++) {
    tensors.push(
      { name: `blk.${i}.attn_norm.weight`, shape: [hidden] },
      { name: `blk.${i}.attn_q.weight`, shape: [hidden, hidden] },
      { name: `blk.${i}.attn_k.weight`, shape: [kv, hidden] },
      { name: `blk.${i}.attn_v.weight`, shape: [kv, hidden] },
      { name: `blk.${i}.attn_output.weight`, shape: [hidden, hidden] },
      { name: `blk.${i}.ffn_norm.weight`, shape: [hidden] },
    );
    if (experts) {
      tensors.push(
        { name: `blk.${i}.ffn_gate_inp.weight`, shape: [experts, hidden] },
        { name: `blk.${i}.ffn_gate_exps.weight`, shape: [experts, ffn, hidden] },
        { name: `blk.${i}.ffn_up_exps.weight`, shape: [experts, ffn, hidden] },
        { name: `blk.${i}.ffn_down_exps.weight`, shape: [experts, hidden, ffn] },
      );
    } else {
      tensors.push(
        { name: `blk.${i}.ffn_gate.weight`, shape: [ffn, hidden] },
        { name: `blk.${i}.ffn_up.weight`, shape: [ffn, hidden] },
        { name: `blk.${i}.ffn_down.weight`, shape: [hidden, ffn] },
      );
    }
  }
  tensors.push({ name: 'output_norm.weight', shape: [hidden] });
  if (!tied) tensors.push({ name: 'output.weight', shape: [vocab, hidden] });
  return tensors;
}

function context(arch: string, meta: Record<string, unknown>, tensors: { name: string; shape: number[] }[]) {
  const all: Record<string, unknown> = { 'general.architecture': arch };
  for (const [k, v] of Object.entries(meta)) all[`${arch}.${k}`] = v;
  return mixContext((key) => all[key], tensors);
}

/** Types by tensor name for a whole model under `mixName`. */
function typesOf(mixName: string, arch: string, meta: Record<string, unknown>, tensors: { name: string; shape: number[] }[]) {
  const model = context(arch, meta, tensors);
  return new Map(tensors.filter((t) => t.shape.length > 1 && !t.name.includes('gate_inp')).map((t) => [t.name, mix(mixName).typeOf(t.name, t.shape, model)]));
}

/** Layers whose type is `type` among tensors named blk.N.<suffix>. */
function layersWith(types: Map<string, string>, suffix: string, type: string): number[] {
  return [...types].filter(([n, t]) => n.endsWith(suffix) && t === type).map(([n]) => Number(/^blk\.(\d+)\./.exec(n)![1])).sort((a, b) => a - b);
}

describe('llama-quantize\'s K-quant mixes, tensor by tensor', () => {
  // Llama 3 8B: 32 blocks, 32 heads over 8 key-value heads.
  const llama8b = { block_count: 32, 'attention.head_count': 32, 'attention.head_count_kv': 8 };
  // use_more_bits for 32 layers: the first and last eighth (0–3, 28–31) and every third layer between (6, 9, …, 27).
  const MORE_BITS_32 = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];

  it('use_more_bits picks the first and last eighth of the layers and every third between', () => {
    expect(Array.from({ length: 32 }, (_, i) => i).filter((i) => useMoreBits(i, 32))).toEqual(MORE_BITS_32);
    expect(Array.from({ length: 8 }, (_, i) => i).filter((i) => useMoreBits(i, 8))).toEqual([0, 3, 6, 7]);
  });

  it('Q4_K_M: attn_v and ffn_down Q6_K on the "more bits" layers, Q4_K elsewhere; the head Q6_K, the token embedding Q4_K', () => {
    const types = typesOf('q4_k_m', 'llama', llama8b, llamaTensors(32));
    expect(layersWith(types, '.attn_v.weight', 'Q6_K')).toEqual(MORE_BITS_32);
    expect(layersWith(types, '.ffn_down.weight', 'Q6_K')).toEqual(MORE_BITS_32);
    expect(layersWith(types, '.attn_v.weight', 'Q4_K')).toHaveLength(16);
    expect(types.get('output.weight')).toBe('Q6_K');
    expect(types.get('token_embd.weight')).toBe('Q4_K');
    for (const part of ['attn_q', 'attn_k', 'attn_output', 'ffn_gate', 'ffn_up']) expect(new Set([...types].filter(([n]) => n.includes(part)).map(([, t]) => t)), part).toEqual(new Set(['Q4_K']));
  });

  it('counts layers in the loader\'s order (block number, then name), not the file\'s', () => {
    const tensors = llamaTensors(32);
    const shuffled = [...tensors].sort((a, b) => (a.name.length % 5) - (b.name.length % 5) || b.name.localeCompare(a.name));
    expect(typesOf('q4_k_m', 'llama', llama8b, shuffled)).toEqual(typesOf('q4_k_m', 'llama', llama8b, tensors));
  });

  it('Q4_K_S, Q3_K_M, Q3_K_L, Q5_K_M and the S mixes', () => {
    const tensors = llamaTensors(32);
    const s = typesOf('q4_k_s', 'llama', llama8b, tensors);
    expect(layersWith(s, '.attn_v.weight', 'Q5_K')).toEqual([0, 1, 2, 3]);
    expect(layersWith(s, '.ffn_down.weight', 'Q5_K')).toEqual([0, 1, 2, 3]); // the first eighth
    expect(s.get('blk.4.attn_v.weight')).toBe('Q4_K');
    const m3 = typesOf('q3_k_m', 'llama', llama8b, tensors);
    expect(layersWith(m3, '.attn_v.weight', 'Q5_K')).toEqual([0, 1]);
    expect(layersWith(m3, '.attn_v.weight', 'Q4_K')).toHaveLength(30);
    expect(layersWith(m3, '.ffn_down.weight', 'Q5_K')).toEqual([0, 1]); // the first sixteenth
    expect(layersWith(m3, '.ffn_down.weight', 'Q4_K')).toHaveLength(30);
    expect(m3.get('blk.7.attn_output.weight')).toBe('Q4_K');
    expect(m3.get('blk.7.attn_q.weight')).toBe('Q3_K');
    const l3 = typesOf('q3_k_l', 'llama', llama8b, tensors);
    for (const part of ['attn_v', 'ffn_down', 'attn_output']) expect(l3.get(`blk.9.${part}.weight`), part).toBe('Q5_K');
    expect(l3.get('blk.9.ffn_up.weight')).toBe('Q3_K');
    const m5 = typesOf('q5_k_m', 'llama', llama8b, tensors);
    expect(layersWith(m5, '.attn_v.weight', 'Q6_K')).toEqual(MORE_BITS_32);
    expect(m5.get('blk.4.attn_v.weight')).toBe('Q5_K');
    expect(new Set(typesOf('q5_k_s', 'llama', llama8b, tensors).values())).toEqual(new Set(['Q5_K', 'Q6_K']));
    const s3 = typesOf('q3_k_s', 'llama', llama8b, tensors);
    expect(s3.get('blk.0.attn_v.weight')).toBe('Q3_K');
    expect(s3.get('output.weight')).toBe('Q6_K');
  });

  it('a 70B llama (80 blocks, fewer key-value heads) gets Q5_K for the attn_v that would be Q4_K; a 65B (as many) does not', () => {
    const tensors = llamaTensors(80, { hidden: 8192 });
    const gqa = typesOf('q4_k_m', 'llama', { block_count: 80, 'attention.head_count': 64, 'attention.head_count_kv': 8 }, tensors);
    expect(gqa.get('blk.0.attn_v.weight')).toBe('Q6_K');
    expect(gqa.get('blk.11.attn_v.weight')).toBe('Q5_K'); // 80/8 = 10 layers each end; (11 − 10) % 3 ≠ 2
    expect(gqa.get('blk.12.attn_v.weight')).toBe('Q6_K');
    const mha = typesOf('q4_k_m', 'llama', { block_count: 80, 'attention.head_count': 64, 'attention.head_count_kv': 64 }, tensors);
    expect(mha.get('blk.11.attn_v.weight')).toBe('Q4_K');
    // Qwen2.5 72B: qwen2 with 80 blocks is 70B to llama.cpp too.
    expect(typesOf('q3_k_s', 'qwen2', { block_count: 80, 'attention.head_count': 64, 'attention.head_count_kv': 8 }, tensors).get('blk.5.attn_v.weight')).toBe('Q5_K');
    // An architecture llama.cpp does not size as 70B keeps Q4_K.
    expect(typesOf('q4_k_m', 'gemma2', { block_count: 80, 'attention.head_count': 64, 'attention.head_count_kv': 8 }, tensors).get('blk.11.attn_v.weight')).toBe('Q4_K');
  });

  it('LLM_TYPE_70B as llama.cpp sizes it: by architecture and block count, a llama with 0 key-value heads included', () => {
    // llama.cpp src/llama-model.cpp, llama_model::load_hparams: n_head_kv_arr starts as n_head_arr
    // and head_count_kv, where present, replaces it (a 0 stays 0); LLM_ARCH_LLAMA (not 8 experts),
    // case 80: n_head() == n_head_kv() ? LLM_TYPE_65B : LLM_TYPE_70B; LLM_ARCH_DECI, LLM_ARCH_QWEN2
    // and LLM_ARCH_OLMO, case 80: LLM_TYPE_70B;
    // LLM_ARCH_XVERSE, case 80: LLM_TYPE_65B; src/models/jais2.cpp, load_arch_hparams, case 68:
    // LLM_TYPE_70B. src/llama-quant.cpp, llama_tensor_get_type_impl: Q4_K_S gives attn_v Q5_K for
    // the first four and Q4_K after, which LLM_TYPE_70B raises to Q5_K; block 10 shows the rule.
    const small = { hidden: 256, kv: 32, ffn: 256, vocab: 256 };
    const at = (arch: string, blocks: number, meta: Record<string, unknown>) =>
      typesOf('q4_k_s', arch, { block_count: blocks, 'attention.head_count': 8, ...meta }, llamaTensors(blocks, small)).get('blk.10.attn_v.weight');
    const grouped = { 'attention.head_count_kv': 1 };
    expect(at('llama', 80, { 'attention.head_count_kv': 0 })).toBe('Q5_K');
    expect(at('llama', 80, {})).toBe('Q4_K'); // no head_count_kv: as many as heads, 65B
    expect(at('llama', 80, { 'attention.head_count_kv': 8 })).toBe('Q4_K');
    expect(at('llama', 80, grouped)).toBe('Q5_K');
    expect(at('llama', 79, grouped)).toBe('Q4_K');
    for (const arch of ['qwen2', 'deci', 'olmo']) {
      expect(at(arch, 80, {}), arch).toBe('Q5_K');
      expect(at(arch, 79, grouped), `${arch}, 79 blocks`).toBe('Q4_K');
    }
    // src/models/qwen2vl.cpp, load_arch_hparams: no size, so Qwen2-VL-72B's 80 blocks are not 70B.
    expect(at('qwen2vl', 80, grouped)).toBe('Q4_K');
    expect(at('jais2', 68, {})).toBe('Q5_K');
    expect(at('jais2', 80, grouped)).toBe('Q4_K');
    expect(at('xverse', 80, grouped)).toBe('Q4_K');
  });

  it('an 8-expert model (Mixtral): attn_v and attn_k Q8_0, attn_output Q5_K, ffn_down_exps by the block number in its name', () => {
    const tensors = llamaTensors(32, { ffn: 14336, experts: 8 });
    const types = typesOf('q4_k_m', 'llama', { ...llama8b, expert_count: 8 }, tensors);
    expect(types.get('blk.5.attn_v.weight')).toBe('Q8_0');
    expect(types.get('blk.5.attn_k.weight')).toBe('Q8_0');
    expect(types.get('blk.5.attn_output.weight')).toBe('Q5_K');
    expect(layersWith(types, '.ffn_down_exps.weight', 'Q6_K')).toEqual(MORE_BITS_32);
    expect(types.get('blk.5.ffn_gate_exps.weight')).toBe('Q4_K');
    // Q5_K_M leaves attn_output alone.
    expect(typesOf('q5_k_m', 'llama', { ...llama8b, expert_count: 8 }, tensors).get('blk.5.attn_output.weight')).toBe('Q5_K');
  });

  it('the head: Q6_K, Q8_0 for Falcon or rows that are not whole 256-value blocks; a model without output.weight has its token embedding as the head', () => {
    expect(typesOf('q4_k_m', 'llama', llama8b, llamaTensors(2, { tied: true })).get('token_embd.weight')).toBe('Q6_K');
    expect(typesOf('q4_k_m', 'qwen2', llama8b, llamaTensors(2, { hidden: 2880, kv: 512, ffn: 2816 })).get('output.weight')).toBe('Q8_0');
    expect(typesOf('q4_k_m', 'falcon', llama8b, llamaTensors(2)).get('output.weight')).toBe('Q8_0');
  });

  it('phi3\'s fused attn_qkv counts as attn_v', () => {
    const tensors = llamaTensors(32).map((t) => ({ ...t, name: t.name.replace('attn_v.weight', 'attn_qkv.weight') })).filter((t) => !/attn_[qk]\.weight/.test(t.name));
    const types = typesOf('q4_k_m', 'phi3', { block_count: 32, 'attention.head_count': 32, 'attention.head_count_kv': 32 }, tensors);
    expect(layersWith(types, '.attn_qkv.weight', 'Q6_K')).toEqual(MORE_BITS_32);
  });
});

describe("the loader's tensor order a mix counts attn_v and ffn_down in", () => {
  it("reads each name's block number once, not in each comparison of the sort: a header of 2000 blocks (18 003 tensors), given shuffled", () => {
    const tensors = llamaTensors(2000, { hidden: 64, kv: 16, ffn: 128, vocab: 256 });
    const shuffled = [...tensors];
    const rand = seededRandom(5);
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    // The block number is sscanf(name, "blk.%d.") in llama.cpp, a regular expression here: counted.
    const exec = RegExp.prototype.exec;
    let execs = 0;
    RegExp.prototype.exec = function (this: RegExp, text: string) {
      execs++;
      return exec.call(this, text);
    };
    let model: ReturnType<typeof context>;
    try {
      model = context('llama', { block_count: 2000, 'attention.head_count': 4, 'attention.head_count_kv': 1 }, shuffled);
    } finally {
      RegExp.prototype.exec = exec;
    }
    // Read in the comparer, it was two for each of the sort's n·log n comparisons (about 470 000).
    expect(execs).toBeLessThanOrEqual(tensors.length);
    // In block order, numerically (blk.10 after blk.9), whatever the order of the header.
    for (const b of [0, 2, 9, 10, 100, 1999]) {
      expect(model.attentionV.index.get(`blk.${b}.attn_v.weight`)).toBe(b);
      expect(model.ffnDown.layer.get(`blk.${b}.ffn_down.weight`)).toBe(b);
    }
  });
});

describe('--dtype q4_k_m end to end', () => {
  const LAYERS = 8, HIDDEN = 256, HEADS = 4, FFN = 256, VOCAB = 64;
  // use_more_bits for 8 layers: 0 (first eighth), 7 (last), 3 and 6 ((i − 1) % 3 = 2).
  const MORE_BITS_8 = [0, 3, 6, 7];
  const rand = seededRandom(41);
  const g = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());

  const { specs, values: baseValues, bytes: baseBytes } = bf16LlamaGguf({ layers: LAYERS, hidden: HIDDEN, heads: HEADS, kvHeads: 2, ffn: FFN, vocab: VOCAB }, g);
  // A llama.cpp LoRA (convert_lora_to_gguf's names and layout) on three tensors of three layers.
  const MERGED = ['blk.2.attn_q.weight', 'blk.3.attn_v.weight', 'blk.5.ffn_down.weight'];
  const loraTensors = MERGED.flatMap((name) => {
    const spec = specs.find((s) => s.name === name)!;
    const [inDim, out] = spec.ne;
    const r = 4;
    const stem = name.replace('.weight', '');
    return [
      { name: `${stem}.weight.lora_a`, type: 'F32', ne: [inDim, r], data: tensorData('F32', Float64Array.from({ length: r * inDim }, () => 0.05 * g())) },
      { name: `${stem}.weight.lora_b`, type: 'F32', ne: [r, out], data: tensorData('F32', Float64Array.from({ length: out * r }, () => 0.05 * g())) },
    ];
  });
  const loraBytes = buildGguf({
    metadata: [
      ['general.architecture', { type: 'string', value: 'llama' }], ['general.type', { type: 'string', value: 'adapter' }],
      ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 8 }],
    ],
    tensors: loraTensors,
  });

  /** The type llama-quantize's Q4_K_M gives each tensor of this 8-layer model, written out. */
  function expectedType(name: string): string {
    if (name.endsWith('norm.weight')) return 'F32';
    if (name === 'output.weight') return 'Q6_K';
    const layer = /^blk\.(\d+)\./.exec(name);
    if (layer && /attn_v|ffn_down/.test(name)) return MORE_BITS_8.includes(Number(layer[1])) ? 'Q6_K' : 'Q4_K';
    return 'Q4_K';
  }

  async function run(outDtype: string, dtypeMergedOnly = false) {
    const warnings: string[] = [];
    const { bytes } = await mergeFileInMemory({
      backend: backends.cpu!, base: { 'tiny-llama-BF16.gguf': baseBytes },
      adapters: [{ files: { 'tiny-lora.gguf': loraBytes }, name: 'tiny-lora', weight: 0.9 }], outDtype, dtypeMergedOnly,
      onWarning: (w) => warnings.push(w),
    });
    return { out: readGguf(bytes), warnings };
  }

  it('writes every tensor in the type llama-quantize\'s Q4_K_M gives it, as the reference quantizer\'s blocks of the merged or stored values, labelled file type 15', async () => {
    const { out, warnings } = await run('q4_k_m');
    const { out: f32 } = await run('f32', true);
    for (const spec of specs) {
      const t = out.tensors.find((x) => x.name === spec.name)!;
      const type = expectedType(spec.name);
      expect(typeName(t.typeId), spec.name).toBe(type);
      if (type === 'F32') continue;
      const merged = MERGED.includes(spec.name);
      const values = merged ? tensorValues('F32', f32.tensors.find((x) => x.name === spec.name)!.data) : baseValues.get(spec.name)!;
      if (merged) expect(values.some((v, i) => v !== baseValues.get(spec.name)![i]), spec.name).toBe(true);
      expect(Buffer.from(t.data).equals(Buffer.from(tensorData(type, values))), spec.name).toBe(true);
    }
    expect(out.metadata.get('general.file_type')!.value).toBe(15); // LLAMA_FTYPE_MOSTLY_Q4_K_M
    expect(warnings.join('\n')).not.toMatch(/is written as/);
  });

  it('labels a Q4_K_S file 14, though Q4_K holds most of its weights as in Q4_K_M', async () => {
    const { out } = await run('q4_k_s');
    const typeOf = (name: string) => typeName(out.tensors.find((x) => x.name === name)!.typeId);
    expect([0, 1, 2, 3, 4].map((i) => typeOf(`blk.${i}.attn_v.weight`))).toEqual(['Q5_K', 'Q5_K', 'Q5_K', 'Q5_K', 'Q4_K']);
    expect([0, 1].map((i) => typeOf(`blk.${i}.ffn_down.weight`))).toEqual(['Q5_K', 'Q4_K']); // the first eighth of 8
    expect(out.metadata.get('general.file_type')!.value).toBe(14); // LLAMA_FTYPE_MOSTLY_Q4_K_S
  });

  it('labels the file by its dominant type when only the merged tensors were converted', async () => {
    const { out } = await run('q4_k_m', true);
    expect(typeName(out.tensors.find((x) => x.name === 'blk.3.attn_v.weight')!.typeId)).toBe('Q6_K');
    expect(typeName(out.tensors.find((x) => x.name === 'blk.2.attn_q.weight')!.typeId)).toBe('Q4_K');
    expect(typeName(out.tensors.find((x) => x.name === 'blk.4.attn_q.weight')!.typeId)).toBe('BF16');
    expect(out.metadata.get('general.file_type')!.value).toBe(32); // still mostly BF16
  });
});
