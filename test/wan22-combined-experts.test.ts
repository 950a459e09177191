/**
 * ai-toolkit's Wan 2.2 A14B LoRA trained on both experts with `split_multistage_loras` off: one
 * file whose modules name the expert after `diffusion_model.` (`transformer_1.` the high-noise one,
 * `transformer_2.` the low-noise one; extensions_built_in/diffusion_models/wan22/wan22_14b_model.py
 * save_lora), PEFT's `lora_A`/`lora_B` in diffusers' Wan names, `ss_base_model_version`
 * `wan_2.2_14b`. Only ai-toolkit loads it (ComfyUI maps no `diffusion_model.transformer_1.` key).
 * Looked up by its tail, each module landed on whichever expert the base was, both experts' updates
 * into one; now each is refused naming its expert and what to do, on the diffusers pipeline, on one
 * expert's folder and on Comfy-Org's split file, with nothing written. The split files ai-toolkit
 * writes otherwise (`…_high_noise.safetensors`, `…_low_noise.safetensors`, plain `diffusion_model.`)
 * still land, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { loraTensors, tensor, truthTerms, wanDiffusersTensors, wanOriginalTensors, WAN, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectMergedFile } from './helpers/merge-truth.js';

const rand = seededRandom(2022);
const json = (o: object) => JSON.stringify(o, null, 2);
const D = WAN.dim;
const META = { format: 'pt', ss_base_model_version: 'wan_2.2_14b' };

const peft = (name: string, out: number, inF: number, key = ''): LoraSpec =>
  ({ down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r: 2, out, in: inF, lands: [{ key }], scale: 1 });

/** The combined file: each expert's modules on blocks the other's do not touch, so no two name one weight. */
const COMBINED = [
  peft('diffusion_model.transformer_1.blocks.0.attn1.to_q', D, D), peft('diffusion_model.transformer_1.blocks.0.ffn.net.0.proj', WAN.ffn, D),
  peft('diffusion_model.transformer_2.blocks.1.attn2.to_k', D, D), peft('diffusion_model.transformer_2.blocks.1.ffn.net.2', D, WAN.ffn),
];
const combined = buildSafetensors(loraTensors(rand, COMBINED, 'BF16'), META);

/** Wan-AI/Wan2.2-T2V-A14B-Diffusers: transformer/ (high noise) and transformer_2/ (low noise), alike. */
const transformerFolder = () => ({
  'config.json': json({ _class_name: 'WanTransformer3DModel', _diffusers_version: '0.35.0.dev0', num_layers: 40, num_attention_heads: 40, attention_head_dim: 128, ffn_dim: 13824 }),
  'diffusion_pytorch_model.safetensors': buildSafetensors(wanDiffusersTensors(rand, 'BF16')),
});
const pipeline = (): Record<string, Uint8Array | string> => {
  const files: Record<string, Uint8Array | string> = {
    'model_index.json': json({
      _class_name: 'WanPipeline', _diffusers_version: '0.35.0.dev0', boundary_ratio: 0.875, scheduler: ['diffusers', 'UniPCMultistepScheduler'],
      text_encoder: ['transformers', 'UMT5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
      transformer: ['diffusers', 'WanTransformer3DModel'], transformer_2: ['diffusers', 'WanTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
    }),
    'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [4, 4, 3, 3, 3], 'F32')]),
  };
  for (const folder of ['transformer', 'transformer_2']) for (const [name, bytes] of Object.entries(transformerFolder())) files[`${folder}/${name}`] = bytes;
  return files;
};
/** Comfy-Org's wan2.2_t2v_high_noise_14B_fp16.safetensors: Wan's own names under `model.diffusion_model.`. */
const comfySplit = () => buildSafetensors(wanOriginalTensors(rand, 'F16').map((t) => ({ ...t, name: `model.diffusion_model.${t.name}` })));

const backends = mergeBackends({ cpu: 'default' });
const adapter = (bytes: Uint8Array, name: string, weight = 1) => [{ files: { [name]: bytes }, name, weight }];

describe('ai-toolkit\'s combined LoRA of Wan 2.2 A14B\'s two experts', () => {
  it('is refused module by module, naming each one\'s expert, on the pipeline, on either expert\'s folder and on Comfy-Org\'s split file', async () => {
    const why = (which: string) => `names Wan 2.2 A14B's ${which} expert as ai-toolkit's combined LoRA of both experts does (transformer_1. the high-noise expert, transformer_2. the low-noise one), a file only ai-toolkit loads: not supported; merge each expert's LoRA into that expert from a file of its own (ai-toolkit's split_multistage_loras writes …_high_noise.safetensors and …_low_noise.safetensors)`;
    const want = COMBINED.map((s) => `wan22_combo.safetensors: module "${s.down.replace('.lora_A.weight', '')}": ${why(s.down.includes('transformer_1.') ? 'high-noise' : 'low-noise')}`);
    for (const [base, baseName] of [[pipeline(), 'Wan2.2-T2V-A14B-Diffusers'], [transformerFolder(), 'transformer'], [transformerFolder(), 'transformer_2'],
      [{ 'wan2.2_t2v_high_noise_14B_fp16.safetensors': comfySplit() }, 'wan2.2_t2v_high_noise_14B_fp16.safetensors']] as const) {
      const refusals = await refusalsInMemory({ backend: backends.cpu!, base, baseName, adapters: adapter(combined, 'wan22_combo.safetensors') });
      expect(refusals, baseName).toEqual(want);
    }
  });

  it('split as ai-toolkit writes it by default, the high-noise half lands on Comfy-Org\'s high-noise file by Wan\'s names', async () => {
    const specs = [
      peft('diffusion_model.blocks.0.attn1.to_q', D, D, 'model.diffusion_model.blocks.0.self_attn.q.weight'),
      peft('diffusion_model.blocks.1.ffn.net.2', D, WAN.ffn, 'model.diffusion_model.blocks.1.ffn.2.weight'),
    ];
    const bytes = buildSafetensors(loraTensors(rand, specs, 'BF16'), META);
    const baseBytes = comfySplit();
    const file = 'wan2.2_t2v_high_noise_14B_fp16.safetensors';
    const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { [file]: baseBytes }, baseName: file, adapters: adapter(bytes, 'wan22_lora_high_noise.safetensors', 0.9) });
    expect(warnings).toEqual([]);
    expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truthTerms(decodeSafetensors(bytes).tensors, specs, 0.9));
  });
});
