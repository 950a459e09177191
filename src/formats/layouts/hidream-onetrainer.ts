/**
 * Layout: the text encoder modules of OneTrainer's HiDream-I1 LoRAs in the OMI format, the form its
 * default safetensors output took for HiDream from May 2025 until its LoRA output formats were
 * reworked in July 2026 (LoRASaverMixin `convert_to_omi` with convert_hidream_lora_key_sets; header
 * `modelspec.architecture` `hidream-i1/lora`): the transformer under `transformer.` in diffusers'
 * names (which land by name), and each text encoder under a prefix of its own, in transformers' names:
 * `clip_l.` (text_model.encoder.layers.N.self_attn.q_proj …), `clip_g.`, `t5.`
 * (encoder.block.N.layer.0.SelfAttention.q …) and `llama.` (model.layers.N.self_attn.q_proj …, lm_head).
 *
 * OneTrainer, the tool that wrote them, loaded them back into its four text encoders, which its HiDream
 * loader reads from the pipeline folder's `text_encoder/` (CLIP-L), `text_encoder_2/` (CLIP-G),
 * `text_encoder_3/` (T5) and `text_encoder_4/` (Llama 3.1 8B Instruct, or a Llama given apart): so on a
 * HiDream pipeline folder each lands in that folder by its exact name. ComfyUI maps none of these names
 * (its HiDream key map reads `transformer.` alone) and leaves them unloaded, as does diffusers; on a
 * HiDream base without that folder (ComfyUI's transformer-only file) the module is left out with a
 * warning saying where OneTrainer put it. It answers only on HiDream-I1 bases (a double-stream block's
 * `attn1.to_q_t`), so these short prefixes mean nothing on any other model.
 */
import { missBecause, type BaseView, type Layout } from './layout.js';

/** Each OMI text encoder prefix: the pipeline folder OneTrainer loads that encoder from, and its name. */
const ENCODERS: Readonly<Record<string, { folder: string; name: string }>> = {
  clip_l: { folder: 'text_encoder', name: 'CLIP-L' },
  clip_g: { folder: 'text_encoder_2', name: 'CLIP-G' },
  t5: { folder: 'text_encoder_3', name: 'T5-XXL' },
  llama: { folder: 'text_encoder_4', name: 'Llama 3.1 8B Instruct' },
};

const OMI_ENCODER = /^(clip_l|clip_g|t5|llama)\.(.+)$/;
/** The Llama in OneTrainer's LEGACY (kohya-like, flattened) HiDream names. */
const LEGACY_LLAMA = /^lora_te4_(.+)$/;
/** HiDream-I1's transformer, bare, under `model.diffusion_model.` or in a pipeline's `transformer.`. */
const HIDREAM = /(^|\.)double_stream_blocks\.\d+\.block\.attn1\.to_q_t\.weight$/;

const seen = new WeakMap<readonly string[], boolean>();
/** Whether the base is HiDream-I1's (once per base). */
function isHiDream(base: BaseView): boolean {
  let is = seen.get(base.keys);
  if (is === undefined) seen.set(base.keys, is = base.keys.some((k) => HIDREAM.test(k)));
  return is;
}

export const hidreamOneTrainer: Layout = {
  name: 'hidream-onetrainer',
  resolve(address, base) {
    if (address.part !== undefined || address.flat) return undefined;
    const m = OMI_ENCODER.exec(address.path);
    const legacy = m ? undefined : LEGACY_LLAMA.exec(address.path);
    if ((!m && !legacy) || !isHiDream(base)) return undefined;
    const { folder, name } = ENCODERS[m ? m[1] : 'llama'];
    const inFolder = base.keys.filter((k) => k.startsWith(`${folder}.`));
    const key = m
      ? `${folder}.${m[2]}.weight`
      : inFolder.find((k) => k.endsWith('.weight') && k.slice(folder.length + 1, -'.weight'.length).replaceAll('.', '_') === legacy![1]);
    if (key !== undefined && base.index.has(key)) return { found: true, targets: [{ baseKey: key }] };
    const said = m
      ? `names HiDream-I1's ${name} as OneTrainer's OMI-format LoRAs do (${m[1]}.), which OneTrainer loads into the pipeline's ${folder}/`
      : `names HiDream-I1's ${name} as OneTrainer's LEGACY LoRAs do (lora_te4_), which OneTrainer loads into the pipeline's ${folder}/`;
    if (inFolder.length > 0) return missBecause(`${said}; that folder holds no ${m ? `${m[2]}.weight` : `tensor named ${legacy![1]}`}`);
    return {
      found: false, ambiguous: true, candidates: [], leftOut: true,
      why: `${said}; the base holds no ${folder}/ (ComfyUI and diffusers leave these names unloaded): to merge it, give the HiDream pipeline folder with ${folder}/ as the base`,
    };
  },
};
