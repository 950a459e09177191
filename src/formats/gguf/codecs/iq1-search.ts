/**
 * ggml's IQ1_S and IQ1_M quantizers with importance weights (quantize_iq1_s →
 * quantize_row_iq1_s_impl, quantize_iq1_m → quantize_row_iq1_m_impl), what
 * `llama-quantize --imatrix` writes. Per 32 (IQ1_S) or 16 (IQ1_M) values: the values sorted (C's
 * qsort, which glibc runs as a stable merge sort), every split of the sorted values into levels
 * −1, 0, 1 tried with the grid shifted by +1/8 or −1/8 (IQ1_M: each 8 of the 16 its own shift) for
 * the best weighted least-squares scale, each group of 8 snapped to the iq1s grid or, off it, to the
 * nearest of its listed neighbours (iq2xs_init_impl's tables for IQ1: the 3 nearest distances),
 * refitted; then a 3-bit scale per 32 (16) under one f16 d (IQ1_M: d refitted over the block).
 * Every float step is C's f32 step (c-float.ts), unfused, in C's order. The codecs (iq1.ts) run the
 * WebAssembly twin of these (wasm/kquant-encoder.ts, kquant-wasm.ts) where it compiles, with the same
 * bytes; these run where it does not, on the rows it hands back, and as the tests' reference.
 */
import { MergeError } from '../../../errors.js';
import * as cFloat from './c-float.js';
import { iqTooLarge } from './iq-too-large.js';
import { iqGridCodes, iqSearchTables, type IqSearchTables } from './iq-grids.js';
import { importanceWeights, sumSquares } from './importance.js';

const { cmax, cmin, f32, nearestInt, putU16, toF16Bits } = cFloat;

let tables: IqSearchTables | undefined;

/** The quantizer's tables of the iq1s grid (2048 entries, 3 nearest distances), shared by IQ1_S and IQ1_M. */
export function iq1Tables(): IqSearchTables {
  return (tables ??= iqSearchTables(iqGridCodes('IQ1S'), 8, 2, 43692, 3));
}

const FLT_MAX = 3.4028234663852886e38;
/** x_p and x_m: the levels −1, 0, 1 shifted by +IQ1S_DELTA and −IQ1S_DELTA (both 0.125f; exact in f32). */
const X_P = [-0.875, 0.125, 1.125] as const;
const X_M = [-1.125, -0.125, 0.875] as const;
const EPS_IQ1_S = f32(1e-12);
const EPS_IQ1_M = f32(1e-7);
const FUDGE_IQ1_M = f32(1.1125);

/** Why a block cannot be written: ggml's quantizer stops on it. */
const IQ1_NOT_FINITE = iqTooLarge('IQ1');

const weight = new Float32Array(32);
const order = new Int32Array(32);
const orderTmp = new Int32Array(32);
const L = new Int8Array(32);
const index = new Int32Array(4);
const sumx = new Float32Array(33);
const sumw = new Float32Array(33);
const scales = new Float32Array(16);
const shifts = new Int8Array(16);

/**
 * glibc's qsort of (x, index) pairs by x (msort_with_tmp: top-down merge sort, the first half
 * taken on ties; iq1_sort_helper calls NaN equal to everything), leaving the indexes in `order`.
 */
function mergeSort(x: Float32Array, xb: number, lo: number, n: number): void {
  if (n <= 1) return;
  let n1 = n >> 1;
  let n2 = n - n1;
  mergeSort(x, xb, lo, n1);
  mergeSort(x, xb, lo + n1, n2);
  let i = lo;
  let j = lo + n1;
  let k = 0;
  while (n1 > 0 && n2 > 0) {
    if (!(x[xb + order[i]] > x[xb + order[j]])) {
      orderTmp[k++] = order[i++];
      n1--;
    } else {
      orderTmp[k++] = order[j++];
      n2--;
    }
  }
  while (n1-- > 0) orderTmp[k++] = order[i++];
  for (let m = 0; m < k; m++) order[lo + m] = orderTmp[m];
}

function sortBlock(x: Float32Array, xb: number, n: number): void {
  for (let j = 0; j < n; j++) order[j] = j;
  mergeSort(x, xb, 0, n);
}

/**
 * iq1_find_best_neighbour2: of the entries listed at `neighbours[o]`, the one nearest to
 * x[xb…xb+8) at `scale` with levels `xx` (shifted), by Σ w·diff² (the first on ties); its levels go
 * to L[at…]. Where none is nearer than FLT_MAX (only with overflowing or non-finite values) C
 * scans the whole grid comparing against values past the 8 it was given, an out-of-bounds read
 * whose result depends on memory beyond the block; loramerge refuses instead.
 */
function bestNeighbour(t: IqSearchTables, o: number, x: Float32Array, xb: number, at: number, scale: number, xx: readonly number[]): number {
  const n = t.neighbours[o];
  let best = FLT_MAX;
  let found = -1;
  for (let j = 1; j <= n; j++) {
    const e = t.neighbours[o + j];
    let d2 = 0;
    for (let i = 0; i < 8; i++) {
      const diff = f32(f32(scale * xx[t.levels[8 * e + i]]) - x[xb + i]);
      d2 = f32(d2 + f32(f32(weight[at + i] * diff) * diff));
    }
    if (d2 < best) {
      best = d2;
      found = e;
    }
  }
  if (found < 0) throw new MergeError('NON_FINITE', IQ1_NOT_FINITE);
  for (let i = 0; i < 8; i++) L[at + i] = t.levels[8 * found + i];
  return found;
}

/**
 * The split's groups of 8 (L) as grid entries in `index`, a group off the grid as its nearest listed
 * neighbour at `scale` with the levels `levelsOf(k)` gives it; where any group moved, the scale refit
 * by weighted least squares over all groups, kept only where both sums are positive (as
 * quantize_row_iq1_s_impl and quantize_row_iq1_m_impl both do).
 */
function snapGroups(t: IqSearchTables, src: Float32Array, xb: number, groups: number, scale: number, levelsOf: (k: number) => readonly number[]): number {
  let allOnGrid = true;
  for (let k = 0; k < groups; k++) {
    let e = t.map[packed(8 * k)];
    if (e < 0) {
      allOnGrid = false;
      e = bestNeighbour(t, -e - 1, src, xb + 8 * k, 8 * k, scale, levelsOf(k));
    }
    index[k] = e;
  }
  if (allOnGrid) return scale;
  let sumqx = 0;
  let sumq2 = 0;
  for (let k = 0; k < groups; k++) {
    const xx = levelsOf(k);
    for (let j = 0; j < 8; j++) {
      const w = weight[8 * k + j];
      const q = xx[t.levels[8 * index[k] + j]];
      sumqx = f32(sumqx + f32(f32(w * q) * src[xb + 8 * k + j]));
      sumq2 = f32(sumq2 + f32(f32(w * q) * q));
    }
  }
  return sumqx > 0 && sumq2 > 0 ? f32(sumqx / sumq2) : scale;
}

/** Levels of the 8 values at L[at…] packed 2 bits each (the first lowest): the grid map's key. */
function packed(at: number): number {
  let u = 0;
  for (let j = 0; j < 8; j++) u |= L[at + j] << (2 * j);
  return u;
}

/** L from the best split: sorted values before i1 at level 0 (−1), up to i2 at 1 (0), the rest at 2 (+1). */
function splitLevels(n: number, i1: number, i2: number): void {
  for (let j = 0; j < n; j++) L[order[j]] = j < i1 ? 0 : j < i2 ? 1 : 2;
}

/**
 * One row of IQ1_S blocks (50 bytes: f16 d, 32 bytes of grid indexes' low 8 bits, per 32 values a
 * u16 of four 3-bit index tops, a 3-bit scale and the shift's sign) from `src` and one importance
 * weight per value, as quantize_row_iq1_s_impl writes it.
 */
export function encodeIq1SRow(src: Float32Array, out: Uint8Array, qw: Float32Array): void {
  const t = iq1Tables();
  for (let b = 0, at = 0; b * 256 < src.length; b++, at += 50) {
    const x0 = b * 256;
    out.fill(0, at, at + 50);
    const qh = new Uint16Array(8);
    let maxScale = 0;
    const sigma2 = f32(f32(2 * sumSquares(src, x0, 256)) / 256);
    for (let ib = 0; ib < 8; ib++) {
      const xb = x0 + 32 * ib;
      importanceWeights(src, xb, qw, xb, sigma2, 32, weight);
      let max = Math.abs(src[xb]);
      for (let i = 1; i < 32; i++) max = cmax(max, Math.abs(src[xb + i]));
      if (max < EPS_IQ1_S) {
        scales[ib] = 0;
        shifts[ib] = 1;
        continue;
      }
      sortBlock(src, xb, 32);
      sumx[0] = sumw[0] = 0;
      for (let j = 0; j < 32; j++) {
        const i = order[j];
        sumx[j + 1] = f32(sumx[j] + f32(weight[i] * src[xb + i]));
        sumw[j + 1] = f32(sumw[j] + weight[i]);
      }
      let best = -FLT_MAX;
      let scale = max;
      let besti1 = -1;
      let besti2 = -1;
      let shift = 0;
      for (let i1 = 0; i1 <= 32; i1++) {
        for (let i2 = i1; i2 <= 32; i2++) {
          const a = f32(sumx[i1] - sumx[0]);
          const bx = f32(sumx[i2] - sumx[i1]);
          const c = f32(sumx[32] - sumx[i2]);
          const wa = f32(sumw[i1] - sumw[0]);
          const wb = f32(sumw[i2] - sumw[i1]);
          const wc = f32(sumw[32] - sumw[i2]);
          // Shifted up (x_p, shift 1), then down (x_m, −1), as C tries them.
          for (let s = 1; s >= -1; s -= 2) {
            const xx = s === 1 ? X_P : X_M;
            const p0 = xx[0];
            const p1 = xx[1];
            const p2 = xx[2];
            const sumqx = f32(f32(f32(a * p0) + f32(bx * p1)) + f32(c * p2));
            const sumq2 = f32(f32(f32(f32(wa * p0) * p0) + f32(f32(wb * p1) * p1)) + f32(f32(wc * p2) * p2));
            if (sumq2 > 0 && f32(sumqx * sumqx) > f32(best * sumq2)) {
              scale = f32(sumqx / sumq2);
              best = f32(scale * sumqx);
              besti1 = i1;
              besti2 = i2;
              shift = s;
            }
          }
        }
      }
      if (besti1 < 0 || besti2 < 0 || shift === 0) {
        scales[ib] = 0;
        shifts[ib] = 1;
        continue;
      }
      splitLevels(32, besti1, besti2);
      if (scale < 0) {
        for (let j = 0; j < 32; j++) L[j] = 2 - L[j];
        scale = -scale;
        shift = -shift;
      }
      const xx = shift === 1 ? X_P : X_M;
      scale = snapGroups(t, src, xb, 4, scale, () => xx);
      let h = 0;
      for (let k = 0; k < 4; k++) {
        out[at + 2 + 4 * ib + k] = index[k] & 255;
        h |= (index[k] >> 8) << (3 * k);
      }
      qh[ib] = h;
      // C: GGML_ASSERT(scale >= 0) (false for NaN).
      if (!(scale >= 0)) throw new MergeError('NON_FINITE', IQ1_NOT_FINITE);
      scales[ib] = scale;
      shifts[ib] = shift;
      maxScale = cmax(maxScale, scale);
    }
    if (maxScale) {
      const d = f32(maxScale / 15);
      putU16(out, at, toF16Bits(f32(d * 1.125)));
      const id = f32(1 / d);
      for (let ib = 0; ib < 8; ib++) {
        let l = cmax(0, cmin(7, nearestInt(f32(0.5 * f32(f32(id * scales[ib]) - 1)))));
        if (shifts[ib] === -1) l |= 8;
        qh[ib] |= l << 12;
      }
    }
    // Unlike d, C leaves the grid indexes written when every scale is 0.
    for (let ib = 0; ib < 8; ib++) putU16(out, at + 34 + 2 * ib, qh[ib]);
  }
}

/** masks[best_k] in quantize_row_iq1_m_impl: the shift signs of the two groups of 8 (bit 3, bit 7). */
const MASKS = [0x00, 0x80, 0x08, 0x88] as const;
/** The levels group k (0, 1) of a 16 uses under shift choice `bestK` (0: +,+  1: +,−  2: −,+  3: −,−). */
const shiftOf = (bestK: number, k: number) => ((k === 0 ? bestK < 2 : bestK % 2 === 0) ? X_P : X_M);
const termX = new Float32Array(4 * 3 * 16);
const termQ = new Float32Array(4 * 3 * 16);
const sumqx4 = new Float32Array(4);
const sumq24 = new Float32Array(4);

/**
 * One row of IQ1_M blocks (56 bytes: 32 bytes of grid indexes' low 8 bits, per 16 values a byte of
 * two 3-bit index tops and two shift signs, four u16 of 3-bit scales whose top nibbles hold the f16
 * d) from `src` and one importance weight per value, as quantize_row_iq1_m_impl writes it with
 * quant_weights; `qw` undefined: as it writes it with none (token_embd.weight, output.weight).
 */
export function encodeIq1MRow(src: Float32Array, out: Uint8Array, qw: Float32Array | undefined): void {
  const t = iq1Tables();
  for (let b = 0, at = 0; b * 256 < src.length; b++, at += 56) {
    const x0 = b * 256;
    out.fill(0, at, at + 56);
    let maxScale = 0;
    const sigma2 = f32(f32(2 * sumSquares(src, x0, 256)) / 256);
    for (let ib = 0; ib < 16; ib++) {
      const xb = x0 + 16 * ib;
      iq1MWeights(src, xb, qw, sigma2);
      let max = Math.abs(src[xb]);
      for (let i = 1; i < 16; i++) max = cmax(max, Math.abs(src[xb + i]));
      if (max < EPS_IQ1_M) {
        scales[ib] = 0;
        shifts[ib] = 0;
        continue;
      }
      sortBlock(src, xb, 16);
      // Per sum k, the j-th sorted value's terms weight·x_±[l]·x and weight·x_±[l]² at each level
      // l (as C multiplies them), its shift the one sum k gives its half of the 16.
      for (let j = 0; j < 16; j++) {
        const i = order[j];
        for (let k = 0; k < 4; k++) {
          const xx = (i < 8 ? k >= 2 : k % 2 === 1) ? X_M : X_P;
          for (let l = 0; l < 3; l++) {
            const wv = f32(weight[i] * xx[l]);
            termX[(k * 3 + l) * 16 + j] = f32(wv * src[xb + i]);
            termQ[(k * 3 + l) * 16 + j] = f32(wv * xx[l]);
          }
        }
      }
      let best = -FLT_MAX;
      let scale = max;
      let besti1 = -1;
      let besti2 = -1;
      let bestK = -1;
      // C sums the 16 terms in sorted order for each split (i1, i2) and each k: the sums over the
      // values before i1 (level 0) and then up to i2 (level 1) are shared prefixes, each rounding
      // step the same, so only the level-2 tail is summed per split.
      const x0k = [0, 0, 0, 0];
      const q0k = [0, 0, 0, 0];
      for (let i1 = 0; i1 <= 16; i1++) {
        if (i1 > 0) {
          for (let k = 0; k < 4; k++) {
            x0k[k] = f32(x0k[k] + termX[k * 48 + i1 - 1]);
            q0k[k] = f32(q0k[k] + termQ[k * 48 + i1 - 1]);
          }
        }
        for (let k = 0; k < 4; k++) {
          sumqx4[k] = x0k[k];
          sumq24[k] = q0k[k];
        }
        for (let i2 = i1; i2 <= 16; i2++) {
          if (i2 > i1) {
            for (let k = 0; k < 4; k++) {
              sumqx4[k] = f32(sumqx4[k] + termX[k * 48 + 16 + i2 - 1]);
              sumq24[k] = f32(sumq24[k] + termQ[k * 48 + 16 + i2 - 1]);
            }
          }
          for (let k = 0; k < 4; k++) {
            let sx = sumqx4[k];
            let s2 = sumq24[k];
            for (let j = i2; j < 16; j++) {
              sx = f32(sx + termX[k * 48 + 32 + j]);
              s2 = f32(s2 + termQ[k * 48 + 32 + j]);
            }
            if (s2 > 0 && f32(sx * sx) > f32(best * s2)) {
              scale = f32(sx / s2);
              best = f32(scale * sx);
              besti1 = i1;
              besti2 = i2;
              bestK = k;
            }
          }
        }
      }
      if (besti1 < 0 || besti2 < 0 || bestK < 0) {
        scales[ib] = 0;
        shifts[ib] = 0;
        continue;
      }
      splitLevels(16, besti1, besti2);
      if (scale < 0) {
        for (let j = 0; j < 16; j++) L[j] = 2 - L[j];
        scale = -scale;
        bestK = 3 - bestK;
      }
      scale = snapGroups(t, src, xb, 2, scale, (k) => shiftOf(bestK, k));
      out[at + 2 * ib] = index[0] & 255;
      out[at + 2 * ib + 1] = index[1] & 255;
      out[at + 32 + ib] = (index[0] >> 8) | ((index[1] >> 8) << 4);
      if (!(scale >= 0)) throw new MergeError('NON_FINITE', IQ1_NOT_FINITE);
      scales[ib] = scale;
      shifts[ib] = bestK;
      maxScale = cmax(maxScale, scale);
    }
    if (!maxScale) continue;
    const sc = [0, 0, 0, 0];
    let d = f32(maxScale / 15);
    const id = f32(1 / d);
    let sumqx = 0;
    let sumq2 = 0;
    for (let ib = 0; ib < 16; ib++) {
      const l = cmax(0, cmin(7, nearestInt(f32(0.5 * f32(f32(id * scales[ib]) - 1)))));
      sc[ib >> 2] |= l << (3 * (ib % 4));
      out[at + 32 + ib] |= MASKS[shifts[ib]];
      const xb = x0 + 16 * ib;
      iq1MWeights(src, xb, qw, sigma2);
      const qh = out[at + 32 + ib];
      for (let k = 0; k < 2; k++) {
        const xx = shiftOf(shifts[ib], k);
        const e = out[at + 2 * ib + k] + ((qh << (8 - 4 * k)) & 0x700);
        for (let j = 0; j < 8; j++) {
          const w = weight[8 * k + j];
          const q = f32(xx[t.levels[8 * e + j]] * (2 * l + 1));
          sumqx = f32(sumqx + f32(f32(w * q) * src[xb + 8 * k + j]));
          sumq2 = f32(sumq2 + f32(f32(w * q) * q));
        }
      }
    }
    if (sumq2 > 0) d = f32(sumqx / sumq2);
    const s = toF16Bits(f32(d * FUDGE_IQ1_M));
    sc[0] |= (s & 0x000f) << 12;
    sc[1] |= (s & 0x00f0) << 8;
    sc[2] |= (s & 0x0f00) << 4;
    sc[3] |= s & 0xf000;
    for (let i = 0; i < 4; i++) putU16(out, at + 48 + 2 * i, sc[i]);
  }
}

/** quantize_row_iq1_m_impl's weights of the 16 values at `xb`: qw·√(σ² + x²) with importance weights, x² without (its quant_weights NULL). */
function iq1MWeights(src: Float32Array, xb: number, qw: Float32Array | undefined, sigma2: number): void {
  if (qw) importanceWeights(src, xb, qw, xb, sigma2, 16, weight);
  else for (let i = 0; i < 16; i++) weight[i] = f32(src[xb + i] * src[xb + i]);
}
