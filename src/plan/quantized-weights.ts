/**
 * Weights stored quantized in a way the merge does not read: codes beside a scale tensor (block-wise
 * fp8 with `weight_scale_inv`, compressed-tensors and ModelOpt with `weight_scale`, NVFP4 with
 * `weight_scale_2`, zero points), or a config.json `quantization_config` naming a method other than
 * bitsandbytes (formats/bnb reads those). Merging ΔW into such codes as if they were the weights
 * would silently write a wrong model, so every changed tensor of that kind is a plan problem.
 *
 * Comfy-Org's scaled fp8 (`scale_weight` + `scaled_fp8` marker; its e5m2 files are merged in
 * place by the plan), ComfyUI's comfy_quant float8_e4m3fn and float8_e5m2 layers (other
 * comfy_quant formats are refused by name), block-wise fp8, compressed-tensors FP8, ModelOpt FP8
 * (per tensor), ModelOpt NVFP4 and integer GPTQ / AWQ / compressed-tensors (through the views
 * of formats/quantized-views.ts) weights that
 * formats/scaled-fp8.ts reads are merged in real values, by additive updates only: maps of W
 * (DoRA, OFT, IA³, GLoRA's W·P·Q), replacements and row sets on them stay problems.
 */
import { moduleTitle } from '../formats/algorithms/index.js';
import type { ModelConfig } from '../formats/model-config.js';
import { quantizationMethod } from '../formats/model-config.js';
import { SCALED_FP8_KIND_NAME, type ScaledFp8Base } from '../formats/scaled-fp8.js';
import type { MergePlan, PlanProblem } from './merge-plan.js';

/** Parameters that sit beside a quantized `weight` in the formats people ship. */
// `scale_weight`: a scaled fp8 checkpoint's beside fp8 codes, where no `scaled_fp8` marker says the file is one.
// `qscale_weight`: Mistral's own FP8 format (consolidated.safetensors, params.json `quantization`), with `qscale_act`.
const SCALE_SIBLINGS = ['weight_scale_inv', 'weight_scale', 'weight_scale_2', 'weight_global_scale', 'weight_zero_point', 'weight_g_idx', 'scale_weight', 'qscale_weight'] as const;

/** The scale tensor stored beside `<stem>weight`, if any (a `scale_weight` only beside fp8 codes: another model's parameter may have that name). */
function scaleSibling(tensors: ReadonlyMap<string, unknown>, stem: string): string | undefined {
  const fp8 = () => /^F8_E(4M3|5M2)$/.test(String((tensors.get(`${stem}weight`) as { dtype?: unknown } | undefined)?.dtype));
  return SCALE_SIBLINGS.find((s) => tensors.has(stem + s) && (s !== 'scale_weight' || fp8()));
}

/**
 * The scale of a parameter stored under its own name rather than as `<module>.weight`: transformers'
 * FP8 experts (FineGrainedFP8's fused `mlp.experts.gate_up_proj` (E, 2·inter, hidden) as F8_E4M3 codes,
 * `gate_up_proj_scale_inv` (E, ⌈2·inter/bm⌉, ⌈hidden/bn⌉) and a static `gate_up_proj_activation_scale`
 * beside it: Mistral Small 4 and Mistral Large 3 in transformers' format, GLM-5). Those a block-wise
 * fp8 config describes are read (formats/fp8-fused-experts.ts); the others (no such config, a grid
 * whose blocks cross from one expert into the next) are refused by this scale.
 */
function parameterScaleSibling(tensors: ReadonlyMap<string, unknown>, key: string): string | undefined {
  return key.endsWith('.weight') || !tensors.has(`${key}_scale_inv`) ? undefined : `${key}_scale_inv`;
}

/** How the refusals word a fused parameter's scale (parameterScaleSibling). */
const PARAMETER_SCALE_FORM = "a fused expert parameter with its scale in <parameter>_scale_inv, as transformers' FP8 experts store it";

/** Methods the merge reads itself: bitsandbytes bases are dequantized by formats/bnb. */
const READ_METHODS = new Set(['bitsandbytes']);

/**
 * Methods that store their quantized parameters under names of their own, so a float `.weight`
 * beside them is one the method left unquantized: transformers' MXFP4 (gpt-oss) replaces only the
 * experts' fused parameters, as `<param>_blocks` and `<param>_scales`; attention, router,
 * embedding and head stay bf16 weights (`modules_to_not_convert`).
 */
const FLOAT_WEIGHTS_UNQUANTIZED = new Set(['mxfp4']);
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

/** Why a weight the file stores in a quantized format not read here (`format`: what the file says) takes no update. */
export function quantizedFormatRefusal(baseKey: string, format: string): string {
  return `the base tensor ${baseKey} is stored quantized: ${format}; merge into the unquantized model, or a float8_e4m3fn one`;
}

/** A problem for every planned change to a weight stored as quantized codes. */
export function quantizedWeightProblems(
  plan: MergePlan, tensors: ReadonlyMap<string, unknown>, config: ModelConfig | undefined, scaled?: ScaledFp8Base,
): PlanProblem[] {
  const method = quantizationMethod(config);
  const configMethod = method !== undefined && !READ_METHODS.has(method) && !scaled ? method : undefined;
  const unread = new Set(scaled?.unread);
  const why = (baseKey: string): string | undefined => {
    const parameterScale = scaled?.weights.has(baseKey) ? undefined : parameterScaleSibling(tensors, baseKey);
    if (parameterScale) {
      return `the base tensor ${baseKey} is stored quantized, with its scale in ${parameterScale}${configMethod ? ` (config.json quantization_config: ${configMethod})` : ''}; merging into quantized weights of this kind is not supported: use the unquantized model`;
    }
    if (!baseKey.endsWith('.weight') || scaled?.weights.has(baseKey)) return undefined;
    // Under `keep` the plan merges every weight with a scale_weight in place (ΔW / scale), whatever
    // the scale's dtype, as ComfyUI's older scaled fp8 layers read one into their float32 parameter.
    if (scaled?.rule === 'keep' && unread.has(baseKey)) return undefined;
    const format = scaled?.unreadWhy?.get(baseKey);
    if (format) return quantizedFormatRefusal(baseKey, format);
    const stem = baseKey.slice(0, -'weight'.length);
    const sibling = scaleSibling(tensors, stem);
    const dtype = (tensors.get(baseKey) as { dtype?: unknown } | undefined)?.dtype;
    if (!sibling && configMethod && FLOAT_WEIGHTS_UNQUANTIZED.has(configMethod) && FLOAT_DTYPES.has(String(dtype))) return undefined;
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
  // A GLoRA bias path reads W·C of the weight beside its bias, even where it leaves the weight as it is.
  for (const b of plan.biasUpdates) for (const t of b.terms) if (t.glora) add(t.glora.weightKey, t.adapter, t.moduleName);
  // Under the in-place `keep` rule the plan itself refuses what does not add to W (merge-plan.ts).
  if (scaled && scaled.rule !== 'keep') problems.push(...scaledFp8Problems(plan, scaled));
  return problems;
}

/**
 * A module the plan found no tensor for, in a base whose config.json names a quantization method
 * not read here and which stores that module under other names than `weight` (HQQ's `W_q`, `scale`,
 * `zero` and its meta fields; optimum-quanto's `weight._data` and `weight._scale`): its "no matching
 * tensor" problem is replaced by one naming the method, which is what the user can act on.
 */
export function packedModuleProblems(problems: PlanProblem[], tensors: ReadonlyMap<string, unknown>, config: ModelConfig | undefined): void {
  const method = quantizationMethod(config);
  if (method === undefined || READ_METHODS.has(method)) return;
  let under: KeysUnder | undefined; // indexed once, where a problem asks
  for (let i = 0; i < problems.length; i++) {
    const p = problems[i];
    if (p.code !== 'UNKNOWN_MODULE' || p.module === '' || tensors.has(`${p.module}.weight`)) continue;
    under ??= new KeysUnder(tensors.keys());
    // The module's own tensors only (`W_q`, `weight._data`): a parent module's name (`mlp`) covers
    // its children's weights, which say nothing of how the module is stored.
    const stored = under.ownTensors(p.module);
    if (stored === undefined || stored.length === 0) continue;
    const shown = stored.slice(0, 3).join(', ') + (stored.length > 3 ? ', …' : '');
    problems[i] = {
      ...p, code: 'UNSUPPORTED_FORMAT',
      message: `${p.adapter}: module "${p.module}": config.json says the base is quantized with ${method} (quantization_config.quant_method), which stores this module as ${p.module}.{${shown}} and no float weight; merging into such weights is not supported: use the unquantized model`,
    };
  }
}

/** A module's own tensor, after `<module>.`: one name part, or one after `weight.` (optimum-quanto's `weight._data`). */
const OWN_TENSOR = /^(weight\.)?[^.]+$/;

/**
 * The keys under a module (`<module>.…`), found by binary search in the keys sorted once: a base
 * of tens of thousands of quantized modules, each a problem, was a scan of every key per module
 * (minutes). `comparisons` counts the key comparisons made, for tests of the work's growth.
 */
export class KeysUnder {
  private readonly sorted: { key: string; at: number }[];
  comparisons = 0;

  constructor(keys: Iterable<string>) {
    this.sorted = [...keys].map((key, at) => ({ key, at }));
    // Code-unit order, as `<` compares: the keys starting with a prefix are then one run.
    this.sorted.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * The endings of the keys under `module` in the file's order when every one is the module's own
   * tensor (OWN_TENSOR); undefined at the first that is not (a parent module's name). The run is
   * left at its first such key, so each key is read for at most the two modules it may belong to.
   */
  ownTensors(module: string): string[] | undefined {
    const prefix = `${module}.`;
    let lo = 0, hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      this.comparisons++;
      if (this.sorted[mid].key < prefix) lo = mid + 1;
      else hi = mid;
    }
    const found: { ending: string; at: number }[] = [];
    for (let i = lo; i < this.sorted.length; i++) {
      const { key, at } = this.sorted[i];
      this.comparisons++;
      if (!key.startsWith(prefix)) break;
      const ending = key.slice(prefix.length);
      if (!OWN_TENSOR.test(ending)) return undefined;
      found.push({ ending, at });
    }
    return found.sort((a, b) => a.at - b.at).map((f) => f.ending);
  }
}

/**
 * The first weight stored beside a scale tensor that no reader here takes (neither `scaled` reads
 * it nor names its format): converting the model with --dtype would write its codes as if they
 * were the weights. `form`: how the refusal words the form, where no quantization config naming it is
 * not the reason (a fused FP8 expert parameter). Undefined when there is none.
 */
export function unreadScaledWeight(tensors: ReadonlyMap<string, unknown>, scaled?: ScaledFp8Base): { key: string; scaleKey: string; form?: string } | undefined {
  const unread = new Set(scaled?.unread ?? []);
  for (const key of tensors.keys()) {
    const parameterScale = scaled?.weights.has(key) ? undefined : parameterScaleSibling(tensors, key);
    if (parameterScale) return { key, scaleKey: parameterScale, form: PARAMETER_SCALE_FORM };
    if (!key.endsWith('.weight') || scaled?.weights.has(key) || unread.has(key)) continue;
    const stem = key.slice(0, -'weight'.length);
    const sibling = scaleSibling(tensors, stem);
    if (sibling) return { key, scaleKey: stem + sibling };
  }
  return undefined;
}

/** What a merge into real values W = code × scale does not do: anything but adding to W. */
function scaledFp8Problems(plan: MergePlan, scaled: ScaledFp8Base): PlanProblem[] {
  const problems: PlanProblem[] = [];
  // A ComfyUI file may mix fp8 and int8 layers: each weight is named by its own.
  const kindOf = (key: string) => (scaled.weights.get(key)?.scaleLayout === 'int8_tensorwise' ? 'ComfyUI int8_tensorwise (comfy_quant)' : SCALED_FP8_KIND_NAME[scaled.kind]);
  const refuse = (adapter: string, module: string, what: string) =>
    problems.push({ adapter, module, code: 'UNSUPPORTED_FORMAT', message: `${adapter}: module "${module}": ${what}; merge it into the unquantized model` });
  for (const u of plan.updates) {
    const w = scaled.weights.get(u.baseKey);
    if (!w) continue;
    for (const t of u.terms) {
      if (t.module.dora) refuse(t.adapter, t.moduleName, `DoRA on the ${kindOf(u.baseKey)} weight ${u.baseKey} (its norms would be taken over the codes) is not supported`);
      else if (t.module.update.kind === 'transform') refuse(t.adapter, t.moduleName, `${moduleTitle(t.module)} maps the weight itself; on the ${kindOf(u.baseKey)} weight ${u.baseKey} it is not supported`);
    }
    if (u.source) refuse(u.terms[0].adapter, u.terms[0].moduleName, `the adapter saves its own ${u.baseKey}, which is a ${kindOf(u.baseKey)} weight here; this is not supported`);
  }
  // W·C reads the real weight: codes times a grid of scales (merge-model.ts), not codes read through a view or packed scales.
  for (const b of plan.biasUpdates) {
    for (const t of b.terms) {
      const w = t.glora && scaled.weights.get(t.glora.weightKey);
      if (w && (w.view || w.loadScales || w.scaleLayout)) {
        refuse(t.adapter, t.moduleName, `its trained GLoRA bias path (b ⊙ D + E + W·C) needs the real values of the ${kindOf(w.weightKey)} weight ${w.weightKey}, which are not read whole here; this is not supported`);
      }
    }
  }
  for (const r of plan.replacements) {
    if (scaled.weights.has(r.baseKey)) refuse(r.adapter, r.baseKey, `replacing the ${kindOf(r.baseKey)} weight ${r.baseKey} (and its ${scaled.weights.get(r.baseKey)!.scaleKey}) is not supported`);
  }
  for (const s of plan.rowSets) {
    if (scaled.weights.has(s.baseKey)) for (const t of s.terms) refuse(t.adapter, s.baseKey, `setting rows of the ${kindOf(s.baseKey)} weight ${s.baseKey} is not supported`);
  }
  return problems;
}

/**
 * A widened weight (BFL's control LoRAs on img_in) that the base stores as scaled fp8 or a
 * comfy_quant layer: its scale is recalculated over the merged tensor (scaled-fp8-output.ts), which
 * knows only the base's shape; refused, naming the weight.
 */
export function widenedScaledProblems(plan: MergePlan, scaled: ScaledFp8Base | undefined): PlanProblem[] {
  return plan.updates.filter((u) => u.widenedFrom !== undefined && scaled?.weights.has(u.baseKey)).map((u) => ({
    adapter: u.terms[0].adapter, module: u.terms[0].moduleName, code: 'UNSUPPORTED_FORMAT' as const,
    message: `${u.terms[0].adapter}: module "${u.terms[0].moduleName}": widening ${u.baseKey} (${u.shape[0]}, ${u.widenedFrom}) to ${u.cols} input columns is not supported on the scaled fp8 weight ${u.baseKey}; merge into a safetensors base in F32, F16, BF16 or plain fp8`,
  }));
}
