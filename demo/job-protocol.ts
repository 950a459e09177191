/**
 * Messages between the page and the adapter-job worker (combine, resize, extract, convert). Like the merge
 * worker's: Files travel as they are, results come back as plain data and disk-backed Files.
 */
import type { BackendChoice, CombineMethod, MajoritySign, ModuleReport, RankRule } from '../src/index.js';
import type { AdapterSummary, BaseFacts, MergedFile, PickedFile, ProgressEvent } from './worker-protocol.js';

export type JobMode = 'combine' | 'resize' | 'extract' | 'convert';
export type OutputKind = 'peft' | 'kohya';

/** A picked adapter or model, by the name the page shows. */
export interface JobInput {
  name: string;
  files: PickedFile[];
  /** `name` is the folder's (PickedSet.namesFolder); a conversion's general.* keys read it. */
  namesFolder?: boolean;
}

export type JobSpec =
  | {
    kind: 'combine'; adapters: (JobInput & { weight: number })[]; method: CombineMethod; rank?: number; density?: number;
    majoritySign?: MajoritySign; seed?: number; clampQuantile?: number; format: OutputKind;
  }
  | { kind: 'resize'; adapter: JobInput; rule: RankRule; format: OutputKind }
  | { kind: 'extract'; base: JobInput; tuned: JobInput; rank?: number; energy?: number; format: OutputKind }
  /** A PEFT adapter written as a llama.cpp LoRA GGUF for `base` (read for its tensor names and head counts), as convertLora does. */
  | { kind: 'convert'; adapter: JobInput; base: JobInput };

export type JobRequest =
  /**
   * Reads one adapter's header: its facts, and whether only a kohya file can name its modules;
   * `check: 'convert'` (picked for a conversion) also says why convert cannot take it, where it cannot.
   */
  | { type: 'describe'; id: number; adapter: JobInput; check?: 'convert' }
  /** Reads an extraction's base or fine-tuned model's, or a conversion's model's, headers as soon as it is picked (a `cancel` drops it). */
  | { type: 'read-model'; id: number; model: JobInput; slot: ModelSlot }
  /**
   * Once a conversion's adapter and model are both read: what convert refuses of that adapter on
   * that model (a module the model has no tensor for, an update that does not fit it …), from
   * their headers, before Convert is pressed.
   */
  | { type: 'check-convert'; id: number; adapter: JobInput; model: JobInput }
  /**
   * `outName` names the zip of a PEFT folder and the folder inside it; `threads`: the CPU's (the
   * header's "CPU threads", the library's `threads`), undefined for the library's default.
   */
  | { type: 'run'; id: number; spec: JobSpec; backend: BackendChoice; outName: string; threads?: number }
  | { type: 'cancel'; id: number }
  /** Deletes a result's files from browser storage. */
  | { type: 'withdraw'; id: number; job: string };

/** The models the jobs read: an extraction's base and fine-tuned model, a conversion's model (`target`, the one the LoRA is for). */
export type ModelSlot = 'base' | 'tuned' | 'target';

export interface AdapterFacts extends AdapterSummary {
  kohyaNames: boolean;
  /** Asked for (`check: 'convert'`): the one line convert refuses the adapter with, whatever the model; none where it takes it. */
  convertRefusal?: string;
}

export interface JobDone {
  /** The browser-storage folder holding the files. */
  job: string;
  /** `gguf`: a conversion's llama.cpp LoRA, one `adapter.gguf`. */
  format: OutputKind | 'gguf';
  files: MergedFile[];
  /** A PEFT folder packed as one stored zip. */
  zip?: MergedFile;
  report: ModuleReport[];
  warnings: string[];
  seconds: number;
  backend: string;
}

export type JobResponse =
  | { type: 'described'; id: number; facts: AdapterFacts }
  | { type: 'model-read'; id: number; facts: BaseFacts }
  /** `refusal`: the one line convert refuses the adapter with on that model; none where it takes it. */
  | { type: 'convert-checked'; id: number; refusal?: string }
  | { type: 'progress'; id: number; progress: ProgressEvent }
  | { type: 'finished'; id: number; done: JobDone }
  | { type: 'withdrawn'; id: number }
  | { type: 'cancelled'; id: number }
  | { type: 'error'; id: number; message: string };
