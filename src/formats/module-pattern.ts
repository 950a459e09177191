/**
 * PEFT's `rank_pattern` / `alpha_pattern` keys, matched as PEFT does — key k matches module m when
 * `re.match(rf"(.*\.)?({k})$", m)` — but never with a backtracking engine: adapter configs come
 * from the internet, and `((.*)*)*z` would run a backtracking matcher (Python's or JavaScript's)
 * for ever. Keys are matched by RE2JS, a port of RE2 whose matching time is linear in the name's
 * length for every pattern. RE2 refuses what has no linear-time match (backreferences,
 * lookaround); such a key is refused with a clear error instead of being guessed at.
 *
 * Most keys are module names (`model.layers.0.self_attn.q_proj`): letters, digits, `_` and `.`.
 * Those are matched directly: the name must end with a suffix of the key's length, after a `.` or
 * at the start, equal to the key where `.` stands for any one character (as in the regex).
 *
 * The work of all lookups against one config is bounded too (patterns × modules), so a config with
 * thousands of patterns against thousands of modules cannot stall the plan.
 */
import { RE2JS } from 're2js';
import { MergeError } from '../errors.js';
import { MAX_PATTERN_LENGTH, MAX_PATTERN_MATCHES, MAX_PATTERNS } from '../limits.js';

export interface ModulePattern {
  /** The key as written in the config. */
  readonly source: string;
  /** Does module path `path` match (PEFT's rule)? */
  test(path: string): boolean;
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

export function compileModulePattern(key: string, table: string, budget: MatchBudget): ModulePattern {
  const where = `${budget.file}: ${table} key "${key.length > 80 ? `${key.slice(0, 80)}…` : key}"`;
  if (key.length > MAX_PATTERN_LENGTH) {
    throw new MergeError('LIMIT_EXCEEDED', `${where} is ${key.length} characters long, above the limit of ${MAX_PATTERN_LENGTH} (MAX_PATTERN_LENGTH)`);
  }
  const spend = (cost: number) => {
    budget.used += cost;
    if (budget.used > MAX_PATTERN_MATCHES) {
      throw new MergeError(
        'LIMIT_EXCEEDED',
        `${budget.file}: rank_pattern and alpha_pattern need too much matching against this adapter's modules (more than the limit MAX_PATTERN_MATCHES, ${MAX_PATTERN_MATCHES} name comparisons, a regex counting ${REGEX_MATCH_COST}); use fewer patterns`,
      );
    }
  };
  if (!patternKeyIsRegex(key)) {
    return {
      source: key,
      test(path) {
        spend(1);
        return matchesDottedName(key, path);
      },
    };
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(`(?:.*\\.)?(?:${key})`);
  } catch (e) {
    const why = (e as Error).message.replace(/^error parsing regexp: /, '');
    throw new MergeError('BAD_CONFIG', `${where} is not a pattern this tool can match safely (${why}); lookaround and backreferences are not supported`);
  }
  return {
    source: key,
    test(path) {
      spend(REGEX_MATCH_COST);
      return re.matches(path); // a match of the whole name, as re.match(...$) is
    },
  };
}

/** `(.*\.)?key$` for a key of letters, digits, `_` and `.` (where `.` is any one character). */
function matchesDottedName(key: string, path: string): boolean {
  const start = path.length - key.length;
  // The key matches exactly key.length characters, so the tail it must match is fixed, and what
  // comes before it must be empty or end with '.'.
  if (start < 0 || (start > 0 && path.charCodeAt(start - 1) !== 0x2e)) return false;
  for (let i = 0; i < key.length; i++) {
    const k = key.charCodeAt(i);
    if (k !== 0x2e && k !== path.charCodeAt(start + i)) return false;
  }
  return true;
}

/** Checks the table's size before compiling it. */
export function checkPatternCount(count: number, table: string, file: string): void {
  if (count > MAX_PATTERNS) {
    throw new MergeError('LIMIT_EXCEEDED', `${file}: ${table} has ${count} keys, above the limit of ${MAX_PATTERNS} (MAX_PATTERNS)`);
  }
}
