/**
 * LoHa (LyCORIS modules/loha.py, PEFT tuners/loha): ΔW = (w1a·w1b) ⊙ (w2a·w2b) · α/r with
 * r = rows of w1b. w1b and w2b are (r, in) or, for convolutions, (r, in·kh·kw) flattened. With
 * Tucker cores (hada_t1/hada_t2, (r, r, kh, kw)) each side is instead
 * einsum("i j k l, j r, i p -> p r k l", t, w_b, w_a) with w_a (r, out) and w_b (r, in).
 * Each side becomes an exact product (the Tucker core folded into its right factor), and their
 * Hadamard product the rank r·r₂ product of the factors' Khatri–Rao products, so every executor
 * merges it with the fused low-rank kernel. LyCORIS's dora_scale applies after it.
 */
import { hadamardFactors, tuckerFactors, type Factors } from '../../algorithms/math/low-rank-forms.js';
import type { TensorEntry } from '../safetensors-types.js';
import { alphaScale, fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { lowRankPiece, readMatrix, readValues } from './factor-io.js';
import { product } from '../../integers.js';
import { lycorisDora } from './lora.js';
import { isConv1dTucker } from './tucker-conv1d.js';
import { withoutDora } from './lycoris-bypass.js';

export const loha: Algorithm = {
  name: 'loha',
  title: 'LoHa',
  defines: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2'],
  roles: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2', 'dora_scale'],

  build(tensors, context) {
    const w1a = tensors.get('hada_w1_a'), w1b = tensors.get('hada_w1_b');
    const w2a = tensors.get('hada_w2_a'), w2b = tensors.get('hada_w2_b');
    const t1 = tensors.get('hada_t1'), t2 = tensors.get('hada_t2');
    if (!w1a || !w1b || !w2a || !w2b) {
      context.report('UNSUPPORTED_FORMAT', 'needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b, and hada_t1 and hada_t2 together or not at all');
      return null;
    }
    if (!t1 !== !t2) {
      // LyCORIS's use_tucker gives both Hadamard factors a core or neither (and PEFT's
      // use_effective_conv2d likewise); ComfyUI fails on a lone hada_t1 and ignores a lone hada_t2.
      const [has, lacks] = t1 ? ['hada_t1', 'hada_t2'] : ['hada_t2', 'hada_t1'];
      context.report('UNSUPPORTED_FORMAT', `has ${has} without ${lacks}: LyCORIS and PEFT write LoHa's Tucker cores as a pair or not at all (no trainer makes one Hadamard factor Tucker and the other not), so this module is incomplete`);
      return null;
    }
    const shapes = [w1a, w1b, w2a, w2b, ...(t1 ? [t1, t2!] : [])].map((t) => fmtShape(t.shape)).join(', ');
    const rank = w1b.shape[0];
    let deltaShape: number[] | null;
    if (t1 && t2) {
      deltaShape = tuckerShape(w1a, w1b, t1);
      const other = tuckerShape(w2a, w2b, t2);
      if (!deltaShape || !other || deltaShape.join() !== other.join()) deltaShape = null;
    } else {
      const fits = w1a.shape.length === 2 && w2a.shape.length === 2 && w1b.shape.length >= 2 && w2b.shape.length === w1b.shape.length
        && w1a.shape[1] === rank && w2a.shape[1] === w2b.shape[0] && w1a.shape[0] === w2a.shape[0]
        && w1b.shape.slice(1).join() === w2b.shape.slice(1).join();
      deltaShape = fits ? [w1a.shape[0], ...w1b.shape.slice(1)] : null;
    }
    if (!deltaShape) {
      context.report('SHAPE_MISMATCH', `LoHa tensors w1_a, w1_b, w2_a, w2_b${t1 ? ', t1, t2' : ''} ${shapes} do not fit together`);
      return null;
    }
    const r2 = w2b.shape[0];
    const module = {
      ...moduleBasics(context),
      algorithm: loha.name,
      kind: deltaShape.length > 2 ? 'conv' as const : 'linear' as const,
      deltaShape,
      rank,
      ...alphaScale(context.alpha, rank, context.rsLora),
      tensors: { w1a, w1b, w2a, w2b, ...(t1 && t2 ? { t1, t2 } : {}) },
      update: { kind: 'low-rank' as const, rank: rank * r2 },
      fanInFanOut: false,
      ...(context.options?.peft_loha === true && t1 && isConv1dTucker(t1) ? { options: { peft_conv1d_tucker: true } } : {}),
    };
    const doraScale = tensors.get('dora_scale');
    if (doraScale) {
      const dora = lycorisDora(doraScale, deltaShape[0], deltaShape[1], deltaShape.length === 2);
      if (!dora) {
        context.report('SHAPE_MISMATCH', `dora_scale ${fmtShape(doraScale.shape)} fits neither ${deltaShape[1]} inputs nor ${deltaShape[0]} outputs`);
        return null;
      }
      return { ...module, dora };
    }
    return module;
  },

  lycorisBypass: (module, context) => withoutDora(module, context, loha.title),

  async load(file, module) {
    const { w1a, w1b, w2a, w2b, t1, t2 } = module.tensors;
    const side = async (wa: TensorEntry, wb: TensorEntry, t: TensorEntry | undefined): Promise<Factors> => {
      if (t) return tuckerFactors(await readValues(file, t), product(t.shape.slice(2)), await readMatrix(file, wa), await readMatrix(file, wb));
      return { b: await readMatrix(file, wa), a: await readMatrix(file, wb) };
    };
    return [lowRankPiece(hadamardFactors(await side(w1a, w1b, t1), await side(w2a, w2b, t2)))];
  },
};

/** ΔW's shape from a Tucker side: core (r, r, k…), w_a (r, out), w_b (r, in); null when they do not fit. */
function tuckerShape(wa: TensorEntry, wb: TensorEntry, t: TensorEntry): number[] | null {
  const r = t.shape[0];
  const fits = t.shape.length >= 3 && t.shape[1] === r && wa.shape.length === 2 && wb.shape.length === 2 && wa.shape[0] === r && wb.shape[0] === r;
  return fits ? [wa.shape[1], wb.shape[1], ...t.shape.slice(2)] : null;
}
