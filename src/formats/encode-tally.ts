/**
 * What re-encoding a whole tensor into blocks does wrong, counted over all its rows: read again
 * piece by piece on the error path only (a merge or a `--dtype` conversion stops at the first slab
 * or chunk it finds a fault in, which need be neither the tensor's first nor its only one), so that
 * the refusal names how many values (or rows) are affected and the first and the last row, as the
 * refusals of NaN/Inf in a tensor do.
 */
import { isMergeError, throwIfAborted } from '../errors.js';
import { iqTooLarge, iqTooLargeFamily } from './gguf/codecs/iq-too-large.js';

/** How many, and the value index (from the tensor's first) of the first and the last; −1 where none. */
export interface ValueSpan {
  count: number;
  first: number;
  last: number;
}

/** A tensor's stored rows, read again on the error path: `rows` of `cols` values, `rowsPerRead` at a time. */
export interface TensorRows {
  rows: number;
  cols: number;
  /** For a stack of experts (E, out, in): its rows are then named by expert (spanRows). */
  experts?: ExpertRows;
  rowsPerRead: number;
  read(rowStart: number, rowCount: number): Promise<Uint8Array>;
}

/** One piece of rows encoded, and what its blocks hold. */
export interface RowEncoder {
  /** `values` (whole rows, the first being the tensor's row `rowStart`) as blocks; throws a NON_FINITE MergeError where the quantizer stops. */
  encode(values: Float32Array, rowStart: number): Promise<Uint8Array>;
  /** NaN/Inf values the blocks decode to (a span of value indices within them), undefined where not blocks. */
  nonFinite(bytes: Uint8Array): { count: number; first: number; last: number } | undefined;
  /** Values the blocks decode to zeros though their input is not small (the quantizer's f32 sums overflowed). */
  zeroed(bytes: Uint8Array, input: Float32Array): number | undefined;
}

/** Adds `count` values, the first and last at these value indices, to `span` (spans added in row order). */
export function addToSpan(span: ValueSpan, count: number, first: number, last: number): void {
  if (count <= 0) return;
  if (span.count === 0) span.first = first;
  span.count += count;
  span.last = last;
}

/** The faults of a tensor's blocks, added piece by piece in row order. */
export class EncodeTally {
  /** Largest |value| encoded. */
  largest = 0;
  /** Values that decode to NaN or Inf (a block's f16 scale overflowed). */
  readonly nonFinite: ValueSpan = { count: 0, first: -1, last: -1 };
  /** Values written as zeros (the quantizer's f32 sums overflowed). */
  readonly zeroed: ValueSpan = { count: 0, first: -1, last: -1 };
  /** Rows the quantizer stops on (count of rows; first and last: the value index of their first value). */
  readonly stopped: ValueSpan = { count: 0, first: -1, last: -1 };
  /** The quantizer's refusal of a stopped row. */
  stoppedBy: string | undefined;

  /** `experts`: for a stack of experts (E, out, in), its rows are named by expert (spanRows). */
  constructor(readonly cols: number, readonly experts?: ExpertRows) {}

  /** Encodes `values` (whole rows from row `rowStart`) and counts their faults; a piece the quantizer stops on is encoded again row by row. */
  async add(values: Float32Array, rowStart: number, encoder: RowEncoder, signal?: AbortSignal): Promise<void> {
    for (let i = 0; i < values.length; i++) this.largest = Math.max(this.largest, Math.abs(values[i]));
    const cols = this.cols;
    const piece = await this.tryEncode(values, rowStart, encoder);
    if (piece) return this.faults(values, rowStart, piece, encoder);
    const rows = Math.max(1, Math.floor(values.length / cols));
    for (let r = 0; r < rows; r++) {
      throwIfAborted(signal);
      const row = values.subarray(r * cols, (r + 1) * cols);
      const bytes = await this.tryEncode(row, rowStart + r, encoder);
      if (bytes) this.faults(row, rowStart + r, bytes, encoder);
      else addToSpan(this.stopped, 1, (rowStart + r) * cols, (rowStart + r) * cols);
    }
  }

  /** Whether any fault was found. */
  get any(): boolean {
    return this.nonFinite.count + this.zeroed.count + this.stopped.count > 0;
  }

  private async tryEncode(values: Float32Array, rowStart: number, encoder: RowEncoder): Promise<Uint8Array | undefined> {
    try {
      return await encoder.encode(values, rowStart);
    } catch (e) {
      if (!isMergeError(e) || e.code !== 'NON_FINITE') throw e;
      this.stoppedBy ??= e.message;
      return undefined;
    }
  }

  private faults(values: Float32Array, rowStart: number, bytes: Uint8Array, encoder: RowEncoder): void {
    const cols = this.cols;
    const v0 = rowStart * cols;
    const bad = encoder.nonFinite(bytes);
    if (bad?.count) addToSpan(this.nonFinite, bad.count, v0 + bad.first, v0 + bad.last);
    if (!encoder.zeroed(bytes, values)) return;
    // Row by row, for where they lie (each row is whole blocks).
    const rowBytes = bytes.byteLength / Math.max(1, values.length / cols);
    for (let r = 0; r * cols < values.length; r++) {
      const n = encoder.zeroed(bytes.subarray(r * rowBytes, (r + 1) * rowBytes), values.subarray(r * cols, (r + 1) * cols)) ?? 0;
      addToSpan(this.zeroed, n, v0 + r * cols, v0 + r * cols);
    }
  }
}

/** "row 3", or "first in row 2, last in row 13", for a span of value indices in rows of `cols` values. */
export function spanRows(span: { first: number; last: number }, cols: number, experts?: ExpertRows): string {
  const name = (at: number) => (experts ? expertRowName(at, experts) : `row ${Math.floor(at / cols)}`);
  const first = name(span.first), last = name(span.last);
  return first === last ? first : `first in ${first}, last in ${last}`;
}

/** A stack of experts (E, out, in): `rows` (out) of `cols` (in) values each. */
export interface ExpertRows {
  rows: number;
  cols: number;
}

/**
 * "row R of expert E" for the value at flat index `at` of a stack of experts: the same words
 * whether a refusal counts the tensor by its first dimension, by rows of an E·out view, or by
 * llama.cpp's rows of ne0 across its experts.
 */
export function expertRowName(at: number, experts: ExpertRows): string {
  const row = Math.floor(at / experts.cols);
  return `row ${row % experts.rows} of expert ${Math.floor(row / experts.rows)}`;
}

/**
 * A tensor's rows per expert (`out`) where it is a stack of experts (E, out, in): 3-D and named as
 * one (llama.cpp's `_exps`, transformers' `experts.`, mlx-lm's `switch_mlp.`); undefined for any
 * other tensor (a 3-D conv1d weight (out, in, k) keeps rows of its first dimension).
 */
export function expertRowsOf(name: string, shape: readonly number[]): ExpertRows | undefined {
  return shape.length === 3 && /_exps\b|(^|[._])experts[._]|(^|\.)switch_mlp\./.test(name) ? { rows: shape[1], cols: shape[2] } : undefined;
}

/** "N value(s) (where)". */
export function valuesIn(span: ValueSpan, cols: number, experts?: ExpertRows): string {
  return `${span.count} value${span.count === 1 ? '' : 's'} (${spanRows(span, cols, experts)})`;
}

/**
 * The quantizer's refusal of the rows it stops on, with how many and which: an IQ codec's line
 * with "in N rows (first in row F, last in row L)" after its block; another's with them appended.
 */
export function stoppedRowsText(tally: EncodeTally): string {
  const n = tally.stopped.count;
  const rows = spanRows(tally.stopped, tally.cols, tally.experts);
  const where = n === 1 ? `in ${rows}` : `in ${n} rows (${rows})`;
  const message = tally.stoppedBy ?? '';
  const family = iqTooLargeFamily(message);
  return family ? iqTooLarge(family, where) : `${message} (${where})`;
}
