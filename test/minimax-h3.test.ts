/**
 * MiniMax-H3 LoRAs in the original checkpoint's names onto diffusers' MiniMaxH3Transformer3DModel:
 * ai-toolkit's (`diffusion_model.blocks.0.attn.qkv_proj.lora_A.weight`, no α: scale 1), musubi-tuner's
 * (`lora_unet_blocks_1_attn_qkv_proj.lora_down.weight` with `.alpha`: α/r) and a bare-named file whose
 * `__metadata__` `alpha` is every module's α (lightx2v's: α/r). Where each module lands is written here by
 * hand from diffusers' `_convert_non_diffusers_minimax_h3_lora_to_diffusers`: `qkv_proj`'s ΔW rows in three
 * equal blocks onto `to_q`, `to_k`, `to_v`; `mlp.fc1` (`[gate; value]`) onto `ff.net.0.proj` (`[value; gate]`)
 * with its halves swapped; `out_proj` → `to_out.0`, `fc2` → `ff.net.2`, `blocks` → `transformer_blocks`,
 * `token_refiner.blocks` → `token_refiner.refiner_blocks`, `final_layer.video_out` → `proj_out`, … Shapes are
 * MiniMaxH3Transformer3DModel's (scripts/convert_minimax_h3_to_diffusers.py's key plan) scaled down: hidden
 * 5376 → 8 (2 heads of 4), ffn 14336 → 12, the AdaLN projection 6·3·hidden rows, bf16 with the embedders and
 * output projections float32 as the checkpoint ships them. File to file on the CPU and on WebGPU, against
 * float64 truth. DiffSynth-Studio's files (peft's `.default.` infix) have their per-head interleaved qkv_proj
 * de-interleaved as diffusers does (128-wide heads); a fused qkv_proj onto the original checkpoint is refused.
 */
import { describe, expect, it } from 'vitest';
import { combineAdapters } from '../src/adapter-ops/combine.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import { openAdapter } from '../src/formats/adapter.js';
import { minimaxH3 } from '../src/formats/layouts/minimax-h3.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { kohyaSpec, loraTensors, peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { loraCaseSuite, expectLayoutNeeded, planProblemsOf, type LoraCase } from './helpers/lora-case.js';
import { PIXART, pixartOriginalTensors } from './helpers/auraflow-pixart-fixtures.js';
import { onePipelineLora } from './helpers/pipeline-merge.js';

const rand = seededRandom(20261208);
const H = 8, HD = 4, FF = 12, P = 16, A = 4, TD = 6, F = 4, TEH = 8, TE = 4;

/** The diffusers transformer's tensors: [name, shape, dtype, bias]. */
function transformer(): FixtureTensor[] {
  const out: FixtureTensor[] = [];
  const add = (name: string, shape: number[], dtype: 'BF16' | 'F32', bias = false) => {
    out.push(tensor(rand, `${name}.weight`, shape, dtype));
    if (bias) out.push(tensor(rand, `${name}.bias`, [shape[0]], dtype));
  };
  add('proj_in', [H, P], 'F32', true);
  add('audio_proj_in', [H, A], 'F32', true);
  add('context_embedder', [H, TD], 'BF16', true);
  add('time_embedder.linear_1', [TEH, F], 'F32', true);
  add('time_embedder.linear_2', [TE, TEH], 'F32', true);
  for (const [stack, adaln] of [['transformer_blocks', true], ['token_refiner.refiner_blocks', false]] as const) {
    for (const i of [0, 1]) {
      const b = `${stack}.${i}`;
      add(`${b}.norm1`, [H], 'BF16');
      add(`${b}.norm2`, [H], 'BF16');
      for (const p of ['to_q', 'to_k', 'to_v']) add(`${b}.attn.${p}`, [H, H], 'BF16');
      add(`${b}.attn.norm_q`, [HD], 'BF16');
      add(`${b}.attn.norm_k`, [HD], 'BF16');
      add(`${b}.attn.to_out.0`, [H, H], 'BF16');
      add(`${b}.ff.net.0.proj`, [2 * FF, H], 'BF16');
      add(`${b}.ff.net.2`, [H, FF], 'BF16');
      if (adaln) add(`${b}.adaln_proj.linear`, [6 * 3 * H, TE], 'BF16', true);
    }
  }
  add('token_refiner.final_norm', [H], 'BF16');
  add('norm_out.norm', [H], 'BF16');
  add('norm_out.linear', [2 * H, TE], 'BF16', true);
  add('proj_out', [P, H], 'F32', true);
  add('audio_proj_out', [A, H], 'F32', true);
  return out;
}

const folder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors(transformer()),
  'config.json': JSON.stringify({
    _class_name: 'MiniMaxH3Transformer3DModel', _diffusers_version: '0.38.0.dev0', num_attention_heads: 2, attention_head_dim: HD, hidden_size: H, num_layers: 2,
    num_refiner_layers: 2, ffn_dim: FF, in_channels: 4, audio_in_channels: A, patch_size: [1, 2, 2], text_dim: TD, freq_dim: F, time_embed_hidden_dim: TEH, time_embed_dim: TE,
    rope_freq_dim: 2, rope_theta: 10000.0, norm_eps: 1e-5, qk_norm_eps: 1e-5, final_norm_eps: 1e-5,
  }),
};

/** q, k, v: rows [0, H), [H, 2H), [2H, 3H) of the fused ΔW, each onto its own tensor's rows [0, H). */
const thirds = (block: string) => ['to_q', 'to_k', 'to_v'].map((p, n) => ({ key: `${block}.attn.${p}.weight`, rows: [{ src: n * H, dst: 0, count: H }] }));
/** fc1's gate rows [0, FF) onto ff.net.0.proj's second half, its value rows [FF, 2FF) onto the first. */
const swapped = (block: string) => [{ key: `${block}.ff.net.0.proj.weight`, rows: [{ src: 0, dst: FF, count: FF }, { src: FF, dst: 0, count: FF }] }];

const CASES: LoraCase[] = [
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← ai-toolkit\'s LoRA (diffusion_model.blocks.0.attn.qkv_proj, lora_A/lora_B, scale 1)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-aitoolkit.safetensors', weight: 0.8, specs: [
        peftSpec('diffusion_model.blocks.0.attn.qkv_proj', 2, 3 * H, H, thirds('transformer_blocks.0'), 1),
        peftSpec('diffusion_model.blocks.1.attn.out_proj', 2, H, H, [{ key: 'transformer_blocks.1.attn.to_out.0.weight' }], 1),
        peftSpec('diffusion_model.blocks.0.mlp.fc1', 2, 2 * FF, H, swapped('transformer_blocks.0'), 1),
        peftSpec('diffusion_model.blocks.1.mlp.fc2', 2, H, FF, [{ key: 'transformer_blocks.1.ff.net.2.weight' }], 1),
        peftSpec('diffusion_model.blocks.1.adaln_proj.linear', 2, 18 * H, TE, [{ key: 'transformer_blocks.1.adaln_proj.linear.weight' }], 1),
        peftSpec('diffusion_model.token_refiner.blocks.1.attn.qkv_proj', 2, 3 * H, H, thirds('token_refiner.refiner_blocks.1'), 1),
        peftSpec('diffusion_model.token_refiner.blocks.0.mlp.fc1', 2, 2 * FF, H, swapped('token_refiner.refiner_blocks.0'), 1),
        peftSpec('diffusion_model.video_patch_proj', 2, H, P, [{ key: 'proj_in.weight' }], 1),
        peftSpec('diffusion_model.condition_proj', 2, H, TD, [{ key: 'context_embedder.weight' }], 1),
        peftSpec('diffusion_model.time_embedder.proj_in', 2, TEH, F, [{ key: 'time_embedder.linear_1.weight' }], 1),
        peftSpec('diffusion_model.final_layer.adaln_proj.linear', 2, 2 * H, TE, [{ key: 'norm_out.linear.weight' }], 1),
        peftSpec('diffusion_model.final_layer.video_out', 2, P, H, [{ key: 'proj_out.weight' }], 1),
      ],
    }],
  },
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← musubi-tuner\'s LoRA (lora_unet_blocks_1_attn_qkv_proj, lora_down/lora_up, .alpha: α/r)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-musubi.safetensors', weight: -0.6, specs: [
        kohyaSpec('lora_unet_blocks_1_attn_qkv_proj', 4, 3 * H, H, thirds('transformer_blocks.1'), 8),
        kohyaSpec('lora_unet_token_refiner_blocks_0_mlp_fc1', 4, 2 * FF, H, swapped('token_refiner.refiner_blocks.0'), 2),
        kohyaSpec('lora_unet_token_refiner_blocks_1_attn_out_proj', 4, H, H, [{ key: 'token_refiner.refiner_blocks.1.attn.to_out.0.weight' }], 4),
        kohyaSpec('lora_unet_final_layer_audio_out', 4, A, H, [{ key: 'audio_proj_out.weight' }], 1),
        kohyaSpec('lora_unet_time_embedder_proj_out', 4, TE, TEH, [{ key: 'time_embedder.linear_2.weight' }], 4),
        kohyaSpec('lora_unet_audio_patch_proj', 4, H, A, [{ key: 'audio_proj_in.weight' }], 4),
      ],
    }],
  },
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← bare names with a __metadata__ alpha (every module α/r, mixed ranks)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-metadata-alpha.safetensors', weight: 1, metadata: { format: 'pt', alpha: '16' }, specs: [
        peftSpec('blocks.0.attn.qkv_proj', 8, 3 * H, H, thirds('transformer_blocks.0'), 2),
        peftSpec('blocks.0.adaln_proj.linear', 2, 18 * H, TE, [{ key: 'transformer_blocks.0.adaln_proj.linear.weight' }], 8),
        peftSpec('blocks.1.mlp.fc1', 4, 2 * FF, H, swapped('transformer_blocks.1'), 4),
      ],
    }],
  },
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← an MLP and embedder LoRA (no name only H3 has) with a __metadata__ alpha: α/r all the same',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-mlp-alpha.safetensors', weight: 0.6, metadata: { format: 'pt', alpha: '4.0' }, specs: [
        peftSpec('diffusion_model.blocks.0.mlp.fc2', 8, H, FF, [{ key: 'transformer_blocks.0.ff.net.2.weight' }], 0.5),
        peftSpec('diffusion_model.token_refiner.blocks.1.mlp.fc1', 2, 2 * FF, H, swapped('token_refiner.refiner_blocks.1'), 2),
        peftSpec('diffusion_model.final_layer.audio_out', 4, A, H, [{ key: 'audio_proj_out.weight' }], 1),
      ],
    }],
  },
];

/**
 * DiffSynth-Studio's files: peft's `.default.` infix, no prefix, fp32 factors, no α (scale 1); its qkv_proj's
 * rows are per head `[q k v]` (the raw checkpoint's order), 128 rows a head as in every released H3. Two heads,
 * so hidden 256 here; head h's q rows [384h, 384h+128) land on to_q rows [128h, 128h+128), k and v after them.
 */
const WIDE = 256, HEAD = 128;
const wideFolder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors([
    ...['to_q', 'to_k', 'to_v', 'to_out.0'].map((p) => tensor(rand, `transformer_blocks.0.attn.${p}.weight`, [WIDE, WIDE], 'BF16')),
    tensor(rand, 'transformer_blocks.0.ff.net.0.proj.weight', [2 * FF, WIDE], 'BF16'),
    tensor(rand, 'transformer_blocks.0.adaln_proj.linear.weight', [18 * WIDE, TE], 'BF16'),
    tensor(rand, 'audio_proj_in.weight', [WIDE, A], 'F32'),
    tensor(rand, 'token_refiner.final_norm.weight', [WIDE], 'BF16'),
  ]),
  'config.json': JSON.stringify({ _class_name: 'MiniMaxH3Transformer3DModel', _diffusers_version: '0.38.0.dev0', num_attention_heads: 2, attention_head_dim: HEAD, hidden_size: WIDE, num_layers: 1, num_refiner_layers: 0, ffn_dim: FF }),
};
const perHead = ['to_q', 'to_k', 'to_v'].map((p, j) => ({
  key: `transformer_blocks.0.attn.${p}.weight`, rows: [0, 1].map((h) => ({ src: h * 3 * HEAD + j * HEAD, dst: h * HEAD, count: HEAD })),
}));
const diffSynth = (name: string, r: number, out: number, inF: number, lands: LoraSpec['lands']): LoraSpec =>
  ({ down: `${name}.lora_A.default.weight`, up: `${name}.lora_B.default.weight`, r, out, in: inF, lands, scale: 1 });
CASES.push({
  name: 'diffusers MiniMaxH3Transformer3DModel ← DiffSynth-Studio\'s LoRA (blocks.0.attn.qkv_proj.lora_A.default.weight: per-head interleaved qkv)',
  base: wideFolder, baseName: 'transformer',
  adapters: [{
    file: 'h3-diffsynth.safetensors', weight: 0.5, specs: [
      diffSynth('blocks.0.attn.qkv_proj', 4, 3 * WIDE, WIDE, perHead),
      diffSynth('blocks.0.attn.out_proj', 4, WIDE, WIDE, [{ key: 'transformer_blocks.0.attn.to_out.0.weight' }]),
      diffSynth('blocks.0.mlp.fc1', 4, 2 * FF, WIDE, swapped('transformer_blocks.0')),
    ],
  }],
});

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

/**
 * A file in names H3 shares with PixArt (ComfyUI's `diffusion_model.blocks.N.mlp.fc1`, lora_down/lora_up, no
 * `.alpha`) whose `__metadata__` holds `alpha`: ComfyUI, PixArt's loader (diffusers has none for PixArt), reads no
 * metadata α, so on PixArt's original checkpoint (mlp width 2·FF here, to fit both bases) every module has scale 1,
 * fc1 row for row; on H3's transformer diffusers' MiniMaxH3LoraLoaderMixin scales each by α/r (8/4, 8/2) and
 * swaps fc1's halves.
 */
const comfy = (name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], scale: number): LoraSpec =>
  ({ down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands, scale });
const PIXART_FILE = 'PixArt-Sigma-XL-2-1024-MS.safetensors';
const pixartBase = { [PIXART_FILE]: buildSafetensors(pixartOriginalTensors(rand, 'BF16', { ...PIXART, dim: H, mlp: 2 * FF })) };
const SHARED_ALPHA = { format: 'pt', alpha: '8' };
const SHARED: LoraCase[] = [
  {
    name: 'PixArt-Σ original checkpoint ← ComfyUI-named MLP LoRA (diffusion_model.blocks.0.mlp.fc1) with a __metadata__ alpha: ignored as ComfyUI does, scale 1',
    base: pixartBase, baseName: PIXART_FILE,
    adapters: [{
      file: 'pixart-mlp.safetensors', weight: 0.7, metadata: SHARED_ALPHA, specs: [
        comfy('diffusion_model.blocks.0.mlp.fc1', 4, 2 * FF, H, [{ key: 'blocks.0.mlp.fc1.weight' }], 1),
        comfy('diffusion_model.blocks.1.mlp.fc1', 2, 2 * FF, H, [{ key: 'blocks.1.mlp.fc1.weight' }], 1),
      ],
    }],
  },
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← the same names and __metadata__ alpha: α/r per module, fc1 halves swapped',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'pixart-mlp.safetensors', weight: 0.7, metadata: SHARED_ALPHA, specs: [
        comfy('diffusion_model.blocks.0.mlp.fc1', 4, 2 * FF, H, swapped('transformer_blocks.0'), 2),
        comfy('diffusion_model.blocks.1.mlp.fc1', 2, 2 * FF, H, swapped('transformer_blocks.1'), 4),
      ],
    }],
  },
];
loraCaseSuite(SHARED, rand, 'BF16');

/**
 * A file in diffusers' own names (`transformer.transformer_blocks.0.attn.to_q.lora_A.weight`, as diffusers'
 * save_lora_weights writes for MiniMaxH3Transformer3DModel) whose `__metadata__` holds `alpha` and no
 * `lora_adapter_metadata`: MiniMaxH3LoraLoaderMixin.lora_state_dict builds a config of lora_alpha = that α for every
 * module under `transformer.` (scale α / the module's rank, its lora_B's columns); so for peft's unprefixed dump
 * (`.default.` infix), which it prefixes with `transformer.`. With `lora_adapter_metadata` that config is loaded
 * instead (its lora_alpha / r). On another model's transformer no loader reads the metadata α: scale 1.
 */
const DIFFUSERS_ALPHA = { format: 'pt', alpha: '16' };
const sd3Folder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors([
    ...['to_q', 'to_k', 'to_v', 'to_out.0'].map((p) => tensor(rand, `transformer_blocks.0.attn.${p}.weight`, [H, H], 'BF16')),
    tensor(rand, 'transformer_blocks.0.ff.net.0.proj.weight', [4 * H, H], 'BF16'),
    tensor(rand, 'pos_embed.proj.weight', [H, 4, 2, 2], 'BF16'),
  ]),
  'config.json': JSON.stringify({ _class_name: 'SD3Transformer2DModel', _diffusers_version: '0.38.0.dev0', num_layers: 1, attention_head_dim: HD, num_attention_heads: 2, joint_attention_dim: H, caption_projection_dim: H, in_channels: 4, patch_size: 2 }),
};
const DIFFUSERS_NAMED: LoraCase[] = [
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← diffusers-named LoRA (transformer.transformer_blocks.0.attn.to_q) with a __metadata__ alpha: α/r per module, mixed ranks',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-diffusers-alpha.safetensors', weight: 0.9, metadata: DIFFUSERS_ALPHA, specs: [
        peftSpec('transformer.transformer_blocks.0.attn.to_q', 8, H, H, [{ key: 'transformer_blocks.0.attn.to_q.weight' }], 2),
        peftSpec('transformer.transformer_blocks.1.ff.net.0.proj', 4, 2 * FF, H, [{ key: 'transformer_blocks.1.ff.net.0.proj.weight' }], 4),
        peftSpec('transformer.transformer_blocks.0.adaln_proj.linear', 2, 18 * H, TE, [{ key: 'transformer_blocks.0.adaln_proj.linear.weight' }], 8),
        peftSpec('transformer.token_refiner.refiner_blocks.1.attn.to_out.0', 4, H, H, [{ key: 'token_refiner.refiner_blocks.1.attn.to_out.0.weight' }], 4),
        peftSpec('transformer.proj_out', 8, P, H, [{ key: 'proj_out.weight' }], 2),
      ],
    }],
  },
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← peft\'s unprefixed dump in diffusers names (transformer_blocks.0.attn.to_k.lora_A.default.weight) with a __metadata__ alpha: α/r',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-peft-dump-alpha.safetensors', weight: -0.5, metadata: DIFFUSERS_ALPHA, specs: [
        diffSynth('transformer_blocks.0.attn.to_k', 8, H, H, [{ key: 'transformer_blocks.0.attn.to_k.weight' }]),
        diffSynth('transformer_blocks.1.ff.net.2', 2, H, FF, [{ key: 'transformer_blocks.1.ff.net.2.weight' }]),
      ].map((s) => ({ ...s, scale: 16 / s.r })),
    }],
  },
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← diffusers-named LoRA with lora_adapter_metadata and a __metadata__ alpha: the config\'s lora_alpha/r (8/4), the alpha entry unread',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-diffusers-config.safetensors', weight: 1,
      metadata: { ...DIFFUSERS_ALPHA, lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.peft_type': 'LORA', 'transformer.use_dora': false }) },
      specs: [
        peftSpec('transformer.transformer_blocks.0.attn.to_v', 4, H, H, [{ key: 'transformer_blocks.0.attn.to_v.weight' }], 2),
        peftSpec('transformer.transformer_blocks.1.attn.to_out.0', 4, H, H, [{ key: 'transformer_blocks.1.attn.to_out.0.weight' }], 2),
      ],
    }],
  },
  {
    name: 'diffusers MiniMaxH3Transformer3DModel ← diffusers names in lora_down/lora_up with a __metadata__ alpha: no lora_B to read ranks from, so no α config, scale 1',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-diffusers-down-up.safetensors', weight: 0.7, metadata: DIFFUSERS_ALPHA, specs: [
        comfy('transformer.transformer_blocks.1.attn.to_q', 4, H, H, [{ key: 'transformer_blocks.1.attn.to_q.weight' }], 1),
      ],
    }],
  },
  {
    name: 'diffusers SD3Transformer2DModel ← the same diffusers names with a __metadata__ alpha: no loader but H3\'s reads it, scale 1',
    base: sd3Folder, baseName: 'transformer',
    adapters: [{
      file: 'h3-diffusers-alpha.safetensors', weight: 0.9, metadata: DIFFUSERS_ALPHA, specs: [
        peftSpec('transformer.transformer_blocks.0.attn.to_q', 8, H, H, [{ key: 'transformer_blocks.0.attn.to_q.weight' }], 1),
        peftSpec('transformer.transformer_blocks.0.attn.to_out.0', 4, H, H, [{ key: 'transformer_blocks.0.attn.to_out.0.weight' }], 1),
      ],
    }],
  },
];
loraCaseSuite(DIFFUSERS_NAMED, rand, 'BF16');

/** The parse's or plan's refusals of one adapter file (tensors and metadata as given). */
async function refusals(base: Record<string, Uint8Array | string>, baseName: string, tensors: FixtureTensor[], metadata?: Record<string, string>): Promise<string[]> {
  const bytes = buildSafetensors(tensors, metadata);
  try {
    const prepared = await prepareMerge(memoryInputFileSet(base, baseName), [{ files: memoryInputFileSet({ 'lora.safetensors': bytes }, 'lora.safetensors'), weight: 1 }]);
    const problems = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    return problems;
  } catch (e) {
    return [(e as Error).message];
  }
}

describe('MiniMax-H3 names', () => {
  it('the minimax-h3 layout places qkv_proj, fc1 and the renamed modules; without it they are refused', async () => {
    await expectLayoutNeeded(prepare, CASES, minimaxH3, { only: true });
  });

  it('a qkv_proj whose rows are not three times the width does not fit', async () => {
    const problems = await planProblemsOf(folder, 'transformer', [peftSpec('diffusion_model.blocks.0.attn.qkv_proj', 2, 2 * H, H, [], 1)], rand);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^lora\.safetensors: module "diffusion_model\.blocks\.0\.attn\.qkv_proj": ΔW \(16, 8\) does not fit/);
  });

  it('DiffSynth-Studio\'s qkv_proj on a transformer whose heads are not 128 rows wide (as diffusers assumes) is refused in one line', async () => {
    const spec: LoraSpec = { down: 'blocks.0.attn.qkv_proj.lora_A.default.weight', up: 'blocks.0.attn.qkv_proj.lora_B.default.weight', r: 2, out: 3 * H, in: H, lands: [], scale: 1 };
    const out = await refusals(folder, 'transformer', loraTensors(rand, [spec], 'F32'));
    expect(out).toEqual(['lora.safetensors: module "blocks.0.attn.qkv_proj": is DiffSynth-Studio\'s per-head interleaved qkv_proj, which diffusers reads in heads of 128 rows, and transformer_blocks.0.attn.to_q.weight has 8 rows, not a multiple of 128; not supported']);
  });

  it('combine refuses DiffSynth-Studio\'s qkv_proj in one line: no name in a written LoRA says its per-head row order', async () => {
    const bytes = buildSafetensors(loraTensors(rand, [diffSynth('blocks.0.attn.qkv_proj', 2, 3 * WIDE, WIDE, []), diffSynth('blocks.0.attn.out_proj', 2, WIDE, WIDE, [])], 'F32'));
    const adapter = await openAdapter(memoryInputFileSet({ 'h3-diffsynth.safetensors': bytes }, 'h3-diffsynth.safetensors'));
    const err = await combineAdapters([{ adapter, weight: 1 }], { method: 'cat', format: 'peft' }, new CpuAlgebra()).then(() => undefined, (e: Error) => e);
    expect(err?.message).toBe('h3-diffsynth.safetensors: module "blocks.0.attn.qkv_proj" is DiffSynth-Studio\'s MiniMax-H3 qkv_proj, its rows per head [q k v], which combine cannot write into a LoRA file (no name in it says that order; merge it into the base instead)');
  });

  it('a __metadata__ alpha that is not a number is refused in one line', async () => {
    const out = await refusals(folder, 'transformer', loraTensors(rand, [peftSpec('blocks.0.attn.out_proj', 2, H, H, [], 1)], 'BF16'), { format: 'pt', alpha: 'sixteen' });
    expect(out).toHaveLength(1);
    expect(out[0]).toContain('lora.safetensors: metadata "alpha" is "sixteen", not a finite number: diffusers\' MiniMaxH3LoraLoaderMixin reads it as every module\'s alpha');
  });

  it('a __metadata__ alpha over names H3 shares with PixArt: refused without a base; a non-number one only on an H3 base', async () => {
    const shared = buildSafetensors(loraTensors(rand, SHARED[0].adapters[0].specs, 'BF16'), SHARED_ALPHA);
    const err = await openAdapter(memoryInputFileSet({ 'pixart-mlp.safetensors': shared }, 'pixart-mlp.safetensors')).then(() => undefined, (e: Error) => e);
    expect(err?.message).toBe('pixart-mlp.safetensors/pixart-mlp.safetensors: metadata "alpha" is "8" and every module\'s name is one MiniMax-H3 shares with other models (PixArt\'s and HunyuanDiT\'s blocks.N.mlp.fc1, mlp.fc2): diffusers\' MiniMaxH3LoraLoaderMixin scales every module by that alpha over its rank, their loaders (ComfyUI) read no metadata alpha, and which model the file is for only its base can tell; not supported without a base — merge it into its base, or remove the entry (alpha = rank) or give each module its .alpha tensor');
    const tensors = loraTensors(rand, [comfy('diffusion_model.blocks.0.mlp.fc1', 2, 2 * FF, H, [], 1)], 'BF16');
    expect(await refusals(pixartBase, PIXART_FILE, tensors, { format: 'pt', alpha: 'sixteen' })).toEqual([]);
    const out = await refusals(folder, 'transformer', tensors, { format: 'pt', alpha: 'sixteen' });
    expect(out).toEqual(['lora.safetensors/lora.safetensors: metadata "alpha" is "sixteen", not a finite number: diffusers\' MiniMaxH3LoraLoaderMixin reads it as every module\'s alpha (it warns and loads at alpha = rank); not supported — remove the entry or set the alpha the LoRA was trained with']);
  });

  it('a __metadata__ alpha in diffusers\' names: refused without a base; a non-number one only on an H3 base', async () => {
    const bytes = buildSafetensors(loraTensors(rand, DIFFUSERS_NAMED[0].adapters[0].specs, 'BF16'), DIFFUSERS_ALPHA);
    const err = await openAdapter(memoryInputFileSet({ 'h3.safetensors': bytes }, 'h3.safetensors')).then(() => undefined, (e: Error) => e);
    expect(err?.message).toBe('h3.safetensors/h3.safetensors: metadata "alpha" is "16" in a file of diffusers\' names: diffusers\' MiniMaxH3LoraLoaderMixin scales every module by that alpha over its rank, its other loaders read no metadata alpha, and which model the file is for only its base can tell; not supported without a base — merge it into its base, or remove the entry (alpha = rank)');
    const tensors = loraTensors(rand, [peftSpec('transformer.transformer_blocks.0.attn.to_q', 2, H, H, [], 1)], 'BF16');
    expect(await refusals(sd3Folder, 'transformer', tensors, { format: 'pt', alpha: 'sixteen' })).toEqual([]);
    expect(await refusals(folder, 'transformer', tensors, { format: 'pt', alpha: 'sixteen' })).toEqual(['lora.safetensors/lora.safetensors: metadata "alpha" is "sixteen", not a finite number: on a MiniMax-H3 base diffusers\' MiniMaxH3LoraLoaderMixin reads it as every module\'s alpha (it warns and loads at alpha = rank); not supported — remove the entry or set the alpha the LoRA was trained with']);
  });

  it('lora_adapter_metadata in H3\'s original names (diffusers loads it for the converted modules) is refused in one line; in shared names only on an H3 base', async () => {
    const config = { format: 'pt', alpha: '16', lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.peft_type': 'LORA', 'transformer.use_dora': false }) };
    const message = 'metadata in MiniMax-H3\'s original module names: diffusers\' MiniMaxH3LoraLoaderMixin converts the names to its own and scales them by that config\'s lora_alpha over each rank (ignoring any metadata "alpha"), which this tool does not read for these names; not supported — remove the lora_adapter_metadata entry, or save the LoRA in diffusers\' names';
    const own = await refusals(folder, 'transformer', loraTensors(rand, [peftSpec('diffusion_model.blocks.1.attn.out_proj', 4, H, H, [], 1)], 'BF16'), config);
    expect(own).toHaveLength(1);
    expect(own[0]).toContain(`lora.safetensors: holds lora_adapter_${message}`);
    const shared = loraTensors(rand, [comfy('diffusion_model.blocks.0.mlp.fc1', 2, 2 * FF, H, [], 1)], 'BF16');
    expect(await refusals(folder, 'transformer', shared, config)).toEqual([`lora.safetensors/lora.safetensors: holds lora_adapter_${message}`]);
    expect((await refusals(pixartBase, PIXART_FILE, shared, config)).join()).not.toContain('MiniMax');
  });

  it('on the original checkpoint a fused qkv_proj is refused (its shards interleave q, k, v per head); out_proj lands by name', async () => {
    const original = { 'minimax_h3.safetensors': buildSafetensors([
      tensor(rand, 'audio_patch_proj.weight', [H, A], 'F32'),
      tensor(rand, 'blocks.0.attn.qkv_proj.weight', [3 * H, H], 'BF16'),
      tensor(rand, 'blocks.0.attn.out_proj.weight', [H, H], 'BF16'),
      tensor(rand, 'token_refiner.blocks.0.attn.qkv_proj.weight', [3 * H, H], 'BF16'),
    ]) };
    const problems = await planProblemsOf(original, 'minimax_h3.safetensors', [
      peftSpec('diffusion_model.blocks.0.attn.qkv_proj', 2, 3 * H, H, [], 1),
      peftSpec('diffusion_model.token_refiner.blocks.0.attn.qkv_proj', 2, 3 * H, H, [], 1),
      peftSpec('diffusion_model.blocks.0.attn.out_proj', 2, H, H, [], 1),
    ], rand);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^lora\.safetensors: module "diffusion_model\.blocks\.0\.attn\.qkv_proj": names the fused qkv_proj of the original MiniMax-H3 checkpoint, whose released shards hold q, k and v interleaved per head and the reference reorders to \[q; k; v\] on loading; a LoRA's rows follow its trainer \(DiffSynth-Studio: per head; the others: \[q; k; v\]\).*; not supported: merge onto the diffusers transformer folder/);
    expect(problems[1]).toMatch(/^lora\.safetensors: module "diffusion_model\.token_refiner\.blocks\.0\.attn\.qkv_proj": names the fused qkv_proj/);
  });
});

/**
 * MiniMax-H3's second partition, `transformer_ref/` (the ref2va workflow's MiniMaxH3Transformer3DModel, the
 * same config as `transformer/` with other weights): diffusers' MiniMaxH3LoraLoaderMixin loads `transformer_ref.`
 * modules into it alone (raising where the pipeline holds none) and `transformer.` ones into `transformer/`.
 */
describe('MiniMax-H3 transformer_ref (the ref2va partition)', () => {
  const lora = onePipelineLora(rand, 0.7);
  const pipeline = {
    'model_index.json': JSON.stringify({
      _class_name: 'MiniMaxH3ModularPipeline', _diffusers_version: '0.38.0.dev0',
      transformer: ['diffusers', 'MiniMaxH3Transformer3DModel'], transformer_ref: ['diffusers', 'MiniMaxH3Transformer3DModel'],
    }),
    'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(transformer()), 'transformer/config.json': folder['config.json'],
    'transformer_ref/diffusion_pytorch_model.safetensors': buildSafetensors(transformer()), 'transformer_ref/config.json': folder['config.json'],
  };

  it('on a pipeline folder holding both partitions, transformer_ref. modules land on transformer_ref/ and transformer. ones on transformer/, by name', async () => {
    await lora.mergeAndCheck(pipeline, [
      peftSpec('transformer_ref.transformer_blocks.0.attn.to_q', 2, H, H, [{ key: 'transformer_ref.transformer_blocks.0.attn.to_q.weight' }], 1),
      peftSpec('transformer_ref.token_refiner.refiner_blocks.1.ff.net.2', 2, H, FF, [{ key: 'transformer_ref.token_refiner.refiner_blocks.1.ff.net.2.weight' }], 1),
      peftSpec('transformer.transformer_blocks.1.attn.to_v', 2, H, H, [{ key: 'transformer.transformer_blocks.1.attn.to_v.weight' }], 1),
    ], ['transformer/diffusion_pytorch_model.safetensors', 'transformer_ref/diffusion_pytorch_model.safetensors']);
  });

  it('on a lone transformer folder (either partition: they share one config) a transformer_ref. module is refused in one line, not matched by the end of its name', async () => {
    const problems = await planProblemsOf(folder, 'transformer', [
      peftSpec('transformer_ref.transformer_blocks.0.attn.to_q', 2, H, H, [], 1),
      peftSpec('transformer.transformer_blocks.0.attn.to_k', 2, H, H, [{ key: 'transformer_blocks.0.attn.to_k.weight' }], 1),
    ], rand);
    expect(problems).toEqual([
      'lora.safetensors: module "transformer_ref.transformer_blocks.0.attn.to_q": is for MiniMax-H3\'s transformer_ref/ partition (the ref2va workflow\'s), which diffusers\' MiniMaxH3LoraLoaderMixin ' +
        'loads transformer_ref. modules into and no other, and this base holds no transformer_ref/ and does not say which partition it is (both share one config); not supported — ' +
        'give a pipeline folder whose model_index.json lists transformer_ref, or, where this base is H3\'s transformer_ref/, rename the file\'s transformer_ref. prefix to transformer. ' +
        '(diffusers loads that into the one partition a ref2va pipeline holds)',
    ]);
  });
});

/**
 * MiniMax-H3's diffusers repository carries modular_model_index.json alone (convert_minimax_h3_to_diffusers.py
 * write_model_index: every component `[library, class, {type_hint, pretrained_model_name_or_path, subfolder,
 * variant, revision}]` pointing at the repository's own id and its own name as subfolder); ModularPipeline
 * loads each component from that repository and subfolder.
 */
describe('MiniMax-H3 repository with modular_model_index.json alone', () => {
  const lora = onePipelineLora(rand, 0.8);
  const REPO = 'MiniMaxAI/MiniMax-H3';
  const COMPONENTS: [string, string, string][] = [
    ['text_encoder', 'transformers', 'Qwen3VLForConditionalGeneration'], ['tokenizer', 'transformers', 'Qwen2TokenizerFast'],
    ['processor', 'transformers', 'Qwen3VLProcessor'], ['vae', 'diffusers', 'AutoencoderKLMiniMaxH3'],
    ['audio_vae', 'diffusers', 'AutoencoderKLMiniMaxH3Audio'], ['transformer', 'diffusers', 'MiniMaxH3Transformer3DModel'],
    ['transformer_ref', 'diffusers', 'MiniMaxH3Transformer3DModel'], ['scheduler', 'diffusers', 'MiniMaxH3Scheduler'],
    ['audio_scheduler', 'diffusers', 'MiniMaxH3Scheduler'],
  ];
  const modularIndex = (edit: (name: string, spec: Record<string, unknown>) => void = () => {}) => {
    const index: Record<string, unknown> = { _class_name: 'MiniMaxH3ModularPipeline', _diffusers_version: '0.38.0.dev0', _blocks_class_name: 'MiniMaxH3Blocks' };
    for (const [name, library, className] of COMPONENTS) {
      const spec: Record<string, unknown> = { type_hint: [library, className], pretrained_model_name_or_path: REPO, subfolder: name, variant: null, revision: null };
      edit(name, spec);
      index[name] = [library, className, spec];
    }
    return JSON.stringify(index, null, 2);
  };
  const repository = (index: string, extra: Record<string, Uint8Array | string> = {}): Record<string, Uint8Array | string> => ({
    'modular_model_index.json': index,
    'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(transformer()), 'transformer/config.json': folder['config.json'],
    'transformer_ref/diffusion_pytorch_model.safetensors': buildSafetensors(transformer()), 'transformer_ref/config.json': folder['config.json'],
    'scheduler/scheduler_config.json': JSON.stringify({ _class_name: 'MiniMaxH3Scheduler', _diffusers_version: '0.38.0.dev0', shift: 5.0 }),
    'audio_scheduler/scheduler_config.json': JSON.stringify({ _class_name: 'MiniMaxH3Scheduler', _diffusers_version: '0.38.0.dev0', shift: 3.0 }),
    'tokenizer/tokenizer_config.json': JSON.stringify({ tokenizer_class: 'Qwen2TokenizerFast' }),
    'vae/config.json': JSON.stringify({ _class_name: 'AutoencoderKLMiniMaxH3', _diffusers_version: '0.38.0.dev0' }),
    ...extra,
  });
  const specs = [
    peftSpec('transformer.transformer_blocks.0.attn.to_q', 2, H, H, [{ key: 'transformer.transformer_blocks.0.attn.to_q.weight' }], 1),
    peftSpec('transformer.token_refiner.refiner_blocks.1.ff.net.2', 2, H, FF, [{ key: 'transformer.token_refiner.refiner_blocks.1.ff.net.2.weight' }], 1),
    peftSpec('transformer_ref.transformer_blocks.1.attn.to_v', 2, H, H, [{ key: 'transformer_ref.transformer_blocks.1.attn.to_v.weight' }], 1),
  ];
  const refusalOf = async (base: Record<string, Uint8Array | string>) => {
    const problems = await refusals(base, 'pipeline', loraTensors(rand, specs.slice(0, 1), 'BF16'));
    expect(problems).toHaveLength(1);
    expect(problems[0]).not.toContain('\n');
    return problems[0];
  };

  it('merges into transformer/ and transformer_ref/ as ModularPipeline loads them (float64 truth), the rest copied; says the copied index still points at the repository', async () => {
    const { warnings } = await lora.mergeAndCheck(repository(modularIndex()), specs,
      ['transformer/diffusion_pytorch_model.safetensors', 'transformer_ref/diffusion_pytorch_model.safetensors']);
    expect(warnings.filter((w) => w.includes('modular_model_index.json'))).toEqual([
      'pipeline: modular_model_index.json is copied as it is, and its components load from MiniMaxAI/MiniMax-H3: diffusers\' ModularPipeline.from_pretrained on the merged folder loads them from there, not the merged weights; '
      + 'set their pretrained_model_name_or_path in the merged folder\'s copy to that folder\'s path (as save_pretrained writes it), or load the merged components from its subfolders',
    ]);
  });

  it('a component in another repository is merged around when its folder is not here, refused by name when it is', async () => {
    const elsewhere = modularIndex((name, spec) => {
      if (name === 'text_encoder') spec.pretrained_model_name_or_path = 'Qwen/Qwen3-VL-32B-Instruct';
    });
    await lora.mergeAndCheck(repository(elsewhere), specs.slice(0, 1), ['transformer/diffusion_pytorch_model.safetensors']);
    const moved = modularIndex((name, spec) => {
      if (name === 'transformer') spec.pretrained_model_name_or_path = 'someone/MiniMax-H3-fp8';
    });
    expect(await refusalOf(repository(moved))).toBe('pipeline/modular_model_index.json: "transformer" loads from someone/MiniMax-H3-fp8, another repository than the one this folder\'s other components load from (MiniMaxAI/MiniMax-H3): '
      + 'diffusers\' ModularPipeline would not load the merged transformer/; not supported — give a folder whose modular_model_index.json loads transformer from this repository\'s transformer/ folder, or merge the component\'s folder on its own');
  });

  it('a component whose subfolder is not here, or is not its own name, or that names no repository or a variant, is refused by name', async () => {
    const sub = (to: unknown) => modularIndex((name, spec) => {
      if (name === 'transformer_ref') spec.subfolder = to;
    });
    expect(await refusalOf(repository(sub('transformer_ref_fp8')))).toMatch(/^pipeline\/modular_model_index\.json: "transformer_ref" loads from subfolder transformer_ref_fp8\/, which this folder does not hold with weights, while transformer_ref\/ does; not supported/);
    expect(await refusalOf(repository(sub(null)))).toMatch(/^pipeline\/modular_model_index\.json: "transformer_ref" loads from subfolder \(none: the repository's root\)/);
    expect(await refusalOf(repository(sub('transformer'))))
      .toMatch(/^pipeline\/modular_model_index\.json: "transformer_ref" loads from subfolder transformer\/, not transformer_ref\/ \(a component read from a folder not named after it is not merged here\)/);
    const noRepo = modularIndex((name, spec) => {
      if (name === 'transformer') spec.pretrained_model_name_or_path = null;
    });
    expect(await refusalOf(repository(noRepo))).toMatch(/^pipeline\/modular_model_index\.json: "transformer" names no pretrained_model_name_or_path, so diffusers' ModularPipeline does not load transformer from this repository/);
    const split = modularIndex((name, spec) => {
      if (['text_encoder', 'tokenizer', 'processor', 'vae'].includes(name)) spec.pretrained_model_name_or_path = 'someone/MiniMax-H3-fp8';
      if (name === 'audio_scheduler') spec.pretrained_model_name_or_path = null;
    });
    expect(await refusalOf(repository(split))).toBe('pipeline/modular_model_index.json: "transformer" loads from MiniMaxAI/MiniMax-H3, and this index\'s components name 2 repositories equally often '
      + '(someone/MiniMax-H3-fp8, MiniMaxAI/MiniMax-H3), so which of them this folder is cannot be told; not supported — give a folder whose modular_model_index.json loads transformer from this repository\'s transformer/ folder, or merge the component\'s folder on its own');
    const variant = modularIndex((name, spec) => {
      if (name === 'transformer') spec.variant = 'bf16';
    });
    expect(await refusalOf(repository(variant))).toMatch(/^pipeline\/modular_model_index\.json: "transformer" names variant "bf16" \(diffusers loads that variant's weight files\), which is not read here/);
  });

  it('beside a model_index.json: merged as before where both list the same classes, refused by name where they disagree', async () => {
    const same = JSON.stringify({
      _class_name: 'MiniMaxH3ModularPipeline', _diffusers_version: '0.38.0.dev0',
      transformer: ['diffusers', 'MiniMaxH3Transformer3DModel'], transformer_ref: ['diffusers', 'MiniMaxH3Transformer3DModel'], scheduler: ['diffusers', 'MiniMaxH3Scheduler'],
    });
    await lora.mergeAndCheck(repository(modularIndex(), { 'model_index.json': same }), specs,
      ['transformer/diffusion_pytorch_model.safetensors', 'transformer_ref/diffusion_pytorch_model.safetensors']);
    const without = JSON.stringify({ _class_name: 'MiniMaxH3ModularPipeline', _diffusers_version: '0.38.0.dev0', transformer: ['diffusers', 'MiniMaxH3Transformer3DModel'] });
    expect(await refusalOf(repository(modularIndex(), { 'model_index.json': without }))).toBe('pipeline: model_index.json and modular_model_index.json disagree on "transformer_ref" '
      + '(model_index.json: not listed; modular_model_index.json: "MiniMaxH3Transformer3DModel"), so diffusers\' DiffusionPipeline and ModularPipeline load different pipelines from this folder; not supported — remove the index that does not describe it');
    const other = JSON.stringify({ _class_name: 'X', transformer: ['diffusers', 'WanTransformer3DModel'], transformer_ref: ['diffusers', 'MiniMaxH3Transformer3DModel'] });
    expect(await refusalOf(repository(modularIndex(), { 'model_index.json': other }))).toMatch(/^pipeline: model_index\.json and modular_model_index\.json disagree on "transformer" \(model_index\.json: "WanTransformer3DModel"; modular_model_index\.json: "MiniMaxH3Transformer3DModel"\)/);
  });
});
