/**
 * Small diffusion checkpoints and LoRAs with the real key names, shapes (scaled down), dtypes and
 * metadata of the files people share, built from the public sources: BFL's Flux single files and
 * diffusers' FluxTransformer2DModel, SAI's SD3 files, SGM (SDXL) checkpoints, and LoRAs as kohya
 * sd-scripts, diffusers' trainers / ai-toolkit, OneTrainer, XLabs and ComfyUI write them.
 *
 * Every LoRA module records where its ΔW rows land, written out here by hand from the layouts'
 * sources (not from the code under test), so the tests' float64 truth is independent.
 */
import { randomValues, roundForDType, type DecodedTensor, type FixtureDType, type FixtureTensor } from './fixtures.js';
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
  return out;
}

// --- LoRA modules -----------------------------------------------------------------------------------

/** One LoRA module: its factors' names and shapes, its scale, and where its ΔW rows land. */
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

/** ΔW rows [0, n) onto base rows [at, at + n). */
export const rowsAt = (at: number, n: number): TruthTerm['rows'] => [{ src: 0, dst: at, count: n }];
/** ΔW rows [from, from + n) onto base rows [0, n) (one slice of a fused module on its own tensor). */
export const rowsFrom = (from: number, n: number): TruthTerm['rows'] => [{ src: from, dst: 0, count: n }];
/** The two halves of 2n rows exchanged (shift/scale order differs between the namings). */
export const swappedHalves = (n: number): TruthTerm['rows'] => [{ src: 0, dst: n, count: n }, { src: n, dst: 0, count: n }];
