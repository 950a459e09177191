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

export interface SafetensorsWriterEntry {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

export interface SafetensorsWriter {
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
  return new StreamingWriter(sink, declared.map((e) => e.name), Float64Array.from(declared, tensorByteLength), header.byteLength);
}

/**
 * Byte size of a tensor, refusing sizes past 2^53. Multiplied as doubles: while the exact product
 * stays below 2^53 every partial product is exact (a zero dimension makes it an exact 0), and past
 * it the rounded product is at least 2^53, which is refused.
 */
export function tensorByteLength(entry: SafetensorsWriterEntry): number {
  let bytes = DTYPE_BYTES[entry.dtype];
  for (const dim of entry.shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) throw new Error(`tensor "${entry.name}": bad dimension ${dim}`);
    bytes *= dim;
  }
  if (!Number.isSafeInteger(bytes)) throw new Error(`tensor "${entry.name}" is too large`);
  return bytes;
}

/** The 8-byte length prefix plus the padded JSON header. */
export function encodeHeader(
  declared: readonly SafetensorsWriterEntry[],
  metadata: Readonly<Record<string, string>>,
): Uint8Array {
  // The JSON is put together entry by entry and encoded every 64 KiB of text, rather than built as
  // one object for JSON.stringify: a checkpoint of 140 000 tensors would otherwise hold three
  // objects per tensor, or a million string pieces, at the merge's busiest moment.
  const text = new TextPieces();
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw new Error(`metadata "${key}" is not a string`);
  }
  text.add('{');
  let separator = '';
  if (Object.keys(metadata).length > 0) {
    // fromEntries, not assignment: a key like "__proto__" stays data.
    text.add(`"__metadata__":${JSON.stringify(Object.fromEntries(Object.entries(metadata)))}`);
    separator = ',';
  }
  const names = new Set<string>();
  let offset = 0;
  for (const entry of declared) {
    if (entry.name === '__metadata__' || names.has(entry.name)) {
      throw new Error(`tensor name "${entry.name}" is reserved or declared twice`);
    }
    names.add(entry.name);
    if (!isDType(entry.dtype)) throw new Error(`tensor "${entry.name}": unknown dtype ${entry.dtype}`);
    const size = tensorByteLength(entry); // also checks every dimension is a safe integer
    text.add(`${separator}${JSON.stringify(entry.name)}:{"dtype":"${entry.dtype}","shape":[${entry.shape.join(',')}],"data_offsets":[${offset},${offset + size}]}`);
    offset += size;
    separator = ',';
  }
  text.add('}');
  const textBytes = text.bytes();
  const padded = Math.ceil(textBytes.byteLength / HEADER_ALIGN) * HEADER_ALIGN;
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(textBytes, 8);
  out.fill(0x20, 8 + textBytes.byteLength); // spaces: JSON whitespace
  return out;
}

/** UTF-8 of text added piece by piece, encoded in blocks of about 64 KiB of text. */
class TextPieces {
  private pending: string[] = [];
  private pendingLength = 0;
  private readonly blocks: Uint8Array[] = [];
  private readonly encoder = new TextEncoder();

  add(piece: string): void {
    this.pending.push(piece);
    this.pendingLength += piece.length;
    if (this.pendingLength >= 65_536) this.encodePending();
  }

  bytes(): Uint8Array {
    this.encodePending();
    const out = new Uint8Array(this.blocks.reduce((n, b) => n + b.byteLength, 0));
    let at = 0;
    for (const block of this.blocks) {
      out.set(block, at);
      at += block.byteLength;
    }
    return out;
  }

  private encodePending(): void {
    if (this.pending.length === 0) return;
    this.blocks.push(this.encoder.encode(this.pending.join('')));
    this.pending = [];
    this.pendingLength = 0;
  }
}

/**
 * Holds each declared tensor's name and size only (names are the caller's strings): a writer of
 * 140 000 tensors kept an entry object with its own shape per tensor for the whole merge.
 */
class StreamingWriter implements SafetensorsWriter {
  readonly byteLength: number;
  /** Index of the tensor being written, and how many of its bytes are done. */
  private current = 0;
  private written = 0;
  private finished = false;

  constructor(
    private readonly sink: ByteSink,
    private readonly names: readonly string[],
    private readonly sizes: Float64Array,
    headerBytes: number,
  ) {
    this.byteLength = sizes.reduce((n, size) => n + size, headerBytes);
  }

  async writeTensor(name: string, bytes: Uint8Array): Promise<void> {
    const size = this.expect(name);
    if (this.written !== 0) throw new Error(`tensor "${name}" was already partly written in chunks`);
    if (bytes.byteLength !== size) {
      throw new Error(`tensor "${name}" needs ${size} bytes, got ${bytes.byteLength}`);
    }
    await this.writeChunk(name, bytes);
  }

  async writeChunk(name: string, bytes: Uint8Array): Promise<void> {
    const size = this.expect(name);
    if (this.written + bytes.byteLength > size) {
      throw new Error(`tensor "${name}": ${this.written} + ${bytes.byteLength} bytes passes its ${size}`);
    }
    this.written += bytes.byteLength;
    if (this.written === size) {
      this.current++;
      this.written = 0;
    }
    if (bytes.byteLength > 0) await this.sink.write(bytes);
  }

  async finish(): Promise<void> {
    if (this.finished) throw new Error('safetensors writer already finished');
    this.skipEmptyUnless(undefined);
    if (this.current < this.names.length) {
      throw new Error(`tensor "${this.names[this.current]}" has ${this.written} of ${this.sizes[this.current]} bytes; file not finished`);
    }
    this.finished = true;
    await this.sink.close();
  }

  /** The size of the tensor that must come next, which must be `name`. */
  private expect(name: string): number {
    if (this.finished) throw new Error('safetensors writer already finished');
    this.skipEmptyUnless(name);
    if (this.current >= this.names.length) throw new Error(`tensor "${name}" written after every declared tensor`);
    const next = this.names[this.current];
    if (next !== name) throw new Error(`expected tensor "${next}" next, got "${name}"`);
    return this.sizes[this.current];
  }

  /** Zero-size tensors have no bytes, so callers may skip them: step over any not named `name`. */
  private skipEmptyUnless(name: string | undefined): void {
    while (this.written === 0 && this.current < this.names.length && this.sizes[this.current] === 0 && this.names[this.current] !== name) {
      this.current++;
    }
  }
}
