/**
 * Layout (left out only): the output head of one of ComfyUI's LLM text encoders in ComfyUI's own
 * naming (`text_encoders.qwen3_4b.transformer.lm_head`, or `…transformer.model.lm_head` where its
 * model would keep one). ComfyUI's models of these encoders have no head: comfy/text_encoders/llama.py's
 * Llama2_ makes an `lm_head` only when its config's `lm_head` is set, which none of these encoders'
 * configs set (Qwen3's reads its logits from `embed_tokens`, the weight a tied model shares), and
 * the encoders condition the diffusion model on hidden states. comfy/lora.py's model_lora_keys_clip
 * maps `text_encoders.<key>` only onto the model's own weights, so load_lora leaves such a module
 * unloaded ("lora key not loaded"). Merged, it would be written as a head of its own (an untied
 * `lm_head.weight` beside a tied embedding, or a stored one changed), a weight ComfyUI never reads:
 * left out, with a warning, wherever the base does not hold the exact key the name gives (a ComfyUI
 * bundle storing one, where it lands by name).
 */
import type { Layout } from './layout.js';

/**
 * ComfyUI's names of its LLM text encoders built on llama.py's Llama2_ with no head (hunyuan_video.py's
 * and hidream.py's `llama`, qwen_image.py's `qwen25_7b`, omnigen2.py's `qwen25_3b`, lumina2.py's
 * `gemma2_2b` and `gemma3_4b`, lt.py's `gemma3_12b`, z_image.py's, flux.py's, anima.py's, ovis.py's
 * and ace15.py's Qwen3s).
 */
const HEADLESS = new Set(['llama', 'qwen25_7b', 'qwen25_3b', 'gemma2_2b', 'gemma3_4b', 'gemma3_12b', 'qwen3_06b', 'qwen3_2b', 'qwen3_4b', 'qwen3_8b']);

const HEAD = /^text_encoders\.([^.]+)\.transformer\.((?:model\.)?lm_head)$/;

/** Leaves out a ComfyUI LLM encoder's `lm_head` module where the base holds no tensor of its exact name. */
export const comfyLlmHead: Layout = {
  name: 'comfy-llm-head',
  resolve(address, base) {
    if (address.part !== undefined || address.tensor) return undefined;
    const m = HEAD.exec(address.path);
    if (!m || !HEADLESS.has(m[1])) return undefined;
    if (base.keys.includes(`${address.path}.weight`)) return undefined;
    return {
      found: false, ambiguous: true, candidates: [], leftOut: true,
      why: `names the output head (${m[2]}) of ComfyUI's ${m[1]} text encoder (text_encoders.${m[1]}.), which ComfyUI's model of that encoder does not have (ComfyUI conditions on the encoder's hidden states), so ComfyUI's loader leaves the module unloaded ("lora key not loaded")`,
    };
  },
};
