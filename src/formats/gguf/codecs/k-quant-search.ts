/**
 * The iterative scale searches of ggml's k-quant reference quantizers (ggml-quants.c), step for
 * step in C float arithmetic (see c-float.ts): `make_qkx2_quants` fits a scale and a minimum to a
 * sub-block (Q2_K, Q4_K, Q5_K), `make_qx_quants` a symmetric scale (Q6_K), `make_q3_quants` a
 * symmetric scale refined value by value (Q3_K); with importance weights (quantize_row_*_impl)
 * `make_qkx3_quants` (makeQkx2Quants: the same steps once the weights are given) and
 * `make_qp_quants`, which fits the 6-bit sub-block scales and mins of Q4_K/Q5_K.
 */
import * as cFloat from './c-float.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmax, cmin, f32, GROUP_MAX_EPS, largestMagnitude, nearestInt } = cFloat;

/** The minimum found by makeQkx2Quants, returned as −min (≥ 0), as C writes it to *the_min. */
export interface ScaleAndMin {
  scale: number;
  theMin: number;
}

/**
 * make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad) on
 * x[x0 … x0+n), writing levels 0…nmax to L[l0 …].
 */
export function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, x0: number, weights: Float32Array,
  L: Uint8Array, l0: number, Laux: Uint8Array, rmin: number, rdelta: number, nstep: number, useMad: boolean,
): ScaleAndMin {
  let min = x[x0];
  let max = x[x0];
  let sumW = weights[0];
  let sumX = f32(sumW * x[x0]);
  for (let i = 1; i < n; i++) {
    const xi = x[x0 + i];
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i];
    sumW = f32(sumW + w);
    sumX = f32(sumX + f32(w * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[l0 + i] = 0;
    return { scale: 0, theMin: -min };
  }
  let iscale = f32(nmax / f32(max - min));
  let scale = f32(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = nearestInt(f32(iscale * f32(x[x0 + i] - min)));
    const q = cmax(0, cmin(nmax, l));
    L[l0 + i] = q;
    let diff = f32(f32(f32(scale * q) + min) - x[x0 + i]);
    diff = useMad ? Math.abs(diff) : f32(diff * diff);
    bestError = f32(bestError + f32(weights[i] * diff));
  }
  if (nstep < 1) return { scale, theMin: -min };
  for (let is = 0; is <= nstep; is++) {
    // min moves when a step improves the fit, and later steps use the new one, as in C.
    iscale = f32(f32(f32(rmin + f32(rdelta * is)) + nmax) / f32(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[x0 + i];
      const l = cmax(0, cmin(nmax, nearestInt(f32(iscale * f32(xi - min)))));
      Laux[i] = l;
      const wl = f32(weights[i] * l);
      sumL = f32(sumL + wl);
      sumL2 = f32(sumL2 + f32(wl * l));
      sumXL = f32(sumXL + f32(wl * xi));
    }
    const D = f32(f32(sumW * sumL2) - f32(sumL * sumL));
    if (D > 0) {
      let thisScale = f32(f32(f32(sumW * sumXL) - f32(sumX * sumL)) / D);
      let thisMin = f32(f32(f32(sumL2 * sumX) - f32(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f32(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = f32(f32(f32(thisScale * Laux[i]) + thisMin) - x[x0 + i]);
        diff = useMad ? Math.abs(diff) : f32(diff * diff);
        curError = f32(curError + f32(weights[i] * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[l0 + i] = Laux[i];
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return { scale, theMin: -min };
}

/** What levelSums leaves: Σ w·x·l and Σ w·l² with w = x² (a module's scratch, not allocated per call). */
const sums = { lx: 0, l2: 0 };

/**
 * Levels l = clamp(nearest(iscale·x), −nmax, nmax − 1) of x[x0 … x0+n) and their x²-weighted sums
 * into `sums`, in C float arithmetic in index order (make_qx_quants and make_q3_quants alike);
 * written to L[l0 …] as l + offset unless L is null.
 */
function levelSums(
  n: number, nmax: number, x: Float32Array, x0: number, iscale: number, L: Uint8Array | Int8Array | null, l0: number, offset: number,
  qw: Float32Array | null = null,
): void {
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[x0 + i];
    const l = cmax(-nmax, cmin(nmax - 1, nearestInt(f32(iscale * xi))));
    if (L) L[l0 + i] = l + offset;
    const w = qw ? qw[i] : f32(xi * xi);
    sumlx = f32(sumlx + f32(f32(w * xi) * l));
    suml2 = f32(suml2 + f32(f32(w * l) * l));
  }
  sums.lx = sumlx;
  sums.l2 = suml2;
}

/**
 * make_qx_quants(n, nmax, x, L, rmse_type = 1, qw) on x[x0 … x0+n): levels −nmax…nmax−1 stored as
 * 0…2·nmax−1 in L[l0 …], weights qw[0 … n) (x² where qw is null, as C's NULL), and a search over
 * 18 nearby scales.
 */
export function makeQxQuantsRmse1(n: number, nmax: number, x: Float32Array, x0: number, L: Uint8Array, l0: number, qw: Float32Array | null = null): number {
  const max = largestMagnitude(x, x0, n);
  if (Math.abs(max) < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[l0 + i] = 0;
    return 0;
  }
  levelSums(n, nmax, x, x0, f32(-nmax / max), L, l0, nmax, qw);
  // C's `suml2 ? sumlx/suml2 : 0.0f` takes a NaN sum (weights near FLT_MAX: Inf·0) as true, so the
  // scale is NaN there, not 0: ggml writes a NaN scale, which llama-quantize's check then refuses.
  let scale = sums.l2 !== 0 ? f32(sums.lx / sums.l2) : 0;
  let best = f32(scale * sums.lx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = f32(-f32(nmax + f32(f32(0.1) * is)) / max);
    levelSums(n, nmax, x, x0, iscale, null, 0, 0, qw);
    if (sums.l2 > 0 && f32(sums.lx * sums.lx) > f32(best * sums.l2)) {
      levelSums(n, nmax, x, x0, iscale, L, l0, nmax, qw);
      scale = f32(sums.lx / sums.l2);
      best = f32(scale * sums.lx);
    }
  }
  return scale;
}

/**
 * make_q3_quants(n, nmax, x, L, do_rmse = true) on x[x0 … x0+n): levels −nmax…nmax−1 with weights
 * x², refined value by value for up to five passes, stored as 0…2·nmax−1 in L[l0 …] (all 0 for a
 * block below GROUP_MAX_EPS, as C leaves them).
 */
export function makeQ3Quants(n: number, nmax: number, x: Float32Array, x0: number, L: Int8Array, l0: number): number {
  const max = largestMagnitude(x, x0, n);
  if (Math.abs(max) < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[l0 + i] = 0;
    return 0;
  }
  levelSums(n, nmax, x, x0, f32(-nmax / max), L, l0, 0);
  let sumlx = sums.lx;
  let suml2 = sums.l2;
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[x0 + i];
      const li = L[l0 + i];
      const w = f32(xi * xi);
      let slx = f32(sumlx - f32(f32(w * xi) * li));
      if (slx > 0) {
        let sl2 = f32(suml2 - f32(f32(w * li) * li));
        const newL = cmax(-nmax, cmin(nmax - 1, nearestInt(f32(f32(xi * sl2) / slx))));
        if (newL !== li) {
          slx = f32(slx + f32(f32(w * xi) * newL));
          sl2 = f32(sl2 + f32(f32(w * newL) * newL));
          if (sl2 > 0 && f32(f32(slx * slx) * suml2) > f32(f32(sumlx * sumlx) * sl2)) {
            L[l0 + i] = newL;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (let i = 0; i < n; i++) L[l0 + i] += nmax;
  return suml2 > 0 ? f32(sumlx / suml2) : 0;
}

/**
 * make_qp_quants(n, nmax, x, L, quant_weights) as ggml d99724f (August 2026) has it, the one copy
 * for the k-quants (a super-block's scales or mins: Q2_K, Q4_K, Q5_K) and the IQ2 search (IQ2_XXS's
 * first scale): levels 0…nmax of the non-negative x[0 … n) against one scale, weighted by qw: the
 * best of 9 trial scales around nmax/max, then up to 5 passes moving single levels while the
 * weighted fit improves. L is C's uint8_t: a negative level wraps as it does there (IQ2_XXS hands
 * it one negated value per odd sign count). Returns the scale Σw·x·l / Σw·l², or 0 where the
 * largest x is below GROUP_MAX_EPS or Σw·l² is not positive (weights all 0): the guards ggml
 * b466b4d (llama.cpp #15379, August 2025) added, where before it tested max == 0 and divided
 * 0 by 0 into a NaN scale.
 */
export function makeQpQuants(n: number, nmax: number, x: ArrayLike<number>, L: Uint8Array, qw: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < n; i++) max = cmax(max, x[i]);
  if (max < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[i] = 0;
    return 0;
  }
  let iscale = f32(nmax / max);
  for (let i = 0; i < n; i++) L[i] = nearestInt(f32(iscale * x[i])) & 0xff;
  const scale = f32(1 / iscale);
  let bestMse = 0;
  for (let i = 0; i < n; i++) {
    const diff = f32(x[i] - f32(scale * L[i]));
    bestMse = f32(bestMse + f32(f32(qw[i] * diff) * diff));
  }
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const iscaleIs = f32(f32(f32(f32(0.1) * is) + nmax) / max);
    const scaleIs = f32(1 / iscaleIs);
    let mse = 0;
    for (let i = 0; i < n; i++) {
      const l = cmin(nmax, nearestInt(f32(iscaleIs * x[i])));
      const diff = f32(x[i] - f32(scaleIs * l));
      mse = f32(mse + f32(f32(qw[i] * diff) * diff));
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const l = cmin(nmax, nearestInt(f32(iscale * x[i])));
    L[i] = l & 0xff;
    sumlx = f32(sumlx + f32(f32(qw[i] * x[i]) * l));
    suml2 = f32(suml2 + f32(f32(qw[i] * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const w = qw[i];
      let slx = f32(sumlx - f32(f32(w * x[i]) * L[i]));
      let sl2 = f32(suml2 - f32(f32(w * L[i]) * L[i]));
      if (slx > 0 && sl2 > 0) {
        const newL = cmin(nmax, nearestInt(f32(f32(x[i] * sl2) / slx)));
        if (newL !== L[i]) {
          slx = f32(slx + f32(f32(w * x[i]) * newL));
          sl2 = f32(sl2 + f32(f32(w * newL) * newL));
          if (f32(f32(slx * slx) * suml2) > f32(f32(sumlx * sumlx) * sl2)) {
            L[i] = newL & 0xff;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0 ? f32(sumlx / suml2) : 0;
}
