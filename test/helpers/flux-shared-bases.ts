/**
 * The transformers that hold FLUX.1's diffusers names at FLUX.1's width (3072 = 24 heads of 128),
 * each as a few of its tensors in diffusers' names with their real shapes, over zeros and served
 * sparse (nothing is held: a 6·3072 × 3072 modulation costs nothing). Shapes as functions of the
 * inner width, from diffusers' model code:
 * - HunyuanVideoTransformer3DModel: AdaLayerNormZero `norm1.linear` (dim → 6·dim, bias), the text
 *   token refiner (`context_embedder.token_refiner.refiner_blocks.N.norm1`, LayerNorm with affine),
 *   `norm_out.linear` (AdaLayerNormContinuous, dim → 2·dim), proj_out to 1·2·2·16 = 64.
 * - Flux2Transformer2DModel (FLUX.2 [klein] 4B: 24 heads, 5 double and 20 single blocks, in/out 128,
 *   patch 1, joint_attention_dim 7680, no biases): Flux2Modulation(dim, 2) `double_stream_modulation_img`
 *   / `_txt` `.linear` dim → 6·dim, Flux2Modulation(dim, 1) `single_stream_modulation.linear` dim → 3·dim,
 *   no per-block modulation (norm1 is a LayerNorm without parameters), `norm_out.linear` dim → 2·dim,
 *   proj_out to 128.
 * - QwenImageTransformer2DModel (24 heads, 60 blocks, joint_attention_dim 3584): per block
 *   `img_mod` / `txt_mod` = Sequential(SiLU, Linear(dim, 6·dim, bias)), so `img_mod.1`; `norm_out.linear`
 *   dim → 2·dim; proj_out to 2·2·16 = 64.
 * - FluxTransformer2DModel (FLUX.1 [dev]): `norm1.linear` / `norm1_context.linear` dim → 6·dim,
 *   single blocks' `norm.linear` dim → 3·dim, `norm_out.linear` dim → 2·dim, proj_out to 64.
 */
import type { InputFileSet } from '../../src/io/types.js';
import { sparseSource } from './fixtures.js';
import { headerOf, type Declared } from './deepseek-v3-headers.js';

export const H = 3072;

const w = (name: string, shape: number[], dtype: Declared['dtype']): Declared => ({ name, dtype, shape });

/** The first double block's q and k (with biases where the model has them). */
function attention(bias: boolean, dtype: Declared['dtype']): Declared[] {
  const q = 'transformer_blocks.0.attn.to_q', k = 'transformer_blocks.0.attn.to_k';
  return [w(`${q}.weight`, [H, H], dtype), ...(bias ? [w(`${q}.bias`, [H], dtype)] : []), w(`${k}.weight`, [H, H], dtype), ...(bias ? [w(`${k}.bias`, [H], dtype)] : [])];
}

/** The models sharing FLUX.1's names, by the name flux1NamesSharedBy gives them: their tensors and proj_out's width. */
export function sharedNameBases(dtype: Declared['dtype'] = 'BF16'): Record<'HunyuanVideo' | 'FLUX.2' | 'Qwen-Image', { tensors: Declared[]; projOut: number }> {
  return {
    HunyuanVideo: {
      projOut: 64,
      tensors: [
        ...attention(true, dtype),
        w('transformer_blocks.0.norm1.linear.weight', [6 * H, H], dtype), w('transformer_blocks.0.norm1.linear.bias', [6 * H], dtype),
        w('context_embedder.token_refiner.refiner_blocks.0.norm1.weight', [H], dtype), w('context_embedder.token_refiner.refiner_blocks.0.norm1.bias', [H], dtype),
        w('norm_out.linear.weight', [2 * H, H], dtype), w('norm_out.linear.bias', [2 * H], dtype),
        w('proj_out.weight', [64, H], dtype), w('proj_out.bias', [64], dtype),
      ],
    },
    'FLUX.2': {
      projOut: 128,
      tensors: [
        ...attention(false, dtype),
        w('double_stream_modulation_img.linear.weight', [6 * H, H], dtype), w('double_stream_modulation_txt.linear.weight', [6 * H, H], dtype),
        w('single_stream_modulation.linear.weight', [3 * H, H], dtype),
        w('norm_out.linear.weight', [2 * H, H], dtype),
        w('proj_out.weight', [128, H], dtype),
      ],
    },
    'Qwen-Image': {
      projOut: 64,
      tensors: [
        ...attention(true, dtype),
        w('transformer_blocks.0.img_mod.1.weight', [6 * H, H], dtype), w('transformer_blocks.0.img_mod.1.bias', [6 * H], dtype),
        w('transformer_blocks.0.txt_mod.1.weight', [6 * H, H], dtype), w('transformer_blocks.0.txt_mod.1.bias', [6 * H], dtype),
        w('norm_out.linear.weight', [2 * H, H], dtype), w('norm_out.linear.bias', [2 * H], dtype),
        w('proj_out.weight', [64, H], dtype), w('proj_out.bias', [64], dtype),
      ],
    },
  };
}

/** FLUX.1 [dev]'s transformer, as many of its tensors as the tests touch. */
export function flux1Base(dtype: Declared['dtype'] = 'BF16'): Declared[] {
  return [
    ...attention(true, dtype),
    w('transformer_blocks.0.norm1.linear.weight', [6 * H, H], dtype), w('transformer_blocks.0.norm1.linear.bias', [6 * H], dtype),
    w('single_transformer_blocks.0.norm.linear.weight', [3 * H, H], dtype),
    w('norm_out.linear.weight', [2 * H, H], dtype), w('norm_out.linear.bias', [2 * H], dtype),
    w('proj_out.weight', [64, H], dtype), w('proj_out.bias', [64], dtype),
  ];
}

/** A base file `transformer.safetensors` of `tensors`, all zeros, served without being held. */
export function sparseBase(name: string, tensors: readonly Declared[]): InputFileSet {
  const { header, size } = headerOf(tensors);
  return {
    name,
    list: () => ['transformer.safetensors'],
    open: async () => sparseSource(`${name}/transformer.safetensors`, size, [[0, header]]),
    readText: async (path) => { throw new Error(`${path} is not text`); },
  };
}
