/**
 * A GGUF file's first bytes, read from its source once and held while its header is opened: the
 * header scan walks the metadata twice (lengths and counts, then values), and the reader reads the
 * metadata back to compare it with its re-encoding and may walk the header again to explain a
 * wrong count. Each of those reads the bytes held here, so an 8 MB tokenizer header is one pass
 * over the file, which for a URL is one set of ranged requests and for a browser File one set of
 * reads.
 *
 * Memory: at most min(file size, MAX_GGUF_HEADER_BYTES) bytes are held, each once (the windows as
 * read, never copied into a larger buffer), until the reader lets go of this (openGguf returns). A
 * read that spans two windows is answered with a copy of its own bytes, the caller's for as long as
 * it keeps it: the scan copies only what two windows share of one value (a long string it decodes
 * in pieces instead), the read-back check 1 MiB at a time. Reads past that bound go to the source
 * and are not held.
 */
import type { ByteSource } from '../../io/types.js';

/** Bytes read from the file at a time, past what a read needs (fewer at the bound). */
export const HEADER_WINDOW_BYTES = 4 << 20;

/** The first `limit` bytes of `source` at most, read in windows from its start and kept. */
export class HeldHeader implements ByteSource {
  readonly name: string;
  readonly size: number;
  /** The held windows, in file order, one after the other from byte 0. */
  private readonly windows: Uint8Array[] = [];
  /** Where each window starts. */
  private readonly starts: number[] = [];
  /** DataViews of the windows, made as they are first read from. */
  private readonly views: (DataView | undefined)[] = [];
  /** The end of the bytes held ([0, held)). */
  private held = 0;
  /** The most bytes held: the file's size or the limit on header bytes, whichever is less. */
  readonly limit: number;

  /** `first`: the file's first bytes, already read (its fixed header). */
  constructor(readonly source: ByteSource, limit: number, first: Uint8Array) {
    this.name = source.name;
    this.size = source.size;
    this.limit = Math.min(source.size, limit);
    if (first.byteLength > 0) this.keep(first.subarray(0, Math.min(first.byteLength, this.limit)));
  }

  private keep(bytes: Uint8Array): void {
    // A plain Uint8Array over the same memory (a Node source gives Buffers): the walks index these
    // and the copies span() makes, and one kind of array keeps those reads monomorphic.
    this.windows.push(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    this.starts.push(this.held);
    this.held += bytes.byteLength;
  }

  /** How many bytes (from byte 0) are held. */
  get heldBytes(): number {
    return this.held;
  }

  /** Reads on from what is held to at least `end` (capped at the bound), a window or more at a time. */
  async hold(end: number): Promise<void> {
    if (end <= this.held) return;
    const to = Math.min(this.limit, Math.max(end, this.held + HEADER_WINDOW_BYTES));
    if (to <= this.held) return;
    this.keep(await this.source.read(this.held, to - this.held));
  }

  /**
   * The held window holding byte `at` and where it starts; undefined past what is held. A
   * sequential walk asks for the same or the next window, so the search starts from the last.
   */
  windowAt(at: number): { bytes: Uint8Array; start: number } | undefined {
    const i = this.indexAt(at);
    return i === undefined ? undefined : { bytes: this.windows[i], start: this.starts[i] };
  }

  private last = 0;

  private indexAt(at: number): number | undefined {
    if (at < 0 || at >= this.held) return undefined;
    let i = this.starts[this.last] <= at ? this.last : 0;
    while (this.starts[i] + this.windows[i].byteLength <= at) i++;
    this.last = i;
    return i;
  }

  /** A view of the `size` held bytes at `at`, and where in it they start. */
  private viewAt(at: number, size: number): { view: DataView; o: number } {
    const i = this.indexAt(at);
    if (i !== undefined && at + size <= this.starts[i] + this.windows[i].byteLength) {
      const w = this.windows[i];
      const view = this.views[i] ??= new DataView(w.buffer, w.byteOffset, w.byteLength);
      return { view, o: at - this.starts[i] };
    }
    const bytes = this.span(at, size);
    return { view: new DataView(bytes.buffer, bytes.byteOffset, size), o: 0 };
  }

  /** The held little-endian u32 at `at`. */
  u32(at: number): number {
    const { view, o } = this.viewAt(at, 4);
    return view.getUint32(o, true);
  }

  /** The held little-endian u64 at `at`. */
  u64(at: number): bigint {
    const { view, o } = this.viewAt(at, 8);
    return view.getBigUint64(o, true);
  }

  /** The held bytes [at, at + length): a view where one window holds them all, else a copy. */
  span(at: number, length: number): Uint8Array {
    const first = this.windowAt(at);
    if (!first || at + length > this.held) throw new RangeError(`HeldHeader: bytes ${at}+${length} are not held`);
    const from = at - first.start;
    if (from + length <= first.bytes.byteLength) return first.bytes.subarray(from, from + length);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const w = this.windowAt(at + done)!;
      const piece = w.bytes.subarray(at + done - w.start, Math.min(w.bytes.byteLength, at + length - w.start));
      out.set(piece, done);
      done += piece.byteLength;
    }
    return out;
  }

  /** Held bytes where they are within the bound (reading on to them first), else the source's. */
  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (offset + length > this.limit) return this.source.read(offset, length, into);
    if (length === 0) return new Uint8Array(0);
    await this.hold(offset + length);
    return this.span(offset, length);
  }

  /** Closes nothing: the source belongs to the caller. */
  async close(): Promise<void> {}
}
