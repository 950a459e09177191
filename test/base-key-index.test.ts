/**
 * The base key index against its definition written plainly: a dotted name resolves to the key
 * itself, else the one key that ends with it (or that it ends with) on a `.` boundary; a flattened
 * module name with a parameter to the one `<module>.<param>` key whose module, dots turned into
 * underscores, ends with it on a `_` boundary. Random key sets of real shapes (expert weights, SD
 * blocks, short names, names of one part), queried with every tail of every key and with names
 * that fit several keys or none.
 */
import { describe, expect, it } from 'vitest';
import { BaseKeyIndex } from '../src/formats/layouts/base-key-index.js';
import { seededRandom } from './helpers/fixtures.js';

const rand = seededRandom(8128);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];

function randomKeys(n: number): string[] {
  const keys = new Set<string>();
  while (keys.size < n) {
    const shape = Math.floor(rand() * 5);
    if (shape === 0) keys.add(`model.layers.${Math.floor(rand() * 4)}.mlp.experts.${Math.floor(rand() * 12)}.${pick(['gate_proj', 'up_proj', 'down_proj'])}.${pick(['weight', 'weight_scale'])}`);
    else if (shape === 1) keys.add(`${pick(['model.diffusion_model.', ''])}${pick(['input_blocks', 'down_blocks'])}.${Math.floor(rand() * 3)}.${pick(['1.proj_in', 'attentions.0.proj_out', 'transformer_blocks.0.attn1.to_q'])}.${pick(['weight', 'bias'])}`);
    else if (shape === 2) keys.add(`${pick(['transformer.', ''])}h.${Math.floor(rand() * 3)}.attn.c_attn.weight`);
    else if (shape === 3) keys.add(pick(['lm_head.weight', 'weight', 'norm', 'model.norm.weight', 'a_b.c_d.weight']));
    else keys.add(`vision_tower.vision_model.encoder.layers.${Math.floor(rand() * 3)}.self_attn.q_proj.weight`);
  }
  return [...keys];
}

/** Every tail of `s` after a `sep`, and `s`. */
const tails = (s: string, sep: string) => [s, ...s.split(sep).map((_, i, parts) => parts.slice(i).join(sep)).slice(1).filter(Boolean)];

function dottedTruth(keys: readonly string[], name: string): string[] {
  if (keys.includes(name)) return [name];
  return keys.filter((k) => k.endsWith(`.${name}`) || (k !== name && name.endsWith(`.${k}`))).sort();
}

function flatTruth(keys: readonly string[], flatName: string, param: string): string[] {
  return keys.filter((k) => {
    const dot = k.lastIndexOf('.');
    if (dot <= 0 || k.slice(dot + 1) !== param) return false;
    const flat = k.slice(0, dot).replaceAll('.', '_');
    return flat === flatName || flat.endsWith(`_${flatName}`);
  }).sort();
}

const outcome = (candidates: string[]) => (candidates.length === 1 ? { found: true, key: candidates[0] } : { found: false, ambiguous: candidates.length > 1, candidates });

describe('BaseKeyIndex', () => {
  for (let round = 0; round < 6; round++) {
    it(`random key set ${round}: every dotted and flattened query as the definition says`, () => {
      const keys = randomKeys(20 + Math.floor(rand() * 60));
      const index = new BaseKeyIndex(keys);
      const dotted = new Set(keys.flatMap((k) => tails(k, '.')));
      for (const extra of ['proj_in.weight', 'x.model.norm.weight', 'attn.c_attn.weight', 'mlp.experts.3.up_proj.weight', 'nothing.weight']) dotted.add(extra);
      for (const name of dotted) expect(index.resolveDotted(name), name).toEqual(outcome(dottedTruth(keys, name)));
      const flat = new Set(keys.flatMap((k) => (k.lastIndexOf('.') > 0 ? tails(k.slice(0, k.lastIndexOf('.')).replaceAll('.', '_'), '_') : [])));
      flat.add('no_such_module');
      for (const name of flat) {
        for (const param of ['weight', 'bias', 'weight_scale']) expect(index.resolveFlat(name, param), `${name} ${param}`).toEqual(outcome(flatTruth(keys, name, param)));
      }
    });
  }
});

describe('BaseKeyIndex on many keys that end alike', () => {
  /** Key sets that put thousands of keys behind the same last parts, and names that differ only in parts far from the end. */
  const families: [string, string[]][] = [
    // GPT-2 without `transformer.`: every layer's c_attn shares its last three parts.
    ['GPT-2 layers', Array.from({ length: 3000 }, (_, i) => `h.${i}.attn.c_attn.weight`)],
    // A long common ending: the parts that tell keys apart are 300 parts from the end.
    ['a long common ending', Array.from({ length: 600 }, (_, i) => `${i}.${'a.'.repeat(300)}weight`)],
    // A long common start, and names whose dots and underscores differ but flatten alike.
    ['dots and underscores', Array.from({ length: 512 }, (_, i) => `${'blk.'.repeat(40)}${[...i.toString(2).padStart(9, '0')].map((b) => (b === '1' ? 'x.' : 'x_')).join('')}proj.weight`)],
    // Empty parts, a key that is one part, and keys that end with another key.
    ['empty parts', ['weight', '.weight', '..weight', 'a..weight', 'a.weight', 'b.a.weight', 'a.', '.', ...Array.from({ length: 40 }, (_, i) => `m${i}..weight`)]],
  ];
  for (const [title, keys] of families) {
    it(`${title}: dotted and flattened queries as the definition says`, () => {
      const index = new BaseKeyIndex(keys);
      const names = new Set<string>();
      for (let i = 0; i < keys.length; i += Math.max(1, Math.floor(keys.length / 60))) {
        // A key's first, middle and last tails (all of them for a 300-part key cost seconds of the definition).
        const all = tails(keys[i], '.');
        for (const t of [...all.slice(0, 4), all[all.length >> 1], ...all.slice(-4)]) names.add(t);
        names.add(`transformer.${keys[i]}`);
      }
      for (const extra of ['weight', 'a.weight', '.weight', 'c_attn.weight', 'x.proj.weight', 'nothing.weight']) names.add(extra);
      for (const name of names) expect(index.resolveDotted(name), name).toEqual(outcome(dottedTruth(keys, name)));
      const flat = new Set<string>(['proj', 'x_proj', 'x_x_proj', 'c_attn', 'attn_c_attn', '0_attn_c_attn', 'a', 'a_a', 'no_such']);
      for (let i = 0; i < keys.length; i += Math.max(1, Math.floor(keys.length / 30))) {
        const dot = keys[i].lastIndexOf('.');
        const all = dot > 0 ? tails(keys[i].slice(0, dot).replaceAll('.', '_'), '_') : [];
        for (const t of [...all.slice(0, 4), ...all.slice(-4)]) flat.add(t);
      }
      for (const name of flat) expect(index.resolveFlat(name), name).toEqual(outcome(flatTruth(keys, name, 'weight')));
    });
  }

  it('a tensor with an empty name ends no name (a name ending in a dot is not its module)', () => {
    const index = new BaseKeyIndex(['', 'x.weight']);
    expect(index.resolveDotted('m.')).toEqual({ found: false, ambiguous: false, candidates: [] });
    expect(index.resolveDotted('')).toEqual({ found: true, key: '' });
  });

  it('a prefixed name compares a handful of keys, not every key that shares its last parts', () => {
    // A prefixed adapter (`transformer.h.…`) on a GPT-2 file (`h.…`) of 20 000 layers: the lookup
    // read all 20 000 keys ending in `attn.c_attn.weight` for each module.
    const n = 20_000;
    const index = new BaseKeyIndex(Array.from({ length: n }, (_, i) => `h.${i}.attn.c_attn.weight`));
    for (let i = 0; i < n; i++) expect(index.resolveDotted(`transformer.h.${i}.attn.c_attn.weight`)).toEqual({ found: true, key: `h.${i}.attn.c_attn.weight` });
    for (let i = 0; i < n; i++) expect(index.resolveFlat(`h_${i}_attn_c_attn`)).toEqual({ found: true, key: `h.${i}.attn.c_attn.weight` });
    expect(index.comparisons).toBeLessThan(2 * n * 20);
  });
});
