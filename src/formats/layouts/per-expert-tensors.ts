/**
 * Layout: a fused expert parameter named by PEFT `target_parameters`
 * (`model.layers.0.mlp.experts.gate_up_proj`, as PEFT's ParamWrapper saves it) on a checkpoint that
 * stores one tensor per expert (`experts.3.gate_proj.weight`; Mixtral's `block_sparse_moe.experts.3.w1`).
 * transformers 5 builds the fused parameter from those when it loads Qwen-MoE, Mixtral, DeepSeek and
 * other MoE checkpoints (its weight converters: MergeModulelist(dim=0) stacks the experts, then for
 * gate_up_proj Concatenate(dim=1) puts each expert's gate rows before its up rows), and writes them
 * back split when it saves. So the parameter is (E, 2·inter, hidden) for gate_up_proj and (E,
 * hidden, inter) for down_proj, stored (E, out, in); expert e's ΔW lands on its own tensors: gate
 * rows [0, inter) on `experts.e.gate_proj` (`w1`), up rows [inter, 2·inter) on `experts.e.up_proj`
 * (`w3`), and the whole matrix on `experts.e.down_proj` (`w2`). Nemotron-H's experts have no gate:
 * transformers 5 stacks them as `experts.up_proj` (E, inter, hidden) and `down_proj`, each expert's
 * matrix on its own `experts.e.up_proj` (taken for a parameter only on a NemotronH model). The
 * expert tensors are looked up through the model's checkpoint key map where it has one
 * (checkpoint-key-maps.ts: a Qwen3-Omni thinker's, Nemotron-H's `backbone.`).
 *
 * The router, which transformers 5 renames from `block_sparse_moe.gate` (conversion_mapping.py's
 * WeightRenaming): Mixtral's and MiniMax's to `mlp.gate` (a parameter of MixtralTopKRouter; PEFT's
 * conversion of a per-expert adapter for transformers 5 makes its LoRA target_parameters
 * `gate.weight`), PhiMoE's to `mlp.router` (PhimoeTopKRouter, an nn.Linear, so a LoRA module
 * `mlp.router`, or target_parameters `router.weight`). Either lands on the checkpoint's
 * `block_sparse_moe.gate.weight` where that layer's experts are one tensor per expert under
 * `block_sparse_moe.experts`; where config.json names the model, only the name its class has.
 */
import { missBecause, type BaseView, type Layout, type LayoutResolution, type Placement } from './layout.js';
import { resolveMappedPath } from './vlm-checkpoint.js';

const FUSED = /^(.+\.experts)\.(gate_up_proj|down_proj|up_proj)$/;
/** The models whose experts have no gate, so that transformers 5 fuses them as `up_proj` (E, inter, hidden): Nemotron-H's. */
const UNGATED = /^NemotronH/;
/** transformers 5's router: Mixtral's (and MiniMax's) `mlp.gate.weight`, PhiMoE's `mlp.router` (module) or `mlp.router.weight`. */
const ROUTER = /^(.+)\.mlp\.(gate\.weight|router(?:\.weight)?)$/;

/** The model classes whose transformers 5 router has each name. */
const ROUTER_CLASSES: Readonly<Record<'gate' | 'router', RegExp>> = { gate: /^(Mixtral|MiniMax)/i, router: /^PhiMoE/i };

/** The per-expert projections of each fused parameter, by naming: transformers' and Mixtral's. */
const PER_EXPERT: Readonly<Record<string, readonly (readonly string[])[]>> = {
  gate_up_proj: [['gate_proj', 'up_proj'], ['w1', 'w3']],
  down_proj: [['down_proj'], ['w2']],
  up_proj: [['up_proj']],
};

/** A tensor name in the base, through its model's checkpoint key map where it has one. */
const lookup = resolveMappedPath;

export const perExpertTensors: Layout = {
  name: 'per-expert-tensors',
  resolve(address, base) {
    const router = !address.flat ? ROUTER.exec(address.path) : null;
    // Mixtral's router is a parameter (target_parameters only); PhiMoE's a Linear (a module, or its weight as a parameter).
    if (router && (router[2] === 'router' ? !address.tensor : address.tensor)) return routerOf(router[1], router[2].startsWith('gate') ? 'gate' : 'router', address.path, base);
    const m = address.tensor && !address.flat ? FUSED.exec(address.path) : null;
    if (!m || lookup(base, address.path).found) return undefined;
    const [, experts, param] = m;
    if (param === 'up_proj' && !base.architectures.some((a) => UNGATED.test(a))) return undefined;
    // Mixtral's checkpoints keep the experts under `block_sparse_moe`, which transformers 5 renames `mlp`.
    const stems = [experts, experts.replace(/(^|\.)mlp\.experts$/, '$1block_sparse_moe.experts')];
    for (const stem of stems) {
      for (const names of PER_EXPERT[param]) {
        if (lookup(base, `${stem}.0.${names[0]}.weight`).found) return placeExperts(stem, names, param, base);
      }
    }
    return undefined;
  },
};

/** Each expert's tensors, the rows of its matrix each holds; or why they do not make one parameter. */
function placeExperts(stem: string, names: readonly string[], param: string, base: BaseView): LayoutResolution {
  const keys: string[][] = [];
  for (let e = 0; ; e++) {
    const found = names.map((n) => lookup(base, `${stem}.${e}.${n}.weight`));
    if (found.every((f) => !f.found)) break;
    const missing = found.findIndex((f) => !f.found);
    if (missing >= 0) return missBecause(`the base stores this parameter one tensor per expert, but expert ${e} has no ${stem}.${e}.${names[missing]}.weight`);
    keys.push(found.map((f) => (f as { key: string }).key));
  }
  return placeExpertTensors(keys, param, base);
}

/**
 * Expert e's tensors `keys[e]` (one per part, `gate_proj` then `up_proj` for gate_up_proj), placed as
 * that expert's rows of the fused parameter `param` they stack into; or why they do not stack.
 */
export function placeExpertTensors(keys: readonly (readonly string[])[], param: string, base: BaseView): LayoutResolution {
  const shape = base.shape(keys[0][0]);
  if (!shape || shape.length !== 2) return missBecause(`${keys[0][0]} is not a matrix, so it is no expert's part of ${param}`);
  const [out, inDim] = shape;
  const other = keys.flat().find((k) => {
    const s = base.shape(k);
    return !s || s.length !== 2 || s[0] !== out || s[1] !== inDim;
  });
  if (other) {
    return missBecause(`${other} (${base.shape(other)?.join(' × ')}) and ${keys[0][0]} (${out} × ${inDim}) differ in shape, so the experts' tensors do not stack into ${param}`);
  }
  const parts = keys[0].length;
  const paramShape: [number, number, number] = [keys.length, parts * out, inDim];
  const targets: Placement[] = keys.flatMap((perPart, e) => perPart.map((baseKey, part) => ({
    baseKey,
    experts: {
      paramShape, storedInOut: false, transposed: false, expert: e,
      ...(parts > 1 ? { rows: Array.from({ length: out }, (_, i) => part * out + i) } : {}),
    },
  })));
  return { found: true, targets };
}

/**
 * transformers 5's router (`mlp.gate.weight`, or PhiMoE's `mlp.router`) on a checkpoint that keeps
 * it as `block_sparse_moe.gate.weight`, beside per-expert tensors.
 */
function routerOf(prefix: string, name: 'gate' | 'router', path: string, base: BaseView): LayoutResolution | undefined {
  const weight = name === 'gate' ? path : `${prefix}.mlp.router.weight`;
  if (base.index.resolveDotted(weight).found) return undefined;
  const stem = `${prefix}.block_sparse_moe`;
  if (!base.index.resolveDotted(`${stem}.experts.0.w1.weight`).found) return undefined;
  const found = base.index.resolveDotted(`${stem}.gate.weight`);
  if (!found.found) return undefined;
  // A model config.json names whose transformers 5 class calls its router otherwise: not that router's name.
  const other = base.architectures.find((a) => Object.values(ROUTER_CLASSES).some((c) => c.test(a)) && !ROUTER_CLASSES[name].test(a));
  if (other) {
    const own = ROUTER_CLASSES.gate.test(other) ? 'mlp.gate' : 'mlp.router';
    return missBecause(`transformers 5 names ${other}'s router ${own}, not mlp.${name}, so this is not the router of ${found.key}: merge into the model the adapter was trained on`);
  }
  return { found: true, targets: [{ baseKey: found.key }] };
}
