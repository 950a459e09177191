/**
 * The components of a base model (the denoiser, each text encoder, the VAE) as its keys reveal
 * them, and which one a module's model part (`lora_te2_`, `text_encoder_2.`, `lora_unet_`) names.
 * A module is only ever matched among its own component's tensors: a `lora_te_` module can never
 * land on the UNet because a suffix happens to fit.
 */
import { PART_NAMES, type ModelPart } from './module-address.js';
import { CLIP_TEXT_CLASS } from './pipeline-encoders.js';

export type ComponentRole = 'denoiser' | 'text-encoder' | 'vae';
/** What a text encoder is, when its keys say. */
export type EncoderKind = 'clip_l' | 'clip_g' | 'openclip' | 't5';

/**
 * A text encoder folder a pipeline's model_index.json lists with its class (`text_encoder`,
 * `CLIPTextModel`) but that holds no .safetensors weights (transformer/ and model_index.json
 * downloaded alone): what the folder would hold (`component`, by its name and class, as a folder
 * with weights is told), so that a module is routed as on the complete pipeline, then refused there.
 */
export interface WeightlessFolder {
  readonly folder: string;
  readonly className: string;
  readonly component: Omit<BaseComponent, 'keys'>;
  /**
   * A CLIP folder whose kind was judged by its position alone (no config.json, and a pipeline class
   * not known to say: pipeline-encoders.ts): why, for the refusal to say.
   */
  readonly byPosition?: string;
}

/**
 * The prior's folders of a combined pipeline (KandinskyCombinedPipeline, KandinskyV22CombinedPipeline,
 * WuerstchenCombinedPipeline, StableCascadeCombinedPipeline: `prior_prior/`, `prior_text_encoder/`,
 * `prior_image_encoder/`), which are no component read here (no LoRA name routes to them); their
 * tensors are merged only where a module names the folder (`prior_prior.…`).
 */
export interface CombinedPrior {
  /** model_index.json's `_class_name`. */
  readonly pipelineClass: string;
  /** Each prior folder with weights, and its class. */
  readonly folders: readonly { readonly folder: string; readonly className: string }[];
  /** Why a module naming a CLIP is refused where the pipeline's only CLIP folders are the prior's. */
  readonly clipDoubt?: string;
}

export interface BaseComponent {
  /** For messages: `the UNet/transformer (model.diffusion_model.)`. */
  name: string;
  role: ComponentRole;
  /** Text encoders: 1, 2, 3 in the pipeline's order. */
  ordinal?: number;
  encoder?: EncoderKind;
  /** The keys' common prefix in the base ('' for a file that holds only this component). */
  prefix: string;
  keys: string[];
  /**
   * Holds modules a pipeline's conversion moved out of the main component of its role (diffusers'
   * LTX-2 `connectors` and Anima `text_conditioner`, out of the transformer). Adapters still name them as that component's, so
   * a module of its part that the main component lacks is looked for here.
   */
  movedOut?: true;
  /** The class a pipeline's model_index.json gives the folder (`UMT5EncoderModel`); absent outside pipelines. */
  className?: string;
  /** The pipeline's own class (model_index.json `_class_name`: `AuraFlowPipeline`); absent outside pipelines. */
  pipelineClass?: string;
  /**
   * Why which CLIP this text encoder is cannot be told (its config.json and the folders' order
   * disagree: pipeline-encoders.ts); `encoder` is then absent, and a module naming a CLIP by kind is refused.
   */
  encoderDoubt?: string;
  /** An LLM folder's config.json `model_type` and `hidden_size`, which say which LLM it holds. */
  config?: { modelType?: string; hiddenSize?: number };
  /**
   * The ComfyUI encoder a T5 folder's config.json says it holds where its class does not
   * (`byt5_small`: a byT5 T5EncoderModel, told from T5-XXL by pipeline-encoders.ts byT5Config).
   */
  comfyEncoder?: string;
  /**
   * ComfyUI encoders its config.json rules out where its class alone would not, each with why
   * (`byt5_small` on a T5EncoderModel whose config says T5-XXL: pipeline-encoders.ts notByT5Config).
   */
  ruledOut?: Readonly<Record<string, string>>;
  /**
   * ComfyUI's name of the encoder a bundle of its own stores under `text_encoders.<name>.transformer.`
   * (an LLM: `gemma2_2b`, `qwen3_4b`; its CLIPs and T5 have kinds of their own).
   */
  comfyName?: string;
  /**
   * Which of Wan 2.2 A14B's two experts this denoiser is, where a diffusers pipeline says so
   * (model_index.json's `boundary_ratio`: pipeline_wan.py runs `transformer` at timesteps at or above
   * the boundary, `transformer_2` below it). Only ai-toolkit's combined LoRA names an expert
   * (wan22-combined-experts.ts); every other denoiser module lands in the high-noise one, as
   * diffusers' load_lora_weights loads a LoRA into `transformer` unless told load_into_transformer_2.
   */
  noiseExpert?: 'high-noise' | 'low-noise';
}

interface Rule {
  pattern: RegExp;
  /** The component a matching key belongs to; `m` is the pattern's match. */
  component: (m: RegExpExecArray) => Omit<BaseComponent, 'name' | 'keys'>;
  /** Its name in messages, where the role's does not say it. */
  name?: string;
}

const ENCODER_NAMES: Readonly<Record<EncoderKind, string>> = { clip_l: 'CLIP-L', clip_g: 'CLIP-G', openclip: 'OpenCLIP', t5: 'T5' };
const T_ORDINAL: Readonly<Record<string, { ordinal: number; encoder: EncoderKind }>> = {
  clip_l: { ordinal: 1, encoder: 'clip_l' }, clip_g: { ordinal: 2, encoder: 'clip_g' }, t5xxl: { ordinal: 3, encoder: 't5' },
};

/** Key prefixes of single-file checkpoints (SD1/SD2 LDM, SDXL SGM, SD3 SAI, Flux BFL, ComfyUI bundles and Stable Cascade all-in-ones) and diffusers components. */
const RULES: readonly Rule[] = [
  { pattern: /^(model\.)?diffusion_model\./, component: (m) => ({ role: 'denoiser', prefix: m[0] }) },
  // SDXL: embedders.0 is CLIP-L (transformers naming), embedders.1 OpenCLIP-G (open_clip naming);
  // the refiner has only the OpenCLIP-G one, as embedders.0.
  {
    pattern: /^conditioner\.embedders\.(\d+)\.(transformer|model)\./,
    component: (m) => ({ role: 'text-encoder', ordinal: Number(m[1]) + 1, encoder: m[2] === 'transformer' ? 'clip_l' : 'clip_g', prefix: m[0] }),
  },
  // SD1: CLIP-L; SD2: OpenCLIP-H.
  {
    pattern: /^cond_stage_model\.(transformer|model)\./,
    component: (m) => ({ role: 'text-encoder', ordinal: 1, encoder: m[1] === 'transformer' ? 'clip_l' : 'openclip', prefix: m[0] }),
  },
  // ComfyUI and SD3.5 bundles: text_encoders.clip_l / clip_g / t5xxl.
  { pattern: /^text_encoders\.(clip_l|clip_g|t5xxl)\./, component: (m) => ({ role: 'text-encoder', ...T_ORDINAL[m[1]], prefix: m[0] }) },
  // ComfyUI's Chroma checkpoints: its T5 under the default text encoder prefix (supported_models.py's
  // Chroma sets none, so its save_checkpoint writes, and its loader reads, cond_stage_model.t5xxl.).
  { pattern: /^cond_stage_model\.t5xxl\./, component: (m) => ({ role: 'text-encoder', ...T_ORDINAL.t5xxl, prefix: m[0] }) },
  // ComfyUI's bundles of its other encoders (Lumina 2's gemma2_2b, Z-Image's qwen3_4b): by name, unnumbered.
  { pattern: /^text_encoders\.([^.]+)\.transformer\./, component: (m) => ({ role: 'text-encoder', comfyName: m[1], prefix: m[0] }) },
  // ComfyUI's all-in-one Stable Cascade files: CLIP-G under `text_encoder.` + its StableCascadeClipModel's
  // keys (supported_models.py Stable_Cascade_C.text_encoder_key_prefix; ComfyUI saves and loads it so).
  { pattern: /^text_encoder\.clip_g\.transformer\./, component: (m) => ({ role: 'text-encoder', ordinal: 1, encoder: 'clip_g', prefix: m[0] }) },
  { pattern: /^(first_stage_model|vae)\./, component: (m) => ({ role: 'vae', prefix: m[0] }) },
  // LTX-2's single files: the text projection, which Lightricks' code loads with the text encoder,
  // beside the transformer; adapters name it as the transformer's, as diffusers' conversion does.
  {
    pattern: /^text_embedding_projection\./, name: 'LTX-2\'s text projection (text_embedding_projection.)',
    component: (m) => ({ role: 'denoiser', prefix: m[0], movedOut: true }),
  },
  // Flux in BFL naming, stored without a prefix.
  { pattern: /^(double_blocks|single_blocks|img_in|txt_in|time_in|vector_in|guidance_in|final_layer)\./, component: () => ({ role: 'denoiser', prefix: '' }) },
  // A diffusers UNet or transformer saved on its own.
  {
    pattern: /^(down_blocks|up_blocks|mid_block|conv_in|conv_norm_out|conv_out|time_embedding|add_embedding|transformer_blocks|single_transformer_blocks|x_embedder|context_embedder|time_text_embed|norm_out|proj_out|pos_embed)\./,
    component: () => ({ role: 'denoiser', prefix: '' }),
  },
];

function componentName(c: Omit<BaseComponent, 'name' | 'keys'>): string {
  const where = c.prefix ? ` (${c.prefix})` : '';
  if (c.role === 'denoiser') return `the UNet/transformer${where}`;
  if (c.role === 'vae') return `the VAE${where}`;
  const kind = c.encoder ? ` (${ENCODER_NAMES[c.encoder]})` : c.comfyName ? ` (ComfyUI's ${c.comfyName})` : '';
  return `text encoder ${c.ordinal ?? ''}${kind}${where}`.replace('  ', ' ');
}

/**
 * The components of a base from its keys. Keys no rule recognises (an LLM's, a text encoder saved
 * alone) are left out; a base none of whose keys are recognised has no components, and module
 * parts then do not restrict matching.
 */
export function baseComponents(keys: Iterable<string>): BaseComponent[] {
  const byPrefix = new Map<string, BaseComponent>();
  const unrecognised: string[] = [];
  for (const key of keys) {
    const rule = RULES.find((r) => r.pattern.test(key));
    if (!rule) {
      unrecognised.push(key);
      continue;
    }
    const c = rule.component(rule.pattern.exec(key)!);
    // A denoiser stored bare matches several rules; keep one component for it.
    const id = `${c.role}|${c.prefix}|${c.ordinal ?? ''}`;
    let component = byPrefix.get(id);
    if (!component) byPrefix.set(id, (component = { ...c, name: rule.name ?? componentName(c), keys: [] }));
    component.keys.push(key);
  }
  // A component stored without a prefix (a Flux file, a diffusers UNet) owns the file's other
  // keys too: its less common top-level modules (encoder_hid_proj, …) need no rule of their own.
  const bare = [...byPrefix.values()].filter((c) => c.prefix === '');
  if (bare.length === 1) bare[0].keys.push(...unrecognised);
  return [...byPrefix.values()];
}

/**
 * The component a model part names, as kohya, OneTrainer and diffusers number them: `te` is the
 * CLIP-L, else the first text encoder; `te1` the CLIP-L too, else the first encoder unless it is a
 * CLIP-G (`anyFirstEncoder`, diffusers' `text_encoder.`, is the first folder whatever it holds): an
 * SDXL refiner's only encoder is CLIP-G, and ComfyUI maps neither `lora_te1_` nor
 * `text_encoders.clip_l.` there, while HunyuanVideo's CLIP-L is its second folder, behind its Llama,
 * where ComfyUI maps `lora_te_` and `lora_te1_` to it; `te2` is CLIP-G, or T5 where there is no
 * CLIP-G (OneTrainer's Flux LoRAs); `te3` is T5. Undefined when the base has no such component.
 */
export function componentForPart(part: ModelPart, components: readonly BaseComponent[], anyFirstEncoder = false): BaseComponent | undefined {
  const encoders = components.filter((c) => c.role === 'text-encoder').sort((x, y) => (x.ordinal ?? 9) - (y.ordinal ?? 9));
  const kind = (k: EncoderKind) => encoders.find((c) => c.encoder === k);
  const nth = (n: number) => encoders.find((c) => c.ordinal === n);
  switch (part) {
    case 'unet': {
      const denoisers = components.filter((c) => c.role === 'denoiser' && c.noiseExpert !== 'low-noise');
      return denoisers.find((c) => !c.movedOut) ?? denoisers[0];
    }
    // ComfyUI maps `lora_te_` to one of its own LLM encoders only where its bundle holds no other
    // encoder (comfy/lora.py model_lora_keys_clip: one prefix, `lora_te_` + the path after `model.`).
    case 'te': return kind('clip_l') ?? (encoders[0]?.comfyName !== undefined && encoders.length > 1 ? undefined : encoders[0]);
    case 'te1': {
      if (anyFirstEncoder) return nth(1);
      const first = nth(1);
      return kind('clip_l') ?? (first?.encoder === 'clip_g' ? undefined : first);
    }
    case 'te2': return kind('clip_g') ?? kind('t5') ?? nth(2);
    case 'te3': return kind('t5') ?? nth(3);
  }
}

/** The components holding modules moved out of `main` (none for most models). */
export function movedOutOf(main: BaseComponent, components: readonly BaseComponent[]): BaseComponent[] {
  return main.movedOut ? [] : components.filter((c) => c.movedOut && c.role === main.role);
}

/**
 * A model part's name in messages. `path`, the module's path below its part, says what the module
 * is where the part's number alone does not: a T5 module (`encoder_block_N_…`, `shared`) is the T5's
 * whatever its number, as OneTrainer's Flux `lora_te2_` and a T5-only model's `lora_te1_` and
 * `text_encoder.` are, not SDXL's CLIP-G or a CLIP-L.
 */
export function partName(part: ModelPart, path?: string): string {
  if ((part === 'te1' || part === 'te2') && path !== undefined && T5_PATH.test(path)) return `text encoder ${part.slice(2)} (T5)`;
  return PART_NAMES[part];
}

/** Whether a module's part and path name a T5 (kohya's `lora_te3_`, diffusers' `text_encoder_3.`, OneTrainer's Flux `lora_te2_encoder_block_…`). */
export function namesT5(part: ModelPart, path: string): boolean {
  return part === 'te3' || (part === 'te2' && T5_PATH.test(path));
}

/** Whether a module path (below its part's prefix) is a transformers T5's, dotted or as kohya flattens it. */
export function isT5Path(path: string): boolean {
  return T5_PATH.test(path);
}

/** A transformers T5's module paths, dotted or as kohya flattens them. */
const T5_PATH = /^(encoder[._]block[._]\d+[._]layer[._]|shared$|encoder[._]final_layer_norm$)/;

/**
 * How comfy/sd.py's load_text_encoder_state_dicts renames a Qwen3.5 or Qwen3-VL checkpoint given as
 * one file (its state_dict_prefix_replace for qwen35_* and qwen3vl_*): the language model from
 * `model.language_model.` to `model.`, the vision tower from `model.visual.` to `visual.` (and
 * `lm_head.` to `model.lm_head.`, which comfy-llm-head.ts places): ComfyUI's name, the file's.
 */
const VL_CHECKPOINT: Readonly<Record<string, string>> = { 'model.': 'model.language_model.', 'visual.': 'model.visual.' };

/** transformers' Qwen3.5 classes and model types (a Qwen3_5ForConditionalGeneration, or its language model alone). */
const QWEN35_CLASS = /^Qwen3_5(TextModel|ForCausalLM|Model|ForConditionalGeneration)$/;
const QWEN35_TYPES = ['qwen3_5', 'qwen3_5_text'];

/**
 * ComfyUI's text encoders, by the name its model gives them (`text_encoders.<name>.transformer.` in
 * its "Extract and Save Lora" files), whose keys after `transformer.` are the transformers model's
 * own: its CLIP, T5 and BERT encoders load transformers' checkpoints as they are (a BERT's under
 * `bert.`, which a BertModel folder stores without). Each is held by a pipeline folder of `classes`;
 * a CLIP only by the folder of its kind (pipeline-encoders.ts), a T5 of a pipeline that has its own
 * (`pipeline`) only there: AuraFlow's UMT5 is ComfyUI's `pile_t5xl`, never Wan's `umt5xxl`, and
 * HunyuanDiT's T5EncoderModel its `mt5xl`, never a `t5xxl`. ComfyUI's LLMs (`llama`, `qwen25_7b`,
 * `gemma2_2b`, `qwen3_4b`, …: comfy/text_encoders/llama.py) keep the language model under `model.`
 * (and Qwen2.5-VL's vision tower under `visual.`) with transformers' names below it; each is held
 * by a folder of its classes whose config.json says one of its `model_type`s and its `hidden_size`
 * (`llm`), as Qwen2.5-VL 7B and 3B, and Qwen3 0.6B, 4B and 8B, share a class; where the folder
 * stores them is LLM_STORED's, and a part of its model that a folder's class holds elsewhere or not at
 * all is refused. ComfyUI's byT5 (`byt5_small`, HunyuanImage 2.1's and HunyuanVideo
 * 1.5's glyph encoder) is a T5 with transformers' names, held by those pipelines' T5EncoderModel,
 * and so is Stable Audio Open's `t5base`, by a StableAudioPipeline's.
 */
const COMFY_ENCODERS: Readonly<Record<string, { classes: RegExp; kind?: EncoderKind; pipeline?: RegExp; keyPrefix?: string; llm?: { modelTypes: readonly string[]; hiddenSize: number | readonly number[] }; checkpoint?: Readonly<Record<string, string>>; unmapped?: string }>> = {
  clip_l: { classes: CLIP_TEXT_CLASS, kind: 'clip_l' },
  clip_g: { classes: CLIP_TEXT_CLASS, kind: 'clip_g' },
  clip_h: { classes: CLIP_TEXT_CLASS, kind: 'openclip' },
  t5xxl: { classes: /^T5EncoderModel$/, kind: 't5' },
  umt5xxl: { classes: /^UMT5EncoderModel$/ },
  // comfy/text_encoders/aura_t5.py (AuraT5Model, name "pile_t5xl") and hydit.py (HyditModel's mt5xl and hydit_clip).
  pile_t5xl: { classes: /^UMT5EncoderModel$/, pipeline: /^AuraFlow/ },
  mt5xl: { classes: /^M?T5EncoderModel$/, pipeline: /^HunyuanDiT/ },
  hydit_clip: { classes: /^BertModel$/, pipeline: /^HunyuanDiT/, keyPrefix: 'bert.' },
  // HunyuanVideo's llava-llama-3-8b and HiDream's Llama 3.1 8B (hunyuan_video.py, hidream.py: name "llama");
  // HunyuanVideo I2V's pipeline holds the same language model inside its LlavaForConditionalGeneration
  // (ComfyUI loads only the language model as its `llama`, the image tower apart as a CLIP vision model).
  llama: { classes: /^(Llama(Model|ForCausalLM)|LlavaForConditionalGeneration)$/, llm: { modelTypes: ['llama', 'llava'], hiddenSize: 4096 } },
  // Qwen-Image's and HunyuanImage 2.1's Qwen2.5-VL 7B (qwen_image.py, hunyuan_image.py); HunyuanVideo
  // 1.5's pipeline keeps only its language model, as a Qwen2_5_VLTextModel.
  qwen25_7b: { classes: /^Qwen2_5_VL(ForConditionalGeneration|TextModel)$/, llm: { modelTypes: ['qwen2_5_vl', 'qwen2_5_vl_text'], hiddenSize: 3584 } },
  // OmniGen2's Qwen2.5-VL 3B (omnigen2.py: only its language model).
  qwen25_3b: { classes: /^Qwen2_5_VL(ForConditionalGeneration|TextModel)$/, llm: { modelTypes: ['qwen2_5_vl', 'qwen2_5_vl_text'], hiddenSize: 2048 } },
  // Lumina Image 2.0's Gemma 2 2B (lumina2.py); NewBie's Gemma 3 4B (lumina2.py's gemma3_4b: its language model).
  gemma2_2b: { classes: /^Gemma2(Model|ForCausalLM)$/, llm: { modelTypes: ['gemma2'], hiddenSize: 2304 } },
  gemma3_4b: { classes: /^Gemma3(TextModel|ForCausalLM|ForConditionalGeneration)$/, llm: { modelTypes: ['gemma3', 'gemma3_text'], hiddenSize: 2560 } },
  // LTX-2's Gemma 3 12B (lt.py: name "gemma3_12b"; its language model as for gemma3_4b).
  gemma3_12b: { classes: /^Gemma3(TextModel|ForCausalLM|ForConditionalGeneration)$/, llm: { modelTypes: ['gemma3', 'gemma3_text'], hiddenSize: 3840 } },
  // Qwen3-VL (qwen3vl.py's qwen3vl_4b and qwen3vl_8b: its language model, and its vision tower, whose
  // names are transformers' below `visual.`: comfy/sd.py loads a checkpoint's `model.visual.` as `visual.`).
  qwen3vl_4b: { classes: /^Qwen3VL(Model|ForConditionalGeneration)$/, llm: { modelTypes: ['qwen3_vl'], hiddenSize: 2560 }, checkpoint: VL_CHECKPOINT },
  qwen3vl_8b: { classes: /^Qwen3VL(Model|ForConditionalGeneration)$/, llm: { modelTypes: ['qwen3_vl'], hiddenSize: 4096 }, checkpoint: VL_CHECKPOINT },
  // MiniMax H3's Qwen3-VL 32B (minimax.py's MiniMaxH3TEModel, name "qwen3vl_32b"; llama.py's
  // Qwen3VL_32BConfig: its first 50 of 64 layers, no final norm, no head).
  qwen3vl_32b: { classes: /^Qwen3VL(Model|ForConditionalGeneration)$/, llm: { modelTypes: ['qwen3_vl'], hiddenSize: 5120 } },
  // Qwen3.5 (qwen35.py's QWEN35_MODELS, each named by its size; comfy/sd.py loads a checkpoint's
  // `model.language_model.` as `model.`, `model.visual.` as `visual.`, and `lm_head.` as `model.lm_head.`).
  qwen35_08b: { classes: QWEN35_CLASS, checkpoint: VL_CHECKPOINT, llm: { modelTypes: QWEN35_TYPES, hiddenSize: 1024 } },
  qwen35_2b: { classes: QWEN35_CLASS, checkpoint: VL_CHECKPOINT, llm: { modelTypes: QWEN35_TYPES, hiddenSize: 2048 } },
  qwen35_4b: { classes: QWEN35_CLASS, checkpoint: VL_CHECKPOINT, llm: { modelTypes: QWEN35_TYPES, hiddenSize: 2560 } },
  qwen35_9b: { classes: QWEN35_CLASS, checkpoint: VL_CHECKPOINT, llm: { modelTypes: QWEN35_TYPES, hiddenSize: 4096 } },
  qwen35_27b: { classes: QWEN35_CLASS, checkpoint: VL_CHECKPOINT, llm: { modelTypes: QWEN35_TYPES, hiddenSize: 5120 } },
  // Gemma 4 (gemma4.py's gemma4_te: one name, "gemma4", for its E2B, E4B and 31B and the 12B
  // "unified" one LTX-2.5 uses; comfy/sd.py detect_te_model tells them apart by their layers).
  gemma4: {
    classes: /^Gemma4(Unified)?(TextModel|ForCausalLM|Model|ForConditionalGeneration)$/,
    llm: { modelTypes: ['gemma4', 'gemma4_text', 'gemma4_unified', 'gemma4_unified_text'], hiddenSize: [1536, 2560, 3840, 5376] },
  },
  // Lens's GPT-OSS 20B (gpt_oss.py's LensTEModel, name "gpt_oss"): ComfyUI's own module tree, not
  // transformers', so a folder of it is told but no module is placed there.
  gpt_oss: {
    classes: /^GptOss(Model|ForCausalLM)$/, llm: { modelTypes: ['gpt_oss'], hiddenSize: 2880 },
    unmapped: 'ComfyUI\'s gpt_oss.py keeps the decoder directly under transformer. (layers., embed_tokens, norm) and its experts as fused MoEExperts weights, which are not mapped onto a transformers GptOss folder here: merge into ComfyUI\'s own gpt_oss text encoder file',
  },
  // Qwen3 (z_image.py's qwen3_4b for Z-Image; flux.py's qwen3_4b and qwen3_8b for FLUX.2 [klein] 4B and
  // 9B; anima.py's qwen3_06b; ovis.py's qwen3_2b, Ovis-Image's Ovis 2.5 LLM; ace15.py's qwen3_06b, ACE-Step
  // 1.5's text encoder, and its 5 Hz language model as qwen3_2b or qwen3_4b): llama.py's Qwen3_4B,
  // Qwen3_8B, Qwen3_06B and Ovis25_2B.
  qwen3_06b: { classes: /^Qwen3(Model|ForCausalLM)$/, llm: { modelTypes: ['qwen3'], hiddenSize: 1024 } },
  qwen3_2b: { classes: /^Qwen3(Model|ForCausalLM)$/, llm: { modelTypes: ['qwen3'], hiddenSize: 2048 } },
  qwen3_4b: { classes: /^Qwen3(Model|ForCausalLM)$/, llm: { modelTypes: ['qwen3'], hiddenSize: 2560 } },
  qwen3_8b: { classes: /^Qwen3(Model|ForCausalLM)$/, llm: { modelTypes: ['qwen3'], hiddenSize: 4096 } },
  // HunyuanImage 2.1's and HunyuanVideo 1.5's byT5 (hunyuan_image.py's ByT5SmallModel: a T5 under `transformer.`).
  byt5_small: { classes: /^T5EncoderModel$/, pipeline: /^Hunyuan(Image|Video15)/ },
  // Stable Audio Open's t5-base (sa_t5.py's SAT5Model, name "t5base": a T5 under `transformer.`).
  t5base: { classes: /^T5EncoderModel$/, pipeline: /^StableAudioPipeline$/ },
};

/**
 * Where a folder of each transformers class stores what ComfyUI's LLM keeps under `model.` and
 * `visual.`: a base model class without `model.`, a causal LM under it, and a vision-language
 * model's language model under `language_model.model.` (Llava, Gemma 3) or `model.` (Qwen2.5-VL,
 * with `visual.`) as transformers before 4.52 saved them, or `model.language_model.` (and
 * `model.visual.`) as later ones do; which of these a folder uses, its keys say. A base model class
 * of the newer LLMs may also hold its causal LM's `model.` names (transformers loads either into
 * it), so its keys choose there too. A part no entry names (Gemma 3's vision tower, which ComfyUI names its own way) keeps its
 * path, and so matches no tensor and is refused.
 */
const LLM_STORED: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>> = {
  LlamaModel: { 'model.': [''] },
  LlamaForCausalLM: { 'model.': ['model.'] },
  LlavaForConditionalGeneration: { 'model.': ['language_model.model.', 'model.language_model.'] },
  Gemma2Model: { 'model.': [''] },
  Gemma2ForCausalLM: { 'model.': ['model.'] },
  Gemma3TextModel: { 'model.': ['', 'model.'] },
  Gemma3ForCausalLM: { 'model.': ['model.'] },
  Gemma3ForConditionalGeneration: { 'model.': ['language_model.model.', 'model.language_model.'] },
  Qwen2_5_VLForConditionalGeneration: { 'model.': ['model.', 'model.language_model.'], 'visual.': ['visual.', 'model.visual.'] },
  Qwen2_5_VLTextModel: { 'model.': ['', 'model.'] },
  Qwen3Model: { 'model.': ['', 'model.'] },
  // Qwen3-VL's vision tower too (qwen3vl.py's Qwen3VLVisionModel keeps transformers' names, DeepStack mergers included).
  Qwen3VLModel: { 'model.': ['language_model.'], 'visual.': ['visual.'] },
  Qwen3VLForConditionalGeneration: { 'model.': ['model.language_model.'], 'visual.': ['model.visual.'] },
  Qwen3ForCausalLM: { 'model.': ['model.'] },
  // Qwen3.5's vision tower keeps transformers' names in ComfyUI (comfy/sd.py maps `model.visual.` to `visual.` as it is).
  Qwen3_5TextModel: { 'model.': ['', 'model.'] },
  Qwen3_5ForCausalLM: { 'model.': ['model.'] },
  Qwen3_5Model: { 'model.': ['language_model.'], 'visual.': ['visual.'] },
  Qwen3_5ForConditionalGeneration: { 'model.': ['model.language_model.'], 'visual.': ['model.visual.'] },
  // Gemma 4's vision and audio towers ComfyUI names its own way (vision_model., audio_model., …): refused.
  Gemma4TextModel: { 'model.': ['', 'model.'] },
  Gemma4ForCausalLM: { 'model.': ['model.'] },
  Gemma4Model: { 'model.': ['language_model.'] },
  Gemma4ForConditionalGeneration: { 'model.': ['model.language_model.'] },
  Gemma4UnifiedTextModel: { 'model.': ['', 'model.'] },
  Gemma4UnifiedForCausalLM: { 'model.': ['model.'] },
  Gemma4UnifiedModel: { 'model.': ['language_model.'] },
  Gemma4UnifiedForConditionalGeneration: { 'model.': ['model.language_model.'] },
};

/**
 * Whether a text encoder component can be ComfyUI's encoder of that name: by its pipeline folder's
 * class (and kind, for a CLIP; and pipeline, for the encoders only one pipeline has), or by what its
 * keys say it is; undefined where neither tells (a folder of another class, a CLIP folder whose kind
 * is in doubt, a pipeline whose class model_index.json leaves out).
 */
export function holdsComfyEncoder(component: BaseComponent, name: string): boolean | undefined {
  const wanted = Object.hasOwn(COMFY_ENCODERS, name) ? COMFY_ENCODERS[name] : undefined;
  // ComfyUI's bundle names it.
  if (component.comfyName !== undefined) return component.comfyName === name;
  // Its config.json said it is not that one (a T5-XXL is no byT5), whatever its class or pipeline.
  if (component.ruledOut && Object.hasOwn(component.ruledOut, name)) return false;
  // Its config.json said which (a byT5 in any pipeline, or given alone): that one only.
  if (component.comfyEncoder) return wanted ? component.comfyEncoder === name : undefined;
  if (component.className) {
    const className = component.className;
    const candidates = Object.values(COMFY_ENCODERS).filter((e) => e.classes.test(className));
    if (!wanted) return candidates.length > 0 ? false : undefined;
    // An LLM on a folder of a class none of ComfyUI's encoders has (HunyuanVideo I2V's
    // LlavaForConditionalGeneration): which LLM that is, and where it keeps its layers, is not known.
    if (!wanted.classes.test(className)) return wanted.llm && candidates.length === 0 ? undefined : false;
    if (CLIP_TEXT_CLASS.test(className)) return component.encoder === undefined ? undefined : component.encoder === wanted.kind;
    // An LLM: its config.json says which (none: cannot be told).
    if (wanted.llm) {
      const config = component.config;
      if (config?.modelType === undefined || config.hiddenSize === undefined) return undefined;
      return wanted.llm.modelTypes.includes(config.modelType) && hiddenSizes(wanted.llm).includes(config.hiddenSize);
    }
    // A class two of ComfyUI's encoders share: the pipeline says which this one is.
    const owned = candidates.find((e) => e.pipeline && component.pipelineClass && e.pipeline.test(component.pipelineClass));
    if (owned) return owned === wanted;
    if (wanted.pipeline) return component.pipelineClass === undefined ? undefined : false;
    return true;
  }
  if (component.encoder === undefined || wanted?.kind === undefined) return component.encoder === undefined ? undefined : false;
  return wanted.kind === component.encoder;
}

/**
 * Why a folder of one of ComfyUI's LLM's classes cannot be told to hold it or not: its config.json
 * does not say its `model_type` and `hidden_size`; or a folder of the class of an encoder only one
 * pipeline has, outside a pipeline that says its class (and, for byT5, without a config.json that
 * tells it from T5-XXL); undefined for any other folder.
 */
export function comfyEncoderDoubt(component: BaseComponent, name: string): string | undefined {
  const wanted = Object.hasOwn(COMFY_ENCODERS, name) ? COMFY_ENCODERS[name] : undefined;
  // One pipeline's encoder (byT5, AuraFlow's and HunyuanDiT's) on a folder of its class that no pipeline class places.
  if (wanted?.pipeline && component.className && wanted.classes.test(component.className) && holdsComfyEncoder(component, name) === undefined) {
    const byT5 = name === 'byt5_small' ? `${component.config ? 'its config.json does not say' : 'it has no config.json to say'} its d_model and vocab_size, which tell byT5 from T5-XXL, and ` : '';
    return `${byT5}no pipeline's _class_name says which of ComfyUI's encoders of its class it holds`;
  }
  if (!wanted?.llm || !component.className || !wanted.classes.test(component.className)) return undefined;
  if (component.config?.modelType !== undefined && component.config.hiddenSize !== undefined) return undefined;
  const lacks = component.config ? 'its config.json does not say its model_type and hidden_size' : 'it has no config.json to say its model_type and hidden_size';
  return `${lacks}, which tell ComfyUI's ${name} (${wanted.llm.modelTypes.join(' or ')}, hidden_size ${hiddenSizes(wanted.llm).join(' or ')}) from another model of its class`;
}

/** The hidden sizes of an LLM ComfyUI gives one name (Gemma 4's four sizes are all its `gemma4`). */
function hiddenSizes(llm: { hiddenSize: number | readonly number[] }): readonly number[] {
  return typeof llm.hiddenSize === 'number' ? [llm.hiddenSize] : llm.hiddenSize;
}

/**
 * A module path of ComfyUI's encoder `name` (after `transformer.`) as a lone file of its checkpoint
 * stores it, where comfy/sd.py renames that checkpoint's keys on loading it (VL_CHECKPOINT) and the
 * file holds the checkpoint's names (Comfy-Org's Qwen3.5 files keep `model.language_model.`);
 * undefined where the encoder has no such renaming or the file holds ComfyUI's own names.
 */
export function comfyEncoderFilePath(name: string, path: string, keys: readonly string[]): string | undefined {
  const renamed = Object.hasOwn(COMFY_ENCODERS, name) ? COMFY_ENCODERS[name].checkpoint : undefined;
  const top = renamed ? Object.keys(renamed).find((p) => path.startsWith(p)) : undefined;
  if (!renamed || top === undefined || !keys.some((k) => k.startsWith(renamed[top]))) return undefined;
  return `${renamed[top]}${path.slice(top.length)}`;
}

/**
 * A module path of ComfyUI's encoder `name` (after `transformer.`) as the pipeline folder holding it
 * stores it: its BERT's `bert.` dropped (transformers' BertModel saves its keys without it), an
 * LLM's `model.` and `visual.` put where that folder's class and keys have them (LLM_STORED); or
 * why that cannot be told.
 */
export function comfyEncoderPath(name: string, path: string, component: BaseComponent): { path: string; doubt?: undefined } | { doubt: string; path?: undefined } {
  const encoder = Object.hasOwn(COMFY_ENCODERS, name) ? COMFY_ENCODERS[name] : undefined;
  if (encoder?.unmapped) return { doubt: `${component.name} holds it in transformers' names, and ${encoder.unmapped}` };
  if (encoder?.keyPrefix && path.startsWith(encoder.keyPrefix)) return { path: path.slice(encoder.keyPrefix.length) };
  const stored = encoder?.llm && component.className && Object.hasOwn(LLM_STORED, component.className) ? LLM_STORED[component.className] : undefined;
  const top = stored ? Object.keys(stored).find((p) => path.startsWith(p)) : undefined;
  // A part of ComfyUI's model that this folder's class is not known to hold where ComfyUI has it
  // (Qwen2.5-VL's `visual.` on HunyuanVideo 1.5's Qwen2_5_VLTextModel, Gemma 3's `vision_model.`,
  // which ComfyUI names its own way): refused, not looked up by its bare name in the folder.
  if (stored && top === undefined) {
    return { doubt: `${component.name} does not hold ComfyUI's ${path.split('.')[0]}. (a ${component.className} holds only its ${Object.keys(stored).join(' and ')})` };
  }
  if (!stored || top === undefined) return { path };
  const rest = path.slice(top.length);
  const head = `${rest.split('.')[0]}.`;
  const held = stored[top].filter((p) => component.keys.some((k) => k.startsWith(`${component.prefix}${p}${head}`)));
  // One place, or none (the miss then names the path as the class stores it).
  if (held.length <= 1) return { path: `${held[0] ?? stored[top][0]}${rest}` };
  return { doubt: `${component.name} stores ${held.map((p) => `${p}${head}`).join(' and ')} both, so which holds ComfyUI's ${top}${head} cannot be told` };
}
