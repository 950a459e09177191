/**
 * Layout: Krea 2 in its original naming (krea-ai/krea-2's module names, which its reference trainer and
 * ComfyUI write under `diffusion_model.` and ai-toolkit under `base_model.model.`: `blocks.N.attn.wq`,
 * `blocks.N.mlp.gate`, `txtfusion.refiner_blocks.N.attn.wo`, `first`, `tmlp.0`) and in diffusers'
 * (Krea2Transformer2DModel: `transformer_blocks.N.attn.to_q`, `ff.gate`, `text_fusion.refiner_blocks.N.attn.to_out.0`,
 * `img_in`, `time_embed.linear_1`), either way round, each module renamed whole, as diffusers'
 * `_convert_non_diffusers_krea2_lora_to_diffusers` (which Krea2LoraLoaderMixin runs on a file with
 * `diffusion_model.` or `base_model.model.` keys) renames:
 * - in the transformer blocks and in the text fusion's `layerwise_blocks` and `refiner_blocks`, the
 *   attention's `wq`, `wk`, `wv`, `wo`, `gate` are `to_q`, `to_k`, `to_v`, `to_out.0`, `to_gate`, and
 *   the SwiGLU's `mlp.gate`, `mlp.up`, `mlp.down` are `ff.gate`, `ff.up`, `ff.down`; `blocks` are
 *   `transformer_blocks`, `txtfusion` is `text_fusion`;
 * - `first` is `img_in`, `last.linear` `final_layer.linear`, `tmlp.0` / `tmlp.2` `time_embed.linear_1` /
 *   `linear_2`, `tproj.1` `time_mod_proj`, `txtmlp.1` / `txtmlp.3` `txt_in.linear_1` / `linear_2`,
 *   `txtfusion.projector` `text_fusion.projector`.
 * No module is fused or split (q, k and v are separate in both), so each lands row for row.
 *
 * It answers only on a Krea 2 base (a block's `attn.wq` beside `txtfusion.projector`, or
 * `attn.to_gate` beside `text_fusion.projector`).
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

const ATTENTION: readonly [string, string][] = [['wq', 'to_q'], ['wk', 'to_k'], ['wv', 'to_v'], ['wo', 'to_out.0'], ['gate', 'to_gate']];
const SWIGLU = ['gate', 'up', 'down'];

/** A block's attention and SwiGLU: `original` and `diffusers` are the block paths (with `{i}`). */
const blockRules = (original: string, diffusers: string): RenameRule[] => [
  ...ATTENTION.map(([o, d]) => oneToOne(`${original}.attn.${o}`, `${diffusers}.attn.${d}`)),
  ...SWIGLU.map((p) => oneToOne(`${original}.mlp.${p}`, `${diffusers}.ff.${p}`)),
];

export const KREA2_RULES: readonly RenameRule[] = [
  ...blockRules('blocks.{i}', 'transformer_blocks.{i}'),
  ...blockRules('txtfusion.layerwise_blocks.{i}', 'text_fusion.layerwise_blocks.{i}'),
  ...blockRules('txtfusion.refiner_blocks.{i}', 'text_fusion.refiner_blocks.{i}'),
  oneToOne('first', 'img_in'),
  oneToOne('last.linear', 'final_layer.linear'),
  oneToOne('tmlp.0', 'time_embed.linear_1'),
  oneToOne('tmlp.2', 'time_embed.linear_2'),
  oneToOne('tproj.1', 'time_mod_proj'),
  oneToOne('txtmlp.1', 'txt_in.linear_1'),
  oneToOne('txtmlp.3', 'txt_in.linear_2'),
  oneToOne('txtfusion.projector', 'text_fusion.projector'),
];

const MARKER = /(^|\.)(blocks\.\d+\.attn\.wq|transformer_blocks\.\d+\.attn\.to_gate)\.weight$/;
const KREA2 = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  const projector = m[2].startsWith('blocks') ? 'txtfusion.projector' : 'text_fusion.projector';
  return base.index.has(`${p}${projector}.weight`) ? p : undefined;
});

/** The Krea 2 layout, in the registry (./index.ts). */
export const krea2 = modelLayout('krea2', KREA2, KREA2_RULES);
