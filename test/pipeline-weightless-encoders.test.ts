/**
 * Pipeline folders whose model_index.json lists a T5 text encoder (FLUX.1's `text_encoder_2`,
 * SD3's `text_encoder_3`, Chroma's and DeepFloyd IF's `text_encoder`: T5EncoderModel) whose folder
 * holds no .safetensors weights (transformer/ and model_index.json downloaded alone, or the folder's
 * config.json with them). A LoRA's T5 modules are routed as on the complete pipeline (t5-beside-clips.ts:
 * kohya's `lora_te2_`/`lora_te3_` and OneTrainer's `text_encoder_2.` reach FLUX.1's T5, `lora_te3_` and
 * `text_encoder_3.` SD3's, `lora_te1_` and `text_encoder.` Chroma's): those that would merge into the
 * missing folder are refused naming it and what to do, as CLIP modules are, and those the complete
 * pipeline leaves out or refuses are left out or refused with the same words. All of an adapter's
 * modules for one such folder are one line (how many, the first), not one line each.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { kohyaSpec, loraTensors, peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { pipelinePlan } from './helpers/pipeline-merge.js';
import { T5_FEED_FORWARD, T5_SELF_ATTENTION, t5EncoderTensors, t5XxlConfig } from './helpers/t5-fixtures.js';
import { FLUX1_DEV, HUNYUAN_VIDEO, SD3_MEDIUM } from './helpers/model-index.js';

const rand = seededRandom(2718);
const json = (o: object) => JSON.stringify(o, null, 2);
type Folder = Record<string, Uint8Array | string>;

const TE = 'text_model.encoder.layers.0';
const SA = T5_SELF_ATTENTION, FF = T5_FEED_FORWARD;
const flat = (path: string) => path.replaceAll('.', '_');
const clip = (size: number) => buildSafetensors([tensor(rand, `${TE}.self_attn.q_proj.weight`, [size, size], 'BF16')]);
const t5 = () => buildSafetensors(t5EncoderTensors(rand, ''));
const vae = () => buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);
const denoiser = (names: string[]) => buildSafetensors(names.map((n) => tensor(rand, n, [8, 8], 'BF16')));
/** `pipeline` as downloaded without `folder`'s weights (its config.json kept where `keepConfig`). */
const without = (pipeline: Folder, folder: string, keepConfig = false): Folder =>
  Object.fromEntries(Object.entries(pipeline).filter(([p]) => !p.startsWith(`${folder}/`) || (keepConfig && p === `${folder}/config.json`)));

/** black-forest-labs/FLUX.1-dev. */
const flux: Folder = {
  'model_index.json': json(FLUX1_DEV),
  'transformer/diffusion_pytorch_model.safetensors': denoiser(['transformer_blocks.0.attn.to_q.weight']),
  'text_encoder/model.safetensors': clip(12),
  'text_encoder_2/config.json': json(t5XxlConfig()),
  'text_encoder_2/model.safetensors': t5(),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};
/** stabilityai/stable-diffusion-3-medium-diffusers. */
const sd3: Folder = {
  'model_index.json': json(SD3_MEDIUM),
  'transformer/diffusion_pytorch_model.safetensors': denoiser(['transformer_blocks.0.attn.to_q.weight']),
  'text_encoder/model.safetensors': clip(12),
  'text_encoder_2/model.safetensors': clip(16),
  'text_encoder_3/config.json': json(t5XxlConfig()),
  'text_encoder_3/model.safetensors': t5(),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};
/** lodestones/Chroma1-HD. */
const chroma: Folder = {
  'model_index.json': json({
    _class_name: 'ChromaPipeline', _diffusers_version: '0.35.0.dev0', feature_extractor: [null, null], image_encoder: [null, null],
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
    transformer: ['diffusers', 'ChromaTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': denoiser(['distilled_guidance_layer.in_proj.weight', 'transformer_blocks.0.attn.to_q.weight']),
  'text_encoder/config.json': json(t5XxlConfig()),
  'text_encoder/model.safetensors': t5(),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};
/** DeepFloyd/IF-I-XL-v1.0. */
const deepFloydIf: Folder = {
  'model_index.json': json({
    _class_name: 'IFPipeline', _diffusers_version: '0.16.0', feature_extractor: ['transformers', 'CLIPImageProcessor'], requires_safety_checker: true,
    safety_checker: ['deepfloyd_if.safety_checker', 'IFSafetyChecker'], scheduler: ['diffusers', 'DDPMScheduler'], text_encoder: ['transformers', 'T5EncoderModel'],
    tokenizer: ['transformers', 'T5Tokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], watermarker: ['deepfloyd_if.watermark', 'IFWatermarker'],
  }),
  'unet/diffusion_pytorch_model.safetensors': denoiser(['down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight']),
  'text_encoder/config.json': json(t5XxlConfig()),
  'text_encoder/model.safetensors': t5(),
};

/** kandinsky-community/kandinsky-3 (its text_encoder/ FLAN-UL2's encoder). */
const kandinsky3: Folder = {
  'model_index.json': json({
    _class_name: 'Kandinsky3Pipeline', _diffusers_version: '0.24.0.dev0', movq: ['diffusers', 'VQModel'], scheduler: ['diffusers', 'DDPMScheduler'],
    text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'], unet: ['diffusers', 'Kandinsky3UNet'],
  }),
  'unet/diffusion_pytorch_model.safetensors': denoiser(['down_blocks.0.attentions.0.attention.to_q.weight']),
  'text_encoder/model.safetensors': t5(),
  'movq/diffusion_pytorch_model.safetensors': vae(),
};
/** Wan-AI/Wan2.1-T2V-1.3B-Diffusers. */
const wan: Folder = {
  'model_index.json': json({
    _class_name: 'WanPipeline', _diffusers_version: '0.33.0.dev0', scheduler: ['diffusers', 'UniPCMultistepScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
    tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'WanTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': denoiser(['blocks.0.attn1.to_q.weight']),
  'text_encoder/model.safetensors': buildSafetensors(t5EncoderTensors(rand, '')),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** kohya's names (sd-scripts, OneTrainer's kohya format). */
const kohya = (name: string, out: number, inF: number) => kohyaSpec(name, 2, out, inF, [], 4);
/** OneTrainer's diffusers-format names. */
const diffusers = (name: string, out: number, inF: number) => peftSpec(name, 2, out, inF, [], 1);
const transformerModule = diffusers('transformer.transformer_blocks.0.attn.to_q', 8, 8);

const refused = (folder: string, className: string, held: string, count: number, first: string, names: string) =>
  `lora.safetensors: ${count === 1 ? `module "${first}": names ${names}, ` : `${count} modules are for ${folder}/ (the first, "${first}", names ${names}), `}` +
  `but the base's model_index.json lists ${folder} (${className}) and ${folder}/ holds no .safetensors weights (it holds ${held}): ` +
  `give the complete pipeline folder, with ${folder}/'s weights, or give the transformer's (or UNet's) own folder as the base to merge without the text encoder modules (they are then left out with a warning)`;

describe('FLUX.1: text_encoder_2 (T5EncoderModel) listed without its weights', () => {
  const held = 'text_encoder (CLIPTextModel), the transformer (FluxTransformer2DModel), the VAE';
  it('refuses the T5 modules kohya\'s sd-scripts (lora_te3_), OneTrainer (lora_te2_) and its diffusers format (text_encoder_2.) name, in one line', async () => {
    for (const base of [without(flux, 'text_encoder_2'), without(flux, 'text_encoder_2', true)]) {
      const { problems } = await pipelinePlan(base, [
        transformerModule,
        kohya(`lora_te2_${flat(SA)}_q`, 10, 10), kohya(`lora_te3_${flat(FF)}_wi_0`, 16, 10), diffusers(`text_encoder_2.${SA}.k`, 10, 10),
      ], rand);
      expect(problems).toEqual([refused('text_encoder_2', 'T5EncoderModel', held, 3, `lora_te2_${flat(SA)}_q`, 'text encoder 2 (T5)')]);
    }
  });

  it('one T5 module: the line names it', async () => {
    const { problems } = await pipelinePlan(without(flux, 'text_encoder_2'), [transformerModule, diffusers(`text_encoder_2.${SA}.q`, 10, 10)], rand);
    expect(problems).toEqual([refused('text_encoder_2', 'T5EncoderModel', held, 1, `text_encoder_2.${SA}.q`, 'text encoder 2 (T5)')]);
  });

  it('a T5 name that reaches no encoder of the complete pipeline (text_encoder_3.) is left out with the same warning as there', async () => {
    const lora = [transformerModule, diffusers(`text_encoder_3.${SA}.q`, 10, 10)];
    const complete = await pipelinePlan(flux, lora, rand);
    const partial = await pipelinePlan(without(flux, 'text_encoder_2'), lora, rand);
    expect(complete.problems).toEqual([]);
    expect(partial.problems).toEqual([]);
    const leftOut = (w: string[]) => w.filter((x) => x.includes('left out'));
    expect(leftOut(complete.warnings)).toHaveLength(1);
    expect(leftOut(partial.warnings)).toEqual(leftOut(complete.warnings));
  });

  it('both encoders without weights: one line for each folder, however many modules', async () => {
    const clips = Array.from({ length: 72 }, (_, i) => kohya(`lora_te1_text_model_encoder_layers_${i % 12}_${['self_attn_q_proj', 'self_attn_k_proj', 'self_attn_v_proj', 'self_attn_out_proj', 'mlp_fc1', 'mlp_fc2'][Math.floor(i / 12)]}`, 12, 12));
    const t5s = Array.from({ length: 24 }, (_, i) => kohya(`lora_te3_encoder_block_${i}_layer_0_SelfAttention_q`, 10, 10));
    const base = without(without(flux, 'text_encoder_2'), 'text_encoder');
    const { problems } = await pipelinePlan(base, [transformerModule, ...clips, ...t5s], rand);
    const transformerOnly = 'the transformer (FluxTransformer2DModel), the VAE';
    expect(problems).toEqual([
      refused('text_encoder', 'CLIPTextModel', transformerOnly, 72, 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 'text encoder 1 (CLIP-L)'),
      refused('text_encoder_2', 'T5EncoderModel', transformerOnly, 24, 'lora_te3_encoder_block_0_layer_0_SelfAttention_q', 'text encoder 3 (T5)'),
    ]);
  });
});

describe('the command line', () => {
  const temp = tempDirs();
  afterAll(temp.removeAll);
  it('a FLUX.1 folder of transformer/ and model_index.json alone, a LoRA of 72 CLIP-L and 24 T5 modules: two lines, exit code 1, nothing written', async () => {
    const layers = ['self_attn_q_proj', 'self_attn_k_proj', 'self_attn_v_proj', 'self_attn_out_proj', 'mlp_fc1', 'mlp_fc2'];
    const specs = [
      transformerModule,
      ...Array.from({ length: 72 }, (_, i) => kohya(`lora_te1_text_model_encoder_layers_${Math.floor(i / 6)}_${layers[i % 6]}`, 12, 12)),
      ...Array.from({ length: 24 }, (_, i) => kohya(`lora_te3_encoder_block_${i}_layer_0_SelfAttention_q`, 10, 10)),
    ];
    const base = Object.fromEntries(Object.entries(flux).filter(([p]) => p === 'model_index.json' || p.startsWith('transformer/')).map(([p, v]) => [`flux/${p}`, v]));
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const dir = temp.make({ ...base, 'lora.safetensors': lora });
    const out = join(dir, 'merged');
    const run = await runCli(['merge', '--base', join(dir, 'flux'), '--adapter', join(dir, 'lora.safetensors'), '--out', out, '--backend', 'cpu']);
    expect(run.code).toBe(1);
    const held = 'the transformer (FluxTransformer2DModel)';
    const lines = [
      refused('text_encoder', 'CLIPTextModel', held, 72, 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 'text encoder 1 (CLIP-L)'),
      refused('text_encoder_2', 'T5EncoderModel', held, 24, 'lora_te3_encoder_block_0_layer_0_SelfAttention_q', 'text encoder 3 (T5)'),
    ];
    const adapter = join(dir, 'lora.safetensors');
    expect(run.stderr.trim().split('\n')).toEqual([`error: 2 problems in the merge plan: ${lines.map((l) => `- ${adapter}${l.slice('lora.safetensors'.length)}`).join('; ')}`]);
    expect(existsSync(out)).toBe(false);
    expect(new Uint8Array(readFileSync(join(dir, 'lora.safetensors')))).toEqual(lora);
  });
});

describe('SD3: text_encoder_3 (T5EncoderModel) listed without its weights', () => {
  // In model_index.json's order, which save_pretrained sorts by key.
  const held = 'text_encoder (CLIPTextModelWithProjection), text_encoder_2 (CLIPTextModelWithProjection), the transformer (SD3Transformer2DModel), the VAE';
  it('refuses lora_te3_ and text_encoder_3. T5 modules; lora_te2_ T5 modules are left out as on the complete pipeline', async () => {
    const base = without(sd3, 'text_encoder_3', true);
    const { problems } = await pipelinePlan(base, [transformerModule, kohya(`lora_te3_${flat(SA)}_v`, 10, 10), diffusers(`text_encoder_3.${FF}.wo`, 10, 16)], rand);
    expect(problems).toEqual([refused('text_encoder_3', 'T5EncoderModel', held, 2, `lora_te3_${flat(SA)}_v`, 'text encoder 3 (T5)')]);
    const lora = [transformerModule, kohya(`lora_te2_${flat(SA)}_q`, 10, 10)];
    const complete = await pipelinePlan(sd3, lora, rand);
    const partial = await pipelinePlan(base, lora, rand);
    expect(partial.problems).toEqual([]);
    expect(partial.warnings.filter((w) => w.includes('left out'))).toEqual(complete.warnings.filter((w) => w.includes('left out')));
    expect(complete.warnings.filter((w) => w.includes('left out'))).toHaveLength(1);
  });
});

describe('Chroma: its only text encoder, text_encoder (T5EncoderModel), listed without its weights', () => {
  const held = 'the transformer (ChromaTransformer2DModel), the VAE';
  it('refuses the names the tools apply to its T5 (lora_te1_, lora_te3_, text_encoder.), leaves out the others as on the complete pipeline', async () => {
    const base = without(chroma, 'text_encoder');
    const { problems } = await pipelinePlan(base, [
      transformerModule, kohya(`lora_te1_${flat(SA)}_k`, 10, 10), kohya(`lora_te3_${flat(FF)}_wi_1`, 16, 10), diffusers(`text_encoder.${SA}.v`, 10, 10),
    ], rand);
    expect(problems).toEqual([refused('text_encoder', 'T5EncoderModel', held, 3, `lora_te1_${flat(SA)}_k`, 'text encoder 1 (T5)')]);
    // OneTrainer's CLIP-less names: lora_te2_ (no tool applies it to Chroma's T5), a FLUX.1 LoRA's CLIP-L.
    const lora = [transformerModule, kohya(`lora_te2_${flat(SA)}_q`, 10, 10), kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 12, 12)];
    const complete = await pipelinePlan(chroma, lora, rand);
    const partial = await pipelinePlan(base, lora, rand);
    expect(partial.problems).toEqual([]);
    expect(partial.warnings.filter((w) => w.includes('left out'))).toEqual(complete.warnings.filter((w) => w.includes('left out')));
    expect(complete.warnings.filter((w) => w.includes('left out'))).toHaveLength(2);
  });
});

describe('DeepFloyd IF: text_encoder (T5EncoderModel) listed without its weights', () => {
  it('text_encoder. without the file\'s LoraConfig is refused as on the complete pipeline (diffusers cannot load it)', async () => {
    const lora = [diffusers('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', 8, 8), diffusers(`text_encoder.${SA}.q`, 10, 10)];
    const complete = await pipelinePlan(deepFloydIf, lora, rand);
    const partial = await pipelinePlan(without(deepFloydIf, 'text_encoder'), lora, rand);
    expect(complete.problems).toHaveLength(1);
    expect(complete.problems[0]).toContain('only under the LoraConfig');
    expect(partial.problems).toEqual(complete.problems);
  });

  it('with the file\'s LoraConfig it would merge: refused naming the folder', async () => {
    const lora = [diffusers('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', 8, 8), diffusers(`text_encoder.${SA}.q`, 10, 10)];
    const metadata = { lora_adapter_metadata: json({ 'unet.r': 2, 'unet.lora_alpha': 2, 'text_encoder.r': 2, 'text_encoder.lora_alpha': 2, 'text_encoder.target_modules': ['q', 'k', 'v', 'o'] }) };
    const complete = await pipelinePlan(deepFloydIf, lora, rand, 'BF16', metadata);
    expect(complete.problems).toEqual([]);
    const partial = await pipelinePlan(without(deepFloydIf, 'text_encoder'), lora, rand, 'BF16', metadata);
    expect(partial.problems).toEqual([refused('text_encoder', 'T5EncoderModel', 'the unet (UNet2DConditionModel)', 1, `text_encoder.${SA}.q`, 'text encoder 1 (T5)')]);
  });
});

describe('Kandinsky 3: text_encoder (T5EncoderModel) listed without its weights', () => {
  it('text_encoder. under the file\'s LoraConfig merges into the complete pipeline, and is refused naming the folder without it', async () => {
    const lora = [diffusers(`text_encoder.${SA}.q`, 10, 10), diffusers(`text_encoder.${FF}.wi_0`, 16, 10)];
    const metadata = { lora_adapter_metadata: json({ 'text_encoder.r': 2, 'text_encoder.lora_alpha': 2, 'text_encoder.target_modules': ['q', 'wi_0'] }) };
    expect((await pipelinePlan(kandinsky3, lora, rand, 'BF16', metadata)).problems).toEqual([]);
    const { problems } = await pipelinePlan(without(kandinsky3, 'text_encoder'), lora, rand, 'BF16', metadata);
    expect(problems).toEqual([refused('text_encoder', 'T5EncoderModel', 'the unet (Kandinsky3UNet)', 2, `text_encoder.${SA}.q`, 'text encoder 1 (T5)')]);
  });
});

/** hunyuanvideo-community/HunyuanVideo: its Llama in text_encoder/, its CLIP-L in text_encoder_2/. */
const hunyuanVideo: Folder = {
  'model_index.json': json(HUNYUAN_VIDEO),
  'transformer/diffusion_pytorch_model.safetensors': denoiser(['transformer_blocks.0.attn.to_q.weight']),
  'text_encoder/config.json': json({ architectures: ['LlamaModel'], hidden_size: 4096, model_type: 'llama', num_hidden_layers: 32, torch_dtype: 'float16', vocab_size: 128320 }),
  'text_encoder/model.safetensors': buildSafetensors([tensor(rand, 'layers.0.self_attn.q_proj.weight', [8, 8], 'BF16')]),
  'text_encoder_2/model.safetensors': clip(12),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** ComfyUI's extracted form (lora_down/lora_up, no α: scale 1). */
const comfy = (name: string, out: number, inF: number): LoraSpec => ({ ...peftSpec(name, 2, out, inF, [], 1), down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight` });

describe('ComfyUI\'s own encoder names (text_encoders.t5xxl., text_encoders.clip_l.) on a folder listed without its weights', () => {
  it('FLUX.1: refused naming the folder they would land in, as kohya\'s and diffusers\' names are', async () => {
    const lora = [transformerModule, comfy(`text_encoders.t5xxl.transformer.${SA}.q`, 10, 10), comfy(`text_encoders.t5xxl.transformer.${SA}.k`, 10, 10), comfy(`text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 12, 12)];
    expect((await pipelinePlan(flux, lora, rand)).problems).toEqual([]);
    const { problems } = await pipelinePlan(without(without(flux, 'text_encoder_2'), 'text_encoder'), lora, rand);
    const held = 'the transformer (FluxTransformer2DModel), the VAE';
    expect(problems).toEqual([
      refused('text_encoder_2', 'T5EncoderModel', held, 2, `text_encoders.t5xxl.transformer.${SA}.q`, 'text encoder 3 (T5)'),
      refused('text_encoder', 'CLIPTextModel', held, 1, `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 'text encoder 1 (CLIP-L)'),
    ]);
  });

  it('DeepFloyd IF (which ComfyUI does not run): text_encoders.t5xxl. is left out as on the complete pipeline', async () => {
    const lora = [diffusers('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', 8, 8), comfy(`text_encoders.t5xxl.transformer.${SA}.q`, 10, 10)];
    const complete = await pipelinePlan(deepFloydIf, lora, rand);
    const partial = await pipelinePlan(without(deepFloydIf, 'text_encoder'), lora, rand);
    expect(complete.problems).toEqual([]);
    expect(partial.problems).toEqual([]);
    expect(complete.warnings.filter((w) => w.includes('left out'))).toHaveLength(1);
    expect(partial.warnings.filter((w) => w.includes('left out'))).toEqual(complete.warnings.filter((w) => w.includes('left out')));
  });

  it('Wan: text_encoders.umt5xxl. refused naming text_encoder/ (UMT5EncoderModel); kohya\'s T5 names left out as on the complete pipeline', async () => {
    const lora = [diffusers('transformer.blocks.0.attn1.to_q', 8, 8), comfy(`text_encoders.umt5xxl.transformer.${SA}.q`, 10, 10), comfy(`text_encoders.umt5xxl.transformer.${SA}.o`, 10, 10)];
    expect((await pipelinePlan(wan, lora, rand)).problems).toEqual([]);
    const base = without(wan, 'text_encoder');
    const { problems } = await pipelinePlan(base, lora, rand);
    expect(problems).toEqual([refused('text_encoder', 'UMT5EncoderModel', 'the transformer (WanTransformer3DModel), the VAE', 2, `text_encoders.umt5xxl.transformer.${SA}.q`, 'ComfyUI\'s umt5xxl text encoder (text_encoders.umt5xxl.)')]);
    const kohyaT5 = [diffusers('transformer.blocks.0.attn1.to_q', 8, 8), kohya(`lora_te1_${flat(SA)}_q`, 10, 10)];
    const complete = await pipelinePlan(wan, kohyaT5, rand);
    const partial = await pipelinePlan(base, kohyaT5, rand);
    expect(partial.problems).toEqual([]);
    expect(complete.warnings.filter((w) => w.includes('left out'))).toHaveLength(1);
    expect(partial.warnings.filter((w) => w.includes('left out'))).toEqual(complete.warnings.filter((w) => w.includes('left out')));
  });

  it('HunyuanVideo: text_encoders.llama. refused naming text_encoder/ (LlamaModel), with or without its config.json', async () => {
    const lora = [transformerModule, comfy('text_encoders.llama.transformer.model.layers.0.self_attn.q_proj', 8, 8)];
    expect((await pipelinePlan(hunyuanVideo, lora, rand)).problems).toEqual([]);
    const held = 'text_encoder_2 (CLIPTextModel), the transformer (HunyuanVideoTransformer3DModel), the VAE';
    const expected = [refused('text_encoder', 'LlamaModel', held, 1, 'text_encoders.llama.transformer.model.layers.0.self_attn.q_proj', 'ComfyUI\'s llama text encoder (text_encoders.llama.)')];
    expect((await pipelinePlan(without(hunyuanVideo, 'text_encoder', true), lora, rand)).problems).toEqual(expected);
    // Without its config.json, which LLM the folder holds is not said: it may be this one, so not left out either.
    expect((await pipelinePlan(without(hunyuanVideo, 'text_encoder'), lora, rand)).problems).toEqual(expected);
    // Another LLM's name (Qwen-Image's) on that folder: its class, LlamaModel, rules it out, as on the complete pipeline.
    const qwen = [transformerModule, comfy('text_encoders.qwen25_7b.transformer.model.layers.0.self_attn.q_proj', 8, 8)];
    const complete = await pipelinePlan(hunyuanVideo, qwen, rand);
    const partial = await pipelinePlan(without(hunyuanVideo, 'text_encoder', true), qwen, rand);
    expect(partial.problems).toEqual(complete.problems);
    expect(partial.warnings.filter((w) => w.includes('left out')).length).toBe(complete.warnings.filter((w) => w.includes('left out')).length);
  });
});
