/**
 * Layout: Stable Cascade's stage C (the prior: Stability's `stage_c.safetensors`, `stage_c_bf16`,
 * `stage_c_lite`) and stage B (the decoder: `stage_b.safetensors`, `stage_b_bf16`, `stage_b_lite`)
 * under the names ComfyUI gives their attention. The checkpoints store each attention block's q, k
 * and v as PyTorch MultiheadAttention does, in one `<block>.attention.attn.in_proj_weight` (3·c
 * rows); ComfyUI splits it into `to_q`, `to_k`, `to_v` when it loads either stage
 * (supported_models.py Stable_Cascade_C.process_unet_state_dict, which Stable_Cascade_B inherits:
 * rows [0, c), [c, 2c), [2c, 3c)), and its LoRA key map (comfy/lora.py: `lora_unet_` and
 * `diffusion_model.` + every model key, stage C's also under `lora_prior_unet_`) is what Stable
 * Cascade LoRAs are written against. So a module on `…attention.attn.to_q` lands on the first
 * third of `in_proj_weight`, `to_k` on the second, `to_v` on the third. Every other module
 * (`attention.attn.out_proj`, `kv_mapper.1`, `channelwise.0/4`, the depthwise conv, the mappers)
 * has its checkpoint name and lands by name.
 *
 * OneTrainer's ORIGINAL, COMFY and KOHYA Stable Cascade LoRAs name the three thirds
 * `attention.attn.in_proj.0`, `.1`, `.2` (WuerstchenModel.diffusers_to_original: diffusers' `to_q`,
 * `to_k`, `to_v` → `in_proj.0`, `.1`, `.2`; its loader reverses that rename), bare, under
 * `diffusion_model.` or as `lora_unet_…_attention_attn_in_proj_0`: the same rows as ComfyUI's `to_q`,
 * `to_k`, `to_v`, read here as those (ComfyUI's key map itself knows no `in_proj.N` and leaves such
 * modules out; OneTrainer, the tool that trains them, applies them so).
 *
 * It answers only on a Stable Cascade base: a block's `attention.attn.in_proj_weight` (Stability's
 * files) or `attention.attn.to_q.weight` (a checkpoint ComfyUI saved) beside stage C's
 * `clip_txt_pooled_mapper` or stage B's `clip_mapper` (the keys ComfyUI's and diffusers' model
 * detection tell the two stages by).
 */
import { oneToOne, RenameTable, type RenameRule } from './fused-renames.js';
import type { Layout } from './layout.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

/**
 * The levels, each a down and an up path of blocks numbered within the level: stage C has two (both
 * with attention), stage B four (attention in the last two, `CTA`).
 */
const LEVELS = [0, 1, 2, 3].flatMap((l) => [`down_blocks.${l}`, `up_blocks.${l}`]);

/** Each level's attention: in_proj_weight's thirds are ComfyUI's to_q, to_k, to_v. */
export const STABLE_CASCADE_RULES: readonly RenameRule[] = LEVELS.map((level) => {
  const A = `${level}.{i}.attention.attn`;
  return { fused: `${A}:in_proj_weight`, parts: [{ name: `${A}.to_q`, units: 1 }, { name: `${A}.to_k`, units: 1 }, { name: `${A}.to_v`, units: 1 }] };
});

const ATTENTION = /(^|\.)down_blocks\.\d+\.\d+\.attention\.attn\.(?:in_proj_weight|to_q\.weight)$/;
const STABLE_CASCADE = modelPrefix((key, base) => {
  const m = ATTENTION.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}clip_txt_pooled_mapper.weight`) || base.index.has(`${p}clip_mapper.weight`) ? p : undefined;
});

/** OneTrainer's `attention.attn.in_proj.N` (dotted or flattened), and which of ComfyUI's names it is. */
const IN_PROJ_PART = /([._])in_proj[._]([012])$/;
const QKV = ['to_q', 'to_k', 'to_v'];

/**
 * A module path with OneTrainer's `…attention.attn.in_proj.N` read as ComfyUI's `…attention.attn.to_q`,
 * `to_k`, `to_v` (N = 0, 1, 2), its separators kept; any other path as it is.
 */
export function comfyAttentionName(path: string): string {
  if (!/attention[._]attn[._]in_proj[._]\d$/.test(path)) return path;
  return path.replace(IN_PROJ_PART, (_, sep: string, n: string) => `${sep}${QKV[Number(n)]}`);
}

const table = modelLayout('stable-cascade', STABLE_CASCADE, STABLE_CASCADE_RULES);

/**
 * OneTrainer's `attention.attn.in_proj.N` beside ComfyUI's `attn.to_q`/`to_k`/`to_v` (the tensors of a
 * checkpoint ComfyUI saved) and beside diffusers' `attention.to_q`/… (the diffusers UNet's): the same
 * rows named two ways, for combine's overlap check alone (Layout.renames); `resolve` reads in_proj.N itself.
 */
const IN_PROJ_TABLES = [
  (A: string, p: string) => `${A}.attn.${p}`,
  (A: string, p: string) => `${A}.${p}`,
].map((named) => new RenameTable(LEVELS.flatMap((level) => QKV.map((p, n) => oneToOne(named(`${level}.{i}.attention`, p), `${level}.{i}.attention.attn.in_proj.${n}`))), () => false));

/** The Stable Cascade layout (stages C and B), in the registry (./index.ts). */
export const stableCascade: Layout & { renames: readonly RenameTable[] } = {
  ...table,
  renames: [...table.renames, ...IN_PROJ_TABLES],
  resolve: (address, base) => table.resolve({ ...address, path: comfyAttentionName(address.path) }, base),
};
