/**
 * Layout: Ideogram 4 LoRAs in the original transformer's names (ai-toolkit's, under `diffusion_model.`:
 * `layers.N.attention.qkv`, one fused q/k/v projection, and `layers.N.attention.o`) on diffusers'
 * Ideogram4Transformer2DModel (`layers.N.attention.to_q`, `to_k`, `to_v`, `to_out.0`), as diffusers'
 * `_convert_non_diffusers_ideogram4_lora_to_diffusers` (which Ideogram4LoraLoaderMixin runs on a file with
 * `diffusion_model.` keys or any `.attention.qkv.`) places them:
 * - `attention.qkv`'s ΔW rows in three equal parts (lora_A shared, lora_B chunked in thirds) on `to_q`,
 *   `to_k`, `to_v` (the attention is multi-head, each hidden × hidden);
 * - `attention.o` is `attention.to_out.0`;
 * - `feed_forward.w1`/`w2`/`w3` and `adaln_modulation` keep their names and land by name before this
 *   layout is asked.
 *
 * It answers only on a diffusers Ideogram 4 transformer (a layer's `attention.to_q` beside
 * `llm_cond_proj` and `adaln_proj`). The original checkpoint's own key names are not read here: no
 * converter of diffusers or ComfyUI states them, so a diffusers-named LoRA on such a file is left to the
 * names it shares.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

const A = 'layers.{i}.attention';
export const IDEOGRAM4_RULES: readonly RenameRule[] = [
  { fused: `${A}.qkv`, parts: [{ name: `${A}.to_q`, units: 1 }, { name: `${A}.to_k`, units: 1 }, { name: `${A}.to_v`, units: 1 }] },
  oneToOne(`${A}.o`, `${A}.to_out.0`),
];

const MARKER = /(^|\.)layers\.\d+\.attention\.to_q\.weight$/;
const IDEOGRAM4 = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}llm_cond_proj.weight`) && base.index.has(`${p}adaln_proj.weight`) ? p : null;
});

/** The Ideogram 4 layout, in the registry (./index.ts). */
export const ideogram4 = modelLayout('ideogram4', IDEOGRAM4, IDEOGRAM4_RULES);
