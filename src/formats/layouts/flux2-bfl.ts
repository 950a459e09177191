/**
 * Layout: FLUX.2 (dev, klein) in BFL's naming (the single files BFL and Comfy-Org ship, ai-toolkit's
 * and musubi-tuner's LoRAs: `double_blocks.N.img_attn.qkv`, `single_blocks.N.linear1`) and in
 * diffusers' (`Flux2Transformer2DModel`: `transformer_blocks.N.attn.to_q`,
 * `single_transformer_blocks.N.attn.to_qkv_mlp_proj`), either way round, as diffusers'
 * scripts/convert_flux2_to_diffusers.py renames the model:
 * - q, k, v are the thirds of img_attn.qkv (add_q/k/v_proj of txt_attn.qkv);
 * - the MLPs are SwiGLU (`img_mlp.0` = gate and up, 2·3h rows) and keep their rows: `ff.linear_in`;
 * - single_blocks.N.linear1 (q, k, v, then the MLP's gate and up: 3h + 6h rows) stays one tensor,
 *   `attn.to_qkv_mlp_proj`, and linear2 is `attn.to_out`;
 * - the modulations are shared by all blocks (`double_stream_modulation_img.lin` → `.linear`);
 * - the q/k RMSNorms: BFL's `img_attn.norm.query_norm.scale` is diffusers' `attn.norm_q.weight`
 *   (`norm_added_q` for txt; a single block's `norm.query_norm.scale` `attn.norm_q.weight`), as for FLUX.1;
 * - final_layer.adaLN_modulation.1 is norm_out.linear with its two halves (shift, scale) swapped,
 *   as the model conversion swaps them. diffusers' LoRA converter
 *   (_convert_non_diffusers_flux2_lora_to_diffusers) renames it without the swap; we follow the
 *   model, as for FLUX.1.
 *
 * It answers only on a FLUX.2 base (it holds the shared modulations), where the FLUX.1 layout steps
 * aside: FLUX.1's single-block names (`attn.to_q`, `proj_mlp` as rows of a 3h + 4h linear1) and
 * per-block modulations do not exist in FLUX.2, and a FLUX.1 module is refused with that reason.
 */
import { oneToOne, RenameTable, type KeyLookup, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout, LayoutResolution } from './layout.js';
import { modelPrefix, prefixBefore } from './model-prefix.js';

const thirds = (fused: string, q: string, k: string, v: string): RenameRule => ({
  fused, parts: [{ name: q, units: 1 }, { name: k, units: 1 }, { name: v, units: 1 }],
});

const D = 'transformer_blocks.{i}';
const S = 'single_transformer_blocks.{i}';
/** The q/k RMSNorms of FLUX.1 and FLUX.2 alike: BFL's `scale` parameter, diffusers' `weight`. */
export function qkNormRules(): RenameRule[] {
  return [
    oneToOne(`double_blocks.{i}.img_attn.norm.query_norm:scale`, `${D}.attn.norm_q`),
    oneToOne(`double_blocks.{i}.img_attn.norm.key_norm:scale`, `${D}.attn.norm_k`),
    oneToOne(`double_blocks.{i}.txt_attn.norm.query_norm:scale`, `${D}.attn.norm_added_q`),
    oneToOne(`double_blocks.{i}.txt_attn.norm.key_norm:scale`, `${D}.attn.norm_added_k`),
    oneToOne(`single_blocks.{i}.norm.query_norm:scale`, `${S}.attn.norm_q`),
    oneToOne(`single_blocks.{i}.norm.key_norm:scale`, `${S}.attn.norm_k`),
  ];
}

export const FLUX2_RULES: readonly RenameRule[] = [
  thirds('double_blocks.{i}.img_attn.qkv', `${D}.attn.to_q`, `${D}.attn.to_k`, `${D}.attn.to_v`),
  thirds('double_blocks.{i}.txt_attn.qkv', `${D}.attn.add_q_proj`, `${D}.attn.add_k_proj`, `${D}.attn.add_v_proj`),
  oneToOne('double_blocks.{i}.img_attn.proj', `${D}.attn.to_out.0`),
  oneToOne('double_blocks.{i}.txt_attn.proj', `${D}.attn.to_add_out`),
  oneToOne('double_blocks.{i}.img_mlp.0', `${D}.ff.linear_in`),
  oneToOne('double_blocks.{i}.img_mlp.2', `${D}.ff.linear_out`),
  oneToOne('double_blocks.{i}.txt_mlp.0', `${D}.ff_context.linear_in`),
  oneToOne('double_blocks.{i}.txt_mlp.2', `${D}.ff_context.linear_out`),
  oneToOne('single_blocks.{i}.linear1', `${S}.attn.to_qkv_mlp_proj`),
  oneToOne('single_blocks.{i}.linear2', `${S}.attn.to_out`),
  oneToOne('double_stream_modulation_img.lin', 'double_stream_modulation_img.linear'),
  oneToOne('double_stream_modulation_txt.lin', 'double_stream_modulation_txt.linear'),
  oneToOne('single_stream_modulation.lin', 'single_stream_modulation.linear'),
  oneToOne('img_in', 'x_embedder'),
  oneToOne('txt_in', 'context_embedder'),
  oneToOne('time_in.in_layer', 'time_guidance_embed.timestep_embedder.linear_1'),
  oneToOne('time_in.out_layer', 'time_guidance_embed.timestep_embedder.linear_2'),
  oneToOne('guidance_in.in_layer', 'time_guidance_embed.guidance_embedder.linear_1'),
  oneToOne('guidance_in.out_layer', 'time_guidance_embed.guidance_embedder.linear_2'),
  oneToOne('final_layer.linear', 'proj_out'),
  oneToOne('final_layer.adaLN_modulation.1', 'norm_out.linear', 'always'),
  ...qkNormRules(),
];

/** FLUX.2's shared modulations, in either naming; FLUX.1 and Chroma have none. */
const SHARED_MODULATION = /(^|\.)(single_stream_modulation|double_stream_modulation_img)\.(lin|linear)\.weight$/;
/**
 * The prefix of the model's keys, or null: not FLUX.2. Names are looked up exactly under it: a
 * suffix match would take the final layer's `proj_out` for a single block's missing `proj_out`
 * (FLUX.1's name for linear2).
 */
const FLUX2 = modelPrefix((key) => {
  const m = SHARED_MODULATION.exec(key);
  return m ? prefixBefore(key, m) : undefined;
});

/** Is this base a FLUX.2 transformer (BFL's or diffusers' naming)? */
export function isFlux2(base: BaseView): boolean {
  return FLUX2.of(base) !== null;
}

/** FLUX.2's names looked up exactly under its model's prefix (for layouts that place parts of its tensors). */
export const FLUX2_LOOKUP: KeyLookup = FLUX2.lookup;

const table = new RenameTable(FLUX2_RULES, () => false, FLUX2.lookup);

/** FLUX.1's modules that FLUX.2 does not have (single-block q/k/v/MLP apart, per-block modulations, CLIP vector). */
const FLUX1_ONLY = new RegExp([
  'single_transformer_blocks[._]\\d+[._](attn[._]to_[qkv]|proj_mlp|proj_out|norm[._]linear)',
  'single_blocks[._]\\d+[._]modulation[._]lin',
  'double_blocks[._]\\d+[._](img|txt)_mod[._]lin',
  'transformer_blocks[._]\\d+[._](norm1(_context)?[._]linear|ff(_context)?[._]net[._]\\d)',
  'vector_in[._]', 'time_text_embed[._]',
].map((p) => `(^|[._])(${p})`).join('|'));
export const FLUX1_MISS: LayoutResolution = {
  found: false, ambiguous: false, candidates: [],
  why: 'is a FLUX.1 module; the base is FLUX.2, which has no such tensor (its single blocks fuse q, k, v and a SwiGLU MLP in linear1 / attn.to_qkv_mlp_proj, and its modulations are shared by all blocks): a FLUX.1 LoRA does not fit a FLUX.2 model',
};

export const flux2Bfl: Layout = {
  name: 'flux2-bfl',
  renames: [table],
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    if (!isFlux2(base)) return undefined;
    const r = table.resolve(address.path, base);
    if (r) return r;
    return FLUX1_ONLY.test(address.path) ? FLUX1_MISS : undefined;
  },
};
