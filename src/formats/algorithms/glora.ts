/**
 * GLoRA (LyCORIS modules/glora.py): ΔW = (W·a1·a2 + b1·b2)·α/r, with a1 (in, r), a2 (r, in),
 * b1 (out, r), b2 (r, in) or, for a conv, (r, in, kh, kw) with a1, a2, b1 1×1; r = rows of a2.
 * Trained with LyCORIS's rs_lora (kohya's ss_network_args) the scale is α/√r with α as stored; trained
 * with its bypass_mode, that scale squared (./lycoris-bypass.ts).
 * On a conv, W·a1·a2 mixes input channels at every kernel position (einsum "o i ..., i j").
 * With a Tucker core bm (r, r, kh, kw) (LyCORIS 3.0's use_tucker on a k×k conv; b1 and b2 then
 * 1×1), b1·b2 is tucker_weight_from_conv: ΔB[o, c, k] = Σ_mn bm[m, n, k]·b1[o, m]·b2[n, c].
 * W is the weight as it stands when GLoRA's turn comes (the base, when it comes first).
 * Old LyCORIS files with a1 and a2 the other way round (which ComfyUI guesses from shapes) are
 * refused unless their shapes read as the current form.
 */
import { gloraProjection, tuckerFactors } from '../../algorithms/math/low-rank-forms.js';
import { transpose } from '../../algorithms/math/matrix.js';
import { alphaScale, fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, lowRankPiece, readMatrix, readValues } from './factor-io.js';
import { product } from '../../integers.js';
import { BYPASS_SOURCE, lycorisBypassOn } from './lycoris-bypass.js';

export const glora: Algorithm = {
  name: 'glora',
  title: 'GLoRA',
  defines: ['a1', 'a2', 'b1', 'b2'],
  roles: ['a1', 'a2', 'b1', 'b2', 'bm'],

  build(tensors, context) {
    const a1 = tensors.get('a1'), a2 = tensors.get('a2'), b1 = tensors.get('b1'), b2 = tensors.get('b2');
    if (!a1 || !a2 || !b1 || !b2) {
      context.report('UNSUPPORTED_FORMAT', 'needs a1.weight, a2.weight, b1.weight and b2.weight');
      return null;
    }
    const ones = (s: readonly number[]) => s.slice(2).every((d) => d === 1);
    const r = a2.shape[0];
    const inF = a1.shape[0];
    const fits = [a1, a2, b1, b2].every((t) => t.shape.length >= 2) && ones(a1.shape) && ones(a2.shape) && ones(b1.shape)
      && a1.shape[1] === r && a2.shape[1] === inF && b1.shape[1] === r && b2.shape[0] === r && b2.shape[1] === inF;
    if (!fits) {
      context.report('SHAPE_MISMATCH', `GLoRA a1 ${fmtShape(a1.shape)}, a2 ${fmtShape(a2.shape)}, b1 ${fmtShape(b1.shape)}, b2 ${fmtShape(b2.shape)} do not fit together (expected a1 (in, r), a2 (r, in), b1 (out, r), b2 (r, in…))`);
      return null;
    }
    const bm = tensors.get('bm');
    if (bm && !(bm.shape.length >= 3 && bm.shape[0] === r && bm.shape[1] === r && ones(b2.shape))) {
      context.report('SHAPE_MISMATCH', `GLoRA Tucker core bm.weight ${fmtShape(bm.shape)} does not fit b1 ${fmtShape(b1.shape)} and b2 ${fmtShape(b2.shape)} (expected (r, r, kh, kw) and a 1×1 b2)`);
      return null;
    }
    const kernelDims = bm ? bm.shape.slice(2) : b2.shape.slice(2);
    const kernel = product(kernelDims);
    return {
      ...moduleBasics(context),
      algorithm: glora.name,
      kind: kernelDims.length > 0 ? 'conv' : 'linear',
      deltaShape: [b1.shape[0], b2.shape[1], ...kernelDims],
      rank: r,
      // LyCORIS's GLoRA stores α itself, so rs_lora's α/√r is known only from the training metadata.
      ...alphaScale(context.alpha, r, context.rsLora || (context.networkArgs?.lycorisRsLora() ?? false)),
      tensors: { a1, a2, b1, b2, ...(bm ? { bm } : {}) },
      // Each output row's change reads that row alone (w_o·a1·a2 + b1_o·b2): a fused module on split
      // tensors is the same map on each, with its rows of b1 (splitRows).
      update: { kind: 'transform', cost: 2 * r * kernel + r, splitRows: true },
      fanInFanOut: false,
    };
  },

  lycorisBypass(module, context) {
    if (!lycorisBypassOn(context)) return module;
    // Its bypass forward leaves use_scalar's scalar out, so it is never trained (it starts at 0), yet
    // custom_state_dict saves a2 and b2 multiplied by it.
    if (context.networkArgs?.lycorisUseScalar()) {
      context.report('UNSUPPORTED_FORMAT', `is GLoRA trained with use_scalar and ${BYPASS_SOURCE}, whose forward never applies the scalar LyCORIS multiplies a2 and b2 by when it saves them, so the saved factors are not the ones trained`);
      return null;
    }
    // LyCORIS's GLoRA _bypass_forward scales a2·x and b2·x by α/r and a1's and b1's outputs by α/r again.
    const rule = module.scaleOrigin?.kind === 'alpha' ? module.scaleOrigin.rule : 'α/r';
    return { ...module, scale: module.scale * module.scale, scaleOrigin: { kind: 'method', what: `(${rule})² (LyCORIS bypass_mode applies it twice)` } };
  },

  async load(file, module) {
    const { a1, a2, b1, b2, bm } = module.tensors;
    const kernel = product(module.deltaShape.slice(2));
    const { p, q } = gloraProjection(await readMatrix(file, a1), await readMatrix(file, a2), kernel);
    const b = bm
      ? tuckerFactors(await readValues(file, bm), kernel, transpose(await readMatrix(file, b1)), await readMatrix(file, b2))
      : { b: await readMatrix(file, b1), a: await readMatrix(file, b2) };
    // W·a1·a2 is taken from W before b1·b2 is added: both come from the same W.
    return [{ kind: 'project', p: f32Bytes(p.data), q: f32Bytes(q.data), rank: p.cols }, lowRankPiece(b)];
  },
};
