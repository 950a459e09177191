/**
 * ggml's IQ2_XXS and IQ2_XS quantizers with importance weights (quantize_iq2_xxs →
 * quantize_row_iq2_xxs_impl, quantize_iq2_xs → quantize_row_iq2_xs_impl), what
 * `llama-quantize --imatrix` writes, and the tables it searches (iq2xs_init_impl): each grid
 * entry as 8 levels 0…2 (C stores 2·level + 1), a map from any 8 levels (2 bits each, the first
 * lowest) to their grid entry, and for each point off the grid its nearest entries. Every float
 * step is C's f32 step (c-float.ts), unfused, in C's order. ggml has no IQ2_XXS or IQ2_XS quantizer
 * without importance weights (they assert that they have them). The codecs (iq2.ts) run the
 * WebAssembly twin of these (wasm/kquant-encoder.ts, kquant-wasm.ts) where it compiles, with the same
 * bytes; these run where it does not, on the rows it hands back, and as the tests' reference.
 */
import { MergeError } from '../../../errors.js';
import * as cFloat from './c-float.js';
import { iqTooLarge } from './iq-too-large.js';
import { iqGridCodes, iqSearchTables, type IqSearchTables } from './iq-grids.js';
import { importanceWeights, sumSquares } from './importance.js';
import { makeQpQuants } from './k-quant-search.js';

const { cmax, cmin, f32, GROUP_MAX_EPS, nearestInt, putU16, putU32, toF16Bits } = cFloat;

/** An IQ2 grid as the quantizer searches it: entries of 8 levels 0…2, kmap_q2xs of 43 692 points. */
export type Iq2Tables = IqSearchTables;

/** kmap_size in iq2xs_init_impl: 8 levels of 2 bits up to 0xAAAA (all level 2), plus one. */
const KMAP_SIZE = 43692;

/** iq2xs_init_impl's tables: the entries at each off-grid point's `nwant` smallest distances. */
const buildTables = (levels: Uint8Array, nwant: number): Iq2Tables => iqSearchTables(levels, 8, 2, KMAP_SIZE, nwant);

let xxsTables: Iq2Tables | undefined;
let xsTables: Iq2Tables | undefined;
let sTables: Iq2Tables | undefined;

/** The quantizer's tables of the IQ2_XXS grid (256 entries, 2 nearest distances). */
export function iq2XxsTables(): Iq2Tables {
  return (xxsTables ??= buildTables(iqGridCodes('IQ2XXS'), 2));
}

/** The quantizer's tables of the IQ2_S grid (1024 entries, the nearest distance only). */
export function iq2STables(): Iq2Tables {
  return (sTables ??= buildTables(iqGridCodes('IQ2S'), 1));
}

/** The quantizer's tables of the IQ2_XS grid (512 entries, 2 nearest distances). */
export function iq2XsTables(): Iq2Tables {
  return (xsTables ??= buildTables(iqGridCodes('IQ2XS'), 2));
}

const FLT_MAX = 3.4028234663852886e38;
/** kMaxQ of both quantizers: levels 0…2 store 2l + 1 ≤ 5 = 2·kMaxQ − 1. */
const K_MAX_Q = 3;
const TENTH = f32(0.1);

/** Why a block cannot be written: ggml's quantizer stops on it. */
const IQ2_NOT_FINITE = iqTooLarge('IQ2');

/**
 * iq2_find_best_neighbour: of the entries listed at `neighbours[o]`, the one nearest to
 * xval[at…at+8) at `scale`, by Σ w·diff² (the first on ties); its levels go to dst[at…].
 */
function bestNeighbour(t: Iq2Tables, o: number, xval: Float32Array, w: Float32Array, at: number, scale: number, dst: Int8Array): number {
  const n = t.neighbours[o];
  if (n <= 0) throw new MergeError('NON_FINITE', IQ2_NOT_FINITE);
  let best = FLT_MAX;
  let index = -1;
  for (let j = 1; j <= n; j++) {
    const e = t.neighbours[o + j];
    let d2 = 0;
    for (let i = 0; i < 8; i++) {
      const diff = f32(f32(scale * (2 * t.levels[8 * e + i] + 1)) - xval[at + i]);
      d2 = f32(d2 + f32(f32(w[at + i] * diff) * diff));
    }
    if (d2 < best) {
      best = d2;
      index = e;
    }
  }
  if (index < 0) throw new MergeError('NON_FINITE', IQ2_NOT_FINITE);
  for (let i = 0; i < 8; i++) dst[at + i] = t.levels[8 * index + i];
  return index;
}

const weight = new Float32Array(32);
const waux = new Float32Array(32);
const xval = new Float32Array(32);
const L = new Int8Array(32);
/** L as make_qp_quants sees it: (uint8_t *)L. */
const Lu = new Uint8Array(L.buffer);
const Laux = new Int8Array(32);
const blockSigns = new Uint8Array(4);
const q2 = new Uint32Array(16);
const scales = new Float32Array(8);

/** Σ w·x·q and Σ w·q² over n values with levels `lv` (q = 2l + 1), C's order. */
function fit(lv: Int8Array, n = 32): [number, number] {
  let sumqx = 0;
  let sumq2 = 0;
  for (let i = 0; i < n; i++) {
    const w = weight[i];
    const q = 2 * lv[i] + 1;
    sumqx = f32(sumqx + f32(f32(w * xval[i]) * q));
    sumq2 = f32(sumq2 + f32(f32(w * q) * q));
  }
  return [sumqx, sumq2];
}

/** Levels of 8 values at 1/id, clamped to 0…2, packed 2 bits each. */
function packedLevels(id: number, at: number, into?: Int8Array): number {
  let u = 0;
  for (let i = 0; i < 8; i++) {
    const l = cmax(0, cmin(2, nearestInt(f32(0.5 * f32(f32(id * xval[at + i]) - 1)))));
    if (into) into[at + i] = l;
    u |= l << (2 * i);
  }
  return u;
}

/**
 * One row of IQ2_XXS blocks (66 bytes: f16 d, then per 32 values a u32 of four grid indexes and a
 * u32 of four 7-bit sign sets with the 4-bit scale on top) from `src` and one importance weight
 * per value, as quantize_row_iq2_xxs_impl writes it.
 */
export function encodeIq2XxsRow(src: Float32Array, out: Uint8Array, qw: Float32Array): void {
  const t = iq2XxsTables();
  for (let b = 0, at = 0; b * 256 < src.length; b++, at += 66) {
    const x0 = b * 256;
    q2.fill(0);
    let maxScale = 0;
    const sigma2 = f32(sumSquares(src, x0, 256) / 256);
    for (let ib = 0; ib < 8; ib++) {
      const xb = x0 + 32 * ib;
      importanceWeights(src, xb, qw, xb, sigma2, 32, weight);
      for (let i = 0; i < 32; i++) waux[i] = f32(Math.sqrt(weight[i]));
      for (let k = 0; k < 4; k++) blockSigns[k] = signsOfEight(src, xb, 8 * k);
      let max = xval[0];
      for (let i = 1; i < 32; i++) max = cmax(max, xval[i]);
      if (max < GROUP_MAX_EPS) {
        scales[ib] = 0;
        continue;
      }
      const start = makeQpQuants(32, K_MAX_Q + 1, xval, Lu, weight);
      const effMax = f32(start * K_MAX_Q);
      if (effMax <= 0) {
        scales[ib] = 0;
        continue;
      }
      // 13 trial scales from make_qp_quants' scale; then every group fitted again at the best.
      const scale = settleGroups(t, 4, bestTrialScale(t, 4, 6, effMax, start), true, 127);
      for (let k = 0; k < 4; k++) {
        q2[2 * ib] = (q2[2 * ib] | (groupEntries[k] << (8 * k))) >>> 0;
        q2[2 * ib + 1] = (q2[2 * ib + 1] | (blockSigns[k] << (7 * k))) >>> 0;
      }
      scales[ib] = scale;
      maxScale = cmax(maxScale, scale);
    }
    out.fill(0, at, at + 66);
    if (!maxScale) continue;
    const d = f32(maxScale / 31);
    putU16(out, at, toF16Bits(d));
    const id = f32(1 / d);
    for (let ib = 0; ib < 8; ib++) {
      const l = cmax(0, cmin(15, nearestInt(f32(0.5 * f32(f32(id * scales[ib]) - 1)))));
      q2[2 * ib + 1] = (q2[2 * ib + 1] | (l << 28)) >>> 0;
    }
    for (let i = 0; i < 16; i++) putU32(out, at + 2 + 4 * i, q2[i]);
  }
}

/** The signs of 8 values at xb + at (7 bits; an odd count of negatives flips the value of least w·x²), and their |x| into xval. */
function signsOfEight(src: Float32Array, xb: number, at: number): number {
  let nflip = 0;
  let s = 0;
  for (let i = 0; i < 8; i++) {
    const v = src[xb + at + i];
    if (v >= 0) xval[at + i] = v;
    else {
      xval[at + i] = -v;
      nflip++;
      s |= 1 << i;
    }
  }
  if (nflip % 2) {
    let imin = 0;
    let min = f32(f32(weight[at] * src[xb + at]) * src[xb + at]);
    for (let i = 1; i < 8; i++) {
      const ax = f32(f32(weight[at + i] * src[xb + at + i]) * src[xb + at + i]);
      if (ax < min) {
        min = ax;
        imin = i;
      }
    }
    xval[at + imin] = -xval[at + imin];
    s ^= 1 << imin;
  }
  return s & 127;
}

/** Per group of 8 (4 in IQ2_XXS's 32 values, 2 in IQ2_XS's and IQ2_S's 16): on the grid at the best trial, at the current one. */
const onGrid = [true, true, true, true];
const onGridAux = [true, true, true, true];
/** The grid entries of the groups of 8 settleGroups settled on. */
const groupEntries = [0, 0, 0, 0];

/**
 * The search quantize_row_iq2_xs_impl and quantize_row_iq2_s_impl run over 16 values (`xval`, the
 * magnitudes; `waux`, √weights): 19 trial scales from max/5, each group of 8 snapped to the grid or
 * its nearest entries, the best by least squares, groups left off the grid fitted again at its
 * scale, and a negative scale flipped with the groups' signs (`blockSigns`, `signMask` the bits
 * stored). Leaves the levels in `L` and the entries in `groupEntries`; returns the scale, or
 * undefined where the largest value is below `eps` (every level 0).
 */
function searchSixteen(t: Iq2Tables, eps: number, signMask: number): number | undefined {
  let max = xval[0];
  for (let i = 1; i < 16; i++) max = cmax(max, xval[i]);
  L.fill(0, 0, 16);
  if (max < eps) return undefined;
  return settleGroups(t, 2, bestTrialScale(t, 2, 9, max, f32(max / (2 * K_MAX_Q - 1))), false, signMask);
}

/**
 * The trial scales both quantizers run over `groups` groups of 8 values (`xval`, the magnitudes;
 * `waux`, √weights): for is = −span…span, id = (2·kMaxQ − 1 + is/10) / top, each group's levels
 * at 1/id snapped to the grid or, off it, to the nearest of its listed entries at the trial scale;
 * the trial of largest (Σ w·x·q)² / Σ w·q² wins (the first on ties), its levels left in `L` and
 * whether each group was on the grid in `onGrid`. Returns its least-squares scale, or `scale`
 * where no trial has Σ w·q² > 0 and a positive fit.
 */
function bestTrialScale(t: Iq2Tables, groups: number, span: number, top: number, scale: number): number {
  const n = 8 * groups;
  let best = 0;
  onGrid.fill(true);
  for (let is = -span; is <= span; is++) {
    const id = f32(f32(2 * K_MAX_Q - 1 + f32(is * TENTH)) / top);
    const thisScale = f32(1 / id);
    for (let k = 0; k < groups; k++) {
      const u = packedLevels(id, 8 * k, Laux);
      onGridAux[k] = t.map[u] >= 0;
      if (t.map[u] < 0) bestNeighbour(t, -t.map[u] - 1, xval, waux, 8 * k, thisScale, Laux);
    }
    const [sumqx, sumq2] = fit(Laux, n);
    if (sumq2 > 0 && f32(sumqx * sumqx) > f32(best * sumq2)) {
      scale = f32(sumqx / sumq2);
      best = f32(scale * sumqx);
      for (let i = 0; i < n; i++) L[i] = Laux[i];
      for (let k = 0; k < groups; k++) onGrid[k] = onGridAux[k];
    }
  }
  return scale;
}

/**
 * After {@link bestTrialScale}: at a positive `scale`, the groups fitted again (every group with
 * `refitAll`, as IQ2_XXS does; else only those the best trial left off the grid, as IQ2_XS and
 * IQ2_S do: none, no refit) and the scale refit by least squares; a negative scale made positive
 * with the groups' signs flipped (`blockSigns`, `signMask` the bits stored; C: "should never
 * happen"). The groups' grid entries go to `groupEntries`; returns the scale. Levels off the grid
 * (C: "Oops: found point not on grid", an abort) or a scale that is not ≥ 0 (C's
 * GGML_ASSERT(scale >= 0), false for NaN) are refused.
 */
function settleGroups(t: Iq2Tables, groups: number, scale: number, refitAll: boolean, signMask: number): number {
  let offGrid = refitAll;
  for (let k = 0; k < groups; k++) offGrid ||= !onGrid[k];
  if (offGrid && scale > 0) {
    const id = f32(1 / scale);
    for (let k = 0; k < groups; k++) {
      if (!refitAll && onGrid[k]) continue;
      const u = packedLevels(id, 8 * k, L);
      if (t.map[u] < 0) bestNeighbour(t, -t.map[u] - 1, xval, waux, 8 * k, scale, L);
    }
    const [sumqx, sumq2] = fit(L, 8 * groups);
    if (sumq2 > 0) scale = f32(sumqx / sumq2);
  }
  if (scale < 0) {
    scale = -scale;
    for (let k = 0; k < groups; k++) blockSigns[k] = ~blockSigns[k] & signMask;
  }
  for (let k = 0; k < groups; k++) {
    let u = 0;
    for (let i = 0; i < 8; i++) u |= L[8 * k + i] << (2 * i);
    const e = t.map[u];
    if (e < 0) throw new MergeError('NON_FINITE', IQ2_NOT_FINITE);
    groupEntries[k] = e;
  }
  if (!(scale >= 0)) throw new MergeError('NON_FINITE', IQ2_NOT_FINITE);
  return scale;
}
const q2xs = new Uint16Array(32);
const scalesXs = new Float32Array(16);

/**
 * One row of IQ2_XS blocks (74 bytes: f16 d, 32 u16 of a 9-bit grid index and 7 sign bits, 8 bytes
 * of two 4-bit scales) from `src` and one importance weight per value, as quantize_row_iq2_xs_impl
 * writes it: per 16 values 19 trial scales from max/5, groups of 8 off the grid refit.
 */
export function encodeIq2XsRow(src: Float32Array, out: Uint8Array, qw: Float32Array): void {
  const t = iq2XsTables();
  for (let b = 0, at = 0; b * 256 < src.length; b++, at += 74) {
    const x0 = b * 256;
    q2xs.fill(0);
    let maxScale = 0;
    const sigma2 = f32(sumSquares(src, x0, 256) / 256);
    for (let ib = 0; ib < 16; ib++) {
      const xb = x0 + 16 * ib;
      importanceWeights(src, xb, qw, xb, sigma2, 16, weight);
      for (let i = 0; i < 16; i++) waux[i] = f32(Math.sqrt(weight[i]));
      for (let k = 0; k < 2; k++) blockSigns[k] = signsOfEight(src, xb, 8 * k);
      const scale = searchSixteen(t, GROUP_MAX_EPS, 127);
      if (scale === undefined) {
        scalesXs[ib] = 0;
        continue;
      }
      for (let k = 0; k < 2; k++) q2xs[2 * ib + k] = groupEntries[k] | (blockSigns[k] << 9);
      scalesXs[ib] = scale;
      maxScale = cmax(maxScale, scale);
    }
    out.fill(0, at, at + 74);
    if (!maxScale) continue;
    const d = f32(maxScale / 31);
    putU16(out, at, toF16Bits(d));
    const id = f32(1 / d);
    for (let ib = 0; ib < 16; ib++) {
      const l = cmax(0, cmin(15, nearestInt(f32(0.5 * f32(f32(id * scalesXs[ib]) - 1)))));
      out[at + 66 + (ib >> 1)] |= ib % 2 === 0 ? l : l << 4;
    }
    for (let i = 0; i < 32; i++) putU16(out, at + 2 + 2 * i, q2xs[i]);
  }
}

/** GROUP_MAX_EPS_IQ2_S. */
const EPS_IQ2_S = f32(1e-8);
const FUDGE_IQ2_S = f32(0.9875);

/**
 * One row of IQ2_S blocks (82 bytes: f16 d, 32 bytes of grid indexes' low 8 bits, 32 sign bytes,
 * 8 bytes of the indexes' top 2 bits, 8 bytes of two 4-bit scales) from `src` and one importance
 * weight per value, as quantize_row_iq2_s_impl writes it with quant_weights: σ² twice the mean
 * square, all 8 signs stored, the IQ2_XS search over the 1024-entry grid, d stored times 0.9875.
 * `qw` undefined: as it writes it with none (weights σ²/4 + x²; token_embd.weight, output.weight).
 */
export function encodeIq2SRow(src: Float32Array, out: Uint8Array, qw: Float32Array | undefined): void {
  const t = iq2STables();
  for (let b = 0, at = 0; b * 256 < src.length; b++, at += 82) {
    const x0 = b * 256;
    out.fill(0, at, at + 82);
    let maxScale = 0;
    const sigma2 = f32(f32(2 * sumSquares(src, x0, 256)) / 256);
    for (let ib = 0; ib < 16; ib++) {
      const xb = x0 + 16 * ib;
      if (qw) importanceWeights(src, xb, qw, xb, sigma2, 16, weight);
      else for (let i = 0; i < 16; i++) weight[i] = f32(f32(0.25 * sigma2) + f32(src[xb + i] * src[xb + i]));
      for (let i = 0; i < 16; i++) waux[i] = f32(Math.sqrt(weight[i]));
      for (let k = 0; k < 2; k++) {
        let s = 0;
        for (let i = 0; i < 8; i++) {
          const v = src[xb + 8 * k + i];
          if (v >= 0) xval[8 * k + i] = v;
          else {
            xval[8 * k + i] = -v;
            s |= 1 << i;
          }
        }
        blockSigns[k] = s;
      }
      const scale = searchSixteen(t, EPS_IQ2_S, 255);
      if (scale === undefined) {
        scalesXs[ib] = 0;
        continue;
      }
      for (let k = 0; k < 2; k++) {
        const i8 = 2 * ib + k;
        out[at + 2 + i8] = groupEntries[k] & 255;
        out[at + 66 + (i8 >> 2)] |= (groupEntries[k] >> 8) << (2 * (i8 % 4));
        out[at + 34 + i8] = blockSigns[k];
      }
      scalesXs[ib] = scale;
      maxScale = cmax(maxScale, scale);
    }
    // Unlike IQ2_XS, C leaves the entries and signs written when every scale is 0.
    if (!maxScale) continue;
    const d = f32(maxScale / 31);
    putU16(out, at, toF16Bits(f32(d * FUDGE_IQ2_S)));
    const id = f32(1 / d);
    for (let ib = 0; ib < 16; ib++) {
      const l = cmax(0, cmin(15, nearestInt(f32(0.5 * f32(f32(id * scalesXs[ib]) - 1)))));
      out[at + 74 + (ib >> 1)] |= ib % 2 === 0 ? l : l << 4;
    }
  }
}
