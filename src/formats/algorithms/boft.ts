/**
 * LyCORIS BOFT (lycoris/modules/boft.py): `oft_blocks` (m, n, b, b) are m butterfly factors of n
 * blocks of b (b even, n·b = out, n a power of two and m = log2(n) + 1, as LyCORIS builds them);
 * the stored α is the constraint, κ = α·out over all factors at once; factor i rotates W's output
 * rows in runs of 2^i·b (math/boft.ts), factors applied from the first; with user weight s each
 * block is s·R + (1 − s)·I; then every row is multiplied by `rescale` (not by s). The last factor
 * mixes all rows, so a tensor is merged as one slab (limits: MAX_MIXED_ROWS_BYTES).
 * ComfyUI differs: it caps ‖Q‖ at α instead of α·out and applies s a second time to W' − W.
 * Reached through the diag-OFT algorithm, which owns `oft_blocks` and hands 4-D ones here.
 */
import { lycorisBoftDeltas, lycorisButterflyGather } from '../../algorithms/math/boft.js';
import type { Role } from '../key-forms.js';
import type { TensorEntry } from '../safetensors-types.js';
import { fmtShape, type Algorithm, type ModuleContext, type ModulePiece } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { lycorisOftModule, rescaleFits, rescalePieces } from './lycoris-oft-parts.js';

export const boft: Algorithm = {
  name: 'boft',
  title: 'BOFT',
  // Claimed through `oft` (a module is BOFT by the rank of its oft_blocks).
  defines: [],
  roles: ['oft_blocks', 'rescale'],

  build(tensors: ReadonlyMap<Role, TensorEntry>, context: ModuleContext) {
    const blocks = tensors.get('oft_blocks')!;
    const rescale = tensors.get('rescale');
    const [m, n, b, b2] = blocks.shape;
    const out = n * b;
    if (b !== b2 || b < 2 || b % 2 !== 0 || !rescaleFits(rescale, out)) {
      context.report('SHAPE_MISMATCH', `BOFT oft_blocks ${fmtShape(blocks.shape)}${rescale ? ` and rescale ${fmtShape(rescale.shape)}` : ''} do not fit (expected (m, n, b, b) with b even and rescale (n·b, 1…))`);
      return null;
    }
    if ((n & (n - 1)) !== 0 || m !== Math.log2(n) + 1) {
      context.report('SHAPE_MISMATCH', `BOFT oft_blocks ${fmtShape(blocks.shape)}: LyCORIS builds log2(n) + 1 butterfly factors of n blocks, n a power of two (here n = ${n}, m = ${m})`);
      return null;
    }
    // The last factor mixes runs of 2^(m−1)·b = out rows.
    return lycorisOftModule(context, boft.name, blocks, rescale, out, { kind: 'transform', cost: m * b, rowBlock: out, block: b });
  },

  async load(file, module) {
    const { blocks, rescale } = module.tensors;
    const [m, n, b] = blocks.shape;
    const out = n * b;
    const deltas = lycorisBoftDeltas(await readValues(file, blocks), b, module.alpha * out);
    const factor = n * b * b;
    const pieces: ModulePiece[] = [];
    for (let i = 0; i < m; i++) {
      pieces.push({
        kind: 'permuted-rotate', axis: 'out', blockSize: b, span: 2 ** i * b,
        delta: f32Bytes(deltas.slice(i * factor, (i + 1) * factor)), gather: lycorisButterflyGather(out, b, i),
      });
    }
    pieces.push(...(await rescalePieces(file, rescale)));
    return pieces;
  },
};
