/**
 * Which modules PEFT puts an adapter layer on (tuners_utils.py `check_target_module_exists`), for
 * every method that goes through BaseTuner. PeftModel.from_pretrained builds adapter layers only on
 * the modules the config targets and then loads the file with strict=False, so tensors of any other
 * module are unexpected keys it leaves unused. A file holding such a module was not trained as PEFT
 * loads it, and merging it would differ from PEFT; it is refused.
 *
 * The rule, in PEFT's order:
 * - exclude_modules: a string is a regex the whole name must match; a list excludes a name equal to
 *   an entry or ending with "." + entry.
 * - a module under modules_to_save (`(^|.*\.)<m>($|\..*)`) gets no adapter.
 * - target_modules: a string is a regex the whole name must match; a list takes a name equal to an
 *   entry, or ending with "." + entry, and only in that last case are layers_to_transform /
 *   layers_pattern applied.
 * - "all-linear" (_maybe_include_all_linear_layers) takes every nn.Linear and Conv1D of the model
 *   but its output embedding (get_output_embeddings(), under the model's own name); the layer
 *   classes are checked by the plan (`wraps`), the head against the base's config.json
 *   (allLinearHeadProblem) once the base is known.
 * - SEQ_CLS and TOKEN_CLS: PeftModelForSequenceClassification / ForTokenClassification add
 *   "classifier" and "score" to modules_to_save before the adapter is built.
 * - absent: PEFT picks a default list by model type, which the file does not name; every module is
 *   accepted.
 * Patterns run on RE2JS (linear time); one RE2 cannot run is refused, not guessed at.
 */
import { RE2JS } from 're2js';
import { MergeError } from '../errors.js';
import { Pacer } from '../event-turns.js';
import { MAX_PATTERN_LENGTH, MAX_PATTERN_MATCHES } from '../limits.js';
import type { LayerClass } from './adapter.js';
import { shownValue } from './bounded-json.js';
import { shownJsonList } from '../shown-text.js';
import { languageModelField, modelArchitectures, tiesWordEmbeddings, type ModelConfig } from './model-config.js';
import { countRegexCompiles, REGEX_MATCH_COST } from './module-pattern.js';

export interface PeftTargets {
  /** Why PEFT would put no adapter layer on module `path` (its name inside the base model), or undefined when it would. */
  untargeted(path: string): string | undefined;
}

/** PEFT configs whose __post_init__ refuses layers_to_transform / layers_pattern with a string target_modules. */
const LAYERS_NEED_A_LIST = new Set(['LORA', 'ADALORA', 'C3A', 'DELORA', 'HIRA', 'HRA', 'MISS']);
/** The input embedding and the output head as transformers names them in most models: tied when the model ties them. */
const TIED_LAYERS = ['embed_tokens', 'lm_head'];
/** A modules_to_save entry that is one plain name part (`lm_head`), no regex syntax in it. */
const ONE_PART_NAME = /^[A-Za-z0-9_-]+$/;
/** Task types whose PeftModel class adds these heads to modules_to_save (peft_model.py classifier_module_names). */
const CLASSIFIER_TASKS = new Set(['SEQ_CLS', 'TOKEN_CLS']);
const CLASSIFIER_HEADS = ['classifier', 'score'];

export function peftTargetsFrom(raw: Readonly<Record<string, unknown>>, configFile: string, peftType: string): PeftTargets {
  const target = namesOrPattern(raw, 'target_modules', configFile);
  const exclude = namesOrPattern(raw, 'exclude_modules', configFile);
  const layerPatterns = namesOrPattern(raw, 'layers_pattern', configFile);
  const layers = layerIndexes(raw, configFile);
  const saved = raw.modules_to_save;
  const modulesToSave = Array.isArray(saved) ? saved.filter((m): m is string => typeof m === 'string') : [];
  const classifierTask = CLASSIFIER_TASKS.has(String(raw.task_type));
  if (classifierTask) modulesToSave.push(...CLASSIFIER_HEADS.filter((m) => !modulesToSave.includes(m)));
  const shownSaved = `modules_to_save ${shownJsonList(modulesToSave)}${classifierTask ? ` (task_type ${raw.task_type} adds "classifier" and "score")` : ''}`;
  const usingLayers = layers !== undefined && layers.length > 0;

  if (typeof target === 'string' && LAYERS_NEED_A_LIST.has(peftType)) {
    for (const key of ['layers_to_transform', 'layers_pattern']) {
      if (raw[key] !== undefined && raw[key] !== null) {
        throw new MergeError('BAD_CONFIG', `${configFile}: "${key}" is set while target_modules is a string, which PEFT refuses ("\`${key}\` cannot be used when \`target_modules\` is a str")`);
      }
    }
  }
  const allLinear = typeof target === 'string' && target.toLowerCase() === 'all-linear';
  const targetRe = typeof target === 'string' && !allLinear ? compile(target, 'target_modules', configFile) : undefined;
  const excludeRe = typeof exclude === 'string' && exclude !== '' ? compile(exclude, 'exclude_modules', configFile) : undefined;
  // A name of one part matches a part of the path: a set of them answers at once. Any other entry is
  // a regex, and matching it against every module is counted against MAX_PATTERN_MATCHES.
  const savedParts = new Set(modulesToSave.filter((m) => ONE_PART_NAME.test(m)));
  const savedRegexes = modulesToSave.filter((m) => !ONE_PART_NAME.test(m));
  // Compiling is counted before it is done: 50,000 dotted names took 31 s and 1.4 GB to compile, and
  // 600,000 (a 32 MB config) ran out of memory before a single module was matched.
  let matching = countRegexCompiles(0, savedRegexes, (limit) =>
    `${configFile}: modules_to_save holds ${savedRegexes.length} entries of more than one plain name part, each a regex to compile, more work than ${limit} allows; list fewer modules, or name them by their last part`);
  const savedRes = savedRegexes.map((m) => compile(`(?:^|.*\\.)(?:${m})(?:$|\\..*)`, 'modules_to_save', configFile));
  const underSaved = (path: string): boolean => {
    if (savedParts.size > 0 && path.split('.').some((part) => savedParts.has(part))) return true;
    matching += savedRes.length * REGEX_MATCH_COST;
    if (matching > MAX_PATTERN_MATCHES) {
      throw new MergeError(
        'LIMIT_EXCEEDED',
        `${configFile}: modules_to_save needs too much matching against this adapter's modules (more than the limit MAX_PATTERN_MATCHES, ${MAX_PATTERN_MATCHES} name comparisons, a regex counting ${REGEX_MATCH_COST}); list fewer modules, or name them by their last part`,
      );
    }
    return savedRes.some((re) => re.matches(path));
  };
  const patternList = typeof layerPatterns === 'string' ? (layerPatterns === '' ? [] : [layerPatterns]) : layerPatterns ?? [];
  const layerRes = patternList.length === 0
    ? [RE2JS.compile('.*?\\.[^.]*\\.(\\d+)\\.')]
    : patternList.map((p) => compile(`.*?\\.(?:${p})\\.(\\d+)\\.`, 'layers_pattern', configFile));
  const targetNames = Array.isArray(target) ? new NameSuffixes(target) : undefined;
  const excludeNames = Array.isArray(exclude) ? new NameSuffixes(exclude) : undefined;
  const tiedTargets = new NameSuffixes(raw.ensure_weight_tying === true ? TIED_LAYERS : []);
  const layerSet = new Set(layers);
  const shownTarget = `target_modules ${shownConfigList(target)}`;
  const shownExclude = `exclude_modules ${shownConfigList(exclude)}`;
  const shownLayers = `layers_to_transform ${shownConfigList(raw.layers_to_transform)}`;


  return {
    untargeted(path) {
      // ensure_weight_tying: PEFT adds the layers tied to a targeted embedding (the output head) to the
      // targets, and the embedding when its tied head is targeted; which layers are tied is the model's.
      if (tiedTargets.endsOne(path)) return undefined;
      if (excludeRe ? excludeRe.matches(path) : excludeNames?.endsOne(path)) {
        return `excluded by ${shownExclude}`;
      }
      if (underSaved(path)) return `in ${shownSaved}, which PEFT trains whole and puts no adapter on`;
      if (target === undefined) return undefined;
      if (allLinear) return undefined;
      if (typeof target === 'string') return targetRe!.matches(path) ? undefined : `not targeted by ${shownTarget}`;
      // A name listed whole is taken whatever layers_to_transform says; one matched by its end is checked against it.
      if (targetNames!.has(path)) return undefined;
      if (!targetNames!.endsOne(path)) return `not targeted by ${shownTarget}`;
      if (!usingLayers) return undefined;
      let index: number | undefined;
      for (const re of layerRes) {
        const m = re.matcher(path);
        if (m.lookingAt()) {
          index = Number(m.group(1));
          break;
        }
      }
      if (index === undefined) return `targeted by ${shownTarget}, with no layer index ${patternList.length === 0 ? '' : `after layers_pattern ${shownConfigList(layerPatterns)} `}for ${shownLayers}`;
      return layerSet.has(index) ? undefined : `outside ${shownLayers} (layer ${index})`;
    },
  };
}

/**
 * A list of module names as PEFT matches one against a module's path: the path itself, or its end
 * after a dot (check_target_module_exists). A set of the names, and a set of their hashes: the
 * path's ends are hashed from its last character back, each in a step, and only an end whose hash
 * is a name's is cut out and looked up. Looking up every end whose number of parts a name has
 * cost the square of the path's length where the names had every number of parts (2,000 paths of
 * 4 KB against 4,096 names: 34 s); lists of hundreds of thousands of names were once read whole
 * for every module.
 */
export class NameSuffixes {
  private readonly names: ReadonlySet<string>;
  /** Hashes of the names (see hashKey). */
  private readonly hashes = new Set<number>();
  /** The longest name: no longer end of a path can be one. */
  private readonly longest: number;
  // Two polynomial hashes modulo primes below 2^26, so each step is exact in float64; the bases are
  // drawn per list, so no file can be made to collide with them (a collision only costs a lookup).
  private readonly b1 = 256 + Math.floor(Math.random() * (P1 - 512));
  private readonly b2 = 256 + Math.floor(Math.random() * (P2 - 512));

  constructor(names: readonly string[]) {
    this.names = new Set(names);
    let longest = 0;
    for (const name of this.names) {
      let h1 = 0, h2 = 0;
      for (let i = name.length - 1; i >= 0; i--) {
        const c = name.charCodeAt(i);
        h1 = (c + this.b1 * h1) % P1;
        h2 = (c + this.b2 * h2) % P2;
      }
      this.hashes.add(h1 * P2 + h2);
      longest = Math.max(longest, name.length);
    }
    this.longest = longest;
  }

  has(path: string): boolean {
    return this.names.has(path);
  }

  /** Whether `path` is one of the names or ends with `.` and one of them. */
  endsOne(path: string): boolean {
    if (this.names.has(path)) return true;
    // h1, h2: the hashes of path.slice(i), grown one character to the left at each step.
    let h1 = 0, h2 = 0;
    const last = Math.max(1, path.length - this.longest);
    for (let i = path.length; i >= last; i--) {
      if (i < path.length) {
        const c = path.charCodeAt(i);
        h1 = (c + this.b1 * h1) % P1;
        h2 = (c + this.b2 * h2) % P2;
      }
      if (path.charCodeAt(i - 1) === 0x2e && this.hashes.has(h1 * P2 + h2) && this.names.has(path.slice(i))) return true;
    }
    return false;
  }
}

/** The moduli of NameSuffixes' hashes: primes below 2^26, so base × hash stays below 2^53. */
const P1 = 67_108_859;
const P2 = 67_108_837;

/**
 * Refuses the first module of the file PEFT would not target. `paths` are the adapter modules'
 * names inside the base model (the file key less `base_model.model.` and the factor's name);
 * `pacer` is ticked once a module.
 */
export async function checkPeftTargets(targets: PeftTargets, paths: Iterable<string>, configFile: string, fileName: string, pacer: Pacer = new Pacer()): Promise<void> {
  for (const path of paths) {
    // Tens of thousands of modules, each matched against target_modules' regex: a tenth of a second or more.
    await pacer.tick();
    const why = targets.untargeted(path);
    if (why === undefined) continue;
    throw new MergeError(
      'BAD_CONFIG',
      `${configFile}: module "${path}" is in ${fileName} but ${why.startsWith('not ') ? why : `is ${why}`}; PEFT would leave its tensors unused, so this adapter cannot have been trained as PEFT loads it — fix adapter_config.json or remove the module`,
    );
  }
}

/** A config's list as a message quotes it, its first entries only (a list may hold 600 000 names); any other value as JSON. */
function shownConfigList(v: unknown): string {
  return Array.isArray(v) ? shownJsonList(v) : JSON.stringify(v) ?? String(v);
}

/** A string, a list of strings, or undefined (absent or null); anything else is refused, as PEFT fails on it. */
function namesOrPattern(raw: Readonly<Record<string, unknown>>, key: string, file: string): string | string[] | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
  throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be a list of module names or a pattern string, got ${shownValue(v)}`);
}

function layerIndexes(raw: Readonly<Record<string, unknown>>, file: string): number[] | undefined {
  const v = raw.layers_to_transform;
  if (v === undefined || v === null) return undefined;
  if (Number.isInteger(v)) return [v as number];
  if (Array.isArray(v) && v.every((n) => Number.isInteger(n))) return v as number[];
  throw new MergeError('BAD_CONFIG', `${file}: "layers_to_transform" must be a layer index or a list of layer indexes, got ${shownValue(v)}`);
}

/** Matched whole with `matches` (Python's re.fullmatch), or from the start with `lookingAt` (re.match). */
function compile(pattern: string, field: string, file: string): RE2JS {
  const shown = pattern.length > 80 ? `${pattern.slice(0, 80)}…` : pattern;
  if (pattern.length > MAX_PATTERN_LENGTH + 40) {
    throw new MergeError('LIMIT_EXCEEDED', `${file}: ${field} "${shown}" is ${pattern.length} characters long, above the limit of ${MAX_PATTERN_LENGTH} (MAX_PATTERN_LENGTH)`);
  }
  try {
    return RE2JS.compile(pattern);
  } catch (e) {
    const why = (e as Error).message.replace(/^error parsing regexp: /, '');
    throw new MergeError('BAD_CONFIG', `${file}: ${field} "${shown}" is not a pattern this tool can match safely (${why}); lookaround and backreferences are not supported`);
  }
}

/** Whether target_modules is PEFT's "all-linear" shorthand (any case). */
export function targetsAllLinear(raw: Readonly<Record<string, unknown>>): boolean {
  return typeof raw.target_modules === 'string' && raw.target_modules.toLowerCase() === 'all-linear';
}

/** The layer classes "all-linear" puts adapters on: nn.Linear and transformers' Conv1D. */
export const ALL_LINEAR_LAYERS: readonly LayerClass[] = ['Linear', 'Conv1D'];

/**
 * Output heads named other than `lm_head`, by config.json model_type: the module
 * get_output_embeddings() returns (GPT-NeoX's embed_out, Whisper's proj_out, RWKV's head, XLNet's
 * lm_loss, T5Gemma's and T5Gemma 2's lm_head.out_proj; InternLM2's and ChatGLM's own model code name theirs output and output_layer).
 */
const OUTPUT_HEAD_BY_MODEL_TYPE: Readonly<Record<string, string>> = {
  gpt_neox: 'embed_out', gpt_neox_japanese: 'embed_out', whisper: 'proj_out', rwkv: 'head', xlnet: 'lm_loss',
  t5gemma: 'lm_head.out_proj', t5gemma2: 'lm_head.out_proj', internlm2: 'output', chatglm: 'transformer.output_layer',
};
/**
 * Model types with a …ForConditionalGeneration class and no lm_head: BLIP's captioning head is
 * text_decoder.cls.predictions.decoder, which its class does not return from get_output_embeddings
 * in every transformers version.
 */
const HEAD_NOT_KNOWN = new Set(['blip']);
/** Model classes with the lm_head get_output_embeddings() returns by default. */
const LM_HEAD_CLASS = /(?:ForCausalLM|LMHeadModel|ForConditionalGeneration)$/;
/** Model classes with no output embeddings (no lm_head): "all-linear" leaves no head out of them. */
const NO_HEAD_CLASS = /(?:ForSequenceClassification|ForTokenClassification|ForQuestionAnswering)$/;
/** PEFT task types whose model class (AutoModelFor…) has no output embeddings. */
const NO_HEAD_TASKS = new Set(['SEQ_CLS', 'TOKEN_CLS', 'QUESTION_ANS', 'FEATURE_EXTRACTION']);

/**
 * The module "all-linear" leaves out as the output head: its name, null when the model class has
 * none, or why the base does not tell. The task type says which class PEFT was given
 * (SEQ_CLS: AutoModelForSequenceClassification …); else config.json's first architecture does.
 */
export function allLinearOutputHead(adapterConfig: Readonly<Record<string, unknown>>, model: ModelConfig | undefined): { head: string | null } | { unknown: string } {
  if (NO_HEAD_TASKS.has(String(adapterConfig.task_type))) return { head: null };
  if (model === undefined) return { unknown: 'the base has no config.json to name its output head' };
  const modelType = typeof model.raw.model_type === 'string' ? model.raw.model_type : undefined;
  if (modelType !== undefined && Object.hasOwn(OUTPUT_HEAD_BY_MODEL_TYPE, modelType)) return { head: OUTPUT_HEAD_BY_MODEL_TYPE[modelType] };
  if (modelType !== undefined && HEAD_NOT_KNOWN.has(modelType)) return { unknown: `which module a ${modelType} model's get_output_embeddings() returns is not known to this tool` };
  if (model.raw.auto_map !== undefined) return { unknown: `the base's config.json names model code of its own (auto_map), which names its output head` };
  const architecture = modelArchitectures(model)[0];
  if (architecture !== undefined && NO_HEAD_CLASS.test(architecture)) return { head: null };
  if (architecture !== undefined && LM_HEAD_CLASS.test(architecture)) return { head: 'lm_head' };
  return { unknown: `the base's config.json architectures ${architecture === undefined ? '(none)' : JSON.stringify(architecture)} is not a class whose output head this tool knows` };
}

/**
 * Refuses the first module an "all-linear" config cannot have put an adapter on because it is the
 * output head: the head named by allLinearOutputHead (or a module whose name ends with "." + it,
 * as a vision-language model's language_model.lm_head). Where the base does not tell the head, a
 * module outside the numbered layer stacks could be it and is refused; the layers' modules never are.
 */
export function checkAllLinearHead(adapterConfig: Readonly<Record<string, unknown>>, model: ModelConfig | undefined, paths: Iterable<string>, configFile: string, fileName: string): void {
  const found = allLinearOutputHead(adapterConfig, model);
  if ('head' in found && found.head === null) return;
  for (const path of paths) {
    if ('head' in found) {
      if (path !== found.head && !path.endsWith(`.${found.head}`)) continue;
      throw new MergeError('BAD_CONFIG', `${configFile}: module "${path}" is in ${fileName} but is the output head, which target_modules "all-linear" leaves out; PEFT would leave its tensors unused, so this adapter cannot have been trained as PEFT loads it — fix adapter_config.json or remove the module`);
    }
    if (path.split('.').some((part) => /^\d+$/.test(part))) continue;
    throw new MergeError('BAD_CONFIG', `${configFile}: module "${path}" is in ${fileName} and target_modules "all-linear" leaves out the model's output head, but ${found.unknown}, so whether PEFT put an adapter on "${path}" cannot be told; merge into a base folder whose config.json names a known model class`);
  }
}

/**
 * Refuses a module an ensure_weight_tying config admits only as a layer tied to the embedding
 * (`embed_tokens`, `lm_head`) when the base does not tie them: PEFT's
 * _get_module_names_tied_with_embedding returns no tied layers for a config whose
 * tie_word_embeddings is false (BaseTuner._check_tied_modules then only warns), so PEFT puts no
 * adapter there and leaves the module's tensors unused. Without tie_word_embeddings the config
 * class's default applies (tiesWordEmbeddings knows it for common model types); where neither
 * tells (no config.json, another model type), whether the tie applies cannot be told and such a
 * module is refused too. Even on a tied model, PEFT ties adapter
 * layers (BaseTuner._check_tied_modules → _add_targets_to_tie) only when target_modules names one of
 * the two (a list entry whose last name is embed_tokens or lm_head, a pattern matching either name)
 * and modules_to_save names neither (then it ties the saved copies instead).
 */
export function checkWeightTyingTargets(adapterConfig: Readonly<Record<string, unknown>>, model: ModelConfig | GgufHeads | undefined, paths: Iterable<string>, configFile: string, fileName: string): void {
  if (adapterConfig.ensure_weight_tying !== true) return;
  const peftType = String(adapterConfig.peft_type ?? 'LORA').toUpperCase();
  const untied = peftTargetsFrom({ ...adapterConfig, ensure_weight_tying: false }, configFile, peftType);
  if (model !== undefined && 'gguf' in model) {
    checkGgufTie(adapterConfig, model, untied, paths, configFile, fileName);
    return;
  }
  const tie = tiesWordEmbeddings(model);
  const stated = typeof languageModelField(model, 'tie_word_embeddings') === 'boolean';
  const lastName = (m: unknown) => typeof m === 'string' && TIED_LAYERS.includes(m.split('.').pop()!);
  const target = adapterConfig.target_modules, saved = adapterConfig.modules_to_save;
  const embeddingSaved = Array.isArray(saved) && saved.some(lastName);
  const embeddingTargeted = typeof target === 'string'
    ? TIED_LAYERS.some((n) => compile(target, 'target_modules', configFile).matches(n))
    : Array.isArray(target) && target.some(lastName);
  if (tie === true && embeddingTargeted && !embeddingSaved) return;
  for (const path of paths) {
    const why = untied.untargeted(path);
    if (why === undefined) continue;
    const base = tie === true
      ? `PEFT ties adapter layers only when target_modules names embed_tokens or lm_head and modules_to_save names neither, which this config does not`
      : model === undefined ? 'the base has no config.json to say whether it ties them'
      : tie === false ? `the base's config.json ${stated ? 'has tie_word_embeddings false' : `has no tie_word_embeddings and model_type ${JSON.stringify(model?.raw.model_type)} defaults to false`}, so PEFT finds no tied layer and puts no adapter on it (it would leave these tensors unused)`
        : "the base's config.json has no tie_word_embeddings and its model_type has no known default (the model class's), so whether PEFT tied it cannot be told";
    throw new MergeError('BAD_CONFIG', `${configFile}: module "${path}" is in ${fileName} only as a layer tied to the embedding under ensure_weight_tying (${why} otherwise), but ${base}`);
  }
}

/**
 * What a GGUF base shows of the tie, having no config.json: convert_hf_to_gguf writes
 * `output.weight` only for a model with a head of its own, and llama.cpp uses `token_embd.weight`
 * as the head where the file has none.
 */
export interface GgufHeads {
  /** The GGUF's name, as the error shows it. */
  gguf: string;
  hasEmbedding: boolean;
  hasHead: boolean;
}

/** {@link checkWeightTyingTargets} on a GGUF base: its own output.weight says the model is not tied. */
function checkGgufTie(
  adapterConfig: Readonly<Record<string, unknown>>, heads: GgufHeads, untied: PeftTargets, paths: Iterable<string>, configFile: string, fileName: string,
): void {
  // A tied GGUF: PEFT's rule for which tied layers it adapts is the config's, checked as for any tied model.
  if (heads.hasEmbedding && !heads.hasHead) {
    checkWeightTyingTargets(adapterConfig, { path: heads.gguf, raw: { tie_word_embeddings: true } }, paths, configFile, fileName);
    return;
  }
  const base = heads.hasHead
    ? `the base GGUF ${heads.gguf} stores its own output.weight, so the model is not tied and PEFT finds no tied layer to put an adapter on (it would leave these tensors unused)`
    : `the base GGUF ${heads.gguf} stores neither token_embd.weight nor output.weight, so whether the model ties them cannot be told`;
  for (const path of paths) {
    const why = untied.untargeted(path);
    if (why === undefined) continue;
    throw new MergeError('BAD_CONFIG', `${configFile}: module "${path}" is in ${fileName} only as a layer tied to the embedding under ensure_weight_tying (${why} otherwise), but ${base}`);
  }
}
