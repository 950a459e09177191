/**
 * OmniGen2: one naming everywhere. VectorSpaceLab's OmniGen2Transformer2DModel (the `transformer/` folder
 * of OmniGen2/OmniGen2) and ComfyUI's `comfy/ldm/omnigen/omnigen2.py` name their modules alike
 * (`layers.N.attn.to_q`, `noise_refiner.N.feed_forward.linear_1`, `context_refiner.N.attn.to_out.0`,
 * `ref_image_refiner.N.norm1.linear`, `x_embedder`, `time_caption_embed.caption_embedder.1`), so no LoRA form
 * needs a rename:
 * - OmniGen2's own LoRA fine-tuning (convert_ckpt_to_hf_format.py): PEFT on to_q / to_k / to_v / to_out.0 at
 *   lora_alpha = r, saved by save_lora_weights as `transformer.` + the names (pytorch_lora_weights.safetensors);
 * - ai-toolkit (convert_lora_weights_before_save): the same names under `diffusion_model.`, for ComfyUI, which
 *   maps them, the bare names (model_lora_keys_unet, Omnigen2) and kohya `lora_unet_` names to `diffusion_model.`.
 * Bases: the diffusers folder, and a checkpoint in the same names under ComfyUI's `model.diffusion_model.`.
 * Sizes scaled down (hidden 2304 → 16 with 24 → 4 heads and 8 → 2 key/value heads, so k and v are a quarter
 * of q's rows; text 2048 → 12); file to file on the CPU and on WebGPU, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { loraCaseSuite, planProblemsOf, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261209);
const H = 16, KV = 4, FF = 40, TEXT = 12, TIME = 16, FREQ = 8, PATCH = 8, HEAD = 4;

const block = (p: string, modulation: boolean): [string, number, number, boolean][] => [
  [`${p}.attn.to_q`, H, H, false], [`${p}.attn.to_k`, KV, H, false], [`${p}.attn.to_v`, KV, H, false], [`${p}.attn.to_out.0`, H, H, false],
  [`${p}.feed_forward.linear_1`, FF, H, false], [`${p}.feed_forward.linear_2`, H, FF, false], [`${p}.feed_forward.linear_3`, FF, H, false],
  ...(modulation ? [[`${p}.norm1.linear`, 4 * H, TIME, true] as [string, number, number, boolean]] : []),
];
/** Each Linear: [name, out, in, has a bias]. */
const LINEARS: [string, number, number, boolean][] = [
  ['x_embedder', H, PATCH, true], ['ref_image_patch_embedder', H, PATCH, true],
  ['time_caption_embed.timestep_embedder.linear_1', TIME, FREQ, true], ['time_caption_embed.timestep_embedder.linear_2', TIME, TIME, true],
  ['time_caption_embed.caption_embedder.1', H, TEXT, true],
  ...block('noise_refiner.0', true), ...block('ref_image_refiner.0', true), ...block('context_refiner.0', false),
  ...block('layers.0', true), ...block('layers.1', true),
  ['norm_out.linear_1', H, TIME, true], ['norm_out.linear_2', PATCH, H, true],
];

function weights(prefix = ''): FixtureTensor[] {
  const out: FixtureTensor[] = [];
  for (const [name, rows, cols, bias] of LINEARS) {
    out.push(tensor(rand, `${prefix}${name}.weight`, [rows, cols], 'BF16'));
    if (bias) out.push(tensor(rand, `${prefix}${name}.bias`, [rows], 'BF16'));
  }
  for (const b of ['noise_refiner.0', 'ref_image_refiner.0', 'context_refiner.0', 'layers.0', 'layers.1']) {
    out.push(tensor(rand, `${prefix}${b}.attn.norm_q.weight`, [HEAD], 'BF16'), tensor(rand, `${prefix}${b}.attn.norm_k.weight`, [HEAD], 'BF16'));
    for (const n of ['ffn_norm1', 'norm2', 'ffn_norm2', b.startsWith('context') ? 'norm1' : 'norm1.norm']) out.push(tensor(rand, `${prefix}${b}.${n}.weight`, [H], 'BF16'));
  }
  out.push(tensor(rand, `${prefix}time_caption_embed.caption_embedder.0.weight`, [TEXT], 'BF16'), tensor(rand, `${prefix}image_index_embedding`, [5, H], 'BF16'));
  return out;
}

const diffusersFolder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors(weights()),
  'config.json': JSON.stringify({
    _class_name: 'OmniGen2Transformer2DModel', _diffusers_version: '0.33.1', patch_size: 2, in_channels: 2, hidden_size: H, num_layers: 2,
    num_refiner_layers: 1, num_attention_heads: 4, num_kv_heads: 1, multiple_of: 8, norm_eps: 1e-5, axes_dim_rope: [2, 1, 1], axes_lens: [300, 512, 512],
    text_feat_dim: TEXT, timestep_scale: 1000,
  }),
};
const COMFY = 'omnigen2_fp16.safetensors';
const comfyFile = { [COMFY]: buildSafetensors(weights('model.diffusion_model.')) };

const ATTENTION = LINEARS.filter(([n]) => /\.attn\.to_(q|k|v|out\.0)$/.test(n));
const peft = (prefix: string, basePrefix = '', list = LINEARS): LoraSpec[] => list.map(([n, rows, cols]) =>
  peftSpec(`${prefix}${n}`, 2, rows, cols, [{ key: `${basePrefix}${n}.weight` }], 1));

const CASES: LoraCase[] = [
  {
    name: 'diffusers OmniGen2Transformer2DModel ← OmniGen2\'s own LoRA (transformer. + the attention projections)',
    base: diffusersFolder, baseName: 'transformer',
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: peft('transformer.', '', ATTENTION), weight: 1 }],
  },
  {
    name: 'diffusers OmniGen2Transformer2DModel ← ai-toolkit LoRA (diffusion_model., every Linear)',
    base: diffusersFolder, baseName: 'transformer',
    adapters: [{ file: 'omnigen2-aitoolkit.safetensors', specs: peft('diffusion_model.'), weight: 0.75 }],
  },
  {
    name: 'OmniGen2 checkpoint ComfyUI saved (model.diffusion_model.) ← OmniGen2\'s own, ai-toolkit\'s and kohya lora_unet_ LoRAs',
    base: comfyFile, baseName: COMFY,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: peft('transformer.', 'model.diffusion_model.', ATTENTION), weight: 1 },
      { file: 'omnigen2-aitoolkit.safetensors', specs: peft('diffusion_model.', 'model.diffusion_model.'), weight: -0.5 },
      {
        file: 'omnigen2-kohya.safetensors', weight: 0.6,
        specs: ATTENTION.map(([n, rows, cols]) => kohyaSpec(`lora_unet_${n.replace(/\./g, '_')}`, 4, rows, cols, [{ key: `model.diffusion_model.${n}.weight` }], 2)),
      },
    ],
  },
];

loraCaseSuite(CASES, rand, 'BF16');

describe('OmniGen2 names', () => {
  it('Lumina 2\'s original names (attention.qkv), which no OmniGen2 tool writes, are no matching tensor', async () => {
    const problems = await planProblemsOf(diffusersFolder, 'transformer', [
      peftSpec('diffusion_model.layers.0.attention.qkv', 2, H + 2 * KV, H, [], 1),
      peftSpec('transformer.layers.2.attn.to_q', 2, H, H, [], 1),
    ], rand);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^lora\.safetensors: module "diffusion_model\.layers\.0\.attention\.qkv": /);
    expect(problems[1]).toMatch(/^lora\.safetensors: module "transformer\.layers\.2\.attn\.to_q": /);
  });
});
