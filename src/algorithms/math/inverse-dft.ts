/**
 * The unnormalised inverse DFT y[q] = Σ_v x[v]·e^{2πi·q·v/L} of any length L, in float64:
 * radix-2 for powers of two, Bluestein's chirp (a power-of-two convolution) otherwise, so a row
 * costs O(L log L) whatever L is.
 */

/** In-place radix-2 transform of (re, im), length a power of two; sign +1 inverse, −1 forward. */
function radix2(re: Float64Array, im: Float64Array, cos: Float64Array, sin: Float64Array, sign: number): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      let t = re[i]; re[i] = re[j]; re[j] = t;
      t = im[i]; im[i] = im[j]; im[j] = t;
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const half = size >> 1, step = n / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < half; k++) {
        const wr = cos[k * step], wi = sign * sin[k * step];
        const a = start + k, b = a + half;
        const xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr; im[b] = im[a] - xi;
        re[a] += xr; im[a] += xi;
      }
    }
  }
}

/** cos and sin of 2π·k/n for k < n/2, the twiddles of a length-n radix-2 transform. */
function circle(n: number): { cos: Float64Array; sin: Float64Array } {
  const cos = new Float64Array(Math.max(1, n >> 1)), sin = new Float64Array(cos.length);
  for (let k = 0; k < cos.length; k++) {
    cos[k] = Math.cos((2 * Math.PI * k) / n);
    sin[k] = Math.sin((2 * Math.PI * k) / n);
  }
  return { cos, sin };
}

export class InverseDft {
  private readonly size: number;
  private readonly cos: Float64Array;
  private readonly sin: Float64Array;
  /** Bluestein: the chirp e^{iπk²/L} and the transformed conjugate chirp to convolve with. */
  private readonly chirp?: { re: Float64Array; im: Float64Array; kernelRe: Float64Array; kernelIm: Float64Array };

  constructor(readonly length: number) {
    if (!Number.isInteger(length) || length < 1) throw new RangeError(`DFT length ${length} must be a positive integer`);
    const pow2 = (length & (length - 1)) === 0;
    this.size = pow2 ? length : 2 ** Math.ceil(Math.log2(2 * length - 1));
    ({ cos: this.cos, sin: this.sin } = circle(this.size));
    if (pow2) return;
    const re = new Float64Array(length), im = new Float64Array(length);
    for (let k = 0; k < length; k++) {
      // k² mod 2L keeps the angle small, so the chirp is as accurate for large k as for small.
      const angle = (Math.PI * Number((BigInt(k) * BigInt(k)) % BigInt(2 * length))) / length;
      re[k] = Math.cos(angle);
      im[k] = Math.sin(angle);
    }
    const kernelRe = new Float64Array(this.size), kernelIm = new Float64Array(this.size);
    for (let k = 0; k < length; k++) {
      kernelRe[k] = re[k]; kernelIm[k] = -im[k];
      if (k > 0) { kernelRe[this.size - k] = re[k]; kernelIm[this.size - k] = -im[k]; }
    }
    radix2(kernelRe, kernelIm, this.cos, this.sin, -1);
    this.chirp = { re, im, kernelRe, kernelIm };
  }

  /** Transforms (re, im), each of `length` values, in place. */
  run(re: Float64Array, im: Float64Array): void {
    const chirp = this.chirp;
    if (!chirp) {
      radix2(re, im, this.cos, this.sin, 1);
      return;
    }
    const n = this.length, m = this.size;
    // y[q] = c[q]·Σ_v (x[v]·c[v])·conj(c[q − v]), with c[k] = e^{iπk²/L} (qv = (q² + v² − (q − v)²)/2).
    const ar = new Float64Array(m), ai = new Float64Array(m);
    for (let v = 0; v < n; v++) {
      ar[v] = re[v] * chirp.re[v] - im[v] * chirp.im[v];
      ai[v] = re[v] * chirp.im[v] + im[v] * chirp.re[v];
    }
    radix2(ar, ai, this.cos, this.sin, -1);
    for (let k = 0; k < m; k++) {
      const xr = ar[k] * chirp.kernelRe[k] - ai[k] * chirp.kernelIm[k];
      ai[k] = ar[k] * chirp.kernelIm[k] + ai[k] * chirp.kernelRe[k];
      ar[k] = xr;
    }
    radix2(ar, ai, this.cos, this.sin, 1);
    for (let q = 0; q < n; q++) {
      const yr = ar[q] / m, yi = ai[q] / m;
      re[q] = yr * chirp.re[q] - yi * chirp.im[q];
      im[q] = yr * chirp.im[q] + yi * chirp.re[q];
    }
  }
}
