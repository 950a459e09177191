/**
 * Streaming GGUF writer (version 3). The header (metadata, then tensor infos with their final
 * offsets) is computed from the declared tensors and written first; tensor bytes then follow
 * strictly in the declared order, whole or in chunks, each tensor padded with zeros to the
 * alignment, as llama.cpp's loader requires. Nothing is buffered beyond the chunk being written.
 *
 * Misuse (wrong order, wrong length, unfinished tensors) is a bug in the caller: plain Errors.
 */
import type { ByteSink } from '../../io/types.js';
import { ggmlByteSize, type GgmlType } from './ggml-types.js';
import { ByteWriter, type GgufKeyValue } from './gguf-metadata.js';

/** A tensor to be written: its name, GGML type and dimensions. */
export interface GgufWriterTensor {
  name: string;
  type: GgmlType;
  /** GGML order: fastest dimension first. */
  ne: readonly number[];
}

/** Writes a GGUF file's tensors in the declared order, whole or in pieces, after its header. */
export interface GgufTensorWriter {
  /** Size of the finished file in bytes. */
  readonly byteLength: number;
  /** Writes the next piece of the current tensor; `name` must be the next declared tensor not yet complete. */
  writeChunk(name: string, bytes: Uint8Array): Promise<void>;
  /** Checks every tensor was written in full, then closes the sink. */
  finish(): Promise<void>;
}

const MAGIC = 0x46554747;

interface Placed {
  name: string;
  byteLength: number;
  padding: number;
}

/** Encodes the whole header (padded to `alignment`) and the tensors' places after it. */
export function encodeGgufHeader(
  metadata: readonly GgufKeyValue[], tensors: readonly GgufWriterTensor[], alignment: number,
): { header: Uint8Array; placed: Placed[] } {
  const w = new ByteWriter();
  w.u32(MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const kv of metadata) w.keyValue(kv);
  const placed: Placed[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`tensor "${t.name}" declared twice`);
    names.add(t.name);
    const elements = t.ne.reduce((n, d) => n * BigInt(d), 1n);
    const bytes = ggmlByteSize(t.type, BigInt(t.ne[0] ?? 1), elements);
    if (bytes === undefined) throw new Error(`tensor "${t.name}": rows of ${t.ne[0]} are not whole ${t.type.name} blocks`);
    w.string(t.name);
    w.u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(t.type.id);
    w.u64(offset);
    const byteLength = Number(bytes);
    const padding = pad(byteLength, alignment);
    placed.push({ name: t.name, byteLength, padding });
    offset += byteLength + padding;
  }
  const headerLength = w.byteLength;
  w.bytes(new Uint8Array(pad(headerLength, alignment)));
  return { header: w.take(), placed };
}

function pad(n: number, alignment: number): number {
  return (alignment - (n % alignment)) % alignment;
}

/**
 * Writes the header (metadata, then each tensor's name, dimensions, type and aligned offset) to
 * `sink` and returns a writer for the tensors' data, which must follow in the same order.
 */
export async function createGgufWriter(
  sink: ByteSink, metadata: readonly GgufKeyValue[], tensors: readonly GgufWriterTensor[], alignment: number,
): Promise<GgufTensorWriter> {
  const { header, placed } = encodeGgufHeader(metadata, tensors, alignment);
  await sink.write(header);
  return new StreamingGgufWriter(sink, placed, header.byteLength);
}

class StreamingGgufWriter implements GgufTensorWriter {
  readonly byteLength: number;
  private current = 0;
  private written = 0;
  private finished = false;

  constructor(private readonly sink: ByteSink, private readonly placed: Placed[], headerBytes: number) {
    this.byteLength = placed.reduce((n, p) => n + p.byteLength + p.padding, headerBytes);
  }

  async writeChunk(name: string, bytes: Uint8Array): Promise<void> {
    if (this.finished) throw new Error('GGUF writer already finished');
    await this.skipEmptyUnless(name);
    const entry = this.placed[this.current];
    if (!entry) throw new Error(`tensor "${name}" written after every declared tensor`);
    if (entry.name !== name) throw new Error(`expected tensor "${entry.name}" next, got "${name}"`);
    if (this.written + bytes.byteLength > entry.byteLength) {
      throw new Error(`tensor "${name}": ${this.written} + ${bytes.byteLength} bytes passes its ${entry.byteLength}`);
    }
    if (bytes.byteLength > 0) await this.sink.write(bytes);
    this.written += bytes.byteLength;
    if (this.written === entry.byteLength) await this.completeCurrent();
  }

  async finish(): Promise<void> {
    if (this.finished) throw new Error('GGUF writer already finished');
    await this.skipEmptyUnless(undefined);
    if (this.current < this.placed.length) {
      const entry = this.placed[this.current];
      throw new Error(`tensor "${entry.name}" has ${this.written} of ${entry.byteLength} bytes; file not finished`);
    }
    this.finished = true;
    await this.sink.close();
  }

  private async completeCurrent(): Promise<void> {
    const entry = this.placed[this.current];
    if (entry.padding > 0) await this.sink.write(new Uint8Array(entry.padding));
    this.current++;
    this.written = 0;
  }

  /** Zero-size tensors have no bytes, so callers may skip them. */
  private async skipEmptyUnless(name: string | undefined): Promise<void> {
    while (this.written === 0 && this.placed[this.current]?.byteLength === 0 && this.placed[this.current].name !== name) {
      await this.completeCurrent();
    }
  }
}
