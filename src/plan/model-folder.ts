/**
 * What the merged folder holds besides tensors, decided before any work: config.json rewritten
 * (model-config-output.ts) when the merge changes what it describes, and the tokenizer taken from
 * an adapter folder that carries one (a trainer saves it there when it added tokens or a chat
 * template). Everything else the base folder holds is copied as it is.
 */
import type { InputFileSet } from '../io/types.js';
import type { BaseShard } from '../formats/base-model.js';
import { parseBoundedJson } from '../formats/bounded-json.js';
import type { ConfigChanges } from '../formats/model-config-output.js';
import type { ModelConfig } from '../formats/model-config.js';
import type { BaseTensorIndex, MergePlan } from './merge-plan.js';
import { product } from '../integers.js';

/** Files that make up a tokenizer (and its chat template), as transformers saves them. */
export const TOKENIZER_FILES: ReadonlySet<string> = new Set([
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'tokenizer.model',
  'vocab.json', 'merges.txt', 'vocab.txt', 'spiece.model', 'sentencepiece.bpe.model', 'chat_template.jinja', 'chat_template.json',
]);

export interface AdapterFolder {
  name: string;
  files: InputFileSet;
}

/** A diffusers component's config.json that a widened input layer changes, and what it says after. */
export interface WidenedConfig {
  path: string;
  raw: Readonly<Record<string, unknown>>;
  changes: Pick<ConfigChanges, 'inChannels' | 'outChannels'>;
}

export interface ModelFolderPlan {
  /** Diffusers configs whose `in_channels` a widened x_embedder changes. */
  widened?: WidenedConfig[];
  /** The base's config.json, when it is a transformers config the merge may rewrite. */
  config?: ModelConfig;
  changes: Omit<ConfigChanges, 'dtype'>;
  /**
   * Tokenizer files (relative names) taken from an adapter folder; `paths` are inside `files`.
   * `leftOut`: the base's files not written, as the adapter's tokenizer says what they would say.
   */
  tokenizer?: { adapter: string; files: InputFileSet; names: string[]; paths: string[]; leftOut?: string[] };
}

const EMBEDDING = /(^|\.)(embed_tokens|wte|word_embeddings|embed_in)\.weight$/;
const HEAD = /(^|\.)(lm_head|embed_out)\.weight$/;

/** The folder's plan; its notes, warnings and problems go into `plan`. */
export async function planModelFolder(
  base: BaseTensorIndex, config: ModelConfig | undefined, adapters: readonly AdapterFolder[], plan: MergePlan,
  decisions: { untied: boolean; dequantized: boolean; folder: boolean; baseFiles?: readonly string[] },
): Promise<ModelFolderPlan> {
  const folder: ModelFolderPlan = { changes: {} };
  if (config) folder.config = config;
  if (decisions.untied) folder.changes.untieEmbeddings = true;
  if (decisions.dequantized) folder.changes.removeQuantization = true;

  const resized = resizedVocabulary(base, plan);
  if (resized.problem) {
    plan.problems.push({ adapter: resized.problem.adapter, module: '', code: 'SHAPE_MISMATCH', message: resized.problem.message });
  } else if (resized.rows !== undefined) {
    folder.changes.vocabSize = resized.rows;
    plan.notes.push(`the vocabulary grows from ${resized.from} to ${resized.rows} tokens${config ? '; config.json vocab_size follows' : ''}`);
  }

  // A merged single file has no folder to put a tokenizer in.
  for (const adapter of decisions.folder ? adapters : []) {
    const found = tokenizerFiles(adapter.files);
    if (found.paths.length === 0) continue;
    if (!folder.tokenizer) {
      folder.tokenizer = { adapter: adapter.name, files: adapter.files, ...found };
      continue;
    }
    if (!(await sameFiles(folder.tokenizer, { files: adapter.files, ...found }))) {
      plan.problems.push({
        adapter: adapter.name, module: '', code: 'PLAN_INVALID',
        message: `${adapter.name}: carries tokenizer files that differ from ${folder.tokenizer.adapter}'s; merge them one after the other`,
      });
    }
  }
  if (folder.tokenizer) {
    plan.notes.push(`tokenizer files come from ${folder.tokenizer.adapter} (${folder.tokenizer.names.join(', ')})`);
    const leftOut = templateLeftOut(folder.tokenizer.names, decisions.baseFiles ?? []);
    if (leftOut) {
      folder.tokenizer.leftOut = [leftOut];
      plan.notes.push(`the base's ${leftOut} is left out: transformers reads a chat template from that file over the one in tokenizer_config.json, and ${folder.tokenizer.adapter}'s tokenizer_config.json says the adapter's`);
    }
  } else if (folder.changes.vocabSize !== undefined) {
    plan.warnings.push(`the vocabulary grows to ${folder.changes.vocabSize} tokens but no adapter folder carries tokenizer files: the base's tokenizer does not know the added tokens`);
  }
  return folder;
}

/**
 * The base's `chat_template.jinja` where the adapter's tokenizer comes without one: transformers
 * (4.47 and later) reads the template from that file in place of tokenizer_config.json's, so the
 * base's would replace the template the adapter's tokenizer_config.json holds (or its lack of one)
 * in the merged folder. A tokenizer saved with a template file carries it, and it replaces the base's.
 */
function templateLeftOut(names: readonly string[], baseFiles: readonly string[]): string | undefined {
  const template = 'chat_template.jinja';
  return names.includes('tokenizer_config.json') && !names.includes(template) && baseFiles.includes(template) ? template : undefined;
}

/** Tokenizer files beside an adapter's adapter_config.json. */
function tokenizerFiles(files: InputFileSet): { names: string[]; paths: string[] } {
  const list = files.list();
  const config = list.filter((p) => p === 'adapter_config.json' || p.endsWith('/adapter_config.json'))
    .sort((a, b) => a.split('/').length - b.split('/').length)[0];
  if (config === undefined) return { names: [], paths: [] };
  const dir = config.slice(0, config.length - 'adapter_config.json'.length);
  const paths = list.filter((p) => p.startsWith(dir) && !p.slice(dir.length).includes('/') && TOKENIZER_FILES.has(p.slice(dir.length)));
  return { names: paths.map((p) => p.slice(dir.length)), paths };
}

async function sameFiles(
  a: { files: InputFileSet; names: string[]; paths: string[] }, b: { files: InputFileSet; names: string[]; paths: string[] },
): Promise<boolean> {
  if (a.names.join('\n') !== b.names.join('\n')) return false;
  for (let i = 0; i < a.paths.length; i++) {
    if ((await a.files.readText(a.paths[i])) !== (await b.files.readText(b.paths[i]))) return false;
  }
  return true;
}

type Resized = { rows?: number; from?: number; problem?: { adapter: string; message: string } };

/**
 * The new vocabulary size when the plan writes the input embedding with other rows than the base
 * holds; a separate head the plan leaves at the old size is a problem (the model would not load).
 */
function resizedVocabulary(base: BaseTensorIndex, plan: MergePlan): Resized {
  const written = new Map<string, { rows: number; adapter: string }>();
  for (const u of plan.updates) if (u.source) written.set(u.baseKey, { rows: u.shape[0], adapter: u.source.adapter });
  for (const r of plan.replacements) written.set(r.baseKey, { rows: r.shape[0], adapter: r.adapter });
  for (const r of plan.rowSets) if (r.source) written.set(r.baseKey, { rows: r.shape[0], adapter: r.source.adapter });
  const rowsOf = (key: string) => written.get(key)?.rows ?? base.tensors.get(key)!.shape[0];
  const embedding = [...base.tensors.keys()].find((k) => EMBEDDING.test(k) && base.tensors.get(k)!.shape.length === 2);
  if (embedding === undefined) return {};
  const from = base.tensors.get(embedding)!.shape[0];
  const rows = rowsOf(embedding);
  const head = [...base.tensors.keys()].find((k) => HEAD.test(k) && base.tensors.get(k)!.shape.length === 2);
  if (head !== undefined && rowsOf(head) !== rows && (written.has(head) || written.has(embedding))) {
    const by = written.get(embedding) ?? written.get(head)!;
    return {
      problem: {
        adapter: by.adapter,
        message: `${by.adapter}: resizes the vocabulary (${embedding} has ${rows} rows, ${head} ${rowsOf(head)}); the adapter must also hold the resized ${written.has(embedding) ? head : embedding} (PEFT save_embedding_layers)`,
      },
    };
  }
  return rows === from ? {} : { rows, from };
}

/** The transformers whose pipelines load LoRAs with FluxLoraLoaderMixin, the one loader that widens x_embedder (FLUX.1, Chroma). */
const WIDENED_BY_DIFFUSERS: ReadonlySet<unknown> = new Set(['FluxTransformer2DModel', 'ChromaTransformer2DModel']);

/**
 * What a widened input layer (BFL's control LoRAs on img_in / x_embedder) changes besides the
 * tensor: diffusers sets its transformer's config `in_channels` to the new width when it expands
 * x_embedder (lora_pipeline.py, _MODULE_NAME_TO_ATTRIBUTE_MAP_FLUX), so the folder's config.json
 * says it; `out_channels` is written out as the old width where the config left it null, since
 * FluxTransformer2DModel takes out_channels = in_channels then and its proj_out keeps the old width.
 * A single file has no config: the notes say the merged file's img_in is wider. A widened tensor
 * whose config says nothing this knows to change is a problem (the folder would not load).
 */
export async function planWidenedConfigs(files: InputFileSet, shards: readonly BaseShard[], plan: MergePlan): Promise<WidenedConfig[]> {
  const out: WidenedConfig[] = [];
  for (const u of plan.updates) {
    if (u.widenedFrom === undefined) continue;
    const shard = shards.find((s) => s.tensors.some((t) => s.keyPrefix + t.name === u.baseKey));
    const name = shard ? u.baseKey.slice(shard.keyPrefix.length) : u.baseKey;
    // A conv (Wan's patch_embedding) grows by input channels, each a run of its kernel's columns.
    const kernel = product(u.shape.slice(2));
    const channels = { from: u.widenedFrom / kernel, to: u.shape[1] };
    const widens = u.shape.length === 2
      ? `${u.baseKey} is written (${u.shape.join(', ')}), ${u.cols - u.widenedFrom} zero columns added to the base's ${u.widenedFrom} before the adapter's update`
      : `${u.baseKey} is written (${u.shape.join(', ')}), ${channels.to - channels.from} zero input channels added to the base's ${channels.from} before the adapter's update`;
    const dir = shard && shard.path.includes('/') ? shard.path.slice(0, shard.path.lastIndexOf('/') + 1) : '';
    const path = `${dir}config.json`;
    if (!shard || !files.list().includes(path)) {
      plan.notes.push(u.shape.length === 2
        ? `${widens}: the merged model takes ${u.cols} input channels where the base took ${u.widenedFrom}`
        : `${widens} (ComfyUI's reshape_weight): the merged model takes ${channels.to} input channels where the base took ${channels.from}, as ComfyUI reads them from this tensor`);
      continue;
    }
    const raw = parseBoundedJson(await files.readText(path), `${files.name}/${path}`) as Record<string, unknown> | null;
    const problem = (why: string) => plan.problems.push({ adapter: u.terms[0].adapter, module: u.baseKey, code: 'UNSUPPORTED_FORMAT', message: `${u.terms[0].adapter}: widens ${u.baseKey} to ${u.cols} input columns, but ${path} ${why}` });
    if (typeof raw !== 'object' || raw === null || typeof raw._class_name !== 'string') {
      problem('is not a diffusers model config whose width this tool knows to change');
    } else if (!WIDENED_BY_DIFFUSERS.has(raw._class_name)) {
      problem(`is a ${raw._class_name}, whose input layer diffusers does not widen (FluxLoraLoaderMixin does, for ${[...WIDENED_BY_DIFFUSERS].join(' and ')})`);
    } else if (name !== 'x_embedder.weight') {
      problem(`has no field diffusers changes for ${name} (it sets in_channels for x_embedder only)`);
    } else if (raw.in_channels !== u.widenedFrom) {
      problem(`says in_channels ${JSON.stringify(raw.in_channels)}, not the base's ${u.widenedFrom}`);
    } else {
      const keepOut = raw.out_channels === undefined || raw.out_channels === null;
      out.push({ path, raw, changes: { inChannels: u.cols, ...(keepOut ? { outChannels: u.widenedFrom } : {}) } });
      plan.notes.push(`${widens}; ${path} in_channels follows (${u.widenedFrom} → ${u.cols})${keepOut ? `, out_channels written as ${u.widenedFrom}` : ''}`);
    }
  }
  return out;
}
