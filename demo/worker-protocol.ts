/**
 * Messages between the page and the merge worker. Everything here survives structured cloning:
 * File objects and File System Access handles travel as they are, results come back as plain data.
 */

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

/** Where the merged files go: into memory (then a download link), or streamed into a folder on disk. */
export type OutputChoice =
  | { kind: 'memory' }
  | { kind: 'directory'; handle: FileSystemDirectoryHandle };

export type WorkerRequest =
  | { type: 'plan'; id: number; baseName: string; base: PickedFile[]; adapters: AdapterInput[] }
  | { type: 'merge'; id: number; baseName: string; base: PickedFile[]; adapters: AdapterInput[]; outDtype: OutDTypeChoice; output: OutputChoice }
  | { type: 'cancel'; id: number }
  | { type: 'sample'; id: number; preset: 'small' | 'large' };

/** What the page shows about one adapter: r, α and α/r (ranges when modules differ). */
export interface AdapterSummary {
  name: string;
  format: string;
  modules: number;
  rank: string;
  alpha: string;
  scale: string;
  warnings: string[];
}

export interface PlannedModule {
  adapter: number;
  module: string;
  target: string;
  shape: number[];
  /** α/r (or α/√r) times the weight the plan was made with. */
  scale: number;
}

/** ‖s·B·A‖ / ‖W‖ at weight 1 for one adapter's module; the page multiplies by |weight|. */
export interface UpdateMagnitude {
  adapter: number;
  module: string;
  target: string;
  /** Layer index from the module name (null when it has none) and the module's own name. */
  layer: number | null;
  moduleType: string;
  ratio: number;
}

export interface Problem {
  severity: 'error' | 'warning';
  message: string;
}

export interface PlanSummary {
  base: { name: string; files: number; tensors: number; bytes: number; dtype: string };
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

/** One merged file: in memory as a Blob, or already on disk (then `blob` is read back lazily from it). */
export interface MergedFile {
  path: string;
  size: number;
  blob?: Blob;
}

export type WorkerResponse =
  | { type: 'backend'; kind: 'webgpu' | 'cpu'; description: string }
  | { type: 'plan'; id: number; plan: PlanSummary }
  | { type: 'sample'; id: number; base: PickedFile[]; adapter: PickedFile[] }
  | { type: 'progress'; id: number; progress: ProgressEvent }
  | { type: 'merged'; id: number; files: MergedFile[]; seconds: number }
  | { type: 'cancelled'; id: number }
  | { type: 'error'; id: number; message: string };
