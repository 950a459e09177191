/**
 * LightX2V's Wan 2.1/2.2 LoRAs (the step/CFG-distill ones: `Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32`,
 * Kijai's extractions of them) as LightX2V's extractor writes them (tools/extract/lora_extractor.py):
 * `diffusion_model.` + Wan's names, lora_down/lora_up of the large weights with their `.alpha`,
 * `.diff_b` of biases, `.diff` of the norms, and `<block>.diff_m`, the diff of the block's adaLN table
 * `modulation` (1, 6, dim), and `head.diff_m` of the head's (1, 2, dim). LightX2V's loader
 * (lightx2v/utils/lora_loader.py) adds a diff_m to `<block>.modulation` at the LoRA's strength, as it
 * adds every diff; Kijai's WanVideoWrapper renames it `<block>.modulation.diff`, a ComfyUI diff
 * patch, strength · diff. diffusers' conversion names that table `scale_shift_table`
 * (scripts/convert_wan_to_diffusers.py). The truth is written out below: base + weight · diff, and
 * base + weight · (α/r) · up·down, in float64, rounded once to the tensor's dtype.
 */
import { afterAll, describe, it } from 'vitest';
import { buildSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { WAN, fluxBflTensors, tensor, wanDiffusersTensors, wanOriginalTensors } from './helpers/diffusion-fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';
import { diff, diffLoraCaseSuite, lora, type Change, type DiffLoraCase } from './helpers/diff-lora-case.js';

const rand = seededRandom(20261203);
const temp = tempDirs();
afterAll(temp.removeAll);

const D = 'diffusion_model.';
const R = 4;

const withPrefix = (prefix: string, tensors: FixtureTensor[]) => tensors.map((t) => ({ ...t, name: prefix + t.name }));
const diffusersConfig = { 'config.json': JSON.stringify({ _class_name: 'WanTransformer3DModel', num_layers: 2 }) };

/** A LightX2V distill LoRA's tensors for Wan-named modules, landing on `at(<Wan tensor>)`. */
function lightx2vChanges(at: (wanKey: string) => string, withBiases: boolean): Change[] {
  const out: Change[] = [];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    out.push(
      lora(`${D}${b}.self_attn.q`, R, at(`${b}.self_attn.q.weight`)),
      lora(`${D}${b}.cross_attn.k`, 2 * R, at(`${b}.cross_attn.k.weight`)),
      lora(`${D}${b}.ffn.0`, R, at(`${b}.ffn.0.weight`)),
      diff(`${D}${b}.norm3.diff`, at(`${b}.norm3.weight`)), diff(`${D}${b}.norm3.diff_b`, at(`${b}.norm3.bias`)),
      diff(`${D}${b}.diff_m`, at(`${b}.modulation`)),
    );
    if (withBiases) out.push(diff(`${D}${b}.self_attn.q.diff_b`, at(`${b}.self_attn.q.bias`)), diff(`${D}${b}.ffn.0.diff_b`, at(`${b}.ffn.0.bias`)));
  }
  out.push(lora(`${D}head.head`, R, at('head.head.weight')), diff(`${D}head.diff_m`, at('head.modulation')));
  return out;
}

/** Where diffusers' conversion puts each Wan tensor the changes above name. */
const DIFFUSERS_NAME: Record<string, string> = {
  'self_attn.q.weight': 'attn1.to_q.weight', 'cross_attn.k.weight': 'attn2.to_k.weight', 'ffn.0.weight': 'ffn.net.0.proj.weight',
  'norm3.weight': 'norm2.weight', 'norm3.bias': 'norm2.bias', modulation: 'scale_shift_table',
};
function diffusersKey(wanKey: string): string {
  if (wanKey === 'head.head.weight') return 'proj_out.weight';
  if (wanKey === 'head.modulation') return 'scale_shift_table';
  const m = /^(blocks\.\d+)\.(.+)$/.exec(wanKey)!;
  return `${m[1]}.${DIFFUSERS_NAME[m[2]]}`;
}

const CASES: DiffLoraCase[] = [
  {
    name: 'Wan-AI\'s own file (bare names) ← a LightX2V distill LoRA',
    base: wanOriginalTensors(rand, 'BF16'), baseFile: 'wan2.1_i2v_480p_14B_bf16.safetensors', weight: 1,
    changes: lightx2vChanges((k) => k, true),
  },
  {
    name: 'a checkpoint under `model.diffusion_model.` ← the same LoRA at another strength',
    base: withPrefix('model.diffusion_model.', wanOriginalTensors(rand, 'BF16')), baseFile: 'wan2.1_t2v_14B_saved_by_comfyui.safetensors', weight: 0.6,
    changes: lightx2vChanges((k) => `model.diffusion_model.${k}`, true),
  },
  {
    name: 'diffusers WanTransformer3DModel ← the same LoRA (`modulation` is `scale_shift_table`, the head\'s the top-level one)',
    base: wanDiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: diffusersConfig, weight: -0.75,
    changes: lightx2vChanges(diffusersKey, false),
  },
  {
    name: 'diffusers WanVACETransformer3DModel ← Kijai\'s renamed `<block>.modulation.diff`, ComfyUI\'s `head.modulation.diff`, a VACE block\'s diff_m',
    base: [...wanDiffusersTensors(rand, 'F16'), tensor(rand, 'vace_blocks.0.scale_shift_table', [1, 6, WAN.dim], 'F32')],
    baseFile: 'diffusion_pytorch_model.safetensors', extra: { 'config.json': JSON.stringify({ _class_name: 'WanVACETransformer3DModel', num_layers: 2 }) }, weight: 1.5,
    changes: [
      diff(`${D}blocks.1.modulation.diff`, 'blocks.1.scale_shift_table'), diff(`${D}head.modulation.diff`, 'scale_shift_table'),
      diff(`${D}vace_blocks.0.diff_m`, 'vace_blocks.0.scale_shift_table'),
    ],
  },
  {
    name: 'Wan\'s own file ← diffusers-named table diffs (`scale_shift_table` is `modulation`)',
    base: wanOriginalTensors(rand, 'F16'), baseFile: 'wan2.1_t2v_1.3B_fp16.safetensors', weight: 0.5,
    changes: [diff('transformer.blocks.0.scale_shift_table.diff', 'blocks.0.modulation'), diff('transformer.scale_shift_table.diff', 'head.modulation')],
  },
];

diffLoraCaseSuite(CASES, { rand, rank: R, adapterFile: 'Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors', what: 'merges every diff and LoRA on the tensor it names' });

const backends = mergeBackends({ cpu: 'default' });

// --- refused, with the reason -----------------------------------------------------------------------

describe('table diffs that cannot land', () => {
  const wanBase = () => ({ 'wan2.1_t2v_14B_bf16.safetensors': buildSafetensors(wanOriginalTensors(rand, 'BF16')) });
  const cases: [string, () => Record<string, Uint8Array | string>, FixtureTensor[], RegExp][] = [
    ['a block\'s diff_m shaped like the head\'s table', wanBase, [tensor(rand, `${D}blocks.1.diff_m`, [1, 2, WAN.dim], 'BF16')],
      /module "diffusion_model\.blocks\.1\.modulation": ΔW \(1, 2, 8\) does not fit base blocks\.1\.modulation \(1, 6, 8\)/],
    ['a diff_m of a block the model does not have', wanBase, [tensor(rand, `${D}blocks.7.diff_m`, [1, 6, WAN.dim], 'BF16')],
      /module "diffusion_model\.blocks\.7\.modulation": no matching tensor in the UNet\/transformer/],
    ['a diff_m on a base that is not Wan (FLUX.1)', () => ({ 'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')) }),
      [tensor(rand, `${D}blocks.0.diff_m`, [1, 6, WAN.dim], 'BF16')], /module "diffusion_model\.blocks\.0\.modulation": no matching tensor/],
    ['a diff_m and a `modulation.diff` of one table (two updates, no one rule)', wanBase,
      [tensor(rand, `${D}blocks.0.diff_m`, [1, 6, WAN.dim], 'BF16'), tensor(rand, `${D}blocks.0.modulation.diff`, [1, 6, WAN.dim], 'BF16')],
      /module "diffusion_model\.blocks\.0\.modulation" has two diff tensors \("diffusion_model\.blocks\.0\.diff_m" and "diffusion_model\.blocks\.0\.modulation\.diff"\)/],
    ['a LoRA pair on a table, which is no Linear', wanBase,
      [tensor(rand, `${D}blocks.0.modulation.lora_down.weight`, [R, WAN.dim], 'BF16'), tensor(rand, `${D}blocks.0.modulation.lora_up.weight`, [6, R], 'BF16')],
      /module "diffusion_model\.blocks\.0\.modulation": ΔW \(6, 8\) does not fit base blocks\.0\.modulation \(1, 6, 8\)/],
  ];

  it.each(cases)('%s: one line from the CLI, nothing written, and the same message from the library', async (_what, base, tensors, message) => {
    const adapter = { 'lightx2v_lora.safetensors': buildSafetensors(tensors) };
    await expectRefusedByCliAndLibrary(temp.make, backends.cpu!, base(), adapter, message);
  });
});
