/**
 * A base model as safetensors weights: one file, a Hugging Face transformers folder
 * (`model.safetensors`, or shards `model-0000x-of-0000y.safetensors` with
 * `model.safetensors.index.json`), a diffusers component folder (`diffusion_pytorch_model…` likewise),
 * or any folder holding exactly one `.safetensors` file. Only headers are read when opening;
 * tensors are read one at a time on demand. Pickle checkpoints are refused, never unpickled.
 */
import type { DType } from '../dtype.js';
import { MergeError } from '../errors.js';
import { MAX_TENSORS } from '../limits.js';
import { parseBoundedJson } from './bounded-json.js';
import type { InputFileSet } from '../io/types.js';
import { openSafetensors } from './safetensors-reader.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

/** How the base is laid out: one file, a transformers folder, a diffusers folder, or another folder. */
export type BaseModelKind = 'file' | 'transformers' | 'diffusers' | 'folder';

/** One tensor of the base: where it lives and what it holds. */
export interface BaseTensor {
  name: string;
  dtype: DType;
  shape: number[];
  /** Relative path of the shard holding it. */
  shard: string;
  entry: TensorEntry;
}

/** `*.safetensors.index.json`: which shard holds each tensor. */
export interface ShardIndex {
  metadata?: Record<string, unknown>;
  weight_map: Record<string, string>;
}

/** A base model opened for merging: its shards, tensors and the other files copied unchanged. */
export interface BaseModel {
  readonly kind: BaseModelKind;
  /** The input as the user named it. */
  readonly name: string;
  readonly tensors: ReadonlyMap<string, BaseTensor>;
  /** Weight files in order (one unless sharded). */
  readonly shards: readonly { path: string; file: SafetensorsFile }[];
  /** Relative path of the index file, and its contents, when sharded with one. */
  readonly indexPath?: string;
  readonly index?: ShardIndex;
  /** Small files to copy unchanged into a merged folder: configs, tokenizer, README… */
  readonly otherFiles: readonly string[];
  /** A whole tensor's bytes. */
  read(name: string): Promise<Uint8Array>;
  /** `length` bytes of a tensor from byte `start` of its data. */
  readPart(name: string, start: number, length: number): Promise<Uint8Array>;
/** Releases the open shards. */
  close(): Promise<void>;
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

export async function openBaseModel(files: InputFileSet): Promise<BaseModel> {
  const list = files.list();
  const layout = await detectLayout(files, list);
  const shards: { path: string; file: SafetensorsFile }[] = [];
  try {
    for (const path of layout.shardPaths) {
      const source = await files.open(path);
      try {
        shards.push({ path, file: await openSafetensors(source) });
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
    const tensors = collectTensors(files.name, shards, layout.indexPath, layout.index);
    const otherFiles = list.filter((p) => !isWeightFile(p) && p !== layout.indexPath);
    return new OpenedBaseModel(layout.kind, files.name, tensors, shards, otherFiles, layout.indexPath, layout.index);
  } catch (e) {
    await Promise.all(shards.map((s) => s.file.source.close()));
    throw e;
  }
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
      const shardPaths = [...new Set(Object.values(index.weight_map))].sort();
      for (const shard of shardPaths) {
        if (!has.has(shard)) {
          throw new MergeError('NOT_FOUND', `${files.name}: shard "${shard}" named in ${indexPath} is missing (incomplete download?)`);
        }
      }
      // A shard file the index forgets would silently drop its tensors from the merge.
      const forgotten = list.find((p) => SHARD.exec(p)?.[1] === stem && !shardPaths.includes(p));
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
    throw new MergeError(
      'UNSUPPORTED_FORMAT',
      `${files.name}: ${weights.length} .safetensors files (${weights.slice(0, 3).join(', ')}${weights.length > 3 ? ', …' : ''}) and no index; point at one file or one component folder`,
    );
  }
  const pickle = list.find((p) => PICKLE.test(p));
  if (pickle) {
    throw new MergeError(
      'PICKLE_REFUSED',
      `${files.name}: ${pickle} is a pickle file; loramerge reads only .safetensors (convert it first)`,
    );
  }
  const other = list.find((p) => OTHER_WEIGHTS.test(p));
  if (other) throw new MergeError('UNSUPPORTED_FORMAT', `${files.name}: ${other} is not a safetensors file; loramerge reads only .safetensors`);
  throw new MergeError('NOT_FOUND', `${files.name}: no .safetensors weights found`);
}

/** A set made from one file names itself after it (a path ending in it, or just its name). */
function isSingleFile(files: InputFileSet, list: string[]): boolean {
  if (list.length !== 1) return false;
  const only = list[0];
  return files.name === only || files.name.endsWith(`/${only}`) || files.name.endsWith(`\\${only}`);
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

function parseIndex(where: string, text: string): ShardIndex {
  const parsed = parseBoundedJson(text, where);
  const map = (parsed as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new MergeError('BAD_CONFIG', `${where}: no "weight_map" object`);
  }
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || !SAFETENSORS.test(shard)) {
      throw new MergeError('BAD_CONFIG', `${where}: tensor "${tensor}" maps to ${JSON.stringify(shard)}, not a .safetensors file`);
    }
  }
  return parsed as ShardIndex;
}

/** Every tensor once; with an index, the index and the shards' headers must agree exactly. */
function collectTensors(
  name: string,
  shards: { path: string; file: SafetensorsFile }[],
  indexPath: string | undefined,
  index: ShardIndex | undefined,
): Map<string, BaseTensor> {
  const tensors = new Map<string, BaseTensor>();
  for (const { path, file } of shards) {
    for (const entry of file.tensors) {
      const earlier = tensors.get(entry.name);
      if (earlier) throw new MergeError('BAD_CONFIG', `${name}: tensor "${entry.name}" is in both ${earlier.shard} and ${path}`);
      const listed = index && Object.hasOwn(index.weight_map, entry.name) ? index.weight_map[entry.name] : undefined;
      if (index && listed !== path) {
        throw new MergeError(
          'BAD_CONFIG',
          listed === undefined
            ? `${name}: tensor "${entry.name}" in ${path} is not listed in ${indexPath}`
            : `${name}: ${indexPath} puts tensor "${entry.name}" in ${listed} but it is in ${path}`,
        );
      }
      tensors.set(entry.name, { name: entry.name, dtype: entry.dtype, shape: entry.shape, shard: path, entry });
    }
  }
  if (index) {
    for (const [tensor, shard] of Object.entries(index.weight_map)) {
      if (!tensors.has(tensor)) {
        throw new MergeError('BAD_CONFIG', `${name}: ${indexPath} lists tensor "${tensor}" in ${shard} but that shard does not hold it`);
      }
    }
  }
  return tensors;
}

class OpenedBaseModel implements BaseModel {
  private readonly files: Map<string, SafetensorsFile>;

  constructor(
    readonly kind: BaseModelKind,
    readonly name: string,
    readonly tensors: ReadonlyMap<string, BaseTensor>,
    readonly shards: readonly { path: string; file: SafetensorsFile }[],
    readonly otherFiles: readonly string[],
    readonly indexPath?: string,
    readonly index?: ShardIndex,
  ) {
    this.files = new Map(shards.map((s) => [s.path, s.file]));
  }

  async read(name: string): Promise<Uint8Array> {
    const tensor = this.tensor(name);
    return this.files.get(tensor.shard)!.read(tensor.entry);
  }

  async readPart(name: string, start: number, length: number): Promise<Uint8Array> {
    const tensor = this.tensor(name);
    return this.files.get(tensor.shard)!.readPart(tensor.entry, start, length);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.file.source.close()));
  }

  private tensor(name: string): BaseTensor {
    const tensor = this.tensors.get(name);
    if (!tensor) throw new MergeError('NOT_FOUND', `${this.name}: no tensor "${name}"`);
    return tensor;
  }
}
