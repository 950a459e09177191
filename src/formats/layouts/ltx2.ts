/**
 * Layout: LTX-2 (the audio-video DiT: LTX-2 19B, LTX-2.3) in its original naming (Lightricks'
 * single files such as `ltx-2-19b-dev.safetensors`, keys under `model.diffusion_model.`; Comfy-Org's
 * repackaged files; ComfyUI's model; LoRAs from Lightricks' trainer, ai-toolkit and DiffSynth-Studio)
 * and in diffusers' (LTX2VideoTransformer3DModel), either way round, as diffusers renames them
 * (scripts/convert_ltx2_to_diffusers.py, its single-file conversion and its LTX-2 LoRA converter):
 * - the input projections: `patchify_proj` ↔ `proj_in`, `audio_patchify_proj` ↔ `audio_proj_in`;
 * - the adaLN-single modules (each `emb.timestep_embedder.linear_1`, `linear_2` and `linear`):
 *   `adaln_single` ↔ `time_embed`, `audio_adaln_single` ↔ `audio_time_embed`, the four
 *   audio-video cross-attention ones (`av_ca_video_scale_shift_adaln_single` ↔
 *   `av_cross_attn_video_scale_shift`, …) and LTX-2.3's `prompt_adaln_single` ↔ `prompt_adaln`,
 *   `audio_prompt_adaln_single` ↔ `audio_prompt_adaln`; all row for row;
 * - the q/k RMSNorms of the six attentions (`attn1`, `attn2`, `audio_attn1`, `audio_attn2`,
 *   `audio_to_video_attn`, `video_to_audio_attn`): `q_norm` ↔ `norm_q`, `k_norm` ↔ `norm_k`, one
 *   weight of the attention's inner width in both.
 * The blocks (`transformer_blocks.N.attn1`, `audio_attn2`, `audio_to_video_attn`, `ff.net.0.proj`,
 * LTX-2.3's `to_gate_logits`), the caption projections and the output projections have the same
 * names in both and land by name.
 *
 * The text connectors (`video_embeddings_connector`, `audio_embeddings_connector`, the text
 * projection `text_embedding_projection`) are the conversion's other model: it moves them out of
 * the transformer into diffusers' separate `connectors` model (LTX2TextConnectors), renamed
 * (`video_connector`, `transformer_1d_blocks` → `transformer_blocks`, `q_norm` → `norm_q`,
 * `aggregate_embed` → `text_proj_in`, LTX-2.3's `video_aggregate_embed` → `video_text_proj_in`).
 * They land there when the base is a whole pipeline (its `connectors` component, base-model.ts);
 * on a diffusers transformer alone they are refused with the reason and what to pass instead.
 *
 * It answers only on an LTX-2 base: its audio input projection beside the audio-to-video gate,
 * under either naming. LTX-Video 0.9.x bases have neither.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import type { Layout, LayoutResolution } from './layout.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';


/** An adaLN-single module's three linears, renamed with it. */
const adaln = (original: string, diffusers: string): RenameRule[] =>
  ['emb.timestep_embedder.linear_1', 'emb.timestep_embedder.linear_2', 'linear'].map((l) => oneToOne(`${original}.${l}`, `${diffusers}.${l}`));

export const LTX2_RULES: readonly RenameRule[] = [
  oneToOne('patchify_proj', 'proj_in'),
  oneToOne('audio_patchify_proj', 'audio_proj_in'),
  ...adaln('adaln_single', 'time_embed'),
  ...adaln('audio_adaln_single', 'audio_time_embed'),
  ...adaln('av_ca_video_scale_shift_adaln_single', 'av_cross_attn_video_scale_shift'),
  ...adaln('av_ca_audio_scale_shift_adaln_single', 'av_cross_attn_audio_scale_shift'),
  ...adaln('av_ca_a2v_gate_adaln_single', 'av_cross_attn_video_a2v_gate'),
  ...adaln('av_ca_v2a_gate_adaln_single', 'av_cross_attn_audio_v2a_gate'),
  ...adaln('prompt_adaln_single', 'prompt_adaln'),
  ...adaln('audio_prompt_adaln_single', 'audio_prompt_adaln'),
  ...['attn1', 'attn2', 'audio_attn1', 'audio_attn2', 'audio_to_video_attn', 'video_to_audio_attn'].flatMap((a) => [
    oneToOne(`transformer_blocks.{i}.${a}.q_norm`, `transformer_blocks.{i}.${a}.norm_q`),
    oneToOne(`transformer_blocks.{i}.${a}.k_norm`, `transformer_blocks.{i}.${a}.norm_k`),
  ]),
];

/** The audio input projection under either name; the model's prefix is the key's. */
const AUDIO_INPUT = /(^|\.)(audio_patchify_proj|audio_proj_in)\.weight$/;
const LTX2 = modelPrefix((key, base) => {
  const m = AUDIO_INPUT.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  const gate = m[2] === 'audio_patchify_proj' ? 'av_ca_a2v_gate_adaln_single' : 'av_cross_attn_video_a2v_gate';
  return base.index.has(`${p}${gate}.linear.weight`) ? p : undefined;
});

const renamed = modelLayout('ltx2', LTX2, LTX2_RULES);

/** A connector's blocks and learnable registers (a parameter of the connector itself), renamed as the conversion does. */
function connectorRules(original: string, diffusers: string): RenameRule[] {
  const O = `${original}.transformer_1d_blocks.{i}`;
  const D = `${diffusers}.transformer_blocks.{i}`;
  return [
    ...['attn1.to_q', 'attn1.to_k', 'attn1.to_v', 'attn1.to_out.0', 'attn1.to_gate_logits', 'ff.net.0.proj', 'ff.net.2'].map((m) => oneToOne(`${O}.${m}`, `${D}.${m}`)),
    oneToOne(`${O}.attn1.q_norm`, `${D}.attn1.norm_q`),
    oneToOne(`${O}.attn1.k_norm`, `${D}.attn1.norm_k`),
    oneToOne(`${original}.learnable_registers:`, `${diffusers}.learnable_registers:`),
  ];
}

export const LTX2_CONNECTOR_RULES: readonly RenameRule[] = [
  ...connectorRules('video_embeddings_connector', 'video_connector'),
  ...connectorRules('audio_embeddings_connector', 'audio_connector'),
  oneToOne('text_embedding_projection.aggregate_embed', 'text_proj_in'),
  oneToOne('text_embedding_projection.video_aggregate_embed', 'video_text_proj_in'),
  oneToOne('text_embedding_projection.audio_aggregate_embed', 'audio_text_proj_in'),
];

/** diffusers' connectors model: a connector block under diffusers' names; its prefix is the key's. */
const CONNECTOR_BLOCK = /(^|\.)(video|audio)_connector\.transformer_blocks\.\d+\./;
const CONNECTORS = modelPrefix((key) => {
  const m = CONNECTOR_BLOCK.exec(key);
  return m ? prefixBefore(key, m) : undefined;
});
const connectors = modelLayout('ltx2', CONNECTORS, LTX2_CONNECTOR_RULES);

const CONNECTOR = /^((video|audio)_embeddings_connector|text_embedding_projection)[._]/;
const miss = (why: string): LayoutResolution => ({ found: false, ambiguous: false, candidates: [], why });
const CONNECTOR_MISS = miss(
  'is in a text connector, which diffusers\' conversion moves out of the transformer into its separate `connectors` model (as `video_connector` / `audio_connector`, `text_proj_in`); ' +
  'the base is the transformer alone and does not hold it: pass the whole diffusers pipeline folder (model_index.json with transformer/ and connectors/) as the base',
);
const NOT_IN_CONNECTORS = miss('is in a text connector, but diffusers\' `connectors` model has no such tensor under the names its conversion gives');

export const ltx2: Layout = {
  name: 'ltx2',
  renames: [...renamed.renames, ...connectors.renames],
  resolve(address, base) {
    const r = renamed.resolve(address, base);
    if (r || (address.part !== undefined && address.part !== 'unet') || !CONNECTOR.test(address.path)) return r;
    const moved = connectors.resolve(address, base);
    if (moved) return moved.found || moved.ambiguous ? moved : NOT_IN_CONNECTORS;
    const prefix = LTX2.of(base);
    // Only diffusers' transformer lacks the connectors; an original file holds them by name.
    return prefix !== null && base.index.has(`${prefix}audio_proj_in.weight`) ? CONNECTOR_MISS : undefined;
  },
};
