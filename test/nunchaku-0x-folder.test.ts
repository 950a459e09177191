/**
 * A nunchaku 0.x model folder given whole (mit-han-lab/svdq-int4-flux.1-dev as nunchaku 0.x and
 * deepcompressor's nunchaku export saved it: the diffusers transformer's config.json,
 * `transformer_blocks.safetensors` with the SVDQuant blocks, `unquantized_layers.safetensors` with
 * the layers left bf16; 0.x's NunchakuFluxTransformer2dModel.from_pretrained reads both files). It
 * holds two weight files and no index, and was refused as any such folder, without naming nunchaku;
 * it is refused as the single file is, naming nunchaku and what to do. Other folders of two weight
 * files keep the generic refusal. Layers as nunchaku 0.x's `transformer_blocks.safetensors` holds
 * them (`qkv_proj.qweight` I8 (out, in/2), `wscales` (in/64, out), `smooth` (in), the low-rank branch
 * `lora_down` (in, r) and `lora_up` (out, r)); shapes cut small.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';

const rand = seededRandom(4032);
const n = 8, r = 4;

/** One W4A4 layer of nunchaku 0.x: codes, scales, smoothing, the low-rank branch, bias. */
function oldLayer(m: string, out: number, inF: number): FixtureTensor[] {
  return [
    { name: `${m}.qweight`, dtype: 'I8', shape: [out, inF / 2], data: new Array(out * inF / 2).fill(3) },
    tensor(rand, `${m}.wscales`, [1, out], 'BF16'), tensor(rand, `${m}.smooth`, [inF], 'BF16'),
    tensor(rand, `${m}.lora_down`, [inF, r], 'BF16'), tensor(rand, `${m}.lora_up`, [out, r], 'BF16'), tensor(rand, `${m}.bias`, [out], 'BF16'),
  ];
}

/** mit-han-lab/svdq-int4-flux.1-dev at nunchaku 0.x: FLUX.1-dev's transformer config, cut to one block. */
const folder: Record<string, Uint8Array | string> = {
  'config.json': JSON.stringify({
    _class_name: 'FluxTransformer2DModel', _diffusers_version: '0.30.0.dev0', attention_head_dim: 128, guidance_embeds: true,
    in_channels: 64, joint_attention_dim: 4096, num_attention_heads: 24, num_layers: 1, num_single_layers: 1, patch_size: 1, pooled_projection_dim: 768,
  }, null, 2),
  'transformer_blocks.safetensors': buildSafetensors([
    ...oldLayer('transformer_blocks.0.qkv_proj', 3 * n, n),
    ...oldLayer('transformer_blocks.0.out_proj', n, n),
    ...oldLayer('single_transformer_blocks.0.qkv_proj', 3 * n, n),
  ]),
  'unquantized_layers.safetensors': buildSafetensors([
    tensor(rand, 'x_embedder.weight', [n, 16], 'BF16'), tensor(rand, 'x_embedder.bias', [n], 'BF16'),
    tensor(rand, 'proj_out.weight', [16, n], 'BF16'), tensor(rand, 'transformer_blocks.0.norm1.linear.weight', [6 * n, n], 'BF16'),
  ]),
};

/** A LoRA on the layers nunchaku leaves unquantized: without the refusal by name these would be the question. */
const lora = buildSafetensors([
  tensor(rand, 'transformer.x_embedder.lora_A.weight', [r, 16], 'BF16'), tensor(rand, 'transformer.x_embedder.lora_B.weight', [n, r], 'BF16'),
  tensor(rand, 'transformer.proj_out.lora_A.weight', [r, n], 'BF16'), tensor(rand, 'transformer.proj_out.lora_B.weight', [16, r], 'BF16'),
]);

const NAME = 'svdq-int4-flux.1-dev';
const REFUSAL = `${NAME}/transformer_blocks.safetensors: a nunchaku SVDQuant model (4-bit W4A4 layers with a low-rank branch: transformer_blocks.0.qkv_proj.qweight, .wscales, .lora_down, .lora_up; 3 quantized layers), with unquantized_layers.safetensors beside it, a nunchaku 0.x model folder; nunchaku applies a LoRA at run time in that low-rank branch and no merged 4-bit weight reproduces it: load the LoRA with nunchaku (ComfyUI-nunchaku's LoRA loader, or update_lora_params in Python), or merge into the bf16 or fp8 model and quantize the result again`;

const refusal = (files: Record<string, Uint8Array | string>) =>
  prepareMerge(memoryInputFileSet(files, NAME), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }])
    .then(() => undefined, (e: Error & { code?: string }) => ({ code: e.code, message: e.message }));

const backends = mergeBackends({ cpu: 'default' });
const temp = tempDirs();
afterAll(temp.removeAll);

describe('a nunchaku 0.x model folder given whole', () => {
  it('is refused in one line naming nunchaku 0.x, its first SVDQuant layer and what to do', async () => {
    expect(await refusal(folder)).toEqual({ code: 'UNSUPPORTED_FORMAT', message: REFUSAL });
  });

  it('through the CLI: one error line, nothing written', async () => {
    await expectRefusedByCliAndLibrary(temp.make, backends.cpu!, folder, { 'lora.safetensors': lora }, /a nunchaku SVDQuant model .*, a nunchaku 0\.x model folder; .*load the LoRA with nunchaku/);
  });

  it('as the transformer/ of a FLUX.1 pipeline folder: refused the same way, naming the folder', async () => {
    const pipeline: Record<string, Uint8Array | string> = {
      'model_index.json': JSON.stringify({ _class_name: 'FluxPipeline', _diffusers_version: '0.30.0.dev0', transformer: ['diffusers', 'FluxTransformer2DModel'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'] }),
      ...Object.fromEntries(Object.entries(folder).map(([path, bytes]) => [`transformer/${path}`, bytes])),
    };
    const got = await prepareMerge(memoryInputFileSet(pipeline, 'FLUX.1-dev'), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }])
      .then(() => undefined, (e: Error & { code?: string }) => ({ code: e.code, message: e.message }));
    expect(got).toEqual({ code: 'UNSUPPORTED_FORMAT', message: REFUSAL.replace(`${NAME}/`, 'FLUX.1-dev/transformer/') });
  });

  it('two files of those names with no nunchaku layer in transformer_blocks.safetensors keep the refusal of any folder of two weight files', async () => {
    const plain = { ...folder, 'transformer_blocks.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [n, n], 'BF16')]) };
    expect(await refusal(plain)).toEqual({
      code: 'UNSUPPORTED_FORMAT',
      message: `${NAME}: 2 .safetensors files (transformer_blocks.safetensors, unquantized_layers.safetensors) and no index; point at one file or one component folder`,
    });
  });
});
