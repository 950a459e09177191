/**
 * The overflow refusals counted over the whole tensor (test/helpers/overflow-cases.ts) on WebGPU
 * (SwiftShader here): the same line, count and first and last row as on the CPU, where the GPU's
 * kernel meets the overflow.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MergeBackend, MergeOp } from '../src/engine/merge-op.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { requestAdapter, requestMergeDevice } from '../src/engine/gpu/gpu-device.js';
import { getNodeGpu, type NodeGpu } from '../src/engine/gpu/node-gpu.js';
import { WebGpuBackend } from '../src/engine/gpu/webgpu-backend.js';
import { overflowCases } from './helpers/overflow-cases.js';

let nodeGpu: NodeGpu | undefined;
let gpu: WebGpuBackend | undefined;
let backend: MergeBackend | undefined;
/** The ops the GPU sent to the CPU. */
const onCpu = new Set<MergeOp>();
/** Each op that met the NON_FINITE refusal: its tensor, output dtype and where it ran. */
const refused: string[] = [];
beforeAll(async () => {
  nodeGpu = await getNodeGpu();
  const cpu = new CpuBackend('test');
  const recording = Object.assign(Object.create(cpu) as CpuBackend, {
    merge: (op: MergeOp, signal?: AbortSignal) => { onCpu.add(op); return cpu.merge(op, signal); },
  });
  try {
    gpu = new WebGpuBackend(await requestMergeDevice(await requestAdapter(nodeGpu.gpu)), { cpu: () => recording });
  } catch (e) {
    if ((e as { code?: string }).code !== 'GPU_UNAVAILABLE') throw e;
    return;
  }
  const g = gpu;
  backend = Object.assign(Object.create(g) as WebGpuBackend, {
    merge: (op: MergeOp, signal?: AbortSignal) => g.merge(op, signal).catch((e: unknown) => {
      if ((e as { code?: string }).code === 'NON_FINITE') refused.push(`${op.name} ${op.outDtype} on ${onCpu.has(op) ? 'the CPU' : 'the GPU'}`);
      throw e;
    }),
  });
});
afterAll(() => {
  gpu?.dispose();
  nodeGpu?.dispose();
});

// No adapter (no Vulkan driver, not even SwiftShader): every case skips.
beforeEach((ctx) => {
  if (!backend) ctx.skip('no WebGPU adapter');
});

describe('webgpu', () => overflowCases(() => backend!));

// After the cases (in file order): an f32 output with an update, and an op whose fp8 scale is
// recomputed, run on the CPU by design; every other refusal is met by the GPU's kernel.
it("the refusals above were met on the GPU's kernel, but for f32 outputs", () => {
  const q = 'model.layers.0.self_attn.q_proj.weight', qkv = 'double_blocks.0.img_attn.qkv.weight';
  expect(refused).toEqual([
    `${q} BF16 on the GPU`, `${q} F16 on the GPU`, `${q} BF16 on the GPU`, `${q} F16 on the GPU`, `${q} F32 on the CPU`, `${q} F16 on the GPU`,
    `${qkv} F16 on the GPU`, `${qkv} F32 on the CPU`,
    'model.layers.0.mlp.experts.gate_up_proj F16 on the GPU', 'model.layers.0.mlp.experts.gate_up_proj F16 on the GPU',
    'model.language_model.layers.0.mlp.experts.gate_up_proj F16 on the GPU',
  ]);
});

