/**
 * PEFT FourierFT (tuners/fourierft): `fourierft_spectrum` (n) holds n spectral coefficients whose
 * positions are not saved: PEFT draws them when it builds the layer, as the first n entries of
 * torch.randperm(out·in, generator=torch.Generator().manual_seed(random_loc_seed)), entry e at
 * (e // in, e % in). get_delta_weight places the coefficients at those positions of an (out, in)
 * spectrum and merges ΔW = Re(ifft2(spectrum))·scaling, ifft2 dividing by out·in. The positions are
 * reproduced from torch's CPU generator (algorithms/math/torch-cpu-random.ts); ΔW is formed by rows
 * in float64: row p's column spectrum T_p[v] = Σ_{k: v_k = v} c_k·e^{2πi·p·u_k/out}, then an
 * inverse DFT along the inputs, two rows per transform. PEFT has no weight for FourierFT: a user weight s scales ΔW.
 */
import { MergeError } from '../../errors.js';
import { InverseDft } from '../../algorithms/math/inverse-dft.js';
import { RANDPERM_SMALL_LIMIT, TorchCpuGenerator, randpermPrefix } from '../../algorithms/math/torch-cpu-random.js';
import { fmtShape, moduleBasics, type Algorithm, type ModuleContext } from './algorithm.js';
import type { AdapterModule } from '../adapter.js';
import type { Role } from '../key-forms.js';
import type { TensorEntry } from '../safetensors-types.js';
import { f32Bytes, readValues } from './factor-io.js';

/**
 * Where PEFT's FourierFT and WaveFT put a layer's n coefficients: the first n entries of
 * torch.randperm(out·in) from torch.Generator().manual_seed(seed), entry e at (e // in, e % in).
 */
export function spectrumPositions(where: string, n: number, out: number, inF: number, seed: number): { rowOf: Uint32Array; colOf: Uint32Array } {
  const cells = out * inF;
  if (n > cells) throw new MergeError('BAD_CONFIG', `${where}: n_frequency ${n} is more than the layer's ${out}·${inF} = ${cells} weights (PEFT's update_layer raises ValueError)`);
  // From 2³²/20 entries on, torch's randperm shuffles with random64() in another order (and
  // older torch releases did not), so the positions would depend on the torch that trained it.
  if (cells >= RANDPERM_SMALL_LIMIT) throw new MergeError('UNSUPPORTED_FORMAT', `${where}: the layer has ${cells} weights; torch.randperm draws the coefficients' positions over that many with a random64 shuffle (from ${RANDPERM_SMALL_LIMIT} entries on) that this tool does not reproduce`);
  const flat = randpermPrefix(cells, n, new TorchCpuGenerator(BigInt(seed)));
  const rowOf = new Uint32Array(n), colOf = new Uint32Array(n);
  for (let k = 0; k < n; k++) {
    rowOf[k] = Math.floor(flat[k] / inF);
    colOf[k] = flat[k] % inF;
  }
  return { rowOf, colOf };
}

/**
 * A FourierFT or WaveFT module: its spectrum (n) scaled by the config's `scaling`, its positions
 * drawn at load from the config's seed. `lengthFromFile`: the spectrum's length is the layer's n
 * (WaveFT's proportional_parameters), else it must be the module's n_frequency.
 */
export function buildSpectrumModule(algorithm: string, method: string, role: 'fourierft_spectrum' | 'waveft_spectrum', tensors: ReadonlyMap<Role, TensorEntry>, context: ModuleContext, lengthFromFile: boolean): AdapterModule | null {
  const spectrum = tensors.get(role)!;
  const o = context.options;
  if (!o || typeof o.r !== 'number' || typeof o.random_loc_seed !== 'number' || context.alpha === undefined) {
    context.report('UNSUPPORTED_FORMAT', `has a PEFT ${method} spectrum (${role}) outside a PEFT folder with its adapter_config.json, which holds the seed of its positions`);
    return null;
  }
  if (spectrum.shape.length !== 1 || (!lengthFromFile && spectrum.shape[0] !== o.r)) {
    context.report(spectrum.shape.length !== 1 ? 'SHAPE_MISMATCH' : 'BAD_CONFIG', `${role} ${fmtShape(spectrum.shape)} is not (n_frequency) for the config's n_frequency ${o.r}`);
    return null;
  }
  return {
    ...moduleBasics(context),
    algorithm,
    kind: 'linear',
    deltaShape: [-1, -1],
    rank: spectrum.shape[0],
    alpha: context.alpha,
    scale: context.alpha,
    scaleOrigin: { kind: 'method', what: 'scaling' },
    tensors: { spectrum },
    update: { kind: 'dense' },
    fanInFanOut: false,
    options: o,
  };
}

export const peftFourierft: Algorithm = {
  name: 'peft-fourierft',
  title: 'FourierFT (PEFT)',
  defines: ['fourierft_spectrum'],
  roles: ['fourierft_spectrum'],

  build(tensors, context) {
    return buildSpectrumModule(peftFourierft.name, 'FourierFT', 'fourierft_spectrum', tensors, context, false);
  },

  async load(file, module, delta) {
    const { spectrum } = module.tensors;
    const n = spectrum.shape[0];
    const out = delta?.out ?? 0, inF = delta?.in ?? 0;
    const { rowOf, colOf } = spectrumPositions(`FourierFT module "${module.name}"`, n, out, inF, module.options!.random_loc_seed as number);
    const cells = out * inF;
    let values: Promise<Float32Array> | undefined;
    const dft = new InverseDft(inF);
    const cos = new Float64Array(out), sin = new Float64Array(out);
    for (let j = 0; j < out; j++) {
      cos[j] = Math.cos((2 * Math.PI * j) / out);
      sin[j] = Math.sin((2 * Math.PI * j) / out);
    }
    /** Row p's column spectrum T_p into (re, im). */
    const columnSpectrum = (c: Float32Array, p: number, re: Float64Array, im: Float64Array) => {
      re.fill(0);
      im.fill(0);
      for (let k = 0; k < n; k++) {
        const product = p * rowOf[k];
        const turn = product <= Number.MAX_SAFE_INTEGER ? product % out : Number((BigInt(p) * BigInt(rowOf[k])) % BigInt(out));
        re[colOf[k]] += c[k] * cos[turn];
        im[colOf[k]] += c[k] * sin[turn];
      }
    };
    const rows = async (rowStart: number, rowCount: number) => {
      const c = await (values ??= readValues(file, spectrum));
      const d = new Float32Array(rowCount * inF);
      const re1 = new Float64Array(inF), im1 = new Float64Array(inF), re2 = new Float64Array(inF), im2 = new Float64Array(inF);
      const zr = new Float64Array(inF), zi = new Float64Array(inF);
      // Two rows per transform: only Re(y_p) is kept, which is the transform of the Hermitian part
      // H_p[v] = (T_p[v] + conj(T_p[−v]))/2; Z = H_a + i·H_b then transforms to Re(y_a) + i·Re(y_b).
      for (let r = 0; r < rowCount; r += 2) {
        const pair = r + 1 < rowCount;
        columnSpectrum(c, rowStart + r, re1, im1);
        if (pair) columnSpectrum(c, rowStart + r + 1, re2, im2);
        else { re2.fill(0); im2.fill(0); }
        for (let v = 0; v < inF; v++) {
          const w = v === 0 ? 0 : inF - v;
          const hr1 = (re1[v] + re1[w]) / 2, hi1 = (im1[v] - im1[w]) / 2;
          const hr2 = (re2[v] + re2[w]) / 2, hi2 = (im2[v] - im2[w]) / 2;
          zr[v] = hr1 - hi2;
          zi[v] = hi1 + hr2;
        }
        dft.run(zr, zi);
        for (let q = 0; q < inF; q++) {
          d[r * inF + q] = zr[q] / cells;
          if (pair) d[(r + 1) * inF + q] = zi[q] / cells;
        }
      }
      return f32Bytes(d);
    };
    return [{ kind: 'dense', rows }];
  },
};
