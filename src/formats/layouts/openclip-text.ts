/**
 * Layout: text-encoder modules named the transformers way (`text_model.encoder.layers.N.self_attn.q_proj`,
 * as kohya and diffusers name SDXL's second text encoder and SD2's only one) on a checkpoint that
 * stores that encoder in open_clip's naming (`transformer.resblocks.N.…`), as SDXL's
 * `conditioner.embedders.1.model.` and SD2's `cond_stage_model.model.` do (kohya
 * library/sdxl_model_util.py converts between the two):
 * - q, k and v are the first, second and third thirds of the rows of `attn.in_proj_weight`;
 * - out_proj → `attn.out_proj`, fc1 → `mlp.c_fc`, fc2 → `mlp.c_proj`;
 * - `text_projection` (a Linear in transformers, OneTrainer's `lora_te2_text_projection`) → open_clip's
 *   bare `text_projection` parameter, which holds that Linear's weight transposed (open_clip computes
 *   x @ text_projection; kohya's and ComfyUI's conversions transpose it): ΔW lands transposed;
 * - the norms and embeddings, which ComfyUI's "Extract and Save Lora" diffs by their transformers
 *   names (comfy/utils.py clip_text_transformers_convert renames them so on load): `layer_norm1`/`2`
 *   → `ln_1`/`ln_2`, `final_layer_norm` → `ln_final`, `token_embedding` → `token_embedding`,
 *   `position_embedding` → the bare `positional_embedding` (same orientation).
 * A bias lands beside its weight; q, k and v's on the thirds of `attn.in_proj_bias` (plan/merge-plan.ts).
 */
import type { Layout, LayoutResolution } from './layout.js';

const MODULE = /^text_model[._]encoder[._]layers[._](\d+)[._](?:self_attn[._](q|k|v|out)_proj|mlp[._]fc([12]))$/;
const THIRD: Readonly<Record<string, number>> = { q: 0, k: 1, v: 2 };
const PROJECTION = /^text_projection$/;
const NORM = /^text_model[._]encoder[._]layers[._](\d+)[._]layer_norm([12])$/;
/** Modules outside the blocks, by their open_clip name. */
const OUTSIDE: Readonly<Record<string, string>> = {
  final_layer_norm: 'ln_final.weight', embeddings_token_embedding: 'token_embedding.weight', embeddings_position_embedding: 'positional_embedding',
};

/** open_clip's name of a block's linear, dotted or flattened (kohya's `_`), `transformer.` optional. */
const OPENCLIP_LINEAR = /^(?:transformer[._])?resblocks[._](\d+)[._](attn[._]out_proj|mlp[._]c_fc|mlp[._]c_proj)$/;
const TRANSFORMERS_LINEAR: Readonly<Record<string, string>> = { attn_out_proj: 'self_attn.out_proj', mlp_c_fc: 'mlp.fc1', mlp_c_proj: 'mlp.fc2' };

/**
 * An open_clip block linear's transformers name (`transformer.resblocks.3.mlp.c_fc` →
 * `text_model.encoder.layers.3.mlp.fc1`), the same weight row for row (kohya's sdxl_model_util.py
 * conversion, which this layout undoes); undefined for other names. The fused `attn.in_proj` has
 * no one transformers name (its thirds are q, k and v).
 */
export function transformersLinearName(openclipPath: string): string | undefined {
  const m = OPENCLIP_LINEAR.exec(openclipPath);
  return m ? `text_model.encoder.layers.${m[1]}.${TRANSFORMERS_LINEAR[m[2].replace('.', '_')]}` : undefined;
}

export const openclipText: Layout = {
  name: 'openclip-text',
  resolve(address, base) {
    if (PROJECTION.test(address.path)) {
      const r = base.index.resolveDotted('text_projection');
      // Only open_clip's bare parameter: a transformers checkpoint's `text_projection.weight` is the Linear itself.
      const shape = r.found ? base.shape(r.key) : undefined;
      if (!r.found || !r.key.endsWith('text_projection') || shape?.length !== 2) return undefined;
      return { found: true, targets: [{ baseKey: r.key, transposedBlocks: { starts: [0], rows: shape[1] } }] };
    }
    const norm = NORM.exec(address.path);
    const outside = /^text_model[._](final_layer_norm|embeddings[._](?:token|position)_embedding)$/.exec(address.path);
    const named = norm ? `transformer.resblocks.${norm[1]}.ln_${norm[2]}.weight` : outside ? OUTSIDE[outside[1].replace('.', '_')] : undefined;
    if (named) {
      const r = base.index.resolveDotted(named);
      return r.found ? { found: true, targets: [{ baseKey: r.key }] } : undefined;
    }
    const m = MODULE.exec(address.path);
    if (!m) return undefined;
    const block = `transformer.resblocks.${m[1]}`;
    const miss: LayoutResolution = { found: false, ambiguous: false, candidates: [] };
    if (m[2] === undefined || m[2] === 'out') {
      const name = m[2] === 'out' ? `${block}.attn.out_proj.weight` : `${block}.mlp.${m[3] === '1' ? 'c_fc' : 'c_proj'}.weight`;
      const r = base.index.resolveDotted(name);
      return r.found ? { found: true, targets: [{ baseKey: r.key }] } : r;
    }
    const r = base.index.resolveDotted(`${block}.attn.in_proj_weight`);
    if (!r.found) return r;
    const rows = base.shape(r.key)?.[0] ?? 0;
    if (rows % 3 !== 0) return miss;
    const d = rows / 3;
    return { found: true, targets: [{ baseKey: r.key, rows: [{ src: 0, dst: THIRD[m[2]] * d, count: d }] }] };
  },
};
