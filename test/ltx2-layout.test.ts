/**
 * LoRAs for LTX-2 (19B) and LTX-2.3, the audio-video DiT, in the key forms their trainers write —
 * Lightricks' trainer (ComfyUI's format: `diffusion_model.` + the original names, PEFT form, no α),
 * ai-toolkit (the same form; it renames diffusers' names back to the original before saving),
 * DiffSynth-Studio (bare original names, `.lora_A.default.weight`) and diffusers-named LoRAs
 * (`transformer.` + diffusers' names, α in `lora_adapter_metadata`) — onto Lightricks' single files
 * (the transformer under `model.diffusion_model.` beside the VAEs and vocoder) and diffusers'
 * LTX2VideoTransformer3DModel, file to file on the CPU and on WebGPU, against float64 truth. Where
 * each module lands is written out by hand from diffusers' scripts/convert_ltx2_to_diffusers.py:
 * only the input projections and the adaLN-single modules are renamed, row for row; the blocks
 * (video, audio and the audio↔video cross-attentions) have one naming.
 */
import { describe, expect, it } from 'vitest';
import { ltx2 } from '../src/formats/layouts/ltx2.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import type { LoraSpec } from './helpers/diffusion-fixtures.js';
import { LTX2, ltx2DiffusersTensors, ltx2OriginalTensors, ltxOriginalTensors, type Ltx2Dims } from './helpers/dit-fixtures.js';
import { loraCaseSuite, planProblemsOf, withoutLayout, type LoraCase, type LoraCaseAdapterSpec } from './helpers/lora-case.js';
import { DIFFUSERS_LORA_METADATA } from './helpers/diffusion-fixtures.js';

const rand = seededRandom(20260301);

/** PEFT form: `.lora_A/.lora_B.weight` (DiffSynth-Studio: `.lora_A.default.weight`); `scale` α/r, or 1 with no α. */
function peft(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], scale: number, infix = ''): LoraSpec {
  return { down: `${name}.lora_A${infix}.weight`, up: `${name}.lora_B${infix}.weight`, r, out, in: inF, lands, scale };
}
/** diffusers' trainers: r 4, α 8 in `lora_adapter_metadata`. */

type AdapterCase = LoraCaseAdapterSpec;
type Case = LoraCase;
const file = (name: string, tensors: FixtureTensor[]) => ({ [name]: buildSafetensors(tensors) });
const diffusersFolder = (tensors: FixtureTensor[]) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify({ _class_name: 'LTX2VideoTransformer3DModel' }),
});

const { dim: D, adim: A, latent: L, freq: F, heads: H } = LTX2;
const V23: Ltx2Dims = { ...LTX2, v23: true };
const F19 = 'ltx-2-19b-dev.safetensors';
const F23 = 'ltx-2.3-22b-dev.safetensors';
const dm = 'model.diffusion_model.';
/** A base key: the original file's (under `model.diffusion_model.`) or the diffusers transformer's. */
type Key = (name: string) => string;
const inFile: Key = (n) => `${dm}${n}.weight`;
const inFolder: Key = (n) => `${n}.weight`;

/**
 * Lightricks' trainer: the blocks' attentions (video, audio, audio↔video) and FFNs, no α (scale 1).
 * Its modules have one naming, so `k` is all that differs between the two bases.
 */
const trainerLora = (k: Key): LoraSpec[] => [
  peft('diffusion_model.transformer_blocks.0.attn1.to_q', 4, D, D, [{ key: k('transformer_blocks.0.attn1.to_q') }], 1),
  peft('diffusion_model.transformer_blocks.1.attn2.to_v', 4, D, D, [{ key: k('transformer_blocks.1.attn2.to_v') }], 1),
  peft('diffusion_model.transformer_blocks.0.audio_attn1.to_k', 4, A, A, [{ key: k('transformer_blocks.0.audio_attn1.to_k') }], 1),
  peft('diffusion_model.transformer_blocks.1.audio_attn2.to_out.0', 4, A, A, [{ key: k('transformer_blocks.1.audio_attn2.to_out.0') }], 1),
  // audio→video: video queries, audio keys; video→audio the other way.
  peft('diffusion_model.transformer_blocks.0.audio_to_video_attn.to_q', 4, A, D, [{ key: k('transformer_blocks.0.audio_to_video_attn.to_q') }], 1),
  peft('diffusion_model.transformer_blocks.0.audio_to_video_attn.to_out.0', 4, D, A, [{ key: k('transformer_blocks.0.audio_to_video_attn.to_out.0') }], 1),
  peft('diffusion_model.transformer_blocks.1.video_to_audio_attn.to_k', 4, A, D, [{ key: k('transformer_blocks.1.video_to_audio_attn.to_k') }], 1),
  peft('diffusion_model.transformer_blocks.0.ff.net.0.proj', 4, 4 * D, D, [{ key: k('transformer_blocks.0.ff.net.0.proj') }], 1),
  peft('diffusion_model.transformer_blocks.1.audio_ff.net.2', 4, A, 4 * A, [{ key: k('transformer_blocks.1.audio_ff.net.2') }], 1),
];

/** ai-toolkit: every linear, saved under the original names; `k` maps an original name to the base's. */
const aiToolkitLora = (k: Key, renamed: (original: string) => string): LoraSpec[] => [
  peft('diffusion_model.patchify_proj', 3, D, L, [{ key: k(renamed('patchify_proj')) }], 1),
  peft('diffusion_model.audio_patchify_proj', 3, A, L, [{ key: k(renamed('audio_patchify_proj')) }], 1),
  peft('diffusion_model.adaln_single.linear', 3, 6 * D, D, [{ key: k(renamed('adaln_single.linear')) }], 1),
  peft('diffusion_model.audio_adaln_single.emb.timestep_embedder.linear_1', 3, A, F, [{ key: k(renamed('audio_adaln_single.emb.timestep_embedder.linear_1')) }], 1),
  peft('diffusion_model.av_ca_video_scale_shift_adaln_single.linear', 3, 4 * D, D, [{ key: k(renamed('av_ca_video_scale_shift_adaln_single.linear')) }], 1),
  peft('diffusion_model.av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_2', 3, D, D, [{ key: k(renamed('av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_2')) }], 1),
  peft('diffusion_model.av_ca_v2a_gate_adaln_single.linear', 3, A, A, [{ key: k(renamed('av_ca_v2a_gate_adaln_single.linear')) }], 1),
  peft('diffusion_model.caption_projection.linear_1', 3, D, LTX2.cap, [{ key: k('caption_projection.linear_1') }], 1),
  peft('diffusion_model.audio_proj_out', 3, L, A, [{ key: k('audio_proj_out') }], 1),
  peft('diffusion_model.transformer_blocks.1.video_to_audio_attn.to_q', 3, A, A, [{ key: k('transformer_blocks.1.video_to_audio_attn.to_q') }], 1),
];

/** DiffSynth-Studio: bare original names, `.lora_A.default.weight`, no α. */
const diffSynthLora = (k: Key, renamed: (original: string) => string): LoraSpec[] => [
  peft('transformer_blocks.0.audio_attn1.to_q', 2, A, A, [{ key: k('transformer_blocks.0.audio_attn1.to_q') }], 1, '.default'),
  peft('transformer_blocks.1.attn1.to_out.0', 2, D, D, [{ key: k('transformer_blocks.1.attn1.to_out.0') }], 1, '.default'),
  peft('audio_patchify_proj', 2, A, L, [{ key: k(renamed('audio_patchify_proj')) }], 1, '.default'),
  peft('av_ca_audio_scale_shift_adaln_single.emb.timestep_embedder.linear_1', 2, A, F, [{ key: k(renamed('av_ca_audio_scale_shift_adaln_single.emb.timestep_embedder.linear_1')) }], 1, '.default'),
];

/** The original names diffusers renames (convert_ltx2_to_diffusers.py), as this test states them. */
const TO_DIFFUSERS: readonly [string, string][] = [
  ['audio_patchify_proj', 'audio_proj_in'], ['patchify_proj', 'proj_in'],
  ['av_ca_video_scale_shift_adaln_single', 'av_cross_attn_video_scale_shift'], ['av_ca_audio_scale_shift_adaln_single', 'av_cross_attn_audio_scale_shift'],
  ['av_ca_a2v_gate_adaln_single', 'av_cross_attn_video_a2v_gate'], ['av_ca_v2a_gate_adaln_single', 'av_cross_attn_audio_v2a_gate'],
  ['audio_prompt_adaln_single', 'audio_prompt_adaln'], ['prompt_adaln_single', 'prompt_adaln'],
  ['audio_adaln_single', 'audio_time_embed'], ['adaln_single', 'time_embed'],
];
const toDiffusers = (original: string): string => {
  const hit = TO_DIFFUSERS.find(([o]) => original === o || original.startsWith(`${o}.`));
  return hit ? hit[1] + original.slice(hit[0].length) : original;
};
const same = (name: string) => name;

/** diffusers-named LoRAs (`transformer.`), onto the original file; α 8 / r 4. */
const diffusersLoraOnFile: LoraSpec[] = [
  peft('transformer.proj_in', 4, D, L, [{ key: inFile('patchify_proj') }], 2),
  peft('transformer.time_embed.linear', 4, 6 * D, D, [{ key: inFile('adaln_single.linear') }], 2),
  peft('transformer.audio_time_embed.emb.timestep_embedder.linear_2', 4, A, A, [{ key: inFile('audio_adaln_single.emb.timestep_embedder.linear_2') }], 2),
  peft('transformer.av_cross_attn_audio_scale_shift.linear', 4, 4 * A, A, [{ key: inFile('av_ca_audio_scale_shift_adaln_single.linear') }], 2),
  peft('transformer.av_cross_attn_video_a2v_gate.linear', 4, D, D, [{ key: inFile('av_ca_a2v_gate_adaln_single.linear') }], 2),
  peft('transformer.transformer_blocks.0.audio_to_video_attn.to_v', 4, A, A, [{ key: inFile('transformer_blocks.0.audio_to_video_attn.to_v') }], 2),
  peft('transformer.audio_caption_projection.linear_2', 4, A, A, [{ key: inFile('audio_caption_projection.linear_2') }], 2),
];

/** LTX-2.3: the prompt adaLN modules, the attention gates and the 9-row time embedding. */
const diffusersLoraOnFile23: LoraSpec[] = [
  peft('transformer.prompt_adaln.linear', 4, 2 * D, D, [{ key: inFile('prompt_adaln_single.linear') }], 2),
  peft('transformer.audio_prompt_adaln.emb.timestep_embedder.linear_1', 4, A, F, [{ key: inFile('audio_prompt_adaln_single.emb.timestep_embedder.linear_1') }], 2),
  peft('transformer.time_embed.linear', 4, 9 * D, D, [{ key: inFile('adaln_single.linear') }], 2),
  peft('transformer.transformer_blocks.1.attn2.to_gate_logits', 4, H, D, [{ key: inFile('transformer_blocks.1.attn2.to_gate_logits') }], 2),
];
const trainerLora23OnFolder: LoraSpec[] = [
  peft('diffusion_model.prompt_adaln_single.linear', 8, 2 * D, D, [{ key: inFolder('prompt_adaln.linear') }], 1),
  peft('diffusion_model.audio_prompt_adaln_single.emb.timestep_embedder.linear_2', 8, A, A, [{ key: inFolder('audio_prompt_adaln.emb.timestep_embedder.linear_2') }], 1),
  peft('diffusion_model.adaln_single.linear', 8, 9 * D, D, [{ key: inFolder('time_embed.linear') }], 1),
  peft('diffusion_model.transformer_blocks.0.audio_attn1.to_gate_logits', 8, H, A, [{ key: inFolder('transformer_blocks.0.audio_attn1.to_gate_logits') }], 1),
  peft('diffusion_model.transformer_blocks.0.video_to_audio_attn.to_v', 8, A, D, [{ key: inFolder('transformer_blocks.0.video_to_audio_attn.to_v') }], 1),
];

/**
 * LTX-2.3's text projection and connectors named as the transformer's (`diffusion_model.`, as the
 * existing LoRAs and ComfyUI's extraction name them). Lightricks' single file keeps the connectors
 * under `model.diffusion_model.` and the projection beside the transformer, top-level
 * (`text_embedding_projection.video_aggregate_embed`: Lightricks' ltx-core loads it with the text
 * encoder, EMBEDDINGS_PROCESSOR_KEY_OPS; ComfyUI's LTX-2 text encoder likewise): the projection
 * lands there, the connectors by name.
 */
const C = LTX2.cap;
const top = (n: string) => `${n}.weight`;
const connectorsAsTransformer23: LoraSpec[] = [
  peft('diffusion_model.text_embedding_projection.video_aggregate_embed', 4, D, 3 * C, [{ key: top('text_embedding_projection.video_aggregate_embed') }], 1),
  peft('diffusion_model.text_embedding_projection.audio_aggregate_embed', 4, A, 3 * C, [{ key: top('text_embedding_projection.audio_aggregate_embed') }], 1),
  peft('diffusion_model.video_embeddings_connector.transformer_1d_blocks.0.attn1.to_gate_logits', 4, H, D, [{ key: inFile('video_embeddings_connector.transformer_1d_blocks.0.attn1.to_gate_logits') }], 1),
  peft('diffusion_model.audio_embeddings_connector.transformer_1d_blocks.0.ff.net.0.proj', 4, 4 * A, A, [{ key: inFile('audio_embeddings_connector.transformer_1d_blocks.0.ff.net.0.proj') }], 1),
  peft('diffusion_model.transformer_blocks.1.audio_attn2.to_gate_logits', 4, H, A, [{ key: inFile('transformer_blocks.1.audio_attn2.to_gate_logits') }], 1),
];
/** The projection top-level and bare, as diffusers' LTX-2 LoRA loader reads it (`has_connector`); no α. */
const bareProjection23: LoraSpec[] = [
  peft('text_embedding_projection.video_aggregate_embed', 2, D, 3 * C, [{ key: top('text_embedding_projection.video_aggregate_embed') }], 1),
];
/** LTX-2 (2.0): its one projection to the caption width. */
const projection19: LoraSpec[] = [
  peft('diffusion_model.text_embedding_projection.aggregate_embed', 4, C, 3 * C, [{ key: top('text_embedding_projection.aggregate_embed') }], 1),
];

const CASES: Case[] = [
  {
    name: 'LTX-2 19B, Lightricks\' single file ← Lightricks\' trainer, ai-toolkit and DiffSynth-Studio LoRAs (original names, by name)',
    base: file(F19, ltx2OriginalTensors(rand, 'BF16')), baseName: F19,
    adapters: [
      { file: 'lora_weights_step_02000.safetensors', specs: trainerLora(inFile), weight: 1, metadata: { reference_downscale_factor: '2' } },
      { file: 'ai-toolkit-ltx2.safetensors', specs: aiToolkitLora(inFile, same), weight: 0.8 },
      { file: 'diffsynth-ltx2.safetensors', specs: diffSynthLora(inFile, same), weight: 1.1 },
    ],
  },
  {
    name: 'diffusers LTX-2 transformer ← the same three LoRAs (input projections and adaLN modules renamed)', layout: 'ltx2',
    base: diffusersFolder(ltx2DiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [
      { file: 'lora_weights_step_02000.safetensors', specs: trainerLora(inFolder), weight: 1 },
      { file: 'ai-toolkit-ltx2.safetensors', specs: aiToolkitLora(inFolder, toDiffusers), weight: -0.6 },
      { file: 'diffsynth-ltx2.safetensors', specs: diffSynthLora(inFolder, toDiffusers), weight: 1 },
    ],
  },
  {
    name: 'LTX-2 19B, Lightricks\' single file ← diffusers-named LoRA (renamed back)', layout: 'ltx2',
    base: file(F19, ltx2OriginalTensors(rand, 'BF16')), baseName: F19,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersLoraOnFile, weight: 0.7, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'LTX-2.3, Lightricks\' single file ← diffusers-named LoRA (prompt adaLN, attention gates)', layout: 'ltx2',
    base: file(F23, ltx2OriginalTensors(rand, 'BF16', V23)), baseName: F23,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersLoraOnFile23, weight: 1, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'LTX-2.3, Lightricks\' fp8 single file ← the text projection and connectors named as the transformer\'s, and the projection bare',
    base: file('ltx-2.3-22b-dev-fp8.safetensors', ltx2OriginalTensors(rand, 'F8_E4M3', V23)), baseName: 'ltx-2.3-22b-dev-fp8.safetensors',
    adapters: [
      { file: 'ltx-2.3-connectors-lora.safetensors', specs: connectorsAsTransformer23, weight: 0.7 },
      { file: 'ltx-2.3-projection-lora.safetensors', specs: bareProjection23, weight: -1.2 },
    ],
  },
  {
    name: 'LTX-2 19B, Lightricks\' single file ← the text projection named as the transformer\'s',
    base: file(F19, ltx2OriginalTensors(rand, 'BF16')), baseName: F19,
    adapters: [{ file: 'ltx-2-projection-lora.safetensors', specs: projection19, weight: 1 }],
  },
  {
    name: 'diffusers LTX-2.3 transformer ← Lightricks\' trainer LoRA in ComfyUI\'s format', layout: 'ltx2',
    base: diffusersFolder(ltx2DiffusersTensors(rand, 'BF16', V23)), baseName: 'transformer',
    adapters: [{ file: 'lora_weights_step_01000.safetensors', specs: trainerLora23OnFolder, weight: 0.9 }],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');
const problemsOf = (base: Record<string, Uint8Array | string>, baseName: string, specs: LoraSpec[]) => planProblemsOf(base, baseName, specs, rand);

describe('the ltx2 layout', () => {
  it('places the modules named the other way, and only those', async () => {
    for (const k of CASES) {
      const prepared = await prepare(k);
      const layouts = new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout)));
      expect(layouts.has('ltx2'), k.name).toBe(k.layout === 'ltx2');
      expect(layouts.has('ltx-video'), k.name).toBe(false);
      await prepared.close();
    }
  });

  it('without it in the registry, every renamed module is refused (LTX-Video\'s layout does not take LTX-2 bases)', async () => {
    await withoutLayout(ltx2, async () => {
      for (const k of CASES.filter((x) => x.layout === 'ltx2')) {
        const prepared = await prepare(k);
        expect(prepared.plan.problems.length, k.name).toBeGreaterThan(0);
        await prepared.close();
      }
      // The two renames LTX-Video shares with LTX-2 would otherwise land through the ltx-video layout.
      const problems = await problemsOf(file(F19, ltx2OriginalTensors(rand, 'BF16')), F19, [
        peft('transformer.proj_in', 2, D, L, [], 1), peft('transformer.time_embed.linear', 2, 6 * D, D, [], 1),
      ]);
      expect(problems).toEqual([expect.stringMatching(/transformer\.proj_in.*no matching tensor/), expect.stringMatching(/transformer\.time_embed\.linear.*no matching tensor/)]);
    });
  });
});

describe('refused with the reason', () => {
  it('an LTX-Video 0.9.x (2B) LoRA on an LTX-2 file: its blocks have LTX-2\'s names but half its width', async () => {
    // LTX-Video 2B is 2048 wide, LTX-2 4096: scaled here to 4 and 8.
    const v = LTX2.dim / 2;
    const problems = await problemsOf(file(F19, ltx2OriginalTensors(rand, 'BF16')), F19, [
      peft('diffusion_model.transformer_blocks.0.attn1.to_q', 2, v, v, [], 1),
      peft('diffusion_model.transformer_blocks.1.ff.net.0.proj', 2, 4 * v, v, [], 1),
      peft('diffusion_model.patchify_proj', 2, v, L, [], 1),
    ]);
    // No module fits: one line says the LoRA is of another size of the model, with the first misfit.
    expect(problems).toEqual([expect.stringMatching(
      /: none of its 3 modules fits this base: 3 have other shapes than the tensors they name \(such as module "diffusion_model\.transformer_blocks\.0\.attn1\.to_q": ΔW \(4, 4\) does not fit base .*\); it was trained on another model or another size of this one/,
    )]);
  });

  it('LTX-2\'s audio and audio-video modules on an LTX-Video 0.9.x file', async () => {
    const problems = await problemsOf(file('ltx-video-2b-v0.9.5.safetensors', ltxOriginalTensors(rand, 'BF16')), 'ltx-video-2b-v0.9.5.safetensors', [
      peft('diffusion_model.transformer_blocks.0.audio_attn1.to_q', 2, A, A, [], 1),
      peft('diffusion_model.audio_patchify_proj', 2, A, L, [], 1),
      peft('transformer.av_cross_attn_video_a2v_gate.linear', 2, D, D, [], 1),
    ]);
    expect(problems).toEqual([
      expect.stringMatching(/audio_attn1\.to_q.*no matching tensor/), expect.stringMatching(/audio_patchify_proj.*no matching tensor/),
      expect.stringMatching(/av_cross_attn_video_a2v_gate\.linear.*no matching tensor/),
    ]);
  });

  it('LTX-2.3\'s modules on an LTX-2 (2.0) base, either naming', async () => {
    const onFolder = await problemsOf(diffusersFolder(ltx2DiffusersTensors(rand, 'BF16')), 'transformer', [
      peft('diffusion_model.prompt_adaln_single.linear', 2, 2 * D, D, [], 1),
    ]);
    expect(onFolder).toEqual([expect.stringMatching(/prompt_adaln_single\.linear.*no matching tensor/)]);
    const onFile = await problemsOf(file(F19, ltx2OriginalTensors(rand, 'BF16')), F19, [peft('transformer.transformer_blocks.0.attn1.to_gate_logits', 2, H, D, [], 1)]);
    expect(onFile).toEqual([expect.stringMatching(/to_gate_logits.*no matching tensor/)]);
  });

  it('the text connectors on diffusers\' transformer, which does not hold them', async () => {
    const problems = await problemsOf(diffusersFolder(ltx2DiffusersTensors(rand, 'BF16')), 'transformer', [
      peft('diffusion_model.video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q', 2, LTX2.cap, LTX2.cap, [], 1),
    ]);
    expect(problems).toEqual([expect.stringMatching(/video_embeddings_connector.*": is in a text connector, which diffusers' conversion moves out of the transformer into its separate `connectors` model/)]);
  });
});
