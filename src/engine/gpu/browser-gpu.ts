import { MergeError } from '../../errors.js';

/** The page's or worker's WebGPU entry point, if the environment has one. */
export function getBrowserGpu(): GPU | undefined {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu ?? undefined;
}

/**
 * The refusal of a `webgpu` backend where there is no WebGPU. Node has none of its own: there the
 * browser entry's call is the wrong one, and the error says which one runs on Dawn.
 */
export function webGpuUnavailable(): MergeError {
  const inNode = typeof (globalThis as { process?: { versions?: { node?: unknown } } }).process?.versions?.node === 'string';
  const where = inNode ? '; in Node, WebGPU runs on Dawn from loramerge/node (its merge(), combineLoras, resizeLora and extractLora, or createNodeBackend)' : '';
  return new MergeError('GPU_UNAVAILABLE', `WebGPU is not available in this environment${where}`);
}
