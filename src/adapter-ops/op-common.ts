/** What combine, resize and extract share: grouping modules across adapters, and the output's config and metadata. */
import { MergeError } from '../errors.js';
import type { Pacer } from '../event-turns.js';
import type { FloatDType } from '../dtype.js';
import { openAdapter, type AdapterModule, type ParsedAdapter } from '../formats/adapter.js';
import { BASE_GIVEN_AS_ADAPTER } from '../formats/gguf/gguf-adapter.js';
import type { InputFileSet } from '../io/types.js';
import type { AdapterToWrite, WholeTensor, WrittenModule } from '../formats/adapter-writer.js';
import { guessModelFamily, type ModelFamily } from '../plan/model-family.js';
import { throwIfProblems } from '../plan/problems.js';
import { SPLIT_QKV_PARTS } from '../formats/algorithms/kohya-split-qkv.js';
import { checkFormatFits, checkModules, landingKey, moduleShape, outputName, type ModuleRef, type OutputFormat } from './module-updates.js';
import { stackGgufExperts } from './gguf-lora-names.js';

/** What combine, resize or extract did to one module. */
export interface ModuleReport {
  /** The module's name in the output (PEFT path or kohya key). */
  name: string;
  /** Rank written. */
  rank: number;
  /** ‖kept‖_F / ‖ΔW‖_F. */
  froKept: number;
  /** Singular values found, descending (empty for exact concatenations). */
  singularValues: number[];
  /** ‖ΔW‖²_F, where an SVD was made: the share any rank keeps is √(Σ_{i<k} σᵢ² / this). */
  normSquared?: number;
}

export interface OpResult {
  adapter: AdapterToWrite;
  report: ModuleReport[];
  warnings: string[];
  /** Extract: embeddings saved whole with more rows than the base's (a vocabulary grown for added tokens). */
  grownRows?: GrownRows[];
}

/**
 * An embedding (or its head) the fine-tune grew for added tokens, saved whole: the adapter loads
 * only on a base resized to `rows` the same way.
 */
export interface GrownRows {
  /** The tensor's name in the model (`model.embed_tokens.weight`). */
  tensor: string;
  /** Its rows in the base. */
  baseRows: number;
  /** Its rows in the fine-tune, as saved. */
  rows: number;
}

export const LORAMERGE_VERSION = '0.1.0';

/**
 * Modules grouped, in first-seen order, each group under the output name of its first module;
 * shapes must agree; no adapter names one module twice. `byWeight` groups modules by the base
 * weight their names say they land on (landingKey: one UNet weight named the LDM and the diffusers
 * way), so that combine acts on the sum of every update of that weight, not on each name's share;
 * otherwise by output name (resize, which keeps every module it is given). Modules written under
 * one name are one module too, so a group is every module linked to another by either: which
 * modules are one does not depend on the order the adapters are given in.
 */
export function collectModules(adapters: readonly ParsedAdapter[], format: OutputFormat, command: string, byWeight = false): Map<string, ModuleRef[]> {
  checkModules(adapters, command);
  const refs = adapters.flatMap((adapter, adapterIndex) => adapter.modules.map((module) => ({ adapterIndex, module, outputName: outputName(module, format), shape: moduleShape(module) })));
  // Union–find over the modules: one set per output name and per landing key.
  const parent = refs.map((_, i) => i);
  const root = (i: number): number => (parent[i] === i ? i : (parent[i] = root(parent[i])));
  const firstWith = new Map<string, number>();
  const link = (key: string, i: number) => {
    const j = firstWith.get(key);
    if (j === undefined) firstWith.set(key, i);
    else parent[Math.max(root(i), root(j))] = Math.min(root(i), root(j));
  };
  refs.forEach((r, i) => {
    link(`name:${r.outputName}`, i);
    if (byWeight) link(`weight:${landingKey(r.module, format)}`, i);
  });
  // Each set's members in first-seen order, under its first member's root (the smallest index).
  const groups = new Map<number, ModuleRef[]>();
  refs.forEach((r, i) => {
    const members = groups.get(root(i));
    if (members) members.push(r);
    else groups.set(root(i), [r]);
  });
  const problems: { code: 'SHAPE_MISMATCH' | 'UNSUPPORTED_FORMAT'; message: string }[] = [];
  const kept = new Map<string, ModuleRef[]>();
  for (const members of groups.values()) {
    const group: ModuleRef[] = [];
    for (const ref of members) {
      const { adapterIndex, outputName: name, shape } = ref;
      const adapter = adapters[adapterIndex];
      // A PEFT folder names a module by its path alone (text_encoder. and text_encoder_2. both write
      // text_model.…), so the updates of two components under one path cannot both be written there.
      const other = format === 'peft' ? group.find((r) => r.outputName === name && peftComponent(r) !== undefined && peftComponent(ref) !== undefined && peftComponent(r) !== peftComponent(ref)) : undefined;
      if (other) {
        problems.push({
          code: 'UNSUPPORTED_FORMAT',
          message: `${adapter.name}: a PEFT folder cannot hold updates for both ${peftComponent(other)} and ${peftComponent(ref)}: it names a module without its component, so both would be written as "${name}"; write a .safetensors file instead (give --out a name ending in .safetensors)`,
        });
        continue;
      }
      if (group.some((r) => r.adapterIndex === adapterIndex && r.outputName === name)) {
        problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter.name}: two modules are both named "${name}"` });
        continue;
      }
      const first = group[0];
      if (first && (first.shape.kind !== shape.kind || first.shape.out !== shape.out || first.shape.in !== shape.in || first.shape.downTail.join() !== shape.downTail.join())) {
        const names = first.outputName === name ? `module "${name}"` : `modules "${first.outputName}" and "${name}" (names of one base weight)`;
        problems.push({
          code: 'SHAPE_MISMATCH',
          message: `${names}: ${adapter.name} has a ${shape.kind} update of ${shape.out}×${shape.downTail.join('×')} but ${adapters[first.adapterIndex].name} has a ${first.shape.kind} update of ${first.shape.out}×${first.shape.downTail.join('×')}`,
        });
        continue;
      }
      group.push(ref);
    }
    // Keyed by the name written, the first module's (distinct: modules of one name are one set).
    kept.set(group[0].outputName, group);
  }
  throwIfProblems(command, problems);
  return kept;
}

/**
 * The component a module's name prefix names, as diffusers' pipelines name it (`text_encoder_2`):
 * undefined for a name with no prefix. kohya's `lora_te_` and diffusers' `text_encoder.` are one
 * (the model's first text encoder).
 */
function peftComponent(ref: ModuleRef): string | undefined {
  switch (ref.module.address.part) {
    case undefined: return undefined;
    case 'unet': return 'unet';
    case 'te': case 'te1': return 'text_encoder';
    case 'te2': return 'text_encoder_2';
    case 'te3': return 'text_encoder_3';
  }
}

/**
 * A module of `adapter` naming its model's first text encoder (`lora_te_`, `text_encoder.`) with a
 * CLIP-G's width (hidden 1280): an SDXL refiner's or Stable Cascade's only CLIP, where ComfyUI maps
 * `lora_te_`; on SDXL base (CLIP-L first, 768) such a module fits no weight.
 */
function firstEncoderClipG(adapter: ParsedAdapter): AdapterModule | undefined {
  return adapter.modules.find((m) => {
    if (!landingKey(m, 'kohya').startsWith('te-first:')) return false;
    const shape = moduleShape(m);
    return shape.kind === 'linear' && (shape.out === 1280 || shape.in === 1280);
  });
}

/**
 * Refuses adapters made for different base models: their modules' names say another kind of model
 * (an SDXL UNet LoRA beside a Flux transformer's or a language model's), or kohya's
 * ss_base_model_version says another model (sd_v1 beside sdxl_base_v1-0, whose kohya names do not
 * even overlap). Their modules would otherwise be gathered into one file that no model loads whole.
 */
export function checkSameBaseModel(adapters: readonly ParsedAdapter[], command: string): void {
  // What each adapter's modules say, read once: the checks below compare every pair.
  const kinds = adapters.map((a) => ({
    adapter: a, family: guessModelFamily(a.modules.map((m) => m.key)), version: kohyaModelVersion(a),
    clipGFirst: firstEncoderClipG(a), secondEncoder: a.modules.find((m) => landingKey(m, 'kohya').startsWith('te2:')), unet: unetWidths(a),
  }));
  for (const [i, x] of kinds.entries()) {
    for (const y of kinds.slice(0, i)) {
      for (const [g, s] of [[x, y], [y, x]]) {
        const first = g.clipGFirst;
        const second = first && s.secondEncoder;
        if (first && second) {
          throw new MergeError('UNSUPPORTED_FORMAT', `${command}: ${g.adapter.name}'s module "${first.key}" is a CLIP-G update named as its model's first text encoder (an SDXL refiner's or Stable Cascade's), but ${s.adapter.name}'s "${second.key}" names SDXL's second encoder; a refiner takes only the first, SDXL base only the second (its CLIP-L is not the first's shape); adapters of different base models cannot be combined into one`);
        }
      }
      const [xUnet, yUnet] = [x.unet, y.unet];
      if (xUnet && yUnet && xUnet.refiner !== yUnet.refiner) {
        const said = (a: ParsedAdapter, u: UnetWidths) => `${a.name}'s UNet modules are ${u.refiner ? 'an SDXL refiner\'s (model channels 384' : 'SDXL base\'s or SD1/SD2\'s (model channels 320'}: "${u.module.key}" updates a weight of ${u.out} outputs)`;
        throw new MergeError('UNSUPPORTED_FORMAT', `${command}: ${said(y.adapter, yUnet)}, but ${said(x.adapter, xUnet)}; adapters of different base models cannot be combined into one`);
      }
      if (x.family && y.family && !sameKindOfModel(x.family, y.family)) {
        throw new MergeError('UNSUPPORTED_FORMAT', `${command}: ${y.adapter.name} is for a ${y.family} but ${x.adapter.name} for a ${x.family}; adapters of different base models cannot be combined into one`);
      }
      if (x.version && y.version && x.version.model !== y.version.model) {
        throw new MergeError('UNSUPPORTED_FORMAT', `${command}: ${y.adapter.name} was trained on ${y.version.said} but ${x.adapter.name} on ${x.version.said} (ss_base_model_version); adapters of different base models cannot be combined into one`);
      }
    }
  }
}

/** Which Stable Diffusion UNet an adapter's UNet modules are for, and one module that says so. */
interface UnetWidths { refiner: boolean; module: AdapterModule; out: number }

/**
 * The SDXL refiner's UNet (model_channels 384: blocks of 384, 768 and 1536 channels) from SDXL
 * base's (320, 640, 1280, as SD1's and SD2's), by the output width of the adapter's UNet modules:
 * their names are alike (kohya's `lora_unet_input_blocks_…`, diffusers' `down_blocks.…`), so both
 * read as one family. No refiner weight has 320, 640 or 1280 outputs (its cross-attention takes
 * CLIP-G's 1280 as input only), and no 320-channel UNet weight 384, 768 or 1536. Undefined when its
 * UNet modules say neither, or both.
 */
function unetWidths(adapter: ParsedAdapter): UnetWidths | undefined {
  let found: UnetWidths | undefined;
  for (const m of adapter.modules) {
    // A UNet's blocks only: a transformer's (SD3 medium's, 1536 wide) are no UNet's.
    if (!/^unet:(down_blocks|up_blocks|mid_block)_/.test(landingKey(m, 'kohya'))) continue;
    const { out } = moduleShape(m);
    const refiner = REFINER_WIDTHS.has(out) ? true : BASE_WIDTHS.has(out) ? false : undefined;
    if (refiner === undefined) continue;
    if (found && found.refiner !== refiner) return undefined;
    found ??= { refiner, module: m, out };
  }
  return found;
}

const REFINER_WIDTHS = new Set([384, 768, 1536]);
const BASE_WIDTHS = new Set([320, 640, 1280]);

/** Families that may be one model: a text encoder's LoRA beside its diffusion model's; kohya's bare lora_unet_ beside either denoiser. */
function sameKindOfModel(a: ModelFamily, b: ModelFamily): boolean {
  if (a === b || a === 'text encoder' || b === 'text encoder') return true;
  return a.startsWith('diffusion') && b.startsWith('diffusion') && (a === 'diffusion model' || b === 'diffusion model');
}

/**
 * Trainers' spellings of one model's ss_base_model_version (kohya's sd_v1, sd_v2_v, sdxl_base_v1-0
 * and v0-9, a bare sdxl, sd15, sd2.1, flux1-dev). Only these count: a spelling not listed says
 * nothing we can compare, and refusing on it would refuse two LoRAs of one model.
 */
const MODEL_VERSIONS: readonly [RegExp, string][] = [
  [/^sdxl/, 'sdxl'], [/^sd[_ -]?v?1(?![0-46-9])/, 'sd1'], [/^sd[_ -]?v?2(?![02-9])/, 'sd2'], [/^sd[_ -]?v?3/, 'sd3'],
  [/^flux[_ .-]?1/, 'flux1'], [/^flux[_ .-]?2/, 'flux2'],
];

/** kohya's ss_base_model_version as the model it names, where it is a spelling we know. */
function kohyaModelVersion(adapter: ParsedAdapter): { model: string; said: string } | undefined {
  const said = adapter.config.ss_base_model_version;
  if (typeof said !== 'string') return undefined;
  const value = said.trim().toLowerCase();
  const model = MODEL_VERSIONS.find(([re]) => re.test(value))?.[1];
  return model === undefined ? undefined : { model, said };
}

/** The output adapter: factors' dtype, carried-over modules_to_save, PEFT config fields and metadata. */
export function finishAdapter(
  adapters: readonly ParsedAdapter[], modules: WrittenModule[], report: ModuleReport[], format: OutputFormat,
  metadata: Record<string, string>, comment: string, options: { useRslora?: boolean } = {},
): OpResult {
  checkFormatFits(adapters, format, '--out');
  const warnings: string[] = splitQkvWarnings(adapters);
  const fanIn = new Set(adapters.filter((a) => a.format === 'peft').map((a) => a.config.fan_in_fan_out === true));
  if (fanIn.size > 1) throw new MergeError('BAD_CONFIG', 'the PEFT adapters disagree on fan_in_fan_out; they were made for different models');
  const whole: WholeTensor[] = [];
  const modulesToSave: string[] = [];
  const seen = new Map<string, string>();
  for (const adapter of adapters) {
    for (const r of adapter.replacements) {
      const path = r.path;
      if (seen.has(path)) throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name} and ${seen.get(path)} both replace "${path}" whole (modules_to_save); they cannot be combined`);
      seen.set(path, adapter.name);
      if (format === 'kohya') {
        warnings.push(`${adapter.name}: "${path}" is saved whole (modules_to_save), which a kohya file cannot hold; it is left out`);
        continue;
      }
      const entry = r.tensor;
      whole.push({ key: `base_model.model.${path}`, dtype: entry.dtype, shape: entry.shape, byteLength: entry.byteLength, read: (s, l) => adapter.file.readPart(entry, s, l) });
      const module = path.slice(0, path.lastIndexOf('.'));
      if (module && !modulesToSave.includes(module)) modulesToSave.push(module);
    }
  }
  const common = (key: string): string | undefined => {
    const values = new Set(adapters.map((a) => a.config[key]).filter((v) => typeof v === 'string') as string[]);
    return values.size === 1 ? [...values][0] : undefined;
  };
  const fullMetadata: Record<string, string> = { loramerge_version: LORAMERGE_VERSION, ...metadata };
  if (format === 'kohya') Object.assign(fullMetadata, kohyaMetadata(modules, comment, common));
  return {
    adapter: {
      // llama.cpp MoE LoRAs' experts, one module each here, are one 3-D pair per tensor again.
      format, modules: format === 'gguf' ? stackGgufExperts(adapters, modules) : modules, dtype: factorDtype(adapters), whole, modulesToSave,
      baseModel: common('base_model_name_or_path'), taskType: common('task_type'),
      ...(format === 'gguf' ? { architecture: common('general.architecture') } : {}),
      ...(format === 'gguf' && isQ8File(adapters) ? { ggufType: 'Q8_0' as const } : {}),
      useRslora: options.useRslora ?? false, fanInFanOut: [...fanIn][0] ?? false,
      metadata: fullMetadata,
    },
    report,
    warnings,
  };
}

/**
 * sd-scripts' split_qkv modules are read at α/r per part, the scale they were trained at, and
 * written as plain pairs at that scale: n times what ComfyUI and sd-scripts' flux_merge_lora apply
 * to the input's fused pair (α/(n·r)). The output is stronger there than the input was, so say so.
 */
function splitQkvWarnings(adapters: readonly ParsedAdapter[]): string[] {
  return adapters.flatMap((adapter) => {
    const split = adapter.modules.filter((m) => m.options?.[SPLIT_QKV_PARTS] !== undefined);
    if (split.length === 0) return [];
    const names = split.slice(0, 2).map((m) => `"${m.key}"`).join(', ') + (split.length > 2 ? ', …' : '');
    return [`${adapter.name}: ${split.length} module(s) (${names}) are sd-scripts split_qkv LoRAs of n parts (3 for qkv, 4 for linear1), trained at α/r each; they are written as plain pairs at that scale, so ComfyUI and sd-scripts' flux_merge_lora apply them n times as strongly as they apply the input's fused pairs (α over the fused rank n·r)`];
  });
}

/** kohya's minimum network metadata (sd-scripts build_minimum_network_metadata), plus what the inputs agree on. */
export function kohyaMetadata(modules: readonly WrittenModule[], comment: string, common: (key: string) => string | undefined): Record<string, string> {
  const ranks = new Set(modules.map((m) => m.rank));
  const alphas = new Set(modules.map((m) => m.alpha));
  const out: Record<string, string> = {
    ss_network_module: 'networks.lora',
    ss_network_dim: ranks.size === 1 ? String([...ranks][0]) : 'Dynamic',
    ss_network_alpha: alphas.size === 1 ? String([...alphas][0]) : 'Dynamic',
    ss_training_comment: comment,
  };
  for (const key of ['ss_base_model_version', 'ss_v2', 'ss_sd_model_name']) {
    const v = common(key);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/**
 * The inputs' factor dtype when they agree on one float dtype, else f32; a factor read decoded
 * without rounding (a llama.cpp LoRA's transposed token_embd A) counts as the type it is stored in,
 * as convert_lora_to_gguf --outtype f16 writes it.
 */
function factorDtype(adapters: readonly ParsedAdapter[]): FloatDType {
  const only = storedFactorType(adapters);
  return only === 'F16' || only === 'BF16' ? only : 'F32';
}

/**
 * llama.cpp LoRAs written by convert_lora_to_gguf --outtype q8_0: Q8_0 factors, and F16 ones where
 * the rows are not whole blocks (gguf-py's fallback, most lora_b); an output of them is Q8_0 again.
 */
function isQ8File(adapters: readonly ParsedAdapter[]): boolean {
  const types = new Set(adapters.flatMap((a) => a.modules.flatMap((m) => Object.values(m.tensors).map((t) => t.storedDtype ?? t.dtype))));
  return types.has('Q8_0') && [...types].every((t) => t === 'Q8_0' || t === 'F16');
}

/** The one type every input factor is stored in (see TensorEntry.storedDtype), or undefined. */
function storedFactorType(adapters: readonly ParsedAdapter[]): string | undefined {
  const types = new Set(adapters.flatMap((a) => a.modules.flatMap((m) => Object.values(m.tensors).map((t) => t.storedDtype ?? t.dtype))));
  return types.size === 1 ? [...types][0] : undefined;
}

/**
 * {@link openAdapter} for an adapter job (`job` names it: `combine`, `resizeLora` …): a model given
 * as an adapter is refused with the job's own advice, since the merge's (pass it as the base) names
 * an option these jobs do not have. `pacer`, where given, sees the job's signal inside the opening.
 */
export async function openJobAdapter(files: InputFileSet, job: string, pacer?: Pacer): Promise<ParsedAdapter> {
  try {
    return await openAdapter(files, pacer);
  } catch (e) {
    if (!(e instanceof MergeError) || !e.message.endsWith(BASE_GIVEN_AS_ADAPTER)) throw e;
    const message = `${e.message.slice(0, -BASE_GIVEN_AS_ADAPTER.length)}${job} takes LoRA adapters only, no model; give the adapter's files`;
    throw new MergeError(e.code, message, { cause: e, lines: true });
  }
}
