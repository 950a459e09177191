/**
 * A base model as the merge sees it, whatever file format holds it (container.ts), and its
 * safetensors form: one file, a Hugging Face transformers folder (`model.safetensors`, or shards
 * `model-0000x-of-0000y.safetensors` with `model.safetensors.index.json`), a diffusers component
 * folder (`diffusion_pytorch_model…` likewise), a whole diffusers pipeline folder, or any folder
 * holding exactly one `.safetensors` file. Only headers are read when opening; tensors are read one
 * at a time on demand. Pickle checkpoints are refused, never unpickled.
 */
import { isHttpUrl } from '../api-arguments.js';
import { Pacer } from '../event-turns.js';
import { decodeToF32, isFloatDType, type DType } from '../dtype.js';
import type { FloatTensorBytes } from '../engine/merge-op.js';
import { MergeError } from '../errors.js';
import { MAX_TENSORS } from '../limits.js';
import type { MergePlan, PlanProblem, ValueScale } from '../plan/merge-plan.js';
import type { ParsedAdapter } from './adapter.js';
import type { ImportanceMatrix } from './gguf/imatrix.js';
import type { RowDecodeRunner } from './row-decoders.js';
import { parseBoundedJson, shownValue } from './bounded-json.js';
import type { InputFileSet } from '../io/types.js';
import type { BaseComponent, CombinedPrior, EncoderKind, WeightlessFolder } from './base-components.js';
import type { ContainerFormat, StoredShard } from './container.js';
import { indexFields, safetensorsContainer, type BaseIndexFile, type ShardIndex } from './safetensors-container.js';
import { openSafetensors } from './safetensors-reader.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';
import { product } from '../integers.js';
import { archiveRefusal, configFileRefusal, pathIn } from './foreign-file.js';
import { nunchakuSplitFolderRefusal } from './nunchaku-svdquant.js';
import { namesWan22Expert } from './layouts/wan22-combined-experts.js';
import { byT5Config, CLIP_TEXT_CLASS, comfyT5ByShape, hasT5EncoderKeys, identifyClipFolders, notByT5Config, pipelineClip, pipelineClipNeedsDenoiser, type ClipFolder, type ClipIdentity } from './pipeline-encoders.js';

export type { BaseIndexFile, ShardIndex };

/** How the base is laid out: one file, a transformers folder, a diffusers folder or pipeline, another folder, or a GGUF (one file or split). */
export type BaseModelKind = 'file' | 'transformers' | 'diffusers' | 'folder' | 'pipeline' | 'gguf';

/** One tensor of the base: where it lives and what it holds. */
export interface BaseTensor {
  /** The tensor's key in the base: its name in its file, after the shard's key prefix. */
  name: string;
  /** The float dtype the plan and the engine see: the stored dtype, or F32 for GGUF block types. */
  dtype: DType;
  shape: number[];
  /** Relative path of the shard holding it. */
  shard: string;
  /** The file's own type (`BF16`, `Q4_K`) and the tensor's stored size. */
  storedType: string;
  byteLength: number;
  /** Why the stored shape may not be the model's (a converter reshaped it), said where a ΔW does not fit it. */
  shapeNote?: string;
  /**
   * The tensors it is decoded from, where the file holds it as others ("decoded from MXFP4
   * `x_blocks` … and `x_scales` …"), said where a module does not fit it.
   */
  decodedFrom?: string;
  /**
   * The shape the file holds and the output is written in, where `shape` (what the plan sees)
   * differs: mlx's stacked experts (E, out, in), seen as (E·out, in).
   */
  storedShape?: readonly number[];
  /**
   * Rows of the presented shape that hold whole blocks of the stored type, where one row does not
   * (a tensor stored reshaped, seen in its real shape): slabs are cut in runs of this many rows.
   */
  rowBlock?: number;
  /**
   * A stack of this many experts (E, out, in) the plan sees as its E·out rows (a GGUF `_exps`
   * tensor): messages name its rows by expert and row.
   */
  experts?: number;
}

/** One weight file of a base, its tensors under the names the file uses. */
export interface BaseShard extends StoredShard {
  /** The file as the user's system names it, for messages. */
  readonly sourceName: string;
  /** Put before each tensor's name to make its key (`unet.` in a diffusers pipeline; else ''). */
  readonly keyPrefix: string;
  /** A pipeline component's file: copied byte for byte when nothing in it changes. */
  readonly mirrorIfUnchanged: boolean;
}

/** A safetensors shard also exposes its parsed file. */
export interface SafetensorsShard extends BaseShard {
  readonly file: SafetensorsFile;
}

/** A base model opened for merging: its shards, tensors and the other files copied unchanged. */
export interface BaseModel {
  readonly kind: BaseModelKind;
  /** The input as the user named it. */
  readonly name: string;
  readonly tensors: ReadonlyMap<string, BaseTensor>;
  /** Weight files in order (one unless sharded; one or more per component of a pipeline), each with its tensors in file order. */
  readonly shards: readonly BaseShard[];
  /** Relative path of the index file, when sharded with one (one model, not a pipeline). */
  readonly indexPath?: string;
  /**
   * The model's components when the files say what they are (a pipeline's folders, a component
   * folder's name); otherwise the plan finds them from the key names.
   */
  readonly components?: readonly BaseComponent[];
  /**
   * A pipeline's text encoder folders that its model_index.json lists with a class but that hold no
   * .safetensors weights (a download of transformer/ and model_index.json alone): a module for one
   * of them is refused naming the folder, not left out as on a base that has no such encoder.
   */
  weightlessEncoders?: readonly WeightlessFolder[];
  /** A combined pipeline's prior folders, which no LoRA name routes to (CombinedPrior). */
  combinedPrior?: CombinedPrior;
  /** Things the user should know about the base (weight files that will not be written). */
  readonly warnings: readonly string[];
  /** Small files to copy unchanged into a merged folder: configs, tokenizer, README… */
  readonly otherFiles: readonly string[];
  /**
   * Scaled fp8 checkpoints (a `scaled_fp8` marker and a `scale_weight` per weight, as Comfy-Org
   * ships Flux and SD3.5): weight key → the scale its stored values are multiplied by.
   */
  readonly valueScales?: ReadonlyMap<string, number>;
  /**
   * Weights whose stored values the model multiplies by a scale held in a tensor of its own, which
   * a merge keeps as it is (llama.cpp's `<name>.scale`, gguf/kept-scales.ts): weight key → scale.
   */
  readonly keptScales?: ReadonlyMap<string, ValueScale>;
  /** How the file format reads, converts and writes tensors. */
  readonly format: ContainerFormat;
  /** A whole tensor's stored bytes. */
  read(name: string): Promise<Uint8Array>;
  /**
   * `length` stored bytes of a tensor from byte `start` of its data. `into`: a buffer of `length`
   * bytes offered for them (see ByteSource.read); callers use what is returned. `decodeOn`: where a
   * tensor of a view decoded from quantized ones may be decoded (row-decoders.ts; the CPU backend's
   * threads), else the calling thread.
   */
  readPart(name: string, start: number, length: number, into?: Uint8Array, decodeOn?: RowDecodeRunner): Promise<Uint8Array>;
  /** `rowCount` rows (of the tensor's first dimension) from `rowStart`, decoded for the engine. */
  readRows(name: string, rowStart: number, rowCount: number): Promise<FloatTensorBytes>;
  /** A value of the file's own typed metadata (GGUF), for layouts that need it; safetensors has none. */
  metadata?(key: string): unknown;
  /**
   * Throws where the file is no model to merge into (a GGUF multimodal projector), naming it: called
   * before anything of the adapters is checked against the base, whose misses would say less.
   */
  refuseAsBase?(): void;
  /** Problems only the file format knows of (a tensor of a type it cannot rewrite, an adapter for another architecture). */
  planProblems?(plan: MergePlan, adapters: readonly ParsedAdapter[]): PlanProblem[];
  /**
   * What the user should know about how the file format will store the merge; `dtype`, where the
   * caller already knows it (the command line's --dtype, merge()'s dtype), the type asked for, and
   * `importance`, the importance matrix the merge will quantize with (--imatrix, merge()'s importance).
   */
  planWarnings?(plan: MergePlan, dtype?: string, importance?: ImportanceMatrix): string[];
  /** Releases the open files. */
  close(): Promise<void>;
}

/** A safetensors base model: its shards' parsed files, and its index files. */
export interface SafetensorsBaseModel extends BaseModel {
  readonly shards: readonly SafetensorsShard[];
  /** The index's fields other than its weight map, when sharded with one (one model, not a pipeline). */
  readonly index?: BaseIndexFile['fields'];
  /** Every index file (a pipeline has one per sharded component). */
  readonly indexes: readonly BaseIndexFile[];
}

const SAFETENSORS = /\.safetensors$/i;
/** Weight formats we never open: pickles (code execution on load) and other frameworks' weights. */
const PICKLE = /\.(bin|pt|pth|ckpt|pkl|pickle)$/i;
const OTHER_WEIGHTS = /\.(gguf|h5|msgpack|onnx|onnx_data|ot|tflite)$/i;
/** `*.bin.index.json`, `*.h5.index.json`: indexes of weights that are not copied either. */
const WEIGHT_INDEX = /\.(safetensors|bin|h5|msgpack|pt)\.index\.json$/i;
const SHARD = /^(model|diffusion_pytorch_model)-(\d+)-of-(\d+)\.safetensors$/;

const LAYOUTS: { kind: BaseModelKind; stem: string }[] = [
  { kind: 'transformers', stem: 'model' },
  { kind: 'diffusers', stem: 'diffusion_pytorch_model' },
];

export async function openBaseModel(files: InputFileSet, pacer: Pacer = new Pacer()): Promise<SafetensorsBaseModel> {
  const list = files.list();
  if (list.includes(MODEL_INDEX) || list.includes(MODULAR_INDEX)) return openPipeline(files, list, pacer);
  const layout = await detectLayout(files, list);
  const folder = files.name.replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? '';
  // A text encoder folder's config.json says its class, and which CLIP a CLIP is.
  const config = /^text_encoder(_\d)?$/.test(folder) && list.includes('config.json') ? await readConfig(files, 'config.json') : undefined;
  // Weights beside the model's own (Mistral's consolidated.safetensors, gpt-oss's original/,
  // a pytorch_model.bin copy) are neither merged nor copied: said, as for a pipeline's components.
  const used = new Set([...layout.shardPaths, ...(layout.indexPath ? [layout.indexPath] : [])]);
  const dropped = list.filter((p) => isWeightFile(p) && !used.has(p));
  const warnings = dropped.length ? [`${files.name}: ${dropped.join(', ')} not written (the merge writes ${layout.shardPaths.join(', ')})`] : [];
  return openShards(files, layout.kind, [{ folder: '', layout }], list.filter((p) => !isWeightFile(p) && p !== layout.indexPath), warnings,
    (tensors) => folderComponent(folder, config, tensors), pacer);
}

interface ComponentFiles {
  /** '' for a model on its own; the component's folder in a pipeline. */
  folder: string;
  layout: Layout;
  component?: Omit<BaseComponent, 'keys'>;
}

/** Opens every shard of every component, checks shards and indexes agree, and builds the model. */
async function openShards(
  files: InputFileSet, kind: BaseModelKind, parts: ComponentFiles[], otherFiles: string[], warnings: string[],
  components: (tensors: ReadonlyMap<string, BaseTensor>) => BaseComponent[] | undefined, pacer: Pacer,
): Promise<SafetensorsBaseModel> {
  const shards: SafetensorsShard[] = [];
  try {
    const tensors = new Map<string, BaseTensor>();
    const indexes: BaseIndexFile[] = [];
    for (const { folder, layout } of parts) {
      const at = (p: string) => (folder ? `${folder}/${p}` : p);
      const keyPrefix = folder ? `${folder}.` : '';
      const mine: SafetensorsShard[] = [];
      for (const path of layout.shardPaths) {
        // Each header is parsed in one piece (tens of ms for tens of thousands of tensors): a base of
        // hundreds of shards is seconds of them, so a cancel is looked for between them.
        await pacer.tick();
        const source = await files.open(at(path));
        try {
          const file = await openSafetensors(source);
          const shard: SafetensorsShard = {
            path: at(path), file, sourceName: source.name, keyPrefix, mirrorIfUnchanged: folder !== '',
            tensors: file.tensors.map((e) => ({ name: e.name, type: e.dtype, shape: e.shape, byteLength: e.byteLength })),
          };
          mine.push(shard);
          shards.push(shard); // closed on failure from here on
        } catch (e) {
          await source.close();
          throw e;
        }
        // Checked shard by shard, so that many full shards cannot add up before the check.
        const count = shards.reduce((n, s) => n + s.file.tensors.length, 0);
        if (count > MAX_TENSORS) {
          throw new MergeError('LIMIT_EXCEEDED', `${files.name}: more than ${MAX_TENSORS} tensors over its files (the limit MAX_TENSORS)`);
        }
      }
      const indexPath = layout.indexPath ? at(layout.indexPath) : undefined;
      collectTensors(files.name, mine, indexPath, layout.index, tensors);
      if (indexPath && layout.index) indexes.push({ path: indexPath, fields: indexFields(layout.index), shards: mine.map((m) => m.path) });
    }
    const single = parts.length === 1 ? indexes[0] : undefined;
    const model = new OpenedBaseModel(kind, files.name, tensors, shards, otherFiles, indexes, warnings, single);
    model.components = components(tensors);
    if ([...tensors.keys()].some(isScaledFp8Marker)) model.valueScales = await readValueScales(model);
    return model;
  } catch (e) {
    await Promise.all(shards.map((s) => s.file.source.close()));
    throw e;
  }
}

// --- diffusers pipelines ---------------------------------------------------------------------

const MODEL_INDEX = 'model_index.json';
/** diffusers' Modular Pipelines index (ModularPipeline.config_name), which some repositories (MiniMax-H3's) carry alone. */
const MODULAR_INDEX = 'modular_model_index.json';

/** A component entry of modular_model_index.json: `[library, class, loading spec]` (ModularPipeline.__init__ reads a list of three as one). */
const isModularEntry = (value: unknown): value is [unknown, unknown, unknown] => Array.isArray(value) && value.length === 3;

/**
 * A modular_model_index.json read as the model_index.json diffusers' DiffusionPipeline would read
 * for the same folder: each component entry `[library, class, {type_hint, pretrained_model_name_or_path,
 * subfolder, variant, revision}]` becomes `[library, class]` (the class its spec's type_hint gives,
 * which ModularPipeline._dict_to_component_spec loads, else the entry's own), every other field
 * (`_class_name`, config values) is kept. ModularPipeline loads each component from its spec's
 * repository and subfolder, not from the folder it reads the index in: a component with weights here
 * is merged only where its spec names the repository the folder's components name (a download of that
 * repository; save_pretrained writes the one repository or folder into every entry) and its own name
 * as subfolder, so that the merged folder is the one diffusers loads. Anything else is refused by name.
 * Returns the model_index.json-shaped spec and the repository its components load from.
 */
function modularAsModelIndex(name: string, raw: unknown, list: readonly string[]): { spec: Record<string, unknown>; repository: string | undefined } {
  const where = `${name}/${MODULAR_INDEX}`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new MergeError('BAD_CONFIG', `${where}: expected a JSON object`);
  const entries = Object.entries(raw as Record<string, unknown>).filter(([k, v]) => !k.startsWith('_') && isModularEntry(v));
  const loading = new Map<string, Record<string, unknown>>();
  for (const [k, v] of entries) {
    const spec = (v as unknown[])[2];
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
      throw new MergeError('BAD_CONFIG', `${where}: "${k}" is ${JSON.stringify(v).slice(0, 200)}, whose loading spec is not an object (diffusers reads ${k}'s repository and subfolder from it): fix modular_model_index.json`);
    }
    loading.set(k, spec as Record<string, unknown>);
  }
  const repositoryOf = (spec: Record<string, unknown>) => {
    const repo = spec.pretrained_model_name_or_path;
    return typeof repo === 'string' && repo ? repo : undefined;
  };
  // The repository the folder's components load from: the one most entries name (all of them, in a
  // repository diffusers' save_pretrained or a conversion script wrote); none where two tie.
  const counts = new Map<string, number>();
  for (const spec of loading.values()) {
    const repo = repositoryOf(spec);
    if (repo !== undefined) counts.set(repo, (counts.get(repo) ?? 0) + 1);
  }
  const ranked = [...counts].sort((a, b) => b[1] - a[1]);
  const repository = ranked.length > 0 && (ranked.length === 1 || ranked[0][1] > ranked[1][1]) ? ranked[0][0] : undefined;
  const holdsWeights = (folder: string) => list.some((p) => p.startsWith(`${folder}/`) && isWeightFile(p));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const spec = loading.get(k);
    if (!spec || !isModularEntry(v)) {
      out[k] = v;
      continue;
    }
    const hint = spec.type_hint;
    const [library, className] = Array.isArray(hint) && hint.length === 2 && typeof hint[1] === 'string' ? hint : [v[0], v[1]];
    out[k] = [library, className];
    const subfolder = spec.subfolder;
    const sub = typeof subfolder === 'string' ? subfolder.replace(/\/+$/, '') : '';
    if (!holdsWeights(k) && !(sub && holdsWeights(sub))) continue; // not in this download: its files, if any, are copied
    const refuse = (why: string): never => {
      throw new MergeError('UNSUPPORTED_FORMAT', `${where}: "${k}" ${why}; not supported — give a folder whose modular_model_index.json loads ${k} from this repository's ${k}/ folder, or merge the component's folder on its own`);
    };
    const repo = repositoryOf(spec);
    if (repo === undefined) refuse(`names no pretrained_model_name_or_path, so diffusers' ModularPipeline does not load ${k} from this repository and the merged ${k}/ would not be used`);
    if (repository === undefined) refuse(`loads from ${repo}, and this index's components name ${ranked.length} repositories equally often (${ranked.map(([r]) => r).join(', ')}), so which of them this folder is cannot be told`);
    if (repo !== repository) refuse(`loads from ${repo}, another repository than the one this folder's other components load from (${repository}): diffusers' ModularPipeline would not load the merged ${k}/`);
    if (sub !== k) {
      refuse(sub && holdsWeights(sub)
        ? `loads from subfolder ${sub}/, not ${k}/ (a component read from a folder not named after it is not merged here)`
        : `loads from subfolder ${sub ? `${sub}/` : '(none: the repository\'s root)'}, which this folder does not hold with weights, while ${k}/ does`);
    }
    const variant = spec.variant;
    if (variant !== undefined && variant !== null) refuse(`names variant ${JSON.stringify(variant).slice(0, 80)} (diffusers loads that variant's weight files), which is not read here`);
  }
  return { spec: out, repository };
}

/**
 * A whole diffusers pipeline (model_index.json with unet/, transformer/, text_encoder…/, vae/):
 * every component with safetensors weights is opened, its tensors keyed `<folder>.<name>` so that
 * diffusers LoRA keys (`unet.…`, `text_encoder_2.…`) and kohya's parts find them; everything else
 * (scheduler, tokenizers, configs) is copied. Weight files a component does not load (another
 * variant, a pickle beside the safetensors) are not written, and the user is told.
 */
async function openPipeline(files: InputFileSet, list: string[], pacer: Pacer): Promise<SafetensorsBaseModel> {
  // A folder with modular_model_index.json alone is read through it; one with both files is read as
  // before, through model_index.json, once the two are found to agree (DiffusionPipeline reads one,
  // ModularPipeline the other: a folder where they disagree loads two different pipelines).
  const modular = list.includes(MODULAR_INDEX)
    ? modularAsModelIndex(files.name, parseBoundedJson(await files.readText(MODULAR_INDEX), `${files.name}/${MODULAR_INDEX}`), list)
    : undefined;
  const indexName = list.includes(MODEL_INDEX) ? MODEL_INDEX : MODULAR_INDEX;
  const where = `${files.name}/${indexName}`;
  const spec = indexName === MODEL_INDEX ? parseBoundedJson(await files.readText(MODEL_INDEX), where) : modular!.spec;
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new MergeError('BAD_CONFIG', `${where}: expected a JSON object`);
  if (modular && indexName === MODEL_INDEX) indexesAgree(files.name, spec as Record<string, unknown>, modular.spec, list);
  const parts: ComponentFiles[] = [];
  const weightFiles = new Set<string>();
  const warnings: string[] = [];
  if (modular && indexName === MODULAR_INDEX) {
    warnings.push(`${files.name}: ${MODULAR_INDEX} is copied as it is, and its components load from ${modular.repository ?? 'the repositories it names'}: `
      + 'diffusers\' ModularPipeline.from_pretrained on the merged folder loads them from there, not the merged weights; '
      + 'set their pretrained_model_name_or_path in the merged folder\'s copy to that folder\'s path (as save_pretrained writes it), or load the merged components from its subfolders');
  }
  const clips: ClipFolder[] = [];
  const weightless: WeightlessFolder[] = [];
  const className = (spec as Record<string, unknown>)._class_name;
  const pipelineClass = typeof className === 'string' && className ? className : undefined;
  // Which CLIP a folder without a deciding config.json holds, by what its pipeline's class runs there
  // (pipeline-encoders.ts pipelineClip); SD1's and SD2's class is one, told by its UNet's config.json,
  // read once and only for that: one that cannot be read says nothing (the folder then goes by its
  // position, and says so), and is left to whatever else reads it to refuse.
  let denoiserConfig: Promise<unknown> | undefined;
  const readDenoiserConfig = () => (denoiserConfig ??= pipelineClipNeedsDenoiser(pipelineClass) && list.includes('unet/config.json')
    ? readConfig(files, 'unet/config.json').catch((e: unknown) => {
      if (e instanceof MergeError) return undefined;
      throw e;
    })
    : Promise.resolve(undefined));
  const clipComponents = new Map<string, Omit<BaseComponent, 'keys'>>();
  const clipFolder = async (folder: string, component: Omit<BaseComponent, 'keys'>, inside: string[]): Promise<void> => {
    const byClass = pipelineClip(pipelineClass, folder, await readDenoiserConfig());
    clips.push({ folder, ordinal: component.ordinal!, config: inside.includes('config.json') ? await readConfig(files, `${folder}/config.json`) : undefined, byClass });
    clipComponents.set(folder, component);
  };
  // A CLIP folder under a name not read as a text encoder (`prior_text_encoder`: the combined
  // pipelines' copy of the prior's CLIP, or Kandinsky's only CLIP; StableUnCLIP's prior CLIP): a CLIP
  // module might be meant for it, or reach one copy of a CLIP and not the other.
  const unroutedClip = Object.entries(spec as Record<string, unknown>).find(([folder, value]) => !folder.startsWith('_') && Array.isArray(value)
    && typeof value[1] === 'string' && CLIP_TEXT_CLASS.test(value[1]) && pipelineComponent(folder, value[1]) === undefined);
  for (const [folder, value] of Object.entries(spec as Record<string, unknown>)) {
    if (folder.startsWith('_') || !Array.isArray(value) || !/^[\w.-]+$/.test(folder)) continue;
    const inside = list.filter((p) => p.startsWith(`${folder}/`)).map((p) => p.slice(folder.length + 1));
    const weights = inside.filter(isWeightFile);
    if (!weights.some((p) => SAFETENSORS.test(p))) {
      const pickle = weights.find((p) => PICKLE.test(p));
      if (pickle) throw new MergeError('PICKLE_REFUSED', `${files.name}: ${folder}/${pickle} is a pickle file; loramerge reads weights from .safetensors and .gguf files only (convert the ${folder} component to .safetensors first)`);
      // A text encoder diffusers would load (a class, not [null, null]) but whose weights are not here.
      const component = typeof value[1] === 'string' && value[1] ? pipelineComponent(folder, value[1], pipelineClass) : undefined;
      if (component?.role === 'text-encoder') {
        // Its config.json, where it was downloaded, says which LLM, T5 or CLIP it is, as on a folder
        // with weights (a CLIP's kind is told below, with the others').
        if (CLIP_TEXT_CLASS.test(component.className ?? '')) await clipFolder(folder, component, inside);
        else if (inside.includes('config.json')) {
          const config = await readConfig(files, `${folder}/config.json`);
          withLlmConfig(component, config);
          withT5Config(component, config);
        }
        weightless.push({ folder, className: value[1] as string, component });
      }
      continue; // no weights: its files are copied
    }
    const layout = await detectLayout({ ...files, name: `${files.name}/${folder}`, readText: (p) => files.readText(`${folder}/${p}`), open: (p) => files.open(`${folder}/${p}`) }, weights);
    for (const p of weights) weightFiles.add(`${folder}/${p}`);
    const used = new Set([...layout.shardPaths, ...(layout.indexPath ? [layout.indexPath] : [])]);
    const dropped = weights.filter((p) => !used.has(p));
    if (dropped.length) warnings.push(`${files.name}: ${dropped.map((p) => `${folder}/${p}`).join(', ')} not written (the merge writes ${layout.shardPaths.map((p) => `${folder}/${p}`).join(', ')})`);
    // diffusers imports the class by that name: anything but a string (or null, a folder it skips) cannot be loaded.
    const folderClass: unknown = value[1];
    if (folderClass !== undefined && folderClass !== null && typeof folderClass !== 'string') {
      throw new MergeError('BAD_CONFIG', `${where}: "${folder}" is ${JSON.stringify(value).slice(0, 200)}, whose class is not a string (diffusers loads ${folder}/ by its class's name): fix model_index.json`);
    }
    const component = pipelineComponent(folder, folderClass ?? '', pipelineClass);
    if (component?.role === 'text-encoder' && CLIP_TEXT_CLASS.test(component.className ?? '')) {
      await clipFolder(folder, component, inside);
    } else if (component?.role === 'text-encoder' && inside.includes('config.json')) {
      const config = await readConfig(files, `${folder}/config.json`);
      withLlmConfig(component, config);
      withT5Config(component, config);
    }
    parts.push({ folder, layout, component });
  }
  if (parts.length === 0) throw new MergeError('NOT_FOUND', `${files.name}: ${indexName} names no component with .safetensors weights`);
  // Wan 2.2 A14B's low-noise expert beside its high-noise transformer/: diffusers' load_lora_weights
  // loads into transformer/ unless told load_into_transformer_2, and so does the merge. Where the
  // pipeline says which expert is which, ai-toolkit's combined LoRA names each (wan22Experts), and
  // the warning waits for the plan: a merge that changes transformer_2/ has not left it as it is.
  const experts = wan22Experts(spec as Record<string, unknown>, parts);
  let planWarnings: ((plan: MergePlan) => string[]) | undefined;
  if (parts.some((p) => p.folder === 'transformer')) {
    for (const { folder } of parts.filter((p) => /^transformer_\d+$/.test(p.folder))) {
      const className = (spec as Record<string, unknown[]>)[folder][1];
      const leftAsItIs = `${files.name}: ${folder}/ (${typeof className === 'string' && className ? className : 'a transformer'}, the second expert of a model with two) is left as it is: a LoRA merges into transformer/, as diffusers' load_lora_weights loads one unless told load_into_transformer_2; to merge into ${folder}/, give that folder as the base`;
      if (experts && folder === 'transformer_2') planWarnings = (plan) => secondExpertWarnings(plan, files.name, leftAsItIs);
      else warnings.push(leftAsItIs);
    }
  }
  // Which CLIP each CLIP folder holds, with weights or without, from its config.json or else its
  // pipeline's class (pipeline-encoders.ts); a weightless folder judged by its position says so.
  const byPosition = new Map<string, string>();
  for (const [folder, found] of identifyClipFolders(clips)) {
    const identity: ClipIdentity = unroutedClip ? {
      doubt: `model_index.json also lists ${unroutedClip[0]} (${(unroutedClip[1] as string[])[1]}), a CLIP folder${pipelineClass ? ` of its ${pipelineClass}` : ''} whose name is not read as a text encoder here, so which of its CLIP folders a CLIP module would reach cannot be told; give a pipeline folder without it (a combined pipeline's prior or decoder pipeline on its own)`,
    } : found;
    withClipIdentity(clipComponents.get(folder)!, identity);
    if (identity.byPosition !== undefined) byPosition.set(folder, identity.byPosition);
  }
  const leftOut = strayWeights(files.name, spec as Record<string, unknown>, list, weightFiles, warnings, indexName);
  const model = await openShards(files, 'pipeline', parts, list.filter((p) => !weightFiles.has(p) && !leftOut.has(p)), warnings, (tensors) => parts
    .filter((p) => p.component)
    .map((p) => ({ ...p.component!, keys: [...tensors.keys()].filter((k) => k.startsWith(`${p.folder}.`)) })), pacer);
  if (planWarnings) model.planWarnings = planWarnings;
  const prior = combinedPrior(spec as Record<string, unknown>, parts, pipelineClass, unroutedClip, clips.length > 0);
  if (prior) model.combinedPrior = prior;
  if (weightless.length > 0) model.weightlessEncoders = weightless.map((w) => (byPosition.has(w.folder) ? { ...w, byPosition: byPosition.get(w.folder)! } : w));
  return model;
}

/**
 * A folder holding both model_index.json and modular_model_index.json: each component with weights
 * must be listed by both with one class (the modular entry already checked to load from this
 * folder), or diffusers' DiffusionPipeline and ModularPipeline would load different pipelines from it.
 */
function indexesAgree(name: string, index: Record<string, unknown>, modular: Record<string, unknown>, list: readonly string[]): void {
  const classOf = (value: unknown) => (Array.isArray(value) ? JSON.stringify(value[1] ?? null) : undefined);
  const folders = new Set([...Object.keys(index), ...Object.keys(modular)].filter((k) => !k.startsWith('_')
    && (Array.isArray(index[k]) || Array.isArray(modular[k])) && list.some((p) => p.startsWith(`${k}/`) && isWeightFile(p))));
  for (const k of folders) {
    const a = classOf(index[k]);
    const b = classOf(modular[k]);
    if (a === b) continue;
    throw new MergeError('UNSUPPORTED_FORMAT', `${name}: ${MODEL_INDEX} and ${MODULAR_INDEX} disagree on "${k}" (${MODEL_INDEX}: ${a ?? 'not listed'}; ${MODULAR_INDEX}: ${b ?? 'not listed'}), so diffusers' DiffusionPipeline and ModularPipeline load different pipelines from this folder; not supported — remove the index that does not describe it`);
  }
}

/** A weight file name diffusers' download and loading take as a component's (pipeline_loading_utils.py variant_compatible_siblings). */
const FLAT_COMPONENT = /^(model|diffusion_pytorch_model|pytorch_model)(-\d{5}-of-\d{5})?(\.[\w-]+)?\.(safetensors|bin)(\.index(\.[\w-]+)?\.json)?$/;

/**
 * Weight files of a pipeline folder outside the folders its model_index.json lists: the single-file
 * checkpoints a Hub repository keeps beside its diffusers folders (FLUX.1-dev's `flux1-dev.safetensors`
 * and `ae.safetensors`, SDXL's `sd_xl_base_1.0.safetensors`, SD3.5's `text_encoders/`), which
 * diffusers neither downloads nor loads with the pipeline (DiffusionPipeline.download fetches
 * the listed folders' files and, at the root, only diffusers' own weight names). The merge writes
 * the listed folders' weights; a copy of one of these in the merged folder would be the base
 * unmerged under a name ComfyUI and A1111 load, so they are left out, and the user is told.
 * Weights under diffusers' own names at the root are refused (FLAT_COMPONENT). Returns them; pushes the warnings.
 */
function strayWeights(name: string, spec: Record<string, unknown>, list: readonly string[], weightFiles: ReadonlySet<string>, warnings: string[], indexName = MODEL_INDEX): Set<string> {
  const listed = (p: string) => {
    const slash = p.indexOf('/');
    return slash > 0 && Array.isArray(spec[p.slice(0, slash)]) && !p.slice(0, slash).startsWith('_');
  };
  const stray = list.filter((p) => isWeightFile(p) && !weightFiles.has(p) && !listed(p));
  if (stray.length === 0) return new Set();
  // Weights under diffusers' or transformers' own names at the root are a component that diffusers
  // loads from there (a flat, transformers-style pipeline: diffusers PR #14096), not a copy to leave out.
  const flat = stray.find((p) => FLAT_COMPONENT.test(p));
  if (flat) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${name}: ${flat} at the root of a diffusers pipeline folder is a component diffusers loads from there (a flat, transformers-style layout), which is not merged here; merge that component on its own (its files in a folder without model_index.json)`);
  }
  const one = stray.length === 1;
  const readable = stray.some((p) => SAFETENSORS.test(p) || /\.gguf$/i.test(p));
  warnings.push(`${name}: ${stray.join(', ')} not written: ${one ? 'it is' : 'they are'} outside the folders ${indexName} lists, which the diffusers pipeline loads and the merge writes, `
    + `and ${one ? 'a copy' : 'copies'} would be left unmerged (a single-file checkpoint beside those folders is the base model as it was), so ${one ? 'it is' : 'they are'} left out of the output`
    + (readable ? `; to merge ${one ? 'it' : 'one of them'}, give ${one ? 'it' : 'that file'} as the base on its own` : ''));
  return new Set(stray);
}

/**
 * A combined pipeline's prior folders with weights (`prior_prior/`, `prior_text_encoder/`,
 * `prior_image_encoder/`: diffusers' combined pipelines register the prior pipeline's components under
 * `prior_` + their name), which are no component here; and, where its only CLIP folder is the
 * prior's (KandinskyV22CombinedPipeline), why a module naming a CLIP is refused.
 */
function combinedPrior(
  spec: Record<string, unknown>, parts: readonly ComponentFiles[], pipelineClass: string | undefined, unroutedClip: [string, unknown] | undefined, routedClips: boolean,
): CombinedPrior | undefined {
  const folders = parts.filter((p) => !p.component && p.folder.startsWith('prior_'))
    .map((p) => ({ folder: p.folder, className: String((spec[p.folder] as unknown[])[1] ?? '') }));
  if (folders.length === 0 && !unroutedClip) return undefined;
  const named = pipelineClass ?? 'pipeline';
  const clipDoubt = unroutedClip && !routedClips
    ? `only CLIP folder is ${unroutedClip[0]} (${(unroutedClip[1] as string[])[1]}), the prior's text encoder in its ${named}, a folder not read as a text encoder here (diffusers' combined pipelines load no LoRA): give the prior pipeline's own folder, where it is text_encoder/, as the base`
    : undefined;
  return { pipelineClass: named, folders, ...(clipDoubt ? { clipDoubt } : {}) };
}

/**
 * A Wan 2.2 A14B pipeline's two experts, where model_index.json says which is which: `transformer`
 * and `transformer_2` both WanTransformer3DModel, and a numeric `boundary_ratio` (pipeline_wan.py,
 * pipeline_wan_i2v.py: `transformer` denoises timesteps t >= boundary_ratio · num_train_timesteps,
 * the high-noise ones, `transformer_2` those below). ai-toolkit loads its two experts from these two
 * folders (wan22_14b_model.py: transformer_1 from `transformer`, transformer_2 from `transformer_2`,
 * transformer_1 at timesteps above the boundary). Each part gets its expert; undefined elsewhere.
 */
function wan22Experts(spec: Record<string, unknown>, parts: ComponentFiles[]): true | undefined {
  const wan = (folder: string) => Array.isArray(spec[folder]) && (spec[folder] as unknown[])[1] === 'WanTransformer3DModel';
  const high = parts.find((p) => p.folder === 'transformer')?.component;
  const low = parts.find((p) => p.folder === 'transformer_2');
  if (!high || !low || !wan('transformer') || !wan('transformer_2') || typeof spec.boundary_ratio !== 'number') return undefined;
  high.noiseExpert = 'high-noise';
  low.component = { name: 'the transformer_2 (WanTransformer3DModel)', role: 'denoiser', prefix: 'transformer_2.', noiseExpert: 'low-noise' };
  return true;
}

/**
 * What to say of a Wan 2.2 pipeline's transformer_2/ once the plan is made: nothing lands there,
 * `leftAsItIs`; something does (ai-toolkit's combined LoRA's low-noise expert), then only that the
 * adapters' other denoiser modules merge into transformer/ alone, where any do.
 */
function secondExpertWarnings(plan: MergePlan, name: string, leftAsItIs: string): string[] {
  const landed = [...plan.updates, ...plan.biasUpdates];
  if (!landed.some((u) => u.baseKey.startsWith('transformer_2.'))) return [leftAsItIs];
  const alone = new Set(landed
    .filter((u) => u.baseKey.startsWith('transformer.'))
    .flatMap((u) => u.terms.filter((t) => !namesWan22Expert(t.moduleName)).map((t) => t.adapter)));
  if (alone.size === 0) return [];
  return [`${name}: ${[...alone].join(', ')} ${alone.size === 1 ? 'merges' : 'merge'} into transformer/ only, not into transformer_2/ (the low-noise expert), as diffusers' load_lora_weights loads a LoRA unless told load_into_transformer_2; to merge into transformer_2/, give that folder as the base`];
}

/** Gives a CLIP folder's component the kind its config.json says, or the reason none can be told. */
function withClipIdentity(component: Omit<BaseComponent, 'keys'>, identity: ClipIdentity): void {
  if (identity.encoder) component.encoder = identity.encoder;
  else {
    delete component.encoder;
    component.encoderDoubt = identity.doubt;
  }
}

/**
 * Gives a text encoder the `model_type` and `hidden_size` its config.json says, which tell which
 * LLM a folder holds (Qwen2.5-VL 7B and 3B share a class).
 */
function withLlmConfig(component: Omit<BaseComponent, 'keys'>, config: unknown): void {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return;
  const { model_type: modelType, text_config: text } = config as Record<string, unknown>;
  // transformers 5 writes a vision-language model's sizes only in its text_config.
  const hiddenSize = (config as Record<string, unknown>).hidden_size ?? (typeof text === 'object' && text !== null ? (text as Record<string, unknown>).hidden_size : undefined);
  component.config = {
    ...(typeof modelType === 'string' ? { modelType } : {}),
    ...(typeof hiddenSize === 'number' ? { hiddenSize } : {}),
  };
}

/**
 * Marks a T5 folder whose config.json says byT5 as ComfyUI's `byt5_small`, and one whose config
 * says another T5 (T5-XXL) as not it (pipeline-encoders.ts byT5Config, notByT5Config).
 */
function withT5Config(component: Omit<BaseComponent, 'keys'>, config: unknown): void {
  if (component.encoder !== 't5') return;
  if (byT5Config(config)) component.comfyEncoder = 'byt5_small';
  const notByT5 = notByT5Config(config);
  if (notByT5) component.ruledOut = { byt5_small: notByT5 };
}

/**
 * A text encoder folder whose config.json names no class (or that has none: its shards downloaded
 * alone) is a T5 where its keys are a transformers T5 encoder's (`encoder.block.N.layer.…`), not
 * the CLIP its position would say (FLUX.1's and SD3's T5-XXL `text_encoder_2/`, `text_encoder_3/`).
 */
function withT5Keys(component: Omit<BaseComponent, 'keys'>, folder: string, keys: readonly string[]): void {
  if (!hasT5EncoderKeys(keys)) return;
  component.encoder = 't5';
  component.name = `${folder} (T5 encoder)`;
}

/**
 * Where a T5 folder's config.json does not say byT5 or not (none, or one without `d_model` and
 * `vocab_size`), its shapes do: `d_model` 1472 is ComfyUI's `byt5_small`, 4096 its T5-XXL, which
 * rules byT5 out, or its `umt5xxl` (Wan's text_encoder/ shards) by its vocabulary or per-block
 * attention biases (pipeline-encoders.ts comfyT5ByShape).
 */
function withT5Shapes(component: Omit<BaseComponent, 'keys'>, keys: readonly string[], shape: (key: string) => readonly number[] | undefined): void {
  if (component.encoder !== 't5' || component.comfyEncoder !== undefined || component.ruledOut !== undefined) return;
  const held = comfyT5ByShape({ keys, shape });
  if (held?.name === 'byt5_small' || held?.name === 'umt5xxl') component.comfyEncoder = held.name;
  else if (held) component.ruledOut = { byt5_small: held.said('byt5_small') };
}

/** A component's config.json, parsed; a pipeline loads none that is not JSON. */
async function readConfig(files: InputFileSet, path: string): Promise<unknown> {
  return parseBoundedJson(await files.readText(path), `${files.name}/${path}`);
}

/**
 * What a pipeline folder holds, from its name and the class model_index.json gives it (a CLIP
 * folder's kind by position here, which its config.json or its pipeline's class overrules in a
 * pipeline: pipeline-encoders.ts).
 */
function pipelineComponent(folder: string, className: string, pipelineClass?: string): Omit<BaseComponent, 'keys'> | undefined {
  const prefix = `${folder}.`;
  if (/^(unet|transformer|prior|decoder)$/.test(folder)) return { name: `the ${folder} (${className || 'denoiser'})`, role: 'denoiser', prefix };
  if (folder === 'vae') return { name: 'the VAE', role: 'vae', prefix };
  // diffusers' LTX-2 pipelines: the text connectors its conversion moved out of the transformer.
  if (folder === 'connectors') return { name: `the connectors (${className || 'text connectors'})`, role: 'denoiser', movedOut: true, prefix };
  // diffusers' Anima pipelines: the LLM adapter its conversion moved out of the transformer.
  if (folder === 'text_conditioner') return { name: `the text_conditioner (${className || 'Anima LLM adapter'})`, role: 'denoiser', movedOut: true, prefix };
  const m = /^text_encoder(?:_(\d))?$/.exec(folder);
  if (!m) return undefined;
  const ordinal = Number(m[1] ?? 1);
  // An LLM's or BERT's folder (HunyuanVideo's Llama, HunyuanDiT's BERT) is no CLIP, whatever its place.
  const encoder: EncoderKind | undefined = /T5/i.test(className) ? 't5'
    : className === '' || CLIP_TEXT_CLASS.test(className) ? (ordinal === 1 ? 'clip_l' : 'clip_g') : undefined;
  return {
    name: `${folder} (${className || 'text encoder'})`, role: 'text-encoder', ordinal, prefix,
    ...(encoder ? { encoder } : {}), ...(className ? { className } : {}), ...(pipelineClass ? { pipelineClass } : {}),
  };
}

/**
 * A component folder given on its own (`unet/`, `text_encoder_2/`) says by its name what it is; a
 * text encoder's config.json, its class (`architectures`) and, for a CLIP, which one it holds.
 */
function folderComponent(folder: string, config: unknown, tensors: ReadonlyMap<string, BaseTensor>): BaseComponent[] | undefined {
  const architectures = (config as { architectures?: unknown } | undefined)?.architectures;
  const className = Array.isArray(architectures) && architectures.length === 1 && typeof architectures[0] === 'string' ? architectures[0] : '';
  const component = pipelineComponent(folder, className);
  if (!component) return undefined;
  if (component.role === 'text-encoder' && CLIP_TEXT_CLASS.test(className)) {
    withClipIdentity(component, identifyClipFolders([{ folder, ordinal: component.ordinal!, config }]).get(folder)!);
  } else if (component.role === 'text-encoder') {
    withLlmConfig(component, config);
    if (className === '') withT5Keys(component, folder, [...tensors.keys()]);
    withT5Config(component, config);
    withT5Shapes(component, [...tensors.keys()], (key) => tensors.get(key)?.shape);
  }
  return [{ ...component, prefix: '', keys: [...tensors.keys()] }];
}

function isWeightFile(path: string): boolean {
  return SAFETENSORS.test(path) || PICKLE.test(path) || OTHER_WEIGHTS.test(path) || WEIGHT_INDEX.test(path);
}

interface Layout {
  kind: BaseModelKind;
  shardPaths: string[];
  indexPath?: string;
  index?: ShardIndex;
}

async function detectLayout(files: InputFileSet, list: string[]): Promise<Layout> {
  const has = new Set(list);
  for (const { kind, stem } of LAYOUTS) {
    const indexPath = `${stem}.safetensors.index.json`;
    if (has.has(indexPath)) {
      const index = parseIndex(`${files.name}/${indexPath}`, await files.readText(indexPath));
      const named = new Set(Object.values(index.weight_map));
      for (const shard of named) {
        if (!has.has(shard)) {
          throw new MergeError('NOT_FOUND', `${files.name}: shard ${shownValue(shard)} named in ${indexPath} is missing (incomplete download?)`);
        }
      }
      const shardPaths = [...named].sort();
      // A shard file the index forgets would silently drop its tensors from the merge.
      const forgotten = list.find((p) => SHARD.exec(p)?.[1] === stem && !named.has(p));
      if (forgotten) throw new MergeError('BAD_CONFIG', `${files.name}: shard ${forgotten} is not named in ${indexPath}`);
      return { kind, shardPaths, indexPath, index };
    }
    if (has.has(`${stem}.safetensors`)) return { kind, shardPaths: [`${stem}.safetensors`] };
    const shards = list.filter((p) => SHARD.exec(p)?.[1] === stem);
    if (shards.length > 0) return { kind, shardPaths: checkShardSeries(files.name, shards) };
  }
  const weights = list.filter((p) => SAFETENSORS.test(p));
  if (weights.length === 1) return { kind: isSingleFile(files, list) ? 'file' : 'folder', shardPaths: weights };
  if (weights.length > 1) {
    const nunchaku = await nunchakuSplitFolderRefusal(files, weights);
    if (nunchaku) throw nunchaku;
    throw new MergeError(
      'UNSUPPORTED_FORMAT',
      `${files.name}: ${weights.length} .safetensors files (${weights.slice(0, 3).join(', ')}${weights.length > 3 ? ', …' : ''}) and no index; point at one file or one component folder`,
    );
  }
  const pickle = list.find((p) => PICKLE.test(p));
  if (pickle) {
    throw new MergeError(
      'PICKLE_REFUSED',
      `${pathIn(files.name, pickle, ': ')} is a pickle file; loramerge reads weights from .safetensors and .gguf files only (convert it to .safetensors first)`,
    );
  }
  const other = list.find((p) => OTHER_WEIGHTS.test(p));
  if (other) throw new MergeError('UNSUPPORTED_FORMAT', `${pathIn(files.name, other, ': ')} is neither a safetensors nor a GGUF file; loramerge reads weights from .safetensors and .gguf files only`);
  const archive = list.length === 1 ? archiveRefusal(files.name, list[0]) : undefined;
  throw new MergeError('NOT_FOUND', archive ?? configFileRefusal(files.name, list) ?? `${files.name}: no .safetensors weights found`);
}

/** A set made from one file names itself after it (a path ending in it, or just its name). */
function isSingleFile(files: InputFileSet, list: string[]): boolean {
  if (list.length !== 1) return false;
  const only = list[0];
  return files.name === only || files.name.endsWith(`/${only}`) || files.name.endsWith(`\\${only}`) || urlFileName(files.name) === only;
}

/**
 * The file an http(s) URL names (its last path segment, percent-decoded), else undefined: a remote
 * file's set is named by its URL, whose query (`?download=true`) or escapes (`%20`) would otherwise
 * make the one file read as a folder holding it.
 */
function urlFileName(name: string): string | undefined {
  if (!isHttpUrl(name)) return undefined;
  try {
    return decodeURIComponent(new URL(name).pathname.split('/').pop() ?? '');
  } catch {
    return undefined;
  }
}

/** Shards without an index: the `-of-N` series must be complete and agree on N. */
function checkShardSeries(name: string, shards: string[]): string[] {
  const total = Number(SHARD.exec(shards[0])![3]);
  const numbers = new Set<number>();
  for (const shard of shards) {
    const [, , index, of] = SHARD.exec(shard)!;
    if (Number(of) !== total) throw new MergeError('BAD_CONFIG', `${name}: shard ${shard} disagrees with ${shards[0]} on the shard count`);
    numbers.add(Number(index));
  }
  for (let i = 1; i <= total; i++) {
    if (!numbers.has(i)) throw new MergeError('NOT_FOUND', `${name}: shard ${i} of ${total} is missing (incomplete download?)`);
  }
  return shards.sort();
}

/**
 * A shard index read and checked: its bytes (MAX_CONFIG_BYTES, by readText), nesting and values
 * (parseBoundedJson), its weight_map's size (no more tensors than a model may hold, MAX_TENSORS) and
 * every entry, before any shard is opened. A key written twice is read as Python's json reads it
 * (the last one); the shards' headers then say whether the index agrees with them. Names and values
 * are quoted cut and escaped: one line, whatever the file holds.
 */
function parseIndex(where: string, text: string): ShardIndex {
  const parsed = parseBoundedJson(text, where);
  const map = (parsed as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new MergeError('BAD_CONFIG', `${where}: no "weight_map" object`);
  }
  const entries = Object.entries(map);
  if (entries.length > MAX_TENSORS) {
    throw new MergeError('LIMIT_EXCEEDED', `${where}: its weight_map lists ${entries.length} tensors, more than a model may hold (the limit MAX_TENSORS, ${MAX_TENSORS}); not an index of a model this tool reads`);
  }
  for (const [tensor, shard] of entries) {
    if (typeof shard !== 'string' || !SAFETENSORS.test(shard)) {
      throw new MergeError('BAD_CONFIG', `${where}: tensor ${shownValue(tensor)} maps to ${shownValue(shard)}, not a .safetensors file; an index maps each tensor to the shard file that holds it`);
    }
    // A path out of the folder is no shard of it: said so, rather than "missing (incomplete download?)".
    if (/^([\\/]|[A-Za-z]:)/.test(shard) || shard.split(/[\\/]/).includes('..')) {
      throw new MergeError('BAD_CONFIG', `${where}: tensor ${shownValue(tensor)} maps to ${shownValue(shard)}, outside the model's folder; an index names shards of its own folder`);
    }
  }
  return parsed as ShardIndex;
}

/** Every tensor once; with an index, the index and the shards' headers must agree exactly. */
function collectTensors(
  name: string,
  shards: readonly SafetensorsShard[],
  indexPath: string | undefined,
  index: ShardIndex | undefined,
  tensors: Map<string, BaseTensor>,
): void {
  const folder = indexPath?.includes('/') ? indexPath.slice(0, indexPath.lastIndexOf('/') + 1) : '';
  for (const { path, file, keyPrefix } of shards) {
    for (const entry of file.tensors) {
      const key = keyPrefix + entry.name;
      const earlier = tensors.get(key);
      if (earlier) throw new MergeError('BAD_CONFIG', `${name}: tensor "${entry.name}" is in both ${earlier.shard} and ${path}`);
      const listed = index && Object.hasOwn(index.weight_map, entry.name) ? folder + index.weight_map[entry.name] : undefined;
      if (index && listed !== path) {
        // A tensor in two shards, one of them the listed one, is named as such, not as misplaced.
        const alsoListed = listed !== undefined && shards.some((s) => s.path === listed && s.file.tensors.some((t) => t.name === entry.name));
        throw new MergeError(
          'BAD_CONFIG',
          alsoListed ? `${name}: tensor "${entry.name}" is in both ${listed} and ${path}`
          : listed === undefined
            ? `${name}: tensor "${entry.name}" in ${path} is not listed in ${indexPath}`
            : `${name}: ${indexPath} puts tensor "${entry.name}" in ${listed} but it is in ${path}`,
        );
      }
      tensors.set(key, { name: key, dtype: entry.dtype, shape: entry.shape, shard: path, storedType: entry.dtype, byteLength: entry.byteLength });
    }
  }
  if (index) {
    const prefix = shards[0]?.keyPrefix ?? '';
    for (const [tensor, shard] of Object.entries(index.weight_map)) {
      if (!tensors.has(prefix + tensor)) {
        throw new MergeError('BAD_CONFIG', `${name}: ${indexPath} lists tensor ${shownValue(tensor)} in ${shard} but that shard does not hold it`);
      }
    }
  }
}

/** The zero-size tensor that marks a scaled fp8 checkpoint (ComfyUI comfy/model_detection.py). */
export const SCALED_FP8_MARKER = 'scaled_fp8';

/**
 * Is this key a scaled fp8 marker: `scaled_fp8` in a file of one model, or under the model's prefix
 * in a bundle (`model.diffusion_model.scaled_fp8`, `text_encoders.t5xxl.transformer.scaled_fp8`), as
 * ComfyUI looks for `<prefix>scaled_fp8` (model_detection.py, utils.py convert_old_quants, the text
 * encoders' detect functions).
 */
export function isScaledFp8Marker(key: string): boolean {
  return key === SCALED_FP8_MARKER || key.endsWith(`.${SCALED_FP8_MARKER}`);
}
const SCALE_WEIGHT = '.scale_weight';

/** Every `<module>.scale_weight` of a scaled fp8 checkpoint, as `<module>.weight` → scale. */
async function readValueScales(model: BaseModel): Promise<Map<string, number>> {
  const scales = new Map<string, number>();
  for (const [key, tensor] of model.tensors) {
    if (!key.endsWith(SCALE_WEIGHT)) continue;
    const weightKey = `${key.slice(0, -SCALE_WEIGHT.length)}.weight`;
    const value = product(tensor.shape) === 1 && isFloatDType(tensor.dtype)
      ? decodeToF32(await model.read(key), tensor.dtype)[0]
      : NaN;
    if (!(Number.isFinite(value) && value !== 0)) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${model.name}: tensor "${key}" should be one finite, non-zero scale (${tensor.dtype} (${tensor.shape.join(', ')}))`);
    }
    if (model.tensors.has(weightKey)) scales.set(weightKey, value);
  }
  return scales;
}

class OpenedBaseModel implements SafetensorsBaseModel {
  private readonly shardOf: Map<string, SafetensorsShard>;
  valueScales?: ReadonlyMap<string, number>;
  components?: readonly BaseComponent[];
  weightlessEncoders?: readonly WeightlessFolder[];
  combinedPrior?: CombinedPrior;
  readonly indexPath?: string;
  /** The index's fields other than its weight map (see BaseIndexFile). */
  readonly index?: BaseIndexFile['fields'];
  readonly format: ContainerFormat;

  constructor(
    readonly kind: BaseModelKind,
    readonly name: string,
    readonly tensors: ReadonlyMap<string, BaseTensor>,
    readonly shards: readonly SafetensorsShard[],
    readonly otherFiles: readonly string[],
    readonly indexes: readonly BaseIndexFile[],
    readonly warnings: readonly string[],
    single: BaseIndexFile | undefined,
  ) {
    this.shardOf = new Map(shards.map((s) => [s.path, s]));
    if (single) {
      this.indexPath = single.path;
      this.index = single.fields;
    }
    this.format = safetensorsContainer(shards.map((s) => s.file), indexes);
  }

  async read(name: string): Promise<Uint8Array> {
    const [file, entry] = this.entry(name);
    return file.read(entry);
  }

  async readPart(name: string, start: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const [file, entry] = this.entry(name);
    return file.readPart(entry, start, length, into);
  }

  async readRows(name: string, rowStart: number, rowCount: number): Promise<FloatTensorBytes> {
    const [, entry] = this.entry(name);
    const rowBytes = entry.shape.length === 0 ? entry.byteLength : entry.byteLength / Math.max(entry.shape[0], 1);
    const data = await this.readPart(name, rowStart * rowBytes, rowCount * rowBytes);
    return this.format.decodeRows(entry.dtype, data);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.file.source.close()));
  }

  private entry(name: string): [SafetensorsFile, TensorEntry] {
    const tensor = this.tensors.get(name);
    if (!tensor) throw new MergeError('NOT_FOUND', `${this.name}: no tensor "${name}"`);
    const shard = this.shardOf.get(tensor.shard)!;
    return [shard.file, shard.file.get(name.slice(shard.keyPrefix.length))!];
  }
}
