/**
 * What a MiniMax-H3 LoRA file in the original checkpoint's names says for itself, as diffusers'
 * MiniMaxH3LoraLoaderMixin reads it (layouts/minimax-h3.ts places its modules):
 * - a `__metadata__` `alpha` (lightx2v's files), with no `.alpha` tensor in the file, is every module's α
 *   (scale α/r); without one an alpha-less module loads at α = r;
 * - peft's `.default.` infix over these names is DiffSynth-Studio's save, whose fused `qkv_proj` rows
 *   diffusers reorders from per-head interleaved (`[head0: q k v, …]`) to `[q; k; v]`, every released
 *   H3 having 128-wide heads: its `qkv_proj` modules are marked so (ModuleAddress.qkvPerHead).
 *
 * A file whose every module is one of H3's MLP or embedder modules (`blocks.N.mlp.fc1`, `mlp.fc2`, …) and none
 * only H3 has is `shared`: PixArt's and HunyuanDiT's original names (ComfyUI's `diffusion_model.blocks.0.mlp.fc1`,
 * kohya's `lora_unet_blocks_0_mlp_fc1`) are the same, and their loaders (ComfyUI's) read no `__metadata__` α.
 * Such a file's metadata α is H3's only on an H3 base: the plan decides (AdapterModule.minimaxH3Alpha).
 */
import type { MergeErrorCode } from '../errors.js';
import { LORA_ADAPTER_METADATA } from './diffusers-metadata.js';
import type { SafetensorsFile } from './safetensors-types.js';

/** A tensor of a module only MiniMax-H3's original names have (dotted, or musubi-tuner's flattened). */
const H3_TENSOR = /^(diffusion_model\.|lora_unet_)?(token_refiner[._])?blocks[._]\d+[._](attn[._](qkv|out)_proj|adaln_proj[._]linear)\./;
/** A tensor of any module diffusers' H3 converter reads (its MLP and embedders too, which other models' names share). */
const H3_MODULE = /^(diffusion_model\.|lora_unet_)?((token_refiner[._])?blocks[._]\d+[._](attn[._](qkv|out)_proj|adaln_proj[._]linear|mlp[._]fc[12])|(video|audio)_patch_proj|condition_proj|time_embedder[._]proj_(in|out)|final_layer[._](adaln_proj[._]linear|video_out|audio_out))\./;
/** What Python's float() reads (diffusers parses the metadata so), less inf and nan. */
const FLOAT = /^\s*[+-]?(\d+(_\d+)*\.?(\d+(_\d+)*)?|\.\d+(_\d+)*)([eE][+-]?\d+(_\d+)*)?\s*$/;

type Problem = { code: MergeErrorCode; message: string };

export interface MiniMaxH3File {
  /** The α of every module (the file's `__metadata__` `alpha`), when it sets one. */
  alpha?: number;
  /** DiffSynth-Studio's file: the width of a head in its per-head interleaved `qkv_proj` rows. */
  qkvPerHead?: number;
  /** No module only H3 has: every one's name is shared with other models, so the base decides whether `alpha` holds. */
  shared?: true;
  /** A `shared` file's metadata alpha that is no number, or its lora_adapter_metadata: refused only where the base is H3's (the plan). */
  alphaRefusal?: Problem;
}

/** A fused qkv_proj of H3's original names (`diffusion_model.` and `lora_unet_` already dropped). */
export const H3_FUSED_QKV = /^(token_refiner[._])?blocks[._]\d+[._]attn[._]qkv_proj$/;
/** The head width diffusers assumes for DiffSynth-Studio's files (every released MiniMax-H3 partition's). */
const DIFFSYNTH_HEAD = 128;

/** The file read as MiniMax-H3's (undefined when it is not in H3's original names); refusals go to `problems` (a `shared` file's to `alphaRefusal`). */
export function readMiniMaxH3File(fileName: string, file: SafetensorsFile, problems: Problem[]): MiniMaxH3File | undefined {
  // A file of H3's names: one only H3 has, or every module one of H3's (an MLP-only LoRA, whose names others share).
  const own = file.tensors.some((t) => H3_TENSOR.test(t.name));
  if (!own && !(file.tensors.length > 0 && file.tensors.every((t) => H3_MODULE.test(t.name)))) return undefined;
  const diffSynth = file.tensors.some((t) => /\.lora_[AB]\.default\.weight$/.test(t.name));
  const found: MiniMaxH3File = { ...(diffSynth ? { qkvPerHead: DIFFSYNTH_HEAD } : {}), ...(own ? {} : { shared: true as const }) };
  if (LORA_ADAPTER_METADATA in file.metadata) {
    // diffusers loads that config (not the `alpha` entry) for the names it converts: read for these names by no one here.
    const refusal: Problem = { code: 'UNSUPPORTED_FORMAT', message: `${fileName}: holds lora_adapter_metadata in MiniMax-H3's original module names: diffusers' MiniMaxH3LoraLoaderMixin converts the names to its own and scales them by that config's lora_alpha over each rank (ignoring any metadata "alpha"), which this tool does not read for these names; not supported — remove the lora_adapter_metadata entry, or save the LoRA in diffusers' names` };
    if (found.shared) return { ...found, alphaRefusal: refusal };
    problems.push(refusal);
    return found;
  }
  const text = file.metadata.alpha;
  if (text === undefined || file.tensors.some((t) => t.name.endsWith('.alpha'))) return found;
  const alpha = FLOAT.test(text) ? Number(text.trim().replaceAll('_', '')) : NaN;
  if (!Number.isFinite(alpha)) {
    const refusal: Problem = { code: 'UNSUPPORTED_FORMAT', message: `${fileName}: metadata "alpha" is ${JSON.stringify(text)}, not a finite number: diffusers' MiniMaxH3LoraLoaderMixin reads it as every module's alpha (it warns and loads at alpha = rank); not supported — remove the entry or set the alpha the LoRA was trained with` };
    if (found.shared) return { ...found, alphaRefusal: refusal };
    problems.push(refusal);
    return found;
  }
  return { ...found, alpha };
}

/** The prefixes of the keys diffusers' H3 loader converts from the original names (before any other reading). */
const ORIGINAL_PREFIXES = ['diffusion_model.', 'blocks.', 'token_refiner.blocks.', 'final_layer.', 'lora_unet_'];

/**
 * A file in diffusers' own names whose `__metadata__` `alpha` diffusers' MiniMaxH3LoraLoaderMixin reads as
 * every module's α (scale α / the module's rank, from its lora_B): no `.alpha` tensor, no `lora_adapter_metadata`
 * (which diffusers loads instead), no key in H3's original names (readMiniMaxH3File's). The loader applies it to
 * the modules under `transformer.` and `transformer_ref.`, and to a peft dump (`.default.` infix, no such prefix),
 * which it prefixes with `transformer.`, and only to lora_A/lora_B modules (it reads the ranks from lora_B). Other loaders read no metadata α: the plan applies it only on an H3
 * base (AdapterModule.minimaxH3Alpha). `applies` says which of the file's modules it reaches.
 */
export function readDiffusersNamesH3Alpha(fileName: string, file: SafetensorsFile): { alpha?: number; alphaRefusal?: Problem; applies: (module: string) => boolean } | undefined {
  const text = file.metadata.alpha;
  const names = file.tensors.map((t) => t.name);
  if (text === undefined || LORA_ADAPTER_METADATA in file.metadata || names.some((n) => n.endsWith('.alpha'))) return undefined;
  if (names.some((n) => ORIGINAL_PREFIXES.some((p) => n.startsWith(p)))) return undefined;
  const prefixed = (n: string) => n.startsWith('transformer.') || n.startsWith('transformer_ref.');
  const peftDump = names.some((n) => n.includes('.default.weight')) && !names.some(prefixed);
  // Its ranks are read from the lora_B tensors alone: a module saved otherwise (lora_up) gets no α from it.
  const withB = new Set(names.flatMap((n) => /^(.*)\.lora_B(\.default)?\.weight$/.exec(n)?.[1] ?? []));
  const applies = (module: string) => withB.has(module) && (peftDump || prefixed(module));
  if (![...withB].some(applies)) return undefined;
  const alpha = FLOAT.test(text) ? Number(text.trim().replaceAll('_', '')) : NaN;
  if (Number.isFinite(alpha)) return { alpha, applies };
  return { applies, alphaRefusal: { code: 'UNSUPPORTED_FORMAT', message: `${fileName}: metadata "alpha" is ${JSON.stringify(text)}, not a finite number: on a MiniMax-H3 base diffusers' MiniMaxH3LoraLoaderMixin reads it as every module's alpha (it warns and loads at alpha = rank); not supported — remove the entry or set the alpha the LoRA was trained with` } };
}
