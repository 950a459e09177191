/**
 * Small diffusion checkpoints and LoRAs with the real key names, shapes (scaled down), dtypes and
 * metadata of the files people share, built from the public sources: BFL's Flux single files and
 * diffusers' FluxTransformer2DModel, SAI's SD3 files, SGM (SDXL) checkpoints, and LoRAs as kohya
 * sd-scripts, diffusers' trainers / ai-toolkit, OneTrainer, XLabs and ComfyUI write them.
 *
 * Every LoRA module records where its ΔW rows land, written out here by hand from the layouts'
 * sources (not from the code under test), so the tests' float64 truth is independent.
 */
import { decodeSafetensors, randomValues, roundForDType, type DecodedTensor, type FixtureDType, type FixtureTensor } from './fixtures.js';
import type { TruthTerm } from './merge-truth.js';

export type Rand = () => number;

export function tensor(rand: Rand, name: string, shape: number[], dtype: FixtureDType, scale = 1): FixtureTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: randomValues(n, rand, scale).map((x) => roundForDType(x, dtype)) };
}

// --- Flux -----------------------------------------------------------------------------------------

/** Flux with hidden size h (3072 in the real model), MLP 4h, 2 double and 2 single blocks. */
export interface FluxDims { h: number; inChannels: number; txt: number; vec: number; time: number }
export const FLUX: FluxDims = { h: 8, inChannels: 16, txt: 12, vec: 10, time: 6 };

/** The BFL single file (flux1-dev.safetensors) in `dtype`, with its f32/bf16 norms and biases. */
export function fluxBflTensors(rand: Rand, dtype: FixtureDType, d: FluxDims = FLUX): FixtureTensor[] {
  const { h } = d;
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const bias = (name: string, n: number) => tensor(rand, name, [n], 'BF16');
  const out: FixtureTensor[] = [
    w('img_in.weight', [h, d.inChannels]), bias('img_in.bias', h),
    w('txt_in.weight', [h, d.txt]), bias('txt_in.bias', h),
    w('time_in.in_layer.weight', [h, d.time]), w('time_in.out_layer.weight', [h, h]),
    w('vector_in.in_layer.weight', [h, d.vec]), w('vector_in.out_layer.weight', [h, h]),
    w('guidance_in.in_layer.weight', [h, d.time]), w('guidance_in.out_layer.weight', [h, h]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `double_blocks.${i}`;
    for (const s of ['img', 'txt']) {
      out.push(
        w(`${b}.${s}_mod.lin.weight`, [6 * h, h]), bias(`${b}.${s}_mod.lin.bias`, 6 * h),
        w(`${b}.${s}_attn.qkv.weight`, [3 * h, h]), bias(`${b}.${s}_attn.qkv.bias`, 3 * h),
        tensor(rand, `${b}.${s}_attn.norm.query_norm.scale`, [h / 2], 'BF16'),
        w(`${b}.${s}_attn.proj.weight`, [h, h]),
        w(`${b}.${s}_mlp.0.weight`, [4 * h, h]), w(`${b}.${s}_mlp.2.weight`, [h, 4 * h]),
      );
    }
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_blocks.${i}`;
    out.push(
      w(`${b}.linear1.weight`, [7 * h, h]), bias(`${b}.linear1.bias`, 7 * h),
      w(`${b}.linear2.weight`, [h, 5 * h]),
      w(`${b}.modulation.lin.weight`, [3 * h, h]),
      tensor(rand, `${b}.norm.key_norm.scale`, [h / 2], 'BF16'),
    );
  }
  out.push(w('final_layer.adaLN_modulation.1.weight', [2 * h, h]), w('final_layer.linear.weight', [d.inChannels, h]));
  return out;
}

/** diffusers' FluxTransformer2DModel (transformer/diffusion_pytorch_model.safetensors). */
export function fluxDiffusersTensors(rand: Rand, dtype: FixtureDType, d: FluxDims = FLUX): FixtureTensor[] {
  const { h } = d;
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const out: FixtureTensor[] = [
    w('x_embedder.weight', [h, d.inChannels]), w('context_embedder.weight', [h, d.txt]),
    w('time_text_embed.timestep_embedder.linear_1.weight', [h, d.time]), w('time_text_embed.timestep_embedder.linear_2.weight', [h, h]),
    w('time_text_embed.text_embedder.linear_1.weight', [h, d.vec]), w('time_text_embed.text_embedder.linear_2.weight', [h, h]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    out.push(w(`${b}.norm1.linear.weight`, [6 * h, h]), w(`${b}.norm1_context.linear.weight`, [6 * h, h]));
    for (const p of ['to_q', 'to_k', 'to_v', 'add_q_proj', 'add_k_proj', 'add_v_proj']) out.push(w(`${b}.attn.${p}.weight`, [h, h]));
    out.push(w(`${b}.attn.to_out.0.weight`, [h, h]), w(`${b}.attn.to_add_out.weight`, [h, h]));
    out.push(w(`${b}.ff.net.0.proj.weight`, [4 * h, h]), w(`${b}.ff.net.2.weight`, [h, 4 * h]));
    out.push(w(`${b}.ff_context.net.0.proj.weight`, [4 * h, h]), w(`${b}.ff_context.net.2.weight`, [h, 4 * h]));
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_transformer_blocks.${i}`;
    out.push(w(`${b}.norm.linear.weight`, [3 * h, h]));
    for (const p of ['to_q', 'to_k', 'to_v']) out.push(w(`${b}.attn.${p}.weight`, [h, h]));
    out.push(w(`${b}.proj_mlp.weight`, [4 * h, h]), w(`${b}.proj_out.weight`, [h, 5 * h]));
  }
  out.push(w('norm_out.linear.weight', [2 * h, h]), w('proj_out.weight', [d.inChannels, h]));
  // The q/k RMSNorms (BFL's `norm.query_norm.scale`), one weight of the head size (h/2 here) each.
  const norm = (name: string) => tensor(rand, name, [h / 2], 'BF16');
  for (let i = 0; i < 2; i++) for (const n of ['norm_q', 'norm_k', 'norm_added_q', 'norm_added_k']) out.push(norm(`transformer_blocks.${i}.attn.${n}.weight`));
  for (let i = 0; i < 2; i++) for (const n of ['norm_q', 'norm_k']) out.push(norm(`single_transformer_blocks.${i}.attn.${n}.weight`));
  return out;
}

// --- LoRA modules -----------------------------------------------------------------------------------

/** One LoRA module: its factors' names and shapes, its scale, and where its ΔW rows land. */
// --- Wan 2.1 / 2.2 ---------------------------------------------------------------------------------

/**
 * Wan with model width `dim` (1536 for 1.3B, 5120 for 14B), FFN `ffn` (8960 / 13824), text width
 * `text` (4096), time frequencies `freq` (256), CLIP image width `img` (1280), 2 blocks, image-to-video
 * parts (k_img, v_img, img_emb) included.
 */
export interface WanDims { dim: number; ffn: number; text: number; freq: number; img: number; patchOut: number }
export const WAN: WanDims = { dim: 8, ffn: 20, text: 12, freq: 6, img: 10, patchOut: 16 };

/** Wan-AI's own file (diffusion_pytorch_model.safetensors of Wan2.1-I2V, and Comfy-Org's repackaged ones). */
export function wanOriginalTensors(rand: Rand, dtype: FixtureDType, d: WanDims = WAN): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, name, shape, 'F32');
  const out: FixtureTensor[] = [
    w('text_embedding.0.weight', [d.dim, d.text]), w('text_embedding.2.weight', [d.dim, d.dim]),
    w('time_embedding.0.weight', [d.dim, d.freq]), w('time_embedding.2.weight', [d.dim, d.dim]),
    w('time_projection.1.weight', [6 * d.dim, d.dim]), f32('time_projection.1.bias', [6 * d.dim]),
    f32('img_emb.proj.0.weight', [d.img]), w('img_emb.proj.1.weight', [d.img, d.img]), w('img_emb.proj.3.weight', [d.dim, d.img]), f32('img_emb.proj.4.weight', [d.dim]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    out.push(f32(`${b}.modulation`, [1, 6, d.dim]));
    for (const p of ['q', 'k', 'v', 'o']) out.push(w(`${b}.self_attn.${p}.weight`, [d.dim, d.dim]), f32(`${b}.self_attn.${p}.bias`, [d.dim]));
    for (const p of ['q', 'k', 'v', 'o', 'k_img', 'v_img']) out.push(w(`${b}.cross_attn.${p}.weight`, [d.dim, d.dim]));
    out.push(f32(`${b}.self_attn.norm_q.weight`, [d.dim]), f32(`${b}.cross_attn.norm_k_img.weight`, [d.dim]));
    out.push(f32(`${b}.norm3.weight`, [d.dim]), f32(`${b}.norm3.bias`, [d.dim]));
    out.push(w(`${b}.ffn.0.weight`, [d.ffn, d.dim]), f32(`${b}.ffn.0.bias`, [d.ffn]), w(`${b}.ffn.2.weight`, [d.dim, d.ffn]));
  }
  out.push(w('head.head.weight', [d.patchOut, d.dim]), f32('head.modulation', [1, 2, d.dim]));
  return out;
}

/** diffusers' WanTransformer3DModel (transformer/diffusion_pytorch_model.safetensors of Wan2.1-I2V-*-Diffusers). */
export function wanDiffusersTensors(rand: Rand, dtype: FixtureDType, d: WanDims = WAN): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, name, shape, 'F32');
  const c = 'condition_embedder';
  const out: FixtureTensor[] = [
    w(`${c}.text_embedder.linear_1.weight`, [d.dim, d.text]), w(`${c}.text_embedder.linear_2.weight`, [d.dim, d.dim]),
    w(`${c}.time_embedder.linear_1.weight`, [d.dim, d.freq]), w(`${c}.time_embedder.linear_2.weight`, [d.dim, d.dim]),
    w(`${c}.time_proj.weight`, [6 * d.dim, d.dim]),
    f32(`${c}.image_embedder.norm1.weight`, [d.img]), w(`${c}.image_embedder.ff.net.0.proj.weight`, [d.img, d.img]),
    w(`${c}.image_embedder.ff.net.2.weight`, [d.dim, d.img]), f32(`${c}.image_embedder.norm2.weight`, [d.dim]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    out.push(f32(`${b}.scale_shift_table`, [1, 6, d.dim]));
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) out.push(w(`${b}.attn1.${p}.weight`, [d.dim, d.dim]));
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0', 'add_k_proj', 'add_v_proj']) out.push(w(`${b}.attn2.${p}.weight`, [d.dim, d.dim]));
    out.push(f32(`${b}.attn1.norm_q.weight`, [d.dim]), f32(`${b}.attn2.norm_added_k.weight`, [d.dim]), f32(`${b}.norm2.weight`, [d.dim]));
    out.push(w(`${b}.ffn.net.0.proj.weight`, [d.ffn, d.dim]), w(`${b}.ffn.net.2.weight`, [d.dim, d.ffn]));
  }
  out.push(w('proj_out.weight', [d.patchOut, d.dim]), f32('scale_shift_table', [1, 2, d.dim]));
  // The cross-attention LayerNorm's bias (Wan's norm3.bias).
  for (let i = 0; i < 2; i++) out.push(f32(`blocks.${i}.norm2.bias`, [d.dim]));
  return out;
}

export interface LoraSpec {
  down: string;
  up: string;
  r: number;
  out: number;
  in: number;
  /** The base tensors it lands on, and rows (absent: the whole tensor, row for row). */
  lands: { key: string; rows?: TruthTerm['rows'] }[];
  /** α/r (or 1). */
  scale: number;
  /** Extra tensors of the module (`.alpha`). */
  extra?: FixtureTensor[];
}

export function loraTensors(rand: Rand, specs: LoraSpec[], dtype: FixtureDType): FixtureTensor[] {
  return specs.flatMap((s) => [tensor(rand, s.down, [s.r, s.in], dtype, 0.5), tensor(rand, s.up, [s.out, s.r], dtype, 0.5), ...(s.extra ?? [])]);
}

/** The float64 truth's terms for a LoRA file built from `specs`, at user weight `weight`. */
export function truthTerms(adapter: Map<string, DecodedTensor>, specs: LoraSpec[], weight: number): TruthTerm[] {
  return specs.flatMap((s) => s.lands.map((l) => ({
    baseKey: l.key, a: adapter.get(s.down)!, b: adapter.get(s.up)!, scale: weight * s.scale, rows: l.rows,
  })));
}

/** An adapter as it is loaded: its files by name and the user's weight. */
export interface WeightedAdapter { files: Record<string, Uint8Array>; weight: number }

/**
 * Two FLUX.2 LoRAs stacked as people load them, ai-toolkit's style LoRA at 0.75 and musubi-tuner's
 * detail LoRA at 1, with the float64 truth's terms of both.
 */
export function flux2StyleAndDetail(aiToolkit: Uint8Array, aiToolkitSpecs: LoraSpec[], musubi: Uint8Array, musubiSpecs: LoraSpec[]) {
  const adapters: WeightedAdapter[] = [
    { files: { 'flux2_style_ai_toolkit.safetensors': aiToolkit }, weight: 0.75 },
    { files: { 'flux2_detail_musubi.safetensors': musubi }, weight: 1 },
  ];
  const terms: TruthTerm[] = [
    ...truthTerms(decodeSafetensors(aiToolkit).tensors, aiToolkitSpecs, 0.75),
    ...truthTerms(decodeSafetensors(musubi).tensors, musubiSpecs, 1),
  ];
  return { adapters, terms, termsOf: (key: string) => terms.filter((t) => t.baseKey === key) };
}

/** ΔW rows [0, n) onto base rows [at, at + n). */
export const rowsAt = (at: number, n: number): TruthTerm['rows'] => [{ src: 0, dst: at, count: n }];
/** ΔW rows [from, from + n) onto base rows [0, n) (one slice of a fused module on its own tensor). */
export const rowsFrom = (from: number, n: number): TruthTerm['rows'] => [{ src: from, dst: 0, count: n }];
/** The two halves of 2n rows exchanged (shift/scale order differs between the namings). */
export const swappedHalves = (n: number): TruthTerm['rows'] => [{ src: 0, dst: n, count: n }, { src: n, dst: 0, count: n }];

/** A kohya-form LoRA (`.lora_down/.lora_up.weight` and `.alpha`, as sd-scripts writes): scale α/r. */
export function kohyaSpec(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha: number): LoraSpec {
  return {
    down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands,
    scale: alpha / r, extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
  };
}

/** A PEFT-form LoRA (`.lora_A/.lora_B.weight`) with the scale its file implies (metadata α/r, else 1). */
export function peftSpec(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], scale: number): LoraSpec {
  return { down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r, out, in: inF, lands, scale };
}

/** The safetensors metadata diffusers' `save_lora_weights` writes for an r = 4, α = 8 transformer LoRA. */
export const DIFFUSERS_LORA_METADATA = {
  format: 'pt',
  lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.peft_type': 'LORA', 'transformer.use_dora': false }),
};
