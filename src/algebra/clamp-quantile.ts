/**
 * kohya's and PEFT's clamp of SVD-reduced factors (svd_merge_lora's CLAMP_QUANTILE, PEFT's
 * svd_clamp): hi = the q-quantile of every value of up and down together (torch.quantile:
 * linear interpolation between the sorted values at q·(n − 1)), then both clamped to [−hi, hi].
 */
export function clampQuantile(up: Float32Array, down: Float32Array, q: number): number {
  const n = up.length + down.length;
  if (n === 0) return 0;
  const all = new Float64Array(n);
  all.set(up);
  all.set(down, up.length);
  all.sort();
  const pos = q * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  const bound = all[lo] + (pos - lo) * (all[hi] - all[lo]);
  for (const arr of [up, down]) {
    for (let i = 0; i < arr.length; i++) arr[i] = Math.min(Math.max(arr[i], -bound), bound);
  }
  return bound;
}
