/**
 * Finds the base tensor a module path means, among a set of base keys (a whole base, or one of its
 * components). Checkpoints and adapters rarely agree on prefixes (GPT-2 files drop `transformer.`,
 * SD checkpoints add `model.diffusion_model.`), so besides exact keys we accept a unique suffix
 * match on a name boundary, and report ambiguity instead of guessing.
 */
export type KeyResolution =
  | { found: true; key: string }
  /** `why`: what the base lacks, when a layout knows (a GGUF has no vision tower); else a plain miss. */
  | { found: false; ambiguous: boolean; candidates: string[]; why?: string };

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
   * A module name with its dots flattened (`down_blocks_0_attentions_0_proj_in`) and the parameter
   * wanted (`weight`): the one base key whose flattened module ends with it on a `_` boundary.
   */
  resolveFlat(flatName: string, param = 'weight'): KeyResolution {
    return unique(this.flatSuffixes.get(param)?.get(flatName) ?? []);
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
