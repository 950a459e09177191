/**
 * mlx-lm adapters (`mlx_lm.lora`): a folder with adapter_config.json (the training arguments, as
 * lora.py saves them) and adapters.safetensors (the model's trainable parameters, by mlx-lm's
 * module paths: `model.layers.N.self_attn.q_proj.lora_a`). Merged as mlx_lm.fuse applies them
 * (tuner/utils.py load_adapters, then each layer's fuse()):
 * - `fine_tune_type` "lora": W += scale·lora_bᵀ·lora_aᵀ (algorithms/mlx-lora.ts), scale from
 *   lora_parameters.scale as it is.
 * - "dora": the same ΔW, then each row of W + ΔW is scaled to its magnitude `m` (no ε).
 * - "full": the saved tensors are the trained weights and replace the base's.
 * Configs written before fine_tune_type (mlx-lm up to September 2024) say `use_dora`. From April to
 * June 2024 mlx-lm scaled by scale·alpha/rank, later by scale alone, and such a config does not
 * say which version wrote it: one whose lora_parameters.alpha differs from rank is refused.
 * mlx-lm's module paths are its own model files'; a module lands where the same path names a base
 * tensor (Llama-like models name theirs as transformers does) and is refused by name otherwise.
 * LoRASwitchLinear on stacked experts (`switch_mlp`) lands expert by expert on the tensors mlx-lm
 * stacked them from.
 */
import { MergeError, type MergeErrorCode } from '../errors.js';
import { Pacer } from '../event-turns.js';
import { throwIfProblems } from '../plan/problems.js';
import type { AdapterModule, ModuleKind, ParsedAdapter, TensorReplacement } from './adapter.js';
import { lora } from './algorithms/lora.js';
import { mlxLora } from './algorithms/mlx-lora.js';
import { parseBoundedJson, shownValue } from './bounded-json.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

/** The file mlx_lm.fuse loads from an adapter folder. */
export const MLX_WEIGHTS = 'adapters.safetensors';
/** The trainer's checkpoints beside it (`0000100_adapters.safetensors`, trainer.py). */
export const MLX_CHECKPOINT = /(^|\/)\d{7}_adapters\.safetensors$/;

/** An mlx-lm factor or DoRA magnitude: the module path, then the parameter as mlx names it. */
const MLX_PARAMETER = /^(.+)\.(lora_a|lora_b|m)$/;

/** Embedding layers by the names mlx-lm's model files give them (LoRAEmbedding wraps these). */
const EMBEDDING_MODULE = /(^|\.)(embed_tokens|wte|wpe|embed_in|word_embeddings|tok_embeddings)$/;

/** Fields only mlx-lm's adapter_config.json has (PEFT's has peft_type and none of these). */
export function isMlxConfig(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false;
  const config = raw as Record<string, unknown>;
  if ('peft_type' in config) return false;
  return 'lora_parameters' in config || 'fine_tune_type' in config || ('num_layers' in config && 'adapter_path' in config) || 'lora_layers' in config;
}

/**
 * mlx-vlm's legacy adapter_config.json (`get_peft_model(..., legacy=True)`: `{"rank", "alpha", "dropout"}` only, its
 * LoRaLayer's `A` and `B` in adapters.safetensors), which neither PEFT nor mlx-lm writes.
 */
export function isMlxVlmLegacyConfig(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false;
  const config = raw as Record<string, unknown>;
  return !('peft_type' in config) && !('lora_parameters' in config) && typeof config.rank === 'number' && 'alpha' in config;
}

/** Tensors named as mlx-lm saves LoRA factors (lowercase `lora_a`/`lora_b`, no `.weight`). */
export function hasMlxFactorNames(file: SafetensorsFile): boolean {
  return file.tensors.some((t) => /\.lora_[ab]$/.test(t.name));
}

/**
 * Model types whose mlx-lm model file (its sanitize()) changes a checkpoint tensor's values but
 * keeps its name, so an adapter trained on mlx-lm's tensor does not apply to the checkpoint's as
 * it stands: those a LoRA on a Linear may land on, and those a full fine-tune may replace.
 */
const CHANGED_LINEAR_WEIGHTS: Readonly<Record<string, string>> = {
  gpt2: 'transposes the checkpoint\'s Conv1D weights (in, out) into Linear weights',
  falcon_h1: 'folds the attention and MLP multipliers into the projection weights',
  baichuan_m1: 'normalizes each row of lm_head',
  bailing_moe: 'normalizes each column of lm_head',
};
const CHANGED_FULL_WEIGHTS: Readonly<Record<string, string>> = {
  ...CHANGED_LINEAR_WEIGHTS,
  qwen3_next: 'adds 1 to the norm weights',
  qwen3_5: 'adds 1 to the norm weights',
  step3p5: 'adds 1 to the norm weights',
};

function refusedModelTypes(type: FineTuneType, fileName: string): Record<string, string> {
  const table = type === 'full' ? CHANGED_FULL_WEIGHTS : CHANGED_LINEAR_WEIGHTS;
  return Object.fromEntries(Object.entries(table).map(([modelType, why]) => [
    modelType, `${fileName} was trained in mlx-lm, whose ${modelType} model ${why} when it loads the checkpoint: merging it into the checkpoint's own tensors is not supported`,
  ]));
}

type FineTuneType = 'lora' | 'dora' | 'full';
type Problem = { code: MergeErrorCode; message: string };

interface MlxConfig {
  type: FineTuneType;
  rank: number;
  scale: number;
}

function readConfig(raw: Record<string, unknown>, configFile: string): MlxConfig {
  const bad = (message: string) => new MergeError('BAD_CONFIG', `${configFile}: ${message}`);
  let type: FineTuneType;
  if ('fine_tune_type' in raw) {
    const t = raw.fine_tune_type;
    if (t !== 'lora' && t !== 'dora' && t !== 'full') throw bad(`fine_tune_type ${shownValue(t)} is not one mlx-lm defines ("lora", "dora" or "full")`);
    type = t;
  } else {
    if (raw.use_dora !== undefined && typeof raw.use_dora !== 'boolean') throw bad(`use_dora ${shownValue(raw.use_dora)} is not true or false`);
    type = raw.use_dora === true ? 'dora' : 'lora';
  }
  if (type === 'full') return { type, rank: 0, scale: 1 };
  const params = raw.lora_parameters;
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw bad(`fine-tune type "${type}" needs lora_parameters (rank and scale), and it has ${params === undefined ? 'none' : shownValue(params)}`);
  }
  const p = params as Record<string, unknown>;
  const rank = p.rank;
  const scale = p.scale;
  if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 1) throw bad(`lora_parameters.rank ${shownValue(rank)} is not a positive whole number`);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw bad(`lora_parameters.scale ${shownValue(scale)} is not a finite number (mlx-lm multiplies ΔW by it)`);
  if (!('fine_tune_type' in raw) && p.alpha !== undefined && p.alpha !== rank) {
    throw bad(`lora_parameters has alpha ${shownValue(p.alpha)} beside rank ${rank}: mlx-lm from April to June 2024 scaled ΔW by scale·alpha/rank (${shownValue(scale * Number(p.alpha) / rank)}), later versions by scale alone (${shownValue(scale)}), and a config without fine_tune_type does not say which trained it; set alpha to the rank for the later rule, or scale to scale·alpha/rank and alpha to the rank for the earlier`);
  }
  return { type, rank, scale };
}

/**
 * Parses an mlx-lm adapter from its config text and its opened adapters.safetensors. `name` is
 * the folder as the user gave it; `configFile` and `file.source.name` appear in messages. `pacer`
 * is ticked once a tensor and once a module (see parsePeftAdapter).
 */
export async function parseMlxAdapter(name: string, configText: string, configFile: string, file: SafetensorsFile, pacer: Pacer = new Pacer()): Promise<ParsedAdapter> {
  const raw = parseBoundedJson(configText, configFile) as Record<string, unknown>;
  const config = readConfig(raw, configFile);
  const fileName = file.source.name;
  if (config.type === 'full') return fullAdapter(name, raw, configFile, file);

  const problems: Problem[] = [];
  const groups = new Map<string, Map<string, TensorEntry>>();
  for (const entry of file.tensors) {
    await pacer.tick();
    const match = MLX_PARAMETER.exec(entry.name);
    if (!match) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${entry.name}" is not an mlx-lm ${config.type === 'dora' ? 'DoRA' : 'LoRA'} parameter (lora_a, lora_b${config.type === 'dora' ? ' or m' : ''})` });
      continue;
    }
    let group = groups.get(match[1]);
    if (!group) groups.set(match[1], (group = new Map()));
    group.set(match[2], entry);
  }
  const modules: AdapterModule[] = [];
  for (const [path, group] of groups) {
    await pacer.tick();
    const module = buildModule(name, path, group, config, configFile, problems);
    if (module) modules.push(...[module].flat());
  }
  throwIfProblems(name, problems);
  if (modules.length === 0) throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no LoRA tensors found`);
  return { name, format: 'mlx', file, modules, replacements: [], warnings: [], config: raw, configFile, refusedModelTypes: refusedModelTypes(config.type, fileName) };
}

function buildModule(adapter: string, path: string, group: ReadonlyMap<string, TensorEntry>, config: MlxConfig, configFile: string, problems: Problem[]): AdapterModule[] | AdapterModule | null {
  const fail = (code: MergeErrorCode, message: string) => {
    problems.push({ code, message: `${adapter}: module "${path}": ${message}` });
    return null;
  };
  const loraA = group.get('lora_a');
  const loraB = group.get('lora_b');
  const magnitude = group.get('m');
  if (!loraA || !loraB) return fail('UNSUPPORTED_FORMAT', `has no ${!loraA && !loraB ? 'lora_a and lora_b' : !loraA ? 'lora_a' : 'lora_b'}`);
  if (loraA.shape.length === 3 || SWITCH_MODULE.test(path)) return switchModules(adapter, path, loraA, loraB, magnitude, config, configFile, fail);
  if (loraA.shape.length !== 2 || loraB.shape.length !== 2 || loraB.shape[0] !== loraA.shape[1]) {
    return fail('SHAPE_MISMATCH', `lora_b (${loraB.shape.join(', ')}) does not fit lora_a (${loraA.shape.join(', ')}) (mlx-lm saves lora_a (in, r) and lora_b (r, out))`);
  }
  const rank = loraA.shape[1];
  if (rank !== config.rank) return fail('BAD_CONFIG', `lora_a has rank ${rank} but ${configFile} says lora_parameters.rank ${config.rank}`);
  if (magnitude && config.type !== 'dora') return fail('BAD_CONFIG', `has a DoRA magnitude "${magnitude.name}" but ${configFile} names no DoRA fine-tune`);
  if (!magnitude && config.type === 'dora') return fail('UNSUPPORTED_FORMAT', `has no DoRA magnitude "${path}.m", which a DoRA fine-tune saves for every module`);
  const kind: ModuleKind = EMBEDDING_MODULE.test(path) ? 'embedding' : 'linear';
  // ΔW as (out, in): for an embedding, out is the embedding width and in the vocabulary.
  const [inFeatures, outFeatures] = [loraA.shape[0], loraB.shape[1]];
  if (magnitude && (magnitude.shape.length !== 1 || magnitude.shape[0] !== (kind === 'embedding' ? inFeatures : outFeatures))) {
    return fail('SHAPE_MISMATCH', `DoRA magnitude m (${magnitude.shape.join(', ')}) should hold one value per ${kind === 'embedding' ? `vocabulary row (${inFeatures})` : `output feature (${outFeatures})`}`);
  }
  const module: AdapterModule = {
    adapter,
    key: path,
    name: path,
    address: { path, flat: false },
    algorithm: mlxLora.name,
    kind,
    deltaShape: [outFeatures, inFeatures],
    rank,
    alpha: rank,
    scale: config.scale,
    scaleOrigin: { kind: 'method', what: 'lora_parameters.scale' },
    tensors: { lora_a: loraA, lora_b: loraB },
    update: { kind: 'low-rank', rank },
    fanInFanOut: false,
    // mlx-lm wraps nn.Linear as LoRALinear/DoRALinear and nn.Embedding as LoRAEmbedding/DoRAEmbedding.
    wraps: kind === 'embedding'
      ? { method: `${config.type === 'dora' ? 'DoRAEmbedding' : 'LoRAEmbedding'} (mlx-lm)`, layers: ['Embedding'], tool: 'mlx-lm' }
      : { method: `${config.type === 'dora' ? 'DoRALinear' : 'LoRALinear'} (mlx-lm)`, layers: ['Linear'], tool: 'mlx-lm' },
  };
  // DoRALinear.fuse: m / ‖W + ΔW‖ per output row; DoRAEmbedding's per vocabulary row, the input side of ΔW here.
  if (magnitude) module.dora = { magnitude, axis: kind === 'embedding' ? 'in' : 'out', epsilon: 0, weighting: 'delta' };
  return module;
}

/**
 * mlx-lm's stacked experts: `<prefix>.mlp.switch_mlp.<proj>` (Qwen-MoE, OLMoE and others, stacked
 * from `<prefix>.mlp.experts.E.<proj>`) and `<prefix>.block_sparse_moe.switch_mlp.<proj>` (Mixtral
 * and PhiMoE, from `experts.E.w1`, `w3`, `w2`), as their model files' sanitize() stack them.
 */
const SWITCH_MODULE = /^(.+)\.switch_mlp\.(gate_proj|up_proj|down_proj)$/;
/** The few model files that name SwitchGLU `experts` (Llama 4's `feed_forward.experts.gate_proj`): told by their 3-D factors. */
const SWITCH_EXPERTS_MODULE = /^(.+)\.experts\.(gate_proj|up_proj|down_proj)$/;
const MIXTRAL_EXPERT_NAMES: Readonly<Record<string, string>> = { gate_proj: 'w1', down_proj: 'w2', up_proj: 'w3' };

/**
 * LoRASwitchLinear: lora_a (E, r, in) and lora_b (E, out, r), not transposed, and
 * LoRASwitchLinear.fuse adds scale·lora_b[e]·lora_a[e] to expert e's (out, in) slice of the stacked
 * weight: one LoRA per expert, on the tensor the checkpoint stores that expert's projection in.
 */
function switchModules(
  adapter: string, path: string, loraA: TensorEntry, loraB: TensorEntry, magnitude: TensorEntry | undefined, config: MlxConfig, configFile: string,
  fail: (code: MergeErrorCode, message: string) => null,
): AdapterModule[] | null {
  const named = SWITCH_MODULE.exec(path) ?? SWITCH_EXPERTS_MODULE.exec(path);
  if (!named) return fail('UNSUPPORTED_FORMAT', `has 3-D factors (stacked experts) on a module mlx-lm's model files do not name switch_mlp.gate_proj, up_proj or down_proj (nor experts.gate_proj, up_proj or down_proj, as Llama 4's)`);
  if (magnitude) return fail('UNSUPPORTED_FORMAT', 'has a DoRA magnitude on switch_mlp, which mlx-lm does not train (LoRASwitchLinear has no DoRA)');
  // linear_to_lora_layers raises for a SwitchLinear under use_dora: such a folder loads in no mlx-lm.
  if (config.type === 'dora') return fail('UNSUPPORTED_FORMAT', `has LoRASwitchLinear factors on switch_mlp, but ${configFile} names a DoRA fine-tune, which mlx-lm refuses for switch_mlp ("SwitchLinear doesn't support DoRA yet")`);
  if (loraA.shape.length !== 3 || loraB.shape.length !== 3 || loraB.shape[0] !== loraA.shape[0] || loraB.shape[2] !== loraA.shape[1]) {
    return fail('SHAPE_MISMATCH', `lora_b (${loraB.shape.join(', ')}) does not fit lora_a (${loraA.shape.join(', ')}) (LoRASwitchLinear saves lora_a (experts, r, in) and lora_b (experts, out, r))`);
  }
  const [experts, rank, inFeatures] = loraA.shape;
  const outFeatures = loraB.shape[1];
  if (rank !== config.rank) return fail('BAD_CONFIG', `lora_a has rank ${rank} but ${configFile} says lora_parameters.rank ${config.rank}`);
  const [, prefix, proj] = named;
  const mixtral = /(^|\.)block_sparse_moe$/.test(prefix);
  const slice = (t: TensorEntry, e: number, shape: number[]): TensorEntry => {
    const bytes = t.byteLength / experts;
    return { name: `${t.name}[${e}]`, dtype: t.dtype, shape, offset: t.offset + e * bytes, byteLength: bytes };
  };
  return Array.from({ length: experts }, (_, e): AdapterModule => {
    const expertPath = `${prefix}.experts.${e}.${mixtral ? MIXTRAL_EXPERT_NAMES[proj] : proj}`;
    return {
      adapter,
      key: `${path}[${e}]`,
      // Messages name the expert and the checkpoint tensor it was looked for on.
      name: `${path} expert ${e} (${expertPath})`,
      address: { path: expertPath, flat: false, experts: { count: experts, module: path } },
      algorithm: lora.name,
      kind: 'linear',
      deltaShape: [outFeatures, inFeatures],
      rank,
      alpha: rank,
      scale: config.scale,
      scaleOrigin: { kind: 'method', what: 'lora_parameters.scale' },
      // lora_a[e] (r, in) and lora_b[e] (out, r) are LoRA's down and up as they are.
      tensors: { down: slice(loraA, e, [rank, inFeatures]), up: slice(loraB, e, [outFeatures, rank]) },
      update: { kind: 'low-rank', rank },
      fanInFanOut: false,
      wraps: { method: 'LoRASwitchLinear (mlx-lm)', layers: ['Linear'], tool: 'mlx-lm' },
    };
  });
}

/** fine_tune_type "full": the trained layers' parameters, saved whole, replace the base's. */
function fullAdapter(name: string, raw: Record<string, unknown>, configFile: string, file: SafetensorsFile): ParsedAdapter {
  const problems: Problem[] = [];
  const replacements: TensorReplacement[] = [];
  for (const entry of file.tensors) {
    if (/\.lora_[ab]$/.test(entry.name)) {
      problems.push({ code: 'BAD_CONFIG', message: `${file.source.name}: tensor "${entry.name}" is a LoRA factor but ${configFile} says fine_tune_type "full"` });
      continue;
    }
    replacements.push({ adapter: name, key: entry.name, tensor: entry, path: entry.name, origin: 'saved' });
  }
  throwIfProblems(name, problems);
  if (replacements.length === 0) throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: holds no tensors`);
  return { name, format: 'mlx', file, modules: [], replacements, warnings: [], config: raw, configFile, refusedModelTypes: refusedModelTypes('full', file.source.name) };
}
