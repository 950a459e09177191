/**
 * Norm tensors across the two namings of each diffusion model: files that change norms (ComfyUI's
 * "Extract and Save Lora" `.diff` / `.diff_b` of every 1-D weight and bias, ComfyUI's generic key
 * map for a parameter that is not a `weight`: `…query_norm.scale.diff`, LyCORIS's `w_norm` /
 * `b_norm`) merged onto a base in the other naming, both ways round, on the CPU and on WebGPU.
 * Where each change lands is written out below by hand from the converters (diffusers'
 * convert_wan_to_diffusers.py with its norm2 ↔ norm3 swap, convert_ltx_to_diffusers.py and
 * convert_ltx2_to_diffusers.py `q_norm` → `norm_q`, the Flux/FLUX.2/Chroma/SD3/Z-Image/Lumina 2
 * single-file conversions, convert_hunyuan_video_to_diffusers.py and ComfyUI's HunyuanVideo state
 * dict conversion `img_attn_q_norm.weight` → `img_attn.norm.query_norm.scale`); the truth is the
 * base plus weight · diff in float64.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import {
  FLUX, fluxBflTensors, fluxDiffusersTensors, tensor, wanDiffusersTensors, wanOriginalTensors,
} from './helpers/diffusion-fixtures.js';
import {
  LTX2, chromaBflTensors, chromaDiffusersTensors, flux2BflTensors, flux2DiffusersTensors, lumina2DiffusersTensors, lumina2OriginalTensors,
  ltx2DiffusersTensors, ltx2OriginalTensors, ltxDiffusersTensors, ltxOriginalTensors, zImageComfyTensors, zImageDiffusersTensors,
} from './helpers/dit-fixtures.js';
import { HUNYUAN, hunyuanComfyTensors, hunyuanDiffusersConfig, hunyuanDiffusersTensors, hunyuanOriginalTensors } from './helpers/hunyuan-fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { expectMerged } from './helpers/expect-merged.js';

const rand = seededRandom(20260303);

/** One tensor of the adapter: `<module>.<role>`, shaped like the base tensor it must land on. */
interface NormChange { module: string; role: 'diff' | 'diff_b' | 'w_norm' | 'b_norm'; lands: string }
interface NormCase {
  name: string;
  base: FixtureTensor[];
  baseFile: string;
  /** Other files of the base (a diffusers folder's config.json). */
  extra?: Record<string, string>;
  weight: number;
  changes: NormChange[];
}

const diff = (module: string, lands: string): NormChange => ({ module, role: 'diff', lands });
const diffB = (module: string, lands: string): NormChange => ({ module, role: 'diff_b', lands });
const config = (className: string) => ({ 'config.json': JSON.stringify({ _class_name: className }) });
const D = 'diffusion_model.';
const MD = 'model.diffusion_model.';

// SD3.5 Medium's first blocks (dual attention, qk RMSNorms of the head size), SAI's and diffusers' names.
const SD3 = { h: 8, head: 4 };
function sd3SaiTensors(): FixtureTensor[] {
  const { h, head } = SD3;
  const out: FixtureTensor[] = [];
  for (let i = 0; i < 2; i++) {
    const j = `${MD}joint_blocks.${i}`;
    for (const a of ['x_block.attn', 'context_block.attn', 'x_block.attn2']) {
      out.push(tensor(rand, `${j}.${a}.qkv.weight`, [3 * h, h], 'F16'), tensor(rand, `${j}.${a}.ln_q.weight`, [head], 'F16'), tensor(rand, `${j}.${a}.ln_k.weight`, [head], 'F16'));
    }
  }
  return out;
}
function sd3DiffusersTensors(): FixtureTensor[] {
  const { h, head } = SD3;
  const out: FixtureTensor[] = [];
  for (let i = 0; i < 2; i++) {
    const t = `transformer_blocks.${i}`;
    for (const p of ['attn.to_q', 'attn.to_k', 'attn.to_v', 'attn.add_q_proj', 'attn.add_k_proj', 'attn.add_v_proj', 'attn2.to_q', 'attn2.to_k', 'attn2.to_v']) out.push(tensor(rand, `${t}.${p}.weight`, [h, h], 'F16'));
    for (const n of ['attn.norm_q', 'attn.norm_k', 'attn.norm_added_q', 'attn.norm_added_k', 'attn2.norm_q', 'attn2.norm_k']) out.push(tensor(rand, `${t}.${n}.weight`, [head], 'F16'));
  }
  return out;
}

const CASES: NormCase[] = [
  {
    name: 'Wan\'s own file ← diffusers-named norm diffs (diffusers\' norm2 is Wan\'s norm3), LyCORIS norm tuning',
    base: wanOriginalTensors(rand, 'BF16'), baseFile: 'wan2.1_i2v_480p_14B_bf16.safetensors', weight: 0.7,
    changes: [
      diff(`${D}blocks.0.norm2`, 'blocks.0.norm3.weight'), diffB(`${D}blocks.0.norm2`, 'blocks.0.norm3.bias'),
      { module: 'lycoris_blocks_1_norm2', role: 'w_norm', lands: 'blocks.1.norm3.weight' }, { module: 'lycoris_blocks_1_norm2', role: 'b_norm', lands: 'blocks.1.norm3.bias' },
      diff(`${D}blocks.1.attn1.norm_q`, 'blocks.1.self_attn.norm_q.weight'),
      diff(`${D}blocks.0.attn2.norm_added_k`, 'blocks.0.cross_attn.norm_k_img.weight'),
      diff(`${D}condition_embedder.image_embedder.norm1`, 'img_emb.proj.0.weight'),
      diff(`${D}condition_embedder.image_embedder.norm2`, 'img_emb.proj.4.weight'),
    ],
  },
  {
    name: 'diffusers Wan transformer ← Wan-named norm diffs (ComfyUI-extracted: norm3 is diffusers\' norm2)',
    base: wanDiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('WanTransformer3DModel'), weight: -0.6,
    changes: [
      diff(`${D}blocks.1.norm3`, 'blocks.1.norm2.weight'), diffB(`${D}blocks.1.norm3`, 'blocks.1.norm2.bias'),
      diff(`${D}blocks.0.self_attn.norm_q`, 'blocks.0.attn1.norm_q.weight'),
      diff(`${D}blocks.1.cross_attn.norm_k_img`, 'blocks.1.attn2.norm_added_k.weight'),
      diff(`${D}img_emb.proj.0`, 'condition_embedder.image_embedder.norm1.weight'),
      diff(`${D}img_emb.proj.4`, 'condition_embedder.image_embedder.norm2.weight'),
    ],
  },
  {
    name: 'LTX-Video single file ← diffusers-named q/k norm diffs (norm_q is q_norm)',
    base: ltxOriginalTensors(rand, 'BF16'), baseFile: 'ltx-video-2b-v0.9.5.safetensors', weight: 1,
    changes: [
      diff('transformer.transformer_blocks.0.attn1.norm_q', `${MD}transformer_blocks.0.attn1.q_norm.weight`),
      diff('transformer.transformer_blocks.1.attn2.norm_k', `${MD}transformer_blocks.1.attn2.k_norm.weight`),
    ],
  },
  {
    name: 'diffusers LTX-Video transformer ← original-named q/k norm diffs',
    base: ltxDiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('LTXVideoTransformer3DModel'), weight: 0.5,
    changes: [
      diff(`${D}transformer_blocks.1.attn1.k_norm`, 'transformer_blocks.1.attn1.norm_k.weight'),
      diff(`${D}transformer_blocks.0.attn2.q_norm`, 'transformer_blocks.0.attn2.norm_q.weight'),
    ],
  },
  {
    name: 'LTX-2 single file ← diffusers-named q/k norm diffs of the video, audio and cross-modal attentions',
    base: ltx2OriginalTensors(rand, 'BF16'), baseFile: 'ltx-2-19b-dev.safetensors', weight: 0.9,
    changes: [
      diff('transformer.transformer_blocks.0.attn1.norm_q', `${MD}transformer_blocks.0.attn1.q_norm.weight`),
      diff('transformer.transformer_blocks.1.audio_attn2.norm_k', `${MD}transformer_blocks.1.audio_attn2.k_norm.weight`),
      diff('transformer.transformer_blocks.0.audio_to_video_attn.norm_k', `${MD}transformer_blocks.0.audio_to_video_attn.k_norm.weight`),
    ],
  },
  {
    name: 'diffusers LTX-2 transformer ← original-named q/k norm diffs',
    base: ltx2DiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('LTX2VideoTransformer3DModel'), weight: 1.2,
    changes: [
      diff(`${D}transformer_blocks.1.video_to_audio_attn.q_norm`, 'transformer_blocks.1.video_to_audio_attn.norm_q.weight'),
      diff(`${D}transformer_blocks.0.audio_attn1.k_norm`, 'transformer_blocks.0.audio_attn1.norm_k.weight'),
    ],
  },
  {
    name: 'FLUX.1 BFL file ← diffusers-named q/k norm diffs (norm_q.weight is query_norm.scale)',
    base: fluxBflTensors(rand, 'BF16'), baseFile: 'flux1-dev.safetensors', weight: 0.8,
    changes: [
      diff('transformer.transformer_blocks.0.attn.norm_q', 'double_blocks.0.img_attn.norm.query_norm.scale'),
      diff('transformer.transformer_blocks.1.attn.norm_added_q', 'double_blocks.1.txt_attn.norm.query_norm.scale'),
      diff('transformer.single_transformer_blocks.1.attn.norm_k', 'single_blocks.1.norm.key_norm.scale'),
      // ComfyUI's own naming of the same file lands by name.
      diff(`${D}single_blocks.0.norm.key_norm.scale`, 'single_blocks.0.norm.key_norm.scale'),
    ],
  },
  {
    name: 'diffusers FLUX.1 transformer ← ComfyUI\'s BFL-named norm diffs (`…query_norm.scale.diff`, and the module alone)',
    base: fluxDiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('FluxTransformer2DModel'), weight: -1,
    changes: [
      diff(`${D}double_blocks.0.img_attn.norm.query_norm.scale`, 'transformer_blocks.0.attn.norm_q.weight'),
      diff(`${D}double_blocks.1.txt_attn.norm.key_norm.scale`, 'transformer_blocks.1.attn.norm_added_k.weight'),
      diff(`${D}single_blocks.1.norm.query_norm`, 'single_transformer_blocks.1.attn.norm_q.weight'),
    ],
  },
  {
    name: 'Chroma BFL file ⇄ diffusers: the approximator\'s norms (`norms.N.scale` is `norms.N.weight`)',
    base: chromaBflTensors(rand, 'BF16'), baseFile: 'chroma-unlocked-v48.safetensors', weight: 1,
    changes: [diff('transformer.distilled_guidance_layer.norms.1', 'distilled_guidance_layer.norms.1.scale')],
  },
  {
    name: 'diffusers Chroma transformer ← ComfyUI\'s approximator norm diff',
    base: chromaDiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('ChromaTransformer2DModel'), weight: 1,
    changes: [diff(`${D}distilled_guidance_layer.norms.0.scale`, 'distilled_guidance_layer.norms.0.weight')],
  },
  {
    name: 'FLUX.2 BFL file ← diffusers-named q/k norm diffs',
    base: flux2BflTensors(rand, 'BF16'), baseFile: 'flux2-dev.safetensors', weight: 0.75,
    changes: [
      diff('transformer.transformer_blocks.1.attn.norm_k', 'double_blocks.1.img_attn.norm.key_norm.scale'),
      diff('transformer.transformer_blocks.0.attn.norm_added_k', 'double_blocks.0.txt_attn.norm.key_norm.scale'),
      diff('transformer.single_transformer_blocks.0.attn.norm_q', 'single_blocks.0.norm.query_norm.scale'),
    ],
  },
  {
    name: 'diffusers FLUX.2 transformer ← BFL-named q/k norm diffs',
    base: flux2DiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('Flux2Transformer2DModel'), weight: 1,
    changes: [
      diff(`${D}double_blocks.0.txt_attn.norm.query_norm.scale`, 'transformer_blocks.0.attn.norm_added_q.weight'),
      diff(`${D}single_blocks.1.norm.key_norm.scale`, 'single_transformer_blocks.1.attn.norm_k.weight'),
    ],
  },
  {
    name: 'Tencent\'s HunyuanVideo file ← ComfyUI- and diffusers-named q/k norm diffs',
    base: hunyuanOriginalTensors(rand, 'BF16'), baseFile: 'mp_rank_00_model_states.safetensors', weight: 0.6,
    changes: [
      diff(`${D}double_blocks.0.img_attn.norm.key_norm.scale`, 'double_blocks.0.img_attn_k_norm.weight'),
      diff(`${D}single_blocks.1.norm.query_norm`, 'single_blocks.1.q_norm.weight'),
      diff('transformer.transformer_blocks.1.attn.norm_added_q', 'double_blocks.1.txt_attn_q_norm.weight'),
    ],
  },
  {
    name: 'A HunyuanVideo checkpoint ComfyUI saved (`model.model.`, `norm.query_norm.scale`) ← Tencent- and diffusers-named q/k norm diffs',
    base: hunyuanComfyTensors(rand, 'BF16'), baseFile: 'hunyuan_video_saved_by_comfyui.safetensors', weight: 1,
    changes: [
      diff(`${D}double_blocks.0.txt_attn_k_norm`, 'model.model.double_blocks.0.txt_attn.norm.key_norm.scale'),
      diff('transformer.single_transformer_blocks.0.attn.norm_k', 'model.model.single_blocks.0.norm.key_norm.scale'),
      diff('transformer.transformer_blocks.1.attn.norm_q', 'model.model.double_blocks.1.img_attn.norm.query_norm.scale'),
    ],
  },
  {
    name: 'diffusers HunyuanVideo transformer ← ComfyUI- and Tencent-named q/k norm diffs',
    base: hunyuanDiffusersTensors(rand, 'BF16', HUNYUAN), baseFile: 'diffusion_pytorch_model.safetensors', extra: { 'config.json': hunyuanDiffusersConfig(HUNYUAN) }, weight: -0.4,
    changes: [
      diff(`${D}double_blocks.0.img_attn.norm.query_norm.scale`, 'transformer_blocks.0.attn.norm_q.weight'),
      diff(`${D}single_blocks.1.norm.key_norm.scale`, 'single_transformer_blocks.1.attn.norm_k.weight'),
      diff('transformer.double_blocks.1.txt_attn_k_norm', 'transformer_blocks.1.attn.norm_added_k.weight'),
    ],
  },
  {
    name: 'SD3.5 SAI file ← diffusers-named q/k norm diffs (norm_added_q is context_block ln_q)',
    base: sd3SaiTensors(), baseFile: 'sd3.5_medium.safetensors', weight: 1,
    changes: [
      diff('transformer.transformer_blocks.0.attn.norm_q', `${MD}joint_blocks.0.x_block.attn.ln_q.weight`),
      diff('transformer.transformer_blocks.1.attn.norm_added_k', `${MD}joint_blocks.1.context_block.attn.ln_k.weight`),
      diff('transformer.transformer_blocks.0.attn2.norm_k', `${MD}joint_blocks.0.x_block.attn2.ln_k.weight`),
    ],
  },
  {
    name: 'diffusers SD3.5 transformer ← SAI-named q/k norm diffs',
    base: sd3DiffusersTensors(), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('SD3Transformer2DModel'), weight: 0.5,
    changes: [
      diff(`${D}joint_blocks.1.context_block.attn.ln_q`, 'transformer_blocks.1.attn.norm_added_q.weight'),
      diff(`${D}joint_blocks.0.x_block.attn2.ln_q`, 'transformer_blocks.0.attn2.norm_q.weight'),
    ],
  },
  {
    name: 'Z-Image ComfyUI file ⇄ diffusers: q/k norms (attention.norm_q is attention.q_norm)',
    base: zImageComfyTensors(rand, 'BF16'), baseFile: 'z_image_turbo_bf16.safetensors', weight: 1,
    changes: [
      diff('transformer.layers.1.attention.norm_q', 'layers.1.attention.q_norm.weight'),
      diff('transformer.context_refiner.0.attention.norm_k', 'context_refiner.0.attention.k_norm.weight'),
    ],
  },
  {
    name: 'diffusers Z-Image transformer ← ComfyUI-named q/k norm diffs',
    base: zImageDiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('ZImageTransformer2DModel'), weight: 1,
    changes: [diff(`${D}noise_refiner.0.attention.k_norm`, 'noise_refiner.0.attention.norm_k.weight')],
  },
  {
    name: 'diffusers Lumina 2 transformer ← original-named norm diffs (attention_norm1 is norm1.norm, the context refiner\'s norm1)',
    base: lumina2DiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: config('Lumina2Transformer2DModel'), weight: 0.9,
    changes: [
      diff(`${D}layers.0.attention_norm1`, 'layers.0.norm1.norm.weight'),
      diff(`${D}context_refiner.0.attention_norm1`, 'context_refiner.0.norm1.weight'),
      diff(`${D}noise_refiner.0.attention_norm2`, 'noise_refiner.0.norm2.weight'),
      diff(`${D}layers.1.attention.q_norm`, 'layers.1.attn.norm_q.weight'),
      diff(`${D}cap_embedder.0`, 'time_caption_embed.caption_embedder.0.weight'),
      // Named alike in both.
      diff(`${D}layers.1.ffn_norm2`, 'layers.1.ffn_norm2.weight'),
    ],
  },
  {
    name: 'Lumina 2 single file ← diffusers-named norm diffs',
    base: lumina2OriginalTensors(rand, 'BF16'), baseFile: 'lumina_2_model_bf16.safetensors', weight: 1,
    changes: [
      diff('transformer.layers.1.norm1.norm', 'layers.1.attention_norm1.weight'),
      diff('transformer.context_refiner.0.norm1', 'context_refiner.0.attention_norm1.weight'),
      diff('transformer.layers.0.norm2', 'layers.0.attention_norm2.weight'),
      diff('transformer.noise_refiner.0.attn.norm_k', 'noise_refiner.0.attention.k_norm.weight'),
    ],
  },
];

/** The adapter's tensors, each shaped like the base tensor it lands on. */
function adapterTensors(c: NormCase): FixtureTensor[] {
  const shapes = new Map(c.base.map((t) => [t.name, t.shape]));
  return c.changes.map((ch) => {
    const shape = shapes.get(ch.lands);
    if (!shape) throw new Error(`${c.name}: the base has no ${ch.lands}`);
    return tensor(rand, `${ch.module}.${ch.role}`, shape, 'F32', 0.5);
  });
}
const ADAPTERS = new Map(CASES.map((c) => [c, adapterTensors(c)]));

/**
 * Every tensor of the merged file: those the changes land on equal to base + weight · Σ diff
 * (float64, rounded once to the tensor's dtype), the rest byte for byte the base's.
 */
function expectNormsMerged(base: Map<string, DecodedTensor>, merged: Map<string, DecodedTensor>, c: NormCase, changes: readonly FixtureTensor[]): void {
  expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
  for (const [key, w] of base) {
    const got = merged.get(key)!;
    expect(got.dtype, key).toBe(w.dtype);
    const mine = c.changes.flatMap((ch, i) => (ch.lands === key ? [changes[i].data as ArrayLike<number>] : []));
    if (mine.length === 0) {
      expect(got.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
      continue;
    }
    const truth = w.values.slice();
    for (const d of mine) for (let i = 0; i < truth.length; i++) truth[i] += c.weight * d[i];
    expectMerged(got.values, truth, got.dtype, key);
  }
}

const backends = mergeBackends({ cpu: 'default' });

for (const c of CASES) {
  describe(c.name, () => {
    for (const kind of ['cpu', 'webgpu'] as const) {
      it(`merges each norm change on the tensor the converter renames it to, on ${kind}`, async () => {
        const baseBytes = buildSafetensors(c.base, { format: 'pt' });
        const tensors = ADAPTERS.get(c)!;
        const { tensors: merged } = await mergeInMemory({
          backend: backends[kind]!, base: { [c.baseFile]: baseBytes, ...c.extra },
          adapters: [{ files: { 'norms.safetensors': buildSafetensors(tensors) }, weight: c.weight }],
        });
        expectNormsMerged(decodeSafetensors(baseBytes).tensors, merged, c, tensors);
      });
    }
  });
}

// --- refused, with the reason -----------------------------------------------------------------------

async function problemsOf(base: Record<string, Uint8Array | string>, baseName: string, lora: FixtureTensor[]): Promise<string[]> {
  const prepared = await prepareMerge(memoryInputFileSet(base, baseName), [
    { files: memoryInputFileSet({ 'norms.safetensors': buildSafetensors(lora) }, 'norms.safetensors'), weight: 1 },
  ]);
  await prepared.close();
  return prepared.plan.problems.map((p) => p.message);
}

describe('norm changes that cannot land', () => {
  it('a bias change of an RMSNorm (no bias in either naming) is refused naming the tensor it looked for', async () => {
    const base = { 'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')) };
    const lora = [tensor(rand, 'transformer.transformer_blocks.0.attn.norm_q.diff_b', [FLUX.h / 2], 'F32')];
    expect(await problemsOf(base, 'flux1-dev.safetensors', lora)).toEqual([
      expect.stringMatching(/module "transformer\.transformer_blocks\.0\.attn\.norm_q": has .*diff_b, a change of its bias, but the base has no double_blocks\.0\.img_attn\.norm\.query_norm\.scale\.bias/),
    ]);
  });

  it('a norm of the wrong size is refused with both shapes', async () => {
    const base = { 'wan.safetensors': buildSafetensors(wanOriginalTensors(rand, 'BF16')) };
    const lora = [tensor(rand, `${D}blocks.0.norm2.diff`, [3], 'F32')];
    expect(await problemsOf(base, 'wan.safetensors', lora)).toEqual([expect.stringMatching(/module "diffusion_model\.blocks\.0\.norm2": .*does not fit base blocks\.0\.norm3\.weight \(8\)/)]);
  });

  it('LTX-2\'s text connectors on diffusers\' transformer, which does not hold them', async () => {
    const base = { 'diffusion_pytorch_model.safetensors': buildSafetensors(ltx2DiffusersTensors(rand, 'BF16')), ...config('LTX2VideoTransformer3DModel') };
    const lora = [tensor(rand, `${D}video_embeddings_connector.transformer_1d_blocks.0.attn1.q_norm.diff`, [LTX2.cap], 'F32')];
    expect(await problemsOf(base, 'transformer', lora)).toEqual([
      expect.stringMatching(/module "diffusion_model\.video_embeddings_connector\.transformer_1d_blocks\.0\.attn1\.q_norm": is in a text connector, which diffusers' conversion moves out of the transformer into its separate `connectors` model/),
    ]);
  });
});
