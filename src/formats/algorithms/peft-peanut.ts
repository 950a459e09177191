/**
 * PEFT PEANuT (tuners/peanut): `peanut_A.weight` (r, out), `peanut_B.weight` (out, r) and `depth`
 * encoder and decoder layers `peanut_encoders.<i>.weight`, `peanut_decoders.<i>.weight` (r, r), all
 * bias-free nn.Linear, on a Linear. PEFT's _compute_delta_weight runs every column x of the base
 * weight W (out, in) through a small network: h = act(A·x); for each encoder, h is kept as a
 * residual and h = act(E_i·h); for each decoder, h = act(D_i·h) + the residual of the same depth
 * counted from the end; ΔW's column is scaling·B·h. A·W sums over every output row of W, so it is an
 * `out-project` piece whose form runs the network on each column in float64; B·(the result) is then
 * a low-rank product. `act_fn` is transformers' ACT2FN name; the ones whose formula this tool
 * forms are listed in PEANUT_ACTIVATIONS. PEFT has no weight for PEANuT: a user weight w merges
 * W + w·ΔW.
 */
import { MergeError } from '../../errors.js';
import { torchRelu } from '../../algorithms/math/torch-relu.js';
import type { Role } from '../key-forms.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

/** The deepest network read (the key forms list encoders and decoders 0–7). */
export const PEANUT_MAX_DEPTH = 8;

/** erf(x) in float64 from 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(1·3···(2n+1)), whose terms are all positive (no cancellation). */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  let term = ax, sum = ax;
  for (let n = 1; term > sum * 1e-17; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
// torch's softplus (beta 1, threshold 20) is x above 20.
const softplus = (x: number) => (x > 20 ? x : Math.log1p(Math.exp(x)));

/** transformers' ACT2FN activations by name, as their classes compute them (torch's nn modules and functions); each keeps NaN, as torch's do. */
export const PEANUT_ACTIVATIONS: Readonly<Record<string, (x: number) => number>> = {
  relu: torchRelu,
  relu6: (x) => Math.min(Math.max(x, 0), 6),
  relu2: (x) => torchRelu(x) ** 2,
  leaky_relu: (x) => (x >= 0 ? x : 0.01 * x),
  sigmoid,
  tanh: Math.tanh,
  linear: (x) => x,
  silu: (x) => x * sigmoid(x),
  swish: (x) => x * sigmoid(x),
  gelu,
  gelu_python: gelu,
  gelu_10: (x) => Math.min(Math.max(gelu(x), -10), 10),
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  gelu_accurate: geluTanh,
  gelu_fast: (x) => 0.5 * x * (1 + Math.tanh(x * 0.7978845608 * (1 + 0.044715 * x * x))),
  quick_gelu: (x) => x * sigmoid(1.702 * x),
  mish: (x) => x * Math.tanh(softplus(x)),
};

/** The activation names in a fixed order: the config's is passed to the algorithm as its index. */
export const PEANUT_ACTIVATION_NAMES: readonly string[] = Object.keys(PEANUT_ACTIVATIONS);

const ENCODERS = Array.from({ length: PEANUT_MAX_DEPTH }, (_, i) => `peanut_enc_${i}` as Role);
const DECODERS = Array.from({ length: PEANUT_MAX_DEPTH }, (_, i) => `peanut_dec_${i}` as Role);

/**
 * PEANuT's network on every column of M = A·W (r × in, row-major), times `scaling`: the r × in
 * matrix B multiplies. `enc` and `dec` are the (r, r) layers in order, row-major.
 */
export function peanutColumns(m: Float64Array, r: number, inF: number, enc: ArrayLike<number>[], dec: ArrayLike<number>[], act: (x: number) => number, scaling: number): Float64Array {
  const out = new Float64Array(r * inF);
  const depth = enc.length;
  let h = new Float64Array(r);
  const residuals = Array.from({ length: depth }, () => new Float64Array(r));
  const apply = (w: ArrayLike<number>, x: Float64Array) => {
    const y = new Float64Array(r);
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += w[j * r + k] * x[k];
      y[j] = act(s);
    }
    return y;
  };
  for (let i = 0; i < inF; i++) {
    for (let k = 0; k < r; k++) h[k] = act(m[k * inF + i]);
    for (let d = 0; d < depth; d++) {
      residuals[d].set(h);
      h = apply(enc[d], h);
    }
    for (let d = 0; d < depth; d++) {
      h = apply(dec[d], h);
      const res = residuals[depth - 1 - d];
      for (let k = 0; k < r; k++) h[k] += res[k];
    }
    for (let k = 0; k < r; k++) out[k * inF + i] = scaling * h[k];
  }
  return out;
}

export const peftPeanut: Algorithm = {
  name: 'peft-peanut',
  title: 'PEANuT (PEFT)',
  defines: ['peanut_A', 'peanut_B'],
  roles: ['peanut_A', 'peanut_B', ...ENCODERS, ...DECODERS],

  build(tensors, context) {
    const o = context.options;
    if (!o || o.peanut_config !== true) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT PEANuT tensors outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const a = tensors.get('peanut_A'), b = tensors.get('peanut_B');
    if (!a || !b) {
      context.report('UNSUPPORTED_FORMAT', `has ${a ? 'peanut_A without peanut_B' : 'peanut_B without peanut_A'}`);
      return null;
    }
    const depth = o.depth as number, r = o.r as number;
    const layers: Record<string, typeof a> = { a, b };
    const missing: string[] = [], extra: string[] = [];
    for (let i = 0; i < PEANUT_MAX_DEPTH; i++) {
      for (const [role, what] of [[ENCODERS[i], 'peanut_encoders'], [DECODERS[i], 'peanut_decoders']] as const) {
        const e = tensors.get(role);
        if (i < depth && !e) missing.push(`${what}.${i}`);
        if (i >= depth && e) extra.push(`${what}.${i}`);
        if (e) layers[role] = e;
      }
    }
    if (missing.length || extra.length) {
      context.report('BAD_CONFIG', `${missing.length ? `lacks ${missing.join(', ')}` : `has ${extra.join(', ')}`}, but the config's depth is ${depth}`);
      return null;
    }
    const out = b.shape[0];
    const square = Object.entries(layers).filter(([k]) => k !== 'a' && k !== 'b').every(([, e]) => e.shape.length === 2 && e.shape[0] === r && e.shape[1] === r);
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== r || b.shape[1] !== r || a.shape[1] !== out || !square) {
      context.report('SHAPE_MISMATCH', `peanut_A ${fmtShape(a.shape)}, peanut_B ${fmtShape(b.shape)} and the ${depth} encoder and decoder layers are not (r, out), (out, r) and (r, r) for the config's r = ${r}`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftPeanut.name,
      kind: 'linear',
      deltaShape: [out, -1],
      rank: r,
      alpha: 1,
      scale: 1,
      tensors: layers,
      update: { kind: 'transform', cost: 2 * r * (1 + depth) },
      fanInFanOut: false,
      options: o,
    };
  },

  async load(file, module, delta) {
    const t = module.tensors;
    const o = module.options!;
    const [r, out] = t.a.shape;
    if (delta && delta.out !== out) throw new MergeError('SHAPE_MISMATCH', `PEANuT module "${module.name}": peanut_A reads ${out} outputs, the layer has ${delta.out}`);
    const depth = o.depth as number;
    const [av, bv] = await Promise.all([readValues(file, t.a), readValues(file, t.b)]);
    const enc = await Promise.all(ENCODERS.slice(0, depth).map((role) => readValues(file, t[role])));
    const dec = await Promise.all(DECODERS.slice(0, depth).map((role) => readValues(file, t[role])));
    const act = PEANUT_ACTIVATIONS[PEANUT_ACTIVATION_NAMES[o.act_fn as number]];
    const scaling = o.peanut_scaling as number;
    // right = Aᵀ (out × r), so that Rᵀ·W = A·W.
    const right = new Float32Array(out * r);
    for (let k = 0; k < r; k++) for (let j = 0; j < out; j++) right[j * r + k] = av[k * out + j];
    return [{
      kind: 'out-project', right: f32Bytes(right), qp: f32Bytes(Float32Array.from(bv)), rank: r,
      form: (m, inF) => peanutColumns(m, r, inF, enc, dec, act, scaling),
    }];
  },
};
