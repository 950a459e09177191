/**
 * The adapter-job worker: combine, resize, extract and convert through the library's one-call functions,
 * on WebGPU (navigator.gpu) or the CPU as the header's choice says, the CPU on as many threads as
 * its "CPU threads" box says, with progress and cancel.
 * Results go to browser storage like a merge's (a folder per job, held by a Web Lock, deleted
 * when the page withdraws them); a PEFT folder is also packed into one stored zip.
 */
import {
  combineLoras, createOpfsOutputTarget, extractLora, isMergeError, resizeLora, type AdapterJobOutcome, type MergeProgress,
} from '../src/index.js';
import { factorBytes, kohyaNamedAdapter } from '../src/adapter-ops/module-updates.js';
import { checkConvertFactors, checkConvertInputs, checkConvertOnModel, convertLoraJob, type AdapterJobHooks } from '../src/adapter-ops/one-call-jobs.js';
import { openGgufBase } from '../src/adapter-ops/gguf-base.js';
import { inLibraryWords } from '../src/library-wording.js';
import { openAdapter } from '../src/formats/adapter.js';
import { deleteJob, deleteJobZip, fileAt, hasBrowserStorage, newJobFolder, zipJob } from './browser-storage.js';
import type { AdapterFacts, JobRequest, JobResponse } from './job-protocol.js';
import { adapterSlot, reusingHeaders } from './base-header-cache.js';
import { pageWording } from './page-wording.js';
import { pickedFileSet } from './picked-file-set.js';
import { readBaseFacts, summarizeAdapter } from './plan-summary.js';
import type { MergedFile, PickedFile } from './worker-protocol.js';
import type { InputFileSet, OutputTarget } from '../src/index.js';

/** Every answer leaves in the page's words: this is the one way the engine's messages reach the job page. */
const post = (message: JobResponse): void => self.postMessage(inPageWords(message));

/** An answer with the engine's messages in it (errors, adapters' facts and warnings, a job's warnings) rewritten by pageWording. */
function inPageWords(response: JobResponse): JobResponse {
  switch (response.type) {
    case 'error':
      return { ...response, message: pageWording(response.message) };
    case 'described':
      return {
        ...response,
        facts: {
          ...response.facts, facts: response.facts.facts.map(pageWording), warnings: response.facts.warnings.map(pageWording),
          ...(response.facts.convertRefusal !== undefined && { convertRefusal: pageWording(response.facts.convertRefusal) }),
        },
      };
    case 'finished':
      return { ...response, done: { ...response.done, warnings: response.done.warnings.map(pageWording), backend: pageWording(response.done.backend) } };
    case 'convert-checked':
      return response.refusal === undefined ? response : { ...response, refusal: pageWording(response.refusal) };
    case 'progress': case 'withdrawn': case 'cancelled': case 'model-read':
      return response;
  }
}
const running = new Map<number, AbortController>();
/** Models being read on their own, as they are picked (not jobs). */
const reading = new Map<number, AbortController>();

function errorMessage(error: unknown): string {
  if (isMergeError(error)) return error.message;
  if (error instanceof DOMException && error.name === 'QuotaExceededError') {
    return 'the browser has no more disk space for this page: free some and try again';
  }
  return `unexpected error: ${error instanceof Error ? error.message : String(error)}`;
}

/** A job's adapter, read through what its reading on pick kept (its header and config, not read again). */
function adapterSet(name: string, files: readonly PickedFile[], namesFolder = false, use: 'merge' | 'plan' = 'merge'): InputFileSet {
  const slot = adapterSlot(files);
  const set = pickedFileSet(name, files, use, namesFolder);
  return slot ? reusingHeaders(set, files, false, slot).files : set;
}

/**
 * An adapter picked for a conversion whose factors (all its tensors) are at most this many bytes is
 * read whole on pick, so that a factor holding NaN or Inf is said then, as convert would say it;
 * a larger one's factors are first read when Convert is pressed.
 */
const MAX_PICK_FACTOR_BYTES = 256 * 1024 * 1024;

async function describe(request: Extract<JobRequest, { type: 'describe' }>): Promise<void> {
  try {
    // Its header and config only: no windows read ahead. What it reads is kept for the job.
    const { files } = request.adapter;
    const slot = adapterSlot(files);
    const set = pickedFileSet(request.adapter.name, files, 'plan');
    const recorded = slot ? reusingHeaders(set, files, true, slot) : { files: set, keep: () => {} };
    const adapter = await openAdapter(recorded.files);
    let facts: AdapterFacts;
    let readFactors = false;
    try {
      // What convert refuses whatever the model (kohya names, a llama.cpp LoRA, DoRA …, a README.md
      // beside it that is not UTF-8): said on pick, in the line the conversion would end with.
      let convertRefusal: string | undefined;
      if (request.check === 'convert') {
        try {
          await checkConvertInputs(adapter, recorded.files);
        } catch (error) {
          convertRefusal = errorMessage(error);
        }
        readFactors = convertRefusal === undefined && adapter.modules.reduce((n, m) => n + factorBytes(m), 0) <= MAX_PICK_FACTOR_BYTES;
      }
      facts = { ...summarizeAdapter(adapter), kohyaNames: kohyaNamedAdapter([adapter]) !== undefined, ...(convertRefusal !== undefined && { convertRefusal }) };
      recorded.keep();
    } finally {
      await adapter.file.source.close();
    }
    if (readFactors) {
      const convertRefusal = await factorRefusal(request.adapter.name, files);
      if (convertRefusal !== undefined) facts = { ...facts, convertRefusal };
    }
    post({ type: 'described', id: request.id, facts });
  } catch (error) {
    post({ type: 'error', id: request.id, message: errorMessage(error) });
  }
}

/**
 * What convert refuses of the adapter's factors (one holding NaN or Inf), read as the conversion
 * reads them, its headers through what its reading on pick kept; undefined where it takes them.
 */
async function factorRefusal(name: string, files: readonly PickedFile[]): Promise<string | undefined> {
  const adapter = await openAdapter(adapterSet(name, files));
  try {
    await checkConvertFactors(adapter);
    return undefined;
  } catch (error) {
    if (!isMergeError(error)) throw error;
    return errorMessage(error);
  } finally {
    await adapter.file.source.close();
  }
}

/**
 * What convert refuses of a picked adapter on a picked model, both read already: their headers
 * read again through what their reading on pick kept, the model opened as the conversion opens it.
 */
async function checkConvert(request: Extract<JobRequest, { type: 'check-convert' }>): Promise<void> {
  try {
    // Headers only: no windows read ahead.
    const adapter = await openAdapter(adapterSet(request.adapter.name, request.adapter.files, false, 'plan'));
    try {
      const model = reusingHeaders(pickedFileSet(request.model.name, request.model.files, 'plan'), request.model.files, false, 'target').files;
      let refusal: string | undefined;
      try {
        // Opened as the conversion opens it: where it cannot be, that is convert's refusal too.
        const base = await openGgufBase(model, request.model.name).catch((e: unknown) => { throw inLibraryWords(e); });
        try {
          checkConvertOnModel(adapter, base, request.model.name);
        } finally {
          await base.model.close();
        }
      } catch (error) {
        if (!isMergeError(error)) throw error;
        refusal = errorMessage(error);
      }
      post({ type: 'convert-checked', id: request.id, ...(refusal !== undefined && { refusal }) });
    } finally {
      await adapter.file.source.close();
    }
  } catch (error) {
    post({ type: 'error', id: request.id, message: errorMessage(error) });
  }
}

/**
 * The hooks of a conversion on the page: its sources are the page's picked files, its output the
 * job's folder in browser storage, written as the llama.cpp LoRA GGUF (`adapter.gguf`) that the
 * library's Node entry writes for a `.gguf` path. No algebra runs.
 */
function pageGgufHooks(out: OutputTarget): AdapterJobHooks<string> {
  return {
    checkSource: () => {},
    checkOutput: () => {},
    fixedFormat: () => ({ format: 'gguf', kohyaAdvice: 'choose the Combine or Resize mode, saved as a kohya .safetensors file' }),
    openSource: async (source) => source as InputFileSet,
    openOutput: async () => out,
    createAlgebra: () => Promise.reject(new Error('a conversion runs no algebra')),
  };
}

async function runJob(request: Extract<JobRequest, { type: 'run' }>): Promise<void> {
  const controller = new AbortController();
  running.set(request.id, controller);
  const started = performance.now();
  let job: { job: string; folder: FileSystemDirectoryHandle } | undefined;
  try {
    if (!hasBrowserStorage()) throw new Error('this browser has no private file storage to save the adapter in');
    job = await newJobFolder();
    const { spec } = request;
    const common = {
      out: createOpfsOutputTarget(job.folder),
      format: spec.kind === 'convert' ? undefined : spec.format,
      backend: request.backend,
      // The header's count, as merges take it; the library's default where the page gives none.
      ...(request.threads !== undefined ? { threads: request.threads } : {}),
      signal: controller.signal,
      onProgress: (progress: MergeProgress) => post({ type: 'progress', id: request.id, progress: { ...progress } }),
    };
    let outcome: AdapterJobOutcome;
    if (spec.kind === 'convert') {
      const folder = job.folder;
      outcome = await convertLoraJob({
        adapter: adapterSet(spec.adapter.name, spec.adapter.files, spec.adapter.namesFolder === true),
        base: reusingHeaders(pickedFileSet(spec.base.name, spec.base.files), spec.base.files, false, 'target').files,
        // Its name is what the library's messages call the output.
        out: `${request.outName}.gguf`,
        signal: controller.signal,
        onProgress: common.onProgress,
      }, pageGgufHooks(createOpfsOutputTarget(folder)));
    } else if (spec.kind === 'combine') {
      outcome = await combineLoras({
        ...common,
        adapters: spec.adapters.map((a) => ({ source: adapterSet(a.name, a.files), weight: a.weight })),
        method: spec.method, rank: spec.rank, density: spec.density, majoritySign: spec.majoritySign, seed: spec.seed,
        clampQuantile: spec.clampQuantile,
      });
    } else if (spec.kind === 'resize') {
      outcome = await resizeLora({ ...common, adapter: adapterSet(spec.adapter.name, spec.adapter.files), rule: spec.rule });
    } else {
      outcome = await extractLora({
        ...common,
        base: reusingHeaders(pickedFileSet(spec.base.name, spec.base.files), spec.base.files, false, 'base').files,
        tuned: reusingHeaders(pickedFileSet(spec.tuned.name, spec.tuned.files), spec.tuned.files, false, 'tuned').files,
        rank: spec.rank, energy: spec.energy,
      });
    }
    // A GGUF only where the page asked for one (a conversion).
    if ((outcome.format === 'gguf') !== (spec.kind === 'convert')) throw new Error(`the ${spec.kind} wrote a ${outcome.format} adapter`);
    const files: MergedFile[] = [];
    for (const path of outcome.files) {
      const file = await fileAt(job.folder, path);
      files.push({ path, size: file.size, file });
    }
    const zip = outcome.format === 'peft' ? await zipJob(job.job, request.outName) : undefined;
    post({
      type: 'finished', id: request.id,
      done: {
        job: job.job, format: outcome.format, files, zip: zip && { path: zip.name, size: zip.size, file: zip },
        report: outcome.modules, warnings: outcome.warnings, seconds: (performance.now() - started) / 1000, backend: outcome.backend,
      },
    });
    job = undefined;
  } catch (error) {
    if (controller.signal.aborted) post({ type: 'cancelled', id: request.id });
    else post({ type: 'error', id: request.id, message: errorMessage(error) });
  } finally {
    if (job) await Promise.all([deleteJob(job.job), deleteJobZip(job.job)]);
    running.delete(request.id);
  }
}

self.addEventListener('message', (event: MessageEvent<JobRequest>) => {
  const request = event.data;
  switch (request.type) {
    case 'describe':
      void describe(request);
      break;
    case 'check-convert':
      void checkConvert(request);
      break;
    case 'read-model': {
      // The headers, as the extraction reads them (the library's refusals): a file that is no model is said at once.
      const controller = new AbortController();
      reading.set(request.id, controller);
      // What it reads is kept for the extraction of the same files.
      const recorded = reusingHeaders(pickedFileSet(request.model.name, request.model.files, 'plan'), request.model.files, true, request.slot);
      readBaseFacts(recorded.files, controller.signal).then(
        (facts) => {
          if (controller.signal.aborted) return post({ type: 'cancelled', id: request.id });
          recorded.keep();
          post({ type: 'model-read', id: request.id, facts });
        },
        (error) => post(controller.signal.aborted ? { type: 'cancelled', id: request.id } : { type: 'error', id: request.id, message: errorMessage(error) }),
      ).finally(() => reading.delete(request.id));
      break;
    }
    case 'run':
      void runJob(request);
      break;
    case 'cancel':
      running.get(request.id)?.abort();
      reading.get(request.id)?.abort();
      break;
    case 'withdraw':
      Promise.all([deleteJob(request.job), deleteJobZip(request.job)]).then(
        () => post({ type: 'withdrawn', id: request.id }),
        (error) => post({ type: 'error', id: request.id, message: errorMessage(error) }),
      );
      break;
  }
});
