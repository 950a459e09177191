/**
 * Layout: one expert's projection by its per-expert name (`model.layers.0.mlp.experts.5.gate_proj`,
 * Mixtral's `block_sparse_moe.experts.5.w1`) on a checkpoint that stacks the experts as mlx-lm's
 * model files do (their sanitize(): `mlp.switch_mlp.gate_proj.weight` (E, out, in) is
 * mx.stack of `mlp.experts.E.gate_proj.weight`, and `w1`, `w2`, `w3` become `gate_proj`,
 * `down_proj`, `up_proj`; Llama 4's SwitchGLU is `feed_forward.experts`, whose sanitize() splits
 * the fused `gate_up_proj` (E, in, 2·inter) into `experts.gate_proj.weight` and
 * `experts.up_proj.weight` (E, inter, in), transposed). Expert K is the slab K of the stacked tensor, which the plan sees as
 * its E·out rows (formats/mlx-affine.ts for quantized ones, formats/mlx-stacked-experts.ts for float): ΔW's rows go to rows
 * [K·out, (K+1)·out). This places mlx-lm's LoRASwitchLinear (whose parser names each expert so,
 * formats/mlx-lm.ts) and a PEFT LoRA on per-expert modules alike. Whether LoRASwitchLinear's
 * factors hold as many experts as the base is asked of every base where the names resolve (./index.ts).
 */
import { missBecause, type BaseView, type Layout, type LayoutResolution } from './layout.js';

const EXPERT = /^(.+)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj|w1|w2|w3)$/;
const STACKED_NAME: Readonly<Record<string, string>> = { w1: 'gate_proj', w2: 'down_proj', w3: 'up_proj' };

/** Expert K of a per-expert name on rows [K·out, (K+1)·out) of the stacked `switch_mlp` tensor. */
export const mlxSwitchExperts: Layout = {
  name: 'mlx-switch-experts',
  resolve(address, base): LayoutResolution | undefined {
    const m = address.flat || address.tensor ? null : EXPERT.exec(address.path);
    if (!m) return undefined;
    const [, prefix, index, proj] = m;
    const name = STACKED_NAME[proj] ?? proj;
    // SwitchGLU is `switch_mlp` in most mlx-lm model files, `experts` in a few (Llama 4's `feed_forward.experts.gate_proj.weight`).
    let found = base.index.resolveDotted(`${prefix}.switch_mlp.${name}.weight`);
    if (!found.found && !found.ambiguous && !(proj in STACKED_NAME)) found = base.index.resolveDotted(`${prefix}.experts.${name}.weight`);
    // No stacked tensor: not this layout's (the per-expert names are the checkpoint's own, or missing).
    if (!found.found) return found.ambiguous ? found : undefined;
    const key = found.key;
    const seen = base.shape(key);
    const stored = base.storedShape?.(key) ?? seen;
    const shown = `[${(stored ?? []).join(', ')}]`;
    if (!seen || !stored || stored.length !== 3 || seen.length !== 2 || seen[0] !== stored[0] * stored[1] || seen[1] !== stored[2]) {
      return missBecause(`expert ${index} is a slab of the stacked tensor ${key} ${shown}, whose experts are placed only where the base is read as rows (mlx's quantized stacked experts, or float ones in f32, f16 or bf16); merge into the checkpoint with one tensor per expert`);
    }
    const [experts, out] = stored;
    const expert = Number(index);
    if (!Number.isSafeInteger(expert) || expert >= experts) return missBecause(`names expert ${index}, but ${key} ${shown} stacks ${experts} experts`);
    return { found: true, targets: [{ baseKey: key, rows: [{ src: 0, dst: expert * out, count: out }] }] };
  },
};

const STACKED = /^(.+)\.switch_mlp\.(gate_proj|up_proj|down_proj)\.weight$/;
const EXPERT_NAME: Readonly<Record<string, string>> = { gate_proj: 'w1', down_proj: 'w2', up_proj: 'w3' };

/**
 * Why a tensor saved whole under mlx-lm's stacked name (a full fine-tune's
 * `switch_mlp.up_proj.weight` (E, out, in)) has no place in a base that holds one tensor per expert:
 * mlx-lm stacks them when it loads the checkpoint, and the saved stack is not split into them here.
 * Undefined where the base has the stacked tensor, or no experts of that name.
 */
export function stackedWeightMiss(base: BaseView, path: string): LayoutResolution & { found: false } | undefined {
  const m = STACKED.exec(path);
  if (!m || base.index.resolveDotted(path).found) return undefined;
  const [, prefix, proj] = m;
  const name = /(^|\.)block_sparse_moe$/.test(prefix) ? EXPERT_NAME[proj] : proj;
  const first = base.index.resolveDotted(`${prefix}.experts.0.${name}.weight`);
  if (!first.found) return undefined;
  return {
    found: false, ambiguous: false, candidates: [],
    why: `the base holds this projection one tensor per expert (${first.key}, …), which mlx-lm stacks into ${path} when it loads the checkpoint; a saved stacked weight is not split into them here: merge into the checkpoint as mlx-lm saves it (mlx_lm.convert, experts stacked)`,
  };
}
