// `loramerge/node`: everything in `loramerge`, plus files on disk, Dawn's WebGPU (the optional
// `webgpu` package, loaded only when a GPU backend is asked for) and CPU worker threads.
export * from './index.js';
export type { ConvertLoraOptions } from './adapter-ops/one-call-jobs.js';
export type { GgufOutType } from './adapter-ops/convert.js';
export { merge, type NodeMergeOptions } from './node-merge.js';
// Shadow the browser entry's jobs: from Node they also take paths, write `out` paths, send the
// Hugging Face token and run on Dawn or the CPU.
export {
  combineLoras, convertLora, extractLora, resizeLora, type NodeAdapterJobOptions, type NodeCombineLorasOptions, type NodeConvertLoraOptions,
  type NodeExtractLoraOptions, type NodeResizeLoraOptions,
} from './node-adapter-jobs.js';
export { createNodeBackend, type NodeBackendOptions } from './engine/node-backend.js';
export { createCpuWorkerPool, type CpuWorkerPoolOptions } from './engine/cpu/cpu-worker-pool.js';
export { openNodeByteSource } from './io/node-byte-source.js';
export { openNodeInputFileSet } from './io/node-input-files.js';
// Shadow the browser entry's: from Node they also send the Hugging Face token (HF_TOKEN …).
export { urlByteSource, urlInputFileSet, type NodeUrlInputOptions } from './io/node-url-inputs.js';
export { createNodeOutputTarget, type NodeOutputKind, type NodeOutputOptions } from './io/node-output.js';
