/**
 * Scale tensors read whole (a scaled fp8 weight's grid, an fp8 expert stack's, an int weight's
 * table) hold finite scales that are not negative; a refusal says how many do not, and where.
 * Scales read a row slab at a time (NVFP4, MLX, compressed-tensors, gpt-oss MXFP4) are read again
 * whole where a slab meets a bad one, so that the refusal counts the tensor's, not the slab's, and
 * names its first and last row whichever slab met it.
 */
import { MergeError } from '../errors.js';

/**
 * The refusal of a whole scale tensor (`values`, all its elements) holding scales that are NaN, Inf
 * or negative, or undefined where it holds none: one is named by its value and element; several by
 * how many, with the first and the last and their elements (the values NaN/Inf refusals give by
 * count and position elsewhere).
 */
export function badScales(baseName: string, key: string, values: ArrayLike<number>): MergeError | undefined {
  let count = 0, first = -1, last = -1;
  for (let i = 0; i < values.length; i++) {
    const s = values[i];
    if (Number.isFinite(s) && s >= 0) continue;
    if (count++ === 0) first = i;
    last = i;
  }
  if (count === 0) return undefined;
  const held = count === 1
    ? `the scale ${values[first]} (element ${first})`
    : `${count} scales that are NaN, Inf or negative (first ${values[first]} in element ${first}, last ${values[last]} in element ${last})`;
  return new MergeError('UNSUPPORTED_FORMAT', `${baseName}: tensor "${key}" holds ${held}; scales must be finite and not negative`);
}

/** Bad scales counted over a whole scale tensor: how many, and the first and last row (or place) holding one (−1 where none). */
export interface BadSpan {
  count: number;
  first: number;
  last: number;
}

/** An empty span, to count into with {@link countBad}. */
export function noBad(): BadSpan {
  return { count: 0, first: -1, last: -1 };
}

/** Counts one bad scale at `at` (met in increasing order) into `span`. */
export function countBad(span: BadSpan, at: number): void {
  if (span.count++ === 0) span.first = at;
  span.last = at;
}

/**
 * "row F" for one place, "first in row F, last in row L" for several, as the NaN/Inf refusals of
 * values name them; `place` words a row (default "row N").
 */
export function spanWhere(span: BadSpan, place: (at: number) => string = (r) => `row ${r}`): string {
  return span.first === span.last ? place(span.first) : `first in ${place(span.first)}, last in ${place(span.last)}`;
}

/**
 * The refusal of a scale tensor holding `span.count` bad scales over its whole (read again on the
 * error path, so that every slab that meets one names the same count and rows): "holds N NaN
 * scales (first in row F, last in row L); `why`". `what` words one and several; `detail`, where
 * given, goes before the rows ("e8m0 255; first in row …").
 */
export function badScaleRows(
  baseName: string, key: string, span: BadSpan, what: readonly [one: string, several: string], why: string,
  place?: (at: number) => string, detail?: string,
): MergeError {
  const where = spanWhere(span, place);
  return new MergeError('UNSUPPORTED_FORMAT', `${baseName}: tensor "${key}" holds ${span.count} ${span.count === 1 ? what[0] : what[1]} (${detail ? `${detail}; ` : ''}${where}); ${why}`);
}

/** What a broken block-scale refusal tells to do. */
export const BROKEN_BASE = 'the base file is broken: use an intact copy of the base';

/**
 * A stored tensor of `rows` rows of `rowBytes` bytes read again whole on the error path, in pieces
 * of whole rows of about 4 MiB (never the tensor at once): `visit` gets each piece and its first row.
 */
export async function eachRowPiece(
  read: (start: number, length: number) => Promise<Uint8Array>, rows: number, rowBytes: number,
  visit: (bytes: Uint8Array, r0: number, n: number) => void,
): Promise<void> {
  const step = Math.max(1, Math.floor((4 << 20) / Math.max(1, rowBytes)));
  for (let r0 = 0; r0 < rows; r0 += step) {
    const n = Math.min(step, rows - r0);
    visit(await read(r0 * rowBytes, n * rowBytes), r0, n);
  }
}
