/**
 * PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors. Only headers are read here;
 * the factors stay in the file until the merge loads them.
 */
import { MergeError, type MergeErrorCode } from '../errors.js';
import { Pacer } from '../event-turns.js';
import { throwIfProblems } from '../plan/problems.js';
import type { AdapterModule, ModuleKind, ParsedAdapter, TensorReplacement, TokenRows } from './adapter.js';
import { convertedForTransformers5, parameterTarget, type ParameterTarget } from './peft-parameters.js';
import { lora, loraExtraShapeProblem } from './algorithms/lora.js';
import { peftBdlora } from './algorithms/peft-bdlora.js';
import { isModifiedBaseInit, lookupPattern, patternCovers, loraExtrasProblem, parsePeftConfig, type LoraExtrasFound, type LoraVariantSpec, type PeftLoraConfig } from './peft-config.js';
import { parsePeftMethodAdapter, peftMethodOf } from './peft-methods.js';
import { ALL_LINEAR_LAYERS, checkPeftTargets, NameSuffixes, peftTargetsFrom, targetsAllLinear } from './peft-targets.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';
import { owningModules, unknownTensorMessage } from './unknown-tensor.js';

const PEFT_PREFIX = 'base_model.model.';

// `<module>.lora_A[.<adapter name>].weight`, `<module>.lora_B[.<name>].bias`,
// `<module>.lora_embedding_A[.<name>]` (no suffix), `<module>.lora_magnitude_vector[.<name>][.weight]`.
const FACTOR_KEY = /^(.+)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(?:\.([^.]+))?(?:\.([^.]+))?$/;
const MODULES_TO_SAVE_KEY = /^(.+)\.modules_to_save\.(?:[^.]+\.)?([^.]+)$/;
/** Trainable tokens: within LoRA (`token_adapter.`) or as PEFT's TRAINABLE_TOKENS method. */
const TOKEN_DELTA_KEY = /^(.+?)\.(?:token_adapter\.)?trainable_tokens_delta(?:\.[^.]+)?$/;
/** The wrapped layer's own weight or bias, saved with the adapter. */
const BASE_LAYER_KEY = /^(.+)\.base_layer\.(weight|bias)$/;
const ORIGINAL_MODULE_KEY = /\.original_module\./;
/** A model parameter saved as it is (PEFT loads any such key into the model). */
const PLAIN_PARAMETER_KEY = /^base_model\.model\..+\.(weight|bias)$/;
/**
 * Training state of a LoRA variant that PEFT saves beside the factors and leaves out of the merge:
 * MonteCLoRA's sampler (`lora_monteclora_sampler[.<adapter>].<tensor>`) and VeLoRA's activation
 * projection (`lora_velora_embed[.<adapter>]`).
 */
const VARIANT_STATE_KEY = /^(.+)\.(?:lora_monteclora_sampler(?:\.[^.]+)?\.(std_prior|expert_weights_prior|gaussian_var_prior|expert_weights)|lora_velora_embed(?:\.[^.]+)?)$/;
/** Tensor names of adapter types we recognise but do not merge. */
const OTHER_METHOD_KEY = /\.(hada_|lokr_|vera_|ia3_|oft_|boft_|lora_E|ranknum|hra_u|miss_block|bone_block|shira_|ln_tuning_layers\.)/;

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
 * the user gave it; `configFile` and `file.source.name` appear in messages. `pacer` is ticked once
 * a tensor and once a module: an adapter of tens of thousands of modules is seconds of parsing, in
 * which the event loop gets its turns and a cancel (the pacer's signal) is seen.
 */
export async function parsePeftAdapter(name: string, configText: string, configFile: string, file: SafetensorsFile, pacer: Pacer = new Pacer()): Promise<ParsedAdapter> {
  if (peftMethodOf(configText)) return parsePeftMethodAdapter(name, configText, configFile, file, pacer);
  const config = parsePeftConfig(configText, configFile);
  const problems: Problem[] = [];
  const warnings: string[] = [];
  const groups = new Map<string, FactorSet>();
  const replacements: TensorReplacement[] = [];
  const adapterNames = new Set<string>();
  const fileName = file.source.name;

  const tokenRows: TokenRows[] = [];
  const skipped: string[] = [];
  /** Module key → the variant-state tensors saved for it (not applied). */
  const variantState = new Map<string, string[]>();
  /** Variant-state tensors of a variant the config does not set. */
  const strayState: Record<'velora' | 'monteclora', string[]> = { velora: [], monteclora: [] };
  /** Tensors that are no factor and no known saved tensor: a saved base tensor, or a module's unknown one. */
  const loose: TensorEntry[] = [];
  const savedNames = new NameSuffixes(config.modulesToSave);
  for (const entry of file.tensors) {
    await pacer.tick();
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
        problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: module "${stripPrefix(factor[1])}" has two ${SLOT_NAMES[slot]} tensors ("${set[slot]!.name}" and "${key}"); several adapters in one file are not supported: save each one separately` });
      } else {
        set[slot] = entry;
      }
      continue;
    }
    const state = VARIANT_STATE_KEY.exec(key);
    if (state) {
      const kind = state[2] === undefined ? 'velora' : 'monteclora';
      if (config.variant?.kind !== kind) {
        strayState[kind].push(key);
      } else {
        variantState.set(state[1], [...(variantState.get(state[1]) ?? []), key]);
      }
      continue;
    }
    const saved = MODULES_TO_SAVE_KEY.exec(key);
    if (saved) {
      replacements.push(replacement(name, key, entry, `${saved[1]}.${saved[2]}`, 'modules_to_save'));
      continue;
    }
    const tokens = TOKEN_DELTA_KEY.exec(key);
    if (tokens) {
      const rows = tokenRowsFor(name, key, entry, stripPrefix(tokens[1]), config, fileName, problems);
      if (rows) tokenRows.push(rows);
      continue;
    }
    if (OTHER_METHOD_KEY.test(key)) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${key}" belongs to an adapter method other than LoRA, which is not supported` });
      continue;
    }
    if (ORIGINAL_MODULE_KEY.test(key)) {
      // PEFT's copy of a modules_to_save module as it was: the base's own values, dropped on merge.
      skipped.push(key);
      continue;
    }
    const modulePath = stripPrefix(key.slice(0, Math.max(0, key.lastIndexOf('.'))));
    if (savedNames.endsOne(modulePath)) {
      replacements.push(replacement(name, key, entry, key, 'modules_to_save'));
      continue;
    }
    const baseLayer = BASE_LAYER_KEY.exec(key);
    if (baseLayer) {
      // bias="lora_only"/"all", saved embedding layers: the wrapped layer's own tensor, as trained against.
      replacements.push(replacement(name, key, entry, `${baseLayer[1].replaceAll('.base_layer', '')}.${baseLayer[2]}`, 'base_layer'));
      continue;
    }
    // Whether these are a LoRA module's unknown tensors is known once every factor is read (below).
    loose.push(entry);
  }
  const owners = await owningModules(loose.map((e) => e.name), groups, pacer);
  for (const entry of loose) {
    await pacer.tick();
    const key = entry.name;
    const owner = owners.get(key);
    // The module's own weight or bias is a saved base tensor (bias="all" before PEFT named it
    // base_layer.bias, an embedding saved by save_embedding_layers beside its LoRA).
    if (owner !== undefined && !OWN_PARAMETER.test(key.slice(owner.length + 1))) {
      // Under a LoRA-wrapped module PEFT saves only the factors and base_layer's tensors: anything
      // else is no parameter of the model, so it is not a saved base tensor either.
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: unknownTensorMessage(fileName, owner, key, LORA_ENDINGS, stripPrefix(owner)) });
    } else if (PLAIN_PARAMETER_KEY.test(key)) {
      // bias="all" biases of unwrapped modules, embedding layers saved because the vocabulary was
      // resized: tensors PEFT loads into the model as they are.
      replacements.push(replacement(name, key, entry, key, 'saved'));
    } else {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${key}" is neither a LoRA factor nor listed in modules_to_save` });
    }
  }
  for (const [kind, keys] of Object.entries(strayState)) {
    if (keys.length === 0) continue;
    const [what, field] = kind === 'velora' ? ['VeLoRA activation projection', 'velora_config'] : ['MonteCLoRA sampler', 'monteclora_config'];
    problems.push({ code: 'BAD_CONFIG', message: `${fileName}: holds ${keys.length} ${what} tensor${keys.length === 1 ? '' : 's'} (first "${keys[0]}") but ${configFile} does not set ${field}, so it cannot have been trained as PEFT loads it` });
  }
  if (skipped.length > 0) {
    warnings.push(`${name}: ${skipped.length} original_module tensor${skipped.length === 1 ? '' : 's'} (PEFT's copy of a module before training) left out, as PEFT leaves ${skipped.length === 1 ? 'it' : 'them'} out when merging`);
  }
  if (adapterNames.size > 1) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: holds several adapters (${[...adapterNames].join(', ')}); save each one separately` });
  }

  if (config.peftType === 'LORA') {
    // Factors on a parameter (target_parameters) are placed by that list, not by target_modules.
    const paths = [...groups.keys()].map(stripPrefix).filter((p) => config.targetParameters.length === 0 || parameterTarget(p, config.targetParameters) === undefined);
    await checkPeftTargets(peftTargetsFrom(config.raw, configFile, 'LORA'), paths, configFile, fileName, pacer);
  }
  const modules: AdapterModule[] = [];
  const found: LoraExtrasFound = { magnitudes: [], biases: [], plain: [] };
  for (const [key, set] of groups) {
    // Each module's lookups in rank_pattern and alpha_pattern are most of the parse of a large one.
    await pacer.tick();
    const module = buildModule(name, key, set, config, problems);
    if (module) modules.push(config.peftType === 'LORA' && !module.address.tensor && !module.wraps ? { ...module, wraps: loraWraps(module, config.raw) } : module);
    if (set.magnitude) found.magnitudes.push(set.magnitude.name);
    else if (module) found.plain.push(module.name);
    if (set.biasB) found.biases.push(set.biasB.name);
  }
  for (const [key, names] of variantState) {
    if (!groups.has(key)) problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${names[0]}" belongs to module "${stripPrefix(key)}", which has no lora_A/lora_B` });
  }
  throwIfProblems(name, problems);
  const variantNote = variantWarning(name, config.variant, [...variantState.values()].flat());
  if (variantNote) warnings.push(variantNote);

  const extras = loraExtrasProblem(config, found, (field, value) => `${configFile}: ${field} is ${value ? 'true' : 'false (or unset)'}`, fileName, 'PEFT');
  if (extras) throw new MergeError('BAD_CONFIG', extras);
  if (config.defaulted.includes('lora_alpha')) warnings.push(`${name}: lora_alpha missing from the config; using PEFT's default ${config.loraAlpha}`);
  if (isModifiedBaseInit(config.initLoraWeights)) {
    warnings.push(`${name}: init_lora_weights is "${config.initLoraWeights}": this adapter was trained against a modified base; merging it into the original base gives wrong weights unless it was converted first`);
  }
  if (modules.length === 0 && replacements.length === 0 && tokenRows.length === 0) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no LoRA tensors found`);
  }
  return { name, format: 'peft', file, modules, replacements, tokenRows, warnings, config: config.raw, configFile };
}

/** A LoRA-wrapped module's own parameters, as a PEFT file may save them under the module's name. */
const OWN_PARAMETER = /^(weight|bias)$/;

/** What PEFT LoRA saves under a wrapped module, for the refusal of any other ending there. */
const LORA_ENDINGS = 'PEFT LoRA: lora_A.weight, lora_B.weight, lora_B.bias, lora_embedding_A, lora_embedding_B, lora_magnitude_vector, base_layer.weight, base_layer.bias';

/** Reads `lora_A.default.weight`-style tails: which parameter, and the adapter name if any. */
function splitSuffix(kind: string, first: string | undefined, second: string | undefined): { param?: string; adapterName?: string } | null {
  const isParam = (s: string | undefined) => s === 'weight' || s === 'bias';
  if (second !== undefined) return isParam(second) && !isParam(first) ? { param: second, adapterName: first } : null;
  if (first === undefined) return {};
  if (isParam(first)) return { param: first };
  // `lora_A.default` alone is only valid for parameters stored without a suffix.
  return kind.startsWith('lora_embedding') || kind === 'lora_magnitude_vector' ? { adapterName: first } : null;
}

/** The factor a slot holds, as PEFT names it (messages name the tensors' kind, not the slot). */
const SLOT_NAMES: Record<keyof FactorSet, string> = {
  a: 'lora_A', b: 'lora_B', embedA: 'lora_embedding_A', embedB: 'lora_embedding_B', magnitude: 'lora_magnitude_vector', biasB: 'lora_B bias',
};

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
  const target = config.targetParameters.length > 0 ? parameterTarget(path, config.targetParameters) : undefined;
  if (target?.kind === 'problem') {
    problems.push({ code: 'BAD_CONFIG', message: `${adapter}: ${target.message}` });
    return null;
  }
  const variant = config.variant;
  if (target) {
    if (variant) return refuseVariantOn(adapter, `parameter "${target.path}"`, "a target_parameters parameter (PEFT's ParamWrapper)", variant, problems);
    return buildParameterModule(adapter, key, target.path, set, config, problems);
  }
  const embedding = set.embedA !== undefined || set.embedB !== undefined;
  if (variant && embedding) return refuseVariantOn(adapter, `module "${path}"`, 'an embedding (lora_embedding_A/B)', variant, problems);
  if (variant && ((set.a?.shape.length ?? 2) > 2 || (set.b?.shape.length ?? 2) > 2)) {
    return refuseVariantOn(adapter, `module "${path}"`, 'a convolution (lora_A/lora_B with kernel dims)', variant, problems);
  }
  if (variant?.kind === 'bdlora' && set.a && set.b && !embedding) {
    const side = bdSide(path, variant);
    if (side === 'both') {
      problems.push({ code: 'BAD_CONFIG', message: `${adapter}: module "${path}" matches both target_modules_bd_a and target_modules_bd_b of use_bdlora, which PEFT refuses when it builds the layer` });
      return null;
    }
    if (side === 'none' && variant.matchStrict) {
      problems.push({ code: 'BAD_CONFIG', message: `${adapter}: module "${path}" matches neither target_modules_bd_a nor target_modules_bd_b while use_bdlora.match_strict is true, which PEFT refuses when it builds the layer` });
      return null;
    }
    if (side !== 'none') return buildBdModule(adapter, key, path, side, set, variant.nblocks, config, problems);
  }
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
  // PEFT's lora_B is the same kind of layer as lora_A (Linear, or a 1×1 conv of lora_A's dims).
  if (b.shape.length !== a.shape.length || b.shape[1] !== rank || b.shape.slice(2).some((d) => d !== 1)) {
    const expected = `(${[`out, ${rank}`, ...a.shape.slice(2).map(() => '1')].join(', ')})`;
    problems.push({ code: 'SHAPE_MISMATCH', message: `${adapter}: module "${path}": ${bName} ${fmt(b.shape)} does not fit ${aName} ${fmt(a.shape)} (expected ${expected})` });
    return null;
  }
  const configRank = lookupPattern(config.rankPattern, path, config.r);
  if (configRank !== rank) {
    const from = patternCovers(config.rankPattern, path) ? 'rank_pattern' : config.defaulted.includes('r') ? 'the default r' : 'r';
    problems.push({ code: 'BAD_CONFIG', message: `${adapter}: module "${path}": ${aName} has rank ${rank} but the config (${from}) says ${configRank}` });
    return null;
  }
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
    ...loraScale(config, path, rank),
    tensors: { down: a, up: b },
    update: { kind: 'low-rank', rank },
    fanInFanOut: kind === 'linear' && config.fanInFanOut,
  };
  if (!loraExtrasFit(adapter, path, set, b.shape[0], problems)) return null;
  if (set.magnitude) module.dora = { magnitude: set.magnitude, axis: 'out', epsilon: 0, weighting: 'delta' };
  if (set.biasB) module.biasB = set.biasB;
  return module;
}

/** Whether the set's lora_magnitude_vector and lora_B bias hold one value per output as PEFT saves them; records why not. */
function loraExtrasFit(adapter: string, path: string, set: FactorSet, out: number, problems: Problem[]): boolean {
  for (const [role, tensor] of [['magnitude', set.magnitude], ['up_bias', set.biasB]] as const) {
    const problem = tensor && loraExtraShapeProblem(role, tensor, out);
    if (problem) {
      problems.push({ code: 'SHAPE_MISMATCH', message: `${adapter}: module "${path}": ${problem}` });
      return false;
    }
  }
  return true;
}

/** Which BD-LoRA factor of module `path` is block-diagonal: PEFT's test is `pattern in target_name` (a substring of the module's path). */
function bdSide(path: string, variant: Extract<LoraVariantSpec, { kind: 'bdlora' }>): 'a' | 'b' | 'both' | 'none' {
  const a = variant.bdA.some((p) => path.includes(p)), b = variant.bdB.some((p) => path.includes(p));
  return a && b ? 'both' : a ? 'a' : b ? 'b' : 'none';
}

const VARIANT_FIELD: Record<LoraVariantSpec['kind'], string> = { monteclora: 'monteclora_config', velora: 'velora_config', bdlora: 'use_bdlora' };

/** PEFT builds these variants on its Linear layer only; any other layer raises when the model is built. */
function refuseVariantOn(adapter: string, what: string, layer: string, variant: LoraVariantSpec, problems: Problem[]): null {
  problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter}: ${what} is ${layer}, but the config sets ${VARIANT_FIELD[variant.kind]}, which PEFT builds on Linear layers only (it refuses to build this adapter)` });
  return null;
}

/** The plan's note for MonteCLoRA and VeLoRA: merged as plain LoRA, as PEFT merges them, their saved training state left out. */
function variantWarning(name: string, variant: LoraVariantSpec | null, state: string[]): string | undefined {
  if (variant?.kind === 'monteclora') {
    const held = state.length === 0 ? 'the file holds no sampler tensors' : `its ${state.length} sampler tensor${state.length === 1 ? '' : 's'} (lora_monteclora_sampler, first "${state[0]}") ${state.length === 1 ? 'is' : 'are'} recognised and not applied`;
    return `${name}: monteclora_config is set: merged as plain LoRA (scale·B·A), as PEFT merges MonteCLoRA, whose Monte Carlo sampling perturbs lora_A only while training; ${held}`;
  }
  if (variant?.kind === 'velora') {
    const held = state.length === 0 ? 'the file holds no lora_velora_embed' : `its ${state.length} lora_velora_embed tensor${state.length === 1 ? '' : 's'} (first "${state[0]}") ${state.length === 1 ? 'is' : 'are'} recognised and not applied`;
    return `${name}: velora_config is set: merged as plain LoRA (scale·B·A), as PEFT merges VeLoRA, which only compresses the activations its backward pass keeps while training; ${held}`;
  }
  return undefined;
}

/**
 * A BD-LoRA module: the compact factor's shape checked against the config's rank and nblocks as
 * PEFT's BlockDiagonalLinear lays it out ((r, in/N) for A, (out, r/N) for B), ΔW (out, in) from the
 * expanded factors. PEFT's lora_B bias (lora_bias) lives on an nn.Linear: a block-diagonal lora_B has
 * none, and PEFT's merge fails on it.
 */
function buildBdModule(
  adapter: string, key: string, path: string, side: 'a' | 'b', set: FactorSet, nblocks: number, config: PeftLoraConfig, problems: Problem[],
): AdapterModule | null {
  const a = set.a!, b = set.b!;
  const fail = (code: MergeErrorCode, message: string) => {
    problems.push({ code, message: `${adapter}: module "${path}" (BD-LoRA, block-diagonal lora_${side === 'a' ? 'A' : 'B'}, nblocks ${nblocks}): ${message}` });
    return null;
  };
  if (set.magnitude) return fail('UNSUPPORTED_FORMAT', 'has a lora_magnitude_vector, which PEFT cannot combine with BD-LoRA');
  const rank = lookupPattern(config.rankPattern, path, config.r);
  if (a.shape.length !== 2 || b.shape.length !== 2) return fail('SHAPE_MISMATCH', `lora_A ${fmt(a.shape)} and lora_B ${fmt(b.shape)} must be 2-D`);
  if (rank % nblocks !== 0) return fail('BAD_CONFIG', `the config's rank ${rank} is not a multiple of nblocks, which PEFT's BlockDiagonalLinear requires`);
  let deltaShape: number[];
  if (side === 'a') {
    if (a.shape[0] !== rank || b.shape[1] !== rank) return fail('SHAPE_MISMATCH', `lora_A ${fmt(a.shape)} and lora_B ${fmt(b.shape)} are not (${rank}, in/${nblocks}) and (out, ${rank}) for the config's rank ${rank}`);
    deltaShape = [b.shape[0], a.shape[1] * nblocks];
  } else {
    if (set.biasB) return fail('UNSUPPORTED_FORMAT', `has a lora_B bias (${set.biasB.name}), which a block-diagonal lora_B does not hold (PEFT's merge fails on it)`);
    if (a.shape[0] !== rank || b.shape[1] * nblocks !== rank || b.shape[0] % nblocks !== 0) {
      return fail('SHAPE_MISMATCH', `lora_A ${fmt(a.shape)} and lora_B ${fmt(b.shape)} are not (${rank}, in) and (out, ${rank / nblocks}) with out a multiple of ${nblocks}, for the config's rank ${rank}`);
    }
    deltaShape = [b.shape[0], a.shape[1]];
  }
  const module: AdapterModule = {
    adapter,
    key,
    name: path,
    address: { path, flat: false },
    algorithm: peftBdlora.name,
    kind: 'linear',
    deltaShape,
    rank,
    ...loraScale(config, path, rank),
    tensors: { down: a, up: b },
    update: { kind: 'low-rank', rank },
    fanInFanOut: false,
    options: { bd_a: side === 'a', nblocks },
    // BlockDiagonalLinear takes the base's in_features/out_features, which only an nn.Linear has.
    wraps: { method: 'BD-LoRA (PEFT use_bdlora)', layers: ['Linear'] },
  };
  if (!loraExtrasFit(adapter, path, set, deltaShape[0], problems)) return null;
  if (set.biasB) module.biasB = set.biasB;
  return module;
}

/** A LoRA module's α (alpha_pattern first) and its scale, α/r or α/√r under use_rslora, as PEFT's update_layer sets them. */
function loraScale(config: PeftLoraConfig, path: string, rank: number): Pick<AdapterModule, 'alpha' | 'scale' | 'scaleOrigin'> {
  const alpha = lookupPattern(config.alphaPattern, path, config.loraAlpha);
  return {
    alpha,
    scale: config.useRslora ? alpha / Math.sqrt(rank) : alpha / rank,
    scaleOrigin: { kind: 'alpha', rule: config.useRslora ? 'α/√r' : 'α/r', stated: true },
  };
}

/**
 * The layers PEFT's LoRA builds a module of these factors for (lora/layer.py dispatch_default):
 * lora_embedding_A/B for nn.Embedding only, lora_A/B for Linear, Conv1D and Conv1d/2d/3d; under
 * target_modules "all-linear", Linear and Conv1D only. dispatch_default sets fan_in_fan_out by the
 * layer's class.
 */
function loraWraps(module: AdapterModule, raw: Readonly<Record<string, unknown>>): NonNullable<AdapterModule['wraps']> {
  if (targetsAllLinear(raw)) return { method: 'LoRA (PEFT) under target_modules "all-linear"', layers: ALL_LINEAR_LAYERS, fanInFanOutByLayer: true };
  if (module.kind === 'embedding') return { method: 'lora_embedding_A/B (PEFT LoRA)', layers: ['Embedding'] };
  return { method: 'lora_A/B (PEFT LoRA)', layers: ['Linear', 'Conv1D', 'Conv1d', 'Conv2d', 'Conv3d'], fanInFanOutByLayer: true };
}

/**
 * LoRA on a parameter (ParamWrapper): lora_A (r·E, ·) and lora_B (·, r·E) with r from the config
 * (its patterns match the parameter's path) and E experts; E = 1 is an ordinary 2-D weight.
 */
function buildParameterModule(adapter: string, key: string, path: string, set: FactorSet, config: PeftLoraConfig, problems: Problem[]): AdapterModule | null {
  const fail = (code: MergeErrorCode, message: string) => {
    problems.push({ code, message: `${adapter}: parameter "${path}": ${message}` });
    return null;
  };
  const { a, b } = set;
  if (!a || !b || set.embedA || set.embedB) return fail('UNSUPPORTED_FORMAT', 'needs exactly lora_A and lora_B');
  if (set.magnitude || set.biasB) return fail('UNSUPPORTED_FORMAT', 'PEFT supports neither DoRA nor lora_bias on target_parameters');
  // ParamWrapper.__init__ raises on these, so PEFT builds no model from such a config.
  const dropout = config.raw.lora_dropout;
  const refused = typeof dropout === 'number' && dropout !== 0 ? `lora_dropout ${dropout} (it must be 0)`
    : config.fanInFanOut ? 'fan_in_fan_out true' : config.loraBias ? 'lora_bias true' : config.useDora ? 'use_dora true' : undefined;
  if (refused) return fail('BAD_CONFIG', `the config has ${refused}, which PEFT's ParamWrapper refuses when it builds the layer, so no adapter can have been trained with it`);
  if (a.shape.length !== 2 || b.shape.length !== 2 || b.shape[1] !== a.shape[0]) {
    return fail('SHAPE_MISMATCH', `lora_B ${fmt(b.shape)} does not fit lora_A ${fmt(a.shape)}`);
  }
  const rank = lookupPattern(config.rankPattern, path, config.r);
  if (a.shape[0] % rank !== 0) return fail('BAD_CONFIG', `lora_A has ${a.shape[0]} rows, not a multiple of the config's rank ${rank}`);
  const experts = a.shape[0] / rank;
  const module: AdapterModule = {
    adapter,
    key,
    name: path,
    address: { path, flat: false, tensor: true },
    algorithm: lora.name,
    kind: 'linear',
    deltaShape: [b.shape[0], a.shape[1]],
    rank,
    ...loraScale(config, path, rank),
    tensors: { down: a, up: b },
    update: { kind: 'low-rank', rank },
    fanInFanOut: false,
  };
  if (experts > 1) {
    module.experts = { count: experts, peftVersion: config.peftVersion };
    if (convertedForTransformers5(config.raw, config.r, config.loraAlpha, config.peftVersion)) {
      module.experts.converted = true;
    } else if (/(^|\.)experts\.down_proj$/.test(path) && config.targetParameters.includes('down_proj')) {
      // What PEFT's conversion writes for a per-expert down_proj (w2) alone, with no other mark.
      module.experts.maybeConverted = true;
    }
    if (module.experts.converted) {
      // The conversion doubles r and α on gate_up_proj to keep α/r; under rsLoRA PEFT then scales by
      // 2α/√(2r), √2 times the α/√r each expert's gate and up were trained with before it.
      if (config.useRslora && /\.gate_up_proj$/.test(path)) {
        return fail('UNSUPPORTED_FORMAT', `use_rslora with the gate and up factors PEFT's conversion for transformers 5 fused (rank ${rank}, lora_alpha ${module.alpha}, twice the per-expert r and α): PEFT then scales them by ${module.alpha}/√${rank}, √2 times the α/√r they were trained with per expert, so which scale is the adapter's cannot be told; merge the per-expert adapter as saved before that conversion`);
      }
    }
  }
  return module;
}

function replacement(adapter: string, key: string, tensor: TensorEntry, targetKey: string, origin: TensorReplacement['origin']): TensorReplacement {
  return { adapter, key, tensor, path: stripPrefix(targetKey), origin };
}

/** The rows a trainable-tokens delta sets: the config's indices for its module, one per delta row. */
function tokenRowsFor(
  adapter: string, key: string, delta: TensorEntry, modulePath: string, config: PeftLoraConfig, fileName: string, problems: Problem[],
): TokenRows | null {
  const named = [...config.tokenIndices].filter(([m]) => m !== '' && (modulePath === m || modulePath.endsWith(`.${m}`)));
  const indices = named.length === 1 ? named[0][1] : named.length === 0 ? config.tokenIndices.get('') : undefined;
  if (!indices) {
    problems.push({
      code: 'BAD_CONFIG',
      message: named.length > 1
        ? `${fileName}: trainable tokens of "${modulePath}" match several entries of trainable_token_indices (${named.map(([m]) => m).join(', ')})`
        : `${fileName}: tensor "${key}" holds trainable tokens but the config lists no token indices for "${modulePath}"`,
    });
    return null;
  }
  if (delta.shape.length !== 2 || delta.shape[0] !== indices.length) {
    problems.push({ code: 'SHAPE_MISMATCH', message: `${fileName}: tensor "${key}" ${fmt(delta.shape)} should have one row per token index (${indices.length})` });
    return null;
  }
  return { adapter, key, delta, path: `${modulePath}.weight`, indices };
}

function stripPrefix(key: string): string {
  return key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key;
}

function fmt(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
