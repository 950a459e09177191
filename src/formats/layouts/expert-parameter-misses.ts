/**
 * Layout that only explains misses: a fused expert parameter named by PEFT `target_parameters`
 * (`model.layers.0.mlp.experts.gate_up_proj`, as PEFT's ParamWrapper saves it) on a base that
 * holds no tensor of that name because the checkpoint stores it as MXFP4, as openai/gpt-oss ships
 * its experts: `<param>_blocks` (U8 nibbles) and `<param>_scales` (E8M0 exponents), which
 * transformers' Mxfp4 quantizer unpacks when it loads the model. Not merged: the reason names the
 * tensors the base holds instead. (One tensor per expert is placed by per-expert-tensors.ts.)
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
      return missBecause(`the base stores this parameter as MXFP4 (${blocks.key} and ${scales.key}), which transformers unpacks when it loads the model; merging into MXFP4 experts is not supported: merge into the model with bf16 experts (gpt-oss dequantized)`);
    }
    return undefined;
  },
};
