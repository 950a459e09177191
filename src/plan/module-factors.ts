/**
 * A module's update as one product ΔW = B·A of f32 factors, whatever the adapter stored: plain LoRA
 * factors as they are, LoHa's Hadamard product (B₁·A₁) ⊙ (B₂·A₂) as the exact rank-r₁r₂ product
 * of the factors' Khatri–Rao products,
 *   B[o, i·r₂+j] = B₁[o,i]·B₂[o,j],   A[i·r₂+j, c] = A₁[i,c]·A₂[j,c],
 * so every executor merges it with the same fused low-rank kernel.
 */
import { decodeToF32 } from '../dtype.js';
import type { FloatTensorBytes } from '../engine/merge-op.js';
import type { LoraModule } from '../formats/adapter.js';
import { MergeError } from '../errors.js';
import type { SafetensorsFile, TensorEntry } from '../formats/safetensors-types.js';

export interface ModuleFactors {
  /** rank × in */
  a: FloatTensorBytes;
  /** out × rank */
  b: FloatTensorBytes;
  rank: number;
}

export async function readModuleFactors(file: SafetensorsFile, module: LoraModule): Promise<ModuleFactors> {
  const [a, b] = await Promise.all([readFloat(file, module.a), readFloat(file, module.b)]);
  if (!module.hadamard) return { a, b, rank: module.rank };
  const [a2, b2] = await Promise.all([readFloat(file, module.hadamard.a2), readFloat(file, module.hadamard.b2)]);
  const r1 = module.rank;
  const r2 = module.hadamard.a2.shape[0];
  const rank = r1 * r2;
  const [fa1, fb1, fa2, fb2] = [a, b, a2, b2].map((t) => decodeToF32(t.data, t.dtype));
  const inF = fa1.length / r1;
  const outF = fb1.length / r1;
  const ka = new Float32Array(rank * inF);
  for (let i = 0; i < r1; i++) {
    for (let j = 0; j < r2; j++) {
      const row = (i * r2 + j) * inF;
      for (let c = 0; c < inF; c++) ka[row + c] = fa1[i * inF + c] * fa2[j * inF + c];
    }
  }
  const kb = new Float32Array(outF * rank);
  for (let o = 0; o < outF; o++) {
    for (let i = 0; i < r1; i++) {
      for (let j = 0; j < r2; j++) kb[o * rank + i * r2 + j] = fb1[o * r1 + i] * fb2[o * r2 + j];
    }
  }
  const bytes = (x: Float32Array): FloatTensorBytes => ({ dtype: 'F32', data: new Uint8Array(x.buffer) });
  return { a: bytes(ka), b: bytes(kb), rank };
}

/** One tensor as float bytes; F64 factors are rounded to f32 once (the engine computes in f32+). */
export async function readFloat(file: SafetensorsFile, entry: TensorEntry): Promise<FloatTensorBytes> {
  const data = await file.read(entry);
  if (entry.dtype === 'F32' || entry.dtype === 'F16' || entry.dtype === 'BF16') return { dtype: entry.dtype, data };
  if (entry.dtype === 'F64') {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const out = new Float32Array(data.byteLength / 8);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
    return { dtype: 'F32', data: new Uint8Array(out.buffer) };
  }
  // The plan rejects these already; this guards plans built by hand.
  throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: tensor "${entry.name}" is ${entry.dtype}, not a float`);
}
