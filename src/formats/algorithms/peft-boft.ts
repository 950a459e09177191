/**
 * PEFT BOFT (tuners/boft): `boft_R` (N, D, H, H) holds N butterfly factors of D blocks of H over
 * the layer's inputs (a conv's in·k·k flattened), `boft_s` one scale per output. The merge is
 * W' = (R·Wᵀ)ᵀ ⊙ boft_s with R = F_{N−1}···F_0, F_i = P_i·diag(cayley(boft_R[i]))·P_iᵀ (the
 * butterfly permutations and the Cayley form in math/boft.ts), dropout playing no part. PEFT has
 * no weight for BOFT: a user weight s ≠ 1 maps each block by I + s·(R_k − I) and scales by
 * 1 + s·(boft_s − 1).
 */
import { peftButterflyGather, peftHalfSkewDeltas } from '../../algorithms/math/boft.js';
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm, type ModulePiece } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { product } from '../../integers.js';

export const peftBoft: Algorithm = {
  name: 'peft-boft',
  title: 'BOFT (PEFT)',
  defines: ['boft_R', 'boft_s'],
  roles: ['boft_R', 'boft_s'],

  build(tensors, context) {
    const r = tensors.get('boft_R');
    const s = tensors.get('boft_s');
    if (!context.options) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT BOFT tensors (boft_R) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    if (!r || !s) {
      context.report('UNSUPPORTED_FORMAT', `needs boft_R and boft_s (it has only ${r ? 'boft_R' : 'boft_s'})`);
      return null;
    }
    const [factors, blocks, h, h2] = r.shape;
    if (r.shape.length !== 4 || h !== h2 || factors < 1 || blocks < 1 || h < 1) {
      context.report('SHAPE_MISMATCH', `boft_R ${fmtShape(r.shape)} is not (factors, blocks, size, size)`);
      return null;
    }
    // PEFT's own checks when it builds more than one factor.
    if (factors > 1 && (h % 2 !== 0 || blocks % 2 ** (factors - 1) !== 0)) {
      context.report('SHAPE_MISMATCH', `boft_R ${fmtShape(r.shape)}: ${factors} butterfly factors need an even block size and a block count divisible by ${2 ** (factors - 1)}, as PEFT requires`);
      return null;
    }
    const out = product(s.shape);
    if (s.shape.length !== 2 || !s.shape.includes(1)) {
      context.report('SHAPE_MISMATCH', `boft_s ${fmtShape(s.shape)} is neither (out, 1) nor (1, out)`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftBoft.name,
      kind: 'linear',
      deltaShape: [out, blocks * h],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { r, s },
      // PEFT sizes boft_R for a conv's in·kh² inputs and views the weight so when it merges: square kernels only.
      update: { kind: 'transform', cost: factors * h, block: h, squareKernel: true, splitRows: true },
      fanInFanOut: false,
    };
  },

  async load(file, module, delta) {
    const { r, s } = module.tensors;
    const [factors, blocks, h] = r.shape;
    const inF = blocks * h;
    if (delta && delta.in !== inF) throw new MergeError('SHAPE_MISMATCH', `BOFT module "${module.name}": boft_R covers ${inF} inputs, the layer has ${delta.in}`);
    const deltas = peftHalfSkewDeltas(await readValues(file, r), h);
    const size = blocks * h * h;
    const pieces: ModulePiece[] = [];
    for (let i = 0; i < factors; i++) {
      const d = f32Bytes(deltas.slice(i * size, (i + 1) * size));
      // One factor: P is the identity and the map is plain blocks.
      pieces.push(factors === 1
        ? { kind: 'rotate', axis: 'in', blockSize: h, delta: d }
        : { kind: 'permuted-rotate', axis: 'in', blockSize: h, delta: d, gather: peftButterflyGather(inF, h, i, factors), span: 2 ** i * h });
    }
    pieces.push({ kind: 'scale', axis: 'out', w: f32Bytes(await readValues(file, s)), factor: true });
    return pieces;
  },
};
