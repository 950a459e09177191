/**
 * What kind of model a base or an adapter is for, from tensor and module names alone: used to say
 * "this is a Stable Diffusion LoRA, the base is a language model" instead of listing hundreds of
 * unmatched modules. A guess that only words an error better; it never decides what is merged.
 */

/** The model families the names tell apart. */
export type ModelFamily = 'language model' | 'diffusion UNet' | 'diffusion transformer' | 'text encoder';

// `diffusion_model.` tells nothing: SGM's UNet checkpoints and ComfyUI's names of any diffusion
// model (Flux's `diffusion_model.double_blocks.…`, BFL's control LoRAs) share it.
const RULES: { family: ModelFamily; pattern: RegExp }[] = [
  { family: 'diffusion UNet', pattern: /(^|[._])(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)[._]|^lora_unet_(down|up|mid|input|output|middle)_/ },
  { family: 'diffusion transformer', pattern: /(^|[._])(double_blocks|single_blocks|single_transformer_blocks|transformer_blocks|joint_blocks)[._]|^lora_unet_(double|single)_blocks_|^lora_transformer_/ },
  { family: 'text encoder', pattern: /(^|[._])text_model[._]|^lora_te\d?_|(^|[._])(text_encoder(_\d)?|conditioner|cond_stage_model)[._]/ },
  { family: 'language model', pattern: /(^|[._])(layers|h|blocks)[._]\d+[._](self_attn|attn|attention|mlp|feed_forward)[._]|(^|[._])(lm_head|embed_tokens|wte)([._]|$)/ },
];

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

/**
 * A one-line explanation when an adapter is for another kind of model than the base, else
 * undefined. Diffusion checkpoints carry their text encoders, so a text-encoder adapter fits them.
 */
export function familyMismatch(adapter: string, adapterNames: Iterable<string>, baseNames: Iterable<string>): string | undefined {
  const mine = guessModelFamily(adapterNames);
  const base = guessModelFamily(baseNames);
  if (!mine || !base || mine === base) return undefined;
  if (mine === 'text encoder' && base !== 'language model') return undefined;
  if (base === 'text encoder' && mine !== 'language model') return undefined;
  return `${adapter}: this adapter is for a ${mine}, but the base is a ${base}; pick the base it was trained on`;
}
