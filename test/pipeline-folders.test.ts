/**
 * Whole diffusers pipeline folders as bases (model_index.json): the components a LoRA touches are
 * merged (a sharded UNet with its index, both text encoders), the rest is mirrored byte for byte
 * (the VAE, scheduler and tokenizer files); weight variants the pipeline does not load are left
 * out and said so. SDXL with a diffusers-format LoRA and an SGM-named kohya one; Flux with kohya's
 * BFL names and its CLIP-L module on the pipeline's text_encoder. On the CPU and WebGPU against
 * float64 truth.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, WAN, fluxDiffusersTensors, loraTensors, rowsFrom, tensor, wanDiffusersTensors, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { comfyExtracted, mergePipelineAndCheck, pipelinePlan, type PipelineAdapter } from './helpers/pipeline-merge.js';

/** The CLIP modules a diffusers text encoder LoraConfig targets (target_modules, as its trainers save it in lora_adapter_metadata). */
const CLIP_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2'];

const rand = seededRandom(77);
const json = (o: object) => JSON.stringify(o, null, 2);

// --- SDXL pipeline ----------------------------------------------------------------------------
const UNET_A = ['down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight', 'down_blocks.1.attentions.0.proj_in.weight'];
const UNET_B = ['mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight', 'up_blocks.0.attentions.1.proj_out.weight'];
const unetShard = (names: string[]) => buildSafetensors(names.map((n) => tensor(rand, n, [16, 16], 'F16')));
const TE = 'text_model.encoder.layers.0';
const sdxl: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'StableDiffusionXLPipeline', _diffusers_version: '0.30.0',
    unet: ['diffusers', 'UNet2DConditionModel'], text_encoder: ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'], vae: ['diffusers', 'AutoencoderKL'],
    scheduler: ['diffusers', 'EulerDiscreteScheduler'], tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'],
  }),
  'unet/config.json': json({ _class_name: 'UNet2DConditionModel' }),
  'unet/diffusion_pytorch_model-00001-of-00002.safetensors': unetShard(UNET_A),
  'unet/diffusion_pytorch_model-00002-of-00002.safetensors': unetShard(UNET_B),
  'unet/diffusion_pytorch_model.safetensors.index.json': json({
    metadata: { total_size: 2048 },
    weight_map: Object.fromEntries([...UNET_A.map((n) => [n, 'diffusion_pytorch_model-00001-of-00002.safetensors']), ...UNET_B.map((n) => [n, 'diffusion_pytorch_model-00002-of-00002.safetensors'])]),
  }),
  'unet/diffusion_pytorch_model.fp16.safetensors': unetShard([...UNET_A, ...UNET_B]),
  'text_encoder/config.json': json({ architectures: ['CLIPTextModel'] }),
  'text_encoder/model.safetensors': buildSafetensors([tensor(rand, `${TE}.self_attn.q_proj.weight`, [12, 12], 'F16'), tensor(rand, `${TE}.mlp.fc1.weight`, [24, 12], 'F16')]),
  'text_encoder_2/config.json': json({ architectures: ['CLIPTextModelWithProjection'] }),
  'text_encoder_2/model.safetensors': buildSafetensors([tensor(rand, `${TE}.self_attn.q_proj.weight`, [16, 16], 'F16'), tensor(rand, 'text_projection.weight', [16, 16], 'F16')]),
  'vae/config.json': json({ _class_name: 'AutoencoderKL' }),
  'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
  'scheduler/scheduler_config.json': json({ _class_name: 'EulerDiscreteScheduler' }),
  'tokenizer/vocab.json': '{"a": 0}',
  'tokenizer_2/merges.txt': '#version: 0.2\n',
};
const peftStyle = (name: string, r: number, out: number, inF: number, key: string, scale: number): LoraSpec =>
  ({ down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r, out, in: inF, lands: [{ key }], scale });
const kohya = (name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha: number): LoraSpec => ({
  down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands, scale: alpha / r,
  extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] } satisfies FixtureTensor],
});
const SDXL_DIFFUSERS: LoraSpec[] = [
  peftStyle('unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q', 4, 16, 16, `unet.${UNET_A[0]}`, 2),
  peftStyle('unet.up_blocks.0.attentions.1.proj_out', 4, 16, 16, `unet.${UNET_B[1]}`, 2),
  peftStyle(`text_encoder.${TE}.mlp.fc1`, 2, 24, 12, `text_encoder.${TE}.mlp.fc1.weight`, 1),
  peftStyle(`text_encoder_2.${TE}.self_attn.q_proj`, 2, 16, 16, `text_encoder_2.${TE}.self_attn.q_proj.weight`, 1),
];
const SDXL_KOHYA: LoraSpec[] = [
  kohya('lora_unet_input_blocks_4_1_proj_in', 2, 16, 16, [{ key: `unet.${UNET_A[1]}` }], 1),
  kohya('lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k', 2, 16, 16, [{ key: `unet.${UNET_B[0]}` }], 1),
  kohya(`lora_te1_text_model_encoder_layers_0_self_attn_q_proj`, 2, 12, 12, [{ key: `text_encoder.${TE}.self_attn.q_proj.weight` }], 2),
  kohya(`lora_te2_text_model_encoder_layers_0_self_attn_q_proj`, 2, 16, 16, [{ key: `text_encoder_2.${TE}.self_attn.q_proj.weight` }], 2),
];
const sdxlDiffusersLora = buildSafetensors(loraTensors(rand, SDXL_DIFFUSERS, 'F16'), {
  lora_adapter_metadata: json({ 'unet.r': 4, 'unet.lora_alpha': 8, 'text_encoder.r': 2, 'text_encoder.lora_alpha': 2, 'text_encoder_2.r': 2, 'text_encoder_2.lora_alpha': 2,
    'text_encoder.target_modules': CLIP_TARGETS, 'text_encoder_2.target_modules': CLIP_TARGETS }),
});
const sdxlKohyaLora = buildSafetensors(loraTensors(rand, SDXL_KOHYA, 'F16'), { ss_base_model_version: 'sdxl_base_v1-0' });

// --- Flux pipeline ----------------------------------------------------------------------------
const { h } = FLUX;
const flux: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'FluxPipeline', transformer: ['diffusers', 'FluxTransformer2DModel'], text_encoder: ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'T5EncoderModel'], vae: ['diffusers', 'AutoencoderKL'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(fluxDiffusersTensors(rand, 'BF16')),
  'text_encoder/model.safetensors': buildSafetensors([tensor(rand, `${TE}.self_attn.q_proj.weight`, [12, 12], 'BF16')]),
  'text_encoder_2/model.safetensors': buildSafetensors([tensor(rand, 'encoder.block.0.layer.0.SelfAttention.q.weight', [8, 8], 'BF16')]),
  'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
  'scheduler/scheduler_config.json': json({ shift: 3.0 }),
};
const T = (rest: string) => `transformer.transformer_blocks.0.${rest}.weight`;
const FLUX_KOHYA: LoraSpec[] = [
  kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, [
    { key: T('attn.to_q'), rows: rowsFrom(0, h) }, { key: T('attn.to_k'), rows: rowsFrom(h, h) }, { key: T('attn.to_v'), rows: rowsFrom(2 * h, h) },
  ], 2),
  kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 2, 12, 12, [{ key: `text_encoder.${TE}.self_attn.q_proj.weight` }], 1),
  kohya('lora_te3_encoder_block_0_layer_0_SelfAttention_q', 2, 8, 8, [{ key: 'text_encoder_2.encoder.block.0.layer.0.SelfAttention.q.weight' }], 1),
];
const fluxKohyaLora = buildSafetensors(loraTensors(rand, FLUX_KOHYA, 'BF16'));

// --- Wan pipeline, a ComfyUI-extracted LoRA with its UMT5 text encoder --------------------------
// ComfyUI names Wan's text encoder `umt5xxl` (`text_encoders.umt5xxl.transformer.` + transformers'
// UMT5 keys); the pipeline's model_index.json says text_encoder/ is the UMT5EncoderModel.
const UMT5 = 'encoder.block.0.layer.0.SelfAttention';
const wanPipeline = (textEncoder: string): Record<string, Uint8Array | string> => ({
  'model_index.json': json({
    _class_name: 'WanPipeline', transformer: ['diffusers', 'WanTransformer3DModel'], text_encoder: ['transformers', textEncoder],
    tokenizer: ['transformers', 'T5TokenizerFast'], vae: ['diffusers', 'AutoencoderKLWan'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(wanDiffusersTensors(rand, 'BF16')),
  'text_encoder/model.safetensors': buildSafetensors([
    tensor(rand, `${UMT5}.q.weight`, [10, 10], 'BF16'), tensor(rand, `${UMT5}.o.weight`, [10, 10], 'BF16'), tensor(rand, 'shared.weight', [30, 10], 'BF16'),
  ]),
  'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
});
const comfy = comfyExtracted;
const WAN_COMFY: LoraSpec[] = [
  comfy('diffusion_model.blocks.0.self_attn.q', WAN.dim, WAN.dim, 'transformer.blocks.0.attn1.to_q.weight'),
  comfy(`text_encoders.umt5xxl.transformer.${UMT5}.q`, 10, 10, `text_encoder.${UMT5}.q.weight`),
  comfy(`text_encoders.umt5xxl.transformer.${UMT5}.o`, 10, 10, `text_encoder.${UMT5}.o.weight`),
];
const wanComfyLora = buildSafetensors(loraTensors(rand, WAN_COMFY, 'BF16'));

const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

const mergeAndCheck = (kind: 'cpu' | 'webgpu', base: Record<string, Uint8Array | string>, adapters: PipelineAdapter[], expectWritten: string[]) =>
  mergePipelineAndCheck(backends[kind]!, base, adapters, expectWritten);

for (const kind of ['cpu', 'webgpu'] as const) {
  describe(`diffusers pipeline folders on ${kind}`, () => {
    it('SDXL: sharded UNet and both text encoders merged, VAE and configs mirrored, the fp16 variant left out', async () => {
      const { out, warnings } = await mergeAndCheck(kind, sdxl, [
        { file: 'pytorch_lora_weights.safetensors', bytes: sdxlDiffusersLora, specs: SDXL_DIFFUSERS, weight: 0.8 },
        { file: 'kohya-sdxl.safetensors', bytes: sdxlKohyaLora, specs: SDXL_KOHYA, weight: 1 },
      ], [
        'unet/diffusion_pytorch_model-00001-of-00002.safetensors', 'unet/diffusion_pytorch_model-00002-of-00002.safetensors',
        'text_encoder/model.safetensors', 'text_encoder_2/model.safetensors',
      ]);
      expect(out.has('vae/diffusion_pytorch_model.safetensors')).toBe(true);
      expect(out.has('unet/diffusion_pytorch_model.fp16.safetensors')).toBe(false);
      expect(warnings.join('\n')).toContain('unet/diffusion_pytorch_model.fp16.safetensors not written');
      const index = JSON.parse(new TextDecoder().decode(out.get('unet/diffusion_pytorch_model.safetensors.index.json')!));
      expect(index.metadata.total_size).toBe(4 * 16 * 16 * 2);
      expect(Object.keys(index.weight_map).sort()).toEqual([...UNET_A, ...UNET_B].sort());
    });

    it('Wan: a ComfyUI-extracted LoRA\'s `text_encoders.umt5xxl.` modules on the folder model_index.json says is the UMT5EncoderModel', async () => {
      await mergeAndCheck(kind, wanPipeline('UMT5EncoderModel'), [{ file: 'comfyui_extracted_lora.safetensors', bytes: wanComfyLora, specs: WAN_COMFY, weight: 0.6 }], [
        'transformer/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors',
      ]);
    });

    it('Flux: BFL-named kohya modules on the diffusers transformer, CLIP-L on text_encoder and T5 on text_encoder_2', async () => {
      await mergeAndCheck(kind, flux, [{ file: 'kohya-flux.safetensors', bytes: fluxKohyaLora, specs: FLUX_KOHYA, weight: 1 }], [
        'transformer/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors', 'text_encoder_2/model.safetensors',
      ]);
    });
  });
}

describe('ComfyUI\'s text encoders on a pipeline whose folders cannot hold them, or cannot be told apart', () => {
  const planOf = (base: Record<string, Uint8Array | string>, specs: LoraSpec[]) => pipelinePlan(base, specs, rand);

  it('leaves `text_encoders.t5xxl.` out with a warning on a Wan pipeline, whose encoder is UMT5, as ComfyUI does not load it there', async () => {
    const { problems, warnings } = await planOf(wanPipeline('UMT5EncoderModel'), [
      WAN_COMFY[0], comfy(`text_encoders.t5xxl.transformer.${UMT5}.q`, 10, 10, ''),
    ]);
    expect(problems).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/^lora\.safetensors: 1 module left out, not merged: it names text encoder 3 \(T5\), which the base does not hold \(it holds .*text_encoder \(UMT5EncoderModel\).*\) \(text_encoders\.t5xxl\.transformer\.encoder\.block\.0\.layer\.0\.SelfAttention\.q\)$/)]);
  });

  it('refuses `text_encoders.qwen25_7b.` in one line where its folder has no config.json to say which Qwen2.5-VL it is', async () => {
    const { problems } = await planOf(wanPipeline('Qwen2_5_VLForConditionalGeneration'), [
      WAN_COMFY[0], comfy('text_encoders.qwen25_7b.transformer.model.layers.0.self_attn.q_proj', 10, 10, ''),
    ]);
    expect(problems).toEqual([
      'lora.safetensors: module "text_encoders.qwen25_7b.transformer.model.layers.0.self_attn.q_proj": names ComfyUI\'s qwen25_7b text encoder (text_encoders.qwen25_7b.), and which of the base\'s text encoders holds it cannot be told (text_encoder (Qwen2_5_VLForConditionalGeneration): it has no config.json to say its model_type and hidden_size, which tell ComfyUI\'s qwen25_7b (qwen2_5_vl or qwen2_5_vl_text, hidden_size 3584) from another model of its class): not supported',
    ]);
  });
});

describe('a pipeline folder whose model_index.json lists a text encoder whose weights are not there', () => {
  // transformer/ and model_index.json downloaded alone: text_encoder/ holds its config.json and no weights.
  const transformerOnly = Object.fromEntries(Object.entries(flux).filter(([path]) => !/^text_encoder(_2)?\/model\.safetensors$/.test(path)));
  transformerOnly['text_encoder/config.json'] = json({ architectures: ['CLIPTextModel'], model_type: 'clip_text_model' });
  const missing = (module: string) =>
    `lora.safetensors: module "${module}": names text encoder 1 (CLIP-L), but the base's model_index.json lists text_encoder (CLIPTextModel) and text_encoder/ holds no .safetensors weights ` +
    '(it holds the transformer (FluxTransformer2DModel), the VAE): give the complete pipeline folder, with text_encoder/\'s weights, ' +
    'or give the transformer\'s (or UNet\'s) own folder as the base to merge without the text encoder modules (they are then left out with a warning)';

  it('refuses kohya\'s and diffusers\' CLIP-L modules naming the folder and what to do, not leaving them out', async () => {
    const kohyaTe = FLUX_KOHYA[1];
    const diffusersTe: LoraSpec = { down: `text_encoder.${TE}.self_attn.q_proj.lora_A.weight`, up: `text_encoder.${TE}.self_attn.q_proj.lora_B.weight`, r: 2, out: 12, in: 12, lands: [], scale: 1 };
    for (const [spec, module] of [[kohyaTe, 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj'], [diffusersTe, `text_encoder.${TE}.self_attn.q_proj`]] as const) {
      const { problems } = await pipelinePlan(transformerOnly, [FLUX_KOHYA[0], spec], rand);
      expect(problems).toEqual([missing(module)]);
    }
  });

  it('merges a LoRA without text encoder modules into the transformer as before', async () => {
    const { problems, warnings } = await pipelinePlan(transformerOnly, [FLUX_KOHYA[0]], rand);
    expect(problems).toEqual([]);
    expect(warnings.filter((w) => w.includes('left out'))).toEqual([]);
  });
});
