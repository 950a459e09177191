/**
 * ComfyUI's `qwen3_2b` text encoder names one slot in two models: Ovis-Image's Ovis 2.5 LLM
 * (comfy/text_encoders/ovis.py, OvisTEModel, name "qwen3_2b", llama.py Ovis25_2BConfig) and
 * ACE-Step 1.5's 1.7B 5 Hz language model (ace15.py, ACE15TEModel's `qwen3_2b` attribute,
 * Qwen3_2B_ACE15_lm_Config). Both are llama.py's Llama2_ under `model.` with the same layers (28,
 * hidden 2048, MLP 6144, 16 heads, 8 KV heads, q/k norms, no lm_head); only the vocabulary differs
 * (151936 against ACE-Step's 217204 rows of `model.embed_tokens`). comfy/lora.py maps
 * `text_encoders.qwen3_2b.transformer.<key>` to `qwen3_2b.transformer.<key>` by name, whichever
 * model the CLIP holds, so a `qwen3_2b` LoRA lands by those names on either's weights, as ComfyUI
 * loads them: ComfyUI's text encoder files (`ovis_2.5.safetensors`, `qwen_1.7b_ace15.safetensors`,
 * transformers' names under `model.`, no config) and ACE-Step's LM folder as its repository ships
 * it (`acestep-5Hz-lm-1.7B/`, a Qwen3ForCausalLM). Its `embed_tokens` module, which "Extract and
 * Save Lora" writes as for every 2-D weight, lands on the tied embedding and keeps it tied, as
 * ComfyUI's model reads its logits from that one weight. Checked against float64 truth (merge-truth.ts);
 * shapes are scaled down (hidden 16, KV 8, MLP 24), the vocabularies to 30 and 40 rows.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectMergedFile, type TruthTerm } from './helpers/merge-truth.js';

const rand = seededRandom(2048);
const [H, KV, MLP] = [16, 8, 24];
const LAYER = 'model.layers.0.';

/** A Qwen3 1.7B language model's tensors as transformers (and ComfyUI's text encoder files) name them, with `vocab` embedding rows. */
function qwen3LanguageModel(vocab: number): FixtureTensor[] {
  const t = (name: string, shape: number[]) => tensor(rand, name, shape, 'BF16');
  return [
    t('model.embed_tokens.weight', [vocab, H]),
    t(`${LAYER}self_attn.q_proj.weight`, [H, H]), t(`${LAYER}self_attn.k_proj.weight`, [KV, H]), t(`${LAYER}self_attn.v_proj.weight`, [KV, H]),
    t(`${LAYER}self_attn.o_proj.weight`, [H, H]), t(`${LAYER}self_attn.q_norm.weight`, [8]), t(`${LAYER}self_attn.k_norm.weight`, [8]),
    t(`${LAYER}mlp.gate_proj.weight`, [MLP, H]), t(`${LAYER}mlp.up_proj.weight`, [MLP, H]), t(`${LAYER}mlp.down_proj.weight`, [H, MLP]),
    t(`${LAYER}input_layernorm.weight`, [H]), t(`${LAYER}post_attention_layernorm.weight`, [H]), t('model.norm.weight', [H]),
  ];
}

/** What ComfyUI's "Extract and Save Lora" writes for the qwen3_2b slot: lora_up/lora_down in F16, no alpha (scale 1). */
const MODULES: [path: string, out: number, inF: number][] = [
  [`${LAYER}self_attn.q_proj`, H, H], [`${LAYER}self_attn.k_proj`, KV, H], [`${LAYER}mlp.down_proj`, H, MLP],
];
const adapterTensors: FixtureTensor[] = MODULES.flatMap(([path, out, inF]) => [
  tensor(rand, `text_encoders.qwen3_2b.transformer.${path}.lora_up.weight`, [out, 2], 'F16', 0.5),
  tensor(rand, `text_encoders.qwen3_2b.transformer.${path}.lora_down.weight`, [2, inF], 'F16', 0.5),
]);
const adapterBytes = buildSafetensors(adapterTensors);

/** Each module on the base weight of its own name, at `weight`. */
function truth(weight: number): TruthTerm[] {
  const adapter = decodeSafetensors(adapterBytes).tensors;
  return MODULES.map(([path]) => ({
    baseKey: `${path}.weight`, scale: weight,
    b: adapter.get(`text_encoders.qwen3_2b.transformer.${path}.lora_up.weight`)!, a: adapter.get(`text_encoders.qwen3_2b.transformer.${path}.lora_down.weight`)!,
  }));
}

const backends = mergeBackends({ cpu: 'default' });
const merge = (base: Record<string, Uint8Array | string>, baseName: string, weight: number) => mergeInMemory({
  backend: backends.cpu!, base, baseName, adapters: [{ files: { 'ovis_style_te.safetensors': adapterBytes }, name: 'ovis_style_te.safetensors', weight }],
});

describe('ComfyUI\'s `qwen3_2b` (Ovis-Image\'s Ovis 2.5 LLM and ACE-Step 1.5\'s 1.7B language model alike)', () => {
  it('lands by name on ComfyUI\'s text encoder file of either model (ovis_2.5.safetensors, qwen_1.7b_ace15.safetensors), as comfy/lora.py maps it on both', async () => {
    for (const [file, vocab] of [['ovis_2.5.safetensors', 30], ['qwen_1.7b_ace15.safetensors', 40]] as const) {
      const baseBytes = buildSafetensors(qwen3LanguageModel(vocab));
      const { tensors, warnings } = await merge({ [file]: baseBytes }, file, 0.7);
      expect(warnings).toEqual([]);
      expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truth(0.7));
    }
  });

  it('lands under `model.` on ACE-Step\'s language model folder as its repository ships it (acestep-5Hz-lm-1.7B/, a Qwen3ForCausalLM)', async () => {
    const baseBytes = buildSafetensors(qwen3LanguageModel(40));
    const config = JSON.stringify({
      architectures: ['Qwen3ForCausalLM'], head_dim: 128, hidden_act: 'silu', hidden_size: 2048, intermediate_size: 6144, max_position_embeddings: 40960,
      model_type: 'qwen3', num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_theta: 1000000,
      tie_word_embeddings: true, torch_dtype: 'bfloat16', vocab_size: 217204,
    });
    const { tensors, warnings } = await merge({ 'config.json': config, 'model.safetensors': baseBytes }, 'acestep-5Hz-lm-1.7B', -0.5);
    expect(warnings).toEqual([]);
    expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truth(-0.5));
  });

  it('its `model.embed_tokens` module (LoraSave extracts every 2-D weight) lands on ACE-Step\'s tied embedding, which stays tied: ComfyUI\'s model reads its logits from embed_tokens', async () => {
    const baseBytes = buildSafetensors(qwen3LanguageModel(40));
    const config = JSON.stringify({ architectures: ['Qwen3ForCausalLM'], hidden_size: 2048, model_type: 'qwen3', tie_word_embeddings: true, vocab_size: 217204 });
    const embed = 'text_encoders.qwen3_2b.transformer.model.embed_tokens';
    const withEmbedding = buildSafetensors([
      ...adapterTensors, tensor(rand, `${embed}.lora_up.weight`, [40, 2], 'F16', 0.5), tensor(rand, `${embed}.lora_down.weight`, [2, H], 'F16', 0.5),
    ]);
    const notes: string[] = [];
    const { tensors, warnings } = await mergeInMemory({
      backend: backends.cpu!, base: { 'config.json': config, 'model.safetensors': baseBytes }, baseName: 'acestep-5Hz-lm-1.7B',
      adapters: [{ files: { 'ace_lm.safetensors': withEmbedding }, name: 'ace_lm.safetensors', weight: 0.5 }],
      inspect: (prepared) => {
        notes.push(...prepared.plan.notes);
      },
    });
    expect(warnings).toEqual([]);
    expect(notes).toEqual(['the output head stays tied to model.embed_tokens.weight: ComfyUI applies its LoRA to the one weight its model keeps for both']);
    const adapter = decodeSafetensors(withEmbedding).tensors;
    const terms = [...truth(0.5), { baseKey: 'model.embed_tokens.weight', scale: 0.5, b: adapter.get(`${embed}.lora_up.weight`)!, a: adapter.get(`${embed}.lora_down.weight`)! }];
    // No lm_head written: the merged file holds the base's tensors only.
    expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, terms);
    // Beside a LoRA on the head alone (which unties the two), it could not keep its tie: refused.
    const head = buildSafetensors([tensor(rand, 'lm_head.lora_A.weight', [2, H], 'F32'), tensor(rand, 'lm_head.lora_B.weight', [40, 2], 'F32')]);
    expect(await refusalsInMemory({
      backend: backends.cpu!, base: { 'config.json': config, 'model.safetensors': baseBytes }, baseName: 'acestep-5Hz-lm-1.7B',
      adapters: [{ files: { 'ace_lm.safetensors': withEmbedding }, name: 'ace_lm.safetensors' }, { files: { 'head.safetensors': head }, name: 'head.safetensors' }],
    })).toEqual(['ace_lm.safetensors is a ComfyUI LoRA on model.embed_tokens.weight, which ComfyUI applies to the tied output head as well, but another change unties the two; merge the adapters one after the other']);
  });

  it('an Ovis-Image `qwen3_2b` LoRA\'s embed_tokens module (its 151936-row vocabulary, 30 here) on ACE-Step\'s LM (217204, 40 here) is refused by its shape, the one place the two models differ', async () => {
    const config = JSON.stringify({ architectures: ['Qwen3ForCausalLM'], hidden_size: 2048, model_type: 'qwen3', tie_word_embeddings: true, vocab_size: 217204 });
    const embed = 'text_encoders.qwen3_2b.transformer.model.embed_tokens';
    const ovisLora = buildSafetensors([...adapterTensors, tensor(rand, `${embed}.lora_up.weight`, [30, 2], 'F16', 0.5), tensor(rand, `${embed}.lora_down.weight`, [2, H], 'F16', 0.5)]);
    expect(await refusalsInMemory({
      backend: backends.cpu!, base: { 'config.json': config, 'model.safetensors': buildSafetensors(qwen3LanguageModel(40)) }, baseName: 'acestep-5Hz-lm-1.7B',
      adapters: [{ files: { 'ovis_te.safetensors': ovisLora }, name: 'ovis_te.safetensors' }],
    })).toEqual([`ovis_te.safetensors: module "${embed}": ΔW (30, ${H}) does not fit base model.embed_tokens.weight (40, ${H}): ΔW has 30 rows (outputs), the base 40`]);
  });
});
