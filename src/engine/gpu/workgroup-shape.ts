/**
 * The merge kernel's workgroup shape, on its own so that the backend's public options do not pull
 * the WebGPU typings into an embedder's compile (merge-program.ts uses them).
 */

/** Invocations per workgroup along column tiles (x) and row tiles (y). */
export interface WorkgroupShape {
  x: number;
  y: number;
}
