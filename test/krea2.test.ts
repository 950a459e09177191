/**
 * Krea 2 LoRAs in the original naming (`diffusion_model.blocks.0.attn.wq`, as Krea 2's reference
 * trainer and ComfyUI write them; lora_A / lora_B, no α: scale 1, as diffusers loads them) onto
 * diffusers' Krea2Transformer2DModel, and diffusers-named LoRAs (`transformer.transformer_blocks.0.attn.to_q`,
 * as train_dreambooth_lora_krea2.py saves them) onto a checkpoint in the original naming. Where each
 * module lands is written here by hand from diffusers' `_convert_non_diffusers_krea2_lora_to_diffusers`
 * (`wq`/`wk`/`wv`/`wo`/`gate` → `to_q`/`to_k`/`to_v`/`to_out.0`/`to_gate`, `mlp.` → `ff.`, `blocks` →
 * `transformer_blocks`, `txtfusion` → `text_fusion`, `first` → `img_in`, `tmlp.0` → `time_embed.linear_1` …).
 * Shapes are Krea2Transformer2DModel's with its ratios kept and sizes scaled down (hidden 6144 → 16 with
 * 48 → 4 heads and 12 → 2 key/value heads, so k and v are a quarter of q's rows; text width 2560 → 8;
 * 12 tapped text layers → 3). The original checkpoint's other tensors (norms, modulation tables) are not
 * named by any LoRA converter and are left out of the fixture. File to file on the CPU and on WebGPU,
 * against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { krea2 } from '../src/formats/layouts/krea2.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { loraCaseSuite, expectLayoutNeeded, planProblemsOf, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261207);
const H = 16, KV = 8, FF = 24, T = 8, TFF = 12, LAYERS = 3, IN = 4, TEMB = 6;

/** Each Linear: [original name, diffusers name, out, in]. */
const block = (o: string, d: string, width: number, kv: number, ff: number): [string, string, number, number][] => [
  [`${o}.attn.wq`, `${d}.attn.to_q`, width, width], [`${o}.attn.wk`, `${d}.attn.to_k`, kv, width], [`${o}.attn.wv`, `${d}.attn.to_v`, kv, width],
  [`${o}.attn.wo`, `${d}.attn.to_out.0`, width, width], [`${o}.attn.gate`, `${d}.attn.to_gate`, width, width],
  [`${o}.mlp.gate`, `${d}.ff.gate`, ff, width], [`${o}.mlp.up`, `${d}.ff.up`, ff, width], [`${o}.mlp.down`, `${d}.ff.down`, width, ff],
];
const LINEARS: [string, string, number, number][] = [
  ...[0, 1].flatMap((i) => block(`blocks.${i}`, `transformer_blocks.${i}`, H, KV, FF)),
  ...block('txtfusion.layerwise_blocks.0', 'text_fusion.layerwise_blocks.0', T, T, TFF),
  ...block('txtfusion.refiner_blocks.0', 'text_fusion.refiner_blocks.0', T, T, TFF),
  ['first', 'img_in', H, IN], ['last.linear', 'final_layer.linear', IN, H], ['tmlp.0', 'time_embed.linear_1', H, TEMB], ['tmlp.2', 'time_embed.linear_2', H, H],
  ['tproj.1', 'time_mod_proj', 6 * H, H], ['txtmlp.1', 'txt_in.linear_1', H, T], ['txtmlp.3', 'txt_in.linear_2', H, H], ['txtfusion.projector', 'text_fusion.projector', 1, LAYERS],
];
/** Biases where diffusers' model has them (the embedders and the final layer); the attention and SwiGLU have none. */
const BIASED = new Set(['img_in', 'final_layer.linear', 'time_embed.linear_1', 'time_embed.linear_2', 'time_mod_proj', 'txt_in.linear_1', 'txt_in.linear_2']);

function weights(naming: 'original' | 'diffusers'): FixtureTensor[] {
  const out: FixtureTensor[] = [];
  for (const [o, d, rows, cols] of LINEARS) {
    const name = naming === 'original' ? o : d;
    out.push(tensor(rand, `${name}.weight`, [rows, cols], 'BF16'));
    if (BIASED.has(d)) out.push(tensor(rand, `${name}.bias`, [rows], 'BF16'));
  }
  if (naming === 'diffusers') {
    for (const i of [0, 1]) out.push(tensor(rand, `transformer_blocks.${i}.scale_shift_table`, [6, H], 'F32'), tensor(rand, `transformer_blocks.${i}.attn.norm_q.weight`, [4], 'F32'));
    out.push(tensor(rand, 'final_layer.scale_shift_table', [2, H], 'F32'), tensor(rand, 'txt_in.norm.weight', [T], 'F32'));
  }
  return out;
}

const diffusersFolder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors(weights('diffusers')),
  'config.json': JSON.stringify({
    _class_name: 'Krea2Transformer2DModel', _diffusers_version: '0.38.0.dev0', in_channels: IN, num_layers: 2, attention_head_dim: 4, num_attention_heads: 4,
    num_key_value_heads: 2, intermediate_size: FF, timestep_embed_dim: TEMB, text_hidden_dim: T, num_text_layers: LAYERS, text_num_attention_heads: 2,
    text_num_key_value_heads: 2, text_intermediate_size: TFF, num_layerwise_text_blocks: 1, num_refiner_text_blocks: 1, axes_dims_rope: [2, 1, 1],
  }),
};
const ORIGINAL = 'krea2.safetensors';
const originalFile = { [ORIGINAL]: buildSafetensors(weights('original')) };

/** Every Linear, named one way, landing on the other naming's tensor. */
const specs = (prefix: string, from: 'original' | 'diffusers', basePrefix = ''): LoraSpec[] => LINEARS.map(([o, d, rows, cols]) =>
  peftSpec(`${prefix}${from === 'original' ? o : d}`, 2, rows, cols, [{ key: `${basePrefix}${from === 'original' ? d : o}.weight` }], 1));

const CASES: LoraCase[] = [
  {
    name: 'diffusers Krea2Transformer2DModel ← a LoRA in the original naming (diffusion_model.blocks.0.attn.wq, …)',
    base: diffusersFolder, baseName: 'transformer',
    adapters: [{ file: 'krea2-lora.safetensors', specs: specs('diffusion_model.', 'original'), weight: 0.7 }],
  },
  {
    name: 'diffusers Krea2Transformer2DModel ← ai-toolkit\'s lone base_model.model. file (no adapter_config.json: α = r per module, as diffusers reads it)',
    base: diffusersFolder, baseName: 'transformer',
    adapters: [{
      file: 'krea2-aitoolkit.safetensors', weight: 0.9, specs: [
        peftSpec('base_model.model.blocks.0.attn.wq', 4, H, H, [{ key: 'transformer_blocks.0.attn.to_q.weight' }], 1),
        peftSpec('base_model.model.blocks.1.mlp.down', 2, H, FF, [{ key: 'transformer_blocks.1.ff.down.weight' }], 1),
        peftSpec('base_model.model.txtfusion.refiner_blocks.0.attn.gate', 4, T, T, [{ key: 'text_fusion.refiner_blocks.0.attn.to_gate.weight' }], 1),
        peftSpec('base_model.model.tmlp.0', 8, H, TEMB, [{ key: 'time_embed.linear_1.weight' }], 1),
        peftSpec('base_model.model.first', 4, H, IN, [{ key: 'img_in.weight' }], 1),
      ],
    }],
  },
  {
    name: 'Krea 2 checkpoint in the original naming ← a LoRA in diffusers\' names (transformer.transformer_blocks.0.attn.to_q, …)',
    base: originalFile, baseName: ORIGINAL,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: specs('transformer.', 'diffusers'), weight: -1.2 }],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('Krea 2 names', () => {
  it('the krea2 layout renames both ways; without it those modules are refused', async () => {
    await expectLayoutNeeded(prepare, CASES, krea2, { only: true });
  });

  it('a block past the base\'s last and a module no converter renames are no matching tensor', async () => {
    const problems = await planProblemsOf(diffusersFolder, 'transformer', [
      peftSpec('diffusion_model.blocks.2.attn.wq', 2, H, H, [], 1),
      peftSpec('diffusion_model.blocks.0.adaLN', 2, H, H, [], 1),
    ], rand);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^lora\.safetensors: module "diffusion_model\.blocks\.2\.attn\.wq": /);
    expect(problems[1]).toMatch(/^lora\.safetensors: module "diffusion_model\.blocks\.0\.adaLN": no matching tensor/);
  });

  it('a lone base_model.model. file with a tensor diffusers\' Krea 2 converter does not carry (an .alpha) is still refused for its missing config', async () => {
    const spec = peftSpec('base_model.model.blocks.0.attn.wq', 2, H, H, [], 1);
    await expect(planProblemsOf(diffusersFolder, 'transformer', [{ ...spec, extra: [{ name: 'base_model.model.blocks.0.attn.wq.alpha', dtype: 'F32', shape: [], data: [4] }] }], rand))
      .rejects.toThrow('lora.safetensors: looks like a PEFT adapter but adapter_config.json is missing (it holds r and lora_alpha)');
  });
});
