/**
 * Strict safetensors reader. Only the header is read up front; tensor bytes are read on demand.
 *
 * Rules follow the reference (Rust) implementation, each failure its own MergeError code, and every
 * message names the file (and the tensor where there is one):
 *   - HEADER_TOO_SMALL  the file is empty or shorter than the 8-byte length prefix
 *   - HEADER_TOO_LARGE  the header length is above 100 MB
 *   - TRUNCATED         the header, or the tensor data it describes, runs past the end of the file
 *   - INVALID_HEADER    not UTF-8, not JSON, not an object, malformed entry or `__metadata__`, a key twice
 *   - LIMIT_EXCEEDED    more tensors, deeper nesting or longer names than limits.ts allows
 *   - INVALID_DTYPE     a dtype safetensors does not define
 *   - INVALID_SHAPE     a dimension that is not a non-negative integer
 *   - INVALID_OFFSET    offsets that are not integers, end before begin, or leave a gap
 *   - SIZE_MISMATCH     the shape's byte size differs from the offsets' span
 *   - OVERLAP           two tensors share bytes
 *   - TRAILING_BYTES    bytes after the last tensor (refused, as the reference implementation does)
 * A file whose first bytes show it to be something else (a web page, a pickle: foreign-file.ts) is
 * UNSUPPORTED_FORMAT, or PICKLE_REFUSED for a pickle, whatever its bytes read as a header would say.
 */
import { DTYPE_BYTES, isDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import type { ByteSource } from '../io/types.js';
import { parseSafetensorsHeader, WrittenNumber, type ParsedHeader } from './safetensors-header.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';
import { FOREIGN_SNIFF_BYTES, foreignFileRefusal } from './foreign-file.js';

/** Headers above this are refused before reading them (the reference implementation's cap). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Parses the header of `source` and returns a file whose tensors are read on demand. */
export async function openSafetensors(source: ByteSource): Promise<SafetensorsFile> {
  const file = source.name;
  if (source.size === 0) throw new MergeError('HEADER_TOO_SMALL', `${file}: file is empty, not a safetensors file`);
  if (source.size < 8) {
    throw new MergeError('HEADER_TOO_SMALL', `${file}: only ${source.size} bytes, too short for a safetensors header`);
  }
  const prefix = await source.read(0, 8);
  const headerLength = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    const foreign = await sniffForeign(source);
    if (foreign) throw foreign;
    // Without the header's "{" the length is no length but other bytes (random or encrypted data,
    // a format the sniffer does not know), and its digits mean nothing.
    const json = await jsonHeaderFollows(source);
    throw new MergeError(
      'HEADER_TOO_LARGE',
      json ? `${file}: header length ${headerLength} bytes is above the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`
          : `${file}: not a safetensors file (it does not start with a header length and a JSON header): another kind of file, or a damaged one; check that this is the file you meant, or download it again`,
    );
  }
  const dataStart = 8 + Number(headerLength);
  if (dataStart > source.size) {
    // A header cut short still starts its JSON; anything else there is another kind of file.
    const foreign = source.size > 8 && !(await jsonHeaderFollows(source)) ? await sniffForeign(source) : undefined;
    if (foreign) throw foreign;
    throw new MergeError(
      'TRUNCATED',
      `${file}: header claims ${headerLength} bytes but the file has only ${source.size - 8} after the length prefix (truncated download?): download the file again`,
    );
  }
  // The parsed header is not kept in a variable: this async function's locals live until it
  // returns, and the header's objects would double the memory of a file of many tensors.
  const { entries, metadata } = parseEntries(file, parseSafetensorsHeader(file, await source.read(8, Number(headerLength))));
  checkLayout(file, entries, dataStart, source.size);
  return new ParsedSafetensors(source, entries, metadata, dataStart);
}

/** Whether a JSON header's "{" follows the 8-byte length prefix, as in every safetensors file. */
async function jsonHeaderFollows(source: ByteSource): Promise<boolean> {
  return source.size > 8 && (await source.read(8, 1))[0] === 0x7b;
}

/** The refusal of what the file is instead of safetensors, from its first bytes (see foreignFileRefusal). */
async function sniffForeign(source: ByteSource): Promise<MergeError | undefined> {
  return foreignFileRefusal(source.name, await source.read(0, Math.min(source.size, FOREIGN_SNIFF_BYTES)), 'safetensors');
}

/** An entry before the layout check: offsets relative to the data section. */
interface RawEntry {
  name: string;
  dtype: TensorEntry['dtype'];
  shape: number[];
  begin: number;
  end: number;
}

function parseEntries(file: string, header: ParsedHeader): { entries: RawEntry[]; metadata: Record<string, string> } {
  const entries = header.entries.map((e) => parseEntry(file, e.name, e.notAnObject ? null : e.fields));
  for (const entry of entries) checkSize(file, entry);
  return { entries, metadata: header.metadata ?? {} };
}

/**
 * Dtypes safetensors 0.6 added that no reader here takes: packed FP6 (whose elements straddle
 * bytes) and complex numbers. Named as such, so that a user learns the file is sound but not
 * readable here, where an unknown name means damage. (F8_E8M0 scales and packed F4 are read.)
 */
const UNREAD_SAFETENSORS_DTYPES: Readonly<Record<string, string>> = {
  F6_E2M3: 'packed 6-bit floats (FP6 E2M3)',
  F6_E3M2: 'packed 6-bit floats (FP6 E3M2)',
  C64: 'complex numbers',
};

const READ_DTYPES = 'F64, F32, F16, BF16, F8_E4M3, F8_E5M2, F8_E8M0, F4 or integer';

function unreadDtype(dtype: string): string {
  const known = Object.prototype.hasOwnProperty.call(UNREAD_SAFETENSORS_DTYPES, dtype) ? UNREAD_SAFETENSORS_DTYPES[dtype] : undefined;
  return known
    ? `dtype "${dtype}" (${known}) is a safetensors dtype loramerge does not read; use a copy of the file saved in ${READ_DTYPES} tensors`
    : `unknown dtype "${dtype}", which is no safetensors dtype: the file is damaged or not safetensors; download it again`;
}

function parseEntry(file: string, name: string, value: unknown): RawEntry {
  const where = `${file}: tensor "${name}"`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MergeError('INVALID_HEADER', `${where}: entry is not an object`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string') throw new MergeError('INVALID_HEADER', `${where}: "dtype" is missing or not a string`);
  if (!Array.isArray(shape)) throw new MergeError('INVALID_HEADER', `${where}: "shape" is missing or not an array`);
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw new MergeError('INVALID_HEADER', `${where}: "data_offsets" is missing or not a [begin, end] pair`);
  }
  if (!isDType(dtype)) throw new MergeError('INVALID_DTYPE', `${where}: ${unreadDtype(dtype)}`);
  const dims = shape.map((dim) => headerInteger(where, 'shape', 'INVALID_SHAPE', dim));
  const [begin, end] = offsets.map((offset) => headerInteger(where, 'data_offsets', 'INVALID_OFFSET', offset));
  if (end < begin) throw new MergeError('INVALID_OFFSET', `${where}: data_offsets [${begin}, ${end}] end before they begin`);
  return { name, dtype, shape: dims, begin, end };
}

/**
 * One shape dimension or offset: an unsigned JSON integer, as the reference reader's usize takes
 * it, below 2^53 (a double's exact range). Quoted as the file writes it, not as a double rounds it.
 */
function headerInteger(where: string, field: string, code: 'INVALID_SHAPE' | 'INVALID_OFFSET', v: unknown): number {
  if (typeof v === 'number') return v; // the reader gives plain integers of up to 15 digits as numbers
  if (v instanceof WrittenNumber) {
    if (v.digitsOnly) {
      const value = BigInt(v.text.replace(/….*/, ''));
      if (value <= BigInt(Number.MAX_SAFE_INTEGER) && !v.text.includes('…')) return Number(value);
      throw new MergeError(code, `${where}: "${field}" holds ${v.text}, larger than 2^53, past what this reader (and any tensor) can use`);
    }
    throw new MergeError(code, `${where}: "${field}" holds ${v.text}, not an unsigned integer (the safetensors reference reader refuses a sign, fraction or exponent: write it as digits)`);
  }
  throw new MergeError(code, `${where}: "${field}" holds ${JSON.stringify(v) ?? String(v)}, not an unsigned integer`);
}

/**
 * Shape × dtype width must equal the span. Multiplied as doubles: a product whose exact value is
 * below 2^53 comes out exact, and one past it comes out at least 2^53, above any span; BigInt only
 * to name the exact size in the error.
 */
function checkSize(file: string, entry: RawEntry): void {
  // Packed F4: two elements a byte, so an odd count ends inside a byte, which safetensors' reader refuses too.
  if (entry.dtype === 'F4' && entry.shape.reduce((n, dim) => n * BigInt(dim), 1n) % 2n === 1n) {
    throw new MergeError('SIZE_MISMATCH', `${file}: tensor "${entry.name}" is F4 ${JSON.stringify(entry.shape)}, an odd number of 4-bit elements, which fills no whole byte (F4 packs two elements a byte)`);
  }
  let expected = DTYPE_BYTES[entry.dtype];
  for (const dim of entry.shape) expected *= dim;
  const actual = entry.end - entry.begin;
  if (expected !== actual) {
    const bits = BigInt(DTYPE_BYTES[entry.dtype] * 8);
    const exact = entry.shape.reduce((n, dim) => n * BigInt(dim), bits) / 8n;
    throw new MergeError(
      'SIZE_MISMATCH',
      `${file}: tensor "${entry.name}" is ${entry.dtype} ${JSON.stringify(entry.shape)} (${exact} bytes) but its data_offsets span ${actual} bytes`,
    );
  }
}

/** Sorted by offset, the tensors must tile the data section exactly, from 0 to the end of the file. */
function checkLayout(file: string, entries: RawEntry[], dataStart: number, fileSize: number): void {
  entries.sort((x, y) => x.begin - y.begin || x.end - y.end);
  let expectedBegin = 0;
  let previous: RawEntry | undefined;
  for (const entry of entries) {
    if (entry.begin < expectedBegin) {
      throw new MergeError(
        'OVERLAP',
        `${file}: tensor "${entry.name}" (bytes ${entry.begin}–${entry.end}) overlaps tensor "${previous?.name}" (bytes ${previous?.begin}–${previous?.end})`,
      );
    }
    if (entry.begin > expectedBegin) {
      throw new MergeError(
        'INVALID_OFFSET',
        `${file}: tensor "${entry.name}" starts at byte ${entry.begin} of the data, leaving a gap after byte ${expectedBegin}`,
      );
    }
    expectedBegin = entry.end;
    previous = entry;
  }
  const dataSize = fileSize - dataStart;
  if (expectedBegin > dataSize) {
    throw new MergeError(
      'TRUNCATED',
      `${file}: tensor "${previous?.name}" ends at byte ${expectedBegin} of the data but the file holds only ${dataSize} data bytes (truncated download?): download the file again`,
    );
  }
  if (expectedBegin < dataSize) {
    throw new MergeError(
      'TRAILING_BYTES',
      `${file}: ${dataSize - expectedBegin} unexpected bytes after the last tensor`,
    );
  }
}

class ParsedSafetensors implements SafetensorsFile {
  readonly tensors: readonly TensorEntry[];
  private readonly byName: Map<string, TensorEntry>;

  constructor(
    readonly source: ByteSource,
    raw: RawEntry[],
    readonly metadata: Readonly<Record<string, string>>,
    dataStart: number,
  ) {
    this.tensors = raw.map((e) => ({
      name: e.name,
      dtype: e.dtype,
      shape: e.shape,
      offset: dataStart + e.begin,
      byteLength: e.end - e.begin,
    }));
    this.byName = new Map(this.tensors.map((t) => [t.name, t]));
  }

  get(name: string): TensorEntry | undefined {
    return this.byName.get(name);
  }

  read(entry: TensorEntry): Promise<Uint8Array> {
    return this.readPart(entry, 0, entry.byteLength);
  }

  async readPart(entry: TensorEntry, start: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > entry.byteLength) {
      throw new RangeError(`bytes ${start}+${length} are outside tensor "${entry.name}" (${entry.byteLength} bytes)`);
    }
    if (length === 0) return new Uint8Array(0);
    return this.source.read(entry.offset + start, length, into);
  }
}
