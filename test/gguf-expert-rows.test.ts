/**
 * A stack of experts (GGUF `ffn_down_exps`, ne [in, out, experts]) is named by expert and row in
 * both of a `--dtype` conversion's refusals: the NaN/Inf it already holds (counted over the tensor
 * read again) and the values its blocks' f16 scales cannot hold (counted by llama.cpp's rows of ne0
 * across the experts); before, the first named experts as rows and the second rows across experts,
 * so the two named different rows for the same values. The bad values lie in row 3 of expert 1 and
 * row 5 of expert 2 (llama.cpp rows 11 and 21), in two reads of 4096 bytes.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { buildGguf, tensorData } from './helpers/gguf-builder.js';
import { LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { nonFiniteStop } from './helpers/non-finite-cases.js';

const backends = mergeBackends({ cpu: 'default' });
const [IN, OUT, EXPERTS] = [64, 8, 4];
const EXPS = 'blk.0.ffn_down_exps.weight';
/** [expert, row] of the bad rows. */
const BAD: [number, number][] = [[1, 3], [2, 5]];

/** q4kmLlama with a stacked F32 expert tensor (ne [64, 8, 4]) added, small values but `bad(i)` at flat indices `at`. */
function withExperts(at: number[], bad: number): Uint8Array {
  const base = q4kmLlama();
  const values = Array.from({ length: IN * OUT * EXPERTS }, (_, i) => (at.includes(i) ? bad : 0.01 * Math.sin(i)));
  return buildGguf({
    metadata: base.metadata,
    tensors: [
      ...[...base.tensors].map(([n, t]) => ({ name: n, type: t.type, ne: [...t.shape].reverse(), data: t.data })),
      { name: EXPS, type: 'F32', ne: [IN, OUT, EXPERTS], data: tensorData('F32', values) },
    ],
  });
}

/** A rank-1 llama.cpp LoRA on attn_q (α 0: the scale is the weight, 1), small: the merge reaches the expert tensor, which it copies. */
function attnQLora(): Uint8Array {
  const H = LLAMA.hidden;
  const str = (value: string) => ({ type: 'string' as const, value });
  return buildGguf({
    metadata: [['general.architecture', str('llama')], ['general.type', str('adapter')], ['adapter.type', str('lora')], ['adapter.lora.alpha', { type: 'f32', value: 0 }]],
    tensors: [
      { name: 'blk.0.attn_q.weight.lora_a', type: 'F32', ne: [H, 1], data: tensorData('F32', new Array(H).fill(0.01)) },
      { name: 'blk.0.attn_q.weight.lora_b', type: 'F32', ne: [1, H], data: tensorData('F32', new Array(H).fill(0.01)) },
    ],
  });
}

async function conversionError(gguf: Uint8Array, outDtype: string, backend: MergeBackend): Promise<string> {
  const prepared = await prepareMerge(memoryInputFileSet({ 'moe.gguf': gguf }, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': attnQLora() }, 'lora') }]);
  return nonFiniteStop(prepared, backend, outDtype, 4096);
}

describe.each(['cpu', 'webgpu'])('%s: a stack of experts converted to Q8_0', (name) => {
  // By hand: the flat index of [expert e, row r, input j] is (e·OUT + r)·IN + j.
  const flat = (e: number, r: number, j: number) => (e * OUT + r) * IN + j;

  it('NaN in row 3 of expert 1 and row 5 of expert 2: named by expert and row', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const at = [flat(1, 3, 7), flat(1, 3, 40), flat(2, 5, 0)];
    const message = await conversionError(withExperts(at, NaN), 'q8_0', backend);
    expect(message).toMatch(new RegExp(`^tensor "${EXPS.replace(/\./g, '\\.')}": .*3 NaN or Inf values \\(first in row 3 of expert 1, last in row 5 of expert 2\\)`));
  });

  it('9e6 over row 3 of expert 1 and row 5 of expert 2: every block value that would be NaN or Inf, the same rows', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const at = BAD.flatMap(([e, r]) => Array.from({ length: IN }, (_, j) => flat(e, r, j)));
    const message = await conversionError(withExperts(at, 9e6), 'q8_0', backend);
    expect(message).toBe(
      `tensor "${EXPS}": converting F32 to Q8_0 makes ${at.length} values (first in row 3 of expert 1, last in row 5 of expert 2) NaN or Inf, finite before: ` +
        "a Q8_0 block's f16 scale overflows; choose --dtype f32 or bf16",
    );
  });
});
