/**
 * PEFT HiRA (tuners/hira): `hira_A` (r, in) and `hira_B` (out, r) of a Linear, or (r, in, kh, kw)
 * and (out, r, 1, 1) of a conv (its inputs flattened to in·kh·kw, as PEFT's conv of the two
 * factors gives B·A at every kernel position). PEFT merges W' = W + W ⊙ (B·A), the Hadamard product
 * with the base weight itself, with no scaling; the engine applies it as the elementwise map
 * V += s·V ⊙ (B·A) on its float64 executor. PEFT has no weight for HiRA: a user weight s scales the
 * map's added part. Refused: an embedding's `hira_embedding_A`/`hira_embedding_B` (not read yet), a
 * weight stored (in, out) (GPT-2's Conv1D under fan_in_fan_out).
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { readFloat } from '../read-float.js';

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
    if (tensors.has('hira_embedding_A') || tensors.has('hira_embedding_B')) {
      context.report('UNSUPPORTED_FORMAT', 'is a HiRA embedding (hira_embedding_A, hira_embedding_B), which is not read yet');
      return null;
    }
    const a = tensors.get('hira_A'), b = tensors.get('hira_B');
    if (!a || !b) {
      context.report('UNSUPPORTED_FORMAT', `has ${a ? 'hira_A without hira_B' : 'hira_B without hira_A'}`);
      return null;
    }
    const conv = a.shape.length > 2;
    const r = a.shape[0];
    const inputs = a.shape.slice(1).reduce((x, y) => x * y, 1);
    const bOk = b.shape.length === a.shape.length && b.shape[1] === r && b.shape.slice(2).every((d) => d === 1);
    if (a.shape.length < 2 || a.shape.length > 5 || !bOk) {
      context.report('SHAPE_MISMATCH', `hira_A ${fmtShape(a.shape)} and hira_B ${fmtShape(b.shape)} are not (r, inputs${conv ? ', kernel…' : ''}) and (outputs, r${conv ? ', 1…' : ''})`);
      return null;
    }
    if (r !== o.r) {
      context.report('BAD_CONFIG', `hira_A ${fmtShape(a.shape)} has rank ${r} but the config's r is ${o.r}`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftHira.name,
      kind: conv ? 'conv' : 'linear',
      deltaShape: conv ? [b.shape[0], ...a.shape.slice(1)] : [b.shape[0], inputs],
      rank: r,
      alpha: 1,
      scale: 1,
      tensors: { a, b },
      update: { kind: 'transform', cost: r + 2 },
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
