/**
 * Every value a merge writes is checked, whichever way it got there:
 * - copied unchanged: its bytes stay exactly as they are, and a cheap bit test finds NaN/Inf the base
 *   already holds, to warn about (the base's values, not the merge's); GGUF blocks are tested by
 *   their scales, which decide whether any value they decode to is finite (gguf/block-scales.ts);
 * - converted to another dtype: a value that becomes Inf (f32 1e5 as f16) is an error with the fix;
 * - replaced (PEFT modules_to_save, a base weight saved with the adapter): NaN/Inf in the adapter's
 *   tensor, or from the conversion, is an error naming the adapter tensor;
 * - rows set (trainable tokens): a set row holding NaN/Inf is an error naming the adapter tensor;
 *   the rows kept are checked like copies (the base's own NaN/Inf warned about, overflow refused);
 * - merged: the backends refuse non-finite results; here the failure is explained: the base's own
 *   value, an adapter module's factor, or overflow of the output dtype (with the fix), so the user
 *   knows which file to blame; merged values re-encoded as GGUF blocks are checked again, since a
 *   block's f16 scale can overflow where the f32 values did not.
 */
import { decodeToF32, DTYPE_BYTES, encodeFromF32, isFloatDType, type DType, type FloatDType } from '../dtype.js';
import { mergeStepsOnCpu } from '../engine/cpu/cpu-steps.js';
import type { FloatTensorBytes, MergeOp } from '../engine/merge-op.js';
import { MergeError, isMergeError, throwIfAborted } from '../errors.js';
import { shownList } from '../shown-text.js';
import { addToSpan, expertRowName, expertRowsOf, stoppedRowsText, valuesIn, type EncodeTally, type ExpertRows, type ValueSpan } from '../formats/encode-tally.js';
import type { BiasUpdate, PlannedReplacement, TensorUpdate } from '../plan/merge-plan.js';
import type { PlannedRowSet } from '../plan/row-sets.js';

/** Largest finite value of each output dtype, for messages. */
const LARGEST: Record<FloatDType, string> = { F32: '3.4e38', F16: '65504', BF16: '3.39e38', F8_E4M3: '448', F8_E5M2: '57344' };

/** Per dtype: the exponent mask and the increment that carries into the sign bit when it is all ones. */
const EXPONENT_TEST: Partial<Record<DType, { mask: number; carry: number; signs: number }>> = {
  F32: { mask: 0x7f800000, carry: 0x00800000, signs: 0x80000000 },
  F16: { mask: 0x7c007c00, carry: 0x04000400, signs: 0x80008000 },
  BF16: { mask: 0x7f807f80, carry: 0x00800080, signs: 0x80008000 },
  // fp8, four per word: e5m2's exponent is 0x7c; e4m3fn has no Inf and only 0x7f/0xff are NaN.
  F8_E5M2: { mask: 0x7c7c7c7c, carry: 0x04040404, signs: 0x80808080 },
  F8_E4M3: { mask: 0x7f7f7f7f, carry: 0x01010101, signs: 0x80808080 },
};

/**
 * Does `bytes` (little-endian `dtype` values) hold NaN or ±Inf? One AND and one ADD per 32-bit word:
 * an all-ones exponent plus one carries into the word's (or half-word's) sign bit. Non-float dtypes
 * have no such values.
 */
export function hasNonFinite(bytes: Uint8Array, dtype: DType): boolean {
  const test = EXPONENT_TEST[dtype];
  if (!test) return false;
  const words = bytes.byteLength >>> 2;
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice(0, words * 4);
  const u32 = new Uint32Array(aligned.buffer, aligned.byteOffset, words);
  const { mask, carry } = test;
  let seen = 0;
  for (let i = 0; i < words; i++) seen |= (u32[i] & mask) + carry;
  if ((seen >>> 0) & test.signs) return true;
  if (bytes.byteLength % 4 === 0) return false;
  // The last one to three bytes: a zero-padded word.
  let tail = 0;
  for (let i = words * 4, k = 0; i < bytes.byteLength; i++, k += 8) tail |= bytes[i] << k;
  const filled = 2 ** (8 * (bytes.byteLength % 4)) - 1;
  return (((tail & mask) + (carry & filled)) & test.signs & filled) !== 0;
}

/** How many NaN/Inf values `bytes` holds (only called once hasNonFinite said some). */
export function countNonFinite(bytes: Uint8Array, dtype: DType): number {
  return nonFiniteSpan(bytes, dtype).count;
}

/** How many NaN/Inf values `bytes` holds, and the index of the first and the last (−1 where none). */
export function nonFiniteSpan(bytes: Uint8Array, dtype: DType): { count: number; first: number; last: number } {
  const span = { count: 0, first: -1, last: -1 };
  if (!EXPONENT_TEST[dtype]) return span;
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const hit = (i: number) => {
    if (span.count++ === 0) span.first = i;
    span.last = i;
  };
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') {
    const special = dtype === 'F8_E4M3' ? 0x7f : 0x7c;
    for (let i = 0; i < bytes.byteLength; i++) if ((bytes[i] & special) === special) hit(i);
  } else if (dtype === 'F32') {
    const u32 = new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 2);
    for (let i = 0; i < u32.length; i++) if ((u32[i] & 0x7f800000) === 0x7f800000) hit(i);
  } else {
    const mask = dtype === 'F16' ? 0x7c00 : 0x7f80;
    const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 1);
    for (let i = 0; i < u16.length; i++) if ((u16[i] & mask) === mask) hit(i);
  }
  return span;
}

/**
 * The rows of a slab's non-finite values (`span`: value indices from the slab's first value, row
 * `rowStart` of a matrix of `cols` columns): the one row, or the first and the last holding any.
 */
function nonFiniteRowsText(span: { first: number; last: number }, cols: number, rowStart: number, experts?: ExpertRows): string {
  const name = (at: number) => (experts ? expertRowName(rowStart * cols + at, experts) : `row ${rowStart + Math.floor(at / cols)}`);
  const first = name(span.first), last = name(span.last);
  return first === last ? first : `first in ${first}, last in ${last}`;
}

/** The elements of a 1-D tensor's non-finite values (`span`: indices from its first): the one, or the first and the last. */
function nonFiniteElementsText(span: { first: number; last: number }): string {
  return span.first === span.last ? `element ${span.first}` : `first in element ${span.first}, last in element ${span.last}`;
}

/** "N NaN or Inf value(s) (where)": how many a tensor holds and where. */
function nonFiniteCountText(span: { count: number }, where: string): string {
  return `${span.count} NaN or Inf value${span.count === 1 ? '' : 's'} (${where})`;
}

/**
 * The NaN/Inf values of a whole tensor an adapter saved (a replacement, or the start of a row set),
 * read again from its first row: only on the error path, where a piece of it held some.
 */
async function nonFiniteInSaved(rep: PlannedReplacement): Promise<{ count: number; first: number; last: number }> {
  return nonFiniteSpan(await rep.file.read(rep.tensor), rep.tensor.dtype);
}

/**
 * Where a whole tensor's NaN/Inf lie (`span`: value indices from its first): rows of its first
 * dimension, or elements of a vector (one with a single dimension past 1 too: an IA3 vector
 * stored (out, 1), a DoRA magnitude (1, in)).
 */
export function nonFiniteWhere(shape: readonly number[], span: { first: number; last: number }, experts?: ExpertRows): string {
  if (shape.filter((d) => d !== 1).length < 2) return nonFiniteElementsText(span);
  // A stack of experts (E, out, in): its rows named by expert, as the merge's row slabs and GGUF block tallies name them.
  if (experts) return nonFiniteRowsText(span, experts.cols, 0, experts);
  return nonFiniteRowsText(span, shape.slice(1).reduce((a, b) => a * b, 1), 0);
}

/** Where a saved tensor's NaN/Inf lie: rows of its first dimension, or elements of a vector. */
function savedWhere(rep: PlannedReplacement, span: { first: number; last: number }): string {
  return nonFiniteWhere(rep.shape, span, expertRowsOf(rep.tensor.name, rep.shape));
}

/**
 * "N NaN or Inf value(s) (first in row F, last in row L)" for a whole tensor's bytes (`dtype`,
 * `shape`), named by rows (elements for a vector); undefined where it holds none.
 */
export function nonFiniteInTensorText(bytes: Uint8Array, dtype: DType, shape: readonly number[], experts?: ExpertRows): string | undefined {
  const span = nonFiniteSpan(bytes, dtype);
  return span.count ? nonFiniteCountText(span, nonFiniteWhere(shape, span, experts)) : undefined;
}

/** "N NaN or Inf value(s) (first in row F, last in row L)" for a whole tensor of `shape` (`span`: value indices from its first); undefined where none. */
export function nonFiniteSpanText(shape: readonly number[], span: { count: number; first: number; last: number }, experts?: ExpertRows): string | undefined {
  return span.count ? nonFiniteCountText(span, nonFiniteWhere(shape, span, experts)) : undefined;
}

/** Collects the copied tensors that already held NaN/Inf, for one warning at the end. */
export class CopiedNonFinite {
  private readonly byFile = new Map<string, Map<string, number>>();

  /** Scans one copied piece of `tensor` from shard file `file` (bytes unchanged). */
  scan(file: string, tensor: string, bytes: Uint8Array, dtype: DType): void {
    if (hasNonFinite(bytes, dtype)) this.add(file, tensor, countNonFinite(bytes, dtype));
  }

  /** Records `count` NaN/Inf values found in one copied piece of `tensor` (blocks counted by their scales). */
  add(file: string, tensor: string, count: number): void {
    if (count <= 0) return;
    let tensors = this.byFile.get(file);
    if (!tensors) this.byFile.set(file, (tensors = new Map()));
    tensors.set(tensor, (tensors.get(tensor) ?? 0) + count);
  }

  /** One warning per base file that holds non-finite values in tensors the merge only copied. */
  warnings(): string[] {
    return [...this.byFile].map(([file, tensors]) => {
      const listed = shownList(tensors, ([name, n]) => `${name} (${n} value${n === 1 ? '' : 's'})`, ', ', tensors.size);
      const one = tensors.size === 1;
      return `${file}: ${tensors.size} tensor${one ? ' already holds' : 's already hold'} NaN or Inf in the base and ` +
        `${one ? 'is copied as it is' : 'are copied as they are'}: ${listed}`;
    });
  }
}

/**
 * A copied tensor converted to the output dtype: values that were finite must stay finite. The
 * base's own NaN/Inf are left to the warning about copies (the caller scans the input too).
 */
export function checkConverted(file: string, tensor: string, input: Uint8Array, inDtype: DType, output: Uint8Array, outDtype: FloatDType): void {
  if (!hasNonFinite(output, outDtype)) return;
  const created = countNonFinite(output, outDtype) - countNonFinite(input, inDtype);
  if (created <= 0) return;
  throw new MergeError(
    'NON_FINITE',
    `${file}: tensor "${tensor}": ${created} value${created === 1 ? ' overflows' : 's overflow'} ${outDtype} (largest finite ${LARGEST[outDtype]}) ` +
      `when converted from ${inDtype}; write ${outDtype === 'F16' ? 'with --dtype bf16 or f32' : 'with --dtype f32'}, or keep the base's dtype`,
  );
}

/**
 * Merged f32 values (finite: the backends refuse others) re-encoded as blocks of `type`, counted
 * over the whole tensor (`tally`, the error path only): a block whose values are too large for its
 * f16 scale (about 65504 × the largest quantized level) would decode to NaN or Inf, or, where
 * ggml's quantizer overflows f32 first (Q3_K, Q6_K, IQ4_XS past about 1e18), to zeros; ggml's IQ1,
 * IQ2 and IQ3 quantizers stop on such values. The refusal names how many values (or rows) and the
 * first and the last row.
 */
export function checkEncodedBlocks(file: string, tensor: string, type: string, tally: EncodeTally): void {
  if (!tally.any) return;
  const fix = 'write with --dtype f32 or bf16, or lower --weight';
  const at = `${file}: tensor "${tensor}": `;
  if (tally.stopped.count) throw new MergeError('NON_FINITE', at + stoppedRowsText(tally));
  const largest = `merged values up to ${tally.largest.toPrecision(3)} are too large for ${type} blocks: `;
  throw new MergeError(
    'NON_FINITE',
    at + largest + (tally.nonFinite.count
      ? `${valuesIn(tally.nonFinite, tally.cols, tally.experts)} would be NaN or Inf, the blocks' f16 scales overflow; `
      : `${valuesIn(tally.zeroed, tally.cols, tally.experts)} would be written as zeros, ggml's quantizer overflows f32 on them; `) + fix,
  );
}

/** How an adapter tensor that a merge writes in place of a base tensor is named in messages. */
function savedTensor(rep: PlannedReplacement): string {
  const role = rep.origin === 'modules_to_save' ? `replacing ${rep.baseKey}, modules_to_save`
    : rep.origin === 'set_weight' ? `replacing ${rep.baseKey}, set_weight` : `${rep.baseKey} saved with the adapter`;
  return `${rep.adapter}: tensor "${rep.tensor.name}" (${role})`;
}

/**
 * A piece of a replacement tensor as written (`source`: the same piece as the adapter stores it): no
 * NaN/Inf, from the adapter or from conversion. Where the adapter's piece holds some, the whole
 * tensor is read again (the error path only), and the refusal names how many it holds and the row
 * of the first (and the last), not the piece's.
 */
export async function checkReplacement(rep: PlannedReplacement, source: Uint8Array, output: Uint8Array, outDtype: FloatDType): Promise<void> {
  if (!hasNonFinite(output, outDtype)) return;
  const where = savedTensor(rep);
  if (hasNonFinite(source, rep.tensor.dtype)) {
    const span = await nonFiniteInSaved(rep);
    throw new MergeError('NON_FINITE', `${where} holds ${nonFiniteCountText(span, savedWhere(rep, span))}; the adapter file is broken`);
  }
  throw new MergeError(
    'NON_FINITE',
    `${where}: values overflow ${outDtype} (largest finite ${LARGEST[outDtype]}) when converted; write ${outDtype === 'F16' ? 'with --dtype bf16 or f32' : 'with --dtype f32'}`,
  );
}

/**
 * A tensor an adapter saved that an update starts from (a resized embedding under its LoRA), read
 * whole in pieces of about `slabBytes`: refused as the merge refuses it where it holds NaN/Inf,
 * naming how many and the first and last row.
 */
export async function checkSavedStart(source: PlannedReplacement, slabBytes: number, signal?: AbortSignal): Promise<void> {
  const rows = source.tensor.shape.length === 0 ? 1 : source.tensor.shape[0];
  const cols = source.tensor.shape.slice(1).reduce((a, b) => a * b, 1);
  const rowBytes = cols * DTYPE_BYTES[source.tensor.dtype];
  const step = Math.max(1, Math.floor(slabBytes / Math.max(rowBytes, 1)));
  const span = { count: 0, first: -1, last: -1 };
  for (let r0 = 0; r0 < rows; r0 += step) {
    throwIfAborted(signal);
    const found = nonFiniteSpan(await source.file.readPart(source.tensor, r0 * rowBytes, Math.min(step, rows - r0) * rowBytes), source.tensor.dtype);
    if (found.count === 0) continue;
    if (span.count === 0) span.first = r0 * cols + found.first;
    span.count += found.count;
    span.last = r0 * cols + found.last;
  }
  const n = span.count;
  if (n) throw new MergeError('NON_FINITE', `${savedTensor(source)} holds ${n} NaN or Inf value${n === 1 ? '' : 's'} (${savedStartRows(source, span, cols)}); the adapter file is broken`);
}

/** The rows of a saved start's NaN/Inf: of its first dimension, or by expert for a stack of experts. */
function savedStartRows(source: PlannedReplacement, span: { first: number; last: number }, cols: number): string {
  return nonFiniteRowsText(span, cols, 0, expertRowsOf(source.tensor.name, source.tensor.shape));
}

/**
 * A slab of a tensor with rows set (trainable tokens), as written: a set row must hold finite
 * values (else the adapter's delta tensor is broken); the other rows come from the base, whose own
 * NaN/Inf are warned about as for copies, or from a tensor the adapter saved, which must be finite;
 * no value may overflow the output dtype.
 */
export async function checkRowSet(
  file: string, rowSet: PlannedRowSet, rowStart: number, start: FloatTensorBytes, setRows: ReadonlyMap<number, Float32Array>,
  output: Uint8Array, outDtype: FloatDType, copied: CopiedNonFinite,
): Promise<void> {
  if (!hasNonFinite(output, outDtype) && !hasNonFinite(start.data, start.dtype)) return;
  const cols = rowSet.shape[1];
  const before = decodeToF32(start.data, start.dtype);
  const after = decodeToF32(output, outDtype);
  const nonFinite = (v: Float32Array) => v.reduce((n, x) => n + (Number.isFinite(x) ? 0 : 1), 0);
  let copiedCount = 0;
  for (let i = 0; i < before.length / cols; i++) {
    const row = rowStart + i;
    const set = setRows.get(row);
    const input = set ?? before.subarray(i * cols, (i + 1) * cols);
    const had = nonFinite(input);
    if (had > 0 && set) throw brokenTokenRows(rowSet, setRows);
    if (had > 0 && rowSet.source) {
      const span = await nonFiniteInSaved(rowSet.source);
      throw new MergeError('NON_FINITE', `${savedTensor(rowSet.source)} holds ${nonFiniteCountText(span, savedWhere(rowSet.source, span))}; the adapter file is broken`);
    }
    copiedCount += had;
    if (nonFinite(after.subarray(i * cols, (i + 1) * cols)) > had) {
      throw new MergeError(
        'NON_FINITE',
        `${file}: tensor "${rowSet.baseKey}": values of row ${row}${set ? ' (set by trainable tokens)' : ''} overflow ${outDtype} (largest finite ${LARGEST[outDtype]}) when converted; ` +
          `write ${outDtype === 'F16' ? 'with --dtype bf16 or f32' : 'with --dtype f32'}`,
      );
    }
  }
  copied.add(file, rowSet.baseKey, copiedCount);
}

/**
 * A trainable-tokens delta holding NaN/Inf: named by the first adapter tensor that holds some, with
 * the tokens of its first and last bad rows and how many bad values it holds over all its rows (not
 * only the slab's that met them: slabs run side by side).
 */
function brokenTokenRows(rowSet: PlannedRowSet, setRows: ReadonlyMap<number, Float32Array>): MergeError {
  for (const term of rowSet.terms) {
    let count = 0;
    let first = -1, last = -1;
    for (const token of term.indices) {
      const values = setRows.get(token);
      if (!values) continue;
      let bad = 0;
      for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) bad++;
      if (bad === 0) continue;
      count += bad;
      if (first < 0 || token < first) first = token;
      if (token > last) last = token;
    }
    if (count === 0) continue;
    const where = first === last ? `the row for token ${first}` : `first in the row for token ${first}, last in the row for token ${last}`;
    return new MergeError(
      'NON_FINITE',
      `${term.adapter}: tensor "${term.delta.name}" (trainable tokens of ${rowSet.baseKey}) holds ${count} NaN or Inf value${count === 1 ? '' : 's'} (${where}); the adapter file is broken`,
    );
  }
  return new MergeError('NON_FINITE', `tensor "${rowSet.baseKey}": a trainable-tokens row holds NaN or Inf; the adapter file is broken`);
}

/** What a failed merged tensor needs for its explanation. */
export interface FailedUpdate {
  /** Shard file of the base tensor. */
  file: string;
  update: TensorUpdate;
  /** The base bytes of this slab, as read. */
  base: Uint8Array;
  /** The op that failed. */
  op: MergeOp;
  /**
   * The NaN/Inf values of the whole tensor W (value indices from its first row), read again where
   * the slab's base holds some, so that the message names the tensor's first such row and count.
   */
  inTensor?: () => Promise<{ count: number; first: number; last: number }>;
  /**
   * The values of the whole tensor that overflow the output dtype (value indices from its first
   * row) and its largest |value|, every slab merged again in f32 on the CPU, where the slab's do.
   */
  overflowInTensor?: () => Promise<OverflowSpan | undefined>;
  /** For a stack of experts (E, out, in): its rows are named by expert. */
  experts?: ExpertRows;
}

/**
 * Values that overflow an output dtype: how many, the value index of the first and the last, the
 * largest finite |value| merged, and those past f32 (Inf or NaN merged in f32: past every dtype).
 */
export interface OverflowSpan extends ValueSpan {
  largest: number;
  past: ValueSpan;
}

/**
 * Turns a backend's NON_FINITE error into one that names the cause: the base's own values, an
 * adapter tensor holding NaN/Inf, or overflow of the output dtype (with the fix). Other
 * errors pass through unchanged. Runs only on the error path, so it may re-read adapter tensors.
 */
export async function explainNonFinite(error: unknown, failed: FailedUpdate): Promise<unknown> {
  if (!isMergeError(error) || error.code !== 'NON_FINITE') return error;
  const { file, update, base, op, experts } = failed;
  const tensor = `tensor "${update.baseKey}"`;
  if (hasNonFinite(base, op.base.dtype)) {
    // The whole tensor's, read again; the slab's where that finds none (an fp8 weight's codes are
    // finite but a decoded scale is not: the slab's values are the only ones known to be bad).
    const whole = await failed.inTensor?.();
    const [span, rowStart] = whole?.count ? [whole, 0] : [nonFiniteSpan(base, op.base.dtype), op.rowStart ?? 0];
    const n = span.count;
    if (update.source) return new MergeError('NON_FINITE', `${savedTensor(update.source)} holds ${n} NaN or Inf value${n === 1 ? '' : 's'} (${nonFiniteRowsText(span, op.cols, rowStart, experts)}); the adapter file is broken`);
    return baseHoldsNonFinite(file, update.baseKey, span, op.cols, rowStart, experts);
  }
  const culprit = await brokenAdapterTensor(update);
  if (culprit) return new MergeError('NON_FINITE', `${culprit}; the adapter file is broken (${file}: ${tensor})`);
  const modules = shownList(update.terms, (t) => `${t.adapter} module "${t.moduleName}" (scale ${+t.scale.toPrecision(4)})`, ', ', update.terms.length);
  const slab = overflowInOp(op);
  if (slab && (slab.count || slab.past.count)) {
    // The whole tensor's, merged again slab by slab (the slab met need be neither the first nor the only one).
    const whole = await failed.overflowInTensor?.();
    const [span, rowStart] = whole && (whole.count || whole.past.count) ? [whole, 0] : [slab, op.rowStart ?? 0];
    // Values past f32 somewhere in the tensor: no output dtype holds them.
    if (span.past.count) return pastEveryFloat(`${file}: ${tensor}`, modules, span.past, op.cols, rowStart, experts);
    return overflowError(`${file}: ${tensor}`, op.outDtype, span, modules, `: ${valuesText(span.count)} (${nonFiniteRowsText(span, op.cols, rowStart, experts)})`);
  }
  if (slab && op.outDtype !== 'F32') return overflowError(`${file}: ${tensor}`, op.outDtype, slab, modules, '');
  return new MergeError(
    'NON_FINITE',
    `${file}: ${tensor}: the update from ${modules} makes values too large for any float dtype; check the adapter and --weight`,
  );
}

/** "N value(s)". */
function valuesText(n: number): string {
  return `${n} value${n === 1 ? '' : 's'}`;
}

/** Merged values past the output dtype, with the fix: "merged values up to X overflow F16 (largest finite 65504)`where`, after the update from …". */
function overflowError(at: string, outDtype: FloatDType, span: OverflowSpan, modules: string, where: string): MergeError {
  return new MergeError(
    'NON_FINITE',
    `${at}: merged values up to ${span.largest.toPrecision(3)} overflow ${outDtype} (largest finite ${LARGEST[outDtype]})${where}, ` +
      `after the update from ${modules}; write ${outDtype === 'F16' ? 'with --dtype bf16 or f32' : 'with --dtype f32'}, or lower --weight`,
  );
}

/** Merged values past f32 (Inf, or NaN from Inf − Inf), which no output dtype holds: how many and their first and last row. */
function pastEveryFloat(at: string, modules: string, past: ValueSpan, cols: number, rowStart: number, experts?: ExpertRows): MergeError {
  return new MergeError(
    'NON_FINITE',
    `${at}: the update from ${modules} makes ${valuesText(past.count)} (${nonFiniteRowsText(past, cols, rowStart, experts)}) too large for any float dtype; check the adapter and --weight`,
  );
}

/**
 * The base's own NaN/Inf in rows the merge updates (any merge of them is NaN or Inf): found in the
 * decoded values after a failed merge, or beforehand in GGUF blocks by their scales; `span` holds
 * their count and the value indices of the first and the last from row `rowStart` on, so the
 * message names the rows that hold them, not the slab's.
 */
export function baseHoldsNonFinite(
  file: string, baseKey: string, span: { count: number; first: number; last: number }, cols: number, rowStart: number, experts?: ExpertRows,
): MergeError {
  const n = span.count;
  return new MergeError(
    'NON_FINITE',
    `${file}: tensor "${baseKey}" already holds ${n} NaN or Inf value${n === 1 ? '' : 's'} in the base (${nonFiniteRowsText(span, cols, rowStart, experts)}), and the merge updates it; ` +
      'the base file is broken: use an intact copy of the base',
  );
}

/** A bias update whose result is not finite: the base bias, or an adapter's lora_B.bias. */
export function explainBiasNonFinite(error: unknown, file: string, bias: BiasUpdate, base: Uint8Array, op: MergeOp): unknown {
  if (!isMergeError(error) || error.code !== 'NON_FINITE') return error;
  // A bias is read whole: its span is the tensor's, named by element.
  const span = nonFiniteSpan(base, bias.dtype);
  if (bias.source && span.count) {
    return new MergeError('NON_FINITE', `${savedTensor(bias.source)} holds ${nonFiniteCountText(span, nonFiniteElementsText(span))}; the adapter file is broken`);
  }
  if (span.count) {
    return new MergeError(
      'NON_FINITE',
      `${file}: tensor "${bias.baseKey}" already holds ${span.count} NaN or Inf value${span.count === 1 ? '' : 's'} in the base (${nonFiniteElementsText(span)}), and the merge updates it; ` +
        'the base file is broken: use an intact copy of the base',
    );
  }
  // loadBiasUpdate gives each term but a rotation one value vector, in order: an added bias (op.terms,
  // then 'add' steps) or an IA3 vector's factors (a 'scale' step, where NaN stays at its element).
  const values: { data: Uint8Array; dtype: DType }[] = op.terms.map((t) => t.b);
  for (const step of op.steps ?? []) {
    if (step.kind === 'add') values.push(...step.terms.map((t) => t.b));
    else if (step.kind === 'scale') values.push(step.factors);
  }
  // A GLoRA bias path gives two: its factors 1 + s·D, then E + W·C.
  const valued = bias.terms.flatMap((t) => (t.map ? [] : t.glora ? [t, t] : [t]));
  for (let i = 0; i < valued.length; i++) {
    const b = values[i];
    const bad = b ? nonFiniteSpan(b.data, b.dtype) : undefined;
    if (bad?.count) {
      const t = valued[i];
      const held = `holds ${nonFiniteCountText(bad, nonFiniteElementsText(bad))}; the adapter file is broken`;
      // An IA3 vector is the weight's factor too: worded as the weight's refusal, at the bias.
      if (t.glora) return new MergeError('NON_FINITE', `${t.adapter} module "${t.moduleName}": its GLoRA bias path (b ⊙ D + E + W·C, ${file}: tensor "${bias.baseKey}") ${held}`);
      return new MergeError('NON_FINITE', t.multiply
        ? `${t.adapter} module "${t.moduleName}": factor ${t.biasB.name} ${held} (${file}: tensor "${bias.baseKey}")`
        : `${t.adapter} module "${t.moduleName}": ${t.biasB.name} ${held}`);
    }
  }
  return new MergeError(
    'NON_FINITE',
    `${file}: tensor "${bias.baseKey}": the merged bias overflows ${op.outDtype} (largest finite ${LARGEST[op.outDtype]}); ` +
      `write ${op.outDtype === 'F16' ? 'with --dtype bf16 or f32' : 'with --dtype f32'}, or lower --weight`,
  );
}

/** The first adapter tensor of the update (factors, DoRA magnitudes…) that holds NaN or Inf, named. */
async function brokenAdapterTensor(update: TensorUpdate): Promise<string | undefined> {
  for (const t of update.terms) {
    const entries = Object.values(t.module.tensors).map((entry) => ({ entry, what: 'factor' }));
    if (t.dora) entries.push({ entry: t.dora.magnitude, what: 'DoRA magnitude' });
    for (const { entry, what } of entries) {
      if (!isFloatDType(entry.dtype)) continue;
      const bad = nonFiniteInTensorText(await t.file.read(entry), entry.dtype, entry.shape, expertRowsOf(entry.name, entry.shape));
      if (bad) return `${t.adapter} module "${t.moduleName}": ${what} ${entry.name} holds ${bad}`;
    }
  }
  return undefined;
}

/**
 * The op merged to f32 on the CPU: its largest finite |value|, the values that overflow its output
 * dtype and those past f32 itself (value indices from the op's first row); undefined where the
 * merge fails otherwise.
 */
export function overflowInOp(op: MergeOp): OverflowSpan | undefined {
  let out: Uint8Array;
  try {
    out = mergeStepsOnCpu({ ...op, outDtype: 'F32' }, undefined, undefined, true);
  } catch {
    return undefined;
  }
  const values = new Float32Array(out.buffer, out.byteOffset, out.byteLength / 4);
  const edge = ROUNDS_TO_INF_FROM[op.outDtype];
  let largest = 0;
  let onEdge = false;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    if (v === edge) onEdge = true;
    if (v !== Infinity && v === v) largest = Math.max(largest, v);
  }
  const past = nonFiniteSpan(out, 'F32');
  if (op.outDtype === 'F32') return { ...past, largest, past };
  // A value whose f32 rounding is the edge may lie under it (the output dtype rounds it to its
  // largest finite value): rounded from f32 it would be counted. The op merged to the output dtype
  // itself then (each value rounded once, as the merge rounds it).
  let encoded: Uint8Array;
  try {
    encoded = onEdge ? mergeStepsOnCpu(op, undefined, undefined, true) : encodeFromF32(values, op.outDtype);
  } catch {
    return undefined;
  }
  const span = nonFiniteSpan(encoded, op.outDtype);
  return { count: span.count, first: span.first, last: span.last, largest, past };
}

/**
 * The f32 magnitude from which values round to Inf in f16 and bf16 (to nearest even: the midpoint
 * past the largest finite value); fp8 outputs saturate.
 */
const ROUNDS_TO_INF_FROM: Partial<Record<FloatDType, number>> = { F16: 65520, BF16: (2 - 2 ** -8) * 2 ** 127 };

/** No values yet: the start of a whole tensor's {@link OverflowSpan}, added op by op with {@link addOverflow}. */
export function noOverflow(): OverflowSpan {
  return { count: 0, first: -1, last: -1, largest: 0, past: { count: 0, first: -1, last: -1 } };
}

/**
 * Adds an op's overflow (`found`, value indices from its first row, value `at` of the tensor) to
 * the whole tensor's `span` (ops added in row order); false where the op's merge failed otherwise.
 */
export function addOverflow(span: OverflowSpan, found: OverflowSpan | undefined, at: number): boolean {
  if (!found) return false;
  span.largest = Math.max(span.largest, found.largest);
  addToSpan(span, found.count, at + found.first, at + found.last);
  addToSpan(span.past, found.past.count, at + found.past.first, at + found.past.last);
  return true;
}
