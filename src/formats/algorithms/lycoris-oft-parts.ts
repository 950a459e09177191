/**
 * What LyCORIS's diag-OFT (./oft.ts) and BOFT (./boft.ts) modules share: `oft_blocks` whose stored
 * α is the rotation's constraint rather than a scale, and an optional `rescale` (out, 1…) every
 * output row is multiplied by after the rotation (not by the user's weight).
 */
import type { AdapterModule } from '../adapter.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';
import { moduleBasics, type ModuleContext, type ModulePiece, type UpdateShape } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { product } from '../../integers.js';

/** No rescale, or one holding one value per output row (`out`) in a leading dim of that size. */
export function rescaleFits(rescale: TensorEntry | undefined, out: number): boolean {
  return !rescale || (rescale.shape[0] === out && product(rescale.shape) === out);
}

/** The module of `out` rotated rows; a rescale of more than two dims marks a conv layer. */
export function lycorisOftModule(context: ModuleContext, algorithm: string, blocks: TensorEntry, rescale: TensorEntry | undefined, out: number, update: UpdateShape): AdapterModule {
  return {
    ...moduleBasics(context),
    algorithm,
    kind: rescale && rescale.shape.length > 2 ? 'conv' : 'linear',
    deltaShape: [out, -1],
    rank: 1,
    // α is the constraint, not a scale.
    alpha: context.alpha ?? 0,
    scale: 1,
    tensors: { blocks, ...(rescale ? { rescale } : {}) },
    update,
    fanInFanOut: false,
  };
}

/** The rescale as the engine's fixed scale of the output rows, after the rotation pieces; none without one. */
export async function rescalePieces(file: SafetensorsFile, rescale: TensorEntry | undefined): Promise<ModulePiece[]> {
  return rescale ? [{ kind: 'fixed-scale', axis: 'out', factors: f32Bytes(await readValues(file, rescale)) }] : [];
}
