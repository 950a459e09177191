/**
 * The built-in sample: a small Llama-shaped base model and a PEFT LoRA for it, as in-memory files,
 * generated deterministically from a seed. Pure and browser-safe: the demo page merges it with one
 * click and the CLI writes it to a folder.
 */
import { MergeError } from '../errors.js';
import { createSafetensorsWriter } from '../formats/safetensors-writer.js';
import type { ByteSink } from '../io/types.js';
import { sampleAdapterConfig, sampleModelConfig } from './llama-tensors.js';
import { SAMPLE_PRESETS, type SampleOptions, type SamplePreset } from './sample-options.js';
import { sampleAdapterTensorData, sampleBaseTensorData, type SampleTensor } from './sample-tensors.js';

/** Files by relative path: the base folder (config.json, model.safetensors) and the adapter folder. */
export interface SampleFiles {
  options: SampleOptions;
  base: Record<string, Uint8Array>;
  adapter: Record<string, Uint8Array>;
}

/** Collects what a writer produces into one buffer. */
function memorySink(): { sink: ByteSink; bytes(): Uint8Array } {
  const chunks: Uint8Array[] = [];
  return {
    sink: {
      async write(chunk) { chunks.push(chunk.slice()); },
      async close() {},
    },
    bytes() {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
      let at = 0;
      for (const c of chunks) { out.set(c, at); at += c.byteLength; }
      return out;
    },
  };
}

async function safetensorsBytes(tensors: SampleTensor[], metadata: Record<string, string>): Promise<Uint8Array> {
  const memory = memorySink();
  const writer = await createSafetensorsWriter(memory.sink, tensors, metadata);
  for (const t of tensors) await writer.writeTensor(t.name, t.data);
  await writer.finish();
  return memory.bytes();
}

function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n');
}

/** Resolves a preset name or partial options (missing fields from the small preset). */
export function resolveSampleOptions(options: SamplePreset | Partial<SampleOptions> = 'small'): SampleOptions {
  if (typeof options === 'string') {
    const preset = SAMPLE_PRESETS[options];
    if (!preset) throw new MergeError('BAD_ARGUMENT', `unknown sample preset "${options}" (expected small or large)`);
    return { ...preset };
  }
  return { ...SAMPLE_PRESETS.small, ...options };
}

/** Generates the sample; the same options always give byte-identical files. */
export async function generateSample(options: SamplePreset | Partial<SampleOptions> = 'small'): Promise<SampleFiles> {
  const o = resolveSampleOptions(options);
  const format = { format: 'pt' };
  return {
    options: o,
    base: {
      'config.json': jsonBytes(sampleModelConfig(o)),
      'model.safetensors': await safetensorsBytes(sampleBaseTensorData(o), format),
    },
    adapter: {
      'adapter_config.json': jsonBytes(sampleAdapterConfig(o)),
      'adapter_model.safetensors': await safetensorsBytes(sampleAdapterTensorData(o), format),
    },
  };
}
