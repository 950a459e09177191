/**
 * Refusals of the blocks a merge or a `--dtype` conversion would write (a block's f16 scale
 * overflowing to NaN or Inf, Q6_K's f32 sums overflowing into zeros, ggml's IQ3 search stopping)
 * count over the whole tensor and name its first and last row, as the NaN/Inf refusals do
 * (gguf-convert-non-finite-rows), not only the slab or chunk met first. The faulty rows, 2 and 13
 * of a 256-column tensor, lie in two slabs of 4 rows (slabBytes 4096 of f32 values).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { threadBackends } from './helpers/thread-backends.js';
import { buildGguf, tensorData } from './helpers/gguf-builder.js';
import { LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { nonFiniteStop } from './helpers/non-finite-cases.js';

const SLAB_BYTES = 4096;
const H = LLAMA.hidden;
const BAD_ROWS = [2, 13];
const LLAMA_Q4KM = q4kmLlama();
const Q4KM = LLAMA_Q4KM.files['tiny-llama-Q4_K_M.gguf'] as Uint8Array;
const backends: Record<string, MergeBackend> = {};
const gpu = mergeBackends({ cpu: 'default' });

// The CPU on one thread and on worker threads (made and disposed by threadBackends).
const threads = threadBackends();
beforeAll(() => {
  backends['one thread'] = threads.backend();
  backends['worker threads'] = threads.backend(threads.sharedPool);
});

/** A rank-1 llama.cpp LoRA on attn_q (α 0: the scale is the weight): A all 1, B 1 in rows 2 and 13, 0 elsewhere. */
function rowsLora(): Uint8Array {
  const str = (value: string) => ({ type: 'string' as const, value });
  return buildGguf({
    metadata: [['general.architecture', str('llama')], ['general.type', str('adapter')], ['adapter.type', str('lora')], ['adapter.lora.alpha', { type: 'f32', value: 0 }]],
    tensors: [
      { name: 'blk.0.attn_q.weight.lora_a', type: 'F32', ne: [H, 1], data: tensorData('F32', new Array(H).fill(1)) },
      { name: 'blk.0.attn_q.weight.lora_b', type: 'F32', ne: [1, H], data: tensorData('F32', Array.from({ length: H }, (_, r) => (BAD_ROWS.includes(r) ? 1 : 0))) },
    ],
  });
}

/** q4kmLlama with blk.0.ffn_down.weight stored F32: small values, and `big` in rows 2 and 13. */
function llamaWithBigRows(big: number): Uint8Array {
  const base = LLAMA_Q4KM;
  const values = Float32Array.from({ length: H * H }, (_, i) => (BAD_ROWS.includes(Math.floor(i / H)) ? big : 0.01 * Math.sin(i)));
  return buildGguf({
    metadata: base.metadata,
    tensors: [...base.tensors].map(([n, t]) => (n === 'blk.0.ffn_down.weight'
      ? { name: n, type: 'F32', ne: [H, H], data: new Uint8Array(values.buffer) }
      : { name: n, type: t.type, ne: [...t.shape].reverse(), data: t.data })),
  });
}

/** The one error a merge of the rows LoRA at `weight` into `gguf`, written as `outDtype`, stops with. */
async function mergeError(gguf: Uint8Array, weight: number, outDtype: string, backend: MergeBackend): Promise<string> {
  const prepared = await prepareMerge(memoryInputFileSet({ 'tiny-llama.gguf': gguf }, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': rowsLora() }, 'lora'), weight }]);
  return nonFiniteStop(prepared, backend, outDtype, SLAB_BYTES);
}

const IQ3 = "ggml's IQ3 quantizer overflows f32 on them and aborts, so llama-quantize cannot write them either; choose --dtype f16, bf16 or f32";

describe('CPU', () => {
  const name = 'one thread';
  it('merged values too large for Q8_0\'s f16 scales in rows 2 and 13: every such value counted, both rows', async () => {
    // ΔW = 9e6 in rows 2 and 13 (all 256 columns): 9e6 / 127 overflows a block's f16 scale.
    const message = await mergeError(Q4KM, 9e6, 'q8_0', backends[name]);
    expect(message).toMatch(/^base\/tiny-llama\.gguf: tensor "blk\.0\.attn_q\.weight": merged values up to 9\.00e\+6 are too large for Q8_0 blocks: /);
    expect(message.replace(/^.*blocks: /, '')).toBe(
      `${2 * H} values (first in row 2, last in row 13) would be NaN or Inf, the blocks' f16 scales overflow; write with --dtype f32 or bf16, or lower --weight`,
    );
  });

  it('merged values Q6_K\'s quantizer writes as zeros (1e30) in rows 2 and 13: counted over both slabs', async () => {
    const message = await mergeError(Q4KM, 1e30, 'q6_k', backends[name]);
    expect(message.replace(/^.*blocks: /, '')).toBe(
      `${2 * H} values (first in row 2, last in row 13) would be written as zeros, ggml's quantizer overflows f32 on them; write with --dtype f32 or bf16, or lower --weight`,
    );
  });

  it('--dtype q6_k on a copied F32 ffn_down with 1e30 in rows 2 and 13: the zeros counted over the whole tensor', async () => {
    const message = await mergeError(llamaWithBigRows(1e30), 1, 'q6_k', backends[name]);
    expect(message).toBe(
      `tensor "blk.0.ffn_down.weight": converting F32 to Q6_K writes ${2 * H} values (first in row 2, last in row 13) as zeros (ggml's quantizer overflows f32 on values this large); choose --dtype f32 or bf16`,
    );
  });

  it('--dtype q8_0 on a copied F32 ffn_down with 9e6 in rows 2 and 13: every NaN or Inf block value, both rows', async () => {
    const message = await mergeError(llamaWithBigRows(9e6), 1, 'q8_0', backends[name]);
    expect(message).toBe(
      `tensor "blk.0.ffn_down.weight": converting F32 to Q8_0 makes ${2 * H} values (first in row 2, last in row 13) NaN or Inf, finite before: a Q8_0 block's f16 scale overflows; choose --dtype f32 or bf16`,
    );
  });
});

// The codec's refusal crosses from a worker thread on the pool: the same line.
describe.each(['one thread', 'worker threads'])('CPU, %s', (name) => {
  it('merged values ggml\'s IQ3_XXS search stops on in rows 2 and 13: the file, tensor, how many rows and which', async () => {
    const message = await mergeError(Q4KM, 1e16, 'iq3_xxs', backends[name]);
    expect(message).toBe(`base/tiny-llama.gguf: tensor "blk.0.attn_q.weight": values too large (or not finite) for an IQ3 block in 2 rows (first in row 2, last in row 13): ${IQ3}`);
  });

  it('--dtype iq3_xxs on a copied F32 ffn_down with 1e16 in rows 2 and 13: how many rows ggml\'s search stops on, and which', async () => {
    const message = await mergeError(llamaWithBigRows(1e16), 1, 'iq3_xxs', backends[name]);
    expect(message).toBe(`tensor "blk.0.ffn_down.weight": values too large (or not finite) for an IQ3 block in 2 rows (first in row 2, last in row 13): ${IQ3}`);
  });
});

describe('WebGPU', () => {
  it('merged values too large for Q8_0\'s f16 scales in rows 2 and 13: the same line as on the CPU', async (ctx) => {
    const backend = gpu.webgpu;
    if (!backend) return ctx.skip();
    const message = await mergeError(Q4KM, 9e6, 'q8_0', backend);
    expect(message).toBe(
      `base/tiny-llama.gguf: tensor "blk.0.attn_q.weight": merged values up to 9.00e+6 are too large for Q8_0 blocks: ${2 * H} values (first in row 2, last in row 13) would be NaN or Inf, the blocks' f16 scales overflow; write with --dtype f32 or bf16, or lower --weight`,
    );
  });
});
