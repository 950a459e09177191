/**
 * The contract every adapter algorithm (LoRA, LoHa, …) meets, one file each, listed in
 * ./index.ts. An algorithm claims the roles it understands (key-forms.ts names them), builds a
 * module from one module's tensors or reports why it cannot, and later loads the module's update
 * in the form the engine merges. Algorithms know nothing about layouts: which base tensor and rows
 * a module lands on is decided elsewhere (formats/layouts/).
 */
import type { FloatTensorBytes } from '../../engine/merge-op.js';
import type { MergeErrorCode } from '../../errors.js';
import type { AdapterModule } from '../adapter.js';
import type { Role } from '../key-forms.js';
import type { ModuleAddress } from '../module-address.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';

/**
 * The kind and size of term an update gives the engine, known from headers alone (the plan counts
 * work with it). Today every algorithm reduces to one low-rank product ΔW = B·A; an algorithm that
 * does not (a full difference, a row or column scaling, block rotations) adds its kind here and
 * the matching term to the engine's MergeOp.
 */
export type UpdateShape = { kind: 'low-rank'; rank: number };

/** A module's update as loaded for the engine: ΔW = B·A with A (rank × in…), B (out × rank). */
export type ModuleUpdate = { kind: 'low-rank'; a: FloatTensorBytes; b: FloatTensorBytes; rank: number };

/** What an algorithm is told about the module it builds. */
export interface ModuleContext {
  /** The adapter's name as the user gave it. */
  adapter: string;
  /** The module's name in the file (`lora_unet_…_proj_in`, `transformer.…attn.to_q`). */
  key: string;
  address: ModuleAddress;
  /** α as the file states it for this module (its `.alpha` tensor, or the file's metadata); undefined when it states none. */
  alpha: number | undefined;
  /** The file's metadata asks for rsLoRA's α/√r (diffusers' lora_adapter_metadata `use_rslora`). */
  rsLora?: boolean;
  /** Records a problem with this module; the message is prefixed with the file and module. */
  report(code: MergeErrorCode, message: string): void;
}

export interface Algorithm {
  /** Registry name, stored in each module it builds. */
  readonly name: string;
  /** How users know it (`LoRA`, `LoHa`), for messages. */
  readonly title: string;
  /** Roles whose presence makes a module this algorithm's. */
  readonly defines: readonly Role[];
  /** Every role it reads, `defines` included (`alpha` is read for every algorithm and need not be listed). */
  readonly roles: readonly Role[];
  /** A module from its tensors by role, or null after reporting what is wrong. */
  build(tensors: ReadonlyMap<Role, TensorEntry>, context: ModuleContext): AdapterModule | null;
  /** Reads the module's update from the file it was built from. */
  load(file: SafetensorsFile, module: AdapterModule): Promise<ModuleUpdate>;
}

/**
 * α and the scale α/r as kohya, LyCORIS and diffusers apply them: a module without α (or with
 * α = 0, which kohya treats as unset) is not scaled.
 */
export function alphaScale(alpha: number | undefined, rank: number, rsLora = false): { alpha: number; scale: number } {
  if (alpha === undefined || alpha === 0) return { alpha: rank, scale: 1 };
  return { alpha, scale: rsLora ? alpha / Math.sqrt(rank) : alpha / rank };
}

/** The fields every module shares, from its context. */
export function moduleBasics(context: ModuleContext): Pick<AdapterModule, 'adapter' | 'key' | 'name' | 'address'> {
  return { adapter: context.adapter, key: context.key, name: context.key, address: context.address };
}

export function fmtShape(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
