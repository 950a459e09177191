/**
 * Layout: SD3/SD3.5 in SAI's naming (`joint_blocks.N.x_block.attn.qkv`, stored under
 * `model.diffusion_model.`) and in diffusers' (`transformer_blocks.N.attn.to_q`), either way round,
 * as ComfyUI (comfy/utils.py mmdit_to_diffusers) and diffusers
 * (single_file_utils.convert_sd3_transformer_checkpoint_to_diffusers) map them: q, k, v are the
 * thirds of x_block.attn.qkv (add_q/k/v_proj of context_block.attn.qkv; SD3.5's attn2 of
 * x_block.attn2.qkv), the last block's norm1_context and the final norm_out have their two
 * halves (shift, scale) swapped, and the q/k RMSNorms of SD3.5 are renamed whole
 * (`x_block.attn.ln_q` → `attn.norm_q`, `context_block.attn.ln_q` → `attn.norm_added_q`,
 * `x_block.attn2.ln_q` → `attn2.norm_q`, the key norms likewise).
 */
import { oneToOne, RenameTable, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout } from './layout.js';

const thirds = (fused: string, q: string, k: string, v: string): RenameRule => ({
  fused, parts: [{ name: q, units: 1 }, { name: k, units: 1 }, { name: v, units: 1 }],
});

const J = 'joint_blocks.{i}';
const T = 'transformer_blocks.{i}';
export const SD3_RULES: readonly RenameRule[] = [
  thirds(`${J}.x_block.attn.qkv`, `${T}.attn.to_q`, `${T}.attn.to_k`, `${T}.attn.to_v`),
  thirds(`${J}.context_block.attn.qkv`, `${T}.attn.add_q_proj`, `${T}.attn.add_k_proj`, `${T}.attn.add_v_proj`),
  thirds(`${J}.x_block.attn2.qkv`, `${T}.attn2.to_q`, `${T}.attn2.to_k`, `${T}.attn2.to_v`),
  oneToOne(`${J}.x_block.attn.proj`, `${T}.attn.to_out.0`),
  oneToOne(`${J}.x_block.attn2.proj`, `${T}.attn2.to_out.0`),
  oneToOne(`${J}.context_block.attn.proj`, `${T}.attn.to_add_out`),
  oneToOne(`${J}.x_block.mlp.fc1`, `${T}.ff.net.0.proj`),
  oneToOne(`${J}.x_block.mlp.fc2`, `${T}.ff.net.2`),
  oneToOne(`${J}.context_block.mlp.fc1`, `${T}.ff_context.net.0.proj`),
  oneToOne(`${J}.context_block.mlp.fc2`, `${T}.ff_context.net.2`),
  oneToOne(`${J}.x_block.adaLN_modulation.1`, `${T}.norm1.linear`),
  oneToOne(`${J}.context_block.adaLN_modulation.1`, `${T}.norm1_context.linear`, 'last-block'),
  oneToOne('x_embedder.proj', 'pos_embed.proj'),
  oneToOne('t_embedder.mlp.0', 'time_text_embed.timestep_embedder.linear_1'),
  oneToOne('t_embedder.mlp.2', 'time_text_embed.timestep_embedder.linear_2'),
  oneToOne('y_embedder.mlp.0', 'time_text_embed.text_embedder.linear_1'),
  oneToOne('y_embedder.mlp.2', 'time_text_embed.text_embedder.linear_2'),
  oneToOne('context_embedder', 'context_embedder'),
  oneToOne('final_layer.linear', 'proj_out'),
  oneToOne('final_layer.adaLN_modulation.1', 'norm_out.linear', 'always'),
  oneToOne(`${J}.x_block.attn.ln_q`, `${T}.attn.norm_q`),
  oneToOne(`${J}.x_block.attn.ln_k`, `${T}.attn.norm_k`),
  oneToOne(`${J}.context_block.attn.ln_q`, `${T}.attn.norm_added_q`),
  oneToOne(`${J}.context_block.attn.ln_k`, `${T}.attn.norm_added_k`),
  oneToOne(`${J}.x_block.attn2.ln_q`, `${T}.attn2.norm_q`),
  oneToOne(`${J}.x_block.attn2.ln_k`, `${T}.attn2.norm_k`),
];

/** Block i is the last when the base has no block i + 1, in either naming. */
function isLastBlock(base: BaseView, block: string): boolean {
  const next = Number(block) + 1;
  const has = (key: string) => base.index.resolveDotted(key).found;
  return !has(`joint_blocks.${next}.x_block.attn.qkv.weight`) && !has(`transformer_blocks.${next}.attn.to_q.weight`);
}

const table = new RenameTable(SD3_RULES, isLastBlock);

export const sd3Sai: Layout = {
  name: 'sd3-sai',
  renames: [table],
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    return table.resolve(address.path, base);
  },
};
