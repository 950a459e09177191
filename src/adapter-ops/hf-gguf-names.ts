/**
 * A Hugging Face safetensors model seen as the GGUF convert_hf_to_gguf.py would make of it, as far
 * as naming a LoRA needs (convert_lora_to_gguf.py --base reads only config.json): the
 * `general.architecture` its class converts to, the block, head and expert counts llama.cpp's RoPE
 * row order and stacked expert tensors are taken from, and the tensors' GGUF names with their
 * shapes as the plan sees a GGUF's (a stacked expert tensor as its experts' rows one after
 * another). The rows each module lands on, q/k's RoPE permutation included, are the hf-to-gguf
 * layout's, the same as on the GGUF itself. One {@link HF_CLASSES} entry per class; another class
 * is refused, naming it, so that the GGUF model itself is given instead.
 */
import { MergeError } from '../errors.js';
import type { BaseModel } from '../formats/base-model.js';
import type { ModelConfig } from '../formats/model-config.js';
import type { GgufNamedBase } from './gguf-lora-names.js';

const L = 'model\\.layers\\.(\\d+)';
/** A rename of one HF tensor name (`$1` the block) to its GGUF name, `.weight` on both. */
const rename = (hf: string, gguf: string): [RegExp, string] => [new RegExp(`^${hf}\\.weight$`), `${gguf}.weight`];

/** tensor_mapping.py's names shared by the llama-like classes (attention and dense MLP). */
const ATTENTION_MLP: readonly [RegExp, string][] = [
  rename('model\\.embed_tokens', 'token_embd'),
  ...([
    ['self_attn.q_proj', 'attn_q'], ['self_attn.k_proj', 'attn_k'], ['self_attn.v_proj', 'attn_v'], ['self_attn.o_proj', 'attn_output'],
    ['mlp.gate_proj', 'ffn_gate'], ['mlp.up_proj', 'ffn_up'], ['mlp.down_proj', 'ffn_down'],
  ] as const).map(([hf, gguf]) => rename(`${L}\\.${hf.replace('.', '\\.')}`, `blk.$1.${gguf}`)),
];
const HEAD = rename('lm_head', 'output');

/**
 * Per-expert Linears the converter stacks (torch.stack over the experts, in index order) into one
 * tensor: the pattern's groups are the block and the expert.
 */
/** A shared expert's gate/up/down under `mlp.<name>` (a regex source) on ffn_*_shexp. */
const sharedExpert = (name: string): [RegExp, string][] => (['gate', 'up', 'down'] as const)
  .map((p) => rename(`${L}\\.mlp\\.${name}\\.${p}_proj`, `blk.$1.ffn_${p}_shexp`));

interface StackedExperts {
  /** config.json's expert count (num_local_experts, num_experts). */
  countKey: string;
  parts: readonly [RegExp, string][];
}

/** Qwen's MoE experts, one Linear each, and transformers 5's fused form of them (gate then up halves; (E, hidden, ffn) down). */
const QWEN_EXPERTS: StackedExperts = {
  countKey: 'num_experts',
  parts: [
    [new RegExp(`^${L}\\.mlp\\.experts\\.(\\d+)\\.gate_proj\\.weight$`), 'blk.$1.ffn_gate_exps.weight'],
    [new RegExp(`^${L}\\.mlp\\.experts\\.(\\d+)\\.up_proj\\.weight$`), 'blk.$1.ffn_up_exps.weight'],
    [new RegExp(`^${L}\\.mlp\\.experts\\.(\\d+)\\.down_proj\\.weight$`), 'blk.$1.ffn_down_exps.weight'],
  ],
};

interface HfClass {
  /** convert_hf_to_gguf's model_arch for the class. */
  arch: string;
  names: readonly [RegExp, string][];
  experts?: StackedExperts;
  /** transformers 5's fused expert parameters (`mlp.experts.gate_up_proj` (E, 2·ffn, hidden), `down_proj` (E, hidden, ffn)). */
  fusedExperts?: true;
  /** Modules (HF paths) whose GGUF tensor this folder cannot give, and why. */
  unnamed?: readonly [RegExp, string][];
  /** The counts are text_config's (a multimodal class, as convert_hf_to_gguf moves text_config to the top). */
  textConfig?: true;
}

/**
 * The classes read here, each as its convert_hf_to_gguf.py model class names and lays out its
 * weights (tensor_mapping.py). Norm shifts (Gemma's +1) touch no Linear; Gemma's converters write no
 * output head (the embedding is tied), and Gemma 3's cuts token_embd to the tokenizer's vocabulary,
 * which config.json does not give, so its embedding is not named here.
 */
const HF_CLASSES: Readonly<Record<string, HfClass>> = {
  LlamaForCausalLM: { arch: 'llama', names: [...ATTENTION_MLP, HEAD] },
  MistralForCausalLM: { arch: 'llama', names: [...ATTENTION_MLP, HEAD] },
  // LlamaModel: Mixtral's experts w1 (gate), w2 (down), w3 (up) stacked; block_sparse_moe.gate is the router.
  MixtralForCausalLM: {
    arch: 'llama',
    names: [...ATTENTION_MLP, HEAD, rename(`${L}\\.block_sparse_moe\\.gate`, 'blk.$1.ffn_gate_inp')],
    experts: {
      countKey: 'num_local_experts',
      parts: [
        [new RegExp(`^${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.w1\\.weight$`), 'blk.$1.ffn_gate_exps.weight'],
        [new RegExp(`^${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.w2\\.weight$`), 'blk.$1.ffn_down_exps.weight'],
        [new RegExp(`^${L}\\.block_sparse_moe\\.experts\\.(\\d+)\\.w3\\.weight$`), 'blk.$1.ffn_up_exps.weight'],
      ],
    },
  },
  Qwen2ForCausalLM: { arch: 'qwen2', names: [...ATTENTION_MLP, HEAD] },
  Qwen3ForCausalLM: { arch: 'qwen3', names: [...ATTENTION_MLP, HEAD] },
  Qwen2MoeForCausalLM: {
    arch: 'qwen2moe',
    names: [
      ...ATTENTION_MLP, HEAD, rename(`${L}\\.mlp\\.gate`, 'blk.$1.ffn_gate_inp'),
      rename(`${L}\\.mlp\\.shared_expert\\.gate_proj`, 'blk.$1.ffn_gate_shexp'), rename(`${L}\\.mlp\\.shared_expert\\.up_proj`, 'blk.$1.ffn_up_shexp'),
      rename(`${L}\\.mlp\\.shared_expert\\.down_proj`, 'blk.$1.ffn_down_shexp'), rename(`${L}\\.mlp\\.shared_expert_gate`, 'blk.$1.ffn_gate_inp_shexp'),
    ],
    experts: QWEN_EXPERTS, fusedExperts: true,
  },
  Qwen3MoeForCausalLM: { arch: 'qwen3moe', names: [...ATTENTION_MLP, HEAD, rename(`${L}\\.mlp\\.gate`, 'blk.$1.ffn_gate_inp')], experts: QWEN_EXPERTS, fusedExperts: true },
  GemmaForCausalLM: { arch: 'gemma', names: ATTENTION_MLP },
  Gemma2ForCausalLM: { arch: 'gemma2', names: ATTENTION_MLP },
  Gemma3ForCausalLM: {
    arch: 'gemma3', names: ATTENTION_MLP.slice(1),
    unnamed: [[/^model\.embed_tokens$/, `Gemma 3's converter cuts token_embd to the tokenizer's vocabulary, a shape the Hugging Face folder's config.json does not give; give the Gemma 3 GGUF as --base`]],
  },
  // Gemma 3's multimodal class: convert_hf_to_gguf.py converts its language model as Gemma3ForCausalLM
  // (the same Gemma3Model class, hparams from text_config) and its vision tower and projector to a
  // separate mmproj GGUF; checkpoints name the language model `language_model.model.` (transformers
  // before 4.52) or `model.language_model.`, adapters either or `model.` (the text class).
  Gemma3ForConditionalGeneration: {
    arch: 'gemma3', textConfig: true,
    names: ATTENTION_MLP.slice(1).flatMap(([pattern, gguf]) => ['language_model\\.model', 'model\\.language_model'].map((prefix): [RegExp, string] => [
      new RegExp(pattern.source.replace('^model\\.', `^${prefix}\\.`)), gguf,
    ])),
    unnamed: [
      [/^(model\.|language_model\.model\.|model\.language_model\.)embed_tokens$/, `Gemma 3's converter cuts token_embd to the tokenizer's vocabulary, a shape the Hugging Face folder's config.json does not give; give the Gemma 3 GGUF as --base`],
      [/^(model\.)?(vision_tower|multi_modal_projector)\./, `Gemma 3's vision tower and projector go to its mmproj GGUF (convert_hf_to_gguf.py --mmproj), which a llama.cpp LoRA does not address; only the language model's modules convert`],
    ],
  },
  // LlamaModel's subclasses (q and k permuted as llama's, by the layout from the head counts) and
  // TextModel's plain mapping (Olmo2Model for OLMo 2 and 3, SeedOssModel, DreamModel: Qwen2's names).
  NanbeigeForCausalLM: { arch: 'nanbeige', names: [...ATTENTION_MLP, HEAD] },
  SmolLM3ForCausalLM: { arch: 'smollm3', names: [...ATTENTION_MLP, HEAD] },
  Olmo2ForCausalLM: { arch: 'olmo2', names: [...ATTENTION_MLP, HEAD] },
  Olmo3ForCausalLM: { arch: 'olmo2', names: [...ATTENTION_MLP, HEAD] },
  SeedOssForCausalLM: { arch: 'seed_oss', names: [...ATTENTION_MLP, HEAD] },
  DreamModel: { arch: 'dream', names: [...ATTENTION_MLP, HEAD] },
  // PanguEmbeddedModel: TextModel's plain mapping (the head left out when tied, as the folder then has none).
  PanguEmbeddedForCausalLM: { arch: 'pangu-embedded', names: [...ATTENTION_MLP, HEAD] },
  // RND1Model, a Qwen2MoeModel: Qwen3-MoE's names, router mlp.gate, experts stacked (num_experts).
  RND1: { arch: 'rnd1', names: [...ATTENTION_MLP, HEAD, rename(`${L}\\.mlp\\.gate`, 'blk.$1.ffn_gate_inp')], experts: QWEN_EXPERTS, fusedExperts: true },
  // LLaDAModel: the checkpoint's own names (tensor_mapping.py), its counts under OLMo's keys
  // (n_layers, n_heads, n_kv_heads); q and k permuted by the layout as LLaDAModel.permute does.
  LLaDAModelLM: {
    arch: 'llada',
    names: [
      rename('model\\.transformer\\.wte', 'token_embd'), rename('model\\.transformer\\.ff_out', 'output'),
      ...([
        ['q_proj', 'attn_q'], ['k_proj', 'attn_k'], ['v_proj', 'attn_v'], ['attn_out', 'attn_output'],
        ['ff_proj', 'ffn_gate'], ['up_proj', 'ffn_up'], ['ff_out', 'ffn_down'],
      ] as const).map(([hf, gguf]) => rename(`model\\.transformer\\.blocks\\.(\\d+)\\.${hf}`, `blk.$1.${gguf}`)),
    ],
  },
  // HYV3Model: the checkpoint's router `mlp.router.gate`, shared expert `mlp.shared_mlp` (transformers
  // 5's `mlp.gate`, `mlp.shared_experts`), experts stacked; the MTP layers (`model.layers.N` past
  // num_hidden_layers) kept as the last blocks, their `eh_proj` on nextn.eh_proj.
  HYV3ForCausalLM: {
    arch: 'hy_v3',
    names: [
      ...ATTENTION_MLP, HEAD, rename(`${L}\\.mlp\\.(?:router\\.)?gate`, 'blk.$1.ffn_gate_inp'),
      ...sharedExpert('(?:shared_mlp|shared_experts)'), rename(`${L}\\.eh_proj`, 'blk.$1.nextn.eh_proj'),
    ],
    experts: QWEN_EXPERTS, fusedExperts: true,
  },
  // LagunaModel: the attention output gate g_proj, router mlp.gate, shared expert (transformers: shared_experts).
  LagunaForCausalLM: {
    arch: 'laguna',
    names: [
      ...ATTENTION_MLP, HEAD, rename(`${L}\\.self_attn\\.g_proj`, 'blk.$1.attn_gate'), rename(`${L}\\.mlp\\.gate`, 'blk.$1.ffn_gate_inp'),
      ...sharedExpert('shared_experts?'),
    ],
    experts: QWEN_EXPERTS, fusedExperts: true,
  },
  // Phi3MiniModel: the fused qkv_proj and gate_up_proj are written whole (attn_qkv; ffn_up, which llama.cpp splits).
  Phi3ForCausalLM: {
    arch: 'phi3',
    names: [
      rename('model\\.embed_tokens', 'token_embd'), HEAD,
      rename(`${L}\\.self_attn\\.qkv_proj`, 'blk.$1.attn_qkv'), rename(`${L}\\.self_attn\\.o_proj`, 'blk.$1.attn_output'),
      rename(`${L}\\.mlp\\.gate_up_proj`, 'blk.$1.ffn_up'), rename(`${L}\\.mlp\\.down_proj`, 'blk.$1.ffn_down'),
    ],
  },
};

/** `base` (a safetensors model with `config`) under its GGUF names; `baseName` names it in refusals. */
export function ggufNamesOfHfModel(base: BaseModel, config: ModelConfig | undefined, baseName: string): GgufNamedBase {
  const raw = config?.raw ?? {};
  const classes = Array.isArray(raw.architectures) ? raw.architectures.filter((c): c is string => typeof c === 'string') : [];
  const cls = classes.map((c) => HF_CLASSES[c]).find((a) => a !== undefined);
  if (cls === undefined) {
    const what = config ? `a ${classes.join(', ') || 'model without architectures'}` : 'a model without config.json';
    throw new MergeError('BAD_ARGUMENT', `--base ${baseName}: ${what}, whose GGUF tensor names loramerge derives for ${Object.keys(HF_CLASSES).join(', ')} only; give the GGUF model the LoRA is for`);
  }
  const { arch } = cls;
  const text = cls.textConfig && typeof raw.text_config === 'object' && raw.text_config !== null ? raw.text_config as Record<string, unknown> : {};
  const count = (key: string) => {
    const v = key in text ? text[key] : raw[key];
    return Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : undefined;
  };
  // In the converter's find_hparam order (LLaDA's config.json has OLMo's n_layers, n_heads, n_kv_heads).
  const heads = count('num_attention_heads') ?? count('n_heads');
  const metadata = new Map<string, unknown>([
    ['general.architecture', arch],
    [`${arch}.block_count`, count('n_layers') ?? count('num_hidden_layers')],
    [`${arch}.attention.head_count`, heads],
    [`${arch}.attention.head_count_kv`, count('num_key_value_heads') ?? count('n_kv_heads') ?? heads],
  ]);
  const tensors = new Map<string, { shape: readonly number[] }>();
  // Stacked expert tensors: each expert's (out, in) by index, stacked once all are read.
  const stacks = new Map<string, { hf: string; shapes: Map<number, readonly number[]> }>();
  for (const [name, t] of base.tensors) {
    for (const [pattern, gguf] of cls.names) {
      if (pattern.test(name)) tensors.set(name.replace(pattern, gguf), { shape: t.shape });
    }
    for (const [pattern, gguf] of cls.experts?.parts ?? []) {
      const m = pattern.exec(name);
      if (!m) continue;
      const key = gguf.replace('$1', m[1]);
      const stack = stacks.get(key) ?? { hf: name.replace(`experts.${m[2]}.`, 'experts.N.'), shapes: new Map() };
      stack.shapes.set(Number(m[2]), t.shape);
      stacks.set(key, stack);
    }
    if (cls.fusedExperts) fusedExperts(name, t.shape, tensors);
  }
  if (cls.experts) {
    const experts = count(cls.experts.countKey);
    metadata.set(`${arch}.expert_count`, experts);
    for (const [key, { hf, shapes }] of stacks) {
      const [first] = shapes.values();
      const whole = experts !== undefined && shapes.size === experts && [...shapes.keys()].every((e) => e < experts)
        && [...shapes.values()].every((s) => s.length === 2 && s[0] === first[0] && s[1] === first[1]);
      if (!whole) {
        const want = experts === undefined ? `config.json gives no ${cls.experts.countKey}` : `config.json's ${cls.experts.countKey} is ${experts}`;
        throw new MergeError('BAD_ARGUMENT', `--base ${baseName}: ${shapes.size} tensors ${hf} (experts numbered ${Math.min(...shapes.keys())} to ${Math.max(...shapes.keys())}), but ${want}: convert_hf_to_gguf stacks experts 0 to E−1, of one shape, into ${key}; give the GGUF model the LoRA is for`);
      }
      tensors.set(key, { shape: [experts * first[0], first[1]] });
    }
    // transformers 5's fused experts say their count by their shape.
    if (experts === undefined) {
      const fused = [...base.tensors].find(([n, t]) => /\.mlp\.experts\.down_proj$/.test(n) && t.shape.length === 3);
      if (fused) metadata.set(`${arch}.expert_count`, fused[1].shape[0]);
    }
  }
  const unnamed = cls.unnamed ?? [];
  return { tensors, metadata: (key) => metadata.get(key), unnamed: (path) => unnamed.find(([pattern]) => pattern.test(path))?.[1] };
}

/**
 * transformers 5's fused Qwen MoE experts as the converter splits them: `gate_up_proj` (E, 2·ffn,
 * hidden) in halves into ffn_gate_exps and ffn_up_exps, `down_proj` (E, hidden, ffn) into ffn_down_exps.
 */
function fusedExperts(name: string, shape: readonly number[], tensors: Map<string, { shape: readonly number[] }>): void {
  const m = new RegExp(`^${L}\\.mlp\\.experts\\.(gate_up_proj|down_proj)$`).exec(name);
  if (!m || shape.length !== 3) return;
  const [e, out, inF] = shape;
  if (m[2] === 'down_proj') tensors.set(`blk.${m[1]}.ffn_down_exps.weight`, { shape: [e * out, inF] });
  else if (out % 2 === 0) {
    tensors.set(`blk.${m[1]}.ffn_gate_exps.weight`, { shape: [e * (out / 2), inF] });
    tensors.set(`blk.${m[1]}.ffn_up_exps.weight`, { shape: [e * (out / 2), inF] });
  }
}
