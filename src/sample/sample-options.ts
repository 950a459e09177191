/** The knobs of the built-in sample, and the two sizes the demo page and the CLI offer. */
import type { FloatDType } from '../dtype.js';

/** Shape and seed of the generated sample model and LoRA. */
export interface SampleOptions {
  /** Same seed, same bytes. */
  seed: number;
  layers: number;
  hidden: number;
  /** MLP width (Llama uses about 8/3 · hidden). */
  intermediate: number;
  heads: number;
  /** Grouped-query attention: k and v project to kvHeads · (hidden / heads). */
  kvHeads: number;
  vocab: number;
  /** The base model's dtype. */
  dtype: Extract<FloatDType, 'F16' | 'BF16'>;
  /** LoRA rank and alpha of the adapter (scale α/r). */
  rank: number;
  alpha: number;
  /** The adapter's dtype (PEFT saves the training dtype, often f32). */
  adapterDtype: FloatDType;
}

/** A named sample size. */
export type SamplePreset = 'small' | 'large';

/** small: about 1 MB, merges in well under a second. large: about 55 MB, for watching progress. */
export const SAMPLE_PRESETS: Readonly<Record<SamplePreset, SampleOptions>> = {
  small: {
    seed: 1, layers: 2, hidden: 128, intermediate: 344, heads: 4, kvHeads: 2, vocab: 512,
    dtype: 'BF16', rank: 8, alpha: 16, adapterDtype: 'F32',
  },
  large: {
    seed: 1, layers: 8, hidden: 512, intermediate: 1376, heads: 8, kvHeads: 4, vocab: 4096,
    dtype: 'BF16', rank: 8, alpha: 16, adapterDtype: 'F32',
  },
};

/** The seven projections PEFT targets in Llama models, in the order they appear in a layer. */
export const SAMPLE_TARGET_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
