/**
 * PEFT FourierFT cases as torch wrote them (test/reference/torch-cpu-random.json: positions from
 * torch.randperm, and torch's own ΔW for the small ones), an adapter_config.json as PEFT writes it,
 * and ΔW summed plainly in float64 as the truth a merge is checked against.
 */
import { readFileSync } from 'node:fs';

export interface FourierCase {
  name: string; out: number; in: number; n_frequency: number; random_loc_seed: number; scaling: number;
  spectrum: number[]; rows: number[]; cols: number[]; delta?: number[];
}
export const reference = JSON.parse(readFileSync(new URL('../reference/torch-cpu-random.json', import.meta.url), 'utf8')) as {
  producedBy: string;
  randperm: { seed: number; n: number; first: number[] }[];
  fourierft: FourierCase[];
};
export const fourier = (name: string) => reference.fourierft.find((c) => c.name === name)!;

/** The fields PEFT 0.17 writes to a FourierFT adapter_config.json. */
export const fourierftConfig = (fields: object) => ({
  peft_type: 'FOURIERFT', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.17.1', revision: null,
  n_frequency: 1000, scaling: 150.0, random_loc_seed: 777, fan_in_fan_out: false, target_modules: ['q_proj', 'v_proj'], exclude_modules: null,
  bias: 'none', modules_to_save: null, layers_to_transform: null, layers_pattern: null, n_frequency_pattern: {}, init_weights: false, inference_mode: true, ...fields,
});

/** scaling·Re(ifft2) of the spectrum at torch's positions, summed term by term. */
export function deltaTruth(c: FourierCase, scaling = c.scaling): Float64Array {
  const d = new Float64Array(c.out * c.in);
  for (let p = 0; p < c.out; p++) {
    for (let q = 0; q < c.in; q++) {
      let sum = 0;
      for (let k = 0; k < c.spectrum.length; k++) sum += c.spectrum[k] * Math.cos(2 * Math.PI * ((p * c.rows[k]) / c.out + (q * c.cols[k]) / c.in));
      d[p * c.in + q] = (scaling * sum) / (c.out * c.in);
    }
  }
  return d;
}

