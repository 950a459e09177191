/**
 * The output types each container offers (the page's dtype menu, `--dtype`) are exactly the ones
 * it accepts, listed here as the README documents them; each comes with its rule in words.
 */
import { describe, expect, it } from 'vitest';
import { isMergeError } from '../src/index.js';
import { ggufContainer } from '../src/formats/gguf/gguf-container.js';
import { safetensorsContainer } from '../src/formats/safetensors-container.js';

const refused = (parse: () => unknown) => {
  try {
    parse();
  } catch (e) {
    return isMergeError(e) && e.code === 'BAD_ARGUMENT';
  }
  return false;
};

describe('output type choices', () => {
  it('safetensors: f32, f16, bf16 and both fp8 formats, fp8 saying how it saturates', () => {
    const format = safetensorsContainer([], []);
    const names = format.outputChoices.types.map((t) => t.name);
    expect(names).toEqual(['f32', 'f16', 'bf16', 'f8_e4m3', 'f8_e5m2']);
    expect(names.map((n) => format.parseOutputType(n))).toEqual(['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);
    for (const other of ['q4_k', 'f64', 'int8', 'fp8', 'float64', 'half_float']) expect(refused(() => format.parseOutputType(other)), other).toBe(true);
    // torch's names (config.json's torch_dtype) and the fp16 style name the same types; plain fp8 names two.
    const aliases = ['fp32', 'float32', 'float', 'fp16', 'float16', 'half', 'bfloat16', 'BFloat16', 'fp8_e4m3', 'float8_e4m3fn', 'e4m3', 'fp8_e5m2', 'float8_e5m2', 'e5m2'];
    expect(aliases.map((n) => format.parseOutputType(n))).toEqual(['F32', 'F32', 'F32', 'F16', 'F16', 'F16', 'BF16', 'BF16', 'F8_E4M3', 'F8_E4M3', 'F8_E4M3', 'F8_E5M2', 'F8_E5M2', 'F8_E5M2']);
    expect(() => format.parseOutputType('float8')).toThrow('--dtype float8 is two types: choose f8_e4m3 (torch.float8_e4m3fn, which fp8 checkpoints hold) or f8_e5m2');
    const note = (name: string) => format.outputChoices.types.find((t) => t.name === name)!.note;
    expect(note('f8_e4m3')).toMatch(/±448.*saturating/);
    expect(note('f8_e5m2')).toMatch(/±57344.*saturating/);
    expect(format.outputChoices.keep).toMatch(/keeps the base’s dtype/);
  });

  it('GGUF: the GGML types it encodes and llama-quantize\'s mixes (K-quant, MXFP4_MOE), quantized ones saying they requantize', () => {
    const format = ggufContainer([], []);
    const names = format.outputChoices.types.map((t) => t.name);
    expect([...names].sort()).toEqual(['bf16', 'f16', 'f32', 'iq3_s', 'iq3_xxs', 'iq4_nl', 'iq4_xs', 'mxfp4', 'nvfp4', 'q1_0', 'q2_0', 'q2_k', 'q3_k', 'q4_0', 'q4_1', 'q4_k', 'q5_0', 'q5_1', 'q5_k', 'q6_k', 'q8_0', 'tq1_0', 'tq2_0', 'q3_k_s', 'q3_k_m', 'q3_k_l', 'q4_k_s', 'q4_k_m', 'q5_k_s', 'q5_k_m', 'q2_k_mix', 'q6_k_mix', 'iq3_s_mix', 'iq3_m', 'mxfp4_moe', 'q1_0_mix', 'q2_0_mix', 'q4_0_mix', 'q4_1_mix', 'q5_0_mix', 'q5_1_mix', 'tq1_0_mix', 'tq2_0_mix', 'iq4_nl_mix', 'iq4_xs_mix'].sort());
    expect(names.map((n) => format.parseOutputType(n))).toEqual(names.map((n) => n.toUpperCase()));
    for (const other of ['f8_e4m3', 'iq2_xs', 'q8_k', 'float8_e4m3fn', 'fp8']) expect(refused(() => format.parseOutputType(other)), other).toBe(true);
    // IQ2_XXS is not on the menu: it is written only with an importance matrix, and parses only with one.
    expect(refused(() => format.parseOutputType('iq2_xxs'))).toBe(true);
    expect(format.parseOutputType('iq2_xxs', '--dtype', true)).toBe('IQ2_XXS');
    expect(['fp16', 'float16', 'half', 'bfloat16', 'fp32', 'float32'].map((n) => format.parseOutputType(n))).toEqual(['F16', 'F16', 'F16', 'BF16', 'F32', 'F32']);
    for (const t of format.outputChoices.types) {
      expect(t.note, t.name).toMatch(/^f(32|16)$|^bf16$/.test(t.name) ? /no requantization/ : /requantized to .*fallback type.*adds the quantization error once more/);
      // --dtype converts every matrix llama-quantize quantizes, merged or not (quantize-rule.ts).
      expect(t.note, t.name).toMatch(/Every matrix llama-quantize would quantize is converted, merged or not/);
    }
    expect(format.outputChoices.keep).toMatch(/requantized to Q4_K/);
    // Each block type's own block size.
    const note = (n: string) => format.outputChoices.types.find((t) => t.name === n)!.note;
    for (const [n, size] of [['q4_k', 256], ['q8_0', 32], ['mxfp4', 32], ['nvfp4', 64], ['q1_0', 128], ['q2_0', 64], ['tq2_0', 256], ['iq3_xxs', 256], ['iq3_s', 256], ['iq4_nl', 32], ['iq4_xs', 256]] as const) {
      expect(note(n), n).toMatch(new RegExp(`whole blocks of ${size} values`));
    }
    expect(note('mxfp4_moe')).toMatch(/MXFP4_MOE mix \(gpt-oss’s own: stacked expert tensors MXFP4, the other matrices and the output head Q8_0\)/);
    expect(note('q4_k_m')).toMatch(/Q4_K_M mix \(Q4_K, with half of attn_v and ffn_down .* Q6_K; the output head Q6_K\)/);
  });
});
