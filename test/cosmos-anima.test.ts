/**
 * LoRAs for Cosmos-Predict2 and Anima (CircleStone Labs' anime model on the Cosmos-Predict2 2B DiT)
 * in the key forms their trainers write — diffusion-pipe's and ComfyUI's `diffusion_model.` + the
 * original names, sd-scripts' `lora_unet_` + them flattened, diffusers' `transformer.` + diffusers'
 * names — onto the checkpoints people hold (the single files under `net.`, a checkpoint ComfyUI
 * saved under `model.diffusion_model.`, diffusers' CosmosTransformer3DModel), file to file on the
 * CPU and on WebGPU, against float64 truth. Where each module lands is written out here by hand
 * from diffusers' scripts/convert_cosmos_to_diffusers.py (its Cosmos 2.0 rename table, which its
 * single-file loader and its Anima LoRA converter `_convert_non_diffusers_anima_lora_to_diffusers`
 * repeat): every module is renamed whole, row for row, nothing fused, nothing swapped:
 * `blocks.N.self_attn.q_proj` ↔ `transformer_blocks.N.attn1.to_q`, `output_proj` ↔ `to_out.0`,
 * `cross_attn` ↔ `attn2`, `mlp.layer1/2` ↔ `ff.net.0.proj` / `ff.net.2`,
 * `adaln_modulation_self_attn/cross_attn/mlp.1/.2` ↔ `norm1/2/3.linear_1/_2`, `x_embedder.proj.1` ↔
 * `patch_embed.proj`, `t_embedder.1.linear_1/2` ↔ `time_embed.t_embedder.linear_1/2`,
 * `t_embedding_norm` ↔ `time_embed.norm`, `final_layer.adaln_modulation.1/.2` ↔
 * `norm_out.linear_1/_2`, `final_layer.linear` ↔ `proj_out`, the q/k RMSNorms `q_norm` ↔ `norm_q`.
 * Anima's LLM adapter (`llm_adapter.`) is diffusers' separate AnimaTextConditioner model: a whole
 * pipeline folder holds it in `text_conditioner/` under the names without `llm_adapter.`
 * (scripts/convert_anima_to_diffusers.py), a transformer folder alone does not.
 */
import { describe, expect, it } from 'vitest';
import { cosmos } from '../src/formats/layouts/cosmos.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { loraTensors, kohyaSpec, peftSpec, DIFFUSERS_LORA_METADATA } from './helpers/diffusion-fixtures.js';
import type { LoraSpec } from './helpers/diffusion-fixtures.js';
import { animaAdapterTensors, COSMOS, cosmosDiffusersTensors, cosmosOriginalTensors } from './helpers/cosmos-fixtures.js';
import { loraCaseSuite, planProblemsOf, withoutLayout, type LoraCase } from './helpers/lora-case.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { mergePipelineAndCheck } from './helpers/pipeline-merge.js';

const rand = seededRandom(20261203);

const file = (name: string, tensors: FixtureTensor[], metadata?: Record<string, string>) => ({ [name]: buildSafetensors(tensors, metadata) });
const diffusersFolder = (tensors: FixtureTensor[]) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify({ _class_name: 'CosmosTransformer3DModel' }),
});

const { dim, text, adaln, patchIn, patchOut } = COSMOS;
const ANIMA = 'anima-base-v1.0.safetensors';
const PREDICT2 = 'cosmos_predict2_2B_t2i.safetensors';
const cm = 'model.diffusion_model.';

/** diffusers' trainers: `transformer.` + diffusers names, onto the original names under prefix `p`. */
const diffusersOnOriginal = (p: string): LoraSpec[] => [
  peftSpec('transformer.transformer_blocks.0.attn1.to_q', 4, dim, dim, [{ key: `${p}blocks.0.self_attn.q_proj.weight` }], 2),
  peftSpec('transformer.transformer_blocks.1.attn1.to_out.0', 4, dim, dim, [{ key: `${p}blocks.1.self_attn.output_proj.weight` }], 2),
  peftSpec('transformer.transformer_blocks.0.attn2.to_k', 4, dim, text, [{ key: `${p}blocks.0.cross_attn.k_proj.weight` }], 2),
  peftSpec('transformer.transformer_blocks.1.attn2.to_v', 4, dim, text, [{ key: `${p}blocks.1.cross_attn.v_proj.weight` }], 2),
  peftSpec('transformer.transformer_blocks.0.ff.net.0.proj', 4, 4 * dim, dim, [{ key: `${p}blocks.0.mlp.layer1.weight` }], 2),
  peftSpec('transformer.transformer_blocks.1.ff.net.2', 4, dim, 4 * dim, [{ key: `${p}blocks.1.mlp.layer2.weight` }], 2),
  peftSpec('transformer.transformer_blocks.0.norm1.linear_1', 4, adaln, dim, [{ key: `${p}blocks.0.adaln_modulation_self_attn.1.weight` }], 2),
  peftSpec('transformer.transformer_blocks.1.norm2.linear_2', 4, 3 * dim, adaln, [{ key: `${p}blocks.1.adaln_modulation_cross_attn.2.weight` }], 2),
  peftSpec('transformer.transformer_blocks.0.norm3.linear_2', 4, 3 * dim, adaln, [{ key: `${p}blocks.0.adaln_modulation_mlp.2.weight` }], 2),
  peftSpec('transformer.patch_embed.proj', 4, dim, patchIn, [{ key: `${p}x_embedder.proj.1.weight` }], 2),
  peftSpec('transformer.time_embed.t_embedder.linear_2', 4, 3 * dim, dim, [{ key: `${p}t_embedder.1.linear_2.weight` }], 2),
  peftSpec('transformer.norm_out.linear_2', 4, 2 * dim, adaln, [{ key: `${p}final_layer.adaln_modulation.2.weight` }], 2),
  peftSpec('transformer.proj_out', 4, patchOut, dim, [{ key: `${p}final_layer.linear.weight` }], 2),
];

const D = (i: number, rest: string) => `transformer_blocks.${i}.${rest}.weight`;
/** diffusion-pipe's Anima / Cosmos LoRAs (ComfyUI's form): `diffusion_model.` + the original names, PEFT form, no α. */
const diffusionPipeOnDiffusers: LoraSpec[] = [
  peftSpec('diffusion_model.blocks.0.self_attn.q_proj', 4, dim, dim, [{ key: D(0, 'attn1.to_q') }], 1),
  peftSpec('diffusion_model.blocks.0.self_attn.k_proj', 4, dim, dim, [{ key: D(0, 'attn1.to_k') }], 1),
  peftSpec('diffusion_model.blocks.1.self_attn.v_proj', 4, dim, dim, [{ key: D(1, 'attn1.to_v') }], 1),
  peftSpec('diffusion_model.blocks.1.self_attn.output_proj', 4, dim, dim, [{ key: D(1, 'attn1.to_out.0') }], 1),
  peftSpec('diffusion_model.blocks.0.cross_attn.q_proj', 4, dim, dim, [{ key: D(0, 'attn2.to_q') }], 1),
  peftSpec('diffusion_model.blocks.1.cross_attn.k_proj', 4, dim, text, [{ key: D(1, 'attn2.to_k') }], 1),
  peftSpec('diffusion_model.blocks.0.cross_attn.output_proj', 4, dim, dim, [{ key: D(0, 'attn2.to_out.0') }], 1),
  peftSpec('diffusion_model.blocks.1.mlp.layer1', 4, 4 * dim, dim, [{ key: D(1, 'ff.net.0.proj') }], 1),
  peftSpec('diffusion_model.blocks.0.mlp.layer2', 4, dim, 4 * dim, [{ key: D(0, 'ff.net.2') }], 1),
  peftSpec('diffusion_model.blocks.1.adaln_modulation_self_attn.2', 4, 3 * dim, adaln, [{ key: D(1, 'norm1.linear_2') }], 1),
  peftSpec('diffusion_model.blocks.0.adaln_modulation_cross_attn.1', 4, adaln, dim, [{ key: D(0, 'norm2.linear_1') }], 1),
  peftSpec('diffusion_model.blocks.1.adaln_modulation_mlp.1', 4, adaln, dim, [{ key: D(1, 'norm3.linear_1') }], 1),
  peftSpec('diffusion_model.x_embedder.proj.1', 4, dim, patchIn, [{ key: 'patch_embed.proj.weight' }], 1),
  peftSpec('diffusion_model.t_embedder.1.linear_1', 4, dim, dim, [{ key: 'time_embed.t_embedder.linear_1.weight' }], 1),
  peftSpec('diffusion_model.final_layer.adaln_modulation.1', 4, adaln, dim, [{ key: 'norm_out.linear_1.weight' }], 1),
  peftSpec('diffusion_model.final_layer.linear', 4, patchOut, dim, [{ key: 'proj_out.weight' }], 1),
];
/** sd-scripts' Anima LoRAs: `lora_unet_` + the original names flattened, α. */
const sdScriptsOnDiffusers: LoraSpec[] = [
  kohyaSpec('lora_unet_blocks_1_self_attn_q_proj', 2, dim, dim, [{ key: D(1, 'attn1.to_q') }], 1),
  kohyaSpec('lora_unet_blocks_0_cross_attn_v_proj', 2, dim, text, [{ key: D(0, 'attn2.to_v') }], 1),
  kohyaSpec('lora_unet_blocks_1_cross_attn_output_proj', 2, dim, dim, [{ key: D(1, 'attn2.to_out.0') }], 1),
  kohyaSpec('lora_unet_blocks_0_mlp_layer1', 2, 4 * dim, dim, [{ key: D(0, 'ff.net.0.proj') }], 1),
  kohyaSpec('lora_unet_blocks_1_adaln_modulation_cross_attn_2', 2, 3 * dim, adaln, [{ key: D(1, 'norm2.linear_2') }], 1),
];
/** The same trainers' names onto a file in their own naming (the LLM adapter's `blocks.0` beside the DiT's: exact names, never a suffix). */
const ownNames = (p: string): LoraSpec[] => [
  peftSpec('diffusion_model.blocks.0.self_attn.q_proj', 4, dim, dim, [{ key: `${p}blocks.0.self_attn.q_proj.weight` }], 1),
  peftSpec('diffusion_model.blocks.0.cross_attn.k_proj', 4, dim, text, [{ key: `${p}blocks.0.cross_attn.k_proj.weight` }], 1),
  peftSpec('diffusion_model.blocks.1.mlp.layer2', 4, dim, 4 * dim, [{ key: `${p}blocks.1.mlp.layer2.weight` }], 1),
  peftSpec('diffusion_model.final_layer.linear', 4, patchOut, dim, [{ key: `${p}final_layer.linear.weight` }], 1),
];
const kohyaOwnNames = (p: string): LoraSpec[] => [
  kohyaSpec('lora_unet_blocks_0_self_attn_output_proj', 2, dim, dim, [{ key: `${p}blocks.0.self_attn.output_proj.weight` }], 1),
  kohyaSpec('lora_unet_blocks_1_cross_attn_q_proj', 2, dim, dim, [{ key: `${p}blocks.1.cross_attn.q_proj.weight` }], 1),
  // `net_llm_adapter_blocks_0_cross_attn_k_proj` ends with this flattened name too.
  kohyaSpec('lora_unet_blocks_0_cross_attn_k_proj', 2, dim, text, [{ key: `${p}blocks.0.cross_attn.k_proj.weight` }], 1),
  kohyaSpec('lora_unet_llm_adapter_blocks_0_cross_attn_v_proj', 2, COSMOS.text, COSMOS.text, [{ key: `${p}llm_adapter.blocks.0.cross_attn.v_proj.weight` }], 1),
];
/** diffusion-pipe's Anima LoRAs with the LLM adapter trained too: it lands by name in the single file. */
const llmAdapterOnAnima: LoraSpec[] = [
  peftSpec('diffusion_model.llm_adapter.blocks.0.self_attn.q_proj', 4, text, text, [{ key: 'net.llm_adapter.blocks.0.self_attn.q_proj.weight' }], 1),
  peftSpec('diffusion_model.llm_adapter.blocks.0.cross_attn.o_proj', 4, text, text, [{ key: 'net.llm_adapter.blocks.0.cross_attn.o_proj.weight' }], 1),
  peftSpec('diffusion_model.llm_adapter.blocks.0.mlp.0', 4, 4 * text, text, [{ key: 'net.llm_adapter.blocks.0.mlp.0.weight' }], 1),
];

const CASES: LoraCase[] = [
  {
    name: 'Anima single file (net., with its LLM adapter) ← diffusers-named LoRA, and diffusion-pipe and sd-scripts LoRAs in its own names', layout: 'cosmos',
    base: file(ANIMA, cosmosOriginalTensors(rand, 'BF16', COSMOS, 'net.', true)), baseName: ANIMA,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersOnOriginal('net.'), weight: 0.8, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'anima-diffusion-pipe.safetensors', specs: [...ownNames('net.'), ...llmAdapterOnAnima], weight: 1 },
      { file: 'anima-sd-scripts.safetensors', specs: kohyaOwnNames('net.'), weight: 0.5 },
    ],
  },
  {
    name: 'Cosmos-Predict2, a checkpoint ComfyUI saved (model.diffusion_model., fp8) ← diffusers-named LoRA', layout: 'cosmos',
    base: file(PREDICT2, cosmosOriginalTensors(rand, 'F8_E4M3', COSMOS, cm)), baseName: PREDICT2,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersOnOriginal(cm), weight: 1, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'diffusers Cosmos / Anima transformer ← diffusion-pipe (diffusion_model.) and sd-scripts (lora_unet_) LoRAs in the original names', layout: 'cosmos',
    base: diffusersFolder(cosmosDiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [
      { file: 'anima-diffusion-pipe.safetensors', specs: diffusionPipeOnDiffusers, weight: 1 },
      { file: 'anima-sd-scripts.safetensors', specs: sdScriptsOnDiffusers, weight: -0.6 },
    ],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('the cosmos layout', () => {
  it('places the modules named the other way', async () => {
    for (const k of CASES) {
      const prepared = await prepare(k);
      const layouts = new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout)));
      expect(layouts.has('cosmos'), k.name).toBe(true);
      await prepared.close();
    }
  });

  it('without it in the registry, every case is refused', async () => {
    await withoutLayout(cosmos, async () => {
      for (const k of CASES) {
        const prepared = await prepare(k);
        expect(prepared.plan.problems.length, k.name).toBeGreaterThan(0);
        await prepared.close();
      }
    });
  });
});

describe('a whole diffusers Anima pipeline folder', () => {
  const t = COSMOS.text;
  const pipeline = {
    'model_index.json': JSON.stringify({
      _class_name: 'AnimaPipeline', transformer: ['diffusers', 'CosmosTransformer3DModel'], text_conditioner: ['diffusers', 'AnimaTextConditioner'],
      scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    }),
    'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(cosmosDiffusersTensors(rand, 'BF16')),
    'transformer/config.json': JSON.stringify({ _class_name: 'CosmosTransformer3DModel' }),
    'text_conditioner/diffusion_pytorch_model.safetensors': buildSafetensors(animaAdapterTensors(rand, 'BF16')),
    'text_conditioner/config.json': JSON.stringify({ _class_name: 'AnimaTextConditioner' }),
  };
  // diffusion-pipe's Anima LoRA with the LLM adapter trained too, and sd-scripts' name for one of its modules:
  // the adapter's modules land in text_conditioner/ under their names without `llm_adapter.`.
  const specs: LoraSpec[] = [
    peftSpec('diffusion_model.blocks.1.self_attn.q_proj', 2, dim, dim, [{ key: 'transformer.transformer_blocks.1.attn1.to_q.weight' }], 1),
    peftSpec('diffusion_model.llm_adapter.blocks.0.self_attn.q_proj', 2, t, t, [{ key: 'text_conditioner.blocks.0.self_attn.q_proj.weight' }], 1),
    peftSpec('diffusion_model.llm_adapter.blocks.0.cross_attn.o_proj', 2, t, t, [{ key: 'text_conditioner.blocks.0.cross_attn.o_proj.weight' }], 1),
    peftSpec('diffusion_model.llm_adapter.out_proj', 2, t, t, [{ key: 'text_conditioner.out_proj.weight' }], 1),
  ];
  const kohyaSpecs: LoraSpec[] = [kohyaSpec('lora_unet_llm_adapter_blocks_0_mlp_2', 2, t, 4 * t, [{ key: 'text_conditioner.blocks.0.mlp.2.weight' }], 1)];
  const adapters = [
    { file: 'anima-diffusion-pipe.safetensors', bytes: buildSafetensors(loraTensors(rand, specs, 'BF16')), specs, weight: 1 },
    { file: 'anima-sd-scripts.safetensors', bytes: buildSafetensors(loraTensors(rand, kohyaSpecs, 'BF16')), specs: kohyaSpecs, weight: 0.7 },
  ];
  const backends = mergeBackends({ cpu: 'default' });
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`merges the DiT's modules into transformer/ and the LLM adapter's into text_conditioner/ exactly, on ${kind}`, async (ctx) => {
      if (!backends[kind]) return ctx.skip();
      await mergePipelineAndCheck(backends[kind]!, pipeline, adapters, [
        'transformer/diffusion_pytorch_model.safetensors', 'text_conditioner/diffusion_pytorch_model.safetensors',
      ]);
    });
  }
});

describe('refused with the reason', () => {
  it('Anima\'s LLM adapter on a diffusers transformer: diffusers keeps it as its own text_conditioner model', async () => {
    const t = COSMOS.text;
    const problems = await planProblemsOf(diffusersFolder(cosmosDiffusersTensors(rand, 'BF16')), 'transformer', [
      peftSpec('diffusion_model.llm_adapter.blocks.0.self_attn.q_proj', 2, t, t, [], 1),
      peftSpec('diffusion_model.llm_adapter.blocks.0.mlp.2', 2, t, 4 * t, [], 1),
    ], rand);
    expect(problems).toHaveLength(2);
    for (const p of problems) expect(p).toMatch(/LLM adapter.*text_conditioner/);
  });
});
