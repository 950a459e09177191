/**
 * Key forms ComfyUI reads that name a model's tensors other than by `<module>.weight`, on the
 * checkpoints people hold, against float64 truth on the CPU and on WebGPU:
 * - a parameter diffed whole (`diffusion_model.transformer_blocks.0.scale_shift_table.diff`, the
 *   model's top-level `diffusion_model.scale_shift_table.diff`): ComfyUI's model_lora_keys_unet
 *   maps every `diffusion_model.` key that is not a `.weight` by its own name, and its "Extract and
 *   Save Lora" writes such diffs; W += strength · diff. LTX-Video's and LTX-2's adaLN tables are
 *   parameters of each block and of the model, so their names end alike;
 * - Wan "Fun" LoRAs (`lora_unet__blocks_0_cross_attn_k`, kohya form with a doubled `_`), which
 *   ComfyUI's lora_convert.py reads as `lora_unet_` names: W += strength · (α/r) · up·down.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { tensor, wanOriginalTensors } from './helpers/diffusion-fixtures.js';
import { ltx2OriginalTensors, ltxOriginalTensors } from './helpers/dit-fixtures.js';
import { mergeBackends, refusalsInMemory } from './helpers/merge-backends.js';
import { diff, diffLoraCaseSuite, lora, type DiffLoraCase } from './helpers/diff-lora-case.js';

const rand = seededRandom(20261206);
const R = 4;


const dm = 'model.diffusion_model.';

/** SD3.5 Medium's MMDiT (1536 wide, 24 heads of 64; here 8 wide, heads of 4), under `model.diffusion_model.`, F16. */
function sd3Tensors(): FixtureTensor[] {
  const h = 8;
  const t = (name: string, shape: number[]) => tensor(rand, `${dm}${name}`, shape, 'F16');
  return [
    t('x_embedder.proj.weight', [h, 16, 2, 2]), t('pos_embed', [1, 16, h]),
    t('joint_blocks.0.x_block.attn.qkv.weight', [3 * h, h]), t('joint_blocks.0.x_block.attn.ln_q.weight', [h / 2]),
    t('joint_blocks.0.x_block.attn.proj.weight', [h, h]), t('joint_blocks.0.x_block.attn.proj.bias', [h]),
    t('final_layer.linear.weight', [16, h]), t('final_layer.linear.bias', [16]),
  ];
}
const CASES: DiffLoraCase[] = [
  {
    name: 'LTX-Video 0.9.x, Lightricks\' file ← ComfyUI-extracted diffs of the adaLN tables, block and top-level',
    base: ltxOriginalTensors(rand, 'BF16'), baseFile: 'ltx-video-2b-v0.9.5.safetensors', weight: 0.8,
    changes: [
      diff('diffusion_model.transformer_blocks.0.scale_shift_table.diff', `${dm}transformer_blocks.0.scale_shift_table`),
      diff('diffusion_model.scale_shift_table.diff', `${dm}scale_shift_table`),
    ],
  },
  {
    name: 'LTX-2 19B, Lightricks\' fp8 file ← diffs of a block\'s video and audio tables, its audio-video table and the model\'s',
    base: ltx2OriginalTensors(rand, 'F8_E4M3'), baseFile: 'ltx-2-19b-dev-fp8.safetensors', weight: -0.5,
    changes: [
      diff('diffusion_model.transformer_blocks.1.scale_shift_table.diff', `${dm}transformer_blocks.1.scale_shift_table`),
      diff('diffusion_model.transformer_blocks.1.audio_scale_shift_table.diff', `${dm}transformer_blocks.1.audio_scale_shift_table`),
      diff('diffusion_model.transformer_blocks.0.scale_shift_table_a2v_ca_video.diff', `${dm}transformer_blocks.0.scale_shift_table_a2v_ca_video`),
      diff('diffusion_model.audio_scale_shift_table.diff', `${dm}audio_scale_shift_table`),
    ],
  },
  {
    name: 'SD3.5, Stability\'s file ← diffs of the positional embedding, a q/k norm\'s scale and biases, ComfyUI-named',
    base: sd3Tensors(), baseFile: 'sd3.5_medium.safetensors', weight: 1.25,
    changes: [
      diff('diffusion_model.pos_embed.diff', `${dm}pos_embed`),
      diff('diffusion_model.joint_blocks.0.x_block.attn.ln_q.diff', `${dm}joint_blocks.0.x_block.attn.ln_q.weight`),
      diff('diffusion_model.joint_blocks.0.x_block.attn.proj.diff_b', `${dm}joint_blocks.0.x_block.attn.proj.bias`),
      // A bias by its own name, as ComfyUI's key map names every key that is not a `.weight`.
      diff('diffusion_model.final_layer.linear.bias.diff', `${dm}final_layer.linear.bias`),
    ],
  },
  {
    name: 'Wan 2.1, Comfy-Org\'s fp8 file ← a Wan "Fun" LoRA (`lora_unet__`)',
    base: wanOriginalTensors(rand, 'F8_E4M3'), baseFile: 'wan2.1_t2v_14B_fp8_e4m3fn.safetensors', weight: 1,
    changes: [
      lora('lora_unet__blocks_0_cross_attn_k', R, 'blocks.0.cross_attn.k.weight'),
      lora('lora_unet__blocks_1_self_attn_o', 2 * R, 'blocks.1.self_attn.o.weight'),
      lora('lora_unet__blocks_1_ffn_2', R, 'blocks.1.ffn.2.weight'),
    ],
  },
];

diffLoraCaseSuite(CASES, { rand, rank: R, adapterFile: 'lora.safetensors', what: 'lands each change on the tensor it names, the rest copied' });

const backends = mergeBackends({ cpu: 'default' });

describe('named so, refused', () => {
  it('a diff of `<module>.weight` by that name, which ComfyUI does not map (it maps `<module>`)', async () => {
    const problems = await refusalsInMemory({
      backend: backends.cpu!, base: { 'sd3.5_medium.safetensors': buildSafetensors(sd3Tensors()) },
      adapters: [{ files: { 'lora.safetensors': buildSafetensors([tensor(rand, 'diffusion_model.joint_blocks.0.x_block.attn.ln_q.weight.diff', [4], 'BF16')]) } }],
    });
    expect(problems).toEqual([expect.stringMatching(/module "diffusion_model\.joint_blocks\.0\.x_block\.attn\.ln_q\.weight": no matching tensor/)]);
  });
});
