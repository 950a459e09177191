/** Which dtype most of a merge's work is in, so `auto` times the backends on what they will run. */
import type { FloatDType } from '../dtype.js';
import type { PreparedMerge } from './prepare-merge.js';

/** The float dtype of most updated elements, or undefined when nothing is updated. */
export function dominantUpdateDtype(prepared: PreparedMerge): FloatDType | undefined {
  const elements = new Map<FloatDType, number>();
  for (const u of prepared.plan.updates) elements.set(u.dtype, (elements.get(u.dtype) ?? 0) + u.rows * u.cols);
  return [...elements].sort((a, b) => b[1] - a[1])[0]?.[0];
}
