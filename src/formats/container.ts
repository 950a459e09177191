/**
 * The seam between the merge pipeline and the file format a base model is stored in
 * (safetensors, GGUF). The pipeline streams tensors in row slabs and never looks inside a file:
 * it asks the container what type each tensor is written in, how rows of a stored type become the
 * float bytes the engine computes with and back, and for a writer per output file.
 */
import type { ImportanceMatrix } from './gguf/imatrix.js';
import type { ImportanceTarget, RowWeights } from './gguf/imatrix-rows.js';
import type { FloatDType } from '../dtype.js';
import type { FloatTensorBytes, MergeBackend } from '../engine/merge-op.js';
import type { ByteSink, OutputTarget } from '../io/types.js';
import type { OutputTypeChoices } from './output-types.js';
import type { TensorRows } from './encode-tally.js';

/** A tensor as a file stores it. */
export interface StoredTensor {
  name: string;
  /** The file's own element type: a safetensors dtype (`BF16`) or a GGML type (`Q4_K`). */
  type: string;
  /** Slowest dimension first; the tensor is stored as rows of its last dimension. */
  shape: number[];
  byteLength: number;
  /** The type it is written in unless the user asks for one, when not `type` (a dequantized weight: its model's dtype). */
  writeType?: string;
}

/** One weight file of a model. */
export interface StoredShard {
  /** Relative path, also the output file's path. */
  readonly path: string;
  /** In file order. */
  readonly tensors: readonly StoredTensor[];
}

/** Writes one output file: tensor bytes in the declared order, whole or in pieces. */
export interface TensorFileWriter {
  /** Writes the next piece of the current tensor; `name` must be the next declared tensor not yet complete. */
  writeChunk(name: string, bytes: Uint8Array): Promise<void>;
  /** Checks every declared tensor was written in full and closes the file. */
  finish(): Promise<void>;
}

/**
 * A file format merged models are read from and written to (safetensors, GGUF): which output types
 * it takes, how it lays out and writes shards, and which files describe them.
 */
export interface ContainerFormat {
  /** `safetensors`, `gguf`. */
  readonly name: string;
  /**
   * Normalises a user's output type, or throws BAD_ARGUMENT naming what this format accepts and
   * `option`, the name the user gave it under (`--dtype` on the command line, the default; `dtype`
   * in the library). `weighted`: an importance matrix is given (a type written only with one,
   * IQ2_XXS, is refused without it).
   */
  parseOutputType(name: string, option?: string, weighted?: boolean): string;
  /** The output types a user may choose (every one of them parses), each with what it does; for menus and help. */
  readonly outputChoices: OutputTypeChoices;
  /**
   * The type `tensor` is written in. `changed`: an update, bias or replacement lands on it;
   * `requested`: the parsed --dtype, if any; `weighted`: an importance matrix is given (a type
   * written only with one, IQ2_XXS, is then written as itself).
   */
  outputType(tensor: StoredTensor, changed: boolean, requested: string | undefined, weighted?: boolean): string;
  /**
   * Why `tensor` cannot be written as `type`, or undefined when it can (checked before any work,
   * for every tensor written in another type or computed anew).
   */
  checkOutputType(tensor: StoredTensor, type: string): string | undefined;
  /**
   * What the user should know about the output types chosen for `requested` (a type substituted
   * where the requested one does not fit, a quantized tensor quantized again).
   */
  outputTypeWarnings?(input: readonly StoredShard[], output: readonly StoredShard[], requested: string): string[];
  /** Bytes of `elements` values of `type` (a whole number of rows). */
  byteLength(type: string, elements: number): number;
  /** Byte granularity of copied chunks of `type` converted to `outType` (whole elements or blocks). */
  copyUnit(type: string, outType: string): number;
  /** The float dtype the engine reads and writes rows of `type` in. */
  engineDtype(type: string): FloatDType;
  /** Whole stored rows of `type` → float bytes for the engine; `backend` may decode on its device. */
  decodeRows(type: string, bytes: Uint8Array, backend?: MergeBackend, signal?: AbortSignal): Promise<FloatTensorBytes>;
  /**
   * Engine output in engineDtype(type) → stored bytes of `type`; `backend` may encode on its threads.
   * `importance`: the rows are a merged tensor's from `rowStart` on, quantized with these weights.
   */
  encodeRows(
    type: string, values: Uint8Array, backend?: MergeBackend, signal?: AbortSignal, importance?: { rows: RowWeights; rowStart: number },
  ): Uint8Array | Promise<Uint8Array>;
  /**
   * An importance matrix (llama-imatrix's) matched to the tensors as written: the row weights of
   * each tensor quantized with them; refuses one that does not fit (imatrix-rows.ts). Absent where
   * the format has no use for one.
   */
  importanceRows?(importance: ImportanceMatrix, tensors: readonly ImportanceTarget[]): ReadonlyMap<string, RowWeights>;
  /**
   * Copied bytes of an unchanged tensor (whole copy units), converted from `from` to `to`;
   * `backend` may encode on its threads. A refusal of the NaN/Inf the bytes hold may ask
   * `nonFiniteText` how many the whole tensor holds and where, and a refusal of the values written
   * may read `whole` by rows to count them over all its rows (read again: the error path only).
   */
  convert(
    bytes: Uint8Array, from: string, to: string, backend?: MergeBackend, signal?: AbortSignal, nonFiniteText?: () => Promise<string | undefined>,
    whole?: TensorRows,
  ): Uint8Array | Promise<Uint8Array>;
  /**
   * How many NaN/±Inf values whole blocks of a block type (`Q4_K`) hold, read from their scales
   * without decoding every value, and the index of the first and the last such value (−1 where
   * none); undefined for element types (F16, BF16…), whose bits the value checks test directly,
   * and for block types it does not know.
   */
  nonFiniteInBlocks?(type: string, bytes: Uint8Array): { count: number; first: number; last: number } | undefined;
  /**
   * How many values whole blocks of a block type, encoded from the f32 `input`, decode to zeros
   * where the input is not small (the quantizer's f32 sums overflowed: Q3_K, Q6_K, IQ4_XS write a
   * zero scale); undefined where nonFiniteInBlocks is. `atLeast` (default 1) is the magnitude an
   * input value must reach for its block's zero scales to count.
   */
  zeroedInBlocks?(type: string, bytes: Uint8Array, input: Float32Array, atLeast?: number): number | undefined;
  /**
   * Opens the writer of output shard `shardIndex` (the header goes first). `shards` are all output
   * shards, their tensors with their output types; `provenance` is added to the file's metadata.
   * `mirror`: nothing in the shard changes and the base asks for it to be written as it was
   * (a pipeline component), source header included. `requested`: the output type asked for
   * (parsed), which a file type label may follow.
   */
  createWriter(
    sink: ByteSink, shardIndex: number, shards: readonly StoredShard[], provenance: Readonly<Record<string, string>>, mirror: boolean,
    requested?: string,
  ): Promise<TensorFileWriter>;
  /**
   * Writes the files that describe the written shards (safetensors indexes); returns their paths.
   * `mirrored[i]`: output shard i was written as it was; `copyInput` copies a base file unchanged.
   */
  writeSidecars(output: OutputTarget, shards: readonly StoredShard[], written: SidecarContext): Promise<string[]>;
}

/** What writeSidecars may need to know of how the shards were written. */
export interface SidecarContext {
  readonly mirrored: readonly boolean[];
  /** Copies the base's file at `path` to the output unchanged. */
  copyInput(path: string): Promise<void>;
}
