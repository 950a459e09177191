/**
 * Layout: one expert's slice of a llama.cpp MoE LoRA (gguf-adapter.ts names it
 * `blk.3.ffn_gate_exps[5/8]`: expert 5 of the adapter's 8) on the base's stacked expert tensor
 * `blk.3.ffn_gate_exps.weight`, which the plan sees as (experts·out, in): ΔW's rows go to
 * expert 5's rows, as llama.cpp's ggml_mul_mat_id applies slice 5 of the factors to expert 5. The
 * base must hold as many experts as the adapter (`<arch>.expert_count`, else its rows divided
 * evenly), or the module is a miss.
 */
import { missBecause, type Layout, type LayoutResolution } from './layout.js';

const SLICE = /^(.+)\[(\d+)\/(\d+)\]$/;
const MISS: LayoutResolution = { found: false, ambiguous: false, candidates: [] };

export const ggufExpertSlices: Layout = {
  name: 'gguf-expert-slices',
  resolve(address, base) {
    const m = address.flat ? null : SLICE.exec(address.path);
    if (!m) return undefined;
    const [expert, experts] = [Number(m[2]), Number(m[3])];
    const found = base.index.resolveDotted(`${m[1]}.weight`);
    if (!found.found) return found;
    const arch = base.metadata?.('general.architecture');
    const declared = typeof arch === 'string' ? base.metadata?.(`${arch}.expert_count`) : undefined;
    const rows = base.shape(found.key)?.[0];
    // The tensor is there: say why this slice has no place in it (not "no matching tensor").
    if (declared !== undefined && Number(declared) !== experts) {
      return missBecause(`expert ${expert} of the adapter's ${experts}, but ${found.key} holds ${Number(declared)} experts (${String(arch)}.expert_count); llama.cpp pairs them expert by expert`);
    }
    if (rows !== undefined && rows % experts !== 0) return missBecause(`${found.key} has ${rows} rows, which do not split among the adapter's ${experts} experts`);
    if (rows === undefined || expert >= experts) return MISS;
    const per = rows / experts;
    return { found: true, targets: [{ baseKey: found.key, rows: [{ src: 0, dst: expert * per, count: per }] }] };
  },
};
