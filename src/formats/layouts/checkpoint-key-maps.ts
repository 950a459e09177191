/**
 * The checkpoint key conversions transformers applies when it loads a vision-language model
 * (each model class's `_checkpoint_conversion_mapping`, transformers 4.52 and later): checkpoints
 * saved before its VLM refactor name the language model `model.layers…` (Qwen2-VL) or
 * `language_model.model.layers…` (LLaVA family), the refactored module tree names it
 * `model.language_model.layers…`. transformers' save_pretrained writes the old names back, so
 * checkpoints of either age mostly hold the old ones; PEFT applies the same conversion to an
 * adapter's keys when it loads one (peft_model.py, save_and_load.py), and saves the new ones,
 * so adapters exist in both forms too.
 *
 * The rules follow Python's `re.subn` as both tools call it: patterns are searched, not
 * anchored, unless they start with `^`; `.` is any character, as written there; every match in
 * the key is replaced; `$1` in a replacement is the first group (Python's `\1`); for each key the
 * first pattern that matches rewrites it, and keys already in the new form match none.
 */

/** One rewrite: every match of `pattern` in a key is replaced by `replacement` (`$1`: a group). */
export type KeyRule = readonly [pattern: RegExp, replacement: string];

export interface CheckpointKeyMap {
  /** For messages: `Qwen2-VL`. */
  readonly family: string;
  readonly rules: readonly KeyRule[];
}

const QWEN2_VL: CheckpointKeyMap = {
  family: 'Qwen2-VL',
  rules: [
    [/^visual/, 'model.visual'],
    [/^model(?!\.(language_model|visual))/, 'model.language_model'],
  ],
};

/** LlavaForConditionalGeneration and the models that copy its mapping (`tower`: the vision module's name). */
function llavaLike(family: string, extra: readonly KeyRule[] = [], tower = 'vision_tower'): CheckpointKeyMap {
  return {
    family,
    rules: [
      [/^language_model.model/, 'model.language_model'],
      [new RegExp(`^${tower}`), `model.${tower}`],
      [/^multi_modal_projector/, 'model.multi_modal_projector'],
      ...extra,
      [/^language_model.lm_head/, 'lm_head'],
    ],
  };
}

/**
 * InternVL's original projector names, which transformers' conversion renames
 * (convert_internvl_weights_to_hf.py); it keeps the names of a language model that already has
 * Llama's or Qwen2's (Qwen2.5, InternLM3).
 */
const INTERNVL_ORIGINAL_PROJECTOR: readonly KeyRule[] = [
  [/^mlp1\.0(?=\.|$)/, 'model.multi_modal_projector.layer_norm'],
  [/^mlp1\.1(?=\.|$)/, 'model.multi_modal_projector.linear_1'],
  [/^mlp1\.3(?=\.|$)/, 'model.multi_modal_projector.linear_2'],
];
const INTERNVL = llavaLike('InternVL', INTERNVL_ORIGINAL_PROJECTOR);

const IMAGE_NEWLINE: KeyRule = [/^image_newline/, 'model.image_newline'];

/**
 * Not a transformers conversion of this class: Gemma3ForCausalLM's names for the language model
 * of a Gemma 3 checkpoint. transformers loads that language model into Gemma3ForCausalLM (its
 * `base_model_prefix` is `language_model`, so `language_model.model.layers.N` is that class's
 * `model.layers.N`), trainers fine-tune the 4B/12B/27B models text-only that way, and the
 * adapters name its modules `model.layers.N…`, which the multimodal model's tree does not have.
 * Only keys starting `model.` outside the multimodal tree's three parts are rewritten.
 */
const GEMMA3_CAUSAL_LM: KeyRule = [/^model(?=\.)(?!\.(language_model|vision_tower|multi_modal_projector)(\.|$))/, 'model.language_model'];
const VISION_RESAMPLER: KeyRule = [/^vision_resampler/, 'model.vision_resampler'];

/**
 * Not a transformers conversion either: Llama4ForCausalLM's names for the language model of a
 * Llama 4 checkpoint (Llama4ForConditionalGeneration, whose module tree is its checkpoint's:
 * `language_model.model.layers.N…`, `vision_model.model.layers.N…`). AutoModelForCausalLM makes
 * a Llama4ForCausalLM of a Llama 4 repository (the class takes the config's `text_config`), whose
 * `base_model_prefix` is `language_model`: transformers strips that prefix from the checkpoint's
 * keys and leaves the vision model's unused, so trainers that load a model with AutoModelForCausalLM
 * write adapters naming `model.layers.N…` and `lm_head`. By its tail `model.layers.N.self_attn.q_proj`
 * would also fit the vision encoder's `vision_model.model.layers.N.self_attn.q_proj`; `lm_head` is
 * found by its tail, `language_model.lm_head`.
 */
const LLAMA4: CheckpointKeyMap = {
  family: 'Llama 4',
  rules: [[/^model(?=\.)(?!\.(language_model|vision_model|multi_modal_projector)(\.|$))/, 'language_model.model']],
};

/**
 * Not a transformers conversion of this class: Gemma3nForCausalLM's names for the language model
 * of a Gemma 3n checkpoint (Gemma3nForConditionalGeneration, saved in the refactored names, so its
 * own mapping is empty). Gemma3nForCausalLM's mapping (`model.language_model` → `model`, below)
 * loads that language model from the multimodal checkpoint, and an adapter trained so names
 * `model.layers.N…`; only keys starting `model.` outside the multimodal model's five parts are
 * rewritten.
 */
const GEMMA3N: CheckpointKeyMap = {
  family: 'Gemma 3n',
  rules: [[/^model(?=\.)(?!\.(language_model|vision_tower|audio_tower|embed_vision|embed_audio)(\.|$))/, 'model.language_model']],
};

/**
 * Not a transformers conversion of this class either: Gemma4ForCausalLM's names for the language model
 * of a Gemma 4 checkpoint (Gemma4ForConditionalGeneration, saved in the refactored names:
 * `model.language_model.layers.N…`, `model.vision_tower.encoder.layers.N….linear`, `model.embed_vision.…`
 * and, on E2B/E4B, `model.audio_tower.…`, `model.embed_audio.…`). Gemma4ForCausalLM, the class
 * trainers fine-tune the language model with text-only, holds it as `model.layers.N…` (vLLM's
 * Gemma4ForCausalLM maps `model.language_model.` to `model.` as it loads the checkpoint), so its
 * adapters name `model.layers.N…`; only keys starting `model.` outside the multimodal model's five parts
 * are rewritten.
 */
const GEMMA4: CheckpointKeyMap = {
  family: 'Gemma 4',
  rules: [[/^model(?=\.)(?!\.(language_model|vision_tower|audio_tower|embed_vision|embed_audio)(\.|$))/, 'model.language_model']],
};

/**
 * Gemma 4 Unified (Gemma4UnifiedForConditionalGeneration, model_type `gemma4_unified`: google/gemma-4-12B,
 * LTX-2.5's text encoder): the same language model, `model.language_model.layers.N…` and `lm_head`, but no
 * towers; Gemma4UnifiedModel holds an encoder-free `model.embed_vision.…` (`patch_ln1`, `patch_dense`,
 * `patch_ln2`, `pos_embedding`, `pos_norm`, `multimodal_embedder.embedding_projection`) and
 * `model.embed_audio.embedding_projection`. Gemma4UnifiedForCausalLM (model_type `gemma4_unified_text`),
 * whose own docstring loads google/gemma-4-12B-it, holds the language model as `model.layers.N…`, so its
 * adapters name that; the rule is Gemma 4's (the towers it also leaves alone are absent here).
 */
const GEMMA4_UNIFIED: CheckpointKeyMap = { ...GEMMA4, family: 'Gemma 4 Unified' };

/**
 * The bare Gemma4Model and Gemma4UnifiedModel (the ForConditionalGeneration classes without the head)
 * keep those parts at the root: `language_model.layers.N…`, `embed_vision.…`, `vision_tower.…`.
 * transformers loads either checkpoint into the other class through `base_model_prefix` (`model`), so an
 * adapter of the multimodal class (`model.language_model.…`, `model.embed_vision.…`) names the same
 * tensors, and one of the text class (`model.layers.N…`) the language model as above. `lm_head`, which
 * the bare model has none of, stays as it is and is refused as no tensor.
 */
function gemma4Bare(family: string): CheckpointKeyMap {
  return {
    family,
    rules: [
      [/^model\.(?=(language_model|vision_tower|audio_tower|embed_vision|embed_audio)(\.|$))/, ''],
      [/^model(?=\.)/, 'language_model'],
    ],
  };
}

/**
 * Not a transformers conversion of this class either: Qwen3_5ForCausalLM's (and Qwen3_5MoeForCausalLM's)
 * names for the language model of a Qwen3.5 checkpoint (Qwen3_5ForConditionalGeneration, saved in the
 * refactored names: `model.language_model.layers.N…`, `model.visual.…`, `lm_head`). transformers 5
 * loads that language model into the text class by removing the `language_model` prefix
 * (conversion_mapping.py, "qwen3_5_text": PrefixChange(prefix_to_remove="language_model"), which
 * "qwen3_5_moe_text" copies), so an adapter trained on it names `model.layers.N…`; only keys starting
 * `model.` outside the multimodal model's two parts are rewritten.
 */
const QWEN35: CheckpointKeyMap = {
  family: 'Qwen3.5',
  rules: [[/^model(?=\.)(?!\.(language_model|visual)(\.|$))/, 'model.language_model']],
};

/**
 * Not a transformers conversion either: the Thinker class's names on an Omni checkpoint (Qwen2.5-Omni's
 * and Qwen3-Omni's: the thinker under `thinker.` — `thinker.model.layers.N…`, `thinker.visual.`,
 * `thinker.audio_tower.`, `thinker.lm_head` — beside the talker's `talker.model.layers.N…` and the
 * speech decoder). Trainers fine-tune the thinker alone (Qwen2_5OmniThinkerForConditionalGeneration,
 * Qwen3OmniMoeThinkerForConditionalGeneration), whose `base_model_prefix` is `thinker`: transformers
 * strips it from the checkpoint's keys and leaves the talker's unused, so their adapters name
 * `model.layers.N…`, `visual.…`, `audio_tower.…` and `lm_head`, which by their tail would also fit
 * the talker's decoder. Only keys starting with one of those four are rewritten.
 */
const OMNI_THINKER: KeyRule = [/^(?=(model|visual|audio_tower|lm_head)(\.|$))/, 'thinker.'];

/**
 * PaddleOCR-VL (PaddleOCRVLForConditionalGeneration): PaddlePaddle/PaddleOCR-VL's checkpoint, written
 * for its remote code, names the SigLIP tower `visual.vision_model.…`, the projector `mlp_AR.…` and
 * the ERNIE-4.5 language model `model.layers.N…`; transformers' class (and the `-hf` conversion,
 * convert_paddleocr_vl_to_hf.py) names them `model.visual.…`, `model.projector.…` and
 * `model.language_model.…`. The class's `_checkpoint_conversion_mapping` (and conversion_mapping.py's
 * "paddleocr_vl") renames them so; adapters trained on either are met in either checkpoint.
 */
const PADDLEOCR_VL: CheckpointKeyMap = {
  family: 'PaddleOCR-VL',
  rules: [
    [/^visual/, 'model.visual'],
    [/^mlp_AR/, 'model.projector'],
    [/^model(?!(\.visual|\.projector|\.language_model))/, 'model.language_model'],
  ],
};

/**
 * ERNIE-4.5-VL MoE (Ernie4_5_VLMoeForConditionalGeneration, baidu/ERNIE-4.5-VL-28B-A3B-PT and -Base-PT,
 * 424B-A47B): transformers 5 loads the checkpoint Baidu ships for its remote code through
 * conversion_mapping.py's "ernie4_5_vl_moe": the tower `vision_model.…` is renamed `vision_tower.…`,
 * which the class holds at `model.vision_tower.…`, the resampler's `spatial_linear.0/2/3` and
 * `temporal_linear.0/2/3` become `fc1`, `fc2`, `ln`, and the language model's `model.layers`,
 * `model.embed_tokens`, `model.norm` gain `language_model.`. Its experts, one tensor per expert
 * under `mlp.experts.K` (the text experts first, then the vision experts), become the fused
 * `mlp.text_moe.experts.*` and `mlp.vision_moe.experts.*` (ernie-vl-experts.ts), and its routers
 * `mlp.gate.weight` / `mlp.gate.weight_1`, stored (hidden, E), become `mlp.text_moe.gate.weight` /
 * `mlp.vision_moe.gate.weight` transposed: those are not renames and are not written here.
 */
const ERNIE45_VL: CheckpointKeyMap = {
  family: 'ERNIE-4.5-VL',
  rules: [
    [/^vision_model(?=\.|$)/, 'model.vision_tower'],
    [/^model\.resampler_model\.(spatial|temporal)_linear\.0(?=\.|$)/, 'model.resampler_model.$1_linear.fc1'],
    [/^model\.resampler_model\.(spatial|temporal)_linear\.2(?=\.|$)/, 'model.resampler_model.$1_linear.fc2'],
    [/^model\.resampler_model\.(spatial|temporal)_linear\.3(?=\.|$)/, 'model.resampler_model.$1_linear.ln'],
    [/^model\.(?!(language_model|resampler_model|vision_tower)(\.|$))/, 'model.language_model.'],
  ],
};

/**
 * Nemotron-H (NemotronHForCausalLM: NVIDIA-Nemotron-Nano-9B-v2, Nemotron 3 Nano 30B-A3B …): the
 * checkpoints NVIDIA ships, written for its remote code, name the model `backbone.…`
 * (`backbone.layers.N.mixer.…`, `backbone.embeddings`, `backbone.norm_f`); transformers 5's own
 * class names it `model.…`, and conversion_mapping.py's "nemotron_h" renames `backbone.` to
 * `model.` (and an `embedding.weight` to `embeddings.weight`) as it loads them. Adapters trained on
 * either land on either. (Its per-expert `mixer.experts.K.up_proj` / `down_proj`, which transformers
 * 5 stacks into `mixer.experts.up_proj` / `down_proj`, are per-expert-tensors.ts's.)
 */
const NEMOTRON_H: CheckpointKeyMap = {
  family: 'Nemotron-H',
  rules: [
    [/^backbone\.embedding(?=\.weight$)/, 'model.embeddings'],
    [/^backbone(?=\.)/, 'model'],
  ],
};

/**
 * ColQwen2 (ColQwen2ForRetrieval; vidore/colqwen2-v1.0-hf, colqwen2.5): its checkpoints hold the
 * Qwen2-VL model as transformers 4.52's Qwen2VLForConditionalGeneration names it, under `vlm.`
 * (`vlm.model.language_model.…`, `vlm.model.visual.…`, as convert_colqwen2_weights_to_hf.py writes
 * them); transformers 5's class holds a Qwen2VLModel there (`vlm.language_model.…`, `vlm.visual.…`),
 * and conversion_mapping.py's "colqwen2" renames `vlm.model` to `vlm` as it loads them. Its second
 * rule (`vlm` not followed by `language_model` or `visual` → `vlm.language_model`) serves
 * checkpoints from before the 4.52 refactor, which no ColQwen2 `-hf` release has, and would also
 * rename the unused `vlm.lm_head`: left out.
 */
const COLQWEN2: CheckpointKeyMap = {
  family: 'ColQwen2',
  rules: [[/^vlm\.model(?=\.)/, 'vlm']],
};

/**
 * T5Gemma 2 (T5Gemma2ForConditionalGeneration, google/t5gemma-2-270m-270m, -1b-1b, -4b-4b): its
 * checkpoints name the encoder's text model `model.encoder.layers.N…`, `model.encoder.embed_tokens`,
 * `model.encoder.norm`, beside `model.encoder.vision_tower.…`, `model.encoder.multi_modal_projector.…`
 * and the decoder's `model.decoder.…`; transformers' later T5Gemma2Encoder holds the text model as
 * `text_model` (`model.encoder.text_model.layers.N…`), and conversion_mapping.py's "t5gemma2_encoder"
 * renames the encoder's `layers.`, `embed_tokens.` and `norm.` (never the decoder's, the SigLIP
 * tower's `vision_model.encoder.layers.`, a layer's `…_layernorm.` or the projector's
 * `mm_soft_emb_norm.`) so as it loads them. Adapters trained on either land on either. `prefix` is
 * where the encoder sits: `model.encoder.` in the task classes, `encoder.` in T5Gemma2Model, the
 * root in the encoder alone (T5Gemma2Encoder, model_type "t5gemma2_encoder").
 */
function t5gemma2(family: string, prefix: string): CheckpointKeyMap {
  return { family, rules: [[new RegExp(`^${prefix.replaceAll('.', '\\.')}(?=(layers|embed_tokens|norm)(\\.|$))`), `${prefix}text_model.`]] };
}

/**
 * π0 (pi0) and π0.5 as LeRobot and openpi save them (lerobot/pi0_base, lerobot/pi05_base, a LeRobot
 * policy's model.safetensors): a PaliGemma under `paligemma_with_expert.paligemma.` (its language model
 * `model.language_model.layers.N…`, its tower `model.vision_tower.…`; LeRobot's releases before its
 * openpi port, on transformers before the VLM refactor, `language_model.model.layers.N…`,
 * `vision_tower.…`), the action expert under `paligemma_with_expert.gemma_expert.model.…`, and the
 * action projections `action_in_proj`, `action_out_proj`, `state_proj` (π0), `action_time_mlp_in` /
 * `_out` (π0; π0.5's `time_mlp_in` / `_out`), all at the root of openpi's conversion and under `model.`
 * in a LeRobot policy's file. transformers' PI0ForConditionalGeneration names them `model.vlm.…`,
 * `model.dit.…`, `embed_action_time.state_proj` (and the other three) and `action_out_proj`, and
 * conversion_mapping.py's "pi0" renames the checkpoint's so as it loads them; PEFT adapters trained on
 * a LeRobot policy name `model.paligemma_with_expert.…`, `model.state_proj`, …. Both go to
 * transformers' names here. The heads (`paligemma.lm_head`, `gemma_expert.lm_head`) are the files' only
 * copy of the embeddings: the PaliGemma ties its embedding to its head and safetensors keeps one name
 * (openpi's conversion writes the Gemma embedding there, LeRobot copies it into `embed_tokens` when it
 * loads a policy), and conversion_mapping.py's "pi0" loads them as `model.vlm.language_model.embed_tokens`
 * and `model.dit.embed_tokens`, so an embedding LoRA in any naming lands on them. Neither head runs in
 * π0's or π0.5's forward (the VLM only fills the expert's cache), so the tie needs no untying.
 */
const PI0_PROJECTIONS = 'state_proj|action_in_proj|action_time_mlp_in|action_time_mlp_out';
const PI0: CheckpointKeyMap = {
  family: 'π0',
  rules: [
    [/^(?:model\.)?paligemma_with_expert\.paligemma\.model(?=\.)/, 'model.vlm'],
    [/^(?:model\.)?paligemma_with_expert\.paligemma\.language_model\.model(?=\.)/, 'model.vlm.language_model'],
    [/^(?:model\.)?paligemma_with_expert\.paligemma\.(vision_tower|multi_modal_projector)(?=\.)/, 'model.vlm.$1'],
    [/^(?:model\.)?paligemma_with_expert\.gemma_expert\.model(?=\.)/, 'model.dit'],
    [new RegExp(`^(?:model\\.)?(${PI0_PROJECTIONS})(?=\\.|$)`), 'embed_action_time.$1'],
    [/^model\.(?=action_out_proj(\.|$)|time_mlp_(in|out)(\.|$))/, ''],
    [/^(?:model\.)?paligemma_with_expert\.paligemma\.lm_head(?=\.|$)/, 'model.vlm.language_model.embed_tokens'],
    [/^(?:model\.)?paligemma_with_expert\.gemma_expert\.lm_head(?=\.|$)/, 'model.dit.embed_tokens'],
  ],
};

/**
 * Hy3 (HYV3ForCausalLM, tencent/Hy3): its checkpoints name each MoE layer's shared expert
 * `mlp.shared_mlp.{gate,up,down}_proj`, its router `mlp.router.gate.weight` and the router's bias
 * `mlp.expert_bias`; transformers 5's class names them `mlp.shared_experts.…`, `mlp.gate.weight` and
 * `mlp.e_score_correction_bias` (conversion_mapping.py's "hy_v3"), and stacks the per-expert
 * `mlp.experts.K.*` into `mlp.experts.gate_up_proj` / `down_proj` as Qwen2-MoE's (per-expert-tensors.ts).
 */
const HY3: CheckpointKeyMap = {
  family: 'Hy3',
  rules: [
    [/\.mlp\.router\.gate\.weight$/, '.mlp.gate.weight'],
    [/\.mlp\.expert_bias$/, '.mlp.e_score_correction_bias'],
    [/\.mlp\.shared_mlp(?=\.)/, '.mlp.shared_experts'],
  ],
};

/**
 * Laguna (LagunaForCausalLM): its checkpoints name the shared expert `mlp.shared_expert.…` (and the
 * router's bias `mlp.experts.e_score_correction_bias`); transformers' class names them
 * `mlp.shared_experts.…` and `mlp.gate.e_score_correction_bias` (conversion_mapping.py's "laguna"),
 * and stacks the experts as Qwen2-MoE's. Written with its dots escaped, so that a name already in the
 * class's form (`shared_experts.`) is left as it is.
 */
const LAGUNA: CheckpointKeyMap = {
  family: 'Laguna',
  rules: [
    [/\.mlp\.experts\.e_score_correction_bias$/, '.mlp.gate.e_score_correction_bias'],
    [/\.mlp\.shared_expert(?=\.)/, '.mlp.shared_experts'],
  ],
};

/**
 * DeepSeek-V4 (DeepseekV4ForCausalLM: deepseek-ai/DeepSeek-V4-Flash, -Pro): DeepSeek's checkpoints
 * keep the names of its own inference code (`layers.N.attn.wq_a`, `attn.compressor.wkv`,
 * `attn.indexer.wq_b`, `ffn.shared_experts.w1`, `ffn.experts.K.w1`, `embed`, `head`); transformers'
 * class names them as conversion_mapping.py's "deepseek_v4" renames them on load, under the
 * `model.` its ForCausalLM adds: `attn` → `self_attn`, `ffn` → `mlp`, `wq_a`/`wq_b`/`wkv`/`wo_a`/`wo_b`
 * → `q_a_proj`/`q_b_proj`/`kv_proj`/`o_a_proj`/`o_b_proj`, the compressors' `wkv`/`wgate` →
 * `kv_proj`/`gate_proj`, the indexer (and its compressor) under `self_attn.compressor.indexer`, the
 * shared expert's `w1`/`w3`/`w2` → `gate_proj`/`up_proj`/`down_proj`, `embed` → `model.embed_tokens`,
 * `head` → `lm_head`. Its routed experts `ffn.experts.K.w1`/`w3`/`w2`, which transformers stacks
 * into `mlp.experts.gate_up_proj` (w1's rows, then w3's) and `down_proj`, are named here as one
 * expert's `gate_proj`/`up_proj`/`down_proj`, which per-expert-tensors.ts stacks as transformers
 * does. Each rule writes a key's whole final name, as the first rule that matches is the only one
 * applied; `.scale` siblings follow their weights. The MTP block (`mtp.N.…`), which transformers
 * leaves out, keeps its names (no adapter names it).
 */
const DSV4_L = '^layers\\.(\\d+)\\.';
const dsv4 = (from: string, to: string): KeyRule => [new RegExp(`${DSV4_L}${from}(?=\\.)`), `model.layers.$1.${to}`];
const DEEPSEEK_V4: CheckpointKeyMap = {
  family: 'DeepSeek-V4',
  rules: [
    [/^embed(?=\.weight$)/, 'model.embed_tokens'],
    [/^head(?=\.weight$)/, 'lm_head'],
    [/^norm(?=\.weight$)/, 'model.norm'],
    dsv4('attn\\.indexer\\.compressor\\.wkv', 'self_attn.compressor.indexer.kv_proj'),
    dsv4('attn\\.indexer\\.compressor\\.wgate', 'self_attn.compressor.indexer.gate_proj'),
    dsv4('attn\\.indexer\\.compressor', 'self_attn.compressor.indexer'),
    dsv4('attn\\.indexer\\.wq_b', 'self_attn.compressor.indexer.q_b_proj'),
    dsv4('attn\\.indexer', 'self_attn.compressor.indexer'),
    dsv4('attn\\.compressor\\.wkv', 'self_attn.compressor.kv_proj'),
    dsv4('attn\\.compressor\\.wgate', 'self_attn.compressor.gate_proj'),
    dsv4('attn\\.wq_a', 'self_attn.q_a_proj'),
    dsv4('attn\\.wq_b', 'self_attn.q_b_proj'),
    dsv4('attn\\.wkv', 'self_attn.kv_proj'),
    dsv4('attn\\.wo_a', 'self_attn.o_a_proj'),
    dsv4('attn\\.wo_b', 'self_attn.o_b_proj'),
    dsv4('attn', 'self_attn'),
    dsv4('ffn\\.shared_experts\\.w1', 'mlp.shared_experts.gate_proj'),
    dsv4('ffn\\.shared_experts\\.w3', 'mlp.shared_experts.up_proj'),
    dsv4('ffn\\.shared_experts\\.w2', 'mlp.shared_experts.down_proj'),
    dsv4('ffn\\.experts\\.(\\d+)\\.w1', 'mlp.experts.$2.gate_proj'),
    dsv4('ffn\\.experts\\.(\\d+)\\.w3', 'mlp.experts.$2.up_proj'),
    dsv4('ffn\\.experts\\.(\\d+)\\.w2', 'mlp.experts.$2.down_proj'),
    dsv4('ffn', 'mlp'),
  ],
};

/**
 * By config.json `architectures`: every transformers model class that defines a non-empty
 * `_checkpoint_conversion_mapping` (InternVL's with its original projector names added),
 * InternVL's original format, PaddleOCR-VL's, ERNIE-4.5-VL's and Nemotron-H's remote-code checkpoints
 * ColQwen2's, T5Gemma 2's, π0's, Hy3's and Laguna's (whose names transformers' class renames as it loads them), and the multimodal classes whose language model transformers also
 * loads into a text-only class of other names (Gemma 3, Gemma 3n, Gemma 4 and Gemma 4 Unified, Llama 4, Qwen3.5) or whose thinker it loads
 * into a class of its own (Qwen2.5-Omni, Qwen3-Omni).
 */
const BY_ARCHITECTURE: Readonly<Record<string, CheckpointKeyMap>> = {
  Qwen2VLForConditionalGeneration: QWEN2_VL,
  Qwen2_5_VLForConditionalGeneration: { ...QWEN2_VL, family: 'Qwen2.5-VL' },
  LlavaForConditionalGeneration: llavaLike('LLaVA'),
  VipLlavaForConditionalGeneration: llavaLike('VipLLaVA'),
  LlavaNextForConditionalGeneration: llavaLike('LLaVA-NeXT', [IMAGE_NEWLINE]),
  LlavaNextVideoForConditionalGeneration: llavaLike('LLaVA-NeXT-Video', [IMAGE_NEWLINE, VISION_RESAMPLER]),
  LlavaOnevisionForConditionalGeneration: llavaLike('LLaVA-OneVision', [IMAGE_NEWLINE, VISION_RESAMPLER]),
  Mistral3ForConditionalGeneration: llavaLike('Mistral 3'),
  Gemma3ForConditionalGeneration: llavaLike('Gemma 3', [GEMMA3_CAUSAL_LM]),
  PaliGemmaForConditionalGeneration: llavaLike('PaliGemma'),
  MllamaForConditionalGeneration: llavaLike('Mllama', [], 'vision_model'),
  InternVLForConditionalGeneration: INTERNVL,
  AriaForConditionalGeneration: llavaLike('Aria'),
  AyaVisionForConditionalGeneration: llavaLike('Aya Vision'),
  GotOcr2ForConditionalGeneration: llavaLike('GOT-OCR 2'),
  VideoLlavaForConditionalGeneration: {
    family: 'Video-LLaVA',
    rules: [
      [/^language_model.model/, 'model.language_model'],
      [/^image_tower/, 'model.image_tower'],
      [/^video_tower/, 'model.video_tower'],
      [/^multi_modal_projector/, 'model.multi_modal_projector'],
      [/^language_model.lm_head/, 'lm_head'],
    ],
  },
  FuyuForCausalLM: {
    family: 'Fuyu',
    rules: [
      [/^language_model.model/, 'model.language_model'],
      [/^vision_embed_tokens/, 'model.vision_embed_tokens'],
      [/^language_model.lm_head/, 'lm_head'],
    ],
  },
  Emu3ForConditionalGeneration: {
    family: 'Emu3',
    rules: [
      [/^text_model.model/, 'model.text_model'],
      [/^vqmodel/, 'model.vqmodel'],
      [/^text_model.lm_head/, 'lm_head'],
    ],
  },
  // PaliGemma inside a retrieval head, under `vlm.`; unanchored as transformers writes them.
  ColPaliForRetrieval: {
    family: 'ColPali',
    rules: [
      [/vlm.language_model.model/, 'vlm.model.language_model'],
      [/vlm.vision_tower/, 'vlm.model.vision_tower'],
      [/vlm.multi_modal_projector/, 'vlm.model.multi_modal_projector'],
      [/vlm.language_model.lm_head/, 'vlm.lm_head'],
    ],
  },
  // Gemma 3 inside a classifier, under `model.`; unanchored as transformers writes them.
  ShieldGemma2ForImageClassification: {
    family: 'ShieldGemma 2',
    rules: [
      [/model.language_model.model/, 'model.model.language_model'],
      [/model.vision_tower/, 'model.model.vision_tower'],
      [/model.multi_modal_projector/, 'model.model.multi_modal_projector'],
      [/model.language_model.lm_head/, 'model.lm_head'],
    ],
  },
  // Gemma 3n's text model alone, from (or trained on) the multimodal model's tree.
  Gemma3nForCausalLM: { family: 'Gemma 3n (text)', rules: [[/model.language_model/, 'model']] },
  Gemma3nForConditionalGeneration: GEMMA3N,
  Gemma4ForConditionalGeneration: GEMMA4,
  Gemma4UnifiedForConditionalGeneration: GEMMA4_UNIFIED,
  Gemma4Model: gemma4Bare('Gemma 4 (Gemma4Model)'),
  Gemma4UnifiedModel: gemma4Bare('Gemma 4 Unified (Gemma4UnifiedModel)'),
  Llama4ForConditionalGeneration: LLAMA4,
  Qwen3_5ForConditionalGeneration: QWEN35,
  Qwen3_5MoeForConditionalGeneration: { ...QWEN35, family: 'Qwen3.5-MoE' },
  // The thinker alone (its class's names) on an Omni checkpoint; Qwen2.5-Omni's first releases say Qwen2_5OmniModel.
  Qwen2_5OmniForConditionalGeneration: { family: 'Qwen2.5-Omni (thinker)', rules: [OMNI_THINKER] },
  Qwen2_5OmniModel: { family: 'Qwen2.5-Omni (thinker)', rules: [OMNI_THINKER] },
  Qwen3OmniMoeForConditionalGeneration: { family: 'Qwen3-Omni (thinker)', rules: [OMNI_THINKER] },
  PaddleOCRVLForConditionalGeneration: PADDLEOCR_VL,
  Ernie4_5_VLMoeForConditionalGeneration: ERNIE45_VL,
  NemotronHForCausalLM: NEMOTRON_H,
  ColQwen2ForRetrieval: COLQWEN2,
  T5Gemma2ForConditionalGeneration: t5gemma2('T5Gemma 2', 'model.encoder.'),
  T5Gemma2ForSequenceClassification: t5gemma2('T5Gemma 2', 'model.encoder.'),
  T5Gemma2ForTokenClassification: t5gemma2('T5Gemma 2', 'model.encoder.'),
  T5Gemma2Model: t5gemma2('T5Gemma 2', 'encoder.'),
  T5Gemma2Encoder: t5gemma2('T5Gemma 2 (encoder)', ''),
  PI0ForConditionalGeneration: PI0,
  HYV3ForCausalLM: HY3,
  LagunaForCausalLM: LAGUNA,
  DeepseekV4ForCausalLM: DEEPSEEK_V4,
  // SAM 3's detector alone, from a SAM 3 video checkpoint.
  Sam3Model: { family: 'SAM 3', rules: [[/detector_model.(.+)/, '$1']] },
  /*
   * Not a transformers mapping: InternVL's original checkpoints (remote code), whose language
   * model and projector land in either format with InternVL's rules. Their vision tower, and an
   * InternLM2 language model, differ in more than names (internvl-original.ts refuses them).
   */
  InternVLChatModel: { ...INTERNVL, family: 'InternVL (original)' },
};

/** The key map of the first architecture that has one, if any. */
export function checkpointKeyMap(architectures: readonly string[]): CheckpointKeyMap | undefined {
  for (const a of architectures) {
    const map = BY_ARCHITECTURE[a];
    if (map) return map;
  }
  return undefined;
}

/** A key of π0's or π0.5's checkpoint as LeRobot and openpi write it: the two models of `paligemma_with_expert`. */
const PI0_KEY = /^(?:model\.)?paligemma_with_expert\.(?:paligemma|gemma_expert)\./;

/**
 * The key map of a base: by its config.json `architectures` where one has a map; else, for a base
 * whose config.json names no architecture (a LeRobot policy's, `"type": "pi0"`, is no transformers
 * config), by its keys: π0's and π0.5's (`paligemma_with_expert.…`).
 */
export function baseKeyMap(architectures: readonly string[], keys: readonly string[]): CheckpointKeyMap | undefined {
  const byClass = checkpointKeyMap(architectures);
  if (byClass || architectures.length > 0) return byClass;
  return keys.some((k) => PI0_KEY.test(k)) ? PI0 : undefined;
}

/** The architectures that have a key map, for tests and the README. */
export function checkpointKeyMapArchitectures(): string[] {
  return Object.keys(BY_ARCHITECTURE);
}

const globalPatterns = new WeakMap<RegExp, RegExp>();

/** The pattern with the `g` flag, made once: `re.subn` replaces every match. */
function everyMatch(pattern: RegExp): RegExp {
  let g = globalPatterns.get(pattern);
  if (!g) globalPatterns.set(pattern, (g = new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`)));
  return g;
}

/** A key (or module path) in the refactored module tree's naming: the first matching rule rewrites it. */
export function convertCheckpointKey(key: string, map: CheckpointKeyMap): string {
  for (const [pattern, replacement] of map.rules) {
    if (pattern.test(key)) return key.replace(everyMatch(pattern), replacement);
  }
  return key;
}
