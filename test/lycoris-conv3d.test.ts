/**
 * LyCORIS modules on an nn.Conv3d, weight (out, in, kd, kh, kw): Wan 2.1 T2V 1.3B's
 * `patch_embedding` (Conv3d 16 → 1536, kernel (1, 2, 2); F32 in the released checkpoint), under
 * musubi-tuner's kohya name `lora_unet_patch_embedding` with LyCORIS's factors in BF16, as
 * `--network_module lycoris.kohya` saves them. Every LyCORIS algorithm that lists "conv3d" in its
 * support_module, in each factor layout its constructor builds for a 5-D weight (lycoris/modules
 * locon.py, loha.py, lokr.py; LyCORIS 3.x):
 * - LoCon: lora_down (r, in, 1, 2, 2) and lora_up (out, r, 1, 1, 1); with use_tucker lora_down
 *   (r, in, 1, 1, 1), lora_mid (r, r, 1, 2, 2).
 * - LoHa: hada_w*_a (out, r), hada_w*_b (r, in·kd·kh·kw); with use_tucker hada_t* (r, r, 1, 2, 2),
 *   hada_w*_a (r, out), hada_w*_b (r, in).
 * - LoKr with factorization(1536) = (32, 48), factorization(16) = (4, 4): lokr_w1 (32, 4) and
 *   lokr_w2 (48, 4, 1, 2, 2) whole (rank ≥ 24), lokr_w2_a (48, r)·lokr_w2_b (r, 4·4), or with
 *   use_tucker lokr_t2 (r, r, 1, 2, 2), lokr_w2_a (r, 48), lokr_w2_b (r, 4); decompose_both gives
 *   lokr_w1_a (32, r)·lokr_w1_b (r, 4).
 * - DoRA on them (`dora_scale` (out, 1, 1, 1, 1): wd_on_out, LyCORIS's default, one norm per
 *   output channel over in·kd·kh·kw).
 * Plus a Conv3d of odd sizes (9 → 15 channels, kernel (3, 1, 3), not a real model's layer) at
 * r = 1. Truth in float64 written out below from LyCORIS's formulas: make_kron
 * (W₁ padded with trailing 1s, then torch.kron), rebuild_tucker (einsum "i j ..., i p, j r ->
 * p r ..."), the Hadamard product, apply_weight_decompose. ComfyUI pads W₁ only beside a 4-D W₂,
 * so it would apply the whole-W₂ LoKr below in another order (README, LoKr row); LyCORIS's is the
 * one pinned here.
 */
import { describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'both' });
const rand = seededRandom(3303);

interface Conv3d { key: string; module: string; out: number; inC: number; kernel: [number, number, number] }
const WAN: Conv3d = { key: 'patch_embedding.weight', module: 'lora_unet_patch_embedding', out: 1536, inC: 16, kernel: [1, 2, 2] };
/** Odd channels and a kernel of odd, unequal sides: LyCORIS factors 15 as (3, 5) and 9 as (3, 3). */
const ODD: Conv3d = { key: 'blocks.0.conv.weight', module: 'lora_unet_blocks_0_conv', out: 15, inC: 9, kernel: [3, 1, 3] };

const bf16 = (n: number, scale = 0.3) => randomValues(n, rand, scale).map((x) => roundForDType(x, 'BF16'));
const f32 = (n: number, scale = 0.3) => randomValues(n, rand, scale).map((x) => roundForDType(x, 'F32'));
const tensor = (name: string, shape: number[], data: Float64Array, dtype: 'BF16' | 'F32' = 'BF16'): FixtureTensor => ({ name, dtype, shape, data });
const sum = (n: number, f: (j: number) => number) => {
  let s = 0;
  for (let j = 0; j < n; j++) s += f(j);
  return s;
};

/** One layout: the module's tensors, ΔW (out, in, k) flattened, and the scale LyCORIS applies. */
interface Form { name: string; tensors: FixtureTensor[]; delta: Float64Array; scale: number; dora?: Float64Array }

function forms(c: Conv3d, r: number, lokr: { a: number; b: number; p: number; q: number }): Form[] {
  const { module: M, out: O, inC: I } = c;
  const K = c.kernel[0] * c.kernel[1] * c.kernel[2];
  const alpha = (v: number) => tensor(`${M}.alpha`, [], Float64Array.of(v));
  /** ΔW[o, i, k] at (o·I + i)·K + k. */
  const delta = (f: (o: number, i: number, k: number) => number) => {
    const d = new Float64Array(O * I * K);
    for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) for (let k = 0; k < K; k++) d[(o * I + i) * K + k] = f(o, i, k);
    return d;
  };
  const list: Form[] = [];

  // LoCon: ΔW[o, i, k] = Σ_j up[o, j]·down[j, i, k].
  {
    const down = bf16(r * I * K), up = bf16(O * r);
    list.push({
      name: `LoCon, lora_down (${r}, ${I}, ${c.kernel.join(', ')})`,
      tensors: [tensor(`${M}.lora_down.weight`, [r, I, ...c.kernel], down), tensor(`${M}.lora_up.weight`, [O, r, 1, 1, 1], up), alpha(r / 2)],
      delta: delta((o, i, k) => sum(r, (j) => up[o * r + j] * down[(j * I + i) * K + k])),
      scale: 1 / 2,
    });
  }
  // LoCon with use_tucker: ΔW[p, c, k] = Σ_{i,j} mid[i, j, k]·up[p, i]·down[j, c].
  {
    const down = bf16(r * I), mid = bf16(r * r * K), up = bf16(O * r);
    list.push({
      name: `LoCon with lora_mid (${r}, ${r}, ${c.kernel.join(', ')})`,
      tensors: [
        tensor(`${M}.lora_down.weight`, [r, I, 1, 1, 1], down), tensor(`${M}.lora_mid.weight`, [r, r, ...c.kernel], mid),
        tensor(`${M}.lora_up.weight`, [O, r, 1, 1, 1], up), alpha(r),
      ],
      delta: delta((p, ch, k) => sum(r, (i) => sum(r, (j) => mid[(i * r + j) * K + k] * up[p * r + i] * down[j * I + ch]))),
      scale: 1,
    });
  }
  // LoHa: ΔW = (w1a·w1b) ⊙ (w2a·w2b), w*b (r, in·k).
  {
    const a1 = bf16(O * r), b1 = bf16(r * I * K), a2 = bf16(O * r), b2 = bf16(r * I * K);
    const side = (a: Float64Array, b: Float64Array, o: number, x: number) => sum(r, (j) => a[o * r + j] * b[j * I * K + x]);
    list.push({
      name: `LoHa, hada_w*_b (${r}, ${I}·${K})`,
      tensors: [
        tensor(`${M}.hada_w1_a`, [O, r], a1), tensor(`${M}.hada_w1_b`, [r, I * K], b1),
        tensor(`${M}.hada_w2_a`, [O, r], a2), tensor(`${M}.hada_w2_b`, [r, I * K], b2), alpha(1),
      ],
      delta: delta((o, i, k) => side(a1, b1, o, i * K + k) * side(a2, b2, o, i * K + k)),
      scale: 1 / r,
    });
  }
  // LoHa with use_tucker: each factor Σ_{i,j} t[i, j, k]·w_a[i, p]·w_b[j, c].
  {
    const t1 = bf16(r * r * K), a1 = bf16(r * O), b1 = bf16(r * I), t2 = bf16(r * r * K), a2 = bf16(r * O), b2 = bf16(r * I);
    const side = (t: Float64Array, a: Float64Array, b: Float64Array, p: number, ch: number, k: number) =>
      sum(r, (i) => sum(r, (j) => t[(i * r + j) * K + k] * a[i * O + p] * b[j * I + ch]));
    list.push({
      name: `LoHa with hada_t* (${r}, ${r}, ${c.kernel.join(', ')})`,
      tensors: [
        tensor(`${M}.hada_t1`, [r, r, ...c.kernel], t1), tensor(`${M}.hada_w1_a`, [r, O], a1), tensor(`${M}.hada_w1_b`, [r, I], b1),
        tensor(`${M}.hada_t2`, [r, r, ...c.kernel], t2), tensor(`${M}.hada_w2_a`, [r, O], a2), tensor(`${M}.hada_w2_b`, [r, I], b2), alpha(2 * r),
      ],
      delta: delta((p, ch, k) => side(t1, a1, b1, p, ch, k) * side(t2, a2, b2, p, ch, k)),
      scale: 2,
    });
  }

  // LoKr: out = a·b, in = p·q; ΔW[i·b + j, s·q + u, k] = W₁[i, s]·W₂[j, u, k].
  const { a, b, p, q } = lokr;
  const kron = (w1: (i: number, s: number) => number, w2: (j: number, u: number, k: number) => number) =>
    delta((o, ch, k) => w1(Math.floor(o / b), Math.floor(ch / q)) * w2(o % b, ch % q, k));
  const w1 = bf16(a * p);
  const whole1 = (i: number, s: number) => w1[i * p + s];
  {
    const w2 = bf16(b * q * K);
    list.push({
      name: `LoKr, lokr_w1 (${a}, ${p}) and lokr_w2 (${b}, ${q}, ${c.kernel.join(', ')}) whole`,
      // LyCORIS stores α = network_dim for this form and applies scale 1.
      tensors: [tensor(`${M}.lokr_w1`, [a, p], w1), tensor(`${M}.lokr_w2`, [b, q, ...c.kernel], w2), alpha(32)],
      delta: kron(whole1, (j, u, k) => w2[(j * q + u) * K + k]),
      scale: 1,
    });
  }
  {
    const w2a = bf16(b * r), w2b = bf16(r * q * K);
    list.push({
      name: `LoKr, lokr_w2_a (${b}, ${r})·lokr_w2_b (${r}, ${q}·${K})`,
      tensors: [tensor(`${M}.lokr_w1`, [a, p], w1), tensor(`${M}.lokr_w2_a`, [b, r], w2a), tensor(`${M}.lokr_w2_b`, [r, q * K], w2b), alpha(1)],
      delta: kron(whole1, (j, u, k) => sum(r, (x) => w2a[j * r + x] * w2b[x * q * K + u * K + k])),
      scale: 1 / r,
    });
  }
  {
    // decompose_both and use_tucker: W₁ = w1_a·w1_b, W₂ = rebuild_tucker(t2, w2_a (r, b), w2_b (r, q)).
    const w1a = bf16(a * r), w1b = bf16(r * p), t2 = bf16(r * r * K), w2a = bf16(r * b), w2b = bf16(r * q);
    const m = f32(O).map((x) => roundForDType(1 + Math.abs(x), 'F32'));
    list.push({
      name: `LoKr, lokr_w1_a·lokr_w1_b and lokr_t2 (${r}, ${r}, ${c.kernel.join(', ')}), DoRA dora_scale (${O}, 1, 1, 1, 1)`,
      tensors: [
        tensor(`${M}.lokr_w1_a`, [a, r], w1a), tensor(`${M}.lokr_w1_b`, [r, p], w1b),
        tensor(`${M}.lokr_t2`, [r, r, ...c.kernel], t2), tensor(`${M}.lokr_w2_a`, [r, b], w2a), tensor(`${M}.lokr_w2_b`, [r, q], w2b),
        alpha(r / 2), tensor(`${M}.dora_scale`, [O, 1, 1, 1, 1], m, 'F32'),
      ],
      delta: kron(
        (i, s) => sum(r, (x) => w1a[i * r + x] * w1b[x * p + s]),
        (j, u, k) => sum(r, (x) => sum(r, (y) => t2[(x * r + y) * K + k] * w2a[x * b + j] * w2b[y * q + u])),
      ),
      scale: 1 / 2,
      dora: m,
    });
  }
  return list;
}

/**
 * What LyCORIS writes for weight s: W + s·scale·ΔW, or with DoRA (wd_on_out)
 * V·(s·(m[o] / (‖V[o]‖ + eps) − 1) + 1), V = W + scale·ΔW, eps float32's.
 */
function truth(c: Conv3d, w: Float64Array, f: Form, s: number): Float64Array {
  if (!f.dora) return w.map((x, i) => x + s * f.scale * f.delta[i]);
  const v = w.map((x, i) => x + f.scale * f.delta[i]);
  const row = v.length / c.out;
  const out = new Float64Array(v.length);
  for (let o = 0; o < c.out; o++) {
    const norm = Math.sqrt(sum(row, (x) => v[o * row + x] ** 2));
    const factor = s * (f.dora[o] / (norm + 2 ** -23) - 1) + 1;
    for (let x = 0; x < row; x++) out[o * row + x] = v[o * row + x] * factor;
  }
  return out;
}

function expectClose(got: ArrayLike<number>, want: Float64Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
  for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= 1e-6 * scale)) expect.fail(`${what} [${i}]: got ${got[i]}, truth ${want[i]}`);
}

const CASES: [Conv3d, number, Parameters<typeof forms>[2]][] = [
  [WAN, 4, { a: 32, b: 48, p: 4, q: 4 }],
  [WAN, 1, { a: 32, b: 48, p: 4, q: 4 }],
  [ODD, 1, { a: 3, b: 5, p: 3, q: 3 }],
];

async function check(backend: MergeBackend, c: Conv3d, f: Form, w: Float64Array, s: number): Promise<void> {
  const shape = [c.out, c.inC, ...c.kernel];
  const { tensors } = await mergeInMemory({
    backend,
    base: { 'diffusion_pytorch_model.safetensors': buildSafetensors([tensor(c.key, shape, w, 'F32')]) },
    adapters: [{ files: { 'lycoris.safetensors': buildSafetensors(f.tensors) }, weight: s }],
    slabBytes: 1 << 16,
  });
  expect(tensors.get(c.key)!.shape).toEqual(shape);
  expectClose(tensors.get(c.key)!.values, truth(c, w, f, s), `${f.name} at ${s}`);
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('LyCORIS on a Conv3d (out, in, kd, kh, kw), %s', (name) => {
  for (const [c, r, lokr] of CASES) {
    const w = f32(c.out * c.inC * c.kernel[0] * c.kernel[1] * c.kernel[2]);
    const list = forms(c, r, lokr);
    describe(`${c.key} (${c.out}, ${c.inC}, ${c.kernel.join(', ')}), r = ${r}`, () => {
      for (const f of list) {
        it(`${f.name}, at weights 1 and 0.5`, async (ctx) => {
          const backend = backends[name];
          if (!backend) return ctx.skip();
          for (const s of [1, 0.5]) await check(backend, c, f, w, s);
        });
      }
    });
  }
});
