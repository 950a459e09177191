/**
 * Scale tensors read whole (a scaled fp8 weight's grid, an fp8 expert stack's, an int weight's
 * table) hold finite scales that are not negative; a refusal says how many do not, and where.
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
