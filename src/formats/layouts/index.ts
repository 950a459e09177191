/**
 * The layout registry and the one question the plan asks it: where in this base does this module
 * land? The module's model part first narrows the base to that component's tensors
 * (base-components.ts); then the layouts are tried in order. The first that finds the module
 * decides; one that finds several candidates stops the search (we report, never guess).
 */
import { loneT5Unreached, otherLoneT5 } from '../pipeline-encoders.js';
import { t5Alone, t5BesideClips } from '../t5-beside-clips.js';
import { baseComponents, comfyEncoderDoubt, comfyEncoderFilePath, comfyEncoderPath, componentForPart, holdsComfyEncoder, isT5Path, movedOutOf, namesT5, partName, type BaseComponent, type CombinedPrior, type WeightlessFolder } from '../base-components.js';
import type { ModuleAddress } from '../module-address.js';
import { BaseKeyIndex, type KeyResolution } from './base-key-index.js';
import { dottedPath } from './dotted-path.js';
import { expertParameterMisses } from './expert-parameter-misses.js';
import { linearizedExperts } from './linearized-experts.js';
import { ggufExpertSlices } from './gguf-expert-slices.js';
import { perExpertTensors } from './per-expert-tensors.js';
import { fusedExpertRows } from './fused-expert-rows.js';
import { peftWrappedLayers } from './peft-wrapped-layers.js';
import { ggufTensorPathMiss, hfToGguf } from './hf-to-gguf.js';
import { auraflow } from './auraflow.js';
import { comfyLinear1Qkv } from './comfy-linear1-qkv.js';
import { comfyLlmHead } from './comfy-llm-head.js';
import { cosmos } from './cosmos.js';
import { cosmos1 } from './cosmos1.js';
import { internvlOriginal } from './internvl-original.js';
import { kohyaFlat } from './kohya-flat.js';
import { lumina2 } from './lumina2.js';
import { ltxVideo } from './ltx-video.js';
import { ltx2 } from './ltx2.js';
import { mochi } from './mochi.js';
import { krea2 } from './krea2.js';
import { hidreamO1 } from './hidream-o1.js';
import { hidreamOneTrainer } from './hidream-onetrainer.js';
import { ideogram4 } from './ideogram4.js';
import { aceStep } from './ace-step.js';
import { minimaxH3, minimaxH3Original, minimaxH3Ref } from './minimax-h3.js';
import { mlxSwitchExperts, stackedWeightMiss } from './mlx-switch-experts.js';
import { mlxVlmQwen } from './mlx-vlm-qwen.js';
import { mistralConsolidated } from './mistral-consolidated.js';
import type { BaseView, Layout, Placement } from './layout.js';
import { fluxBfl } from './flux-bfl.js';
import { flux2Bfl } from './flux2-bfl.js';
import { hunyuanDit } from './hunyuan-dit.js';
import { hunyuanVideo } from './hunyuan-video.js';
import { openclipText } from './openclip-text.js';
import { pixart } from './pixart.js';
import { sana } from './sana.js';
import { sd3Sai } from './sd3-sai.js';
import { wanOriginal } from './wan-original.js';
import { longcatVideoKijai } from './longcat-video-kijai.js';
import { combinedExpert, wan22CombinedExperts } from './wan22-combined-experts.js';
import { xlabsFlux } from './xlabs-flux.js';
import { zImage } from './z-image.js';
import { sdLdmUnet } from './sd-ldm-unet.js';
import { stableCascade } from './stable-cascade.js';
import { stableCascadeDiffusers } from './stable-cascade-diffusers.js';
import { resolveConvertedPath, vlmCheckpoint } from './vlm-checkpoint.js';
import { gemma4TextCheckpoint } from './gemma4-text-checkpoint.js';
import { ernieVlExperts } from './ernie-vl-experts.js';

export type { BaseView, Layout, LayoutResolution, Placement, RowSegment, TransposedBlocks, TransposedWithin } from './layout.js';
export { allTransposedBlockSegments, transposedBlockSegments } from './layout.js';
export { BaseKeyIndex, type KeyResolution } from './base-key-index.js';

/**
 * In the order they are tried: the output head of one of ComfyUI's LLM text encoders in its own
 * naming first (ComfyUI's model of the encoder has none, so the module is left out before a head by
 * its name, or one the merge would write untied, is found), then GGUF names (it answers only for a GGUF base, by its
 * architecture; then one expert's slice of a llama.cpp MoE LoRA), then a vision-language model's
 * two namings (it answers only for models whose config.json `architectures` has a checkpoint key
 * map, or π0's files known by their keys, and its answer must not be preempted by a suffix match on the base's own names; ERNIE-4.5-VL's
 * fused text and vision experts and its routers on its per-expert checkpoint beside it), then
 * InternVL's refusals of names from its other checkpoint format (a reason, heard unless a later
 * layout finds the module), then HunyuanDiT's (its two namings share `blocks.N` and swap the names
 * of two norms, so its refusal of those must come before a match by name), then names as the base
 * spells them, then translations (the Hunyuan
 * DiTs' answers only on their bases, which the Flux layout leaves to it, though ComfyUI's Hunyuan
 * naming shares Flux's BFL names; Z-Image's, Lumina 2's, AuraFlow's, PixArt's and FLUX.2's only on
 * their own bases, where FLUX.1's steps aside from FLUX.2; Sana's only on Sana bases, whose original
 * names PixArt's share; PixArt's before SD3's and Flux's, whose
 * rules name PixArt's `final_layer.linear`, `x_embedder.proj` and `t_embedder` too; LTX-2's and LTX-Video's each only on their own model, though LTX-2 keeps
 * LTX-Video's names for its video half). Cosmos-Predict2's (Anima's) comes before `dotted-path` too:
 * Anima's file holds its LLM adapter's `llm_adapter.blocks.0.self_attn.q_proj` beside the DiT's
 * `blocks.0.self_attn.q_proj`, so its own LoRAs' names must be looked up exactly, never by suffix;
 * Cosmos 1.0's beside it, exactly too, each only on its own model (diffusers names both alike).
 * OneTrainer's HiDream text encoder names (OMI's `clip_l.`, `llama.`; LEGACY's `lora_te4_`) before it as well, only on
 * HiDream-I1 bases, each in the pipeline folder OneTrainer loads that encoder from.
 * A checkpoint saved with PEFT LoRA layers in place (Phi-4-multimodal's `base_layer.weight`) is read
 * before `dotted-path` too, so that a module naming one of its built-in LoRA layers is refused, not
 * matched by name; so is ai-toolkit's combined LoRA of Wan 2.2's two experts, whose
 * `transformer_1.blocks.…` would otherwise land by its tail on whichever expert the base is (on a
 * pipeline that says which folder is which expert, the locator lands each in its own first); so are
 * Mistral's own names (mistral-finetune's `layers.N.attention.wq`), which mistral-inference reads as
 * the decoder's tensor of that exact name, never by a suffix (a Pixtral file's vision encoder has
 * `vision_encoder.transformer.layers.N.attention.wq`), or as the tensor transformers' conversion renames it to.
 * Stable Cascade's answers only on a stage C or stage B base, for ComfyUI's to_q/to_k/to_v its checkpoint lacks,
 * and on diffusers' StableCascadeUNet only for the ComfyUI names diffusers' conversion renames;
 * Mochi's only on Mochi bases, Krea 2's only on Krea 2 bases, Ideogram 4's and ACE-Step's only on their diffusers transformers; Kijai's Wan-named LongCat-Video LoRAs only on LongCat-Video's own DiT. ComfyUI's `single_blocks.N.linear1_qkv` (a name no base holds) only
 * on Flux-family bases. mlx-lm's stacked experts (`switch_mlp`) answer after the names as
 * the base spells them, for a per-expert name the base stores only stacked; transformers 5's fused
 * experts (`experts.gate_up_proj`, no `.weight`) after them, for a per-expert name too. A fused expert
 * parameter stored in another form (MXFP4, one tensor per expert) is only explained, after the
 * names as the base spells them; one expert's Linear layer of experts a trainer split (Unsloth's
 * gpt-oss, axolotl's Llama 4) lands there too, transposed on its slab of a base that stores them fused.
 */
export const LAYOUTS: readonly Layout[] = [
  comfyLlmHead, hfToGguf, ggufExpertSlices, vlmCheckpoint, gemma4TextCheckpoint, ernieVlExperts, mlxVlmQwen, internvlOriginal, hunyuanDit, cosmos, cosmos1, peftWrappedLayers, wan22CombinedExperts, mistralConsolidated, minimaxH3Ref, minimaxH3Original, minimaxH3, hidreamOneTrainer, dottedPath, perExpertTensors, expertParameterMisses, linearizedExperts, mlxSwitchExperts, fusedExpertRows, kohyaFlat, sdLdmUnet, openclipText, hunyuanVideo, zImage, lumina2, auraflow, sana, pixart, flux2Bfl, fluxBfl, sd3Sai, xlabsFlux, comfyLinear1Qkv, wanOriginal, longcatVideoKijai, ltx2, ltxVideo, stableCascade, stableCascadeDiffusers, mochi, krea2, ideogram4, hidreamO1, aceStep,
];

/** Experts counted at most, per expert name (the largest MoE models have a few hundred). */
const MAX_EXPERTS = 1 << 16;

export type Location =
  | { found: true; targets: Placement[]; layout: string }
  | {
    found: false;
    code: 'UNKNOWN_MODULE' | 'AMBIGUOUS_MODULE' | 'SHAPE_MISMATCH';
    /** Why, without the module's name (the plan adds it). */
    message: string;
    /**
     * The refusal is of the saved module this one is an expert of (ModuleAddress.experts), the same
     * for each of its experts: said once, under this name.
     */
    module?: string;
    /**
     * The module names a component the base does not hold (a Flux LoRA's text-encoder modules on
     * a transformer-only file), or a tensor only ComfyUI's model of it has (unstoredClipProjection):
     * left out, as kohya's and ComfyUI's loaders do, and said so.
     */
    missingComponent?: boolean;
    /** No layout placed it, and none said why: the plain "no matching tensor" (see familyMismatch). */
    unmatched?: boolean;
    /** It names a block past the base's last: a tensor the base does not have, as for `unmatched`, with the reason said. */
    pastLastBlock?: boolean;
    /**
     * Refusals alike for many modules (a pipeline's text encoder folder without weights): the plan
     * says them in one line per `key`, `many` giving it for `count` modules, the first named `first`.
     */
    grouped?: { key: string; many: (count: number, first: string) => string };
  };

export interface BaseShapes {
  readonly tensors: ReadonlyMap<string, { readonly shape: readonly number[]; readonly storedShape?: readonly number[] }>;
  /** config.json `architectures`, when the base has one. */
  readonly architectures?: readonly string[];
  /** The base's components when its files say them (pipelines, component folders); else found from the keys. */
  readonly components?: readonly BaseComponent[];
  /** A pipeline's text encoder folders listed in model_index.json without weights (BaseModel.weightlessEncoders). */
  readonly weightlessEncoders?: readonly WeightlessFolder[];
  /** A combined pipeline's prior folders, which no LoRA name routes to (BaseModel.combinedPrior). */
  readonly combinedPrior?: CombinedPrior;
  /** The base file's typed metadata (GGUF), for layouts that need it. */
  metadata?(key: string): unknown;
  /** The fields of config.json, when the base has one, for layouts that need the model's sizes. */
  readonly config?: Readonly<Record<string, unknown>>;
}

/** The combined pipelines whose prior is Stable Cascade's stage C (or Würstchen v2's), which `lora_prior_unet_` / `lora_prior_te_` name. */
const STAGE_C_PIPELINES: ReadonlySet<string> = new Set(['StableCascadeCombinedPipeline', 'WuerstchenCombinedPipeline']);

/** Finds modules in one base: its components, and an index of keys per component, built once. */
export class ModuleLocator {
  readonly components: readonly BaseComponent[];
  private readonly whole: BaseView;
  private readonly views = new Map<BaseComponent, BaseView>();
  /** Experts the base holds per expert name with the index left out (expertCountMiss), and where expert 0 lands. */
  private readonly expertCounts = new Map<string, { count: number; first: string }>();

  /**
   * The components with the text encoder folders a pipeline lists without weights (weightless), by
   * which a text encoder module is routed as on the complete pipeline: where it would land in one
   * of those, it is refused naming the folder; where the complete pipeline leaves it out, so does this.
   */
  private readonly listed: readonly BaseComponent[];
  private readonly weightless = new Map<BaseComponent, WeightlessFolder>();

  constructor(private readonly base: BaseShapes) {
    this.components = base.components ?? baseComponents(base.tensors.keys());
    this.whole = this.view(base.tensors.keys());
    for (const w of base.weightlessEncoders ?? []) this.weightless.set({ ...w.component, keys: [] }, w);
    this.listed = this.weightless.size === 0 ? this.components : [...this.components, ...this.weightless.keys()];
  }

  /** What `test` says of the whole base (a model's own names: isFlux2, isHunyuanDit). */
  baseIs<T>(test: (base: BaseView) => T): T {
    return test(this.whole);
  }

  /** A full tensor path (PEFT's modules_to_save) among all of the base's keys. */
  resolveTensorPath(path: string): KeyResolution {
    return ggufTensorPathMiss(this.whole, path) ?? resolveConvertedPath(this.whole, path) ?? stackedWeightMiss(this.whole, path) ?? this.whole.index.resolveDotted(path);
  }

  locate(address: ModuleAddress): Location {
    const prior = this.priorStageAddress(address);
    if (prior) return this.locateAnywhere(prior);
    const location = this.locateAnywhere(address);
    return this.combinedPriorMiss(address, location) ?? location;
  }

  /**
   * A module that names the prior stage of a combined pipeline whose prior is in `prior_prior/`
   * (WuerstchenCombinedPipeline, StableCascadeCombinedPipeline, Kandinsky's), as the address of that
   * folder: the prior pipeline's own `prior.` (WuerstchenPriorPipeline.save_lora_weights writes its
   * LoRAs so, under unet_name "prior", and the combined pipeline's `prior_pipe` is built from
   * `prior_prior`; OneTrainer's Würstchen and Stable Cascade LoRAs hold `prior.` too), and kohya's
   * `lora_prior_unet_` / `lora_prior_te_` (ComfyUI's Stable Cascade prior and its CLIP-G, OneTrainer's
   * LEGACY Stable Cascade form) on `prior_prior/` / `prior_text_encoder/` of Stable Cascade's and
   * Würstchen's. Undefined elsewhere, and where the base has a `prior.` of its own.
   */
  private priorStageAddress(address: ModuleAddress): ModuleAddress | undefined {
    const folders = this.base.combinedPrior?.folders;
    if (!folders) return undefined;
    const onto = (folder: string, path: string): ModuleAddress | undefined =>
      folders.some((f) => f.folder === folder) ? { path: `${folder}${address.flat ? '_' : '.'}${path}`, flat: address.flat } : undefined;
    if (address.priorStage) {
      // Stable Cascade's names (Würstchen v2 its predecessor, OneTrainer's one model for both); a
      // Kandinsky prior is no model they name.
      if (!STAGE_C_PIPELINES.has(this.base.combinedPrior!.pipelineClass)) return undefined;
      return onto(address.part === 'unet' || address.part === undefined ? 'prior_prior' : 'prior_text_encoder', address.path);
    }
    if (address.part === undefined && !address.flat && address.path.startsWith('prior.') && !this.whole.keys.some((k) => k.startsWith('prior.'))) {
      return onto('prior_prior', address.path.slice('prior.'.length));
    }
    return undefined;
  }

  /**
   * A module on a combined pipeline (CombinedPrior) that does not name a prior folder but lands in
   * one by the end of its name, or fits a tensor there while landing elsewhere or nowhere (a prior's
   * LoRA in its own names, `transformer_blocks.0.attn1.to_q`, or kohya's `lora_prior_unet_`, against
   * the decoder's UNet): which of the pipeline's models it is for cannot be told, and diffusers'
   * combined pipelines load no LoRA: refused naming the folder. A module that names the folder
   * (`prior_prior.…`) lands there by that name.
   */
  private combinedPriorMiss(address: ModuleAddress, location: Location): Location | undefined {
    const prior = this.base.combinedPrior;
    if (!prior || prior.folders.length === 0) return undefined;
    if (!location.found && !location.unmatched && !location.missingComponent) return undefined;
    if (prior.folders.some((f) => address.path.startsWith(`${f.folder}.`))) return undefined;
    const flat = (s: string) => s.replaceAll('.', '_');
    const fits = (rest: string) => {
      const stem = rest.replace(/\.weight$/, '');
      return address.flat ? flat(stem) === address.path || flat(stem).endsWith(`_${address.path}`) : stem === address.path || stem.endsWith(`.${address.path}`);
    };
    for (const { folder, className } of prior.folders) {
      const prefix = `${folder}.`;
      const where = `${folder}/ (${className}), the prior's in its ${prior.pipelineClass}, a folder no LoRA name routes to here`;
      const landed = location.found ? location.targets.find((t) => t.baseKey.startsWith(prefix))?.baseKey : undefined;
      if (landed) {
        return { found: false, code: 'UNKNOWN_MODULE', message: `lands by the end of its name on ${landed} in ${where}; not supported — name the folder (${prefix}${address.flat ? '…' : address.path}) or give the prior pipeline's own folder as the base` };
      }
      const key = this.whole.keys.find((k) => k.startsWith(prefix) && fits(k.slice(prefix.length))) ?? (location.found ? this.translatedInto(folder, address, location.layout) : undefined);
      if (key) {
        const elsewhere = location.found ? `, as well as ${location.targets[0].baseKey} where it would land` : '';
        return {
          found: false, code: 'UNKNOWN_MODULE',
          message: `fits ${key} in ${where}${elsewhere}, so which of the pipeline's models it is for cannot be told (diffusers' combined pipelines load no LoRA); not supported — give the prior's or the decoder's own pipeline folder as the base`,
        };
      }
    }
    return undefined;
  }

  /**
   * Where the layout that placed a module outside a prior folder (ComfyUI's Stable Cascade names on the
   * decoder's StableCascadeUNet) would place the same name in `folder`: the tensor it fits there too.
   */
  private translatedInto(folder: string, address: ModuleAddress, layoutName: string): string | undefined {
    const layout = LAYOUTS.find((l) => l.name === layoutName);
    if (!layout || layout === dottedPath) return undefined;
    const there = layout.resolve({ path: `${folder}${address.flat ? '_' : '.'}${address.path}`, flat: address.flat }, this.whole);
    return there?.found ? there.targets[0].baseKey : undefined;
  }

  private locateAnywhere(address: ModuleAddress): Location {
    if (address.experts) {
      const miss = this.expertCountMiss(address, address.experts);
      if (miss) return miss;
    }
    // Parts restrict matching only where the base's keys say which component is which.
    if (address.part === undefined || this.components.length === 0) {
      const otherT5 = this.otherT5Alone(address);
      if (otherT5) return otherT5;
      const comfyEncoder = this.comfyEncoder(address);
      if (comfyEncoder) return comfyEncoder;
      const r = tryLayouts(address, this.whole);
      if (r.found || !r.ambiguous || address.part !== undefined || !this.components.some((c) => c.role === 'denoiser')) return describe(r);
      // A bare name that fits several components is the diffusion model's: ComfyUI maps bare names
      // to `diffusion_model.` (model_lora_keys_unet, for the models whose LoRAs carry them: LTX-Video
      // and LTX-2, Qwen-Image, Kandinsky 5, DiffSynth-Studio's FLUX.1), and DiffSynth-Studio loads
      // them into its DiT. Diffusers' LTX-2 connectors reuse the transformer's block names.
      // On a combined pipeline (a prior and a decoder UNet) the denoiser's answer says which folders it fits.
      const denoiser = this.locate({ ...address, part: 'unet' });
      return denoiser.found || (this.base.combinedPrior?.folders.length && denoiser.code === 'UNKNOWN_MODULE') ? denoiser : describe(r);
    }
    const doubt = clipDoubt(address, this.listed, this.base.combinedPrior);
    if (doubt) return { found: false, code: 'UNKNOWN_MODULE', message: doubt };
    // ai-toolkit's combined Wan 2.2 LoRA on a pipeline that says which folder is which expert.
    const expert = combinedExpert(address, this.components);
    if (expert) {
      const r = tryLayouts(expert.address, this.componentView(expert.component));
      return describe(r.found ? { ...r, layout: wan22CombinedExperts.name } : r, expert.component);
    }
    // A T5 module beside CLIPs (FLUX.1, SD3) or on a model's only T5 (Chroma, PixArt): its part's
    // number reaches the T5 only as the tools that write and apply T5 LoRAs number it (t5-beside-clips.ts).
    const listed = this.listed;
    const t5 = t5BesideClips(address, listed) ?? t5Alone(address, listed);
    if (t5?.leftOut !== undefined) return { found: false, code: 'UNKNOWN_MODULE', missingComponent: true, message: t5.leftOut };
    if (t5?.refused !== undefined) return { found: false, code: 'UNKNOWN_MODULE', message: t5.refused };
    let component = t5?.component ?? componentForPart(address.part, listed, address.anyFirstEncoder);
    // ComfyUI's named encoder (`text_encoders.t5xxl.`) only on a folder of a class that holds it:
    // not T5 on a pipeline's UMT5 (Wan), not CLIP-L on its Llama (HunyuanVideo). kohya's T5 modules
    // (`lora_te3_`, OneTrainer's Flux `lora_te2_`) and diffusers' `text_encoder_3.` (SD3's) are its
    // t5xxl too: ComfyUI maps `lora_teN_` T5 keys to no other T5, so never to a byT5 or mT5 folder.
    const t5xxl = component?.encoder === 't5' && (address.flat || address.part === 'te3');
    const comfy = address.comfyEncoder ?? (t5xxl ? 't5xxl' : undefined);
    if (comfy && component && holdsComfyEncoder(component, comfy) === false) {
      const others = listed.filter((c) => c !== component && c.role === 'text-encoder' && holdsComfyEncoder(c, comfy) !== false);
      if (others.length > 0) {
        return {
          found: false, code: 'UNKNOWN_MODULE',
          message: `names ComfyUI's ${comfy} text encoder (text_encoders.${comfy}.), which is not ${component.name}, and which of ${others.map((c) => c.name).join(', ')} it is cannot be told: not supported`,
        };
      }
      component = undefined;
    }
    // kohya's `lora_te2_` is SDXL's second encoder: ComfyUI maps it to a CLIP-G only where a CLIP-L is
    // present, never to the only CLIP of an SDXL refiner or Stable Cascade, where `lora_te_` lands.
    if (address.part === 'te2' && address.flat && component?.encoder === 'clip_g' && !listed.some((c) => c.encoder === 'clip_l')) {
      return {
        found: false, code: 'UNKNOWN_MODULE', missingComponent: true,
        message: `names ${partName('te2')} as SDXL numbers its encoders, which the base does not hold: its only CLIP, ${component.name}, is its first encoder, as an SDXL refiner's is (ComfyUI maps lora_te_ there, not lora_te2_)`,
      };
    }
    if (!component) {
      // A CLIP-L module where the first encoder is another CLIP (an SDXL refiner's CLIP-G); a T5 module
      // (a T5-only model's lora_te1_) is none of that, and is told what the base holds instead.
      const first = address.part === 'te1' && !isT5Path(address.path) ? componentForPart('te1', listed, true) : undefined;
      if (first) {
        return {
          found: false, code: 'UNKNOWN_MODULE', missingComponent: true,
          message: `names ${partName(address.part)}, which the base does not hold (it holds ${first.name} in its place, as an SDXL refiner does; ComfyUI maps no CLIP-L module there either)`,
        };
      }
      // kohya's `lora_te_` on a ComfyUI bundle of several of its own encoders: ComfyUI maps it to none.
      const bundled = this.components.filter((c) => c.comfyName !== undefined);
      if (address.part === 'te' && bundled.length > 1) {
        return {
          found: false, code: 'UNKNOWN_MODULE', missingComponent: true,
          message: `names ${partName('te')}, which is none of the base's ${bundled.map((c) => c.name).join(', ')}: ComfyUI maps lora_te_ to one of its own encoders only where a bundle holds that one alone`,
        };
      }
      const held = this.components.map((c) => c.name).join(', ');
      return { found: false, code: 'UNKNOWN_MODULE', message: `names ${partName(address.part, address.path)}, which the base does not hold (it holds ${held})`, missingComponent: true };
    }
    const weightless = this.weightless.get(component);
    if (weightless) return this.weightlessMiss(partName(address.part, address.path), weightless);
    let result = tryLayouts(address, this.componentView(component));
    // A module the pipeline moved out of the component: found there, or why it is not.
    for (const other of result.found || result.ambiguous ? [] : movedOutOf(component, this.components)) {
      const there = tryLayouts(address, this.componentView(other));
      if (!there.found && !there.ambiguous && !there.why) continue;
      [result, component] = [there, other];
      break;
    }
    if (result.found || result.ambiguous) return describe(result, component);
    const clip = unstoredClipProjection(address, component);
    if (clip) {
      return {
        found: false, code: 'UNKNOWN_MODULE', missingComponent: true,
        message: `names ${clip}'s text_projection, which ${component.name} does not store: ComfyUI gives its ${clip} an identity projection there, which models whose files leave it out (SD1.x, SD2, SDXL, FLUX.1) do not use`,
      };
    }
    // Say so when the name fits another component: a wrong prefix, not a missing tensor.
    const elsewhere = tryLayouts(address, this.whole);
    if (elsewhere.found) {
      const key = elsewhere.targets[0].baseKey;
      const owner = this.components.find((c) => c.keys.includes(key));
      return {
        found: false, code: 'UNKNOWN_MODULE',
        message: `its prefix names ${partName(address.part, address.path)}, but its path matches ${key}${owner ? ` in ${owner.name}` : ''}; the base has no such tensor in ${component.name}`,
      };
    }
    return describe(result, component);
  }

  /**
   * A text encoder module that would land in a folder the pipeline's model_index.json lists without
   * its weights: refused naming the folder and what to do, one line for all of an adapter's modules
   * there (Location.grouped).
   */
  private weightlessMiss(names: string, { folder, className, byPosition }: WeightlessFolder): Location {
    const why = `but the base's model_index.json lists ${folder} (${className}) and ${folder}/ holds no .safetensors weights (it holds ${this.components.map((c) => c.name).join(', ')})` +
      `${byPosition === undefined ? '' : `; which CLIP ${folder}/ holds is not said: ${byPosition}`}: ` +
      `give the complete pipeline folder, with ${folder}/'s weights, or give the transformer's (or UNet's) own folder as the base to merge without the text encoder modules (they are then left out with a warning)`;
    return {
      found: false, code: 'UNKNOWN_MODULE', message: `names ${names}, ${why}`,
      grouped: { key: folder, many: (count, first) => `${count} modules are for ${folder}/ (the first, "${first}", names ${names}), ${why}` },
    };
  }

  /**
   * One expert of factors stacked for `stack.count` experts (mlx-lm's LoRASwitchLinear) on a base
   * holding another count there: refused whole, as mlx-lm refuses to load them (its load_adapters
   * checks each factor's shape against the layer's, whose experts are the model's). The base's count
   * is how many of experts 0, 1, … the layouts find, so it is the same question wherever the names
   * resolve: one tensor per expert (transformers' checkpoint), slabs of a stacked tensor (mlx's,
   * GGUF's). None found: not this check's to refuse (the module's own miss says why).
   */
  private expertCountMiss(address: ModuleAddress, stack: NonNullable<ModuleAddress['experts']>): Location | undefined {
    const named = /^(.*\.experts\.)\d+(\..+)$/.exec(address.path);
    if (!named) return undefined;
    const [, head, tail] = named;
    const key = `${address.part ?? ''}:${head}:${tail}`;
    let held = this.expertCounts.get(key);
    if (held === undefined) {
      const plain: ModuleAddress = { path: address.path, flat: address.flat, ...(address.part ? { part: address.part } : {}) };
      const at = (k: number) => this.locate({ ...plain, path: `${head}${k}${tail}` });
      const first = at(0);
      held = { count: 0, first: first.found ? first.targets[0].baseKey : '' };
      while (held.count < MAX_EXPERTS && (held.count === 0 ? first : at(held.count)).found) held.count++;
      this.expertCounts.set(key, held);
    }
    if (held.count === 0 || held.count === stack.count) return undefined;
    return {
      found: false, code: 'SHAPE_MISMATCH', module: stack.module,
      message: `its factors are stacked for ${stack.count} experts, but the base has ${held.count} (${head}0–${held.count - 1}${tail}, expert 0 on ${held.first}); mlx-lm loads LoRASwitchLinear factors only onto a layer of the model's own count of experts: merge into the model the adapter was trained on`,
    };
  }

  /**
   * A module of one of ComfyUI's text encoders that names no part of ours (`text_encoders.umt5xxl.`,
   * `text_encoders.qwen25_7b.`: comfy/lora.py's generic form, written by its "Extract and Save
   * Lora"). On a base that holds that prefix (a ComfyUI bundle) it lands by name (undefined here);
   * on a pipeline, on the one text encoder folder whose model_index.json class is that encoder's
   * (UMT5EncoderModel for `umt5xxl`), by the keys after `transformer.`, which are transformers'
   * own; left out where the base holds no such encoder (ComfyUI logs "lora key not loaded" for
   * them), and refused where which encoder it is cannot be told (a folder of another class).
   */
  private comfyEncoder(address: ModuleAddress): Location | undefined {
    const named = /^text_encoders\.([^.]+)\.(?:transformer\.(.+))?/.exec(address.path);
    if (!named || address.part !== undefined) return undefined;
    const [prefix, name, rest] = [`text_encoders.${named[1]}.`, named[1], named[2]];
    if (this.whole.keys.some((k) => k.startsWith(prefix))) return undefined;
    // A folder whose config.json rules the encoder out (a T5-XXL for `byt5_small`) says why.
    const held = this.components.map((c) => (c.ruledOut && Object.hasOwn(c.ruledOut, name) ? `${c.name}, whose ${c.ruledOut[name]}` : c.name)).join(', ');
    const missing: Location = { found: false, code: 'UNKNOWN_MODULE', message: `names ComfyUI's ${name} text encoder (${prefix}), which the base does not hold (it holds ${held})`, missingComponent: true };
    // A lone file of the encoder's checkpoint in the names comfy/sd.py renames on loading it.
    const fileStored = this.components.length === 0 && rest !== undefined ? comfyEncoderFilePath(name, rest, this.whole.keys) : undefined;
    if (fileStored !== undefined) {
      const head = comfyLlmHead.resolve(address, this.whole);
      if (head) return describe(head.found ? { ...head, layout: comfyLlmHead.name } : head);
      return describe(tryLayouts({ path: fileStored, flat: false }, this.whole));
    }
    const encoders = this.components.filter((c) => c.role === 'text-encoder');
    const holding = encoders.filter((c) => holdsComfyEncoder(c, name) === true);
    // The one folder of its class that model_index.json lists without weights, where no folder with
    // weights holds it; or the one that may (an LLM's class whose config.json, which says which LLM, did not come either).
    const unweighed = holding.length === 0 ? [...this.weightless.keys()] : [];
    const listed = unweighed.filter((c) => holdsComfyEncoder(c, name) === true);
    const maybe = listed.length === 0 ? unweighed.filter((c) => holdsComfyEncoder(c, name) === undefined) : [];
    if (listed.length === 1 || maybe.length === 1) return this.weightlessMiss(`ComfyUI's ${name} text encoder (${prefix})`, this.weightless.get(listed[0] ?? maybe[0])!);
    if (encoders.length === 0) return this.components.some((c) => c.role === 'denoiser') ? missing : undefined;
    if (holding.length === 1 && rest !== undefined) {
      const head = comfyLlmHead.resolve(address, this.componentView(holding[0]));
      if (head) return describe(head.found ? { ...head, layout: comfyLlmHead.name } : head, holding[0]);
      const stored = comfyEncoderPath(name, rest, holding[0]);
      if (stored.doubt !== undefined) return { found: false, code: 'UNKNOWN_MODULE', message: `names ComfyUI's ${name} text encoder (${prefix}), but ${stored.doubt}: not supported` };
      return describe(tryLayouts({ path: stored.path, flat: false }, this.componentView(holding[0])), holding[0]);
    }
    if (holding.length === 0 && encoders.every((c) => holdsComfyEncoder(c, name) === false)) return missing;
    const unknown = holding.length > 0 ? holding : encoders.filter((c) => holdsComfyEncoder(c, name) === undefined);
    return {
      found: false, code: 'UNKNOWN_MODULE',
      message: `names ComfyUI's ${name} text encoder (${prefix}), and which of the base's text encoders holds it cannot be told (${unknown.map((c) => [c.name, comfyEncoderDoubt(c, name)].filter(Boolean).join(': ')).join(', ')}): not supported`,
    };
  }

  /**
   * A module of one of ComfyUI's T5 encoders (`byt5_small`, `t5xxl`, `umt5xxl`, …; kohya's and
   * diffusers' T5 parts are its t5xxl: ComfyUI maps `lora_teN_` T5 keys to no other T5) on a T5
   * encoder file given alone, without the config.json that tells a folder's (pipeline-encoders.ts
   * otherLoneT5): where its shapes say it is another encoder, left out, as ComfyUI leaves keys its
   * model of that encoder lacks unloaded, and as a folder whose config.json says so leaves them out.
   * Any other kohya or diffusers text encoder name of a T5 path lands on a T5-XXL, which the tools
   * that write those names apply them to, and on neither Wan's UMT5-XXL nor a byT5
   * (pipeline-encoders.ts loneT5Unreached).
   */
  private otherT5Alone(address: ModuleAddress): Location | undefined {
    if (this.components.length > 0) return undefined;
    const named = /^text_encoders\.([^.]+)\.transformer\./.exec(address.path)?.[1] ?? address.comfyEncoder;
    const comfy = named ?? (address.part !== undefined && namesT5(address.part, address.path) ? 't5xxl' : undefined);
    const other = comfy === undefined ? undefined : otherLoneT5(comfy, this.whole);
    if (other === undefined) {
      if (named !== undefined || address.part === undefined || address.part === 'unet' || !isT5Path(address.path)) return undefined;
      // The prefix the name was given (lora_prior_te_ is read as lora_te_, which ComfyUI maps the same way).
      const prefix = address.flat ? `lora_${address.part}_` : `text_encoder${address.part === 'te' || address.part === 'te1' ? '' : `_${address.part.slice(2)}`}.`;
      const unreached = loneT5Unreached(prefix, this.whole);
      if (unreached === undefined) return undefined;
      const what = address.anyFirstEncoder ? 'diffusers\' first text encoder (text_encoder.)' : partName(address.part, address.path);
      return { found: false, code: 'UNKNOWN_MODULE', missingComponent: true, message: `names ${what}, but ${unreached}` };
    }
    const what = named !== undefined ? `ComfyUI's ${comfy} text encoder (text_encoders.${comfy}.)` : `${partName(address.part!, address.path)}, which ComfyUI maps to its t5xxl only`;
    return { found: false, code: 'UNKNOWN_MODULE', missingComponent: true, message: `names ${what}, but ${other}` };
  }

  private componentView(component: BaseComponent): BaseView {
    let view = this.views.get(component);
    if (!view) this.views.set(component, (view = this.view(component.keys, component.prefix)));
    return view;
  }

  private view(keys: Iterable<string>, prefix = ''): BaseView {
    const tensors = this.base.tensors;
    const base = this.base;
    const list = [...keys];
    return {
      index: new BaseKeyIndex(list, prefix), keys: list, architectures: base.architectures ?? [],
      shape: (key) => tensors.get(key)?.shape, storedShape: (key) => tensors.get(key)?.storedShape, metadata: (key) => base.metadata?.(key),
      ...(base.config ? { config: base.config } : {}),
    };
  }
}

/**
 * Why a module naming a text encoder by which CLIP it is (kohya's `lora_te_`, `lora_te1_`,
 * `lora_te2_`, ComfyUI's `text_encoders.clip_g.`) cannot be placed: a pipeline whose CLIP folders,
 * with weights or without, cannot be told apart (pipeline-encoders.ts), or that keeps a second copy
 * of its CLIP in a folder not read as a text encoder (`prior_text_encoder/`). Diffusers' `text_encoder.` names the first folder
 * and T5's parts name no CLIP, so neither is held up.
 */
function clipDoubt(address: ModuleAddress, components: readonly BaseComponent[], prior?: CombinedPrior): string | undefined {
  const byKind = address.part === 'te' || address.part === 'te2' || (address.part === 'te1' && !address.anyFirstEncoder);
  // A combined pipeline whose only CLIP is the prior's (prior_text_encoder/): a module naming a CLIP
  // by kind, and diffusers' `text_encoder.` where no other text encoder folder takes it.
  const priorsOnly = prior?.clipDoubt !== undefined && (byKind || !components.some((c) => c.role === 'text-encoder'));
  if (!byKind && !(priorsOnly && address.part === 'te1' && !isT5Path(address.path))) return undefined;
  const doubt = components.find((c) => c.role === 'text-encoder' && c.encoderDoubt)?.encoderDoubt ?? (priorsOnly ? prior!.clipDoubt : undefined);
  if (!doubt) return undefined;
  const named = address.comfyEncoder ? `ComfyUI's ${address.comfyEncoder} text encoder (text_encoders.${address.comfyEncoder}.)` : partName(address.part!, address.path);
  return `names ${named}, but the base's ${doubt}`;
}

/**
 * CLIP-L's or CLIP-H's `text_projection` on a checkpoint that stores none (SD1.x's and SDXL's CLIP-L
 * and an SD2 pipeline's CLIP-H are transformers' CLIPTextModel, without it): the CLIP's name, else
 * undefined. ComfyUI's CLIP model has one, set to the identity, so its "Extract and Save Lora" writes
 * a (zero) LoRA for it, and comfy/lora.py maps `lora_te1_text_projection` there too; those models
 * never read the projected output, so the update changes nothing: left out.
 */
function unstoredClipProjection(address: ModuleAddress, component: BaseComponent): string | undefined {
  const clip = component.encoder === 'clip_l' ? 'CLIP-L' : component.encoder === 'openclip' ? 'CLIP-H' : undefined;
  const stored = component.keys.some((k) => k.endsWith('.text_projection.weight') || k.endsWith('.text_projection'));
  return clip && address.path === 'text_projection' && !stored ? clip : undefined;
}

type Tried = { found: true; targets: Placement[]; layout: string } | { found: false; ambiguous: boolean; candidates: string[]; why?: string; pastLastBlock?: boolean; leftOut?: true };

function tryLayouts(address: ModuleAddress, view: BaseView): Tried {
  let miss: Tried = { found: false, ambiguous: false, candidates: [] };
  for (const layout of LAYOUTS) {
    const r = layout.resolve(address, view);
    if (!r) continue;
    if (r.found) return { ...r, layout: layout.name };
    if (r.ambiguous) return r;
    // A layout that says why the base lacks the module is heard over later plain misses.
    if (!miss.why) miss = r;
  }
  return miss;
}

function describe(r: Tried, component?: BaseComponent): Location {
  if (r.found) return r;
  if (r.leftOut && r.why) return { found: false, code: 'UNKNOWN_MODULE', message: r.why, missingComponent: true };
  if (!r.ambiguous) {
    if (r.why) return { found: false, code: 'UNKNOWN_MODULE', message: r.why, ...(r.pastLastBlock ? { pastLastBlock: true } : {}) };
    return { found: false, code: 'UNKNOWN_MODULE', message: `no matching tensor in ${component ? component.name : 'the base model'}`, unmatched: true };
  }
  // A layout that knows why the name fits several tensors says so.
  if (r.why) return { found: false, code: 'AMBIGUOUS_MODULE', message: r.why };
  const shown = r.candidates.slice(0, 4).join(', ');
  return { found: false, code: 'AMBIGUOUS_MODULE', message: `matches ${r.candidates.length} base tensors (${shown}${r.candidates.length > 4 ? ', ...' : ''})` };
}
