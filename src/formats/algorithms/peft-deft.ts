/**
 * PEFT DEFT (tuners/deft): `deft_P` (out, r) and, unless the config's `para` is true (PaRa),
 * `deft_R` (r, in), on a Linear or a Conv1D. PEFT's get_delta_weight, with W the base weight as
 * (out, in):  ΔW = Q_P · (s·R − rightᵀ·W),  s = alpha / r where the config has a non-zero alpha,
 * else 1; PaRa drops R: ΔW = −Q_P · rightᵀ·W. `decomposition_method` "relu" (the default) takes
 * Q_P = P and right = relu(P); "qr" takes Q_P = right = Q of torch.linalg.qr(P) (reduced,
 * Householder, LAPACK's signs). The term rightᵀ·W runs over every output row of W, so it is a pass
 * of its own over the whole weight before the slabs merge (an `out-project` piece, resolved by
 * the pipeline). Q_P, right and s·R are formed in float64 and handed to the engine in f32, as
 * PEFT forms them in f32 itself. PEFT has no weight for DEFT (it warns and uses 1): a user weight
 * w merges W + w·ΔW.
 */
import { MergeError } from '../../errors.js';
import { torchRelu } from '../../algorithms/math/torch-relu.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

/**
 * Q of the reduced QR of `p` (m × r, row-major, r ≤ m) as LAPACK's geqrf/orgqr form it (what
 * torch.linalg.qr returns): reflector j maps column j's tail to β·e₁ with β = −sign(α)·‖x‖ (α its
 * first entry, sign(0) = +), and is the identity where the tail below α is zero.
 */
export function householderQ(p: ArrayLike<number>, m: number, r: number): Float64Array {
  const a = Float64Array.from(p as ArrayLike<number>);
  const vs: Float64Array[] = [];
  const taus: number[] = [];
  for (let j = 0; j < r; j++) {
    const alpha = a[j * r + j];
    let xnorm = 0;
    for (let i = j + 1; i < m; i++) xnorm = Math.hypot(xnorm, a[i * r + j]);
    const v = new Float64Array(m);
    if (xnorm === 0) {
      vs.push(v);
      taus.push(0);
      continue;
    }
    const beta = -(alpha >= 0 ? 1 : -1) * Math.hypot(alpha, xnorm);
    const tau = (beta - alpha) / beta;
    v[j] = 1;
    for (let i = j + 1; i < m; i++) v[i] = a[i * r + j] / (alpha - beta);
    // H = I − τ·v·vᵀ on the columns still to reduce.
    for (let c = j; c < r; c++) {
      let dot = 0;
      for (let i = j; i < m; i++) dot += v[i] * a[i * r + c];
      for (let i = j; i < m; i++) a[i * r + c] -= tau * dot * v[i];
    }
    vs.push(v);
    taus.push(tau);
  }
  // Q = H₀·H₁···H_{r−1} applied to the first r columns of I.
  const q = new Float64Array(m * r);
  for (let j = 0; j < r; j++) q[j * r + j] = 1;
  for (let j = r - 1; j >= 0; j--) {
    const v = vs[j], tau = taus[j];
    if (tau === 0) continue;
    for (let c = 0; c < r; c++) {
      let dot = 0;
      for (let i = j; i < m; i++) dot += v[i] * q[i * r + c];
      for (let i = j; i < m; i++) q[i * r + c] -= tau * dot * v[i];
    }
  }
  return q;
}

export const peftDeft: Algorithm = {
  name: 'peft-deft',
  title: 'DEFT (PEFT)',
  defines: ['deft_P'],
  roles: ['deft_P', 'deft_R'],

  build(tensors, context) {
    const o = context.options;
    if (!o || o.deft_config !== true) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT DEFT tensors (deft_P, deft_R) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const p = tensors.get('deft_P')!, rt = tensors.get('deft_R');
    const para = o.deft_para === true;
    if (para && rt) {
      context.report('BAD_CONFIG', 'has deft_R, but the config\'s para is true: PEFT builds no R for PaRa and would not load this one');
      return null;
    }
    if (!para && !rt) {
      context.report('UNSUPPORTED_FORMAT', 'has deft_P without deft_R (the config\'s para is false): PEFT would keep the R it initialised from its own random deft_P, which the file does not hold');
      return null;
    }
    if (p.shape.length !== 2 || (rt && (rt.shape.length !== 2 || rt.shape[0] !== p.shape[1]))) {
      context.report('SHAPE_MISMATCH', `deft_P ${fmtShape(p.shape)}${rt ? ` and deft_R ${fmtShape(rt.shape)}` : ''} are not (out, r)${rt ? ' and (r, in)' : ''}`);
      return null;
    }
    const [out, r] = p.shape;
    // update_layer caps r at out_features.
    const rEff = Math.min(o.r as number, out);
    if (r !== rEff) {
      context.report('BAD_CONFIG', `deft_P ${fmtShape(p.shape)} has rank ${r}, but the config's r ${o.r} gives ${rEff} on a layer of ${out} outputs`);
      return null;
    }
    const alpha = o.deft_alpha as number;
    return {
      ...moduleBasics(context),
      algorithm: peftDeft.name,
      kind: 'linear',
      deltaShape: [out, rt ? rt.shape[1] : -1],
      rank: r,
      alpha: alpha || r,
      scale: 1,
      tensors: (rt ? { p, r: rt } : { p }) as Record<string, typeof p>,
      // rightᵀ·W runs over all outputs; the pass that forms it reads W by rows of either layout.
      update: { kind: 'transform', cost: 4 * r, anyLayout: true },
      fanInFanOut: false,
      options: o,
    };
  },

  async load(file, module, delta) {
    const { p, r: rt } = module.tensors;
    const [out, r] = p.shape;
    if (delta && delta.out !== out) throw new MergeError('SHAPE_MISMATCH', `DEFT module "${module.name}": deft_P has ${out} outputs, the layer ${delta.out}`);
    const pv = await readValues(file, p);
    let qp: Float64Array, right: Float64Array;
    if (module.options!.deft_qr === true) {
      qp = right = householderQ(pv, out, r);
    } else {
      qp = Float64Array.from(pv);
      right = qp.map(torchRelu);
    }
    const pieces: Awaited<ReturnType<Algorithm['load']>> = [
      // First: rightᵀ·W reads W before this module's injection is added.
      { kind: 'out-project', right: f32Bytes(Float32Array.from(right)), qp: f32Bytes(Float32Array.from(qp)), rank: r },
    ];
    if (rt) {
      const alpha = module.options!.deft_alpha as number;
      const s = alpha ? alpha / r : 1;
      const rv = await readValues(file, rt);
      pieces.push({ kind: 'low-rank', a: f32Bytes(Float32Array.from(rv, (x) => x * s)), b: f32Bytes(Float32Array.from(qp)), rank: r });
    }
    return pieces;
  },
};
