/**
 * Which kohya and diffusers text encoder names reach a T5-XXL held beside CLIP-L and/or CLIP-G
 * (FLUX.1, SD3, HiDream: a diffusers pipeline's folders or a checkpoint bundling its encoders). The
 * part a name gives (`lora_te2_`, `text_encoder_3.`) numbers the encoders, and the tools that write
 * and apply T5 LoRAs number the T5 after the CLIPs beside it:
 *  - kohya names, as comfy/lora.py model_lora_keys_clip maps them: `lora_te3_` beside CLIP-L and
 *    CLIP-G (SD3, as sd-scripts' lora_sd3.py and OneTrainer write it), `lora_te2_` and `lora_te3_`
 *    beside CLIP-L alone (FLUX.1: OneTrainer's `lora_te2`, sd-scripts' lora_flux.py `lora_te3`),
 *    `lora_te2_` beside CLIP-G alone; any other (`lora_te_`, `lora_te1_`, SD3's `lora_te2_`) reaches
 *    no encoder there, and ComfyUI leaves it unloaded;
 *  - diffusers names, as OneTrainer's diffusers-format LoRAs write them and its loader applies them
 *    (each model's `lora_text_encoders`: FLUX.1's T5 `text_encoder_2`, SD3's and HiDream's
 *    `text_encoder_3`), the name of the T5's own pipeline folder. diffusers' pipelines load no T5
 *    LoRA (SD3's and FLUX.1's `_lora_loadable_modules` hold their CLIPs only, and the other
 *    prefixes' keys are dropped unread) and ComfyUI maps no diffusers name to a T5, so a
 *    `text_encoder_N.` that numbers no encoder of the base is left out; one that numbers a CLIP
 *    is that CLIP's, where its T5 path finds nothing (diffusers fails to load it: PEFT finds no such module in the CLIP).
 * A T5 that is its model's only text encoder (Chroma, PixArt, LTX-Video, Mochi, Cosmos, CogVideoX,
 * Allegro, CogView3-Plus, BRIA 3, Latte, ConsisID, DeepFloyd IF, Kandinsky 3, Stable Audio Open,
 * GLM-Image, AuraFlow, Wan, SkyReels-V2, ChronoEdit, Lucy Edit, Helios, AnyFlow, LongCat-AudioDiT: T5_ALONE) is reached by the names the tools training or applying
 * that model's T5 LoRAs write and apply (t5Alone). A T5 file given alone, and ComfyUI's own names of
 * T5s other than its t5xxl (byT5, UMT5, mT5, t5-base), have rules of their own (pipeline-encoders.ts, base-components.ts).
 */
import { componentForPart, holdsComfyEncoder, isT5Path, partName, type BaseComponent } from './base-components.js';
import type { ModuleAddress } from './module-address.js';

/** Where a T5 module lands (`component`), why it is left out (`leftOut`), or why it is refused (`refused`). */
export type T5Reach =
  | { component: BaseComponent; leftOut?: undefined; refused?: undefined }
  | { leftOut: string; component?: undefined; refused?: undefined }
  | { refused: string; component?: undefined; leftOut?: undefined };

const NUMBER: Readonly<Record<string, number>> = { te: 0, te1: 1, te2: 2, te3: 3 };

/**
 * Where a kohya or diffusers text encoder module of a T5 path (`lora_te2_encoder_block_0_…`,
 * `text_encoder_3.encoder.block.0…`) lands on a base holding ComfyUI's t5xxl beside CLIP-L and/or
 * CLIP-G, or why it is left out; undefined where this rule does not decide (no such base, another
 * kind of name, a CLIP whose kind is in doubt).
 */
export function t5BesideClips(address: ModuleAddress, components: readonly BaseComponent[]): T5Reach | undefined {
  const { part, path } = address;
  if (part === undefined || part === 'unet' || address.comfyEncoder !== undefined || !isT5Path(path)) return undefined;
  const encoders = components.filter((c) => c.role === 'text-encoder');
  const t5s = encoders.filter((c) => c.encoder === 't5');
  if (t5s.length !== 1 || holdsComfyEncoder(t5s[0], 't5xxl') !== true || encoders.some((c) => c.encoderDoubt)) return undefined;
  const [t5] = t5s;
  const clipL = encoders.some((c) => c.encoder === 'clip_l'), clipG = encoders.some((c) => c.encoder === 'clip_g');
  if (!clipL && !clipG) return undefined;
  const n = NUMBER[part];
  const beside = clipL && clipG ? 'CLIP-L and CLIP-G (as SD3)' : clipL ? 'CLIP-L alone (as FLUX.1)' : 'CLIP-G alone';
  if (address.flat) {
    const reach = clipL && !clipG ? [2, 3] : [1 + Number(clipL) + Number(clipG)];
    if (reach.includes(n)) return { component: t5 };
    const names = reach.map((k) => `lora_te${k}_`).join(' and ');
    return {
      leftOut: `names ${partName(part, path)}, but ComfyUI numbers kohya's T5 names after the CLIPs beside it: beside ${beside} its T5 is ${names} only (as kohya's sd-scripts and OneTrainer write it), so it maps lora_te${n === 0 ? '' : n}_ to no encoder of this base and leaves such modules unloaded`,
    };
  }
  // A pipeline's T5 folder says its number; a bundle's T5 comes after its CLIPs.
  const folder = /^text_encoder(?:_(\d+))?\.$/.exec(t5.prefix);
  const own = folder ? Number(folder[1] ?? 1) : 1 + Number(clipL) + Number(clipG);
  if (n === own) return { component: t5 };
  const other = componentForPart(part, components.filter((c) => c !== t5), address.anyFirstEncoder);
  if (other) return { component: other };
  const ownName = `text_encoder${own === 1 ? '' : `_${own}`}.`;
  return {
    leftOut: `names ${partName(part, path)}, which the base does not hold: its T5 (${folder ? `${t5.prefix.slice(0, -1)}/` : t5.prefix}, beside ${beside}) is ${ownName}, as OneTrainer's diffusers-format LoRAs name it; diffusers' pipelines load no T5 LoRA (they drop such keys unread) and ComfyUI maps no diffusers name to a T5`,
  };
}

/** A model whose only text encoder is a T5 (T5-XXL, T5 1.0, FLAN-UL2, t5-base, UMT5, byT5), and the names that reach it. */
interface T5AloneModel {
  /** For messages. */
  model: string;
  /** Its diffusers pipelines (model_index.json `_class_name`). */
  pipeline: RegExp;
  /**
   * A key of its denoiser in ComfyUI's naming (after the prefix), as comfy/model_detection.py tells
   * the model in a checkpoint; absent where ComfyUI saves no checkpoint of the model with its T5.
   */
  denoiserKey?: RegExp;
  /** The kohya and diffusers prefixes that reach the T5 (`lora_te1_`, `text_encoder.`); none where no tool applies any. */
  reach: readonly string[];
  /**
   * A prefix of `reach` that only diffusers applies (`loader`, its pipelines), and so only with the
   * LoraConfig a file's lora_adapter_metadata states for it (ModuleAddress.componentConfig):
   * without one diffusers fails to load it, and the module is refused.
   */
  needsConfig?: { prefix: string; loader: string };
  /**
   * Whether ComfyUI's own `text_encoders.t5xxl.transformer.` reaches it: ComfyUI runs the model with
   * this T5 as its t5xxl. Where it does not, that name is left out on a T5 that would otherwise
   * hold it (a T5EncoderModel of T5-XXL's class); another T5's own ComfyUI name is not this table's.
   */
  comfyT5xxl?: true;
  /** Who writes and applies which name, for the warning on any other. */
  tools: string;
  /** ComfyUI runs no such model, so the warning says nothing of how ComfyUI leaves other names unloaded. */
  notInComfy?: true;
}

/** ComfyUI's part, for the models it loads that T5 alone for (comfy/lora.py model_lora_keys_clip numbers it 1). */
const COMFY_LOADS_ALONE = 'ComfyUI maps lora_te1_ and its own text_encoders.t5xxl.transformer. there';

/**
 * Models whose only text encoder is T5-XXL, ComfyUI's t5xxl, and the kohya and diffusers names that
 * the tools training and applying their T5 LoRAs give it. ComfyUI loads that T5 alone (comfy/sd.py:
 * pixart_t5.py's model for Chroma and PixArt, genmo.py's for Mochi and, through lt.py, LTX-Video,
 * cosmos.py's for Cosmos; a
 * T5 alone from its CLIPLoader, as the CogVideoX wrapper nodes take it), so comfy/lora.py
 * model_lora_keys_clip numbers it 1 with no CLIP before it and maps `lora_te1_` alone. OneTrainer
 * writes `lora_te1_` (its kohya format), `lora_te_` (its legacy format, which its earlier versions
 * wrote), `text_encoder.` (its diffusers format) and loads each of them, for Chroma and PixArt, the
 * only ones of these it trains a T5 of; sd-scripts trains Chroma as FLUX.1 without its CLIP-L
 * (flux_train_network.py, lora_flux.py), so its T5 stays `lora_te3_`; diffusers' ChromaPipeline
 * (FluxLoraLoaderMixin) loads `text_encoder.` into its T5, its LTX, Mochi and CogVideoX loaders
 * (LTXVideoLoraLoaderMixin, Mochi1LoraLoaderMixin, CogVideoXLoraLoaderMixin) the transformer's
 * LoRA alone, and its PixArt, Cosmos 1/Predict2 and Allegro pipelines load no LoRA. The video
 * models' trainers (Lightricks' LTX-Video-Trainer, finetrainers, genmo's Mochi trainer,
 * diffusion-pipe, CogVideo's and Allegro's own) train their transformers alone, and ComfyUI runs no Allegro, CogView3-Plus or BRIA 3 (whose
 * diffusers pipelines load no LoRA either): no tool applies a T5 LoRA to those.
 * The other pipelines whose only text encoder is a T5 follow: Latte and ConsisID (T5-XXL; ComfyUI
 * runs neither, and their pipelines load no text encoder LoRA); DeepFloyd IF and Kandinsky 3, whose
 * pipelines (StableDiffusionLoraLoaderMixin) load `text_encoder.` into the T5, and no other name, only
 * under the LoraConfig a file's lora_adapter_metadata states for it (needsConfig), no trainer writing any; Stable Audio Open's t5-base, GLM-Image's byT5, AuraFlow's Pile-T5-XL and the
 * UMT5-XXL of Wan, SkyReels-V2, ChronoEdit, Lucy Edit and Helios, which no kohya or diffusers name reaches. ComfyUI's `text_encoders.t5xxl.` reaches only
 * the models it runs with their T5 as its t5xxl (`comfyT5xxl`).
 */
const T5_ALONE: readonly T5AloneModel[] = [
  {
    model: 'Chroma', pipeline: /^Chroma/, denoiserKey: /^distilled_guidance_layer\./,
    reach: ['lora_te_', 'lora_te1_', 'lora_te3_', 'text_encoder.'], comfyT5xxl: true,
    tools: `kohya's sd-scripts names it lora_te3_, OneTrainer lora_te1_, lora_te_ (its legacy format) or text_encoder., diffusers' ChromaPipeline loads text_encoder. into it (given the LoraConfig of the file's lora_adapter_metadata), and ${COMFY_LOADS_ALONE}`,
  },
  {
    model: 'PixArt', pipeline: /^PixArt/, denoiserKey: /^t_block\.1\.weight$/,
    reach: ['lora_te_', 'lora_te1_', 'text_encoder.'], comfyT5xxl: true,
    tools: `OneTrainer names it lora_te1_, lora_te_ (its legacy format) or text_encoder. (diffusers' PixArt pipelines load no LoRA), and ${COMFY_LOADS_ALONE}`,
  },
  {
    // LTX-2's pipelines (LTX2Pipeline: a Gemma 3) are not these.
    model: 'LTX-Video', pipeline: /^LTX(Condition|ImageToVideo|I2VLongMultiPrompt)?Pipeline$/, denoiserKey: /^patchify_proj\.weight$/,
    reach: ['lora_te1_'], comfyT5xxl: true,
    tools: `no trainer writes a T5 LoRA for it (Lightricks' LTX-Video-Trainer and finetrainers train its transformer alone), diffusers' LTX pipelines load the transformer's LoRA alone, and ${COMFY_LOADS_ALONE}`,
  },
  {
    model: 'Mochi', pipeline: /^MochiPipeline$/, denoiserKey: /^t5_yproj\.weight$/,
    reach: ['lora_te1_'], comfyT5xxl: true,
    tools: `no trainer writes a T5 LoRA for it (genmo's Mochi LoRA trainer and finetrainers train its transformer alone), diffusers' MochiPipeline loads the transformer's LoRA alone, and ${COMFY_LOADS_ALONE}`,
  },
  {
    // Cosmos 1.0 and Cosmos-Predict2: T5-11B, T5 1.0's XXL, which ComfyUI loads alone as its t5xxl
    // (cosmos.py; its model_detection tells them by these keys; its checkpoints keep the T5 under
    // text_encoders.t5xxl. for Cosmos 1.0, under the default cond_stage_model.t5xxl. for Predict2,
    // whose class sets no text_encoder_key_prefix). Cosmos-Predict2.5's is a Qwen2.5-VL.
    model: 'Cosmos', pipeline: /^Cosmos2?(TextToWorld|VideoToWorld|TextToImage)Pipeline$/,
    denoiserKey: /^blocks\.(block0\.blocks\.0\.block\.attn\.to_q\.0|0\.mlp\.layer1)\.weight$/,
    reach: ['lora_te1_'], comfyT5xxl: true,
    tools: `no trainer writes a T5 LoRA for it (diffusion-pipe trains its transformer alone), diffusers' Cosmos pipelines load no LoRA, and ${COMFY_LOADS_ALONE}`,
  },
  {
    model: 'CogVideoX', pipeline: /^CogVideoX/,
    reach: ['lora_te1_'], comfyT5xxl: true,
    tools: `no trainer writes a T5 LoRA for it (CogVideo's own scripts and finetrainers train its transformer alone), diffusers' CogVideoX pipelines load the transformer's LoRA alone, and ComfyUI maps lora_te1_ and its own text_encoders.t5xxl.transformer. to a T5-XXL it loads alone (as its CogVideoX wrapper nodes take it)`,
  },
  {
    model: 'Allegro', pipeline: /^AllegroPipeline$/,
    reach: [],
    tools: 'Allegro\'s own training code trains its transformer alone, diffusers\' AllegroPipeline loads no LoRA, and ComfyUI runs no Allegro model',
    notInComfy: true,
  },
  {
    model: 'CogView3-Plus', pipeline: /^CogView3Plus/,
    reach: [],
    tools: 'diffusers\' CogView3PlusPipeline loads no LoRA, ComfyUI runs no CogView3 model, and no trainer writes a T5 LoRA for it',
    notInComfy: true,
  },
  {
    model: 'BRIA', pipeline: /^BriaPipeline$/,
    reach: [],
    tools: 'diffusers\' BriaPipeline loads no LoRA, ComfyUI runs no BRIA model, and no trainer writes a T5 LoRA for it',
    notInComfy: true,
  },
  {
    model: 'Latte', pipeline: /^LattePipeline$/,
    reach: [],
    tools: 'diffusers\' LattePipeline loads no LoRA, ComfyUI runs no Latte model, and no trainer writes a T5 LoRA for it',
    notInComfy: true,
  },
  {
    // CogVideoX's T5 (google/t5-v1_1-xxl) under a CogVideoX transformer of its own.
    model: 'ConsisID', pipeline: /^ConsisIDPipeline$/,
    reach: [],
    tools: 'diffusers\' ConsisIDPipeline loads the transformer\'s LoRA alone, ComfyUI runs no ConsisID model, and no trainer writes a T5 LoRA for it',
    notInComfy: true,
  },
  {
    // DeepFloyd IF's stages I and II (their text_encoder/ is google/t5-v1_1-xxl's encoder).
    // StableDiffusionLoraLoaderMixin loads `text_encoder.` into it with PEFT; it turns kohya's
    // `lora_te_`/`lora_te1_` into `text_encoder.` names too, but takes their rank from CLIP
    // modules (`q_proj`, …) alone and finds none in a T5, and renames `wi_0` to `wi.0`.
    model: 'DeepFloyd IF', pipeline: /^IF(Img2Img|Inpainting)?(SuperResolution)?Pipeline$/,
    reach: ['text_encoder.'], needsConfig: { prefix: 'text_encoder.', loader: 'diffusers\' IF pipelines' },
    tools: 'no trainer writes a T5 LoRA for it (diffusers\' DreamBooth LoRA script targets CLIP\'s q_proj, k_proj, v_proj and out_proj, SimpleTuner trains its UNet alone), diffusers\' IF pipelines load text_encoder. into it (given the LoraConfig of the file\'s lora_adapter_metadata; no kohya name: they find no rank for kohya\'s T5 modules), and ComfyUI runs no DeepFloyd IF model',
    notInComfy: true,
  },
  {
    // Kandinsky 3's text_encoder/ is FLAN-UL2's encoder (a T5EncoderModel, d_model 4096, 32 layers),
    // loaded the way IF's is (StableDiffusionLoraLoaderMixin).
    model: 'Kandinsky 3', pipeline: /^Kandinsky3(Img2Img)?Pipeline$/,
    reach: ['text_encoder.'], needsConfig: { prefix: 'text_encoder.', loader: 'diffusers\' Kandinsky 3 pipelines' },
    tools: 'no trainer writes a T5 LoRA for it, diffusers\' Kandinsky 3 pipelines load text_encoder. into its FLAN-UL2 encoder (given the LoraConfig of the file\'s lora_adapter_metadata; no kohya name: they find no rank for kohya\'s T5 modules), and ComfyUI runs no Kandinsky 3 model',
    notInComfy: true,
  },
  {
    // Stable Audio Open's text_encoder/ is t5-base; ComfyUI loads it as its t5base (sa_t5.py), whose
    // keys only `text_encoders.t5base.transformer.` reaches (model_lora_keys_clip gives kohya names to t5xxl alone).
    model: 'Stable Audio Open', pipeline: /^StableAudioPipeline$/,
    reach: [],
    tools: 'diffusers\' StableAudioPipeline loads no LoRA, no trainer writes a T5 LoRA for it, and ComfyUI loads its t5-base as its t5base, which only text_encoders.t5base.transformer. reaches',
  },
  {
    // GLM-Image's text_encoder/ is a byT5 glyph encoder (its config.json says so: ComfyUI's byt5_small).
    model: 'GLM-Image', pipeline: /^GlmImagePipeline$/,
    reach: [],
    tools: 'diffusers\' GlmImagePipeline loads no LoRA, ComfyUI runs no GLM-Image model, and no trainer writes a LoRA for its byT5 glyph encoder',
    notInComfy: true,
  },
  {
    // Wan 2.1/2.2's UMT5-XXL (ComfyUI's umt5xxl, which `text_encoders.umt5xxl.transformer.` reaches).
    model: 'Wan', pipeline: /^Wan(ImageToVideo|VACE|VideoToVideo|Animate)?Pipeline$/,
    reach: [],
    tools: 'diffusers\' Wan pipelines load the transformers\' LoRAs alone, no trainer writes a LoRA for its UMT5 (musubi-tuner, ai-toolkit, diffusion-pipe train the transformer alone), and ComfyUI maps kohya\'s T5 names to its t5xxl alone, not to the umt5xxl it loads this UMT5 as',
  },
  {
    // SkyReels-V2 is Wan 2.1's architecture, its text_encoder/ Wan's UMT5-XXL (a UMT5EncoderModel).
    model: 'SkyReels-V2', pipeline: /^SkyReelsV2/,
    reach: [],
    tools: 'diffusers\' SkyReels-V2 pipelines load the transformer\'s LoRA alone, no trainer writes a LoRA for its UMT5, and ComfyUI (which runs it as a Wan model) maps kohya\'s T5 names to its t5xxl alone, not to the umt5xxl it loads this UMT5 as',
  },
  {
    // Wan 2.1 I2V's architecture, its text_encoder/ Wan's UMT5-XXL.
    model: 'ChronoEdit', pipeline: /^ChronoEditPipeline$/,
    reach: [],
    tools: 'diffusers\' ChronoEditPipeline loads the transformer\'s LoRA alone, no trainer writes a LoRA for its UMT5, and ComfyUI maps kohya\'s T5 names to its t5xxl alone, never to a UMT5',
    notInComfy: true,
  },
  {
    // Wan 2.2 TI2V 5B's architecture, its text_encoder/ Wan's UMT5-XXL.
    model: 'Lucy Edit', pipeline: /^LucyEditPipeline$/,
    reach: [],
    tools: 'diffusers\' LucyEditPipeline loads the transformer\'s LoRA alone, no trainer writes a LoRA for its UMT5, and ComfyUI maps kohya\'s T5 names to its t5xxl alone, never to a UMT5',
    notInComfy: true,
  },
  {
    // Wan's UMT5-XXL under a transformer of its own.
    model: 'Helios', pipeline: /^Helios(Pyramid)?Pipeline$/,
    reach: [],
    tools: 'diffusers\' Helios pipelines load the transformer\'s LoRA alone, no trainer writes a LoRA for its UMT5, and ComfyUI maps kohya\'s T5 names to its t5xxl alone, never to a UMT5',
    notInComfy: true,
  },
  {
    // NVIDIA's AnyFlow: Wan 2.1 (bidirectional, or FAR's causal variant) distilled to a flow map; its
    // text_encoder/ is Wan 2.1's UMT5-XXL, taken from the base Wan pipeline by its converter.
    model: 'AnyFlow', pipeline: /^AnyFlow(FAR)?Pipeline$/,
    reach: [],
    tools: 'diffusers\' AnyFlow pipelines load the transformer\'s LoRA alone (WanLoraLoaderMixin), no trainer writes a LoRA for its UMT5, and ComfyUI maps kohya\'s T5 names to its t5xxl alone, never to a UMT5',
    notInComfy: true,
  },
  {
    // Meituan's LongCat-AudioDiT (text to speech): a UMT5EncoderModel in text_encoder/.
    model: 'LongCat-AudioDiT', pipeline: /^LongCatAudioDiTPipeline$/,
    reach: [],
    tools: 'diffusers\' LongCatAudioDiTPipeline loads no LoRA, ComfyUI runs no LongCat-AudioDiT model, and no trainer writes a LoRA for its UMT5',
    notInComfy: true,
  },
  {
    // EleutherAI's Pile-T5-XL as a UMT5EncoderModel: ComfyUI's pile_t5xl (aura_t5.py), which only
    // `text_encoders.pile_t5xl.transformer.` reaches.
    model: 'AuraFlow', pipeline: /^AuraFlowPipeline$/,
    reach: [],
    tools: 'diffusers\' AuraFlowPipeline loads the transformer\'s LoRA alone, no trainer writes a LoRA for its Pile-T5-XL (SimpleTuner trains the transformer alone), and ComfyUI loads it as its pile_t5xl, which only text_encoders.pile_t5xl.transformer. reaches (it maps kohya\'s T5 names to its t5xxl alone)',
  },
];

/** A CLIP text model's module paths (transformers' CLIPTextModel), as kohya flattens them. */
const CLIP_PATH = /^(text_model_|text_projection$)/;

/** t5AloneModel's answer per base's components (null: none of T5_ALONE's), read once for the many modules of a T5 LoRA. */
const aloneIn = new WeakMap<readonly BaseComponent[], { model: T5AloneModel; t5: BaseComponent } | null>();

/**
 * The T5_ALONE model a base is, with its T5: a pipeline by its class, whatever T5 its folder holds
 * (UMT5, byT5, t5-base); a checkpoint by its denoiser's keys, where the T5 is ComfyUI's t5xxl.
 */
function t5AloneModel(components: readonly BaseComponent[]): { model: T5AloneModel; t5: BaseComponent } | undefined {
  let found = aloneIn.get(components);
  if (found === undefined) {
    found = null;
    const encoders = components.filter((c) => c.role === 'text-encoder');
    const [t5] = encoders;
    if (encoders.length === 1 && t5.encoder === 't5') {
      const denoisers = components.filter((c) => c.role === 'denoiser');
      const model = t5.pipelineClass !== undefined ? T5_ALONE.find((m) => m.pipeline.test(t5.pipelineClass!))
        : holdsComfyEncoder(t5, 't5xxl') !== true ? undefined
        : T5_ALONE.find((m) => m.denoiserKey !== undefined && denoisers.some((d) => d.keys.some((k) => m.denoiserKey!.test(k.slice(d.prefix.length)))));
      if (model) found = { model, t5 };
    }
    aloneIn.set(components, found);
  }
  return found ?? undefined;
}

/**
 * Where a kohya or diffusers text encoder module of a T5 path lands on a base whose only text
 * encoder is the T5 of a T5_ALONE model (a pipeline folder of one of its classes, `ChromaPipeline`,
 * `IFPipeline`, `WanPipeline`, …; a checkpoint as ComfyUI saves Chroma's or Cosmos-Predict2's,
 * `cond_stage_model.t5xxl.`, or PixArt's, LTX-Video's, Mochi's or Cosmos 1.0's, `text_encoders.t5xxl.`,
 * beside its denoiser), or why it is left out; likewise ComfyUI's own `text_encoders.t5xxl.transformer.`
 * on a T5-XXL class that ComfyUI does not run that model with (comfyT5xxlAlone). Undefined where this
 * rule does not decide (another base, another kind of name). A kohya module of a CLIP's path (a
 * FLUX.1 LoRA's CLIP-L) is left out there too, the base holding no CLIP.
 */
export function t5Alone(address: ModuleAddress, components: readonly BaseComponent[]): T5Reach | undefined {
  const { part, path } = address;
  if (part === undefined || part === 'unet') return undefined;
  if (address.comfyEncoder !== undefined) return comfyT5xxlAlone(address, components);
  // A kohya CLIP module (a FLUX.1 LoRA's lora_te1_text_model_…): no CLIP here, and ComfyUI leaves it unloaded.
  const clip = address.flat && CLIP_PATH.test(path);
  if (!clip && !isT5Path(path)) return undefined;
  const found = t5AloneModel(components);
  const prefix = address.flat ? `lora_${part}_` : `text_encoder${part === 'te' || part === 'te1' ? '' : `_${part.slice(2)}`}.`;
  if (!found) return clip ? undefined : unknownPipelineT5(address, prefix, components);
  const { model, t5 } = found;
  const at = where(t5);
  if (clip) return { leftOut: `names ${partName(part)}, which the base does not hold: ${model.model}'s only text encoder is a T5 (${at}), where ${model.notInComfy ? 'no tool applies CLIP modules' : 'ComfyUI leaves CLIP modules unloaded'}` };
  if (model.reach.includes(prefix)) {
    if (model.needsConfig?.prefix !== prefix || address.componentConfig) return { component: t5 };
    const { loader } = model.needsConfig;
    return {
      refused: `names ${partName(part, path)} as ${prefix}, which ${loader} load into ${model.model}'s T5 (${at}) only under the LoraConfig that a file's lora_adapter_metadata states for ${prefix.slice(0, -1)} (its ${prefix}* fields), which this file does not: without any metadata diffusers reads the rank from CLIP module names (q_proj, k_proj, v_proj, out_proj, fc1, fc2), finds none in a T5 and fails, and with metadata for other components alone it builds PEFT's default LoraConfig (r 8, lora_alpha 8, no target_modules), not the file's; no other tool applies such a module there (${model.tools}); not supported`,
    };
  }
  return {
    leftOut: `names ${partName(part, path)} as ${prefix}, a name no tool applies to ${model.model}'s T5, its only text encoder (${at}): ${model.tools}${model.notInComfy ? '' : '; ComfyUI leaves such modules unloaded'}`,
  };
}

/**
 * A kohya or diffusers text encoder module of a T5 path on a pipeline folder whose only text
 * encoder is a T5 and whose class (model_index.json `_class_name`) is no T5_ALONE model's: refused,
 * naming the class. The tools number a T5 by the model they run (ComfyUI maps `lora_te1_` to a T5
 * it loads alone, `lora_te2_`/`lora_te3_` to one beside CLIPs; sd-scripts writes `lora_te3_` for
 * Chroma's; diffusers loads `text_encoder.` only under a file's metadata), so for a pipeline no
 * tool is known to apply them to, which name reaches its T5, if any, cannot be told. A kohya name
 * on a T5 that is not ComfyUI's t5xxl (a UMT5, a byT5) is left out, as on any such T5 (ComfyUI maps
 * kohya's T5 names to its t5xxl alone), the warning naming the class. Undefined on any other base.
 */
function unknownPipelineT5(address: ModuleAddress, prefix: string, components: readonly BaseComponent[]): T5Reach | undefined {
  const encoders = components.filter((c) => c.role === 'text-encoder');
  const [t5] = encoders;
  if (encoders.length !== 1 || t5.encoder !== 't5' || t5.pipelineClass === undefined) return undefined;
  if (address.flat && holdsComfyEncoder(t5, 't5xxl') === false) {
    return {
      leftOut: `names ${partName(address.part!, address.path)} as ${prefix}, which ComfyUI maps to its t5xxl alone, and the only text encoder of this ${t5.pipelineClass} pipeline, ${t5.name}, is not T5-XXL; no other tool is known to apply kohya's names to that pipeline's T5`,
    };
  }
  return {
    refused: `names ${partName(address.part!, address.path)} as ${prefix} on a ${t5.pipelineClass} pipeline, whose only text encoder is a T5 (${where(t5)}): no tool is known to apply kohya's or diffusers' text encoder names to that pipeline's T5, and the tools that do number a T5 by the model they run (ComfyUI maps lora_te1_ to a T5 it loads alone and lora_te2_ or lora_te3_ to one beside CLIPs, diffusers' pipelines load text_encoder. into a T5 only under a file's lora_adapter_metadata), so where such a module belongs cannot be told; not supported`,
  };
}

/**
 * ComfyUI's own `text_encoders.t5xxl.transformer.` on a T5_ALONE model that ComfyUI does not run
 * with that T5 as its t5xxl (DeepFloyd IF, Kandinsky 3, Allegro, …), where the T5's class alone
 * would take it: left out. Where the T5 is not T5-XXL's class (Wan's UMT5, a byT5, Stable Audio's
 * t5-base) the base's encoders already leave it out; undefined there, and for any other name.
 */
function comfyT5xxlAlone(address: ModuleAddress, components: readonly BaseComponent[]): T5Reach | undefined {
  if (address.comfyEncoder !== 't5xxl') return undefined;
  const found = t5AloneModel(components);
  if (!found || found.model.comfyT5xxl || holdsComfyEncoder(found.t5, 't5xxl') !== true) return undefined;
  const { model, t5 } = found;
  return {
    leftOut: `names ComfyUI's t5xxl text encoder (text_encoders.t5xxl.), which no tool applies to ${model.model}'s T5, its only text encoder (${where(t5)}): ${model.tools}`,
  };
}

/** Where a T5 is, for messages: a pipeline's folder (`text_encoder/`), or a checkpoint's prefix. */
function where(t5: BaseComponent): string {
  return /^text_encoder(_\d+)?\.$/.test(t5.prefix) ? `${t5.prefix.slice(0, -1)}/` : t5.prefix;
}
