/**
 * rank_pattern / alpha_pattern keys: the linear-time matcher agrees with PEFT's rule
 * (`re.match(rf"(.*\.)?({key})$", name)`, here through a backtracking RegExp on patterns where that
 * is safe) on random keys and names, and pathological keys finish at once on long names.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { compileModulePattern } from '../src/formats/module-pattern.js';
import { parsePeftConfig } from '../src/formats/peft-config.js';
import { MAX_PATTERN_LENGTH, MAX_PATTERN_MATCHES, MAX_PATTERNS } from '../src/limits.js';

const budget = () => ({ file: 'adapter_config.json', used: 0 });
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
        expect(pattern.test(n), `${k} against ${n}`).toBe(peft.test(n));
      }),
      { seed: 7, numRuns: 3000 },
    );
  });

  it('finish at once on patterns that make backtracking matchers run for ever', () => {
    const long = `model.${'a'.repeat(5000)}.layers.0.self_attn.q_proj`;
    const started = performance.now();
    for (const k of ['((.*)*)*z', '(a|aa)+$', '(.*a){25}', '(a+)+b', '([a-z]+)*[0-9]']) {
      expect(compileModulePattern(k, 'alpha_pattern', budget()).test(long)).toBe(false);
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
    const literal = compileModulePattern('model.layers.0.q_proj', 'rank_pattern', shared);
    const regex = compileModulePattern('layers\\.\\d+\\.q_proj', 'alpha_pattern', shared);
    for (let i = 0; i < 50; i++) literal.test(`model.layers.${i}.q_proj`); // 50 units
    expect(regex.test('model.layers.1.q_proj')).toBe(true); // 100 units: 150 of the last 200 used
    expect(() => regex.test('model.layers.2.q_proj')).toThrow(/adapter_config\.json: rank_pattern and alpha_pattern need too much matching.*MAX_PATTERN_MATCHES/);
  });

  it('reads the pattern tables of a config into one budget, refusing too many keys', () => {
    const config = parsePeftConfig(JSON.stringify({ r: 4, rank_pattern: { 'q_proj': 2 }, alpha_pattern: { '(q|v)_proj': 8 } }), 'adapter_config.json');
    expect(config.rankPattern[0][0].test('model.layers.0.q_proj')).toBe(true);
    expect(config.alphaPattern[0][0].test('model.layers.0.v_proj')).toBe(true);
    const many = Object.fromEntries(Array.from({ length: MAX_PATTERNS + 1 }, (_, i) => [`m${i}`, 1]));
    expect(() => parsePeftConfig(JSON.stringify({ r: 4, alpha_pattern: many }), 'adapter_config.json')).toThrow(/alpha_pattern has 10001 keys, above the limit of 10000 \(MAX_PATTERNS\)/);
  });
});
