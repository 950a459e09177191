/**
 * PEFT HiRA (tuners/hira): `hira_A` (r, in) and `hira_B` (out, r) of a Linear (or of GPT-2's Conv1D
 * under fan_in_fan_out, whose weight is stored (in, out)), (r, in, kh, kw) and (out, r, 1, 1) of a
 * conv (its inputs flattened to in·kh·kw, as PEFT's conv of the two factors gives B·A at every kernel
 * position), and an embedding's `hira_embedding_A` (r, vocab) and `hira_embedding_B` (dim, r), whose
 * B·A is (dim, vocab), the transpose of the stored (vocab, dim) weight, as PEFT transposes it.
 * PEFT merges W' = W + W ⊙ (B·A), the Hadamard product with the base weight itself, with no scaling;
 * the engine applies it as the elementwise map V += s·V ⊙ (B·A) in ΔW's orientation on its float64
 * executor. PEFT has no weight for HiRA: a user weight s scales the map's added part.
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { readFloat } from '../read-float.js';
import { product } from '../../integers.js';

export const peftHira: Algorithm = {
  name: 'peft-hira',
  title: 'HiRA (PEFT)',
  defines: ['hira_A', 'hira_B', 'hira_embedding_A', 'hira_embedding_B'],
  roles: ['hira_A', 'hira_B', 'hira_embedding_A', 'hira_embedding_B'],

  build(tensors, context) {
    const o = context.options;
    if (!o || typeof o.r !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT HiRA tensors (hira_A, hira_B) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const embedding = tensors.has('hira_embedding_A') || tensors.has('hira_embedding_B');
    if (embedding && (tensors.has('hira_A') || tensors.has('hira_B'))) {
      context.report('UNSUPPORTED_FORMAT', 'mixes a layer\'s hira_A/hira_B with an embedding\'s hira_embedding_A/hira_embedding_B');
      return null;
    }
    const [nameA, nameB] = embedding ? ['hira_embedding_A', 'hira_embedding_B'] as const : ['hira_A', 'hira_B'] as const;
    const a = tensors.get(nameA), b = tensors.get(nameB);
    if (!a || !b) {
      context.report('UNSUPPORTED_FORMAT', `has ${a ? `${nameA} without ${nameB}` : `${nameB} without ${nameA}`}`);
      return null;
    }
    const conv = a.shape.length > 2;
    const r = a.shape[0];
    const inputs = product(a.shape.slice(1));
    const bOk = b.shape.length === a.shape.length && b.shape[1] === r && b.shape.slice(2).every((d) => d === 1);
    if (a.shape.length < 2 || a.shape.length > (embedding ? 2 : 5) || !bOk) {
      context.report('SHAPE_MISMATCH', `${nameA} ${fmtShape(a.shape)} and ${nameB} ${fmtShape(b.shape)} are not (r, ${embedding ? 'vocabulary' : 'inputs'}${conv ? ', kernel…' : ''}) and (${embedding ? 'embedding dim' : 'outputs'}, r${conv ? ', 1…' : ''})`);
      return null;
    }
    if (r !== o.r) {
      context.report('BAD_CONFIG', `${nameA} ${fmtShape(a.shape)} has rank ${r} but the config's r is ${o.r}`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftHira.name,
      kind: embedding ? 'embedding' : conv ? 'conv' : 'linear',
      deltaShape: conv ? [b.shape[0], ...a.shape.slice(1)] : [b.shape[0], inputs],
      rank: r,
      alpha: 1,
      scale: 1,
      tensors: { a, b },
      // An elementwise map: it works on a weight stored (in, out) too (embeddings, Conv1D).
      update: { kind: 'transform', cost: r + 2, anyLayout: true },
      fanInFanOut: false,
      options: o,
    };
  },

  async load(file, module) {
    const { a, b } = module.tensors;
    // Conv factors flattened: A (r × in·kh·kw), B (out × r), as their row-major bytes already are.
    return [{ kind: 'hadamard', a: await readFloat(file, a), b: await readFloat(file, b), rank: a.shape[0] }];
  },
};
