/**
 * IQ2_XXS written as `llama-quantize --imatrix` writes it (ggml-quants.c quantize_iq2_xxs with
 * importance weights): golden blocks and a checksum of the grid map and neighbour tables from
 * ggml's own C (test/reference/ggml-iq2-golden.json, made by ggml-iq2-golden.mjs through
 * ggml-iq2-harness.c).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeIq2XxsRow, iq2XxsTables } from '../src/formats/gguf/codecs/iq2-search.js';

interface Golden {
  tables: { IQ2_XXS: number };
  blocks: { name: string; x: string; qw: string; IQ2_XXS: string | null }[];
}
const GOLDEN = JSON.parse(readFileSync(new URL('./reference/ggml-iq2-golden.json', import.meta.url), 'utf8')) as Golden;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const f32FromHex = (h: string) => new Float32Array(new Uint8Array(Buffer.from(h, 'hex')).buffer);

function encode(x: Float32Array, qw: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * 66);
  encodeIq2XxsRow(x, out, qw);
  return out;
}

/** FNV-1a of a text (as the golden script hashes the harness's table dump). */
function fnv(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

describe('IQ2_XXS golden blocks from ggml-quants.c (with importance weights)', () => {
  it.each(GOLDEN.blocks.map((b) => [b.name, b] as const))('%s', (_, b) => {
    const x = f32FromHex(b.x);
    const qw = f32FromHex(b.qw);
    if (b.IQ2_XXS === null) {
      // ggml stops (GGML_ASSERT / GGML_ABORT) on this block; so do we, saying what to do.
      expect(() => encode(x, qw)).toThrow(expect.objectContaining({ code: 'NON_FINITE', message: expect.stringMatching(/IQ2 block.*llama-quantize cannot write them either; choose --dtype f16/) }));
    } else {
      expect(hex(encode(x, qw))).toBe(b.IQ2_XXS);
    }
  });

  it('a row of many blocks is its blocks one after another (σ² and weights per block)', () => {
    const ok = GOLDEN.blocks.filter((b) => b.IQ2_XXS !== null).slice(0, 6);
    const x = new Float32Array(ok.length * 256);
    ok.forEach((b, i) => x.set(f32FromHex(b.x), i * 256));
    // quantize_iq2_xxs takes one weight per column of the row: here each block's own.
    const qw = new Float32Array(ok.length * 256);
    ok.forEach((b, i) => qw.set(f32FromHex(b.qw), i * 256));
    expect(hex(encode(x, qw))).toBe(ok.map((b) => b.IQ2_XXS).join(''));
  });

  it('the grid map and neighbour lists are those iq2xs_init_impl builds (checksum of its dump)', () => {
    const t = iq2XxsTables();
    const lines: string[] = [];
    for (let e = 0; e < 256; e++) {
      let v = '';
      for (let i = 7; i >= 0; i--) v += (2 * t.levels[8 * e + i] + 1).toString(16).padStart(2, '0');
      lines.push(`g ${e} ${v}`);
    }
    for (let u = 0; u < 43692; u++) {
      const m = t.map[u];
      if (m >= 0) lines.push(`m ${u} ${m}`);
      else lines.push(`n ${u} ${Array.from(t.neighbours.subarray(-m - 1, -m + t.neighbours[-m - 1])).join(' ')}`);
    }
    expect(fnv(lines.join('\n') + '\n')).toBe(GOLDEN.tables.IQ2_XXS);
  });
});
