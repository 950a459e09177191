/**
 * A replaced weight (ComfyUI's `set_weight` patch, comfy/weight_adapter: `weight.copy_(set_weight)`
 * in calculate_weight): the tensor takes the stored values whatever the strength, and erases what
 * patched it before. BFL's FLUX.1 control LoRAs carry their q/k norm scales so (BFL's loader
 * load_state_dict's them over the model's, diffusers' _load_norm_into_transformer too). The module
 * built here is a carrier only: the parser turns it into a replacement of the tensor its name
 * gives (single-file-adapter.ts), which the plan resolves and checks like any replacement.
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';

export const set: Algorithm = {
  name: 'set',
  title: 'a replaced weight (set_weight)',
  defines: ['set_weight'],
  roles: ['set_weight'],

  build(tensors, context) {
    const value = tensors.get('set_weight')!;
    if (value.shape.length < 1) {
      context.report('SHAPE_MISMATCH', `set_weight ${value.name} ${fmtShape(value.shape)} is a scalar; it should be shaped like the tensor it replaces`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: set.name,
      kind: 'linear',
      deltaShape: value.shape.slice(),
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { set_weight: value },
      update: { kind: 'none' },
      fanInFanOut: false,
    };
  },

  load(file, module) {
    // Replacements are read by the pipeline itself; a module of this kind never reaches the engine.
    throw new MergeError('PLAN_INVALID', `${file.source.name}: module "${module.key}" replaces a tensor and has no update to load`);
  },
};
