/**
 * An adapter for another kind of model than the base: the guess of each one's family from names,
 * and the plan's one line for it in place of a "no matching tensor" per module. A Flux LoRA in
 * ComfyUI's names (`diffusion_model.` + BFL's) and BFL's control LoRA are a diffusion
 * transformer's; an SDXL LoRA in any naming is a UNet's; Z-Image's and Lumina 2's `layers.N.attention`
 * look like a language model's but have no token table.
 */
import { describe, expect, it } from 'vitest';
import { familyMismatch, guessBaseFamily, guessModelFamily } from '../src/plan/model-family.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { fluxBflTensors } from './helpers/diffusion-fixtures.js';
import { fluxLinears, fluxNorms } from './helpers/flux-control-fixtures.js';
import { hfModelFolder, randomTensor } from './helpers/hf-folder.js';
import { planProblems, type Files } from './helpers/plan-problems.js';

const rand = seededRandom(20261205);
const fluxBase = [...fluxLinears().flatMap(([m]) => [`${m}.weight`, `${m}.bias`]), ...fluxNorms()];

/** A two-layer Llama folder (hidden 8), as transformers saves it. */
function llama(): Files {
  const tensors = [randomTensor('model.embed_tokens.weight', [16, 8], 'F32', rand)];
  for (let i = 0; i < 2; i++) {
    for (const m of ['self_attn.q_proj', 'self_attn.o_proj']) tensors.push(randomTensor(`model.layers.${i}.${m}.weight`, [8, 8], 'F32', rand));
  }
  tensors.push(randomTensor('model.norm.weight', [8], 'F32', rand), randomTensor('lm_head.weight', [16, 8], 'F32', rand));
  return hfModelFolder(tensors, { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, num_hidden_layers: 2 });
}

/** Z-Image's transformer as a bare single file (ComfyUI's names without a prefix): `layers.N.attention.qkv`, no token table. */
function zImage(): Files {
  const tensors = [randomTensor('x_embedder.weight', [8, 4], 'F32', rand)];
  for (let i = 0; i < 2; i++) {
    const p = `layers.${i}.`;
    tensors.push(
      randomTensor(`${p}attention.qkv.weight`, [24, 8], 'F32', rand), randomTensor(`${p}attention.out.weight`, [8, 8], 'F32', rand),
      randomTensor(`${p}feed_forward.w1.weight`, [12, 8], 'F32', rand), randomTensor(`${p}adaLN_modulation.0.weight`, [32, 8], 'F32', rand),
    );
  }
  return { 'z_image.safetensors': buildSafetensors(tensors) };
}

/** A kohya LoRA file (lora_down, lora_up, alpha) on `modules`, each 8 × 8, r 2. */
function kohya(modules: string[]): Files {
  return {
    'lora.safetensors': buildSafetensors(modules.flatMap((m) => [
      randomTensor(`${m}.lora_down.weight`, [2, 8], 'F32', rand), randomTensor(`${m}.lora_up.weight`, [8, 2], 'F32', rand),
      { name: `${m}.alpha`, dtype: 'F32' as const, shape: [], data: [2] },
    ])),
  };
}

const SDXL_MODULES = [
  'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q',
  'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k',
  'lora_unet_up_blocks_0_attentions_1_transformer_blocks_2_attn1_to_out_0',
];

describe('model family of an adapter and a base', () => {
  it('a control LoRA\'s modules (diffusion_model. + BFL names) are a diffusion transformer\'s: no mismatch with flux1-dev', () => {
    const modules = [...fluxLinears().map(([m]) => `diffusion_model.${m}`), ...fluxNorms()];
    expect(guessModelFamily(modules)).toBe('diffusion transformer');
    expect(familyMismatch(modules, fluxBase)).toBeUndefined();
  });

  it('an SDXL LoRA in ComfyUI\'s names on flux1-dev is a UNet\'s', () => {
    const modules = ['diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q', 'diffusion_model.output_blocks.1.1.proj_out', 'diffusion_model.middle_block.1.proj_in'];
    expect(familyMismatch(modules, fluxBase)).toEqual({ adapter: 'diffusion UNet', base: 'diffusion transformer' });
  });

  it('a base named like a language model without a token table or head is not taken for one (Z-Image, Lumina 2); a GGUF llama is one', () => {
    const names = ['layers.0.attention.qkv.weight', 'layers.0.attention.out.weight', 'layers.0.feed_forward.w1.weight', 'x_embedder.weight'];
    expect(guessModelFamily(names)).toBe('language model');
    expect(guessBaseFamily(names)).toBeUndefined();
    expect(guessBaseFamily([...names, 'model.embed_tokens.weight'])).toBe('language model');
    expect(guessBaseFamily(['token_embd.weight', 'blk.0.attn_q.weight', 'blk.0.ffn_up.weight', 'output_norm.weight'])).toBe('language model');
    // Z-Image's diffusers pipeline: the transformer's keys look like a language model's, and its
    // Qwen3 text encoder's embed_tokens is the text encoder's, not the transformer's.
    const pipeline = [
      ...['attention.to_q', 'attention.to_k', 'attention.to_v', 'attention.to_out.0', 'feed_forward.w1', 'feed_forward.w2'].flatMap((m) => [0, 1, 2].map((i) => `transformer.layers.${i}.${m}.weight`)),
      'text_encoder.model.embed_tokens.weight', 'text_encoder.model.layers.0.self_attn.q_proj.weight', 'vae.decoder.conv_in.weight',
    ];
    expect(guessModelFamily(pipeline)).toBe('language model');
    expect(guessBaseFamily(pipeline)).toBeUndefined();
    expect(guessModelFamily(['text_encoders.qwen3_4b.transformer.model.embed_tokens.weight'])).toBe('text encoder');
  });

  it('a pipeline whose text encoders hold more tensors than its UNet or transformer is that denoiser\'s model, not a text encoder; a text encoder alone is one', () => {
    const te = ['text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight', 'text_encoder.text_model.encoder.layers.0.mlp.fc1.weight',
      'text_encoder.text_model.final_layer_norm.weight', 'text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.weight'];
    const unet = ['unet.down_blocks.1.attentions.0.proj_in.weight', 'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight'];
    expect(guessModelFamily([...te, ...unet])).toBe('text encoder');
    expect(guessBaseFamily([...te, ...unet, 'vae.decoder.conv_in.weight'])).toBe('diffusion UNet');
    expect(guessBaseFamily([...te, 'transformer.single_transformer_blocks.0.attn.to_q.weight'])).toBe('diffusion transformer');
    expect(guessBaseFamily(te)).toBe('text encoder');
    const llamaLora = ['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.down_proj'];
    expect(familyMismatch(llamaLora, [...te, ...unet])).toEqual({ adapter: 'language model', base: 'diffusion UNet' });
  });

  it('ComfyUI\'s and kohya\'s diffusion prefixes say "a diffusion model", which fits a UNet or a transformer base but not a language model', () => {
    const zImageLora = ['diffusion_model.layers.0.attention.qkv', 'diffusion_model.layers.1.feed_forward.w1'];
    expect(guessModelFamily(zImageLora)).toBe('diffusion model');
    expect(guessModelFamily(['lora_unet_layers_0_attention_qkv'])).toBe('diffusion model');
    expect(familyMismatch(zImageLora, fluxBase)).toBeUndefined();
    expect(familyMismatch(zImageLora, ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight'])).toEqual({ adapter: 'diffusion model', base: 'language model' });
  });
});

describe('the plan on an adapter for another kind of model', () => {
  it('says in one line that an SDXL LoRA is for a UNet and the base a language model, instead of a miss per module', async () => {
    expect(await planProblems(llama(), { 'sdxl-style.safetensors': kohya(SDXL_MODULES) })).toEqual([
      'sdxl-style.safetensors: this adapter is for a diffusion UNet, but the base is a language model: none of its 3 modules has a tensor there (such as "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"); pick the base it was trained on',
    ]);
    expect(await planProblems(llama(), { 'one.safetensors': kohya(SDXL_MODULES.slice(0, 1)) })).toEqual([
      'one.safetensors: this adapter is for a diffusion UNet, but the base is a language model: its one module has no tensor there (such as "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"); pick the base it was trained on',
    ]);
  });

  it('counts only the modules of parts the base holds: an SDXL LoRA with text-encoder modules on a Flux transformer file', async () => {
    const flux = { 'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')) };
    const lora = kohya([...SDXL_MODULES, 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj']);
    expect(await planProblems(flux, { 'sdxl-style.safetensors': lora })).toEqual([
      'sdxl-style.safetensors: this adapter is for a diffusion UNet, but the base is a diffusion transformer: none of its 3 modules has a tensor there (such as "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"); pick the base it was trained on',
    ]);
  });

  it('keeps a miss per module where the kinds agree, where the base says nothing clear, or where some modules land', async () => {
    const miss = (adapter: string, module: string, where = 'the base model') => `${adapter}: module "${module}": no matching tensor in ${where}`;
    // An SDXL LoRA on Z-Image: the base's `layers.N.attention` look like a language model's, but
    // it has no token table, so no kind is claimed for it.
    expect(await planProblems(zImage(), { 'sdxl-style.safetensors': kohya(SDXL_MODULES) })).toEqual(SDXL_MODULES.map((m) => miss('sdxl-style.safetensors', m, 'the UNet/transformer')));
    // A Llama LoRA on a Llama that lacks its layers: the same kind, so each miss is said.
    expect(await planProblems(llama(), { 'l.safetensors': kohya(['model.layers.5.self_attn.q_proj']) }))
      .toEqual([miss('l.safetensors', 'model.layers.5.self_attn.q_proj')]);
    // One module lands, one does not: the miss is the module's own.
    const mixed = kohya(['lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q', 'model.layers.0.self_attn.q_proj']);
    expect(await planProblems(llama(), { 'mixed.safetensors': mixed }))
      .toEqual([miss('mixed.safetensors', 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q')]);
  });
});

describe('the plan on an adapter for another size of the model', () => {
  /** PEFT's LoRA (r 2, α 4) as save_pretrained writes it, on modules of the given (out, in). */
  const peftOn = (shapes: Record<string, [out: number, inFeatures: number]>): Files => {
    const tensors = Object.entries(shapes).flatMap(([m, [out, inFeatures]]) => [
      randomTensor(`base_model.model.${m}.lora_A.weight`, [2, inFeatures], 'F32', rand),
      randomTensor(`base_model.model.${m}.lora_B.weight`, [out, 2], 'F32', rand),
    ]);
    const config = JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'o_proj'] });
    return { 'adapter_config.json': config, 'adapter_model.safetensors': buildSafetensors(tensors) };
  };
  const q = (i: number) => `model.layers.${i}.self_attn.q_proj`;
  const o = (i: number) => `model.layers.${i}.self_attn.o_proj`;

  it('says in one line that no module fits when a LoRA of a wider model meets this one (hidden 16 against 8)', async () => {
    expect(await planProblems(llama(), { wide: peftOn({ [q(0)]: [16, 16], [o(0)]: [16, 16], [q(1)]: [16, 16], [o(1)]: [16, 16] }) })).toEqual([
      'wide: none of its 4 modules fits this base: 4 have other shapes than the tensors they name (such as module "model.layers.0.self_attn.q_proj": ΔW (16, 16) does not fit base model.layers.0.self_attn.q_proj.weight (8, 8): ΔW has 16 rows (outputs), the base 8); it was trained on another model or another size of this one (an SD 1.5 LoRA on SDXL, a 7B model\'s LoRA on a 13B one): pick the base it was trained on',
    ]);
    // A deeper model's LoRA: its layers past the base's name no tensor.
    expect(await planProblems(llama(), { deep: peftOn({ [q(0)]: [16, 16], [q(5)]: [16, 16], [o(6)]: [16, 16] }) })).toEqual([
      expect.stringMatching(/^deep: none of its 3 modules fits this base: one has another shape than the tensor it names \(such as module "model\.layers\.0\.self_attn\.q_proj": .*\), 2 name no tensor in it; it was trained on another model/),
    ]);
  });

  it('says first that only some modules fit when as many or more do not, then lists each problem', async () => {
    const fits = await planProblems(llama(), { some: peftOn({ [q(0)]: [8, 8], [o(0)]: [16, 16], [q(1)]: [16, 16] }) });
    expect(fits).toEqual([
      'some: only one of its 3 modules fits this base: 2 have other shapes than the tensors they name; it was probably trained on another model or another size of this one (an SD 1.5 LoRA on SDXL, a 7B model\'s LoRA on a 13B one): pick the base it was trained on',
      'some: module "model.layers.0.self_attn.o_proj": ΔW (16, 16) does not fit base model.layers.0.self_attn.o_proj.weight (8, 8): ΔW has 16 rows (outputs), the base 8',
      'some: module "model.layers.1.self_attn.q_proj": ΔW (16, 16) does not fit base model.layers.1.self_attn.q_proj.weight (8, 8): ΔW has 16 rows (outputs), the base 8',
    ]);
    // Modules that name no tensor count among those that do not fit.
    expect((await planProblems(llama(), { half: peftOn({ [q(0)]: [8, 8], [o(0)]: [8, 8], [q(1)]: [16, 16], [q(7)]: [8, 8] }) }))[0]).toBe(
      'half: only 2 of its 4 modules fit this base: one has another shape than the tensor it names, one names no tensor in it; it was probably trained on another model or another size of this one (an SD 1.5 LoRA on SDXL, a 7B model\'s LoRA on a 13B one): pick the base it was trained on',
    );
    // More modules fit than do not: each problem is the module's own.
    expect(await planProblems(llama(), { most: peftOn({ [q(0)]: [8, 8], [o(0)]: [8, 8], [q(1)]: [16, 16] }) })).toEqual([
      'most: module "model.layers.1.self_attn.q_proj": ΔW (16, 16) does not fit base model.layers.1.self_attn.q_proj.weight (8, 8): ΔW has 16 rows (outputs), the base 8',
    ]);
  });

  it('keeps each module\'s own problem where one fails for another reason than its shape, or where the adapter has one module', async () => {
    // A module that fits nowhere for another reason than its shape (a name several tensors end with).
    expect(await planProblems(llama(), { other: peftOn({ [q(0)]: [16, 16], 'self_attn.o_proj': [8, 8] }) })).toEqual([
      'other: module "model.layers.0.self_attn.q_proj": ΔW (16, 16) does not fit base model.layers.0.self_attn.q_proj.weight (8, 8): ΔW has 16 rows (outputs), the base 8',
      expect.stringMatching(/^other: module "self_attn\.o_proj": matches 2 base tensors/),
    ]);
    // The same beside a module that lands: the problems are not all of fit.
    expect(await planProblems(llama(), { another: peftOn({ [q(0)]: [16, 16], [o(0)]: [16, 16], [q(1)]: [8, 8], 'self_attn.o_proj': [8, 8] }) })).toEqual([
      'another: module "model.layers.0.self_attn.q_proj": ΔW (16, 16) does not fit base model.layers.0.self_attn.q_proj.weight (8, 8): ΔW has 16 rows (outputs), the base 8',
      'another: module "model.layers.0.self_attn.o_proj": ΔW (16, 16) does not fit base model.layers.0.self_attn.o_proj.weight (8, 8): ΔW has 16 rows (outputs), the base 8',
      expect.stringMatching(/^another: module "self_attn\.o_proj": matches 2 base tensors/),
    ]);
    // A bias diff alone (ComfyUI's diff_b) that lands is a module that fits; one misfit beside it
    // says too little for a guess.
    const withBias = hfModelFolder([
      randomTensor('model.embed_tokens.weight', [16, 8], 'F32', rand), randomTensor(`${q(0)}.weight`, [8, 8], 'F32', rand),
      randomTensor(`${q(0)}.bias`, [8], 'F32', rand), randomTensor(`${o(0)}.weight`, [8, 8], 'F32', rand),
    ], { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8, num_hidden_layers: 1 });
    const biasAndWide = { 'lora.safetensors': buildSafetensors([
      randomTensor(`${q(0)}.diff_b`, [8], 'F32', rand),
      randomTensor(`${o(0)}.lora_A.weight`, [2, 16], 'F32', rand), randomTensor(`${o(0)}.lora_B.weight`, [16, 2], 'F32', rand),
    ]) };
    expect(await planProblems(withBias, { mixed: biasAndWide })).toEqual([
      `mixed: module "${o(0)}": ΔW (16, 16) does not fit base ${o(0)}.weight (8, 8): ΔW has 16 rows (outputs), the base 8`,
    ]);
    expect(await planProblems(llama(), { one: peftOn({ [q(0)]: [16, 16] }) })).toEqual([
      'one: module "model.layers.0.self_attn.q_proj": ΔW (16, 16) does not fit base model.layers.0.self_attn.q_proj.weight (8, 8): ΔW has 16 rows (outputs), the base 8',
    ]);
  });

  it('says first that an SD 1.5 LoRA fits only by chance on SDXL (sd_xl_base_1.0 names and shapes), then lists each miss', async () => {
    const P = 'model.diffusion_model.';
    // F16 zeros at real sizes: the plan reads shapes, not values.
    const f16 = (name: string, shape: number[]) => ({ name, dtype: 'F16' as const, shape, data: new Uint8Array(2 * shape.reduce((a, b) => a * b, 1)) });
    const sdxl = { 'sd_xl_base_1.0.safetensors': buildSafetensors([
      f16(`${P}input_blocks.1.0.in_layers.2.weight`, [320, 320, 3, 3]), // SDXL's first block has no attention
      f16(`${P}input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight`, [640, 640]),
      f16(`${P}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight`, [640, 2048]),
      f16(`${P}middle_block.1.transformer_blocks.0.attn1.to_q.weight`, [1280, 1280]),
      f16(`${P}middle_block.1.transformer_blocks.0.attn2.to_k.weight`, [1280, 2048]),
    ]) };
    // SD 1.5's kohya names and shapes: its cross-attention reads CLIP-L's 768 features, SDXL's 2048.
    const sd15: [module: string, out: number, inFeatures: number][] = [
      ['lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q', 320, 320],
      ['lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q', 640, 640],
      ['lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k', 640, 768],
      ['lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q', 1280, 1280],
      ['lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k', 1280, 768],
    ];
    const lora = { 'sd15-style.safetensors': buildSafetensors(sd15.flatMap(([m, out, inFeatures]) => [
      f16(`${m}.lora_down.weight`, [4, inFeatures]), f16(`${m}.lora_up.weight`, [out, 4]),
      { name: `${m}.alpha`, dtype: 'F16' as const, shape: [], data: [4] },
    ])) };
    expect(await planProblems(sdxl, { 'sd15-style.safetensors': lora })).toEqual([
      'sd15-style.safetensors: only 2 of its 5 modules fit this base: 2 have other shapes than the tensors they name, one names no tensor in it; it was probably trained on another model or another size of this one (an SD 1.5 LoRA on SDXL, a 7B model\'s LoRA on a 13B one): pick the base it was trained on',
      'sd15-style.safetensors: module "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": no matching tensor in the UNet/transformer (model.diffusion_model.)',
      `sd15-style.safetensors: module "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k": ΔW (640, 768) does not fit base ${P}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight (640, 2048): ΔW has 768 inputs, the base 2048`,
      `sd15-style.safetensors: module "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k": ΔW (1280, 768) does not fit base ${P}middle_block.1.transformer_blocks.0.attn2.to_k.weight (1280, 2048): ΔW has 768 inputs, the base 2048`,
    ]);
  });
});
