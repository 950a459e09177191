/**
 * Wan 2.1 FLF2V's (first-last-frame-to-video) and SkyReels-V2's learned position embedding of the
 * two frames' CLIP image tokens: Wan's `img_emb.emb_pos` (MLPProj's parameter, (1, 514, 1280) in
 * FLF2V-14B: 2 · 257 tokens of CLIP's width) is diffusers' `condition_embedder.image_embedder.pos_embed`
 * (WanImageEmbedding's parameter, (1, pos_embed_seq_len = 514, image_dim = 1280)), the same tensor
 * under another name (scripts/convert_wan_to_diffusers.py and convert_skyreelsv2_to_diffusers.py
 * rename it, nothing reshaped). It is a parameter, not a module's weight, so only a full diff changes
 * it: ComfyUI's key map names it by its full name, `diffusion_model.img_emb.emb_pos.diff`, and
 * diffusers' name reads `transformer.condition_embedder.image_embedder.pos_embed.diff`; either lands
 * in either naming. The shape here keeps the real rank and structure with small dims: (1, 2 · 7, img).
 * The truth is written out in diff-lora-case: base + weight · diff in float64, rounded once.
 */
import { afterAll, describe, it } from 'vitest';
import { buildSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { WAN, tensor, wanDiffusersTensors, wanOriginalTensors } from './helpers/diffusion-fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';
import { diff, diffLoraCaseSuite, lora, type DiffLoraCase } from './helpers/diff-lora-case.js';

const rand = seededRandom(20261209);
const temp = tempDirs();
afterAll(temp.removeAll);

const D = 'diffusion_model.';
const R = 4;
/** Image tokens per frame (257 in CLIP ViT-H/14 at 224 px); FLF2V has two frames. */
const TOKENS = 7;
const POS_SHAPE = [1, 2 * TOKENS, WAN.img];

const withPrefix = (prefix: string, tensors: FixtureTensor[]) => tensors.map((t) => ({ ...t, name: prefix + t.name }));
/** Wan-AI's Wan2.1-FLF2V-14B-720P file: the I2V tensors and `img_emb.emb_pos`. */
const flf2vOriginal = (dtype: 'BF16' | 'F16' | 'F32') => [...wanOriginalTensors(rand, 'BF16'), tensor(rand, 'img_emb.emb_pos', POS_SHAPE, dtype)];
/** Wan2.1-FLF2V-14B-720P-diffusers' transformer: `image_embedder.pos_embed`. */
const flf2vDiffusers = (dtype: 'BF16' | 'F16' | 'F32') => [
  ...wanDiffusersTensors(rand, 'BF16'), tensor(rand, 'condition_embedder.image_embedder.pos_embed', POS_SHAPE, dtype),
];
const config = (cls: string) => ({
  'config.json': JSON.stringify({ _class_name: cls, image_dim: WAN.img, added_kv_proj_dim: WAN.dim, pos_embed_seq_len: 2 * TOKENS, num_layers: 2 }),
});

const CASES: DiffLoraCase[] = [
  {
    name: 'Wan-AI\'s FLF2V file ← ComfyUI\'s `diffusion_model.img_emb.emb_pos.diff` beside a LoRA on img_emb.proj.1 (same naming)',
    base: flf2vOriginal('BF16'), baseFile: 'wan2.1_flf2v_720p_14B_bf16.safetensors', weight: 0.8,
    changes: [
      diff(`${D}img_emb.emb_pos.diff`, 'img_emb.emb_pos'),
      lora(`${D}img_emb.proj.1`, R, 'img_emb.proj.1.weight'), lora(`${D}blocks.0.cross_attn.k_img`, 2 * R, 'blocks.0.cross_attn.k_img.weight'),
    ],
  },
  {
    name: 'a FLF2V checkpoint under `model.diffusion_model.` ← the ComfyUI diff',
    base: withPrefix('model.diffusion_model.', flf2vOriginal('F32')), baseFile: 'wan2.1_flf2v_720p_14B_saved_by_comfyui.safetensors', weight: -0.5,
    changes: [diff(`${D}img_emb.emb_pos.diff`, 'model.diffusion_model.img_emb.emb_pos')],
  },
  {
    name: 'Wan-AI\'s FLF2V file ← a diffusers-named diff (`image_embedder.pos_embed` is `img_emb.emb_pos`)',
    base: flf2vOriginal('F16'), baseFile: 'wan2.1_flf2v_720p_14B_fp16.safetensors', weight: 1.25,
    changes: [
      diff('transformer.condition_embedder.image_embedder.pos_embed.diff', 'img_emb.emb_pos'),
      diff('transformer.condition_embedder.image_embedder.norm1.diff', 'img_emb.proj.0.weight'),
    ],
  },
  {
    name: 'diffusers WanTransformer3DModel (FLF2V) ← the ComfyUI diff (`img_emb.emb_pos` is `image_embedder.pos_embed`)',
    base: flf2vDiffusers('BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('WanTransformer3DModel'), weight: 0.6,
    changes: [
      diff(`${D}img_emb.emb_pos.diff`, 'condition_embedder.image_embedder.pos_embed'),
      lora(`${D}img_emb.proj.3`, R, 'condition_embedder.image_embedder.ff.net.2.weight'),
    ],
  },
  {
    name: 'diffusers SkyReelsV2Transformer3DModel (FLF2V) ← the ComfyUI diff',
    base: flf2vDiffusers('F32'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('SkyReelsV2Transformer3DModel'), weight: 1,
    changes: [diff(`${D}img_emb.emb_pos.diff`, 'condition_embedder.image_embedder.pos_embed')],
  },
];

diffLoraCaseSuite(CASES, { rand, rank: R, adapterFile: 'wan_flf2v_full_diff.safetensors', what: 'merges the position-embedding diff on the tensor it names' });

const backends = mergeBackends({ cpu: 'default' });

describe('position-embedding diffs that cannot land', () => {
  const cases: [string, () => Record<string, Uint8Array | string>, FixtureTensor[], RegExp][] = [
    ['on an I2V model, which has no emb_pos', () => ({ 'wan2.1_i2v_480p_14B_bf16.safetensors': buildSafetensors(wanOriginalTensors(rand, 'BF16')) }),
      [tensor(rand, `${D}img_emb.emb_pos.diff`, POS_SHAPE, 'BF16')], /module "diffusion_model\.img_emb\.emb_pos": no matching tensor/],
    ['shaped for one frame\'s tokens', () => ({ 'wan2.1_flf2v_720p_14B_bf16.safetensors': buildSafetensors(flf2vOriginal('BF16')) }),
      [tensor(rand, 'transformer.condition_embedder.image_embedder.pos_embed.diff', [1, TOKENS, WAN.img], 'BF16')],
      /module "transformer\.condition_embedder\.image_embedder\.pos_embed": ΔW \(1, 7, 10\) does not fit base img_emb\.emb_pos \(1, 14, 10\)/],
  ];

  it.each(cases)('%s: one line from the CLI, nothing written, and the same message from the library', async (_what, base, tensors, message) => {
    const adapter = { 'wan_flf2v_full_diff.safetensors': buildSafetensors(tensors) };
    await expectRefusedByCliAndLibrary(temp.make, backends.cpu!, base(), adapter, message);
  });
});
