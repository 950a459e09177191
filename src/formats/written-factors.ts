/**
 * A LoRA factor as an adapter writer stores it (PEFT, kohya, llama.cpp GGUF): in the inputs'
 * factor dtype, refused where a finite value becomes Inf there. A combine's weights, a resize's
 * split of the singular values, or α/r folded into B can take a factor of f16 inputs past 65504,
 * and PEFT, kohya's loaders and llama.cpp would all apply the Inf they read.
 */
import { decodeToF32, encodeFromF32, type FloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';

/** `values` (finite) encoded as `dtype`; a value that overflows it is refused, naming the module and factor. */
export function encodeFactor(values: Float32Array, dtype: FloatDType, module: string, factor: string): Uint8Array {
  const bytes = encodeFromF32(values, dtype);
  if (dtype === 'F32') return bytes;
  const back = decodeToF32(bytes, dtype);
  let largest = 0;
  let overflowed = 0;
  for (let i = 0; i < back.length; i++) {
    if (Number.isFinite(back[i])) continue;
    overflowed++;
    largest = Math.max(largest, Math.abs(values[i]));
  }
  if (overflowed === 0) return bytes;
  throw new MergeError(
    'NON_FINITE',
    `module "${module}": ${overflowed} value${overflowed === 1 ? '' : 's'} of its ${factor} (up to ${largest.toPrecision(3)}) overflow ${dtype}, the inputs' factor type, `
      + 'and would be written as Inf; lower --weight (or the adapter\'s α), or give the inputs with f32 factors',
  );
}
