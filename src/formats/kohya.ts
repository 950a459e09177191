/**
 * kohya sd-scripts / LyCORIS LoRA files: one .safetensors with `lora_unet_<path>.lora_down.weight`,
 * `.lora_up.weight`, an optional scalar `.alpha` and LyCORIS's optional `.dora_scale`. Module
 * paths lost their dots (`down_blocks_0_attentions_0_proj_in`); the plan recovers them against the
 * base's keys.
 */
import { decodeToF32, isFloatDType } from '../dtype.js';
import { MergeError, type MergeErrorCode } from '../errors.js';
import { throwIfProblems } from '../plan/problems.js';
import type { KohyaPart, LoraModule, ParsedAdapter } from './adapter.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

const MODULE_NAME = /^lora_(unet|te|te1|te2|te3)_(.+)$/;

/** torch.finfo(torch.float32).eps, which LyCORIS adds to each DoRA norm when merging in f32. */
export const LYCORIS_DORA_EPSILON = 2 ** -23;

/** LyCORIS tensor suffixes of methods other than plain LoRA/LoCon, named for the error message. */
const OTHER_METHODS: [RegExp, string][] = [
  [/^hada_t[12]$/, 'LoHa with Tucker decomposition (hada_t1/hada_t2)'],
  [/^lokr_/, 'LoKr'],
  [/^lora_mid\./, 'LoCon with Tucker decomposition (lora_mid)'],
  [/^(oft_|boft_)/, 'OFT'],
  [/^(a1|a2|b1|b2)\.weight$/, 'GLoRA'],
  [/^(diff|diff_b)$/, 'full weight difference'],
  [/^(w_norm|b_norm)$/, 'norm-layer tuning'],
  [/^(on_input|weight)$/, '(IA)^3'],
];

interface Parts {
  down?: TensorEntry;
  up?: TensorEntry;
  alpha?: TensorEntry;
  doraScale?: TensorEntry;
  /** LoHa: hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b. */
  hada: Partial<Record<'w1a' | 'w1b' | 'w2a' | 'w2b', TensorEntry>>;
}

const HADA_PARTS: Record<string, 'w1a' | 'w1b' | 'w2a' | 'w2b'> = {
  hada_w1_a: 'w1a', hada_w1_b: 'w1b', hada_w2_a: 'w2a', hada_w2_b: 'w2b',
};

type Problem = { code: MergeErrorCode; message: string };

/** Is this file's naming kohya's? (Used to tell kohya files from other single-file adapters.) */
export function looksLikeKohya(file: SafetensorsFile): boolean {
  return file.tensors.some((t) => MODULE_NAME.test(t.name.slice(0, t.name.indexOf('.'))));
}

export async function parseKohyaAdapter(name: string, file: SafetensorsFile): Promise<ParsedAdapter> {
  const fileName = file.source.name;
  const problems: Problem[] = [];
  const groups = new Map<string, Parts>();
  const reportedOther = new Set<string>();

  for (const entry of file.tensors) {
    const dot = entry.name.indexOf('.');
    const moduleKey = dot < 0 ? entry.name : entry.name.slice(0, dot);
    const rest = dot < 0 ? '' : entry.name.slice(dot + 1);
    if (!MODULE_NAME.test(moduleKey)) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${entry.name}" is not a kohya LoRA tensor (expected lora_unet_... or lora_te_...)` });
      continue;
    }
    const parts = groups.get(moduleKey) ?? { hada: {} };
    groups.set(moduleKey, parts);
    if (rest === 'lora_down.weight') parts.down = entry;
    else if (rest === 'lora_up.weight') parts.up = entry;
    else if (rest === 'alpha') parts.alpha = entry;
    else if (rest === 'dora_scale') parts.doraScale = entry;
    else if (HADA_PARTS[rest]) parts.hada[HADA_PARTS[rest]] = entry;
    else {
      const method = OTHER_METHODS.find(([re]) => re.test(rest))?.[1];
      if (!reportedOther.has(moduleKey)) {
        reportedOther.add(moduleKey);
        problems.push({
          code: 'UNSUPPORTED_FORMAT',
          message: method
            ? `${fileName}: module "${moduleKey}" is ${method}, which is not supported yet`
            : `${fileName}: module "${moduleKey}" has an unrecognised tensor "${rest}"`,
        });
      }
    }
  }

  const modules: LoraModule[] = [];
  for (const [key, parts] of groups) {
    if (reportedOther.has(key)) continue;
    const module = await buildModule(name, fileName, key, parts, file, problems);
    if (module) modules.push(module);
  }
  throwIfProblems(name, problems);
  if (modules.length === 0) throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no LoRA tensors found`);

  const config: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(file.metadata)) if (k.startsWith('ss_')) config[k] = v;
  return { name, format: 'kohya', file, modules, replacements: [], warnings: [], config };
}

async function buildModule(
  adapter: string, fileName: string, key: string, parts: Parts, file: SafetensorsFile, problems: Problem[],
): Promise<LoraModule | null> {
  if (Object.keys(parts.hada).length > 0) return buildLohaModule(adapter, fileName, key, parts, file, problems);
  const { down, up } = parts;
  if (!down || !up) {
    const missing = !down && !up ? 'lora_down and lora_up' : !down ? 'lora_down' : 'lora_up';
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: module "${key}" has no ${missing}` });
    return null;
  }
  const rank = down.shape[0];
  if (down.shape.length < 2 || up.shape.length < 2 || up.shape[1] !== rank || up.shape.slice(2).some((d) => d !== 1)) {
    problems.push({ code: 'SHAPE_MISMATCH', message: `${fileName}: module "${key}": lora_up (${up.shape.join(', ')}) does not fit lora_down (${down.shape.join(', ')})` });
    return null;
  }
  const alpha = await moduleAlpha(fileName, key, parts, rank, file, problems);
  if (alpha === null) return null;
  const match = MODULE_NAME.exec(key)!;
  const module: LoraModule = {
    adapter,
    key,
    kind: down.shape.length > 2 ? 'conv' : 'linear',
    a: down,
    b: up,
    rank,
    alpha,
    scale: alpha / rank,
    fanInFanOut: false,
    target: { scheme: 'kohya', flatName: match[2], part: match[1] as KohyaPart },
  };
  if (parts.doraScale) {
    const axis = doraAxis(parts.doraScale.shape, up.shape[0], down.shape[1]);
    if (!axis) {
      problems.push({ code: 'SHAPE_MISMATCH', message: `${fileName}: module "${key}": dora_scale (${parts.doraScale.shape.join(', ')}) fits neither ${down.shape[1]} inputs nor ${up.shape[0]} outputs` });
      return null;
    }
    module.dora = { magnitude: parts.doraScale, axis, epsilon: LYCORIS_DORA_EPSILON };
  }
  return module;
}

/** The module's alpha: its `.alpha` scalar, or the rank when missing or 0 (kohya: no scaling). */
async function moduleAlpha(
  fileName: string, key: string, parts: Parts, rank: number, file: SafetensorsFile, problems: Problem[],
): Promise<number | null> {
  if (!parts.alpha) return rank;
  const value = await readScalar(file, parts.alpha);
  if (value === null) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: module "${key}": alpha must be one float, got ${parts.alpha.dtype} (${parts.alpha.shape.join(', ')})` });
    return null;
  }
  return value !== 0 ? value : rank;
}

/**
 * LyCORIS LoHa: ΔW = (w1a·w1b) ⊙ (w2a·w2b) · α/r with r = w1b's rows. w1b and w2b are (r, in) or,
 * for convolutions, (r, in·kh·kw) flattened.
 */
async function buildLohaModule(
  adapter: string, fileName: string, key: string, parts: Parts, file: SafetensorsFile, problems: Problem[],
): Promise<LoraModule | null> {
  const { w1a, w1b, w2a, w2b } = parts.hada;
  if (!w1a || !w1b || !w2a || !w2b || parts.down || parts.up) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: module "${key}" needs exactly hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b` });
    return null;
  }
  const rank = w1b.shape[0];
  const fits = w1a.shape.length === 2 && w2a.shape.length === 2 && w1b.shape.length >= 2 && w2b.shape.length === w1b.shape.length
    && w1a.shape[1] === rank && w2a.shape[1] === w2b.shape[0] && w1a.shape[0] === w2a.shape[0]
    && w1b.shape.slice(1).join() === w2b.shape.slice(1).join();
  if (!fits) {
    const shapes = [w1a, w1b, w2a, w2b].map((t) => `(${t.shape.join(', ')})`).join(', ');
    problems.push({ code: 'SHAPE_MISMATCH', message: `${fileName}: module "${key}": LoHa factors w1_a, w1_b, w2_a, w2_b ${shapes} do not fit together` });
    return null;
  }
  if (parts.doraScale) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: module "${key}": DoRA on LoHa is not supported yet` });
    return null;
  }
  const alpha = await moduleAlpha(fileName, key, parts, rank, file, problems);
  if (alpha === null) return null;
  const match = MODULE_NAME.exec(key)!;
  return {
    adapter,
    key,
    kind: w1b.shape.length > 2 ? 'conv' : 'linear',
    a: w1b,
    b: w1a,
    rank,
    alpha,
    scale: alpha / rank,
    fanInFanOut: false,
    hadamard: { a2: w2b, b2: w2a },
    target: { scheme: 'kohya', flatName: match[2], part: match[1] as KohyaPart },
  };
}

/**
 * LyCORIS stores dora_scale as (1, in, 1...) (norms per input feature, its default) or, with
 * wd_on_output, (out, 1, 1...). Returns null when the shape is neither.
 */
function doraAxis(shape: readonly number[], outFeatures: number, inFeatures: number): 'in' | 'out' | null {
  const onesFrom = (k: number) => shape.slice(k).every((d) => d === 1);
  if (shape.length >= 2 && shape[0] === 1 && shape[1] === inFeatures && onesFrom(2)) return 'in';
  if (shape.length >= 1 && shape[0] === outFeatures && onesFrom(1)) return 'out';
  if (shape.length === 1 && shape[0] === inFeatures) return 'in';
  return null;
}

/** A one-element float tensor's value, or null when it is not one. */
async function readScalar(file: SafetensorsFile, entry: TensorEntry): Promise<number | null> {
  if (entry.shape.reduce((n, d) => n * d, 1) !== 1) return null;
  const bytes = await file.read(entry);
  if (entry.dtype === 'F64') return new DataView(bytes.buffer, bytes.byteOffset, 8).getFloat64(0, true);
  if (!isFloatDType(entry.dtype)) return null;
  const value = decodeToF32(bytes, entry.dtype)[0];
  return Number.isFinite(value) ? value : null;
}
