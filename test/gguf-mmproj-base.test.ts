/**
 * A multimodal projector GGUF given as the base: `convert_hf_to_gguf.py --mmproj` writes a
 * vision-language model's vision encoder and projector into a file of its own (general.architecture
 * "clip", general.type "mmproj"; `v.blk.N.…` and `mm.…` tensors, `clip.*` metadata), which llama.cpp
 * loads beside the language model with --mmproj and applies no LoRA to. A merge into it is refused
 * in one line, whatever the adapter targets, naming the file and what to give instead.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { runCli } from './helpers/cli.js';
import { tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { cellPeftAdapter, whole, type CellCase } from './helpers/gguf-cell-truth.js';
import { buildGguf, tensorData, type MetaValue } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, q4kmLlama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

/** Gemma 3 4B's mmproj-model-f16.gguf, shrunk: SigLIP blocks as v.blk.N, the projector as mm.*. */
const D = 32, P = 64;
function gemma3Mmproj(metadata: [string, MetaValue][] = MMPROJ_KEYS): Uint8Array {
  const f16 = (n: number) => tensorData('F16', Float64Array.from({ length: n }, (_, i) => ((i % 13) - 6) / 64));
  const f32 = (n: number) => tensorData('F32', new Float64Array(n).fill(1));
  return buildGguf({
    metadata,
    tensors: [
      { name: 'mm.input_projection.weight', type: 'F16', ne: [P, D], data: f16(P * D) },
      { name: 'mm.soft_emb_norm.weight', type: 'F32', ne: [D], data: f32(D) },
      { name: 'v.blk.0.attn_k.weight', type: 'F16', ne: [D, D], data: f16(D * D) },
      { name: 'v.blk.0.attn_q.weight', type: 'F16', ne: [D, D], data: f16(D * D) },
      { name: 'v.blk.0.attn_v.weight', type: 'F16', ne: [D, D], data: f16(D * D) },
      { name: 'v.blk.0.attn_out.weight', type: 'F16', ne: [D, D], data: f16(D * D) },
      { name: 'v.blk.0.ln1.weight', type: 'F32', ne: [D], data: f32(D) },
      { name: 'v.post_ln.weight', type: 'F32', ne: [D], data: f32(D) },
    ],
  });
}

const MMPROJ_KEYS: [string, MetaValue][] = [
  ['general.architecture', { type: 'string', value: 'clip' }],
  ['general.type', { type: 'string', value: 'mmproj' }],
  ['general.file_type', { type: 'u32', value: 1 }],
  ['clip.has_vision_encoder', { type: 'bool', value: true }],
  ['clip.projector_type', { type: 'string', value: 'gemma3' }],
  ['clip.use_gelu', { type: 'bool', value: true }],
  ['clip.vision.image_size', { type: 'u32', value: 896 }],
  ['clip.vision.patch_size', { type: 'u32', value: 14 }],
  ['clip.vision.embedding_length', { type: 'u32', value: D }],
  ['clip.vision.feed_forward_length', { type: 'u32', value: 4 * D }],
  ['clip.vision.projection_dim', { type: 'u32', value: P }],
  ['clip.vision.block_count', { type: 'u32', value: 1 }],
  ['clip.vision.attention.head_count', { type: 'u32', value: 4 }],
  ['clip.vision.attention.layer_norm_epsilon', { type: 'f32', value: 1e-6 }],
];

/** A Gemma 3 PEFT adapter: the language model's v_proj, or the SigLIP tower's q_proj. */
const gemma3: CellCase = {
  arch: 'gemma3', hfModel: 'google/gemma-3-4b-it', tensors: [], metadata: [],
  targets: [
    { module: 'model.language_model.layers.0.self_attn.v_proj', out: D, in: D, lands: whole('blk.0.attn_v.weight') },
    { module: 'model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj', out: D, in: D, lands: whole('v.blk.0.attn_q.weight') },
  ],
  rank: 4, alpha: 8,
};

const REFUSAL = 'base/mmproj-model-f16.gguf: is a multimodal projector (mmproj) GGUF (general.architecture "clip", general.type "mmproj"): the vision encoder and projector llama.cpp loads beside a language model with --mmproj, to which it applies no LoRA; give the language model\'s GGUF as the base (for a LoRA on the vision tower, merge into the safetensors model and convert that with convert_hf_to_gguf.py --mmproj)';

/**
 * A Gemma 3 adapter trained with ensure_weight_tying: v_proj, and lm_head's factors (PEFT saves the
 * head's as views of the embedding's), which the config admits only as a layer tied to embed_tokens.
 */
function tiedHeadAdapter(): Record<string, Uint8Array | string> {
  const r = gemma3.rank, V = 48;
  const head: FixtureTensor[] = [
    { name: 'base_model.model.lm_head.lora_A.weight', dtype: 'F32', shape: [r, D], data: new Float64Array(r * D).fill(0.01) },
    { name: 'base_model.model.lm_head.lora_B.weight', dtype: 'F32', shape: [V, r], data: new Float64Array(V * r).fill(0.02) },
  ];
  return cellPeftAdapter(gemma3, [gemma3.targets[0]], { ensure_weight_tying: true, target_modules: ['embed_tokens', 'v_proj'] }, head).files;
}

const prepare = (base: Uint8Array, adapter: Record<string, Uint8Array | string>) =>
  prepareMerge(memoryInputFileSet({ 'mmproj-model-f16.gguf': base }, 'base'), [{ files: memoryInputFileSet(adapter, 'adapter') }]);

describe('an mmproj GGUF as the base', () => {
  it('refuses a PEFT LoRA on the language model in one line', async () => {
    await expect(prepare(gemma3Mmproj(), cellPeftAdapter(gemma3, [gemma3.targets[0]]).files)).rejects.toThrow(REFUSAL);
  });

  it('refuses a PEFT LoRA on the vision tower in the same line (its converted names are not mapped)', async () => {
    await expect(prepare(gemma3Mmproj(), cellPeftAdapter(gemma3, [gemma3.targets[1]]).files)).rejects.toThrow(REFUSAL);
  });

  it('refuses a llama.cpp LoRA likewise', async () => {
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 2, in: D, out: D, aType: 'F32', bType: 'F32' }], 2, 31);
    await expect(prepare(gemma3Mmproj(), { 'lora.gguf': lora.bytes })).rejects.toThrow(REFUSAL);
  });

  it('refuses a PEFT LoRA under ensure_weight_tying with a tied-only lm_head in the same line, before the tie check (the projector stores no token_embd.weight to tell a tie by)', async () => {
    await expect(prepare(gemma3Mmproj(), tiedHeadAdapter())).rejects.toThrow(REFUSAL);
  });

  it('refuses an older mmproj with general.architecture "clip" and no general.type', async () => {
    const old = gemma3Mmproj(MMPROJ_KEYS.filter(([key]) => key !== 'general.type'));
    await expect(prepare(old, cellPeftAdapter(gemma3, [gemma3.targets[0]]).files)).rejects.toThrow(
      /^base\/mmproj-model-f16\.gguf: is a multimodal projector \(mmproj\) GGUF \(general\.architecture "clip"\): /,
    );
  });

  it('on the command line: one error line, nothing at --out (an adapter with a tied-only lm_head under ensure_weight_tying too)', async () => {
    for (const adapter of [cellPeftAdapter(gemma3, [gemma3.targets[0]]).files, tiedHeadAdapter()]) {
      const dir = temp.make({ 'mmproj-model-f16.gguf': gemma3Mmproj(), 'adapter_config.json': adapter['adapter_config.json'], 'adapter_model.safetensors': adapter['adapter_model.safetensors'] });
      const out = join(dir, 'merged.gguf');
      const result = await runCli(['merge', '--base', join(dir, 'mmproj-model-f16.gguf'), '--adapter', dir, '--out', out, '--backend', 'cpu']);
      expect(result.code).not.toBe(0);
      expect(result.stderr.trim().split('\n')).toEqual([`error: ${REFUSAL.replace('base/mmproj-model-f16.gguf', join(dir, 'mmproj-model-f16.gguf'))}`]);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('a folder holding the model and its mmproj file (as model repositories ship them) is refused, saying which is the projector', async () => {
    const files = { 'gemma-3-4b-it-Q4_K_M.gguf': Object.values(q4kmLlama().files)[0], 'mmproj-F16.gguf': gemma3Mmproj() };
    await expect(prepareMerge(memoryInputFileSet(files, 'gemma-3-4b-it-GGUF'), [{ files: memoryInputFileSet(cellPeftAdapter(gemma3, [gemma3.targets[0]]).files, 'adapter') }])).rejects.toThrow(
      /^gemma-3-4b-it-GGUF: holds 2 GGUF models \((gemma-3-4b-it-Q4_K_M|mmproj-F16)\.gguf, (gemma-3-4b-it-Q4_K_M|mmproj-F16)\.gguf…\); point at one \(mmproj-F16\.gguf is a vision projector for --mmproj, not a base: point at the model's own file\)$/,
    );
  });
});
