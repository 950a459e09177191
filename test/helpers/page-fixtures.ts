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

/** `llama.safetensors` (F16) and `llama-lora/` (PEFT, r = 2, α = 4) on q_proj and down_proj. */
export function llamaWithPeft(seed: number): PeftFixture {
  const rand = seededRandom(seed);
  const hidden = 16, mlp = 40;
  const shapes: Record<string, [number, number]> = {
    'model.layers.0.self_attn.q_proj.weight': [hidden, hidden],
    'model.layers.0.mlp.down_proj.weight': [hidden, mlp],
    'model.layers.1.self_attn.q_proj.weight': [hidden, hidden],
    'model.layers.1.mlp.down_proj.weight': [hidden, mlp],
  };
  const tensors: FixtureTensor[] = Object.entries(shapes).map(([name, shape]) => ({ name, dtype: 'F16', shape, data: randomValues(shape[0] * shape[1], rand, 0.5) }));
  tensors.push({ name: 'model.embed_tokens.weight', dtype: 'F16', shape: [50, hidden], data: randomValues(50 * hidden, rand) });
  const rank = 2, alpha = 4;
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
