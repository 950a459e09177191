/**
 * Layout: one expert's projection by its per-expert name, as PEFT names a LoRA trained on
 * transformers 4's MoE models (`model.layers.0.mlp.experts.5.gate_proj`, `up_proj`, `down_proj`;
 * Mixtral's and PhiMoE's `block_sparse_moe.experts.5.w1` / `w3` / `w2`), on a checkpoint that holds
 * the experts fused as transformers 5 builds them (a checkpoint saved in that form, or transformers'
 * FP8 experts): `mlp.experts.gate_up_proj` (E, 2·inter, hidden) and `mlp.experts.down_proj`
 * (E, hidden, inter), no `.weight`. transformers' weight converters (conversion_mapping.py, for
 * `mixtral`, `qwen2_moe` and the model types mapped to them: Qwen3-MoE, OLMoE, DeepSeek-V2/V3, GLM-4
 * MoE, …) stack the per-expert weights (MergeModulelist(dim=0)) and, for gate_up_proj, put each
 * expert's gate rows before its up rows (Concatenate(dim=1); the experts' forward takes
 * `linear(x, gate_up_proj[e]).chunk(2)` as gate, up); Mixtral's `block_sparse_moe` becomes `mlp`.
 * So expert K's ΔW lands on rows of the tensor seen as its E·rows rows (Placement.stacked):
 * gate (`w1`) on [K·2·inter, K·2·inter + inter), up (`w3`) on the next `inter`, down (`w2`) on
 * [K·hidden, (K+1)·hidden). That is the v4 merge converted as transformers converts the model, and
 * what PEFT's own conversion of such an adapter for transformers 5 computes
 * (peft/utils/transformers_weight_conversion.py: experts stacked, gate and up block-diagonal).
 *
 * transformers stores some models' experts (E, in, out) instead (gpt-oss, gate and up in alternate
 * columns; Llama 4 and Qwen3-VL-MoE, halves of the columns), models whose transformers 4 classes had
 * no per-expert modules either: a per-expert name on such a base is refused, naming the tensor.
 * Mixtral's router `block_sparse_moe.gate` is `mlp.gate` on such a base (PhiMoE's `mlp.router`), as
 * transformers renames it. The fused tensors are looked up through the model's checkpoint key map
 * where it has one (checkpoint-key-maps.ts): a Qwen3-Omni thinker's `model.layers.…` lands on
 * `thinker.model.layers.…`, not between it and the talker's tensors of the same tail.
 */
import { missBecause, type BaseView, type Layout, type LayoutResolution } from './layout.js';
import { resolveMappedPath as lookup } from './vlm-checkpoint.js';

const EXPERT = /^(.+)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj|w1|w2|w3)$/;
const ROUTER = /^(.+)\.block_sparse_moe\.gate$/;

/** The fused parameter each projection is part of, and which half of an expert's rows (gate_up_proj) it is. */
const FUSED: Readonly<Record<string, { param: string; half?: 0 | 1 }>> = {
  gate_proj: { param: 'gate_up_proj', half: 0 }, w1: { param: 'gate_up_proj', half: 0 },
  up_proj: { param: 'gate_up_proj', half: 1 }, w3: { param: 'gate_up_proj', half: 1 },
  down_proj: { param: 'down_proj' }, w2: { param: 'down_proj' },
};

/** transformers 5 classes whose experts are stored (E, in, out) (`is_transposed`, or transposed by their own forward). */
const IN_OUT = /^(GptOss|Llama4|Qwen3VLMoe)/;

/** `block_sparse_moe` as transformers 5 renames it (Mixtral, MiniMax, PhiMoE: `mlp`). */
const stems = (prefix: string): string[] => [...new Set([prefix, prefix.replace(/(^|\.)block_sparse_moe$/, '$1mlp')])];

export const fusedExpertRows: Layout = {
  name: 'fused-expert-rows',
  resolve(address, base): LayoutResolution | undefined {
    if (address.flat || address.tensor) return undefined;
    const router = ROUTER.exec(address.path);
    if (router) return routerOf(router[1], base);
    const m = EXPERT.exec(address.path);
    if (!m) return undefined;
    const [, prefix, index, proj] = m;
    const { param, half } = FUSED[proj];
    let found: ReturnType<BaseView['index']['resolveDotted']> | undefined;
    for (const stem of stems(prefix)) {
      found = lookup(base, `${stem}.experts.${param}`);
      if (found.found || found.ambiguous) break;
    }
    if (!found?.found) return found?.ambiguous ? found : undefined;
    const key = found.key;
    const shape = base.storedShape?.(key) ?? base.shape(key) ?? [];
    const shown = `[${shape.join(', ')}]`;
    const refuse = (why: string) => missBecause(`names expert ${index}'s ${proj} of a model whose experts this base stores fused in ${key} ${shown}; ${why}`);
    if (shape.length !== 3 || shape.some((d) => !(Number.isSafeInteger(d) && d > 0))) return refuse('that tensor is not (experts, out, in), so where the expert\'s weight lies in it is not known');
    const inOut = base.architectures.find((a) => IN_OUT.test(a));
    if (inOut) {
      return refuse(`${inOut} stores its experts (experts, in, out)${/^GptOss/.test(inOut) ? ' with gate and up in alternate columns' : ''}, and no trainer of that model names its experts' projections one by one: merge into the checkpoint the adapter was trained on`);
    }
    const [experts, rows] = shape;
    const expert = Number(index);
    // torch's ModuleList names its layers str(K): `.01` is no expert's name.
    if (/^0\d/.test(index) || expert >= experts) return refuse(`it holds ${experts} experts, none numbered ${index}`);
    if (half !== undefined && rows % 2 !== 0) return refuse(`its ${rows} rows per expert do not split into gate's half and up's`);
    const per = half === undefined ? rows : rows / 2;
    return { found: true, targets: [{ baseKey: key, stacked: true, rows: [{ src: 0, dst: expert * rows + (half ?? 0) * per, count: per }] }] };
  },
};

/** Mixtral's router on a base converted by transformers 5, whose key is `mlp.gate.weight` (PhiMoE's `mlp.router.weight`). */
function routerOf(prefix: string, base: BaseView): LayoutResolution | undefined {
  // Only where that layer's experts are fused as transformers 5 holds them: elsewhere not this layout's.
  if (!lookup(base, `${prefix}.mlp.experts.gate_up_proj`).found) return undefined;
  for (const name of ['gate', 'router']) {
    const found = lookup(base, `${prefix}.mlp.${name}.weight`);
    if (found.found || found.ambiguous) return found.found ? { found: true, targets: [{ baseKey: found.key }] } : found;
  }
  return undefined;
}
