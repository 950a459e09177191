/**
 * Adapters as the plan sees them, whatever file format they came from: a list of low-rank modules
 * (factors still in the file, only their headers read) plus full tensors that replace base tensors.
 */
import { fromKnownAdapter } from './known-adapter.js';
import { MergeError, type MergeErrorCode } from '../errors.js';
import { Pacer } from '../event-turns.js';
import type { InputFileSet } from '../io/types.js';
import type { UpdateShape } from './algorithms/algorithm.js';
import type { RegeneratedProjections } from './algorithms/shared-projections.js';
import type { ModuleAddress } from './module-address.js';
import { parseGgufAdapter } from './gguf/gguf-adapter.js';
import { parsePeftAdapter } from './peft.js';
import { openSafetensors } from './safetensors-reader.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';
import { LORA_ADAPTER_METADATA } from './diffusers-metadata.js';
import { isSingleFileAdapterThroughout, looksLikeSingleFileAdapter, parseSingleFileAdapter } from './single-file-adapter.js';
import { parseBoundedJson } from './bounded-json.js';
import { hasMlxFactorNames, isMlxConfig, isMlxVlmLegacyConfig, MLX_CHECKPOINT, MLX_WEIGHTS, parseMlxAdapter } from './mlx-lm.js';
import { archiveRefusal, configFileRefusal, pathIn } from './foreign-file.js';
import { looksLikeMistralLora, MISTRAL_PARAMS, parseMistralAdapter } from './mistral-finetune.js';
import { isBareKandinsky5Lora, KANDINSKY5_LORA_CONFIG, kandinsky5WithoutConfig, looksLikeKandinsky5Lora } from './kandinsky5-lora.js';

export type { ModelPart, ModuleAddress } from './module-address.js';
export type { UpdateShape } from './algorithms/algorithm.js';

/**
 * Whose naming an adapter follows: a PEFT folder, a single file in kohya's, diffusers', XLabs' or
 * ComfyUI's, a llama.cpp LoRA GGUF, an mlx-lm adapter folder, or mistral-finetune's lora.safetensors.
 */
export type AdapterFormat = 'peft' | 'kohya' | 'diffusers' | 'xlabs' | 'comfyui' | 'gguf' | 'mlx' | 'mistral';

/** How users know each format, for messages and pages. */
export const ADAPTER_FORMAT_NAMES: Readonly<Record<AdapterFormat, string>> = {
  peft: 'PEFT', kohya: 'kohya/LyCORIS', diffusers: 'diffusers', xlabs: 'XLabs', comfyui: 'ComfyUI', gguf: 'llama.cpp GGUF', mlx: 'mlx-lm', mistral: 'mistral-finetune',
};

/** What kind of base layer a module adapts; decides how ΔW lines up with the stored weight. */
export type ModuleKind = 'linear' | 'embedding' | 'conv';

/** A kind of layer a training tool wraps, by its PyTorch (or transformers) class name. */
export type LayerClass = 'Linear' | 'Conv1D' | 'Conv1d' | 'Conv2d' | 'Conv3d' | 'Embedding';

/** DoRA magnitude as stored: one norm per output feature (PEFT) or per input feature (LyCORIS). */
export interface DoraFactor {
  magnitude: TensorEntry;
  /** Axis of ΔW (out × in) that has one magnitude per index. */
  axis: 'out' | 'in';
  /** Added to each norm before dividing. */
  epsilon: number;
  /**
   * Where a user weight s ≠ 1 goes: `delta` scales ΔW before the norm is taken (PEFT's scaling);
   * `factor` keeps ΔW whole and moves the factor m / ‖V‖ toward 1, W' = V·(s·(m / ‖V‖ − 1) + 1)
   * (LyCORIS's apply_weight_decompose since 2024, in its merge and its forward pass alike).
   */
  weighting: 'delta' | 'factor';
  /** Each norm is raised to at least this before dividing (blissful-tuner's clamp_min(1e-6)); absent: none. */
  normFloor?: number;
  /** At user weight 0 the tool leaves the weight as it is, the magnitude unapplied (blissful-tuner's merge_to). */
  noneAtWeightZero?: boolean;
}

/**
 * Where a module's scale comes from:
 * - `alpha`: α from the file or its config, divided as `rule` words it (`α/r`, `α/√r`,
 *   `α/(r + h)`); `stated` false where the file states no α and α = r is taken (scale 1).
 * - `method`: a factor the method itself defines, `what` words it (C3A's `1/in`).
 */
export type ScaleOrigin =
  | { kind: 'alpha'; rule: string; stated: boolean }
  | { kind: 'method'; what: string };

/**
 * One module of an adapter, as an algorithm (formats/algorithms/) built it from the file's
 * headers: what ΔW it makes, at which scale, from which tensors. Where it lands in the base is
 * the layouts' business (formats/layouts/), from `address`.
 */
export interface AdapterModule {
  /** The adapter's folder or file name, for messages. */
  adapter: string;
  /** The module as named in the file (`base_model.model.x.q_proj`, `lora_unet_x_proj_in`). */
  key: string;
  /** The name users know it by: PEFT's module path, else `key`. */
  name: string;
  /** The part and path its name states. */
  address: ModuleAddress;
  /** The registry name of the algorithm that reads it (`lora`, `loha`, …). */
  algorithm: string;
  kind: ModuleKind;
  /**
   * ΔW's shape as the update produces it: (out, in) or (out, in, k…) for convs (LyCORIS may store a
   * conv's inputs flattened: (out, in·kh·kw)). Row o of ΔW is output feature o.
   */
  deltaShape: number[];
  /** The rank in α/r. */
  rank: number;
  alpha: number;
  /** α/r, or α/√r with rsLoRA; the user's weight is not included. */
  scale: number;
  /**
   * What `scale` is, for the facts users read (the page's cards, the CLI's plan and inspect). Absent:
   * the method has no scale of its own, and `alpha` and `scale` are placeholders (1) or `alpha` is a
   * setting that scales nothing (LyCORIS OFT's constraint).
   */
  scaleOrigin?: ScaleOrigin;
  /** The tensors the update is read from, by the algorithm's own names. */
  tensors: Readonly<Record<string, TensorEntry>>;
  /** The term the engine will get (its kind and the rank it runs at). */
  update: UpdateShape;
  /** The base stores this weight transposed, (in, out): GPT-2 Conv1D under PEFT's fan_in_fan_out. */
  fanInFanOut: boolean;
  dora?: DoraFactor;
  /** VeRA's or PVeRA's shared projections where the file has none (save_projection: false): drawn as PEFT draws them, shared by the adapter's modules. */
  projections?: RegeneratedProjections;
  /** PEFT `lora_bias`, ComfyUI's `diff_b`: the base bias gains user weight · (biasBScale ?? scale) · biasB. */
  biasB?: TensorEntry;
  /** biasB's own scale where it is not the module's: ComfyUI's `diff_b` takes the strength alone (1), not α/r. */
  biasBScale?: number;
  /** PEFT (IA)³ on the outputs: the base bias, where there is one, is scaled by these factors (1 + w·(f − 1) for user weight w). */
  biasScale?: TensorEntry;
  /**
   * PEFT RoAd: the module's map of the outputs applies to the base bias too, where there is one
   * (R·b, with 1 + w·(R − 1) for user weight w); the tensor named is one the map is read from.
   */
  biasMap?: TensorEntry;
  /**
   * PEFT GLoRA's bias path: the base bias b becomes b + w·(b ⊙ D + E + W·C) for user weight w, W the
   * layer's weight before the merge; the tensor named is one of the path's (for messages), the
   * algorithm forms D, E and C (formats/algorithms/peft-glora.ts gloraBiasPath).
   */
  gloraBias?: TensorEntry;
  /**
   * PEFT `target_parameters` on a fused 3-D expert tensor (E, d1, d2): `down` is (rank·E, ·),
   * grouped by expert, `up` is (·, rank·E), interleaved; each expert's ΔW = up_e·down_e lands on
   * its own slice (the plan decides which axis is which, formats/fused-experts.ts). `converted`:
   * PEFT's conversion of a per-expert adapter for transformers 5 wrote these factors, laid out for
   * W[e] += up_e·down_e whatever peft_version says (formats/peft-parameters.ts). `maybeConverted`:
   * a `down_proj` named bare in target_parameters, as that conversion writes it, with no other mark
   * of it, so the factors may be laid out either way where the version says (B_e·A_e)ᵀ.
   */
  experts?: { count: number; peftVersion: string | null; converted?: true; maybeConverted?: true };
  /** Settings of the training method that the update depends on (PEFT OFT's Cayley form, …). */
  options?: Readonly<Record<string, number | boolean>>;
  /**
   * The tool that reads the file (`tool`) applies the user's weight w twice to this module's
   * update, as `rule` words it, so it merges at w² (ComfyUI's OFT: W + w·(w·R − w·I)ᵀ·W): weight
   * 0.5 gives a quarter of the change, and −w the same as w. Its bias change (`biasB`) still takes w once.
   */
  weightSquared?: { tool: string; rule: string };
  /**
   * Its α was read by diffusers' FLUX.1 rule (FluxLoraLoaderMixin: the file's names are FLUX.1's in
   * diffusers' form), which holds only where the base is FLUX.1 (or Chroma). HunyuanVideo and FLUX.2
   * share those names, and their diffusers loaders read no `.alpha` (they refuse such a file): on
   * those bases the module takes the α and scale held here, the single-file rule every other
   * model's diffusers-named `.alpha` follows (its own `.alpha` over its rank; none: scale 1).
   */
  diffusersFluxAlpha?: { alpha: number; scale: number; scaleOrigin?: ScaleOrigin };
  /**
   * The α and scale diffusers' MiniMaxH3LoraLoaderMixin gives it (the file's `__metadata__` `alpha` over its
   * rank), where every module of the file has a name MiniMax-H3 shares with other models (PixArt's and
   * HunyuanDiT's `blocks.N.mlp.fc1`, minimax-h3-file.ts), whose loaders read no metadata α: the module holds the
   * single-file rule's α and scale, and takes these only where the base is MiniMax-H3's (the plan).
   */
  minimaxH3Alpha?: { alpha: number; scale: number; scaleOrigin?: ScaleOrigin };
  /**
   * The layers the method that trained this module can wrap (PEFT's dispatch for it), and the
   * method's name: a base tensor of another kind of layer was not trained so, and is refused.
   * Absent: the method wraps every kind the plan can tell apart. `fanInFanOutByLayer`: its
   * dispatcher sets fan_in_fan_out by the layer's class whatever the config says (with a warning):
   * on for transformers' Conv1D, off for nn.Linear. `tool`: the training tool, for messages (PEFT when absent).
   */
  wraps?: { method: string; layers: readonly LayerClass[]; fanInFanOutByLayer?: boolean; tool?: string };
  /**
   * The base weight (out, in) is zero-padded to this many input columns before the update is added
   * (ComfyUI's `reshape_weight`, diffusers' expanded `x_embedder`): BFL's FLUX.1 control LoRAs widen
   * `img_in` from 64 to 128 inputs, so the merged tensor is wider than the base's.
   */
  widenBaseTo?: number;
  /**
   * The shape ComfyUI's `reshape_weight` pads the base weight to (zeros at the end of each
   * dimension) before the update is added; `widenBaseTo` is then its sizes after the first. The plan
   * checks it against the base (algorithms/reshape-weight.ts).
   */
  reshapeTo?: readonly number[];
  /** Integer tensors the update reads besides its float ones (SHiRA's element positions); the float checks skip them. */
  positions?: TensorEntry;
  /** Other integer tensors the update reads, by the algorithm's own names (VB-LoRA's saved top-k indices); the float checks skip them too. */
  integerTensors?: Readonly<Record<string, TensorEntry>>;
}

/**
 * A full tensor that replaces a base tensor: a module trained whole (PEFT `modules_to_save`), or
 * a base weight saved with the adapter (`<module>.base_layer.weight|bias`, saved embedding layers,
 * `bias="all"` biases), which the adapter's own LoRA terms on that tensor are added to.
 */
export interface TensorReplacement {
  adapter: string;
  /** Tensor name in the adapter file. */
  key: string;
  tensor: TensorEntry;
  /** Module path plus parameter (`score.weight`), resolved like a PEFT module path. */
  path: string;
  /** A `set_weight`'s module as its name states it: placed by the layouts, like a diff of that module. */
  address?: ModuleAddress;
  /**
   * `modules_to_save`, a saved base weight (`base_layer`, a saved embedding or bias), or ComfyUI's
   * `set_weight` (copied over the tensor whatever the weight; nothing else may change that tensor).
   */
  origin?: 'modules_to_save' | 'base_layer' | 'saved' | 'set_weight';
}

/** PEFT trainable tokens: rows `indices` of a base tensor are set to the rows of `delta`. */
export interface TokenRows {
  adapter: string;
  /** Tensor name in the adapter file. */
  key: string;
  delta: TensorEntry;
  /** The embedding's weight (`model.embed_tokens.weight`), resolved like a PEFT module path. */
  path: string;
  indices: readonly number[];
}

/** An adapter opened for merging: its modules, replacements and warnings. */
export interface ParsedAdapter {
  /** Folder or file as the user named it. */
  name: string;
  format: AdapterFormat;
  file: SafetensorsFile;
  modules: AdapterModule[];
  replacements: TensorReplacement[];
  /** PEFT trainable tokens (absent for formats without them). */
  tokenRows?: TokenRows[];
  /** Things the user should know that do not stop the merge (PiSSA init, ignored metadata ...). */
  warnings: string[];
  /** PEFT: the parsed adapter_config.json. Single files: kohya's `ss_*` training metadata and diffusers' lora_adapter_metadata. */
  config: Readonly<Record<string, unknown>>;
  /** PEFT: where adapter_config.json was read, as messages name it. */
  configFile?: string;
  /**
   * Bases this adapter cannot go into at all, by config.json `model_type`, each with the one-line
   * reason: mlx-lm's module paths name the checkpoint's tensors, but for some models its loader
   * changes their values first (formats/mlx-lm.ts).
   */
  refusedModelTypes?: Readonly<Record<string, string>>;
  /**
   * Why diffusers' FLUX.1 loader cannot load this file (an integer or float8 `.alpha`, alphas beside
   * lora_adapter_metadata: diffusers-flux-alphas.ts), left for the plan when opened with
   * `baseDecides`: it holds on a FLUX.1 base, not on the bases that share FLUX.1's names
   * (flux1NamesSharedBy), where the modules take the single-file rule's α they hold.
   */
  flux1Refusal?: { code: MergeErrorCode; message: string };
  /**
   * The q/k norm weights in diffusers' FLUX.1 names this file replaces (`transformer.transformer_blocks.0.attn.norm_q.weight`:
   * bfl-control-lora.ts readDiffusersControlNorms), which only diffusers' FLUX.1 loader loads; the plan
   * refuses them on the bases that share FLUX.1's names (flux1NamesSharedBy), whose loaders do not.
   */
  flux1Norms?: readonly string[];
  /**
   * A file in the names MiniMax-H3 shares with other models whose `__metadata__` `alpha` is no number:
   * diffusers' MiniMax-H3 loader's refusal, which the plan makes only where the base is MiniMax-H3's.
   */
  minimaxH3Refusal?: { code: MergeErrorCode; message: string };
}

/** How {@link openAdapter} reads an adapter. */
export interface OpenAdapterOptions {
  /**
   * The base is known and the plan will see the adapter: refusals that hold on some bases only
   * (ParsedAdapter.flux1Refusal) are left to it. Without it (inspect, the adapter jobs) the file is
   * read as the model its names say first (FLUX.1) and such a refusal is raised here; a file whose
   * meaning no name says (a `__metadata__` `alpha` over names MiniMax-H3 shares with other models) is refused.
   */
  baseDecides?: boolean;
  /**
   * How a OneTrainer OFT file saved without its training config (`ot_config`) by a OneTrainer that
   * had COFT (14 November 2025 – 10 May 2026) was trained: false, COFT off; true, on at OneTrainer's
   * default coft_eps (1e-4); a number, on at that coft_eps. A file's own `ot_config` wins.
   */
  oneTrainerCoft?: boolean | number;
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
export async function openAdapter(files: InputFileSet, pacer: Pacer = new Pacer(), options: OpenAdapterOptions = {}): Promise<ParsedAdapter> {
  const list = files.list();
  const configs = shallowestByBaseName(list, PEFT_CONFIG);
  // A trainer's output folder holds one adapter per checkpoint (checkpoint-500/, checkpoint-1000/):
  // which one is meant cannot be told, and picking by listing order would merge either silently.
  if (configs.length > 1) {
    const folders = configs.map((p) => p.slice(0, -PEFT_CONFIG.length - 1)).sort();
    throw new MergeError('BAD_ARGUMENT', `${files.name}: holds ${configs.length} adapters side by side (${folders.slice(0, 3).join(', ')}${folders.length > 3 ? ', …' : ''}); give the folder of the one to merge`);
  }
  const configPath = configs[0];
  if (configPath !== undefined) {
    const dir = configPath.slice(0, configPath.length - PEFT_CONFIG.length);
    const configText = await files.readText(configPath);
    // A Hub adapter's config is named by its own URL, not by the URL given with its path after it.
    const configFile = files.fileName?.(configPath) ?? `${files.name}/${configPath}`;
    if (isMlxConfig(parseBoundedJson(configText, configFile))) {
      const mlxWeights = list.find((p) => p === dir + MLX_WEIGHTS);
      if (mlxWeights === undefined) {
        const checkpoints = list.filter((p) => p.startsWith(dir) && MLX_CHECKPOINT.test(p));
        throw new MergeError('NOT_FOUND', configFileRefusal(files.name, list) ?? `${files.name}: an mlx-lm adapter folder without ${MLX_WEIGHTS}${checkpoints.length > 0 ? ` (it has checkpoints such as ${checkpoints[0].slice(dir.length)}: copy the one to merge to ${MLX_WEIGHTS}, which is the file mlx_lm.fuse reads)` : ''}`);
      }
      return withFile(files, mlxWeights, pacer, (file) => parseMlxAdapter(files.name, configText, configFile, file, pacer)).catch((e: unknown) => { throw fromKnownAdapter(e); });
    }
    const weights = list.find((p) => p === dir + PEFT_WEIGHTS);
    if (weights === undefined && list.includes(dir + MLX_WEIGHTS) && isMlxVlmLegacyConfig(parseBoundedJson(configText, configFile))) {
      // mlx-vlm's first LoRA trainer: LoRaLayer's A (in, r) and B (r, out), ΔW = alpha / rank · (A·B)ᵀ in its forward,
      // which its own merge (replace_lora_with_linear) adds untransposed: no merge of it is the tool's.
      throw new MergeError('UNSUPPORTED_FORMAT', `${files.name}: an mlx-vlm LoRA folder in its legacy form (${configFile} with rank and alpha, no lora_parameters; ${MLX_WEIGHTS} with LoRaLayer's A and B) is not supported: mlx-vlm's own merge of it (replace_lora_with_linear) adds A·B untransposed, not the alpha / rank · (A·B)ᵀ its forward adds; adapters of a current mlx_vlm.lora (lora_parameters, lora_a / lora_b) are read as mlx-lm's`);
    }
    if (weights === undefined) {
      const pickle = list.find((p) => p.startsWith(dir) && PICKLE_FILE.test(p));
      if (pickle !== undefined) throw pickleRefused(files.name, pickle);
      throw new MergeError('NOT_FOUND', configFileRefusal(files.name, list) ?? `${files.name}: has ${PEFT_CONFIG} but no ${PEFT_WEIGHTS}`);
    }
    return withFile(files, weights, pacer, (file) => parsePeftAdapter(files.name, configText, configFile, file, pacer)).catch((e: unknown) => { throw fromKnownAdapter(e); });
  }

  const tensorFiles = list.filter((p) => p.toLowerCase().endsWith('.safetensors'));
  const ggufFiles = list.filter((p) => p.toLowerCase().endsWith('.gguf'));
  if (tensorFiles.length === 0 && ggufFiles.length === 1) {
    const source = await files.open(ggufFiles[0]);
    return parseGgufAdapter(files.name, source, pacer).catch(async (e: unknown) => {
      await source.close().catch(() => undefined);
      throw e;
    });
  }
  if (tensorFiles.length === 0) {
    const pickle = list.find((p) => PICKLE_FILE.test(p));
    if (pickle !== undefined) throw pickleRefused(files.name, pickle);
    const archive = list.length === 1 ? archiveRefusal(files.name, list[0]) : undefined;
    if (archive) throw new MergeError('NOT_FOUND', archive);
    throw new MergeError('NOT_FOUND', `${files.name}: no adapter found (expected ${PEFT_CONFIG} + ${PEFT_WEIGHTS}, or a kohya .safetensors file)`);
  }
  const mlxFile = tensorFiles.find((p) => p === MLX_WEIGHTS || p.endsWith(`/${MLX_WEIGHTS}`) || MLX_CHECKPOINT.test(p));
  if (mlxFile !== undefined) throw mlxWithoutConfig(files.name, mlxFile);
  if (tensorFiles.length > 1) {
    throw new MergeError('BAD_ARGUMENT', `${files.name}: holds ${tensorFiles.length} .safetensors files and no ${PEFT_CONFIG}; name the adapter file itself`);
  }
  return withFile(files, tensorFiles[0], pacer, async (file) => {
    // kandinskylab's Kandinsky 5 LoRA with the config_lora.json its load_adapter reads (kandinsky5-lora.ts).
    const kandinskyConfig = tensorFiles[0].slice(0, tensorFiles[0].lastIndexOf('/') + 1) + KANDINSKY5_LORA_CONFIG;
    if (list.includes(kandinskyConfig) && looksLikeKandinsky5Lora(file)) {
      const configFile = files.fileName?.(kandinskyConfig) ?? `${files.name}/${kandinskyConfig}`;
      return parsePeftAdapter(files.name, await files.readText(kandinskyConfig), configFile, file, pacer).catch((e: unknown) => { throw fromKnownAdapter(e); });
    }
    // A PEFT save without its config: α and r are only in adapter_config.json. Diffusion models'
    // are read as diffusers reads them (a lone file, scale 1: see DIFFUSION_PEFT_SAVE).
    const peftSave = file.tensors.length > 0 && file.tensors.every((t) => t.name.startsWith('base_model.model.'))
      && !(LORA_ADAPTER_METADATA in file.metadata) && !isDiffusionPeftSave(file.tensors.map((t) => t.name));
    if (peftSave || file.tensors.some((t) => /\.lora_embedding_[AB]/.test(t.name))) {
      throw new MergeError('BAD_CONFIG', `${files.name}: looks like a PEFT adapter but ${PEFT_CONFIG} is missing (it holds r and lora_alpha)`);
    }
    if (hasMlxFactorNames(file)) throw mlxWithoutConfig(files.name, file.source.name);
    // mistral-finetune's lora.safetensors, with the params.json it writes beside it (its scaling).
    if (looksLikeMistralLora(file)) {
      const paramsPath = tensorFiles[0].slice(0, tensorFiles[0].lastIndexOf('/') + 1) + MISTRAL_PARAMS;
      const params = list.includes(paramsPath) ? { text: await files.readText(paramsPath), file: files.fileName?.(paramsPath) ?? `${files.name}/${paramsPath}` } : undefined;
      return parseMistralAdapter(files.name, file, params, pacer).catch((e: unknown) => { throw fromKnownAdapter(e); });
    }
    if (looksLikeSingleFileAdapter(file)) {
      const parsed = await parseSingleFileAdapter(files.name, file, pacer, options).catch((e: unknown) => { throw isSingleFileAdapterThroughout(file) ? fromKnownAdapter(e) : e; });
      if (isBareKandinsky5Lora(file)) parsed.warnings.push(kandinsky5WithoutConfig(files.name));
      return parsed;
    }
    // The base model picked as an adapter too, or in its place, is the likeliest such file.
    const model = file.tensors.length > 0 && file.tensors.every((t) => /\.(weight|bias)$/.test(t.name));
    const hint = model ? `; it holds a model's weights (${file.tensors.length} tensors such as ${file.tensors[0].name}): is it the base model, given as an adapter?` : '';
    throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: not a LoRA adapter this tool recognises (no lora_up/lora_down, lora_A/lora_B or LyCORIS tensors)${hint}`);
  });
}

/**
 * A lone `base_model.model.` file of a diffusion transformer in its single-file naming (fal's
 * FLUX.1 Kontext LoRAs; FLUX.2's and others' PEFT saves): diffusers reads these without a config,
 * as `diffusion_model.` + the name at α = r, scale 1 (_convert_fal_kontext_lora_to_diffusers, and
 * the FLUX.2 loader's "PEFT format" branch). Names are FLUX.1's and FLUX.2's BFL blocks and
 * embedders, which no transformers model has at its top level.
 */
const DIFFUSION_PEFT_SAVE = /^base_model\.model\.(double_blocks|single_blocks|final_layer|img_in|txt_in|time_in|vector_in|guidance_in|double_stream_modulation_(img|txt)|single_stream_modulation)\./;

/**
 * ai-toolkit's lone `base_model.model.` files of Krea 2 (its original names: `blocks.N.attn.wq`,
 * `txtfusion.refiner_blocks.N.mlp.up`, `tmlp.0`) and ACE-Step 1.5 (its DiT decoder's:
 * `layers.N.cross_attn.q_proj`), which diffusers' Krea2LoraLoaderMixin and AceStepLoraLoaderMixin read
 * without a config, `base_model.model.` dropped, at α = r (no alpha: `get_peft_kwargs` sets each
 * module's α to its rank). Only lora_A / lora_B, the only tensors those converters carry; an ACE-Step
 * file only with a `cross_attn` module, as without one its names are any decoder LLM's PEFT save.
 */
const KREA2_BLOCK = String.raw`\.\d+\.(attn\.(wq|wk|wv|wo|gate)|mlp\.(gate|up|down))`;
const KREA2_PEFT_SAVE = new RegExp(String.raw`^base_model\.model\.(blocks${KREA2_BLOCK}|txtfusion\.(layerwise_blocks|refiner_blocks)${KREA2_BLOCK}|first|last\.linear|tmlp\.[02]|tproj\.1|txtmlp\.[13]|txtfusion\.projector)\.lora_[AB]\.weight$`);
const ACE_STEP_PEFT_SAVE = /^base_model\.model\.layers\.\d+\.((self_attn|cross_attn)\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.lora_[AB]\.weight$/;

/** Whether a lone `base_model.model.` file is one diffusers reads without a config, at scale 1. */
function isDiffusionPeftSave(names: readonly string[]): boolean {
  return names.every((n) => DIFFUSION_PEFT_SAVE.test(n)) || names.every((n) => KREA2_PEFT_SAVE.test(n))
    || (names.every((n) => ACE_STEP_PEFT_SAVE.test(n)) && names.some((n) => n.includes('.cross_attn.')));
}

/** Opens one file, hands it to `parse`, and closes it again if parsing fails. */
async function withFile(
  files: InputFileSet, path: string, pacer: Pacer, parse: (file: SafetensorsFile) => ParsedAdapter | Promise<ParsedAdapter>,
): Promise<ParsedAdapter> {
  const source = await files.open(path);
  try {
    const file = await openSafetensors(source);
    // A header of tens of thousands of tensors and the parse of its modules are each long work in
    // one piece: a cancel is looked for between them.
    await pacer.tick();
    return await parse(file);
  } catch (e) {
    await source.close().catch(() => undefined);
    throw e;
  }
}

/**
 * The paths of files named `base` that lie least deep in the set (none, one, or several side by
 * side): a folder may hold the adapter one level down.
 */
function shallowestByBaseName(list: readonly string[], base: string): string[] {
  const hits = list.filter((p) => p === base || p.endsWith(`/${base}`));
  const depth = (p: string) => p.split('/').length;
  const least = Math.min(...hits.map(depth));
  return hits.filter((p) => depth(p) === least);
}

/** mlx-lm keeps the scale in adapter_config.json only, so its adapter file alone cannot be merged. */
function mlxWithoutConfig(name: string, path: string): MergeError {
  return new MergeError('BAD_CONFIG', `${name}: ${path} looks like an mlx-lm adapter but ${PEFT_CONFIG} is missing (it holds lora_parameters.scale); pass the adapter folder that mlx_lm.lora wrote, with its ${PEFT_CONFIG}`);
}

function pickleRefused(name: string, path: string): MergeError {
  return new MergeError('PICKLE_REFUSED', `${pathIn(name, path, '/')}: pickle checkpoints are refused (loading one can run arbitrary code); convert it to .safetensors first`);
}
