/**
 * Picks where the adapter algebra runs: `webgpu` insists on a GPU, `cpu` never touches one, `auto`
 * takes a hardware GPU and otherwise the CPU (a software adapter such as SwiftShader is a CPU
 * too, and a slower one for these products).
 */
import { webGpuUnavailable } from '../engine/gpu/browser-gpu.js';
import { requestAdapter, requestMergeDevice, adapterIsSoftware } from '../engine/gpu/gpu-device.js';
import type { AlgebraBackend } from './algebra-backend.js';
import { CpuAlgebra } from './cpu-algebra.js';
import { GpuAlgebra } from './gpu-algebra.js';

export async function createAlgebraBackend(kind: 'auto' | 'webgpu' | 'cpu', gpu: GPU | undefined): Promise<AlgebraBackend> {
  if (kind === 'cpu') return new CpuAlgebra();
  if (!gpu) {
    if (kind === 'webgpu') throw webGpuUnavailable();
    return new CpuAlgebra();
  }
  let adapter: GPUAdapter;
  try {
    adapter = await requestAdapter(gpu);
  } catch (e) {
    if (kind === 'webgpu') throw e;
    return new CpuAlgebra();
  }
  if (kind === 'auto' && adapterIsSoftware(adapter)) return new CpuAlgebra();
  return new GpuAlgebra(await requestMergeDevice(adapter));
}
