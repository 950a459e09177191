/**
 * ComfyUI's re-quantization of merged int8_tensorwise and nvfp4 layers (comfy-int8.ts,
 * comfy-nvfp4.ts), and DeepSeek-V4's of its FP4 experts (deepseek-fp4-codes.ts), by rows, on the calling thread or a backend's worker threads (the CPU pool's
 * workers run {@link comfyRowCodes}, cpu-worker-protocol.ts): each row's codes depend on its values
 * and its scales alone (the tensor's, computed before; a per-row int8 scale or an nvfp4 or FP4 block
 * scale, computed from the row itself), so the rows may be cut anywhere and give the same bytes. Browser-safe.
 */
import { int8RowCodes, type Int8Rows } from './comfy-int8.js';
import { nvfp4RowCodes, type Nvfp4Rows } from './comfy-nvfp4.js';
import { deepseekFp4RowCodes, type DeepseekFp4Rows } from './deepseek-fp4-codes.js';

/** A slab of W' to encode, with the layer's format. */
export type ComfyRows = ({ format: 'int8' } & Int8Rows) | ({ format: 'nvfp4' } & Nvfp4Rows) | ({ format: 'fp4-e8m0' } & DeepseekFp4Rows);

/** Bytes of codes a row of `rows` takes (int8: one a value; nvfp4 and FP4: two values a byte). */
export function comfyRowBytes(rows: ComfyRows): number {
  return rows.format === 'int8' ? rows.cols : rows.cols / 2;
}

/** Codes of the slab's rows [p0, p0 + n) into `out`, their per-row or block scales into the slab's scale arrays. */
export function comfyRowCodes(rows: ComfyRows, p0: number, n: number, out: Uint8Array): void {
  if (rows.format === 'int8') int8RowCodes(rows, p0, n, out);
  else if (rows.format === 'nvfp4') nvfp4RowCodes(rows, p0, n, out);
  else deepseekFp4RowCodes(rows, p0, n, out);
}

/** Where the rows are encoded: a backend's worker threads (MergeBackend.comfyCodes), or undefined for the calling thread. */
export interface ComfyThreads {
  /** {@link comfyRowCodes} of all the rows, or undefined (the caller encodes them). */
  comfyCodes?(rows: ComfyRows, signal?: AbortSignal): Promise<Uint8Array | undefined>;
}

/** All the rows' codes, on `threads` where they take them; the same bytes and scales either way. */
export async function comfyCodes(rows: ComfyRows, threads?: ComfyThreads, signal?: AbortSignal): Promise<Uint8Array> {
  const pooled = await threads?.comfyCodes?.(rows, signal);
  if (pooled) return pooled;
  const out = new Uint8Array(rows.rowCount * comfyRowBytes(rows));
  comfyRowCodes(rows, 0, rows.rowCount, out);
  return out;
}
