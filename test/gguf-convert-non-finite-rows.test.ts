/**
 * `--dtype` to a block type on a GGUF tensor the merge only copies, which already holds NaN or Inf:
 * the refusal says how many the whole tensor holds and its first and last row, as the other NaN/Inf
 * refusals do (non-finite-rows-exact), not only that the slab met holds some. The bad values lie in
 * two slabs of mergeModel's smallest slab: an F32 weight's own values, and Q6_K blocks whose f16
 * scale is NaN or Inf (the thread fuzzer's hostile bases).
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { buildGguf } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { REF_BLOCK, referenceDequantizeBlock } from './helpers/ggml-reference.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { nonFiniteStop } from './helpers/non-finite-cases.js';

const backends = mergeBackends({ cpu: 'default' });
const SLAB_BYTES = 4096;
const FATE = "ggml's quantizer would carry them into a block's scale, and llama-quantize's check of its output stops on that";

/** q4kmLlama with `name`'s stored bytes (and type) replaced. */
function llamaWith(name: string, type: string, data: Uint8Array): Uint8Array {
  const base = q4kmLlama();
  return buildGguf({
    metadata: base.metadata,
    tensors: [...base.tensors].map(([n, t]) => (n === name ? { name: n, type, ne: [...t.shape].reverse(), data } : { name: n, type: t.type, ne: [...t.shape].reverse(), data: t.data })),
  });
}

/** The one error a merge of a LoRA on attn_q into `gguf`, every tensor written Q8_0, stops with. */
async function mergeError(gguf: Uint8Array, backend: NonNullable<(typeof backends)[string]>): Promise<string> {
  const h = LLAMA.hidden;
  const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: h, out: h, aType: 'F32', bType: 'F32' }], 8);
  const prepared = await prepareMerge(memoryInputFileSet({ 'tiny-llama.gguf': gguf }, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora'), weight: 1 }]);
  return nonFiniteStop(prepared, backend, 'q8_0', SLAB_BYTES);
}

describe.each(['cpu', 'webgpu'])('%s: --dtype q8_0 on a copied GGUF tensor holding NaN or Inf in two slabs', (name) => {
  it('an F32 ffn_down (4 rows a slab) with NaN in row 2 and ±Inf in row 13: the count and both rows', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const cols = LLAMA.hidden, rows = LLAMA.hidden;
    const values = Float32Array.from({ length: rows * cols }, (_, i) => 0.01 * Math.sin(i));
    values[2 * cols + 5] = NaN;
    values[13 * cols] = Infinity;
    values[13 * cols + 7] = -Infinity;
    // Rows 2 and 13 of 1 KiB each lie in the slabs of 4 KiB that start at rows 0 and 12.
    expect([Math.floor(2 * cols * 4 / SLAB_BYTES), Math.floor(13 * cols * 4 / SLAB_BYTES)]).toEqual([0, 3]);
    const message = await mergeError(llamaWith('blk.0.ffn_down.weight', 'F32', new Uint8Array(values.buffer)), backend);
    expect(message).toBe(
      `tensor "blk.0.ffn_down.weight": it holds 3 NaN or Inf values (first in row 2, last in row 13), which Q8_0 blocks cannot store (${FATE}); leave out --dtype to copy it as stored, or choose f16, bf16 or f32`,
    );
  });

  it('a Q6_K attn_v (19 rows a slab) whose blocks in rows 3 and 40 have a NaN and an Inf scale: every value they decode to, both rows', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes: size } = REF_BLOCK.Q6_K;
    const data = q4kmLlama().tensors.get('blk.0.attn_v.weight')!.data.slice();
    expect(data.byteLength).toBe(128 * size); // 128 rows of one block each
    // d, the block's f16 scale, is its last two bytes (block_q6_K: ql, qh, scales, d).
    for (const [row, bits] of [[3, 0x7e00], [40, 0x7c00]]) {
      data[row * size + size - 2] = bits & 0xff;
      data[row * size + size - 1] = bits >> 8;
    }
    // What the rows decode to, by ggml's reference dequantizer: NaN·q, and Inf·q (Inf·0 is NaN).
    let count = 0;
    for (let row = 0; row < 128; row++) count += referenceDequantizeBlock('Q6_K', data.subarray(row * size, (row + 1) * size)).filter((v) => !Number.isFinite(v)).length;
    expect(count).toBe(512);
    expect([Math.floor(3 / 19), Math.floor(40 / 19)]).toEqual([0, 2]);
    const message = await mergeError(llamaWith('blk.0.attn_v.weight', 'Q6_K', data), backend);
    expect(message).toBe(
      `tensor "blk.0.attn_v.weight": it holds ${count} NaN or Inf values (first in row 3, last in row 40), which Q8_0 blocks cannot store (${FATE}); leave out --dtype to copy it as stored, or choose f16, bf16 or f32`,
    );
  });
});
