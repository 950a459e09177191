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
 * - InternLM2's `attention.wo`, `feed_forward.w1/w3/w2`, `tok_embeddings` and `output` are
 *   Llama's `self_attn.o_proj`, `mlp.gate_proj/up_proj/down_proj`, `embed_tokens` and `lm_head`,
 *   one to one; its wqkv rows interleave heads by key-value group, which only the model's head
 *   counts say (the tensor shapes do not), so q, k, v and wqkv named in the other format are
 *   refused with what differs, never placed by a guess; so are the tower's other tensors.
 * Prefixes (`language_model.model.` ↔ `model.language_model.`, `mlp1.1` ↔ the projector) are
 * checkpoint-key-maps.ts's.
 */
import { oneToOne, RenameTable, type RenameRule } from './fused-renames.js';
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

const LM = 'language_model.model.layers.{i}';

/** InternLM2's names (fused side) and Llama's (parts) for the tensors the conversion only renames. */
const INTERNLM2_RULES: readonly RenameRule[] = [
  oneToOne(`${LM}.attention.wo`, `${LM}.self_attn.o_proj`),
  oneToOne(`${LM}.feed_forward.w1`, `${LM}.mlp.gate_proj`),
  oneToOne(`${LM}.feed_forward.w3`, `${LM}.mlp.up_proj`),
  oneToOne(`${LM}.feed_forward.w2`, `${LM}.mlp.down_proj`),
  oneToOne('language_model.model.tok_embeddings', 'language_model.model.embed_tokens'),
  oneToOne('language_model.output', 'language_model.lm_head'),
];
const internlm2 = new RenameTable(INTERNLM2_RULES, () => false);

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
const SPLIT_QKV = /\.self_attn\.[qkv]_proj$/;
const WQKV = /\.attention\.wqkv$/;

const TO_HF = 'merge into the transformers-format (-hf) checkpoint, or use an adapter trained on this one';
const TO_ORIGINAL = "merge into InternVL's original checkpoint, or use an adapter trained on this one";

function refusal(path: string, base: Base): string | undefined {
  if (base.format === 'original') {
    if (HF_VISION.test(path)) {
      return "names a module of transformers' InternVL vision tower; this base is InternVL's original checkpoint (InternVLChatModel), "
        + `whose InternViT tower is translated only for the attention's q, k, v and projection and the MLP's fc1 and fc2: not supported; ${TO_HF}`;
    }
    if (base.internlm2 && SPLIT_QKV.test(path)) {
      return "names the language model's attention as transformers' InternVL does (q_proj, k_proj, v_proj apart); this base is InternVL's "
        + 'original checkpoint with an InternLM2 language model, whose attention.wqkv interleaves q, k and v by key-value head group: '
        + `not supported; ${TO_HF}`;
    }
  } else {
    if (ORIGINAL_VISION.test(path)) {
      return "names a module of InternViT's vision tower as InternVL's original checkpoint does; this base is transformers' InternVL "
        + "(InternVLForConditionalGeneration), whose tower is translated only for the attention's qkv and projection and the MLP's "
        + `fc1 and fc2: not supported; ${TO_ORIGINAL}`;
    }
    if (WQKV.test(path)) {
      return "names InternLM2's attention.wqkv as InternVL's original checkpoint does; this base is transformers' InternVL, which splits "
        + `it into q_proj, k_proj and v_proj by key-value head group: not supported; ${TO_ORIGINAL}`;
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
    const internlm2Names = base.format === 'original' ? base.internlm2 && LLAMA_NAMES.test(path) : INTERNLM2_NAMES.test(path);
    if (internlm2Names && !SPLIT_QKV.test(path) && !WQKV.test(path)) {
      // `model.language_model.` (transformers' tree) and `language_model.model.` (checkpoints) alike.
      const placed = internlm2.resolve(path.replace(/^model\.language_model\./, 'language_model.model.').replace(/^lm_head$/, 'language_model.lm_head'), view);
      if (placed) return placed;
    }
    const why = refusal(path, base);
    return why === undefined ? undefined : { found: false, ambiguous: false, candidates: [], why };
  },
};
