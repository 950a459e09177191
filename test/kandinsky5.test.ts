/**
 * Kandinsky 5 (Video Lite / Pro, Image Lite): one naming everywhere. The original DiT
 * (kandinskylab's `kandinsky/models/dit.py`), ComfyUI's `comfy/ldm/kandinsky5/model.py` and diffusers'
 * Kandinsky5Transformer3DModel name their modules alike (`visual_transformer_blocks.N.self_attention.to_query`,
 * `cross_attention.out_layer`, `feed_forward.in_layer`, `visual_modulation.out_layer`, `text_embeddings.in_layer`,
 * `out_layer.out_layer`), so no LoRA form needs a rename, only its prefix taken off:
 * - kandinskylab's own LoRAs (`lora.safetensors` beside a `config_lora.json`): PEFT lora_A / lora_B under the
 *   DiT's names (their `load_adapter` also drops a `base_model.model.` or `transformer.` prefix); ComfyUI maps
 *   the bare names to `diffusion_model.` (model_lora_keys_unet, Kandinsky5), at scale 1 without an alpha;
 * - diffusers' KandinskyLoraLoaderMixin: `transformer.` + the same names, no converter;
 * - musubi-tuner's networks.lora_kandinsky: kohya `lora_unet_` + the names with `_`, lora_down / lora_up / alpha,
 *   on the attentions and feed-forwards of the text and visual blocks.
 * diffusers' and musubi-tuner's forms on diffusers' folder and the original single file are in
 * diffusion-survey.test.ts; here kandinskylab's own files (alone, and with their config_lora.json) and a
 * checkpoint ComfyUI saved (`model.diffusion_model.`). Sizes scaled down (model_dim 1792 → 16,
 * ff_dim 7168 → 24, time_dim 512 → 8, text dims 3584 / 768 → 12 / 6); file to file on the CPU and on WebGPU,
 * against float64 truth.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { merge } from '../src/node.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { kohyaSpec, loraTensors, peftSpec, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { loraCaseSuite, mergeAndCheckLoraCase, planProblemsOf, type LoraCase } from './helpers/lora-case.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectMergedFile } from './helpers/merge-truth.js';

const rand = seededRandom(20261208);
const M = 16, FF = 24, TIME = 8, TEXT = 12, POOLED = 6, VIS = 10, HEAD = 4, OUT = 8;

const attention = (p: string): [string, number, number, boolean][] =>
  ['to_query', 'to_key', 'to_value', 'out_layer'].map((n) => [`${p}.${n}`, M, M, true]);
const feedForward = (p: string): [string, number, number, boolean][] => [[`${p}.in_layer`, FF, M, false], [`${p}.out_layer`, M, FF, false]];

/** Each Linear: [name, out, in, has a bias]. */
const LINEARS: [string, number, number, boolean][] = [
  ['time_embeddings.in_layer', TIME, M, true], ['time_embeddings.out_layer', TIME, TIME, true],
  ['text_embeddings.in_layer', M, TEXT, true], ['pooled_text_embeddings.in_layer', TIME, POOLED, true],
  ['visual_embeddings.in_layer', M, VIS, true],
  ['text_transformer_blocks.0.text_modulation.out_layer', 6 * M, TIME, true],
  ...attention('text_transformer_blocks.0.self_attention'), ...feedForward('text_transformer_blocks.0.feed_forward'),
  ...[0, 1].flatMap((i): [string, number, number, boolean][] => [
    [`visual_transformer_blocks.${i}.visual_modulation.out_layer`, 9 * M, TIME, true],
    ...attention(`visual_transformer_blocks.${i}.self_attention`), ...attention(`visual_transformer_blocks.${i}.cross_attention`),
    ...feedForward(`visual_transformer_blocks.${i}.feed_forward`),
  ]),
  ['out_layer.modulation.out_layer', 2 * M, TIME, true], ['out_layer.out_layer', OUT, M, true],
];

function weights(prefix = ''): FixtureTensor[] {
  const out: FixtureTensor[] = [];
  for (const [name, rows, cols, bias] of LINEARS) {
    out.push(tensor(rand, `${prefix}${name}.weight`, [rows, cols], 'BF16'));
    if (bias) out.push(tensor(rand, `${prefix}${name}.bias`, [rows], 'BF16'));
  }
  for (const n of ['text_embeddings.norm', 'pooled_text_embeddings.norm']) {
    const w = n.startsWith('text') ? M : TIME;
    out.push(tensor(rand, `${prefix}${n}.weight`, [w], 'F32'), tensor(rand, `${prefix}${n}.bias`, [w], 'F32'));
  }
  for (const b of ['text_transformer_blocks.0.self_attention', 'visual_transformer_blocks.0.self_attention', 'visual_transformer_blocks.0.cross_attention',
    'visual_transformer_blocks.1.self_attention', 'visual_transformer_blocks.1.cross_attention']) {
    out.push(tensor(rand, `${prefix}${b}.query_norm.weight`, [HEAD], 'F32'), tensor(rand, `${prefix}${b}.key_norm.weight`, [HEAD], 'F32'));
  }
  return out;
}

const diffusersFolder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors(weights()),
  'config.json': JSON.stringify({
    _class_name: 'Kandinsky5Transformer3DModel', _diffusers_version: '0.36.0', in_visual_dim: 4, in_text_dim: TEXT, in_text_dim2: POOLED,
    time_dim: TIME, out_visual_dim: 4, patch_size: [1, 1, 2], model_dim: M, ff_dim: FF, num_text_blocks: 1, num_visual_blocks: 2,
    axes_dims: [2, 1, 1], visual_cond: true, attention_type: 'regular',
  }),
};
const ORIGINAL = 'kandinsky5lite_t2v_sft_5s.safetensors';
const originalFile = { [ORIGINAL]: buildSafetensors(weights()) };
const COMFY = 'kandinsky5lite_t2v_comfy.safetensors';
const comfyFile = { [COMFY]: buildSafetensors(weights('model.diffusion_model.')) };

/** The modules a LoRA of each tool holds (their default targets: attentions and feed-forwards; the embedders for the full PEFT case). */
const BLOCK_LINEARS = LINEARS.filter(([n]) => /_blocks\.\d+\.(self_attention|cross_attention|feed_forward)\./.test(n));

const peft = (prefix: string, basePrefix = '', list = LINEARS): LoraSpec[] => list.map(([n, rows, cols]) =>
  peftSpec(`${prefix}${n}`, 2, rows, cols, [{ key: `${basePrefix}${n}.weight` }], 1));
const musubi = (basePrefix = ''): LoraSpec[] => BLOCK_LINEARS.map(([n, rows, cols], i) =>
  kohyaSpec(`lora_unet_${n.replace(/\./g, '_')}`, 4, rows, cols, [{ key: `${basePrefix}${n}.weight` }], i % 2 === 0 ? 4 : 2));

const CASES: LoraCase[] = [
  {
    name: 'diffusers Kandinsky5Transformer3DModel ← kandinskylab\'s lora.safetensors (bare DiT names, lora_A / lora_B)',
    base: diffusersFolder, baseName: 'transformer',
    adapters: [{ file: 'lora.safetensors', specs: peft('', '', BLOCK_LINEARS), weight: 0.8 }],
  },
  {
    name: 'Kandinsky 5 checkpoint ComfyUI saved (model.diffusion_model.) ← kandinskylab bare names and musubi-tuner',
    base: comfyFile, baseName: COMFY,
    adapters: [
      { file: 'lora.safetensors', specs: peft('', 'model.diffusion_model.', BLOCK_LINEARS), weight: 1 },
      { file: 'k5-musubi.safetensors', specs: musubi('model.diffusion_model.'), weight: 0.3 },
    ],
  },
];

loraCaseSuite(CASES, rand, 'BF16');

describe('Kandinsky 5 names', () => {
  it('a block past the base\'s last and a module the DiT lacks are refused by name', async () => {
    const problems = await planProblemsOf(diffusersFolder, 'transformer', [
      peftSpec('visual_transformer_blocks.2.self_attention.to_query', 2, M, M, [], 1),
      peftSpec('visual_transformer_blocks.0.self_attention.to_qkv', 2, 3 * M, M, [], 1),
    ], rand);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^lora\.safetensors: module "visual_transformer_blocks\.2\.self_attention\.to_query": /);
    expect(problems[1]).toMatch(/^lora\.safetensors: module "visual_transformer_blocks\.0\.self_attention\.to_qkv": /);
  });
});

/**
 * kandinskylab's LoRA as published: `lora.safetensors` beside `config_lora.json`, a LoraConfig their
 * load_adapter reads whole (here r 4, lora_alpha 8, and alpha_pattern 2 for the feed-forwards' in_layer:
 * scale 2, and 0.5 there). Read with it, each module's scale is the config's; the file alone is ComfyUI's
 * reading, scale 1.
 */
describe('kandinskylab lora.safetensors with its config_lora.json', () => {
  const temp = tempDirs();
  afterAll(() => temp.removeAll());
  const CONFIG = JSON.stringify({
    r: 4, lora_alpha: 8, alpha_pattern: { 'feed_forward.in_layer': 2 }, lora_dropout: 0, bias: 'none', init_lora_weights: true,
    target_modules: ['to_query', 'to_key', 'to_value', 'out_layer', 'in_layer'],
  });
  /** The factors as kandinskylab saves them, `prefix` before each name; the scale each module gets from the config (or 1). */
  const specs = (prefix: string, withConfig: boolean): LoraSpec[] => BLOCK_LINEARS.map(([n, rows, cols]) =>
    peftSpec(`${prefix}${n}`, 4, rows, cols, [{ key: `${n}.weight` }], !withConfig ? 1 : n.endsWith('feed_forward.in_layer') ? 0.5 : 2));
  const bare = specs('', true);
  const bareBytes = buildSafetensors(loraTensors(rand, bare, 'BF16'));
  const backends = mergeBackends({ cpu: 'default' });

  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`the folder: each module at the config's lora_alpha / r (alpha_pattern included) on ${kind}`, async () => {
      const prepared = await prepareMerge(memoryInputFileSet(diffusersFolder, 'transformer'), [{
        files: memoryInputFileSet({ 'lora.safetensors': bareBytes, 'config_lora.json': CONFIG, 'README.md': '# Microwave-right' }, 'Kandinsky-5.0-T2V-Lite-LoRa-Microwave-right'), weight: 0.9,
      }]);
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      await mergeAndCheckLoraCase(prepared, backends[kind]!, diffusersFolder, [{ bytes: bareBytes, specs: bare, weight: 0.9 }]);
    });
  }

  it('the folder, factors under base_model.model. with .default (prefixes load_adapter drops): the same', async () => {
    const prefixed = specs('base_model.model.', true).map((s) => ({ ...s, down: s.down.replace('.lora_A.', '.lora_A.default.'), up: s.up.replace('.lora_B.', '.lora_B.default.') }));
    const bytes = buildSafetensors(loraTensors(rand, prefixed, 'BF16'));
    const prepared = await prepareMerge(memoryInputFileSet(originalFile, ORIGINAL), [{ files: memoryInputFileSet({ 'lora.safetensors': bytes, 'config_lora.json': CONFIG }, 'k5-lora'), weight: 1 }]);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    await mergeAndCheckLoraCase(prepared, backends.cpu!, originalFile, [{ bytes, specs: prefixed, weight: 1 }]);
  });

  it('lora.safetensors given by its path: the config_lora.json beside it is read; without it, scale 1 as ComfyUI applies it, with a warning saying so', async () => {
    const baseDir = temp.make(diffusersFolder);
    for (const withConfig of [true, false]) {
      const dir = temp.make({ 'lora.safetensors': bareBytes, ...(withConfig ? { 'config_lora.json': CONFIG } : {}) });
      const out = join(temp.make(), 'merged');
      const file = join(dir, 'lora.safetensors');
      const outcome = await merge({ base: baseDir, adapters: [file], out, backend: 'cpu' });
      expect(outcome.plan.warnings.filter((w) => w.includes('Kandinsky 5'))).toEqual(withConfig ? [] : [
        `${file}: a Kandinsky 5 LoRA in kandinskylab's form without the config_lora.json published beside it: merged at scale 1, as ComfyUI applies it; kandinskylab's load_adapter applies that config's lora_alpha / r, so if it came with one, give its folder (or this file with the config beside it)`,
      ]);
      const bytes = readFileSync(join(out, 'diffusion_pytorch_model.safetensors'));
      const merged = decodeSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).tensors;
      const base = decodeSafetensors(diffusersFolder['diffusion_pytorch_model.safetensors']).tensors;
      expectMergedFile(base, merged, truthTerms(decodeSafetensors(bareBytes).tensors, specs('', withConfig), 1));
    }
  });
});
