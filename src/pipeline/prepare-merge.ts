/**
 * The cheap first half of a merge: open the base and the adapters (headers and configs only),
 * match every module to a base tensor and collect every problem. Nothing heavy is read yet, so
 * front ends can show the plan and let the user fix problems before any work starts.
 */
import { openAdapter, type ParsedAdapter } from '../formats/adapter.js';
import type { BaseModel } from '../formats/base-model.js';
import { isSafetensorsModel } from '../formats/base-model-view.js';
import { dequantizedBaseModel, type DequantizedBase } from '../formats/bnb/bnb-base-model.js';
import { modelArchitectures, readModelConfig, type ModelConfig } from '../formats/model-config.js';
import { baseIdentityWarning } from '../formats/peft-base-identity.js';
import { openModelPaced } from '../formats/open-model.js';
import { checkAllLinearHead, checkWeightTyingTargets, targetsAllLinear, type GgufHeads } from '../formats/peft-targets.js';
import type { InputFileSet } from '../io/types.js';
import { buildMergePlan, type BaseTensorIndex, type MergePlan } from '../plan/merge-plan.js';
import { planModelFolder, planWidenedConfigs, type ModelFolderPlan } from '../plan/model-folder.js';
import { resolveTiedEmbeddings } from '../plan/tied-embeddings.js';
import { badArgument, checkDtypeName, checkImportanceArgument, checkSignal, checkInputFileSet, checkList, checkOneTrainerCoft, checkOptions, checkWeight, isInputFileSet } from '../api-arguments.js';
import { repeatedAdapterWarnings } from '../plan/same-adapter.js';
import { packedModuleProblems, quantizedWeightProblems, widenedScaledProblems } from '../plan/quantized-weights.js';
import { findScaledFp8, runtimeScales, type ScaledFp8Base } from '../formats/scaled-fp8.js';
import { readModelOptQuantization } from '../formats/modelopt-config.js';
import { quantizedBaseView } from '../formats/quantized-views.js';
import { mlxStackedExpertsView } from '../formats/mlx-stacked-experts.js';
import { scaledFp8Note } from './scaled-fp8-output.js';
import { mlxQuantizedWeights } from '../formats/mlx-quantized.js';
import { asCancel, throwIfAborted } from '../errors.js';
import { inlineText, printable } from '../shown-text.js';
import { Pacer } from '../event-turns.js';
import type { ImportanceMatrix } from '../formats/gguf/imatrix.js';

/** One adapter for {@link prepareMerge}: its files and the weight it is merged at. */
export interface AdapterInput {
  files: InputFileSet;
  /** The user's weight for this adapter (default 1; negative subtracts). */
  weight?: number;
  /**
   * For a OneTrainer OFT file saved without its training config by a OneTrainer that had COFT
   * (14 November 2025 – 10 May 2026), which is refused without it: how it was trained. false, COFT
   * off; true, on at OneTrainer's default coft_eps (1e-4); a number, on at that coft_eps. A file's
   * own `ot_config` wins; other files ignore it.
   */
  oneTrainerCoft?: boolean | number;
}

/** The opened inputs and their plan, ready for {@link mergeModel}. */
export interface PreparedMerge {
  baseFiles: InputFileSet;
  /** The base as the merge sees it (a tied head or dequantized tensors may be views of its files). */
  base: BaseModel;
  adapters: { adapter: ParsedAdapter; weight: number; files: InputFileSet }[];
  plan: MergePlan;
  /** config.json rewrites and the tokenizer's origin (plan/model-folder.ts). */
  modelFolder: ModelFolderPlan;
  /** fp8 weights stored as codes × scales (block-wise fp8, compressed-tensors FP8), merged in real values. */
  scaledFp8?: ScaledFp8Base;
  /**
   * The activation and KV-cache scales of a base whose quantization config is written with it (a
   * ModelOpt or compressed-tensors config that quantizes only the KV cache): the runtime reads them
   * as stored, so they keep their type whatever output type the weights take.
   */
  runtimeScales?: ReadonlySet<string>;
  /** Releases the open files. */
  close(): Promise<void>;
}

/** What the plan reads of the base: its tensors, components and metadata, and config.json (its architectures and model_type named). */
function planIndex(base: BaseModel, config: ModelConfig | undefined, scaled: ScaledFp8Base | undefined): BaseTensorIndex {
  const index: BaseTensorIndex = { tensors: viewedTensors(base.tensors, scaled), architectures: modelArchitectures(config) };
  if (typeof config?.raw.model_type === 'string') index.modelType = config.raw.model_type;
  if (config) index.config = config.raw;
  const mlxQuantized = mlxQuantizedWeights(base.tensors);
  if (scaled?.unreadWhy || mlxQuantized.size > 0) index.quantizedAs = new Map([...mlxQuantized, ...scaled?.unreadWhy ?? []]);
  // The plan merges in place (dividing ΔW by the scale) only under the `keep` rule; otherwise the
  // scaled weights are merged in real values and quantized again (scaled-fp8-output.ts).
  if (base.valueScales && scaled?.rule === 'keep') {
    index.valueScales = new Map([...base.valueScales].map(([key, s]) => [key, { values: [s], label: `the scaled fp8 weight ${key}` }]));
  }
  // Scales the file keeps beside its weights (llama.cpp's `.scale`): always merged in place.
  if (base.keptScales) index.valueScales = base.keptScales;
  if (base.components) index.components = base.components;
  if (base.weightlessEncoders) index.weightlessEncoders = base.weightlessEncoders;
  if (base.combinedPrior) index.combinedPrior = base.combinedPrior;
  if (base.metadata) index.metadata = (key) => base.metadata!(key);
  return index;
}

/**
 * What a GGUF base shows of the tie in place of config.json: token_embd.weight and no output.weight
 * is a tied model (the converter writes no head for one), its own output.weight an untied one;
 * undefined for other bases.
 */
function ggufHeads(base: BaseModel): GgufHeads | undefined {
  if (isSafetensorsModel(base) || !base.metadata) return undefined;
  const head = base.tensors.get('output.weight');
  const file = base.shards.find((s) => s.path === head?.shard) ?? base.shards[0];
  return { gguf: file?.sourceName ?? base.name, hasEmbedding: base.tensors.has('token_embd.weight'), hasHead: head !== undefined };
}

/** The base's tensors as the plan sees them: a weight read through a view (ComfyUI's nvfp4) in the view's dtype and shape. */
function viewedTensors(tensors: BaseModel['tensors'], scaled: ScaledFp8Base | undefined): BaseModel['tensors'] {
  const views = [...scaled?.weights.values() ?? []].filter((w) => w.view);
  if (views.length === 0) return tensors;
  const seen = new Map(tensors);
  for (const { weightKey, view } of views) seen.set(weightKey, { ...tensors.get(weightKey)!, dtype: view!.dtype, shape: view!.shape.slice() });
  return seen;
}

/** What {@link prepareMerge} may know of the merge to come. */
export interface PrepareMergeOptions {
  /**
   * The dtype the merge will write (mergeModel's `outDtype`), where it is chosen already: the plan's
   * warnings then say what it does (a GGUF base's merged tensors re-quantized or not). Not checked
   * against the base here; mergeModel refuses one the base does not take.
   */
  dtype?: string;
  /**
   * The importance matrix the merge will quantize with (mergeModel's `importance`), where it is
   * chosen already: the plan's warnings then say which merged tensors of a GGUF base are quantized
   * with it (IQ2 ones are written as F16 without one). Not checked against the base here.
   */
  importance?: ImportanceMatrix;
  /**
   * Cancels the planning: it rejects with a MergeError of code ABORTED, named `'AbortError'`, whose
   * `cause` is the signal's reason. Planning tens of thousands of modules takes seconds; the abort
   * is seen within a fraction of one.
   */
  signal?: AbortSignal;
}

/**
 * Opens the base and the adapters (headers and configs only) and plans the merge: every problem is
 * in `plan.problems`, nothing heavy is read. Close the result when done. Arguments of the wrong
 * kind (not an InputFileSet, an empty or holed array, a weight that is no finite number, an
 * unknown key beside `files` and `weight`) are refused first with a BAD_ARGUMENT MergeError.
 */
export async function prepareMerge(baseFiles: InputFileSet, adapterInputs: readonly AdapterInput[], options: PrepareMergeOptions = {}): Promise<PreparedMerge> {
  checkOptions('prepareMerge options', options, ['dtype', 'importance', 'signal']);
  checkDtypeName('prepareMerge options: dtype', options.dtype);
  checkImportanceArgument('prepareMerge options: importance', options.importance);
  checkSignal('prepareMerge options: signal', options.signal);
  checkInputFileSet('prepareMerge: baseFiles', baseFiles);
  checkList('prepareMerge: adapters', adapterInputs, 'an adapter as { files, weight }');
  adapterInputs.forEach((input, i) => {
    const what = `prepareMerge: adapters[${i}]`;
    if (isInputFileSet(input)) throw badArgument(`${what} is an InputFileSet; give { files: theSet, weight }`);
    checkOptions(what, input, ['files', 'weight', 'oneTrainerCoft'], { source: 'an adapter here is { files: an InputFileSet, weight }', weights: 'did you mean "weight"?' });
    checkInputFileSet(`${what}.files`, input.files);
    checkWeight(`${what}.weight (${input.files.name})`, input.weight);
    checkOneTrainerCoft(`${what}.oneTrainerCoft (${input.files.name})`, input.oneTrainerCoft);
  });
  const signal = options.signal;
  // Between the phases and the modules, the event loop gets a turn (a Ctrl-C handler, an abort()).
  throwIfAborted(signal);
  const pacer = new Pacer(signal);
  const opened = await openModelPaced(baseFiles, pacer);
  const adapters: PreparedMerge['adapters'] = [];
  const close = async () => {
    await Promise.allSettled([opened.close(), ...adapters.map(({ adapter }) => adapter.file.source.close())]);
  };
  try {
    // A file that is no model to merge into (a GGUF's mmproj) is refused before the adapters are checked against it.
    opened.refuseAsBase?.();
    // A GGUF says what it is in its own metadata; config.json describes safetensors models.
    const config: ModelConfig | undefined = isSafetensorsModel(opened) ? await readModelConfig(baseFiles) : undefined;
    const architectures = modelArchitectures(config);
    for (const input of adapterInputs) {
      await pacer.tick();
      // The base decides which rule some diffusers-named files follow (ParsedAdapter.flux1Refusal).
      const coft = input.oneTrainerCoft !== undefined ? { oneTrainerCoft: input.oneTrainerCoft } : {};
      adapters.push({ adapter: await openAdapter(input.files, pacer, { baseDecides: true, ...coft }), weight: input.weight ?? 1, files: input.files });
    }
    // An adapter whose config names another model family than the base's config.json: said, not refused.
    const identityWarnings: string[] = [];
    for (const { adapter } of adapters) {
      if (adapter.format !== 'peft') continue;
      const identity = baseIdentityWarning(adapter.name, adapter.config, config);
      if (identity) identityWarnings.push(identity);
      const paths = adapter.modules.filter((m) => !m.address.tensor).map((m) => m.name);
      const configFile = adapter.configFile ?? `${adapter.name}/adapter_config.json`;
      // Whether ensure_weight_tying ties the head to the embedding is the base's (its config.json;
      // a GGUF's own output.weight, or none).
      checkWeightTyingTargets(adapter.config, config ?? ggufHeads(opened), paths, configFile, adapter.file.source.name);
      // "all-linear" leaves out the model's own output head, which only the base's config.json names.
      if (targetsAllLinear(adapter.config)) checkAllLinearHead(adapter.config, config, paths, configFile, adapter.file.source.name);
    }
    // A bitsandbytes base is merged as the float model it stands for (formats/bnb/).
    await pacer.tick();
    const dequantized: DequantizedBase | undefined = isSafetensorsModel(opened) ? await dequantizedBaseModel(opened, config) : undefined;
    // ModelOpt (hf_quant_config.json or quant_method "modelopt").
    const modelopt = isSafetensorsModel(opened) ? await readModelOptQuantization(baseFiles, config) : undefined;
    // Formats written only dequantized (ModelOpt NVFP4, integer GPTQ / AWQ / compressed-tensors) are seen through a view of real values (formats/quantized-views.ts).
    const viewed = isSafetensorsModel(opened) ? await quantizedBaseView(opened, config, modelopt, adapters.flatMap(({ adapter }) => adapter.modules)) : undefined;
    const read = dequantized?.base ?? viewed?.base ?? opened;
    // mlx-lm's float stacked experts (switch_mlp (E, out, in)) seen as rows, as its quantized ones are.
    const rows = isSafetensorsModel(read) ? mlxStackedExpertsView(read) : undefined;
    await pacer.tick();
    const tie = resolveTiedEmbeddings(rows ?? read, config, adapters, architectures);
    const base = tie.base;
    const scaledFp8 = viewed?.scaled ?? await findScaledFp8(opened, config, modelopt);
    await pacer.tick();
    const plan = await buildMergePlan(planIndex(base, config, scaledFp8), tie.adapters, pacer);
    await pacer.tick();
    plan.warnings.unshift(...base.warnings);
    plan.warnings.push(...identityWarnings, ...(await repeatedAdapterWarnings(adapters)));
    plan.problems.push(...(base.planProblems?.(plan, adapters.map((a) => a.adapter)) ?? []));
    plan.problems.push(...quantizedWeightProblems(plan, opened.tensors, config, scaledFp8), ...widenedScaledProblems(plan, scaledFp8));
    await pacer.tick();
    packedModuleProblems(plan.problems, opened.tensors, config);
    await pacer.tick();
    const scaledNote = scaledFp8 && scaledFp8Note(scaledFp8);
    if (scaledNote) plan.notes.push(scaledNote);
    if (modelopt?.algo === 'NONE') {
      const where = modelopt.file ?? 'config.json quantization_config';
      plan.notes.push(`the base's ModelOpt config (${where}) quantizes only the KV cache${modelopt.kvCache ? ` (kv_cache_quant_algo ${modelopt.kvCache})` : ''}: its weights are floats and merge as any; the config and its KV-cache scales (k_scale, v_scale) are kept as they are, calibrated on the model before the merge`);
    }
    plan.warnings.push(...(base.planWarnings?.(plan, options.dtype, options.importance) ?? []));
    if (dequantized) {
      const counts = [dequantized.fourBit ? `${dequantized.fourBit} 4-bit` : '', dequantized.eightBit ? `${dequantized.eightBit} 8-bit` : ''].filter(Boolean).join(' and ');
      plan.notes.push(`the base holds ${counts} bitsandbytes weights: they are dequantized exactly as bitsandbytes does, merged, and written as floats; config.json drops quantization_config`);
      plan.warnings.push('the base is bitsandbytes-quantized: a QLoRA adapter merges best into the original high-precision base, if you have it (the quantization error stays in this merge)');
    }
    if (tie.note) plan.notes.push(tie.note);
    // Only a transformers-style folder takes a rewritten config.json and an adapter's tokenizer
    // (a GGUF keeps both in its own metadata; a merged single file has no folder).
    const folder = base.kind !== 'file' && base.kind !== 'gguf';
    const modelFolder = await planModelFolder(
      { tensors: base.tensors }, config, adapters.map(({ adapter, files }) => ({ name: adapter.name, files })), plan,
      { untied: tie.decision === 'untied', dequantized: dequantized !== undefined, folder, baseFiles: base.otherFiles },
    );
    await pacer.tick();
    const widened = await planWidenedConfigs(baseFiles, base.shards, plan);
    if (widened.length > 0) modelFolder.widened = widened;
    // A dequantized base (bitsandbytes, or scaled weights written dequantized) leaves them out with its config.
    const kept = !dequantized && (modelopt !== undefined || config?.raw.quantization_config !== undefined) ? runtimeScales(opened) : [];
    printableLists(plan);
    return {
      baseFiles, base, adapters, plan, modelFolder, ...(scaledFp8 ? { scaledFp8 } : {}), ...(kept.length > 0 ? { runtimeScales: new Set(kept) } : {}), close,
    };
  } catch (e) {
    await close();
    throw asCancel(e, signal);
  }
}

/**
 * The plan's problems and warnings, each one printable line, as a MergeError's message is: they
 * quote names from the files, and a line break or escape sequence in one (a hostile tensor name)
 * would otherwise start a false line, or rewrite the terminal, of whoever shows them. In place: a
 * problem is matched by identity later (removeProblems).
 */
function printableLists(plan: { problems: { message: string }[]; warnings: string[] }): void {
  for (const p of plan.problems) p.message = printable(inlineText(p.message));
  for (let i = 0; i < plan.warnings.length; i++) plan.warnings[i] = printable(inlineText(plan.warnings[i]));
}
