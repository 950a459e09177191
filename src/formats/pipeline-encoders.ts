/**
 * Which CLIP each CLIP text encoder folder of a diffusers pipeline holds. model_index.json gives
 * the folders only `CLIPTextModel` or `CLIPTextModelWithProjection`, for CLIP-L, CLIP-G and CLIP-H
 * alike, and their order does not say either (HunyuanVideo's `text_encoder_2` is CLIP-L; Stable
 * Cascade's only `text_encoder` is CLIP-G). So each folder's config.json decides: `hidden_size` 768
 * is CLIP-L, 1280 CLIP-G (OpenCLIP bigG), 1024 CLIP-H (OpenCLIP ViT-H); where it says none of these,
 * `projection_dim` and `num_hidden_layers` do. A folder without a deciding config (a
 * transformer-only download lists its text encoders without their files) goes by what its
 * pipeline's class (model_index.json `_class_name`) runs there (PIPELINE_CLIPS), and only where
 * that class is not known here by its position (the first CLIP-L, a later one CLIP-G, as SDXL and
 * SD3 number them), which the caller is told. Two folders that come out the same CLIP cannot both
 * be it: neither is given a kind, and why is kept for the modules that name one.
 */
import type { EncoderKind } from './base-components.js';

/** The model_index.json classes whose folder holds a transformers CLIP text model. */
export const CLIP_TEXT_CLASS = /^CLIPTextModel(WithProjection)?$/;

const KIND_NAMES: Readonly<Record<ClipKind, string>> = { clip_l: 'CLIP-L', clip_g: 'CLIP-G', openclip: 'CLIP-H' };
type ClipKind = Extract<EncoderKind, 'clip_l' | 'clip_g' | 'openclip'>;

/**
 * What one pipeline class runs in its CLIP folders, by folder: a kind, or, for a class that runs
 * models of two CLIPs (StableDiffusionPipeline: SD1.x's CLIP-L, SD2.x's CLIP-H), the kind its
 * denoiser's config.json `cross_attention_dim` (the width of the text states the UNet attends to)
 * says.
 */
type PipelineClips = Readonly<Record<string, ClipKind | { crossAttentionDim: Readonly<Record<number, ClipKind>> }>>;

/** SD1.x's openai/clip-vit-large-patch14 (768) or SD2.x's OpenCLIP ViT-H/14 (1024) in text_encoder. */
const SD: PipelineClips = { text_encoder: { crossAttentionDim: { 768: 'clip_l', 1024: 'openclip' } } };
/** SDXL's and SD3's clip-vit-large-patch14 first, laion's CLIP-ViT-bigG-14 second (SD3's T5 third is no CLIP). */
const L_THEN_G: PipelineClips = { text_encoder: 'clip_l', text_encoder_2: 'clip_g' };
/** FLUX.1's clip-vit-large-patch14 in text_encoder (its T5 in text_encoder_2). */
const FLUX: PipelineClips = { text_encoder: 'clip_l' };
/** Stable Cascade's stages B and C condition on CLIP-ViT-bigG-14's text model, their only text encoder. */
const CASCADE: PipelineClips = { text_encoder: 'clip_g' };

/**
 * Which CLIP each diffusers pipeline class runs in each CLIP folder, as the pipeline's definition
 * in diffusers says (its __init__'s text encoder classes, and the checkpoints its conversion script
 * and docs name): one entry per `_class_name`. Consulted only for a folder whose config.json does
 * not say. The ControlNet, PAG and T2I-Adapter pipelines of SD, SDXL, SD3 and FLUX.1 take their
 * base model's text encoders under the same folder names, so they share its entry. The combined
 * pipelines (StableCascadeCombinedPipeline, Kandinsky's) are not listed: they hold a CLIP in
 * `prior_text_encoder/`, a folder name not routed as a text encoder here (a second copy of the one in
 * `text_encoder/` for Stable Cascade; Kandinsky's only CLIP, the prior's), and a module naming a CLIP
 * by kind is refused on them, saying which (base-model.ts openPipeline, combinedPrior).
 */
const PIPELINE_CLIPS: Readonly<Record<string, PipelineClips>> = {
  StableDiffusionPipeline: SD, StableDiffusionImg2ImgPipeline: SD, StableDiffusionInpaintPipeline: SD,
  StableDiffusionControlNetPipeline: SD, StableDiffusionControlNetImg2ImgPipeline: SD, StableDiffusionControlNetInpaintPipeline: SD,
  StableDiffusionPAGPipeline: SD, StableDiffusionPAGImg2ImgPipeline: SD, StableDiffusionPAGInpaintPipeline: SD,
  StableDiffusionControlNetPAGPipeline: SD, StableDiffusionControlNetPAGInpaintPipeline: SD, StableDiffusionAdapterPipeline: SD,
  StableDiffusionXLPipeline: L_THEN_G, StableDiffusionXLImg2ImgPipeline: L_THEN_G, StableDiffusionXLInpaintPipeline: L_THEN_G,
  StableDiffusionXLControlNetPipeline: L_THEN_G, StableDiffusionXLControlNetImg2ImgPipeline: L_THEN_G, StableDiffusionXLControlNetInpaintPipeline: L_THEN_G,
  StableDiffusionXLControlNetUnionPipeline: L_THEN_G, StableDiffusionXLControlNetUnionImg2ImgPipeline: L_THEN_G, StableDiffusionXLControlNetUnionInpaintPipeline: L_THEN_G,
  StableDiffusionXLPAGPipeline: L_THEN_G, StableDiffusionXLPAGImg2ImgPipeline: L_THEN_G, StableDiffusionXLPAGInpaintPipeline: L_THEN_G,
  StableDiffusionXLControlNetPAGPipeline: L_THEN_G, StableDiffusionXLControlNetPAGImg2ImgPipeline: L_THEN_G, StableDiffusionXLAdapterPipeline: L_THEN_G,
  StableDiffusion3Pipeline: L_THEN_G, StableDiffusion3Img2ImgPipeline: L_THEN_G, StableDiffusion3InpaintPipeline: L_THEN_G,
  StableDiffusion3ControlNetPipeline: L_THEN_G, StableDiffusion3ControlNetInpaintingPipeline: L_THEN_G,
  StableDiffusion3PAGPipeline: L_THEN_G, StableDiffusion3PAGImg2ImgPipeline: L_THEN_G,
  FluxPipeline: FLUX, FluxImg2ImgPipeline: FLUX, FluxInpaintPipeline: FLUX, FluxFillPipeline: FLUX,
  FluxControlPipeline: FLUX, FluxControlImg2ImgPipeline: FLUX, FluxControlInpaintPipeline: FLUX,
  FluxControlNetPipeline: FLUX, FluxControlNetImg2ImgPipeline: FLUX, FluxControlNetInpaintPipeline: FLUX,
  FluxKontextPipeline: FLUX, FluxKontextInpaintPipeline: FLUX,
  // Its Llama (LlamaModel) first, its clip-vit-large-patch14 second.
  HunyuanVideoPipeline: { text_encoder_2: 'clip_l' },
  StableCascadePriorPipeline: CASCADE, StableCascadeDecoderPipeline: CASCADE,
  // Kandinsky 2.1's prior runs CLIP ViT-L/14 (its conversion reads ViT-L-14's embedding statistics),
  // 2.2's CLIP-ViT-G (the image encoder 2.2 switched to, whose embeddings its prior predicts).
  KandinskyPriorPipeline: { text_encoder: 'clip_l' },
  KandinskyV22PriorPipeline: { text_encoder: 'clip_g' }, KandinskyV22PriorEmb2EmbPipeline: { text_encoder: 'clip_g' },
};

/** Whether which CLIP `pipelineClass` runs needs its denoiser's config.json (pipelineClip's `denoiserConfig`). */
export function pipelineClipNeedsDenoiser(pipelineClass: string | undefined): boolean {
  const entry = pipelineClass !== undefined && Object.hasOwn(PIPELINE_CLIPS, pipelineClass) ? PIPELINE_CLIPS[pipelineClass] : undefined;
  return entry !== undefined && Object.values(entry).some((v) => typeof v === 'object');
}

/**
 * Which CLIP `pipelineClass` runs in `folder` (PIPELINE_CLIPS), and what said so; for a class not
 * known here, a folder it runs no CLIP in, or a denoiser config.json that does not say, why not
 * (`silence`, for the caller to say that the folder went by its position instead).
 */
export function pipelineClip(pipelineClass: string | undefined, folder: string, denoiserConfig?: unknown): { encoder: ClipKind; by: string; silence?: undefined } | { encoder?: undefined; by?: undefined; silence: string } {
  const unknown = { silence: `its pipeline's class${pipelineClass === undefined ? ' is not given' : `, ${pipelineClass}, is none whose CLIP folders are known here`}` };
  if (pipelineClass === undefined || !Object.hasOwn(PIPELINE_CLIPS, pipelineClass)) return unknown;
  const entry = PIPELINE_CLIPS[pipelineClass];
  const held = Object.hasOwn(entry, folder) ? entry[folder] : undefined;
  if (typeof held === 'string') return { encoder: held, by: `its pipeline's class (model_index.json's _class_name ${pipelineClass})` };
  if (held === undefined) return { silence: `its pipeline's class, ${pipelineClass}, runs no CLIP known here in ${folder}` };
  const dim = typeof denoiserConfig === 'object' && denoiserConfig !== null ? (denoiserConfig as Record<string, unknown>).cross_attention_dim : undefined;
  if (typeof dim === 'number' && Object.hasOwn(held.crossAttentionDim, dim)) {
    return { encoder: held.crossAttentionDim[dim], by: `its pipeline's class (model_index.json's _class_name ${pipelineClass}) and unet/config.json's cross_attention_dim ${dim}` };
  }
  const dims = Object.entries(held.crossAttentionDim).map(([d, kind]) => `${d} ${KIND_NAMES[kind]}`).join(', ');
  return { silence: `its pipeline's class, ${pipelineClass}, runs the CLIP its unet/config.json's cross_attention_dim says (${dims}), and ${typeof dim === 'number' ? `that says ${dim}` : 'no readable unet/config.json says one'}` };
}

/** The config.json values of each CLIP's text model (openai/clip-vit-large-patch14, laion bigG and ViT-H). */
const SIGNS: Readonly<Record<'hidden_size' | 'projection_dim' | 'num_hidden_layers', Readonly<Record<number, ClipKind>>>> = {
  hidden_size: { 768: 'clip_l', 1280: 'clip_g', 1024: 'openclip' },
  projection_dim: { 768: 'clip_l', 1280: 'clip_g', 1024: 'openclip' },
  num_hidden_layers: { 12: 'clip_l', 32: 'clip_g', 24: 'openclip' },
};

/** A CLIP text encoder folder of a pipeline, as the caller found it. */
export interface ClipFolder {
  folder: string;
  /** 1 for `text_encoder`, 2 for `text_encoder_2`, … */
  ordinal: number;
  /** Its parsed config.json, when the folder has one. */
  config?: unknown;
  /** What its pipeline's class runs there (pipelineClip), or why that does not say. */
  byClass?: ReturnType<typeof pipelineClip>;
}

/**
 * What a folder was found to hold: a kind, or why it cannot be told. `byPosition`: the kind was
 * judged by the folder's position alone (no config.json says it, nor a known pipeline class), and
 * how to say so.
 */
export type ClipIdentity = { encoder: ClipKind; doubt?: undefined; byPosition?: string } | { encoder?: undefined; doubt: string; byPosition?: undefined };

/** The kind of each CLIP folder (by folder name), or why it cannot be told. */
export function identifyClipFolders(folders: readonly ClipFolder[]): Map<string, ClipIdentity> {
  const found = new Map<string, { identity: ClipIdentity; by: string }>();
  for (const f of folders) found.set(f.folder, identify(f));
  // Two folders of one kind: a config and a position (or two configs) that cannot both be right.
  for (const [folder, { identity, by }] of found) {
    if (!identity.encoder) continue;
    const twins = [...found].filter(([other, o]) => other !== folder && o.identity.encoder === identity.encoder);
    if (twins.length === 0) continue;
    const all = [[folder, by], ...twins.map(([other, o]) => [other, o.by])];
    const doubt = `${all.map(([f]) => f).join(' and ')} both read as ${KIND_NAMES[identity.encoder]} (${all.map(([f, b]) => `${f} by ${b}`).join('; ')}), so which holds which CLIP cannot be told; give each CLIP folder the config.json its model was saved with`;
    for (const [f] of all) found.get(f)!.identity = { doubt };
  }
  return new Map([...found].map(([f, { identity }]) => [f, identity]));
}

function identify(f: ClipFolder): { identity: ClipIdentity; by: string } {
  const config = typeof f.config === 'object' && f.config !== null && !Array.isArray(f.config) ? f.config as Record<string, unknown> : undefined;
  // Where no config.json decides: the pipeline's class, else the position.
  const positioned: ClipKind = f.ordinal === 1 ? 'clip_l' : 'clip_g';
  const byClass = f.byClass?.encoder ? f.byClass : undefined;
  const fallback = byClass ?? { encoder: positioned, by: `its position (${config ? 'its config.json naming no CLIP' : 'no config.json'})` };
  const fallbackIdentity = (): ClipIdentity => byClass ? { encoder: byClass.encoder } : {
    encoder: positioned,
    byPosition: `${config ? 'its config.json names no CLIP' : 'it has no config.json'} and ${f.byClass?.silence ?? 'its pipeline\'s class is not given'}, so it is taken to hold ${KIND_NAMES[positioned]} by its position, as SDXL and SD3 number their CLIPs`,
  };
  const sign = (field: keyof typeof SIGNS): ClipKind | undefined => {
    const v = config?.[field];
    return typeof v === 'number' && Object.hasOwn(SIGNS[field], v) ? SIGNS[field][v] : undefined;
  };
  const hidden = sign('hidden_size');
  if (hidden) return { identity: { encoder: hidden }, by: `its config.json's hidden_size ${String(config!.hidden_size)}` };
  // hidden_size absent or of no known CLIP (a tiny test model): the other two break the tie.
  const votes = (['projection_dim', 'num_hidden_layers'] as const).flatMap((field) => {
    const kind = sign(field);
    return kind ? [{ field, kind }] : [];
  });
  const kinds = [...new Set(votes.map((v) => v.kind))];
  if (kinds.length === 1) return { identity: { encoder: kinds[0] }, by: `its config.json's ${votes[0].field} ${String(config![votes[0].field])}` };
  if (kinds.length === 0) return { identity: fallbackIdentity(), by: fallback.by };
  // The two disagree: the class (or position) settles it if it is one of them.
  if (kinds.includes(fallback.encoder)) return { identity: fallbackIdentity(), by: fallback.by };
  const said = votes.map((v) => `${v.field} ${String(config![v.field])} says ${KIND_NAMES[v.kind]}`).join(', ');
  return {
    identity: { doubt: `${f.folder}/config.json: ${said}, and ${byClass ? 'its pipeline\'s class' : 'its position'} says ${KIND_NAMES[fallback.encoder]}, so which CLIP it holds cannot be told; give it the config.json its model was saved with` },
    by: fallback.by,
  };
}


/**
 * Whether a T5 folder's config.json says byT5 (google/byt5-small: `d_model` 1472, a byte
 * vocabulary of 384, which HunyuanImage 2.1's and HunyuanVideo 1.5's glyph encoder extends), or its
 * `_name_or_path` names one. Its class (`T5EncoderModel`) is T5-XXL's too, so only its config tells
 * ComfyUI's `byt5_small` from its `t5xxl` outside the pipelines that are known to hold a byT5.
 */
export function byT5Config(config: unknown): boolean {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return false;
  const { d_model: dModel, vocab_size: vocab, _name_or_path: name } = config as Record<string, unknown>;
  return dModel === 1472 || vocab === 384 || (typeof name === 'string' && /byt5/i.test(name));
}

/**
 * ComfyUI's encoders whose keys are a transformers T5's (`encoder.block.N.layer.…`), by their
 * `d_model`: byT5-small's, T5-XXL's and Wan's UMT5-XXL's (told from T5-XXL by umt5Said), and
 * AuraFlow's Pile-T5-XL and HunyuanDiT's mT5-XL, which no file given alone is told to be here. A
 * module of one of them on a T5 file given alone that is told to be another is left out (otherLoneT5).
 */
const COMFY_T5S: Readonly<Record<string, { dModel: number; title: string }>> = {
  byt5_small: { dModel: 1472, title: 'byT5' }, t5xxl: { dModel: 4096, title: 'T5-XXL' }, umt5xxl: { dModel: 4096, title: 'UMT5-XXL' },
  pile_t5xl: { dModel: 2048, title: 'Pile-T5-XL' }, mt5xl: { dModel: 2048, title: 'mT5-XL' },
};

const COMFY_T5S_NAMES: ReadonlySet<string> = new Set(Object.keys(COMFY_T5S));

/** UMT5-XXL's vocabulary (google/umt5-xxl; comfy/text_encoders/umt5_config_xxl.json) and T5-XXL's. */
const UMT5_VOCAB = 256384, T5XXL_VOCAB = 32128;
const T5_BIAS_KEY = /^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.weight$/;

/**
 * Whether a T5 of d_model 4096 is UMT5-XXL (Wan's `umt5_xxl_fp16.safetensors`) or T5-XXL, and what
 * said so. ComfyUI's loader detects both as T5-XXL (sd.py detect_te_model) and builds the model its
 * CLIPLoader type names, but a UMT5-XXL file fits only its `umt5xxl` (the `wan` type): its t5xxl's
 * `shared.weight` is [32128, 4096], which a vocabulary of 256384 does not fit. So the vocabulary
 * says which; where the file's is neither (a pruned or cut export), its blocks do: UMT5 gives every
 * block a relative attention bias of its own (ComfyUI's T5 with model_type "umt5", t5.py), T5 only
 * the first.
 */
function umt5Said(keys: readonly string[], shape: (key: string) => readonly number[] | undefined): { umt5: boolean; said: string } {
  const vocabKey = ['shared.weight', 'encoder.embed_tokens.weight'].find((k) => shape(k)?.length === 2);
  const vocab = vocabKey === undefined ? undefined : shape(vocabKey)![0];
  if (vocab === UMT5_VOCAB) return { umt5: true, said: `${vocabKey} holds ${vocab} tokens, UMT5's vocabulary (T5-XXL's is ${T5XXL_VOCAB})` };
  if (vocab === T5XXL_VOCAB) return { umt5: false, said: `${vocabKey} holds ${vocab} tokens, T5-XXL's vocabulary (UMT5's is ${UMT5_VOCAB})` };
  const later = keys.find((k) => Number(T5_BIAS_KEY.exec(k)?.[1] ?? 0) > 0);
  if (later !== undefined) return { umt5: true, said: `block ${T5_BIAS_KEY.exec(later)![1]} holds a relative_attention_bias of its own (${later}), as every UMT5 block does (T5-XXL's first block only)` };
  return { umt5: false, said: 'blocks past the first hold no relative_attention_bias (every UMT5 block has its own)' };
}

/** The keys of a transformers T5 encoder's blocks (`encoder.block.0.layer.0.SelfAttention.q.weight`). */
const T5_BLOCK_KEY = /^encoder\.block\.\d+\.layer\.\d+\./;

/** Whether tensor keys are a transformers T5 encoder's: some key is one of its blocks' (`encoder.block.N.layer.…`). */
export function hasT5EncoderKeys(keys: readonly string[]): boolean {
  return keys.some((k) => T5_BLOCK_KEY.test(k));
}
const T5_Q_KEY = /^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.q\.weight$/;

/**
 * A T5 encoder's `d_model` as its stored shapes say it, and which tensor said it: the length of
 * `encoder.final_layer_norm.weight`, else the width of `shared.weight` (or `encoder.embed_tokens.weight`,
 * [vocab, d_model]), else that of the first block's `SelfAttention.q.weight` ([heads·d_kv, d_model]).
 * A file may lack any one of them (an fp8 or pruned export without the final norm, a shard series
 * whose last shard holds it); every block has a q. Undefined for keys that are no transformers T5
 * encoder's, or where two of these disagree (no T5 of one width).
 */
export function t5DModel(keys: readonly string[], shape: (key: string) => readonly number[] | undefined): { dModel: number; by: string } | undefined {
  if (!hasT5EncoderKeys(keys)) return undefined;
  const q = keys.filter((k) => T5_Q_KEY.test(k)).sort((a, b) => Number(T5_Q_KEY.exec(a)![1]) - Number(T5_Q_KEY.exec(b)![1]))[0];
  const found: { dModel: number; by: string }[] = [];
  const norm = shape('encoder.final_layer_norm.weight');
  if (norm?.length === 1) found.push({ dModel: norm[0], by: 'the length of encoder.final_layer_norm.weight' });
  for (const key of ['shared.weight', 'encoder.embed_tokens.weight', ...(q ? [q] : [])]) {
    const s = shape(key);
    if (s?.length === 2) found.push({ dModel: s[1], by: `the width of ${key} (shape [${s.join(', ')}])` });
  }
  if (found.length === 0 || found.some((f) => f.dModel !== found[0].dModel)) return undefined;
  return found[0];
}

/** A base's tensor keys and the shape of each, as the T5 checks below read them (a layout's BaseView is one). */
export interface T5Shapes {
  readonly keys: readonly string[];
  shape(key: string): readonly number[] | undefined;
}

/** Which of ComfyUI's T5 encoders a base holds by its shapes, and how to say why it is not another (comfyT5ByShape). */
export interface ComfyT5 {
  name: string;
  said: (name: string) => string;
  against: (name: string) => string;
}

/**
 * comfyT5ByShape's answer per base (null: none), so that the many T5 modules of one LoRA (a few
 * hundred in a T5 LoRA) read the base's shapes and walk its keys once, not once each.
 */
const heldByShape = new WeakMap<T5Shapes, ComfyT5 | null>();

/**
 * Which of ComfyUI's T5 encoders a T5 file or folder without a deciding config.json holds, by its
 * `d_model` (t5DModel): `byt5_small` at 1472, at 4096 `t5xxl` or `umt5xxl` (umt5Said); undefined at
 * any other width or for keys of no T5. `against(name)` says why it is not ComfyUI's encoder `name`
 * (`the base is a T5-XXL encoder, not byT5: its d_model, …`), `said(name)` the same from `its` on.
 * Read once per `base` object.
 */
export function comfyT5ByShape(base: T5Shapes): ComfyT5 | undefined {
  let held = heldByShape.get(base);
  if (held === undefined) heldByShape.set(base, (held = readComfyT5(base.keys, (key) => base.shape(key)) ?? null));
  return held ?? undefined;
}

function readComfyT5(keys: readonly string[], shape: (key: string) => readonly number[] | undefined): ComfyT5 | undefined {
  const d = t5DModel(keys, shape);
  const wide = d?.dModel === 4096 ? umt5Said(keys, shape) : undefined;
  const name = d?.dModel === 1472 ? 'byt5_small' : wide ? (wide.umt5 ? 'umt5xxl' : 't5xxl') : undefined;
  if (!d || name === undefined) return undefined;
  const held = COMFY_T5S[name];
  const said = (other: string) => {
    const them = Object.hasOwn(COMFY_T5S, other) ? COMFY_T5S[other] : undefined;
    if (them && them.dModel === d.dModel && wide) return wide.said;
    return `d_model, ${d.by}, is ${d.dModel}, ${held.title}'s${them ? ` (${them.title}'s is ${them.dModel})` : ''}`;
  };
  const against = (other: string) => `the base is a ${held.title} encoder, not ${Object.hasOwn(COMFY_T5S, other) ? COMFY_T5S[other].title : other}: its ${said(other)}`;
  return { name, said, against };
}

/**
 * Why a T5 encoder saved alone without a config.json (ComfyUI's `t5xxl_fp16.safetensors`, Wan's
 * `umt5_xxl_fp16.safetensors`, a byT5 glyph encoder file: transformers' keys `encoder.block.N…`)
 * is not ComfyUI's T5 encoder `name` (`byt5_small`, `t5xxl`, `umt5xxl`, …), as its shapes tell
 * (comfyT5ByShape). ComfyUI loads such a file as the encoder it is, whose model holds no keys of
 * `name`'s, so it leaves them unloaded. Undefined for any other file or name, or the file's own.
 */
export function otherLoneT5(name: string, base: T5Shapes): string | undefined {
  if (!COMFY_T5S_NAMES.has(name)) return undefined;
  const held = comfyT5ByShape(base);
  if (held === undefined || held.name === name) return undefined;
  return `${held.against(name)}; ComfyUI loads such a file as its ${held.name}, which holds no ${name} keys`;
}

/**
 * Why a kohya or diffusers text encoder module of a T5 path (`lora_te3_encoder_block_0_…`,
 * `text_encoder_3.encoder.block.0…`) does not reach a T5 encoder file given alone. On Wan's
 * UMT5-XXL (ComfyUI's `umt5xxl`) and on a byT5 (its `byt5_small`) none does: ComfyUI gives kohya's
 * T5 names to its t5xxl alone and maps no diffusers name to a T5, and diffusers' Wan and
 * HunyuanImage pipelines load no text encoder LoRA. On a T5-XXL every one lands: the same file is
 * loaded alone (ComfyUI's `lora_te1_`), beside CLIP-L for FLUX.1 (`lora_te2_`, `lora_te3_`) or
 * beside CLIP-L and CLIP-G for SD3 (`lora_te3_`), so which name reaches it depends on how the user
 * loads it, not on the file; and the tools that train T5 LoRAs write the others and apply them to
 * this T5 (sd-scripts' `lora_te3_` for FLUX.1, SD3 and Chroma; OneTrainer's `lora_te2_` and
 * `text_encoder_2.` for FLUX.1, `text_encoder_3.` for SD3, `lora_te_` for PixArt; diffusers'
 * Chroma pipeline loads `text_encoder.` into its T5). Undefined where the module lands, or where
 * the base is no T5 file told by its shapes. `prefix` is the module's prefix (`lora_te3_`,
 * `text_encoder_3.`).
 */
export function loneT5Unreached(prefix: string, base: T5Shapes): string | undefined {
  const held = comfyT5ByShape(base);
  if (held?.name === 'umt5xxl') {
    return `${held.against('t5xxl')}; ComfyUI loads such a file as its umt5xxl, whose keys only text_encoders.umt5xxl.transformer. names reach, and diffusers' Wan pipelines load no text encoder LoRA`;
  }
  if (held?.name === 'byt5_small') {
    return `${held.against('t5xxl')}; ComfyUI loads such a file as its byt5_small, which no ${prefix.startsWith('lora_') ? 'kohya' : 'diffusers'} text encoder name reaches (ComfyUI maps kohya's T5 names to its t5xxl alone, and diffusers' to no T5)`;
  }
  return undefined;
}

/**
 * Why a T5 folder's config.json rules byT5 out (`config.json says …`): it gives a `d_model` and a `vocab_size`, neither
 * byT5's, and its `_name_or_path` names none (T5-XXL's 4096 and 32128, as FLUX.1's and SD3's
 * folders say); undefined where it says byT5 or does not say enough to tell.
 */
export function notByT5Config(config: unknown): string | undefined {
  if (typeof config !== 'object' || config === null || Array.isArray(config) || byT5Config(config)) return undefined;
  const { d_model: dModel, vocab_size: vocab } = config as Record<string, unknown>;
  if (typeof dModel !== 'number' || typeof vocab !== 'number') return undefined;
  return `config.json says d_model ${dModel} and vocab_size ${vocab}, not byT5's (d_model 1472, a vocabulary of 384 bytes)`;
}
