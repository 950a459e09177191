/**
 * Adapters as the plan sees them, whatever file format they came from: a list of low-rank modules
 * (factors still in the file, only their headers read) plus full tensors that replace base tensors.
 */
import { MergeError } from '../errors.js';
import type { InputFileSet } from '../io/types.js';
import { looksLikeKohya, parseKohyaAdapter } from './kohya.js';
import { parsePeftAdapter } from './peft.js';
import { openSafetensors } from './safetensors-reader.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

/** The trainer family an adapter file comes from. */
export type AdapterFormat = 'peft' | 'kohya';

/** What kind of base layer a module adapts; decides how ΔW lines up with the stored weight. */
export type ModuleKind = 'linear' | 'embedding' | 'conv';

/** Which model part a kohya module belongs to (from its `lora_unet_` / `lora_te1_` ... prefix). */
export type KohyaPart = 'unet' | 'te' | 'te1' | 'te2' | 'te3';

/**
 * How to find a module's base tensor.
 * - `peft`: the module path inside the model (`model.layers.0.self_attn.q_proj`), dots intact.
 * - `kohya`: the path with dots flattened to `_` (`down_blocks_0_attentions_0_proj_in`), plus the
 *   model part, which breaks ties when several parts share a suffix.
 */
export type ModuleTarget =
  | { scheme: 'peft'; path: string }
  | { scheme: 'kohya'; flatName: string; part: KohyaPart };

/** DoRA magnitude as stored: one norm per output feature (PEFT) or per input feature (LyCORIS). */
export interface DoraFactor {
  magnitude: TensorEntry;
  /** Axis of ΔW = B·A (out × in) that has one magnitude per index. */
  axis: 'out' | 'in';
  /** Added to each norm before dividing. */
  epsilon: number;
}

/** One adapted module: its factors, rank, α and scale, and what it targets. */
export interface LoraModule {
  /** The adapter's folder or file name, for messages. */
  adapter: string;
  /** The module as named in the file (`base_model.model.x.q_proj`, `lora_unet_x_proj_in`). */
  key: string;
  kind: ModuleKind;
  /** A: (r, in) or (r, in, k...) for convs; for PEFT embeddings (r, vocab). */
  a: TensorEntry;
  /** B: (out, r) or (out, r, 1...) for convs; for PEFT embeddings (dim, r). */
  b: TensorEntry;
  rank: number;
  alpha: number;
  /** α/r, or α/√r with rsLoRA; the user's weight is not included. */
  scale: number;
  /** The base stores this weight transposed, (in, out): GPT-2 Conv1D under PEFT's fan_in_fan_out. */
  fanInFanOut: boolean;
  dora?: DoraFactor;
  /** PEFT `lora_bias`: the base bias gains scale · biasB. */
  biasB?: TensorEntry;
  /**
   * LyCORIS LoHa: ΔW = (B·A) ⊙ (b2·a2), with B, A = hada_w1_a, hada_w1_b and b2, a2 = hada_w2_a,
   * hada_w2_b. `rank` (for α/r) is A's; the executor sees the exact rank-r·r2 product of the
   * factors' Khatri–Rao products.
   */
  hadamard?: { a2: TensorEntry; b2: TensorEntry };
  target: ModuleTarget;
}

/** A full tensor that replaces a base tensor (PEFT `modules_to_save`). */
export interface TensorReplacement {
  adapter: string;
  /** Tensor name in the adapter file. */
  key: string;
  tensor: TensorEntry;
  /** Module path plus parameter (`score.weight`), resolved like a PEFT module path. */
  target: ModuleTarget;
}

/** An adapter opened for merging: its modules, replacements and warnings. */
export interface ParsedAdapter {
  /** Folder or file as the user named it. */
  name: string;
  format: AdapterFormat;
  file: SafetensorsFile;
  modules: LoraModule[];
  replacements: TensorReplacement[];
  /** Things the user should know that do not stop the merge (PiSSA init, ignored metadata ...). */
  warnings: string[];
  /** PEFT: the parsed adapter_config.json. kohya: the file's `ss_*` training metadata. */
  config: Readonly<Record<string, unknown>>;
}

// --- opening ---------------------------------------------------------------------------------

const PEFT_CONFIG = 'adapter_config.json';
const PEFT_WEIGHTS = 'adapter_model.safetensors';
/** Pickle-based checkpoints: opening one could run code, so they are refused, never read. */
const PICKLE_FILE = /\.(bin|pt|pth|ckpt|pkl)$/i;

/**
 * Opens an adapter as the user gave it and detects its format: a PEFT folder (adapter_config.json
 * + adapter_model.safetensors) or one kohya/LyCORIS .safetensors file. The caller owns the result
 * and closes `file.source` when done.
 */
export async function openAdapter(files: InputFileSet): Promise<ParsedAdapter> {
  const list = files.list();
  const configPath = findByBaseName(list, PEFT_CONFIG);
  if (configPath !== undefined) {
    const dir = configPath.slice(0, configPath.length - PEFT_CONFIG.length);
    const weights = list.find((p) => p === dir + PEFT_WEIGHTS);
    if (weights === undefined) {
      const pickle = list.find((p) => p.startsWith(dir) && PICKLE_FILE.test(p));
      if (pickle !== undefined) throw pickleRefused(files.name, pickle);
      throw new MergeError('NOT_FOUND', `${files.name}: has ${PEFT_CONFIG} but no ${PEFT_WEIGHTS}`);
    }
    const configText = await files.readText(configPath);
    return withFile(files, weights, (file) => parsePeftAdapter(files.name, configText, `${files.name}/${configPath}`, file));
  }

  const tensorFiles = list.filter((p) => p.toLowerCase().endsWith('.safetensors'));
  if (tensorFiles.length === 0) {
    const pickle = list.find((p) => PICKLE_FILE.test(p));
    if (pickle !== undefined) throw pickleRefused(files.name, pickle);
    throw new MergeError('NOT_FOUND', `${files.name}: no adapter found (expected ${PEFT_CONFIG} + ${PEFT_WEIGHTS}, or a kohya .safetensors file)`);
  }
  if (tensorFiles.length > 1) {
    throw new MergeError('BAD_ARGUMENT', `${files.name}: holds ${tensorFiles.length} .safetensors files and no ${PEFT_CONFIG}; name the adapter file itself`);
  }
  return withFile(files, tensorFiles[0], async (file) => {
    if (looksLikeKohya(file)) return parseKohyaAdapter(files.name, file);
    if (file.tensors.some((t) => /\.lora_[AB]\./.test(t.name) || /\.lora_embedding_[AB]/.test(t.name))) {
      throw new MergeError('BAD_CONFIG', `${files.name}: looks like a PEFT adapter but ${PEFT_CONFIG} is missing (it holds r and lora_alpha)`);
    }
    throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: not a LoRA adapter this tool recognises (no lora_unet_/lora_te_ or PEFT lora_A/lora_B tensors)`);
  });
}

/** Opens one file, hands it to `parse`, and closes it again if parsing fails. */
async function withFile(
  files: InputFileSet, path: string, parse: (file: SafetensorsFile) => ParsedAdapter | Promise<ParsedAdapter>,
): Promise<ParsedAdapter> {
  const source = await files.open(path);
  try {
    return await parse(await openSafetensors(source));
  } catch (e) {
    await source.close().catch(() => undefined);
    throw e;
  }
}

/** The shallowest path whose last segment is `base` (a folder may hold the adapter one level down). */
function findByBaseName(list: readonly string[], base: string): string | undefined {
  const hits = list.filter((p) => p === base || p.endsWith(`/${base}`));
  hits.sort((a, b) => a.split('/').length - b.split('/').length);
  return hits[0];
}

function pickleRefused(name: string, path: string): MergeError {
  return new MergeError('PICKLE_REFUSED', `${name}/${path}: pickle checkpoints are refused (loading one can run arbitrary code); convert it to .safetensors first`);
}
