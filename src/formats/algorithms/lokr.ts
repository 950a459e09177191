/**
 * LoKr (LyCORIS modules/lokr.py, PEFT tuners/lokr): ΔW = kron(W₁, W₂) reshaped to W, where
 * W₁ = lokr_w1 (a, c) or lokr_w1_a (a, r)·lokr_w1_b (r, c), and W₂ = lokr_w2 (b, d, k…),
 * lokr_w2_a (b, r)·lokr_w2_b (r, d·k…), or the Tucker form lokr_t2 (r, r, k…) with lokr_w2_a (r, b)
 * and lokr_w2_b (r, d). ΔW is (a·b, c·d, k…). Scale α/r with r the decomposed factor's rank (W₁'s
 * when both are, as LyCORIS reads it back; ComfyUI's merge takes W₂'s, README says so), and
 * exactly 1 when neither factor is decomposed (√r under LyCORIS's rs_lora; algorithms/math/lokr.ts says
 * why); applied once. Trained with LyCORIS's bypass_mode, no scale at all (./lycoris-bypass.ts).
 * The engine gets the exact product kron(B₁, B₂)·kron(A₁, A₂), or, when both factors are full and
 * that product's rank is large, ΔW itself by rows. LyCORIS's dora_scale applies after it.
 */
import { fullKronFactors, kronRows, tuckerFactors, type Factors } from '../../algorithms/math/low-rank-forms.js';
import { lokrForm, lokrFullRankUnderRsLora, lokrScale, peftConv1dKronOrder, permutedKronFactors, type KronFactor } from '../../algorithms/math/lokr.js';
import type { AdapterModule } from '../adapter.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { lowRankPiece, readMatrix, readValues } from './factor-io.js';
import { product } from '../../integers.js';
import { lycorisDora } from './lora.js';
import { isConv1dTucker } from './tucker-conv1d.js';
import { lycorisBypassOn, withoutDora } from './lycoris-bypass.js';

/** Significand bits of the dtypes α is saved in; LyCORIS computes it in float32, hence 23 at most. */
const ALPHA_MANTISSA_BITS: Readonly<Record<string, number>> = { F64: 23, F32: 23, F16: 10, BF16: 7 };

export const lokr: Algorithm = {
  name: 'lokr',
  title: 'LoKr',
  defines: ['lokr_w1', 'lokr_w1_a', 'lokr_w1_b', 'lokr_w2', 'lokr_w2_a', 'lokr_w2_b', 'lokr_t2', 'lokr_t1'],
  roles: ['lokr_w1', 'lokr_w1_a', 'lokr_w1_b', 'lokr_w2', 'lokr_w2_a', 'lokr_w2_b', 'lokr_t2', 'lokr_t1', 'dora_scale'],

  build(tensors, context) {
    const w1 = tensors.get('lokr_w1'), w1a = tensors.get('lokr_w1_a'), w1b = tensors.get('lokr_w1_b');
    const w2 = tensors.get('lokr_w2'), w2a = tensors.get('lokr_w2_a'), w2b = tensors.get('lokr_w2_b');
    const t2 = tensors.get('lokr_t2');
    if (tensors.has('lokr_t1')) {
      // LyCORIS lists lokr_t1 in weight_list, but only a prototype of 2023-04-07 (before LoKr's first
      // release) built it; every release builds a Tucker core for W₂ alone, and its loader and
      // ComfyUI's leave lokr_t1 unread, so how such a module was trained is unknown.
      context.report('UNSUPPORTED_FORMAT', 'has lokr_t1, a Tucker core for the first LoKr factor, which no LyCORIS release (nor PEFT or ComfyUI) writes or applies: their LoKr has a Tucker core for the second factor only (lokr_t2), so what this module does to the weight cannot be told');
      return null;
    }
    const first = w1 && !w1a && !w1b ? 'full' : !w1 && w1a && w1b ? 'product' : null;
    const second = w2 && !w2a && !w2b && !t2 ? 'full' : !w2 && w2a && w2b ? (t2 ? 'tucker' : 'product') : null;
    if (!first || !second) {
      context.report('UNSUPPORTED_FORMAT', 'needs lokr_w1 or lokr_w1_a with lokr_w1_b, and lokr_w2, or lokr_w2_a with lokr_w2_b (and optionally lokr_t2)');
      return null;
    }
    const shapes = [w1, w1a, w1b, w2, w2a, w2b, t2].filter((t): t is TensorEntry => !!t).map((t) => `${t.name.slice(t.name.lastIndexOf('.') + 1)} ${fmtShape(t.shape)}`).join(', ');
    const bad = () => {
      context.report('SHAPE_MISMATCH', `LoKr factors ${shapes} do not fit together`);
      return null;
    };
    // W₁ (a, c)
    let a: number, c: number, r1: number | undefined;
    if (first === 'full') {
      if (w1!.shape.length !== 2) return bad();
      [a, c] = w1!.shape;
    } else {
      if (w1a!.shape.length !== 2 || w1b!.shape.length !== 2 || w1a!.shape[1] !== w1b!.shape[0]) return bad();
      [a, r1, c] = [w1a!.shape[0], w1b!.shape[0], w1b!.shape[1]];
    }
    // W₂ (b, d, k…), or (b, d·k…) when lokr_w2_b is stored flattened.
    let b: number, rest: number[], r2: number | undefined;
    if (second === 'full') {
      if (w2!.shape.length < 2) return bad();
      b = w2!.shape[0];
      rest = w2!.shape.slice(1);
    } else if (second === 'tucker') {
      const t = t2!.shape;
      if (t.length < 3 || t[0] !== t[1] || w2a!.shape.length !== 2 || w2b!.shape.length !== 2 || w2a!.shape[0] !== t[0] || w2b!.shape[0] !== t[1]) return bad();
      [b, r2] = [w2a!.shape[1], t[0]];
      rest = [w2b!.shape[1], ...t.slice(2)];
    } else {
      if (w2a!.shape.length !== 2 || w2b!.shape.length < 2 || w2a!.shape[1] !== w2b!.shape[0]) return bad();
      [b, r2] = [w2a!.shape[0], w2b!.shape[0]];
      rest = w2b!.shape.slice(1);
    }
    const deltaShape = [a * b, c * rest[0], ...rest.slice(1)];
    const out = deltaShape[0], inF = product(deltaShape.slice(1));
    // LyCORIS takes the rank from w1's factors first (make_module_from_state_dict, functional diff_weight);
    // ComfyUI's calculate_weight lets w2_b's overwrite it. They differ only at unequal ranks, which LyCORIS never writes.
    const decomposedRank = r1 ?? r2;
    let scale = lokrScale(context.alpha, decomposedRank);
    // Under bypass_mode LyCORIS applies no scale at all (lycorisBypass below), rs_lora's or any.
    if (decomposedRank === undefined && context.alpha !== undefined && context.alpha !== 0 && context.networkArgs?.lycorisRsLora() && !context.networkArgs.lycorisBypass()) {
      // rs_lora: LyCORIS trained this module at scale √r, with r known only through the α it stored (r·√r).
      const tolerance = 2 ** -(ALPHA_MANTISSA_BITS[context.alphaDType ?? 'F32'] ?? 23);
      const r = lokrFullRankUnderRsLora(context.alpha, tolerance, context.networkArgs.recordedRanks());
      if (r === null) {
        context.report('UNSUPPORTED_FORMAT', `is LoKr with both factors full, trained with rs_lora (ss_network_args), whose scale is √r for the rank r it was trained with, but its alpha ${context.alpha} is not r·√r for the recorded network_dim/conv_dim or any whole r`);
        return null;
      }
      scale = Math.sqrt(r);
    }
    // blissful-tuner's LoKr (../blissful-network.ts): α/dim, dim W₂'s rank or, W₂ whole, its larger side.
    const blissful = context.options?.blissful_lokr === true;
    if (blissful) {
      if (first !== 'full' || second === 'tucker' || deltaShape.length !== 2 || tensors.has('dora_scale')) {
        context.report('UNSUPPORTED_FORMAT', `is LoKr in a blissful-tuner file (it holds "lokr_factor"), whose merge reads lokr_w1 with a 2-D lokr_w2 or lokr_w2_a·lokr_w2_b and nothing else (${shapes}${tensors.has('dora_scale') ? ', dora_scale' : ''}); it would not apply this module as it stands`);
        return null;
      }
      const dim = r2 ?? Math.max(b, rest[0]);
      scale = (context.alpha ?? dim) / dim;
    }
    // Both factors full: scale 1 whatever α says (nothing to show), or √r under rs_lora.
    const lokrScaleOrigin = (): Pick<AdapterModule, 'scaleOrigin'> => decomposedRank !== undefined
      ? { scaleOrigin: { kind: 'alpha', rule: 'α/r', stated: context.alpha !== undefined && context.alpha !== 0 } }
      : scale !== 1 ? { scaleOrigin: { kind: 'method', what: '√r (rs_lora, both factors full)' } } : {};
    const rankOf = (full: boolean, p: number, q: number, r: number | undefined) => (full ? Math.min(p, q) : r!);
    const productRank = rankOf(first === 'full', a, c, r1) * rankOf(second === 'full', b, product(rest), r2);
    const dense = first === 'full' && second === 'full' && productRank > Math.min(out, inF) / 4;
    // PEFT (context.options.peft_lokr) on a Conv1d with W₂ whole: its kron of a 2-D W₁ and a 3-D W₂ (peftConv1dKronOrder).
    const peftConv1d = context.options?.peft_lokr === true && second === 'full' && w2!.shape.length === 3;
    const module: AdapterModule = {
      ...moduleBasics(context),
      algorithm: lokr.name,
      kind: deltaShape.length > 2 ? 'conv' : 'linear',
      deltaShape,
      rank: decomposedRank ?? 1,
      alpha: decomposedRank === undefined ? 1 : context.alpha === undefined || context.alpha === 0 ? decomposedRank : context.alpha,
      scale,
      ...lokrScaleOrigin(),
      tensors: Object.fromEntries(Object.entries({ w1, w1a, w1b, w2, w2a, w2b, t2 }).filter(([, t]) => t)) as Record<string, TensorEntry>,
      update: dense ? { kind: 'dense' } : { kind: 'low-rank', rank: productRank },
      fanInFanOut: false,
      ...(peftConv1d || (context.options?.peft_lokr === true && t2 && isConv1dTucker(t2)) ? { options: peftConv1d ? { peft_conv1d_kron: true } : { peft_conv1d_tucker: true } } : {}),
    };
    if (blissful) {
      module.alpha = scale * module.rank;
      module.scaleOrigin = r2 === undefined ? { kind: 'method', what: 'α/max(b, d) (blissful-tuner, lokr_w2 whole)' } : { kind: 'alpha', rule: 'α/r', stated: context.alpha !== undefined };
    }
    const doraScale = tensors.get('dora_scale');
    if (doraScale) {
      const dora = lycorisDora(doraScale, out, deltaShape[1], deltaShape.length === 2);
      if (!dora) {
        context.report('SHAPE_MISMATCH', `dora_scale ${fmtShape(doraScale.shape)} fits neither ${deltaShape[1]} inputs nor ${out} outputs`);
        return null;
      }
      module.dora = dora;
    }
    return module;
  },

  lycorisBypass(module, context) {
    // LyCORIS's LoKr bypass_forward_diff scales kron(W₁, W₂)·x by the multiplier alone: no α/r.
    if (!lycorisBypassOn(context)) return module;
    const kept = withoutDora(module, context, lokr.title);
    return kept && { ...kept, alpha: kept.rank, scale: 1, scaleOrigin: { kind: 'method', what: '1 (LyCORIS bypass_mode leaves α/r out)' } };
  },

  async load(file, module) {
    const { w1, w2 } = module.tensors;
    const [f1, f2] = await Promise.all([firstFactor(file, module), secondFactor(file, module)]);
    const order = peftOrder(module);
    if (module.update.kind === 'dense' && 'full' in f1 && 'full' in f2) {
      const m1 = f1.full, m2 = f2.full;
      // The exact products go to the executor (f32 bytes would round them first: DenseTerm.exact).
      if (!order) return [{ kind: 'dense', rows: async (r0: number, n: number) => ({ exact: kronRows(m1, m2, r0, n) }) }];
      const cols = m1.cols * m2.cols;
      return [{
        kind: 'dense',
        rows: async (r0: number, n: number) => {
          const out = new Float64Array(n * cols);
          for (let r = 0; r < n; r++) {
            const row = kronRows(m1, m2, order.row(r0 + r), 1);
            for (let x = 0; x < cols; x++) out[r * cols + x] = row[order.col(x)];
          }
          return { exact: out };
        },
      }];
    }
    const out = module.deltaShape[0], inF = product(module.deltaShape.slice(1));
    const form = lokrForm(f1, f2, out, inF);
    if (form.kind !== 'low-rank') throw new Error(`LoKr module "${module.name}" (${w1?.name ?? ''} ${w2?.name ?? ''}): planned as a product`);
    return [lowRankPiece(order ? permutedKronFactors(form.factors, order) : form.factors)];
  },
};

/** A LoKr module whose W₁ and W₂ are both stored whole (merge may apply it as a dense update). */
export function isLokrOfFullFactors(module: AdapterModule): boolean {
  return module.algorithm === lokr.name && module.tensors.w1 !== undefined && module.tensors.w2 !== undefined;
}

/**
 * Such a module's update kron(W₁, W₂) (unscaled) as exact low-rank factors, whatever its rank
 * (combine and resize write it as a LoRA; merge takes the dense form where the rank is large).
 */
export async function lokrFullFactors(file: SafetensorsFile, module: AdapterModule): Promise<Factors> {
  const { w1, w2 } = module.tensors;
  const factors = fullKronFactors(await readMatrix(file, w1), await readMatrix(file, w2));
  const order = peftOrder(module);
  return order ? permutedKronFactors(factors, order) : factors;
}

/** PEFT's order of a Conv1d module's kron (peftConv1dKronOrder), or null for LyCORIS's. */
function peftOrder(module: AdapterModule): ReturnType<typeof peftConv1dKronOrder> | null {
  if (module.options?.peft_conv1d_kron !== true) return null;
  const { w1, w1a, w1b, w2 } = module.tensors;
  const [a, c] = w1 ? w1.shape : [w1a.shape[0], w1b.shape[1]];
  return peftConv1dKronOrder(a, c, w2.shape[0], w2.shape[1], w2.shape[2]);
}

async function firstFactor(file: SafetensorsFile, module: AdapterModule): Promise<KronFactor> {
  const { w1, w1a, w1b } = module.tensors;
  if (w1) return { full: await readMatrix(file, w1) };
  return { factors: { b: await readMatrix(file, w1a), a: await readMatrix(file, w1b) } };
}

async function secondFactor(file: SafetensorsFile, module: AdapterModule): Promise<KronFactor> {
  const { w2, w2a, w2b, t2 } = module.tensors;
  if (w2) return { full: await readMatrix(file, w2) };
  if (t2) return { factors: tuckerFactors(await readValues(file, t2), product(t2.shape.slice(2)), await readMatrix(file, w2a), await readMatrix(file, w2b)) };
  return { factors: { b: await readMatrix(file, w2a), a: await readMatrix(file, w2b) } };
}
