/**
 * mistral-finetune's LoRA (`lora.safetensors`, saved with `save_adapters: True`), in the model's
 * own names as Mistral's format spells them: `layers.N.attention.wq.lora_A.weight` (r, in) and
 * `lora_B.weight` (out, r), for wq, wk, wv, wo and the feed-forward w1, w2, w3 (each expert's,
 * `feed_forward.experts.K.w1`, in a mixture of experts). Its LoRALinear adds
 * `lora_B(lora_A(x)) · scaling`, no α/r: ΔW = scaling · B·A. mistral-inference's load_lora merges
 * the file so into every Linear of the decoder layers (W + (B @ A) · scaling), and so does
 * mistral-finetune's utils/merge_lora.py.
 *
 * `scaling` is the `lora.scaling` of the params.json mistral-finetune writes beside the file (the
 * model's arguments, with the LoRA's); without one, 2.0, the default of mistral-finetune's
 * LoraArgs and of mistral-inference's load_lora and merge_lora.py (mistral-chat's `--lora_path`
 * always applies that default, whatever the training used: a warning says so where they differ).
 *
 * The names are those of the checkpoint the adapter was trained on (consolidated.safetensors),
 * where they land by name; on a transformers checkpoint converted from it they land by the
 * conversion's names, wq's and wk's rows permuted as it permutes them (layouts/mistral-consolidated.ts).
 */
import { MergeError, type MergeErrorCode } from '../errors.js';
import { Pacer } from '../event-turns.js';
import { throwIfProblems } from '../plan/problems.js';
import type { AdapterModule, ParsedAdapter } from './adapter.js';
import { lora } from './algorithms/lora.js';
import { parseBoundedJson, shownValue } from './bounded-json.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

/** The file beside the LoRA that holds the training's model and LoRA arguments. */
export const MISTRAL_PARAMS = 'params.json';

/** mistral-inference's and mistral-finetune's default `scaling` (LoraArgs, load_lora, merge_lora.py). */
export const MISTRAL_DEFAULT_SCALING = 2;

/** A factor as mistral-finetune saves it: the LoRALinear's path, then `lora_A` or `lora_B`. */
const FACTOR = /^(layers\.\d+\.(?:attention\.w[qkvo]|feed_forward\.(?:experts\.\d+\.)?w[123]))\.lora_([AB])\.weight$/;

/**
 * An attention projection's factor in Mistral's names: only Mistral's (and Meta's) own format names
 * attention `wq`/`wk`/`wv`/`wo` directly under `layers.N.` (Z-Image's and Lumina 2's `layers.N.`
 * blocks share `feed_forward.w1` but name attention `to_q`, `qkv`), so such a file is this format.
 */
const ATTENTION_FACTOR = /^layers\.\d+\.attention\.w[qkvo]\.lora_[AB]\.weight$/;

/** Does the file hold a LoRA factor of an attention projection in Mistral's own names? */
export function looksLikeMistralLora(file: SafetensorsFile): boolean {
  return file.tensors.some((t) => ATTENTION_FACTOR.test(t.name));
}

type Problem = { code: MergeErrorCode; message: string };

/** The parts of params.json the merge reads: `lora.scaling` and `lora.rank`. */
interface MistralLoraArgs {
  scaling: number;
  /** `lora.rank`, which every LoRALinear of the run has; undefined where not stated. */
  rank?: number;
  /** Where the scaling came from, as module facts name it. */
  origin: string;
}

/** Reads `lora` from params.json (undefined: no params.json beside the file). */
function readLoraArgs(params: { text: string; file: string } | undefined): MistralLoraArgs | undefined {
  if (params === undefined) return undefined;
  const raw = parseBoundedJson(params.text, params.file);
  const bad = (message: string) => new MergeError('BAD_CONFIG', `${params.file}: ${message}`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('is not a JSON object');
  const loraArgs = (raw as Record<string, unknown>).lora;
  // The base model's own params.json (no LoRA arguments): the trainer's defaults hold.
  if (loraArgs === undefined) return undefined;
  if (typeof loraArgs !== 'object' || loraArgs === null || Array.isArray(loraArgs)) throw bad(`lora ${shownValue(loraArgs)} is not an object (mistral-finetune writes its LoraArgs there: rank, scaling, …)`);
  const args = loraArgs as Record<string, unknown>;
  const scaling = args.scaling ?? MISTRAL_DEFAULT_SCALING;
  // LoraArgs asserts scaling > 0 and rank > 0: a file with others was not written by a run.
  if (typeof scaling !== 'number' || !Number.isFinite(scaling) || scaling <= 0) throw bad(`lora.scaling ${shownValue(scaling)} is not a positive finite number (mistral-finetune multiplies ΔW by it)`);
  const rank = args.rank;
  if (rank !== undefined && (typeof rank !== 'number' || !Number.isSafeInteger(rank) || rank < 1)) throw bad(`lora.rank ${shownValue(rank)} is not a positive whole number`);
  return { scaling, ...(rank === undefined ? {} : { rank }), origin: args.scaling === undefined ? `the default scaling (${params.file} sets none)` : `lora.scaling of ${params.file}` };
}

/**
 * Parses mistral-finetune's `lora.safetensors`. `params` is the params.json beside it, when there
 * is one (its text and its name for messages). `pacer` is ticked once a tensor.
 */
export async function parseMistralAdapter(name: string, file: SafetensorsFile, params: { text: string; file: string } | undefined, pacer: Pacer = new Pacer()): Promise<ParsedAdapter> {
  const args = readLoraArgs(params);
  const fileName = file.source.name;
  const scaling = args?.scaling ?? MISTRAL_DEFAULT_SCALING;
  const origin = args?.origin ?? `mistral-inference's default scaling (no ${MISTRAL_PARAMS} with lora.scaling beside the file)`;
  const problems: Problem[] = [];
  const groups = new Map<string, { A?: TensorEntry; B?: TensorEntry }>();
  for (const entry of file.tensors) {
    await pacer.tick();
    const match = FACTOR.exec(entry.name);
    if (!match) {
      // mistral-inference's load_lora refuses a file with any other tensor ("lora" in every key), and
      // merge_lora.py would copy a norm over the model's: neither is a LoRA term to merge.
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${entry.name}" is not a mistral-finetune LoRA factor (layers.N.attention.wq … or feed_forward.w1 … with .lora_A.weight or .lora_B.weight)` });
      continue;
    }
    let group = groups.get(match[1]);
    if (!group) groups.set(match[1], (group = {}));
    group[match[2] as 'A' | 'B'] = entry;
  }
  const modules: AdapterModule[] = [];
  for (const [path, { A, B }] of groups) {
    const fail = (code: MergeErrorCode, message: string) => problems.push({ code, message: `${name}: module "${path}": ${message}` });
    if (!A || !B) {
      fail('UNSUPPORTED_FORMAT', `has ${(A ?? B)!.name} but no ${path}.lora_${A ? 'B' : 'A'}.weight`);
      continue;
    }
    if (A.shape.length !== 2 || B.shape.length !== 2 || B.shape[1] !== A.shape[0]) {
      fail('SHAPE_MISMATCH', `lora_B (${B.shape.join(', ')}) does not fit lora_A (${A.shape.join(', ')}) (mistral-finetune saves lora_A (r, in) and lora_B (out, r))`);
      continue;
    }
    const rank = A.shape[0];
    if (args?.rank !== undefined && rank !== args.rank) {
      fail('BAD_CONFIG', `lora_A has rank ${rank} but ${params!.file} says lora.rank ${args.rank} (mistral-finetune gives every layer that rank): the file and its params.json are not from one run`);
      continue;
    }
    modules.push({
      adapter: name,
      key: path,
      name: path,
      address: { path, flat: false },
      algorithm: lora.name,
      kind: 'linear',
      deltaShape: [B.shape[0], A.shape[1]],
      rank,
      alpha: rank,
      scale: scaling,
      scaleOrigin: { kind: 'method', what: origin },
      // lora_A (r, in) and lora_B (out, r) are LoRA's down and up as they are.
      tensors: { down: A, up: B },
      update: { kind: 'low-rank', rank },
      fanInFanOut: false,
      wraps: { method: 'LoRALinear (mistral-finetune)', layers: ['Linear'], tool: 'mistral-finetune' },
    });
  }
  throwIfProblems(name, problems);
  if (modules.length === 0) throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no LoRA tensors found`);
  const warnings = args === undefined
    ? [`${name}: no ${MISTRAL_PARAMS} with lora.scaling beside ${fileName}: merged at scaling ${MISTRAL_DEFAULT_SCALING}, mistral-finetune's default and the one mistral-inference's load_lora applies; if the run set another lora.scaling, give the folder mistral-finetune wrote, with its ${MISTRAL_PARAMS}`]
    : scaling !== MISTRAL_DEFAULT_SCALING
      ? [`${name}: merged at lora.scaling ${scaling} of ${params!.file}, as mistral-finetune trained it; mistral-chat's --lora_path applies ${MISTRAL_DEFAULT_SCALING} (load_lora's default) whatever the run set, so it runs this LoRA at another strength than the merged model has`]
      : [];
  return { name, format: 'mistral', file, modules, replacements: [], warnings, config: args === undefined ? {} : { lora: { scaling, ...(args.rank === undefined ? {} : { rank: args.rank }) } }, ...(params ? { configFile: params.file } : {}) };
}
