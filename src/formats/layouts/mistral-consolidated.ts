/**
 * Layout: Mistral's own format (`consolidated.safetensors` with `params.json`, as mistral-inference
 * and vLLM's `--load-format mistral` read it: `layers.N.attention.wq.weight`, `feed_forward.w1`,
 * `tok_embeddings`, `output`; FP8 releases with `qscale_weight` / `qscale_act` beside the weights)
 * and transformers' checkpoints converted from it (convert_mistral_weights_to_hf.py, and the
 * Mixtral, Mistral 3 and Pixtral conversions). The conversions rename each decoder tensor
 * (`attention.wq` → `self_attn.q_proj`, `feed_forward.w1` / `w2` / `w3` → `mlp.gate_proj` /
 * `down_proj` / `up_proj`, a Mixtral expert's `feed_forward.experts.K.w1` →
 * `block_sparse_moe.experts.K.w1`) and permute the rows of wq and wk within each head for
 * transformers' rotary embedding (permute_for_rope: row 2i + j of a head, j < 2, goes to row
 * j·d/2 + i, d the head size), and nothing else.
 * - A module in Mistral's names (mistral-finetune's LoRA) lands on Mistral's file by that exact name
 *   (mistral-inference's load_lora takes the decoder layer's tensor of that name; a vision encoder's
 *   `vision_encoder.transformer.layers.N.attention.wq` ends the same and is never it: this layout
 *   is asked before `dotted-path`, which would match by suffix). On a converted checkpoint it lands on the
 *   renamed tensor, ΔW's rows of wq and wk permuted the same way, so the merge is the conversion of
 *   the model mistral-inference merges. The head size is config.json's `head_dim` (else
 *   hidden_size / num_attention_heads), of `text_config` in a vision-language model. On a llama.cpp
 *   GGUF of a Mistral model (`llama`, `mistral3`) it lands one to one on llama.cpp's name
 *   (`blk.N.attn_q`): convert_hf_to_gguf puts wq's and wk's rows back in Mistral's order.
 * - A module in transformers' names on a consolidated base is refused with what to merge into
 *   (a folder holding both formats is read in transformers', base-model.ts leaving the consolidated
 *   file out); Mistral Large 3's and Mistral Small 4's (multi-head latent attention: `wq_a`,
 *   `wkv_b`, `experts.K.w1`) alike.
 */
import { llamaRopePermutation } from './hf-to-gguf.js';
import { missBecause, type BaseView, type Layout, type LayoutResolution, type RowSegment } from './layout.js';

/** A transformers module path of a decoder layer or the head/embedding (`model.layers.3.self_attn.q_proj`, `model.language_model.…`, `lm_head`). */
const TRANSFORMERS_PATH = /(^|\.)(layers\.\d+\.(self_attn|mlp|block_sparse_moe)\.|embed_tokens$|lm_head$)/;

/** A decoder Linear in Mistral's names, as mistral-finetune wraps them: attention, the MLP, a Mixtral expert's MLP. */
const MISTRAL_PATH = /^layers\.(\d+)\.(attention\.w([qkvo])|feed_forward\.(experts\.\d+\.)?(w[123]))$/;

/** The feed-forward names of Mistral's format, as transformers' dense MLP names them. */
const MLP_NAMES: Readonly<Record<string, string>> = { w1: 'gate_proj', w2: 'down_proj', w3: 'up_proj' };

/**
 * The architectures (config.json) of transformers' checkpoints converted from Mistral's format by
 * conversions that rename and permute as above: Mistral 7B, Nemo, Codestral, Ministral and
 * Magistral's MistralForCausalLM, Mixtral's, Mistral Small 3.x's, Devstral's and Ministral 3's
 * Mistral3 (its language model), Ministral 3's text-only Ministral3ForCausalLM
 * (convert_ministral3_weights_to_hf.py), and Pixtral 12B's Llava with a Mistral language model
 * (text_config.model_type).
 */
const CONVERTED: Readonly<Record<string, (config: Readonly<Record<string, unknown>> | undefined) => boolean>> = {
  MistralForCausalLM: () => true,
  MixtralForCausalLM: () => true,
  Mistral3ForConditionalGeneration: () => true,
  Ministral3ForCausalLM: () => true,
  LlavaForConditionalGeneration: (config) => textField(config, 'model_type') === 'mistral',
};

/** A language-model field of config.json: `text_config`'s in a vision-language model, else the top level's. */
function textField(config: Readonly<Record<string, unknown>> | undefined, key: string): unknown {
  const text = config?.text_config;
  if (typeof text === 'object' && text !== null && !Array.isArray(text) && Object.hasOwn(text, key)) return (text as Record<string, unknown>)[key];
  return config?.[key];
}

/** The head size the conversion permuted by: `head_dim`, else hidden_size / num_attention_heads (MistralConfig's rule). */
function headSize(config: Readonly<Record<string, unknown>> | undefined): number | undefined {
  const stated = textField(config, 'head_dim');
  if (typeof stated === 'number' && Number.isSafeInteger(stated) && stated > 0) return stated;
  const hidden = textField(config, 'hidden_size');
  const heads = textField(config, 'num_attention_heads');
  if (typeof hidden !== 'number' || typeof heads !== 'number' || heads <= 0 || !Number.isSafeInteger(hidden / heads)) return undefined;
  return hidden / heads;
}

/**
 * A miss that ends the search: mistral-inference reads a module's name as the tensor of the decoder's
 * layers it names, never by a suffix (a Pixtral checkpoint's vision encoder names its own
 * `vision_encoder.transformer.layers.N.attention.wq`), so no later layout may place it by one.
 */
function refuse(why: string): LayoutResolution {
  return { found: false, ambiguous: true, candidates: [], why };
}

/** A base in Mistral's own format: its embedding, or a first layer's attention, by Mistral's names (MLA's `wq_a` too). */
function isConsolidated(base: BaseView): boolean {
  return base.index.has('tok_embeddings.weight') || base.index.has('layers.0.attention.wq.weight') || base.index.has('layers.0.attention.wq_a.weight');
}

/**
 * Places a module in Mistral's names: by its own name on Mistral's format, else on a transformers
 * checkpoint converted from it. Other bases are left to the other layouts (Z-Image's and Lumina 2's
 * blocks share `layers.N.feed_forward.w1`), an attention module there only told why it is not placed.
 */
function mistralNamed(path: string, base: BaseView): LayoutResolution | undefined {
  const m = MISTRAL_PATH.exec(path);
  if (!m) return undefined;
  if (base.index.has(`${path}.weight`)) return { found: true, targets: [{ baseKey: `${path}.weight` }] };
  if (isConsolidated(base)) {
    const mla = base.index.has('layers.0.attention.wq_a.weight') ? ' (its attention is multi-head latent attention, wq_a, wkv_b …, which mistral-finetune does not train)' : '';
    return refuse(`names ${path}.weight, which the base, in Mistral's own format, does not hold${mla}: merge into the model the adapter was trained on`);
  }
  const [, layer, , attention, expert, ffn] = m;
  const arch = base.metadata?.('general.architecture');
  if (typeof arch === 'string') return onGguf(arch, layer, attention, expert, ffn, base);
  const renamed = attention !== undefined ? `layers.${layer}.self_attn.${attention}_proj`
    : expert !== undefined ? `layers.${layer}.block_sparse_moe.${expert}${ffn}` : `layers.${layer}.mlp.${MLP_NAMES[ffn]}`;
  if (!Object.keys(CONVERTED).some((a) => base.architectures.includes(a) && CONVERTED[a](base.config))) {
    if (attention === undefined) return undefined;
    if (base.architectures.length > 0 && base.index.resolveDotted(`layers.${layer}.self_attn.q_proj.weight`).found) {
      return missBecause(`names a module in Mistral's own format, and the base is in transformers' names (config.json architectures ${base.architectures.join(', ')}), whose conversion from Mistral's format is not known here; it is known for ${Object.keys(CONVERTED).join(', ')} (a Llava whose text_config is a mistral one): merge into the consolidated.safetensors the adapter was trained on`);
    }
    return missBecause(`names a module in Mistral's own format (mistral-finetune's names: layers.N.attention.wq, feed_forward.w1), which the base holds neither by that name nor by transformers' (${renamed}); merge into the checkpoint the adapter was trained on (consolidated.safetensors) or a transformers checkpoint converted from it`);
  }
  const found = base.index.resolveDotted(`${renamed}.weight`);
  if (!found.found) return found.ambiguous ? found : refuse(`names a module in Mistral's own format, which transformers' conversion names ${renamed}, and the base has no such tensor`);
  if (attention !== 'q' && attention !== 'k') return { found: true, targets: [{ baseKey: found.key }] };
  const rows = ropeRows(found.key, base);
  if (typeof rows === 'string') return refuse(rows);
  return { found: true, targets: [{ baseKey: found.key, rows }] };
}

/** llama.cpp's names of Mistral's decoder Linears (convert_hf_to_gguf's tensor map, by transformers' names). */
const GGUF_NAMES: Readonly<Record<string, string>> = {
  q: 'attn_q', k: 'attn_k', v: 'attn_v', o: 'attn_output', w1: 'ffn_gate', w2: 'ffn_down', w3: 'ffn_up',
};

/**
 * GGUF architectures whose attn_q and attn_k hold Mistral's own row order: convert_hf_to_gguf's
 * LlamaModel (`llama`: Mistral 7B, Nemo, Small 3 as text models) and its Mistral3Model subclass
 * (`mistral3`) permute transformers' rows back (undo_permute), and write a file converted from
 * Mistral's format as it is; either way the GGUF's rows are those mistral-finetune trained on.
 */
const GGUF_MISTRAL_ORDER = new Set(['llama', 'mistral3']);

/** A module in Mistral's names on a GGUF: one to one by llama.cpp's name, on the architectures above. */
function onGguf(arch: string, layer: string, attention: string | undefined, expert: string | undefined, ffn: string | undefined, base: BaseView): LayoutResolution {
  if (!GGUF_MISTRAL_ORDER.has(arch)) {
    return refuse(`names a module in Mistral's own format, and the base is a GGUF of architecture ${arch}, whose tensors are not known here to hold Mistral's rows (known for ${[...GGUF_MISTRAL_ORDER].join(' and ')}): merge into the consolidated.safetensors the adapter was trained on`);
  }
  if (expert !== undefined) {
    return refuse(`names one expert of a mixture of experts in Mistral's own format, which llama.cpp stacks with the others (ffn_gate_exps, ffn_down_exps, ffn_up_exps): not supported on a GGUF; merge into consolidated.safetensors (or a transformers checkpoint converted from it) and convert that`);
  }
  const key = `blk.${layer}.${GGUF_NAMES[attention ?? ffn!]}.weight`;
  if (!base.index.has(key)) return refuse(`names a module in Mistral's own format, which a GGUF names ${key}, and the base has no such tensor`);
  return { found: true, targets: [{ baseKey: key }] };
}

/** Where ΔW's rows (Mistral's order) go in a converted q_proj or k_proj, or why that cannot be told. */
function ropeRows(key: string, base: BaseView): RowSegment[] | string {
  const d = headSize(base.config);
  const rows = base.shape(key)?.[0];
  const why = `names a module in Mistral's own format, which lands on ${key} with its rows permuted within each head as transformers' conversion permutes wq and wk`;
  if (d === undefined) return `${why}, and the base's config.json gives no head size (head_dim, or hidden_size and num_attention_heads): not supported`;
  if (rows === undefined || rows % d !== 0 || d % 2 !== 0) return `${why}, and its ${rows} rows are no whole number of heads of config.json's head size ${d} (an even one): not supported`;
  // llamaRopePermutation maps transformers' rows to Mistral's (as llama.cpp's converter undoes the
  // conversion); ΔW's rows are Mistral's, so each segment is taken the other way.
  return llamaRopePermutation(rows, rows / d)!.map((g) => ({ src: g.dst, dst: g.src, count: g.count }));
}

/**
 * Places mistral-finetune's modules on a transformers checkpoint converted from Mistral's format,
 * and refuses a transformers-named module on a base in Mistral's format, saying what to merge into.
 */
export const mistralConsolidated: Layout = {
  name: 'mistral-consolidated',
  resolve(address, base) {
    // mistral-finetune's names carry no model part (a diffusion LoRA's `diffusion_model.layers.N…` does).
    if (address.flat) return undefined;
    const own = address.part === undefined ? mistralNamed(address.path, base) : undefined;
    if (own) return own;
    if (!TRANSFORMERS_PATH.test(address.path) || !base.index.has('tok_embeddings.weight')) return undefined;
    // Mistral Large 3's and Mistral Small 4's multi-head latent attention (wq_a, wq_b, wkv_a_with_mqa, wkv_b):
    // transformers' conversion of those renames without permuting (convert_mistral4_weight_to_hf.py).
    const mla = base.index.has('layers.0.attention.wq_a.weight');
    if (!mla && !base.index.has('layers.0.attention.wq.weight')) return undefined;
    return missBecause(
      `the base is in Mistral's own format (consolidated.safetensors: ${mla ? 'layers.N.attention.wq_a, wkv_b, experts.K.w1' : 'layers.N.attention.wq, feed_forward.w1'}, tok_embeddings), whose tensors transformers' conversion renames${mla ? '' : ' and, for wq and wk, permutes by rows'}; `
      + "a LoRA in transformers' names is not placed on it: merge into the repository's transformers-format checkpoint (config.json with model-*.safetensors)",
    );
  },
};
