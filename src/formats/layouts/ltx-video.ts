/**
 * Layout: LTX-Video (0.9.x) in its original naming (Lightricks' and Comfy-Org's single files,
 * ComfyUI's model, LoRAs in ComfyUI's format: `patchify_proj`, `adaln_single`) and in diffusers'
 * (LTXVideoTransformer3DModel: `proj_in`, `time_embed`), either way round, as diffusers' single-file
 * conversion (convert_ltx_transformer_checkpoint_to_diffusers) renames them. The blocks
 * (`transformer_blocks.N.attn1.to_q`, `ff.net.0.proj`) have the same names in both and land by
 * name; only the input projection, the timestep embedding and the attentions' q/k RMSNorms
 * (`attn1.q_norm` ↔ `attn1.norm_q`, `k_norm` ↔ `norm_k`: one weight of the attention's inner width
 * in both, the script's "q_norm" → "norm_q") are renamed, row for row.
 *
 * It answers only on an LTX-Video base (its input projection under either name beside
 * `caption_projection`), never on PixArt-style models that also say `adaln_single`, nor on LTX-2
 * (an audio input projection beside it), which the `ltx2` layout renames.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';


export const LTX_VIDEO_RULES: readonly RenameRule[] = [
  oneToOne('patchify_proj', 'proj_in'),
  oneToOne('adaln_single.emb.timestep_embedder.linear_1', 'time_embed.emb.timestep_embedder.linear_1'),
  oneToOne('adaln_single.emb.timestep_embedder.linear_2', 'time_embed.emb.timestep_embedder.linear_2'),
  oneToOne('adaln_single.linear', 'time_embed.linear'),
  ...['attn1', 'attn2'].flatMap((a) => [
    oneToOne(`transformer_blocks.{i}.${a}.q_norm`, `transformer_blocks.{i}.${a}.norm_q`),
    oneToOne(`transformer_blocks.{i}.${a}.k_norm`, `transformer_blocks.{i}.${a}.norm_k`),
  ]),
];

/** The original's `patchify_proj`, or diffusers' `proj_in` beside its `time_embed`. */
const INPUT = /(^|\.)(patchify_proj|proj_in)\.weight$/;
const LTX_VIDEO = modelPrefix((key, base) => {
  const m = INPUT.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  if (base.index.has(`${p}audio_patchify_proj.weight`) || base.index.has(`${p}audio_proj_in.weight`)) return null;
  const embed = m[2] === 'patchify_proj' ? 'adaln_single' : 'time_embed';
  const found = base.index.has(`${p}caption_projection.linear_1.weight`) && base.index.has(`${p}${embed}.linear.weight`);
  return found ? p : undefined;
});

export const ltxVideo = modelLayout('ltx-video', LTX_VIDEO, LTX_VIDEO_RULES);
