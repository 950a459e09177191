/**
 * `--dtype` where a row is not a whole number of the asked type's blocks, as llama-quantize's
 * tensor_type_fallback decides (llama-quant.cpp): the 256-value types fall back to a 32-value
 * one, types of 32 or fewer with no fallback go to F16, and Q1_0 (128) and NVFP4 (64), which have
 * none, stop llama-quantize ("no tensor type fallback is defined"), so loramerge refuses them.
 */
import { describe, expect, it } from 'vitest';
import { fittingType } from '../src/formats/gguf/quantize-rule.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { seededRandom } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, typeName } from './helpers/gguf-builder.js';
import { ggufLoraAdapter } from './helpers/gguf-models.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { gaussian } from './helpers/svd-reference.js';

describe('fittingType', () => {
  it('falls back as llama-quantize does, and keeps Q1_0 and NVFP4 (no fallback, blocks above 32) for the refusal', () => {
    expect(fittingType('Q4_K', 96)).toBe('Q5_0');
    expect(fittingType('Q6_K', 96)).toBe('Q8_0');
    expect(fittingType('Q4_0', 48)).toBe('F16');
    expect(fittingType('MXFP4', 48)).toBe('F16');
    expect(fittingType('Q8_0', 40)).toBe('F16');
    expect(fittingType('Q1_0', 96)).toBe('Q1_0');
    expect(fittingType('NVFP4', 96)).toBe('NVFP4');
    expect(fittingType('Q1_0', 256)).toBe('Q1_0');
  });
});

describe('--dtype q1_0 / nvfp4 on rows that are not whole blocks', () => {
  const backends = mergeBackends({ cpu: 'default' });
  const rand = seededRandom(5);
  const values = (n: number) => Float64Array.from({ length: n }, () => 0.02 * gaussian(rand));
  // A Llama-named F16 model: ffn_up rows of 256 values, ffn_down rows of 96 (3 blocks of 32,
  // 1.5 of NVFP4's 64, 0.75 of Q1_0's 128).
  const base = {
    'f16.gguf': buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: 1 }]],
      tensors: [
        { name: 'blk.0.ffn_up.weight', type: 'F16', ne: [256, 8], data: tensorData('F16', values(256 * 8)) },
        { name: 'blk.0.ffn_down.weight', type: 'F16', ne: [96, 8], data: tensorData('F16', values(96 * 8)) },
      ],
    }),
  };
  const lora = ggufLoraAdapter([{ tensor: 'blk.0.ffn_up.weight', rank: 2, in: 256, out: 8, aType: 'F32', bType: 'F32' }], 2);

  for (const dtype of ['q1_0', 'nvfp4']) {
    it(`${dtype}: refused naming the tensor, its row length and the type, nothing written`, async () => {
      const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
      try {
        const output = createBlobOutputTarget();
        const type = dtype.toUpperCase();
        await expect(mergeModel({ prepared, output, backend: backends.cpu!, outDtype: dtype })).rejects.toThrow(
          new RegExp(`blk\\.0\\.ffn_down\\.weight.*rows of 96 values are not whole ${type} blocks of ${type === 'Q1_0' ? 128 : 64}; choose another --dtype`),
        );
        expect(output.files()).toHaveLength(0);
      } finally {
        await prepared.close();
      }
    });
  }

  it('q4_0: the 96-value rows stay Q4_0, and q1_0 with --dtype-merged-only touches only the 256-value rows', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      for (const [outDtype, mergedOnly, want] of [['q4_0', false, ['Q4_0', 'Q4_0']], ['q1_0', true, ['Q1_0', 'F16']]] as const) {
        const output = createBlobOutputTarget();
        await mergeModel({ prepared, output, backend: backends.cpu!, outDtype, dtypeMergedOnly: mergedOnly });
        const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
        expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(want);
      }
    } finally {
      await prepared.close();
    }
  });
});
