/**
 * Layout: MiniMax-H3 LoRAs in the original checkpoint's module names (ai-toolkit under `diffusion_model.`,
 * the reference code and ComfyUI bare, musubi-tuner flattened under `lora_unet_`: `blocks.N.attn.qkv_proj`,
 * `blocks.N.mlp.fc1`, `token_refiner.blocks.N.attn.out_proj`, `final_layer.video_out`) on diffusers'
 * MiniMaxH3Transformer3DModel (`transformer_blocks.N.attn.to_q`, `ff.net.0.proj`,
 * `token_refiner.refiner_blocks.N.attn.to_out.0`, `proj_out`), as diffusers'
 * `_convert_non_diffusers_minimax_h3_lora_to_diffusers` (which MiniMaxH3LoraLoaderMixin runs on a file with
 * `diffusion_model.`, `blocks.`, `token_refiner.blocks.`, `final_layer.` or `lora_unet_` keys) places them:
 * - `attn.qkv_proj`'s ΔW rows in three equal blocks onto `attn.to_q`, `to_k`, `to_v` (the reference's
 *   `[q_all; k_all; v_all]` order, which the checkpoint conversion also splits);
 * - `mlp.fc1` (`[gate; value]`) onto `ff.net.0.proj` (`[value; gate]`) with its two halves of rows swapped;
 * - `attn.out_proj` → `attn.to_out.0`, `mlp.fc2` → `ff.net.2`, `adaln_proj.linear` by name, `blocks` →
 *   `transformer_blocks`, `token_refiner.blocks` → `token_refiner.refiner_blocks`;
 * - `video_patch_proj` → `proj_in`, `audio_patch_proj` → `audio_proj_in`, `condition_proj` →
 *   `context_embedder`, `time_embedder.proj_in`/`proj_out` → `time_embedder.linear_1`/`linear_2`,
 *   `final_layer.adaln_proj.linear` → `norm_out.linear`, `final_layer.video_out`/`audio_out` →
 *   `proj_out`/`audio_proj_out`.
 *
 * DiffSynth-Studio's files (peft's `.default.` infix over these names, minimax-h3-file.ts) hold `qkv_proj`'s
 * rows per head (`[head0: q k v, head1: …]`, the raw checkpoint's order): head h's rows land on rows
 * [128h, 128h + 128) of `to_q`, `to_k`, `to_v`, as diffusers de-interleaves them with 128-wide heads (a
 * transformer whose q rows are not a multiple of 128 is refused, as diffusers raises).
 *
 * It answers only on a diffusers MiniMax-H3 transformer (a block's `adaln_proj.linear` beside
 * `audio_proj_in` and `token_refiner.final_norm`). On the original checkpoint (`blocks.N.attn.qkv_proj`
 * beside `audio_patch_proj`) a fused `qkv_proj` is refused (`minimaxH3Original`): the released shards hold
 * it per head interleaved (`[head0: q k v, head1: …]`), which the reference reorders at load time, a
 * LoRA's rows follow its trainer, and no file says which order it holds.
 */
import { missBecause, type Layout, type LayoutResolution, type Placement } from './layout.js';
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

/** A block's Linears: `original` and `diffusers` are the block paths (with `{i}`). */
const blockRules = (original: string, diffusers: string, adaln: boolean): RenameRule[] => [
  { fused: `${original}.attn.qkv_proj`, parts: ['to_q', 'to_k', 'to_v'].map((p) => ({ name: `${diffusers}.attn.${p}`, units: 1 })) },
  oneToOne(`${original}.attn.out_proj`, `${diffusers}.attn.to_out.0`),
  oneToOne(`${original}.mlp.fc1`, `${diffusers}.ff.net.0.proj`, 'always'),
  oneToOne(`${original}.mlp.fc2`, `${diffusers}.ff.net.2`),
  ...(adaln ? [oneToOne(`${original}.adaln_proj.linear`, `${diffusers}.adaln_proj.linear`)] : []),
];

export const MINIMAX_H3_RULES: readonly RenameRule[] = [
  ...blockRules('blocks.{i}', 'transformer_blocks.{i}', true),
  ...blockRules('token_refiner.blocks.{i}', 'token_refiner.refiner_blocks.{i}', false),
  oneToOne('video_patch_proj', 'proj_in'),
  oneToOne('audio_patch_proj', 'audio_proj_in'),
  oneToOne('condition_proj', 'context_embedder'),
  oneToOne('time_embedder.proj_in', 'time_embedder.linear_1'),
  oneToOne('time_embedder.proj_out', 'time_embedder.linear_2'),
  oneToOne('final_layer.adaln_proj.linear', 'norm_out.linear'),
  oneToOne('final_layer.video_out', 'proj_out'),
  oneToOne('final_layer.audio_out', 'audio_proj_out'),
];

const MARKER = /(^|\.)transformer_blocks\.\d+\.adaln_proj\.linear\.weight$/;
const MINIMAX_H3 = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}audio_proj_in.weight`) && base.index.has(`${p}token_refiner.final_norm.weight`) ? p : undefined;
});

/**
 * The MiniMax-H3 layout, in the registry (./index.ts) before the layouts that find a module by its name
 * or a shorter one (`time_embedder.proj_in` would otherwise be taken for `proj_in`).
 */
const renamed = modelLayout('minimax-h3', MINIMAX_H3, MINIMAX_H3_RULES);
export const minimaxH3: Layout & { renames: typeof renamed.renames } = {
  name: renamed.name,
  renames: renamed.renames,
  resolve(address, base) {
    const width = address.qkvPerHead;
    const m = width === undefined ? null : /^(token_refiner[._])?blocks[._](\d+)[._]attn[._]qkv_proj$/.exec(address.path);
    if (!m || width === undefined || (address.part !== undefined && address.part !== 'unet') || MINIMAX_H3.of(base) === null) return renamed.resolve(address, base);
    return perHeadQkv(`${m[1] ? 'token_refiner.refiner_blocks' : 'transformer_blocks'}.${m[2]}.attn`, width, base);
  },
};

/**
 * A fused qkv whose ΔW rows are grouped per head (`[head0: q k v, head1: …]`, DiffSynth-Studio's files):
 * head h's q, k, v rows onto rows [h·width, (h+1)·width) of `to_q`, `to_k`, `to_v`, as diffusers
 * de-interleaves them before splitting in three.
 */
function perHeadQkv(attn: string, width: number, base: Parameters<Layout['resolve']>[1]): LayoutResolution {
  const targets: Placement[] = [];
  for (const [j, p] of ['to_q', 'to_k', 'to_v'].entries()) {
    const r = MINIMAX_H3.lookup(base, `${attn}.${p}.weight`);
    if (!r.found) return r;
    const rows = base.shape(r.key)?.[0] ?? 0;
    if (rows % width !== 0) return missBecause(`is DiffSynth-Studio's per-head interleaved qkv_proj, which diffusers reads in heads of ${width} rows, and ${r.key} has ${rows} rows, not a multiple of ${width}; not supported`);
    const heads = rows / width;
    targets.push({ baseKey: r.key, rows: Array.from({ length: heads }, (_, h) => ({ src: h * 3 * width + j * width, dst: h * width, count: width })) });
  }
  return { found: true, targets };
}

const ORIGINAL_MARKER = /(^|\.)blocks\.\d+\.attn\.qkv_proj\.weight$/;
const ORIGINAL = modelPrefix((key, base) => {
  const m = ORIGINAL_MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}audio_patch_proj.weight`) ? p : undefined;
});
const FUSED_QKV = /^(token_refiner[._])?blocks[._]\d+[._]attn[._]qkv_proj$/;

/**
 * 'MiniMax-H3' where `base` is a MiniMax-H3 transformer (diffusers' or the original checkpoint), else undefined:
 * only there is a `__metadata__` `alpha` of a file in names H3 shares with other models H3's (minimax-h3-file.ts).
 */
export function minimaxH3Base(base: Parameters<Layout['resolve']>[1]): string | undefined {
  return MINIMAX_H3.of(base) !== null || ORIGINAL.of(base) !== null ? 'MiniMax-H3' : undefined;
}

/**
 * The original MiniMax-H3 checkpoint as a base: a fused `qkv_proj` is refused (see above); other modules
 * land by name. Listed before the layouts that find a module by its name.
 */
export const minimaxH3Original: Layout = {
  name: 'minimax-h3-original',
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    if (!FUSED_QKV.test(address.path) || ORIGINAL.of(base) === null) return undefined;
    return {
      ...missBecause('names the fused qkv_proj of the original MiniMax-H3 checkpoint, whose released shards hold q, k and v interleaved per head and the reference reorders to [q; k; v] on loading; a LoRA\'s rows follow its trainer (DiffSynth-Studio: per head; the others: [q; k; v]) and a checkpoint file does not say which order it holds, and diffusers\' MiniMaxH3LoraLoaderMixin loads these LoRAs only onto MiniMaxH3Transformer3DModel; not supported: merge onto the diffusers transformer folder (scripts/convert_minimax_h3_to_diffusers.py)'),
      ambiguous: true,
    };
  },
};

const REF = 'transformer_ref.';
const holdsRef = new WeakMap<readonly string[], boolean>();

/**
 * MiniMax-H3's second DiT partition, `transformer_ref/` (the `ref2va` workflow's, the same
 * MiniMaxH3Transformer3DModel as `transformer/` with other weights): diffusers' MiniMaxH3LoraLoaderMixin
 * loads a file's `transformer_ref.` modules only into that partition (it raises where the pipeline holds
 * none), and a lone transformer folder or checkpoint does not say which partition it is (the two share one
 * config). So a `transformer_ref.` module lands by its name on a pipeline folder that holds
 * `transformer_ref/`, and on any other base it is refused here, not left to match the end of its name.
 */
export const minimaxH3Ref: Layout = {
  name: 'minimax-h3-ref',
  resolve(address, base) {
    if ((address.part !== undefined && address.part !== 'unet') || address.flat || !address.path.startsWith(REF)) return undefined;
    let holds = holdsRef.get(base.keys);
    if (holds === undefined) {
      holds = base.keys.some((k) => k.startsWith(REF));
      holdsRef.set(base.keys, holds);
    }
    if (holds) return undefined;
    return {
      ...missBecause('is for MiniMax-H3\'s transformer_ref/ partition (the ref2va workflow\'s), which diffusers\' MiniMaxH3LoraLoaderMixin loads transformer_ref. modules into and no other, and this base holds no transformer_ref/ and does not say which partition it is (both share one config); not supported — give a pipeline folder whose model_index.json lists transformer_ref, or, where this base is H3\'s transformer_ref/, rename the file\'s transformer_ref. prefix to transformer. (diffusers loads that into the one partition a ref2va pipeline holds)'),
      ambiguous: true,
    };
  },
};
