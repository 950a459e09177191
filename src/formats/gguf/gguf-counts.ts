/**
 * Tells a GGUF header whose metadata count or tensor count is wrong from other damage. The two
 * counts (u64 at bytes 8 and 16) say where the metadata ends and the tensor infos begin; a wrong
 * one makes a reader take a metadata entry for a tensor info (or the reverse), and the error it
 * then reports names a metadata key as a tensor, or a truncated file. Here the header is walked
 * with other counts: where another count gives tensor infos that follow each other exactly as
 * GGUF lays them out (the first at data offset 0, each at the previous one's end padded to the
 * alignment, of known GGML types with whole-block rows), that count is what the file holds.
 * Each tensor info is read once however many counts' runs reach it (FittingRuns), and the search
 * has a budget of infos read (OTHER_COUNTS_BUDGET). Walked only when a file was refused or has bytes after its last tensor, so it costs nothing on
 * sound files.
 */
import type { Pacer } from '../../event-turns.js';
import { firstInvalidUtf8 } from '../../io/strict-utf8.js';
import { MAX_METADATA_ENTRIES, MAX_TENSORS } from '../../limits.js';
import { ggmlByteSize, ggmlTypeById } from './ggml-types.js';
import { FIVE_D_TYPES, GGML_MAX_DIMS, GGML_MAX_NAME_BYTES, GGUF_DEFAULT_ALIGNMENT } from './gguf-header-rules.js';
import { GGUF_ELEMENTS_PER_TICK } from './gguf-header-scan.js';
import { GGUFValueType } from './gguf-metadata.js';
import type { HeldHeader } from './held-header.js';

/** The fixed header: magic, version, tensor count, metadata count. */
const FIXED_HEADER_BYTES = 24;
/** Read first; doubled while the walk needs more, up to `limit`. */
const FIRST_WINDOW_BYTES = 1 << 20;
const FIXED_VALUE_BYTES: Partial<Record<number, number>> = {
  [GGUFValueType.UINT8]: 1, [GGUFValueType.INT8]: 1, [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT16]: 2, [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4, [GGUFValueType.INT32]: 4, [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.UINT64]: 8, [GGUFValueType.INT64]: 8, [GGUFValueType.FLOAT64]: 8,
};

/** How much of a tensor name is looked at to tell it from padding or tensor data. */
const NAME_START_BYTES = 64;

/**
 * Whether a tensor info's name may start at `at`: a length of at least 1 whose bytes the file
 * holds, starting with no control bytes (bytes past ASCII are the reader's to name, as bad UTF-8).
 * A wrong count leaves zero padding (length 0), tensor data (a length past the file, or control
 * bytes) or the file's end there; a name too long for GGML is still a name, refused for its length.
 */
function startsAName(h: HeaderBytes, at: number): boolean {
  const length = h.u64(at);
  if (length === undefined || length < 1n || length > BigInt(Number.MAX_SAFE_INTEGER) || !h.has(at + 8, Number(length))) return false;
  const start = Math.min(Number(length), NAME_START_BYTES);
  return h.bytes(at + 8, start).every((b) => b >= 0x20 && b !== 0x7f);
}

/** The walk reached the end of the bytes read so far, before the end of the file. */
class NeedMoreBytes extends Error {}

/**
 * Little-endian reads of the file's first bytes (held by the reader: read from the file once),
 * each a number, or undefined past the file's end.
 */
class HeaderBytes {
  /** `readable`: the end of what may be read (the file's end, or the limit on header bytes). */
  constructor(private readonly held: HeldHeader, private readonly fileSize: number, private readonly readable: number) {}

  /** How many bytes are read so far. */
  get length(): number {
    return this.held.heldBytes;
  }

  /** Whether `length` bytes at `at` may be read; throws NeedMoreBytes when they may but are not read yet. */
  has(at: number, length: number): boolean {
    if (at + length > this.readable) return false;
    if (at + length > this.held.heldBytes) throw new NeedMoreBytes();
    return true;
  }

  /** `length` bytes at `at` (checked with has() first). */
  bytes(at: number, length: number): Uint8Array {
    return this.held.span(at, length);
  }

  u32(at: number): number | undefined {
    return this.has(at, 4) ? this.held.u32(at) : undefined;
  }

  u64(at: number): bigint | undefined {
    return this.has(at, 8) ? this.held.u64(at) : undefined;
  }

  /** A GGUF string of 1 to `maxBytes` bytes of UTF-8 at `at`: its text and end. */
  name(at: number, maxBytes: number): { text: string; end: number } | undefined {
    const length = this.u64(at);
    if (length === undefined || length < 1n || length > BigInt(maxBytes)) return undefined;
    const n = Number(length);
    if (!this.has(at + 8, n)) return undefined;
    const raw = this.bytes(at + 8, n);
    if (firstInvalidUtf8(raw) < raw.byteLength) return undefined;
    return { text: new TextDecoder().decode(raw), end: at + 8 + n };
  }

  /** The end of a value of `type` at `at`. */
  valueEnd(type: number, at: number): number | undefined {
    const fixed = FIXED_VALUE_BYTES[type];
    if (fixed !== undefined) return this.has(at, fixed) ? at + fixed : undefined;
    if (type === GGUFValueType.STRING) {
      const length = this.u64(at);
      if (length === undefined || length > BigInt(this.fileSize)) return undefined;
      return this.has(at + 8, Number(length)) ? at + 8 + Number(length) : undefined;
    }
    return undefined;
  }

  /** The end of a value of `type` at `at`, an array's too; `pacer` ticked once a batch of its elements. */
  async anyValueEnd(type: number, at: number, pacer: Pacer): Promise<number | undefined> {
    if (type !== GGUFValueType.ARRAY) return this.valueEnd(type, at);
    const itemType = this.u32(at);
    const count = this.u64(at + 4);
    if (itemType === undefined || count === undefined || itemType === GGUFValueType.ARRAY || count > BigInt(this.fileSize)) return undefined;
    const itemBytes = FIXED_VALUE_BYTES[itemType];
    if (itemBytes !== undefined) {
      const bytes = Number(count) * itemBytes;
      return this.has(at + 12, bytes) ? at + 12 + bytes : undefined;
    }
    let end: number | undefined = at + 12;
    for (let i = 0; i < Number(count) && end !== undefined; i++) {
      end = this.valueEnd(itemType, end);
      if (i % GGUF_ELEMENTS_PER_TICK === GGUF_ELEMENTS_PER_TICK - 1) await pacer.tick();
    }
    return end;
  }
}

/** One metadata entry: its key, where it ends, and general.alignment's value when it is that. */
async function entryAt(h: HeaderBytes, at: number, pacer: Pacer): Promise<{ key: string; end: number; alignment?: number } | undefined> {
  const key = h.name(at, h.length);
  if (!key) return undefined;
  const type = h.u32(key.end);
  if (type === undefined) return undefined;
  const end = await h.anyValueEnd(type, key.end + 4, pacer);
  if (end === undefined) return undefined;
  if (key.text === 'general.alignment' && type === GGUFValueType.UINT32) {
    const a = h.u32(key.end + 4)!;
    if (a !== 0 && (a & (a - 1)) === 0) return { key: key.text, end, alignment: a };
  }
  return { key: key.text, end };
}

/** A tensor info at `at` whose data would start at data offset `offset`: its name, end and data size. */
function tensorInfoAt(h: HeaderBytes, at: number, offset: bigint): { name: string; end: number; bytes: bigint } | undefined {
  const name = h.name(at, GGML_MAX_NAME_BYTES);
  if (!name) return undefined;
  const nDims = h.u32(name.end);
  if (nDims === undefined || nDims < 1 || nDims > GGML_MAX_DIMS + 1) return undefined;
  const ne: bigint[] = [];
  for (let i = 0; i < nDims; i++) {
    const d = h.u64(name.end + 4 + 8 * i);
    if (d === undefined || d < 1n || d > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    ne.push(d);
  }
  const typeAt = name.end + 4 + 8 * nDims;
  const typeId = h.u32(typeAt);
  const type = typeId === undefined ? undefined : ggmlTypeById(typeId);
  if (!type || (nDims === 5 && !FIVE_D_TYPES.has(type.name))) return undefined;
  const bytes = ggmlByteSize(type, ne[0], ne.reduce((n, d) => n * d, 1n));
  if (bytes === undefined || h.u64(typeAt + 4) !== offset) return undefined;
  return { name: name.text, end: typeAt + 12, bytes };
}

/** The tensor infos that follow each other from `at`, at most `most`. */
interface TensorInfoRun {
  /** Where each starts, and its name. */
  starts: number[];
  names: string[];
  /** Where the last one ends. */
  end: number;
  /** The data section's size to the end of the last tensor's data, without its padding. */
  used: bigint;
  /** The same with the last tensor's padding. */
  padded: bigint;
}

async function tensorInfosFrom(h: HeaderBytes, at: number, alignment: number, most: number, pacer: Pacer): Promise<TensorInfoRun> {
  const a = BigInt(alignment);
  const run: TensorInfoRun = { starts: [], names: [], end: at, used: 0n, padded: 0n };
  while (run.names.length < most) {
    const turn = pacer.tick();
    if (turn) await turn;
    const info = tensorInfoAt(h, run.end, run.padded);
    if (!info) break;
    run.starts.push(run.end);
    run.names.push(info.name);
    run.end = info.end;
    run.used = run.padded + info.bytes;
    run.padded += (info.bytes + a - 1n) / a * a;
  }
  return run;
}

/** A tensor info the walk found: its offset (the data offset its run reached it at) and its fit. */
interface FoundInfo {
  offset: bigint;
  /** How many infos from it on, it first, have their data end inside the file (see FittingRuns). */
  fitting: number;
}

/**
 * The most tensor infos the walk over other metadata counts finds, besides the first of each
 * count's run: four times as many as a file may hold. The runs of a damaged file with a wrong count
 * find about as many as it holds (the run of the right count, and a few infos where the bytes at
 * another entry's end happen to read as one); only bytes made to read as many runs of their own
 * reach it, and are refused.
 */
const OTHER_COUNTS_BUDGET = 4 * (MAX_TENSORS + 1);

/**
 * The runs of tensor infos from a set of positions, all with one alignment, each found once.
 * A run from an entry's end whose data fits the file is the run of some metadata count; each such
 * run is asked how many of its infos have their data end inside the file. Two runs that reach the
 * same info at the same data offset go on alike from there, and an info is found at one data
 * offset only (its own offset field), so each info's answer is kept by its position: the walk is
 * linear in the infos found, not their number times the counts.
 *
 * Where a run's data ends (its infos' end padded to the alignment, plus the data offset and size
 * of its last info) never falls from one info to the next, so the infos of a run that fit the
 * file come first: a count's `n` tensor infos are found with the last one's data inside the file
 * exactly when at least `n` fit here.
 */
class FittingRuns {
  private readonly found = new Map<number, FoundInfo>();
  private readonly a: bigint;

  constructor(private readonly h: HeaderBytes, private readonly alignment: number, private readonly size: number, private readonly pacer: Pacer, private readonly budget: { left: number }) {
    this.a = BigInt(alignment);
  }

  /** How many infos of the run from `at` fit the file; undefined once the walk's budget is spent. */
  async from(at: number): Promise<number | undefined> {
    const path: FoundInfo[] = [];
    let offset = 0n;
    let after = 0;
    for (;;) {
      // Found at another offset, the info is read again, and fails on its offset.
      const known = this.found.get(at);
      if (known?.offset === offset) {
        after = known.fitting;
        break;
      }
      if (path.length > 0 && --this.budget.left < 0) return undefined;
      const turn = this.pacer.tick();
      if (turn) await turn;
      const info = tensorInfoAt(this.h, at, offset);
      if (!info) break;
      const found: FoundInfo = { offset, fitting: 0 };
      this.found.set(at, found);
      const end = Math.ceil(info.end / this.alignment) * this.alignment + Number(offset + info.bytes);
      if (end > this.size) break;
      path.push(found);
      offset += (info.bytes + this.a - 1n) / this.a * this.a;
      at = info.end;
    }
    for (let i = path.length - 1; i >= 0; i--) path[i].fitting = ++after;
    return after;
  }
}

/** Runs `walk` over the file's first bytes, reading more while it needs them, up to `limit` bytes. */
async function walkHeader<T>(held: HeldHeader, limit: number, first: number, walk: (h: HeaderBytes) => Promise<T>): Promise<T> {
  const readable = Math.min(held.limit, limit);
  let length = Math.min(readable, first);
  for (;;) {
    await held.hold(length);
    try {
      return await walk(new HeaderBytes(held, held.size, readable));
    } catch (e) {
      // Never past `readable`: has() answers false there, so each retry holds more.
      if (!(e instanceof NeedMoreBytes)) throw e;
      length = Math.min(readable, Math.max(length, held.heldBytes) * 2);
    }
  }
}

/**
 * Why the header's metadata or tensor count does not describe the file (one line, naming the file
 * and the byte), when another count does; undefined when the counts fit, or when no other count
 * fits either (the damage is elsewhere). `held`: the file's first bytes as the reader holds them
 * (read on as the walk needs); `limit`: the most header bytes to read; `firstRead`: how many to
 * read first (the header's size, where it is known).
 */
export async function miscountedHeader(held: HeldHeader, limit: number, pacer: Pacer, firstRead = FIRST_WINDOW_BYTES): Promise<string | undefined> {
  if (held.size < FIXED_HEADER_BYTES) return undefined;
  const bytes = await held.read(8, 16);
  const counts = new DataView(bytes.buffer, bytes.byteOffset, 16);
  const tensors = counts.getBigUint64(0, true);
  const entries = counts.getBigUint64(8, true);
  if (tensors > BigInt(MAX_TENSORS) || entries > BigInt(MAX_METADATA_ENTRIES)) return undefined;
  const declaredTensors = Number(tensors);
  const declaredEntries = Number(entries);
  const { name: file, size } = held;
  return walkHeader(held, limit, firstRead, async (h) => {
    // Where each metadata entry starts, and the alignment in force after each: `upTo` entries, or
    // fewer where one does not parse.
    const starts = [FIXED_HEADER_BYTES];
    const alignments = [GGUF_DEFAULT_ALIGNMENT];
    const walkEntries = async (upTo: number) => {
      while (starts.length <= upTo) {
        await pacer.tick();
        const entry = await entryAt(h, starts[starts.length - 1], pacer);
        if (!entry) return;
        starts.push(entry.end);
        alignments.push(entry.alignment ?? alignments[alignments.length - 1]);
      }
    };
    await walkEntries(declaredEntries);
    const dataStart = (run: TensorInfoRun, count: number) => Math.ceil(run.end / alignments[count]) * alignments[count];
    // Fewer tensor infos than declared, and where the next would start no name of one: the count
    // is too high, or the file is cut or damaged there. Said after a metadata count that fits.
    let fewer: string | undefined;
    if (declaredEntries < starts.length) {
      const infos = await tensorInfosFrom(h, starts[declaredEntries], alignments[declaredEntries], MAX_TENSORS + 1, pacer);
      if (infos.names.length > declaredTensors) {
        return `${file}: the header declares ${declaredTensors} tensor${declaredTensors === 1 ? '' : 's'}, but ${infos.names.length} tensor infos follow its metadata (tensor "${infos.names[declaredTensors]}" at byte ${infos.starts[declaredTensors]}): the header's tensor count is wrong; the file is damaged: download or convert it again`;
      }
      if (infos.names.length === declaredTensors) return undefined;
      // Fewer follow: told only where the file ends with their data, else a damaged info is as likely.
      const n = infos.names.length;
      const start = dataStart(infos, declaredEntries);
      if (n >= 1 && size >= start + Number(infos.used) && size <= start + Number(infos.padded)) {
        return `${file}: the header declares ${declaredTensors} tensors, but ${n} tensor info${n === 1 ? '' : 's'} follow${n === 1 ? 's' : ''} its metadata and the file ends with ${n === 1 ? 'its' : 'their'} data: the header's tensor count is wrong; the file is damaged: download or convert it again`;
      }
      // A damaged info keeps its own refusal (its name, type or offset): one starts with a string's
      // length, where a wrong count leaves zero padding, tensor data or the file's end.
      if (!startsAName(h, infos.end)) {
        const there = infos.end >= size ? `the file ends at byte ${size}` : `byte ${infos.end} starts no other`;
        fewer = `${file}: the header declares ${declaredTensors} tensor${declaredTensors === 1 ? '' : 's'}, but ${n === 0 ? 'no tensor info follows' : `only ${n} tensor info${n === 1 ? ' follows' : 's follow'}`} its metadata (${there}): the header's tensor count is wrong, or the file is cut short or damaged: download or convert it again`;
      }
    }
    if (declaredTensors === 0) return fewer;
    // Other counts: as many entries as parse. The runs of tensor infos from their ends are walked
    // once together (FittingRuns), not each anew: a header's bytes can be made so that every
    // entry's end starts a run of thousands of infos, all of them the same after the first two.
    await walkEntries(MAX_METADATA_ENTRIES);
    const fits = [];
    const runs = new Map<number, FittingRuns>();
    const budget = { left: OTHER_COUNTS_BUDGET };
    for (let count = 0; count < starts.length; count++) {
      if (count === declaredEntries) continue;
      const alignment = alignments[count];
      if (!runs.has(alignment)) runs.set(alignment, new FittingRuns(h, alignment, size, pacer, budget));
      const fitting = await runs.get(alignment)!.from(starts[count]);
      if (fitting === undefined) {
        return `${file}: the header declares ${declaredEntries} metadata entr${declaredEntries === 1 ? 'y' : 'ies'} and ${declaredTensors} tensor${declaredTensors === 1 ? '' : 's'}, which do not match what follows them, and no count that does was found in the ${OTHER_COUNTS_BUDGET} tensor infos read looking for one: the file is damaged: download or convert it again`;
      }
      if (fitting >= declaredTensors) fits.push(count);
    }
    if (fits.length !== 1) return fewer;
    const count = fits[0];
    return `${file}: the header declares ${declaredEntries} metadata entr${declaredEntries === 1 ? 'y' : 'ies'}, but ${count} ${count === 1 ? 'is' : 'are'} followed by the ${declaredTensors} tensor info${declaredTensors === 1 ? '' : 's'} it declares (from byte ${starts[count]}): the header's metadata count is wrong; the file is damaged: download or convert it again`;
  });
}
