/**
 * diffusers' `lora_adapter_metadata`: the LoraConfig of each component a LoRA file holds, as JSON
 * in the file's safetensors metadata (loaders/lora_base.py write_lora_layers). Keys carry the
 * component's name (`transformer.lora_alpha`, `text_encoder.alpha_pattern`); a file saved from one
 * model (save_lora_adapter) has them bare. It is where a diffusers LoRA keeps its α: the tensors
 * have no `.alpha`.
 */
import { MergeError } from '../errors.js';
import { checkJsonBounds } from './bounded-json.js';
import { lookupPattern, patternCovers, peftConfigFrom, type PeftLoraConfig } from './peft-config.js';

export const LORA_ADAPTER_METADATA = 'lora_adapter_metadata';

export interface ComponentAlpha {
  alpha: number;
  rsLora: boolean;
}

export class DiffusersLoraMetadata {
  private constructor(private readonly configs: ReadonlyMap<string, PeftLoraConfig>) {}

  /** The metadata of a file, or null when it has none. */
  static parse(fileName: string, metadata: Readonly<Record<string, string>>): DiffusersLoraMetadata | null {
    const text = metadata[LORA_ADAPTER_METADATA];
    if (text === undefined) return null;
    const where = `${fileName}: metadata "${LORA_ADAPTER_METADATA}"`;
    checkJsonBounds(text, where);
    let flat: unknown;
    try {
      flat = JSON.parse(text);
    } catch (e) {
      throw new MergeError('BAD_CONFIG', `${where} is not valid JSON (${(e as Error).message})`);
    }
    if (typeof flat !== 'object' || flat === null || Array.isArray(flat)) throw new MergeError('BAD_CONFIG', `${where} is not a JSON object`);
    // Split `component.field` keys per component; bare LoraConfig fields belong to every component ('').
    const groups = new Map<string, Record<string, unknown>>();
    for (const [key, value] of Object.entries(flat as Record<string, unknown>)) {
      const dot = key.lastIndexOf('.');
      const component = dot < 0 ? '' : key.slice(0, dot);
      const field = key.slice(dot + 1);
      if (!groups.has(component)) groups.set(component, {});
      groups.get(component)![field] = value;
    }
    const configs = new Map<string, PeftLoraConfig>();
    for (const [component, fields] of groups) {
      // Not through JSON text again: it would write 1e400, read as Infinity, as null (no α).
      configs.set(component, peftConfigFrom({ ...fields, peft_type: 'LORA' }, `${where}${component ? ` (${component})` : ''}`));
    }
    return new DiffusersLoraMetadata(configs);
  }

  /** `component`'s LoraConfig (PEFT's defaults for what it does not state); undefined when the metadata has none for it. */
  configFor(component: string): PeftLoraConfig | undefined {
    return this.configs.get(component) ?? this.configs.get('');
  }

  /**
   * Whether the metadata states `component`'s own LoraConfig (`text_encoder.r`, …), as diffusers'
   * text encoder loader reads it: it keeps only the fields named `<component>.`, not bare ones.
   */
  statesComponent(component: string): boolean {
    return component !== '' && this.configs.has(component);
  }

  /**
   * α for a module of `component` (`transformer`, `unet`, `text_encoder`…) at `path` inside it,
   * from lora_alpha and alpha_pattern; undefined when the metadata gives no α for it.
   */
  alphaFor(component: string, path: string): ComponentAlpha | undefined {
    const config = this.configs.get(component) ?? this.configs.get('');
    if (!config) return undefined;
    const patterned = patternCovers(config.alphaPattern, path);
    if (config.defaulted.includes('lora_alpha') && !patterned) return undefined;
    return { alpha: lookupPattern(config.alphaPattern, path, config.loraAlpha), rsLora: config.useRslora };
  }
}
