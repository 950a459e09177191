/**
 * What a module's name says about where it belongs: the model part its prefix names (`lora_te2_`,
 * `text_encoder_2.`, `transformer.`) and the module path inside that part, with dots intact or
 * flattened to `_` (kohya). Layouts (formats/layouts/) turn this into base tensors.
 */

/**
 * The model part an adapter names, in kohya's numbering: `unet` is the denoiser (UNet or
 * transformer); `te` the text encoder of single-encoder models (SD1/SD2); `te1` CLIP-L, `te2`
 * CLIP-G (SDXL, SD3; OneTrainer's Flux LoRAs put T5 here), `te3` T5 (SD3; kohya's Flux LoRAs).
 */
export type ModelPart = 'unet' | 'te' | 'te1' | 'te2' | 'te3';

/** Where a module says it belongs: the model part its prefix names and its path there. */
export interface ModuleAddress {
  /** The part the name's prefix names; absent when it names none (PEFT paths, bare names). */
  part?: ModelPart;
  /** The module's path inside that part (or the whole model), prefix removed. */
  path: string;
  /** Dots were flattened to `_` (kohya, OneTrainer, SimpleTuner's LyCORIS): matched against the base's keys. */
  flat: boolean;
  /** The path names a parameter itself (PEFT `target_parameters`), not a module whose `.weight` is meant. */
  tensor?: boolean;
  /**
   * The path names one expert (`….experts.K.…`) of factors stacked for this many (mlx-lm's
   * LoRASwitchLinear): the base must hold as many experts there, however it stores them (one tensor
   * each or stacked), as mlx-lm loads the factors only onto a layer of the model's own count.
   * `module`: the module the factors are saved under (`…switch_mlp.up_proj`), which a refusal of
   * the count names, once for all its experts.
   */
  experts?: { count: number; module: string };
  /**
   * The part is the pipeline's first text encoder whatever model it is (diffusers' `text_encoder.`;
   * ComfyUI maps it, as `lora_te_`, to the CLIP-G of a checkpoint without CLIP-L, an SDXL refiner's).
   * Without it `te1` is CLIP-L as SDXL numbers its encoders (kohya's `lora_te1_`, ComfyUI's
   * `text_encoders.clip_l.`), which ComfyUI never maps to a CLIP-G.
   */
  anyFirstEncoder?: true;
  /** ComfyUI's name of the text encoder a `text_encoders.<name>.transformer.` prefix names (`clip_l`, `t5xxl`). */
  comfyEncoder?: string;
  /**
   * The name is in ComfyUI's own key naming (`diffusion_model.<path>`, `text_encoders.<name>.transformer.<path>`,
   * its model's keys without `.weight`), as ComfyUI's trainer and extract node write it: ComfyUI's loader
   * is the tool that reads such a file (LyCORIS and kohya name modules `lycoris_…`/`lora_unet_…`), so an
   * algorithm whose rules differ between the tools follows ComfyUI's for it.
   */
  comfyNaming?: true;
  /**
   * The file's diffusers `lora_adapter_metadata` states a LoraConfig for the module's component (its
   * `text_encoder.*` fields for a `text_encoder.` module). diffusers builds a text encoder's config
   * from those fields where they are given, and otherwise infers it, reading the rank from CLIP
   * module names alone (`q_proj` … `fc2`): on another encoder (a T5) it then finds none and fails,
   * so where diffusers is the only tool applying the name, it reaches that encoder only with them.
   */
  componentConfig?: true;
  /**
   * The name's prefix says the prior stage of a two-stage pipeline (Stable Cascade's stage C and its
   * CLIP-G: `lora_prior_unet_`, `lora_prior_te_`; a prior pipeline's LoRA's `text_encoder.`, and every
   * module of a file whose OneTrainer header says it is the prior's, a bare name as its denoiser's,
   * withPriorPipelineEncoder): on a combined pipeline its `prior_prior/` and `prior_text_encoder/`
   * (layouts/index.ts), elsewhere the pipeline's or file's own denoiser and encoder.
   */
  priorStage?: true;
  /**
   * The module is a fused q/k/v whose rows are grouped per head (`[head0: q k v, head1: q k v, …]`),
   * heads this many rows wide (DiffSynth-Studio's MiniMax-H3 LoRAs, minimax-h3-file.ts): a layout that
   * places it on separate q, k, v tensors takes each head's rows from its group.
   */
  qkvPerHead?: number;
}

interface Prefix {
  prefix: string;
  part?: ModelPart;
  flat: boolean;
  anyFirstEncoder?: true;
  comfyEncoder?: string;
  comfyNaming?: true;
  priorStage?: true;
}

/** Longest first, so `lora_te1_` is tried before `lora_te_` and `text_encoder_2.` before `text_encoder.`. */
const PREFIXES: readonly Prefix[] = ([
  // kohya sd-scripts, LyCORIS
  { prefix: 'lora_unet_', part: 'unet', flat: true },
  // Wan "Fun" LoRAs (`lora_unet__blocks_0_cross_attn_k`), which ComfyUI reads as `lora_unet_` (lora_convert.py)
  { prefix: 'lora_unet__', part: 'unet', flat: true },
  { prefix: 'lora_te1_', part: 'te1', flat: true },
  { prefix: 'lora_te2_', part: 'te2', flat: true },
  { prefix: 'lora_te3_', part: 'te3', flat: true },
  { prefix: 'lora_te_', part: 'te', flat: true },
  // Stable Cascade's prior (stage C) and its CLIP-G text encoder, as ComfyUI's key maps name them
  { prefix: 'lora_prior_unet_', part: 'unet', flat: true, priorStage: true },
  { prefix: 'lora_prior_te_', part: 'te', flat: true, priorStage: true },
  // OneTrainer (SD3, Flux)
  { prefix: 'lora_transformer_', part: 'unet', flat: true },
  // SimpleTuner's LyCORIS files (denoiser only)
  { prefix: 'lycoris_', part: 'unet', flat: true },
  // Tencent's HunyuanVideo-I2V LoRA trainer (kohya form: `Hunyuan_video_I2V_lora_double_blocks_0_img_attn_qkv`)
  { prefix: 'Hunyuan_video_I2V_lora_', part: 'unet', flat: true },
  // diffusers trainers, ai-toolkit
  { prefix: 'unet.', part: 'unet', flat: false },
  { prefix: 'transformer.', part: 'unet', flat: false },
  { prefix: 'text_encoder_2.', part: 'te2', flat: false },
  { prefix: 'text_encoder_3.', part: 'te3', flat: false },
  { prefix: 'text_encoder.', part: 'te1', flat: false, anyFirstEncoder: true },
  // ComfyUI's "Extract and Save Lora"
  { prefix: 'diffusion_model.', part: 'unet', flat: false, comfyNaming: true },
  // ...and its text encoders: `text_encoders.` + the key of ComfyUI's CLIP/T5 model, which names
  // each encoder (comfy/lora.py model_lora_keys_clip's generic form) in transformers' naming.
  { prefix: 'text_encoders.clip_l.transformer.', part: 'te1', flat: false, comfyEncoder: 'clip_l', comfyNaming: true },
  { prefix: 'text_encoders.clip_g.transformer.', part: 'te2', flat: false, comfyEncoder: 'clip_g', comfyNaming: true },
  { prefix: 'text_encoders.clip_h.transformer.', part: 'te', flat: false, comfyEncoder: 'clip_h', comfyNaming: true },
  { prefix: 'text_encoders.t5xxl.transformer.', part: 'te3', flat: false, comfyEncoder: 't5xxl', comfyNaming: true },
  // PEFT's wrapper around the whole model
  { prefix: 'base_model.model.', flat: false },
] satisfies Prefix[]).sort((x, y) => y.prefix.length - x.prefix.length);

/** Human names of the parts, for messages. */
export const PART_NAMES: Readonly<Record<ModelPart, string>> = {
  unet: 'the UNet/transformer',
  te: 'the text encoder',
  te1: 'text encoder 1 (CLIP-L)',
  te2: 'text encoder 2 (CLIP-G)',
  te3: 'text encoder 3 (T5)',
};

/** The address a module name states; names without a known prefix are dotted paths with no part. */
export function moduleAddress(name: string): ModuleAddress {
  for (const p of PREFIXES) {
    if (name.length > p.prefix.length && name.startsWith(p.prefix)) {
      const address: ModuleAddress = { path: name.slice(p.prefix.length), flat: p.flat };
      if (p.part) address.part = p.part;
      if (p.anyFirstEncoder) address.anyFirstEncoder = true;
      if (p.comfyEncoder) address.comfyEncoder = p.comfyEncoder;
      if (p.comfyNaming) address.comfyNaming = true;
      if (p.priorStage) address.priorStage = true;
      return address;
    }
  }
  return { path: name, flat: false };
}

/**
 * OneTrainer's header on its Stable Cascade and Würstchen v2 LoRAs (resources/sd_model_spec/
 * stable_cascade_1.0-lora.json, wuerstchen_2.0-lora.json): the file is the prior stage's, whatever its
 * names (OneTrainer trains only the prior and its text encoder, WuerstchenModel.prior_prior and
 * prior_text_encoder, and its loader puts every module there).
 */
const ONETRAINER_PRIOR = /^(stable-cascade-v1|wuerstchen-v2)-prior\/lora$/;

/**
 * A module of a file OneTrainer says is the prior's, marked priorStage: its denoiser's names (bare, as
 * its ORIGINAL form writes them; `diffusion_model.`, `lora_unet_`) as the prior's, its text encoder's
 * (`text_encoder.`, `lora_te_`) as the prior's CLIP. Its DIFFUSERS form's `prior.` keeps that name.
 */
function oneTrainerPriorModule<T extends { address: ModuleAddress }>(m: T): T {
  const { part, path, flat } = m.address;
  if (part === undefined && !flat && path.startsWith('prior.')) return m;
  // A bare name (no part) is the denoiser's: layouts/index.ts routes it to prior_prior/.
  return { ...m, address: { ...m.address, priorStage: true } };
}

/**
 * The modules of a prior pipeline's LoRA (Würstchen's, Stable Cascade's), told by its `prior.` modules
 * (WuerstchenPriorPipeline's and StableCascadePriorPipeline's unet_name; OneTrainer's Würstchen v2 and
 * Stable Cascade LoRAs in their DIFFUSERS form), with their `text_encoder.` modules marked priorStage:
 * the prior pipeline's text encoder, as the prior pipeline's load_lora_weights and OneTrainer's loader
 * (WuerstchenLoRALoader, onto model.prior_text_encoder) load them; on a combined pipeline its
 * `prior_text_encoder/`, not the decoder's `text_encoder/`. Other files' modules are returned as they are.
 */
export function withPriorPipelineEncoder<T extends { address: ModuleAddress }>(modules: readonly T[], metadata?: Readonly<Record<string, string>>): readonly T[] {
  if (ONETRAINER_PRIOR.test(metadata?.['modelspec.architecture'] ?? '')) return modules.map(oneTrainerPriorModule);
  if (!modules.some((m) => m.address.part === undefined && !m.address.flat && m.address.path.startsWith('prior.'))) return modules;
  return modules.map((m) => (m.address.part === 'te1' && m.address.anyFirstEncoder && !m.address.flat ? { ...m, address: { ...m.address, priorStage: true } } : m));
}

/** Is this one of kohya's flat names (`lora_unet_…`, `lora_te1_…`)? Used to recognise kohya files. */
export function isKohyaModuleName(name: string): boolean {
  return /^(lora_(unet|te|te1|te2|te3|prior_unet|prior_te)|lycoris)_[^.]+$/.test(name);
}
