/**
 * Layout: the output head of one of ComfyUI's LLM text encoders in ComfyUI's own naming
 * (`text_encoders.qwen3_4b.transformer.lm_head`, `…transformer.model.lm_head`). comfy/lora.py's
 * model_lora_keys_clip maps `text_encoders.<key>` onto the encoder model's own weights only, and
 * comfy/text_encoders/llama.py's Llama2_ (the model under `transformer.model.`) makes a head,
 * `model.lm_head`, only where its config's `lm_head` is set:
 * - not set (Llama2Config, Gemma2/Gemma3/Gemma 4, Qwen2.5-VL 3B, Qwen3 0.6B/2B/4B, Qwen3-VL 4B/32B, Qwen3.5 0.8B/2B/4B, which read
 *   logits from the tied `embed_tokens`, and the Mistrals, whose stored head it leaves unread): ComfyUI's model has no head, the encoder conditions on
 *   hidden states, and load_lora leaves the module unloaded ("lora key not loaded"). Merged, it would
 *   be written as a head of its own, a weight ComfyUI never reads: left out with a warning.
 * - set (Qwen25_7BVLI_Config, Qwen3_8BConfig and Qwen3VL_8BConfig, which inherits it, and qwen35.py's
 *   9B and 27B: the untied heads of Qwen2.5-VL 7B, Qwen3 8B, Qwen3-VL 8B and Qwen3.5 9B/27B, which
 *   ComfyUI's text generation reads):
 *   `…transformer.model.lm_head` is patched, on the weight comfy/sd.py's load_text_encoder_state_dicts
 *   fills from the checkpoint's `lm_head.weight` (transformers' name, at the top of the file or of
 *   the pipeline folder): merged there, and refused where the base holds no head. A bare
 *   `…transformer.lm_head` names no key of that model: left out with a warning.
 * kohya's `lora_te_lm_head` on a ComfyUI bundle's one LLM encoder (which comfy/lora.py maps as
 * `lora_te_` + the path after `<name>.transformer.model.`) names that same `model.lm_head`, and is
 * handled alike. A base holding the exact key the name gives (a ComfyUI bundle that stores it) takes
 * it by name.
 */
import type { Layout } from './layout.js';

/**
 * ComfyUI's names of its LLM text encoders whose model has no head (hunyuan_video.py's and
 * hidream.py's `llama`, omnigen2.py's `qwen25_3b`, lumina2.py's `gemma2_2b` and `gemma3_4b`, lt.py's
 * `gemma3_12b`, z_image.py's, flux.py's, anima.py's, ovis.py's and ace15.py's small Qwen3s,
 * qwen3vl.py's `qwen3vl_4b`, flux.py's FLUX.2 `mistral3_24b` and ernie.py's `ministral3_3b`, whose
 * Mistral3Small24BConfig and Ministral3_3BConfig set no head though the checkpoints store an untied one).
 */
const HEADLESS = new Set([
  'llama', 'qwen25_3b', 'gemma2_2b', 'gemma3_4b', 'gemma3_12b', 'qwen3_06b', 'qwen3_2b', 'qwen3_4b', 'qwen3vl_4b', 'mistral3_24b', 'ministral3_3b',
  // minimax.py's qwen3vl_32b (Qwen3VL_32BConfig: lm_head False), qwen35.py's three smaller Qwen3.5s
  // (QWEN35_MODELS sets no lm_head for them: Qwen35Config's is False), and gemma4.py's gemma4 (Gemma4Config: lm_head False).
  'qwen3vl_32b', 'qwen35_08b', 'qwen35_2b', 'qwen35_4b', 'gemma4',
]);

/**
 * Those whose model keeps an untied head as `model.lm_head` (qwen_image.py's and hunyuan_image.py's
 * `qwen25_7b`, flux.py's `qwen3_8b`, qwen3vl.py's `qwen3vl_8b`, and qwen35.py's `qwen35_9b` and
 * `qwen35_27b`, whose QWEN35_MODELS entries set lm_head=True).
 */
const HEADED = new Set(['qwen25_7b', 'qwen3_8b', 'qwen3vl_8b', 'qwen35_9b', 'qwen35_27b']);

const HEAD = /^text_encoders\.([^.]+)\.transformer\.((?:model\.)?lm_head)$/;

/** Where a base holds a transformers LLM's head: at the top of its file (`lm_head.weight`, or ComfyUI's `model.lm_head.weight`), or of a pipeline's text encoder folder. */
const STORED_HEAD = /^(?:text_encoder(?:_\d)?\.)?(?:model\.)?lm_head\.weight$/;

/**
 * kohya's `lora_te_lm_head` on a ComfyUI bundle's one LLM encoder, which comfy/lora.py maps as
 * `lora_te_` + the path after `<name>.transformer.model.`: the head `model.lm_head` where that
 * model has one. As HEAD's match: the encoder's name and `model.lm_head`.
 */
function kohyaHead(address: { part?: string; path: string; flat?: boolean }, keys: readonly string[]): [string, string, string] | undefined {
  if (address.part !== 'te' || !address.flat || address.path !== 'lm_head') return undefined;
  const name = /^text_encoders\.([^.]+)\.transformer\./.exec(keys[0] ?? '')?.[1];
  if (name === undefined || !keys.every((k) => k.startsWith(`text_encoders.${name}.transformer.`))) return undefined;
  return [address.path, name, 'model.lm_head'];
}

/** Places or leaves out a ComfyUI LLM encoder's head module where the base holds no tensor of its exact name. */
export const comfyLlmHead: Layout = {
  name: 'comfy-llm-head',
  resolve(address, base) {
    if (address.tensor) return undefined;
    const m = address.part === undefined ? HEAD.exec(address.path) : kohyaHead(address, base.keys);
    if (!m || !(HEADLESS.has(m[1]) || HEADED.has(m[1]))) return undefined;
    const exact = address.part === undefined ? `${address.path}.weight` : `text_encoders.${m[1]}.transformer.model.lm_head.weight`;
    if (base.keys.includes(exact)) return undefined;
    const [name, head] = [m[1], m[2]];
    const encoder = `ComfyUI's ${name} text encoder (text_encoders.${name}.)`;
    const unloaded = 'so ComfyUI\'s loader leaves the module unloaded ("lora key not loaded")';
    if (HEADLESS.has(name)) {
      return {
        found: false, ambiguous: true, candidates: [], leftOut: true,
        why: `names the output head (${head}) of ${encoder}, which ComfyUI's model of that encoder does not have (ComfyUI conditions on the encoder's hidden states), ${unloaded}`,
      };
    }
    if (head === 'lm_head') {
      return {
        found: false, ambiguous: true, candidates: [], leftOut: true,
        why: `names lm_head of ${encoder}, whose ComfyUI model keeps its head as model.lm_head and has no lm_head of its own, ${unloaded}`,
      };
    }
    const stored = base.keys.filter((k) => STORED_HEAD.test(k));
    if (stored.length === 1) return { found: true, targets: [{ baseKey: stored[0] }] };
    return {
      found: false, ambiguous: true, candidates: stored,
      why: stored.length === 0
        ? `names the output head (model.lm_head) of ${encoder}, which ComfyUI's model has and patches (loaded from the checkpoint's lm_head.weight), but the base stores no head for it (lm_head.weight, or text_encoders.${name}.transformer.model.lm_head.weight as ComfyUI saves it): merge into the encoder's checkpoint with its head`
        : `names the output head (model.lm_head) of ${encoder}, and the base holds ${stored.join(' and ')}, so which is its head cannot be told`,
    };
  },
};
