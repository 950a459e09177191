/**
 * Layout that only explains misses: a fused expert parameter named by PEFT `target_parameters`
 * (`model.layers.0.mlp.experts.gate_up_proj`, as PEFT's ParamWrapper saves it) on a base that
 * holds no tensor of that name, because the checkpoint stores the parameter in another form:
 * - MXFP4, as openai/gpt-oss ships its experts: `<param>_blocks` (U8 nibbles) and `<param>_scales`
 *   (E8M0 exponents), which transformers' Mxfp4 quantizer unpacks when it loads the model;
 * - one tensor per expert (`experts.0.gate_proj.weight`, Mixtral's `experts.0.w1.weight`), which
 *   transformers 5 stacks (and concatenates, for `gate_up_proj`) into the fused parameter when it
 *   loads Qwen-MoE, Mixtral and other MoE checkpoints, so adapters trained there name it whole.
 * Neither is merged: the reason names the tensors the base holds instead.
 */
import type { Layout, LayoutResolution } from './layout.js';

const FUSED = /^(.+\.experts)\.([A-Za-z_]+)$/;

/** transformers' fused expert parameters and the per-expert projections they are made from. */
const PER_EXPERT: Readonly<Record<string, readonly string[]>> = {
  gate_up_proj: ['gate_proj', 'up_proj', 'w1', 'w3'],
  down_proj: ['down_proj', 'w2'],
};

function miss(why: string): LayoutResolution {
  return { found: false, ambiguous: false, candidates: [], why };
}

export const expertParameterMisses: Layout = {
  name: 'expert-parameter-misses',
  resolve(address, base) {
    const m = address.tensor && !address.flat ? FUSED.exec(address.path) : null;
    if (!m || base.index.resolveDotted(address.path).found) return undefined;
    const [, experts, param] = m;
    const blocks = base.index.resolveDotted(`${address.path}_blocks`);
    const scales = base.index.resolveDotted(`${address.path}_scales`);
    if (blocks.found && scales.found) {
      return miss(`the base stores this parameter as MXFP4 (${blocks.key} and ${scales.key}), which transformers unpacks when it loads the model; merging into MXFP4 experts is not supported: merge into the model with bf16 experts (gpt-oss dequantized)`);
    }
    // Mixtral's checkpoints keep the experts under `block_sparse_moe`, which transformers 5 renames `mlp`.
    const stems = [experts, experts.replace(/(^|\.)mlp\.experts$/, '$1block_sparse_moe.experts')];
    for (const proj of stems.flatMap((stem) => (PER_EXPERT[param] ?? []).map((p) => `${stem}.0.${p}.weight`))) {
      const first = base.index.resolveDotted(proj);
      if (!first.found) continue;
      return miss(`the base stores this parameter one tensor per expert (${first.key}, …), which transformers 5 fuses into ${param} when it loads the checkpoint; a LoRA on the fused parameter is not split into them here: merge into a checkpoint that stores ${param} fused`);
    }
    return undefined;
  },
};
