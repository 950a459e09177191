/**
 * PEFT's `rank_pattern` / `alpha_pattern` keys, matched as PEFT does — key k matches module m when
 * `re.match(rf"(.*\.)?({k})$", m)`; among a table's keys the first that matches (in the file's order)
 * gives the value, and with none PEFT looks m itself up in the table (`get_pattern_key` returns m) —
 * but never with a backtracking engine: adapter configs come from the internet, and `((.*)*)*z`
 * would run a backtracking matcher (Python's or JavaScript's) for ever. Regex keys are matched by
 * RE2JS, a port of RE2 whose matching time is linear in the name's length for every pattern. RE2
 * refuses what has no linear-time match (backreferences, lookaround); such a key is refused with a
 * clear error instead of being guessed at.
 *
 * Most keys are module names (`model.layers.0.self_attn.q_proj`): letters, digits, `_` and `.`, where
 * `.` is still the regex's any-character. A table looks those up by hash, not by trying each: the
 * keys are grouped by length and by where their dots are, and each suffix of a module name that
 * starts the name or follows a `.` is probed once a group of its length, with the group's dot
 * positions set to `.` (see {@link firstMatch}). A name has few such suffixes and a real table few
 * groups, so a lookup is O(name parts), not O(keys); only regex keys are tried one by one.
 *
 * The work of all lookups against one config is bounded too (probes and regex matches), so a
 * config built to defeat the grouping cannot stall the plan.
 */
import { RE2JS } from 're2js';
import { MergeError } from '../errors.js';
import { MAX_PATTERN_LENGTH, MAX_PATTERN_MATCHES, MAX_PATTERNS } from '../limits.js';

export interface ModulePattern {
  /** The key as written in the config. */
  readonly source: string;
}

/** Shared by the patterns of one config: counts matches against MAX_PATTERN_MATCHES. */
export interface MatchBudget {
  file: string;
  used: number;
}

const DOTTED_NAME = /^[A-Za-z0-9_.]+$/;
/** A regex match costs about a hundred direct name comparisons (a few µs against ~50 ns). */
export const REGEX_MATCH_COST = 100;
/**
 * Compiling a regex (RE2JS) costs about 0.6 ms and 1.5 µs more a character of its source, and
 * keeps 20-80 KB: counted as this many name comparisons, and {@link REGEX_COMPILE_COST_PER_CHAR}
 * more a character. 20,000 keys of 928 characters took 40 s and 1.7 GB before this was counted.
 */
export const REGEX_COMPILE_COST = 10_000;
/** What each character of a regex's source adds to {@link REGEX_COMPILE_COST}. */
export const REGEX_COMPILE_COST_PER_CHAR = 25;

/** Whether a rank_pattern / alpha_pattern key is compiled as a regex (else it is matched as a dotted name, compiling nothing). */
export function patternKeyIsRegex(key: string): boolean {
  return key === '' || !DOTTED_NAME.test(key);
}

/**
 * Counts compiling `sources` as regexes against MAX_PATTERN_MATCHES before any is compiled: `used`
 * is the work counted so far, and the sum is returned. Past the limit it throws LIMIT_EXCEEDED with
 * the line `refusal(limit)` gives, `limit` naming the limit and the costs.
 */
export function countRegexCompiles(used: number, sources: readonly string[], refusal: (limit: string) => string): number {
  let total = used;
  for (const source of sources) total += REGEX_COMPILE_COST + REGEX_COMPILE_COST_PER_CHAR * source.length;
  if (total > MAX_PATTERN_MATCHES) {
    const limit = `the limit MAX_PATTERN_MATCHES (${MAX_PATTERN_MATCHES} name comparisons, a regex compiled counting ${REGEX_COMPILE_COST} and ${REGEX_COMPILE_COST_PER_CHAR} more a character)`;
    throw new MergeError('LIMIT_EXCEEDED', refusal(limit));
  }
  return total;
}

/** Adds `cost` to the config's matching work, refusing past MAX_PATTERN_MATCHES. */
function spend(budget: MatchBudget, cost: number): void {
  budget.used += cost;
  if (budget.used > MAX_PATTERN_MATCHES) {
    throw new MergeError(
      'LIMIT_EXCEEDED',
      `${budget.file}: rank_pattern and alpha_pattern need too much matching against this adapter's modules (more than the limit MAX_PATTERN_MATCHES, ${MAX_PATTERN_MATCHES} name comparisons, a regex counting ${REGEX_MATCH_COST}); use fewer patterns`,
    );
  }
}

/** What {@link firstMatch} needs of a compiled key: its budget, table, and for a regex its matcher (no work counted). */
interface PatternInternals {
  budget: MatchBudget;
  table: string;
  regex: ((path: string) => boolean) | null;
}
const internals = new WeakMap<ModulePattern, PatternInternals>();

/**
 * Key `key` of `table` (`rank_pattern`, `alpha_pattern`, …), ready to match: a dotted module name
 * as it is, anything else compiled by RE2JS (refused when RE2 cannot match it in linear time). Its
 * matching work is counted in `budget`.
 */
export function compileModulePattern(key: string, table: string, budget: MatchBudget): ModulePattern {
  const where = `${budget.file}: ${table} key "${key.length > 80 ? `${key.slice(0, 80)}…` : key}"`;
  if (key.length > MAX_PATTERN_LENGTH) {
    throw new MergeError('LIMIT_EXCEEDED', `${where} is ${key.length} characters long, above the limit of ${MAX_PATTERN_LENGTH} (MAX_PATTERN_LENGTH)`);
  }
  if (!patternKeyIsRegex(key)) {
    const pattern: ModulePattern = { source: key };
    internals.set(pattern, { budget, table, regex: null });
    return pattern;
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(`(?:.*\\.)?(?:${key})`);
  } catch (e) {
    const why = (e as Error).message.replace(/^error parsing regexp: /, '');
    throw new MergeError('BAD_CONFIG', `${where} is not a pattern this tool can match safely (${why}); lookaround and backreferences are not supported`);
  }
  // A match of the whole name, as re.match(...$) is (RE2's `.` skips "\n", as Python's does), and
  // Python's `$` also matches before a final "\n".
  const regex = (path: string) => re.matches(path) || (path.endsWith('\n') && re.matches(path.slice(0, -1)));
  const pattern: ModulePattern = { source: key };
  internals.set(pattern, { budget, table, regex });
  return pattern;
}

/** Dotted-name keys of one length whose dots sit at the same places: key → its index in the table. */
interface NameGroup {
  dots: number[];
  keys: Map<string, number>;
}

/** A table made ready for {@link firstMatch}. */
interface TableIndex {
  budget: MatchBudget | null;
  table: string;
  /**
   * How many keys are whole numbers (`0`, `12`): a JavaScript object lists those first, ascending,
   * whatever their place in the file, so they are the table's first entries and their order
   * against the other keys is lost.
   */
  wholeNumbers: number;
  /** Dotted-name keys by length. */
  groups: Map<number, NameGroup[]>;
  /** Regex keys with their index, in the table's order. */
  regexes: { index: number; matches: (path: string) => boolean }[];
  /** Every key, for PEFT's lookup of the name itself when no key matches. */
  exact: Map<string, number>;
}
const indexes = new WeakMap<readonly (readonly [ModulePattern, unknown])[], TableIndex>();

function tableIndex(table: readonly (readonly [ModulePattern, unknown])[]): TableIndex {
  let index = indexes.get(table);
  if (index) return index;
  index = { budget: null, table: '', wholeNumbers: 0, groups: new Map(), regexes: [], exact: new Map() };
  table.forEach(([pattern], i) => {
    const inner = internals.get(pattern);
    if (!inner) throw new Error(`module pattern "${pattern.source}" was not made by compileModulePattern`);
    index.budget = inner.budget;
    index.table = inner.table;
    const key = pattern.source;
    if (/^(0|[1-9][0-9]*)$/.test(key) && Number(key) < 4294967295) index.wholeNumbers++; // an array index
    if (!index.exact.has(key)) index.exact.set(key, i);
    if (inner.regex) {
      index.regexes.push({ index: i, matches: inner.regex });
      return;
    }
    const dots: number[] = [];
    for (let j = key.indexOf('.'); j >= 0; j = key.indexOf('.', j + 1)) dots.push(j);
    const sameLength = index.groups.get(key.length) ?? [];
    index.groups.set(key.length, sameLength);
    let group = sameLength.find((g) => g.dots.length === dots.length && g.dots.every((d, n) => d === dots[n]));
    if (!group) sameLength.push((group = { dots, keys: new Map() }));
    if (!group.keys.has(key)) group.keys.set(key, i);
  });
  indexes.set(table, index);
  return index;
}

/**
 * The index in `table` of the key whose value PEFT gives module `path` (`get_pattern_key`: the
 * first key k, in the file's order, with `re.match(rf"(.*\.)?({k})$", path)`; with none, a key equal
 * to `path` itself, as PEFT then looks the name up), or -1.
 *
 * A dotted-name key of length L matches exactly the suffixes s of length L that start the name or
 * follow a `.` with no "\n" before it, and that equal the key where the key has letters: so s,
 * with the key's dot positions set to `.` (none of them "\n"), is the key. Each such suffix counts
 * one unit of work, and is probed once in each group of its length, counting one more and one a dot
 * of the group's keys (the probe is built a dot at a time); regex keys are tried only while they
 * come before the best match found, {@link REGEX_MATCH_COST} each.
 */
export function firstMatch(table: readonly (readonly [ModulePattern, unknown])[], path: string): number {
  if (table.length === 0) return -1;
  const index = tableIndex(table);
  const best = firstKeyFrom(index, path, 0);
  if (best < index.wholeNumbers) {
    // A whole-number key matches: PEFT takes it only if no other matching key comes before it in
    // the file, and that order is gone. (Two whole numbers never match one name: each takes only
    // the last part equal to it.)
    const other = firstKeyFrom(index, path, index.wholeNumbers);
    if (other < Infinity) {
      const shown = (i: number) => { const k = table[i][0].source; return k.length > 80 ? `${k.slice(0, 80)}…` : k; };
      throw new MergeError(
        'BAD_CONFIG',
        `${(index.budget as MatchBudget).file}: ${index.table} keys "${shown(best)}" and "${shown(other)}" both match module "${path}", and PEFT takes the one written first, but the file's order of a key that is a whole number is lost when its JSON is read here; write the key "${shown(best)}" as "(${shown(best)})", which PEFT matches alike and whose place is kept`,
      );
    }
  }
  if (best < Infinity) return best;
  return index.exact.get(path) ?? -1;
}

/** The first key at or after `from` in the table that matches `path`, or Infinity (`from` is 0 or past the whole numbers, which are no regexes). */
function firstKeyFrom(index: TableIndex, path: string, from: number): number {
  const budget = index.budget as MatchBudget;
  let best = bestNamedKey(index, budget, path, from);
  // Python's `$` also matches before a final "\n".
  if (path.endsWith('\n')) best = Math.min(best, bestNamedKey(index, budget, path.slice(0, -1), from));
  for (const { index: i, matches } of index.regexes) {
    if (i >= best) break;
    spend(budget, REGEX_MATCH_COST);
    if (matches(path)) return i;
  }
  return best;
}

/** The first dotted-name key at or after `from` that matches the whole of `path`, or Infinity. */
function bestNamedKey(index: TableIndex, budget: MatchBudget, path: string, from: number): number {
  let best = Infinity;
  if (index.groups.size === 0) return best;
  const newline = path.indexOf('\n');
  // Suffixes start at 0 and after each '.' that no "\n" comes before (`.*\.` cannot cross one).
  for (let start = 0; start >= 0 && (newline < 0 || start <= newline); start = nextStart(path, start)) {
    spend(budget, 1);
    const groups = index.groups.get(path.length - start);
    if (!groups) continue;
    const suffix = path.slice(start);
    for (const group of groups) {
      spend(budget, 1 + group.dots.length); // building the probe: about a comparison's time a dot
      const probe = withDots(suffix, group.dots);
      const hit = probe === null ? undefined : group.keys.get(probe);
      if (hit !== undefined && hit >= from && hit < best) best = hit;
    }
  }
  return best;
}

function nextStart(path: string, start: number): number {
  const dot = path.indexOf('.', start);
  return dot < 0 ? -1 : dot + 1;
}

/** `s` with a `.` at each of `dots`, or null where one of those is "\n" (which `.` does not match). */
function withDots(s: string, dots: readonly number[]): string | null {
  if (dots.length === 0) return s;
  let out = '';
  let from = 0;
  for (const d of dots) {
    if (s.charCodeAt(d) === 0x0a) return null;
    out += s.slice(from, d) + '.';
    from = d + 1;
  }
  return out + s.slice(from);
}

/** Checks the table's size before compiling it. */
export function checkPatternCount(count: number, table: string, file: string): void {
  if (count > MAX_PATTERNS) {
    throw new MergeError('LIMIT_EXCEEDED', `${file}: ${table} has ${count} keys, above the limit of ${MAX_PATTERNS} (MAX_PATTERNS)`);
  }
}
