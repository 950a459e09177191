/**
 * The base a llama.cpp LoRA GGUF of PEFT adapters is written for (the command line's `--base` of
 * combine, resize and convert, the library's `base` of combineLoras, resizeLora and convertLora):
 * opened (headers and config.json only) under llama.cpp's tensor names, and the op's PEFT-named
 * result renamed onto them. One code path for both, so their files are the same bytes.
 */
import { ggufLoraForBase, type GgufNamedBase } from './gguf-lora-names.js';
import { ggufNamesOfHfModel } from './hf-gguf-names.js';
import { kohyaNamedAdapter, type OutputFormat } from './module-updates.js';
import type { OpResult } from './op-common.js';
import { MergeError } from '../errors.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import type { BaseModel } from '../formats/base-model.js';
import { readModelConfig } from '../formats/model-config.js';
import { openModel } from '../formats/open-model.js';
import type { InputFileSet } from '../io/types.js';

/** An opened base: the model (to close) and its tensors under llama.cpp's names. */
export interface GgufBase {
  model: BaseModel;
  named: GgufNamedBase;
}

/**
 * Refuses a base where it cannot serve, before it is opened: an output that is no GGUF, inputs
 * that are llama.cpp LoRAs already or kohya-named. `job.base` names the base in refusals.
 */
export function checkGgufBase(job: { command: string; base: string }, format: OutputFormat, adapters: readonly ParsedAdapter[]): void {
  if (format !== 'gguf') {
    throw new MergeError('BAD_ARGUMENT', `--base ${job.base}: ${job.command} reads a base only to name a llama.cpp LoRA's tensors; give --out a .gguf name, or leave out --base`);
  }
  const gguf = adapters.find((a) => a.format === 'gguf');
  if (gguf) {
    // convert has nothing to do for one: its base is not optional.
    const advice = job.command === 'convert' ? 'there is nothing to convert: load it with llama.cpp\'s --lora as it is' : 'leave out --base (it is for PEFT adapters)';
    throw new MergeError('BAD_ARGUMENT', `${gguf.name}: a llama.cpp LoRA already names the GGUF's tensors; ${advice}`);
  }
  const kohya = kohyaNamedAdapter(adapters);
  if (kohya) throw new MergeError('BAD_ARGUMENT', `${kohya.name}: a kohya adapter's module names (lora_unet_…, flattened) are not mapped to llama.cpp's tensor names; give the PEFT adapter`);
}

/**
 * The base of a checked job ({@link checkGgufBase}): a GGUF model as it is, a Hugging Face
 * safetensors folder as convert_hf_to_gguf would name it (hf-gguf-names.ts).
 */
export async function openGgufBase(files: InputFileSet, baseName: string): Promise<GgufBase> {
  const model = await openModel(files);
  try {
    const metadata = model.metadata;
    if (metadata && typeof metadata.call(model, 'general.architecture') === 'string') return { model, named: { tensors: model.tensors, metadata: (key) => metadata.call(model, key) } };
    return { model, named: ggufNamesOfHfModel(model, await readModelConfig(files), baseName) };
  } catch (e) {
    await model.close();
    throw e;
  }
}

/** The op's PEFT-named result renamed onto `base`'s tensors (gguf-lora-names.ts), or as it is without a base. */
export function renameFor(base: GgufBase | undefined, baseName: string | undefined, command: string): (result: OpResult) => OpResult {
  return (result) => (base ? { ...result, adapter: ggufLoraForBase(result.adapter, base.named, baseName!, command) } : result);
}
