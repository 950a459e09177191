/**
 * A GGUF base model: one `.gguf` file, or a split set `<name>-0000i-of-0000N.gguf` (given as its
 * folder, or as the set of its parts), each part checked against its `split.*` metadata. Tensors
 * are presented to the plan in PyTorch order (rows of GGML's ne[0]) and as the float dtype the
 * engine computes them in (F32 for block types).
 */
import { expertRowsOf } from '../encode-tally.js';
import type { FloatTensorBytes } from '../../engine/merge-op.js';
import { MergeError } from '../../errors.js';
import { Pacer } from '../../event-turns.js';
import { MAX_MIXED_ROWS_BYTES, MAX_TENSORS } from '../../limits.js';
import type { InputFileSet } from '../../io/types.js';
import type { MergePlan, PlanProblem, ValueScale } from '../../plan/merge-plan.js';
import type { ParsedAdapter } from '../adapter.js';
import type { BaseModel, BaseShard, BaseTensor } from '../base-model.js';
import type { ContainerFormat } from '../container.js';
import { blockCodec, blockDecoder, DECODER_TYPE_NAMES, needsImportanceFor } from './codecs/registry.js';
import { ggufContainer } from './gguf-container.js';
import { GGUFValueType } from './gguf-metadata.js';
import { ggmlRowBytes } from './ggml-types.js';
import { openGguf, refuseControlVector, type GgufFile, type GgufTensor } from './gguf-reader.js';
import { readKeptScales } from './kept-scales.js';
import type { ImportanceMatrix } from './imatrix.js';
import { gcd, product } from '../../integers.js';

const GGUF = /\.gguf$/i;
const SPLIT = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

export async function openGgufModel(files: InputFileSet, pacer: Pacer = new Pacer()): Promise<BaseModel> {
  const list = files.list();
  const paths = partPaths(files.name, list.filter((p) => GGUF.test(p)));
  const parts: { path: string; file: GgufFile }[] = [];
  try {
    for (const path of paths) {
      await pacer.tick(); // a cancel is looked for between the parts' headers
      const source = await files.open(path);
      try {
        parts.push({ path, file: await openGguf(source, pacer) });
      } catch (e) {
        await source.close();
        throw e;
      }
      // Each part is held to MAX_TENSORS by the reader; the set is too, as a sharded safetensors
      // model is, part by part so that many full parts cannot add up before the check.
      const count = parts.reduce((n, p) => n + p.file.tensors.length, 0);
      if (count > MAX_TENSORS) {
        throw new MergeError('LIMIT_EXCEEDED', `${files.name}: more than ${MAX_TENSORS} tensors over its files (the limit MAX_TENSORS)`);
      }
    }
    checkParts(files.name, parts);
    const otherFiles = list.filter((p) => !GGUF.test(p));
    // Building the model and reading its scales each go over every tensor (half a second for
    // 160 000): the model's tensors are described paced, and a cancel is looked for before each.
    await pacer.tick();
    const model = new GgufModel(files.name, parts, otherFiles, await describeTensors(files.name, parts, pacer));
    await pacer.tick();
    await model.readScales();
    return model;
  } catch (e) {
    await Promise.all(parts.map((p) => p.file.source.close()));
    throw e;
  }
}

/** The .gguf files that make the model: one file, or every part of one split set, in order. */
function partPaths(name: string, ggufs: string[]): string[] {
  if (ggufs.length === 0) throw new MergeError('NOT_FOUND', `${name}: no .gguf file found`);
  if (ggufs.length === 1) return ggufs;
  const sets = new Map<string, string[]>();
  for (const p of ggufs) {
    const m = SPLIT.exec(p);
    const key = m ? `${m[1]}|${m[3]}` : p;
    sets.set(key, [...(sets.get(key) ?? []), p]);
  }
  if (sets.size !== 1) {
    // Model repositories ship a vision-language model's projector (mmproj-*.gguf) beside its GGUF.
    const projectors = [...sets.values()].map((v) => v[0]).filter((p) => /(^|\/)mmproj[^/]*$/i.test(p));
    const beside = projectors.length > 0 && projectors.length < sets.size
      ? ` (${projectors.join(', ')} ${projectors.length === 1 ? 'is a vision projector' : 'are vision projectors'} for --mmproj, not a base: point at the model's own file)`
      : '';
    throw new MergeError('BAD_ARGUMENT', `${name}: holds ${sets.size} GGUF models (${[...sets.values()].map((v) => v[0]).slice(0, 3).join(', ')}…); point at one${beside}`);
  }
  return [...sets.values()][0].sort();
}

function splitValue(file: GgufFile, key: string): number | undefined {
  const value = file.value(key)?.value;
  return typeof value === 'number' ? value : undefined;
}

/** A split set must be complete, in order, and agree with its own split.* metadata. */
function checkParts(name: string, parts: { path: string; file: GgufFile }[]): void {
  const first = parts[0].file;
  refuseControlVector(first);
  if (first.value('general.type')?.value === 'adapter') {
    throw new MergeError('BAD_ARGUMENT', `${parts[0].file.source.name}: is a LoRA adapter (general.type = adapter), not a base model; pass it with --adapter`);
  }
  // The model's architecture, which llama.cpp and ComfyUI-GGUF read as a string (they refuse
  // another type), and which the merged file keeps.
  for (const { file } of parts) {
    const arch = file.value('general.architecture');
    if (arch && arch.type !== GGUFValueType.STRING) {
      throw new MergeError('INVALID_HEADER', `${file.source.name}: general.architecture holds ${arch.type === GGUFValueType.ARRAY ? 'an array' : String(arch.value)}, not a string; llama.cpp and ComfyUI-GGUF read the model's architecture from it (the file's metadata is damaged: download or convert it again)`);
    }
  }
  const count = splitValue(first, 'split.count') ?? 1;
  if (count !== parts.length) {
    const m = SPLIT.exec(parts[0].path);
    const declared = m ? Number(m[3]) : count;
    throw new MergeError('NOT_FOUND', `${name}: split GGUF of ${Math.max(count, declared)} parts but ${parts.length} found (incomplete download?)`);
  }
  if (count === 1) return;
  let tensors = 0;
  parts.forEach(({ path, file }, i) => {
    const m = SPLIT.exec(path);
    if (!m || Number(m[2]) !== i + 1 || Number(m[3]) !== count) {
      throw new MergeError('BAD_CONFIG', `${name}: ${path} is not part ${i + 1} of ${count} by its name (expected …-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.gguf)`);
    }
    if (splitValue(file, 'split.no') !== i || splitValue(file, 'split.count') !== count) {
      throw new MergeError('BAD_CONFIG', `${file.source.name}: its split.no/split.count metadata say part ${splitValue(file, 'split.no')} of ${splitValue(file, 'split.count')}, its name part ${i} of ${count}`);
    }
    tensors += file.tensors.length;
  });
  const declared = splitValue(first, 'split.tensors.count');
  if (declared !== undefined && declared !== tensors) {
    throw new MergeError('BAD_CONFIG', `${name}: split.tensors.count is ${declared} but the parts hold ${tensors} tensors`);
  }
}

/**
 * The diffusion models ComfyUI-GGUF loads (loader.py `IMG_ARCH_LIST`): their files keep each
 * tensor in its checkpoint's shape, which the loader reads back as the reversed ne, 3-D ones too
 * (Wan's adaLN tables `blocks.N.modulation`, (1, 6, dim), ne [dim, 6, 1]).
 */
const COMFY_GGUF_IMAGE_ARCHS: ReadonlySet<string> = new Set(['flux', 'sd1', 'sdxl', 'sd3', 'aura', 'hidream', 'cosmos', 'ltxv', 'hyvid', 'wan', 'lumina2', 'qwen_image']);

/**
 * The shape the plan sees: GGUF stores every tensor as rows of ne[0] values, so a language
 * model's tensor of three dimensions (experts stacked, ne = [in, out, experts]) is the matrix
 * (experts·out, in), on whose rows layouts place each expert's update. A diffusion model's keeps
 * its checkpoint shape, as do four dimensions (a convolution's (out, in, kh, kw)).
 */
function planShape(shape: number[], arch: unknown): number[] {
  if (shape.length !== 3 || (typeof arch === 'string' && COMFY_GGUF_IMAGE_ARCHS.has(arch))) return shape;
  return [shape[0] * shape[1], shape[2]];
}

/** Each tensor of a GGUF base as the plan sees it, and where it is stored, by name. */
interface DescribedTensors {
  tensors: Map<string, BaseTensor>;
  located: Map<string, { file: GgufFile; tensor: GgufTensor }>;
}

/**
 * The model's tensors as the plan sees them (shape, dtype, part), one `pacer` tick each: 160 000
 * of them are a third of a second, which a cancel does not wait for.
 */
async function describeTensors(name: string, parts: { path: string; file: GgufFile }[], pacer: Pacer): Promise<DescribedTensors> {
  const tensors = new Map<string, BaseTensor>();
  const located = new Map<string, { file: GgufFile; tensor: GgufTensor }>();
  const arch = parts[0].file.value('general.architecture')?.value;
  for (const { path, file } of parts) {
    const declared = declaredShapes(file);
    for (const t of file.tensors) {
      const turn = pacer.tick();
      if (turn) await turn;
      if (tensors.has(t.name)) throw new MergeError('BAD_CONFIG', `${name}: tensor "${t.name}" is in two parts`);
      const dtype = t.type.name === 'F16' || t.type.name === 'BF16' ? t.type.name : 'F32';
      // The plan sees the real shape; the file is written as it is stored (see realShape).
      const real = declared.has(t.name) ? realShape(t, declared.get(t.name), arch) : { shape: t.shape, rowBlock: 1 };
      const shape = planShape('shape' in real ? real.shape : t.shape, arch);
      // A stack of experts seen as rows: named by expert and row in messages.
      const experts = shape.length === 2 && expertRowsOf(t.name, t.shape) ? t.shape[0] : undefined;
      tensors.set(t.name, {
        name: t.name, dtype, shape, shard: path, storedType: t.type.name, byteLength: t.byteLength,
        ...('why' in real ? { shapeNote: `${t.name} ${real.why}` } : real.rowBlock > 1 ? { rowBlock: real.rowBlock } : {}),
        ...(experts ? { experts } : {}),
      });
      located.set(t.name, { file, tensor: t });
    }
  }
  return { tensors, located };
}

/**
 * ComfyUI-GGUF's converter (tools/convert.py, `shape_fix` for SD1 and SDXL) stores a matrix whose
 * rows are not whole 256-value blocks as rows of 256 values, and the real (PyTorch) shape under
 * this key; its loader views the tensor in that shape again.
 */
const ORIG_SHAPE = 'comfy.gguf.orig_shape.';

/** The declared real shape of each reshaped tensor of a file, by tensor name. */
function declaredShapes(file: GgufFile): Map<string, unknown> {
  const shapes = new Map<string, unknown>();
  for (const kv of file.metadata) if (kv.key.startsWith(ORIG_SHAPE)) shapes.set(kv.key.slice(ORIG_SHAPE.length), kv.value);
  return shapes;
}

/**
 * How the plan sees a tensor with a declared real shape: in that shape, when it holds the tensor's
 * values (the bytes are the same row-major values either way), with the runs of rows that hold
 * whole blocks of its type (a Q4_K 320-wide matrix: 4 rows, 5 blocks); otherwise as stored, with
 * why the entry was not taken. Some tools write the entry for every tensor: a shape equal to the
 * stored one, or a 1-D one, changes nothing.
 */
function realShape(t: GgufTensor, declared: unknown, arch: unknown): { shape: number[]; rowBlock: number } | { why: string } {
  const raw: unknown[] = Array.isArray(declared) ? declared : [];
  const dims = raw.map((d) => (typeof d === 'bigint' ? Number(d) : d));
  const valid = dims.length >= 1 && dims.length <= 4 && dims.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d > 0);
  if (!valid || product(dims as number[]) !== product(t.shape)) {
    const shown = `${ORIG_SHAPE}${t.name} = ${JSON.stringify(Array.isArray(declared) ? dims : declared, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`;
    return { why: `is stored as (${t.shape.join(', ')}) with ${shown}, which does not hold its ${product(t.shape)} values` };
  }
  const real = dims as number[];
  if (real.length < 2 || real.join() === t.shape.join()) return { shape: t.shape, rowBlock: 1 };
  const cols = product(planShape(real, arch).slice(1));
  const rowBlock = t.type.blockSize / gcd(cols, t.type.blockSize);
  // Slabs are at least that many rows (merged in f64): bounded like other runs of mixed rows.
  if (rowBlock * cols * 8 > MAX_MIXED_ROWS_BYTES) {
    return { why: `is stored reshaped to (${t.shape.join(', ')}) from (${real.join(', ')}) (${ORIG_SHAPE}…), whose rows hold whole ${t.type.name} blocks only in runs of ${rowBlock} (${Math.ceil(rowBlock * cols * 8 / 2 ** 20)} MiB), above the limit MAX_MIXED_ROWS_BYTES (${MAX_MIXED_ROWS_BYTES / 2 ** 20} MiB)` };
  }
  return { shape: real, rowBlock };
}

class GgufModel implements BaseModel {
  readonly kind = 'gguf' as const;
  readonly tensors: ReadonlyMap<string, BaseTensor>;
  readonly shards: readonly BaseShard[];
  readonly format: ContainerFormat;
  readonly warnings: readonly string[];
  keptScales?: ReadonlyMap<string, ValueScale>;
  private readonly located: ReadonlyMap<string, { file: GgufFile; tensor: GgufTensor }>;
  /** Weights beside a `.scale` that cannot divide an update, and why (kept-scales.ts). */
  private unusableScales: ReadonlyMap<string, string> = new Map();

  constructor(readonly name: string, private readonly parts: { path: string; file: GgufFile }[], readonly otherFiles: readonly string[], described: DescribedTensors) {
    const { tensors, located } = described;
    this.located = located;
    this.tensors = tensors;
    this.shards = parts.map(({ path, file }) => ({
      path,
      sourceName: file.source.name,
      keyPrefix: '',
      mirrorIfUnchanged: false,
      tensors: file.tensors.map((t) => ({ name: t.name, type: t.type.name, shape: t.shape, byteLength: t.byteLength })),
    }));
    this.format = ggufContainer(parts.map((p) => ({ metadata: p.file.metadata, alignment: p.file.alignment })), this.shards);
    // The output is laid out anew (header, tensors, padding), so bytes past the last tensor, which
    // llama.cpp does not read either, have no place in it.
    this.warnings = parts.filter((p) => p.file.trailingBytes > 0).map(({ path, file }) =>
      `${parts.length === 1 ? name : `${name} (${path})`}: ${file.trailingBytes} byte${file.trailingBytes === 1 ? '' : 's'} after the last tensor's data, which llama.cpp does not read, are not written to the output`);
  }

  /** Reads the `.scale` beside each weight (kept-scales.ts); once, when the model is opened. */
  async readScales(): Promise<void> {
    const stored = new Map([...this.located].map(([name, { tensor }]) => [name, { type: tensor.type.name, shape: tensor.shape }]));
    const arch = this.metadata('general.architecture');
    const { scales, unusable } = await readKeptScales(stored, async (name) => this.format.decodeRows(this.locate(name).tensor.type.name, await this.read(name)), typeof arch === 'string' ? arch : undefined);
    if (scales.size > 0) this.keptScales = scales;
    this.unusableScales = unusable;
  }

  /** A value of the first part's metadata (where llama.cpp reads the model's hyperparameters). */
  metadata(key: string): unknown {
    return this.parts[0].file.value(key)?.value;
  }

  async read(name: string): Promise<Uint8Array> {
    const { file, tensor } = this.locate(name);
    return file.readPart(tensor, 0, tensor.byteLength);
  }

  async readPart(name: string, start: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const { file, tensor } = this.locate(name);
    return file.readPart(tensor, start, length, into);
  }

  async readRows(name: string, rowStart: number, rowCount: number): Promise<FloatTensorBytes> {
    const { tensor } = this.locate(name);
    const shape = this.tensors.get(name)!.shape;
    if (shape.length === 0) return this.format.decodeRows(tensor.type.name, await this.readPart(name, 0, tensor.byteLength));
    // Counted in values: a row of a tensor seen in its real shape need not be whole blocks.
    const cols = product(shape.slice(1));
    if ((rowStart * cols) % tensor.type.blockSize !== 0 || (rowCount * cols) % tensor.type.blockSize !== 0) {
      throw new MergeError('BAD_ARGUMENT', `${name}: rows ${rowStart}…${rowStart + rowCount} are not whole ${tensor.type.name} blocks (read runs of ${this.tensors.get(name)!.rowBlock ?? 1} rows)`);
    }
    const bytes = (values: number) => ggmlRowBytes(tensor.type, values);
    return this.format.decodeRows(tensor.type.name, await this.readPart(name, bytes(rowStart * cols), bytes(rowCount * cols)));
  }

  refuseAsBase(): void {
    refuseProjectorBase(this.parts[0].file.source.name, this.metadata('general.architecture'), this.metadata('general.type'));
  }

  planProblems(plan: MergePlan, adapters: readonly ParsedAdapter[]): PlanProblem[] {
    const problems: PlanProblem[] = [];
    // llama.cpp refuses an adapter converted for another architecture (the names would not mean the same).
    const arch = this.metadata('general.architecture'); // a string, or none (checkParts)
    for (const adapter of adapters) {
      const theirs = adapter.format === 'gguf' ? adapter.config['general.architecture'] : undefined;
      if (theirs !== undefined && theirs !== arch) {
        problems.push({
          adapter: adapter.name, module: '', code: 'PLAN_INVALID',
          message: `${adapter.name}: a LoRA for architecture ${JSON.stringify(theirs)}, but the base ${arch === undefined ? 'names none (it has no general.architecture)' : `is ${JSON.stringify(arch)}`}`,
        });
      }
    }
    problems.push(...expertCountProblems(adapters, arch, (key) => this.metadata(key)));
    problems.push(...resizedVocabularyProblems(adapters, this.tensors, arch));
    const check = (baseKey: string, adapter: string, module: string) => {
      const tensor = this.locate(baseKey).tensor;
      if (blockDecoder(tensor.type)) return;
      problems.push({
        adapter, module, code: 'UNSUPPORTED_FORMAT',
        message: `${adapter}: module "${module}": base tensor ${baseKey} is ${tensor.type.name}, which loramerge cannot decode (it reads ${DECODER_TYPE_NAMES.join(', ')})`,
      });
    };
    for (const u of plan.updates) check(u.baseKey, u.terms[0].adapter, u.terms[0].moduleName);
    for (const b of plan.biasUpdates) check(b.baseKey, b.terms[0].adapter, b.terms[0].moduleName);
    for (const r of plan.replacements) check(r.baseKey, r.adapter, r.baseKey);
    // A weight whose `.scale` cannot divide its update (kept-scales.ts).
    const scaled = (baseKey: string, adapter: string, module: string) => {
      const why = this.unusableScales.get(baseKey);
      if (why) problems.push({ adapter, module, code: 'UNSUPPORTED_FORMAT', message: `${adapter}: module "${module}": ${why}` });
    };
    for (const u of plan.updates) scaled(u.baseKey, u.terms[0].adapter, u.terms[0].moduleName);
    for (const r of plan.replacements) scaled(r.baseKey, r.adapter, r.baseKey);
    for (const r of plan.rowSets) scaled(r.baseKey, r.terms[0].adapter, r.baseKey);
    return problems;
  }

  planWarnings(plan: MergePlan, dtype?: string, importance?: ImportanceMatrix): string[] {
    const quantized = new Map<string, number>();
    // With a --dtype, each merged tensor is written in the type it gives that tensor: re-quantized to
    // its own type only where that type is its own (a mix's, or --dtype its type), else converted,
    // which the output's own warning reports. An unknown --dtype is refused right after the plan.
    let requested: string | undefined;
    try {
      requested = dtype === undefined ? undefined : this.format.parseOutputType(dtype);
    } catch {
      requested = undefined;
    }
    const stored = requested === undefined ? undefined : new Map(this.shards.flatMap((s) => s.tensors.map((t) => [t.name, t] as const)));
    // Merged tensors of a type written only with an importance matrix (the IQ1 and IQ2 types): F16 without one.
    const needImatrix: string[] = [];
    const needImatrixTypes = new Map<string, number>();
    // With the importance matrix given: the merged tensors re-quantized with its weights, those it has
    // a fitting entry for (an IQ2 one without is refused by the merge, naming it, as llama-quantize
    // stops on it; another is quantized without weights, as llama-quantize does).
    const weighted: string[] = [];
    const weightedTypes = new Map<string, number>();
    const fittingEntry = (t: GgufTensor) => {
      const entry = importance?.entries.get(t.name);
      return entry !== undefined && entry.length === (t.ne[0] ?? 1) * (t.ne[2] ?? 1);
    };
    const keys = [...plan.updates.map((u) => u.baseKey), ...plan.biasUpdates.map((b) => b.baseKey), ...plan.replacements.map((r) => r.baseKey)];
    for (const key of new Set(keys)) {
      const type = this.locate(key).tensor.type;
      const tensor = stored?.get(this.locate(key).tensor.name);
      // Written in another type: not re-quantized to its own (the output's warning reports the
      // conversion); a type written only with an importance matrix goes to F16 without one.
      const converted = tensor !== undefined && this.format.outputType(tensor, false, requested) !== type.name;
      const needsImportance = needsImportanceFor(type, this.locate(key).tensor.name);
      if (!converted && needsImportance && importance) {
        const name = this.locate(key).tensor.name;
        if (!importance.entries.has(name)) continue;
        weightedTypes.set(type.name, (weightedTypes.get(type.name) ?? 0) + 1);
        weighted.push(name);
        continue;
      }
      if (!converted && needsImportance) {
        needImatrixTypes.set(type.name, (needImatrixTypes.get(type.name) ?? 0) + 1);
        needImatrix.push(this.locate(key).tensor.name);
        continue;
      }
      if (converted) continue;
      const codec = blockCodec(type);
      if (type.blockSize > 1 && codec?.encodeWeighted && !codec.ignoresImportance && fittingEntry(this.locate(key).tensor)) {
        weightedTypes.set(type.name, (weightedTypes.get(type.name) ?? 0) + 1);
        weighted.push(this.locate(key).tensor.name);
        continue;
      }
      if (type.blockSize > 1 && codec) quantized.set(type.name, (quantized.get(type.name) ?? 0) + 1);
    }
    const list = (m: Map<string, number>) => [...m].map(([type, n]) => `${n} ${type}`).join(', ');
    const warnings: string[] = [];
    if (quantized.size > 0) {
      const when = dtype === undefined || requested === undefined ? 'unless --dtype chooses another type, ' : `with --dtype ${dtype}, `;
      warnings.push(`${this.name}: ${when}the merged tensors (${list(quantized)}) are re-quantized to their own types by llama.cpp's reference rules; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)`);
    }
    warnings.push(...llamaCppAdapterScaleWarnings(plan, this.keptScales));
    if (weightedTypes.size > 0) {
      const names = `${weighted.slice(0, 3).join(', ')}${weighted.length > 3 ? ', …' : ''}`;
      const types = [...weightedTypes.keys()];
      const to = types.length === 1 ? types[0] : `their own types (${types.join(', ')})`;
      warnings.push(`${this.name}: the merged tensors (${list(weightedTypes)}: ${names}) are re-quantized to ${to} with the importance matrix ${importance!.file}, as llama-quantize --imatrix quantizes them; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)`);
    }
    if (needImatrixTypes.size > 0) {
      const names = `${needImatrix.slice(0, 3).join(', ')}${needImatrix.length > 3 ? ', …' : ''}`;
      const types = [...needImatrixTypes.keys()].join(' or ');
      warnings.push(`${this.name}: the merged tensors (${list(needImatrixTypes)}: ${names}) are written as F16, as llama.cpp's export-lora writes a merged tensor, unless an importance matrix is given (--imatrix): llama-quantize writes ${types} only with one, and with one loramerge quantizes ${needImatrix.length === 1 ? 'it' : 'them'} to ${types} as llama-quantize --imatrix does`);
    }
    return warnings;
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.file.source.close()));
  }

  private locate(name: string): { file: GgufFile; tensor: GgufTensor } {
    const found = this.located.get(name);
    if (!found) throw new MergeError('NOT_FOUND', `${this.name}: no tensor "${name}"`);
    return found;
  }
}

/**
 * A multimodal projector GGUF (`convert_hf_to_gguf.py --mmproj`: general.architecture "clip",
 * general.type "mmproj"; `v.blk.N.…`, `mm.…` tensors) holds a vision-language model's vision
 * encoder and projector, which llama.cpp's mtmd loads beside the language model (`--mmproj`).
 * llama.cpp applies no LoRA to it (its adapters and export-lora are the language model's), and its
 * converter's names and reordered rows for the vision tower are not mapped here, so a merge into it
 * is refused in one line (BaseModel.refuseAsBase), before the adapters' checks against the base (a
 * tie under ensure_weight_tying, which a projector's lack of token_embd cannot tell) and the
 * modules' misses would each say less.
 */
function refuseProjectorBase(name: string, arch: unknown, type: unknown): void {
  if (arch !== 'clip' && type !== 'mmproj') return;
  const says = [arch === 'clip' ? 'general.architecture "clip"' : '', type === 'mmproj' ? 'general.type "mmproj"' : ''].filter(Boolean).join(', ');
  throw new MergeError('UNSUPPORTED_FORMAT', `${name}: is a multimodal projector (mmproj) GGUF (${says}): the vision encoder and projector llama.cpp loads beside a language model with --mmproj, to which it applies no LoRA; give the language model's GGUF as the base (for a LoRA on the vision tower, merge into the safetensors model and convert that with convert_hf_to_gguf.py --mmproj)`);
}

/**
 * A llama.cpp LoRA on weights with a `.scale` is merged as ΔW / scale, in the model's values: as
 * convert_lora_to_gguf's PEFT adapter was trained, and as llama.cpp applies it since it adds LoRA
 * products after multiplying by the scale (ggml-org/llama.cpp#24331). export-lora, which does not
 * read `.scale`, adds ΔW to the stored values (ΔW × scale in the model's values), as earlier
 * llama.cpp builds applied it. The tools disagree, so each such adapter is named.
 */
function llamaCppAdapterScaleWarnings(plan: MergePlan, scales: ReadonlyMap<string, ValueScale> | undefined): string[] {
  if (!scales) return [];
  const scaled = new Map<string, string[]>();
  for (const u of plan.updates) {
    if (!scales.has(u.baseKey)) continue;
    for (const t of u.terms) {
      if (plan.adapters[t.adapterIndex]?.format !== 'gguf') continue;
      const keys = scaled.get(t.adapter) ?? [];
      if (!keys.includes(u.baseKey)) keys.push(u.baseKey);
      scaled.set(t.adapter, keys);
    }
  }
  return [...scaled].map(([adapter, keys]) =>
    `${adapter}: ${keys.length === 1 ? 'one weight' : `${keys.length} weights`} it changes (${keys.slice(0, 2).join(', ')}${keys.length > 2 ? ', …' : ''}) carr${keys.length === 1 ? 'ies' : 'y'} a llama.cpp scale (.scale): its update is divided by that scale before it is added to the stored values, so that the model's weight changes by ΔW, as current llama.cpp applies a LoRA (after the scale) and as the adapter was trained; export-lora, which does not read .scale, would add ΔW to the stored values (ΔW × scale)`);
}

/**
 * A MoE LoRA's per-expert factors (gguf-adapter.ts: modules addressed `<tensor>[e/experts]`) must
 * have one slice per expert of the base: llama.cpp's ggml_mul_mat_id pairs them by index.
 */
function expertCountProblems(adapters: readonly ParsedAdapter[], arch: unknown, metadata: (key: string) => unknown): PlanProblem[] {
  if (typeof arch !== 'string') return [];
  const declared = metadata(`${arch}.expert_count`);
  if (typeof declared !== 'number' && typeof declared !== 'bigint') return [];
  const problems: PlanProblem[] = [];
  for (const adapter of adapters) {
    if (adapter.format !== 'gguf') continue;
    const seen = new Set<string>();
    for (const m of adapter.modules) {
      const slice = /^(.+)\[(\d+)\/(\d+)\]$/.exec(m.address.path);
      if (!slice || seen.has(slice[1]) || Number(slice[3]) === Number(declared)) continue;
      seen.add(slice[1]);
      problems.push({
        adapter: adapter.name, module: m.name, code: 'SHAPE_MISMATCH',
        message: `${adapter.name}: ${slice[1]}.weight has lora factors for ${slice[3]} experts, but the base holds ${declared} (${arch}.expert_count); llama.cpp pairs them expert by expert`,
      });
    }
  }
  return problems;
}

const VOCABULARY_TENSORS: readonly [RegExp, string][] = [[/(^|\.)embed_tokens\.weight$/, 'token_embd.weight'], [/(^|\.)lm_head\.weight$/, 'output.weight']];

/**
 * Architectures whose converter keeps only the rows of embed_tokens its tokenizer has tokens for
 * (convert_hf_to_gguf.py Gemma3Model.modify_tensors, inherited by EmbeddingGemma and Gemma 4): Gemma
 * 3's multimodal checkpoints hold 262208 rows of embed_tokens for a tokenizer of 262144 tokens, so
 * token_embd is shorter than the embedding an adapter was trained on without any resize.
 */
const TOKENIZER_ROWS_ONLY: Readonly<Record<string, string>> = { gemma3: 'Gemma 3', 'gemma-embedding': 'EmbeddingGemma', gemma4: 'Gemma 4' };

/**
 * A saved embedding or head (modules_to_save) with another number of rows than the base's comes
 * from a resized vocabulary: a GGUF holds the tokenizer too (tokenizer.ggml.tokens, scores, token
 * types, merges), which a PEFT adapter does not carry, so replacing the tensor alone would give a
 * file whose tokens and embeddings disagree. Where the converter drops the embedding's rows past the
 * tokenizer (TOKENIZER_ROWS_ONLY), a longer copy may hold just those rows, or a resize too, which
 * the GGUF cannot tell apart. The plan's shape check refuses it; this says why.
 */
function resizedVocabularyProblems(adapters: readonly ParsedAdapter[], tensors: ReadonlyMap<string, BaseTensor>, arch: unknown): PlanProblem[] {
  const problems: PlanProblem[] = [];
  const trimmedBy = typeof arch === 'string' && Object.hasOwn(TOKENIZER_ROWS_ONLY, arch) ? TOKENIZER_ROWS_ONLY[arch] : undefined;
  for (const adapter of adapters) {
    for (const rep of adapter.replacements) {
      if ((rep.origin ?? 'modules_to_save') !== 'modules_to_save') continue;
      const target = VOCABULARY_TENSORS.find(([pattern]) => pattern.test(rep.path))?.[1];
      const base = target ? tensors.get(target) : undefined;
      if (!base || rep.tensor.shape.length !== 2 || rep.tensor.shape[0] === base.shape[0]) continue;
      const rows = rep.tensor.shape[0], kept = base.shape[0];
      const message = trimmedBy && target === 'token_embd.weight' && rows > kept
        ? `${adapter.name}: ${rep.path} has ${rows} rows, ${target} ${kept}: convert_hf_to_gguf.py keeps only the rows of ${trimmedBy}'s embed_tokens that its tokenizer has tokens for and drops the rest, so whether the copy's ${rows - kept} rows past them are only those dropped rows or tokens a resized vocabulary added cannot be told from the GGUF; merge into the Hugging Face model and convert it with convert_hf_to_gguf.py`
        : `${adapter.name}: ${rep.path} has ${rows} rows for the base's ${kept}-token vocabulary (${target}): a resized vocabulary needs the GGUF's tokenizer (tokenizer.ggml.*) rewritten too, which the adapter cannot give; merge into the Hugging Face model and convert it with convert_hf_to_gguf.py`;
      problems.push({ adapter: adapter.name, module: rep.path, code: 'UNSUPPORTED_FORMAT', message });
    }
  }
  return problems;
}
