/**
 * PEFT WaveFT (tuners/waveft): `waveft_spectrum` (n) holds n coefficients at the positions FourierFT's
 * are drawn at (the first n entries of torch.randperm(out·in) from random_loc_seed, peft-fourierft.ts).
 *
 * With `use_idwt` false get_delta_weight adds them where they are: ΔW = dense(spectrum)·scaling.
 * With `use_idwt` true (PEFT's default) the coefficients are wavelet coefficients: PEFT pads the
 * (out, in) grid by the family's WAVELET_REDUCTIONS (r, r) and then to even sizes, centres the
 * coefficients in it (offset ⌊(padded − size)/2⌋), splits it into quadrants (top-left approximation,
 * top-right horizontal, bottom-left vertical, bottom-right diagonal detail), runs one level of
 * waverec2d with the family's filters (algorithms/math/inverse-wavelet-2d.ts) and crops the centre
 * (out, in) of the result: ΔW = crop(waverec2d(quadrants))·scaling. Formed here in float64 by row
 * slabs from the sparse coefficients, never as a dense out·in matrix. PEFT has no weight for WaveFT:
 * a user weight s scales ΔW.
 */
import { MergeError } from '../../errors.js';
import { SparseInverseWavelet2d } from '../../algorithms/math/inverse-wavelet-2d.js';
import { PEFT_WAVELET_FAMILIES, peftWaveletFilters } from '../../algorithms/math/wavelet-filters.js';
import type { Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { buildSpectrumModule, spectrumPositions } from './peft-fourierft.js';

/**
 * PEFT's WAVELET_REDUCTIONS (tuners/waveft/constants.py), the rows and columns added on each axis
 * before the transform: db1–db38 and sym2–sym20 2n − 2, coif1–coif17 6n − 2. Undefined for any other
 * name (names are matched exactly, as the dict is), which WaveFTConfig refuses.
 */
export function peftWaveletReduction(family: string): number | undefined {
  const m = /^(db|sym|coif)([1-9][0-9]?)$/.exec(family);
  if (!m) return undefined;
  const n = Number(m[2]);
  const [first, last, taps] = m[1] === 'db' ? [1, 38, 2] : m[1] === 'sym' ? [2, 20, 2] : [1, 17, 6];
  return n >= first && n <= last ? taps * n - 2 : undefined;
}

/**
 * The family a `use_idwt` WaveFT config reconstructs with, as its index in PEFT_WAVELET_FAMILIES;
 * throws for a name WAVELET_REDUCTIONS lists but PEFT cannot reconstruct with.
 */
export function peftWaveletFamilyIndex(family: string, configFile: string): number {
  const reduction = peftWaveletReduction(family);
  const filters = peftWaveletFilters(family);
  if (reduction === undefined) throw new MergeError('BAD_CONFIG', `${configFile}: WaveFT "wavelet_family" "${family}" is not one PEFT lists (WaveFTConfig raises ValueError)`);
  if (!filters) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${configFile}: WaveFT "wavelet_family" "${family}" has no filters in PEFT's wavelet.py (db1–db10, sym2–sym10, coif1–coif5), so PEFT's get_delta_weight raises ValueError and cannot merge it`);
  }
  // PEFT's coif5 table has 48 taps where WAVELET_REDUCTIONS pads for 30: waverec2d returns fewer rows
  // and columns than the layer's, which get_delta_weight's crop cannot make (out, in), so PEFT's
  // merge fails on the shapes.
  if (filters.recLo.length - 2 > reduction) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${configFile}: WaveFT "wavelet_family" "${family}": PEFT's filter for it has ${filters.recLo.length} taps while its WAVELET_REDUCTIONS pads for ${reduction + 2}, so PEFT's inverse transform comes out smaller than the layer and PEFT cannot merge it`);
  }
  return PEFT_WAVELET_FAMILIES.indexOf(family);
}

export const peftWaveft: Algorithm = {
  name: 'peft-waveft',
  title: 'WaveFT (PEFT)',
  defines: ['waveft_spectrum'],
  roles: ['waveft_spectrum'],

  build(tensors, context) {
    // With proportional_parameters PEFT shares n_frequency·layers out by layer size, so the spectrum's length is the layer's n.
    return buildSpectrumModule(peftWaveft.name, 'WaveFT', 'waveft_spectrum', tensors, context, context.options?.proportional_parameters === true);
  },

  async load(file, module, delta) {
    const { spectrum } = module.tensors;
    const n = spectrum.shape[0];
    const out = delta?.out ?? 0, inF = delta?.in ?? 0;
    const options = module.options!;
    const where = `WaveFT module "${module.name}"`;
    const { rowOf, colOf } = spectrumPositions(where, n, out, inF, options.random_loc_seed as number);
    let values: Promise<Float32Array> | undefined;
    if (options.use_idwt !== true) {
      return [{
        kind: 'dense',
        async rows(rowStart, rowCount) {
          const c = await (values ??= readValues(file, spectrum));
          const d = new Float32Array(rowCount * inF);
          // randperm's entries are distinct, so each position takes one coefficient.
          for (let k = 0; k < n; k++) {
            if (rowOf[k] >= rowStart && rowOf[k] < rowStart + rowCount) d[(rowOf[k] - rowStart) * inF + colOf[k]] = c[k];
          }
          return f32Bytes(d);
        },
      }];
    }
    const family = PEFT_WAVELET_FAMILIES[options.wavelet_family_index as number];
    const { recLo, recHi } = peftWaveletFilters(family)!;
    const reduction = peftWaveletReduction(family)!;
    const padRows = out + reduction + ((out + reduction) % 2), padCols = inF + reduction + ((inF + reduction) % 2);
    const rowOffset = (padRows - out) >> 1, colOffset = (padCols - inF) >> 1;
    const h = padRows / 2, w = padCols / 2;
    // Each coefficient's quadrant (sub-band) and place in it, from its place in the padded grid.
    const band = new Uint8Array(n), bi = new Uint32Array(n), bj = new Uint32Array(n);
    for (let k = 0; k < n; k++) {
      const R = rowOf[k] + rowOffset, C = colOf[k] + colOffset;
      const bottom = R >= h, right = C >= w;
      // waverec2d's (cA, (cH, cV, cD)) = (top-left, (top-right, bottom-left, bottom-right)).
      band[k] = (bottom ? 2 : 0) + (right ? 1 : 0);
      bi[k] = bottom ? R - h : R;
      bj[k] = right ? C - w : C;
    }
    let idwt: Promise<SparseInverseWavelet2d> | undefined;
    const transform = async () => new SparseInverseWavelet2d(recLo, recHi, h, w, { band, i: bi, j: bj, value: await (values ??= readValues(file, spectrum)) });
    // get_delta_weight crops the centre (out, in) when the result is larger (by one where a size is odd).
    const rowStart0 = (2 * h - recLo.length + 2 - out) >> 1, colStart0 = (2 * w - recLo.length + 2 - inF) >> 1;
    if (rowStart0 < 0 || colStart0 < 0) throw new MergeError('UNSUPPORTED_FORMAT', `${where}: PEFT's inverse transform with "${family}" comes out smaller than the (${out}, ${inF}) layer`);
    return [{
      kind: 'dense',
      async rows(rowStart, rowCount) {
        const t = await (idwt ??= transform());
        const d = new Float32Array(rowCount * inF);
        t.rowsInto(rowStart0 + rowStart, rowCount, colStart0, inF, d);
        return f32Bytes(d);
      },
    }];
  },
};
