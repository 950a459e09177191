/**
 * PEFT DeLoRA (tuners/delora): `delora_A` (r, in), `delora_B` (out, r), `delora_lambda` (1) and
 * `delora_w_norm` (in), the base weight's column norms ‖W[:, i]‖ taken when the adapter was
 * created and saved with it (a persistent buffer). PEFT's get_delta_weight:
 *   ΔW = B · diag(λ / r / (‖A_k,:‖ · ‖B_:,k‖)) · A · diag(w_norm),
 * each norm clamped below at 1e-4; r is the module's rank (rank_pattern included). The update does
 * not read W as it stands (the norms are the saved ones), so it is merged as the low-rank product of
 * B scaled per column and A scaled per input, formed in float64. DeLoRA adapts nn.Linear only and
 * has no fan_in_fan_out.
 */
import { fmtShape, unscaledLowRankModule, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { product } from '../../integers.js';

/** PEFT's lower bound on each row norm of A and column norm of B. */
const NORM_FLOOR = 1e-4;

export const peftDelora: Algorithm = {
  name: 'peft-delora',
  title: 'DeLoRA (PEFT)',
  defines: ['delora_A', 'delora_B', 'delora_lambda', 'delora_w_norm'],
  roles: ['delora_A', 'delora_B', 'delora_lambda', 'delora_w_norm'],

  build(tensors, context) {
    const o = context.options;
    if (!o || typeof o.r !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT DeLoRA tensors (delora_A, delora_B) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const a = tensors.get('delora_A'), b = tensors.get('delora_B'), lambda = tensors.get('delora_lambda'), wNorm = tensors.get('delora_w_norm');
    const missing = [['delora_A', a], ['delora_B', b], ['delora_lambda', lambda], ['delora_w_norm', wNorm]].filter(([, t]) => !t).map(([n]) => n);
    if (!a || !b || !lambda || !wNorm) {
      context.report('UNSUPPORTED_FORMAT', `needs delora_A, delora_B, delora_lambda and delora_w_norm (the base weight's column norms PEFT saves with it); ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} missing`);
      return null;
    }
    const r = a.shape[0];
    if (a.shape.length !== 2 || b.shape.length !== 2 || b.shape[1] !== r || wNorm.shape.length !== 1 || wNorm.shape[0] !== a.shape[1] || product(lambda.shape) !== 1) {
      context.report('SHAPE_MISMATCH', `delora_A ${fmtShape(a.shape)}, delora_B ${fmtShape(b.shape)}, delora_lambda ${fmtShape(lambda.shape)} and delora_w_norm ${fmtShape(wNorm.shape)} do not fit together (expected (r, in), (out, r), (1), (in))`);
      return null;
    }
    if (r !== o.r) {
      context.report('BAD_CONFIG', `has rank ${r} but the config (r or rank_pattern) says ${o.r}`);
      return null;
    }
    return unscaledLowRankModule(context, peftDelora.name, [b.shape[0], a.shape[1]], r, { a, b, lambda, wNorm });
  },

  async load(file, module) {
    const { a, b, lambda, wNorm } = module.tensors;
    const [r, inF] = a.shape;
    const out = b.shape[0];
    const [av, bv, lv, nv] = await Promise.all([readValues(file, a), readValues(file, b), readValues(file, lambda), readValues(file, wNorm)]);
    const fa = new Float32Array(r * inF), fb = new Float32Array(out * r);
    for (let k = 0; k < r; k++) {
      let an = 0, bn = 0;
      for (let i = 0; i < inF; i++) an += av[k * inF + i] ** 2;
      for (let o = 0; o < out; o++) bn += bv[o * r + k] ** 2;
      const d = lv[0] / r / (Math.max(Math.sqrt(an), NORM_FLOOR) * Math.max(Math.sqrt(bn), NORM_FLOOR));
      for (let i = 0; i < inF; i++) fa[k * inF + i] = av[k * inF + i] * nv[i];
      for (let o = 0; o < out; o++) fb[o * r + k] = bv[o * r + k] * d;
    }
    return [{ kind: 'low-rank', a: f32Bytes(fa), b: f32Bytes(fb), rank: r }];
  },
};
