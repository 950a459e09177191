/**
 * The 4-bit e2m1 values MXFP4 and NVFP4 share (ggml-common.h kvalues_mxfp4: the e2m1 levels
 * doubled, their scales halved to match) and ggml's rule for choosing one (best_index_mxfp4 in
 * ggml-quants.c): the first code, in table order, whose error |level·d − x| (level·d an f32
 * product, then one f32 subtraction) is smallest, so ties go to the level met first: towards zero.
 */
import { KVALUES_MXFP4 } from './iq-grids.js';

export { KVALUES_MXFP4 };

const f32 = Math.fround;

/** Code (0–7) of the largest level ≤ t·d, for 0 ≤ t < 16: levels 0, 1, 2, 3, 4, 6, 8, 12. */
const BELOW = Int8Array.from([0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7]);

/** One block's scale d: its eight levels ≥ 0 (codes 0–7) as C's f32 products, and 1/d. */
export class Fp4Scale {
  readonly levels = new Float64Array(8);
  private inverse = 0;

  set(d: number): this {
    for (let i = 0; i < 8; i++) this.levels[i] = f32(KVALUES_MXFP4[i] * d);
    this.inverse = d > 0 ? 1 / d : 0;
    return this;
  }

  /**
   * best_index_mxfp4(x, d): the code C's loop over all 16 chooses, found without the loop.
   * Codes 8–15 hold the negatives of codes 0–7 (8 is a second zero) and C's f32 arithmetic is
   * symmetric, so x < 0 takes the code of |x| moved to 9–15, or 0: the second zero only ties with
   * the first, and a level of the wrong sign errs by |level| + |x|, never less than code 0's |x|.
   * Among levels ≥ 0 the exact errors fall, then rise; the nearest level is one of the two around
   * x, and f32 rounding (monotonic) can only make neighbours tie with it, never beat it: the first
   * of those is the lowest code whose rounded error equals the least. NaN gives 0.
   */
  bestIndex(x: number): number {
    const a = Math.abs(x);
    const code = this.nearest(a);
    return x < 0 && code > 0 ? code + 8 : code;
  }

  private nearest(a: number): number {
    if (!(a > 0) || this.inverse === 0) return 0;
    const levels = this.levels;
    const t = a * this.inverse;
    // Below: the largest level ≤ a (t is rounded: the comparisons settle it exactly).
    let i = t < 16 ? BELOW[Math.floor(t)] : 7;
    while (i < 7 && levels[i + 1] <= a) i++;
    while (i > 0 && levels[i] > a) i--;
    let best = i;
    let err = Math.abs(f32(levels[i] - a));
    if (i < 7) {
      const above = Math.abs(f32(levels[i + 1] - a));
      if (above < err) {
        best = i + 1;
        err = above;
      }
    }
    while (best > 0 && Math.abs(f32(levels[best - 1] - a)) === err) best--;
    return best;
  }
}
