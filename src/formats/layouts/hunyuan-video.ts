/**
 * Layout: Tencent's Hunyuan DiTs — HunyuanVideo (T2V, I2V, SkyReels and other fine-tunes),
 * HunyuanImage 2.1 and HunyuanVideo 1.5 — in their original naming (Tencent's checkpoints,
 * musubi-tuner, sd-scripts, diffusion-pipe: `double_blocks.N.img_attn_qkv`, `img_mlp.fc1`,
 * `img_mod.linear`, `single_blocks.N.linear1`), in ComfyUI's internal naming of the same tensors
 * (`img_attn.qkv`, `img_mlp.0`, `img_mod.lin`, `time_in.in_layer`: its extracted LoRAs, saved
 * checkpoints and converted LoRAs) and in diffusers' (`transformer_blocks.N.attn.to_q`), any way
 * round. The renames are those of diffusers' scripts/convert_hunyuan_video_to_diffusers.py (and
 * its LoRA twin _convert_hunyuan_video_lora_to_diffusers), convert_hunyuan_image_to_diffusers.py
 * and convert_hunyuan_video1_5_to_diffusers.py; ComfyUI's are its state-dict conversion for these
 * models:
 * - q, k, v are the thirds of img_attn_qkv (add_q/k/v_proj of txt_attn_qkv; the token refiner's
 *   self_attn_qkv likewise). HunyuanVideo 1.5 stores them apart (`img_attn_q`), ComfyUI fused;
 * - single_blocks.N.linear1 is q, k, v (h rows each) and proj_mlp (4h rows);
 * - final_layer.adaLN_modulation.1 is (shift, scale) and diffusers' norm_out.linear (scale, shift):
 *   its two halves are swapped. Every other modulation keeps its order (img_mod/norm1 both
 *   shift, scale, gate ×2; modulation/norm shift, scale, gate; the refiner's adaLN gate_msa, gate_mlp);
 * - the q/k RMSNorms: Tencent's `img_attn_q_norm.weight` (`single_blocks.N.q_norm.weight`) is
 *   ComfyUI's `img_attn.norm.query_norm.scale` (`single_blocks.N.norm.query_norm.scale`: its
 *   state-dict conversion renames `.weight` to `.scale`, the values as they are) and diffusers'
 *   `attn.norm_q.weight` (`norm_added_q` for txt), one weight of the head size in all three.
 * The blocks are named alike in the three models; their timestep embedders are not (diffusers'
 * `time_text_embed`, `time_guidance_embed`, `time_embed`), so each model's are a table of their own,
 * tried in turn: only the one whose tensors the base holds can place a module.
 *
 * It answers only on a base with these models' text token refiner, and there alone: the Flux
 * layout, whose BFL names ComfyUI's naming shares, leaves such bases to it (its suffix matches
 * would take the refiner's `context_embedder.time_text_embed.*` for a missing `time_text_embed.*`).
 */
import { RenameTable, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout, LayoutResolution } from './layout.js';
import { modelPrefix, prefixBefore } from './model-prefix.js';

/** A rule: the original name, ComfyUI's if it differs, and the split tensors in row order (units). */
function rule(original: string, comfy: string | null, parts: [string, number][], swapHalves?: 'always'): RenameRule {
  return {
    fused: original, ...(comfy ? { aliases: [comfy] } : {}), parts: parts.map(([name, units]) => ({ name, units })), ...(swapHalves ? { swapHalves } : {}),
  };
}
const qkv = (prefix: string, q: string, k: string, v: string): [string, number][] => [[`${prefix}.${q}`, 1], [`${prefix}.${k}`, 1], [`${prefix}.${v}`, 1]];
/** A TimestepEmbedder (`mlp.0`, `mlp.2`; ComfyUI's `in_layer`, `out_layer`) onto diffusers' `linear_1`, `linear_2`. */
const timestep = (original: string, diffusers: string): RenameRule[] => [
  rule(`${original}.mlp.0`, `${original}.in_layer`, [[`${diffusers}.linear_1`, 1]]),
  rule(`${original}.mlp.2`, `${original}.out_layer`, [[`${diffusers}.linear_2`, 1]]),
];

const O = 'double_blocks.{i}';
const D = 'transformer_blocks.{i}';
const OS = 'single_blocks.{i}';
const S = 'single_transformer_blocks.{i}';
const OR = 'txt_in.individual_token_refiner.blocks.{i}';
const R = 'context_embedder.token_refiner.refiner_blocks.{i}';

/** The blocks, the token refiner, the ByT5 mapper and the final layer: alike in all three models. */
const SHARED_RULES: readonly RenameRule[] = [
  // Double-stream blocks.
  rule(`${O}.img_attn_qkv`, `${O}.img_attn.qkv`, qkv(`${D}.attn`, 'to_q', 'to_k', 'to_v')),
  rule(`${O}.txt_attn_qkv`, `${O}.txt_attn.qkv`, qkv(`${D}.attn`, 'add_q_proj', 'add_k_proj', 'add_v_proj')),
  rule(`${O}.img_attn_proj`, `${O}.img_attn.proj`, [[`${D}.attn.to_out.0`, 1]]),
  rule(`${O}.txt_attn_proj`, `${O}.txt_attn.proj`, [[`${D}.attn.to_add_out`, 1]]),
  rule(`${O}.img_mlp.fc1`, `${O}.img_mlp.0`, [[`${D}.ff.net.0.proj`, 1]]),
  rule(`${O}.img_mlp.fc2`, `${O}.img_mlp.2`, [[`${D}.ff.net.2`, 1]]),
  rule(`${O}.txt_mlp.fc1`, `${O}.txt_mlp.0`, [[`${D}.ff_context.net.0.proj`, 1]]),
  rule(`${O}.txt_mlp.fc2`, `${O}.txt_mlp.2`, [[`${D}.ff_context.net.2`, 1]]),
  rule(`${O}.img_mod.linear`, `${O}.img_mod.lin`, [[`${D}.norm1.linear`, 1]]),
  rule(`${O}.txt_mod.linear`, `${O}.txt_mod.lin`, [[`${D}.norm1_context.linear`, 1]]),
  rule(`${O}.img_attn_q_norm`, `${O}.img_attn.norm.query_norm:scale`, [[`${D}.attn.norm_q`, 1]]),
  rule(`${O}.img_attn_k_norm`, `${O}.img_attn.norm.key_norm:scale`, [[`${D}.attn.norm_k`, 1]]),
  rule(`${O}.txt_attn_q_norm`, `${O}.txt_attn.norm.query_norm:scale`, [[`${D}.attn.norm_added_q`, 1]]),
  rule(`${O}.txt_attn_k_norm`, `${O}.txt_attn.norm.key_norm:scale`, [[`${D}.attn.norm_added_k`, 1]]),
  // Single-stream blocks: linear1 is q, k, v and the MLP's input, stacked by rows.
  rule(`${OS}.linear1`, null, [...qkv(`${S}.attn`, 'to_q', 'to_k', 'to_v'), [`${S}.proj_mlp`, 4]]),
  rule(`${OS}.linear2`, null, [[`${S}.proj_out`, 1]]),
  rule(`${OS}.modulation.linear`, `${OS}.modulation.lin`, [[`${S}.norm.linear`, 1]]),
  rule(`${OS}.q_norm`, `${OS}.norm.query_norm:scale`, [[`${S}.attn.norm_q`, 1]]),
  rule(`${OS}.k_norm`, `${OS}.norm.key_norm:scale`, [[`${S}.attn.norm_k`, 1]]),
  // The text token refiner (txt_in).
  rule('txt_in.input_embedder', null, [['context_embedder.proj_in', 1]]),
  ...timestep('txt_in.t_embedder', 'context_embedder.time_text_embed.timestep_embedder'),
  rule('txt_in.c_embedder.linear_1', 'txt_in.c_embedder.in_layer', [['context_embedder.time_text_embed.text_embedder.linear_1', 1]]),
  rule('txt_in.c_embedder.linear_2', 'txt_in.c_embedder.out_layer', [['context_embedder.time_text_embed.text_embedder.linear_2', 1]]),
  rule(`${OR}.self_attn_qkv`, `${OR}.self_attn.qkv`, qkv(`${R}.attn`, 'to_q', 'to_k', 'to_v')),
  rule(`${OR}.self_attn_proj`, `${OR}.self_attn.proj`, [[`${R}.attn.to_out.0`, 1]]),
  rule(`${OR}.mlp.fc1`, `${OR}.mlp.0`, [[`${R}.ff.net.0.proj`, 1]]),
  rule(`${OR}.mlp.fc2`, `${OR}.mlp.2`, [[`${R}.ff.net.2`, 1]]),
  rule(`${OR}.adaLN_modulation.1`, null, [[`${R}.norm_out.linear`, 1]]),
  rule(`${OR}.norm1`, null, [[`${R}.norm1`, 1]]),
  rule(`${OR}.norm2`, null, [[`${R}.norm2`, 1]]),
  // HunyuanImage 2.1 and HunyuanVideo 1.5: the ByT5 glyph-text mapper.
  rule('byt5_in.layernorm', null, [['context_embedder_2.norm', 1]]),
  rule('byt5_in.fc1', null, [['context_embedder_2.linear_1', 1]]),
  rule('byt5_in.fc2', null, [['context_embedder_2.linear_2', 1]]),
  rule('byt5_in.fc3', null, [['context_embedder_2.linear_3', 1]]),
  // The patch embedding and the final layer.
  rule('img_in.proj', null, [['x_embedder.proj', 1]]),
  rule('final_layer.linear', null, [['proj_out', 1]]),
  rule('final_layer.adaLN_modulation.1', null, [['norm_out.linear', 1]], 'always'),
];

/** HunyuanVideo (HunyuanVideoTransformer3DModel): timestep, guidance and pooled CLIP embedders. */
export const HUNYUAN_VIDEO_RULES: readonly RenameRule[] = [
  ...SHARED_RULES,
  ...timestep('time_in', 'time_text_embed.timestep_embedder'),
  ...timestep('guidance_in', 'time_text_embed.guidance_embedder'),
  rule('vector_in.in_layer', null, [['time_text_embed.text_embedder.linear_1', 1]]),
  rule('vector_in.out_layer', null, [['time_text_embed.text_embedder.linear_2', 1]]),
];

/** HunyuanImage 2.1 (HunyuanImageTransformer2DModel): its distilled models' meanflow and guidance embedders. */
export const HUNYUAN_IMAGE_RULES: readonly RenameRule[] = [
  ...timestep('time_in', 'time_guidance_embed.timestep_embedder'),
  ...timestep('time_r_in', 'time_guidance_embed.timestep_embedder_r'),
  ...timestep('guidance_in', 'time_guidance_embed.guidance_embedder'),
];

/** HunyuanVideo 1.5 (HunyuanVideo15Transformer3DModel): q, k, v apart, the vision-token projection. */
export const HUNYUAN_VIDEO_15_RULES: readonly RenameRule[] = [
  rule(`${O}.img_attn_q`, null, [[`${D}.attn.to_q`, 1]]),
  rule(`${O}.img_attn_k`, null, [[`${D}.attn.to_k`, 1]]),
  rule(`${O}.img_attn_v`, null, [[`${D}.attn.to_v`, 1]]),
  rule(`${O}.txt_attn_q`, null, [[`${D}.attn.add_q_proj`, 1]]),
  rule(`${O}.txt_attn_k`, null, [[`${D}.attn.add_k_proj`, 1]]),
  rule(`${O}.txt_attn_v`, null, [[`${D}.attn.add_v_proj`, 1]]),
  ...timestep('time_in', 'time_embed.timestep_embedder'),
  ...timestep('time_r_in', 'time_embed.timestep_embedder_r'),
  rule('vision_in.proj.0', null, [['image_embedder.norm_in', 1]]),
  rule('vision_in.proj.1', null, [['image_embedder.linear_1', 1]]),
  rule('vision_in.proj.3', null, [['image_embedder.linear_2', 1]]),
  rule('vision_in.proj.4', null, [['image_embedder.norm_out', 1]]),
  rule('cond_type_embedding', null, [['cond_type_embed', 1]]),
];

/** ComfyUI fuses HunyuanVideo 1.5's q, k, v on load: its LoRAs' qkv is the three original tensors' rows. */
export const HUNYUAN_VIDEO_15_FUSED_RULES: readonly RenameRule[] = [
  rule(`${O}.img_attn_qkv`, `${O}.img_attn.qkv`, [[`${O}.img_attn_q`, 1], [`${O}.img_attn_k`, 1], [`${O}.img_attn_v`, 1]]),
  rule(`${O}.txt_attn_qkv`, `${O}.txt_attn.qkv`, [[`${O}.txt_attn_q`, 1], [`${O}.txt_attn_k`, 1], [`${O}.txt_attn_v`, 1]]),
];

/** The text token refiner is these models' own: Flux, which shares the block names, has none. */
const TOKEN_REFINER = /(^|\.)(txt_in\.individual_token_refiner\.blocks|context_embedder\.token_refiner\.refiner_blocks)\.\d+\./;
/**
 * The prefix of the model's keys, or null: not one of these models. Names are looked up exactly
 * under it: a suffix match would take the token refiner's
 * `context_embedder.time_text_embed.timestep_embedder` for the model's own
 * `time_text_embed.timestep_embedder` on a model that has none (HunyuanImage, HunyuanVideo 1.5).
 */
const HUNYUAN_DIT = modelPrefix((key) => {
  const m = TOKEN_REFINER.exec(key);
  return m ? prefixBefore(key, m) : undefined;
});

/** Is this base one of Tencent's Hunyuan DiTs (it holds their text token refiner)? */
export function isHunyuanDit(base: BaseView): boolean {
  return HUNYUAN_DIT.of(base) !== null;
}

const TABLES = [HUNYUAN_VIDEO_RULES, HUNYUAN_IMAGE_RULES, HUNYUAN_VIDEO_15_RULES, HUNYUAN_VIDEO_15_FUSED_RULES]
  .map((rules) => new RenameTable(rules, () => false, HUNYUAN_DIT.lookup));

/**
 * The prefixes diffusers' converter strips. A single file's are already gone (they name the model
 * part); a PEFT folder keeps its keys' (diffusion-pipe saves `transformer.` + Tencent's names).
 */
const SAVED_PREFIX = /^(transformer|diffusion_model)\./;

export const hunyuanVideo: Layout = {
  name: 'hunyuan-video',
  renames: TABLES,
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    if (!isHunyuanDit(base)) return undefined;
    const path = address.part === undefined ? address.path.replace(SAVED_PREFIX, '') : address.path;
    // The first table that places the module decides; else the first that knew its name says it missed.
    let miss: LayoutResolution | undefined;
    for (const table of TABLES) {
      const r = table.resolve(path, base);
      if (r?.found || (r && r.ambiguous)) return r;
      miss ??= r;
    }
    return miss;
  },
};
