/**
 * Layout: ERNIE-4.5-VL MoE's modality-isolated experts and routers as transformers 5 builds them
 * (Ernie4_5_VLMoeForConditionalGeneration), named by PEFT `target_parameters`, on the checkpoint
 * Baidu ships (baidu/ERNIE-4.5-VL-28B-A3B-PT, -Base-PT, 424B-A47B), which stores one tensor per
 * expert: `model.layers.N.mlp.experts.K.gate_proj` / `up_proj` / `down_proj`, the text experts
 * first and the vision experts after them (each group with its own intermediate size), and the two
 * routers as `mlp.gate.weight` (text) and `mlp.gate.weight_1` (vision), stored (hidden, E).
 *
 * transformers' conversion_mapping.py ("ernie4_5_vl_moe") loads them so:
 * ErnieFuseAndSplitTextVisionExperts splits the list of the layer's experts into two halves (the
 * first ⌈n/2⌉ the text experts), stacks each half and concatenates each expert's gate rows before
 * its up rows: `mlp.text_moe.experts.gate_up_proj` (E, 2·inter_text, hidden) and `down_proj` (E,
 * hidden, inter_text), `mlp.vision_moe.experts.*` alike from experts ⌈n/2⌉…n−1; the routers are
 * transposed (Transpose(0, 1)) into `mlp.text_moe.gate.weight` and `mlp.vision_moe.gate.weight`,
 * (E, hidden). It writes them back the same way when it saves. So a LoRA on the fused text (vision)
 * experts lands expert e's ΔW on checkpoint expert e (⌈n/2⌉ + e), and one on a router lands ΔWᵀ on
 * its stored tensor. Module paths are read in the class's names (`model.language_model.…`), and in
 * the checkpoint's (`model.layers.…`), through the key map (checkpoint-key-maps.ts).
 */
import { checkpointKeyMap } from './checkpoint-key-maps.js';
import { missBecause, type BaseView, type Layout, type LayoutResolution } from './layout.js';
import { placeExpertTensors } from './per-expert-tensors.js';
import { resolveConvertedPath } from './vlm-checkpoint.js';

const ARCHITECTURE = 'Ernie4_5_VLMoeForConditionalGeneration';
const FUSED = /^(.+\.mlp)\.(text|vision)_moe\.experts\.(gate_up_proj|down_proj)$/;
const ROUTER = /^(.+\.mlp)\.(text|vision)_moe\.gate\.weight$/;
const PARTS: Readonly<Record<string, readonly string[]>> = { gate_up_proj: ['gate_proj', 'up_proj'], down_proj: ['down_proj'] };

export const ernieVlExperts: Layout = {
  name: 'ernie-vl-experts',
  resolve(address, base) {
    if (address.flat || !address.tensor || !base.architectures.includes(ARCHITECTURE) || !checkpointKeyMap(base.architectures)) return undefined;
    const fused = FUSED.exec(address.path);
    if (fused) return placeModality(fused[1], fused[2] as 'text' | 'vision', fused[3], base);
    const router = ROUTER.exec(address.path);
    if (router) return placeRouter(router[1], router[2] as 'text' | 'vision', base);
    return undefined;
  },
};

/** The checkpoint key of `path` (a path in either naming), if it holds exactly one. */
function keyOf(path: string, base: BaseView): string | undefined {
  const r = resolveConvertedPath(base, path);
  return r?.found ? r.key : undefined;
}

function placeModality(mlp: string, modality: 'text' | 'vision', param: string, base: BaseView): LayoutResolution | undefined {
  // A checkpoint in the class's own names holds the fused parameter: it lands by name.
  if (keyOf(`${mlp}.${modality}_moe.experts.${param}`, base)) return undefined;
  const names = PARTS[param];
  const keys: string[][] = [];
  for (let e = 0; ; e++) {
    const found = names.map((n) => keyOf(`${mlp}.experts.${e}.${n}.weight`, base));
    if (found.every((k) => k === undefined)) break;
    const missing = found.findIndex((k) => k === undefined);
    if (missing >= 0) {
      // Named as the checkpoint names its other part of that expert.
      const other = found.find((k) => k !== undefined)!;
      const absent = other.replace(/[^.]+\.weight$/, `${names[missing]}.weight`);
      return missBecause(`the base stores ERNIE-4.5-VL's experts one tensor per expert, but expert ${e} has no ${names[missing]} (${absent})`);
    }
    keys.push(found as string[]);
  }
  if (keys.length === 0) return undefined;
  // ErnieFuseAndSplitTextVisionExperts: the first ⌈n/2⌉ experts are the text experts, the rest the vision experts.
  const split = Math.ceil(keys.length / 2);
  const group = modality === 'text' ? keys.slice(0, split) : keys.slice(split);
  if (group.length === 0) return missBecause(`the base's layer holds ${keys.length} expert, and transformers makes no vision experts of it`);
  const placed = placeExpertTensors(group, `${modality}_moe.experts.${param}`, base);
  if (!placed.found && placed.why) {
    const first = modality === 'text' ? 0 : split;
    return missBecause(`${placed.why} (transformers takes experts ${first}–${first + group.length - 1} of the ${keys.length} in ${mlp}.experts as the ${modality} experts)`);
  }
  return placed;
}

function placeRouter(mlp: string, modality: 'text' | 'vision', base: BaseView): LayoutResolution | undefined {
  if (keyOf(`${mlp}.${modality}_moe.gate.weight`, base)) return undefined;
  const key = keyOf(`${mlp}.gate.${modality === 'text' ? 'weight' : 'weight_1'}`, base);
  if (!key) return undefined;
  const shape = base.shape(key);
  if (!shape || shape.length !== 2) return missBecause(`${key} is not a matrix, so it is not the ${modality} experts' router`);
  // Stored (hidden, E); transformers' parameter is its transpose, (E, hidden): ΔW's E rows are the stored columns.
  return { found: true, targets: [{ baseKey: key, transposedBlocks: { starts: [0], rows: shape[1] } }] };
}
