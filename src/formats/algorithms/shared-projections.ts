/**
 * Loading VeRA-style modules (VeRA, PEFT PVeRA): per module λ_b (out) and λ_d, over one pair of
 * projections A (rows, in_max) and B (out_max, r) that the whole adapter shares and each layer
 * slices to its size.
 */
import { MergeError } from '../../errors.js';
import { veraFactors } from '../../algorithms/math/low-rank-forms.js';
import type { AdapterModule } from '../adapter.js';
import type { DeltaDims, ModuleUpdate } from './algorithm.js';
import type { SafetensorsFile } from '../safetensors-types.js';
import { lowRankPiece, readMatrix, readValues } from './factor-io.js';

/**
 * ΔW = (λ_b ⊙ B[:out, :]) · (λ_d[:r] ⊙ A[:r, :in]) with r = B's columns, as one low-rank piece. The
 * layer's inputs are the first `in` of A's columns (the base says how many, through `delta`). Only
 * A's and λ_d's first r rows are read into the product: VeRA has no more, PVeRA's second half is the
 * log-variance it samples from while training, which its merge leaves out. `title` and `aRole` name
 * the method and its A in the error.
 */
export async function sharedProjectionPiece(file: SafetensorsFile, module: AdapterModule, delta: DeltaDims | undefined, title: string, aRole: string): Promise<ModuleUpdate> {
  const { lb, ld, a, b } = module.tensors;
  const out = lb.shape[0], r = b.shape[1];
  const inF = delta?.in ?? a.shape[1];
  if (inF > a.shape[1]) throw new MergeError('SHAPE_MISMATCH', `${title} module "${module.name}": the layer has ${inF} inputs, ${aRole} only ${a.shape[1]} columns`);
  const full = await readMatrix(file, a);
  const head = { rows: r, cols: full.cols, data: full.data.subarray(0, r * full.cols) };
  return [lowRankPiece(veraFactors(head, await readMatrix(file, b), await readValues(file, lb), (await readValues(file, ld)).subarray(0, r), out, inF))];
}
