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
  /**
   * The last one, two and three dot-separated parts of every key → the keys that end with them. A
   * longer name is looked up by its last three parts and checked against each candidate: indexing
   * every suffix of every key cost about 850 bytes a key (163 MiB for 200 000 expert weights),
   * these buckets are shared by the keys that end alike.
   */
  private readonly dotTails = new Map<string, string[]>();
  /** The same for `<module>.<param>` keys: `<param>` NUL the last one to three parts of the module split at `.` or `_`, flattened to `_`. */
  private readonly flatTails = new Map<string, string[]>();

  /**
   * `prefix`: the keys' common prefix when they are one component of a pipeline (`transformer.`): a
   * name is that component's own first (`proj_out.weight` is `transformer.proj_out.weight`, not
   * every `….proj_out.weight` of its blocks).
   */
  constructor(keys: Iterable<string>, private readonly prefix = '') {
    this.keys = new Set(keys);
    for (const key of this.keys) {
      forEachTail(key, isDot, (tail) => push(this.dotTails, tail, key));
      const dot = key.lastIndexOf('.');
      if (dot <= 0) continue;
      const param = key.slice(dot + 1);
      forEachTail(key.slice(0, dot), isDotOrUnderscore, (tail) => push(this.flatTails, `${param}\0${tail.replaceAll('.', '_')}`, key));
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
    if (this.prefix !== '' && this.keys.has(this.prefix + name)) return { found: true, key: this.prefix + name };
    const candidates = new Set(endingWith(this.dotTails, '', name, isDot, (key) => key, '.'));
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
    const flatModule = (key: string) => key.slice(0, key.lastIndexOf('.')).replaceAll('.', '_');
    return unique(endingWith(this.flatTails, `${param}\0`, flatName, isUnderscore, flatModule, '_'));
  }
}

const TAIL_PARTS = 3;
const isDot = (c: number) => c === 0x2e;
const isUnderscore = (c: number) => c === 0x5f;
const isDotOrUnderscore = (c: number) => c === 0x2e || c === 0x5f;

/** Calls `fn` with the tails of `s` after its last one, two and three separators, and `s` itself when it has fewer (empty tails skipped). */
function forEachTail(s: string, isSep: (c: number) => boolean, fn: (tail: string) => void): void {
  let parts = 0;
  for (let i = s.length - 1; i >= 0 && parts < TAIL_PARTS; i--) {
    if (!isSep(s.charCodeAt(i))) continue;
    if (i + 1 < s.length) fn(s.slice(i + 1));
    parts++;
  }
  if (parts < TAIL_PARTS) fn(s);
}

/**
 * The keys whose `form` ends with `name` on a `sep` boundary (or equals it), from the bucket of
 * `name`'s last parts: `name` itself when it has at most three, else its last three, checked.
 */
function endingWith(
  tails: ReadonlyMap<string, string[]>, prefix: string, name: string, isSep: (c: number) => boolean, form: (key: string) => string, sep: string,
): string[] {
  let last = '';
  forEachTail(name, isSep, (tail) => (last = tail));
  const bucket = tails.get(prefix + last) ?? [];
  if (last === name) return bucket;
  return bucket.filter((key) => {
    const f = form(key);
    return f === name || (f.endsWith(name) && f[f.length - name.length - 1] === sep);
  });
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
