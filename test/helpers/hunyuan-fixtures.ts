/**
 * Small HunyuanVideo transformers with the real key names, dtypes and structure (heads × head
 * width, fused qkv of 3h rows, single-block linear1 of 3h + 4h rows, the token refiner), scaled down:
 * - Tencent's own naming, as Comfy-Org's and Kijai's single files keep it
 *   (hunyuan_video_t2v_720p_bf16.safetensors): `double_blocks.N.img_attn_qkv`, `img_mlp.fc1`;
 * - ComfyUI's internal naming of the same tensors (checkpoints ComfyUI saves, under `model.model.`):
 *   `img_attn.qkv`, `img_mlp.0`, `img_mod.lin`, q/k norms as `norm.query_norm.scale`;
 * - diffusers' HunyuanVideoTransformer3DModel (hunyuanvideo-community/HunyuanVideo[-I2V]/transformer).
 *
 * Written from the models' definitions (Tencent's hyvideo/modules, diffusers'
 * transformer_hunyuan_video.py) and ComfyUI's rename list, not from the code under test.
 */
import type { FixtureDType, FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';

/**
 * Which of Tencent's Hunyuan DiTs: HunyuanVideo (T2V and I2V), HunyuanImage 2.1, HunyuanVideo 1.5.
 * Hidden size h = heads · headDim (24 · 128 = 3072, 28 · 128 = 3584, 16 · 128 = 2048 in the real
 * models), MLP 4h, latent channels `inChannels` (16 for T2V, 33 for I2V's latent concat, 64 for
 * HunyuanImage), text width `text` (4096 LLaMA, 3584 Qwen2.5-VL), CLIP pooled width `pooled` (768,
 * HunyuanVideo only), timestep frequencies `freq` (256), output patch values `patchOut`, ByT5 width
 * `byt5` (1472) and SigLIP width `vision` (1152) where the model has them; two blocks of each kind
 * it has, a two-block token refiner.
 */
export interface HunyuanDims {
  model: 'video' | 'image' | 'video15';
  heads: number; headDim: number; inChannels: number; text: number; pooled: number; freq: number; patchOut: number;
  /** A guidance embedder (HunyuanVideo T2V, HunyuanImage's distilled model). */
  guidance: boolean;
  /** A second timestep embedder (HunyuanImage's and HunyuanVideo 1.5's meanflow-distilled models). */
  meanflow?: boolean;
  byt5?: number;
  vision?: number;
}
export const HUNYUAN: HunyuanDims = { model: 'video', heads: 2, headDim: 4, inChannels: 16, text: 12, pooled: 10, freq: 6, patchOut: 16, guidance: true };
/** HunyuanVideo-I2V: 33 input channels (latents, image latents, mask), no guidance embedder. */
export const HUNYUAN_I2V: HunyuanDims = { ...HUNYUAN, inChannels: 33, guidance: false };
/** HunyuanImage 2.1's distilled model: 64 latent channels, 1×1 patches, guidance and meanflow embedders, ByT5. */
export const HUNYUAN_IMAGE: HunyuanDims = { model: 'image', heads: 2, headDim: 4, inChannels: 12, text: 14, pooled: 0, freq: 6, patchOut: 12, guidance: true, meanflow: true, byt5: 10 };
/** HunyuanVideo 1.5 I2V (step-distilled): q, k, v apart, no single blocks, ByT5 and SigLIP inputs. */
export const HUNYUAN_15: HunyuanDims = { model: 'video15', heads: 2, headDim: 4, inChannels: 13, text: 14, pooled: 0, freq: 6, patchOut: 8, guidance: false, meanflow: true, byt5: 10, vision: 6 };

export const hiddenOf = (d: HunyuanDims) => d.heads * d.headDim;
/** The ByT5 mapper's inner width (2048 in the real models). */
const BYT5_INNER = 12;
const patchShape = (d: HunyuanDims): number[] => (d.model === 'image' ? [1, 1] : d.model === 'video15' ? [1, 1, 1] : [1, 2, 2]);

/**
 * Tencent's naming (and Comfy-Org's single files): every weight with its bias, q/k RMSNorm weights.
 * `biasDType`: fp8 files keep biases and norms in bf16.
 */
export function hunyuanOriginalTensors(rand: Rand, dtype: FixtureDType, d: HunyuanDims = HUNYUAN, biasDType: FixtureDType = dtype): FixtureTensor[] {
  const h = hiddenOf(d);
  const out: FixtureTensor[] = [];
  const linear = (name: string, rows: number, cols: number) => out.push(tensor(rand, `${name}.weight`, [rows, cols], dtype), tensor(rand, `${name}.bias`, [rows], biasDType));
  const layerNorm = (name: string, n: number) => out.push(tensor(rand, `${name}.weight`, [n], biasDType), tensor(rand, `${name}.bias`, [n], biasDType));
  const norm = (name: string, n: number) => out.push(tensor(rand, `${name}.weight`, [n], 'F32'));
  const timestep = (name: string) => {
    linear(`${name}.mlp.0`, h, d.freq);
    linear(`${name}.mlp.2`, h, h);
  };

  out.push(tensor(rand, 'img_in.proj.weight', [h, d.inChannels, ...patchShape(d)], dtype), tensor(rand, 'img_in.proj.bias', [h], biasDType));
  if (d.byt5) {
    layerNorm('byt5_in.layernorm', d.byt5);
    linear('byt5_in.fc1', BYT5_INNER, d.byt5);
    linear('byt5_in.fc2', BYT5_INNER, BYT5_INNER);
    linear('byt5_in.fc3', h, BYT5_INNER);
  }
  linear('txt_in.input_embedder', h, d.text);
  timestep('txt_in.t_embedder');
  linear('txt_in.c_embedder.linear_1', h, d.text);
  linear('txt_in.c_embedder.linear_2', h, h);
  for (let i = 0; i < 2; i++) {
    const b = `txt_in.individual_token_refiner.blocks.${i}`;
    layerNorm(`${b}.norm1`, h);
    linear(`${b}.self_attn_qkv`, 3 * h, h);
    linear(`${b}.self_attn_proj`, h, h);
    layerNorm(`${b}.norm2`, h);
    linear(`${b}.mlp.fc1`, 4 * h, h);
    linear(`${b}.mlp.fc2`, h, 4 * h);
    linear(`${b}.adaLN_modulation.1`, 2 * h, h);
  }
  timestep('time_in');
  if (d.meanflow) timestep('time_r_in');
  if (d.model === 'video') {
    linear('vector_in.in_layer', h, d.pooled);
    linear('vector_in.out_layer', h, h);
  }
  if (d.guidance) timestep('guidance_in');
  if (d.vision) {
    layerNorm('vision_in.proj.0', d.vision);
    linear('vision_in.proj.1', d.vision, d.vision);
    linear('vision_in.proj.3', h, d.vision);
    layerNorm('vision_in.proj.4', h);
    out.push(tensor(rand, 'cond_type_embedding.weight', [3, h], dtype));
  }
  for (let i = 0; i < 2; i++) {
    const b = `double_blocks.${i}`;
    for (const s of ['img', 'txt']) {
      linear(`${b}.${s}_mod.linear`, 6 * h, h);
      if (d.model === 'video15') for (const p of ['q', 'k', 'v']) linear(`${b}.${s}_attn_${p}`, h, h);
      else linear(`${b}.${s}_attn_qkv`, 3 * h, h);
      norm(`${b}.${s}_attn_q_norm`, d.headDim);
      norm(`${b}.${s}_attn_k_norm`, d.headDim);
      linear(`${b}.${s}_attn_proj`, h, h);
      linear(`${b}.${s}_mlp.fc1`, 4 * h, h);
      linear(`${b}.${s}_mlp.fc2`, h, 4 * h);
    }
  }
  for (let i = 0; i < (d.model === 'video15' ? 0 : 2); i++) {
    const b = `single_blocks.${i}`;
    linear(`${b}.linear1`, 3 * h + 4 * h, h);
    linear(`${b}.linear2`, h, h + 4 * h);
    norm(`${b}.q_norm`, d.headDim);
    norm(`${b}.k_norm`, d.headDim);
    linear(`${b}.modulation.linear`, 3 * h, h);
  }
  linear('final_layer.linear', d.patchOut, h);
  linear('final_layer.adaLN_modulation.1', 2 * h, h);
  return out;
}

/**
 * ComfyUI's name for a tensor in Tencent's naming: the renames its HunyuanVideo model applies on
 * load (comfy/supported_models.py), written out here by hand.
 */
export function comfyHunyuanName(key: string): string {
  const renames: [string, string][] = [
    ['txt_in.t_embedder.mlp.0.', 'txt_in.t_embedder.in_layer.'], ['txt_in.t_embedder.mlp.2.', 'txt_in.t_embedder.out_layer.'],
    ['txt_in.c_embedder.linear_1.', 'txt_in.c_embedder.in_layer.'], ['txt_in.c_embedder.linear_2.', 'txt_in.c_embedder.out_layer.'],
    ['_mod.linear.', '_mod.lin.'], ['_attn_qkv.', '_attn.qkv.'], ['mlp.fc1.', 'mlp.0.'], ['mlp.fc2.', 'mlp.2.'],
    ['_attn_q_norm.weight', '_attn.norm.query_norm.scale'], ['_attn_k_norm.weight', '_attn.norm.key_norm.scale'],
    ['.q_norm.weight', '.norm.query_norm.scale'], ['.k_norm.weight', '.norm.key_norm.scale'],
    ['_attn_proj.', '_attn.proj.'], ['.modulation.linear.', '.modulation.lin.'],
    ['_in.mlp.2.', '_in.out_layer.'], ['_in.mlp.0.', '_in.in_layer.'],
  ];
  return renames.reduce((k, [from, to]) => k.replace(from, to), key);
}

/** A checkpoint ComfyUI saved: its own names under `model.model.`. */
export function hunyuanComfyTensors(rand: Rand, dtype: FixtureDType, d: HunyuanDims = HUNYUAN, biasDType: FixtureDType = dtype): FixtureTensor[] {
  return hunyuanOriginalTensors(rand, dtype, d, biasDType).map((t) => ({ ...t, name: `model.model.${comfyHunyuanName(t.name)}` }));
}

/** diffusers' HunyuanVideoTransformer3DModel, HunyuanImageTransformer2DModel or HunyuanVideo15Transformer3DModel. */
export function hunyuanDiffusersTensors(rand: Rand, dtype: FixtureDType, d: HunyuanDims = HUNYUAN): FixtureTensor[] {
  const h = hiddenOf(d);
  const out: FixtureTensor[] = [];
  const linear = (name: string, rows: number, cols: number) => out.push(tensor(rand, `${name}.weight`, [rows, cols], dtype), tensor(rand, `${name}.bias`, [rows], dtype));
  const layerNorm = (name: string, n: number) => out.push(tensor(rand, `${name}.weight`, [n], dtype), tensor(rand, `${name}.bias`, [n], dtype));
  const norm = (name: string, n: number) => out.push(tensor(rand, `${name}.weight`, [n], 'F32'));
  const timestep = (name: string) => {
    linear(`${name}.linear_1`, h, d.freq);
    linear(`${name}.linear_2`, h, h);
  };

  out.push(tensor(rand, 'x_embedder.proj.weight', [h, d.inChannels, ...patchShape(d)], dtype), tensor(rand, 'x_embedder.proj.bias', [h], dtype));
  if (d.byt5) {
    layerNorm('context_embedder_2.norm', d.byt5);
    linear('context_embedder_2.linear_1', BYT5_INNER, d.byt5);
    linear('context_embedder_2.linear_2', BYT5_INNER, BYT5_INNER);
    linear('context_embedder_2.linear_3', h, BYT5_INNER);
  }
  const c = 'context_embedder';
  timestep(`${c}.time_text_embed.timestep_embedder`);
  linear(`${c}.time_text_embed.text_embedder.linear_1`, h, d.text);
  linear(`${c}.time_text_embed.text_embedder.linear_2`, h, h);
  linear(`${c}.proj_in`, h, d.text);
  for (let i = 0; i < 2; i++) {
    const b = `${c}.token_refiner.refiner_blocks.${i}`;
    layerNorm(`${b}.norm1`, h);
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) linear(`${b}.attn.${p}`, h, h);
    layerNorm(`${b}.norm2`, h);
    linear(`${b}.ff.net.0.proj`, 4 * h, h);
    linear(`${b}.ff.net.2`, h, 4 * h);
    linear(`${b}.norm_out.linear`, 2 * h, h);
  }
  const t = { video: 'time_text_embed', image: 'time_guidance_embed', video15: 'time_embed' }[d.model];
  timestep(`${t}.timestep_embedder`);
  if (d.meanflow) timestep(`${t}.timestep_embedder_r`);
  if (d.model === 'video') {
    linear(`${t}.text_embedder.linear_1`, h, d.pooled);
    linear(`${t}.text_embedder.linear_2`, h, h);
  }
  if (d.guidance) timestep(`${t}.guidance_embedder`);
  if (d.vision) {
    layerNorm('image_embedder.norm_in', d.vision);
    linear('image_embedder.linear_1', d.vision, d.vision);
    linear('image_embedder.linear_2', h, d.vision);
    layerNorm('image_embedder.norm_out', h);
    out.push(tensor(rand, 'cond_type_embed.weight', [3, h], dtype));
  }
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    linear(`${b}.norm1.linear`, 6 * h, h);
    linear(`${b}.norm1_context.linear`, 6 * h, h);
    for (const p of ['to_q', 'to_k', 'to_v', 'add_q_proj', 'add_k_proj', 'add_v_proj', 'to_out.0', 'to_add_out']) linear(`${b}.attn.${p}`, h, h);
    for (const p of ['norm_q', 'norm_k', 'norm_added_q', 'norm_added_k']) norm(`${b}.attn.${p}`, d.headDim);
    linear(`${b}.ff.net.0.proj`, 4 * h, h);
    linear(`${b}.ff.net.2`, h, 4 * h);
    linear(`${b}.ff_context.net.0.proj`, 4 * h, h);
    linear(`${b}.ff_context.net.2`, h, 4 * h);
  }
  for (let i = 0; i < (d.model === 'video15' ? 0 : 2); i++) {
    const b = `single_transformer_blocks.${i}`;
    for (const p of ['to_q', 'to_k', 'to_v']) linear(`${b}.attn.${p}`, h, h);
    norm(`${b}.attn.norm_q`, d.headDim);
    norm(`${b}.attn.norm_k`, d.headDim);
    linear(`${b}.proj_mlp`, 4 * h, h);
    linear(`${b}.proj_out`, h, h + 4 * h);
    linear(`${b}.norm.linear`, 3 * h, h);
  }
  linear('norm_out.linear', 2 * h, h);
  linear('proj_out', d.patchOut, h);
  return out;
}

/** config.json of the diffusers transformer folder, scaled like the tensors. */
export function hunyuanDiffusersConfig(d: HunyuanDims = HUNYUAN): string {
  const shared = {
    _diffusers_version: '0.36.0', in_channels: d.inChannels, num_attention_heads: d.heads, attention_head_dim: d.headDim,
    num_layers: 2, num_refiner_layers: 2, mlp_ratio: 4.0, qk_norm: 'rms_norm', text_embed_dim: d.text,
  };
  if (d.model === 'image') {
    return JSON.stringify({
      _class_name: 'HunyuanImageTransformer2DModel', ...shared, out_channels: d.patchOut, num_single_layers: 2, patch_size: [1, 1],
      text_embed_2_dim: d.byt5, guidance_embeds: d.guidance, use_meanflow: d.meanflow, rope_axes_dim: [64, 64],
    });
  }
  if (d.model === 'video15') {
    return JSON.stringify({
      _class_name: 'HunyuanVideo15Transformer3DModel', ...shared, out_channels: d.patchOut, num_layers: 2, patch_size: 1, patch_size_t: 1,
      text_embed_2_dim: d.byt5, image_embed_dim: d.vision, use_meanflow: d.meanflow, target_size: 480, task_type: 'i2v',
    });
  }
  return JSON.stringify({
    _class_name: 'HunyuanVideoTransformer3DModel', ...shared, out_channels: 4, num_single_layers: 2, patch_size: 2, patch_size_t: 1,
    guidance_embeds: d.guidance, pooled_projection_dim: d.pooled, rope_theta: 256.0, rope_axes_dim: [16, 56, 56],
    image_condition_type: d.guidance ? null : 'latent_concat',
  });
}
