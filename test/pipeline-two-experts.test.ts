/**
 * A Wan 2.2 A14B pipeline folder holds two experts: `transformer/` (high noise) and `transformer_2/`
 * (low noise). diffusers' load_lora_weights loads a LoRA into `transformer` unless it is told
 * `load_into_transformer_2=True`, so a pipeline merge does the same and says that `transformer_2/`
 * is left as it is (and how to merge into it: give that folder as the base). Against float64 truth.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { WAN, loraTensors, wanDiffusersTensors, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { mergePipelineAndCheck } from './helpers/pipeline-merge.js';

const rand = seededRandom(2222);
const json = (o: object) => JSON.stringify(o, null, 2);

/** Wan-AI/Wan2.2-T2V-A14B-Diffusers, small. */
const wan22: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'WanPipeline', _diffusers_version: '0.35.0.dev0', boundary_ratio: 0.875, expand_timesteps: false,
    scheduler: ['diffusers', 'UniPCMultistepScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
    transformer: ['diffusers', 'WanTransformer3DModel'], transformer_2: ['diffusers', 'WanTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
  }),
  'transformer/config.json': json({ _class_name: 'WanTransformer3DModel', num_layers: 2 }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(wanDiffusersTensors(rand, 'BF16')),
  'transformer_2/config.json': json({ _class_name: 'WanTransformer3DModel', num_layers: 2 }),
  'transformer_2/diffusion_pytorch_model.safetensors': buildSafetensors(wanDiffusersTensors(rand, 'BF16')),
};

const comfy = (name: string, key: string): LoraSpec => ({ down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r: 2, out: WAN.dim, in: WAN.dim, lands: [{ key }], scale: 1 });

const backends: Partial<Record<'cpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

describe('a Wan 2.2 pipeline with two experts', () => {
  it('merges into transformer/, as diffusers loads a LoRA, leaves transformer_2/ byte for byte and says so', async () => {
    const specs = [
      comfy('diffusion_model.blocks.0.self_attn.q', 'transformer.blocks.0.attn1.to_q.weight'),
      comfy('blocks.1.cross_attn.k', 'transformer.blocks.1.attn2.to_k.weight'),
      comfy('transformer.blocks.1.attn1.to_v', 'transformer.blocks.1.attn1.to_v.weight'),
    ];
    const { warnings } = await mergePipelineAndCheck(backends.cpu!, wan22, [{ file: 'wan22_high_noise.safetensors', bytes: buildSafetensors(loraTensors(rand, specs, 'BF16')), specs, weight: 1 }],
      ['transformer/diffusion_pytorch_model.safetensors']);
    expect(warnings).toEqual([
      'pipeline: transformer_2/ (WanTransformer3DModel, the second expert of a model with two) is left as it is: a LoRA merges into transformer/, as diffusers\' load_lora_weights loads one unless told load_into_transformer_2; to merge into transformer_2/, give that folder as the base',
    ]);
  });

  it('merges into transformer_2/ given on its own, with no such warning', async () => {
    const spec = comfy('diffusion_model.blocks.0.self_attn.q', 'blocks.0.attn1.to_q.weight');
    const folder = { 'config.json': wan22['transformer_2/config.json'], 'diffusion_pytorch_model.safetensors': wan22['transformer_2/diffusion_pytorch_model.safetensors'] };
    const prepared = await prepareMerge(memoryInputFileSet(folder, 'Wan2.2-T2V-A14B-Diffusers/transformer_2'), [
      { files: memoryInputFileSet({ 'wan22_low_noise.safetensors': buildSafetensors(loraTensors(rand, [spec], 'BF16')) }, 'wan22_low_noise.safetensors'), weight: 1 },
    ]);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.warnings).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual(['blocks.0.attn1.to_q.weight']);
    await prepared.close();
  });
});
