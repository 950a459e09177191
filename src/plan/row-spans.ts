/** Rows [from, to) of a tensor a module's update lands on. */
export type RowSpan = [number, number];

/**
 * Whether any span of `x` overlaps any of `y`: both sorted by start, then swept once, so that a
 * module placed on thousands of single rows (one half of an expert's slab, every other row) is
 * checked against the others in time linear in their spans.
 */
export function spansOverlap(x: readonly RowSpan[], y: readonly RowSpan[]): boolean {
  const byStart = (p: RowSpan, q: RowSpan) => p[0] - q[0];
  const a = [...x].sort(byStart), b = [...y].sort(byStart);
  for (let i = 0, j = 0; i < a.length && j < b.length;) {
    if (a[i][0] < b[j][1] && b[j][0] < a[i][1]) return true;
    // The span that ends first overlaps nothing further in the other list.
    if (a[i][1] <= b[j][1]) i++;
    else j++;
  }
  return false;
}
