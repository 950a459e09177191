/**
 * Typed arrays laid one after another in one SharedArrayBuffer, each at a 16-byte boundary, so a
 * job posts views of them (which go by reference) rather than the arrays (which go by copy).
 * Browser-safe (no Node imports).
 */
import { align16 } from './wasm-kernel.js';

/** The arrays a buffer packs. */
export type PackedArray = Int8Array | Int32Array | Float32Array | Float64Array;

/** Bytes of a buffer holding `arrays` packed in turn (at least 1, the least a buffer holds). */
export function packedBytes(arrays: Iterable<PackedArray>): number {
  let bytes = 0;
  for (const a of arrays) bytes = align16(bytes) + a.byteLength;
  return Math.max(bytes, 1);
}

/**
 * A copier into `buffer`: each call copies its array to the next 16-byte boundary after the last
 * and returns the copy, the same kind of array. Called in the order {@link packedBytes} counted.
 */
export function packInto(buffer: SharedArrayBuffer): <T extends PackedArray>(values: T) => T {
  let at = 0;
  return <T extends PackedArray>(values: T): T => {
    at = align16(at);
    const Kind = values.constructor as new (buffer: SharedArrayBuffer, byteOffset: number, length: number) => T;
    const copy = new Kind(buffer, at, values.length);
    copy.set(values as never);
    at += values.byteLength;
    return copy;
  };
}
