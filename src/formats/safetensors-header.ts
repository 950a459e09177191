/**
 * The JSON header of a safetensors file, read straight from its bytes without building the whole
 * document: JSON.parse on a hostile 100 MB header (a million tensors, or arrays nested millions
 * deep) takes gigabytes before anything can be checked. Here each tensor entry is read as a small
 * object of its three known fields, anything else is skipped without being built, and the limits of
 * limits.ts (tensor count, nesting depth, dimensions, name length, metadata entries) are enforced as
 * the bytes are read, so a refused header costs no more than its own bytes.
 *
 * JSON grammar is followed strictly (RFC 8259); strings are decoded as UTF-8 with JSON.parse's
 * escapes. A key given twice (a tensor, `__metadata__`, a field of an entry) is refused, as the
 * reference implementation does for fields.
 */
import { DTYPE_BYTES } from '../dtype.js';
import { firstInvalidUtf8 } from '../io/strict-utf8.js';
import { MergeError } from '../errors.js';
import { MAX_HEADER_NESTING, MAX_METADATA_ENTRIES, MAX_NAME_BYTES, MAX_TENSOR_DIMS, MAX_TENSORS } from '../limits.js';

export const METADATA_KEY = '__metadata__';

/** One tensor entry as written: only the fields a reader needs, each still to be validated. */
export interface HeaderEntry {
  name: string;
  fields: { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  /** The entry's value when it is not an object (for the error message). */
  notAnObject?: true;
}

export interface ParsedHeader {
  entries: HeaderEntry[];
  /** `__metadata__` as written: undefined when absent, else an object of strings (checked here). */
  metadata?: Record<string, string>;
}

const KNOWN_FIELDS = new Set(['dtype', 'shape', 'data_offsets']);
/**
 * Elements one known field may hold when it is built (shape: MAX_TENSOR_DIMS; offsets: 2). The
 * array itself takes none of them: MAX_TENSOR_DIMS + 1 let a shape of 33 dimensions through.
 */
const FIELD_ELEMENTS = MAX_TENSOR_DIMS;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Strings every tensor entry repeats (its field names and dtype), by byte length: matched against
 * the header's bytes and returned without decoding, which for a checkpoint of 100 000 tensors
 * saves about 400 000 small allocations.
 */
const COMMON_STRINGS = new Map<number, [Uint8Array, string][]>();
for (const text of [...KNOWN_FIELDS, ...Object.keys(DTYPE_BYTES)]) {
  const bytes = new TextEncoder().encode(text);
  const list = COMMON_STRINGS.get(bytes.length) ?? [];
  list.push([bytes, text]);
  COMMON_STRINGS.set(bytes.length, list);
}

export function parseSafetensorsHeader(file: string, bytes: Uint8Array): ParsedHeader {
  return new HeaderReader(file, bytes).header();
}

class HeaderReader {
  private at = 0;
  /** A reused list per nesting depth for the items of the array being read there. */
  private readonly lists: unknown[][] = [];

  constructor(
    private readonly file: string,
    private readonly bytes: Uint8Array,
  ) {}

  header(): ParsedHeader {
    this.space();
    if (this.at >= this.bytes.length) this.syntax('the header is empty');
    if (this.bytes[this.at] !== 0x7b /* { */) {
      this.value(1, { elements: 0 }); // still report bad JSON or UTF-8 first
      this.end();
      throw new MergeError('INVALID_HEADER', `${this.file}: header is not a JSON object`);
    }
    const entries: HeaderEntry[] = [];
    const names = new Set<string>();
    let metadata: Record<string, string> | undefined;
    let sawMetadata = false;
    this.members(1, (name) => {
      if (name === METADATA_KEY) {
        if (sawMetadata) this.invalid(`${METADATA_KEY} appears twice`);
        sawMetadata = true;
        metadata = this.metadata();
        return;
      }
      if (names.has(name)) this.invalid(`tensor "${name}" appears twice`);
      names.add(name);
      if (entries.length >= MAX_TENSORS) {
        throw new MergeError('LIMIT_EXCEEDED', `${this.file}: more than ${MAX_TENSORS} tensors in one file (the limit MAX_TENSORS); not a model this tool merges`);
      }
      entries.push(this.entry(name));
    });
    this.end();
    return { entries, metadata };
  }

  private entry(name: string): HeaderEntry {
    if (this.bytes[this.at] !== 0x7b) {
      this.value(2, { elements: FIELD_ELEMENTS });
      return { name, fields: {}, notAnObject: true };
    }
    const fields: HeaderEntry['fields'] = {};
    this.members(2, (key) => {
      if (!KNOWN_FIELDS.has(key)) return this.skip(3);
      if (Object.hasOwn(fields, key)) this.invalid(`tensor "${name}": field "${key}" appears twice`);
      const budget = { elements: FIELD_ELEMENTS };
      const value = this.value(3, budget, 4);
      if (value === TOO_BIG) {
        if (key === 'shape') {
          throw new MergeError('INVALID_SHAPE', `${this.file}: tensor "${name}": shape has more than ${MAX_TENSOR_DIMS} dimensions or is not a list of numbers (the limit MAX_TENSOR_DIMS)`);
        }
        this.invalid(`tensor "${name}": "${key}" is not a ${key === 'dtype' ? 'dtype name' : '[begin, end] pair'}`);
      }
      fields[key as keyof HeaderEntry['fields']] = value;
    });
    return { name, fields };
  }

  private metadata(): Record<string, string> | undefined {
    if (this.bytes[this.at] !== 0x7b) {
      const value = this.value(2, { elements: 0 });
      if (value === null) return undefined;
      this.invalid(`${METADATA_KEY} is not an object of strings`);
    }
    const out: [string, string][] = [];
    const keys = new Set<string>();
    this.members(2, (key) => {
      if (this.bytes[this.at] !== 0x22 /* " */) {
        this.skip(3);
        this.invalid(`${METADATA_KEY} value "${key}" is not a string`);
      }
      if (keys.has(key)) this.invalid(`${METADATA_KEY} key "${key}" appears twice`);
      keys.add(key);
      if (out.length >= MAX_METADATA_ENTRIES) {
        throw new MergeError('LIMIT_EXCEEDED', `${this.file}: ${METADATA_KEY} has more than ${MAX_METADATA_ENTRIES} entries (the limit MAX_METADATA_ENTRIES)`);
      }
      out.push([key, this.string(Infinity)]);
    });
    // fromEntries defines own properties, so a key like "__proto__" stays data.
    return Object.fromEntries(out);
  }

  /** `{ "key": value, ... }` at this nesting depth; `member` reads each value. */
  private members(depth: number, member: (key: string) => void): void {
    this.expect(0x7b);
    this.space();
    if (this.bytes[this.at] === 0x7d) {
      this.at++;
      return;
    }
    for (;;) {
      this.space();
      if (this.bytes[this.at] !== 0x22) this.syntax('expected a quoted key');
      const key = this.string(MAX_NAME_BYTES, depth === 1 ? 'tensor name' : 'key');
      this.space();
      this.expect(0x3a /* : */);
      this.space();
      member(key);
      this.space();
      const c = this.bytes[this.at++];
      if (c === 0x7d) return;
      if (c !== 0x2c /* , */) this.syntax(`expected "," or "}"`, this.at - 1);
    }
  }

  /**
   * A JSON value built as a small JS value, within `budget` elements and `maxDepth` nesting (returns
   * TOO_BIG past them, having skipped the rest of the value).
   */
  private value(depth: number, budget: { elements: number }, maxDepth = depth): unknown {
    const c = this.bytes[this.at];
    if (c === 0x22) {
      if (this.stringLength() > MAX_NAME_BYTES) {
        this.skip(depth);
        return TOO_BIG;
      }
      return this.string(MAX_NAME_BYTES);
    }
    if (c === 0x5b /* [ */ || c === 0x7b) {
      if (depth >= maxDepth + 1 || budget.elements <= 0) {
        this.skip(depth);
        return TOO_BIG;
      }
      const isArray = c === 0x5b;
      // Items gather in this depth's reused list and are copied out at their exact length: a fresh
      // list per array, grown by push, was most of what reading a large header allocated.
      const out = (this.lists[depth] ??= []);
      out.length = 0;
      const obj: [string, unknown][] | undefined = isArray ? undefined : [];
      this.at++;
      this.space();
      const close = isArray ? 0x5d : 0x7d;
      if (this.bytes[this.at] === close) {
        this.at++;
        return isArray ? [] : {};
      }
      let tooBig = false;
      for (;;) {
        this.space();
        let key = '';
        if (!isArray) {
          if (this.bytes[this.at] !== 0x22) this.syntax('expected a quoted key');
          key = this.string(MAX_NAME_BYTES);
          this.space();
          this.expect(0x3a);
          this.space();
        }
        if (tooBig || --budget.elements < 0) {
          tooBig = true;
          this.skip(depth + 1);
        } else {
          const item = this.value(depth + 1, budget, maxDepth);
          if (item === TOO_BIG) tooBig = true;
          else if (isArray) out.push(item);
          else obj!.push([key, item]);
        }
        this.space();
        const next = this.bytes[this.at++];
        if (next === close) break;
        if (next !== 0x2c) this.syntax(`expected "," or "${isArray ? ']' : '}'}"`, this.at - 1);
      }
      const built = tooBig ? TOO_BIG : isArray ? out.slice() : Object.fromEntries(obj!);
      out.length = 0;
      return built;
    }
    return this.literal();
  }

  /** Skips one value of any size without building it; only its nesting is limited. */
  private skip(depth: number): void {
    const closers: number[] = [];
    for (;;) {
      this.space();
      const c = this.bytes[this.at];
      if (c === 0x5b || c === 0x7b) {
        // The value opened here is at level depth + closers.length (the header's own object is 1).
        if (depth + closers.length > MAX_HEADER_NESTING) {
          throw new MergeError('LIMIT_EXCEEDED', `${this.file}: header nests deeper than ${MAX_HEADER_NESTING} levels (the limit MAX_HEADER_NESTING); not a safetensors header`);
        }
        this.at++;
        closers.push(c === 0x5b ? 0x5d : 0x7d);
        this.space();
        if (this.bytes[this.at] === closers[closers.length - 1]) {
          this.at++;
          closers.pop();
        } else {
          if (c === 0x7b) this.keyColon();
          continue;
        }
      } else if (c === 0x22) {
        this.skipString();
      } else {
        this.literal(false);
      }
      // After a complete value: close containers or move to the next element.
      for (;;) {
        if (closers.length === 0) return;
        this.space();
        const next = this.bytes[this.at++];
        if (next === closers[closers.length - 1]) {
          closers.pop();
          continue;
        }
        if (next !== 0x2c) this.syntax('expected "," or a closing bracket', this.at - 1);
        if (closers[closers.length - 1] === 0x7d) this.keyColon();
        break;
      }
    }
  }

  private keyColon(): void {
    this.space();
    if (this.bytes[this.at] !== 0x22) this.syntax('expected a quoted key');
    this.skipString();
    this.space();
    this.expect(0x3a);
  }

  /** true, false, null or a number (its value only when `evaluate`; skipped ones are not converted). */
  private literal(evaluate = true): unknown {
    const b = this.bytes;
    const start = this.at;
    const word = b[start] === 0x74 ? 'true' : b[start] === 0x66 ? 'false' : b[start] === 0x6e ? 'null' : undefined;
    if (word !== undefined) {
      for (let i = 0; i < word.length; i++) if (b[start + i] !== word.charCodeAt(i)) this.syntax(`unexpected "${this.charAt(start)}"`, start);
      this.at += word.length;
      return word === 'null' ? null : word === 'true';
    }
    // -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
    let i = start;
    if (b[i] === 0x2d) i++;
    const integerStart = i;
    if (b[i] === 0x30) i++;
    else if ((i = this.digitsEnd(i)) === integerStart) {
      this.syntax(start < b.length ? `unexpected "${this.charAt(start)}"` : 'unexpected end', start);
    }
    const integerEnd = i;
    if (b[i] === 0x2e) {
      const from = ++i;
      if ((i = this.digitsEnd(i)) === from) this.syntax('a digit must follow "."', i);
    }
    if (b[i] === 0x65 || b[i] === 0x45) {
      i++;
      if (b[i] === 0x2b || b[i] === 0x2d) i++;
      const from = i;
      if ((i = this.digitsEnd(i)) === from) this.syntax('a digit must follow the exponent', i);
    }
    this.at = i;
    if (!evaluate) return NaN;
    // A plain integer of up to 15 digits (every shape and offset) is summed exactly here: building
    // a string for each was most of what a header of 100 000 tensors allocated.
    if (i === integerEnd && b[start] !== 0x2d && i - start <= 15) {
      let value = 0;
      for (let k = start; k < i; k++) value = value * 10 + (b[k] - 0x30);
      return value;
    }
    // Anything else (a sign, fraction or exponent, or more digits than a double holds exactly) is
    // kept as written, for the reader to refuse by its text; past 40 characters only its start.
    const shown = i - start > 40 ? `${String.fromCharCode(...b.subarray(start, start + 40))}… (${i - start} characters)` : String.fromCharCode(...b.subarray(start, i));
    // No integer a header needs has more than 20 digits; longer literals are never exact integers.
    const value = i - start > 400 ? NaN : Number(String.fromCharCode(...b.subarray(start, i)));
    return new WrittenNumber(shown, i === integerEnd && b[start] !== 0x2d, value);
  }

  /** The index after the run of decimal digits that begins at `i`. */
  private digitsEnd(i: number): number {
    const b = this.bytes;
    while (b[i] >= 0x30 && b[i] <= 0x39) i++;
    return i;
  }

  /** Byte length of the string literal at `at` (quotes excluded), without moving. */
  private stringLength(): number {
    const saved = this.at;
    this.skipString();
    const length = this.at - saved - 2;
    this.at = saved;
    return length;
  }

  /** Moves past the string literal at `at`; its UTF-8 is checked even when it is not decoded. */
  private skipString(): void {
    const b = this.bytes;
    let i = this.at + 1;
    let wide = false;
    for (;;) {
      if (i >= b.length) this.syntax('unterminated string', this.at);
      const c = b[i];
      if (c === 0x22) break;
      if (c === 0x5c) i++;
      else if (c < 0x20) this.syntax('control character in a string', i);
      else if (c >= 0x80) wide = true;
      i++;
    }
    if (wide) {
      try {
        utf8.decode(b.subarray(this.at + 1, i));
      } catch {
        this.notUtf8(this.at + 1, i);
      }
    }
    this.at = i + 1;
  }

  /** The string literal at `at`, decoded; longer than `maxBytes` is refused. */
  private string(maxBytes: number, what = 'string'): string {
    const start = this.at;
    this.skipString();
    const common = this.commonString(start + 1, this.at - 1);
    if (common !== undefined) return common;
    const body = this.bytes.subarray(start + 1, this.at - 1);
    if (body.length > maxBytes) {
      throw new MergeError('LIMIT_EXCEEDED', `${this.file}: a ${what} in the header is ${body.length} bytes, above the limit of ${maxBytes} (MAX_NAME_BYTES)`);
    }
    let text: string;
    try {
      text = utf8.decode(body);
    } catch {
      this.notUtf8(start + 1, this.at - 1);
    }
    if (!body.includes(0x5c)) return text;
    try {
      return JSON.parse(`"${text}"`) as string;
    } catch {
      this.syntax('bad escape in a string', start);
    }
  }

  /** The string of COMMON_STRINGS whose bytes are those of [from, to), if there is one. */
  private commonString(from: number, to: number): string | undefined {
    const b = this.bytes;
    for (const [bytes, text] of COMMON_STRINGS.get(to - from) ?? []) {
      let i = 0;
      while (i < bytes.length && b[from + i] === bytes[i]) i++;
      if (i === bytes.length) return text;
    }
    return undefined;
  }

  private space(): void {
    const b = this.bytes;
    while (b[this.at] === 0x20 || b[this.at] === 0x0a || b[this.at] === 0x0d || b[this.at] === 0x09) this.at++;
  }

  private expect(c: number): void {
    if (this.bytes[this.at] !== c) this.syntax(`expected "${String.fromCharCode(c)}"`);
    this.at++;
  }

  /** Only whitespace may follow the top-level value. */
  private end(): void {
    this.space();
    if (this.at < this.bytes.length) this.syntax('unexpected data after the JSON object');
  }

  private charAt(at: number): string {
    return at < this.bytes.length ? String.fromCharCode(this.bytes[at]) : 'end';
  }

  /** Names the first bad byte in [from, to) by its offset in the file (the header starts at byte 8). */
  private notUtf8(from: number, to: number): never {
    const at = from + firstInvalidUtf8(this.bytes.subarray(from, to));
    const shown = at < this.bytes.length ? `byte 0x${this.bytes[at].toString(16).padStart(2, '0')} at offset ${at + 8}` : 'a sequence cut off at the end';
    throw new MergeError('INVALID_HEADER', `${this.file}: header is not valid UTF-8 (${shown}), which the safetensors format requires`);
  }

  private invalid(what: string): never {
    throw new MergeError('INVALID_HEADER', `${this.file}: ${what}`);
  }

  private syntax(what: string, at = this.at): never {
    if (at < this.bytes.length && this.bytes[at] >= 0x80) {
      try {
        utf8.decode(this.bytes.subarray(at, Math.min(this.bytes.length, at + 4)));
      } catch {
        this.notUtf8(at, Math.min(this.bytes.length, at + 4));
      }
    }
    const found = at >= this.bytes.length ? 'the end' : `byte ${at}`;
    throw new MergeError('INVALID_HEADER', `${this.file}: header is not valid JSON (${what} at ${found})`);
  }
}

const TOO_BIG = Symbol('too big');

/**
 * A JSON number that is not a plain integer of up to 15 digits, as written in the header. The
 * reference reader (serde into usize) takes only unsigned integers that fit 64 bits: `8.0`, `8e0`
 * and `-0` are refused there, so they are here, by the text the file holds.
 */
export class WrittenNumber {
  constructor(
    readonly text: string,
    /** Digits only: an unsigned integer of 16 or more digits. */
    readonly digitsOnly: boolean,
    /** As JSON.parse reads it (NaN past 400 characters). */
    readonly value: number,
  ) {}
}
