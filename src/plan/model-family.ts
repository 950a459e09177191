/**
 * What kind of model a base or an adapter is for, from tensor and module names alone: used to say
 * "this is a Stable Diffusion LoRA, the base is a language model" instead of listing hundreds of
 * unmatched modules. A guess that only words an error better; it never decides what is merged.
 */

/** The model families the names tell apart. */
export type ModelFamily = 'language model' | 'diffusion UNet' | 'diffusion transformer' | 'diffusion model' | 'text encoder';

// A pipeline's `text_encoder*` folders, ComfyUI's `text_encoders.` in all-in-one checkpoints, SD's
// `conditioner.` and `cond_stage_model.`, transformers' CLIP and kohya's `lora_te*_`.
const TEXT_ENCODER = /(^|[._])text_model[._]|^lora_te\d?_|(^|[._])(text_encoders?(_\d)?|conditioner|cond_stage_model)[._]/;

// `diffusion_model.` (ComfyUI's names of any denoiser) and kohya's `lora_unet_` (its prefix for
// Flux, Lumina, HunyuanVideo… too) say "a diffusion model" without saying which kind: they come
// after the rules that tell a UNet from a transformer, and before the language-model rule, whose
// `layers.N.attention` Lumina 2 and Z-Image share.
const RULES: { family: ModelFamily; pattern: RegExp }[] = [
  { family: 'diffusion UNet', pattern: /(^|[._])(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)[._]|^lora_unet_(down|up|mid|input|output|middle)_/ },
  { family: 'diffusion transformer', pattern: /(^|[._])(double_blocks|single_blocks|single_transformer_blocks|transformer_blocks|joint_blocks)[._]|^lora_unet_(double|single)_blocks_|^lora_transformer_/ },
  { family: 'text encoder', pattern: TEXT_ENCODER },
  { family: 'diffusion model', pattern: /(^|[._])diffusion_model[._]|^lora_unet_/ },
  { family: 'language model', pattern: /(^|[._])(layers|h|blocks)[._]\d+[._](self_attn|attn|attention|mlp|feed_forward)[._]|(^|[._])(lm_head|embed_tokens|wte)([._]|$)|^blk\.\d+\.(attn|ffn)_/ },
];

// A language model has a token embedding or an output head; a diffusion transformer named like one
// (Lumina 2's and Z-Image's `layers.N.attention`, PixArt's and Sana's `blocks.N.attn`) has neither,
// though the text encoder beside it in a pipeline or an all-in-one checkpoint may.
const TOKEN_TABLE = /(^|[._])(embed_tokens|wte|word_embeddings|tok_embeddings|embed_in|lm_head)[._]|^(token_embd|output)\.weight$/;

/** The family most names point at, or undefined when they say nothing clear. */
export function guessModelFamily(names: Iterable<string>): ModelFamily | undefined {
  const counts = new Map<ModelFamily, number>();
  let total = 0;
  for (const name of names) {
    total++;
    const rule = RULES.find((r) => r.pattern.test(name));
    if (rule) counts.set(rule.family, (counts.get(rule.family) ?? 0) + 1);
  }
  const [best] = [...counts].sort((a, b) => b[1] - a[1]);
  return best && best[1] * 2 >= total ? best[0] : undefined;
}

/** A UNet's or a diffusion transformer's tensor name. */
const DENOISER = RULES.filter((r) => r.family === 'diffusion UNet' || r.family === 'diffusion transformer');

/**
 * A base's family: as guessModelFamily, but a language model only with a token table or head, and
 * one whose language model is named `text_model.` (Idefics3, SmolVLM) beside an output head of its
 * own is no text encoder; nor is a pipeline or an all-in-one checkpoint that holds a UNet or a
 * diffusion transformer beside its text encoders, whatever their tensor counts (it is that
 * denoiser's model).
 */
export function guessBaseFamily(tensorNames: Iterable<string>): ModelFamily | undefined {
  const names = [...tensorNames];
  const family = guessModelFamily(names);
  if (family === 'text encoder' && names.some((n) => /(^|\.)lm_head\.weight$/.test(n) && !TEXT_ENCODER.test(n))) return 'language model';
  if (family === 'text encoder') {
    const denoiser = names.filter((n) => !TEXT_ENCODER.test(n) && DENOISER.some((r) => r.pattern.test(n)));
    if (denoiser.length > 0) return guessModelFamily(denoiser);
  }
  if (family === 'language model' && !names.some((n) => TOKEN_TABLE.test(n) && !TEXT_ENCODER.test(n))) return undefined;
  return family;
}

/** An adapter's and a base's families where they cannot be the same model. */
export interface FamilyMismatch {
  adapter: ModelFamily;
  base: ModelFamily;
}

/**
 * The two families when an adapter is for another kind of model than the base, else undefined.
 * Diffusion checkpoints carry their text encoders, so a text-encoder adapter fits them; "a
 * diffusion model" fits a UNet and a transformer alike.
 */
export function familyMismatch(adapterNames: Iterable<string>, baseNames: Iterable<string>): FamilyMismatch | undefined {
  const adapter = guessModelFamily(adapterNames);
  const base = guessBaseFamily(baseNames);
  if (!adapter || !base || adapter === base) return undefined;
  const diffusion = (f: ModelFamily) => f.startsWith('diffusion');
  if (diffusion(adapter) && diffusion(base) && (adapter === 'diffusion model' || base === 'diffusion model')) return undefined;
  if (adapter === 'text encoder' && base !== 'language model') return undefined;
  if (base === 'text encoder' && adapter !== 'language model') return undefined;
  return { adapter, base };
}
