/**
 * The contract every adapter algorithm (LoRA, LoHa, …) meets, one file each, listed in
 * ./index.ts. An algorithm claims the roles it understands (key-forms.ts names them), builds a
 * module from one module's tensors or reports why it cannot, and later loads the module's update
 * in the form the engine merges. Algorithms know nothing about layouts: which base tensor and rows
 * a module lands on is decided elsewhere (formats/layouts/).
 */
import type { DType } from '../../dtype.js';
import type { KohyaNetworkArgs } from '../kohya-network-args.js';
import type { ExactFactors, FloatTensorBytes } from '../../engine/merge-op.js';
import type { MergeErrorCode } from '../../errors.js';
import type { AdapterModule } from '../adapter.js';
import type { Role } from '../key-forms.js';
import type { ModuleAddress } from '../module-address.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';

/**
 * The kind and size of an update, known from headers alone (the plan counts work with it and
 * checks where it may land):
 * - `low-rank`: ΔW = B·A at this rank; may be placed on some rows of a fused tensor.
 * - `dense`: ΔW given in full (a full difference, a kron of full factors), produced by rows.
 * - `transform`: a map of the weight as it stands (a row or column scaling, block rotations,
 *   GLoRA's W·a1·a2, HiRA's W ⊙ B·A), costing about `cost` multiply-adds per element; rotations of output rows
 *   keep blocks of `rowBlock` rows together. `anyLayout`: the map also works on a weight stored
 *   (in, out) (scalings and rotations do; GLoRA's W·a1·a2 does not). `block`: the size of the
 *   square blocks it turns into rotations (checked against MAX_ROTATION_BLOCK before any is read).
 *   `squareKernel`: sized, as its tool builds it, for a conv's in·kh² inputs (kernel_size[0] twice),
 *   so refused on a conv whose kh ≠ kw, where that tool cannot run or merge it. `splitRows`: the map
 *   treats each output row apart (a rotation or scaling of the inputs, a scale per output row) or
 *   runs of `rowBlock` rows apart (a block rotation of the outputs), so a fused module (`qkv`) on
 *   several tensors each holding its rows (`to_q`, `to_k`, `to_v`) is the same map on each, its
 *   per-row parts cut to the rows each holds.
 * - `none`: W is left as it is; the module only patches its bias (ComfyUI's `diff_b` alone).
 */
export type UpdateShape =
  | { kind: 'none' }
  | { kind: 'low-rank'; rank: number }
  | { kind: 'dense' }
  | { kind: 'transform'; cost: number; rowBlock?: number; anyLayout?: boolean; block?: number; squareKernel?: boolean; splitRows?: boolean };

/**
 * One part of a module's update as loaded for the engine, for a module scale s (user weight · the
 * module's own scale), applied in order to V (the weight as it stands):
 * - `low-rank`: V += s·B·A, A (rank × in…), B (out × rank); `exact` holds the float64 values of
 *   factors derived from the stored ones where f32 would round them (LowRankTerm.exact).
 * - `dense`: V += s·D, D read by rows of the stored (out, in…) weight.
 * - `scale`: V ⊙= 1 + s·w along an axis of ΔW, w per channel (repeated over a conv's kernel); with
 *   `factor`, w is the factor itself (PEFT's IA3 vector) and V ⊙= 1 + s·(w − 1), w − 1 taken in
 *   float64 (in f32 it rounds where w < 1/2).
 * - `fixed-scale`: V ⊙= f along an axis, not scaled by s (OFT's rescale).
 * - `project`: V += s·(V·P)·Q along the input axis, P (in × rank), Q (rank × in).
 * - `hadamard`: V += s·V ⊙ (B·A), elementwise, A (rank × in), B (out × rank).
 * - `tiles`: V_ij += s·V_ij·B_i for every size × size tile (row tile i, column tile j), blocks (out/size × size × size).
 * - `rotate`: each block of `blockSize` along an axis maps by I + s·Δ_k (Δ: blocks row-major).
 * - `permuted-rotate`: the same in permuted coordinates (a butterfly factor): entry p of the
 *   permuted vector is x[gather[p]] (identity when absent), blocks of `blockSize` map by
 *   I + s·Δ_k, the result goes back to its places; gather keeps runs of `span` in place; a last
 *   block cut short by the axis uses the top-left of its Δ (engine/permuted-blocks.ts).
 * - `out-project`: V += −s·Q·(Rᵀ·V) along the output axis, R `right` and Q `qp` (out × rank), or with
 *   `form` V += s·Q·form(Rᵀ·V) (form maps the rank × in matrix, in float64): Rᵀ·V sums over every
 *   output row, so a pass over the whole weight forms it before the slabs merge (PEFT DEFT's
 *   subspace removal, PEANuT's network over W's columns; plan/out-projections.ts).
 */
export type ModulePiece =
  | { kind: 'low-rank'; a: FloatTensorBytes; b: FloatTensorBytes; rank: number; exact?: ExactFactors }
  | { kind: 'dense'; rows(rowStart: number, rowCount: number): Promise<FloatTensorBytes | { exact: Float64Array }> }
  | { kind: 'scale'; axis: 'out' | 'in'; w: FloatTensorBytes; factor?: boolean }
  | { kind: 'fixed-scale'; axis: 'out' | 'in'; factors: FloatTensorBytes }
  | { kind: 'project'; p: FloatTensorBytes; q: FloatTensorBytes; rank: number }
  | { kind: 'hadamard'; a: FloatTensorBytes; b: FloatTensorBytes; rank: number }
  | { kind: 'tiles'; size: number; blocks: FloatTensorBytes }
  | { kind: 'rotate'; axis: 'out' | 'in'; blockSize: number; delta: FloatTensorBytes }
  | { kind: 'permuted-rotate'; axis: 'out' | 'in'; blockSize: number; delta: FloatTensorBytes; gather?: Uint32Array; span: number }
  | { kind: 'out-project'; right: FloatTensorBytes; qp: FloatTensorBytes; rank: number; form?: (m: Float64Array, inF: number) => Float64Array };

/** A module's update as loaded for the engine: its pieces, in the order they apply. */
export type ModuleUpdate = ModulePiece[];

/** ΔW's dims as fitted to the base: out, and in (a conv's in·kh·kw). */
export interface DeltaDims {
  out: number;
  in: number;
  /** How many dims the base tensor has (2 for a Linear's weight, 4 for a Conv2d's), where the plan knows it. */
  baseDims?: number;
}

/** What an algorithm is told about the module it builds. */
export interface ModuleContext {
  /** The adapter's name as the user gave it. */
  adapter: string;
  /** The module's name in the file (`lora_unet_…_proj_in`, `transformer.…attn.to_q`). */
  key: string;
  address: ModuleAddress;
  /** α as the file states it for this module (its `.alpha` tensor, or the file's metadata); undefined when it states none. */
  alpha: number | undefined;
  /** Settings from the adapter's config that the update depends on (PEFT OFT's `coft`, …). */
  options?: Readonly<Record<string, number | boolean>>;
  /** The values of the one-number tensors the algorithm lists in `scalars` (LyCORIS IA3's `on_input`). */
  scalars?: ReadonlyMap<Role, number>;
  /** The file's metadata asks for rsLoRA's α/√r (diffusers' lora_adapter_metadata `use_rslora`). */
  rsLora?: boolean;
  /** The dtype `.alpha` is stored in, when it is a tensor (how closely it can hold the number it was given). */
  alphaDType?: DType;
  /** kohya's training metadata (LyCORIS's rs_lora), for the algorithms whose stored α does not carry it. */
  networkArgs?: KohyaNetworkArgs;
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
  /** Roles holding one number each, read for `build` (context.scalars). */
  readonly scalars?: readonly Role[];
  /** A module from its tensors by role, or null after reporting what is wrong. */
  build(tensors: ReadonlyMap<Role, TensorEntry>, context: ModuleContext): AdapterModule | null;
  /**
   * The module `build` made, as it was trained when LyCORIS's bypass_mode may be on (kohya's
   * `ss_network_args`, read through lycorisBypassOn only where it matters): the same module where
   * LyCORIS's bypass forward applies the update its merge does, another where it applies another, or
   * null after reporting why it cannot be merged. Absent, a module of a file trained with the flag on
   * is refused (./lycoris-bypass.ts).
   */
  readonly lycorisBypass?: (module: AdapterModule, context: ModuleContext) => AdapterModule | null;
  /**
   * Reads the module's update from the file it was built from. `delta` is ΔW's (out, in) as the
   * plan fitted it to the base (for algorithms whose tensors leave a side open: VeRA's shared
   * projections are sliced to it).
   */
  load(file: SafetensorsFile, module: AdapterModule, delta?: DeltaDims): Promise<ModuleUpdate>;
}

/**
 * α and the scale α/r as kohya, LyCORIS and diffusers apply them: a module without α (or with
 * α = 0, which kohya treats as unset) is not scaled.
 */
export function alphaScale(alpha: number | undefined, rank: number, rsLora = false): Pick<AdapterModule, 'alpha' | 'scale' | 'scaleOrigin'> {
  const rule = rsLora ? 'α/√r' : 'α/r';
  if (alpha === undefined || alpha === 0) return { alpha: rank, scale: 1, scaleOrigin: { kind: 'alpha', rule, stated: false } };
  return { alpha, scale: rsLora ? alpha / Math.sqrt(rank) : alpha / rank, scaleOrigin: { kind: 'alpha', rule, stated: true } };
}

/** The fields every module shares, from its context. */
export function moduleBasics(context: ModuleContext): Pick<AdapterModule, 'adapter' | 'key' | 'name' | 'address'> {
  return { adapter: context.adapter, key: context.key, name: context.key, address: context.address };
}

/**
 * A linear module whose update the engine merges as one rank-`rank` product B·A with no α of its
 * own (α and scale 1): the methods that form their two factors at load time (VeRA, PVeRA, DeLoRA,
 * TinyLoRA) record their modules alike.
 */
export function unscaledLowRankModule(context: ModuleContext, algorithm: string, deltaShape: number[], rank: number, tensors: Record<string, TensorEntry>): AdapterModule {
  return {
    ...moduleBasics(context),
    algorithm,
    kind: 'linear',
    deltaShape,
    rank,
    alpha: 1,
    scale: 1,
    tensors,
    update: { kind: 'low-rank', rank },
    fanInFanOut: false,
  };
}

export function fmtShape(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
