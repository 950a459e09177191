/**
 * Streaming safetensors writer. The header is computed from the declared tensors and written first
 * (padded with spaces to a multiple of 8 so the data section starts aligned); tensor bytes then
 * follow strictly in the declared order, whole or in chunks, with exact accounting. Nothing is
 * buffered beyond the chunk being written, so a model of any size streams through.
 *
 * Misuse (wrong order, wrong length, unfinished tensors) is a bug in the caller: plain Errors.
 */
import { DTYPE_BYTES, isDType, type DType } from '../dtype.js';
import type { ByteSink } from '../io/types.js';
import type { TensorEntry } from './safetensors-types.js';

export interface SafetensorsWriterEntry {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

export interface SafetensorsWriter {
  /** The declared tensors with their final offsets (header included) and sizes. */
  readonly entries: readonly TensorEntry[];
  /** Size of the finished file in bytes. */
  readonly byteLength: number;
  /** Writes one whole tensor; it must be the next one declared and have exactly its byte length. */
  writeTensor(name: string, bytes: Uint8Array): Promise<void>;
  /**
   * Writes the next piece of the current tensor (the next declared one not yet complete): `name`
   * must match it and the piece must not run past its end. The tensor is complete at its exact length.
   */
  writeChunk(name: string, bytes: Uint8Array): Promise<void>;
  /** Checks every tensor was written in full, then closes the sink. */
  finish(): Promise<void>;
}

/** Header alignment: the data section (and so every tensor whose offset allows it) starts on 8 bytes. */
const HEADER_ALIGN = 8;

/** Writes the header to `sink` and returns the writer for the tensor data. */
export async function createSafetensorsWriter(
  sink: ByteSink,
  declared: readonly SafetensorsWriterEntry[],
  metadata: Readonly<Record<string, string>> = {},
): Promise<SafetensorsWriter> {
  const header = encodeHeader(declared, metadata);
  await sink.write(header);
  return new StreamingWriter(sink, layoutEntries(declared, header.byteLength), header.byteLength);
}

/** Byte size of a tensor, refusing sizes past 2^53 (BigInt while multiplying). */
export function tensorByteLength(entry: SafetensorsWriterEntry): number {
  let elements = 1n;
  for (const dim of entry.shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) throw new Error(`tensor "${entry.name}": bad dimension ${dim}`);
    elements *= BigInt(dim);
  }
  const bytes = elements * BigInt(DTYPE_BYTES[entry.dtype]);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`tensor "${entry.name}" is too large`);
  return Number(bytes);
}

/** The 8-byte length prefix plus the padded JSON header. */
export function encodeHeader(
  declared: readonly SafetensorsWriterEntry[],
  metadata: Readonly<Record<string, string>>,
): Uint8Array {
  // Entries, then Object.fromEntries: plain assignment would turn a name like "__proto__" into a prototype.
  const fields: [string, unknown][] = [];
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw new Error(`metadata "${key}" is not a string`);
  }
  if (Object.keys(metadata).length > 0) fields.push(['__metadata__', Object.fromEntries(Object.entries(metadata))]);
  const names = new Set<string>();
  let offset = 0;
  for (const entry of declared) {
    if (entry.name === '__metadata__' || names.has(entry.name)) {
      throw new Error(`tensor name "${entry.name}" is reserved or declared twice`);
    }
    names.add(entry.name);
    if (!isDType(entry.dtype)) throw new Error(`tensor "${entry.name}": unknown dtype ${entry.dtype}`);
    const size = tensorByteLength(entry);
    fields.push([entry.name, { dtype: entry.dtype, shape: [...entry.shape], data_offsets: [offset, offset + size] }]);
    offset += size;
  }
  const text = JSON.stringify(Object.fromEntries(fields));
  const textBytes = new TextEncoder().encode(text);
  const padded = Math.ceil(textBytes.byteLength / HEADER_ALIGN) * HEADER_ALIGN;
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(textBytes, 8);
  out.fill(0x20, 8 + textBytes.byteLength); // spaces: JSON whitespace
  return out;
}

function layoutEntries(declared: readonly SafetensorsWriterEntry[], dataStart: number): TensorEntry[] {
  let offset = dataStart;
  return declared.map((entry) => {
    const byteLength = tensorByteLength(entry);
    const laid: TensorEntry = { name: entry.name, dtype: entry.dtype, shape: [...entry.shape], offset, byteLength };
    offset += byteLength;
    return laid;
  });
}

class StreamingWriter implements SafetensorsWriter {
  readonly byteLength: number;
  /** Index of the tensor being written, and how many of its bytes are done. */
  private current = 0;
  private written = 0;
  private finished = false;

  constructor(
    private readonly sink: ByteSink,
    readonly entries: readonly TensorEntry[],
    headerBytes: number,
  ) {
    const last = entries[entries.length - 1];
    this.byteLength = last ? last.offset + last.byteLength : headerBytes;
  }

  async writeTensor(name: string, bytes: Uint8Array): Promise<void> {
    const entry = this.expect(name);
    if (this.written !== 0) throw new Error(`tensor "${name}" was already partly written in chunks`);
    if (bytes.byteLength !== entry.byteLength) {
      throw new Error(`tensor "${name}" needs ${entry.byteLength} bytes, got ${bytes.byteLength}`);
    }
    await this.writeChunk(name, bytes);
  }

  async writeChunk(name: string, bytes: Uint8Array): Promise<void> {
    const entry = this.expect(name);
    if (this.written + bytes.byteLength > entry.byteLength) {
      throw new Error(`tensor "${name}": ${this.written} + ${bytes.byteLength} bytes passes its ${entry.byteLength}`);
    }
    this.written += bytes.byteLength;
    if (this.written === entry.byteLength) {
      this.current++;
      this.written = 0;
    }
    if (bytes.byteLength > 0) await this.sink.write(bytes);
  }

  async finish(): Promise<void> {
    if (this.finished) throw new Error('safetensors writer already finished');
    this.skipEmptyUnless(undefined);
    if (this.current < this.entries.length) {
      const entry = this.entries[this.current];
      throw new Error(`tensor "${entry.name}" has ${this.written} of ${entry.byteLength} bytes; file not finished`);
    }
    this.finished = true;
    await this.sink.close();
  }

  /** The tensor that must come next. */
  private expect(name: string): TensorEntry {
    if (this.finished) throw new Error('safetensors writer already finished');
    this.skipEmptyUnless(name);
    const entry = this.entries[this.current];
    if (!entry) throw new Error(`tensor "${name}" written after every declared tensor`);
    if (entry.name !== name) throw new Error(`expected tensor "${entry.name}" next, got "${name}"`);
    return entry;
  }

  /** Zero-size tensors have no bytes, so callers may skip them: step over any not named `name`. */
  private skipEmptyUnless(name: string | undefined): void {
    while (this.written === 0 && this.entries[this.current]?.byteLength === 0 && this.entries[this.current].name !== name) {
      this.current++;
    }
  }
}
