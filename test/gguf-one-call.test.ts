/**
 * The one-call merge() with GGUF, as an embedder calls it: in Node a split base named by one of its
 * parts gives a folder of the same parts, and `dtype` takes GGML types (checked by the base's
 * container before anything is written); in a browser-style call Files in, Blobs out. Checked
 * against float64 truth computed here (f32) and, for q8_0, against the reference quantizer applied
 * to the f32 merge (quantized once).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { merge as browserMerge } from '../src/merge.js';
import { merge } from '../src/node-merge.js';
import { referenceQuantizeBlock } from './helpers/ggml-reference.js';
import { readGguf, tensorValues, typeName } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, splitF16Llama, truthWithLora } from './helpers/gguf-models.js';
import { buildSafetensors, tempDirs } from './helpers/fixtures.js';

const dirs = tempDirs();
afterAll(dirs.removeAll);

const base = splitF16Llama();
const TARGET = 'blk.0.ffn_down.weight';
const lora = ggufLoraAdapter([{ tensor: TARGET, rank: 8, in: LLAMA.ffn, out: LLAMA.hidden, aType: 'F32', bType: 'F16' }], 16);
const truth = truthWithLora(base.tensors.get(TARGET)!.values, LLAMA.hidden, LLAMA.ffn, lora.factors.get(TARGET)!, 0.5 * 16 / 8, false);
const PARTS = Object.keys(base.files);

/** The merged tensor, from whichever part holds it. */
function mergedTensor(folder: string) {
  for (const part of PARTS) {
    const t = readGguf(readFileSync(join(folder, part))).tensors.find((x) => x.name === TARGET);
    if (t) return t;
  }
  throw new Error(`${TARGET} not written`);
}

describe('Node merge() with a split GGUF', () => {
  it('names the base by one part, writes the same parts, and takes f32 and q8_0 as dtype (q8_0: the f32 merge quantized once)', async () => {
    const dir = dirs.make({ ...base.files, 'lora.gguf': lora.bytes });
    const adapters = [{ source: join(dir, 'lora.gguf'), weight: 0.5 }];
    await merge({ base: join(dir, PARTS[1]), adapters, out: join(dir, 'f32'), dtype: 'f32', backend: 'cpu' });
    await merge({ base: join(dir, PARTS[0]), adapters, out: join(dir, 'q8'), dtype: 'q8_0', backend: 'cpu' });
    for (const out of ['f32', 'q8']) expect(PARTS.every((p) => existsSync(join(dir, out, p))), out).toBe(true);

    const f32 = mergedTensor(join(dir, 'f32'));
    expect(typeName(f32.typeId)).toBe('F32');
    const got = tensorValues('F32', f32.data);
    const scale = truth.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (let i = 0; i < truth.length; i++) expect(Math.abs(got[i] - truth[i]), `${i}`).toBeLessThan(2e-6 * scale);

    const q8 = mergedTensor(join(dir, 'q8'));
    expect(typeName(q8.typeId)).toBe('Q8_0');
    for (let b = 0; b < got.length / 32; b++) {
      expect([...q8.data.subarray(b * 34, (b + 1) * 34)], `block ${b}`).toEqual([...referenceQuantizeBlock('Q8_0', got.subarray(b * 32, (b + 1) * 32))]);
    }
  });

  it('refuses a GGML dtype for a safetensors base, and fp8 for a GGUF base, writing nothing', async () => {
    const dir = dirs.make({ ...base.files, 'lora.gguf': lora.bytes, 'model.safetensors': buildSafetensors([{ name: 'w.weight', dtype: 'F16', shape: [2, 2], data: [1, 2, 3, 4] }]) });
    await expect(merge({ base: join(dir, PARTS[0]), adapters: [join(dir, 'lora.gguf')], out: join(dir, 'out'), dtype: 'f8_e4m3', backend: 'cpu' }))
      .rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(/for a GGUF model must be one of .*, not "f8_e4m3"/) });
    const peft = dirs.make({
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 1, lora_alpha: 1 }),
      'adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.w.lora_A.weight', dtype: 'F32', shape: [1, 2], data: [1, 1] },
        { name: 'base_model.model.w.lora_B.weight', dtype: 'F32', shape: [2, 1], data: [1, 1] },
      ]),
    });
    await expect(merge({ base: join(dir, 'model.safetensors'), adapters: [peft], out: join(dir, 'out.safetensors'), dtype: 'q4_k', backend: 'cpu' }))
      .rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringContaining('not "q4_k" (for a safetensors model)') });
    expect(existsSync(join(dir, 'out'))).toBe(false);
    expect(existsSync(join(dir, 'out.safetensors'))).toBe(false);
  });
});

it('browser-style merge() takes GGUF Files and returns the parts as Blobs', async () => {
  const files = PARTS.map((p) => new File([base.files[p] as Uint8Array<ArrayBuffer>], p));
  const { blobs, plan } = await browserMerge({ base: files, adapters: [{ source: new File([lora.bytes as Uint8Array<ArrayBuffer>], 'lora.gguf'), weight: 0.5 }], dtype: 'f32', backend: 'cpu' });
  expect(plan.updates.map((u) => u.baseKey)).toEqual([TARGET]);
  expect(blobs.map((b) => b.path)).toEqual(PARTS);
  let found = 0;
  for (const blob of blobs) {
    const t = readGguf(new Uint8Array(await blob.blob.arrayBuffer())).tensors.find((x) => x.name === TARGET);
    if (!t) continue;
    found++;
    const got = tensorValues('F32', t.data);
    const scale = truth.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (let i = 0; i < truth.length; i++) expect(Math.abs(got[i] - truth[i]), `${i}`).toBeLessThan(2e-6 * scale);
  }
  expect(found).toBe(1);
});
