/**
 * `--dtype` on a GGUF tensor the merge leaves alone that already holds NaN or Inf (a block whose f16
 * scale is NaN or ±Inf, as the thread fuzzer's hostile bases have): every block type refuses it
 * naming the fix, since none holds them and llama-quantize checks its output
 * (ggml_validate_row_data: each block's d and dmin finite) and stops where the quantizer carried
 * them into a scale; f16, bf16 and f32 keep them, value for value.
 */
import { describe, expect, it } from 'vitest';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { convertTensorBytes } from '../src/formats/gguf/gguf-convert.js';
import { seededRandom } from './helpers/fixtures.js';
import { tensorValues } from './helpers/gguf-builder.js';
import { REF_BLOCK, referenceDequantizeBlock, referenceQuantizeBlock } from './helpers/ggml-reference.js';

/** Two Q4_K super-blocks of small values, the second's d set to `bits` (NaN 0x7e00, +Inf 0x7c00). */
function q4kWithBadScale(bits: number): { bytes: Uint8Array; values: number[] } {
  const rand = seededRandom(3);
  const bytes = new Uint8Array(2 * REF_BLOCK.Q4_K.bytes);
  for (let b = 0; b < 2; b++) bytes.set(referenceQuantizeBlock('Q4_K', Array.from({ length: 256 }, () => 0.05 * (2 * rand() - 1))), b * REF_BLOCK.Q4_K.bytes);
  bytes[REF_BLOCK.Q4_K.bytes] = bits & 0xff;
  bytes[REF_BLOCK.Q4_K.bytes + 1] = bits >> 8;
  const values = [0, 1].flatMap((b) => referenceDequantizeBlock('Q4_K', bytes.subarray(b * REF_BLOCK.Q4_K.bytes, (b + 1) * REF_BLOCK.Q4_K.bytes)));
  return { bytes, values };
}

describe('--dtype on a GGUF tensor holding NaN or Inf', () => {
  for (const [what, bits] of [['NaN', 0x7e00], ['Inf', 0x7c00]] as const) {
    it(`${what}: every block type refuses it in one line naming the fix`, async () => {
      const { bytes, values } = q4kWithBadScale(bits);
      expect(values.slice(256).some((v) => !Number.isFinite(v))).toBe(true);
      for (const to of ['Q8_0', 'Q4_0', 'Q5_1', 'Q2_K', 'Q4_K', 'Q6_K', 'TQ2_0', 'IQ4_XS', 'MXFP4']) {
        await expect(convertTensorBytes(bytes, ggmlTypeByName('Q4_K')!, ggmlTypeByName(to)!), to).rejects.toMatchObject({
          code: 'NON_FINITE', message: expect.stringMatching(new RegExp(`^it holds NaN or Inf, which ${to} blocks cannot store \\(.*\\); leave out --dtype to copy it as stored, or choose f16, bf16 or f32$`)),
        });
      }
    });

    it(`${what}: f16, bf16 and f32 keep it`, async () => {
      const { bytes, values } = q4kWithBadScale(bits);
      for (const to of ['F16', 'BF16', 'F32']) {
        const got = tensorValues(to, await convertTensorBytes(bytes, ggmlTypeByName('Q4_K')!, ggmlTypeByName(to)!));
        expect(got.length).toBe(512);
        // The first block's values are small and exact in each type's rounding; the second's as decoded (NaN, ±Inf, or 0·Inf = NaN).
        for (let i = 256; i < 512; i++) expect(Object.is(got[i], values[i]) || (Number.isNaN(got[i]) && Number.isNaN(values[i])), `${to}[${i}]`).toBe(true);
      }
    });
  }
});
