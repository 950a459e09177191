/**
 * PEFT's adapter_config.json, reduced to what a merge needs, with every field checked. Defaults
 * follow PEFT's LoraConfig (r = 8, lora_alpha = 8).
 */
import { MergeError } from '../errors.js';
import { checkPatternCount, compileModulePattern, countRegexCompiles, firstMatch, patternKeyIsRegex, type MatchBudget, type ModulePattern } from './module-pattern.js';
import { parseBoundedJson, shownValue } from './bounded-json.js';

export interface PeftLoraConfig {
  /** `LORA`, or `TRAINABLE_TOKENS` (PEFT's trainable-tokens method on its own). */
  peftType: 'LORA' | 'TRAINABLE_TOKENS';
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  fanInFanOut: boolean;
  useDora: boolean;
  loraBias: boolean;
  /** Pattern → rank / alpha, in the file's order (first match wins); matched in linear time. */
  rankPattern: [ModulePattern, number][];
  alphaPattern: [ModulePattern, number][];
  modulesToSave: string[];
  /** `bias`: which base biases were trained and saved (`<module>.base_layer.bias`, `<module>.bias`). */
  bias: 'none' | 'all' | 'lora_only';
  /**
   * Trainable tokens: module name (`embed_tokens`, or as the config's dict names it) → the rows
   * its saved `trainable_tokens_delta` sets. A list in `trainable_token_indices` (or
   * TRAINABLE_TOKENS' `token_indices`) means the input embedding: key `''`.
   */
  tokenIndices: Map<string, number[]>;
  /** `target_parameters`: parameters adapted directly (fused expert tensors). */
  targetParameters: string[];
  /** `peft_version` (since PEFT 0.18), which decides how fused expert factors were laid out. */
  peftVersion: string | null;
  /** `init_lora_weights` when it is a string (`pissa`, `olora`, `gaussian` ...). */
  initLoraWeights: string | null;
  /**
   * The LoRA variant PEFT's Linear layer builds from the config (at most one: PEFT refuses any
   * combination), among those this tool merges: MonteCLoRA and VeLoRA merge as plain LoRA (their
   * sampler and projection only act while training), BD-LoRA with block-diagonal factors.
   */
  variant: LoraVariantSpec | null;
  /** Fields defaulted because the file lacks them, to report. */
  defaulted: string[];
  raw: Readonly<Record<string, unknown>>;
}

/** A LoRA variant PEFT builds on Linear layers only (LoraLayer.resolve_lora_variant). */
export type LoraVariantSpec =
  | { kind: 'monteclora' }
  | { kind: 'velora' }
  | { kind: 'bdlora'; bdA: string[]; bdB: string[]; nblocks: number; matchStrict: boolean };

const PEFT_DEFAULT_R = 8;
const PEFT_DEFAULT_ALPHA = 8;

/**
 * PEFT methods this tool does not merge, named so the error can say which one it is, with why where
 * the file cannot determine a merged weight.
 */
const KNOWN_UNSUPPORTED_TYPES = new Map<string, string>([
  ['PROMPT_TUNING', 'it learns virtual prompt tokens, not a change of the weights, so there is nothing to merge'],
  ['MULTITASK_PROMPT_TUNING', 'it learns virtual prompt tokens, not a change of the weights, so there is nothing to merge'],
  ['P_TUNING', 'it learns virtual prompt tokens, not a change of the weights, so there is nothing to merge'],
  ['PREFIX_TUNING', 'it learns attention key/value prefixes, not a change of the weights, so there is nothing to merge'],
  ['ADAPTION_PROMPT', 'it adds gated prompt tokens to attention, not a change of the weights, so there is nothing to merge'],
  ['CPT', 'it learns context tokens, not a change of the weights, so there is nothing to merge'],
  ['POLY', 'its router mixes LoRA skills per task id at inference, so no single merged weight exists'],
  ['XLORA', 'its classifier mixes LoRA adapters per token at inference, so no single merged weight exists'],
  ['CARTRIDGE', 'it stores a key/value cache prefix (served as past_key_values), not a change of the weights, so there is nothing to merge'],
  ['OSF', 'its merge replaces the weight by U_high·S_high·V_high + the trained low part, and PEFT does not save the high part: it recomputes it with an SVD of the base weight when it loads the adapter, which this tool cannot reproduce bit for bit'],
  ['PSOFT', 'its factors A and B are not saved: PEFT recomputes them with an SVD of the base weight when it loads the adapter (svd_lowrank, random, by default), which this tool cannot reproduce bit for bit'],
  ['FROD', 'its U is not saved: PEFT recomputes it when it loads the adapter by solving the saved V against the base weight (torch.linalg.solve in float64, kept in float32), which this tool cannot reproduce bit for bit'],
  ['ADAMSS', 'which output rows each of its subspaces updates is not saved: PEFT recomputes it when it loads the adapter by clustering the base weight\'s singular vectors, which this tool cannot reproduce bit for bit'],
  ['LILY', 'its router weighs the shared lily_B experts by softmax probabilities averaged over each batch of inputs, so no single merged weight exists (PEFT cannot merge it either)'],
]);
/**
 * LoraConfig fields that make an adapter something other than W + s·B·A on the base as it is:
 * merging such a file like a plain LoRA would write a wrong model, so each is refused by name
 * (PEFT itself cannot merge aLoRA, QALoRA or an Arrow router either).
 */
const LORA_VARIANTS_NOT_MERGED: readonly { key: string; why: string }[] = [
  { key: 'layer_replication', why: 'it builds a deeper model than the base by repeating layers (each copy with its own LoRA), which a merge into the base cannot hold' },
  // PEFT's ALoraLinearVariant adds B·A·x·s only where its mask is set (the positions from the last
  // invocation sequence on), and its merge_safe / merge_unsafe raise NotImplementedError.
  { key: 'alora_invocation_tokens', why: 'Activated LoRA applies only from its invocation tokens on (PEFT adds its change to those positions alone and leaves every token before them to the base weights), so no merged weight reproduces it, and PEFT cannot merge it either ("aLoRA does not support merging"): load it at run time with PEFT instead' },
  { key: 'use_qalora', why: 'QALoRA adapts pooled inputs of a GPTQ model; PEFT cannot merge it either' },
  { key: 'arrow_config', why: 'an Arrow router picks among adapters per token; PEFT cannot merge it either' },
  { key: 'kasa_config', why: 'KaSA truncates the base weight\'s smallest singular values before training, and that truncation is not in the file' },
];

function refuseUnmergedVariants(obj: Record<string, unknown>, file: string): void {
  for (const { key, why } of LORA_VARIANTS_NOT_MERGED) {
    const v = obj[key];
    const set = v !== undefined && v !== null && v !== false && !(Array.isArray(v) && v.length === 0);
    if (set) throw new MergeError('UNSUPPORTED_FORMAT', `${file}: "${key}" is set: ${why}; such adapters are not supported`);
  }
}

export function parsePeftConfig(text: string, file: string): PeftLoraConfig {
  return peftConfigFrom(parseBoundedJson(text, file), file);
}

/** A LoraConfig from JSON already parsed (a value JSON text cannot hold, such as Infinity, included). */
export function peftConfigFrom(raw: unknown, file: string): PeftLoraConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new MergeError('BAD_CONFIG', `${file}: expected a JSON object`);
  }
  const obj = raw as Record<string, unknown>;
  const defaulted: string[] = [];

  const peftType = obj.peft_type;
  if (peftType === 'TRAINABLE_TOKENS') return trainableTokensConfig(obj, file);
  if (peftType !== undefined && peftType !== 'LORA') {
    const name = String(peftType);
    const why = KNOWN_UNSUPPORTED_TYPES.get(name.toUpperCase());
    const what = why === undefined ? `unknown peft_type "${name}"` : `PEFT method ${name}`;
    throw new MergeError('UNSUPPORTED_FORMAT', `${file}: ${what} is not supported${why ? `: ${why}` : ''} (LORA, LOHA, LOKR, VERA, OFT, BOFT, IA3, ADALORA, LN_TUNING, HRA, HIRA, GLORA, ROAD, C3A, MISS, BONE, SHIRA, FOURIERFT, WAVEFT, VBLORA, RANDLORA, DELORA, GRALORA, BEFT, SUPERTUNING, TINYLORA, PVERA, UNILORA, DEFT and PEANUT adapters can be merged)`);
  }
  if (peftType === undefined) defaulted.push('peft_type');
  refuseUnmergedVariants(obj, file);

  // LoraConfig's own check: PEFT builds no model from such a config, so no file was trained with it.
  if (obj.use_dora === true && obj.lora_bias === true) {
    throw new MergeError('BAD_CONFIG', `${file}: use_dora and lora_bias are both true, which PEFT refuses ("lora_bias=True is not supported for DoRA"); no adapter can have been trained with this config`);
  }
  const variant = loraVariant(obj, file);
  const r = positiveNumber(obj, 'r', PEFT_DEFAULT_R, file, defaulted, true);
  const loraAlpha = finiteNumber(obj, 'lora_alpha', PEFT_DEFAULT_ALPHA, file, defaulted);
  const init = obj.init_lora_weights;
  const [rankPattern, alphaPattern] = patternTables(obj, [{ key: 'rank_pattern', integer: true }, { key: 'alpha_pattern', integer: false }], file, { file, used: 0 });
  return {
    peftType: 'LORA',
    r,
    loraAlpha,
    useRslora: bool(obj, 'use_rslora', file),
    fanInFanOut: bool(obj, 'fan_in_fan_out', file),
    useDora: bool(obj, 'use_dora', file),
    loraBias: bool(obj, 'lora_bias', file),
    rankPattern,
    alphaPattern,
    modulesToSave: stringList(obj, 'modules_to_save', file),
    bias: biasKind(obj, file),
    tokenIndices: tokenIndices(obj, 'trainable_token_indices', file),
    targetParameters: stringList(obj, 'target_parameters', file),
    peftVersion: typeof obj.peft_version === 'string' ? obj.peft_version : null,
    initLoraWeights: typeof init === 'string' ? init : null,
    variant,
    defaulted,
    raw: obj,
  };
}

/** PEFT's TrainableTokensConfig: only `token_indices` matter (the rows its deltas set). */
function trainableTokensConfig(obj: Record<string, unknown>, file: string): PeftLoraConfig {
  const indices = tokenIndices(obj, 'token_indices', file);
  if (indices.size === 0) throw new MergeError('BAD_CONFIG', `${file}: TRAINABLE_TOKENS config has no "token_indices"`);
  return {
    peftType: 'TRAINABLE_TOKENS', r: PEFT_DEFAULT_R, loraAlpha: PEFT_DEFAULT_ALPHA, useRslora: false, fanInFanOut: false,
    useDora: false, loraBias: false, rankPattern: [], alphaPattern: [], modulesToSave: stringList(obj, 'modules_to_save', file),
    bias: 'none', tokenIndices: indices, targetParameters: [], peftVersion: null, initLoraWeights: null, variant: null, defaulted: [], raw: obj,
  };
}

/**
 * The variant fields PEFT's resolve_lora_variant reads (those tagged is_lora_variant, and
 * init_lora_weights "mica"), as PEFT tests them: `bool(value)` after __post_init__, which turns a
 * monteclora_config or velora_config object into its dataclass (true even when empty) but leaves
 * use_bdlora a dict (so `{}` is no variant). Each Linear layer maps the set that is on to one variant
 * class; two at once is "Invalid or unsupported variant combination", so no model is built.
 */
function loraVariant(obj: Record<string, unknown>, file: string): LoraVariantSpec | null {
  const on = (key: string) => {
    const v = obj[key];
    // Python's truth: None, False, 0, "" and [] are off.
    if (v === undefined || v === null || v === false || v === 0 || v === '' || (Array.isArray(v) && v.length === 0)) return false;
    if (key === 'use_bdlora' && typeof v === 'object' && !Array.isArray(v)) return Object.keys(v).length > 0;
    return true;
  };
  const active = ['use_dora', 'velora_config', 'monteclora_config', 'use_bdlora'].filter(on);
  if (obj.init_lora_weights === 'mica') active.push('init_lora_weights "mica"');
  if (active.length > 1) {
    throw new MergeError('BAD_CONFIG', `${file}: ${active.join(' and ')} are set together, which PEFT refuses when it builds the layers ("Invalid or unsupported variant combination"); no adapter can have been trained with this config`);
  }
  const object = (key: string, fields: Record<string, (v: unknown) => boolean>): Record<string, unknown> => {
    const v = obj[key];
    // PEFT builds its dataclass from a dict (unknown fields raise TypeError); anything else fails.
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be an object of its config's fields, got ${shownValue(v)}, which PEFT cannot load`);
    }
    for (const [field, value] of Object.entries(v as Record<string, unknown>)) {
      const ok = fields[field];
      if (!ok) throw new MergeError('BAD_CONFIG', `${file}: "${key}" has an unknown field "${field}", which PEFT cannot load`);
      if (!ok(value)) throw new MergeError('BAD_CONFIG', `${file}: ${key}.${field} is ${shownValue(value)}, which PEFT refuses`);
    }
    return v as Record<string, unknown>;
  };
  const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;
  const positiveInt = (v: unknown) => positive(v) && Number.isInteger(v);
  const number = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  const boolean = (v: unknown) => typeof v === 'boolean';
  const names = (v: unknown) => v === null || (Array.isArray(v) && v.every((s) => typeof s === 'string'));
  if (active[0] === 'monteclora_config') {
    // MontecloraConfig.__post_init__: num_samples, dirichlet_prior and buffer_size must be > 0.
    object('monteclora_config', {
      num_samples: positiveInt, use_entropy: boolean, dirichlet_prior: positive, sample_scaler: number, kl_loss_weight: number, buffer_size: positiveInt,
    });
    return { kind: 'monteclora' };
  }
  if (active[0] === 'velora_config') {
    object('velora_config', {
      num_groups: positiveInt, scale: positive, init_type: (v) => v === 'batch_average' || v === 'batch_average_once' || v === 'random',
    });
    return { kind: 'velora' };
  }
  if (active[0] === 'use_bdlora') {
    const c = object('use_bdlora', { target_modules_bd_a: names, target_modules_bd_b: names, nblocks: positiveInt, match_strict: boolean });
    const bdA = (c.target_modules_bd_a as string[] | null | undefined) ?? [];
    const bdB = (c.target_modules_bd_b as string[] | null | undefined) ?? [];
    const both = bdA.filter((p) => bdB.includes(p));
    if (both.length > 0) throw new MergeError('BAD_CONFIG', `${file}: use_bdlora lists "${both[0]}" in both target_modules_bd_a and target_modules_bd_b, which PEFT's BdLoraConfig refuses`);
    return { kind: 'bdlora', bdA, bdB, nblocks: (c.nblocks as number | undefined) ?? 1, matchStrict: (c.match_strict as boolean | undefined) ?? true };
  }
  return null;
}

function biasKind(obj: Record<string, unknown>, file: string): PeftLoraConfig['bias'] {
  const v = obj.bias;
  if (v === undefined || v === null || v === 'none') return 'none';
  if (v === 'all' || v === 'lora_only') return v;
  throw new MergeError('BAD_CONFIG', `${file}: "bias" must be "none", "all" or "lora_only", got ${shownValue(v)}`);
}

/** A list of token indices (key `''`) or a dict of module name → list. */
function tokenIndices(obj: Record<string, unknown>, key: string, file: string): Map<string, number[]> {
  const v = obj[key];
  const out = new Map<string, number[]>();
  if (v === undefined || v === null) return out;
  const list = (name: string, x: unknown): number[] => {
    if (!Array.isArray(x) || x.some((i) => typeof i !== 'number' || !Number.isSafeInteger(i) || i < 0)) {
      throw new MergeError('BAD_CONFIG', `${file}: "${key}"${name ? `["${name}"]` : ''} must be a list of token indices (integers ≥ 0)`);
    }
    const seen = new Set<number>();
    for (const i of x as number[]) {
      // PEFT's index_copy with a repeated index leaves which delta wins undefined.
      if (seen.has(i)) throw new MergeError('BAD_CONFIG', `${file}: "${key}"${name ? `["${name}"]` : ''} lists token ${i} twice`);
      seen.add(i);
    }
    return x as number[];
  };
  if (Array.isArray(v)) {
    out.set('', list('', v));
  } else if (typeof v === 'object') {
    for (const [name, x] of Object.entries(v as Record<string, unknown>)) out.set(name, list(name, x));
  } else {
    throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be a list of token indices or an object of module name → list`);
  }
  return out;
}

/**
 * The value a pattern table gives module `path` (PEFT's `get_pattern_key`: the first key k with
 * `re.match(rf"(.*\.)?({k})$", path)`, else the key `path` itself), or `fallback`.
 */
export function lookupPattern(table: [ModulePattern, number][], path: string, fallback: number): number {
  const i = firstMatch(table, path);
  return i < 0 ? fallback : table[i][1];
}

/** Whether a pattern table gives module `path` a value (see {@link lookupPattern}). */
export function patternCovers(table: [ModulePattern, number][], path: string): boolean {
  return firstMatch(table, path) >= 0;
}

/** True when init_lora_weights names a method that modifies the base weights while training. */
export function isModifiedBaseInit(init: string | null): boolean {
  // PiSSA and OLoRA (and CorDA, LoRA-GA) move part of W into the factors before training, and LoftQ
  // replaces W by its quantization, so the saved factors only make sense against that modified
  // base. "pissa_niter_4" is a PiSSA variant.
  return init !== null && /^(pissa|olora|corda|loftq|lora_ga)/i.test(init);
}

function positiveNumber(
  obj: Record<string, unknown>, key: string, fallback: number, file: string, defaulted: string[], integer: boolean,
): number {
  const v = obj[key];
  if (v === undefined) {
    defaulted.push(key);
    return fallback;
  }
  if (v === null) refuseNull(file, key, `\`${key} <= 0\` raises TypeError`, 'a number');
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be a positive ${integer ? 'integer' : 'number'}, got ${shownValue(v)}`);
  }
  return v;
}

/**
 * A field written null: LoraConfig.from_pretrained passes None on, which is not PEFT's default, and
 * PEFT fails on it when it builds the layers; taking the default would merge what PEFT cannot load.
 */
function refuseNull(file: string, key: string, failure: string, wanted: string): never {
  throw new MergeError('BAD_CONFIG', `${file}: "${key}" is null, which PEFT cannot load (${failure}); give ${wanted} or leave the field out for PEFT's default`);
}

function finiteNumber(obj: Record<string, unknown>, key: string, fallback: number, file: string, defaulted: string[]): number {
  const v = obj[key];
  if (v === undefined) {
    defaulted.push(key);
    return fallback;
  }
  if (v === null) refuseNull(file, key, `\`${key} / r\` raises TypeError`, 'a number');
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be a number, got ${shownValue(v)}`);
  }
  return v;
}

function bool(obj: Record<string, unknown>, key: string, file: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be true or false, got ${shownValue(v)}`);
  return v;
}

function stringList(obj: Record<string, unknown>, key: string, file: string): string[] {
  const v = obj[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) {
    throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be a list of module names`);
  }
  return v as string[];
}

/** One pattern table of a config: its field (`rank_pattern`, `alpha_pattern`, a method's own) and whether its values are ranks (positive integers). */
export interface PatternTable {
  key: string;
  integer: boolean;
}

/**
 * A config's pattern tables (rank_pattern and alpha_pattern), checked and compiled for linear-time
 * matching, in the order given. Every table is checked, and the regexes of all of them counted
 * together against MAX_PATTERN_MATCHES, before any is compiled: a file whose alpha_pattern tips the
 * count must not first pay for compiling all of rank_pattern.
 */
export function patternTables(obj: Record<string, unknown>, tables: readonly PatternTable[], file: string, budget: MatchBudget): [ModulePattern, number][][] {
  const checked = tables.map(({ key, integer }) => ({ key, entries: tableEntries(obj, key, integer, file) }));
  // 10,000 regex keys of 928 characters in each table took 40 s and 1.7 GB; module names compile nothing.
  const regexes = checked.map(({ key, entries }) => ({ key, keys: entries.map(([pattern]) => pattern).filter(patternKeyIsRegex) })).filter((t) => t.keys.length > 0);
  const all = regexes.flatMap((t) => t.keys);
  budget.used = countRegexCompiles(budget.used, all, (limit) => {
    const which = regexes.length === 1 ? `${regexes[0].key} has` : `${regexes.map((t) => t.key).join(' and ')} have`;
    const split = regexes.length === 1 ? '' : ` (${regexes.map((t) => `${t.keys.length} in ${t.key}`).join(', ')})`;
    return `${file}: ${which} ${all.length} keys that are regexes${split}, not module names, and compiling them is more work than ${limit} allows (${tables.map((t) => t.key).join(' and ')} counted together); key them by full module names (model.layers.0.self_attn.q_proj), or use fewer regexes`;
  });
  return checked.map(({ key, entries }) => entries.map(([pattern, value]): [ModulePattern, number] => [compileModulePattern(pattern, key, budget), value]));
}

/** One table's entries, its size and values checked (nothing compiled). */
function tableEntries(obj: Record<string, unknown>, key: string, integer: boolean, file: string): [string, number][] {
  const v = obj[key];
  if (v === undefined) return [];
  if (v === null) refuseNull(file, key, `\`${key}.keys()\` raises AttributeError`, 'an object');
  if (typeof v !== 'object' || Array.isArray(v)) throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be an object`);
  const entries = Object.entries(v as Record<string, unknown>);
  checkPatternCount(entries.length, key, file);
  for (const [pattern, value] of entries) {
    if (typeof value !== 'number' || !Number.isFinite(value) || (integer && (value <= 0 || !Number.isInteger(value)))) {
      throw new MergeError('BAD_CONFIG', `${file}: ${key}["${pattern.slice(0, 80)}"] must be a ${integer ? 'positive integer' : 'number'}, got ${shownValue(value)}`);
    }
  }
  return entries as [string, number][];
}

/** What a file holds for the LoRA modules one LoraConfig covers: tensor names, and the modules without a magnitude. */
export interface LoraExtrasFound {
  magnitudes: string[];
  biases: string[];
  plain: string[];
}

/**
 * PEFT builds every LoRA layer from the config and loads the file into them (strict=False):
 * magnitudes or lora_B biases the config does not ask for are dropped without a word, and under
 * use_dora a layer saved without a magnitude keeps its initial ‖W‖. None of these is how the file
 * was trained, so each is a refusal; this says which, or undefined. `says(field, value)` starts the
 * message with where the config says it (`adapter_config.json: use_dora is true`), `holder` names
 * the file, `loader` the tool that builds the layers (PEFT, or diffusers through it).
 */
export function loraExtrasProblem(
  config: Pick<PeftLoraConfig, 'useDora' | 'loraBias'>, found: LoraExtrasFound,
  says: (field: 'use_dora' | 'lora_bias', value: boolean) => string, holder: string, loader: 'PEFT' | 'diffusers',
): string | undefined {
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  const { magnitudes, biases, plain } = found;
  if (!config.useDora && magnitudes.length > 0) {
    return `${says('use_dora', false)} but ${holder} holds ${count(magnitudes.length, 'lora_magnitude_vector tensor')} (first "${magnitudes[0]}"): ${loader} would load it without DoRA and leave them unused, so it cannot have been trained as ${loader} loads it`;
  }
  if (config.useDora && plain.length > 0) {
    const which = magnitudes.length === 0 ? `none of its ${count(plain.length, 'LoRA module')} has a` : `${plain.length} of its LoRA modules ${plain.length === 1 ? 'has' : 'have'} no`;
    return `${says('use_dora', true)} but ${which} lora_magnitude_vector (first "${plain[0]}"): ${loader} would start those magnitudes from the base weights instead of the file`;
  }
  if (!config.loraBias && biases.length > 0) {
    return `${says('lora_bias', false)} but ${holder} holds ${count(biases.length, 'lora_B bias')} (first "${biases[0]}"): ${loader} would load it without them, so it cannot have been trained as ${loader} loads it`;
  }
  return undefined;
}
