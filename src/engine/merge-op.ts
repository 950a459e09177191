/**
 * The one operation every backend executes: a dense weight W (viewed as rows × cols) plus a sum of
 * scaled low-rank products, optionally followed by a DoRA renormalisation and further steps
 * (update-steps.ts), rounded once to the output dtype. The plan layer builds these; the executors
 * (CPU, WebGPU) only run them.
 */
import type { FloatDType } from '../dtype.js';
import type { UpdateStep } from './update-steps.js';
import type { RowSource } from '../formats/row-decoders.js';
import type { Fp8Encoding, Fp8Rows } from '../formats/fp8-block-codes.js';
import type { ComfyRows } from '../formats/comfy-requantize.js';

/**
 * Importance weights for encoding whole rows (`llama-quantize --imatrix`): `weights` holds `cols`
 * values per expert, and row i of the values (counted from `firstRow`) takes expert
 * ⌊(firstRow + i) / rowsPerExpert⌋'s.
 */
export interface WeightedRows {
  weights: Float32Array;
  cols: number;
  rowsPerExpert: number;
  firstRow: number;
}

/** Raw little-endian tensor bytes of one float dtype. */
export interface FloatTensorBytes {
  dtype: FloatDType;
  data: Uint8Array;
}

/** Rows [src, src + count) of ΔW land on output rows [dst, dst + count) of W. */
export interface RowSegment {
  src: number;
  dst: number;
  count: number;
}

/**
 * Where a term's ΔW rows go when they are not W's output rows one to one: a slice of a fused
 * tensor (q, k and v of one qkv weight), halves swapped, rows permuted. ΔW has `deltaRows` rows
 * (B is deltaRows × r); W's rows that no segment reaches get nothing from the term. Segments may
 * not overlap on W.
 */
export interface RowPlacement {
  deltaRows: number;
  segments: readonly RowSegment[];
}

/**
 * One adapter's low-rank update of W: ΔW = B·A, shaped (out, in), added as `scale · ΔW`.
 * Conv kernels are flattened: A is (r, in·kh·kw), W is (out, in·kh·kw).
 */
export interface LowRankTerm {
  /** A, r × inFeatures, row-major. */
  a: FloatTensorBytes;
  /** B, outFeatures × r (or placement.deltaRows × r), row-major. */
  b: FloatTensorBytes;
  rank: number;
  /** Everything folded in: user weight · α/r (or α/√r). May be negative. */
  scale: number;
  /** ΔW's rows land elsewhere than W's rows one to one (only with the 'out-in' layout). */
  placement?: RowPlacement;
  /**
   * The factors' exact values where `a` and `b` hold them rounded to f32: factors derived from the
   * stored ones (LoHa's Khatri–Rao products, LoKr's krons, VeRA's scaled projections), each value a
   * product of two f32 values and so exact in float64. Same layout as `a` and `b`; the executors
   * merge these, so the result is the module's own ΔW rounded once. Absent: `a` and `b` are exact.
   */
  exact?: ExactFactors;
}

/** Float64 values of a term's A (r × in) and B (deltaRows × r), row-major as the term's bytes. */
export interface ExactFactors {
  a: Float64Array;
  b: Float64Array;
}

/**
 * How W is stored relative to ΔW = B·A (out × in).
 * - `out-in`: W is (out, in) (nn.Linear, conv): W[o, i] += s · Σ_k B[o,k]·A[k,i].
 * - `in-out`: W is (in, out) (GPT-2 Conv1D with fan_in_fan_out, PEFT embeddings): W[i, o] += s · ΔW[o, i].
 */
export type WeightLayout = 'out-in' | 'in-out';

/**
 * DoRA: V = W + Σ s·ΔW, then W' = (m / ‖V‖) ⊙ V.
 * - `out`: one norm per output feature, over the input dim (PEFT `lora_magnitude_vector`, length out).
 * - `in`: one norm per input feature, over the output dim (LyCORIS `dora_scale`, length in).
 * Axes refer to ΔW's (out, in), whatever the storage layout.
 */
export interface DoraSpec {
  magnitude: FloatTensorBytes;
  normAxis: 'out' | 'in';
  /** Added to each norm before dividing (LyCORIS adds float eps; PEFT adds nothing). */
  epsilon: number;
  /** Each norm is raised to at least this before dividing (blissful-tuner clamps at 1e-6); absent: none. */
  normFloor?: number;
  /**
   * Input features per magnitude (default 1): a conv's kh·kw kernel positions of one input
   * channel share its norm (LyCORIS normalises per channel over out, kh, kw). `in` norms only.
   */
  group?: number;
  /**
   * A user weight s that moves each factor f = m / (‖V‖ + ε) to s·(f − 1) + 1 (LyCORIS's DoRA at a
   * weight other than 1, whose ΔW is added whole). Absent: the factor itself.
   */
  strength?: number;
}

/** One weight (or a row slab of it) and the low-rank terms to add to it. */
export interface MergeOp {
  /** A name for errors and labels, usually the base tensor's key. */
  name: string;
  /** The stored matrix is rows × cols (W's full logical shape, even when `base` holds a slab). */
  rows: number;
  cols: number;
  layout: WeightLayout;
  /**
   * W's bytes for rows [rowStart, rowStart + rowCount) of the stored matrix. A slab lets callers
   * stream a huge tensor; omitted rowStart/rowCount mean the whole matrix.
   */
  base: FloatTensorBytes;
  rowStart?: number;
  rowCount?: number;
  terms: LowRankTerm[];
  outDtype: FloatDType;
  /** DoRA needs whole-matrix norms: ops with `dora` are never slabbed across the norm axis. */
  dora?: DoraSpec;
  /**
   * What happens to V after `terms` and `dora`, in order (PEFT's adapters one after another,
   * LyCORIS's non-additive modules). Empty or absent: nothing.
   */
  steps?: UpdateStep[];
}

/** Progress inside one op (useful for giant tensors). */
export type OpProgress = (doneRows: number, totalRows: number) => void;

/** An executor of {@link MergeOp}s: WebGPU or the CPU. Make one with createBackend. */
export interface MergeBackend {
  readonly kind: 'webgpu' | 'cpu';
  /** Human-readable: the GPU adapter's description, or "CPU (…)" with the reason. */
  readonly description: string;
  /**
   * Runs one op and returns W' for the same rows in `op.outDtype`.
   * Throws a MergeError naming `op.name` on non-finite output, device loss or a failed dispatch.
   */
  merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * Sums of squares of V (the op's whole update, before rounding) per stored column, over the op's
   * rows: the first pass of DoRA norms that run across row slabs (see resolveColumnNorms).
   * Backends without it leave the pass to the CPU executor.
   */
  columnSumsOfSquares?(op: MergeOp, signal?: AbortSignal): Promise<Float64Array>;
  /**
   * Decodes whole GGML blocks of `type` (`Q4_K`, …) to f32 on the backend's device; undefined
   * leaves it to the CPU codecs (results are identical: both decode exactly).
   */
  dequantize?(type: string, blocks: Uint8Array, signal?: AbortSignal): Promise<Float32Array | undefined>;
  /**
   * Encodes f32 values into whole GGML blocks of `type` (`blockSize` values in `blockBytes` each)
   * on the backend's worker threads; undefined leaves it to the caller (same bytes either way).
   */
  encodeBlocks?(
    type: string, blockSize: number, blockBytes: number, values: Float32Array, signal?: AbortSignal, weighted?: WeightedRows,
  ): Promise<Uint8Array | undefined>;
  /**
   * Decodes rows [r0, r1) of a quantized weight (a decoder of formats/row-decoders.ts) on the
   * backend's worker threads, into `out` where given; undefined leaves it to the caller (same
   * bytes either way).
   */
  decodeRows?(source: RowSource, r0: number, r1: number, signal?: AbortSignal, out?: Float32Array): Promise<Float32Array | undefined>;
  /**
   * fp8 re-quantization's two passes over merged values (formats/fp8-block-codes.ts) on the
   * backend's worker threads: each block's largest magnitude, then the codes; undefined leaves them
   * to the caller (same bytes either way).
   */
  fp8Maxima?(rows: Fp8Rows, signal?: AbortSignal): Promise<Float32Array | undefined>;
  /** The second of those passes: the rows' fp8 codes under `enc`'s block factors, or undefined. */
  fp8Codes?(rows: Fp8Rows, enc: Fp8Encoding, signal?: AbortSignal): Promise<Uint8Array | undefined>;
  /**
   * ComfyUI's re-quantization of merged int8_tensorwise and nvfp4 rows (formats/comfy-requantize.ts)
   * on the backend's threads: the rows' codes (their per-row or block scales written into the
   * slab's arrays), the bytes of the calling thread's; or undefined (the caller encodes them).
   */
  comfyCodes?(rows: ComfyRows, signal?: AbortSignal): Promise<Uint8Array | undefined>;
  /**
   * Gives back an output of {@link merge} that has been written and will not be read again: the
   * backend may reuse its memory for a later output. Anything it did not return is ignored.
   */
  recycle?(output: Uint8Array): void;
  /**
   * Memory for the slabs the pipeline reads (and outputs it writes) that this backend uses in
   * place, with no copy in or out: the CPU worker threads' shared memory. Absent: ArrayBuffers.
   */
  slabMemory?(bytes: number): ArrayBuffer | SharedArrayBuffer;
  /** Releases GPU resources (idempotent). */
  dispose(): void;
}
