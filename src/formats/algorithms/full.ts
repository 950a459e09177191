/**
 * Full differences (LyCORIS modules/full.py; ComfyUI's "diff" patches): W += w·diff, diff shaped
 * like W. The engine reads diff by row slabs like W itself. Its `diff_b` is a part of its own
 * (module-parts.ts), as any module's may be.
 */
import { moduleBasics, type Algorithm } from './algorithm.js';
import { denseRows } from './factor-io.js';

export const full: Algorithm = {
  name: 'full',
  title: 'full diff',
  defines: ['diff'],
  roles: ['diff'],

  build(tensors, context) {
    const diff = tensors.get('diff')!;
    if (diff.shape.length < 1) {
      context.report('SHAPE_MISMATCH', `diff ${diff.name} is a scalar; it should be shaped like the weight`);
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
    };
  },

  async load(file, module) {
    return [{ kind: 'dense', rows: denseRows(file, module.tensors.diff) }];
  },
};
