/**
 * The fuzzer's second set of inputs: the surfaces beyond plain safetensors + PEFT LoRA / kohya
 * LoRA. Small valid worlds with the real names, shapes, types and metadata of
 *   - GGUF bases with llama.cpp LoRA adapters (`.lora_a` / `.lora_b`, `adapter.lora.alpha`) or
 *     PEFT adapters (module paths mapped to GGUF names),
 *   - kohya files of the LyCORIS algorithms (LoHa, LoKr, LoRA with dora_scale, GLoRA, IA3,
 *     diag-OFT, full diff),
 *   - PEFT method folders (LOHA, LOKR, VERA, OFT, BOFT, IA3 adapter_config.json),
 *   - model folders (sharded transformers checkpoints with model.safetensors.index.json and
 *     config.json, diffusers pipeline folders with model_index.json, bitsandbytes 8-bit bases),
 *   - fp8 bases whose weights are re-quantized after the merge: ComfyUI's per-layer quantization
 *     (`comfy_quant` tensors and/or the `_quantization_metadata` header, FLUX.2 and Qwen-Image
 *     names, float8_e4m3fn, float8_e5m2, mxfp8, nvfp4 and int8_tensorwise layers beside another
 *     of those or a convrot_w4a4 one, kohya and `diffusion_model.` LoRAs) and block-wise fp8 folders (`weight_scale_inv`,
 *     config.json `weight_block_size`, a PEFT LoRA) and Comfy-Org's scaled fp8 single files
 *     (`scale_weight` + `scaled_fp8` marker, FLUX.1 and Wan 2.1 names, e4m3fn or e5m2 codes, a
 *     kohya LoRA with a `diff_b`), each also merged with `--dtype bf16`, and
 *     each sometimes written with one part of its quantization wrong (a config that is not JSON
 *     or names another format, a scale of the wrong shape, dtype or sign, a grid that does not
 *     fit, block scales unswizzled, NaN or with padding that is not zero, a weight of another
 *     dtype or shape, a config left out, a marker of another dtype or none),
 *   - quantized Llama and Qwen3 folders (one file, or two shards and their index) with a PEFT LoRA
 *     or rsLoRA on q_proj and maybe v_proj: compressed-tensors FP8 (per channel, per tensor or per
 *     block, static input_scale and kv_cache_scheme scales), ModelOpt FP8 and ModelOpt NVFP4
 *     (hf_quant_config.json or config.json's quantization_config), FP8 also re-quantized, NVFP4
 *     only with `--dtype bf16`; and hostile: scales NaN, Inf, negative, subnormal or huge, of
 *     another shape or dtype, missing, in an earlier shard; weights of another dtype; configs of
 *     another format, strategy, block structure, quant_algo, group_size or producer, ignore and
 *     exclude_modules lists naming modules that are absent or quantized,
 *   - integer weight-only Llama and Qwen3 folders (GPTQ v1 / v2, AWQ GEMM, compressed-tensors
 *     pack-quantized and int-quantized, W8A8 with static activation scales) written only dequantized, hostile: codes, zero points,
 *     scales and group indices of another dtype or shape, missing or out of range, scales NaN,
 *     Inf, negative or subnormal, a GPTQ v1 zero point of 0, configs disagreeing with the tensors,
 *   - BFL's FLUX.1 control LoRAs (lora_B.bias, norm scales replaced, img_in widened to twice the
 *     base's columns) on flux1-dev.safetensors or a diffusers transformer folder whose config.json
 *     in_channels follows,
 *   - tied input and output embeddings: a decoder LM saved without lm_head.weight, config.json's
 *     tie_word_embeddings true, false or the class default, a PEFT LoRA on lm_head, embed_tokens
 *     (with ensure_weight_tying and the head's tied copy, or without) or q_proj,
 *   - mlx-lm adapter folders (adapter_config.json, adapters.safetensors: lora_a (in, r), lora_b
 *     (r, out), a DoRA's m, a full fine-tune's weights) on a Llama folder or an mlx-community
 *     affine-quantized one (U32 codes, scales, biases; written only with --dtype), hostile: the rank,
 *     layout or names of the factors, the scale NaN / Inf / a string, the config missing or of an
 *     unknown fine_tune_type or an old alpha, bits 3, 5 or 6, scales and biases of another shape or
 *     dtype or not finite,
 *   - PEFT FourierFT and WaveFT folders (values with use_idwt false) on layers whose torch.randperm positions
 *     torch computed, hostile: spectrum lengths, seeds, n past the layer, use_idwt, fan_in_fan_out,
 *   - the diffusion transformers with two namings (fuzz-dit-namings.ts): AuraFlow, PixArt, HunyuanDiT,
 *     Mochi, Cosmos-Predict2 / Anima and Stable Cascade stage C bases in one naming, LoRAs in another
 *     (kohya, ComfyUI, diffusers, genmo, `lora_prior_unet_`), fused and swapped tensors, the refusals
 *     the README lists,
 *   - PEFT BEFT, Super-Tuning (and Supra), TinyLoRA, PVeRA, UniLoRA and BD-LoRA folders
 *     (fuzz-peft-new.ts), hostile: ranks, sizes, nblocks and lora_alpha the tensors do not fit,
 *     indices past the weight or theta_d, BEFT without a bias, a plain module under match_strict,
 *   - Qwen3-MoE experts stacked in float as mlx-lm stores them or one tensor per expert, under an
 *     mlx-lm LoRASwitchLinear or a PEFT per-expert LoRA (fuzz-mlx-experts.ts), hostile: factors for
 *     another count of experts, an expert past the base's,
 *   - BFL's FLUX.1 control LoRA on ComfyUI-GGUF FLUX.1 files, img_in F32 or F16 (widened), BF16 or
 *     a block type (refused) (fuzz-flux-gguf.ts), hostile: img_in's LoRA as wide as the base, a base
 *     img_in wider than the LoRA, lora_B rows or rank off, a norm scale of another length,
 *   - a llama, Mixtral-like 8-expert or Falcon GGUF merged with llama-quantize's type mixes
 *     `--dtype iq3_s_mix`, `iq3_m`, `q2_k_mix`, `q6_k_mix`, `q4_0_mix`, `iq4_nl_mix`, `iq4_xs_mix`
 *     and the K-quant mixes (every tensor's type from llama-quant.cpp's rules, written out in
 *     fuzz-type-mixes.ts, its bytes from the reference quantizers, IQ3_S's included), and
 *     `iq3_xs`, `iq3_xxs_mix`, `q2_k_s` refused,
 *   - modules trained as n LoRA parts of one fused Linear (fuzz-split-modules.ts): sd-scripts'
 *     `split_qkv` files (networks.lora_flux, networks.lora_sd3: one fused pair, its up block-diagonal)
 *     and `split_dims` files (numbered lora_down.N / lora_up.N pairs, blissful-tuner's flags) on
 *     FLUX.1 single files, a diffusers Flux folder and SD3.5's file, hostile: an up off its block
 *     diagonal, a gap in the numbering, mixed part ranks, parts whose rows miss the weight's, NaN in
 *     a part, both forms in one module, a ninth part, refused naming the module,
 * and their mutations: bit flips and truncation of any file, GGUF header edits (tensor and KV
 * counts, version, dims, types, offsets, alignment, metadata types and values, ComfyUI-GGUF's
 * `comfy.gguf.orig_shape` entry for the merged tensor), tensor shape and
 * value edits (inconsistent algorithm shapes, absurd ranks and block sizes, NaN/Inf/huge values),
 * JSON edits (type changes, huge numbers, deep nesting; in JSON files, in safetensors `__metadata__`
 * entries and in U8 tensors holding JSON), text edits inside JSON strings and numbers (bytes that are
 * not UTF-8, `8.0`, `8e0`, `-0`; json-text-edits.ts) and dropped files.
 *
 * The truth of each world is float64 math written out below from each format's documented rule,
 * applied to the values decoded from the (mutated) files by the plain test readers (an fp8 weight's
 * W' is summed exactly and rounded once to f32, as re-quantizing needs). When a mutation changes a
 * file's structure (names, shapes, types, JSON the truth does not read), the truth says `unknown`
 * and only the outcome properties are checked (one clear error line or a clean exit, nothing left
 * behind). The fp8 worlds' truths also decide refusals: a merge they expect must not be refused.
 */
import fc from 'fast-check';
import { buildSafetensors, decodeSafetensors, decodeValues, FIXTURE_DTYPE_BYTES, STORED_DTYPE_BYTES, roundF8Saturating, roundForDType, seededRandom, type DecodedTensor as FixtureDecodedTensor, type FixtureDType, type FixtureTensor } from './fixtures.js';
import {
  blockedOrder, comfyInt8Requantize, comfyMxfp8Requantize, comfyNvfp4Requantize, comfyNvfp4Value, comfyRequantize, compressedTensorsRequantize, e2m1Value, e4m3Value, e5m2Value, e8m0Value,
  modelOptNvfp4Value, modelOptRequantize, unswizzled,
} from './e4m3-by-hand.js';
import { exactMergeBitsOf } from './exact-truth.js';
import type { FloatDType } from '../../src/dtype.js';
import { MAX_CONFIG_NESTING } from '../../src/limits.js';
import { buildGguf, GGML_BLOCK, readGguf, tensorData, tensorValues, typeName, type BuildOptions, type MetaValue } from './gguf-builder.js';
import { mm } from './dense-f64.js';
import { roundingValue } from './fuzz-cases.js';
import { AWQ_ORDER, pack, packGptq3 } from './int-packing.js';
import { aTimesB, mlxConfig } from './mlx-lm-folder.js';
import { deltaTruth, reference as torchReference } from './fourierft-truth.js';
import { ditNamingsWorld } from './fuzz-dit-namings.js';
import { peftNewWorld } from './fuzz-peft-new.js';
import { drawnProjectionsWorld } from './fuzz-drawn-projections.js';
import { mlxExpertsWorld } from './fuzz-mlx-experts.js';
import { fluxGgufWorld } from './fuzz-flux-gguf.js';
import { seventyBWorld, typeMixesWorld } from './fuzz-type-mixes.js';
import { splitModulesWorld } from './fuzz-split-modules.js';
import { splitExpertsWorld } from './fuzz-split-experts.js';
import { t5AloneWorld } from './fuzz-t5-alone.js';
import { deepseekV3Ue8m0World, deepseekV4World, kandinskyConfigWorld, modularIndexWorld, onetrainerOftWorld } from './fuzz-new-surfaces.js';
import { editedText, safetensorsHeaderProblem, textEdit, wellFormedUtf8, type TextEdit } from './json-text-edits.js';
import {
  controlLora, diffusersNorm, diffusersRows, DOUBLE as FLUX_DOUBLE, fluxDevBfl, fluxDevDiffusers, fluxNorms, HEAD as FLUX_HEAD, identity, IN as FLUX_IN, R as FLUX_R,
  SINGLE as FLUX_SINGLE, truth as controlTruth,
} from './flux-control-fixtures.js';

/** The deepest JSON nesting a case writes. */
const MAX_NESTING = 200_000;

export type SpecFile =
  | { kind: 'safetensors'; tensors: FixtureTensor[]; metadata?: Record<string, string> }
  | { kind: 'gguf'; build: BuildOptions }
  | { kind: 'json'; value: unknown };

export interface SurfaceWorld {
  name: string;
  files: Record<string, SpecFile>;
  /** Paths relative to the case folder. */
  base: string;
  adapter: string;
  /** The output's name inside the case's out/ folder (a folder when the base is one). */
  out: string;
  /** Float64 truth of the merged tensors, from the decoded files (structure already checked). */
  truth: (d: Decoded, weight: number, outDtype?: OutDtype) => Truth;
  /** The `--dtype` values the truth follows (the command takes no other). */
  outDtypes?: OutDtype[];
  /** A merge the CLI refuses is checked too: the truth must not expect it. */
  refusalsChecked?: boolean;
  /** The `--dtype` of this world's merges drawn without one (a base written only dequantized merges mostly so). */
  mergeDtype?: OutDtype;
  /** Bytes per row slab of the in-process merges (small: its tall layers stream in several slabs). */
  slabBytes?: number;
  /** The `--dtype` every merge of this world takes (a GGUF type mix), in place of a drawn one. */
  fixedDtype?: string;
  /** Every command drawn for it is a merge: a draw aimed at a rule only a merged output shows. */
  mergeOnly?: boolean;
  /** Top-level fields of its JSON files that this world's truth reads (so edits to them are followed), beside CONFIG_READ_BY_TRUTH. */
  configReads?: string[];
}

export type OutDtype = 'bf16' | 'f16' | 'f32';

/** The stored dtype of each `--dtype`. */
export const OUT_DTYPE: Record<OutDtype, 'BF16' | 'F16' | 'F32'> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };

/** Decoded inputs: tensors by `component/name` (component: the file's folder), JSON by path. */
export interface Decoded {
  tensors: Map<string, { dtype: string; shape: number[]; values: Float64Array; bytes: Uint8Array }>;
  /** JSON files' text by path. */
  json: Map<string, string>;
  /** GGUF files' metadata by path. */
  gguf: Map<string, Map<string, { type: number; value: unknown }>>;
  /** safetensors files' `__metadata__` by path. */
  headers: Map<string, Record<string, string>>;
}

export interface ExpectedMerge {
  values: Float64Array;
  /** max |W| + max |ΔW terms| of the tensor, for the f32 accumulation's tolerance. */
  magnitude: number;
  /** The output's dtype where it is not the stored one. */
  dtype?: FixtureDType;
  /** Values the output holds exactly (fp8 codes and scales quantized anew), not within rounding. */
  exact?: boolean;
  /** The output's shape where it is not the stored one (NVFP4's packed codes dequantized). */
  shape?: number[];
  /**
   * A base tensor only converted to `--dtype`, holding NaN or Inf already: kept as it is with a
   * warning (README, "Every value written is checked"), so its non-finite values are no refusal.
   */
  copiedNonFinite?: boolean;
  /**
   * Per element, a further tolerance where the engine takes the update in f32 as its tool forms it
   * (FourierFT's ΔW, README) and the update's float64 value lies at an f32 rounding tie: float64
   * sums in another order (the engine's DFT, this truth's) may round it to either neighbour.
   */
  slack?: Float64Array;
}

/**
 * A GGUF output as the truth expects it: every tensor in order with its type and ne, and its data as
 * `bytes` exactly, or `values` (F32/F16/BF16 within the rounding of the type, a block type within
 * `bound` of each value, e.g. half a Q8_0 step), or neither (a type the helpers do not decode);
 * metadata entries `meta` equal to the values given.
 */
export interface GgufExpected {
  tensors: { name: string; type: string; ne: number[]; bytes?: Uint8Array; values?: Float64Array; magnitude?: number; bound?: Float64Array }[];
  meta?: Record<string, unknown>;
}

/**
 * How far a block type's values may lie from the float64 truth `values` (rows of whole blocks): twice
 * the reference quantizer's own worst error in each block of the truth, plus a little (the merge is
 * quantized from its f32 sum, which may round a value the other way and move a block's scale).
 */
export function blockBound(type: string, values: Float64Array): Float64Array {
  const ref = tensorValues(type, tensorData(type, values));
  const size = GGML_BLOCK[type][0];
  const bound = new Float64Array(values.length);
  for (let b = 0; b < values.length; b += size) {
    let err = 0, amax = 0;
    for (let i = b; i < b + size; i++) {
      err = Math.max(err, Math.abs(ref[i] - values[i]));
      amax = Math.max(amax, Math.abs(values[i]));
    }
    bound.fill(2 * err + 2 ** -18 * amax + 1e-7, b, b + size);
  }
  return bound;
}

export type Truth =
  | {
    kind: 'expected'; merged: Map<string, ExpectedMerge>;
    /** Tensors of the base the output leaves out. */
    leftOut?: string[];
    /** `__metadata__` entries of a single-file output: the text, or null for none. */
    header?: Record<string, string | null>;
    /** JSON files of the output by path: equal to `equals` but for the top-level fields `except`. */
    json?: Record<string, { equals: Record<string, unknown>; except?: string[] }>;
    /** Files of the base folder the output leaves out, by path. */
    absent?: string[];
    /** A GGUF output, checked tensor by tensor in place of the decoded comparison above. */
    gguf?: GgufExpected;
  }
  | {
    kind: 'invalid'; why: string;
    /** Text the refusal's error line must hold (the module it names), where the inputs are the world's own, unmutated. */
    names?: string;
  }
  | { kind: 'unknown'; why: string };

// --- plain float64 math --------------------------------------------------------------------------

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

/**
 * For an update handed to the engine in f32 (FourierFT's ΔW): |scale|·one f32 ulp of ΔW where its
 * float64 value lies within float64 noise (2^-30 of the largest |ΔW|, far above a DFT's error, far
 * below an f32 ulp of most values) of a midpoint between two f32 values, else 0. There the exact ΔW
 * may be a tie (the fuzz draws values that make ties), and float64 sums in different orders round
 * it to either neighbour (seed 20261216, case 16148: an exact tie, the engine's Bluestein DFT on
 * one side, this truth on the other).
 */
function f32TieSlack(delta: Float64Array, scale: number): Float64Array {
  const noise = 2 ** -30 * maxAbs(delta);
  return delta.map((x) => {
    const f = Math.fround(x);
    if (!Number.isFinite(f) || x === 0) return 0;
    const e = Math.floor(Math.log2(Math.abs(f)));
    const ulp = 2 ** (Math.max(e, -126) - 23);
    const midpoint = f + Math.sign(x - f || 1) * ulp / 2;
    return Math.abs(x - midpoint) <= noise || Math.abs(x - (f - Math.sign(x - f || 1) * ulp / 2)) <= noise ? Math.abs(scale) * ulp : 0;
  });
}

export function added(w: Float64Array, delta: Float64Array, scale: number): ExpectedMerge {
  return { values: w.map((x, i) => x + scale * delta[i]), magnitude: maxAbs(w) + Math.abs(scale) * maxAbs(delta) };
}

/**
 * A `--dtype` output's other tensors: every float tensor of `names` (stored under `keyOf(name)`)
 * not already expected nor `skipped`, rounded once to `dtype` into `merged`; undefined when all are
 * followed, else why not (a value the dtype cannot hold: the merge is refused; a non-float tensor).
 */
export function convertRest(d: Decoded, names: string[], keyOf: (name: string) => string, skipped: (name: string) => boolean,
  merged: Map<string, ExpectedMerge>, outDtype: OutDtype): Truth | undefined {
  const dtype = OUT_DTYPE[outDtype];
  for (const n of names) {
    const t = d.tensors.get(keyOf(n))!;
    if (merged.has(keyOf(n)) || skipped(n) || t.dtype === dtype) continue;
    if (!['F32', 'F16', 'BF16'].includes(t.dtype)) return { kind: 'unknown', why: `${n} (${t.dtype}) converted to ${outDtype} (not followed here)` };
    const values = t.values.map((x) => roundForDType(x, dtype));
    if (values.some((x, k) => !Number.isFinite(x) && Number.isFinite(t.values[k]))) return { kind: 'invalid', why: `${n}: a value overflows ${outDtype} when converted` };
    merged.set(keyOf(n), { values, magnitude: 0, dtype, exact: true, shape: t.shape, copiedNonFinite: !t.values.every(Number.isFinite) || undefined });
  }
  return undefined;
}

/** Why expected values rounded once to `outDtype` are refused (one is past it), or undefined. */
export function pastDtype(merged: Map<string, ExpectedMerge>, outDtype: OutDtype): Truth | undefined {
  const dtype = OUT_DTYPE[outDtype];
  for (const [key, e] of merged) if (e.values.some((x) => Number.isFinite(x) && !Number.isFinite(roundForDType(x, dtype)))) return { kind: 'invalid', why: `${key}: a merged value past ${outDtype}` };
  return undefined;
}

/** kohya's α/r, where α = 0 means unset (sd-scripts' LoRAModule then takes α = r: scale 1). */
const kohyaScale = (alpha: number, r: number) => (alpha === 0 ? 1 : alpha / r);

// --- building blocks --------------------------------------------------------------------------------

const floatDtype = fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16');
const values = (n: number) => fc.array(roundingValue, { minLength: n, maxLength: n });
const st = (name: string, dtype: FixtureDType, shape: number[], data: number[]): FixtureTensor => ({ name, dtype, shape, data });
/** Values of n cells drawn from a seed (deterministic in the case). */
const from = (seed: number[]) => (n: number, salt: number, scale = 1) => Array.from({ length: n }, (_, i) => scale * seed[(i * 7 + salt) % seed.length] * (1 + ((i * 13 + salt) % 5) / 7));

const OUT = 6;
const IN = 8;

// --- GGUF bases ------------------------------------------------------------------------------------

const LLAMA_META: [string, MetaValue][] = [
  ['general.architecture', { type: 'string', value: 'llama' }],
  ['general.name', { type: 'string', value: 'fuzz llama' }],
  ['llama.block_count', { type: 'u32', value: 1 }],
  ['llama.embedding_length', { type: 'u32', value: IN }],
  ['llama.feed_forward_length', { type: 'u32', value: OUT }],
  ['llama.attention.head_count', { type: 'u32', value: 2 }],
  ['general.file_type', { type: 'u32', value: 1 }],
];

function ggufBase(wType: 'F32' | 'F16', w: number[], norm: number[]): SpecFile {
  return {
    kind: 'gguf',
    build: {
      metadata: LLAMA_META,
      tensors: [
        { name: 'blk.0.ffn_up.weight', type: wType, ne: [IN, OUT], data: tensorData(wType, w) },
        { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [IN], data: tensorData('F32', norm) },
      ],
    },
  };
}

/**
 * What a `comfy.gguf.orig_shape` entry for the merged tensor does (ComfyUI-GGUF's converter writes
 * one for a tensor it stored reshaped): an array of positive integers holding the tensor's OUT·IN
 * values, of 2 to 4 dimensions, is the shape the tensor is merged in (three dimensions seen as the
 * matrix of the first two times the last, as stacked experts are), so where that is not (OUT, IN)
 * the LoRA's update does not fit it; the file is written as stored either way. Anything else (no
 * entry, 1-D, other values) changes nothing.
 */
function origShapeFits(d: Decoded): boolean {
  const kv = d.gguf.get('base.gguf')?.get('comfy.gguf.orig_shape.blk.0.ffn_up.weight');
  if (!kv || !Array.isArray(kv.value)) return true;
  const dims = (kv.value as unknown[]).map((x) => (typeof x === 'bigint' ? Number(x) : x));
  if (dims.length < 2 || dims.length > 4 || !dims.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x > 0)) return true;
  const real = dims as number[];
  if (real.reduce((a, b) => a * b, 1) !== OUT * IN) return true;
  const seen = real.length === 3 ? [real[0] * real[1], real[2]] : real;
  return seen.join() === `${OUT},${IN}`;
}

/** The expected merge of the GGUF worlds' one tensor, unless an orig_shape entry puts it out of the LoRA's reach. */
function ggufMerge(d: Decoded, merged: ExpectedMerge): Truth {
  if (!origShapeFits(d)) return { kind: 'invalid', why: 'an orig_shape entry views the tensor in a shape the LoRA does not fit' };
  return { kind: 'expected', merged: new Map([['/blk.0.ffn_up.weight', merged]]) };
}

const ggufLoraWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({ wType: fc.constantFrom<'F32' | 'F16'>('F32', 'F16'), aType: fc.constantFrom('F32', 'F16'), bType: fc.constantFrom('F32', 'F16'), r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(0, 1, 4, 8, 16), seed: values(48) })
  .map(({ wType, aType, bType, r, alpha, seed }) => {
    const v = from(seed);
    return {
      name: 'gguf base + llama.cpp LoRA',
      files: {
        'base.gguf': ggufBase(wType, v(IN * OUT, 1), v(IN, 2)),
        'lora.gguf': {
          kind: 'gguf',
          build: {
            metadata: [
              ['general.architecture', { type: 'string', value: 'llama' }],
              ['general.type', { type: 'string', value: 'adapter' }],
              ['adapter.type', { type: 'string', value: 'lora' }],
              ['adapter.lora.alpha', { type: 'f32', value: alpha }],
            ],
            tensors: [
              // A as convert_lora_to_gguf stores it: ne [in, r] (torch (r, in)); B: ne [r, out].
              { name: 'blk.0.ffn_up.weight.lora_a', type: aType, ne: [IN, r], data: tensorData(aType, v(IN * r, 3)) },
              { name: 'blk.0.ffn_up.weight.lora_b', type: bType, ne: [r, OUT], data: tensorData(bType, v(r * OUT, 4)) },
            ],
          },
        },
      },
      base: 'base.gguf', adapter: 'lora.gguf', out: 'merged.gguf',
      truth: (d, weight) => {
        const w = d.tensors.get('/blk.0.ffn_up.weight')!.values;
        const a = d.tensors.get('/blk.0.ffn_up.weight.lora_a')!.values;
        const b = d.tensors.get('/blk.0.ffn_up.weight.lora_b')!.values;
        // llama.cpp: scale = weight · α / r, or the weight alone when α is 0; r = ne[0] of lora_b.
        // llama.cpp loads the adapter only when its general.architecture is the model's (a string).
        const arch = (path: string) => d.gguf.get(path)!.get('general.architecture');
        const [ours, theirs] = [arch('base.gguf'), arch('lora.gguf')];
        if (ours?.type !== 8 || theirs?.type !== 8 || ours.value !== theirs.value) return { kind: 'invalid', why: `architectures ${String(ours?.value)} and ${String(theirs?.value)}` };
        // α is an f32 (gguf_get_val_f32 takes no other type).
        const kv = d.gguf.get('lora.gguf')!.get('adapter.lora.alpha');
        if (!kv || kv.type !== 6) return { kind: 'unknown', why: `adapter.lora.alpha ${kv ? `of type ${kv.type}` : 'missing'}` };
        const alphaRead = kv.value as number;
        if (!Number.isFinite(alphaRead)) return { kind: 'invalid', why: `adapter.lora.alpha = ${alphaRead}` };
        const scale = alphaRead === 0 ? weight : (weight * alphaRead) / r;
        return ggufMerge(d, added(w, mm(b, a, OUT, r, IN), scale));
      },
    };
  });

const ggufPeftWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({ wType: fc.constantFrom<'F32' | 'F16'>('F32', 'F16'), fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 4, 8), rslora: fc.boolean(), seed: values(48) })
  .map(({ wType, fDtype, r, alpha, rslora, seed }) => {
    const v = from(seed);
    const m = 'base_model.model.model.layers.0.mlp.up_proj';
    return {
      name: 'gguf base + PEFT LoRA',
      files: {
        'base.gguf': ggufBase(wType, v(IN * OUT, 1), v(IN, 2)),
        'peft/adapter_model.safetensors': { kind: 'safetensors', tensors: [st(`${m}.lora_A.weight`, fDtype, [r, IN], v(r * IN, 3)), st(`${m}.lora_B.weight`, fDtype, [OUT, r], v(OUT * r, 4))] },
        'peft/adapter_config.json': { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: alpha, use_rslora: rslora, target_modules: ['up_proj'] } },
      },
      base: 'base.gguf', adapter: 'peft', out: 'merged.gguf',
      truth: (d, weight) => {
        const w = d.tensors.get('/blk.0.ffn_up.weight')!.values;
        const a = d.tensors.get(`peft/${m}.lora_A.weight`)!.values;
        const b = d.tensors.get(`peft/${m}.lora_B.weight`)!.values;
        const arch = d.gguf.get('base.gguf')!.get('general.architecture');
        if (arch?.value !== 'llama') return { kind: 'unknown', why: `a base of architecture ${String(arch?.value)}` };
        const scale = configScale(d, 'peft/adapter_config.json', 'lora_alpha', r, true);
        if (typeof scale !== 'number') return scale;
        return ggufMerge(d, added(w, mm(b, a, OUT, r, IN), weight * scale));
      },
    };
  });

// --- LyCORIS algorithms in kohya files ----------------------------------------------------------------

const UNET_KEY = 'down_blocks.0.attentions.0.proj_in';
const KOHYA = 'lora_unet_down_blocks_0_attentions_0_proj_in';
type Algo = 'loha' | 'lokr' | 'lokr-decomposed' | 'dora' | 'glora' | 'ia3-out' | 'ia3-in' | 'oft' | 'diff';

const lycorisWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    algo: fc.constantFrom<Algo>('loha', 'lokr', 'lokr-decomposed', 'dora', 'glora', 'ia3-out', 'ia3-in', 'oft', 'diff'),
    wDtype: floatDtype, fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 2, 0.5, 4), seed: values(48),
  })
  .map(({ algo, wDtype, fDtype, r, alpha, seed }) => {
    const v = from(seed);
    const f = (suffix: string, shape: number[], salt: number, scale = 1) => st(`${KOHYA}.${suffix}`, fDtype, shape, v(shape.reduce((a, b) => a * b, 1), salt, scale));
    const alphaT = st(`${KOHYA}.alpha`, 'F32', [], [alpha]);
    const adapter: FixtureTensor[] = [];
    switch (algo) {
      case 'loha': adapter.push(f('hada_w1_a', [OUT, r], 3), f('hada_w1_b', [r, IN], 4), f('hada_w2_a', [OUT, r], 5), f('hada_w2_b', [r, IN], 6), alphaT); break;
      case 'lokr': adapter.push(f('lokr_w1', [2, 2], 3), f('lokr_w2', [3, 4], 4), st(`${KOHYA}.alpha`, 'F32', [], [1e10])); break;
      case 'lokr-decomposed': adapter.push(f('lokr_w1', [2, 2], 3), f('lokr_w2_a', [3, r], 4), f('lokr_w2_b', [r, 4], 5), alphaT); break;
      case 'dora': adapter.push(f('lora_down.weight', [r, IN], 3), f('lora_up.weight', [OUT, r], 4), alphaT, st(`${KOHYA}.dora_scale`, fDtype, [1, IN], v(IN, 5).map((x) => 1 + x / 2))); break;
      case 'glora': adapter.push(f('a1.weight', [IN, r], 3, 0.3), f('a2.weight', [r, IN], 4, 0.3), f('b1.weight', [OUT, r], 5), f('b2.weight', [r, IN], 6), alphaT); break;
      case 'ia3-out': adapter.push(f('weight', [OUT], 3, 0.5), st(`${KOHYA}.on_input`, 'I64', [], [0])); break;
      case 'ia3-in': adapter.push(f('weight', [IN], 3, 0.5), st(`${KOHYA}.on_input`, 'I64', [], [1])); break;
      case 'oft': adapter.push(f('oft_blocks', [3, 2, 2], 3, 0.05), st(`${KOHYA}.alpha`, 'F32', [], [0.002])); break;
      case 'diff': adapter.push(f('diff', [OUT, IN], 3)); break;
    }
    return {
      name: `kohya LyCORIS ${algo}`,
      files: {
        'base.safetensors': { kind: 'safetensors', tensors: [st(`${UNET_KEY}.weight`, wDtype, [OUT, IN], v(OUT * IN, 1)), st('mid_block.attentions.0.proj_out.weight', wDtype, [IN, OUT], v(48, 2)), st('conv_in.bias', wDtype, [4], v(4, 7))] },
        'lycoris.safetensors': { kind: 'safetensors', tensors: adapter },
      },
      base: 'base.safetensors', adapter: 'lycoris.safetensors', out: 'merged.safetensors',
      truth: (d, s) => {
        const key = `/${UNET_KEY}.weight`;
        const w = d.tensors.get(key)!.values;
        const t = (suffix: string) => d.tensors.get(`/${KOHYA}.${suffix}`)!.values;
        const a = () => t('alpha')[0];
        let result: ExpectedMerge;
        switch (algo) {
          case 'loha': {
            // ΔW = (w1a·w1b) ⊙ (w2a·w2b) · α/r, r = rows of hada_w1_b.
            const x = mm(t('hada_w1_a'), t('hada_w1_b'), OUT, r, IN), y = mm(t('hada_w2_a'), t('hada_w2_b'), OUT, r, IN);
            result = added(w, x.map((p, i) => p * y[i]), s * kohyaScale(a(), r));
            break;
          }
          case 'lokr':
          case 'lokr-decomposed': {
            const w1 = t('lokr_w1');
            const w2 = algo === 'lokr' ? t('lokr_w2') : mm(t('lokr_w2_a'), t('lokr_w2_b'), 3, r, 4);
            const kron = new Float64Array(OUT * IN);
            for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) for (let k = 0; k < 3; k++) for (let l = 0; l < 4; l++) kron[(i * 3 + k) * IN + j * 4 + l] = w1[i * 2 + j] * w2[k * 4 + l];
            // Scale exactly 1 when neither factor is decomposed (the stored α is meaningless then).
            result = added(w, kron, algo === 'lokr' ? s : s * kohyaScale(a(), r));
            break;
          }
          case 'dora': {
            // LyCORIS adds ΔW whole and moves the factor toward 1 by the weight: V·(s·(f − 1) + 1).
            const merged = added(w, mm(t('lora_up.weight'), t('lora_down.weight'), OUT, r, IN), kohyaScale(a(), r));
            const m = t('dora_scale');
            const vals = merged.values;
            let minNorm = Infinity;
            for (let c = 0; c < IN; c++) {
              let sq = 0;
              for (let o = 0; o < OUT; o++) sq += vals[o * IN + c] ** 2;
              // The engine takes the norms of V in float64 and refuses a V whose squares pass it.
              if (!Number.isFinite(sq)) return { kind: 'invalid', why: `DoRA norm of input column ${c}: V's squares past float64` };
              // LyCORIS: f = m / (‖V[:, c]‖ + eps) per input column.
              const norm = Math.sqrt(sq);
              minNorm = Math.min(minNorm, norm);
              const f = m[c] / (norm + 2 ** -23);
              for (let o = 0; o < OUT; o++) vals[o * IN + c] *= s * (f - 1) + 1;
            }
            // An error of V's f32 accumulation scales by the factor, at most |s|·(m / ‖V‖ + 1) + 1.
            const factor = Math.abs(s) * (maxAbs(m) / Math.max(minNorm, 2 ** -23) + 1) + 1;
            result = { values: vals, magnitude: merged.magnitude * factor + Math.abs(s) * maxAbs(m) };
            break;
          }
          case 'glora': {
            const wa = mm(mm(w, t('a1.weight'), OUT, IN, r), t('a2.weight'), OUT, r, IN);
            const bb = mm(t('b1.weight'), t('b2.weight'), OUT, r, IN);
            result = added(w, wa.map((x, i) => x + bb[i]), s * kohyaScale(a(), r));
            break;
          }
          case 'ia3-out': { const l = t('weight'); result = { values: w.map((x, i) => x * (1 + s * l[Math.floor(i / IN)])), magnitude: maxAbs(w) * (1 + Math.abs(s) * maxAbs(l)) }; break; }
          case 'ia3-in': { const l = t('weight'); result = { values: w.map((x, i) => x * (1 + s * l[i % IN])), magnitude: maxAbs(w) * (1 + Math.abs(s) * maxAbs(l)) }; break; }
          case 'diff': result = added(w, t('diff'), s); break;
          default: return { kind: 'unknown', why: `${algo} has no truth here` };
        }
        return { kind: 'expected', merged: new Map([[key, result]]) };
      },
    };
  });

// --- PEFT method folders ------------------------------------------------------------------------------

type PeftMethod = 'LOHA' | 'LOKR' | 'VERA' | 'OFT' | 'BOFT' | 'IA3' | 'DEFT' | 'PEANUT';
const Q = 'model.layers.0.self_attn.q_proj';

const peftMethodWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({ method: fc.constantFrom<PeftMethod>('LOHA', 'LOKR', 'VERA', 'OFT', 'BOFT', 'IA3', 'DEFT', 'PEANUT'), wDtype: floatDtype, fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 2, 8), seed: values(48) })
  .map(({ method, wDtype, fDtype, r, alpha, seed }) => {
    const v = from(seed);
    const p = `base_model.model.${Q}`;
    const f = (name: string, shape: number[], salt: number, scale = 1) => st(name, fDtype, shape, v(shape.reduce((a, b) => a * b, 1), salt, scale));
    let tensors: FixtureTensor[];
    let config: Record<string, unknown>;
    switch (method) {
      case 'LOHA':
        tensors = [f(`${p}.hada_w1_a`, [OUT, r], 3), f(`${p}.hada_w1_b`, [r, IN], 4), f(`${p}.hada_w2_a`, [OUT, r], 5), f(`${p}.hada_w2_b`, [r, IN], 6)];
        config = { peft_type: 'LOHA', r, alpha, target_modules: ['q_proj'], rank_dropout: 0, module_dropout: 0 };
        break;
      case 'LOKR':
        tensors = [f(`${p}.lokr_w1`, [2, 2], 3), f(`${p}.lokr_w2`, [3, 4], 4)];
        config = { peft_type: 'LOKR', r, alpha, target_modules: ['q_proj'], decompose_both: false, decompose_factor: -1 };
        break;
      case 'VERA':
        tensors = [f('base_model.vera_A', [r, IN], 3), f('base_model.vera_B', [OUT, r], 4), f(`${p}.vera_lambda_b`, [OUT], 5), f(`${p}.vera_lambda_d`, [r], 6)];
        config = { peft_type: 'VERA', r, target_modules: ['q_proj'], save_projection: true, projection_prng_key: 0, fan_in_fan_out: false };
        break;
      case 'OFT':
        tensors = [f(`${p}.oft_R.weight`, [2, 6], 3, 0.1)];
        config = { peft_type: 'OFT', r: 0, oft_block_size: 4, target_modules: ['q_proj'], coft: false, eps: 6e-5, block_share: false };
        break;
      case 'BOFT':
        tensors = [f(`${p}.boft_R`, [1, 4, 2, 2], 3, 0.1), f(`${p}.boft_s`, [OUT, 1], 4)];
        config = { peft_type: 'BOFT', boft_block_size: 2, boft_block_num: 0, boft_n_butterfly_factor: 1, target_modules: ['q_proj'] };
        break;
      case 'DEFT':
        tensors = [f(`${p}.deft_P`, [OUT, r], 3), f(`${p}.deft_R`, [r, IN], 4)];
        config = { peft_type: 'DEFT', r, alpha, target_modules: ['q_proj'], decomposition_method: 'relu', para: false, fan_in_fan_out: false };
        break;
      case 'PEANUT':
        tensors = [f(`${p}.peanut_A.weight`, [r, OUT], 3), f(`${p}.peanut_B.weight`, [OUT, r], 4)];
        config = { peft_type: 'PEANUT', r, depth: 0, act_fn: 'relu', scaling: alpha, target_modules: ['q_proj'] };
        break;
      default:
        tensors = [f(`${p}.ia3_l`, [OUT, 1], 3)];
        config = { peft_type: 'IA3', target_modules: ['q_proj'], feedforward_modules: [] };
        break;
    }
    return {
      name: `PEFT ${method} folder`,
      files: {
        'base.safetensors': { kind: 'safetensors', tensors: [st(`${Q}.weight`, wDtype, [OUT, IN], v(OUT * IN, 1)), st('model.norm.weight', wDtype, [IN], v(IN, 2))] },
        'adapter/adapter_model.safetensors': { kind: 'safetensors', tensors },
        'adapter/adapter_config.json': { kind: 'json', value: { task_type: 'CAUSAL_LM', base_model_name_or_path: 'fuzz', ...config } },
      },
      base: 'base.safetensors', adapter: 'adapter', out: 'merged.safetensors',
      truth: (d, s) => {
        const key = `/${Q}.weight`;
        const w = d.tensors.get(key)!.values;
        const t = (name: string) => d.tensors.get(`adapter/${name}`)!.values;
        let result: ExpectedMerge;
        // LoHa and LoKr: PEFT's α/r from the config; a LoHa's r is its factors' rank.
        const scale = method === 'LOHA' || method === 'LOKR' ? configScale(d, 'adapter/adapter_config.json', 'alpha', r, method === 'LOHA') : 1;
        if (typeof scale !== 'number') return scale;
        if (method === 'LOHA') {
          const x = mm(t(`${p}.hada_w1_a`), t(`${p}.hada_w1_b`), OUT, r, IN), y = mm(t(`${p}.hada_w2_a`), t(`${p}.hada_w2_b`), OUT, r, IN);
          result = added(w, x.map((q, i) => q * y[i]), s * scale);
        } else if (method === 'LOKR') {
          const w1 = t(`${p}.lokr_w1`), w2 = t(`${p}.lokr_w2`);
          const kron = new Float64Array(OUT * IN);
          for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) for (let k = 0; k < 3; k++) for (let l = 0; l < 4; l++) kron[(i * 3 + k) * IN + j * 4 + l] = w1[i * 2 + j] * w2[k * 4 + l];
          // PEFT's scale is α/r from the config even when neither factor is decomposed.
          result = added(w, kron, s * scale);
        } else if (method === 'VERA') {
          const A = t('base_model.vera_A'), B = t('base_model.vera_B'), lb = t(`${p}.vera_lambda_b`), ld = t(`${p}.vera_lambda_d`);
          const delta = new Float64Array(OUT * IN);
          for (let o = 0; o < OUT; o++) for (let i = 0; i < IN; i++) {
            let sum = 0;
            for (let k = 0; k < r; k++) sum += lb[o] * B[o * r + k] * ld[k] * A[k * IN + i];
            delta[o * IN + i] = sum;
          }
          result = added(w, delta, s);
        } else if (method === 'DEFT' || method === 'PEANUT') {
          // DEFT: ΔW = P·(c·R − relu(P)ᵀ·W), c = alpha/r; PEANuT (depth 0): ΔW = scaling·B·relu(A·W).
          // M = relu(P)ᵀ·W and c·R (DEFT), scaling·relu(A·W) (PEANuT) reach the product rounded to
          // f32, as PEFT holds them (README, DEFT and PEANuT rows): the truth rounds them so too.
          // The truth follows the config as written here; a mutated one is left to the outcome checks.
          let read: Record<string, unknown> | undefined;
          try {
            read = JSON.parse(d.json.get('adapter/adapter_config.json')!) as Record<string, unknown>;
          } catch {
            read = undefined;
          }
          const fields = (c: Record<string, unknown> | undefined) => JSON.stringify(Object.keys(config).map((k) => c?.[k]));
          if (fields(read) !== fields(config)) return { kind: 'unknown', why: 'adapter_config.json changed' };
          const relu = (x: number) => Math.max(x, 0);
          const deft = method === 'DEFT';
          const q = deft ? t(`${p}.deft_P`) : t(`${p}.peanut_B.weight`);
          const right = deft ? q.map(relu) : Float64Array.from({ length: OUT * r }, (_, i) => t(`${p}.peanut_A.weight`)[(i % r) * OUT + Math.floor(i / r)]);
          const m = new Float64Array(r * IN);
          for (let k = 0; k < r; k++) for (let i = 0; i < IN; i++) for (let o = 0; o < OUT; o++) m[k * IN + i] += right[o * r + k] * w[o * IN + i];
          const c = deft ? alpha / r : alpha;
          const inner = deft ? t(`${p}.deft_R`).map((x, i) => Math.fround(c * x) - Math.fround(m[i])) : m.map((x) => Math.fround(c * relu(x)));
          result = added(w, mm(q, inner, OUT, r, IN), s);
          result.magnitude += Math.abs(s) * r * maxAbs(q) * (deft ? c * maxAbs(t(`${p}.deft_R`)) + maxAbs(m) : c * maxAbs(m));
        } else {
          return { kind: 'unknown', why: `${method} has no truth here` };
        }
        return { kind: 'expected', merged: new Map([[key, result]]) };
      },
    };
  });

// --- model folders ------------------------------------------------------------------------------------

const L = 'model.layers.0';

/** A sharded Llama folder (two shards, index, config.json) with a PEFT LoRA on q_proj. */
const shardedWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({ wDtype: floatDtype, fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 4, 8), tied: fc.boolean(), seed: values(48) })
  .map(({ wDtype, fDtype, r, alpha, tied, seed }) => {
    const v = from(seed);
    const shard1 = [st(`${L}.self_attn.q_proj.weight`, wDtype, [OUT, IN], v(OUT * IN, 1)), st('model.embed_tokens.weight', wDtype, [4, IN], v(4 * IN, 2))];
    const shard2 = [st(`${L}.mlp.up_proj.weight`, wDtype, [OUT, IN], v(OUT * IN, 3)), st('model.norm.weight', wDtype, [IN], v(IN, 4))];
    const weightMap = Object.fromEntries([...shard1.map((t) => [t.name, 'model-00001-of-00002.safetensors']), ...shard2.map((t) => [t.name, 'model-00002-of-00002.safetensors'])]);
    const m = `base_model.model.${L}.self_attn.q_proj`;
    return {
      name: 'sharded transformers folder + PEFT LoRA',
      files: {
        'model/config.json': { kind: 'json', value: { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: wDtype === 'F32' ? 'float32' : wDtype === 'F16' ? 'float16' : 'bfloat16', hidden_size: IN, num_hidden_layers: 1, vocab_size: 4, tie_word_embeddings: tied } },
        'model/model-00001-of-00002.safetensors': { kind: 'safetensors', tensors: shard1, metadata: { format: 'pt' } },
        'model/model-00002-of-00002.safetensors': { kind: 'safetensors', tensors: shard2, metadata: { format: 'pt' } },
        'model/model.safetensors.index.json': { kind: 'json', value: { metadata: { total_size: 2 * (OUT * IN + 4 * IN + OUT * IN + IN) }, weight_map: weightMap } },
        'peft/adapter_model.safetensors': { kind: 'safetensors', tensors: [st(`${m}.lora_A.weight`, fDtype, [r, IN], v(r * IN, 5)), st(`${m}.lora_B.weight`, fDtype, [OUT, r], v(OUT * r, 6))] },
        'peft/adapter_config.json': { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: alpha, target_modules: ['q_proj'] } },
      },
      base: 'model', adapter: 'peft', out: 'merged',
      truth: (d, s) => {
        const key = `model/${L}.self_attn.q_proj.weight`;
        const w = d.tensors.get(key)!.values;
        const scale = configScale(d, 'peft/adapter_config.json', 'lora_alpha', r, true);
        if (typeof scale !== 'number') return scale;
        return { kind: 'expected', merged: new Map([[key, added(w, mm(d.tensors.get(`peft/${m}.lora_B.weight`)!.values, d.tensors.get(`peft/${m}.lora_A.weight`)!.values, OUT, r, IN), s * scale)]]) };
      },
    };
  });

/** A diffusers pipeline folder (model_index.json, unet, text_encoder) with a kohya LoRA on the UNet and the text encoder. */
const pipelineWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({ wDtype: floatDtype, fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 2, 8), seed: values(48) })
  .map(({ wDtype, fDtype, r, alpha, seed }) => {
    const v = from(seed);
    const te = 'text_model.encoder.layers.0.self_attn.q_proj';
    const kte = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
    const lora = (k: string, out: number, inF: number, salt: number) => [st(`${k}.lora_down.weight`, fDtype, [r, inF], v(r * inF, salt)), st(`${k}.lora_up.weight`, fDtype, [out, r], v(out * r, salt + 1)), st(`${k}.alpha`, 'F32', [], [alpha])];
    return {
      name: 'diffusers pipeline folder + kohya LoRA',
      files: {
        'pipe/model_index.json': { kind: 'json', value: { _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.30.0', unet: ['diffusers', 'UNet2DConditionModel'], text_encoder: ['transformers', 'CLIPTextModel'], scheduler: ['diffusers', 'PNDMScheduler'] } },
        'pipe/unet/config.json': { kind: 'json', value: { _class_name: 'UNet2DConditionModel' } },
        'pipe/unet/diffusion_pytorch_model.safetensors': { kind: 'safetensors', tensors: [st(`${UNET_KEY}.weight`, wDtype, [OUT, IN], v(OUT * IN, 1)), st('conv_in.bias', wDtype, [4], v(4, 2))] },
        'pipe/text_encoder/config.json': { kind: 'json', value: { architectures: ['CLIPTextModel'] } },
        'pipe/text_encoder/model.safetensors': { kind: 'safetensors', tensors: [st(`${te}.weight`, wDtype, [IN, IN], v(IN * IN, 3))] },
        'pipe/scheduler/scheduler_config.json': { kind: 'json', value: { _class_name: 'PNDMScheduler' } },
        'lora.safetensors': { kind: 'safetensors', tensors: [...lora(KOHYA, OUT, IN, 4), ...lora(kte, IN, IN, 6)] },
      },
      base: 'pipe', adapter: 'lora.safetensors', out: 'merged',
      truth: (d, s) => {
        const t = (name: string) => d.tensors.get(`/${name}`)!.values;
        const unet = `pipe/unet/${UNET_KEY}.weight`, text = `pipe/text_encoder/${te}.weight`;
        return {
          kind: 'expected',
          merged: new Map([
            [unet, added(d.tensors.get(unet)!.values, mm(t(`${KOHYA}.lora_up.weight`), t(`${KOHYA}.lora_down.weight`), OUT, r, IN), s * kohyaScale(t(`${KOHYA}.alpha`)[0], r))],
            [text, added(d.tensors.get(text)!.values, mm(t(`${kte}.lora_up.weight`), t(`${kte}.lora_down.weight`), IN, r, IN), s * kohyaScale(t(`${kte}.alpha`)[0], r))],
          ]),
        };
      },
    };
  });

/** A bitsandbytes 8-bit Llama folder (int8 weight, SCB, weight_format; quantization_config) with a PEFT LoRA. */
const bnbWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({ r: fc.integer({ min: 1, max: 3 }), q: fc.array(fc.integer({ min: -127, max: 127 }), { minLength: OUT * IN, maxLength: OUT * IN }), scb: fc.array(fc.double({ min: 0.1, max: 4, noNaN: true }), { minLength: OUT, maxLength: OUT }), seed: values(48) })
  .map(({ r, q, scb, seed }) => {
    const v = from(seed);
    const m = `${L}.self_attn.q_proj`;
    return {
      name: 'bitsandbytes 8-bit folder + PEFT LoRA',
      files: {
        'model/config.json': { kind: 'json', value: { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16', quantization_config: { quant_method: 'bitsandbytes', load_in_8bit: true, llm_int8_threshold: 6.0 } } },
        'model/model.safetensors': {
          kind: 'safetensors', metadata: { format: 'pt' },
          tensors: [
            { name: `${m}.weight`, dtype: 'I8', shape: [OUT, IN], data: new Uint8Array(Int8Array.from(q).buffer) },
            st(`${m}.SCB`, 'F32', [OUT], scb),
            { name: `${m}.weight_format`, dtype: 'U8', shape: [], data: new Uint8Array([0]) },
            st('model.norm.weight', 'F16', [IN], v(IN, 2)),
          ],
        },
        'peft/adapter_model.safetensors': { kind: 'safetensors', tensors: [st(`base_model.model.${m}.lora_A.weight`, 'F32', [r, IN], v(r * IN, 3)), st(`base_model.model.${m}.lora_B.weight`, 'F32', [OUT, r], v(OUT * r, 4))] },
        'peft/adapter_config.json': { kind: 'json', value: { peft_type: 'LORA', r, lora_alpha: 2 * r, target_modules: ['q_proj'] } },
      },
      base: 'model', adapter: 'peft', out: 'merged',
      // The output is a float checkpoint whose tensor set differs from the stored one; covered by the outcome properties only.
      truth: () => ({ kind: 'unknown', why: 'bitsandbytes output is checked by bnb-base.test.ts' }),
    };
  });

// --- fp8 bases: W' rounded once to f32 before quantizing ------------------------------------------------

export type DecodedTensor = Decoded['tensors'] extends Map<string, infer T> ? T : never;

/** A LoRA module on a layer (OUT × IN unless given): its factors as stored, rank and whole scale (weight · α/r). */
export interface LoraTarget {
  layer: string;
  a: DecodedTensor;
  b: DecodedTensor;
  rank: number;
  scale: number;
  rows?: number;
  cols?: number;
}

const loraDelta = (t: LoraTarget) => mm(t.b.values, t.a.values, t.rows ?? OUT, t.rank, t.cols ?? IN);

/**
 * W' = W + s·B·A, W given as doubles (fp8 codes times their scales), rounded once to `dtype` (f32
 * unless given) from the exact sum (exact-truth.ts): re-quantizing reads it, and an f32 off by one
 * ulp moves a block's maximum, its scale, and codes on ties. W alone where `t` is undefined. Null
 * where an input or W' is not finite.
 */
export function mergedF32(w: Float64Array, t: LoraTarget | undefined, dtype: 'F32' | 'F16' | 'BF16' = 'F32', rows = t?.rows ?? OUT, cols = t?.cols ?? IN): Float64Array | null {
  if (![w, ...(t ? [t.a.values, t.b.values] : [])].every((v) => v.every(Number.isFinite)) || (t && !Number.isFinite(t.scale))) return null;
  const bits = exactMergeBitsOf({
    name: t?.layer ?? 'W', rows, cols, layout: 'out-in', outDtype: dtype,
    terms: t ? [{ a: { dtype: t.a.dtype as FloatDType, data: t.a.bytes }, b: { dtype: t.b.dtype as FloatDType, data: t.b.bytes }, rank: t.rank, scale: t.scale }] : [],
  }, w);
  const values = dtype === 'F32' ? Float64Array.from(new Float32Array(bits.buffer)) : decodeValues(new Uint8Array(Uint16Array.from(bits).buffer), dtype);
  return values.every(Number.isFinite) ? values : null;
}

// --- ComfyUI per-layer quantization (comfy_quant) -------------------------------------------------------

/**
 * Two namings Comfy-Org's per-layer quantized files come in: FLUX.2 dev as a checkpoint (the
 * transformer under `model.diffusion_model.`) and Qwen-Image as a diffusion model alone (bare
 * names, biased projections). `quant`: the quantized layer the adapter changes; `quant2`: a
 * quantized layer it leaves alone; `plain`: a layer these files keep in bf16 (a modulation).
 */
const COMFY_MODELS = {
  'FLUX.2': { prefix: 'model.diffusion_model.', quant: 'double_blocks.0.img_attn.qkv', quant2: 'double_blocks.0.img_mlp.0', plain: 'double_stream_modulation_img.lin', bias: false, file: 'flux2_dev' },
  'Qwen-Image': { prefix: '', quant: 'transformer_blocks.0.attn.to_q', quant2: 'transformer_blocks.0.img_mlp.net.0.proj', plain: 'transformer_blocks.0.img_mod.1', bias: true, file: 'qwen_image' },
} as const;
/** ComfyUI's checkpoint loader holds the keys under this; its loader of a lone diffusion model without. */
const DIFFUSION_MODEL = 'model.diffusion_model.';
const E4M3FN = '{"format": "float8_e4m3fn"}';

/** The comfy_quant formats these worlds write layers in (README, "ComfyUI's per-layer quantization"). */
type ComfyFormat = 'float8_e4m3fn' | 'float8_e5m2' | 'mxfp8' | 'nvfp4' | 'int8_tensorwise';
/** Formats loramerge does not read, named in configs (convrot_w4a4 also written as a layer of its own). */
const UNREAD_FORMATS = ['convrot_w4a4', 'asym_w4a8_int8', 'awq_w4a16'];
/**
 * Each format's real weight shapes here (rows, cols): the per-tensor ones small; mxfp8 (32 inputs a
 * block) and nvfp4 (16) with one or two column tiles of swizzled scales, padded to 128 rows. The
 * tall ones span several row slabs of COMFY_SLAB_BYTES (512 fp8 rows of 8, 256 nvfp4 rows of 16
 * bytes, 256 int8 rows of 8 codes read as bf16): a per-tensor fp8, nvfp4 or int8 layer merged there
 * takes the two passes, one over its slabs for the tensor's maximum, one for the codes; a per-row
 * int8 layer's scales are written slab by slab (int8 is tall in two draws of three).
 */
const COMFY_SHAPES: Record<ComfyFormat, [number, number][]> = {
  float8_e4m3fn: [[OUT, IN], [1024, 8]], float8_e5m2: [[OUT, IN], [1024, 8]], int8_tensorwise: [[OUT, IN], [1024, 8], [1024, 8]],
  mxfp8: [[32, 64], [32, 160]], nvfp4: [[16, 32], [32, 80], [384, 32]],
};
/** The smallest row slab a merge takes (the comfy_quant worlds' in-process merges run with it). */
const COMFY_SLAB_BYTES = 4096;
/** Bytes a value of each format takes in the rows a slab is cut from (int8 codes are read as bf16). */
const COMFY_SLAB_ROW_BYTES: Record<ComfyFormat, number> = { float8_e4m3fn: 1, float8_e5m2: 1, mxfp8: 1, nvfp4: 0.5, int8_tensorwise: 2 };

/** What makes a world's changed layer hostile: one part of its quantization written wrong. */
type ComfyHostile =
  | { part: 'config bytes'; text: string | number[] }
  | { part: 'config dtype'; dtype: 'I8' | 'F32' | 'U8 2-D' }
  | { part: 'header'; text: string }
  | { part: 'header layer'; value: unknown }
  | { part: 'format'; format: string }
  | { part: 'convrot'; where: 'top' | 'params' }
  | { part: 'scale dtype'; dtype: 'BF16' | 'F16' | 'F64' | 'F8_E4M3' }
  | { part: 'scale shape'; shape: number[] }
  | { part: 'scale value'; value: number; at: number }
  | { part: 'no scale' }
  | { part: 'block dtype'; dtype: 'U8' | 'F8_E4M3' | 'F32' | 'I8' }
  | { part: 'unswizzled' }
  | { part: 'block byte'; byte: number; at: number }
  | { part: 'padding'; byte: number; at: number }
  | { part: 'no block scale' }
  | { part: 'weight dtype'; dtype: 'BF16' | 'F8_E5M2' | 'U8' | 'I8' | 'F8_E4M3' }
  | { part: 'weight shape' }
  | { part: 'input scale'; value: number }
  | { part: 'no config' }
  | { part: 'no configs' };

/** The hostile parts that fall on a layer of `format` (scale parts: nvfp4's weight_scale_2; block parts: mxfp8's and nvfp4's swizzled scales). */
const comfyHostile = (format: ComfyFormat): fc.Arbitrary<ComfyHostile> => {
  const blocks = format === 'mxfp8' || format === 'nvfp4';
  const scalar = format !== 'mxfp8';
  return fc.oneof(
    fc.record({ part: fc.constant('config bytes' as const), text: fc.constantFrom<string | number[]>(
      '{"format": "nvfp4"}', '{"format": "mxfp8"}', '{"format": "float8_e5m2"}', '{"format": "int8_tensorwise"}', '{"format": ""}', '{"format": 8}',
      '{"fmt": "fp8"}', '{"format": float8_e4m3fn}', '"float8_e4m3fn"', '[]', 'null', '', `${E4M3FN} `, '{"format": "float8_e4m3fn", "format": "nvfp4"}',
      '{"format": "float8_e4m3fn", "full_precision_matrix_mult": true}', [0xff, 0xfe, 0x7b, 0x7d], '{"format": "float8_e4m3fn"}\u0000',
    ) }),
    fc.record({ part: fc.constant('config dtype' as const), dtype: fc.constantFrom<'I8' | 'F32' | 'U8 2-D'>('I8', 'F32', 'U8 2-D') }),
    fc.record({ part: fc.constant('header' as const), text: fc.constantFrom('not json', '{"layers": ["x"]}', '{"layers": null}', '{}', 'null', '[]', '5', '{"layers": {}}', '{"format_version": "1.0", "layers": {"LAYER": {"format": "nvfp4"}}}', '{"layers": {"LAYER": {"format": "float8_e4m3fn"}, "LAYER": {"format": "mxfp8"}}}') }),
    fc.record({ part: fc.constant('header layer' as const), value: fc.constantFrom<unknown>(E4M3FN, 'float8_e4m3fn', null, 8, [], {}, { format: 'nvfp4' }, { format: null }, { format: 'float8_e4m3fn', full_precision_matrix_mult: true }, { format: 'int8_tensorwise', params: { convrot: true } }) }),
    // The config (tensor and header) names another format than the tensors are stored in, or one not read.
    { weight: 2, arbitrary: fc.record({ part: fc.constant('format' as const), format: fc.constantFrom('float8_e4m3fn', 'float8_e5m2', 'mxfp8', 'nvfp4', 'int8_tensorwise', ...UNREAD_FORMATS) }) },
    ...(format === 'int8_tensorwise' ? [fc.record({ part: fc.constant('convrot' as const), where: fc.constantFrom<'top' | 'params'>('top', 'params') })] : []),
    ...(scalar ? [
      fc.record({ part: fc.constant('scale dtype' as const), dtype: fc.constantFrom<'BF16' | 'F16' | 'F64' | 'F8_E4M3'>('BF16', 'F16', 'F64', 'F8_E4M3') }),
      { weight: 2, arbitrary: fc.record({ part: fc.constant('scale shape' as const), shape: fc.constantFrom<number[]>([1], [2], [OUT], [1, 1], [0], [1, OUT], [OUT, 2]) }) },
      { weight: 2, arbitrary: fc.record({ part: fc.constant('scale value' as const), value: fc.constantFrom(0, -0, -0.001, NaN, Infinity, 1e-40, 3e38), at: fc.nat(OUT - 1) }) },
      fc.constant<ComfyHostile>({ part: 'no scale' }),
    ] : []),
    ...(blocks ? [
      fc.record({ part: fc.constant('block dtype' as const), dtype: fc.constantFrom<'U8' | 'F8_E4M3' | 'F32' | 'I8'>('U8', 'F8_E4M3', 'F32', 'I8') }),
      fc.constant<ComfyHostile>({ part: 'unswizzled' }),
      // An mxfp8 exponent 0 (scale 0), 1, 255 (NaN), 254 (past float32 with large codes); an nvfp4 scale NaN, −0, negative, 448.
      { weight: 3, arbitrary: fc.record({ part: fc.constant('block byte' as const), byte: fc.constantFrom(...(format === 'mxfp8' ? [0, 1, 255, 254, 160] : [0x7f, 0xff, 0x80, 0xb8, 0x7e, 0])), at: fc.nat(200) }) },
      fc.record({ part: fc.constant('padding' as const), byte: fc.constantFrom(1, 127, 255, 0x7f), at: fc.nat(400) }),
      fc.constant<ComfyHostile>({ part: 'no block scale' }),
    ] : []),
    fc.record({ part: fc.constant('weight dtype' as const), dtype: fc.constantFrom<'BF16' | 'F8_E5M2' | 'U8' | 'I8' | 'F8_E4M3'>('BF16', 'F8_E5M2', 'U8', 'I8', 'F8_E4M3') }),
    fc.constant<ComfyHostile>({ part: 'weight shape' }),
    // The calibrated activation range, kept as it is (left out dequantized) whatever it holds.
    fc.record({ part: fc.constant('input scale' as const), value: fc.constantFrom(NaN, -1, 0, Infinity) }),
    fc.constant<ComfyHostile>({ part: 'no config' }),
    fc.constant<ComfyHostile>({ part: 'no configs' }),
  );
};

const isJsonObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A JSON value for a message: a string or number itself, anything else its kind (it may be nested too deep to print). */
const jsonKind = (x: unknown) => (typeof x === 'string' ? JSON.stringify(x) : typeof x === 'number' ? String(x) : Array.isArray(x) ? 'an array' : x === null ? 'null' : typeof x);

/**
 * The config at `path` of a case's output as its truth reads it, or unknown: where a config of
 * `depthChecked` nests past 64 levels (the merge refuses it; the texts are not compared) or
 * `path` is not JSON.
 */
export function configToCompare(d: Decoded, path: string, depthChecked: readonly string[]): { config: Record<string, unknown> } | Truth {
  if (depthChecked.some((p) => nestingDepth(d.json.get(p) ?? '') > 64)) return { kind: 'unknown', why: 'a config nests too deep to compare' };
  try {
    return { config: JSON.parse(d.json.get(path)!) as Record<string, unknown> };
  } catch {
    return { kind: 'unknown', why: `${path.slice(path.lastIndexOf('/') + 1)} is not JSON` };
  }
}

/** How deep a JSON text nests (brackets outside strings). */
export function nestingDepth(text: string): number {
  let depth = 0, deepest = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === '[' || ch === '{') deepest = Math.max(deepest, ++depth);
    else if (ch === ']' || ch === '}') depth--;
  }
  return deepest;
}

/** A layer config's format as ComfyUI reads it: a JSON object's non-empty "format" string, or why it is none. */
function layerFormat(config: unknown): string | { why: string } {
  if (!isJsonObject(config)) return { why: `the config is ${jsonKind(config)}, not an object` };
  const { format } = config;
  return typeof format === 'string' && format !== '' ? format : { why: `the config's format is ${jsonKind(format)}` };
}

/** f32's largest finite value. */
const F32_MAX = 3.4028234663852886e38;

/** One quantized layer as the truth reads it (README, each format's rules). */
interface ComfyLayer {
  rows: number;
  cols: number;
  /** W in float64, or why the merge is refused where the layer is read (merged or dequantized). */
  real: () => Float64Array | string;
  /** The default output of the merged layer from W' (rounded to f32): its tensors quantized again, or why it is refused. */
  requantize: (w: Float64Array) => [string, ExpectedMerge][] | string;
  /** Outside what this reference decides. */
  undecided?: string;
}
/** A layer's reading: the layer, a form not read (refused where changed or dequantized), or a refusal of the file. */
type ComfyReading = ComfyLayer | { unread: string } | { invalid: string } | { unknown: string };
type ComfyReader = (tensor: (name: string) => DecodedTensor | undefined, layer: string, config: Record<string, unknown>) => ComfyReading;

const exactly = (values: ArrayLike<number>): ExpectedMerge => ({ values: Float64Array.from(values), magnitude: 0, exact: true });

/** float8_e4m3fn / float8_e5m2: fp8 codes of a matrix (or folded kernel) times one weight_scale of shape [] or [1]. */
const perTensorFp8 = (codes: 'F8_E4M3' | 'F8_E5M2'): ComfyReader => (tensor, layer) => {
  const w = tensor(`${layer}.weight`)!;
  if (w.dtype !== codes) return { invalid: `${layer}.weight is ${w.dtype}, its config ${codes}` };
  if (w.shape.length < 2) return { unread: `${layer}.weight of shape [${w.shape.join(', ')}]` };
  const s = tensor(`${layer}.weight_scale`);
  if (!s) return { invalid: `${layer}.weight_scale is missing` };
  if (!['F32', 'BF16', 'F16'].includes(s.dtype)) return { invalid: `${layer}.weight_scale is ${s.dtype}, not a float of 32 or 16 bits` };
  if (s.values.length !== 1) return { invalid: `${layer}.weight_scale holds ${s.values.length} values, not one` };
  const scale = s.values[0];
  if (!(Number.isFinite(scale) && scale >= 0)) return { invalid: `${layer}.weight_scale is ${scale}` };
  const decode = codes === 'F8_E5M2' ? e5m2Value : e4m3Value;
  return {
    rows: w.shape[0], cols: w.shape.slice(1).reduce((a, b) => a * b, 1),
    // One value in more dimensions: ComfyUI would broadcast it; loramerge names [] and [1].
    ...(s.shape.length > 1 ? { undecided: `${layer}.weight_scale of shape [${s.shape.join(', ')}]` } : {}),
    real: () => Float64Array.from(w.bytes, (b) => decode(b) * scale),
    requantize: (merged) => {
      const again = comfyRecalculated(merged, s.dtype as 'F32' | 'F16' | 'BF16', codes);
      if ('why' in again) return again.why;
      return [[`/${layer}.weight`, exactly(again.codes)], ...(again.scale !== undefined ? [[`/${layer}.weight_scale`, exactly([again.scale])] as [string, ExpectedMerge]] : [])];
    },
  };
};

/** The swizzled block-scale tensor of a rows × blocks grid, `grid` row-major (cuBLAS' layout: blockedOrder), `pad` in the padding. */
const swizzled = (grid: ArrayLike<number>, rows: number, blocks: number, pad = 0) => Uint8Array.from(blockedOrder(rows, blocks).order, (at) => (at < 0 ? pad : grid[at]));

/**
 * mxfp8: F8_E4M3 codes (rows, cols), both multiples of 32; U8 e8m0 exponents per 32 inputs of a
 * row, swizzled; W = code × 2^(e − 127) (e = 0: 0, 255: NaN, refused where read; a product past
 * float32 refused). Merged: comfyMxfp8Requantize, a non-zero block whose exponent is 0 refused.
 */
const mxfp8Reader: ComfyReader = (tensor, layer) => {
  const w = tensor(`${layer}.weight`)!;
  const [rows, cols] = w.shape;
  if (w.dtype !== 'F8_E4M3' || w.shape.length !== 2 || rows % 32 !== 0 || cols % 32 !== 0) return { invalid: `${layer}.weight is ${w.dtype} [${w.shape.join(', ')}], not mxfp8 codes` };
  const s = tensor(`${layer}.weight_scale`);
  const want = blockedOrder(rows, cols / 32).shape;
  if (!s || s.dtype !== 'U8' || s.shape.join() !== want.join()) return { invalid: `${layer}.weight_scale is ${s ? `${s.dtype} [${s.shape.join(', ')}]` : 'missing'}, not U8 [${want.join(', ')}]` };
  const grid = unswizzled(s, rows, cols / 32);
  return {
    rows, cols,
    real: () => {
      const nan = grid.indexOf(255);
      if (nan >= 0) return `${layer}.weight_scale holds the e8m0 255 (NaN) for row ${Math.floor(nan / (cols / 32))}`;
      const values = Float64Array.from(w.bytes, (b, i) => e4m3Value(b) * e8m0Value(grid[Math.floor(i / cols) * (cols / 32) + Math.floor((i % cols) / 32)]));
      const past = values.findIndex((x) => Math.abs(x) > F32_MAX);
      return past >= 0 ? `${layer}.weight[${past}] = ${values[past]}, beyond float32` : values;
    },
    requantize: (merged) => {
      const { exponents, codes } = comfyMxfp8Requantize(merged, rows, cols);
      const f32 = merged.map(Math.fround);
      for (let b = 0; b < exponents.length; b++) {
        const at = Math.floor(b / (cols / 32)) * cols + (b % (cols / 32)) * 32;
        if (exponents[b] === 0 && f32.subarray(at, at + 32).some((x) => x !== 0)) return `${layer}: a merged block too small for an e8m0 scale`;
      }
      return [[`/${layer}.weight`, exactly(codes)], [`/${layer}.weight_scale`, exactly(swizzled(exponents, rows, cols / 32))]];
    },
  };
};

/**
 * nvfp4: U8 (rows, cols/2), element 2k in the high nibble, rows and cols multiples of 16; F8_E4M3
 * block scales per 16 inputs, swizzled (NaN refused where read, negative ones read as they are);
 * weight_scale_2 one F32, finite and not negative, f32(448 × it) finite. W as comfy_kitchen
 * dequantizes it: f32(e2m1 × f32(block scale × weight_scale_2)), code 8 −0.
 * Merged: comfyNvfp4Requantize, a weight_scale_2 of 0 refused.
 */
const nvfp4Reader: ComfyReader = (tensor, layer) => {
  const w = tensor(`${layer}.weight`)!;
  if (w.dtype !== 'U8' || w.shape.length !== 2 || w.shape[0] % 16 !== 0 || w.shape[1] % 8 !== 0) return { invalid: `${layer}.weight is ${w.dtype} [${w.shape.join(', ')}], not nvfp4 codes` };
  const rows = w.shape[0], cols = w.shape[1] * 2, blocks = cols / 16;
  const s = tensor(`${layer}.weight_scale`);
  const want = blockedOrder(rows, blocks).shape;
  if (!s || s.dtype !== 'F8_E4M3' || s.shape.join() !== want.join()) return { invalid: `${layer}.weight_scale is ${s ? `${s.dtype} [${s.shape.join(', ')}]` : 'missing'}, not F8_E4M3 [${want.join(', ')}]` };
  const g = tensor(`${layer}.weight_scale_2`);
  if (!g || g.dtype !== 'F32' || g.values.length !== 1 || g.shape.length > 1) return { invalid: `${layer}.weight_scale_2 is ${g ? `${g.dtype} [${g.shape.join(', ')}]` : 'missing'}` };
  const global = g.values[0];
  if (!(Number.isFinite(global) && global >= 0)) return { invalid: `${layer}.weight_scale_2 is ${global}` };
  if (!Number.isFinite(Math.fround(448 * global))) return { invalid: `${layer}.weight_scale_2 is ${global}: times 448 beyond float32` };
  const grid = unswizzled(s, rows, blocks);
  return {
    rows, cols,
    real: () => {
      const nan = grid.findIndex((b) => (b & 0x7f) === 0x7f);
      if (nan >= 0) return `${layer}.weight_scale holds NaN for row ${Math.floor(nan / blocks)}`;
      return Float64Array.from({ length: rows * cols }, (_, i) => comfyNvfp4Value(i % 2 === 0 ? w.bytes[i >> 1] >> 4 : w.bytes[i >> 1] & 0x0f, grid[Math.floor(i / cols) * blocks + Math.floor((i % cols) / 16)], global));
    },
    requantize: (merged) => {
      const s2 = Math.fround(maxAbs(merged.map(Math.fround)) / (448 * 6));
      if (!(s2 > 0)) return `${layer}: the merged weight's weight_scale_2 is ${s2}`;
      const again = comfyNvfp4Requantize(merged, rows, cols);
      return [[`/${layer}.weight`, exactly(again.packed)], [`/${layer}.weight_scale`, exactly(Array.from(again.scales, e4m3Value))], [`/${layer}.weight_scale_2`, exactly([again.s2])]];
    },
  };
};

/**
 * int8_tensorwise: I8 codes (rows, cols), weight_scale F32 of shape [] or [rows, 1], finite and not
 * negative; W = q × scale. Not read: convrot configs, a weight not a matrix, one value in another
 * shape or a row vector [rows], a scale not F32. Merged: comfyInt8Requantize, per row where the
 * scale has a dimension.
 */
const int8Reader: ComfyReader = (tensor, layer, config) => {
  const w = tensor(`${layer}.weight`)!;
  if (w.dtype !== 'I8') return { invalid: `${layer}.weight is ${w.dtype}, not I8` };
  const convrot = config.convrot ?? (isJsonObject(config.params) ? config.params.convrot : undefined);
  if (convrot !== undefined && convrot !== null && typeof convrot !== 'boolean') return { unknown: `${layer}: convrot is ${jsonKind(convrot)}` };
  if (convrot) return { unread: `${layer}: a convrot layer` };
  if (w.shape.length !== 2) return { unread: `${layer}.weight of shape [${w.shape.join(', ')}]` };
  const [rows, cols] = w.shape;
  const s = tensor(`${layer}.weight_scale`);
  if (!s) return { invalid: `${layer}.weight_scale is missing` };
  const perRow = s.shape.length === 2 && s.shape[0] === rows && s.shape[1] === 1;
  if (s.shape.length !== 0 && !perRow) {
    if (s.values.length === 1 || (s.shape.length === 1 && s.shape[0] === rows)) return { unread: `${layer}.weight_scale of shape [${s.shape.join(', ')}], patched by ComfyUI into [${rows}, 1]` };
    return { invalid: `${layer}.weight_scale of shape [${s.shape.join(', ')}]` };
  }
  if (s.dtype !== 'F32') return { unread: `${layer}.weight_scale is ${s.dtype}` };
  if (s.values.some((x) => !(Number.isFinite(x) && x >= 0))) return { invalid: `${layer}.weight_scale holds a scale NaN, infinite or negative` };
  return {
    rows, cols,
    real: () => Float64Array.from(w.values, (q, i) => q * s.values[perRow ? Math.floor(i / cols) : 0]),
    requantize: (merged) => {
      const again = comfyInt8Requantize(merged, rows, perRow);
      return [[`/${layer}.weight`, exactly(again.codes)], [`/${layer}.weight_scale`, exactly(again.scales)]];
    },
  };
};

const COMFY_READERS: Record<string, ComfyReader> = {
  float8_e4m3fn: perTensorFp8('F8_E4M3'), float8_e5m2: perTensorFp8('F8_E5M2'), mxfp8: mxfp8Reader, nvfp4: nvfp4Reader, int8_tensorwise: int8Reader,
};

/**
 * The truth of a ComfyUI per-layer quantized base (README, "ComfyUI's per-layer quantization"),
 * read from the decoded files: the layers' configs from `<m>.comfy_quant` tensors and the header's
 * `_quantization_metadata` (which replaces them layer by layer, its names matched with or without
 * `model.diffusion_model.`); each layer read by its format's rule (COMFY_READERS), anything else
 * not read. Merged into: W' = W + ΔW rounded once to f32 and quantized again by the format's rule,
 * everything else byte for byte and the header kept; with `--dtype bf16` every read weight
 * dequantized (W' or W rounded once to bf16), its weight_scale, weight_scale_2, comfy_quant and
 * input_scale and the header entry left out.
 */
function comfyQuantTruth(d: Decoded, base: string, targets: LoraTarget[], outDtype: OutDtype | undefined): Truth {
  const tensor = (name: string) => d.tensors.get(`/${name}`);
  const names = [...d.tensors.keys()].map((k) => k.slice(1)).filter((k) => !k.startsWith('lora_unet_') && !k.startsWith('diffusion_model.'));
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const D = outDtype && OUT_DTYPE[outDtype];
  let undecided: string | undefined;

  const configs = new Map<string, { format: string; config: Record<string, unknown> }>();
  for (const name of names.filter((n) => n.endsWith('.comfy_quant'))) {
    const t = tensor(name)!;
    if (t.dtype !== 'U8' || t.shape.length !== 1 || t.bytes.length > 4096) return invalid(`${name} is ${t.dtype} [${t.shape.join(', ')}], not the U8 bytes of a JSON object`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(t.bytes);
    } catch {
      return invalid(`${name} is not UTF-8`);
    }
    if (nestingDepth(text) > MAX_CONFIG_NESTING) return invalid(`${name} nests deeper than MAX_CONFIG_NESTING`);
    const config = parsedJson(text);
    const format = layerFormat(config);
    if (typeof format !== 'string') return invalid(`${name}: ${format.why}`);
    configs.set(name.slice(0, -'.comfy_quant'.length), { format, config: config as Record<string, unknown> });
  }
  const headerText = d.headers.get(base)?._quantization_metadata;
  if (headerText !== undefined) {
    // JSON the tool reads from a file is bounded before it is parsed (src/limits.ts: its nesting).
    if (nestingDepth(headerText) > MAX_CONFIG_NESTING) return invalid('_quantization_metadata nests deeper than MAX_CONFIG_NESTING');
    const header = parsedJson(headerText);
    if (!isJsonObject(header) || !isJsonObject(header.layers)) return invalid(`_quantization_metadata ${headerText.slice(0, 40)} has no "layers" object`);
    for (const [layer, value] of Object.entries(header.layers)) {
      // A config given as a string: loramerge reads it as JSON, ComfyUI's converter would keep the string itself.
      if (typeof value === 'string') undecided = `_quantization_metadata's layer ${layer} is the string ${value}`;
      if (typeof value === 'string' && nestingDepth(value) > MAX_CONFIG_NESTING) return invalid(`_quantization_metadata's layer ${layer} nests deeper than MAX_CONFIG_NESTING`);
      const config = typeof value === 'string' ? parsedJson(value) : value;
      const format = layerFormat(config);
      if (typeof format !== 'string') return invalid(`_quantization_metadata's layer ${layer}: ${format.why}`);
      const named = [layer, DIFFUSION_MODEL + layer, layer.startsWith(DIFFUSION_MODEL) ? layer.slice(DIFFUSION_MODEL.length) : layer];
      configs.set(named.find((m) => tensor(`${m}.weight`)) ?? layer, { format, config: config as Record<string, unknown> });
    }
  }

  // The layers read (layer → its reading), and the weights stored in a form not read.
  const read = new Map<string, ComfyLayer>();
  const unread = new Set<string>();
  for (const [layer, { format, config }] of configs) {
    if (!tensor(`${layer}.weight`)) continue; // ComfyUI skips a config without its weight
    const reader = Object.hasOwn(COMFY_READERS, format) ? COMFY_READERS[format] : undefined;
    const reading: ComfyReading = reader ? reader(tensor, layer, config) : { unread: `${layer}: format ${format}` };
    if ('invalid' in reading) return invalid(reading.invalid);
    if ('unknown' in reading) undecided = reading.unknown;
    else if ('unread' in reading) unread.add(layer);
    else {
      read.set(layer, reading);
      if (reading.undecided) undecided = reading.undecided;
    }
  }
  // A weight with a weight_scale beside it and no config: its codes would be read as weights.
  for (const name of names.filter((n) => n.endsWith('.weight_scale'))) {
    const layer = name.slice(0, -'.weight_scale'.length);
    if (tensor(`${layer}.weight`) && !read.has(layer)) unread.add(layer);
  }
  for (const { layer } of targets) if (unread.has(layer)) return invalid(`an adapter changes ${layer}.weight, stored in a form not read`);
  if (outDtype && unread.size) return invalid(`--dtype ${outDtype} on a base holding ${[...unread][0]}.weight in a form not read`);
  if (undecided) return { kind: 'unknown', why: undecided };

  const merged = new Map<string, ExpectedMerge>();
  const leftOut: string[] = [];
  for (const target of targets) {
    const { layer } = target;
    const q = read.get(layer);
    if (!q) {
      merged.set(`/${layer}.weight`, { ...added(tensor(`${layer}.weight`)!.values, loraDelta(target), target.scale), ...(D ? { dtype: D } : {}) });
      continue;
    }
    if (q.rows !== (target.rows ?? OUT) || q.cols !== (target.cols ?? IN)) return invalid(`${layer}: (${q.rows}, ${q.cols}) read, the adapter is (${target.rows}, ${target.cols})`);
    const real = q.real();
    if (typeof real === 'string') return invalid(real);
    const w = mergedF32(real, target, D ?? 'F32');
    if (!w) return invalid(`${layer}.weight: a merged value beyond ${outDtype ?? 'float32'}, or an input not finite`);
    if (D) {
      merged.set(`/${layer}.weight`, { values: w, magnitude: 0, dtype: D, exact: true, shape: [q.rows, q.cols] });
      continue;
    }
    const again = q.requantize(w);
    if (typeof again === 'string') return invalid(again);
    for (const [key, e] of again) merged.set(key, e);
  }
  if (outDtype) {
    for (const [layer, q] of read) {
      if (!merged.has(`/${layer}.weight`)) {
        const real = q.real();
        if (typeof real === 'string') return invalid(real);
        const values = mergedF32(real, undefined, D!, q.rows, q.cols);
        if (!values) return invalid(`${layer}.weight: a value not finite in ${outDtype}`);
        merged.set(`/${layer}.weight`, { values, magnitude: 0, dtype: D!, exact: true, shape: [q.rows, q.cols] });
      }
      leftOut.push(...['weight_scale', 'weight_scale_2', 'comfy_quant', 'input_scale'].map((s) => `/${layer}.${s}`).filter((k) => d.tensors.has(k)));
    }
    const past = pastDtype(merged, outDtype);
    if (past) return past;
    // Every other float tensor (the bf16 modulations, biases) rounded once to the dtype.
    const rest = convertRest(d, names, (n) => `/${n}`, (n) => leftOut.includes(`/${n}`), merged, outDtype);
    if (rest) return rest;
  }
  return { kind: 'expected', merged, leftOut, header: { _quantization_metadata: outDtype ? null : headerText ?? null } };
}

/**
 * ComfyUI's LoRA patch on an fp8 layer, quantized again with its scale recalculated (README): W'
 * (already rounded to f32), s = f32(max |W'| / 448) stored in `dtype`, codes =
 * e4m3(clamp(f32(W' · f32(1 / s)), ±448)); a weight of zeros keeps its scale (scale undefined) and
 * its codes are zeros. Or why it cannot be written (a scale or reciprocal not finite).
 */
function comfyRecalculated(w: Float64Array, dtype: 'F32' | 'F16' | 'BF16', codeDtype: 'F8_E4M3' | 'F8_E5M2' = 'F8_E4M3'): { codes: Float64Array; scale?: number } | { why: string } {
  if (maxAbs(w) === 0) return { codes: w };
  const { scale: s, codes } = comfyRequantize(w, dtype, codeDtype);
  // Codes or scale NaN or Inf: refused (only finite results are written).
  if (!Number.isFinite(s) || !Number.isFinite(Math.fround(1 / s))) return { why: `the new scale ${s} (${dtype}) or its float32 reciprocal is not finite` };
  return { codes, scale: s };
}

/** Bytes spread from a drawn few: `n` of them, different for each salt. */
const spread = (noise: Uint8Array) => (n: number, salt: number) => Uint8Array.from({ length: n }, (_, i) => noise[(i * 7 + salt) % noise.length] ^ ((i * 29 + salt * 13) & 0xff));

/** No NaN codes: e4m3fn's 0x7F/0xFF, e5m2's exponent of all ones (Inf, NaN). */
const finiteCodes = (codes: Uint8Array, dtype: 'F8_E4M3' | 'F8_E5M2') => codes.map((x) => (dtype === 'F8_E4M3' ? ((x & 0x7f) === 0x7f ? x ^ 1 : x) : (x & 0x7c) === 0x7c ? x & ~0x40 : x));

const comfyQuantWorld: fc.Arbitrary<SurfaceWorld> = fc
  // The changed layer's format (float8_e5m2 is ComfyUI's TensorCoreFP8E5M2Layout), and what is written wrong in it.
  .constantFrom<ComfyFormat>('float8_e4m3fn', 'float8_e4m3fn', 'float8_e5m2', 'mxfp8', 'mxfp8', 'nvfp4', 'nvfp4', 'int8_tensorwise', 'int8_tensorwise', 'int8_tensorwise')
  .chain((format) => fc.record({
    format: fc.constant(format),
    hostile: fc.option(comfyHostile(format), { nil: null, freq: 2 }),
    model: fc.constantFrom<keyof typeof COMFY_MODELS>('FLUX.2', 'Qwen-Image'),
    form: fc.constantFrom<'kohya' | 'peft'>('kohya', 'peft'),
    configs: fc.constantFrom<'tensors' | 'header' | 'both'>('tensors', 'tensors', 'header', 'both'),
    headerNames: fc.constantFrom<'keys' | 'other'>('keys', 'other'),
    noise: fc.uint8Array({ minLength: 61, maxLength: 61 }),
    scale: fc.constantFrom(0.0004, 0.002, 1 / 448, 0.01),
    zeros: fc.constantFrom(false, false, false, true),
    inputScale: fc.boolean(),
    onPlain: fc.boolean(),
    // The adapter changes the second quantized layer too (another format, or one not read).
    onQuant2: fc.constantFrom(false, false, true),
    fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 2, 4, 16), seed: values(48),
    // The second quantized layer's format.
    format2: fc.constantFrom<ComfyFormat | 'convrot_w4a4'>('float8_e4m3fn', 'float8_e4m3fn', 'float8_e4m3fn', 'mxfp8', 'nvfp4', 'int8_tensorwise', 'convrot_w4a4'),
    shape: fc.nat(2),
    // int8_tensorwise: one weight_scale per row ([rows, 1]) or for the tensor ([]).
    perRow: fc.boolean(),
  }))
  .map(({ model, form, configs, headerNames, noise, scale, zeros, inputScale, onPlain, onQuant2, fDtype, r, alpha, seed, hostile, format, format2, shape, perRow }) => {
    const v = from(seed);
    const bytes = spread(noise);
    const names = COMFY_MODELS[model];
    const P = names.prefix;
    const tensors: FixtureTensor[] = [];
    const layers: Record<string, unknown> = {};
    const headerName = (m: string) => (headerNames === 'keys' ? P + m : P ? m : DIFFUSION_MODEL + m);
    /** One quantized layer's tensors (`rows` × `cols` real values) and config, `h` written wrong. */
    const quantLayer = (m: string, fmt: ComfyFormat | 'convrot_w4a4', [rows, cols]: [number, number], salt: number, s: number, h: ComfyHostile | null, zeroCodes = false) => {
      const key = P + m;
      const part = h?.part;
      const hostileScale = (x: number) => (h?.part === 'scale value' ? h.value : x);
      // The weight as stored, then its scale tensors.
      let weight: FixtureTensor;
      let scaleT: FixtureTensor | undefined;
      let blockT: FixtureTensor | undefined;
      let scale2: FixtureTensor | undefined;
      const blockScales = (blocks: number, dtype: 'U8' | 'F8_E4M3', grid: Uint8Array) => {
        if (part === 'block byte' && grid.length) grid[h!.at % grid.length] = h!.byte;
        if (part === 'unswizzled') return { name: `${key}.weight_scale`, dtype, shape: [rows, blocks], data: grid };
        const data = swizzled(grid, rows, blocks);
        const padding = Array.from(blockedOrder(rows, blocks).order.keys()).filter((k) => blockedOrder(rows, blocks).order[k] < 0);
        if (part === 'padding' && padding.length) data[padding[h!.at % padding.length]] = h!.byte;
        const stored = part === 'block dtype' ? h!.dtype : dtype;
        return stored === 'F32' ? st(`${key}.weight_scale`, 'F32', blockedOrder(rows, blocks).shape, Array.from(data)) : { name: `${key}.weight_scale`, dtype: stored, shape: blockedOrder(rows, blocks).shape, data };
      };
      if (fmt === 'float8_e4m3fn' || fmt === 'float8_e5m2') {
        const dtype = fmt === 'float8_e5m2' ? 'F8_E5M2' : 'F8_E4M3';
        weight = { name: `${key}.weight`, dtype, shape: [rows, cols], data: zeroCodes ? new Uint8Array(rows * cols) : finiteCodes(bytes(rows * cols, salt), dtype) };
        scaleT = st(`${key}.weight_scale`, 'F32', [], [hostileScale(s)]);
      } else if (fmt === 'mxfp8') {
        weight = { name: `${key}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], data: zeroCodes ? new Uint8Array(rows * cols) : finiteCodes(bytes(rows * cols, salt), 'F8_E4M3') };
        // Exponents 2^-10 … 2^0 around ComfyUI's for weights of this size.
        blockT = blockScales(cols / 32, 'U8', bytes(rows * cols / 32, salt + 1).map((b) => 117 + (b % 11)));
      } else if (fmt === 'nvfp4') {
        weight = { name: `${key}.weight`, dtype: 'U8', shape: [rows, cols / 2], data: zeroCodes ? new Uint8Array(rows * cols / 2) : bytes(rows * cols / 2, salt) };
        // Block scales 0.0625 … 7.5 (e4m3 0x28 … 0x57), weight_scale_2 near max |W| / 2688.
        blockT = blockScales(cols / 16, 'F8_E4M3', bytes(rows * cols / 16, salt + 1).map((b) => 0x28 + (b % 0x30)));
        scale2 = st(`${key}.weight_scale_2`, 'F32', [], [hostileScale(Math.fround(s / 2))]);
      } else if (fmt === 'int8_tensorwise') {
        weight = { name: `${key}.weight`, dtype: 'I8', shape: [rows, cols], data: zeroCodes ? new Uint8Array(rows * cols) : bytes(rows * cols, salt) };
        const ss = Array.from({ length: perRow ? rows : 1 }, (_, i) => Math.fround(s * (1 + (i % 3) / 4)));
        if (part === 'scale value') ss[h.at % ss.length] = h.value;
        scaleT = st(`${key}.weight_scale`, 'F32', perRow ? [rows, 1] : [], ss);
      } else {
        // convrot_w4a4: packed 4-bit codes in I8 with per-row scales (not read).
        weight = { name: `${key}.weight`, dtype: 'I8', shape: [rows, cols / 2], data: bytes(rows * cols / 2, salt) };
        scaleT = st(`${key}.weight_scale`, 'F32', [rows, 1], Array(rows).fill(Math.fround(s)));
      }
      if (part === 'weight dtype' && h.dtype !== weight.dtype) {
        const data = Array.from(weight.data as Uint8Array);
        weight = h.dtype === 'BF16' ? st(weight.name, 'BF16', weight.shape, data.map(e4m3Value)) : { ...weight, dtype: h.dtype, data: Uint8Array.from(data) };
      }
      if (part === 'weight shape') {
        // Flattened where one scale covers it; block formats one block short of each row.
        const [wr, wc] = weight.shape;
        const cut = fmt === 'mxfp8' ? 16 : fmt === 'nvfp4' ? 4 : 0;
        const data = weight.data as Uint8Array;
        weight = cut ? { ...weight, shape: [wr, wc - cut], data: Uint8Array.from({ length: wr * (wc - cut) }, (_, i) => data[Math.floor(i / (wc - cut)) * wc + (i % (wc - cut))]) } : { ...weight, shape: [wr * wc] };
      }
      // The hostile scale parts fall on weight_scale, or nvfp4's weight_scale_2.
      const perTensor = scale2 ?? scaleT;
      const rewritten = (t: FixtureTensor | undefined): FixtureTensor | undefined => {
        if (!t || t !== perTensor) return t;
        if (part === 'no scale') return undefined;
        if (part === 'scale dtype') return { ...t, dtype: h.dtype, data: Array.from(t.data as number[]) };
        if (part === 'scale shape') return st(t.name, 'F32', h.shape, Array(h.shape.reduce((a, b) => a * b, 1)).fill((t.data as number[])[0]));
        return t;
      };
      tensors.push(weight);
      for (const t of [rewritten(scaleT), part === 'no block scale' ? undefined : blockT, rewritten(scale2)]) if (t) tensors.push(t);
      const named = part === 'format' ? h.format : fmt;
      const conf: Record<string, unknown> = { format: named };
      if (m === names.quant2 && named === 'float8_e4m3fn') conf.full_precision_matrix_mult = true;
      if (part === 'convrot') Object.assign(conf, h.where === 'top' ? { convrot: true } : { params: { convrot: true } });
      // json.dumps' spacing, as ComfyUI writes the config.
      const confText = JSON.stringify(conf).replace(/":/g, '": ').replace(/,"/g, ', "');
      const configBytes = part === 'config bytes' ? (typeof h.text === 'string' ? textBytes(h.text) : Uint8Array.from(h.text)) : textBytes(confText);
      if ((configs !== 'header' || part === 'config bytes' || part === 'config dtype') && part !== 'no config') {
        if (part === 'config dtype') {
          tensors.push(h.dtype === 'F32' ? st(`${key}.comfy_quant`, 'F32', [2], [1, 2]) : { name: `${key}.comfy_quant`, dtype: h.dtype === 'I8' ? 'I8' : 'U8', shape: h.dtype === 'I8' ? [configBytes.length] : [1, configBytes.length], data: configBytes });
        } else tensors.push({ name: `${key}.comfy_quant`, dtype: 'U8', shape: [configBytes.length], data: configBytes });
      }
      if ((configs !== 'tensors' || part === 'header layer') && part !== 'no config') layers[headerName(m)] = part === 'header layer' ? h.value : conf;
      if (inputScale && fmt !== 'int8_tensorwise') tensors.push(st(`${key}.input_scale`, 'F32', [], [part === 'input scale' ? h.value : 0.03]));
    };
    const [rows, cols] = COMFY_SHAPES[format][shape % COMFY_SHAPES[format].length];
    const shape2 = format2 === 'convrot_w4a4' ? [IN, OUT] as [number, number] : COMFY_SHAPES[format2][0].slice().reverse() as [number, number];
    const hostileAll = hostile?.part === 'no configs' ? { part: 'no config' as const } : null;
    quantLayer(names.quant, format, [rows, cols], 0, Math.fround(scale), hostile?.part === 'no configs' ? hostileAll : hostile, zeros);
    quantLayer(names.quant2, format2, shape2, 3, Math.fround(scale * 1.5), hostileAll);
    tensors.push(st(`${P}${names.plain}.weight`, 'BF16', [OUT, IN], v(OUT * IN, 1)));
    if (names.bias) tensors.push(st(`${P}${names.quant}.bias`, 'BF16', [rows], v(rows, 2)));
    let header: string | undefined = Object.keys(layers).length ? JSON.stringify({ format_version: '1.0', layers }) : undefined;
    if (hostile?.part === 'header') header = hostile.text.replace(/LAYER/g, headerName(names.quant));

    // The adapter: sd-scripts' kohya form (α/r), or ai-toolkit's `diffusion_model.` + PEFT names (scale 1).
    const targets: [string, number, number][] = [[names.quant, rows, cols], ...(onPlain ? [[names.plain, OUT, IN] as [string, number, number]] : []), ...(onQuant2 ? [[names.quant2, ...shape2] as [string, number, number]] : [])];
    const adapter: FixtureTensor[] = targets.flatMap(([m, out, inF], i) => {
      const up = zeros ? Array(out * r).fill(0) : v(out * r, 4 + 2 * i);
      if (form === 'peft') return [st(`diffusion_model.${m}.lora_A.weight`, fDtype, [r, inF], v(r * inF, 3 + 2 * i)), st(`diffusion_model.${m}.lora_B.weight`, fDtype, [out, r], up)];
      const k = `lora_unet_${m.replace(/\./g, '_')}`;
      return [st(`${k}.lora_down.weight`, fDtype, [r, inF], v(r * inF, 3 + 2 * i)), st(`${k}.lora_up.weight`, fDtype, [out, r], up), st(`${k}.alpha`, 'F32', [], [alpha])];
    });
    const tag = { float8_e4m3fn: 'fp8mixed', float8_e5m2: 'fp8mixed', mxfp8: 'mxfp8mixed', nvfp4: 'nvfp4mixed', int8_tensorwise: 'int8mixed' }[format];
    const file = `${names.file}_${tag}.safetensors`;
    const layerName = (f: string) => `${f}${f === 'int8_tensorwise' ? (perRow ? ' per row' : ' per tensor') : ''}`;
    return {
      name: `ComfyUI comfy_quant ${layerName(format)}${rows * cols * COMFY_SLAB_ROW_BYTES[format] > COMFY_SLAB_BYTES ? ' in several row slabs' : ''} beside ${format2} (${model}) + ${form === 'kohya' ? 'kohya' : 'diffusion_model. PEFT-form'} LoRA${hostile ? ` (${hostile.part})` : ''}`,
      files: {
        [file]: { kind: 'safetensors', tensors, ...(header !== undefined ? { metadata: { _quantization_metadata: header } } : {}) },
        'lora.safetensors': { kind: 'safetensors', tensors: adapter },
      },
      base: file, adapter: 'lora.safetensors', out: 'merged.safetensors',
      outDtypes: ['bf16', 'f16', 'f32'], refusalsChecked: true, slabBytes: COMFY_SLAB_BYTES,
      truth: (d, weight, outDtype) => {
        const t = (name: string) => d.tensors.get(`/${name}`)!;
        return comfyQuantTruth(d, file, targets.map(([m, out, inF]) => {
          const k = `lora_unet_${m.replace(/\./g, '_')}`;
          const [down, up] = form === 'peft' ? [`diffusion_model.${m}.lora_A.weight`, `diffusion_model.${m}.lora_B.weight`] : [`${k}.lora_down.weight`, `${k}.lora_up.weight`];
          return { layer: P + m, a: t(down), b: t(up), rank: r, scale: form === 'peft' ? weight : weight * kohyaScale(t(`${k}.alpha`).values[0], r), rows: out, cols: inF };
        }), outDtype);
      },
    };
  });

// --- block-wise fp8 LLM checkpoints (weight_scale_inv) ---------------------------------------------------

/** What makes a block-wise fp8 world hostile: one part of its quantization written wrong. */
type BlockHostile =
  | { part: 'config'; edit: Record<string, unknown> | null }
  | { part: 'grid'; transposed: boolean }
  | { part: 'scale dtype'; dtype: 'BF16' | 'F16' | 'F64' }
  | { part: 'weight dtype'; dtype: 'BF16' | 'F8_E5M2' };

const blockHostile: fc.Arbitrary<BlockHostile> = fc.oneof(
  fc.record({ part: fc.constant('config' as const), edit: fc.constantFrom<Record<string, unknown> | null>(
    null, { fmt: 'e5m2' }, { fmt: null }, { weight_block_size: '2x4' }, { weight_block_size: [0, 4] }, { weight_block_size: [2] }, { weight_block_size: [2.5, 4] },
    { weight_block_size: [4, 2] }, { scale_fmt: 'ue8m0' }, { scale_fmt: 'float' }, { quant_method: 'fbgemm_fp8' }, { activation_scheme: 'static' },
  ) }),
  fc.record({ part: fc.constant('grid' as const), transposed: fc.boolean() }),
  fc.record({ part: fc.constant('scale dtype' as const), dtype: fc.constantFrom<'BF16' | 'F16' | 'F64'>('BF16', 'F16', 'F64') }),
  fc.record({ part: fc.constant('weight dtype' as const), dtype: fc.constantFrom<'BF16' | 'F8_E5M2'>('BF16', 'F8_E5M2') }),
);

/**
 * The truth of a block-wise fp8 model folder (README, "fp8 LLM checkpoints with scale tensors"),
 * read from the decoded files: config.json's quantization_config (quant_method "fp8", fmt "e4m3" if
 * given, weight_block_size [bm, bn], [128, 128] when left out); each F8_E4M3 `<m>.weight` with
 * `<m>.weight_scale_inv` of shape (⌈out/bm⌉, ⌈in/bn⌉) is W = e4m3(code) × its block's scale.
 * Merged into: W' = W + ΔW rounded once to f32; each block quantized anew as transformers'
 * FineGrainedFP8 does: q = f32(448 / amax), codes e4m3(clamp(f32(W' · q), ±448)),
 * weight_scale_inv = 1 / q in its dtype; a block of zeros keeps its scale; the rest byte for byte,
 * config.json as it was. `--dtype bf16`: every such weight dequantized, the scale and input_scale
 * tensors left out, quantization_config dropped from config.json.
 */
function blockFp8Truth(d: Decoded, folder: string, target: LoraTarget, outDtype: OutDtype | undefined): Truth {
  const tensor = (name: string) => d.tensors.get(`${folder}/${name}`);
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const configText = d.json.get(`${folder}/config.json`) ?? '';
  // Compared with the output's as values: too deep a nesting would overflow the comparison.
  if (nestingDepth(configText) > 64) return { kind: 'unknown', why: 'config.json nests too deep to compare' };
  const config = parsedJson(configText);
  if (!isJsonObject(config)) return { kind: 'unknown', why: 'config.json is no object' };
  const qc = config.quantization_config;
  const read = isJsonObject(qc) && qc.quant_method === 'fp8';
  let block: [number, number] = [128, 128];
  let specialScales = false;
  if (read) {
    if ('fmt' in qc && qc.fmt !== 'e4m3') return invalid(`fp8 format ${jsonKind(qc.fmt)}`);
    const size = qc.weight_block_size;
    if (typeof size === 'string') return { kind: 'unknown', why: `weight_block_size "${size}"` };
    if (size !== undefined && size !== null) {
      if (!Array.isArray(size) || size.length !== 2 || !size.every((n) => Number.isSafeInteger(n) && n > 0)) return invalid('weight_block_size is not two positive sizes');
      block = size as [number, number];
    }
    if ('scale_fmt' in qc && qc.scale_fmt !== 'float') {
      if (qc.scale_fmt !== 'ue8m0') return { kind: 'unknown', why: `scale_fmt ${jsonKind(qc.scale_fmt)}` };
      // DeepSeek-V3.1's power-of-two scales: this world's scales (0.0004, 0.002, 1/448, 0.01, 0.03) are
      // none, so the file contradicts its config and is written back only dequantized.
      specialScales = true;
    }
  }
  const names = [...d.tensors.keys()].filter((k) => k.startsWith(`${folder}/`)).map((k) => k.slice(folder.length + 1));
  const fp8 = new Map<string, { scales: Float64Array; dtype: 'F32' | 'F16' | 'BF16'; grid: number[] }>();
  const unread = new Set<string>();
  for (const name of names.filter((n) => n.endsWith('.weight_scale_inv'))) {
    const layer = name.slice(0, -'.weight_scale_inv'.length);
    const w = tensor(`${layer}.weight`);
    const s = tensor(name)!;
    if (!w) continue;
    if (!read || w.dtype !== 'F8_E4M3' || w.shape.length !== 2 || !['F32', 'BF16', 'F16'].includes(s.dtype)) {
      unread.add(layer);
      continue;
    }
    const grid = [Math.ceil(w.shape[0] / block[0]), Math.ceil(w.shape[1] / block[1])];
    if (s.shape.join() !== grid.join()) return invalid(`${name} of shape [${s.shape.join(', ')}], the grid [${grid.join(', ')}]`);
    if (s.values.some((x) => !(Number.isFinite(x) && x >= 0))) return invalid(`${name} holds a scale that is negative or not finite`);
    fp8.set(layer, { scales: s.values, dtype: s.dtype as 'F32' | 'F16' | 'BF16', grid });
  }
  if (unread.has(target.layer)) return invalid(`an adapter changes ${target.layer}.weight, stored in a form not read`);
  if (isJsonObject(qc) && !read) return invalid(`config.json names the quantization method ${jsonKind(qc.quant_method)}`);
  if (outDtype && unread.size) return invalid(`--dtype ${outDtype} on a base holding ${[...unread][0]}.weight in a form not read`);

  const real = (layer: string) => {
    const { scales, grid } = fp8.get(layer)!;
    const w = tensor(`${layer}.weight`)!;
    const cols = w.shape[1];
    return Float64Array.from(w.bytes, (b, i) => e4m3Value(b) * scales[Math.floor(Math.floor(i / cols) / block[0]) * grid[1] + Math.floor((i % cols) / block[1])]);
  };
  const merged = new Map<string, ExpectedMerge>();
  const key = (name: string) => `${folder}/${name}`;
  const configOut = { ...config };
  if (outDtype) {
    for (const layer of fp8.keys()) {
      const values = real(layer);
      merged.set(key(`${layer}.weight`), { ...(layer === target.layer ? added(values, loraDelta(target), target.scale) : { values, magnitude: maxAbs(values) }), dtype: OUT_DTYPE[outDtype] });
    }
    const past = pastDtype(merged, outDtype);
    if (past) return past;
    delete configOut.quantization_config;
    const leftOut = names.filter((n) => (n.endsWith('.weight_scale_inv') || n.endsWith('.input_scale')) && fp8.has(n.slice(0, n.lastIndexOf('.')))).map(key);
    const rest = convertRest(d, names, key, (n) => leftOut.includes(key(n)), merged, outDtype);
    if (rest) return rest;
    // The written dtype is named in config.json (dtype, torch_dtype): not compared.
    return { kind: 'expected', merged, leftOut, json: { [`${folder}/config.json`]: { equals: configOut, except: ['dtype', 'torch_dtype'] } } };
  }
  const q = fp8.get(target.layer);
  if (!q) {
    const w = tensor(`${target.layer}.weight`)!;
    merged.set(key(`${target.layer}.weight`), added(w.values, loraDelta(target), target.scale));
    return { kind: 'expected', merged, json: { [`${folder}/config.json`]: { equals: config } } };
  }
  if (specialScales) return invalid('scale_fmt ue8m0 over scales that are not powers of two, written back without --dtype');
  const w = mergedF32(real(target.layer), target);
  if (!w) return invalid(`${target.layer}.weight: a merged value beyond float32, or an input not finite`);
  const [rows, cols] = tensor(`${target.layer}.weight`)!.shape;
  const codes = new Float64Array(w.length);
  const scales = Float64Array.from(q.scales);
  for (let br = 0; br < q.grid[0]; br++) for (let bc = 0; bc < q.grid[1]; bc++) {
    const cells: number[] = [];
    for (let r = br * block[0]; r < Math.min(rows, (br + 1) * block[0]); r++) for (let c = bc * block[1]; c < Math.min(cols, (bc + 1) * block[1]); c++) cells.push(r * cols + c);
    const amax = maxAbs(cells.map((i) => w[i]));
    if (amax === 0) continue; // a block of zeros keeps its scale; its codes are zeros
    const factor = Math.fround(448 / amax);
    const scale = roundForDType(Math.fround(1 / factor), q.dtype);
    // Codes or scale NaN or Inf: refused (only finite results are written).
    if (!Number.isFinite(factor) || !Number.isFinite(scale)) return invalid(`${target.layer}: a block's amax ${amax} gives the factor ${factor}, the scale ${scale} (${q.dtype})`);
    scales[br * q.grid[1] + bc] = scale;
    for (const i of cells) codes[i] = roundF8Saturating(Math.fround(w[i] * factor), 'F8_E4M3');
  }
  merged.set(key(`${target.layer}.weight`), { values: codes, magnitude: 0, exact: true });
  merged.set(key(`${target.layer}.weight_scale_inv`), { values: scales, magnitude: 0, exact: true });
  return { kind: 'expected', merged, json: { [`${folder}/config.json`]: { equals: config } } };
}

/** A Qwen3-FP8-style folder (config.json quantization_config fp8 with weight_block_size, weight_scale_inv) with a PEFT LoRA on q_proj. */
const blockFp8World: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    block: fc.constantFrom<[number, number] | null>([2, 4], [4, 4], [3, 8], [4, 3], [128, 128], null),
    codes: fc.uint8Array({ minLength: 2 * OUT * IN, maxLength: 2 * OUT * IN }).map((b) => b.map((x) => ((x & 0x7f) === 0x7f ? x ^ 1 : x))),
    scales: fc.array(fc.constantFrom(0.0004, 0.002, 1 / 448, 0.01, 0.03), { minLength: 8, maxLength: 8 }),
    zeros: fc.constantFrom<'none' | 'all' | 'first rows'>('none', 'none', 'none', 'all', 'first rows'),
    inputScale: fc.boolean(),
    fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 4, 16), rslora: fc.boolean(), seed: values(48),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: blockHostile }),
  })
  .map(({ block, codes, scales, zeros, inputScale, fDtype, r, alpha, rslora, seed, hostile }) => {
    const v = from(seed);
    const grid = (rows: number, cols: number, size = block ?? [128, 128]) => [Math.ceil(rows / size[0]), Math.ceil(cols / size[1])];
    const h = hostile?.part;
    const zeroRows = zeros === 'all' ? OUT : zeros === 'first rows' ? (block ?? [128])[0] : 0;
    const fp8Weight = (m: string, shape: [number, number], stored: Uint8Array, salt: number, hostileHere: boolean): FixtureTensor[] => {
      const g = grid(...shape);
      const gridShape = hostileHere && hostile?.part === 'grid' ? (hostile.transposed ? [g[1], g[0]] : [g[0] * g[1] + 1]) : g;
      const n = gridShape.reduce((a, b) => a * b, 1);
      const weightDtype = hostileHere && hostile?.part === 'weight dtype' ? hostile.dtype : 'F8_E4M3';
      return [
        weightDtype === 'BF16' ? st(`${m}.weight`, 'BF16', shape, Array.from(stored, e4m3Value)) : { name: `${m}.weight`, dtype: weightDtype, shape, data: stored },
        st(`${m}.weight_scale_inv`, hostileHere && hostile?.part === 'scale dtype' ? hostile.dtype : 'F32', gridShape, Array.from({ length: n }, (_, i) => Math.fround(scales[(i + salt) % scales.length]))),
        ...(inputScale ? [st(`${m}.input_scale`, 'F32', [1], [0.02])] : []),
      ];
    };
    const q = `${L}.self_attn.q_proj`;
    const qCodes = codes.slice(0, OUT * IN).map((x, i) => (Math.floor(i / IN) < zeroRows ? 0 : x));
    const quantization: Record<string, unknown> = { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', ...(block ? { weight_block_size: block } : {}) };
    if (hostile?.part === 'config') Object.assign(quantization, hostile.edit ?? { weight_block_size: null });
    const m = `base_model.model.${q}`;
    const up = v(OUT * r, 4).map((x, i) => (Math.floor(i / r) < zeroRows ? 0 : x));
    return {
      name: 'block-wise fp8 folder + PEFT LoRA',
      files: {
        'model/config.json': { kind: 'json', value: { architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', torch_dtype: 'bfloat16', hidden_size: IN, num_hidden_layers: 1, vocab_size: 4, quantization_config: quantization } },
        'model/model.safetensors': {
          kind: 'safetensors', metadata: { format: 'pt' },
          tensors: [
            st('model.embed_tokens.weight', 'BF16', [4, IN], v(4 * IN, 1)),
            ...fp8Weight(q, [OUT, IN], qCodes, 0, h !== undefined),
            ...fp8Weight(`${L}.mlp.down_proj`, [IN, OUT], codes.slice(OUT * IN), 3, false),
            st('model.norm.weight', 'BF16', [IN], v(IN, 2)),
          ],
        },
        'peft/adapter_model.safetensors': { kind: 'safetensors', tensors: [st(`${m}.lora_A.weight`, fDtype, [r, IN], v(r * IN, 3)), st(`${m}.lora_B.weight`, fDtype, [OUT, r], up)] },
        'peft/adapter_config.json': { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen3-0.6B-FP8', r, lora_alpha: alpha, use_rslora: rslora, target_modules: ['q_proj'] } },
      },
      base: 'model', adapter: 'peft', out: 'merged',
      outDtypes: ['bf16', 'f16', 'f32'], refusalsChecked: true,
      truth: (d, weight, outDtype) => {
        const scale = configScale(d, 'peft/adapter_config.json', 'lora_alpha', r, true);
        if (typeof scale !== 'number') return scale;
        return blockFp8Truth(d, 'model', { layer: q, a: d.tensors.get(`peft/${m}.lora_A.weight`)!, b: d.tensors.get(`peft/${m}.lora_B.weight`)!, rank: r, scale: weight * scale }, outDtype);
      },
    };
  });

// --- Comfy-Org's scaled fp8 (scale_weight + scaled_fp8 marker) ----------------------------------------

/**
 * Two models Comfy-Org ships as scaled fp8 single files, with their own names: FLUX.1 (BFL names)
 * and Wan 2.1. `quant`: the fp8 weight the LoRA changes (biased); `second`: one it may change too;
 * `untouched`: one it leaves alone; `norm`: a bf16 tensor these files keep unscaled.
 */
const SCALED_MODELS = {
  'FLUX.1': { file: 'flux1-dev-fp8-scaled.safetensors', quant: 'double_blocks.0.img_attn.qkv', second: 'double_blocks.0.txt_attn.qkv', untouched: 'double_blocks.0.img_attn.proj', norm: 'double_blocks.0.img_attn.norm.query_norm.scale', orphan: 'double_blocks.0.txt_mlp.0' },
  'Wan 2.1': { file: 'wan2.1_t2v_1.3B_fp8_scaled.safetensors', quant: 'blocks.0.self_attn.q', second: 'blocks.0.self_attn.k', untouched: 'blocks.0.ffn.2', norm: 'blocks.0.norm3.weight', orphan: 'blocks.0.cross_attn.o' },
} as const;

/** What makes a scaled fp8 world hostile: one part of it written wrong. */
type ScaledHostile =
  | { part: 'scale value'; value: number }
  | { part: 'scale shape'; shape: number[] }
  | { part: 'scale dtype'; dtype: 'BF16' | 'F16' | 'F64' | 'F8_E4M3' | 'I32' }
  | { part: 'marker'; dtype: 'F32' | 'BF16' | 'U8' | 'other fp8'; shape: number[] }
  | { part: 'no marker' }
  | { part: 'no scale' }
  | { part: 'bf16 weight' }
  | { part: 'vector scale' }
  | { part: 'orphan scale'; value: number };

const scaledHostile: fc.Arbitrary<ScaledHostile> = fc.oneof(
  fc.record({ part: fc.constant('scale value' as const), value: fc.constantFrom(0, -0, -0.001, -0.01, NaN, Infinity, -Infinity, 1e-40, 3e38) }),
  fc.record({ part: fc.constant('scale shape' as const), shape: fc.constantFrom<number[]>([2], [1, 1], [0], [OUT], [1, 2]) }),
  fc.record({ part: fc.constant('scale dtype' as const), dtype: fc.constantFrom<'BF16' | 'F16' | 'F64' | 'F8_E4M3' | 'I32'>('BF16', 'F16', 'F64', 'F8_E4M3', 'I32') }),
  fc.record({ part: fc.constant('marker' as const), dtype: fc.constantFrom<'F32' | 'BF16' | 'U8' | 'other fp8'>('F32', 'BF16', 'U8', 'other fp8'), shape: fc.constantFrom<number[]>([0], [2], [1]) }),
  fc.constant<ScaledHostile>({ part: 'no marker' }),
  fc.constant<ScaledHostile>({ part: 'no scale' }),
  fc.constant<ScaledHostile>({ part: 'bf16 weight' }),
  fc.constant<ScaledHostile>({ part: 'vector scale' }),
  fc.record({ part: fc.constant('orphan scale' as const), value: fc.constantFrom(0.01, 0, NaN) }),
);

const FP8_DTYPES = ['F8_E4M3', 'F8_E5M2'];

/**
 * The truth of a Comfy-Org scaled fp8 file (README, "fp8"), read from the decoded files. Every
 * `<m>.scale_weight` must be one finite, non-zero float (even without its weight); one beside fp8
 * codes of a matrix, in F32, BF16 or F16, makes W = code × scale. A file of e4m3fn codes: a merged
 * W' = W + ΔW rounded once to f32 is quantized again with its scale recalculated (comfyRecalculated,
 * the new scale written as `scale_weight`, dtype and shape kept), and a LoRA on a weight whose
 * scale_weight is not read (a bf16 weight, a vector) is refused. A file with e5m2 codes: the older
 * in-place rule, code' = e5m2(code + ΔW / scale) rounded once and saturating, the scale kept (any
 * weight with a scale_weight, so a bf16 one too: stored' = bf16(stored + ΔW / scale)). The marker,
 * scale_input and untouched tensors byte for byte. `--dtype bf16`: every read weight dequantized
 * (merged or not), its scale_weight, every scale_input and the marker left out; refused while a
 * scale_weight is not read. `bias`: a diff_b, added to its bias as it is.
 */
function scaledFp8Truth(d: Decoded, targets: LoraTarget[], bias: { key: string; diff: DecodedTensor; scale: number } | undefined, outDtype: OutDtype | undefined): Truth {
  const tensor = (name: string) => d.tensors.get(`/${name}`);
  const names = [...d.tensors.keys()].map((k) => k.slice(1)).filter((k) => !k.startsWith('lora_unet_'));
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  // Without the marker, ComfyUI reads the codes as plain fp8 weights and ignores scale_weight.
  if (!tensor(SCALED_FP8)) return { kind: 'unknown', why: 'no scaled_fp8 marker: plain fp8 weights beside stray scale_weight tensors' };
  let undecided: string | undefined;
  const read = new Map<string, { scale: number; dtype: 'F32' | 'F16' | 'BF16'; codeDtype: string }>();
  const scaleOf = new Map<string, number>();
  const unread = new Set<string>();
  for (const name of names.filter((n) => n.endsWith('.scale_weight'))) {
    const s = tensor(name)!;
    if (![...FP8_DTYPES, 'F32', 'F16', 'BF16'].includes(s.dtype) || s.values.length !== 1 || !Number.isFinite(s.values[0]) || s.values[0] === 0) {
      return invalid(`${name} (${s.dtype} [${s.shape.join(', ')}]) is not one finite, non-zero scale`);
    }
    // One value in more dimensions: read as the scale here; ComfyUI would broadcast it.
    if (s.shape.length > 1) undecided = `${name} of shape [${s.shape.join(', ')}]`;
    const m = name.slice(0, -'.scale_weight'.length);
    const w = tensor(`${m}.weight`);
    if (!w) continue; // a scale without its weight is copied
    scaleOf.set(m, s.values[0]);
    if (FP8_DTYPES.includes(w.dtype) && w.shape.length >= 2 && ['F32', 'F16', 'BF16'].includes(s.dtype)) read.set(m, { scale: s.values[0], dtype: s.dtype as 'F32' | 'F16' | 'BF16', codeDtype: w.dtype });
    else unread.add(m);
  }
  const inPlace = [...read.values()].some((q) => q.codeDtype === 'F8_E5M2');
  if (!inPlace) for (const { layer } of targets) if (unread.has(layer)) return invalid(`an adapter changes ${layer}.weight, whose scale_weight is not read in an e4m3fn file`);
  if (outDtype && unread.size) return invalid(`--dtype ${outDtype} on a base holding ${[...unread][0]}.weight beside a scale_weight not read`);
  for (const { layer } of targets) if (!scaleOf.has(layer)) return { kind: 'unknown', why: `${layer}.weight has no scale_weight: a plain fp8 weight (not followed here)` };
  if (undecided) return { kind: 'unknown', why: undecided };

  const merged = new Map<string, ExpectedMerge>();
  const real = (m: string) => {
    const w = tensor(`${m}.weight`)!;
    const s = read.get(m)!.scale;
    return w.dtype === 'F8_E4M3' ? Float64Array.from(w.bytes, (b) => e4m3Value(b) * s) : w.values.map((c) => c * s);
  };
  if (bias) merged.set(`/${bias.key}`, added(tensor(bias.key)!.values, bias.diff.values, bias.scale));
  if (outDtype) {
    const leftOut: string[] = [SCALED_FP8, ...names.filter((n) => n.endsWith('.scale_input'))];
    for (const m of read.keys()) {
      const target = targets.find((t) => t.layer === m);
      const values = real(m);
      merged.set(`/${m}.weight`, { ...(target ? added(values, loraDelta(target), target.scale) : { values, magnitude: maxAbs(values) }), dtype: OUT_DTYPE[outDtype] });
      leftOut.push(`${m}.scale_weight`);
    }
    for (const e of merged.values()) e.dtype ??= OUT_DTYPE[outDtype]; // the bias too
    const past = pastDtype(merged, outDtype);
    if (past) return past;
    const rest = convertRest(d, names, (n) => `/${n}`, (n) => leftOut.includes(n), merged, outDtype);
    if (rest) return rest;
    return { kind: 'expected', merged, leftOut: leftOut.map((n) => `/${n}`) };
  }
  for (const target of targets) {
    const { layer } = target;
    const stored = tensor(`${layer}.weight`)!;
    if (inPlace) {
      const divided = target.scale / scaleOf.get(layer)!;
      if (!FP8_DTYPES.includes(stored.dtype)) {
        merged.set(`/${layer}.weight`, added(stored.values, loraDelta(target), divided));
        continue;
      }
      if (![stored.values, target.a.values, target.b.values].every((v) => v.every(Number.isFinite)) || !Number.isFinite(divided)) return invalid(`${layer}: an input not finite`);
      // weight · α/r ÷ scale_weight may pass float32 (a subnormal scale_weight): the engine then
      // recomputes the elements its f32 kernel left non-finite exactly, and e5m2 saturates.
      const bits = exactMergeBitsOf({
        name: layer, rows: OUT, cols: IN, layout: 'out-in', outDtype: stored.dtype as FloatDType,
        terms: [{ a: { dtype: target.a.dtype as FloatDType, data: target.a.bytes }, b: { dtype: target.b.dtype as FloatDType, data: target.b.bytes }, rank: target.rank, scale: divided }],
      }, stored.values);
      merged.set(`/${layer}.weight`, { values: decodeValues(Uint8Array.from(bits), stored.dtype as FixtureDType), magnitude: 0, exact: true });
      continue;
    }
    const q = read.get(layer)!;
    const w = mergedF32(real(layer), target);
    if (!w) return invalid(`${layer}.weight: a merged value beyond float32, or an input not finite`);
    const again = comfyRecalculated(w, q.dtype);
    if ('why' in again) return invalid(`${layer}: ${again.why}`);
    merged.set(`/${layer}.weight`, { values: again.codes, magnitude: 0, exact: true });
    if (again.scale !== undefined) merged.set(`/${layer}.scale_weight`, { values: Float64Array.of(again.scale), magnitude: 0, exact: true });
  }
  return { kind: 'expected', merged };
}

const SCALED_FP8 = 'scaled_fp8';

/** A Comfy-Org scaled fp8 single file (FLUX.1 or Wan 2.1, e4m3fn or e5m2 codes) with a kohya LoRA on one or two of its fp8 weights. */
const scaledFp8World: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    model: fc.constantFrom<keyof typeof SCALED_MODELS>('FLUX.1', 'Wan 2.1'),
    codeDtype: fc.constantFrom<'F8_E4M3' | 'F8_E5M2'>('F8_E4M3', 'F8_E4M3', 'F8_E4M3', 'F8_E5M2'),
    codes: fc.uint8Array({ minLength: 3 * OUT * IN, maxLength: 3 * OUT * IN }),
    scale: fc.constantFrom(0.0004, 0.002, 1 / 448, 0.01, 0.3),
    scaleShape: fc.constantFrom<number[]>([], [1]),
    zeros: fc.constantFrom(false, false, false, true),
    scaleInput: fc.boolean(),
    second: fc.boolean(),
    diffB: fc.boolean(),
    fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(0, 1, 2, 4, 16), seed: values(48),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: scaledHostile }),
  })
  .map(({ model, codeDtype, codes, scale, scaleShape, zeros, scaleInput, second, diffB, fDtype, r, alpha, seed, hostile }) => {
    const v = from(seed);
    const names = SCALED_MODELS[model];
    // No NaN codes (e4m3fn 0x7F/0xFF; e5m2's top exponent, NaN and Inf).
    const clean = codes.map((x) => (codeDtype === 'F8_E4M3' ? ((x & 0x7f) === 0x7f ? x ^ 1 : x) : (x & 0x7c) === 0x7c ? x & ~0x40 : x));
    const h = hostile?.part;
    const tensors: FixtureTensor[] = [];
    const fp8Weight = (m: string, shape: number[], stored: Uint8Array, s: number, hostileHere: boolean) => {
      if (hostileHere && h === 'bf16 weight') tensors.push(st(`${m}.weight`, 'BF16', shape, Array.from(decodeValues(stored, codeDtype))));
      else tensors.push({ name: `${m}.weight`, dtype: codeDtype, shape, data: stored });
      tensors.push(st(`${m}.bias`, 'BF16', [shape[0]], v(shape[0], shape[1])));
      if (!(hostileHere && h === 'no scale')) {
        const scaleShapeHere = hostileHere && hostile?.part === 'scale shape' ? hostile.shape : scaleShape;
        const n = scaleShapeHere.reduce((a, b) => a * b, 1);
        const value = hostileHere && hostile?.part === 'scale value' ? hostile.value : s;
        tensors.push(st(`${m}.scale_weight`, hostileHere && hostile?.part === 'scale dtype' ? hostile.dtype : 'F32', scaleShapeHere, Array(n).fill(value)));
      }
      if (scaleInput) tensors.push(st(`${m}.scale_input`, 'F32', scaleShape, [0.03]));
    };
    const quantCodes = zeros ? new Uint8Array(OUT * IN) : clean.subarray(0, OUT * IN);
    fp8Weight(names.quant, [OUT, IN], quantCodes, Math.fround(scale), h !== undefined);
    fp8Weight(names.second, [OUT, IN], clean.subarray(OUT * IN, 2 * OUT * IN), Math.fround(scale * 1.5), false);
    fp8Weight(names.untouched, [IN, OUT], clean.subarray(2 * OUT * IN), Math.fround(scale / 3), false);
    tensors.push(st(names.norm, 'BF16', [IN], v(IN, 2)));
    if (h === 'vector scale') tensors.push(st(`${names.norm.slice(0, names.norm.lastIndexOf('.'))}.scale_weight`, 'F32', [], [0.5]));
    if (hostile?.part === 'orphan scale') tensors.push(st(`${names.orphan}.scale_weight`, 'F32', [], [hostile.value]));
    if (hostile?.part === 'marker') {
      const dtype = hostile.dtype === 'other fp8' ? (codeDtype === 'F8_E4M3' ? 'F8_E5M2' : 'F8_E4M3') : hostile.dtype;
      const n = hostile.shape.reduce((a, b) => a * b, 1);
      tensors.push({ name: SCALED_FP8, dtype, shape: hostile.shape, data: new Uint8Array(n * FIXTURE_DTYPE_BYTES[dtype]) });
    } else if (h !== 'no marker') tensors.push({ name: SCALED_FP8, dtype: codeDtype, shape: [0], data: new Uint8Array(0) });

    // sd-scripts' kohya LoRA (α/r; α 0: unset), maybe with ComfyUI's diff_b on the first module's bias.
    const targets = second ? [names.quant, names.second] : [names.quant];
    const kohya = (m: string) => `lora_unet_${m.replace(/\./g, '_')}`;
    const adapter: FixtureTensor[] = targets.flatMap((m, i) => {
      const up = zeros ? Array(OUT * r).fill(0) : v(OUT * r, 4 + 2 * i);
      return [st(`${kohya(m)}.lora_down.weight`, fDtype, [r, IN], v(r * IN, 3 + 2 * i)), st(`${kohya(m)}.lora_up.weight`, fDtype, [OUT, r], up), st(`${kohya(m)}.alpha`, 'F32', [], [alpha])];
    });
    if (diffB) adapter.push(st(`${kohya(names.quant)}.diff_b`, fDtype, [OUT], v(OUT, 9, 0.1)));
    return {
      name: `scaled fp8 ${codeDtype === 'F8_E4M3' ? 'e4m3fn' : 'e5m2'} (${model}) + kohya LoRA`,
      files: {
        [names.file]: { kind: 'safetensors', tensors },
        'lora.safetensors': { kind: 'safetensors', tensors: adapter },
      },
      base: names.file, adapter: 'lora.safetensors', out: 'merged.safetensors',
      outDtypes: ['bf16', 'f16', 'f32'], refusalsChecked: true,
      truth: (d, weight, outDtype) => {
        const t = (name: string) => d.tensors.get(`/${name}`)!;
        const loras = targets.map((m) => ({ layer: m, a: t(`${kohya(m)}.lora_down.weight`), b: t(`${kohya(m)}.lora_up.weight`), rank: r, scale: weight * kohyaScale(t(`${kohya(m)}.alpha`).values[0], r) }));
        const bias = diffB ? { key: `${names.quant}.bias`, diff: t(`${kohya(names.quant)}.diff_b`), scale: weight } : undefined;
        return scaledFp8Truth(d, loras, bias, outDtype);
      },
    };
  });

// --- compressed-tensors FP8 and NVIDIA ModelOpt FP8 / NVFP4 LLM folders ----------------------------------

/** The two LLM families quantized checkpoints of these kinds come as: names, config, and Qwen3's q/k norms. */
const LLM_MODELS = {
  Llama: { architectures: ['LlamaForCausalLM'], model_type: 'llama', repo: 'meta-llama/Llama-3.1-8B-Instruct', norms: [] as string[] },
  Qwen3: { architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', repo: 'Qwen/Qwen3-8B', norms: ['self_attn.q_norm.weight', 'self_attn.k_norm.weight'] },
} as const;

type LlmQuant = 'compressed-tensors' | 'modelopt-fp8' | 'modelopt-nvfp4';
/** NVFP4's inputs: two groups of 16 per row. */
const NV_IN = 32;
const HF_QUANT_CONFIG = 'model/hf_quant_config.json';
const TORCH_FLOAT: Partial<Record<string, 'F32' | 'F16' | 'BF16'>> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
/** The activation and KV-cache scales a quantized runtime alone reads (README, "--dtype f32/f16/bf16"). */
const RUNTIME_SCALE = /\.(?:input_scale|k_scale|v_scale|q_scale|kv_scale|prob_scale|prob_output_scale|[qkv]_proj\.output_scale)$/;

/** What makes such a folder hostile: one part of its quantization written wrong, or its config saying something else. */
type LlmHostile =
  | { part: 'scale value'; value: number }
  | { part: 'scale shape'; shape: number[] }
  | { part: 'scale dtype'; dtype: 'F16' | 'F64' | 'F8_E4M3' | 'I32' }
  | { part: 'no scale' }
  | { part: 'weight dtype'; dtype: 'BF16' | 'F8_E5M2' | 'I8' }
  | { part: 'early scale' }
  | { part: 'config'; edit: Record<string, unknown> }
  | { part: 'group config'; edit: Record<string, unknown> }
  | { part: 'hf producer'; name: string }
  | { part: 'global scale'; value: number; shape: number[]; dtype: 'F32' | 'BF16' }
  | { part: 'no global scale' }
  | { part: 'nan block scale' }
  | { part: 'negative block scale' };

const llmHostile = (quant: LlmQuant): fc.Arbitrary<LlmHostile> => {
  const common = [
    fc.record({ part: fc.constant('scale value' as const), value: fc.constantFrom(0, -0, -0.001, NaN, Infinity, -Infinity, 1e-40, 3e38) }),
    fc.record({ part: fc.constant('scale dtype' as const), dtype: fc.constantFrom<'F16' | 'F64' | 'F8_E4M3' | 'I32'>('F16', 'F64', 'F8_E4M3', 'I32') }),
    fc.constant<LlmHostile>({ part: 'no scale' }),
    fc.record({ part: fc.constant('weight dtype' as const), dtype: fc.constantFrom<'BF16' | 'F8_E5M2' | 'I8'>('BF16', 'F8_E5M2', 'I8') }),
    fc.constant<LlmHostile>({ part: 'early scale' }),
  ];
  const modelOptEdits = fc.constantFrom<Record<string, unknown>>(
    { quant_algo: 'fp8' }, { quant_algo: 'FP8_PER_CHANNEL_PER_TOKEN' }, { quant_algo: 'NVFP4' }, { quant_algo: 'nvfp4' }, { quant_algo: 'W4A16_NVFP4' }, { quant_algo: 'FP8' }, { quant_algo: 'W4A16_AWQ' }, { quant_algo: null }, { quant_algo: 8 },
    { exclude_modules: ['lm_head', 'model.layers.7.mlp.down_proj', 'vision_tower*'] }, { exclude_modules: ['model.layers.0.self_attn.q_proj'] }, { exclude_modules: 'lm_head' },
    { kv_cache_quant_algo: null }, { kv_cache_quant_algo: 'NVFP4' }, { group_size: 32 }, { group_size: 8 }, { group_size: '16' }, { group_size: 0 }, { group_size: -16 },
  );
  if (quant === 'compressed-tensors') {
    return fc.oneof(
      ...common,
      // [] and [1, 1]: one scale per tensor too; the others no grid.
      fc.record({ part: fc.constant('scale shape' as const), shape: fc.constantFrom<number[]>([], [1, 1], [OUT], [1, OUT], [IN, 1], [0], [2, 2], [OUT, 2]) }),
      fc.record({ part: fc.constant('config' as const), edit: fc.constantFrom<Record<string, unknown>>(
        { ignore: ['lm_head', 're:.*mlp.gate$', 'model.layers.9.self_attn.q_proj'] }, { ignore: ['model.layers.0.self_attn.q_proj'] }, { ignore: 'lm_head' }, { ignore: null },
        { quant_method: 'compressed_tensors' }, { quant_method: 'fp8' }, { format: 'pack-quantized' }, { format: 'naive-quantized' }, { sparsity_config: { format: 'sparse-24-bitmask' } },
        { sparsity_config: { format: 'dense' } }, { kv_cache_scheme: null }, { config_groups: {} }, { config_groups: null }, { quantization_status: 'frozen' },
      ) }),
      fc.record({ part: fc.constant('group config' as const), edit: fc.constantFrom<Record<string, unknown>>(
        { num_bits: 4 }, { type: 'int' }, { symmetric: false }, { dynamic: true }, { strategy: 'group' }, { strategy: 'tensor' }, { strategy: 'channel' },
        { strategy: 'block', block_structure: [2, 4] }, { strategy: 'block', block_structure: '2x4' }, { strategy: 'block', block_structure: [0, 4] }, { strategy: 'block', block_structure: [3] },
        { strategy: 'block', block_structure: [128, 128] }, { observer: 'mse' },
      ) }),
    );
  }
  if (quant === 'modelopt-fp8') {
    return fc.oneof(
      ...common,
      fc.record({ part: fc.constant('scale shape' as const), shape: fc.constantFrom<number[]>([OUT], [1, 1], [0], [OUT, 1]) }),
      fc.record({ part: fc.constant('config' as const), edit: modelOptEdits }),
      fc.record({ part: fc.constant('hf producer' as const), name: fc.constantFrom('llm-compressor', 'ModelOpt', '') }),
    );
  }
  return fc.oneof(
    fc.record({ part: fc.constant('global scale' as const), value: fc.constantFrom(0, -0, -1, NaN, Infinity, 1e-40, 3e38, 0.002), shape: fc.constantFrom<number[]>([], [], [1], [2], [1, 1]), dtype: fc.constantFrom<'F32' | 'BF16'>('F32', 'F32', 'BF16') }),
    fc.constant<LlmHostile>({ part: 'no global scale' }),
    fc.constant<LlmHostile>({ part: 'nan block scale' }),
    fc.constant<LlmHostile>({ part: 'negative block scale' }),
    fc.record({ part: fc.constant('scale shape' as const), shape: fc.constantFrom<number[]>([OUT, 1], [OUT, 4], [1, 2], [OUT, 2, 1], [OUT + 1, 2]) }),
    fc.record({ part: fc.constant('scale dtype' as const), dtype: fc.constantFrom<'F16' | 'F64' | 'F8_E4M3' | 'I32'>('F16', 'I32') }),
    fc.constant<LlmHostile>({ part: 'no scale' }),
    fc.record({ part: fc.constant('weight dtype' as const), dtype: fc.constantFrom<'BF16' | 'F8_E5M2' | 'I8'>('I8', 'BF16') }),
    fc.record({ part: fc.constant('config' as const), edit: modelOptEdits }),
    fc.record({ part: fc.constant('hf producer' as const), name: fc.constantFrom('llm-compressor', '') }),
  );
};

/** The ModelOpt config the folder holds, as vLLM finds it: config.json's `quant_method: "modelopt"` fields, else hf_quant_config.json's from producer "modelopt"; undefined for none, `unknown` where the file is not one the truth follows. */
function modelOptConfig(d: Decoded, config: Record<string, unknown>): Record<string, unknown> | undefined | 'unknown' {
  const qc = config.quantization_config;
  if (isJsonObject(qc) && typeof qc.quant_method === 'string' && qc.quant_method.toLowerCase().startsWith('modelopt')) return isJsonObject(qc.quantization) ? qc.quantization : qc;
  const text = d.json.get(HF_QUANT_CONFIG);
  if (text === undefined) return undefined;
  if (nestingDepth(text) > 64) return 'unknown';
  const hf = parsedJson(text);
  if (hf === undefined) return 'unknown';
  return isJsonObject(hf) && isJsonObject(hf.producer) && hf.producer.name === 'modelopt' && isJsonObject(hf.quantization) ? hf.quantization : undefined;
}

const LLM_FOLDER = 'model';
const llmTensorNames = (d: Decoded) => [...d.tensors.keys()].filter((k) => k.startsWith(`${LLM_FOLDER}/`)).map((k) => k.slice(LLM_FOLDER.length + 1));

/** config.json of an LLM folder and its ModelOpt config (modelOptConfig), or the Truth where the truth cannot follow them. */
function llmConfigs(d: Decoded): { config: Record<string, unknown>; modelopt: Record<string, unknown> | undefined } | Truth {
  const configText = d.json.get(`${LLM_FOLDER}/config.json`) ?? '';
  if (nestingDepth(configText) > 64) return { kind: 'unknown', why: 'config.json nests too deep to compare' };
  const config = parsedJson(configText);
  if (!isJsonObject(config)) return { kind: 'unknown', why: 'config.json is no object' };
  const modelopt = modelOptConfig(d, config);
  if (modelopt === 'unknown') return { kind: 'unknown', why: 'hf_quant_config.json is not JSON the truth follows' };
  return { config, modelopt };
}

/**
 * The `--dtype bf16` output of an LLM folder whose quantized weights are `merged` (dequantized):
 * their scale tensors (`isScale`), every activation and KV-cache scale, hf_quant_config.json (and
 * the format's own `quantizationFiles`) and
 * config.json's quantization_config left out; the written dtype config.json names not compared.
 */
function dequantizedLlm(d: Decoded, config: Record<string, unknown>, names: string[], merged: Map<string, ExpectedMerge>, isScale: (name: string) => boolean, quantizationFiles: string[] = []): Truth {
  const key = (name: string) => `${LLM_FOLDER}/${name}`;
  const leftOut = names.filter((n) => RUNTIME_SCALE.test(n) || isScale(n)).map(key);
  const converted = names.find((n) => !merged.has(key(n)) && !leftOut.includes(key(n)) && d.tensors.get(key(n))!.dtype !== 'BF16');
  if (converted) return { kind: 'unknown', why: `${converted} converted to bf16 (not followed here)` };
  const { quantization_config: _, ...configOut } = config;
  const absent = [...(d.json.has(HF_QUANT_CONFIG) ? [HF_QUANT_CONFIG] : []), ...quantizationFiles];
  return { kind: 'expected', merged, leftOut, json: { [key('config.json')]: { equals: configOut, except: ['dtype', 'torch_dtype'] } }, ...(absent.length ? { absent } : {}) };
}

/** quant_algo as vLLM compares it (upper-cased); NONE for a KV-cache-only config. */
const modelOptAlgo = (q: Record<string, unknown>) => (typeof q.quant_algo === 'string' ? q.quant_algo.toUpperCase() : q.quant_algo === undefined || q.quant_algo === null ? 'NONE' : 'unknown');

/**
 * The block shapes a compressed-tensors quantization_config allows (README, "fp8 LLM checkpoints"):
 * every config group's weights 8-bit float, symmetric, not dynamic, in the `float-quantized`
 * format (the group's or the config's), strategy `channel`, `tensor` or `block` (block_structure
 * two positive sizes, or "AxB"), no sparsity but `dense`; `undefined` where it is not read, a
 * Truth where a block structure is malformed.
 */
function compressedTensorsBlocks(qc: Record<string, unknown>): [number, number][] | undefined | Truth {
  if (!isJsonObject(qc.config_groups)) return undefined;
  if (isJsonObject(qc.sparsity_config) && qc.sparsity_config.format !== undefined && qc.sparsity_config.format !== 'dense') return undefined;
  const blocks: [number, number][] = [];
  for (const group of Object.values(qc.config_groups)) {
    if (!isJsonObject(group)) return undefined;
    const w = group.weights;
    if ((group.format ?? qc.format) !== 'float-quantized' || !isJsonObject(w) || w.num_bits !== 8 || w.type !== 'float' || w.symmetric === false || w.dynamic === true) return undefined;
    if (w.strategy === 'block') {
      const parsed = typeof w.block_structure === 'string' ? w.block_structure.split('x').map(Number) : w.block_structure;
      if (!Array.isArray(parsed) || parsed.length !== 2 || !parsed.every((n) => Number.isSafeInteger(n) && n > 0)) return { kind: 'invalid', why: `block_structure ${jsonKind(w.block_structure)}` };
      blocks.push(parsed as [number, number]);
    } else if (w.strategy !== 'channel' && w.strategy !== 'tensor') return undefined;
  }
  return blocks;
}

/**
 * The truth of a compressed-tensors FP8 or ModelOpt FP8 folder (README, "fp8 LLM checkpoints with
 * scale tensors" and "NVIDIA ModelOpt FP8 and NVFP4"), read from the decoded files. Each F8_E4M3
 * `<m>.weight` with a `<m>.weight_scale` in F32, BF16 or F16 is W = e4m3(code) × the scale of its
 * block: compressed-tensors per tensor (one value in at most two dimensions), per channel (out, 1)
 * or per block of the config's block_structure; ModelOpt per tensor only ([] or [1]); every scale
 * finite and not negative, else refused. Merged, by default: compressed-tensors W' rounded once to
 * f32 and each block quantized anew by llm-compressor's rule; ModelOpt W' rounded once to the
 * model's torch_dtype (bf16 when it names none) and quantized by ModelOpt's exporter's rule; the
 * new scales written in the scale's dtype and shape, config.json (and hf_quant_config.json) as they
 * were; a scale stored in an earlier shard than its merged weight refused. `--dtype bf16`: every
 * read weight dequantized (W' rounded once to bf16), its scale, every activation and KV-cache
 * scale, hf_quant_config.json and quantization_config left out. A config that reads none of them,
 * a weight whose scale is not read, an F8_E4M3 weight with no weight_scale: refused where merged
 * or converted.
 */
function fp8LlmTruth(d: Decoded, targets: LoraTarget[], shardOf: (name: string) => number, outDtype: OutDtype | undefined): Truth {
  const configs = llmConfigs(d);
  if ('kind' in configs) return configs;
  const { config, modelopt } = configs;
  const tensor = (name: string) => d.tensors.get(`${LLM_FOLDER}/${name}`);
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const qc = config.quantization_config;
  let rule: 'divide' | 'modelopt' | undefined;
  let blocks: [number, number][] = [];
  if (modelopt) {
    if (modelOptAlgo(modelopt) === 'FP8') rule = 'modelopt';
  } else if (isJsonObject(qc) && qc.quant_method === 'compressed-tensors') {
    const read = compressedTensorsBlocks(qc);
    if (read && !Array.isArray(read)) return read;
    if (read) [rule, blocks] = ['divide', read];
  }
  // Neither reads the fp8 weights: their codes beside weight_scale are refused where an adapter changes them.
  if (!rule && targets.some((t) => !tensor(`${t.layer}.weight_scale`))) return { kind: 'unknown', why: 'no config read, and a plain fp8 weight (not followed here)' };
  if (!rule) return invalid(`the config reads no fp8 weights (${modelopt ? `quant_algo ${jsonKind(modelopt.quant_algo)}` : `quantization_config ${jsonKind(isJsonObject(qc) ? qc.quant_method : qc)}`})`);
  // torch_dtype, else dtype (null is none), as the model's dtype; bf16 where neither names a float.
  const named = config.torch_dtype ?? config.dtype;
  const modelDtype = (typeof named === 'string' ? TORCH_FLOAT[named] : undefined) ?? 'BF16';

  const names = llmTensorNames(d);
  const fp8 = new Map<string, { scales: Float64Array; dtype: 'F32' | 'F16' | 'BF16'; block: [number, number] }>();
  const unread = new Set<string>();
  for (const name of names.filter((n) => n.endsWith('.weight_scale'))) {
    const layer = name.slice(0, -'.weight_scale'.length);
    const w = tensor(`${layer}.weight`);
    const s = tensor(name)!;
    if (!w) continue;
    if (w.dtype !== 'F8_E4M3' || w.shape.length !== 2 || !['F32', 'BF16', 'F16'].includes(s.dtype)) {
      unread.add(layer);
      continue;
    }
    const [rows, cols] = w.shape;
    const n = s.values.length;
    let block: [number, number] | undefined;
    if (rule === 'modelopt') block = s.shape.length <= 1 && n === 1 ? [rows, cols] : undefined;
    else if (n === 1 && s.shape.length <= 2) block = [rows, cols];
    else if (s.shape.length === 2 && s.shape[0] === rows && s.shape[1] === 1) block = [1, cols];
    else block = blocks.find(([bm, bn]) => s.shape.length === 2 && s.shape[0] === Math.ceil(rows / bm) && s.shape[1] === Math.ceil(cols / bn));
    if (!block) return invalid(`${name} of shape [${s.shape.join(', ')}] is no grid over ${layer}.weight [${rows}, ${cols}]`);
    if (s.values.some((x) => !(Number.isFinite(x) && x >= 0))) return invalid(`${name} holds a scale that is negative or not finite`);
    fp8.set(layer, { scales: s.values, dtype: s.dtype as 'F32' | 'F16' | 'BF16', block });
  }
  // An F8_E4M3 weight without its weight_scale: the config gives every fp8 weight one.
  const scaleless = names.filter((n) => n.endsWith('.weight') && tensor(n)!.dtype === 'F8_E4M3' && !tensor(`${n}_scale`)).map((n) => n.slice(0, -'.weight'.length));
  for (const { layer } of targets) if (unread.has(layer) || scaleless.includes(layer)) return invalid(`an adapter changes ${layer}.weight, stored in a form not read`);
  if (outDtype && (unread.size || scaleless.length)) return invalid(`--dtype ${outDtype} on a base holding ${[...unread, ...scaleless][0]}.weight in a form not read`);

  const real = (layer: string) => {
    const { scales, block } = fp8.get(layer)!;
    const w = tensor(`${layer}.weight`)!;
    const cols = w.shape[1];
    const gridCols = Math.ceil(cols / block[1]);
    return Float64Array.from(w.bytes, (b, i) => e4m3Value(b) * scales[Math.floor(Math.floor(i / cols) / block[0]) * gridCols + Math.floor((i % cols) / block[1])]);
  };
  const key = (name: string) => `${LLM_FOLDER}/${name}`;
  const merged = new Map<string, ExpectedMerge>();
  const hfText = d.json.get(HF_QUANT_CONFIG);
  if (outDtype) {
    for (const layer of fp8.keys()) {
      const w = mergedF32(real(layer), targets.find((t) => t.layer === layer), 'BF16');
      if (!w) return invalid(`${layer}.weight: W' not finite in bf16`);
      merged.set(key(`${layer}.weight`), { values: w, magnitude: 0, dtype: 'BF16', exact: true });
    }
    return dequantizedLlm(d, config, names, merged, (n) => n.endsWith('.weight_scale') && fp8.has(n.slice(0, -'.weight_scale'.length)));
  }
  for (const target of targets) {
    const { layer } = target;
    const q = fp8.get(layer)!;
    const w = tensor(`${layer}.weight`)!;
    if (shardOf(`${layer}.weight_scale`) < shardOf(`${layer}.weight`)) return invalid(`${layer}.weight_scale is stored in an earlier shard than its weight`);
    const [rows, cols] = w.shape;
    const wq = mergedF32(real(layer), target, rule === 'modelopt' ? modelDtype : 'F32');
    if (!wq) return invalid(`${layer}.weight: W' not finite`);
    const codes = new Float64Array(rows * cols);
    const scales = Float64Array.from(q.scales);
    const gridCols = Math.ceil(cols / q.block[1]);
    for (let br = 0; br * q.block[0] < rows; br++) for (let bc = 0; bc * q.block[1] < cols; bc++) {
      const cells: number[] = [];
      for (let r = br * q.block[0]; r < Math.min(rows, (br + 1) * q.block[0]); r++) for (let c = bc * q.block[1]; c < Math.min(cols, (bc + 1) * q.block[1]); c++) cells.push(r * cols + c);
      const values = cells.map((i) => wq[i]);
      let again: { scale: number; codes: Float64Array };
      if (rule === 'divide') {
        again = compressedTensorsRequantize(values, q.dtype);
        if (!Number.isFinite(again.scale)) return invalid(`${layer}: a block's new scale ${again.scale} (${q.dtype})`);
      } else {
        if (maxAbs(values) === 0) continue; // a weight of zeros keeps its scale; its codes are zeros
        const m = modelOptRequantize(values, modelDtype, q.dtype);
        if (!Number.isFinite(m.scale) || !(Number.isFinite(m.divisor) && m.divisor > 0)) return invalid(`${layer}: the new scale ${m.scale} (${q.dtype}) is ${m.divisor} in ${modelDtype}`);
        again = m;
      }
      scales[br * gridCols + bc] = again.scale;
      cells.forEach((i, k) => (codes[i] = again.codes[k]));
    }
    merged.set(key(`${layer}.weight`), { values: codes, magnitude: 0, exact: true });
    merged.set(key(`${layer}.weight_scale`), { values: scales, magnitude: 0, exact: true });
  }
  return { kind: 'expected', merged, json: { [key('config.json')]: { equals: config }, ...(hfText !== undefined ? { [HF_QUANT_CONFIG]: { equals: parsedJson(hfText) as Record<string, unknown> } } : {}) } };
}

const E2M1_NIBBLE = (byte: number, odd: boolean) => (odd ? byte >> 4 : byte & 0x0f);

/**
 * The truth of a ModelOpt NVFP4 folder (README, "NVIDIA ModelOpt FP8 and NVFP4"): quant_algo
 * NVFP4 or W4A16_NVFP4; each `<m>.weight_scale_2` (one F32) with its U8 `<m>.weight` (out, in/2) and
 * F8_E4M3 `<m>.weight_scale` (out, in/group_size, 16 unless the config gives a number) is W =
 * e2m1(nibble) × e4m3(block scale) × weight_scale_2 (element 2k the low nibble), the global scale
 * finite and not negative, no block scale NaN; anything else refused. Written only with `--dtype`:
 * every such weight dequantized (W' rounded once to bf16), its three scales, every activation and
 * KV-cache scale, hf_quant_config.json and quantization_config left out.
 */
function nvfp4Truth(d: Decoded, targets: LoraTarget[], outDtype: OutDtype | undefined): Truth {
  const configs = llmConfigs(d);
  if ('kind' in configs) return configs;
  const { config, modelopt } = configs;
  const tensor = (name: string) => d.tensors.get(`${LLM_FOLDER}/${name}`);
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const algo = modelopt ? modelOptAlgo(modelopt) : undefined;
  if (algo !== 'NVFP4' && algo !== 'W4A16_NVFP4') return invalid(`quant_algo ${String(algo)}: the U8 weights beside weight_scale are not read`);
  // A group_size that is not a number is refused (NVFP4 reads it; FP8 never does).
  if (modelopt!.group_size !== undefined && modelopt!.group_size !== null && typeof modelopt!.group_size !== 'number') return invalid(`group_size ${JSON.stringify(modelopt!.group_size)}`);
  const group = typeof modelopt!.group_size === 'number' ? modelopt!.group_size : 16;
  const names = llmTensorNames(d);
  const nvfp4 = new Map<string, (i: number) => number>();
  for (const name of names.filter((n) => n.endsWith('.weight_scale_2'))) {
    const layer = name.slice(0, -'.weight_scale_2'.length);
    const w = tensor(`${layer}.weight`), s = tensor(`${layer}.weight_scale`), g = tensor(name)!;
    if (!w || !s) return invalid(`${layer}: weight or weight_scale missing`);
    if (w.dtype !== 'U8' || w.shape.length !== 2) return invalid(`${layer}.weight is ${w.dtype} [${w.shape.join(', ')}]`);
    if (s.dtype !== 'F8_E4M3' || s.shape.length !== 2 || s.shape[0] !== w.shape[0]) return invalid(`${layer}.weight_scale is ${s.dtype} [${s.shape.join(', ')}]`);
    if (g.dtype !== 'F32' || g.values.length !== 1) return invalid(`${name} is ${g.dtype} [${g.shape.join(', ')}]`);
    const cols = w.shape[1] * 2;
    if (cols % group !== 0 || s.shape[1] !== cols / group) return invalid(`${layer}.weight_scale has ${s.shape[1]} scales per row for ${cols} inputs in groups of ${group}`);
    const global = g.values[0];
    if (!(Number.isFinite(global) && global >= 0)) return invalid(`${name} is ${global}`);
    // ModelOpt's f32(block scale × weight_scale_2) past float32 for the largest block scale: refused.
    if (!Number.isFinite(Math.fround(448 * global))) return invalid(`${name} is ${global}: times 448 beyond float32`);
    if (outDtype && s.bytes.some((b) => (b & 0x7f) === 0x7f)) return invalid(`${layer}.weight_scale holds NaN`);
    const groups = cols / group;
    // As ModelOpt dequantizes: f32(e2m1 × f32(e4m3 block scale × weight_scale_2)).
    nvfp4.set(layer, (i) => modelOptNvfp4Value(E2M1_NIBBLE(w.bytes[i >> 1], (i & 1) === 1), s.bytes[Math.floor(i / cols) * groups + Math.floor((i % cols) / group)], global));
  }
  // A weight beside a scale tensor that is not an NVFP4 one: not read.
  const unread = names.filter((n) => n.endsWith('.weight') && !nvfp4.has(n.slice(0, -'.weight'.length)) && (tensor(`${n}_scale`) || tensor(`${n}_scale_2`))).map((n) => n.slice(0, -'.weight'.length));
  for (const { layer } of targets) if (!nvfp4.has(layer)) return invalid(`an adapter changes ${layer}.weight, not read as NVFP4`);
  if (!outDtype) return invalid('NVFP4 weights are written only dequantized');
  if (unread.length) return invalid(`--dtype ${outDtype} on a base holding ${unread[0]}.weight in a form not read`);
  const merged = new Map<string, ExpectedMerge>();
  const key = (name: string) => `${LLM_FOLDER}/${name}`;
  for (const [layer, value] of nvfp4) {
    const w = tensor(`${layer}.weight`)!;
    const [rows, cols] = [w.shape[0], w.shape[1] * 2];
    const values = mergedF32(Float64Array.from({ length: rows * cols }, (_, i) => value(i)), targets.find((t) => t.layer === layer), 'BF16', rows, cols);
    if (!values) return invalid(`${layer}.weight: W' not finite in bf16`);
    merged.set(key(`${layer}.weight`), { values, magnitude: 0, dtype: 'BF16', exact: true, shape: [rows, cols] });
  }
  return dequantizedLlm(d, config, names, merged, (n) => (n.endsWith('.weight_scale') || n.endsWith('.weight_scale_2')) && nvfp4.has(n.slice(0, n.lastIndexOf('.'))));
}

/** An LLM folder's safetensors under model/: one file, or two shards with their index. */
function addModelFiles(files: Record<string, SpecFile>, shards: FixtureTensor[][]): void {
  if (shards.length === 1) {
    files['model/model.safetensors'] = { kind: 'safetensors', tensors: shards[0], metadata: { format: 'pt' } };
    return;
  }
  const shardName = (i: number) => `model-0000${i + 1}-of-0000${shards.length}.safetensors`;
  shards.forEach((tensors, i) => (files[`model/${shardName(i)}`] = { kind: 'safetensors', tensors, metadata: { format: 'pt' } }));
  const weightMap = Object.fromEntries(shards.flatMap((tensors, i) => tensors.map((t) => [t.name, shardName(i)])));
  const bytes = (t: FixtureTensor) => t.shape.reduce((a, b) => a * b, 1) * FIXTURE_DTYPE_BYTES[t.dtype];
  files['model/model.safetensors.index.json'] = { kind: 'json', value: { metadata: { total_size: shards.flat().reduce((n, t) => n + bytes(t), 0) }, weight_map: weightMap } };
}

/**
 * A quantized Llama or Qwen3 folder as the Hub ships it, one file or two shards with their index,
 * and a PEFT LoRA (or rsLoRA) on q_proj and maybe v_proj:
 * - compressed-tensors FP8 (RedHat's "-FP8-dynamic" and "-FP8"): `weight_scale` per channel (out, 1)
 *   in BF16, per tensor (1,) in F32, or per block of the config's block_structure; sometimes a
 *   static `input_scale` and kv_cache_scheme's `self_attn.k_scale` / `v_scale`; lm_head ignored;
 * - ModelOpt FP8 (nvidia/*-FP8): `weight_scale` and `input_scale` F32 (), `k_proj.k_scale` /
 *   `v_proj.v_scale`, the config in hf_quant_config.json or config.json's quantization_config,
 *   torch_dtype bfloat16, float16 or none;
 * - ModelOpt NVFP4 (nvidia/*-FP4): packed U8 `weight` (out, in/2), F8_E4M3 `weight_scale`
 *   (out, in/16), F32 `weight_scale_2` and `input_scale`;
 * the projections the adapter leaves alone quantized too, embeddings, norms and lm_head in bf16.
 */
const llmQuantWorld = (quant: LlmQuant): fc.Arbitrary<SurfaceWorld> => fc
  .record({
    model: fc.constantFrom<keyof typeof LLM_MODELS>('Llama', 'Qwen3'),
    sharded: fc.boolean(),
    strategy: fc.constantFrom<'channel' | 'tensor' | 'block'>('channel', 'channel', 'tensor', 'block'),
    ctScaleDtype: fc.constantFrom<'F32' | 'BF16' | 'F16'>('BF16', 'BF16', 'F32', 'F16'),
    staticInput: fc.boolean(),
    inConfig: fc.boolean(),
    // transformers 4.56+ writes `dtype`; older exports `torch_dtype`.
    torchDtype: fc.constantFrom<{ torch_dtype?: unknown; dtype?: unknown }>({ torch_dtype: 'bfloat16' }, { torch_dtype: 'bfloat16' }, { torch_dtype: 'float16' }, { dtype: 'float16' }, { torch_dtype: 'float32' }, {}, { torch_dtype: 'float8_e4m3fn' }, { torch_dtype: null, dtype: 'float16' }),
    codes: fc.uint8Array({ minLength: 4 * OUT * NV_IN, maxLength: 4 * OUT * NV_IN }),
    scale: fc.constantFrom(0.0004, 0.002, 1 / 448, 0.01, 0.3),
    zeros: fc.constantFrom(false, false, false, true),
    onV: fc.boolean(),
    fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 4, 16), rslora: fc.boolean(), seed: values(48),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: llmHostile(quant) }),
  })
  .map(({ model, sharded, strategy, ctScaleDtype, staticInput, inConfig, torchDtype, codes, scale, zeros, onV, fDtype, r, alpha, rslora, seed, hostile }) => {
    const v = from(seed);
    const family = LLM_MODELS[model];
    const cols = quant === 'modelopt-nvfp4' ? NV_IN : IN;
    const h = hostile?.part;
    const block: [number, number] = [4, 4];
    // No NaN codes: e4m3fn 0x7F / 0xFF.
    const clean = codes.map((x) => ((x & 0x7f) === 0x7f ? x ^ 1 : x));
    const [q, k, vp, o] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `${L}.self_attn.${p}`);
    const shard1: FixtureTensor[] = [st('model.embed_tokens.weight', 'BF16', [4, cols], v(4 * cols, 1))];
    const shard2: FixtureTensor[] = [];
    /** One quantized projection's tensors; `hostileHere` on q_proj alone. */
    const projection = (m: string, salt: number, into: FixtureTensor[], hostileHere: boolean) => {
      const stored = zeros && m === q ? new Uint8Array(OUT * cols) : clean.subarray(salt * OUT * cols, (salt + 1) * OUT * cols);
      const hs = hostileHere ? hostile : null;
      const s = Math.fround(scale * (1 + salt / 3));
      const scaleInto = hostile?.part === 'early scale' && m === vp ? shard1 : into;
      if (quant === 'modelopt-nvfp4') {
        const packed = stored.subarray(0, (OUT * cols) / 2);
        into.push(hs?.part === 'weight dtype' ? (hs.dtype === 'BF16' ? st(`${m}.weight`, 'BF16', [OUT, cols / 2], Array.from(packed, (b) => b / 64)) : { name: `${m}.weight`, dtype: 'I8', shape: [OUT, cols / 2], data: packed }) : { name: `${m}.weight`, dtype: 'U8', shape: [OUT, cols / 2], data: packed });
        // Block scales as ModelOpt writes them: e4m3 of amax / (6 · weight_scale_2), here around 1..448.
        const blocks = Uint8Array.from({ length: OUT * (cols / 16) }, (_, i) => 0x30 + ((stored[i] ^ salt) % 0x40));
        if (hs?.part === 'nan block scale') blocks[1] = 0x7f;
        // A sign bit on a block scale: ModelOpt writes none, vLLM multiplies by it as it is.
        if (hs?.part === 'negative block scale') blocks[2] |= 0x80;
        if (hs?.part !== 'no scale') {
          if (hs?.part === 'scale shape') scaleInto.push({ name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape: hs.shape, data: new Uint8Array(hs.shape.reduce((a, b) => a * b, 1)).fill(0x38) });
          else if (hs?.part === 'scale dtype') scaleInto.push(hs.dtype === 'F16' ? st(`${m}.weight_scale`, 'F16', [OUT, cols / 16], Array.from(blocks, e4m3Value)) : { name: `${m}.weight_scale`, dtype: 'I32', shape: [OUT, cols / 16], data: new Uint8Array(blocks.length * 4) });
          else scaleInto.push({ name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape: [OUT, cols / 16], data: blocks });
        }
        if (hs?.part === 'global scale') scaleInto.push(st(`${m}.weight_scale_2`, hs.dtype, hs.shape, Array(hs.shape.reduce((a, b) => a * b, 1)).fill(hs.value)));
        else if (hs?.part !== 'no global scale') scaleInto.push(st(`${m}.weight_scale_2`, 'F32', [], [s / 100]));
        into.push(st(`${m}.input_scale`, 'F32', [], [0.0017]));
        return;
      }
      if (hs?.part === 'weight dtype') into.push(hs.dtype === 'BF16' ? st(`${m}.weight`, 'BF16', [OUT, cols], Array.from(stored, e4m3Value)) : { name: `${m}.weight`, dtype: hs.dtype, shape: [OUT, cols], data: stored });
      else into.push({ name: `${m}.weight`, dtype: 'F8_E4M3', shape: [OUT, cols], data: stored });
      if (hs?.part !== 'no scale') {
        let shape: number[], dtype: FixtureDType;
        if (quant === 'modelopt-fp8') [shape, dtype] = [[], 'F32'];
        else if (strategy === 'channel') [shape, dtype] = [[OUT, 1], ctScaleDtype];
        else if (strategy === 'tensor') [shape, dtype] = [[1], ctScaleDtype === 'BF16' ? 'F32' : ctScaleDtype];
        else [shape, dtype] = [[Math.ceil(OUT / block[0]), Math.ceil(cols / block[1])], ctScaleDtype === 'BF16' ? 'F32' : ctScaleDtype];
        if (hs?.part === 'scale shape') shape = hs.shape;
        if (hs?.part === 'scale dtype') dtype = hs.dtype;
        const n = shape.reduce((a, b) => a * b, 1);
        const data = hs?.part === 'scale value' ? Array(n).fill(hs.value) : Array.from({ length: n }, (_, i) => s * (1 + (i % 3) / 4));
        scaleInto.push(dtype === 'F8_E4M3' ? { name: `${m}.weight_scale`, dtype, shape, data: Uint8Array.from(data, () => 0x20) } : st(`${m}.weight_scale`, dtype, shape, data));
      }
      if (quant === 'modelopt-fp8' || staticInput) into.push(st(`${m}.input_scale`, 'F32', quant === 'modelopt-fp8' ? [] : [1], [0.0213]));
    };
    projection(q, 0, shard1, true);
    projection(k, 1, shard1, false);
    for (const norm of family.norms) shard1.push(st(`${L}.${norm}`, 'BF16', [cols], v(cols, 5)));
    projection(vp, 2, shard2, false);
    projection(o, 3, shard2, false);
    // KV-cache scales: compressed-tensors' kv_cache_scheme on self_attn, ModelOpt's on k_proj / v_proj.
    const kvCache = quant !== 'compressed-tensors' || staticInput;
    if (kvCache) {
      if (quant === 'compressed-tensors') shard2.push(st(`${L}.self_attn.k_scale`, 'F32', [], [0.0371]), st(`${L}.self_attn.v_scale`, 'F32', [], [0.0123]));
      else shard2.push(st(`${k}.k_scale`, 'F32', [], [1]), st(`${vp}.v_scale`, 'F32', [], [1]));
    }
    shard2.push(st('model.norm.weight', 'BF16', [cols], v(cols, 2)), st('lm_head.weight', 'BF16', [4, cols], v(4 * cols, 3)));

    // The configs.
    const configJson: Record<string, unknown> = { architectures: family.architectures, model_type: family.model_type, hidden_size: cols, num_hidden_layers: 1, vocab_size: 4, ...torchDtype };
    const files: Record<string, SpecFile> = {};
    const ctGroup: Record<string, unknown> = { num_bits: 8, type: 'float', strategy, symmetric: true, dynamic: false, observer: 'minmax', ...(strategy === 'block' ? { block_structure: block } : {}) };
    if (hostile?.part === 'group config') Object.assign(ctGroup, hostile.edit);
    const algo = quant === 'modelopt-fp8' ? 'FP8' : 'NVFP4';
    const modelOptFields: Record<string, unknown> = { quant_algo: algo, kv_cache_quant_algo: 'FP8', exclude_modules: ['lm_head'], ...(quant === 'modelopt-nvfp4' ? { group_size: 16 } : {}) };
    if (hostile?.part === 'config' && quant !== 'compressed-tensors') Object.assign(modelOptFields, hostile.edit);
    if (quant === 'compressed-tensors') {
      const qc: Record<string, unknown> = {
        quant_method: 'compressed-tensors', format: 'float-quantized', quantization_status: 'compressed', ignore: ['lm_head'], version: '0.9.2',
        config_groups: { group_0: { targets: ['Linear'], weights: ctGroup, input_activations: staticInput ? { num_bits: 8, type: 'float', strategy: 'tensor', symmetric: true, dynamic: false } : { num_bits: 8, type: 'float', strategy: 'token', symmetric: true, dynamic: true } } },
        ...(kvCache ? { kv_cache_scheme: { num_bits: 8, type: 'float', strategy: 'tensor', dynamic: false, symmetric: true } } : {}),
      };
      if (hostile?.part === 'config') Object.assign(qc, hostile.edit);
      configJson.quantization_config = qc;
    } else if (inConfig) {
      const { exclude_modules: ignore, kv_cache_quant_algo: kv, ...rest } = modelOptFields;
      configJson.quantization_config = { quant_method: 'modelopt', ...rest, ignore, kv_cache_scheme: kv === 'FP8' ? { num_bits: 8, type: 'float', dynamic: false } : kv };
    } else {
      files[HF_QUANT_CONFIG] = { kind: 'json', value: { producer: { name: hostile?.part === 'hf producer' ? hostile.name : 'modelopt', version: '0.29.0' }, quantization: modelOptFields } };
    }
    files['model/config.json'] = { kind: 'json', value: configJson };
    addModelFiles(files, sharded ? [shard1, shard2] : [[...shard1, ...shard2]]);
    const shardOf = (name: string) => (!sharded ? 0 : shard1.some((t) => t.name === name) ? 1 : 2);

    // The adapter: PEFT LoRA (or rsLoRA) on q_proj, maybe v_proj.
    const targets = onV ? [q, vp] : [q];
    const peft = (m: string) => `base_model.model.${m}`;
    files['peft/adapter_model.safetensors'] = {
      kind: 'safetensors',
      tensors: targets.flatMap((m, i) => [st(`${peft(m)}.lora_A.weight`, fDtype, [r, cols], v(r * cols, 3 + 2 * i)), st(`${peft(m)}.lora_B.weight`, fDtype, [OUT, r], zeros && m === q ? Array(OUT * r).fill(0) : v(OUT * r, 4 + 2 * i))]),
    };
    files['peft/adapter_config.json'] = { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: family.repo, r, lora_alpha: alpha, use_rslora: rslora, target_modules: onV ? ['q_proj', 'v_proj'] : ['q_proj'] } };
    const kindName = quant === 'compressed-tensors' ? `compressed-tensors FP8 (${strategy})` : quant === 'modelopt-fp8' ? `ModelOpt FP8 (${inConfig ? 'config.json' : 'hf_quant_config.json'})` : 'ModelOpt NVFP4';
    return {
      name: `${kindName} folder + PEFT LoRA`,
      files, base: 'model', adapter: 'peft', out: 'merged',
      outDtypes: ['bf16'], refusalsChecked: true,
      truth: (d, weight, outDtype) => {
        const s = configScale(d, 'peft/adapter_config.json', 'lora_alpha', r, true);
        if (typeof s !== 'number') return s;
        const loras = targets.map((m) => ({ layer: m, a: d.tensors.get(`peft/${peft(m)}.lora_A.weight`)!, b: d.tensors.get(`peft/${peft(m)}.lora_B.weight`)!, rank: r, scale: weight * s, rows: OUT, cols }));
        return quant === 'modelopt-nvfp4' ? nvfp4Truth(d, loras, outDtype) : fp8LlmTruth(d, loras, shardOf, outDtype);
      },
    };
  });

// --- integer weight-only LLM bases: GPTQ, AWQ GEMM, compressed-tensors int -----------------------

type IntQuant = 'gptq' | 'awq' | 'compressed-tensors-int';
const INT_ROWS = 16;
const INT_COLS = 32;
/** compressed-tensors pack-quantized inputs: groups of 8, the last one ragged (6). */
const CT_COLS = 30;
const INT_GROUP = 8;
/** The stored tensors of one quantized weight, by role, as each format names them. */
const INT_PARTS: Record<IntQuant | 'int8', Partial<Record<'codes' | 'zeros' | 'scales' | 'gIdx' | 'shape', string>>> = {
  gptq: { codes: 'qweight', zeros: 'qzeros', scales: 'scales', gIdx: 'g_idx' },
  awq: { codes: 'qweight', zeros: 'qzeros', scales: 'scales' },
  'compressed-tensors-int': { codes: 'weight_packed', zeros: 'weight_zero_point', scales: 'weight_scale', gIdx: 'weight_g_idx', shape: 'weight_shape' },
  int8: { codes: 'weight', zeros: 'weight_zero_point', scales: 'weight_scale' },
};
type IntRole = keyof (typeof INT_PARTS)['gptq'] | 'shape';

/** What makes such a folder hostile: one stored part of q_proj written wrong, or its config saying something else. */
type IntHostile =
  | { part: 'scale value'; value: number; at: number }
  | { part: 'dtype'; role: IntRole; dtype: 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U32' }
  | { part: 'shape'; role: IntRole; shape: 'transposed' | 'one more row' | 'flat' }
  | { part: 'missing'; role: IntRole }
  | { part: 'g_idx value'; value: number | 'groups' | 'last'; at: number }
  | { part: 'max zero' }
  | { part: 'config'; edit: Record<string, unknown> }
  | { part: 'group config'; edit: Record<string, unknown> };

const intHostile = (quant: IntQuant): fc.Arbitrary<IntHostile> => {
  const roles = fc.constantFrom<IntRole>(...(Object.keys(INT_PARTS[quant]) as IntRole[]));
  const configEdits: Record<IntQuant, Record<string, unknown>[]> = {
    gptq: [
      { bits: 8 }, { bits: 4 }, { bits: 2 }, { bits: 3 }, { bits: '4' }, { group_size: 16 }, { group_size: -1 }, { group_size: 0 }, { group_size: 7.5 },
      { checkpoint_format: 'gptq_v2' }, { checkpoint_format: 'gptq' }, { checkpoint_format: 'marlin' }, { checkpoint_format: undefined, format: 'gptq_v2' },
      { desc_act: true }, { desc_act: false }, { sym: false }, { quant_method: 'awq' }, { quant_method: 'GPTQ' },
    ],
    awq: [
      { version: 'GEMV' }, { version: 'GEMM' }, { version: 'exllama' }, { version: 7 }, { bits: 8 }, { bits: undefined, w_bit: 4 }, { bits: undefined }, { zero_point: false },
      { group_size: 16 }, { group_size: 64 }, { group_size: 0 }, { group_size: undefined, q_group_size: 8 }, { modules_to_not_convert: ['q_proj'] }, { quant_method: 'gptq' },
    ],
    'compressed-tensors-int': [
      // The other int format's name over these tensors, oftener: a config that disagrees with its tensors.
      { format: 'int-quantized' }, { format: 'int-quantized' }, { format: 'int-quantized' }, { format: 'pack-quantized' }, { format: 'pack-quantized' }, { format: 'pack-quantized' }, { format: 'marlin-24' }, { format: 'nvfp4-pack-quantized' }, { format: undefined },
      { sparsity_config: { format: 'sparse-24-bitmask' } }, { sparsity_config: { format: 'dense' } }, { ignore: ['model.layers.0.self_attn.q_proj'] }, { config_groups: {} },
    ],
  };
  return fc.oneof(
    fc.record({ part: fc.constant('scale value' as const), value: fc.constantFrom(NaN, Infinity, -Infinity, -0.01, 0, -0, 6e-8, 65504, 1e-40), at: fc.nat(3) }),
    fc.record({ part: fc.constant('dtype' as const), role: roles, dtype: fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U32') }),
    fc.record({ part: fc.constant('shape' as const), role: roles, shape: fc.constantFrom<'transposed' | 'one more row' | 'flat'>('transposed', 'one more row', 'flat') }),
    fc.record({ part: fc.constant('missing' as const), role: roles }),
    ...(quant === 'awq' ? [] : [fc.record({ part: fc.constant('g_idx value' as const), value: fc.constantFrom<number | 'groups' | 'last'>('groups', 'groups', 'last', -1, 2 ** 31 - 1), at: fc.nat(INT_COLS - 1) })]),
    fc.constant<IntHostile>({ part: 'max zero' }),
    fc.record({ part: fc.constant('config' as const), edit: fc.constantFrom(...configEdits[quant]) }),
    ...(quant === 'compressed-tensors-int' ? [fc.record({ part: fc.constant('group config' as const), edit: fc.constantFrom<Record<string, unknown>>(
      { num_bits: 8 }, { num_bits: 4 }, { num_bits: 2 }, { num_bits: 9 }, { strategy: 'group', group_size: 8 }, { strategy: 'group', group_size: 16 }, { strategy: 'group', group_size: 0 },
      { strategy: 'channel' }, { strategy: 'tensor' }, { strategy: 'block' }, { dynamic: true }, { symmetric: false }, { actorder: 'weight' }, { type: 'float' },
    ) })] : []),
  );
};

/** Assigns `edit` to `target`, an undefined value deleting the field. */
function edited(target: Record<string, unknown>, edit: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(edit)) {
    if (v === undefined) delete target[k];
    else target[k] = v;
  }
}

/** One read integer weight: its real values (out × in), and the stored tensors it stands for. */
interface IntReal { rows: number; cols: number; values: Float64Array; parts: string[] }
type IntRead = Map<string, IntReal>;

/** Unsigned `bits`-bit value number `slot` of an int32 word (low bits first). */
const field = (word: number, bits: number, slot: number) => Math.floor((word < 0 ? word + 2 ** 32 : word) / 2 ** (bits * slot)) % 2 ** bits;
/** Value k of a 3-bit GPTQ run of 32 over 3 int32 words (`word(0…2)`), bit by bit from the run's 96-bit stream. */
function gptq3Field(word: (w: number) => number, k: number): number {
  let value = 0;
  for (let bit = 0; bit < 3; bit++) {
    const b = 3 * k + bit;
    value += field(word(Math.floor(b / 32)), 1, b % 32) * 2 ** bit;
  }
  return value;
}
const safeSize = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const is2d = (t: DecodedTensor | undefined, dtype: string | string[], rows?: number, cols?: number) =>
  !!t && (Array.isArray(dtype) ? dtype.includes(t.dtype) : t.dtype === dtype) && t.shape.length === 2 && (rows === undefined || t.shape[0] === rows) && (cols === undefined || t.shape[1] === cols);
/** The first scale that is NaN, infinite or negative, as README's rule for these formats refuses it. */
const badScale = (v: ArrayLike<number>) => Array.from(v).find((s) => !(Number.isFinite(s) && s >= 0));
const SCALE_DTYPES = ['F16', 'BF16'];

/**
 * GPTQ as README.md's "Integer weight-only checkpoints" states it: checkpoint_format (or format)
 * gptq (default) or gptq_v2, bits 2, 3, 4 or 8, group_size a positive integer or −1; per
 * `<m>.qweight` I32 (in/p, out), `qzeros` I32 (groups, ⌈out/p⌉), p = 32/bits values to a word, or
 * at 3 bits runs of 32 values over 3 words (value k of a run at bits 3k…3k + 2 of its 96-bit
 * stream) with in and out whole runs; `scales` F16/BF16 (groups, out), `g_idx` I32 (in) within the
 * groups, else ⌊i / group_size⌋ filling them; z = stored + 1 in v1 (a stored 2^bits − 1
 * refused), stored in v2; W[o, i] = (q − z) × scale.
 */
function gptqReal(d: Decoded, qc: Record<string, unknown>): IntRead | Truth {
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const tensor = (name: string) => d.tensors.get(`${LLM_FOLDER}/${name}`);
  const format = qc.checkpoint_format ?? qc.format ?? 'gptq';
  if (format !== 'gptq' && format !== 'gptq_v2') return invalid(`checkpoint_format ${jsonKind(format)}`);
  const bits = qc.bits;
  if (bits !== 2 && bits !== 3 && bits !== 4 && bits !== 8) return invalid(`bits ${jsonKind(bits)}`);
  const groupSize = qc.group_size;
  if (!safeSize(groupSize) || (groupSize < 1 && groupSize !== -1)) return invalid(`group_size ${jsonKind(groupSize)}`);
  // Values to a run and words to a run along a packed axis.
  const [p, runWords] = bits === 3 ? [32, 3] : [32 / bits, 1];
  const read: IntRead = new Map();
  for (const name of llmTensorNames(d).filter((n) => n.endsWith('.qweight'))) {
    const stem = name.slice(0, -'.qweight'.length);
    const [qw, qz, sc, gi] = ['qweight', 'qzeros', 'scales', 'g_idx'].map((s) => tensor(`${stem}.${s}`));
    if (!qz || !sc) return invalid(`${stem}: qzeros or scales missing`);
    if (!is2d(qw, 'I32') || !is2d(sc, SCALE_DTYPES)) return invalid(`${stem}: qweight ${qw!.dtype} or scales ${sc.dtype}`);
    if (qw!.shape[0] % runWords !== 0) return invalid(`${stem}.qweight: ${qw!.shape[0]} rows, not whole runs of ${runWords} words`);
    const [cols, rows] = [(qw!.shape[0] / runWords) * p, qw!.shape[1]];
    if (bits === 3 && rows % 32 !== 0) return invalid(`${stem}: ${rows} outputs, not whole runs of 32 at 3 bits`);
    const groups = sc.shape[0];
    if (sc.shape[1] !== rows || !is2d(qz, 'I32', groups, Math.ceil(rows / p) * runWords)) return invalid(`${stem}: scales or qzeros of another shape`);
    const size = groupSize === -1 ? cols : groupSize;
    if (gi && !(gi.dtype === 'I32' && gi.shape.length === 1 && gi.shape[0] === cols)) return invalid(`${stem}.g_idx is ${gi.dtype} [${gi.shape.join(', ')}]`);
    if (gi && gi.values.some((g) => g < 0 || g >= groups)) return invalid(`${stem}.g_idx outside its ${groups} groups`);
    if (!gi && Math.ceil(cols / size) !== groups) return invalid(`${stem}: ${groups} groups for ${cols} inputs in groups of ${size}`);
    if (badScale(sc.values) !== undefined) return invalid(`${stem}.scales holds ${badScale(sc.values)}`);
    const group = (i: number) => (gi ? gi.values[i] : Math.floor(i / size));
    const zero = (g: number, o: number) => (bits === 3
      ? gptq3Field((w) => qz.values[g * qz.shape[1] + Math.floor(o / 32) * 3 + w], o % 32)
      : field(qz.values[g * qz.shape[1] + Math.floor(o / p)], bits, o % p));
    const values = new Float64Array(rows * cols);
    for (let o = 0; o < rows; o++) for (let i = 0; i < cols; i++) {
      const stored = zero(group(i), o);
      if (format === 'gptq' && stored === 2 ** bits - 1) return invalid(`${stem}.qzeros stores ${stored}: a v1 zero point of 0`);
      const q = bits === 3 ? gptq3Field((w) => qw!.values[(Math.floor(i / 32) * 3 + w) * rows + o], i % 32) : field(qw!.values[Math.floor(i / p) * rows + o], bits, i % p);
      values[o * cols + i] = (q - (format === 'gptq' ? stored + 1 : stored)) * sc.values[group(i) * rows + o];
    }
    // Every group's zero points are read, used or not.
    for (let g = 0; g < groups; g++) for (let o = 0; o < rows; o++) if (format === 'gptq' && zero(g, o) === 2 ** bits - 1) return invalid(`${stem}.qzeros stores a v1 zero point of 0`);
    read.set(stem, { rows, cols, values, parts: [`${stem}.qweight`, `${stem}.qzeros`, `${stem}.scales`, ...(gi ? [`${stem}.g_idx`] : [])] });
  }
  return read;
}

/**
 * AWQ GEMM as README.md states it: version "gemm" (any case), bits (or w_bit) 4, zero_point not
 * false, group_size (or q_group_size) a positive integer dividing the inputs; per `<m>.qweight` I32 (in, out/8) with
 * outputs 8k + 0, 2, 4, 6, 1, 3, 5, 7 in nibbles 0…7 of word k, `qzeros` I32 (in/group_size,
 * out/8) likewise, `scales` F16/BF16 (groups, out); W[o, i] = (q − z) × scale of ⌊i / group_size⌋.
 */
function awqReal(d: Decoded, qc: Record<string, unknown>): IntRead | Truth {
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const tensor = (name: string) => d.tensors.get(`${LLM_FOLDER}/${name}`);
  if ((typeof qc.version === 'string' ? qc.version.toLowerCase() : qc.version) !== 'gemm') return invalid(`version ${jsonKind(qc.version)}`);
  if ((qc.bits ?? qc.w_bit) !== 4) return invalid(`bits ${jsonKind(qc.bits ?? qc.w_bit)}`);
  if (qc.zero_point === false) return invalid('zero_point false');
  const groupSize = qc.group_size ?? qc.q_group_size;
  if (!safeSize(groupSize) || groupSize < 1) return invalid(`group_size ${jsonKind(groupSize)}`);
  const read: IntRead = new Map();
  for (const name of llmTensorNames(d).filter((n) => n.endsWith('.qweight'))) {
    const stem = name.slice(0, -'.qweight'.length);
    const [qw, qz, sc] = ['qweight', 'qzeros', 'scales'].map((s) => tensor(`${stem}.${s}`));
    if (!qz || !sc) return invalid(`${stem}: qzeros or scales missing`);
    if (!is2d(qw, 'I32')) return invalid(`${stem}.qweight is ${qw!.dtype} [${qw!.shape.join(', ')}]`);
    const [cols, words] = qw!.shape;
    const rows = words * 8;
    // AutoAWQ's WQLinear_GEMM asserts in_features % group_size == 0: no ragged last group.
    if (cols % groupSize !== 0) return invalid(`${stem}.qweight has ${cols} inputs, not whole groups of ${groupSize}`);
    const groups = cols / groupSize;
    if (!is2d(sc, SCALE_DTYPES, groups, rows) || !is2d(qz, 'I32', groups, words)) return invalid(`${stem}: scales or qzeros not (${groups}, ${rows}) / (${groups}, ${words})`);
    if (badScale(sc.values) !== undefined) return invalid(`${stem}.scales holds ${badScale(sc.values)}`);
    const nibble = (word: number, o: number) => field(word, 4, AWQ_ORDER.indexOf(o % 8));
    const values = new Float64Array(rows * cols);
    for (let o = 0; o < rows; o++) for (let i = 0; i < cols; i++) {
      const g = Math.floor(i / groupSize);
      values[o * cols + i] = (nibble(qw!.values[i * words + Math.floor(o / 8)], o) - nibble(qz.values[g * words + Math.floor(o / 8)], o)) * sc.values[g * rows + o];
    }
    read.set(stem, { rows, cols, values, parts: [`${stem}.qweight`, `${stem}.qzeros`, `${stem}.scales`] });
  }
  return read;
}

/**
 * compressed-tensors int as README.md states it: every config group's weights `type: "int"`, one
 * format (the group's or the config's), pack-quantized or int-quantized (num_bits 8), one num_bits
 * in 1…8, strategies group (a positive group_size), channel or tensor, no dynamic weights, no
 * sparsity but dense. pack-quantized reads `<m>.weight_packed` I32 (out, ⌈in/p⌉) of q + 2^(bits−1)
 * with `weight_shape` (2,) I32/I64; int-quantized the I8 `<m>.weight` beside a `weight_scale`; a
 * weight stored as the other format's is not what the config says and is refused. Scales F16/BF16
 * (out, groups) or one per tensor; zero points I8 (out, groups) or (pack-quantized) I32 packed
 * along the outputs with the offset; `weight_g_idx` I32 (in) within the groups, else the config's
 * group size filling them; W = (q − zero) × scale.
 */
function compressedTensorsIntReal(d: Decoded, qc: Record<string, unknown>): IntRead | Truth {
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const tensor = (name: string) => d.tensors.get(`${LLM_FOLDER}/${name}`);
  if (!isJsonObject(qc.config_groups)) return { kind: 'unknown', why: 'config_groups not an object (the fp8 and guard paths not followed here)' };
  const groupList = Object.values(qc.config_groups).map((g) => (isJsonObject(g) ? g : {}));
  const weightsOf = (g: Record<string, unknown>) => (isJsonObject(g.weights) ? g.weights : undefined);
  if (!groupList.length || !groupList.every((g) => weightsOf(g)?.type === 'int')) return { kind: 'unknown', why: 'not every config group int (not followed here)' };
  if (isJsonObject(qc.sparsity_config) && qc.sparsity_config.format !== undefined && qc.sparsity_config.format !== 'dense') return invalid(`sparsity ${jsonKind(qc.sparsity_config.format)}`);
  const formats = new Set(groupList.map((g) => g.format ?? qc.format));
  const format = [...formats][0];
  if (formats.size !== 1 || (format !== 'pack-quantized' && format !== 'int-quantized')) return invalid(`format ${jsonKind(format)}`);
  const allBits = new Set(groupList.map((g) => weightsOf(g)!.num_bits));
  const bits = [...allBits][0];
  if (allBits.size !== 1 || !safeSize(bits) || bits < 1 || bits > 8 || (format === 'int-quantized' && bits !== 8)) return invalid(`num_bits ${jsonKind(bits)} in ${format}`);
  const sizes: number[] = [];
  for (const g of groupList) {
    const w = weightsOf(g)!;
    if (w.strategy === 'group') {
      if (!safeSize(w.group_size) || w.group_size < 1) return invalid(`group_size ${jsonKind(w.group_size)}`);
      sizes.push(w.group_size);
    } else if (w.strategy !== 'channel' && w.strategy !== 'tensor') return invalid(`strategy ${jsonKind(w.strategy)}`);
    if (w.dynamic === true) return invalid('dynamic weights');
  }
  const p = Math.floor(32 / bits);
  const offset = 2 ** (bits - 1);
  const read: IntRead = new Map();
  const names = llmTensorNames(d);
  for (const name of names) {
    const int8 = name.endsWith('.weight') && tensor(name)!.dtype === 'I8' && !!tensor(`${name}_scale`);
    if (!int8 && !name.endsWith('.weight_packed')) continue;
    const stem = name.slice(0, name.lastIndexOf('.'));
    if (int8 !== (format === 'int-quantized')) return invalid(`${name} under format ${format}`);
    const sc = tensor(`${stem}.weight_scale`);
    const z = tensor(`${stem}.weight_zero_point`);
    const gi = tensor(`${stem}.weight_g_idx`);
    let rows: number, cols: number;
    // A W8A8 static scheme's activation zero point goes with its weight (its input_scale with the runtime scales).
    const parts = [`${stem}.weight_scale`, ...(z ? [`${stem}.weight_zero_point`] : []), ...(int8 && tensor(`${stem}.input_zero_point`) ? [`${stem}.input_zero_point`] : [])];
    if (int8) {
      const w = tensor(name)!;
      if (w.shape.length !== 2) return invalid(`${name} of shape [${w.shape.join(', ')}]`);
      [rows, cols] = w.shape;
    } else {
      const shape = tensor(`${stem}.weight_shape`);
      if (!shape || !['I32', 'I64'].includes(shape.dtype) || shape.shape.length !== 1 || shape.shape[0] !== 2) return invalid(`${stem}.weight_shape missing or not two integers`);
      [rows, cols] = shape.values;
      if (!is2d(tensor(name), 'I32', rows, Math.ceil(cols / p))) return invalid(`${name} does not hold (${rows}, ${cols}) in ${bits}-bit words`);
      parts.unshift(name, `${stem}.weight_shape`);
      if (gi) parts.push(`${stem}.weight_g_idx`);
    }
    if (!sc || !SCALE_DTYPES.includes(sc.dtype)) return invalid(`${stem}.weight_scale missing or ${sc?.dtype}`);
    const perTensor = sc.shape.every((n) => n === 1);
    if (!perTensor && !is2d(sc, sc.dtype, rows)) return invalid(`${stem}.weight_scale of shape [${sc.shape.join(', ')}]`);
    const groups = perTensor ? 1 : sc.shape[1];
    const scale = (r: number, g: number) => (perTensor ? sc.values[0] : sc.values[r * groups + g]);
    if (badScale(perTensor ? [sc.values[0]] : sc.values) !== undefined) return invalid(`${stem}.weight_scale holds a scale NaN, infinite or negative`);
    let group: (c: number) => number;
    if (int8) {
      if (cols % groups !== 0) return invalid(`${groups} scales per row for ${cols} inputs`);
      if (gi) return invalid(`${stem}.weight_g_idx beside int8 codes`);
      group = (c) => Math.floor(c / (cols / groups));
    } else if (gi) {
      if (gi.dtype !== 'I32' || gi.shape.length !== 1 || gi.shape[0] !== cols) return invalid(`${stem}.weight_g_idx is ${gi.dtype} [${gi.shape.join(', ')}]`);
      if (gi.values.some((g) => g < 0 || g >= groups)) return invalid(`${stem}.weight_g_idx outside its ${groups} groups`);
      group = (c) => gi.values[c];
    } else if (groups === 1) group = () => 0;
    else {
      const size = sizes.find((s) => Math.ceil(cols / s) === groups);
      if (size === undefined) return invalid(`${groups} scales per row for ${cols} inputs, group_size ${sizes.join(', ')}`);
      group = (c) => Math.floor(c / size);
    }
    let zero = (_r: number, _g: number) => 0;
    if (z) {
      const n = z.shape.reduce((a, b) => a * b, 1);
      if (z.dtype === 'I8' && n === 1 && groups === 1) zero = () => z.values[0];
      else if (z.dtype === 'I8' && n === rows * groups && (z.shape.length === 2 ? z.shape[0] === rows : groups === 1)) zero = (r, g) => z.values[r * groups + g];
      else if (!int8 && is2d(z, 'I32', Math.ceil(rows / p), groups)) zero = (r, g) => field(z.values[Math.floor(r / p) * groups + g], bits, r % p) - offset;
      else return invalid(`${stem}.weight_zero_point is ${z.dtype} [${z.shape.join(', ')}]`);
    }
    const codes = tensor(name)!;
    const words = Math.ceil(cols / p);
    const q = (r: number, c: number) => (int8 ? codes.values[r * cols + c] : field(codes.values[r * words + Math.floor(c / p)], bits, c % p) - offset);
    const values = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) values[r * cols + c] = (q(r, c) - zero(r, group(c))) * scale(r, group(c));
    read.set(stem, { rows, cols, values, parts });
  }
  return read;
}

/** The files of each format's folder that describe its quantization alone (left out when written dequantized). */
const INT_QUANT_FILES: Record<IntQuant, string | undefined> = { gptq: 'model/quantize_config.json', awq: 'model/quant_config.json', 'compressed-tensors-int': undefined };

/**
 * The truth of an integer weight-only folder (README, "Integer weight-only checkpoints"): config.json
 * `quantization_config` naming the format, every quantized weight read by the format's rule
 * (anything else refused), each target's weight read and of the adapter's shape; written only with
 * `--dtype`: every read weight W' = (q − z) × scale + ΔW rounded once to bf16, its stored parts,
 * every activation scale, quantization_config and the format's own config file left out.
 */
function intQuantTruth(quant: IntQuant, d: Decoded, targets: LoraTarget[], outDtype: OutDtype | undefined): Truth {
  const configs = llmConfigs(d);
  if ('kind' in configs) return configs;
  const { config, modelopt } = configs;
  if (modelopt) return { kind: 'unknown', why: 'a ModelOpt config (not followed here)' };
  const qc = config.quantization_config;
  const method = { gptq: 'gptq', awq: 'awq', 'compressed-tensors-int': 'compressed-tensors' }[quant];
  if (!isJsonObject(qc) || qc.quant_method !== method) {
    // Another reader's format over these tensors is not followed; no format reads none of them.
    if (isJsonObject(qc) && ['gptq', 'awq', 'compressed-tensors', 'fp8', 'bitsandbytes', 'modelopt'].includes(qc.quant_method as string)) return { kind: 'unknown', why: `quant_method ${jsonKind(qc.quant_method)}` };
    return { kind: 'invalid', why: `quantization_config ${jsonKind(isJsonObject(qc) ? qc.quant_method : qc)} reads none of the quantized weights` };
  }
  const read = quant === 'gptq' ? gptqReal(d, qc) : quant === 'awq' ? awqReal(d, qc) : compressedTensorsIntReal(d, qc);
  if (!(read instanceof Map)) return read;
  for (const t of targets) {
    const w = read.get(t.layer);
    if (!w) return { kind: 'invalid', why: `${t.layer}.weight not read` };
    if (w.rows !== t.rows || w.cols !== t.cols) return { kind: 'invalid', why: `${t.layer}: (${w.rows}, ${w.cols}) read, the adapter is (${t.rows}, ${t.cols})` };
  }
  if (!outDtype) return { kind: 'invalid', why: 'integer quantized weights are written only dequantized' };
  const merged = new Map<string, ExpectedMerge>();
  for (const [stem, w] of read) {
    const values = mergedF32(w.values, targets.find((t) => t.layer === stem), 'BF16', w.rows, w.cols);
    if (!values) return { kind: 'invalid', why: `${stem}.weight: W' not finite in bf16` };
    merged.set(`${LLM_FOLDER}/${stem}.weight`, { values, magnitude: 0, dtype: 'BF16', exact: true, shape: [w.rows, w.cols] });
  }
  const parts = new Set([...read.values()].flatMap((w) => w.parts));
  const file = INT_QUANT_FILES[quant];
  return dequantizedLlm(d, config, llmTensorNames(d), merged, (n) => parts.has(n) && !merged.has(`${LLM_FOLDER}/${n}`), file && d.json.has(file) ? [file] : []);
}

/**
 * An integer weight-only quantized Llama or Qwen3 folder as the Hub ships it, one file or two
 * shards (q_proj's codes in the first, its other parts in the second) with their index, and a PEFT
 * LoRA (or rsLoRA) on q_proj and maybe v_proj; every projection quantized, embeddings, norms and
 * lm_head in bf16:
 * - GPTQ (hugging-quants *-GPTQ-INT4, TheBloke *-GPTQ and its gptq-3bit-* branches): bits 4, 3, 8
 *   or 2 (3 bits with 32 outputs, one run of 32 values over 3 words), group_size 8 or −1, act-order
 *   g_idx or plain, checkpoint_format gptq (zero − 1 stored) or gptq_v2, symmetric or not,
 *   sometimes AutoGPTQ's quantize_config.json;
 * - AWQ GEMM (hugging-quants *-AWQ-INT4): group_size 8, 16 or 32, sometimes AutoAWQ's quant_config.json;
 * - compressed-tensors int: pack-quantized (w4a16 / w8a16; group of 8 over 30 inputs, a ragged
 *   last group, channel or tensor; act-order weight_g_idx; zero points packed or I8) or
 *   int-quantized (w8a8; channel or tensor, sometimes an I8 zero point; activations dynamic or
 *   static with input_scale and maybe input_zero_point).
 */
const intQuantWorld = (quant: IntQuant): fc.Arbitrary<SurfaceWorld> => fc
  .record({
    model: fc.constantFrom<keyof typeof LLM_MODELS>('Llama', 'Qwen3'),
    sharded: fc.boolean(),
    bits: fc.constantFrom(4, 4, 8, 2, 3, 3),
    grouped: fc.constantFrom(true, true, false),
    actOrder: fc.boolean(),
    v2: fc.boolean(),
    withFormat: fc.boolean(),
    sym: fc.boolean(),
    configFile: fc.boolean(),
    awqGroup: fc.constantFrom(8, 16, 32),
    ctInt8: fc.constantFrom(false, false, true),
    // W8A8 with static activation scales: input_scale, and input_zero_point where asymmetric.
    ctStatic: fc.constantFrom<'dynamic' | 'symmetric' | 'asymmetric'>('dynamic', 'symmetric', 'asymmetric'),
    inputScale: fc.constantFrom(0.02, 0.02, NaN, -1, 0, 65504),
    ctStrategy: fc.constantFrom<'group' | 'channel' | 'tensor'>('group', 'group', 'channel', 'tensor'),
    ctZeros: fc.constantFrom<'none' | 'packed' | 'I8'>('none', 'none', 'packed', 'I8'),
    ctShapeDtype: fc.constantFrom<'I64' | 'I32'>('I64', 'I32'),
    scaleDtype: fc.constantFrom<'F16' | 'BF16'>(...(quant === 'compressed-tensors-int' ? ['BF16', 'BF16', 'F16'] as const : ['F16', 'F16', 'BF16'] as const)),
    codes: fc.uint8Array({ minLength: 4 * INT_ROWS * INT_COLS, maxLength: 4 * INT_ROWS * INT_COLS }),
    onV: fc.boolean(),
    fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 4, 16), rslora: fc.boolean(), seed: values(48),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: intHostile(quant) }),
    mergeDtype: fc.constantFrom<OutDtype | undefined>('bf16', 'bf16', 'bf16', undefined),
  })
  .map(({ mergeDtype, model, sharded, bits: drawnBits, grouped, actOrder, v2, withFormat, sym, configFile, awqGroup, ctInt8, ctStatic, inputScale, ctStrategy, ctZeros, ctShapeDtype, scaleDtype, codes, onV, fDtype, r, alpha, rslora, seed, hostile }) => {
    const v = from(seed);
    const family = LLM_MODELS[model];
    // A g_idx written wrong needs one: compressed-tensors writes it for its group strategy alone.
    const gIdxHostile = hostile?.part === 'g_idx value';
    const int8 = quant === 'compressed-tensors-int' && ctInt8 && !gIdxHostile;
    const bits = quant === 'awq' ? 4 : int8 ? 8 : quant === 'compressed-tensors-int' && (drawnBits === 2 || drawnBits === 3) ? 4 : drawnBits;
    // 3-bit GPTQ packs its zero points 32 outputs to 3 words: the tools write only whole runs.
    const rows = bits === 3 ? 32 : INT_ROWS;
    const cols = quant === 'compressed-tensors-int' && !int8 ? CT_COLS : INT_COLS;
    const strategy = int8 ? (ctStrategy === 'tensor' ? 'tensor' : 'channel') : gIdxHostile ? 'group' : ctStrategy;
    const groupSize = quant === 'gptq' ? (grouped ? INT_GROUP : -1) : quant === 'awq' ? awqGroup : strategy === 'group' ? INT_GROUP : 1;
    const groups = quant === 'compressed-tensors-int' && strategy !== 'group' ? 1 : groupSize === -1 ? 1 : Math.ceil(cols / groupSize);
    const withGIdx = quant === 'gptq' ? actOrder || grouped : quant === 'compressed-tensors-int' && strategy === 'group' && (actOrder || gIdxHostile);
    const mask = 2 ** bits - 1;
    const half = 2 ** (bits - 1);
    const parts = INT_PARTS[int8 ? 'int8' : quant];
    const [q, k, vp, o] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `${L}.self_attn.${p}`);
    const hidden = INT_COLS;
    const shard1: FixtureTensor[] = [st('model.embed_tokens.weight', 'BF16', [4, hidden], v(4 * hidden, 1))];
    const shard2: FixtureTensor[] = [];
    /** One quantized projection's tensors; the hostile part on q_proj alone; q_proj's codes in shard 1 and its other parts in shard 2 when sharded. */
    const projection = (m: string, salt: number, codesInto: FixtureTensor[], restInto: FixtureTensor[]) => {
      const hs = m === q ? hostile : null;
      const byte = (i: number) => codes[(salt * rows * cols + i) % codes.length];
      // Codes q (unsigned for GPTQ / AWQ, signed for compressed-tensors) as (out, in), zero points as (groups, out), scales as (groups, out).
      const qs = Array.from({ length: rows * cols }, (_, i) => (int8 ? byte(i) - 128 : quant === 'compressed-tensors-int' ? (byte(i) & mask) - half : byte(i) & mask));
      const asym = quant === 'compressed-tensors-int' ? ctZeros !== 'none' : !sym;
      const zs = Array.from({ length: groups * rows }, (_, i) => {
        if (quant === 'compressed-tensors-int') return asym ? ((byte(i + 7) >> 2) & mask) - half : 0;
        // v1 stores z − 1, so its zero points lie in 1…2^bits − 1; symmetric ones at 2^(bits−1).
        return asym ? 1 + (byte(i + 7) % mask) : half;
      });
      if (hs?.part === 'max zero') zs[1] = quant === 'gptq' && !v2 ? mask + 1 : quant === 'compressed-tensors-int' ? mask - half : mask;
      const ss = v(groups * rows, salt + 11, 0.01).map((x) => Math.abs(x) + 1e-4);
      if (hs?.part === 'scale value') ss[hs.at % ss.length] = hs.value;
      const gIdx = Array.from({ length: cols }, (_, i) => (actOrder ? Math.floor(((i * 7 + salt) % cols) / groupSize) : Math.floor(i / groupSize)));
      // One group past the last, the last (valid), or far outside.
      if (hs?.part === 'g_idx value') gIdx[hs.at % cols] = hs.value === 'groups' ? groups : hs.value === 'last' ? groups - 1 : hs.value;
      const at = (t: number[], c: number) => Array.from({ length: t.length }, (_, i) => t[(i % c) * (t.length / c) + Math.floor(i / c)]);
      let tensors: Partial<Record<IntRole, FixtureTensor>>;
      if (quant === 'gptq') {
        const inOut = at(qs, rows); // (in, out)
        tensors = {
          codes: { name: '', dtype: 'I32', ...(bits === 3 ? packGptq3(inOut, cols, rows, 'rows') : pack(inOut, cols, rows, bits, 'rows')) },
          zeros: { name: '', dtype: 'I32', ...(bits === 3 ? packGptq3(zs.map((z) => (v2 ? z : z - 1)), groups, rows, 'cols') : pack(zs.map((z) => (v2 ? z : z - 1)), groups, rows, bits, 'cols')) },
          scales: { name: '', dtype: scaleDtype, shape: [groups, rows], data: ss },
          ...(withGIdx ? { gIdx: { name: '', dtype: 'I32', shape: [cols], data: gIdx } } : {}),
        };
      } else if (quant === 'awq') {
        tensors = {
          codes: { name: '', dtype: 'I32', ...pack(at(qs, rows), cols, rows, 4, 'cols', AWQ_ORDER) },
          zeros: { name: '', dtype: 'I32', ...pack(zs, groups, rows, 4, 'cols', AWQ_ORDER) },
          scales: { name: '', dtype: scaleDtype, shape: [groups, rows], data: ss },
        };
      } else {
        // compressed-tensors keeps (out, groups).
        const outGroups = (t: number[]) => at(t, groups);
        const perTensor = strategy === 'tensor';
        tensors = {
          codes: int8 ? { name: '', dtype: 'I8', shape: [rows, cols], data: qs } : { name: '', dtype: 'I32', ...pack(qs.map((x) => x + half), rows, cols, bits, 'cols') },
          scales: { name: '', dtype: scaleDtype, shape: perTensor ? [1] : [rows, groups], data: perTensor ? [ss[0]] : outGroups(ss) },
          ...(int8 ? {} : { shape: { name: '', dtype: ctShapeDtype, shape: [2], data: [rows, cols] } }),
          ...(ctZeros === 'none' ? {} : {
            zeros: perTensor ? { name: '', dtype: 'I8', shape: [1], data: [zs[0]] } : ctZeros === 'I8' || int8 ? { name: '', dtype: 'I8', shape: [rows, groups], data: outGroups(zs) } : { name: '', dtype: 'I32', ...pack(outGroups(zs).map((z) => z + half), rows, groups, bits, 'rows') },
          }),
          ...(withGIdx ? { gIdx: { name: '', dtype: 'I32', shape: [cols], data: gIdx } } : {}),
        };
      }
      for (const [role, t] of Object.entries(tensors) as [IntRole, FixtureTensor][]) {
        t.name = `${m}.${parts[role]}`;
        if (hs?.part === 'missing' && hs.role === role) continue;
        if (hs?.part === 'dtype' && hs.role === role) {
          t.dtype = hs.dtype;
          if (t.data instanceof Uint8Array) t.data = Array.from(t.data);
        }
        if (hs?.part === 'shape' && hs.role === role) t.shape = hs.shape === 'transposed' ? t.shape.slice().reverse() : hs.shape === 'flat' ? [t.shape.reduce((a, b) => a * b, 1)] : [t.shape[0] + 1, ...t.shape.slice(1)];
        if (hs?.part === 'shape' && hs.role === role && hs.shape === 'one more row') t.data = [...Array.from(t.data), ...Array(t.shape.slice(1).reduce((a, b) => a * b, 1)).fill(1)];
        (role === 'codes' ? codesInto : restInto).push(t);
      }
      // A static activation scheme's calibrated scale (any value: the runtime's, left out) and zero point.
      if (int8 && ctStatic !== 'dynamic') {
        restInto.push(st(`${m}.input_scale`, 'BF16', [1], [m === q ? inputScale : 0.02]));
        if (ctStatic === 'asymmetric') restInto.push({ name: `${m}.input_zero_point`, dtype: 'I8', shape: [1], data: [-3] });
      }
    };
    projection(q, 0, shard1, sharded ? shard2 : shard1);
    projection(k, 1, shard1, shard1);
    for (const norm of family.norms) shard1.push(st(`${L}.${norm}`, 'BF16', [hidden], v(hidden, 5)));
    projection(vp, 2, shard2, shard2);
    projection(o, 3, shard2, shard2);
    shard2.push(st('model.norm.weight', 'BF16', [hidden], v(hidden, 2)), st('lm_head.weight', 'BF16', [4, hidden], v(4 * hidden, 3)));

    const configJson: Record<string, unknown> = { architectures: family.architectures, model_type: family.model_type, hidden_size: hidden, num_hidden_layers: 1, vocab_size: 4, torch_dtype: 'float16' };
    const files: Record<string, SpecFile> = {};
    let qc: Record<string, unknown>;
    if (quant === 'gptq') {
      qc = { bits, group_size: groupSize, damp_percent: 0.01, desc_act: actOrder, static_groups: false, sym, true_sequential: true, model_name_or_path: null, model_file_base_name: 'model', quant_method: 'gptq', ...(v2 || withFormat ? { checkpoint_format: v2 ? 'gptq_v2' : 'gptq' } : {}) };
      if (configFile) {
        const { quant_method: _, ...quantizeConfig } = qc;
        files[INT_QUANT_FILES.gptq!] = { kind: 'json', value: quantizeConfig };
      }
    } else if (quant === 'awq') {
      qc = { quant_method: 'awq', bits: 4, group_size: groupSize, version: 'gemm', zero_point: true, modules_to_not_convert: null };
      if (configFile) files[INT_QUANT_FILES.awq!] = { kind: 'json', value: { zero_point: true, q_group_size: groupSize, w_bit: 4, version: 'GEMM' } };
    } else {
      const weights: Record<string, unknown> = { num_bits: bits, type: 'int', strategy, group_size: strategy === 'group' ? groupSize : null, symmetric: ctZeros === 'none', dynamic: false, actorder: withGIdx ? 'group' : null, observer: 'minmax', block_structure: null };
      if (hostile?.part === 'group config') edited(weights, hostile.edit);
      qc = {
        quant_method: 'compressed-tensors', format: int8 ? 'int-quantized' : 'pack-quantized', quantization_status: 'compressed', ignore: ['lm_head'], kv_cache_scheme: null, version: '0.9.2',
        config_groups: { group_0: { targets: ['Linear'], weights, input_activations: !int8 ? null : ctStatic === 'dynamic' ? { num_bits: 8, type: 'int', strategy: 'token', symmetric: true, dynamic: true } : { num_bits: 8, type: 'int', strategy: 'tensor', symmetric: ctStatic === 'symmetric', dynamic: false, observer: 'minmax' }, output_activations: null } },
      };
    }
    if (hostile?.part === 'config') edited(qc, hostile.edit);
    configJson.quantization_config = qc;
    files['model/config.json'] = { kind: 'json', value: configJson };
    addModelFiles(files, sharded ? [shard1, shard2] : [[...shard1, ...shard2]]);

    const targets = onV ? [q, vp] : [q];
    const peft = (m: string) => `base_model.model.${m}`;
    files['peft/adapter_model.safetensors'] = {
      kind: 'safetensors',
      tensors: targets.flatMap((m, i) => [st(`${peft(m)}.lora_A.weight`, fDtype, [r, cols], v(r * cols, 3 + 2 * i)), st(`${peft(m)}.lora_B.weight`, fDtype, [rows, r], v(rows * r, 4 + 2 * i))]),
    };
    files['peft/adapter_config.json'] = { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: family.repo, r, lora_alpha: alpha, use_rslora: rslora, target_modules: onV ? ['q_proj', 'v_proj'] : ['q_proj'] } };
    const kindName = quant === 'gptq' ? `GPTQ ${bits}-bit ${v2 ? 'gptq_v2' : 'gptq'}${actOrder ? ' act-order' : ''}` : quant === 'awq' ? `AWQ GEMM group ${groupSize}` : int8 ? `compressed-tensors int-quantized (${strategy}${ctStatic === 'dynamic' ? '' : `, static ${ctStatic} activations`})` : `compressed-tensors pack-quantized ${bits}-bit (${strategy}${withGIdx ? ', act-order' : ''})`;
    return {
      name: `${kindName} folder + PEFT LoRA${hostile ? ` (${hostile.part})` : ''}`,
      files, base: 'model', adapter: 'peft', out: 'merged',
      outDtypes: ['bf16'], refusalsChecked: true, ...(mergeDtype ? { mergeDtype } : {}),
      truth: (d, weight, outDtype) => {
        const s = configScale(d, 'peft/adapter_config.json', 'lora_alpha', r, true);
        if (typeof s !== 'number') return s;
        const loras = targets.map((m) => ({ layer: m, a: d.tensors.get(`peft/${peft(m)}.lora_A.weight`)!, b: d.tensors.get(`peft/${peft(m)}.lora_B.weight`)!, rank: r, scale: weight * s, rows, cols }));
        return intQuantTruth(quant, d, loras, outDtype);
      },
    };
  });

// --- BFL FLUX.1 control LoRAs: norm scales replaced, img_in widened ----------------------------------

/** The LoRA's tensors a value or shape edit reaches first (edits pick among a file's first nine). */
const CONTROL_FIRST = ['img_in.lora_A.weight', 'img_in.lora_B.weight', 'img_in.lora_B.bias', 'single_blocks.0.norm.key_norm.scale'];

/**
 * flux1-canny-dev-lora.safetensors (flux-control-fixtures.ts) on FLUX.1-dev as BFL's single file
 * (weights F32, F16 or BF16) or as diffusers' FluxTransformer2DModel folder, whose config.json
 * in_channels follows the widened x_embedder. The truth is that file's: W' = W + w·B·A, b' = b +
 * w·lora_B.bias, norm scales replaced whatever w, img_in [W | 0] + w·B·A, written wider.
 */
const fluxControlWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({ form: fc.constantFrom<'bfl' | 'diffusers'>('bfl', 'diffusers'), wDtype: floatDtype, outChannels: fc.constantFrom<'absent' | 'null' | 'set'>('absent', 'null', 'set'), seed: fc.integer() })
  .map(({ form, wDtype, outChannels, seed }) => {
    const rand = seededRandom(seed);
    const lora = controlLora(rand);
    const ordered = [...CONTROL_FIRST.map((n) => lora.find((t) => t.name === n)!), ...lora.filter((t) => !CONTROL_FIRST.includes(t.name))];
    const folder = form === 'bfl' ? '' : 'transformer';
    const config = {
      _class_name: 'FluxTransformer2DModel', _diffusers_version: '0.30.0.dev0', attention_head_dim: FLUX_HEAD, guidance_embeds: true, in_channels: FLUX_IN, num_layers: FLUX_DOUBLE, num_single_layers: FLUX_SINGLE,
      ...(outChannels === 'absent' ? {} : { out_channels: outChannels === 'null' ? null : FLUX_IN }),
    };
    const files: Record<string, SpecFile> = form === 'bfl'
      ? { 'flux1-dev.safetensors': { kind: 'safetensors', tensors: fluxDevBfl(rand, wDtype), metadata: { format: 'pt' } } }
      : {
        'transformer/diffusion_pytorch_model.safetensors': { kind: 'safetensors', tensors: fluxDevDiffusers(rand), metadata: { format: 'pt' } },
        'transformer/config.json': { kind: 'json', value: config },
      };
    files['control/flux1-canny-dev-lora.safetensors'] = { kind: 'safetensors', tensors: ordered };
    const rowsOf = form === 'bfl' ? identity : diffusersRows;
    const normOf = form === 'bfl' ? (n: string) => n : diffusersNorm;
    return {
      name: `FLUX.1 control LoRA on ${form === 'bfl' ? 'flux1-dev.safetensors' : 'a diffusers transformer folder'}`,
      files,
      base: form === 'bfl' ? 'flux1-dev.safetensors' : 'transformer', adapter: 'control/flux1-canny-dev-lora.safetensors', out: form === 'bfl' ? 'merged.safetensors' : 'merged',
      refusalsChecked: true,
      truth: (d, w) => {
        const under = (component: string) => new Map([...d.tensors].filter(([k]) => k.startsWith(`${component}/`)).map(([k, t]) => [k.slice(component.length + 1), t as FixtureDecodedTensor]));
        const base = under(folder), adapter = under('control');
        const json: NonNullable<Extract<Truth, { kind: 'expected' }>['json']> = {};
        if (form === 'diffusers') {
          const text = d.json.get('transformer/config.json')!;
          if (nestingDepth(text) > 64) return { kind: 'unknown', why: 'config.json nests too deep to compare' };
          let written: Record<string, unknown>;
          try {
            written = JSON.parse(d.json.get('transformer/config.json')!) as Record<string, unknown>;
          } catch {
            return { kind: 'unknown', why: 'config.json is not JSON' };
          }
          // diffusers sets in_channels to the new width; loramerge refuses a config that does not say the base's.
          if (written.in_channels !== FLUX_IN) return { kind: 'invalid', why: `config.json in_channels ${jsonKind(written.in_channels)}, the base's x_embedder takes ${FLUX_IN}` };
          const keepOut = written.out_channels === undefined || written.out_channels === null;
          json['transformer/config.json'] = { equals: { ...written, in_channels: 2 * FLUX_IN, ...(keepOut ? { out_channels: FLUX_IN } : {}) } };
        }
        const want = controlTruth(base, adapter, w, rowsOf, normOf);
        const norms = new Set(fluxNorms().map(normOf));
        const loraMax = (suffix: string) => Math.max(...[...adapter].filter(([k]) => k.endsWith(suffix)).map(([, t]) => maxAbs(t.values)));
        const magnitude = Math.max(...[...base.values()].map((t) => maxAbs(t.values))) + Math.abs(w) * (FLUX_R * loraMax('.lora_A.weight') * loraMax('.lora_B.weight') + loraMax('.lora_B.bias'));
        const merged = new Map<string, ExpectedMerge>();
        for (const [key, t] of want) {
          merged.set(`${folder}/${key}`, norms.has(key) ? { values: t.values, magnitude: 0, exact: true, shape: t.shape } : { values: t.values, magnitude, shape: t.shape });
        }
        return { kind: 'expected', merged, json };
      },
    };
  });

// --- tied input and output embeddings (PEFT's rules) --------------------------------------------------

const TIED_VOCAB = 12;
const TORCH_DTYPE: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
/** The config classes' tie_word_embeddings defaults, from transformers' LlamaConfig, Qwen2Config, Gemma2Config. */
const TIE_DEFAULT: Record<string, boolean> = { llama: false, qwen2: false, gemma2: true };
const TIE_ARCH: Record<string, string> = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', gemma2: 'Gemma2ForCausalLM' };
type TiedAdapter = 'head' | 'embedding' | 'ensured' | 'q_proj';

/**
 * A decoder LM saved as transformers saves a tied one (embed_tokens, no lm_head.weight), its
 * config.json with tie_word_embeddings true, false or absent (the class default), and a PEFT LoRA
 * on lm_head, on embed_tokens, on embed_tokens with ensure_weight_tying (and the head's tied copy,
 * lora_A = Bᵀ, lora_B = Aᵀ), or on q_proj. The truth (README, tied embeddings): a LoRA on one side
 * of a tied pair unties it, the head written as its own tensor from the shared weight and the config
 * saying tie_word_embeddings false; ensure_weight_tying keeps the tie, the embedding's update applied
 * once; on an untied model, a LoRA on a head that is not stored, or an ensured head copy, is refused.
 */
const tiedEmbeddingsWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    modelType: fc.constantFrom('llama', 'qwen2', 'gemma2'), tie: fc.constantFrom<boolean | undefined>(true, false, undefined), adapter: fc.constantFrom<TiedAdapter>('head', 'embedding', 'ensured', 'q_proj'),
    wDtype: floatDtype, fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 4, 8), seed: values(48),
  })
  .map(({ modelType, tie, adapter, wDtype, fDtype, r, alpha, seed }) => {
    const v = from(seed);
    const V = TIED_VOCAB, H = IN;
    const p = 'base_model.model.';
    const embA = st(`${p}model.embed_tokens.lora_embedding_A`, fDtype, [r, V], v(r * V, 3));
    const embB = st(`${p}model.embed_tokens.lora_embedding_B`, fDtype, [H, r], v(H * r, 4));
    const transposed = (t: FixtureTensor, rows: number, cols: number) => Array.from({ length: rows * cols }, (_, i) => (t.data as number[])[(i % rows) * cols + Math.floor(i / rows)]);
    let tensors: FixtureTensor[];
    switch (adapter) {
      case 'head': tensors = [st(`${p}lm_head.lora_A.weight`, fDtype, [r, H], v(r * H, 3)), st(`${p}lm_head.lora_B.weight`, fDtype, [V, r], v(V * r, 4))]; break;
      case 'embedding': tensors = [embA, embB]; break;
      case 'ensured': tensors = [embA, embB, st(`${p}lm_head.lora_A.weight`, fDtype, [r, H], transposed(embB, H, r)), st(`${p}lm_head.lora_B.weight`, fDtype, [V, r], transposed(embA, r, V))]; break;
      default: tensors = [st(`${p}${L}.self_attn.q_proj.lora_A.weight`, fDtype, [r, H], v(r * H, 3)), st(`${p}${L}.self_attn.q_proj.lora_B.weight`, fDtype, [H, r], v(H * r, 4))];
    }
    const target = adapter === 'head' ? 'lm_head' : adapter === 'q_proj' ? 'q_proj' : 'embed_tokens';
    return {
      name: `tied embeddings + PEFT LoRA on ${adapter === 'q_proj' ? 'q_proj' : adapter === 'head' ? 'lm_head' : adapter === 'ensured' ? 'embed_tokens, ensure_weight_tying' : 'embed_tokens'}`,
      files: {
        'model/model.safetensors': {
          kind: 'safetensors', metadata: { format: 'pt' },
          tensors: [st('model.embed_tokens.weight', wDtype, [V, H], v(V * H, 1)), st(`${L}.self_attn.q_proj.weight`, wDtype, [H, H], v(H * H, 2)), st('model.norm.weight', wDtype, [H], v(H, 5))],
        },
        'model/config.json': { kind: 'json', value: { architectures: [TIE_ARCH[modelType]], model_type: modelType, torch_dtype: TORCH_DTYPE[wDtype], hidden_size: H, vocab_size: V, ...(tie === undefined ? {} : { tie_word_embeddings: tie }) } },
        'peft/adapter_model.safetensors': { kind: 'safetensors', tensors },
        'peft/adapter_config.json': { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: alpha, target_modules: [target], ...(adapter === 'ensured' ? { ensure_weight_tying: true } : {}) } },
      },
      base: 'model', adapter: 'peft', out: 'merged',
      refusalsChecked: true,
      truth: (d, s) => {
        const deep = [...d.json].find(([, text]) => nestingDepth(text) > 64);
        if (deep) return { kind: 'unknown', why: `${deep[0]} nests too deep to compare` };
        let config: Record<string, unknown>;
        try {
          config = JSON.parse(d.json.get('model/config.json')!) as Record<string, unknown>;
        } catch {
          return { kind: 'unknown', why: 'config.json is not JSON' };
        }
        const stated = config.tie_word_embeddings;
        if (stated !== undefined && typeof stated !== 'boolean') return { kind: 'unknown', why: `tie_word_embeddings ${jsonKind(stated)}` };
        const tied = stated ?? TIE_DEFAULT[modelType];
        const scale = configScale(d, 'peft/adapter_config.json', 'lora_alpha', r, true);
        if (typeof scale !== 'number') return scale;
        const t = (name: string) => d.tensors.get(`peft/${p}${name}`)!.values;
        const embedKey = 'model/model.embed_tokens.weight';
        const embed = d.tensors.get(embedKey)!;
        // torch_dtype (and transformers 5's dtype) follow the written weights; checked elsewhere.
        const except = ['torch_dtype', 'dtype'];
        const untied = { 'model/config.json': { equals: { ...config, tie_word_embeddings: false }, except } };
        const sameConfig = { 'model/config.json': { equals: config, except } };
        const embeddingDelta = () => {
          // PEFT's Embedding: ΔW = (B·A)ᵀ, rows are tokens.
          const ba = mm(t('model.embed_tokens.lora_embedding_B'), t('model.embed_tokens.lora_embedding_A'), H, r, V);
          return Float64Array.from({ length: V * H }, (_, i) => ba[(i % H) * V + Math.floor(i / H)]);
        };
        const head = 'model/lm_head.weight';
        switch (adapter) {
          case 'q_proj': {
            const key = `model/${L}.self_attn.q_proj.weight`;
            return { kind: 'expected', merged: new Map([[key, added(d.tensors.get(key)!.values, mm(t(`${L}.self_attn.q_proj.lora_B.weight`), t(`${L}.self_attn.q_proj.lora_A.weight`), H, r, H), s * scale)]]), json: sameConfig };
          }
          case 'head': {
            if (!tied) return { kind: 'invalid', why: 'a LoRA on lm_head of an untied model that stores no lm_head.weight' };
            const written = added(embed.values, mm(t('lm_head.lora_B.weight'), t('lm_head.lora_A.weight'), V, r, H), s * scale);
            return { kind: 'expected', merged: new Map([[head, { ...written, dtype: embed.dtype as FixtureDType, shape: [V, H] }]]), json: untied };
          }
          case 'embedding': {
            const merged = new Map([[embedKey, added(embed.values, embeddingDelta(), s * scale)]]);
            if (!tied) return { kind: 'expected', merged, json: sameConfig };
            // The head keeps the shared weight as it was: the LoRA trained the inputs only.
            merged.set(head, { values: embed.values, magnitude: 0, exact: true, dtype: embed.dtype as FixtureDType, shape: [V, H] });
            return { kind: 'expected', merged, json: untied };
          }
          default:
            if (!tied) return { kind: 'invalid', why: 'ensure_weight_tying with a head copy on an untied model (PEFT puts no adapter on lm_head)' };
            // Its head copy is the embedding's: the shared weight gets the update once, the tie stays.
            return { kind: 'expected', merged: new Map([[embedKey, added(embed.values, embeddingDelta(), s * scale)]]), json: sameConfig };
        }
      },
    };
  });

// --- mlx-lm adapter folders (mlx_lm.lora) -------------------------------------------------------------

/** mlx-lm's LoRAEmbedding layers, by the names its model files give them (README, mlx-lm row). */
const MLX_EMBEDDING = /(^|\.)(embed_tokens|wte|wpe|embed_in|word_embeddings|tok_embeddings)$/;
const MLX_VOCAB = 5;

/** Whether model/config.json says tie_word_embeddings false, as written (no lm_head stored: the embedding is not tied to one). */
const untiedConfig = (d: Decoded) => { const c = parsedJson(d.json.get('model/config.json') ?? ''); return isJsonObject(c) && c.tie_word_embeddings === false; };

/** What makes an mlx-lm folder hostile: one thing of its config or factors written wrong. */
type MlxHostile =
  | { part: 'rank'; by: number }
  | { part: 'swapped' }
  | { part: 'transposed' }
  | { part: 'scale'; value: unknown }
  | { part: 'no config' }
  | { part: 'fine_tune_type'; value: unknown }
  | { part: 'old alpha'; alpha: unknown }
  | { part: 'absent module' }
  | { part: 'magnitude'; shape: 'missing' | 'one more' | 'stray' };

const mlxHostile: fc.Arbitrary<MlxHostile> = fc.oneof(
  fc.record({ part: fc.constant('rank' as const), by: fc.constantFrom(1, -1, 0.5) }),
  fc.constant<MlxHostile>({ part: 'swapped' }),
  fc.constant<MlxHostile>({ part: 'transposed' }),
  // A raw `NaN` / `Infinity` is what Python's json.dump writes for those floats.
  fc.record({ part: fc.constant('scale' as const), value: fc.constantFrom<unknown>({ rawJson: 'NaN' }, { rawJson: 'Infinity' }, { rawJson: '-Infinity' }, '20', null, true, [20], 1e308, 0, -4) }),
  fc.constant<MlxHostile>({ part: 'no config' }),
  fc.record({ part: fc.constant('fine_tune_type' as const), value: fc.constantFrom<unknown>('qlora', 'LoRA', 'DoRA', '', null, 1, ['lora']) }),
  fc.record({ part: fc.constant('old alpha' as const), alpha: fc.constantFrom<unknown>('rank', 'rank', 16, 0.5, '2', null) }),
  fc.constant<MlxHostile>({ part: 'absent module' }),
  fc.record({ part: fc.constant('magnitude' as const), shape: fc.constantFrom<'missing' | 'one more' | 'stray'>('missing', 'one more', 'stray') }),
);

/**
 * mlx-lm's truth (README, mlx-lm row; LoRALinear / LoRAEmbedding / DoRALinear / DoRAEmbedding.fuse
 * as test/helpers/mlx-lm-folder.ts writes them): `fine_tune_type` lora, dora or full (or, before it,
 * `use_dora`); lora_parameters.rank a positive integer equal to the factors' rank and `scale` a
 * finite number used as it is; an old config's alpha equal to the rank. Per module `<path>.lora_a`
 * (in, r) and `<path>.lora_b` (r, out) on `<path>.weight` (out, in): W += s·scale·lora_bᵀ·lora_aᵀ;
 * an embedding's (vocab, r) and (r, dims) on (vocab, dims): W += s·scale·lora_a·lora_b; a DoRA's
 * `m` (one per row of the weight) scales each row of that to m/‖row‖; a full fine-tune's tensors
 * replace the base's of the same name, s not applied. `keyOf` names a base tensor's decoded key,
 * `real` its real values (a quantized base's dequantized ones), `dora` false where the base cannot take one.
 */
function mlxTruth(d: Decoded, s: number, configPath: string, weightsPath: string, keyOf: (name: string) => string,
  real: (name: string) => { values: Float64Array; shape: number[] } | undefined, doraAllowed = true): { merged: Map<string, ExpectedMerge> } | Truth {
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const text = d.json.get(configPath);
  if (text === undefined) return invalid('adapters.safetensors without adapter_config.json (the scale is in the config)');
  if (nestingDepth(text) > 64) return { kind: 'unknown', why: 'adapter_config.json nests too deep to compare' };
  // Python's json reads NaN and Infinity; JSON.parse does not: a scale written so is not finite either way.
  const raw = parsedJson(text.replace(/(?<=[:[,]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g, '{"nonFinite":"$1"}'));
  if (!isJsonObject(raw)) return { kind: 'unknown', why: 'adapter_config.json is no JSON object' };
  if ('peft_type' in raw) return { kind: 'unknown', why: 'a peft_type (read as PEFT)' };
  let type: 'lora' | 'dora' | 'full';
  if ('fine_tune_type' in raw) {
    const t = raw.fine_tune_type;
    if (t !== 'lora' && t !== 'dora' && t !== 'full') return invalid(`fine_tune_type ${jsonKind(t)}`);
    type = t;
  } else {
    if (raw.use_dora !== undefined && typeof raw.use_dora !== 'boolean') return invalid(`use_dora ${jsonKind(raw.use_dora)}`);
    type = raw.use_dora === true ? 'dora' : 'lora';
  }
  const names = [...d.tensors.keys()].filter((k) => k.startsWith(`${weightsPath}/`)).map((k) => k.slice(weightsPath.length + 1));
  const t = (name: string) => d.tensors.get(`${weightsPath}/${name}`)!;
  const merged = new Map<string, ExpectedMerge>();
  if (type === 'full') {
    for (const n of names) {
      if (/\.lora_[ab]$/.test(n)) return invalid(`${n}: a LoRA factor in a full fine-tune`);
      const base = d.tensors.get(keyOf(n));
      if (!base || base.shape.join() !== t(n).shape.join()) return invalid(`${n} replaces no base tensor of its shape`);
      if (base.dtype !== t(n).dtype) return { kind: 'unknown', why: `${n} replaces a ${base.dtype} tensor with ${t(n).dtype} (not followed here)` };
      merged.set(keyOf(n), exactly(t(n).values));
    }
    return names.length ? { merged } : invalid('no tensors');
  }
  const params = raw.lora_parameters;
  if (!isJsonObject(params)) return invalid(`lora_parameters ${jsonKind(params)}`);
  const { rank, scale, alpha } = params;
  if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 1) return invalid(`rank ${jsonKind(rank)}`);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) return invalid(`scale ${jsonKind(scale)}`);
  if (!('fine_tune_type' in raw) && alpha !== undefined && alpha !== rank) return invalid(`an old config's alpha ${jsonKind(alpha)} beside rank ${rank}`);
  const modules = new Map<string, Map<string, DecodedTensor>>();
  for (const n of names) {
    const m = /^(.+)\.(lora_a|lora_b|m)$/.exec(n);
    if (!m) return invalid(`${n} is no mlx-lm parameter`);
    if (!modules.has(m[1])) modules.set(m[1], new Map());
    modules.get(m[1])!.set(m[2], t(n));
  }
  for (const [path, parts] of modules) {
    const [a, b, mag] = [parts.get('lora_a'), parts.get('lora_b'), parts.get('m')];
    if (!a || !b) return invalid(`${path}: lora_a or lora_b missing`);
    if (a.shape.length === 3 || /\.switch_mlp\.(gate_proj|up_proj|down_proj)$/.test(path)) {
      // LoRASwitchLinear (tuner/lora.py): lora_a (E, r, in), lora_b (E, out, r); fuse adds
      // scale·lora_b[e]·lora_a[e] to expert e's (out, in) slab of the stacked weight (E, out, in).
      if (!/\.switch_mlp\.(gate_proj|up_proj|down_proj)$/.test(path) || mag || type === 'dora') return invalid(`${path}: 3-D factors off switch_mlp, or switch_mlp in a DoRA (mlx-lm raises: SwitchLinear has no DoRA)`);
      if (a.shape.length !== 3 || b.shape.length !== 3 || b.shape[0] !== a.shape[0] || b.shape[2] !== a.shape[1]) return invalid(`${path}: lora_b [${b.shape}] does not fit lora_a [${a.shape}]`);
      if (a.shape[1] !== rank) return invalid(`${path}: rank ${a.shape[1]}, the config says ${rank}`);
      const [experts, r, inF] = a.shape;
      const outF = b.shape[1];
      const w = real(`${path}.weight`);
      if (!w || w.shape.join() !== `${experts},${outF},${inF}`) return { kind: 'unknown', why: `${path}: no stacked base weight (${experts}, ${outF}, ${inF}) (not followed here)` };
      const delta = new Float64Array(experts * outF * inF);
      for (let e = 0; e < experts; e++) for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += b.values[(e * outF + o) * r + k] * a.values[(e * r + k) * inF + i];
        delta[(e * outF + o) * inF + i] = sum;
      }
      merged.set(keyOf(`${path}.weight`), added(w.values, delta, s * scale));
      continue;
    }
    if (a.shape.length !== 2 || b.shape.length !== 2 || b.shape[0] !== a.shape[1]) return invalid(`${path}: lora_b [${b.shape}] does not fit lora_a [${a.shape}]`);
    if (a.shape[1] !== rank) return invalid(`${path}: rank ${a.shape[1]}, the config says ${rank}`);
    if (!!mag !== (type === 'dora')) return invalid(`${path}: ${mag ? 'a magnitude outside a DoRA' : 'a DoRA without its magnitude'}`);
    const w = real(`${path}.weight`);
    const embedding = MLX_EMBEDDING.test(path);
    // The (out, in) of ΔW in the stored weight's layout: an embedding stores (vocab, dims) = (rows of lora_a, cols of lora_b).
    const [rows, cols] = embedding ? [a.shape[0], b.shape[1]] : [b.shape[1], a.shape[0]];
    if (!w || w.shape.join() !== `${rows},${cols}`) return invalid(`${path}: no base weight of shape (${rows}, ${cols})`);
    if (mag && !doraAllowed) return invalid(`${path}: DoRA on a quantized weight`);
    if (mag && (mag.shape.length !== 1 || mag.shape[0] !== rows)) return invalid(`${path}: magnitude [${mag.shape}] for ${rows} rows`);
    const ab = aTimesB(a as FixtureDecodedTensor, b as FixtureDecodedTensor);
    const delta = embedding ? ab : Float64Array.from({ length: rows * cols }, (_, k) => ab[(k % cols) * rows + Math.floor(k / cols)]);
    const sum = added(w.values, delta, s * scale);
    if (!mag) {
      merged.set(keyOf(`${path}.weight`), sum);
      continue;
    }
    // DoRA (mlx-lm tuner/dora.py fuse): each row of W + s·ΔW to m / ‖row‖, no ε.
    const v = sum.values;
    let factor = 0;
    for (let o = 0; o < rows; o++) {
      let sq = 0;
      for (let i = 0; i < cols; i++) sq += v[o * cols + i] ** 2;
      // The engine takes the norms of W + s·ΔW in float64 and refuses one whose squares pass it
      // (mlx-lm, in f32, would write zeros or NaN there).
      if (!Number.isFinite(sq)) return invalid(`${path}: DoRA norm of row ${o}: W + s·ΔW's squares past float64`);
      const f = mag.values[o] / Math.sqrt(sq);
      factor = Math.max(factor, Math.abs(f));
      for (let i = 0; i < cols; i++) v[o * cols + i] *= f;
    }
    merged.set(keyOf(`${path}.weight`), { values: v, magnitude: (sum.magnitude + maxAbs(mag.values)) * (factor + 1) });
  }
  return modules.size ? { merged } : invalid('no LoRA tensors');
}

/** The factors of an mlx-lm adapter on `path` (out × in, an embedding's vocab × dims) with the world's hostile part. */
function mlxFactors(path: string, rows: number, cols: number, r: number, dtype: FixtureDType, v: (n: number, salt: number, scale?: number) => number[], salt: number, hostile: MlxHostile | null, dora: boolean): FixtureTensor[] {
  const embedding = MLX_EMBEDDING.test(path);
  const [inF, outF] = embedding ? [rows, cols] : [cols, rows];
  let aShape = [inF, r], bShape = [r, outF];
  if (hostile?.part === 'transposed') [aShape, bShape] = [[r, inF], [outF, r]];
  const a = st(`${path}.lora_a`, dtype, aShape, v(inF * r, salt, 0.5));
  const b = st(`${path}.lora_b`, dtype, bShape, v(r * outF, salt + 1, 0.5));
  if (hostile?.part === 'swapped') [a.name, b.name] = [b.name, a.name];
  // DoRA's magnitude, one per row of the weight: left out, one too many, or in a LoRA where hostile.
  const mag = hostile?.part === 'magnitude' ? hostile.shape : null;
  const rowsOfM = rows + (mag === 'one more' ? 1 : 0);
  const withM = dora ? mag !== 'missing' : mag === 'stray';
  const m = withM ? [st(`${path}.m`, 'F32', [rowsOfM], v(rowsOfM, salt + 2).map((x) => 1 + Math.abs(x)))] : [];
  return [a, b, ...m];
}

/** adapter_config.json's fields for the world's config and hostile part. */
function mlxConfigFields(type: 'lora' | 'dora' | 'full' | 'old' | 'old-dora', r: number, scale: number, keys: string[] | undefined, hostile: MlxHostile | null): Record<string, unknown> {
  const lora: Record<string, unknown> = { rank: r + (hostile?.part === 'rank' ? hostile.by : 0), dropout: 0.0, scale: hostile?.part === 'scale' ? hostile.value : scale, ...(keys ? { keys } : {}) };
  const fields: Record<string, unknown> = { fine_tune_type: type === 'old' || type === 'old-dora' ? undefined : type, lora_parameters: type === 'full' ? undefined : lora };
  if (type === 'old' || type === 'old-dora') {
    // mlx-lm before fine_tune_type: lora_layers, use_dora, and from April to June 2024 an alpha.
    Object.assign(fields, { num_layers: undefined, lora_layers: 1, use_dora: type === 'old-dora' });
    if (hostile?.part === 'old alpha') lora.alpha = hostile.alpha === 'rank' ? r : hostile.alpha;
  }
  if (hostile?.part === 'fine_tune_type') fields.fine_tune_type = hostile.value;
  return fields;
}

/**
 * An mlx-lm adapter folder (`mlx_lm.lora`: adapter_config.json of its training arguments,
 * adapters.safetensors with `format: mlx`) of fine_tune_type lora, dora or full, or an older config
 * (use_dora, lora_layers, an alpha), on a small Llama folder (config.json, model.safetensors): LoRA on
 * q_proj, maybe v_proj and the embedding; and hostile: the rank off, the factors swapped or in PEFT's
 * layout, the scale NaN, infinite, a string or null, the config missing, an unknown fine_tune_type,
 * an old config's alpha not its rank, a module on a layer the base lacks, a DoRA magnitude missing,
 * of another length or in a LoRA.
 */
const mlxLmWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    type: fc.constantFrom<'lora' | 'dora' | 'full' | 'old' | 'old-dora'>('lora', 'lora', 'dora', 'full', 'old', 'old-dora'),
    wDtype: floatDtype, fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), scale: fc.constantFrom(20, 2, 0.5, -1, 1e-3),
    onV: fc.boolean(), onEmbed: fc.boolean(), keys: fc.boolean(), seed: values(48),
    hostile: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 3, arbitrary: mlxHostile }),
  })
  .map(({ type, wDtype, fDtype, r, scale, onV, onEmbed, keys, seed, hostile }) => {
    const v = from(seed);
    const [q, vp, gate] = ['self_attn.q_proj', 'self_attn.v_proj', 'mlp.gate_proj'].map((p) => `${L}.${p}`);
    const base = [
      st('model.embed_tokens.weight', wDtype, [MLX_VOCAB, IN], v(MLX_VOCAB * IN, 1)),
      st(`${q}.weight`, wDtype, [OUT, IN], v(OUT * IN, 2)),
      st(`${vp}.weight`, wDtype, [4, IN], v(4 * IN, 3)),
      st(`${L}.input_layernorm.weight`, wDtype, [IN], v(IN, 4)),
      st('model.norm.weight', wDtype, [IN], v(IN, 5)),
    ];
    const dora = type === 'dora' || type === 'old-dora';
    const targets: [string, number, number][] = [[q, OUT, IN], ...(onV ? [[vp, 4, IN] as [string, number, number]] : []), ...(onEmbed ? [['model.embed_tokens', MLX_VOCAB, IN] as [string, number, number]] : [])];
    if (hostile?.part === 'absent module') targets.push([gate, 6, IN]);
    let tensors: FixtureTensor[];
    if (type === 'full') {
      // The trained layers' parameters, saved whole under the checkpoint's names.
      tensors = [st(`${q}.weight`, wDtype, [OUT, IN], v(OUT * IN, 7)), st(`${L}.input_layernorm.weight`, wDtype, [IN], v(IN, 8))];
      if (hostile?.part === 'absent module') tensors.push(st(`${gate}.weight`, wDtype, [6, IN], v(6 * IN, 9)));
      if (hostile?.part === 'swapped' || hostile?.part === 'transposed') tensors.push(...mlxFactors(q, OUT, IN, r, fDtype, v, 10, null, false));
    } else {
      // A hostile factor layout on q_proj alone.
      tensors = targets.flatMap(([path, rows, cols], i) => mlxFactors(path, rows, cols, r, fDtype, v, 10 + 3 * i, path === q ? hostile : null, dora));
    }
    const files: Record<string, SpecFile> = {
      'model/config.json': { kind: 'json', value: { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: IN, num_hidden_layers: 1, vocab_size: MLX_VOCAB, torch_dtype: TORCH_DTYPE[wDtype], tie_word_embeddings: false } },
      'model/model.safetensors': { kind: 'safetensors', tensors: base, metadata: { format: 'pt' } },
      'adapter/adapters.safetensors': { kind: 'safetensors', tensors, metadata: { format: 'mlx' } },
    };
    const keyList = keys ? ['self_attn.q_proj', 'self_attn.v_proj', 'model.embed_tokens'] : undefined;
    if (hostile?.part !== 'no config') files['adapter/adapter_config.json'] = { kind: 'json', value: JSON.parse(mlxConfig(mlxConfigFields(type, r, scale, keyList, hostile))) };
    return {
      name: `mlx-lm ${type} folder${hostile ? ` (${hostile.part})` : ''}`,
      files, base: 'model', adapter: 'adapter', out: 'merged', refusalsChecked: true,
      configReads: ['fine_tune_type', 'use_dora', 'lora_parameters'],
      truth: (d, s) => {
        if (!untiedConfig(d)) return { kind: 'unknown', why: 'tie_word_embeddings edited (the tied-embeddings world follows it)' };
        const t = mlxTruth(d, s, 'adapter/adapter_config.json', 'adapter', (n) => `model/${n}`, (n) => d.tensors.get(`model/${n}`));
        return 'kind' in t ? t : { kind: 'expected', merged: t.merged };
      },
    };
  });

// --- mlx-community affine-quantized bases -------------------------------------------------------------

const MLX_Q_ROWS = 16;
const MLX_Q_COLS = 32;

/** What makes an mlx-community folder hostile: its quantization config or one stored part of q_proj written wrong. */
type MlxQuantHostile =
  | { part: 'config'; edit: Record<string, unknown> }
  | { part: 'layer config'; value: unknown }
  | { part: 'no quantization' }
  | { part: 'dtype'; role: 'scales' | 'biases' | 'weight'; dtype: FixtureDType }
  | { part: 'shape'; role: 'scales' | 'biases' | 'weight'; shape: 'transposed' | 'one more column' | 'one more row' | 'flat' }
  | { part: 'missing'; role: 'scales' | 'biases' }
  | { part: 'value'; role: 'scales' | 'biases'; value: number; at: number }
  | { part: 'dora' }
  | { part: 'straddling'; bits: 3 | 5 | 6 };

const mlxQuantHostile: fc.Arbitrary<MlxQuantHostile> = fc.oneof(
  fc.record({ part: fc.constant('config' as const), edit: fc.constantFrom<Record<string, unknown>>({ bits: 3 }, { bits: 5 }, { bits: 6 }, { bits: 8 }, { bits: 2 }, { bits: '4' }, { group_size: 24 }, { group_size: 7 }, { group_size: 0 }, { group_size: 64 }, { group_size: 16 }, { group_size: '32' }, { mode: 'mxfp4' }, { mode: 'affine' }, { mode: 'nvfp4' }) }),
  fc.record({ part: fc.constant('layer config' as const), value: fc.constantFrom<unknown>(false, { group_size: 32, bits: 3 }, { group_size: 16, bits: 4 }, 4, null) }),
  fc.constant<MlxQuantHostile>({ part: 'no quantization' }),
  fc.record({ part: fc.constant('dtype' as const), role: fc.constantFrom<'scales' | 'biases' | 'weight'>('scales', 'biases', 'weight'), dtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16', 'I32', 'U8') }),
  fc.record({ part: fc.constant('shape' as const), role: fc.constantFrom<'scales' | 'biases' | 'weight'>('scales', 'biases', 'weight'), shape: fc.constantFrom<'transposed' | 'one more column' | 'one more row' | 'flat'>('transposed', 'one more column', 'one more row', 'flat') }),
  fc.record({ part: fc.constant('missing' as const), role: fc.constantFrom<'scales' | 'biases'>('scales', 'biases') }),
  fc.record({ part: fc.constant('value' as const), role: fc.constantFrom<'scales' | 'biases'>('scales', 'biases'), value: fc.constantFrom(NaN, Infinity, -Infinity, 2 ** -40, 1e30, -0, 65504), at: fc.nat(31) }),
  fc.constant<MlxQuantHostile>({ part: 'dora' }),
  // 3-, 5- and 6-bit codes as mlx packs them (a bit stream whose codes straddle words), the config saying so.
  fc.record({ part: fc.constant('straddling' as const), bits: fc.constantFrom<3 | 5 | 6>(3, 5, 6) }),
);

/**
 * Unsigned `bits`-bit code of input i in a row of U32 words, bit by bit: mx.quantize writes a row as
 * one little-endian bit stream, code i at bits [bits·i, bits·i + bits) (3-, 5- and 6-bit codes
 * straddle bytes and words; mlx's quantized.cpp extract_bits reads them back so).
 */
const mlxCode = (words: Float64Array, rowStart: number, bits: number, i: number) => {
  let code = 0;
  for (let k = 0; k < bits; k++) {
    const at = bits * i + k;
    code += field(words[rowStart + Math.floor(at / 32)], 1, at % 32) * 2 ** k;
  }
  return code;
};

/**
 * mlx affine quantization as README.md's "Integer weight-only checkpoints" states it: config.json
 * `quantization` {group_size, bits, mode affine or none} and per-layer objects (or false); bits 2, 4
 * or 8; per `<m>.weight` U32 (out, in·bits/32) beside `<m>.scales` and `<m>.biases` F16/BF16 (out,
 * in/group_size), all finite: W[o, i] = q·scale + bias of i's group, which must be exact in f32. The
 * real weights by stem, or the Truth where the rule refuses the folder.
 */
function mlxAffineReal(d: Decoded): Map<string, { values: Float64Array; shape: number[] }> | Truth {
  const invalid = (why: string): Truth => ({ kind: 'invalid', why });
  const configs = llmConfigs(d);
  if ('kind' in configs) return configs;
  const qc = configs.config.quantization;
  const names = llmTensorNames(d);
  const tensor = (n: string) => d.tensors.get(`${LLM_FOLDER}/${n}`);
  const stems = names.filter((n) => n.endsWith('.weight') && tensor(n)!.dtype === 'U32').map((n) => n.slice(0, -'.weight'.length)).filter((s) => tensor(`${s}.scales`) && tensor(`${s}.biases`));
  if (!isJsonObject(qc)) return stems.length ? invalid(`U32 weights with scales and biases, config quantization ${jsonKind(qc)}`) : new Map();
  const scheme = (q: Record<string, unknown>): { bits: number; groupSize: number } | Truth => {
    if (q.mode !== undefined && q.mode !== 'affine') return invalid(`mode ${jsonKind(q.mode)}`);
    if (![2, 3, 4, 5, 6, 8].includes(q.bits as number)) return invalid(`bits ${jsonKind(q.bits)}`);
    if (!safeSize(q.group_size) || q.group_size < 1) return invalid(`group_size ${jsonKind(q.group_size)}`);
    return { bits: q.bits as number, groupSize: q.group_size };
  };
  const global = scheme(qc);
  if ('kind' in global) return global;
  const perLayer = new Map<string, { bits: number; groupSize: number } | false>();
  for (const [k, value] of Object.entries(qc)) {
    if (k === 'group_size' || k === 'bits' || k === 'mode') continue;
    if (value === false) perLayer.set(k, false);
    else if (isJsonObject(value)) {
      const sch = scheme(value);
      if ('kind' in sch) return sch;
      perLayer.set(k, sch);
    } else return invalid(`quantization.${k} ${jsonKind(value)}`);
  }
  const read = new Map<string, { values: Float64Array; shape: number[] }>();
  for (const stem of stems) {
    const layer = perLayer.has(stem) ? perLayer.get(stem)! : global;
    if (layer === false) return invalid(`${stem} stored quantized, its config entry false`);
    const [w, sc, bi] = [tensor(`${stem}.weight`)!, tensor(`${stem}.scales`)!, tensor(`${stem}.biases`)!];
    // (out, words), or stacked experts (E, out, words) (mlx-lm's switch_mlp): E·out rows.
    if (w.shape.length < 2) return invalid(`${stem}.weight [${w.shape}]`);
    if (!SCALE_DTYPES.includes(sc.dtype) || !SCALE_DTYPES.includes(bi.dtype)) return invalid(`${stem}: scales ${sc.dtype}, biases ${bi.dtype}`);
    const words = w.shape[w.shape.length - 1];
    const rows = w.shape.slice(0, -1).reduce((x, y) => x * y, 1);
    const cols = (words * 32) / layer.bits;
    const groups = cols / layer.groupSize;
    const groupShape = [...w.shape.slice(0, -1), groups].join();
    if (!Number.isInteger(cols) || !Number.isInteger(groups) || sc.shape.join() !== groupShape || bi.shape.join() !== groupShape) return invalid(`${stem}: scales [${sc.shape}] / biases [${bi.shape}] for (${rows}, ${cols}) in groups of ${layer.groupSize}`);
    if ([...sc.values, ...bi.values].some((x) => !Number.isFinite(x))) return invalid(`${stem}: a scale or bias not finite`);
    const values = new Float64Array(rows * cols);
    for (let o = 0; o < rows; o++) for (let i = 0; i < cols; i++) {
      const g = o * groups + Math.floor(i / layer.groupSize);
      const product = mlxCode(w.values, o * words, layer.bits, i) * sc.values[g];
      const x = product + bi.values[g];
      // The real q·scale + bias must be an f32: the float64 sum exact (its rounding error, by TwoSum, zero) and an f32.
      const bPart = x - product;
      if (product - (x - bPart) + (bi.values[g] - bPart) !== 0 || Math.fround(x) !== x) return invalid(`${stem}.weight[${o}, ${i}] not exact in f32`);
      values[o * cols + i] = x;
    }
    read.set(stem, { values, shape: [...w.shape.slice(0, -1), cols] });
  }
  return read;
}

/**
 * An mlx-community affine-quantized Llama folder (`mlx_lm.convert -q`: config.json quantization and
 * quantization_config {group_size, bits} with a per-layer entry for k_proj, U32 codes, BF16 or F16
 * scales and biases as mlx's quantizer makes them: the bias a group's edge value) with an mlx-lm
 * LoRA on q_proj and maybe k_proj (a QLoRA), merged only with `--dtype`; hostile: bits 3, 5 or 6, a
 * group size not dividing the inputs, another mode, no quantization config, a layer entry false,
 * scales or biases of another dtype or shape, missing, NaN or infinite, the packed width wrong, a DoRA.
 */
const mlxAffineWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    bits: fc.constantFrom(4, 4, 8, 2), kBits: fc.constantFrom(8, 4, 2), groupSize: fc.constantFrom(32, 16, 8), scaleDtype: fc.constantFrom<FixtureDType>('BF16', 'BF16', 'F16'),
    // A MoE's stacked experts (mlx-lm's switch_mlp: (2, 8, in·bits/32) codes) at these bits, maybe under a LoRASwitchLinear.
    moeBits: fc.constantFrom<number | null>(null, null, 3, 4, 5, 6, 8), onSwitch: fc.boolean(),
    codes: fc.uint8Array({ minLength: 2 * MLX_Q_ROWS * MLX_Q_COLS, maxLength: 2 * MLX_Q_ROWS * MLX_Q_COLS }),
    onK: fc.boolean(), fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }), scale: fc.constantFrom(20, 2, 0.5, -1),
    seed: values(48), mergeDtype: fc.constantFrom<OutDtype | undefined>('bf16', 'bf16', 'bf16', 'f32', 'f16', undefined),
    hostile: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 3, arbitrary: mlxQuantHostile }),
  })
  .map(({ bits, kBits, groupSize, scaleDtype, moeBits, onSwitch, codes, onK, fDtype, r, scale, seed, mergeDtype, hostile }) => {
    const v = from(seed);
    const [q, k] = ['q_proj', 'k_proj'].map((p) => `${L}.self_attn.${p}`);
    const up = `${L}.mlp.switch_mlp.up_proj`;
    const kRows = 8;
    /** A layer as mlx's quantizer writes it: scale ±(range / (2^bits − 1)) in bf16, bias the group's edge q0·scale. */
    const layer = (stem: string, rows: number, b: number, salt: number, hs: MlxQuantHostile | null, experts = 0): FixtureTensor[] => {
      const lead = experts ? [experts] : [];
      rows *= experts || 1;
      const words = new Array<number>((rows * MLX_Q_COLS * b) / 32).fill(0);
      // Code j at bits b·j of the layer's bit stream, lowest first (a whole number of codes per word for 2, 4, 8 bits).
      for (let j = 0; j < rows * MLX_Q_COLS; j++) {
        const code = codes[(salt * 512 + j) % codes.length] % 2 ** b;
        for (let bit = 0; bit < b; bit++) if ((code >> bit) & 1) words[Math.floor((b * j + bit) / 32)] += 2 ** ((b * j + bit) % 32);
      }
      const groups = MLX_Q_COLS / groupSize;
      const sv = v(rows * groups, salt + 1, 0.01).map((x, g) => roundForDType((g % 3 === 0 ? -1 : 1) * (Math.abs(x) + 1e-3), scaleDtype));
      const bv = sv.map((x, g) => roundForDType(-(2 ** (b - 1)) * x * (1 + (g % 5) / 128), scaleDtype));
      const parts: Record<'weight' | 'scales' | 'biases', FixtureTensor> = {
        weight: { name: `${stem}.weight`, dtype: 'U32', shape: [...lead, rows / (experts || 1), (MLX_Q_COLS * b) / 32], data: words },
        scales: st(`${stem}.scales`, scaleDtype, [...lead, rows / (experts || 1), groups], sv),
        biases: st(`${stem}.biases`, scaleDtype, [...lead, rows / (experts || 1), groups], bv),
      };
      const out: FixtureTensor[] = [];
      for (const role of ['weight', 'scales', 'biases'] as const) {
        const t = parts[role];
        if (hs?.part === 'missing' && hs.role === role) continue;
        if (hs?.part === 'value' && hs.role === role) (t.data as number[])[hs.at % t.data.length] = hs.value;
        if (hs?.part === 'dtype' && hs.role === role) t.dtype = hs.dtype;
        if (hs?.part === 'shape' && hs.role === role) {
          const [a, c] = t.shape;
          t.shape = hs.shape === 'transposed' ? [c, a] : hs.shape === 'flat' ? [a * c] : hs.shape === 'one more row' ? [a + 1, c] : [a, c + 1];
          const n = t.shape.reduce((x, y) => x * y, 1);
          t.data = Array.from({ length: n }, (_, i) => (t.data as number[])[i % t.data.length]);
        }
        out.push(t);
      }
      return out;
    };
    const hidden = MLX_Q_COLS;
    const tensors = [
      st('model.embed_tokens.weight', 'BF16', [4, hidden], v(4 * hidden, 1)),
      ...layer(q, MLX_Q_ROWS, hostile?.part === 'straddling' ? hostile.bits : bits, 0, hostile),
      ...layer(k, kRows, kBits, 1, null),
      ...(moeBits ? layer(up, 8, moeBits, 2, null, 2) : []),
      st(`${L}.input_layernorm.weight`, 'BF16', [hidden], v(hidden, 5)),
      st('model.norm.weight', 'BF16', [hidden], v(hidden, 2)),
    ];
    const quantization: Record<string, unknown> = { group_size: groupSize, bits, [k]: { group_size: groupSize, bits: kBits } };
    if (hostile?.part === 'config') edited(quantization, hostile.edit);
    if (hostile?.part === 'layer config') quantization[q] = hostile.value;
    if (hostile?.part === 'straddling') quantization[q] = { group_size: groupSize, bits: hostile.bits };
    if (moeBits) quantization[up] = { group_size: groupSize, bits: moeBits };
    const config: Record<string, unknown> = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: hidden, num_hidden_layers: 1, vocab_size: 4, torch_dtype: 'bfloat16', tie_word_embeddings: false };
    if (hostile?.part !== 'no quantization') Object.assign(config, { quantization, quantization_config: structuredClone(quantization) });
    const targets: [string, number][] = [[q, MLX_Q_ROWS], ...(onK ? [[k, kRows] as [string, number]] : [])];
    const dora = hostile?.part === 'dora';
    const factors = targets.flatMap(([path, rows], i) => mlxFactors(path, rows, hidden, r, fDtype, v, 10 + 3 * i, null, dora));
    // LoRASwitchLinear's lora_a (E, r, in) and lora_b (E, out, r) on the stacked experts.
    if (moeBits && onSwitch) factors.push(st(`${up}.lora_a`, fDtype, [2, r, hidden], v(2 * r * hidden, 20, 0.5)), st(`${up}.lora_b`, fDtype, [2, 8, r], v(2 * 8 * r, 21, 0.5)));
    const files: Record<string, SpecFile> = {
      'model/config.json': { kind: 'json', value: config },
      'model/model.safetensors': { kind: 'safetensors', tensors, metadata: { format: 'mlx' } },
      'adapter/adapters.safetensors': { kind: 'safetensors', tensors: factors, metadata: { format: 'mlx' } },
      'adapter/adapter_config.json': { kind: 'json', value: JSON.parse(mlxConfig(mlxConfigFields(dora ? 'dora' : 'lora', r, scale, undefined, null))) },
    };
    return {
      name: `mlx-community ${bits}-bit folder + mlx-lm LoRA${hostile ? ` (${hostile.part})` : ''}`,
      files, base: 'model', adapter: 'adapter', out: 'merged', outDtypes: ['bf16', 'f16', 'f32'], refusalsChecked: true, ...(mergeDtype ? { mergeDtype } : {}),
      configReads: ['fine_tune_type', 'use_dora', 'lora_parameters'],
      truth: (d, s, outDtype) => {
        if (!untiedConfig(d)) return { kind: 'unknown', why: 'tie_word_embeddings edited (the tied-embeddings world follows it)' };
        const read = mlxAffineReal(d);
        if (!(read instanceof Map)) return read;
        const real = (n: string) => (n.endsWith('.weight') && read.has(n.slice(0, -'.weight'.length)) ? read.get(n.slice(0, -'.weight'.length)) : d.tensors.get(`${LLM_FOLDER}/${n}`));
        const t = mlxTruth(d, s, 'adapter/adapter_config.json', 'adapter', (n) => `${LLM_FOLDER}/${n}`, real, read.size === 0);
        if ('kind' in t) return t;
        if (!read.size) return { kind: 'unknown', why: 'no quantized weight read (a plain base, not followed here)' };
        if (!outDtype) return { kind: 'invalid', why: 'mlx affine weights are written only dequantized' };
        const dtype = OUT_DTYPE[outDtype];
        const merged = new Map<string, ExpectedMerge>();
        for (const [key, e] of t.merged) merged.set(key, { ...e, dtype, shape: read.get(key.slice(LLM_FOLDER.length + 1, -'.weight'.length))?.shape });
        // Every other quantized weight dequantized (exact in f32), rounded once to the dtype.
        for (const [stem, w] of read) {
          const key = `${LLM_FOLDER}/${stem}.weight`;
          if (!merged.has(key)) merged.set(key, { values: w.values.map((x) => roundForDType(x, dtype)), magnitude: 0, dtype, exact: true, shape: w.shape });
        }
        const names = llmTensorNames(d);
        const parts = new Set([...read.keys()].flatMap((stem) => [`${stem}.scales`, `${stem}.biases`]));
        const rest = convertRest(d, names, (n) => `${LLM_FOLDER}/${n}`, (n) => parts.has(n), merged, outDtype);
        if (rest) return rest;
        // A base tensor already NaN or infinite is converted as it is (with a warning): not compared here.
        if ([...merged.values()].some((e) => e.exact && e.values.some((x) => !Number.isFinite(x)))) return { kind: 'unknown', why: 'a base tensor holding NaN or Inf converted' };
        const past = pastDtype(merged, outDtype);
        if (past) return past;
        const configs = llmConfigs(d);
        if ('kind' in configs) return configs;
        const { quantization: _q, quantization_config: _qc, ...configOut } = configs.config;
        return { kind: 'expected', merged, leftOut: [...parts].map((n) => `${LLM_FOLDER}/${n}`), json: { [`${LLM_FOLDER}/config.json`]: { equals: configOut, except: ['dtype', 'torch_dtype'] } } };
      },
    };
  });

// --- PEFT FourierFT and WaveFT folders -------------------------------------------------

/** The low 32 bits of a seed: torch's CPU generator seeds MT19937 with them (README, FourierFT row). */
const seedLow32 = (seed: number) => BigInt.asUintN(32, BigInt(seed));

/**
 * torch.randperm(cells) prefixes by `low 32 bits of the seed:cells`, from what torch computed
 * (test/reference/torch-cpu-random.json): the randperm prefixes, and each FourierFT case's positions
 * (entry e at (e // in, e % in)). A prefix of randperm is the same whatever n is cut from it.
 */
const TORCH_PREFIXES: Map<string, number[]> = (() => {
  const table = new Map<string, number[]>();
  const add = (seed: number, cells: number, flat: number[]) => {
    const key = `${seedLow32(seed)}:${cells}`;
    if ((table.get(key)?.length ?? 0) < flat.length) table.set(key, flat);
  };
  for (const p of torchReference.randperm) add(p.seed, p.n, p.first);
  for (const c of torchReference.fourierft) add(c.random_loc_seed, c.out * c.in, c.rows.map((row, k) => row * c.in + c.cols[k]));
  return table;
})();

/** Layers with torch's positions known: (out, in), a seed, how many positions are known; sizes of 2²⁰ and more left out (slow). */
const SPECTRUM_LAYERS: { out: number; in: number; seed: number; known: number }[] = [
  ...torchReference.fourierft.filter((c) => c.out * c.in <= 4096).flatMap((c) => [{ out: c.out, in: c.in, seed: c.random_loc_seed, known: c.rows.length }, { out: c.in, in: c.out, seed: c.random_loc_seed, known: c.rows.length }]),
  ...torchReference.randperm.filter((p) => p.n <= 4099 && p.n > 1).map((p) => ({ out: 1, in: p.n, seed: p.seed, known: p.first.length })),
  { out: 2, in: 5, seed: 777, known: 10 }, { out: 25, in: 40, seed: 2 ** 32 + 5, known: 24 },
];

type SpectrumHostile =
  | { part: 'length'; by: number }
  | { part: 'seed'; value: unknown }
  | { part: 'n past the layer' }
  | { part: 'scaling'; value: unknown }
  | { part: 'n_frequency'; value: unknown }
  | { part: 'use_idwt'; value: unknown }
  | { part: 'fan_in_fan_out' };

const spectrumHostile: fc.Arbitrary<SpectrumHostile> = fc.oneof(
  fc.record({ part: fc.constant('length' as const), by: fc.constantFrom(1, -1) }),
  fc.record({ part: fc.constant('seed' as const), value: fc.constantFrom<unknown>(null, 1.5, -0.5, 2 ** 53, -(2 ** 53), 2 ** 60, '777', true, undefined, 2 ** 32, -(2 ** 32), 2 ** 53 - 1) }),
  fc.constant<SpectrumHostile>({ part: 'n past the layer' }),
  fc.record({ part: fc.constant('scaling' as const), value: fc.constantFrom<unknown>(null, '150', undefined, 0, -2, 1e300) }),
  fc.record({ part: fc.constant('n_frequency' as const), value: fc.constantFrom<unknown>(null, undefined, '9', 1.5) }),
  fc.record({ part: fc.constant('use_idwt' as const), value: fc.constantFrom<unknown>(true, undefined, null, false, 'false') }),
  fc.constant<SpectrumHostile>({ part: 'fan_in_fan_out' }),
);

/**
 * A PEFT FourierFT or WaveFT folder (its values checked with use_idwt false) on q_proj of a single file or a Llama folder
 * (config.json), on layers whose torch.randperm positions torch computed (test/reference), the seed
 * written as torch's or another with the same low 32 bits; and hostile: a spectrum one longer or
 * shorter than n_frequency, seeds null, fractional, ±2^53 and 2^60 (ints to Python: their low 32
 * bits seed torch), a string or left to the default, n past
 * the layer's weights, scaling and n_frequency null or strings, use_idwt true, absent or a string,
 * fan_in_fan_out true.
 */
const spectrumWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    method: fc.constantFrom<'FOURIERFT' | 'WAVEFT'>('FOURIERFT', 'WAVEFT'),
    layer: fc.constantFrom(...SPECTRUM_LAYERS), nPick: fc.nat(), seedShift: fc.constantFrom(0, 0, 1, -1, 2), scaling: fc.constantFrom<number | undefined>(150, 2, 0.5, -3, undefined),
    withConfig: fc.boolean(), wDtype: floatDtype, sDtype: floatDtype, spectrum: fc.array(roundingValue, { minLength: 64, maxLength: 64 }), seed: values(48),
    hostile: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 3, arbitrary: spectrumHostile }),
  })
  .map(({ method, layer, nPick, seedShift, scaling, withConfig, wDtype, sDtype, spectrum, seed, hostile }) => {
    const v = from(seed);
    const cells = layer.out * layer.in;
    const n = hostile?.part === 'n past the layer' ? cells + 1 : 1 + (nPick % layer.known);
    const length = hostile?.part === 'length' ? Math.max(0, n + hostile.by) : n;
    // Another seed with the same low 32 bits where it is a safe integer.
    const shifted = layer.seed + seedShift * 2 ** 32;
    const seedValue: unknown = hostile?.part === 'seed' ? hostile.value : Number.isSafeInteger(shifted) ? shifted : layer.seed;
    const role = method === 'FOURIERFT' ? 'fourierft_spectrum' : 'waveft_spectrum';
    const config: Record<string, unknown> = {
      peft_type: method, task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.17.1', revision: null, n_frequency: n, scaling,
      random_loc_seed: seedValue, fan_in_fan_out: hostile?.part === 'fan_in_fan_out', target_modules: ['q_proj'], exclude_modules: null, bias: 'none', modules_to_save: null,
      layers_to_transform: null, layers_pattern: null, n_frequency_pattern: {}, init_weights: false, inference_mode: true,
      ...(method === 'WAVEFT' ? { wavelet_family: 'db1', use_idwt: false, proportional_parameters: false } : {}),
    };
    if (hostile?.part === 'scaling') config.scaling = hostile.value;
    if (hostile?.part === 'n_frequency') config.n_frequency = hostile.value;
    if (hostile?.part === 'use_idwt' && method === 'WAVEFT') config.use_idwt = hostile.value;
    for (const k of Object.keys(config)) if (config[k] === undefined) delete config[k];
    const baseTensors = [st(`${Q}.weight`, wDtype, [layer.out, layer.in], v(cells, 1)), st('model.norm.weight', wDtype, [4], v(4, 2))];
    const coefficients = Array.from({ length }, (_, k) => spectrum[k % spectrum.length] * (1 + (k % 7) / 5));
    const files: Record<string, SpecFile> = {
      'adapter/adapter_model.safetensors': { kind: 'safetensors', tensors: [st(`base_model.model.${Q}.${role}`, sDtype, [length], coefficients)] },
      'adapter/adapter_config.json': { kind: 'json', value: config },
    };
    if (withConfig) {
      files['model/config.json'] = { kind: 'json', value: { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: layer.in, num_hidden_layers: 1, torch_dtype: TORCH_DTYPE[wDtype] } };
      files['model/model.safetensors'] = { kind: 'safetensors', tensors: baseTensors, metadata: { format: 'pt' } };
    } else files['base.safetensors'] = { kind: 'safetensors', tensors: baseTensors };
    const folder = withConfig ? 'model' : '';
    return {
      name: `PEFT ${method === 'FOURIERFT' ? 'FourierFT' : 'WaveFT'} folder (${layer.out}, ${layer.in})${withConfig ? ' in a Llama folder' : ''}${hostile ? ` (${hostile.part})` : ''}`,
      files, base: withConfig ? 'model' : 'base.safetensors', adapter: 'adapter', out: withConfig ? 'merged' : 'merged.safetensors', refusalsChecked: true,
      configReads: ['n_frequency', 'scaling', 'random_loc_seed', 'fan_in_fan_out', 'use_idwt'],
      truth: (d, s) => {
        const invalid = (why: string): Truth => ({ kind: 'invalid', why });
        const text = d.json.get('adapter/adapter_config.json')!;
        const raw = parsedJson(text);
        if (!isJsonObject(raw) || nestingDepth(text) > 64) return { kind: 'unknown', why: 'adapter_config.json is no object, or nests too deep to compare' };
        // PEFT's defaults where a field is left out; null or another type is refused (PEFT fails on it).
        const num = (k: string, fallback: number): number | Truth => {
          const x = raw[k];
          if (x === undefined) return fallback;
          return typeof x === 'number' && Number.isFinite(x) ? x : invalid(`${k} ${jsonKind(x)}`);
        };
        if (method === 'WAVEFT' && raw.use_idwt !== undefined && raw.use_idwt !== null && typeof raw.use_idwt !== 'boolean') return invalid(`use_idwt ${jsonKind(raw.use_idwt)}`);
        // With use_idwt (true, or PEFT's default when absent) ΔW goes through PEFT's inverse wavelet
        // transform, whose values test/peft-waveft-idwt.test.ts checks against torch; here only that the
        // outcome is a clean merge or a clean refusal.
        const idwt = method === 'WAVEFT' && (raw.use_idwt === undefined || raw.use_idwt === true);
        if (raw.fan_in_fan_out !== undefined && raw.fan_in_fan_out !== null && typeof raw.fan_in_fan_out !== 'boolean') return invalid(`fan_in_fan_out ${jsonKind(raw.fan_in_fan_out)}`);
        const nf = num('n_frequency', method === 'FOURIERFT' ? 1000 : 2592);
        const sc = num('scaling', method === 'FOURIERFT' ? 150 : 25);
        const sd = num('random_loc_seed', 777);
        if (typeof nf !== 'number') return nf;
        if (typeof sc !== 'number') return sc;
        if (typeof sd !== 'number') return sd;
        // manual_seed takes a Python int from −2⁶³ to 2⁶⁴ − 1, as the text writes it (JSON writes 2⁶⁰ as
        // 1152921504606847000, an int); a float (1.5, 1e21) raises. Its low 32 bits seed the generator.
        const seedText = raw.random_loc_seed === undefined ? '777' : /"random_loc_seed":(-?[0-9.eE+-]+)/.exec(text)?.[1];
        if (seedText === undefined) return { kind: 'unknown', why: 'random_loc_seed written in another form' };
        if (!/^-?(0|[1-9][0-9]*)$/.test(seedText)) return invalid(`random_loc_seed ${seedText}, a float`);
        const seedInt = BigInt(seedText);
        if (seedInt < -(2n ** 63n) || seedInt >= 2n ** 64n) return invalid(`random_loc_seed ${seedText} past torch's range`);
        const w = d.tensors.get(`${folder}/${Q}.weight`)!;
        const c = d.tensors.get(`adapter/base_model.model.${Q}.${role}`)!;
        if (c.values.length !== nf) return invalid(`a spectrum of ${c.values.length} for n_frequency ${nf}`);
        if (nf > cells) return invalid(`n_frequency ${nf} past the ${cells} weights`);
        // Without a config.json a Linear's weight under fan_in_fan_out is read as stored (in, out): no dense update there.
        if (raw.fan_in_fan_out === true && !withConfig) return invalid('fan_in_fan_out on a weight stored (in, out)');
        const prefix = TORCH_PREFIXES.get(`${BigInt.asUintN(32, seedInt)}:${cells}`);
        if (!prefix || prefix.length < nf) return { kind: 'unknown', why: `torch's positions for seed ${seedText} over ${cells} not in the reference` };
        if (idwt) return { kind: 'unknown', why: 'WaveFT with use_idwt: values checked against torch in peft-waveft-idwt.test.ts' };
        const rows = prefix.slice(0, nf).map((e) => Math.floor(e / layer.in)), cols = prefix.slice(0, nf).map((e) => e % layer.in);
        // ΔW before the scale, handed to the engine in f32 (README, FourierFT row): WaveFT's coefficients as they are.
        if (method !== 'FOURIERFT') {
          const dense = new Float64Array(cells);
          rows.forEach((row, k) => (dense[row * layer.in + cols[k]] = c.values[k]));
          return { kind: 'expected', merged: new Map([[`${folder}/${Q}.weight`, added(w.values, dense, s * sc)]]) };
        }
        const unit64 = deltaTruth({ name: '', out: layer.out, in: layer.in, n_frequency: nf, random_loc_seed: sd, scaling: 1, spectrum: Array.from(c.values), rows, cols });
        const merge = added(w.values, unit64.map(Math.fround), s * sc);
        return { kind: 'expected', merged: new Map([[`${folder}/${Q}.weight`, { ...merge, slack: f32TieSlack(unit64, s * sc) }]]) };
      },
    };
  });

/**
 * The worlds by the name FUZZ_SURFACE_WORLDS selects them by, with how often each is drawn
 * (dit-namings and peft-new 3 each of 71: about 125 of the 1500 cases `npm test` runs; mlx-experts,
 * flux-control-gguf, split-modules, split-experts and t5-alone about 42 each; gguf-type-mixes, whose cases quantize a whole
 * model, about 22).
 */
export const SURFACE_WORLDS: Record<string, { weight: number; arbitrary: fc.Arbitrary<SurfaceWorld> }> = {
  'gguf-lora': { weight: 4, arbitrary: ggufLoraWorld },
  'gguf-peft': { weight: 4, arbitrary: ggufPeftWorld },
  lycoris: { weight: 6, arbitrary: lycorisWorld },
  'peft-methods': { weight: 4, arbitrary: peftMethodWorld },
  sharded: { weight: 2, arbitrary: shardedWorld },
  pipeline: { weight: 2, arbitrary: pipelineWorld },
  bnb: { weight: 2, arbitrary: bnbWorld },
  'comfy-quant': { weight: 4, arbitrary: comfyQuantWorld },
  'block-fp8': { weight: 2, arbitrary: blockFp8World },
  'scaled-fp8': { weight: 2, arbitrary: scaledFp8World },
  'compressed-tensors': { weight: 2, arbitrary: llmQuantWorld('compressed-tensors') },
  'modelopt-fp8': { weight: 2, arbitrary: llmQuantWorld('modelopt-fp8') },
  'modelopt-nvfp4': { weight: 2, arbitrary: llmQuantWorld('modelopt-nvfp4') },
  gptq: { weight: 2, arbitrary: intQuantWorld('gptq') },
  awq: { weight: 2, arbitrary: intQuantWorld('awq') },
  'compressed-tensors-int': { weight: 2, arbitrary: intQuantWorld('compressed-tensors-int') },
  'flux-control': { weight: 2, arbitrary: fluxControlWorld },
  'tied-embeddings': { weight: 2, arbitrary: tiedEmbeddingsWorld },
  'mlx-lm': { weight: 2, arbitrary: mlxLmWorld },
  'mlx-affine': { weight: 2, arbitrary: mlxAffineWorld },
  'fourierft-waveft': { weight: 2, arbitrary: spectrumWorld },
  'dit-namings': { weight: 3, arbitrary: ditNamingsWorld },
  'peft-new': { weight: 3, arbitrary: peftNewWorld },
  // Weight 0: a property of its own (fuzz-surfaces.test.ts, FUZZ_DRAWN_RUNS), drawn here only where FUZZ_SURFACE_WORLDS names it.
  'peft-drawn-projections': { weight: 0, arbitrary: drawnProjectionsWorld },
  'mlx-experts': { weight: 2, arbitrary: mlxExpertsWorld },
  'flux-control-gguf': { weight: 2, arbitrary: fluxGgufWorld },
  'gguf-type-mixes': { weight: 1, arbitrary: typeMixesWorld },
  'split-modules': { weight: 2, arbitrary: splitModulesWorld },
  'split-experts': { weight: 2, arbitrary: splitExpertsWorld },
  't5-alone': { weight: 2, arbitrary: t5AloneWorld },
  // Weight 0: drawn only where FUZZ_SURFACE_WORLDS names it (each case takes seconds).
  'gguf-type-mixes-70b': { weight: 0, arbitrary: seventyBWorld },
  // Weight 0: a property of their own (fuzz-surfaces.test.ts, FUZZ_NEW_RUNS, NEW_SURFACE_WORLDS), so that
  // the mixed property's draws for a seed stay as they were; drawn here only where FUZZ_SURFACE_WORLDS names them.
  'modular-index': { weight: 0, arbitrary: modularIndexWorld },
  'kandinsky-config': { weight: 0, arbitrary: kandinskyConfigWorld },
  'deepseek-v4': { weight: 0, arbitrary: deepseekV4World },
  'onetrainer-oft': { weight: 0, arbitrary: onetrainerOftWorld },
  'deepseek-v3-ue8m0': { weight: 0, arbitrary: deepseekV3Ue8m0World },
};

/** The newest surfaces' worlds (fuzz-new-surfaces.ts), fuzzed by a property of their own. */
export const NEW_SURFACE_WORLDS = ['modular-index', 'kandinsky-config', 'deepseek-v4', 'onetrainer-oft', 'deepseek-v3-ue8m0'];

/**
 * The worlds drawn from: all of weight above 0, or those named in `only` (comma-separated keys of
 * SURFACE_WORLDS; one of weight 0 is then drawn as if of weight 1).
 */
export function surfaceWorlds(only?: string): fc.Arbitrary<SurfaceWorld> {
  const keys = only ? only.split(',').map((k) => k.trim()) : Object.keys(SURFACE_WORLDS).filter((k) => SURFACE_WORLDS[k].weight > 0);
  const unknown = keys.filter((k) => !SURFACE_WORLDS[k]);
  if (unknown.length) throw new Error(`no fuzz world ${unknown.join(', ')}; the worlds are ${Object.keys(SURFACE_WORLDS).join(', ')}`);
  return fc
    .oneof(...keys.map((k) => ({ ...SURFACE_WORLDS[k], weight: SURFACE_WORLDS[k].weight || 1 })))
    // A failing case prints as its world's name and files (the seed and path reproduce it).
    .map((w) => Object.assign(w, { [fc.toStringMethod]: () => `${w.name} (${Object.keys(w.files).join(', ')})` }));
}

// --- mutations ---------------------------------------------------------------------------------------

export type SurfaceMutation =
  | { op: 'flip'; file: number; at: number[] }
  | { op: 'truncate'; file: number; at: number }
  | { op: 'drop'; file: number }
  | { op: 'value'; file: number; tensor: number; index: number; value: number }
  | { op: 'shape'; file: number; tensor: number; dim: number; value: number; keepData: boolean }
  | { op: 'gguf-type'; file: number; tensor: number; value: number }
  | { op: 'gguf-offset'; file: number; tensor: number; value: number }
  | { op: 'gguf-ne'; file: number; tensor: number; ne: number[] }
  | { op: 'gguf-meta'; file: number; key: string; value: MetaValue }
  | { op: 'gguf-align'; file: number; meta: MetaValue | null; layout: number }
  | { op: 'gguf-count'; file: number; which: 'tensors' | 'kv'; value: bigint }
  | { op: 'gguf-version'; file: number; value: number }
  | { op: 'json'; file: number; pick: number[]; value: unknown }
  | { op: 'text'; file: number; at: number; edit: TextEdit };

const weird: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(0, -1, 1, 2, 3, 2.5, 1e308, -1e308, 1e-300, 2 ** 31, 2 ** 53, 2 ** 64, 1e21, '8', '', 'float16', null, true, false, [], {}, [1, 2], { a: 1 }, ['x'], { 'q_proj': 1e9 }),
  fc.integer({ min: 1, max: MAX_NESTING }).map((depth) => ({ deep: depth })),
  fc.jsonValue({ maxDepth: 2 }),
);

const metaValue: fc.Arbitrary<MetaValue> = fc.oneof(
  fc.constantFrom<MetaValue>(
    { type: 'f32', value: 0 }, { type: 'f32', value: -8 }, { type: 'f32', value: NaN }, { type: 'f32', value: Infinity }, { type: 'f32', value: 1e38 },
    { type: 'f64', value: 8 }, { type: 'u32', value: 8 }, { type: 'i8', value: -1 }, { type: 'u64', value: 2n ** 63n }, { type: 'i64', value: -(2n ** 62n) },
    { type: 'string', value: '8' }, { type: 'string', value: 'llama' }, { type: 'string', value: 'qwen2' }, { type: 'string', value: 'lora' }, { type: 'string', value: 'model' },
    { type: 'string', value: '' }, { type: 'bool', value: true },
    { type: 'array', itemType: 'f32', value: [1, 2] }, { type: 'array', itemType: 'string', value: ['a'] }, { type: 'array', itemType: 'array', value: [] },
  ),
);

const metaKey = fc.constantFrom('general.architecture', 'general.type', 'adapter.type', 'adapter.lora.alpha', 'general.alignment', 'llama.attention.head_count', 'llama.block_count', 'general.file_type', 'split.count', 'split.no', 'llama.embedding_length');

/** ComfyUI-GGUF's real-shape entry for the merged tensor: the stored shape, others holding its values, ones that do not, and other types. */
const origShapeValue: fc.Arbitrary<MetaValue> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<MetaValue>(
    { type: 'array', itemType: 'i32', value: [OUT, IN] }, { type: 'array', itemType: 'i32', value: [IN, OUT] }, { type: 'array', itemType: 'i32', value: [OUT * IN] },
    { type: 'array', itemType: 'i32', value: [2, 3, IN] }, { type: 'array', itemType: 'i64', value: [BigInt(OUT * IN / 16), 16n] }, { type: 'array', itemType: 'i32', value: [OUT, IN + 1] },
    { type: 'array', itemType: 'i32', value: [-OUT, -IN] }, { type: 'array', itemType: 'i32', value: [1, 1, 1, 1, OUT * IN] }, { type: 'array', itemType: 'f32', value: [IN, OUT] },
  ) },
  { weight: 1, arbitrary: metaValue },
);

const file = fc.nat(10);
const tensor = fc.nat(8);

export const surfaceMutation: fc.Arbitrary<SurfaceMutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('flip' as const), file, at: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), file, at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('drop' as const), file }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('value' as const), file, tensor, index: fc.nat(100), value: fc.constantFrom(NaN, Infinity, -Infinity, 1e5, 65504, 70000, 1e38, 3.4e38, -0, 1e-40, 1e-8, 0) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('shape' as const), file, tensor, dim: fc.nat(3), value: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 7, 9, 16, 1024, 4096, 65536, 2 ** 31, 2 ** 40)), keepData: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gguf-type' as const), file, tensor, value: fc.constantFrom(0, 1, 2, 3, 6, 7, 8, 10, 12, 14, 15, 16, 17, 24, 26, 28, 30, 31, 39, 40, 1000, 2 ** 31) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gguf-offset' as const), file, tensor, value: fc.constantFrom(0, 1, 31, 32, 64, 96, 1 << 20, 2 ** 40, 2 ** 53 - 32) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gguf-ne' as const), file, tensor, ne: fc.array(fc.constantFrom(0, 1, 2, 3, 4, 6, 8, 16, 32, 256, 2 ** 20, 2 ** 32, 2 ** 52), { minLength: 0, maxLength: 5 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('gguf-meta' as const), file, key: metaKey, value: metaValue }) },
  // On the first file: a GGUF world's base.
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gguf-meta' as const), file: fc.constant(0), key: fc.constant('comfy.gguf.orig_shape.blk.0.ffn_up.weight'), value: origShapeValue }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gguf-align' as const), file, meta: fc.option(fc.constantFrom<MetaValue>({ type: 'u32', value: 0 }, { type: 'u32', value: 1 }, { type: 'u32', value: 3 }, { type: 'u32', value: 8 }, { type: 'u32', value: 64 }, { type: 'u32', value: 2 ** 31 }, { type: 'u64', value: 64n }, { type: 'string', value: '64' }), { nil: null }), layout: fc.constantFrom(1, 8, 32, 64) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gguf-count' as const), file, which: fc.constantFrom<'tensors' | 'kv'>('tensors', 'kv'), value: fc.constantFrom(0n, 1n, 3n, 9n, 100n, 1n << 20n, 1n << 32n, (1n << 63n) + 1n, (1n << 64n) - 1n) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gguf-version' as const), file, value: fc.constantFrom(0, 1, 2, 4, 2 ** 31) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('json' as const), file, pick: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }), value: weird }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('text' as const), file, at: fc.nat(), edit: textEdit }) },
);

export interface SurfaceCommand {
  command: 'merge' | 'dry-run' | 'inspect-base' | 'inspect-adapter';
  weight: number;
  /** `--dtype` of a merge, for the worlds whose truth follows it. */
  dtype?: OutDtype;
}

export const surfaceCommand = fc.record({
  command: fc.constantFrom<SurfaceCommand['command']>('merge', 'merge', 'merge', 'merge', 'dry-run', 'inspect-base', 'inspect-adapter'),
  weight: fc.constantFrom(1, 1, 0.5, -1, 2.5, 1e30, 40000),
  // A world whose truth follows bf16 only merges without --dtype where f16 or f32 is drawn.
  dtype: fc.constantFrom<OutDtype | undefined>(undefined, undefined, 'bf16', 'bf16', 'f16', 'f32'),
});

export interface SurfaceCase {
  world: SurfaceWorld;
  mutations: SurfaceMutation[];
  command: SurfaceCommand;
}

/** Cases of the worlds `only` names (all where undefined; see surfaceWorlds). */
export const surfaceCases = (only?: string): fc.Arbitrary<SurfaceCase> => fc
  .record({ world: surfaceWorlds(only), mutations: fc.array(surfaceMutation, { maxLength: 3 }), command: surfaceCommand })
  .map(({ world, mutations, command: { dtype, ...drawn } }) => {
    const command = world.mergeOnly ? { ...drawn, command: 'merge' as const } : drawn;
    return { world, mutations, command: (dtype ??= world.mergeDtype) && command.command === 'merge' && world.outDtypes?.includes(dtype) ? { ...command, dtype } : command };
  });

/** The worlds whose merges without --dtype quantize the merged weights again (fp8, nvfp4 and int8 codes and their scales). */
export const REQUANTIZING_WORLDS = ['comfy-quant', 'block-fp8', 'scaled-fp8', 'compressed-tensors', 'modelopt-fp8'];

/**
 * Those worlds' files merged as written, without --dtype: the codes and scales quantized anew, where
 * an encoder's rounding on ties or a scale taken from one row slab shows. Few of the mixed cases
 * reach them (a mutation or a --dtype comes first), so they are drawn here on their own too.
 */
export const requantizedCases = (worlds: string[]): fc.Arbitrary<SurfaceCase> => fc
  .record({ world: surfaceWorlds(worlds.join(',')), weight: fc.constantFrom(1, 1, 0.5, -1, 2.5) })
  .map(({ world, weight }) => ({ world, mutations: [], command: { command: 'merge' as const, weight } }));

// --- writing a case's files ----------------------------------------------------------------------------

function jsonText(value: unknown): string {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    // A nesting sentinel from `weird`; a later edit may land inside it and change its number.
    const nesting = Object.keys(o).length === 1 && typeof o.deep === 'number' && Number.isSafeInteger(o.deep) && o.deep >= 0 && o.deep <= MAX_NESTING;
    if (nesting) return '['.repeat(o.deep as number) + ']'.repeat(o.deep as number);
    // Python's json.dump writes a non-finite float so: NaN, Infinity, -Infinity.
    if (Object.keys(o).length === 1 && ['NaN', 'Infinity', '-Infinity'].includes(o.rawJson as string)) return o.rawJson as string;
    // A number as written (past 2⁵³ exactly, or `1e3`, which Python reads as a float).
    if (Object.keys(o).length === 1 && typeof o.rawJson === 'string' && /^-?[0-9][0-9.eE+-]*$/.test(o.rawJson)) return o.rawJson;
    return `{${Object.entries(o).map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`;
  }
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  if (typeof value === 'number' && !Number.isFinite(value)) return 'null';
  return JSON.stringify(value) ?? 'null';
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Sets a value inside a JSON document along `pick` (indices into the keys at each level). */
function setJson(doc: unknown, pick: number[], value: unknown): unknown {
  if (doc === null || typeof doc !== 'object') return value;
  const container = doc as Record<string, unknown>;
  const keys = Object.keys(container);
  if (keys.length === 0) return value;
  const key = keys[pick[0] % keys.length];
  container[key] = pick.length > 1 ? setJson(container[key], pick.slice(1), value) : value;
  return doc;
}

/** JSON text as a U8 tensor holds it. */
const textBytes = (text: string) => new TextEncoder().encode(text);

/** A document's JSON, or undefined when the text is none. */
function parsedJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The JSON documents inside a safetensors file that JSON edits reach: `__metadata__` entries and U8
 * tensors (TEXT_TENSOR) holding a JSON object. Edited as values and written once at the end (as
 * JSON files are), so that a deep nesting an edit wrote is never parsed again.
 */
class EmbeddedJson {
  private readonly targets: { entry?: string; tensor?: FixtureTensor; doc: unknown }[] = [];

  constructor(private readonly spec: Extract<SpecFile, { kind: 'safetensors' }>) {
    const isObject = (v: unknown) => typeof v === 'object' && v !== null;
    for (const [entry, text] of Object.entries(spec.metadata ?? {})) {
      const doc = parsedJson(text);
      if (isObject(doc)) this.targets.push({ entry, doc });
    }
    for (const tensor of spec.tensors) {
      if (!TEXT_TENSOR.test(tensor.name) || tensor.dtype !== 'U8') continue;
      const doc = parsedJson(new TextDecoder().decode(Uint8Array.from(tensor.data)));
      if (isObject(doc)) this.targets.push({ tensor, doc });
    }
  }

  /** The first pick chooses the document; with no pick left, the whole document is replaced. */
  edit(pick: number[], value: unknown): void {
    if (!this.targets.length) return;
    const target = this.targets[pick[0] % this.targets.length];
    target.doc = pick.length > 1 ? setJson(target.doc, pick.slice(1), value) : value;
  }

  write(): void {
    for (const { entry, tensor, doc } of this.targets) {
      if (entry !== undefined) this.spec.metadata![entry] = jsonText(doc);
      if (tensor) {
        tensor.data = textBytes(jsonText(doc));
        tensor.shape = [tensor.data.length];
      }
    }
  }
}

const GGUF_VALUES_PER_BYTE: Record<string, number> = { F32: 0.25, F16: 0.5, BF16: 0.5 };

/**
 * Bytes of `n` values of a GGUF type the plain readers decode (floats, and the block types with a
 * reference dequantizer in the test helpers: not IQ1_*, IQ2_*, IQ3_*, I32), or NaN for a type they do not
 * read or values that are not whole blocks.
 */
export function ggufDecodedBytes(type: string, n: number): number {
  if (GGUF_VALUES_PER_BYTE[type]) return n / GGUF_VALUES_PER_BYTE[type];
  const block = GGML_BLOCK[type];
  if (!block || /^(IQ1_|IQ2_|IQ3_|I32$)/.test(type) || n % block[0] !== 0) return NaN;
  return (n / block[0]) * block[1];
}

// ggml's types that the test helpers' tables leave out, as [values, bytes] per block (ggml-common.h's
// block structs: Q8_1 d, s and 32 int8; Q8_K f32 d, 256 int8, 16 int16 sums; IQ1_S d, 32 qs, 16 qh;
// IQ1_M 32 qs, 16 qh, 8 scales).
const GGML_MORE_BLOCKS: Record<string, [number, number]> = {
  I8: [1, 1], I16: [1, 2], I64: [1, 8], F64: [1, 8], Q8_1: [32, 36], Q8_K: [256, 292], IQ1_S: [256, 50], IQ1_M: [256, 56],
};

/**
 * Bytes `n` values of a GGUF type take in the file, whether or not the test helpers decode it, or
 * NaN for a type ggml does not define or values that are not whole blocks. The layout rules count
 * these: a norm's F32 retyped I32 keeps its size, so the file is laid out as gguf.cpp wants.
 */
function ggufStoredBytes(type: string, n: number): number {
  const block = GGML_BLOCK[type] ?? GGML_MORE_BLOCKS[type];
  if (!block || n % block[0] !== 0) return NaN;
  return (n / block[0]) * block[1];
}

/** Every file of a case (path → bytes), mutations applied; a dropped file is absent. */
export function writeSurfaceCase(c: SurfaceCase): Map<string, Uint8Array> {
  const specs = Object.entries(c.world.files).map(([path, spec]) => [path, clone(spec)] as [string, SpecFile]);
  const dropped = new Set<number>();
  const patches: { index: number; apply: (b: Uint8Array) => Uint8Array }[] = [];
  const embedded = new Map<number, EmbeddedJson>();
  for (const m of c.mutations) {
    const index = m.file % specs.length;
    const spec = specs[index][1];
    switch (m.op) {
      case 'drop':
        // Never the base or adapter itself (a missing input is a plain usage error).
        if (!['base', 'adapter'].some((k) => specs[index][0] === (c.world as unknown as Record<string, string>)[k])) dropped.add(index);
        break;
      case 'flip':
        patches.push({ index, apply: (b) => { const out = b.slice(); for (const at of m.at) if (out.length) out[at % out.length] ^= 1 << (at % 8); return out; } });
        break;
      case 'truncate':
        patches.push({ index, apply: (b) => b.subarray(0, m.at % (b.length + 1)) });
        break;
      case 'value': {
        if (spec.kind === 'safetensors' && spec.tensors.length) {
          const t = spec.tensors[m.tensor % spec.tensors.length];
          if (!(t.data instanceof Uint8Array) && ['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) {
            const data = Array.from(t.data);
            if (data.length) data[m.index % data.length] = m.value;
            t.data = data;
          }
        } else if (spec.kind === 'gguf' && spec.build.tensors?.length) {
          const t = spec.build.tensors[m.tensor % spec.build.tensors.length];
          const type = typeof t.type === 'string' ? t.type : typeName(t.type);
          if (GGUF_VALUES_PER_BYTE[type]) {
            const vals = Array.from(tensorValues(type, t.data));
            if (vals.length) vals[m.index % vals.length] = m.value;
            t.data = tensorData(type, vals);
          }
        }
        break;
      }
      case 'shape': {
        if (spec.kind === 'safetensors' && spec.tensors.length) {
          const t = spec.tensors[m.tensor % spec.tensors.length];
          const shape = t.shape.length ? t.shape.slice() : [1];
          shape[m.dim % shape.length] = m.value;
          const n = shape.reduce((a, b) => a * b, 1);
          // Either the same bytes under a wrong shape, or (small enough) bytes that fit the new shape.
          if (!m.keepData && n <= 4096 && ['F32', 'F16', 'BF16'].includes(t.dtype)) t.data = Array.from({ length: n }, (_, i) => ((i * 37) % 17) / 17 - 0.5);
          t.shape = shape;
        } else if (spec.kind === 'gguf' && spec.build.tensors?.length) {
          const t = spec.build.tensors[m.tensor % spec.build.tensors.length];
          const ne = t.ne.slice();
          ne[m.dim % ne.length] = m.value;
          t.ne = ne;
        }
        break;
      }
      case 'gguf-type':
        if (spec.kind === 'gguf' && spec.build.tensors?.length) spec.build.tensors[m.tensor % spec.build.tensors.length].type = m.value;
        break;
      case 'gguf-offset':
        if (spec.kind === 'gguf' && spec.build.tensors?.length) spec.build.tensors[m.tensor % spec.build.tensors.length].offset = m.value;
        break;
      case 'gguf-ne':
        if (spec.kind === 'gguf' && spec.build.tensors?.length) spec.build.tensors[m.tensor % spec.build.tensors.length].ne = m.ne;
        break;
      case 'gguf-meta':
        if (spec.kind === 'gguf') {
          const meta = (spec.build.metadata ?? []).filter(([k]) => k !== m.key);
          spec.build.metadata = [...meta, [m.key, m.value]];
        }
        break;
      case 'gguf-align':
        if (spec.kind === 'gguf') {
          const meta = (spec.build.metadata ?? []).filter(([k]) => k !== 'general.alignment');
          spec.build.metadata = m.meta ? [...meta, ['general.alignment', m.meta]] : meta;
          spec.build.alignment = m.layout;
        }
        break;
      case 'gguf-count':
        if (spec.kind === 'gguf') patches.push({ index, apply: (b) => { const out = b.slice(); if (out.length >= 24) new DataView(out.buffer).setBigUint64(m.which === 'tensors' ? 8 : 16, m.value, true); return out; } });
        break;
      case 'gguf-version':
        if (spec.kind === 'gguf') spec.build.version = m.value;
        break;
      case 'text':
        if (spec.kind !== 'gguf') patches.push({ index, apply: (b) => editedText(b, spec.kind === 'safetensors', m.at, m.edit) });
        break;
      case 'json':
        if (spec.kind === 'json') spec.value = setJson(spec.value, m.pick, m.value);
        else if (spec.kind === 'safetensors') {
          if (!embedded.has(index)) embedded.set(index, new EmbeddedJson(spec));
          embedded.get(index)!.edit(m.pick, m.value);
        }
        break;
    }
  }
  for (const docs of embedded.values()) docs.write();
  const files = new Map<string, Uint8Array>();
  specs.forEach(([path, spec], index) => {
    if (dropped.has(index)) return;
    let bytes: Uint8Array;
    if (spec.kind === 'safetensors') bytes = buildSafetensors(spec.tensors, spec.metadata);
    else if (spec.kind === 'gguf') bytes = buildGguf(spec.build);
    else bytes = new TextEncoder().encode(jsonText(spec.value));
    for (const p of patches) if (p.index === index) bytes = p.apply(bytes);
    files.set(path, bytes);
  });
  return files;
}

// --- decoding, independently of the library ------------------------------------------------------------

const componentOf = (path: string) => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');

/**
 * Decoded tensors of a set of files keyed `component/name`, where the component is the file's
 * folder (`''` for a file at the top), or null when a file does not decode cleanly with the plain
 * readers.
 */
export function decodeFiles(files: Map<string, Uint8Array>): Decoded | null {
  const tensors: Decoded['tensors'] = new Map();
  const json = new Map<string, string>();
  const gguf: Decoded['gguf'] = new Map();
  const headers: Decoded['headers'] = new Map();
  for (const [path, bytes] of files) {
    const component = componentOf(path);
    try {
      if (path.endsWith('.json')) {
        // Compared as text: the structure check needs no more.
        json.set(path, new TextDecoder().decode(bytes));
      } else if (path.endsWith('.safetensors')) {
        // The format's header is UTF-8 JSON (safetensors' serde_json refuses other bytes); the plain
        // reader's decoder would replace them and read on.
        if (bytes.byteLength >= 8) new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true))));
        const file = decodeSafetensors(bytes);
        if (file.dataEnd !== bytes.byteLength) return null;
        headers.set(path, file.metadata);
        for (const [name, t] of file.tensors) {
          if (t.bytes.byteLength !== t.shape.reduce((a, b) => a * b, 1) * (STORED_DTYPE_BYTES[t.dtype] ?? NaN)) return null;
          tensors.set(`${component}/${name}`, t);
        }
      } else if (path.endsWith('.gguf')) {
        if (!saneGgufHeader(bytes)) return null;
        const g = readGguf(bytes);
        gguf.set(path, g.metadata);
        for (const t of g.tensors) {
          const type = typeName(t.typeId);
          const n = t.ne.reduce((a, b) => a * b, 1);
          if (t.data.byteLength !== ggufDecodedBytes(type, n)) return null;
          // Torch order: the reverse of ne.
          tensors.set(`${component}/${t.name}`, { dtype: type, shape: t.ne.slice().reverse(), values: tensorValues(type, t.data), bytes: t.data });
        }
      }
    } catch {
      return null;
    }
  }
  return { tensors, json, gguf, headers };
}

/**
 * Whether a GGUF header is small and well-formed enough for the plain reader of gguf-builder.ts
 * (which trusts counts and lengths): at most 128 tensors (an 8-block llama GGUF has 75) and 64 KV pairs, arrays of at most 4096
 * scalars, every length inside the file.
 */
function saneGgufHeader(bytes: Uint8Array): boolean {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 24;
  const fits = (n: number) => at + n <= bytes.byteLength;
  if (!fits(0) || dv.getUint32(4, true) !== 3) return false;
  const nTensors = dv.getBigUint64(8, true), nKv = dv.getBigUint64(16, true);
  // gguf-type-mixes' 80-block models hold up to 724 tensors; no count mutation draws 129 to 1024.
  if (nTensors > 1024n || nKv > 64n) return false;
  const SIZE: Record<number, number> = { 0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8 };
  const string = () => {
    if (!fits(8)) return false;
    const n = dv.getBigUint64(at, true);
    if (n > BigInt(bytes.byteLength)) return false;
    at += 8 + Number(n);
    return fits(0);
  };
  const value = (type: number): boolean => (type === 8 ? string() : SIZE[type] !== undefined && fits(SIZE[type]) && ((at += SIZE[type]), true));
  for (let i = 0n; i < nKv; i++) {
    if (!string() || !fits(4)) return false;
    const type = dv.getUint32(at, true);
    at += 4;
    if (type === 9) {
      if (!fits(12)) return false;
      const itemType = dv.getUint32(at, true);
      const n = dv.getBigUint64(at + 4, true);
      at += 12;
      if (n > 4096n || itemType === 9) return false;
      for (let k = 0n; k < n; k++) if (!value(itemType)) return false;
    } else if (!value(type)) return false;
  }
  for (let i = 0n; i < nTensors; i++) {
    if (!string() || !fits(4)) return false;
    const dims = dv.getUint32(at, true);
    at += 4;
    if (dims > 4 || !fits(dims * 8 + 12)) return false;
    for (let k = 0; k < dims; k++) if (dv.getBigUint64(at + k * 8, true) > 1n << 20n) return false;
    at += dims * 8 + 12;
  }
  return true;
}

/**
 * Why a GGUF file breaks the format's layout rules (gguf.cpp's, which llama.cpp enforces), or
 * null: general.alignment a u32 power of two; tensors in order, each at the next offset padded to
 * the alignment; every tensor's data inside the file.
 */
function ggufLayoutProblem(bytes: Uint8Array): string | null {
  const g = readGguf(bytes);
  const kv = g.metadata.get('general.alignment');
  if (kv && (kv.type !== 4 || (kv.value as number) === 0 || ((kv.value as number) & ((kv.value as number) - 1)) !== 0)) return `general.alignment ${String(kv.value)} (type ${kv.type})`;
  const alignment = (kv?.value as number | undefined) ?? 32;
  let expected = 0;
  for (const t of g.tensors) {
    if (t.offset !== expected) return `${t.name} at offset ${t.offset}, expected ${expected}`;
    const type = typeName(t.typeId);
    const n = t.ne.reduce((a, b) => a * b, 1);
    const size = ggufStoredBytes(type, n);
    if (Number.isNaN(size)) return `${t.name}: type ${type} is not ggml's, or its ${n} values are not whole blocks`;
    if (g.dataStart + t.offset + size > bytes.byteLength) return `${t.name} ends past the file`;
    expected = t.offset + Math.ceil(size / alignment) * alignment;
  }
  // Bytes past the last tensor's padding are read as llama.cpp reads them, not at all (a file laid
  // out at 32 whose general.alignment says 8 starts its data earlier and ends with them).
  return null;
}

/** GGUF metadata as comparable text, without the keys a world's truth reads itself. */
function metadataText(meta: Map<string, { type: number; value: unknown }>, except: string[]): string {
  return JSON.stringify([...meta].filter(([k]) => !except.includes(k)).map(([k, v]) => [k, v.type, String(v.value)]));
}

/** Keys of GGUF metadata that the truth of a world reads from the file (so edits to them are followed). */
const READ_BY_TRUTH = ['adapter.lora.alpha', 'general.alignment', 'general.architecture', 'comfy.gguf.orig_shape.blk.0.ffn_up.weight'];

/** Top-level config fields that the truth of a world reads from the file (so edits to them are followed). */
const CONFIG_READ_BY_TRUTH = ['r', 'alpha', 'lora_alpha', 'use_rslora', 'quantization_config', 'quantization', 'tie_word_embeddings', 'in_channels', 'out_channels'];

/** safetensors `__metadata__` entries that the truth of a world reads (so edits to them are followed). */
const HEADER_READ_BY_TRUTH = ['_quantization_metadata'];

/** Tensors holding JSON text that the truth of a world reads: their length follows the text. */
const TEXT_TENSOR = /\.comfy_quant$/;

/** A JSON file's text without the fields the truth reads (the text itself when it is not an object). */
function jsonStructure(text: string, reads: string[]): string {
  try {
    const value = JSON.parse(text) as unknown;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return text;
    for (const key of [...CONFIG_READ_BY_TRUTH, ...reads]) delete (value as Record<string, unknown>)[key];
    return JSON.stringify(value);
  } catch {
    return text;
  }
}

/** Structure of decoded files: names, dtypes, shapes, JSON and headers, for comparing with the unmutated world. */
function structure(d: Decoded, reads: string[] = []): string {
  const byPath = ([a]: [string, unknown], [b]: [string, unknown]) => (a < b ? -1 : 1);
  const json = [...d.json].map(([path, text]): [string, string] => [path, jsonStructure(text, reads)]);
  const headers = [...d.headers].map(([path, h]): [string, string] => [path, JSON.stringify(Object.entries(h).filter(([k]) => !HEADER_READ_BY_TRUTH.includes(k)).sort())]);
  const tensors = [...d.tensors].map(([k, t]) => [k, t.dtype, TEXT_TENSOR.test(k) ? t.shape.length : t.shape]).sort();
  return JSON.stringify([tensors, json.sort(byPath), headers.sort(byPath)]);
}

/**
 * The scale of a PEFT config's fields as PEFT computes it (α/r, α/√r with use_rslora), or a
 * Truth when the fields are outside this reference (not numbers) or break a rule (r not the
 * factors' rank `rank` when `rankMustMatch`; a non-finite scale).
 */
export function configScale(d: Decoded, path: string, alphaKey: 'alpha' | 'lora_alpha', rank: number, rankMustMatch: boolean): number | Truth {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(d.json.get(path)!) as Record<string, unknown>;
  } catch {
    return { kind: 'unknown', why: `${path} is not JSON` };
  }
  const { r, use_rslora: rslora } = config;
  const alpha = config[alphaKey];
  if (typeof r !== 'number' || typeof alpha !== 'number' || (rslora !== undefined && typeof rslora !== 'boolean')) return { kind: 'unknown', why: `${path}: r, ${alphaKey} or use_rslora of another type` };
  if (rankMustMatch && r !== rank) return { kind: 'invalid', why: `${path}: r = ${r}, the factors' rank is ${rank}` };
  const scale = alpha / (rslora ? Math.sqrt(r) : r);
  if (!Number.isFinite(scale)) return { kind: 'invalid', why: `${path}: scale ${alpha}/${r}` };
  return scale;
}

/**
 * JSON files loramerge always reads, as Python's json does (strict UTF-8): adapter configs, ModelOpt's hf_quant_config.json,
 * indexes, and the base folder's own config.json. Others may not be read (a pipeline component's
 * config.json is copied as it is; GPTQ's quantize_config.json is not needed beside config.json's
 * quantization_config), so their bytes decide nothing here.
 */
const STRICT_JSON = /(?:^|\/)(?:adapter_config|model_index|hf_quant_config)\.json$|\.index\.json$/;

/** Whether two decodings hold the same tensors (bytes), JSON text and headers. */
function sameDecoded(a: Decoded, b: Decoded): boolean {
  if (a.tensors.size !== b.tensors.size || JSON.stringify([...a.headers]) !== JSON.stringify([...b.headers]) || JSON.stringify([...a.json]) !== JSON.stringify([...b.json])) return false;
  for (const [key, t] of a.tensors) {
    const u = b.tensors.get(key);
    if (!u || t.dtype !== u.dtype || !Buffer.from(t.bytes).equals(Buffer.from(u.bytes))) return false;
  }
  return true;
}

/**
 * The truth of a mutated case: `unknown` unless every file decodes with the plain readers and has
 * the unmutated world's structure (GGUF headers byte for byte); then the world's rule on the
 * decoded values. A non-finite or overflowing exact value makes the merge `invalid`.
 */
export function surfaceTruth(c: SurfaceCase, files: Map<string, Uint8Array>): Truth {
  const clean = writeSurfaceCase({ ...c, mutations: [] });
  if (files.size !== clean.size) return { kind: 'unknown', why: 'a file was dropped' };
  for (const [path, bytes] of files) {
    const strict = STRICT_JSON.test(path) || path === `${c.world.base}/config.json`;
    const problem = path.endsWith('.safetensors') ? safetensorsHeaderProblem(bytes) : strict && !wellFormedUtf8(bytes) ? 'is not UTF-8' : null;
    if (problem) return { kind: 'invalid', why: `${path}: ${problem}` };
  }
  for (const [path, bytes] of files) {
    if (!path.endsWith('.gguf')) continue;
    if (!saneGgufHeader(bytes)) return { kind: 'unknown', why: `${path}: a GGUF header the plain reader cannot take` };
    let problem: string | null;
    try {
      problem = ggufLayoutProblem(bytes);
    } catch {
      return { kind: 'unknown', why: `${path}: a GGUF header the plain reader cannot take` };
    }
    if (problem) return { kind: 'invalid', why: `${path}: ${problem}` };
    // llama.cpp (gguf_get_val_str) and ComfyUI-GGUF's loader (a TypeError, "Bad type for GGUF
    // general.architecture key") read the architecture as a string only.
    const arch = readGguf(bytes).metadata.get('general.architecture');
    if (arch && arch.type !== 8) return { kind: 'invalid', why: `${path}: general.architecture of GGUF type ${arch.type}` };
  }
  const d = decodeFiles(files);
  const original = decodeFiles(clean)!;
  if (!d) return { kind: 'unknown', why: 'a file does not decode with the plain readers' };
  if (structure(d, c.world.configReads) !== structure(original, c.world.configReads)) return { kind: 'unknown', why: 'structure changed' };
  for (const [path, meta] of d.gguf) {
    if (metadataText(meta, READ_BY_TRUTH) !== metadataText(original.gguf.get(path)!, READ_BY_TRUTH)) return { kind: 'unknown', why: `${path}: metadata changed` };
  }
  const truth = c.world.truth(d, c.command.weight, c.command.dtype);
  // A mutation may make another input fail first: the refusal then need not name what the world made hostile.
  if (truth.kind === 'invalid' && truth.names !== undefined && !sameDecoded(d, original)) return { kind: 'invalid', why: truth.why };
  if (truth.kind !== 'expected') return truth;
  for (const [key, e] of truth.merged) {
    const dtype = e.dtype ?? d.tensors.get(key)!.dtype;
    // A value past the largest finite one that still rounds to it (65504 + 15 in f16) is written.
    const overflows = ['F32', 'F16', 'BF16'].includes(dtype) ? (x: number) => !Number.isFinite(roundForDType(x, dtype as FixtureDType)) : (x: number) => Math.abs(x) > 3.4028234663852886e38;
    if (e.copiedNonFinite) continue;
    if (e.values.some((x) => !Number.isFinite(x) || overflows(x))) return { kind: 'invalid', why: `${key}: a non-finite or overflowing merged value` };
    if (!Number.isFinite(e.magnitude)) return { kind: 'invalid', why: `${key}: non-finite terms` };
  }
  return truth;
}

