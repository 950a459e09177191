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

  it('bounds the matching work of a config', () => {
    const keys = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`(layers\\.${i}\\.)x`, 4]));
    const config = parsePeftConfig(JSON.stringify({ r: 4, rank_pattern: keys }), 'adapter_config.json');
    const names = Array.from({ length: 2000 }, (_, i) => `model.layers.${i}.q_proj`);
    expect(() => {
      for (const n of names) config.rankPattern.find(([p]) => p.test(n));
    }).toThrow(/adapter_config\.json: rank_pattern and alpha_pattern need too much matching.*MAX_PATTERN_MATCHES/);
  });
});
