/**
 * Kijai's ComfyUI conversions of LongCat-Video LoRAs (Kijai/LongCat-Video_comfy's
 * `LongCat_distill_lora_alpha64_bf16.safetensors`: rank 128, `.alpha` 64) on LongCat-Video's own DiT
 * (meituan-longcat/LongCat-Video `dit/`, LongCatVideoTransformer3DModel). ComfyUI-WanVideoWrapper
 * runs LongCat-Video as its WanModel, so the converted LoRA carries Wan's attention names with the
 * fused projections split (`diffusion_model.blocks.N.self_attn.q`/`.k`/`.v`/`.o`,
 * `cross_attn.q`/`.k`/`.v`/`.o`, LongCat's own `ffn.w1`-`w3`), ComfyUI's form (lora_down, lora_up,
 * `.alpha`: scale α/r), and the wrapper applies it with ComfyUI's loader. On LongCat-Video's DiT
 * those names were refused as tensors the base lacks; they land on the row thirds of `attn.qkv`
 * (q, k, v in that order, as its attention cuts them), the row halves of `cross_attn.kv_linear`,
 * `attn.proj`, `cross_attn.q_linear` and `cross_attn.proj` (float64 truth). The wrapper's embedders
 * are LongCat's renamed: `patch_embedding`, `text_embedding.0`/`.2`, `time_embedding.mlp.0`/`.2` land
 * on `x_embedder.proj`, `y_embedder.y_proj.0`/`.2`, `t_embedder.mlp.0`/`.2`; Wan's own `time_embedding.0`,
 * `time_projection.1` and `ffn.0`, which the wrapper's LongCat model does not build, are refused saying
 * so, and a Wan name whose counterpart is not checked (`norm3`) is refused naming the conversion. The wrapper's LongCat model keeps LongCat's adaLN and final layer under
 * Wan's names (a block's `modulation` Sequential, Head_adaLN's `head.modulation` and `head.head`),
 * so the refinement LoRA's `blocks.N.modulation.1`, `head.modulation.1` and `head.head` land on
 * `blocks.N.adaLN_modulation.1`, `final_layer.adaLN_modulation.1` and `final_layer.linear`.
 * Shapes cut small (hidden 8, ffn 20, rank 2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, decodeSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { kohyaSpec, loraTensors, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { mergeInMemory } from './helpers/merge-backends.js';
import { mergeLoneFileChecked } from './helpers/pipeline-merge.js';
import { planProblemsOf } from './helpers/lora-case.js';

const rand = seededRandom(4096);
const h = 8, ffn = 20, r = 2, alpha = 1;

/** LongCat-Video's dit/ tensors (one block), as its checkpoint names them. */
const dit = buildSafetensors([
  tensor(rand, 'x_embedder.proj.weight', [h, 16, 1, 2, 2], 'BF16'),
  tensor(rand, 'blocks.0.adaLN_modulation.1.weight', [6 * h, h], 'BF16'), tensor(rand, 'blocks.0.adaLN_modulation.1.bias', [6 * h], 'BF16'),
  tensor(rand, 'blocks.0.attn.qkv.weight', [3 * h, h], 'BF16'), tensor(rand, 'blocks.0.attn.qkv.bias', [3 * h], 'BF16'),
  tensor(rand, 'blocks.0.attn.proj.weight', [h, h], 'BF16'), tensor(rand, 'blocks.0.attn.proj.bias', [h], 'BF16'),
  tensor(rand, 'blocks.0.attn.q_norm.weight', [h / 2], 'F32'), tensor(rand, 'blocks.0.attn.k_norm.weight', [h / 2], 'F32'),
  tensor(rand, 'blocks.0.cross_attn.q_linear.weight', [h, h], 'BF16'), tensor(rand, 'blocks.0.cross_attn.kv_linear.weight', [2 * h, h], 'BF16'),
  tensor(rand, 'blocks.0.cross_attn.proj.weight', [h, h], 'BF16'),
  tensor(rand, 'blocks.0.ffn.w1.weight', [ffn, h], 'BF16'), tensor(rand, 'blocks.0.ffn.w2.weight', [h, ffn], 'BF16'), tensor(rand, 'blocks.0.ffn.w3.weight', [ffn, h], 'BF16'),
  tensor(rand, 'y_embedder.y_proj.0.weight', [h, 12], 'BF16'), tensor(rand, 'y_embedder.y_proj.2.weight', [h, h], 'BF16'),
  tensor(rand, 't_embedder.mlp.0.weight', [6, 4], 'BF16'), tensor(rand, 't_embedder.mlp.2.weight', [6, 6], 'BF16'),
  tensor(rand, 'final_layer.adaLN_modulation.1.weight', [2 * h, h], 'BF16'), tensor(rand, 'final_layer.adaLN_modulation.1.bias', [2 * h], 'BF16'),
  tensor(rand, 'final_layer.linear.weight', [16, h], 'BF16'), tensor(rand, 'final_layer.linear.bias', [16], 'BF16'),
] satisfies FixtureTensor[]);
const DIT = 'diffusion_pytorch_model.safetensors';

/** One module of Kijai's file: `diffusion_model.` + the WanModel name, lora_down/lora_up and `.alpha`. */
const kijai = (name: string, out: number, inF: number, key: string, rows?: { src: number; dst: number; count: number }[]): LoraSpec =>
  kohyaSpec(`diffusion_model.blocks.0.${name}`, r, out, inF, [{ key, ...(rows ? { rows } : {}) }], alpha);
const third = (i: number) => [{ src: 0, dst: i * h, count: h }];

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu.dispose());

describe('Kijai\'s LongCat-Video LoRAs (WanVideoWrapper names) on LongCat-Video\'s own DiT', () => {
  it('self_attn.q, .k, .v land on the row thirds of attn.qkv, .o on attn.proj; cross_attn.q on q_linear, .k, .v on the halves of kv_linear, .o on proj; ffn.w2 by name', async () => {
    const specs = [
      kijai('self_attn.q', h, h, 'blocks.0.attn.qkv.weight', third(0)),
      kijai('self_attn.k', h, h, 'blocks.0.attn.qkv.weight', third(1)),
      kijai('self_attn.v', h, h, 'blocks.0.attn.qkv.weight', third(2)),
      kijai('self_attn.o', h, h, 'blocks.0.attn.proj.weight'),
      kijai('cross_attn.q', h, h, 'blocks.0.cross_attn.q_linear.weight'),
      kijai('cross_attn.k', h, h, 'blocks.0.cross_attn.kv_linear.weight', third(0)),
      kijai('cross_attn.v', h, h, 'blocks.0.cross_attn.kv_linear.weight', third(1)),
      kijai('cross_attn.o', h, h, 'blocks.0.cross_attn.proj.weight'),
      kijai('ffn.w2', h, ffn, 'blocks.0.ffn.w2.weight'),
    ];
    const warnings = await mergeLoneFileChecked(cpu, rand, dit, DIT, specs, 0.7);
    expect(warnings).toEqual([]);
  });

  it('on Kijai\'s converted model (LongCat_TI2V_comfy_bf16.safetensors: the WanModel\'s names) the same modules land by name, and the layout stays out', async () => {
    const converted = buildSafetensors([
      tensor(rand, 'patch_embedding.weight', [h, 16, 1, 2, 2], 'BF16'),
      ...['q', 'k', 'v', 'o'].flatMap((p) => [tensor(rand, `blocks.0.self_attn.${p}.weight`, [h, h], 'BF16'), tensor(rand, `blocks.0.cross_attn.${p}.weight`, [h, h], 'BF16')]),
      tensor(rand, 'blocks.0.ffn.w1.weight', [ffn, h], 'BF16'), tensor(rand, 'blocks.0.ffn.w2.weight', [h, ffn], 'BF16'), tensor(rand, 'blocks.0.ffn.w3.weight', [ffn, h], 'BF16'),
    ] satisfies FixtureTensor[]);
    const specs = [
      kijai('self_attn.k', h, h, 'blocks.0.self_attn.k.weight'),
      kijai('cross_attn.v', h, h, 'blocks.0.cross_attn.v.weight'),
      kijai('ffn.w1', ffn, h, 'blocks.0.ffn.w1.weight'),
    ];
    expect(await mergeLoneFileChecked(cpu, rand, converted, 'LongCat_TI2V_comfy_bf16.safetensors', specs, 0.5)).toEqual([]);
  });

  it('a bias change beside self_attn.v (ComfyUI\'s diff_b, added unscaled by α/r) lands on its third of attn.qkv.bias', async () => {
    const spec = kijai('self_attn.v', h, h, 'blocks.0.attn.qkv.weight', third(2));
    const diffB = tensor(rand, 'diffusion_model.blocks.0.self_attn.v.diff_b', [h], 'F32');
    const lora = buildSafetensors([...loraTensors(rand, [spec], 'BF16'), diffB]);
    const { tensors } = await mergeInMemory({ backend: cpu, base: { [DIT]: dit }, baseName: DIT, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.7 }] });
    const before = decodeSafetensors(dit).tensors.get('blocks.0.attn.qkv.bias')!.values;
    const after = tensors.get('blocks.0.attn.qkv.bias')!.values;
    const delta = decodeSafetensors(lora).tensors.get('diffusion_model.blocks.0.self_attn.v.diff_b')!.values;
    for (let i = 0; i < 3 * h; i++) {
      const want = i < 2 * h ? before[i] : before[i] + 0.7 * delta[i - 2 * h];
      // BF16 keeps 8 bits of mantissa: within half a unit in the last place of the larger magnitude.
      expect(Math.abs(after[i] - want), `row ${i}`).toBeLessThanOrEqual(Math.max(Math.abs(want), Math.abs(before[i])) * 2 ** -8 + 1e-12);
    }
    expect([...after.subarray(0, 2 * h)]).toEqual([...before.subarray(0, 2 * h)]);
  });

  it('the adaLN and final layer (the refinement LoRA\'s blocks.N.modulation.1, head.modulation.1, head.head) land on adaLN_modulation.1, final_layer.adaLN_modulation.1 and final_layer.linear', async () => {
    const adaLN = (name: string, out: number, key: string) => kohyaSpec(`diffusion_model.${name}`, r, out, h, [{ key }], alpha);
    const specs = [
      adaLN('blocks.0.modulation.1', 6 * h, 'blocks.0.adaLN_modulation.1.weight'),
      adaLN('head.modulation.1', 2 * h, 'final_layer.adaLN_modulation.1.weight'),
      adaLN('head.head', 16, 'final_layer.linear.weight'),
    ];
    expect(await mergeLoneFileChecked(cpu, rand, dit, DIT, specs, 0.6)).toEqual([]);
  });

  it('a bias change beside head.head (diff_b) lands on final_layer.linear.bias, unscaled by α/r', async () => {
    const spec = kohyaSpec('diffusion_model.head.head', r, 16, h, [{ key: 'final_layer.linear.weight' }], alpha);
    const diffB = tensor(rand, 'diffusion_model.head.head.diff_b', [16], 'F32');
    const lora = buildSafetensors([...loraTensors(rand, [spec], 'BF16'), diffB]);
    const { tensors } = await mergeInMemory({ backend: cpu, base: { [DIT]: dit }, baseName: DIT, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.7 }] });
    const before = decodeSafetensors(dit).tensors.get('final_layer.linear.bias')!.values;
    const after = tensors.get('final_layer.linear.bias')!.values;
    const delta = decodeSafetensors(lora).tensors.get('diffusion_model.head.head.diff_b')!.values;
    for (let i = 0; i < 16; i++) {
      const want = before[i] + 0.7 * delta[i];
      expect(Math.abs(after[i] - want), `row ${i}`).toBeLessThanOrEqual(Math.max(Math.abs(want), Math.abs(before[i])) * 2 ** -8 + 1e-12);
    }
  });

  it('the embedders, LongCat\'s own under Wan\'s names (text_embedding.0/.2, time_embedding.mlp.0/.2), land on y_embedder.y_proj.0/.2 and t_embedder.mlp.0/.2', async () => {
    const embedder = (name: string, out: number, inF: number, key: string) => kohyaSpec(`diffusion_model.${name}`, r, out, inF, [{ key }], alpha);
    const specs = [
      embedder('text_embedding.0', h, 12, 'y_embedder.y_proj.0.weight'),
      embedder('text_embedding.2', h, h, 'y_embedder.y_proj.2.weight'),
      embedder('time_embedding.mlp.0', 6, 4, 't_embedder.mlp.0.weight'),
      embedder('time_embedding.mlp.2', 6, 6, 't_embedder.mlp.2.weight'),
    ];
    expect(await mergeLoneFileChecked(cpu, rand, dit, DIT, specs, 0.8)).toEqual([]);
  });

  it('patch_embedding (a full diff of the Conv3d) lands on x_embedder.proj.weight, element for element', async () => {
    const diff = tensor(rand, 'diffusion_model.patch_embedding.diff', [h, 16, 1, 2, 2], 'F32', 0.1);
    const lora = buildSafetensors([diff]);
    const { tensors } = await mergeInMemory({ backend: cpu, base: { [DIT]: dit }, baseName: DIT, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.5 }] });
    const before = decodeSafetensors(dit).tensors.get('x_embedder.proj.weight')!.values;
    const after = tensors.get('x_embedder.proj.weight')!.values;
    const d = decodeSafetensors(lora).tensors.get('diffusion_model.patch_embedding.diff')!.values;
    expect(after.length).toBe(h * 64);
    for (let i = 0; i < h * 64; i++) {
      const want = before[i] + 0.5 * d[i];
      expect(Math.abs(after[i] - want), `element ${i}`).toBeLessThanOrEqual(Math.max(Math.abs(want), Math.abs(before[i])) * 2 ** -8 + 1e-12);
    }
  });

  it('Wan\'s own time_embedding.0, time_projection.1 and ffn.0, which the wrapper\'s LongCat model does not build, are refused saying the wrapper does not apply them', async () => {
    const specs = [
      kohyaSpec('diffusion_model.time_embedding.0', r, 6, 4, [{ key: '' }], alpha),
      kohyaSpec('diffusion_model.time_projection.1', r, 6 * h, 6, [{ key: '' }], alpha),
      kohyaSpec('diffusion_model.blocks.0.ffn.0', r, ffn, h, [{ key: '' }], alpha),
    ];
    const problems = await planProblemsOf({ [DIT]: dit }, DIT, specs, rand);
    const why = `is a module name of Kijai's ComfyUI-WanVideoWrapper conversion of LongCat-Video (Wan's names, as Kijai/LongCat-Video_comfy's LoRAs carry them), but a module of Wan's own that the wrapper's LongCat model does not have (its FFN is LongCat's ffn.w1-w3, its time_embedding LongCat's TimestepEmbedder, time_embedding.mlp.0 and .mlp.2, and it has no time_projection), so the wrapper does not apply it: remove it from the file`;
    expect(problems.sort()).toEqual(['diffusion_model.blocks.0.ffn.0', 'diffusion_model.time_embedding.0', 'diffusion_model.time_projection.1'].map((m) => `lora.safetensors: module "${m}": ${why}`));
  });

  it('a Wan name with no counterpart checked in LongCat-Video\'s DiT (a block\'s norm3) is refused naming Kijai\'s conversion', async () => {
    const norm = kohyaSpec('diffusion_model.blocks.0.norm3', r, h, h, [{ key: '' }], alpha);
    const problems = await planProblemsOf({ [DIT]: dit }, DIT, [norm], rand);
    expect(problems).toEqual([
      `lora.safetensors: module "diffusion_model.blocks.0.norm3": is a module name of Kijai's ComfyUI-WanVideoWrapper conversion of LongCat-Video (Wan's names, as Kijai/LongCat-Video_comfy's LoRAs carry them), whose counterpart in LongCat-Video's own DiT is not known: merge it into Kijai's converted model (LongCat_TI2V_comfy_*.safetensors), where the wrapper applies it, or use LongCat-Video's own LoRA file`,
    ]);
  });
});
