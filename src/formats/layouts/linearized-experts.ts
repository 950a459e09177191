/**
 * Layout for one expert's Linear layer of a model whose fused experts a trainer split into Linear
 * layers so that bitsandbytes can quantize them and PEFT can wrap them, on a checkpoint that
 * stores the experts fused as 3-D parameters (E, in, out) (openai/gpt-oss in bf16 or MXFP4,
 * meta-llama's Llama 4). On the checkpoint the adapter was trained on those names are the base's
 * own and land by `dotted-path`, before this layout is asked.
 *
 * Each Linear's weight (out × in) is a part of slab K transposed, so ΔW of expert K lands as ΔWᵀ
 * on slab K, as the trainer's own merge puts it:
 * - Unsloth's gpt-oss `experts.gate_up_projs.K` / `down_projs.K`: the whole slab of
 *   `gate_up_proj` / `down_proj` (unsloth_zoo's merge folds each expert's LoRA into
 *   `W[K].T` and writes it back transposed; the Linear's outputs keep gpt-oss's interleaved gate
 *   and up columns, its forward splitting them `[..., ::2]` / `[..., 1::2]` as transformers does);
 * - axolotl's linearized Llama 4 `feed_forward.experts.gate_projs.K` / `up_projs.K`: the first
 *   and second half of the columns of `gate_up_proj`'s slab K (axolotl's `delinearize-llama4`
 *   concatenates gate's then up's transposed weights on the last axis, as transformers'
 *   Llama4TextExperts chunks them), and `down_projs.K` the whole slab of `down_proj`.
 * The slab is seen as rows of the Linear's outputs (`TransposedBlocks.within`): for a half,
 * `gate_up_proj` as (E·in·2) rows of `inter` values, gate's rows even and up's odd.
 *
 * Which half `gate_projs` and `up_projs` stand for is known for Llama 4 alone (gpt-oss interleaves
 * its gate and up columns): on a base whose config.json names no Llama 4 architecture they are
 * refused, naming the fused tensor. A change of the Linear's bias (PEFT `lora_bias`: lora_B.bias,
 * added to the Linear's output) lands on expert K's row of the fused bias (`gate_up_proj_bias`,
 * `down_proj_bias` (E, out)), which is that Linear's bias; where the base has none (Llama 4) it is
 * refused. So is a tensor that is not (E, in, out).
 */
import { missBecause, type Layout } from './layout.js';

const LINEARIZED = /^(.+\.experts)\.(gate_up_projs|gate_projs|up_projs|down_projs)\.(\d+)$/;

/** The fused parameter each split name comes from. */
const FUSED: Readonly<Record<string, string>> = { gate_up_projs: 'gate_up_proj', gate_projs: 'gate_up_proj', up_projs: 'gate_up_proj', down_projs: 'down_proj' };

/** config.json architectures of Llama 4 (Llama4ForConditionalGeneration, Llama4ForCausalLM). */
const LLAMA4 = /^Llama4For/;

/**
 * The fused parameter a split expert's Linear layer comes from (`…experts.gate_up_projs.3` →
 * `…experts.gate_up_proj`), or undefined for another name.
 */
export function fusedExpertParameter(path: string): string | undefined {
  const m = LINEARIZED.exec(path);
  return m ? `${m[1]}.${FUSED[m[2]]}` : undefined;
}

export const linearizedExperts: Layout = {
  name: 'linearized-experts',
  resolve(address, base) {
    const m = address.tensor || address.flat ? null : LINEARIZED.exec(address.path);
    if (!m) return undefined;
    const [, stem, split, index] = m;
    const fused = base.index.resolveDotted(`${stem}.${FUSED[split]}`);
    if (!fused.found) return undefined;
    // torch's ModuleList names its layers str(K): `.01` or `.007` is no trainer's layer, and not expert 1 or 7.
    if (/^0\d/.test(index)) {
      return missBecause(`its expert number ${index} is not how PyTorch names a layer of the split experts (it writes ${index.replace(/^0+(?=\d)/, '')}), so no trainer's Linear layer has this name: fix the module's name in the adapter`);
    }
    const shape = base.shape(fused.key) ?? [];
    const half = split === 'gate_projs' ? 'gate' : split === 'up_projs' ? 'up' : undefined;
    const refuse = (why: string) => missBecause(
      `names expert ${index}'s Linear layer of experts split into Linear layers (Unsloth's gpt-oss, axolotl's linearized Llama 4), which this base stores fused in ${fused.key} [${shape.join(', ')}]; ` +
      `${why}: merge into the checkpoint with the experts split that the adapter was trained on`,
    );
    if (shape.length !== 3 || shape.some((d) => !(Number.isSafeInteger(d) && d > 0))) return refuse('that tensor is not (experts, in, out), so where the layer\'s weight lies in it is not known');
    const [experts, inputs, cols] = shape;
    const expert = Number(index);
    if (expert >= experts) return refuse(`it holds ${experts} experts, none numbered ${index}`);
    let parts = 1;
    let part = 0;
    if (half) {
      if (!base.architectures.some((a) => LLAMA4.test(a))) {
        return refuse(`which of its columns the ${half} layer stands for is known for Llama 4 alone (axolotl's: gate's half, then up's), and this base's config.json names no Llama 4 architecture`);
      }
      if (cols % 2 !== 0) return refuse(`its ${cols} columns do not split into gate's half and up's`);
      parts = 2;
      part = half === 'up' ? 1 : 0;
    }
    // The whole slab's Linear (gpt-oss's gate_up_projs.K, down_projs.K) has expert K's row of the fused bias as its bias
    // (`gate_up_proj_bias` (E, out), in the Linear's output order): a lora_B.bias, which PEFT adds to the Linear's output,
    // lands there. Llama 4's experts have no bias.
    const biasKey = half ? undefined : base.index.resolveDotted(`${stem}.${FUSED[split]}_bias`);
    const biasShape = biasKey?.found ? base.shape(biasKey.key) : undefined;
    const bias = biasKey?.found && biasShape?.length === 2 && biasShape[0] === experts && biasShape[1] === cols
      ? { bias: { key: biasKey.key, rows: [{ src: 0, dst: expert * cols, count: cols }] } }
      : { biasUnread: `the Linear layer's bias is not ${fused.key}'s, and this base holds no ${stem}.${FUSED[split]}_bias of shape [${experts}, ${cols}] (one row per expert) to take a change of expert ${index}'s bias` };
    return {
      found: true,
      targets: [{
        baseKey: fused.key,
        // Slab K's row j (the Linear's input j), or its half: row (K·in + j)·parts + part of the tensor seen as (E·in·parts) × (out/parts).
        transposedBlocks: { starts: [0], rows: cols / parts, within: { baseRows: experts * inputs * parts, inputs, first: expert * inputs * parts + part, stride: parts } },
        ...bias,
      }],
    };
  },
};
