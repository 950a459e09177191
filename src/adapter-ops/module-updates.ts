/**
 * Adapter modules as updates for combine and resize: each module's ΔW = B·A as f32 factors (LoHa
 * as its exact Khatri–Rao product), its scale, and a key that matches the same module across
 * adapters and names it in the output. Modules whose update is not a plain product plus a scale
 * (DoRA, a bias change: lora_bias, diff_b) are refused by name.
 */
import { decodeToF32, isFloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import type { AdapterModule, ModuleKind, ParsedAdapter } from '../formats/adapter.js';
import type { Mat } from '../algebra/matrix.js';
import { readModuleFactors } from '../plan/module-factors.js';
import { moduleTitle } from '../formats/algorithms/index.js';
import { diffusersUnetName } from '../formats/layouts/sd-ldm-unet.js';
import { transformersLinearName } from '../formats/layouts/openclip-text.js';
import { isLokrOfFullFactors, lokrFullFactors } from '../formats/algorithms/lokr.js';
import { lowRankPiece } from '../formats/algorithms/factor-io.js';
import { loraSplit } from '../formats/algorithms/lora-split.js';
import { SPLIT_QKV_PARTS } from '../formats/algorithms/kohya-split-qkv.js';
import { throwIfProblems } from '../plan/problems.js';
import { nonFiniteInTensorText } from '../pipeline/value-checks.js';

/** `gguf`: a llama.cpp LoRA GGUF (the CLI's `--out *.gguf`; only of GGUF LoRA inputs, see checkFormatFits). */
export type OutputFormat = 'peft' | 'kohya' | 'gguf';

export interface ModuleShape {
  kind: ModuleKind;
  /** ΔW's rows (out; for embeddings the embedding dim). */
  out: number;
  /** ΔW's columns (in·kh·kw; for embeddings the vocabulary). */
  in: number;
  /** A's dims after the rank (in, kh, kw) and B's after the rank (1, 1 for convs). */
  downTail: number[];
  upTail: number[];
}

export interface ModuleRef {
  adapterIndex: number;
  module: AdapterModule;
  /** The name the output gives the module (PEFT path or kohya key). */
  outputName: string;
  shape: ModuleShape;
}

/** Where a module lives in the output's naming: a PEFT path, or a kohya key. */
export function outputName(module: AdapterModule, format: OutputFormat): string {
  // A GGUF LoRA's module is its base tensor's name (`blk.0.attn_q.weight`), as the input's key is.
  if (format === 'gguf') return module.key;
  if (module.address.flat) return module.key;
  if (format === 'peft') return module.address.path;
  return `lora_${module.address.part ?? kohyaPartFor(module.address.path)}_${module.address.path.replace(/\./g, '_')}`;
}

/**
 * The base weight a module lands on, as far as its name alone says: modules of two adapters with
 * the same key change the same weight. A Stable Diffusion UNet module named as the LDM/SGM
 * checkpoints name it (kohya's SDXL LoRAs: `input_blocks_4_1_…`) and one named as diffusers' UNet
 * does (`down_blocks.1.attentions.0.…`, PEFT and most diffusers trainers) are one weight (the
 * sd-ldm-unet layout's mapping, which needs no base in that direction); so are a text encoder's
 * namings (textEncoderLanding); other names are their output name. A guess that only ever joins names that layout joins.
 */
export function landingKey(module: AdapterModule, format: OutputFormat): string {
  const { path, flat } = module.address;
  const encoder = textEncoderLanding(module);
  if (encoder) return encoder;
  const part = module.address.part ?? (flat ? undefined : kohyaPartFor(path));
  if (part !== 'unet') return outputName(module, format);
  const flatPath = path.replace(/^(model\.diffusion_model\.|unet\.)/, '').replace(/\./g, '_');
  return `unet:${diffusersUnetName(flatPath) ?? flatPath}`;
}

/**
 * Single-file checkpoints' text encoder prefixes (LDM's and SGM's), as a bare module path names
 * them, and the encoder each is in kohya's and diffusers' numbering: SDXL's second encoder
 * (OpenCLIP-G, open_clip naming) is `te2`; every other one is its model's first encoder (SD1's
 * CLIP-L, SD2's OpenCLIP-H, SDXL's CLIP-L, the SDXL refiner's OpenCLIP-G). Each prefix exists in
 * one model's checkpoint only, where `lora_te_`, `lora_te1_` and `text_encoder.` land on that encoder.
 */
const SINGLE_FILE_ENCODERS: readonly [string, 'te2' | 'first'][] = [
  ['conditioner.embedders.1.model.', 'te2'],
  ['conditioner.embedders.0.transformer.', 'first'],
  ['conditioner.embedders.0.model.', 'first'],
  ['cond_stage_model.transformer.', 'first'],
  ['cond_stage_model.model.', 'first'],
];

/**
 * The text encoder weight a module's name lands on, where several namings name it; every naming
 * joined here lands on the same weight on every base where both land (base-components.ts
 * componentForPart):
 * - the model's first text encoder: kohya's `lora_te_` (SD1.x, SD2.x; ComfyUI's CLIP-G of a
 *   refiner) and `lora_te1_` (CLIP-L, which is the first encoder wherever a base has one: SD1.x,
 *   SDXL, SD3, FLUX.1; a refiner has none, and a CLIP-G update's shape is not CLIP-L's),
 *   diffusers' `text_encoder.`, ComfyUI's `text_encoders.clip_l.`, and the single-file prefixes
 *   of a first encoder (SINGLE_FILE_ENCODERS). A bare `text_model.…` joins them by its output
 *   name (collectModules): a kohya output writes it as `lora_te_`, a PEFT one writes
 *   `text_encoder.…` as the bare path;
 * - SDXL's second encoder, named by transformers (`lora_te2_text_model_…`, `text_encoder_2.`) or
 *   by open_clip as its LDM checkpoint stores it (`conditioner.embedders.1.model.transformer.
 *   resblocks.N.` or `lora_te2_transformer_resblocks_N_`).
 * An open_clip block's out_proj, c_fc and c_proj are transformers' out_proj, fc1 and fc2 row for
 * row (openclip-text.ts), so either naming of one is one key. `lora_te_` and `lora_te2_` stay
 * apart: no base takes both on one weight (a refiner's CLIP-G takes `lora_te_` only). Undefined for other modules.
 */
function textEncoderLanding(module: AdapterModule): string | undefined {
  const { path, part, flat } = module.address;
  let encoder: 'te2' | 'first' | undefined;
  let rest = path;
  if (part === 'te2') encoder = 'te2';
  else if (part === 'te' || part === 'te1') encoder = 'first';
  else if (part === undefined && !flat) {
    const single = SINGLE_FILE_ENCODERS.find(([prefix]) => path.startsWith(prefix));
    if (single) [encoder, rest] = [single[1], path.slice(single[0].length)];
  }
  if (encoder === undefined) return undefined;
  const flatten = (p: string) => p.replace(/\./g, '_');
  return `${encoder === 'te2' ? 'te2' : 'te-first'}:${flatten(transformersLinearName(rest) ?? rest)}`;
}

/** kohya's prefix for a module path: the diffusion model's blocks are `unet`, the rest text encoders. */
export function kohyaPartFor(path: string): 'unet' | 'te' {
  return /^(model\.diffusion_model\.|unet\.)?(down_blocks|up_blocks|mid_block|input_blocks|middle_block|output_blocks|conv_in|conv_out|time_embed|time_embedding|add_embedding|label_emb|transformer_blocks|single_transformer_blocks|x_embedder|context_embedder|proj_out)\b/.test(path)
    ? 'unet' : 'te';
}

export function moduleShape(m: AdapterModule): ModuleShape {
  // PEFT's Conv1d Tucker LoHa/LoKr build ΔW (out, in, k, 1) and reshape it to the layer's
  // (out, in, k): a LoRA for that layer is an nn.Conv1d pair, A (r, in, k) and B (out, r, 1).
  const d = m.options?.peft_conv1d_tucker === true ? m.deltaShape.slice(0, 3) : m.deltaShape;
  const inner = d.slice(1).reduce((n: number, x: number) => n * x, 1);
  return { kind: m.kind, out: d[0], in: inner, downTail: d.slice(1), upTail: m.kind === 'conv' ? d.slice(2).map(() => 1) : [] };
}

/**
 * The rank of a module's factors as readFactors gives them: its LoRA rank; for a module of n parts
 * of rank r on disjoint rows (isSplitModule), whose rank says r, n·r, the rank of the one pair that
 * holds its update; for a LoKr of two full factors (whose rank says 1: no factor is decomposed)
 * kron(W₁, W₂)'s, min(a, c)·min(b, d·k…) (low-rank-forms.ts fullKronFactors), which is at most
 * min(out, in).
 */
export function factorRank(m: AdapterModule): number {
  if (isSplitModule(m) && m.update.kind === 'low-rank') return m.update.rank;
  if (!isLokrOfFullFactors(m)) return m.rank;
  const least = (shape: readonly number[]) => Math.min(shape[0], shape.slice(1).reduce((n, x) => n * x, 1));
  return least(m.tensors.w1!.shape) * least(m.tensors.w2!.shape);
}

/**
 * A module trained as n LoRAs of one rank r on consecutive rows of one weight, each at α/r: a LoRA
 * with split_dims (numbered lora_down.N/lora_up.N) or sd-scripts' split_qkv pair. Its rank says r,
 * its update's is n·r, and its network's metadata describes a split the output's plain LoRA is not.
 */
export function isSplitModule(m: AdapterModule): boolean {
  return m.algorithm === loraSplit.name || m.options?.[SPLIT_QKV_PARTS] !== undefined;
}

/** Bytes of every tensor the module's update is read from (for progress). */
export function factorBytes(m: AdapterModule): number {
  return Object.values(m.tensors).reduce((n, t) => n + t.byteLength, 0);
}

/** Refuses what combine/resize cannot express as a product; every problem at once. */
export function checkModules(adapters: readonly ParsedAdapter[], command: string): void {
  const problems: { code: 'UNSUPPORTED_FORMAT'; message: string }[] = [];
  for (const adapter of adapters) {
    for (const m of adapter.modules) {
      // Maps of W (OFT, HRA, IA3 …) and dense or sparse updates (full diffs, SHiRA) are no product of two factors.
      // A LoKr of two full factors is merged dense where its rank is large, but is a product all the same.
      if (m.update.kind === 'transform' || (m.update.kind === 'dense' && !isLokrOfFullFactors(m))) {
        problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter.name}: module "${m.key}" is ${moduleTitle(m)}, whose update is not a low-rank product; ${command} cannot express it as a LoRA (merge it into the base instead)` });
        continue;
      }
      if (m.dora) problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter.name}: module "${m.key}" is DoRA, whose update depends on the base weights; ${command} cannot express it as a LoRA` });
      if (m.biasB) problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter.name}: module "${m.key}" changes a bias (${m.biasB.name}), which ${command} does not support yet` });
      if (m.reshapeTo !== undefined) problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter.name}: module "${m.key}" pads its base weight to (${m.reshapeTo.join(', ')}) (ComfyUI's reshape_weight), which ${command} cannot write into a LoRA file` });
      else if (m.widenBaseTo !== undefined) problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter.name}: module "${m.key}" widens its base weight to ${m.widenBaseTo} input columns (a FLUX.1 control LoRA's img_in), which ${command} cannot write into a LoRA file` });
      // Its rows are per head [q k v], which only peft's `.default.` infix over H3's names tells (minimax-h3-file.ts).
      if (m.address.qkvPerHead !== undefined) problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter.name}: module "${m.key}" is DiffSynth-Studio's MiniMax-H3 qkv_proj, its rows per head [q k v], which ${command} cannot write into a LoRA file (no name in it says that order; merge it into the base instead)` });
    }
    // A set_weight replaces a tensor whatever the weight: no LoRA, and no modules_to_save of PEFT's, holds that.
    for (const r of adapter.replacements) {
      if (r.origin === 'set_weight') problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${adapter.name}: "${r.key}" replaces ${r.path} (ComfyUI's set_weight), which ${command} cannot write into a LoRA file` });
    }
  }
  throwIfProblems(command, problems);
}

/** The module's factors as f32 matrices: B (out × r), A (r × in·k…). */
export async function readFactors(adapter: ParsedAdapter, module: AdapterModule): Promise<{ b: Mat; a: Mat; rank: number }> {
  const f = isLokrOfFullFactors(module) ? lowRankPiece(await lokrFullFactors(adapter.file, module)) : await readModuleFactors(adapter.file, module);
  const shape = moduleShape(module);
  const a = decodeToF32(f.a.data, f.a.dtype);
  const b = decodeToF32(f.b.data, f.b.dtype);
  if (a.length !== f.rank * shape.in || b.length !== f.rank * shape.out) {
    throw new MergeError('SHAPE_MISMATCH', `${adapter.name}: module "${module.key}": factors do not fit its update (${module.deltaShape.join('×')})`);
  }
  if (!a.every(Number.isFinite) || !b.every(Number.isFinite)) throw await nonFiniteFactors(adapter, module);
  return { b: { rows: shape.out, cols: f.rank, data: b }, a: { rows: f.rank, cols: shape.in, data: a }, rank: f.rank };
}

/**
 * Factors holding NaN or Inf, named: the stored tensor that holds one, else (a product of finite
 * values, as LoHa's, past f32) the module. Said before the algebra runs, whose own check could
 * name neither, and before `cat` could copy the values into its output.
 */
async function nonFiniteFactors(adapter: ParsedAdapter, module: AdapterModule): Promise<MergeError> {
  for (const entry of Object.values(module.tensors)) {
    const bad = isFloatDType(entry.dtype) ? nonFiniteInTensorText(await adapter.file.read(entry), entry.dtype, entry.shape) : undefined;
    if (bad) return new MergeError('NON_FINITE', `${adapter.name}: tensor "${entry.name}" holds ${bad}; the adapter file is broken`);
  }
  return new MergeError('NON_FINITE', `${adapter.name}: module "${module.key}": its update's factors are too large for f32 (they overflow to Inf); the adapter cannot be combined or resized`);
}

/** Output format from --out: a `.safetensors` name is a kohya file, anything else a PEFT folder. */
export function outputFormatFor(out: string): 'peft' | 'kohya' {
  return out.toLowerCase().endsWith('.safetensors') ? 'kohya' : 'peft';
}

/** The first adapter whose module names lost their paths' dots (kohya's): only a kohya file can name them. */
export function kohyaNamedAdapter(adapters: readonly ParsedAdapter[]): ParsedAdapter | undefined {
  return adapters.find((a) => a.format === 'kohya' || a.modules.some((m) => m.address.flat));
}

/**
 * Output format from the CLI's --out: {@link outputFormatFor}, and a `.gguf` name a llama.cpp LoRA
 * GGUF (the library's `out` names no GGUF: its format option is `peft` or `kohya`).
 */
export function cliOutputFormat(out: string): OutputFormat {
  return /\.gguf$/i.test(out) ? 'gguf' : outputFormatFor(out);
}

/**
 * kohya inputs lost their module paths' dots: only a kohya file can name them. A GGUF output
 * of `format` gguf takes llama.cpp LoRAs of one architecture only: their modules already carry the
 * base tensors' GGUF names, where a PEFT module needs the GGUF base (--base: its names and head
 * counts for the q/k row permutation; the op then runs as `peft` and gguf-lora-names.ts renames);
 * a MoE LoRA's experts, one module each in the op, are stacked back into 3-D factors by
 * finishAdapter (gguf-lora-names.ts stackGgufExperts).
 */
export function checkFormatFits(
  adapters: readonly ParsedAdapter[], format: OutputFormat, out: string,
  // How to write a PEFT adapter as a llama.cpp LoRA: the command line's way unless the caller says its own.
  convertAdvice = (name: string) => `combine --adapter ${name} --method cat --base MODEL.gguf --out ${name}.gguf`,
): void {
  if (format === 'gguf') {
    const other = adapters.find((a) => a.format !== 'gguf');
    if (other) {
      const mixed = adapters.some((a) => a.format === 'gguf');
      let message = `${other.name}: a ${other.format} adapter cannot be written as a GGUF LoRA (its module names are not llama.cpp's tensor names); give --out a .safetensors name`;
      if (other.format === 'peft') {
        message = mixed
          ? `${other.name}: a peft adapter is not combined with llama.cpp LoRAs; write it as one first (${convertAdvice(other.name)}), then combine the GGUF LoRAs`
          : `${other.name}: a peft adapter's module names are not llama.cpp's tensor names, and renaming them needs the GGUF model it is for: give it as --base MODEL.gguf`;
      }
      throw new MergeError('BAD_ARGUMENT', message);
    }
    const architectures = [...new Set(adapters.map((a) => String(a.config['general.architecture'])))];
    if (architectures.length > 1) {
      throw new MergeError('BAD_ARGUMENT', `the GGUF LoRAs are for different architectures (${architectures.join(', ')}); llama.cpp loads a LoRA only onto a model of its own general.architecture`);
    }
    return;
  }
  const kohya = kohyaNamedAdapter(adapters);
  if (format === 'peft' && kohya) {
    throw new MergeError('BAD_ARGUMENT', `${kohya.name}: a kohya adapter's module names (lora_unet_…) cannot be written as a PEFT folder; give --out a .safetensors name instead of ${out}`);
  }
}
