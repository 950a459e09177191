/**
 * The IQ types and TQ1_0, TQ2_0 decoded one value at a time, as a plain reading of the block layouts
 * (ggml-common.h) and of dequantize_row_* (ggml-quants.c) computes them, written for the tests
 * independently of src/formats/gguf/codecs (only the codebook grids come from iq-grids.ts, which
 * test/gguf-iq-decoders.test.ts pins to ggml's tables by checksum and entries, and checks these
 * values against the decoders).
 */
import { getFloat16 } from '@petamoriken/float16';
import { iqGrid, type IqGrid } from '../../src/formats/gguf/codecs/iq-grids.js';

/** Bytes per grid entry (ggml-common.h's iq*_grid element widths). */
const WIDTH: Record<IqGrid, number> = { IQ2XXS: 8, IQ2XS: 8, IQ2S: 8, IQ3XXS: 4, IQ3S: 4, IQ1S: 8 };

const cell = new Float32Array(1);
const F = (x: number) => ((cell[0] = x), cell[0]);
const u8 = (b: Uint8Array, at: number) => b[at];
const u16 = (b: Uint8Array, at: number) => b[at] | (b[at + 1] << 8);
const u32 = (b: Uint8Array, at: number) => (u16(b, at) | (u16(b, at + 2) << 16)) >>> 0;
/** Every f16 value by its bits (getFloat16 once each, so that decoding many blocks stays quick). */
const HALVES = (() => {
  const view = new DataView(new ArrayBuffer(2));
  return Float64Array.from({ length: 65536 }, (_, bits) => (view.setUint16(0, bits, true), getFloat16(view, 0, true)));
})();
const half = (bits: number) => HALVES[bits & 0xffff];
/** Sign of value j of a group from 7 stored sign bits: the eighth makes the count of minus signs even. */
function sign7(bits7: number, j: number): number {
  let parity = 0;
  for (let k = 0; k < 7; k++) parity ^= (bits7 >> k) & 1;
  const bit = j < 7 ? (bits7 >> j) & 1 : parity;
  return bit ? -1 : 1;
}
const int8 = (v: number) => (v << 24) >> 24;
const IQ4 = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** Value i of one block of `type` (i < block size), C's operations in C's order (all exact in f32). */
export function referenceIqValue(type: string, b: Uint8Array, i: number): number {
  if (type === 'IQ2_XS') return referenceIq2Xs(b, i);
  const grid = (name: IqGrid, entry: number, j: number) => iqGrid(name)[entry * WIDTH[name] + j];
  const ib = i >> 5, l = (i >> 3) & 3, j = i & 7;
  switch (type) {
    case 'IQ2_XXS': {
      const aux1 = u32(b, 2 + 8 * ib + 4);
      const db = F(F(half(u16(b, 0)) * F(0.5 + (aux1 >>> 28))) * 0.25);
      return F(F(db * grid('IQ2XXS', u8(b, 2 + 8 * ib + l), j)) * sign7((aux1 >>> (7 * l)) & 127, j));
    }
    case 'IQ2_S': {
      const sc = (u8(b, 74 + ib) >> (4 * (l >> 1))) & 15;
      const entry = u8(b, 2 + 4 * ib + l) | (((u8(b, 66 + ib) >> (2 * l)) & 3) << 8);
      const db = F(F(half(u16(b, 0)) * F(0.5 + sc)) * 0.25);
      return F(F(db * grid('IQ2S', entry, j)) * ((u8(b, 34 + 4 * ib + l) >> j) & 1 ? -1 : 1));
    }
    case 'IQ3_XXS': {
      const aux = u32(b, 66 + 4 * ib);
      const db = F(F(half(u16(b, 0)) * F(0.5 + (aux >>> 28))) * 0.5);
      const entry = u8(b, 2 + 8 * ib + 2 * l + (j >> 2));
      return F(F(db * grid('IQ3XXS', entry, j & 3)) * sign7((aux >>> (7 * l)) & 127, j));
    }
    case 'IQ3_S': {
      const sc = (u8(b, 106 + (ib >> 1)) >> (4 * (ib & 1))) & 15;
      const db = F(half(u16(b, 0)) * (1 + 2 * sc));
      const k = 2 * l + (j >> 2); // which of the 8 index bytes of these 32 values
      const entry = u8(b, 2 + 8 * ib + k) | (((u8(b, 66 + ib) >> k) & 1) << 8);
      return F(F(db * grid('IQ3S', entry, j & 3)) * ((u8(b, 74 + 4 * ib + l) >> j) & 1 ? -1 : 1));
    }
    case 'IQ1_S': {
      const qh = u16(b, 34 + 2 * ib);
      const dl = F(half(u16(b, 0)) * (2 * ((qh >> 12) & 7) + 1));
      const entry = u8(b, 2 + 4 * ib + l) | (((qh >> (3 * l)) & 7) << 8);
      return F(dl * F(int8(grid('IQ1S', entry, j)) + (qh & 0x8000 ? -0.125 : 0.125)));
    }
    case 'IQ1_M': {
      const sc = [0, 1, 2, 3].map((k) => u16(b, 48 + 2 * k));
      const d = half((sc[0] >> 12) | ((sc[1] >> 8) & 0xf0) | ((sc[2] >> 4) & 0xf00) | (sc[3] & 0xf000));
      const s3 = (sc[ib >> 1] >> (6 * (ib & 1) + 3 * (l >> 1))) & 7;
      const h = u8(b, 32 + 2 * ib + (l >> 1)) >> (4 * (l & 1));
      const entry = u8(b, 4 * ib + l) | ((h & 7) << 8);
      return F(F(d * (2 * s3 + 1)) * F(int8(grid('IQ1S', entry, j)) + (h & 8 ? -0.125 : 0.125)));
    }
    case 'IQ4_NL': {
      const q = u8(b, 2 + (i & 15)) >> (4 * (i >> 4));
      return F(half(u16(b, 0)) * IQ4[q & 15]);
    }
    case 'IQ4_XS': {
      const ls = ((u8(b, 4 + (ib >> 1)) >> (4 * (ib & 1))) & 15) | (((u16(b, 2) >> (2 * ib)) & 3) << 4);
      const q = u8(b, 8 + 16 * ib + (i & 15)) >> (4 * ((i >> 4) & 1));
      return F(F(half(u16(b, 0)) * (ls - 32)) * IQ4[q & 15]);
    }
    case 'TQ2_0': {
      const q = (u8(b, 32 * (i >> 7) + (i & 31)) >> (2 * ((i >> 5) & 3))) & 3;
      return F((q - 1) * half(u16(b, 64)));
    }
    case 'TQ1_0': {
      // Values 0–159: 5 digits of bytes 0–31; 160–239: 5 digits of bytes 32–47; then 4 of bytes 48–51.
      const [byte, digit] = i < 160 ? [i % 32, Math.floor(i / 32)] : i < 240 ? [32 + ((i - 160) % 16), Math.floor((i - 160) / 16)] : [48 + ((i - 240) % 4), Math.floor((i - 240) / 4)];
      const q = (u8(b, byte) * 3 ** digit) % 256;
      return F((Math.floor((q * 3) / 256) - 1) * half(u16(b, 52)));
    }
  }
  throw new Error(type);
}

/** IQ2_XS: a u16 per 8 values, 9 bits of grid index and 7 sign bits (the eighth is their parity). */
function referenceIq2Xs(b: Uint8Array, i: number): number {
  const ib = i >> 5, l = (i >> 3) & 3, j = i & 7;
  const sc = (u8(b, 66 + ib) >> (4 * (l >> 1))) & 15;
  const q = u16(b, 2 + 2 * (4 * ib + l));
  const db = F(F(half(u16(b, 0)) * F(0.5 + sc)) * 0.25);
  return F(F(db * iqGrid('IQ2XS')[(q & 511) * 8 + j]) * sign7(q >> 9, j));
}

/** One block of `type` (256 values; 32 for IQ4_NL) decoded value by value. */
export function referenceIqBlock(type: string, b: Uint8Array, size: number): number[] {
  return Array.from({ length: size }, (_, i) => referenceIqValue(type, b, i));
}
