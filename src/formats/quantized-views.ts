/**
 * Quantized safetensors bases the merge reads through a view of real values, written only
 * dequantized (the `dequantize-only` rule): each format is one reader here, tried in turn; the
 * first that recognises the base's config gives its view.
 */
import type { SafetensorsBaseModel } from './base-model.js';
import { awqWeights } from './awq.js';
import { compressedTensorsIntWeights } from './compressed-tensors-int.js';
import { gptqWeights } from './gptq.js';
import { intWeightView } from './int-weights.js';
import type { AdapterModule } from './adapter.js';
import { mlxAffineWeights } from './mlx-affine.js';
import { mxfp4ExpertsView } from './mxfp4-experts.js';
import type { ModelConfig } from './model-config.js';
import type { ModelOptQuantization } from './modelopt-config.js';
import { nvfp4BaseModel } from './modelopt-nvfp4.js';
import { nunchakuLayers, nunchakuRefusal } from './nunchaku-svdquant.js';
import type { ScaledFp8Base } from './scaled-fp8.js';

export interface QuantizedView {
  /** The base with every quantized weight a float tensor of its real values (or of values one scale per tensor away from them). */
  base: SafetensorsBaseModel;
  scaled: ScaledFp8Base;
}

/** `modules`: the adapters' modules, for a format decoded only where an adapter changes it (MXFP4 experts). */
type Reader = (
  base: SafetensorsBaseModel, config: ModelConfig | undefined, modelopt: ModelOptQuantization | undefined, modules: readonly AdapterModule[],
) => Promise<QuantizedView | undefined>;

const intReader = (find: (base: SafetensorsBaseModel, config: ModelConfig | undefined) => Promise<Parameters<typeof intWeightView>[1] | undefined>): Reader =>
  async (base, config) => {
    const found = await find(base, config);
    return found ? intWeightView(base, found) : undefined;
  };

const READERS: readonly Reader[] = [
  // Nunchaku's SVDQuant / W4A16 files take LoRAs only at run time: refused as a whole (nunchaku-svdquant.ts).
  async (base) => {
    const layers = nunchakuLayers(base.tensors.keys());
    if (layers) throw nunchakuRefusal(base.name, layers);
    return undefined;
  },
  // ModelOpt NVFP4: code × block scale, with weight_scale_2 the one scale per tensor.
  async (base, _config, modelopt) => (modelopt?.algo === 'NVFP4' || modelopt?.algo === 'W4A16_NVFP4' ? nvfp4BaseModel(base, modelopt) : undefined),
  intReader(compressedTensorsIntWeights),
  intReader(gptqWeights),
  intReader(awqWeights),
  intReader(mlxAffineWeights),
  // gpt-oss's MXFP4 experts: code × 2^(scale − 127), decoded where an adapter changes them.
  async (base, config, _modelopt, modules) => mxfp4ExpertsView(base, config, modules),
];

/** The view of `base` by the first reader that takes it, or undefined. Malformed weights throw, naming the tensor. */
export async function quantizedBaseView(
  base: SafetensorsBaseModel, config: ModelConfig | undefined, modelopt: ModelOptQuantization | undefined, modules: readonly AdapterModule[] = [],
): Promise<QuantizedView | undefined> {
  for (const read of READERS) {
    const view = await read(base, config, modelopt, modules);
    if (view) return view;
  }
  return undefined;
}
