/**
 * PEFT RoAd (tuners/road): `road_theta` and `road_alpha` of a Linear, config `variant` and
 * `group_size` G. The outputs are split into groups of G; within a group, output j is paired with
 * output j + G/2, and each pair (x0, x1) maps to (f_j·x0 − s_j·x1, s_{j+G/2}·x0 + f_{j+G/2}·x1), with
 * f = α·cos θ and s = α·sin θ per output: road_1 holds out/2 values, one per pair (both halves share
 * them); road_2 holds one per output; road_4 holds 2·out, per group the G angles and scales of f
 * then the G of s. PEFT merges W' = R·W and, where the layer has a bias, b' = R·b. The 2×2 blocks
 * are formed in float64 (cos and sin of the stored θ) and handed to the engine in f32, as PEFT forms
 * R in f32 itself. PEFT has no weight for RoAd: a user weight s merges I + s·(R − I), as for OFT.
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

/** Values per output of each variant's θ and α. */
const PER_OUTPUT: Readonly<Record<number, number>> = { 1: 0.5, 2: 1, 4: 2 };

/**
 * The factors f and s per output (θ, α as stored), as PEFT's _prepare_cols lays them out for
 * `variant` (1, 2 or 4) and groups of g.
 */
export function roadColumns(theta: ArrayLike<number>, alpha: ArrayLike<number>, variant: number, g: number, out: number): { f: Float64Array; s: Float64Array } {
  const f = new Float64Array(out), s = new Float64Array(out);
  const h = g / 2;
  for (let i = 0; i < out; i++) {
    const group = Math.floor(i / g), p = i % g;
    // Index of the angle and scale of f (kf) and of s (ks) for output i.
    let kf: number, ks: number;
    if (variant === 1) kf = ks = group * h + (p % h);
    else if (variant === 2) kf = ks = i;
    else {
      kf = group * 2 * g + p;
      ks = kf + g;
    }
    f[i] = alpha[kf] * Math.cos(theta[kf]);
    s[i] = alpha[ks] * Math.sin(theta[ks]);
  }
  return { f, s };
}

export const peftRoad: Algorithm = {
  name: 'peft-road',
  title: 'RoAd (PEFT)',
  defines: ['road_theta', 'road_alpha'],
  roles: ['road_theta', 'road_alpha'],

  build(tensors, context) {
    const o = context.options;
    if (!o || typeof o.road_variant !== 'number' || typeof o.group_size !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT RoAd tensors (road_theta, road_alpha) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const theta = tensors.get('road_theta'), alpha = tensors.get('road_alpha');
    if (!theta || !alpha) {
      context.report('UNSUPPORTED_FORMAT', `has ${theta ? 'road_theta without road_alpha' : 'road_alpha without road_theta'}`);
      return null;
    }
    const n = theta.shape[0];
    const out = n / PER_OUTPUT[o.road_variant];
    const g = o.group_size;
    if (theta.shape.length !== 1 || alpha.shape.length !== 1 || alpha.shape[0] !== n || !Number.isInteger(out) || out % g !== 0) {
      context.report('SHAPE_MISMATCH', `road_theta ${fmtShape(theta.shape)} and road_alpha ${fmtShape(alpha.shape)} are not two vectors of ${PER_OUTPUT[o.road_variant]} value${o.road_variant === 2 ? '' : 's'} per output for variant road_${o.road_variant}, with the outputs a multiple of group_size ${g}`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftRoad.name,
      kind: 'linear',
      deltaShape: [out, -1],
      rank: 0,
      alpha: 1,
      scale: 1,
      tensors: { theta, alpha },
      // Pairs lie G/2 apart inside each group of G outputs: slabs keep whole groups.
      update: { kind: 'transform', cost: 2, rowBlock: g, block: 2 },
      fanInFanOut: false,
      biasMap: theta,
      options: o,
    };
  },

  async load(file, module, delta) {
    const { theta, alpha } = module.tensors;
    const variant = module.options!.road_variant as number, g = module.options!.group_size as number;
    const out = module.deltaShape[0];
    if (delta && delta.out !== out) throw new MergeError('SHAPE_MISMATCH', `RoAd module "${module.name}": ${out} outputs, the layer has ${delta.out}`);
    const { f, s } = roadColumns(await readValues(file, theta), await readValues(file, alpha), variant, g, out);
    const h = g / 2;
    const gather = new Uint32Array(out);
    const d = new Float32Array(out * 2);
    for (let pair = 0; pair < out / 2; pair++) {
      const j0 = Math.floor(pair / h) * g + (pair % h), j1 = j0 + h;
      gather[2 * pair] = j0;
      gather[2 * pair + 1] = j1;
      // [[f_j0, −s_j0], [s_j1, f_j1]] − I, row-major.
      d.set([f[j0] - 1, -s[j0], s[j1], f[j1] - 1], pair * 4);
    }
    return [{ kind: 'permuted-rotate', axis: 'out', blockSize: 2, delta: f32Bytes(d), gather, span: g }];
  },
};
