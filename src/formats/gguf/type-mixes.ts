/**
 * llama-quantize's file types that mix tensor types (llama-quant.cpp, llama_tensor_get_type): each
 * mix says which GGML type a tensor it quantizes gets. Which tensors are quantized at all, and the
 * fallback for rows that are not whole blocks, stay the same as for one type (quantize-rule.ts).
 * One entry per mix; `--dtype` takes its name. general.file_type is set as for any `--dtype`
 * (file-type.ts: the type holding the most weights), not to the mix's own llama_ftype.
 */

/** What a mix needs to know of the model beyond the tensor itself. */
export interface MixContext {
  /** general.architecture. */
  readonly architecture: string | undefined;
  /** Whether the model has its own `output.weight` (otherwise the token embedding is the head). */
  readonly hasOutput: boolean;
}

export interface TypeMix {
  /** As llama-quantize names the file type: `MXFP4_MOE`. */
  readonly name: string;
  /** The type llama-quantize asks for `name` (before the fallback for rows of `ne0` values). */
  typeOf(name: string, shape: readonly number[], model: MixContext): string;
  /** Which tensors get which type, in words (for `--dtype` and the page's menu). */
  readonly summary: string;
}

/**
 * The output head's rule, which comes first in llama_tensor_get_type: Q8_0 for Falcon or rows that
 * are not whole blocks of the mix's default type (`defaultBlock` values), else Q6_K.
 */
function headType(shape: readonly number[], model: MixContext, defaultBlock: number): string {
  const ne0 = shape[shape.length - 1] ?? 1;
  return model.architecture === 'falcon' || ne0 % defaultBlock !== 0 ? 'Q8_0' : 'Q6_K';
}

const isHead = (name: string, model: MixContext) => name === 'output.weight' || (!model.hasOutput && name === 'token_embd.weight');

/**
 * MXFP4_MOE (gpt-oss's own format): stacked expert tensors (ne[2] > 1) MXFP4, every other
 * quantized matrix Q8_0, the head as above. For bailingmoe3, whose attention projections are
 * 3-D too, only the expert FFN tensors take MXFP4.
 */
const MXFP4_MOE: TypeMix = {
  name: 'MXFP4_MOE',
  typeOf(name, shape, model) {
    if (isHead(name, model)) return headType(shape, model, 32);
    const stacked = shape.length >= 3 && shape[shape.length - 3] > 1;
    const expertFfn = /\.ffn_(gate|up|down|gate_up)_exps\.weight$/.test(name);
    return stacked && (model.architecture !== 'bailingmoe3' || expertFfn) ? 'MXFP4' : 'Q8_0';
  },
  summary: 'gpt-oss’s own: stacked expert tensors MXFP4, the other matrices Q8_0, the output head Q6_K',
};

export const TYPE_MIXES: readonly TypeMix[] = [MXFP4_MOE];

/** The mix of this name (any case), or undefined. */
export function typeMix(name: string): TypeMix | undefined {
  const upper = name.toUpperCase();
  return TYPE_MIXES.find((m) => m.name === upper);
}
