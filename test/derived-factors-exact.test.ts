/**
 * Factors derived from the stored ones are merged with their exact values: LoHa's Khatri–Rao
 * products, LoKr's krons of two products and VeRA's λ-scaled projections are each a product of two
 * f32 values, exact in float64, and the merged weight is the module's own ΔW added to W and rounded
 * once. Rounded to f32 first (as the factors once were), they move the elements found below across
 * a rounding tie of the output dtype.
 *
 * The truth is written here from each method's definition (LoHa's Hadamard product of two
 * products, LoKr's kron, VeRA's λ_b·B·λ_d·A), in exact dyadic arithmetic on BigInt, and rounded to
 * the output dtype through a round-to-odd double (53 ≥ 24 + 2 bits, so rounding that again is the
 * correct rounding). Each case searches seeded random factors for an element whose exact result
 * lies near a tie, on the other side of it from the result of the f32-rounded derived factors, and
 * far enough from it (2^-40 relative) that float64 decides it; every element is then compared with
 * strict equality.
 */
import { describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import type { CertificationStats } from '../src/engine/exact/recompute.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'both' });
const f32 = Math.fround;

// --- exact dyadic arithmetic: m·2^e ------------------------------------------------------------

interface Dy { m: bigint; e: number }

const ZERO: Dy = { m: 0n, e: 0 };
const view = new DataView(new ArrayBuffer(8));

/** A finite double as m·2^e, exactly. */
function dy(x: number): Dy {
  if (x === 0) return ZERO;
  view.setFloat64(0, x);
  const hi = view.getUint32(0), lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (biased !== 0) m |= 1n << 52n;
  return { m: hi >>> 31 ? -m : m, e: (biased === 0 ? 1 : biased) - 1075 };
}

const mul = (a: Dy, b: Dy): Dy => ({ m: a.m * b.m, e: a.e + b.e });

function add(a: Dy, b: Dy): Dy {
  if (a.m === 0n) return b;
  if (b.m === 0n) return a;
  const e = Math.min(a.e, b.e);
  return { m: (a.m << BigInt(a.e - e)) + (b.m << BigInt(b.e - e)), e };
}

const sum = (xs: Dy[]): Dy => xs.reduce(add, ZERO);

/** x rounded to a double with round-to-odd (sticky last bit), so that rounding it again to ≤ 51 bits is exact rounding. */
function oddDouble(x: Dy): number {
  if (x.m === 0n) return 0;
  const neg = x.m < 0n;
  let m = neg ? -x.m : x.m;
  let e = x.e;
  const bits = m.toString(2).length;
  if (bits > 53) {
    const shift = BigInt(bits - 53);
    const q = m >> shift;
    m = (q << shift) === m ? q : q | 1n;
    e += bits - 53;
  }
  const v = Number(m) * 2 ** e; // m < 2^53, and e stays far from the subnormal range here
  return neg ? -v : v;
}

const rounded = (x: Dy, dtype: FixtureDType): number => roundForDType(oddDouble(x), dtype);

// --- the search --------------------------------------------------------------------------------

/** One draw of a module: W, the scale s, and per element of ΔW its exact value and its value from f32-rounded derived factors. */
interface Draw {
  /** W (out × in), f32 values; stored as F32. */
  w: Float64Array;
  s: number;
  /** ΔW[o, i] exactly, and as the product of the derived factors rounded to f32 (f64 approximations, for the search). */
  approx(o: number, i: number): { exact: number; rounded: number };
  exact(o: number, i: number): Dy;
  roundedFactors(o: number, i: number): Dy;
}

interface Found { index: number; truth: number; old: number }

/**
 * The first seed whose draw has an element where W + s·ΔW and W + s·ΔW' (ΔW' from the rounded
 * derived factors) round to different neighbours of `dtype`, at least 2^-40 (relative) from their
 * tie, which lies between them.
 */
function search(make: (rand: () => number) => Draw, out: number, inF: number, dtype: FixtureDType): { draw: Draw; found: Found } {
  for (let seed = 1; seed <= 4000; seed++) {
    const draw = make(seededRandom(seed));
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inF; i++) {
        const w = draw.w[o * inF + i];
        const { exact, rounded: r } = draw.approx(o, i);
        if (roundForDType(w + draw.s * exact, dtype) === roundForDType(w + draw.s * r, dtype)) continue;
        const x = add(dy(w), mul(dy(draw.s), draw.exact(o, i)));
        const xOld = add(dy(w), mul(dy(draw.s), draw.roundedFactors(o, i)));
        const truth = rounded(x, dtype), old = rounded(xOld, dtype);
        if (truth === old) continue;
        const tie = (truth + old) / 2; // two neighbours' midpoint: a double
        const distance = Math.abs(oddDouble(add(x, dy(-tie))));
        if (distance > 2 ** -40 * Math.abs(tie)) return { draw, found: { index: o * inF + i, truth, old } };
      }
    }
  }
  throw new Error(`no element near a ${dtype} tie in 4000 draws`);
}

/** W + s·ΔW for every element, each rounded once to `dtype`. */
function truthOf(draw: Draw, out: number, inF: number, dtype: FixtureDType): number[] {
  const res: number[] = [];
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) res.push(rounded(add(dy(draw.w[o * inF + i]), mul(dy(draw.s), draw.exact(o, i))), dtype));
  return res;
}

const vals = (rand: () => number, n: number, scale = 1) => randomValues(n, rand, scale).map(f32);
const fx = (name: string, shape: number[], data: ArrayLike<number>, dtype: FixtureDType = 'F32'): FixtureTensor => ({ name, dtype, shape, data });
const dot = (terms: [number, number][]): Dy => sum(terms.map(([x, y]) => mul(dy(x), dy(y))));
const range = (n: number) => Array.from({ length: n }, (_, k) => k);

// --- the methods -------------------------------------------------------------------------------

/** LoHa (kohya file, LyCORIS names): ΔW = (w1a·w1b) ⊙ (w2a·w2b), scale weight·α/r. */
function loha(out: number, inF: number, r: number) {
  return (rand: () => number) => {
    const w = vals(rand, out * inF, 0.25);
    const w1a = vals(rand, out * r), w1b = vals(rand, r * inF), w2a = vals(rand, out * r), w2b = vals(rand, r * inF);
    const p1 = (o: number, i: number) => dot(range(r).map((k) => [w1a[o * r + k], w1b[k * inF + i]]));
    const p2 = (o: number, i: number) => dot(range(r).map((k) => [w2a[o * r + k], w2b[k * inF + i]]));
    // The Khatri–Rao factors, each value rounded to f32.
    const khatriRao = (o: number, i: number) => range(r * r).map((k): [number, number] => {
      const k1 = Math.floor(k / r), k2 = k % r;
      return [f32(w1a[o * r + k1] * w2a[o * r + k2]), f32(w1b[k1 * inF + i] * w2b[k2 * inF + i])];
    });
    const draw: Draw & { tensors: Record<string, Float64Array> } = {
      w, s: 1.5 * (1 / r), tensors: { w1a, w1b, w2a, w2b },
      approx(o, i) {
        let d1 = 0, d2 = 0;
        for (let k = 0; k < r; k++) { d1 += w1a[o * r + k] * w1b[k * inF + i]; d2 += w2a[o * r + k] * w2b[k * inF + i]; }
        return { exact: d1 * d2, rounded: khatriRao(o, i).reduce((acc, [b, a]) => acc + b * a, 0) };
      },
      exact: (o, i) => mul(p1(o, i), p2(o, i)),
      roundedFactors: (o, i) => dot(khatriRao(o, i)),
    };
    return draw;
  };
}

/** LoKr with both factors decomposed: ΔW = kron(w1a·w1b, w2a·w2b), scale weight·α/r₁. */
function lokr(o1: number, o2: number, i1: number, i2: number, r1: number, r2: number, alpha: number) {
  const inF = i1 * i2;
  return (rand: () => number) => {
    const w = vals(rand, o1 * o2 * inF, 0.25);
    const w1a = vals(rand, o1 * r1), w1b = vals(rand, r1 * i1), w2a = vals(rand, o2 * r2), w2b = vals(rand, r2 * i2);
    const at = (o: number, i: number) => ({ a1: Math.floor(o / o2), a2: o % o2, b1: Math.floor(i / i2), b2: i % i2 });
    // kron(B₁, B₂)·kron(A₁, A₂), each value rounded to f32.
    const krons = (o: number, i: number) => {
      const { a1, a2, b1, b2 } = at(o, i);
      return range(r1 * r2).map((k): [number, number] => {
        const k1 = Math.floor(k / r2), k2 = k % r2;
        return [f32(w1a[a1 * r1 + k1] * w2a[a2 * r2 + k2]), f32(w1b[k1 * i1 + b1] * w2b[k2 * i2 + b2])];
      });
    };
    const draw: Draw & { tensors: Record<string, Float64Array> } = {
      w, s: alpha / r1, tensors: { w1a, w1b, w2a, w2b },
      approx(o, i) {
        const { a1, a2, b1, b2 } = at(o, i);
        let d1 = 0, d2 = 0;
        for (let k = 0; k < r1; k++) d1 += w1a[a1 * r1 + k] * w1b[k * i1 + b1];
        for (let k = 0; k < r2; k++) d2 += w2a[a2 * r2 + k] * w2b[k * i2 + b2];
        return { exact: d1 * d2, rounded: krons(o, i).reduce((acc, [b, a]) => acc + b * a, 0) };
      },
      exact(o, i) {
        const { a1, a2, b1, b2 } = at(o, i);
        return mul(dot(range(r1).map((k) => [w1a[a1 * r1 + k], w1b[k * i1 + b1]])), dot(range(r2).map((k) => [w2a[a2 * r2 + k], w2b[k * i2 + b2]])));
      },
      roundedFactors: (o, i) => dot(krons(o, i)),
    };
    return draw;
  };
}

/** PEFT VeRA: ΔW[o, i] = Σ_k λ_b[o]·B[o, k]·λ_d[k]·A[k, i], shared A (r × in) and B (out × r), scale = weight. */
function vera(out: number, inF: number, r: number, weight: number) {
  return (rand: () => number) => {
    const w = vals(rand, out * inF, 0.25);
    const A = vals(rand, r * inF), B = vals(rand, out * r), lb = vals(rand, out), ld = vals(rand, r);
    const scaled = (o: number, i: number) => range(r).map((k): [number, number] => [f32(lb[o] * B[o * r + k]), f32(ld[k] * A[k * inF + i])]);
    const draw: Draw & { tensors: Record<string, Float64Array> } = {
      w, s: weight, tensors: { A, B, lb, ld },
      approx(o, i) {
        let d = 0;
        for (let k = 0; k < r; k++) d += lb[o] * B[o * r + k] * ld[k] * A[k * inF + i];
        return { exact: d, rounded: scaled(o, i).reduce((acc, [b, a]) => acc + b * a, 0) };
      },
      exact: (o, i) => sum(range(r).map((k) => mul(mul(dy(lb[o]), dy(B[o * r + k])), mul(dy(ld[k]), dy(A[k * inF + i]))))),
      roundedFactors: (o, i) => dot(scaled(o, i)),
    };
    return draw;
  };
}

// --- the merges --------------------------------------------------------------------------------

const unetKey = 'down_blocks.0.attentions.0.proj_in';
const kohyaKey = 'lora_unet_down_blocks_0_attentions_0_proj_in';

/** A diffusers UNet with the module's weight (F32) and two other tensors that identify the layout. */
function unetBase(w: Float64Array, out: number, inF: number): Record<string, Uint8Array> {
  return {
    'diffusion_pytorch_model.safetensors': buildSafetensors([
      fx(`${unetKey}.weight`, [out, inF], w),
      fx('mid_block.attentions.0.proj_out.weight', [8, 6], new Array(48).fill(0.25)),
      fx('conv_in.bias', [4], [0, 0, 0, 0]),
    ]),
  };
}

/**
 * The merged tensor's values. The module's elements must pass through the backend's own certified
 * kernels (its certification counts them), except f32 outputs on WebGPU, which it leaves to the CPU.
 */
async function mergedValues(backend: MergeBackend, base: Record<string, Uint8Array>, adapter: Record<string, Uint8Array | string>, weight: number,
  dtype: FixtureDType, key: string, elements: number): Promise<number[]> {
  const stats = (backend as { certification?: CertificationStats }).certification;
  const before = stats?.elements ?? 0;
  const { tensors } = await mergeInMemory({ backend, base, adapters: [{ files: adapter, weight }], outDtype: dtype });
  if (!(backend.kind === 'webgpu' && dtype === 'F32')) expect((stats?.elements ?? 0) - before).toBeGreaterThanOrEqual(elements);
  const t = tensors.get(key)!;
  expect(t.dtype).toBe(dtype);
  return Array.from(t.values);
}

/** The found element's truth differs from what the f32-rounded factors give, and every element is its truth. */
function expectExact(got: number[], truth: number[], found: Found, what: string): void {
  expect(truth[found.index]).toBe(found.truth);
  expect(found.old).not.toBe(found.truth);
  expect(got[found.index], `${what}: element ${found.index}`).toBe(found.truth);
  const wrong = got.flatMap((g, i) => (g === truth[i] ? [] : [`[${i}] ${g} ≠ ${truth[i]}`]));
  expect(wrong, what).toEqual([]);
}

const dtypes: FixtureDType[] = ['F16', 'BF16', 'F32'];

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('derived factors merged exactly, %s', (name) => {
  it.for(dtypes)('LoHa (kohya hada_w1_a/b, hada_w2_a/b), %s output', async (dtype, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 32, inF = 48, r = 2;
    const { draw, found } = search(loha(out, inF, r), out, inF, dtype);
    const { w1a, w1b, w2a, w2b } = (draw as ReturnType<ReturnType<typeof loha>>).tensors;
    const adapter = buildSafetensors([
      fx(`${kohyaKey}.hada_w1_a`, [out, r], w1a), fx(`${kohyaKey}.hada_w1_b`, [r, inF], w1b),
      fx(`${kohyaKey}.hada_w2_a`, [out, r], w2a), fx(`${kohyaKey}.hada_w2_b`, [r, inF], w2b),
      fx(`${kohyaKey}.alpha`, [], [1]),
    ]);
    const got = await mergedValues(backend, unetBase(draw.w, out, inF), { 'loha.safetensors': adapter }, 1.5, dtype, `${unetKey}.weight`, out * inF);
    expectExact(got, truthOf(draw, out, inF, dtype), found, `LoHa ${dtype}`);
  });

  it.for(dtypes)('LoHa after a LyCORIS IA3 module (the steps executor: W·(1 + 2.5·l) + s·ΔW), %s output', async (dtype, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 32, inF = 48, r = 2;
    // IA3 first: its factor 1 + 2.5·l scales W before the LoHa's terms are added, and where a factor
    // is no f32 value the fused kernels do not take the op. l = k/2^24: 1 + 2.5·l has at most 26 bits
    // (no f32 value for odd k), so W·(1 + 2.5·l) is exact in float64, and the search and the truth
    // take it as the W the terms are added to.
    const makeLoha = loha(out, inF, r);
    let stored = new Float64Array(0);
    let l = new Float64Array(0);
    const { draw, found } = search((rand) => {
      const d = makeLoha(rand);
      stored = Float64Array.from(d.w);
      l = Float64Array.from({ length: out }, () => (Math.floor(rand() * 2 ** 24) - 2 ** 23) / 2 ** 24);
      return { ...d, w: d.w.map((x, i) => x * (1 + 2.5 * l[Math.floor(i / inF)])) };
    }, out, inF, dtype);
    for (let i = 0; i < stored.length; i++) {
      const exact = mul(dy(stored[i]), add(dy(1), mul(dy(2.5), dy(l[Math.floor(i / inF)]))));
      expect(add(exact, dy(-draw.w[i])).m).toBe(0n);
    }
    expect(Array.from(l).some((x) => f32(1 + 2.5 * x) !== 1 + 2.5 * x)).toBe(true);
    const { w1a, w1b, w2a, w2b } = (draw as ReturnType<ReturnType<typeof loha>>).tensors;
    const ia3 = buildSafetensors([fx(`${kohyaKey}.weight`, [out], l), fx(`${kohyaKey}.on_input`, [], [0], 'I64')]);
    const lohaFile = buildSafetensors([
      fx(`${kohyaKey}.hada_w1_a`, [out, r], w1a), fx(`${kohyaKey}.hada_w1_b`, [r, inF], w1b),
      fx(`${kohyaKey}.hada_w2_a`, [out, r], w2a), fx(`${kohyaKey}.hada_w2_b`, [r, inF], w2b),
      fx(`${kohyaKey}.alpha`, [], [1]),
    ]);
    const { tensors } = await mergeInMemory({
      backend, base: unetBase(stored, out, inF), outDtype: dtype,
      adapters: [{ name: 'ia3', files: { 'ia3.safetensors': ia3 }, weight: 2.5 }, { name: 'loha', files: { 'loha.safetensors': lohaFile }, weight: 1.5 }],
    });
    expectExact(Array.from(tensors.get(`${unetKey}.weight`)!.values), truthOf(draw, out, inF, dtype), found, `IA3 then LoHa ${dtype}`);
  });

  it.for(dtypes)('LoKr as a product (kohya lokr_w1_a/b, lokr_w2_a/b), %s output', async (dtype, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const [o1, o2, i1, i2, r1, r2, alpha] = [4, 8, 4, 12, 2, 2, 3];
    const out = o1 * o2, inF = i1 * i2;
    const { draw, found } = search(lokr(o1, o2, i1, i2, r1, r2, alpha), out, inF, dtype);
    const { w1a, w1b, w2a, w2b } = (draw as ReturnType<ReturnType<typeof lokr>>).tensors;
    const adapter = buildSafetensors([
      fx(`${kohyaKey}.lokr_w1_a`, [o1, r1], w1a), fx(`${kohyaKey}.lokr_w1_b`, [r1, i1], w1b),
      fx(`${kohyaKey}.lokr_w2_a`, [o2, r2], w2a), fx(`${kohyaKey}.lokr_w2_b`, [r2, i2], w2b),
      fx(`${kohyaKey}.alpha`, [], [alpha]),
    ]);
    const got = await mergedValues(backend, unetBase(draw.w, out, inF), { 'lokr.safetensors': adapter }, 1, dtype, `${unetKey}.weight`, out * inF);
    expectExact(got, truthOf(draw, out, inF, dtype), found, `LoKr ${dtype}`);
  });

  it.for(dtypes)('PEFT VeRA (vera_lambda_b/d over base_model.vera_A/B), %s output', async (dtype, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 32, inF = 48, r = 4, weight = 0.75;
    const q = 'model.layers.0.self_attn.q_proj';
    const { draw, found } = search(vera(out, inF, r, weight), out, inF, dtype);
    const { A, B, lb, ld } = (draw as ReturnType<ReturnType<typeof vera>>).tensors;
    const adapter = {
      'adapter_config.json': JSON.stringify({ peft_type: 'VERA', r, target_modules: ['q_proj'], save_projection: true }),
      'adapter_model.safetensors': buildSafetensors([
        fx('base_model.vera_A', [r, inF], A), fx('base_model.vera_B', [out, r], B),
        fx(`base_model.model.${q}.vera_lambda_b`, [out], lb), fx(`base_model.model.${q}.vera_lambda_d`, [r], ld),
      ]),
    };
    const base = { 'model.safetensors': buildSafetensors([fx(`${q}.weight`, [out, inF], draw.w)]) };
    const got = await mergedValues(backend, base, adapter, weight, dtype, `${q}.weight`, out * inF);
    expectExact(got, truthOf(draw, out, inF, dtype), found, `VeRA ${dtype}`);
  });
});
