/**
 * PEFT VeRA (tuners/vera): ΔW = (λ_b ⊙ vera_B[:out, :]) · (λ_d ⊙ vera_A[:, :in]), with vera_A
 * (r, in_max) and vera_B (out_max, r) shared by every module of the adapter and sliced to each
 * layer, and no α (scale 1). fan_in_fan_out layers store W as (in, out), like PEFT's LoRA.
 */
import { fmtShape, unscaledLowRankModule, type Algorithm } from './algorithm.js';
import { sharedProjectionPiece } from './shared-projections.js';

export const vera: Algorithm = {
  name: 'vera',
  title: 'VeRA',
  defines: ['vera_lambda_b', 'vera_lambda_d'],
  roles: ['vera_lambda_b', 'vera_lambda_d', 'vera_A', 'vera_B'],

  build(tensors, context) {
    const lb = tensors.get('vera_lambda_b'), ld = tensors.get('vera_lambda_d');
    const a = tensors.get('vera_A'), b = tensors.get('vera_B');
    if (lb && ld && !a && !b && context.options?.drawn_projections_r !== undefined) {
      // Saved with save_projection: false: vera_A (r, in_max) and vera_B are drawn at load (shared-projections.ts).
      const r = context.options.drawn_projections_r as number;
      if (lb.shape.length !== 1 || ld.shape.length !== 1 || ld.shape[0] !== r) {
        context.report('SHAPE_MISMATCH', `VeRA vera_lambda_b ${fmtShape(lb.shape)} and vera_lambda_d ${fmtShape(ld.shape)} do not fit the config's r ${r} (expected (out) and (r))`);
        return null;
      }
      return unscaledLowRankModule(context, vera.name, [lb.shape[0], -1], r, { lb, ld });
    }
    if (!lb || !ld || !a || !b) {
      context.report('UNSUPPORTED_FORMAT', 'needs vera_lambda_b, vera_lambda_d and the shared vera_A and vera_B');
      return null;
    }
    const r = ld.shape[0];
    if (lb.shape.length !== 1 || ld.shape.length !== 1 || a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== r || b.shape[1] !== r || b.shape[0] < lb.shape[0]) {
      context.report('SHAPE_MISMATCH', `VeRA vera_lambda_b ${fmtShape(lb.shape)}, vera_lambda_d ${fmtShape(ld.shape)}, vera_A ${fmtShape(a.shape)} and vera_B ${fmtShape(b.shape)} do not fit together`);
      return null;
    }
    // The layer's inputs are the first `in` of vera_A's columns: the base says how many.
    return unscaledLowRankModule(context, vera.name, [lb.shape[0], -1], r, { lb, ld, a, b });
  },

  load(file, module, delta) {
    return sharedProjectionPiece(file, module, delta, 'VeRA', 'vera_A');
  },
};
