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
