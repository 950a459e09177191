/**
 * Weights stored quantized in a way the merge does not read: codes beside a scale tensor (block-wise
 * fp8 with `weight_scale_inv`, compressed-tensors and ModelOpt with `weight_scale`, NVFP4 with
 * `weight_scale_2`, zero points), or a config.json `quantization_config` naming a method other than
 * bitsandbytes (formats/bnb reads those). Merging ΔW into such codes as if they were the weights
 * would silently write a wrong model, so every changed tensor of that kind is a plan problem.
 *
 * Comfy-Org's scaled fp8 (`scale_weight` + `scaled_fp8` marker) is read by the base model itself
 * (valueScales) and is not a problem here.
 */
import type { ModelConfig } from '../formats/model-config.js';
import { quantizationMethod } from '../formats/model-config.js';
import type { MergePlan, PlanProblem } from './merge-plan.js';

/** Parameters that sit beside a quantized `weight` in the formats people ship. */
const SCALE_SIBLINGS = ['weight_scale_inv', 'weight_scale', 'weight_scale_2', 'weight_global_scale', 'weight_zero_point', 'weight_g_idx'] as const;

/** Methods the merge reads itself: bitsandbytes bases are dequantized by formats/bnb. */
const READ_METHODS = new Set(['bitsandbytes']);

/** A problem for every planned change to a weight stored as quantized codes. */
export function quantizedWeightProblems(plan: MergePlan, tensors: ReadonlyMap<string, unknown>, config: ModelConfig | undefined): PlanProblem[] {
  const method = quantizationMethod(config);
  const configMethod = method !== undefined && !READ_METHODS.has(method) ? method : undefined;
  const why = (baseKey: string): string | undefined => {
    if (!baseKey.endsWith('.weight')) return undefined;
    const stem = baseKey.slice(0, -'weight'.length);
    const sibling = SCALE_SIBLINGS.find((s) => tensors.has(stem + s));
    if (sibling) {
      const named = configMethod ? ` (config.json quantization_config: ${configMethod})` : '';
      return `the base tensor ${baseKey} is stored quantized, with its scale in ${stem}${sibling}${named}; merging into quantized weights of this kind is not supported: use the unquantized model`;
    }
    return configMethod
      ? `config.json says the base is quantized with ${configMethod} (quantization_config.quant_method); merging into such weights is not supported: use the unquantized model`
      : undefined;
  };
  const problems: PlanProblem[] = [];
  const seen = new Set<string>();
  const add = (baseKey: string, adapter: string, module: string) => {
    const message = why(baseKey);
    if (!message || seen.has(baseKey)) return;
    seen.add(baseKey);
    problems.push({ adapter, module, code: 'UNSUPPORTED_FORMAT', message: `${adapter}: module "${module}": ${message}` });
  };
  for (const u of plan.updates) for (const t of u.terms) add(u.baseKey, t.adapter, t.moduleName);
  for (const r of plan.replacements) add(r.baseKey, r.adapter, r.baseKey);
  for (const s of plan.rowSets) for (const t of s.terms) add(s.baseKey, t.adapter, s.baseKey);
  return problems;
}
