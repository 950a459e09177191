/**
 * Layout that only refuses: an adapter trained on Gemma 4's multimodal class (Gemma4ForConditionalGeneration
 * or its Unified twin: `model.language_model.…`, `model.vision_tower.…`, `model.audio_tower.…`,
 * `model.embed_vision.…`, `model.embed_audio.…`) on a text-only Gemma 4 checkpoint (Gemma4ForCausalLM,
 * Gemma4UnifiedForCausalLM: `model.layers.N…`, `model.embed_tokens`, `lm_head`). PEFT cannot load such
 * an adapter there: `PeftModel.from_pretrained` renames adapter keys only by the class's
 * `_checkpoint_conversion_mapping`, which the text classes do not set, and transformers'
 * conversion_mapping.py has no Gemma 4 entry, so every key stays unloaded ("unexpected keys"). Each
 * module is refused saying so, the towers' saying the text-only checkpoint has none.
 */
import type { Layout } from './layout.js';

const TEXT_ONLY = ['Gemma4ForCausalLM', 'Gemma4UnifiedForCausalLM'];
const MULTIMODAL_PART = /^model\.(language_model|vision_tower|audio_tower|embed_vision|embed_audio)(\.|$)/;

export const gemma4TextCheckpoint: Layout = {
  name: 'gemma4-text-checkpoint',
  resolve(address, base) {
    if (address.flat || !base.architectures.some((a) => TEXT_ONLY.includes(a))) return undefined;
    const part = MULTIMODAL_PART.exec(address.path)?.[1];
    if (!part) return undefined;
    const why = part === 'language_model'
      ? `a module of Gemma 4's multimodal class (model.language_model.…) on a text-only ${base.architectures.find((a) => TEXT_ONLY.includes(a))} checkpoint (model.layers.N…), where PEFT cannot load it (the class has no _checkpoint_conversion_mapping and transformers' conversion_mapping.py no Gemma 4 entry, so the key stays unloaded): merge it into the multimodal checkpoint`
      : `Gemma 4's model.${part} is no part of a text-only ${base.architectures.find((a) => TEXT_ONLY.includes(a))} checkpoint, which holds the language model alone: merge it into the multimodal checkpoint`;
    return { found: false, ambiguous: false, candidates: [], why };
  },
};
