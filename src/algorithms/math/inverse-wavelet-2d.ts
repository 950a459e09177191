/**
 * One level of the 2-D inverse discrete wavelet transform as PyTorch-Wavelet-Toolbox's waverec2d
 * computes it (the copy PEFT's WaveFT carries): the four (h, w) sub-bands go through
 * conv_transpose2d with stride 2 and the outer-product filters, and L − 2 rows and columns are cut
 * from each side (L the filter length). Written out, with p = L − 2:
 *
 *   out[y, x] = Σ_band Σ_{i,j} C_band[i, j] · r_band[y + p − 2i] · c_band[x + p − 2j]
 *
 * (a filter index outside [0, L) contributes nothing), (r, c) = (lo, lo) for the approximation,
 * (hi, lo) for the horizontal detail, (lo, hi) for the vertical, (hi, hi) for the diagonal (the
 * toolbox's `_outer(hi, lo)` puts hi along the rows). The output is (2h − L + 2, 2w − L + 2).
 *
 * The sub-bands are sparse here (WaveFT trains a few coefficients) and the output is formed in
 * float64 by row slabs, never whole: rows first into two column spectra (one per column filter),
 * then the column filters, so a slab costs its coefficients·L plus rows·cols·L.
 */

/** Sub-band number of the approximation (waverec2d's first coefficient tensor). */
export const BAND_APPROXIMATION = 0;
/** Sub-band number of the horizontal detail (hi along the rows, lo along the columns). */
export const BAND_HORIZONTAL = 1;
/** Sub-band number of the vertical detail (lo along the rows, hi along the columns). */
export const BAND_VERTICAL = 2;
/** Sub-band number of the diagonal detail (hi both ways). */
export const BAND_DIAGONAL = 3;

/** Sparse sub-band coefficients: entry k is `value[k]` at (i[k], j[k]) of sub-band `band[k]`. */
export interface SparseSubbands {
  band: Uint8Array;
  i: Uint32Array;
  j: Uint32Array;
  value: ArrayLike<number>;
}

/** The one-level inverse transform of sparse (h, w) sub-bands, read by row slabs. */
export class SparseInverseWavelet2d {
  /** Output rows, 2h − L + 2. */
  readonly rows: number;
  /** Output columns, 2w − L + 2. */
  readonly cols: number;
  private readonly lo: Float64Array;
  private readonly hi: Float64Array;
  private readonly w: number;
  /** Entries ordered by sub-band row: those of row i are order[start[i] … start[i + 1]). */
  private readonly start: Uint32Array;
  private readonly order: Uint32Array;

  constructor(recLo: Float64Array, recHi: Float64Array, h: number, w: number, private readonly c: SparseSubbands) {
    const L = recLo.length;
    if (L < 2 || recHi.length !== L) throw new RangeError(`inverse wavelet: filters of ${L} and ${recHi.length} taps`);
    this.rows = 2 * h - L + 2;
    this.cols = 2 * w - L + 2;
    if (this.rows <= 0 || this.cols <= 0) throw new RangeError(`inverse wavelet: (${h}, ${w}) sub-bands are too small for a ${L}-tap filter`);
    this.lo = recLo;
    this.hi = recHi;
    this.w = w;
    const n = c.band.length;
    const start = new Uint32Array(h + 1);
    for (let k = 0; k < n; k++) {
      if (c.i[k] >= h || c.j[k] >= w || c.band[k] > 3) throw new RangeError(`inverse wavelet: coefficient ${k} at band ${c.band[k]} (${c.i[k]}, ${c.j[k]}) is outside (${h}, ${w}) sub-bands`);
      start[c.i[k] + 1]++;
    }
    for (let i = 0; i < h; i++) start[i + 1] += start[i];
    const next = start.slice(0, h), order = new Uint32Array(n);
    for (let k = 0; k < n; k++) order[next[c.i[k]]++] = k;
    this.start = start;
    this.order = order;
  }

  /**
   * Output rows [rowStart, rowStart + rowCount), columns [colStart, colStart + colCount), row-major
   * into `target` (rowCount·colCount values; a Float32Array rounds each float64 sum once).
   */
  rowsInto(rowStart: number, rowCount: number, colStart: number, colCount: number, target: Float64Array | Float32Array): void {
    const { lo, hi, w, c, start, order } = this;
    const L = lo.length, p = L - 2, h = start.length - 1;
    if (rowStart < 0 || colStart < 0 || rowStart + rowCount > this.rows || colStart + colCount > this.cols) throw new RangeError('inverse wavelet: rows or columns outside the output');
    // Row-filtered coefficients, one (rowCount, w) plane per column filter: lo (approximation,
    // horizontal) and hi (vertical, diagonal).
    const planes = new Float64Array(2 * rowCount * w);
    // Sub-band row i reaches output rows y with 0 ≤ y + p − 2i < L.
    const iFirst = Math.max(0, Math.ceil((rowStart + p - L + 1) / 2)), iLast = Math.min(h - 1, Math.floor((rowStart + rowCount - 1 + p) / 2));
    for (let i = iFirst; i <= iLast; i++) {
      const y0 = 2 * i - p - rowStart; // slab row of filter tap 0
      const r0 = Math.max(0, y0), r1 = Math.min(rowCount - 1, y0 + L - 1);
      for (let e = start[i]; e < start[i + 1]; e++) {
        const k = order[e], band = c.band[k], v = c.value[k];
        const rowFilter = band === BAND_HORIZONTAL || band === BAND_DIAGONAL ? hi : lo;
        const plane = band === BAND_VERTICAL || band === BAND_DIAGONAL ? 1 : 0;
        const at = plane * rowCount * w + c.j[k];
        for (let r = r0; r <= r1; r++) planes[at + r * w] += v * rowFilter[r - y0];
      }
    }
    for (let r = 0; r < rowCount; r++) {
      const loRow = r * w, hiRow = (rowCount + r) * w;
      for (let x = 0; x < colCount; x++) {
        const X = colStart + x + p;
        const jFirst = Math.max(0, Math.ceil((X - L + 1) / 2)), jLast = Math.min(w - 1, Math.floor(X / 2));
        let sum = 0;
        for (let j = jFirst; j <= jLast; j++) sum += planes[loRow + j] * lo[X - 2 * j] + planes[hiRow + j] * hi[X - 2 * j];
        target[r * colCount + x] = sum;
      }
    }
  }
}
