/**
 * The merge worker: answers plan requests, runs merges with progress on the chosen backend, saves
 * into browser storage or a picked file or folder, and cancels through an AbortController. The page
 * never touches the library directly, so a long merge never blocks its main thread.
 */
import {
  createFileSystemAccessOutputTarget, createOpfsOutputTarget, generateSample, isMergeError, mergeModel, opfsWriterWorker, readImportanceMatrix,
  prepareMerge, type ImportanceMatrix, type InputFileSet, type OutputTarget,
} from '../src/index.js';
import { dominantUpdateDtype } from '../src/pipeline/dominant-dtype.js';
import { deleteAllJobs, deleteJob, deleteJobZip, fileAt, hasBrowserStorage, newJobFolder, zipJob } from './browser-storage.js';
import { reusingHeaders } from './base-header-cache.js';
import { pageWording } from './page-wording.js';
import { pickedFileSet } from './picked-file-set.js';
import { throttledProgress } from './progress-throttle.js';
import { checkPlan, readBaseFacts, readEachAdapter, summarizePlan, type WeightedFiles } from './plan-summary.js';
import { backendError, backendFor, describe } from './worker-backend.js';
import type { AdapterInput, AdapterReading, BackendInfo, MergedFile, PickedFile, PlanCheck, WorkerRequest, WorkerResponse } from './worker-protocol.js';
import type { BackendChoice } from '../src/index.js';

/** Every answer leaves in the page's words: this is the one way the engine's messages reach the page. */
const post = (message: WorkerResponse): void => self.postMessage(inPageWords(message));
const running = new Map<number, AbortController>();
/** Bases being read on their own (not merges: `running.size` says whether a merge runs). */
const reading = new Map<number, AbortController>();
/** Plans and checks under way: the page cancels one that newer inputs made stale, and it stops reading. */
const planning = new Map<number, AbortController>();

/**
 * Runs a plan or a check under a signal of its own, kept by the request's id for a cancel: one
 * cancelled answers `cancelled`, whatever its work came to (a stale plan is never posted).
 */
function planWork<T>(id: number, work: (signal: AbortSignal) => Promise<T>, answer: (result: T) => WorkerResponse, failed: (error: unknown) => Promise<WorkerResponse> | WorkerResponse): void {
  const controller = new AbortController();
  const { signal } = controller;
  planning.set(id, controller);
  work(signal).then(
    (result) => post(signal.aborted ? { type: 'cancelled', id } : answer(result)),
    async (error) => post(signal.aborted ? { type: 'cancelled', id } : await failed(error)),
  ).finally(() => planning.delete(id));
}
/** Browser-storage outputs are written on a worker of their own, so this one keeps the merge fed. */
const writer = opfsWriterWorker({
  createWorker: () => new Worker(new URL('../src/io/opfs-writer-worker.ts', import.meta.url), { type: 'module', name: 'loramerge-writer' }),
});
/** Leftovers of earlier visits go before anything new is written. */
const storageReady = deleteAllJobs();

const checkInPageWords = (check: PlanCheck): PlanCheck => ({ ...check, problems: check.problems.map((p) => ({ ...p, message: pageWording(p.message) })) });
const backendInPageWords = (backend: BackendInfo): BackendInfo => ({ ...backend, description: pageWording(backend.description) });
const readingInPageWords = (a: AdapterReading): AdapterReading =>
  'error' in a ? { ...a, error: pageWording(a.error) } : { ...a, facts: a.facts.map(pageWording), warnings: a.warnings.map(pageWording) };

/**
 * An answer with each of the engine's messages in it (errors, the plan's problems, warnings, notes
 * and left-out reasons, adapters' warnings, the output types' notes and refusals, the merge's
 * warnings, the backend's description) rewritten by pageWording; names, paths and numbers as they are.
 */
function inPageWords(response: WorkerResponse): WorkerResponse {
  switch (response.type) {
    case 'error':
      return { ...response, message: pageWording(response.message) };
    case 'plan-failed':
      return { ...response, message: pageWording(response.message), adapters: response.adapters.map(readingInPageWords) };
    case 'checked':
      return { ...response, check: checkInPageWords(response.check) };
    case 'backend':
      return { ...response, backend: backendInPageWords(response.backend) };
    case 'merged':
      return { ...response, warnings: response.warnings.map(pageWording), backend: backendInPageWords(response.backend) };
    case 'plan': {
      const { plan } = response;
      return {
        ...response,
        plan: {
          ...plan,
          ...checkInPageWords(plan),
          adapters: plan.adapters.map((a) => ({ ...a, facts: a.facts.map(pageWording), warnings: a.warnings.map(pageWording) })),
          leftOut: plan.leftOut.map((m) => ({ ...m, reason: pageWording(m.reason) })),
          notes: plan.notes.map(pageWording),
          output: {
            ...plan.output,
            keep: pageWording(plan.output.keep),
            types: plan.output.types.map((t) => ({ ...t, note: pageWording(t.note) })),
            ...(plan.output.imatrixTypes && { imatrixTypes: plan.output.imatrixTypes.map((t) => ({ ...t, note: pageWording(t.note) })) }),
            refused: Object.fromEntries(Object.entries(plan.output.refused).map(([name, why]) => [name, pageWording(why)])),
          },
        },
      };
    }
    case 'progress': case 'sample': case 'done': case 'cancelled': case 'base-read': case 'imatrix-read':
      return response; // no message: a progress phase is one of three fixed names
  }
}

function errorMessage(error: unknown): string {
  if (isMergeError(error)) return error.message;
  if (error instanceof DOMException && error.name === 'QuotaExceededError') {
    return 'the browser has no more disk space for this page: free some, or save to a file or folder you pick';
  }
  return `unexpected error: ${error instanceof Error ? error.message : String(error)}`;
}

/** `use`: 'plan' for plans and checks, which read no long sequential runs (picked-file-set.ts). */
function weighted(adapters: readonly AdapterInput[], use: Parameters<typeof pickedFileSet>[2] = 'merge'): WeightedFiles[] {
  return adapters.map((a) => ({ files: pickedFileSet(a.name, a.files, use), weight: a.weight, ...(a.oneTrainerCoft !== undefined ? { oneTrainerCoft: a.oneTrainerCoft } : {}) }));
}

/** The base's files, their headers served from the read made when the base was picked where it is the same File. */
function baseSet(name: string, files: PickedFile[], use: Parameters<typeof pickedFileSet>[2] = 'plan'): InputFileSet {
  return reusingHeaders(pickedFileSet(name, files, use), files).files;
}

/**
 * The importance matrix read when it was picked, for the merge of the very same File (its key, size
 * and modification time): a matrix is read whole (tens of MB for a large model), once, not again
 * by the merge. Only the last one read is kept.
 */
let keptImatrix: { key: number; size: number; lastModified: number; matrix: ImportanceMatrix } | undefined;
/** Counts picks and removals of the importance matrix: a read on pick is kept only while no later one came (a Remove during the read drops it). */
let imatrixPicks = 0;

/**
 * llama-imatrix's file read and checked as the CLI's --imatrix reads it; the file is closed either
 * way. The matrix read on pick serves the merge of the same File (`keep`: this is the pick's read,
 * the imatrixPicks count it was made at; kept only while that count stands).
 */
async function readImatrix(picked: PickedFile, keep?: number): Promise<ImportanceMatrix> {
  const { key, file } = picked;
  const kept = keptImatrix;
  if (kept && key !== undefined && kept.key === key && kept.size === file.size && kept.lastModified === file.lastModified) return kept.matrix;
  const source = await pickedFileSet(picked.path, [picked], 'plan').open(picked.path);
  try {
    const matrix = await readImportanceMatrix(source);
    if (keep === imatrixPicks && key !== undefined) keptImatrix = { key, size: file.size, lastModified: file.lastModified, matrix };
    return matrix;
  } finally {
    await source.close();
  }
}

/**
 * The importance matrix a plan or a check names, read on pick (kept: not read again); one that
 * cannot be read is said under its picker, and the plan is made without it.
 */
async function planImatrix(picked: PickedFile | undefined): Promise<ImportanceMatrix | undefined> {
  return picked && readImatrix(picked).catch(() => undefined);
}

/**
 * The very files of a plan or a check (each File's key, size and time, in order), or undefined
 * where one came without a key: what the saved tensors' refusals are kept by (plan-summary.ts).
 */
function filesKey(request: { base: PickedFile[]; adapters: AdapterInput[] }): string | undefined {
  const files = [request.base, ...request.adapters.map((a) => a.files)];
  if (files.some((set) => set.some((f) => f.key === undefined))) return undefined;
  return JSON.stringify(files.map((set) => set.map((f) => [f.key, f.path, f.file.size, f.file.lastModified])));
}

function toFiles(path: string, bytes: Uint8Array): PickedFile {
  return { path, file: new File([bytes as Uint8Array<ArrayBuffer>], path.split('/').pop() ?? path) };
}

async function setBackend(id: number, wanted: BackendChoice, threads: number | undefined): Promise<void> {
  try {
    post({ type: 'backend', id, backend: describe(wanted, await backendFor(wanted, undefined, threads, running.size === 0)) });
  } catch (error) {
    post({ type: 'error', id, message: backendError(error) });
  }
}

async function merge(request: Extract<WorkerRequest, { type: 'merge' }>): Promise<void> {
  const controller = new AbortController();
  running.set(request.id, controller);
  const started = performance.now();
  let prepared: Awaited<ReturnType<typeof prepareMerge>> | undefined;
  let job: { job: string; folder: FileSystemDirectoryHandle } | undefined;
  try {
    // Planned without read-ahead (a GGUF's metadata is a run long enough to start windows), then
    // merged with it, on the same open files.
    let planned = false;
    const readAhead = () => planned;
    // The signal reaches the plan too: planning tens of thousands of modules takes seconds.
    prepared = await prepareMerge(baseSet(request.baseName, request.base, readAhead), weighted(request.adapters, readAhead), { signal: controller.signal });
    planned = true;
    let output: OutputTarget;
    if (request.output.kind === 'browser-storage') {
      if (!hasBrowserStorage()) throw new Error('this browser has no private file storage; pick a file or folder to save to');
      await storageReady;
      job = await newJobFolder();
      output = createOpfsOutputTarget(job.folder, job.folder.name, { writer });
    } else {
      output = createFileSystemAccessOutputTarget(request.output.handle);
    }
    const importance = request.imatrix && await readImatrix(request.imatrix);
    const backend = await backendFor(request.choice, dominantUpdateDtype(prepared), request.threads);
    // Warnings the merge itself finds (NaN/Inf the base holds in tensors it only copies) come back with the result.
    const result = await mergeModel({
      prepared,
      output,
      outDtype: request.outDtype === 'same' ? undefined : request.outDtype, // checked by the base's container
      dtypeMergedOnly: request.dtypeMergedOnly,
      ...(importance ? { importance } : {}),
      backend,
      signal: controller.signal,
      onProgress: throttledProgress((progress) => post({ type: 'progress', id: request.id, progress: { ...progress } })),
    });
    const files: MergedFile[] = [];
    for (const path of result.files) {
      const file = job ? await fileAt(job.folder, path) : undefined;
      files.push({ path, size: file?.size ?? 0, file });
    }
    post({
      type: 'merged', id: request.id, job: job?.job, files,
      seconds: (performance.now() - started) / 1000, backend: describe(request.choice, backend), warnings: result.warnings.slice(),
    });
    job = undefined;
  } catch (error) {
    if (controller.signal.aborted) post({ type: 'cancelled', id: request.id });
    else post({ type: 'error', id: request.id, message: errorMessage(error) });
  } finally {
    if (job) await deleteJob(job.job);
    await prepared?.close();
    running.delete(request.id);
  }
}

function answer(id: number, work: Promise<File | undefined | void>): void {
  work.then(
    (file) => post({ type: 'done', id, ...(file ? { file } : {}) }),
    (error) => post({ type: 'error', id, message: errorMessage(error) }),
  );
}

// A request whose synchronous part throws is answered with the error: left uncaught it would reach
// the page as the worker's own failure, which fails every request.
self.addEventListener('message', (event: MessageEvent<WorkerRequest>) => {
  const request = event.data;
  try {
    handle(request);
  } catch (error) {
    post({ type: 'error', id: request.id, message: errorMessage(error) });
  }
});

function handle(request: WorkerRequest): void {
  switch (request.type) {
    case 'plan': {
      const adapters = weighted(request.adapters, 'plan');
      planWork(
        request.id,
        async (signal) => summarizePlan(baseSet(request.baseName, request.base), adapters, await planImatrix(request.imatrix), filesKey(request), signal),
        (plan) => ({ type: 'plan', id: request.id, plan }),
        async (error) => ({ type: 'plan-failed', id: request.id, message: errorMessage(error), adapters: await readEachAdapter(adapters, errorMessage) }),
      );
      break;
    }
    case 'check':
      planWork(
        request.id,
        async (signal) => checkPlan(baseSet(request.baseName, request.base), weighted(request.adapters, 'plan'), {
          dtype: request.outDtype === 'same' ? undefined : request.outDtype, dtypeMergedOnly: request.dtypeMergedOnly,
          importance: await planImatrix(request.imatrix), filesKey: filesKey(request), signal,
        }),
        (check) => ({ type: 'checked', id: request.id, check }),
        (error) => ({ type: 'error', id: request.id, message: errorMessage(error) }),
      );
      break;
    case 'merge':
      void merge(request);
      break;
    case 'cancel':
      running.get(request.id)?.abort();
      reading.get(request.id)?.abort();
      planning.get(request.id)?.abort();
      break;
    case 'read-base': {
      const controller = new AbortController();
      reading.set(request.id, controller);
      // What this reading takes is kept for the plan, the checks and the merge of the same files.
      const recorded = reusingHeaders(pickedFileSet(request.baseName, request.base, 'plan'), request.base, true);
      readBaseFacts(recorded.files, controller.signal).then(
        (base) => {
          if (controller.signal.aborted) return post({ type: 'cancelled', id: request.id });
          recorded.keep();
          post({ type: 'base-read', id: request.id, base });
        },
        (error) => post(controller.signal.aborted ? { type: 'cancelled', id: request.id } : { type: 'error', id: request.id, message: errorMessage(error) }),
      ).finally(() => reading.delete(request.id));
      break;
    }
    case 'read-imatrix':
      // A new pick is read again (another File, or this one changed): what it reads replaces what was kept.
      keptImatrix = undefined;
      readImatrix(request.file, ++imatrixPicks).then(
        (matrix) => post({ type: 'imatrix-read', id: request.id, tensors: matrix.entries.size }),
        (error) => post({ type: 'error', id: request.id, message: errorMessage(error) }),
      );
      break;
    case 'forget-imatrix':
      // Removed on the page: tens of MB for a large model are not held for a matrix no merge takes.
      imatrixPicks++;
      keptImatrix = undefined;
      break;
    case 'backend':
      void setBackend(request.id, request.choice, request.threads);
      break;
    case 'withdraw':
      answer(request.id, Promise.all([deleteJob(request.job), deleteJobZip(request.job)]).then(() => undefined));
      break;
    case 'zip':
      answer(request.id, zipJob(request.job, request.folder));
      break;
    case 'sample':
      generateSample(request.preset).then(
        (sample) => post({
          type: 'sample',
          id: request.id,
          base: Object.entries(sample.base).map(([p, b]) => toFiles(p, b)),
          adapter: Object.entries(sample.adapter).map(([p, b]) => toFiles(p, b)),
        }),
        (error) => post({ type: 'error', id: request.id, message: errorMessage(error) }),
      );
      break;
  }
}
