/**
 * Runs in the worker: reads the headers of the base and the adapters, prepares the merge at the
 * adapters' weights, measures each update, and boils it all down to what the page shows: every
 * error, warning, note and left-out module as the CLI reports them, each module's algorithm and
 * scale, the files the merge writes, and the output types the base's container offers.
 * Problems depend on the weights (weight 0, the same adapter twice), so they are taken from a plan
 * at the real weights; scales and magnitudes from the same adapters at weight 1, so the page scales
 * them by the sliders itself without asking again. The adapters' facts are worded here, from the
 * plan's data, so the page needs no list of formats.
 */
import {
  ADAPTER_FORMAT_NAMES, estimateUpdateMagnitudes, isMergeError, openModel, prepareMerge, type FloatTensorBytes, type ImportanceMatrix, type InputFileSet, type MergePlan,
  type ParsedAdapter, type PlannedTerm, type PreparedMerge,
} from '../src/index.js';
import { checkImportance, savedTensorRefusals } from '../src/pipeline/merge-model.js';
import { throwIfAborted } from '../src/errors.js';
import { openAdapter } from '../src/formats/adapter.js';
import { asksOneTrainerCoft } from '../src/formats/algorithms/onetrainer-oft.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import type { SafetensorsFile } from '../src/formats/safetensors-types.js';
import { algorithmNamed, moduleTitle } from '../src/formats/algorithms/index.js';
import { scaleFacts, valueRange } from '../src/formats/scale-facts.js';
import { tiedPair } from '../src/plan/tied-embeddings.js';
import { modulesAsPlanned } from '../src/plan/merge-plan.js';
import { fp8OutputBlocker, SCALED_FP8_KIND_NAME } from '../src/formats/scaled-fp8.js';
import { decodeToF32, type FloatDType } from '../src/dtype.js';
import { chartGrouper } from './chart-groups.js';
import type { AdapterReading, AdapterSummary, BaseFacts, OutputFilePlan, PlanCheck, PlannedModule, PlanSummary } from './worker-protocol.js';

/** A base's facts as the page shows them, from the model's tensors (headers only). */
function baseFactsOf(model: PreparedMerge['base']): BaseFacts {
  const allTensors = [...model.tensors.values()];
  return {
    files: model.shards.length,
    tensors: allTensors.length,
    bytes: allTensors.reduce((n, t) => n + t.byteLength, 0),
    dtype: mostCommon(allTensors.map((t) => t.storedType)),
    container: model.format.name,
  };
}

/**
 * The base alone, read as the plan reads it (its headers, within the library's limits, with the
 * library's refusals), so a file that is no model is refused the moment it is picked; `signal`
 * drops the reading when another base is picked meanwhile.
 */
export async function readBaseFacts(base: InputFileSet, signal: AbortSignal): Promise<BaseFacts> {
  const model = await openModel(base, { signal });
  try {
    return baseFactsOf(model);
  } finally {
    await model.close();
  }
}

/** One adapter's files and the weight it is merged at. */
export interface WeightedFiles {
  files: InputFileSet;
  weight: number;
  /** The adapter card's "OneTrainer COFT" (prepareMerge's oneTrainerCoft), where the user said it. */
  oneTrainerCoft?: boolean | number;
}

/** `LoRA`, `LoKr + DoRA`, `LoRA + bias`: how a module's tensors make its update. */
function algorithmOf(module: ParsedAdapter['modules'][number]): string {
  return `${moduleTitle(module)}${module.dora ? ' + DoRA' : ''}${module.biasB && module.update.kind !== 'none' ? ' + bias' : ''}`;
}

/** `modules`: the adapter's modules as a plan merges them (modulesAsPlanned), where there is one. */
export function summarizeAdapter(adapter: ParsedAdapter, modules: ParsedAdapter['modules'] = adapter.modules): AdapterSummary {
  const m = modules;
  const algorithms = new Map<string, number>();
  for (const x of m) algorithms.set(algorithmOf(x), (algorithms.get(algorithmOf(x)) ?? 0) + 1);
  const algorithmFacts = algorithms.size === 1 ? [...algorithms.keys()] : [...algorithms].map(([name, n]) => `${name} ×${n}`);
  // A rank where the update is a low-rank product, as the CLI's plan gives it: a map of W (RoAd,
  // HiRA, OFT) or a dense update (C3A, a full diff) has none to show.
  const ranks = m.filter((x) => x.update.kind === 'low-rank').map((x) => x.rank);
  const replaced = adapter.replacements.length;
  return {
    name: adapter.name,
    facts: [
      ADAPTER_FORMAT_NAMES[adapter.format] ?? adapter.format,
      ...algorithmFacts,
      // An adapter of saved tensors only (mlx-lm's full fine-tune) has no modules to count.
      ...(m.length > 0 || replaced === 0 ? [`${m.length} module${m.length === 1 ? '' : 's'}`] : []),
      ...(ranks.length ? [`r = ${valueRange(ranks)}`] : []),
      ...scaleFacts(m),
      ...(replaced ? [`${replaced} tensor${replaced === 1 ? '' : 's'} replaced`] : []),
    ],
    warnings: adapter.warnings.slice(),
    ...(adapter.format !== 'peft' && asksCoft(adapter.file) ? { asksCoft: true } : {}),
  };
}

/** A lone file's header (a PEFT folder's OFT is PEFT's, never OneTrainer's): whether it asks for the user's word on COFT. */
function asksCoft(file: Pick<SafetensorsFile, 'metadata' | 'tensors'>): boolean {
  return asksOneTrainerCoft(file.metadata, file.tensors.map((t) => t.name));
}

/**
 * Whether an adapter that cannot be read is a OneTrainer OFT file asking for the user's word on
 * COFT, read from its lone .safetensors file's header (it is refused, so no reading of it is at
 * hand); false for anything else, or a header that cannot be read.
 */
async function readingAsksCoft(files: InputFileSet): Promise<boolean> {
  const list = files.list();
  const lone = list.filter((p) => p.toLowerCase().endsWith('.safetensors'));
  if (lone.length !== 1 || list.some((p) => p === 'adapter_config.json' || p.endsWith('/adapter_config.json'))) return false;
  try {
    const source = await files.open(lone[0]);
    try {
      return asksCoft(await openSafetensors(source));
    } finally {
      await source.close();
    }
  } catch {
    return false;
  }
}

/**
 * Each adapter read alone (headers and config, as the plan reads them), when the plan could not be
 * made: a card shows its own facts or its own error, and the page names the adapter that blocks the
 * plan rather than merging the others without it.
 */
export async function readEachAdapter(adapters: readonly WeightedFiles[], message: (error: unknown) => string): Promise<AdapterReading[]> {
  return Promise.all(adapters.map(async ({ files, oneTrainerCoft }) => {
    try {
      const adapter = await openAdapter(files, undefined, oneTrainerCoft !== undefined ? { oneTrainerCoft } : {});
      try {
        return summarizeAdapter(adapter);
      } finally {
        await adapter.file.source.close();
      }
    } catch (error) {
      return { name: files.name, error: message(error), ...(await readingAsksCoft(files) ? { asksCoft: true } : {}) };
    }
  }));
}

function mostCommon(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '—';
}

/** ` rows 0–1279` when a term lands on part of its tensor, as the CLI's dry run words it. */
function rowsOf(term: PlannedTerm): string | undefined {
  const segments = term.placement?.segments;
  if (!segments) return undefined;
  return `rows ${segments.map((g) => `${g.dst}–${g.dst + g.count - 1}${g.src === g.dst ? '' : ` (ΔW rows ${g.src}–${g.src + g.count - 1})`}`).join(', ')}`;
}

const id = (adapter: number, module: string) => `${adapter}\n${module}`;

/** Modules that change a bias and no weight (ComfyUI's `diff_b` alone), listed by the bias they change. */
function biasOnlyModules(plan: MergePlan): PlannedModule[] {
  const withWeight = new Set(plan.updates.flatMap((u) => u.terms.map((t) => id(t.adapterIndex, t.moduleName))));
  return plan.biasUpdates.flatMap((b) => b.terms.filter((t) => !withWeight.has(id(t.adapterIndex, t.moduleName))).map((t) => ({
    adapter: t.adapterIndex, module: t.moduleName, target: b.baseKey, shape: [b.length], algorithm: 'bias diff', scale: t.scale,
  })));
}

/**
 * The ids of every module that changes a bias beside its weight: one that adds its own
 * (PEFT's lora_B.bias) and one whose map turns or scales the layer's (RoAd's b' = R·b), which the
 * module's tensors alone do not show.
 */
function modulesChangingBias(plan: MergePlan): Set<string> {
  return new Set(plan.biasUpdates.flatMap((b) => b.terms.map((t) => id(t.adapterIndex, t.moduleName))));
}

function moduleOf(term: PlannedTerm, baseKey: string, shape: number[], changesBias: boolean): PlannedModule {
  const m = term.module;
  const planned: PlannedModule = {
    adapter: term.adapterIndex, module: term.moduleName, target: baseKey, shape,
    algorithm: `${algorithmNamed(m.algorithm).title}${term.dora ? ' + DoRA' : ''}${changesBias ? ' + bias' : ''}`, scale: term.scale,
  };
  if (m.update.kind === 'low-rank') planned.rank = m.rank;
  const rows = rowsOf(term);
  if (rows) planned.rows = rows;
  return planned;
}

/** Every base tensor the plan changes: updates, bias updates, replacements, rows set outright. */
const HEAD = /(^|\.)(lm_head|embed_out)\.weight$/;

/**
 * The file of each output head that is tied to the embedding: one the merge unties (written as a
 * tensor of its own; config.json says so) or one that stays tied while the embedding changes (so
 * the head changes with it, though it is no tensor of the file).
 */
function tiedHeads(prepared: PreparedMerge, touched: ReadonlySet<string>): Map<string, NonNullable<OutputFilePlan['head']>> {
  const heads = new Map<string, NonNullable<OutputFilePlan['head']>>();
  const model = prepared.base;
  if (prepared.modelFolder.changes.untieEmbeddings) {
    for (const shard of model.shards) {
      const head = shard.tensors.map((t) => shard.keyPrefix + t.name).find((key) => HEAD.test(key));
      if (head) heads.set(shard.path, { name: head, how: 'untied', changed: touched.has(head) });
    }
    return heads;
  }
  const pair = tiedPair(model, prepared.modelFolder.config);
  if (!pair || !touched.has(pair.embedding)) return heads;
  const shard = model.shards.find((s) => s.tensors.some((t) => s.keyPrefix + t.name === pair.embedding));
  if (shard) heads.set(shard.path, { name: pair.head, embedding: pair.embedding, how: 'tied' });
  return heads;
}

function touchedKeys(plan: MergePlan): Set<string> {
  return new Set([...plan.updates, ...plan.biasUpdates, ...plan.replacements, ...plan.rowSets].map((x) => x.baseKey));
}

/**
 * Output types this merge cannot write, and why, found as the merge finds them before any work
 * (through the container: a GGUF row that is not whole blocks of the type; a scaled fp8
 * checkpoint, whose stored values are W / scale, keeps its fp8 dtype or is dequantized); the page says so when one
 * is chosen instead of failing after the click.
 */
function refusedTypes(model: PreparedMerge['base'], touched: ReadonlySet<string>): Record<string, string> {
  const refused: Record<string, string> = {};
  for (const { name } of model.format.outputChoices.types) {
    const requested = model.format.parseOutputType(name);
    search: for (const shard of model.shards) {
      for (const t of shard.tensors) {
        const key = shard.keyPrefix + t.name;
        const type = model.format.outputType(t, touched.has(key), requested);
        if (type === t.type) continue;
        // Another float type dequantizes a scaled fp8 weight; another fp8 type cannot hold it.
        const why = model.valueScales?.has(key) && type.startsWith('F8_')
          ? `a scaled fp8 checkpoint (a scale_weight per tensor) keeps its weights in ${t.type}`
          : model.format.checkOutputType(t, type);
        if (why) {
          refused[name] = `tensor "${key}": ${why}`;
          break search;
        }
      }
    }
  }
  return refused;
}

/**
 * Rows of the base in real values, for the magnitudes: a quantized weight's codes times its scales
 * (ComfyUI nvfp4 through its view), so that a ratio is ‖ΔW‖ / ‖W‖ and not over the codes. Under the
 * `keep` rule the plan's terms are ΔW / scale, measured against the codes as they are.
 */
function realRowReader(prepared: PreparedMerge, signal?: AbortSignal): (key: string, rowStart: number, rowCount: number) => Promise<FloatTensorBytes> {
  const { base, scaledFp8: scaled } = prepared;
  const grids = new Map<string, Promise<Float64Array>>();
  return async (key, rowStart, rowCount) => {
    throwIfAborted(signal); // a cancelled plan reads no more of the base
    const w = scaled?.weights.get(key);
    if (!scaled || !w || scaled.rule === 'keep') return base.readRows(key, rowStart, rowCount);
    const stored = w.view
      ? { dtype: w.view.dtype as FloatDType, data: await w.view.readPart(rowStart * (w.view.byteLength / w.rows), rowCount * (w.view.byteLength / w.rows)) }
      : await base.readRows(key, rowStart, rowCount);
    let grid = grids.get(key);
    if (!grid) grids.set(key, (grid = w.scales.length > 0 || !w.loadScales ? Promise.resolve(w.scales) : w.loadScales()));
    const scales = await grid;
    const values = decodeToF32(stored.data, stored.dtype);
    const colBlocks = Math.ceil(w.cols / w.blockCols);
    for (let r = 0; r < rowCount; r++) {
      const row = Math.floor((rowStart + r) / w.blockRows) * colBlocks;
      for (let c = 0; c < w.cols; c++) values[r * w.cols + c] *= scales[row + Math.floor(c / w.blockCols)];
    }
    return { dtype: 'F32', data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
  };
}

/**
 * Output types a base with quantized weights cannot take, as the merge refuses them
 * (scaled-fp8-output.ts), so the page says so before the click: no fp8 type on any of them (their
 * scale tensors would be converted as if they were weights), and only f32, f16 or bf16 where the
 * weights are written only dequantized (GPTQ, AWQ, compressed-tensors int, ModelOpt NVFP4).
 */
function quantizedBaseTypes(scaled: PreparedMerge['scaledFp8']): Record<string, string> {
  const blocker = fp8OutputBlocker(scaled);
  if (!scaled || !blocker) return {};
  if (scaled.rule === 'dequantize-only') {
    const reason = `its ${SCALED_FP8_KIND_NAME[scaled.kind]} weights are written only dequantized: choose bf16, f16 or f32`;
    return { same: reason, f8_e4m3: reason, f8_e5m2: reason };
  }
  const reason = `its ${blocker.format} weights (such as ${blocker.weight.weightKey}) keep their codes and scales or are written dequantized: leave the types as they are, or choose bf16, f16 or f32`;
  return { f8_e4m3: reason, f8_e5m2: reason };
}

/** What the merge is asked for besides its inputs: the output dtype (undefined keeps each tensor's type) and the importance matrix read. */
export interface PlanSettings {
  dtype?: string;
  dtypeMergedOnly?: boolean;
  importance?: ImportanceMatrix;
  /**
   * Names the very files of the base and the adapters (their keys, sizes and times): where given, the
   * saved tensors' refusals found for these files at this dtype are kept for the next check, which
   * a moved slider makes (the weights change none of them); a modules_to_save lm_head of a GB is
   * then not read again for each.
   */
  filesKey?: string;
  /** Cancels the work (newer inputs made it stale): it stops reading, with the library's ABORTED error. */
  signal?: AbortSignal;
}

/**
 * The saved tensors' refusals last found, by the files and the output settings they were found for,
 * and the signal of the work that reads them (one cancelled is read again by the next).
 */
let savedRefusals: { key: string; refusals: Promise<string[]>; signal?: AbortSignal } | undefined;

function savedTensorLines(prepared: PreparedMerge, settings: PlanSettings): Promise<string[]> {
  const { signal } = settings;
  const options = { outDtype: settings.dtype, dtypeMergedOnly: settings.dtypeMergedOnly, importance: settings.importance, signal };
  if (settings.filesKey === undefined) return savedTensorRefusals(prepared, options);
  const key = JSON.stringify([settings.filesKey, settings.dtype ?? null, settings.dtypeMergedOnly ?? false, settings.importance?.file ?? null]);
  if (savedRefusals?.key !== key || savedRefusals.signal?.aborted) {
    const refusals = savedTensorRefusals(prepared, { ...options, only: 'saved' });
    savedRefusals = { key, refusals, signal };
    // A read that failed is made again by the next check, not kept.
    refusals.catch(() => { if (savedRefusals?.refusals === refusals) savedRefusals = undefined; });
  }
  return savedRefusals.refusals;
}

/**
 * Errors first (an adapter for another kind of model is one of them, named as such), then warnings,
 * as the CLI prints them. Among the errors, the refusals the merge would stop on before writing
 * anything that the headers alone do not show: a tensor an adapter saves whole (modules_to_save,
 * trainable tokens, a saved base_layer weight or bias) holding NaN/Inf or overflowing the output
 * dtype, in the merge's words (savedTensorRefusals); and with an importance matrix, the dry run's
 * check of it against the base (checkImportance). So Merge is off for them from the pick on.
 */
async function checkOf(prepared: PreparedMerge, settings: PlanSettings): Promise<PlanCheck> {
  const { plan } = prepared;
  const errors = plan.problems.map((p) => p.message);
  if (errors.length === 0) {
    errors.push(...await savedTensorLines(prepared, settings));
    // Kept, the saved tensors' lines leave the biases, whose updates the weights change, to be found again.
    if (settings.filesKey !== undefined) {
      errors.push(...await savedTensorRefusals(prepared, {
        outDtype: settings.dtype, dtypeMergedOnly: settings.dtypeMergedOnly, importance: settings.importance, signal: settings.signal, only: 'biases',
      }));
    }
    if (settings.importance) {
      try {
        checkImportance(prepared, settings.importance, settings.dtype, settings.dtypeMergedOnly);
      } catch (error) {
        // An output type the base cannot be written in is the dtype menu's to say (output.refused).
        if (!isMergeError(error)) throw error;
        if (error.message.startsWith('importance matrix ')) errors.push(error.message);
      }
    }
  }
  return {
    problems: [
      ...errors.map((message) => ({ severity: 'error' as const, message })),
      ...plan.warnings.map((message) => ({ severity: 'warning' as const, message })),
    ],
    mergeable: errors.length === 0,
  };
}

/**
 * The plan's problems at these weights, this output dtype and this importance matrix (a slider
 * moved, another type chosen, a matrix read or removed): headers only, nothing measured but the
 * tensors adapters save whole. A GGUF base's warnings then say what the chosen type does, not what
 * it would do unless another is chosen, and name the importance matrix as the CLI's plan does.
 */
export async function checkPlan(base: InputFileSet, adapters: readonly WeightedFiles[], settings: PlanSettings = {}): Promise<PlanCheck> {
  const prepared = await prepareMerge(base, adapters, { dtype: settings.dtype, ...(settings.importance ? { importance: settings.importance } : {}), signal: settings.signal });
  try {
    return await checkOf(prepared, settings);
  } finally {
    await prepared.close();
  }
}

/**
 * `importance`: the importance matrix read for a GGUF base, which the plan's warnings then name (the
 * CLI's plan with --imatrix); `filesKey` and `signal` as PlanSettings's.
 */
export async function summarizePlan(
  base: InputFileSet, adapters: readonly WeightedFiles[], importance?: ImportanceMatrix, filesKey?: string, signal?: AbortSignal,
): Promise<PlanSummary> {
  const prepared = await prepareMerge(base, adapters, { ...(importance ? { importance } : {}), signal });
  // The same inputs prepared at weight 1 (config.json's key maps, a tied head's decision and all):
  // scales and magnitudes the page multiplies by the sliders.
  let atOne: PreparedMerge | undefined;
  try {
    atOne = await prepareMerge(base, adapters.map(({ files, oneTrainerCoft }) => ({ files, weight: 1, ...(oneTrainerCoft !== undefined ? { oneTrainerCoft } : {}) })), { signal });
    const { plan } = prepared;
    const model = prepared.base;
    const unit = atOne.plan;
    const measured = await estimateUpdateMagnitudes(unit, realRowReader(atOne, signal));
    const placeOf = chartGrouper(model.tensors.keys());
    const touched = touchedKeys(plan);
    const heads = tiedHeads(prepared, touched);
    const withBias = modulesChangingBias(unit);
    return {
      ...await checkOf(prepared, { importance, filesKey, signal }),
      base: { name: base.name, ...baseFactsOf(model), kind: model.kind },
      // A tensor's own reason (a scaled fp8 file keeps its fp8 type) wins over the base's.
      output: { ...model.format.outputChoices, refused: { ...quantizedBaseTypes(prepared.scaledFp8), ...refusedTypes(model, touched) } },
      adapters: prepared.adapters.map(({ adapter }, i) => summarizeAdapter(adapter, modulesAsPlanned(plan, i, adapter.modules))),
      modules: [...unit.updates.flatMap((u) => u.terms.map((t) => moduleOf(t, u.baseKey, u.shape, withBias.has(id(t.adapterIndex, t.moduleName))))), ...biasOnlyModules(unit)],
      leftOut: plan.leftOut.map((m) => ({ adapter: m.adapterIndex, module: m.module, reason: m.reason })),
      notes: plan.notes.slice(),
      magnitudes: measured.map((m) => ({
        adapter: m.adapterIndex, module: m.module, target: m.baseKey, place: placeOf(m.baseKey), ratio: m.ratio,
      })),
      files: model.shards.map((s) => ({
        path: s.path,
        tensors: s.tensors.length,
        changed: s.tensors.filter((t) => touched.has(s.keyPrefix + t.name)).length,
        // A view tensor decoded from another storage says the type it is written in (formats/bnb/).
        dequantized: s.tensors.filter((t) => t.writeType !== undefined).length,
        mirrorable: s.mirrorIfUnchanged,
        ...(heads.has(s.path) ? { head: heads.get(s.path) } : {}),
      })),
      copied: model.otherFiles.slice(),
    };
  } finally {
    await Promise.all([prepared.close(), atOne?.close()]);
  }
}
