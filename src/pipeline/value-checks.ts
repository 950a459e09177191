/**
 * Every value a merge writes is checked, whichever way it got there:
 * - copied unchanged: its bytes stay exactly as they are, and a cheap bit test finds NaN/Inf the base
 *   already holds, to warn about (the base's values, not the merge's);
 * - converted to another dtype: a value that becomes Inf (f32 1e5 as f16) is an error with the fix;
 * - replaced (PEFT modules_to_save): NaN/Inf in the adapter's tensor, or from the conversion, is an
 *   error naming the adapter tensor;
 * - merged: the backends refuse non-finite results; here the failure is explained: the base's own
 *   value, an adapter module's factor, or overflow of the output dtype (with the fix), so the user
 *   knows which file to blame.
 */
import { isFloatDType, type DType, type FloatDType } from '../dtype.js';
import { mergeStepsOnCpu } from '../engine/cpu/cpu-steps.js';
import type { MergeOp } from '../engine/merge-op.js';
import { MergeError, isMergeError } from '../errors.js';
import type { BiasUpdate, PlannedReplacement, TensorUpdate } from '../plan/merge-plan.js';

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
  if (!EXPONENT_TEST[dtype]) return 0;
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  let n = 0;
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') {
    const special = dtype === 'F8_E4M3' ? 0x7f : 0x7c;
    for (let i = 0; i < bytes.byteLength; i++) if ((bytes[i] & special) === special) n++;
    return n;
  }
  if (dtype === 'F32') {
    const u32 = new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 2);
    for (let i = 0; i < u32.length; i++) if ((u32[i] & 0x7f800000) === 0x7f800000) n++;
  } else {
    const mask = dtype === 'F16' ? 0x7c00 : 0x7f80;
    const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 1);
    for (let i = 0; i < u16.length; i++) if ((u16[i] & mask) === mask) n++;
  }
  return n;
}

/** Collects the copied tensors that already held NaN/Inf, for one warning at the end. */
export class CopiedNonFinite {
  private readonly byFile = new Map<string, Map<string, number>>();

  /** Scans one copied piece of `tensor` from shard file `file` (bytes unchanged). */
  scan(file: string, tensor: string, bytes: Uint8Array, dtype: DType): void {
    if (!hasNonFinite(bytes, dtype)) return;
    let tensors = this.byFile.get(file);
    if (!tensors) this.byFile.set(file, (tensors = new Map()));
    tensors.set(tensor, (tensors.get(tensor) ?? 0) + countNonFinite(bytes, dtype));
  }

  /** One warning per base file that holds non-finite values in tensors the merge only copied. */
  warnings(): string[] {
    return [...this.byFile].map(([file, tensors]) => {
      const listed = [...tensors].slice(0, 8).map(([name, n]) => `${name} (${n} value${n === 1 ? '' : 's'})`);
      const more = tensors.size > listed.length ? `, and ${tensors.size - listed.length} more` : '';
      const one = tensors.size === 1;
      return `${file}: ${tensors.size} tensor${one ? ' already holds' : 's already hold'} NaN or Inf in the base and ` +
        `${one ? 'is copied as it is' : 'are copied as they are'}: ${listed.join(', ')}${more}`;
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

/** A replacement tensor (modules_to_save) as written: no NaN/Inf, from the adapter or from conversion. */
export async function checkReplacement(
  rep: PlannedReplacement, output: Uint8Array, outDtype: FloatDType, readSource: () => Promise<Uint8Array>,
): Promise<void> {
  if (!hasNonFinite(output, outDtype)) return;
  const source = await readSource();
  const where = `${rep.adapter}: tensor "${rep.tensor.name}" (replacing ${rep.baseKey}, modules_to_save)`;
  if (hasNonFinite(source, rep.tensor.dtype)) {
    throw new MergeError('NON_FINITE', `${where} holds ${countNonFinite(source, rep.tensor.dtype)} NaN or Inf values; the adapter file is broken`);
  }
  throw new MergeError(
    'NON_FINITE',
    `${where}: values overflow ${outDtype} (largest finite ${LARGEST[outDtype]}) when converted; write ${outDtype === 'F16' ? 'with --dtype bf16 or f32' : 'with --dtype f32'}`,
  );
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
}

/**
 * Turns a backend's NON_FINITE error into one that names the cause: the base's own values, an
 * adapter tensor holding NaN/Inf, or overflow of the output dtype (with the fix). Other
 * errors pass through unchanged. Runs only on the error path, so it may re-read adapter tensors.
 */
export async function explainNonFinite(error: unknown, failed: FailedUpdate): Promise<unknown> {
  if (!isMergeError(error) || error.code !== 'NON_FINITE') return error;
  const { file, update, base, op } = failed;
  const tensor = `tensor "${update.baseKey}"`;
  if (hasNonFinite(base, update.dtype)) {
    const n = countNonFinite(base, update.dtype);
    return new MergeError(
      'NON_FINITE',
      `${file}: ${tensor} already holds ${n} NaN or Inf value${n === 1 ? '' : 's'} in the base (rows ${rowRange(op)}), and the merge updates it; ` +
        'the base file is broken: use an intact copy of the base',
    );
  }
  const culprit = await brokenAdapterTensor(update);
  if (culprit) return new MergeError('NON_FINITE', `${culprit}; the adapter file is broken (${file}: ${tensor})`);
  const modules = update.terms.map((t) => `${t.adapter} module "${t.moduleName}" (scale ${+t.scale.toPrecision(4)})`).join(', ');
  const largest = op.outDtype === 'F32' ? undefined : largestInF32(op);
  if (largest !== undefined) {
    return new MergeError(
      'NON_FINITE',
      `${file}: ${tensor}: merged values up to ${largest.toPrecision(3)} overflow ${op.outDtype} (largest finite ${LARGEST[op.outDtype]}), ` +
        `after the update from ${modules}; write ${op.outDtype === 'F16' ? 'with --dtype bf16 or f32' : 'with --dtype f32'}, or lower --weight`,
    );
  }
  return new MergeError(
    'NON_FINITE',
    `${file}: ${tensor}: the update from ${modules} makes values too large for any float dtype; check the adapter and --weight`,
  );
}

/** A bias update whose result is not finite: the base bias, or an adapter's lora_B.bias. */
export function explainBiasNonFinite(error: unknown, file: string, bias: BiasUpdate, base: Uint8Array, op: MergeOp): unknown {
  if (!isMergeError(error) || error.code !== 'NON_FINITE') return error;
  if (hasNonFinite(base, bias.dtype)) {
    return new MergeError('NON_FINITE', `${file}: tensor "${bias.baseKey}" already holds NaN or Inf in the base, and the merge updates it; use an intact copy of the base`);
  }
  for (let i = 0; i < bias.terms.length; i++) {
    const b = op.terms[i]?.b;
    if (b && hasNonFinite(b.data, b.dtype)) {
      const t = bias.terms[i];
      return new MergeError('NON_FINITE', `${t.adapter} module "${t.moduleName}": ${t.biasB.name} holds NaN or Inf; the adapter file is broken`);
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
      if (hasNonFinite(await t.file.read(entry), entry.dtype)) {
        return `${t.adapter} module "${t.moduleName}": ${what} ${entry.name} holds NaN or Inf`;
      }
    }
  }
  return undefined;
}

/** The largest |value| of the op merged to f32, or undefined when f32 overflows too. */
function largestInF32(op: MergeOp): number | undefined {
  let out: Uint8Array;
  try {
    out = mergeStepsOnCpu({ ...op, outDtype: 'F32' });
  } catch {
    return undefined;
  }
  const values = new Float32Array(out.buffer, out.byteOffset, out.byteLength / 4);
  let largest = 0;
  for (let i = 0; i < values.length; i++) largest = Math.max(largest, Math.abs(values[i]));
  return largest;
}

function rowRange(op: MergeOp): string {
  const start = op.rowStart ?? 0;
  const count = op.rowCount ?? op.rows - start;
  return `${start}–${start + count - 1}`;
}
