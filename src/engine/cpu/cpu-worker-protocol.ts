/**
 * What the pool and its worker threads say to each other, and the one handler every worker runs
 * (Node worker_threads and Web Workers alike): W and the output are byte ranges of
 * SharedArrayBuffers (slabs read into shared memory, or the pool's scratch); the right factor and
 * its norms come once per key.
 */
import { isMergeError, type MergeErrorCode } from '../../errors.js';
import { encodeBlocksInto, encodeWeightedRowsInto } from '../../formats/gguf/codecs/encode-blocks.js';
import { decodeSourceRows, type RowSource } from '../../formats/row-decoders.js';
import { fp8RowCodes, fp8RowMaxima, type Fp8Encoding, type Fp8Rows } from '../../formats/fp8-block-codes.js';
import { comfyRowCodes, type ComfyRows } from '../../formats/comfy-requantize.js';
import type { RowJob, WasmKernel } from './wasm-kernel.js';
import type { MergeOp, WeightedRows } from '../merge-op.js';
import { runStepsPiece } from './step-rows.js';
import { settleListed, type ListedFix } from './listed-fix.js';

const NONE = new Uint32Array(0);

/** A block of rows; its W and output are byte ranges of shared memory (one buffer or two). */
export interface WorkerJob extends Omit<RowJob, 'w'> {
  id: number;
  wBuffer: SharedArrayBuffer;
  wOffset: number;
  wLength: number;
  outBuffer: SharedArrayBuffer;
  outOffset: number;
  outLength: number;
  /** Where given, the worker settles the elements its kernel lists itself (listed-fix.ts) and lists none back. */
  fix?: ListedFix;
}

/**
 * Whole blocks of GGML `type` encoded from `count` f32 values at byte `srcOffset` of `shared` into
 * byte `dstOffset` (GGUF requantization, formats/gguf/codecs/).
 */
export interface EncodeJob {
  kind: 'encode';
  id: number;
  type: string;
  shared: SharedArrayBuffer;
  srcOffset: number;
  count: number;
  dstOffset: number;
  dstLength: number;
  /** Importance weights (GGUF `--imatrix`): the piece is whole rows, quantized with them. */
  weighted?: WeightedRows;
}

/** Rows of an op with general update steps (step-rows.ts), merged by the float64 executor. */
export interface StepsJob {
  kind: 'steps';
  id: number;
  /** `merge`: W′ in op.outDtype; `values`: V after every step, f64 (for norms across rows). */
  want: 'merge' | 'values';
  op: MergeOp;
}

/**
 * Rows [r0, r1) of a quantized weight decoded into `out` by the source's decoder
 * (formats/row-decoders.ts); the source's arrays and `out` are views of shared memory.
 */
export interface DecodeJob {
  kind: 'decode';
  id: number;
  source: RowSource;
  r0: number;
  r1: number;
  out: Float32Array;
}

/**
 * Rows [rows.rowStart + p0, rows.rowStart + p0 + n) of fp8 re-quantization's values
 * (formats/fp8-block-codes.ts): their blocks' maxima, answered as `maxima`, or (with `enc`) their
 * codes written into `out`; the values, factors and `out` are views of shared memory.
 */
export interface Fp8Job {
  kind: 'fp8';
  id: number;
  rows: Fp8Rows;
  p0: number;
  n: number;
  enc?: Fp8Encoding;
  out?: Uint8Array;
}

/**
 * Rows [p0, p0 + n) of a slab of ComfyUI's int8 or nvfp4 re-quantization (formats/comfy-requantize.ts):
 * their codes into `out`, their scales into the slab's scale arrays; all views of shared memory.
 */
export interface ComfyJob {
  kind: 'comfy';
  id: number;
  rows: ComfyRows;
  p0: number;
  n: number;
  out: Uint8Array;
}

/** What the pool posts to a worker. */
export type PoolJob = WorkerJob | EncodeJob | StepsJob | DecodeJob | Fp8Job | ComfyJob;

/**
 * A worker's answer to one job: `listed` as RowJob results list them (none for encoding); a steps
 * job's output bytes or values, and how many of its elements were computed exactly; a merge block
 * whose listed elements the worker settled: how many it settled (`settled`), `exact` of them exactly.
 */
export type WorkerReply =
  | { id: number; finite: boolean; listed: Uint32Array; out?: Uint8Array; values?: Float64Array; exact?: number; settled?: number; maxima?: Float32Array }
  | { id: number; error: string; code?: MergeErrorCode };

/**
 * Runs one job on the worker's kernel. Every call awaits the same kernel promise, so jobs still run
 * (and are answered) in arrival order.
 */
export async function runWorkerJob(kernel: Promise<WasmKernel>, job: PoolJob): Promise<WorkerReply> {
  try {
    if ('kind' in job && job.kind === 'steps') {
      await kernel.catch(() => undefined); // keeps arrival order; the f64 executor does not need it
      const { out, values, exact } = runStepsPiece(job.op, job.want);
      return { id: job.id, finite: job.want === 'values' || out !== undefined, listed: NONE, out, values, exact };
    }
    if ('kind' in job && job.kind === 'decode') {
      await kernel.catch(() => undefined); // keeps arrival order; decoding does not need it
      decodeSourceRows(job.source, job.r0, job.r1, job.out);
      return { id: job.id, finite: true, listed: NONE };
    }
    if ('kind' in job && job.kind === 'comfy') {
      await kernel.catch(() => undefined); // keeps arrival order; these codes do not need it
      comfyRowCodes(job.rows, job.p0, job.n, job.out);
      return { id: job.id, finite: true, listed: NONE };
    }
    if ('kind' in job && job.kind === 'fp8') {
      await kernel.catch(() => undefined); // keeps arrival order; fp8 codes do not need it
      if (!job.enc) return { id: job.id, finite: true, listed: NONE, maxima: fp8RowMaxima(job.rows, job.p0, job.n) };
      fp8RowCodes(job.rows, job.enc, job.p0, job.n, job.out!);
      return { id: job.id, finite: true, listed: NONE };
    }
    if ('kind' in job) {
      await kernel.catch(() => undefined); // keeps arrival order; encoding does not need it
      const values = new Float32Array(job.shared, job.srcOffset, job.count);
      const out = new Uint8Array(job.shared, job.dstOffset, job.dstLength);
      if (job.weighted) encodeWeightedRowsInto(job.type, values, out, job.weighted);
      else encodeBlocksInto(job.type, values, out);
      return { id: job.id, finite: true, listed: NONE };
    }
    const out = new Uint8Array(job.outBuffer, job.outOffset, job.outLength);
    const { fix, ...rowJob } = job;
    const { finite, listed } = (await kernel).run({ ...rowJob, w: new Uint8Array(job.wBuffer, job.wOffset, job.wLength) }, out);
    if (!fix || listed.length === 0) return { id: job.id, finite, listed, ...(fix ? { settled: 0, exact: 0 } : {}) };
    const settled = settleListed(fix, out, listed);
    return { id: job.id, finite: finite && settled.finite, listed: NONE, settled: settled.listed, exact: settled.exact };
  } catch (e) {
    // A user's fault (a MergeError) keeps its code, so the pool raises it as it is.
    return { id: job.id, error: (e as Error).message, ...(isMergeError(e) ? { code: e.code } : {}) };
  }
}
