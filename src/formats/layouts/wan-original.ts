/**
 * Layout: Wan 2.1/2.2 video transformers in Wan's own naming (the files Wan-AI, Comfy-Org and
 * musubi-tuner use: `blocks.N.self_attn.q`, `blocks.N.ffn.0`) and in diffusers'
 * (`blocks.N.attn1.to_q`, `blocks.N.ffn.net.0.proj`), either way round, as diffusers maps them
 * (scripts/convert_wan_to_diffusers.py, loaders/lora_conversion_utils.py
 * _convert_non_diffusers_wan_lora_to_diffusers). Every tensor is one to one; nothing is fused.
 *
 * The norms as that script renames them (its TRANSFORMER_KEYS_RENAME_DICT): the block's
 * cross-attention LayerNorm, the only one of its three with weight and bias, is Wan's `norm3` and
 * diffusers' `norm2` (the script swaps norm2 and norm3: Wan calls them in the order norm1, norm3,
 * norm2); the q/k RMSNorms (`self_attn.norm_q` → `attn1.norm_q`, `cross_attn.norm_k_img` →
 * `attn2.norm_added_k`, one weight of `dim` across the heads in both); the image embedder's
 * LayerNorms (`img_emb.proj.0`, `.4` → `image_embedder.norm1`, `norm2`), and FLF2V's position embedding of its
 * image tokens (`img_emb.emb_pos` → `image_embedder.pos_embed`, (1, 514, 1280) in both). The values are the same
 * tensors under other names. A module named `norm2` can only mean diffusers' norm: Wan's norm2 (and
 * diffusers' norm3) has no parameters, so no file holds a change of it.
 *
 * The adaLN tables, parameters rather than modules' weights, as the script renames them too: each
 * block's `modulation` (1, 6, dim) is its `scale_shift_table`, the head's `head.modulation`
 * (1, 2, dim) the model's top-level `scale_shift_table`. Only full diffs change them (LightX2V's
 * `<block>.diff_m`, ComfyUI-named `<block>.modulation.diff`; key-forms.ts); they land by their full
 * name in either naming, the base's own included.
 *
 * SkyReels-V2 and Helios, Wan 2.1 derivatives whose diffusers LoRA loaders use the same Wan
 * converter, share these names; SkyReels-V2 adds `fps_projection` (renamed as its conversion script
 * does). Helios keeps its output table as `norm_out.scale_shift_table`, so a `head.modulation`
 * change finds no tensor there and is refused.
 */
import { oneToOne, RenameTable, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout, LayoutResolution } from './layout.js';


/** The renames inside one attention/FFN block, for the main blocks and VACE's. */
function blockRules(blocks: string): RenameRule[] {
  const B = `${blocks}.{i}`;
  return [
    oneToOne(`${B}.self_attn.q`, `${B}.attn1.to_q`),
    oneToOne(`${B}.self_attn.k`, `${B}.attn1.to_k`),
    oneToOne(`${B}.self_attn.v`, `${B}.attn1.to_v`),
    oneToOne(`${B}.self_attn.o`, `${B}.attn1.to_out.0`),
    oneToOne(`${B}.cross_attn.q`, `${B}.attn2.to_q`),
    oneToOne(`${B}.cross_attn.k`, `${B}.attn2.to_k`),
    oneToOne(`${B}.cross_attn.v`, `${B}.attn2.to_v`),
    oneToOne(`${B}.cross_attn.o`, `${B}.attn2.to_out.0`),
    // Image-to-video models' extra cross-attention on the CLIP image tokens.
    oneToOne(`${B}.cross_attn.k_img`, `${B}.attn2.add_k_proj`),
    oneToOne(`${B}.cross_attn.v_img`, `${B}.attn2.add_v_proj`),
    oneToOne(`${B}.ffn.0`, `${B}.ffn.net.0.proj`),
    oneToOne(`${B}.ffn.2`, `${B}.ffn.net.2`),
    oneToOne(`${B}.self_attn.norm_q`, `${B}.attn1.norm_q`),
    oneToOne(`${B}.self_attn.norm_k`, `${B}.attn1.norm_k`),
    oneToOne(`${B}.cross_attn.norm_q`, `${B}.attn2.norm_q`),
    oneToOne(`${B}.cross_attn.norm_k`, `${B}.attn2.norm_k`),
    oneToOne(`${B}.cross_attn.norm_k_img`, `${B}.attn2.norm_added_k`),
    // The cross-attention norm: Wan's norm3 is diffusers' norm2.
    oneToOne(`${B}.norm3`, `${B}.norm2`),
    // The block's adaLN table (1, 6, dim), a parameter of the block itself.
    oneToOne(`${B}.modulation:`, `${B}.scale_shift_table:`),
  ];
}

export const WAN_RULES: readonly RenameRule[] = [
  ...blockRules('blocks'),
  ...blockRules('vace_blocks'),
  oneToOne('vace_blocks.{i}.before_proj', 'vace_blocks.{i}.proj_in'),
  oneToOne('vace_blocks.{i}.after_proj', 'vace_blocks.{i}.proj_out'),
  oneToOne('time_embedding.0', 'condition_embedder.time_embedder.linear_1'),
  oneToOne('time_embedding.2', 'condition_embedder.time_embedder.linear_2'),
  oneToOne('text_embedding.0', 'condition_embedder.text_embedder.linear_1'),
  oneToOne('text_embedding.2', 'condition_embedder.text_embedder.linear_2'),
  oneToOne('time_projection.1', 'condition_embedder.time_proj'),
  oneToOne('img_emb.proj.0', 'condition_embedder.image_embedder.norm1'),
  oneToOne('img_emb.proj.1', 'condition_embedder.image_embedder.ff.net.0.proj'),
  oneToOne('img_emb.proj.3', 'condition_embedder.image_embedder.ff.net.2'),
  oneToOne('img_emb.proj.4', 'condition_embedder.image_embedder.norm2'),
  // FLF2V's (and SkyReels-V2's) learned position embedding of the two frames' CLIP tokens, a
  // parameter (1, 514, 1280) in both namings, renamed whole (convert_wan_to_diffusers.py).
  oneToOne('img_emb.emb_pos:', 'condition_embedder.image_embedder.pos_embed:'),
  oneToOne('head.head', 'proj_out'),
  // SkyReels-V2 (a Wan 2.1 fine-tune; convert_skyreelsv2_to_diffusers.py): its frame-rate
  // conditioning's MLP, Sequential(Linear, SiLU, Linear) in Skywork's files, diffusers' FeedForward.
  // `fps_embedding` has one name in both.
  oneToOne('fps_projection.0', 'fps_projection.net.0.proj'),
  oneToOne('fps_projection.2', 'fps_projection.net.2'),
  // The output head's adaLN table (1, 2, dim).
  oneToOne('head.modulation:', 'scale_shift_table:'),
];

const table = new RenameTable(WAN_RULES, () => false);

export const wanOriginal: Layout = {
  name: 'wan-original',
  renames: [table],
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    if (HEAD_TABLE.test(address.path) && isHelios(base)) return HELIOS_HEAD_MISS;
    return table.resolve(address.path, base);
  },
};

/** Wan's output head adaLN table, dotted or flattened. */
const HEAD_TABLE = /^head[._]modulation$/;

/** Helios (HeliosTransformer3DModel): its output table is HeliosOutputNorm's, with no top-level one. */
function isHelios(base: BaseView): boolean {
  return base.index.has('norm_out.scale_shift_table') && !base.index.has('scale_shift_table');
}

// ambiguous: stops the search, so that no other layout lands it on a table by its tail.
const HELIOS_HEAD_MISS: LayoutResolution = {
  found: false, ambiguous: true, candidates: [],
  why: "is Wan's output adaLN table (head.modulation, diffusers' top-level scale_shift_table), which Helios does not have "
    + "(its output norm's table, norm_out.scale_shift_table, is Helios' own, and diffusers' Wan LoRA converter does not load a change of it): merge it into a Wan model",
};
