/**
 * Whole tensors saved beside a PEFT method's own ones (in folders of LoHa, LoKr, VeRA, OFT, BOFT,
 * IA3), read by the rules LoRA folders follow (peft.ts): `modules_to_save` layers under their own
 * names or as `<module>.modules_to_save[.<adapter>].<param>`, the wrapped layer's own tensors
 * (`….base_layer.weight`, a method's `bias="all"`), other model parameters PEFT loads as they are;
 * `….original_module.…` copies are left out, as PEFT leaves them out when merging.
 */
import type { TensorReplacement } from './adapter.js';
import type { TensorEntry } from './safetensors-types.js';

const PEFT_PREFIX = 'base_model.model.';
const MODULES_TO_SAVE_KEY = /^(.+)\.modules_to_save\.(?:[^.]+\.)?([^.]+)$/;
const ORIGINAL_MODULE_KEY = /\.original_module\./;
const BASE_LAYER_KEY = /^(.+)\.base_layer\.(weight|bias)$/;
const PLAIN_PARAMETER_KEY = /^base_model\.model\..+\.(weight|bias)$/;

function stripPrefix(key: string): string {
  return key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key;
}

/** What a tensor that is not one of the method's own stands for: a replacement, a copy to leave out, or nothing known. */
export function savedTensor(adapter: string, entry: TensorEntry, modulesToSave: readonly string[]): TensorReplacement | 'left out' | null {
  const key = entry.name;
  const replacement = (target: string, origin: TensorReplacement['origin']): TensorReplacement => ({ adapter, key, tensor: entry, path: stripPrefix(target), origin });
  const saved = MODULES_TO_SAVE_KEY.exec(key);
  if (saved) return replacement(`${saved[1]}.${saved[2]}`, 'modules_to_save');
  if (ORIGINAL_MODULE_KEY.test(key)) return 'left out';
  const modulePath = stripPrefix(key.slice(0, Math.max(0, key.lastIndexOf('.'))));
  if (modulesToSave.some((m) => modulePath === m || modulePath.endsWith(`.${m}`))) return replacement(key, 'modules_to_save');
  const baseLayer = BASE_LAYER_KEY.exec(key);
  if (baseLayer) return replacement(`${baseLayer[1].replaceAll('.base_layer', '')}.${baseLayer[2]}`, 'base_layer');
  if (PLAIN_PARAMETER_KEY.test(key)) return replacement(key, 'saved');
  return null;
}
