/**
 * musubi-tuner's own LoKr and LoHa (`--network_module networks.lokr` / `networks.loha`, added in
 * February 2026, Linear layers only; src/musubi_tuner/networks/lokr.py and loha.py), on Wan 2.1
 * T2V 1.3B's `blocks.0.self_attn.q` (1536 × 1536, F32 in the released checkpoint), under its kohya
 * name `lora_unet_blocks_0_self_attn_q`, factors saved in BF16 with `ss_network_module` metadata.
 * Its LoKr keeps W₁ whole (`lokr_w1` (a, c), a and c from LyCORIS's factorization: 1536 → (32, 48)
 * by default, (8, 192) with factor=8, (4, 384) with factor=4) and W₂ as `lokr_w2_a` (b, r)·`lokr_w2_b` (r, d) while
 * r < max(b, d)/2, else whole (`lokr_w2` (b, d)), where it sets α to r and so scales by 1; its
 * merge_weights_to_tensor applies `kron(W₁, W₂)·α/r` (α/dim in the low-rank form, 1 in the full
 * one). Its LoHa is `(w1a·w1b) ⊙ (w2a·w2b)·α/r`. The same tensor names and rules as LyCORIS's, so
 * these files merge through the LoKr and LoHa algorithms; truth here in float64 from musubi's
 * formulas, written out.
 */
import { describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'both' });
const rand = seededRandom(2602);
const KEY = 'blocks.0.self_attn.q.weight';
const M = 'lora_unet_blocks_0_self_attn_q';
const D = 1536;

const bf16 = (n: number) => randomValues(n, rand, 0.3).map((x) => roundForDType(x, 'BF16'));
const tensor = (name: string, shape: number[], data: Float64Array, dtype: 'BF16' | 'F32' = 'BF16'): FixtureTensor => ({ name, dtype, shape, data });
const alpha = (v: number) => tensor(`${M}.alpha`, [], Float64Array.of(v));
const w = randomValues(D * D, rand, 0.05).map((x) => roundForDType(x, 'F32'));

/** (p × r)·(r × q), row-major. */
function mm(a: Float64Array, b: Float64Array, p: number, r: number, q: number): Float64Array {
  const out = new Float64Array(p * q);
  for (let i = 0; i < p; i++) for (let k = 0; k < r; k++) {
    const v = a[i * r + k];
    for (let j = 0; j < q; j++) out[i * q + j] += v * b[k * q + j];
  }
  return out;
}

/** kron(W₁ (a × c), W₂ (b × d)): ΔW[i·b + j, p·d + q] = W₁[i, p]·W₂[j, q]. */
function kron(w1: Float64Array, a: number, c: number, w2: Float64Array, b: number, d: number): Float64Array {
  const out = new Float64Array(a * b * c * d);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) for (let p = 0; p < c; p++) for (let q = 0; q < d; q++) {
    out[(i * b + j) * (c * d) + p * d + q] = w1[i * c + p] * w2[j * d + q];
  }
  return out;
}

/** One file: its tensors, train_network's metadata (`--network_dim`, `--network_alpha`, `--network_args`), ΔW and musubi's scale. */
interface Case { name: string; module: string; dim: number; alpha: number; args: string; tensors: FixtureTensor[]; delta: Float64Array; scale: number }

const CASES: Case[] = (() => {
  const list: Case[] = [];
  {
    // network_dim 4, network_alpha 2, factor=8: W₁ (8, 8), W₂ = (192, 4)·(4, 192).
    const w1 = bf16(8 * 8), w2a = bf16(192 * 4), w2b = bf16(4 * 192);
    list.push({
      name: 'networks.lokr with factor=8, lokr_w1 (8, 8) with lokr_w2_a (192, 4)·lokr_w2_b (4, 192), α 2: kron·α/r', module: 'networks.lokr', dim: 4, alpha: 2, args: '{"factor": "8"}',
      tensors: [tensor(`${M}.lokr_w1`, [8, 8], w1), tensor(`${M}.lokr_w2_a`, [192, 4], w2a), tensor(`${M}.lokr_w2_b`, [4, 192], w2b), alpha(2)],
      delta: kron(w1, 8, 8, mm(w2a, w2b, 192, 4, 192), 192, 192), scale: 2 / 4,
    });
  }
  {
    // network_dim 64 ≥ max(48, 48)/2: W₂ whole, α stored as 64 and the scale 1.
    const w1 = bf16(32 * 32), w2 = bf16(48 * 48);
    list.push({
      name: 'networks.lokr, lokr_w1 (32, 32) and lokr_w2 (48, 48) whole, α 64: kron·1', module: 'networks.lokr', dim: 64, alpha: 64, args: '{}',
      tensors: [tensor(`${M}.lokr_w1`, [32, 32], w1), tensor(`${M}.lokr_w2`, [48, 48], w2), alpha(64)],
      delta: kron(w1, 32, 32, w2, 48, 48), scale: 1,
    });
  }
  {
    // factor=4: W₁ (4, 4), W₂ = (384, 1)·(1, 384) at network_dim 1, network_alpha 1.
    const w1 = bf16(4 * 4), w2a = bf16(384), w2b = bf16(384);
    list.push({
      name: 'networks.lokr with factor=4, lokr_w1 (4, 4) with lokr_w2_a (384, 1)·lokr_w2_b (1, 384), α 1', module: 'networks.lokr', dim: 1, alpha: 1, args: '{"factor": "4"}',
      tensors: [tensor(`${M}.lokr_w1`, [4, 4], w1), tensor(`${M}.lokr_w2_a`, [384, 1], w2a), tensor(`${M}.lokr_w2_b`, [1, 384], w2b), alpha(1)],
      delta: kron(w1, 4, 4, mm(w2a, w2b, 384, 1, 384), 384, 384), scale: 1,
    });
  }
  {
    // networks.loha, network_dim 4, network_alpha 8.
    const a1 = bf16(D * 4), b1 = bf16(4 * D), a2 = bf16(D * 4), b2 = bf16(4 * D);
    const p1 = mm(a1, b1, D, 4, D), p2 = mm(a2, b2, D, 4, D);
    list.push({
      name: 'networks.loha, hada_w*_a (1536, 4)·hada_w*_b (4, 1536), α 8: (w1a·w1b) ⊙ (w2a·w2b)·α/r', module: 'networks.loha', dim: 4, alpha: 8, args: '{}',
      tensors: [tensor(`${M}.hada_w1_a`, [D, 4], a1), tensor(`${M}.hada_w1_b`, [4, D], b1), tensor(`${M}.hada_w2_a`, [D, 4], a2), tensor(`${M}.hada_w2_b`, [4, D], b2), alpha(8)],
      delta: p1.map((x, i) => x * p2[i]), scale: 8 / 4,
    });
  }
  return list;
})();

async function check(backend: MergeBackend, c: Case, s: number): Promise<void> {
  const metadata = { ss_network_module: c.module, ss_network_dim: String(c.dim), ss_network_alpha: String(c.alpha), ss_network_args: c.args };
  const { tensors } = await mergeInMemory({
    backend,
    base: { 'diffusion_pytorch_model.safetensors': buildSafetensors([tensor(KEY, [D, D], w, 'F32')]) },
    adapters: [{ files: { 'wan_lokr.safetensors': buildSafetensors(c.tensors, metadata) }, weight: s }],
    slabBytes: 1 << 20,
  });
  const got = tensors.get(KEY)!.values;
  const want = w.map((x, i) => x + s * c.scale * c.delta[i]);
  const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
  for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= 1e-6 * scale)) expect.fail(`${c.name} at ${s} [${i}]: got ${got[i]}, truth ${want[i]}`);
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('musubi-tuner networks.lokr / networks.loha on Wan, %s', (name) => {
  for (const c of CASES) {
    // One weight other than 1 (the scale and the weight both show); a 1536² merge per case.
    it(`${c.name}, at weight 0.6`, async (ctx) => {
      const backend = backends[name];
      if (!backend) return ctx.skip();
      await check(backend, c, 0.6);
    });
  }
});
