/**
 * Small Stable Cascade stage C (prior) checkpoints with their real key names, shape ratios (dims
 * scaled down) and dtypes:
 * - Stability's `stage_c_bf16.safetensors` (bare keys; each attention's q, k, v in one
 *   MultiheadAttention `attention.attn.in_proj_weight`);
 * - a checkpoint ComfyUI saved (`model.diffusion_model.`; ComfyUI splits `in_proj_weight` into
 *   `to_q`, `to_k`, `to_v` when it loads the model, and saves it so).
 * Nothing here imports the library under test.
 */
import type { FixtureDType, FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';

/**
 * Stage C with width `c` (2048), conditioning width `cond` (2048), CLIP-G width `clip` (1280),
 * latent channels `latent` (16), timestep-condition width `r` (64); each level (down_blocks.0/1,
 * up_blocks.0/1) holds one ResBlock, TimestepBlock and AttnBlock (indices 0, 1, 2), as the real
 * model repeats them.
 */
export interface StageCDims { c: number; cond: number; clip: number; latent: number; r: number }
export const STAGE_C: StageCDims = { c: 8, cond: 8, clip: 6, latent: 4, r: 4 };

/** `split`: ComfyUI's to_q / to_k / to_v in place of the checkpoint's in_proj_weight. */
export function stageCTensors(rand: Rand, dtype: FixtureDType, d: StageCDims = STAGE_C, prefix = '', split = false): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const { c } = d;
  const out: FixtureTensor[] = [
    w('clip_txt_mapper.weight', [4 * d.cond, d.clip]), w('clip_txt_mapper.bias', [4 * d.cond]),
    w('clip_txt_pooled_mapper.weight', [4 * d.cond, d.clip]), w('clip_txt_pooled_mapper.bias', [4 * d.cond]),
    w('clip_img_mapper.weight', [4 * d.cond, 6]), w('clip_img_mapper.bias', [4 * d.cond]),
    w('embedding.1.weight', [c, d.latent, 1, 1]), w('embedding.1.bias', [c]),
  ];
  for (const level of ['down_blocks.0', 'down_blocks.1', 'up_blocks.0', 'up_blocks.1']) {
    const [res, time, attn] = [0, 1, 2].map((i) => `${level}.${i}`);
    out.push(
      w(`${res}.depthwise.weight`, [c, 1, 3, 3]), w(`${res}.depthwise.bias`, [c]),
      w(`${res}.channelwise.0.weight`, [4 * c, c]), w(`${res}.channelwise.0.bias`, [4 * c]),
      w(`${res}.channelwise.2.gamma`, [1, 1, 1, 4 * c]), w(`${res}.channelwise.2.beta`, [1, 1, 1, 4 * c]),
      w(`${res}.channelwise.4.weight`, [c, 4 * c]), w(`${res}.channelwise.4.bias`, [c]),
      w(`${time}.mapper.weight`, [2 * c, d.r]), w(`${time}.mapper.bias`, [2 * c]),
      w(`${time}.mapper_sca.weight`, [2 * c, d.r]), w(`${time}.mapper_crp.weight`, [2 * c, d.r]),
      ...(split
        ? ['to_q', 'to_k', 'to_v'].flatMap((p) => [w(`${attn}.attention.attn.${p}.weight`, [c, c]), w(`${attn}.attention.attn.${p}.bias`, [c])])
        : [w(`${attn}.attention.attn.in_proj_weight`, [3 * c, c]), w(`${attn}.attention.attn.in_proj_bias`, [3 * c])]),
      w(`${attn}.attention.attn.out_proj.weight`, [c, c]), w(`${attn}.attention.attn.out_proj.bias`, [c]),
      w(`${attn}.kv_mapper.1.weight`, [c, d.cond]), w(`${attn}.kv_mapper.1.bias`, [c]),
    );
  }
  out.push(w('clf.1.weight', [d.latent, c, 1, 1]), w('clf.1.bias', [d.latent]));
  return out;
}
