/**
 * Diag-OFT (LyCORIS modules/diag_oft.py): W's output rows, in blocks of b, are rotated by
 * R = (I + Q)(I − Q)⁻¹ with Q = B − Bᵀ from oft_blocks (n, b, b); the stored α is the constraint,
 * κ = α·out (Q scaled to ‖Q‖ = κ when larger); with user weight s each block of rows becomes
 * (s·R − s·I + I)ᵀ·W_k; then, with `rescale` (out, 1…), every row is multiplied by it (not by s).
 * ComfyUI differs: it caps ‖Q‖ at α (not α·out), ignores rescale, and applies s twice.
 * BOFT's butterfly blocks (4-D oft_blocks, LyCORIS tells them apart the same way) are built by
 * ./boft.ts.
 */
import { diagOftBlocks } from '../../algorithms/math/oft.js';
import { fmtShape, type Algorithm } from './algorithm.js';
import { boft } from './boft.js';
import { f32Bytes, readValues } from './factor-io.js';
import { lycorisOftModule, rescaleFits, rescalePieces } from './lycoris-oft-parts.js';

export const oft: Algorithm = {
  name: 'oft',
  title: 'OFT',
  defines: ['oft_blocks', 'rescale'],
  roles: ['oft_blocks', 'rescale'],

  build(tensors, context) {
    const blocks = tensors.get('oft_blocks');
    const rescale = tensors.get('rescale');
    if (!blocks) {
      context.report('UNSUPPORTED_FORMAT', 'has rescale but no oft_blocks');
      return null;
    }
    if (blocks.shape.length === 4) return boft.build(tensors, context);
    const [n, b, b2] = blocks.shape;
    const out = n * b;
    if (blocks.shape.length !== 3 || b !== b2 || !rescaleFits(rescale, out)) {
      context.report('SHAPE_MISMATCH', `oft_blocks ${fmtShape(blocks.shape)}${rescale ? ` and rescale ${fmtShape(rescale.shape)}` : ''} do not fit (expected (n, b, b) and (n·b, 1…))`);
      return null;
    }
    return lycorisOftModule(context, oft.name, blocks, rescale, out, { kind: 'transform', cost: b, rowBlock: b, block: b });
  },

  async load(file, module) {
    const { blocks, rescale } = module.tensors;
    const b = blocks.shape[1];
    const out = module.deltaShape[0];
    // Rotation blocks for s = 1 are Rᵀ; the engine applies I + s·(Rᵀ − I).
    const m = diagOftBlocks(await readValues(file, blocks), b, module.alpha * out, 1);
    for (let k = 0; k < m.length / (b * b); k++) for (let i = 0; i < b; i++) m[k * b * b + i * b + i] -= 1;
    return [{ kind: 'rotate', axis: 'out', blockSize: b, delta: f32Bytes(m) }, ...(await rescalePieces(file, rescale))];
  },
};
