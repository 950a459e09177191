/**
 * mlx-lm adapter folders as mlx_lm.lora writes them (adapter_config.json of its training
 * arguments, adapters.safetensors with `format: mlx`), and LoRALinear.fuse's merge as float64 truth.
 */
import { buildSafetensors, type DecodedTensor, type FixtureTensor } from './fixtures.js';

type Files = Record<string, string | Uint8Array>;

/** adapter_config.json as mlx_lm.lora writes it: its arguments, sorted by name (utils.py save_config). */
export function mlxConfig(fields: Record<string, unknown>): string {
  const args: Record<string, unknown> = {
    adapter_path: 'adapters', batch_size: 4, config: null, data: 'data/', fine_tune_type: 'lora', grad_accumulation_steps: 1,
    grad_checkpoint: false, iters: 600, learning_rate: 1e-5, lora_parameters: { rank: 8, dropout: 0.0, scale: 20.0 },
    lr_schedule: null, mask_prompt: false, max_seq_length: 2048, model: 'mlx-community/Llama-3.2-1B-Instruct', num_layers: 1,
    optimizer: 'adam', optimizer_config: { adam: {}, adamw: {} }, resume_adapter_file: null, save_every: 100, seed: 0,
    steps_per_eval: 200, steps_per_report: 10, test: false, test_batches: 500, train: true, val_batches: 25, wandb: null,
    ...fields,
  };
  for (const [k, v] of Object.entries(args)) if (v === undefined) delete args[k];
  return JSON.stringify(Object.fromEntries(Object.entries(args).sort(([a], [b]) => (a < b ? -1 : 1))), null, 4);
}

/** An adapter folder: adapter_config.json and adapters.safetensors (mx.save_safetensors writes `format: mlx`). */
export function mlxFolder(config: Record<string, unknown>, tensors: FixtureTensor[], extra: Files = {}): Files {
  return { 'adapter_config.json': mlxConfig(config), 'adapters.safetensors': buildSafetensors(tensors, { format: 'mlx' }), ...extra };
}

/** lora_a·lora_b, (rows of a) × (cols of b), as doubles. */
export function aTimesB(a: DecodedTensor, b: DecodedTensor): Float64Array {
  const [rows, r] = a.shape;
  const cols = b.shape[1];
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    let sum = 0;
    for (let k = 0; k < r; k++) sum += a.values[i * r + k] * b.values[k * cols + j];
    out[i * cols + j] = sum;
  }
  return out;
}

/** LoRALinear.fuse: W + scale·lora_bᵀ·lora_aᵀ, i.e. element (o, i) adds scale·(lora_a·lora_b)[i, o]. */
export function linearTruth(w: DecodedTensor, a: DecodedTensor, b: DecodedTensor, scale: number): Float64Array {
  const ab = aTimesB(a, b); // (in, out)
  const [out, inF] = w.shape;
  const merged = w.values.slice();
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) merged[o * inF + i] += scale * ab[i * out + o];
  return merged;
}

