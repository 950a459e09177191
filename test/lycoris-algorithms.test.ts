/**
 * LyCORIS algorithms end to end: kohya-style files with LyCORIS's key names, shapes and dtypes
 * (LoKr in every factor form, LoHa and LoCon with Tucker cores, full and norm diffs, IA3, GLoRA,
 * diag-OFT, `lycoris_` names), several adapters on shared tensors in --adapter order, merged
 * through the library in row slabs on the CPU (JavaScript and WebAssembly) and on WebGPU, against
 * float64 truth written here from LyCORIS's definitions.
 */
import { describe, expect, it } from 'vitest';
import { type MergeBackend } from '../src/index.js';
import { describePlan } from '../src/cli/plan-report.js';
import { estimateUpdateMagnitudes } from '../src/plan/update-magnitudes.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { mm } from './helpers/dense-f64.js';
import { tuckerConv1d as tucker } from './helpers/peft-delta-truth.js';

const backends = mergeBackends({ cpu: 'both' });

// --- tensors as stored, and plain float64 matrices ---------------------------------------------

interface T { shape: number[]; dtype: FixtureDType; v: Float64Array }

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function rnd(rand: () => number, shape: number[], dtype: FixtureDType = 'F32', scale = 1): T {
  return { shape, dtype, v: randomValues(numel(shape), rand, scale).map((x) => roundForDType(x, dtype)) };
}

const fx = (name: string, t: T): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: t.v });
const scalar = (name: string, value: number, dtype: FixtureDType = 'F32'): FixtureTensor => ({ name, dtype, shape: [], data: [value] });

/** kron(W1 (a × c), W2 (b × d·K)) as LyCORIS builds it for (a·b, c·d, k…): [o1·b + o2, (i1·d + i2)·K + k]. */
function kron(w1: Float64Array, a: number, c: number, w2: Float64Array, b: number, dK: number): Float64Array {
  const out = new Float64Array(a * b * c * dK);
  for (let o1 = 0; o1 < a; o1++) for (let o2 = 0; o2 < b; o2++) for (let i1 = 0; i1 < c; i1++) for (let j = 0; j < dK; j++) {
    out[(o1 * b + o2) * c * dK + i1 * dK + j] = w1[o1 * c + i1] * w2[o2 * dK + j];
  }
  return out;
}

const addScaled = (w: Float64Array, d: Float64Array, s: number) => w.map((x, i) => x + s * d[i]);

/** 2 × 2 Cayley rotation of Q = [[0, q], [−q, 0]]: (1/(1+q²))·[[1−q², 2q], [−2q, 1−q²]]. */
function cayley2(q: number): number[][] {
  const d = 1 + q * q;
  return [[(1 - q * q) / d, 2 * q / d], [-2 * q / d, (1 - q * q) / d]];
}

// --- the merge ---------------------------------------------------------------------------------

interface Adapter { name: string; tensors: FixtureTensor[]; weight: number }

async function merge(backend: MergeBackend, base: Record<string, T>, adapters: Adapter[]) {
  const baseFile = buildSafetensors(Object.entries(base).map(([k, t]) => fx(k, t)));
  let report = '';
  let magnitudes: Awaited<ReturnType<typeof estimateUpdateMagnitudes>> | undefined;
  const { tensors } = await mergeInMemory({
    backend,
    base: { 'diffusion_pytorch_model.safetensors': baseFile },
    adapters: adapters.map((a) => ({ name: a.name, files: { [`${a.name}.safetensors`]: buildSafetensors(a.tensors) }, weight: a.weight })),
    async inspect(prepared) {
      report = describePlan(prepared, true);
      magnitudes = await estimateUpdateMagnitudes(prepared.plan, async (key, r0, n) => {
        const t = base[key];
        const cols = numel(t.shape.slice(1));
        return { dtype: 'F32', data: new Uint8Array(Float32Array.from(t.v.subarray(r0 * cols, (r0 + n) * cols)).buffer) };
      });
    },
  });
  return { tensors, report, magnitudes: magnitudes! };
}

/** Every element within one ulp of the output dtype (f32: 1e-5 of the tensor's scale) of the truth. */
function expectMerged(got: Float64Array, exact: Float64Array, dtype: FixtureDType, what: string): void {
  expect(got.length, what).toBe(exact.length);
  const scale = exact.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  let exactCount = 0;
  for (let i = 0; i < exact.length; i++) {
    const want = roundForDType(exact[i], dtype);
    // A truth exactly halfway between two values: f64 cannot tell which side the exact result is
    // on (decimal weights times low-precision factors land there often); either neighbour counts.
    if (got[i] === want || (dtype !== 'F32' && Math.abs(got[i] - exact[i]) === Math.abs(want - exact[i]))) {
      exactCount++;
      continue;
    }
    const ulp = dtype === 'F32' ? 1e-5 * scale : 2 ** (Math.floor(Math.log2(Math.max(Math.abs(exact[i]), 2 ** -14))) - (dtype === 'F16' ? 10 : 7));
    // f32 accumulation cannot resolve a result that cancels to far below its summands (≈ the tensor's scale).
    if (Math.abs(got[i] - exact[i]) > Math.max(ulp, 1e-6 * scale)) expect.fail(`${what}[${i}]: got ${got[i]}, truth ${exact[i]}`);
  }
  if (dtype !== 'F32') expect(exactCount / exact.length, what).toBeGreaterThan(0.97);
}

// --- the files ---------------------------------------------------------------------------------

const rand = seededRandom(2024);
const KEYS = {
  projIn: 'down_blocks.0.attentions.0.proj_in.weight',
  projOut: 'down_blocks.0.attentions.0.proj_out.weight',
  conv1: 'down_blocks.0.resnets.0.conv1.weight',
  conv2: 'down_blocks.0.resnets.0.conv2.weight',
  conv2Bias: 'down_blocks.0.resnets.0.conv2.bias',
  timeEmb: 'down_blocks.0.resnets.0.time_emb_proj.weight',
  toQ: 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight',
  toK: 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight',
  ff: 'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight',
  norm: 'down_blocks.0.attentions.0.norm.weight',
  normBias: 'down_blocks.0.attentions.0.norm.bias',
};
const flat = (key: string) => key.replace(/\.weight$|\.bias$/, '').replace(/\./g, '_');

const base: Record<string, T> = {
  [KEYS.projIn]: rnd(rand, [96, 40], 'F16'),
  [KEYS.projOut]: rnd(rand, [24, 24], 'BF16'),
  [KEYS.conv1]: rnd(rand, [16, 8, 3, 3], 'F32'),
  [KEYS.conv2]: rnd(rand, [8, 16, 3, 3], 'F16'),
  [KEYS.conv2Bias]: rnd(rand, [8], 'F16'),
  [KEYS.timeEmb]: rnd(rand, [16, 20], 'BF16'),
  [KEYS.toQ]: rnd(rand, [96, 40], 'F32'),
  [KEYS.toK]: rnd(rand, [40, 60], 'F16'),
  [KEYS.ff]: rnd(rand, [20, 36], 'F32'),
  [KEYS.norm]: rnd(rand, [24], 'F32'),
  [KEYS.normBias]: rnd(rand, [24], 'BF16'),
};

// Adapter 1 (weight 0.8): LoKr in three forms, LoHa with Tucker cores, LoCon with lora_mid, GLoRA,
// norm diffs, a full diff with diff_b, diag-OFT with a constraint and rescale.
const a1 = (() => {
  const t: FixtureTensor[] = [];
  const truth: Record<string, (w: Float64Array) => Float64Array> = {};
  const s = 0.8;
  // LoKr linear on proj_in (96 × 40): W1 = w1_a·w1_b (8 × 4, r = 2), W2 = lokr_w2 full (12 × 10); α = 1 → scale 1/2.
  {
    const n = `lora_unet_${flat(KEYS.projIn)}`;
    const w1a = rnd(rand, [8, 2], 'BF16'), w1b = rnd(rand, [2, 4], 'BF16'), w2 = rnd(rand, [12, 10], 'F16', 0.3);
    t.push(fx(`${n}.lokr_w1_a`, w1a), fx(`${n}.lokr_w1_b`, w1b), fx(`${n}.lokr_w2`, w2), scalar(`${n}.alpha`, 1));
    truth[KEYS.projIn] = (w) => addScaled(w, kron(mm(w1a.v, w1b.v, 8, 2, 4), 8, 4, w2.v, 12, 10), s * 0.5);
  }
  // LoKr conv with a Tucker W2 on conv1 (16, 8, 3, 3): W1 full (4 × 2), t2 (3, 3, 3, 3), w2_a (3, 4), w2_b (3, 4); α = 6 → scale 2.
  {
    const n = `lycoris_${flat(KEYS.conv1)}`;
    const w1 = rnd(rand, [4, 2], 'F32'), t2 = rnd(rand, [3, 3, 3, 3], 'F32', 0.5), w2a = rnd(rand, [3, 4], 'F16'), w2b = rnd(rand, [3, 4], 'F16');
    t.push(fx(`${n}.lokr_w1`, w1), fx(`${n}.lokr_t2`, t2), fx(`${n}.lokr_w2_a`, w2a), fx(`${n}.lokr_w2_b`, w2b), scalar(`${n}.alpha`, 6));
    truth[KEYS.conv1] = (w) => addScaled(w, kron(w1.v, 4, 2, tucker(t2.v, w2a.v, w2b.v, 3, 4, 4, 9), 4, 36), s * 2);
  }
  // LoKr with both factors full on to_k (40 × 60): W1 (4 × 6), W2 (10 × 10), a huge stored α, scale exactly 1.
  {
    const n = `lora_unet_${flat(KEYS.toK)}`;
    const w1 = rnd(rand, [4, 6], 'F16'), w2 = rnd(rand, [10, 10], 'F16', 0.3);
    t.push(fx(`${n}.lokr_w1`, w1), fx(`${n}.lokr_w2`, w2), scalar(`${n}.alpha`, 1e10));
    truth[KEYS.toK] = (w) => addScaled(w, kron(w1.v, 4, 6, w2.v, 10, 10), s);
  }
  // GLoRA on proj_out (24 × 24): ΔW = (W·a1·a2 + b1·b2)·α/r, r = 3, α = 1.5.
  {
    const n = `lora_unet_${flat(KEYS.projOut)}`;
    const a1w = rnd(rand, [24, 3], 'F32', 0.3), a2w = rnd(rand, [3, 24], 'F32', 0.3), b1w = rnd(rand, [24, 3], 'BF16'), b2w = rnd(rand, [3, 24], 'BF16');
    t.push(fx(`${n}.a1.weight`, a1w), fx(`${n}.a2.weight`, a2w), fx(`${n}.b1.weight`, b1w), fx(`${n}.b2.weight`, b2w), scalar(`${n}.alpha`, 1.5));
    truth[KEYS.projOut] = (w) => addScaled(w, addScaled(mm(mm(w, a1w.v, 24, 24, 3), a2w.v, 24, 3, 24), mm(b1w.v, b2w.v, 24, 3, 24), 1), s * 0.5);
  }
  // Norm diffs on norm (24): weight += s·w_norm, bias += s·b_norm.
  {
    const n = `lora_unet_${flat(KEYS.norm)}`;
    const wn = rnd(rand, [24], 'F32', 0.1), bn = rnd(rand, [24], 'F16', 0.1);
    t.push(fx(`${n}.w_norm`, wn), fx(`${n}.b_norm`, bn));
    truth[KEYS.norm] = (w) => addScaled(w, wn.v, s);
    truth[KEYS.normBias] = (w) => addScaled(w, bn.v, s);
  }
  // Full diff with diff_b on conv2 (8, 16, 3, 3).
  {
    const n = `lora_unet_${flat(KEYS.conv2)}`;
    const diff = rnd(rand, [8, 16, 3, 3], 'F16', 0.2), diffB = rnd(rand, [8], 'F32', 0.2);
    t.push(fx(`${n}.diff`, diff), fx(`${n}.diff_b`, diffB));
    truth[KEYS.conv2] = (w) => addScaled(w, diff.v, s);
    truth[KEYS.conv2Bias] = (w) => addScaled(w, diffB.v, s);
  }
  // Diag-OFT on to_q (96 × 40): 48 blocks of 2, constraint α = 0.002 (κ = 0.002·96), rescale (96, 1).
  {
    const n = `lora_unet_${flat(KEYS.toQ)}`;
    const blocks = rnd(rand, [48, 2, 2], 'F32', 0.05), rescale = { shape: [96, 1], dtype: 'F32' as const, v: randomValues(96, rand, 0.1).map((x) => roundForDType(1 + x, 'F32')) };
    t.push(fx(`${n}.oft_blocks`, blocks), fx(`${n}.rescale`, rescale), scalar(`${n}.alpha`, 0.002));
    truth[KEYS.toQ] = (w) => {
      // q_k = B[0,1] − B[1,0]; ‖Q‖_F over all blocks = √(Σ 2·q_k²); capped at κ.
      const q = Array.from({ length: 48 }, (_, k) => blocks.v[k * 4 + 1] - blocks.v[k * 4 + 2]);
      const norm = Math.sqrt(q.reduce((x, y) => x + 2 * y * y, 0)) + 1e-8;
      const kappa = 0.002 * 96;
      const f = norm > kappa ? kappa / norm : 1;
      const out = new Float64Array(w.length);
      for (let k = 0; k < 48; k++) {
        const r = cayley2(q[k] * f);
        // W'[k·2 + m] = Σ_n (s·R − s·I + I)[n][m]·W[k·2 + n], then × rescale.
        for (let m = 0; m < 2; m++) for (let c = 0; c < 40; c++) {
          let v = 0;
          for (let nn = 0; nn < 2; nn++) v += (s * r[nn][m] + (nn === m ? 1 - s : 0)) * w[(k * 2 + nn) * 40 + c];
          out[(k * 2 + m) * 40 + c] = v * rescale.v[k * 2 + m];
        }
      }
      return out;
    };
  }
  return { adapter: { name: 'styles', tensors: t, weight: s }, truth };
})();

// Adapter 2 (weight −0.5): LoHa with Tucker cores and LoCon with lora_mid on conv1 (after adapter 1's
// LoKr), IA3 on time_emb_proj (per output) and ff.net.2 (per input), a plain LoRA on proj_in.
const a2 = (() => {
  const t: FixtureTensor[] = [];
  const truth: Record<string, (w: Float64Array) => Float64Array> = {};
  const s = -0.5;
  // LoCon with lora_mid on conv1: up (16, 2, 1, 1), mid (2, 2, 3, 3), down (2, 8, 1, 1); α = 1 → 1/2.
  {
    const n = `lora_unet_${flat(KEYS.conv1)}`;
    const up = rnd(rand, [16, 2, 1, 1], 'F32'), mid = rnd(rand, [2, 2, 3, 3], 'F32'), down = rnd(rand, [2, 8, 1, 1], 'F32');
    t.push(fx(`${n}.lora_up.weight`, up), fx(`${n}.lora_mid.weight`, mid), fx(`${n}.lora_down.weight`, down), scalar(`${n}.alpha`, 1));
    // up (16, 2) is wa transposed: wa[i, p] = up[p, i].
    const upT = new Float64Array(32).map((_, j) => up.v[(j % 16) * 2 + Math.floor(j / 16)]);
    truth[KEYS.conv1] = (w) => addScaled(w, tucker(mid.v, upT, down.v, 2, 16, 8, 9), s * 0.5);
  }
  // LoHa with Tucker cores on conv2 (8, 16, 3, 3), r = 2, α = 4 → 2 (after adapter 1's full diff).
  {
    const n = `lora_unet_${flat(KEYS.conv2)}`;
    const t1 = rnd(rand, [2, 2, 3, 3], 'BF16'), w1a = rnd(rand, [2, 8], 'BF16'), w1b = rnd(rand, [2, 16], 'BF16');
    const t2 = rnd(rand, [2, 2, 3, 3], 'BF16'), w2a = rnd(rand, [2, 8], 'BF16'), w2b = rnd(rand, [2, 16], 'BF16');
    t.push(fx(`${n}.hada_t1`, t1), fx(`${n}.hada_w1_a`, w1a), fx(`${n}.hada_w1_b`, w1b),
      fx(`${n}.hada_t2`, t2), fx(`${n}.hada_w2_a`, w2a), fx(`${n}.hada_w2_b`, w2b), scalar(`${n}.alpha`, 4, 'BF16'));
    const d1 = tucker(t1.v, w1a.v, w1b.v, 2, 8, 16, 9), d2 = tucker(t2.v, w2a.v, w2b.v, 2, 8, 16, 9);
    truth[KEYS.conv2] = (w) => addScaled(w, d1.map((x, i) => x * d2[i]), s * 2);
  }
  // IA3 per output channel on time_emb_proj (16 × 20), per input channel on ff.net.2 (20 × 36).
  {
    const n1 = `lora_unet_${flat(KEYS.timeEmb)}`, n2 = `lora_unet_${flat(KEYS.ff)}`;
    const w1 = rnd(rand, [16], 'F32', 0.5), w2 = rnd(rand, [36], 'F16', 0.5);
    t.push(fx(`${n1}.weight`, w1), scalar(`${n1}.on_input`, 0, 'I64' as FixtureDType), fx(`${n2}.weight`, w2), scalar(`${n2}.on_input`, 1, 'I64' as FixtureDType));
    truth[KEYS.timeEmb] = (w) => w.map((x, i) => x * (1 + s * w1.v[Math.floor(i / 20)]));
    truth[KEYS.ff] = (w) => w.map((x, i) => x * (1 + s * w2.v[i % 36]));
  }
  // A plain LoRA on proj_in, after adapter 1's LoKr.
  {
    const n = `lora_unet_${flat(KEYS.projIn)}`;
    const down = rnd(rand, [3, 40], 'F16'), up = rnd(rand, [96, 3], 'F16');
    t.push(fx(`${n}.lora_down.weight`, down), fx(`${n}.lora_up.weight`, up), scalar(`${n}.alpha`, 3));
    truth[KEYS.projIn] = (w) => addScaled(w, mm(up.v, down.v, 96, 3, 40), s);
  }
  return { adapter: { name: 'details', tensors: t, weight: s }, truth };
})();

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it('merges every LyCORIS algorithm, two adapters in order, in row slabs', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { tensors, report, magnitudes } = await merge(backend, base, [a1.adapter, a2.adapter]);
    for (const [key, t] of Object.entries(base)) {
      let exact = t.v;
      for (const truth of [a1.truth, a2.truth]) if (truth[key]) exact = truth[key](exact);
      expectMerged(tensors.get(key)!.values, exact, t.dtype, key);
    }
    if (name !== 'cpu (js)') return;
    // The plan names each module's algorithm and scale, in adapter order.
    expect(report).toMatch(/proj_in\.weight .* ← lora_unet_down_blocks_0_attentions_0_proj_in LoKr r=2 scale=0\.4, then lora_unet_down_blocks_0_attentions_0_proj_in LoRA r=3 scale=-0\.5/);
    expect(report).toMatch(/to_k\.weight .* LoKr scale=0\.8\b/);
    expect(report).toMatch(/conv1\.weight .* LoKr r=3 scale=1\.6, then .* LoRA r=2 scale=-0\.25/);
    for (const title of ['GLoRA', 'OFT', '\\(IA\\)³', 'full diff', 'norm diff', 'LoHa r=2 scale=-1']) expect(report).toMatch(new RegExp(title));
    // The chart has a size for every module, from ‖W' − W‖ for the maps of W.
    expect(magnitudes).toHaveLength(12);
    for (const m of magnitudes) expect(m.updateNorm, m.module).toBeGreaterThan(0);
    const ia3 = magnitudes.find((m) => m.baseKey === KEYS.timeEmb)!;
    const w = base[KEYS.timeEmb].v;
    expect(ia3.updateNorm).toBeCloseTo(Math.sqrt(w.reduce((acc, x, i) => acc + (x - a2.truth[KEYS.timeEmb](w)[i]) ** 2, 0)), 4);
  });
});

describe('random shapes, forms, ranks and dtypes', () => {
  const DTYPES: FixtureDType[] = ['F32', 'F16', 'BF16'];
  const cases = Array.from({ length: 6 }, (_, seed) => seed + 1);
  describe.each(['cpu (wasm)', 'webgpu'])('%s', (name) => {
    it.each(cases)('LoKr and LoHa, seed %i', async (seed) => {
      const backend = backends[name];
      if (!backend) return;
      const r = seededRandom(1000 + seed);
      const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
      const pick = <X>(xs: X[]) => xs[int(0, xs.length - 1)];
      const kernel = pick([[], [1, 3], [3, 3]]);
      const K = numel(kernel);
      // LoKr: ΔW (a·b, c·d, k…), W1 full or a product, W2 full, a product or Tucker (convs).
      const a = int(1, 4), c = int(1, 4), b = int(1, 6), d = int(1, 5);
      const out = a * b, inF = c * d;
      const wDtype = pick(DTYPES), fDtype = pick(DTYPES);
      const key = 'down_blocks.0.resnets.0.conv1.weight';
      const n = `lora_unet_${flat(key)}`;
      const baseT = rnd(r, [out, inF, ...kernel], wDtype);
      const t: FixtureTensor[] = [];
      let w1: Float64Array, w2: Float64Array, decomposed: number | undefined;
      if (r() < 0.5) {
        const f = rnd(r, [a, c], fDtype);
        t.push(fx(`${n}.lokr_w1`, f));
        w1 = f.v;
      } else {
        const r1 = int(1, 3), fa = rnd(r, [a, r1], fDtype), fb = rnd(r, [r1, c], fDtype);
        t.push(fx(`${n}.lokr_w1_a`, fa), fx(`${n}.lokr_w1_b`, fb));
        w1 = mm(fa.v, fb.v, a, r1, c);
        decomposed = r1;
      }
      const form = pick(K > 1 ? ['full', 'product', 'tucker'] : ['full', 'product']);
      if (form === 'full') {
        const f = rnd(r, [b, d, ...kernel], fDtype, 0.5);
        t.push(fx(`${n}.lokr_w2`, f));
        w2 = f.v;
      } else if (form === 'product') {
        const r2 = decomposed ?? int(1, 4), fa = rnd(r, [b, r2], fDtype), fb = rnd(r, [r2, d * K], fDtype, 0.5);
        t.push(fx(`${n}.lokr_w2_a`, fa), fx(`${n}.lokr_w2_b`, fb));
        w2 = mm(fa.v, fb.v, b, r2, d * K);
        decomposed ??= r2;
      } else {
        const r2 = decomposed ?? int(1, 3), core = rnd(r, [r2, r2, ...kernel], 'F32', 0.5), fa = rnd(r, [r2, b], fDtype), fb = rnd(r, [r2, d], fDtype);
        t.push(fx(`${n}.lokr_t2`, core), fx(`${n}.lokr_w2_a`, fa), fx(`${n}.lokr_w2_b`, fb));
        w2 = tucker(core.v, fa.v, fb.v, r2, b, d, K);
        decomposed ??= r2;
      }
      const alpha = int(1, 8);
      t.push(scalar(`${n}.alpha`, alpha));
      const scale = decomposed === undefined ? 1 : alpha / decomposed;
      // A second adapter: LoHa (Tucker on convs) on the same weight.
      const rh = int(1, 3), t2: FixtureTensor[] = [];
      let dh: Float64Array;
      if (K > 1) {
        const [c1, c2] = [rnd(r, [rh, rh, ...kernel], 'F32'), rnd(r, [rh, rh, ...kernel], 'F32')];
        const [a1, b1, a2, b2] = [rnd(r, [rh, out], fDtype), rnd(r, [rh, inF], fDtype), rnd(r, [rh, out], fDtype), rnd(r, [rh, inF], fDtype)];
        t2.push(fx(`${n}.hada_t1`, c1), fx(`${n}.hada_w1_a`, a1), fx(`${n}.hada_w1_b`, b1), fx(`${n}.hada_t2`, c2), fx(`${n}.hada_w2_a`, a2), fx(`${n}.hada_w2_b`, b2));
        const x = tucker(c1.v, a1.v, b1.v, rh, out, inF, K), y = tucker(c2.v, a2.v, b2.v, rh, out, inF, K);
        dh = x.map((v, i) => v * y[i]);
      } else {
        const [a1, b1, a2, b2] = [rnd(r, [out, rh], fDtype), rnd(r, [rh, inF], fDtype), rnd(r, [out, rh], fDtype), rnd(r, [rh, inF], fDtype)];
        t2.push(fx(`${n}.hada_w1_a`, a1), fx(`${n}.hada_w1_b`, b1), fx(`${n}.hada_w2_a`, a2), fx(`${n}.hada_w2_b`, b2));
        const x = mm(a1.v, b1.v, out, rh, inF), y = mm(a2.v, b2.v, out, rh, inF);
        dh = x.map((v, i) => v * y[i]);
      }
      const { tensors } = await merge(backend, { [key]: baseT }, [{ name: 'kron', tensors: t, weight: 0.6 }, { name: 'hada', tensors: t2, weight: -0.3 }]);
      const exact = addScaled(addScaled(baseT.v, kron(w1, a, c, w2, b, d * K), 0.6 * scale), dh, -0.3);
      expectMerged(tensors.get(key)!.values, exact, wDtype, `${form} ${a}×${c} ⊗ ${b}×${d}×${K}`);
    });
  });
});
