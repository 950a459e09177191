/**
 * Layout: InternVL's two checkpoint formats where they differ in more than names. OpenGVLab's
 * original checkpoints (remote code, `InternVLChatModel`) hold the vision tower as InternViT
 * (`vision_model.encoder.layers.N.attn.qkv`: q, k and v in one tensor) and, in the InternLM2
 * based models, the language model as InternLM2 (`attention.wqkv`: q, k and v interleaved by
 * key-value head group; `feed_forward.w1/w2/w3`). transformers' conversion to
 * `InternVLForConditionalGeneration` (the `-hf` repositories, convert_internvl_weights_to_hf.py)
 * splits both and renames them. Where those rows go depends on the head layout, which neither
 * the tensor shapes nor a merge's inputs say for certain, so a module named in the other format
 * is refused here with what differs, never placed by a guess. The language model and projector
 * names that only differ by name land through checkpoint-key-maps.ts.
 */
import type { BaseView, Layout, LayoutResolution } from './layout.js';

type Format = 'original' | 'converted';

interface Base {
  format: Format;
  /** The language model is InternLM2's (fused wqkv). */
  internlm2: boolean;
}

const bases = new WeakMap<BaseView, Base | null>();

function internvlBase(view: BaseView): Base | null {
  let base = bases.get(view);
  if (base === undefined) {
    const arch = view.architectures;
    const format: Format | undefined = arch.includes('InternVLChatModel') ? 'original'
      : arch.includes('InternVLForConditionalGeneration') ? 'converted' : undefined;
    base = format ? { format, internlm2: view.keys.some((k) => k.includes('.attention.wqkv.')) } : null;
    bases.set(view, base);
  }
  return base;
}

const HF_VISION = /(^|\.)vision_tower\./;
const ORIGINAL_VISION = /(^|\.)vision_model\./;
const LLAMA_NAMES = /(\.self_attn\.[qkvo]_proj|\.mlp\.(gate|up|down)_proj|\.embed_tokens|(^|\.)lm_head)$/;
const INTERNLM2_NAMES = /(\.attention\.(wqkv|wo)|\.feed_forward\.w[123]|\.tok_embeddings|(^|\.)output)$/;

const TO_HF = 'merge into the transformers-format (-hf) checkpoint, or use an adapter trained on this one';
const TO_ORIGINAL = "merge into InternVL's original checkpoint, or use an adapter trained on this one";

function refusal(path: string, base: Base): string | undefined {
  if (base.format === 'original') {
    if (HF_VISION.test(path)) {
      return "names transformers' InternVL vision tower (q_proj, k_proj, v_proj apart); this base is InternVL's original checkpoint "
        + `(InternVLChatModel), whose InternViT tower holds q, k and v in one attn.qkv under other names: not supported; ${TO_HF}`;
    }
    if (base.internlm2 && LLAMA_NAMES.test(path)) {
      return "names a language model module as transformers' InternVL does (Llama names); this base is InternVL's original checkpoint "
        + 'with an InternLM2 language model (attention.wqkv: q, k and v interleaved by key-value head group; feed_forward.w1/w2/w3): '
        + `not supported; ${TO_HF}`;
    }
  } else {
    if (ORIGINAL_VISION.test(path)) {
      return "names InternViT's vision tower as InternVL's original checkpoint does (vision_model, one attn.qkv); this base is "
        + `transformers' InternVL (InternVLForConditionalGeneration), which splits q, k and v and renames the tower: not supported; ${TO_ORIGINAL}`;
    }
    if (INTERNLM2_NAMES.test(path)) {
      return "names InternLM2's modules as InternVL's original checkpoint does (attention.wqkv, feed_forward.w1/w2/w3); this base is "
        + "transformers' InternVL, which splits wqkv by key-value head group and renames the language model to Llama names: "
        + `not supported; ${TO_ORIGINAL}`;
    }
  }
  return undefined;
}

export const internvlOriginal: Layout = {
  name: 'internvl-original',
  resolve(address, view): LayoutResolution | undefined {
    if (address.flat) return undefined;
    const base = internvlBase(view);
    const why = base ? refusal(address.path, base) : undefined;
    return why === undefined ? undefined : { found: false, ambiguous: false, candidates: [], why };
  },
};
