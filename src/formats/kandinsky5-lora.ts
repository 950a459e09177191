/**
 * kandinskylab's Kandinsky 5 LoRAs (`kandinskylab/Kandinsky-5.0-T2V-Lite-LoRa-…`): `lora.safetensors`
 * with PEFT lora_A / lora_B factors under the DiT's own module names (`visual_transformer_blocks.N.self_attention.to_query`,
 * `feed_forward.in_layer`, …), beside `config_lora.json`, a PEFT LoraConfig. Their pipelines'
 * `load_adapter` builds `LoraConfig(**json)` from that file, injects it into the DiT and loads the
 * factors with a `base_model.model.` or `transformer.` prefix and `.default` dropped: the config's r,
 * lora_alpha (and rank_pattern, alpha_pattern, use_rslora) set each module's scale, as in any PEFT
 * adapter. ComfyUI, given the file alone, applies the bare names at scale 1 (no alpha); the file read
 * alone here does the same, and read with its config_lora.json (its folder, or a lone file path with the
 * config beside it) follows kandinskylab's loader.
 */
import { LORA_ADAPTER_METADATA } from './diffusers-metadata.js';
import type { SafetensorsFile } from './safetensors-types.js';

/** The LoraConfig kandinskylab writes beside `lora.safetensors`. */
export const KANDINSKY5_LORA_CONFIG = 'config_lora.json';

/** A factor under the Kandinsky 5 DiT's names (the prefixes kandinskylab's load_adapter drops allowed). */
const FACTOR = /^(?:base_model\.model\.|transformer\.)?(?:(?:text|visual)_transformer_blocks\.\d+\.[a-z_.]+|(?:time|text|pooled_text|visual)_embeddings\.[a-z_.]+|out_layer\.[a-z_.]+)\.lora_[AB](?:\.default)?\.weight$/;
/** Only the Kandinsky 5 DiT has blocks of these names with these attentions. */
const BLOCK = /(?:text|visual)_transformer_blocks\.\d+\.(?:self_attention|cross_attention)\.(?:to_query|to_key|to_value|out_layer)\./;

/** Whether every tensor of the file is a PEFT factor of the Kandinsky 5 DiT, one of its attentions among them. */
export function looksLikeKandinsky5Lora(file: SafetensorsFile): boolean {
  return file.tensors.length > 0 && file.tensors.every((t) => FACTOR.test(t.name)) && file.tensors.some((t) => BLOCK.test(t.name));
}

/**
 * A Kandinsky 5 LoRA in kandinskylab's form (bare DiT names, no diffusers metadata) read without its
 * config_lora.json: its scale is unknown here, so it is merged at ComfyUI's, with a warning.
 */
export function isBareKandinsky5Lora(file: SafetensorsFile): boolean {
  return looksLikeKandinsky5Lora(file) && !(LORA_ADAPTER_METADATA in file.metadata) && file.tensors.every((t) => !/^(base_model\.model|transformer)\./.test(t.name));
}

/** The warning for {@link isBareKandinsky5Lora}. */
export function kandinsky5WithoutConfig(name: string): string {
  return `${name}: a Kandinsky 5 LoRA in kandinskylab's form without the ${KANDINSKY5_LORA_CONFIG} published beside it: merged at scale 1, as ComfyUI applies it; kandinskylab's load_adapter applies that config's lora_alpha / r, so if it came with one, give its folder (or this file with the config beside it)`;
}
