/**
 * A single-file diffusers SDXL UNet in F16 (the tensors SDXL_NAMES lists, `dim` × `dim` each) and
 * a kohya LoRA on all of them, r = 2 and α = 3 per module, for the tests that serve them over
 * HTTP; with the merge's float64 truth.
 */
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './fixtures.js';
import { SDXL_NAMES } from './page-fixtures.js';

export const PAIR_RANK = 2;
export const PAIR_ALPHA = 3;

/** kohya's module name of a diffusers UNet weight (`lora_unet_` + its path with underscores). */
export const kohyaKey = (name: string): string => `lora_unet_${name.replace(/\.weight$/, '').replace(/\./g, '_')}`;

export interface SdxlKohyaPair {
  base: Uint8Array;
  kohya: Uint8Array;
  /** Each base tensor merged at `weight` in float64, W + w·α/r·(B·A), rounded once to F16. */
  mergedTruth(weight: number): Map<string, Float64Array>;
}

export function sdxlKohyaPair(dim: number, seed: number): SdxlKohyaPair {
  const rand = seededRandom(seed);
  const base = buildSafetensors(SDXL_NAMES.map((name) => ({ name, dtype: 'F16' as const, shape: [dim, dim], data: randomValues(dim * dim, rand, 0.5) })));
  const kohya = buildSafetensors(SDXL_NAMES.flatMap((name): FixtureTensor[] => [
    { name: `${kohyaKey(name)}.lora_down.weight`, dtype: 'F32', shape: [PAIR_RANK, dim], data: randomValues(PAIR_RANK * dim, rand, 0.3) },
    { name: `${kohyaKey(name)}.lora_up.weight`, dtype: 'F32', shape: [dim, PAIR_RANK], data: randomValues(dim * PAIR_RANK, rand, 0.3) },
    { name: `${kohyaKey(name)}.alpha`, dtype: 'F32', shape: [], data: [PAIR_ALPHA] },
  ]));
  const mergedTruth = (weight: number): Map<string, Float64Array> => {
    const w = decodeSafetensors(base).tensors;
    const lora = decodeSafetensors(kohya).tensors;
    const truth = new Map<string, Float64Array>();
    for (const name of SDXL_NAMES) {
      const wv = w.get(name)!.values;
      const down = lora.get(`${kohyaKey(name)}.lora_down.weight`)!.values;
      const up = lora.get(`${kohyaKey(name)}.lora_up.weight`)!.values;
      const out = new Float64Array(dim * dim);
      for (let o = 0; o < dim; o++) {
        for (let i = 0; i < dim; i++) {
          let s = 0;
          for (let k = 0; k < PAIR_RANK; k++) s += up[o * PAIR_RANK + k] * down[k * dim + i];
          out[o * dim + i] = roundForDType(wv[o * dim + i] + (weight * PAIR_ALPHA / PAIR_RANK) * s, 'F16');
        }
      }
      truth.set(name, out);
    }
    return truth;
  };
  return { base, kohya, mergedTruth };
}
