/**
 * LoRA and LoCon (kohya sd-scripts networks/lora.py, LyCORIS modules/locon.py): ΔW = up·down, with
 * down (r, in) or, for a k×k convolution, (r, in, kh, kw), and up (out, r) or (out, r, 1, 1).
 * LoCon with a Tucker core (lora_mid, (r, r, kh, kw); down then (r, in, 1, 1)) is
 * ΔW[o, c, k] = Σ_ij mid[i, j, k]·up[o, i]·down[j, c] (rebuild_tucker), the same product with the
 * core folded into the right factor. Scale α/r. LyCORIS's `dora_scale` adds a DoRA magnitude, per
 * input column by default or per output row when trained with wd_on_output; PEFT's
 * `lora_magnitude_vector` (diffusers' trainers save it beside `lora_A`/`lora_B`) one per output row,
 * with no ε, and its `lora_B.bias` adds α/r·bias to the layer's bias (PEFT's lora_bias).
 * blissful-tuner's LoRA network (../blissful-network.ts) scales by α/√r under its
 * `use_rslora_flag` and, under its `use_dora_flag`, gives each Linear module a magnitude per output
 * row, `dora_layer.weight`, divided by the row norm clamped at 1e-6. A pair kohya sd-scripts' Flux,
 * SD3 or HunyuanImage network saved fused under its `split_qkv` is n LoRAs of rank r, merged at α/r as
 * trained (./kohya-split-qkv.ts), not α/(n·r).
 */
import { transpose } from '../../algorithms/math/matrix.js';
import { tuckerFactors } from '../../algorithms/math/low-rank-forms.js';
import { partnerTensorName } from '../key-forms.js';
import type { AdapterModule, DoraFactor } from '../adapter.js';
import { readFloat } from '../read-float.js';
import type { TensorEntry } from '../safetensors-types.js';
import { alphaScale, fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { lowRankPiece, readMatrix, readValues } from './factor-io.js';
import { product } from '../../integers.js';
import { BYPASS_SOURCE, lycorisBypassOn, withoutDora } from './lycoris-bypass.js';
import { checkSplitQkvUp, kohyaSplitQkv, SPLIT_QKV_PARTS } from './kohya-split-qkv.js';

/** torch.finfo(torch.float32).eps, which LyCORIS adds to each DoRA norm when merging in f32. */
export const LYCORIS_DORA_EPSILON = 2 ** -23;

/** The least row norm blissful-tuner divides by (dora_weight_norm_materialized's clamp_min). */
export const BLISSFUL_DORA_NORM_FLOOR = 1e-6;

export const lora: Algorithm = {
  name: 'lora',
  title: 'LoRA',
  defines: ['down', 'up'],
  roles: ['down', 'up', 'mid', 'dora_scale', 'magnitude', 'up_bias', 'dora_layer'],

  build(tensors, context) {
    const down = tensors.get('down');
    const up = tensors.get('up');
    const mid = tensors.get('mid');
    if (!down || !up) {
      const present = (down ?? up)!;
      context.report('UNSUPPORTED_FORMAT', `has ${present.name} but no ${partnerTensorName(present.name)}`);
      return null;
    }
    const rank = down.shape[0];
    // up is (out, r), or (out, r, 1…) with down's dimension count: an (out, r, 1) beside a 2-D down
    // is no layer's pair (the plan checks down's count against the base).
    const upDims = up.shape.length === 2 || up.shape.length === down.shape.length;
    if (down.shape.length < 2 || up.shape.length < 2 || !upDims || up.shape[1] !== rank || up.shape.slice(2).some((d) => d !== 1)) {
      context.report('SHAPE_MISMATCH', `up ${up.name} ${fmtShape(up.shape)} does not fit down ${down.name} ${fmtShape(down.shape)}`);
      return null;
    }
    if (mid && (mid.shape.length < 3 || mid.shape[0] !== rank || mid.shape[1] !== rank || down.shape.slice(2).some((d) => d !== 1))) {
      context.report('SHAPE_MISMATCH', `lora_mid ${mid.name} ${fmtShape(mid.shape)} does not fit down ${fmtShape(down.shape)} and up ${fmtShape(up.shape)} (expected (${rank}, ${rank}, kh, kw) and a 1×1 down)`);
      return null;
    }
    // sd-scripts' split_qkv: n parts of rank r fused, each trained at α/r.
    const split = kohyaSplitQkv(context, tensors, down, up);
    if (split === null) return null;
    const module: AdapterModule = {
      ...moduleBasics(context),
      algorithm: lora.name,
      kind: down.shape.length > 2 || mid ? 'conv' : 'linear',
      deltaShape: mid ? [up.shape[0], down.shape[1], ...mid.shape.slice(2)] : [up.shape[0], ...down.shape.slice(1)],
      rank: split?.partRank ?? rank,
      ...alphaScale(context.alpha, split?.partRank ?? rank, context.rsLora),
      ...(context.options?.blissful_rslora === true ? blissfulRsLoraScale(context.alpha, rank) : {}),
      tensors: { down, up, ...(mid ? { mid } : {}) },
      update: { kind: 'low-rank', rank },
      fanInFanOut: false,
      ...(split ? { options: split.options } : {}),
    };
    const doraScale = tensors.get('dora_scale');
    if (doraScale) {
      const dora = lycorisDora(doraScale, up.shape[0], down.shape[1]);
      if (!dora) {
        context.report('SHAPE_MISMATCH', `dora_scale ${fmtShape(doraScale.shape)} fits neither ${down.shape[1]} inputs nor ${up.shape[0]} outputs`);
        return null;
      }
      module.dora = dora;
    }
    const magnitude = tensors.get('magnitude');
    if (magnitude) {
      if (doraScale) {
        context.report('UNSUPPORTED_FORMAT', `has two DoRA magnitudes (${doraScale.name} and ${magnitude.name})`);
        return null;
      }
      const problem = loraExtraShapeProblem('magnitude', magnitude, up.shape[0]);
      if (problem) {
        context.report('SHAPE_MISMATCH', problem);
        return null;
      }
      module.dora = { magnitude, axis: 'out', epsilon: 0, weighting: 'delta' };
    }
    const layerMagnitude = tensors.get('dora_layer');
    if (layerMagnitude || context.options?.blissful_dora === true) {
      const problem = blissfulDoraProblem(module, layerMagnitude, doraScale ?? magnitude, context.options?.blissful_dora === true);
      if (problem) {
        context.report(problem.code, problem.message);
        return null;
      }
      if (layerMagnitude) {
        module.dora = { magnitude: layerMagnitude, axis: 'out', epsilon: 0, normFloor: BLISSFUL_DORA_NORM_FLOOR, weighting: 'delta', noneAtWeightZero: true };
      }
    }
    const upBias = tensors.get('up_bias');
    if (upBias) {
      const problem = loraExtraShapeProblem('up_bias', upBias, up.shape[0]);
      if (problem) {
        context.report('SHAPE_MISMATCH', problem);
        return null;
      }
      module.biasB = upBias;
    }
    return module;
  },

  lycorisBypass(module, context) {
    if (!lycorisBypassOn(context)) return module;
    // LyCORIS's DyLoRA, saved under LoCon's names, leaves every scale out of its bypass forward.
    if (context.networkArgs?.lycorisAlgo() === 'dylora') {
      context.report('UNSUPPORTED_FORMAT', `is DyLoRA (algo "dylora"), trained with ${BYPASS_SOURCE}, whose forward applies up·down with neither α/r nor DyLoRA's rank scale; that rule is not supported`);
      return null;
    }
    return withoutDora(module, context, lora.title);
  },

  async load(file, module) {
    const { down, up, mid } = module.tensors;
    if (mid) {
      // rebuild_tucker(mid, upᵀ, down): up (out, r) is B as it is.
      const f = tuckerFactors(await readValues(file, mid), product(mid.shape.slice(2)), transpose(await readMatrix(file, up)), await readMatrix(file, down));
      return [lowRankPiece(f)];
    }
    const [a, b] = await Promise.all([readFloat(file, down), readFloat(file, up)]);
    if (module.options?.[SPLIT_QKV_PARTS] !== undefined) checkSplitQkvUp(file, module, b);
    return [{ kind: 'low-rank', a, b, rank: down.shape[0] }];
  },
};

/**
 * blissful-tuner's scale under `use_rslora_flag` (LoRAModule.__init__): α/√r, α 0 stored meaning √r
 * (scale 1), and a module without `.alpha` given α = r by create_network_from_weights (scale √r).
 */
export function blissfulRsLoraScale(alpha: number | undefined, rank: number): Pick<AdapterModule, 'alpha' | 'scale' | 'scaleOrigin'> {
  if (alpha === undefined) return { alpha: rank, scale: rank / Math.sqrt(rank), scaleOrigin: { kind: 'alpha', rule: 'α/√r', stated: false } };
  return alphaScale(alpha, rank, true);
}

/**
 * Why a module of a file with blissful-tuner's DoRA magnitude or `use_dora_flag` is not merged as
 * its merge_to applies it, or undefined when it is: under the flag a Linear module (2-D lora_down)
 * must have its `dora_layer.weight` (merge_to raises without it), one value per output; a conv
 * module takes no DoRA and has none; without the flag the magnitude is left unread by its loader.
 */
function blissfulDoraProblem(
  module: AdapterModule, magnitude: TensorEntry | undefined, other: TensorEntry | undefined, flagOn: boolean,
): { code: 'UNSUPPORTED_FORMAT' | 'SHAPE_MISMATCH'; message: string } | undefined {
  const linear = module.kind === 'linear';
  if (!magnitude) {
    return linear ? { code: 'UNSUPPORTED_FORMAT', message: `has no dora_layer.weight though the file's "use_dora_flag" is on: blissful-tuner refuses to merge such a Linear module (its magnitude would be the untrained ones); the file is partial` } : undefined;
  }
  if (!flagOn) return { code: 'UNSUPPORTED_FORMAT', message: `has "${magnitude.name}", blissful-tuner's DoRA magnitude, in a file without its "use_dora_flag" on (with the flag off its loader leaves the magnitude unread; with no flag the file is not marked as its network's); not supported` };
  if (other) return { code: 'UNSUPPORTED_FORMAT', message: `has two DoRA magnitudes (${other.name} and ${magnitude.name})` };
  if (!linear) return { code: 'UNSUPPORTED_FORMAT', message: `has "${magnitude.name}" on a conv LoRA (lora_down ${fmtShape(module.tensors.down.shape)}): blissful-tuner applies DoRA to Linear layers only and would leave it unread` };
  const out = module.deltaShape[0];
  if (magnitude.shape.length !== 1 || magnitude.shape[0] !== out) {
    return { code: 'SHAPE_MISMATCH', message: `dora_layer.weight ${magnitude.name} ${fmtShape(magnitude.shape)} should hold one value per output row (${out}), as blissful-tuner's DoRALayer does` };
  }
  return undefined;
}

/**
 * Why PEFT's `lora_magnitude_vector` or `lora_B` bias of a LoRA with `out` outputs is not what PEFT
 * saves, or undefined when it is: one value per output feature, the bias a vector (nn.Linear's), the
 * magnitude with size-1 dims beside it where a conv keeps them. PEFT cannot load either in another
 * shape, and the plan's bias and DoRA terms count values only.
 */
export function loraExtraShapeProblem(role: 'magnitude' | 'up_bias', tensor: TensorEntry, out: number): string | undefined {
  const fits = role === 'magnitude'
    ? product(tensor.shape) === out && tensor.shape.filter((d) => d !== 1).length <= 1
    : tensor.shape.length === 1 && tensor.shape[0] === out;
  if (fits) return undefined;
  return `${role === 'magnitude' ? 'lora_magnitude_vector' : 'lora_B bias'} ${tensor.name} ${fmtShape(tensor.shape)} should hold one value per output feature (${out})`;
}

/**
 * LyCORIS stores dora_scale as (1, in, 1…) (norms per input feature, its default) or, with
 * wd_on_output, (out, 1, 1…). Null when the shape is neither. `kernelFlattened`: the module's
 * factors hold a conv's in·kh·kw as one dim (LoHa's hada_w*_b and LoKr's lokr_w2_b without Tucker
 * cores), so a conv's (1, in, 1…) holds one value per group of kh·kw of those columns (the plan
 * checks in against the base's channels).
 */
export function lycorisDora(magnitude: TensorEntry, outFeatures: number, inFeatures: number, kernelFlattened = false): DoraFactor | null {
  const shape = magnitude.shape;
  const onesFrom = (k: number) => shape.slice(k).every((d) => d === 1);
  let axis: 'in' | 'out' | null = null;
  if (shape.length >= 2 && shape[0] === 1 && shape[1] === inFeatures && onesFrom(2)) axis = 'in';
  else if (kernelFlattened && shape.length >= 3 && shape[0] === 1 && shape[1] > 0 && inFeatures % shape[1] === 0 && onesFrom(2)) axis = 'in';
  else if (shape.length >= 1 && shape[0] === outFeatures && onesFrom(1)) axis = 'out';
  else if (shape.length === 1 && shape[0] === inFeatures) axis = 'in';
  return axis ? { magnitude, axis, epsilon: LYCORIS_DORA_EPSILON, weighting: 'factor' } : null;
}
