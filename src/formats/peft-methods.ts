/**
 * PEFT adapters of the methods other than LoRA (adapter_config.json `peft_type` LOHA, LOKR, VERA,
 * OFT, BOFT, IA3, ADALORA, HRA, HIRA, GLORA, ROAD, C3A, MISS, BONE, SHIRA, FOURIERFT, WAVEFT, BEFT, SUPERTUNING, TINYLORA, PVERA, UNILORA, DEFT, PEANUT, LN_TUNING): the same tensors as LyCORIS's
 * (`<module>.hada_w1_a`, `<module>.lokr_w1` …) under PEFT's module paths, VeRA's per-module
 * vera_lambda_b/d with the shared `base_model.vera_A`/`vera_B`, OFT's `<module>.oft_R.weight` (or,
 * before PEFT 0.16, `oft_r`/`oft_s`), BOFT's `boft_R`/`boft_s`, IA3's `ia3_l`, AdaLoRA's
 * `lora_A`/`lora_E`/`lora_B`, HRA's `hra_u`, HiRA's `hira_A`/`hira_B`, RoAd's `road_theta`/`road_alpha`, C3A's `c3a_kernel`, MiSS's `miss_block` (Bone's `bone_block`), SHiRA's
 * `shira_weight`/`shira_indices`, FourierFT's `fourierft_spectrum`, WaveFT's `waveft_spectrum`, BEFT's `beft_bias`,
 * Super-Tuning's `supertuning_values`/`supertuning_indices` (and `supertuning_lora_A`/`_B`), TinyLoRA's
 * `tinylora_A`/`_B`/`_P` with the shared `base_model.tinylora_v.0`, PVeRA's `pvera_lambda_b`/`_d` with the
 * shared `base_model.pvera_A`/`pvera_B`, UniLoRA's `unilora_indices_A`/`_B` and `unilora_scales_A`/`_B` with
 * the shared `base_model.unilora_theta_d`, DEFT's `deft_P`/`deft_R`, PEANuT's `peanut_A`/`_B` and
 * `peanut_encoders.<i>`/`peanut_decoders.<i>`; LN tuning's trained layer copies
 * (`<module>.ln_tuning_layers.<param>`) replace the base's parameters; plus `modules_to_save`
 * layers and other saved tensors, which replace their base tensors as in LoRA folders
 * (peft-saved-modules.ts). The modules are built by the algorithm registry; the scale is PEFT's:
 * α/r from the config (rank_pattern and alpha_pattern included) for LoHa and LoKr, whatever the
 * factors' form, AdaLoRA's lora_alpha/(init_r + 1e-5), C3A's 1/in, and 1 for the others.
 */
import { RE2JS } from 're2js';
import { MergeError, type MergeErrorCode } from '../errors.js';
import { Pacer } from '../event-turns.js';
import { throwIfProblems } from '../plan/problems.js';
import type { AdapterModule, LayerClass, ParsedAdapter, TensorReplacement } from './adapter.js';
import type { RegeneratedProjections } from './algorithms/shared-projections.js';
import { algorithmNamed } from './algorithms/index.js';
import { adaloraRankPattern } from './algorithms/peft-adalora.js';
import { GLORA_FORMS, PEFT_GLORA_ROLES } from './algorithms/peft-glora.js';
import { PEANUT_ACTIVATION_NAMES, PEANUT_MAX_DEPTH } from './algorithms/peft-peanut.js';
import { peftWaveletFamilyIndex, peftWaveletReduction } from './algorithms/peft-waveft.js';
import { parseBoundedJson, shownValue } from './bounded-json.js';
import { jsonNumberTexts, jsonPath } from './json-number-texts.js';
import { splitTensorName, type Role } from './key-forms.js';
import type { MatchBudget } from './module-pattern.js';
import { lookupPattern, patternCovers, patternTables } from './peft-config.js';
import { savedTensor } from './peft-saved-modules.js';
import { ALL_LINEAR_LAYERS, checkPeftTargets, peftTargetsFrom, targetsAllLinear } from './peft-targets.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';
import { owningModules, roleEndings, unknownTensorMessage } from './unknown-tensor.js';

const PEFT_PREFIX = 'base_model.model.';

interface MethodConfig {
  /** How users know the method, for messages. */
  title: string;
  /**
   * The layers PEFT wraps with it (its model.py _create_new_module and layer.py dispatchers; bnb,
   * GPTQ and other quantized Linear layers count as Linear); LN tuning copies any layer whole.
   */
  wraps?: readonly LayerClass[];
  /**
   * Its dispatcher (model.py _create_new_module, or layer.py dispatch_default) sets fan_in_fan_out
   * by the layer's class: true for a Conv1D, false for an nn.Linear, whatever the config says.
   */
  fanInFanOutByLayer?: true;
  /** The algorithms a module may be, told apart by the roles it has. */
  algorithms: readonly string[];
  roles: readonly Role[];
  /** Default r and α of PEFT's config class, and the config fields they are read from when not `r` and `alpha`. */
  r: number;
  alpha: number;
  rKey?: string;
  alphaKey?: string;
  /**
   * Where PEFT fails on the r and α fields written null (its config keeps None and the layer's
   * update_layer compares or divides by it); absent: the method's config has no such field, and
   * PEFT drops a key its config class does not define.
   */
  rNull?: string;
  alphaNull?: string;
  /** The config's per-module table of r when not `rank_pattern`. */
  rPatternKey?: string;
  /**
   * Where the method saves a trained copy of a whole layer (`<module>.<wrapper>.<param>`, the
   * adapter name removed): each tensor replaces the base's `<module>.<param>`, as PEFT's merge swaps
   * the copy in for the layer.
   */
  layerCopy?: string;
  /** The endings a module's tensors have, for messages, when not those of its roles in the key-form table. */
  endings?: string;
  /**
   * Tensors one per adapter, shared by every module (`base_model.vera_A`), by role; and why a file
   * without them is refused. `drawn`: a file saved with save_projection: false has none, and they are
   * drawn as PEFT draws them when it loads it (A with `drawn`·r rows; shared-projections.ts).
   */
  shared?: { names: Readonly<Record<string, Role>>; missing: string; drawn?: { rows: 1 | 2; names: string } };
}

/** Where most methods fail on a null r: update_layer's first check of it. */
const R_COMPARED = '`r <= 0` in update_layer raises TypeError';

const METHODS: Readonly<Record<string, MethodConfig>> = {
  LOHA: { rNull: R_COMPARED, alphaNull: '`alpha / r` in update_layer raises TypeError', title: 'LoHa', wraps: ['Linear', 'Conv1d', 'Conv2d'], algorithms: ['loha'], roles: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2'], r: 8, alpha: 8 },
  LOKR: { rNull: R_COMPARED, alphaNull: '`alpha / r` in update_layer raises TypeError', title: 'LoKr', wraps: ['Linear', 'Conv1d', 'Conv2d'], algorithms: ['lokr'], roles: ['lokr_w1', 'lokr_w1_a', 'lokr_w1_b', 'lokr_w2', 'lokr_w2_a', 'lokr_w2_b', 'lokr_t2'], r: 8, alpha: 8 },
  VERA: {
    rNull: R_COMPARED, title: 'VeRA', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['vera'], roles: ['vera_lambda_b', 'vera_lambda_d'], r: 256, alpha: 1,
    shared: { names: { 'base_model.vera_A': 'vera_A', 'base_model.vera_B': 'vera_B' }, missing: 'VeRA adapter without base_model.vera_A and vera_B, and its config does not say save_projection: false (PEFT refuses to load it: "Specified to load vera_A and vera_B from state dictionary however they were not present!"); save it again from PEFT', drawn: { rows: 1, names: 'vera_A and vera_B' } },
  },
  OFT: { rNull: 'OFTLayer.update_layer takes r = None for the rank and fails on `in_features % r`, or OFTConfig refuses it beside an oft_block_size', title: 'OFT', wraps: ['Linear', 'Conv2d', 'Embedding'], algorithms: ['peft-oft', 'peft-oft-legacy'], roles: ['oft_R', 'oft_embedding_R', 'oft_r', 'oft_s'], r: 8, alpha: 1 },
  BOFT: { title: 'BOFT', wraps: ['Linear', 'Conv2d'], algorithms: ['peft-boft'], roles: ['boft_R', 'boft_s'], r: 0, alpha: 1 },
  IA3: { title: '(IA)³', wraps: ['Linear', 'Conv1D', 'Conv2d', 'Conv3d'], fanInFanOutByLayer: true, algorithms: ['peft-ia3'], roles: ['ia3_l'], r: 0, alpha: 1 },
  // AdaLoRA's r is init_r (its `r` field is ignored by PEFT); its rank_pattern holds boolean masks.
  // LN tuning trains a deep copy of each target layer (PEFT tuners/ln_tuning) and merges by swapping it in.
  LN_TUNING: { title: 'LN tuning', endings: 'ln_tuning_layers.<parameter>', algorithms: [], roles: [], r: 0, alpha: 1, layerCopy: 'ln_tuning_layers' },
  HRA: { rNull: R_COMPARED, title: 'HRA', wraps: ['Linear', 'Conv2d'], algorithms: ['peft-hra'], roles: ['hra_u'], r: 8, alpha: 1 },
  HIRA: { rNull: R_COMPARED, title: 'HiRA', wraps: ['Linear', 'Conv1D', 'Conv1d', 'Conv2d', 'Conv3d', 'Embedding'], fanInFanOutByLayer: true, algorithms: ['peft-hira'], roles: ['hira_A', 'hira_B', 'hira_embedding_A', 'hira_embedding_B'], r: 32, alpha: 1 },
  ROAD: { title: 'RoAd', wraps: ['Linear'], algorithms: ['peft-road'], roles: ['road_theta', 'road_alpha'], r: 0, alpha: 1 },
  C3A: { rNull: '`block_size <= 0` in update_layer raises TypeError', title: 'C3A', wraps: ['Linear'], algorithms: ['peft-c3a'], roles: ['c3a_kernel'], r: 256, alpha: 1, rKey: 'block_size', rPatternKey: 'block_size_pattern' },
  MISS: { rNull: R_COMPARED, title: 'MiSS', wraps: ['Linear'], algorithms: ['peft-miss'], roles: ['miss_block'], r: 64, alpha: 1 },
  BONE: { rNull: R_COMPARED, title: 'Bone', wraps: ['Linear'], algorithms: ['peft-miss'], roles: ['bone_block'], r: 64, alpha: 1 },
  SHIRA: { rNull: R_COMPARED, title: 'SHiRA', wraps: ['Linear'], algorithms: ['peft-shira'], roles: ['shira_weight', 'shira_indices'], r: 32, alpha: 1 },
  ADALORA: { rNull: '`r < 0` in update_layer raises TypeError', alphaNull: '`lora_alpha > 0` in update_layer raises TypeError', title: 'AdaLoRA', endings: 'lora_A, lora_E, lora_B', wraps: ['Linear', 'Conv1D', 'Conv2d'], fanInFanOutByLayer: true, algorithms: ['peft-adalora'], roles: ['down', 'lora_E', 'up'], r: 12, alpha: 8, rKey: 'init_r', alphaKey: 'lora_alpha' },
  // FourierFT's n_frequency sizes the spectrum (its r), its scaling multiplies ΔW (its α).
  FOURIERFT: { rNull: '`n_frequency <= 0` in update_layer raises TypeError', alphaNull: '`ifft2(…).real * scaling` in get_delta_weight raises TypeError', title: 'FourierFT', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['peft-fourierft'], roles: ['fourierft_spectrum'], r: 1000, alpha: 150, rKey: 'n_frequency', alphaKey: 'scaling', rPatternKey: 'n_frequency_pattern' },
  WAVEFT: { rNull: '`n_frequency <= 0` in update_layer raises TypeError', alphaNull: '`dense_spectrum * scaling` in get_delta_weight raises TypeError', title: 'WaveFT', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['peft-waveft'], roles: ['waveft_spectrum'], r: 2592, alpha: 25, rKey: 'n_frequency', alphaKey: 'scaling', rPatternKey: 'n_frequency_pattern' },
  VBLORA: {
    rNull: R_COMPARED, title: 'VB-LoRA', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['peft-vblora'], roles: ['vblora_logits_A', 'vblora_logits_B', 'vblora_A_topk_indices', 'vblora_A_topk_weights', 'vblora_B_topk_indices', 'vblora_B_topk_weights'], r: 4, alpha: 1,
    shared: { names: { 'base_model.vblora_vector_bank': 'vblora_vector_bank' }, missing: 'VB-LoRA adapter without its shared base_model.vblora_vector_bank, which every module\'s factors are built from' },
  },
  RANDLORA: {
    rNull: R_COMPARED, alphaNull: '`randlora_alpha / r` in update_layer raises TypeError', title: 'RandLoRA', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['peft-randlora'], roles: ['randlora_lambda', 'randlora_gamma'], r: 32, alpha: 640, alphaKey: 'randlora_alpha',
    shared: { names: { 'base_model.randlora_A': 'randlora_A', 'base_model.randlora_B': 'randlora_B' }, missing: 'RandLoRA adapter without base_model.randlora_A and randlora_B (saved with save_projection: false); PEFT regenerates these random bases from projection_prng_key with a PyTorch generator and divides them by torch\'s float32 std(), whose values differ by the CPU kernel torch ran, so this tool cannot reproduce them exactly; save it again from PEFT with save_projection: true' },
  },
  DELORA: { rNull: R_COMPARED, title: 'DeLoRA', wraps: ['Linear'], algorithms: ['peft-delora'], roles: ['delora_A', 'delora_B', 'delora_lambda', 'delora_w_norm'], r: 8, alpha: 1 },
  // BEFT trains a bias change alone; Super-Tuning's r is optional (no r: no LoRA pair), its α defaults to 2r (SupertuningConfig.__post_init__).
  BEFT: { title: 'BEFT', wraps: ['Linear'], algorithms: ['peft-beft'], roles: ['beft_bias'], r: 0, alpha: 1 },
  SUPERTUNING: { title: 'Super-Tuning', wraps: ['Linear'], algorithms: ['peft-supertuning'], roles: ['supertuning_values', 'supertuning_indices', 'supertuning_lora_A', 'supertuning_lora_B'], r: 0, alpha: 0, alphaKey: 'lora_alpha' },
  PVERA: {
    rNull: R_COMPARED, title: 'PVeRA', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['peft-pvera'], roles: ['pvera_lambda_b', 'pvera_lambda_d'], r: 256, alpha: 1,
    shared: { names: { 'base_model.pvera_A': 'pvera_A', 'base_model.pvera_B': 'pvera_B' }, missing: 'PVeRA adapter without base_model.pvera_A and pvera_B, and its config does not say save_projection: false (PEFT refuses to load it); save it again from PEFT', drawn: { rows: 2, names: 'pvera_A and pvera_B' } },
  },
  UNILORA: {
    rNull: '`self.r <= 0` in UniLoraConfig.__post_init__ raises TypeError', title: 'UniLoRA', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['peft-unilora'], roles: ['unilora_indices_A', 'unilora_indices_B', 'unilora_scales_A', 'unilora_scales_B'], r: 4, alpha: 1,
    shared: { names: { 'base_model.unilora_theta_d': 'unilora_theta_d' }, missing: 'UniLoRA adapter without its shared base_model.unilora_theta_d, which every entry of every module\'s A and B is read from' },
  },
  // TinyLoRA's v is shared by a group of modules, saved once per group; the one group every module uses when there is one.
  TINYLORA: {
    rNull: '`self.r <= 0` in TinyLoraConfig.__post_init__ raises TypeError', title: 'TinyLoRA', wraps: ['Linear', 'Conv1D', 'Embedding'], fanInFanOutByLayer: true, algorithms: ['peft-tinylora'], roles: ['tinylora_A', 'tinylora_B', 'tinylora_P'], r: 2, alpha: 1,
    shared: { names: { 'base_model.tinylora_v.0': 'tinylora_v' }, missing: 'TinyLoRA adapter without its shared base_model.tinylora_v vector, which every module\'s update is scaled by' },
  },
  // DEFT's alpha is optional (None or 0: no scaling of R); its config has no rank_pattern or alpha_pattern.
  DEFT: { rNull: R_COMPARED, title: 'DEFT', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['peft-deft'], roles: ['deft_P', 'deft_R'], r: 8, alpha: 0 },
  // PEANuT's scaling multiplies ΔW (its α); its config has no rank_pattern.
  PEANUT: {
    rNull: '`self.r <= 0` in PeanutConfig.__post_init__ raises TypeError', alphaNull: '`delta_w * scaling` in _compute_delta_weight raises TypeError', title: 'PEANuT', endings: 'peanut_A.weight, peanut_B.weight, peanut_encoders.<i>.weight, peanut_decoders.<i>.weight', wraps: ['Linear'], algorithms: ['peft-peanut'],
    roles: ['peanut_A', 'peanut_B', ...Array.from({ length: PEANUT_MAX_DEPTH }, (_, i) => [`peanut_enc_${i}`, `peanut_dec_${i}`] as Role[]).flat()], r: 32, alpha: 1, alphaKey: 'scaling',
  },
  // GLoRA (not LyCORIS's): its config has no alpha and no rank_pattern; r sizes the `lora` paths only.
  GLORA: { rNull: '`torch.zeros(out_features, r)` in GloraLoraPath raises TypeError', title: 'GLoRA', endings: 'glora_A…glora_E .Xd, .Xu, .X, .zeros', wraps: ['Linear'], algorithms: ['peft-glora'], roles: PEFT_GLORA_ROLES, r: 8, alpha: 1 },
  GRALORA: { rNull: R_COMPARED, alphaNull: '`alpha / (r + hybrid_r)` in update_layer raises TypeError', title: 'GraLoRA', wraps: ['Linear', 'Conv1D'], fanInFanOutByLayer: true, algorithms: ['peft-gralora'], roles: ['gralora_A', 'gralora_B', 'gralora_A_general', 'gralora_B_general'], r: 32, alpha: 64 },
};

/** Algorithms whose ΔW PEFT transposes for a layer stored (in, out) when the config says fan_in_fan_out (GPT-2's Conv1D). */
const TRANSPOSED_UNDER_FAN_IN_FAN_OUT: readonly string[] = ['peft-deft', 'peft-tinylora', 'peft-pvera', 'peft-unilora', 'vera', 'peft-fourierft', 'peft-waveft', 'peft-adalora', 'peft-hira', 'peft-vblora', 'peft-randlora', 'peft-gralora'];

/**
 * AdaLoRA's per-module settings as PEFT sets them at load: every module is built at init_r
 * (ranknum = init_r, scaling = lora_alpha, or the rank when lora_alpha ≤ 0); a module in
 * rank_pattern is resized to its kept count with ranknum copied back, its scaling recomputed.
 */
function adaloraSettings(raw: Record<string, unknown>, configFile: string, initR: number): (path: string) => Record<string, number> {
  if (!Number.isInteger(initR) || initR < 0) throw new MergeError('BAD_CONFIG', `${configFile}: "init_r" must be an integer ≥ 0, got ${initR}`);
  // ranknum is cast to the base layer's dtype while the model is built: an init_r that bf16 cannot
  // hold would be rounded there, to a value the file does not say.
  let odd = initR;
  while (odd > 0 && odd % 2 === 0) odd /= 2;
  if (odd >= 256 || initR > 65504) throw new MergeError('UNSUPPORTED_FORMAT', `${configFile}: AdaLoRA init_r ${initR} is not exact in bf16 or f16, so the ranknum PEFT divides by depends on the dtype the base model was loaded in`);
  const alpha = raw.lora_alpha === undefined || raw.lora_alpha === null ? 8 : (raw.lora_alpha as number);
  const kept = adaloraRankPattern(raw, configFile, initR);
  return (path) => {
    const k = kept.get(path);
    return { init_r: initR, scaling: alpha > 0 ? alpha : (k ?? initR), ...(k === undefined ? {} : { kept: k }) };
  };
}

/** The config's `peft_type` when it is one this file parses, else undefined (the LoRA parser reports a broken config). */
export function peftMethodOf(configText: string): string | undefined {
  try {
    const type = (parseBoundedJson(configText, 'adapter_config.json') as { peft_type?: unknown } | null)?.peft_type;
    return typeof type === 'string' && METHODS[type.toUpperCase()] ? type.toUpperCase() : undefined;
  } catch {
    return undefined;
  }
}

type Problem = { code: MergeErrorCode; message: string };

/** Parses an adapter of a PEFT method other than LoRA (METHODS); `pacer` as parsePeftAdapter's, once a tensor and once a module. */
export async function parsePeftMethodAdapter(name: string, configText: string, configFile: string, file: SafetensorsFile, pacer: Pacer = new Pacer()): Promise<ParsedAdapter> {
  const parsed = parseBoundedJson(configText, configFile);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new MergeError('BAD_CONFIG', `${configFile}: expected a JSON object`);
  const raw = parsed as Record<string, unknown>;
  const type = String(raw.peft_type).toUpperCase();
  const method = METHODS[type];
  const fileName = file.source.name;
  // A numeric field written null reaches PEFT as None (from_pretrained passes it on, the default does
  // not apply), and PEFT fails where it first compares or divides by it (`failure`); so it is refused.
  // Fields PEFT reads only on a branch the config does not take are not read here either.
  const number = (key: string, fallback: number, failure = `\`${key}\` is compared or divided by in update_layer, which raises TypeError`): number => {
    const v = raw[key];
    if (v === undefined) return fallback;
    if (v === null) throw new MergeError('BAD_CONFIG', `${configFile}: "${key}" is null, which PEFT cannot load (${failure}); give a number or leave the field out for PEFT's default`);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new MergeError('BAD_CONFIG', `${configFile}: "${key}" must be a number, got ${shownValue(v)}`);
    return v;
  };
  const flag = (key: string): boolean | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw new MergeError('BAD_CONFIG', `${configFile}: "${key}" must be true or false`);
    return v;
  };
  const budget: MatchBudget = { file: configFile, used: 0 };
  // A null r or α in a config class without that field is dropped by PEFT with the other unknown keys.
  const rKey = method.rKey ?? 'r', alphaKey = method.alphaKey ?? 'alpha';
  const r = method.rNull || raw[rKey] !== null ? number(rKey, method.r, method.rNull) : method.r;
  const alpha = method.alphaNull || raw[alphaKey] !== null ? number(alphaKey, method.alpha, method.alphaNull) : method.alpha;
  const adalora = type === 'ADALORA' ? adaloraSettings(raw, configFile, r) : undefined;
  // AdaLoRA's rank_pattern is its own (boolean masks), and PEFT does not read alpha_pattern for it.
  // Neither do BEFT, Super-Tuning, TinyLoRA, PVeRA, UniLoRA, DEFT and PEANuT, whose config classes have no such tables (PEFT drops the keys).
  const noPatterns = adalora !== undefined || type === 'BEFT' || type === 'SUPERTUNING' || type === 'TINYLORA' || type === 'PVERA' || type === 'UNILORA' || type === 'DEFT' || type === 'PEANUT' || type === 'GLORA';
  const [rankPattern, alphaPattern] = noPatterns ? [[], []]
    : patternTables(raw, [{ key: method.rPatternKey ?? 'rank_pattern', integer: true }, { key: 'alpha_pattern', integer: false }], configFile, budget);
  const fanInFanOut = flag('fan_in_fan_out') === true;
  const modulesToSave = stringList(raw, 'modules_to_save', configFile);
  const warnings: string[] = [];

  // Settings the algorithms read (context.options), checked here.
  const options: Record<string, number | boolean> = {};
  for (const key of ['coft', 'block_share', 'use_cayley_neumann', 'apply_GS'] as const) {
    const v = flag(key);
    if (v !== undefined) options[key] = v;
  }
  if (type === 'OFT') {
    // OFTConfig.__post_init__ refuses a null oft_block_size beside any r (`(r != 0) ^ (oft_block_size != 0)` is false);
    // eps is read only under coft (_project_batch: `eps * …`), the series length only under use_cayley_neumann
    // (_cayley_batch: `num_neumann_terms > 1`), each raising TypeError on None there.
    if (raw.oft_block_size !== undefined) options.oft_block_size = number('oft_block_size', 0, 'OFTConfig.__post_init__ raises ValueError: `(r != 0) ^ (oft_block_size != 0)` is false for None');
    if (raw.eps !== undefined && (raw.eps !== null || options.coft === true)) options.eps = number('eps', 0, 'coft is true and `eps * …` in _project_batch raises TypeError');
    if (raw.num_cayley_neumann_terms !== undefined && (raw.num_cayley_neumann_terms !== null || raw.use_cayley_neumann === true || raw.use_cayley_neumann === undefined)) {
      options.num_cayley_neumann_terms = number('num_cayley_neumann_terms', 0, 'use_cayley_neumann is on and `num_neumann_terms > 1` in _cayley_batch raises TypeError');
    }
    // A null use_cayley_neumann is false to PEFT's `if use_cayley_neumann:` (the exact Cayley transform), not its default true.
    if (raw.use_cayley_neumann === null) options.use_cayley_neumann = false;
  }
  // OFT, BOFT and SHiRA ignore fan_in_fan_out: their dispatchers (oft/layer.py dispatch_default, boft and
  // shira model.py _create_new_module) set it false for nn.Linear, the one layer of theirs it could
  // concern, and their layers store it without reading it in get_delta_weight.
  if (type === 'OFT' && options.use_cayley_neumann !== false && olderThan(raw.peft_version, 0, 18)) {
    options.older_neumann_series = true;
  }
  if (type === 'BOFT') {
    // The merge reads the block sizes from the tensors' shapes, but PEFT cannot build the layer with a
    // null one: BOFTConfig.__post_init__ refuses it beside a non-zero other, BOFTLayer.update_layer
    // fails on `in_features % boft_block_size` beside a zero one.
    for (const key of ['boft_block_size', 'boft_block_num']) number(key, 0, 'BOFTConfig.__post_init__ or BOFTLayer.update_layer fails on None');
  }
  if (type === 'MISS' || type === 'BONE') {
    // init_weights picks the block's form: "bat", MiSS's "mini", else (true, false, any other value) the default.
    if (raw.init_weights === 'bat') options.miss_bat = true;
    if (type === 'MISS' && raw.init_weights === 'mini') options.miss_mini = true;
    // mini_r is read only for init_weights "mini" (update_layer: `out_features % mini_r`).
    if (options.miss_mini) options.mini_r = number('mini_r', 1, '`out_features % mini_r` in update_layer raises TypeError');
  }
  if (type === 'VBLORA') {
    options.topk = number('topk', 2, '`topk <= 0` in update_layer raises TypeError');
    // VBLoRAModel._init_vblora_vector_bank: torch.zeros(num_vectors, vector_length) raises TypeError on None.
    for (const [key, fallback] of [['num_vectors', 256], ['vector_length', 256]] as const) options[key] = number(key, fallback, 'torch.zeros(num_vectors, vector_length) for the vector bank raises TypeError');
    options.save_only_topk_weights = flag('save_only_topk_weights') === true;
  }
  if (type === 'GRALORA') {
    options.gralora_k = number('gralora_k', 2, '`in_features % gralora_k` in update_layer raises TypeError');
    options.hybrid_r = number('hybrid_r', 0, '`hybrid_r < 0` in update_layer raises TypeError');
  }
  // LoKr's kron as PEFT builds it (algorithms/lokr.ts: its Conv1d order); PEFT's Conv1d Tucker cores (r, r, k, 1).
  if (type === 'LOKR') options.peft_lokr = true;
  if (type === 'LOHA') options.peft_loha = true;
  if (type === 'BEFT') options.beft_config = true;
  if (type === 'PVERA') options.pvera_config = true;
  if (type === 'UNILORA') {
    options.unilora_config = true;
    options.theta_d_length = number('theta_d_length', 256, '`self.theta_d_length <= 0` in UniLoraConfig.__post_init__ raises TypeError');
    // Without save_indices (PEFT's default) the file holds theta_d alone.
    if (!file.tensors.some((e) => /\.unilora_(indices|scales)_[AB]$/.test(e.name))) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: UniLoRA adapter without unilora_indices and unilora_scales (saved with save_indices: false, PEFT's default): PEFT regenerates them from proj_seed with numpy's generator, handing one shuffled sequence out to the modules in the model's named_modules() order, which neither the adapter nor the base records, so where each entry of A and B comes from cannot be told`);
    }
  }
  if (type === 'SUPERTUNING') {
    // SupertuningConfig.__post_init__: r is None (sparse values alone) or a positive integer; lora_alpha
    // is refused without r and defaults to 2·r with it. Its LoRA pair is scaled by lora_alpha / r.
    options.supertuning_config = true;
    const sparsity = number('sparsity', 0.99);
    if (!(sparsity >= 0 && sparsity < 1)) throw new MergeError('BAD_CONFIG', `${configFile}: Super-Tuning "sparsity" must be in [0, 1) (SupertuningConfig raises ValueError), got ${sparsity}`);
    if (r !== 0 && (!Number.isInteger(r) || r < 0)) throw new MergeError('BAD_CONFIG', `${configFile}: Super-Tuning "r" must be a positive integer or null (SupertuningConfig raises ValueError), got ${r}`);
    if (r === 0 && raw.r !== undefined && raw.r !== null) throw new MergeError('BAD_CONFIG', `${configFile}: Super-Tuning "r" must be a positive integer or null (SupertuningConfig raises ValueError), got 0`);
    const hasAlpha = raw.lora_alpha !== undefined && raw.lora_alpha !== null;
    if (r === 0 && hasAlpha) throw new MergeError('BAD_CONFIG', `${configFile}: Super-Tuning "lora_alpha" is set but "r" is not, which SupertuningConfig refuses ("Supra mode requires an explicit r")`);
    if (r > 0) options.lora_scale = (hasAlpha ? alpha : 2 * r) / r;
  }
  if (type === 'TINYLORA') {
    options.tinylora_config = true;
    options.u = number('u', 64, '`self.u <= 0` in TinyLoraConfig.__post_init__ raises TypeError');
    if (!Number.isInteger(options.u) || options.u <= 0) throw new MergeError('BAD_CONFIG', `${configFile}: TinyLoRA "u" must be a positive integer, got ${options.u}`);
    if (!Number.isInteger(r) || r <= 0) throw new MergeError('BAD_CONFIG', `${configFile}: TinyLoRA "r" must be a positive integer, got ${r}`);
    const tying = number('weight_tying', 0, '`0.0 <= weight_tying` in TinyLoraConfig.__post_init__ raises TypeError');
    if (!(tying >= 0 && tying <= 1)) throw new MergeError('BAD_CONFIG', `${configFile}: TinyLoRA "weight_tying" must be between 0 and 1 (TinyLoraConfig raises ValueError), got ${tying}`);
    // PEFT gives the n adapted modules max(1, round(n·(1 − weight_tying))) vectors v, handed out by each
    // module's position in the model's named_modules() order. With one group every module uses v "0";
    // with more, which module uses which is in neither file (the safetensors keys are sorted by name).
    const modules = new Set(file.tensors.filter((e) => e.name.endsWith('.tinylora_A')).map((e) => e.name));
    const groups = file.tensors.filter((e) => e.name.startsWith('base_model.tinylora_v.'));
    if (modules.size * (1 - tying) >= 1.5 || groups.length > 1) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: TinyLoRA with ${groups.length} shared vectors v (${modules.size} modules, weight_tying ${tying}): PEFT hands each module the v of its group by the module's position in the model's named_modules() order, which neither the adapter nor the base records, so which v each module uses cannot be told; only an adapter whose modules all share one v (weight_tying 1.0, or one module) can be merged`);
    }
  }
  if (type === 'DEFT') {
    // DeftConfig.__post_init__ refuses any decomposition_method but "relu" and "qr" (None too);
    // update_layer's `if getattr(config, "alpha", None)` takes a null or 0 alpha as no scaling.
    const method = raw.decomposition_method === undefined ? 'relu' : raw.decomposition_method;
    if (method !== 'relu' && method !== 'qr') throw new MergeError('BAD_CONFIG', `${configFile}: DEFT "decomposition_method" must be "relu" or "qr" (DeftConfig raises ValueError), got ${shownValue(method)}`);
    if (!Number.isInteger(r) || r <= 0) throw new MergeError('BAD_CONFIG', `${configFile}: DEFT "r" must be a positive integer (update_layer raises ValueError), got ${r}`);
    options.deft_config = true;
    options.deft_qr = method === 'qr';
    // `if self.deft_para[...]` takes a null as false: full DEFT.
    options.deft_para = flag('para') === true;
    options.deft_alpha = alpha;
  }
  if (type === 'PEANUT') {
    // PeanutConfig.__post_init__: r a positive integer, depth ≥ 0 (None raises TypeError), act_fn a key of
    // transformers' ACT2FN (None raises ValueError).
    if (!Number.isInteger(r) || r <= 0) throw new MergeError('BAD_CONFIG', `${configFile}: PEANuT "r" must be a positive integer (PeanutConfig raises ValueError), got ${r}`);
    const depth = number('depth', 0, '`self.depth < 0` in PeanutConfig.__post_init__ raises TypeError');
    if (!Number.isInteger(depth) || depth < 0) throw new MergeError('BAD_CONFIG', `${configFile}: PEANuT "depth" must be a non-negative integer (PeanutConfig raises ValueError), got ${depth}`);
    if (depth > PEANUT_MAX_DEPTH) throw new MergeError('UNSUPPORTED_FORMAT', `${configFile}: PEANuT depth ${depth} is not supported: this tool reads networks of depth ${PEANUT_MAX_DEPTH} or less`);
    const act = raw.act_fn === undefined ? 'relu' : raw.act_fn;
    const index = typeof act === 'string' ? PEANUT_ACTIVATION_NAMES.indexOf(act) : -1;
    if (index < 0) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${configFile}: PEANuT act_fn ${shownValue(act)} is not one whose formula this tool forms (${PEANUT_ACTIVATION_NAMES.join(', ')}), so its network cannot be run as PEFT runs it`);
    }
    options.peanut_config = true;
    options.depth = depth;
    options.act_fn = index;
    options.peanut_scaling = alpha;
  }
  if (type === 'GLORA') {
    // GloraConfig.__post_init__ refuses any other value of the three fields (None too).
    const forms: [string, string, readonly string[]][] = [['config_A_B', 'lora', GLORA_FORMS], ['config_C', 'lora', ['lora', 'vector', 'none']], ['config_D_E', 'constant', ['vector', 'constant', 'none']]];
    for (const [key, fallback, allowed] of forms) {
      const v = raw[key] === undefined ? fallback : raw[key];
      if (typeof v !== 'string' || !allowed.includes(v)) throw new MergeError('BAD_CONFIG', `${configFile}: GLoRA "${key}" must be ${allowed.map((a) => `"${a}"`).join(', ')} (GloraConfig raises ValueError), got ${shownValue(v)}`);
      options[key === 'config_A_B' ? 'glora_A_B' : key === 'config_C' ? 'glora_C' : 'glora_D_E'] = GLORA_FORMS.indexOf(v as (typeof GLORA_FORMS)[number]);
    }
    options.glora_config = true;
  }
  if (type === 'ROAD') {
    // RoadConfig.__post_init__ refuses a null variant (not one of the three) and fails on a null group_size (`group_size <= 0`).
    const variant = raw.variant === undefined ? 'road_1' : raw.variant, g = number('group_size', 64, '`group_size <= 0` in RoadConfig.__post_init__ raises TypeError');
    if (variant !== 'road_1' && variant !== 'road_2' && variant !== 'road_4') throw new MergeError('BAD_CONFIG', `${configFile}: RoAd "variant" must be "road_1", "road_2" or "road_4", got ${JSON.stringify(variant)}`);
    if (!Number.isInteger(g) || g <= 0 || g % 2 !== 0) throw new MergeError('BAD_CONFIG', `${configFile}: RoAd "group_size" must be an even positive integer, got ${g}`);
    options.road_variant = Number(variant.slice(5));
    options.group_size = g;
  }
  if (type === 'FOURIERFT' || type === 'WAVEFT') {
    // update_layer seeds torch.Generator().manual_seed(random_loc_seed), which takes an integer (None raises TypeError).
    const value = number('random_loc_seed', 777, 'torch.Generator().manual_seed(None) raises TypeError');
    options.random_loc_seed = raw.random_loc_seed === undefined ? value : projectionSeed(jsonNumberTexts(configText).get(jsonPath(['random_loc_seed'])) ?? String(value), `${configFile}: ${method.title} "random_loc_seed"`);
  }
  if (type === 'WAVEFT') {
    // WaveFTConfig.__post_init__ refuses a wavelet_family WAVELET_REDUCTIONS does not list (None too), whatever use_idwt says.
    const family = raw.wavelet_family === undefined ? 'db1' : raw.wavelet_family;
    if (typeof family !== 'string' || peftWaveletReduction(family) === undefined) {
      throw new MergeError('BAD_CONFIG', `${configFile}: WaveFT "wavelet_family" ${shownValue(family)} is not one PEFT lists (db1–db38, sym2–sym20, coif1–coif17; WaveFTConfig raises ValueError)`);
    }
    // get_delta_weight's `if use_idwt:` takes a null as false: the coefficients are added where they are.
    options.use_idwt = raw.use_idwt === undefined || flag('use_idwt') === true;
    if (options.use_idwt) options.wavelet_family_index = peftWaveletFamilyIndex(family, configFile);
    options.proportional_parameters = flag('proportional_parameters') === true;
  }
  const feedforward = type === 'IA3' ? feedforwardMatcher(raw, configFile) : undefined;
  if (type === 'IA3') options.fan_in_fan_out = fanInFanOut;

  const problems: Problem[] = [];
  const groups = new Map<string, Map<Role, TensorEntry>>();
  const shared = new Map<Role, TensorEntry>();
  const replacements: TensorReplacement[] = [];
  const leftOut: string[] = [];
  /** The keys of the modules the method's tensors (or LN tuning's layer copies) lie under. */
  const owners = new Set<string>();
  /** Tensors that are not the method's own: saved base tensors, or a module's unknown ones. */
  const loose: { entry: TensorEntry; foreign: boolean }[] = [];
  for (const entry of file.tensors) {
    await pacer.tick();
    const sharedRole = method.shared?.names[entry.name];
    if (sharedRole) {
      shared.set(sharedRole, entry);
      continue;
    }
    const copied = method.layerCopy === undefined ? -1 : entry.name.indexOf(`.${method.layerCopy}.`);
    if (copied > 0) {
      const layer = entry.name.slice(0, copied), param = entry.name.slice(copied + method.layerCopy!.length + 2);
      const path = `${layer.startsWith(PEFT_PREFIX) ? layer.slice(PEFT_PREFIX.length) : layer}.${param}`;
      replacements.push({ adapter: name, key: entry.name, tensor: entry, path, origin: 'saved' });
      owners.add(layer);
      continue;
    }
    const split = splitTensorName(entry.name);
    if (!split || !method.roles.includes(split.role)) {
      // Whether it lies under one of the method's modules is known once every tensor is grouped (below).
      loose.push({ entry, foreign: split !== null && split.role !== 'weight' });
      continue;
    }
    owners.add(split.module);
    const path = split.module.startsWith(PEFT_PREFIX) ? split.module.slice(PEFT_PREFIX.length) : split.module;
    let roles = groups.get(path);
    if (!roles) groups.set(path, (roles = new Map()));
    roles.set(split.role, entry);
  }
  const owning = await owningModules(loose.map((l) => l.entry.name), owners, pacer);
  for (const { entry, foreign } of loose) {
    await pacer.tick();
    const owner = owning.get(entry.name);
    if (owner !== undefined && !OWN_TENSOR.test(entry.name.slice(owner.length + 1))) {
      // Under a module the method wraps PEFT saves only the method's tensors and the layer's own
      // (`weight`, `bias`, `base_layer.…`): anything else is no model parameter either.
      const reads = `PEFT ${method.title}: ${method.endings ?? roleEndings(method.roles).join(', ')}, base_layer.weight, base_layer.bias`;
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: unknownTensorMessage(fileName, owner, entry.name, reads, owner.startsWith(PEFT_PREFIX) ? owner.slice(PEFT_PREFIX.length) : owner) });
      continue;
    }
    // Another method's adapter tensor (`lora_A.weight`, `hada_w1_a` …) is named as such, not taken
    // for a saved model parameter; a saved layer's names end in `.weight` or `.bias`.
    const saved = foreign && !/\.modules_to_save\./.test(entry.name) ? null : savedTensor(name, entry, modulesToSave);
    if (saved === 'left out') leftOut.push(entry.name);
    else if (saved) replacements.push(saved);
    else problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${entry.name}" is neither a ${type} tensor this tool understands nor listed in modules_to_save` });
  }
  let projections: RegeneratedProjections | undefined;
  if (method.shared && groups.size > 0 && Object.values(method.shared.names).some((role) => !shared.has(role))) {
    const drawn = method.shared.drawn;
    if (shared.size > 0) {
      const [held, lacked] = [Object.keys(method.shared.names).filter((n) => shared.has(method.shared!.names[n])), Object.keys(method.shared.names).filter((n) => !shared.has(method.shared!.names[n]))];
      throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: ${method.title} adapter with ${held.join(', ')} but without ${lacked.join(', ')}, which PEFT saves and loads together; save it again from PEFT`);
    }
    if (!drawn || raw.save_projection !== false) throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: ${method.shared.missing}`);
    // PEFT seeds torch.Generator("cpu").manual_seed(projection_prng_key), which takes an integer (None raises TypeError).
    const value = number('projection_prng_key', 0, 'torch.Generator().manual_seed(None) raises TypeError');
    const seed = raw.projection_prng_key === undefined ? 0 : projectionSeed(jsonNumberTexts(configText).get(jsonPath(['projection_prng_key'])) ?? String(value), `${configFile}: ${method.title} "projection_prng_key"`);
    projections = { seed, r, rows: drawn.rows * r, inMax: 0, modules: 0, names: drawn.names };
    // The algorithms build such modules without A and B, at the config's r (the projections' own).
    options.drawn_projections_r = r;
  }

  await checkPeftTargets(peftTargetsFrom(raw, configFile, type), groups.keys(), configFile, fileName, pacer);
  const allLinear = targetsAllLinear(raw);
  const modules: AdapterModule[] = [];
  let olderSeriesUsed = false;
  for (const [path, roles] of groups) {
    await pacer.tick();
    const report = (code: MergeErrorCode, message: string) => problems.push({ code, message: `${name}: module "${path}"${/^(is|has|needs) /.test(message) ? ' ' : ': '}${message}` });
    const candidates = method.algorithms.map(algorithmNamed).filter((a) => a.defines.some((role) => roles.has(role)));
    if (candidates.length === 0) {
      report('UNSUPPORTED_FORMAT', `has ${[...roles.values()].map((t) => `"${t.name}"`).join(', ')} without the ${method.algorithms.map(algorithmNamed).flatMap((a) => a.defines).join(' or ')} tensor ${type} needs`);
      continue;
    }
    if (candidates.length !== 1) {
      report('UNSUPPORTED_FORMAT', `mixes tensors of ${candidates.map((a) => a.title).join(' and ')}`);
      continue;
    }
    const algorithm = candidates[0];
    const foreign = [...roles].filter(([role]) => !algorithm.roles.includes(role));
    if (foreign.length > 0) {
      report('UNSUPPORTED_FORMAT', `is ${algorithm.title}, which does not read ${foreign.map(([, t]) => `"${t.name}"`).join(', ')}`);
      continue;
    }
    const moduleAlpha = lookupPattern(alphaPattern, path, alpha);
    const moduleRank = lookupPattern(rankPattern, path, r);
    for (const [role, t] of shared) roles.set(role, t);
    let moduleOptions: Record<string, number | boolean> = { ...options, r: moduleRank };
    if (adalora) moduleOptions = { ...moduleOptions, ...adalora(path) };
    if (feedforward) {
      const ff = feedforward(path, roles.get('ia3_l')!);
      if (typeof ff === 'string') {
        report('BAD_CONFIG', ff);
        continue;
      }
      moduleOptions = { ...moduleOptions, feedforward: ff };
    }
    const reported = problems.length;
    const module = algorithm.build(roles, { adapter: name, key: `${PEFT_PREFIX}${path}`, address: { path, flat: false }, alpha: moduleAlpha, report, options: moduleOptions });
    if (!module) {
      if (problems.length === reported) warnings.push(`${name}: module "${path}" has no update left (AdaLoRA pruned every singular value), so its weight stays as it is, as in PEFT`);
      continue;
    }
    if (projections) {
      module.projections = projections;
      projections.modules++;
    }
    if (algorithm.name === 'peft-oft' && options.older_neumann_series) olderSeriesUsed = true;
    if (algorithm.name === 'loha' || algorithm.name === 'lokr') {
      // PEFT: α/r from the config; the stored factors must have that rank where they have one.
      const stored = storedRank(module);
      if (stored !== undefined && stored !== moduleRank) {
        report('BAD_CONFIG', `has rank ${stored} but the config (${patternCovers(rankPattern, path) ? 'rank_pattern' : 'r'}) says ${moduleRank}`);
        continue;
      }
      Object.assign(module, { rank: moduleRank, alpha: moduleAlpha, scale: moduleAlpha / moduleRank, scaleOrigin: { kind: 'alpha', rule: 'α/r', stated: true } });
    }
    modules.push({
      ...module, name: path, fanInFanOut: (TRANSPOSED_UNDER_FAN_IN_FAN_OUT.includes(algorithm.name) && fanInFanOut) || module.fanInFanOut,
      ...(method.wraps ? { wraps: allLinear ? { method: `${method.title} (PEFT) under target_modules "all-linear"`, layers: method.wraps.filter((l) => ALL_LINEAR_LAYERS.includes(l)), fanInFanOutByLayer: method.fanInFanOutByLayer } : { method: `${method.title} (PEFT)`, layers: method.wraps, fanInFanOutByLayer: method.fanInFanOutByLayer } } : {}),
    });
  }
  throwIfProblems(name, problems);
  if (modules.length === 0 && replacements.length === 0) throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no ${type} tensors found`);
  if (leftOut.length > 0) {
    warnings.push(`${name}: ${leftOut.length} original_module tensor${leftOut.length === 1 ? '' : 's'} (PEFT's copy of a module before training) left out, as PEFT leaves ${leftOut.length === 1 ? 'it' : 'them'} out when merging`);
  }
  if (olderSeriesUsed) {
    warnings.push(`${name}: the config has no peft_version of 0.18 or later, so its OFT was trained by PEFT 0.16 or 0.17: merged with that PEFT's Cayley–Neumann series (I + 2Q + … + 2Q^(n−1)); PEFT 0.18 and later would apply their newer series to it`);
  }
  return { name, format: 'peft', file, modules, replacements, warnings, config: raw, configFile };
}

/**
 * The endings under a wrapped module that are the layer's own tensors, saved as they are (bias="all",
 * `base_layer.weight`), or copies PEFT keeps (`modules_to_save.<name>.…`, `original_module.…`).
 */
const OWN_TENSOR = /^((base_layer\.)*(weight|bias)|(modules_to_save|original_module)\..+)$/;

/** The rank the factors were trained at (LoHa's, or LoKr's decomposed factor); undefined for LoKr with two full factors. */
function storedRank(module: AdapterModule): number | undefined {
  const t = module.tensors;
  if (module.algorithm === 'loha') return t.w1b.shape[0];
  if (t.w1b) return t.w1b.shape[0];
  if (t.w2b) return t.w2b.shape[0];
  return undefined;
}

/**
 * The seed torch's CPU generator takes from a seed written as `text` in the config
 * (projection_prng_key, random_loc_seed):
 * manual_seed takes a Python int from −2⁶³ to 2⁶⁴ − 1 (a float, `7.0` or `1e3` as Python's json
 * reads them, raises TypeError; one past that range RuntimeError), turns a negative one into its
 * two's complement, and mt19937 keeps the low 32 bits. Read from the text: JSON.parse holds a key
 * past 2⁵³ only rounded (18446744073709551615 as 2⁶⁴) and reads `1e3` as the integer 1000.
 */
function projectionSeed(text: string, what: string): number {
  if (!/^-?(0|[1-9][0-9]*)$/.test(text)) throw new MergeError('BAD_CONFIG', `${what} must be an integer (torch.Generator().manual_seed takes one), got ${text}`);
  const key = BigInt(text);
  if (key < -(2n ** 63n) || key >= 2n ** 64n) {
    throw new MergeError('BAD_CONFIG', `${what} is ${text}, outside the −2^63 to 2^64 − 1 that torch.Generator().manual_seed takes (PEFT stops on it with a RuntimeError); give a key within it`);
  }
  return Number(BigInt.asUintN(32, key));
}

/** Whether a `peft_version` ("0.17.1", "0.18.0.dev0@abc123") is below major.minor; absent: the field came with 0.18. */
function olderThan(version: unknown, major: number, minor: number): boolean {
  if (typeof version !== 'string') return true;
  const m = /^(\d+)\.(\d+)/.exec(version.split('@')[0]);
  if (!m) return true;
  return Number(m[1]) < major || (Number(m[1]) === major && Number(m[2]) < minor);
}

/**
 * Whether an (IA)³ module scales its inputs, as PEFT decides it: `feedforward_modules` as a list
 * matches a module whose name ends with an entry, as a string it is a regex the whole name must
 * match (matched by RE2, in linear time). Without it, a Linear's ia3_l says by its shape ((1, in):
 * inputs); a conv's cannot. Returns a message when it cannot be told.
 */
function feedforwardMatcher(raw: Record<string, unknown>, configFile: string): (path: string, l: TensorEntry) => boolean | string {
  const v = raw.feedforward_modules;
  if (typeof v === 'string') {
    let re: RE2JS;
    try {
      re = RE2JS.compile(v);
    } catch (e) {
      throw new MergeError('BAD_CONFIG', `${configFile}: feedforward_modules "${v.slice(0, 80)}" is not a pattern this tool can match safely (${(e as Error).message}); lookaround and backreferences are not supported`);
    }
    return (path) => re.matches(path);
  }
  if (Array.isArray(v)) {
    if (v.some((s) => typeof s !== 'string')) throw new MergeError('BAD_CONFIG', `${configFile}: "feedforward_modules" must be a list of module names or a pattern`);
    const names = v as string[];
    return (path) => names.some((n) => path.endsWith(n));
  }
  if (v !== undefined && v !== null) throw new MergeError('BAD_CONFIG', `${configFile}: "feedforward_modules" must be a list of module names or a pattern`);
  return (_path, l) => {
    if (l.shape.length === 2 && (l.shape[0] === 1) !== (l.shape[1] === 1)) return l.shape[0] === 1;
    return 'needs feedforward_modules in the config to tell whether ia3_l scales its inputs or its outputs';
  };
}

function stringList(obj: Record<string, unknown>, key: string, file: string): string[] {
  const v = obj[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw new MergeError('BAD_CONFIG', `${file}: "${key}" must be a list of module names`);
  return v as string[];
}
