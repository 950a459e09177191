/**
 * Merging into an IQ-quantized GGUF: loramerge reads IQ blocks but writes only IQ3_XXS, IQ3_S,
 * IQ4_NL and IQ4_XS (test/gguf-iq3-codecs.test.ts, test/gguf-iq4-codecs.test.ts), so a merge
 * that would keep an IQ1 or IQ2 type is refused before any work, saying to choose --dtype; with
 * --dtype the merged and the untouched matrices
 * are written in that type (the reference quantizer of the exactly decoded values) and norms stay.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockDecoder } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { seededRandom } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { ggufLoraAdapter } from './helpers/gguf-models.js';

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu?.dispose());

/** Random blocks of an IQ type with small finite f16 scales (as a quantized model's). */
function iqBlocks(name: string, values: number, seed: number): Uint8Array {
  const type = ggmlTypeByName(name)!;
  const rand = seededRandom(seed);
  const bytes = new Uint8Array((values / type.blockSize) * type.blockBytes);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
  for (let at = 0; at < bytes.length; at += type.blockBytes) {
    bytes[at] = Math.floor(rand() * 256);
    bytes[at + 1] = 0x10 | Math.floor(rand() * 4); // d ≈ 5e-4
  }
  return bytes;
}

function decoded(name: string, bytes: Uint8Array): Float32Array {
  const type = ggmlTypeByName(name)!;
  const out = new Float32Array((bytes.length / type.blockBytes) * type.blockSize);
  blockDecoder(type)!.decode(bytes, out);
  return out;
}

describe('an IQ-quantized GGUF base', () => {
  const q = iqBlocks('IQ2_XXS', 256 * 64, 1);
  const up = iqBlocks('IQ4_XS', 256 * 32, 2);
  const norm = tensorData('F32', new Float64Array(256).fill(1));
  const base = {
    'iq.gguf': buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: 19 }]],
      tensors: [
        { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [256], data: norm },
        { name: 'blk.0.attn_q.weight', type: 'IQ2_XXS', ne: [256, 64], data: q },
        { name: 'blk.0.ffn_up.weight', type: 'IQ4_XS', ne: [256, 32], data: up },
      ],
    }),
  };
  const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: 256, out: 64, aType: 'F32', bType: 'F32' }], 4);

  async function run(outDtype?: string) {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      expect(prepared.plan.problems).toEqual([]);
      const output = createBlobOutputTarget();
      const warnings: string[] = [];
      await mergeModel({ prepared, output, backend: cpu, outDtype, onWarning: (w) => warnings.push(w) });
      return { out: readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer())), warnings, planWarnings: prepared.plan.warnings };
    } finally {
      await prepared.close();
    }
  }

  it('refuses to keep the IQ type of a merged tensor, before any work, saying what to do', async () => {
    await expect(run()).rejects.toMatchObject({
      code: 'BAD_ARGUMENT',
      message: expect.stringMatching(/tensor "blk\.0\.attn_q\.weight": loramerge reads IQ2_XXS but does not write it: llama\.cpp's quantizers for it search codebook grids with an importance matrix \(llama-imatrix\), and llama-quantize refuses to write it without one.*; choose --dtype q4_k/),
    });
  });

  it('with --dtype q4_k writes the merged and the untouched matrices as Q4_K of their exact values; the norm stays F32', async () => {
    const { out: inF32 } = await run('f32');
    const { out, warnings } = await run('q4_k');
    const byName = (file: typeof out, name: string) => file.tensors.find((t) => t.name === name)!;
    expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['F32', 'Q4_K', 'Q4_K']);
    expect(Buffer.from(byName(out, 'blk.0.attn_norm.weight').data).equals(Buffer.from(norm))).toBe(true);
    // The merged tensor: W decoded exactly, plus the update (within f32 accumulation of float64 truth).
    const f = lora.factors.get('blk.0.attn_q.weight')!;
    const w = decoded('IQ2_XXS', q);
    const merged = tensorValues('F32', byName(inF32, 'blk.0.attn_q.weight').data);
    for (let o = 0; o < 64; o += 7) {
      for (let c = 0; c < 256; c += 5) {
        let s = 0;
        for (let k = 0; k < 4; k++) s += f.b[o * 4 + k] * f.a[k * 256 + c];
        expect(Math.abs(merged[o * 256 + c] - (w[o * 256 + c] + s))).toBeLessThan(1e-6);
      }
    }
    expect(Buffer.from(byName(out, 'blk.0.attn_q.weight').data).equals(Buffer.from(tensorData('Q4_K', merged)))).toBe(true);
    expect(Buffer.from(byName(out, 'blk.0.ffn_up.weight').data).equals(Buffer.from(tensorData('Q4_K', decoded('IQ4_XS', up))))).toBe(true);
    expect(warnings.join('\n')).toMatch(/tensors already quantized \(1 IQ2_XXS, 1 IQ4_XS\) are quantized again to Q4_K/);
    // Q4_K holds the most weights now: LLAMA_FTYPE_MOSTLY_Q4_K_M (15), as llama.cpp's loader guesses.
    expect(out.metadata.get('general.file_type')!.value).toBe(15);
  });

  it('says in the plan that the merge needs --dtype', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    await prepared.close();
    expect(prepared.plan.warnings.join('\n')).toMatch(/the merged tensors 1 IQ2_XXS are of types loramerge reads but does not write: the merge needs --dtype/);
  });

  it('with --dtype given (q4_k), the plan no longer says the merge needs one', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }], { dtype: 'q4_k' });
    await prepared.close();
    expect(prepared.plan.warnings.join('\n')).not.toMatch(/needs --dtype|re-quantized/);
  });
});
