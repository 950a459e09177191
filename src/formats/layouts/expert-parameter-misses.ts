/**
 * Layout that only explains misses: a fused expert parameter named by PEFT `target_parameters`
 * (`model.layers.0.mlp.experts.gate_up_proj`, as PEFT's ParamWrapper saves it) on a base that
 * holds no tensor of that name because the checkpoint stores it as MXFP4, as openai/gpt-oss ships
 * its experts: `<param>_blocks` (U8 nibbles) and `<param>_scales` (E8M0 exponents), which
 * transformers' Mxfp4 quantizer unpacks when it loads the model. With config.json's
 * `quantization_config` naming MXFP4 the base is seen with those parameters decoded
 * (formats/mxfp4-experts.ts) and this layout never sees the miss; without it (a folder whose
 * config.json was left out or changed) transformers would not unpack them either, so the reason
 * names the tensors the base holds instead. (One tensor per expert is placed by per-expert-tensors.ts.)
 */
import { missBecause, type Layout } from './layout.js';

const FUSED = /^(.+\.experts)\.([A-Za-z_]+)$/;


export const expertParameterMisses: Layout = {
  name: 'expert-parameter-misses',
  resolve(address, base) {
    const m = address.tensor && !address.flat ? FUSED.exec(address.path) : null;
    if (!m || base.index.resolveDotted(address.path).found) return undefined;
    const blocks = base.index.resolveDotted(`${address.path}_blocks`);
    const scales = base.index.resolveDotted(`${address.path}_scales`);
    if (blocks.found && scales.found) {
      return missBecause(`the base stores this parameter as MXFP4 (${blocks.key} and ${scales.key}), which transformers unpacks only for a config.json whose quantization_config says quant_method "mxfp4", and this base's does not; merge into the model folder as openai ships it (with its config.json), or into one with bf16 experts`);
    }
    return undefined;
  },
};
