/**
 * The importance-weighted quantizers (`--imatrix`) of the k-quants (quantize_row_q{2,3,4,5,6}_K_impl),
 * of the legacy 32-value types (quantize_row_q{4,5}_{0,1}_impl), of IQ4_NL and IQ4_XS
 * (quantize_iq4_nl / quantize_iq4_xs) and of IQ3_XXS and IQ3_S (quantize_iq3_xxs / quantize_iq3_s;
 * these four also run without weights: tested too) run in
 * WebAssembly where it compiles and in TypeScript otherwise: the two must write the same bytes.
 * Rows of 1 to 9 super-blocks (legacy types: 1 to 72 blocks of 32), every pairing of a hostile
 * kind of values with a hostile kind of weights, and rows past the WebAssembly encoder's piece, with
 * hostile values and weights: all-zero and constant blocks, values below GROUP_MAX_EPS, huge
 * values, lone outliers, and weights of 0, subnormal, FLT_MAX, negative and a mix of magnitudes.
 * The TypeScript path itself is held to ggml's transcription in gguf-imatrix.test.ts.
 */
import { describe, expect, it, vi } from 'vitest';
import { encodeIq3Wasm, encodeIq4Wasm, encodeIqLowWasm, encodeKQuantWeightedWasm, encodeLegacyWeightedWasm, type IqLowKind, type KQuantKind, type LegacyKind } from '../src/formats/gguf/codecs/kquant-wasm.js';
import { encodeIq1MRow, encodeIq1SRow, iq1Tables } from '../src/formats/gguf/codecs/iq1-search.js';
import { encodeIq2SRow, encodeIq2XsRow, encodeIq2XxsRow, iq2STables, iq2XsTables, iq2XxsTables } from '../src/formats/gguf/codecs/iq2-search.js';
import type { IqSearchTables } from '../src/formats/gguf/codecs/iq-grids.js';
import { encodeS as encodeIq3S, encodeXxs as encodeIq3Xxs } from '../src/formats/gguf/codecs/iq3.js';
import { iq3Tables } from '../src/formats/gguf/codecs/iq3-search.js';
import { encodeNl, encodeXs } from '../src/formats/gguf/codecs/iq4.js';
import { encodeAffineWeighted } from '../src/formats/gguf/codecs/affine-weighted.js';
import { encodeQ4_0Weighted } from '../src/formats/gguf/codecs/q4_0.js';
import { encodeQ5_0Weighted } from '../src/formats/gguf/codecs/q5_0.js';
import { encodeQ2KBlocks } from '../src/formats/gguf/codecs/q2_k.js';
import { encodeQ3KBlocks } from '../src/formats/gguf/codecs/q3_k.js';
import { encodeScaleMinBlocks } from '../src/formats/gguf/codecs/q4_k.js';
import { encodeQ6KBlocks } from '../src/formats/gguf/codecs/q6_k.js';
import { blockCodec } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { seededRandom } from './helpers/fixtures.js';

type Kind = KQuantKind | LegacyKind | 'IQ4_NL' | 'IQ4_XS';
const TYPESCRIPT: Record<Kind, (src: Float32Array, out: Uint8Array, qw: Float32Array) => void> = {
  Q4_0: (s, o, w) => encodeQ4_0Weighted(s, o, w),
  Q5_0: (s, o, w) => encodeQ5_0Weighted(s, o, w),
  Q4_1: (s, o, w) => encodeAffineWeighted(s, o, w, 15),
  Q5_1: (s, o, w) => encodeAffineWeighted(s, o, w, 31),
  Q2_K: (s, o, w) => encodeQ2KBlocks(s, o, w),
  Q3_K: (s, o, w) => encodeQ3KBlocks(s, o, w),
  Q4_K: (s, o, w) => encodeScaleMinBlocks(s, o, 15, w),
  Q5_K: (s, o, w) => encodeScaleMinBlocks(s, o, 31, w),
  Q6_K: (s, o, w) => encodeQ6KBlocks(s, o, w),
  IQ4_NL: (s, o, w) => encodeNl(s, o, w),
  IQ4_XS: (s, o, w) => encodeXs(s, o, w),
};
/** Bytes per block (of 256 values for the k-quants, 32 for the others). */
const BYTES: Record<Kind, number> = { Q4_0: 18, Q5_0: 22, Q4_1: 20, Q5_1: 24, Q2_K: 84, Q3_K: 110, Q4_K: 144, Q5_K: 176, Q6_K: 210, IQ4_NL: 18, IQ4_XS: 136 };
const size = (kind: Kind): number => (kind.endsWith('_K') || kind === 'IQ4_XS' ? 256 : 32);
const wasmWeighted = (kind: Kind, s: Float32Array, o: Uint8Array, w: Float32Array): boolean =>
  kind === 'IQ4_NL' || kind === 'IQ4_XS' ? encodeIq4Wasm(kind, s, o, w)
    : kind.endsWith('_K') ? encodeKQuantWeightedWasm(kind as KQuantKind, s, o, w) : encodeLegacyWeightedWasm(kind as LegacyKind, s, o, w);
/** IQ2 and IQ1: bytes per block, the grid tables searched, the TypeScript quantizer of one row. */
const LOW: Record<IqLowKind, { bytes: number; tables: () => IqSearchTables; ts: (s: Float32Array, o: Uint8Array, w: Float32Array) => void }> = {
  IQ2_XXS: { bytes: 66, tables: iq2XxsTables, ts: encodeIq2XxsRow },
  IQ2_XS: { bytes: 74, tables: iq2XsTables, ts: encodeIq2XsRow },
  IQ2_S: { bytes: 82, tables: iq2STables, ts: encodeIq2SRow },
  IQ1_S: { bytes: 50, tables: iq1Tables, ts: encodeIq1SRow },
  IQ1_M: { bytes: 56, tables: iq1Tables, ts: encodeIq1MRow },
};
/** Whether an IQ1_M block's f16 d (the top nibbles of its four scale words) is NaN. */
const nanD = (block: Uint8Array): boolean => {
  const d = (block[49] >> 4) | (block[51] & 0xf0) | ((block[53] & 0xf0) << 4) | ((block[55] & 0xf0) << 8);
  return (d & 0x7c00) === 0x7c00 && (d & 0x3ff) !== 0;
};
const FLT_MAX = 3.4028234663852886e38;
const VALUE_KINDS = 10;
const WEIGHT_KINDS = 8;

/** One 256-value block of a hostile kind, from `rand`. */
function valuesBlock(kind: number, rand: () => number): Float32Array {
  const g = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const x = new Float32Array(256);
  switch (kind) {
    case 0: break; // all zero
    case 1: x.fill(0.0375); break; // constant
    case 2: for (let i = 0; i < 256; i++) x[i] = 1e-17 * g(); break; // below GROUP_MAX_EPS
    case 3: for (let i = 0; i < 256; i++) x[i] = 1e30 * g(); break; // huge
    case 4: for (let i = 0; i < 256; i++) x[i] = i % 53 === 7 ? 40 * g() : 0.01 * g(); break; // outliers
    case 5: for (let i = 0; i < 256; i++) x[i] = Math.abs(0.02 * g()); break; // all non-negative
    case 6: for (let i = 0; i < 256; i++) x[i] = -Math.abs(0.02 * g()) - 1; break; // all negative, offset
    case 7: for (let i = 0; i < 256; i++) x[i] = i % 32 < 3 ? 0.05 * g() : 0; break; // mostly zero
    case 8: for (let i = 0; i < 256; i++) x[i] = 2 * g(); break; // σ² above 1: sqrtf(σ² + x²)·FLT_MAX overflows
    default: for (let i = 0; i < 256; i++) x[i] = 0.02 * g(); // ordinary values
  }
  return x;
}

/** 256 importance weights of a hostile kind. */
function weightsBlock(kind: number, rand: () => number): Float32Array {
  const w = new Float32Array(256);
  for (let i = 0; i < 256; i++) {
    switch (kind) {
      case 0: w[i] = 0; break;
      case 1: w[i] = 1e-45 * (1 + Math.floor(rand() * 4)); break; // subnormal
      case 2: w[i] = FLT_MAX; break;
      case 3: w[i] = rand() < 0.5 ? -rand() : rand(); break; // negative (a hand-made .dat)
      case 4: w[i] = rand() < 0.1 ? 0 : Math.exp(30 * (rand() - 0.5)); break; // orders of magnitude
      case 5: w[i] = rand() < 0.02 ? 1e30 : 1e-3; break; // a few dominate
      case 6: w[i] = (i >> 4) % 3 === 0 ? FLT_MAX : (i >> 4) % 3 === 1 ? -FLT_MAX : 0.5; break; // sub-blocks whose sums overflow (to NaN), beside finite ones
      default: w[i] = Math.exp(2 * (rand() - 0.5)); // like llama-imatrix's mean squares
    }
  }
  return w;
}

function both(kind: Kind, x: Float32Array, qw: Float32Array): { ts: Uint8Array; wasm: Uint8Array } {
  const n = x.length / size(kind);
  const ts = new Uint8Array(n * BYTES[kind]);
  const wasm = new Uint8Array(n * BYTES[kind]);
  TYPESCRIPT[kind](x, ts, qw);
  expect(wasmWeighted(kind, x, wasm, qw)).toBe(true);
  return { ts, wasm };
}

/** The first block where the two differ, with its inputs' kinds, or null. */
function firstDifference(kind: Kind, ts: Uint8Array, wasm: Uint8Array, kinds: string[]): string | null {
  const b = BYTES[kind];
  for (let i = 0; i < ts.length / b; i++) {
    const a = ts.subarray(i * b, (i + 1) * b), c = wasm.subarray(i * b, (i + 1) * b);
    if (!a.every((v, j) => v === c[j])) return `block ${i} (${kinds[Math.floor((i * size(kind)) / 256)]}): TypeScript ${[...a]} WebAssembly ${[...c]}`;
  }
  return null;
}

describe('importance-weighted quantizers: WebAssembly and TypeScript write the same bytes', () => {
  it.for(Object.keys(TYPESCRIPT) as Kind[])('%s over every pairing of hostile values and weights, and rows of 1 to 9 random ones', (kind) => {
    const rand = seededRandom(20261207 + BYTES[kind]);
    // One row holding every pairing of a kind of values with a kind of weights, once each.
    const all = VALUE_KINDS * WEIGHT_KINDS;
    const x0 = new Float32Array(256 * all);
    const qw0 = new Float32Array(256 * all);
    const kinds0: string[] = [];
    for (let b = 0; b < all; b++) {
      const vk = b % VALUE_KINDS, wk = Math.floor(b / VALUE_KINDS);
      x0.set(valuesBlock(vk, rand), 256 * b);
      qw0.set(weightsBlock(wk, rand), 256 * b);
      kinds0.push(`values ${vk}, weights ${wk}`);
    }
    const paired = both(kind, x0, qw0);
    expect(firstDifference(kind, paired.ts, paired.wasm, kinds0)).toBeNull();
    let blocks = 0;
    for (let row = 0; row < 24; row++) {
      const n = 1 + Math.floor(rand() * 9);
      let x = new Float32Array(256 * n);
      let qw = new Float32Array(256 * n);
      const kinds: string[] = [];
      for (let b = 0; b < n; b++) {
        const vk = Math.floor(rand() * VALUE_KINDS), wk = Math.floor(rand() * WEIGHT_KINDS);
        x.set(valuesBlock(vk, rand), 256 * b);
        qw.set(weightsBlock(wk, rand), 256 * b);
        kinds.push(`values ${vk}, weights ${wk}`);
      }
      if (size(kind) === 32) {
        // Legacy rows end anywhere on a 32-value block.
        const m = 1 + Math.floor(rand() * 8 * n);
        x = x.subarray(0, 32 * m);
        qw = qw.subarray(0, 32 * m);
      }
      const { ts, wasm } = both(kind, x, qw);
      expect(firstDifference(kind, ts, wasm, kinds)).toBeNull();
      blocks += x.length / size(kind);
    }
    expect(blocks).toBeGreaterThan(24);
  });

  it.for(['IQ4_NL', 'IQ4_XS'] as const)('%s without weights over every kind of hostile values', (kind) => {
    const rand = seededRandom(99 + BYTES[kind]);
    const x = new Float32Array(256 * VALUE_KINDS * 3);
    for (let b = 0; b < VALUE_KINDS * 3; b++) x.set(valuesBlock(b % VALUE_KINDS, rand), 256 * b);
    const ts = new Uint8Array((x.length / size(kind)) * BYTES[kind]);
    const wasm = new Uint8Array(ts.length);
    (kind === 'IQ4_NL' ? encodeNl : encodeXs)(x, ts);
    expect(encodeIq4Wasm(kind, x, wasm)).toBe(true);
    expect(firstDifference(kind, ts, wasm, Array.from({ length: VALUE_KINDS * 3 }, (_, b) => `values ${b % VALUE_KINDS}`))).toBeNull();
  });

  it.for(['Q6_K', 'Q4_1', 'IQ4_XS'] as Kind[])('%s over a row longer than the WebAssembly encoder\'s piece (1025 × 256 values), and through the codec', (kind) => {
    const rand = seededRandom(7);
    const n = 1025;
    const x = new Float32Array(256 * n);
    const qw = new Float32Array(256 * n);
    for (let b = 0; b < n; b++) {
      x.set(valuesBlock(b % VALUE_KINDS, rand), 256 * b);
      qw.set(weightsBlock(b % WEIGHT_KINDS, rand), 256 * b);
    }
    const { ts, wasm } = both(kind, x, qw);
    expect(firstDifference(kind, ts, wasm, [])).toBeNull();
    const codec = blockCodec(ggmlTypeByName(kind)!)!;
    const viaCodec = new Uint8Array(ts.length);
    codec.encodeWeighted!(x, viaCodec, qw);
    expect(viaCodec).toEqual(ts);
    // The weights matter here: unweighted bytes differ.
    const plain = new Uint8Array(ts.length);
    codec.encode(x, plain);
    expect(plain).not.toEqual(ts);
  });

  // IQ3: ggml's grid search aborts on some hostile blocks (values past about 10¹², NaN sums); the
  // TypeScript codec refuses those, and the WebAssembly encoder gives way to it (returns false).
  it.for(['IQ3_XXS', 'IQ3_S'] as const)('%s, with and without weights, block by block over every pairing of hostile values and weights, then a row past the piece', (kind) => {
    const rand = seededRandom(31 + kind.length);
    const bytes = kind === 'IQ3_XXS' ? 98 : 110;
    const ts = kind === 'IQ3_XXS' ? encodeIq3Xxs : encodeIq3S;
    const tables = iq3Tables(kind);
    let written = 0;
    let aborted = 0;
    for (let b = 0; b < VALUE_KINDS * WEIGHT_KINDS; b++) {
      const x = valuesBlock(b % VALUE_KINDS, rand);
      const qw = weightsBlock(Math.floor(b / VALUE_KINDS), rand);
      for (const w of [qw, undefined]) {
        const want = new Uint8Array(bytes);
        const got = new Uint8Array(bytes);
        let refused: unknown;
        try {
          ts(x, want, w);
        } catch (e) {
          refused = e;
        }
        const ok = encodeIq3Wasm(kind, tables, x, got, w);
        const what = `values ${b % VALUE_KINDS}, weights ${w ? Math.floor(b / VALUE_KINDS) : 'none'}`;
        if (refused) {
          expect(ok, what).toBe(false);
          aborted++;
        } else {
          expect(ok, what).toBe(true);
          expect([...got], what).toEqual([...want]);
          written++;
        }
      }
    }
    expect(written).toBeGreaterThan(100);
    expect(aborted).toBeGreaterThan(0);
    // A row past the encoder's piece of 1024 blocks, of finite kinds the search takes.
    const n = 1025;
    const x = new Float32Array(256 * n);
    const qw = new Float32Array(256 * n);
    for (let b = 0; b < n; b++) {
      x.set(valuesBlock([0, 1, 2, 4, 5, 6, 7, 9][b % 8], rand), 256 * b);
      qw.set(weightsBlock([1, 4, 5, 7][b % 4], rand), 256 * b);
    }
    const want = new Uint8Array(n * bytes);
    ts(x, want, qw);
    const got = new Uint8Array(n * bytes);
    expect(encodeIq3Wasm(kind, tables, x, got, qw)).toBe(true);
    expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
    const viaCodec = new Uint8Array(n * bytes);
    blockCodec(ggmlTypeByName(kind)!)!.encodeWeighted!(x, viaCodec, qw);
    expect(Buffer.from(viaCodec).equals(Buffer.from(want))).toBe(true);
  });

  // IQ2 and IQ1: the WebAssembly encoder writes a row or gives it to the TypeScript quantizer
  // (returns false), which then writes or refuses it: where ggml's search aborts, and on a value or
  // weight that is not finite or an IQ1_M d that comes out NaN, whose bits the two need not agree on.
  it.for(Object.keys(LOW) as IqLowKind[])('%s block by block over every pairing of hostile values and weights, and rows of random ones', (kind) => {
    const { bytes, tables, ts } = LOW[kind];
    const rand = seededRandom(53 + bytes);
    let written = 0;
    const aborted: string[] = [];
    const gaveWay: string[] = [];
    for (let b = 0; b < VALUE_KINDS * WEIGHT_KINDS; b++) {
      const x = valuesBlock(b % VALUE_KINDS, rand);
      const qw = weightsBlock(Math.floor(b / VALUE_KINDS), rand);
      const what = `values ${b % VALUE_KINDS}, weights ${Math.floor(b / VALUE_KINDS)}`;
      const want = new Uint8Array(bytes);
      let refused: unknown;
      try {
        ts(x, want, qw);
      } catch (e) {
        refused = e;
      }
      const got = new Uint8Array(bytes);
      const ok = encodeIqLowWasm(kind, tables(), x, got, qw);
      if (refused) {
        expect(ok, what).toBe(false);
        aborted.push(what);
      } else if (ok) {
        expect([...got], what).toEqual([...want]);
        written++;
      } else gaveWay.push(`${what}${kind === 'IQ1_M' && nanD(want) ? ' (d NaN)' : ''}`);
    }
    expect(written).toBeGreaterThan(40);
    expect(aborted.length + written + gaveWay.length).toBe(VALUE_KINDS * WEIGHT_KINDS);
    // Finite values and weights give way only where ggml aborts, or where IQ1_M's d comes out NaN
    // (weights of FLT_MAX: its sums overflow).
    expect(gaveWay.filter((w) => !w.endsWith('(d NaN)'))).toEqual([]);
    if (kind === 'IQ1_M') expect(gaveWay.length).toBeGreaterThan(0);
    for (let row = 0; row < 12; row++) {
      const n = 1 + Math.floor(rand() * 6);
      const x = new Float32Array(256 * n);
      const qw = new Float32Array(256 * n);
      for (let b = 0; b < n; b++) {
        x.set(valuesBlock([1, 4, 5, 6, 7, 9][Math.floor(rand() * 6)], rand), 256 * b);
        qw.set(weightsBlock([1, 4, 5, 7][Math.floor(rand() * 4)], rand), 256 * b);
      }
      const want = new Uint8Array(n * bytes);
      ts(x, want, qw);
      const got = new Uint8Array(n * bytes);
      expect(encodeIqLowWasm(kind, tables(), x, got, qw)).toBe(true);
      expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
    }
  });

  it('IQ1_M without weights (quantize_iq1_m with quant_weights NULL) block by block over every kind of hostile values, and a row of them', () => {
    const rand = seededRandom(56);
    let written = 0;
    const x = new Float32Array(256 * VALUE_KINDS * 3);
    for (let b = 0; b < VALUE_KINDS * 3; b++) {
      const block = valuesBlock(b % VALUE_KINDS, rand);
      x.set(block, 256 * b);
      const want = new Uint8Array(56);
      let refused = false;
      try {
        encodeIq1MRow(block, want, undefined);
      } catch {
        refused = true;
      }
      const got = new Uint8Array(56);
      const ok = encodeIqLowWasm('IQ1_M', iq1Tables(), block, got, undefined);
      if (refused || ok) expect(ok, `values ${b % VALUE_KINDS}`).toBe(!refused);
      else expect(nanD(want), `values ${b % VALUE_KINDS}: gave way with d not NaN`).toBe(true);
      if (ok) {
        expect([...got], `values ${b % VALUE_KINDS}`).toEqual([...want]);
        written++;
      }
    }
    expect(written).toBeGreaterThan(20);
    const finiteRows = x.filter((_, i) => [1, 4, 5, 6, 7, 9].includes(Math.floor(i / 256) % VALUE_KINDS));
    const want = new Uint8Array((finiteRows.length / 256) * 56);
    encodeIq1MRow(finiteRows, want, undefined);
    const got = new Uint8Array(want.length);
    expect(encodeIqLowWasm('IQ1_M', iq1Tables(), finiteRows, got, undefined)).toBe(true);
    expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
    // IQ1_S, IQ2_XXS and IQ2_XS have no unweighted form (ggml asserts): the encoder declines.
    expect(encodeIqLowWasm('IQ1_S', iq1Tables(), finiteRows, new Uint8Array(want.length), undefined)).toBe(false);
    expect(encodeIqLowWasm('IQ2_XXS', iq2XxsTables(), finiteRows, new Uint8Array(finiteRows.length / 256 * 66), undefined)).toBe(false);
    expect(encodeIqLowWasm('IQ2_XS', iq2XsTables(), finiteRows, new Uint8Array(finiteRows.length / 256 * 74), undefined)).toBe(false);
  });

  it('IQ2_S without weights (quantize_iq2_s with quant_weights NULL) block by block over every kind of hostile values, and a row of them past the piece', () => {
    const rand = seededRandom(82);
    let written = 0;
    for (let b = 0; b < VALUE_KINDS * 3; b++) {
      const block = valuesBlock(b % VALUE_KINDS, rand);
      const want = new Uint8Array(82);
      let refused = false;
      try {
        encodeIq2SRow(block, want, undefined);
      } catch {
        refused = true;
      }
      const got = new Uint8Array(82);
      const ok = encodeIqLowWasm('IQ2_S', iq2STables(), block, got, undefined);
      // The encoder writes what TypeScript writes, or gives way where TypeScript refuses.
      if (ok) {
        expect(refused, `values ${b % VALUE_KINDS}: written where TypeScript refuses`).toBe(false);
        expect([...got], `values ${b % VALUE_KINDS}`).toEqual([...want]);
        written++;
      } else expect(refused, `values ${b % VALUE_KINDS}: gave way where TypeScript writes`).toBe(true);
    }
    expect(written).toBeGreaterThan(20);
    const n = 1025;
    const x = new Float32Array(256 * n);
    for (let b = 0; b < n; b++) x.set(valuesBlock([1, 4, 5, 6, 7, 9][b % 6], rand), 256 * b);
    const want = new Uint8Array(82 * n);
    encodeIq2SRow(x, want, undefined);
    const got = new Uint8Array(want.length);
    expect(encodeIqLowWasm('IQ2_S', iq2STables(), x, got, undefined)).toBe(true);
    expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
    // The unweighted weights are not weights of 1.
    const ones = new Uint8Array(want.length);
    encodeIq2SRow(x, ones, new Float32Array(x.length).fill(1));
    expect(Buffer.from(ones).equals(Buffer.from(want))).toBe(false);
  });

  it.for(['IQ2_S', 'IQ1_S'] as IqLowKind[])('%s over a row past the encoder\'s piece of 1024 blocks, and through the codec', (kind) => {
    const { bytes, tables, ts } = LOW[kind];
    const rand = seededRandom(1025);
    const n = 1025;
    const x = new Float32Array(256 * n);
    const qw = new Float32Array(256 * n);
    for (let b = 0; b < n; b++) {
      x.set(valuesBlock([0, 1, 4, 5, 6, 7, 9][b % 7], rand), 256 * b);
      qw.set(weightsBlock([1, 4, 7][b % 3], rand), 256 * b);
    }
    const want = new Uint8Array(n * bytes);
    ts(x, want, qw);
    const got = new Uint8Array(n * bytes);
    expect(encodeIqLowWasm(kind, tables(), x, got, qw)).toBe(true);
    expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
    const viaCodec = new Uint8Array(n * bytes);
    blockCodec(ggmlTypeByName(kind)!)!.encodeWeighted!(x, viaCodec, qw);
    expect(Buffer.from(viaCodec).equals(Buffer.from(want))).toBe(true);
  });

  it.for(Object.keys(LOW) as IqLowKind[])('%s through the codec: a NaN value or weight in a row gives the row to TypeScript, which writes or refuses it', (kind) => {
    const { bytes, tables, ts } = LOW[kind];
    const rand = seededRandom(77);
    const x = new Float32Array(256 * 3);
    const qw = new Float32Array(256 * 3);
    for (let b = 0; b < 3; b++) {
      x.set(valuesBlock(9, rand), 256 * b);
      qw.set(weightsBlock(7, rand), 256 * b);
    }
    const outcome = (f: (o: Uint8Array) => void): string => {
      const o = new Uint8Array(3 * bytes);
      try {
        f(o);
        return Buffer.from(o).toString('hex');
      } catch (e) {
        return `refused: ${(e as Error).message}`;
      }
    };
    const codec = blockCodec(ggmlTypeByName(kind)!)!;
    for (const [where, at] of [['value', 600], ['weight', 700]] as const) {
      const xs = x.slice();
      const ws = qw.slice();
      (where === 'value' ? xs : ws)[at] = NaN;
      expect(encodeIqLowWasm(kind, tables(), xs, new Uint8Array(3 * bytes), ws), where).toBe(false);
      expect(outcome((o) => codec.encodeWeighted!(xs, o, ws)), where).toBe(outcome((o) => ts(xs, o, ws)));
    }
  });
});

describe('without WebAssembly (a Content Security Policy without wasm-unsafe-eval, or an engine without it)', () => {
  it('the IQ1, IQ2 and IQ3 codecs write the TypeScript quantizers\' bytes (IQ1_S, IQ2_XXS and IQ3_S: a fresh module graph builds its grid tables again)', async () => {
    const rand = seededRandom(404);
    const x = new Float32Array(256 * 3);
    const qw = new Float32Array(256 * 3);
    for (let b = 0; b < 3; b++) {
      x.set(valuesBlock(9, rand), 256 * b);
      qw.set(weightsBlock(7, rand), 256 * b);
    }
    vi.stubGlobal('WebAssembly', undefined);
    vi.resetModules();
    try {
      const wasm = await import('../src/formats/gguf/codecs/kquant-wasm.js');
      const registry = await import('../src/formats/gguf/codecs/registry.js');
      const types = await import('../src/formats/gguf/ggml-types.js');
      expect(wasm.encodeIqLowWasm('IQ1_S', iq1Tables(), x, new Uint8Array(150), qw)).toBe(false);
      for (const kind of ['IQ2_XXS', 'IQ1_S'] as const) {
        const want = new Uint8Array(3 * LOW[kind].bytes);
        LOW[kind].ts(x, want, qw);
        const got = new Uint8Array(want.length);
        registry.blockCodec(types.ggmlTypeByName(kind)!)!.encodeWeighted!(x, got, qw);
        expect(Buffer.from(got).equals(Buffer.from(want)), kind).toBe(true);
      }
      const want = new Uint8Array(3 * 110);
      encodeIq3S(x, want, qw);
      const got = new Uint8Array(want.length);
      registry.blockCodec(types.ggmlTypeByName('IQ3_S')!)!.encodeWeighted!(x, got, qw);
      expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
    } finally {
      vi.unstubAllGlobals();
      vi.resetModules();
    }
  });
});

