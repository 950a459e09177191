/**
 * A Hugging Face safetensors model seen as the GGUF convert_hf_to_gguf.py would make of it, as far
 * as naming a LoRA needs (convert_lora_to_gguf.py --base reads only config.json): the
 * `general.architecture` its class converts to, the block and head counts llama.cpp's RoPE row order
 * is taken from, and the tensors' GGUF names with their shapes. Only the classes whose converter
 * renames their linear weights one to one (tensor_mapping.py's plain names) are read here; another
 * class is refused, naming it, so that the GGUF model itself is given instead.
 */
import { MergeError } from '../errors.js';
import type { BaseModel } from '../formats/base-model.js';
import type { ModelConfig } from '../formats/model-config.js';
import type { GgufNamedBase } from './gguf-lora-names.js';

/** convert_hf_to_gguf's model_arch for config.json's class (LlamaModel takes Mistral's too). */
const ARCHITECTURE_OF: Readonly<Record<string, string>> = {
  LlamaForCausalLM: 'llama', MistralForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3',
};

/** Hugging Face tensor names → GGUF names (gguf-py tensor_mapping.py) of those classes. */
const NAMES: readonly [RegExp, string][] = [
  [/^model\.embed_tokens\.weight$/, 'token_embd.weight'],
  [/^lm_head\.weight$/, 'output.weight'],
  ...([
    ['self_attn.q_proj', 'attn_q'], ['self_attn.k_proj', 'attn_k'], ['self_attn.v_proj', 'attn_v'], ['self_attn.o_proj', 'attn_output'],
    ['mlp.gate_proj', 'ffn_gate'], ['mlp.up_proj', 'ffn_up'], ['mlp.down_proj', 'ffn_down'],
  ] as const).map(([hf, gguf]): [RegExp, string] => [new RegExp(`^model\\.layers\\.(\\d+)\\.${hf.replace('.', '\\.')}\\.weight$`), `blk.$1.${gguf}.weight`]),
];

/** `base` (a safetensors model with `config`) under its GGUF names; `baseName` names it in refusals. */
export function ggufNamesOfHfModel(base: BaseModel, config: ModelConfig | undefined, baseName: string): GgufNamedBase {
  const raw = config?.raw ?? {};
  const classes = Array.isArray(raw.architectures) ? raw.architectures.filter((c): c is string => typeof c === 'string') : [];
  const arch = classes.map((c) => ARCHITECTURE_OF[c]).find((a) => a !== undefined);
  if (arch === undefined) {
    const what = config ? `a ${classes.join(', ') || 'model without architectures'}` : 'a model without config.json';
    throw new MergeError('BAD_ARGUMENT', `--base ${baseName}: ${what}, whose GGUF tensor names loramerge derives for ${Object.keys(ARCHITECTURE_OF).join(', ')} only; give the GGUF model the LoRA is for`);
  }
  const count = (key: string) => (Number.isSafeInteger(raw[key]) && (raw[key] as number) > 0 ? (raw[key] as number) : undefined);
  const heads = count('num_attention_heads');
  const metadata = new Map<string, unknown>([
    ['general.architecture', arch],
    [`${arch}.block_count`, count('num_hidden_layers')],
    [`${arch}.attention.head_count`, heads],
    [`${arch}.attention.head_count_kv`, count('num_key_value_heads') ?? heads],
  ]);
  const tensors = new Map<string, { shape: readonly number[] }>();
  for (const [name, t] of base.tensors) {
    for (const [pattern, gguf] of NAMES) {
      if (pattern.test(name)) tensors.set(name.replace(pattern, gguf), { shape: t.shape });
    }
  }
  return { tensors, metadata: (key) => metadata.get(key) };
}
