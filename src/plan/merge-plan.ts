/**
 * The merge plan: every adapter module matched to its base tensor, with its final scale and the 2-D
 * view the executor works on, grouped per base tensor; plus bias updates, replacements, and every
 * problem found, all before a single weight is read. Pure data (tensor headers and file handles).
 *
 * Where a module lands is the layouts' answer (formats/layouts/): one or more base tensors, each
 * with the rows ΔW's rows go to; what its update is, the algorithm's (formats/algorithms/). The
 * plan only checks that the two fit and groups the terms per tensor.
 *
 * Policy decisions, documented here because users will ask:
 * - Several adapters on one tensor apply in `--adapter` order, as PEFT merges adapters one after
 *   another: additive terms in a row sum in one pass (W' = W + Σ wᵢ·sᵢ·ΔWᵢ); a DoRA module
 *   renormalises W + (the terms before it) + its own ΔW; scalings and rotations (IA3, OFT) map the
 *   weight as it stands when their turn comes.
 * - Modules of one adapter may share a tensor only on disjoint rows (q, k and v of a fused qkv).
 * - With PEFT's DoRA the user weight scales ΔW only, the magnitude applied as trained; with
 *   LyCORIS's, ΔW stays whole and the weight moves the factor m / ‖V‖ toward 1 (both warned).
 * - A replaced tensor (PEFT modules_to_save) may not also receive LoRA terms or another replacement.
 * - A base weight an adapter saved (PEFT `base_layer.weight`, a resized embedding, `bias="all"`) is
 *   what that adapter's own terms start from; it must come before other adapters on that tensor.
 * - Trainable tokens set rows outright: nothing else may change their tensor in the same merge.
 */
import { DTYPE_BYTES, isFloatDType, type DType, type FloatDType } from '../dtype.js';
import { MergeError, type MergeErrorCode } from '../errors.js';
import { Pacer } from '../event-turns.js';
import type { RowPlacement, RowSegment, WeightLayout } from '../engine/merge-op.js';
import { ADAPTER_FORMAT_NAMES, type AdapterFormat, type AdapterModule, type LayerClass, type ParsedAdapter, type TensorReplacement } from '../formats/adapter.js';
import { moduleTitle } from '../formats/algorithms/index.js';
import { ggufWideningProblem, reshapeProblem } from '../formats/algorithms/reshape-weight.js';
import type { BaseComponent, CombinedPrior, WeightlessFolder } from '../formats/base-components.js';
import { namedLayerClass } from '../formats/layer-names.js';
import { allTransposedBlockSegments, ModuleLocator, type KeyResolution, type Placement, type TransposedBlocks } from '../formats/layouts/index.js';
import { flux1NamesSharedBy } from '../formats/diffusers-flux-alphas.js';
import { minimaxH3Base } from '../formats/layouts/minimax-h3.js';
import type { ExpertLayout } from '../formats/layouts/layout.js';
import type { SafetensorsFile, TensorEntry } from '../formats/safetensors-types.js';
import { adapterFactorExample } from '../formats/key-forms.js';
import { trainedFor } from '../formats/trained-for.js';
import { fitExperts, storesExpertsInOut, type ExpertSplit } from './fused-experts.js';
import { familyMismatch } from './model-family.js';
import { formatProblemList } from './problems.js';
import { quantizedFormatRefusal } from './quantized-weights.js';
import type { PlannedRowSet } from './row-sets.js';
import { moduleLimitProblem, suspiciousRequestWarnings } from './request-checks.js';
import { resolveReplacement, resolveSetWeight, type ReplacementTarget } from './replacement-target.js';
import { MAX_MIXED_ROWS_BYTES, MAX_ROW_KERNEL_BYTES } from '../limits.js';
import { leastJobBytes } from '../engine/cpu/kernel-memory.js';
import { lcm, product } from '../integers.js';
import { spansOverlap, type RowSpan } from './row-spans.js';
import { termDeltaDims } from './load-op.js';
import type { RegeneratedProjections } from '../formats/algorithms/shared-projections.js';

export interface BaseTensorInfo {
  dtype: DType;
  shape: number[];
  /** Why the stored shape may not be the model's (see BaseTensor.shapeNote). */
  shapeNote?: string;
  /** The tensors it is decoded from (see BaseTensor.decodedFrom). */
  decodedFrom?: string;
  /** The shape the file holds, where `shape` differs (see BaseTensor.storedShape). */
  storedShape?: readonly number[];
  /** Rows that hold whole stored blocks (see BaseTensor.rowBlock); 1 when absent. */
  rowBlock?: number;
  /** The container's own type of the stored values (a GGUF tensor's `Q8_0`, `F32`), where it has one. */
  storedType?: string;
}

/**
 * The scale a weight's stored values are multiplied by to give the model's, which the merge keeps
 * as it is (a scaled fp8 checkpoint's scale_weight, llama.cpp's `<name>.scale`).
 */
export interface ValueScale {
  /** One scale, or one per expert of a stacked expert tensor (its rows in as many equal runs). */
  values: readonly number[];
  /** The weight and its scale as messages name them ("the scaled fp8 weight x.weight"). */
  label: string;
}

export interface BaseTensorIndex {
  tensors: ReadonlyMap<string, BaseTensorInfo>;
  /** Weights stored as value / scale: the additive terms on them are divided by the scale. */
  valueScales?: ReadonlyMap<string, ValueScale>;
  /** The components the base's files name (a pipeline's folders); else found from the keys. */
  components?: readonly BaseComponent[];
  /** A pipeline's text encoder folders listed in model_index.json without weights (BaseModel.weightlessEncoders). */
  weightlessEncoders?: readonly WeightlessFolder[];
  /** A combined pipeline's prior folders, which no LoRA name routes to (BaseModel.combinedPrior). */
  combinedPrior?: CombinedPrior;
  /** config.json `architectures` (vision-language key maps, fused expert layouts). */
  architectures?: readonly string[];
  /** config.json `model_type`: layers it tells by name (transformers' Conv1D, embeddings; formats/layer-names.ts). */
  modelType?: string;
  /** The base file's typed metadata (GGUF), for layouts that need it. */
  metadata?(key: string): unknown;
  /** The fields of config.json, when the base has one (layouts that need the model's sizes). */
  config?: Readonly<Record<string, unknown>>;
  /** Weights stored in a quantized format the merge does not read, and what the file says it is (a comfy_quant format). */
  quantizedAs?: ReadonlyMap<string, string>;
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
  module: AdapterModule;
  file: SafetensorsFile;
  /** Everything folded in: user weight · α/r (or α/√r). */
  scale: number;
  /** The layout that placed it (`kohya-flat`, `sd-ldm-unet`, …). */
  layout: string;
  /** Where ΔW's rows land when not on the tensor's rows one to one (a slice of a fused tensor…). */
  placement?: RowPlacement;
  /** A fused 3-D expert tensor: one term per expert, each on its own rows (fused-experts.ts). */
  experts?: ExpertSplit;
  /** The tensor holds ΔW's rows in blocks, each transposed: one term per block (transposed-blocks.ts). */
  transposedBlocks?: TransposedBlocks;
  /** The base's column c holds ΔW's column columns[c] (only a low-rank term lands so). */
  columns?: readonly number[];
  /** DoRA: renormalise after this term (and the terms before it). */
  dora?: PlannedDora;
}

/** A DoRA magnitude that renormalises an updated tensor. */
export interface PlannedDora {
  adapterIndex: number;
  moduleName: string;
  file: SafetensorsFile;
  magnitude: TensorEntry;
  axis: 'out' | 'in';
  epsilon: number;
  /** The least norm divided by (DoraFactor.normFloor); absent: none. */
  normFloor?: number;
  /** Input features per magnitude (a conv's kernel positions); absent: 1. */
  group?: number;
  /** The user weight, where it moves the DoRA factor toward 1 instead of scaling ΔW (LyCORIS); absent: 1. */
  strength?: number;
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
  /** In `--adapter` order, each adapter's modules in file order. */
  terms: PlannedTerm[];
  /** Row slabs start on multiples of this (rotations of output rows keep blocks together). */
  rowBlock: number;
  /**
   * The tensor W starts from when an adapter saved it (PEFT `base_layer.weight`, a resized
   * embedding): the terms apply to it instead of the base's; `dtype` and `shape` are its own.
   */
  source?: PlannedReplacement;
  /**
   * The base's own column count when the terms widen it (BFL's control LoRAs on `img_in`; a
   * reshape_weight on Wan's Conv3d `patch_embedding`, whose columns are in·kernel, so new input
   * channels are new columns at the end of each row): W starts as the base's rows followed by zeros
   * up to `cols` columns, and `shape` is the widened one.
   */
  widenedFrom?: number;
}

/**
 * PEFT GLoRA's bias path on one bias: b + scale·(b ⊙ D + E + W·C), W the real values of the base's
 * `weightKey` (out × in, read whole when the bias is merged: floats, GGUF blocks dequantized, or fp8
 * codes times their scales), its module's rows where the bias term has a placement (a fused tensor).
 */
export interface GloraBiasTerm {
  module: AdapterModule;
  weightKey: string;
  /**
   * The scale the stored values are multiplied by to give W (a scaled fp8 `scale_weight` merged in
   * place, a GGUF's kept `.scale`): one, or one per equal run of rows (experts).
   */
  valueScale?: readonly number[];
}

/**
 * PEFT lora_bias, ComfyUI's and LyCORIS's diff_b: bias' = bias + Σ scale · biasB, in adapter order; a `multiply`
 * term (PEFT (IA)³) scales the bias as it stands by 1 + scale·(biasB − 1) instead, and a `map` term
 * (PEFT RoAd) maps it by its module's update of the outputs (R·b).
 */
export interface BiasUpdate {
  baseKey: string;
  dtype: FloatDType;
  length: number;
  terms: { adapterIndex: number; adapter: string; moduleName: string; file: SafetensorsFile; biasB: TensorEntry; scale: number; placement?: RowPlacement; multiply?: boolean; map?: AdapterModule; glora?: GloraBiasTerm }[];
  /** The bias it starts from when the adapter saved one (PEFT `bias="lora_only"`/`"all"`). */
  source?: PlannedReplacement;
}

/** A base tensor replaced whole by an adapter tensor (PEFT modules_to_save, saved base weights). */
export interface PlannedReplacement {
  baseKey: string;
  /** The base tensor's dtype (the replacement is converted to the output dtype like any tensor). */
  baseDtype: DType;
  /** The replacement's shape (a resized embedding has more rows than the base's). */
  shape: number[];
  origin: NonNullable<TensorReplacement['origin']>;
  adapterIndex: number;
  adapter: string;
  file: SafetensorsFile;
  tensor: TensorEntry;
  /**
   * Where each of its rows goes when the base orders them otherwise (llama's q/k in a GGUF); every
   * row moves within its run of `rowBlock` rows, so slabs of whole runs are read and written alike.
   */
  rows?: readonly RowSegment[];
  rowBlock?: number;
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

/** A module not merged because it names a component the base does not hold. */
export interface LeftOutModule {
  adapterIndex: number;
  adapter: string;
  module: string;
  /** Why, e.g. "names text encoder 1 (CLIP-L), which the base does not hold (it holds …)". */
  reason: string;
}

/** Which base tensor gets which update at which scale, and every problem found: the result of planning, before anything heavy is read. */
export interface MergePlan {
  adapters: { name: string; format: AdapterFormat; weight: number; modules: number; replacements: number }[];
  /** Modules for components the base lacks: not merged, and said so (warnings, output metadata). */
  leftOut: LeftOutModule[];
  /** In the base's tensor order. */
  updates: TensorUpdate[];
  biasUpdates: BiasUpdate[];
  replacements: PlannedReplacement[];
  /** Rows set outright (PEFT trainable tokens). */
  rowSets: PlannedRowSet[];
  problems: PlanProblem[];
  warnings: string[];
  /** What the merged model gains besides new tensor values (lm_head untied, vocabulary resized…). */
  notes: string[];
  summary: PlanSummary;
}

/**
 * Matches every module of `adapters` to a base tensor and collects every problem. `pacer` gives the
 * event loop a turn between modules (event-turns.ts): tens of thousands of them take seconds, which
 * a Ctrl-C or an abort must be able to cut short.
 */
export async function buildMergePlan(base: BaseTensorIndex, adapters: readonly WeightedAdapter[], pacer: Pacer = new Pacer()): Promise<MergePlan> {
  const locator = new ModuleLocator(base);
  const problems: PlanProblem[] = [];
  const warnings: string[] = [];
  const updates = new Map<string, TensorUpdate>();
  const biases = new Map<string, BiasUpdate>();
  const replacements = new Map<string, PlannedReplacement>();
  const leftOut: LeftOutModule[] = [];
  const rowSets = new Map<string, PlannedRowSet>();

  for (const [adapterIndex, { adapter, weight }] of adapters.entries()) {
    const report = (module: string, code: MergeErrorCode, message: string) =>
      problems.push({ adapter: adapter.name, module, code, message: `${adapter.name}: ${module === '' ? '' : `module "${module}": `}${message}` });
    if (!Number.isFinite(weight)) report('', 'BAD_ARGUMENT', `weight ${weight} is not a finite number`);
    const refused = adapter.refusedModelTypes;
    const baseRefusal = base.modelType !== undefined && refused && Object.hasOwn(refused, base.modelType) ? refused[base.modelType] : undefined;
    if (baseRefusal) {
      report('', 'UNSUPPORTED_FORMAT', baseRefusal);
      continue;
    }
    // diffusers' FLUX.1 loader's refusal, where the base is not one that shares FLUX.1's names.
    if (adapter.flux1Refusal && !locator.baseIs(flux1NamesSharedBy)) {
      problems.push({ adapter: adapter.name, module: '', ...adapter.flux1Refusal });
      continue;
    }
    // diffusers' MiniMax-H3 loader's refusal of a file in names H3 shares with other models, where the base is H3's.
    if (adapter.minimaxH3Refusal && locator.baseIs(minimaxH3Base)) {
      problems.push({ adapter: adapter.name, module: '', ...adapter.minimaxH3Refusal });
      continue;
    }
    // diffusers' FLUX.1 norm weights (FluxControlPipeline's), which the loaders of the models sharing FLUX.1's names do not load.
    const sharing = adapter.flux1Norms?.length ? locator.baseIs(flux1NamesSharedBy) : undefined;
    if (sharing) {
      const norms = adapter.flux1Norms!;
      report('', 'UNSUPPORTED_FORMAT', `tensor "${norms[0]}"${norms.length > 1 ? ` (and ${norms.length - 1} more)` : ''} is a q/k norm weight in diffusers' FLUX.1 names, which only diffusers' FLUX.1 loader loads (FluxControlPipeline's _load_norm_into_transformer); `
        + `on this ${sharing} base diffusers' ${sharing} loader refuses the file (every key must contain "lora") and ComfyUI reads no patch from a plain weight tensor: not supported — remove the norm tensors to merge the LoRA without them`);
      continue;
    }
    warnings.push(...adapter.warnings);
    const seen = new Map<string, { module: string; rows: RowSpan[] }[]>(); // base key → modules on it, within this adapter
    const squared = new Map<string, AdapterModule>(); // modules merged at weight² (AdapterModule.weightSquared), by name
    // Base weights this adapter saved: its own terms on them start from these.
    const ownBase = new Map<string, PlannedReplacement>();

    for (const rep of adapter.replacements) {
      const name = rep.path;
      const origin = rep.origin ?? 'modules_to_save';
      // modules_to_save may also land where the module's layouts map it (a GGUF base's names).
      const resolved: ReplacementTarget = origin === 'modules_to_save'
        ? resolveReplacement(locator, name, (key) => base.tensors.get(key)?.shape[0])
        : origin === 'set_weight' && rep.address ? resolveSetWeight(locator, rep.address)
          : locator.resolveTensorPath(name);
      if (!resolved.found) {
        report(name, resolved.ambiguous ? 'AMBIGUOUS_MODULE' : 'UNKNOWN_MODULE', `${origin === 'modules_to_save' ? 'replacement' : origin === 'set_weight' ? 'set_weight' : 'saved'} tensor ${rep.key}: ${describeMiss(resolved)}`);
        continue;
      }
      const info = base.tensors.get(resolved.key)!;
      // A tensor seen in another shape (stacked experts seen as rows) is replaced whole, in the shape the file holds.
      const whole = info.storedShape !== undefined && !resolved.rows;
      const why = whole ? !sameShape(info.storedShape!, rep.tensor.shape) : replacementShapeProblem(resolved.key, info.shape, rep.tensor.shape, origin);
      if (why) {
        report(name, 'SHAPE_MISMATCH', `${origin === 'set_weight' ? `set_weight ${rep.key}` : 'replacement'} ${fmt(rep.tensor.shape)} does not match base ${resolved.key} ${fmt(whole ? info.storedShape! : info.shape)}${why === true ? '' : `: ${why}`}`);
        continue;
      }
      if (!isFloatDType(rep.tensor.dtype) || !isFloatDType(info.dtype)) {
        report(name, 'UNSUPPORTED_FORMAT', `replacement ${rep.tensor.dtype} for base ${resolved.key} ${info.dtype}: only float tensors can be replaced`);
        continue;
      }
      const replacedScale = scaledWeight(base, resolved.key);
      if (replacedScale) {
        report(name, 'UNSUPPORTED_FORMAT', `replacing ${replacedScale.label} is not supported`);
        continue;
      }
      const other = replacements.get(resolved.key);
      if (other) {
        report(name, 'PLAN_INVALID', `replaces ${resolved.key}, which ${other.adapter} also replaces`);
        continue;
      }
      if (weight !== 1) {
        const why = origin === 'modules_to_save' ? 'modules_to_save' : origin === 'set_weight' ? 'set_weight: ComfyUI, diffusers and BFL copy it whatever the weight' : 'saved with the adapter';
        warnings.push(`${adapter.name}: weight ${weight} does not apply to the replaced tensor ${resolved.key} (${why})`);
      }
      const planned: PlannedReplacement = {
        baseKey: resolved.key, baseDtype: info.dtype, shape: (whole ? info.shape : rep.tensor.shape).slice(), origin, adapterIndex, adapter: adapter.name, file: adapter.file, tensor: rep.tensor,
        ...(resolved.rows ? { rows: resolved.rows } : {}),
      };
      const rowBlock = lcm(resolved.rowBlock ?? 1, info.rowBlock ?? 1);
      if (rowBlock > 1) planned.rowBlock = rowBlock;
      replacements.set(resolved.key, planned);
      if (origin === 'base_layer' || origin === 'saved') ownBase.set(resolved.key, planned);
    }
    /** What a tensor holds before this adapter's terms: its own saved base weight, or the base's. */
    const startOf = (baseKey: string): BaseTensorInfo => {
      const own = ownBase.get(baseKey);
      return own ? { dtype: own.tensor.dtype, shape: own.shape } : base.tensors.get(baseKey)!;
    };

    for (const rows of adapter.tokenRows ?? []) {
      const resolved = locator.resolveTensorPath(rows.path);
      if (!resolved.found) {
        report(rows.path, resolved.ambiguous ? 'AMBIGUOUS_MODULE' : 'UNKNOWN_MODULE', `trainable tokens ${rows.key}: ${describeMiss(resolved)}`);
        continue;
      }
      const info = startOf(resolved.key);
      const fail = (code: MergeErrorCode, message: string) => report(rows.path, code, `trainable tokens ${rows.key}: ${message}`);
      if (info.shape.length !== 2 || rows.delta.shape[1] !== info.shape[1]) {
        fail('SHAPE_MISMATCH', `deltas ${fmt(rows.delta.shape)} do not fit ${resolved.key} ${fmt(info.shape)}`);
        continue;
      }
      const outside = rows.indices.find((i) => i >= info.shape[0]);
      if (outside !== undefined) {
        fail('SHAPE_MISMATCH', `token ${outside} is outside ${resolved.key}'s ${info.shape[0]} rows`);
        continue;
      }
      if (!isFloatDType(info.dtype) || !(isFloatDType(rows.delta.dtype) || rows.delta.dtype === 'F64')) {
        fail('UNSUPPORTED_FORMAT', `only float tensors can have rows set`);
        continue;
      }
      const setScale = scaledWeight(base, resolved.key);
      if (setScale) {
        fail('UNSUPPORTED_FORMAT', `setting rows of ${setScale.label} is not supported`);
        continue;
      }
      let set = rowSets.get(resolved.key);
      if (!set) {
        set = { baseKey: resolved.key, dtype: info.dtype as FloatDType, shape: info.shape.slice(), terms: [] };
        const own = ownBase.get(resolved.key);
        if (own) set.source = own;
        rowSets.set(resolved.key, set);
      }
      const taken = new Set(set.terms.flatMap((t) => t.indices));
      const overlap = rows.indices.find((i) => taken.has(i));
      if (overlap !== undefined) {
        fail('PLAN_INVALID', `sets token ${overlap}, which ${set.terms.find((t) => t.indices.includes(overlap))!.adapter} also sets (PEFT refuses overlapping trainable tokens)`);
        continue;
      }
      if (weight !== 1) warnings.push(`${adapter.name}: weight ${weight} does not apply to the rows its trainable tokens set in ${resolved.key}`);
      set.terms.push({ adapterIndex, adapter: adapter.name, file: adapter.file, delta: rows.delta, indices: rows.indices });
    }

    const refusedWhole = new Set<string>();
    // Refusals alike for many modules (Location.grouped): one line each, counting them.
    const grouped = new Map<string, { problem: PlanProblem; count: number; first: string }>();
    // Modules no layout placed (the plain "no matching tensor"), and ΔW that does not fit the
    // tensor it names (its size or kind), as their problems; the modules that did land.
    const unmatched: PlanProblem[] = [];
    const misfits: PlanProblem[] = [];
    // Modules on blocks past the base's last: they name no tensor in it, as unmatched ones do, and
    // count so in the one line that says the adapter is for another size of the model.
    const pastLast: PlanProblem[] = [];
    const landed = new Set<string>();
    const ownProblemsFrom = problems.length;
    let sharedFluxNames: { model: string | undefined } | undefined;
    let h3Base: { model: string | undefined } | undefined;
    for (const adapterModule of adapter.modules) {
      await pacer.tick();
      // A target may see the module as its training tool built it there (PEFT LoRA on a Conv1D).
      let module = adapterModule;
      const moduleName = module.name;
      const fail = (code: MergeErrorCode, message: string) => report(moduleName, code, message);
      const location = locator.locate(module.address);
      if (!location.found) {
        if (location.missingComponent) leftOut.push({ adapterIndex, adapter: adapter.name, module: moduleName, reason: location.message });
        else if (location.grouped) {
          const group = grouped.get(location.grouped.key);
          if (group) {
            group.count++;
            group.problem.message = `${adapter.name}: ${location.grouped.many(group.count, group.first)}`;
          } else {
            fail(location.code, location.message);
            grouped.set(location.grouped.key, { problem: problems[problems.length - 1], count: 1, first: moduleName });
          }
        } else if (!location.module) {
          fail(location.code, location.message);
          if (location.unmatched) unmatched.push(problems[problems.length - 1]);
          if (location.pastLastBlock) pastLast.push(problems[problems.length - 1]);
        }
        // A refusal of the saved module all its experts share: one line, naming it.
        else if (!refusedWhole.has(location.module)) {
          refusedWhole.add(location.module);
          report(location.module, location.code, location.message);
        }
        continue;
      }
      // Names FLUX.1 shares with HunyuanVideo, FLUX.2 and Qwen-Image: on those bases the file is theirs,
      // and the single-file `.alpha` rule replaces diffusers' FLUX.1 rule read at parse time.
      if (module.diffusersFluxAlpha && (sharedFluxNames ??= { model: locator.baseIs(flux1NamesSharedBy) }).model) {
        const { alpha, scale, scaleOrigin } = module.diffusersFluxAlpha;
        module = { ...module, alpha, scale, scaleOrigin, diffusersFluxAlpha: undefined };
      }
      // Names MiniMax-H3 shares with other models: on an H3 base the file's metadata alpha is every module's (diffusers' H3 loader).
      if (module.minimaxH3Alpha && (h3Base ??= { model: locator.baseIs(minimaxH3Base) }).model) {
        const { alpha, scale, scaleOrigin } = module.minimaxH3Alpha;
        module = { ...module, alpha, scale, scaleOrigin, minimaxH3Alpha: undefined };
      }
      if (!Object.values(module.tensors).every((t) => checkFloat(t.dtype, module, fail, `factor ${t.name}`))) continue;
      const describe = (target: Placement) => describeTarget(target, placedRows(target, base.tensors.get(target.baseKey)?.shape));
      const targets = location.targets.map(describe).join(', ');
      // A GGUF llama's q and k hold their rows in another order (permuted for llama.cpp's RoPE).
      const landing = location.targets.every((t) => t.columns && !t.rows) ? 'whose columns the base stores in another order'
        : location.targets.every((t) => t.transposedBlocks?.starts.length === 1) ? 'whose weight the base stores transposed'
        : location.targets.every((t) => t.rows && isReordering(t.rows, placedRows(t, base.tensors.get(t.baseKey)?.shape)))
          ? 'whose rows the base stores in another order' : 'that lands on part of a tensor';
      const inParts = location.targets.length > 1 || location.targets[0].rows || location.targets[0].transposedBlocks || location.targets[0].columns;
      if (module.dora && inParts && !doraByOwnRows(module, location.targets, base)) {
        fail('UNSUPPORTED_FORMAT', `DoRA on a module ${landing} (${targets}) is not supported`);
        continue;
      }
      if (module.update.kind === 'none') {
        const before = problems.length;
        planBiasAlone(module, location.targets, { adapterIndex, adapter: adapter.name, moduleName, file: adapter.file }, weight, base, biases, seen, fail, ownBase);
        if (problems.length === before) landed.add(moduleName);
        continue;
      }
      const overLimit = moduleLimitProblem(module);
      if (overLimit) {
        fail('LIMIT_EXCEEDED', overLimit);
        continue;
      }
      // A dense ΔW (a full diff, a kron of full factors) is placed by rows as a low-rank one is, or
      // transposed (load-op.ts placedDenseRows); columns in another order are a low-rank update's alone.
      const denseFits = module.update.kind === 'dense' && !module.experts && location.targets.every((t) => !t.columns);
      // A map that treats rows apart (OFT rotating a fused qkv's inputs) is the same map on each
      // tensor that holds some of the module's rows, when each holds all its own rows from it.
      const splitMap = module.update.kind === 'transform' && module.update.splitRows === true && !module.experts
        && location.targets.every((t) => !t.columns && !t.transposedBlocks && !t.stacked);
      if (module.update.kind !== 'low-rank' && !denseFits && inParts && !splitMap) {
        fail('UNSUPPORTED_FORMAT', `${moduleTitle(module)} on a module ${landing} (${targets}) is not supported`);
        continue;
      }
      if (splitMap && inParts && module.deltaShape[0] === -1 && location.targets.every((t) => t.rows)) {
        // Rows the module leaves to the base (OneTrainer's and PEFT's OFT): as many as its tensors' placements take.
        const rows = Math.max(...location.targets.flatMap((t) => t.rows!.map((g) => g.src + g.count)));
        module = { ...module, deltaShape: [rows, ...module.deltaShape.slice(1)] };
      }
      // Expert parameters are placed per expert (fitExperts checks each target's shape).
      const unplaced = module.experts ? expertRowsProblem(location.targets) : unplacedRows(location.targets, module.deltaShape[0]);
      // One base tensor whose rows the base keeps in another order (a GGUF llama's attn_q / attn_k)
      // and a ΔW of another row count: another size of the model, said with both shapes as for
      // any tensor (not only "rows … land nowhere").
      const reordered = location.targets.length === 1 ? location.targets[0] : undefined;
      const reorderedShape = reordered?.rows && !reordered.copy ? base.tensors.get(reordered.baseKey)?.shape : undefined;
      if (unplaced && reordered && reorderedShape && reorderedShape.length === 2 && reorderedShape[0] !== module.deltaShape[0] && isReordering(reordered.rows!, reorderedShape[0])) {
        fail('SHAPE_MISMATCH', `ΔW ${fmt(module.deltaShape)} does not fit base ${reordered.baseKey} ${fmt(reorderedShape)}, whose rows ${location.layout} reorders: ΔW has ${module.deltaShape[0]} rows (outputs), the base ${reorderedShape[0]}`);
        misfits.push(problems[problems.length - 1]);
        continue;
      }
      if (unplaced) {
        fail('SHAPE_MISMATCH', `ΔW ${fmt(module.deltaShape)} does not fit where ${location.layout} puts it (${targets}): ${unplaced}`);
        // Fewer rows than the placement needs (a q_proj of a narrower model on a GGUF's permuted
        // attn_q): another size of the model, as a misfit is. Rows left over or landing twice say
        // the file is laid out otherwise, and stay a refusal of their own.
        if (unplaced.startsWith('the placement needs ')) misfits.push(problems[problems.length - 1]);
        continue;
      }
      // A bias change where the tool that reads the name loads none (Placement.biasUnread): said once.
      const bias = module.biasB ?? module.biasScale ?? module.biasMap;
      const biasUnread = bias && location.targets.find((t) => t.biasUnread)?.biasUnread;
      if (bias && biasUnread) {
        fail('UNSUPPORTED_FORMAT', `has ${bias.name}, a change of its bias, but ${biasUnread}`);
        continue;
      }
      // A bias change of a fused module onto split tensors the base keeps without biases: said once, naming them.
      const noBias = module.biasB && location.targets.length > 1
        ? location.targets.filter((t) => !t.bias).map((t) => biasKeyOf(t.baseKey)).filter((k) => !ownBase.has(k) && !base.tensors.has(k)) : [];
      if (module.biasB && noBias.length > 1) {
        fail('UNKNOWN_MODULE', `has ${module.biasB.name}, a change of its bias, but the base has no ${noBias.join(', ').replace(/, ([^,]*)$/, ' or $1')}`);
        continue;
      }
      for (const target of location.targets) {
        const baseKey = target.baseKey;
        const info = startOf(baseKey);
        // The base's stored tensor: how its container reshaped it (a note, runs of whole-block rows).
        const stored = base.tensors.get(baseKey);
        const quantizedAs = base.quantizedAs?.get(baseKey);
        if (quantizedAs) {
          fail('UNSUPPORTED_FORMAT', quantizedFormatRefusal(baseKey, quantizedAs));
          continue;
        }
        if (!checkFloat(info.dtype, module, fail, `base tensor ${baseKey}`)) continue;
        // A layer the model's config names (GPT-2's Conv1D, an embedding) is refused for a method
        // that cannot wrap it before its shape is compared: a Conv1D's (in, out) looks transposed.
        const named = module.experts || target.transposedBlocks ? undefined : namedLayerClass(base.modelType, baseKey);
        const wrapsRefusal = (wraps: NonNullable<AdapterModule['wraps']>, layer: LayerClass, byName: boolean) => {
          const kinds = wraps.layers.join(', ').replace(/, ([^,]*)$/, ' and $1');
          fail('UNSUPPORTED_FORMAT', `${wraps.method} wraps only ${kinds} layers; "${baseKey}" is ${LAYER_WEIGHTS[layer]} (shape ${fmt(info.shape)}${byName ? `, by its name in a ${base.modelType} model` : ''}), so ${wraps.tool ?? 'PEFT'} cannot have trained this module on it`);
        };
        if (named && module.wraps && !module.wraps.layers.includes(named)) {
          wrapsRefusal(module.wraps, named, true);
          continue;
        }
        const resetsFlag = adapter.format === 'peft' && module.kind === 'linear' && !module.address.tensor && module.wraps?.fanInFanOutByLayer === true;
        if (named === 'Conv1D' && adapter.format === 'peft' && !module.fanInFanOut && resetsFlag) {
          // PEFT turns fan_in_fan_out on for a Conv1D whatever the config says, with a warning, and so
          // applies ΔW transposed (the method's wraps.fanInFanOutByLayer). Their ΔW is laid on the
          // weight by the view alone, so the flag is set here, where the base's config.json names the layer.
          module = { ...module, fanInFanOut: true };
        } else if (named === 'Conv1D' && adapter.format === 'peft' && !module.fanInFanOut && !module.address.tensor) {
          // (A target_parameters LoRA is PEFT's ParamWrapper, built before any layer rule: it takes
          // the 2-D parameter as (out, in) whatever the layer, so B·A lies on the stored tensor as is.)
          // fan_in_fan_out applies to a Linear module's factors only: a conv's are refused as such, whatever the flag.
          const why = module.kind === 'linear'
            ? `the config's fan_in_fan_out is false: PEFT's ${moduleTitle(module)} dispatcher is not one this tool follows there — set "fan_in_fan_out": true in adapter_config.json`
            : `its factors are a ${module.kind} module's (ΔW ${fmt(module.deltaShape)}), which PEFT's ${moduleTitle(module)} of a Conv1D (a Linear's) cannot load`;
          fail('UNSUPPORTED_FORMAT', `"${baseKey}" is transformers' Conv1D, stored (in, out), in a ${base.modelType} model, and ${why}`);
          continue;
        } else if (named === undefined && base.modelType !== undefined && module.fanInFanOut && resetsFlag && info.shape.length === 2) {
          // A 2-D weight the model's config.json names neither Conv1D nor an embedding is an nn.Linear,
          // for which the same dispatchers turn fan_in_fan_out off (with a warning): ΔW is not transposed.
          module = { ...module, fanInFanOut: false };
        }
        if (adapter.format !== 'peft' && ((named === 'Conv1D' && module.update.kind === 'low-rank') || (named === 'Embedding' && adapter.format === 'diffusers' && module.algorithm === 'lora' && module.kind === 'linear'))) {
          // A single file names no method config: PEFT's rules (saved by diffusers) put lora_A/B on no
          // nn.Embedding; which way a low-rank ΔW lies on a Conv1D the file does not say.
          fail('UNSUPPORTED_FORMAT', `"${baseKey}" is ${LAYER_WEIGHTS[named]} (shape ${fmt(info.shape)}, by its name in a ${base.modelType} model): a ${ADAPTER_FORMAT_NAMES[adapter.format]} single-file ${moduleTitle(module)} module on it is not supported${named === 'Embedding' ? ' (PEFT saves an embedding\'s LoRA as lora_embedding_A/B)' : ' (the file does not say whether its ΔW is transposed for the (in, out) weight)'}`);
          continue;
        }
        let experts: ExpertSplit | undefined;
        let view: View | null;
        let widenedFrom: number | undefined;
        let widenedTo: readonly number[] | undefined;
        // PEFT's ParamWrapper on a 3-D parameter saves lora_A (r·E, ·): factors of rank r alone (read
        // as a 2-D parameter's, no experts) are those of a one-expert stack, which fitExperts checks.
        const oneExpert = !module.experts && module.address.tensor && adapter.format === 'peft' && ((info.shape.length === 3 && !target.stacked) || target.experts)
          ? { count: 1, peftVersion: typeof adapter.config.peft_version === 'string' ? adapter.config.peft_version : null } : undefined;
        if (module.experts || oneExpert) {
          if (oneExpert) module = { ...module, experts: oneExpert };
          const storedInOut = target.experts?.storedInOut ?? storesExpertsInOut(base.architectures ?? []);
          const fit = fitExperts(module, info.shape, storedInOut, target.experts);
          if (!fit.ok) {
            // A tensor decoded from others (gpt-oss's MXFP4 blocks and scales) is no tensor the file
            // names: the line says what it is, and, for factors that fit it no way, what to do.
            const decoded = stored?.decodedFrom
              ? `; the base tensor is ${stored.decodedFrom}${fit.ambiguous ? '' : ': the adapter was trained on another model or size; merge it into the one it was trained on'}`
              : '';
            fail(fit.ambiguous ? 'AMBIGUOUS_MODULE' : 'SHAPE_MISMATCH', `on ${baseKey}: ${fit.message}${decoded}`);
            // Tensors of one expert each share one parameter shape (per-expert-tensors.ts checks
            // them alike), so what misfits the first misfits all: one line for the module.
            if (target.experts?.expert !== undefined) break;
            continue;
          }
          experts = fit.split;
          if (fit.note) warnings.push(`${adapter.name}: module "${moduleName}": on ${baseKey}: ${fit.note}`);
          const rows = (fit.split.only === undefined ? fit.split.count : 1) * fit.split.rowsPerExpert;
          const cols = info.shape[info.shape.length - 1];
          view = { rows, cols, layout: 'out-in', outFeatures: rows, inFeatures: cols };
        } else if (target.transposedBlocks) {
          view = transposedView(module, target.transposedBlocks, baseKey, info.shape, fail);
        } else if (module.update.kind === 'transform' && module.update.squareKernel && info.shape.length === 4 && info.shape[2] !== info.shape[3]) {
          // Before the sizes are compared: an update sized in·kh², as PEFT sizes it, fits no kh ≠ kw weight either.
          fail('UNSUPPORTED_FORMAT', `${moduleTitle(module)} sizes its update for a conv's in·kh² inputs (kernel_size[0] twice), as PEFT builds and merges it; "${baseKey}" has a ${info.shape[2]}×${info.shape[3]} kernel, on which PEFT cannot merge it`);
          continue;
        } else {
          // One expert's matrix on its rows of a stack of experts (E, out, in): the stack seen as (E·out, in).
          const seen = target.stacked ? stackedRowsShape(info.shape) : info.shape;
          if (!seen) {
            fail('SHAPE_MISMATCH', `ΔW ${fmt(module.deltaShape)} does not fit base ${baseKey} ${fmt(info.shape)}: ${location.layout} places it on rows of a 3-D stack of experts, and the base tensor is not one`);
            continue;
          }
          const widened = widenedShape(module, adapter.format, target, seen, base, baseKey, updates.get(baseKey));
          if (typeof widened === 'string') {
            fail(widened.startsWith('base ') ? 'SHAPE_MISMATCH' : 'UNSUPPORTED_FORMAT', widened);
            continue;
          }
          widenedFrom = widened.from;
          if (widened.from !== undefined) widenedTo = widened.shape;
          const misfit: Fail = (code, message) => {
            fail(code, message);
            misfits.push(problems[problems.length - 1]);
          };
          // A shape the base's own metadata gives the tensor (a broken orig_shape) blames the base.
          const shown = target.stacked ? `${fmt(info.shape)} seen as ${seen[0]} × ${seen[1]}` : undefined;
          view = viewOf(module, target, widened.shape, stored?.shapeNote ? fail : misfit, stored?.shapeNote, shown);
        }
        if (!view) continue;
        if (splitMap && inParts) {
          const why = splitMapProblem(module, view, baseKey);
          if (why) {
            fail('UNSUPPORTED_FORMAT', `${moduleTitle(module)} on a module ${landing} (${targets}): ${why}`);
            // One line for the module: the merge stops at it.
            break;
          }
        }
        // One tensor is merged in one view: a module seeing it in other rows (an expert's Linear on
        // half of a fused slab, strided rows) cannot join the terms of one seeing it otherwise.
        const earlierView = updates.get(baseKey);
        if (earlierView && earlierView.terms.length > 0 && (earlierView.rows !== view.rows || earlierView.cols !== view.cols)) {
          const by = earlierView.terms[0];
          fail('UNSUPPORTED_FORMAT', `lands on ${baseKey} ${fmt(info.shape)} seen as ${view.rows} rows of ${view.cols}, where ${by.adapter} (module "${by.moduleName}") updates it seen as ${earlierView.rows} rows of ${earlierView.cols}: merge the two one after the other`);
          continue;
        }
        const layer = baseLayerClass(module, target.stacked ? [view.rows, view.cols] : info.shape, view);
        if (module.wraps && !module.wraps.layers.includes(layer)) {
          wrapsRefusal(module.wraps, layer, false);
          continue;
        }
        if (module.update.kind !== 'low-rank' && !(module.update.kind === 'transform' && module.update.anyLayout) && view.layout !== 'out-in') {
          fail('UNSUPPORTED_FORMAT', `${moduleTitle(module)} on a weight stored (in, out) is not supported`);
          continue;
        }
        const blocks = target.transposedBlocks;
        const segments = view.placement?.segments ?? (blocks?.within ? allTransposedBlockSegments(blocks, module.deltaShape[1]) : undefined);
        const rows = segments ? segments.map((g): RowSpan => [g.dst, g.dst + g.count]) : [[0, view.outFeatures] as RowSpan];
        const onTensor = seen.get(baseKey) ?? [];
        const clash = onTensor.find((other) => spansOverlap(other.rows, rows));
        if (clash) {
          fail('AMBIGUOUS_MODULE', `targets ${describe(target)}, as module "${clash.module}" of the same adapter does`);
          continue;
        }
        seen.set(baseKey, [...onTensor, { module: moduleName, rows }]);

        // A weight stored as W / s (scaled fp8, llama.cpp's `.scale`): merging in the model's
        // values and storing by the same scale is adding ΔW / s to the stored values.
        const valueScale = scaledWeight(base, baseKey);
        let divisor = 1;
        if (valueScale && module.dora) {
          fail('UNSUPPORTED_FORMAT', `DoRA on ${valueScale.label} is not supported`);
          continue;
        }
        // Maps of W (IA3, OFT, GLoRA's W·P·Q) act on the stored values themselves: dividing their
        // scale by the weight's would be wrong, and nothing here splits them yet.
        if (valueScale && module.update.kind === 'transform') {
          fail('UNSUPPORTED_FORMAT', `${moduleTitle(module)} on ${valueScale.label} is not supported`);
          continue;
        }
        if (valueScale) {
          const on = storedScaleOn(valueScale, rows, view, experts);
          if ('why' in on) {
            fail('UNSUPPORTED_FORMAT', on.why);
            continue;
          }
          divisor = on.divisor;
          if (on.perExpert) experts = { ...experts!, scales: on.perExpert };
        }
        const own = ownBase.get(baseKey);
        let update = updates.get(baseKey);
        if (own && update && update.source !== own) {
          fail('PLAN_INVALID', `${adapter.name} saved ${baseKey} (${own.tensor.name}), which ${update.terms[0].adapter} already updates; merge ${adapter.name} first`);
          continue;
        }
        // LyCORIS's DoRA applies its weight to the factor m / ‖V‖, not to ΔW (planDora); some
        // modules take it twice (AdapterModule.weightSquared).
        const termWeight = module.dora?.weighting === 'factor' ? 1 : module.weightSquared ? weight * weight : weight;
        // Every α/r and weight is finite, their product need not be (--weight 1e308 on α/r 2).
        if (!Number.isFinite(termWeight * module.scale)) {
          fail('NON_FINITE', `its scale ${module.scale} times the weight ${weight}${module.weightSquared ? ` squared (as ${module.weightSquared.tool} applies it)` : ''} is past float64; use a smaller --weight`);
          continue;
        }
        const term: PlannedTerm = {
          adapterIndex, adapter: adapter.name, moduleName, module, file: adapter.file, scale: termWeight * module.scale / divisor, layout: location.layout,
        };
        if (view.placement) term.placement = view.placement;
        if (experts) term.experts = experts;
        if (target.transposedBlocks) term.transposedBlocks = target.transposedBlocks;
        if (target.columns) term.columns = target.columns;
        // Rows merged together: the stored tensor's runs of whole blocks, and those a transform mixes.
        let rowBlock = update?.rowBlock ?? stored?.rowBlock ?? 1;
        if (module.update.kind === 'transform' && module.update.rowBlock) {
          rowBlock = lcm(rowBlock, module.update.rowBlock);
          if (rowBlock * view.cols * 8 > MAX_MIXED_ROWS_BYTES) {
            fail('LIMIT_EXCEEDED', `mixes runs of ${rowBlock} rows of ${baseKey} ${fmt(info.shape)}, which are merged together in ${Math.ceil(rowBlock * view.cols * 8 / 2 ** 20)} MiB, above the limit MAX_MIXED_ROWS_BYTES (${MAX_MIXED_ROWS_BYTES / 2 ** 20} MiB)`);
            continue;
          }
        }
        if (!update) {
          const { placement: _, ...tensorView } = view;
          const shape = widenedTo === undefined ? info.shape.slice() : widenedTo.slice();
          update = { baseKey, dtype: info.dtype as FloatDType, shape, ...tensorView, terms: [], rowBlock: stored?.rowBlock ?? 1 };
          if (own) update.source = own;
          if (widenedFrom !== undefined) update.widenedFrom = widenedFrom;
          updates.set(baseKey, update);
        }
        // blissful-tuner's merge_to returns at multiplier 0: no ΔW, no magnitude.
        if (module.dora && !(weight === 0 && module.dora.noneAtWeightZero)) {
          const dora = planDora(module, adapterIndex, adapter.file, view, info.shape, fail);
          if (!dora) continue;
          term.dora = dora;
          if (weight !== 1 && module.dora.weighting === 'factor') {
            // LyCORIS skips the interpolation at weight 1, so its factor is then m / ‖V‖ exactly.
            dora.strength = weight;
            warnings.push(`${adapter.name}: DoRA module "${moduleName}" with weight ${weight}: as LyCORIS merges it, ΔW is added whole and the weight moves the factor m / ‖W + ΔW‖ toward 1`);
          } else if (weight !== 1) {
            warnings.push(`${adapter.name}: DoRA module "${moduleName}" with weight ${weight}: the weight scales ΔW, the magnitude is applied as trained`);
          }
        }
        update.rowBlock = rowBlock;
        update.terms.push(term);
        if (module.weightSquared && weight !== 1) squared.set(moduleName, module);
        landed.add(moduleName);
        if (module.biasB) planBias(module, term, weight, baseKey, base, biases, fail, ownBase, 'add', target.bias);
        if (module.biasScale) planBias(module, term, weight, baseKey, base, biases, fail, ownBase, 'multiply', target.bias);
        if (module.biasMap) planBias(module, term, weight, baseKey, base, biases, fail, ownBase, 'map', target.bias);
        if (module.gloraBias) planBias(module, term, weight, baseKey, base, biases, fail, ownBase, 'glora', target.bias);
      }
    }

    if (squared.size > 0) {
      // Said once per adapter: the weight does not scale these modules' change as it scales the rest.
      const names = [...squared.keys()], one = names.length === 1;
      const { tool, rule } = squared.values().next().value!.weightSquared!;
      const titles = [...new Set([...squared.values()].map(moduleTitle))].join('/');
      warnings.push(`${adapter.name}: weight ${weight} merges ${names.length} ${titles} module${one ? '' : 's'} (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''}) at ${+(weight * weight).toPrecision(6)}, the weight squared, as ${tool}, whose key names the file uses, applies it: twice (${rule}), so a negative weight acts as its positive`);
    }
    const mine = leftOut.filter((m) => m.adapterIndex === adapterIndex);
    for (const reason of new Set(mine.map((m) => m.reason))) {
      const names = mine.filter((m) => m.reason === reason).map((m) => m.module);
      warnings.push(`${adapter.name}: ${names.length} module${names.length === 1 ? '' : 's'} left out, not merged: ${names.length === 1 ? 'it names' : 'they name'} ${reason.replace(/^names /, '')} (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''})`);
    }
    if (mine.length > 0 && mine.length === adapter.modules.length && adapter.replacements.length === 0 && !adapter.tokenRows?.length) {
      report('', 'PLAN_INVALID', `none of its ${mine.length} modules lands in this base (${mine[0].reason.replace(/^names /, 'they name ')})`);
    }
    // What the adapter's own files say it was trained on: the base to pick, where they say it.
    const said = trainedFor(adapter);
    const namedBase = said ? `; its files name ${said}` : '';
    // An adapter for another kind of model (an SDXL LoRA on a language model) matches nowhere:
    // one line naming both kinds instead of one per module. Modules of a part the base does not
    // hold (left out above) do not count.
    const considered = adapter.modules.length - mine.length;
    // A llama.cpp LoRA names the tensors of a GGUF (blk.0.attn_q.weight), which a model in other
    // files does not hold under those names (and llama.cpp's converter reorders some rows): one
    // line says so, rather than "no matching tensor" for each module.
    const ggufNamesElsewhere = adapter.format === 'gguf' && !base.metadata && unmatched.length > 0 && unmatched.length === considered;
    if (ggufNamesElsewhere) {
      removeProblems(problems, new Set(unmatched));
      report('', 'UNKNOWN_MODULE', `a llama.cpp LoRA names the tensors of a GGUF model (such as "${unmatched[0].module}"), and the base is not one: merge it into the GGUF model it was made for, or merge the PEFT adapter it was converted from into this model`);
    }
    const kinds = !ggufNamesElsewhere && unmatched.length > 0 && unmatched.length === considered
      ? familyMismatch(adapter.modules.map((m) => m.key), base.tensors.keys()) : undefined;
    // A LoRA given as the base (the two inputs swapped, or the adapter twice): its factor tensors
    // are all the base holds, so nothing lands; one line says what the base is.
    const factorExample = !kinds && !ggufNamesElsewhere && unmatched.length > 0 && unmatched.length === considered ? adapterFactorExample(base.tensors.keys()) : undefined;
    if (factorExample !== undefined) {
      removeProblems(problems, new Set(unmatched));
      report('', 'UNKNOWN_MODULE', `the base is a LoRA adapter, not a model (its tensors are factors such as "${factorExample}"): give the model this adapter was trained for as the base${namedBase}`);
    }
    if (kinds) {
      removeProblems(problems, new Set(unmatched));
      const none = unmatched.length === 1 ? 'its one module has no tensor there' : `none of its ${unmatched.length} modules has a tensor there`;
      report('', 'UNKNOWN_MODULE', `this adapter is for a ${kinds.adapter}, but the base is a ${kinds.base}: ${none} (such as "${unmatched[0].module}"); pick the base it was trained on${namedBase}`);
    }
    // Trained on another model of the kind, or another size of this one (an SD 1.5 LoRA on SDXL, a
    // 7B model's LoRA on a 13B one): no module fits, most for their shapes. One line says so.
    const misfitModules = new Set(misfits.map((p) => p.module)).size;
    const explained = new Set([...unmatched, ...pastLast, ...misfits]);
    const onlyMisfits = () => misfitModules > 0 && problems.slice(ownProblemsFrom).every((p) => explained.has(p));
    const missing = new Set([...unmatched, ...pastLast].map((p) => p.module)).size;
    const others = misfitModules === 1 ? 'one has another shape than the tensor it names' : `${misfitModules} have other shapes than the tensors they name`;
    const nameNone = missing === 0 ? '' : `, ${missing === 1 ? 'one names' : `${missing} name`} no tensor in it`;
    const trainedOn = `trained on another model or another size of this one (an SD 1.5 LoRA on SDXL, a 7B model's LoRA on a 13B one): pick the base it was trained on${namedBase}`;
    if (landed.size === 0 && considered > 1 && onlyMisfits()) {
      removeProblems(problems, explained);
      const example = misfits[0].message.slice(adapter.name.length + 2);
      report('', 'SHAPE_MISMATCH', `none of its ${considered} modules fits this base: ${others} (such as ${example})${nameNone}; it was ${trainedOn}`);
    } else if (landed.size > 0 && misfitModules + missing >= Math.max(2, landed.size) && onlyMisfits()) {
      // Some modules fit by chance (an SD 1.5 LoRA on SDXL: the 640-wide self-attention of one
      // block), as many or more do not (two at least: one alone says little): one line before the
      // list says what it means.
      report('', 'SHAPE_MISMATCH', `only ${landed.size === 1 ? 'one' : landed.size} of its ${considered} modules ${landed.size === 1 ? 'fits' : 'fit'} this base: ${others}${nameNone}; it was probably ${trainedOn}`);
      problems.splice(ownProblemsFrom, 0, problems.pop()!);
    }
  }

  // A saved base weight that terms or rows start from is no longer a replacement of its own.
  for (const started of [...updates.values(), ...biases.values(), ...rowSets.values()]) {
    if (started.source && replacements.get(started.baseKey) === started.source) replacements.delete(started.baseKey);
  }
  checkSharedTensors(updates, biases, replacements, rowSets, problems);
  sizeDrawnProjections(updates, problems);
  checkKernelRows(updates, problems);
  warnings.push(...suspiciousRequestWarnings(adapters));
  const order = [...base.tensors.keys()];
  const rank = new Map(order.map((k, i) => [k, i]));
  const byBaseOrder = <T extends { baseKey: string }>(m: Map<string, T>) => [...m.values()].sort((x, y) => rank.get(x.baseKey)! - rank.get(y.baseKey)!);
  const plan: MergePlan = {
    adapters: adapters.map(({ adapter, weight }) => ({
      name: adapter.name, format: adapter.format, weight, modules: adapter.modules.length, replacements: adapter.replacements.length,
    })),
    leftOut,
    updates: byBaseOrder(updates),
    biasUpdates: byBaseOrder(biases),
    replacements: byBaseOrder(replacements),
    rowSets: byBaseOrder(rowSets),
    problems,
    warnings,
    notes: [],
    summary: { tensorsTouched: 0, terms: 0, bytesToRead: 0, elementsToWrite: 0, flops: 0 },
  };
  plan.summary = summarise(plan, base);
  return plan;
}

/** Takes `gone` out of `problems` in place (no spread: a hostile plan may hold 10⁵ problems). */
function removeProblems(problems: PlanProblem[], gone: ReadonlySet<PlanProblem>): void {
  let kept = 0;
  for (const p of problems) if (!gone.has(p)) problems[kept++] = p;
  problems.length = kept;
}

/**
 * Adapter `adapterIndex`'s modules as the plan merges them (a module's scale can depend on the base:
 * diffusers-flux-alphas.ts), each in place of the one read from the file where the plan has a term of it.
 */
export function modulesAsPlanned(plan: MergePlan, adapterIndex: number, modules: readonly AdapterModule[]): AdapterModule[] {
  const planned = new Map(plan.updates.flatMap((u) => u.terms.filter((t) => t.adapterIndex === adapterIndex).map((t) => [t.moduleName, t.module] as const)));
  return planned.size === 0 ? modules.slice() : modules.map((m) => planned.get(m.name) ?? m);
}

/** Throws one MergeError listing every problem of the plan (first few in full, then a count). */
export function assertPlanValid(plan: MergePlan): void {
  if (plan.problems.length === 0) return;
  const codes = new Set(plan.problems.map((p) => p.code));
  const code = codes.size === 1 ? plan.problems[0].code : 'PLAN_INVALID';
  throw new MergeError(code, formatProblemList('the merge plan', plan.problems.map((p) => p.message)), { lines: true });
}

/** The scale a weight is stored divided by, unless it has none (or only 1s). */
function scaledWeight(base: BaseTensorIndex, key: string): ValueScale | undefined {
  const scale = base.valueScales?.get(key);
  return scale && scale.values.some((v) => v !== 1) ? scale : undefined;
}

/**
 * What a term landing on `rows` of a weight stored divided by `scale` has its scale divided by: the
 * one scale, or with one per expert that of the expert it lands on; a fused expert term (one term
 * per expert) takes each expert's own. Or why it cannot be divided.
 */
function storedScaleOn(
  scale: ValueScale, rows: readonly RowSpan[], view: View, experts: ExpertSplit | undefined,
): { divisor: number; perExpert?: readonly number[] } | { why: string } {
  const { values, label } = scale;
  if (values.length === 1) return { divisor: values[0] };
  const count = values.length;
  if (experts) {
    if (experts.count !== count) return { why: `the parameter's ${experts.count} experts do not match the ${count} scales of ${label}` };
    return { divisor: 1, perExpert: values };
  }
  if (view.layout !== 'out-in' || view.rows % count !== 0) return { why: `${label} has ${count} scales, which do not split its ${view.rows} rows into experts` };
  const perExpert = view.rows / count;
  const touched = new Set<number>();
  for (const [from, to] of rows) for (let e = Math.floor(from / perExpert); e * perExpert < to; e++) touched.add(e);
  const landed = [...touched].sort((x, y) => x - y);
  const divisor = values[landed[0]];
  if (landed.some((e) => values[e] !== divisor)) {
    return { why: `lands on experts ${landed[0]}–${landed[landed.length - 1]} of ${label}, whose scales differ (${landed.slice(0, 4).map((e) => values[e]).join(', ')}${landed.length > 4 ? ', …' : ''})` };
  }
  return { divisor };
}

/**
 * `base.key`, `rows 0–1279 of base.key`, or `base.key, its rows reordered` (`tensorRows`: the base
 * tensor's row count), for messages; a long list of rows is cut short.
 */
function describeTarget(target: Placement, tensorRows: number | undefined): string {
  if (target.transposedBlocks) {
    const n = target.transposedBlocks.starts.length;
    const within = target.transposedBlocks.within;
    if (within) return `${target.baseKey}, ΔW transposed on its rows from ${within.first}${within.stride > 1 ? ` every ${within.stride}` : ''} as ${within.baseRows} × ${target.transposedBlocks.rows}`;
    return n === 1 ? `${target.baseKey}, ΔW transposed` : `${target.baseKey}, ΔW's rows in ${n} blocks, each transposed`;
  }
  if (target.columns && !target.rows) return `${target.baseKey}, its columns reordered`;
  if (!target.rows) return target.baseKey;
  if (isReordering(target.rows, tensorRows)) return `${target.baseKey}, its rows reordered`;
  const spans = target.rows.map((g) => `${g.dst}–${g.dst + g.count - 1}`);
  return `rows ${spans.length > 4 ? `${spans.slice(0, 3).join(', ')}, … (${spans.length} runs)` : spans.join(', ')} of ${target.baseKey}`;
}

/** The rows a placement's segments index: the tensor's first dimension, or a stack of experts' E·out (Placement.stacked). */
function placedRows(target: Placement, shape: readonly number[] | undefined): number | undefined {
  return target.stacked ? shape && stackedRowsShape(shape)?.[0] : shape?.[0];
}

/** A stack of experts (E, out, in) seen as its E·out rows, (E·out, in); undefined for any other shape. */
function stackedRowsShape(shape: readonly number[]): readonly [number, number] | undefined {
  return shape.length === 3 ? [shape[0] * shape[1], shape[2]] : undefined;
}

/** Do the segments move every one of the tensor's rows, and only those, to another row? */
function isReordering(rows: readonly RowSegment[], tensorRows: number | undefined): boolean {
  const covered = (pick: (g: RowSegment) => number) => {
    const sorted = [...rows].sort((x, y) => pick(x) - pick(y));
    let next = 0;
    for (const g of sorted) {
      if (pick(g) !== next) return false;
      next += g.count;
    }
    return next === tensorRows;
  };
  return tensorRows !== undefined && rows.some((g) => g.src !== g.dst) && covered((g) => g.src) && covered((g) => g.dst);
}

function describeMiss(r: Extract<KeyResolution, { found: false }>): string {
  if (!r.ambiguous) return r.why ?? 'no matching tensor in the base model';
  const shown = r.candidates.slice(0, 4).join(', ');
  return `matches ${r.candidates.length} base tensors (${shown}${r.candidates.length > 4 ? ', ...' : ''})`;
}

type Fail = (code: MergeErrorCode, message: string) => void;

function checkFloat(dtype: DType, module: AdapterModule, fail: Fail, what: string): boolean {
  // Factors may be F64 (converted to f32 when loaded); weights must be a dtype the engine writes.
  if (isFloatDType(dtype) || (dtype === 'F64' && !what.startsWith('base'))) return true;
  fail('UNSUPPORTED_FORMAT', `${what} is ${dtype}; only F32, F16, BF16 and fp8 ${what.startsWith('base') ? 'weights' : 'factors'} can be merged (${module.kind} module)`);
  return false;
}

interface View {
  rows: number;
  cols: number;
  layout: WeightLayout;
  outFeatures: number;
  inFeatures: number;
  placement?: RowPlacement;
}

/**
 * The shape a module's terms see the base tensor in: its own, or, for a module that widens the base
 * (ComfyUI's reshape_weight, diffusers' expanded x_embedder), the base's rows with `widenBaseTo`
 * columns, the new ones zero, and `from` the base's own count. Why not, as one line, where the
 * widening cannot be done: a base already wider, part of a tensor, a tensor stored in blocks or
 * by a scale, a GGUF tensor ComfyUI-GGUF would not widen (algorithms/reshape-weight.ts), another
 * adapter's terms on the tensor in the other width, or a reshape_weight the model could not load.
 */
function widenedShape(
  module: AdapterModule, format: AdapterFormat, target: Placement, shape: readonly number[], base: BaseTensorIndex, baseKey: string, earlier: TensorUpdate | undefined,
): { shape: readonly number[]; from?: number } | string {
  const earlierWidth = earlier ? `; ${earlier.terms[0].adapter} (module "${earlier.terms[0].moduleName}") updates it at ${earlier.cols} columns, merge the two one after the other` : '';
  const to = module.widenBaseTo;
  if (to === undefined) {
    return earlier?.widenedFrom !== undefined ? `ΔW ${fmt(module.deltaShape)} has the base's width, but ${baseKey} is widened to ${earlier.cols} columns in this merge${earlierWidth}` : { shape };
  }
  // ComfyUI's reshape_weight: the shape it pads to, checked whole (another rank, a smaller size, …).
  const reshaped = module.reshapeTo;
  const padding = reshapeProblem(module, baseKey, shape, (key) => base.tensors.has(key));
  if (padding) return padding;
  if (target.rows || target.columns || target.transposedBlocks || (reshaped ? shape.length < 2 : shape.length !== 2)) {
    return `widens ${baseKey} ${fmt(shape)} to ${to} input columns, which is supported on a whole ${reshaped ? '' : '2-D '}weight only`;
  }
  const cols = product(shape.slice(1));
  if (cols > to) return `base ${baseKey} ${fmt(shape)} is already wider than the ${to} input columns the adapter widens it to`;
  if (cols === to) return { shape };
  const stored = base.tensors.get(baseKey);
  const scale = scaledWeight(base, baseKey);
  // A GGUF base is widened only where ComfyUI-GGUF widens it (ggufWideningProblem); the tensor is
  // then F32 or F16, whose zero bytes are zeros and whose tensor info the writer takes at the new shape.
  const gguf = base.metadata ? ggufWideningProblem(module, format, baseKey, shape, cols, stored?.storedType) : undefined;
  if (gguf) return gguf;
  const how = base.metadata ? undefined : scale ? scale.label : (stored?.rowBlock ?? 1) > 1 || stored?.shapeNote ? 'a tensor stored in blocks' : undefined;
  if (how) return `widening ${baseKey} ${fmt(shape)} to ${to} input columns is not supported on ${how}; merge into a safetensors base in F32, F16, BF16 or plain fp8${reshaped ? ', or a GGUF one storing it in F32 or F16' : ''}`;
  if (earlier && earlier.cols !== to) {
    return reshaped
      ? `reshape_weight pads ${baseKey} ${fmt(shape)} to ${fmt(reshaped)}, but ${earlier.terms[0].adapter} (module "${earlier.terms[0].moduleName}") makes it ${fmt(earlier.shape)} in this merge; merge the two one after the other`
      : `widens ${baseKey} ${fmt(shape)} to ${to} input columns${earlierWidth}`;
  }
  return { shape: reshaped ? reshaped.slice() : [shape[0], to], from: cols };
}

/**
 * How ΔW lines up with the stored base tensor, checking every dimension: ΔW (out, in, k...)
 * against (out, in, k...) for linear/conv, (in, out) for fan_in_fan_out and embeddings; with a row
 * placement, ΔW's rows against the rows it names. `shown`: the base's shape as messages give it
 * (a stack of experts seen as rows: its stored shape and the view).
 */
function viewOf(module: AdapterModule, target: Placement, shape: readonly number[], fail: Fail, shapeNote?: string, shown = fmt(shape)): View | null {
  const baseKey = target.baseKey;
  // Stored (in, out) for embeddings and fan_in_fan_out: ΔW's open dims come from the other side.
  const transposed = module.kind === 'embedding' || module.fanInFanOut;
  const delta = withBaseDims(module.deltaShape, transposed && shape.length === 2 ? [shape[1], shape[0]] : shape);
  const out = delta[0];
  const deltaIn = delta.slice(1);
  const inFeatures = product(deltaIn);
  const mismatch = (why: string) => {
    fail('SHAPE_MISMATCH', `ΔW ${fmt(delta)} does not fit base ${baseKey} ${shown}: ${why}${shapeNote ? `; ${shapeNote}` : ''}`);
    return null;
  };
  if (module.kind === 'embedding' || module.fanInFanOut) {
    // Stored (in, out): embeddings are (vocab, dim), GPT-2 Conv1D is (in, out).
    if (target.rows) return mismatch('rows of a weight stored (in, out) cannot be placed');
    if (shape.length !== 2 || deltaIn.length !== 1) return mismatch(`expected a 2-D (in, out) weight${module.fanInFanOut ? ' (fan_in_fan_out)' : ''}`);
    if (shape[0] !== inFeatures || shape[1] !== out) return mismatch(`expected (${inFeatures}, ${out})`);
    return { rows: shape[0], cols: shape[1], layout: 'in-out', outFeatures: out, inFeatures };
  }
  if (shape.length === 1 && delta.length === 1 && !target.rows) {
    // A vector (a norm layer's weight): one row per element.
    if (shape[0] !== out) return mismatch(`ΔW has ${out} values, the base ${shape[0]}`);
    return { rows: out, cols: 1, layout: 'out-in', outFeatures: out, inFeatures: 1 };
  }
  if (shape.length === 1 && out === 1 && deltaIn.length === 1 && !target.rows) {
    // A Linear with one output that the base stores as a vector (llama.cpp's ffn_gate_inp_shexp, {n_embd}): one row.
    if (shape[0] !== inFeatures) return mismatch(`ΔW has ${inFeatures} inputs, the base ${shape[0]}`);
    return { rows: 1, cols: inFeatures, layout: 'out-in', outFeatures: 1, inFeatures };
  }
  if (shape.length < 2) return mismatch('the base is not a matrix');
  // Factors of a dimension count no layer of the base's kind has ((r, in, 1) on a Linear) are not a
  // layer's weights: PEFT and kohya load them into a layer of the base's kind and fail. Taken: 2-D
  // (Linear) factors on any base whose kernel they fit, factors with the base's own dims, and a 1×1
  // Conv2d's (r, in, 1, 1) on a Linear, which ComfyUI and A1111 apply as the Linear they equal.
  const conv1x1OnLinear = shape.length === 2 && delta.length === 4 && delta[2] === 1 && delta[3] === 1;
  // PEFT's LoHa and LoKr give a Conv1d's Tucker cores a kernel (k, 1) and reshape ΔW to the layer's (out, in, k).
  const peftConv1dTucker = shape.length === 3 && delta.length === 4 && delta[3] === 1 && module.options?.peft_conv1d_tucker === true;
  if (delta.length !== 2 && delta.length !== shape.length && !conv1x1OnLinear && !peftConv1dTucker) {
    return mismatch(`${delta.length}-D factors fit no layer with a ${shape.length}-D weight (expected ${shape.length === 2 ? '2-D factors, or a 1×1 conv\'s 4-D ones' : `2-D or ${shape.length}-D factors`})`);
  }
  let placement: RowPlacement | undefined;
  if (target.rows) {
    const why = placementProblem(target.rows, out, shape[0]);
    if (why) return mismatch(why);
    placement = { deltaRows: out, segments: target.rows };
  } else if (shape[0] !== out) {
    return mismatch(`ΔW has ${out} rows (outputs), the base ${shape[0]}`);
  }
  const view = (cols: number): View => {
    const v: View = { rows: shape[0], cols, layout: 'out-in', outFeatures: shape[0], inFeatures };
    if (placement) v.placement = placement;
    return v;
  };
  // Trailing 1s do not matter: a linear LoRA fits a 1×1 conv and the other way round.
  const baseIn = trimOnes(shape.slice(1));
  const loraIn = trimOnes(deltaIn);
  // LyCORIS may store a conv factor flattened: A (r, in·kh·kw) against a (out, in, kh, kw) base.
  if (loraIn.length === 1 && baseIn.length > 1 && loraIn[0] === product(baseIn)) return view(loraIn[0]);
  if (baseIn[0] !== loraIn[0]) return mismatch(`ΔW has ${deltaIn[0]} inputs, the base ${shape[1]}`);
  if (!sameShape(baseIn, loraIn)) return mismatch(`kernel ${fmt(deltaIn.slice(1))} differs from the base kernel ${fmt(shape.slice(2))}`);
  return view(product(shape.slice(1)));
}

/**
 * The kind of layer a base weight belongs to, as far as its stored shape tells: a conv's kernel
 * dims give Conv1d/2d/3d; a 2-D weight stored (in, out) is GPT-2's Conv1D, or an embedding for an
 * embedding module; any other 2-D (or 1-D) weight is taken for a Linear (an embedding adapted as
 * a Linear is told only by its name, where the base's config.json has a model_type: namedLayerClass).
 */
function baseLayerClass(module: AdapterModule, shape: readonly number[], view: View): LayerClass {
  if (shape.length >= 3) return shape.length === 3 ? 'Conv1d' : shape.length === 4 ? 'Conv2d' : 'Conv3d';
  if (view.layout === 'in-out') return module.kind === 'embedding' ? 'Embedding' : 'Conv1D';
  return 'Linear';
}

const LAYER_WEIGHTS: Readonly<Record<LayerClass, string>> = {
  Linear: 'a Linear weight', Conv1D: 'a Conv1D weight stored (in, out)', Conv1d: 'a Conv1d weight', Conv2d: 'a Conv2d weight', Conv3d: 'a Conv3d weight', Embedding: 'an Embedding weight',
};

/**
 * How ΔW lines up with a tensor that holds its rows in blocks, each transposed: ΔW (out, in), each
 * block `rows` of its rows, against a base of blocks·in rows and `rows` columns.
 */
function transposedView(module: AdapterModule, blocks: TransposedBlocks, baseKey: string, shape: readonly number[], fail: Fail): View | null {
  const [out, inFeatures] = module.deltaShape;
  const mismatch = (why: string) => {
    fail('SHAPE_MISMATCH', `ΔW ${fmt(module.deltaShape)} does not fit base ${baseKey} ${fmt(shape)}: ${why}`);
    return null;
  };
  if (module.kind !== 'linear' || module.fanInFanOut || module.deltaShape.length !== 2 || inFeatures < 1) {
    return mismatch('only a linear module\'s ΔW can land on blocks of its rows stored transposed');
  }
  const within = blocks.within;
  if (within) {
    // Blocks inside a larger tensor (one expert's slab): ΔW's inputs are the slab's rows.
    if (inFeatures !== within.inputs) return mismatch(`ΔW has ${inFeatures} inputs, the rows of the slab it lands on transposed ${within.inputs}`);
    const last = within.first + (blocks.starts.length * inFeatures - 1) * within.stride;
    if (product(shape) !== within.baseRows * blocks.rows || !(within.first >= 0 && within.stride >= 1 && last < within.baseRows)) {
      return mismatch(`it is not ${within.baseRows} rows of ${blocks.rows} values holding ΔW's ${blocks.starts.length * blocks.rows} rows transposed from row ${within.first}`);
    }
  } else if (shape.length !== 2 || shape[0] !== blocks.starts.length * inFeatures || shape[1] !== blocks.rows) {
    return mismatch(`it holds ${blocks.starts.length} blocks of ${blocks.rows} ΔW rows, each transposed, as (${blocks.starts.length * inFeatures}, ${blocks.rows})`);
  }
  const beyond = blocks.starts.find((start) => !(start >= 0 && start + blocks.rows <= out));
  if (beyond !== undefined) return mismatch(`ΔW has ${out} rows, a block reads rows ${beyond}–${beyond + blocks.rows - 1}`);
  const rows = within ? within.baseRows : shape[0];
  return { rows, cols: blocks.rows, layout: 'out-in', outFeatures: rows, inFeatures: blocks.rows };
}

/**
 * ΔW's shape with the dims its algorithm leaves open (-1: IA3 and OFT know one side only) taken
 * from the base: a -1 at a position takes the base's dim there; a last -1 takes all the rest.
 */
function withBaseDims(delta: readonly number[], shape: readonly number[]): number[] {
  if (!delta.includes(-1)) return delta.slice();
  const out: number[] = [];
  delta.forEach((d, i) => {
    if (d !== -1) out.push(d);
    else if (i === delta.length - 1) out.push(...shape.slice(i));
    else out.push(shape[i] ?? 1);
  });
  return out;
}

/**
 * Why a map that treats rows apart cannot land on `baseKey` through the view's placement, or null:
 * it maps every row of the tensor, so the module's rows must be all of them; a rotation of runs of
 * rowBlock output rows must find whole runs on it.
 */
function splitMapProblem(module: AdapterModule, view: View, baseKey: string): string | null {
  const segments = view.placement?.segments ?? [{ src: 0, dst: 0, count: view.outFeatures }];
  const covered = segments.map((g) => [g.dst, g.dst + g.count]).sort((x, y) => x[0] - y[0]);
  let next = 0;
  for (const [from, to] of covered) {
    if (from !== next) break;
    next = to;
  }
  if (next !== view.rows) return `it maps every row of ${baseKey}, which takes only ${segments.reduce((n, g) => n + g.count, 0)} of its ${view.rows} rows from this module`;
  const run = module.update.kind === 'transform' ? module.update.rowBlock ?? 1 : 1;
  const cut = segments.find((g) => g.src % run !== 0 || g.dst % run !== 0 || g.count % run !== 0);
  if (cut) return `it rotates runs of ${run} output rows, and ${baseKey} takes rows ${cut.src}–${cut.src + cut.count - 1} of it, which cut a run`;
  return null;
}

/**
 * A module placed by rows must have each of its ΔW rows land exactly once across its targets (a
 * target that is a copy of the others aside): a LoRA whose up factor has more or fewer rows than
 * the slices it names is the wrong shape, not a partial update. Returns why not, or null.
 */
function unplacedRows(targets: readonly Placement[], deltaRows: number): string | null {
  if (targets.length === 1 && !targets[0].rows && !targets[0].transposedBlocks) return null;
  // A copy of what the other targets hold gets ΔW again.
  const spans = targets.filter((t) => !t.copy).flatMap((t): RowSpan[] => {
    if (t.transposedBlocks) return t.transposedBlocks.starts.map((start) => [start, start + t.transposedBlocks!.rows]);
    return (t.rows ?? [{ src: 0, count: deltaRows }]).map((g) => [g.src, g.src + g.count]);
  });
  spans.sort((x, y) => x[0] - y[0]);
  let next = 0;
  for (const [from, to] of spans) {
    if (from !== next) return from < next ? `ΔW row ${from} would land twice` : `ΔW rows ${next}–${from - 1} land nowhere`;
    next = to;
  }
  return next === deltaRows ? null : next < deltaRows ? `ΔW rows ${next}–${deltaRows - 1} land nowhere` : `the placement needs ${next} ΔW rows, ΔW has ${deltaRows}`;
}

/**
 * Where a fused expert parameter lands on several tensors (gate_up_proj on gate and up): each row
 * of an expert's matrix on exactly one of them, or why not; null when it does.
 */
function expertRowsProblem(targets: readonly Placement[]): string | null {
  if (targets.length === 1 && !targets[0].experts?.rows && targets[0].experts?.expert === undefined) return null;
  const laidOut = targets.map((t) => t.experts);
  if (laidOut.some((x) => !x)) return 'the parameter is split over several tensors without saying which rows each holds';
  const alone = laidOut.filter((x) => x!.expert !== undefined);
  if (alone.length === 0) return expertMatrixRowsProblem(laidOut as ExpertLayout[], "each expert's matrix");
  // One tensor per expert (or per part of one): every expert once, each with all its rows.
  if (alone.length !== laidOut.length) return 'the parameter is split over stacked and per-expert tensors';
  const count = laidOut[0]!.paramShape[0];
  for (let e = 0; e < count; e++) {
    const mine = alone.filter((x) => x!.expert === e) as ExpertLayout[];
    if (mine.length === 0) return `expert ${e} has no tensor`;
    const problem = mine.length === 1 && !mine[0].rows ? null : expertMatrixRowsProblem(mine, `expert ${e}'s matrix`);
    if (problem) return problem;
  }
  return null;
}

/** Whether the tensors' `rows` cover the rows of one expert's matrix (`what`) once each. */
function expertMatrixRowsProblem(laidOut: readonly ExpertLayout[], what: string): string | null {
  if (laidOut.some((x) => !x.rows)) return 'the parameter is split over several tensors without saying which rows each holds';
  const [, d1, d2] = laidOut[0].paramShape;
  const rows = laidOut[0].transposed ? d2 : d1;
  const picked = laidOut.flatMap((x) => x.rows!).sort((x, y) => x - y);
  const wrong = picked.findIndex((row, i) => row !== i);
  if (wrong >= 0) return `row ${Math.min(wrong, picked[wrong])} of ${what} lands ${picked[wrong] < wrong ? 'twice' : 'nowhere'}`;
  if (picked.length < rows) return `rows ${picked.length}–${rows - 1} of ${what} land nowhere`;
  return picked.length > rows ? `the tensors hold ${picked.length} rows of ${what}, which has ${rows}` : null;
}

/** Why a layout's row placement does not fit ΔW's and the base's rows, or null when it does. */
function placementProblem(segments: readonly { src: number; dst: number; count: number }[], deltaRows: number, baseRows: number): string | null {
  const taken: RowSpan[] = [];
  for (const { src, dst, count } of segments) {
    if (![src, dst, count].every((n) => Number.isSafeInteger(n) && n >= 0) || count === 0) return `bad row segment ${src}→${dst} × ${count}`;
    if (src + count > deltaRows) return `ΔW has ${deltaRows} rows, the placement reads rows ${src}–${src + count - 1}`;
    if (dst + count > baseRows) return `the placement writes rows ${dst}–${dst + count - 1}, the base has ${baseRows}`;
    if (taken.some(([a, b]) => a < dst + count && dst < b)) return `the placement writes row ${dst} twice`;
    taken.push([dst, dst + count]);
  }
  return null;
}

/** An input embedding or output head: a resized vocabulary changes its rows. */
const VOCABULARY_TENSOR = /(^|\.)(embed_tokens|lm_head|wte|word_embeddings|embed_in|embed_out)\.weight$/;

/**
 * Why a replacement does not fit its base tensor, or undefined when it does: the same shape, or a
 * saved embedding or head of a resized vocabulary (more or fewer rows, the same width).
 */
function replacementShapeProblem(key: string, base: readonly number[], rep: readonly number[], origin: string): string | undefined | true {
  if (sameShape(base, rep)) return undefined;
  const resized = base.length === 2 && rep.length === 2 && base[1] === rep[1];
  if (resized && origin !== 'modules_to_save' && VOCABULARY_TENSOR.test(key)) return undefined;
  if (resized && VOCABULARY_TENSOR.test(key)) return 'a modules_to_save copy of a resized vocabulary; save the adapter with save_embedding_layers';
  return true;
}

/**
 * Can a DoRA module whose rows land on several tensors (a fused qkv onto split q, k, v) merge there
 * exactly? Only with one norm per output row (PEFT, blissful-tuner, LyCORIS's `wd_on_output`): each
 * row's norm reads that row alone, so each tensor takes its rows of ΔW and of the magnitude. Every
 * tensor must take all its rows from the module, since DoRA rescales every row of the tensor it is
 * merged on. A norm per input column runs over all the fused rows, which no split tensor holds.
 * A module on one tensor, its rows reordered (a GGUF llama's q), is not taken here.
 */
function doraByOwnRows(module: AdapterModule, targets: readonly Placement[], base: BaseTensorIndex): boolean {
  if (module.dora?.axis !== 'out' || module.experts || targets.length < 2) return false;
  const keys = new Set(targets.map((t) => t.baseKey));
  if (keys.size !== targets.length) return false;
  // Each tensor one run of ΔW's rows, in order, filling it (rows a converter reorders stay refused).
  return targets.every((t) => {
    if (!t.rows || t.columns || t.transposedBlocks || t.stacked || t.experts || t.copy) return false;
    const tensorRows = base.tensors.get(t.baseKey)?.shape[0];
    const spans = [...t.rows].sort((x, y) => x.dst - y.dst);
    let next = 0;
    for (const g of spans) {
      if (g.dst !== next || g.src - g.dst !== spans[0].src) return false;
      next += g.count;
    }
    return next === tensorRows;
  });
}

function planDora(module: AdapterModule, adapterIndex: number, file: SafetensorsFile, view: View, baseShape: readonly number[], fail: Fail): PlannedDora | null {
  const dora = module.dora!;
  // LyCORIS normalises a conv per input channel over (out, kh, kw): groups of kh·kw columns.
  const group = dora.axis === 'in' && view.inFeatures % Math.max(1, product(dora.magnitude.shape)) === 0
    ? view.inFeatures / Math.max(1, product(dora.magnitude.shape)) : 1;
  // Placed by rows (a fused module onto split tensors: doraByOwnRows), the magnitude is ΔW's, one per row of it.
  const want = dora.axis === 'out' ? view.placement?.deltaRows ?? view.outFeatures : view.inFeatures / group;
  if (product(dora.magnitude.shape) !== want) {
    fail('SHAPE_MISMATCH', `DoRA magnitude ${fmt(dora.magnitude.shape)} should have ${want} values (one per ${dora.axis === 'out' ? 'output' : 'input'} feature)`);
    return null;
  }
  // A ΔW whose factors flatten the kernel (LoHa, LoKr without Tucker cores) does not say the base's
  // channels itself: the groups are whole kernels only where the base has that many input channels.
  if (group > 1 && module.deltaShape.length === 2 && !(baseShape.length >= 3 && baseShape[1] === want)) {
    fail('SHAPE_MISMATCH', `DoRA magnitude ${fmt(dora.magnitude.shape)} has one value per input channel, but the base tensor ${fmt(baseShape)} has ${baseShape.length >= 3 ? baseShape[1] : 'no'} input channels`);
    return null;
  }
  if (!checkFloat(dora.magnitude.dtype, module, fail, `DoRA magnitude ${dora.magnitude.name}`)) return null;
  return { adapterIndex, moduleName: module.name, file, magnitude: dora.magnitude, axis: dora.axis, epsilon: dora.epsilon, ...(dora.normFloor !== undefined ? { normFloor: dora.normFloor } : {}), ...(group > 1 ? { group } : {}) };
}

/** Who a bias term comes from, and the rows of a fused weight its module lands on. */
type BiasSource = Pick<PlannedTerm, 'adapterIndex' | 'adapter' | 'moduleName' | 'file' | 'placement'>;

/**
 * A module that changes its bias only (ComfyUI's `diff_b` alone, PEFT GLoRA's bias path under
 * config_A_B "none"): the bias beside the one weight its name resolves to, whole, or for GLoRA the
 * module's rows of a fused tensor (its W·C reads those rows of the weight); other row placements
 * are refused, as no weight term places them.
 */
function planBiasAlone(
  module: AdapterModule, targets: readonly Placement[], source: BiasSource, weight: number, base: BaseTensorIndex,
  biases: Map<string, BiasUpdate>, seen: Map<string, { module: string; rows: RowSpan[] }[]>, fail: Fail,
  ownBase: ReadonlyMap<string, PlannedReplacement>,
): void {
  const named = (module.biasB ?? module.gloraBias)!;
  const target = targets[0];
  const plainRows = target?.rows && module.gloraBias && !target.stacked && !target.experts && !target.transposedBlocks && !target.columns && !target.bias;
  if (targets.length !== 1 || (target.rows && !plainRows)) {
    const where = targets.length > 1 ? 'whose rows land on several tensors' : 'that lands on part of a tensor';
    return fail('UNSUPPORTED_FORMAT', `${named.name} on a module ${where} (${targets.map((t) => t.baseKey).join(', ')}) without a weight update is not supported`);
  }
  const weightKey = target.baseKey;
  const weightShape = base.tensors.get(weightKey)!.shape;
  // The module's outputs: all of them on its rows of the fused tensor, or the weight's.
  const segments = target.rows;
  const deltaRows = segments ? Math.max(...segments.map((g) => g.src + g.count)) : weightShape[0];
  const placedRows = segments?.reduce((n, g) => n + g.count, 0);
  // GLoRA's constant D and E leave the outputs to the base (-1).
  if ((module.deltaShape[0] !== deltaRows && !(module.gloraBias && module.deltaShape[0] === -1))
    || (segments && (placedRows !== deltaRows || segments.some((g) => g.dst + g.count > weightShape[0])))) {
    return fail('SHAPE_MISMATCH', `${named.name} ${fmt(module.deltaShape)} does not fit base ${weightKey} ${fmt(weightShape)}: it should hold one value per output feature (${segments ? `its ${deltaRows} rows of the tensor` : weightShape[0]})`);
  }
  const rows: RowSpan[] = segments ? segments.map((g) => [g.dst, g.dst + g.count]) : [[0, Infinity]];
  const onTensor = seen.get(weightKey) ?? [];
  const clash = onTensor.find((other) => spansOverlap(other.rows, rows));
  if (clash) return fail('AMBIGUOUS_MODULE', `targets ${weightKey}, as module "${clash.module}" of the same adapter does`);
  seen.set(weightKey, [...onTensor, { module: source.moduleName, rows }]);
  const placed: BiasSource = segments ? { ...source, placement: { deltaRows, segments } } : source;
  planBias(module, placed, weight, weightKey, base, biases, fail, ownBase, module.gloraBias ? 'glora' : 'add');
}

function planBias(
  module: AdapterModule, term: BiasSource, weight: number, weightKey: string, base: BaseTensorIndex, biases: Map<string, BiasUpdate>, fail: Fail,
  ownBase: ReadonlyMap<string, PlannedReplacement>, kind: 'add' | 'multiply' | 'map' | 'glora' = 'add', at?: Placement['bias'],
): void {
  // Scaling or mapping the bias as it stands (not adding to it): nothing to do without a bias.
  const mapsBias = kind === 'multiply' || kind === 'map';
  const biasB = kind === 'multiply' ? module.biasScale! : kind === 'map' ? module.biasMap! : kind === 'glora' ? module.gloraBias! : module.biasB!;
  const what = biasB.name;
  if (at) return planBiasRows(module, term, weight, at, base, biases, fail, kind, biasB);
  const biasKey = biasKeyOf(weightKey);
  const own = ownBase.get(biasKey);
  const info = own ? { dtype: own.tensor.dtype, shape: own.shape } : base.tensors.get(biasKey);
  const out = module.deltaShape[0];
  const weightShape = base.tensors.get(weightKey)!.shape;
  // A weight stored (in, out) (fan_in_fan_out) has its outputs last.
  const baseOut = module.fanInFanOut && weightShape.length === 2 ? weightShape[1] : weightShape[0];
  // A layer without a bias has nothing to scale or map (PEFT skips it too).
  if (!info && mapsBias) return;
  // PEFT builds GLoRA's trained bias path only on a layer with a bias.
  if (!info && kind === 'glora') return fail('UNKNOWN_MODULE', `has a trained GLoRA bias path (${biasB.name}), which PEFT creates only on a layer with a bias, but the base has no ${biasKey}: the adapter was trained on another model`);
  if (!info) return fail('UNKNOWN_MODULE', `has ${biasB.name}, a change of its bias, but the base has no ${biasKey}`);
  if (!isFloatDType(info.dtype)) return fail('UNSUPPORTED_FORMAT', `base ${biasKey} is ${info.dtype}; only F32, F16, BF16 and fp8 can be merged`);
  if (product(info.shape) !== baseOut) {
    return fail('SHAPE_MISMATCH', `base ${biasKey} ${fmt(info.shape)} does not hold one value per output feature of ${weightKey} (${baseOut}); the base file is broken`);
  }
  let glora: GloraBiasTerm | undefined;
  if (kind === 'glora') {
    // W·C reads the layer's real weight, as the weight's merge starts from it: its stored floats, a
    // GGUF block type dequantized, values stored divided by a scale (scaled fp8 merged in place, a
    // GGUF's kept `.scale`) times that scale, fp8 codes times their grid of scales (the pipeline,
    // formats/scaled-fp8.ts), or the module's rows of a fused tensor.
    const w = base.tensors.get(weightKey)!;
    const valueScale = scaledWeight(base, weightKey);
    const storedAs = w.storedType ?? w.dtype;
    const known = isFloatDType(storedAs) ? w.dtype === storedAs : !base.quantizedAs?.has(weightKey);
    const why = !known ? `${weightKey} is stored as ${storedAs}, which is not read here`
      : own || ownBase.has(weightKey) ? `the adapter saves its own ${weightKey}, which PEFT's GLoRA layer does not wrap`
        : w.shape.length !== 2 || w.shape[0] !== baseOut || module.fanInFanOut ? `${weightKey} ${fmt(w.shape)} is not the layer's (out, in) weight`
          : valueScale && w.shape[0] % valueScale.values.length !== 0 ? `${valueScale.label} has ${valueScale.values.length} scales, which do not split its ${w.shape[0]} rows into equal runs`
            : undefined;
    if (why) return fail('UNSUPPORTED_FORMAT', `has a trained GLoRA bias path (${biasB.name}), whose b ⊙ D + E + W·C needs the layer's real weight W, which cannot be read here: ${why}`);
    if (module.deltaShape[1] !== -1 && module.deltaShape[1] !== w.shape[1]) {
      return fail('SHAPE_MISMATCH', `GLoRA bias path's C has ${module.deltaShape[1]} rows, ${weightKey} ${fmt(w.shape)} has ${w.shape[1]} inputs`);
    }
    glora = { module, weightKey };
    if (valueScale) glora.valueScale = valueScale.values;
  }
  if (kind !== 'map' && kind !== 'glora' && product(biasB.shape) !== out) {
    return fail('SHAPE_MISMATCH', `${what} ${fmt(biasB.shape)} does not hold one value per output feature (${out}) of ${biasKey} ${fmt(info.shape)}`);
  }
  if (!checkFloat(biasB.dtype, module, fail, `factor ${biasB.name}`)) return;
  let update = biases.get(biasKey);
  if (own && update && update.source !== own) return fail('PLAN_INVALID', `the adapter saved ${biasKey}, which ${update.terms[0].adapter} already updates`);
  if (!update) {
    biases.set(biasKey, (update = { baseKey: biasKey, dtype: info.dtype, length: baseOut, terms: [] }));
    if (own) update.source = own;
  }
  // Biases are stored as they are, even beside a scaled fp8 weight: no value scale here.
  const scale = weight * (mapsBias || glora ? module.scale : module.biasBScale ?? module.scale);
  const biasTerm: BiasUpdate['terms'][number] = { adapterIndex: term.adapterIndex, adapter: term.adapter, moduleName: term.moduleName, file: term.file, biasB, scale };
  if (term.placement) biasTerm.placement = term.placement;
  if (kind === 'multiply') biasTerm.multiply = true;
  if (kind === 'map') biasTerm.map = module;
  if (glora) biasTerm.glora = glora;
  update.terms.push(biasTerm);
}

/**
 * A bias change on rows of another tensor (Placement.bias: an expert's row of a fused bias), added
 * there as the weight's bias would take it. Only an added lora_B.bias lands so.
 */
function planBiasRows(
  module: AdapterModule, term: BiasSource, weight: number, at: NonNullable<Placement['bias']>, base: BaseTensorIndex, biases: Map<string, BiasUpdate>, fail: Fail,
  kind: 'add' | 'multiply' | 'map' | 'glora', biasB: TensorEntry,
): void {
  if (kind !== 'add') return fail('UNSUPPORTED_FORMAT', `has ${biasB.name}, which scales or maps its bias, on a layer whose bias is rows of ${at.key}; only an added bias (lora_B.bias) is placed there`);
  const info = base.tensors.get(at.key);
  if (!info) return fail('UNKNOWN_MODULE', `has ${biasB.name}, a change of its bias, but the base has no ${at.key}`);
  if (!isFloatDType(info.dtype)) return fail('UNSUPPORTED_FORMAT', `base ${at.key} is ${info.dtype}; only F32, F16, BF16 and fp8 can be merged`);
  const out = module.deltaShape[0];
  const length = product(info.shape);
  if (product(biasB.shape) !== out || at.rows.some((s) => s.src + s.count > out || s.dst + s.count > length)) {
    return fail('SHAPE_MISMATCH', `${biasB.name} ${fmt(biasB.shape)} does not fit its rows of ${at.key} ${fmt(info.shape)}`);
  }
  if (!checkFloat(biasB.dtype, module, fail, `factor ${biasB.name}`)) return;
  let update = biases.get(at.key);
  if (!update) biases.set(at.key, (update = { baseKey: at.key, dtype: info.dtype, length, terms: [] }));
  update.terms.push({
    adapterIndex: term.adapterIndex, adapter: term.adapter, moduleName: term.moduleName, file: term.file, biasB,
    scale: weight * (module.biasBScale ?? module.scale), placement: { deltaRows: out, segments: at.rows },
  });
}

/**
 * The bias beside a weight: `<m>.bias` for `<m>.weight`; torch's MultiheadAttention (open_clip,
 * Stable Cascade) keeps q, k and v's in `in_proj_bias` beside `in_proj_weight`.
 */
function biasKeyOf(weightKey: string): string {
  if (weightKey.endsWith('.in_proj_weight') || weightKey === 'in_proj_weight') return `${weightKey.slice(0, -'weight'.length)}bias`;
  return weightKey.endsWith('.weight') ? `${weightKey.slice(0, -'.weight'.length)}.bias` : `${weightKey}.bias`;
}

/** Replaced tensors and tensors with rows set take nothing else. */
function checkSharedTensors(
  updates: Map<string, TensorUpdate>, biases: Map<string, BiasUpdate>, replacements: Map<string, PlannedReplacement>,
  rowSets: Map<string, PlannedRowSet>, problems: PlanProblem[],
): void {
  for (const set of rowSets.values()) {
    const t = set.terms[0];
    const update = updates.get(set.baseKey)?.terms[0];
    const by = update ?? replacements.get(set.baseKey);
    if (by === undefined) continue;
    // Two adapters can be merged one after the other; one adapter doing both cannot be split so.
    const same = by.adapterIndex === t.adapterIndex;
    let other: string;
    if (update) other = same ? `its module "${update.moduleName}" also updates it` : `${update.adapter} (module "${update.moduleName}") also updates it`;
    else other = same ? 'it also replaces it whole' : `${by.adapter} replaces it whole`;
    const fix = same ? 'one adapter that does both is not supported' : 'merge them one after the other';
    problems.push({ adapter: t.adapter, module: set.baseKey, code: 'PLAN_INVALID', message: `${t.adapter}: sets rows of ${set.baseKey} (trainable tokens), and ${other}; ${fix}` });
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

/**
 * VeRA and PVeRA adapters saved without their shared projections (save_projection: false): PEFT
 * draws A at the width of the widest layer the adapter wraps (VeraModel._find_dim), so that width
 * is the widest input among the layers the adapter's modules landed on, found here once each has;
 * an adapter with a module that landed nowhere (left out) cannot be sized, and is refused.
 */
function sizeDrawnProjections(updates: Map<string, TensorUpdate>, problems: PlanProblem[]): void {
  const seen = new Map<RegeneratedProjections, { inMax: number; modules: Set<AdapterModule>; term: PlannedTerm }>();
  for (const update of updates.values()) {
    for (const t of update.terms) {
      const p = t.module.projections;
      if (!p) continue;
      let s = seen.get(p);
      if (!s) seen.set(p, (s = { inMax: 0, modules: new Set(), term: t }));
      // A module whose ΔW leaves its inputs open where it lands (-1) tells no width: it counts as not landed.
      const inF = termDeltaDims(update, t).in;
      if (inF < 1) continue;
      s.inMax = Math.max(s.inMax, inF);
      s.modules.add(t.module);
    }
  }
  for (const [p, s] of seen) {
    p.inMax = s.inMax;
    if (s.modules.size < p.modules) {
      const missing = p.modules - s.modules.size;
      problems.push({
        adapter: s.term.adapter, module: '', code: 'PLAN_INVALID',
        message: `${s.term.adapter}: saved without ${p.names} (save_projection: false), which PEFT draws at the width of the widest layer the adapter wraps, and ${missing === 1 ? 'one of its modules lands' : `${missing} of its modules land`} on no tensor of this base, so that width is unknown; merge it into the model it was trained on, whole`,
      });
    }
  }
}

/**
 * Refuses a tensor whose rows are too wide for the CPU kernel (MAX_ROW_KERNEL_BYTES), from its
 * header and the ranks alone: the kernel refused it too, but only once the tensor and its factors
 * had been read (a 1 × 2^26 f32 row peaked at 1.9 GB first). Only low-rank terms run on the
 * kernel; an update with another kind of term runs on the general executor, which has no such
 * limit. The rank counted is that of the terms on every row (a term on some rows only, a slice of a
 * fused tensor or one expert, may be absent from a slab's job), so what is refused here is refused
 * by the kernel too, whatever backend, output dtype and slabs are chosen; the CPU backend runs
 * what a GPU does not, so the refusal does not wait for the backend.
 */
function checkKernelRows(updates: Map<string, TensorUpdate>, problems: PlanProblem[]): void {
  for (const update of updates.values()) {
    let rank = 0;
    let plain = true;
    for (const t of update.terms) {
      const kind = t.module.update;
      if (kind.kind === 'none') continue;
      if (kind.kind !== 'low-rank' || (t.dora?.group ?? 1) > 1) plain = false;
      else if (!t.placement && !t.experts && !t.transposedBlocks) rank += kind.rank;
    }
    const bytes = leastJobBytes(update.cols, rank);
    if (!plain || update.terms.length === 0 || bytes <= MAX_ROW_KERNEL_BYTES) continue;
    const t = update.terms[0];
    problems.push({
      adapter: t.adapter, module: t.moduleName, code: 'LIMIT_EXCEEDED',
      message: `${t.adapter}: tensor "${update.baseKey}" ${fmt(update.shape)}: rows of ${update.cols} elements at rank ${rank} take at least ${Math.ceil(bytes / 2 ** 20)} MiB of CPU kernel memory, above the limit MAX_ROW_KERNEL_BYTES (${MAX_ROW_KERNEL_BYTES / 2 ** 20} MiB): no real weight has rows this wide; check that the base is the model the adapter was trained on`,
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
  const touch = (key: string, shape: readonly number[] = base.tensors.get(key)!.shape) => {
    if (touched.has(key)) return;
    touched.add(key);
    elementsToWrite += product(shape);
  };
  for (const u of plan.updates) {
    touch(u.baseKey, u.shape);
    bytesToRead += u.source ? u.source.tensor.byteLength : baseBytes(u.baseKey);
    for (const t of u.terms) {
      terms++;
      for (const tensor of Object.values(t.module.tensors)) bytesToRead += tensor.byteLength;
      const rows = t.placement ? t.placement.segments.reduce((n, g) => n + g.count, 0) : u.outFeatures;
      const shape = t.module.update;
      const perElement = shape.kind === 'low-rank' ? shape.rank : shape.kind === 'dense' ? 1 : shape.kind === 'none' ? 0 : shape.cost;
      flops += 2 * perElement * rows * (u.rows * u.cols / u.outFeatures);
    }
    for (const t of u.terms) if (t.dora) bytesToRead += t.dora.magnitude.byteLength;
  }
  for (const b of plan.biasUpdates) {
    touch(b.baseKey);
    bytesToRead += (b.source ? b.source.tensor.byteLength : baseBytes(b.baseKey)) + b.terms.reduce((n, t) => n + t.biasB.byteLength, 0);
    flops += 2 * b.length * b.terms.length;
  }
  for (const r of plan.replacements) {
    touch(r.baseKey, r.shape);
    bytesToRead += r.tensor.byteLength;
  }
  for (const r of plan.rowSets) {
    touch(r.baseKey, r.shape);
    bytesToRead += (r.source ? r.source.tensor.byteLength : baseBytes(r.baseKey)) + r.terms.reduce((n, t) => n + t.delta.byteLength, 0);
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

function fmt(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
