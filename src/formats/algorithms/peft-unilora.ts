/**
 * PEFT UniLoRA (tuners/unilora): every entry of a module's A (r, in) and B (out, r) is an entry of
 * one trained vector θ (`base_model.unilora_theta_d`, theta_d_length) shared by all modules, times
 * a fixed scale: A = θ[indices_A] ⊙ scales_A, B = θ[indices_B] ⊙ scales_B, with
 * `unilora_indices_A`/`_B` (int64) and `unilora_scales_A`/`_B` saved per module under
 * save_indices. PEFT's get_delta_weight is B·A (transposed for a Conv1D), with no other scale.
 * Merged as that rank-r product, each entry θ·scale formed in float32 as PEFT forms it.
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readIntegers, readValues } from './factor-io.js';

const INTEGER = ['I64', 'I32'];

export const peftUnilora: Algorithm = {
  name: 'peft-unilora',
  title: 'UniLoRA (PEFT)',
  defines: ['unilora_indices_A', 'unilora_indices_B', 'unilora_scales_A', 'unilora_scales_B'],
  roles: ['unilora_indices_A', 'unilora_indices_B', 'unilora_scales_A', 'unilora_scales_B', 'unilora_theta_d'],

  build(tensors, context) {
    const o = context.options;
    if (!o || o.unilora_config !== true) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT UniLoRA tensors outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const ia = tensors.get('unilora_indices_A'), ib = tensors.get('unilora_indices_B');
    const sa = tensors.get('unilora_scales_A'), sb = tensors.get('unilora_scales_B'), theta = tensors.get('unilora_theta_d');
    const missing = [['unilora_indices_A', ia], ['unilora_indices_B', ib], ['unilora_scales_A', sa], ['unilora_scales_B', sb]].filter(([, t]) => !t).map(([n]) => n);
    if (!ia && !ib && !sa && !sb) {
      context.report('UNSUPPORTED_FORMAT', 'has no unilora_indices_A/_B or unilora_scales_A/_B (saved with save_indices: false): PEFT regenerates them from proj_seed with numpy\'s generator, handing one shuffled sequence out to the modules in the model\'s named_modules() order, which neither the adapter nor the base records, so where each entry of A and B comes from cannot be told');
      return null;
    }
    if (!ia || !ib || !sa || !sb || !theta) {
      context.report('UNSUPPORTED_FORMAT', `needs unilora_indices_A/_B and unilora_scales_A/_B (saved with save_indices: true) and the shared base_model.unilora_theta_d; ${missing.length ? missing.join(', ') : 'unilora_theta_d'} ${missing.length === 1 || !missing.length ? 'is' : 'are'} missing`);
      return null;
    }
    const r = ia.shape[0], inF = ia.shape[1], out = ib.shape[0];
    const same = (x: readonly number[], y: readonly number[]) => x.length === y.length && x.every((d, i) => d === y[i]);
    if (ia.shape.length !== 2 || ib.shape.length !== 2 || ib.shape[1] !== r || !same(sa.shape, ia.shape) || !same(sb.shape, ib.shape) || theta.shape.length !== 1) {
      context.report('SHAPE_MISMATCH', `unilora_indices_A ${fmtShape(ia.shape)}, unilora_indices_B ${fmtShape(ib.shape)}, unilora_scales_A ${fmtShape(sa.shape)}, unilora_scales_B ${fmtShape(sb.shape)} and unilora_theta_d ${fmtShape(theta.shape)} do not fit together (expected (r, in) twice, (out, r) twice, and a vector)`);
      return null;
    }
    if (!INTEGER.includes(ia.dtype) || !INTEGER.includes(ib.dtype)) {
      context.report('UNSUPPORTED_FORMAT', `unilora_indices_A and _B are ${ia.dtype} and ${ib.dtype}; expected I64, as PEFT saves them`);
      return null;
    }
    if (r !== o.r || theta.shape[0] !== o.theta_d_length) {
      context.report('BAD_CONFIG', `has rank ${r} and a theta_d of ${theta.shape[0]}, but the config says r ${o.r} and theta_d_length ${o.theta_d_length}`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftUnilora.name,
      kind: 'linear',
      deltaShape: [out, inF],
      rank: r,
      alpha: 1,
      scale: 1,
      tensors: { sa, sb, theta },
      integerTensors: { ia, ib },
      update: { kind: 'low-rank', rank: r },
      fanInFanOut: false,
    };
  },

  async load(file, module) {
    const { sa, sb, theta } = module.tensors;
    const { ia, ib } = module.integerTensors!;
    const [tv, sav, sbv, iav, ibv] = await Promise.all([readValues(file, theta), readValues(file, sa), readValues(file, sb), readIntegers(file, ia), readIntegers(file, ib)]);
    const n = tv.length;
    const gather = (idx: Float64Array, scales: Float32Array, name: string) => {
      const outv = new Float32Array(idx.length);
      for (let k = 0; k < idx.length; k++) {
        // Indexing θ with a position outside it raises in PEFT.
        if (!(idx[k] >= 0 && idx[k] < n)) throw new MergeError('BAD_CONFIG', `UniLoRA module "${module.name}": ${name} entry ${k} (${idx[k]}) is outside theta_d's ${n} values`);
        outv[k] = tv[idx[k]] * scales[k];
      }
      return outv;
    };
    const a = gather(iav!, sav, 'unilora_indices_A'), b = gather(ibv!, sbv, 'unilora_indices_B');
    return [{ kind: 'low-rank', a: f32Bytes(a), b: f32Bytes(b), rank: ia.shape[0] }];
  },
};
