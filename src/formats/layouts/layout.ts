/**
 * The contract every layout meets, one file each, listed in ./index.ts. A layout knows how one
 * family of module names (PEFT paths, kohya's flattened names, diffusers' UNet names on an LDM
 * checkpoint, …) names base tensors: for a module address it returns the base tensors it lands on,
 * each with the rows of the base tensor's output axis that ΔW's rows go to. Layouts know nothing
 * about algorithms; the engine sees only (base tensor, row placement, term).
 */
import type { RowSegment } from '../../engine/merge-op.js';
import type { ModuleAddress } from '../module-address.js';
import type { BaseKeyIndex } from './base-key-index.js';
import type { RenameTable } from './fused-renames.js';

export type { RowSegment } from '../../engine/merge-op.js';

/** One base tensor a module lands on. */
export interface Placement {
  baseKey: string;
  /** Which rows of ΔW go to which rows of the base tensor; absent: all of ΔW's rows, one to one. */
  rows?: readonly RowSegment[];
  /**
   * The base tensor stacks experts (E, out, in) and `rows` are rows of it seen as its E·out rows
   * (E·out, in), as a fused expert parameter is seen (plan/fused-experts.ts).
   */
  stacked?: true;
  /** The module names a fused 3-D expert parameter, which this base holds laid out again. */
  experts?: ExpertLayout;
  /** The base holds ΔW's rows in blocks, each block transposed (then `rows` is absent). */
  transposedBlocks?: TransposedBlocks;
  /**
   * The base's column c holds ΔW's column `columns[c]` (a converter that reorders a weight's inputs,
   * as Qwen3.5's out_proj): a low-rank update lands so by reordering its down factor's columns.
   */
  columns?: readonly number[];
  /**
   * The tensor holds again what the module's other targets hold (a converter that writes a weight
   * both whole and split): it gets ΔW as well, and does not count toward each ΔW row landing once.
   */
  copy?: true;
  /**
   * Why a change of the module's bias cannot land here: the one tool that reads this name leaves it
   * unloaded (ComfyUI's `linear1_qkv`). A module with one is refused, naming this.
   */
  biasUnread?: string;
  /**
   * Where a change of the module's bias lands when not on `<weight>.bias`: rows of another tensor
   * (an expert's Linear split from fused experts, whose bias is that expert's row of the fused bias).
   */
  bias?: { key: string; rows: readonly RowSegment[] };
}

/**
 * ΔW's rows in blocks of `rows`, block i starting at ΔW row `starts[i]`, each stored transposed
 * (llama.cpp's MLA attn_k_b holds each head's key rows of kv_b_proj so): block i, (rows, in) in
 * ΔW, is the base's rows [i·in, (i+1)·in), `in` being ΔW's inputs; the base has `rows` columns.
 */
export interface TransposedBlocks {
  starts: readonly number[];
  rows: number;
  /**
   * The blocks lie inside a larger tensor (one expert's slab of a fused 3-D expert parameter, or
   * one part of its columns): the base is seen as `baseRows` rows of `rows` values, and block i's
   * row j (ΔW's input j) is the base's row `first + (i·inputs + j)·stride`. ΔW must have
   * `inputs` inputs. Absent: the base is the blocks alone, block i on rows [i·in, (i+1)·in).
   */
  within?: TransposedWithin;
}

/** Where transposed blocks lie inside a larger tensor (TransposedBlocks.within). */
export interface TransposedWithin {
  baseRows: number;
  inputs: number;
  first: number;
  stride: number;
}

/** The base rows block `block`'s `inF` rows land on, as row segments of ΔWᵀ's block (src) to the base (dst). */
export function transposedBlockSegments(blocks: TransposedBlocks, block: number, inF: number): RowSegment[] {
  const w = blocks.within;
  if (!w) return [{ src: 0, dst: block * inF, count: inF }];
  const first = w.first + block * inF * w.stride;
  if (w.stride === 1) return [{ src: 0, dst: first, count: inF }];
  return Array.from({ length: inF }, (_, j) => ({ src: j, dst: first + j * w.stride, count: 1 }));
}

/** The base rows every block lands on: {@link transposedBlockSegments} of each block in turn. */
export function allTransposedBlockSegments(blocks: TransposedBlocks, inF: number): RowSegment[] {
  return blocks.starts.flatMap((_, block) => transposedBlockSegments(blocks, block, inF));
}

/**
 * How a base converted from the model holds a fused expert parameter (E, d1, d2): given by the
 * layout that knows the converter (hf-to-gguf.ts); plan/fused-experts.ts places ΔW by it.
 */
export interface ExpertLayout {
  /** The parameter's shape in the model the adapter was trained on. */
  paramShape: readonly [number, number, number];
  /** The model stores its experts (E, in, out) (transformers' `is_transposed`), which picks PEFT's form by version. */
  storedInOut: boolean;
  /** Each expert's matrix is stored transposed, (d2, d1). */
  transposed: boolean;
  /** Rows of each expert's (transposed) matrix the base tensor holds, in its order; absent: all. */
  rows?: readonly number[];
  /**
   * The tensor holds this one expert's matrix alone (a checkpoint that stores one tensor per expert,
   * `experts.3.gate_proj.weight`), not all of them stacked; absent: all.
   */
  expert?: number;
}

export type LayoutResolution =
  | { found: true; targets: Placement[] }
  /**
   * `why`: why the base cannot hold what the module names, when the layout knows. `pastLastBlock`:
   * the module names a block past the base's last (an adapter for a deeper model). `leftOut` (with
   * `ambiguous`, which stops the search, and `why`): the module names a weight that the tool reading
   * its naming does not have, so that tool leaves it unloaded: left out with a warning, not refused.
   */
  | { found: false; ambiguous: boolean; candidates: string[]; why?: string; pastLastBlock?: boolean; leftOut?: true };

/** The part of the base a module may land on: its component's tensors, or the whole base. */
export interface BaseView {
  readonly index: BaseKeyIndex;
  /** The keys `index` was built from. */
  readonly keys: readonly string[];
  /** config.json `architectures` of the model, empty when unknown. */
  readonly architectures: readonly string[];
  /** A tensor's shape, for layouts whose row placement depends on it (thirds of a fused qkv). */
  shape(key: string): readonly number[] | undefined;
  /** The shape the file holds it in, where the plan sees another (stacked experts seen as rows); else undefined. */
  storedShape?(key: string): readonly number[] | undefined;
  /** The base file's own metadata, where it has typed metadata (GGUF): architecture, head counts. */
  metadata?(key: string): unknown;
  /** The fields of the model's config.json, where it has one (a converted checkpoint's head sizes). */
  readonly config?: Readonly<Record<string, unknown>>;
}

export interface Layout {
  /** Registry name, shown in the plan. */
  readonly name: string;
  /** Where the module lands, or undefined when its name is not one this layout reads. */
  resolve(address: ModuleAddress, base: BaseView): LayoutResolution | undefined;
  /**
   * The tables by which this layout translates a model's single-file naming to diffusers' by rows
   * of a tensor (fused-renames.ts), where it does. Which rows a name means depends on the base, so
   * combine, which has none, reads these to refuse reducing modules that name one tensor in both
   * namings (adapter-ops/naming-overlaps.ts). Tables used only to refuse a naming are not listed.
   */
  readonly renames?: readonly RenameTable[];
}

/** A single base key (or a miss) as a resolution with one whole-tensor target. */
export function wholeTensor(r: { found: true; key: string } | { found: false; ambiguous: boolean; candidates: string[]; why?: string }): LayoutResolution {
  return r.found ? { found: true, targets: [{ baseKey: r.key }] } : r;
}

/** A miss the layout explains: nothing found, nothing ambiguous, and why (shown with the module). */
export function missBecause(why: string): LayoutResolution {
  return { found: false, ambiguous: false, candidates: [], why };
}
