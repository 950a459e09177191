/**
 * A module's update as the f32-or-narrower factors the engine merges, whatever algorithm stored
 * it: plain LoRA factors as they are, LoHa's Hadamard product as an exact Khatri–Rao product, …
 * (each algorithm's `load`, formats/algorithms/).
 */
import type { FloatTensorBytes } from '../engine/merge-op.js';
import type { AdapterModule } from '../formats/adapter.js';
import { loadModuleUpdate, type DeltaDims } from '../formats/algorithms/index.js';
import type { SafetensorsFile } from '../formats/safetensors-types.js';
import { MergeError } from '../errors.js';

export { readFloat } from '../formats/read-float.js';

export interface ModuleFactors {
  /** rank × in */
  a: FloatTensorBytes;
  /** out × rank */
  b: FloatTensorBytes;
  rank: number;
}

/**
 * The factors of a module whose whole update is one low-rank product (LoRA, LoHa, LoKr as a
 * product…); `delta`: ΔW's dims where the module's tensors leave a side open (RandLoRA, MiSS, VeRA).
 */
export async function readModuleFactors(file: SafetensorsFile, module: AdapterModule, delta?: DeltaDims): Promise<ModuleFactors> {
  const pieces = await loadModuleUpdate(file, module, delta);
  const [piece] = pieces;
  if (pieces.length !== 1 || piece.kind !== 'low-rank') {
    throw new MergeError('PLAN_INVALID', `module "${module.name}" (${module.algorithm}) is not a single low-rank product`);
  }
  return { a: piece.a, b: piece.b, rank: piece.rank };
}
