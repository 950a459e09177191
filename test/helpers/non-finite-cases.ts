/**
 * What the NaN/Inf refusal tests share (non-finite-rows-more, non-finite-rows-exact): mergeModel's
 * smallest slab, the one error a merge stops with, a tensor with bad values put in, a Flux cut to
 * hidden size 64 with a kohya LoRA on its qkv, and a Llama cut small with a PEFT folder on it.
 */
import { expect } from 'vitest';
import { createBlobOutputTarget, mergeModel, type MergeBackend, type PreparedMerge } from '../../src/index.js';
import { isMergeError } from '../../src/errors.js';
import { savedTensorRefusals } from '../../src/pipeline/merge-model.js';
import { buildSafetensors, type FixtureTensor } from './fixtures.js';
import { FLUX, type Rand } from './diffusion-fixtures.js';
import { hfModelFolder, peftFolder, prepareFolders, randomTensor } from './hf-folder.js';

/** mergeModel's smallest slab. */
export const SLAB_BYTES = 4096;

/**
 * The NON_FINITE error a merge of `prepared` on `backend` into `outDtype` (a GGUF block type
 * re-quantizing what it copies) stops with, as its message, in slabs of `slabBytes`; closes `prepared`.
 */
export async function nonFiniteStop(prepared: PreparedMerge, backend: MergeBackend, outDtype: string, slabBytes = SLAB_BYTES): Promise<string> {
  expect(prepared.plan.problems).toEqual([]);
  try {
    await mergeModel({ prepared, output: createBlobOutputTarget(), backend, outDtype, slabBytes });
  } catch (e) {
    expect(isMergeError(e) && e.code, String(e)).toBe('NON_FINITE');
    return (e as Error).message;
  } finally {
    await prepared.close();
  }
  throw new Error('merged without a refusal');
}

/**
 * The one error a merge of `prepared` on `backend` stops with, as its message; where it is about a
 * tensor an adapter saves or a bias, savedTensorRefusals finds the same line before the merge.
 */
export async function mergeError(prepared: PreparedMerge, backend: MergeBackend): Promise<string> {
  expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
  let error: unknown;
  const ahead = await savedTensorRefusals(prepared);
  try {
    await mergeModel({ prepared, output: createBlobOutputTarget(), backend, slabBytes: SLAB_BYTES });
  } catch (e) {
    error = e;
  } finally {
    await prepared.close();
  }
  expect(isMergeError(error) && error.code, String(error)).toBe('NON_FINITE');
  // Where the error is about a tensor an adapter saves or a bias, savedTensorRefusals finds the same line before the merge.
  const saved = prepared.plan.replacements.length + prepared.plan.rowSets.length + prepared.plan.biasUpdates.length > 0 || prepared.plan.updates.some((u) => u.source);
  // An IA3 vector also scales the bias: ahead, its refusal is met at the bias, not at the weight.
  const message = (error as Error).message;
  const atBias = message.includes(': factor ') && prepared.plan.biasUpdates.some((b) => b.terms.some((t) => t.multiply))
    ? message.replace(/(tensor "[^"]*)\.weight"\)$/, '$1.bias")') : message;
  expect(ahead).toEqual(saved ? [atBias] : []);
  return (error as Error).message;
}

/** `t` with `value` at the flat indices `at`. */
export function poison(t: FixtureTensor, at: number[], value: number): FixtureTensor {
  const data = Float64Array.from(t.data as ArrayLike<number>);
  for (const i of at) data[i] = value;
  return { ...t, data };
}

/** Flux cut to a hidden size of 64: the qkv is 192 × 64. */
export const DIMS = { ...FLUX, h: 64 };
export const QKV = 'double_blocks.0.img_attn.qkv';

/** A kohya LoRA on the qkv (rank 2, alpha 2), bf16. */
export function qkvLora(rand: Rand): Uint8Array {
  const name = 'lora_unet_double_blocks_0_img_attn_qkv';
  const { h } = DIMS;
  return buildSafetensors([
    randomTensor(`${name}.lora_down.weight`, [2, h], 'BF16', rand, 0.1),
    randomTensor(`${name}.lora_up.weight`, [3 * h, 2], 'BF16', rand, 0.1),
    { name: `${name}.alpha`, dtype: 'F32', shape: [], data: [2] },
  ], { ss_network_module: 'networks.lora_flux' });
}

// Llama cut small, f16: vocab 20, hidden 256 (so that 20 rows make several slabs).
export const P = 'base_model.model';
export const H = 256;
const LLAMA = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16', vocab_size: 20, tie_word_embeddings: false };
export const llama = (rand: Rand): FixtureTensor[] => [
  randomTensor('model.embed_tokens.weight', [20, H], 'F16', rand),
  randomTensor('model.layers.0.self_attn.q_proj.weight', [H, H], 'F16', rand),
  randomTensor('model.layers.0.self_attn.q_proj.bias', [H], 'F16', rand),
  randomTensor('model.norm.weight', [H], 'F16', rand),
  randomTensor('lm_head.weight', [20, H], 'F16', rand),
];
export const prepareLlama = (base: FixtureTensor[], config: object, adapter: FixtureTensor[]) => prepareFolders(hfModelFolder(base, LLAMA), [peftFolder(config, adapter)]);
