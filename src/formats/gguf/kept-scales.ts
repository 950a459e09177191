/**
 * llama.cpp's per-weight scales. convert_hf_to_gguf.py repacks an NVIDIA ModelOpt NVFP4
 * checkpoint's codes and block scales into NVFP4 tensors as they are (`_nvfp4_pack`), and writes
 * its per-tensor `weight_scale_2` beside each as `<name>.scale` (F32, one value; beside a stacked
 * expert tensor one per expert) and its `input_scale` as `<name>.input_scale`, leaving out scales
 * of 1 (`_write_scale_tensor`, `_flush_nvfp4_experts`). llama.cpp's loader reads `<name>.scale`
 * beside attention, FFN, expert, SSM and output weights as {1} ({n_expert} for stacked experts)
 * and multiplies the matmul's output by it (`build_lora_mm`, `build_lora_mm_id`, `build_ffn`):
 * the model's weight is the stored one times its scale.
 *
 * Such a weight is merged in the model's values and its scale kept, so its stored values get
 * ΔW / s (merge-plan.ts). A `.scale` with one value per input is the model's own parameter, not a
 * stored scale (Gemma 4's router input scale `ffn_gate_inp.scale`, from its `router.scale`), and is
 * left alone; any other `.scale`, or one that is not finite and non-zero, cannot be divided by: a
 * merge into its weight is refused naming it.
 */
import { decodeToF32, type FloatDType } from '../../dtype.js';
import type { FloatTensorBytes } from '../../engine/merge-op.js';
import type { ValueScale } from '../../plan/merge-plan.js';
import { product } from '../../integers.js';

const SCALE = '.scale';
const FLOAT_TYPES = new Set(['F32', 'F16', 'BF16']);

export interface KeptScales {
  /** Weight key → the scale its stored values are multiplied by. */
  scales: Map<string, ValueScale>;
  /** Weights beside a `.scale` the merge cannot divide by, and why. */
  unusable: Map<string, string>;
}

/** A tensor as the file stores it: its GGML type and torch-order shape (experts first). */
interface Stored {
  type: string;
  shape: readonly number[];
}

/**
 * `.scale` tensors that are a model's own parameters under the name llama.cpp gives them, by
 * architecture: Gemma 4's router `per_expert_scale`, written as `ffn_down_exps.scale` and applied
 * to each expert's output as transformers applies it, so a LoRA on the experts changes the weights
 * the scale multiplies in both, and nothing is divided.
 */
const MODEL_SCALES: Readonly<Record<string, RegExp>> = {
  gemma4: /^blk\.\d+\.ffn_down_exps\.scale$/,
};

/** The `.scale` of every weight beside one, read and checked (`architecture`: general.architecture). */
export async function readKeptScales(
  tensors: ReadonlyMap<string, Stored>, readAll: (name: string) => Promise<FloatTensorBytes>, architecture?: string,
): Promise<KeptScales> {
  const scales = new Map<string, ValueScale>();
  const unusable = new Map<string, string>();
  const modelScale = architecture !== undefined ? MODEL_SCALES[architecture] : undefined;
  for (const [scaleKey, scale] of tensors) {
    if (!scaleKey.endsWith(SCALE)) continue;
    const weightKey = `${scaleKey.slice(0, -SCALE.length)}.weight`;
    const weight = tensors.get(weightKey);
    if (!weight || weight.shape.length < 2) continue;
    if (modelScale?.test(scaleKey)) {
      // An NVFP4 conversion's scale2 would go by the same name: which one the file holds is unknown.
      if (weight.type === 'NVFP4') unusable.set(weightKey, `${scaleKey} names both ${architecture}'s own per-expert output scale and an NVFP4 conversion's per-tensor scale, so what ${weightKey}'s stored values mean is not known here`);
      continue;
    }
    const experts = weight.shape.length === 3 ? weight.shape[0] : 1;
    const count = product(scale.shape);
    // One value per input scales the inputs: the model's own parameter, applied as it is.
    if (scale.shape.length === 1 && count === weight.shape[weight.shape.length - 1] && count !== experts) continue;
    const held = `${scaleKey} (${scale.type} (${scale.shape.join(', ')}))`;
    if (scale.shape.length !== 1 || count !== experts) {
      unusable.set(weightKey, `${held} should hold ${experts === 1 ? 'one scale' : `one scale per expert (${experts})`}, as llama.cpp reads it beside ${weightKey}`);
      continue;
    }
    if (!FLOAT_TYPES.has(scale.type)) {
      unusable.set(weightKey, `${held} is not a float tensor, so it cannot divide the update of ${weightKey}`);
      continue;
    }
    const bytes = await readAll(scaleKey);
    const values = [...decodeToF32(bytes.data, bytes.dtype as FloatDType)];
    const bad = values.find((v) => !(Number.isFinite(v) && v !== 0));
    if (bad !== undefined) {
      unusable.set(weightKey, `${held} holds ${bad}, which cannot divide the update of ${weightKey} (llama.cpp multiplies the weight by it)`);
      continue;
    }
    const label = experts === 1
      ? `${weightKey} (times ${scaleKey}, as llama.cpp reads it)`
      : `${weightKey} (each expert times its value in ${scaleKey}, as llama.cpp reads it)`;
    scales.set(weightKey, { values, label });
  }
  return { scales, unusable };
}

/** Tensors llama.cpp reads beside `output.weight` only when it is NVFP4 (llama-model.cpp's output scales). */
const OUTPUT_SIDECARS = ['output.scale', 'output.input_scale'];

/**
 * Why `tensor` cannot be written as `type` because of its scales, or undefined: llama.cpp reads
 * `output.scale` and `output.input_scale` only beside an NVFP4 `output.weight`, and refuses a file
 * with tensors it does not read ("wrong number of tensors"), so such a head keeps its type.
 */
export function keptScaleTypeProblem(tensorNames: ReadonlySet<string>, tensor: { name: string; type: string }, type: string): string | undefined {
  if (tensor.name !== 'output.weight' || tensor.type !== 'NVFP4' || type === 'NVFP4') return undefined;
  const beside = OUTPUT_SIDECARS.filter((n) => tensorNames.has(n));
  if (beside.length === 0) return undefined;
  return `llama.cpp reads ${beside.join(' and ')} only beside an NVFP4 output.weight and refuses a file with a tensor it does not read, so output.weight cannot be written as ${type}; keep it NVFP4 (--dtype nvfp4, or --dtype-merged-only when the head is not merged)`;
}
