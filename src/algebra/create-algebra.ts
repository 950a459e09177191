/**
 * Picks where the adapter algebra runs: `webgpu` insists on a GPU, `cpu` never touches one, `auto`
 * takes a hardware GPU and otherwise the CPU (a software adapter such as SwiftShader is a CPU
 * too, and a slower one for these products). `cpu` makes the CPU's (the entry point's threads),
 * for the CPU chosen or for the products a GPU cannot bind (GpuAlgebra makes it with itself and names its threads in its description).
 */
import { webGpuUnavailable } from '../engine/gpu/browser-gpu.js';
import { requestAdapter, requestMergeDevice, adapterIsSoftware } from '../engine/gpu/gpu-device.js';
import type { AlgebraBackend } from './algebra-backend.js';
import { CpuAlgebra } from './cpu-algebra.js';
import { GpuAlgebra } from './gpu-algebra.js';

export async function createAlgebraBackend(
  kind: 'auto' | 'webgpu' | 'cpu', gpu: GPU | undefined, cpu: () => AlgebraBackend = () => new CpuAlgebra(),
): Promise<AlgebraBackend> {
  if (kind === 'cpu') return cpu();
  if (!gpu) {
    if (kind === 'webgpu') throw webGpuUnavailable();
    return cpu();
  }
  let adapter: GPUAdapter;
  try {
    adapter = await requestAdapter(gpu);
  } catch (e) {
    if (kind === 'webgpu') throw e;
    return cpu();
  }
  if (kind === 'auto' && adapterIsSoftware(adapter)) return cpu();
  return new GpuAlgebra(await requestMergeDevice(adapter), cpu);
}
