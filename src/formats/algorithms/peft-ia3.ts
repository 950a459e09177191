/**
 * PEFT (IA)³ (tuners/ia3): one learned vector `ia3_l` per module, merged as W' = W ⊙ l along the
 * inputs for the config's `feedforward_modules` and along the outputs for the others (a Linear's l
 * is stored (1, in) or (out, 1), a conv's (1, channels, 1…); fan_in_fan_out only transposes it to
 * the stored weight, as PEFT's merge does). A module scaled along its outputs also scales its
 * layer's bias by l, as PEFT's merge does (when the base has that bias). PEFT has no weight for
 * (IA)³: a user weight s scales by 1 + s·(l − 1).
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { product } from '../../integers.js';

export const peftIa3: Algorithm = {
  name: 'peft-ia3',
  title: '(IA)³ (PEFT)',
  defines: ['ia3_l'],
  roles: ['ia3_l'],

  build(tensors, context) {
    const l = tensors.get('ia3_l')!;
    const feedforward = context.options?.feedforward;
    if (typeof feedforward !== 'boolean') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT (IA)³ tensors (ia3_l) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const n = product(l.shape);
    const conv = l.shape.length > 2;
    // Linear: (1, in) feeds the inputs, (out, 1) the outputs; conv: (1, channels, 1…) either way.
    const fits = conv
      ? l.shape[0] === 1 && l.shape.slice(2).every((d) => d === 1)
      : l.shape.length === 2 && (feedforward ? l.shape[0] === 1 : l.shape[1] === 1);
    if (!fits) {
      context.report('SHAPE_MISMATCH', `ia3_l ${fmtShape(l.shape)} does not fit a ${feedforward ? 'feedforward module (scaled along its inputs)' : 'module scaled along its outputs'}; check feedforward_modules in the config`);
      return null;
    }
    const open = conv ? l.shape.slice(2).map(() => -1) : [];
    return {
      ...moduleBasics(context),
      algorithm: peftIa3.name,
      kind: conv ? 'conv' : 'linear',
      deltaShape: feedforward ? [-1, n, ...open] : [n, -1, ...open],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { l },
      // On split tensors holding a fused module's rows: each its own rows' factors, or the inputs' alike (splitRows).
      update: { kind: 'transform', cost: 0, anyLayout: true, splitRows: true },
      // Conv1D weights are stored (in, out); convolutions never are.
      fanInFanOut: !conv && context.options?.fan_in_fan_out === true,
      // The output side also scales the layer's bias.
      ...(feedforward ? {} : { biasScale: l }),
    };
  },

  async load(file, module) {
    // Outputs where the inputs are the base's (-1): the plan fills in a split tensor's rows, never the inputs.
    return [{ kind: 'scale', axis: module.deltaShape[1] === -1 ? 'out' : 'in', w: f32Bytes(await readValues(file, module.tensors.l)), factor: true }];
  },
};
