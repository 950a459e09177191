/**
 * PEFT OFT as saved before PEFT 0.16: whole b × b blocks `oft_r` (blocks or 1 with block_share)
 * turned into rotations by R = (I − S)(I + S)⁻¹, S = ½(A − Aᵀ), after COFT's projection of A
 * itself when `coft` is set (each block's Frobenius norm capped at ε·c²/√(oft_r's first dim)).
 * Two formats, told apart by `oft_s` (PEFT says which: only the later config has oft_block_size):
 * - up to PEFT 0.13, `oft_r` (r, n, n) with n = ⌈out / r⌉ rotates the OUTPUT rows:
 *   W' = R[:out, :out]ᵀ·W with R = diag(R_0, …), the last block cut short when r·n > out;
 *   c = n.
 * - PEFT 0.14 and 0.15, `oft_r` (r, b, b) with b = in / r and `oft_s` (out, 1) rotate the inputs:
 *   W' = (R·Wᵀ)ᵀ ⊙ oft_s (a conv's in·k·k flattened); c = ⌈out / r⌉ with r = in / b.
 * PEFT has no weight for OFT: a user weight s maps by I + s·(R − I) and scales by 1 + s·(oft_s − 1).
 */
import { peftHalfSkewDeltas } from '../../algorithms/math/boft.js';
import { coftProject } from '../../algorithms/math/oft.js';
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm, type ModulePiece } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { product } from '../../integers.js';

export const peftOftLegacy: Algorithm = {
  name: 'peft-oft-legacy',
  title: 'OFT (PEFT before 0.16)',
  defines: ['oft_r', 'oft_s'],
  roles: ['oft_r', 'oft_s'],

  build(tensors, context) {
    const r = tensors.get('oft_r');
    const s = tensors.get('oft_s');
    const options = context.options;
    if (!options) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT OFT tensors (oft_r) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    if (!r) {
      context.report('UNSUPPORTED_FORMAT', 'has oft_s but no oft_r');
      return null;
    }
    const [rows, n, n2] = r.shape;
    if (r.shape.length !== 3 || n !== n2 || rows < 1 || n < 1) {
      context.report('SHAPE_MISMATCH', `oft_r ${fmtShape(r.shape)} is not (blocks, size, size)`);
      return null;
    }
    const shared = options.block_share === true;
    if (shared && rows !== 1) {
      context.report('SHAPE_MISMATCH', `oft_r ${fmtShape(r.shape)} with block_share should have one block`);
      return null;
    }
    const inputs = s !== undefined;
    // PEFT 0.14 added oft_block_size to the config and oft_s to the weights together.
    if (inputs !== (options.oft_block_size !== undefined)) {
      context.report('BAD_CONFIG', inputs
        ? 'has oft_s (PEFT 0.14–0.15 OFT) but the config has no oft_block_size, which that PEFT always writes'
        : 'has oft_r without oft_s (PEFT 0.13 OFT) but the config has oft_block_size, which that PEFT never wrote');
      return null;
    }
    if (s && (s.shape.length !== 2 || !s.shape.includes(1))) {
      context.report('SHAPE_MISMATCH', `oft_s ${fmtShape(s.shape)} is neither (out, 1) nor (1, out)`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftOftLegacy.name,
      kind: 'linear',
      // 0.14–0.15: outputs from oft_s, inputs from the blocks (any, with shared blocks);
      // 0.13: both from the base.
      deltaShape: s ? [product(s.shape), shared ? -1 : rows * n] : [-1, -1],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { r, ...(s ? { s } : {}) },
      // Inputs rotated (0.14–0.15): PEFT sizes a conv's rotation and views its weight as in·kh², square kernels only.
      // Both land on split tensors holding a fused layer's rows (splitRows): the input rotation alike on
      // each, oft_s and COFT's c from the fused layer's outputs; 0.13's output blocks where whole runs land.
      update: s ? { kind: 'transform', cost: n, block: n, squareKernel: true, splitRows: true } : { kind: 'transform', cost: n, rowBlock: n, block: n, splitRows: true },
      fanInFanOut: false,
      options,
    };
  },

  async load(file, module, delta) {
    const { r, s } = module.tensors;
    const [rows, n] = r.shape;
    const o = module.options ?? {};
    const out = delta?.out, inF = delta?.in;
    if (out === undefined || inF === undefined) throw new MergeError('PLAN_INVALID', `OFT module "${module.name}": the layer's shape is unknown`);
    const shared = o.block_share === true;
    const fail = (why: string): never => {
      throw new MergeError('SHAPE_MISMATCH', `OFT module "${module.name}": oft_r ${fmtShape(r.shape)} ${why}`);
    };
    // The blocks along the rotated axis, and c of COFT's ε·c².
    let axis: 'out' | 'in', length: number, c: number;
    if (s) {
      axis = 'in';
      length = inF;
      if (inF % n !== 0 || (!shared && rows * n !== inF)) fail(`does not cover the layer's ${inF} inputs in blocks of ${n}`);
      c = Math.ceil(out / (inF / n));
    } else {
      axis = 'out';
      length = out;
      const blocks = shared ? (typeof o.r === 'number' ? o.r : 8) : rows;
      if (n !== Math.ceil(out / blocks)) fail(`does not hold ${blocks} blocks of ⌈${out} / ${blocks}⌉ over the layer's ${out} outputs`);
      c = n;
    }
    let a: Float64Array = Float64Array.from(await readValues(file, r));
    if (o.coft === true) a = coftProject(a, n, rows, (typeof o.eps === 'number' ? o.eps : 6e-5) * c * c);
    const deltas = peftHalfSkewDeltas(a, n);
    const count = Math.ceil(length / n);
    const blocks = new Float32Array(count * n * n);
    for (let k = 0; k < count; k++) {
      const src = shared ? 0 : k;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          // 0.13 maps output rows by Rᵀ; 0.14–0.15 map inputs by R.
          blocks[k * n * n + i * n + j] = axis === 'out' ? deltas[src * n * n + j * n + i] : deltas[src * n * n + i * n + j];
        }
      }
    }
    const pieces: ModulePiece[] = [length % n === 0
      ? { kind: 'rotate', axis, blockSize: n, delta: f32Bytes(blocks) }
      // The last block is cut short: PEFT takes R[:out, :out].
      : { kind: 'permuted-rotate', axis, blockSize: n, delta: f32Bytes(blocks), span: n }];
    if (s) pieces.push({ kind: 'scale', axis: 'out', w: f32Bytes(await readValues(file, s)), factor: true });
    return pieces;
  },
};
