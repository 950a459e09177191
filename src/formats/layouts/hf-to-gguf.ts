/**
 * Layout: Hugging Face module paths (PEFT's `model.layers.3.self_attn.q_proj`) on a GGUF base
 * (`blk.3.attn_q.weight`), per architecture as llama.cpp's converter names them
 * (convert_hf_to_gguf.py and its conversion/ modules, gguf-py/gguf/tensor_mapping.py), for the
 * architectures in {@link HF_TO_GGUF_RULES} (llama with Mistral, Mixtral and LLaVA's language model;
 * the Qwen, Gemma, Phi, OLMo, GLM, Granite (with Granite 4.0 H), Cohere, ERNIE, EXAONE, Nemotron-H,
 * InternLM2, LFM2, DeepSeek (V1's MoE, V2 to V4), Mistral 4, MiniMax-M2, Hunyuan, PhiMoE, dots.llm1, DBRX,
 * Jamba, MiniCPM3, Ling 1 and 2.0, Snowflake Arctic, PLaMo 2 and 3, Step 3.5, GroveMoE, Kimi Linear, HunyuanVL's language model, Hy3, Laguna, Nanbeige, PaddleOCR-VL's language model, openPangu-Embedded, the diffusion LMs Dream, LLaDA and RND1, K-EXAONE, Arcee Trinity (AFMoE), Cohere's North MoE, SmallThinker, Qwen3-Next and Qwen3.5 families, Llama 4's language model and others):
 * - attention q/k/v/o, fused qkv (phi3; DBRX's Wqkv, Ling 2.0's query_key_value), MLP
 *   gate/up/down (or an architecture's own names: Phi-2's fc1/fc2, StarCoder2's c_fc/c_proj,
 *   EXAONE's c_fc_0/c_fc_1/c_proj, LFM2's short-conv projections and w1/w3/w2, Jamba's Mamba-1
 *   in_proj/x_proj/dt_proj/out_proj), fused gate_up (phi3 → ffn_up), the MoE router, shared experts, token embeddings and the output head;
 * - one expert of a merged expert tensor (`ffn_gate_exps`, experts stacked as rows) lands on that
 *   expert's rows; older files with a tensor per expert (`ffn_gate.3`) are found as they are;
 * - a fused expert parameter (PEFT `target_parameters`: gpt-oss, Qwen3-VL-MoE, Llama 4, GraniteMoe,
 *   transformers 5's Qwen MoE) lands on the tensors the converter splits it into, each expert as
 *   the converter lays it out;
 * - a module the converter splits by rows lands on each part: Granite's shared MLP `input_linear`
 *   (gate, then up) on ffn_gate_shexp/ffn_up_shexp (ffn_gate/ffn_up without experts), InternLM2's
 *   grouped `wqkv` on attn_q, attn_k and attn_v, ERNIE 4.5's and PaddleOCR-VL's fused `qkv_proj`
 *   (in order) on attn_q, attn_k, attn_v and `up_gate_proj` (gate, then up) on ffn_gate/ffn_up, DeepSeek's MLA `kv_b_proj` on attn_k_b (each
 *   head's key rows transposed) and attn_v_b (also for DeepSeek-V3.2 and GLM-5, with their
 *   sparse attention's indexer by name);
 * - multi-token-prediction (nextn) layers where the converter keeps them, as the last blocks, their
 *   own projections under `nextn.`; where it drops them, a module on them is refused saying so;
 * - Qwen3-Next's and Qwen3.5's gated DeltaNet (linear attention) projections on the tensors the
 *   converter regroups them into, row by row (Qwen3-Next's in_proj_qkvz on attn_qkv and
 *   attn_gate; Qwen3.5's value heads moved from grouped to tiled, out_proj by its columns), and
 *   Qwen3.5's MTP layers (`mtp.layers.K`, `mtp.fc`) on the blocks after the main ones;
 * - hybrid models' Mamba-2 mixers (`mamba.in_proj`/`out_proj`, Nemotron-H's `mixer.*`) on ssm_in
 *   and ssm_out, and per-layer head counts (one per block, 0 for Mamba-2 blocks) read for the block;
 *   Nemotron 3 Super's latent MoE projections on ffn_latent_down and ffn_latent_up;
 * - a weight the converter multiplies by a config value the GGUF does not record (Falcon-H1's
 *   multipliers) is refused saying so;
 * - for `llama`, `mistral3`, `granite`, `granitemoe`, `granitehybrid`, `nemotron_h`(`_moe`),
 *   `smollm3`, `nanbeige`, `llada`, `arcee`, `minicpm`, `olmo`, `internlm2`, `deepseek`, `arctic` and `bailingmoe` (its
 *   fused query_key_value split into attn_q, attn_k, attn_v first), the converter permutes the rows of q and k (reshape
 *   (heads, 2, d/heads/2, in), swap axes 1 and 2) for llama.cpp's RoPE; ΔW's rows get the same
 *   permutation, which convert_lora_to_gguf applies to B.
 * The base's GGUF metadata gives the architecture, head and expert counts. A module of a known
 * architecture that fits no rule is a miss (the plan names it); other bases are not this layout's.
 * A vision-language model's adapter may name its vision tower or projector, which the converter
 * writes to a separate mmproj GGUF: such a module is refused saying so. Tensors an adapter saves
 * whole (modules_to_save, base_layer weights, trainable tokens) are refused on a GGUF base.
 */
import type { RowSegment } from '../../engine/merge-op.js';
import { counted, metadataCount, perBlock, positiveInt, unplaceable } from './gguf-counts.js';
import { missBecause, wholeTensor, type BaseView, type Layout, type LayoutResolution, type Placement } from './layout.js';

interface Rule {
  pattern: RegExp;
  /** GGUF tensor name (without `.weight`), `$1` being the block number. */
  tensor: string;
  /** Capture group holding the expert number (of a merged expert tensor). */
  expert?: number;
  /**
   * The merged expert tensor holds one expert per group of `{arch}.experts_per_group` routed
   * experts (GroveMoE's chunk experts), not one per routed expert.
   */
  perExpertGroup?: true;
  /** The converter permutes this tensor's rows with the (kv) head count. */
  permute?: 'q' | 'k';
  /**
   * Why a module this rule names is refused on such a base (the tensors exist, but not laid out as
   * the adapter's ΔW is); `tensor` then only says where the rule belongs.
   */
  refuse?: string;
  /**
   * A fused expert parameter: which, and how the model stores it (`up` and `down` land whole on
   * ffn_up_exps and ffn_down_exps; `gate_up` is split or fused as the file holds it).
   */
  fused?: { part: 'gate_up' | 'up' | 'down'; form: FusedExperts };
  /**
   * The tensor's name where the converter writes the model's other variant (Granite's shared MLP
   * is ffn_*_shexp beside experts, ffn_* without): tried when `tensor` is not in the base.
   */
  dense?: string;
  /**
   * The converter splits the module's output rows in halves (Granite's `input_linear`: gate, then
   * up): the first half lands on `tensor` (or `dense`), the second on this (or its `dense`).
   */
  upperHalf?: { tensor: string; dense?: string };
  /** InternLM2's grouped wqkv, which the converter splits into attn_q, attn_k, attn_v and permutes. */
  groupedQkv?: true;
  /**
   * A fused qkv (all q rows, then k, then v) the converter splits into attn_q, attn_k and attn_v:
   * `permuted` permutes q and k as LlamaModel.permute does (BailingMoeModel), `plain` keeps every
   * row's order (Ernie4_5Model).
   */
  splitQkv?: 'permuted' | 'plain';
  /** DeepSeek's MLA kv_b_proj, which the converter splits per head into attn_k_b (transposed) and attn_v_b. */
  mlaKvB?: true;
  /**
   * Capture group holding the index of one of several square matrices the converter stacks in
   * order into `tensor` (Gemma 3n's altup_projections.N): matrix i is rows i·n…(i+1)·n.
   */
  stackedSquare?: number;
  /**
   * A gated DeltaNet projection (Qwen3-Next, Qwen3.5) whose rows the converter regroups by the
   * linear attention's head counts (resolveLinearAttention).
   */
  linear?: LinearProjection;
}

const L = 'model\\.layers\\.(\\d+)';
const rule = (pattern: string, tensor: string, extra: Partial<Rule> = {}): Rule => ({ pattern: new RegExp(`^${pattern}$`), tensor, ...extra });

const COMMON: readonly Rule[] = [
  rule('model\\.embed_tokens', 'token_embd'),
  rule('lm_head', 'output'),
  rule(`${L}\\.self_attn\\.v_proj`, 'blk.$1.attn_v'),
  rule(`${L}\\.self_attn\\.o_proj`, 'blk.$1.attn_output'),
  rule(`${L}\\.mlp\\.gate_proj`, 'blk.$1.ffn_gate'),
  rule(`${L}\\.mlp\\.up_proj`, 'blk.$1.ffn_up'),
  rule(`${L}\\.mlp\\.down_proj`, 'blk.$1.ffn_down'),
];
const QK: readonly Rule[] = [rule(`${L}\\.self_attn\\.q_proj`, 'blk.$1.attn_q'), rule(`${L}\\.self_attn\\.k_proj`, 'blk.$1.attn_k')];
const QK_PERMUTED: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.q_proj`, 'blk.$1.attn_q', { permute: 'q' }),
  rule(`${L}\\.self_attn\\.k_proj`, 'blk.$1.attn_k', { permute: 'k' }),
];
const MIXTRAL: readonly Rule[] = [
  rule(`${L}\\.block_sparse_moe\\.gate`, 'blk.$1.ffn_gate_inp'),
  rule(`${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.w1`, 'blk.$1.ffn_gate_exps', { expert: 2 }),
  rule(`${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.w2`, 'blk.$1.ffn_down_exps', { expert: 2 }),
  rule(`${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.w3`, 'blk.$1.ffn_up_exps', { expert: 2 }),
];
/** Experts one module each (`mlp.experts.3.gate_proj`) on their rows of the stacked tensors, and a shared expert under `shared`. */
const expertsAndShared = (shared: string): readonly Rule[] => [
  rule(`${L}\\.mlp\\.experts\\.(\\d+)\\.gate_proj`, 'blk.$1.ffn_gate_exps', { expert: 2 }),
  rule(`${L}\\.mlp\\.experts\\.(\\d+)\\.up_proj`, 'blk.$1.ffn_up_exps', { expert: 2 }),
  rule(`${L}\\.mlp\\.experts\\.(\\d+)\\.down_proj`, 'blk.$1.ffn_down_exps', { expert: 2 }),
  rule(`${L}\\.mlp\\.${shared}\\.gate_proj`, 'blk.$1.ffn_gate_shexp'),
  rule(`${L}\\.mlp\\.${shared}\\.up_proj`, 'blk.$1.ffn_up_shexp'),
  rule(`${L}\\.mlp\\.${shared}\\.down_proj`, 'blk.$1.ffn_down_shexp'),
];
const QWEN_MOE: readonly Rule[] = [
  rule(`${L}\\.mlp\\.gate`, 'blk.$1.ffn_gate_inp'),
  ...expertsAndShared('shared_expert'),
  rule(`${L}\\.mlp\\.shared_expert_gate`, 'blk.$1.ffn_gate_inp_shexp'),
];
/**
 * Hunyuan's MoE (HunYuanMoEV1, Hunyuan-A13B): the router `mlp.gate.wg` (a Linear, kept in float32),
 * experts as Qwen's, and the shared MLP `mlp.shared_mlp` on the shared-expert tensors
 * (tensor_mapping.py maps `mlp.shared_mlp.*` to ffn_*_shexp).
 */
const HUNYUAN_MOE: readonly Rule[] = [rule(`${L}\\.mlp\\.gate\\.wg`, 'blk.$1.ffn_gate_inp'), ...expertsAndShared('shared_mlp')];
/**
 * Hy3 (HYV3Model: TextModel's name mapping, experts stacked as rows by MOE_HF_MLP): its checkpoint's
 * router `mlp.router.gate` and shared expert `mlp.shared_mlp`, which transformers 5's class names
 * `mlp.gate` and `mlp.shared_experts` (its conversion_mapping.py's "hy_v3"): both namings land on the
 * same tensors. The router's `expert_bias` (exp_probs_b) is no Linear.
 */
const HY_V3_MOE: readonly Rule[] = [
  rule(`${L}\\.mlp\\.(?:router\\.)?gate`, 'blk.$1.ffn_gate_inp'),
  ...expertsAndShared('(?:shared_mlp|shared_experts)'),
];
/**
 * Laguna (LagunaModel: TextModel's name mapping, experts stacked as rows by MOE_HF_MLP): the
 * attention output gate `self_attn.g_proj` (per head or per element) on attn_gate, the router
 * `mlp.gate`, the shared expert `mlp.shared_expert` in its checkpoint and `mlp.shared_experts` in
 * transformers' class (conversion_mapping.py's "laguna"), both on ffn_*_shexp.
 */
const LAGUNA: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.g_proj`, 'blk.$1.attn_gate'),
  rule(`${L}\\.mlp\\.gate`, 'blk.$1.ffn_gate_inp'),
  ...expertsAndShared('shared_experts?'),
];
/**
 * LLaDA (LLaDAModel: the checkpoint's own `model.transformer.…` names, which tensor_mapping.py maps):
 * `wte` and the head `ff_out`, each block's `q_proj`/`k_proj` (permuted as LlamaModel.permute does,
 * q by the heads, k by the kv heads: LLaDAModel.permute, undo_permute), `v_proj`, `attn_out`, and its
 * MLP `ff_proj` (gate), `up_proj` (up), `ff_out` (down).
 */
const LLADA_BLOCKS = 'model\\.transformer\\.blocks\\.(\\d+)';
const LLADA: readonly Rule[] = [
  rule('model\\.transformer\\.wte', 'token_embd'),
  rule('model\\.transformer\\.ff_out', 'output'),
  rule(`${LLADA_BLOCKS}\\.q_proj`, 'blk.$1.attn_q', { permute: 'q' }),
  rule(`${LLADA_BLOCKS}\\.k_proj`, 'blk.$1.attn_k', { permute: 'k' }),
  rule(`${LLADA_BLOCKS}\\.v_proj`, 'blk.$1.attn_v'),
  rule(`${LLADA_BLOCKS}\\.attn_out`, 'blk.$1.attn_output'),
  rule(`${LLADA_BLOCKS}\\.ff_proj`, 'blk.$1.ffn_gate'),
  rule(`${LLADA_BLOCKS}\\.up_proj`, 'blk.$1.ffn_up'),
  rule(`${LLADA_BLOCKS}\\.ff_out`, 'blk.$1.ffn_down'),
];
/** GLM-4.5/4.6 (Glm4MoeModel): experts as Qwen's, the shared experts under a plural name; its router is not a Linear. */
const GLM4_MOE: readonly Rule[] = expertsAndShared('shared_experts');
/**
 * DeepSeek's and ERNIE 4.5's MoE: the router `mlp.gate` (a Linear in DeepSeek-V2 and ERNIE, a bare
 * parameter in DeepSeek-V3), experts as Qwen's, the shared experts under a plural name.
 */
const SHARED_EXPERTS_MOE: readonly Rule[] = [rule(`${L}\\.mlp\\.gate`, 'blk.$1.ffn_gate_inp'), ...GLM4_MOE];
/**
 * DeepSeek-V2/V3's multi-head latent attention (DeepseekV2Model): q_proj (V2-Lite) or q_a_proj and
 * q_b_proj, kv_a_proj_with_mqa and o_proj by name, nothing permuted; kv_b_proj on the tensors the
 * converter splits it into (resolveMlaKvB).
 */
const MLA: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.q_proj`, 'blk.$1.attn_q'),
  rule(`${L}\\.self_attn\\.q_a_proj`, 'blk.$1.attn_q_a'),
  rule(`${L}\\.self_attn\\.q_b_proj`, 'blk.$1.attn_q_b'),
  rule(`${L}\\.self_attn\\.kv_a_proj_with_mqa`, 'blk.$1.attn_kv_a_mqa'),
  rule(`${L}\\.self_attn\\.kv_b_proj`, 'blk.$1.attn_kv_b', { mlaKvB: true }),
];
/**
 * DeepSeek sparse attention's lightning indexer (DeepseekV32Model, GlmMoeDsaModel): `wq_b`, `wk`
 * and `weights_proj` under `self_attn.indexer`, which the converter maps by name (DeepseekV2Model's
 * modify_tensors passes them through) to indexer.attn_q_b, indexer.attn_k and indexer.proj
 * (forced to F32); its `k_norm` is a LayerNorm, not a Linear.
 */
const DSA_INDEXER: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.indexer\\.wq_b`, 'blk.$1.indexer.attn_q_b'),
  rule(`${L}\\.self_attn\\.indexer\\.wk`, 'blk.$1.indexer.attn_k'),
  rule(`${L}\\.self_attn\\.indexer\\.weights_proj`, 'blk.$1.indexer.proj'),
];
/**
 * A checkpoint's multi-token-prediction (nextn) layers, `model.layers.N` for N ≥ num_hidden_layers:
 * where the converter keeps them (block_count raised by nextn_predict_layers) their attention and
 * MLP are blocks like any other, and their own Linears and embedding go under `nextn.`
 * (tensor_mapping.py's NEXTN_*: eh_proj, shared_head.head, embed_tokens).
 */
const NEXTN: readonly Rule[] = [
  rule(`${L}\\.eh_proj`, 'blk.$1.nextn.eh_proj'),
  rule(`${L}\\.shared_head\\.head`, 'blk.$1.nextn.shared_head_head'),
  rule(`${L}\\.embed_tokens`, 'blk.$1.nextn.embed_tokens'),
];
/** DeepseekV2Model (skip_mtp) drops the nextn layers: a deepseek2 file has no tensor for them. */
const NEXTN_DROPPED: readonly Rule[] = NEXTN.map((r) => ({
  ...r,
  refuse: "names a multi-token-prediction (nextn) layer's module, which convert_hf_to_gguf (DeepseekV2Model, skip_mtp) leaves out of a deepseek2 GGUF",
}));
const PHI3: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.qkv_proj`, 'blk.$1.attn_qkv'),
  rule(`${L}\\.mlp\\.gate_up_proj`, 'blk.$1.ffn_up'),
];
/**
 * ERNIE 4.5's fused `self_attn.qkv_proj` and `mlp.up_gate_proj` (its original checkpoints; the
 * transformers port has q/k/v and gate/up) on what Ernie4_5Model.modify_tensors splits them into:
 * qkv's rows in order into attn_q, attn_k and attn_v (`split([q, k, v], dim=0)`, nothing
 * permuted), up_gate's first half into ffn_gate and its second half into ffn_up (the converter's
 * order, whatever the name says).
 */
const ERNIE_FUSED: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.qkv_proj`, 'blk.$1.attn_q', { splitQkv: 'plain' }),
  rule(`${L}\\.mlp\\.up_gate_proj`, 'blk.$1.ffn_gate', { upperHalf: { tensor: 'blk.$1.ffn_up' } }),
];
/**
 * Ernie4_5MoeModel.modify_tensors bypasses that split (ModelBase.modify_tensors) and ernie4_5-moe
 * has no attn_qkv, so convert_hf_to_gguf cannot convert a checkpoint holding these modules; where
 * their rows would go is not the converter's to say.
 */
const ERNIE_MOE_FUSED: readonly Rule[] = ERNIE_FUSED.map((r) => ({
  ...r,
  refuse: 'names a fused ERNIE 4.5 module, which convert_hf_to_gguf splits for dense ERNIE 4.5 (Ernie4_5Model) but not for the MoE (Ernie4_5MoeModel, whose ernie4_5-moe GGUF is converted from separate q_proj/k_proj/v_proj and gate_proj/up_proj): train the adapter on the checkpoint with separate projections',
}));
/** Phi-2 (PhiForCausalLM): the attention output is `dense`, the MLP `fc1` (up) and `fc2` (down), no gate. */
const PHI2: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.dense`, 'blk.$1.attn_output'),
  rule(`${L}\\.mlp\\.fc1`, 'blk.$1.ffn_up'),
  rule(`${L}\\.mlp\\.fc2`, 'blk.$1.ffn_down'),
];
/** StarCoder2: the MLP is `c_fc` (up) and `c_proj` (down), no gate. */
const STARCODER2: readonly Rule[] = [
  rule(`${L}\\.mlp\\.c_fc`, 'blk.$1.ffn_up'),
  rule(`${L}\\.mlp\\.c_proj`, 'blk.$1.ffn_down'),
];
/**
 * LFM2 (LFM2Model): attention's output is `out_proj`, the short-convolution blocks' projections
 * `conv.in_proj` / `conv.out_proj`, the MLP `feed_forward.w1` (gate), `w3` (up), `w2` (down).
 */
const LFM2: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.out_proj`, 'blk.$1.attn_output'),
  rule(`${L}\\.conv\\.in_proj`, 'blk.$1.shortconv.in_proj'),
  rule(`${L}\\.conv\\.out_proj`, 'blk.$1.shortconv.out_proj'),
  rule(`${L}\\.feed_forward\\.w1`, 'blk.$1.ffn_gate'),
  rule(`${L}\\.feed_forward\\.w3`, 'blk.$1.ffn_up'),
  rule(`${L}\\.feed_forward\\.w2`, 'blk.$1.ffn_down'),
];
/**
 * LFM2-MoE (LFM2MoeModel): the router `feed_forward.gate`, the experts `feed_forward.experts.N.w1`
 * (gate), `w3` (up), `w2` (down) stacked as rows, or transformers 5's fused experts (w1 and w3
 * concatenated, as Qwen's); its leading dense blocks and the rest as LFM2.
 */
const LFM2_MOE: readonly Rule[] = [
  rule(`${L}\\.feed_forward\\.gate`, 'blk.$1.ffn_gate_inp'),
  rule(`${L}\\.feed_forward\\.experts\\.(\\d+)\\.w1`, 'blk.$1.ffn_gate_exps', { expert: 2 }),
  rule(`${L}\\.feed_forward\\.experts\\.(\\d+)\\.w3`, 'blk.$1.ffn_up_exps', { expert: 2 }),
  rule(`${L}\\.feed_forward\\.experts\\.(\\d+)\\.w2`, 'blk.$1.ffn_down_exps', { expert: 2 }),
];
/** EXAONE 3/3.5 (ExaoneForCausalLM): GPT-2-style paths; `c_fc_0` is the gate, `c_fc_1` the up projection. */
const H = 'transformer\\.h\\.(\\d+)';
const EXAONE: readonly Rule[] = [
  rule('transformer\\.wte', 'token_embd'),
  rule('lm_head', 'output'),
  rule(`${H}\\.attn\\.attention\\.q_proj`, 'blk.$1.attn_q'),
  rule(`${H}\\.attn\\.attention\\.k_proj`, 'blk.$1.attn_k'),
  rule(`${H}\\.attn\\.attention\\.v_proj`, 'blk.$1.attn_v'),
  rule(`${H}\\.attn\\.attention\\.out_proj`, 'blk.$1.attn_output'),
  rule(`${H}\\.mlp\\.c_fc_0`, 'blk.$1.ffn_gate'),
  rule(`${H}\\.mlp\\.c_fc_1`, 'blk.$1.ffn_up'),
  rule(`${H}\\.mlp\\.c_proj`, 'blk.$1.ffn_down'),
];
/**
 * DBRX (DbrxModel): `transformer.blocks.N`, the fused `norm_attn_norm.attn.Wqkv` (q, k, v rows)
 * written whole to attn_qkv, `out_proj`, the router `ffn.router.layer`. The experts `ffn.experts.mlp`
 * `w1`, `v1`, `w2` are 2-D parameters (E·ffn, hidden; w2 used as (in, out)), not Linears, which
 * the converter views per expert, transposing w2's; a LoRA on them is refused.
 */
const B = 'transformer\\.blocks\\.(\\d+)';
const DBRX: readonly Rule[] = [
  rule('transformer\\.wte', 'token_embd'),
  rule('lm_head', 'output'),
  rule(`${B}\\.norm_attn_norm\\.attn\\.Wqkv`, 'blk.$1.attn_qkv'),
  rule(`${B}\\.norm_attn_norm\\.attn\\.out_proj`, 'blk.$1.attn_output'),
  rule(`${B}\\.ffn\\.router\\.layer`, 'blk.$1.ffn_gate_inp'),
  rule(`${B}\\.ffn\\.experts\\.mlp(?:\\.(?:w1|v1|w2))?`, 'blk.$1.ffn_gate_exps', {
    refuse: "DBRX's experts are 2-D parameters (E·ffn, hidden each: w1 gate and v1 up as (out, in), w2 down as (in, out)), not Linears, which convert_hf_to_gguf (DbrxModel) views per expert, transposing w2's; a LoRA on them is not merged into a GGUF here: merge into the safetensors model and convert that",
  }),
];

/**
 * How a model stores its fused expert parameters (PEFT `target_parameters` on
 * `mlp.experts.gate_up_proj` / `down_proj`, 3-D), which the converter lays out again: each expert
 * (out, in), gate_up split into ffn_gate_exps and ffn_up_exps (or stacked gate then up in
 * ffn_gate_up_exps, `--fuse-gate-up-exps`).
 */
interface FusedExperts {
  /** Stored (E, in, out) (transformers' `is_transposed`); otherwise (E, out, in). */
  storedInOut: boolean;
  /** Gate and up as alternate output features (gpt-oss) or as the first and second half (chunk). */
  gateUp: 'interleaved' | 'halves';
}

/** gpt-oss: (E, hidden, 2·ffn) with gate and up alternating, (E, ffn, hidden) (GptOssModel.modify_tensors). */
const GPT_OSS_EXPERTS: FusedExperts = { storedInOut: true, gateUp: 'interleaved' };
/** transformers 5's MoE experts (Qwen2MoeExperts): (E, 2·ffn, hidden) split by chunk(2), (E, hidden, ffn). */
const CHUNKED_EXPERTS: FusedExperts = { storedInOut: false, gateUp: 'halves' };
/**
 * Qwen3-VL-MoE's own checkpoints: (E, hidden, 2·ffn) split in halves, (E, ffn, hidden); the
 * converter (Qwen3VLMoeTextModel) transposes each expert. Should a transformers version hold them
 * (E, out, in) instead, PEFT's factors are the same shapes and mean the same ΔW in (out, in) order
 * (B_e·A_e), which is what lands here.
 */
const QWEN3VL_EXPERTS: FusedExperts = { storedInOut: true, gateUp: 'halves' };

/**
 * The fused expert parameters of `${block}.experts` (the block being `mlp`, Llama 4's
 * `feed_forward`, or none: Gemma 4's experts hang from the decoder layer itself).
 */
const fusedExperts = (form: FusedExperts, block = 'mlp'): readonly Rule[] => {
  const at = block ? `${L}\\.${block}` : L;
  return [
    rule(`${at}\\.experts\\.gate_up_proj`, 'blk.$1.ffn_gate_exps', { fused: { part: 'gate_up', form } }),
    rule(`${at}\\.experts\\.down_proj`, 'blk.$1.ffn_down_exps', { fused: { part: 'down', form } }),
    rule(`${at}\\.experts\\.(gate_up_proj|down_proj)_bias`, 'blk.$1.ffn_gate_exps', {
      refuse: 'a LoRA on an expert bias is not one PEFT trains (target_parameters takes matrices)',
    }),
  ];
};

/**
 * Gemma 4's MoE blocks (26B-A4B), beside each block's MLP: the router's `proj`, and the experts,
 * `experts.gate_up_proj` (E, 2·ffn, hidden: gate, then up) and `experts.down_proj` (E, hidden,
 * ffn) under the decoder layer, which Gemma4Model writes as they are to ffn_gate_up_exps (split
 * ffn_gate_exps/ffn_up_exps from per-expert checkpoints) and ffn_down_exps; the router's `scale`
 * and `per_expert_scale` go to tensors of their own, so the weights are the model's.
 */
const GEMMA4_MOE: readonly Rule[] = [
  rule(`${L}\\.router\\.proj`, 'blk.$1.ffn_gate_inp'),
  ...fusedExperts(CHUNKED_EXPERTS, ''),
];

/**
 * Gemma 3n's and Gemma 4's (E2B, E4B) per-layer inputs: each block's `per_layer_input_gate` and
 * `per_layer_projection` (blk.N.inp_gate, blk.N.proj) and the model's `per_layer_model_projection`
 * (per_layer_model_proj), which Gemma3Model.modify_tensors writes as they are (no norm shift, no
 * padding: only embeddings are padded or cut).
 */
const GEMMA_PER_LAYER: readonly Rule[] = [
  rule(`${L}\\.per_layer_input_gate`, 'blk.$1.inp_gate'),
  rule(`${L}\\.per_layer_projection`, 'blk.$1.proj'),
  rule('model\\.per_layer_model_projection', 'per_layer_model_proj'),
];
/**
 * Gemma 3n's AltUp and LAuReL (Gemma3NModel.modify_tensors): each block's `altup.modality_router`,
 * `altup.prediction_coefs`, `altup.correction_coefs` and `laurel.linear_left`/`linear_right` as
 * they are; the model's `altup_projections.N` and `altup_unembed_projections.N` (hidden × hidden
 * each) stacked in index order into altup_proj and altup_unembd_proj.
 */
const GEMMA3N_ALTUP_LAUREL: readonly Rule[] = [
  rule(`${L}\\.altup\\.modality_router`, 'blk.$1.altup_router'),
  rule(`${L}\\.altup\\.prediction_coefs`, 'blk.$1.altup_predict_coef'),
  rule(`${L}\\.altup\\.correction_coefs`, 'blk.$1.altup_correct_coef'),
  rule(`${L}\\.laurel\\.linear_left`, 'blk.$1.laurel_l'),
  rule(`${L}\\.laurel\\.linear_right`, 'blk.$1.laurel_r'),
  rule('model\\.altup_projections\\.(\\d+)', 'altup_proj', { stackedSquare: 1 }),
  rule('model\\.altup_unembed_projections\\.(\\d+)', 'altup_unembd_proj', { stackedSquare: 1 }),
];
/** Gemma 4 writes the per-layer token embedding as it is (Gemma3Model cuts only `embed_tokens`). */
const GEMMA4_PER_LAYER_EMBEDDING = rule('model\\.embed_tokens_per_layer', 'per_layer_token_embd');
/** Gemma3NModel pads it with zero rows up to vocab_size, so the adapter's rows do not fit the tensor. */
const GEMMA3N_PER_LAYER_EMBEDDING = rule('model\\.embed_tokens_per_layer', 'per_layer_token_embd', {
  refuse: 'convert_hf_to_gguf (Gemma3NModel) pads the per-layer token embedding with zero rows past vocab_size_per_layer_input, so its rows are not the adapter\'s: merge into the safetensors model and convert that',
});

/**
 * Llama 4's text model (Llama4Model, a LlamaModel with undo_permute off: q and k as they are): the
 * MLP and MoE under `feed_forward`, the router a Linear, a shared expert, and the fused experts
 * stored (E, in, out) with gate and up as halves, which the converter transposes per expert and
 * splits (down_proj transposed).
 */
const LLAMA4: readonly Rule[] = [
  rule(`${L}\\.feed_forward\\.gate_proj`, 'blk.$1.ffn_gate'),
  rule(`${L}\\.feed_forward\\.up_proj`, 'blk.$1.ffn_up'),
  rule(`${L}\\.feed_forward\\.down_proj`, 'blk.$1.ffn_down'),
  rule(`${L}\\.feed_forward\\.router`, 'blk.$1.ffn_gate_inp'),
  rule(`${L}\\.feed_forward\\.shared_expert\\.gate_proj`, 'blk.$1.ffn_gate_shexp'),
  rule(`${L}\\.feed_forward\\.shared_expert\\.up_proj`, 'blk.$1.ffn_up_shexp'),
  rule(`${L}\\.feed_forward\\.shared_expert\\.down_proj`, 'blk.$1.ffn_down_shexp'),
  ...fusedExperts(QWEN3VL_EXPERTS, 'feed_forward'),
];

/**
 * PhiMoE (Phi-3.5-MoE, PhiMoeModel: Phi3MiniModel with experts stacked as MOE_BLOCK_SPARSE says):
 * transformers 4's `block_sparse_moe` (router `gate`, experts `w1` gate, `w3` up, `w2` down, as
 * Mixtral's), or transformers 5's `mlp.router` (a Linear) and fused experts (w1 then w3).
 */
const PHIMOE: readonly Rule[] = [...MIXTRAL, rule(`${L}\\.mlp\\.router`, 'blk.$1.ffn_gate_inp'), ...fusedExperts(CHUNKED_EXPERTS)];

/**
 * Ling 2.0 / Ring 2.0 (BailingMoeV2Model: TextModel's name mapping, experts stacked as rows):
 * `model.word_embeddings`, attention's fused `attention.query_key_value` written whole to attn_qkv
 * (unlike BailingMoeModel's, neither split nor permuted) and `attention.dense`; the MoE as
 * DeepSeek's (router `mlp.gate`, `shared_experts`), the nextn layers kept as the last blocks.
 */
const BAILINGMOE2: readonly Rule[] = [
  rule('model\\.word_embeddings', 'token_embd'),
  rule(`${L}\\.attention\\.query_key_value`, 'blk.$1.attn_qkv'),
  rule(`${L}\\.attention\\.dense`, 'blk.$1.attn_output'),
];

/**
 * Ling 1 (Ling-lite, Ling-plus: BailingMoeModel): `model.word_embeddings`, the fused
 * `attention.query_key_value` split into attn_q, attn_k and attn_v with q and k permuted
 * (BailingMoeModel.permute: LlamaModel's, q by the heads, k by the kv heads), `attention.dense`,
 * the router `mlp.gate`, experts stacked as rows (MOE_HF_MLP) and `shared_experts`. With the
 * config's `norm_head` the converter divides each column of `lm_head` by its L2 norm, which the GGUF
 * does not record: a LoRA on the head is refused.
 */
const BAILINGMOE: readonly Rule[] = [
  rule('model\\.word_embeddings', 'token_embd'),
  rule(`${L}\\.attention\\.query_key_value`, 'blk.$1.attn_q', { splitQkv: 'permuted' }),
  rule(`${L}\\.attention\\.dense`, 'blk.$1.attn_output'),
  rule('lm_head', 'output', {
    refuse: "convert_hf_to_gguf (BailingMoeModel) divides each column of lm_head by its L2 norm when the config's norm_head is set, which the GGUF does not record, so ΔW cannot be matched: merge into the safetensors model and convert that",
  }),
  ...SHARED_EXPERTS_MOE,
];

/**
 * Snowflake Arctic (ArcticModel): q and k permuted as LlamaModel.permute does (q by the heads, k by
 * the kv heads), the dense residual MLP `residual_mlp.w1` (gate), `w3` (up), `w2` (down) beside the
 * MoE, whose router `block_sparse_moe.gate` and experts `block_sparse_moe.experts.N.w1`/`w3`/`w2`
 * are Mixtral's (MOE_BLOCK_SPARSE_MIXTRAL: stacked as rows).
 */
const ARCTIC: readonly Rule[] = [
  rule(`${L}\\.residual_mlp\\.w1`, 'blk.$1.ffn_gate'),
  rule(`${L}\\.residual_mlp\\.w3`, 'blk.$1.ffn_up'),
  rule(`${L}\\.residual_mlp\\.w2`, 'blk.$1.ffn_down'),
  ...MIXTRAL,
];

/**
 * PLaMo 2 and PLaMo 3 (Plamo2Model, Plamo3Model): blocks under `model.layers.layers.N`, each a
 * `mixer` and an `mlp`, all Linears written as they are (the converters change only norms, A_log
 * and the conv kernel): attention's fused `mixer.qkv_proj` whole on attn_qkv (q, k, v rows, not
 * permuted), `mixer.o_proj`; the MLP's fused `gate_up_proj` on ffn_up (llama.cpp splits it at run
 * time), `down_proj`. PLaMo 2's Mamba blocks: `mixer.in_proj`, `bcdt_proj`, `dt_proj`, `out_proj`
 * on ssm_in, ssm_x, ssm_dt, ssm_out; its depthwise `mixer.conv1d` the converter squeezes.
 */
const P = 'model\\.layers\\.layers\\.(\\d+)';
const PLAMO: readonly Rule[] = [
  rule('model\\.embed_tokens', 'token_embd'),
  rule('lm_head', 'output'),
  rule(`${P}\\.mixer\\.qkv_proj`, 'blk.$1.attn_qkv'),
  rule(`${P}\\.mixer\\.o_proj`, 'blk.$1.attn_output'),
  rule(`${P}\\.mlp\\.gate_up_proj`, 'blk.$1.ffn_up'),
  rule(`${P}\\.mlp\\.down_proj`, 'blk.$1.ffn_down'),
];
const PLAMO2_MAMBA: readonly Rule[] = [
  rule(`${P}\\.mixer\\.in_proj`, 'blk.$1.ssm_in'),
  rule(`${P}\\.mixer\\.bcdt_proj`, 'blk.$1.ssm_x'),
  rule(`${P}\\.mixer\\.dt_proj`, 'blk.$1.ssm_dt'),
  rule(`${P}\\.mixer\\.out_proj`, 'blk.$1.ssm_out'),
  rule(`${P}\\.mixer\\.conv1d`, 'blk.$1.ssm_conv1d', {
    refuse: "is the Mamba block's depthwise causal Conv1d (groups = channels), whose kernel convert_hf_to_gguf (Plamo2Model) squeezes to (channels, kernel): a LoRA on it is not merged into a GGUF here; merge into the safetensors model and convert that",
  }),
];

/**
 * Step 3.5 (Step35Model: TextModel's name mapping; only norms shifted and some weights squeezed):
 * q/k/v/o as they are, the head-wise attention gate `self_attn.g_proj` on attn_gate, the leading
 * dense blocks' MLP, the MoE's router `moe.gate` on ffn_gate_inp and its shared expert
 * `share_expert.*` on ffn_*_shexp. The routed experts are stacked per projection in the checkpoint
 * (`moe.gate_proj`/`up_proj`/`down_proj`, squeezed by the converter): a LoRA naming them is refused.
 */
const STEP35: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.g_proj`, 'blk.$1.attn_gate'),
  rule(`${L}\\.moe\\.gate`, 'blk.$1.ffn_gate_inp'),
  rule(`${L}\\.share_expert\\.gate_proj`, 'blk.$1.ffn_gate_shexp'),
  rule(`${L}\\.share_expert\\.up_proj`, 'blk.$1.ffn_up_shexp'),
  rule(`${L}\\.share_expert\\.down_proj`, 'blk.$1.ffn_down_shexp'),
  rule(`${L}\\.moe\\.(?:gate|up|down)_proj`, 'blk.$1.ffn_gate_exps', {
    refuse: "names Step 3.5's routed experts, which the checkpoint stores stacked per projection and convert_hf_to_gguf (Step35Model) squeezes into ffn_*_exps; a LoRA on them is not mapped here: merge into the safetensors model and convert that",
  }),
];

/**
 * GroveMoE (GroveMoeModel: TextModel's name mapping, q and k as they are): besides Qwen3-MoE's
 * attention, router `mlp.gate` and experts stacked as rows (MOE_HF_MLP), the "chunk" experts
 * `mlp.chunk_experts.N.*`, one per group of `experts_per_group` routed experts, stacked as rows
 * into ffn_*_chexps.
 */
const GROVEMOE_CHUNK_EXPERTS: readonly Rule[] = [
  rule(`${L}\\.mlp\\.chunk_experts\\.(\\d+)\\.gate_proj`, 'blk.$1.ffn_gate_chexps', { expert: 2, perExpertGroup: true }),
  rule(`${L}\\.mlp\\.chunk_experts\\.(\\d+)\\.up_proj`, 'blk.$1.ffn_up_chexps', { expert: 2, perExpertGroup: true }),
  rule(`${L}\\.mlp\\.chunk_experts\\.(\\d+)\\.down_proj`, 'blk.$1.ffn_down_chexps', { expert: 2, perExpertGroup: true }),
];

/**
 * Kimi Linear (KimiLinearModel: TextModel's name mapping): Kimi Delta Attention blocks, whose
 * `self_attn.q_proj`/`k_proj`/`v_proj`/`o_proj` land as attention's and `f_a_proj`, `f_b_proj`,
 * `b_proj`, `g_a_proj`, `g_b_proj` on ssm_f_a, ssm_f_b, ssm_beta, ssm_g_a, ssm_g_b as they are (its
 * short convolutions `q_conv1d`/`k_conv1d`/`v_conv1d` the converter reshapes: refused), and MLA
 * blocks as DeepSeek-V2's (q_proj, kv_a_proj_with_mqa, kv_b_proj split per head into attn_k_b and
 * attn_v_b, each head's key rows then value rows as DeepSeek's; the split tensors' shapes must
 * agree with the file's head_count, o_proj); the leading dense block's MLP; the MoE under `block_sparse_moe` with Mixtral's
 * expert names (MOE_BLOCK_SPARSE: w1 gate, w3 up, w2 down, stacked as rows) and `shared_experts`.
 */
const KIMI_LINEAR: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.f_a_proj`, 'blk.$1.ssm_f_a'),
  rule(`${L}\\.self_attn\\.f_b_proj`, 'blk.$1.ssm_f_b'),
  rule(`${L}\\.self_attn\\.b_proj`, 'blk.$1.ssm_beta'),
  rule(`${L}\\.self_attn\\.g_a_proj`, 'blk.$1.ssm_g_a'),
  rule(`${L}\\.self_attn\\.g_b_proj`, 'blk.$1.ssm_g_b'),
  rule(`${L}\\.self_attn\\.([qkv])_conv1d`, 'blk.$1.ssm_conv1d_q', {
    refuse: "is a Kimi Delta Attention short convolution (depthwise, groups = channels), whose kernel convert_hf_to_gguf (KimiLinearModel) reshapes to (d_conv, 1, channels): a LoRA on it is not merged into a GGUF here; merge into the safetensors model and convert that",
  }),
  ...MIXTRAL,
  rule(`${L}\\.block_sparse_moe\\.shared_experts\\.gate_proj`, 'blk.$1.ffn_gate_shexp'),
  rule(`${L}\\.block_sparse_moe\\.shared_experts\\.up_proj`, 'blk.$1.ffn_up_shexp'),
  rule(`${L}\\.block_sparse_moe\\.shared_experts\\.down_proj`, 'blk.$1.ffn_down_shexp'),
];

/**
 * AFMoE (Arcee Trinity, AfmoeModel: a LlamaModel whose modify_tensors goes straight to the name
 * mapping, so q and k are not permuted): attention's sigmoid output gate `self_attn.gate_proj` on
 * attn_gate, the router's Linear `mlp.router.gate`, experts stacked as rows (MOE_HF_MLP) or fused
 * (transformers 5) and the shared experts; `mlp.expert_bias` is a parameter (exp_probs_b), not a Linear.
 */
const AFMOE: readonly Rule[] = [
  rule(`${L}\\.self_attn\\.gate_proj`, 'blk.$1.attn_gate'),
  rule(`${L}\\.mlp\\.router\\.gate`, 'blk.$1.ffn_gate_inp'),
  ...GLM4_MOE,
  // transformers 5's AfmoeExperts are Qwen2MoeExperts: gate_up_proj halves, down_proj.
  ...fusedExperts(CHUNKED_EXPERTS),
];

/**
 * SmallThinker (SmallThinkerModel: TextModel's name mapping, experts stacked as MOE_BLOCK_SPARSE
 * says): every block's MLP is `block_sparse_moe`, its router `primary_router` (a Linear) and its
 * experts `experts.N.gate`, `up` and `down`.
 */
const SMALLTHINKER: readonly Rule[] = [
  rule(`${L}\\.block_sparse_moe\\.primary_router`, 'blk.$1.ffn_gate_inp'),
  rule(`${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.gate`, 'blk.$1.ffn_gate_exps', { expert: 2 }),
  rule(`${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.up`, 'blk.$1.ffn_up_exps', { expert: 2 }),
  rule(`${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.down`, 'blk.$1.ffn_down_exps', { expert: 2 }),
];

/** A Mamba-2 mixer's projections (Mamba2Model.modify_tensors maps them as they are). */
const mamba2 = (mixer: string): readonly Rule[] => [rule(`${mixer}\\.in_proj`, 'blk.$1.ssm_in'), rule(`${mixer}\\.out_proj`, 'blk.$1.ssm_out')];

/**
 * Jamba (JambaModel): attention blocks (q/k/v/o as they are: Jamba's attention has no RoPE) and
 * Mamba-1 blocks whose `mamba.in_proj`, `x_proj`, `dt_proj` and `out_proj` the converter writes as
 * they are (ssm_in, ssm_x, ssm_dt, ssm_out; it changes only conv1d, squeezed, and A_log, as -exp);
 * the MLP under `feed_forward` (Bamba's names), the router `feed_forward.router`, experts
 * `feed_forward.experts.N.gate_proj`/`up_proj`/`down_proj` stacked as rows, or transformers 5's
 * fused `feed_forward.experts` (gate then up, as Qwen's).
 */
const JAMBA: readonly Rule[] = [
  rule(`${L}\\.mamba\\.in_proj`, 'blk.$1.ssm_in'),
  rule(`${L}\\.mamba\\.x_proj`, 'blk.$1.ssm_x'),
  rule(`${L}\\.mamba\\.dt_proj`, 'blk.$1.ssm_dt'),
  rule(`${L}\\.mamba\\.out_proj`, 'blk.$1.ssm_out'),
  rule(`${L}\\.mamba\\.conv1d`, 'blk.$1.ssm_conv1d', {
    refuse: "is the Mamba block's depthwise causal Conv1d (groups = channels), whose kernel convert_hf_to_gguf (JambaModel) squeezes to (channels, kernel): a LoRA on it is not merged into a GGUF here; merge into the safetensors model and convert that",
  }),
  rule(`${L}\\.feed_forward\\.router`, 'blk.$1.ffn_gate_inp'),
  rule(`${L}\\.feed_forward\\.experts\\.(\\d+)\\.gate_proj`, 'blk.$1.ffn_gate_exps', { expert: 2 }),
  rule(`${L}\\.feed_forward\\.experts\\.(\\d+)\\.up_proj`, 'blk.$1.ffn_up_exps', { expert: 2 }),
  rule(`${L}\\.feed_forward\\.experts\\.(\\d+)\\.down_proj`, 'blk.$1.ffn_down_exps', { expert: 2 }),
  ...fusedExperts(CHUNKED_EXPERTS, 'feed_forward'),
];

/**
 * Granite's shared MLP (GraniteMoeModel.modify_tensors): `input_linear` is gate and up stacked,
 * which the converter splits into ffn_gate_shexp and ffn_up_shexp beside experts (ffn_gate and
 * ffn_up without); `output_linear` is ffn_down_shexp (ffn_down).
 */
const GRANITE_SHARED_MLP: readonly Rule[] = [
  rule(`${L}\\.shared_mlp\\.input_linear`, 'blk.$1.ffn_gate_shexp', {
    dense: 'blk.$1.ffn_gate', upperHalf: { tensor: 'blk.$1.ffn_up_shexp', dense: 'blk.$1.ffn_up' },
  }),
  rule(`${L}\\.shared_mlp\\.output_linear`, 'blk.$1.ffn_down_shexp', { dense: 'blk.$1.ffn_down' }),
];
/**
 * GraniteMoe's experts (GraniteMoeParallelExperts) are one (E, out, in) parameter each, not a
 * Linear, so PEFT reaches them only through target_parameters (`block_sparse_moe.input_linear.weight`);
 * the converter splits input_linear's gate and up halves into ffn_gate_exps and ffn_up_exps. The
 * router's `layer` is a Linear.
 */
const GRANITE_MOE: readonly Rule[] = [
  rule(`${L}\\.block_sparse_moe\\.router\\.layer`, 'blk.$1.ffn_gate_inp'),
  rule(`${L}\\.block_sparse_moe\\.input_linear\\.weight`, 'blk.$1.ffn_gate_exps', { fused: { part: 'gate_up', form: CHUNKED_EXPERTS } }),
  rule(`${L}\\.block_sparse_moe\\.output_linear\\.weight`, 'blk.$1.ffn_down_exps', { fused: { part: 'down', form: CHUNKED_EXPERTS } }),
  rule(`${L}\\.block_sparse_moe\\.(input|output)_linear`, 'blk.$1.ffn_gate_exps', {
    refuse: "GraniteMoe's experts are a 3-D parameter, not a Linear that LoRA can target as a module: train them with target_parameters (`block_sparse_moe.input_linear.weight`)",
  }),
];
/** Bamba (also converted to granitehybrid): the MLP is `feed_forward.gate_proj`/`up_proj`/`down_proj`. */
const BAMBA_MLP: readonly Rule[] = [
  rule(`${L}\\.feed_forward\\.gate_proj`, 'blk.$1.ffn_gate'),
  rule(`${L}\\.feed_forward\\.up_proj`, 'blk.$1.ffn_up'),
  rule(`${L}\\.feed_forward\\.down_proj`, 'blk.$1.ffn_down'),
];

/**
 * Nemotron-H (NemotronHModel, a GraniteHybridModel): every block is one `mixer` under
 * `backbone.layers` (PEFT may name it `model.layers`, which the converter renames): Mamba-2,
 * attention (q and k permuted as LlamaModel does, GraniteHybridModel keeping undo_permute) or an
 * MLP of up and down; the MoE variant's experts (no gate) are stacked as rows and its router is not
 * a Linear. transformers 5 holds the experts as two 3-D parameters (NemotronHExperts: `up_proj`
 * (E, ffn, in), `down_proj` (E, in, ffn), (E, out, in) each), which PEFT reaches through
 * target_parameters; the converter stacks the checkpoint's per-expert weights into the same (out, in)
 * per expert. Nemotron 3 Super's latent MoE (moe_latent_size) wraps the routed experts in
 * `fc1_latent_proj` (hidden → latent) and `fc2_latent_proj` (latent → hidden), written as they are
 * to ffn_latent_down and ffn_latent_up (tensor_mapping.py's MOE_LATENT_DOWN/UP); its experts work
 * in the latent width.
 */
const NH = '(?:backbone|model)\\.layers\\.(\\d+)\\.mixer';
const NEMOTRON_H: readonly Rule[] = [
  rule('(?:backbone|model)\\.embeddings', 'token_embd'),
  rule('lm_head', 'output'),
  rule(`${NH}\\.q_proj`, 'blk.$1.attn_q', { permute: 'q' }),
  rule(`${NH}\\.k_proj`, 'blk.$1.attn_k', { permute: 'k' }),
  rule(`${NH}\\.v_proj`, 'blk.$1.attn_v'),
  rule(`${NH}\\.o_proj`, 'blk.$1.attn_output'),
  rule(`${NH}\\.up_proj`, 'blk.$1.ffn_up'),
  rule(`${NH}\\.down_proj`, 'blk.$1.ffn_down'),
  ...mamba2(NH),
  rule(`${NH}\\.experts\\.(\\d+)\\.up_proj`, 'blk.$1.ffn_up_exps', { expert: 2 }),
  rule(`${NH}\\.experts\\.(\\d+)\\.down_proj`, 'blk.$1.ffn_down_exps', { expert: 2 }),
  rule(`${NH}\\.shared_experts\\.up_proj`, 'blk.$1.ffn_up_shexp'),
  rule(`${NH}\\.shared_experts\\.down_proj`, 'blk.$1.ffn_down_shexp'),
  rule(`${NH}\\.experts\\.up_proj`, 'blk.$1.ffn_up_exps', { fused: { part: 'up', form: CHUNKED_EXPERTS } }),
  rule(`${NH}\\.experts\\.down_proj`, 'blk.$1.ffn_down_exps', { fused: { part: 'down', form: CHUNKED_EXPERTS } }),
  rule(`${NH}\\.fc1_latent_proj`, 'blk.$1.ffn_latent_down'),
  rule(`${NH}\\.fc2_latent_proj`, 'blk.$1.ffn_latent_up'),
];
/**
 * Nemotron 3's MTP head (`mtp.layers.0`: eh_proj and attention, `mtp.layers.1`: MoE), which
 * NemotronHModel folds into one extra block after the main ones; transformers' NemotronH does not
 * load it (its checkpoint keys are ignored), so no PEFT module names it, and one that does is refused.
 */
const NEMOTRON_H_MTP = rule('(?:model\\.)?mtp\\..+', 'output', {
  refuse: "names a multi-token-prediction (mtp) module: transformers' NemotronH does not load the mtp layers, and how convert_hf_to_gguf (NemotronHModel) folds its two mtp layers into one extra block is not followed here",
});

/**
 * Falcon-H1 (FalconH1Model.modify_tensors) multiplies most weights by multipliers from the model's
 * config, which the GGUF does not record; only the MLP's up projection is kept as it is.
 */
const falconScaled = (by: string) => `convert_hf_to_gguf (FalconH1Model) multiplies this weight by the config's ${by}, which the GGUF does not record, so ΔW cannot be scaled to match: merge into the safetensors model and convert that`;
const FALCON_H1: readonly Rule[] = [
  rule(`${L}\\.feed_forward\\.up_proj`, 'blk.$1.ffn_up'),
  rule(`${L}\\.feed_forward\\.gate_proj`, 'blk.$1.ffn_gate', { refuse: falconScaled('mlp_multipliers[0]') }),
  rule(`${L}\\.feed_forward\\.down_proj`, 'blk.$1.ffn_down', { refuse: falconScaled('mlp_multipliers[1]') }),
  rule(`${L}\\.self_attn\\.q_proj`, 'blk.$1.attn_q', { refuse: falconScaled('attention_in_multiplier') }),
  rule(`${L}\\.self_attn\\.v_proj`, 'blk.$1.attn_v', { refuse: falconScaled('attention_in_multiplier') }),
  rule(`${L}\\.self_attn\\.k_proj`, 'blk.$1.attn_k', { refuse: falconScaled('key_multiplier and attention_in_multiplier') }),
  rule(`${L}\\.self_attn\\.o_proj`, 'blk.$1.attn_output', { refuse: falconScaled('attention_out_multiplier') }),
  rule(`${L}\\.mamba\\.in_proj`, 'blk.$1.ssm_in', { refuse: falconScaled('ssm_in_multiplier and, per group of rows, ssm_multipliers') }),
  rule(`${L}\\.mamba\\.out_proj`, 'blk.$1.ssm_out', { refuse: falconScaled('ssm_out_multiplier') }),
  rule('model\\.embed_tokens', 'token_embd', { refuse: falconScaled('embedding_multiplier') }),
  rule('lm_head', 'output', { refuse: falconScaled('lm_head_multiplier') }),
];

/**
 * InternLM2 (InternLM2Model): attention is `attention.wqkv` (grouped, split by the converter) and
 * `attention.wo`, the MLP `feed_forward.w1` (gate), `w3` (up), `w2` (down); the embedding is
 * `model.tok_embeddings`, the head `output`.
 */
const INTERNLM2: readonly Rule[] = [
  rule('model\\.tok_embeddings', 'token_embd'),
  rule('(?:language_model\\.)?output', 'output'),
  rule(`${L}\\.attention\\.wqkv`, 'blk.$1.attn_q', { groupedQkv: true }),
  rule(`${L}\\.attention\\.wo`, 'blk.$1.attn_output'),
  rule(`${L}\\.feed_forward\\.w1`, 'blk.$1.ffn_gate'),
  rule(`${L}\\.feed_forward\\.w3`, 'blk.$1.ffn_up'),
  rule(`${L}\\.feed_forward\\.w2`, 'blk.$1.ffn_down'),
];

/**
 * The gated DeltaNet (linear attention) projections:
 * - `qkvz`: Qwen3-Next's in_proj_qkvz, per key head g [q (dk), k (dk), v (r·dv), z (r·dv)] (r =
 *   value heads per key head); Qwen3NextModel.modify_tensors gathers all heads' q, then k, then v
 *   into attn_qkv and the z rows into attn_gate (an older file holds it whole as ssm_in);
 * - Qwen3.5's separate projections, whose value-head rows _LinearAttentionVReorderBase moves from
 *   grouped by key head (g·r + j) to tiled (j·nk + g): `qkv` (only its v rows), `z`, `ab` (one
 *   row per value head: in_proj_a, in_proj_b) and `out` (out_proj, whose columns it moves so).
 */
type LinearProjection = 'qkvz' | 'qkv' | 'z' | 'ab' | 'out';

/**
 * Qwen3-Next (Qwen3NextModel): linear-attention blocks (in_proj_qkvz split, in_proj_ba and
 * out_proj as they are) and full-attention blocks whose q_proj holds each head's query and its
 * output gate (llama.cpp splits them at run time: attn_q whole, not permuted); its MoE as Qwen's.
 */
const LINEAR_ATTENTION_CONV = rule(`${L}\\.linear_attn\\.conv1d`, 'blk.$1.ssm_conv1d', {
  refuse: "is the linear attention's depthwise causal Conv1d (groups = channels), whose kernel the converter squeezes to (channels, kernel): a LoRA on it is not merged into a GGUF here; merge into the safetensors model and convert that",
});
const QWEN3NEXT_LINEAR: readonly Rule[] = [
  rule(`${L}\\.linear_attn\\.in_proj_qkvz`, 'blk.$1.attn_qkv', { linear: 'qkvz' }),
  rule(`${L}\\.linear_attn\\.in_proj_ba`, 'blk.$1.ssm_beta_alpha'),
  rule(`${L}\\.linear_attn\\.out_proj`, 'blk.$1.ssm_out'),
  LINEAR_ATTENTION_CONV,
];
/** Qwen3.5 (Qwen3_5TextModel, Qwen3_5MoeTextModel): the projections separate, value heads reordered. */
const QWEN35_LINEAR: readonly Rule[] = [
  rule(`${L}\\.linear_attn\\.in_proj_qkv`, 'blk.$1.attn_qkv', { linear: 'qkv' }),
  rule(`${L}\\.linear_attn\\.in_proj_z`, 'blk.$1.attn_gate', { linear: 'z' }),
  rule(`${L}\\.linear_attn\\.in_proj_a`, 'blk.$1.ssm_alpha', { linear: 'ab' }),
  rule(`${L}\\.linear_attn\\.in_proj_b`, 'blk.$1.ssm_beta', { linear: 'ab' }),
  rule(`${L}\\.linear_attn\\.out_proj`, 'blk.$1.ssm_out', { linear: 'out' }),
  LINEAR_ATTENTION_CONV,
];
/**
 * DeepSeek-V4 (DeepseekV4Model, written as deepseek4) from transformers' names, which its
 * checkpoint conversion (conversion_mapping.py) gives DeepSeek's own by renaming alone (`attn.wq_a`
 * → `self_attn.q_a_proj`, `attn.indexer.*` → `self_attn.compressor.indexer.*`, experts fused as
 * Qwen's); the converter writes each weight as it is (FP8 and FP4 dequantized, experts stacked as
 * rows), RoPE rows in the checkpoint's interleaved order, which is llama.cpp's. `o_a_proj` is a
 * Linear whose rows are the output groups' (o_groups · o_lora_rank): the GGUF keeps that order. The
 * routers are parameters, not Linears; the hyper-connections' `fn` too.
 */
const DEEPSEEK4_MTP_DROPPED = "names a multi-token-prediction (mtp) module, which convert_hf_to_gguf (DeepseekV4Model) leaves out of a deepseek4 GGUF";
const DEEPSEEK4: readonly Rule[] = [
  rule('model\\.embed_tokens', 'token_embd'),
  rule('lm_head', 'output'),
  rule(`${L}\\.self_attn\\.q_a_proj`, 'blk.$1.attn_q_a'),
  rule(`${L}\\.self_attn\\.q_b_proj`, 'blk.$1.attn_q_b'),
  rule(`${L}\\.self_attn\\.kv_proj`, 'blk.$1.attn_kv'),
  rule(`${L}\\.self_attn\\.o_a_proj`, 'blk.$1.attn_output_a'),
  rule(`${L}\\.self_attn\\.o_b_proj`, 'blk.$1.attn_output_b'),
  rule(`${L}\\.self_attn\\.compressor\\.kv_proj`, 'blk.$1.attn_compressor_kv'),
  rule(`${L}\\.self_attn\\.compressor\\.gate_proj`, 'blk.$1.attn_compressor_gate'),
  rule(`${L}\\.self_attn\\.compressor\\.indexer\\.q_b_proj`, 'blk.$1.indexer.attn_q_b'),
  // transformers 5.14 holds weights_proj on the indexer, later versions under its `scorer`.
  rule(`${L}\\.self_attn\\.compressor\\.indexer\\.(?:scorer\\.)?weights_proj`, 'blk.$1.indexer.proj'),
  rule(`${L}\\.self_attn\\.compressor\\.indexer\\.kv_proj`, 'blk.$1.indexer_compressor_kv'),
  rule(`${L}\\.self_attn\\.compressor\\.indexer\\.gate_proj`, 'blk.$1.indexer_compressor_gate'),
  rule(`${L}\\.mlp\\.shared_experts\\.gate_proj`, 'blk.$1.ffn_gate_shexp'),
  rule(`${L}\\.mlp\\.shared_experts\\.up_proj`, 'blk.$1.ffn_up_shexp'),
  rule(`${L}\\.mlp\\.shared_experts\\.down_proj`, 'blk.$1.ffn_down_shexp'),
  ...fusedExperts(CHUNKED_EXPERTS),
  rule('(?:model\\.)?mtp\\..+', 'output', { refuse: DEEPSEEK4_MTP_DROPPED }),
];

/** Architectures whose checkpoints hold their MTP layers under `mtp.` (resolveMtp). */
const MTP_UNDER_OWN_TREE = new Set(['qwen3next', 'qwen35', 'qwen35moe']);

/** general.architecture → the rules of the models llama.cpp converts to it. */
export const HF_TO_GGUF_RULES: Readonly<Record<string, readonly Rule[]>> = {
  llama: [...COMMON, ...QK_PERMUTED, ...MIXTRAL],
  // Granite (GraniteModel) and SmolLM3 (SmolLM3Model): LlamaModel's subclasses, q and k permuted;
  // Granite 4.0's attention-only dense models (GraniteHybridModel, written as granite) add the shared MLP.
  granite: [...COMMON, ...QK_PERMUTED, ...GRANITE_SHARED_MLP],
  // Granite 3.x MoE (GraniteMoeModel, a GraniteModel): q and k permuted, experts split, shared MLP.
  granitemoe: [...COMMON, ...QK_PERMUTED, ...GRANITE_SHARED_MLP, ...GRANITE_MOE],
  // Granite 4.0 H and Bamba (GraniteHybridModel): Mamba-2 layers and attention layers (q and k
  // permuted, undo_permute kept), Granite's shared MLP and experts, Bamba's feed_forward MLP.
  granitehybrid: [...COMMON, ...QK_PERMUTED, ...GRANITE_SHARED_MLP, ...GRANITE_MOE, ...BAMBA_MLP, ...mamba2(`${L}\\.mamba`)],
  smollm3: [...COMMON, ...QK_PERMUTED],
  // Nanbeige (NanbeigeModel, a LlamaModel subclass with undo_permute): q and k permuted as llama's;
  // its num_loops reruns the same blocks and changes no weight.
  nanbeige: [...COMMON, ...QK_PERMUTED],
  // Apertus (ApertusModel): a LlamaModel subclass that sets undo_permute = False.
  apertus: [...COMMON, ...QK],
  // Mistral 3 (Mistral Small 3.x's language model, Ministral 3): LlamaModel's subclass, q and k
  // permuted from Hugging Face's order as for llama (a file converted from Mistral's own format
  // skips the permutation because its weights are already in that order: the GGUF is the same).
  mistral3: [...COMMON, ...QK_PERMUTED],
  qwen2: [...COMMON, ...QK],
  qwen3: [...COMMON, ...QK],
  qwen2moe: [...COMMON, ...QK, ...QWEN_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  qwen3moe: [...COMMON, ...QK, ...QWEN_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  // Gemma (GemmaModel), Gemma 2 and Gemma 3: q and k as they are (the converter changes only the
  // norms; the head is the tied token embedding, with no output tensor to land on).
  gemma: [...COMMON, ...QK],
  gemma2: [...COMMON, ...QK],
  gemma3: [...COMMON, ...QK],
  // Gemma 3n (Gemma3NModel) and Gemma 4 (Gemma4Model), Gemma3Model's subclasses: the same plain
  // names for attention and the MLP (their AltUp, Laurel and per-layer embeddings fit no rule and
  // are misses; the converter pads the token embedding past the tokenizer's vocabulary, so an
  // embed_tokens update does not fit it); Gemma 4's router and experts as GEMMA4_MOE.
  gemma3n: [...COMMON, ...QK, ...GEMMA_PER_LAYER, GEMMA3N_PER_LAYER_EMBEDDING, ...GEMMA3N_ALTUP_LAUREL],
  gemma4: [...COMMON, ...QK, ...GEMMA_PER_LAYER, GEMMA4_PER_LAYER_EMBEDDING, ...GEMMA4_MOE],
  phi3: [...COMMON, ...PHI3],
  // Phi-2 (Phi2Model): the plain name mapping; an old file with a fused attn_qkv has no attn_q to
  // land on, so such modules are misses.
  phi2: [...COMMON, ...QK, ...PHI2],
  // Command R / Aya (CommandR2Model), Command R7B / Aya Expanse (Cohere2Model), StableLM
  // (StableLMModel), Nemotron-4 / Minitron (NemotronModel), ERNIE 4.5 (Ernie4_5Model; transformers'
  // separate q/k/v and gate/up; the original fused qkv_proj and up_gate_proj by rows, ERNIE_FUSED),
  // EXAONE 4 (Exaone4Model) and StarCoder2: TextModel's plain mapping, q and k as they are.
  'command-r': [...COMMON, ...QK],
  cohere2: [...COMMON, ...QK],
  stablelm: [...COMMON, ...QK],
  nemotron: [...COMMON, ...QK],
  ernie4_5: [...COMMON, ...QK, ...ERNIE_FUSED],
  // PaddleOCR-VL's language model (PaddleOCRModel, an Ernie4_5Model): ERNIE 4.5's names, under
  // `model.` in its own checkpoint and `model.language_model.` in transformers'; its SigLIP tower
  // (`visual.`) and projector (`mlp_AR.`, transformers' `projector.`) go to the mmproj file; fused
  // qkv_proj and up_gate_proj split as ERNIE 4.5's (PaddleOCRModel inherits the split).
  paddleocr: [...COMMON, ...QK, ...ERNIE_FUSED],
  // ERNIE 4.5 MoE (Ernie4_5MoeModel): as ERNIE 4.5, with the router, experts and shared experts;
  // fused qkv_proj and up_gate_proj refused (ERNIE_MOE_FUSED).
  'ernie4_5-moe': [...COMMON, ...QK, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS), ...ERNIE_MOE_FUSED],
  exaone4: [...COMMON, ...QK],
  starcoder2: [...COMMON, ...QK, ...STARCODER2],
  exaone: EXAONE,
  // LFM2 (LFM2Model) and LFM2-MoE (LFM2MoeModel): the plain name mapping, q and k as they are (the
  // depthwise conv kernel is not a Linear).
  lfm2: [...COMMON, ...QK, ...LFM2],
  lfm2moe: [...COMMON, ...QK, ...LFM2, ...LFM2_MOE, ...fusedExperts(CHUNKED_EXPERTS, 'feed_forward')],
  // Arcee (ArceeModel, a LlamaModel subclass) and MiniCPM (MiniCPMModel, which applies
  // LlamaModel.permute itself): q and k permuted.
  arcee: [...COMMON, ...QK_PERMUTED],
  minicpm: [...COMMON, ...QK_PERMUTED],
  // OLMo (OlmoModel) permutes q and k as LlamaModel does; OLMo 2/3 (Olmo2Model), OLMoE (OlmoeModel,
  // experts stacked as Qwen's, fused in transformers 5 as Qwen's) and Seed-OSS (SeedOssModel) leave
  // them as they are.
  olmo: [...COMMON, ...QK_PERMUTED],
  olmo2: [...COMMON, ...QK],
  olmoe: [...COMMON, ...QK, ...QWEN_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  seed_oss: [...COMMON, ...QK],
  // GLM-4 (Glm4Model): q and k as they are; the fused gate_up_proj is ffn_up, as for phi3. GLM-OCR
  // (GlmOCRModel, written as glm4) keeps its nextn layer as the last block.
  glm4: [...COMMON, ...QK, ...PHI3, ...NEXTN],
  // GLM-4.5/4.6 (Glm4MoeModel): q and k as they are; the leading dense layers use COMMON's MLP names.
  // The nextn layer (num_nextn_predict_layers) is kept as the last block.
  glm4moe: [...COMMON, ...QK, ...GLM4_MOE, ...fusedExperts(CHUNKED_EXPERTS), ...NEXTN],
  // gpt-oss (GptOssModel): q and k not permuted (the class leaves them to the plain name mapping);
  // its router is not a Linear, so LoRA has no module there.
  'gpt-oss': [...COMMON, ...QK, ...fusedExperts(GPT_OSS_EXPERTS)],
  // Qwen3VLTextModel and Qwen3VLMoeTextModel: Qwen3's names once `language_model.` is dropped.
  qwen3vl: [...COMMON, ...QK],
  qwen3vlmoe: [...COMMON, ...QK, ...QWEN_MOE, ...fusedExperts(QWEN3VL_EXPERTS)],
  // Qwen2VLModel: `language_model.` dropped, the vision tower left to the mmproj file; q/k as qwen2.
  qwen2vl: [...COMMON, ...QK],
  // Hunyuan dense (HunYuanModel: Hunyuan-0.5B to 7B) and MoE (HunYuanMoEModel: Hunyuan-A13B):
  // TextModel's plain name mapping, q and k as they are (their query_layernorm/key_layernorm are
  // norms); the MoE's experts stacked as rows (MOE_HF_MLP), or fused in transformers 5 as Qwen's.
  'hunyuan-dense': [...COMMON, ...QK],
  'hunyuan-moe': [...COMMON, ...QK, ...HUNYUAN_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  // HunyuanVL's language model (HunyuanVLTextModel, a HunYuanModel): as hunyuan-dense, under
  // transformers' `model.language_model.`; XD-RoPE changes no weight, and the `vit` goes to the mmproj.
  hunyuan_vl: [...COMMON, ...QK],
  // Hy3 (HYV3Model): q and k as they are, the leading dense blocks' MLP, the MoE as HY_V3_MOE
  // (fused in transformers 5 as Qwen's), the MTP block(s) kept past num_hidden_layers as the last
  // blocks (nextn.eh_proj beside their attention and MLP).
  hy_v3: [...COMMON, ...QK, ...HY_V3_MOE, ...fusedExperts(CHUNKED_EXPERTS), ...NEXTN],
  // Laguna (LagunaModel): q and k as they are (per-layer head counts, which no rule here needs),
  // the leading dense blocks' MLP, the gate and MoE as LAGUNA (fused in transformers 5 as Qwen's).
  laguna: [...COMMON, ...QK, ...LAGUNA, ...fusedExperts(CHUNKED_EXPERTS)],
  // Diffusion LMs: Dream (DreamModel: Qwen2's names, q and k as they are), RND1 (RND1Model, a
  // Qwen2MoeModel: Qwen3-MoE's names and experts), LLaDA (see LLADA: q and k permuted).
  dream: [...COMMON, ...QK],
  rnd1: [...COMMON, ...QK, ...QWEN_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  llada: LLADA,
  // openPangu-Embedded (PanguEmbeddedModel): TextModel's plain name mapping, q and k as they are.
  'pangu-embedded': [...COMMON, ...QK],
  // MiniMax-M2, M2.1 and M2.5 (MiniMaxM2Model: TextModel's name mapping, experts stacked as
  // MOE_BLOCK_SPARSE says): q and k as they are. The checkpoint's own modeling code names the MoE
  // `block_sparse_moe` (the router a Linear `gate`, experts `w1` gate, `w3` up, `w2` down, as
  // Mixtral's); transformers 5's MiniMaxM2 renames it `mlp`, its router a bare parameter and its
  // experts fused as Mixtral's (gate_up_proj halves, down_proj).
  'minimax-m2': [...COMMON, ...QK, ...MIXTRAL, ...fusedExperts(CHUNKED_EXPERTS)],
  // Phi-3.5-MoE (PhiMoeModel, a Phi3MiniModel): separate q/k/v/o as they are (TextModel's name
  // mapping, nothing permuted), the MoE as PHIMOE.
  phimoe: [...COMMON, ...QK, ...PHIMOE],
  // dots.llm1 (Dots1Model, a Qwen2MoeModel): q and k as they are (q_norm/k_norm are norms), the
  // leading dense blocks' MLP, the router `mlp.gate` on ffn_gate_inp, experts stacked as rows
  // (fused in transformers 5, as Qwen's) and the shared experts by name.
  dots1: [...COMMON, ...QK, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  // DBRX (DbrxModel): see DBRX.
  dbrx: DBRX,
  // DeepSeek-MoE (V1: deepseek-moe-16b, DeepSeek-Coder-V1's MoE; DeepseekModel): q and k permuted
  // (DeepseekModel.permute, LlamaModel's with the head and kv-head counts), the leading dense
  // blocks' MLP, the router `mlp.gate` (MoEGate's (E, hidden) weight, written as it is), experts
  // stacked as rows and the shared experts by name.
  deepseek: [...COMMON, ...QK_PERMUTED, ...SHARED_EXPERTS_MOE],
  // K-EXAONE (ExaoneMoEModel, an Exaone4Model): q and k as they are (q_norm/k_norm are norms), the
  // leading dense blocks' MLP, the router `mlp.gate` (DeepSeek-V3's, a bare parameter in
  // transformers), experts stacked as rows (fused in transformers 5 as DeepSeek-V3's: gate_up_proj
  // halves) and the shared experts. Its MTP layers, which transformers does not load, are blocks
  // after the main ones that no PEFT module names.
  'exaone-moe': [...COMMON, ...QK, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  // Arcee Trinity (AfmoeModel): see AFMOE.
  afmoe: [...COMMON, ...QK, ...AFMOE],
  // Cohere's MoE (North; Cohere2MoeModel): TextModel's plain mapping, q and k as they are (its
  // all-zero biases dropped), the leading dense blocks' MLP, the router `mlp.gate`, experts stacked
  // as rows (fused in transformers 5 as Mixtral's: gate_up_proj halves) and the shared experts.
  cohere2moe: [...COMMON, ...QK, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  // SmallThinker (SmallThinkerModel): q and k as they are, the MoE as SMALLTHINKER.
  smallthinker: [...COMMON, ...QK, ...SMALLTHINKER],
  // Ling 1: Ling-lite, Ling-plus (BailingMoeModel): see BAILINGMOE; the MLP of any dense block as COMMON's.
  bailingmoe: [...BAILINGMOE, ...COMMON],
  // Snowflake Arctic (ArcticModel): see ARCTIC.
  arctic: [...COMMON, ...QK_PERMUTED, ...ARCTIC],
  // PLaMo 2 (Plamo2Model: Mamba and attention blocks) and PLaMo 3 (Plamo3Model: attention blocks).
  plamo2: [...PLAMO, ...PLAMO2_MAMBA],
  plamo3: PLAMO,
  // Step 3.5 (Step35Model): see STEP35; q and k as they are.
  step35: [...COMMON, ...QK, ...STEP35],
  // GroveMoE (GroveMoeModel): see GROVEMOE.
  grovemoe: [...COMMON, ...QK, ...SHARED_EXPERTS_MOE, ...GROVEMOE_CHUNK_EXPERTS],
  // Kimi Linear (KimiLinearModel): KDA and MLA blocks, see KIMI_LINEAR; q and k as they are.
  'kimi-linear': [...COMMON, ...QK, ...MLA, ...KIMI_LINEAR],
  // Ling 2.0 and Ring 2.0 (BailingMoeV2Model): see BAILINGMOE2.
  bailingmoe2: [...COMMON, ...BAILINGMOE2, ...SHARED_EXPERTS_MOE, ...NEXTN],
  // Jamba (JambaModel): attention, Mamba-1 and MoE blocks as JAMBA says.
  jamba: [...COMMON, ...QK, ...BAMBA_MLP, ...JAMBA],
  // MiniCPM3 (MiniCPM3Model): DeepSeek-V2's MLA names (q_a_proj, q_b_proj, kv_a_proj_with_mqa,
  // kv_b_proj, o_proj), all written as they are (kv_b_proj whole to attn_kv_b: the converter does
  // not split it, and defines but never calls a q/k permutation), and the dense MLP.
  minicpm3: [...COMMON, ...MLA],
  // Nemotron-H / Nemotron Nano 2 and Nemotron 3's MoE (NemotronHModel).
  nemotron_h: NEMOTRON_H,
  nemotron_h_moe: [...NEMOTRON_H, NEMOTRON_H_MTP],
  // Falcon-H1 (FalconH1Model): only the up projection is kept as it is; the rest are refused.
  'falcon-h1': FALCON_H1,
  // InternLM2 and InternVL's InternLM2 language model (InternLM2Model).
  internlm2: INTERNLM2,
  // Llama 4 Scout/Maverick's language model (Llama4Model): q and k not permuted.
  llama4: [...COMMON, ...QK, ...LLAMA4],
  // DeepSeek-V2/V2-Lite/V3/R1, Kimi K2 and Kimi-VL's language model, GLM-4.7-Flash, Youtu-LLM
  // (DeepseekV2Model and its subclasses): MLA attention, the leading dense blocks' MLP, the router,
  // experts (fused in transformers 5, as Qwen's) and shared experts. Mistral Large 3 converted
  // from Mistral's format (MistralMoeModel) is written so too, nothing permuted, as transformers'
  // conversion of it leaves q/k's interleaved RoPE rows as they are: its adapters land by these rules.
  deepseek2: [...COMMON, ...MLA, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS), ...NEXTN_DROPPED],
  // Mistral Small 4 and the other Mistral MLA models in transformers' format (Mistral3Model's
  // Mistral4Model, a DeepseekV2Model with skip_mtp and merge_expert off): MLA with kv_b_proj split
  // and nothing permuted (transformers' conversion keeps Mistral's interleaved RoPE rows), the
  // leading dense blocks' MLP, the router (a bare parameter in transformers), the shared experts,
  // and the experts fused (E, 2·ffn, hidden) and (E, hidden, ffn), which it passes on whole as
  // ffn_gate_up_exps and ffn_down_exps (per expert (out, in), gate rows then up rows).
  mistral4: [...COMMON, ...MLA, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  // DeepSeek-V3.2 (DeepseekV32Model) and GLM-5 (GlmMoeDsaModel): DeepseekV2Model's MLA and MoE, the
  // sparse attention's indexer, and the nextn layers kept (skip_mtp off) as the last blocks.
  deepseek32: [...COMMON, ...MLA, ...DSA_INDEXER, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS), ...NEXTN],
  'glm-dsa': [...COMMON, ...MLA, ...DSA_INDEXER, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS), ...NEXTN],
  // DeepSeek-V4 Flash/Pro (DeepseekV4Model): see DEEPSEEK4.
  deepseek4: DEEPSEEK4,
  // DeepSeek-OCR's language model (DeepseekV2Model as deepseek2-ocr): DeepSeek-V2's MoE with plain
  // multi-head attention (no MLA: q_proj, k_proj, v_proj, o_proj as they are); its SAM and CLIP
  // encoders and projector go to the mmproj file.
  'deepseek2-ocr': [...COMMON, ...QK, ...SHARED_EXPERTS_MOE, ...fusedExperts(CHUNKED_EXPERTS), ...NEXTN_DROPPED],
  // Qwen3-Next (Qwen3NextModel, a Qwen2MoeModel): linear-attention and gated full-attention blocks,
  // q and k as they are, Qwen's MoE with its shared expert and shared-expert gate.
  qwen3next: [...COMMON, ...QK, ...QWEN3NEXT_LINEAR, ...QWEN_MOE, ...fusedExperts(CHUNKED_EXPERTS)],
  // Qwen3.5 dense and MoE (Qwen3_5TextModel, Qwen3_5MoeTextModel, _LinearAttentionVReorderBase): as
  // Qwen3-Next with the separate linear-attention projections; the MTP layers kept as the last
  // blocks, `mtp.fc` on their nextn.eh_proj.
  qwen35: [...COMMON, ...QK, ...QWEN35_LINEAR, ...NEXTN],
  qwen35moe: [...COMMON, ...QK, ...QWEN35_LINEAR, ...QWEN_MOE, ...fusedExperts(CHUNKED_EXPERTS), ...NEXTN],
};

/** Multimodal checkpoints nest the language model; PEFT paths keep the nesting. */
const PREFIXES: readonly [string, string][] = [
  ['model.language_model.', 'model.'],
  ['language_model.model.', 'model.'],
  ['language_model.lm_head', 'lm_head'],
];

function normalise(path: string): string {
  for (const [from, to] of PREFIXES) if (path.startsWith(from)) return to + path.slice(from.length);
  return path;
}

const MISS: LayoutResolution = { found: false, ambiguous: false, candidates: [] };

/**
 * Module trees of a VLM's vision side, in either naming (transformers' VLM refactor added `model.`);
 * DeepSeek-OCR's are `sam_model`, `vision_model`, `projector` (and its `view_seperator`); Granite 4
 * Vision's Q-Former projectors are `layerwise_projectors` and `spatial_projectors`; HunyuanVL's tower is `vit`;
 * PaddleOCR-VL's own checkpoint names its projector `mlp_AR`.
 */
const VISION_TOWER = /^(model\.)?(visual|vision_tower|vision_model|multi_modal_projector|vision_resampler|image_newline|sam_model|projector|view_seperator|layerwise_projectors|spatial_projectors|vit|mlp_AR)(\.|$)/;
/** Hugging Face names of a language model's modules and parameters (after `normalise`; Nemotron-H's tree is `backbone`). */
const HF_NAME = /^(model\.|backbone\.|lm_head$|lm_head\.)/;
/** Hugging Face module paths of a language model (after `normalise`). */
const HF_TREE = /^(model\.|backbone\.|lm_head$)/;

/** The architecture of a GGUF base, or undefined for other bases. */
function ggufArchitecture(base: BaseView): string | undefined {
  const arch = base.metadata?.('general.architecture');
  return typeof arch === 'string' ? arch : undefined;
}

/**
 * A tensor path an adapter saved whole (`model.embed_tokens.weight`), on a GGUF base: refused with
 * the reason; undefined for other bases and for paths that are not Hugging Face names.
 */
export function ggufTensorPathMiss(base: BaseView, path: string): LayoutResolution & { found: false } | undefined {
  if (ggufArchitecture(base) === undefined || !HF_NAME.test(normalise(path))) return undefined;
  return {
    found: false, ambiguous: false, candidates: [],
    why: 'of the tensors an adapter saves whole, a GGUF base takes modules_to_save copies of tensors convert_hf_to_gguf maps whole (lm_head, embed_tokens, a projection); others (base_layer weights, trainable tokens, norms) are not merged into it: merge into the safetensors model and convert that',
  };
}

/**
 * convert_hf_to_gguf's LlamaModel.permute on row indices: GGUF row h·d + 2i + j holds HF row
 * h·d + j·d/2 + i (d = rows / heads, i < d/2, j < 2).
 */
export function llamaRopePermutation(rows: number, heads: number): RowSegment[] | undefined {
  const d = rows / heads;
  if (!Number.isInteger(d) || d % 2 !== 0) return undefined;
  const segments: RowSegment[] = [];
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < d / 2; i++) {
      for (let j = 0; j < 2; j++) segments.push({ src: h * d + j * (d / 2) + i, dst: h * d + 2 * i + j, count: 1 });
    }
  }
  return segments;
}

/**
 * A fused expert parameter on the tensors the converter made of it: E from the metadata, the
 * parameter's shape from the tensors' (each expert (out, in) in the GGUF), the rows each holds.
 */
function resolveFusedExperts(fused: NonNullable<Rule['fused']>, block: string, arch: string, base: BaseView): LayoutResolution {
  const countKey = `${arch}.expert_count`;
  const experts = metadataCount(base, countKey);
  const find = (name: string) => {
    const found = base.index.resolveDotted(`blk.${block}.${name}.weight`);
    return found.found ? found.key : undefined;
  };
  /** One expert's (rows, cols) in `key`, or why the rows do not split among the experts. */
  const perExpert = (key: string): [number, number] | LayoutResolution => {
    if (experts.why !== undefined) return unplaceable(experts.why);
    const [rows, cols] = base.shape(key) ?? [];
    if (rows === undefined || cols === undefined || rows % experts.n !== 0) {
      return unplaceable(`${key} has ${rows} rows, which do not split among ${counted(experts.n, 'experts', countKey)}`);
    }
    return [rows / experts.n, cols];
  };
  const { storedInOut, gateUp } = fused.form;
  /** The parameter's shape for an expert matrix of `out` × `inDim`, as the model stores it. */
  const param = (out: number, inDim: number): [number, number, number] => (storedInOut ? [experts.n!, inDim, out] : [experts.n!, out, inDim]);
  const laidOut = (out: number, inDim: number, rows?: number[]) => ({ paramShape: param(out, inDim), storedInOut, transposed: storedInOut, ...(rows ? { rows } : {}) });
  if (fused.part !== 'gate_up') {
    const key = find(`ffn_${fused.part}_exps`);
    if (!key) return MISS;
    const shape = perExpert(key);
    if (!Array.isArray(shape)) return shape;
    return { found: true, targets: [{ baseKey: key, experts: laidOut(shape[0], shape[1]) }] };
  }
  const range = (from: number, count: number, step = 1) => Array.from({ length: count }, (_, i) => from + i * step);
  const fusedKey = find('ffn_gate_up_exps');
  if (fusedKey) {
    // --fuse-gate-up-exps: each expert's gate rows, then its up rows.
    const shape = perExpert(fusedKey);
    if (!Array.isArray(shape)) return shape;
    if (shape[0] % 2 !== 0) return unplaceable(`${fusedKey} holds ${shape[0]} rows per expert, which do not split into a gate and an up half`);
    const ffn = shape[0] / 2;
    const rows = gateUp === 'interleaved' ? [...range(0, ffn, 2), ...range(1, ffn, 2)] : undefined;
    return { found: true, targets: [{ baseKey: fusedKey, experts: laidOut(2 * ffn, shape[1], rows) }] };
  }
  const gate = find('ffn_gate_exps');
  const up = find('ffn_up_exps');
  if (!gate || !up) return MISS;
  const shape = perExpert(gate);
  const upShape = perExpert(up);
  if (!Array.isArray(shape)) return shape;
  if (!Array.isArray(upShape)) return upShape;
  if (shape[0] !== upShape[0] || shape[1] !== upShape[1]) {
    return unplaceable(`${gate} and ${up} differ in shape (${base.shape(gate)!.join(' × ')} and ${base.shape(up)!.join(' × ')}), so they are not the two halves of one gate_up_proj`);
  }
  const [ffn, hidden] = shape;
  const [gateRows, upRows] = gateUp === 'interleaved' ? [range(0, ffn, 2), range(1, ffn, 2)] : [range(0, ffn), range(ffn, ffn)];
  return {
    found: true,
    targets: [{ baseKey: gate, experts: laidOut(2 * ffn, hidden, gateRows) }, { baseKey: up, experts: laidOut(2 * ffn, hidden, upRows) }],
  };
}

/** Where a module whose rows the converter splits in halves (Granite's gate and up) lands. */
function resolveHalves(r: Rule, block: string, base: BaseView): LayoutResolution {
  const find = (name: string) => base.index.resolveDotted(`${name.replace('$1', block)}.weight`);
  let lower = find(r.tensor);
  let upperName = r.upperHalf!.tensor;
  if (!lower.found && !lower.ambiguous && r.dense) {
    lower = find(r.dense);
    upperName = r.upperHalf!.dense ?? upperName;
  }
  if (!lower.found) return wholeTensor(lower);
  const upper = find(upperName);
  if (!upper.found) return wholeTensor(upper);
  const half = base.shape(lower.key)?.[0];
  const upperRows = base.shape(upper.key)?.[0];
  if (half === undefined || upperRows !== half) {
    return unplaceable(`${lower.key} has ${half} rows and ${upper.key} ${upperRows}, so they are not the two halves of one module`);
  }
  return {
    found: true,
    targets: [
      { baseKey: lower.key, rows: [{ src: 0, dst: 0, count: half }] },
      { baseKey: upper.key, rows: [{ src: half, dst: 0, count: half }] },
    ],
  };
}

/**
 * The attn_q, attn_k and attn_v tensors a converter splits a fused qkv into, with the block's head
 * and kv-head counts (kv heads default to the heads); a resolution to return where one is missing.
 */
function splitQkvTensors(block: string, arch: string, base: BaseView):
  { q: string; k: string; v: string; counts: HeadCounts } | { miss: LayoutResolution } {
  const found = ['attn_q', 'attn_k', 'attn_v'].map((t) => base.index.resolveDotted(`blk.${block}.${t}.weight`));
  for (const f of found) if (!f.found) return { miss: wholeTensor(f) };
  const [q, k, v] = found.map((f) => (f.found ? f.key : ''));
  const counts = headCounts(block, arch, base);
  if ('miss' in counts) return counts;
  return { q, k, v, counts };
}

/** A block's head and kv-head counts, with the keys they came from (for messages). */
interface HeadCounts { heads: number; kvHeads: number; headsKey: string; kvKey: string }

/**
 * The block's head count, and its kv-head count (the head count where the file records none, as
 * llama.cpp's loader takes it); the count's reason where there is no head count.
 */
function headCounts(block: string, arch: string, base: BaseView): HeadCounts | { miss: LayoutResolution } {
  const headsKey = `${arch}.attention.head_count`;
  const heads = metadataCount(base, headsKey, block);
  if (heads.why !== undefined) return { miss: unplaceable(heads.why) };
  const kv = perBlock(base.metadata?.(`${arch}.attention.head_count_kv`), block);
  return { heads: heads.n, kvHeads: kv ?? heads.n, headsKey, kvKey: kv === undefined ? headsKey : `${arch}.attention.head_count_kv` };
}

/** llamaRopePermutation of `key`'s rows by `n` heads, or why its rows do not allow it. */
function ropeRows(key: string, rows: number, n: number, countKey: string): RowSegment[] | LayoutResolution {
  return llamaRopePermutation(rows, n)
    ?? unplaceable(`${key} has ${rows} rows, which do not split into ${counted(n, 'heads', countKey)} of an even size, as llama.cpp's RoPE row order needs`);
}

/**
 * InternLM2's wqkv on the tensors InternLM2Model.modify_tensors makes of it. Its rows are, per kv
 * group g, q_per_kv q heads, then one k head, then one v head (head_dim rows each); the converter
 * gathers the q heads (head h = g·q_per_kv + s) into attn_q and the k and v heads into attn_k and
 * attn_v, then permutes attn_q and attn_k as LlamaModel.permute does (heads, kv heads).
 */
function resolveGroupedQkv(block: string, arch: string, base: BaseView): LayoutResolution {
  const split = splitQkvTensors(block, arch, base);
  if ('miss' in split) return split.miss;
  const { q, k, v, counts: { heads, kvHeads, headsKey, kvKey } } = split;
  const qRows = base.shape(q)![0];
  if (heads % kvHeads !== 0) {
    return unplaceable(`${counted(heads, 'heads', headsKey)} do not group evenly under ${counted(kvHeads, 'kv heads', kvKey)}`);
  }
  const qPermuted = ropeRows(q, qRows, heads, headsKey);
  if (!Array.isArray(qPermuted)) return qPermuted;
  const dim = qRows / heads;
  const perKv = heads / kvHeads;
  for (const key of [k, v]) {
    const rows = base.shape(key)![0];
    if (rows !== kvHeads * dim) return unplaceable(`${key} has ${rows} rows, not ${counted(kvHeads, 'kv heads', kvKey)} of ${q}'s head size ${dim}`);
  }
  /** wqkv's row for group g, head slot s (q heads, then k, then v), row d of the head. */
  const wqkvRow = (g: number, s: number, d: number) => (g * (perKv + 2) + s) * dim + d;
  const kPermuted = ropeRows(k, kvHeads * dim, kvHeads, kvKey);
  if (!Array.isArray(kPermuted)) return kPermuted;
  const qSegments = qPermuted.map(({ src, dst }) => {
    const h = Math.floor(src / dim);
    return { src: wqkvRow(Math.floor(h / perKv), h % perKv, src % dim), dst, count: 1 };
  });
  const kSegments = kPermuted.map(({ src, dst }) => ({ src: wqkvRow(Math.floor(src / dim), perKv, src % dim), dst, count: 1 }));
  const vSegments = Array.from({ length: kvHeads }, (_, g) => ({ src: wqkvRow(g, perKv + 1, 0), dst: g * dim, count: dim }));
  return { found: true, targets: [{ baseKey: q, rows: qSegments }, { baseKey: k, rows: kSegments }, { baseKey: v, rows: vSegments }] };
}

/**
 * A fused qkv (q rows, then k, then v) on the tensors a converter splits it into, the parts' sizes
 * being the tensors' rows: BailingMoeModel.modify_tensors permutes attn_q and attn_k as
 * LlamaModel.permute does (q by the heads, k by the kv heads; `permute`), Ernie4_5Model's
 * `split([q, k, v], dim=0)` keeps the rows in order; attn_v is as it is in both.
 */
function resolveSplitQkv(block: string, arch: string, base: BaseView, permute: boolean): LayoutResolution {
  const split = splitQkvTensors(block, arch, base);
  if ('miss' in split) return split.miss;
  const { q, k, v, counts: { heads, kvHeads, headsKey, kvKey } } = split;
  const [qRows, kRows, vRows] = [q, k, v].map((key) => base.shape(key)![0]);
  if (!permute) {
    return {
      found: true,
      targets: [
        { baseKey: q, rows: [{ src: 0, dst: 0, count: qRows }] },
        { baseKey: k, rows: [{ src: qRows, dst: 0, count: kRows }] },
        { baseKey: v, rows: [{ src: qRows + kRows, dst: 0, count: vRows }] },
      ],
    };
  }
  const qPermuted = ropeRows(q, qRows, heads, headsKey);
  if (!Array.isArray(qPermuted)) return qPermuted;
  const kPermuted = ropeRows(k, kRows, kvHeads, kvKey);
  if (!Array.isArray(kPermuted)) return kPermuted;
  return {
    found: true,
    targets: [
      { baseKey: q, rows: qPermuted },
      { baseKey: k, rows: kPermuted.map(({ src, dst, count }) => ({ src: qRows + src, dst, count })) },
      { baseKey: v, rows: [{ src: qRows + kRows, dst: 0, count: vRows }] },
    ],
  };
}

/**
 * DeepSeek's kv_b_proj (heads·(nope + v) rows, kv_lora_rank inputs: each head's nope key rows, then
 * its v value rows) on what DeepseekV2Model.modify_tensors makes of it: attn_k_b, each head's key
 * rows transposed ((heads, kv_lora_rank, nope), seen as heads·kv_lora_rank rows of nope), and
 * attn_v_b, each head's value rows ((heads, v, kv_lora_rank)). The heads are the GGUF's head_count
 * (its head_count_kv is 1: the converter writes MLA as MQA). A file converted before that split
 * holds attn_kv_b whole; one that holds all three (ik_llama.cpp's converter keeps attn_kv_b)
 * gets ΔW on each.
 */
function resolveMlaKvB(block: string, arch: string, base: BaseView): LayoutResolution {
  const find = (t: string) => base.index.resolveDotted(`blk.${block}.${t}.weight`);
  const [whole, kB, vB] = [find('attn_kv_b'), find('attn_k_b'), find('attn_v_b')];
  if (!kB.found && !vB.found) return wholeTensor(whole);
  if (!kB.found || !vB.found) return wholeTensor(kB.found ? vB : kB);
  const headsKey = `${arch}.attention.head_count`;
  const count = metadataCount(base, headsKey, block);
  if (count.why !== undefined) return unplaceable(count.why);
  const heads = count.n;
  for (const key of [kB.key, vB.key]) {
    const shape = base.shape(key)!;
    if (shape.length !== 2) return unplaceable(`${key} (${shape.join(' × ')}) is not a matrix`);
  }
  const [kRows, nope] = base.shape(kB.key)!;
  const [vRows, rank] = base.shape(vB.key)!;
  const rankKey = `${arch}.attention.kv_lora_rank`;
  const declaredRank = positiveInt(base.metadata?.(rankKey));
  if (declaredRank !== undefined && declaredRank !== rank) {
    return unplaceable(`${vB.key} has ${rank} columns, but the GGUF's ${rankKey} is ${declaredRank}`);
  }
  if (kRows !== heads * rank || vRows % heads !== 0) {
    return unplaceable(`${kB.key} (${kRows} rows) and ${vB.key} (${vRows} rows) do not split into ${counted(heads, 'heads', headsKey)} of rank ${rank}`);
  }
  const v = vRows / heads;
  const starts = Array.from({ length: heads }, (_, h) => h * (nope + v));
  const targets: Placement[] = [
    { baseKey: kB.key, transposedBlocks: { starts, rows: nope } },
    { baseKey: vB.key, rows: starts.map((start, h) => ({ src: start + nope, dst: h * v, count: v })) },
  ];
  if (whole.found) targets.push({ baseKey: whole.key, copy: true });
  return { found: true, targets };
}

/** Matrix `index` of the square matrices stacked in `tensor` (n × n each: n rows per matrix). */
function resolveStackedSquare(tensor: string, index: number, base: BaseView): LayoutResolution {
  const found = base.index.resolveDotted(`${tensor}.weight`);
  if (!found.found) return wholeTensor(found);
  const [rows, cols] = base.shape(found.key)!;
  if (cols === undefined || rows % cols !== 0) return unplaceable(`${found.key} (${base.shape(found.key)!.join(' × ')}) is not a stack of square matrices`);
  if (index >= rows / cols) return missBecause(`names matrix ${index}, but ${found.key} stacks ${rows / cols}`);
  return { found: true, targets: [{ baseKey: found.key, rows: [{ src: 0, dst: index * cols, count: cols }] }] };
}

/**
 * The gated DeltaNet's head counts and sizes as the converter records them: ssm.group_count key
 * heads of ssm.state_size, ssm.time_step_rank value heads sharing ssm.inner_size.
 */
function linearAttentionHeads(arch: string, base: BaseView): LinearHeads | { miss: LayoutResolution } {
  const keys = ['group_count', 'state_size', 'time_step_rank', 'inner_size'].map((k) => `${arch}.ssm.${k}`);
  const counts = keys.map((key) => metadataCount(base, key));
  for (const c of counts) if (c.why !== undefined) return { miss: unplaceable(c.why) };
  const [nk, dk, nv, inner] = counts.map((c) => c.n!);
  if (nv % nk !== 0) return { miss: unplaceable(`${counted(nv, 'value heads', keys[2])} do not group evenly under ${counted(nk, 'key heads', keys[0])}`) };
  if (inner % nv !== 0) return { miss: unplaceable(`${counted(inner, 'value rows', keys[3])} do not split among ${counted(nv, 'value heads', keys[2])}`) };
  return { nk, dk, nv, dv: inner / nv, r: nv / nk };
}

/** The gated DeltaNet's key heads (nk of dk rows), value heads (nv of dv rows), value heads per key head (r). */
interface LinearHeads { nk: number; dk: number; nv: number; dv: number; r: number }

/**
 * Qwen3.5's value-head reorder on rows of `size` each (from `offset`): tiled row block j·nk + g
 * holds grouped block g·r + j.
 */
function tiledValueHeads(h: { nk: number; nv: number; r: number }, size: number, offset = 0): RowSegment[] {
  return Array.from({ length: h.nv }, (_, t) => {
    const j = Math.floor(t / h.nk), g = t % h.nk;
    return { src: offset + (g * h.r + j) * size, dst: offset + t * size, count: size };
  });
}

/** A gated DeltaNet projection on the tensors the converter made of it (see LinearProjection). */
function resolveLinearAttention(kind: LinearProjection, r: Rule, block: string, arch: string, base: BaseView): LayoutResolution {
  const find = (t: string) => base.index.resolveDotted(`${t.replace('$1', block)}.weight`);
  const h = linearAttentionHeads(arch, base);
  /** Why `key` does not hold `rows` rows (`what` says how they follow from the ssm counts), or undefined when it does. */
  const rowsMismatch = (key: string, rows: number, what: string) => {
    const held = base.shape(key)![0];
    return held === rows ? undefined : unplaceable(`${key} has ${held} rows, not the ${rows} (${what}) the GGUF's ${arch}.ssm counts give`);
  };
  if (kind === 'qkvz') {
    const [qkv, gate, legacy] = [find('blk.$1.attn_qkv'), find('blk.$1.attn_gate'), find('blk.$1.ssm_in')];
    // Older conversions wrote in_proj_qkvz whole, in its own order, and llama.cpp splits it at run time.
    if (!qkv.found && !gate.found && legacy.found) return wholeTensor(legacy);
    if (!qkv.found || !gate.found) return wholeTensor(qkv.found ? gate : qkv);
    if ('miss' in h) return h.miss;
    const { nk, dk, dv, r: perK } = h;
    const v = perK * dv, group = 2 * dk + 2 * v;
    const mismatch = rowsMismatch(qkv.key, nk * (2 * dk + v), 'q, k and v of each key head') ?? rowsMismatch(gate.key, nk * v, 'the gate of each value head');
    if (mismatch) return mismatch;
    const heads = Array.from({ length: nk }, (_, g) => g);
    return {
      found: true,
      targets: [
        {
          baseKey: qkv.key,
          rows: [
            ...heads.map((g) => ({ src: g * group, dst: g * dk, count: dk })),
            ...heads.map((g) => ({ src: g * group + dk, dst: nk * dk + g * dk, count: dk })),
            ...heads.map((g) => ({ src: g * group + 2 * dk, dst: 2 * nk * dk + g * v, count: v })),
          ],
        },
        { baseKey: gate.key, rows: heads.map((g) => ({ src: g * group + 2 * dk + v, dst: g * v, count: v })) },
      ],
    };
  }
  const found = find(r.tensor);
  if (!found.found) return wholeTensor(found);
  if ('miss' in h) return h.miss;
  // The converter reorders only when there are more value heads than key heads (else it is the identity).
  if (h.r === 1) return wholeTensor(found);
  if (kind === 'out') {
    const cols = base.shape(found.key)![1];
    if (cols !== h.nv * h.dv) return unplaceable(`${found.key} has ${cols} columns, not the ${h.nv * h.dv} of its value heads the GGUF's ${arch}.ssm counts give`);
    const columns = tiledValueHeads(h, h.dv).flatMap(({ src, count }) => Array.from({ length: count }, (_, i) => src + i));
    return { found: true, targets: [{ baseKey: found.key, columns }] };
  }
  const qk = kind === 'qkv' ? 2 * h.nk * h.dk : 0;
  const size = kind === 'ab' ? 1 : h.dv;
  const mismatch = rowsMismatch(found.key, qk + h.nv * size, kind === 'qkv' ? 'q and k, then the value heads' : 'one per value head');
  if (mismatch) return mismatch;
  const rows = tiledValueHeads(h, size, qk);
  if (qk) rows.unshift({ src: 0, dst: 0, count: qk });
  return { found: true, targets: [{ baseKey: found.key, rows }] };
}

/**
 * A module of a checkpoint's MTP layers (`mtp.layers.K.…`, `mtp.fc`), which Qwen3.5's converter
 * (_Qwen35MtpMixin) writes as blocks n…n+m−1 after the n main blocks (`mtp.fc` on each one's
 * nextn.eh_proj); a file without nextn_predict_layers has none of them.
 */
function resolveMtp(path: string, arch: string, base: BaseView, rules: readonly Rule[]): LayoutResolution {
  const blocks = positiveInt(base.metadata?.(`${arch}.block_count`));
  const mtp = positiveInt(base.metadata?.(`${arch}.nextn_predict_layers`));
  if (!blocks || !mtp || mtp >= blocks) {
    return missBecause(`names a multi-token-prediction (mtp) layer's module, which this ${arch} GGUF does not hold (no ${arch}.nextn_predict_layers): convert_hf_to_gguf leaves them out of Qwen3-Next files (Qwen3NextModel) and of Qwen3.5 files converted without them`);
  }
  const first = blocks - mtp;
  const layer = /^mtp\.layers\.(\d+)\.(.+)$/.exec(path);
  if (layer) {
    const k = Number(layer[1]);
    if (k >= mtp) return missBecause(`names MTP layer ${k}, but the base has ${mtp} (${arch}.nextn_predict_layers)`);
    return resolveByRules(`model.layers.${first + k}.${layer[2]}`, arch, base, rules) ?? MISS;
  }
  if (path !== 'mtp.fc') return MISS;
  const targets: Placement[] = [];
  for (let b = first; b < blocks; b++) {
    const found = base.index.resolveDotted(`blk.${b}.nextn.eh_proj.weight`);
    if (!found.found) return wholeTensor(found);
    // The converter writes the one fc weight to every MTP block.
    targets.push(targets.length ? { baseKey: found.key, copy: true } : { baseKey: found.key });
  }
  return { found: true, targets };
}

function resolveByRules(path: string, arch: string, base: BaseView, rules: readonly Rule[]): LayoutResolution | undefined {
  for (const r of rules) {
    const m = r.pattern.exec(path);
    if (m) return pastLastBlock(r, resolveRule(r, m, arch, base), m, arch, base);
  }
  return undefined;
}

function resolveRule(r: Rule, m: RegExpExecArray, arch: string, base: BaseView): LayoutResolution {
  if (r.refuse) return { found: false, ambiguous: false, candidates: [], why: r.refuse };
  if (r.linear) return resolveLinearAttention(r.linear, r, m[1], arch, base);
  if (r.stackedSquare !== undefined) return resolveStackedSquare(r.tensor, Number(m[r.stackedSquare]), base);
  if (r.mlaKvB) return resolveMlaKvB(m[1], arch, base);
  if (r.fused) return resolveFusedExperts(r.fused, m[1], arch, base);
  if (r.upperHalf) return resolveHalves(r, m[1], base);
  if (r.groupedQkv) return resolveGroupedQkv(m[1], arch, base);
  if (r.splitQkv) return resolveSplitQkv(m[1], arch, base, r.splitQkv === 'permuted');
  const name = r.tensor.replace('$1', m[1]);
  if (r.expert !== undefined) {
    const expert = Number(m[r.expert]);
    // Older conversions kept a tensor per expert.
    const single = base.index.resolveDotted(`${name.replace('_exps', '')}.${expert}.weight`);
    if (single.found) return { found: true, targets: [{ baseKey: single.key }] };
    const merged = base.index.resolveDotted(`${name}.weight`);
    if (!merged.found) return wholeTensor(merged);
    const countKey = `${arch}.expert_count`;
    const routed = metadataCount(base, countKey);
    if (routed.why !== undefined) return unplaceable(routed.why);
    let experts = routed.n;
    if (r.perExpertGroup) {
      const groupKey = `${arch}.experts_per_group`;
      const perGroup = metadataCount(base, groupKey);
      if (perGroup.why !== undefined) return unplaceable(perGroup.why);
      if (routed.n % perGroup.n !== 0) return unplaceable(`${counted(routed.n, 'routed experts', countKey)} do not split into groups of ${perGroup.n} (${groupKey})`);
      experts = routed.n / perGroup.n;
    }
    if (expert >= experts) return missBecause(`names expert ${expert}, but ${merged.key} holds ${experts} (${countKey}${r.perExpertGroup ? ' over experts_per_group' : ''})`);
    const rows = base.shape(merged.key)![0];
    if (rows % experts !== 0) return unplaceable(`${merged.key} has ${rows} rows, which do not split among ${experts} experts (${countKey}${r.perExpertGroup ? ' over experts_per_group' : ''})`);
    const per = rows / experts;
    return { found: true, targets: [{ baseKey: merged.key, rows: [{ src: 0, dst: expert * per, count: per }] }] };
  }
  let found = base.index.resolveDotted(`${name}.weight`);
  if (!found.found && !found.ambiguous && r.dense) found = base.index.resolveDotted(`${r.dense.replace('$1', m[1])}.weight`);
  if (!found.found || !r.permute) return wholeTensor(found);
  const rows = base.shape(found.key)![0];
  // k is permuted by the kv heads alone, so a file that records those needs no head count for it.
  const kvKey = `${arch}.attention.head_count_kv`;
  const kvHeads = r.permute === 'k' ? perBlock(base.metadata?.(kvKey), m[1]) : undefined;
  let segments: RowSegment[] | LayoutResolution;
  if (kvHeads !== undefined) segments = ropeRows(found.key, rows, kvHeads, kvKey);
  else {
    const counts = headCounts(m[1], arch, base);
    if ('miss' in counts) return counts.miss;
    segments = ropeRows(found.key, rows, r.permute === 'q' ? counts.heads : counts.kvHeads, r.permute === 'q' ? counts.headsKey : counts.kvKey);
  }
  if (!Array.isArray(segments)) return segments;
  return { found: true, targets: [{ baseKey: found.key, rows: segments }] };
}

/**
 * A miss on a block the file does not have (a checkpoint's nextn layer, which DeepseekV2Model and
 * most converters leave out) says so, with the file's block count.
 */
function pastLastBlock(rule: Rule, r: LayoutResolution, m: RegExpExecArray, arch: string, base: BaseView): LayoutResolution {
  // Only a rule whose tensor is a block's has the block number in its first group.
  if (r.found || r.ambiguous || r.why || !rule.tensor.startsWith('blk.$1.')) return r;
  const blocks = positiveInt(base.metadata?.(`${arch}.block_count`));
  if (blocks === undefined || Number(m[1]) < blocks) return r;
  return { ...r, pastLastBlock: true, why: `names block ${m[1]}, but the base has ${blocks} (${arch}.block_count), numbered from 0: an adapter for a deeper model, or a multi-token-prediction (nextn) layer that convert_hf_to_gguf leaves out of ${arch} files` };
}

/**
 * An `lm_head` update on a file with no `output.weight` but a `token_embd.weight`: the converter
 * writes no output tensor for a model that ties its head to the embedding, and llama.cpp then
 * uses the embedding as the head. Adding ΔW there would change the embedding too, which training
 * did not (convert_lora_to_gguf.py refuses such an adapter likewise), so the miss says why.
 */
function tiedHead(path: string, r: LayoutResolution, base: BaseView): LayoutResolution {
  if (path !== 'lm_head' || r.found || r.ambiguous || r.why) return r;
  if (base.index.resolveDotted('output.weight').found || !base.index.resolveDotted('token_embd.weight').found) return r;
  return { ...r, why: 'the base has no output.weight: its head is tied to token_embd.weight (convert_hf_to_gguf writes no output tensor for a model with tied embeddings), so this update would change the token embedding too, which training did not (convert_lora_to_gguf.py refuses it likewise); leave lm_head out of the adapter, or merge into a GGUF whose output.weight is its own tensor' };
}

export const hfToGguf: Layout = {
  name: 'hf-to-gguf',
  resolve(address, base) {
    const arch = ggufArchitecture(base);
    if (arch === undefined || address.flat) return undefined;
    if (VISION_TOWER.test(address.path)) {
      return { ...MISS, why: `names a vision-language model's vision side, which llama.cpp converts to a separate mmproj GGUF, not into this ${arch} base` };
    }
    const rules = HF_TO_GGUF_RULES[arch];
    const path = normalise(address.path);
    if (!rules) {
      // Say so rather than "no matching tensor": the tensor may well exist under a name we do not map.
      return HF_TREE.test(path)
        ? missBecause(`names a module of a ${arch} GGUF, an architecture whose convert_hf_to_gguf names (and any rows it reorders) are not mapped here: merge into the safetensors model and convert that`)
        : undefined;
    }
    if (MTP_UNDER_OWN_TREE.has(arch) && /^mtp\./.test(path)) return resolveMtp(path, arch, base, rules);
    const resolved = resolveByRules(path, arch, base, rules);
    if (resolved) return tiedHead(path, resolved, base);
    // GGUF names (a GGUF adapter's `blk.0.attn_q`) are not this layout's.
    return HF_TREE.test(path) ? MISS : undefined;
  },
};
