/**
 * Merged values so large that ggml's quantizers overflow f32 before their f16 scale does: Q3_K and
 * Q6_K (make_qx_quants' sums of squares, past about 1e18) write d = 0 and IQ4_XS −0, so the block
 * decodes to zeros, not to the NaN or Inf the scale checks find. The test helpers' reference
 * quantizers (ggml-reference.ts, ggml-iq4-reference.ts) show it; a merge at weight 1e30 into a llama
 * GGUF written as such a type used to exit 0 with the merged tensor zeroed (the surface fuzzer's
 * gguf-type-mixes world, seed 1, case 93: `--dtype q6_k_mix`). Now refused in one line naming the
 * tensor, on the CPU and on WebGPU, as a conversion of a base tensor that large is.
 */
import { describe, expect, it } from 'vitest';
import { buildGguf, tensorData, tensorValues, type MetaValue } from './helpers/gguf-builder.js';
import { mergeBackends, refusalsInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });
const HIDDEN = 256, KV = 64;
const u32 = (value: number): MetaValue => ({ type: 'u32', value });
const str = (value: string): MetaValue => ({ type: 'string', value });
const ramp = (n: number, scale: number) => Array.from({ length: n }, (_, i) => scale * (((i * 37) % 17) / 17 - 0.5));

/** A one-block llama GGUF, BF16 matrices (attn_k's values scaled by `kScale`), F32 norms. */
function llama(kScale = 1): Uint8Array {
  const m = (name: string, rows: number, cols: number, scale = 1) => ({ name, type: 'BF16', ne: [cols, rows], data: tensorData('BF16', ramp(rows * cols, scale)) });
  return buildGguf({
    metadata: [
      ['general.architecture', str('llama')], ['llama.block_count', u32(1)], ['llama.embedding_length', u32(HIDDEN)], ['llama.feed_forward_length', u32(HIDDEN)],
      ['llama.attention.head_count', u32(4)], ['llama.attention.head_count_kv', u32(1)], ['llama.context_length', u32(256)], ['general.file_type', u32(32)],
    ],
    tensors: [
      m('token_embd.weight', 8, HIDDEN),
      { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [HIDDEN], data: tensorData('F32', ramp(HIDDEN, 1)) },
      m('blk.0.attn_q.weight', HIDDEN, HIDDEN), m('blk.0.attn_k.weight', KV, HIDDEN, kScale), m('blk.0.attn_v.weight', KV, HIDDEN),
      m('blk.0.attn_output.weight', HIDDEN, HIDDEN), m('output.weight', 8, HIDDEN),
    ],
  });
}

/** A llama.cpp LoRA on blk.0.attn_v (rank 1, α 0: the scale is the weight). */
const lora = buildGguf({
  metadata: [['general.architecture', str('llama')], ['general.type', str('adapter')], ['adapter.type', str('lora')], ['adapter.lora.alpha', { type: 'f32', value: 0 }]],
  tensors: [
    { name: 'blk.0.attn_v.weight.lora_a', type: 'F32', ne: [HIDDEN, 1], data: tensorData('F32', ramp(HIDDEN, 1)) },
    { name: 'blk.0.attn_v.weight.lora_b', type: 'F32', ne: [1, KV], data: tensorData('F32', ramp(KV, 1)) },
  ],
});

describe('blocks a quantizer overflows into zeros', () => {
  it('ggml\'s reference Q6_K, Q3_K and IQ4_XS write a block of values near 1e30 as zeros (Q4_K as NaN)', () => {
    const huge = ramp(256, 1e30);
    for (const type of ['Q6_K', 'Q3_K', 'IQ4_XS']) expect(Array.from(tensorValues(type, tensorData(type, huge))).every((x) => x === 0), type).toBe(true);
    expect(Array.from(tensorValues('Q4_K', tensorData('Q4_K', huge))).some(Number.isNaN)).toBe(true);
  });

  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`a merge at weight 1e30 written Q6_K (--dtype q6_k_mix, q6_k) or Q3_K is refused naming attn_v, not written as zeros, on ${kind}`, async (ctx) => {
      const backend = backends[kind];
      if (!backend) return ctx.skip();
      for (const outDtype of ['Q6_K_MIX', 'Q6_K', 'Q3_K', 'IQ4_XS']) {
        const refusals = await refusalsInMemory({ backend, base: { 'tiny-llama-BF16.gguf': llama() }, adapters: [{ files: { 'lora.gguf': lora }, weight: 1e30 }], outDtype });
        expect(refusals, outDtype).toHaveLength(1);
        expect(refusals[0], outDtype).toMatch(/tensor "blk\.0\.attn_v\.weight": merged values up to .* are too large for (Q6_K|Q3_K|IQ4_XS) blocks: \d+ values \((row \d+|first in row \d+, last in row \d+)\) would be written as zeros/);
      }
      // At a weight the blocks hold, the same merge is written.
      expect(await refusalsInMemory({ backend, base: { 'tiny-llama-BF16.gguf': llama() }, adapters: [{ files: { 'lora.gguf': lora }, weight: 1e6 }], outDtype: 'Q6_K' })).toEqual([]);
    });
  }

  it('a base tensor that large converted to Q6_K by --dtype (not merged) is refused too', async () => {
    const refusals = await refusalsInMemory({ backend: backends.cpu!, base: { 'tiny-llama-BF16.gguf': llama(1e30) }, adapters: [{ files: { 'lora.gguf': lora } }], outDtype: 'Q6_K' });
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatch(/blk\.0\.attn_k\.weight.*converting BF16 to Q6_K writes \d+ values \((row \d+|first in row \d+, last in row \d+)\) as zeros/);
  });
});
