/**
 * blissful-tuner's own LoKr (DustyL/blissful-tuner, a musubi-tuner fork: src/musubi_tuner/networks/lokr.py,
 * `--network_module networks.lokr`) on Wan 2.1 T2V 1.3B's `blocks.0.self_attn.q` (1536 × 1536), under
 * its kohya name. Its network saves `lokr_factor` (an I64 buffer, cast to the save precision with
 * every other tensor by save_weights) and its LoRA network's `use_rslora_flag` and `use_dora_flag`
 * beside the modules. Its factorization() puts the larger factor first, so W₁ = lokr_w1 is the large
 * one: factor 16 gives W₁ (96, 96) and W₂ (16, 16); factor -1 gives W₁ (48, 48) and W₂ (32, 32). Its
 * merge_weights_to_tensor applies kron(W₁, W₂)·α/dim with dim the rank of lokr_w2_a·lokr_w2_b, or
 * max(W₂'s sides) when lokr_w2 is whole (where LyCORIS's LoKr scales by 1). Truth in float64 from
 * that formula, written out; the files it cannot be told from or would not apply refused through the CLI.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';

const backends = mergeBackends({ cpu: 'both' });
const temp = tempDirs();
afterAll(temp.removeAll);
const rand = seededRandom(1536);
const KEY = 'blocks.0.self_attn.q.weight';
const M = 'lora_unet_blocks_0_self_attn_q';
const D = 1536;

const values = (n: number, dtype: FixtureDType) => randomValues(n, rand, 0.3).map((x) => roundForDType(x, dtype));
const tensor = (name: string, shape: number[], data: Float64Array | number[], dtype: FixtureDType = 'BF16'): FixtureTensor => ({ name, dtype, shape, data });
const w = randomValues(D * D, rand, 0.05).map((x) => roundForDType(x, 'F32'));
const baseFile = () => ({ 'diffusion_pytorch_model.safetensors': buildSafetensors([tensor(KEY, [D, D], w, 'F32')]) });

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

/** The network's own buffers as save_weights writes them: `lokr_factor` and the two flags, in `dtype` (or I64/BOOL unconverted). */
function buffers(factor: number, dtype: FixtureDType | null, rslora = 0, dora = 0): FixtureTensor[] {
  return [
    tensor('lokr_factor', [], [factor], dtype ?? 'I64'),
    tensor('use_rslora_flag', [], [rslora], dtype ?? 'BOOL'),
    tensor('use_dora_flag', [], [dora], dtype ?? 'BOOL'),
  ];
}

const metadata = (dim: number, alpha: number, factor: number) => ({
  ss_network_module: 'networks.lokr', ss_network_dim: String(dim), ss_network_alpha: String(alpha),
  ss_network_args: JSON.stringify({ factor: String(factor) }), ss_lokr_factor: String(factor),
});

interface Case { name: string; tensors: FixtureTensor[]; meta: Record<string, string>; delta: Float64Array; scale: number }

const CASES: Case[] = (() => {
  const list: Case[] = [];
  {
    // factor 16, network_dim 4 < max(16, 16): W₂ = (16, 4)·(4, 16), α 2 → 2/4. Saved in bf16, buffers too.
    const w1 = values(96 * 96, 'BF16'), w2a = values(16 * 4, 'BF16'), w2b = values(4 * 16, 'BF16');
    list.push({
      name: 'factor 16 (saved bf16): lokr_w1 (96, 96), lokr_w2_a (16, 4)·lokr_w2_b (4, 16), α 2: kron·α/r',
      tensors: [...buffers(16, 'BF16'), tensor(`${M}.lokr_w1`, [96, 96], w1), tensor(`${M}.lokr_w2_a`, [16, 4], w2a), tensor(`${M}.lokr_w2_b`, [4, 16], w2b), tensor(`${M}.alpha`, [], [2])],
      meta: metadata(4, 2, 16), delta: kron(w1, 96, 96, mm(w2a, w2b, 16, 4, 16), 16, 16), scale: 2 / 4,
    });
  }
  {
    // factor -1, network_dim 64 ≥ max(32, 32): lokr_w2 (32, 32) whole, α 16 → 16/32 (LyCORIS's rule: 1).
    const w1 = values(48 * 48, 'F32'), w2 = values(32 * 32, 'F32');
    list.push({
      name: 'factor -1 (saved unconverted): lokr_w1 (48, 48), lokr_w2 (32, 32) whole, α 16: kron·α/max(32, 32)',
      tensors: [...buffers(-1, null), tensor(`${M}.lokr_w1`, [48, 48], w1, 'F32'), tensor(`${M}.lokr_w2`, [32, 32], w2, 'F32'), tensor(`${M}.alpha`, [], [16], 'F32')],
      meta: metadata(64, 16, -1), delta: kron(w1, 48, 48, w2, 32, 32), scale: 16 / 32,
    });
  }
  return list;
})();

async function check(backend: MergeBackend, c: Case, s: number): Promise<void> {
  const { tensors } = await mergeInMemory({
    backend, base: baseFile(), adapters: [{ files: { 'wan_lokr.safetensors': buildSafetensors(c.tensors, c.meta) }, weight: s }], slabBytes: 1 << 20,
  });
  const got = tensors.get(KEY)!.values;
  const want = w.map((x, i) => x + s * c.scale * c.delta[i]);
  const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
  for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= 1e-6 * scale)) expect.fail(`${c.name} at ${s} [${i}]: got ${got[i]}, truth ${want[i]}`);
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('blissful-tuner networks.lokr on Wan, %s', (name) => {
  for (const c of CASES) {
    it(`${c.name}, at weight 0.6`, async (ctx) => {
      const backend = backends[name];
      if (!backend) return ctx.skip();
      await check(backend, c, 0.6);
    });
  }
});

describe('refused through the CLI: one line, nothing written', () => {
  const w1 = values(48 * 48, 'BF16'), w2 = values(32 * 32, 'BF16');
  const lokr = [tensor(`${M}.lokr_w1`, [48, 48], w1), tensor(`${M}.lokr_w2`, [32, 32], w2), tensor(`${M}.alpha`, [], [16])];
  const loraK = 'lora_unet_blocks_0_self_attn_k';
  const cases: [string, FixtureTensor[], RegExp][] = [
    ['a lokr_factor that is not a whole number', [tensor('lokr_factor', [], [2.5], 'F32'), ...lokr],
      /wan_lokr\.safetensors: tensor "lokr_factor" is F32 \(\) holding 2\.5, not the one whole number blissful-tuner's LoKr network saves there/],
    ['use_rslora_flag on with a LoRA module beside the LoKr', [...buffers(-1, 'BF16', 1), ...lokr, tensor(`${loraK}.lora_down.weight`, [4, D], values(4 * D, 'BF16')), tensor(`${loraK}.lora_up.weight`, [D, 4], values(4 * D, 'BF16'))],
      /wan_lokr\.safetensors: blissful-tuner's "use_rslora_flag" is on and the file holds "lora_unet_blocks_0_self_attn_k\.lora_(down|up)\.weight", not a LoKr tensor/],
    ['W₁ decomposed, which its merge does not read', [...buffers(8, 'BF16'), tensor(`${M}.lokr_w1_a`, [192, 4], values(192 * 4, 'BF16')), tensor(`${M}.lokr_w1_b`, [4, 192], values(4 * 192, 'BF16')), tensor(`${M}.lokr_w2`, [8, 8], values(64, 'BF16')), tensor(`${M}.alpha`, [], [4])],
      /wan_lokr\.safetensors: module "lora_unet_blocks_0_self_attn_q" is LoKr in a blissful-tuner file \(it holds "lokr_factor"\), whose merge reads lokr_w1 with a 2-D lokr_w2 or lokr_w2_a·lokr_w2_b and nothing else/],
  ];
  it.each(cases)('%s', async (_what, tensors, message) => {
    await expectRefusedByCliAndLibrary(temp.make, backends['cpu (wasm)']!, { 'diffusion_pytorch_model.safetensors': buildSafetensors([tensor(KEY, [D, D], w, 'F32'), tensor('blocks.0.self_attn.k.weight', [D, D], w, 'F32')]) },
      { 'wan_lokr.safetensors': buildSafetensors(tensors, metadata(64, 16, -1)) }, message);
  });
});
