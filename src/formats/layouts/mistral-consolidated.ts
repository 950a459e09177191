/**
 * Layout (a refusal only): a base in Mistral's own format, as mistral-inference and vLLM's
 * `--load-format mistral` read it (`consolidated.safetensors` with `params.json`:
 * `layers.N.attention.wq.weight`, `feed_forward.w1`, `tok_embeddings`, `output`; FP8 releases with
 * `qscale_weight` / `qscale_act` beside the weights), given with a LoRA in transformers' names.
 * transformers' conversion (convert_mistral_weights_to_hf.py) renames these tensors and permutes
 * the rows of wq and wk for its rotary embedding, so a module of the converted model is no tensor
 * of this file by name; it is refused with the reason and what to merge into. A folder holding
 * both formats is read in transformers' (base-model.ts leaves the consolidated file out).
 */
import { missBecause, type Layout } from './layout.js';

/** A transformers module path of a decoder layer or the head/embedding (`model.layers.3.self_attn.q_proj`, `model.language_model.…`, `lm_head`). */
const TRANSFORMERS_PATH = /(^|\.)(layers\.\d+\.(self_attn|mlp|block_sparse_moe)\.|embed_tokens$|lm_head$)/;

/** Refuses a transformers-named module on a base in Mistral's consolidated format, saying what to merge into. */
export const mistralConsolidated: Layout = {
  name: 'mistral-consolidated',
  resolve(address, base) {
    if (address.flat || !TRANSFORMERS_PATH.test(address.path)) return undefined;
    if (!base.index.has('tok_embeddings.weight') || !base.index.has('layers.0.attention.wq.weight')) return undefined;
    return missBecause(
      "the base is in Mistral's own format (consolidated.safetensors: layers.N.attention.wq, feed_forward.w1, tok_embeddings), whose tensors transformers' conversion renames and, for wq and wk, permutes by rows; "
      + "a LoRA in transformers' names is not placed on it: merge into the repository's transformers-format checkpoint (config.json with model-*.safetensors)",
    );
  },
};
