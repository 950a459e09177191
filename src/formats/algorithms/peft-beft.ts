/**
 * PEFT BEFT (tuners/beft): a trained change of a Linear layer's bias, `beft_bias` (1, out), and
 * nothing else. PEFT's merge adds it to the base bias (bias += beft_bias.squeeze()) and leaves the
 * weight as it is; a layer without a bias cannot be merged (PEFT raises "Base layer has no bias"),
 * which the plan refuses the same way. There is no scale: the bias is added as saved.
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { MergeError } from '../../errors.js';

export const peftBeft: Algorithm = {
  name: 'peft-beft',
  title: 'BEFT (PEFT)',
  defines: ['beft_bias'],
  roles: ['beft_bias'],

  build(tensors, context) {
    const bias = tensors.get('beft_bias')!;
    if (!context.options) {
      context.report('UNSUPPORTED_FORMAT', 'has a PEFT BEFT tensor (beft_bias) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    // BeftLayer.update_layer creates it as (1, out_features); squeeze() then makes it the bias's (out).
    const shape = bias.shape;
    if (shape.length === 0 || shape.length > 2 || (shape.length === 2 && shape[0] !== 1)) {
      context.report('SHAPE_MISMATCH', `beft_bias ${fmtShape(shape)} should be (1, out), one value per output feature`);
      return null;
    }
    const out = shape[shape.length - 1];
    return {
      ...moduleBasics(context),
      algorithm: peftBeft.name,
      kind: 'linear',
      deltaShape: [out],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: {},
      update: { kind: 'none' },
      fanInFanOut: false,
      biasB: bias,
      biasBScale: 1,
    };
  },

  load(file, module) {
    // The bias change is read by the plan's bias terms; the weight has no update to load.
    throw new MergeError('PLAN_INVALID', `${file.source.name}: module "${module.key}" changes only its bias and has no weight update to load`);
  },
};
