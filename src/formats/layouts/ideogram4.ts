/**
 * Layout: Ideogram 4 in its two namings, either way round. The original transformer's names
 * (`layers.N.attention.qkv`, one fused q/k/v projection, and `layers.N.attention.o`), as ai-toolkit's
 * LoRAs carry them under `diffusion_model.`, OneTrainer's ORIGINAL and COMFY LoRAs and its
 * ORIGINAL_TRANSFORMER checkpoint write them, and diffusers' Ideogram4Transformer2DModel's
 * (`layers.N.attention.to_q`, `to_k`, `to_v`, `to_out.0`), as diffusers'
 * `_convert_non_diffusers_ideogram4_lora_to_diffusers` (which Ideogram4LoraLoaderMixin runs on a file
 * with `diffusion_model.` keys or any `.attention.qkv.`) and OneTrainer's IdeogramModel
 * (fusion_groups, diffusers_to_original: "identical to diffusers except for one rename") place them:
 * - `attention.qkv`'s ΔW rows in three equal parts (lora_A shared, lora_B chunked in thirds) on `to_q`,
 *   `to_k`, `to_v` (the attention is multi-head, each hidden × hidden), and `to_q`, `to_k`, `to_v`
 *   on those thirds of `qkv`, q first, as OneTrainer fuses them;
 * - `attention.o` is `attention.to_out.0`;
 * - `feed_forward.w1`/`w2`/`w3`, `adaln_modulation` and every other module keep their names and land
 *   by name before this layout is asked.
 * A name under `conditional_transformer.` is read without it, as that converter strips the prefix
 * (the original pipeline's conditional transformer, which diffusers loads as `transformer`).
 *
 * It answers only on an Ideogram 4 base (a layer's `attention.to_q` or `attention.qkv` beside
 * `llm_cond_proj` and `adaln_proj`).
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';
import { missBecause, type Layout } from './layout.js';

const A = 'layers.{i}.attention';
export const IDEOGRAM4_RULES: readonly RenameRule[] = [
  { fused: `${A}.qkv`, parts: [{ name: `${A}.to_q`, units: 1 }, { name: `${A}.to_k`, units: 1 }, { name: `${A}.to_v`, units: 1 }] },
  oneToOne(`${A}.o`, `${A}.to_out.0`),
];

const MARKER = /(^|\.)layers\.\d+\.attention\.(to_q|qkv)\.weight$/;
const IDEOGRAM4 = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}llm_cond_proj.weight`) && base.index.has(`${p}adaln_proj.weight`) ? p : null;
});

const renamed = modelLayout('ideogram4', IDEOGRAM4, IDEOGRAM4_RULES);
const CONDITIONAL = 'conditional_transformer.';

/** The Ideogram 4 layout, in the registry (./index.ts). */
export const ideogram4: Layout = {
  name: renamed.name,
  renames: renamed.renames,
  resolve(address, base) {
    if (address.part !== undefined || address.flat || !address.path.startsWith(CONDITIONAL)) return renamed.resolve(address, base);
    const prefix = IDEOGRAM4.of(base);
    if (prefix === null) return undefined;
    // A whole Ideogram4Pipeline holds the unconditional transformer too, under the same names.
    if (base.keys.some((k) => k.startsWith('unconditional_transformer.'))) {
      return missBecause('names the conditional transformer (conditional_transformer.), which diffusers loads as the pipeline\'s transformer/: not supported on the whole pipeline folder; give its transformer/ folder as the base');
    }
    const path = address.path.slice(CONDITIONAL.length);
    const r = renamed.resolve({ ...address, path }, base);
    if (r?.found) return r;
    // Every other module by its own name under the model's prefix (a whole parameter, `….diff`, bare).
    const key = [`${prefix}${path}.weight`, `${prefix}${path}`].find((k) => base.index.has(k));
    return key ? { found: true, targets: [{ baseKey: key }] } : r;
  },
};
