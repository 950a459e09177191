/**
 * LyCORIS / PEFT LoKr: ΔW = kron(W₁, W₂) reshaped to W, W₁ = lokr_w1 or lokr_w1_a·lokr_w1_b,
 * W₂ = lokr_w2, lokr_w2_a·lokr_w2_b, or the Tucker form of lokr_t2 with lokr_w2_a/_b.
 * The scale is α/r with r the inner dimension of the decomposed factor (w1_b's rows, else w2_b's),
 * and exactly 1 when neither factor is decomposed: LyCORIS then sets α = rank itself and stores
 * it in `.alpha`, which its loader and ComfyUI ignore (modules/lokr.py). Applied once, as LyCORIS's forward pass
 * and ComfyUI apply it (LyCORIS's get_diff_weight multiplies by the scale twice).
 * Trained with rs_lora, the both-full case is scaled by √r instead (lokrFullRankUnderRsLora).
 */
import { fullAsFactors, kronFactors, rankOf, type Factors } from './low-rank-forms.js';
import type { Matrix } from './matrix.js';

/** A LoKr factor as stored: full, or already a product (plain or from a Tucker core). */
export type KronFactor = { full: Matrix } | { factors: Factors };

/** The scale of a LoKr module: α/r of the decomposed factor, 1 when both are full. */
export function lokrScale(alpha: number | undefined, decomposedRank: number | undefined): number {
  if (decomposedRank === undefined) return 1;
  const a = alpha === undefined || alpha === 0 ? decomposedRank : alpha;
  return a / decomposedRank;
}

/**
 * The rank LyCORIS was given for a LoKr module with both factors full trained with rs_lora: its
 * scale is then r/√r = √r, and its `.alpha` holds r·√r (modules/lokr.py). r is the first of the
 * recorded ranks, else of the whole number nearest α^(2/3), whose r^1.5 is α within
 * `relativeTolerance` (the rounding of the dtype α was saved in); null when none is.
 */
export function lokrFullRankUnderRsLora(alpha: number, relativeTolerance: number, recordedRanks: readonly number[]): number | null {
  for (const r of [...recordedRanks, Math.round(alpha ** (2 / 3))]) {
    if (r > 0 && Math.abs(r ** 1.5 - alpha) <= relativeTolerance * alpha) return r;
  }
  return null;
}

/**
 * The cheaper exact form of kron(W₁, W₂) for the engine: a product (each element of W then costs
 * a dot product of the rank's length), unless both factors are full and the rank exceeds a quarter
 * of ΔW's smaller side: then the two full factors, whose kron the loader writes out by rows (each
 * element one multiply, like reading W).
 */
export function lokrForm(w1: KronFactor, w2: KronFactor, out: number, inF: number):
  | { kind: 'low-rank'; factors: Factors }
  | { kind: 'dense'; w1: Matrix; w2: Matrix } {
  const f1 = 'full' in w1 ? fullAsFactors(w1.full) : w1.factors;
  const f2 = 'full' in w2 ? fullAsFactors(w2.full) : w2.factors;
  if ('full' in w1 && 'full' in w2 && rankOf(f1) * rankOf(f2) > Math.min(out, inF) / 4) {
    return { kind: 'dense', w1: w1.full, w2: w2.full };
  }
  return { kind: 'low-rank', factors: kronFactors(f1, f2) };
}

/**
 * PEFT's LoKr on a Conv1d with W₂ stored whole, (b, d, k): its make_kron adds kernel dims to W₁
 * only beside a 4-D W₂, so torch.kron pads the 2-D W₁ (a, c) at the front to (1, a, c) and the
 * (b, a·d, c·k) product is reshaped to the layer's (a·b, c·d, k):
 * ΔW[j·a + i, (q·c + p)·k + t] = W₁[i, p]·W₂[j, q, t]. That is LyCORIS's kron
 * [i·b + j, (p·d + q)·k + t] with its rows and columns permuted; `row` and `col` map an index of
 * PEFT's ΔW (columns flattened to c·d·k) to LyCORIS's.
 */
export function peftConv1dKronOrder(a: number, c: number, b: number, d: number, k: number): { row(o: number): number; col(x: number): number } {
  return {
    row: (o) => (o % a) * b + Math.floor(o / a),
    col: (x) => {
      const y = Math.floor(x / k);
      return ((y % c) * d + Math.floor(y / c)) * k + (x % k);
    },
  };
}

/** Factors of LyCORIS's kron rearranged to PEFT's Conv1d order (B's rows and A's columns moved, exact values with them). */
export function permutedKronFactors(f: Factors, order: { row(o: number): number; col(x: number): number }): Factors {
  const rank = f.b.cols, out = f.b.rows, inF = f.a.cols;
  const rows = <T extends Float32Array | Float64Array>(src: T, make: (n: number) => T): T => {
    const dst = make(src.length);
    for (let o = 0; o < out; o++) dst.set(src.subarray(order.row(o) * rank, (order.row(o) + 1) * rank), o * rank);
    return dst;
  };
  const cols = <T extends Float32Array | Float64Array>(src: T, make: (n: number) => T): T => {
    const dst = make(src.length);
    for (let r = 0; r < rank; r++) for (let x = 0; x < inF; x++) dst[r * inF + x] = src[r * inF + order.col(x)];
    return dst;
  };
  const f32 = (n: number) => new Float32Array(n), f64 = (n: number) => new Float64Array(n);
  return {
    b: { rows: out, cols: rank, data: rows(f.b.data, f32) },
    a: { rows: rank, cols: inF, data: cols(f.a.data, f32) },
    ...(f.exact ? { exact: { b: rows(f.exact.b, f64), a: cols(f.exact.a, f64) } } : {}),
  };
}
