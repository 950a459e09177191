/**
 * PEFT's `modules_to_save`: whole layers trained beside the adapter and saved in its file, either
 * under their own names (`base_model.model.score.weight`, what get_peft_model_state_dict writes)
 * or, in older saves, as `<module>.modules_to_save[.<adapter>].<param>`. Either way the tensor
 * replaces the base tensor of that path, whatever the PEFT method.
 */
import type { TensorReplacement } from './adapter.js';
import type { TensorEntry } from './safetensors-types.js';

const PEFT_PREFIX = 'base_model.model.';
const MODULES_TO_SAVE_KEY = /^(.+)\.modules_to_save\.(?:[^.]+\.)?([^.]+)$/;

function stripPrefix(key: string): string {
  return key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key;
}

/** The replacement a tensor of the adapter file stands for, or null when it is not a saved module's. */
export function savedModuleReplacement(adapter: string, entry: TensorEntry, modulesToSave: readonly string[]): TensorReplacement | null {
  const key = entry.name;
  const saved = MODULES_TO_SAVE_KEY.exec(key);
  if (saved) return { adapter, key, tensor: entry, path: stripPrefix(`${saved[1]}.${saved[2]}`) };
  const modulePath = stripPrefix(key.slice(0, Math.max(0, key.lastIndexOf('.'))));
  if (modulesToSave.some((m) => modulePath === m || modulePath.endsWith(`.${m}`))) return { adapter, key, tensor: entry, path: stripPrefix(key) };
  return null;
}
