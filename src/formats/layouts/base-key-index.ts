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
  /** Every key by its dot-separated parts, last part first (TailTrie). */
  private readonly dotted = new TailTrie('.');
  /** `<module>.<param>` keys by their module's parts split at `.` or `_`, flattened to `_`, one trie per `<param>`. */
  private readonly flat = new Map<string, TailTrie>();

  /**
   * `prefix`: the keys' common prefix when they are one component of a pipeline (`transformer.`): a
   * name is that component's own first (`proj_out.weight` is `transformer.proj_out.weight`, not
   * every `….proj_out.weight` of its blocks).
   */
  constructor(keys: Iterable<string>, private readonly prefix = '') {
    this.keys = new Set(keys);
    for (const key of this.keys) {
      this.dotted.add(key, key);
      const dot = key.lastIndexOf('.');
      if (dot <= 0) continue;
      const param = key.slice(dot + 1);
      let trie = this.flat.get(param);
      if (!trie) this.flat.set(param, (trie = new TailTrie('_')));
      trie.add(key, key.slice(0, dot).replaceAll('.', '_'));
    }
  }

  /** Candidate keys compared by their text in lookups so far: what a test of the lookups' growth counts. */
  get comparisons(): number {
    let n = this.dotted.comparisons;
    for (const trie of this.flat.values()) n += trie.comparisons;
    return n;
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
    const { ending, endedBy } = this.dotted.lookup(name);
    return unique([...new Set([...ending, ...endedBy.filter((k) => k !== '')])]);
  }

  /**
   * A module name with its dots flattened (`down_blocks_0_attentions_0_proj_in`) and the parameter
   * wanted (`weight`): the one base key whose flattened module ends with it on a `_` boundary.
   */
  resolveFlat(flatName: string, param = 'weight'): KeyResolution {
    return unique(this.flat.get(param)?.lookup(flatName).ending ?? []);
  }
}

function unique(candidates: string[]): KeyResolution {
  if (candidates.length === 1) return { found: true, key: candidates[0] };
  return { found: false, ambiguous: candidates.length > 1, candidates: candidates.sort() };
}

/** Keys held unsplit in one node of a TailTrie before they are spread over its children by their next part. */
const BURST = 16;

/** A key, the text it is matched by (`form`), and where the parts not yet walked end in it (-1: none left). */
interface Pending { key: string; form: string; end: number }

interface TrieNode {
  /** Keys whose form has exactly the parts on the way here. */
  exact?: string[];
  /** Keys with more parts, held unsplit while few (BURST); undefined once `children` holds them. */
  pending?: Pending[];
  /** By the next part: a node, or the one key that has that part (most keys end alone, so no node is made for them). */
  children?: Map<string, TrieNode | Pending>;
}

const isPending = (slot: TrieNode | Pending): slot is Pending => 'key' in slot;

/**
 * Keys by the parts of their form (split at `sep`), last part first, for the two questions a
 * name asks of them: which forms end with it on a part boundary, and which end it. A node holds
 * its keys in a plain list until more than BURST have its parts so far, then spreads them over
 * children by their next part: a name is then answered in work that grows with its own length
 * and the keys it names, not with every key sharing its last parts (the last-three-parts buckets
 * before this were read in full for a longer name: a prefixed adapter of 20 000 modules on a base
 * of 20 000 layers was 20 000² comparisons).
 */
class TailTrie {
  private readonly root: TrieNode = {};
  comparisons = 0;

  constructor(private readonly sep: string) {}

  add(key: string, form: string): void {
    this.place(this.root, { key, form, end: form.length });
  }

  /**
   * `ending`: the keys whose form is `name` or ends with `sep` + `name`; `endedBy`: those whose
   * form `name` ends with after a `sep` (shorter, by whole parts).
   */
  lookup(name: string): { ending: string[]; endedBy: string[] } {
    const ending: string[] = [], endedBy: string[] = [];
    // Keys met alone are compared whole.
    const compare = (p: Pending) => {
      this.comparisons++;
      if (this.endsOnPart(p.form, name)) ending.push(p.key);
      else if (this.endsOnPart(name, p.form)) endedBy.push(p.key);
    };
    let node = this.root;
    let end = name.length;
    for (;;) {
      if (end < 0) {
        for (const k of subtree(node)) ending.push(k);
        return { ending, endedBy };
      }
      if (node.exact) for (const k of node.exact) endedBy.push(k);
      if (!node.children) {
        if (node.pending) for (const p of node.pending) compare(p);
        return { ending, endedBy };
      }
      const [part, next] = nextPart(name, end, this.sep);
      const slot = node.children.get(part);
      if (slot === undefined) return { ending, endedBy };
      if (isPending(slot)) {
        compare(slot);
        return { ending, endedBy };
      }
      node = slot;
      end = next;
    }
  }

  /** Whether `s` is `tail` or ends with `sep` + `tail`. */
  private endsOnPart(s: string, tail: string): boolean {
    return s.endsWith(tail) && (s.length === tail.length || s[s.length - tail.length - 1] === this.sep);
  }

  private place(node: TrieNode, p: Pending): void {
    for (;;) {
      if (p.end < 0) {
        (node.exact ??= []).push(p.key);
        return;
      }
      if (!node.children) {
        const pending = (node.pending ??= []);
        pending.push(p);
        if (pending.length <= BURST) return;
        node.pending = undefined;
        node.children = new Map();
        for (const q of pending) this.place(node, q);
        return;
      }
      const [part, next] = nextPart(p.form, p.end, this.sep);
      p.end = next;
      const slot = node.children.get(part);
      if (slot === undefined) {
        node.children.set(part, p);
        return;
      }
      if (isPending(slot)) {
        // A second key with this part: the one held alone moves into a node of its own.
        const child: TrieNode = {};
        node.children.set(part, child);
        this.place(child, slot);
        node = child;
      } else {
        node = slot;
      }
    }
  }
}

/** The part of `s` that ends at `end` (after the `sep` before it, if any), and where the part before it ends (-1: none). */
function nextPart(s: string, end: number, sep: string): [string, number] {
  // lastIndexOf clamps a negative start to 0, so an empty first part is read here, not there.
  const at = end === 0 ? -1 : s.lastIndexOf(sep, end - 1);
  return [s.slice(at + 1, end), at];
}

/** Every key at or under `node`. */
function subtree(node: TrieNode): string[] {
  const out: string[] = [];
  const stack = [node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    // Loops, not spread arguments: a node may hold more keys than a call takes arguments.
    if (n.exact) for (const k of n.exact) out.push(k);
    if (n.pending) for (const p of n.pending) out.push(p.key);
    if (n.children) {
      for (const c of n.children.values()) {
        if (isPending(c)) out.push(c.key);
        else stack.push(c);
      }
    }
  }
  return out;
}
