/**
 * LyCORIS LoHa (modules/loha.py): ΔW = (w1a·w1b) ⊙ (w2a·w2b) · α/r with r = rows of w1b. w1b and
 * w2b are (r, in) or, for convolutions, (r, in·kh·kw) flattened. The engine gets the exact rank
 * r·r₂ product of the factors' Khatri–Rao products,
 *   B[o, i·r₂+j] = w1a[o,i]·w2a[o,j],   A[i·r₂+j, c] = w1b[i,c]·w2b[j,c],
 * so every executor merges it with the same fused low-rank kernel.
 */
import { decodeToF32 } from '../../dtype.js';
import type { FloatTensorBytes } from '../../engine/merge-op.js';
import { readFloat } from '../read-float.js';
import { alphaScale, fmtShape, moduleBasics, type Algorithm } from './algorithm.js';

export const loha: Algorithm = {
  name: 'loha',
  title: 'LoHa',
  defines: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2'],
  roles: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2', 'dora_scale'],

  build(tensors, context) {
    if (tensors.has('hada_t1') || tensors.has('hada_t2')) {
      context.report('UNSUPPORTED_FORMAT', 'is LoHa with Tucker decomposition (hada_t1/hada_t2), which is not supported yet');
      return null;
    }
    const w1a = tensors.get('hada_w1_a'), w1b = tensors.get('hada_w1_b');
    const w2a = tensors.get('hada_w2_a'), w2b = tensors.get('hada_w2_b');
    if (!w1a || !w1b || !w2a || !w2b) {
      context.report('UNSUPPORTED_FORMAT', 'needs exactly hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b');
      return null;
    }
    const rank = w1b.shape[0];
    const fits = w1a.shape.length === 2 && w2a.shape.length === 2 && w1b.shape.length >= 2 && w2b.shape.length === w1b.shape.length
      && w1a.shape[1] === rank && w2a.shape[1] === w2b.shape[0] && w1a.shape[0] === w2a.shape[0]
      && w1b.shape.slice(1).join() === w2b.shape.slice(1).join();
    if (!fits) {
      const shapes = [w1a, w1b, w2a, w2b].map((t) => fmtShape(t.shape)).join(', ');
      context.report('SHAPE_MISMATCH', `LoHa factors w1_a, w1_b, w2_a, w2_b ${shapes} do not fit together`);
      return null;
    }
    if (tensors.has('dora_scale')) {
      context.report('UNSUPPORTED_FORMAT', 'DoRA on LoHa is not supported yet');
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: loha.name,
      kind: w1b.shape.length > 2 ? 'conv' : 'linear',
      deltaShape: [w1a.shape[0], ...w1b.shape.slice(1)],
      rank,
      ...alphaScale(context.alpha, rank, context.rsLora),
      tensors: { w1a, w1b, w2a, w2b },
      update: { kind: 'low-rank', rank: rank * w2b.shape[0] },
      fanInFanOut: false,
    };
  },

  async load(file, module) {
    const { w1a, w1b, w2a, w2b } = module.tensors;
    const [fb1, fa1, fb2, fa2] = (await Promise.all([w1a, w1b, w2a, w2b].map((t) => readFloat(file, t))))
      .map((t) => decodeToF32(t.data, t.dtype));
    const r1 = module.rank;
    const r2 = w2b.shape[0];
    const rank = r1 * r2;
    const inF = fa1.length / r1;
    const outF = fb1.length / r1;
    const ka = new Float32Array(rank * inF);
    for (let i = 0; i < r1; i++) {
      for (let j = 0; j < r2; j++) {
        const row = (i * r2 + j) * inF;
        for (let c = 0; c < inF; c++) ka[row + c] = fa1[i * inF + c] * fa2[j * inF + c];
      }
    }
    const kb = new Float32Array(outF * rank);
    for (let o = 0; o < outF; o++) {
      for (let i = 0; i < r1; i++) {
        for (let j = 0; j < r2; j++) kb[o * rank + i * r2 + j] = fb1[o * r1 + i] * fb2[o * r2 + j];
      }
    }
    const bytes = (x: Float32Array): FloatTensorBytes => ({ dtype: 'F32', data: new Uint8Array(x.buffer) });
    return { kind: 'low-rank', a: bytes(ka), b: bytes(kb), rank };
  },
};
