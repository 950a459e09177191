/**
 * Small Stable Cascade stage C (prior) and stage B (decoder) checkpoints with their real key names, shape ratios (dims
 * scaled down) and dtypes:
 * - Stability's `stage_c_bf16.safetensors` (bare keys; each attention's q, k, v in one
 *   MultiheadAttention `attention.attn.in_proj_weight`);
 * - a checkpoint ComfyUI saved (`model.diffusion_model.`; ComfyUI splits `in_proj_weight` into
 *   `to_q`, `to_k`, `to_v` when it loads the model, and saves it so).
 * - ComfyUI's all-in-one stage C, whose CLIP-G text encoder sits beside it under
 *   `text_encoder.clip_g.transformer.` (supported_models.py Stable_Cascade_C: text_encoder_key_prefix
 *   `text_encoder.` before the keys of its StableCascadeClipModel, `clip_g.transformer.` + the
 *   transformers CLIPTextModel names).
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

/**
 * Stage B (the decoder: Stability's `stage_b_bf16.safetensors`, `stage_b_lite`) with level widths
 * `c` ([320, 640, 1280, 1280]), conditioning width `cond` (1280), CLIP width `clip` (1280), EfficientNet
 * latent channels `effnet` (16), timestep-condition width `r` (64), one layer per level (real:
 * [2, 6, 28, 6] down, [6, 28, 6, 2] up). Levels 0 and 1 are `CT` (ResBlock, TimestepBlock), 2 and 3
 * `CTA` (with an AttnBlock at index 2); up_blocks run from the deepest level (up_blocks.0 is level 3),
 * the first ResBlock of each up level but the deepest taking the skip (channelwise.0 over 2c inputs),
 * and the up levels repeat 2, 2, 1, 1 times more through 1×1 `up_repeat_mappers` (block_repeat
 * [3, 3, 2, 2] reversed, minus one), as Stability's StageB and ComfyUI's stage_b.py build it.
 * `split`: ComfyUI's to_q / to_k / to_v in place of the checkpoint's in_proj_weight.
 */
export interface StageBDims { c: [number, number, number, number]; cond: number; clip: number; effnet: number; r: number }
export const STAGE_B: StageBDims = { c: [4, 8, 16, 16], cond: 16, clip: 16, effnet: 16, r: 4 };

export function stageBTensors(rand: Rand, dtype: FixtureDType, d: StageBDims = STAGE_B, prefix = '', split = false): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const c0 = d.c[0];
  const out: FixtureTensor[] = [
    w('effnet_mapper.0.weight', [4 * c0, d.effnet, 1, 1]), w('effnet_mapper.0.bias', [4 * c0]),
    w('effnet_mapper.2.weight', [c0, 4 * c0, 1, 1]), w('effnet_mapper.2.bias', [c0]),
    w('pixels_mapper.0.weight', [4 * c0, 3, 1, 1]), w('pixels_mapper.0.bias', [4 * c0]),
    w('pixels_mapper.2.weight', [c0, 4 * c0, 1, 1]), w('pixels_mapper.2.bias', [c0]),
    w('clip_mapper.weight', [4 * d.cond, d.clip]), w('clip_mapper.bias', [4 * d.cond]),
    w('embedding.1.weight', [c0, 4 * 4, 1, 1]), w('embedding.1.bias', [c0]),
  ];
  const level = (name: string, c: number, attention: boolean, skip: number) => {
    const [res, time, attn] = [0, 1, 2].map((i) => `${name}.${i}`);
    out.push(
      w(`${res}.depthwise.weight`, [c, 1, 3, 3]), w(`${res}.depthwise.bias`, [c]),
      w(`${res}.channelwise.0.weight`, [4 * c, c + skip]), w(`${res}.channelwise.0.bias`, [4 * c]),
      w(`${res}.channelwise.2.gamma`, [1, 1, 1, 4 * c]), w(`${res}.channelwise.2.beta`, [1, 1, 1, 4 * c]),
      w(`${res}.channelwise.4.weight`, [c, 4 * c]), w(`${res}.channelwise.4.bias`, [c]),
      w(`${time}.mapper.weight`, [2 * c, d.r]), w(`${time}.mapper.bias`, [2 * c]),
      w(`${time}.mapper_sca.weight`, [2 * c, d.r]), w(`${time}.mapper_sca.bias`, [2 * c]),
    );
    if (!attention) return;
    out.push(
      ...(split
        ? ['to_q', 'to_k', 'to_v'].flatMap((p) => [w(`${attn}.attention.attn.${p}.weight`, [c, c]), w(`${attn}.attention.attn.${p}.bias`, [c])])
        : [w(`${attn}.attention.attn.in_proj_weight`, [3 * c, c]), w(`${attn}.attention.attn.in_proj_bias`, [3 * c])]),
      w(`${attn}.attention.attn.out_proj.weight`, [c, c]), w(`${attn}.attention.attn.out_proj.bias`, [c]),
      w(`${attn}.kv_mapper.1.weight`, [c, d.cond]), w(`${attn}.kv_mapper.1.bias`, [c]),
    );
  };
  for (let i = 0; i < 4; i++) {
    if (i > 0) out.push(w(`down_downscalers.${i}.1.weight`, [d.c[i], d.c[i - 1], 2, 2]), w(`down_downscalers.${i}.1.bias`, [d.c[i]]));
    level(`down_blocks.${i}`, d.c[i], i >= 2, 0);
  }
  const repeats = [2, 2, 1, 1];
  for (let u = 0; u < 4; u++) {
    const i = 3 - u;
    if (i > 0) out.push(w(`up_upscalers.${u}.1.weight`, [d.c[i], d.c[i - 1], 2, 2]), w(`up_upscalers.${u}.1.bias`, [d.c[i - 1]]));
    level(`up_blocks.${u}`, d.c[i], i >= 2, i < 3 ? d.c[i] : 0);
    for (let j = 0; j < repeats[u]; j++) out.push(w(`up_repeat_mappers.${u}.${j}.weight`, [d.c[i], d.c[i], 1, 1]), w(`up_repeat_mappers.${u}.${j}.bias`, [d.c[i]]));
  }
  out.push(w('clf.1.weight', [4 * 4, c0, 1, 1]), w('clf.1.bias', [4 * 4]));
  return out;
}

/**
 * CLIP-G's text transformer in transformers naming (`text_model.encoder.layers.N.self_attn.q_proj`, …),
 * width `w` (1280) and `layers` layers (32), under `prefix`.
 */
export function clipGTextTensors(rand: Rand, dtype: FixtureDType, prefix: string, w = 6, layers = 2): FixtureTensor[] {
  const t = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const out: FixtureTensor[] = [t('text_model.embeddings.token_embedding.weight', [16, w]), t('text_model.embeddings.position_embedding.weight', [7, w])];
  for (let i = 0; i < layers; i++) {
    const L = `text_model.encoder.layers.${i}`;
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) out.push(t(`${L}.self_attn.${p}.weight`, [w, w]), t(`${L}.self_attn.${p}.bias`, [w]));
    out.push(
      t(`${L}.layer_norm1.weight`, [w]), t(`${L}.layer_norm1.bias`, [w]), t(`${L}.layer_norm2.weight`, [w]), t(`${L}.layer_norm2.bias`, [w]),
      t(`${L}.mlp.fc1.weight`, [4 * w, w]), t(`${L}.mlp.fc1.bias`, [4 * w]), t(`${L}.mlp.fc2.weight`, [w, 4 * w]), t(`${L}.mlp.fc2.bias`, [w]),
    );
  }
  out.push(t('text_model.final_layer_norm.weight', [w]), t('text_model.final_layer_norm.bias', [w]), t('text_projection.weight', [w, w]));
  return out;
}
