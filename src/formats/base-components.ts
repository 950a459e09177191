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
  const kind = c.encoder ? ` (${ENCODER_NAMES[c.encoder]})` : '';
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
    case 'unet': return components.find((c) => c.role === 'denoiser' && !c.movedOut) ?? components.find((c) => c.role === 'denoiser');
    case 'te': return kind('clip_l') ?? encoders[0];
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

export function partName(part: ModelPart): string {
  return PART_NAMES[part];
}

/**
 * ComfyUI's text encoders, by the name its model gives them (`text_encoders.<name>.transformer.` in
 * its "Extract and Save Lora" files), whose keys after `transformer.` are the transformers model's
 * own: its CLIP, T5 and BERT encoders load transformers' checkpoints as they are (a BERT's under
 * `bert.`, which a BertModel folder stores without). Each is held by a pipeline folder of `classes`;
 * a CLIP only by the folder of its kind (pipeline-encoders.ts), a T5 of a pipeline that has its own
 * (`pipeline`) only there: AuraFlow's UMT5 is ComfyUI's `pile_t5xl`, never Wan's `umt5xxl`, and
 * HunyuanDiT's T5EncoderModel its `mt5xl`, never a `t5xxl`. Other names (`llama`, `qwen25_7b`, …)
 * are ComfyUI's own models of an LLM, named otherwise than a pipeline's folder.
 */
const COMFY_ENCODERS: Readonly<Record<string, { classes: RegExp; kind?: EncoderKind; pipeline?: RegExp; keyPrefix?: string }>> = {
  clip_l: { classes: CLIP_TEXT_CLASS, kind: 'clip_l' },
  clip_g: { classes: CLIP_TEXT_CLASS, kind: 'clip_g' },
  clip_h: { classes: CLIP_TEXT_CLASS, kind: 'openclip' },
  t5xxl: { classes: /^T5EncoderModel$/, kind: 't5' },
  umt5xxl: { classes: /^UMT5EncoderModel$/ },
  // comfy/text_encoders/aura_t5.py (AuraT5Model, name "pile_t5xl") and hydit.py (HyditModel's mt5xl and hydit_clip).
  pile_t5xl: { classes: /^UMT5EncoderModel$/, pipeline: /^AuraFlow/ },
  mt5xl: { classes: /^M?T5EncoderModel$/, pipeline: /^HunyuanDiT/ },
  hydit_clip: { classes: /^BertModel$/, pipeline: /^HunyuanDiT/, keyPrefix: 'bert.' },
};

/**
 * Whether a text encoder component can be ComfyUI's encoder of that name: by its pipeline folder's
 * class (and kind, for a CLIP; and pipeline, for the encoders only one pipeline has), or by what its
 * keys say it is; undefined where neither tells (a folder of another class, a CLIP folder whose kind
 * is in doubt, a pipeline whose class model_index.json leaves out).
 */
export function holdsComfyEncoder(component: BaseComponent, name: string): boolean | undefined {
  const wanted = Object.hasOwn(COMFY_ENCODERS, name) ? COMFY_ENCODERS[name] : undefined;
  if (component.className) {
    const className = component.className;
    const candidates = Object.values(COMFY_ENCODERS).filter((e) => e.classes.test(className));
    if (!wanted) return candidates.length > 0 ? false : undefined;
    if (!wanted.classes.test(className)) return false;
    if (CLIP_TEXT_CLASS.test(className)) return component.encoder === undefined ? undefined : component.encoder === wanted.kind;
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
 * A module path of ComfyUI's encoder `name` (after `transformer.`) as a pipeline folder of its class
 * stores it: its BERT's `bert.` dropped (transformers' BertModel saves its keys without it).
 */
export function comfyEncoderPath(name: string, path: string): string {
  const prefix = Object.hasOwn(COMFY_ENCODERS, name) ? COMFY_ENCODERS[name].keyPrefix : undefined;
  return prefix && path.startsWith(prefix) ? path.slice(prefix.length) : path;
}
