/**
 * The tensors of a Llama-shaped model (as in Hugging Face's LlamaForCausalLM checkpoints) and the
 * config.json that describes them. Shapes only; values come from generate-sample.ts.
 */
import { SAMPLE_TARGET_MODULES, type SampleOptions } from './sample-options.js';

export type TensorRole = 'embedding' | 'norm' | 'linear';

export interface SampleTensorSpec {
  name: string;
  shape: number[];
  role: TensorRole;
}

/** A targeted projection: its module path (no `.weight`) and (out, in). */
export interface SampleProjection {
  module: string;
  layer: number;
  out: number;
  in: number;
}

function headDim(o: SampleOptions): number {
  if (o.hidden % o.heads !== 0) throw new RangeError(`hidden ${o.hidden} is not a multiple of heads ${o.heads}`);
  return o.hidden / o.heads;
}

/** (out, in) of each projection in one decoder layer. */
function projectionShapes(o: SampleOptions): Record<(typeof SAMPLE_TARGET_MODULES)[number], [number, number]> {
  const kv = o.kvHeads * headDim(o);
  return {
    q_proj: [o.hidden, o.hidden],
    k_proj: [kv, o.hidden],
    v_proj: [kv, o.hidden],
    o_proj: [o.hidden, o.hidden],
    gate_proj: [o.intermediate, o.hidden],
    up_proj: [o.intermediate, o.hidden],
    down_proj: [o.hidden, o.intermediate],
  };
}

const MLP_MODULES: ReadonlySet<string> = new Set(['gate_proj', 'up_proj', 'down_proj']);

function projectionPath(layer: number, name: string): string {
  const block = MLP_MODULES.has(name) ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${name}`;
}

/** Every projection the adapter targets, layer by layer. */
export function sampleProjections(o: SampleOptions): SampleProjection[] {
  const shapes = projectionShapes(o);
  const out: SampleProjection[] = [];
  for (let layer = 0; layer < o.layers; layer++) {
    for (const name of SAMPLE_TARGET_MODULES) {
      const [rows, cols] = shapes[name];
      out.push({ module: projectionPath(layer, name), layer, out: rows, in: cols });
    }
  }
  return out;
}

/** All base tensors in checkpoint order. */
export function sampleBaseTensors(o: SampleOptions): SampleTensorSpec[] {
  const specs: SampleTensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [o.vocab, o.hidden], role: 'embedding' }];
  const projections = sampleProjections(o);
  for (let layer = 0; layer < o.layers; layer++) {
    specs.push({ name: `model.layers.${layer}.input_layernorm.weight`, shape: [o.hidden], role: 'norm' });
    for (const p of projections.filter((q) => q.layer === layer)) {
      specs.push({ name: `${p.module}.weight`, shape: [p.out, p.in], role: 'linear' });
    }
    specs.push({ name: `model.layers.${layer}.post_attention_layernorm.weight`, shape: [o.hidden], role: 'norm' });
  }
  specs.push({ name: 'model.norm.weight', shape: [o.hidden], role: 'norm' });
  specs.push({ name: 'lm_head.weight', shape: [o.vocab, o.hidden], role: 'linear' });
  return specs;
}

/** config.json as transformers writes it for a Llama model of these dimensions. */
export function sampleModelConfig(o: SampleOptions): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: o.hidden,
    intermediate_size: o.intermediate,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    head_dim: headDim(o),
    vocab_size: o.vocab,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    torch_dtype: o.dtype === 'BF16' ? 'bfloat16' : 'float16',
  };
}

/** adapter_config.json as PEFT writes it for a LoRA on all seven projections. */
export function sampleAdapterConfig(o: SampleOptions): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: 'loramerge-sample',
    r: o.rank,
    lora_alpha: o.alpha,
    lora_dropout: 0,
    target_modules: [...SAMPLE_TARGET_MODULES],
    bias: 'none',
    use_rslora: false,
    use_dora: false,
    fan_in_fan_out: false,
    init_lora_weights: true,
    rank_pattern: {},
    alpha_pattern: {},
    modules_to_save: null,
  };
}
