/**
 * PEFT HRA (tuners/hra): `hra_u` (in, r) holds r Householder vectors over the layer's inputs (a
 * conv's in·kh·kw flattened); the merge is W' = W·H. Without `apply_GS`, each column is normalised
 * and H = (I − 2u₀u₀ᵀ)(I − 2u₁u₁ᵀ)···(I − 2u_{r−1}u_{r−1}ᵀ), in that order; with it, the columns
 * are orthonormalised by Gram–Schmidt (each against the ones before it, one at a time) into Q and
 * H = I − 2QQᵀ. H is formed in float64 as H = I + U·X (U the normalised vectors), and the engine
 * adds W·U·X to W on its float64 executor. PEFT has no weight for HRA (it warns and uses 1): a user
 * weight s merges W·(I + s·(H − I)), as for OFT.
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

/**
 * H − I = U·X for the columns of `u` (n × r, row-major), as PEFT's get_delta_weight builds H.
 * Returns U (n × r) and X (r × n), or the index of a column whose norm is zero (PEFT divides by it).
 */
export function householderFactors(u: ArrayLike<number>, n: number, r: number, gramSchmidt: boolean): { u: Float64Array; x: Float64Array } | number {
  const cols: Float64Array[] = [];
  for (let i = 0; i < r; i++) {
    const c = new Float64Array(n);
    for (let k = 0; k < n; k++) c[k] = u[k * r + i];
    if (gramSchmidt) {
      for (const q of cols) {
        let dot = 0;
        for (let k = 0; k < n; k++) dot += q[k] * c[k];
        for (let k = 0; k < n; k++) c[k] -= dot * q[k];
      }
    }
    let norm = 0;
    for (let k = 0; k < n; k++) norm += c[k] * c[k];
    norm = Math.sqrt(norm);
    if (!(norm > 0) || !Number.isFinite(norm)) return i;
    for (let k = 0; k < n; k++) c[k] /= norm;
    cols.push(c);
  }
  const uOut = new Float64Array(n * r);
  for (let i = 0; i < r; i++) for (let k = 0; k < n; k++) uOut[k * r + i] = cols[i][k];
  const x = new Float64Array(r * n);
  if (gramSchmidt) {
    // I − 2QQᵀ: X = −2Qᵀ.
    for (let i = 0; i < r; i++) for (let k = 0; k < n; k++) x[i * n + k] = -2 * cols[i][k];
    return { u: uOut, x };
  }
  // (I + U_{i}X_{i})(I − 2uuᵀ) = I + U_{i}(X_{i} − 2(X_{i}u)uᵀ) − 2uuᵀ: earlier rows take the
  // reflection, the new vector adds the row −2uᵀ.
  for (let i = 0; i < r; i++) {
    const c = cols[i];
    for (let j = 0; j < i; j++) {
      const row = x.subarray(j * n, (j + 1) * n);
      let dot = 0;
      for (let k = 0; k < n; k++) dot += row[k] * c[k];
      for (let k = 0; k < n; k++) row[k] -= 2 * dot * c[k];
    }
    for (let k = 0; k < n; k++) x[i * n + k] = -2 * c[k];
  }
  return { u: uOut, x };
}

export const peftHra: Algorithm = {
  name: 'peft-hra',
  title: 'HRA (PEFT)',
  defines: ['hra_u'],
  roles: ['hra_u'],

  build(tensors, context) {
    const u = tensors.get('hra_u')!;
    const o = context.options;
    if (!o || typeof o.r !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT HRA tensors (hra_u) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    if (u.shape.length !== 2 || u.shape[1] !== o.r) {
      context.report(u.shape.length !== 2 ? 'SHAPE_MISMATCH' : 'BAD_CONFIG', `hra_u ${fmtShape(u.shape)} is not (inputs, r) for the config's r = ${o.r}`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftHra.name,
      kind: 'linear',
      // Outputs are whatever the base has; the reflected axis is its inputs (a conv's in·kh·kw, kh = kw).
      deltaShape: [-1, u.shape[0]],
      rank: u.shape[1],
      alpha: 1,
      scale: 1,
      tensors: { u },
      // PEFT sizes hra_u for a conv's in·kh² inputs and views the weight so when it merges: square kernels only.
      update: { kind: 'transform', cost: 2 * u.shape[1], squareKernel: true },
      fanInFanOut: false,
      options: o,
    };
  },

  async load(file, module) {
    const { u } = module.tensors;
    const [n, r] = u.shape;
    const f = householderFactors(await readValues(file, u), n, r, module.options?.apply_GS === true);
    if (typeof f === 'number') {
      throw new MergeError('UNSUPPORTED_FORMAT', `HRA module "${module.name}": hra_u column ${f} has norm zero${module.options?.apply_GS === true ? ' after Gram–Schmidt against the columns before it' : ''}, so PEFT's reflection is not defined (it would write NaN)`);
    }
    return [{ kind: 'project', p: f32Bytes(Float32Array.from(f.u)), q: f32Bytes(Float32Array.from(f.x)), rank: r }];
  },
};
