/**
 * The merge plan: every adapter module matched to its base tensor, with its final scale and the 2-D
 * view the executor works on, grouped per base tensor; plus bias updates, replacements, and every
 * problem found, all before a single weight is read. Pure data (tensor headers and file handles).
 *
 * Policy decisions, documented here because users will ask:
 * - Several adapters on one tensor add their terms: W' = W + Σ wᵢ·sᵢ·BᵢAᵢ.
 * - A DoRA module must be the only term on its tensor. DoRA renormalises W + ΔW with magnitudes
 *   trained against the original W; with a second adapter's ΔW in the sum, or a second DoRA
 *   magnitude, there is no single right answer, so the plan refuses instead of guessing.
 * - With DoRA, the user weight scales ΔW only; the magnitude is applied as trained (warned).
 * - A replaced tensor (PEFT modules_to_save) may not also receive LoRA terms or another replacement.
 */
import { DTYPE_BYTES, isFloatDType, type DType, type FloatDType } from '../dtype.js';
import { MergeError, type MergeErrorCode } from '../errors.js';
import type { WeightLayout } from '../engine/merge-op.js';
import type { AdapterFormat, LoraModule, ParsedAdapter } from '../formats/adapter.js';
import type { SafetensorsFile, TensorEntry } from '../formats/safetensors-types.js';
import { ldmUnetNames } from '../formats/sd-unet-names.js';
import { BaseKeyIndex, type KeyResolution } from './base-key-index.js';
import { formatProblemList } from './problems.js';
import { moduleLimitProblem, suspiciousRequestWarnings } from './request-checks.js';

export interface BaseTensorInfo {
  dtype: DType;
  shape: number[];
}

export interface BaseTensorIndex {
  tensors: ReadonlyMap<string, BaseTensorInfo>;
}

export interface WeightedAdapter {
  adapter: ParsedAdapter;
  /** The user's weight (1 by default; negative subtracts). */
  weight: number;
}

/** One module's contribution to one base tensor. */
export interface PlannedTerm {
  adapterIndex: number;
  adapter: string;
  /** Module name for messages and charts (PEFT path or kohya key). */
  moduleName: string;
  module: LoraModule;
  file: SafetensorsFile;
  /** Everything folded in: user weight · α/r (or α/√r). */
  scale: number;
}

/** A DoRA magnitude that renormalises an updated tensor. */
export interface PlannedDora {
  adapterIndex: number;
  moduleName: string;
  file: SafetensorsFile;
  magnitude: TensorEntry;
  axis: 'out' | 'in';
  epsilon: number;
}

/** All work on one base weight tensor. */
export interface TensorUpdate {
  baseKey: string;
  dtype: FloatDType;
  shape: number[];
  /** The stored tensor viewed as rows × cols (convs: (out, in·k...)). */
  rows: number;
  cols: number;
  layout: WeightLayout;
  /** ΔW's out × in (for 'in-out' layouts these are cols × rows). */
  outFeatures: number;
  inFeatures: number;
  terms: PlannedTerm[];
  dora?: PlannedDora;
}

/** PEFT lora_bias: bias' = bias + Σ scale · biasB. */
export interface BiasUpdate {
  baseKey: string;
  dtype: FloatDType;
  length: number;
  terms: { adapterIndex: number; adapter: string; moduleName: string; file: SafetensorsFile; biasB: TensorEntry; scale: number }[];
}

/** A base tensor replaced whole by an adapter tensor (PEFT modules_to_save). */
export interface PlannedReplacement {
  baseKey: string;
  /** The base tensor's dtype (the replacement is converted to the output dtype like any tensor). */
  baseDtype: DType;
  shape: number[];
  adapterIndex: number;
  adapter: string;
  file: SafetensorsFile;
  tensor: TensorEntry;
}

/** Something that stops the merge, naming the adapter and module. */
export interface PlanProblem {
  adapter: string;
  module: string;
  code: MergeErrorCode;
  message: string;
}

/** How much a planned merge changes, reads and computes. */
export interface PlanSummary {
  /** Distinct base tensors that change (updated, bias-updated or replaced). */
  tensorsTouched: number;
  terms: number;
  /** Base bytes of touched tensors plus every factor, magnitude and replacement byte. */
  bytesToRead: number;
  /** Elements of touched tensors; bytes written = this × the output dtype's width. */
  elementsToWrite: number;
  /** 2·r·rows·cols per term. */
  flops: number;
}

/** Which base tensor gets which update at which scale, and every problem found: the result of planning, before anything heavy is read. */
export interface MergePlan {
  adapters: { name: string; format: AdapterFormat; weight: number; modules: number; replacements: number }[];
  /** In the base's tensor order. */
  updates: TensorUpdate[];
  biasUpdates: BiasUpdate[];
  replacements: PlannedReplacement[];
  problems: PlanProblem[];
  warnings: string[];
  summary: PlanSummary;
}

export function buildMergePlan(base: BaseTensorIndex, adapters: readonly WeightedAdapter[]): MergePlan {
  const index = new BaseKeyIndex(base.tensors.keys());
  const problems: PlanProblem[] = [];
  const warnings: string[] = [];
  const updates = new Map<string, TensorUpdate>();
  const biases = new Map<string, BiasUpdate>();
  const replacements = new Map<string, PlannedReplacement>();

  adapters.forEach(({ adapter, weight }, adapterIndex) => {
    const report = (module: string, code: MergeErrorCode, message: string) =>
      problems.push({ adapter: adapter.name, module, code, message: `${adapter.name}: ${module === '' ? '' : `module "${module}": `}${message}` });
    if (!Number.isFinite(weight)) report('', 'BAD_ARGUMENT', `weight ${weight} is not a finite number`);
    warnings.push(...adapter.warnings);
    const seen = new Map<string, string>(); // base key → module, within this adapter

    for (const module of adapter.modules) {
      const moduleName = displayName(module);
      const fail = (code: MergeErrorCode, message: string) => report(moduleName, code, message);
      const resolved = resolveModule(index, module);
      if (!resolved.found) {
        fail(resolved.ambiguous ? 'AMBIGUOUS_MODULE' : 'UNKNOWN_MODULE', describeMiss(resolved));
        continue;
      }
      const baseKey = resolved.key;
      const info = base.tensors.get(baseKey)!;
      const previous = seen.get(baseKey);
      if (previous !== undefined) {
        fail('AMBIGUOUS_MODULE', `targets ${baseKey}, as module "${previous}" of the same adapter does`);
        continue;
      }
      seen.set(baseKey, moduleName);
      const overLimit = moduleLimitProblem(module);
      if (overLimit) {
        fail('LIMIT_EXCEEDED', overLimit);
        continue;
      }
      if (!checkFloat(info.dtype, module, fail, `base tensor ${baseKey}`)) continue;
      const view = viewOf(module, baseKey, info.shape, fail);
      if (!view) continue;
      if (![module.a, module.b].every((t) => checkFloat(t.dtype, module, fail, `factor ${t.name}`))) continue;

      const term: PlannedTerm = { adapterIndex, adapter: adapter.name, moduleName, module, file: adapter.file, scale: weight * module.scale };
      let update = updates.get(baseKey);
      if (!update) {
        update = { baseKey, dtype: info.dtype as FloatDType, shape: info.shape.slice(), ...view, terms: [] };
        updates.set(baseKey, update);
      }
      update.terms.push(term);

      if (module.dora) {
        const dora = planDora(module, adapterIndex, adapter.file, view, fail);
        if (dora) {
          update.dora ??= dora;
          if (weight !== 1) warnings.push(`${adapter.name}: DoRA module "${moduleName}" with weight ${weight}: the weight scales ΔW, the magnitude is applied as trained`);
        }
      }
      if (module.biasB) planBias(module, term, baseKey, base, biases, fail);
    }

    for (const rep of adapter.replacements) {
      const name = rep.target.scheme === 'peft' ? rep.target.path : rep.key;
      const resolved = index.resolveDotted(name);
      if (!resolved.found) {
        report(name, resolved.ambiguous ? 'AMBIGUOUS_MODULE' : 'UNKNOWN_MODULE', `replacement tensor: ${describeMiss(resolved)}`);
        continue;
      }
      const info = base.tensors.get(resolved.key)!;
      if (!sameShape(info.shape, rep.tensor.shape)) {
        report(name, 'SHAPE_MISMATCH', `replacement ${fmt(rep.tensor.shape)} does not match base ${resolved.key} ${fmt(info.shape)}`);
        continue;
      }
      if (!isFloatDType(rep.tensor.dtype) || !isFloatDType(info.dtype)) {
        report(name, 'UNSUPPORTED_FORMAT', `replacement ${rep.tensor.dtype} for base ${resolved.key} ${info.dtype}: only F32, F16 and BF16 tensors can be replaced`);
        continue;
      }
      const other = replacements.get(resolved.key);
      if (other) {
        report(name, 'PLAN_INVALID', `replaces ${resolved.key}, which ${other.adapter} also replaces`);
        continue;
      }
      if (weight !== 1) warnings.push(`${adapter.name}: weight ${weight} does not apply to the replaced tensor ${resolved.key} (modules_to_save)`);
      replacements.set(resolved.key, {
        baseKey: resolved.key, baseDtype: info.dtype, shape: info.shape.slice(), adapterIndex, adapter: adapter.name, file: adapter.file, tensor: rep.tensor,
      });
    }
  });

  checkSharedTensors(updates, biases, replacements, problems);
  warnings.push(...suspiciousRequestWarnings(adapters));
  const order = [...base.tensors.keys()];
  const rank = new Map(order.map((k, i) => [k, i]));
  const byBaseOrder = <T extends { baseKey: string }>(m: Map<string, T>) => [...m.values()].sort((x, y) => rank.get(x.baseKey)! - rank.get(y.baseKey)!);
  const plan: MergePlan = {
    adapters: adapters.map(({ adapter, weight }) => ({
      name: adapter.name, format: adapter.format, weight, modules: adapter.modules.length, replacements: adapter.replacements.length,
    })),
    updates: byBaseOrder(updates),
    biasUpdates: byBaseOrder(biases),
    replacements: byBaseOrder(replacements),
    problems,
    warnings,
    summary: { tensorsTouched: 0, terms: 0, bytesToRead: 0, elementsToWrite: 0, flops: 0 },
  };
  plan.summary = summarise(plan, base);
  return plan;
}

/** Throws one MergeError listing every problem of the plan (first few in full, then a count). */
export function assertPlanValid(plan: MergePlan): void {
  if (plan.problems.length === 0) return;
  const codes = new Set(plan.problems.map((p) => p.code));
  const code = codes.size === 1 ? plan.problems[0].code : 'PLAN_INVALID';
  throw new MergeError(code, formatProblemList('the merge plan', plan.problems.map((p) => p.message)));
}

/** The name users know a module by: PEFT's module path, or kohya's key. */
export function displayName(module: LoraModule): string {
  return module.target.scheme === 'peft' ? module.target.path : module.key;
}

function resolveModule(index: BaseKeyIndex, module: LoraModule): KeyResolution {
  const target = module.target;
  if (target.scheme === 'peft') return index.resolveDotted(`${target.path}.weight`);
  const direct = index.resolveFlat(target.flatName, target.part);
  if (direct.found || direct.ambiguous || target.part !== 'unet') return direct;
  // An SD1/SD2 LoRA names diffusers modules; the base may be a single-file LDM checkpoint.
  const found = ldmUnetNames(target.flatName)
    .map((name) => index.resolveFlat(name, 'unet'))
    .filter((r): r is Extract<KeyResolution, { found: true }> => r.found);
  return found.length === 1 ? found[0] : direct;
}

function describeMiss(r: Extract<KeyResolution, { found: false }>): string {
  if (!r.ambiguous) return 'no matching tensor in the base model';
  const shown = r.candidates.slice(0, 4).join(', ');
  return `matches ${r.candidates.length} base tensors (${shown}${r.candidates.length > 4 ? ', ...' : ''})`;
}

type Fail = (code: MergeErrorCode, message: string) => void;

function checkFloat(dtype: DType, module: LoraModule, fail: Fail, what: string): boolean {
  // Factors may be F64 (converted to f32 when loaded); weights must be a dtype the engine writes.
  if (isFloatDType(dtype) || (dtype === 'F64' && !what.startsWith('base'))) return true;
  fail('UNSUPPORTED_FORMAT', `${what} is ${dtype}; only F32, F16 and BF16 ${what.startsWith('base') ? 'weights' : 'factors'} can be merged (${module.kind} module)`);
  return false;
}

interface View {
  rows: number;
  cols: number;
  layout: WeightLayout;
  outFeatures: number;
  inFeatures: number;
}

/**
 * How ΔW = B·A lines up with the stored base tensor, checking every dimension: A (r, in, k...) and
 * B (out, r, 1...) against (out, in, k...) for linear/conv, (in, out) for fan_in_fan_out and
 * embeddings.
 */
function viewOf(module: LoraModule, baseKey: string, shape: readonly number[], fail: Fail): View | null {
  const { a, b } = module;
  const out = b.shape[0];
  const aIn = a.shape.slice(1);
  const inFeatures = product(aIn);
  const mismatch = (why: string) => {
    fail('SHAPE_MISMATCH', `A ${fmt(a.shape)} and B ${fmt(b.shape)} do not fit base ${baseKey} ${fmt(shape)}: ${why}`);
    return null;
  };
  if (module.kind === 'embedding' || module.fanInFanOut) {
    // Stored (in, out): embeddings are (vocab, dim), GPT-2 Conv1D is (in, out).
    if (shape.length !== 2 || aIn.length !== 1) return mismatch(`expected a 2-D (in, out) weight${module.fanInFanOut ? ' (fan_in_fan_out)' : ''}`);
    if (shape[0] !== inFeatures || shape[1] !== out) return mismatch(`expected (${inFeatures}, ${out})`);
    return { rows: shape[0], cols: shape[1], layout: 'in-out', outFeatures: out, inFeatures };
  }
  if (shape.length < 2) return mismatch('the base is not a matrix');
  if (shape[0] !== out) return mismatch(`B has ${out} outputs, the base ${shape[0]}`);
  // Trailing 1s do not matter: a linear LoRA fits a 1×1 conv and the other way round.
  const baseIn = trimOnes(shape.slice(1));
  const loraIn = trimOnes(aIn);
  // LyCORIS may store a conv factor flattened: A (r, in·kh·kw) against a (out, in, kh, kw) base.
  if (loraIn.length === 1 && baseIn.length > 1 && loraIn[0] === product(baseIn)) {
    return { rows: shape[0], cols: loraIn[0], layout: 'out-in', outFeatures: out, inFeatures };
  }
  if (baseIn[0] !== loraIn[0]) return mismatch(`A has ${aIn[0]} inputs, the base ${shape[1]}`);
  if (!sameShape(baseIn, loraIn)) return mismatch(`kernel ${fmt(aIn.slice(1))} differs from the base kernel ${fmt(shape.slice(2))}`);
  return { rows: shape[0], cols: product(shape.slice(1)), layout: 'out-in', outFeatures: out, inFeatures };
}

function planDora(module: LoraModule, adapterIndex: number, file: SafetensorsFile, view: View, fail: Fail): PlannedDora | null {
  const dora = module.dora!;
  const want = dora.axis === 'out' ? view.outFeatures : view.inFeatures;
  if (dora.axis === 'in' && module.a.shape.length > 2 && product(module.a.shape.slice(2)) > 1) {
    // LyCORIS normalises per input channel over (out, kh, kw): not a column norm of the flat view.
    fail('UNSUPPORTED_FORMAT', `DoRA on a ${module.a.shape.slice(2).join('×')} convolution with per-input norms is not supported yet`);
    return null;
  }
  if (product(dora.magnitude.shape) !== want) {
    fail('SHAPE_MISMATCH', `DoRA magnitude ${fmt(dora.magnitude.shape)} should have ${want} values (one per ${dora.axis === 'out' ? 'output' : 'input'} feature)`);
    return null;
  }
  if (!checkFloat(dora.magnitude.dtype, module, fail, `DoRA magnitude ${dora.magnitude.name}`)) return null;
  return { adapterIndex, moduleName: displayName(module), file, magnitude: dora.magnitude, axis: dora.axis, epsilon: dora.epsilon };
}

function planBias(module: LoraModule, term: PlannedTerm, weightKey: string, base: BaseTensorIndex, biases: Map<string, BiasUpdate>, fail: Fail): void {
  const biasB = module.biasB!;
  const biasKey = weightKey.endsWith('.weight') ? `${weightKey.slice(0, -'.weight'.length)}.bias` : `${weightKey}.bias`;
  const info = base.tensors.get(biasKey);
  const out = module.b.shape[0];
  if (!info) return fail('UNKNOWN_MODULE', `has lora_B.bias but the base has no ${biasKey}`);
  if (!isFloatDType(info.dtype)) return fail('UNSUPPORTED_FORMAT', `base ${biasKey} is ${info.dtype}; only F32, F16 and BF16 can be merged`);
  if (product(info.shape) !== out || product(biasB.shape) !== out) {
    return fail('SHAPE_MISMATCH', `lora_B.bias ${fmt(biasB.shape)} and base ${biasKey} ${fmt(info.shape)} should both have ${out} values`);
  }
  if (!checkFloat(biasB.dtype, module, fail, `factor ${biasB.name}`)) return;
  let update = biases.get(biasKey);
  if (!update) biases.set(biasKey, (update = { baseKey: biasKey, dtype: info.dtype, length: out, terms: [] }));
  update.terms.push({ adapterIndex: term.adapterIndex, adapter: term.adapter, moduleName: term.moduleName, file: term.file, biasB, scale: term.scale });
}

/** DoRA must be alone on its tensor; replaced tensors take nothing else. */
function checkSharedTensors(
  updates: Map<string, TensorUpdate>, biases: Map<string, BiasUpdate>, replacements: Map<string, PlannedReplacement>, problems: PlanProblem[],
): void {
  for (const update of updates.values()) {
    const doraTerms = update.terms.filter((t) => t.module.dora);
    if (doraTerms.length > 0 && update.terms.length > 1) {
      const names = update.terms.map((t) => `${t.adapter}${t.module.dora ? ' (DoRA)' : ''}`).join(', ');
      const t = doraTerms[0];
      problems.push({
        adapter: t.adapter, module: t.moduleName, code: 'PLAN_INVALID',
        message: `${t.adapter}: module "${t.moduleName}": DoRA cannot share ${update.baseKey} with other adapters (${names}); merge them one after the other`,
      });
    }
  }
  for (const rep of replacements.values()) {
    const lora = updates.get(rep.baseKey)?.terms[0] ?? biases.get(rep.baseKey)?.terms[0];
    if (!lora) continue;
    problems.push({
      adapter: rep.adapter, module: rep.baseKey, code: 'PLAN_INVALID',
      message: `${rep.adapter}: replaces ${rep.baseKey}, which ${lora.adapter} (module "${lora.moduleName}") also updates with LoRA`,
    });
  }
}

function summarise(plan: MergePlan, base: BaseTensorIndex): PlanSummary {
  const touched = new Set<string>();
  let bytesToRead = 0;
  let elementsToWrite = 0;
  let flops = 0;
  let terms = 0;
  const baseBytes = (key: string) => {
    const info = base.tensors.get(key)!;
    return product(info.shape) * DTYPE_BYTES[info.dtype];
  };
  const touch = (key: string) => {
    if (touched.has(key)) return;
    touched.add(key);
    elementsToWrite += product(base.tensors.get(key)!.shape);
  };
  for (const u of plan.updates) {
    touch(u.baseKey);
    bytesToRead += baseBytes(u.baseKey);
    for (const t of u.terms) {
      terms++;
      bytesToRead += t.module.a.byteLength + t.module.b.byteLength;
      flops += 2 * t.module.rank * (t.module.hadamard?.a2.shape[0] ?? 1) * u.rows * u.cols; // LoHa runs at rank r·r2
    }
    if (u.dora) bytesToRead += u.dora.magnitude.byteLength;
  }
  for (const b of plan.biasUpdates) {
    touch(b.baseKey);
    bytesToRead += baseBytes(b.baseKey) + b.terms.reduce((n, t) => n + t.biasB.byteLength, 0);
    flops += 2 * b.length * b.terms.length;
  }
  for (const r of plan.replacements) {
    touch(r.baseKey);
    bytesToRead += r.tensor.byteLength;
  }
  return { tensorsTouched: touched.size, terms, bytesToRead, elementsToWrite, flops };
}

function trimOnes(shape: readonly number[]): number[] {
  let end = shape.length;
  while (end > 1 && shape[end - 1] === 1) end--;
  return shape.slice(0, end);
}

function sameShape(x: readonly number[], y: readonly number[]): boolean {
  return x.length === y.length && x.every((d, i) => d === y[i]);
}

function product(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function fmt(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
