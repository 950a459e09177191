/**
 * diffusers' `lora_adapter_metadata` target_modules / exclude_modules, as diffusers applies them.
 * A text encoder (text_encoder, text_encoder_2) is loaded by _load_lora_into_text_encoder through
 * transformers' load_adapter, which injects the LoraConfig without the state dict: PEFT puts layers
 * only on the modules the config targets, and the file's other text-encoder tensors are unexpected
 * keys transformers warns of and leaves unused. They are left out here with a warning naming them.
 * The transformer is loaded by load_lora_adapter, which since diffusers 0.35 hands PEFT the state
 * dict: every module the file holds gets a layer, target_modules or not, and all of them merge.
 * A module whose rank is not the one its component's r / rank_pattern gives is refused: PEFT
 * builds the layer at the stated rank and diffusers' load fails (size mismatch).
 * Merged on the CPU against float64 truth (B·A · α/r per module, written out per spec).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { FLUX, fluxDiffusersTensors, loraTensors, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { mergePipelineAndCheck, pipelinePlan } from './helpers/pipeline-merge.js';

const rand = seededRandom(4242);
const json = (o: object) => JSON.stringify(o, null, 2);
const { h } = FLUX;
const TE = 'text_model.encoder.layers.0';

/** A diffusers FluxPipeline folder: the transformer, CLIP-L as text_encoder (q/k/v/out_proj, fc1, fc2), T5 as text_encoder_2. */
const flux: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'FluxPipeline', _diffusers_version: '0.35.1', transformer: ['diffusers', 'FluxTransformer2DModel'], text_encoder: ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'T5EncoderModel'], vae: ['diffusers', 'AutoencoderKL'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  }),
  'transformer/config.json': json({ _class_name: 'FluxTransformer2DModel' }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(fluxDiffusersTensors(rand, 'BF16')),
  'text_encoder/config.json': json({ architectures: ['CLIPTextModel'], model_type: 'clip_text_model' }),
  'text_encoder/model.safetensors': buildSafetensors([
    ...['q_proj', 'k_proj', 'v_proj', 'out_proj'].map((p) => tensor(rand, `${TE}.self_attn.${p}.weight`, [12, 12], 'BF16')),
    tensor(rand, `${TE}.mlp.fc1.weight`, [24, 12], 'BF16'), tensor(rand, `${TE}.mlp.fc2.weight`, [12, 24], 'BF16'),
  ]),
  'text_encoder_2/model.safetensors': buildSafetensors([tensor(rand, 'encoder.block.0.layer.0.SelfAttention.q.weight', [8, 8], 'BF16')]),
  'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
  'scheduler/scheduler_config.json': json({ shift: 3.0 }),
};

/**
 * A module as diffusers saves it (`<name>.lora_A.weight`, `.lora_B.weight`), landing whole on the
 * pipeline's `<folder>.<key>` at α/r, or on nothing (`key` undefined: the module is left out, so
 * every base tensor it names must come out unchanged).
 */
const peft = (name: string, r: number, out: number, inF: number, key: string | undefined, scale: number): LoraSpec =>
  ({ down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r, out, in: inF, lands: key ? [{ key }] : [], scale });

/**
 * The LoraConfig fields diffusers' save_lora_weights writes for one component (LoraConfig.to_dict
 * of PEFT 0.17, each key under `<component>.`; json.dumps with sort_keys).
 */
function loraConfig(component: string, fields: Record<string, unknown>): Record<string, unknown> {
  const config: Record<string, unknown> = {
    alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: null, bias: 'none', corda_config: null, eva_config: null,
    exclude_modules: null, fan_in_fan_out: false, inference_mode: false, init_lora_weights: 'gaussian', layer_replication: null,
    layers_pattern: null, layers_to_transform: null, loftq_config: {}, lora_bias: false, lora_dropout: 0.0, megatron_config: null,
    megatron_core: 'megatron.core', modules_to_save: null, peft_type: 'LORA', qalora_group_size: 16, r: 4, rank_pattern: {},
    revision: null, runtime_config: { ephemeral_gpu_offload: false }, target_parameters: null, task_type: null,
    trainable_token_indices: null, use_dora: false, use_qalora: false, use_rslora: false, ...fields,
  };
  return Object.fromEntries(Object.keys(config).sort().map((k) => [`${component}.${k}`, config[k]]));
}

/** train_dreambooth_lora_flux.py --train_text_encoder: the transformer's attention, CLIP's q/k/v/out_proj. */
const TRANSFORMER_TARGETS = ['to_k', 'to_q', 'to_v', 'to_out.0'];
const TEXT_ENCODER_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'out_proj'];

const FC1 = `text_encoder.${TE}.mlp.fc1`;
const FC2 = `text_encoder.${TE}.mlp.fc2`;
/** Targeted modules of both components, one transformer module outside its targets (merged all the same), CLIP's fc1 and fc2 outside theirs. */
const TARGETED: LoraSpec[] = [
  peft('transformer.single_transformer_blocks.0.attn.to_q', 4, h, h, 'transformer.single_transformer_blocks.0.attn.to_q.weight', 8 / 4),
  peft('transformer.transformer_blocks.1.attn.to_out.0', 4, h, h, 'transformer.transformer_blocks.1.attn.to_out.0.weight', 8 / 4),
  // Not in transformer.target_modules: PEFT injects it from the state dict keys, so it merges.
  peft('transformer.single_transformer_blocks.1.proj_mlp', 4, 4 * h, h, 'transformer.single_transformer_blocks.1.proj_mlp.weight', 8 / 4),
  peft(`text_encoder.${TE}.self_attn.q_proj`, 2, 12, 12, `text_encoder.${TE}.self_attn.q_proj.weight`, 3 / 2),
  peft(`text_encoder.${TE}.self_attn.out_proj`, 2, 12, 12, `text_encoder.${TE}.self_attn.out_proj.weight`, 3 / 2),
  peft(FC1, 2, 24, 12, undefined, 3 / 2),
  peft(FC2, 2, 12, 24, undefined, 3 / 2),
];
const targetedMetadata = {
  format: 'pt',
  lora_adapter_metadata: JSON.stringify({
    ...loraConfig('text_encoder', { r: 2, lora_alpha: 3, target_modules: TEXT_ENCODER_TARGETS }),
    ...loraConfig('transformer', { r: 4, lora_alpha: 8, target_modules: TRANSFORMER_TARGETS }),
  }, null, 2),
};

/**
 * exclude_modules beside target_modules, and alpha_pattern / rank_pattern: CLIP's out_proj is
 * excluded (left out), its k_proj takes α 4 from alpha_pattern; the transformer's to_k has rank 2
 * by rank_pattern and α 6 by alpha_pattern; its excluded to_v merges all the same.
 */
const EXCLUDED: LoraSpec[] = [
  peft(`text_encoder.${TE}.self_attn.q_proj`, 2, 12, 12, `text_encoder.${TE}.self_attn.q_proj.weight`, 2 / 2),
  peft(`text_encoder.${TE}.self_attn.k_proj`, 2, 12, 12, `text_encoder.${TE}.self_attn.k_proj.weight`, 4 / 2),
  peft(`text_encoder.${TE}.self_attn.out_proj`, 2, 12, 12, undefined, 2 / 2),
  peft('transformer.transformer_blocks.0.attn.to_k', 2, h, h, 'transformer.transformer_blocks.0.attn.to_k.weight', 6 / 2),
  peft('transformer.transformer_blocks.0.attn.to_v', 4, h, h, 'transformer.transformer_blocks.0.attn.to_v.weight', 4 / 4),
];
const excludedMetadata = {
  format: 'pt',
  lora_adapter_metadata: JSON.stringify({
    ...loraConfig('text_encoder', {
      r: 2, lora_alpha: 2, target_modules: TEXT_ENCODER_TARGETS, exclude_modules: ['out_proj'],
      alpha_pattern: { [`${TE}.self_attn.k_proj`]: 4 },
    }),
    ...loraConfig('transformer', {
      r: 4, lora_alpha: 4, target_modules: TRANSFORMER_TARGETS, exclude_modules: ['transformer_blocks.0.attn.to_v'],
      rank_pattern: { 'transformer_blocks.0.attn.to_k': 2 }, alpha_pattern: { 'transformer_blocks.0.attn.to_k': 6 },
    }),
  }, null, 2),
};

const METADATA = '"lora_adapter_metadata"';
/** The LoRA as the test's file sets show it: the file lora.safetensors in the set of that name. */
const FILE = 'lora.safetensors/lora.safetensors';
const targetedWarning =
  `${FILE}: 2 modules left out, not merged: they are not targeted by target_modules ["q_proj","k_proj","v_proj","out_proj"] in the "text_encoder" LoraConfig of its metadata ${METADATA}; ` +
  `diffusers loads text_encoder through transformers' load_adapter, which puts LoRA layers only on the modules that LoraConfig targets and leaves their tensors unused (${FC1}, ${FC2})`;
const excludedWarning =
  `${FILE}: 1 module left out, not merged: it is excluded by exclude_modules ["out_proj"] in the "text_encoder" LoraConfig of its metadata ${METADATA}; ` +
  `diffusers loads text_encoder through transformers' load_adapter, which puts LoRA layers only on the modules that LoraConfig targets and leaves this one's tensors unused (text_encoder.${TE}.self_attn.out_proj)`;

let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());

const WRITTEN = ['transformer/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors'];

describe('diffusers lora_adapter_metadata: modules outside a text encoder\'s target_modules', () => {
  it('are left out with a warning naming them; the transformer\'s untargeted module merges, as diffusers ≥ 0.35 loads it', async () => {
    const bytes = buildSafetensors(loraTensors(rand, TARGETED, 'BF16'), targetedMetadata);
    const { warnings } = await mergePipelineAndCheck(backend, flux, [{ file: 'lora.safetensors', bytes, specs: TARGETED, weight: 0.8 }], WRITTEN);
    expect(warnings).toContain(targetedWarning);
  });

  it('exclude_modules leaves a text encoder module out; alpha_pattern and rank_pattern scale the others', async () => {
    const bytes = buildSafetensors(loraTensors(rand, EXCLUDED, 'BF16'), excludedMetadata);
    const { warnings } = await mergePipelineAndCheck(backend, flux, [{ file: 'lora.safetensors', bytes, specs: EXCLUDED, weight: 1 }], WRITTEN);
    expect(warnings).toContain(excludedWarning);
  });

  it('the plan states each warning word for word, once', async () => {
    const targeted = await pipelinePlan(flux, TARGETED, rand, 'BF16', targetedMetadata);
    expect(targeted.problems).toEqual([]);
    expect(targeted.warnings.filter((w) => w.includes('left out'))).toEqual([targetedWarning]);
    const excluded = await pipelinePlan(flux, EXCLUDED, rand, 'BF16', excludedMetadata);
    expect(excluded.problems).toEqual([]);
    expect(excluded.warnings.filter((w) => w.includes('left out'))).toEqual([excludedWarning]);
  });

  it('a file whose every module is untargeted is refused, naming why', async () => {
    const only = TARGETED.filter((s) => s.down.startsWith(FC1) || s.down.startsWith(FC2));
    const result = pipelinePlan(flux, only, rand, 'BF16', targetedMetadata);
    await expect(result).rejects.toThrow(`${targetedWarning}; no module of the file is left to merge`);
  });

  it.for([
    { what: 'r', rank_pattern: {}, from: 'transformer.r', says: 4 },
    { what: 'rank_pattern', rank_pattern: { 'transformer_blocks.0.attn.to_k': 8 }, from: 'transformer.rank_pattern', says: 8 },
  ])('a module whose rank is not the one the metadata\'s $what gives it is refused (PEFT builds the layer at that rank and the load fails)', async (c) => {
    const specs = [peft('transformer.transformer_blocks.0.attn.to_k', 2, h, h, undefined, 1)];
    const metadata = { format: 'pt', lora_adapter_metadata: JSON.stringify(loraConfig('transformer', { r: 4, lora_alpha: 4, target_modules: TRANSFORMER_TARGETS, rank_pattern: c.rank_pattern })) };
    const result = pipelinePlan(flux, specs, rand, 'BF16', metadata);
    await expect(result).rejects.toThrow(
      `${FILE}: module "transformer.transformer_blocks.0.attn.to_k" has rank 2 but its metadata ${METADATA} says ${c.says} (${c.from}); ` +
      'diffusers builds the LoRA layer at that rank and fails to load this module\'s tensors (size mismatch), so the file cannot be merged as diffusers loads it — fix the metadata or remove the module',
    );
  });
});

/**
 * CLIP text encoder modules in diffusers' names, as diffusers builds their LoraConfig
 * (_load_lora_into_text_encoder → _create_lora_config): from the metadata's `text_encoder.` fields
 * as they stand, or, without metadata, inferred from the tensors (get_peft_kwargs).
 */
describe('diffusers lora_adapter_metadata: a CLIP text encoder\'s LoraConfig', () => {
  const Q = `text_encoder.${TE}.self_attn.q_proj`;
  const PROJECTION = 'text_encoder.text_projection';
  const transformerOnly = { format: 'pt', lora_adapter_metadata: JSON.stringify(loraConfig('transformer', { r: 4, lora_alpha: 8, target_modules: TRANSFORMER_TARGETS })) };
  const remedy = 'add the "text_encoder" LoraConfig (text_encoder.target_modules, text_encoder.r, text_encoder.lora_alpha) to the metadata "lora_adapter_metadata", or remove the file\'s text_encoder modules';
  const specs = [
    peft('transformer.transformer_blocks.0.attn.to_q', 4, h, h, 'transformer.transformer_blocks.0.attn.to_q.weight', 8 / 4),
    peft(Q, 2, 12, 12, `${Q}.weight`, 1),
  ];

  it.for([
    { what: 'states no text_encoder LoraConfig', metadata: transformerOnly, says: 'states no "text_encoder" LoraConfig' },
    {
      what: 'states text_encoder\'s r and lora_alpha without target_modules',
      metadata: { format: 'pt', lora_adapter_metadata: JSON.stringify({ ...JSON.parse(transformerOnly.lora_adapter_metadata), 'text_encoder.r': 2, 'text_encoder.lora_alpha': 2 }) },
      says: 'states its "text_encoder" LoraConfig without target_modules',
    },
  ])('a file whose metadata $what is refused: PEFT refuses a LoraConfig without target_modules for CLIP, so diffusers cannot load it', async (c) => {
    await expect(pipelinePlan(flux, specs, rand, 'BF16', c.metadata)).rejects.toThrow(
      `${FILE}: module "${Q}" is a LoRA on the CLIP text encoder text_encoder, but the file's metadata ${METADATA} ${c.says}: ` +
      'diffusers loads text_encoder under the LoraConfig those fields make, PEFT finds no target_modules and no default for a CLIP text encoder and refuses it ("Please specify `target_modules`"), ' +
      `so diffusers cannot load this file; not supported — ${remedy}`,
    );
  });

  it('without any metadata every module merges, each at scale 1 whatever its rank (r, rank_pattern and alpha_pattern inferred from the tensors)', async () => {
    const mixed = [
      peft(Q, 2, 12, 12, `${Q}.weight`, 1),
      peft(`text_encoder.${TE}.self_attn.k_proj`, 4, 12, 12, `text_encoder.${TE}.self_attn.k_proj.weight`, 1),
      peft(FC1, 2, 24, 12, `${FC1}.weight`, 1),
      peft(FC2, 3, 12, 24, `${FC2}.weight`, 1),
      peft('transformer.transformer_blocks.0.attn.to_v', 4, h, h, 'transformer.transformer_blocks.0.attn.to_v.weight', 1),
    ];
    const bytes = buildSafetensors(loraTensors(rand, mixed, 'BF16'), { format: 'pt' });
    const { warnings } = await mergePipelineAndCheck(backend, flux, [{ file: 'lora.safetensors', bytes, specs: mixed, weight: 0.9 }], WRITTEN);
    expect(warnings.filter((w) => w.includes('left out'))).toEqual([]);
  });

  it('without metadata, a file with no q_proj … fc2 module on the encoder is refused (get_peft_kwargs finds no rank)', async () => {
    const only = [peft(PROJECTION, 2, 12, 12, undefined, 1)];
    await expect(pipelinePlan(flux, only, rand)).rejects.toThrow(
      `${FILE}: module "${PROJECTION}" is a LoRA on the CLIP text encoder text_encoder, and the file has no metadata ${METADATA}: diffusers then reads text_encoder's rank from its modules named q_proj, k_proj, v_proj, out_proj, fc1 and fc2 alone, ` +
      `of which the file has none, and fails (IndexError in get_peft_kwargs), so diffusers cannot load this file; not supported — ${remedy}`,
    );
  });

  it('without metadata, a module other than q_proj … fc2 whose rank is not the most common one of those is refused (built at that rank, size mismatch)', async () => {
    // Ranks 2, 4, 4 (layer 0's k_proj, v_proj registered before q_proj): the most common is 4.
    const tied = [
      peft(Q, 2, 12, 12, `${Q}.weight`, 1),
      peft(`text_encoder.${TE}.self_attn.k_proj`, 4, 12, 12, `text_encoder.${TE}.self_attn.k_proj.weight`, 1),
      peft(`text_encoder.${TE}.self_attn.v_proj`, 4, 12, 12, `text_encoder.${TE}.self_attn.v_proj.weight`, 1),
      peft(PROJECTION, 2, 12, 12, undefined, 1),
    ];
    await expect(pipelinePlan(flux, tied, rand)).rejects.toThrow(
      `${FILE}: module "${PROJECTION}" has rank 2, but the file has no metadata ${METADATA} and diffusers builds each text_encoder module not named q_proj, k_proj, v_proj, out_proj, fc1 or fc2 at the rank most of those have, 4, ` +
      `so it fails to load this module's tensors (size mismatch) and cannot load this file; not supported — ${remedy}`,
    );
  });

  it('without metadata, ties between ranks go to the module CLIP registers first (k_proj before q_proj)', async () => {
    const tie = [
      peft(Q, 2, 12, 12, `${Q}.weight`, 1),
      peft(`text_encoder.${TE}.self_attn.k_proj`, 4, 12, 12, `text_encoder.${TE}.self_attn.k_proj.weight`, 1),
      peft(PROJECTION, 2, 12, 12, undefined, 1),
    ];
    await expect(pipelinePlan(flux, tie, rand)).rejects.toThrow(`${FILE}: module "${PROJECTION}" has rank 2, but`);
  });
});
