/**
 * Würstchen's and Stable Cascade's combined pipelines, whose prior stage sits in `prior_` folders
 * (diffusers' pipeline_wuerstchen_combined.py, removed with the deprecated pipelines in #13157:
 * WuerstchenCombinedPipeline registers text_encoder, tokenizer, decoder (WuerstchenDiffNeXt),
 * scheduler, vqgan, prior_prior (WuerstchenPrior), prior_text_encoder, prior_tokenizer,
 * prior_scheduler; pipeline_stable_cascade_combined.py the same with StableCascadeUNet and
 * prior_image_encoder, prior_feature_extractor). Its prior pipeline is built from those folders
 * (`prior_pipe = WuerstchenPriorPipeline(prior=prior_prior, text_encoder=prior_text_encoder, …)`),
 * and the prior's LoRAs name that pipeline's `prior`: diffusers' research script
 * train_text_to_image_lora_prior.py saves with WuerstchenPriorPipeline.save_lora_weights (unet_name
 * "prior": `prior.blocks.2.attention.to_q.lora_A.weight`), loaded as `pipe.prior_pipe.load_lora_weights`;
 * OneTrainer's Würstchen v2 / Stable Cascade LoRAs hold `prior.` and the prior's `text_encoder.`
 * (its LEGACY Stable Cascade form kohya's `lora_prior_unet_`, `lora_prior_te_`).
 * So a module naming the prior (`prior.`, `lora_prior_unet_`) lands on `prior_prior/`, one naming a
 * folder (`prior_prior.`, `decoder.`) on it; one naming neither that fits a prior folder by the end of
 * its name is refused naming the folder, as on Kandinsky's combined pipelines.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor } from './helpers/diffusion-fixtures.js';
import { onePipelineLora } from './helpers/pipeline-merge.js';

const rand = seededRandom(20261209);
const json = (o: object) => JSON.stringify(o, null, 2);
type Folder = Record<string, Uint8Array | string>;

/** The prior's third block (AttnBlock: attention, kv_mapper) and the decoder's level-1 AttnBlock, 8 wide. */
const PRIOR_Q = 'blocks.2.attention.to_q', DECODER_Q = 'down_blocks.1.2.attention.to_q';
const TE = 'text_model.encoder.layers.0.self_attn.q_proj';
const clipConfig = (hidden: number) => json({ architectures: ['CLIPTextModel'], hidden_act: 'gelu', hidden_size: hidden, intermediate_size: 4 * hidden, model_type: 'clip_text_model', num_attention_heads: 16, num_hidden_layers: 24, projection_dim: 1024, vocab_size: 49408 });

/** warp-ai/wuerstchen's model_index.json, as save_pretrained writes it from WuerstchenCombinedPipeline.__init__. */
const wuerstchen: Folder = {
  'model_index.json': json({
    _class_name: 'WuerstchenCombinedPipeline', _diffusers_version: '0.21.0.dev0', decoder: ['wuerstchen', 'WuerstchenDiffNeXt'],
    prior_prior: ['wuerstchen', 'WuerstchenPrior'], prior_scheduler: ['diffusers', 'DDPMWuerstchenScheduler'], prior_text_encoder: ['transformers', 'CLIPTextModel'],
    prior_tokenizer: ['transformers', 'CLIPTokenizerFast'], scheduler: ['diffusers', 'DDPMWuerstchenScheduler'], text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizerFast'], vqgan: ['wuerstchen', 'PaellaVQModel'],
  }),
  'decoder/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, `${DECODER_Q}.weight`, [8, 8], 'BF16'), tensor(rand, 'down_blocks.1.2.kv_mapper.1.weight', [8, 8], 'BF16')]),
  'prior_prior/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, `${PRIOR_Q}.weight`, [8, 8], 'BF16'), tensor(rand, 'blocks.2.kv_mapper.1.weight', [8, 8], 'BF16')]),
  // The decoder's CLIP-H text model (1024) and the prior's CLIP-bigG (1280).
  'text_encoder/config.json': clipConfig(1024), 'text_encoder/model.safetensors': buildSafetensors([tensor(rand, `${TE}.weight`, [12, 12], 'BF16')]),
  'prior_text_encoder/config.json': clipConfig(1280), 'prior_text_encoder/model.safetensors': buildSafetensors([tensor(rand, `${TE}.weight`, [16, 16], 'BF16')]),
  'vqgan/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'in_block.0.weight', [8, 12, 1, 1], 'F32')]),
};

const lora = onePipelineLora(rand, 1);
/** The sai model spec header OneTrainer writes on its Würstchen v2 and Stable Cascade LoRAs (resources/sd_model_spec/…-lora.json). */
const oneTrainerHeader = (architecture: string, title: string) => ({
  'modelspec.sai_model_spec': '1.0.0', 'modelspec.architecture': architecture, 'modelspec.implementation': 'https://github.com/huggingface/diffusers', 'modelspec.title': title,
});
const ONETRAINER_WUERSTCHEN = oneTrainerHeader('wuerstchen-v2-prior/lora', 'Wuerstchen 2.0 LoRA');
const ONETRAINER_CASCADE = oneTrainerHeader('stable-cascade-v1-prior/lora', 'Stable Cascade 1.0 LoRA');
const routedNowhere = (folder: string, className: string) => `${folder}/ (${className}), the prior's in its WuerstchenCombinedPipeline, a folder no LoRA name routes to here`;

describe('Würstchen\'s combined pipeline: the prior\'s folders', () => {
  it('merges modules naming prior_prior/, decoder/ and prior_text_encoder/ there', async () => {
    await lora.mergeAndCheck(wuerstchen, [
      peftSpec(`prior_prior.${PRIOR_Q}`, 2, 8, 8, [{ key: `prior_prior.${PRIOR_Q}.weight` }], 1),
      peftSpec(`decoder.${DECODER_Q}`, 2, 8, 8, [{ key: `decoder.${DECODER_Q}.weight` }], 1),
      peftSpec(`prior_text_encoder.${TE}`, 2, 16, 16, [{ key: `prior_text_encoder.${TE}.weight` }], 1),
    ], ['prior_prior/diffusion_pytorch_model.safetensors', 'decoder/diffusion_pytorch_model.safetensors', 'prior_text_encoder/model.safetensors']);
  });

  it('merges the prior pipeline\'s LoRA (`prior.`, as WuerstchenPriorPipeline.save_lora_weights writes it) into prior_prior/', async () => {
    await lora.mergeAndCheck(wuerstchen, [
      peftSpec(`prior.${PRIOR_Q}`, 2, 8, 8, [{ key: `prior_prior.${PRIOR_Q}.weight` }], 1),
      peftSpec('prior.blocks.2.kv_mapper.1', 2, 8, 8, [{ key: 'prior_prior.blocks.2.kv_mapper.1.weight' }], 1),
    ], ['prior_prior/diffusion_pytorch_model.safetensors']);
  });

  it('merges kohya\'s lora_prior_unet_ (the prefix ComfyUI and OneTrainer\'s LEGACY give the prior) over the model\'s own names into prior_prior/', async () => {
    await lora.mergeAndCheck(wuerstchen, [kohyaSpec('lora_prior_unet_blocks_2_attention_to_q', 2, 8, 8, [{ key: `prior_prior.${PRIOR_Q}.weight` }], 1)], ['prior_prior/diffusion_pytorch_model.safetensors']);
  });

  it('merges a text_encoder.-only file OneTrainer says is the prior\'s (modelspec.architecture wuerstchen-v2-prior/lora) into prior_text_encoder/', async () => {
    await lora.mergeAndCheck(wuerstchen, [peftSpec(`text_encoder.${TE}`, 2, 16, 16, [{ key: `prior_text_encoder.${TE}.weight` }], 1)],
      ['prior_text_encoder/model.safetensors'], 'lora.safetensors', ONETRAINER_WUERSTCHEN);
  });

  it('refuses a module that reaches prior_prior/ only by the end of its name, naming the folder', async () => {
    const { problems } = await lora.planOf(wuerstchen, [peftSpec(PRIOR_Q, 2, 8, 8, [], 1)]);
    expect(problems).toEqual([
      `lora.safetensors: module "${PRIOR_Q}": lands by the end of its name on prior_prior.${PRIOR_Q}.weight in ${routedNowhere('prior_prior', 'WuerstchenPrior')}; ` +
        `not supported — name the folder (prior_prior.${PRIOR_Q}) or give the prior pipeline's own folder as the base`,
    ]);
  });
});

/** stabilityai/stable-cascade's combined pipeline: decoder (stage B) and prior_prior (stage C) are both StableCascadeUNet, their CLIP-G saved twice. */
describe('Stable Cascade\'s combined pipeline: the prior\'s folders', () => {
  const STAGE_Q = 'down_blocks.0.1.attention.to_q';
  const clipG = json({ architectures: ['CLIPTextModelWithProjection'], hidden_act: 'gelu', hidden_size: 1280, intermediate_size: 5120, model_type: 'clip_text_model', num_attention_heads: 20, num_hidden_layers: 32, projection_dim: 1280, vocab_size: 49408 });
  // clip_txt_pooled_mapper: the key that tells a diffusers StableCascadeUNet (stable-cascade-diffusers.ts).
  const stage = () => buildSafetensors([tensor(rand, `${STAGE_Q}.weight`, [8, 8], 'BF16'), tensor(rand, 'clip_txt_pooled_mapper.weight', [16, 6], 'BF16')]);
  const cascade: Folder = {
    'model_index.json': json({
      _class_name: 'StableCascadeCombinedPipeline', _diffusers_version: '0.27.0.dev0', decoder: ['diffusers', 'StableCascadeUNet'],
      prior_feature_extractor: ['transformers', 'CLIPImageProcessor'], prior_image_encoder: ['transformers', 'CLIPVisionModelWithProjection'], prior_prior: ['diffusers', 'StableCascadeUNet'],
      prior_scheduler: ['diffusers', 'DDPMWuerstchenScheduler'], prior_text_encoder: ['transformers', 'CLIPTextModelWithProjection'], prior_tokenizer: ['transformers', 'CLIPTokenizer'],
      scheduler: ['diffusers', 'DDPMWuerstchenScheduler'], text_encoder: ['transformers', 'CLIPTextModelWithProjection'], tokenizer: ['transformers', 'CLIPTokenizer'], vqgan: ['diffusers', 'PaellaVQModel'],
    }),
    'decoder/diffusion_pytorch_model.safetensors': stage(), 'prior_prior/diffusion_pytorch_model.safetensors': stage(),
    'text_encoder/config.json': clipG, 'text_encoder/model.safetensors': buildSafetensors([tensor(rand, `${TE}.weight`, [16, 16], 'BF16')]),
    'prior_text_encoder/config.json': clipG, 'prior_text_encoder/model.safetensors': buildSafetensors([tensor(rand, `${TE}.weight`, [16, 16], 'BF16')]),
  };
  const STAGES = ['prior_prior/diffusion_pytorch_model.safetensors'];

  it('merges `prior.` (OneTrainer\'s prior) into prior_prior/, not the decoder of the same names', async () => {
    await lora.mergeAndCheck(cascade, [peftSpec(`prior.${STAGE_Q}`, 2, 8, 8, [{ key: `prior_prior.${STAGE_Q}.weight` }], 1)], STAGES);
  });

  it('merges lora_prior_unet_ and lora_prior_te_ (the prefixes ComfyUI gives stage C and its CLIP-G) over diffusers\' names into prior_prior/ and prior_text_encoder/', async () => {
    await lora.mergeAndCheck(cascade, [
      kohyaSpec('lora_prior_unet_down_blocks_0_1_attention_to_q', 2, 8, 8, [{ key: `prior_prior.${STAGE_Q}.weight` }], 1),
      kohyaSpec('lora_prior_te_text_model_encoder_layers_0_self_attn_q_proj', 2, 16, 16, [{ key: `prior_text_encoder.${TE}.weight` }], 4),
    ], [...STAGES, 'prior_text_encoder/model.safetensors']);
  });

  it('merges a prior LoRA\'s text_encoder. (OneTrainer\'s DIFFUSERS form: prior. and the prior\'s CLIP-G) into prior_text_encoder/, not the decoder\'s text_encoder/', async () => {
    await lora.mergeAndCheck(cascade, [
      peftSpec(`prior.${STAGE_Q}`, 2, 8, 8, [{ key: `prior_prior.${STAGE_Q}.weight` }], 1),
      peftSpec(`text_encoder.${TE}`, 2, 16, 16, [{ key: `prior_text_encoder.${TE}.weight` }], 1),
    ], [...STAGES, 'prior_text_encoder/model.safetensors']);
  });

  it('OneTrainer\'s files, which say they are the prior\'s (modelspec.architecture stable-cascade-v1-prior/lora), land on prior_prior/ and prior_text_encoder/ whatever their names', async () => {
    // DIFFUSERS form with its text encoder alone (text_encoder., no prior.), ORIGINAL (bare), COMFY (diffusion_model.), KOHYA (lora_unet_, lora_te_).
    await lora.mergeAndCheck(cascade, [peftSpec(`text_encoder.${TE}`, 2, 16, 16, [{ key: `prior_text_encoder.${TE}.weight` }], 1)],
      ['prior_text_encoder/model.safetensors'], 'lora.safetensors', ONETRAINER_CASCADE);
    await lora.mergeAndCheck(cascade, [peftSpec('down_blocks.0.1.attention.attn.in_proj.0', 2, 8, 8, [{ key: `prior_prior.${STAGE_Q}.weight` }], 1)], STAGES, 'lora.safetensors', ONETRAINER_CASCADE);
    await lora.mergeAndCheck(cascade, [peftSpec('diffusion_model.down_blocks.0.1.attention.attn.in_proj.0', 2, 8, 8, [{ key: `prior_prior.${STAGE_Q}.weight` }], 1)], STAGES, 'lora.safetensors', ONETRAINER_CASCADE);
    await lora.mergeAndCheck(cascade, [
      kohyaSpec('lora_unet_down_blocks_0_1_attention_attn_in_proj_0', 2, 8, 8, [{ key: `prior_prior.${STAGE_Q}.weight` }], 1),
      kohyaSpec('lora_te_text_model_encoder_layers_0_self_attn_q_proj', 2, 16, 16, [{ key: `prior_text_encoder.${TE}.weight` }], 4),
    ], [...STAGES, 'prior_text_encoder/model.safetensors'], 'lora.safetensors', ONETRAINER_CASCADE);
  });

  it('refuses a bare stage module, which fits both the decoder and prior_prior/, and text_encoder. in a file without prior. modules, which names the decoder\'s copy of the CLIP-G', async () => {
    const { problems } = await lora.planOf(cascade, [peftSpec(STAGE_Q, 2, 8, 8, [], 1), peftSpec(`text_encoder.${TE}`, 2, 16, 16, [], 1)]);
    expect(problems).toEqual([
      `lora.safetensors: module "${STAGE_Q}": fits prior_prior.${STAGE_Q}.weight in prior_prior/ (StableCascadeUNet), the prior's in its StableCascadeCombinedPipeline, a folder no LoRA name routes to here, ` +
        `as well as decoder.${STAGE_Q}.weight where it would land, so which of the pipeline's models it is for cannot be told (diffusers' combined pipelines load no LoRA); not supported — give the prior's or the decoder's own pipeline folder as the base`,
      `lora.safetensors: module "text_encoder.${TE}": fits prior_text_encoder.${TE}.weight in prior_text_encoder/ (CLIPTextModelWithProjection), the prior's in its StableCascadeCombinedPipeline, a folder no LoRA name routes to here, ` +
        `as well as text_encoder.${TE}.weight where it would land, so which of the pipeline's models it is for cannot be told (diffusers' combined pipelines load no LoRA); not supported — give the prior's or the decoder's own pipeline folder as the base`,
    ]);
  });
});
