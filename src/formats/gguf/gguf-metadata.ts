/**
 * GGUF metadata as an ordered list of typed key-value pairs, and its byte encoding (versions 2 and
 * 3 share it; little-endian): key as u64 length + UTF-8, u32 value type, then the value. Arrays are
 * u32 element type + u64 count + elements; arrays of arrays are not part of what llama.cpp reads
 * and are refused when opening.
 */
/**
 * GGUF metadata value types (gguf.h's gguf_type).
 */
export const GGUFValueType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9,
  UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type GGUFValueType = (typeof GGUFValueType)[keyof typeof GGUFValueType];

/** A scalar metadata value: strings, numbers (64-bit integers as bigint) and bools. */
export type MetadataBaseValue = string | number | bigint | boolean;
/** A metadata value: a scalar, or an array of them (arrays of arrays nest). */
export type MetadataValue = MetadataBaseValue | MetadataBaseValue[] | MetadataValue[];

/** One metadata entry of a GGUF header: its key, value type and value. */
export interface GgufKeyValue {
  key: string;
  type: GGUFValueType;
  /** Element type of an array. */
  subType?: GGUFValueType;
  value: MetadataValue;
}

/** Bytes of each fixed-size value type (strings and arrays have their own lengths). */
export const FIXED_BYTES: Readonly<Partial<Record<number, number>>> = {
  [GGUFValueType.UINT8]: 1, [GGUFValueType.INT8]: 1, [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT16]: 2, [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4, [GGUFValueType.INT32]: 4, [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.UINT64]: 8, [GGUFValueType.INT64]: 8, [GGUFValueType.FLOAT64]: 8,
};

const encoder = new TextEncoder();
/** Strings up to this many UTF-16 units are encoded by hand where they are ASCII (ByteWriter.string). */
const SHORT_ASCII_UNITS = 16;

/**
 * Appends little-endian values to one growing buffer (doubled when full). A value is written in
 * place: an array of a million elements was a million small buffers and closures, and a header
 * of 45 such arrays took minutes and gigabytes to read back.
 */
export class ByteWriter {
  private buffer = new Uint8Array(1024);
  private view = new DataView(this.buffer.buffer);
  private length = 0;

  get byteLength(): number {
    return this.length;
  }

  /** Room for `size` more bytes; returns where they go. */
  private room(size: number): number {
    const at = this.length;
    if (at + size > this.buffer.byteLength) {
      const grown = new Uint8Array(Math.max(2 * this.buffer.byteLength, at + size));
      grown.set(this.buffer.subarray(0, at));
      this.buffer = grown;
      this.view = new DataView(grown.buffer);
    }
    this.length = at + size;
    return at;
  }

  bytes(b: Uint8Array): void {
    const at = this.room(b.byteLength);
    this.buffer.set(b, at);
  }

  // room() first: it may replace the buffer and view, which `this.view.set…(this.room(…))` reads before it.
  u32(v: number): void {
    const at = this.room(4);
    this.view.setUint32(at, v, true);
  }

  u64(v: number | bigint): void {
    const at = this.room(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }

  string(s: string): void {
    if (s.length > 1 << 16) {
      const b = encoder.encode(s);
      this.u64(b.byteLength);
      return this.bytes(b);
    }
    // Encoded in place (UTF-8 takes at most 3 bytes a UTF-16 unit), then the length before it: a
    // tokenizer's hundreds of thousands of strings were an array each.
    const at = this.room(8 + 3 * s.length);
    if (s.length <= SHORT_ASCII_UNITS) {
      // Most tokens are a few ASCII characters: copied by hand, as the reader decodes them, where
      // a call of encodeInto each cost more than the copy.
      const b = this.buffer;
      let i = 0;
      for (; i < s.length; i++) {
        const unit = s.charCodeAt(i);
        if (unit > 0x7f) break;
        b[at + 8 + i] = unit;
      }
      if (i === s.length) {
        this.length = at + 8 + i;
        this.view.setUint32(at, i, true);
        this.view.setUint32(at + 4, 0, true);
        return;
      }
    }
    const { written } = encoder.encodeInto(s, this.buffer.subarray(at + 8));
    this.length = at + 8 + written;
    this.view.setUint32(at, written, true);
    this.view.setUint32(at + 4, 0, true);
  }

  value(type: GGUFValueType, v: MetadataValue, subType?: GGUFValueType): void {
    switch (type) {
      case GGUFValueType.STRING:
        return this.string(v as string);
      case GGUFValueType.ARRAY: {
        const items = v as MetadataValue[];
        this.arrayHead(subType, items.length);
        return this.elements(subType!, items, 0, items.length);
      }
    }
    const size = FIXED_BYTES[type];
    if (size === undefined) throw new Error(`unknown GGUF value type ${type}`);
    const at = this.room(size);
    const d = this.view;
    switch (type) {
      case GGUFValueType.UINT8: return d.setUint8(at, v as number);
      case GGUFValueType.INT8: return d.setInt8(at, v as number);
      case GGUFValueType.BOOL: return d.setUint8(at, v ? 1 : 0);
      case GGUFValueType.UINT16: return d.setUint16(at, v as number, true);
      case GGUFValueType.INT16: return d.setInt16(at, v as number, true);
      case GGUFValueType.UINT32: return d.setUint32(at, v as number, true);
      case GGUFValueType.INT32: return d.setInt32(at, v as number, true);
      case GGUFValueType.FLOAT32: return d.setFloat32(at, v as number, true);
      case GGUFValueType.UINT64: return d.setBigUint64(at, BigInt(v as bigint), true);
      case GGUFValueType.INT64: return d.setBigInt64(at, BigInt(v as bigint), true);
      case GGUFValueType.FLOAT64: return d.setFloat64(at, v as number, true);
    }
  }

  /** An array's element type and count; its elements follow (elements()). */
  arrayHead(subType: GGUFValueType | undefined, count: number): void {
    if (subType === undefined || subType === GGUFValueType.ARRAY) throw new Error('GGUF arrays of arrays are not supported');
    this.u32(subType);
    this.u64(count);
  }

  /**
   * Elements [from, to) of an array of `subType`: fixed-size ones in one room() and one loop per
   * type, as a tokenizer's arrays hold millions (the header read-back writes them all).
   */
  elements(subType: GGUFValueType, items: readonly MetadataValue[], from: number, to: number): void {
    const size = FIXED_BYTES[subType];
    if (size === undefined) {
      for (let j = from; j < to; j++) this.value(subType, items[j]);
      return;
    }
    let at = this.room(size * (to - from));
    const d = this.view;
    switch (subType) {
      case GGUFValueType.UINT8: for (let j = from; j < to; j++, at++) d.setUint8(at, items[j] as number); return;
      case GGUFValueType.INT8: for (let j = from; j < to; j++, at++) d.setInt8(at, items[j] as number); return;
      case GGUFValueType.BOOL: for (let j = from; j < to; j++, at++) d.setUint8(at, items[j] ? 1 : 0); return;
      case GGUFValueType.UINT16: for (let j = from; j < to; j++, at += 2) d.setUint16(at, items[j] as number, true); return;
      case GGUFValueType.INT16: for (let j = from; j < to; j++, at += 2) d.setInt16(at, items[j] as number, true); return;
      case GGUFValueType.UINT32: for (let j = from; j < to; j++, at += 4) d.setUint32(at, items[j] as number, true); return;
      case GGUFValueType.INT32: for (let j = from; j < to; j++, at += 4) d.setInt32(at, items[j] as number, true); return;
      case GGUFValueType.FLOAT32: for (let j = from; j < to; j++, at += 4) d.setFloat32(at, items[j] as number, true); return;
      case GGUFValueType.UINT64: for (let j = from; j < to; j++, at += 8) d.setBigUint64(at, BigInt(items[j] as bigint), true); return;
      case GGUFValueType.INT64: for (let j = from; j < to; j++, at += 8) d.setBigInt64(at, BigInt(items[j] as bigint), true); return;
      case GGUFValueType.FLOAT64: for (let j = from; j < to; j++, at += 8) d.setFloat64(at, items[j] as number, true); return;
    }
  }

  keyValue(kv: GgufKeyValue): void {
    this.string(kv.key);
    this.u32(kv.type);
    this.value(kv.type, kv.value, kv.subType);
  }

  /** Everything written so far, as one array; the writer starts empty again. */
  take(): Uint8Array {
    const out = this.buffer.slice(0, this.length);
    this.buffer = new Uint8Array(1024);
    this.view = new DataView(this.buffer.buffer);
    this.length = 0;
    return out;
  }
}

/** The value of `key` in a metadata list, or undefined. */
export function metadataValue(metadata: readonly GgufKeyValue[], key: string): MetadataValue | undefined {
  return metadata.find((kv) => kv.key === key)?.value;
}
