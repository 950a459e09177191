/**
 * `convert` of PEFT adapters for the other architectures convert_lora_to_gguf.py converts, from a
 * GGUF base and from the Hugging Face folder it was converted from (config.json and tensor shapes,
 * as the script's --base reads them): Gemma 2 and 3 (no q/k permutation, no output head), Phi-3
 * (fused qkv_proj on attn_qkv, gate_up_proj on ffn_up), Mixtral (llama: q/k permuted, experts
 * w1/w2/w3 stacked), Qwen2-MoE / Qwen3-MoE (experts, shared expert, routers), Nanbeige and SmolLM3
 * (q/k permuted as llama's), OLMo 3 (olmo2), Seed-OSS, Dream, openPangu-Embedded, RND1 (Qwen3-MoE's
 * names), LLaDA (its own model.transformer.… names, q/k permuted as llama's), Hy3 (router mlp.router.gate, shared
 * expert mlp.shared_mlp) and Laguna (attention gate g_proj, shared expert mlp.shared_expert). A PEFT LoRA on the
 * experts becomes one 3-D pair per stacked tensor, as the script's torch.stack of LoraTorchTensors
 * writes it: lora_a ne [in, r, experts], lora_b ne [r, out, experts]; merged into the GGUF base,
 * expert e's rows are W_e + (α/r)·B_e·A_e, checked against float64 truth written here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, listDir, runCliInProcess as runCli } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName, type MetaValue } from './helpers/gguf-builder.js';
import { ggufRowOf } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const [H, HEADS, KV_HEADS, FFN, VOCAB, E] = [64, 4, 2, 32, 16, 4];
const KV = (H / HEADS) * KV_HEADS;

/** One weight of a model: its HF name and (out, in), its GGUF name; experts: HF names per expert, stacked in GGUF. */
interface Weight { hf: string | ((e: number) => string); gguf: string; out: number; in: number; experts?: true }

const attention = (qkv = false): Weight[] => (qkv
  ? [{ hf: 'model.layers.0.self_attn.qkv_proj.weight', gguf: 'blk.0.attn_qkv.weight', out: H + 2 * KV, in: H }]
  : [
    { hf: 'model.layers.0.self_attn.q_proj.weight', gguf: 'blk.0.attn_q.weight', out: H, in: H },
    { hf: 'model.layers.0.self_attn.k_proj.weight', gguf: 'blk.0.attn_k.weight', out: KV, in: H },
    { hf: 'model.layers.0.self_attn.v_proj.weight', gguf: 'blk.0.attn_v.weight', out: KV, in: H },
  ]).concat([{ hf: 'model.layers.0.self_attn.o_proj.weight', gguf: 'blk.0.attn_output.weight', out: H, in: H }]);
const mlp: Weight[] = [
  { hf: 'model.layers.0.mlp.gate_proj.weight', gguf: 'blk.0.ffn_gate.weight', out: FFN, in: H },
  { hf: 'model.layers.0.mlp.up_proj.weight', gguf: 'blk.0.ffn_up.weight', out: FFN, in: H },
  { hf: 'model.layers.0.mlp.down_proj.weight', gguf: 'blk.0.ffn_down.weight', out: H, in: FFN },
];
const embed: Weight = { hf: 'model.embed_tokens.weight', gguf: 'token_embd.weight', out: VOCAB, in: H };
const head: Weight = { hf: 'lm_head.weight', gguf: 'output.weight', out: VOCAB, in: H };
const qwenExperts: Weight[] = [
  { hf: 'model.layers.0.mlp.gate.weight', gguf: 'blk.0.ffn_gate_inp.weight', out: E, in: H },
  { hf: (e) => `model.layers.0.mlp.experts.${e}.gate_proj.weight`, gguf: 'blk.0.ffn_gate_exps.weight', out: FFN, in: H, experts: true },
  { hf: (e) => `model.layers.0.mlp.experts.${e}.up_proj.weight`, gguf: 'blk.0.ffn_up_exps.weight', out: FFN, in: H, experts: true },
  { hf: (e) => `model.layers.0.mlp.experts.${e}.down_proj.weight`, gguf: 'blk.0.ffn_down_exps.weight', out: H, in: FFN, experts: true },
];

interface Arch { cls: string; arch: string; weights: Weight[]; config?: Record<string, unknown>; permuted?: true }

const ARCHS: Record<string, Arch> = {
  gemma2: { cls: 'Gemma2ForCausalLM', arch: 'gemma2', weights: [embed, ...attention(), ...mlp] },
  gemma3: { cls: 'Gemma3ForCausalLM', arch: 'gemma3', weights: [embed, ...attention(), ...mlp] },
  phi3: {
    cls: 'Phi3ForCausalLM', arch: 'phi3',
    weights: [embed, head, ...attention(true), { hf: 'model.layers.0.mlp.gate_up_proj.weight', gguf: 'blk.0.ffn_up.weight', out: 2 * FFN, in: H }, mlp[2]],
  },
  mixtral: {
    cls: 'MixtralForCausalLM', arch: 'llama', permuted: true, config: { num_local_experts: E },
    weights: [embed, head, ...attention(),
      { hf: 'model.layers.0.block_sparse_moe.gate.weight', gguf: 'blk.0.ffn_gate_inp.weight', out: E, in: H },
      { hf: (e) => `model.layers.0.block_sparse_moe.experts.${e}.w1.weight`, gguf: 'blk.0.ffn_gate_exps.weight', out: FFN, in: H, experts: true },
      { hf: (e) => `model.layers.0.block_sparse_moe.experts.${e}.w2.weight`, gguf: 'blk.0.ffn_down_exps.weight', out: H, in: FFN, experts: true },
      { hf: (e) => `model.layers.0.block_sparse_moe.experts.${e}.w3.weight`, gguf: 'blk.0.ffn_up_exps.weight', out: FFN, in: H, experts: true }],
  },
  qwen2moe: {
    cls: 'Qwen2MoeForCausalLM', arch: 'qwen2moe', config: { num_experts: E },
    weights: [embed, head, ...attention(), ...qwenExperts,
      { hf: 'model.layers.0.mlp.shared_expert.gate_proj.weight', gguf: 'blk.0.ffn_gate_shexp.weight', out: FFN, in: H },
      { hf: 'model.layers.0.mlp.shared_expert.up_proj.weight', gguf: 'blk.0.ffn_up_shexp.weight', out: FFN, in: H },
      { hf: 'model.layers.0.mlp.shared_expert.down_proj.weight', gguf: 'blk.0.ffn_down_shexp.weight', out: H, in: FFN },
      { hf: 'model.layers.0.mlp.shared_expert_gate.weight', gguf: 'blk.0.ffn_gate_inp_shexp.weight', out: 1, in: H }],
  },
  qwen3moe: { cls: 'Qwen3MoeForCausalLM', arch: 'qwen3moe', config: { num_experts: E }, weights: [embed, head, ...attention(), ...qwenExperts] },
  // LlamaModel's subclasses (q and k permuted) and TextModel's plain mapping.
  nanbeige: { cls: 'NanbeigeForCausalLM', arch: 'nanbeige', permuted: true, weights: [embed, head, ...attention(), ...mlp] },
  smollm3: { cls: 'SmolLM3ForCausalLM', arch: 'smollm3', permuted: true, weights: [embed, head, ...attention(), ...mlp] },
  olmo3: { cls: 'Olmo3ForCausalLM', arch: 'olmo2', weights: [embed, head, ...attention(), ...mlp] },
  seed_oss: { cls: 'SeedOssForCausalLM', arch: 'seed_oss', weights: [embed, head, ...attention(), ...mlp] },
  dream: { cls: 'DreamModel', arch: 'dream', weights: [embed, head, ...attention(), ...mlp] },
  pangu_embedded: { cls: 'PanguEmbeddedForCausalLM', arch: 'pangu-embedded', weights: [embed, head, ...attention(), ...mlp] },
  // RND1 (a Qwen2MoeModel): Qwen3-MoE's names, router mlp.gate, experts stacked.
  rnd1: { cls: 'RND1', arch: 'rnd1', config: { num_experts: E }, weights: [embed, head, ...attention(), ...qwenExperts] },
  // LLaDA: its own model.transformer.… names, q and k permuted (LLaDAModel.permute, llama's order).
  llada: {
    cls: 'LLaDAModelLM', arch: 'llada', permuted: true,
    weights: [
      { hf: 'model.transformer.wte.weight', gguf: 'token_embd.weight', out: VOCAB, in: H }, { hf: 'model.transformer.ff_out.weight', gguf: 'output.weight', out: VOCAB, in: H },
      ...attention().map((w): Weight => ({ ...w, hf: (w.hf as string).replace('model.layers.0.self_attn.', 'model.transformer.blocks.0.').replace('o_proj', 'attn_out') })),
      ...mlp.map((w, i): Weight => ({ ...w, hf: `model.transformer.blocks.0.${['ff_proj', 'up_proj', 'ff_out'][i]}.weight` })),
    ],
  },
  // Hy3's checkpoint names: router mlp.router.gate, shared expert mlp.shared_mlp.
  hy_v3: {
    cls: 'HYV3ForCausalLM', arch: 'hy_v3', config: { num_experts: E },
    weights: [embed, head, ...attention(),
      { hf: 'model.layers.0.mlp.router.gate.weight', gguf: 'blk.0.ffn_gate_inp.weight', out: E, in: H }, ...qwenExperts.slice(1),
      ...(['gate', 'up', 'down'] as const).map((p): Weight => ({
        hf: `model.layers.0.mlp.shared_mlp.${p}_proj.weight`, gguf: `blk.0.ffn_${p}_shexp.weight`, out: p === 'down' ? H : FFN, in: p === 'down' ? FFN : H,
      }))],
  },
  // Laguna: the per-head attention output gate g_proj, router mlp.gate, shared expert mlp.shared_expert.
  laguna: {
    cls: 'LagunaForCausalLM', arch: 'laguna', config: { num_experts: E },
    weights: [embed, head, ...attention(), { hf: 'model.layers.0.self_attn.g_proj.weight', gguf: 'blk.0.attn_gate.weight', out: HEADS, in: H }, ...qwenExperts,
      ...(['gate', 'up', 'down'] as const).map((p): Weight => ({
        hf: `model.layers.0.mlp.shared_expert.${p}_proj.weight`, gguf: `blk.0.ffn_${p}_shexp.weight`, out: p === 'down' ? H : FFN, in: p === 'down' ? FFN : H,
      }))],
  },
};

/** The GGUF base (F32, random values) and the HF folder (config.json, bf16 zeros of each HF shape) of `a`. */
function models(a: Arch, seed = 3): { files: Record<string, string | Uint8Array>; values: Map<string, Float64Array> } {
  const rand = seededRandom(seed);
  const values = new Map<string, Float64Array>();
  const tensors = [{ name: 'blk.0.attn_norm.weight', type: 'F32', ne: [H], data: tensorData('F32', new Float64Array(H).fill(1)) }];
  const hf: { name: string; dtype: 'BF16'; shape: number[]; data: Float64Array }[] = [{ name: 'model.layers.0.input_layernorm.weight', dtype: 'BF16', shape: [H], data: new Float64Array(H) }];
  for (const w of a.weights) {
    const n = w.experts ? E : 1;
    const v = Float64Array.from({ length: n * w.out * w.in }, () => Math.fround(rand() - 0.5));
    values.set(w.gguf, v);
    tensors.push({ name: w.gguf, type: 'F32', ne: w.experts ? [w.in, w.out, E] : [w.in, w.out], data: tensorData('F32', v) });
    for (let e = 0; e < n; e++) hf.push({ name: typeof w.hf === 'string' ? w.hf : w.hf(e), dtype: 'BF16', shape: [w.out, w.in], data: new Float64Array(w.out * w.in) });
  }
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: a.arch }], [`${a.arch}.block_count`, { type: 'u32', value: 1 }],
    [`${a.arch}.attention.head_count`, { type: 'u32', value: HEADS }], [`${a.arch}.attention.head_count_kv`, { type: 'u32', value: KV_HEADS }],
    ...(a.config ? [[`${a.arch}.expert_count`, { type: 'u32', value: E }] as [string, MetaValue]] : []),
  ];
  const config = {
    architectures: [a.cls], hidden_size: H, num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, num_hidden_layers: 1,
    intermediate_size: FFN, vocab_size: VOCAB, ...a.config,
  };
  return {
    files: { 'base.gguf': buildGguf({ metadata, tensors }), 'hf/config.json': JSON.stringify(config), 'hf/model.safetensors': buildSafetensors(hf) },
    values,
  };
}

/** One PEFT module: its path, the GGUF tensor (and expert) it lands on, factors in float64. */
interface Module { path: string; tensor: string; expert?: number; rank: number; out: number; in: number; a: Float64Array; b: Float64Array }

/**
 * A PEFT LoRA (α 16, r 4, f32 factors) on every linear of `a` but the embedding, head and routers,
 * each expert's Linear a module of its own; `only` picks the experts, `ranks` sets a path's rank
 * (rank_pattern).
 */
function adapter(a: Arch, options: { only?: number[]; ranks?: Record<string, number> } = {}) {
  const rand = seededRandom(7);
  const g = () => Math.fround(0.1 * (rand() - 0.5));
  const modules: Module[] = [];
  for (const w of a.weights) {
    if (w.gguf === 'token_embd.weight' || w.gguf === 'output.weight' || w.gguf.includes('gate_inp')) continue;
    for (const e of w.experts ? options.only ?? [0, 1, 2, 3] : [undefined]) {
      const path = (typeof w.hf === 'string' ? w.hf : w.hf(e!)).replace(/\.weight$/, '');
      const rank = options.ranks?.[path] ?? 4;
      modules.push({ path, tensor: w.gguf, expert: e, rank, out: w.out, in: w.in, a: Float64Array.from({ length: rank * w.in }, g), b: Float64Array.from({ length: w.out * rank }, g) });
    }
  }
  const tensors = modules.flatMap((m) => [
    { name: `base_model.model.${m.path}.lora_A.weight`, dtype: 'F32' as const, shape: [m.rank, m.in], data: m.a },
    { name: `base_model.model.${m.path}.lora_B.weight`, dtype: 'F32' as const, shape: [m.out, m.rank], data: m.b },
  ]);
  const config = { peft_type: 'LORA', r: 4, lora_alpha: 16, rank_pattern: options.ranks ?? {}, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'qkv_proj', 'gate_proj', 'up_proj', 'down_proj', 'gate_up_proj', 'w1', 'w2', 'w3', 'g_proj', 'attn_out', 'ff_proj', 'ff_out'] };
  return { modules, files: { 'peft/adapter_config.json': JSON.stringify(config), 'peft/adapter_model.safetensors': buildSafetensors(tensors) } };
}

async function convert(dir: string, base: string, out: string): Promise<void> {
  const run = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, base), '--out', join(dir, out)]);
  expect(run.code, run.stderr).toBe(0);
}

/** W + (α/r)·B·A per module on its GGUF rows (q/k permuted where `permuted`, expert e's rows e·out…). */
function truth(a: Arch, values: Map<string, Float64Array>, modules: Module[]): Map<string, Float64Array> {
  const out = new Map([...values].map(([k, v]) => [k, v.slice()]));
  for (const m of modules) {
    const w = out.get(m.tensor)!;
    const heads = a.permuted ? (m.tensor.includes('attn_q') ? HEADS : m.tensor.includes('attn_k') ? KV_HEADS : 0) : 0;
    for (let o = 0; o < m.out; o++) {
      const row = (m.expert ?? 0) * m.out + (heads ? ggufRowOf(o, m.out, heads) : o);
      for (let i = 0; i < m.in; i++) {
        let s = 0;
        for (let k = 0; k < m.rank; k++) s += m.b[o * m.rank + k] * m.a[k * m.in + i];
        w[row * m.in + i] += (16 / m.rank) * s;
      }
    }
  }
  return out;
}

async function mergedInto(dir: string, lora: string): Promise<Map<string, Float64Array>> {
  const merged = join(dir, `merged-${lora}`);
  const run = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, lora), '--out', merged, '--backend', 'cpu']);
  expect(run.code, run.stderr).toBe(0);
  return new Map(readGguf(readFileSync(merged)).tensors.map((t) => [t.name, tensorValues(typeName(t.typeId), t.data)]));
}

function worstRelative(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0, worst = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / scale);
  return worst;
}

describe('convert for more architectures, from the GGUF or its Hugging Face folder', () => {
  for (const [name, a] of Object.entries(ARCHS)) {
    it(`${a.cls} (${a.arch}): llama.cpp's names and shapes, the same bytes from both bases, and merged it is W + (α/r)·B·A`, async () => {
      const { files, values } = models(a);
      const peft = adapter(a);
      const dir = temp.make({ ...files, ...peft.files });
      await convert(dir, 'base.gguf', 'from-gguf.gguf');
      await convert(dir, 'hf', 'from-hf.gguf');
      expect(Buffer.compare(readFileSync(join(dir, 'from-hf.gguf')), readFileSync(join(dir, 'from-gguf.gguf'))), name).toBe(0);
      const file = readGguf(readFileSync(join(dir, 'from-gguf.gguf')));
      expect(file.metadata.get('general.architecture')?.value).toBe(a.arch);
      expect(file.metadata.get('adapter.lora.alpha')).toEqual({ type: 6, value: 16 });
      // Per base tensor one pair: 2-D, or 3-D with the experts slowest.
      const want = new Map<string, number[]>();
      for (const m of peft.modules) {
        const stack = m.expert === undefined ? [] : [E];
        want.set(`${m.tensor}.lora_a`, [m.in, 4, ...stack]);
        want.set(`${m.tensor}.lora_b`, [4, m.out, ...stack]);
      }
      expect(new Map(file.tensors.map((t) => [t.name, t.ne]))).toEqual(want);
      // Unpermuted tensors keep A and B as trained; a stacked pair holds expert e's at slice e.
      for (const m of peft.modules.filter((x) => !(a.permuted && /attn_[qk]\./.test(x.tensor)))) {
        const [aT, bT] = ['lora_a', 'lora_b'].map((f) => file.tensors.find((t) => t.name === `${m.tensor}.${f}`)!);
        const e = m.expert ?? 0;
        expect(tensorValues('F32', aT.data).subarray(e * m.a.length, (e + 1) * m.a.length), m.path).toEqual(m.a);
        expect(tensorValues('F32', bT.data).subarray(e * m.b.length, (e + 1) * m.b.length), m.path).toEqual(m.b);
      }
      const got = await mergedInto(dir, 'from-gguf.gguf');
      for (const [tensor, w] of truth(a, values, peft.modules)) expect(worstRelative(got.get(tensor)!, w), `${name} ${tensor}`).toBeLessThan(1e-6);
    });
  }

  it('Mixtral: a LoRA on some experts, at different ranks: one 3-D pair, the others\' slices zero, each expert at its own α/r', async () => {
    const a = ARCHS.mixtral;
    const { files, values } = models(a);
    const peft = adapter(a, { only: [0, 2], ranks: { 'model.layers.0.block_sparse_moe.experts.2.w1': 8 } });
    const dir = temp.make({ ...files, ...peft.files });
    await convert(dir, 'hf', 'lora.gguf');
    const file = readGguf(readFileSync(join(dir, 'lora.gguf')));
    // Ranks 4 and 8 on w1: padded to 8, each expert's α/r folded into its B, α' = r: llama.cpp's α = 0 (scale 1).
    expect(file.metadata.get('adapter.lora.alpha')).toEqual({ type: 6, value: 0 });
    const [la, lb] = ['lora_a', 'lora_b'].map((f) => file.tensors.find((t) => t.name === `blk.0.ffn_gate_exps.weight.${f}`)!);
    expect([la.ne, lb.ne]).toEqual([[H, 8, E], [8, FFN, E]]);
    const aValues = tensorValues('F32', la.data);
    expect(aValues.subarray(1 * 8 * H, 2 * 8 * H).every((v) => v === 0)).toBe(true);
    expect(aValues.subarray(3 * 8 * H).every((v) => v === 0)).toBe(true);
    const got = await mergedInto(dir, 'lora.gguf');
    for (const [tensor, w] of truth(a, values, peft.modules)) expect(worstRelative(got.get(tensor)!, w), tensor).toBeLessThan(1e-6);
    // Experts 1 and 3 unchanged.
    const base = values.get('blk.0.ffn_gate_exps.weight')!;
    expect(got.get('blk.0.ffn_gate_exps.weight')!.subarray(FFN * H, 2 * FFN * H)).toEqual(base.subarray(FFN * H, 2 * FFN * H));
  });

  it('Gemma 3 from its folder: an embed_tokens LoRA is refused (the converter cuts token_embd to the tokenizer\'s vocabulary); from its GGUF it is written', async () => {
    const a = ARCHS.gemma3;
    const { files } = models(a);
    const rand = seededRandom(9);
    const g = () => Math.fround(0.1 * (rand() - 0.5));
    const dir = temp.make({
      ...files,
      'peft/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['embed_tokens'] }),
      'peft/adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.model.embed_tokens.lora_embedding_A', dtype: 'F32', shape: [2, VOCAB], data: Float64Array.from({ length: 2 * VOCAB }, g) },
        { name: 'base_model.model.model.embed_tokens.lora_embedding_B', dtype: 'F32', shape: [H, 2], data: Float64Array.from({ length: H * 2 }, g) },
      ]),
    });
    const before = listDir(dir);
    const run = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, 'hf'), '--out', join(dir, 'x.gguf')]);
    expect(run.code, run.stderr).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([expect.stringMatching(/^error: module "model\.embed_tokens": Gemma 3's converter cuts token_embd to the tokenizer's vocabulary, a shape the Hugging Face folder's config\.json does not give; give the Gemma 3 GGUF as --base$/)]);
    expect(listDir(dir)).toEqual(before);
    await convert(dir, 'base.gguf', 'from-gguf.gguf');
    const file = readGguf(readFileSync(join(dir, 'from-gguf.gguf')));
    expect(file.tensors.map((t) => [t.name, t.ne])).toEqual([['token_embd.weight.lora_a', [2, VOCAB]], ['token_embd.weight.lora_b', [2, H]]]);
  });

  // google/gemma-3-4b-it's config.json (Gemma3ForConditionalGeneration: the language model's sizes
  // under text_config, a SigLIP vision_config), scaled down; its checkpoint names the language model
  // `language_model.model.` (transformers before 4.52) or `model.language_model.`, the tower `vision_tower.`.
  for (const [lm, tower] of [['language_model.model', 'vision_tower'], ['model.language_model', 'model.vision_tower']] as const) {
    it(`Gemma3ForConditionalGeneration's folder (${lm}.…): its language model's LoRA converts as from the Gemma 3 GGUF, byte for byte; the vision tower and the embedding refused in one line`, async () => {
      const a = ARCHS.gemma3;
      const { files, values } = models(a);
      const lmWeights = a.weights.filter((w) => w !== embed);
      const hf = [
        { name: `${lm}.embed_tokens.weight`, dtype: 'BF16' as const, shape: [VOCAB + 4, H], data: new Float64Array((VOCAB + 4) * H) },
        ...lmWeights.map((w) => ({ name: (w.hf as string).replace(/^model\./, `${lm}.`), dtype: 'BF16' as const, shape: [w.out, w.in], data: new Float64Array(w.out * w.in) })),
        { name: `${tower}.vision_model.encoder.layers.0.self_attn.q_proj.weight`, dtype: 'BF16' as const, shape: [32, 32], data: new Float64Array(32 * 32) },
      ];
      const config = {
        architectures: ['Gemma3ForConditionalGeneration'], model_type: 'gemma3', mm_tokens_per_image: 256,
        text_config: { model_type: 'gemma3_text', hidden_size: H, intermediate_size: FFN, num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, num_hidden_layers: 1, vocab_size: VOCAB + 4 },
        vision_config: { model_type: 'siglip_vision_model', hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2 },
      };
      // The adapter as PEFT names it on the multimodal class since transformers 4.52.
      const peft = adapter({ ...a, weights: lmWeights.map((w) => ({ ...w, hf: (w.hf as string).replace(/^model\./, 'model.language_model.') })) });
      for (const m of peft.modules) m.path = m.path.replace(/^model\.language_model\./, 'model.');
      const dir = temp.make({ ...files, ...peft.files, 'hf/config.json': JSON.stringify(config), 'hf/model.safetensors': buildSafetensors(hf) });
      await convert(dir, 'base.gguf', 'from-gguf.gguf');
      await convert(dir, 'hf', 'from-hf.gguf');
      expect(Buffer.compare(readFileSync(join(dir, 'from-hf.gguf')), readFileSync(join(dir, 'from-gguf.gguf')))).toBe(0);
      const file = readGguf(readFileSync(join(dir, 'from-hf.gguf')));
      expect(file.metadata.get('general.architecture')?.value).toBe('gemma3');
      expect(file.tensors.map((t) => t.name).sort()).toEqual(peft.modules.flatMap((m) => [`${m.tensor}.lora_a`, `${m.tensor}.lora_b`]).sort());
      const got = await mergedInto(dir, 'from-hf.gguf');
      for (const [tensor, w] of truth(a, values, peft.modules)) expect(worstRelative(got.get(tensor)!, w), tensor).toBeLessThan(1e-6);

      const rand = seededRandom(11);
      const g = (n: number) => Float64Array.from({ length: n }, () => Math.fround(0.1 * (rand() - 0.5)));
      const refused = temp.make({
        'hf/config.json': JSON.stringify(config), 'hf/model.safetensors': buildSafetensors(hf),
        'peft/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'embed_tokens'] }),
        'peft/adapter_model.safetensors': buildSafetensors([
          { name: 'base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [2, 32], data: g(64) },
          { name: 'base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [32, 2], data: g(64) },
          { name: 'base_model.model.model.language_model.embed_tokens.lora_embedding_A', dtype: 'F32', shape: [2, VOCAB + 4], data: g(2 * (VOCAB + 4)) },
          { name: 'base_model.model.model.language_model.embed_tokens.lora_embedding_B', dtype: 'F32', shape: [H, 2], data: g(2 * H) },
        ]),
      });
      const before = listDir(refused);
      const run = await runCli(['convert', '--adapter', join(refused, 'peft'), '--base', join(refused, 'hf'), '--out', join(refused, 'x.gguf')]);
      expect(run.code, run.stderr).not.toBe(0);
      const lines = errorLines(run.stderr).join('\n');
      expect(lines).toContain('module "model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj": Gemma 3\'s vision tower and projector go to its mmproj GGUF (convert_hf_to_gguf.py --mmproj), which a llama.cpp LoRA does not address; only the language model\'s modules convert');
      expect(lines).toContain('module "model.language_model.embed_tokens": Gemma 3\'s converter cuts token_embd to the tokenizer\'s vocabulary');
      expect(listDir(refused)).toEqual(before);
    });
  }

  it('refuses an HF folder whose experts do not match config.json\'s count, and a class it does not name, in one line', async () => {
    const a = ARCHS.qwen3moe;
    const { files } = models({ ...a, config: { num_experts: E + 1 } });
    const peft = adapter(a);
    const dir = temp.make({ ...files, ...peft.files, 'gpt2/config.json': JSON.stringify({ architectures: ['GPT2LMHeadModel'] }), 'gpt2/model.safetensors': files['hf/model.safetensors'] });
    const before = listDir(dir);
    for (const [base, line] of [
      ['hf', /^error: --base .*hf: 4 tensors model\.layers\.0\.mlp\.experts\.N\.(gate|up|down)_proj\.weight \(experts numbered 0 to 3\), but config\.json's num_experts is 5: convert_hf_to_gguf stacks experts 0 to E−1, of one shape, into blk\.0\.ffn_(gate|up|down)_exps\.weight; give the GGUF model the LoRA is for$/],
      ['gpt2', /^error: --base .*gpt2: a GPT2LMHeadModel, whose GGUF tensor names loramerge derives for LlamaForCausalLM, .*Gemma3ForConditionalGeneration, .*LagunaForCausalLM, Phi3ForCausalLM only; give the GGUF model the LoRA is for$/],
    ] as const) {
      const run = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, base), '--out', join(dir, 'x.gguf')]);
      expect(run.code, run.stderr).not.toBe(0);
      expect(errorLines(run.stderr)).toEqual([expect.stringMatching(line)]);
    }
    expect(listDir(dir)).toEqual(before);
  });
});
