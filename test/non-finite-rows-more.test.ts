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
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { fluxBflTensors } from './helpers/diffusion-fixtures.js';
import { randomTensor } from './helpers/hf-folder.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { DIMS, H, llama, mergeError, P, poison, prepareLlama, QKV, qkvLora } from './helpers/non-finite-cases.js';

const rand = seededRandom(20261207);
const backends = mergeBackends({ cpu: 'default' });
const { h } = DIMS;

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

describe.each(['cpu', 'webgpu'])('%s', (name) => {
  it(`a scaled fp8 Flux ${QKV} (scale_weight) with NaN codes in rows 10 and 100, under a LoRA: the weight's two rows and count`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const prepared = await prepareMerge(memoryInputFileSet({ 'flux1-dev-fp8.safetensors': scaledFp8Flux() }, 'flux1-dev-fp8.safetensors'), [
      { files: memoryInputFileSet({ 'style.safetensors': qkvLora(rand) }, 'style.safetensors') },
    ]);
    expect(await mergeError(prepared, backend)).toBe(
      `flux1-dev-fp8.safetensors/flux1-dev-fp8.safetensors: tensor "${QKV}.weight" already holds 2 NaN or Inf values in the base (first in row 10, last in row 100), and the merge updates it; ` +
        'the base file is broken: use an intact copy of the base',
    );
  });

  it('a q_proj bias holding NaN at elements 2 and 6 under PEFT lora_bias: the base named, both elements and the count', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const base = llama(rand).map((t) => t.name.endsWith('q_proj.bias') ? poison(t, [2, 6], NaN) : t);
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
    expect(await mergeError(await prepareLlama(llama(rand), { r: 2, target_modules: ['q_proj'], lora_bias: true }, adapter), backend)).toMatch(
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
    expect(await mergeError(await prepareLlama(llama(rand), { r: 2, target_modules: ['q_proj'], modules_to_save: ['lm_head'] }, adapter), backend)).toBe(
      'adapter1: tensor "base_model.model.lm_head.modules_to_save.default.weight" (replacing lm_head.weight, modules_to_save) holds 2 NaN or Inf values (first in row 3, last in row 12); the adapter file is broken',
    );
  });

  it('trainable tokens 4 and 17 (slabs of 8 rows) whose delta rows hold Inf: both tokens and the count', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const adapter = [poison(randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [2, H], 'F32', rand), [2, H + 4, H + 5], -Infinity)];
    expect(await mergeError(await prepareLlama(llama(rand), { r: 2, trainable_token_indices: [4, 17] }, adapter), backend)).toBe(
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
    expect(await mergeError(await prepareLlama(llama(rand), { r: 2, trainable_token_indices: [20] }, adapter), backend)).toBe(
      'adapter1: tensor "base_model.model.model.embed_tokens.base_layer.weight" (model.embed_tokens.weight saved with the adapter) holds 2 NaN or Inf values (first in row 5, last in row 13); the adapter file is broken',
    );
  });
});
