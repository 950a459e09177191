/**
 * Which rank a LyCORIS LoKr module's α/r divides by when one or both factors are decomposed.
 * LyCORIS (lycoris/modules/lokr.py make_module_from_state_dict, lycoris/functional/lokr.py
 * diff_weight) takes r from lokr_w1_a's columns (= lokr_w1_b's rows) when W₁ is decomposed, else
 * from lokr_w2_a's columns (= lokr_w2_b's rows). ComfyUI's merging loader
 * (comfy/weight_adapter/lokr.py calculate_weight) sets dim from w1_b, then overwrites it with w2_b's
 * when W₂ is decomposed, so with both decomposed at different ranks it takes r₂. LyCORIS trains the
 * files (with one lora_dim for both factors; different ranks come from other tools), so its rule is
 * followed. Keys as kohya-style LyCORIS files name them, on SD 1.5's first attention's to_q (320 × 320,
 * cut to 12 × 20); truth in float64 from kron(W₁, W₂)·α/r, written out here.
 */
import { describe, expect, it } from 'vitest';
import { mm } from './helpers/dense-f64.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'both' });
const rand = seededRandom(4417);

const BASE_KEY = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight';
const M = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
// W₁ (a, c) ⊗ W₂ (b, d) = ΔW (a·b, c·d): 12 × 20.
const [A, C, B, D] = [3, 4, 4, 5];
const OUT = A * B, IN = C * D;
const ALPHA = 6;

const bf16 = (n: number, scale = 0.4) => randomValues(n, rand, scale).map((x) => roundForDType(x, 'BF16'));
const base = bf16(OUT * IN, 0.05);
const baseFile = () => ({ 'v1-5-pruned.safetensors': buildSafetensors([{ name: BASE_KEY, dtype: 'F32', shape: [OUT, IN], data: base }]) });

/** One factor, whole or as a·b at rank r; its tensors under LyCORIS's names. */
function factor(which: 'w1' | 'w2', rows: number, cols: number, rank: number | null): { value: Float64Array; tensors: FixtureTensor[] } {
  if (rank === null) {
    const w = bf16(rows * cols);
    return { value: w, tensors: [{ name: `${M}.lokr_${which}`, dtype: 'BF16', shape: [rows, cols], data: w }] };
  }
  const a = bf16(rows * rank), b = bf16(rank * cols);
  return {
    value: mm(a, b, rows, rank, cols),
    tensors: [
      { name: `${M}.lokr_${which}_a`, dtype: 'BF16', shape: [rows, rank], data: a },
      { name: `${M}.lokr_${which}_b`, dtype: 'BF16', shape: [rank, cols], data: b },
    ],
  };
}

const CASES: { name: string; r1: number | null; r2: number | null; lycorisRank: number; comfyRank: number }[] = [
  { name: 'both decomposed at different ranks: r of W₁ (ComfyUI: of W₂)', r1: 2, r2: 3, lycorisRank: 2, comfyRank: 3 },
  { name: 'both decomposed, ranks the other way round', r1: 3, r2: 2, lycorisRank: 3, comfyRank: 2 },
  { name: 'W₁ decomposed, W₂ whole: r of W₁', r1: 2, r2: null, lycorisRank: 2, comfyRank: 2 },
  { name: 'W₁ whole, W₂ decomposed: r of W₂', r1: null, r2: 3, lycorisRank: 3, comfyRank: 3 },
];

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('LyCORIS LoKr: the rank α/r divides by, %s', (name) => {
  it.for(CASES)('$name', async ({ r1, r2, lycorisRank, comfyRank }, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const w1 = factor('w1', A, C, r1), w2 = factor('w2', B, D, r2);
    const file = buildSafetensors([...w1.tensors, ...w2.tensors, { name: `${M}.alpha`, dtype: 'BF16', shape: [], data: [ALPHA] }],
      { ss_network_module: 'lycoris.kohya', ss_network_dim: String(lycorisRank), ss_network_alpha: String(ALPHA), ss_network_args: JSON.stringify({ algo: 'lokr' }) });
    const weight = 0.8;
    const { tensors } = await mergeInMemory({ backend, base: baseFile(), adapters: [{ files: { 'lokr.safetensors': file }, weight }] });
    const got = tensors.get(BASE_KEY)!.values;
    // ΔW[i·b + j, p·d + q] = W₁[i, p]·W₂[j, q].
    const truth = (rank: number) => {
      const w = new Float64Array(OUT * IN);
      for (let i = 0; i < A; i++) for (let j = 0; j < B; j++) for (let p = 0; p < C; p++) for (let q = 0; q < D; q++) {
        const at = (i * B + j) * IN + p * D + q;
        w[at] = base[at] + weight * (ALPHA / rank) * w1.value[i * C + p] * w2.value[j * D + q];
      }
      return w;
    };
    const want = truth(lycorisRank);
    const size = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (let i = 0; i < want.length; i++) {
      if (!(Math.abs(got[i] - want[i]) <= 1e-6 * size)) expect.fail(`[${i}]: got ${got[i]}, LyCORIS's truth ${want[i]}`);
    }
    if (comfyRank !== lycorisRank) {
      // ComfyUI's rank gives another weight, far outside that tolerance: the case tells the rules apart.
      const comfy = truth(comfyRank);
      expect(want.some((x, i) => Math.abs(x - comfy[i]) > 1e-3 * size)).toBe(true);
    }
  });
});
