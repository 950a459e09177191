/**
 * A T5 encoder as the text encoder tests build it: google/t5-v1_1-xxl's `config.json` as
 * diffusers pipelines' T5 folders save it, and a one-block encoder in transformers' names with
 * d_model cut to 10 (d_ff 16, 2 heads).
 */
import { tensor, type Rand } from './diffusion-fixtures.js';
import type { FixtureTensor } from './fixtures.js';

/** The first block's self-attention, in transformers' T5 names. */
export const T5_SELF_ATTENTION = 'encoder.block.0.layer.0.SelfAttention';
/** The first block's feed-forward, in transformers' T5 names. */
export const T5_FEED_FORWARD = 'encoder.block.0.layer.1.DenseReluDense';

/** google/t5-v1_1-xxl's encoder config under `name`, saved by transformers `version`. */
export function t5XxlConfig(name = 'google/t5-v1_1-xxl', version = '4.43.3'): Record<string, unknown> {
  return {
    _name_or_path: name, architectures: ['T5EncoderModel'], classifier_dropout: 0.0, d_ff: 10240, d_kv: 64, d_model: 4096,
    decoder_start_token_id: 0, dense_act_fn: 'gelu_new', dropout_rate: 0.1, eos_token_id: 1, feed_forward_proj: 'gated-gelu', initializer_factor: 1.0,
    is_encoder_decoder: true, is_gated_act: true, layer_norm_epsilon: 1e-6, model_type: 't5', num_decoder_layers: 24, num_heads: 64, num_layers: 24,
    output_past: true, pad_token_id: 0, relative_attention_max_distance: 128, relative_attention_num_buckets: 32, tie_word_embeddings: false,
    torch_dtype: 'bfloat16', transformers_version: version, use_cache: true, vocab_size: 32128,
  };
}

/**
 * A T5 encoder's tensors in transformers' names (d_model 10, d_ff 16, 2 heads), under `prefix`:
 * T5 1.1's gated feed-forward (`wi_0`, `wi_1`), or T5 1.0's (`wi`: t5-11b, Cosmos').
 */
export function t5EncoderTensors(rand: Rand, prefix: string, gated = true): FixtureTensor[] {
  const sa = `${prefix}${T5_SELF_ATTENTION}`, ff = `${prefix}${T5_FEED_FORWARD}`;
  return [
    tensor(rand, `${prefix}shared.weight`, [24, 10], 'BF16'),
    ...['q', 'k', 'v', 'o'].map((p) => tensor(rand, `${sa}.${p}.weight`, [10, 10], 'BF16')),
    tensor(rand, `${sa}.relative_attention_bias.weight`, [32, 2], 'BF16'),
    tensor(rand, `${prefix}encoder.block.0.layer.0.layer_norm.weight`, [10], 'BF16'),
    ...(gated ? ['wi_0', 'wi_1'] : ['wi']).map((w) => tensor(rand, `${ff}.${w}.weight`, [16, 10], 'BF16')),
    tensor(rand, `${ff}.wo.weight`, [10, 16], 'BF16'),
    tensor(rand, `${prefix}encoder.block.0.layer.1.layer_norm.weight`, [10], 'BF16'), tensor(rand, `${prefix}encoder.final_layer_norm.weight`, [10], 'BF16'),
  ];
}
