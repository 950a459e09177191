/**
 * LyCORIS GLoRA on a k×k conv trained with use_tucker (LyCORIS 3.0, mid 2024): b2 is 1×1 and a
 * Tucker core `bm.weight` (r, r, kh, kw) carries the kernel, ΔW = (tucker_weight_from_conv(b1, b2,
 * bm) + W·a1·a2)·α/r, the first einsum "m n ..., i m, n j -> i j ...". Truth in float64.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';

const backend = new CpuBackend('test');
const rand = seededRandom(4242);
const KEY = 'down_blocks.0.resnets.0.conv1.weight';
const MODULE = 'lora_unet_down_blocks_0_resnets_0_conv1';
const OUT = 8, IN = 4, K = 9, R = 2, ALPHA = 3;
const values = (n: number) => randomValues(n, rand, 0.3).map((x) => roundForDType(x, 'F32'));
const t = (name: string, shape: number[], data: Float64Array): FixtureTensor => ({ name, dtype: 'F32', shape, data });

const w = values(OUT * IN * K);
const a1 = values(IN * R), a2 = values(R * IN), b1 = values(OUT * R), b2 = values(R * IN), bm = values(R * R * K);
const tensors = (core: FixtureTensor) => [
  t(`${MODULE}.a1.weight`, [IN, R, 1, 1], a1), t(`${MODULE}.a2.weight`, [R, IN, 1, 1], a2),
  t(`${MODULE}.b1.weight`, [OUT, R, 1, 1], b1), t(`${MODULE}.b2.weight`, [R, IN, 1, 1], b2),
  core, t(`${MODULE}.alpha`, [], Float64Array.of(ALPHA)),
];
const base = { 'diffusion_pytorch_model.safetensors': buildSafetensors([t(KEY, [OUT, IN, 3, 3], w)]) };

describe('LyCORIS GLoRA with a Tucker core bm.weight', () => {
  for (const weight of [1, 0.5]) {
    it(`merges (b1·bm·b2 + W·a1·a2)·α/r at weight ${weight}`, async () => {
      const { tensors: out } = await mergeInMemory({ backend, base, adapters: [{ files: { 'g.safetensors': buildSafetensors(tensors(t(`${MODULE}.bm.weight`, [R, R, 3, 3], bm))) }, weight }] });
      const got = out.get(KEY)!.values;
      for (let o = 0; o < OUT; o++) for (let c = 0; c < IN; c++) for (let k = 0; k < K; k++) {
        let b = 0;
        for (let m = 0; m < R; m++) for (let n = 0; n < R; n++) b += bm[(m * R + n) * K + k] * b1[o * R + m] * b2[n * IN + c];
        // (W·a1·a2)[o, c, k] = Σ_i Σ_j W[o, i, k]·a1[i, j]·a2[j, c]: channels mixed at each kernel position.
        let p = 0;
        for (let i = 0; i < IN; i++) for (let j = 0; j < R; j++) p += w[(o * IN + i) * K + k] * a1[i * R + j] * a2[j * IN + c];
        const at = (o * IN + c) * K + k;
        const want = w[at] + weight * (ALPHA / R) * (b + p);
        if (Math.abs(got[at] - want) > 1e-6) expect.fail(`[${o}, ${c}, ${k}]: got ${got[at]}, truth ${want}`);
      }
    });
  }

  it('refuses a core that does not fit b1 and b2, naming it', async () => {
    const problems = await refusalsInMemory({ backend, base, adapters: [{ files: { 'g.safetensors': buildSafetensors(tensors(t(`${MODULE}.bm.weight`, [R + 1, R + 1, 3, 3], values((R + 1) ** 2 * K)))) } }] });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/GLoRA Tucker core bm\.weight \(3, 3, 3, 3\) does not fit b1 \(8, 2, 1, 1\) and b2 \(2, 4, 1, 1\)/);
  });
});
