/**
 * Layout: LTX-Video (0.9.x) in its original naming (Lightricks' and Comfy-Org's single files,
 * ComfyUI's model, LoRAs in ComfyUI's format: `patchify_proj`, `adaln_single`) and in diffusers'
 * (LTXVideoTransformer3DModel: `proj_in`, `time_embed`), either way round, as diffusers' single-file
 * conversion (convert_ltx_transformer_checkpoint_to_diffusers) renames them. The blocks
 * (`transformer_blocks.N.attn1.to_q`, `ff.net.0.proj`) have the same names in both and land by
 * name; only the input projection and the timestep embedding are renamed, row for row. The q/k
 * norms (`q_norm` ↔ `norm_q`) are not translated and are refused.
 *
 * It answers only on an LTX-Video base (its input projection under either name beside
 * `caption_projection`), never on PixArt-style models that also say `adaln_single`.
 */
import { RenameTable, type KeyLookup, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout } from './layout.js';

const one = (original: string, diffusers: string): RenameRule => ({ fused: original, parts: [{ name: diffusers, units: 1 }] });

export const LTX_VIDEO_RULES: readonly RenameRule[] = [
  one('patchify_proj', 'proj_in'),
  one('adaln_single.emb.timestep_embedder.linear_1', 'time_embed.emb.timestep_embedder.linear_1'),
  one('adaln_single.emb.timestep_embedder.linear_2', 'time_embed.emb.timestep_embedder.linear_2'),
  one('adaln_single.linear', 'time_embed.linear'),
];

/** The original's `patchify_proj`, or diffusers' `proj_in` beside its `time_embed`. */
const INPUT = /(^|\.)(patchify_proj|proj_in)\.weight$/;
const modelPrefixes = new WeakMap<readonly string[], string | null>();

function modelPrefix(base: BaseView): string | null {
  let prefix = modelPrefixes.get(base.keys);
  if (prefix === undefined) {
    prefix = null;
    for (const key of base.keys) {
      const m = INPUT.exec(key);
      if (!m) continue;
      const p = key.slice(0, m.index + m[1].length);
      const embed = m[2] === 'patchify_proj' ? 'adaln_single' : 'time_embed';
      if (base.index.has(`${p}caption_projection.linear_1.weight`) && base.index.has(`${p}${embed}.linear.weight`)) {
        prefix = p;
        break;
      }
    }
    modelPrefixes.set(base.keys, prefix);
  }
  return prefix;
}

const exactUnderPrefix: KeyLookup = (base, name) => {
  const key = `${modelPrefix(base) ?? ''}${name}`;
  return base.index.has(key) ? { found: true, key } : { found: false, ambiguous: false, candidates: [] };
};

const table = new RenameTable(LTX_VIDEO_RULES, () => false, exactUnderPrefix);

export const ltxVideo: Layout = {
  name: 'ltx-video',
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    if (modelPrefix(base) === null) return undefined;
    return table.resolve(address.path, base);
  },
};
