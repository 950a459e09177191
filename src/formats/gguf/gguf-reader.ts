/**
 * Strict GGUF reader (versions 2 and 3, little-endian). gguf-header-scan.ts reads the metadata and
 * tensor infos from our ByteSource (so the same code reads Node files, Blobs and bytes), checking
 * each length and count against the file and our limits; this module then checks what a header
 * holds, llama.cpp's loader being the model. Each failure has its own MergeError code and names
 * the file, and the key or tensor where there is one:
 *   - HEADER_TOO_SMALL  shorter than the fixed 24-byte header
 *   - INVALID_HEADER    not GGUF, unknown version or value type, a value that cannot be read back
 *                       exactly (invalid UTF-8, duplicate keys), arrays of arrays, a bad
 *                       general.alignment, tensor names duplicated or longer than 63 bytes
 *   - UNSUPPORTED_FORMAT  big-endian files and version 1
 *   - LIMIT_EXCEEDED    counts, a string or metadata arrays past the limits in limits.ts
 *   - HEADER_TOO_LARGE  a header past MAX_GGUF_HEADER_BYTES in a file that holds it
 *   - INVALID_DTYPE     a GGML type id not defined by GGML
 *   - INVALID_SHAPE     more than 4 dimensions, or a row that is not a whole number of blocks
 *   - INVALID_OFFSET / OVERLAP  tensors not laid out one after the other, in order, each padded
 *                       to the alignment (llama.cpp requires exactly this)
 *   - TRUNCATED         the header or a tensor runs past the end of the file
 * Where one of these comes from a wrong metadata or tensor count in the header (another count
 * fits what follows), the error says that instead (gguf-counts.ts). Bytes after the last tensor's
 * padding are allowed, as llama.cpp's loader reads only the tensors' ranges (gguf.cpp never checks
 * the file's end); they are counted in `trailingBytes`, never read.
 * The header's bytes are read from the source once (held-header.ts): the scan's two walks, the
 * read-back check and the wrong-count walk all read the windows held, so a URL's header costs one
 * set of range requests. Memory is bounded by MAX_GGUF_HEADER_BYTES (those bytes, held once, until
 * openGguf returns) and the limits whatever the header claims; tensor data is read on demand.
 */
import { shown } from '../../api-arguments.js';
import { MergeError } from '../../errors.js';
import { Pacer } from '../../event-turns.js';
import { MAX_METADATA_ENTRIES, MAX_TENSORS } from '../../limits.js';
import type { ByteSource } from '../../io/types.js';
import { firstInvalidUtf8 } from '../../io/strict-utf8.js';
import { FOREIGN_SNIFF_BYTES, foreignFileRefusal } from '../foreign-file.js';
import { ggmlByteSize, ggmlTypeById, type GgmlType } from './ggml-types.js';
import { miscountedHeader } from './gguf-counts.js';
import { GGUF_ELEMENTS_PER_TICK, isArrayLimitRefusal, MAX_GGUF_HEADER_BYTES, scanGgufHeader, type GgufTensorInfo, type ScannedGgufHeader } from './gguf-header-scan.js';
import { FIVE_D_TYPES, GGML_MAX_DIMS as MAX_DIMS, GGML_MAX_NAME_BYTES as MAX_NAME_BYTES, GGUF_DEFAULT_ALIGNMENT } from './gguf-header-rules.js';
import { ByteWriter, GGUFValueType, type GgufKeyValue, type MetadataValue } from './gguf-metadata.js';
import { HeldHeader } from './held-header.js';

/**
 * ARM-interleaved types that ggml defined in 2024 and then removed from GGUF files (ggml.h keeps
 * their ids commented out): llama.cpp repacks Q4_0 and IQ4_NL at load time instead. Files of them
 * are still published, so they are named rather than called undefined.
 */
const REMOVED_REPACKED_TYPES: ReadonlyMap<number, string> = new Map([
  [31, 'Q4_0_4_4'], [32, 'Q4_0_4_8'], [33, 'Q4_0_8_8'], [36, 'IQ4_NL_4_4'], [37, 'IQ4_NL_4_8'], [38, 'IQ4_NL_8_8'],
]);
export { MAX_GGUF_HEADER_BYTES } from './gguf-header-scan.js';

/** One tensor of a GGUF file, as its header describes it. */
export interface GgufTensor {
  name: string;
  type: GgmlType;
  /** GGML's ne: fastest-varying dimension first. */
  ne: number[];
  /** The same dimensions slowest first (PyTorch order): rows of ne[0] elements. */
  shape: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

/** A GGUF file's validated header, and reads of its tensors' bytes. */
export interface GgufFile {
  readonly source: ByteSource;
  readonly version: 2 | 3;
  readonly alignment: number;
  readonly metadata: readonly GgufKeyValue[];
  readonly tensors: readonly GgufTensor[];
  /** Absolute offset of the data section. */
  readonly dataStart: number;
  /**
   * Bytes after the last tensor's padding (after the header, in a file without tensors): no
   * tensor's data, and not read; llama.cpp loads such a file too.
   */
  readonly trailingBytes: number;
  /** The tensor named `name`, if the file has one. */
  tensor(name: string): GgufTensor | undefined;
  /** The metadata entry `key`, if the file has one. */
  value(key: string): GgufKeyValue | undefined;
  /** `length` bytes starting `start` bytes into a tensor's data. */
  /** `into`: a buffer of `length` bytes offered for them (see ByteSource.read); callers use what is returned. */
  readPart(tensor: GgufTensor, start: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32

/**
 * Reads and checks a GGUF file's header (version 2 or 3, little-endian): every count, type, shape
 * and offset is validated before use, and nothing is read past the limits in limits.ts. `pacer`
 * (the open's) is ticked once a metadata entry, tensor info and batch of array elements in each
 * pass over the header, so that a cancel stops the read of a header of millions of elements.
 */
export async function openGguf(source: ByteSource, pacer: Pacer = new Pacer()): Promise<GgufFile> {
  if (typeof source !== 'object' || source === null || typeof source.read !== 'function' || typeof source.size !== 'number') {
    throw new MergeError('BAD_ARGUMENT', `openGguf: source must be a ByteSource (openNodeByteSource, urlByteSource, or an InputFileSet's open()), not ${shown(source)}`);
  }
  const file = source.name;
  if (source.size < 24) {
    throw new MergeError('HEADER_TOO_SMALL', `${file}: only ${source.size} bytes, too short for a GGUF header`);
  }
  // The fixed header: magic, version, tensor count, metadata count.
  const fixed = await source.read(0, 24);
  const head = new DataView(fixed.buffer, fixed.byteOffset, 24);
  if (head.getUint32(0, true) !== MAGIC) {
    throw foreignFileRefusal(file, await source.read(0, Math.min(source.size, FOREIGN_SNIFF_BYTES)), 'gguf')
      ?? new MergeError('INVALID_HEADER', `${file}: not a GGUF file (no "GGUF" magic)`);
  }
  const version = head.getUint32(4, true);
  if ((version & 0xffff) === 0 && version !== 0) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${file}: a big-endian GGUF file; only little-endian files are supported`);
  }
  if (version === 1) throw new MergeError('UNSUPPORTED_FORMAT', `${file}: GGUF version 1 is not supported (re-convert it with a current llama.cpp)`);
  if (version !== 2 && version !== 3) throw new MergeError('INVALID_HEADER', `${file}: unknown GGUF version ${version}`);

  const { tensors: tensorCount, entries: entryCount } = checkCounts(file, source.size, new DataView(fixed.buffer, fixed.byteOffset + 8, 16));
  // Every pass over the header below reads it here: its bytes come from the file once, and are
  // held (at most MAX_GGUF_HEADER_BYTES of them) until the header is checked.
  const held = new HeldHeader(source, MAX_GGUF_HEADER_BYTES, fixed);
  const scanned = await scanGgufHeader(held, entryCount, tensorCount, pacer).catch(async (e: unknown) => {
    throw isArrayLimitRefusal(e) ? e : await explainedByCounts(held, e, pacer);
  });
  const { headerEnd } = scanned;
  const header = await checkHeader(held, version, entryCount, scanned, pacer).catch(async (e: unknown) => {
    throw await explainedByCounts(held, e, pacer);
  });
  const { metadata, alignment, dataStart, tensors } = header;
  const trailingBytes = source.size - header.end;
  // A tensor count that is too low leaves the real data after the counted tensors' end.
  if (trailingBytes > 0) {
    // The header, and room for one more tensor info (name, n_dims, 5 dims, type, offset).
    const miscount = await miscountedHeader(held, MAX_GGUF_HEADER_BYTES, pacer, headerEnd + 8 + MAX_NAME_BYTES + 4 + 5 * 8 + 4 + 8);
    if (miscount) throw new MergeError('INVALID_HEADER', miscount);
  }
  return new ParsedGguf(source, version, alignment, metadata, tensors, dataStart, trailingBytes);
}

/**
 * Everything the parser does not check of the header it read: its metadata, its tensors' layout.
 * `source`: the file's held header bytes, which the read-back compares with.
 */
async function checkHeader(source: HeldHeader, version: number, entryCount: number, scanned: ScannedGgufHeader, pacer: Pacer): Promise<{ metadata: GgufKeyValue[]; alignment: number; dataStart: number; tensors: GgufTensor[]; end: number }> {
  const file = source.name;
  const metadata = readMetadata(file, scanned.entries, entryCount);
  const alignment = readAlignment(file, metadata);
  const { headerEnd, metadataEnd, tensorInfos } = scanned;
  await checkReadBack(source, version, metadata, metadataEnd, tensorInfos.length, pacer);
  // Names are decoded leniently, putting U+FFFD for bad bytes: only a name holding one can hide them.
  if (tensorInfos.some((t) => t.name.includes('\ufffd'))) await checkTensorNames(source, [metadataEnd, headerEnd], pacer);
  const dataStart = roundUp(headerEnd, alignment);
  return { metadata, alignment, dataStart, ...await layOutTensors(file, tensorInfos, dataStart, alignment, source.size, headerEnd, pacer) };
}

/**
 * `e`, or a header refusal saying the metadata or tensor count is wrong where another count fits
 * the file: a wrong count makes the parser read a metadata entry as a tensor info, or the reverse,
 * and `e` then names a metadata key as a tensor.
 */
async function explainedByCounts(source: HeldHeader, e: unknown, pacer: Pacer): Promise<unknown> {
  // A cancel is no damage to explain, and the walk would be the work the cancel stopped.
  if (e instanceof MergeError && e.code === 'ABORTED') return e;
  const miscount = await miscountedHeader(source, MAX_GGUF_HEADER_BYTES, pacer).catch((walk: unknown) => {
    if (walk instanceof MergeError && walk.code === 'ABORTED') throw walk;
    return undefined;
  });
  return miscount ? new MergeError('INVALID_HEADER', miscount, { cause: e }) : e;
}

/**
 * Refuses a control vector (llama.cpp's cvector-generator, or gguf-py's GGUFWriter under the
 * architecture "controlvector": one `direction.N` vector per layer): llama.cpp adds it to the
 * hidden states at run time, so it is neither a model to merge into nor an adapter to merge.
 */
export function refuseControlVector(file: GgufFile): void {
  if (file.value('general.architecture')?.value !== 'controlvector') return;
  throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: a llama.cpp control vector (general.architecture "controlvector"), which llama.cpp adds to each layer's output at run time (--control-vector); it holds no weights, so it is neither a base model nor a LoRA adapter to merge`);
}

/** The least bytes a metadata entry takes: an empty key (u64 length), its type (u32), a u8 value. */
const MIN_KV_BYTES = 8 + 4 + 1;
/** The least bytes a tensor info takes: an empty name, n_dims (u32), no dims, its type (u32), its offset (u64). */
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8;

/**
 * The header's two counts (u64 at bytes 8 and 16), checked before the parser loops over them: a
 * flipped byte made a 572-byte file claim 4 194 306 tensors, and the parser asked for ranges past
 * its end millions of times (6 s, 437 MB) before failing.
 */
function checkCounts(file: string, size: number, counts: DataView): { tensors: number; entries: number } {
  const tensors = counts.getBigUint64(0, true);
  const entries = counts.getBigUint64(8, true);
  if (tensors > BigInt(MAX_TENSORS)) {
    throw new MergeError('LIMIT_EXCEEDED', `${file}: the header declares ${tensors} tensors, more than ${MAX_TENSORS} (the limit MAX_TENSORS); not a model this tool merges`);
  }
  if (entries > BigInt(MAX_METADATA_ENTRIES)) {
    throw new MergeError('LIMIT_EXCEEDED', `${file}: the header declares ${entries} metadata entries, more than ${MAX_METADATA_ENTRIES} (the limit MAX_METADATA_ENTRIES)`);
  }
  const least = 24 + Number(tensors) * MIN_TENSOR_INFO_BYTES + Number(entries) * MIN_KV_BYTES;
  if (least > size) {
    throw new MergeError('TRUNCATED', `${file}: the header declares ${tensors} tensors and ${entries} metadata entries, which take at least ${least} bytes, but the file has ${size}`);
  }
  return { tensors: Number(tensors), entries: Number(entries) };
}

/**
 * The metadata entries, refused where a key is written twice or is one of the names GGUF
 * libraries give the fixed header's fields (version, tensor_count, kv_count), which such a
 * library's dictionary of metadata would confuse with them.
 */
function readMetadata(file: string, entries: readonly GgufKeyValue[], declared: number): GgufKeyValue[] {
  const reserved = new Set(['version', 'tensor_count', 'kv_count']);
  const seen = new Set<string>();
  const out: GgufKeyValue[] = [];
  for (const kv of entries) {
    if (reserved.has(kv.key) || seen.has(kv.key)) continue;
    seen.add(kv.key);
    out.push(kv);
  }
  if (out.length !== declared) {
    throw new MergeError('INVALID_HEADER', `${file}: ${declared} metadata entries declared but ${out.length} distinct keys read (a key is duplicated or reserved)`);
  }
  return out;
}

function readAlignment(file: string, metadata: GgufKeyValue[]): number {
  const kv = metadata.find((m) => m.key === 'general.alignment');
  if (!kv) return GGUF_DEFAULT_ALIGNMENT;
  const a = kv.value as number;
  if (kv.type !== GGUFValueType.UINT32 || a === 0 || (a & (a - 1)) !== 0) {
    throw new MergeError('INVALID_HEADER', `${file}: general.alignment must be a u32 power of two, got ${String(kv.value)}`);
  }
  return a;
}

/**
 * The parser decodes strings leniently and keeps the last of duplicate keys; encoding what it
 * read and comparing with the file's bytes proves the metadata was read exactly (and lets the
 * writer copy it faithfully). Compared in pieces, so memory stays at the header's size.
 */
async function checkReadBack(source: ByteSource, version: number, metadata: GgufKeyValue[], metadataEnd: number, tensorCount: number, pacer: Pacer): Promise<void> {
  const w = new ByteWriter();
  w.u32(MAGIC);
  w.u32(version);
  w.u64(tensorCount);
  w.u64(metadata.length);
  let at = 0;
  // Where each entry written since the last flush starts, so a mismatch names its key and byte.
  let starts: { key: string; start: number }[] = [];
  const flush = async (final: boolean) => {
    if (!final && w.byteLength < 1 << 20) return;
    const mine = w.take();
    // What the file holds there (less where the re-encoding runs past its end, itself a difference).
    const theirs = await source.read(at, Math.min(mine.byteLength, Math.max(0, source.size - at)));
    // A plain loop, its bound read once: findIndex called a function for each of the header's
    // tens of millions of bytes (6 times as long), and a bound of theirs.byteLength 10 times.
    const length = theirs.byteLength;
    let first = 0;
    while (first < length && theirs[first] === mine[first]) first++;
    const differs = first < length ? first : length < mine.byteLength ? length : -1;
    if (differs >= 0) {
      const byte = at + differs;
      const entry = [...starts].reverse().find((e) => e.start <= byte);
      const where = entry ? `metadata "${entry.key}" could not be read back exactly at byte ${byte}` : `the header could not be read back exactly at byte ${byte}`;
      throw new MergeError('INVALID_HEADER', `${source.name}: ${where} (invalid UTF-8, a non-canonical value such as a bool other than 0 or 1, or a duplicated key)`);
    }
    at += mine.byteLength;
    // The last entry may go on past the flush (an array is flushed in batches).
    starts = starts.slice(-1);
  };
  for (const kv of metadata) {
    await pacer.tick();
    starts.push({ key: kv.key, start: at + w.byteLength });
    if (kv.type !== GGUFValueType.ARRAY) {
      w.keyValue(kv);
      await flush(false);
      continue;
    }
    // An array in batches, each followed by a tick: millions of elements are seconds of writing.
    const items = kv.value as MetadataValue[];
    w.string(kv.key);
    w.u32(kv.type);
    w.arrayHead(kv.subType, items.length);
    for (let j = 0; j < items.length;) {
      const stop = Math.min(items.length, j + GGUF_ELEMENTS_PER_TICK);
      w.elements(kv.subType!, items, j, stop);
      j = stop;
      await flush(false);
      await pacer.tick();
    }
    await flush(false);
  }
  await flush(true);
  if (at !== metadataEnd) throw new MergeError('INVALID_HEADER', `${source.name}: metadata ends at byte ${metadataEnd}, expected ${at}`);
}

/**
 * Refuses a tensor name that is not UTF-8, naming the first bad byte's offset in the file: GGUF
 * strings are UTF-8, and a name read with U+FFFD in it would be written out changed. Walks the
 * tensor infos (name, n_dims, dims, type, offset), which the parser has already bounded.
 */
async function checkTensorNames(source: ByteSource, [start, end]: [number, number], pacer: Pacer): Promise<void> {
  const bytes = await source.read(start, end - start);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at + 8 <= bytes.length) {
    await pacer.tick();
    const length = Number(view.getBigUint64(at, true));
    const name = bytes.subarray(at + 8, at + 8 + length);
    const bad = firstInvalidUtf8(name);
    if (bad < name.length) {
      throw new MergeError('INVALID_HEADER', `${source.name}: a tensor name is not valid UTF-8 (byte 0x${name[bad].toString(16).padStart(2, '0')} at offset ${start + at + 8 + bad}), which GGUF strings must be`);
    }
    const nDims = view.getUint32(at + 8 + length, true);
    at += 8 + length + 4 + 8 * nDims + 4 + 8;
  }
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * Validates every tensor info and places it: in order, each padded to the alignment, no gaps.
 * `end`: where the last tensor's padding ends (the header's end, with no tensors), or the file's
 * end where that is sooner.
 */
async function layOutTensors(file: string, infos: GgufTensorInfo[], dataStart: number, alignment: number, fileSize: number, headerEnd: number, pacer: Pacer): Promise<{ tensors: GgufTensor[]; end: number }> {
  const seen = new Set<string>();
  const tensors: GgufTensor[] = [];
  let expected = 0n;
  for (const info of infos) {
    const turn = pacer.tick();
    if (turn) await turn;
    // Checked before the name is quoted: a name may be up to MAX_GGUF_STRING_BYTES.
    const { nameBytes } = info;
    if (nameBytes > MAX_NAME_BYTES) {
      throw new MergeError('INVALID_HEADER', `${file}: tensor "${info.name.slice(0, MAX_NAME_BYTES)}…" has a name of ${nameBytes} bytes, longer than GGML's ${MAX_NAME_BYTES}`);
    }
    const where = `${file}: tensor "${info.name}"`;
    if (seen.has(info.name)) throw new MergeError('INVALID_HEADER', `${where} is declared twice`);
    seen.add(info.name);
    const type = ggmlTypeById(info.dtype);
    if (info.n_dims > MAX_DIMS && !(info.n_dims === 5 && type && FIVE_D_TYPES.has(type.name))) {
      throw new MergeError('INVALID_SHAPE', `${where} has ${info.n_dims} dimensions; GGML allows at most ${MAX_DIMS}${info.n_dims === 5 ? ' (5 only for an F32, F16 or BF16 tensor, as ComfyUI-GGUF stores a Conv3d)' : ''}`);
    }
    if (!type) {
      const removed = REMOVED_REPACKED_TYPES.get(info.dtype);
      throw new MergeError('INVALID_DTYPE', removed
        ? `${where} is ${removed} (GGML type id ${info.dtype}), a type llama.cpp removed from GGUF files (it now repacks ${removed.split('_').slice(0, 2).join('_')} for the CPU as it loads a model): current llama.cpp does not load this file either; use the model's ${removed.split('_').slice(0, 2).join('_')} file instead`
        : `${where} has GGML type id ${info.dtype}, which GGML does not define`);
    }
    const ne = info.shape;
    const elements = ne.reduce((n, d) => n * d, 1n);
    const bytes = ggmlByteSize(type, ne[0] ?? 1n, elements);
    if (bytes === undefined) {
      throw new MergeError('INVALID_SHAPE', `${where} is ${type.name} with rows of ${ne[0]} values, not a whole number of ${type.blockSize}-value blocks`);
    }
    if (info.offset !== expected) {
      throw new MergeError(
        info.offset < expected ? 'OVERLAP' : 'INVALID_OFFSET',
        `${where} starts at data offset ${info.offset}, expected ${expected} (tensors follow each other in order, each padded to ${alignment} bytes)`,
      );
    }
    const start = BigInt(dataStart) + info.offset;
    const end = start + bytes;
    if (end > BigInt(fileSize)) {
      throw new MergeError('TRUNCATED', `${where} ends at byte ${end} but the file has only ${fileSize} (truncated download?): download the file again`);
    }
    tensors.push({
      name: info.name,
      type,
      ne: ne.map(Number),
      shape: ne.map(Number).reverse(),
      offset: Number(start),
      byteLength: Number(bytes),
    });
    expected = info.offset + (bytes + BigInt(alignment) - 1n) / BigInt(alignment) * BigInt(alignment);
  }
  // Without tensors gguf.cpp does not pad the header; the padding a writer may add is no data either.
  const end = tensors.length === 0 ? Math.max(headerEnd, Math.min(fileSize, dataStart)) : Math.min(fileSize, dataStart + Number(expected));
  return { tensors, end };
}

class ParsedGguf implements GgufFile {
  private readonly byName: Map<string, GgufTensor>;

  constructor(
    readonly source: ByteSource,
    readonly version: 2 | 3,
    readonly alignment: number,
    readonly metadata: readonly GgufKeyValue[],
    readonly tensors: readonly GgufTensor[],
    readonly dataStart: number,
    readonly trailingBytes: number,
  ) {
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }

  tensor(name: string): GgufTensor | undefined {
    return this.byName.get(name);
  }

  value(key: string): GgufKeyValue | undefined {
    return this.metadata.find((kv) => kv.key === key);
  }

  async readPart(tensor: GgufTensor, start: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > tensor.byteLength) {
      throw new RangeError(`bytes ${start}+${length} are outside tensor "${tensor.name}" (${tensor.byteLength} bytes)`);
    }
    if (length === 0) return new Uint8Array(0);
    return this.source.read(tensor.offset + start, length, into);
  }
}
