/**
 * Which rows of a tensor an update changes, where its modules change only some: each term a
 * low-rank or dense ΔW placed on rows of the tensor (a slice of a fused qkv, one expert's slab
 * seen as rows). The other rows are left as the tools that merge these modules leave them; the
 * engine adds zero there, which keeps every value but not the sign of a −0 (keepUnreachedRows
 * puts their bytes back).
 */
import { allTransposedBlockSegments } from '../formats/layouts/index.js';
import type { TensorUpdate } from './merge-plan.js';

const known = new WeakMap<TensorUpdate, Uint8Array | undefined>();

/**
 * One flag per row of the update's view (1: some term lands there), or undefined where any term
 * may change every row. Worked out once per update (its slabs each ask).
 */
export function reachedRows(update: TensorUpdate): Uint8Array | undefined {
  if (!known.has(update)) known.set(update, flags(update));
  return known.get(update);
}

function flags(update: TensorUpdate): Uint8Array | undefined {
  if (update.widenedFrom !== undefined || update.source || update.layout !== 'out-in') return undefined;
  const reached = new Uint8Array(update.rows);
  for (const t of update.terms) {
    const kind = t.module.update.kind;
    if ((kind !== 'low-rank' && kind !== 'dense') || t.dora || t.experts || t.columns) return undefined;
    const blocks = t.transposedBlocks;
    const segments = blocks?.within
      ? allTransposedBlockSegments(blocks, t.module.deltaShape[1])
      : blocks ? undefined : t.placement?.segments;
    if (!segments) return undefined;
    for (const g of segments) reached.fill(1, Math.max(0, g.dst), Math.min(update.rows, g.dst + g.count));
  }
  return reached;
}
