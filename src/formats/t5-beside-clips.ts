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
 * T5 bases without a CLIP, and T5s that are not ComfyUI's t5xxl (byT5, UMT5, mT5), have rules of their own.
 */
import { componentForPart, holdsComfyEncoder, isT5Path, partName, type BaseComponent } from './base-components.js';
import type { ModuleAddress } from './module-address.js';

/** Where a T5 module lands (`component`), or why it is left out. */
export type T5Reach = { component: BaseComponent; leftOut?: undefined } | { leftOut: string; component?: undefined };

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
