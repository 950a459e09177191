/**
 * Full differences (LyCORIS modules/full.py; ComfyUI's "diff" patches): W += w·diff and
 * bias += w·diff_b, diff shaped like W. The engine reads diff by row slabs like W itself.
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { denseRows } from './factor-io.js';

export const full: Algorithm = {
  name: 'full',
  title: 'full diff',
  defines: ['diff', 'diff_b'],
  roles: ['diff', 'diff_b'],

  build(tensors, context) {
    const diff = tensors.get('diff');
    const diffB = tensors.get('diff_b');
    if (!diff) {
      context.report('UNSUPPORTED_FORMAT', `has diff_b but no diff`);
      return null;
    }
    if (diff.shape.length < 1 || (diffB && (diffB.shape.length !== 1 || diffB.shape[0] !== diff.shape[0]))) {
      context.report('SHAPE_MISMATCH', `diff ${fmtShape(diff.shape)} and diff_b ${diffB ? fmtShape(diffB.shape) : ''} do not fit together`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: full.name,
      kind: diff.shape.length > 2 ? 'conv' : 'linear',
      deltaShape: diff.shape.slice(),
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { diff },
      update: { kind: 'dense' },
      fanInFanOut: false,
      ...(diffB ? { biasB: diffB } : {}),
    };
  },

  async load(file, module) {
    return [{ kind: 'dense', rows: denseRows(file, module.tensors.diff) }];
  },
};
