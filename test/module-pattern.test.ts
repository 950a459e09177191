/**
 * rank_pattern / alpha_pattern keys: the linear-time matcher agrees with PEFT's rule
 * (`re.match(rf"(.*\.)?({key})$", name)`, here through a backtracking RegExp on patterns where that
 * is safe) on random keys and names, and pathological keys finish at once on long names.
 */
import fc from 'fast-check';
import { RE2JS } from 're2js';
import { describe, expect, it, vi } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { compileModulePattern, firstMatch, REGEX_MATCH_COST, type ModulePattern } from '../src/formats/module-pattern.js';
import { lookupPattern, parsePeftConfig, patternTables } from '../src/formats/peft-config.js';
import { MAX_PATTERN_LENGTH, MAX_PATTERN_MATCHES, MAX_PATTERNS } from '../src/limits.js';

const budget = () => ({ file: 'adapter_config.json', used: 0 });
/** Does the one-key table of `pattern` give `path` its value (a match, or PEFT's look-up of the name itself)? */
const matches = (pattern: ModulePattern, path: string) => firstMatch([[pattern, 0]], path) === 0;
const segment = fc.constantFrom('model', 'layers', '0', '1', '12', 'self_attn', 'q_proj', 'v_proj', 'mlp', 'up_proj', 'x');
const name = fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => s.join('.'));
/** Keys as configs write them: module names, with some regex syntax mixed in (all safe for RegExp). */
const key = fc.oneof(
  name,
  fc.array(fc.oneof(segment, fc.constantFrom('.', '\\.', '.*', '\\d+', '(q|v)_proj', '[0-9]', '_proj', '^', 'layers\\.1\\d')), { minLength: 1, maxLength: 5 }).map((p) => p.join('')),
);

describe('module patterns', () => {
  it('match as PEFT does', () => {
    fc.assert(
      fc.property(key, name, (k, n) => {
        let pattern;
        try {
          pattern = compileModulePattern(k, 'rank_pattern', budget());
        } catch (e) {
          expect(isMergeError(e)).toBe(true); // e.g. a lone '^' mid-pattern RE2 accepts; others may not
          return;
        }
        const peft = new RegExp(`^(?:.*\\.)?(?:${k})$`);
        // With no match PEFT looks the name itself up in the table.
        expect(matches(pattern, n), `${k} against ${n}`).toBe(peft.test(n) || n === k);
      }),
      { seed: 7, numRuns: 3000 },
    );
  });

  it('finish at once on patterns that make backtracking matchers run for ever', () => {
    const long = `model.${'a'.repeat(5000)}.layers.0.self_attn.q_proj`;
    const started = performance.now();
    for (const k of ['((.*)*)*z', '(a|aa)+$', '(.*a){25}', '(a+)+b', '([a-z]+)*[0-9]']) {
      expect(matches(compileModulePattern(k, 'alpha_pattern', budget()), long)).toBe(false);
    }
    expect(performance.now() - started).toBeLessThan(10_000); // backtracking would take years
  });

  it('refuses keys without a linear-time match, naming them', () => {
    for (const k of ['(?=q)q_proj', '(?<!x)q', '(q)\\1']) {
      expect(() => compileModulePattern(k, 'rank_pattern', budget())).toThrow(/rank_pattern key .* is not a pattern this tool can match safely/);
    }
  });

  it('refuses a pattern key longer than MAX_PATTERN_LENGTH, naming the file, table and the key\'s start', () => {
    // A regex key is compiled and run against every module: its length is bounded before that.
    const key = `model\\.layers\\.(${Array.from({ length: 300 }, (_, i) => i).join('|')})\\.self_attn\\.q_proj`;
    expect(key.length).toBeGreaterThan(MAX_PATTERN_LENGTH);
    expect(() => compileModulePattern(key, 'rank_pattern', { file: 'adapter_config.json', used: 0 }))
      .toThrow(`adapter_config.json: rank_pattern key "${key.slice(0, 80)}…" is ${key.length} characters long, above the limit of 1000 (MAX_PATTERN_LENGTH)`);
  });

  it('bounds the matching work of a config', () => {
    // One budget per config: start it near the limit rather than spend seconds reaching it.
    const shared = { file: 'adapter_config.json', used: MAX_PATTERN_MATCHES - 200 };
    const literal = compileModulePattern('q_proj', 'rank_pattern', shared);
    const regex = compileModulePattern('layers\\.\\d+\\.q_proj', 'alpha_pattern', shared);
    for (let i = 0; i < 25; i++) matches(literal, 'q_proj'); // 2 units each (one suffix, one probe): 50
    expect(matches(regex, 'model.layers.1.q_proj')).toBe(true); // 100 units: 150 of the last 200 used
    expect(() => matches(regex, 'model.layers.2.q_proj')).toThrow(/adapter_config\.json: rank_pattern and alpha_pattern need too much matching.*MAX_PATTERN_MATCHES/);
  });

  it('reads the pattern tables of a config into one budget, refusing too many keys', () => {
    const config = parsePeftConfig(JSON.stringify({ r: 4, rank_pattern: { 'q_proj': 2 }, alpha_pattern: { '(q|v)_proj': 8 } }), 'adapter_config.json');
    expect(firstMatch(config.rankPattern, 'model.layers.0.q_proj')).toBe(0);
    expect(firstMatch(config.alphaPattern, 'model.layers.0.v_proj')).toBe(0);
    const many = Object.fromEntries(Array.from({ length: MAX_PATTERNS + 1 }, (_, i) => [`m${i}`, 1]));
    expect(() => parsePeftConfig(JSON.stringify({ r: 4, alpha_pattern: many }), 'adapter_config.json')).toThrow(/alpha_pattern has 10001 keys, above the limit of 10000 \(MAX_PATTERNS\)/);
  });
});

/**
 * PEFT's `get_pattern_key` (peft/utils/other.py), written from its definition: the first key k of
 * the table, in the file's order, for which `re.match(rf"(.*\.)?({k})$", name)` matches, else the
 * name itself (which the caller then looks up in the table: `rank_pattern.get(key, r)`). Python's
 * `$` also matches before a final "\n"; JavaScript's RegExp `.`, like Python's, skips "\n" (the
 * names here have no "\r", "\u2028" or "\u2029", which only JavaScript's skips).
 */
function peftValue(table: Record<string, number>, name: string, fallback: number): number {
  const python$ = (re: RegExp) => re.test(name) || (name.endsWith('\n') && re.test(name.slice(0, -1)));
  const key = Object.keys(table).find((k) => python$(new RegExp(`^(?:.*\\.)?(?:${k})$`))) ?? name;
  return Object.hasOwn(table, key) ? table[key] : fallback;
}

/** The value our tables give `name`, the rank_pattern read as parsePeftConfig reads it. */
function ourValue(table: Record<string, number>, name: string, fallback: number, budget = { file: 'adapter_config.json', used: 0 }): number {
  const [compiled] = patternTables({ rank_pattern: table }, [{ key: 'rank_pattern', integer: true }], 'adapter_config.json', budget);
  return lookupPattern(compiled, name, fallback);
}

describe('a pattern table gives a module the value of the key PEFT picks', () => {
  const cases: [string, Record<string, number>, string[]][] = [
    // Keys that are suffixes of each other: the file's order decides, not the longest.
    ['suffix keys, short first', { 'q_proj': 2, 'self_attn.q_proj': 4, 'model.layers.0.self_attn.q_proj': 8 }, ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj', 'q_proj', 'xq_proj', 'model.layers.0.self_attn.xq_proj']],
    ['suffix keys, long first', { 'model.layers.0.self_attn.q_proj': 8, 'self_attn.q_proj': 4, 'q_proj': 2 }, ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj', 'layers.0.self_attn.q_proj', 'self_attn.q_proj']],
    // A regex key and a module-name key both matching: again the first in the file.
    ['regex before name', { 'layers\\.\\d+\\.self_attn\\.(q|v)_proj': 3, 'model.layers.0.self_attn.q_proj': 8, 'v_proj': 5 }, ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.0.mlp.v_proj']],
    ['name before regex', { 'model.layers.0.self_attn.q_proj': 8, 'v_proj': 5, 'layers\\.\\d+\\.self_attn\\.(q|v)_proj': 3 }, ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.7.self_attn.q_proj']],
    // `.` in a key is the regex's any character: `layers.0.q_proj` takes `layersX0Xq_proj` too, but only
    // from the start of the name or after a real `.`; `s.0.q_proj` is not a suffix of `layers.0.q_proj` there.
    ['dots are wildcards', { 'layers.0.q_proj': 2, 's.0.q_proj': 3, 'mlp.up_proj': 4, '.k_proj': 5, 'a..b': 6, 'o_proj.': 7 }, [
      'model.layers.0.q_proj', 'model.layersX0Xq_proj', 'layers_0_q_proj', 'alayers.0.q_proj', 'model.s.0.q_proj', 'model.sX0Xq_proj',
      'model.mlp.up_proj', 'model.mlp_up_proj', 'mlpXup_proj', 'a.xk_proj', 'a..k_proj', 'a.k_proj', 'xk_proj', 'k_proj',
      'm.a.b.b', 'm.aXYb', 'aXYb', 'm.a.Yb', 'x.o_projX', 'x.o_proj.', 'o_proj',
    ]],
    // Dotted keys of one length with dots in different places, and keys of one group that differ.
    ['one length, several dot patterns', { 'ab.cd.ef': 1, 'abc.d.ef': 2, 'ab.cd_ef': 3, 'abXcdYef': 4 }, ['x.ab.cd.ef', 'x.abc.d.ef', 'x.abXcd.ef', 'x.abc_d.ef', 'ab.cd_ef', 'abXcdYef', 'abXcdZef']],
    // Keys that look like names but are regexes, and a key that does not match its own name:
    // `lm_head(0)` matches `lm_head0`, and PEFT, finding no key for `lm_head(0)`, looks the name up.
    ['regex syntax in plain-looking keys', { 'q_proj|v_proj': 2, 'layers.1[0-9].k_proj': 3, 'lm_head(0)': 4, 'up+_proj': 5, 'gate_proj$': 6 }, [
      'm.q_proj', 'm.v_proj', 'm.o_proj', 'model.layers.12.k_proj', 'model.layers.2.k_proj', 'model.layersX12Xk_proj', 'lm_head0', 'lm_head(0)', 'x.lm_head(0)',
      'm.upp_proj', 'm.gate_proj', 'q_proj|v_proj',
    ]],
    // Python's `.*\.` cannot cross a "\n", and its `$` matches before a final one.
    ['newlines in names', { 'q_proj': 2, 'b.c': 3, 'x.y': 4 }, ['m.q_proj\n', 'm\nn.q_proj', 'q_proj\n', 'm.q_proj\n\n', 'a.b\nc', 'a.b.c', 'a\nb.c', 'm.x\ny', 'x\ny']],
  ];
  for (const [what, table, names] of cases) {
    it(what, () => {
      for (const name of names) expect(ourValue(table, name, -1), JSON.stringify(name)).toBe(peftValue(table, name, -1));
    });
  }

  it('the listed cases do tell the rules apart', () => {
    // Guards the cases above against all agreeing by accident: each rule PEFT has shows in them.
    expect(peftValue({ 'q_proj': 2, 'self_attn.q_proj': 4 }, 'model.self_attn.q_proj', -1)).toBe(2); // first, not longest
    expect(peftValue({ 'layers.0.q_proj': 2 }, 'model.layersX0Xq_proj', -1)).toBe(2); // `.` is any character
    expect(peftValue({ 'layers.0.q_proj': 2 }, 'alayers.0.q_proj', -1)).toBe(-1); // after a `.` or at the start only
    expect(peftValue({ 'lm_head(0)': 4 }, 'lm_head(0)', -1)).toBe(4); // the name itself, looked up
    expect(peftValue({ 'q_proj': 2 }, 'm.q_proj\n', -1)).toBe(2); // `$` before a final "\n"
    expect(peftValue({ 'q_proj': 2 }, 'm\nn.q_proj', -1)).toBe(-1); // `.*` does not cross "\n"
  });

  it('refuses a name matched by a whole-number key and another, whose order in the file JSON.parse loses', () => {
    // Python keeps the file's order: PEFT gives `attn.to_out.0` 8 (`to_out.0` comes first). A
    // JavaScript object lists the key "0" first, which would give 4.
    const text = String.raw`{"r": 2, "rank_pattern": {"to_out.0": 8, "0": 4, "ff\\.net\\.\\d": 6}}`;
    const inFile = { 'to_out.0': 8, '0': 4, 'ff\\.net\\.\\d': 6 };
    expect(Object.keys(JSON.parse(text).rank_pattern)).toEqual(['0', 'to_out.0', 'ff\\.net\\.\\d']);
    const config = parsePeftConfig(text, 'adapter_config.json');
    expect(() => lookupPattern(config.rankPattern, 'attn.to_out.0', 2)).toThrow(
      'adapter_config.json: rank_pattern keys "0" and "to_out.0" both match module "attn.to_out.0", and PEFT takes the one written first, but the file\'s order of a key that is a whole number is lost when its JSON is read here; write the key "0" as "(0)", which PEFT matches alike and whose place is kept');
    expect(() => lookupPattern(config.rankPattern, 'ff.net.0', 2)).toThrow('rank_pattern keys "0" and "ff\\.net\\.\\d" both match module "ff.net.0"');
    // Written "(0)" as the message says, the key keeps its place and PEFT's choice is made.
    const kept = parsePeftConfig(text.replace('"0"', '"(0)"'), 'adapter_config.json');
    expect(lookupPattern(kept.rankPattern, 'attn.to_out.0', 2)).toBe(8);
    expect(peftValue({ 'to_out.0': 8, '(0)': 4 }, 'attn.to_out.0', 2)).toBe(8);
    // Where one key alone matches, its place does not matter.
    const names = ['proj.0', 'attn.to_out.1', 'ff.net.1', 'ff.net.10'];
    expect(names.map((m) => lookupPattern(config.rankPattern, m, 2))).toEqual(names.map((m) => peftValue(inFile, m, 2)));
    expect(names.map((m) => peftValue(inFile, m, 2))).toEqual([4, 2, 6, 2]);
  });

  it('agrees with PEFT on random tables of names and regexes', () => {
    fc.assert(
      fc.property(fc.uniqueArray(key, { minLength: 1, maxLength: 8 }), fc.array(name, { minLength: 1, maxLength: 8 }), (keys, names) => {
        const table = Object.fromEntries(keys.map((k, i) => [k, i + 1]));
        let ours: number[];
        try {
          ours = names.map((n) => ourValue(table, n, -1));
        } catch (e) {
          expect(isMergeError(e)).toBe(true);
          return;
        }
        expect(ours).toEqual(names.map((n) => peftValue(table, n, -1)));
      }),
      { seed: 11, numRuns: 1500 },
    );
  });
});

describe('a table of module names is looked up, not scanned', () => {
  // DeepSeek-V3's routed experts as PEFT names them: 58 MoE layers × 256 experts × 3 = 44,544 modules.
  const modules: string[] = [];
  for (let l = 3; l < 61; l++) for (let e = 0; e < 256; e++) for (const p of ['gate_proj', 'up_proj', 'down_proj']) modules.push(`model.layers.${l}.mlp.experts.${e}.${p}`);
  // 1,000 of them with their own rank, keyed by full module name as PEFT saves rank_pattern.
  const keyed = modules.filter((_, i) => i % 44 === 7).slice(0, 1000);

  it('1,000 module-name keys over 44,544 modules: work of the name parts, not keys × modules', () => {
    expect([modules.length, keyed.length]).toEqual([44_544, 1000]);
    const table = Object.fromEntries(keyed.map((m, i) => [m, 8 + (i % 3)]));
    const budget = { file: 'adapter_config.json', used: 0 };
    const compile = vi.spyOn(RE2JS, 'compile');
    try {
      const [compiled] = patternTables({ rank_pattern: table }, [{ key: 'rank_pattern', integer: true }], 'adapter_config.json', budget);
      const got = modules.map((m) => lookupPattern(compiled, m, 4));
      expect(compile).not.toHaveBeenCalled();
      // A full module name matches only itself among these (no `.` stands where another name has a letter).
      expect(got).toEqual(modules.map((m) => (Object.hasOwn(table, m) ? table[m] : 4)));
    } finally {
      compile.mockRestore();
    }
    // Each name has 7 parts, so 7 suffixes to visit; the keys fall into a few groups by length and
    // dot positions, and a suffix is probed in the groups of its length only, each probe counting
    // 1 + the group's 6 dots. Scanning the keys for each module was 44,544,000 comparisons.
    const groups = new Set(keyed.map((k) => `${k.length}:${[...k].flatMap((c, i) => (c === '.' ? [i] : [])).join(',')}`));
    expect(groups.size).toBeLessThan(30);
    const fullNameProbes = modules.filter((m) => keyed.some((k) => k.length === m.length)).length; // only the whole name is as long as a key
    expect(budget.used).toBeLessThanOrEqual(modules.length * 7 + fullNameProbes * 7 * groups.size);
    expect(budget.used).toBeLessThan(MAX_PATTERN_MATCHES / 50);
  });

  it('counts a unit for each suffix of the name, and for each probe one more and one a dot of its group', () => {
    const budget = { file: 'adapter_config.json', used: 0 };
    const [compiled] = patternTables({ rank_pattern: { 'a.b': 3, 'q_proj': 2, 'x.y': 5 } }, [{ key: 'rank_pattern', integer: true }], 'adapter_config.json', budget);
    // `m.a.b`: suffixes `m.a.b` (no key of 5 characters), `a.b` (the group of `a.b` and `x.y`: 1 + 1 dot), `b`.
    expect(lookupPattern(compiled, 'm.a.b', 1)).toBe(3);
    expect(budget.used).toBe(1 + (1 + 2) + 1);
  });

  it('a regex key after the names is tried only where no name came first', () => {
    const table = { ...Object.fromEntries(keyed.map((m) => [m, 16])), 'experts\\.\\d+\\.gate_proj': 2 };
    const budget = { file: 'adapter_config.json', used: 0 };
    const [compiled] = patternTables({ rank_pattern: table }, [{ key: 'rank_pattern', integer: true }], 'adapter_config.json', budget);
    const compiledCost = budget.used;
    const test = vi.spyOn(RE2JS.prototype, 'matches');
    try {
      const got = modules.map((m) => lookupPattern(compiled, m, 4));
      // PEFT: the full names come first in the file, so they win; the regex takes the other gate_proj.
      const named = new Set(keyed);
      expect(got).toEqual(modules.map((m) => (named.has(m) ? 16 : m.endsWith('.gate_proj') ? 2 : 4)));
      expect(test).toHaveBeenCalledTimes(modules.length - keyed.length);
    } finally {
      test.mockRestore();
    }
    expect(budget.used - compiledCost).toBeLessThan(modules.length * 7 + (modules.length - keyed.length) * REGEX_MATCH_COST + 1_000_000);
  });

  it('a table built to defeat the grouping is refused in one line naming the limit', () => {
    // 4,060 keys of 30 characters whose three dots all sit in different places: every name with a
    // 30-character part probes each group. Counted from near the limit, so the refusal comes at once.
    const keys: string[] = [];
    for (let a = 0; a < 30; a++) for (let b = a + 1; b < 30; b++) for (let c = b + 1; c < 30; c++) {
      keys.push(Array.from({ length: 30 }, (_, i) => (i === a || i === b || i === c ? '.' : 'z')).join(''));
    }
    const budget = { file: 'adapter_config.json', used: MAX_PATTERN_MATCHES - 100_000 };
    const [compiled] = patternTables({ alpha_pattern: Object.fromEntries(keys.map((k) => [k, 2])) }, [{ key: 'alpha_pattern', integer: false }], 'adapter_config.json', budget);
    expect(lookupPattern(compiled, 'model.layers.3.mlp', 1)).toBe(1); // no part of 30 characters: 4 units
    let refused: unknown;
    try {
      for (const m of modules.slice(0, 100)) lookupPattern(compiled, `${m}.${'q'.repeat(30)}`, 1);
    } catch (e) {
      refused = e;
    }
    expect(isMergeError(refused) && refused.code).toBe('LIMIT_EXCEEDED');
    expect((refused as Error).message).toBe(`adapter_config.json: rank_pattern and alpha_pattern need too much matching against this adapter's modules (more than the limit MAX_PATTERN_MATCHES, ${MAX_PATTERN_MATCHES} name comparisons, a regex counting 100); use fewer patterns`);
  });
});
