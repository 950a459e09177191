/**
 * The checkpoint key conversions transformers applies when it loads a vision-language model
 * (each model class's `_checkpoint_conversion_mapping`, transformers 4.52 and later): checkpoints
 * saved before its VLM refactor name the language model `model.layers…` (Qwen2-VL) or
 * `language_model.model.layers…` (LLaVA family), the refactored module tree names it
 * `model.language_model.layers…`. PEFT applies the same conversion to an adapter's keys when it
 * loads one, so adapters exist in both forms too. For each key the first pattern that matches
 * rewrites it; keys already in the new form match none.
 */

/** One rewrite: a key matching `pattern` (anchored) has the match replaced by `replacement`. */
export type KeyRule = readonly [pattern: RegExp, replacement: string];

export interface CheckpointKeyMap {
  /** For messages: `Qwen2-VL`. */
  readonly family: string;
  readonly rules: readonly KeyRule[];
}

const QWEN2_VL: CheckpointKeyMap = {
  family: 'Qwen2-VL',
  rules: [
    [/^visual/, 'model.visual'],
    [/^model(?!\.(language_model|visual))/, 'model.language_model'],
  ],
};

/** LlavaForConditionalGeneration and the models that copy its mapping. */
function llavaLike(family: string, extra: readonly KeyRule[] = [], tower = 'vision_tower'): CheckpointKeyMap {
  return {
    family,
    rules: [
      [/^language_model.model/, 'model.language_model'],
      [new RegExp(`^${tower}`), `model.${tower}`],
      [/^multi_modal_projector/, 'model.multi_modal_projector'],
      ...extra,
      [/^language_model.lm_head/, 'lm_head'],
    ],
  };
}

const IMAGE_NEWLINE: KeyRule = [/^image_newline/, 'model.image_newline'];
const VISION_RESAMPLER: KeyRule = [/^vision_resampler/, 'model.vision_resampler'];

/** By config.json `architectures`. */
const BY_ARCHITECTURE: Readonly<Record<string, CheckpointKeyMap>> = {
  Qwen2VLForConditionalGeneration: QWEN2_VL,
  Qwen2_5_VLForConditionalGeneration: { ...QWEN2_VL, family: 'Qwen2.5-VL' },
  LlavaForConditionalGeneration: llavaLike('LLaVA'),
  VipLlavaForConditionalGeneration: llavaLike('VipLLaVA'),
  LlavaNextForConditionalGeneration: llavaLike('LLaVA-NeXT', [IMAGE_NEWLINE]),
  LlavaNextVideoForConditionalGeneration: llavaLike('LLaVA-NeXT-Video', [IMAGE_NEWLINE, VISION_RESAMPLER]),
  LlavaOnevisionForConditionalGeneration: llavaLike('LLaVA-OneVision', [IMAGE_NEWLINE, VISION_RESAMPLER]),
  Mistral3ForConditionalGeneration: llavaLike('Mistral 3'),
  Gemma3ForConditionalGeneration: llavaLike('Gemma 3'),
  PaliGemmaForConditionalGeneration: llavaLike('PaliGemma'),
  MllamaForConditionalGeneration: llavaLike('Mllama', [], 'vision_model'),
  FuyuForCausalLM: {
    family: 'Fuyu',
    rules: [
      [/^language_model.model/, 'model.language_model'],
      [/^vision_embed_tokens/, 'model.vision_embed_tokens'],
      [/^language_model.lm_head/, 'lm_head'],
    ],
  },
};

/** The key map of the first architecture that has one, if any. */
export function checkpointKeyMap(architectures: readonly string[]): CheckpointKeyMap | undefined {
  for (const a of architectures) {
    const map = BY_ARCHITECTURE[a];
    if (map) return map;
  }
  return undefined;
}

/** A key (or module path) in the refactored module tree's naming: the first matching rule rewrites it. */
export function convertCheckpointKey(key: string, map: CheckpointKeyMap): string {
  for (const [pattern, replacement] of map.rules) {
    if (pattern.test(key)) return key.replace(pattern, () => replacement);
  }
  return key;
}
