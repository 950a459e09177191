/**
 * A diffusers pipeline folder downloaded whole from the Hub, with the single-file checkpoints its
 * repository keeps beside the diffusers folders: FLUX.1-dev's `flux1-dev.safetensors` (the
 * transformer in BFL's names) and `ae.safetensors` (the VAE), SDXL base's `sd_xl_base_1.0.safetensors`,
 * `sd_xl_base_1.0_0.9vae.safetensors`, its offset LoRA, and the folders model_index.json does not
 * list (`vae_1_0/`, `vae_decoder/`'s ONNX). diffusers loads the listed folders alone, and the merge
 * writes those: a copy of a root checkpoint in the merged folder would be the base unmerged under
 * a name ComfyUI and A1111 load, so each such file is left out with one warning naming it, in the
 * command line's merge and dry run and in the library's merge(); the listed folders merge exact
 * against float64 truth and the small files (README, LICENSE, images, model_index.json) are copied
 * byte for byte.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { merge as nodeMerge } from '../src/node-merge.js';
import { oneErrorLine, runCli } from './helpers/cli.js';
import { FLUX, fluxBflTensors, fluxDiffusersTensors, kohyaSpec, loraTensors, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { FLUX1_DEV } from './helpers/model-index.js';
import { kohyaKey, sdxlKohyaPair } from './helpers/sdxl-kohya-pair.js';
import { SDXL_NAMES } from './helpers/page-fixtures.js';

const dirs = tempDirs();
afterAll(() => dirs.removeAll());
const rand = seededRandom(1848);
const json = (o: object) => JSON.stringify(o, null, 2);
const { h } = FLUX;

/** Every file under `dir`, as paths relative to it, sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

// --- black-forest-labs/FLUX.1-dev, as `hf download` leaves it (the diffusers folders and the BFL files)
const TRANSFORMER = buildSafetensors(fluxDiffusersTensors(rand, 'BF16'));
const VAE = buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32'), tensor(rand, 'encoder.conv_in.weight', [8, 3, 3, 3], 'F32')]);
const FLUX_SMALL: Record<string, string | Uint8Array> = {
  'model_index.json': json(FLUX1_DEV),
  'README.md': '---\nlicense: other\nlicense_name: flux-1-dev-non-commercial-license\n---\n# FLUX.1 [dev]\n',
  'LICENSE.md': 'FLUX.1 [dev] Non-Commercial License\n',
  'dev_grid.jpg': new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]),
  'scheduler/scheduler_config.json': json({ _class_name: 'FlowMatchEulerDiscreteScheduler', shift: 3.0, use_dynamic_shifting: true }),
  'transformer/config.json': json({ _class_name: 'FluxTransformer2DModel', guidance_embeds: true, num_layers: 2, num_single_layers: 2 }),
  'vae/config.json': json({ _class_name: 'AutoencoderKL', latent_channels: 16 }),
};
const FLUX_FOLDER: Record<string, string | Uint8Array> = {
  ...FLUX_SMALL,
  'transformer/diffusion_pytorch_model.safetensors': TRANSFORMER,
  'vae/diffusion_pytorch_model.safetensors': VAE,
  // BFL's own files: the transformer in its original names, and the autoencoder.
  'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')),
  'ae.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 16, 3, 3], 'F32'), tensor(rand, 'encoder.conv_in.weight', [8, 3, 3, 3], 'F32')]),
};
// sd-scripts' networks.lora_flux (BFL names), r 4, α 8.
const T = (rest: string) => `transformer.${rest}.weight`;
const LORA_SPECS: LoraSpec[] = [
  kohyaSpec('lora_unet_double_blocks_0_txt_attn_proj', 4, h, h, [{ key: T('transformer_blocks.0.attn.to_add_out') }], 8),
  kohyaSpec('lora_unet_single_blocks_0_linear2', 4, h, 5 * h, [{ key: T('single_transformer_blocks.0.proj_out') }], 8),
];
const LORA = buildSafetensors(loraTensors(rand, LORA_SPECS, 'BF16'), { ss_network_module: 'networks.lora_flux', ss_base_model_version: 'flux1' });
const LEFT_OUT = 'not written: they are outside the folders model_index.json lists, which the diffusers pipeline loads and the merge writes, '
  + 'and copies would be left unmerged (a single-file checkpoint beside those folders is the base model as it was), so they are left out of the output; '
  + 'to merge one of them, give that file as the base on its own';
const fluxWarning = (base: string) => `warning: ${base}: ae.safetensors, flux1-dev.safetensors ${LEFT_OUT}`;

function fluxInputs(): { dir: string; base: string; lora: string } {
  const dir = dirs.make({ ...Object.fromEntries(Object.entries(FLUX_FOLDER).map(([k, v]) => [`base/${k}`, v])), 'flux_lora.safetensors': LORA });
  return { dir, base: join(dir, 'base'), lora: join(dir, 'flux_lora.safetensors') };
}

describe('a FLUX.1-dev folder with flux1-dev.safetensors and ae.safetensors beside its diffusers folders', () => {
  it('merges transformer/ and leaves the root checkpoints out with one warning naming them (CLI merge)', async () => {
    const { dir, base, lora } = fluxInputs();
    const out = join(dir, 'merged');
    const run = await runCli(['merge', '--base', base, '--adapter', lora, '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr.split('\n').filter((l) => l.includes('flux1-dev.safetensors'))).toEqual([fluxWarning(base)]);
    expect(filesUnder(out)).toEqual([...Object.keys(FLUX_SMALL), 'transformer/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors'].sort());
    for (const [path, bytes] of Object.entries(FLUX_SMALL)) expect(new Uint8Array(readFileSync(join(out, path))), path).toEqual(typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes);
    expect(new Uint8Array(readFileSync(join(out, 'vae/diffusion_pytorch_model.safetensors')))).toEqual(VAE);
    const terms = truthTerms(decodeSafetensors(LORA).tensors, LORA_SPECS, 1).map((t) => ({ ...t, baseKey: t.baseKey.slice('transformer.'.length) }));
    expectMergedFile(decodeSafetensors(TRANSFORMER).tensors, decodeSafetensors(new Uint8Array(readFileSync(join(out, 'transformer/diffusion_pytorch_model.safetensors')))).tensors, terms);
  });

  it('inspect lists them as left out, not among the files copied unchanged', async () => {
    const { base } = fluxInputs();
    const run = await runCli(['inspect', base]);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines.filter((l) => l.includes('flux1-dev.safetensors'))).toEqual([`  ${fluxWarning(base)}`]);
    expect(lines.find((l) => l.startsWith('  other files (copied unchanged): '))!.slice('  other files (copied unchanged): '.length).split(', ').sort()).toEqual(Object.keys(FLUX_SMALL).sort());
  });

  it('refuses weights under diffusers\' own names at the root, a component of a flat (transformers-style) pipeline diffusers loads there, writing nothing', async () => {
    const dir = dirs.make({
      ...Object.fromEntries(Object.entries(FLUX_FOLDER).map(([k, v]) => [`base/${k}`, v])),
      'base/model.safetensors': buildSafetensors([tensor(rand, 'model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16')]),
      'flux_lora.safetensors': LORA,
    });
    const run = await runCli(['merge', '--base', join(dir, 'base'), '--adapter', join(dir, 'flux_lora.safetensors'), '--out', join(dir, 'merged'), '--backend', 'cpu']);
    expect(run.code).toBe(1);
    expect(oneErrorLine(run)).toBe(`error: ${join(dir, 'base')}: model.safetensors at the root of a diffusers pipeline folder is a component diffusers loads from there (a flat, transformers-style layout), `
      + 'which is not merged here; merge that component on its own (its files in a folder without model_index.json)');
    expect(readdirSync(dir).sort()).toEqual(['base', 'flux_lora.safetensors']);
  });

  it('says so in the dry run too, and writes nothing', async () => {
    const { dir, base, lora } = fluxInputs();
    const run = await runCli(['merge', '--base', base, '--adapter', lora, '--out', join(dir, 'merged'), '--dry-run']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr.split('\n').filter((l) => l.includes('flux1-dev.safetensors'))).toEqual([fluxWarning(base)]);
    expect(readdirSync(dir).sort()).toEqual(['base', 'flux_lora.safetensors']);
  });
});

// --- stabilityai/stable-diffusion-xl-base-1.0, as downloaded whole
const SDXL_INDEX = {
  _class_name: 'StableDiffusionXLPipeline', _diffusers_version: '0.19.0.dev0', force_zeros_for_empty_prompt: true, add_watermarker: null,
  scheduler: ['diffusers', 'EulerDiscreteScheduler'], text_encoder: ['transformers', 'CLIPTextModel'], text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
  tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
};
const pair = sdxlKohyaPair(8, 20261207);
const SDXL_SMALL: Record<string, string | Uint8Array> = {
  'model_index.json': json(SDXL_INDEX),
  'README.md': '---\nlicense: openrail++\n---\n# SD-XL 1.0-base Model Card\n',
  'LICENSE.md': 'CreativeML Open RAIL++-M License\n',
  '01.png': new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  'unet/config.json': json({ _class_name: 'UNet2DConditionModel', cross_attention_dim: 2048 }),
  'vae/config.json': json({ _class_name: 'AutoencoderKL', latent_channels: 4 }),
  'vae_1_0/config.json': json({ _class_name: 'AutoencoderKL', latent_channels: 4 }),
};
const SDXL_VAE = buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);
const SDXL_FOLDER: Record<string, string | Uint8Array> = {
  ...SDXL_SMALL,
  'unet/diffusion_pytorch_model.safetensors': pair.base,
  'vae/diffusion_pytorch_model.safetensors': SDXL_VAE,
  'vae_1_0/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
  'vae_decoder/model.onnx': new Uint8Array([8, 7, 18, 7]),
  // Stability's single files: the LDM checkpoint (model.diffusion_model., conditioner., first_stage_model.), its copy with the 0.9 VAE, the offset LoRA.
  'sd_xl_base_1.0.safetensors': buildSafetensors([
    tensor(rand, 'model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn1.to_q.weight', [8, 8], 'F16'),
    tensor(rand, 'conditioner.embedders.0.transformer.text_model.final_layer_norm.weight', [8], 'F16'),
    tensor(rand, 'first_stage_model.decoder.conv_in.weight', [8, 4, 3, 3], 'F16'),
  ]),
  'sd_xl_base_1.0_0.9vae.safetensors': buildSafetensors([tensor(rand, 'model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn1.to_q.weight', [8, 8], 'F16')]),
  'sd_xl_offset_example-lora_1.0.safetensors': buildSafetensors([
    tensor(rand, 'lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_down.weight', [2, 8], 'F16'),
    tensor(rand, 'lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_up.weight', [8, 2], 'F16'),
  ]),
};

describe('an SDXL base folder with sd_xl_base_1.0.safetensors and folders model_index.json does not list', () => {
  it('merges unet/ and leaves the stray weight files out with one warning naming them (library merge())', async () => {
    const dir = dirs.make({ ...Object.fromEntries(Object.entries(SDXL_FOLDER).map(([k, v]) => [`base/${k}`, v])), 'sdxl_lora.safetensors': pair.kohya });
    const out = join(dir, 'merged');
    const result = await nodeMerge({ base: join(dir, 'base'), adapters: [{ source: join(dir, 'sdxl_lora.safetensors'), weight: 0.5 }], out, backend: 'cpu' });
    const stray = ['sd_xl_base_1.0.safetensors', 'sd_xl_base_1.0_0.9vae.safetensors', 'sd_xl_offset_example-lora_1.0.safetensors', 'vae_1_0/diffusion_pytorch_model.safetensors', 'vae_decoder/model.onnx'];
    const warning = result.plan.warnings.filter((w) => w.includes('sd_xl_base_1.0.safetensors'));
    expect(warning).toHaveLength(1);
    expect(warning[0]).toBe(`${join(dir, 'base')}: ${stray.join(', ')} ${LEFT_OUT}`);
    expect(filesUnder(out)).toEqual([...Object.keys(SDXL_SMALL), 'unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors'].sort());
    expect(result.files.sort()).toEqual(filesUnder(out));
    for (const [path, bytes] of Object.entries(SDXL_SMALL)) expect(new Uint8Array(readFileSync(join(out, path))), path).toEqual(typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(join(out, 'unet/diffusion_pytorch_model.safetensors')))).tensors;
    const truth = pair.mergedTruth(0.5);
    for (const name of SDXL_NAMES) expect(Array.from(merged.get(name)!.values), `${name} (${kohyaKey(name)})`).toEqual(Array.from(truth.get(name)!));
  });
});
