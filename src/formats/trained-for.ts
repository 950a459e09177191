/**
 * The base an adapter says it was trained on, from its own files: what `inspect` shows and what a
 * refusal of the wrong base names, so the user knows which model to pick.
 */
import type { ParsedAdapter } from './adapter.js';

/** Metadata keys that name the base an adapter was trained on, by format, in the order shown. */
const TRAINED_FOR_KEYS: Readonly<Record<string, readonly string[]>> = {
  peft: ['base_model_name_or_path'],
  mlx: ['model'],
  gguf: ['general.architecture'],
  single: ['modelspec.architecture', 'ss_base_model_version', 'ss_sd_model_name'],
};

/**
 * The base the adapter says it was trained on, each value with the key it comes from (PEFT's
 * base_model_name_or_path, kohya's ss_base_model_version and ss_sd_model_name, the model spec's
 * architecture, a LoRA GGUF's general.architecture): what to pick as --base. Undefined when the
 * file says nothing.
 */
export function trainedFor(adapter: Pick<ParsedAdapter, 'format' | 'config' | 'file'>): string | undefined {
  const own = TRAINED_FOR_KEYS[adapter.format] ?? TRAINED_FOR_KEYS.single;
  const values: Record<string, unknown> = { ...adapter.config };
  // A single file's model spec is in its safetensors metadata beside kohya's ss_* keys.
  if (!(adapter.format in TRAINED_FOR_KEYS)) Object.assign(values, adapter.file.metadata);
  const said = own.flatMap((key) => {
    const value = values[key];
    if (typeof value !== 'string' || value.trim() === '' || value === 'None') return [];
    // On one line: the value ends up inside an error line and an inspect line.
    const oneLine = value.replace(/\s+/g, ' ').trim();
    const shown = oneLine.length > 120 ? `${oneLine.slice(0, 117)}...` : oneLine;
    return [`${shown} (${key})`];
  });
  return said.length ? said.join(', ') : undefined;
}
