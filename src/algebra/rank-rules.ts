/**
 * How many singular values a resized or combined module keeps: a fixed rank, or one of kohya
 * sd-scripts' dynamic rules (networks/resize_lora.py), reproduced exactly, off-by-ones included:
 *   sv_ratio X       keep 1 + #{σᵢ > σ₁ / X}
 *   sv_cumulative X  keep 2 + (first i with Σ_{j≤i} σⱼ / Σσ ≥ X)
 *   sv_fro X         keep 2 + (first i with Σ_{j≤i} σⱼ² / Σσ² ≥ X²)
 * each first clamped to [1, n − 1] before the final +1, n = min(out, in) (kohya's full SVD has n
 * values; the ones past the factors' rank are 0). Then a zero update (σ₁ ≤ 1e-6) keeps 1, and no
 * rule keeps more than `maxRank` (kohya's --new_rank, which a dynamic rule takes as its maximum).
 */

/**
 * A fixed rank, or one of kohya's dynamic rules with its value (the CLI's --sv-ratio, --sv-fro,
 * --sv-cumulative) and, optionally, the most rank it may keep (`maxRank`, the CLI's --rank beside
 * the rule: kohya's --new_rank with a --dynamic_method).
 */
export type RankRule =
  | { kind: 'rank'; rank: number }
  | { kind: 'sv_ratio' | 'sv_fro' | 'sv_cumulative'; value: number; maxRank?: number };

export interface RankChoice {
  rank: number;
  /** ‖kept‖_F / ‖ΔW‖_F: kohya's "fro retained". */
  froKept: number;
  /** Σ kept σ / Σ σ: kohya's "sum(S) retained". */
  sumKept: number;
}

/** kohya's MIN_SV: a module whose largest singular value is at most this is treated as zero. */
export const MIN_SINGULAR_VALUE = 1e-6;

/**
 * @param s singular values found, descending (missing ones are 0)
 * @param n min(out, in): how many singular values the full SVD has
 */
export function chooseRank(s: Float64Array, n: number, rule: RankRule, maxRank: number): RankChoice {
  const at = (i: number): number => (i < s.length ? s[i] : 0);
  const clampIndex = (i: number): number => Math.max(1, Math.min(i, n - 1));
  let rank: number;
  switch (rule.kind) {
    case 'rank':
      rank = rule.rank;
      break;
    case 'sv_ratio': {
      const min = at(0) / rule.value;
      let count = 0;
      for (let i = 0; i < s.length; i++) if (s[i] > min) count++;
      rank = clampIndex(count) + 1;
      break;
    }
    case 'sv_cumulative':
      rank = clampIndex(searchSorted(cumulativeFractions(s, n, 1), rule.value) + 1) + 1;
      break;
    case 'sv_fro':
      rank = clampIndex(searchSorted(cumulativeFractions(s, n, 2), rule.value ** 2) + 1) + 1;
      break;
  }
  if (at(0) <= MIN_SINGULAR_VALUE) rank = 1;
  else if (rank > maxRank) rank = maxRank;
  return { rank, ...kept(s, rank) };
}

export function kept(s: Float64Array, rank: number): { froKept: number; sumKept: number } {
  let sum = 0, sumK = 0, sq = 0, sqK = 0;
  for (let i = 0; i < s.length; i++) {
    sum += Math.abs(s[i]);
    sq += s[i] * s[i];
    if (i < rank) {
      sumK += Math.abs(s[i]);
      sqK += s[i] * s[i];
    }
  }
  return { froKept: sq > 0 ? Math.sqrt(sqK / sq) : 1, sumKept: sum > 0 ? sumK / sum : 1 };
}

/** Running sums of σᵖ over the total, for n values (zeros past s). */
function cumulativeFractions(s: Float64Array, n: number, power: 1 | 2): Float64Array {
  const out = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < s.length; i++) total += s[i] ** power;
  let run = 0;
  for (let i = 0; i < n; i++) {
    run += i < s.length ? s[i] ** power : 0;
    out[i] = total > 0 ? run / total : 1;
  }
  return out;
}

/** torch.searchsorted (left): the first index whose value is ≥ v, or the length. */
function searchSorted(sorted: Float64Array, v: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
