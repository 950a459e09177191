/**
 * Layout: Stable Cascade LoRAs in ComfyUI's names (its key map over Stability's stage C and stage B
 * checkpoints: `lora_unet_` / `lora_prior_unet_` / `diffusion_model.` + `down_blocks.0.1.attention.attn.to_q`;
 * OneTrainer's LEGACY Stable Cascade form, `lora_prior_unet_…_attention_attn_to_q`, the same names;
 * its ORIGINAL, COMFY and KOHYA forms' `attention.attn.in_proj.0`, `.1`, `.2`, ComfyUI's `to_q`, `to_k`,
 * `to_v` as stable-cascade.ts reads them)
 * on a diffusers StableCascadeUNet (stabilityai/stable-cascade's `prior/`, `decoder/`, a combined
 * pipeline's `prior_prior/`), whose names differ only where diffusers' conversion renames
 * (single_file_utils.py convert_stable_cascade_unet_single_file_to_diffusers, which
 * scripts/convert_stable_cascade.py uses for both stages):
 * - the attention's `attn.in_proj_weight` thirds, which ComfyUI loads as `attn.to_q`, `attn.to_k`,
 *   `attn.to_v` (stable-cascade.ts), are diffusers' `attention.to_q`, `to_k`, `to_v`;
 * - `attention.attn.out_proj` is `attention.to_out.0`;
 * - stage B's `clip_mapper` is `clip_txt_pooled_mapper`;
 * every other key is kept, and lands by its name. So each of these ComfyUI names is exactly one
 * diffusers tensor, row for row.
 *
 * It answers only on a diffusers StableCascadeUNet (a block's `attention.to_q` beside
 * `clip_txt_pooled_mapper`, which both of diffusers' stages hold), and only for these names. On a
 * base holding several (a combined pipeline's `decoder.` and `prior_prior.`), a module naming its
 * folder (`prior_prior.…`, as `lora_prior_unet_` is routed there) lands there; one naming none
 * matches each, which the locator refuses.
 */
import { oneToOne, RenameTable, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout, LayoutResolution } from './layout.js';
import { comfyAttentionName } from './stable-cascade.js';

const LEVELS = [0, 1, 2, 3].flatMap((l) => [`down_blocks.${l}`, `up_blocks.${l}`]);

/** ComfyUI's names (as `fused`) and diffusers' (the part), for combine's overlap check (Layout.renames). */
const RULES: readonly RenameRule[] = [
  ...LEVELS.flatMap((level) => {
    const A = `${level}.{i}.attention`;
    return [
      oneToOne(`${A}.attn.to_q`, `${A}.to_q`), oneToOne(`${A}.attn.to_k`, `${A}.to_k`), oneToOne(`${A}.attn.to_v`, `${A}.to_v`),
      oneToOne(`${A}.attn.out_proj`, `${A}.to_out.0`),
    ];
  }),
  oneToOne('clip_mapper', 'clip_txt_pooled_mapper'),
];

const COMFY_ATTENTION = /^(down|up)_blocks[._](\d+)[._](\d+)[._]attention[._]attn[._](to_q|to_k|to_v|out_proj)$/;
const COMFY_CLIP_MAPPER = /^clip_mapper$/;

/** A ComfyUI name's diffusers module path, or undefined when it is none of the renamed ones. */
function diffusersName(path: string): string | undefined {
  const m = COMFY_ATTENTION.exec(path);
  if (m) return `${m[1]}_blocks.${m[2]}.${m[3]}.attention.${m[4] === 'out_proj' ? 'to_out.0' : m[4]}`;
  return COMFY_CLIP_MAPPER.test(path) ? 'clip_txt_pooled_mapper' : undefined;
}

const MARKER = /(^|\.)(?:down|up)_blocks\.\d+\.\d+\.attention\.to_q\.weight$/;
const found = new WeakMap<readonly string[], readonly string[]>();

/** The prefixes of the base's diffusers StableCascadeUNets ('' for a bare file), found once per base. */
function unetPrefixes(base: BaseView): readonly string[] {
  let prefixes = found.get(base.keys);
  if (!prefixes) {
    const seen = new Set<string>();
    for (const key of base.keys) {
      const m = MARKER.exec(key);
      if (!m) continue;
      const p = key.slice(0, m.index + m[1].length);
      if (!seen.has(p) && base.index.has(`${p}clip_txt_pooled_mapper.weight`)) seen.add(p);
    }
    prefixes = [...seen];
    found.set(base.keys, prefixes);
  }
  return prefixes;
}

/** The Stable Cascade layout for ComfyUI's names on diffusers' StableCascadeUNet, in the registry (./index.ts). */
export const stableCascadeDiffusers: Layout = {
  name: 'stable-cascade-diffusers',
  renames: [new RenameTable(RULES, () => false)],
  resolve(address, base): LayoutResolution | undefined {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    const prefixes = unetPrefixes(base);
    if (prefixes.length === 0) return undefined;
    const spelled = (p: string) => (address.flat ? p.replaceAll('.', '_') : p);
    // The folder the name says (`prior_prior.` on a combined pipeline), else every UNet of the base.
    const named = prefixes.find((p) => p !== '' && address.path.startsWith(spelled(p)));
    const name = diffusersName(comfyAttentionName(named === undefined ? address.path : address.path.slice(named.length)));
    if (name === undefined) return undefined;
    const keys = (named === undefined ? prefixes : [named]).map((p) => `${p}${name}.weight`).filter((k) => base.index.has(k));
    if (keys.length === 1) return { found: true, targets: [{ baseKey: keys[0] }] };
    return { found: false, ambiguous: keys.length > 1, candidates: keys };
  },
};
