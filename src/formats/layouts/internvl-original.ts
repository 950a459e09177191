/**
 * Layout: InternVL's two checkpoint formats where they differ in more than prefixes. OpenGVLab's
 * original checkpoints (remote code, `InternVLChatModel`) hold the vision tower as InternViT
 * (`vision_model.encoder.layers.N.attn.qkv`: q, k and v in one tensor) and, in the InternLM2
 * based models, the language model as InternLM2 (`attention.wqkv`: q, k and v interleaved by
 * key-value head group; `feed_forward.w1/w2/w3`). transformers' conversion to
 * `InternVLForConditionalGeneration` (the `-hf` repositories, convert_internvl_weights_to_hf.py)
 * renames both and splits the fused tensors:
 * - InternViT's `attn.qkv` rows are q, k and v in thirds (`attention.q_proj`, `k_proj`, `v_proj`),
 *   `attn.proj` is `attention.projection_layer`, `mlp.fc1`/`fc2` keep their names: a module
 *   named in either format lands on the other here, by rows where one tensor is three;
 * - InternLM2's wqkv rows interleave heads by key-value group, which only the model's head counts
 *   say (the tensor shapes do not), so a language-model module named in the other format is
 *   refused with what differs, never placed by a guess; so are the tower's other tensors.
 * Prefixes (`language_model.model.` ↔ `model.language_model.`, `mlp1.1` ↔ the projector) are
 * checkpoint-key-maps.ts's.
 */
import { RenameTable, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout, LayoutResolution } from './layout.js';

const VIT = 'vision_model.encoder.layers.{i}';
const HF_VIT = 'vision_tower.encoder.layer.{i}';
const part = (name: string) => ({ name: `${HF_VIT}.${name}`, units: 1 });

/** InternViT's linear layers: the original name (fused) and transformers' (parts), as the conversion renames and splits them. */
const VISION_RULES: readonly RenameRule[] = [
  { fused: `${VIT}.attn.qkv`, parts: [part('attention.q_proj'), part('attention.k_proj'), part('attention.v_proj')] },
  { fused: `${VIT}.attn.proj`, parts: [part('attention.projection_layer')] },
  { fused: `${VIT}.mlp.fc1`, parts: [part('mlp.fc1')] },
  { fused: `${VIT}.mlp.fc2`, parts: [part('mlp.fc2')] },
];
const vision = new RenameTable(VISION_RULES, () => false);

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
      return "names a module of transformers' InternVL vision tower; this base is InternVL's original checkpoint (InternVLChatModel), "
        + `whose InternViT tower is translated only for the attention's q, k, v and projection and the MLP's fc1 and fc2: not supported; ${TO_HF}`;
    }
    if (base.internlm2 && LLAMA_NAMES.test(path)) {
      return "names a language model module as transformers' InternVL does (Llama names); this base is InternVL's original checkpoint "
        + 'with an InternLM2 language model (attention.wqkv: q, k and v interleaved by key-value head group; feed_forward.w1/w2/w3): '
        + `not supported; ${TO_HF}`;
    }
  } else {
    if (ORIGINAL_VISION.test(path)) {
      return "names a module of InternViT's vision tower as InternVL's original checkpoint does; this base is transformers' InternVL "
        + "(InternVLForConditionalGeneration), whose tower is translated only for the attention's qkv and projection and the MLP's "
        + `fc1 and fc2: not supported; ${TO_ORIGINAL}`;
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
    if (!base) return undefined;
    // transformers' tower in either naming (`model.vision_tower.` or, as checkpoints save it, `vision_tower.`).
    const path = address.path.replace(/^model\.(?=vision_tower\.)/, '');
    if (base.format === 'original' ? HF_VISION.test(path) : ORIGINAL_VISION.test(path)) {
      const placed = vision.resolve(path, view);
      if (placed) return placed;
    }
    const why = refusal(path, base);
    return why === undefined ? undefined : { found: false, ambiguous: false, candidates: [], why };
  },
};
