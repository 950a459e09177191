/**
 * A plain transcription of ggml-quants.c's quantizers with importance weights (what
 * `llama-quantize --imatrix` runs) for the types whose weighted path has its own searches:
 * make_qp_quants, quantize_row_q4_1_impl / q5_1_impl, quantize_row_q2_K_impl, q3_K_impl,
 * q4_K_impl and q5_K_impl, one row at a time, written for the tests independently of src/ on the
 * primitives of ggml-reference.ts (every C float operation rounded through a Float32Array store,
 * make_qkx3_quants being make_qkx2_quants' steps once weights are given).
 */
import { F, half, makeQkx2, makeQx, nearestInt, packQ2K, packQ3K, packScaleMinK, putHalf } from './ggml-reference.js';

/** C's uint8_t store of an int. */
const u8 = (v: number) => v & 0xff;

/** weight = qw·sqrtf(σ² + x²), per value. */
function weighted(x: number[], qw: ArrayLike<number>, at: number, sigma2: number): number[] {
  return x.map((v, i) => F(F(qw[at + i]) * F(Math.sqrt(F(sigma2 + F(v * v))))));
}

function sumSq(x: ArrayLike<number>, from: number, n: number): number {
  let s = 0;
  for (let i = from; i < from + n; i++) s = F(s + F(F(x[i]) * F(x[i])));
  return s;
}

const fsum = (w: number[]) => w.reduce((a, b) => F(a + b), 0);

/** make_qp_quants(n, nmax, x, L, quant_weights) of ggml d99724f, L as C's uint8_t. */
export function makeQp(x: number[], nmax: number, w: number[]): { L: number[]; scale: number } {
  let max = 0;
  for (const v of x) max = max > v ? max : v;
  if (max < F(1e-15)) return { L: x.map(() => 0), scale: 0 };
  let iscale = F(nmax / max);
  let L = x.map((v) => u8(nearestInt(F(iscale * v))));
  const scale = F(1 / iscale);
  let bestMse = 0;
  x.forEach((v, i) => {
    const diff = F(v - F(scale * L[i]));
    bestMse = F(bestMse + F(F(w[i] * diff) * diff));
  });
  for (let is = -4; is <= 4; ++is) {
    if (is === 0) continue;
    const iscaleIs = F(F(F(F(0.1) * is) + nmax) / max);
    const scaleIs = F(1 / iscaleIs);
    let mse = 0;
    x.forEach((v, i) => {
      const l = Math.min(nmax, nearestInt(F(iscaleIs * v)));
      const diff = F(v - F(scaleIs * l));
      mse = F(mse + F(F(w[i] * diff) * diff));
    });
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx = 0;
  let suml2 = 0;
  L = x.map((v, i) => {
    const l = Math.min(nmax, nearestInt(F(iscale * v)));
    sumlx = F(sumlx + F(F(w[i] * v) * l));
    suml2 = F(suml2 + F(F(w[i] * l) * l));
    return u8(l);
  });
  for (let itry = 0; itry < 5; ++itry) {
    let nChanged = 0;
    for (let i = 0; i < x.length; ++i) {
      let slx = F(sumlx - F(F(w[i] * x[i]) * L[i]));
      let sl2 = F(suml2 - F(F(w[i] * L[i]) * L[i]));
      if (slx > 0 && sl2 > 0) {
        const newL = Math.min(nmax, nearestInt(F(F(x[i] * sl2) / slx)));
        if (newL !== L[i]) {
          slx = F(slx + F(F(w[i] * x[i]) * newL));
          sl2 = F(sl2 + F(F(w[i] * newL) * newL));
          if (F(F(slx * slx) * suml2) > F(F(sumlx * sumlx) * sl2)) {
            L[i] = u8(newL);
            sumlx = slx;
            suml2 = sl2;
            ++nChanged;
          }
        }
      }
    }
    if (!nChanged) break;
  }
  return { L, scale: suml2 > 0 ? F(sumlx / suml2) : 0 };
}

/** quantize_row_q4_1_impl / q5_1_impl of one row. */
export function affineRow(xs: ArrayLike<number>, qw: ArrayLike<number>, bits: 4 | 5): Uint8Array {
  const x = Array.from(xs, F);
  const nmax = bits === 4 ? 15 : 31;
  const bytes = bits === 4 ? 20 : 24;
  const sigma2 = F(sumSq(x, 0, x.length) / x.length);
  const out = new Uint8Array((x.length / 32) * bytes);
  for (let ib = 0; ib < x.length / 32; ib++) {
    const xb = x.slice(32 * ib, 32 * ib + 32);
    const fit = makeQkx2(xb, weighted(xb, qw, 32 * ib, sigma2), nmax, F(-0.9), F(0.05), 36);
    const at = ib * bytes;
    putHalf(out, at, half(fit.scale).bits);
    putHalf(out, at + 2, half(-fit.theMin).bits);
    const qs = at + (bits === 4 ? 4 : 8);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      out[qs + j] = (fit.L[j] & 15) | ((fit.L[j + 16] & 15) << 4);
      qh |= ((fit.L[j] >> 4) & 1) << j;
      qh |= ((fit.L[j + 16] >> 4) & 1) << (j + 16);
    }
    if (bits === 5) new DataView(out.buffer).setUint32(at + 4, qh >>> 0, true);
  }
  return out;
}

/** quantize_row_q4_K_impl / q5_K_impl of one 256-value super-block (`qw` its 256 weights). */
export function scaleMinKBlock(xs: ArrayLike<number>, qw: ArrayLike<number>, bits: 4 | 5): Uint8Array {
  const x = Array.from(xs, F);
  const nmax = bits === 4 ? 15 : 31;
  const sigma2 = F(F(2 * sumSq(x, 0, 256)) / 256);
  const L: number[] = [];
  const scales: number[] = [];
  const mins: number[] = [];
  const sw: number[] = [];
  for (let j = 0; j < 8; j++) {
    const sub = x.slice(32 * j, 32 * j + 32);
    const w = weighted(sub, qw, 32 * j, sigma2);
    sw.push(fsum(w));
    const fit = makeQkx2(sub, w, nmax, F(-0.9), F(0.05), 36);
    L.push(...fit.L);
    scales.push(fit.scale);
    mins.push(fit.theMin);
  }
  const ds = makeQp(scales, 63, sw);
  const dm = makeQp(mins, 63, sw);
  const ls = ds.L.map((l) => (bits === 5 ? Math.min(63, l) : l));
  const lm = dm.L.map((l) => (bits === 5 ? Math.min(63, l) : l));
  return packScaleMinK(x, L, ls, lm, half(ds.scale), half(dm.scale), bits);
}

/** quantize_row_q2_K_impl of one super-block. */
export function q2KBlock(xs: ArrayLike<number>, qw: ArrayLike<number>): Uint8Array {
  const x = Array.from(xs, F);
  const sigma2 = F(sumSq(x, 0, 256) / 256);
  const L: number[] = [];
  const scales: number[] = [];
  const mins: number[] = [];
  const sw: number[] = [];
  for (let j = 0; j < 16; j++) {
    const sub = x.slice(16 * j, 16 * j + 16);
    const w = weighted(sub, qw, 16 * j, sigma2);
    sw.push(fsum(w));
    const fit = makeQkx2(sub, w, 3, F(-0.9), F(0.05), 36);
    L.push(...fit.L);
    scales.push(fit.scale);
    mins.push(fit.theMin);
  }
  const ds = makeQp(scales, 15, sw);
  const dm = makeQp(mins, 15, sw);
  const d = half(ds.scale);
  const dmin = half(dm.scale);
  return packQ2K(x, L, ds.L.map((l, j) => u8(l | (dm.L[j] << 4))), d, dmin);
}

/** quantize_row_q3_K_impl of one super-block. */
export function q3KBlock(xs: ArrayLike<number>, qw: ArrayLike<number>): Uint8Array {
  const x = Array.from(xs, F);
  const sigma2 = F(F(2 * sumSq(x, 0, 256)) / 256);
  const L: number[] = [];
  const scales: number[] = [];
  const sw: number[] = [];
  for (let j = 0; j < 16; j++) {
    const sub = x.slice(16 * j, 16 * j + 16);
    const w = weighted(sub, qw, 16 * j, sigma2);
    sw.push(fsum(w));
    const fit = makeQx(sub, 4, w);
    L.push(...fit.L);
    scales.push(fit.scale);
  }
  const fitScales = makeQx(scales, 32, sw);
  const codes = fitScales.L; // l + 32, the 6-bit codes
  return packQ3K(x, L, codes, half(fitScales.scale));
}

/** quantize_row_q4_0_impl / quantize_row_q5_0_impl for one row (σ² = Σx²/n over the row). */
export function legacyRow(x: Float32Array, qw: ArrayLike<number>, bits: 4 | 5): Uint8Array {
  const n = x.length;
  let sumX2 = 0;
  for (let j = 0; j < n; j++) sumX2 = F(sumX2 + F(x[j] * x[j]));
  const sigma2 = F(sumX2 / n);
  const bytes = bits === 4 ? 18 : 22;
  const out = new Uint8Array((n / 32) * bytes);
  for (let ib = 0; ib < n / 32; ib++) {
    const xb = Array.from(x.subarray(32 * ib, 32 * ib + 32));
    const w = xb.map((v, j) => F(qw[32 * ib + j] * F(Math.sqrt(F(sigma2 + F(v * v))))));
    const { L, scale } = makeQx(xb, bits === 4 ? 8 : 16, w);
    const at = ib * bytes;
    const d = half(scale).bits;
    out[at] = d & 0xff;
    out[at + 1] = d >> 8;
    if (bits === 4) {
      for (let j = 0; j < 16; j++) out[at + 2 + j] = L[j] | (L[j + 16] << 4);
    } else {
      let qh = 0;
      for (let j = 0; j < 16; j++) {
        out[at + 6 + j] = (L[j] & 0x0f) | ((L[j + 16] & 0x0f) << 4);
        qh |= ((L[j] & 0x10) >> 4) << j;
        qh |= ((L[j + 16] & 0x10) >> 4) << (j + 16);
      }
      new DataView(out.buffer).setUint32(at + 2, qh >>> 0, true);
    }
  }
  return out;
}
