/**
 * A kohya SDXL LoRA (UNet, CLIP-L and OpenCLIP-G modules, as sd-scripts' networks/lora.py names
 * them) merged file to file into an SGM single-file checkpoint with SDXL's real key names (sizes
 * scaled down): text-encoder-2 q, k and v land on thirds of open_clip's fused in_proj_weight, the
 * other modules on their own tensors; compared with float64 truth on the CPU and on WebGPU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import {
  buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor,
} from './helpers/fixtures.js';
import { expectMergedFile, type TruthTerm } from './helpers/merge-truth.js';
import { expectMerged } from './helpers/expect-merged.js';

const rand = seededRandom(2024);
const tensor = (name: string, shape: number[], dtype: FixtureDType, scale = 1): FixtureTensor => ({
  name, dtype, shape, data: randomValues(shape.reduce((a, b) => a * b, 1), rand, scale).map((x) => roundForDType(x, dtype)),
});

// SDXL's shapes scaled down: UNet width 16, CLIP-L width 12, OpenCLIP-G width 16 (MLP 2×).
const UNET = 'model.diffusion_model.input_blocks.4.1';
const TE1 = 'conditioner.embedders.0.transformer.text_model.encoder.layers.0';
const TE2 = 'conditioner.embedders.1.model.transformer.resblocks.0';
const base = buildSafetensors([
  tensor(`${UNET}.proj_in.weight`, [16, 16], 'F16'),
  tensor(`${UNET}.transformer_blocks.0.attn1.to_q.weight`, [16, 16], 'F16'),
  tensor(`${UNET}.transformer_blocks.0.attn2.to_k.weight`, [16, 24], 'F16'),
  tensor(`${TE1}.self_attn.q_proj.weight`, [12, 12], 'F16'),
  tensor(`${TE1}.self_attn.q_proj.bias`, [12], 'F16'),
  tensor(`${TE1}.mlp.fc1.weight`, [24, 12], 'F16'),
  tensor(`${TE2}.attn.in_proj_weight`, [48, 16], 'F16'),
  tensor(`${TE2}.attn.in_proj_bias`, [48], 'F16'),
  tensor(`${TE2}.attn.out_proj.weight`, [16, 16], 'F16'),
  tensor(`${TE2}.mlp.c_fc.weight`, [32, 16], 'F16'),
  tensor(`${TE2}.mlp.c_proj.weight`, [16, 32], 'F16'),
  tensor('conditioner.embedders.1.model.text_projection', [16, 16], 'F16'),
  tensor('first_stage_model.decoder.conv_in.weight', [8, 4, 3, 3], 'F16'),
]);

interface KohyaModule { name: string; target: string; out: number; in: number; r: number; alpha: number; rows?: TruthTerm['rows'] }
const MODULES: KohyaModule[] = [
  { name: 'lora_unet_input_blocks_4_1_proj_in', target: `${UNET}.proj_in.weight`, out: 16, in: 16, r: 4, alpha: 2 },
  { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k', target: `${UNET}.transformer_blocks.0.attn2.to_k.weight`, out: 16, in: 24, r: 4, alpha: 4 },
  { name: 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', target: `${TE1}.self_attn.q_proj.weight`, out: 12, in: 12, r: 2, alpha: 1 },
  { name: 'lora_te1_text_model_encoder_layers_0_mlp_fc1', target: `${TE1}.mlp.fc1.weight`, out: 24, in: 12, r: 2, alpha: 1 },
  ...(['q', 'k', 'v'] as const).map((p, i): KohyaModule => ({
    name: `lora_te2_text_model_encoder_layers_0_self_attn_${p}_proj`, target: `${TE2}.attn.in_proj_weight`, out: 16, in: 16, r: 3 + i, alpha: 2,
    rows: [{ src: 0, dst: 16 * i, count: 16 }],
  })),
  { name: 'lora_te2_text_model_encoder_layers_0_self_attn_out_proj', target: `${TE2}.attn.out_proj.weight`, out: 16, in: 16, r: 2, alpha: 2 },
  { name: 'lora_te2_text_model_encoder_layers_0_mlp_fc1', target: `${TE2}.mlp.c_fc.weight`, out: 32, in: 16, r: 2, alpha: 2 },
  { name: 'lora_te2_text_model_encoder_layers_0_mlp_fc2', target: `${TE2}.mlp.c_proj.weight`, out: 16, in: 32, r: 2, alpha: 2 },
];
const lora = buildSafetensors(MODULES.flatMap((m) => [
  tensor(`${m.name}.lora_down.weight`, [m.r, m.in], 'F16', 0.5),
  tensor(`${m.name}.lora_up.weight`, [m.out, m.r], 'F16', 0.5),
  { name: `${m.name}.alpha`, dtype: 'F16', shape: [], data: [m.alpha] } satisfies FixtureTensor,
]), { ss_network_module: 'networks.lora', ss_network_dim: '4', ss_network_alpha: '2', ss_base_model_version: 'sdxl_base_v1-0' });

const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

describe('kohya SDXL LoRA into an SGM checkpoint', () => {
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`merges UNet, CLIP-L and OpenCLIP-G (fused q/k/v rows) exactly on ${kind}`, async () => {
      const weight = 0.75;
      const prepared = await prepareMerge(memoryInputFileSet({ 'sd_xl_base.safetensors': base }, 'sd_xl_base.safetensors'), [
        { files: memoryInputFileSet({ 'style.safetensors': lora }, 'style.safetensors'), weight },
      ]);
      expect(prepared.plan.problems).toEqual([]);
      const inProj = prepared.plan.updates.find((u) => u.baseKey === `${TE2}.attn.in_proj_weight`)!;
      expect(inProj.terms.map((t) => [t.moduleName, t.layout, t.placement?.segments])).toEqual(['q', 'k', 'v'].map((p, i) => [
        `lora_te2_text_model_encoder_layers_0_self_attn_${p}_proj`, 'openclip-text', [{ src: 0, dst: 16 * i, count: 16 }],
      ]));
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: backends[kind]! });
      await prepared.close();
      const merged = decodeSafetensors(new Uint8Array(await output.files()[0].blob.arrayBuffer())).tensors;
      const adapter = decodeSafetensors(lora).tensors;
      expectMergedFile(decodeSafetensors(base).tensors, merged, MODULES.map((m) => ({
        baseKey: m.target, a: adapter.get(`${m.name}.lora_down.weight`)!, b: adapter.get(`${m.name}.lora_up.weight`)!,
        scale: weight * m.alpha / m.r, rows: m.rows,
      })));
    });
  }

  it('merges a LoRA with bundled textual-inversion embeddings (bundle_emb.<token>.clip_l / clip_g) and names the embeddings it leaves out', async () => {
    // What A1111 reads as the LoRA's own embeddings: SDXL's one vector per encoder per token.
    const m = MODULES[0];
    const withEmbedding = buildSafetensors([
      tensor(`${m.name}.lora_down.weight`, [m.r, m.in], 'F16', 0.5),
      tensor(`${m.name}.lora_up.weight`, [m.out, m.r], 'F16', 0.5),
      { name: `${m.name}.alpha`, dtype: 'F16', shape: [], data: [m.alpha] },
      tensor('bundle_emb.sks_style.clip_l', [2, 12], 'F16'),
      tensor('bundle_emb.sks_style.clip_g', [2, 16], 'F16'),
    ]);
    const prepared = await prepareMerge(memoryInputFileSet({ 'sd_xl_base.safetensors': base }, 'sd_xl_base.safetensors'), [
      { files: memoryInputFileSet({ 'pivotal.safetensors': withEmbedding }, 'pivotal.safetensors'), weight: 1 },
    ]);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.warnings.join('\n')).toMatch(/pivotal\.safetensors: bundled textual-inversion embedding "sks_style" \(bundle_emb\.\*\) left out/);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: backends.cpu! });
    await prepared.close();
    const merged = decodeSafetensors(new Uint8Array(await output.files()[0].blob.arrayBuffer())).tensors;
    const adapter = decodeSafetensors(withEmbedding).tensors;
    expectMergedFile(decodeSafetensors(base).tensors, merged, [{
      baseKey: m.target, a: adapter.get(`${m.name}.lora_down.weight`)!, b: adapter.get(`${m.name}.lora_up.weight`)!, scale: m.alpha / m.r,
    }]);
  });

  it('lands OpenCLIP-G\'s text_projection LoRA (OneTrainer\'s lora_te2_text_projection) transposed on open_clip\'s bare parameter', async () => {
    // open_clip computes x @ text_projection, so the tensor is the transformers Linear's weight transposed.
    const name = 'lora_te2_text_projection', r = 2, alpha = 1, weight = 0.5, d = 16;
    const lora = buildSafetensors([
      tensor(`${name}.lora_down.weight`, [r, d], 'F32', 0.5), tensor(`${name}.lora_up.weight`, [d, r], 'F32', 0.5),
      { name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] },
    ]);
    const prepared = await prepareMerge(memoryInputFileSet({ 'sd_xl_base.safetensors': base }, 'sd_xl_base.safetensors'), [
      { files: memoryInputFileSet({ 'onetrainer.safetensors': lora }, 'onetrainer.safetensors'), weight },
    ]);
    expect(prepared.plan.problems).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: backends.cpu! });
    await prepared.close();
    const key = 'conditioner.embedders.1.model.text_projection';
    const merged = decodeSafetensors(new Uint8Array(await output.files()[0].blob.arrayBuffer())).tensors.get(key)!;
    const p = decodeSafetensors(base).tensors.get(key)!.values, adapter = decodeSafetensors(lora).tensors;
    const down = adapter.get(`${name}.lora_down.weight`)!.values, up = adapter.get(`${name}.lora_up.weight`)!.values;
    const exact = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let o = 0; o < d; o++) {
      let delta = 0;
      for (let k = 0; k < r; k++) delta += up[o * r + k] * down[k * d + i];
      exact[i * d + o] = p[i * d + o] + weight * (alpha / r) * delta; // P[i, o] += s·ΔW[o, i]
    }
    expectMerged(merged.values, exact, 'F16', key);
  });

  it('refuses a module whose prefix names a text encoder but whose path is the UNet\'s', async () => {
    const wrong = buildSafetensors([
      tensor('lora_te1_input_blocks_4_1_proj_in.lora_down.weight', [2, 16], 'F16'),
      tensor('lora_te1_input_blocks_4_1_proj_in.lora_up.weight', [16, 2], 'F16'),
    ]);
    const prepared = await prepareMerge(memoryInputFileSet({ 'sd_xl_base.safetensors': base }, 'sd_xl_base.safetensors'), [
      { files: memoryInputFileSet({ 'wrong.safetensors': wrong }, 'wrong.safetensors') },
    ]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => [p.module, p.code])).toEqual([['lora_te1_input_blocks_4_1_proj_in', 'UNKNOWN_MODULE']]);
    expect(prepared.plan.problems[0].message).toBe(
      'wrong.safetensors: module "lora_te1_input_blocks_4_1_proj_in": its prefix names text encoder 1 (CLIP-L), but its path matches ' +
      `${UNET}.proj_in.weight in the UNet/transformer (model.diffusion_model.); the base has no such tensor in text encoder 1 (CLIP-L) (conditioner.embedders.0.transformer.)`,
    );
  });
});
