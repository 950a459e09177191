/**
 * PEFT RandLoRA (tuners/randlora): random bases shared by every module, `base_model.randlora_A`
 * (r, 1, min_max) and `base_model.randlora_B` (max_max, bases_max, r) (saved when
 * save_projection is true, the default), and per module `randlora_lambda` (r, nb) and
 * `randlora_gamma` (nb, min), where min and max are the layer's smaller and larger dim and
 * nb = ⌈min / r⌉. PEFT's get_scaled_bases and get_delta_weight, with j < r·nb:
 *   U_A[j, i] = λ[⌊j/nb⌋, j mod nb] · randlora_A[⌊j/nb⌋, 0, i] · γ[j mod nb, i]   (i < min)
 *   U_B[m, j] = randlora_B[m, ⌊j/r⌋, j mod r]                                      (m < max)
 *   ΔW = randlora_alpha/r · U_B·U_A when in ≤ out, its transpose otherwise,
 * transposed again under fan_in_fan_out. (U_A's rows run over λ's rows first, U_B's columns over
 * the bases first; PEFT pairs them by position, and so does this.) That is an exact product of
 * rank r·nb ≥ min: RandLoRA is full-rank by design, so its merge costs as much as a rank-min LoRA.
 * RandLoRA adapts nn.Linear and GPT-2's Conv1D only.
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

export const peftRandlora: Algorithm = {
  name: 'peft-randlora',
  title: 'RandLoRA (PEFT)',
  defines: ['randlora_lambda', 'randlora_gamma'],
  roles: ['randlora_lambda', 'randlora_gamma', 'randlora_A', 'randlora_B'],

  build(tensors, context) {
    const o = context.options;
    if (!o || typeof o.r !== 'number' || context.alpha === undefined) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT RandLoRA tensors (randlora_lambda, randlora_gamma) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const lambda = tensors.get('randlora_lambda'), gamma = tensors.get('randlora_gamma');
    const sa = tensors.get('randlora_A'), sb = tensors.get('randlora_B');
    if (!lambda || !gamma) {
      context.report('UNSUPPORTED_FORMAT', `needs randlora_lambda and randlora_gamma; ${lambda ? 'randlora_gamma' : 'randlora_lambda'} is missing`);
      return null;
    }
    if (!sa || !sb) {
      context.report('UNSUPPORTED_FORMAT', 'needs the shared base_model.randlora_A and base_model.randlora_B');
      return null;
    }
    const r = o.r;
    const nb = lambda.shape[1], min = gamma.shape[1];
    if (lambda.shape.length !== 2 || gamma.shape.length !== 2 || lambda.shape[0] !== r || gamma.shape[0] !== nb || nb !== Math.ceil(min / r)) {
      context.report('SHAPE_MISMATCH', `randlora_lambda ${fmtShape(lambda.shape)} and randlora_gamma ${fmtShape(gamma.shape)} are not (r, nb) and (nb, min(in, out)) with nb = ⌈min(in, out)/r⌉ for the config's r = ${r}`);
      return null;
    }
    if (sa.shape.length !== 3 || sa.shape[0] !== r || sa.shape[1] !== 1 || sa.shape[2] < min || sb.shape.length !== 3 || sb.shape[1] < nb || sb.shape[2] !== r) {
      context.report('SHAPE_MISMATCH', `the shared randlora_A ${fmtShape(sa.shape)} and randlora_B ${fmtShape(sb.shape)} are not (r, 1, ≥ ${min}) and (max, ≥ ${nb}, r) for r = ${r}`);
      return null;
    }
    const alpha = context.alpha;
    return {
      ...moduleBasics(context),
      algorithm: peftRandlora.name,
      kind: 'linear',
      // Which of the layer's dims is the smaller one is the base's to say.
      deltaShape: [-1, -1],
      rank: r * nb,
      alpha,
      scale: alpha / r,
      scaleOrigin: { kind: 'alpha', rule: 'α/r', stated: true },
      tensors: { lambda, gamma, sa, sb },
      update: { kind: 'low-rank', rank: r * nb },
      fanInFanOut: false,
    };
  },

  async load(file, module, delta) {
    const { lambda, gamma, sa, sb } = module.tensors;
    const [r, nb] = lambda.shape;
    const min = gamma.shape[1], rank = r * nb;
    // The tensors give the layer's smaller dim only; without a base (combine, resize) the larger one and which side is which are unknown.
    if (!delta) throw new MergeError('UNSUPPORTED_FORMAT', `RandLoRA module "${module.name}": its tensors do not say the layer's larger dim or which side is the smaller one; only a merge into a base model can read it`);
    const { out, in: inF } = delta;
    const max = Math.max(out, inF);
    if (Math.min(out, inF) !== min) throw new MergeError('SHAPE_MISMATCH', `RandLoRA module "${module.name}": randlora_gamma ${fmtShape(gamma.shape)} is for a layer whose smaller dim is ${min}, but the base's is (${out}, ${inF})`);
    if (max > sb.shape[0]) throw new MergeError('SHAPE_MISMATCH', `RandLoRA module "${module.name}": the layer's larger dim is ${max}, the shared randlora_B has only ${sb.shape[0]} rows`);
    const [lv, gv, av, bv] = await Promise.all([readValues(file, lambda), readValues(file, gamma), readValues(file, sa), readValues(file, sb)]);
    const minAll = sa.shape[2], basesAll = sb.shape[1];
    // U_A (rank × min) and U_B (max × rank) in float64 products, rounded once to f32.
    const ua = new Float32Array(rank * min), ub = new Float32Array(max * rank);
    for (let j = 0; j < rank; j++) {
      const k = Math.floor(j / nb), b = j % nb, l = lv[k * nb + b];
      for (let i = 0; i < min; i++) ua[j * min + i] = l * av[k * minAll + i] * gv[b * min + i];
    }
    for (let m = 0; m < max; m++) for (let j = 0; j < rank; j++) ub[m * rank + j] = bv[(m * basesAll + Math.floor(j / r)) * r + (j % r)];
    if (inF <= out) return [{ kind: 'low-rank', a: f32Bytes(ua), b: f32Bytes(ub), rank }];
    // in > out: ΔW = (U_B·U_A)ᵀ = U_Aᵀ·U_Bᵀ.
    const a = new Float32Array(rank * max), b = new Float32Array(min * rank);
    for (let j = 0; j < rank; j++) {
      for (let m = 0; m < max; m++) a[j * max + m] = ub[m * rank + j];
      for (let i = 0; i < min; i++) b[i * rank + j] = ua[j * min + i];
    }
    return [{ kind: 'low-rank', a: f32Bytes(a), b: f32Bytes(b), rank }];
  },
};
