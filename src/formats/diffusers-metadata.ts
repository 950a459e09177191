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
import { peftTargetsFrom, type PeftTargets } from './peft-targets.js';

export const LORA_ADAPTER_METADATA = 'lora_adapter_metadata';

export interface ComponentAlpha {
  /** lora_alpha, or the alpha_pattern entry that covers the module. */
  alpha: number;
  /** use_rslora: α/√r in place of α/r. */
  rsLora: boolean;
}

/**
 * The components diffusers loads through _load_lora_into_text_encoder (loaders/lora_base.py):
 * transformers' load_adapter injects the LoraConfig without the state dict, so PEFT puts layers
 * only on the modules target_modules / exclude_modules admit, and the file's other tensors are
 * unexpected keys it warns of and leaves unused. Every other component (transformer, unet,
 * text_conditioner …) goes through load_lora_adapter, which since diffusers 0.35 (PR #11999, with
 * PEFT 0.17's state_dict argument) hands PEFT the state dict, and PEFT then puts a layer on every
 * module the file holds, whatever target_modules says (it only warns of the difference). diffusers
 * 0.34, the first to read this metadata, targeted by target_modules alone; the metadata records no
 * diffusers version (only PEFT's, as peft_version, from PEFT 0.18), so the rule of 0.35 and later,
 * every release since, is the one followed.
 */
const TEXT_ENCODER_COMPONENT = /^text_encoder(?:_\d+)?$/;

export class DiffusersLoraMetadata {
  private readonly targets = new Map<string, PeftTargets>();

  private constructor(
    private readonly configs: ReadonlyMap<string, PeftLoraConfig>,
    private readonly fields: ReadonlyMap<string, Readonly<Record<string, unknown>>>,
    private readonly where: string,
  ) {}

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
    return new DiffusersLoraMetadata(configs, groups, where);
  }

  /**
   * Why diffusers leaves module `path` of `component` without a LoRA layer (its tensors unused), or
   * undefined when it loads it: only a text encoder whose own LoraConfig the metadata states
   * (`text_encoder.target_modules` …) is matched against target_modules / exclude_modules, as
   * PEFT's check_target_module_exists does for a PEFT folder (see TEXT_ENCODER_COMPONENT).
   */
  untargeted(component: string, path: string): string | undefined {
    if (!TEXT_ENCODER_COMPONENT.test(component) || !this.statesComponent(component)) return undefined;
    let targets = this.targets.get(component);
    if (!targets) this.targets.set(component, (targets = peftTargetsFrom(this.fields.get(component)!, `${this.where} (${component})`, 'LORA')));
    return targets.untargeted(path);
  }

  /** `component`'s LoraConfig (PEFT's defaults for what it does not state); undefined when the metadata has none for it. */
  configFor(component: string): PeftLoraConfig | undefined {
    return this.configs.get(component) ?? this.configs.get('');
  }

  /**
   * The rank PEFT builds module `path` of `component` at, from the component's own r and
   * rank_pattern, with where it comes from; undefined when the metadata does not state the
   * component's LoraConfig. diffusers hands that LoraConfig to PEFT as it stands, so factors of
   * another rank fail to load (size mismatch).
   */
  rankFor(component: string, path: string): { rank: number; from: string } | undefined {
    if (!this.statesComponent(component)) return undefined;
    const config = this.configs.get(component)!;
    const from = patternCovers(config.rankPattern, path) ? `${component}.rank_pattern` : config.defaulted.includes('r') ? `PEFT's default r, as ${component}.r is not stated` : `${component}.r`;
    return { rank: lookupPattern(config.rankPattern, path, config.r), from };
  }

  /**
   * Whether the metadata states target_modules (or target_parameters) in `component`'s own
   * LoraConfig: without either, PEFT fills target_modules from its table of model types, which has
   * no CLIP text encoder, and refuses to build the adapter.
   */
  statesTargets(component: string): boolean {
    const fields = this.statesComponent(component) ? this.fields.get(component)! : undefined;
    return fields !== undefined && ['target_modules', 'target_parameters'].some((f) => fields[f] !== undefined && fields[f] !== null);
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
