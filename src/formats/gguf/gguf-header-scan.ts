/**
 * Reads a GGUF header (metadata and tensor infos, after the fixed 24 bytes) straight from its
 * bytes, checking every length and count against the file's size and our limits before it is
 * used. We used to hand the header to @huggingface/gguf, which reads through a window grown in
 * 2 MB steps and decodes a string with `buffer.slice`, which silently stops at the window's end:
 * a legal file whose metadata held a string of 2.5 MB was refused as invalid or truncated (the
 * string was cut, and the read after it fell past the window). Its own caps (arrays of 1 000 000
 * elements, strings of 10 MB) came out as bare parser messages, and an array of 5 M empty strings
 * took half a minute (a TextDecoder and a buffer copy per string) before its cap refused it. The
 * walk here is the whole of what a header needs, so it replaced the parser: each refusal names the
 * key or tensor, TRUNCATED only where the file ends before what the header declares.
 *
 * Strings are decoded leniently (U+FFFD for bad bytes), as the parser did: the reader re-encodes
 * the metadata and compares it with the file, which names the key holding invalid UTF-8, and
 * checks tensor names apart.
 */
import { MergeError } from '../../errors.js';
import type { Pacer } from '../../event-turns.js';
import type { ByteSource } from '../../io/types.js';
import { MAX_GGUF_ARRAY_ELEMENTS, MAX_GGUF_STRING_BYTES } from '../../limits.js';
import { GGML_MAX_DIMS } from './gguf-header-rules.js';
import { FIXED_BYTES, GGUFValueType, type GgufKeyValue, type MetadataValue } from './gguf-metadata.js';
import type { HeldHeader } from './held-header.js';

/**
 * The most header bytes (metadata and tensor infos) read: a header past it is refused as too
 * large, one the file cannot hold as truncated. Real headers are a few MB (a 262 144-token
 * tokenizer with its merges: about 8 MB).
 */
export const MAX_GGUF_HEADER_BYTES = 50_000_000;

/** One tensor info as the header holds it. */
export interface GgufTensorInfo {
  name: string;
  /** The name's length in bytes, as the header gives it. */
  nameBytes: number;
  n_dims: number;
  /** ne: fastest-varying dimension first. */
  shape: bigint[];
  /** GGML type id. */
  dtype: number;
  /** Offset in the data section. */
  offset: bigint;
}

/** The header read by scanGgufHeader. */
export interface ScannedGgufHeader {
  /** Every metadata entry in file order, duplicates included (the reader refuses them). */
  entries: GgufKeyValue[];
  tensorInfos: GgufTensorInfo[];
  /** Where the metadata ends and the tensor infos begin. */
  metadataEnd: number;
  /** Where the tensor infos end (before the data section's padding). */
  headerEnd: number;
}

/** The largest tensor dimension accepted (the parser's cap; real dimensions are below 2^20). */
const MAX_DIM = 2n ** 32n;
/**
 * A string longer than this that two held windows share is decoded in pieces, not copied whole.
 * (An array of numbers that two windows share is copied whole: at most 8 × MAX_GGUF_ARRAY_ELEMENTS
 * bytes beside the held header, for as long as it is decoded.)
 */
const SPAN_COPY_BYTES = 1 << 16;
/** Strings up to this long are decoded by hand where they are ASCII (see stringNow). */
const SHORT_STRING_BYTES = 12;

/**
 * Metadata array elements read between two ticks of the open's pacer: a tick is a clock read, so
 * one per element cost more than reading a short token; 4096 short tokens take well under a
 * millisecond, so a cancel is still seen within one turn.
 */
export const GGUF_ELEMENTS_PER_TICK = 4096;

/** Refusals by MAX_GGUF_ARRAY_ELEMENTS (see isArrayLimitRefusal). */
const arrayLimitRefusals = new WeakSet<object>();

/**
 * Whether `e` is a refusal by MAX_GGUF_ARRAY_ELEMENTS. The reader tells a wrong metadata or tensor
 * count from other damage by walking the header with other counts, every array element included:
 * 5 s on an array of 5 M empty strings, the cost this limit exists to bound. Such a refusal is
 * reported as it is.
 */
export function isArrayLimitRefusal(e: unknown): boolean {
  return typeof e === 'object' && e !== null && arrayLimitRefusals.has(e);
}

/**
 * Sequential little-endian reads of a file's header through a window of its bytes: one of those
 * `held` keeps (read from the file once for every walk), or a copy of a few bytes that straddle two.
 */
class HeaderCursor {
  private bytes: Uint8Array = new Uint8Array(0);
  private view = new DataView(this.bytes.buffer);
  /** File offset of bytes[0]. */
  private base = 0;
  at: number;
  private readonly decoder = new TextDecoder();
  readonly source: ByteSource;

  /** `decode`: false to walk the header without decoding strings (each string read is then ''). */
  constructor(private readonly held: HeldHeader, start: number, readonly decode: boolean) {
    this.source = held.source;
    this.at = start;
  }

  /** Refuses `n` bytes at `at` that run past the file or MAX_GGUF_HEADER_BYTES. */
  private bound(n: number, what: () => string): void {
    const end = this.at + n;
    const { source } = this;
    if (end > source.size) {
      throw new MergeError('TRUNCATED', `${source.name}: ${what()} runs to byte ${end}, but the file has only ${source.size} (truncated download?): download the file again`);
    }
    if (end > MAX_GGUF_HEADER_BYTES) {
      throw new MergeError('HEADER_TOO_LARGE', `${source.name}: GGUF header is larger than ${MAX_GGUF_HEADER_BYTES} bytes (${what()} runs to byte ${end}); not a model this tool merges`);
    }
  }

  /** Steps over `n` bytes without reading them. */
  skip(n: number, what: () => string): void {
    if (!this.has(n)) this.bound(n, what);
    this.at += n;
  }

  /** Makes `n` bytes at `at` readable; `what` names what they belong to, for the refusal. */
  async need(n: number, what: () => string): Promise<void> {
    if (this.at + n <= this.base + this.bytes.byteLength) return;
    this.bound(n, what);
    await this.held.hold(this.at + n);
    const w = this.held.windowAt(this.at)!;
    if (this.at + n <= w.start + w.bytes.byteLength) {
      this.bytes = w.bytes;
      this.base = w.start;
    } else {
      this.bytes = this.held.span(this.at, n);
      this.base = this.at;
    }
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }

  /** Whether `n` bytes at `at` are already read (reads that need no await). */
  has(n: number): boolean {
    return this.at + n <= this.base + this.bytes.byteLength;
  }

  u32(): number {
    const v = this.view.getUint32(this.at - this.base, true);
    this.at += 4;
    return v;
  }

  u64(): bigint {
    const v = this.view.getBigUint64(this.at - this.base, true);
    this.at += 8;
    return v;
  }

  /** `n` bytes as text (read with need first). */
  text(n: number): string {
    const start = this.at - this.base;
    this.at += n;
    return this.decoder.decode(this.bytes.subarray(start, start + n));
  }

  scalar(type: number): MetadataValue {
    const d = this.view;
    const o = this.at - this.base;
    this.at += FIXED_BYTES[type]!;
    switch (type) {
      case GGUFValueType.UINT8: return d.getUint8(o);
      case GGUFValueType.INT8: return d.getInt8(o);
      case GGUFValueType.BOOL: return d.getUint8(o) !== 0;
      case GGUFValueType.UINT16: return d.getUint16(o, true);
      case GGUFValueType.INT16: return d.getInt16(o, true);
      case GGUFValueType.UINT32: return d.getUint32(o, true);
      case GGUFValueType.INT32: return d.getInt32(o, true);
      case GGUFValueType.FLOAT32: return d.getFloat32(o, true);
      case GGUFValueType.UINT64: return d.getBigUint64(o, true);
      case GGUFValueType.INT64: return d.getBigInt64(o, true);
      default: return d.getFloat64(o, true);
    }
  }

  /**
   * Elements [from, to) of an array of `type` (its bytes read with need first) into `items`: one
   * loop per type, rather than scalar()'s switch for each of millions of elements.
   */
  scalars(type: number, items: MetadataValue[], from: number, to: number): void {
    const d = this.view;
    const size = FIXED_BYTES[type]!;
    let o = this.at - this.base;
    this.at += (to - from) * size;
    switch (type) {
      case GGUFValueType.UINT8: for (let j = from; j < to; j++, o++) items[j] = d.getUint8(o); return;
      case GGUFValueType.INT8: for (let j = from; j < to; j++, o++) items[j] = d.getInt8(o); return;
      case GGUFValueType.BOOL: for (let j = from; j < to; j++, o++) items[j] = d.getUint8(o) !== 0; return;
      case GGUFValueType.UINT16: for (let j = from; j < to; j++, o += 2) items[j] = d.getUint16(o, true); return;
      case GGUFValueType.INT16: for (let j = from; j < to; j++, o += 2) items[j] = d.getInt16(o, true); return;
      case GGUFValueType.UINT32: for (let j = from; j < to; j++, o += 4) items[j] = d.getUint32(o, true); return;
      case GGUFValueType.INT32: for (let j = from; j < to; j++, o += 4) items[j] = d.getInt32(o, true); return;
      case GGUFValueType.FLOAT32: for (let j = from; j < to; j++, o += 4) items[j] = d.getFloat32(o, true); return;
      case GGUFValueType.UINT64: for (let j = from; j < to; j++, o += 8) items[j] = d.getBigUint64(o, true); return;
      case GGUFValueType.INT64: for (let j = from; j < to; j++, o += 8) items[j] = d.getBigInt64(o, true); return;
      default: for (let j = from; j < to; j++, o += 8) items[j] = d.getFloat64(o, true);
    }
  }

  /**
   * The string at `at` where its length and bytes are already read and it is within the limit,
   * else undefined (string() then reads it, or refuses it): a tokenizer's arrays hold hundreds of
   * thousands of short strings, and an await each doubled the time to read them.
   */
  stringNow(): string | undefined {
    const o = this.at - this.base;
    if (o + 8 > this.bytes.byteLength) return undefined;
    const length = this.view.getUint32(o, true);
    if (this.view.getUint32(o + 4, true) !== 0 || length > MAX_GGUF_STRING_BYTES || o + 8 + length > this.bytes.byteLength) return undefined;
    this.at += 8 + length;
    if (!this.decode) return '';
    const start = o + 8;
    if (length <= SHORT_STRING_BYTES) {
      // Most tokens are a few ASCII bytes: built by hand in half the time TextDecoder takes.
      let text = '';
      for (let i = start; i < start + length; i++) {
        const byte = this.bytes[i];
        if (byte > 0x7f) return this.decoder.decode(this.bytes.subarray(start, start + length));
        text += String.fromCharCode(byte);
      }
      return text;
    }
    return this.decoder.decode(this.bytes.subarray(start, start + length));
  }

  /** A string (u64 length, then bytes) no longer than MAX_GGUF_STRING_BYTES ('' unless `decode`). */
  async string(what: () => string, decode = this.decode): Promise<string> {
    if (!this.has(8)) await this.need(8, what);
    const length = this.u64();
    if (length > BigInt(MAX_GGUF_STRING_BYTES)) {
      // Refused by the limit even where the file is too short for it: such a length is damage
      // more likely than a cut download, and the limit is what refuses it either way.
      const { name, size } = this.source;
      const why = BigInt(this.at) + length > BigInt(size) ? `; the file has only ${size} bytes, so its header is damaged: download or convert it again` : '; not a model this tool merges';
      throw new MergeError('LIMIT_EXCEEDED', `${name}: ${what()} is a string of ${length} bytes, more than ${MAX_GGUF_STRING_BYTES} (the limit MAX_GGUF_STRING_BYTES)${why}`);
    }
    const n = Number(length);
    if (!decode) {
      this.skip(n, what);
      return '';
    }
    if (this.has(n)) return this.text(n);
    if (n <= SPAN_COPY_BYTES) {
      await this.need(n, what);
      return this.text(n);
    }
    // A long string (a chat template, a tokenizer.json of MBs) is decoded from the windows that
    // hold it, in pieces, rather than from a copy of it beside them.
    this.bound(n, what);
    await this.held.hold(this.at + n);
    const end = this.at + n;
    let text = '';
    while (this.at < end) {
      const w = this.held.windowAt(this.at)!;
      const piece = w.bytes.subarray(this.at - w.start, Math.min(w.bytes.byteLength, end - w.start));
      this.at += piece.byteLength;
      text += this.decoder.decode(piece, { stream: this.at < end });
    }
    return text;
  }
}

/**
 * Reads the metadata (`entryCount` entries) and tensor infos (`tensorCount`) that follow the
 * fixed header, through `held` (which keeps the bytes read for the reader's later passes), refusing in one line: a string past MAX_GGUF_STRING_BYTES or arrays past
 * MAX_GGUF_ARRAY_ELEMENTS elements in all (LIMIT_EXCEEDED, naming the key, before its elements
 * are read), a header past MAX_GGUF_HEADER_BYTES (HEADER_TOO_LARGE), anything past the file's end
 * (TRUNCATED), an unknown value type or an array of arrays (INVALID_HEADER), a tensor of more
 * dimensions than GGML allows or of a dimension past 2^32 (INVALID_SHAPE). `pacer` is ticked once
 * a metadata entry, once every GGUF_ELEMENTS_PER_TICK array elements and once a tensor info, in
 * both walks: a header of millions of elements or 160 000 tensor infos is seconds of work, which a
 * cancel must be able to stop.
 */
export async function scanGgufHeader(held: HeldHeader, entryCount: number, tensorCount: number, pacer: Pacer): Promise<ScannedGgufHeader> {
  // The metadata is walked twice: first its lengths and counts only, so that arrays past the limit
  // are refused before any element is decoded wherever they are (5 arrays of 1 M strings took 2 s
  // to reach the fifth's count), then decoded. Both walks read the windows `held` keeps, so the
  // file's header bytes are read once.
  const walk = new HeaderCursor(held, 24, false);
  await readMetadata(walk, entryCount, pacer);
  const c = new HeaderCursor(held, 24, true);
  const entries = await readMetadata(c, entryCount, pacer);
  const metadataEnd = c.at;
  const file = held.name;
  const tensorInfos: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    // Awaited only when it yields: an await each was a microtask for each of 160 000 infos.
    const turn = pacer.tick();
    if (turn) await turn;
    const nameAt = c.at;
    const name = await c.string(() => `tensor info ${i + 1} of ${tensorCount} (its name)`);
    const nameBytes = c.at - nameAt - 8;
    const what = () => `tensor "${name}"`;
    if (!c.has(4)) await c.need(4, what);
    const nDims = c.u32();
    if (nDims > GGML_MAX_DIMS + 1) {
      // The reader's own refusal (layOutTensors), before millions of dimensions are read.
      throw new MergeError('INVALID_SHAPE', `${file}: ${what()} has ${nDims} dimensions; GGML allows at most ${GGML_MAX_DIMS}`);
    }
    await c.need(8 * nDims + 4 + 8, what);
    const shape: bigint[] = [];
    for (let d = 0; d < nDims; d++) {
      const dim = c.u64();
      if (dim > MAX_DIM) throw new MergeError('INVALID_SHAPE', `${file}: ${what()} has dimension ${d} of ${dim}, more than 2^32; the header is damaged`);
      shape.push(dim);
    }
    const dtype = c.u32();
    const offset = c.u64();
    tensorInfos.push({ name, nameBytes, n_dims: nDims, shape, dtype, offset });
  }
  return { entries, tensorInfos, metadataEnd, headerEnd: c.at };
}

/** The `entryCount` metadata entries from the cursor's place (values empty where it does not decode). */
async function readMetadata(c: HeaderCursor, entryCount: number, pacer: Pacer): Promise<GgufKeyValue[]> {
  const { source } = c;
  const file = source.name;
  const entries: GgufKeyValue[] = [];
  let elements = 0;
  for (let i = 0; i < entryCount; i++) {
    const turn = pacer.tick();
    if (turn) await turn;
    // Keys are decoded in both walks: refusals name them.
    const key = await c.string(() => `metadata entry ${i + 1} of ${entryCount} (its key)`, true);
    const what = () => `metadata "${key}"`;
    if (!c.has(4)) await c.need(4, what);
    const type = c.u32();
    if (type === GGUFValueType.STRING) {
      entries.push({ key, type, value: await c.string(what) });
      continue;
    }
    if (type !== GGUFValueType.ARRAY) {
      const size = FIXED_BYTES[type];
      if (size === undefined) throw new MergeError('INVALID_HEADER', `${file}: ${what()} has value type ${type}, which GGUF does not define`);
      if (!c.has(size)) await c.need(size, what);
      entries.push({ key, type: type as GGUFValueType, value: c.scalar(type) });
      continue;
    }
    if (!c.has(12)) await c.need(12, what);
    const subType = c.u32();
    const count = c.u64();
    if (subType === GGUFValueType.ARRAY) throw new MergeError('INVALID_HEADER', `${file}: ${what()} is an array of arrays, which GGUF readers do not support`);
    const size = FIXED_BYTES[subType];
    if (size === undefined && subType !== GGUFValueType.STRING) {
      throw new MergeError('INVALID_HEADER', `${file}: ${what()} is an array of value type ${subType}, which GGUF does not define`);
    }
    // Counted before any element is read, so a header of millions of elements costs nothing.
    if (count > BigInt(MAX_GGUF_ARRAY_ELEMENTS - elements)) {
      const earlier = elements > 0 ? ` (with the header's earlier arrays, ${BigInt(elements) + count})` : '';
      const least = BigInt(c.at) + count * BigInt(size ?? 8);
      const why = least > BigInt(source.size) ? `; the file has only ${source.size} bytes, so its header is damaged: download or convert it again` : '; not a model this tool merges';
      const refusal = new MergeError('LIMIT_EXCEEDED', `${file}: ${what()} is an array of ${count} elements${earlier}, more than ${MAX_GGUF_ARRAY_ELEMENTS} in all of a header's metadata arrays (the limit MAX_GGUF_ARRAY_ELEMENTS)${why}`);
      arrayLimitRefusals.add(refusal);
      throw refusal;
    }
    const n = Number(count);
    elements += n;
    if (!c.decode) {
      if (size !== undefined) c.skip(n * size, what);
      else {
        for (let j = 0; j < n;) {
          for (const stop = Math.min(n, j + GGUF_ELEMENTS_PER_TICK); j < stop; j++) if (c.stringNow() === undefined) await c.string(() => `element ${j} of metadata "${key}"`);
          const turn = pacer.tick();
          if (turn) await turn;
        }
      }
      entries.push({ key, type, subType: subType as GGUFValueType, value: [] });
      continue;
    }
    const items: MetadataValue[] = new Array<MetadataValue>(n);
    // Every fixed-size element's bytes are known before they are read: read at once.
    if (size !== undefined) await c.need(n * size, what);
    const element = (j: number) => () => `element ${j} of metadata "${key}"`;
    for (let j = 0; j < n;) {
      const stop = Math.min(n, j + GGUF_ELEMENTS_PER_TICK);
      if (size !== undefined) {
        c.scalars(subType, items, j, stop);
        j = stop;
      } else {
        for (; j < stop; j++) items[j] = c.stringNow() ?? await c.string(element(j));
      }
      const turn = pacer.tick();
      if (turn) await turn;
    }
    entries.push({ key, type, subType: subType as GGUFValueType, value: items });
  }
  return entries;
}
