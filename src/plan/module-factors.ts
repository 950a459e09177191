/**
 * A module's update as the f32-or-narrower factors the engine merges, whatever algorithm stored
 * it: plain LoRA factors as they are, LoHa's Hadamard product as an exact Khatri–Rao product, …
 * (each algorithm's `load`, formats/algorithms/).
 */
import type { FloatTensorBytes } from '../engine/merge-op.js';
import type { AdapterModule } from '../formats/adapter.js';
import { loadModuleUpdate } from '../formats/algorithms/index.js';
import type { SafetensorsFile } from '../formats/safetensors-types.js';

export { readFloat } from '../formats/read-float.js';

export interface ModuleFactors {
  /** rank × in */
  a: FloatTensorBytes;
  /** out × rank */
  b: FloatTensorBytes;
  rank: number;
}

export async function readModuleFactors(file: SafetensorsFile, module: AdapterModule): Promise<ModuleFactors> {
  const { a, b, rank } = await loadModuleUpdate(file, module);
  return { a, b, rank };
}
