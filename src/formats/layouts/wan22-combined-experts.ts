/**
 * Layout: ai-toolkit's combined LoRA of Wan 2.2 A14B's two experts. Trained on both with
 * `split_multistage_loras` off, ai-toolkit saves one file whose modules name the expert after
 * `diffusion_model.`: `transformer_1.` the high-noise expert, `transformer_2.` the low-noise one
 * (extensions_built_in/diffusion_models/wan22/wan22_14b_model.py, DualWanTransformer3DModel and
 * save_lora). ai-toolkit is the one tool that applies it: it loads transformer_1 from a diffusers
 * pipeline's `transformer/` and transformer_2 from the `transformer_2/` beside it (load_wan_transformer)
 * and runs transformer_1 above the boundary timestep, as diffusers' WanPipeline runs `transformer`
 * (pipeline_wan.py). ComfyUI maps no `diffusion_model.transformer_1.` key (comfy/lora.py), nor does
 * diffusers (_convert_non_diffusers_wan_lora_to_diffusers reads `blocks.N.` right after the prefix).
 *
 * So on a pipeline whose model_index.json says which expert each folder is (base-model.ts
 * wan22Experts), each module lands in its expert's folder by its path after the expert, as a single
 * expert's file lands there (combinedExpert, asked by the locator before the layouts). Anywhere
 * else (one expert's folder, Comfy-Org's split file) each expert is a model of its own with the same
 * names and shapes, so stripped of its expert a module would land by name on whichever expert the
 * base is, the other expert's modules with it: refused wherever the base has no tensor of that exact
 * name, ahead of the layouts that look a name up by its tail (and would find `blocks.0.attn1.to_q`
 * in `transformer_2.blocks.0.…`).
 */
import type { BaseComponent } from '../base-components.js';
import type { ModuleAddress } from '../module-address.js';
import type { Layout } from './layout.js';

const EXPERT = /^transformer_([12])\.(blocks|patch_embedding|condition_embedder|proj_out|scale_shift_table|text_embedding|time_embedding|time_projection|img_emb|head)\b/;

/** Refuses a combined-file module wherever the locator did not land it in its expert (combinedExpert). */
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

/**
 * A combined-file module's expert on a base whose components say which expert each is (a Wan 2.2
 * A14B diffusers pipeline): that component, and the module's address there (its path after
 * `transformer_N.`, as a single expert's file names it). Undefined where the module names no expert
 * or the base holds not both experts, which leaves the module to the layouts (and its refusal).
 */
export function combinedExpert(address: ModuleAddress, components: readonly BaseComponent[]): { component: BaseComponent; address: ModuleAddress } | undefined {
  if (address.part !== 'unet') return undefined;
  const m = EXPERT.exec(address.path);
  if (!m) return undefined;
  const high = components.find((c) => c.noiseExpert === 'high-noise');
  const low = components.find((c) => c.noiseExpert === 'low-noise');
  if (!high || !low) return undefined;
  return { component: m[1] === '1' ? high : low, address: { ...address, path: address.path.slice('transformer_N.'.length) } };
}

/** Whether a module's name (as its file spells it) names one of the two experts, as the combined file's do. */
export function namesWan22Expert(moduleName: string): boolean {
  return EXPERT.test(moduleName.replace(/^diffusion_model\./, ''));
}
