/**
 * The grid search of ggml's IQ3 quantizers (quantize_row_iq3_xxs_impl for IQ3_XXS,
 * quantize_row_iq3_s_impl for IQ3_S) over 32 values, with their weights (x² without an importance
 * matrix, qw·sqrtf(σ² + x²) with one), and the tables it searches
 * (iq3xs_init_impl): each grid entry as 4 levels 0…7 (C stores 2·level + 1), a map from any 4
 * levels (3 bits each) to their grid entry, and for each of the 4096 points off the grid its
 * nearest entries. Every float step is C's f32 step (c-float.ts), unfused, in C's order.
 */
import { MergeError } from '../../../errors.js';
import * as cFloat from './c-float.js';
import { iqTooLarge } from './iq-too-large.js';
import { iqGridCodes, iqSearchTables, type IqSearchTables } from './iq-grids.js';
import { importanceWeights } from './importance.js';

const { cmax, f32, nearestInt } = cFloat;

/** An IQ3 grid as the quantizer searches it: entries of 4 levels 0…7, kmap_q3xs of 4096 points. */
export type Iq3Tables = IqSearchTables;

/**
 * iq3xs_init_impl's tables: the entries at each off-grid point's `nwant` smallest distances (2 for
 * IQ3_XXS's 256 entries, 3 for IQ3_S's 512).
 */
const buildTables = (levels: Uint8Array, nwant: number): Iq3Tables => iqSearchTables(levels, 4, 3, 4096, nwant);

const tables = new Map<string, Iq3Tables>();

/** The quantizer's tables of the IQ3_XXS (256 entries) or IQ3_S (512) grid. */
export function iq3Tables(type: 'IQ3_XXS' | 'IQ3_S'): Iq3Tables {
  let t = tables.get(type);
  if (!t) {
    t = type === 'IQ3_XXS' ? buildTables(iqGridCodes('IQ3XXS'), 2) : buildTables(iqGridCodes('IQ3S'), 3);
    tables.set(type, t);
  }
  return t;
}

/** What differs between the two quantizers' searches over 32 values. */
export interface Iq3Search {
  readonly tables: Iq3Tables;
  /** Trial scales (15 + is·0.2)/max for is in −trials … trials: 15 for IQ3_XXS, 9 for IQ3_S. */
  readonly trials: number;
  /**
   * IQ3_XXS: 7 sign bits per 8 values (an odd count of negatives flips the value of least
   * w·x², which the grid then fits unsigned), a group of 32 below GROUP_MAX_EPS_IQ3_XXS is
   * skipped, and only groups of 4 off the grid are refit. IQ3_S: 8 sign bits, only an all-zero
   * group is skipped, and every group is refit.
   */
  readonly xxs: boolean;
}

/** GROUP_MAX_EPS_IQ3_XXS. */
const EPS_XXS = f32(1e-8);
const FIFTH = f32(0.2);
const FLT_MAX = 3.4028234663852886e38;

/** Why a block cannot be written: ggml's quantizer stops on it. */
const IQ3_TOO_LARGE = iqTooLarge('IQ3');

const weight = new Float32Array(32);
const waux = new Float32Array(32);
const xval = new Float32Array(32);
const L = new Uint8Array(32);
const Laux = new Uint8Array(32);
const onGrid = new Uint8Array(8);
const onGridAux = new Uint8Array(8);

/** The sign bytes of the 32 values last searched (IQ3_XXS: the low 7 bits). */
export const searchSigns = new Uint8Array(4);
/** The grid entry of each group of 4 of the 32 values last searched. */
export const searchEntries = new Uint16Array(8);

/**
 * iq3_find_best_neighbour: of the entries listed at `neighbours[o]`, the one nearest to
 * xval[at…at+4) at `scale`, by Σ waux·diff² (the first on ties); its levels go to dst[at…].
 */
function bestNeighbour(t: Iq3Tables, o: number, at: number, scale: number, dst: Uint8Array): number {
  const nb = t.neighbours;
  const lv = t.levels;
  let best = FLT_MAX;
  let entry = -1;
  for (let j = 1; j <= nb[o]; j++) {
    const e = nb[o + j];
    let d2 = 0;
    for (let i = 0; i < 4; i++) {
      const diff = f32(f32(scale * (2 * lv[4 * e + i] + 1)) - xval[at + i]);
      d2 = f32(d2 + f32(f32(waux[at + i] * diff) * diff));
    }
    if (d2 < best) {
      best = d2;
      entry = e;
    }
  }
  // Every distance overflowed f32 (values of magnitude beyond about 10¹²) or is NaN: ggml aborts
  // here (GGML_ASSERT), so llama-quantize cannot write such a block either.
  if (entry < 0) throw new MergeError('NON_FINITE', IQ3_TOO_LARGE);
  for (let i = 0; i < 4; i++) dst[at + i] = lv[4 * entry + i];
  return entry;
}

/** 4 levels of `levels[at…]` packed 3 bits each: the grid map's key. */
function key(levels: Uint8Array, at: number): number {
  return levels[at] | (levels[at + 1] << 3) | (levels[at + 2] << 6) | (levels[at + 3] << 9);
}

/** nearest_int(0.5·(id·x − 1)) clamped to the 8 levels. */
function levelOf(id: number, x: number): number {
  const l = nearestInt(f32(0.5 * f32(f32(id * x) - 1)));
  return l < 0 ? 0 : l > 7 ? 7 : l;
}

/** Σ w·x·q and Σ w·q² (q = 2·level + 1) of the 32 values, as C sums them. */
let sumQX = 0;
let sumQ2 = 0;
function sums(levels: Uint8Array): void {
  let sumqx = 0;
  let sumq2 = 0;
  for (let i = 0; i < 32; i++) {
    const w = weight[i];
    const q = 2 * levels[i] + 1;
    sumqx = f32(sumqx + f32(f32(w * xval[i]) * q));
    sumq2 = f32(sumq2 + f32(f32(w * q) * q));
  }
  sumQX = sumqx;
  sumQ2 = sumq2;
}

/**
 * The scale of x[from … from+32) and, in searchSigns / searchEntries, its signs and grid entries;
 * undefined where C skips the 32 values (its scale is then 0 and nothing of them is written).
 */
export function searchThirtyTwo(x: Float32Array, from: number, s: Iq3Search, qw?: Float32Array, sigma2 = 0): number | undefined {
  const t = s.tables;
  // With importance weights (per value of the row, at the same index) qw·sqrtf(σ² + x²), else x².
  if (qw) importanceWeights(x, from, qw, from, sigma2, 32, weight);
  for (let i = 0; i < 32; i++) {
    if (!qw) weight[i] = f32(x[from + i] * x[from + i]);
    waux[i] = f32(Math.sqrt(weight[i]));
  }
  for (let k = 0; k < 4; k++) {
    let nflip = 0;
    let signs = 0;
    for (let i = 0; i < 8; i++) {
      const v = x[from + 8 * k + i];
      if (v >= 0) xval[8 * k + i] = v;
      else {
        xval[8 * k + i] = -v;
        nflip++;
        signs |= 1 << i;
      }
    }
    if (s.xxs && nflip % 2) {
      // The eighth sign is implied (even count), so one value's sign is given up: the cheapest.
      let imin = 0;
      let min = f32(f32(weight[8 * k] * x[from + 8 * k]) * x[from + 8 * k]);
      for (let i = 1; i < 8; i++) {
        const xi = x[from + 8 * k + i];
        const ax = f32(f32(weight[8 * k + i] * xi) * xi);
        if (ax < min) {
          min = ax;
          imin = i;
        }
      }
      xval[8 * k + imin] = -xval[8 * k + imin];
      signs ^= 1 << imin;
    }
    searchSigns[k] = s.xxs ? signs & 127 : signs;
  }
  let max = xval[0];
  for (let i = 1; i < 32; i++) max = cmax(max, xval[i]);
  L.fill(0);
  if (s.xxs ? max < EPS_XXS : max === 0) return undefined;

  const { map, levels } = t;
  let best = 0;
  let scale = f32(max / 15);
  onGrid.fill(s.xxs ? 1 : 0);
  for (let is = -s.trials; is <= s.trials; is++) {
    const id = f32(f32(15 + f32(is * FIFTH)) / max);
    const thisScale = f32(1 / id);
    for (let k = 0; k < 8; k++) {
      for (let i = 0; i < 4; i++) Laux[4 * k + i] = levelOf(id, xval[4 * k + i]);
      const m = map[key(Laux, 4 * k)];
      onGridAux[k] = 1;
      if (m < 0) {
        onGridAux[k] = 0;
        bestNeighbour(t, -m - 1, 4 * k, thisScale, Laux);
      }
    }
    sums(Laux);
    if (sumQ2 > 0 && f32(sumQX * sumQX) > f32(best * sumQ2)) {
      scale = f32(sumQX / sumQ2);
      best = f32(scale * sumQX);
      L.set(Laux);
      onGrid.set(onGridAux);
    }
  }
  let offGrid = 0;
  for (let k = 0; k < 8; k++) if (!onGrid[k]) offGrid++;
  if (offGrid > 0 && scale > 0) {
    // Groups the best trial left off the grid are fit again at its scale.
    const id = f32(1 / scale);
    for (let k = 0; k < 8; k++) {
      if (s.xxs && onGrid[k]) continue;
      for (let i = 0; i < 4; i++) L[4 * k + i] = levelOf(id, xval[4 * k + i]);
      let e = map[key(L, 4 * k)];
      if (e < 0) e = bestNeighbour(t, -e - 1, 4 * k, scale, L);
      for (let i = 0; i < 4; i++) L[4 * k + i] = levels[4 * e + i];
    }
    sums(L);
    if (sumQ2 > 0) scale = f32(sumQX / sumQ2);
  }
  if (scale < 0) {
    // The scale is stored unsigned: C flips it and the signs (a flipped xxs value can make it negative).
    scale = -scale;
    for (let k = 0; k < 4; k++) searchSigns[k] = ~searchSigns[k] & (s.xxs ? 127 : 255);
  }
  // GGML_ASSERT(scale >= 0): a NaN scale stops ggml too.
  if (!(scale >= 0)) throw new MergeError('NON_FINITE', IQ3_TOO_LARGE);
  for (let k = 0; k < 8; k++) {
    const e = map[key(L, 4 * k)];
    if (e < 0) throw new MergeError('NON_FINITE', IQ3_TOO_LARGE);
    searchEntries[k] = e;
  }
  return scale;
}
