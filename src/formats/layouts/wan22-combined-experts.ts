/**
 * Layout (refusal only): ai-toolkit's combined LoRA of Wan 2.2 A14B's two experts. Trained on both
 * with `split_multistage_loras` off, ai-toolkit saves one file whose modules name the expert after
 * `diffusion_model.`: `transformer_1.` the high-noise expert, `transformer_2.` the low-noise one
 * (extensions_built_in/diffusion_models/wan22/wan22_14b_model.py, DualWanTransformer3DModel and
 * save_lora); only ai-toolkit loads that file (ComfyUI maps no such key, diffusers neither). Each
 * expert is a model of its own with the same names and shapes, so stripped of its expert a module
 * would land by name on whichever expert the base is, the other expert's modules with it. A module
 * so named is refused wherever the base has no tensor of that exact name, ahead of the layouts that
 * look a name up by its tail (and would find `blocks.0.attn1.to_q` in `transformer_2.blocks.0.…`).
 */
import type { Layout } from './layout.js';

const EXPERT = /^transformer_([12])\.(blocks|patch_embedding|condition_embedder|proj_out|scale_shift_table|text_embedding|time_embedding|time_projection|img_emb|head)\b/;

export const wan22CombinedExperts: Layout = {
  name: 'wan22-combined-experts',
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    const m = EXPERT.exec(address.path);
    if (!m) return undefined;
    // A base that holds the name with its expert (none known) decides by itself.
    const head = `${m[0]}`;
    if (base.keys.some((k) => k.startsWith(head) || k.includes(`.${head}`))) return undefined;
    const which = m[1] === '1' ? 'high-noise' : 'low-noise';
    return {
      found: false, ambiguous: true, candidates: [],
      why: `names Wan 2.2 A14B's ${which} expert as ai-toolkit's combined LoRA of both experts does (transformer_1. the high-noise expert, transformer_2. the low-noise one), a file only ai-toolkit loads: not supported; merge each expert's LoRA into that expert from a file of its own (ai-toolkit's split_multistage_loras writes …_high_noise.safetensors and …_low_noise.safetensors)`,
    };
  },
};
