/**
 * (IA)³ (LyCORIS modules/ia3.py): ΔW = W ⊙ w, so the merged weight is W ⊙ (1 + s·w) with s the
 * user weight. `on_input` (a stored flag) says which side w scales: set, one value per input
 * channel; unset, one per output channel. A conv's w is (1, channels, 1, 1) and scales every
 * kernel position of its channel. The other side of W is whatever the base has.
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { readFloat } from '../read-float.js';
import { BYPASS_SOURCE, lycorisBypassOn } from './lycoris-bypass.js';

export const ia3: Algorithm = {
  name: 'ia3',
  title: '(IA)³',
  // A bare `.weight` is too common to mean (IA)³ by itself; LyCORIS always saves on_input with it.
  defines: ['on_input'],
  roles: ['on_input', 'weight'],
  scalars: ['on_input'],

  build(tensors, context) {
    const weight = tensors.get('weight');
    const onInput = context.scalars?.get('on_input');
    if (!weight || onInput === undefined) {
      context.report('UNSUPPORTED_FORMAT', 'needs weight and on_input');
      return null;
    }
    const conv = weight.shape.length > 1;
    const n = conv ? weight.shape[1] : weight.shape[0];
    if (weight.shape.length === 0 || (conv && (weight.shape[0] !== 1 || weight.shape.slice(2).some((d) => d !== 1)))) {
      context.report('SHAPE_MISMATCH', `weight ${fmtShape(weight.shape)} is neither (channels,) nor (1, channels, 1…)`);
      return null;
    }
    const open = conv ? weight.shape.slice(2).map(() => -1) : [];
    return {
      ...moduleBasics(context),
      algorithm: ia3.name,
      kind: conv ? 'conv' : 'linear',
      // -1: taken from the base (the plan fills in the side w does not scale, and a conv's kernel).
      deltaShape: onInput ? [-1, n, ...open] : [n, -1, ...open],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { weight },
      // A fused module's scaling on split tensors: each takes its own rows' factors (on the
      // outputs) or the same factors (on the inputs), as on the fused weight (splitRows).
      update: { kind: 'transform', cost: 0, splitRows: true },
      fanInFanOut: false,
    };
  },

  lycorisBypass(module, context) {
    // On the input side x·(1 + w) goes through W as W ⊙ (1 + w) does; on the output side the bias is scaled too.
    if (module.deltaShape[0] === -1 || !lycorisBypassOn(context)) return module;
    context.report('UNSUPPORTED_FORMAT', `is (IA)³ on the output side, trained with ${BYPASS_SOURCE}, whose forward scales the layer's whole output, bias included, where a merge scales the weight alone; that is not supported`);
    return null;
  },

  async load(file, module) {
    // Outputs where the inputs are the base's (-1): the plan fills in a split tensor's rows, never the inputs.
    return [{ kind: 'scale', axis: module.deltaShape[1] === -1 ? 'out' : 'in', w: await readFloat(file, module.tensors.weight) }];
  },
};
