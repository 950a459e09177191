/**
 * ai-toolkit's Wan 2.2 A14B LoRA trained on both experts with `split_multistage_loras` off: one
 * file whose modules name the expert after `diffusion_model.` (`transformer_1.` the high-noise one,
 * `transformer_2.` the low-noise one; extensions_built_in/diffusion_models/wan22/wan22_14b_model.py
 * save_lora), PEFT's `lora_A`/`lora_B` in diffusers' Wan names, `ss_base_model_version`
 * `wan_2.2_14b`. Only ai-toolkit applies it: it loads transformer_1 from a diffusers pipeline's
 * `transformer/` and transformer_2 from `transformer_2/` (load_wan_transformer), and runs
 * transformer_1 above the boundary timestep, as diffusers' pipeline_wan.py runs `transformer` at
 * t >= boundary_ratio · 1000. On Wan2.2-T2V-A14B-Diffusers (sharded folders, model_index.json with
 * boundary_ratio 0.875) each expert's modules land in its own folder, against a float64 reference
 * written here; a plain LoRA beside it still lands in transformer/ alone, and is said to. Wherever
 * the experts cannot both be told (one expert's folder, Comfy-Org's split file, the TI2V-5B
 * pipeline with one transformer) each module is refused naming its expert, with nothing written.
 * The split files ai-toolkit writes otherwise (`…_high_noise.safetensors`, plain `diffusion_model.`)
 * still land.
 */
import { describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { loraTensors, tensor, truthTerms, wanDiffusersTensors, wanOriginalTensors, WAN, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectMergedFile, ulpOf } from './helpers/merge-truth.js';

const rand = seededRandom(2022);
const json = (o: object) => JSON.stringify(o, null, 2);
const D = WAN.dim;
const META = { format: 'pt', ss_base_model_version: 'wan_2.2_14b' };

const peft = (name: string, out: number, inF: number, key = ''): LoraSpec =>
  ({ down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r: 2, out, in: inF, lands: [{ key }], scale: 1 });

/**
 * The combined file: both experts train the same modules (ai-toolkit targets every Linear of each),
 * so each expert's `blocks.0.attn1.to_q` is here, one of them with an `.alpha` (α/r = 4/2 = 2, as
 * for a file of one expert); each expert also has modules the other's lack.
 */
const COMBINED = [
  peft('diffusion_model.transformer_1.blocks.0.attn1.to_q', D, D), peft('diffusion_model.transformer_1.blocks.0.ffn.net.0.proj', WAN.ffn, D),
  { ...peft('diffusion_model.transformer_2.blocks.0.attn1.to_q', D, D), scale: 2, extra: [{ name: 'diffusion_model.transformer_2.blocks.0.attn1.to_q.alpha', dtype: 'F32' as const, shape: [], data: [4] }] },
  peft('diffusion_model.transformer_2.blocks.1.attn2.to_k', D, D), peft('diffusion_model.transformer_2.blocks.1.ffn.net.2', D, WAN.ffn),
];
const combined = buildSafetensors(loraTensors(rand, COMBINED, 'BF16'), META);

/** A transformer's config.json as Wan-AI/Wan2.2-T2V-A14B-Diffusers ships it (dim 5120, 40 blocks; the tensors here are small). */
const CONFIG = json({
  _class_name: 'WanTransformer3DModel', _diffusers_version: '0.35.0.dev0', added_kv_proj_dim: null, attention_head_dim: 128, cross_attn_norm: true,
  eps: 1e-6, ffn_dim: 13824, freq_dim: 256, image_dim: null, in_channels: 16, num_attention_heads: 40, num_layers: 40, out_channels: 16,
  patch_size: [1, 2, 2], qk_norm: 'rms_norm_across_heads', rope_max_seq_len: 1024, text_dim: 4096,
});

/** One expert's folder, sharded as diffusers saves it: blocks.0 in the first shard, the rest in the second, and the index. */
function shardedFolder(tensors: FixtureTensor[]): Record<string, Uint8Array | string> {
  const first = tensors.filter((t) => t.name.startsWith('blocks.0.'));
  const second = tensors.filter((t) => !t.name.startsWith('blocks.0.'));
  const names = ['diffusion_pytorch_model-00001-of-00002.safetensors', 'diffusion_pytorch_model-00002-of-00002.safetensors'];
  const weightMap = Object.fromEntries([...first.map((t) => [t.name, names[0]]), ...second.map((t) => [t.name, names[1]])]);
  return {
    'config.json': CONFIG,
    [names[0]]: buildSafetensors(first), [names[1]]: buildSafetensors(second),
    'diffusion_pytorch_model.safetensors.index.json': json({ metadata: { total_size: 0 }, weight_map: weightMap }),
  };
}

/** A single-file expert folder (as a user may give either one alone). */
const transformerFolder = () => ({ 'config.json': CONFIG, 'diffusion_pytorch_model.safetensors': buildSafetensors(wanDiffusersTensors(rand, 'BF16')) });

/** Wan-AI/Wan2.2-T2V-A14B-Diffusers: transformer/ (high noise) and transformer_2/ (low noise), alike but for their values. */
const pipeline = (modelIndex: object = {}): Record<string, Uint8Array | string> => {
  const files: Record<string, Uint8Array | string> = {
    'model_index.json': json({
      _class_name: 'WanPipeline', _diffusers_version: '0.35.0.dev0', boundary_ratio: 0.875, expand_timesteps: false, scheduler: ['diffusers', 'UniPCMultistepScheduler'],
      text_encoder: ['transformers', 'UMT5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
      transformer: ['diffusers', 'WanTransformer3DModel'], transformer_2: ['diffusers', 'WanTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'], ...modelIndex,
    }),
    'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [4, 4, 3, 3, 3], 'F32')]),
  };
  for (const folder of ['transformer', 'transformer_2']) for (const [name, bytes] of Object.entries(shardedFolder(wanDiffusersTensors(rand, 'BF16')))) files[`${folder}/${name}`] = bytes;
  return files;
};
/** Comfy-Org's wan2.2_t2v_high_noise_14B_fp16.safetensors: Wan's own names under `model.diffusion_model.`. */
const comfySplit = () => buildSafetensors(wanOriginalTensors(rand, 'F16').map((t) => ({ ...t, name: `model.diffusion_model.${t.name}` })));

const backends = mergeBackends({ cpu: 'default' });
const adapter = (bytes: Uint8Array, name: string, weight = 1) => [{ files: { [name]: bytes }, name, weight }];

/** Merges adapters into a pipeline folder: the written files by path, and the plan's warnings and placements. */
async function mergePipeline(base: Record<string, Uint8Array | string>, adapters: { name: string; bytes: Uint8Array; weight: number }[]) {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'Wan2.2-T2V-A14B-Diffusers'), adapters.map((a) => ({ files: memoryInputFileSet({ [a.name]: a.bytes }, a.name), weight: a.weight })));
  expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
  const placed = prepared.plan.updates.map((u) => `${u.baseKey} <- ${u.terms.map((t) => `${t.moduleName} (${t.layout})`).join(', ')}`);
  const output = createBlobOutputTarget();
  await mergeModel({ prepared, output, backend: backends.cpu! });
  const warnings = prepared.plan.warnings;
  await prepared.close();
  const out = new Map(await Promise.all(output.files().map(async (f) => [f.path, new Uint8Array(await f.blob.arrayBuffer())] as const)));
  return { out, warnings, placed };
}

/**
 * The float64 reference: every tensor of every written weight file of the pipeline is its base
 * tensor plus, for each expected (folder, key), Σ weight·scale·(B·A) computed here in float64, then
 * rounded to the file's BF16; each value that rounding, or within one BF16 ulp of the float64 value.
 */
function expectPipeline(base: Record<string, Uint8Array | string>, out: Map<string, Uint8Array>, lora: Map<string, DecodedTensor>, lands: { folder: string; key: string; module: string; scale: number }[]) {
  let changed = 0;
  for (const [path, bytes] of Object.entries(base)) {
    if (!path.endsWith('.safetensors')) continue;
    const folder = path.slice(0, path.indexOf('/'));
    const before = decodeSafetensors(bytes as Uint8Array).tensors;
    const after = decodeSafetensors(out.get(path)!).tensors;
    expect([...after.keys()].sort(), path).toEqual([...before.keys()].sort());
    for (const [key, w] of before) {
      const got = after.get(key)!;
      const mine = lands.filter((l) => l.folder === folder && l.key === key);
      if (mine.length === 0) {
        expect(got.bytes, `${path}: ${key} unchanged`).toEqual(w.bytes);
        continue;
      }
      changed += mine.length;
      const [rows, cols] = w.shape;
      const truth = Float64Array.from(w.values);
      for (const { module, scale } of mine) {
        const a = lora.get(`${module}.lora_A.weight`)!, b = lora.get(`${module}.lora_B.weight`)!;
        const r = a.shape[0];
        for (let i = 0; i < rows; i++) {
          for (let j = 0; j < cols; j++) {
            let s = 0;
            for (let k = 0; k < r; k++) s += b.values[i * r + k] * a.values[k * cols + j];
            truth[i * cols + j] += scale * s;
          }
        }
      }
      for (let i = 0; i < truth.length; i++) {
        if (got.values[i] === roundForDType(truth[i], 'BF16')) continue;
        expect(Math.abs(got.values[i] - truth[i]), `${path}: ${key}[${i}]`).toBeLessThanOrEqual(ulpOf(truth[i], 'BF16'));
      }
    }
  }
  expect(changed).toBe(lands.length);
}

describe('ai-toolkit\'s combined LoRA of Wan 2.2 A14B\'s two experts', () => {
  it('on Wan2.2-T2V-A14B-Diffusers, lands transformer_1\'s modules in transformer/ (the high-noise expert) and transformer_2\'s in transformer_2/ (the low-noise one), α/r as for one expert\'s file', async () => {
    const base = pipeline();
    const { out, warnings, placed } = await mergePipeline(base, [{ name: 'wan22_combo.safetensors', bytes: combined, weight: 0.8 }]);
    expect(warnings).toEqual([]);
    expect(placed).toEqual([
      'transformer.blocks.0.attn1.to_q.weight <- diffusion_model.transformer_1.blocks.0.attn1.to_q (wan22-combined-experts)',
      'transformer.blocks.0.ffn.net.0.proj.weight <- diffusion_model.transformer_1.blocks.0.ffn.net.0.proj (wan22-combined-experts)',
      'transformer_2.blocks.0.attn1.to_q.weight <- diffusion_model.transformer_2.blocks.0.attn1.to_q (wan22-combined-experts)',
      'transformer_2.blocks.1.attn2.to_k.weight <- diffusion_model.transformer_2.blocks.1.attn2.to_k (wan22-combined-experts)',
      'transformer_2.blocks.1.ffn.net.2.weight <- diffusion_model.transformer_2.blocks.1.ffn.net.2 (wan22-combined-experts)',
    ]);
    const lora = decodeSafetensors(combined).tensors;
    const m = (folder: string, key: string, module: string, scale: number) => ({ folder, key, module: `diffusion_model.${module}`, scale: 0.8 * scale });
    expectPipeline(base, out, lora, [
      m('transformer', 'blocks.0.attn1.to_q.weight', 'transformer_1.blocks.0.attn1.to_q', 1),
      m('transformer', 'blocks.0.ffn.net.0.proj.weight', 'transformer_1.blocks.0.ffn.net.0.proj', 1),
      m('transformer_2', 'blocks.0.attn1.to_q.weight', 'transformer_2.blocks.0.attn1.to_q', 2),
      m('transformer_2', 'blocks.1.attn2.to_k.weight', 'transformer_2.blocks.1.attn2.to_k', 1),
      m('transformer_2', 'blocks.1.ffn.net.2.weight', 'transformer_2.blocks.1.ffn.net.2', 1),
    ]);
    // The index files are written again, naming the same shards.
    for (const folder of ['transformer', 'transformer_2']) {
      const index = JSON.parse(new TextDecoder().decode(out.get(`${folder}/diffusion_pytorch_model.safetensors.index.json`)!)) as { weight_map: Record<string, string> };
      expect(index.weight_map).toEqual((JSON.parse(base[`${folder}/diffusion_pytorch_model.safetensors.index.json`] as string) as { weight_map: object }).weight_map);
    }
  });

  it('beside a plain LoRA, which lands in transformer/ alone as diffusers loads one, and is said to', async () => {
    const plain = [peft('diffusion_model.blocks.1.attn1.to_v', D, D)];
    const plainBytes = buildSafetensors(loraTensors(rand, plain, 'BF16'), META);
    // model_index.json naming transformer_2 first (diffusers sorts its keys; a hand-edited one need not).
    const base = pipeline();
    const index = JSON.parse(base['model_index.json'] as string) as Record<string, unknown>;
    base['model_index.json'] = json({ transformer_2: index.transformer_2, ...index });
    const { out, warnings } = await mergePipeline(base, [
      { name: 'wan22_combo.safetensors', bytes: combined, weight: 1 }, { name: 'wan22_style_high_noise.safetensors', bytes: plainBytes, weight: 0.5 },
    ]);
    expect(warnings).toEqual([
      'Wan2.2-T2V-A14B-Diffusers: wan22_style_high_noise.safetensors merges into transformer/ only, not into transformer_2/ (the low-noise expert), as diffusers\' load_lora_weights loads a LoRA unless told load_into_transformer_2; to merge into transformer_2/, give that folder as the base',
    ]);
    const lora = new Map([...decodeSafetensors(combined).tensors, ...decodeSafetensors(plainBytes).tensors]);
    const m = (folder: string, key: string, module: string, scale: number) => ({ folder, key, module: `diffusion_model.${module}`, scale });
    expectPipeline(base, out, lora, [
      m('transformer', 'blocks.0.attn1.to_q.weight', 'transformer_1.blocks.0.attn1.to_q', 1),
      m('transformer', 'blocks.0.ffn.net.0.proj.weight', 'transformer_1.blocks.0.ffn.net.0.proj', 1),
      m('transformer', 'blocks.1.attn1.to_v.weight', 'blocks.1.attn1.to_v', 0.5),
      m('transformer_2', 'blocks.0.attn1.to_q.weight', 'transformer_2.blocks.0.attn1.to_q', 2),
      m('transformer_2', 'blocks.1.attn2.to_k.weight', 'transformer_2.blocks.1.attn2.to_k', 1),
      m('transformer_2', 'blocks.1.ffn.net.2.weight', 'transformer_2.blocks.1.ffn.net.2', 1),
    ]);
  });

  it('is refused module by module, naming each one\'s expert, where the two experts cannot both be told: either expert\'s folder alone, Comfy-Org\'s split file, the TI2V-5B pipeline, a pipeline without boundary_ratio', async () => {
    const why = (which: string) => `names Wan 2.2 A14B's ${which} expert as ai-toolkit's combined LoRA of both experts does (transformer_1. the high-noise expert, transformer_2. the low-noise one), a file only ai-toolkit loads: not supported; merge each expert's LoRA into that expert from a file of its own (ai-toolkit's split_multistage_loras writes …_high_noise.safetensors and …_low_noise.safetensors)`;
    const want = COMBINED.map((s) => `wan22_combo.safetensors: module "${s.down.replace('.lora_A.weight', '')}": ${why(s.down.includes('transformer_1.') ? 'high-noise' : 'low-noise')}`);
    // Wan-AI/Wan2.2-TI2V-5B-Diffusers: one transformer, no boundary.
    const ti2v: Record<string, Uint8Array | string> = {
      'model_index.json': json({
        _class_name: 'WanPipeline', _diffusers_version: '0.35.0.dev0', boundary_ratio: null, expand_timesteps: true, scheduler: ['diffusers', 'UniPCMultistepScheduler'],
        text_encoder: ['transformers', 'UMT5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'WanTransformer3DModel'],
        transformer_2: [null, null], vae: ['diffusers', 'AutoencoderKLWan'],
      }),
      ...Object.fromEntries(Object.entries(transformerFolder()).map(([p, b]) => [`transformer/${p}`, b])),
    };
    for (const [base, baseName] of [[transformerFolder(), 'transformer'], [transformerFolder(), 'transformer_2'],
      [{ 'wan2.2_t2v_high_noise_14B_fp16.safetensors': comfySplit() }, 'wan2.2_t2v_high_noise_14B_fp16.safetensors'], [ti2v, 'Wan2.2-TI2V-5B-Diffusers'],
      // Both experts' folders, but no boundary: diffusers' pipeline then runs transformer/ alone, and neither folder is said to be an expert.
      [pipeline({ boundary_ratio: null }), 'Wan2.2-T2V-A14B-Diffusers']] as const) {
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
