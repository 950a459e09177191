/**
 * Layout: Flux in BFL's naming (the single files people share: `double_blocks.N.img_attn.qkv`)
 * and in diffusers' (`transformer_blocks.N.attn.to_q`), either way round, as ComfyUI
 * (comfy/utils.py flux_to_diffusers), kohya (networks/flux_merge_lora.py) and diffusers
 * (_convert_kohya_flux_lora_to_diffusers) map them:
 * - q, k, v are the thirds of img_attn.qkv (add_q/k/v_proj of txt_attn.qkv);
 * - single_blocks.N.linear1 is q, k, v (h rows each) and proj_mlp (4h rows);
 * - final_layer.adaLN_modulation.1 is norm_out.linear with its two halves (shift, scale) swapped;
 * - the q/k RMSNorms, whose one parameter BFL calls `scale` and diffusers `weight` (the same head-size
 *   vector, convert_flux_transformer_checkpoint_to_diffusers): `img_attn.norm.query_norm.scale` is
 *   `attn.norm_q.weight`, `txt_attn.norm.query_norm.scale` `attn.norm_added_q.weight`, a single
 *   block's `norm.query_norm.scale` `attn.norm_q.weight` (and the key norms likewise).
 * Chroma has FLUX.1's blocks without their modulations: the same rules place its modules, and its
 * approximator's `distilled_guidance_layer.layers.N.in_layer` / `out_layer` are diffusers'
 * `linear_1` / `linear_2`, its `norms.N.scale` diffusers' `norms.N.weight`.
 */
import { oneToOne, RenameTable, type RenameRule } from './fused-renames.js';
import { isFlux2, qkNormRules } from './flux2-bfl.js';
import { isHunyuanDit } from './hunyuan-video.js';
import type { BaseView, Layout } from './layout.js';

const thirds = (fused: string, q: string, k: string, v: string): RenameRule => ({
  fused, parts: [{ name: q, units: 1 }, { name: k, units: 1 }, { name: v, units: 1 }],
});

const D = 'transformer_blocks.{i}';
const S = 'single_transformer_blocks.{i}';
export const FLUX_RULES: readonly RenameRule[] = [
  thirds('double_blocks.{i}.img_attn.qkv', `${D}.attn.to_q`, `${D}.attn.to_k`, `${D}.attn.to_v`),
  thirds('double_blocks.{i}.txt_attn.qkv', `${D}.attn.add_q_proj`, `${D}.attn.add_k_proj`, `${D}.attn.add_v_proj`),
  oneToOne('double_blocks.{i}.img_attn.proj', `${D}.attn.to_out.0`),
  oneToOne('double_blocks.{i}.txt_attn.proj', `${D}.attn.to_add_out`),
  oneToOne('double_blocks.{i}.img_mlp.0', `${D}.ff.net.0.proj`),
  oneToOne('double_blocks.{i}.img_mlp.2', `${D}.ff.net.2`),
  oneToOne('double_blocks.{i}.txt_mlp.0', `${D}.ff_context.net.0.proj`),
  oneToOne('double_blocks.{i}.txt_mlp.2', `${D}.ff_context.net.2`),
  oneToOne('double_blocks.{i}.img_mod.lin', `${D}.norm1.linear`),
  oneToOne('double_blocks.{i}.txt_mod.lin', `${D}.norm1_context.linear`),
  {
    fused: 'single_blocks.{i}.linear1',
    parts: [{ name: `${S}.attn.to_q`, units: 1 }, { name: `${S}.attn.to_k`, units: 1 }, { name: `${S}.attn.to_v`, units: 1 }, { name: `${S}.proj_mlp`, units: 4 }],
  },
  oneToOne('single_blocks.{i}.linear2', `${S}.proj_out`),
  oneToOne('single_blocks.{i}.modulation.lin', `${S}.norm.linear`),
  oneToOne('img_in', 'x_embedder'),
  oneToOne('txt_in', 'context_embedder'),
  oneToOne('time_in.in_layer', 'time_text_embed.timestep_embedder.linear_1'),
  oneToOne('time_in.out_layer', 'time_text_embed.timestep_embedder.linear_2'),
  oneToOne('vector_in.in_layer', 'time_text_embed.text_embedder.linear_1'),
  oneToOne('vector_in.out_layer', 'time_text_embed.text_embedder.linear_2'),
  oneToOne('guidance_in.in_layer', 'time_text_embed.guidance_embedder.linear_1'),
  oneToOne('guidance_in.out_layer', 'time_text_embed.guidance_embedder.linear_2'),
  oneToOne('final_layer.linear', 'proj_out'),
  oneToOne('final_layer.adaLN_modulation.1', 'norm_out.linear', 'always'),
  // Chroma: FLUX.1's blocks fed by an approximator (diffusers' convert_chroma_transformer_checkpoint_to_diffusers).
  oneToOne('distilled_guidance_layer.layers.{i}.in_layer', 'distilled_guidance_layer.layers.{i}.linear_1'),
  oneToOne('distilled_guidance_layer.layers.{i}.out_layer', 'distilled_guidance_layer.layers.{i}.linear_2'),
  oneToOne('distilled_guidance_layer.norms.{i}:scale', 'distilled_guidance_layer.norms.{i}'),
  ...qkNormRules(),
];

const table = new RenameTable(FLUX_RULES, () => false);

export const fluxBfl: Layout = {
  name: 'flux-bfl',
  renames: [table],
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    // HunyuanVideo/HunyuanImage share these block names; their own layout places them.
    if (isHunyuanDit(base)) return undefined;
    // FLUX.2 shares the block names but not linear1's rows (3h + 6h): its own layout places them.
    if (isFlux2(base)) return undefined;
    const r = table.resolve(address.path, base);
    if (r && !r.found && !r.ambiguous && GUIDANCE.test(address.path) && isFlux1WithoutGuidance(base)) return { ...r, why: NO_GUIDANCE };
    return r;
  },
};

/** FLUX.1's guidance embedder, either naming, dotted or flattened (kohya's `lora_unet_guidance_in_in_layer`). */
const GUIDANCE = /^(guidance_in[._](in|out)_layer|time_text_embed[._]guidance_embedder[._]linear_[12])$/;

const NO_GUIDANCE = "is FLUX.1's guidance embedder (guidance_in, diffusers' time_text_embed.guidance_embedder), which this base does not have: "
  + 'it is FLUX.1 [schnell] or another FLUX.1 model without guidance distillation (Chroma), and the LoRA was trained on a guidance-distilled one '
  + '(FLUX.1 [dev], Kontext, Fill): merge it into the model it was trained on';

/** A FLUX.1 transformer (either naming) that has no guidance embedder. */
function isFlux1WithoutGuidance(base: BaseView): boolean {
  const has = (key: string) => base.index.resolveDotted(key).found;
  const flux1 = has('single_blocks.0.linear1.weight') || has('single_transformer_blocks.0.proj_mlp.weight');
  return flux1 && !has('guidance_in.in_layer.weight') && !has('time_text_embed.guidance_embedder.linear_1.weight');
}
