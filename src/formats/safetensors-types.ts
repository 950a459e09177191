/** What a parsed safetensors file exposes to the layers above (adapters, base models, the plan). */
import type { DType } from '../dtype.js';
import type { ByteSource } from '../io/types.js';

export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file (header included). */
  offset: number;
  byteLength: number;
  /**
   * The type the file stores it in, where it is read decoded into `dtype` without rounding (a
   * llama.cpp LoRA's token_embd A, stored transposed; its Q8_0 factors): what an output of its
   * factors may keep.
   */
  storedDtype?: 'F16' | 'BF16' | 'Q8_0';
}

export interface SafetensorsFile {
  readonly source: ByteSource;
  /** Tensors in file order (by data offset). */
  readonly tensors: readonly TensorEntry[];
  /** `__metadata__` (string → string), empty when absent. */
  readonly metadata: Readonly<Record<string, string>>;
  get(name: string): TensorEntry | undefined;
  /** All bytes of one tensor. */
  read(entry: TensorEntry): Promise<Uint8Array>;
  /**
   * `length` bytes starting `start` bytes into one tensor's data (row slabs of huge tensors).
   * `into`: a buffer of `length` bytes offered for them (see ByteSource.read); use what is returned.
   */
  readPart(entry: TensorEntry, start: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
}
