/**
 * PEFT WaveFT (tuners/waveft) saved with `use_idwt: false`: `waveft_spectrum` (n) holds n
 * coefficients at the positions FourierFT's are drawn at (the first n entries of torch.randperm(out·in)
 * from random_loc_seed, peft-fourierft.ts), and get_delta_weight adds them there as they are:
 * ΔW = dense(spectrum)·scaling. With use_idwt (PEFT's default) the coefficients go through PEFT's
 * inverse wavelet transform instead, which is refused when the config is read. PEFT has no weight
 * for WaveFT: a user weight s scales ΔW.
 */
import type { Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { buildSpectrumModule, spectrumPositions } from './peft-fourierft.js';

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
    const { rowOf, colOf } = spectrumPositions(`WaveFT module "${module.name}"`, n, out, inF, module.options!.random_loc_seed as number);
    let values: Promise<Float32Array> | undefined;
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
  },
};
