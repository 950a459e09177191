/**
 * Layout: HunyuanVideo (T2V, and I2V, SkyReels and other fine-tunes with the same transformer) in
 * its original naming (Tencent's checkpoints, musubi-tuner, diffusion-pipe: `double_blocks.N.img_attn_qkv`,
 * `img_mlp.fc1`, `img_mod.linear`, `single_blocks.N.linear1`), in ComfyUI's internal naming of the
 * same tensors (`img_attn.qkv`, `img_mlp.0`, `img_mod.lin`: its extracted LoRAs and saved
 * checkpoints) and in diffusers' `HunyuanVideoTransformer3DModel` naming
 * (`transformer_blocks.N.attn.to_q`), any way round. The renames are those of diffusers'
 * scripts/convert_hunyuan_video_to_diffusers.py (and its LoRA twin
 * _convert_hunyuan_video_lora_to_diffusers); ComfyUI's are its HunyuanVideo state-dict conversion:
 * - q, k, v are the thirds of img_attn_qkv (add_q/k/v_proj of txt_attn_qkv; the token refiner's
 *   self_attn_qkv likewise);
 * - single_blocks.N.linear1 is q, k, v (h rows each) and proj_mlp (4h rows);
 * - final_layer.adaLN_modulation.1 is (shift, scale) and diffusers' norm_out.linear (scale, shift):
 *   its two halves are swapped. Every other modulation keeps its order (img_mod/norm1 both
 *   shift, scale, gate ×2; modulation/norm shift, scale, gate; the refiner's adaLN gate_msa, gate_mlp).
 *
 * Left out, so refused by name: ComfyUI's q/k norms (`img_attn.norm.query_norm.scale`), which are
 * stored as `.scale` where the other namings say `.weight`.
 *
 * It answers only on a HunyuanVideo base (one with the text token refiner), ahead of the Flux
 * layout, whose BFL names ComfyUI's naming shares: the plan then names this layout for HunyuanVideo.
 */
import { RenameTable, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout } from './layout.js';

/** A rule: the original name, ComfyUI's if it differs, and diffusers' tensors in row order (units). */
function rule(original: string, comfy: string | null, parts: [string, number][], swapHalves?: 'always'): RenameRule {
  return {
    fused: original, ...(comfy ? { aliases: [comfy] } : {}), parts: parts.map(([name, units]) => ({ name, units })), ...(swapHalves ? { swapHalves } : {}),
  };
}
const qkv = (prefix: string, q: string, k: string, v: string): [string, number][] => [[`${prefix}.${q}`, 1], [`${prefix}.${k}`, 1], [`${prefix}.${v}`, 1]];

const O = 'double_blocks.{i}';
const D = 'transformer_blocks.{i}';
const OS = 'single_blocks.{i}';
const S = 'single_transformer_blocks.{i}';
const OR = 'txt_in.individual_token_refiner.blocks.{i}';
const R = 'context_embedder.token_refiner.refiner_blocks.{i}';

export const HUNYUAN_VIDEO_RULES: readonly RenameRule[] = [
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
  rule(`${O}.img_attn_q_norm`, null, [[`${D}.attn.norm_q`, 1]]),
  rule(`${O}.img_attn_k_norm`, null, [[`${D}.attn.norm_k`, 1]]),
  rule(`${O}.txt_attn_q_norm`, null, [[`${D}.attn.norm_added_q`, 1]]),
  rule(`${O}.txt_attn_k_norm`, null, [[`${D}.attn.norm_added_k`, 1]]),
  // Single-stream blocks: linear1 is q, k, v and the MLP's input, stacked by rows.
  rule(`${OS}.linear1`, null, [...qkv(`${S}.attn`, 'to_q', 'to_k', 'to_v'), [`${S}.proj_mlp`, 4]]),
  rule(`${OS}.linear2`, null, [[`${S}.proj_out`, 1]]),
  rule(`${OS}.modulation.linear`, `${OS}.modulation.lin`, [[`${S}.norm.linear`, 1]]),
  rule(`${OS}.q_norm`, null, [[`${S}.attn.norm_q`, 1]]),
  rule(`${OS}.k_norm`, null, [[`${S}.attn.norm_k`, 1]]),
  // The text token refiner (txt_in).
  rule('txt_in.input_embedder', null, [['context_embedder.proj_in', 1]]),
  rule('txt_in.t_embedder.mlp.0', 'txt_in.t_embedder.in_layer', [['context_embedder.time_text_embed.timestep_embedder.linear_1', 1]]),
  rule('txt_in.t_embedder.mlp.2', 'txt_in.t_embedder.out_layer', [['context_embedder.time_text_embed.timestep_embedder.linear_2', 1]]),
  rule('txt_in.c_embedder.linear_1', 'txt_in.c_embedder.in_layer', [['context_embedder.time_text_embed.text_embedder.linear_1', 1]]),
  rule('txt_in.c_embedder.linear_2', 'txt_in.c_embedder.out_layer', [['context_embedder.time_text_embed.text_embedder.linear_2', 1]]),
  rule(`${OR}.self_attn_qkv`, `${OR}.self_attn.qkv`, qkv(`${R}.attn`, 'to_q', 'to_k', 'to_v')),
  rule(`${OR}.self_attn_proj`, `${OR}.self_attn.proj`, [[`${R}.attn.to_out.0`, 1]]),
  rule(`${OR}.mlp.fc1`, `${OR}.mlp.0`, [[`${R}.ff.net.0.proj`, 1]]),
  rule(`${OR}.mlp.fc2`, `${OR}.mlp.2`, [[`${R}.ff.net.2`, 1]]),
  rule(`${OR}.adaLN_modulation.1`, null, [[`${R}.norm_out.linear`, 1]]),
  rule(`${OR}.norm1`, null, [[`${R}.norm1`, 1]]),
  rule(`${OR}.norm2`, null, [[`${R}.norm2`, 1]]),
  // Embeddings and the final layer.
  rule('img_in.proj', null, [['x_embedder.proj', 1]]),
  rule('time_in.mlp.0', 'time_in.in_layer', [['time_text_embed.timestep_embedder.linear_1', 1]]),
  rule('time_in.mlp.2', 'time_in.out_layer', [['time_text_embed.timestep_embedder.linear_2', 1]]),
  rule('guidance_in.mlp.0', 'guidance_in.in_layer', [['time_text_embed.guidance_embedder.linear_1', 1]]),
  rule('guidance_in.mlp.2', 'guidance_in.out_layer', [['time_text_embed.guidance_embedder.linear_2', 1]]),
  rule('vector_in.in_layer', null, [['time_text_embed.text_embedder.linear_1', 1]]),
  rule('vector_in.out_layer', null, [['time_text_embed.text_embedder.linear_2', 1]]),
  rule('final_layer.linear', null, [['proj_out', 1]]),
  rule('final_layer.adaLN_modulation.1', null, [['norm_out.linear', 1]], 'always'),
];

const table = new RenameTable(HUNYUAN_VIDEO_RULES, () => false);

/** The text token refiner is HunyuanVideo's own: Flux, which shares the block names, has none. */
const TOKEN_REFINER = /(^|\.)(txt_in\.individual_token_refiner\.blocks|context_embedder\.token_refiner\.refiner_blocks)\.\d+\./;
const isHunyuanVideo = new WeakMap<readonly string[], boolean>();

function holdsHunyuanVideo(base: BaseView): boolean {
  let known = isHunyuanVideo.get(base.keys);
  if (known === undefined) isHunyuanVideo.set(base.keys, (known = base.keys.some((k) => TOKEN_REFINER.test(k))));
  return known;
}

/**
 * The prefixes diffusers' converter strips. A single file's are already gone (they name the model
 * part); a PEFT folder keeps its keys' (diffusion-pipe saves `transformer.` + Tencent's names).
 */
const SAVED_PREFIX = /^(transformer|diffusion_model)\./;

export const hunyuanVideo: Layout = {
  name: 'hunyuan-video',
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    if (!holdsHunyuanVideo(base)) return undefined;
    return table.resolve(address.part === undefined ? address.path.replace(SAVED_PREFIX, '') : address.path, base);
  },
};
