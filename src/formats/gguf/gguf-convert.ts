/**
 * An untouched GGUF tensor converted to another type (`--dtype`): its bytes decoded exactly to f32
 * and encoded to the target by the reference quantizer (on the backend's threads when it has
 * them), as llama-quantize does from a tensor it dequantizes. Values that were finite and are no
 * longer (past f16's range, or a block's f16 scale) are an error naming the fix; NaN/Inf the base
 * already holds are reported by the copy checks and kept in f16, bf16 or f32, and refused for every
 * block type (none holds them: MXFP4 and NVFP4 write them as 0, the IQ ones drop them or stop, the
 * others carry them into a block's scale, which llama-quantize's output check refuses). Values so large that the quantizer's f32
 * sums overflow and it writes zero blocks (Q3_K, Q6_K, IQ4_XS) are an error too.
 */
import { decodeToF32, encodeFromF32, type FloatDType } from '../../dtype.js';
import type { MergeBackend } from '../../engine/merge-op.js';
import { isMergeError, MergeError, throwIfAborted } from '../../errors.js';
import { EncodeTally, stoppedRowsText, valuesIn, type RowEncoder, type TensorRows, type ValueSpan } from '../encode-tally.js';
import { nonFiniteBlockSpan, nonFiniteBlockValues, zeroedBlockValues } from './block-scales.js';
import { decodeBlocks, encodeBlocks } from './gguf-blocks.js';
import type { GgmlType } from './ggml-types.js';

const FLOATS = new Set(['F32', 'F16', 'BF16']);
/**
 * Block types whose quantizers do not keep NaN and Inf: MXFP4 and NVFP4 hold none and write them as
 * 0 (best_index_mxfp4); IQ4_NL and IQ4_XS leave them out of the block's largest magnitude, so a
 * sub-block with one gets a least-squares scale of 0 (or NaN where its sums overflow); ggml's IQ3
 * quantizers stop (GGML_ASSERT) on most blocks holding one (their weights x² are not finite).
 */
const NO_NON_FINITE = new Set(['MXFP4', 'NVFP4', 'IQ3_XXS', 'IQ3_S', 'IQ4_NL', 'IQ4_XS']);

/** What ggml's quantizer of `type` does with NaN and Inf. */
function nonFiniteFate(type: string): string {
  if (type.startsWith('IQ4')) return "drop them from the block's scale";
  if (type.startsWith('IQ3')) return 'stop on most blocks holding them';
  if (NO_NON_FINITE.has(type)) return 'write them as 0';
  // The other block types (Q8_0, Q4_0 … Q6_K, TQ, IQ1/IQ2): a NaN or Inf reaches the block's f16
  // scale (ggml's MAX keeps a NaN last seen, amax / 127 of an Inf is Inf), and llama-quantize
  // checks its output (ggml_validate_row_data: every block's d and dmin finite) and stops.
  return "carry them into a block's scale, and llama-quantize's check of its output stops on that";
}

/**
 * `bytes` (whole blocks of `from`) converted to `to`. `nonFiniteText`, asked only on the error path,
 * says how many NaN/Inf the whole tensor holds and where ("3 NaN or Inf values (first in row 2,
 * last in row 13)"), for the refusal of a block type; without it the refusal says "NaN or Inf".
 * `whole` reads the whole tensor again by rows (the error path only), so that a refusal of the
 * blocks written (zeroed, NaN or Inf, or rows ggml's quantizer stops on) counts them over all its
 * rows and names the first and the last; without it, over `bytes`.
 */
export async function convertTensorBytes(
  bytes: Uint8Array, from: GgmlType, to: GgmlType, backend?: MergeBackend, signal?: AbortSignal, nonFiniteText?: () => Promise<string | undefined>,
  whole?: TensorRows,
): Promise<Uint8Array> {
  const values = FLOATS.has(from.name) ? decodeToF32(bytes, from.name as FloatDType) : await decodeBlocks(from, bytes, backend, signal);
  const finite = values.every(Number.isFinite);
  // A block type holds no NaN or Inf (f16, bf16 and f32 keep them, as a copy does).
  if (!finite && !FLOATS.has(to.name)) {
    const held = (await nonFiniteText?.()) ?? 'NaN or Inf';
    throw new MergeError(
      'NON_FINITE',
      `it holds ${held}, which ${to.name} blocks cannot store (ggml's quantizer would ${nonFiniteFate(to.name)}); leave out --dtype to copy it as stored, or choose f16, bf16 or f32`,
    );
  }
  if (!FLOATS.has(to.name)) return encodeChecked(values, from, to, backend, signal, whole);
  const out = encodeFromF32(values, to.name as FloatDType);
  if (finite && decodeToF32(out, to.name as FloatDType).some((v) => !Number.isFinite(v))) {
    throw new MergeError('NON_FINITE', `converting ${from.name} to ${to.name} overflows ${to.name} (values finite before); choose --dtype ${to.name === 'F16' ? 'bf16 or f32' : 'f32 or bf16'}`);
  }
  return out;
}

/**
 * Finite values encoded as blocks of `to`: refused where blocks come out NaN or Inf (an f16 scale
 * overflowed), where values past about 1e18 overflow the quantizer's f32 sums first (Q3_K, Q6_K
 * and IQ4_XS write those blocks as zeros), or where ggml's IQ1/IQ2/IQ3 quantizer stops; counted
 * over the whole tensor (`whole`), with its first and last row.
 */
async function encodeChecked(values: Float32Array, from: GgmlType, to: GgmlType, backend?: MergeBackend, signal?: AbortSignal, whole?: TensorRows): Promise<Uint8Array> {
  const encoder: RowEncoder = {
    encode: (v) => encodeBlocks(to, v, backend, signal),
    nonFinite: (b) => nonFiniteBlockSpan(to, b),
    zeroed: (b, input) => zeroedBlockValues(to, b, input),
  };
  let out: Uint8Array | undefined;
  try {
    out = await encodeBlocks(to, values, backend, signal);
  } catch (e) {
    if (!isMergeError(e) || e.code !== 'NON_FINITE') throw e;
  }
  if (out && !nonFiniteBlockValues(to, out) && !zeroedBlockValues(to, out, values)) return out;
  const { tally, placed } = await tallyRows(values, from, encoder, signal, whole);
  // Without the whole tensor the piece's counts are given, and no rows.
  const count = (span: ValueSpan) => (placed ? valuesIn(span, tally.cols, tally.experts) : `${span.count} value${span.count === 1 ? '' : 's'}`);
  if (tally.stopped.count) throw new MergeError('NON_FINITE', placed ? stoppedRowsText(tally) : tally.stoppedBy ?? stoppedRowsText(tally));
  if (tally.nonFinite.count) {
    throw new MergeError(
      'NON_FINITE',
      `converting ${from.name} to ${to.name} makes ${count(tally.nonFinite)} NaN or Inf, finite before: a ${to.name} block's f16 scale overflows; choose --dtype f32 or bf16`,
    );
  }
  throw new MergeError(
    'NON_FINITE',
    `converting ${from.name} to ${to.name} writes ${count(tally.zeroed)} as zeros (ggml's quantizer overflows f32 on values this large); choose --dtype f32 or bf16`,
  );
}

/** The faults of the whole tensor's blocks (`whole`, read again and decoded), else of `values` alone (rows of one block). */
async function tallyRows(
  values: Float32Array, from: GgmlType, encoder: RowEncoder, signal?: AbortSignal, whole?: TensorRows,
): Promise<{ tally: EncodeTally; placed: boolean }> {
  if (whole) {
    const tally = new EncodeTally(whole.cols, whole.experts);
    for (let r0 = 0; r0 < whole.rows; r0 += whole.rowsPerRead) {
      throwIfAborted(signal);
      const n = Math.min(whole.rowsPerRead, whole.rows - r0);
      const stored = await whole.read(r0, n);
      const decoded = FLOATS.has(from.name) ? decodeToF32(stored, from.name as FloatDType) : await decodeBlocks(from, stored, undefined, signal);
      await tally.add(decoded, r0, encoder, signal);
    }
    if (tally.any) return { tally, placed: true };
  }
  const tally = new EncodeTally(values.length);
  await tally.add(values, 0, encoder, signal);
  return { tally, placed: false };
}
