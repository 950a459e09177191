/**
 * Models and adapters as page tests upload them, with real key names: a small Llama-style base
 * with a PEFT LoRA folder, and an SDXL-style diffusers UNet (long tensor names) with a kohya LoRA.
 */
import { buildSafetensors, randomValues, seededRandom, type FixtureTensor } from './fixtures.js';

export interface PeftFixture {
  files: Record<string, Uint8Array | string>;
  base: Uint8Array;
  adapter: Uint8Array;
  rank: number;
  alpha: number;
}

/** Sizes of llamaWithPeft's slice and LoRA. */
export interface LlamaSizes {
  hidden?: number;
  mlp?: number;
  rank?: number;
  alpha?: number;
}

/**
 * `llama.safetensors` (F16, two layers, with its `embed_tokens`) and `llama-lora/` (PEFT, F32) on
 * q_proj and down_proj; by default hidden 16, MLP 40, r = 2, α = 4.
 */
export function llamaWithPeft(seed: number, { hidden = 16, mlp = 40, rank = 2, alpha = 4 }: LlamaSizes = {}): PeftFixture {
  const rand = seededRandom(seed);
  const shapes: Record<string, [number, number]> = {
    'model.layers.0.self_attn.q_proj.weight': [hidden, hidden],
    'model.layers.0.mlp.down_proj.weight': [hidden, mlp],
    'model.layers.1.self_attn.q_proj.weight': [hidden, hidden],
    'model.layers.1.mlp.down_proj.weight': [hidden, mlp],
  };
  const tensors: FixtureTensor[] = Object.entries(shapes).map(([name, shape]) => ({ name, dtype: 'F16', shape, data: randomValues(shape[0] * shape[1], rand, 0.5) }));
  tensors.push({ name: 'model.embed_tokens.weight', dtype: 'F16', shape: [50, hidden], data: randomValues(50 * hidden, rand) });
  const adapter = buildSafetensors(Object.entries(shapes).flatMap(([name, [out, inF]]) => {
    const module = `base_model.model.${name.replace(/\.weight$/, '')}`;
    return [
      { name: `${module}.lora_A.weight`, dtype: 'F32' as const, shape: [rank, inF], data: randomValues(rank * inF, rand, 0.3) },
      { name: `${module}.lora_B.weight`, dtype: 'F32' as const, shape: [out, rank], data: randomValues(out * rank, rand, 0.3) },
    ];
  }));
  const base = buildSafetensors(tensors);
  const config = JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: alpha, target_modules: ['q_proj', 'down_proj'] });
  return {
    base, adapter, rank, alpha,
    files: { 'llama.safetensors': base, 'llama-lora/adapter_config.json': config, 'llama-lora/adapter_model.safetensors': adapter },
  };
}

/** SDXL UNet tensor names, among the longest a user meets. */
export const SDXL_NAMES = [
  'down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q.weight',
  'mid_block.attentions.0.transformer_blocks.7.attn2.to_k.weight',
  'up_blocks.0.attentions.2.transformer_blocks.9.attn2.to_out.0.weight',
  'up_blocks.1.attentions.2.transformer_blocks.1.ff.net.0.proj.weight',
];

/** `unet/diffusion_pytorch_model.safetensors` (+ config) and `sdxl-style.safetensors` (kohya, r = 2). */
export function sdxlWithKohya(seed: number): { files: Record<string, Uint8Array | string> } {
  const rand = seededRandom(seed);
  const dim = 12;
  const base = buildSafetensors(SDXL_NAMES.map((name) => ({ name, dtype: 'F16' as const, shape: [dim, dim], data: randomValues(dim * dim, rand, 0.5) })));
  const rank = 2;
  const lora = buildSafetensors(SDXL_NAMES.flatMap((name) => {
    const module = `lora_unet_${name.replace(/\.weight$/, '').replace(/\./g, '_')}`;
    return [
      { name: `${module}.lora_down.weight`, dtype: 'F32' as const, shape: [rank, dim], data: randomValues(rank * dim, rand, 0.3) },
      { name: `${module}.lora_up.weight`, dtype: 'F32' as const, shape: [dim, rank], data: randomValues(dim * rank, rand, 0.3) },
      { name: `${module}.alpha`, dtype: 'F32' as const, shape: [], data: [1] },
    ];
  }));
  return {
    files: {
      'unet/diffusion_pytorch_model.safetensors': base,
      'unet/config.json': '{"_class_name": "UNet2DConditionModel"}',
      'sdxl-style.safetensors': lora,
    },
  };
}

/**
 * A whole SDXL diffusers pipeline folder as people download it (model_index.json, a sharded UNet
 * with its index, both text encoders, the VAE, scheduler and tokenizer files; real key names,
 * shapes scaled down) and a kohya LoRA that trains text encoder 1 only (`lora_te1_…`, α per
 * module). `te1` lists the LoRA's modules with the text encoder tensors they land on, as the
 * tensors are named inside `text_encoder/model.safetensors`.
 */
export function sdxlPipelineWithTextEncoderLora(seed: number): {
  pipeline: Record<string, Uint8Array | string>;
  lora: Uint8Array;
  te1: { module: string; tensor: string; rank: number; alpha: number }[];
} {
  const rand = seededRandom(seed);
  const json = (o: object) => JSON.stringify(o, null, 2);
  const t = (name: string, shape: number[], dtype: 'F16' | 'F32' = 'F16'): FixtureTensor =>
    ({ name, dtype, shape, data: randomValues(shape.reduce((a, b) => a * b, 1), rand, 0.5) });
  const unetA = ['down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight', 'down_blocks.1.attentions.0.proj_in.weight'];
  const unetB = ['mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight', 'up_blocks.0.attentions.1.proj_out.weight'];
  const TE = 'text_model.encoder.layers.0';
  const pipeline: Record<string, Uint8Array | string> = {
    'model_index.json': json({
      _class_name: 'StableDiffusionXLPipeline', _diffusers_version: '0.30.0',
      unet: ['diffusers', 'UNet2DConditionModel'], text_encoder: ['transformers', 'CLIPTextModel'],
      text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'], vae: ['diffusers', 'AutoencoderKL'],
      scheduler: ['diffusers', 'EulerDiscreteScheduler'], tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'],
    }),
    'unet/config.json': json({ _class_name: 'UNet2DConditionModel' }),
    'unet/diffusion_pytorch_model-00001-of-00002.safetensors': buildSafetensors(unetA.map((n) => t(n, [16, 16]))),
    'unet/diffusion_pytorch_model-00002-of-00002.safetensors': buildSafetensors(unetB.map((n) => t(n, [16, 16]))),
    'unet/diffusion_pytorch_model.safetensors.index.json': json({
      metadata: { total_size: 2048 },
      weight_map: Object.fromEntries([
        ...unetA.map((n) => [n, 'diffusion_pytorch_model-00001-of-00002.safetensors']),
        ...unetB.map((n) => [n, 'diffusion_pytorch_model-00002-of-00002.safetensors']),
      ]),
    }),
    'text_encoder/config.json': json({ architectures: ['CLIPTextModel'] }),
    'text_encoder/model.safetensors': buildSafetensors([
      t(`${TE}.self_attn.q_proj.weight`, [12, 12]), t(`${TE}.mlp.fc1.weight`, [24, 12]), t('text_model.final_layer_norm.weight', [12]),
    ]),
    'text_encoder_2/config.json': json({ architectures: ['CLIPTextModelWithProjection'] }),
    'text_encoder_2/model.safetensors': buildSafetensors([t(`${TE}.self_attn.q_proj.weight`, [16, 16]), t('text_projection.weight', [16, 16])]),
    'vae/config.json': json({ _class_name: 'AutoencoderKL' }),
    'vae/diffusion_pytorch_model.safetensors': buildSafetensors([t('decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
    'scheduler/scheduler_config.json': json({ _class_name: 'EulerDiscreteScheduler' }),
    'tokenizer/vocab.json': '{"a": 0}',
    'tokenizer_2/merges.txt': '#version: 0.2\n',
  };
  const te1 = [
    { module: 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', tensor: `${TE}.self_attn.q_proj.weight`, rank: 2, alpha: 1, out: 12, in: 12 },
    { module: 'lora_te1_text_model_encoder_layers_0_mlp_fc1', tensor: `${TE}.mlp.fc1.weight`, rank: 4, alpha: 8, out: 24, in: 12 },
  ];
  const lora = buildSafetensors(te1.flatMap((m) => [
    { name: `${m.module}.lora_down.weight`, dtype: 'F16' as const, shape: [m.rank, m.in], data: randomValues(m.rank * m.in, rand, 0.3) },
    { name: `${m.module}.lora_up.weight`, dtype: 'F16' as const, shape: [m.out, m.rank], data: randomValues(m.out * m.rank, rand, 0.3) },
    { name: `${m.module}.alpha`, dtype: 'F32' as const, shape: [], data: [m.alpha] },
  ]), { ss_network_module: 'networks.lora', ss_base_model_version: 'sdxl_base_v1-0' });
  return { pipeline, lora, te1: te1.map(({ module, tensor, rank, alpha }) => ({ module, tensor, rank, alpha })) };
}
