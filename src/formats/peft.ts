/**
 * PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors. Only headers are read here;
 * the factors stay in the file until the merge loads them.
 */
import { MergeError, type MergeErrorCode } from '../errors.js';
import { throwIfProblems } from '../plan/problems.js';
import type { AdapterModule, ModuleKind, ParsedAdapter, TensorReplacement } from './adapter.js';
import { lora } from './algorithms/lora.js';
import { isModifiedBaseInit, lookupPattern, parsePeftConfig, type PeftLoraConfig } from './peft-config.js';
import { parsePeftMethodAdapter, peftMethodOf } from './peft-methods.js';
import { savedModuleReplacement } from './peft-saved-modules.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

const PEFT_PREFIX = 'base_model.model.';

// `<module>.lora_A[.<adapter name>].weight`, `<module>.lora_B[.<name>].bias`,
// `<module>.lora_embedding_A[.<name>]` (no suffix), `<module>.lora_magnitude_vector[.<name>][.weight]`.
const FACTOR_KEY = /^(.+)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(?:\.([^.]+))?(?:\.([^.]+))?$/;
/** Tensor names of adapter types we recognise but do not merge. */
const OTHER_METHOD_KEY = /\.(hada_|lokr_|vera_|ia3_|oft_|boft_|lora_E|ranknum)/;

interface FactorSet {
  a?: TensorEntry;
  b?: TensorEntry;
  embedA?: TensorEntry;
  embedB?: TensorEntry;
  magnitude?: TensorEntry;
  biasB?: TensorEntry;
}

type Problem = { code: MergeErrorCode; message: string };

/**
 * Parses a PEFT adapter from its config text and its opened weights file. `name` is the folder as
 * the user gave it; `configFile` and `file.source.name` appear in messages.
 */
export function parsePeftAdapter(name: string, configText: string, configFile: string, file: SafetensorsFile): ParsedAdapter {
  if (peftMethodOf(configText)) return parsePeftMethodAdapter(name, configText, configFile, file);
  const config = parsePeftConfig(configText, configFile);
  const problems: Problem[] = [];
  const warnings: string[] = [];
  const groups = new Map<string, FactorSet>();
  const replacements: TensorReplacement[] = [];
  const adapterNames = new Set<string>();
  const fileName = file.source.name;

  for (const entry of file.tensors) {
    const key = entry.name;
    const factor = FACTOR_KEY.exec(key);
    if (factor) {
      const parsed = splitSuffix(factor[2], factor[3], factor[4]);
      if (!parsed) {
        problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${key}" is not a LoRA factor this tool understands` });
        continue;
      }
      if (parsed.adapterName !== undefined) adapterNames.add(parsed.adapterName);
      const set = groups.get(factor[1]) ?? {};
      groups.set(factor[1], set);
      const slot = slotFor(factor[2], parsed.param);
      if (!slot) {
        problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${key}" is not a LoRA factor this tool understands` });
      } else if (set[slot]) {
        problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: module "${factor[1]}" has two ${slot} tensors (several adapters in one file are not supported)` });
      } else {
        set[slot] = entry;
      }
      continue;
    }
    const saved = /\.modules_to_save\./.test(key) || !OTHER_METHOD_KEY.test(key) ? savedModuleReplacement(name, entry, config.modulesToSave) : null;
    if (saved) {
      replacements.push(saved);
      continue;
    }
    if (OTHER_METHOD_KEY.test(key)) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${key}" belongs to an adapter method other than LoRA, which is not supported` });
      continue;
    }
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${key}" is neither a LoRA factor nor listed in modules_to_save` });
  }
  if (adapterNames.size > 1) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: holds several adapters (${[...adapterNames].join(', ')}); save each one separately` });
  }

  const modules: AdapterModule[] = [];
  let sawMagnitude = false;
  for (const [key, set] of groups) {
    const module = buildModule(name, key, set, config, problems);
    if (module) modules.push(module);
    if (set.magnitude) sawMagnitude = true;
  }
  throwIfProblems(name, problems);

  if (config.useDora && !sawMagnitude && modules.length > 0) {
    throw new MergeError('BAD_CONFIG', `${configFile}: use_dora is true but ${fileName} has no lora_magnitude_vector tensors`);
  }
  if (!config.useDora && sawMagnitude) warnings.push(`${name}: use_dora is false in the config but the file has DoRA magnitudes; applying DoRA`);
  if (config.defaulted.includes('lora_alpha')) warnings.push(`${name}: lora_alpha missing from the config; using PEFT's default ${config.loraAlpha}`);
  if (isModifiedBaseInit(config.initLoraWeights)) {
    warnings.push(`${name}: init_lora_weights is "${config.initLoraWeights}": this adapter was trained against a modified base; merging it into the original base gives wrong weights unless it was converted first`);
  }
  if (modules.length === 0 && replacements.length === 0) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no LoRA tensors found`);
  }
  return { name, format: 'peft', file, modules, replacements, warnings, config: config.raw };
}

/** Reads `lora_A.default.weight`-style tails: which parameter, and the adapter name if any. */
function splitSuffix(kind: string, first: string | undefined, second: string | undefined): { param?: string; adapterName?: string } | null {
  const isParam = (s: string | undefined) => s === 'weight' || s === 'bias';
  if (second !== undefined) return isParam(second) && !isParam(first) ? { param: second, adapterName: first } : null;
  if (first === undefined) return {};
  if (isParam(first)) return { param: first };
  // `lora_A.default` alone is only valid for parameters stored without a suffix.
  return kind.startsWith('lora_embedding') || kind === 'lora_magnitude_vector' ? { adapterName: first } : null;
}

function slotFor(kind: string, param: string | undefined): keyof FactorSet | null {
  switch (kind) {
    case 'lora_A': return param === 'weight' ? 'a' : null;
    case 'lora_B': return param === 'weight' ? 'b' : param === 'bias' ? 'biasB' : null;
    case 'lora_embedding_A': return param === undefined || param === 'weight' ? 'embedA' : null;
    case 'lora_embedding_B': return param === undefined || param === 'weight' ? 'embedB' : null;
    case 'lora_magnitude_vector': return param === undefined || param === 'weight' ? 'magnitude' : null;
    default: return null;
  }
}

function buildModule(adapter: string, key: string, set: FactorSet, config: PeftLoraConfig, problems: Problem[]): AdapterModule | null {
  const path = stripPrefix(key);
  const embedding = set.embedA !== undefined || set.embedB !== undefined;
  if (embedding && (set.a || set.b)) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter}: module "${path}" has both linear and embedding LoRA factors` });
    return null;
  }
  const a = embedding ? set.embedA : set.a;
  const b = embedding ? set.embedB : set.b;
  const [aName, bName] = embedding ? ['lora_embedding_A', 'lora_embedding_B'] : ['lora_A', 'lora_B'];
  if (!a || !b) {
    const missing = !a && !b ? `${aName} and ${bName}` : !a ? aName : bName;
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter}: module "${path}" has no ${missing}` });
    return null;
  }
  if (a.shape.length < 2 || b.shape.length < 2) {
    problems.push({ code: 'SHAPE_MISMATCH', message: `${adapter}: module "${path}": ${aName} ${fmt(a.shape)} and ${bName} ${fmt(b.shape)} must have at least 2 dims` });
    return null;
  }
  const rank = a.shape[0];
  if (b.shape[1] !== rank || b.shape.slice(2).some((d) => d !== 1)) {
    problems.push({ code: 'SHAPE_MISMATCH', message: `${adapter}: module "${path}": ${bName} ${fmt(b.shape)} does not fit ${aName} ${fmt(a.shape)} (expected (out, ${rank}))` });
    return null;
  }
  const configRank = lookupPattern(config.rankPattern, path, config.r);
  if (configRank !== rank) {
    const from = config.rankPattern.some(([re]) => re.test(path)) ? 'rank_pattern' : config.defaulted.includes('r') ? 'the default r' : 'r';
    problems.push({ code: 'BAD_CONFIG', message: `${adapter}: module "${path}": ${aName} has rank ${rank} but the config (${from}) says ${configRank}` });
    return null;
  }
  const alpha = lookupPattern(config.alphaPattern, path, config.loraAlpha);
  const kind: ModuleKind = embedding ? 'embedding' : a.shape.length > 2 ? 'conv' : 'linear';
  const module: AdapterModule = {
    adapter,
    key,
    name: path,
    address: { path, flat: false },
    algorithm: lora.name,
    kind,
    deltaShape: [b.shape[0], ...a.shape.slice(1)],
    rank,
    alpha,
    scale: config.useRslora ? alpha / Math.sqrt(rank) : alpha / rank,
    tensors: { down: a, up: b },
    update: { kind: 'low-rank', rank },
    fanInFanOut: kind === 'linear' && config.fanInFanOut,
  };
  if (set.magnitude) module.dora = { magnitude: set.magnitude, axis: 'out', epsilon: 0 };
  if (set.biasB) module.biasB = set.biasB;
  return module;
}

function stripPrefix(key: string): string {
  return key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key;
}

function fmt(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
