/**
 * Small checkpoints of the newer diffusion transformers with their real key names, shape ratios
 * (dims scaled down), dtypes and norms, in each naming people hold them in:
 * - FLUX.2 (dev, klein): BFL's single file (`flux2-dev.safetensors`, Comfy-Org's repackaged ones)
 *   and diffusers' Flux2Transformer2DModel (diffusers' scripts/convert_flux2_to_diffusers.py);
 * - Z-Image (Turbo, Base): ComfyUI's naming (Comfy-Org's `z_image_turbo_bf16.safetensors`, fused
 *   `attention.qkv`) and diffusers' ZImageTransformer2DModel (Tongyi-MAI's own release);
 * - Qwen-Image (and -Edit): one naming (diffusers'; ComfyUI and Comfy-Org use the same names);
 * - Chroma: BFL-style single files (lodestones' and Comfy-Org's) and diffusers' ChromaTransformer2DModel;
 * - LTX-2 and LTX-2.3: Lightricks' single files (the transformer under `model.diffusion_model.` beside
 *   its VAEs and vocoder) and diffusers' LTX2VideoTransformer3DModel.
 * Nothing here imports the library under test.
 */
import { buildSafetensors, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';

// --- FLUX.2 ---------------------------------------------------------------------------------------

/**
 * FLUX.2 with hidden size h (6144 dev, 3072 klein 4B), head size `head` (128), SwiGLU MLP of 3h
 * (mlp_ratio 3: gate and up 2·3h rows), 2 double and 2 single blocks, no biases; `guidance`: dev
 * has a guidance embedder, klein none.
 */
export interface Flux2Dims { h: number; head: number; inChannels: number; txt: number; time: number; guidance: boolean }
export const FLUX2: Flux2Dims = { h: 8, head: 4, inChannels: 16, txt: 12, time: 6, guidance: true };

/** BFL's flux2-dev.safetensors / flux-2-klein-4b.safetensors (Comfy-Org's add `model.diffusion_model.`). */
export function flux2BflTensors(rand: Rand, dtype: FixtureDType, d: Flux2Dims = FLUX2, prefix = ''): FixtureTensor[] {
  const { h } = d;
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const norm = (name: string) => tensor(rand, prefix + name, [d.head], 'BF16');
  const out: FixtureTensor[] = [
    w('img_in.weight', [h, d.inChannels]), w('txt_in.weight', [h, d.txt]),
    w('time_in.in_layer.weight', [h, d.time]), w('time_in.out_layer.weight', [h, h]),
    ...(d.guidance ? [w('guidance_in.in_layer.weight', [h, d.time]), w('guidance_in.out_layer.weight', [h, h])] : []),
    w('double_stream_modulation_img.lin.weight', [6 * h, h]), w('double_stream_modulation_txt.lin.weight', [6 * h, h]),
    w('single_stream_modulation.lin.weight', [3 * h, h]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `double_blocks.${i}`;
    for (const s of ['img', 'txt']) {
      out.push(
        w(`${b}.${s}_attn.qkv.weight`, [3 * h, h]), norm(`${b}.${s}_attn.norm.query_norm.scale`), norm(`${b}.${s}_attn.norm.key_norm.scale`),
        w(`${b}.${s}_attn.proj.weight`, [h, h]), w(`${b}.${s}_mlp.0.weight`, [6 * h, h]), w(`${b}.${s}_mlp.2.weight`, [h, 3 * h]),
      );
    }
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_blocks.${i}`;
    out.push(w(`${b}.linear1.weight`, [9 * h, h]), w(`${b}.linear2.weight`, [h, 4 * h]), norm(`${b}.norm.query_norm.scale`), norm(`${b}.norm.key_norm.scale`));
  }
  out.push(w('final_layer.adaLN_modulation.1.weight', [2 * h, h]), w('final_layer.linear.weight', [d.inChannels, h]));
  return out;
}

/** diffusers' Flux2Transformer2DModel (black-forest-labs/FLUX.2-dev transformer/). */
export function flux2DiffusersTensors(rand: Rand, dtype: FixtureDType, d: Flux2Dims = FLUX2): FixtureTensor[] {
  const { h } = d;
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const norm = (name: string) => tensor(rand, name, [d.head], 'BF16');
  const out: FixtureTensor[] = [
    w('x_embedder.weight', [h, d.inChannels]), w('context_embedder.weight', [h, d.txt]),
    w('time_guidance_embed.timestep_embedder.linear_1.weight', [h, d.time]), w('time_guidance_embed.timestep_embedder.linear_2.weight', [h, h]),
    ...(d.guidance ? [w('time_guidance_embed.guidance_embedder.linear_1.weight', [h, d.time]), w('time_guidance_embed.guidance_embedder.linear_2.weight', [h, h])] : []),
    w('double_stream_modulation_img.linear.weight', [6 * h, h]), w('double_stream_modulation_txt.linear.weight', [6 * h, h]),
    w('single_stream_modulation.linear.weight', [3 * h, h]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    for (const p of ['to_q', 'to_k', 'to_v', 'add_q_proj', 'add_k_proj', 'add_v_proj']) out.push(w(`${b}.attn.${p}.weight`, [h, h]));
    for (const n of ['norm_q', 'norm_k', 'norm_added_q', 'norm_added_k']) out.push(norm(`${b}.attn.${n}.weight`));
    out.push(w(`${b}.attn.to_out.0.weight`, [h, h]), w(`${b}.attn.to_add_out.weight`, [h, h]));
    out.push(w(`${b}.ff.linear_in.weight`, [6 * h, h]), w(`${b}.ff.linear_out.weight`, [h, 3 * h]));
    out.push(w(`${b}.ff_context.linear_in.weight`, [6 * h, h]), w(`${b}.ff_context.linear_out.weight`, [h, 3 * h]));
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_transformer_blocks.${i}`;
    out.push(w(`${b}.attn.to_qkv_mlp_proj.weight`, [9 * h, h]), w(`${b}.attn.to_out.weight`, [h, 4 * h]), norm(`${b}.attn.norm_q.weight`), norm(`${b}.attn.norm_k.weight`));
  }
  out.push(w('norm_out.linear.weight', [2 * h, h]), w('proj_out.weight', [d.inChannels, h]));
  return out;
}

// --- Z-Image --------------------------------------------------------------------------------------

/**
 * Z-Image with width `dim` (3840), MHA heads of `head` (128), SwiGLU FFN of `ffn` (int(dim/3·8) =
 * 10240), adaLN input `adaln` (min(dim, 256)), caption width `cap` (2560), patch channels `patch`
 * (2·2·16 = 64); 2 main layers, 1 noise and 1 context refiner block (the context refiner has no adaLN).
 */
export interface ZImageDims { dim: number; head: number; ffn: number; adaln: number; cap: number; patch: number; tMid: number }
export const ZIMAGE: ZImageDims = { dim: 8, head: 4, ffn: 20, adaln: 6, cap: 10, patch: 12, tMid: 14 };

/** One Z-Image block in ComfyUI's naming (fused qkv) or diffusers' (to_q/to_k/to_v, to_out.0). */
function zImageBlock(w: (n: string, s: number[]) => FixtureTensor, f32: (n: string, s: number[]) => FixtureTensor, b: string, d: ZImageDims, naming: 'comfy' | 'diffusers', adaln: boolean): FixtureTensor[] {
  const out: FixtureTensor[] = naming === 'comfy'
    ? [w(`${b}.attention.qkv.weight`, [3 * d.dim, d.dim]), w(`${b}.attention.out.weight`, [d.dim, d.dim]),
      f32(`${b}.attention.q_norm.weight`, [d.head]), f32(`${b}.attention.k_norm.weight`, [d.head])]
    : [w(`${b}.attention.to_q.weight`, [d.dim, d.dim]), w(`${b}.attention.to_k.weight`, [d.dim, d.dim]), w(`${b}.attention.to_v.weight`, [d.dim, d.dim]),
      w(`${b}.attention.to_out.0.weight`, [d.dim, d.dim]), f32(`${b}.attention.norm_q.weight`, [d.head]), f32(`${b}.attention.norm_k.weight`, [d.head])];
  out.push(
    w(`${b}.feed_forward.w1.weight`, [d.ffn, d.dim]), w(`${b}.feed_forward.w2.weight`, [d.dim, d.ffn]), w(`${b}.feed_forward.w3.weight`, [d.ffn, d.dim]),
    f32(`${b}.attention_norm1.weight`, [d.dim]), f32(`${b}.ffn_norm1.weight`, [d.dim]), f32(`${b}.attention_norm2.weight`, [d.dim]), f32(`${b}.ffn_norm2.weight`, [d.dim]),
  );
  if (adaln) out.push(w(`${b}.adaLN_modulation.0.weight`, [4 * d.dim, d.adaln]), f32(`${b}.adaLN_modulation.0.bias`, [4 * d.dim]));
  return out;
}

/** Comfy-Org's z_image_turbo_bf16.safetensors (ComfyUI's NextDiT names); `prefix` as ComfyUI saves checkpoints. */
export function zImageComfyTensors(rand: Rand, dtype: FixtureDType, d: ZImageDims = ZIMAGE, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, 'F32');
  return [
    w('x_embedder.weight', [d.dim, d.patch]), f32('x_embedder.bias', [d.dim]),
    f32('cap_embedder.0.weight', [d.cap]), w('cap_embedder.1.weight', [d.dim, d.cap]),
    w('t_embedder.mlp.0.weight', [d.tMid, 256]), w('t_embedder.mlp.2.weight', [d.adaln, d.tMid]),
    f32('x_pad_token', [1, d.dim]), f32('cap_pad_token', [1, d.dim]),
    ...[0, 1].flatMap((i) => zImageBlock(w, f32, `layers.${i}`, d, 'comfy', true)),
    ...zImageBlock(w, f32, 'noise_refiner.0', d, 'comfy', true),
    ...zImageBlock(w, f32, 'context_refiner.0', d, 'comfy', false),
    w('final_layer.linear.weight', [d.patch, d.dim]), f32('final_layer.linear.bias', [d.patch]),
    w('final_layer.adaLN_modulation.1.weight', [d.dim, d.adaln]),
  ];
}

/** Tongyi-MAI/Z-Image-Turbo transformer/ (diffusers' ZImageTransformer2DModel). */
export function zImageDiffusersTensors(rand: Rand, dtype: FixtureDType, d: ZImageDims = ZIMAGE): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, name, shape, 'F32');
  return [
    w('all_x_embedder.2-1.weight', [d.dim, d.patch]), f32('all_x_embedder.2-1.bias', [d.dim]),
    f32('cap_embedder.0.weight', [d.cap]), w('cap_embedder.1.weight', [d.dim, d.cap]),
    w('t_embedder.mlp.0.weight', [d.tMid, 256]), w('t_embedder.mlp.2.weight', [d.adaln, d.tMid]),
    f32('x_pad_token', [1, d.dim]), f32('cap_pad_token', [1, d.dim]),
    ...[0, 1].flatMap((i) => zImageBlock(w, f32, `layers.${i}`, d, 'diffusers', true)),
    ...zImageBlock(w, f32, 'noise_refiner.0', d, 'diffusers', true),
    ...zImageBlock(w, f32, 'context_refiner.0', d, 'diffusers', false),
    w('all_final_layer.2-1.linear.weight', [d.patch, d.dim]), f32('all_final_layer.2-1.linear.bias', [d.patch]),
    w('all_final_layer.2-1.adaLN_modulation.1.weight', [d.dim, d.adaln]),
  ];
}

// --- Qwen-Image -----------------------------------------------------------------------------------

/** Qwen-Image with width `dim` (3072), joint text width `txt` (3584), patch channels `patch` (64), MLP 4·dim, 2 blocks. */
export interface QwenImageDims { dim: number; head: number; txt: number; patch: number; freq: number }
export const QWEN_IMAGE: QwenImageDims = { dim: 8, head: 4, txt: 12, patch: 16, freq: 6 };

/** Qwen/Qwen-Image transformer/ and Comfy-Org's qwen_image_*.safetensors (same names; `prefix` for ComfyUI's checkpoints). */
export function qwenImageTensors(rand: Rand, dtype: FixtureDType, d: QwenImageDims = QWEN_IMAGE, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const b16 = (name: string, n: number) => tensor(rand, prefix + name, [n], 'BF16');
  const out: FixtureTensor[] = [
    w('img_in.weight', [d.dim, d.patch]), b16('img_in.bias', d.dim), w('txt_in.weight', [d.dim, d.txt]), b16('txt_norm.weight', d.txt),
    w('time_text_embed.timestep_embedder.linear_1.weight', [d.dim, d.freq]), w('time_text_embed.timestep_embedder.linear_2.weight', [d.dim, d.dim]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    out.push(w(`${b}.img_mod.1.weight`, [6 * d.dim, d.dim]), b16(`${b}.img_mod.1.bias`, 6 * d.dim), w(`${b}.txt_mod.1.weight`, [6 * d.dim, d.dim]));
    for (const p of ['to_q', 'to_k', 'to_v', 'add_q_proj', 'add_k_proj', 'add_v_proj']) out.push(w(`${b}.attn.${p}.weight`, [d.dim, d.dim]), b16(`${b}.attn.${p}.bias`, d.dim));
    for (const n of ['norm_q', 'norm_k', 'norm_added_q', 'norm_added_k']) out.push(b16(`${b}.attn.${n}.weight`, d.head));
    out.push(w(`${b}.attn.to_out.0.weight`, [d.dim, d.dim]), w(`${b}.attn.to_add_out.weight`, [d.dim, d.dim]));
    out.push(w(`${b}.img_mlp.net.0.proj.weight`, [4 * d.dim, d.dim]), w(`${b}.img_mlp.net.2.weight`, [d.dim, 4 * d.dim]));
    out.push(w(`${b}.txt_mlp.net.0.proj.weight`, [4 * d.dim, d.dim]), w(`${b}.txt_mlp.net.2.weight`, [d.dim, 4 * d.dim]));
  }
  out.push(w('norm_out.linear.weight', [2 * d.dim, d.dim]), w('proj_out.weight', [d.patch, d.dim]));
  return out;
}

// --- Chroma ---------------------------------------------------------------------------------------

/**
 * Chroma: FLUX.1-schnell's blocks (hidden h = 3072, MLP 4h) without their modulations, fed by the
 * `distilled_guidance_layer` approximator (width `approx` = 5120, input 64, 5 layers; here 2).
 */
export interface ChromaDims { h: number; head: number; inChannels: number; txt: number; approx: number; approxIn: number }
export const CHROMA: ChromaDims = { h: 8, head: 4, inChannels: 16, txt: 12, approx: 10, approxIn: 6 };

/** lodestones' Chroma1-HD.safetensors and Comfy-Org's repackaged files (BFL-style names). */
export function chromaBflTensors(rand: Rand, dtype: FixtureDType, d: ChromaDims = CHROMA, prefix = ''): FixtureTensor[] {
  const { h } = d;
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const b16 = (name: string, n: number) => tensor(rand, prefix + name, [n], 'BF16');
  const g = 'distilled_guidance_layer';
  const out: FixtureTensor[] = [
    w('img_in.weight', [h, d.inChannels]), w('txt_in.weight', [h, d.txt]),
    w(`${g}.in_proj.weight`, [d.approx, d.approxIn]), b16(`${g}.in_proj.bias`, d.approx), w(`${g}.out_proj.weight`, [h, d.approx]),
  ];
  for (let i = 0; i < 2; i++) out.push(w(`${g}.layers.${i}.in_layer.weight`, [d.approx, d.approx]), w(`${g}.layers.${i}.out_layer.weight`, [d.approx, d.approx]), b16(`${g}.norms.${i}.scale`, d.approx));
  for (let i = 0; i < 2; i++) {
    const b = `double_blocks.${i}`;
    for (const s of ['img', 'txt']) {
      out.push(
        w(`${b}.${s}_attn.qkv.weight`, [3 * h, h]), b16(`${b}.${s}_attn.qkv.bias`, 3 * h), b16(`${b}.${s}_attn.norm.query_norm.scale`, d.head),
        w(`${b}.${s}_attn.proj.weight`, [h, h]), w(`${b}.${s}_mlp.0.weight`, [4 * h, h]), w(`${b}.${s}_mlp.2.weight`, [h, 4 * h]),
      );
    }
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_blocks.${i}`;
    out.push(w(`${b}.linear1.weight`, [7 * h, h]), b16(`${b}.linear1.bias`, 7 * h), w(`${b}.linear2.weight`, [h, 5 * h]), b16(`${b}.norm.key_norm.scale`, d.head));
  }
  out.push(w('final_layer.linear.weight', [d.inChannels, h]));
  return out;
}

/** diffusers' ChromaTransformer2DModel (lodestones/Chroma1-HD transformer/). */
export function chromaDiffusersTensors(rand: Rand, dtype: FixtureDType, d: ChromaDims = CHROMA): FixtureTensor[] {
  const { h } = d;
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const b16 = (name: string, n: number) => tensor(rand, name, [n], 'BF16');
  const g = 'distilled_guidance_layer';
  const out: FixtureTensor[] = [
    w('x_embedder.weight', [h, d.inChannels]), w('context_embedder.weight', [h, d.txt]),
    w(`${g}.in_proj.weight`, [d.approx, d.approxIn]), b16(`${g}.in_proj.bias`, d.approx), w(`${g}.out_proj.weight`, [h, d.approx]),
  ];
  for (let i = 0; i < 2; i++) out.push(w(`${g}.layers.${i}.linear_1.weight`, [d.approx, d.approx]), w(`${g}.layers.${i}.linear_2.weight`, [d.approx, d.approx]), b16(`${g}.norms.${i}.weight`, d.approx));
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    for (const p of ['to_q', 'to_k', 'to_v', 'add_q_proj', 'add_k_proj', 'add_v_proj']) out.push(w(`${b}.attn.${p}.weight`, [h, h]));
    out.push(w(`${b}.attn.to_out.0.weight`, [h, h]), w(`${b}.attn.to_add_out.weight`, [h, h]));
    out.push(w(`${b}.ff.net.0.proj.weight`, [4 * h, h]), w(`${b}.ff.net.2.weight`, [h, 4 * h]));
    out.push(w(`${b}.ff_context.net.0.proj.weight`, [4 * h, h]), w(`${b}.ff_context.net.2.weight`, [h, 4 * h]));
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_transformer_blocks.${i}`;
    for (const p of ['to_q', 'to_k', 'to_v']) out.push(w(`${b}.attn.${p}.weight`, [h, h]));
    out.push(w(`${b}.proj_mlp.weight`, [4 * h, h]), w(`${b}.proj_out.weight`, [h, 5 * h]));
  }
  out.push(w('proj_out.weight', [d.inChannels, h]));
  return out;
}

// --- Lumina 2 -------------------------------------------------------------------------------------

/**
 * Lumina-Image 2.0 with width `dim` (2304: 24 heads of 96), `kv` rows of k and of v (8 heads: 768,
 * a third of q), SwiGLU FFN `ffn` (9216), adaLN input `adaln` (min(dim, 1024)), caption width `cap`
 * (Gemma-2's 2304), patch channels `patch` (64); 2 layers, 1 noise and 1 context refiner block.
 */
export interface Lumina2Dims { dim: number; kv: number; head: number; ffn: number; adaln: number; cap: number; patch: number }
export const LUMINA2: Lumina2Dims = { dim: 18, kv: 6, head: 6, ffn: 20, adaln: 6, cap: 10, patch: 16 };

/** Alpha-VLLM's / Comfy-Org's lumina_2 single file (NextDiT names); `prefix` as ComfyUI saves checkpoints. */
export function lumina2OriginalTensors(rand: Rand, dtype: FixtureDType, d: Lumina2Dims = LUMINA2, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, 'F32');
  const block = (b: string, adaln: boolean): FixtureTensor[] => [
    w(`${b}.attention.qkv.weight`, [d.dim + 2 * d.kv, d.dim]), w(`${b}.attention.out.weight`, [d.dim, d.dim]),
    f32(`${b}.attention.q_norm.weight`, [d.head]), f32(`${b}.attention.k_norm.weight`, [d.head]),
    w(`${b}.feed_forward.w1.weight`, [d.ffn, d.dim]), w(`${b}.feed_forward.w2.weight`, [d.dim, d.ffn]), w(`${b}.feed_forward.w3.weight`, [d.ffn, d.dim]),
    f32(`${b}.attention_norm1.weight`, [d.dim]), f32(`${b}.ffn_norm1.weight`, [d.dim]), f32(`${b}.attention_norm2.weight`, [d.dim]), f32(`${b}.ffn_norm2.weight`, [d.dim]),
    ...(adaln ? [w(`${b}.adaLN_modulation.1.weight`, [4 * d.dim, d.adaln]), f32(`${b}.adaLN_modulation.1.bias`, [4 * d.dim])] : []),
  ];
  return [
    w('x_embedder.weight', [d.dim, d.patch]), f32('x_embedder.bias', [d.dim]),
    f32('cap_embedder.0.weight', [d.cap]), w('cap_embedder.1.weight', [d.dim, d.cap]),
    w('t_embedder.mlp.0.weight', [d.adaln, 256]), w('t_embedder.mlp.2.weight', [d.adaln, d.adaln]),
    ...block('layers.0', true), ...block('layers.1', true), ...block('noise_refiner.0', true), ...block('context_refiner.0', false),
    w('final_layer.adaLN_modulation.1.weight', [d.dim, d.adaln]), w('final_layer.linear.weight', [d.patch, d.dim]), f32('norm_final.weight', [d.dim]),
  ];
}

/** Alpha-VLLM/Lumina-Image-2.0 transformer/ (diffusers' Lumina2Transformer2DModel). */
export function lumina2DiffusersTensors(rand: Rand, dtype: FixtureDType, d: Lumina2Dims = LUMINA2): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, name, shape, 'F32');
  const block = (b: string, adaln: boolean): FixtureTensor[] => [
    w(`${b}.attn.to_q.weight`, [d.dim, d.dim]), w(`${b}.attn.to_k.weight`, [d.kv, d.dim]), w(`${b}.attn.to_v.weight`, [d.kv, d.dim]),
    w(`${b}.attn.to_out.0.weight`, [d.dim, d.dim]), f32(`${b}.attn.norm_q.weight`, [d.head]), f32(`${b}.attn.norm_k.weight`, [d.head]),
    w(`${b}.feed_forward.linear_1.weight`, [d.ffn, d.dim]), w(`${b}.feed_forward.linear_2.weight`, [d.dim, d.ffn]), w(`${b}.feed_forward.linear_3.weight`, [d.ffn, d.dim]),
    f32(`${b}.ffn_norm1.weight`, [d.dim]), f32(`${b}.norm2.weight`, [d.dim]), f32(`${b}.ffn_norm2.weight`, [d.dim]),
    ...(adaln ? [f32(`${b}.norm1.norm.weight`, [d.dim]), w(`${b}.norm1.linear.weight`, [4 * d.dim, d.adaln])] : [f32(`${b}.norm1.weight`, [d.dim])]),
  ];
  return [
    w('x_embedder.weight', [d.dim, d.patch]),
    f32('time_caption_embed.caption_embedder.0.weight', [d.cap]), w('time_caption_embed.caption_embedder.1.weight', [d.dim, d.cap]),
    w('time_caption_embed.timestep_embedder.linear_1.weight', [d.adaln, 256]), w('time_caption_embed.timestep_embedder.linear_2.weight', [d.adaln, d.adaln]),
    ...block('layers.0', true), ...block('layers.1', true), ...block('noise_refiner.0', true), ...block('context_refiner.0', false),
    w('norm_out.linear_1.weight', [d.dim, d.adaln]), w('norm_out.linear_2.weight', [d.patch, d.dim]),
  ];
}

// --- LTX-Video ------------------------------------------------------------------------------------

/** LTX-Video 0.9.x with width `dim` (2048), latent channels `latent` (128), caption width `cap` (4096), FFN 4·dim, 2 blocks. */
export interface LtxDims { dim: number; head: number; latent: number; cap: number; freq: number }
export const LTX: LtxDims = { dim: 8, head: 4, latent: 16, cap: 12, freq: 6 };

function ltxBlocks(w: (n: string, s: number[]) => FixtureTensor, f32: (n: string, s: number[]) => FixtureTensor, d: LtxDims, norm: [string, string]): FixtureTensor[] {
  const out: FixtureTensor[] = [];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    for (const a of ['attn1', 'attn2']) {
      for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) out.push(w(`${b}.${a}.${p}.weight`, [d.dim, d.dim]));
      out.push(f32(`${b}.${a}.${norm[0]}.weight`, [d.dim]), f32(`${b}.${a}.${norm[1]}.weight`, [d.dim]));
    }
    out.push(w(`${b}.ff.net.0.proj.weight`, [4 * d.dim, d.dim]), w(`${b}.ff.net.2.weight`, [d.dim, 4 * d.dim]), f32(`${b}.scale_shift_table`, [6, d.dim]));
  }
  return out;
}

/** Lightricks' ltx-video-2b-v0.9.5.safetensors (ComfyUI's names; `prefix` `model.diffusion_model.` as shipped). */
export function ltxOriginalTensors(rand: Rand, dtype: FixtureDType, d: LtxDims = LTX, prefix = 'model.diffusion_model.'): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, 'F32');
  return [
    w('patchify_proj.weight', [d.dim, d.latent]),
    w('adaln_single.emb.timestep_embedder.linear_1.weight', [d.dim, d.freq]), w('adaln_single.emb.timestep_embedder.linear_2.weight', [d.dim, d.dim]),
    w('adaln_single.linear.weight', [6 * d.dim, d.dim]),
    w('caption_projection.linear_1.weight', [d.dim, d.cap]), w('caption_projection.linear_2.weight', [d.dim, d.dim]),
    ...ltxBlocks(w, f32, d, ['q_norm', 'k_norm']),
    w('proj_out.weight', [d.latent, d.dim]), f32('scale_shift_table', [2, d.dim]),
  ];
}

/** Lightricks/LTX-Video transformer/ (diffusers' LTXVideoTransformer3DModel). */
export function ltxDiffusersTensors(rand: Rand, dtype: FixtureDType, d: LtxDims = LTX): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, name, shape, 'F32');
  return [
    w('proj_in.weight', [d.dim, d.latent]),
    w('time_embed.emb.timestep_embedder.linear_1.weight', [d.dim, d.freq]), w('time_embed.emb.timestep_embedder.linear_2.weight', [d.dim, d.dim]),
    w('time_embed.linear.weight', [6 * d.dim, d.dim]),
    w('caption_projection.linear_1.weight', [d.dim, d.cap]), w('caption_projection.linear_2.weight', [d.dim, d.dim]),
    ...ltxBlocks(w, f32, d, ['norm_q', 'norm_k']),
    w('proj_out.weight', [d.latent, d.dim]), f32('scale_shift_table', [2, d.dim]),
  ];
}

// --- LTX-2 ----------------------------------------------------------------------------------------

/**
 * LTX-2 (19B) and LTX-2.3 with video width `dim` (4096: 32 heads of 128) and audio width `adim`
 * (2048: 32 heads of 64), latent channels `latent` (128, video and audio), caption width `cap`
 * (3840, also the text connectors' width), timestep frequencies `freq` (256), FFN 4·width, 2 blocks.
 * LTX-2.3 (`v23`) adds per-head attention gates (`to_gate_logits`), prompt adaLN modules and
 * 9-row modulation tables, and drops the caption projections (its text projection moved out).
 */
export interface Ltx2Dims { dim: number; adim: number; heads: number; latent: number; cap: number; freq: number; v23: boolean }
export const LTX2: Ltx2Dims = { dim: 8, adim: 4, heads: 2, latent: 16, cap: 12, freq: 6, v23: false };

/** The names that differ between the two namings, original first (diffusers' convert_ltx2_to_diffusers.py). */
const LTX2_ADALN: readonly [string, string, 'video' | 'audio', number | 'mod'][] = [
  ['adaln_single', 'time_embed', 'video', 'mod'], ['audio_adaln_single', 'audio_time_embed', 'audio', 'mod'],
  ['av_ca_video_scale_shift_adaln_single', 'av_cross_attn_video_scale_shift', 'video', 4],
  ['av_ca_audio_scale_shift_adaln_single', 'av_cross_attn_audio_scale_shift', 'audio', 4],
  ['av_ca_a2v_gate_adaln_single', 'av_cross_attn_video_a2v_gate', 'video', 1],
  ['av_ca_v2a_gate_adaln_single', 'av_cross_attn_audio_v2a_gate', 'audio', 1],
];

function ltx2Transformer(rand: Rand, dtype: FixtureDType, d: Ltx2Dims, prefix: string, naming: 'original' | 'diffusers'): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const orig = naming === 'original';
  const mod = d.v23 ? 9 : 6;
  const width = (m: 'video' | 'audio') => (m === 'video' ? d.dim : d.adim);
  const adaln = (name: string, n: number, k: number) => [
    w(`${name}.emb.timestep_embedder.linear_1.weight`, [n, d.freq]), w(`${name}.emb.timestep_embedder.linear_2.weight`, [n, n]), w(`${name}.linear.weight`, [k * n, n]),
  ];
  const out: FixtureTensor[] = [
    w(`${orig ? 'patchify_proj' : 'proj_in'}.weight`, [d.dim, d.latent]), w(`${orig ? 'audio_patchify_proj' : 'audio_proj_in'}.weight`, [d.adim, d.latent]),
    ...LTX2_ADALN.flatMap(([o, df, m, k]) => adaln(orig ? o : df, width(m), k === 'mod' ? mod : k)),
    w('scale_shift_table', [2, d.dim]), w('audio_scale_shift_table', [2, d.adim]),
    w('proj_out.weight', [d.latent, d.dim]), w('audio_proj_out.weight', [d.latent, d.adim]),
  ];
  if (d.v23) out.push(...adaln(orig ? 'prompt_adaln_single' : 'prompt_adaln', d.dim, 2), ...adaln(orig ? 'audio_prompt_adaln_single' : 'audio_prompt_adaln', d.adim, 2));
  else {
    out.push(
      w('caption_projection.linear_1.weight', [d.dim, d.cap]), w('caption_projection.linear_2.weight', [d.dim, d.dim]),
      w('audio_caption_projection.linear_1.weight', [d.adim, d.cap]), w('audio_caption_projection.linear_2.weight', [d.adim, d.adim]),
    );
  }
  const [qn, kn] = orig ? ['q_norm', 'k_norm'] : ['norm_q', 'norm_k'];
  // (query width, key/value width, inner width): a2v's queries are video, its keys audio; v2a the other way.
  const attns: [string, number, number, number][] = [
    ['attn1', d.dim, d.dim, d.dim], ['attn2', d.dim, d.dim, d.dim], ['audio_attn1', d.adim, d.adim, d.adim], ['audio_attn2', d.adim, d.adim, d.adim],
    ['audio_to_video_attn', d.dim, d.adim, d.adim], ['video_to_audio_attn', d.adim, d.dim, d.adim],
  ];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    for (const [a, q, kv, inner] of attns) {
      out.push(
        w(`${b}.${a}.to_q.weight`, [inner, q]), w(`${b}.${a}.to_k.weight`, [inner, kv]), w(`${b}.${a}.to_v.weight`, [inner, kv]), w(`${b}.${a}.to_out.0.weight`, [q, inner]),
        w(`${b}.${a}.${qn}.weight`, [inner]), w(`${b}.${a}.${kn}.weight`, [inner]),
      );
      if (d.v23) out.push(w(`${b}.${a}.to_gate_logits.weight`, [d.heads, q]));
    }
    for (const [ff, n] of [['ff', d.dim], ['audio_ff', d.adim]] as const) out.push(w(`${b}.${ff}.net.0.proj.weight`, [4 * n, n]), w(`${b}.${ff}.net.2.weight`, [n, 4 * n]));
    out.push(
      w(`${b}.scale_shift_table`, [mod, d.dim]), w(`${b}.audio_scale_shift_table`, [mod, d.adim]),
      w(`${b}.${orig ? 'scale_shift_table_a2v_ca_video' : 'video_a2v_cross_attn_scale_shift_table'}`, [5, d.dim]),
      w(`${b}.${orig ? 'scale_shift_table_a2v_ca_audio' : 'audio_a2v_cross_attn_scale_shift_table'}`, [5, d.adim]),
    );
    if (d.v23) out.push(w(`${b}.prompt_scale_shift_table`, [2, d.dim]), w(`${b}.audio_prompt_scale_shift_table`, [2, d.adim]));
  }
  return out;
}

/**
 * Lightricks' ltx-2-19b-dev.safetensors (ltx-2.3-22b-dev with `v23`; Comfy-Org's repackaged files
 * hold the same `model.diffusion_model.` part): the transformer and its text connectors under
 * `model.diffusion_model.`, the text projection, the video and audio VAEs and the vocoder beside it.
 */
export function ltx2OriginalTensors(rand: Rand, dtype: FixtureDType, d: Ltx2Dims = LTX2): FixtureTensor[] {
  const dm = 'model.diffusion_model.';
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  // LTX-2.3's connectors are as wide as the stream they feed and have per-head attention gates.
  const connector = (c: string, n: number) => [
    ...['to_q', 'to_k', 'to_v', 'to_out.0'].map((p) => w(`${dm}${c}.transformer_1d_blocks.0.attn1.${p}.weight`, [n, n])),
    ...(d.v23 ? [w(`${dm}${c}.transformer_1d_blocks.0.attn1.to_gate_logits.weight`, [d.heads, n])] : []),
    w(`${dm}${c}.transformer_1d_blocks.0.ff.net.0.proj.weight`, [4 * n, n]), w(`${dm}${c}.learnable_registers`, [4, n]),
  ];
  return [
    ...ltx2Transformer(rand, dtype, d, dm, 'original'),
    ...connector('video_embeddings_connector', d.v23 ? d.dim : d.cap), ...connector('audio_embeddings_connector', d.v23 ? d.adim : d.cap),
    ...(d.v23
      ? [w('text_embedding_projection.video_aggregate_embed.weight', [d.dim, 3 * d.cap]), w('text_embedding_projection.audio_aggregate_embed.weight', [d.adim, 3 * d.cap])]
      : [w('text_embedding_projection.aggregate_embed.weight', [d.cap, 3 * d.cap])]),
    w('vae.decoder.conv_in.conv.weight', [8, d.latent, 3, 3, 3]), w('vae.per_channel_statistics.mean-of-means', [d.latent]),
    w('audio_vae.decoder.conv_in.conv.weight', [8, 8, 3, 3]), w('vocoder.conv_pre.weight', [8, 8, 7]),
  ];
}

/** Lightricks/LTX-2 transformer/ (diffusers' LTX2VideoTransformer3DModel). */
export function ltx2DiffusersTensors(rand: Rand, dtype: FixtureDType, d: Ltx2Dims = LTX2): FixtureTensor[] {
  return ltx2Transformer(rand, dtype, d, '', 'diffusers');
}

/**
 * Lightricks/LTX-2 connectors/ (diffusers' LTX2TextConnectors, as convert_ltx2_to_diffusers.py
 * writes it): a video and an audio connector of 2 blocks each (attn1 with its q/k RMSNorms, the
 * FFN) and 4 learnable registers, and the text projection of the stacked Gemma layers (3 here, 49
 * in the model): LTX-2's one `text_proj_in` to the caption width, or LTX-2.3's per-modality
 * `video_text_proj_in` / `audio_text_proj_in`, whose connectors are as wide as the video and audio
 * streams and have per-head attention gates.
 */
export function ltx2ConnectorsTensors(rand: Rand, dtype: FixtureDType, d: Ltx2Dims = LTX2): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const connector = (c: string, n: number) => [
    w(`${c}.learnable_registers`, [4, n]),
    ...[0, 1].flatMap((i) => {
      const b = `${c}.transformer_blocks.${i}`;
      return [
        ...['to_q', 'to_k', 'to_v', 'to_out.0'].map((p) => w(`${b}.attn1.${p}.weight`, [n, n])),
        w(`${b}.attn1.norm_q.weight`, [n]), w(`${b}.attn1.norm_k.weight`, [n]),
        ...(d.v23 ? [w(`${b}.attn1.to_gate_logits.weight`, [d.heads, n])] : []),
        w(`${b}.ff.net.0.proj.weight`, [4 * n, n]), w(`${b}.ff.net.2.weight`, [n, 4 * n]),
      ];
    }),
  ];
  return d.v23
    ? [w('video_text_proj_in.weight', [d.dim, 3 * d.cap]), w('audio_text_proj_in.weight', [d.adim, 3 * d.cap]), ...connector('video_connector', d.dim), ...connector('audio_connector', d.adim)]
    : [w('text_proj_in.weight', [d.cap, 3 * d.cap]), ...connector('video_connector', d.cap), ...connector('audio_connector', d.cap)];
}

/** Lightricks/LTX-2 as a diffusers pipeline folder: model_index.json, the transformer, the connectors and the other components. */
export function ltx2Pipeline(rand: Rand, dtype: FixtureDType, d: Ltx2Dims = LTX2): Record<string, Uint8Array | string> {
  const json = (o: object) => JSON.stringify(o, null, 2);
  return {
    'model_index.json': json({
      _class_name: 'LTX2Pipeline', _diffusers_version: '0.37.0', audio_vae: ['diffusers', 'AutoencoderKLLTX2Audio'], connectors: ['ltx2', 'LTX2TextConnectors'],
      scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'Gemma3ForConditionalGeneration'], tokenizer: ['transformers', 'GemmaTokenizerFast'],
      transformer: ['diffusers', 'LTX2VideoTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLLTX2Video'], vocoder: ['ltx2', 'LTX2Vocoder'],
    }),
    'transformer/config.json': json({ _class_name: 'LTX2VideoTransformer3DModel', num_layers: 2 }),
    'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(ltx2DiffusersTensors(rand, dtype, d)),
    'connectors/config.json': json({ _class_name: 'LTX2TextConnectors', video_connector_num_layers: 2, per_modality_projections: d.v23 }),
    'connectors/diffusion_pytorch_model.safetensors': buildSafetensors(ltx2ConnectorsTensors(rand, dtype, d)),
    'text_encoder/config.json': json({ architectures: ['Gemma3ForConditionalGeneration'] }),
    'text_encoder/model.safetensors': buildSafetensors([tensor(rand, 'language_model.model.layers.0.self_attn.q_proj.weight', [d.cap, d.cap], dtype)]),
    'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.conv.weight', [8, d.latent, 3, 3, 3], dtype)]),
    'audio_vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.conv.weight', [8, 8, 3, 3], dtype)]),
    'vocoder/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'conv_in.weight', [8, 8, 7], dtype)]),
    'scheduler/scheduler_config.json': json({ _class_name: 'FlowMatchEulerDiscreteScheduler' }),
  };
}

// --- HiDream-I1 -----------------------------------------------------------------------------------

/**
 * HiDream-I1 with width `dim` (2560), MoE FFNs (4 routed experts and a shared one, SwiGLU `ffn` rows;
 * here 2 experts), 1 double-stream and 1 single-stream block. One naming everywhere (HiDream-ai's
 * diffusers folders; Comfy-Org's files add `model.diffusion_model.`).
 */
export interface HiDreamDims { dim: number; ffn: number; experts: number }
export const HIDREAM: HiDreamDims = { dim: 8, ffn: 12, experts: 2 };

export function hiDreamTensors(rand: Rand, dtype: FixtureDType, d: HiDreamDims = HIDREAM, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const swiglu = (p: string) => [w(`${p}.w1.weight`, [d.ffn, d.dim]), w(`${p}.w2.weight`, [d.dim, d.ffn]), w(`${p}.w3.weight`, [d.ffn, d.dim])];
  const moe = (p: string) => [
    ...swiglu(`${p}.shared_experts`), ...Array.from({ length: d.experts }, (_, e) => swiglu(`${p}.experts.${e}`)).flat(), w(`${p}.gate.weight`, [d.experts, d.dim]),
  ];
  return [
    w('x_embedder.proj.weight', [d.dim, 16]), w('t_embedder.timestep_embedder.linear_1.weight', [d.dim, 6]),
    w('double_stream_blocks.0.block.adaLN_modulation.1.weight', [12 * d.dim, d.dim]),
    ...['to_q', 'to_k', 'to_v', 'to_out', 'to_q_t', 'to_k_t', 'to_v_t', 'to_out_t'].map((p) => w(`double_stream_blocks.0.block.attn1.${p}.weight`, [d.dim, d.dim])),
    ...moe('double_stream_blocks.0.block.ff_i'), ...swiglu('double_stream_blocks.0.block.ff_t'),
    w('single_stream_blocks.0.block.adaLN_modulation.1.weight', [6 * d.dim, d.dim]),
    ...['to_q', 'to_k', 'to_v', 'to_out'].map((p) => w(`single_stream_blocks.0.block.attn1.${p}.weight`, [d.dim, d.dim])),
    ...moe('single_stream_blocks.0.block.ff_i'),
    w('final_layer.linear.weight', [16, d.dim]), w('final_layer.adaLN_modulation.1.weight', [2 * d.dim, d.dim]),
  ];
}
