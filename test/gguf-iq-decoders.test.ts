/**
 * The IQ types and TQ1_0, TQ2_0: the codebooks unpack to ggml's tables
 * (checksums of ggml-common.h's iq*_grid arrays, and entries as ggml spells them), and random
 * blocks decode element by element as a plain reading of the block layouts (ggml-common.h) and of
 * dequantize_row_* (ggml-quants.c) computes them, value by value (helpers/ggml-iq-decode-reference.ts). The IQ1 and
 * IQ2 types have no encoder (a merged tensor of them is written as F16: gguf-iq-merge.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { iqGrid, type IqGrid } from '../src/formats/gguf/codecs/iq-grids.js';
import { blockCodec, blockDecoder } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { seededRandom } from './helpers/fixtures.js';
import { referenceIqValue } from './helpers/ggml-iq-decode-reference.js';

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
        const want = Array.from({ length: type.blockSize }, (_, i) => referenceIqValue(name, block, i));
        expect([...out.subarray(b * type.blockSize, (b + 1) * type.blockSize)], `${name} block ${b}`).toEqual(want);
      }
      // All are written too: the IQ1 and IQ2 types only with an imatrix (gguf-iq1-codecs.test.ts,
      // gguf-iq2-codecs.test.ts), IQ3 (gguf-iq3-codecs.test.ts), IQ4 (gguf-iq4-codecs.test.ts) and
      // the ternary ones (gguf-ternary-codecs.test.ts).
      expect(blockCodec(type)?.needsImportance ?? false).toBe(/^IQ[12]_/.test(name));
    });
  }
});
