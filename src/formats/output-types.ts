/**
 * The output types each container offers (`--dtype`, the page's menu), each with what choosing it
 * does in one sentence, so that every front end offers the same choices in the same words. The
 * containers accept exactly these names (tested).
 */
import { IMATRIX_CODEC_TYPE_NAMES, PLAIN_CODEC_TYPE_NAMES } from './gguf/codecs/registry.js';
import { ggmlTypeByName } from './gguf/ggml-types.js';
import { TYPE_MIXES } from './gguf/type-mixes.js';

/** One output type a user may choose. */
export interface OutputTypeChoice {
  /** As `--dtype` takes it: `bf16`, `f8_e4m3`, `q4_k`. */
  readonly name: string;
  /** What choosing it does: rounding, saturation, requantization, which tensors it applies to. */
  readonly note: string;
  /** A heading menus list it under (llama-quantize's file types); absent: one type throughout. */
  readonly group?: string;
}

/** What a container lets the user choose as output type. */
export interface OutputTypeChoices {
  /** What happens when nothing is chosen (each tensor keeps its type). */
  readonly keep: string;
  /** The choices, in the order a menu lists them. */
  readonly types: readonly OutputTypeChoice[];
  /**
   * More choices, written only with an importance matrix (a GGUF's IQ2 types, as llama-quantize
   * writes them only with --imatrix): offered while one is given, after `types`.
   */
  readonly imatrixTypes?: readonly OutputTypeChoice[];
}

const FP8_RULE =
  'rounded to nearest even, and saturating: finite values beyond the largest finite one become it instead of NaN or Inf; NaN stays NaN.';

export const SAFETENSORS_OUTPUT_TYPES: OutputTypeChoices = {
  keep: 'Each tensor keeps the base’s dtype: an fp8 base stays fp8, a bf16 base stays bf16; merged tensors are rounded once to it.',
  types: [
    { name: 'f32', note: 'Every float tensor written as f32 (4 bytes a value): the merged values unrounded, the file twice the size of f16 or bf16.' },
    { name: 'f16', note: 'Every float tensor written as f16, rounded once to nearest even; a value beyond ±65504 would become Inf, which stops the merge with an error naming the tensor (choose bf16 then).' },
    { name: 'bf16', note: 'Every float tensor written as bf16, rounded once to nearest even: f32’s range with 8 bits of precision.' },
    { name: 'f8_e4m3', note: `Every float tensor written as fp8 e4m3fn (torch.float8_e4m3fn: no infinities, largest finite ±448), ${FP8_RULE} A scaled fp8 checkpoint keeps its own fp8 dtype (other floats dequantize it).` },
    { name: 'f8_e5m2', note: `Every float tensor written as fp8 e5m2 (torch.float8_e5m2: largest finite ±57344), ${FP8_RULE} A scaled fp8 checkpoint keeps its own fp8 dtype (other floats dequantize it).` },
  ],
};

const REQUANTIZE =
  'Requantizing adds the quantization error once more: f16, bf16 or q8_0 keep more of the update.';

function ggufNote(type: string): string {
  const applies = 'Every matrix llama-quantize would quantize is converted, merged or not, as llama-quantize --pure does; norms, biases and the other tensors it leaves alone keep their types.';
  if (type === 'F32' || type === 'F16' || type === 'BF16') {
    return `Matrices written as ${type}: no requantization, so the update is kept${type === 'F32' ? ' exactly' : ' to within one rounding'}, at a larger size (what llama.cpp’s export-lora writes is F16). ${applies}`;
  }
  const block = ggmlTypeByName(type)?.blockSize;
  const rules = type.startsWith('IQ') ? 'llama-quantize’s rules (weighted by the importance matrix when one is given, as llama-quantize --imatrix weights them)' : 'llama.cpp’s reference rules (weighted by the importance matrix when one is given)';
  return `Matrices requantized to ${type} by ${rules}; a matrix whose rows are not whole blocks of ${block} values takes llama-quantize’s fallback type, named in a warning. ${REQUANTIZE} ${applies}`;
}

export const GGUF_OUTPUT_TYPES: OutputTypeChoices = {
  keep: `Each merged tensor keeps its own type: a Q4_K tensor is decoded, merged in f32 and requantized to Q4_K by llama.cpp’s reference rules (weighted by the importance matrix when one is given, as llama-quantize --imatrix does; IQ3_XXS, IQ3_S, IQ4_NL and IQ4_XS as llama-quantize writes them; a merged IQ1 or IQ2 tensor, which llama-quantize writes only with an importance matrix, is written as F16, as llama.cpp’s export-lora writes it, except when an importance matrix is given, quantized as llama-quantize --imatrix does); untouched tensors are byte-copied. ${REQUANTIZE}`,
  types: [
    // The IQ1 and IQ2 types are written only with an importance matrix (--dtype iq2_xxs --imatrix FILE): not choices on their own.
    ...PLAIN_CODEC_TYPE_NAMES.map((name) => ({ name: name.toLowerCase(), note: ggufNote(name) })),
    ...TYPE_MIXES.map((mix) => ({
      name: mix.name.toLowerCase(),
      group: 'llama-quantize file types',
      note: `Matrices requantized to llama-quantize’s ${mix.fileTypeName} mix (${mix.summary}) by llama.cpp’s reference rules; a matrix whose rows are not whole blocks of its type takes llama-quantize’s fallback type, named in a warning. ${REQUANTIZE} Every matrix llama-quantize would quantize is converted, merged or not, as llama-quantize does for this file type; norms, biases and the other tensors it leaves alone keep their types.`,
    })),
  ],
  imatrixTypes: IMATRIX_CODEC_TYPE_NAMES.map((name) => ({
    name: name.toLowerCase(),
    note: `${ggufNote(name)} Written only with the importance matrix, as llama-quantize writes ${name} only with --imatrix.`,
  })),
};
