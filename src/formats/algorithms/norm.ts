/**
 * Norm-layer tuning (LyCORIS modules/norms.py): a LayerNorm or GroupNorm's weight += w·w_norm and
 * bias += w·b_norm, both vectors of the layer's size.
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { denseRows } from './factor-io.js';
import { product } from '../../integers.js';

export const norm: Algorithm = {
  name: 'norm',
  title: 'norm diff',
  defines: ['w_norm', 'b_norm'],
  roles: ['w_norm', 'b_norm'],

  build(tensors, context) {
    const wNorm = tensors.get('w_norm');
    const bNorm = tensors.get('b_norm');
    if (!wNorm) {
      context.report('UNSUPPORTED_FORMAT', 'has b_norm but no w_norm');
      return null;
    }
    const n = product(wNorm.shape);
    if (wNorm.shape.length !== 1 || (bNorm && (bNorm.shape.length !== 1 || bNorm.shape[0] !== n))) {
      context.report('SHAPE_MISMATCH', `w_norm ${fmtShape(wNorm.shape)} and b_norm ${bNorm ? fmtShape(bNorm.shape) : ''} should be vectors of one size`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: norm.name,
      kind: 'linear',
      deltaShape: [n],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { wNorm },
      update: { kind: 'dense' },
      fanInFanOut: false,
      ...(bNorm ? { biasB: bNorm } : {}),
    };
  },

  // LyCORIS's norm modules have no bypass forward: bypass_mode leaves them as they merge.
  lycorisBypass: (module) => module,

  async load(file, module) {
    return [{ kind: 'dense', rows: denseRows(file, module.tensors.wNorm) }];
  },
};
