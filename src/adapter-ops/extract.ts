/**
 * extract: a LoRA whose B·A best approximates T − B for every module of a fine-tuned model T and
 * its base B, as mergekit-extract-lora does, streamed: one module's difference in memory at a time,
 * read in row slabs.
 * - 2-D and 4-D (conv) weights: a randomized SVD of ΔW (exact when its smaller side is at most
 *   EXACT_SIDE_LIMIT), rank `rank`, or per module the smallest rank keeping `energy` of ‖ΔW‖²_F.
 *   √S on each side (mergekit's default), α = rank. A changed bias of such a module becomes
 *   PEFT's lora_B.bias (lora_bias).
 * - Everything else that changed (norms, embeddings, other parameters) is saved whole from T, its
 *   module listed in modules_to_save, as mergekit does. Unchanged tensors are left out.
 */
import type { AlgebraBackend } from '../algebra/algebra-backend.js';
import { decodeToF32, DTYPE_BYTES, isFloatDType, type FloatDType } from '../dtype.js';
import { MergeError, throwIfAborted } from '../errors.js';
import type { Pacer } from '../event-turns.js';
import { openBaseModel, type BaseModel, type BaseTensor } from '../formats/base-model.js';
import { holdsGgufModel } from '../formats/open-model.js';
import { adapterFactorExample } from '../formats/key-forms.js';
import type { InputFileSet } from '../io/types.js';
import type { WholeTensor, WrittenModule } from '../formats/adapter-writer.js';
import type { ProgressListener } from '../pipeline/progress.js';
import { kohyaMetadata, LORAMERGE_VERSION, type GrownRows, type ModuleReport, type OpResult } from './op-common.js';
import { kohyaPartFor, type ModuleShape, type OutputFormat } from './module-updates.js';
import { baseComponents, type BaseComponent } from '../formats/base-components.js';
import { transformersLinearName } from '../formats/layouts/openclip-text.js';
import { decomposeDense, froKept, moduleFromSvd } from './reduce.js';
import { product } from '../integers.js';
import { nonFiniteInTensorText, nonFiniteSpan, nonFiniteWhere } from '../pipeline/value-checks.js';

/**
 * A model extract reads: safetensors only. A GGUF model is refused by name rather than read as a
 * folder of unknown files: its matrices are in GGML's order and blocks (llama's q/k rows permuted),
 * so an adapter from its difference would need names and rows mapped back, which is not covered.
 */
export async function openExtractModel(files: InputFileSet, pacer?: Pacer): Promise<BaseModel> {
  if (holdsGgufModel(files.list())) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${files.name}: a GGUF model; extract reads safetensors models only (GGUF is not covered)`);
  }
  return openBaseModel(files, pacer);
}

export interface ExtractOptions {
  rank?: number;
  /** Fraction of ‖T − B‖²_F each module keeps (per module rank). */
  energy?: number;
  format: OutputFormat;
  seed?: number;
  /** base_model_name_or_path for the PEFT config (the base's config.json `_name_or_path`). */
  baseModelName?: string;
}

/** --energy never picks more than this rank (reported when a module needs more). */
export const MAX_ENERGY_RANK = 512;
/** Bytes of T and B read at a time. */
const SLAB_BYTES = 16 * 1024 * 1024;

/** nn.Embedding weights, by their usual names: saved whole unless asked otherwise (mergekit). */
const EMBEDDING = /(^|\.)(embed_tokens|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings|embed_positions|token_embedding|position_embedding|shared|lm_head|embed_out|tok_embeddings)$/;

interface ModuleTensors {
  path: string;
  params: Map<string, BaseTensor>;
}

export async function extractAdapter(
  base: BaseModel, tuned: BaseModel, options: ExtractOptions, backend: AlgebraBackend,
  run: { signal?: AbortSignal; onProgress?: ProgressListener } = {},
): Promise<OpResult> {
  const grown = checkSameTensors(base, tuned);
  const modules = groupModules(tuned);
  const bytesTotal = [...tuned.tensors.values()].reduce((s, t) => s + t.byteLength, 0);
  let bytesDone = 0;
  const written: WrittenModule[] = [];
  const report: ModuleReport[] = [];
  const whole: WholeTensor[] = [];
  const modulesToSave: string[] = [];
  const warnings: string[] = [];
  const capped: string[] = [];
  const kohyaNameOf = options.format === 'kohya' ? kohyaNamer(tuned.tensors.keys()) : undefined;
  const unnamed: string[] = [];
  let dtype: FloatDType | undefined;
  let done = 0;
  for (const m of modules) {
    throwIfAborted(run.signal);
    run.onProgress?.({ phase: 'merge', tensorsDone: done, tensorsTotal: modules.length, bytesDone, bytesTotal, tensor: m.path });
    const weight = m.params.get('weight');
    const lowRank = weight !== undefined && m.path !== '' && (weight.shape.length === 2 || weight.shape.length === 4)
      && isFloatDType(weight.dtype) && !EMBEDDING.test(m.path) && sameShape(base.tensors.get(weight.name)!, weight);
    const kohyaName = kohyaNameOf && weight ? kohyaNameOf.module(m.path, weight.name) : undefined;
    const inProj = m.params.get('in_proj_weight');
    const qkvNames = kohyaNameOf && inProj && inProj.shape.length === 2 && inProj.shape[0] % 3 === 0 && isFloatDType(inProj.dtype)
      && sameShape(base.tensors.get(inProj.name)!, inProj) ? kohyaNameOf.fusedQkv(m.path, inProj.name) : undefined;
    if (inProj && qkvNames) {
      // open_clip's fused attention input: kohya's files hold its q, k and v thirds as three modules.
      for (const [param, t] of m.params) {
        if (param !== 'in_proj_weight' && await differs(base, tuned, t, run.signal)) {
          warnings.push(`${t.name} changed, but a kohya file cannot hold ${param.endsWith('bias') ? 'a bias update' : 'it'}; it is left out`);
        }
      }
      const diff = await difference(base, tuned, inProj, run.signal);
      const rows = inProj.shape[0] / 3, cols = inProj.shape[1];
      for (const [third, name] of qkvNames.entries()) {
        const values = diff.values.slice(third * rows * cols, (third + 1) * rows * cols);
        if (values.every((x) => x === 0)) continue;
        dtype ??= inProj.dtype as FloatDType;
        const shape: ModuleShape = { kind: 'linear', out: rows, in: cols, downTail: [cols], upTail: [] };
        const { module, rankReport, hitCap } = await decomposeModule(backend, values, shape, name, options, run.signal);
        if (hitCap) capped.push(name);
        written.push(module);
        report.push(rankReport);
      }
    } else if (lowRank && kohyaNameOf && kohyaName === undefined) {
      for (const t of m.params.values()) {
        if (await differs(base, tuned, t, run.signal)) {
          unnamed.push(m.path);
          break;
        }
      }
    } else if (lowRank) {
      const diff = await difference(base, tuned, weight, run.signal);
      const others = [...m.params.entries()].filter(([p]) => p !== 'weight');
      let bias: Float32Array | undefined;
      for (const [param, t] of others) {
        const d = await difference(base, tuned, t, run.signal);
        if (d.total2 === 0) continue;
        if (param === 'bias' && t.shape.length === 1 && t.shape[0] === weight.shape[0] && options.format === 'peft') bias = d.values;
        else if (param === 'bias' && options.format === 'kohya') warnings.push(`${t.name} changed, but a kohya file cannot hold a bias update; it is left out`);
        else throw new MergeError('UNSUPPORTED_FORMAT', `${tuned.name}: tensor "${t.name}" changed, and a LoRA of module "${m.path}" cannot express it; write a PEFT folder or exclude it`);
      }
      if (diff.total2 > 0 || bias) {
        dtype ??= weight.dtype as FloatDType;
        const shape: ModuleShape = {
          kind: weight.shape.length === 4 ? 'conv' : 'linear',
          out: weight.shape[0], in: diff.values.length / weight.shape[0],
          downTail: weight.shape.slice(1), upTail: weight.shape.slice(2).map(() => 1),
        };
        const name = kohyaName ?? m.path;
        const { module, rankReport, hitCap } = await decomposeModule(backend, diff.values, shape, name, options, run.signal);
        if (hitCap) capped.push(m.path);
        if (bias) module.bias = bias;
        written.push(module);
        report.push(rankReport);
      }
    } else {
      let changed = false;
      for (const t of m.params.values()) {
        if (await differs(base, tuned, t, run.signal)) changed = true;
      }
      if (changed) {
        if (options.format === 'kohya' || m.path === '') {
          warnings.push(`${[...m.params.values()].map((t) => t.name).join(', ')} changed but ${m.path === '' ? 'belongs to no module' : 'is not a low-rank update'}, which a ${options.format === 'kohya' ? 'kohya file' : 'PEFT adapter'} cannot hold; it is left out`);
        } else {
          modulesToSave.push(m.path);
          for (const t of m.params.values()) {
            whole.push({ key: `base_model.model.${t.name}`, dtype: t.dtype, shape: t.shape, byteLength: t.byteLength, read: (s, l) => tuned.readPart(t.name, s, l) });
          }
        }
      }
    }
    for (const t of m.params.values()) bytesDone += t.byteLength;
    done++;
  }
  run.onProgress?.({ phase: 'done', tensorsDone: done, tensorsTotal: modules.length, bytesDone, bytesTotal });
  if (written.length === 0 && whole.length === 0) throw new MergeError('BAD_ARGUMENT', `${tuned.name}: no tensor differs from ${base.name}; there is nothing to extract`);
  if (unnamed.length > 0) {
    warnings.push(`${unnamed.length} changed module(s) have no name a kohya LoRA loader reads (a VAE's modules, for one) and are left out (${unnamed.slice(0, 3).join(', ')}${unnamed.length > 3 ? ', …' : ''}); write a PEFT folder to keep them under their own paths`);
  }
  if (capped.length > 0) {
    warnings.push(`${capped.length} module(s) need a rank above ${MAX_ENERGY_RANK} to keep ${options.energy} of their energy and were capped at ${MAX_ENERGY_RANK} (${capped.slice(0, 3).join(', ')}${capped.length > 3 ? ', …' : ''})`);
  }
  // Saved whole at the fine-tune's size, a grown embedding does not fit the base as it is: said,
  // as PEFT says nothing and the adapter then fails to load on the unresized base.
  const savedWhole = new Set(whole.map((w) => w.key));
  const grownRows = grown.filter((g) => savedWhole.has(`base_model.model.${g.tensor}`));
  if (grownRows.length > 0) {
    const rows = grownRows.map((g) => `${g.tensor} has ${g.rows} rows (${g.baseRows} in ${base.name})`).join(', ');
    warnings.push(`${tuned.name} has a vocabulary grown for added tokens: ${rows}; saved whole, so the adapter loads only on a base resized to ${grownRows[0].rows} rows the same way (transformers' resize_token_embeddings) before it is loaded`);
  }
  const how = options.rank !== undefined ? `rank ${options.rank}` : `energy ${options.energy}`;
  const metadata: Record<string, string> = {
    loramerge_version: LORAMERGE_VERSION,
    loramerge_command: 'extract',
    loramerge_rule: how,
    loramerge_sources: JSON.stringify({ base: base.name, tuned: tuned.name }),
  };
  if (options.format === 'kohya') Object.assign(metadata, kohyaMetadata(written, `extracted (${how}) from the difference of two models`, () => undefined));
  return {
    adapter: {
      format: options.format, modules: written, dtype: dtype ?? 'F32', whole, modulesToSave,
      baseModel: options.baseModelName, metadata,
    },
    report,
    warnings,
    grownRows,
  };
}

async function decomposeModule(backend: AlgebraBackend, values: Float32Array, shape: ModuleShape, name: string, options: ExtractOptions, signal?: AbortSignal) {
  const side = Math.min(shape.out, shape.in);
  const d = { rows: shape.out, cols: shape.in, data: values };
  if (options.rank !== undefined) {
    const rank = Math.min(options.rank, side);
    const { svd, total2 } = await decomposeDense(backend, d, rank, options.seed, signal);
    const module = await moduleFromSvd(svd, rank, 'sqrt', name, shape, rank, signal);
    return { module, rankReport: { name, rank, froKept: froKept(svd.s, rank, total2), singularValues: Array.from(svd.s), normSquared: total2 }, hitCap: false };
  }
  const energy = options.energy!;
  const cap = Math.min(MAX_ENERGY_RANK, side);
  for (let wanted = Math.min(32, cap); ; wanted = Math.min(wanted * 4, cap)) {
    const { svd, total2 } = await decomposeDense(backend, d, wanted, options.seed, signal);
    let kept = 0, rank = 0;
    const limit = Math.min(wanted, svd.s.length);
    while (rank < limit && kept < energy * total2) kept += svd.s[rank] ** 2, rank++;
    const reached = kept >= energy * total2 * (1 - 1e-12);
    if (reached || wanted >= cap || svd.s.length < wanted) {
      rank = Math.max(rank, 1);
      const module = await moduleFromSvd(svd, rank, 'sqrt', name, shape, rank, signal);
      return { module, rankReport: { name, rank, froKept: froKept(svd.s, rank, total2), singularValues: Array.from(svd.s), normSquared: total2 }, hitCap: !reached };
    }
  }
}

/** kohya's names of a model's modules (see {@link kohyaNamer}). */
export interface KohyaNames {
  /** The name of the module at `path` whose weight is `weightKey`; undefined where no kohya loader reads one. */
  module(path: string, weightKey: string): string | undefined;
  /** An open_clip attention's fused `in_proj_weight` (`inProjKey`): the names of its q, k and v thirds; else undefined. */
  fusedQkv(path: string, inProjKey: string): [string, string, string] | undefined;
}

/**
 * kohya's name of each module of a model, from the components its keys reveal (base-components.ts),
 * as ComfyUI's and kohya's loaders read them: the denoiser's modules are `lora_unet_` + its own key
 * (a Flux or diffusers transformer stored bare too, which the path alone would take for a text
 * encoder), a CLIP or T5 encoder's `lora_te_`, or `lora_te1_`/`lora_te2_`/`lora_te3_` where there are
 * several (ComfyUI numbers T5 after the CLIPs), in transformers naming: an encoder stored in
 * open_clip's (SDXL's `conditioner.embedders.1.model.`, SD2's `cond_stage_model.model.`) is renamed as
 * kohya's sdxl_model_util converts it (out_proj, c_fc → fc1, c_proj → fc2; the fused in_proj's
 * thirds → q, k, v). Undefined where no kohya loader reads a name: a VAE's modules and an encoder's
 * other parameters. A model whose keys name no component keeps the path's own name.
 */
export function kohyaNamer(keys: Iterable<string>): KohyaNames {
  const components = baseComponents(keys);
  const owner = new Map<string, BaseComponent>();
  for (const c of components) for (const key of c.keys) owner.set(key, c);
  const encoders = components.filter((c) => c.role === 'text-encoder');
  const clips = encoders.filter((c) => c.encoder !== 't5').length;
  const hasClipL = encoders.some((e) => e.encoder === 'clip_l');
  const underscored = (rest: string) => rest.replace(/\./g, '_');
  const partOf = (c: BaseComponent): string => {
    if (c.encoder === 't5') return `te${clips + 1}`;
    if (encoders.length === 1) return 'te';
    if (c.encoder === 'clip_l') return 'te1';
    if (c.encoder === 'clip_g') return hasClipL ? 'te2' : 'te';
    return `te${c.ordinal ?? 1}`;
  };
  /** The encoder's module path after its prefix (and open_clip's or transformers' `transformer.`). */
  const encoderPath = (c: BaseComponent, path: string) => path.slice(c.prefix.length).replace(/^transformer\./, '');
  return {
    module(path, weightKey) {
      const c = owner.get(weightKey);
      if (!c) return kohyaNameOfPath(path);
      if (c.role === 'denoiser') return `lora_unet_${underscored(path.slice(c.prefix.length))}`;
      if (c.role !== 'text-encoder') return undefined;
      const named = encoderPath(c, path);
      if (c.encoder === 't5') return /^encoder\./.test(named) ? `lora_${partOf(c)}_${underscored(named)}` : undefined;
      if (/^text_model\./.test(named)) return `lora_${partOf(c)}_${underscored(named)}`;
      const openclip = transformersLinearName(named);
      return openclip ? `lora_${partOf(c)}_${underscored(openclip)}` : undefined;
    },
    fusedQkv(path, inProjKey) {
      const c = owner.get(inProjKey);
      const block = c?.role === 'text-encoder' ? /^resblocks\.(\d+)\.attn$/.exec(encoderPath(c, path)) : null;
      if (!c || !block) return undefined;
      const name = (x: string) => `lora_${partOf(c)}_text_model_encoder_layers_${block[1]}_self_attn_${x}_proj`;
      return [name('q'), name('k'), name('v')];
    },
  };
}

/** kohya's name from a module path alone, by its prefix (diffusers pipeline folders, LLMs). */
function kohyaNameOfPath(path: string): string {
  const prefixes: [RegExp, string][] = [
    [/^model\.diffusion_model\./, 'unet'], [/^unet\./, 'unet'],
    [/^cond_stage_model\.transformer\./, 'te'], [/^text_encoder\./, 'te'],
    [/^conditioner\.embedders\.0\.transformer\./, 'te1'], [/^text_encoder_2\./, 'te2'],
  ];
  for (const [re, part] of prefixes) {
    if (re.test(path)) return `lora_${part}_${path.replace(re, '').replace(/\./g, '_')}`;
  }
  return `lora_${kohyaPartFor(path)}_${path.replace(/\./g, '_')}`;
}

/** Refuses two models that are not one model and its fine-tune; returns the embeddings whose vocabulary grew. */
function checkSameTensors(base: BaseModel, tuned: BaseModel): GrownRows[] {
  // A LoRA given as either model (the adapter meant for `merge`): say so rather than list its
  // factors as tensors the other model lacks.
  for (const model of [tuned, base]) {
    const factor = adapterFactorExample(model.tensors.keys());
    if (factor !== undefined) {
      throw new MergeError('UNKNOWN_MODULE', `${model.name}: a LoRA adapter, not a model (its tensors are factors such as "${factor}"): extract takes a base model and a fine-tuned version of it; a LoRA is merged into its base (loramerge merge), not extracted from`);
    }
  }
  const onlyTuned = [...tuned.tensors.keys()].filter((k) => !base.tensors.has(k));
  const onlyBase = [...base.tensors.keys()].filter((k) => !tuned.tensors.has(k));
  const list = (names: string[]) => `${names.slice(0, 5).join(', ')}${names.length > 5 ? `, … (${names.length} in all)` : ''}`;
  if (onlyTuned.length > 0) throw new MergeError('UNKNOWN_MODULE', `${tuned.name}: tensors missing from ${base.name}: ${list(onlyTuned)}; are they the same architecture?`);
  if (onlyBase.length > 0) throw new MergeError('UNKNOWN_MODULE', `${base.name}: tensors missing from ${tuned.name}: ${list(onlyBase)}; are they the same architecture?`);
  // A tensor of another shape is another model, or another size of it: saved whole it would not
  // load on the base. Only an embedding (or its head) may have grown rows, a vocabulary resized
  // for added tokens, which PEFT saves whole and loads once the base is resized the same way.
  const reshaped = [...tuned.tensors.values()].filter((t) => {
    const b = base.tensors.get(t.name)!;
    if (sameShape(b, t)) return false;
    const grownVocabulary = EMBEDDING.test(t.name.replace(/\.[^.]+$/, '')) && b.shape.length === t.shape.length && b.shape.slice(1).join() === t.shape.slice(1).join();
    return !grownVocabulary;
  });
  if (reshaped.length > 0) {
    const t = reshaped[0];
    const more = reshaped.length > 1 ? ` (and ${reshaped.length - 1} more)` : '';
    throw new MergeError('SHAPE_MISMATCH', `${tuned.name}: tensor "${t.name}" is ${fmt(t.shape)} here but ${fmt(base.tensors.get(t.name)!.shape)} in ${base.name}${more}; extract takes a fine-tune of the same model and size (only an embedding's vocabulary may grow): are they the same architecture and size?`);
  }
  return [...tuned.tensors.values()].flatMap((t) => {
    const b = base.tensors.get(t.name)!;
    return sameShape(b, t) ? [] : [{ tensor: t.name, baseRows: b.shape[0], rows: t.shape[0] }];
  });
}

function groupModules(model: BaseModel): ModuleTensors[] {
  const byPath = new Map<string, ModuleTensors>();
  for (const t of model.tensors.values()) {
    const dot = t.name.lastIndexOf('.');
    const path = dot < 0 ? '' : t.name.slice(0, dot);
    const param = dot < 0 ? t.name : t.name.slice(dot + 1);
    const m = byPath.get(path) ?? { path, params: new Map() };
    byPath.set(path, m);
    m.params.set(param, t);
  }
  return [...byPath.values()];
}

function sameShape(a: BaseTensor, b: BaseTensor): boolean {
  return a.shape.join() === b.shape.join();
}

/** T − B in f32 (the whole tensor; one module's worth of memory), read in row slabs. */
async function difference(base: BaseModel, tuned: BaseModel, t: BaseTensor, signal?: AbortSignal): Promise<{ values: Float32Array; total2: number }> {
  const b = base.tensors.get(t.name)!;
  if (!sameShape(b, t)) throw new MergeError('SHAPE_MISMATCH', `tensor "${t.name}" is ${fmt(b.shape)} in ${base.name} but ${fmt(t.shape)} in ${tuned.name}`);
  if (!isFloatDType(t.dtype) || !isFloatDType(b.dtype)) throw new MergeError('UNSUPPORTED_FORMAT', `tensor "${t.name}" is ${t.dtype}/${b.dtype}; only f32, f16 and bf16 weights can be extracted`);
  const n = product(t.shape);
  const values = new Float32Array(n);
  const perRead = Math.max(1, Math.floor(SLAB_BYTES / Math.max(DTYPE_BYTES[t.dtype], DTYPE_BYTES[b.dtype])));
  let total2 = 0;
  for (let at = 0; at < n; at += perRead) {
    throwIfAborted(signal);
    const count = Math.min(perRead, n - at);
    const [tv, bv] = await Promise.all([
      tuned.readPart(t.name, at * DTYPE_BYTES[t.dtype], count * DTYPE_BYTES[t.dtype]).then((x) => decodeToF32(x, t.dtype as FloatDType)),
      base.readPart(b.name, at * DTYPE_BYTES[b.dtype], count * DTYPE_BYTES[b.dtype]).then((x) => decodeToF32(x, b.dtype as FloatDType)),
    ]);
    for (let i = 0; i < count; i++) {
      const d = tv[i] - bv[i];
      values[at + i] = d;
      total2 += d * d;
    }
  }
  // total2 is NaN or Inf where an input value is; a difference of finite f32 values past float32 is Inf in `values` only.
  if (!Number.isFinite(total2) || !values.every(Number.isFinite)) throw await nonFiniteDifference(base, tuned, t, values);
  return { values, total2 };
}

/**
 * The refusal of a difference T − B that is not finite, with how many values and the first and
 * last row (element, for a vector): a model's own NaN/Inf (the tuned one's first), read again
 * whole on the error path only, or a difference of finite values past float32.
 */
async function nonFiniteDifference(base: BaseModel, tuned: BaseModel, t: BaseTensor, values: Float32Array): Promise<MergeError> {
  for (const model of [tuned, base]) {
    const own = model.tensors.get(t.name)!;
    const held = nonFiniteInTensorText(await model.read(t.name), own.dtype, own.shape);
    if (held) return new MergeError('NON_FINITE', `${model.name}: tensor "${t.name}" holds ${held}; the model file is broken`);
  }
  const past = nonFiniteSpan(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 'F32');
  return new MergeError(
    'NON_FINITE',
    `tensor "${t.name}": the difference ${tuned.name} − ${base.name} is past float32 in ${past.count} value${past.count === 1 ? '' : 's'} (${nonFiniteWhere(t.shape, past)}); no f32 LoRA can hold it`,
  );
}

/** Whether a tensor's bytes (or shape, or dtype) differ between the two models. */
async function differs(base: BaseModel, tuned: BaseModel, t: BaseTensor, signal?: AbortSignal): Promise<boolean> {
  const b = base.tensors.get(t.name)!;
  if (!sameShape(b, t) || b.dtype !== t.dtype) return true;
  for (let at = 0; at < t.byteLength; at += SLAB_BYTES) {
    throwIfAborted(signal);
    const len = Math.min(SLAB_BYTES, t.byteLength - at);
    const [x, y] = await Promise.all([tuned.readPart(t.name, at, len), base.readPart(b.name, at, len)]);
    for (let i = 0; i < len; i++) if (x[i] !== y[i]) return true;
  }
  return false;
}

function fmt(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
