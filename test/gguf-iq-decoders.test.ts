/**
 * The IQ types and TQ1_0, TQ2_0: the codebooks unpack to ggml's tables
 * (checksums of ggml-common.h's iq*_grid arrays, and entries as ggml spells them), and random
 * blocks decode element by element as a plain reading of the block layouts (ggml-common.h) and of
 * dequantize_row_* (ggml-quants.c) computes them, written here value by value. The IQ1 and
 * IQ2 types have no encoder (a merged tensor of them is written as F16: gguf-iq-merge.test.ts).
 */
import { getFloat16 } from '@petamoriken/float16';
import { describe, expect, it } from 'vitest';
import { iqGrid, type IqGrid } from '../src/formats/gguf/codecs/iq-grids.js';
import { blockCodec, blockDecoder } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { seededRandom } from './helpers/fixtures.js';

/** FNV-1a of each table's bytes in memory order, and three entries, from ggml-common.h. */
const GGML_TABLES: Record<IqGrid, { fnv: number; width: number; entries: [number, bigint][] }> = {
  IQ2XXS: { fnv: 1035247982, width: 8, entries: [[0, 0x0808080808080808n], [128, 0x082b2b0808082b08n], [255, 0x2b2b2b1908081908n]] },
  IQ2XS: { fnv: 3958052829, width: 8, entries: [[0, 0x0808080808080808n], [256, 0x190808080808192bn], [511, 0x2b2b2b2b2b2b2b2bn]] },
  IQ2S: { fnv: 2191003920, width: 8, entries: [[0, 0x0808080808080808n], [512, 0x19080819082b1919n], [1023, 0x2b2b2b2b2b2b2b2bn]] },
  IQ3XXS: { fnv: 1235505205, width: 4, entries: [[0, 0x04040404n], [128, 0x141c3e04n], [255, 0x3e341c04n]] },
  IQ3S: { fnv: 1909222537, width: 4, entries: [[0, 0x01010101n], [256, 0x05090507n], [511, 0x0f0f0101n]] },
  IQ1S: { fnv: 803785678, width: 8, entries: [[0, 0xffffffffffffffffn], [1024, 0x0000000000ff0100n], [2047, 0x0101010101010101n]] },
};

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

describe('IQ codebooks', () => {
  for (const [name, want] of Object.entries(GGML_TABLES) as [IqGrid, (typeof GGML_TABLES)[IqGrid]][]) {
    it(`${name} unpacks to ggml's table`, () => {
      const grid = iqGrid(name);
      expect(fnv1a(grid)).toBe(want.fnv);
      for (const [i, value] of want.entries) {
        let v = 0n;
        for (let j = want.width - 1; j >= 0; j--) v = (v << 8n) | BigInt(grid[i * want.width + j]);
        expect(v, `${name}[${i}]`).toBe(value);
      }
    });
  }
});

// --- the reference: one value at a time from the layouts ------------------------------------

const cell = new Float32Array(1);
const F = (x: number) => ((cell[0] = x), cell[0]);
const u8 = (b: Uint8Array, at: number) => b[at];
const u16 = (b: Uint8Array, at: number) => b[at] | (b[at + 1] << 8);
const u32 = (b: Uint8Array, at: number) => (u16(b, at) | (u16(b, at + 2) << 16)) >>> 0;
const half = (bits: number) => getFloat16(new DataView(Uint16Array.of(bits).buffer), 0, true);
/** Sign of value j of a group from 7 stored sign bits: the eighth makes the count of minus signs even. */
function sign7(bits7: number, j: number): number {
  let parity = 0;
  for (let k = 0; k < 7; k++) parity ^= (bits7 >> k) & 1;
  const bit = j < 7 ? (bits7 >> j) & 1 : parity;
  return bit ? -1 : 1;
}
const int8 = (v: number) => (v << 24) >> 24;
const IQ4 = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** Value i of one block (i < block size), C's operations in C's order (all exact in f32). */
function reference(type: string, b: Uint8Array, i: number): number {
  const grid = (name: IqGrid, entry: number, j: number) => iqGrid(name)[entry * GGML_TABLES[name].width + j];
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

const TYPES: Record<string, number[]> = {
  // Byte offsets of each block's f16 scale (kept finite), per type.
  IQ2_XXS: [0], IQ2_XS: [0], IQ2_S: [0], IQ3_XXS: [0], IQ3_S: [0], IQ1_S: [0], IQ1_M: [], IQ4_NL: [0], IQ4_XS: [0], TQ1_0: [52], TQ2_0: [64],
};

describe('IQ and ternary GGML types', () => {
  for (const [name, halves] of Object.entries(TYPES)) {
    it(`${name}: random blocks decode as the layout says, value by value`, () => {
      const type = ggmlTypeByName(name)!;
      const rand = seededRandom(type.id * 7);
      const n = 24;
      const src = new Uint8Array(n * type.blockBytes);
      for (let i = 0; i < src.length; i++) src[i] = Math.floor(rand() * 256);
      for (let b = 0; b < n; b++) {
        // Scales of every size, subnormal ones included, never Inf or NaN.
        for (const at of halves) src[b * type.blockBytes + at + 1] = (src[b * type.blockBytes + at + 1] & 0x83) | ((b % 31) << 2);
        if (name === 'IQ1_M') src[b * type.blockBytes + 55] = (src[b * type.blockBytes + 55] & 0x8f) | ((b % 7) << 4);
      }
      const out = new Float32Array(n * type.blockSize);
      blockDecoder(type)!.decode(src, out);
      for (let b = 0; b < n; b++) {
        const block = src.subarray(b * type.blockBytes, (b + 1) * type.blockBytes);
        const want = Array.from({ length: type.blockSize }, (_, i) => (name === 'IQ2_XS' ? referenceIq2Xs(block, i) : reference(name, block, i)));
        expect([...out.subarray(b * type.blockSize, (b + 1) * type.blockSize)], `${name} block ${b}`).toEqual(want);
      }
      // All are written too: the IQ1 and IQ2 types only with an imatrix (gguf-iq1-codecs.test.ts,
      // gguf-iq2-codecs.test.ts), IQ3 (gguf-iq3-codecs.test.ts), IQ4 (gguf-iq4-codecs.test.ts) and
      // the ternary ones (gguf-ternary-codecs.test.ts).
      expect(blockCodec(type)?.needsImportance ?? false).toBe(/^IQ[12]_/.test(name));
    });
  }
});

/** IQ2_XS: a u16 per 8 values, 9 bits of grid index and 7 sign bits (the eighth is their parity). */
function referenceIq2Xs(b: Uint8Array, i: number): number {
  const ib = i >> 5, l = (i >> 3) & 3, j = i & 7;
  const sc = (u8(b, 66 + ib) >> (4 * (l >> 1))) & 15;
  const q = u16(b, 2 + 2 * (4 * ib + l));
  const db = F(F(half(u16(b, 0)) * F(0.5 + sc)) * 0.25);
  return F(F(db * iqGrid('IQ2XS')[(q & 511) * 8 + j]) * sign7(q >> 9, j));
}
