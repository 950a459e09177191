/** The bounds check every ByteSource applies before reading: exact ranges or TRUNCATED. */
import { MergeError } from '../errors.js';

export function checkReadRange(name: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RangeError(`${name}: invalid read of ${length} bytes at ${offset}`);
  }
  if (offset + length > size) {
    throw new MergeError(
      'TRUNCATED',
      `${name}: needed bytes ${offset}–${offset + length} but the file has only ${size} (truncated?)`,
    );
  }
}
