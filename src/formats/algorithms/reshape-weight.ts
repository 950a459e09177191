/**
 * ComfyUI's `reshape_weight`, a part of a LoRA module (spacepxl's Wan 2.1 control LoRAs carry
 * `diffusion_model.patch_embedding.reshape_weight`; ComfyUI's converter gives BFL's FLUX.1 control
 * LoRAs one on `img_in`). ComfyUI (comfy/weight_adapter/lora.py, `LoRAAdapter.load` and
 * `calculate_weight`) reads it as a list of sizes only beside the LoRA forms it loads (`lora_up` /
 * `lora_down`, `lora_A` / `lora_B`, …), and before adding the update pads the weight to that shape
 * with `pad_tensor_to_shape` (weight_adapter/base.py): a zero tensor of the new shape with the
 * weight in its leading corner, so the zeros come at the end of each dimension; it raises for a
 * shape of another rank or one smaller in any dimension. Then W' = pad(W) + strength·α/r·B·A: the
 * strength scales the update only, and the bias, a patch of its own, keeps its size.
 *
 * The padded tensor is a model ComfyUI loads again only where its model detection reads the width
 * from that tensor: a single file whose input layer sets the model's input channels (WIDTH_READERS).
 * There only dimension 1, the input channels, may grow. The plan widens the tensor the same way
 * BFL's img_in is widened (TensorUpdate.widenedFrom), with this part's checks (reshapeProblem); on
 * a GGUF base only where ComfyUI-GGUF's patcher would widen the tensor (ggufWideningProblem).
 */
import { ADAPTER_FORMAT_NAMES, type AdapterFormat, type AdapterModule } from '../adapter.js';
import type { TensorEntry } from '../safetensors-types.js';
import { product } from '../../integers.js';
import { fmtShape } from './algorithm.js';
import { moduleTitle } from './index.js';
import type { ModulePart } from './module-parts.js';

/**
 * Single-file checkpoints (original or ComfyUI naming, bare or under `model.diffusion_model.`) whose
 * width ComfyUI's model detection (comfy/model_detection.py `detect_unet_config`) reads from dim 1
 * of `tensor`, in a model it tells by `marker` under the same prefix.
 */
const WIDTH_READERS: readonly { tensor: string; marker: string; model: string; field: string }[] = [
  { tensor: 'patch_embedding.weight', marker: 'head.modulation', model: 'Wan', field: 'in_dim' },
  { tensor: 'img_in.weight', marker: 'double_blocks.0.img_attn.norm.key_norm.scale', model: 'FLUX.1', field: 'in_channels (÷ 4)' },
];

/** Only the LoRA forms ComfyUI's LoRAAdapter loads read a reshape_weight. */
const READ_BESIDE = new Set(['lora']);

const BESIDE_LORA = 'ComfyUI reads reshape_weight only beside a LoRA of the weight (lora_up/lora_down, lora_A/lora_B) and leaves it unread otherwise';

/** The sizes a reshape_weight holds, or why it holds none ComfyUI could pad to. */
export function reshapeSizes(tensor: TensorEntry, values: readonly number[] | string): number[] | string {
  if (typeof values === 'string') return `${tensor.name} is ${values}`;
  if (tensor.shape.length !== 1 || values.length === 0) return `${tensor.name} ${fmtShape(tensor.shape)} is not a list of sizes`;
  const bad = values.find((v) => !Number.isSafeInteger(v) || v < 1);
  if (bad !== undefined) return `${tensor.name} holds ${bad}, not a size`;
  return values.slice();
}

export const reshapeWeight: ModulePart = {
  role: 'reshape_weight',
  readsIntegers: true,
  attach(module, tensor, context, values) {
    if (!READ_BESIDE.has(module.algorithm)) {
      context.report('UNSUPPORTED_FORMAT', `has "${tensor.name}" beside ${module.update.kind === 'none' ? 'a bias diff alone' : moduleTitle(module)}: ${BESIDE_LORA}; remove it`);
      return null;
    }
    if (module.dora) {
      context.report('UNSUPPORTED_FORMAT', `has "${tensor.name}" beside a DoRA magnitude: padding a weight DoRA renormalizes is not supported`);
      return null;
    }
    const sizes = reshapeSizes(tensor, values ?? 'unread');
    if (typeof sizes === 'string') {
      context.report('UNSUPPORTED_FORMAT', `has a reshape_weight ComfyUI cannot pad to: ${sizes} (torch.zeros takes whole sizes)`);
      return null;
    }
    return { ...module, reshapeTo: sizes, widenBaseTo: product(sizes.slice(1)) };
  },
  alone(tensor, context) {
    context.report('UNSUPPORTED_FORMAT', `has "${tensor.name}" and no update of its weight: ${BESIDE_LORA}; remove it`);
    return null;
  },
};

/**
 * Why ComfyUI's padding of `baseKey` (stored `shape`) to `module.reshapeTo` cannot be written as a
 * model: another rank or a smaller size (pad_tensor_to_shape raises), a size other than the input
 * channels (dim 1) changed (the bias and the model's other tensors keep theirs), or a tensor whose
 * width no single-file loader reads back (a diffusers folder, whose config.json would have to
 * change, or any other layer). Undefined when it can, or when the module pads nothing.
 */
export function reshapeProblem(module: AdapterModule, baseKey: string, shape: readonly number[], has: (key: string) => boolean): string | undefined {
  const to = module.reshapeTo;
  if (!to) return undefined;
  const pads = `reshape_weight pads ${baseKey} ${fmtShape(shape)} to ${fmtShape(to)}`;
  if (to.length !== shape.length) return `${pads}, another number of dimensions, which ComfyUI's pad_tensor_to_shape refuses`;
  const smaller = to.findIndex((d, i) => d < shape[i]);
  if (smaller >= 0) return `${pads}, smaller in dimension ${smaller}; ComfyUI's pad_tensor_to_shape only pads and refuses it`;
  if (to.every((d, i) => d === shape[i])) return undefined;
  const other = to.findIndex((d, i) => i !== 1 && d !== shape[i]);
  if (other >= 0) return `${pads}: only the input channels (dimension 1) may grow, not dimension ${other} (${other === 0 ? 'the outputs, which its bias and the next layer keep' : 'the kernel, which is the model\'s patch size'})`;
  const reader = WIDTH_READERS.find((r) => baseKey.endsWith(r.tensor) && (baseKey.length === r.tensor.length || baseKey[baseKey.length - r.tensor.length - 1] === '.'));
  const prefix = reader ? baseKey.slice(0, baseKey.length - reader.tensor.length) : '';
  if (!reader) {
    return `${pads}, but no loader reads a model's width from ${baseKey}, so the merged model would not load; ComfyUI's single files take a wider ${WIDTH_READERS.map((r) => `${r.tensor} (${r.model})`).join(' or ')}`;
  }
  if (!has(prefix + reader.marker)) {
    return `${pads}; ComfyUI reads ${reader.model}'s ${reader.field} from that tensor only in a single file in ${reader.model}'s own naming (${prefix}${reader.marker} beside it), and this base is not one (a diffusers folder's config.json in_channels would have to change): merge into the single-file checkpoint (Comfy-Org's repackaged file, bare or under model.diffusion_model.) instead`;
  }
  return undefined;
}

/** The GGUF types ComfyUI-GGUF hands to torch as they are (dequant.py TORCH_COMPATIBLE_QTYPES): its patcher widens only these. */
const GGUF_PATCHED_AT_LOAD = new Set(['F32', 'F16']);

/**
 * Why ComfyUI-GGUF, the loader of a GGUF diffusion model, would not run `module`'s widening of
 * `baseKey` (stored as `storedType`, `cols` input columns), or undefined where it would. ComfyUI
 * widens a weight only by `reshape_weight`: a file's own, or the one comfy/lora_convert.py
 * `convert_lora_bfl_control` gives BFL's control LoRA (read here in ComfyUI's form, format
 * 'comfyui'); diffusers' wider x_embedder LoRA it cannot reshape onto the weight, logs the error
 * and leaves the weight as it was. ComfyUI-GGUF's GGUFModelPatcher pads and patches an F32 or F16
 * tensor in place when the model loads, so the model reads the new width from it (FLUX.1's
 * `concat_cond` img_in.weight.shape[1], Wan's patch_embedding) and feeds the control latents. BF16
 * and block types it patches only when ops.py `get_weight` dequantizes them for a step: the tensor
 * keeps its stored shape, the model reads the old width, feeds no control latents, and the padded
 * weight meets the narrower input (torch's "mat1 and mat2 shapes cannot be multiplied").
 */
export function ggufWideningProblem(
  module: AdapterModule, format: AdapterFormat, baseKey: string, shape: readonly number[], cols: number, storedType: string | undefined,
): string | undefined {
  const to = module.widenBaseTo;
  const widening = `widening ${baseKey} ${fmtShape(shape)} to ${to} input columns`;
  if (module.reshapeTo === undefined && format !== 'comfyui') {
    return `${widening} is not supported on a GGUF base: ComfyUI-GGUF, which loads it, widens a weight only by ComfyUI's reshape_weight (a file's own, or the one ComfyUI gives BFL's control LoRA), and ComfyUI does not widen for a ${ADAPTER_FORMAT_NAMES[format]} LoRA of another width (it reports the shape mismatch and leaves the weight as it is); merge into a safetensors base in F32, F16, BF16 or plain fp8`;
  }
  if (storedType !== undefined && GGUF_PATCHED_AT_LOAD.has(storedType)) return undefined;
  return `${widening} is not supported on a GGUF base's ${storedType ?? 'unknown-type'} tensor: ComfyUI-GGUF patches a ${storedType ?? 'such a'} tensor only when it dequantizes it for each step, so the model still reads ${cols} input columns from the stored tensor, feeds no control latents and stops on the shape mismatch; it widens one stored in F32 or F16 (merge into such a GGUF, or a safetensors base in F32, F16, BF16 or plain fp8)`;
}
