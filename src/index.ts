// The library for browsers, Web Workers and Node: what embedders need, nothing else.
// Node adds file I/O and Dawn's WebGPU through `loramerge/node` (src/node.ts).

// Browser types the declarations mention, so they compile under a plain Node configuration too.
export type {} from './platform-types.js';

// One call
export { merge, type MergeDestination, type MergeOptions, type MergeSource } from './merge.js';
export type { MergeOutcome, WeightedSource } from './pipeline/one-call-merge.js';

// Step by step: plan, look, merge
export { prepareMerge, type AdapterInput, type PreparedMerge, type PrepareMergeOptions } from './pipeline/prepare-merge.js';
export { mergeModel, type MergeModelOptions, type MergeResult } from './pipeline/merge-model.js';
export type { MergeProgress, ProgressListener } from './pipeline/progress.js';
export type {
  BiasUpdate, MergePlan, PlannedDora, PlannedReplacement, PlannedTerm, PlanProblem, PlanSummary, TensorUpdate,
} from './plan/merge-plan.js';
export {
  estimateUpdateMagnitudes, type MagnitudeOptions, type ReadBaseRows, type UpdateMagnitude,
} from './plan/update-magnitudes.js';
export type { BaseModel, BaseModelKind, BaseShard, BaseTensor } from './formats/base-model.js';
export {
  ADAPTER_FORMAT_NAMES, type AdapterFormat, type AdapterModule, type DoraFactor, type ModelPart, type ModuleAddress, type ModuleKind,
  type ParsedAdapter, type TensorReplacement, type UpdateShape,
} from './formats/adapter.js';

// Containers: safetensors and GGUF behind one seam (openModel reads either; the GGUF reader, writer
// and block codecs under it are the engine's)
export { openModel, type OpenModelOptions } from './formats/open-model.js';
export type { ContainerFormat, SidecarContext, StoredShard, StoredTensor, TensorFileWriter } from './formats/container.js';
export type { OutputTypeChoice, OutputTypeChoices } from './formats/output-types.js';
// llama-imatrix's importance matrices, for GGUF merges re-quantized as `llama-quantize --imatrix` does
export { readImportanceMatrix, type ImportanceMatrix } from './formats/gguf/imatrix.js';

// LoRA to LoRA: combine, resize, extract
export {
  combineLoras, COMBINE_METHODS, extractLora, resizeLora, type AdapterJobOptions, type AdapterJobOutcome, type CombineLorasOptions,
  type CombineMethod, type ExtractLoraOptions, type GrownRows, type MajoritySign, type ModuleReport, type RankRule, type ResizeLoraOptions,
} from './adapter-jobs.js';

// Backends and single ops
export { createBackend, type BackendOptions } from './engine/create-backend.js';
export type { BackendChoice } from './engine/backend-choice.js';
// `auto`'s kept timings: createBackend's decisionStore (default: localStorage where there is one).
export type { CachedDecision, DecisionCacheMode, DecisionStore } from './engine/backend-decision-cache.js';
// A CPU pool is made by createBrowserCpuWorkerPool (Node: createCpuWorkerPool) for createBackend's
// cpuPool; browserCpuPoolUnavailable says why there is none (merge() puts it in its outcome).
export type { CpuMergePool } from './engine/cpu/cpu-backend.js';
export {
  browserCpuPoolUnavailable, createBrowserCpuWorkerPool, type BrowserCpuPoolOptions,
} from './engine/cpu/browser-cpu-pool.js';
export type { GpuLimitCaps } from './engine/gpu/gpu-device.js';
export { mergeTensor } from './engine/merge-tensor.js';
export type { DoraSpec, ExactFactors, FloatTensorBytes, LowRankTerm, MergeBackend, MergeOp, WeightLayout } from './engine/merge-op.js';

// Inputs and outputs
export type { ByteSink, ByteSource, InputFileSet, OutputTarget } from './io/types.js';
export { blobInputFileSet, inputFileSetFromFiles, type BlobReadOptions } from './io/browser-input-files.js';
export { memoryInputFileSet } from './io/memory-source.js';
export { urlByteSource, urlInputFileSet, type FetchFunction, type UrlInputOptions } from './io/url-input-files.js';
export { createBlobOutputTarget, type BlobOutputTarget, type OutputBlob } from './io/blob-output.js';
export { createFileSystemAccessOutputTarget, type FileSystemAccessOutputOptions } from './io/fs-access-output.js';
export { createOpfsOutputTarget, opfsSyncWritesAvailable, type OpfsOutputOptions } from './io/opfs-output.js';
export { opfsWriterWorker, type OpfsFileWriter, type OpfsOpenFile, type OpfsWriterWorker } from './io/opfs-writer.js';

// Errors, limits on what a file may claim, dtypes, the sample, numbers for people
export { isMergeError, MergeError, type MergeErrorCode } from './errors.js';
// The limits: each refusal of a file past one names it (`the limit MAX_TENSORS`), and the README lists them.
export * from './limits.js';
export { OUT_DTYPE_NAMES, type DType, type FloatDType, type OutDTypeName } from './dtype.js';
export { generateSample, type SampleFiles, type SampleOptions, type SamplePreset } from './sample/index.js';
export { formatBytes } from './format.js';
