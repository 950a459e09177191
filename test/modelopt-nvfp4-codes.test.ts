/**
 * ModelOpt NVFP4 weights (nvidia/Llama-3.1-8B-Instruct-FP4 layout: `<m>.weight` U8 (out, in/2),
 * `<m>.weight_scale` F8_E4M3 (out, in/16), `<m>.weight_scale_2` F32 ()) as the view lists them:
 * f32 values as ModelOpt's NVFP4QTensor.dequantize computes them, f32(e2m1(code) ×
 * f32(e4m3(block scale) × weight_scale_2)), every one of the 16 codes under every edge scale byte
 * (zero, subnormals, the smallest normal, one, the largest 0x7e = 448, and their negatives) and a
 * few whose product with weight_scale_2 rounds, read back in pieces that start and end mid-row and
 * mid-byte. The truth is decoded by hand here, step by step in float32 (Math.fround), and compared
 * bit for bit (so code 8, which ModelOpt's table reads as +0, is +0). The fixture's weight_scale_2
 * is one where that order and the exact product e2m1 × e4m3 × weight_scale_2 rounded once differ.
 * E4M3FN's NaN bytes (0x7f, 0xff) are refused naming the tensor and row, for any read of that row.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet } from '../src/index.js';
import { openBaseModel } from '../src/formats/base-model.js';
import { nvfp4BaseModel } from '../src/formats/modelopt-nvfp4.js';
import { buildSafetensors, type FixtureTensor } from './helpers/fixtures.js';
import { e2m1Value, e4m3Value, modelOptNvfp4Value } from './helpers/e4m3-by-hand.js';

const M = 'model.layers.0.mlp.down_proj';
/**
 * 0, the smallest and largest subnormals, the smallest normal, 1, 448 (0x7e, the largest), and
 * negatives; then 0x4d (2.5 × 2²), 0x5b (2.75 × 2⁴) and 0x35 (0.8125 = 1.625 / 2), whose products
 * with GLOBAL round in f32.
 */
const EDGE_SCALES = [0x00, 0x01, 0x02, 0x07, 0x08, 0x38, 0x7e, 0x80, 0x81, 0xfe, 0x4d, 0x5b, 0x35];
const GLOBAL = Math.fround(0.000731);

/** The float32 bits of `x` (which must be a float32 value). */
function f32Bits(x: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, x, true);
  expect(Object.is(view.getFloat32(0, true), x), `${x} is not a float32 value`).toBe(true);
  return view.getUint32(0, true);
}

interface Layout { rows: number; cols: number; group: number; packed: Uint8Array; scales: Uint8Array }

/** Each group holds all 16 codes (rotated by the group's index, so each code sits in both nibbles); scale bytes cycle through `scaleBytes`. */
function layout(rows: number, groupsPerRow: number, group: number, scaleBytes: readonly number[]): Layout {
  const cols = groupsPerRow * group;
  const codes = Array.from({ length: rows * cols }, (_, v) => (v % group + Math.floor(v / group)) % 16);
  const packed = Uint8Array.from({ length: (rows * cols) / 2 }, (_, k) => codes[2 * k] | (codes[2 * k + 1] << 4));
  const scales = Uint8Array.from({ length: rows * groupsPerRow }, (_, g) => scaleBytes[g % scaleBytes.length]);
  return { rows, cols, group, packed, scales };
}

async function view(l: Layout, global = GLOBAL) {
  const tensors: FixtureTensor[] = [
    { name: `${M}.weight`, dtype: 'U8', shape: [l.rows, l.cols / 2], data: l.packed },
    { name: `${M}.weight_scale`, dtype: 'F8_E4M3', shape: [l.rows, l.cols / l.group], data: l.scales },
    { name: `${M}.weight_scale_2`, dtype: 'F32', shape: [], data: [global] },
    { name: `${M}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0017)] },
  ];
  const base = await openBaseModel(memoryInputFileSet({ 'model.safetensors': buildSafetensors(tensors), 'config.json': '{"model_type":"llama"}' }, 'llama-fp4'));
  return (await nvfp4BaseModel(base, { algo: 'NVFP4', groupSize: l.group })).base;
}

/**
 * Every value's expected f32 bits: element 2k is the low nibble of byte k, its scale that of its
 * group of the row; ModelOpt's order, or (`exact`) e2m1 × e4m3 × GLOBAL in float64 rounded once.
 */
function expectedBits(l: Layout, exact = false): Uint32Array {
  const out = new Uint32Array(l.rows * l.cols);
  for (let r = 0; r < l.rows; r++) for (let c = 0; c < l.cols; c++) {
    const v = r * l.cols + c;
    const byte = l.packed[Math.floor(v / 2)];
    const nibble = v % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
    const scale = l.scales[r * (l.cols / l.group) + Math.floor(c / l.group)];
    out[v] = f32Bits(exact ? Math.fround(e2m1Value(nibble) * e4m3Value(scale) * GLOBAL) : modelOptNvfp4Value(nibble, scale, GLOBAL));
  }
  return out;
}

/** The whole tensor read in pieces of these many values in turn (starting and ending mid-row, mid-byte), as f32 bits. */
async function readInPieces(v: Awaited<ReturnType<typeof view>>, total: number, pieces: readonly number[]): Promise<Uint32Array> {
  const got = new Uint32Array(total);
  for (let at = 0, k = 0; at < total; k++) {
    const n = Math.min(pieces[k % pieces.length], total - at);
    const bytes = await v.readPart(`${M}.weight`, at * 4, n * 4);
    expect(bytes.length).toBe(n * 4);
    got.set(new Uint32Array(bytes.slice().buffer), at);
    at += n;
  }
  return got;
}

describe('ModelOpt NVFP4 weights read through the view', () => {
  it('all 16 e2m1 codes × edge E4M3 block scales, read in pieces that start and end mid-row, are ModelOpt\'s float32 values bit for bit', async () => {
    const l = layout(7, 5, 16, EDGE_SCALES); // 80 inputs a row
    const want = expectedBits(l);
    // The order matters for these values: rounded once from the exact product, some differ.
    const exact = expectedBits(l, true);
    expect(want.filter((x, i) => x !== exact[i]).length).toBeGreaterThan(4);
    const v = await view(l);
    for (const pieces of [[l.rows * l.cols], [1, 37, 80, 3, 91, 161, 2], [79, 81, 15, 17], [1]]) {
      const got = await readInPieces(v, l.rows * l.cols, pieces);
      const wrong = got.findIndex((x, i) => x !== want[i]);
      expect(wrong, `pieces ${pieces.join(',')}: value ${wrong} is 0x${got[wrong]?.toString(16)}, expected 0x${want[wrong]?.toString(16)}`).toBe(-1);
    }
  });

  it('a group size the config allows but ModelOpt does not write (13, odd: a byte may span two scales) decodes the same way', async () => {
    const l = layout(5, 6, 13, EDGE_SCALES); // 78 inputs a row
    const want = expectedBits(l);
    const got = await readInPieces(await view(l), l.rows * l.cols, [1, 12, 14, 77, 79, 3]);
    expect(got.findIndex((x, i) => x !== want[i])).toBe(-1);
  });

  it('a weight_scale_2 whose product with the largest block scale (448) is beyond float32 is refused naming the tensor', async () => {
    const huge = Math.fround(2 ** 120); // 448 × 2^120 > 3.4 × 10^38
    await expect(view(layout(2, 1, 16, [0x38]), huge)).rejects.toThrow(`llama-fp4: tensor "${M}.weight_scale_2" holds the scale ${huge}; times the largest block scale (448) it is beyond float32`);
    // 2^119 × 448 is still a float32: read.
    expect((await (await view(layout(2, 1, 16, [0x38]), Math.fround(2 ** 119))).readPart(`${M}.weight`, 0, 4)).length).toBe(4);
  });

  for (const nan of [0x7f, 0xff]) {
    it(`a NaN block scale (0x${nan.toString(16)}) is refused naming the tensor and its row, for any read of that row; other rows read`, async () => {
      const l = layout(6, 5, 16, [0x38]);
      l.scales[4 * 5 + 3] = nan; // row 4, inputs 48–63
      const v = await view(l);
      const row = l.cols * 4; // bytes of a row of f32 values
      // Inputs 1–4 of row 4: its NaN block is not among them, but the read is refused all the same.
      await expect(v.readPart(`${M}.weight`, 4 * row + 4, 16)).rejects.toThrow(`llama-fp4: tensor "${M}.weight_scale" holds 1 NaN scale (row 4); the base file is broken: use an intact copy of the base`);
      await expect(v.readPart(`${M}.weight`, 3 * row + 4, row)).rejects.toThrow(`llama-fp4: tensor "${M}.weight_scale" holds 1 NaN scale (row 4); the base file is broken: use an intact copy of the base`);
      const want = expectedBits(layout(6, 5, 16, [0x38]));
      const got = new Uint32Array((await v.readPart(`${M}.weight`, 4, 4 * row - 8)).slice().buffer);
      expect(got.findIndex((x, i) => x !== want[i + 1])).toBe(-1);
    });
  }
});
