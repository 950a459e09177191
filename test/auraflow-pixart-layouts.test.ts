/**
 * LoRAs for AuraFlow (fal's AuraFlow 0.3, Pony V7) and PixArt (α, Σ) in the key forms their
 * trainers write — diffusers' trainers, SimpleTuner and ai-toolkit (`transformer.` + diffusers
 * names, α in `lora_adapter_metadata` or none), kohya / sd-scripts form (`lora_unet_` + the
 * original names flattened, as ComfyUI's key map reads them), ComfyUI's own (`diffusion_model.` +
 * the original names, `lora_up`/`lora_down`, `.alpha`), PixArt's PEFT scripts (a PEFT folder) —
 * onto the checkpoints people hold (the original single files, bare or under
 * `model.diffusion_model.`; diffusers folders), file to file on the CPU and on WebGPU, against
 * float64 truth. Where each module's rows land is written out by hand, from diffusers' single-file
 * conversion for AuraFlow (convert_auraflow_transformer_checkpoint_to_diffusers), ComfyUI's
 * auraflow_to_diffusers, and diffusers' scripts/convert_pixart_sigma_to_diffusers.py:
 * - AuraFlow: every projection is its own tensor (double blocks: `w2*` image, `w1*` text; single
 *   blocks `w1*`); `c_fc1`, `c_fc2`, `c_proj` are `linear_1`, `linear_2`, `out_projection`; the
 *   final `modF.1` is `norm_out.linear` with its two halves (shift, scale) swapped;
 * - PixArt: self-attention q, k, v are the thirds of `attn.qkv`; cross-attention k, v the halves
 *   of `cross_attn.kv_linear`; `t_block.1` is `adaln_single.linear`, row for row;
 * - HunyuanDiT (diffusers' scripts/convert_hunyuandit_to_diffusers.py): q, k, v are the thirds of
 *   `attn1.Wqkv`, cross k, v the halves of `attn2.kv_proj`; `final_layer.adaLN_modulation.1` is
 *   `norm_out.linear` with its halves swapped; the block's norm2 and norm3 swap names.
 */
import { describe, expect, it } from 'vitest';
import { auraflow } from '../src/formats/layouts/auraflow.js';
import { pixart } from '../src/formats/layouts/pixart.js';
import { hunyuanDit } from '../src/formats/layouts/hunyuan-dit.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { loraTensors, rowsAt, rowsFrom, swappedHalves, type LoraSpec, peftSpec, DIFFUSERS_LORA_METADATA } from './helpers/diffusion-fixtures.js';
import {
  AURAFLOW, HUNYUAN_DIT, PIXART, auraflowDiffusersTensors, auraflowOriginalTensors, hunyuanDitDiffusersTensors, hunyuanDitOriginalTensors,
  pixartDiffusersTensors, pixartOriginalTensors,
} from './helpers/auraflow-pixart-fixtures.js';
import { loraCaseSuite, planProblemsOf, withoutLayout, type LoraCase } from './helpers/lora-case.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { moduleAddress } from '../src/formats/module-address.js';

const rand = seededRandom(20261203);

/** kohya / ComfyUI form: `.lora_down/.lora_up.weight` and `.alpha`. */
function kohya(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha?: number): LoraSpec {
  return {
    down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands,
    scale: alpha === undefined ? 1 : alpha / r, extra: alpha === undefined ? [] : [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
  };
}
/** diffusers' trainers (train_dreambooth_lora_*, SimpleTuner): r 4, α 8 in `lora_adapter_metadata`. */
const file = (name: string, tensors: FixtureTensor[]) => ({ [name]: buildSafetensors(tensors) });
const diffusersFolder = (className: string, tensors: FixtureTensor[]) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify({ _class_name: className }),
});
const cm = 'model.diffusion_model.';
const loraTensorsOf = (specs: LoraSpec[]) => loraTensors(rand, specs, 'BF16');

// --- AuraFlow -------------------------------------------------------------------------------------

const { dim: a, ffn } = AURAFLOW;
const PONY = 'pony-v7-base.safetensors';
const AF = 'aura_flow_0.3.safetensors';

/** `transformer.` + diffusers names (diffusers' trainers, SimpleTuner, ai-toolkit) onto the original names under prefix `p`. */
function diffusersAuraFlow(s: number, p: string): LoraSpec[] {
  const T = 'transformer.joint_transformer_blocks';
  const S = 'transformer.single_transformer_blocks';
  return [
    peftSpec(`${T}.0.attn.to_q`, 4, a, a, [{ key: `${p}double_layers.0.attn.w2q.weight` }], s),
    peftSpec(`${T}.1.attn.to_v`, 4, a, a, [{ key: `${p}double_layers.1.attn.w2v.weight` }], s),
    peftSpec(`${T}.0.attn.to_out.0`, 4, a, a, [{ key: `${p}double_layers.0.attn.w2o.weight` }], s),
    peftSpec(`${T}.1.attn.add_k_proj`, 4, a, a, [{ key: `${p}double_layers.1.attn.w1k.weight` }], s),
    peftSpec(`${T}.0.attn.to_add_out`, 4, a, a, [{ key: `${p}double_layers.0.attn.w1o.weight` }], s),
    peftSpec(`${T}.0.ff.linear_1`, 4, ffn, a, [{ key: `${p}double_layers.0.mlpX.c_fc1.weight` }], s),
    peftSpec(`${T}.1.ff.out_projection`, 4, a, ffn, [{ key: `${p}double_layers.1.mlpX.c_proj.weight` }], s),
    peftSpec(`${T}.0.ff_context.linear_2`, 4, ffn, a, [{ key: `${p}double_layers.0.mlpC.c_fc2.weight` }], s),
    peftSpec(`${T}.1.norm1.linear`, 4, 6 * a, a, [{ key: `${p}double_layers.1.modX.1.weight` }], s),
    peftSpec(`${T}.0.norm1_context.linear`, 4, 6 * a, a, [{ key: `${p}double_layers.0.modC.1.weight` }], s),
    peftSpec(`${S}.0.attn.to_k`, 4, a, a, [{ key: `${p}single_layers.0.attn.w1k.weight` }], s),
    peftSpec(`${S}.1.attn.to_out.0`, 4, a, a, [{ key: `${p}single_layers.1.attn.w1o.weight` }], s),
    peftSpec(`${S}.1.ff.linear_1`, 4, ffn, a, [{ key: `${p}single_layers.1.mlp.c_fc1.weight` }], s),
    peftSpec(`${S}.0.ff.out_projection`, 4, a, ffn, [{ key: `${p}single_layers.0.mlp.c_proj.weight` }], s),
    peftSpec(`${S}.0.norm1.linear`, 4, 6 * a, a, [{ key: `${p}single_layers.0.modCX.1.weight` }], s),
    peftSpec('transformer.context_embedder', 4, a, AURAFLOW.cap, [{ key: `${p}cond_seq_linear.weight` }], s),
    peftSpec('transformer.time_step_proj.linear_1', 4, a, AURAFLOW.freq, [{ key: `${p}t_embedder.mlp.0.weight` }], s),
    peftSpec('transformer.pos_embed.proj', 4, a, AURAFLOW.patch, [{ key: `${p}init_x_linear.weight` }], s),
    peftSpec('transformer.proj_out', 4, AURAFLOW.patchOut, a, [{ key: `${p}final_linear.weight` }], s),
    // diffusers' norm_out.linear is (scale, shift); the original modF.1 (shift, scale): both converters swap them.
    peftSpec('transformer.norm_out.linear', 4, 2 * a, a, [{ key: `${p}modF.1.weight`, rows: swappedHalves(a) }], s),
  ];
}

/** ComfyUI's extracted / saved LoRAs: `diffusion_model.` + the original names, α; onto diffusers' names. */
const DA = (i: number, rest: string) => `joint_transformer_blocks.${i}.${rest}.weight`;
const SA = (i: number, rest: string) => `single_transformer_blocks.${i}.${rest}.weight`;
const comfyAuraFlowOnDiffusers: LoraSpec[] = [
  kohya('diffusion_model.double_layers.0.attn.w2k', 2, a, a, [{ key: DA(0, 'attn.to_k') }], 1),
  kohya('diffusion_model.double_layers.1.attn.w1q', 2, a, a, [{ key: DA(1, 'attn.add_q_proj') }], 1),
  kohya('diffusion_model.double_layers.1.attn.w1v', 2, a, a, [{ key: DA(1, 'attn.add_v_proj') }], 1),
  kohya('diffusion_model.double_layers.0.mlpC.c_proj', 2, a, ffn, [{ key: DA(0, 'ff_context.out_projection') }], 1),
  kohya('diffusion_model.double_layers.1.modC.1', 2, 6 * a, a, [{ key: DA(1, 'norm1_context.linear') }], 1),
  kohya('diffusion_model.single_layers.1.attn.w1q', 2, a, a, [{ key: SA(1, 'attn.to_q') }], 1),
  kohya('diffusion_model.single_layers.0.mlp.c_fc2', 2, ffn, a, [{ key: SA(0, 'ff.linear_2') }], 1),
  kohya('diffusion_model.single_layers.1.modCX.1', 2, 6 * a, a, [{ key: SA(1, 'norm1.linear') }], 1),
  kohya('diffusion_model.t_embedder.mlp.2', 2, a, a, [{ key: 'time_step_proj.linear_2.weight' }], 1),
  kohya('diffusion_model.modF.1', 2, 2 * a, a, [{ key: 'norm_out.linear.weight', rows: swappedHalves(a) }], 1),
];
/** sd-scripts form (`lora_unet_` + the original names flattened, as ComfyUI's key map reads them), α; onto diffusers' names. */
const kohyaAuraFlowOnDiffusers: LoraSpec[] = [
  kohya('lora_unet_double_layers_1_attn_w2q', 4, a, a, [{ key: DA(1, 'attn.to_q') }], 2),
  kohya('lora_unet_double_layers_0_mlpX_c_fc2', 4, ffn, a, [{ key: DA(0, 'ff.linear_2') }], 2),
  kohya('lora_unet_single_layers_0_attn_w1v', 4, a, a, [{ key: SA(0, 'attn.to_v') }], 2),
  kohya('lora_unet_cond_seq_linear', 4, a, AURAFLOW.cap, [{ key: 'context_embedder.weight' }], 2),
  kohya('lora_unet_final_linear', 4, AURAFLOW.patchOut, a, [{ key: 'proj_out.weight' }], 2),
];
/** The same ComfyUI LoRA onto the original file: by name. */
const comfyAuraFlowOnOriginal: LoraSpec[] = [
  kohya('diffusion_model.double_layers.0.attn.w2q', 2, a, a, [{ key: 'double_layers.0.attn.w2q.weight' }], 1),
  kohya('diffusion_model.modF.1', 2, 2 * a, a, [{ key: 'modF.1.weight' }], 1),
];

// --- PixArt ---------------------------------------------------------------------------------------

const { dim: x, mlp } = PIXART;
const PXS = 'PixArt-Sigma-XL-2-1024-MS.safetensors';
/** `transformer.` + diffusers names (diffusers' train_text_to_image_lora_pixart / trainers) onto the original names under `p`. */
function diffusersPixArt(s: number, p: string, prefix = 'transformer.'): LoraSpec[] {
  const T = `${prefix}transformer_blocks`;
  const B = (i: number, rest: string) => `${p}blocks.${i}.${rest}.weight`;
  return [
    peftSpec(`${T}.0.attn1.to_q`, 4, x, x, [{ key: B(0, 'attn.qkv'), rows: rowsAt(0, x) }], s),
    peftSpec(`${T}.0.attn1.to_k`, 4, x, x, [{ key: B(0, 'attn.qkv'), rows: rowsAt(x, x) }], s),
    peftSpec(`${T}.1.attn1.to_v`, 4, x, x, [{ key: B(1, 'attn.qkv'), rows: rowsAt(2 * x, x) }], s),
    peftSpec(`${T}.0.attn1.to_out.0`, 4, x, x, [{ key: B(0, 'attn.proj') }], s),
    peftSpec(`${T}.1.attn2.to_q`, 4, x, x, [{ key: B(1, 'cross_attn.q_linear') }], s),
    peftSpec(`${T}.0.attn2.to_k`, 4, x, x, [{ key: B(0, 'cross_attn.kv_linear'), rows: rowsAt(0, x) }], s),
    peftSpec(`${T}.0.attn2.to_v`, 4, x, x, [{ key: B(0, 'cross_attn.kv_linear'), rows: rowsAt(x, x) }], s),
    peftSpec(`${T}.1.attn2.to_out.0`, 4, x, x, [{ key: B(1, 'cross_attn.proj') }], s),
    peftSpec(`${T}.0.ff.net.0.proj`, 4, mlp, x, [{ key: B(0, 'mlp.fc1') }], s),
    peftSpec(`${T}.1.ff.net.2`, 4, x, mlp, [{ key: B(1, 'mlp.fc2') }], s),
    peftSpec(`${prefix}adaln_single.linear`, 4, 6 * x, x, [{ key: `${p}t_block.1.weight` }], s),
    peftSpec(`${prefix}adaln_single.emb.timestep_embedder.linear_1`, 4, x, PIXART.freq, [{ key: `${p}t_embedder.mlp.0.weight` }], s),
    peftSpec(`${prefix}caption_projection.linear_1`, 4, x, PIXART.cap, [{ key: `${p}y_embedder.y_proj.fc1.weight` }], s),
    peftSpec(`${prefix}caption_projection.linear_2`, 4, x, x, [{ key: `${p}y_embedder.y_proj.fc2.weight` }], s),
    peftSpec(`${prefix}proj_out`, 4, 8 * PIXART.latent, x, [{ key: `${p}final_layer.linear.weight` }], s),
  ];
}
/** ComfyUI's extracted LoRAs: `diffusion_model.` + the original names (fused qkv, kv), α; onto diffusers' names. */
const DP = (i: number, rest: string) => `transformer_blocks.${i}.${rest}.weight`;
const comfyPixArtOnDiffusers: LoraSpec[] = [
  kohya('diffusion_model.blocks.0.attn.qkv', 2, 3 * x, x, [
    { key: DP(0, 'attn1.to_q'), rows: rowsFrom(0, x) }, { key: DP(0, 'attn1.to_k'), rows: rowsFrom(x, x) }, { key: DP(0, 'attn1.to_v'), rows: rowsFrom(2 * x, x) },
  ], 1),
  kohya('diffusion_model.blocks.1.cross_attn.kv_linear', 2, 2 * x, x, [
    { key: DP(1, 'attn2.to_k'), rows: rowsFrom(0, x) }, { key: DP(1, 'attn2.to_v'), rows: rowsFrom(x, x) },
  ], 1),
  kohya('diffusion_model.blocks.1.cross_attn.q_linear', 2, x, x, [{ key: DP(1, 'attn2.to_q') }], 1),
  kohya('diffusion_model.blocks.0.attn.proj', 2, x, x, [{ key: DP(0, 'attn1.to_out.0') }], 1),
  kohya('diffusion_model.blocks.0.mlp.fc2', 2, x, mlp, [{ key: DP(0, 'ff.net.2') }], 1),
  kohya('diffusion_model.t_block.1', 2, 6 * x, x, [{ key: 'adaln_single.linear.weight' }], 1),
  kohya('diffusion_model.t_embedder.mlp.2', 2, x, x, [{ key: 'adaln_single.emb.timestep_embedder.linear_2.weight' }], 1),
  kohya('diffusion_model.final_layer.linear', 2, 8 * PIXART.latent, x, [{ key: 'proj_out.weight' }], 1),
];
/** sd-scripts form (`lora_unet_` + original names flattened), α; onto diffusers' names. */
const kohyaPixArtOnDiffusers: LoraSpec[] = [
  kohya('lora_unet_blocks_1_attn_qkv', 4, 3 * x, x, [
    { key: DP(1, 'attn1.to_q'), rows: rowsFrom(0, x) }, { key: DP(1, 'attn1.to_k'), rows: rowsFrom(x, x) }, { key: DP(1, 'attn1.to_v'), rows: rowsFrom(2 * x, x) },
  ], 8),
  kohya('lora_unet_blocks_0_cross_attn_kv_linear', 4, 2 * x, x, [
    { key: DP(0, 'attn2.to_k'), rows: rowsFrom(0, x) }, { key: DP(0, 'attn2.to_v'), rows: rowsFrom(x, x) },
  ], 8),
  kohya('lora_unet_y_embedder_y_proj_fc1', 4, x, PIXART.cap, [{ key: 'caption_projection.linear_1.weight' }], 8),
];
/** PixArt's PEFT scripts: a PEFT folder, `base_model.model.` + diffusers names, α in the config. */
const pixartPeftConfig = JSON.stringify({
  peft_type: 'LORA', task_type: null, base_model_name_or_path: 'PixArt-alpha/PixArt-Sigma-XL-2-1024-MS', r: 4, lora_alpha: 4, lora_dropout: 0, bias: 'none',
  fan_in_fan_out: false, init_lora_weights: true, use_rslora: false, use_dora: false, rank_pattern: {}, alpha_pattern: {},
  target_modules: ['to_q', 'to_k', 'to_v', 'to_out.0', 'ff.net.0.proj', 'ff.net.2', 'adaln_single.linear', 'caption_projection.linear_1', 'caption_projection.linear_2', 'adaln_single.emb.timestep_embedder.linear_1', 'proj_out'],
});

// --- HunyuanDiT -----------------------------------------------------------------------------------

const { dim: y, mlp: ym, text: yt } = HUNYUAN_DIT;
const HY = 'hunyuan_dit_1.2.safetensors';
const YB = (p: string, i: number, rest: string) => `${p}blocks.${i}.${rest}.weight`;
/** `transformer.` + diffusers names (diffusers' trainers) onto Tencent's names under `p`. */
function diffusersHunyuanDit(s: number, p: string): LoraSpec[] {
  const T = 'transformer.blocks';
  return [
    peftSpec(`${T}.0.attn1.to_q`, 4, y, y, [{ key: YB(p, 0, 'attn1.Wqkv'), rows: rowsAt(0, y) }], s),
    peftSpec(`${T}.1.attn1.to_v`, 4, y, y, [{ key: YB(p, 1, 'attn1.Wqkv'), rows: rowsAt(2 * y, y) }], s),
    peftSpec(`${T}.0.attn1.to_out.0`, 4, y, y, [{ key: YB(p, 0, 'attn1.out_proj') }], s),
    peftSpec(`${T}.2.attn2.to_q`, 4, y, y, [{ key: YB(p, 2, 'attn2.q_proj') }], s),
    peftSpec(`${T}.0.attn2.to_k`, 4, y, yt, [{ key: YB(p, 0, 'attn2.kv_proj'), rows: rowsAt(0, y) }], s),
    peftSpec(`${T}.3.attn2.to_v`, 4, y, yt, [{ key: YB(p, 3, 'attn2.kv_proj'), rows: rowsAt(y, y) }], s),
    peftSpec(`${T}.1.attn2.to_out.0`, 4, y, y, [{ key: YB(p, 1, 'attn2.out_proj') }], s),
    peftSpec(`${T}.2.ff.net.0.proj`, 4, ym, y, [{ key: YB(p, 2, 'mlp.fc1') }], s),
    peftSpec(`${T}.3.ff.net.2`, 4, y, ym, [{ key: YB(p, 3, 'mlp.fc2') }], s),
    peftSpec(`${T}.0.norm1.linear`, 4, y, y, [{ key: YB(p, 0, 'default_modulation.1') }], s),
    peftSpec(`${T}.3.skip_linear`, 4, y, 2 * y, [{ key: YB(p, 3, 'skip_linear') }], s),
    peftSpec('transformer.time_extra_emb.extra_embedder.linear_1', 4, 4 * y, HUNYUAN_DIT.extra, [{ key: `${p}extra_embedder.0.weight` }], s),
    peftSpec('transformer.time_extra_emb.timestep_embedder.linear_2', 4, y, y, [{ key: `${p}t_embedder.mlp.2.weight` }], s),
    peftSpec('transformer.text_embedder.linear_1', 4, 4 * HUNYUAN_DIT.t5, HUNYUAN_DIT.t5, [{ key: `${p}mlp_t5.0.weight` }], s),
    peftSpec('transformer.proj_out', 4, 32, y, [{ key: `${p}final_layer.linear.weight` }], s),
    peftSpec('transformer.norm_out.linear', 4, 2 * y, y, [{ key: `${p}final_layer.adaLN_modulation.1.weight`, rows: swappedHalves(y) }], s),
  ];
}
/** Tencent's own PEFT LoRAs (HunyuanDiT's kohya-free trainer): `base_model.model.` + its names, in a PEFT folder. */
const tencentHunyuanDitOnDiffusers: LoraSpec[] = [
  peftSpec('base_model.model.blocks.0.attn1.Wqkv', 4, 3 * y, y, [
    { key: YB('', 0, 'attn1.to_q'), rows: rowsFrom(0, y) }, { key: YB('', 0, 'attn1.to_k'), rows: rowsFrom(y, y) }, { key: YB('', 0, 'attn1.to_v'), rows: rowsFrom(2 * y, y) },
  ], 2),
  peftSpec('base_model.model.blocks.2.attn2.kv_proj', 4, 2 * y, yt, [{ key: YB('', 2, 'attn2.to_k'), rows: rowsFrom(0, y) }, { key: YB('', 2, 'attn2.to_v'), rows: rowsFrom(y, y) }], 2),
  peftSpec('base_model.model.blocks.1.attn2.q_proj', 4, y, y, [{ key: YB('', 1, 'attn2.to_q') }], 2),
  peftSpec('base_model.model.blocks.3.attn1.out_proj', 4, y, y, [{ key: YB('', 3, 'attn1.to_out.0') }], 2),
];
const tencentConfig = JSON.stringify({
  peft_type: 'LORA', task_type: null, base_model_name_or_path: null, r: 4, lora_alpha: 8, lora_dropout: 0, bias: 'none',
  fan_in_fan_out: false, init_lora_weights: true, use_rslora: false, use_dora: false, rank_pattern: {}, alpha_pattern: {},
  target_modules: ['Wqkv', 'q_proj', 'kv_proj', 'out_proj'],
});
/** ComfyUI's extracted and sd-scripts-form LoRAs (the original names), α; onto diffusers' names. */
const comfyHunyuanDitOnDiffusers: LoraSpec[] = [
  kohya('diffusion_model.blocks.3.attn1.Wqkv', 2, 3 * y, y, [
    { key: YB('', 3, 'attn1.to_q'), rows: rowsFrom(0, y) }, { key: YB('', 3, 'attn1.to_k'), rows: rowsFrom(y, y) }, { key: YB('', 3, 'attn1.to_v'), rows: rowsFrom(2 * y, y) },
  ], 1),
  kohya('diffusion_model.blocks.1.mlp.fc1', 2, ym, y, [{ key: YB('', 1, 'ff.net.0.proj') }], 1),
  kohya('diffusion_model.blocks.2.default_modulation.1', 2, y, y, [{ key: YB('', 2, 'norm1.linear') }], 1),
  kohya('diffusion_model.pooler.c_proj', 2, yt, HUNYUAN_DIT.t5, [{ key: 'time_extra_emb.pooler.c_proj.weight' }], 1),
  kohya('diffusion_model.final_layer.adaLN_modulation.1', 2, 2 * y, y, [{ key: 'norm_out.linear.weight', rows: swappedHalves(y) }], 1),
  kohya('lora_unet_blocks_0_attn2_kv_proj', 2, 2 * y, yt, [{ key: YB('', 0, 'attn2.to_k'), rows: rowsFrom(0, y) }, { key: YB('', 0, 'attn2.to_v'), rows: rowsFrom(y, y) }], 1),
];
/** The same ComfyUI LoRA on ComfyUI's file: by name, fused tensors whole. */
const comfyHunyuanDitOnOriginal: LoraSpec[] = [
  kohya('diffusion_model.blocks.3.attn1.Wqkv', 2, 3 * y, y, [{ key: YB(cm, 3, 'attn1.Wqkv') }], 1),
  kohya('lora_unet_blocks_0_attn2_kv_proj', 2, 2 * y, yt, [{ key: YB(cm, 0, 'attn2.kv_proj') }], 1),
];

// --- the cases ------------------------------------------------------------------------------------

const CASES: LoraCase[] = [
  {
    name: 'Pony V7 single file (AuraFlow, original names) ← diffusers trainer / SimpleTuner and ai-toolkit LoRAs (diffusers names)', layout: 'auraflow',
    base: file(PONY, auraflowOriginalTensors(rand, 'BF16')), baseName: PONY,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersAuraFlow(2, ''), weight: 0.8, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'ai-toolkit-auraflow.safetensors', specs: diffusersAuraFlow(1, ''), weight: 1 },
      { file: 'comfyui-extracted.safetensors', specs: comfyAuraFlowOnOriginal, weight: 1 },
    ],
  },
  {
    name: 'AuraFlow 0.3, a checkpoint ComfyUI saved (model.diffusion_model., fp16) ← diffusers-named LoRA', layout: 'auraflow',
    base: file(AF, auraflowOriginalTensors(rand, 'F16', AURAFLOW, cm)), baseName: AF,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersAuraFlow(2, cm), weight: 1, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'diffusers AuraFlow transformer (Pony V7 / AuraFlow 0.3 folder) ← ComfyUI-extracted and sd-scripts-form LoRAs (original names)', layout: 'auraflow',
    base: diffusersFolder('AuraFlowTransformer2DModel', auraflowDiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [
      { file: 'comfyui-extracted.safetensors', specs: comfyAuraFlowOnDiffusers, weight: 0.9 },
      { file: 'kohya-auraflow.safetensors', specs: kohyaAuraFlowOnDiffusers, weight: -0.5 },
    ],
  },
  {
    name: 'PixArt-Σ original file ← diffusers trainer LoRA (q, k, v onto thirds of attn.qkv, cross k, v onto halves of kv_linear)', layout: 'pixart',
    base: file(PXS, pixartOriginalTensors(rand, 'F16')), baseName: PXS,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersPixArt(2, ''), weight: 0.7, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'PixArt-Σ under model.diffusion_model. (ComfyUI-saved) ← PixArt\'s PEFT script folder (base_model.model. + diffusers names)', layout: 'pixart',
    base: file('pixart_sigma_saved.safetensors', pixartOriginalTensors(rand, 'BF16', PIXART, cm)), baseName: 'pixart_sigma_saved.safetensors',
    adapters: [{
      file: 'adapter_model.safetensors', specs: diffusersPixArt(1, cm, 'base_model.model.'), weight: 1,
      folder: { name: 'pixart-lora', config: pixartPeftConfig },
    }],
  },
  {
    // PixArt's own training script saves the transformer's PEFT state dict under `unet.` and no α:
    // ComfyUI maps `unet.base_model.model.` + diffusers names for PixArt and, with no `.alpha`, applies scale 1.
    name: 'PixArt-Σ original file ← a lone PEFT file of PixArt\'s training script (unet.base_model.model. + diffusers names, no α: scale 1)', layout: 'pixart',
    base: file(PXS, pixartOriginalTensors(rand, 'F16')), baseName: PXS,
    adapters: [{ file: 'pixart-peft-lora.safetensors', specs: diffusersPixArt(1, '', 'unet.base_model.model.'), weight: 0.8 }],
  },
  {
    name: 'diffusers PixArt-Σ transformer ← ComfyUI-extracted and sd-scripts-form LoRAs (fused qkv and kv onto their parts)', layout: 'pixart',
    base: diffusersFolder('PixArtTransformer2DModel', pixartDiffusersTensors(rand, 'F32')), baseName: 'transformer',
    adapters: [
      { file: 'comfyui-extracted.safetensors', specs: comfyPixArtOnDiffusers, weight: 1 },
      { file: 'kohya-pixart.safetensors', specs: kohyaPixArtOnDiffusers, weight: 0.6 },
    ],
  },
  {
    name: 'HunyuanDiT v1.2, ComfyUI\'s file (model.diffusion_model., fp16) ← diffusers-named LoRA and ComfyUI\'s own', layout: 'hunyuan-dit',
    base: file(HY, hunyuanDitOriginalTensors(rand, 'F16', HUNYUAN_DIT, cm)), baseName: HY,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersHunyuanDit(2, cm), weight: 0.9, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'comfyui-extracted.safetensors', specs: comfyHunyuanDitOnOriginal, weight: 1 },
    ],
  },
  {
    name: 'diffusers HunyuanDiT transformer ← Tencent\'s PEFT folder, ComfyUI-extracted and sd-scripts-form LoRAs (original names)', layout: 'hunyuan-dit',
    base: diffusersFolder('HunyuanDiT2DModel', hunyuanDitDiffusersTensors(rand, 'F16')), baseName: 'transformer',
    adapters: [
      { file: 'adapter_model.safetensors', specs: tencentHunyuanDitOnDiffusers, weight: 1, folder: { name: 'hunyuandit-lora', config: tencentConfig } },
      { file: 'comfyui-extracted.safetensors', specs: comfyHunyuanDitOnDiffusers, weight: -0.8 },
    ],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('the AuraFlow, PixArt and HunyuanDiT layouts', () => {
  it('place the modules named the other way', async () => {
    for (const k of CASES) {
      const prepared = await prepare(k);
      const layouts = new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout)));
      expect(layouts.has(k.layout!), k.name).toBe(true);
      await prepared.close();
    }
  });

  for (const layout of [auraflow, pixart, hunyuanDit]) {
    it(`without ${layout.name} in the registry, every case it places is refused`, async () => {
      await withoutLayout(layout, async () => {
        for (const k of CASES.filter((c) => c.layout === layout.name)) {
          const prepared = await prepare(k);
          expect(prepared.plan.problems.length, k.name).toBeGreaterThan(0);
          await prepared.close();
        }
      });
    });
  }
});

describe('a whole PixArt-Σ pipeline folder', () => {
  it('takes ComfyUI-named modules onto its transformer/ (keys under the component\'s prefix), fused rows split', async () => {
    const pipeline = {
      'model_index.json': JSON.stringify({
        _class_name: 'PixArtSigmaPipeline', transformer: ['diffusers', 'PixArtTransformer2DModel'], text_encoder: ['transformers', 'T5EncoderModel'],
        vae: ['diffusers', 'AutoencoderKL'], scheduler: ['diffusers', 'DPMSolverMultistepScheduler'], tokenizer: ['transformers', 'T5Tokenizer'],
      }),
      'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(pixartDiffusersTensors(rand, 'F16')),
      'transformer/config.json': JSON.stringify({ _class_name: 'PixArtTransformer2DModel' }),
      'text_encoder/model.safetensors': buildSafetensors([{ name: 'encoder.block.0.layer.0.SelfAttention.q.weight', dtype: 'F32', shape: [4, 4], data: new Float64Array(16) }]),
    };
    const lora = buildSafetensors(loraTensorsOf([
      kohya('diffusion_model.blocks.1.cross_attn.kv_linear', 2, 2 * x, x, [], 2),
      kohya('diffusion_model.t_block.1', 2, 6 * x, x, [], 2),
    ]));
    const prepared = await prepareMerge(memoryInputFileSet(pipeline, 'PixArt-Sigma-XL-2-1024-MS'), [
      { files: memoryInputFileSet({ 'comfyui-extracted.safetensors': lora }, 'comfyui-extracted.safetensors'), weight: 1 },
    ]);
    expect(prepared.plan.problems).toEqual([]);
    const placed = prepared.plan.updates.flatMap((u) => u.terms.map((t) => [u.baseKey, t.layout, t.placement?.segments ?? null]));
    await prepared.close();
    expect(placed).toEqual(expect.arrayContaining([
      ['transformer.transformer_blocks.1.attn2.to_k.weight', 'pixart', [{ src: 0, dst: 0, count: x }]],
      ['transformer.transformer_blocks.1.attn2.to_v.weight', 'pixart', [{ src: x, dst: 0, count: x }]],
      ['transformer.adaln_single.linear.weight', 'pixart', null],
    ]));
    expect(placed).toHaveLength(3);
  });
});

describe('every weight of each model, named either way, is found in the other naming', () => {
  // A module per stored weight (a LoRA on a Linear or conv, a diff on a norm): where it lands is
  // checked by the merges above; here, that no weight is left without a rule and that each
  // module's ΔW rows are placed exactly once.
  const locator = (tensors: FixtureTensor[]) => new ModuleLocator({ tensors: new Map(tensors.map((t) => [t.name, { shape: t.shape }])) });
  const rowsPlaced = (targets: { baseKey: string; rows?: readonly { count: number }[] }[], base: FixtureTensor[]) =>
    targets.reduce((n, t) => n + (t.rows ? t.rows.reduce((m, g) => m + g.count, 0) : base.find((b) => b.name === t.baseKey)!.shape[0]), 0);
  const module = (key: string) => key.slice(0, -'.weight'.length);
  // HunyuanDiT's block norm2/norm3 are refused (see below): every other weight is placed.
  const swappedNorm = /^blocks\.\d+\.norm[23]\.weight$/;
  const families: [string, string, FixtureTensor[], FixtureTensor[]][] = [
    ['AuraFlow', 'auraflow', auraflowOriginalTensors(rand, 'BF16'), auraflowDiffusersTensors(rand, 'BF16')],
    ['PixArt', 'pixart', pixartOriginalTensors(rand, 'BF16'), pixartDiffusersTensors(rand, 'BF16')],
    ['HunyuanDiT', 'hunyuan-dit', hunyuanDitOriginalTensors(rand, 'BF16'), hunyuanDitDiffusersTensors(rand, 'BF16')],
  ];
  for (const [family, layout, original, diffusers] of families) {
    it(`${family}: the original names (dotted, flattened, ComfyUI's) onto diffusers' and back`, () => {
      const onDiffusers = locator(diffusers);
      const onOriginal = locator(original);
      for (const [from, onto, base, prefixes] of [
        [original, onDiffusers, diffusers, ['', 'diffusion_model.', 'lora_unet_']],
        [diffusers, onOriginal, original, ['transformer.']],
      ] as const) {
        for (const t of from.filter((x) => x.name.endsWith('.weight') && !swappedNorm.test(x.name))) {
          const counterpart = base.some((b) => b.name === t.name);
          for (const p of prefixes) {
            const name = p === 'lora_unet_' ? `${p}${module(t.name).replaceAll('.', '_')}` : `${p}${module(t.name)}`;
            const at = onto.locate(moduleAddress(name));
            expect(at.found, name).toBe(true);
            if (!at.found) continue;
            // A weight named alike in both (HunyuanDiT's skip_linear) lands by name.
            if (!counterpart) expect(at.layout, name).toBe(layout);
            expect(rowsPlaced(at.targets, base), name).toBe(t.shape[0]);
          }
        }
      }
    });
  }
});

describe('refused by name', () => {
  const problemsOf = (base: Record<string, Uint8Array | string>, baseName: string, specs: LoraSpec[]) => planProblemsOf(base, baseName, specs, rand);

  it('AuraFlow modules the base lacks: a block past its last, a text stream in a single block', async () => {
    const problems = await problemsOf(file(PONY, auraflowOriginalTensors(rand, 'BF16')), PONY, [
      peftSpec('transformer.joint_transformer_blocks.4.attn.to_q', 2, a, a, [], 1),
      peftSpec('transformer.single_transformer_blocks.0.attn.add_q_proj', 2, a, a, [], 1),
      kohya('lora_unet_single_layers_7_mlp_c_fc1', 2, ffn, a, [], 1),
    ]);
    expect(problems).toEqual([
      expect.stringMatching(/joint_transformer_blocks\.4\.attn\.to_q.*no matching tensor/),
      expect.stringMatching(/single_transformer_blocks\.0\.attn\.add_q_proj.*no matching tensor/),
      expect.stringMatching(/lora_unet_single_layers_7_mlp_c_fc1.*no matching tensor/),
    ]);
  });

  it('PixArt: a block the base lacks, and diffusers\' attn1.to_k whose rows are not a third of the base\'s qkv', async () => {
    const problems = await problemsOf(file(PXS, pixartOriginalTensors(rand, 'F16')), PXS, [
      peftSpec('transformer.transformer_blocks.5.attn2.to_k', 2, x, x, [], 1),
      peftSpec('transformer.transformer_blocks.0.attn1.to_k', 2, x + 2, x, [], 1),
    ]);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/transformer_blocks\.5\.attn2\.to_k.*no matching tensor/);
    expect(problems[1]).toMatch(/transformer_blocks\.0\.attn1\.to_k/);
  });

  it('AuraFlow names on a PixArt file and PixArt names on an AuraFlow folder land nowhere', async () => {
    const onPixArt = await problemsOf(file(PXS, pixartOriginalTensors(rand, 'F16')), PXS, [peftSpec('transformer.joint_transformer_blocks.0.attn.to_q', 2, x, x, [], 1)]);
    expect(onPixArt).toEqual([expect.stringMatching(/no matching tensor/)]);
    const onAura = await problemsOf(diffusersFolder('AuraFlowTransformer2DModel', auraflowDiffusersTensors(rand, 'BF16')), 'transformer', [
      kohya('diffusion_model.blocks.0.attn.qkv', 2, 3 * a, a, [], 1),
    ]);
    expect(onAura).toEqual([expect.stringMatching(/no matching tensor/)]);
  });

  it('HunyuanDiT: a change to a block\'s norm2 or norm3, whose names the two namings swap, in either naming and on either base', async () => {
    const { dim } = HUNYUAN_DIT;
    const diffs = buildSafetensors([
      { name: 'diffusion_model.blocks.1.norm2.diff', dtype: 'F32', shape: [dim], data: Array.from({ length: dim }, (_, i) => i / 8) },
      { name: 'lora_unet_blocks_2_norm3.diff_b', dtype: 'F32', shape: [dim], data: Array.from({ length: dim }, (_, i) => -i / 8) },
    ]);
    for (const [base, baseName] of [
      [file(HY, hunyuanDitOriginalTensors(rand, 'F16', HUNYUAN_DIT, cm)), HY],
      [diffusersFolder('HunyuanDiT2DModel', hunyuanDitDiffusersTensors(rand, 'F16')), 'transformer'],
    ] as const) {
      const prepared = await prepareMerge(memoryInputFileSet(base, baseName), [{ files: memoryInputFileSet({ 'norms.safetensors': diffs }, 'norms.safetensors'), weight: 1 }]);
      const problems = prepared.plan.problems.map((p) => p.message);
      await prepared.close();
      expect(problems, baseName).toEqual([
        expect.stringMatching(/blocks\.1\.norm2.*swaps norm2 and norm3/),
        expect.stringMatching(/blocks_2_norm3.*swaps norm2 and norm3/),
      ]);
    }
  });

  it('HunyuanDiT modules the base lacks: a fifth block, a PixArt name', async () => {
    const problems = await problemsOf(file(HY, hunyuanDitOriginalTensors(rand, 'F16', HUNYUAN_DIT, cm)), HY, [
      peftSpec('transformer.blocks.4.attn1.to_q', 2, y, y, [], 1),
      kohya('diffusion_model.blocks.0.cross_attn.q_linear', 2, y, y, [], 1),
    ]);
    expect(problems).toEqual([
      expect.stringMatching(/blocks\.4\.attn1\.to_q.*no matching tensor/), expect.stringMatching(/cross_attn\.q_linear.*no matching tensor/),
    ]);
  });
});
