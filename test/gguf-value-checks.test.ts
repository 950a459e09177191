/**
 * The value checks on GGUF: NaN/Inf in quantized blocks are found by their f16 scales (checked here
 * against decoding every value with the reference dequantizer), copied tensors that hold them are
 * reported, a merge into rows that hold them is refused naming the base, and merged values too large
 * for a block type's f16 scales are refused with the fix, on the CPU and WebGPU and through the CLI
 * (one line, nothing at --out).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { nonFiniteBlockSpan, nonFiniteBlockValues } from '../src/formats/gguf/block-scales.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { REF_BLOCK, referenceDequantizeBlock, referenceQuantizeBlock, type RefType } from './helpers/ggml-reference.js';
import { buildGguf, readGguf, tensorData, type FixtureTensor, type MetaValue } from './helpers/gguf-builder.js';
import { mergeBackends } from './helpers/merge-backends.js';

const temp = tempDirs();
const backends = mergeBackends({ cpu: 'default' });
afterAll(() => {
  temp.removeAll();
});

/** Where each type's f16 scales sit in its block (ggml-common.h), written out here again. */
const SCALES: Record<RefType, number[]> = {
  Q8_0: [0], Q4_0: [0], Q4_1: [0, 2], Q5_0: [0], Q5_1: [0, 2], Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208],
};
const F16_SPECIALS = [0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff];

describe('NaN/Inf in GGML blocks, read from their scales', () => {
  const rand = seededRandom(5);
  for (const type of Object.keys(REF_BLOCK) as RefType[]) {
    it(`${type}: counts exactly the values that decode to NaN or Inf`, () => {
      const { size, bytes } = REF_BLOCK[type];
      const blocks = 12;
      const data = new Uint8Array(blocks * bytes);
      for (let b = 0; b < blocks; b++) {
        // Some blocks of zeros: an infinite scale times a zero level is NaN, not a finite zero.
        const values = Array.from({ length: size }, () => (b % 4 === 3 ? 0 : (rand() - 0.5) * 10));
        data.set(referenceQuantizeBlock(type, values), b * bytes);
        if (b % 3 === 1) {
          const at = b * bytes + SCALES[type][Math.floor(rand() * SCALES[type].length)];
          const special = F16_SPECIALS[Math.floor(rand() * F16_SPECIALS.length)];
          data[at] = special & 0xff;
          data[at + 1] = special >> 8;
        }
      }
      let decoded = 0;
      for (let b = 0; b < blocks; b++) decoded += referenceDequantizeBlock(type, data.subarray(b * bytes, (b + 1) * bytes)).filter((v) => !Number.isFinite(v)).length;
      expect(decoded).toBeGreaterThan(0);
      expect(nonFiniteBlockValues(ggmlTypeByName(type)!, data)).toBe(decoded);
      // The first and the last value that decodes to NaN or Inf, by index.
      const all = Array.from({ length: blocks }, (_, b) => Array.from(referenceDequantizeBlock(type, data.subarray(b * bytes, (b + 1) * bytes)))).flat();
      const at = [...all.keys()].filter((i) => !Number.isFinite(all[i]));
      expect(nonFiniteBlockSpan(ggmlTypeByName(type)!, data)).toEqual({ count: decoded, first: at[0], last: at[at.length - 1] });
    });
  }

  it('has nothing to say of element types', () => {
    expect(nonFiniteBlockValues(ggmlTypeByName('F16')!, new Uint8Array([0, 0x7c]))).toBeUndefined();
  });
});

// --- a base with broken blocks, and adapters ------------------------------------------------------

/** Sets block `block`'s first f16 scale of `type` to `bits`. */
function breakBlock(data: Uint8Array, type: RefType, block: number, bits: number): Uint8Array {
  const out = data.slice();
  const at = block * REF_BLOCK[type].bytes + SCALES[type][0];
  out[at] = bits & 0xff;
  out[at + 1] = bits >> 8;
  return out;
}

const rand = seededRandom(9);
const values = (n: number) => Array.from({ length: n }, () => (rand() - 0.5) * 0.1);
const ARCH: [string, MetaValue] = ['general.architecture', { type: 'string', value: 'llama' }];
const TENSORS: FixtureTensor[] = [
  { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [64], data: tensorData('F32', values(64)) },
  // Copied: block 3 (row 3) has an infinite scale.
  { name: 'blk.0.ffn_gate.weight', type: 'Q4_K', ne: [256, 8], data: breakBlock(tensorData('Q4_K', values(256 * 8)), 'Q4_K', 3, 0x7c00) },
  // Merged: 16 rows of 64 (two blocks each); block 11 (row 5) has a NaN scale.
  { name: 'blk.0.ffn_down.weight', type: 'Q4_0', ne: [64, 16], data: breakBlock(tensorData('Q4_0', values(64 * 16)), 'Q4_0', 11, 0x7e00) },
  // Merged: intact.
  { name: 'blk.0.attn_v.weight', type: 'Q8_0', ne: [64, 16], data: tensorData('Q8_0', values(64 * 16)) },
];
const BASE = buildGguf({ metadata: [ARCH], tensors: TENSORS });

/** A llama.cpp LoRA of rank 1 on `tensor` (16 × 64) with every factor value `value` (f32, α = 0: scale = weight). */
function lora(tensor: string, value: number): Uint8Array {
  return buildGguf({
    metadata: [ARCH, ['general.type', { type: 'string', value: 'adapter' }], ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 0 }]],
    tensors: [
      { name: `${tensor}.lora_a`, type: 'F32', ne: [64, 1], data: tensorData('F32', Array(64).fill(value)) },
      { name: `${tensor}.lora_b`, type: 'F32', ne: [1, 16], data: tensorData('F32', Array(16).fill(value)) },
    ],
  });
}

async function merge(backend: MergeBackend, adapter: Uint8Array, outDtype?: string) {
  const prepared = await prepareMerge(memoryInputFileSet({ 'base.gguf': BASE }, 'base.gguf'), [{ files: memoryInputFileSet({ 'lora.gguf': adapter }, 'lora.gguf') }]);
  const output = createBlobOutputTarget();
  const warnings: string[] = [];
  try {
    await mergeModel({ prepared, output, backend, outDtype, onWarning: (w) => warnings.push(w) });
    return { files: output.files(), warnings };
  } finally {
    await prepared.close();
  }
}

describe.each(['cpu', 'webgpu'])('%s', (name) => {
  it('copies quantized tensors that hold NaN or Inf as they are and says so, counting their values', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { files, warnings } = await merge(backend, lora('blk.0.attn_v.weight', 0.01));
    expect(warnings).toEqual([
      'base.gguf/base.gguf: 2 tensors already hold NaN or Inf in the base and are copied as they are: blk.0.ffn_gate.weight (256 values), blk.0.ffn_down.weight (32 values)',
    ]);
    const out = readGguf(new Uint8Array(await files[0].blob.arrayBuffer()));
    expect(Buffer.from(out.tensors.find((t) => t.name === 'blk.0.ffn_gate.weight')!.data).equals(Buffer.from(TENSORS[1].data))).toBe(true);
  });

  it('refuses to merge into rows whose blocks hold NaN, naming the base', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    await expect(merge(backend, lora('blk.0.ffn_down.weight', 0.01))).rejects.toThrow(
      'base.gguf/base.gguf: tensor "blk.0.ffn_down.weight" already holds 32 NaN or Inf values in the base (row 5), and the merge updates it; the base file is broken: use an intact copy of the base',
    );
  });

  it('names the rows that hold them, not the row slab\'s: a Q4_K row, Q8_0 blocks two rows apart, F32 values, each in the middle of a slab', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const ROWS = 40;
    // Q4_K: one block a row; block 21 (row 21) with a NaN d. Q8_0: two blocks a row; block 47
    // (row 23, its second) with an infinite d, block 60 (row 30, its first) with a NaN d. F32:
    // a NaN at row 29, column 5, and an Inf at row 33, column 63.
    const f32 = values(64 * ROWS);
    f32[29 * 64 + 5] = NaN;
    f32[33 * 64 + 63] = Infinity;
    const tensors: FixtureTensor[] = [
      { name: 'blk.0.ffn_gate.weight', type: 'Q4_K', ne: [256, ROWS], data: breakBlock(tensorData('Q4_K', values(256 * ROWS)), 'Q4_K', 21, 0x7e00) },
      { name: 'blk.0.attn_v.weight', type: 'Q8_0', ne: [64, ROWS], data: breakBlock(breakBlock(tensorData('Q8_0', values(64 * ROWS)), 'Q8_0', 47, 0xfc00), 'Q8_0', 60, 0x7e01) },
      { name: 'blk.0.attn_q.weight', type: 'F32', ne: [64, ROWS], data: tensorData('F32', f32) },
    ];
    const base = buildGguf({ metadata: [ARCH], tensors });
    /** A rank-1 llama.cpp LoRA on `tensor` (ROWS × `cols`), factors 0.01. */
    const loraOn = (tensor: string, cols: number) => buildGguf({
      metadata: [ARCH, ['general.type', { type: 'string', value: 'adapter' }], ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 0 }]],
      tensors: [
        { name: `${tensor}.lora_a`, type: 'F32', ne: [cols, 1], data: tensorData('F32', Array(cols).fill(0.01)) },
        { name: `${tensor}.lora_b`, type: 'F32', ne: [1, ROWS], data: tensorData('F32', Array(ROWS).fill(0.01)) },
      ],
    });
    const mergeInto = async (tensor: string, cols: number) => {
      const prepared = await prepareMerge(memoryInputFileSet({ 'base.gguf': base }, 'base.gguf'), [{ files: memoryInputFileSet({ 'lora.gguf': loraOn(tensor, cols) }, 'lora.gguf') }]);
      try {
        // Slabs of 8 rows of f32 values for the Q8_0 and F32 tensors (2 KiB), of 2 for the Q4_K one: rows 16–23, 28–35, 20–21.
        await mergeModel({ prepared, output: createBlobOutputTarget(), backend, slabBytes: 2048 });
      } finally {
        await prepared.close();
      }
    };
    const message = (tensor: string, n: number, where: string) => `base.gguf/base.gguf: tensor "${tensor}" already holds ${n} NaN or Inf values in the base (${where}), and the merge updates it; the base file is broken: use an intact copy of the base`;
    await expect(mergeInto('blk.0.ffn_gate.weight', 256)).rejects.toThrow(message('blk.0.ffn_gate.weight', 256, 'row 21'));
    await expect(mergeInto('blk.0.attn_v.weight', 64)).rejects.toThrow(message('blk.0.attn_v.weight', 64, 'first in row 23, last in row 30'));
    await expect(mergeInto('blk.0.attn_q.weight', 64)).rejects.toThrow(message('blk.0.attn_q.weight', 2, 'first in row 29, last in row 33'));
  });

  it('refuses merged values too large for Q8_0\'s f16 block scales, and writes them as F32 when asked', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // ΔW = 3000·3000 = 9e6 per value: finite in f32, but 9e6 / 127 overflows the block's f16 scale.
    const huge = lora('blk.0.attn_v.weight', 3000);
    await expect(merge(backend, huge)).rejects.toThrow(
      /^base\.gguf\/base\.gguf: tensor "blk\.0\.attn_v\.weight": merged values up to 9\.00e\+6 are too large for Q8_0 blocks: 1024 values \(first in row 0, last in row 15\) would be NaN or Inf, the blocks' f16 scales overflow; write with --dtype f32 or bf16, or lower --weight$/,
    );
    await expect(merge(backend, huge, 'f16')).rejects.toThrow(/merged values up to 9\.00e\+6 overflow F16 \(largest finite 65504\)/);
    const { files } = await merge(backend, huge, 'f32');
    const v = readGguf(new Uint8Array(await files[0].blob.arrayBuffer())).tensors.find((t) => t.name === 'blk.0.attn_v.weight')!;
    const got = new Float32Array(v.data.slice().buffer);
    const base = TENSORS[3];
    const want = Array.from({ length: 64 * 16 }, (_, i) => 9e6 + (referenceDequantizeBlock('Q8_0', base.data.subarray(Math.floor(i / 32) * 34, Math.floor(i / 32) * 34 + 34))[i % 32]));
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i]), `${i}`).toBeLessThanOrEqual(1);
  });
});

it('the CLI says so in one line and leaves nothing at --out', async () => {
  const dir = temp.make({ 'base.gguf': BASE, 'huge.gguf': lora('blk.0.attn_v.weight', 3000), 'small.gguf': lora('blk.0.attn_v.weight', 0.01) });
  const bad = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'huge.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu']);
  expect(bad.code).toBe(1);
  const lines = errorLines(bad.stderr);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/too large for Q8_0 blocks: 1024 values \(first in row 0, last in row 15\) would be NaN or Inf.* write with --dtype f32 or bf16/);
  expect(bad.stderr).not.toMatch(/\n\s+at /);
  expect(listDir(dir)).toEqual(['base.gguf', 'huge.gguf', 'small.gguf']);

  const ok = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'small.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu']);
  expect(ok.code, ok.stderr).toBe(0);
  expect(ok.stderr).toMatch(/warning: .*base\.gguf: 2 tensors already hold NaN or Inf in the base and are copied as they are: blk\.0\.ffn_gate\.weight \(256 values\), blk\.0\.ffn_down\.weight \(32 values\)/);
  const gate = readGguf(readFileSync(join(dir, 'out.gguf'))).tensors.find((t) => t.name === 'blk.0.ffn_gate.weight')!;
  expect(Buffer.from(gate.data).equals(Buffer.from(TENSORS[1].data))).toBe(true);
});
