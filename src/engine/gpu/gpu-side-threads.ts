/**
 * How a WebGPU backend's description names the CPU threads that run what the GPU leaves to the CPU
 * (f32 outputs, DoRA and other update steps, a tensor or product too wide to bind), in the words
 * the CPU's own description uses for its threads.
 */

/** `, with 2 CPU threads for what the GPU leaves to the CPU`; empty where the count is not known (an executor the caller made). */
export function gpuSideThreads(threads: number | undefined): string {
  if (threads === undefined) return '';
  return `, with ${threads} CPU thread${threads === 1 ? '' : 's'} for what the GPU leaves to the CPU`;
}
