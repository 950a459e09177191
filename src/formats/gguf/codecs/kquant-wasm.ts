/**
 * The k-quant encoders compiled to WebAssembly (wasm/kquant-encoder.ts, embedded by
 * scripts/gen-wasm.mjs): the same reference algorithm as the TypeScript codecs, in native f32
 * arithmetic, several times faster. Used when the engine can compile it synchronously (Node and
 * workers, where merges run; a page's main thread may refuse modules over 4 KB, and a Content
 * Security Policy may forbid WebAssembly); otherwise the TypeScript path runs. Values pass through
 * the module's memory in pieces.
 */
import { kquantEncoderWasmBase64 } from './kquant-encoder.generated.js';
import { instantiateEmbeddedWasm } from '../../../embedded-wasm.js';

interface Exports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  encodeScaleMin(src: number, dst: number, nBlocks: number, nmax: number): void;
  encodeQ6K(src: number, dst: number, nBlocks: number): void;
  encodeQ2K(src: number, dst: number, nBlocks: number): void;
  encodeQ3K(src: number, dst: number, nBlocks: number): void;
}

/** Blocks per call: 1 MiB of f32 input. */
const PIECE_BLOCKS = 1024;

let loaded: Exports | null | undefined;

function encoder(): Exports | null {
  if (loaded !== undefined) return loaded;
  loaded = instantiateEmbeddedWasm<Exports>(kquantEncoderWasmBase64);
  return loaded;
}

export type KQuantKind = 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K';

const BLOCK_BYTES: Record<KQuantKind, number> = { Q2_K: 84, Q3_K: 110, Q4_K: 144, Q5_K: 176, Q6_K: 210 };

/** Encodes whole 256-value blocks with the WebAssembly encoder; false when it is unavailable. */
export function encodeKQuantWasm(kind: KQuantKind, src: Float32Array, out: Uint8Array): boolean {
  const e = encoder();
  if (!e) return false;
  const nBlocks = src.length / 256;
  const blockBytes = BLOCK_BYTES[kind];
  const base = e.heapBase();
  const dst = base + PIECE_BLOCKS * 1024;
  const need = dst + PIECE_BLOCKS * blockBytes;
  if (e.memory.buffer.byteLength < need) e.memory.grow(Math.ceil((need - e.memory.buffer.byteLength) / 65536));
  for (let b0 = 0; b0 < nBlocks; b0 += PIECE_BLOCKS) {
    const n = Math.min(PIECE_BLOCKS, nBlocks - b0);
    new Float32Array(e.memory.buffer, base, n * 256).set(src.subarray(b0 * 256, (b0 + n) * 256));
    switch (kind) {
      case 'Q2_K': e.encodeQ2K(base, dst, n); break;
      case 'Q3_K': e.encodeQ3K(base, dst, n); break;
      case 'Q4_K': e.encodeScaleMin(base, dst, n, 15); break;
      case 'Q5_K': e.encodeScaleMin(base, dst, n, 31); break;
      case 'Q6_K': e.encodeQ6K(base, dst, n); break;
    }
    out.set(new Uint8Array(e.memory.buffer, dst, n * blockBytes), b0 * blockBytes);
  }
  return true;
}
