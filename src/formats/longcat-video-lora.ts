/**
 * LongCat-Video's own LoRA files (meituan-longcat/LongCat-Video `lora/cfg_step_lora.safetensors`,
 * `refinement_lora.safetensors`, and what its LoRANetwork saves): every module under
 * `lora___lorahyphen___` + its path with `___lorahyphen___` for each dot, a stored `alpha_scale`
 * (α/r itself) in place of `alpha`, and on a fused projection (`attn.qkv`, `cross_attn.kv_linear`)
 * one `lora_down.weight` of n·r rows with `lora_up.blocks.<i>.weight` (out/n, r) applied to the
 * i-th r rows (its LoRAUPParallel). No layout here reads that naming, so such a file is refused in
 * one line that names the format, rather than tensor by tensor.
 */
import { MergeError } from '../errors.js';
import type { SafetensorsFile } from './safetensors-types.js';

const HYPHEN = '___lorahyphen___';

/** The refusal of a LongCat-Video LoRA file, or undefined when `file` is not one. */
export function longCatVideoLoraRefusal(fileName: string, file: SafetensorsFile): MergeError | undefined {
  const first = file.tensors.find((t) => t.name.startsWith(`lora${HYPHEN}`));
  if (!first) return undefined;
  const module = first.name.slice(`lora${HYPHEN}`.length).split('.')[0].split(HYPHEN).join('.');
  return new MergeError(
    'UNSUPPORTED_FORMAT',
    `${fileName}: a LongCat-Video LoRA (its LoRANetwork's names: "${first.name}" is module ${module}, with alpha_scale and lora_up.blocks.N on fused projections); `
    + 'this format is not supported: apply it with LongCat-Video\'s pipeline (load_lora, enable_loras)',
  );
}
