/**
 * PEFT methods' updates in float64, written from PEFT's get_delta_weight (GraLoRA's from its
 * forward): what a merged weight is checked against. Imports nothing from the library.
 */
import { mm } from './dense-f64.js';

/** topk largest logits of a row (indices, softmax weights), as torch's topk and softmax give them. */
export function topkSoftmax(row: ArrayLike<number>, k: number): { idx: number[]; w: number[] } {
  const idx = Array.from(row, (_, i) => i).sort((x, y) => row[y] - row[x]).slice(0, k);
  const e = idx.map((i) => Math.exp(row[i]));
  const sum = e.reduce((x, y) => x + y, 0);
  return { idx, w: e.map((x) => x / sum) };
}

/** PEFT's A (r, in) and B (out, r) from per-row selections of the bank (nv vectors of length len). */
export function vbFactors(selA: (row: number) => { idx: number[]; w: number[] }, selB: (row: number) => { idx: number[]; w: number[] }, bank: Float64Array, len: number, r: number, out: number, inF: number) {
  const vec = (s: { idx: number[]; w: number[] }, l: number) => s.idx.reduce((acc, i, j) => acc + s.w[j] * bank[i * len + l], 0);
  const a = new Float64Array(r * inF), b = new Float64Array(out * r);
  // logits_A (r, in/len, nv): A = rebuilt (r, in/len, len) reshaped (r, in).
  for (let k = 0; k < r; k++) for (let c = 0; c < inF / len; c++) for (let l = 0; l < len; l++) a[k * inF + c * len + l] = vec(selA(k * (inF / len) + c), l);
  // logits_B (out/len, r, nv): rebuilt (out/len, r, len), transposed (out/len, len, r), reshaped (out, r).
  for (let p = 0; p < out / len; p++) for (let k = 0; k < r; k++) for (let l = 0; l < len; l++) b[(p * len + l) * r + k] = vec(selB(p * r + k), l);
  return { a, b };
}

/** PEFT's _compute_delta: B·diag(λ/r/(max(‖A_k‖, 1e-4)·max(‖B^k‖, 1e-4)))·A, times w_norm per input. */
export function deloraDelta(a: Float64Array, b: Float64Array, lambda: number, wNorm: Float64Array, r: number, out: number, inF: number): Float64Array {
  const d = new Float64Array(out * inF);
  for (let k = 0; k < r; k++) {
    let an = 0, bn = 0;
    for (let i = 0; i < inF; i++) an += a[k * inF + i] ** 2;
    for (let o = 0; o < out; o++) bn += b[o * r + k] ** 2;
    const diag = lambda / r / (Math.max(Math.sqrt(an), 1e-4) * Math.max(Math.sqrt(bn), 1e-4));
    for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) d[o * inF + i] += b[o * r + k] * diag * a[k * inF + i] * wNorm[i];
  }
  return d;
}

/**
 * GraLoRA's ΔW (out, in), unscaled, from its forward on each unit input e_l: h[n, ρ] = Σ_i x[n, i]·A[n, i, ρ]
 * over input blocks n, viewed (N, N, r/N) and its first two dims swapped, then block j's output
 * Σ_ρ h'[j, ρ]·B[j, ρ, o]; plus B_general·A_general.
 */
export function graloraDelta(a: Float64Array, b: Float64Array, n: number, r: number, out: number, inF: number, ag?: Float64Array, bg?: Float64Array, h = 0): Float64Array {
  const inB = inF / n, outB = out / n, sub = r / n;
  const d = new Float64Array(out * inF);
  for (let l = 0; l < inF; l++) {
    const x = new Float64Array(inF);
    x[l] = 1;
    const hh = new Float64Array(n * r);
    for (let bn = 0; bn < n; bn++) for (let rho = 0; rho < r; rho++) for (let i = 0; i < inB; i++) hh[bn * r + rho] += x[bn * inB + i] * a[(bn * inB + i) * r + rho];
    // view (N, N, sub) [n, j, s] → permute → [j, n, s] → (N, r)
    const hp = new Float64Array(n * r);
    for (let bn = 0; bn < n; bn++) for (let j = 0; j < n; j++) for (let s = 0; s < sub; s++) hp[j * r + bn * sub + s] = hh[bn * r + j * sub + s];
    for (let j = 0; j < n; j++) for (let o = 0; o < outB; o++) for (let rho = 0; rho < r; rho++) d[(j * outB + o) * inF + l] += hp[j * r + rho] * b[(j * r + rho) * outB + o];
  }
  if (ag && bg) {
    const p = mm(bg, ag, out, h, inF);
    for (let i = 0; i < d.length; i++) d[i] += p[i];
  }
  return d;
}

/** The block-circulant C (out × in) of a kernel (m, n, b). */
export function circulant(w: Float64Array, m: number, n: number, b: number): Float64Array {
  const c = new Float64Array(m * b * n * b);
  for (let mi = 0; mi < m; mi++) {
    for (let ni = 0; ni < n; ni++) {
      for (let j = 0; j < b; j++) for (let tt = 0; tt < b; tt++) c[(mi * b + j) * n * b + ni * b + tt] = w[(mi * n + ni) * b + (((tt - j) % b) + b) % b];
    }
  }
  return c;
}

/** Each r×r tile W_ij of W (out × inF) to W_ij + s·(W_ij·B_i + B_i), B (out/r, r, r). */
export function batTruth(w: Float64Array, blocks: Float64Array, out: number, inF: number, r: number, s = 1): Float64Array {
  const res = w.slice();
  for (let i = 0; i < out / r; i++) {
    for (let j = 0; j < inF / r; j++) {
      for (let a = 0; a < r; a++) {
        for (let c = 0; c < r; c++) {
          let wb = 0;
          for (let k = 0; k < r; k++) wb += w[(i * r + a) * inF + j * r + k] * blocks[(i * r + k) * r + c];
          res[(i * r + a) * inF + j * r + c] += s * (wb + blocks[(i * r + a) * r + c]);
        }
      }
    }
  }
  return res;
}

/**
 * PEFT's Tucker core for a Conv1d (use_effective_conv2d): einsum("i j k, i p, j q -> p q k",
 * core (r, r, k), wa (r, p), wb (r, q)), as (p, q, k) row-major. LyCORIS's Tucker forms (lora_mid,
 * LoHa's and LoKr's t) are the same einsum, with a conv's kh·kw taps as k.
 */
export function tuckerConv1d(core: Float64Array, wa: Float64Array, wb: Float64Array, r: number, p: number, q: number, k: number): Float64Array {
  const out = new Float64Array(p * q * k);
  for (let a = 0; a < p; a++) for (let b = 0; b < q; b++) for (let t = 0; t < k; t++) {
    let s = 0;
    for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) s += core[(i * r + j) * k + t] * wa[i * p + a] * wb[j * q + b];
    out[(a * q + b) * k + t] = s;
  }
  return out;
}

/**
 * VeRA's and PVeRA's merge in float64: W + weight·(λ_b ⊙ B[:out, :r])·(λ_d[:r] ⊙ A[:r, :in]), the
 * shared A (rows, inMax) and B (outMax, r) sliced to the layer (out, in).
 */
export function veraTruth(w: Float64Array, out: number, inF: number, r: number, a: ArrayLike<number>, inMax: number, b: ArrayLike<number>, lb: Float64Array, ld: Float64Array, weight = 1): Float64Array {
  const res = w.slice();
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inF; i++) {
      let s = 0;
      for (let c = 0; c < r; c++) s += lb[o] * b[o * r + c] * ld[c] * a[c * inMax + i];
      res[o * inF + i] += weight * s;
    }
  }
  return res;
}
