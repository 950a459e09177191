/**
 * torch's relu: max(x, 0), NaN kept as NaN. A comparison alone (`x > 0 ? x : 0`) makes NaN 0, so a
 * NaN in an adapter's tensor vanished from the update instead of reaching the merged weight, where
 * the merge refuses it (PEFT's merge, computing with torch, writes the NaN).
 */
export const torchRelu = (x: number): number => (x > 0 || Number.isNaN(x) ? x : 0);
