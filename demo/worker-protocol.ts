/**
 * Messages between the page and the merge worker. Everything here survives structured cloning:
 * File objects and File System Access handles travel as they are, results come back as plain data.
 */
import type { BackendChoice, OutputTypeChoices } from '../src/index.js';
import type { ChartPlace } from './chart-groups.js';

/** One picked file and its path inside the folder the user chose ('' folder for loose files). */
export interface PickedFile {
  path: string;
  file: File;
  /**
   * The page's name for `file`, the same for the same File object (a File reaches the worker as a
   * new object with each message): the worker reuses a base's headers only for the File it read.
   */
  key?: number;
}

export interface AdapterInput {
  name: string;
  files: PickedFile[];
  weight: number;
  /**
   * How a OneTrainer OFT file saved without its training config by a OneTrainer that had COFT was
   * trained (the adapter card's "OneTrainer COFT", the CLI's --onetrainer-coft, the library's
   * oneTrainerCoft): false off, true on at coft_eps 1e-4, a number on at that coft_eps; absent, not said.
   */
  oneTrainerCoft?: boolean | number;
}

/** `same` keeps each tensor's type; anything else is one of the base container's output types (`f8_e4m3`, `q4_k`…). */
export type OutDTypeChoice = string;

/**
 * Where the merged files go:
 * - `browser-storage`: the browser's private disk space (OPFS), then download links to those files;
 * - `file` / `directory`: streamed into a file or folder the user picked (File System Access).
 */
export type OutputChoice =
  | { kind: 'browser-storage' }
  | { kind: 'file'; handle: FileSystemFileHandle }
  | { kind: 'directory'; handle: FileSystemDirectoryHandle };

export type WorkerRequest =
  /** imatrix: the importance matrix read for a GGUF base, which the plan's warnings name (the CLI's plan with --imatrix). */
  | { type: 'plan'; id: number; baseName: string; base: PickedFile[]; adapters: AdapterInput[]; imatrix?: PickedFile }
  /** The plan's problems again at new weights (weight 0, the same adapter twice… depend on them). */
  /**
   * outDtype: the Output dtype menu's choice, so the plan's warnings can name it ('same' keeps each
   * tensor's type); dtypeMergedOnly and imatrix as the merge would take them.
   */
  | { type: 'check'; id: number; baseName: string; base: PickedFile[]; adapters: AdapterInput[]; outDtype: OutDTypeChoice; dtypeMergedOnly: boolean; imatrix?: PickedFile }
  /**
   * choice: the header's backend as it stood when the merge started (not the worker's last
   * 'backend' request, which may still wait for one before it); threads: the CPU's (the library's
   * `threads`), undefined for its default.
   */
  /** imatrix: llama-imatrix's file for a GGUF base, the merged tensors re-quantized with it (the CLI's --imatrix). */
  | { type: 'merge'; id: number; baseName: string; base: PickedFile[]; adapters: AdapterInput[]; outDtype: OutDTypeChoice; dtypeMergedOnly: boolean; output: OutputChoice; choice: BackendChoice; threads?: number; imatrix?: PickedFile }
  /** An importance matrix read as soon as it is picked: how many tensors it covers, or why it cannot be used. */
  | { type: 'read-imatrix'; id: number; file: PickedFile }
  /** The importance matrix was removed: the worker lets go of the one it read (and of any read still under way); no answer. */
  | { type: 'forget-imatrix'; id: number }
  | { type: 'cancel'; id: number }
  /** The base alone, read as soon as it is picked: its headers, so a file that is no model is refused before any adapter is added. */
  | { type: 'read-base'; id: number; baseName: string; base: PickedFile[] }
  | { type: 'sample'; id: number; preset: 'small' | 'large' }
  /** The backend the header shows, with the CPU's `threads` (undefined: the library's default): made ready for the merges to come. */
  | { type: 'backend'; id: number; choice: BackendChoice; threads?: number }
  /** Deletes a merge's files from browser storage (the page withdrew its result). */
  | { type: 'withdraw'; id: number; job: string }
  /** Packs a merge's files from browser storage into one stored zip, also in browser storage. */
  | { type: 'zip'; id: number; job: string; folder: string };

/** What the page shows about one adapter: facts as the worker words them (r, α, α/r, format…). */
export interface AdapterSummary {
  name: string;
  facts: string[];
  warnings: string[];
  /** A OneTrainer OFT file whose COFT setting only the user can say (asksOneTrainerCoft): its card offers it. */
  asksCoft?: boolean;
}

/**
 * One adapter read alone, when the plan could not be made: its facts, or why it cannot be read, so
 * that each card says its own and the plan names the adapter that blocks it.
 */
export type AdapterReading = AdapterSummary | { name: string; error: string; asksCoft?: boolean };

export interface PlannedModule {
  adapter: number;
  module: string;
  target: string;
  shape: number[];
  /** How the module's tensors make ΔW: `LoRA`, `LoKr`, `LoHa + DoRA`, `(IA)³`… */
  algorithm: string;
  /** The rank ΔW is built at, for low-rank algorithms. */
  rank?: number;
  /** `rows 0–1279` when ΔW lands on part of the tensor (a slice of a fused qkv). */
  rows?: string;
  /** α/r (or α/√r) at weight 1; the page multiplies by the slider. */
  scale: number;
}

/** ‖ΔW‖ / ‖W‖ (s·B·A, or W' − W of a map of W) at weight 1 for one adapter's module; the page multiplies by the (signed) weight. */
export interface UpdateMagnitude {
  adapter: number;
  module: string;
  target: string;
  /** The target's block of the model (x axis) and module kind (series), placed knowing the whole model. */
  place: ChartPlace;
  /** NaN: not measured before the merge (PEFT DEFT or PEANuT on a large weight stored by outputs). */
  ratio: number;
}

export interface Problem {
  severity: 'error' | 'warning';
  message: string;
}

/** A module not merged because it names a component the base does not hold, and why. */
export interface LeftOutModule {
  adapter: number;
  module: string;
  reason: string;
}

/** One weight file the merge writes, and what happens to it. */
export interface OutputFilePlan {
  path: string;
  tensors: number;
  /** Tensors an update, bias or replacement lands on. */
  changed: number;
  /** Weights stored quantized (bitsandbytes) that are dequantized and written as floats, changed or not. */
  dequantized: number;
  /** Written byte for byte as it was when nothing in it changes (a pipeline component). */
  mirrorable: boolean;
  /**
   * An output head tied to the embedding in this file: `tied`, it stays the embedding and changes
   * with it; `untied`, it is written as a tensor of its own (`changed`: an adapter changes it).
   */
  head?: { name: string; embedding: string; how: 'tied' } | { name: string; how: 'untied'; changed: boolean };
}

/** What the base is, from its headers alone (the plan's `base` says the same once adapters are added). */
export interface BaseFacts {
  /** Weight files (shards). */
  files: number;
  tensors: number;
  /** The tensors' bytes. */
  bytes: number;
  /** The most common stored type. */
  dtype: string;
  /** `safetensors` or `gguf`. */
  container: string;
}

/** The plan's problems as they stand at the adapters' weights. */
export interface PlanCheck {
  problems: Problem[];
  /** False when a problem stops the merge. */
  mergeable: boolean;
}

export interface PlanSummary extends PlanCheck {
  base: { name: string; files: number; tensors: number; bytes: number; dtype: string; kind: string; container: string };
  /** The output types the base's container offers (the dtype menu); `refused`: those this merge cannot write, and why. */
  output: OutputTypeChoices & { refused: Record<string, string> };
  adapters: AdapterSummary[];
  modules: PlannedModule[];
  leftOut: LeftOutModule[];
  /** What the merged model gains besides new values (an untied lm_head, config.json changes…). */
  notes: string[];
  magnitudes: UpdateMagnitude[];
  /** Weight files in the order they are written; `copied`: every other file, copied unchanged. */
  files: OutputFilePlan[];
  copied: string[];
}

export interface ProgressEvent {
  phase: string;
  tensorsDone: number;
  tensorsTotal: number;
  bytesDone: number;
  bytesTotal: number;
  tensor?: string;
}

/** One merged file; `file` is set when it can be offered as a download (browser storage). */
export interface MergedFile {
  path: string;
  size: number;
  file?: File;
}

export interface BackendInfo {
  choice: BackendChoice;
  kind: 'webgpu' | 'cpu';
  /**
   * The library's own words, which say the CPU threads: a CPU's (`CPU (WebAssembly SIMD, 2
   * threads; …)`), a WebGPU one's for what the GPU leaves to the CPU (`WebGPU: …, with 2 CPU
   * threads for what the GPU leaves to the CPU`).
   */
  description: string;
}

export type WorkerResponse =
  | { type: 'backend'; id: number; backend: BackendInfo }
  | { type: 'plan'; id: number; plan: PlanSummary }
  | { type: 'checked'; id: number; check: PlanCheck }
  | { type: 'base-read'; id: number; base: BaseFacts }
  | { type: 'imatrix-read'; id: number; tensors: number }
  /** No plan: why, and each adapter read alone. */
  | { type: 'plan-failed'; id: number; message: string; adapters: AdapterReading[] }
  | { type: 'sample'; id: number; base: PickedFile[]; adapter: PickedFile[] }
  | { type: 'progress'; id: number; progress: ProgressEvent }
  /** `warnings`: what the merge itself found (NaN/Inf the base holds in copied tensors…). */
  | { type: 'merged'; id: number; job?: string; files: MergedFile[]; seconds: number; backend: BackendInfo; warnings: string[] }
  | { type: 'done'; id: number; file?: File }
  | { type: 'cancelled'; id: number }
  | { type: 'error'; id: number; message: string };
