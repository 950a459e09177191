/**
 * Layout: ComfyUI's `single_blocks.N.linear1_qkv`, a name no model has: ComfyUI's key map
 * (comfy/lora.py model_lora_keys_unet, on every model that is a comfy.model_base.Flux: FLUX.1,
 * Chroma, FLUX.2) maps `diffusion_model.single_blocks.N.linear1_qkv` to rows [0, 3·hidden_size) of
 * `single_blocks.N.linear1`, the q, k and v before the MLP rows. Its USO conversion
 * (comfy/lora_convert.py) renames the single blocks' `processor.qkv_lora` to it, and a file saved
 * after such a conversion carries it. hidden_size is linear1's input width (linear1 maps the hidden
 * state to q, k, v and the MLP), so ΔW's 3·in rows land on linear1's first 3·in rows; on a diffusers
 * FLUX.1 or Chroma base they are `attn.to_q`, `to_k`, `to_v` (in rows each), on a diffusers FLUX.2
 * base the first 3·in rows of `attn.to_qkv_mlp_proj`.
 *
 * ComfyUI reads the name on Flux-family models only: on a Hunyuan DiT (whose single blocks are
 * named alike) it is refused saying so. A bias change beside it (`linear1_qkv.diff_b`, a LoRA's
 * `lora_B.bias`) ComfyUI files under the bias of a key it maps with an offset, which comes out as no
 * tensor of its model (comfy/lora.py load_lora cuts ".weight" off the (key, offset) pair), so the
 * bias is never loaded: such a module is refused (Placement.biasUnread), not merged as no tool does.
 */
import { oneToOne, RenameTable } from './fused-renames.js';
import { FLUX_RULES } from './flux-bfl.js';
import { FLUX2_LOOKUP, isFlux2 } from './flux2-bfl.js';
import { isHunyuanDit } from './hunyuan-video.js';
import { missBecause, type Layout } from './layout.js';

const NAME = /^single_blocks[._](\d+)[._]linear1_qkv$/;
const flux1 = new RenameTable(FLUX_RULES, () => false);
// FLUX.2's linear1 is one tensor in both namings; the rows are cut from it below.
const flux2 = new RenameTable([oneToOne('single_blocks.{i}.linear1', 'single_transformer_blocks.{i}.attn.to_qkv_mlp_proj')], () => false, FLUX2_LOOKUP);

const BIAS_UNREAD = 'ComfyUI, the one tool that reads the name linear1_qkv, leaves a bias change there unloaded (it logs the patch as NOT LOADED), so it cannot be merged as ComfyUI applies it: remove the bias tensor to merge the weight change alone';


/** The linear1_qkv layout, in the registry (./index.ts) with the other Flux layouts. */
export const comfyLinear1Qkv: Layout = {
  name: 'comfy-linear1-qkv',
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    const m = NAME.exec(address.path);
    if (!m) return undefined;
    const block = m[1];
    if (isHunyuanDit(base)) {
      return missBecause('is ComfyUI\'s name for the q, k, v rows of a Flux single block\'s linear1, which ComfyUI reads only on FLUX.1, Chroma and FLUX.2; the base is a Hunyuan DiT');
    }
    const linear1 = `single_blocks.${block}.linear1`;
    const flux2Base = isFlux2(base);
    // FLUX.1 and Chroma: linear1 is q, k, v and the MLP, h rows each and 4h (7 units).
    const r = flux2Base ? flux2.resolveFusedRows(linear1, 0, undefined, base) : flux1.resolveFusedRows(linear1, 0, 3, base);
    if (!r?.found) return r;
    const hidden = base.shape(r.targets[0].baseKey)?.[1];
    if (hidden === undefined) return missBecause('has no linear1 input width in the base to place q, k and v by');
    if (flux2Base) {
      const key = r.targets[0].baseKey;
      const rows = base.shape(key)?.[0] ?? 0;
      if (rows < 3 * hidden) return missBecause(`needs 3·${hidden} rows of ${key}, which has ${rows}`);
      return { found: true, targets: [{ baseKey: key, rows: [{ src: 0, dst: 0, count: 3 * hidden }], biasUnread: BIAS_UNREAD }] };
    }
    // The 7-unit split gives q, k, v 3·rows/7 rows: ComfyUI's 3·hidden_size only when a unit is the hidden width.
    const placed = r.targets.reduce((n, t) => n + (t.rows ? t.rows.reduce((c, g) => c + g.count, 0) : base.shape(t.baseKey)?.[0] ?? 0), 0);
    if (placed !== 3 * hidden) return missBecause(`lands on 3·${hidden} rows of linear1 as ComfyUI places it, but the base's linear1 is not 3·${hidden} q, k, v rows and 4·${hidden} MLP rows`);
    return { ...r, targets: r.targets.map((t) => ({ ...t, biasUnread: BIAS_UNREAD })) };
  },
};
