/**
 * PEFT PVeRA (tuners/pvera), probabilistic VeRA: per module `pvera_lambda_b` (out) and
 * `pvera_lambda_d` (2r), with `base_model.pvera_A` (2r, in_max) and `base_model.pvera_B`
 * (out_max, r) shared by every module and sliced to each layer. The first r rows of A (and of λ_d)
 * give the mean, the last r the log-variance PVeRA samples from while training; PEFT's
 * get_delta_weight merges the mean alone:
 *   ΔW = (λ_b ⊙ B[:out, :]) · (λ_d[:r] ⊙ A[:r, :in]),  transposed for a Conv1D (fan_in_fan_out).
 * Merged as that rank-r product, like VeRA's.
 */
import { fmtShape, unscaledLowRankModule, type Algorithm } from './algorithm.js';
import { sharedProjectionPiece } from './shared-projections.js';

export const peftPvera: Algorithm = {
  name: 'peft-pvera',
  title: 'PVeRA (PEFT)',
  defines: ['pvera_lambda_b', 'pvera_lambda_d'],
  roles: ['pvera_lambda_b', 'pvera_lambda_d', 'pvera_A', 'pvera_B'],

  build(tensors, context) {
    const o = context.options;
    if (!o || o.pvera_config !== true) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT PVeRA tensors outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const lb = tensors.get('pvera_lambda_b'), ld = tensors.get('pvera_lambda_d');
    const a = tensors.get('pvera_A'), b = tensors.get('pvera_B');
    if (lb && ld && !a && !b && o.drawn_projections_r !== undefined) {
      // Saved with save_projection: false: pvera_A (2r, in_max) and pvera_B are drawn at load (shared-projections.ts).
      const r = o.drawn_projections_r as number;
      if (lb.shape.length !== 1 || ld.shape.length !== 1 || ld.shape[0] !== 2 * r) {
        context.report('SHAPE_MISMATCH', `PVeRA pvera_lambda_b ${fmtShape(lb.shape)} and pvera_lambda_d ${fmtShape(ld.shape)} do not fit the config's r ${r} (expected (out) and (2r))`);
        return null;
      }
      return unscaledLowRankModule(context, peftPvera.name, [lb.shape[0], -1], r, { lb, ld });
    }
    if (!lb || !ld || !a || !b) {
      context.report('UNSUPPORTED_FORMAT', `needs pvera_lambda_b and pvera_lambda_d and the shared pvera_A and pvera_B; ${lb ? 'pvera_lambda_d' : 'pvera_lambda_b'} is missing`);
      return null;
    }
    const r = b.shape[1];
    if (lb.shape.length !== 1 || ld.shape.length !== 1 || a.shape.length !== 2 || b.shape.length !== 2 || ld.shape[0] !== 2 * r || a.shape[0] !== 2 * r || b.shape[0] < lb.shape[0]) {
      context.report('SHAPE_MISMATCH', `PVeRA pvera_lambda_b ${fmtShape(lb.shape)}, pvera_lambda_d ${fmtShape(ld.shape)}, pvera_A ${fmtShape(a.shape)} and pvera_B ${fmtShape(b.shape)} do not fit together (expected (out), (2r), (2r, in_max) and (out_max ≥ out, r))`);
      return null;
    }
    if (r !== o.r) {
      context.report('BAD_CONFIG', `has rank ${r} but the config's r is ${o.r}`);
      return null;
    }
    // The layer's inputs are the first `in` of pvera_A's columns: the base says how many.
    return unscaledLowRankModule(context, peftPvera.name, [lb.shape[0], -1], r, { lb, ld, a, b });
  },

  // The mean half alone: A's first r rows and λ_d's first r values.
  load(file, module, delta) {
    return sharedProjectionPiece(file, module, delta, 'PVeRA', 'pvera_A');
  },
};
