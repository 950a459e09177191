/**
 * The surface fuzzer's `dit-namings` world (fuzz-surfaces.ts draws it): the diffusion transformers
 * whose two namings loramerge converts between — AuraFlow (Pony V7), PixArt-α/Σ, HunyuanDiT,
 * Mochi 1, Cosmos-Predict2 / Anima and Stable Cascade's stage C. Each case draws a family, a small
 * base in one naming (the original single file, bare or under ComfyUI's `model.diffusion_model.`,
 * or a diffusers transformer folder) and a LoRA in a trainer's naming (kohya `lora_unet_` + the
 * original names flattened, ComfyUI's `diffusion_model.` + the original names, diffusers'
 * `transformer.` + diffusers' names, genmo's bare names, PixArt's `unet.base_model.model.` PEFT file,
 * Stable Cascade's `lora_prior_unet_`), with
 * real key names and fused tensors.
 *
 * The truth is written here from the README rows and the tools' conversion scripts, plainly and
 * without the library's layouts: each family's table pairs an original module with its diffusers
 * module(s): one to one, one of n equal row parts of the original's fused tensor (q, k, v thirds of
 * `qkv` / `Wqkv` / `qkv_x` / `in_proj_weight`; k, v halves of `kv_linear` / `kv_proj`), or with the
 * two halves of rows exchanged (AuraFlow `modF.1`, HunyuanDiT `final_layer.adaLN_modulation.1`,
 * Mochi `final_layer.mod` and the SwiGLU `w1`). A module in the base's naming lands by name; in the
 * other, ΔW's rows go where the table says. The refusals the README lists are drawn too: a module
 * past the base's last block, a text stream in an AuraFlow single block, a change to a HunyuanDiT
 * block's `norm2` / `norm3` (the namings swap those names), Anima's LLM-adapter modules on a
 * diffusers transformer alone (or on a Cosmos file without the adapter).
 */
import fc from 'fast-check';
import { seededRandom, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';
import {
  AURAFLOW, HUNYUAN_DIT, PIXART, auraflowDiffusersTensors, auraflowOriginalTensors, hunyuanDitDiffusersTensors, hunyuanDitOriginalTensors,
  pixartDiffusersTensors, pixartOriginalTensors,
} from './auraflow-pixart-fixtures.js';
import { MOCHI, mochiDiffusersTensors, mochiOriginalTensors } from './mochi-fixtures.js';
import { COSMOS, cosmosDiffusersTensors, cosmosOriginalTensors } from './cosmos-fixtures.js';
import { STAGE_C, stageCTensors } from './stable-cascade-fixtures.js';
import { convertRest, OUT_DTYPE, pastDtype, type Decoded, type ExpectedMerge, type OutDtype, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

/**
 * An original module and its diffusers counterpart: `diff` one name (row for row, or with the
 * halves of its rows exchanged when `swap`), several names (the original's rows in that many
 * equal parts, in order), or null (no diffusers module: Anima's LLM adapter on the transformer).
 */
interface Pair { orig: string; diff: string | string[] | null; out: number; in: number; swap?: boolean; origTensor?: string }

type Naming = 'orig' | 'diff';
/** A LoRA's key form: which naming its module names are in, how a name is written, which factors, where α comes from. */
type LoraForm = 'kohya' | 'comfy' | 'comfy-peft' | 'bare-peft' | 'diffusers' | 'unet-peft' | 'prior';
const FORM_NAMING: Record<LoraForm, Naming> = { kohya: 'orig', comfy: 'orig', 'comfy-peft': 'orig', 'bare-peft': 'orig', diffusers: 'diff', 'unet-peft': 'diff', prior: 'diff' };

interface BaseForm { naming: Naming; prefix: string; folder: boolean; file: string; tensors: (rand: Rand, dtype: FixtureDType) => FixtureTensor[] }

interface Family {
  name: string;
  className: string;
  bases: BaseForm[];
  forms: LoraForm[];
  pairs: Pair[];
  /** Refusals the README lists for the family, as extra LoRA modules (name in the LoRA's form decided by the world). */
  hostiles: ('past' | 'text in single' | 'norm2/3' | 'llm adapter')[];
}

const blocks = (n: number, f: (i: number) => Pair[]) => Array.from({ length: n }, (_, i) => f(i)).flat();
const one = (orig: string, diff: string, out: number, inF: number, swap = false): Pair => ({ orig, diff, out, in: inF, ...(swap ? { swap } : {}) });

// --- the families' tables, from the README rows and the conversion scripts -----------------------------

const { dim: a, ffn: af, cap: acap, freq: afreq, patch: apatch, patchOut: aout } = AURAFLOW;
/** diffusers' single-file conversion (convert_auraflow_transformer_checkpoint_to_diffusers) and ComfyUI's auraflow_to_diffusers. */
const AURAFLOW_PAIRS: Pair[] = [
  ...blocks(2, (i) => {
    const o = `double_layers.${i}`, d = `joint_transformer_blocks.${i}`;
    const attn = ([['w2q', 'to_q'], ['w2k', 'to_k'], ['w2v', 'to_v'], ['w2o', 'to_out.0'], ['w1q', 'add_q_proj'], ['w1k', 'add_k_proj'], ['w1v', 'add_v_proj'], ['w1o', 'to_add_out']] as const)
      .map(([p, q]) => one(`${o}.attn.${p}`, `${d}.attn.${q}`, a, a));
    const mlp = (m: string, f: string) => [one(`${o}.${m}.c_fc1`, `${d}.${f}.linear_1`, af, a), one(`${o}.${m}.c_fc2`, `${d}.${f}.linear_2`, af, a), one(`${o}.${m}.c_proj`, `${d}.${f}.out_projection`, a, af)];
    return [...attn, ...mlp('mlpX', 'ff'), ...mlp('mlpC', 'ff_context'), one(`${o}.modX.1`, `${d}.norm1.linear`, 6 * a, a), one(`${o}.modC.1`, `${d}.norm1_context.linear`, 6 * a, a)];
  }),
  ...blocks(2, (i) => {
    const o = `single_layers.${i}`, d = `single_transformer_blocks.${i}`;
    return [
      ...([['w1q', 'to_q'], ['w1k', 'to_k'], ['w1v', 'to_v'], ['w1o', 'to_out.0']] as const).map(([p, q]) => one(`${o}.attn.${p}`, `${d}.attn.${q}`, a, a)),
      one(`${o}.mlp.c_fc1`, `${d}.ff.linear_1`, af, a), one(`${o}.mlp.c_fc2`, `${d}.ff.linear_2`, af, a), one(`${o}.mlp.c_proj`, `${d}.ff.out_projection`, a, af),
      one(`${o}.modCX.1`, `${d}.norm1.linear`, 6 * a, a),
    ];
  }),
  one('cond_seq_linear', 'context_embedder', a, acap), one('t_embedder.mlp.0', 'time_step_proj.linear_1', a, afreq), one('t_embedder.mlp.2', 'time_step_proj.linear_2', a, a),
  one('init_x_linear', 'pos_embed.proj', a, apatch), one('final_linear', 'proj_out', aout, a),
  // (shift, scale) in fal's modF.1, (scale, shift) in diffusers' norm_out.linear.
  one('modF.1', 'norm_out.linear', 2 * a, a, true),
];

const { dim: x, mlp: xm, cap: xcap, freq: xfreq, latent: xlat } = PIXART;
/** diffusers' scripts/convert_pixart_sigma_to_diffusers.py. */
const PIXART_PAIRS: Pair[] = [
  ...blocks(2, (i) => {
    const o = `blocks.${i}`, d = `transformer_blocks.${i}`;
    return [
      { orig: `${o}.attn.qkv`, diff: [`${d}.attn1.to_q`, `${d}.attn1.to_k`, `${d}.attn1.to_v`], out: 3 * x, in: x },
      one(`${o}.attn.proj`, `${d}.attn1.to_out.0`, x, x), one(`${o}.cross_attn.q_linear`, `${d}.attn2.to_q`, x, x),
      { orig: `${o}.cross_attn.kv_linear`, diff: [`${d}.attn2.to_k`, `${d}.attn2.to_v`], out: 2 * x, in: x },
      one(`${o}.cross_attn.proj`, `${d}.attn2.to_out.0`, x, x), one(`${o}.mlp.fc1`, `${d}.ff.net.0.proj`, xm, x), one(`${o}.mlp.fc2`, `${d}.ff.net.2`, x, xm),
    ];
  }),
  one('t_block.1', 'adaln_single.linear', 6 * x, x),
  one('t_embedder.mlp.0', 'adaln_single.emb.timestep_embedder.linear_1', x, xfreq), one('t_embedder.mlp.2', 'adaln_single.emb.timestep_embedder.linear_2', x, x),
  one('y_embedder.y_proj.fc1', 'caption_projection.linear_1', x, xcap), one('y_embedder.y_proj.fc2', 'caption_projection.linear_2', x, x),
  one('final_layer.linear', 'proj_out', 8 * xlat, x),
];

const { dim: h, mlp: hm, text: ht, t5: h5, freq: hfreq, extra: hextra } = HUNYUAN_DIT;
/** diffusers' scripts/convert_hunyuandit_to_diffusers.py (norm2 / norm3 left out: the script swaps their names). */
const HUNYUAN_DIT_PAIRS: Pair[] = [
  ...blocks(4, (i) => {
    const b = `blocks.${i}`;
    return [
      { orig: `${b}.attn1.Wqkv`, diff: [`${b}.attn1.to_q`, `${b}.attn1.to_k`, `${b}.attn1.to_v`], out: 3 * h, in: h },
      one(`${b}.attn1.out_proj`, `${b}.attn1.to_out.0`, h, h), one(`${b}.attn2.q_proj`, `${b}.attn2.to_q`, h, h),
      { orig: `${b}.attn2.kv_proj`, diff: [`${b}.attn2.to_k`, `${b}.attn2.to_v`], out: 2 * h, in: ht },
      one(`${b}.attn2.out_proj`, `${b}.attn2.to_out.0`, h, h), one(`${b}.mlp.fc1`, `${b}.ff.net.0.proj`, hm, h), one(`${b}.mlp.fc2`, `${b}.ff.net.2`, h, hm),
      one(`${b}.default_modulation.1`, `${b}.norm1.linear`, h, h),
      ...(i === 3 ? [one(`${b}.skip_linear`, `${b}.skip_linear`, h, 2 * h)] : []),
    ];
  }),
  one('t_embedder.mlp.0', 'time_extra_emb.timestep_embedder.linear_1', h, hfreq), one('t_embedder.mlp.2', 'time_extra_emb.timestep_embedder.linear_2', h, h),
  one('extra_embedder.0', 'time_extra_emb.extra_embedder.linear_1', 4 * h, hextra), one('extra_embedder.2', 'time_extra_emb.extra_embedder.linear_2', h, 4 * h),
  one('pooler.q_proj', 'time_extra_emb.pooler.q_proj', h5, h5), one('pooler.c_proj', 'time_extra_emb.pooler.c_proj', ht, h5),
  one('mlp_t5.0', 'text_embedder.linear_1', 4 * h5, h5), one('mlp_t5.2', 'text_embedder.linear_2', ht, 4 * h5),
  one('final_layer.adaLN_modulation.1', 'norm_out.linear', 2 * h, h, true), one('final_layer.linear', 'proj_out', 32, h),
];

const { x: mx, y: my, mx: mhx, my: mhy, t5: m5, patch: mpatch, freq: mfreq } = MOCHI;
/** diffusers' scripts/convert_mochi_to_diffusers.py: SwiGLU w1 (proj, gate) ↔ (gate, proj), final_layer.mod halves swapped. */
const MOCHI_PAIRS: Pair[] = [
  ...blocks(2, (i) => {
    const o = `blocks.${i}`, d = `transformer_blocks.${i}`;
    const last = i === 1;
    return [
      { orig: `${o}.attn.qkv_x`, diff: [`${d}.attn1.to_q`, `${d}.attn1.to_k`, `${d}.attn1.to_v`], out: 3 * mx, in: mx },
      { orig: `${o}.attn.qkv_y`, diff: [`${d}.attn1.add_q_proj`, `${d}.attn1.add_k_proj`, `${d}.attn1.add_v_proj`], out: 3 * mx, in: my },
      one(`${o}.attn.proj_x`, `${d}.attn1.to_out.0`, mx, mx),
      one(`${o}.mlp_x.w1`, `${d}.ff.net.0.proj`, 2 * mhx, mx, true), one(`${o}.mlp_x.w2`, `${d}.ff.net.2`, mx, mhx),
      one(`${o}.mod_x`, `${d}.norm1.linear`, 4 * mx, mx),
      last ? one(`${o}.mod_y`, `${d}.norm1_context.linear_1`, my, mx) : one(`${o}.mod_y`, `${d}.norm1_context.linear`, 4 * my, mx),
      ...(last ? [] : [one(`${o}.attn.proj_y`, `${d}.attn1.to_add_out`, my, mx), one(`${o}.mlp_y.w1`, `${d}.ff_context.net.0.proj`, 2 * mhy, my, true), one(`${o}.mlp_y.w2`, `${d}.ff_context.net.2`, my, mhy)]),
    ];
  }),
  one('x_embedder.proj', 'patch_embed.proj', mx, mpatch), one('t_embedder.mlp.0', 'time_embed.timestep_embedder.linear_1', mx, mfreq), one('t_embedder.mlp.2', 'time_embed.timestep_embedder.linear_2', mx, mx),
  one('t5_y_embedder.to_kv', 'time_embed.pooler.to_kv', 2 * mx, m5), one('t5_y_embedder.to_q', 'time_embed.pooler.to_q', mx, m5), one('t5_y_embedder.to_out', 'time_embed.pooler.to_out', mx, mx),
  one('t5_yproj', 'time_embed.caption_proj', my, m5),
  one('final_layer.mod', 'norm_out.linear', 2 * mx, mx, true), one('final_layer.linear', 'proj_out', mpatch, mx),
];

const { dim: c, text: ct, adaln: cad, patchIn: cin, patchOut: cout } = COSMOS;
/** diffusers' scripts/convert_cosmos_to_diffusers.py (its Cosmos 2.0 table): renames only. Anima's LLM adapter has no transformer name. */
const COSMOS_PAIRS: Pair[] = [
  ...blocks(2, (i) => {
    const o = `blocks.${i}`, d = `transformer_blocks.${i}`;
    const attn = (src: string, dst: string, kvIn: number) => [
      one(`${o}.${src}.q_proj`, `${d}.${dst}.to_q`, c, c), one(`${o}.${src}.k_proj`, `${d}.${dst}.to_k`, c, kvIn),
      one(`${o}.${src}.v_proj`, `${d}.${dst}.to_v`, c, kvIn), one(`${o}.${src}.output_proj`, `${d}.${dst}.to_out.0`, c, c),
    ];
    const mod = (m: string, n: string) => [one(`${o}.adaln_modulation_${m}.1`, `${d}.${n}.linear_1`, cad, c), one(`${o}.adaln_modulation_${m}.2`, `${d}.${n}.linear_2`, 3 * c, cad)];
    return [...attn('self_attn', 'attn1', c), ...attn('cross_attn', 'attn2', ct), one(`${o}.mlp.layer1`, `${d}.ff.net.0.proj`, 4 * c, c), one(`${o}.mlp.layer2`, `${d}.ff.net.2`, c, 4 * c),
      ...mod('self_attn', 'norm1'), ...mod('cross_attn', 'norm2'), ...mod('mlp', 'norm3')];
  }),
  one('x_embedder.proj.1', 'patch_embed.proj', c, cin), one('t_embedder.1.linear_1', 'time_embed.t_embedder.linear_1', c, c), one('t_embedder.1.linear_2', 'time_embed.t_embedder.linear_2', 3 * c, c),
  one('final_layer.adaln_modulation.1', 'norm_out.linear_1', cad, c), one('final_layer.adaln_modulation.2', 'norm_out.linear_2', 2 * c, cad), one('final_layer.linear', 'proj_out', cout, c),
];
const ANIMA_PAIRS: Pair[] = [
  { orig: 'llm_adapter.blocks.0.self_attn.q_proj', diff: null, out: ct, in: ct }, { orig: 'llm_adapter.blocks.0.cross_attn.o_proj', diff: null, out: ct, in: ct },
  { orig: 'llm_adapter.blocks.0.mlp.0', diff: null, out: 4 * ct, in: ct }, { orig: 'llm_adapter.blocks.0.mlp.2', diff: null, out: ct, in: 4 * ct },
  { orig: 'llm_adapter.out_proj', diff: null, out: ct, in: ct },
];

const { c: sc, cond: scond, clip: sclip, r: sr } = STAGE_C;
/** ComfyUI's Stable_Cascade_C.process_unet_state_dict: in_proj_weight's thirds are to_q, to_k, to_v; the rest keep their names. */
const STAGE_C_PAIRS: Pair[] = [
  ...['down_blocks.0', 'down_blocks.1', 'up_blocks.0', 'up_blocks.1'].flatMap((l) => [
    { orig: `${l}.2.attention.attn.in_proj`, origTensor: `${l}.2.attention.attn.in_proj_weight`, diff: ['to_q', 'to_k', 'to_v'].map((p) => `${l}.2.attention.attn.${p}`), out: 3 * sc, in: sc },
    one(`${l}.2.attention.attn.out_proj`, `${l}.2.attention.attn.out_proj`, sc, sc), one(`${l}.2.kv_mapper.1`, `${l}.2.kv_mapper.1`, sc, scond),
    one(`${l}.0.channelwise.0`, `${l}.0.channelwise.0`, 4 * sc, sc), one(`${l}.0.channelwise.4`, `${l}.0.channelwise.4`, sc, 4 * sc), one(`${l}.1.mapper`, `${l}.1.mapper`, 2 * sc, sr),
  ]),
  one('clip_txt_mapper', 'clip_txt_mapper', 4 * scond, sclip), one('clip_txt_pooled_mapper', 'clip_txt_pooled_mapper', 4 * scond, sclip),
];

const CM = 'model.diffusion_model.';
const FAMILIES: Family[] = [
  {
    name: 'AuraFlow', className: 'AuraFlowTransformer2DModel', pairs: AURAFLOW_PAIRS, forms: ['kohya', 'comfy', 'comfy-peft', 'diffusers'], hostiles: ['past', 'text in single'],
    bases: [
      { naming: 'orig', prefix: '', folder: false, file: 'pony-v7-base.safetensors', tensors: (r, t) => auraflowOriginalTensors(r, t) },
      { naming: 'orig', prefix: CM, folder: false, file: 'aura_flow_0.3.safetensors', tensors: (r, t) => auraflowOriginalTensors(r, t, AURAFLOW, CM) },
      { naming: 'diff', prefix: '', folder: true, file: '', tensors: (r, t) => auraflowDiffusersTensors(r, t) },
    ],
  },
  {
    name: 'PixArt', className: 'PixArtTransformer2DModel', pairs: PIXART_PAIRS, forms: ['kohya', 'comfy', 'comfy-peft', 'diffusers', 'unet-peft'], hostiles: ['past'],
    bases: [
      { naming: 'orig', prefix: '', folder: false, file: 'PixArt-Sigma-XL-2-1024-MS.safetensors', tensors: (r, t) => pixartOriginalTensors(r, t) },
      { naming: 'orig', prefix: CM, folder: false, file: 'pixart_sigma_comfy.safetensors', tensors: (r, t) => pixartOriginalTensors(r, t, PIXART, CM) },
      { naming: 'diff', prefix: '', folder: true, file: '', tensors: (r, t) => pixartDiffusersTensors(r, t) },
    ],
  },
  {
    name: 'HunyuanDiT', className: 'HunyuanDiT2DModel', pairs: HUNYUAN_DIT_PAIRS, forms: ['kohya', 'comfy', 'comfy-peft', 'diffusers'], hostiles: ['past', 'norm2/3'],
    bases: [
      { naming: 'orig', prefix: '', folder: false, file: 'hunyuan_dit_v1.2.safetensors', tensors: (r, t) => hunyuanDitOriginalTensors(r, t) },
      { naming: 'orig', prefix: CM, folder: false, file: 'hunyuan_dit_1.2.safetensors', tensors: (r, t) => hunyuanDitOriginalTensors(r, t, HUNYUAN_DIT, CM) },
      { naming: 'diff', prefix: '', folder: true, file: '', tensors: (r, t) => hunyuanDitDiffusersTensors(r, t) },
    ],
  },
  {
    name: 'Mochi 1', className: 'MochiTransformer3DModel', pairs: MOCHI_PAIRS, forms: ['kohya', 'comfy', 'comfy-peft', 'bare-peft', 'diffusers'], hostiles: ['past'],
    bases: [
      { naming: 'orig', prefix: '', folder: false, file: 'dit.safetensors', tensors: (r, t) => mochiOriginalTensors(r, t) },
      { naming: 'orig', prefix: CM, folder: false, file: 'mochi_preview_bf16.safetensors', tensors: (r, t) => mochiOriginalTensors(r, t, MOCHI, CM) },
      { naming: 'diff', prefix: '', folder: true, file: '', tensors: (r, t) => mochiDiffusersTensors(r, t) },
    ],
  },
  {
    name: 'Cosmos-Predict2', className: 'CosmosTransformer3DModel', pairs: COSMOS_PAIRS, forms: ['kohya', 'comfy-peft', 'diffusers'], hostiles: ['past', 'llm adapter'],
    bases: [
      { naming: 'orig', prefix: 'net.', folder: false, file: 'cosmos_predict2_2B_t2i.safetensors', tensors: (r, t) => cosmosOriginalTensors(r, t) },
      { naming: 'orig', prefix: CM, folder: false, file: 'cosmos_comfy.safetensors', tensors: (r, t) => cosmosOriginalTensors(r, t, COSMOS, CM) },
      { naming: 'diff', prefix: '', folder: true, file: '', tensors: (r, t) => cosmosDiffusersTensors(r, t) },
    ],
  },
  {
    name: 'Anima', className: 'CosmosTransformer3DModel', pairs: [...COSMOS_PAIRS, ...ANIMA_PAIRS], forms: ['kohya', 'comfy-peft', 'diffusers'], hostiles: ['past'],
    bases: [
      { naming: 'orig', prefix: 'net.', folder: false, file: 'anima-preview.safetensors', tensors: (r, t) => cosmosOriginalTensors(r, t, COSMOS, 'net.', true) },
      { naming: 'diff', prefix: '', folder: true, file: '', tensors: (r, t) => cosmosDiffusersTensors(r, t) },
    ],
  },
  {
    name: 'Stable Cascade stage C', className: '', pairs: STAGE_C_PAIRS, forms: ['prior'], hostiles: ['past'],
    bases: [
      { naming: 'orig', prefix: '', folder: false, file: 'stage_c_bf16.safetensors', tensors: (r, t) => stageCTensors(r, t) },
      { naming: 'diff', prefix: CM, folder: false, file: 'stable_cascade_stage_c.safetensors', tensors: (r, t) => stageCTensors(r, t, STAGE_C, CM, true) },
    ],
  },
];

// --- a LoRA module as the world writes it and the truth places it -------------------------------------

/** Where a module's ΔW rows land on the base: rows [src, src + count) onto rows [dst, …) of `key`. */
interface Landing { key: string; rows: { src: number; dst: number; count: number }[] }

interface Module {
  /** The module's name in the LoRA (its form's prefix and spelling). */
  name: string;
  down: string;
  up: string;
  alpha?: string;
  r: number;
  out: number;
  in: number;
  /** null: refused (`why`). */
  lands: Landing[] | null;
  why?: string;
}

const flat = (path: string) => path.replace(/\./g, '_');
const whole = (n: number) => [{ src: 0, dst: 0, count: n }];
const swapped = (n: number) => [{ src: 0, dst: n / 2, count: n / 2 }, { src: n / 2, dst: 0, count: n / 2 }];

/** The LoRA's module name for a module path in its naming. */
function loraName(form: LoraForm, path: string): string {
  switch (form) {
    case 'kohya': return `lora_unet_${flat(path)}`;
    case 'prior': return `lora_prior_unet_${flat(path)}`;
    case 'comfy': case 'comfy-peft': return `diffusion_model.${path}`;
    case 'bare-peft': return path;
    case 'diffusers': return `transformer.${path}`;
    // PixArt's training script's lone PEFT file, as ComfyUI's PixArt key map reads that prefix.
    case 'unet-peft': return `unet.base_model.model.${path}`;
  }
}

/** The base tensor of a module path in the base's naming. */
function baseKey(base: BaseForm, pair: Pair, path: string): string {
  const name = base.naming === 'orig' && path === pair.orig && pair.origTensor ? pair.origTensor : `${path}.weight`;
  return `${base.folder ? 'transformer' : ''}/${base.prefix}${name}`;
}

/**
 * Where a LoRA module on `pair` (its `part`-th diffusers name, or the original when part is -1)
 * lands on `base`, by the table: same naming by name; a diffusers part onto its rows of the
 * original's fused tensor; an original fused module split onto the diffusers parts; halves
 * exchanged where the pair says so.
 */
function landings(base: BaseForm, pair: Pair, naming: Naming, part: number): Landing[] | null {
  if (naming === base.naming) {
    const path = naming === 'orig' ? pair.orig : (pair.diff as string[] | string) instanceof Array ? (pair.diff as string[])[part] : (pair.diff as string);
    return [{ key: baseKey(base, pair, path), rows: whole(naming === 'orig' || !Array.isArray(pair.diff) ? pair.out : pair.out / pair.diff.length) }];
  }
  if (pair.diff === null) return null;
  if (naming === 'diff') {
    // A diffusers module onto the original.
    if (Array.isArray(pair.diff)) {
      const n = pair.out / pair.diff.length;
      return [{ key: baseKey(base, pair, pair.orig), rows: [{ src: 0, dst: part * n, count: n }] }];
    }
    return [{ key: baseKey(base, pair, pair.orig), rows: pair.swap ? swapped(pair.out) : whole(pair.out) }];
  }
  // An original module onto diffusers' names.
  if (Array.isArray(pair.diff)) {
    const n = pair.out / pair.diff.length;
    return pair.diff.map((d, k) => ({ key: baseKey(base, pair, d), rows: [{ src: k * n, dst: 0, count: n }] }));
  }
  return [{ key: baseKey(base, pair, pair.diff), rows: pair.swap ? swapped(pair.out) : whole(pair.out) }];
}

function moduleOf(form: LoraForm, path: string, r: number, out: number, inF: number, lands: Landing[] | null, why?: string): Module {
  const name = loraName(form, path);
  const peft = form === 'diffusers' || form === 'comfy-peft' || form === 'bare-peft' || form === 'unet-peft';
  return {
    name, r, out, in: inF, lands, ...(why ? { why } : {}),
    down: `${name}.${peft ? 'lora_A' : 'lora_down'}.weight`, up: `${name}.${peft ? 'lora_B' : 'lora_up'}.weight`,
    ...(form === 'kohya' || form === 'prior' || form === 'comfy' ? { alpha: `${name}.alpha` } : {}),
  };
}

/**
 * The truth under `--dtype`: merged values rounded once to it (refused past it), every other float
 * tensor of the base (`names` in component `component`) rounded once to it.
 */
function withDtype(d: Decoded, component: string, names: string[], merged: Map<string, ExpectedMerge>, outDtype: OutDtype | undefined): Truth {
  if (!outDtype) return { kind: 'expected', merged };
  const refused = pastDtype(merged, outDtype) ?? convertRest(d, names, (n) => `${component}/${n}`, () => false, merged, outDtype);
  if (refused) return refused;
  // A base tensor already holding NaN or Inf is converted as it is (the truth's values must be finite).
  if ([...merged.values()].some((e) => e.exact && e.values.some((x) => !Number.isFinite(x)))) return { kind: 'unknown', why: 'a base tensor holding NaN or Inf converted' };
  return { kind: 'expected', merged };
}

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, t) => Math.max(m, Math.abs(t)), 0);

/** The drawn world: a family, a base form, a LoRA form and its modules, maybe one the README says is refused. */
export const ditNamingsWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    family: fc.nat(FAMILIES.length - 1), baseIndex: fc.nat(), formIndex: fc.nat(), seed: fc.integer(),
    wDtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16'), loraDtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16'),
    count: fc.integer({ min: 1, max: 5 }), rank: fc.constantFrom(1, 2, 4),
    alpha: fc.constantFrom<number | null>(null, 1, 2, 4, 8, 0.5), metadata: fc.boolean(),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.nat() }),
  })
  .map(({ family: fi, baseIndex, formIndex, seed, wDtype, loraDtype, count, rank, alpha, metadata, hostile }) => {
    const family = FAMILIES[fi];
    const rand = seededRandom(seed);
    const pick = (n: number) => Math.floor(rand() * n);
    const form = family.forms[formIndex % family.forms.length];
    const naming = FORM_NAMING[form];
    // Mostly the other naming than the LoRA's: the conversion is what this world checks.
    const others = family.bases.filter((b) => b.naming !== naming);
    const base = others.length && rand() < 0.75 ? others[baseIndex % others.length] : family.bases[baseIndex % family.bases.length];
    // Modules: distinct pairs with a name in the LoRA's naming; a fused pair drawn from the diffusers side is one of its parts, or several.
    const usable = family.pairs.filter((p) => naming === 'orig' || p.diff !== null);
    const chosen = new Set<number>();
    // One module on a fused or swapped tensor in every case where the family has one.
    const special = usable.map((p, i) => (Array.isArray(p.diff) || p.swap ? i : -1)).filter((i) => i >= 0);
    if (special.length) chosen.add(special[pick(special.length)]);
    while (chosen.size < Math.min(count, usable.length)) chosen.add(pick(usable.length));
    const modules: Module[] = [];
    for (const i of chosen) {
      const pair = usable[i];
      if (naming === 'diff' && Array.isArray(pair.diff)) {
        const n = pair.out / pair.diff.length;
        const parts = pair.diff.map((_, k) => k).filter(() => rand() < 0.6);
        for (const k of parts.length ? parts : [pick(pair.diff.length)]) modules.push(moduleOf(form, pair.diff[k], rank, n, pair.in, landings(base, pair, naming, k)));
      } else {
        const path = naming === 'orig' ? pair.orig : (pair.diff as string);
        const lands = landings(base, pair, naming, -1);
        modules.push(moduleOf(form, path, rank, pair.out, pair.in, lands, lands ? undefined : 'an LLM-adapter module on a diffusers transformer, which does not hold the adapter'));
      }
    }
    // A refusal the README lists for the family.
    let hostileName = '';
    if (hostile !== null && family.hostiles.length) {
      const kind = family.hostiles[hostile % family.hostiles.length];
      hostileName = kind;
      if (kind === 'past') {
        const blocky = usable.filter((p) => /\.\d+\./.test(naming === 'orig' ? p.orig : Array.isArray(p.diff) ? p.diff[0] : p.diff!) && !p.orig.startsWith('llm_adapter.'));
        const pair = blocky[pick(blocky.length)];
        const path = (naming === 'orig' ? pair.orig : Array.isArray(pair.diff) ? pair.diff[0] : pair.diff!).replace(/\.\d+\./, '.9.');
        modules.push(moduleOf(form, path, rank, Array.isArray(pair.diff) && naming === 'diff' ? pair.out / pair.diff.length : pair.out, pair.in, null, 'a block past the base\'s last'));
      } else if (kind === 'text in single') {
        const path = naming === 'diff' ? `single_transformer_blocks.${pick(2)}.attn.add_q_proj` : `single_layers.${pick(2)}.attn.w2q`;
        modules.push(moduleOf(form, path, rank, a, a, null, 'a text stream in an AuraFlow single block'));
      } else if (kind === 'norm2/3' && form === 'diffusers') {
        hostileName = '';
      } else if (kind === 'llm adapter') {
        // Anima's adapter modules on plain Cosmos-Predict2 (no adapter in the base).
        const pair = ANIMA_PAIRS[pick(ANIMA_PAIRS.length)];
        if (naming === 'orig') modules.push(moduleOf(form, pair.orig, rank, pair.out, pair.in, null, 'an LLM-adapter module on a base without the adapter'));
        else hostileName = '';
      }
    }
    const normDiffs: FixtureTensor[] = [];
    if (hostileName === 'norm2/3') {
      // A `.diff` / `.diff_b` on a block's norm2 / norm3 (ComfyUI's and LyCORIS's full-weight keys).
      const block = pick(4), norm = rand() < 0.5 ? 'norm2' : 'norm3', suffix = rand() < 0.5 ? 'diff' : 'diff_b';
      const name = form === 'kohya' ? `lora_unet_blocks_${block}_${norm}` : `diffusion_model.blocks.${block}.${norm}`;
      normDiffs.push(tensor(rand, `${name}.${suffix}`, [h], 'F32', 0.25));
    }
    const alphaOf = (m: Module) => (alpha === null ? m.r : alpha);
    const loraTensors: FixtureTensor[] = modules.flatMap((m) => [
      tensor(rand, m.down, [m.r, m.in], loraDtype, 0.5), tensor(rand, m.up, [m.out, m.r], loraDtype, 0.5),
      ...(m.alpha && (form !== 'comfy' || alpha !== null) ? [{ name: m.alpha, dtype: 'F32' as const, shape: [], data: [alphaOf(m)] }] : []),
    ]).concat(normDiffs);
    const withMetadata = form === 'diffusers' && metadata;
    const loraMeta = withMetadata
      ? { format: 'pt', lora_adapter_metadata: JSON.stringify({ 'transformer.r': rank, 'transformer.lora_alpha': alpha ?? 8, 'transformer.peft_type': 'LORA', 'transformer.use_dora': false }) }
      : undefined;
    const files: Record<string, SpecFile> = {};
    const baseTensors = base.tensors(rand, wDtype);
    if (base.folder) {
      files['transformer/diffusion_pytorch_model.safetensors'] = { kind: 'safetensors', tensors: baseTensors, metadata: { format: 'pt' } };
      files['transformer/config.json'] = { kind: 'json', value: { _class_name: family.className, _diffusers_version: '0.33.0' } };
    } else files[base.file] = { kind: 'safetensors', tensors: baseTensors, metadata: { format: 'pt' } };
    const loraFile = `${family.name.replace(/[^A-Za-z0-9]+/g, '_').toLowerCase()}_lora.safetensors`;
    files[loraFile] = { kind: 'safetensors', tensors: loraTensors, ...(loraMeta ? { metadata: loraMeta } : {}) };
    const refused = modules.find((m) => !m.lands);
    const BASE_COMPONENT = base.folder ? 'transformer' : '';
    return {
      name: `${family.name}: ${base.folder ? 'diffusers folder' : `${base.naming === 'orig' ? 'original' : 'ComfyUI'} file${base.prefix ? ` under ${base.prefix}` : ''}`} ← ${form} LoRA${hostileName ? ` (${hostileName})` : ''}`,
      files, base: base.folder ? 'transformer' : base.file, adapter: loraFile, out: base.folder ? 'merged' : 'merged.safetensors',
      refusalsChecked: true, outDtypes: ['bf16', 'f16', 'f32'],
      truth: (d: Decoded, weight: number, outDtype?: OutDtype): Truth => {
        if (refused) return { kind: 'invalid', why: `${refused.name}: ${refused.why}` };
        if (normDiffs.length) return { kind: 'invalid', why: `${normDiffs[0].name}: HunyuanDiT's norm2 / norm3 swap names between the namings` };
        let scale = 1;
        if (withMetadata) {
          const meta = JSON.parse(d.headers.get(loraFile)!.lora_adapter_metadata) as Record<string, number>;
          scale = meta['transformer.lora_alpha'] / meta['transformer.r'];
        }
        const sums = new Map<string, Float64Array>();
        const terms = new Map<string, number>();
        for (const m of modules) {
          const A = d.tensors.get(`/${m.down}`)!, B = d.tensors.get(`/${m.up}`)!;
          const alphaT = m.alpha ? d.tensors.get(`/${m.alpha}`) : undefined;
          // kohya's α/r (α = 0: unset, scale 1, as sd-scripts' LoRAModule reads it); no α: 1.
          const s = alphaT ? (alphaT.values[0] === 0 ? 1 : alphaT.values[0] / m.r) : scale;
          const delta = new Float64Array(m.out * m.in);
          for (let i = 0; i < m.out; i++) for (let j = 0; j < m.in; j++) {
            let acc = 0;
            for (let k = 0; k < m.r; k++) acc += B.values[i * m.r + k] * A.values[k * m.in + j];
            delta[i * m.in + j] = acc;
          }
          for (const l of m.lands!) {
            const w = d.tensors.get(l.key)!;
            const cols = w.shape[1];
            const sum = sums.get(l.key) ?? new Float64Array(w.values.length);
            for (const { src, dst, count: n } of l.rows) for (let i = 0; i < n; i++) for (let j = 0; j < cols; j++) sum[(dst + i) * cols + j] += weight * s * delta[(src + i) * m.in + j];
            sums.set(l.key, sum);
            terms.set(l.key, (terms.get(l.key) ?? 0) + Math.abs(weight * s) * m.r * maxAbs(A.values) * maxAbs(B.values));
          }
        }
        const merged = new Map<string, ExpectedMerge>();
        for (const [key, sum] of sums) {
          const w = d.tensors.get(key)!;
          merged.set(key, { values: w.values.map((v, i) => v + sum[i]), magnitude: maxAbs(w.values) + terms.get(key)!, ...(outDtype ? { dtype: OUT_DTYPE[outDtype] } : {}) });
        }
        return withDtype(d, BASE_COMPONENT, baseTensors.map((t) => t.name), merged, outDtype);
      },
    } satisfies SurfaceWorld;
  });
