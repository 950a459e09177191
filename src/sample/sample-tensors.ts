/**
 * Values for the sample's tensors, drawn deterministically from the seed: base weights with the
 * spread of a trained Llama (std 0.02, norms near 1) and a LoRA whose update is a few percent of
 * each weight, varying by layer and module so the plan's chart has something to show.
 */
import { encodeFromF32, type FloatDType } from '../dtype.js';
import { sampleBaseTensors, sampleProjections } from './llama-tensors.js';
import type { SampleOptions } from './sample-options.js';
import { createRandom, uniformValues } from './seeded-random.js';
import { product } from '../integers.js';

/** One tensor ready for a safetensors writer: raw little-endian bytes of `dtype`. */
export interface SampleTensor {
  name: string;
  dtype: FloatDType;
  shape: number[];
  data: Uint8Array;
}

/** Trained Llama weights have a standard deviation of about 0.02; uniform of that std: ±0.02·√3. */
const WEIGHT_HALF_WIDTH = 0.02 * Math.sqrt(3);

/** The base and the adapter draw from separate streams, so changing one never changes the other. */
const ADAPTER_STREAM = 0x5bd1e995;

export function sampleBaseTensorData(o: SampleOptions): SampleTensor[] {
  const random = createRandom(o.seed);
  return sampleBaseTensors(o).map((spec) => {
    const n = product(spec.shape);
    const values = spec.role === 'norm'
      ? uniformValues(n, random, 0.1, 1)
      : uniformValues(n, random, WEIGHT_HALF_WIDTH);
    return { name: spec.name, dtype: o.dtype, shape: spec.shape, data: encodeFromF32(values, o.dtype) };
  });
}

/**
 * PEFT keys: `base_model.model.<module>.lora_A.weight` (r, in), `.lora_B.weight` (out, r).
 * A is Kaiming-uniform as PEFT initialises it; B is sized so that ‖s·B·A‖/‖W‖ lands between 1 % and
 * 6 %: for uniform factors that ratio is s·√r·std(B)·std(A)/0.02 with std(A) = 1/√(3·in).
 */
export function sampleAdapterTensorData(o: SampleOptions): SampleTensor[] {
  const random = createRandom((o.seed ^ ADAPTER_STREAM) >>> 0);
  const scale = o.alpha / o.rank;
  const tensors: SampleTensor[] = [];
  for (const p of sampleProjections(o)) {
    const aHalfWidth = 1 / Math.sqrt(p.in);
    const a = uniformValues(o.rank * p.in, random, aHalfWidth);
    const targetRatio = 0.01 + 0.05 * random();
    const bStd = (targetRatio * 0.02 * Math.sqrt(3 * p.in)) / (scale * Math.sqrt(o.rank));
    const b = uniformValues(p.out * o.rank, random, bStd * Math.sqrt(3));
    const key = `base_model.model.${p.module}`;
    tensors.push({ name: `${key}.lora_A.weight`, dtype: o.adapterDtype, shape: [o.rank, p.in], data: encodeFromF32(a, o.adapterDtype) });
    tensors.push({ name: `${key}.lora_B.weight`, dtype: o.adapterDtype, shape: [p.out, o.rank], data: encodeFromF32(b, o.adapterDtype) });
  }
  return tensors;
}
