/**
 * Finds the base tensor an adapter module means. Checkpoints and adapters rarely agree on prefixes
 * (GPT-2 files drop `transformer.`, SD checkpoints add `model.diffusion_model.`), so besides exact
 * keys we accept a unique suffix match on a name boundary, and report ambiguity instead of guessing.
 */
import type { KohyaPart } from '../formats/adapter.js';

export type KeyResolution =
  | { found: true; key: string }
  | { found: false; ambiguous: boolean; candidates: string[] };

/** Which base-key prefixes belong to which kohya model part, to break ties between parts. */
const PART_HINTS: Record<KohyaPart, RegExp> = {
  unet: /(^|_)(unet|diffusion_model)(_|$)/,
  te: /(^|_)(text_encoder|cond_stage_model|embedders_0|te|te1|clip_l)(_|$)/,
  te1: /(^|_)(text_encoder|cond_stage_model|embedders_0|te1|clip_l)(_|$)/,
  te2: /(^|_)(text_encoder_2|embedders_1|te2|clip_g)(_|$)/,
  te3: /(^|_)(text_encoder_3|te3|t5xxl)(_|$)/,
};

export class BaseKeyIndex {
  private readonly keys: ReadonlySet<string>;
  /** Every dot-boundary suffix of every key (the key itself included) → the keys that end with it. */
  private readonly dotSuffixes = new Map<string, string[]>();
  /** For `<module>.<param>` keys, `<param>` → underscore-boundary suffixes of the flattened module → keys. */
  private readonly flatSuffixes = new Map<string, Map<string, string[]>>();

  constructor(keys: Iterable<string>) {
    this.keys = new Set(keys);
    for (const key of this.keys) {
      forEachSuffix(key, '.', (suffix) => push(this.dotSuffixes, suffix, key));
      const dot = key.lastIndexOf('.');
      if (dot <= 0) continue;
      const param = key.slice(dot + 1);
      const flat = key.slice(0, dot).replaceAll('.', '_');
      let byParam = this.flatSuffixes.get(param);
      if (!byParam) this.flatSuffixes.set(param, (byParam = new Map()));
      forEachSuffix(flat, '_', (suffix) => push(byParam, suffix, key));
    }
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  /**
   * A full tensor name as an adapter spells it (`transformer.h.0.attn.c_attn.weight`): the key
   * itself, else the one base key that ends with it, or that it ends with, on a `.` boundary.
   */
  resolveDotted(name: string): KeyResolution {
    if (this.keys.has(name)) return { found: true, key: name };
    const candidates = new Set(this.dotSuffixes.get(name) ?? []);
    forEachSuffix(name, '.', (suffix) => {
      if (suffix !== name && this.keys.has(suffix)) candidates.add(suffix);
    });
    return unique([...candidates]);
  }

  /**
   * A kohya module name with its dots flattened (`down_blocks_0_attentions_0_proj_in`) and the
   * parameter wanted (`weight`): the one base key whose flattened module ends with it on a `_`
   * boundary; several → those under the part's usual prefix.
   */
  resolveFlat(flatName: string, part: KohyaPart, param = 'weight'): KeyResolution {
    const candidates = this.flatSuffixes.get(param)?.get(flatName) ?? [];
    if (candidates.length <= 1) return unique(candidates);
    const hint = PART_HINTS[part];
    const inPart = candidates.filter((key) => {
      const flat = key.slice(0, key.lastIndexOf('.')).replaceAll('.', '_');
      return hint.test(flat.slice(0, flat.length - flatName.length));
    });
    return inPart.length === 1 ? unique(inPart) : unique(candidates);
  }
}

function unique(candidates: string[]): KeyResolution {
  if (candidates.length === 1) return { found: true, key: candidates[0] };
  return { found: false, ambiguous: candidates.length > 1, candidates: candidates.sort() };
}

/** Calls `fn` with `s` and each tail of `s` that starts right after a `sep`. */
function forEachSuffix(s: string, sep: string, fn: (suffix: string) => void): void {
  fn(s);
  for (let i = s.indexOf(sep); i >= 0; i = s.indexOf(sep, i + 1)) {
    if (i + 1 < s.length) fn(s.slice(i + 1));
  }
}

function push(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
