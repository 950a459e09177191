/**
 * PEFT C3A (tuners/c3a): `c3a_kernel` (out/b, in/b, b) of a Linear, b its block size. PEFT's
 * get_delta_weight forms, through FFTs, the block-circulant matrix of the kernel and divides it by
 * the layer's inputs: block (m, n) of ΔW maps x to y_j = Σ_t w_mn[(t − j) mod b]·x_t, so
 * ΔW[m·b + j, n·b + t] = w_mn[(t − j) mod b] / in. Each element is one kernel value: the engine reads
 * ΔW by rows as a dense update at scale 1/in, exactly (no FFT rounding). PEFT has no weight for
 * C3A: a user weight s scales ΔW.
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

export const peftC3a: Algorithm = {
  name: 'peft-c3a',
  title: 'C3A (PEFT)',
  defines: ['c3a_kernel'],
  roles: ['c3a_kernel'],

  build(tensors, context) {
    const kernel = tensors.get('c3a_kernel')!;
    const o = context.options;
    if (!o || typeof o.r !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT C3A tensors (c3a_kernel) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    if (kernel.shape.length !== 3 || kernel.shape[2] !== o.r) {
      context.report(kernel.shape.length !== 3 ? 'SHAPE_MISMATCH' : 'BAD_CONFIG', `c3a_kernel ${fmtShape(kernel.shape)} is not (outputs / b, inputs / b, b) for the config's block size b = ${o.r}`);
      return null;
    }
    const [m, n, b] = kernel.shape;
    const inputs = n * b;
    return {
      ...moduleBasics(context),
      algorithm: peftC3a.name,
      kind: 'linear',
      deltaShape: [m * b, inputs],
      rank: b,
      alpha: 1,
      // PEFT divides the circulant by the base weight's last dimension, its inputs.
      scale: 1 / inputs,
      scaleOrigin: { kind: 'method', what: '1/in' },
      tensors: { kernel },
      update: { kind: 'dense' },
      fanInFanOut: false,
      options: o,
    };
  },

  async load(file, module) {
    const { kernel } = module.tensors;
    const [, n, b] = kernel.shape;
    const inputs = n * b;
    let values: Promise<Float32Array> | undefined;
    const rows = async (rowStart: number, rowCount: number) => {
      const w = await (values ??= readValues(file, kernel));
      const out = new Float32Array(rowCount * inputs);
      for (let r = 0; r < rowCount; r++) {
        const row = rowStart + r, m = Math.floor(row / b), j = row % b;
        for (let col = 0; col < inputs; col++) {
          const nb = Math.floor(col / b), t = col % b;
          out[r * inputs + col] = w[(m * n + nb) * b + ((t - j + b) % b)];
        }
      }
      return f32Bytes(out);
    };
    return [{ kind: 'dense', rows }];
  },
};
