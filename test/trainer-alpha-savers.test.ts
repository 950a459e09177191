/**
 * `.alpha` in FLUX.1 LoRAs in diffusers' names as the trainers that write them save it, merged as
 * those trainers (and ComfyUI, which loads them) read it: each module's own α over its rank, not
 * diffusers' FLUX.1 rule (FluxLoraLoaderMixin), which cannot be their reader:
 * - SimpleTuner `--lora_format comfyui` for FLUX.1 (convert_diffusers_to_comfyui with the `transformer`
 *   prefix kept): lora_A / lora_B, an F32 `.alpha` on every module (alpha_pattern, else lora_alpha), the
 *   LoraConfig as lora_adapter_metadata (un-prefixed, json.dumps indent 2, sort_keys) and format "pt".
 *   diffusers refuses alphas beside metadata; SimpleTuner and ComfyUI read α/r per module.
 * - SimpleTuner scripts/extract_peft_lora.py: lora_A / lora_B and `.alpha` in the output dtype (float16
 *   by default), up scaled by r/α so (α/r)·B·A is the delta; metadata format
 *   "simpletuner-peft-lora-extract". SimpleTuner reads the alpha as a Python float: α/r unrounded.
 * - OneTrainer's internal LoRA (its backup's lora/lora.safetensors): diffusers-dotted module paths
 *   with lora_down / lora_up and `.alpha`. diffusers reads that as kohya's and drops the alphas;
 *   OneTrainer and ComfyUI read α/r per module.
 * OneTrainer's DIFFUSERS format folds α/r into lora_B and writes no `.alpha` (scale 1 under every
 * rule), and its COMFY / ORIGINAL / KOHYA / LEGACY formats use ComfyUI's, BFL's or kohya's names,
 * which FLUX.1's rule never reads.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { flux1Base, H, sparseBase } from './helpers/flux-shared-bases.js';

const rand = seededRandom(20261208);
const Q = 'transformer_blocks.0.attn.to_q', K = 'transformer_blocks.0.attn.to_k';

/** The plan's scale for each base tensor on FLUX.1 [dev], or its problems. */
async function scalesOnFlux1(tensors: FixtureTensor[], metadata?: Record<string, string>): Promise<Record<string, number[]> | string[]> {
  const prepared = await prepareMerge(sparseBase('flux1-dev', flux1Base()), [{ files: memoryInputFileSet({ 'lora.safetensors': buildSafetensors(tensors, metadata) }, 'lora'), weight: 1 }]);
  try {
    if (prepared.plan.problems.length > 0) return prepared.plan.problems.map((p) => p.message);
    return Object.fromEntries(prepared.plan.updates.map((u) => [u.baseKey, u.terms.map((t) => t.scale)]));
  } finally {
    await prepared.close();
  }
}

/** LoraConfig.to_dict() as PEFT 0.17 gives it (the fields SimpleTuner's save passes on). */
function loraConfig(fields: Record<string, unknown>): Record<string, unknown> {
  return {
    alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: null, bias: 'none', corda_config: null, eva_config: null,
    exclude_modules: null, fan_in_fan_out: false, inference_mode: false, init_lora_weights: true, layer_replication: null,
    layers_pattern: null, layers_to_transform: null, loftq_config: {}, lora_bias: false, lora_dropout: 0.1, megatron_config: null,
    megatron_core: 'megatron.core', modules_to_save: null, peft_type: 'LORA', qalora_group_size: 16, r: 4, rank_pattern: {},
    revision: null, target_modules: ['add_k_proj', 'add_q_proj', 'add_v_proj', 'to_add_out', 'to_k', 'to_out.0', 'to_q', 'to_v'],
    target_parameters: null, task_type: null, trainable_token_indices: null, use_dora: false, use_qalora: false, use_rslora: false,
    ...fields,
  };
}

/** Python's json.dumps(indent=2, sort_keys=True). */
function pythonJson(value: unknown): string {
  const sorted = (v: unknown): unknown => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])])) : v);
  return JSON.stringify(sorted(value), null, 2);
}

const pair = (name: string, r: number, dtype: FixtureDType, down = 'lora_A', up = 'lora_B'): FixtureTensor[] =>
  [tensor(rand, `${name}.${down}.weight`, [r, H], dtype, 0.1), tensor(rand, `${name}.${up}.weight`, [H, r], dtype, 0.1)];
const alpha = (name: string, value: number, dtype: FixtureDType): FixtureTensor => ({ name: `${name}.alpha`, dtype, shape: [], data: [value] });

describe('FLUX.1 .alpha as the trainers that write diffusers\' names save it', () => {
  it('SimpleTuner --lora_format comfyui: every module\'s F32 alpha beside its LoraConfig, merged at α/r per module (not refused as diffusers does)', async () => {
    // r 4, lora_alpha 8, alpha_pattern to_k 2: to_q's alpha 8, to_k's 2.
    const config = loraConfig({ lora_alpha: 8, alpha_pattern: { [K]: 2 } });
    const tensors = [...pair(`transformer.${Q}`, 4, 'BF16'), alpha(`transformer.${Q}`, 8, 'F32'), ...pair(`transformer.${K}`, 4, 'BF16'), alpha(`transformer.${K}`, 2, 'F32')];
    const scales = await scalesOnFlux1(tensors, { format: 'pt', lora_adapter_metadata: pythonJson(config) });
    expect(scales).toEqual({ [`${Q}.weight`]: [2], [`${K}.weight`]: [0.5] });
  });

  it('SimpleTuner extract_peft_lora.py: a float16 alpha over the rank, unrounded (8/3, not float16\'s 2.666015625)', async () => {
    const metadata = {
      format: 'simpletuner-peft-lora-extract', algorithm: 'svd', rank: '3', alpha: '8.0', base_model: 'black-forest-labs/FLUX.1-dev',
      target_model: 'finetune/flux-dev-tuned', prefix: 'transformer', target_modules: '["to_q", "to_k", "to_v", "to_out.0"]', component_subfolder: 'transformer',
    };
    const tensors = [...pair(`transformer.${Q}`, 3, 'F16'), alpha(`transformer.${Q}`, 8, 'F16'), ...pair(`transformer.${K}`, 3, 'F16'), alpha(`transformer.${K}`, 8, 'F16')];
    expect(await scalesOnFlux1(tensors, metadata)).toEqual({ [`${Q}.weight`]: [8 / 3], [`${K}.weight`]: [8 / 3] });
    // The same file without SimpleTuner's mark is diffusers' to read: α/r in float16.
    expect(await scalesOnFlux1(tensors)).toEqual({ [`${Q}.weight`]: [2.666015625], [`${K}.weight`]: [2.666015625] });
  });

  it('OneTrainer\'s internal form (diffusers paths, lora_down / lora_up, .alpha): each module\'s own α over its rank', async () => {
    const tensors = [
      ...pair(`transformer.${Q}`, 3, 'F32', 'lora_down', 'lora_up'), alpha(`transformer.${Q}`, 8, 'F16'),
      ...pair(`transformer.${K}`, 4, 'F32', 'lora_down', 'lora_up'), alpha(`transformer.${K}`, 1, 'F16'),
    ];
    // FLUX.1's diffusers rule would give float16 8/3 = 2.666015625 and to_k its own 1/4.
    expect(await scalesOnFlux1(tensors)).toEqual({ [`${Q}.weight`]: [8 / 3], [`${K}.weight`]: [1 / 4] });
  });
});
