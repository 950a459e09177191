/**
 * GGML blocks decoded in WGSL (SwiftShader through Dawn here) against the CPU codecs and the
 * test's plain reference: bit for bit, every type, random blocks with scales of every magnitude
 * (f16 subnormals included); and a GGUF merge on WebGPU, whose base slabs go through the kernel.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockCodec } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { seededRandom } from './helpers/fixtures.js';
import { REF_BLOCK, referenceDequantizeBlock, type RefType } from './helpers/ggml-reference.js';
import { readGguf } from './helpers/gguf-builder.js';
import { peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';

let gpu: MergeBackend;
let cpu: MergeBackend;
beforeAll(async () => {
  gpu = await createNodeBackend('webgpu');
  cpu = await createNodeBackend('cpu');
});
afterAll(() => {
  gpu?.dispose();
  cpu?.dispose();
});

const TYPES: RefType[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];

/** Byte offsets of each block's f16 scales. */
const HALVES: Record<RefType, number[]> = {
  Q8_0: [0], Q4_0: [0], Q5_0: [0], Q4_1: [0, 2], Q5_1: [0, 2],
  Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208],
};

describe('WGSL dequantization', () => {
  for (const type of TYPES) {
    it(`${type}: equals the CPU codec and the reference, bit for bit`, async () => {
      const { size, bytes } = REF_BLOCK[type];
      const rand = seededRandom(1000 + bytes);
      const n = 40;
      const src = new Uint8Array(n * bytes);
      for (let i = 0; i < src.length; i++) src[i] = Math.floor(rand() * 256);
      for (let b = 0; b < n; b++) {
        // Finite scales of every size, subnormal ones among them (exponent bits 0).
        for (const at of HALVES[type]) src[b * bytes + at + 1] = (src[b * bytes + at + 1] & 0x83) | ((b % 8) << 3);
      }
      const onGpu = await gpu.dequantize!(type, src);
      expect(onGpu).toBeDefined();
      const onCpu = new Float32Array(n * size);
      blockCodec(ggmlTypeByName(type)!)!.decode(src, onCpu);
      expect(new Uint32Array(onGpu!.buffer)).toEqual(new Uint32Array(onCpu.buffer));
      for (let b = 0; b < n; b += 7) {
        expect([...onGpu!.subarray(b * size, (b + 1) * size)]).toEqual(referenceDequantizeBlock(type, src.subarray(b * bytes, (b + 1) * bytes)));
      }
    });
  }

  it('leaves types it does not decode to the CPU', async () => {
    expect(await gpu.dequantize!('F16', new Uint8Array(8))).toBeUndefined();
    expect(cpu.dequantize).toBeUndefined();
  });

  it('merges a Q4_K_M-style GGUF on WebGPU as on the CPU (f32 output: within the f32 accumulation error)', async () => {
    const base = q4kmLlama();
    const adapter = peftLlamaAdapter();
    const run = async (backend: MergeBackend) => {
      const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(adapter.files, 'peft') }]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend, outDtype: 'f32' });
      await prepared.close();
      return readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
    };
    const [a, b] = [await run(gpu), await run(cpu)];
    for (const t of a.tensors) {
      const other = b.tensors.find((x) => x.name === t.name)!;
      if (t.typeId !== 0) {
        expect(t.data).toEqual(other.data);
        continue;
      }
      const x = new Float32Array(t.data.slice().buffer);
      const y = new Float32Array(other.data.slice().buffer);
      let worst = 0;
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
      expect(worst, t.name).toBeLessThan(1e-6);
    }
  });
});
