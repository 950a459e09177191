/**
 * T5 LoRA modules named by kohya's and diffusers' text encoder numbers on bases that hold T5-XXL
 * beside CLIPs: diffusers' SD3 and FLUX.1 pipeline folders, and an SD3.5 checkpoint bundling its
 * encoders. The tools that write and apply T5 LoRAs number the T5 after the CLIPs: ComfyUI's
 * model_lora_keys_clip (comfy/lora.py) maps kohya's `lora_te3_` to SD3's T5 (beside CLIP-L and
 * CLIP-G) and `lora_te2_` and `lora_te3_` to FLUX.1's (beside CLIP-L), as sd-scripts (lora_sd3.py,
 * lora_flux.py: `lora_te3`) and OneTrainer (`lora_te3`, FLUX.1's `lora_te2`) write them, and no
 * other `lora_teN_`; OneTrainer's diffusers-format LoRAs name the T5 by its pipeline folder
 * (`text_encoder_3.` on SD3, `text_encoder_2.` on FLUX.1) and its loader applies them there, while
 * diffusers' pipelines load no T5 LoRA. So those merge (float64 truth), and SD3's `lora_te2_`
 * (refused until now), `lora_te1_`/`lora_te_` T5 modules (refused) and FLUX.1's `text_encoder_3.`
 * (merged into its T5) are left out with a warning naming them and why; a diffusers name that
 * numbers a CLIP folder (SD3's `text_encoder_2.`) is still refused. Model index and configs as
 * diffusers and transformers write them; shapes cut small (the folders' classes say which is which).
 */
import { describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, loraTensors, peftSpec, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { onePipelineLora } from './helpers/pipeline-merge.js';
import { t5XxlConfig } from './helpers/t5-fixtures.js';
import { FLUX1_DEV, SD3_MEDIUM } from './helpers/model-index.js';

const rand = seededRandom(4096);
const json = (o: object) => JSON.stringify(o, null, 2);

const CLIP_L_CONFIG = {
  _name_or_path: 'openai/clip-vit-large-patch14', architectures: ['CLIPTextModel'], attention_dropout: 0.0, bos_token_id: 0, dropout: 0.0, eos_token_id: 2,
  hidden_act: 'quick_gelu', hidden_size: 768, initializer_factor: 1.0, initializer_range: 0.02, intermediate_size: 3072, layer_norm_eps: 1e-5,
  max_position_embeddings: 77, model_type: 'clip_text_model', num_attention_heads: 12, num_hidden_layers: 12, pad_token_id: 1, projection_dim: 768,
  torch_dtype: 'bfloat16', transformers_version: '4.43.3', vocab_size: 49408,
};
const CLIP_G_CONFIG = {
  ...CLIP_L_CONFIG, _name_or_path: 'laion/CLIP-ViT-bigG-14-laion2B-39B-b160k', architectures: ['CLIPTextModelWithProjection'], hidden_act: 'gelu',
  hidden_size: 1280, intermediate_size: 5120, num_attention_heads: 20, num_hidden_layers: 32, projection_dim: 1280,
};
/** google/t5-v1_1-xxl's encoder, as FLUX.1's text_encoder_2/ and SD3's text_encoder_3/ save it. */
const T5_CONFIG = t5XxlConfig();

const TE = 'text_model.encoder.layers.0';
const clipFolder = (size: number) => buildSafetensors([tensor(rand, `${TE}.self_attn.q_proj.weight`, [size, size], 'BF16')]);
const SA = 'encoder.block.0.layer.0.SelfAttention';
const WO = 'encoder.block.0.layer.1.DenseReluDense.wo';
/** A T5 encoder in transformers' names, d_model cut to 10 (d_ff 16). */
const t5Folder = () => buildSafetensors([
  tensor(rand, 'shared.weight', [24, 10], 'BF16'), tensor(rand, `${SA}.q.weight`, [10, 10], 'BF16'), tensor(rand, `${SA}.k.weight`, [10, 10], 'BF16'),
  tensor(rand, `${WO}.weight`, [10, 16], 'BF16'), tensor(rand, 'encoder.final_layer_norm.weight', [10], 'BF16'),
]);
const vae = () => buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);

/** stabilityai/stable-diffusion-3-medium-diffusers. */
const sd3: Record<string, Uint8Array | string> = {
  'model_index.json': json(SD3_MEDIUM),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json({ ...CLIP_L_CONFIG, architectures: ['CLIPTextModelWithProjection'] }),
  'text_encoder/model.safetensors': clipFolder(12),
  'text_encoder_2/config.json': json(CLIP_G_CONFIG),
  'text_encoder_2/model.safetensors': clipFolder(16),
  'text_encoder_3/config.json': json(T5_CONFIG),
  'text_encoder_3/model.safetensors': t5Folder(),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** black-forest-labs/FLUX.1-dev. */
const flux: Record<string, Uint8Array | string> = {
  'model_index.json': json(FLUX1_DEV),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json(CLIP_L_CONFIG),
  'text_encoder/model.safetensors': clipFolder(12),
  'text_encoder_2/config.json': json(T5_CONFIG),
  'text_encoder_2/model.safetensors': t5Folder(),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

const kohya = (name: string, out: number, inF: number, key: string) => kohyaSpec(name, 2, out, inF, [{ key }], 4);
/** OneTrainer's diffusers-format module: lora_A/lora_B, α folded into lora_B (no α: scale 1). */
const oneTrainer = (name: string, out: number, inF: number, key: string) => peftSpec(name, 2, out, inF, [{ key }], 1);
const flat = (path: string) => path.replaceAll('.', '_');

const pipelines = onePipelineLora(rand, 0.9, 'BF16');
const left = (what: string, modules: string[]) => `lora.safetensors: ${modules.length} module${modules.length === 1 ? '' : 's'} left out, not merged: ${modules.length === 1 ? 'it names' : 'they name'} ${what} (${modules.join(', ')})`;
const kohyaWhy = (beside: string, names: string, prefix: string) => `but ComfyUI numbers kohya's T5 names after the CLIPs beside it: beside ${beside} its T5 is ${names} only (as kohya's sd-scripts and OneTrainer write it), so it maps ${prefix} to no encoder of this base and leaves such modules unloaded`;

describe('SD3 pipeline folder (CLIP-L, CLIP-G, T5 in text_encoder_3/)', () => {
  const lands = [
    oneTrainer(`text_encoder_3.${SA}.q`, 10, 10, `text_encoder_3.${SA}.q.weight`),
    kohya(`lora_te3_${flat(WO)}`, 10, 16, `text_encoder_3.${WO}.weight`),
    kohya(`lora_te2_${flat(TE)}_self_attn_q_proj`, 16, 16, `text_encoder_2.${TE}.self_attn.q_proj.weight`),
  ];
  const leftOut = [
    kohya(`lora_te2_${flat(SA)}_k`, 10, 10, ''),
    kohya(`lora_te1_${flat(SA)}_k`, 10, 10, ''),
    kohya(`lora_te_${flat(SA)}_q`, 10, 10, ''),
  ];
  const why = (prefix: string) => kohyaWhy('CLIP-L and CLIP-G (as SD3)', 'lora_te3_', prefix);

  it('OneTrainer\'s text_encoder_3. and kohya\'s lora_te3_ merge into the T5; lora_te2_, lora_te1_ and lora_te_ T5 modules are left out, as ComfyUI leaves them', async () => {
    const { warnings } = await pipelines.mergeAndCheck(sd3, [...lands, ...leftOut], ['text_encoder_2/model.safetensors', 'text_encoder_3/model.safetensors']);
    expect(warnings).toEqual([
      left(`text encoder 2 (T5), ${why('lora_te2_')}`, [`lora_te2_${flat(SA)}_k`]),
      left(`text encoder 1 (T5), ${why('lora_te1_')}`, [`lora_te1_${flat(SA)}_k`]),
      left(`the text encoder, ${why('lora_te_')}`, [`lora_te_${flat(SA)}_q`]),
    ]);
  });

  it('diffusers\' text_encoder_2. and text_encoder. name a CLIP folder, where a T5 path is refused, as diffusers fails to load it (PEFT finds no such module in the CLIP)', async () => {
    const { problems } = await pipelines.planOf(sd3, [...lands, oneTrainer(`text_encoder_2.${SA}.q`, 10, 10, ''), oneTrainer(`text_encoder.${SA}.k`, 10, 10, '')]);
    expect(problems).toEqual([
      `lora.safetensors: module "text_encoder_2.${SA}.q": its prefix names text encoder 2 (T5), but its path matches text_encoder_3.${SA}.q.weight in text_encoder_3 (T5EncoderModel); the base has no such tensor in text_encoder_2 (CLIPTextModelWithProjection)`,
      `lora.safetensors: module "text_encoder.${SA}.k": its prefix names text encoder 1 (T5), but its path matches text_encoder_3.${SA}.k.weight in text_encoder_3 (T5EncoderModel); the base has no such tensor in text_encoder (CLIPTextModelWithProjection)`,
    ]);
  });
});

describe('FLUX.1 pipeline folder (CLIP-L, T5 in text_encoder_2/)', () => {
  it('OneTrainer\'s text_encoder_2. and lora_te2_ and kohya\'s lora_te3_ merge into the T5; text_encoder_3., lora_te1_ and lora_te_ T5 modules are left out', async () => {
    const specs = [
      oneTrainer(`text_encoder_2.${SA}.q`, 10, 10, `text_encoder_2.${SA}.q.weight`),
      kohya(`lora_te2_${flat(SA)}_k`, 10, 10, `text_encoder_2.${SA}.k.weight`),
      kohya(`lora_te3_${flat(WO)}`, 10, 16, `text_encoder_2.${WO}.weight`),
      kohya(`lora_te1_${flat(TE)}_self_attn_q_proj`, 12, 12, `text_encoder.${TE}.self_attn.q_proj.weight`),
      oneTrainer(`text_encoder_3.${SA}.k`, 10, 10, ''),
      kohya(`lora_te1_${flat(SA)}_q`, 10, 10, ''),
      kohya(`lora_te_${flat(WO)}`, 10, 16, ''),
    ];
    const why = (prefix: string) => kohyaWhy('CLIP-L alone (as FLUX.1)', 'lora_te2_ and lora_te3_', prefix);
    const { warnings } = await pipelines.mergeAndCheck(flux, specs, ['text_encoder/model.safetensors', 'text_encoder_2/model.safetensors']);
    expect(warnings).toEqual([
      left('text encoder 3 (T5), which the base does not hold: its T5 (text_encoder_2/, beside CLIP-L alone (as FLUX.1)) is text_encoder_2., as OneTrainer\'s diffusers-format LoRAs name it; diffusers\' pipelines load no T5 LoRA (they drop such keys unread) and ComfyUI maps no diffusers name to a T5', [`text_encoder_3.${SA}.k`]),
      left(`text encoder 1 (T5), ${why('lora_te1_')}`, [`lora_te1_${flat(SA)}_q`]),
      left(`the text encoder, ${why('lora_te_')}`, [`lora_te_${flat(WO)}`]),
    ]);
  });
});

describe('an SD3.5 checkpoint bundling its encoders (text_encoders.clip_l / clip_g / t5xxl)', () => {
  const file = 'sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors';
  const P = 'text_encoders.t5xxl.transformer.';
  const base = buildSafetensors([
    tensor(rand, 'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight', [24, 8], 'F16'),
    tensor(rand, `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj.weight`, [12, 12], 'F16'),
    tensor(rand, `text_encoders.clip_g.transformer.${TE}.self_attn.q_proj.weight`, [16, 16], 'F16'),
    tensor(rand, `${P}${SA}.q.weight`, [10, 10], 'F16'), tensor(rand, `${P}${SA}.k.weight`, [10, 10], 'F16'),
    tensor(rand, `${P}shared.weight`, [24, 10], 'F16'),
  ]);

  it('kohya\'s lora_te3_ and OneTrainer\'s text_encoder_3. merge into its T5; lora_te2_ T5 modules are left out (they were refused)', async () => {
    const specs: LoraSpec[] = [
      kohya(`lora_te3_${flat(SA)}_q`, 10, 10, `${P}${SA}.q.weight`),
      oneTrainer(`text_encoder_3.${SA}.k`, 10, 10, `${P}${SA}.k.weight`),
      kohya(`lora_te2_${flat(SA)}_k`, 10, 10, ''),
    ];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const prepared = await prepareMerge(memoryInputFileSet({ [file]: base }, file), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1.1 }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      expect(prepared.plan.warnings).toEqual([left(`text encoder 2 (T5), ${kohyaWhy('CLIP-L and CLIP-G (as SD3)', 'lora_te3_', 'lora_te2_')}`, [`lora_te2_${flat(SA)}_k`])]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: pipelines.backend() });
      const written = output.files().find((f) => f.path === file)!;
      expectMergedFile(decodeSafetensors(base).tensors, decodeSafetensors(new Uint8Array(await written.blob.arrayBuffer())).tensors,
        truthTerms(decodeSafetensors(lora).tensors, specs.filter((s) => s.lands[0].key !== ''), 1.1));
    } finally {
      await prepared.close();
    }
  });
});

describe('a FLUX.1 checkpoint bundling its encoders (text_encoders.clip_l / t5xxl, as Comfy-Org\'s flux1-dev-fp8.safetensors)', () => {
  const file = 'flux1-dev-fp8.safetensors';
  const P = 'text_encoders.t5xxl.transformer.';
  const base = buildSafetensors([
    tensor(rand, 'model.diffusion_model.double_blocks.0.img_attn.qkv.weight', [24, 8], 'BF16'),
    tensor(rand, `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj.weight`, [12, 12], 'BF16'),
    tensor(rand, `${P}${SA}.q.weight`, [10, 10], 'BF16'), tensor(rand, `${P}${SA}.k.weight`, [10, 10], 'BF16'),
    tensor(rand, `${P}${WO}.weight`, [10, 16], 'BF16'), tensor(rand, `${P}shared.weight`, [24, 10], 'BF16'),
  ]);

  it('OneTrainer\'s text_encoder_2. and lora_te2_ and kohya\'s lora_te3_ merge into its T5; text_encoder_3. (merged until now) is left out', async () => {
    const specs: LoraSpec[] = [
      oneTrainer(`text_encoder_2.${SA}.q`, 10, 10, `${P}${SA}.q.weight`),
      kohya(`lora_te3_${flat(WO)}`, 10, 16, `${P}${WO}.weight`),
      kohya(`lora_te2_${flat(SA)}_k`, 10, 10, `${P}${SA}.k.weight`),
      oneTrainer(`text_encoder_3.${WO}`, 10, 16, ''),
    ];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const prepared = await prepareMerge(memoryInputFileSet({ [file]: base }, file), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 0.6 }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      expect(prepared.plan.warnings).toEqual([
        left('text encoder 3 (T5), which the base does not hold: its T5 (text_encoders.t5xxl., beside CLIP-L alone (as FLUX.1)) is text_encoder_2., as OneTrainer\'s diffusers-format LoRAs name it; diffusers\' pipelines load no T5 LoRA (they drop such keys unread) and ComfyUI maps no diffusers name to a T5', [`text_encoder_3.${WO}`]),
      ]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: pipelines.backend() });
      const written = output.files().find((f) => f.path === file)!;
      expectMergedFile(decodeSafetensors(base).tensors, decodeSafetensors(new Uint8Array(await written.blob.arrayBuffer())).tensors,
        truthTerms(decodeSafetensors(lora).tensors, specs.filter((s) => s.lands[0].key !== ''), 0.6));
    } finally {
      await prepared.close();
    }
  });
});
