/**
 * The adapter algorithms' math against float64 truth written from the definitions (LyCORIS's and
 * PEFT's einsums, written out as loops): kron products of factors, Tucker cores, LoHa's Hadamard
 * product, VeRA's slicing, GLoRA's projection on convs, OFT's Cayley rotation with its constraint.
 */
import { describe, expect, it } from 'vitest';
import { fullAsFactors, gloraProjection, hadamardFactors, kronFactors, kronRows, tuckerFactors, veraFactors, type Factors } from '../src/algorithms/math/low-rank-forms.js';
import { matrix, type Matrix } from '../src/algorithms/math/matrix.js';
import { cayley, diagOftBlocks } from '../src/algorithms/math/oft.js';
import { lokrForm, lokrScale } from '../src/algorithms/math/lokr.js';
import { ia3Factors } from '../src/algorithms/math/ia3.js';
import { seededRandom } from './helpers/fixtures.js';

function randomMatrix(rand: () => number, rows: number, cols: number): Matrix {
  return matrix(rows, cols, Array.from({ length: rows * cols }, () => rand() * 2 - 1));
}

/** B·A in f64. */
function product(f: Factors): Float64Array {
  const { b, a } = f;
  expect(b.cols).toBe(a.rows);
  const out = new Float64Array(b.rows * a.cols);
  for (let o = 0; o < b.rows; o++) {
    for (let i = 0; i < a.cols; i++) {
      let s = 0;
      for (let k = 0; k < b.cols; k++) s += b.data[o * b.cols + k] * a.data[k * a.cols + i];
      out[o * a.cols + i] = s;
    }
  }
  return out;
}

function mm(x: Matrix, y: Matrix): Float64Array {
  return product({ b: x, a: y });
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-5): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  expect(worst, `max error ${worst} at scale ${scale}`).toBeLessThanOrEqual(tol * Math.max(scale, 1e-30));
}

describe('LoKr: kron(W1, W2) as a product of krons', () => {
  // W1 (a × c); W2 (b × d × K) flattened (b, d·K); ΔW[o1·b + o2, (i1·d + i2)·K + k] = W1[o1,i1]·W2[o2,i2,k].
  const cases: Array<[string, { a: number; c: number; b: number; d: number; K: number; r1?: number; r2?: number }]> = [
    ['linear, W1 full, W2 = w2a·w2b (r = 1)', { a: 4, c: 2, b: 5, d: 7, K: 1, r2: 1 }],
    ['linear, both decomposed (r = 3)', { a: 6, c: 4, b: 3, d: 5, K: 1, r1: 3, r2: 3 }],
    ['conv 3×3, W1 full, W2 = w2a·w2b flattened (r = 2)', { a: 2, c: 3, b: 4, d: 2, K: 9, r2: 2 }],
    ['conv 1×3, both full', { a: 3, c: 2, b: 2, d: 3, K: 3 }],
  ];
  it.each(cases)('%s', (_, s) => {
    const rand = seededRandom(s.a * 100 + s.d);
    const f1: Factors = s.r1 ? { b: randomMatrix(rand, s.a, s.r1), a: randomMatrix(rand, s.r1, s.c) } : fullAsFactors(randomMatrix(rand, s.a, s.c));
    const f2: Factors = s.r2 ? { b: randomMatrix(rand, s.b, s.r2), a: randomMatrix(rand, s.r2, s.d * s.K) } : fullAsFactors(randomMatrix(rand, s.b, s.d * s.K));
    const w1 = product(f1), w2 = product(f2);
    const truth = new Float64Array(s.a * s.b * s.c * s.d * s.K);
    const cols = s.c * s.d * s.K;
    for (let o1 = 0; o1 < s.a; o1++) for (let o2 = 0; o2 < s.b; o2++) for (let i1 = 0; i1 < s.c; i1++) for (let i2 = 0; i2 < s.d; i2++) for (let k = 0; k < s.K; k++) {
      truth[(o1 * s.b + o2) * cols + (i1 * s.d + i2) * s.K + k] = w1[o1 * s.c + i1] * w2[o2 * s.d * s.K + i2 * s.K + k];
    }
    const f = kronFactors(f1, f2);
    expect(f.b.cols).toBe(f1.b.cols * f2.b.cols);
    expectClose(product(f), truth);
    // The dense form, by rows, agrees with the product.
    const m1 = matrix(s.a, s.c, w1), m2 = matrix(s.b, s.d * s.K, w2);
    const rows = s.a * s.b;
    expectClose(kronRows(m1, m2, 1, rows - 2), truth.subarray(cols, (rows - 1) * cols));
  });

  it('a full matrix becomes factors of its smaller dimension', () => {
    expect(fullAsFactors(matrix(3, 8)).b.cols).toBe(3);
    expect(fullAsFactors(matrix(8, 3)).b.cols).toBe(3);
  });
});

describe('Tucker cores: ΔW[p, q, k] = Σ_ij t[i, j, k]·wa[i, p]·wb[j, q]', () => {
  it.each([[1, 1, 9], [3, 3, 9], [4, 2, 3], [2, 5, 1]])('rᵢ = %i, rⱼ = %i, K = %i', (ri, rj, K) => {
    const rand = seededRandom(ri * 31 + rj * 7 + K);
    const P = 6, Q = 5;
    const t = Float32Array.from({ length: ri * rj * K }, () => rand() - 0.5);
    const wa = randomMatrix(rand, ri, P), wb = randomMatrix(rand, rj, Q);
    const truth = new Float64Array(P * Q * K);
    for (let p = 0; p < P; p++) for (let q = 0; q < Q; q++) for (let k = 0; k < K; k++) {
      let s = 0;
      for (let i = 0; i < ri; i++) for (let j = 0; j < rj; j++) s += t[(i * rj + j) * K + k] * wa.data[i * P + p] * wb.data[j * Q + q];
      truth[p * Q * K + q * K + k] = s;
    }
    const f = tuckerFactors(t, K, wa, wb);
    expect(f.b.cols).toBe(ri);
    expectClose(product(f), truth);
  });
});

it('LoHa: (B₁A₁) ⊙ (B₂A₂) as a rank r₁·r₂ product', () => {
  const rand = seededRandom(5);
  const f1 = { b: randomMatrix(rand, 7, 3), a: randomMatrix(rand, 3, 11) };
  const f2 = { b: randomMatrix(rand, 7, 2), a: randomMatrix(rand, 2, 11) };
  const x = product(f1), y = product(f2);
  const f = hadamardFactors(f1, f2);
  expect(f.b.cols).toBe(6);
  expectClose(product(f), x.map((v, i) => v * y[i]));
});

it('VeRA: λ_b ⊙ vera_B[:out] times λ_d ⊙ vera_A[:, :in]', () => {
  const rand = seededRandom(8);
  const r = 4, outMax = 9, inMax = 12, out = 6, inF = 10;
  const A = randomMatrix(rand, r, inMax), B = randomMatrix(rand, outMax, r);
  const lb = Array.from({ length: out }, () => rand()), ld = Array.from({ length: r }, () => rand());
  const truth = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let s = 0;
    for (let k = 0; k < r; k++) s += lb[o] * B.data[o * r + k] * ld[k] * A.data[k * inMax + i];
    truth[o * inF + i] = s;
  }
  expectClose(product(veraFactors(A, B, lb, ld, out, inF)), truth);
  expect(() => veraFactors(A, B, lb.slice(1), ld, out, inF)).toThrow(/vera_lambda_b has 5 values \(expected 6\)/);
});

it('GLoRA on a conv: W·a1·a2 mixes input channels at each kernel position', () => {
  // einsum("o i ..., i j -> o j ...") twice, on W (out, in, kh, kw).
  const rand = seededRandom(13);
  const out = 3, cin = 4, r = 2, K = 6;
  const w = randomMatrix(rand, out, cin * K);
  const a1 = randomMatrix(rand, cin, r), a2 = randomMatrix(rand, r, cin);
  const truth = new Float64Array(out * cin * K);
  for (let o = 0; o < out; o++) for (let m = 0; m < cin; m++) for (let k = 0; k < K; k++) {
    let s = 0;
    for (let c = 0; c < cin; c++) for (let j = 0; j < r; j++) s += w.data[o * cin * K + c * K + k] * a1.data[c * r + j] * a2.data[j * cin + m];
    truth[o * cin * K + m * K + k] = s;
  }
  const { p, q } = gloraProjection(a1, a2, K);
  const wp = matrix(out, r * K, mm(w, p));
  expectClose(mm(wp, q), truth);
});

describe('OFT: Cayley rotations', () => {
  it('a 2 × 2 block has the closed form (1/(1+q²))·[[1−q², 2q], [−2q, 1−q²]]', () => {
    const q = 0.3;
    const r = cayley(Float64Array.from([0, q, -q, 0]), 2);
    const d = 1 + q * q;
    expectClose(r, [(1 - q * q) / d, 2 * q / d, -2 * q / d, (1 - q * q) / d], 1e-14);
  });

  it('R·(I − Q) = I + Q and RᵀR = I for random skew-symmetric Q', () => {
    const rand = seededRandom(2);
    const b = 7;
    const q = new Float64Array(b * b);
    for (let i = 0; i < b; i++) for (let j = i + 1; j < b; j++) {
      q[i * b + j] = rand() - 0.5;
      q[j * b + i] = -q[i * b + j];
    }
    const r = cayley(q, b);
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) {
      let lhs = 0, gram = 0;
      for (let k = 0; k < b; k++) {
        lhs += r[i * b + k] * ((k === j ? 1 : 0) - q[k * b + j]);
        gram += r[k * b + i] * r[k * b + j];
      }
      expect(lhs).toBeCloseTo((i === j ? 1 : 0) + q[i * b + j], 12);
      expect(gram).toBeCloseTo(i === j ? 1 : 0, 12);
    }
  });

  it('diag-OFT blocks: Q = B − Bᵀ, the constraint caps ‖Q‖ over all blocks, M = (s·R − s·I + I)ᵀ', () => {
    // Two 2 × 2 blocks with B = [[0, x], [0, 0]]: Q = [[0, x], [−x, 0]], ‖Q‖ = √2·|x| per block.
    const blocks = [0, 0.4, 0, 0, 0, -0.2, 0, 0];
    const rotation = (q: number, s: number) => {
      const d = 1 + q * q;
      const r = [[(1 - q * q) / d, 2 * q / d], [-2 * q / d, (1 - q * q) / d]];
      const m = (i: number, j: number) => s * r[j][i] + (i === j ? 1 - s : 0);
      return [m(0, 0), m(0, 1), m(1, 0), m(1, 1)];
    };
    expectClose(diagOftBlocks(blocks, 2, 0, 1), [...rotation(0.4, 1), ...rotation(-0.2, 1)], 1e-6);
    expectClose(diagOftBlocks(blocks, 2, 0, 0.5), [...rotation(0.4, 0.5), ...rotation(-0.2, 0.5)], 1e-6);
    // ‖Q‖ over both blocks = √(2·0.16 + 2·0.04) = √0.4 ≈ 0.632; a constraint of 0.1 scales Q by 0.1/(‖Q‖ + 1e-8).
    const k = 0.1 / (Math.sqrt(0.4) + 1e-8);
    expectClose(diagOftBlocks(blocks, 2, 0.1, 1), [...rotation(0.4 * k, 1), ...rotation(-0.2 * k, 1)], 1e-6);
    // A constraint above the norm changes nothing.
    expectClose(diagOftBlocks(blocks, 2, 5, 1), diagOftBlocks(blocks, 2, 0, 1), 0);
  });
});

describe('LoKr scale and form', () => {
  it('α/r of the decomposed factor; exactly 1 when both factors are full, whatever α says', () => {
    expect(lokrScale(4, 8)).toBe(0.5);
    expect(lokrScale(undefined, 8)).toBe(1);
    expect(lokrScale(0, 8)).toBe(1);
    expect(lokrScale(1e10, undefined)).toBe(1);
  });

  it('two full factors whose kron has a large rank stay dense; a decomposed one makes a product', () => {
    const rand = seededRandom(4);
    const w1 = randomMatrix(rand, 8, 8), w2 = randomMatrix(rand, 80, 80);
    expect(lokrForm({ full: w1 }, { full: w2 }, 640, 640).kind).toBe('dense');
    // W₁ (1 × 4) and W₂ (64 × 2): rank 1·2 against ΔW (64 × 8), a product.
    expect(lokrForm({ full: randomMatrix(rand, 1, 4) }, { full: randomMatrix(rand, 64, 2) }, 64, 8).kind).toBe('low-rank');
    const f2 = { b: randomMatrix(rand, 80, 4), a: randomMatrix(rand, 4, 80) };
    const form = lokrForm({ full: w1 }, { factors: f2 }, 640, 640);
    expect(form.kind).toBe('low-rank');
    if (form.kind === 'low-rank') expect(form.factors.b.cols).toBe(32);
  });
});

it('IA3: 1 + s·w per channel, repeated over a conv kernel', () => {
  expect(Array.from(ia3Factors([0.5, -1], 2, 3))).toEqual([2, 2, 2, -1, -1, -1]);
  expect(Array.from(ia3Factors([0.25], 1))).toEqual([1.25]);
});
