/**
 * A PEFT LoRA on the fused expert parameters of a Qwen MoE (`target_parameters` on
 * `mlp.experts.gate_up_proj` and `mlp.experts.down_proj`), merged into the GGUF llama.cpp's
 * converter makes of that model. transformers 5's Qwen3-MoE stores the experts (E, out, in):
 * gate_up_proj (E, 2·ffn, hidden), split by `chunk(2)` into gate (first half) and up (second
 * half), down_proj (E, hidden, ffn); PEFT (0.19.1 on, for experts stored (E, out, in)) adds
 * B_e·A_e to expert e, A (r·E, in) grouped by expert, B (out, r·E) interleaved. Qwen3-VL-MoE stores
 * them (E, in, out) (gate_up (E, hidden, 2·ffn), still halves), and PEFT adds (B_e·A_e)ᵀ with the
 * same factor shapes: the same update of each expert as a map from inputs to outputs. The GGUF holds
 * each expert (out, in): gate in ffn_gate_exps, up in ffn_up_exps, down in ffn_down_exps, experts
 * stacked as rows. GraniteMoe (Granite 3.x MoE, Granite 4.0 H) holds its experts as the `weight`
 * of two modules, `block_sparse_moe.input_linear` (E, 2·ffn, hidden: gate, then up) and
 * `output_linear` (E, hidden, ffn), which GraniteMoeModel.modify_tensors splits and stacks the same
 * way. Llama 4's `feed_forward.experts` are stored (E, in, out), halves, as Qwen3-VL-MoE's.
 * transformers 5 fuses OLMoE's, ERNIE 4.5 MoE's, DeepSeek's (V2/V3 and V4), Qwen3-Next's, Qwen3.5 MoE's and LFM2-MoE's (`feed_forward.experts`,
 * w1 then w3) as Qwen's. Gemma 4 holds them so (E, out, in), halves, under the decoder layer, and
 * its converter writes gate_up_proj whole to ffn_gate_up_exps. Mistral Small 4 (`mistral4`) holds them
 * as DeepSeek-V3's, and Mistral4Model (merge_expert off) passes gate_up_proj on whole to
 * ffn_gate_up_exps as well. transformers 5's MiniMax-M2 (`minimax-m2`) fuses them as Mixtral's, and
 * its q_norm and k_norm span all heads; Hunyuan-A13B's (`hunyuan-moe`) as Qwen's, as are
 * transformers 5's Phimoe's (`phimoe`, w1 then w3), dots.llm1's (`dots1`), K-EXAONE's (`exaone-moe`,
 * as DeepSeek-V3's), Cohere North's (`cohere2moe`, as Mixtral's), Arcee Trinity's (`afmoe`, as Qwen's) and Jamba's (`jamba`, under `feed_forward`). Checked on the CPU and on WebGPU against float64 truth written here.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorValues, type MetaValue } from './helpers/gguf-builder.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });

const HIDDEN = 64, FFN = 24, EXPERTS = 6, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 16, VOCAB = 32, R = 3, ALPHA = 6, WEIGHT = 0.8;
const GATE = 'blk.0.ffn_gate_exps.weight', UP = 'blk.0.ffn_up_exps.weight', DOWN = 'blk.0.ffn_down_exps.weight';
/** Gemma 4's gate_up_proj, written as it is: each expert's gate rows, then its up rows. */
const GATE_UP = 'blk.0.ffn_gate_up_exps.weight';
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

/** DeepSeek's MLA attention tensors (DeepseekV2Model): 4 heads, q_lora_rank 24, kv_lora_rank 16, qk_nope 8, qk_rope 4, v 8. */
const MLA_ATTENTION = [
  { name: 'blk.0.attn_norm.weight', ne: [HIDDEN], type: 'F32' },
  { name: 'blk.0.attn_q_a.weight', ne: [HIDDEN, 24], type: 'BF16' }, { name: 'blk.0.attn_q_a_norm.weight', ne: [24], type: 'F32' },
  { name: 'blk.0.attn_q_b.weight', ne: [24, HEADS * 12], type: 'BF16' },
  { name: 'blk.0.attn_kv_a_mqa.weight', ne: [HIDDEN, 16 + 4], type: 'BF16' }, { name: 'blk.0.attn_kv_a_norm.weight', ne: [16], type: 'F32' },
  { name: 'blk.0.attn_k_b.weight', ne: [8, 16, HEADS], type: 'BF16' }, { name: 'blk.0.attn_v_b.weight', ne: [16, 8, HEADS], type: 'BF16' },
  { name: 'blk.0.attn_output.weight', ne: [HEADS * 8, HIDDEN], type: 'BF16' },
];

/**
 * DeepSeek-V4's attention tensors (DeepseekV4Model): 4 heads of 16 (one KV head), q_lora_rank 24,
 * 2 output groups of o_lora_rank 8, two hyper-connection streams; its gate and up experts are Q8_0
 * (the converter requires a compact type for the experts).
 */
const DEEPSEEK4_ATTENTION = [
  { name: 'blk.0.hc_attn_fn.weight', ne: [2 * HIDDEN, 8], type: 'F32' }, { name: 'blk.0.attn_norm.weight', ne: [HIDDEN], type: 'F32' },
  { name: 'blk.0.attn_q_a.weight', ne: [HIDDEN, 24], type: 'BF16' }, { name: 'blk.0.attn_q_a_norm.weight', ne: [24], type: 'F32' },
  { name: 'blk.0.attn_q_b.weight', ne: [24, HEADS * 16], type: 'BF16' },
  { name: 'blk.0.attn_kv.weight', ne: [HIDDEN, 16], type: 'BF16' }, { name: 'blk.0.attn_kv_a_norm.weight', ne: [16], type: 'F32' },
  { name: 'blk.0.attn_sinks.weight', ne: [HEADS], type: 'F32' },
  { name: 'blk.0.attn_output_a.weight', ne: [HEADS * 16 / 2, 2 * 8], type: 'BF16' }, { name: 'blk.0.attn_output_b.weight', ne: [2 * 8, HIDDEN], type: 'BF16' },
];

/**
 * Gemma 4's MoE beside the block's MLP (Gemma4Model): the router's input scale and per-expert
 * scale as tensors of their own, gate_up_proj written whole.
 */
const GEMMA4_MOE = [
  { name: 'blk.0.ffn_gate.weight', ne: [HIDDEN, 4 * FFN], type: 'BF16' }, { name: 'blk.0.ffn_up.weight', ne: [HIDDEN, 4 * FFN], type: 'BF16' },
  { name: 'blk.0.ffn_down.weight', ne: [4 * FFN, HIDDEN], type: 'BF16' },
  { name: 'blk.0.ffn_gate_inp.scale', ne: [HIDDEN], type: 'F32' }, { name: 'blk.0.ffn_down_exps.scale', ne: [EXPERTS], type: 'F32' },
  { name: GATE_UP, ne: [HIDDEN, 2 * FFN, EXPERTS], type: 'BF16' },
];

/**
 * One Qwen3-MoE (or Qwen3-VL-MoE language model, Granite MoE, OLMoE, ERNIE 4.5 MoE, LFM2-MoE,
 * DeepSeek) block as convert_hf_to_gguf names it, BF16 as it writes it; Granite, Llama 4 and ERNIE
 * have no q/k norm weights, DeepSeek has MLA attention.
 */
function qwen3MoeBase(arch: string) {
  const all = [
    { name: 'token_embd.weight', ne: [HIDDEN, VOCAB], type: 'BF16' },
    { name: 'blk.0.attn_norm.weight', ne: [HIDDEN], type: 'F32' },
    { name: 'blk.0.attn_q.weight', ne: [HIDDEN, HEADS * HEAD_DIM], type: 'BF16' },
    { name: 'blk.0.attn_q_norm.weight', ne: [HEAD_DIM], type: 'F32' },
    { name: 'blk.0.attn_k.weight', ne: [HIDDEN, KV_HEADS * HEAD_DIM], type: 'BF16' },
    { name: 'blk.0.attn_k_norm.weight', ne: [HEAD_DIM], type: 'F32' },
    { name: 'blk.0.attn_v.weight', ne: [HIDDEN, KV_HEADS * HEAD_DIM], type: 'BF16' },
    { name: 'blk.0.attn_output.weight', ne: [HEADS * HEAD_DIM, HIDDEN], type: 'BF16' },
    { name: 'blk.0.ffn_norm.weight', ne: [HIDDEN], type: 'F32' },
    { name: 'blk.0.ffn_gate_inp.weight', ne: [HIDDEN, EXPERTS], type: 'F32' },
    { name: GATE, ne: [HIDDEN, FFN, EXPERTS], type: 'BF16' },
    { name: UP, ne: [HIDDEN, FFN, EXPERTS], type: 'BF16' },
    { name: DOWN, ne: [FFN, HIDDEN, EXPERTS], type: 'BF16' },
    { name: 'output_norm.weight', ne: [HIDDEN], type: 'F32' },
    { name: 'output.weight', ne: [HIDDEN, VOCAB], type: 'BF16' },
  ];
  const specs = arch.startsWith('granite') || ['llama4', 'ernie4_5-moe', 'phimoe', 'jamba'].includes(arch) ? all.filter((t) => !/attn_[qk]_norm/.test(t.name))
    : arch === 'deepseek2' ? [...all.slice(0, 1), ...MLA_ATTENTION, ...all.filter((t) => !/attn_|token_embd/.test(t.name))]
    : arch === 'mistral4' ? [...all.slice(0, 1), ...MLA_ATTENTION, ...all.filter((t) => !/attn_|token_embd/.test(t.name) && t.name !== GATE && t.name !== UP),
      { name: GATE_UP, ne: [HIDDEN, 2 * FFN, EXPERTS], type: 'BF16' }]
    : arch === 'deepseek4' ? [...all.slice(0, 1), ...DEEPSEEK4_ATTENTION, ...all.filter((t) => !/attn_|token_embd/.test(t.name))
      // ffn_down_exps stays BF16 here: its rows (FFN values) do not fill Q8_0 blocks.
      .map((t) => (/ffn_(gate|up)_exps\./.test(t.name) ? { ...t, type: 'Q8_0' } : t))]
    : arch === 'minimax-m2' ? all.map((t) => (t.name === 'blk.0.attn_q_norm.weight' ? { ...t, ne: [HEADS * HEAD_DIM] }
      : t.name === 'blk.0.attn_k_norm.weight' ? { ...t, ne: [KV_HEADS * HEAD_DIM] } : t))
    : arch === 'gemma4' ? [...all.filter((t) => t.name !== GATE && t.name !== UP), ...GEMMA4_MOE]
    // Qwen3-Next's and Qwen3.5's full-attention q holds each head's query and output gate.
    : arch === 'qwen3next' || arch === 'qwen35moe' ? all.map((t) => (t.name === 'blk.0.attn_q.weight' ? { ...t, ne: [HIDDEN, 2 * HEADS * HEAD_DIM] } : t)) : all;
  const { tensors, values } = randomTensors(specs, gaussian(5));
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: `${arch} tiny` }],
    [`${arch}.block_count`, u32(1)], [`${arch}.context_length`, u32(4096)], [`${arch}.embedding_length`, u32(HIDDEN)],
    [`${arch}.feed_forward_length`, u32(4 * FFN)], [`${arch}.expert_feed_forward_length`, u32(FFN)],
    [`${arch}.attention.head_count`, u32(HEADS)], [`${arch}.attention.head_count_kv`, u32(KV_HEADS)],
    [`${arch}.attention.key_length`, u32(HEAD_DIM)], [`${arch}.attention.value_length`, u32(HEAD_DIM)],
    [`${arch}.expert_count`, u32(EXPERTS)], [`${arch}.expert_used_count`, u32(2)],
    [`${arch}.rope.freq_base`, { type: 'f32', value: 1e6 }], [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-6 }],
    ['general.file_type', u32(32)], // LLAMA_FTYPE_MOSTLY_BF16
  ];
  return { bytes: buildGguf({ metadata, tensors }), values };
}

/**
 * Where PEFT saves the two parameters' factors: Qwen's are two parameters of one module (the inner
 * wrapper holds the first registered, gate_up_proj); GraniteMoe's are the `weight` of two modules.
 */
interface ExpertNames { gateUp: string; down: string; targetParameters: readonly string[] }
const qwenNames = (prefix: string): ExpertNames => ({
  gateUp: `${prefix}.base_layer`, down: prefix, targetParameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj'],
});

/** gate_up_proj and down_proj LoRAs as PEFT saves them, and each expert's update (out, in) = s·B_e·A_e. */
function expertLora(names: ExpertNames, baseModel: string) {
  const g = gaussian(17);
  const factor = (n: number) => Float64Array.from({ length: n }, () => Math.fround(0.05 * g()));
  const gateUpA = factor(R * EXPERTS * HIDDEN), gateUpB = factor(2 * FFN * R * EXPERTS);
  const downA = factor(R * EXPERTS * FFN), downB = factor(HIDDEN * R * EXPERTS);
  const files = {
    'adapter_config.json': JSON.stringify({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: baseModel, r: R, lora_alpha: ALPHA,
      target_modules: [], target_parameters: names.targetParameters, peft_version: '0.19.1',
    }),
    'adapter_model.safetensors': buildSafetensors([
      { name: `${names.gateUp}.lora_A.weight`, dtype: 'F32', shape: [R * EXPERTS, HIDDEN], data: gateUpA },
      { name: `${names.gateUp}.lora_B.weight`, dtype: 'F32', shape: [2 * FFN, R * EXPERTS], data: gateUpB },
      { name: `${names.down}.lora_A.weight`, dtype: 'F32', shape: [R * EXPERTS, FFN], data: downA },
      { name: `${names.down}.lora_B.weight`, dtype: 'F32', shape: [HIDDEN, R * EXPERTS], data: downB },
    ]),
  };
  const delta = (a: Float64Array, b: Float64Array, inDim: number) => (e: number, o: number, i: number) => {
    let sum = 0;
    for (let k = 0; k < R; k++) sum += b[o * R * EXPERTS + k * EXPERTS + e] * a[(e * R + k) * inDim + i];
    return (WEIGHT * ALPHA / R) * sum;
  };
  return { files, gateUp: delta(gateUpA, gateUpB, HIDDEN), down: delta(downA, downB, FFN) };
}

/** The base tensor plus, at expert e's row j and column c, `change(e, j, c)`. */
function plus(w: Float64Array, rows: number, cols: number, change: (e: number, j: number, c: number) => number): Float64Array {
  const out = w.slice();
  for (let e = 0; e < EXPERTS; e++) for (let j = 0; j < rows; j++) for (let c = 0; c < cols; c++) out[(e * rows + j) * cols + c] += change(e, j, c);
  return out;
}

describe.each([
  ['qwen3moe', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'Qwen/Qwen3-30B-A3B'],
  ['qwen3vlmoe', qwenNames('base_model.model.model.language_model.layers.0.mlp.experts'), 'Qwen/Qwen3-VL-30B-A3B-Instruct'],
  // GraniteMoe's experts (GraniteMoeParallelExperts): input_linear.weight (E, 2·ffn, hidden), gate
  // then up, output_linear.weight (E, hidden, ffn); GraniteMoeModel splits input_linear in halves.
  ['granitemoe', {
    gateUp: 'base_model.model.model.layers.0.block_sparse_moe.input_linear', down: 'base_model.model.model.layers.0.block_sparse_moe.output_linear',
    targetParameters: ['block_sparse_moe.input_linear.weight', 'block_sparse_moe.output_linear.weight'],
  }, 'ibm-granite/granite-3.1-3b-a800m-instruct'],
  // Llama 4: feed_forward.experts, (E, in, out) with gate and up as halves, as Qwen3-VL-MoE.
  ['llama4', {
    gateUp: 'base_model.model.language_model.model.layers.0.feed_forward.experts.base_layer',
    down: 'base_model.model.language_model.model.layers.0.feed_forward.experts',
    targetParameters: ['feed_forward.experts.gate_up_proj', 'feed_forward.experts.down_proj'],
  }, 'meta-llama/Llama-4-Scout-17B-16E-Instruct'],
  // transformers 5 fuses these experts as Qwen's (conversion_mapping.py: MergeModulelist, then
  // Concatenate gate and up; LFM2-MoE's w1 and w3).
  ['olmoe', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'allenai/OLMoE-1B-7B-0125-Instruct'],
  ['ernie4_5-moe', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'baidu/ERNIE-4.5-21B-A3B-PT'],
  ['deepseek2', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'deepseek-ai/DeepSeek-V3'],
  ['minimax-m2', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'MiniMaxAI/MiniMax-M2.5'],
  ['hunyuan-moe', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'tencent/Hunyuan-A13B-Instruct'],
  // transformers 5's Phimoe (its block_sparse_moe renamed mlp) and dots.llm1 fuse them as Qwen's;
  // Jamba's are under feed_forward (gate_proj, then up_proj).
  ['phimoe', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'microsoft/Phi-3.5-MoE-instruct'],
  ['dots1', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'rednote-hilab/dots.llm1.inst'],
  // transformers 5's ExaoneMoe holds them as DeepSeek-V3's (DeepseekV3NaiveMoe: gate_up_proj halves).
  ['exaone-moe', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'LGAI-EXAONE/K-EXAONE-236B-A23B'],
  // transformers 5's Cohere2Moe holds them as Mixtral's (MixtralExperts: gate_up_proj halves).
  ['cohere2moe', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'CohereLabs/North-Mini-Code-1.0'],
  // transformers 5's AfmoeExperts are Qwen2MoeExperts.
  ['afmoe', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'arcee-ai/Trinity-Mini'],
  ['jamba', {
    gateUp: 'base_model.model.model.layers.0.feed_forward.experts.base_layer', down: 'base_model.model.model.layers.0.feed_forward.experts',
    targetParameters: ['feed_forward.experts.gate_up_proj', 'feed_forward.experts.down_proj'],
  }, 'ai21labs/AI21-Jamba-Mini-1.7'],
  // Mistral Small 4: DeepSeek-V3's experts under Mistral3ForConditionalGeneration's language model.
  ['mistral4', qwenNames('base_model.model.model.language_model.layers.0.mlp.experts'), 'mistralai/Mistral-Small-4-119B-2603'],
  // DeepSeek-V4: transformers' conversion merges each layer's ffn.experts.N.w1 and w3 so.
  ['deepseek4', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'deepseek-ai/DeepSeek-V4-Flash'],
  // Qwen3-Next and Qwen3.5's MoE (a block of full attention here): experts fused as Qwen3-MoE's.
  ['qwen3next', qwenNames('base_model.model.model.layers.0.mlp.experts'), 'Qwen/Qwen3-Next-80B-A3B-Instruct'],
  ['qwen35moe', qwenNames('base_model.model.model.language_model.layers.0.mlp.experts'), 'Qwen/Qwen3.5-35B-A3B'],
  // Gemma 4 26B-A4B: `experts` under the decoder layer, written whole to ffn_gate_up_exps.
  ['gemma4', {
    gateUp: 'base_model.model.model.language_model.layers.0.experts.base_layer', down: 'base_model.model.model.language_model.layers.0.experts',
    targetParameters: ['experts.gate_up_proj', 'experts.down_proj'],
  }, 'google/gemma-4-26B-A4B-it'],
  ['lfm2moe', {
    gateUp: 'base_model.model.model.layers.0.feed_forward.experts.base_layer', down: 'base_model.model.model.layers.0.feed_forward.experts',
    targetParameters: ['feed_forward.experts.gate_up_proj', 'feed_forward.experts.down_proj'],
  }, 'LiquidAI/LFM2-8B-A1B'],
  ['granitehybrid', {
    gateUp: 'base_model.model.model.layers.0.block_sparse_moe.input_linear', down: 'base_model.model.model.layers.0.block_sparse_moe.output_linear',
    targetParameters: ['block_sparse_moe.input_linear.weight', 'block_sparse_moe.output_linear.weight'],
  }, 'ibm-granite/granite-4.0-h-tiny'],
] as const)('PEFT target_parameters on a %s GGUF', (arch, names, baseModel) => {
  const base = qwen3MoeBase(arch);
  const lora = expertLora(names, baseModel);

  it.for(['cpu', 'webgpu'])('lands gate_up_proj\'s first half on ffn_gate_exps, its second on ffn_up_exps (or both on ffn_gate_up_exps), down_proj on ffn_down_exps, as float64 truth says, on %s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes } = await mergeFileInMemory({
      backend, base: { [`${arch}-tiny-BF16.gguf`]: base.bytes }, adapters: [{ files: lora.files, name: `${arch}-expert-lora`, weight: WEIGHT }],
      outDtype: 'f32', dtypeMergedOnly: true, slabBytes: 4096,
    });
    const out = readGguf(bytes);
    const gateUp: [string, Float64Array][] = base.values.has(GATE_UP)
      ? [[GATE_UP, plus(base.values.get(GATE_UP)!, 2 * FFN, HIDDEN, (e, j, c) => lora.gateUp(e, j, c))]]
      : [
        [GATE, plus(base.values.get(GATE)!, FFN, HIDDEN, (e, j, c) => lora.gateUp(e, j, c))],
        [UP, plus(base.values.get(UP)!, FFN, HIDDEN, (e, j, c) => lora.gateUp(e, FFN + j, c))],
      ];
    const expected: [string, Float64Array][] = [...gateUp, [DOWN, plus(base.values.get(DOWN)!, HIDDEN, FFN, (e, h, f) => lora.down(e, h, f))]];
    for (const [tensor, want] of expected) {
      const merged = tensorValues('F32', out.tensors.find((t) => t.name === tensor)!.data);
      expect(merged.length, tensor).toBe(want.length);
      let worst = 0;
      for (let i = 0; i < merged.length; i++) worst = Math.max(worst, Math.abs(merged[i] - want[i]) / (Math.abs(want[i]) + 1e-3));
      expect(worst, tensor).toBeLessThan(1e-5);
    }
    const input = readGguf(base.bytes);
    for (const t of input.tensors.filter((x) => !expected.some(([name]) => name === x.name))) {
      expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
    }
  });
});
