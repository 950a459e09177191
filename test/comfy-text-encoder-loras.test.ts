/**
 * LoRAs that ComfyUI's "Extract and Save Lora" node (LoraSave, comfy_extras/nodes_lora_extract.py)
 * writes with a text encoder diff: `text_encoders.` + the key of ComfyUI's own CLIP/T5 model
 * (`clip_l.transformer.text_model.…`, `clip_g.…`, `t5xxl.transformer.encoder.…`), which
 * comfy/lora.py model_lora_keys_clip maps back ("generic lora format"). Factors F16 without
 * `.alpha` (scale 1, as ComfyUI applies a LoRA without α), `.diff_b` for biases and `.diff` for
 * norms when bias diffs are asked for. ComfyUI's SDXL CLIP-G is OpenCLIP renamed to transformers'
 * names on load (comfy/utils.py clip_text_transformers_convert), so its q/k/v land on thirds of
 * `in_proj_weight` / `in_proj_bias`, `layer_norm1` on `ln_1`, `final_layer_norm` on `ln_final`,
 * `position_embedding` on `positional_embedding`, and `text_projection` transposed.
 * Checked against float64 truth written out here; the base of a file without text encoders leaves
 * those modules out with a warning, as ComfyUI warns "lora key not loaded".
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { runCliInProcess } from './helpers/cli.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { describePlan } from '../src/cli/plan-report.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { expectMerged } from './helpers/expect-merged.js';

const rand = seededRandom(20261207);
const R = 2;
const L = 12; // CLIP-L width (768 in the real model)
const G = 16; // CLIP-G width (1280)
const TE1 = 'conditioner.embedders.0.transformer.text_model.';
const TE2 = 'conditioner.embedders.1.model.';
const UNET_Q = 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight';

/** sd_xl_base_1.0.safetensors: UNet, CLIP-L in transformers' names, OpenCLIP-G in open_clip's, VAE; F16. */
function sdxlTensors(): FixtureTensor[] {
  const t = (name: string, shape: number[]) => tensor(rand, name, shape, 'F16');
  return [
    t(UNET_Q, [8, 8]),
    t(`${TE1}encoder.layers.0.self_attn.q_proj.weight`, [L, L]), t(`${TE1}encoder.layers.0.self_attn.q_proj.bias`, [L]),
    t(`${TE1}encoder.layers.0.layer_norm1.weight`, [L]), t(`${TE1}encoder.layers.0.layer_norm1.bias`, [L]),
    t(`${TE2}transformer.resblocks.0.attn.in_proj_weight`, [3 * G, G]), t(`${TE2}transformer.resblocks.0.attn.in_proj_bias`, [3 * G]),
    t(`${TE2}transformer.resblocks.0.attn.out_proj.weight`, [G, G]),
    t(`${TE2}transformer.resblocks.0.ln_1.weight`, [G]), t(`${TE2}transformer.resblocks.0.ln_1.bias`, [G]),
    t(`${TE2}ln_final.weight`, [G]), t(`${TE2}positional_embedding`, [5, G]), t(`${TE2}token_embedding.weight`, [20, G]), t(`${TE2}text_projection`, [G, G]),
    t('first_stage_model.decoder.conv_in.weight', [4, 4, 3, 3]),
  ];
}

/** v1-5-pruned-emaonly.safetensors: UNet and CLIP-L under `cond_stage_model.transformer.`. */
function sd15Tensors(): FixtureTensor[] {
  const t = (name: string, shape: number[]) => tensor(rand, name, shape, 'F16');
  return [
    t('model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight', [8, 8]),
    t('cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', [L, L]),
    t('cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc2.weight', [L, 2 * L]),
    t('first_stage_model.decoder.conv_in.weight', [4, 4, 3, 3]),
  ];
}

/** How one adapter tensor lands: added to `key` (rows from `at`, or transposed), as ΔW or a diff. */
interface Change { key: string; lora?: string; diff?: string; at?: number; transposed?: boolean }

const lora = (name: string, out: number, inF: number): FixtureTensor[] => [
  tensor(rand, `${name}.lora_up.weight`, [out, R], 'F16', 0.5), tensor(rand, `${name}.lora_down.weight`, [R, inF], 'F16', 0.5),
];
const diff = (name: string, n: number): FixtureTensor => tensor(rand, name, [n], 'F16', 0.5);

/** base + weight · (up·down) on the rows a change names (transposed where it says), + weight · diff. */
function truthOf(w: DecodedTensor, changes: Change[], adapter: Map<string, DecodedTensor>, weight: number): Float64Array {
  const out = w.values.slice();
  const cols = w.shape.length === 2 ? w.shape[1] : 1;
  for (const c of changes) {
    if (c.diff) {
      const d = adapter.get(c.diff)!.values;
      for (let i = 0; i < d.length; i++) out[(c.at ?? 0) + i] += weight * d[i];
      continue;
    }
    const up = adapter.get(`${c.lora}.lora_up.weight`)!, down = adapter.get(`${c.lora}.lora_down.weight`)!;
    const [rows, inF] = [up.shape[0], down.shape[1]];
    for (let o = 0; o < rows; o++) {
      for (let i = 0; i < inF; i++) {
        let sum = 0;
        for (let k = 0; k < R; k++) sum += up.values[o * R + k] * down.values[k * inF + i];
        const at = c.transposed ? i * cols + o : ((c.at ?? 0) + o) * cols + i;
        out[at] += weight * sum;
      }
    }
  }
  return out;
}

const backends = mergeBackends({ cpu: 'default' });
const temp = tempDirs();
afterAll(temp.removeAll);

async function expectLands(baseTensors: FixtureTensor[], adapterTensors: FixtureTensor[], changes: Change[], weight: number) {
  const baseBytes = buildSafetensors(baseTensors);
  const adapterBytes = buildSafetensors(adapterTensors);
  const result: Record<string, { tensors: Map<string, DecodedTensor>; warnings: string[] }> = {};
  for (const kind of ['cpu', 'webgpu'] as const) {
    result[kind] = await mergeInMemory({
      backend: backends[kind]!, base: { 'model.safetensors': baseBytes },
      adapters: [{ files: { 'comfyui_extracted_lora.safetensors': adapterBytes }, name: 'comfyui_extracted_lora.safetensors', weight }],
    });
    const base = decodeSafetensors(baseBytes).tensors;
    const adapter = decodeSafetensors(adapterBytes).tensors;
    for (const [key, w] of base) {
      const got = result[kind].tensors.get(key)!;
      const mine = changes.filter((c) => c.key === key);
      if (mine.length === 0) expect(got.bytes, `${key} is copied unchanged on ${kind}`).toEqual(w.bytes);
      else expectMerged(got.values, truthOf(w, mine, adapter, weight), got.dtype, `${key} on ${kind}`);
    }
  }
  return result.cpu;
}

const CL = 'text_encoders.clip_l.transformer.text_model.encoder.layers.0.';
const CG = 'text_encoders.clip_g.transformer.text_model.';

describe('ComfyUI-extracted LoRAs with text encoders (`text_encoders.clip_l.` / `clip_g.`)', () => {
  it('land on an SDXL checkpoint: CLIP-L by name, CLIP-G\'s q/k/v on thirds of open_clip\'s in_proj_weight, the UNet', async () => {
    await expectLands(sdxlTensors(), [
      ...lora('diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q', 8, 8),
      ...lora(`${CL}self_attn.q_proj`, L, L), diff(`${CL}self_attn.q_proj.diff_b`, L),
      ...lora(`${CG}encoder.layers.0.self_attn.k_proj`, G, G), ...lora(`${CG}encoder.layers.0.self_attn.v_proj`, G, G),
      ...lora(`${CG}encoder.layers.0.self_attn.out_proj`, G, G),
    ], [
      { key: UNET_Q, lora: 'diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q' },
      { key: `${TE1}encoder.layers.0.self_attn.q_proj.weight`, lora: `${CL}self_attn.q_proj` },
      { key: `${TE1}encoder.layers.0.self_attn.q_proj.bias`, diff: `${CL}self_attn.q_proj.diff_b` },
      { key: `${TE2}transformer.resblocks.0.attn.in_proj_weight`, lora: `${CG}encoder.layers.0.self_attn.k_proj`, at: G },
      { key: `${TE2}transformer.resblocks.0.attn.in_proj_weight`, lora: `${CG}encoder.layers.0.self_attn.v_proj`, at: 2 * G },
      { key: `${TE2}transformer.resblocks.0.attn.out_proj.weight`, lora: `${CG}encoder.layers.0.self_attn.out_proj` },
    ], 0.8);
  });

  it('land CLIP-G\'s q/k/v bias diffs (`.diff_b`) on their thirds of open_clip\'s in_proj_bias', async () => {
    await expectLands(sdxlTensors(), [
      ...lora(`${CG}encoder.layers.0.self_attn.k_proj`, G, G), diff(`${CG}encoder.layers.0.self_attn.k_proj.diff_b`, G),
      ...lora(`${CG}encoder.layers.0.self_attn.q_proj`, G, G), diff(`${CG}encoder.layers.0.self_attn.q_proj.diff_b`, G),
    ], [
      { key: `${TE2}transformer.resblocks.0.attn.in_proj_weight`, lora: `${CG}encoder.layers.0.self_attn.k_proj`, at: G },
      { key: `${TE2}transformer.resblocks.0.attn.in_proj_bias`, diff: `${CG}encoder.layers.0.self_attn.k_proj.diff_b`, at: G },
      { key: `${TE2}transformer.resblocks.0.attn.in_proj_weight`, lora: `${CG}encoder.layers.0.self_attn.q_proj` },
      { key: `${TE2}transformer.resblocks.0.attn.in_proj_bias`, diff: `${CG}encoder.layers.0.self_attn.q_proj.diff_b` },
    ], -0.6);
  });

  it('land CLIP-G\'s norms and embeddings on open_clip\'s ln_1, ln_final, positional_embedding and token_embedding', async () => {
    await expectLands(sdxlTensors(), [
      diff(`${CG}encoder.layers.0.layer_norm1.diff`, G), diff(`${CG}encoder.layers.0.layer_norm1.diff_b`, G),
      diff(`${CG}final_layer_norm.diff`, G),
      ...lora(`${CG}embeddings.position_embedding`, 5, G), ...lora(`${CG}embeddings.token_embedding`, 20, G),
    ], [
      { key: `${TE2}transformer.resblocks.0.ln_1.weight`, diff: `${CG}encoder.layers.0.layer_norm1.diff` },
      { key: `${TE2}transformer.resblocks.0.ln_1.bias`, diff: `${CG}encoder.layers.0.layer_norm1.diff_b` },
      { key: `${TE2}ln_final.weight`, diff: `${CG}final_layer_norm.diff` },
      { key: `${TE2}positional_embedding`, lora: `${CG}embeddings.position_embedding` },
      { key: `${TE2}token_embedding.weight`, lora: `${CG}embeddings.token_embedding` },
    ], 1.5);
  });

  it('land a text_projection LoRA transposed on open_clip\'s bare parameter, ComfyUI- or diffusers-named', async () => {
    const projection = 'text_encoders.clip_g.transformer.text_projection';
    await expectLands(sdxlTensors(), lora(projection, G, G), [{ key: `${TE2}text_projection`, lora: projection, transposed: true }], 0.7);
    // diffusers reads a CLIP's rank from its q_proj … fc2 modules: a file of its names holds some beside text_projection.
    const [name, outProj] = ['text_encoder_2.text_projection', 'text_encoder_2.text_model.encoder.layers.0.self_attn.out_proj'];
    await expectLands(sdxlTensors(), [...lora(name, G, G), ...lora(outProj, G, G)], [
      { key: `${TE2}text_projection`, lora: name, transposed: true }, { key: `${TE2}transformer.resblocks.0.attn.out_proj.weight`, lora: outProj },
    ], 0.7);
  });

  it('land on an SD1.5 checkpoint\'s CLIP-L (`cond_stage_model.transformer.`)', async () => {
    await expectLands(sd15Tensors(), [
      ...lora('diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q', 8, 8),
      ...lora(`${CL}self_attn.q_proj`, L, L), ...lora(`${CL}mlp.fc2`, L, 2 * L),
    ], [
      { key: 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight', lora: 'diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q' },
      { key: 'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', lora: `${CL}self_attn.q_proj` },
      { key: 'cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc2.weight', lora: `${CL}mlp.fc2` },
    ], 1);
  });

  it('leave CLIP-L\'s text_projection out with a warning where the checkpoint stores none (ComfyUI\'s identity, extracted as a zero LoRA)', async () => {
    // ComfyUI's CLIP-L has text_projection = I; "Extract and Save Lora" of I − I writes lora_up = 0.
    const projection = [
      { name: 'text_encoders.clip_l.transformer.text_projection.lora_up.weight', dtype: 'F16', shape: [L, R], data: new Array(L * R).fill(0) } as FixtureTensor,
      tensor(rand, 'text_encoders.clip_l.transformer.text_projection.lora_down.weight', [R, L], 'F16', 0.5),
    ];
    for (const [base, q] of [[sdxlTensors(), `${TE1}encoder.layers.0.self_attn.q_proj.weight`], [sd15Tensors(), 'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight']] as const) {
      const { warnings } = await expectLands(base, [...lora(`${CL}self_attn.q_proj`, L, L), ...projection], [{ key: q, lora: `${CL}self_attn.q_proj` }], 1);
      expect(warnings).toEqual([expect.stringMatching(/1 module left out, not merged: it names CLIP-L's text_projection, which text encoder 1 \(CLIP-L\).* does not store: ComfyUI gives its CLIP-L an identity projection there.*\(text_encoders\.clip_l\.transformer\.text_projection\)$/)]);
    }
  });

  it('leave CLIP-L modules (`lora_te1_`, `text_encoders.clip_l.`) and a T5\'s `lora_te1_` out with a warning on an SDXL refiner, whose only encoder is CLIP-G; CLIP-G\'s and `lora_te_` land there', async () => {
    // sd_xl_refiner_1.0.safetensors: OpenCLIP-G alone, as conditioner.embedders.0 (comfy/lora.py maps
    // lora_te1_ and clip_l keys only where a CLIP-L is present, lora_te_ to the refiner's CLIP-G).
    const RE = 'conditioner.embedders.0.model.';
    const refiner = [
      tensor(rand, UNET_Q, [8, 8], 'F16'),
      tensor(rand, `${RE}transformer.resblocks.0.attn.in_proj_weight`, [3 * G, G], 'F16'), tensor(rand, `${RE}transformer.resblocks.0.mlp.c_fc.weight`, [2 * G, G], 'F16'),
    ];
    const { warnings } = await expectLands(refiner, [
      ...lora('diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q', 8, 8),
      ...lora(`${CG}encoder.layers.0.self_attn.v_proj`, G, G),
      ...lora('lora_te_text_model_encoder_layers_0_mlp_fc1', 2 * G, G),
      ...lora('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', L, L), ...lora(`${CL}mlp.fc1`, 2 * L, L),
      // kohya's SDXL-base CLIP-G name: ComfyUI maps lora_te2_ only where a CLIP-L is present.
      ...lora('lora_te2_text_model_encoder_layers_0_mlp_fc1', 2 * G, G),
      // A T5-only model's T5 (OneTrainer's Chroma and PixArt lora_te1_): no T5 here either.
      ...lora('lora_te1_encoder_block_0_layer_0_SelfAttention_q', 10, 10),
    ], [
      { key: UNET_Q, lora: 'diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q' },
      { key: `${RE}transformer.resblocks.0.attn.in_proj_weight`, lora: `${CG}encoder.layers.0.self_attn.v_proj`, at: 2 * G },
      { key: `${RE}transformer.resblocks.0.mlp.c_fc.weight`, lora: 'lora_te_text_model_encoder_layers_0_mlp_fc1' },
    ], 0.9);
    expect(warnings).toEqual([expect.stringMatching(/2 modules left out, not merged: they name text encoder 1 \(CLIP-L\), which the base does not hold \(it holds text encoder 1 \(CLIP-G\) \(conditioner\.embedders\.0\.model\.\) in its place, as an SDXL refiner does; ComfyUI maps no CLIP-L module there either\) \(lora_te1_text_model_encoder_layers_0_self_attn_q_proj, text_encoders\.clip_l\.transformer\.text_model\.encoder\.layers\.0\.mlp\.fc1\)$/),
      expect.stringMatching(/1 module left out, not merged: it names text encoder 2 \(CLIP-G\) as SDXL numbers its encoders, which the base does not hold: its only CLIP, text encoder 1 \(CLIP-G\) \(conditioner\.embedders\.0\.model\.\), is its first encoder, as an SDXL refiner's is \(ComfyUI maps lora_te_ there, not lora_te2_\) \(lora_te2_text_model_encoder_layers_0_mlp_fc1\)$/),
      expect.stringMatching(/1 module left out, not merged: it names text encoder 1 \(T5\), which the base does not hold \(it holds the UNet\/transformer \(model\.diffusion_model\.\), text encoder 1 \(CLIP-G\) \(conditioner\.embedders\.0\.model\.\)\) \(lora_te1_encoder_block_0_layer_0_SelfAttention_q\)$/),
    ]);
  });

  it('leave another of ComfyUI\'s text encoders (`text_encoders.umt5xxl.`) out with a warning on a file that holds only the diffusion model', async () => {
    const wan = [tensor(rand, 'model.diffusion_model.blocks.0.self_attn.q.weight', [8, 8], 'BF16'), tensor(rand, 'model.diffusion_model.blocks.0.self_attn.k.weight', [8, 8], 'BF16')];
    const { warnings } = await expectLands(wan, [
      ...lora('diffusion_model.blocks.0.self_attn.q', 8, 8),
      ...lora('text_encoders.umt5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q', 10, 10),
    ], [{ key: 'model.diffusion_model.blocks.0.self_attn.q.weight', lora: 'diffusion_model.blocks.0.self_attn.q' }], 1);
    expect(warnings).toEqual([expect.stringMatching(/1 module left out, not merged: it names ComfyUI's umt5xxl text encoder \(text_encoders\.umt5xxl\.\), which the base does not hold \(it holds the UNet\/transformer \(model\.diffusion_model\.\)\) \(text_encoders\.umt5xxl\.transformer\.encoder\.block\.0\.layer\.0\.SelfAttention\.q\)$/)]);
  });

  it('land ComfyUI\'s Qwen3 (`text_encoders.qwen3_4b.`) by name on a Z-Image all-in-one file that bundles it, and leave a `qwen3_8b` module out with a warning', async () => {
    const TE = 'text_encoders.qwen3_4b.transformer.model.layers.0.';
    const zImage = [
      tensor(rand, 'model.diffusion_model.layers.0.attention.out.weight', [8, 8], 'BF16'),
      tensor(rand, `${TE}self_attn.q_proj.weight`, [12, 12], 'BF16'), tensor(rand, `${TE}self_attn.k_proj.weight`, [4, 12], 'BF16'),
      tensor(rand, `${TE}mlp.down_proj.weight`, [12, 20], 'BF16'), tensor(rand, `${TE}self_attn.q_norm.weight`, [6], 'BF16'),
    ];
    const { warnings } = await expectLands(zImage, [
      ...lora(`${TE}self_attn.k_proj`, 4, 12), ...lora(`${TE}mlp.down_proj`, 12, 20),
      ...lora('text_encoders.qwen3_8b.transformer.model.layers.0.self_attn.q_proj', 12, 12),
    ], [
      { key: `${TE}self_attn.k_proj.weight`, lora: `${TE}self_attn.k_proj` }, { key: `${TE}mlp.down_proj.weight`, lora: `${TE}mlp.down_proj` },
    ], 0.6);
    expect(warnings).toEqual([expect.stringMatching(/1 module left out, not merged: it names ComfyUI's qwen3_8b text encoder \(text_encoders\.qwen3_8b\.\), which the base does not hold/)]);
  });

  it('land kohya\'s `lora_te_` on the only encoder of a Lumina 2 all-in-one file, ComfyUI\'s gemma2_2b, by the path after `model.`, as comfy/lora.py maps it where its CLIP has one prefix; left out where a bundle holds two (HunyuanImage 2.1\'s)', async () => {
    // Comfy-Org's all_in_one/lumina_2.safetensors: the DiT, Gemma 2 2B under text_encoders.gemma2_2b.transformer.model., the VAE.
    const TE = 'text_encoders.gemma2_2b.transformer.model.layers.0.';
    const lumina = [
      tensor(rand, 'model.diffusion_model.layers.0.attention.out.weight', [8, 8], 'BF16'),
      tensor(rand, `${TE}self_attn.q_proj.weight`, [12, 12], 'BF16'), tensor(rand, `${TE}mlp.down_proj.weight`, [12, 20], 'BF16'),
      tensor(rand, 'text_encoders.gemma2_2b.transformer.model.embed_tokens.weight', [30, 12], 'BF16'), tensor(rand, 'vae.decoder.conv_in.weight', [4, 4, 3, 3], 'BF16'),
    ];
    // sd-scripts' lumina_train_network names Gemma2Model's layers `lora_te_layers_N_…`.
    const { warnings } = await expectLands(lumina, [
      ...lora('lora_unet_layers_0_attention_out', 8, 8), ...lora('lora_te_layers_0_self_attn_q_proj', 12, 12), ...lora('lora_te_layers_0_mlp_down_proj', 12, 20),
    ], [
      { key: 'model.diffusion_model.layers.0.attention.out.weight', lora: 'lora_unet_layers_0_attention_out' },
      { key: `${TE}self_attn.q_proj.weight`, lora: 'lora_te_layers_0_self_attn_q_proj' }, { key: `${TE}mlp.down_proj.weight`, lora: 'lora_te_layers_0_mlp_down_proj' },
    ], 0.8);
    expect(warnings).toEqual([]);
    // Two of ComfyUI's encoders: it maps no `lora_te_` there.
    const hunyuanImage = [
      tensor(rand, 'model.diffusion_model.double_blocks.0.img_attn.proj.weight', [8, 8], 'BF16'),
      tensor(rand, 'text_encoders.qwen25_7b.transformer.model.layers.0.self_attn.q_proj.weight', [12, 12], 'BF16'),
      tensor(rand, 'text_encoders.byt5_small.transformer.encoder.block.0.layer.0.SelfAttention.q.weight', [12, 12], 'BF16'),
    ];
    const two = await expectLands(hunyuanImage, [...lora('lora_unet_double_blocks_0_img_attn_proj', 8, 8), ...lora('lora_te_layers_0_self_attn_q_proj', 12, 12)],
      [{ key: 'model.diffusion_model.double_blocks.0.img_attn.proj.weight', lora: 'lora_unet_double_blocks_0_img_attn_proj' }], 1);
    expect(two.warnings).toEqual([
      'comfyui_extracted_lora.safetensors: 1 module left out, not merged: it names the text encoder, which is none of the base\'s text encoder (ComfyUI\'s qwen25_7b) (text_encoders.qwen25_7b.transformer.), text encoder (ComfyUI\'s byt5_small) (text_encoders.byt5_small.transformer.): ComfyUI maps lora_te_ to one of its own encoders only where a bundle holds that one alone (lora_te_layers_0_self_attn_q_proj)',
    ]);
  });

  it('leave the text encoders out with a warning on a file that holds only the diffusion model', async () => {
    const flux = [tensor(rand, 'double_blocks.0.img_attn.proj.weight', [8, 8], 'BF16'), tensor(rand, 'double_blocks.0.img_attn.qkv.weight', [24, 8], 'BF16')];
    const { warnings } = await expectLands(flux, [
      ...lora('diffusion_model.double_blocks.0.img_attn.proj', 8, 8),
      ...lora(`${CL}self_attn.q_proj`, L, L),
      ...lora('text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q', 10, 10),
    ], [{ key: 'double_blocks.0.img_attn.proj.weight', lora: 'diffusion_model.double_blocks.0.img_attn.proj' }], 1);
    expect(warnings.join('\n')).toMatch(/it names text encoder 1 \(CLIP-L\), which the base does not hold.*text_encoders\.clip_l\.transformer\.text_model\.encoder\.layers\.0\.self_attn\.q_proj/);
    expect(warnings.join('\n')).toMatch(/it names text encoder 3 \(T5\), which the base does not hold.*text_encoders\.t5xxl\.transformer\.encoder\.block\.0\.layer\.0\.SelfAttention\.q/);
  });

  it('are told as ComfyUI\'s by `loramerge inspect`, text encoders alone too', async () => {
    const dir = temp.make({ 'te_only.safetensors': buildSafetensors([...lora(`${CL}self_attn.q_proj`, L, L), ...lora(`${CG}encoder.layers.0.self_attn.k_proj`, G, G)]) });
    const run = await runCliInProcess(['inspect', join(dir, 'te_only.safetensors')]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.split('\n')[0]).toMatch(/te_only\.safetensors: ComfyUI LoRA \(2 modules\)$/);
  });

  it('show the text_projection landing as transposed in the plan', async () => {
    const name = 'text_encoders.clip_g.transformer.text_projection';
    const prepared = await prepareMerge(memoryInputFileSet({ 'sd_xl_base_1.0.safetensors': buildSafetensors(sdxlTensors()) }, 'sd_xl_base_1.0.safetensors'), [
      { files: memoryInputFileSet({ 'lora.safetensors': buildSafetensors(lora(name, G, G)) }, 'lora.safetensors'), weight: 1 },
    ]);
    try {
      expect(describePlan(prepared, true).split('\n').map((l) => l.trim())).toContain(`${TE2}text_projection [${G}×${G}] out-in ← ${name} LoRA r=${R} scale=1 → transposed`);
    } finally {
      await prepared.close();
    }
  });
});
