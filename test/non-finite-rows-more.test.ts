/**
 * NaN/Inf refusals name the tensor's own first (and last) bad row, element or token and how many
 * it holds, not the slab's that met them, on every path that writes values: a scaled fp8 weight
 * under a LoRA (ComfyUI's `scale_weight` files), a bias a LoRA updates (the base's own, or the
 * adapter's lora_B.bias), a tensor an adapter saves to replace the base's (modules_to_save), the
 * rows trainable tokens set and the resized embedding they start from. Each case puts the bad
 * values in two different slabs (mergeModel's smallest, 4096 bytes: 4 rows of 256 f32 values, 8 of
 * 256 f16 ones, 64 of 64 fp8 codes), so a message built from one slab names that slab's values only.
 */
import { describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend, type PreparedMerge } from '../src/index.js';
import { savedTensorRefusals } from '../src/pipeline/merge-model.js';
import { isMergeError } from '../src/errors.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors } from './helpers/diffusion-fixtures.js';
import { hfModelFolder, peftFolder, prepareFolders, randomTensor } from './helpers/hf-folder.js';
import { mergeBackends } from './helpers/merge-backends.js';

const rand = seededRandom(20261207);
const backends = mergeBackends({ cpu: 'default' });
/** mergeModel's smallest slab. */
const SLAB_BYTES = 4096;

/**
 * The one error a merge of `prepared` on `backend` stops with, as its message; where it is about a
 * tensor an adapter saves or a bias, savedTensorRefusals finds the same line before the merge.
 */
async function mergeError(prepared: PreparedMerge, backend: MergeBackend): Promise<string> {
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
  const saved = prepared.plan.replacements.length + prepared.plan.rowSets.length + prepared.plan.biasUpdates.length > 0 || prepared.plan.updates.some((u) => u.source);
  expect(ahead).toEqual(saved ? [(error as Error).message] : []);
  return (error as Error).message;
}

/** `t` with `value` at the flat indices `at`. */
function poison(t: FixtureTensor, at: number[], value: number): FixtureTensor {
  const data = Float64Array.from(t.data as ArrayLike<number>);
  for (const i of at) data[i] = value;
  return { ...t, data };
}

/** Flux cut to a hidden size of 64: the qkv is 192 × 64. */
const DIMS = { ...FLUX, h: 64 };
const { h } = DIMS;
const QKV = 'double_blocks.0.img_attn.qkv';

/**
 * Comfy-Org's scaled fp8 Flux (flux1-dev-fp8 scaled): 2-D weights F8_E4M3 codes with a F32
 * `scale_weight` each, the `scaled_fp8` marker, biases and norms bf16; the qkv weight (3h × h)
 * holds NaN codes at rows 10 and 100 (slabs 0–63 and 64–127).
 */
function scaledFp8Flux(): Uint8Array {
  const tensors = fluxBflTensors(rand, 'F32', DIMS).map((t): FixtureTensor => {
    if (t.shape.length < 2) return { ...t, dtype: 'BF16' };
    const codes = Array.from(t.data as ArrayLike<number>, (x) => Math.round(x * 60 * 8) / 8);
    const bad = t.name === `${QKV}.weight` ? poison({ ...t, data: codes }, [10 * h + 3, 100 * h + 6], NaN) : { ...t, data: codes };
    return { ...bad, dtype: 'F8_E4M3' };
  });
  const scales = tensors.filter((t) => t.shape.length >= 2).map((t): FixtureTensor => ({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [1 / 60] }));
  return buildSafetensors([...tensors, ...scales, { name: 'scaled_fp8', dtype: 'F8_E4M3', shape: [0], data: [] }]);
}

/** A kohya LoRA on the qkv (rank 2, alpha 2), bf16. */
function qkvLora(): Uint8Array {
  const name = 'lora_unet_double_blocks_0_img_attn_qkv';
  return buildSafetensors([
    randomTensor(`${name}.lora_down.weight`, [2, h], 'BF16', rand, 0.1),
    randomTensor(`${name}.lora_up.weight`, [3 * h, 2], 'BF16', rand, 0.1),
    { name: `${name}.alpha`, dtype: 'F32', shape: [], data: [2] },
  ], { ss_network_module: 'networks.lora_flux' });
}

// Llama cut small, f16: vocab 20, hidden 256 (so that 20 rows make several slabs).
const P = 'base_model.model';
const H = 256;
const LLAMA = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16', vocab_size: 20, tie_word_embeddings: false };
const llama = (): FixtureTensor[] => [
  randomTensor('model.embed_tokens.weight', [20, H], 'F16', rand),
  randomTensor('model.layers.0.self_attn.q_proj.weight', [H, H], 'F16', rand),
  randomTensor('model.layers.0.self_attn.q_proj.bias', [H], 'F16', rand),
  randomTensor('model.norm.weight', [H], 'F16', rand),
  randomTensor('lm_head.weight', [20, H], 'F16', rand),
];
const prepareLlama = (base: FixtureTensor[], config: object, adapter: FixtureTensor[]) => prepareFolders(hfModelFolder(base, LLAMA), [peftFolder(config, adapter)]);

describe.each(['cpu', 'webgpu'])('%s', (name) => {
  it(`a scaled fp8 Flux ${QKV} (scale_weight) with NaN codes in rows 10 and 100, under a LoRA: the weight's two rows and count`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const prepared = await prepareMerge(memoryInputFileSet({ 'flux1-dev-fp8.safetensors': scaledFp8Flux() }, 'flux1-dev-fp8.safetensors'), [
      { files: memoryInputFileSet({ 'style.safetensors': qkvLora() }, 'style.safetensors') },
    ]);
    expect(await mergeError(prepared, backend)).toBe(
      `flux1-dev-fp8.safetensors/flux1-dev-fp8.safetensors: tensor "${QKV}.weight" already holds 2 NaN or Inf values in the base (first in row 10, last in row 100), and the merge updates it; ` +
        'the base file is broken: use an intact copy of the base',
    );
  });

  it('a q_proj bias holding NaN at elements 2 and 6 under PEFT lora_bias: the base named, both elements and the count', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const base = llama().map((t) => t.name.endsWith('q_proj.bias') ? poison(t, [2, 6], NaN) : t);
    const adapter = [
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, H], 'F32', rand),
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [H, 2], 'F32', rand),
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.bias`, [H], 'F32', rand),
    ];
    expect(await mergeError(await prepareLlama(base, { r: 2, target_modules: ['q_proj'], lora_bias: true }, adapter), backend)).toBe(
      'base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.bias" already holds 2 NaN or Inf values in the base (first in element 2, last in element 6), and the merge updates it; ' +
        'the base file is broken: use an intact copy of the base',
    );
  });

  it('a lora_B.bias holding Inf at element 5: the adapter tensor, its element and the count', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const adapter = [
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, H], 'F32', rand),
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [H, 2], 'F32', rand),
      poison(randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.bias`, [H], 'F32', rand), [5], Infinity),
    ];
    expect(await mergeError(await prepareLlama(llama(), { r: 2, target_modules: ['q_proj'], lora_bias: true }, adapter), backend)).toMatch(
      /^adapter1 module "[^"]*q_proj": base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_B\.bias holds 1 NaN or Inf value \(element 5\); the adapter file is broken$/,
    );
  });

  it('a modules_to_save lm_head holding NaN in rows 3 and 12 (slabs of 4 rows): both rows and the count', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const adapter = [
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, H], 'F32', rand),
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [H, 2], 'F32', rand),
      poison(randomTensor(`${P}.lm_head.modules_to_save.default.weight`, [20, H], 'F32', rand), [3 * H + 1, 12 * H + 7], NaN),
    ];
    expect(await mergeError(await prepareLlama(llama(), { r: 2, target_modules: ['q_proj'], modules_to_save: ['lm_head'] }, adapter), backend)).toBe(
      'adapter1: tensor "base_model.model.lm_head.modules_to_save.default.weight" (replacing lm_head.weight, modules_to_save) holds 2 NaN or Inf values (first in row 3, last in row 12); the adapter file is broken',
    );
  });

  it('trainable tokens 4 and 17 (slabs of 8 rows) whose delta rows hold Inf: both tokens and the count', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const adapter = [poison(randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [2, H], 'F32', rand), [2, H + 4, H + 5], -Infinity)];
    expect(await mergeError(await prepareLlama(llama(), { r: 2, trainable_token_indices: [4, 17] }, adapter), backend)).toBe(
      'adapter1: tensor "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta" (trainable tokens of model.embed_tokens.weight) holds 3 NaN or Inf values ' +
        '(first in the row for token 4, last in the row for token 17); the adapter file is broken',
    );
  });

  it('a saved (resized) embedding holding NaN in rows 5 and 13 (slabs of 4 rows) that trainable tokens start from: both rows and the count', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const adapter = [
      poison(randomTensor(`${P}.model.embed_tokens.base_layer.weight`, [22, H], 'F32', rand), [5 * H + 2, 13 * H], NaN),
      randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [1, H], 'F32', rand),
      randomTensor(`${P}.lm_head.base_layer.weight`, [22, H], 'F32', rand),
    ];
    expect(await mergeError(await prepareLlama(llama(), { r: 2, trainable_token_indices: [20] }, adapter), backend)).toBe(
      'adapter1: tensor "base_model.model.model.embed_tokens.base_layer.weight" (model.embed_tokens.weight saved with the adapter) holds 2 NaN or Inf values (first in row 5, last in row 13); the adapter file is broken',
    );
  });
});
