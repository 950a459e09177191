/**
 * LoRAs for the newer diffusion transformers — FLUX.2 (dev, klein), Z-Image, Qwen-Image and Chroma —
 * in the key forms their trainers write (ai-toolkit, diffusers' trainers, musubi-tuner / sd-scripts,
 * DiffSynth-Studio, ComfyUI's extraction), onto the checkpoints people hold (BFL / Comfy-Org single
 * files, bare or under `model.diffusion_model.`, bf16 or fp8; diffusers folders), file to file on the
 * CPU and on WebGPU, against float64 truth. Where each module's rows land is written out in the specs
 * by hand, from diffusers' scripts/convert_flux2_to_diffusers.py, its single-file conversions for
 * Z-Image and Chroma, and ComfyUI's LoRA key maps (comfy/utils.py flux_to_diffusers, z_image_to_diffusers):
 * - FLUX.2: q, k, v are the thirds of `img_attn.qkv` / `txt_attn.qkv`; single-block `linear1`
 *   (q, k, v and the SwiGLU's gate and up: 3h + 6h rows) stays one tensor, `attn.to_qkv_mlp_proj`;
 *   `final_layer.adaLN_modulation.1` is `norm_out.linear` with its halves swapped;
 * - Z-Image: q, k, v are the thirds of ComfyUI's `attention.qkv`; the rest is renamed row for row;
 * - Chroma: FLUX.1's rules (linear1 = q, k, v, proj_mlp: h, h, h, 4h rows), its approximator renamed;
 * - Lumina 2: q, k, v are rows of `attention.qkv` in the ratio 3 : 1 : 1 (grouped k/v heads:
 *   diffusers' converters split [2304, 768, 768]); w1/w2/w3 are linear_1/2/3;
 * - LTX-Video: only `patchify_proj` ↔ `proj_in` and `adaln_single` ↔ `time_embed` differ;
 * - Qwen-Image and HiDream: one naming everywhere, so every module lands by name.
 */
import { describe, expect, it } from 'vitest';
import { flux2Bfl } from '../src/formats/layouts/flux2-bfl.js';
import { zImage } from '../src/formats/layouts/z-image.js';
import { lumina2 } from '../src/formats/layouts/lumina2.js';
import { ltxVideo } from '../src/formats/layouts/ltx-video.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { rowsAt, rowsFrom, swappedHalves, tensor, type LoraSpec, DIFFUSERS_LORA_METADATA } from './helpers/diffusion-fixtures.js';
import {
  CHROMA, FLUX2, HIDREAM, LTX, LUMINA2, hiDreamTensors, ltxDiffusersTensors, ltxOriginalTensors, QWEN_IMAGE, ZIMAGE, chromaBflTensors, chromaDiffusersTensors, flux2BflTensors, flux2DiffusersTensors,
  lumina2DiffusersTensors, lumina2OriginalTensors, qwenImageTensors, zImageComfyTensors, zImageDiffusersTensors,
} from './helpers/dit-fixtures.js';
import { loraCaseSuite, planProblemsOf, withoutLayout, type LoraCase, type LoraCaseAdapterSpec } from './helpers/lora-case.js';

const rand = seededRandom(20260112);

/** kohya form (musubi-tuner, sd-scripts, ComfyUI's extraction): `.lora_down/.lora_up.weight` and `.alpha`. */
function kohya(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha?: number): LoraSpec {
  return {
    down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands,
    scale: alpha === undefined ? 1 : alpha / r, extra: alpha === undefined ? [] : [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
  };
}
/** PEFT form (ai-toolkit, diffusers' trainers): `.lora_A/.lora_B.weight`; α from the file's metadata, else scale 1. */
function peft(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], scale: number, infix = ''): LoraSpec {
  return { down: `${name}.lora_A${infix}.weight`, up: `${name}.lora_B${infix}.weight`, r, out, in: inF, lands, scale };
}
/** ΔW rows [i·n, (i+1)·n) onto tensor i (a fused module on separate tensors). */
const thirds = (keys: string[], n: number): LoraSpec['lands'] => keys.map((key, i) => ({ key, rows: rowsFrom(i * n, n) }));
/** diffusers' trainers: r 4, α 8 in `lora_adapter_metadata`. */

type AdapterCase = LoraCaseAdapterSpec;
type Case = LoraCase;
const file = (name: string, tensors: FixtureTensor[], metadata?: Record<string, string>) => ({ [name]: buildSafetensors(tensors, metadata) });
const diffusersFolder = (className: string, tensors: FixtureTensor[]) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify({ _class_name: className }),
});

// --- FLUX.2 ---------------------------------------------------------------------------------------

const { h } = FLUX2;
const KLEIN = { ...FLUX2, guidance: false };
const F2 = 'flux2-dev.safetensors';
const KLEIN_FP8 = 'flux-2-klein-4b-fp8.safetensors';
const cm = 'model.diffusion_model.';

/** diffusers' train_dreambooth_lora_flux2.py: `transformer.` + diffusers names, onto BFL names (prefix `p`). */
function diffusersFlux2(p: string, d = FLUX2): LoraSpec[] {
  const T = 'transformer.transformer_blocks';
  const S = 'transformer.single_transformer_blocks';
  return [
    peft(`${T}.0.attn.to_k`, 4, h, h, [{ key: `${p}double_blocks.0.img_attn.qkv.weight`, rows: rowsAt(h, h) }], 2),
    peft(`${T}.1.attn.add_v_proj`, 4, h, h, [{ key: `${p}double_blocks.1.txt_attn.qkv.weight`, rows: rowsAt(2 * h, h) }], 2),
    peft(`${T}.0.attn.to_out.0`, 4, h, h, [{ key: `${p}double_blocks.0.img_attn.proj.weight` }], 2),
    peft(`${T}.1.attn.to_add_out`, 4, h, h, [{ key: `${p}double_blocks.1.txt_attn.proj.weight` }], 2),
    peft(`${T}.0.ff.linear_in`, 4, 6 * h, h, [{ key: `${p}double_blocks.0.img_mlp.0.weight` }], 2),
    peft(`${T}.1.ff_context.linear_out`, 4, h, 3 * h, [{ key: `${p}double_blocks.1.txt_mlp.2.weight` }], 2),
    peft(`${S}.0.attn.to_qkv_mlp_proj`, 4, 9 * h, h, [{ key: `${p}single_blocks.0.linear1.weight` }], 2),
    peft(`${S}.1.attn.to_out`, 4, h, 4 * h, [{ key: `${p}single_blocks.1.linear2.weight` }], 2),
    peft('transformer.double_stream_modulation_txt.linear', 4, 6 * h, h, [{ key: `${p}double_stream_modulation_txt.lin.weight` }], 2),
    peft('transformer.single_stream_modulation.linear', 4, 3 * h, h, [{ key: `${p}single_stream_modulation.lin.weight` }], 2),
    peft('transformer.x_embedder', 4, h, d.inChannels, [{ key: `${p}img_in.weight` }], 2),
    peft('transformer.time_guidance_embed.timestep_embedder.linear_1', 4, h, d.time, [{ key: `${p}time_in.in_layer.weight` }], 2),
    ...(d.guidance ? [peft('transformer.time_guidance_embed.guidance_embedder.linear_2', 4, h, h, [{ key: `${p}guidance_in.out_layer.weight` }], 2)] : []),
    // Diffusers' model conversion swaps (shift, scale) to (scale, shift) here; its LoRA converter does not. We follow the model.
    peft('transformer.norm_out.linear', 4, 2 * h, h, [{ key: `${p}final_layer.adaLN_modulation.1.weight`, rows: swappedHalves(h) }], 2),
  ];
}

/** ai-toolkit's FLUX.2 LoRAs: `diffusion_model.` + BFL names, PEFT form, no α (scale 1); onto the BFL file they land by name. */
const aiToolkitFlux2OnBfl: LoraSpec[] = [
  peft('diffusion_model.double_blocks.0.img_attn.qkv', 3, 3 * h, h, [{ key: 'double_blocks.0.img_attn.qkv.weight' }], 1),
  peft('diffusion_model.double_blocks.1.txt_mlp.0', 3, 6 * h, h, [{ key: 'double_blocks.1.txt_mlp.0.weight' }], 1),
  peft('diffusion_model.single_blocks.1.linear1', 3, 9 * h, h, [{ key: 'single_blocks.1.linear1.weight' }], 1),
];

/** The same trainer's names onto diffusers' Flux2Transformer2DModel. */
const D2 = (i: number, rest: string) => `transformer_blocks.${i}.${rest}.weight`;
const aiToolkitFlux2OnDiffusers: LoraSpec[] = [
  peft('diffusion_model.double_blocks.0.img_attn.qkv', 3, 3 * h, h, thirds([D2(0, 'attn.to_q'), D2(0, 'attn.to_k'), D2(0, 'attn.to_v')], h), 1),
  peft('diffusion_model.double_blocks.1.txt_attn.qkv', 3, 3 * h, h, thirds([D2(1, 'attn.add_q_proj'), D2(1, 'attn.add_k_proj'), D2(1, 'attn.add_v_proj')], h), 1),
  peft('diffusion_model.double_blocks.0.img_attn.proj', 3, h, h, [{ key: D2(0, 'attn.to_out.0') }], 1),
  peft('diffusion_model.double_blocks.1.txt_attn.proj', 3, h, h, [{ key: D2(1, 'attn.to_add_out') }], 1),
  peft('diffusion_model.double_blocks.0.img_mlp.0', 3, 6 * h, h, [{ key: D2(0, 'ff.linear_in') }], 1),
  peft('diffusion_model.double_blocks.1.img_mlp.2', 3, h, 3 * h, [{ key: D2(1, 'ff.linear_out') }], 1),
  peft('diffusion_model.double_blocks.0.txt_mlp.0', 3, 6 * h, h, [{ key: D2(0, 'ff_context.linear_in') }], 1),
  peft('diffusion_model.single_blocks.0.linear1', 3, 9 * h, h, [{ key: 'single_transformer_blocks.0.attn.to_qkv_mlp_proj.weight' }], 1),
  peft('diffusion_model.single_blocks.1.linear2', 3, h, 4 * h, [{ key: 'single_transformer_blocks.1.attn.to_out.weight' }], 1),
  peft('diffusion_model.double_stream_modulation_img.lin', 3, 6 * h, h, [{ key: 'double_stream_modulation_img.linear.weight' }], 1),
  peft('diffusion_model.txt_in', 3, h, FLUX2.txt, [{ key: 'context_embedder.weight' }], 1),
  peft('diffusion_model.guidance_in.in_layer', 3, h, FLUX2.time, [{ key: 'time_guidance_embed.guidance_embedder.linear_1.weight' }], 1),
  peft('diffusion_model.final_layer.adaLN_modulation.1', 3, 2 * h, h, [{ key: 'norm_out.linear.weight', rows: swappedHalves(h) }], 1),
];
/** musubi-tuner's FLUX.2 LoRAs (sd-scripts form): `lora_unet_` + flattened BFL names, α. */
const musubiFlux2OnDiffusers: LoraSpec[] = [
  kohya('lora_unet_double_blocks_1_img_attn_qkv', 2, 3 * h, h, thirds([D2(1, 'attn.to_q'), D2(1, 'attn.to_k'), D2(1, 'attn.to_v')], h), 1),
  kohya('lora_unet_double_blocks_0_txt_mlp_2', 2, h, 3 * h, [{ key: D2(0, 'ff_context.linear_out') }], 1),
  kohya('lora_unet_single_blocks_1_linear1', 2, 9 * h, h, [{ key: 'single_transformer_blocks.1.attn.to_qkv_mlp_proj.weight' }], 1),
  kohya('lora_unet_time_in_in_layer', 2, h, FLUX2.time, [{ key: 'time_guidance_embed.timestep_embedder.linear_1.weight' }], 1),
  kohya('lora_unet_final_layer_linear', 2, FLUX2.inChannels, h, [{ key: 'proj_out.weight' }], 1),
];
const musubiFlux2OnBfl: LoraSpec[] = [
  kohya('lora_unet_double_blocks_1_img_attn_proj', 2, h, h, [{ key: 'double_blocks.1.img_attn.proj.weight' }], 1),
  kohya('lora_unet_single_blocks_0_linear2', 2, h, 4 * h, [{ key: 'single_blocks.0.linear2.weight' }], 1),
];

// --- Z-Image --------------------------------------------------------------------------------------

const { dim, ffn, patch, adaln, cap } = ZIMAGE;
const ZT = 'z_image_turbo_bf16.safetensors';
const qkvRows = (p: string, block: string, which: 0 | 1 | 2) => [{ key: `${p}${block}.attention.qkv.weight`, rows: rowsAt(which * dim, dim) }];

/** ai-toolkit's Z-Image LoRAs: `diffusion_model.` + diffusers names, PEFT form, onto ComfyUI's names (prefix `p`). */
function aiToolkitZImage(p: string): LoraSpec[] {
  const d = 'diffusion_model.';
  return [
    peft(`${d}layers.0.attention.to_q`, 4, dim, dim, qkvRows(p, 'layers.0', 0), 1),
    peft(`${d}layers.1.attention.to_k`, 4, dim, dim, qkvRows(p, 'layers.1', 1), 1),
    peft(`${d}noise_refiner.0.attention.to_v`, 4, dim, dim, qkvRows(p, 'noise_refiner.0', 2), 1),
    peft(`${d}context_refiner.0.attention.to_q`, 4, dim, dim, qkvRows(p, 'context_refiner.0', 0), 1),
    peft(`${d}layers.1.attention.to_out.0`, 4, dim, dim, [{ key: `${p}layers.1.attention.out.weight` }], 1),
    peft(`${d}layers.0.feed_forward.w1`, 4, ffn, dim, [{ key: `${p}layers.0.feed_forward.w1.weight` }], 1),
    peft(`${d}layers.0.feed_forward.w2`, 4, dim, ffn, [{ key: `${p}layers.0.feed_forward.w2.weight` }], 1),
    peft(`${d}layers.1.feed_forward.w3`, 4, ffn, dim, [{ key: `${p}layers.1.feed_forward.w3.weight` }], 1),
    peft(`${d}layers.1.adaLN_modulation.0`, 4, 4 * dim, adaln, [{ key: `${p}layers.1.adaLN_modulation.0.weight` }], 1),
    peft(`${d}all_x_embedder.2-1`, 4, dim, patch, [{ key: `${p}x_embedder.weight` }], 1),
    peft(`${d}all_final_layer.2-1.linear`, 4, patch, dim, [{ key: `${p}final_layer.linear.weight` }], 1),
    peft(`${d}all_final_layer.2-1.adaLN_modulation.1`, 4, dim, adaln, [{ key: `${p}final_layer.adaLN_modulation.1.weight` }], 1),
    peft(`${d}cap_embedder.1`, 4, dim, cap, [{ key: `${p}cap_embedder.1.weight` }], 1),
  ];
}
/** diffusers' train_dreambooth_lora_z_image.py: `transformer.` + diffusers names, α in the metadata. */
const diffusersZImage: LoraSpec[] = [
  peft('transformer.layers.1.attention.to_v', 4, dim, dim, qkvRows('', 'layers.1', 2), 2),
  peft('transformer.noise_refiner.0.attention.to_out.0', 4, dim, dim, [{ key: 'noise_refiner.0.attention.out.weight' }], 2),
];
/** sd-scripts-form LoRAs on diffusers' names (`lora_unet_layers_0_attention_to_k`, α), as diffusers' converter reads them. */
const kohyaZImage: LoraSpec[] = [
  kohya('lora_unet_layers_0_attention_to_k', 2, dim, dim, qkvRows('', 'layers.0', 1), 1),
  kohya('lora_unet_layers_0_attention_to_out_0', 2, dim, dim, [{ key: 'layers.0.attention.out.weight' }], 1),
  kohya('lora_unet_context_refiner_0_feed_forward_w2', 2, dim, ffn, [{ key: 'context_refiner.0.feed_forward.w2.weight' }], 1),
];
/** ComfyUI's extracted LoRAs: `diffusion_model.` + ComfyUI's names (fused qkv), α; onto diffusers' names. */
const Z = (rest: string) => `${rest}.weight`;
const comfyZImageOnDiffusers: LoraSpec[] = [
  kohya('diffusion_model.layers.0.attention.qkv', 3, 3 * dim, dim, thirds([Z('layers.0.attention.to_q'), Z('layers.0.attention.to_k'), Z('layers.0.attention.to_v')], dim), 6),
  kohya('diffusion_model.context_refiner.0.attention.qkv', 3, 3 * dim, dim, thirds([Z('context_refiner.0.attention.to_q'), Z('context_refiner.0.attention.to_k'), Z('context_refiner.0.attention.to_v')], dim), 6),
  kohya('diffusion_model.layers.1.attention.out', 3, dim, dim, [{ key: Z('layers.1.attention.to_out.0') }], 6),
  kohya('diffusion_model.noise_refiner.0.feed_forward.w1', 3, ffn, dim, [{ key: Z('noise_refiner.0.feed_forward.w1') }], 6),
  kohya('diffusion_model.x_embedder', 3, dim, patch, [{ key: Z('all_x_embedder.2-1') }], 6),
  kohya('diffusion_model.final_layer.linear', 3, patch, dim, [{ key: Z('all_final_layer.2-1.linear') }], 6),
  // A scale alone (no shift): renamed, nothing swapped.
  kohya('diffusion_model.final_layer.adaLN_modulation.1', 3, dim, adaln, [{ key: Z('all_final_layer.2-1.adaLN_modulation.1') }], 6),
];
const comfyZImageOnComfy: LoraSpec[] = [
  kohya('diffusion_model.layers.1.attention.qkv', 3, 3 * dim, dim, [{ key: 'layers.1.attention.qkv.weight' }], 6),
];

// --- Qwen-Image -----------------------------------------------------------------------------------

const q = QWEN_IMAGE.dim;
const QI = 'qwen_image_fp8_e4m3fn.safetensors';
/** Every trainer's names are the model's own; `p`: the base's prefix. */
function qwenLoras(p: string): AdapterCase[] {
  const T = (i: number, rest: string) => `${p}transformer_blocks.${i}.${rest}.weight`;
  return [
    { file: 'pytorch_lora_weights.safetensors', weight: 1, metadata: DIFFUSERS_LORA_METADATA, specs: [
      peft('transformer.transformer_blocks.0.attn.to_q', 4, q, q, [{ key: T(0, 'attn.to_q') }], 2),
      peft('transformer.transformer_blocks.1.attn.add_k_proj', 4, q, q, [{ key: T(1, 'attn.add_k_proj') }], 2),
      peft('transformer.transformer_blocks.0.img_mlp.net.0.proj', 4, 4 * q, q, [{ key: T(0, 'img_mlp.net.0.proj') }], 2),
      peft('transformer.transformer_blocks.1.txt_mod.1', 4, 6 * q, q, [{ key: T(1, 'txt_mod.1') }], 2),
    ] },
    // musubi-tuner (networks.lora_qwen_image): kohya form, α.
    { file: 'qwen-image-lora.safetensors', weight: 0.8, metadata: { ss_network_module: 'networks.lora_qwen_image' }, specs: [
      kohya('lora_unet_transformer_blocks_0_attn_to_add_out', 2, q, q, [{ key: T(0, 'attn.to_add_out') }], 1),
      kohya('lora_unet_transformer_blocks_1_img_mod_1', 2, 6 * q, q, [{ key: T(1, 'img_mod.1') }], 1),
      kohya('lora_unet_transformer_blocks_1_txt_mlp_net_2', 2, q, 4 * q, [{ key: T(1, 'txt_mlp.net.2') }], 1),
      kohya('lora_unet_img_in', 2, q, QWEN_IMAGE.patch, [{ key: `${p}img_in.weight` }], 1),
    ] },
    // DiffSynth-Studio: bare names, PEFT's `.default` adapter name kept, no α (scale 1).
    { file: 'diffsynth-qwen.safetensors', weight: 1, specs: [
      peft('transformer_blocks.0.attn.to_v', 2, q, q, [{ key: T(0, 'attn.to_v') }], 1, '.default'),
      peft('transformer_blocks.1.attn.to_out.0', 2, q, q, [{ key: T(1, 'attn.to_out.0') }], 1, '.default'),
    ] },
    // ComfyUI's extraction: `diffusion_model.` + the same names, α.
    { file: 'comfyui-extracted.safetensors', weight: -0.5, specs: [
      kohya('diffusion_model.norm_out.linear', 2, 2 * q, q, [{ key: `${p}norm_out.linear.weight` }], 4),
      kohya('diffusion_model.proj_out', 2, QWEN_IMAGE.patch, q, [{ key: `${p}proj_out.weight` }], 4),
    ] },
  ];
}

// --- Chroma ---------------------------------------------------------------------------------------

const c = CHROMA.h;
const CH = 'Chroma1-HD.safetensors';
const SBc = (i: number) => `single_blocks.${i}.linear1.weight`;
/** diffusers' trainers and ai-toolkit: `transformer.` + diffusers names; single blocks' q, k, v, proj_mlp are rows of linear1. */
const diffusersChromaOnBfl: LoraSpec[] = [
  peft('transformer.single_transformer_blocks.0.attn.to_q', 4, c, c, [{ key: SBc(0), rows: rowsAt(0, c) }], 2),
  peft('transformer.single_transformer_blocks.0.attn.to_v', 4, c, c, [{ key: SBc(0), rows: rowsAt(2 * c, c) }], 2),
  peft('transformer.single_transformer_blocks.1.proj_mlp', 4, 4 * c, c, [{ key: SBc(1), rows: rowsAt(3 * c, 4 * c) }], 2),
  peft('transformer.single_transformer_blocks.1.proj_out', 4, c, 5 * c, [{ key: 'single_blocks.1.linear2.weight' }], 2),
  peft('transformer.transformer_blocks.0.attn.to_k', 4, c, c, [{ key: 'double_blocks.0.img_attn.qkv.weight', rows: rowsAt(c, c) }], 2),
  peft('transformer.transformer_blocks.1.ff_context.net.0.proj', 4, 4 * c, c, [{ key: 'double_blocks.1.txt_mlp.0.weight' }], 2),
  peft('transformer.distilled_guidance_layer.layers.1.linear_2', 4, CHROMA.approx, CHROMA.approx, [{ key: 'distilled_guidance_layer.layers.1.out_layer.weight' }], 2),
  peft('transformer.distilled_guidance_layer.in_proj', 4, CHROMA.approx, CHROMA.approxIn, [{ key: 'distilled_guidance_layer.in_proj.weight' }], 2),
  peft('transformer.proj_out', 4, CHROMA.inChannels, c, [{ key: 'final_layer.linear.weight' }], 2),
];
/** sd-scripts / ComfyUI-extracted Chroma LoRAs: BFL names; linear1 onto q, k, v and proj_mlp (h, h, h, 4h rows). */
const S1 = (rest: string) => `single_transformer_blocks.1.${rest}.weight`;
const kohyaChromaOnDiffusers: LoraSpec[] = [
  kohya('lora_unet_single_blocks_1_linear1', 2, 7 * c, c, [
    { key: S1('attn.to_q'), rows: rowsFrom(0, c) }, { key: S1('attn.to_k'), rows: rowsFrom(c, c) },
    { key: S1('attn.to_v'), rows: rowsFrom(2 * c, c) }, { key: S1('proj_mlp'), rows: rowsFrom(3 * c, 4 * c) },
  ], 1),
  kohya('lora_unet_double_blocks_0_txt_attn_qkv', 2, 3 * c, c, thirds(['add_q_proj', 'add_k_proj', 'add_v_proj'].map((x) => `transformer_blocks.0.attn.${x}.weight`), c), 1),
  kohya('lora_unet_distilled_guidance_layer_layers_0_in_layer', 2, CHROMA.approx, CHROMA.approx, [{ key: 'distilled_guidance_layer.layers.0.linear_1.weight' }], 1),
];
const comfyChromaOnDiffusers: LoraSpec[] = [
  kohya('diffusion_model.single_blocks.0.linear2', 2, c, 5 * c, [{ key: 'single_transformer_blocks.0.proj_out.weight' }], 2),
  kohya('diffusion_model.double_blocks.1.img_mlp.2', 2, c, 4 * c, [{ key: 'transformer_blocks.1.ff.net.2.weight' }], 2),
];

// --- Lumina 2 -----------------------------------------------------------------------------------

const { dim: ld, kv } = LUMINA2;
const LU = 'lumina_2_model_bf16.safetensors';
/** diffusers' train_dreambooth_lora_lumina2.py: `transformer.` + diffusers names; q, k, v onto rows 0, dim, dim + kv of qkv. */
const diffusersLumina: LoraSpec[] = [
  peft('transformer.layers.0.attn.to_q', 4, ld, ld, [{ key: 'layers.0.attention.qkv.weight', rows: rowsAt(0, ld) }], 2),
  peft('transformer.layers.1.attn.to_k', 4, kv, ld, [{ key: 'layers.1.attention.qkv.weight', rows: rowsAt(ld, kv) }], 2),
  peft('transformer.noise_refiner.0.attn.to_v', 4, kv, ld, [{ key: 'noise_refiner.0.attention.qkv.weight', rows: rowsAt(ld + kv, kv) }], 2),
  peft('transformer.context_refiner.0.attn.to_out.0', 4, ld, ld, [{ key: 'context_refiner.0.attention.out.weight' }], 2),
  peft('transformer.layers.0.feed_forward.linear_3', 4, LUMINA2.ffn, ld, [{ key: 'layers.0.feed_forward.w3.weight' }], 2),
  peft('transformer.layers.1.norm1.linear', 4, 4 * ld, LUMINA2.adaln, [{ key: 'layers.1.adaLN_modulation.1.weight' }], 2),
  peft('transformer.norm_out.linear_2', 4, LUMINA2.patch, ld, [{ key: 'final_layer.linear.weight' }], 2),
  peft('transformer.time_caption_embed.caption_embedder.1', 4, ld, LUMINA2.cap, [{ key: 'cap_embedder.1.weight' }], 2),
];
const LQ = (b: string) => thirdsOf([`${b}.attn.to_q.weight`, `${b}.attn.to_k.weight`, `${b}.attn.to_v.weight`], [ld, kv, kv]);
/** ΔW rows in consecutive runs of `sizes` onto the tensors in turn. */
function thirdsOf(keys: string[], sizes: number[]): LoraSpec['lands'] {
  let at = 0;
  return keys.map((key, i) => ({ key, rows: rowsFrom((at += sizes[i]) - sizes[i], sizes[i]) }));
}
/** ComfyUI-extracted and sd-scripts (networks.lora_lumina) LoRAs: the original names, α. */
const originalLuminaOnDiffusers: LoraSpec[] = [
  kohya('diffusion_model.layers.0.attention.qkv', 2, ld + 2 * kv, ld, LQ('layers.0'), 4),
  kohya('diffusion_model.layers.1.feed_forward.w2', 2, ld, LUMINA2.ffn, [{ key: 'layers.1.feed_forward.linear_2.weight' }], 4),
  kohya('diffusion_model.layers.0.adaLN_modulation.1', 2, 4 * ld, LUMINA2.adaln, [{ key: 'layers.0.norm1.linear.weight' }], 4),
  kohya('diffusion_model.final_layer.adaLN_modulation.1', 2, ld, LUMINA2.adaln, [{ key: 'norm_out.linear_1.weight' }], 4),
  kohya('diffusion_model.t_embedder.mlp.2', 2, LUMINA2.adaln, LUMINA2.adaln, [{ key: 'time_caption_embed.timestep_embedder.linear_2.weight' }], 4),
];
const sdScriptsLuminaOnDiffusers: LoraSpec[] = [
  kohya('lora_unet_noise_refiner_0_attention_qkv', 2, ld + 2 * kv, ld, LQ('noise_refiner.0'), 1),
  kohya('lora_unet_context_refiner_0_attention_out', 2, ld, ld, [{ key: 'context_refiner.0.attn.to_out.0.weight' }], 1),
];

// --- LTX-Video and HiDream ----------------------------------------------------------------------

const { dim: xd } = LTX;
const LTXF = 'ltx-video-2b-v0.9.5.safetensors';
/** LTX-Video-Trainer's LoRAs in ComfyUI's format: `diffusion_model.` + the original names, onto diffusers' names. */
const comfyLtxOnDiffusers: LoraSpec[] = [
  peft('diffusion_model.transformer_blocks.0.attn1.to_q', 4, xd, xd, [{ key: 'transformer_blocks.0.attn1.to_q.weight' }], 1),
  peft('diffusion_model.transformer_blocks.1.ff.net.0.proj', 4, 4 * xd, xd, [{ key: 'transformer_blocks.1.ff.net.0.proj.weight' }], 1),
  peft('diffusion_model.patchify_proj', 4, xd, LTX.latent, [{ key: 'proj_in.weight' }], 1),
  peft('diffusion_model.adaln_single.linear', 4, 6 * xd, xd, [{ key: 'time_embed.linear.weight' }], 1),
  peft('diffusion_model.adaln_single.emb.timestep_embedder.linear_1', 4, xd, LTX.freq, [{ key: 'time_embed.emb.timestep_embedder.linear_1.weight' }], 1),
];
/** diffusers' trainers (finetrainers): `transformer.` + diffusers names, onto the original file. */
const diffusersLtxOnOriginal: LoraSpec[] = [
  peft('transformer.transformer_blocks.1.attn2.to_out.0', 4, xd, xd, [{ key: `${cm}transformer_blocks.1.attn2.to_out.0.weight` }], 2),
  peft('transformer.proj_in', 4, xd, LTX.latent, [{ key: `${cm}patchify_proj.weight` }], 2),
  peft('transformer.time_embed.emb.timestep_embedder.linear_2', 4, xd, xd, [{ key: `${cm}adaln_single.emb.timestep_embedder.linear_2.weight` }], 2),
];
const hd = HIDREAM.dim;
const HD = 'hidream_i1_full_fp8.safetensors';
/** diffusers' and SimpleTuner's HiDream LoRAs (`transformer.`, and ComfyUI's `diffusion_model.`): the model's own names. */
const hiDreamLora = (p: string): LoraSpec[] => [
  peft('transformer.double_stream_blocks.0.block.attn1.to_q_t', 4, hd, hd, [{ key: `${p}double_stream_blocks.0.block.attn1.to_q_t.weight` }], 2),
  peft('transformer.double_stream_blocks.0.block.ff_i.experts.1.w3', 4, HIDREAM.ffn, hd, [{ key: `${p}double_stream_blocks.0.block.ff_i.experts.1.w3.weight` }], 2),
  peft('transformer.double_stream_blocks.0.block.ff_i.shared_experts.w2', 4, hd, HIDREAM.ffn, [{ key: `${p}double_stream_blocks.0.block.ff_i.shared_experts.w2.weight` }], 2),
  peft('transformer.single_stream_blocks.0.block.attn1.to_out', 4, hd, hd, [{ key: `${p}single_stream_blocks.0.block.attn1.to_out.weight` }], 2),
  peft('transformer.single_stream_blocks.0.block.ff_i.experts.0.w1', 4, HIDREAM.ffn, hd, [{ key: `${p}single_stream_blocks.0.block.ff_i.experts.0.w1.weight` }], 2),
];

// --- the cases ------------------------------------------------------------------------------------

const CASES: Case[] = [
  {
    name: 'FLUX.2 dev, BFL single file ← diffusers trainer (diffusers names), ai-toolkit and musubi-tuner (BFL names)', layout: 'flux2-bfl',
    base: file(F2, flux2BflTensors(rand, 'BF16')), baseName: F2,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersFlux2(''), weight: 0.8, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'ai-toolkit-flux2.safetensors', specs: aiToolkitFlux2OnBfl, weight: 1 },
      { file: 'musubi-flux2.safetensors', specs: musubiFlux2OnBfl, weight: 1, metadata: { ss_network_module: 'networks.lora_flux_2' } },
    ],
  },
  {
    name: 'FLUX.2 klein, Comfy-Org fp8 file under model.diffusion_model. ← diffusers klein trainer', layout: 'flux2-bfl',
    base: file(KLEIN_FP8, flux2BflTensors(rand, 'F8_E4M3', KLEIN, cm)), baseName: KLEIN_FP8,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersFlux2(cm, KLEIN), weight: 1, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'diffusers FLUX.2 transformer ← ai-toolkit (diffusion_model. BFL names) and musubi-tuner (lora_unet_) LoRAs', layout: 'flux2-bfl',
    base: diffusersFolder('Flux2Transformer2DModel', flux2DiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [
      { file: 'ai-toolkit-flux2.safetensors', specs: aiToolkitFlux2OnDiffusers, weight: 1 },
      { file: 'musubi-flux2.safetensors', specs: musubiFlux2OnDiffusers, weight: -0.7 },
    ],
  },
  {
    name: 'Z-Image Turbo, Comfy-Org single file (fused qkv) ← ai-toolkit, diffusers trainer and sd-scripts-form LoRAs (diffusers names)', layout: 'z-image',
    base: file(ZT, zImageComfyTensors(rand, 'BF16')), baseName: ZT,
    adapters: [
      { file: 'ai-toolkit-zimage.safetensors', specs: aiToolkitZImage(''), weight: 1 },
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersZImage, weight: 0.6, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'kohya-zimage.safetensors', specs: kohyaZImage, weight: 1.2 },
      { file: 'comfyui-extracted.safetensors', specs: comfyZImageOnComfy, weight: 1 },
    ],
  },
  {
    name: 'Z-Image, a checkpoint ComfyUI saved (model.diffusion_model., fp8) ← ai-toolkit LoRA', layout: 'z-image',
    base: file('z_image_fp8.safetensors', zImageComfyTensors(rand, 'F8_E4M3', ZIMAGE, cm)), baseName: 'z_image_fp8.safetensors',
    adapters: [{ file: 'ai-toolkit-zimage.safetensors', specs: aiToolkitZImage(cm), weight: 0.5 }],
  },
  {
    name: 'diffusers Z-Image transformer ← ComfyUI-extracted LoRA (fused qkv onto to_q, to_k, to_v)', layout: 'z-image',
    base: diffusersFolder('ZImageTransformer2DModel', zImageDiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [{ file: 'comfyui-extracted.safetensors', specs: comfyZImageOnDiffusers, weight: 0.9 }],
  },
  {
    name: 'Qwen-Image, Comfy-Org fp8 single file ← diffusers, musubi-tuner, DiffSynth-Studio and ComfyUI LoRAs (one naming)',
    base: file(QI, qwenImageTensors(rand, 'F8_E4M3')), baseName: QI, adapters: qwenLoras(''),
  },
  {
    name: 'Qwen-Image-Edit diffusers transformer ← the same trainers\' LoRAs',
    base: diffusersFolder('QwenImageTransformer2DModel', qwenImageTensors(rand, 'BF16')), baseName: 'transformer', adapters: qwenLoras(''),
  },
  {
    name: 'Qwen-Image, a checkpoint ComfyUI saved (model.diffusion_model.) ← the same trainers\' LoRAs',
    base: file('qwen_image_saved.safetensors', qwenImageTensors(rand, 'BF16', QWEN_IMAGE, cm)), baseName: 'qwen_image_saved.safetensors', adapters: qwenLoras(cm),
  },
  {
    name: 'Chroma1-HD single file ← diffusers-named LoRA (single-block q, k, v, proj_mlp onto linear1 rows; approximator renamed)', layout: 'flux-bfl',
    base: file(CH, chromaBflTensors(rand, 'BF16')), baseName: CH,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersChromaOnBfl, weight: 1, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'diffusers Chroma transformer ← sd-scripts and ComfyUI-extracted LoRAs (BFL names)', layout: 'flux-bfl',
    base: diffusersFolder('ChromaTransformer2DModel', chromaDiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [
      { file: 'chroma-lora.safetensors', specs: kohyaChromaOnDiffusers, weight: 1 },
      { file: 'comfyui-extracted.safetensors', specs: comfyChromaOnDiffusers, weight: 0.5 },
    ],
  },
  {
    name: 'Lumina 2, Comfy-Org single file (grouped-head qkv) ← diffusers trainer LoRA', layout: 'lumina2',
    base: file(LU, lumina2OriginalTensors(rand, 'BF16')), baseName: LU,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersLumina, weight: 1, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'diffusers Lumina 2 transformer ← ComfyUI-extracted and sd-scripts LoRAs (original names)', layout: 'lumina2',
    base: diffusersFolder('Lumina2Transformer2DModel', lumina2DiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [
      { file: 'comfyui-extracted.safetensors', specs: originalLuminaOnDiffusers, weight: 0.8 },
      { file: 'lumina-lora.safetensors', specs: sdScriptsLuminaOnDiffusers, weight: 1, metadata: { ss_network_module: 'networks.lora_lumina' } },
    ],
  },
  {
    name: 'diffusers LTX-Video transformer ← LTX-Video-Trainer LoRA in ComfyUI\'s format', layout: 'ltx-video',
    base: diffusersFolder('LTXVideoTransformer3DModel', ltxDiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [{ file: 'ltxv-lora_comfy.safetensors', specs: comfyLtxOnDiffusers, weight: 1 }],
  },
  {
    name: 'LTX-Video, Lightricks\' single file ← diffusers-named LoRA', layout: 'ltx-video',
    base: file(LTXF, ltxOriginalTensors(rand, 'BF16')), baseName: LTXF,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersLtxOnOriginal, weight: 0.7, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'HiDream-I1, Comfy-Org fp8 file ← diffusers / SimpleTuner LoRA (one naming, MoE experts by name)',
    base: file(HD, hiDreamTensors(rand, 'F8_E4M3', HIDREAM, cm)), baseName: HD,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: hiDreamLora(cm), weight: 1, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'HiDream-I1, diffusers transformer ← diffusion_model. LoRA (diffusers strips the prefix) and kohya lora_unet_ (ComfyUI\'s key map)',
    base: diffusersFolder('HiDreamImageTransformer2DModel', hiDreamTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [
      { file: 'hidream-comfy.safetensors', weight: 0.7, specs: hiDreamLora('').map((x) => ({ ...x, down: x.down.replace(/^transformer\./, 'diffusion_model.'), up: x.up.replace(/^transformer\./, 'diffusion_model.'), scale: 1 })) },
      {
        file: 'hidream-kohya.safetensors', weight: 1, specs: [
          kohya('lora_unet_double_stream_blocks_0_block_attn1_to_k_t', 2, hd, hd, [{ key: 'double_stream_blocks.0.block.attn1.to_k_t.weight' }], 1),
          kohya('lora_unet_single_stream_blocks_0_block_ff_i_shared_experts_w1', 2, HIDREAM.ffn, hd, [{ key: 'single_stream_blocks.0.block.ff_i.shared_experts.w1.weight' }], 4),
        ],
      },
    ],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('the translating layouts', () => {
  it('place the modules named the other way (and the FLUX.1 layout none on FLUX.2)', async () => {
    for (const k of CASES.filter((x) => x.layout)) {
      const prepared = await prepare(k);
      const layouts = new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout)));
      expect(layouts.has(k.layout!), k.name).toBe(true);
      if (k.layout === 'flux2-bfl') expect(layouts.has('flux-bfl'), k.name).toBe(false);
      await prepared.close();
    }
  });

  for (const layout of [flux2Bfl, zImage, lumina2, ltxVideo]) {
    it(`without ${layout.name} in the registry, every case it places is refused`, async () => {
      await withoutLayout(layout, async () => {
        for (const k of CASES.filter((x) => x.layout === layout.name)) {
          const prepared = await prepare(k);
          expect(prepared.plan.problems.length, k.name).toBeGreaterThan(0);
          await prepared.close();
        }
      });
    });
  }
});

const problemsOf = (base: Record<string, Uint8Array>, baseName: string, specs: LoraSpec[]) => planProblemsOf(base, baseName, specs, rand);

describe('refused with the reason', () => {
  it('a FLUX.1 LoRA on a FLUX.2 base, module by module (its single blocks are q, k, v, proj_mlp of a 3h + 4h linear1)', async () => {
    // h = 14: FLUX.2's linear1 (9h = 126 rows) divides into FLUX.1's 7 units of 18 rows, so only the model's identity can refuse these.
    const d = { ...FLUX2, h: 14, head: 7 };
    const H = d.h;
    const problems = await problemsOf(file(F2, flux2BflTensors(rand, 'BF16', d)), F2, [
      peft('transformer.single_transformer_blocks.0.attn.to_q', 2, H, H, [], 1),
      peft('transformer.single_transformer_blocks.0.proj_mlp', 2, 4 * H, H, [], 1),
      peft('transformer.single_transformer_blocks.1.proj_out', 2, H, 5 * H, [], 1),
      peft('transformer.transformer_blocks.0.norm1.linear', 2, 6 * H, H, [], 1),
      peft('transformer.transformer_blocks.1.ff.net.0.proj', 2, 4 * H, H, [], 1),
      kohya('lora_unet_double_blocks_0_img_mod_lin', 2, 6 * H, H, [], 1),
      kohya('lora_unet_vector_in_in_layer', 2, H, 10, [], 1),
    ]);
    expect(problems).toHaveLength(7);
    for (const p of problems) expect(p).toMatch(/is a FLUX\.1 module; the base is FLUX\.2/);
  });

  it('an XLabs LoRA (FLUX.1 only) on a FLUX.2 klein 4B file, though its double blocks have FLUX.1\'s names and shapes', async () => {
    const xlabs = (name: string, out: number, inF: number): LoraSpec => ({ down: `${name}.down.weight`, up: `${name}.up.weight`, r: 2, out, in: inF, lands: [], scale: 1 });
    const problems = await problemsOf(file(KLEIN_FP8, flux2BflTensors(rand, 'BF16', KLEIN, cm)), KLEIN_FP8, [
      xlabs('double_blocks.0.processor.qkv_lora1', 3 * h, h), xlabs('double_blocks.1.processor.proj_lora2', h, h), xlabs('single_blocks.0.processor.qkv_lora', 3 * h, h),
    ]);
    expect(problems).toHaveLength(3);
    for (const p of problems) expect(p).toMatch(/is a FLUX\.1 module; the base is FLUX\.2/);
  });

  it('a FLUX.1 BFL-named linear1 on a FLUX.2 file: its 7h rows do not fit the 9h of FLUX.2\'s', async () => {
    const problems = await problemsOf(file(F2, flux2BflTensors(rand, 'BF16')), F2, [kohya('lora_unet_single_blocks_0_linear1', 2, 7 * h, h, [], 1)]);
    expect(problems).toEqual([expect.stringMatching(/lora_unet_single_blocks_0_linear1.*does not fit/)]);
  });

  it('Z-Image names on a Lumina 2 file (grouped k/v heads: thirds of its qkv would be wrong rows)', async () => {
    // Lumina 2's qkv is dim + 2·kv rows (2304 + 2·768 in the real model, a multiple of 3 as here).
    const problems = await problemsOf(file(LU, lumina2OriginalTensors(rand, 'BF16')), LU, [
      peft('diffusion_model.layers.0.attention.to_q', 2, ld, ld, [], 1),
      peft('diffusion_model.layers.0.attention.to_out.0', 2, ld, ld, [], 1),
    ]);
    expect(problems).toEqual([expect.stringMatching(/attention\.to_q": no matching tensor/), expect.stringMatching(/attention\.to_out\.0": no matching tensor/)]);
  });
});
