/**
 * The k-quant encoders compiled to WebAssembly (wasm/kquant-encoder.ts, embedded by
 * scripts/gen-wasm.mjs), with the importance-weighted quantizers of the k-quants and of Q4_0, Q5_0,
 * Q4_1 and Q5_1, IQ4_NL, IQ4_XS, IQ3_XXS and IQ3_S with or without weights, and IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ1_S and IQ1_M with weights: the same algorithms as the
 * TypeScript codecs (each function below returns false where the module is unavailable, and the
 * codec then runs its TypeScript twin), in native f32
 * arithmetic, several times faster. Used when the engine can compile it synchronously (Node and
 * workers, where merges run; a page's main thread may refuse modules over 4 KB, and a Content
 * Security Policy may forbid WebAssembly) and has WebAssembly SIMD (the IQ2 and IQ1 searches use
 * it; the merge kernel needs it too); otherwise the TypeScript path runs. Values (and, with an
 * importance matrix, their weights) pass through the module's memory in pieces.
 */
import { kquantEncoderWasmBase64 } from './kquant-encoder.generated.js';
import { instantiateEmbeddedWasm } from '../../../embedded-wasm.js';
import { f32 } from './c-float.js';
import { sumSquares } from './importance.js';
import type { IqSearchTables } from './iq-grids.js';

interface Exports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  encodeScaleMin(src: number, dst: number, nBlocks: number, nmax: number): void;
  encodeQ6K(src: number, dst: number, nBlocks: number): void;
  encodeQ2K(src: number, dst: number, nBlocks: number): void;
  encodeQ3K(src: number, dst: number, nBlocks: number): void;
  encodeScaleMinWeighted(src: number, qw: number, dst: number, nBlocks: number, nmax: number): void;
  encodeQ6KWeighted(src: number, qw: number, dst: number, nBlocks: number): void;
  encodeQ2KWeighted(src: number, qw: number, dst: number, nBlocks: number): void;
  encodeQ3KWeighted(src: number, qw: number, dst: number, nBlocks: number): void;
  encodeLegacyWeighted(src: number, qw: number, dst: number, n: number, sigma2: number, bits: number): void;
  encodeIq4Nl(src: number, qw: number, dst: number, nBlocks: number): void;
  encodeIq4Xs(src: number, qw: number, dst: number, nBlocks: number): void;
  encodeIq3(src: number, qw: number, dst: number, nBlocks: number, xxs: number, levels: number, map: number, neighbours: number): number;
  encodeIq2(src: number, qw: number, dst: number, nBlocks: number, kind: number, levels: number, map: number, neighbours: number): number;
  encodeIq1(src: number, qw: number, dst: number, nBlocks: number, m: number, levels: number, map: number, neighbours: number): number;
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

/**
 * The module's memory laid out for a piece: values at `src`, weights at `qw`, blocks at `dst`
 * (grown to fit once).
 */
function layout(e: Exports, blockBytes: number): PiecePlace {
  const src = e.heapBase();
  const qw = src + PIECE_BLOCKS * 1024;
  const dst = qw + PIECE_BLOCKS * 1024;
  const need = dst + PIECE_BLOCKS * blockBytes;
  if (e.memory.buffer.byteLength < need) e.memory.grow(Math.ceil((need - e.memory.buffer.byteLength) / 65536));
  return { src, qw, dst };
}

/** Encodes whole 256-value blocks with the WebAssembly encoder; false when it is unavailable. */
export function encodeKQuantWasm(kind: KQuantKind, src: Float32Array, out: Uint8Array): boolean {
  return inPieces(256, BLOCK_BYTES[kind], src, out, undefined, (e, at, n) => {
    const blocks = n / 256;
    switch (kind) {
      case 'Q2_K': e.encodeQ2K(at.src, at.dst, blocks); break;
      case 'Q3_K': e.encodeQ3K(at.src, at.dst, blocks); break;
      case 'Q4_K': e.encodeScaleMin(at.src, at.dst, blocks, 15); break;
      case 'Q5_K': e.encodeScaleMin(at.src, at.dst, blocks, 31); break;
      case 'Q6_K': e.encodeQ6K(at.src, at.dst, blocks); break;
    }
  });
}

/**
 * Encodes whole 256-value blocks with importance weights `qw` (one per value of `src`), as
 * quantize_row_q*_K_impl does (the codecs' encodeWeighted); false when the encoder is unavailable.
 */
export function encodeKQuantWeightedWasm(kind: KQuantKind, src: Float32Array, out: Uint8Array, qw: Float32Array): boolean {
  return inPieces(256, BLOCK_BYTES[kind], src, out, qw, (e, at, n) => {
    const blocks = n / 256;
    switch (kind) {
      case 'Q2_K': e.encodeQ2KWeighted(at.src, at.qw, at.dst, blocks); break;
      case 'Q3_K': e.encodeQ3KWeighted(at.src, at.qw, at.dst, blocks); break;
      case 'Q4_K': e.encodeScaleMinWeighted(at.src, at.qw, at.dst, blocks, 15); break;
      case 'Q5_K': e.encodeScaleMinWeighted(at.src, at.qw, at.dst, blocks, 31); break;
      case 'Q6_K': e.encodeQ6KWeighted(at.src, at.qw, at.dst, blocks); break;
    }
  });
}

/** Where a piece lies in the module's memory (layout()). */
interface PiecePlace {
  src: number;
  qw: number;
  dst: number;
}

/**
 * Every encoder's run: `src` (whole blocks of `size` values, `bytes` bytes each; whole 256-value
 * pieces) and its weights `qw`, where given, through the module's memory PIECE_BLOCKS · 256 values
 * at a time, `encode` called on each piece's `n` values (`prepare` first, once the module is
 * there), each piece's blocks copied to `out`; false where the encoder is unavailable or `encode`
 * returns non-zero (the TypeScript quantizer then runs the whole row).
 */
function inPieces(
  size: number, bytes: number, src: Float32Array, out: Uint8Array, qw: Float32Array | undefined,
  encode: (e: Exports, at: PiecePlace, n: number) => number | void, prepare?: (e: Exports) => void,
): boolean {
  const e = encoder();
  if (!e) return false;
  prepare?.(e);
  const at = layout(e, (256 / size) * bytes);
  const piece = PIECE_BLOCKS * 256;
  for (let v0 = 0; v0 < src.length; v0 += piece) {
    const n = Math.min(piece, src.length - v0);
    new Float32Array(e.memory.buffer, at.src, n).set(src.subarray(v0, v0 + n));
    if (qw) new Float32Array(e.memory.buffer, at.qw, n).set(qw.subarray(v0, v0 + n));
    if ((encode(e, at, n) ?? 0) !== 0) return false;
    out.set(new Uint8Array(e.memory.buffer, at.dst, (n / size) * bytes), (v0 / size) * bytes);
  }
  return true;
}

export type LegacyKind = 'Q4_0' | 'Q5_0' | 'Q4_1' | 'Q5_1';

const LEGACY: Record<LegacyKind, { bits: number; bytes: number }> = {
  Q4_0: { bits: 4, bytes: 18 }, Q5_0: { bits: 5, bytes: 22 }, Q4_1: { bits: 14, bytes: 20 }, Q5_1: { bits: 15, bytes: 24 },
};

/**
 * One row of a legacy 32-value type (whole blocks) quantized with importance weights `qw`, as
 * quantize_row_q{4,5}_{0,1}_impl does (σ² = Σx²/n over the row); false when the encoder is unavailable.
 */
export function encodeLegacyWeightedWasm(kind: LegacyKind, src: Float32Array, out: Uint8Array, qw: Float32Array): boolean {
  const { bits, bytes } = LEGACY[kind];
  const sigma2 = f32(sumSquares(src, 0, src.length) / src.length);
  return inPieces(32, bytes, src, out, qw, (e, at, n) => e.encodeLegacyWeighted(at.src, at.qw, at.dst, n, sigma2, bits));
}

/**
 * IQ4_NL (32-value blocks) or IQ4_XS (256) as llama-quantize writes them (quantize_iq4_nl /
 * quantize_iq4_xs), with importance weights `qw` where given; false when the encoder is unavailable.
 */
export function encodeIq4Wasm(kind: 'IQ4_NL' | 'IQ4_XS', src: Float32Array, out: Uint8Array, qw?: Float32Array): boolean {
  const size = kind === 'IQ4_NL' ? 32 : 256;
  return inPieces(size, kind === 'IQ4_NL' ? 18 : 136, src, out, qw, (e, at, n) => {
    if (kind === 'IQ4_NL') e.encodeIq4Nl(at.src, qw ? at.qw : 0, at.dst, n / size);
    else e.encodeIq4Xs(at.src, qw ? at.qw : 0, at.dst, n / size);
  });
}

/** Where each IQ grid's tables lie in the module's memory (placed once, past every piece's room). */
const placed = new Map<IqSearchTables, { levels: number; map: number; neighbours: number }>();
/** The end of the room layout() gives a piece (values, weights, blocks of up to 256 bytes), or of the tables placed. */
let tablesTop = 0;

/** An IQ grid's search tables (IQ1, IQ2, IQ3) in the module's memory, placed on first use. */
function placeTables(e: Exports, t: IqSearchTables): { levels: number; map: number; neighbours: number } {
  let at = placed.get(t);
  if (at) return at;
  if (tablesTop === 0) tablesTop = e.heapBase() + 2 * PIECE_BLOCKS * 1024 + PIECE_BLOCKS * 256;
  const levels = tablesTop;
  const map = (levels + t.levels.length + 15) & ~15;
  const neighbours = map + 4 * t.map.length;
  const end = (neighbours + 2 * t.neighbours.length + 15) & ~15;
  if (e.memory.buffer.byteLength < end) e.memory.grow(Math.ceil((end - e.memory.buffer.byteLength) / 65536));
  new Uint8Array(e.memory.buffer, levels, t.levels.length).set(t.levels);
  new Int32Array(e.memory.buffer, map, t.map.length).set(t.map);
  new Uint16Array(e.memory.buffer, neighbours, t.neighbours.length).set(t.neighbours);
  tablesTop = end;
  at = { levels, map, neighbours };
  placed.set(t, at);
  return at;
}

/**
 * IQ3_XXS (98-byte blocks) or IQ3_S (110) as llama-quantize writes them (quantize_iq3_xxs /
 * quantize_iq3_s), searching `tables` (iq3Tables of the type), with importance weights `qw` (one
 * per value) where given: true when written, false when the encoder is unavailable or ggml's search
 * aborts on a block (the TypeScript codec then runs, and reports that block as it does).
 */
export function encodeIq3Wasm(kind: 'IQ3_XXS' | 'IQ3_S', tables: IqSearchTables, src: Float32Array, out: Uint8Array, qw?: Float32Array): boolean {
  return inGridPieces(kind === 'IQ3_XXS' ? 98 : 110, tables, src, out, qw, (e, at, n, t) => e.encodeIq3(at.src, qw ? at.qw : 0, at.dst, n, kind === 'IQ3_XXS' ? 1 : 0, t.levels, t.map, t.neighbours));
}

/**
 * The IQ grid searches' common run: `tables` placed, then {@link inPieces} over whole 256-value
 * blocks of `bytes`, `encode` given the piece's number of blocks and where the tables lie.
 */
function inGridPieces(
  bytes: number, tables: IqSearchTables, src: Float32Array, out: Uint8Array, qw: Float32Array | undefined,
  encode: (e: Exports, at: PiecePlace, n: number, t: { levels: number; map: number; neighbours: number }) => number,
): boolean {
  let t: { levels: number; map: number; neighbours: number } | undefined;
  return inPieces(256, bytes, src, out, qw, (e, at, n) => encode(e, at, n / 256, t!), (e) => { t = placeTables(e, tables); });
}

/** Bytes per block of the IQ1 and IQ2 types, and the kind number the module's encodeIq1 / encodeIq2 takes. */
const IQ_LOW: Record<IqLowKind, { bytes: number; kind: number; iq1: boolean }> = {
  IQ2_XXS: { bytes: 66, kind: 0, iq1: false },
  IQ2_XS: { bytes: 74, kind: 1, iq1: false },
  IQ2_S: { bytes: 82, kind: 2, iq1: false },
  IQ1_S: { bytes: 50, kind: 0, iq1: true },
  IQ1_M: { bytes: 56, kind: 1, iq1: true },
};

export type IqLowKind = 'IQ2_XXS' | 'IQ2_XS' | 'IQ2_S' | 'IQ1_S' | 'IQ1_M';

/**
 * IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S or IQ1_M as `llama-quantize --imatrix` writes them
 * (quantize_iq2_* / quantize_iq1_* with importance weights `qw`, one per value; IQ1_M and IQ2_S also without,
 * as quantize_iq1_m / quantize_iq2_s with quant_weights NULL write token_embd.weight and output.weight), searching `tables`
 * (the type's iq2*Tables / iq1Tables): true when written, false when the encoder is unavailable or
 * a piece holds a value or weight that is not finite, a block ggml's search aborts on or a NaN
 * scale (the TypeScript quantizer then runs the whole row, and writes or refuses it as it does).
 */
export function encodeIqLowWasm(kind: IqLowKind, tables: IqSearchTables, src: Float32Array, out: Uint8Array, qw: Float32Array | undefined): boolean {
  const { bytes, kind: k, iq1 } = IQ_LOW[kind];
  // Only IQ1_M and IQ2_S run without weights (quantize_iq1_m / quantize_iq2_s with quant_weights NULL).
  if (!qw && kind !== 'IQ1_M' && kind !== 'IQ2_S') return false;
  return inGridPieces(bytes, tables, src, out, qw, (e, at, n, t) =>
    iq1 ? e.encodeIq1(at.src, qw ? at.qw : 0, at.dst, n, k, t.levels, t.map, t.neighbours) : e.encodeIq2(at.src, qw ? at.qw : 0, at.dst, n, k, t.levels, t.map, t.neighbours));
}
