/**
 * Layout: a Qwen2-VL, Qwen2.5-VL or Qwen3-VL checkpoint as mlx-vlm converts it (mlx-community's
 * `Qwen2.5-VL-7B-Instruct-4bit`, `Qwen3-VL-2B-Instruct-bf16`, …), with a PEFT LoRA trained on
 * transformers' model. mlx-vlm's sanitize() renames these families' keys when it converts them:
 * the language model `model.…` (Qwen2-VL's names before transformers 4.52) or
 * `model.language_model.…` becomes `language_model.model.…`, the vision tower `visual.…` or
 * `model.visual.…` becomes `vision_tower.…`, and `lm_head` becomes `language_model.lm_head`.
 * The module path is renamed the same way and looked up by name. Other mlx-vlm conversions keep
 * transformers' names before 4.52 (`language_model.model.…`, `vision_tower.…`,
 * `multi_modal_projector.…` in LLaVA, Gemma 3, Mistral 3), which vlm-checkpoint.ts matches.
 */
import { wholeTensor, type Layout } from './layout.js';

/** config.json `architectures` of the families whose tower mlx-vlm renames `vision_tower`. */
const QWEN_VL = /^Qwen(2VL|2_5_VL|3VL|3VLMoe)For/;

/** mlx-vlm's renames, the first whose pattern matches. */
const RULES: readonly (readonly [RegExp, string])[] = [
  [/^model\.language_model\./, 'language_model.model.'],
  [/^model\.visual\./, 'vision_tower.'],
  [/^visual\./, 'vision_tower.'],
  [/^model\./, 'language_model.model.'],
  [/^lm_head$/, 'language_model.lm_head'],
];

/** Finds a transformers-named module of a Qwen-VL base under the name mlx-vlm's sanitize() gave it. */
export const mlxVlmQwen: Layout = {
  name: 'mlx-vlm-qwen',
  resolve(address, base) {
    if (address.flat || !base.architectures.some((a) => QWEN_VL.test(a))) return undefined;
    const rule = RULES.find(([pattern]) => pattern.test(address.path));
    if (!rule) return undefined;
    const renamed = address.path.replace(rule[0], rule[1]);
    // Only a base in mlx-vlm's names: its own key, not a suffix of another naming.
    const key = address.tensor ? renamed : `${renamed}.weight`;
    return base.index.has(key) ? wholeTensor({ found: true, key }) : undefined;
  },
};
