/** Small PEFT folders and kohya files on disk, with the real key names and configs of those formats. */
import { buildSafetensors, randomValues, type FixtureTensor } from './fixtures.js';
import type { Dense } from './svd-reference.js';

export interface FixtureModule {
  /** PEFT module path (`model.layers.0.self_attn.q_proj`) or kohya module key (`lora_unet_…`). */
  name: string;
  /** B: out × r */
  b: Dense;
  /** A: r × in */
  a: Dense;
  alpha?: number;
}

/** adapter_config.json + adapter_model.safetensors (f32 factors). */
export function peftFiles(modules: FixtureModule[], config: Record<string, unknown> = {}): Record<string, Uint8Array | string> {
  const tensors: FixtureTensor[] = [];
  for (const m of modules) {
    tensors.push({ name: `base_model.model.${m.name}.lora_A.weight`, dtype: 'F32', shape: [m.a.rows, m.a.cols], data: m.a.data });
    tensors.push({ name: `base_model.model.${m.name}.lora_B.weight`, dtype: 'F32', shape: [m.b.rows, m.b.cols], data: m.b.data });
  }
  const r = modules[0].a.rows;
  return {
    'adapter_config.json': JSON.stringify({
      peft_type: 'LORA', r, lora_alpha: modules[0].alpha ?? r, target_modules: ['q_proj', 'v_proj'],
      base_model_name_or_path: 'org/tiny-llama', task_type: 'CAUSAL_LM', ...config,
    }),
    'adapter_model.safetensors': buildSafetensors(tensors, { format: 'pt' }),
  };
}

/** A PEFT LoRA of rank `r` on one module (such as `lm_head`), its factors drawn from `rand` and rounded to f32. */
export function peftLoraOn(module: string, rows: number, cols: number, rand: () => number, r = 2): Record<string, Uint8Array | string> {
  const dense = (m: number, n: number): Dense => ({ rows: m, cols: n, data: randomValues(m * n, rand, 0.3).map(Math.fround) });
  return peftFiles([{ name: module, b: dense(rows, r), a: dense(r, cols) }], { target_modules: [module.slice(module.lastIndexOf('.') + 1)] });
}

/** One kohya file: `<key>.lora_down.weight`, `.lora_up.weight`, scalar `.alpha`, ss_* metadata. */
export function kohyaFile(modules: FixtureModule[]): Uint8Array {
  const tensors: FixtureTensor[] = [];
  for (const m of modules) {
    tensors.push({ name: `${m.name}.lora_down.weight`, dtype: 'F32', shape: [m.a.rows, m.a.cols], data: m.a.data });
    tensors.push({ name: `${m.name}.lora_up.weight`, dtype: 'F32', shape: [m.b.rows, m.b.cols], data: m.b.data });
    tensors.push({ name: `${m.name}.alpha`, dtype: 'F32', shape: [], data: [m.alpha ?? m.a.rows] });
  }
  return buildSafetensors(tensors, { ss_network_module: 'networks.lora', ss_network_dim: String(modules[0].a.rows), ss_base_model_version: 'sdxl_base_v1-0' });
}
