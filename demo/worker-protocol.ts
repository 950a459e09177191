/**
 * Messages between the page and the merge worker. Everything here survives structured cloning:
 * File objects and File System Access handles travel as they are, results come back as plain data.
 */
import type { BackendChoice } from '../src/index.js';

/** One picked file and its path inside the folder the user chose ('' folder for loose files). */
export interface PickedFile {
  path: string;
  file: File;
}

export interface AdapterInput {
  name: string;
  files: PickedFile[];
  weight: number;
}

export type OutDTypeChoice = 'same' | 'f32' | 'f16' | 'bf16';

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
  | { type: 'plan'; id: number; baseName: string; base: PickedFile[]; adapters: AdapterInput[] }
  | { type: 'merge'; id: number; baseName: string; base: PickedFile[]; adapters: AdapterInput[]; outDtype: OutDTypeChoice; output: OutputChoice }
  | { type: 'cancel'; id: number }
  | { type: 'sample'; id: number; preset: 'small' | 'large' }
  | { type: 'backend'; id: number; choice: BackendChoice }
  /** Deletes a merge's files from browser storage (the page withdrew its result). */
  | { type: 'withdraw'; id: number; job: string }
  /** Packs a merge's files from browser storage into one stored zip, also in browser storage. */
  | { type: 'zip'; id: number; job: string; folder: string };

/** What the page shows about one adapter: facts as the worker words them (r, α, α/r, format…). */
export interface AdapterSummary {
  name: string;
  facts: string[];
  warnings: string[];
}

export interface PlannedModule {
  adapter: number;
  module: string;
  target: string;
  shape: number[];
  /** α/r (or α/√r) at weight 1; the page multiplies by the slider. */
  scale: number;
}

/** ‖s·B·A‖ / ‖W‖ at weight 1 for one adapter's module; the page multiplies by the (signed) weight. */
export interface UpdateMagnitude {
  adapter: number;
  module: string;
  target: string;
  moduleType: string;
  ratio: number;
}

export interface Problem {
  /** `note`: what the merged model gains besides new values (an untied head, a resized vocabulary…). */
  severity: 'error' | 'warning' | 'note';
  message: string;
}

export interface PlanSummary {
  base: { name: string; files: number; tensors: number; bytes: number; dtype: string; kind: string };
  adapters: AdapterSummary[];
  modules: PlannedModule[];
  problems: Problem[];
  magnitudes: UpdateMagnitude[];
  /** False when a problem stops the merge. */
  mergeable: boolean;
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
  description: string;
}

export type WorkerResponse =
  | { type: 'backend'; id: number; backend: BackendInfo }
  | { type: 'plan'; id: number; plan: PlanSummary }
  | { type: 'sample'; id: number; base: PickedFile[]; adapter: PickedFile[] }
  | { type: 'progress'; id: number; progress: ProgressEvent }
  | { type: 'merged'; id: number; job?: string; files: MergedFile[]; seconds: number; backend: BackendInfo }
  | { type: 'done'; id: number; file?: File }
  | { type: 'cancelled'; id: number }
  | { type: 'error'; id: number; message: string };
