/**
 * Writes the benchmark's inputs to disk tensor by tensor: a Llama-shaped f16 base model (the
 * sample's tensor layout at full size, values from a xorshift stream) and a PEFT LoRA on all seven
 * projections. Only one tensor's chunk is in memory at a time.
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createSafetensorsWriter } from '../dist/formats/safetensors-writer.js';
import {
  sampleAdapterConfig, sampleBaseTensors, sampleModelConfig, sampleProjections,
} from '../dist/sample/llama-tensors.js';
import { encodeFromF32 } from '../dist/dtype.js';
import { createXorshift, fillF16Pairs, fillUniformF32 } from './fill-random.mjs';
import { fileSink } from './file-sink.mjs';

/** The model the issue asks for: 8 layers, hidden 2048, MLP 5632, vocab 32000 (TinyLlama's attention). */
export const BENCH_MODEL = {
  seed: 7, layers: 8, hidden: 2048, intermediate: 5632, heads: 32, kvHeads: 4, vocab: 32000,
  dtype: 'F16', rank: 16, alpha: 32, adapterDtype: 'F32',
  /** The GGUF case's layers: re-encoding k-quants in JavaScript is what takes time there. */
  ggufLayers: 2,
};

/** Base tensors are written in chunks of this many bytes (a multiple of 4: whole f16 pairs). */
const CHUNK_BYTES = 16 * 1024 * 1024;

function elementCount(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

/** base/{config.json, model.safetensors}; returns the safetensors path and its size. */
export async function writeBaseModel(dir, o = BENCH_MODEL) {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(sampleModelConfig(o), null, 2) + '\n');
  const specs = sampleBaseTensors(o).map((s) => ({ name: s.name, dtype: o.dtype, shape: s.shape }));
  const path = join(dir, 'model.safetensors');
  const writer = await createSafetensorsWriter(await fileSink(path), specs, { format: 'pt' });
  const next = createXorshift(o.seed);
  const chunk = new Uint32Array(CHUNK_BYTES / 4);
  for (const spec of specs) {
    let left = elementCount(spec.shape) * 2;
    while (left > 0) {
      const bytes = Math.min(left, CHUNK_BYTES);
      const words = chunk.subarray(0, Math.ceil(bytes / 4));
      fillF16Pairs(words, next);
      await writer.writeChunk(spec.name, new Uint8Array(words.buffer, 0, bytes));
      left -= bytes;
    }
  }
  await writer.finish();
  return { path, bytes: writer.byteLength };
}

/**
 * adapter/{adapter_config.json, adapter_model.safetensors}: A Kaiming-uniform as PEFT initialises
 * it, B sized so that s·B·A is a few percent of W, both in the adapter dtype (f32 or bf16).
 */
export async function writeAdapter(dir, o = BENCH_MODEL) {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(sampleAdapterConfig(o), null, 2) + '\n');
  const tensors = [];
  for (const p of sampleProjections(o)) {
    const key = `base_model.model.${p.module}`;
    tensors.push({ name: `${key}.lora_A.weight`, shape: [o.rank, p.in], halfWidth: 1 / Math.sqrt(p.in) });
    tensors.push({ name: `${key}.lora_B.weight`, shape: [p.out, o.rank], halfWidth: 0.004 });
  }
  const path = join(dir, 'adapter_model.safetensors');
  const specs = tensors.map((t) => ({ name: t.name, dtype: o.adapterDtype, shape: t.shape }));
  const writer = await createSafetensorsWriter(await fileSink(path), specs, { format: 'pt' });
  const next = createXorshift(o.seed ^ 0x5bd1e995);
  for (const t of tensors) {
    const values = new Float32Array(elementCount(t.shape));
    fillUniformF32(values, next, t.halfWidth);
    await writer.writeTensor(t.name, encodeFromF32(values, o.adapterDtype));
  }
  await writer.finish();
  return { path, bytes: writer.byteLength };
}
