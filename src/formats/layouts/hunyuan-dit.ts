/**
 * Layout: Tencent's HunyuanDiT (v1.0–v1.2, and its distilled models) in its original naming
 * (Tencent's checkpoints, ComfyUI's model and its LoRAs, Tencent's own PEFT LoRAs:
 * `blocks.N.attn1.Wqkv`, `attn2.kv_proj`, `mlp.fc1`, `default_modulation.1`) and in diffusers'
 * (HunyuanDiT2DModel: `blocks.N.attn1.to_q`, `attn2.to_k`, `ff.net.0.proj`, `norm1.linear`), either
 * way round, as diffusers' scripts/convert_hunyuandit_to_diffusers.py renames them:
 * - self-attention q, k, v are the thirds of `attn1.Wqkv`; cross-attention q is `attn2.q_proj`, k
 *   and v the halves of `attn2.kv_proj`; `out_proj` is `to_out.0`; the q/k LayerNorms `q_norm`,
 *   `k_norm` are `norm_q`, `norm_k`;
 * - `mlp.fc1`, `fc2` are `ff.net.0.proj`, `ff.net.2`; `default_modulation.1` is `norm1.linear` and
 *   the LayerNorm `norm1` is `norm1.norm`; `skip_linear`, `skip_norm` keep their names;
 * - the embedders: `t_embedder.mlp.0/2`, `extra_embedder.0/2` and `pooler.*` are under
 *   `time_extra_emb` (`timestep_embedder.linear_1/2`, `extra_embedder.linear_1/2`, `pooler.*`),
 *   `mlp_t5.0/2` is `text_embedder.linear_1/2`, `x_embedder.proj` `pos_embed.proj`; v1.0/v1.1's
 *   `style_embedder` (an Embedding of one row, hidden wide) is `time_extra_emb.style_embedder`
 *   (the script copies rows [0:1], which is all of it);
 * - `final_layer.adaLN_modulation.1` is `norm_out.linear` with its halves swapped (shift, scale ↔
 *   scale, shift), `final_layer.linear` is `proj_out`.
 * Both namings keep the blocks under `blocks.N`, and the conversion swaps the names of the block's
 * `norm2` and `norm3` (the original's norm3 is before the cross-attention, diffusers' norm2): a
 * change to `blocks.N.norm2` or `norm3` means one tensor in one naming and the other in the other,
 * and its name does not say which naming it is in, so it is refused here as fitting both, before
 * the names as the base spells them are tried.
 *
 * It answers only on a HunyuanDiT base (the original's `attn1.Wqkv` or diffusers'
 * `time_extra_emb` timestep embedder); names are looked up exactly under the model's key prefix.
 */
import { oneToOne, RenameTable, type RenameRule } from './fused-renames.js';
import type { Layout } from './layout.js';
import { modelPrefix, prefixBefore } from './model-prefix.js';

const B = 'blocks.{i}';
/** A two-layer MLP (`<m>.0`, `<m>.2`, or `mlp.0`/`mlp.2`) onto diffusers' `linear_1`, `linear_2`. */
const twoLayer = (original: string, diffusers: string): RenameRule[] => [
  oneToOne(`${original}.0`, `${diffusers}.linear_1`),
  oneToOne(`${original}.2`, `${diffusers}.linear_2`),
];

/** Each original tensor and the diffusers tensors that are its rows, as diffusers' conversion renames them. */
export const HUNYUAN_DIT_RULES: readonly RenameRule[] = [
  { fused: `${B}.attn1.Wqkv`, parts: [{ name: `${B}.attn1.to_q`, units: 1 }, { name: `${B}.attn1.to_k`, units: 1 }, { name: `${B}.attn1.to_v`, units: 1 }] },
  oneToOne(`${B}.attn1.out_proj`, `${B}.attn1.to_out.0`),
  oneToOne(`${B}.attn1.q_norm`, `${B}.attn1.norm_q`),
  oneToOne(`${B}.attn1.k_norm`, `${B}.attn1.norm_k`),
  oneToOne(`${B}.attn2.q_proj`, `${B}.attn2.to_q`),
  { fused: `${B}.attn2.kv_proj`, parts: [{ name: `${B}.attn2.to_k`, units: 1 }, { name: `${B}.attn2.to_v`, units: 1 }] },
  oneToOne(`${B}.attn2.out_proj`, `${B}.attn2.to_out.0`),
  oneToOne(`${B}.attn2.q_norm`, `${B}.attn2.norm_q`),
  oneToOne(`${B}.attn2.k_norm`, `${B}.attn2.norm_k`),
  oneToOne(`${B}.mlp.fc1`, `${B}.ff.net.0.proj`),
  oneToOne(`${B}.mlp.fc2`, `${B}.ff.net.2`),
  oneToOne(`${B}.default_modulation.1`, `${B}.norm1.linear`),
  oneToOne(`${B}.norm1`, `${B}.norm1.norm`),
  ...twoLayer('t_embedder.mlp', 'time_extra_emb.timestep_embedder'),
  ...twoLayer('extra_embedder', 'time_extra_emb.extra_embedder'),
  ...twoLayer('mlp_t5', 'text_embedder'),
  ...['q_proj', 'k_proj', 'v_proj', 'c_proj'].map((p) => oneToOne(`pooler.${p}`, `time_extra_emb.pooler.${p}`)),
  oneToOne('pooler.positional_embedding:', 'time_extra_emb.pooler.positional_embedding:'),
  oneToOne('style_embedder', 'time_extra_emb.style_embedder'),
  oneToOne('x_embedder.proj', 'pos_embed.proj'),
  oneToOne('final_layer.linear', 'proj_out'),
  oneToOne('final_layer.adaLN_modulation.1', 'norm_out.linear', 'always'),
];

const MARKER = /(^|\.)(blocks\.\d+\.attn1\.Wqkv|time_extra_emb\.timestep_embedder\.linear_1)\.weight$/;
/** The prefix of the model's keys, or null: not HunyuanDiT. */
const HUNYUAN_DIT = modelPrefix((key) => {
  const m = MARKER.exec(key);
  return m ? prefixBefore(key, m) : undefined;
});

/** A block's norm2 or norm3, dotted or flattened (kohya). */
const SWAPPED_NORM = /^blocks[._](\d+)[._](norm[23])$/;
const table = new RenameTable(HUNYUAN_DIT_RULES, () => false, HUNYUAN_DIT.lookup);

/** The HunyuanDiT layout, in the registry (./index.ts) before the base's own names are tried. */
export const hunyuanDit: Layout = {
  name: 'hunyuan-dit',
  renames: [table],
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    const prefix = HUNYUAN_DIT.of(base);
    if (prefix === null) return undefined;
    const norm = SWAPPED_NORM.exec(address.path);
    if (norm) {
      const candidates = ['norm2', 'norm3'].map((n) => `${prefix}blocks.${norm[1]}.${n}.weight`).filter((k) => base.index.has(k));
      return {
        found: false, ambiguous: true, candidates,
        why: `is HunyuanDiT's blocks.${norm[1]}.${norm[2]}, which the original naming and diffusers' name the other way round `
          + '(convert_hunyuandit_to_diffusers.py swaps norm2 and norm3) and the name does not say which naming it is in; leave the block norms out of the LoRA',
      };
    }
    return table.resolve(address.path, base);
  },
};
