/**
 * HiDream-O1-Image: a Qwen3-VL-8B whose decoder also denoises 32×32 RGB patches. Its checkpoint is a
 * transformers Qwen3-VL one with the denoising modules beside (`model.language_model.layers.N.self_attn.q_proj`,
 * `model.visual.blocks.N.attn.qkv`, `model.t_embedder1.mlp.0`, `model.x_embedder.proj1`, `model.final_layer2.linear`,
 * `lm_head`); diffusers' HiDreamO1Transformer2DModel wraps the same modules under the same names (`self.model`,
 * `self.lm_head`), and ComfyUI's HiDreamO1Transformer holds them without the `model.` (`language_model.layers.N…`,
 * `t_embedder1.mlp.0`), mapping a LoRA's `model.` + name to `diffusion_model.` + name (model_lora_keys_unet,
 * HiDreamO1), and a kohya `lora_unet_` name to the same. No module is renamed; on ComfyUI's names the
 * original's `model.` is taken off (the hidream-o1 layout), as ComfyUI's key map does.
 * Bases: the original single file, a checkpoint ComfyUI saved (`model.diffusion_model.` + ComfyUI's names)
 * and a diffusion model file in ComfyUI's names (no prefix).
 * Sizes scaled down (hidden 4096 → 16, 32 → 4 query and 8 → 2 key/value heads of 4, intermediate 12288 → 24,
 * 32×32×3 patch 3072 → 12, bottleneck hidden / 4); file to file on the CPU and on WebGPU, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { expectLayoutNeeded, loraCaseSuite, planProblemsOf, type LoraCase } from './helpers/lora-case.js';
import { hidreamO1 } from '../src/formats/layouts/hidream-o1.js';

const rand = seededRandom(20261210);
const H = 16, KV = 8, FF = 24, PATCH = 12, FREQ = 8, VOCAB = 20;

/** Each Linear of the denoiser, in ComfyUI's names (the original's without `model.`): [name, out, in, has a bias]. */
const LINEARS: [string, number, number, boolean][] = [
  ...[0, 1].flatMap((i): [string, number, number, boolean][] => [
    [`language_model.layers.${i}.self_attn.q_proj`, H, H, false], [`language_model.layers.${i}.self_attn.k_proj`, KV, H, false],
    [`language_model.layers.${i}.self_attn.v_proj`, KV, H, false], [`language_model.layers.${i}.self_attn.o_proj`, H, H, false],
    [`language_model.layers.${i}.mlp.gate_proj`, FF, H, false], [`language_model.layers.${i}.mlp.up_proj`, FF, H, false],
    [`language_model.layers.${i}.mlp.down_proj`, H, FF, false],
  ]),
  ['t_embedder1.mlp.0', H, FREQ, true], ['t_embedder1.mlp.2', H, H, true],
  ['x_embedder.proj1', H / 4, PATCH, false], ['x_embedder.proj2', H, H / 4, true], ['final_layer2.linear', PATCH, H, true],
];

function weights(prefix: string): FixtureTensor[] {
  const out: FixtureTensor[] = [];
  for (const [name, rows, cols, bias] of LINEARS) {
    out.push(tensor(rand, `${prefix}${name}.weight`, [rows, cols], 'BF16'));
    if (bias) out.push(tensor(rand, `${prefix}${name}.bias`, [rows], 'BF16'));
  }
  for (const i of [0, 1]) {
    for (const n of ['input_layernorm', 'post_attention_layernorm']) out.push(tensor(rand, `${prefix}language_model.layers.${i}.${n}.weight`, [H], 'BF16'));
    for (const n of ['q_norm', 'k_norm']) out.push(tensor(rand, `${prefix}language_model.layers.${i}.self_attn.${n}.weight`, [4], 'BF16'));
  }
  out.push(tensor(rand, `${prefix}language_model.norm.weight`, [H], 'BF16'), tensor(rand, `${prefix}language_model.embed_tokens.weight`, [VOCAB, H], 'BF16'));
  return out;
}

const ORIGINAL = 'hidream_o1_image.safetensors';
const originalFile = { [ORIGINAL]: buildSafetensors([...weights('model.'), tensor(rand, 'lm_head.weight', [VOCAB, H], 'BF16')]) };
const COMFY = 'hidream_o1_image_comfy.safetensors';
const comfyFile = { [COMFY]: buildSafetensors(weights('model.diffusion_model.')) };
const COMFY_BARE = 'hidream_o1_image_bf16.safetensors';
const comfyBare = { [COMFY_BARE]: buildSafetensors(weights('')) };

const peft = (prefix: string, basePrefix: string): LoraSpec[] => LINEARS.map(([n, rows, cols]) =>
  peftSpec(`${prefix}${n}`, 2, rows, cols, [{ key: `${basePrefix}${n}.weight` }], 1));
const kohya = (basePrefix: string): LoraSpec[] => LINEARS.filter(([n]) => n.startsWith('language_model.')).map(([n, rows, cols]) =>
  kohyaSpec(`lora_unet_${n.replace(/\./g, '_')}`, 4, rows, cols, [{ key: `${basePrefix}${n}.weight` }], 8));

const CASES: LoraCase[] = [
  {
    name: 'HiDream-O1 original checkpoint ← a LoRA in its own names (model.language_model.layers.0.self_attn.q_proj, as ComfyUI reads them)',
    base: originalFile, baseName: ORIGINAL,
    adapters: [{ file: 'hidream-o1-lora.safetensors', specs: peft('model.', 'model.'), weight: 0.8 }],
  },
  {
    name: 'HiDream-O1 original checkpoint ← ComfyUI-named (diffusion_model.) and kohya lora_unet_ LoRAs',
    base: originalFile, baseName: ORIGINAL,
    adapters: [
      { file: 'hidream-o1-comfy.safetensors', specs: peft('diffusion_model.', 'model.'), weight: 1 },
      { file: 'hidream-o1-kohya.safetensors', specs: kohya('model.'), weight: -0.4 },
    ],
  },
  {
    name: 'HiDream-O1 checkpoint ComfyUI saved (model.diffusion_model.) ← kohya lora_unet_ and ComfyUI-named (diffusion_model.) LoRAs',
    base: comfyFile, baseName: COMFY,
    adapters: [
      { file: 'hidream-o1-kohya.safetensors', specs: kohya('model.diffusion_model.'), weight: 1 },
      { file: 'hidream-o1-comfy.safetensors', specs: peft('diffusion_model.', 'model.diffusion_model.'), weight: 0.3 },
    ],
  },
  {
    name: 'HiDream-O1 diffusion model file in ComfyUI\'s names (language_model.layers.0…, no prefix) ← a LoRA in the original names (model. taken off as a prefix the file lacks)',
    base: comfyBare, baseName: COMFY_BARE,
    adapters: [{ file: 'hidream-o1-lora.safetensors', specs: peft('model.', ''), weight: -1.3 }],
  },
];
/** The original names on ComfyUI's: `model.` taken off, as ComfyUI's key map does (the hidream-o1 layout). */
const LAYOUT_CASES: LoraCase[] = [
  {
    name: 'HiDream-O1 checkpoint ComfyUI saved (model.diffusion_model.) ← a LoRA in the original names (model.language_model…)',
    base: comfyFile, baseName: COMFY,
    adapters: [{ file: 'hidream-o1-lora.safetensors', specs: peft('model.', 'model.diffusion_model.'), weight: 0.5 }],
  },
];

loraCaseSuite(CASES, rand, 'BF16');
const { prepare } = loraCaseSuite(LAYOUT_CASES, rand, 'BF16');

describe('HiDream-O1 names', () => {
  it('the hidream-o1 layout places the original names on ComfyUI\'s; without it they are refused', async () => {
    await expectLayoutNeeded(prepare, LAYOUT_CASES, hidreamO1, { only: true });
  });

  it('a module under model. that is none of HiDream-O1\'s, on ComfyUI\'s names, is no matching tensor', async () => {
    const problems = await planProblemsOf(comfyFile, COMFY, [
      peftSpec('model.language_model.layers.0.self_attn.q_proj', 2, H, H, [], 1),
      peftSpec('model.lm_head', 2, VOCAB, H, [], 1), peftSpec('model.language_model.layers.0.self_attn.qkv_proj', 2, H + 2 * KV, H, [], 1),
    ], rand);
    expect(problems).toHaveLength(2);
    expect(problems).toEqual([
      'lora.safetensors: module "model.lm_head": no matching tensor in the base model',
      'lora.safetensors: module "model.language_model.layers.0.self_attn.qkv_proj": no matching tensor in the base model',
    ]);
  });

  it('a decoder layer past the base\'s last is refused by name', async () => {
    const problems = await planProblemsOf(originalFile, ORIGINAL, [peftSpec('model.language_model.layers.2.self_attn.q_proj', 2, H, H, [], 1)], rand);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^lora\.safetensors: module "model\.language_model\.layers\.2\.self_attn\.q_proj": /);
  });
});
