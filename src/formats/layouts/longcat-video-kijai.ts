/**
 * Layout: Kijai's ComfyUI conversions of LongCat-Video LoRAs (Kijai/LongCat-Video_comfy's
 * `LongCat_distill_lora_alpha64_bf16.safetensors`, `LongCat_refinement_lora_rank128_bf16.safetensors`)
 * on LongCat-Video's own DiT (meituan-longcat/LongCat-Video `dit/`: `blocks.N.attn.qkv`,
 * `attn.proj`, `cross_attn.q_linear`, `cross_attn.kv_linear`, `cross_attn.proj`, `ffn.w1`-`w3`).
 * ComfyUI-WanVideoWrapper runs LongCat-Video as its WanModel (nodes_model_loading.py: a model of
 * dim 4096 is LongCat's 48 blocks; it reads `blocks.0.self_attn.k.weight` and `blocks.0.ffn.w1.weight`
 * from every model it loads), so Kijai's converted model and LoRAs carry Wan's attention names, the
 * fused projections split: `self_attn.q`, `.k`, `.v`, `.o`, `cross_attn.q`, `.k`, `.v`, `.o`, and
 * LongCat's own `ffn.w1`-`w3` (which land here by name). The wrapper applies such a LoRA with
 * ComfyUI's loader (comfy.sd.load_lora_for_models: `diffusion_model.` + the model's key, α/r).
 * LongCat-Video's attention computes q, k, v as the three row thirds of `attn.qkv` in that order,
 * and k, v as the two row halves of `cross_attn.kv_linear` (its LoRAUPParallel cuts them the same
 * way), so each split name is those rows of the fused weight here (a bias change on its rows of
 * the fused bias), and `o` is `attn.proj` / `cross_attn.proj`.
 *
 * The wrapper's WanModel for LongCat (wanvideo/modules/model.py, `is_longcat`) keeps LongCat's
 * adaLN and final layer as modules of the same shape and use under Wan's names: a block's
 * `modulation` is LongCat's `adaLN_modulation` (SiLU, then Linear(512, 6·dim), its output cut in six
 * in the same order: shift, scale, gate of the attention, then of the FFN), and Head_adaLN's
 * `head.modulation` (Linear(512, 2·dim): shift, scale) and `head.head` (Linear(dim, patch·out), the
 * same unpatchify order, channels last) are `final_layer.adaLN_modulation` and `final_layer.linear`.
 * So `blocks.N.modulation.1`, `head.modulation.1` and `head.head` land on those by name.
 *
 * Its embedders are LongCat's too: `patch_embedding` is Conv3d(16, dim, kernel = stride = (1, 2, 2)),
 * applied then flattened as LongCat's PatchEmbed3D applies `x_embedder.proj`; `text_embedding` is
 * Linear(4096, dim), GELU(tanh), Linear(dim, dim), LongCat's CaptionEmbedder `y_embedder.y_proj`; and
 * for LongCat its `time_embedding` is LongCat's own TimestepEmbedder (LongCat/layers.py: `mlp.0`
 * Linear(256, 512), SiLU, `mlp.2` Linear(512, 512), on the same [cos, sin] frequencies), LongCat's
 * `t_embedder`. Each is the same tensor renamed (every other weight of the conversion is, so the hidden
 * rows keep their order), so they land by name. Wan's own `time_embedding.0` / `.2`, `time_projection.1`
 * and `ffn.0` / `.2` are no modules of the wrapper's LongCat model (its blocks' FFN is LongCat's
 * SwiGLU `ffn.w1`-`w3`, it builds no time_projection), so the wrapper does not apply them: refused,
 * saying so. Other Wan names (`norm3`, the q/k norms, …) have no counterpart checked against both
 * models: refused naming the conversion and what to do. Only on a base that is LongCat-Video's DiT
 * (its `attn.qkv` and `cross_attn.kv_linear`).
 */
import { missBecause, type Layout, type BaseView } from './layout.js';

const SPLIT = /^blocks\.(\d+)\.(self_attn|cross_attn)\.(q|k|v|o)$/;
/** Wan names of the wrapper's LongCat model whose LongCat-Video module is the same Linear, renamed. */
const RENAMED: readonly [RegExp, string][] = [
  [/^blocks\.(\d+)\.modulation\.1$/, 'blocks.$1.adaLN_modulation.1'],
  [/^head\.modulation\.1$/, 'final_layer.adaLN_modulation.1'],
  [/^head\.head$/, 'final_layer.linear'],
  [/^patch_embedding$/, 'x_embedder.proj'],
  [/^text_embedding\.([02])$/, 'y_embedder.y_proj.$1'],
  [/^time_embedding\.mlp\.([02])$/, 't_embedder.mlp.$1'],
];
/** Wan's module names that the wrapper's LongCat model does not build, so that it applies no LoRA on them. */
const NOT_IN_WRAPPER = /^(blocks\.\d+\.ffn\.[02]|time_embedding\.[02]|time_projection\.1)$/;
/** Wan's other module names, as Kijai's conversion of LongCat-Video may carry them. */
const OTHER_WAN = /^(blocks\.\d+\.(modulation|norm[123]|self_attn\.norm_[qk]|cross_attn\.norm_[qk])|head\.modulation)$/;

/** The prefix under which `base` holds LongCat-Video's DiT (`` for its bare `dit/` files), else undefined. */
function longCatPrefix(base: BaseView): string | undefined {
  const qkv = base.keys.find((k) => k.endsWith('blocks.0.attn.qkv.weight'));
  if (qkv === undefined) return undefined;
  const prefix = qkv.slice(0, -'blocks.0.attn.qkv.weight'.length);
  return base.shape(`${prefix}blocks.0.cross_attn.kv_linear.weight`) ? prefix : undefined;
}

const CONVERTED = 'a module name of Kijai\'s ComfyUI-WanVideoWrapper conversion of LongCat-Video (Wan\'s names, as Kijai/LongCat-Video_comfy\'s LoRAs carry them)';

/** The Kijai LongCat-Video layout, in the registry (./index.ts) after the Wan layouts. */
export const longcatVideoKijai: Layout = {
  name: 'longcat-video-kijai',
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    const path = address.flat ? undefined : address.path;
    if (path === undefined) return undefined;
    const split = SPLIT.exec(path);
    const renamed = RENAMED.find(([re]) => re.test(path));
    if (!split && !renamed && !OTHER_WAN.test(path) && !NOT_IN_WRAPPER.test(path)) return undefined;
    const prefix = longCatPrefix(base);
    if (prefix === undefined) return undefined;
    if (renamed) {
      const module = `${prefix}${path.replace(renamed[0], renamed[1])}`;
      if (!base.shape(`${module}.weight`)) return missBecause(`is ${CONVERTED}; the base has no ${module}.weight`);
      return { found: true, targets: [{ baseKey: `${module}.weight` }] };
    }
    if (NOT_IN_WRAPPER.test(path)) {
      return missBecause(`is ${CONVERTED}, but a module of Wan's own that the wrapper's LongCat model does not have (its FFN is LongCat's ffn.w1-w3, its time_embedding LongCat's TimestepEmbedder, time_embedding.mlp.0 and .mlp.2, and it has no time_projection), so the wrapper does not apply it: remove it from the file`);
    }
    if (!split) {
      return missBecause(`is ${CONVERTED}, whose counterpart in LongCat-Video's own DiT is not known: merge it into Kijai's converted model (LongCat_TI2V_comfy_*.safetensors), where the wrapper applies it, or use LongCat-Video's own LoRA file`);
    }
    const [, block, attn, proj] = split;
    const at = `${prefix}blocks.${block}`;
    if (proj === 'o') {
      const key = `${at}.${attn === 'self_attn' ? 'attn' : 'cross_attn'}.proj.weight`;
      return base.shape(key) ? { found: true, targets: [{ baseKey: key }] } : missBecause(`is ${CONVERTED}; the base has no ${key}`);
    }
    if (attn === 'cross_attn' && proj === 'q') {
      const key = `${at}.cross_attn.q_linear.weight`;
      return base.shape(key) ? { found: true, targets: [{ baseKey: key }] } : missBecause(`is ${CONVERTED}; the base has no ${key}`);
    }
    // q, k, v of the self-attention: thirds of attn.qkv; k, v of the cross-attention: halves of kv_linear.
    const [fused, parts, index] = attn === 'self_attn' ? [`${at}.attn.qkv`, 3, 'qkv'.indexOf(proj)] : [`${at}.cross_attn.kv_linear`, 2, 'kv'.indexOf(proj)];
    const rows = base.shape(`${fused}.weight`)?.[0];
    if (rows === undefined) return missBecause(`is ${CONVERTED}; the base has no ${fused}.weight`);
    if (rows % parts !== 0) return missBecause(`is ${CONVERTED}, one ${parts === 3 ? 'third' : 'half'} of ${fused}.weight, whose ${rows} rows do not split in ${parts}`);
    const count = rows / parts;
    const segment = [{ src: 0, dst: index * count, count }];
    return {
      found: true,
      targets: [{ baseKey: `${fused}.weight`, rows: segment, ...(base.shape(`${fused}.bias`) ? { bias: { key: `${fused}.bias`, rows: segment } } : {}) }],
    };
  },
};
