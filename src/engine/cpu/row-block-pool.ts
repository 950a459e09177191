/**
 * Worker threads for the CPU backend (browser-safe; the threads come from outside): an op's rows are cut into blocks that the calling thread
 * and the workers take from one queue (so a slow core does not hold the others up). The calling
 * thread would otherwise sit waiting, so it takes blocks too and one core needs no worker (each
 * costs about 10 MiB); workers start when an op first has pieces for them (WorkerStarter). W and the output are shared memory the threads use in place (slabs read
 * into {@link RowBlockPool.slabMemory}, outputs taken from it) or else go through one scratch
 * SharedArrayBuffer, and each worker is sent a tensor's right factor only once. Cancellation
 * stops handing out blocks; those in flight finish.
 *
 * Measured on the 0.97 GB benchmark model (2 cores, CLI, alternating runs): one worker per core
 * with an idle calling thread was 10–20 % faster (1.5–1.8 s against 1.7–2.1 s) but its peak RSS
 * was 15–25 MiB higher, which put `auto` (Dawn adds ~50 MiB) at 224–231 MiB, at the limit of a
 * quarter of the model; the calling thread taking blocks keeps it near 200 MiB.
 */
import { DTYPE_BYTES } from '../../dtype.js';
import { isMergeError, MergeError } from '../../errors.js';
import type { MergeOp, WeightedRows } from '../merge-op.js';
import { checkOp, type OpShape } from '../op-shape.js';
import { normSquare } from '../column-norms.js';
import { opRows, runStepsPiece, stepRowGranule, type StepsResult } from './step-rows.js';
import type { CertificationStats } from '../exact/recompute.js';
import type { CpuMergePool, PoolProduct } from './cpu-backend.js';
import { encodeBlocksInto, encodeWeightedRowsInto } from '../../formats/gguf/codecs/encode-blocks.js';
import { decodeSourceRows, type RowSource, type SourceArray } from '../../formats/row-decoders.js';
import type { PoolJob, WorkerJob, WorkerReply } from './cpu-worker-protocol.js';
import {
  finishJob, freshOutput, nonFiniteError, planJob, settleNonFinite, rightKeyOf, rowsPerBlock, type JobArrays, type PlainPlan, type TakeOutput,
} from './plain-merge.js';
import { align16, createWasmKernel, type WasmKernel } from './wasm-kernel.js';
import { listedFixBytes, shareListedFix, workerCanFix, type SharedFix } from './listed-fix.js';
import { packedBytes, packInto } from './packed-arrays.js';
import { fp8Bands, fp8RowCodes, fp8RowMaxima, type Fp8Encoding, type Fp8Rows } from '../../formats/fp8-block-codes.js';
import { comfyRowBytes, comfyRowCodes, type ComfyRows } from '../../formats/comfy-requantize.js';

const BLOCK_CAP_BYTES = 2 * 1024 * 1024;

/**
 * Keys of the algebra's right factors, apart from those of merge plans (counted from 1, see
 * plain-op.ts): a kernel holding a plan's factor never takes it for a product's, nor the reverse.
 */
let nextProductKey = 2 ** 52;

/**
 * One worker thread as the pool drives it, whatever runs it (Node's worker_threads, a Web Worker).
 * A worker answers its jobs in the order they were posted.
 */
export interface PoolWorker {
  /** Sends one job. */
  post(job: PoolJob): void;
  /** Called once, before the first job. */
  listen(onReply: (reply: WorkerReply) => void, onFail: (error: Error) => void): void;
  /** Whether jobs are in flight: in Node only a busy worker keeps the process alive. */
  hold(busy: boolean): void;
  /** Stops the worker. */
  terminate(): void;
}

/**
 * Workers started when work first needs them, `count` at most: a merge of one small tensor, cut
 * into fewer pieces than there are threads, starts only as many as take a piece (each costs about
 * 10 MiB and a start-up), whatever `--threads` said.
 */
export interface WorkerStarter {
  readonly count: number;
  start(): PoolWorker;
}

interface Slot {
  worker: PoolWorker;
  rightKey: number;
  /** Jobs posted and not yet answered, oldest first (a worker answers in order). */
  pending: { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }[];
}

/** A byte offset in shared memory. */
interface Place {
  buffer: SharedArrayBuffer;
  offset: number;
}

/**
 * A SharedArrayBuffer lent to one call at a time and kept for the next; a call that finds it lent
 * out gets one of its own. Reused rather than allocated per call: fresh memory costs page faults.
 */
class SharedScratch {
  private buffer: SharedArrayBuffer | undefined;
  private lent = false;

  /** At least `bytes` of shared memory; `release()` once no job reads or writes it any more. */
  take(bytes: number): { buffer: SharedArrayBuffer; release(): void } {
    if (this.lent) return { buffer: new SharedArrayBuffer(bytes), release: () => {} };
    if (!this.buffer || this.buffer.byteLength < bytes) this.buffer = new SharedArrayBuffer(bytes);
    this.lent = true;
    return { buffer: this.buffer, release: () => (this.lent = false) };
  }
}

type Floats = Float32Array | Float64Array;

/** A copy of `values` at byte `at` of `buffer`, as the same kind of array. */
function copyInto<T extends Floats>(values: T, buffer: SharedArrayBuffer, at: number): T {
  const view = (values instanceof Float64Array ? new Float64Array(buffer, at, values.length) : new Float32Array(buffer, at, values.length)) as T;
  view.set(values);
  return view;
}

/**
 * The arrays a plan's jobs carry (JobArrays), copied once into shared memory: a job then posts views
 * of them, which go by reference, where a slice of each went by copy in every message (0.97 GB page
 * merge: about 700 jobs, each serialized, copied into fresh memory and deserialized by a worker).
 */
/** The right factor and its column norms in shared memory, for the tensor whose key this is. */
interface SharedRight {
  key: number;
  right: Float32Array;
  nr?: Floats;
}

/** A worker's answer to a job it ran, and to one it could not. */
type WorkerAnswer = Exclude<WorkerReply, { error: string }>;
type WorkerFailure = Extract<WorkerReply, { error: string }>;

/**
 * A worker's failure as the calling thread raises it: a refusal the worker raised as a MergeError
 * (a codec's refusal of the values, a quantized weight's bad codes) keeps its code and line, as
 * the same work on the calling thread would give it; anything else is an internal error, `what`.
 */
function workerFailure(reply: WorkerFailure, what: string): Error {
  return reply.code ? new MergeError(reply.code, reply.error) : new Error(`${what}: ${reply.error}`);
}

/**
 * The pool's error once a worker thread has died (its thread exited: killed, out of memory, a
 * crash; or an exception escaped it): the merge cannot go on, but one thread or more memory may do.
 */
function workerDied(e: Error): MergeError {
  if (isMergeError(e)) return e;
  return new MergeError('WORKER_FAILED', `${e.message}; the thread was killed, ran out of memory or crashed: ` +
    'retry with one thread (--threads 1), or fewer threads or more memory', { cause: e });
}

/** Runs the piece [start, start + n) on the calling thread. */
type PieceRun = (start: number, n: number) => void;

/** One op's work for {@link RowBlockPool.share}: its pieces, and what a piece is on either side. */
interface Sharing {
  /** Pieces of [0, total), `step` long (the last one shorter). */
  total: number;
  step: number;
  /** The workers that take pieces (see workersFor). */
  slots: readonly Slot[];
  /** Checked before each piece is handed out. */
  signal: AbortSignal | undefined;
  /** A worker's job for a piece. */
  job(slot: Slot, start: number, n: number): PoolJob;
  /** What the pieces are of, as an error line names it (`tensor "…"`): a worker thread that dies is reported against it. */
  what: string;
  /** The error for a worker's failed piece. */
  failed(reply: WorkerFailure): Error;
  /** Takes in a worker's result for a piece. */
  settle(reply: WorkerAnswer, start: number, n: number): void;
  /** How the calling thread runs a piece, asked for once before its first (a kernel may still be loading). */
  here(): PieceRun | Promise<PieceRun>;
}

/** Lets other callbacks run between the calling thread's blocks. */
export type YieldToEvents = () => Promise<void>;

/**
 * The CPU backend's threads: the calling thread and `threads − 1` workers take row blocks from one
 * queue. W and the output live in one SharedArrayBuffer. Node's pool is `createCpuWorkerPool`
 * (`loramerge/node`); pages use {@link createBrowserCpuWorkerPool} (cross-origin isolated pages only).
 */
export class RowBlockPool implements CpuMergePool {
  readonly threads: number;
  private slots: Slot[];
  /** Starts the workers not started yet (none when they were given started). */
  private readonly starter: WorkerStarter;
  private nextId = 1;
  private readonly scratch = new SharedScratch();
  private readonly factorScratch = new SharedScratch();
  private sharedRight: SharedRight | undefined;
  private broken: Error | undefined;
  /**
   * Blocks sent to workers, and how many of them carried a right factor (once per worker and
   * tensor); pieces of GGML blocks sent to be encoded; pieces of ops with general steps; row
   * ranges of quantized weights sent to be decoded, and the weights whose arrays were shared;
   * merge blocks whose listed elements their worker settled, and the term sets shared for that;
   * row pieces of fp8 re-quantization sent for their blocks' maxima, and for their codes, and how
   * often its values or codes went through the scratch (not shared memory where they lie); row
   * pieces of ComfyUI's int8 and nvfp4 re-quantization sent for their codes.
   */
  readonly sent = { blocks: 0, rightFactors: 0, encodePieces: 0, stepPieces: 0, decodePieces: 0, decodeSources: 0, settlingBlocks: 0, settlingTerms: 0, fp8MaximaPieces: 0, fp8CodePieces: 0, fp8Copies: 0, comfyCodePieces: 0 };
  /** The terms and scales the workers settle listed elements with, and what they were copied from. */
  private sharedFix: { of: readonly unknown[]; buffer: SharedArrayBuffer; fix: SharedFix } | undefined;
  /** Shared memory for those terms and scales, reused from op to op: fresh shared memory is freed only when the garbage collector runs. */
  private readonly fixScratch = new SharedScratch();
  private nextFixKey = 1;
  /** Shared memory for row sources' arrays, reused from weight to weight. */
  private readonly sourceScratch = new SharedScratch();
  /** The last row source the workers were given, and its arrays as copied into `buffer`. */
  private sharedSource: { of: RowSource; shared: RowSource; buffer: SharedArrayBuffer } | undefined;
  private readonly local: Promise<WasmKernel>;

  /**
   * Shared memory for the pipeline's slabs and the backend's outputs, which the threads then read
   * and write in place; absent where a sink cannot take shared memory (a browser's Blob and file
   * writes refuse it).
   */
  readonly slabMemory?: (bytes: number) => SharedArrayBuffer;

  /**
   * The workers merge, and the calling thread too unless `callerTakesBlocks` is false (a thread
   * that must stay free for I/O, such as a page's worker writing synchronously to disk).
   * `sharedSlabs`: offer {@link slabMemory}.
   */
  constructor(workers: readonly PoolWorker[] | WorkerStarter, private readonly yieldToEvents: YieldToEvents, private readonly callerTakesBlocks = true,
    options: { sharedSlabs?: boolean } = {}) {
    if (options.sharedSlabs) this.slabMemory = (bytes) => new SharedArrayBuffer(bytes);
    const started = 'start' in workers ? [] : workers;
    this.starter = 'start' in workers ? workers : { count: started.length, start: () => { throw new Error('no worker to start'); } };
    this.threads = this.starter.count + (callerTakesBlocks ? 1 : 0);
    this.slots = started.map((worker) => this.adopt(worker));
    this.local = createWasmKernel();
    this.local.catch(() => {}); // reported by the first merge
  }

  /** Workers started so far. */
  get workersStarted(): number {
    return this.slots.length;
  }

  /**
   * The workers to drain `pieces` pieces with, starting those missing: one per piece the calling
   * thread does not take, `threads − 1` (or `threads`) at most.
   */
  private workersFor(pieces: number): Slot[] {
    const want = Math.min(this.starter.count, Math.max(0, this.callerTakesBlocks ? pieces - 1 : pieces));
    while (this.slots.length < want) this.slots.push(this.adopt(this.starter.start()));
    return this.slots;
  }

  private adopt(worker: PoolWorker): Slot {
    const slot: Slot = { worker, rightKey: 0, pending: [] };
    worker.listen(
      (reply) => {
        const p = slot.pending.shift();
        if (slot.pending.length === 0) worker.hold(false);
        p?.resolve(reply);
      },
      (e) => this.fail(e),
    );
    worker.hold(false);
    return slot;
  }

  private fail(e: Error): void {
    const broken = (this.broken ??= workerDied(e));
    for (const s of this.slots) for (const p of s.pending.splice(0)) p.reject(broken);
  }

  private run(slot: Slot, job: PoolJob): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      slot.pending.push({ resolve, reject });
      slot.worker.hold(true);
      slot.worker.post(job);
    });
  }

  /** The plan's left factor, row bounds and W scale in shared memory (see {@link JobArrays}). */
  private shareFactors(plan: PlainPlan): { factors: JobArrays; release(): void } {
    const { left, gnl } = plan.slab;
    const scale = plan.wScale?.factors;
    const gnlAt = align16(left.byteLength);
    const scaleAt = align16(gnlAt + gnl.byteLength);
    const lent = this.factorScratch.take(scaleAt + (scale ? scale.byteLength : 0));
    const factors: JobArrays = {
      left: copyInto(left, lent.buffer, 0),
      gnl: copyInto(gnl, lent.buffer, gnlAt),
      ...(scale ? { wScale: copyInto(scale, lent.buffer, scaleAt) } : {}),
    };
    return { factors, release: lent.release };
  }

  /** The tensor's right factor and norms in shared memory, copied when the tensor changes. */
  private shareRight(plan: PlainPlan, right: Float32Array, nr: Floats | undefined): SharedRight {
    const key = rightKeyOf(plan);
    if (this.sharedRight?.key !== key || (nr && !this.sharedRight.nr)) {
      // A buffer per tensor: jobs of the last one may still be reading theirs.
      const nrAt = align16(right.byteLength);
      const buffer = new SharedArrayBuffer(nrAt + (nr ? nr.byteLength : 0));
      this.sharedRight = { key, right: copyInto(right, buffer, 0), ...(nr ? { nr: copyInto(nr, buffer, nrAt) } : {}) };
    }
    return this.sharedRight;
  }

  async merge(plan: PlainPlan, stats: CertificationStats, signal?: AbortSignal, takeOutput: TakeOutput = freshOutput): Promise<Uint8Array> {
    if (this.broken) throw this.broken;
    const { op, shape } = plan.p;
    const ob = DTYPE_BYTES[op.outDtype], kb = plan.kernelOutBytes;
    const rows = shape.rowCount, cols = op.cols;
    const w = plan.w.data;
    const out = takeOutput(rows * cols * ob);
    // W and the kernel's output are used where they lie when they are shared memory already (a
    // slab read into slabMemory, an output taken from it); otherwise they go through one scratch
    // buffer. f64 values (a scale step the kernel cannot fold exactly) are certified from the
    // scratch into `out`.
    const wInPlace = w.buffer instanceof SharedArrayBuffer;
    const outInPlace = plan.mode !== 'f64-values' && out.buffer instanceof SharedArrayBuffer;
    const wScratchBytes = wInPlace ? 0 : align16(w.byteLength);
    const scratchBytes = wScratchBytes + (outInPlace ? 0 : rows * cols * kb);
    // Two blocks per worker even out uneven progress; bigger ones amortise the messages better
    // (measured on a 4 MiB f16 slab: 3.7 ms against 4.7 ms with 16 blocks of 256 KiB). The cap
    // bounds each worker's memory and how long cancellation waits on a huge unslabbed op.
    const step = Math.max(4, Math.min(rowsPerBlock(plan, BLOCK_CAP_BYTES), Math.ceil(rows / (this.threads * 2) / 4) * 4));
    const slots = this.workersFor(Math.ceil(rows / step));
    const lent = scratchBytes > 0 ? this.scratch.take(scratchBytes) : undefined;
    const scratch = lent?.buffer;
    const shared = slots.length > 0 ? this.shareFactors(plan) : undefined;
    const wAt: Place = wInPlace ? { buffer: w.buffer as SharedArrayBuffer, offset: w.byteOffset } : { buffer: scratch!, offset: 0 };
    // The workers settle their blocks' listed elements where they can read what the recompute reads.
    const lentFix = slots.length > 0 && workerCanFix(plan) ? this.shareFix(plan) : undefined;
    const fix = lentFix?.fix;
    const kAt: Place = outInPlace ? { buffer: out.buffer as SharedArrayBuffer, offset: out.byteOffset } : { buffer: scratch!, offset: wScratchBytes };
    try {
      if (!wInPlace) new Uint8Array(scratch!, 0, w.byteLength).set(w);
      let finite = true;
      const kernelOut = (r0: number, n: number) => new Uint8Array(kAt.buffer, kAt.offset + r0 * cols * kb, n * cols * kb);
      const settle = (r0: number, n: number, listed: Uint32Array) => {
        const kOut = kernelOut(r0, n);
        if (!finishJob(plan, r0, n, listed, kOut, plan.mode === 'f64-values' ? out.subarray(r0 * cols * ob, (r0 + n) * cols * ob) : kOut, stats)) finite = false;
      };
      await this.share({
        total: rows, step, slots, signal,
        job: (slot, r0, n) => this.job(plan, shared!.factors, slot, wAt, kAt, r0, n, fix),
        what: `tensor "${op.name}"`,
        failed: (reply) => workerFailure(reply, `tensor "${op.name}": a CPU worker failed`),
        settle: (reply, r0, n) => {
          if (!reply.finite) finite = false;
          // Listed elements the worker settled itself: counted as the calling thread counts them.
          if (reply.settled !== undefined) {
            stats.listed += reply.settled;
            stats.exact += reply.exact ?? 0;
          }
          settle(r0, n, reply.listed);
        },
        here: async () => {
          const kernel = await this.local;
          return (r0, n) => {
            const result = kernel.run(planJob(plan, r0, n, !kernel.holds(rightKeyOf(plan))), kernelOut(r0, n));
            if (!result.finite) finite = false;
            settle(r0, n, result.listed);
          };
        },
      });
      if (plan.mode !== 'f64-values' && !outInPlace) out.set(kernelOut(0, rows));
      if (!finite && !settleNonFinite(plan, out, stats)) throw nonFiniteError(op.name, op.outDtype);
      return out;
    } finally {
      lent?.release();
      shared?.release();
      lentFix?.release();
    }
  }

  /**
   * An op with general update steps (DoRA, dense diffs, rotations, GLoRA…) on every thread: its
   * rows cut on the op's row granule (step-rows.ts), each piece merged by the float64 executor
   * (cpu-steps.ts), so the bytes are those of one thread.
   */
  async mergeSteps(op: MergeOp, stats: CertificationStats, signal?: AbortSignal): Promise<Uint8Array> {
    const shape = checkOp(op);
    const cols = op.cols, ob = DTYPE_BYTES[op.outDtype];
    const out = new Uint8Array(shape.rowCount * cols * ob);
    let finite = true;
    await this.runPieces(op, shape, 'merge', signal, (r0, n, piece) => {
      stats.elements += n * cols;
      stats.listed += piece.exact;
      stats.exact += piece.exact;
      if (piece.out) out.set(piece.out, r0 * cols * ob);
      else finite = false;
    });
    if (!finite) throw nonFiniteError(op.name, op.outDtype);
    return out;
  }

  /**
   * Σ over the op's rows of V² per stored column (the first pass of DoRA norms across rows), V
   * computed on every thread in row pieces and summed here row by row, in the order one thread
   * sums them: the same float64 sums.
   */
  async columnSumsOfSquares(op: MergeOp, signal?: AbortSignal): Promise<Float64Array> {
    const shape = checkOp(op);
    const cols = op.cols;
    const pieces: [number, Float64Array][] = [];
    await this.runPieces(op, shape, 'values', signal, (r0, _n, piece) => {
      pieces.push([r0, piece.values!]);
    });
    const ss = new Float64Array(cols);
    for (const [, v] of pieces.sort((a, b) => a[0] - b[0])) {
      for (let o = 0; o < v.length; o += cols) for (let c = 0; c < cols; c++) ss[c] += normSquare(v[o + c]);
    }
    return ss;
  }

  /** Runs the op's row pieces (two per thread: uneven progress evens out) on every thread. */
  private async runPieces(op: MergeOp, shape: OpShape, want: 'merge' | 'values', signal: AbortSignal | undefined,
    done: (r0: number, n: number, piece: StepsResult) => void): Promise<void> {
    if (this.broken) throw this.broken;
    const rows = shape.rowCount;
    const granule = stepRowGranule(op, shape);
    const step = Math.max(granule, Math.ceil(rows / (this.threads * 2) / granule) * granule);
    const slots = this.workersFor(Math.ceil(rows / step));
    await this.share({
      total: rows, step, slots, signal,
      job: (_slot, r0, n) => {
        this.sent.stepPieces++;
        return { kind: 'steps', id: this.nextId++, want, op: opRows(op, shape, r0, n) };
      },
      what: `tensor "${op.name}"`,
      failed: (reply) => workerFailure(reply, `tensor "${op.name}": a CPU worker failed`),
      settle: (reply, r0, n) => done(r0, n, { out: reply.finite ? reply.out : undefined, values: reply.values, exact: reply.exact ?? 0 }),
      here: () => (r0, n) => done(r0, n, runStepsPiece(opRows(op, shape, r0, n), want)),
    });
  }

  /**
   * Encodes `values` (whole blocks of GGML `type`: GGUF requantization) on every thread, a run of
   * blocks per job: the reference quantizers take hundreds of operations per value, so this is
   * where a requantizing merge spends its time. The same encoder runs on every thread, so the
   * bytes do not depend on how the work was cut.
   */
  async encodeBlocks(type: string, blockSize: number, blockBytes: number, values: Float32Array, signal?: AbortSignal, weighted?: WeightedRows): Promise<Uint8Array> {
    if (this.broken) throw this.broken;
    const blocks = values.length / blockSize;
    const srcBytes = values.byteLength;
    const dstOffset = align16(srcBytes);
    // Pieces of 16 KiB of output at least; two per thread even out uneven progress. Weighted
    // quantizers take whole rows (some weigh by the row's mean square), so those pieces are rows.
    const perRow = weighted ? weighted.cols / blockSize : 1;
    const step = Math.ceil(Math.max(Math.ceil(16384 / blockBytes), Math.ceil(blocks / (this.threads * 2))) / perRow) * perRow;
    /** A piece's weights: the experts its rows take, copied (a job is cloned to its worker), or all of them here. */
    const piece = (b0: number, n: number, copy: boolean): WeightedRows | undefined => {
      if (!weighted) return undefined;
      const { cols, rowsPerExpert } = weighted;
      const r0 = weighted.firstRow + b0 / perRow;
      if (!copy) return { ...weighted, firstRow: r0 };
      const e0 = Math.floor(r0 / rowsPerExpert);
      const e1 = Math.floor((r0 + n / perRow - 1) / rowsPerExpert);
      return { weights: weighted.weights.slice(e0 * cols, (e1 + 1) * cols), cols, rowsPerExpert, firstRow: r0 - e0 * rowsPerExpert };
    };
    const slots = this.workersFor(Math.ceil(blocks / step));
    const lent = this.scratch.take(dstOffset + blocks * blockBytes);
    const shared = lent.buffer;
    try {
      new Float32Array(shared, 0, values.length).set(values);
      await this.share({
        total: blocks, step, slots, signal,
        job: (_slot, b0, n) => {
          this.sent.encodePieces++;
          return {
            kind: 'encode', id: this.nextId++, type, shared,
            srcOffset: b0 * blockSize * 4, count: n * blockSize, dstOffset: dstOffset + b0 * blockBytes, dstLength: n * blockBytes,
            ...(weighted ? { weighted: piece(b0, n, true) } : {}),
          };
        },
        // A codec's refusal of the values (IQ3's blocks too large for ggml's quantizer) is the user's, raised as the calling thread's codec raises it.
        what: `${type} blocks`,
        failed: (reply) => workerFailure(reply, `${type} blocks: a CPU worker failed`),
        settle: () => {},
        here: () => (b0, n) => {
          const src = new Float32Array(shared, b0 * blockSize * 4, n * blockSize);
          const dst = new Uint8Array(shared, dstOffset + b0 * blockBytes, n * blockBytes);
          const w = piece(b0, n, false);
          if (w) encodeWeightedRowsInto(type, src, dst, w);
          else encodeBlocksInto(type, src, dst);
        },
      });
      return new Uint8Array(shared, dstOffset, blocks * blockBytes).slice();
    } finally {
      lent.release();
    }
  }

  /**
   * Rows [r0, r1) of a quantized weight decoded on every thread (formats/row-decoders.ts), in row
   * pieces, two per thread: the source's arrays are copied into shared memory once per source (a
   * GPTQ weight's serves all its slabs, which come in turn), and the rows decoded in place into `out` where it is shared memory (the
   * pipeline's slab memory), else through the pool's scratch. Every thread runs the same decoder
   * on the same arrays, so the bytes do not depend on how the rows were cut.
   */
  async decodeRows(source: RowSource, r0: number, r1: number, signal?: AbortSignal, out?: Float32Array): Promise<Float32Array> {
    if (this.broken) throw this.broken;
    const rows = r1 - r0, cols = source.cols;
    // Pieces of 16 Ki values at least: a message costs more than decoding fewer.
    const step = Math.max(Math.ceil(16384 / Math.max(cols, 1)), Math.ceil(rows / (this.threads * 2)));
    const slots = this.workersFor(Math.ceil(rows / step));
    const inPlace = out?.buffer instanceof SharedArrayBuffer;
    // Fresh shared memory per slab would be freed only when the garbage collector runs (see buffer-pool.ts).
    const lent = inPlace ? undefined : this.scratch.take(rows * cols * 4);
    const into = inPlace ? out! : new Float32Array(lent!.buffer, 0, rows * cols);
    const lentSource = slots.length > 0 ? this.shareSource(source) : undefined;
    try {
      const shared = lentSource?.shared ?? source;
      const piece = (p0: number, n: number) => into.subarray(p0 * cols, (p0 + n) * cols);
      await this.share({
        total: rows, step, slots, signal,
        job: (_slot, p0, n) => {
          this.sent.decodePieces++;
          return { kind: 'decode', id: this.nextId++, source: shared, r0: r0 + p0, r1: r0 + p0 + n, out: piece(p0, n) };
        },
        what: `tensor "${source.name}"`,
        failed: (reply) => workerFailure(reply, `${source.name}: a CPU worker failed to decode it`),
        settle: () => {},
        here: () => (p0, n) => void decodeSourceRows(shared, r0 + p0, r0 + p0 + n, piece(p0, n)),
      });
      if (inPlace) return into;
      const copy = out ?? new Float32Array(rows * cols);
      copy.set(into);
      return copy;
    } finally {
      lent?.release();
      lentSource?.release();
    }
  }

  /**
   * fp8 re-quantization's block maxima of `rows` (formats/fp8-block-codes.ts) on every thread, in
   * row pieces, two per thread: each piece's maxima are merged here by max, which does not depend
   * on how the rows were cut.
   */
  async fp8Maxima(rows: Fp8Rows, signal?: AbortSignal): Promise<Float32Array> {
    const colBlocks = Math.ceil(rows.cols / rows.blockCols);
    const band0 = Math.floor(rows.rowStart / rows.blockRows);
    const amax = new Float32Array(fp8Bands(rows, rows.rowStart, rows.rowCount) * colBlocks);
    await this.fp8Rows(rows, undefined, signal, (p0, maxima) => {
      const at0 = (Math.floor((rows.rowStart + p0) / rows.blockRows) - band0) * colBlocks;
      for (let i = 0; i < maxima.length; i++) if (maxima[i] > amax[at0 + i]) amax[at0 + i] = maxima[i];
    });
    return amax;
  }

  /**
   * fp8 re-quantization's codes of `rows` on every thread, in row pieces, two per thread (each code
   * depends on its value and its block's factor alone), into memory from `takeOutput`: written there
   * in place where it is shared memory, else copied there from the pool's scratch.
   */
  async fp8Codes(rows: Fp8Rows, enc: Fp8Encoding, signal?: AbortSignal, takeOutput: TakeOutput = freshOutput): Promise<Uint8Array> {
    return (await this.fp8Rows(rows, enc, signal, () => {}, takeOutput))!;
  }

  /**
   * The pieces of {@link fp8Maxima} or {@link fp8Codes}: the values used where they lie when they
   * are shared memory (a merge's output taken from slab memory), else copied into the pool's
   * scratch with the factors and the codes.
   */
  private async fp8Rows(
    rows: Fp8Rows, enc: Fp8Encoding | undefined, signal: AbortSignal | undefined, done: (p0: number, maxima: Float32Array) => void, takeOutput: TakeOutput = freshOutput,
  ): Promise<Uint8Array | undefined> {
    if (this.broken) throw this.broken;
    const { rowCount, cols } = rows;
    // Pieces of 16 Ki values at least: a message costs more than encoding fewer.
    const step = Math.max(Math.ceil(16384 / Math.max(cols, 1)), Math.ceil(rowCount / (this.threads * 2)));
    const slots = this.workersFor(Math.ceil(rowCount / step));
    const copyValues = slots.length > 0 && !(rows.values.buffer instanceof SharedArrayBuffer);
    // The codes go where they are asked for when that is shared memory (a backend's outputs from
    // slab memory, given back once written), not copied out of the scratch into fresh memory.
    const codes = enc ? takeOutput(rowCount * cols) : undefined;
    const codesInPlace = codes !== undefined && codes.buffer instanceof SharedArrayBuffer;
    const factorsAt = copyValues ? align16(rows.values.byteLength) : 0;
    const outAt = align16(factorsAt + (enc ? enc.factors.byteLength : 0));
    const lent = this.scratch.take(outAt + (enc && !codesInPlace ? rowCount * cols : 0));
    if (copyValues) this.sent.fp8Copies++;
    if (codes && !codesInPlace) this.sent.fp8Copies++;
    try {
      const buffer = lent.buffer;
      const shared: Fp8Rows = copyValues ? { ...rows, values: copyInto(rows.values, buffer, 0) } : rows;
      const sharedEnc = enc && { ...enc, factors: copyInto(enc.factors, buffer, factorsAt) };
      const out = codesInPlace
        ? (p0: number, n: number) => codes.subarray(p0 * cols, (p0 + n) * cols)
        : (p0: number, n: number) => new Uint8Array(buffer, outAt + p0 * cols, n * cols);
      await this.share({
        total: rowCount, step, slots, signal,
        job: (_slot, p0, n) => {
          if (enc) this.sent.fp8CodePieces++;
          else this.sent.fp8MaximaPieces++;
          return { kind: 'fp8', id: this.nextId++, rows: shared, p0, n, ...(sharedEnc ? { enc: sharedEnc, out: out(p0, n) } : {}) };
        },
        what: 'fp8 re-quantization',
        failed: (reply) => workerFailure(reply, `fp8 re-quantization: a CPU worker failed`),
        settle: (reply, p0) => {
          if (reply.maxima) done(p0, reply.maxima);
        },
        here: () => (p0, n) => {
          if (sharedEnc) fp8RowCodes(shared, sharedEnc, p0, n, out(p0, n));
          else done(p0, fp8RowMaxima(shared, p0, n));
        },
      });
      if (codes && !codesInPlace) codes.set(new Uint8Array(buffer, outAt, rowCount * cols));
      return codes;
    } finally {
      lent.release();
    }
  }

  /**
   * ComfyUI's int8 or nvfp4 codes, or DeepSeek-V4's FP4 ones, of `rows` (formats/comfy-requantize.ts)
   * on every thread, in row pieces, two per thread, into memory from `takeOutput` (written in place
   * where it is shared memory); per-row int8 scales and nvfp4 and FP4 block scales land in the slab's own arrays, as one
   * thread writes them. What the workers cannot reach where it lies goes through the scratch.
   */
  async comfyCodes(rows: ComfyRows, signal?: AbortSignal, takeOutput: TakeOutput = freshOutput): Promise<Uint8Array> {
    if (this.broken) throw this.broken;
    const { rowCount, cols } = rows;
    const rowBytes = comfyRowBytes(rows);
    const step = Math.max(Math.ceil(16384 / Math.max(cols, 1)), Math.ceil(rowCount / (this.threads * 2)));
    const slots = this.workersFor(Math.ceil(rowCount / step));
    const codes = takeOutput(rowCount * rowBytes);
    const scales = rows.format === 'int8' ? rows.rowScales : rows.blockScales;
    const away = (a: ArrayBufferView | undefined) => slots.length > 0 && a !== undefined && !(a.buffer instanceof SharedArrayBuffer);
    const [copyValues, copyCodes, copyScales] = [away(rows.values), away(codes), away(scales)];
    const codesAt = align16(copyValues ? rows.values.byteLength : 0);
    const scalesAt = align16(codesAt + (copyCodes ? codes.byteLength : 0));
    const lent = slots.length > 0 ? this.scratch.take(scalesAt + (copyScales ? scales!.byteLength : 0)) : undefined;
    try {
      const buffer = lent?.buffer;
      const values = copyValues ? copyInto(rows.values, buffer!, 0) : rows.values;
      const into = copyCodes ? new Uint8Array(buffer!, codesAt, codes.byteLength) : codes;
      let shared: ComfyRows = rows;
      if (copyScales && rows.format === 'int8') shared = { ...rows, values, rowScales: copyInto(rows.rowScales!, buffer!, scalesAt) };
      else if (copyScales && rows.format !== 'int8') {
        const blockScales = new Uint8Array(buffer!, scalesAt, rows.blockScales.byteLength);
        blockScales.set(rows.blockScales);
        shared = { ...rows, values, blockScales };
      } else shared = { ...rows, values };
      const piece = (p0: number, n: number) => into.subarray(p0 * rowBytes, (p0 + n) * rowBytes);
      await this.share({
        total: rowCount, step, slots, signal,
        job: (_slot, p0, n) => {
          this.sent.comfyCodePieces++;
          return { kind: 'comfy', id: this.nextId++, rows: shared, p0, n, out: piece(p0, n) };
        },
        what: 'tensor re-quantization',
        failed: (reply) => workerFailure(reply, `tensor re-quantization: a CPU worker failed`),
        settle: () => {},
        here: () => (p0, n) => comfyRowCodes(shared, p0, n, piece(p0, n)),
      });
      if (copyCodes) codes.set(into);
      if (copyScales) scales!.set(shared.format === 'int8' ? shared.rowScales! : shared.blockScales);
      return codes;
    } finally {
      lent?.release();
    }
  }

  /**
   * `source` with its arrays in shared memory, lent until `release()`: copied when the source
   * changes (or the memory was lent out, or too small), else the copy the last call made. One
   * buffer, reused: fresh shared memory per weight would be freed only when the garbage collector
   * runs (see buffer-pool.ts).
   */
  private shareSource(source: RowSource): { shared: RowSource; release(): void } {
    const entries = Object.entries(source.arrays);
    const lent = this.sourceScratch.take(packedBytes(entries.map(([, a]) => a)));
    const buffer = lent.buffer;
    if (this.sharedSource?.of !== source || this.sharedSource.buffer !== buffer) {
      const copy = packInto(buffer);
      const arrays: Record<string, SourceArray> = {};
      for (const [name, a] of entries) arrays[name] = copy(a);
      this.sent.decodeSources++;
      this.sharedSource = { of: source, shared: { ...source, arrays }, buffer };
    }
    return { shared: this.sharedSource.shared, release: lent.release };
  }

  /**
   * The adapter algebra's product L · R (see {@link PoolProduct}) on every thread, in row blocks of
   * L (two per thread, at most BLOCK_CAP_BYTES of L each): W is one block of zeros every job reads,
   * the output one scratch buffer, R sent once to each worker; a block of L that is not shared
   * memory already goes as a copy of that block alone. `signal` stops handing out blocks (ABORTED):
   * a large ΔW's product takes seconds, and a cancel waits only for the blocks in flight.
   */
  async product(p: PoolProduct, signal?: AbortSignal): Promise<{ out: Float32Array; finite: boolean }> {
    if (this.broken) throw this.broken;
    const { rows, cols, inner } = p;
    const out = new Float32Array(rows * cols);
    if (rows === 0 || cols === 0) return { out, finite: true };
    const cap = Math.max(4, Math.floor(BLOCK_CAP_BYTES / (Math.max(inner, cols) * 4) / 4) * 4);
    const step = Math.max(4, Math.min(cap, Math.ceil(rows / (this.threads * 2) / 4) * 4));
    const slots = this.workersFor(Math.ceil(rows / step));
    const outBytes = align16(rows * cols * 4);
    const lent = this.scratch.take(outBytes + step * cols * 4);
    const buffer = lent.buffer;
    const key = nextProductKey++;
    let right: Float32Array | undefined;
    try {
      const zeros = new Uint8Array(buffer, outBytes, step * cols * 4);
      zeros.fill(0);
      let finite = true;
      await this.share({
        total: rows, step, slots, signal,
        job: (slot, r0, n) => {
          const sendRight = slot.rightKey !== key;
          slot.rightKey = key;
          if (sendRight) right ??= copyInto(p.right, new SharedArrayBuffer(p.right.byteLength), 0);
          const left = p.left(r0, n);
          this.sent.blocks++;
          return {
            id: this.nextId++, wDtype: 'F32', outDtype: 'F32', rows: n, cols, rank: inner,
            // A view of other memory would be posted with its whole buffer.
            left: left.buffer instanceof SharedArrayBuffer ? left : left.slice(), rightKey: key, ...(sendRight ? { right } : {}),
            wBuffer: buffer, wOffset: outBytes, wLength: n * cols * 4, outBuffer: buffer, outOffset: r0 * cols * 4, outLength: n * cols * 4,
          };
        },
        what: 'a product of the adapter algebra',
        failed: (reply) => workerFailure(reply, 'a product of the adapter algebra: a CPU worker failed'),
        settle: (reply) => {
          if (!reply.finite) finite = false;
        },
        here: async () => {
          const kernel = await this.local;
          return (r0, n) => {
            const result = kernel.run({
              w: zeros.subarray(0, n * cols * 4), wDtype: 'F32', outDtype: 'F32', rows: n, cols, rank: inner,
              left: p.left(r0, n), rightKey: key, right: kernel.holds(key) ? undefined : p.right,
            }, new Uint8Array(buffer, r0 * cols * 4, n * cols * 4));
            if (!result.finite) finite = false;
          };
        },
      });
      out.set(new Float32Array(buffer, 0, rows * cols));
      return { out, finite };
    } finally {
      lent.release();
    }
  }

  /**
   * The loop every op shares its work by: the workers and (unless `callerTakesBlocks` is false) the
   * calling thread take pieces from one cursor until none are left or the signal is aborted, then
   * ABORTED. One place, so that merges, steps, encoding and products hand out, settle and stop alike.
   */
  private async share(s: Sharing): Promise<void> {
    const cursor = pieceCursor(s.total, s.step, s.signal);
    const take = cursor.take;
    // A failed piece stops the hand-out, and the call settles only once every piece in flight has:
    // its caller then hands the shared scratch back, and a later call must not find blocks of this
    // one still writing into it. Of the pieces that failed, the first in row order is reported (a
    // piece's thread finishing first must not decide the line): the one thread alone, going row by
    // row, would have stopped there. Pieces are handed out in order, so every piece before it ran.
    let failure: { error: unknown; at: number } | undefined;
    const fail = (error: unknown, at: number) => {
      if (!failure || at < failure.at) failure = { error, at };
      cursor.stop();
    };
    const drain = async (slot: Slot): Promise<void> => {
      let at = -Infinity;
      try {
        for (let piece = take(); piece; piece = take()) {
          const [start, n] = piece;
          at = start;
          const reply = await this.run(slot, s.job(slot, start, n));
          if ('error' in reply) throw s.failed(reply);
          s.settle(reply, start, n);
          at = -Infinity;
        }
      } catch (error) {
        // A thread that died fails every call in flight with the pool's one error: each names its own work.
        fail(error === this.broken && isMergeError(error) && error.code === 'WORKER_FAILED'
          ? new MergeError('WORKER_FAILED', `${s.what}: ${error.message}`, { cause: error.cause }) : error, at);
      }
    };
    const drainHere = async (): Promise<void> => {
      let at = -Infinity;
      try {
        // Awaited only when it is a promise: a thread with nothing to load takes its first piece in the same turn.
        const made = s.here();
        const runPiece = made instanceof Promise ? await made : made;
        for (let piece = take(); piece; piece = take()) {
          at = piece[0];
          runPiece(piece[0], piece[1]);
          at = -Infinity;
          // Let the workers' replies (and the pipeline's I/O callbacks) in between pieces.
          await this.yieldToEvents();
        }
      } catch (error) {
        fail(error, at);
      }
    };
    await Promise.all([...s.slots.map(drain), ...(this.callerTakesBlocks ? [drainHere()] : [])]);
    if (failure) throw failure.error;
    if (cursor.aborted()) throw new MergeError('ABORTED', 'merge cancelled', { cause: s.signal?.reason });
  }

  /**
   * The plan's terms and scales in shared memory, lent until `release()`: copied when they change
   * (another tensor, another row band's scales) or the memory is another, else the last copy.
   */
  private shareFix(plan: PlainPlan): { fix: SharedFix; release(): void } {
    const of = [plan.tf, plan.p.scale?.factors, plan.p.baseScale?.factors];
    const lent = this.fixScratch.take(listedFixBytes(plan));
    if (!this.sharedFix || this.sharedFix.buffer !== lent.buffer || this.sharedFix.of.some((x, i) => x !== of[i])) {
      this.sent.settlingTerms++;
      this.sharedFix = { of, buffer: lent.buffer, fix: shareListedFix(plan, this.nextFixKey++, lent.buffer) };
    }
    return { fix: this.sharedFix.fix, release: lent.release };
  }

  private job(plan: PlainPlan, factors: JobArrays, slot: Slot, wAt: Place, kAt: Place, r0: number, n: number, fix?: SharedFix): WorkerJob {
    const key = rightKeyOf(plan);
    const sendRight = slot.rightKey !== key;
    slot.rightKey = key;
    this.sent.blocks++;
    if (sendRight) this.sent.rightFactors++;
    // Everything goes as views of shared memory, by reference: W and the output where they lie,
    // the factors as shareFactors and shareRight put them (a view of other memory would be copied,
    // with its whole buffer).
    const { w, certify, right, ...block } = planJob(plan, r0, n, sendRight, factors);
    const kb = plan.kernelOutBytes;
    const shared = right ? this.shareRight(plan, right, certify?.nr) : undefined;
    // The worker settles what its kernel lists, reading W where the block's W lies: the op's row 0 at wAt (workerCanFix).
    const settles = !!fix && !!certify;
    if (settles) this.sent.settlingBlocks++;
    return {
      ...block,
      ...(shared ? { right: shared.right } : {}),
      id: this.nextId++,
      wBuffer: wAt.buffer,
      wOffset: wAt.offset + w.byteOffset - plan.w.data.byteOffset,
      wLength: w.byteLength,
      outBuffer: kAt.buffer,
      outOffset: kAt.offset + r0 * plan.p.op.cols * kb,
      outLength: n * plan.p.op.cols * kb,
      certify: certify && { ...certify, nr: shared?.nr },
      ...(settles ? { fix: { ...fix!, baseBuffer: wAt.buffer, baseOffset: wAt.offset, rowStart: plan.p.shape.rowStart, rowCount: plan.p.shape.rowCount, r0 } } : {}),
    };
  }

  dispose(): void {
    const slots = this.slots;
    this.slots = [];
    this.broken ??= new MergeError('ABORTED', 'the CPU backend was disposed');
    for (const s of slots) {
      for (const p of s.pending.splice(0)) p.reject(this.broken);
      s.worker.terminate();
    }
  }
}

/**
 * Hands out [start, count] pieces of [0, total) in steps of `step` to whichever thread asks next,
 * until all are out or the signal is aborted (then `aborted()` is true and nothing more is given).
 */
function pieceCursor(total: number, step: number, signal: AbortSignal | undefined): { take(): [number, number] | undefined; aborted(): boolean; stop(): void } {
  let next = 0;
  let aborted = false;
  let stopped = false;
  return {
    take() {
      if (next >= total || aborted || stopped) return undefined;
      if (signal?.aborted) {
        aborted = true;
        return undefined;
      }
      const start = next, n = Math.min(step, total - start);
      next += n;
      return [start, n];
    },
    aborted: () => aborted,
    /** Gives nothing more out (a piece failed). */
    stop: () => void (stopped = true),
  };
}
