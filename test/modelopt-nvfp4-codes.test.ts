/**
 * ModelOpt NVFP4 weights (nvidia/Llama-3.1-8B-Instruct-FP4 layout: `<m>.weight` U8 (out, in/2),
 * `<m>.weight_scale` F8_E4M3 (out, in/16), `<m>.weight_scale_2` F32 ()) as the view lists them:
 * bf16 e2m1(code) × e4m3(block scale), every one of the 16 codes under every edge scale byte
 * (zero, subnormals, the smallest normal, one, the largest 0x7e = 448, and their negatives),
 * read back in pieces that start and end mid-row and mid-byte. The truth is float64 decoded by
 * hand here; a product is exact in bf16, so its bits are the top half of its float32 bits (the
 * test checks the bottom half is zero). E4M3FN's NaN bytes (0x7f, 0xff) are refused naming the
 * tensor and row, for any read of that row.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet } from '../src/index.js';
import { openBaseModel } from '../src/formats/base-model.js';
import { nvfp4BaseModel } from '../src/formats/modelopt-nvfp4.js';
import { buildSafetensors, type FixtureTensor } from './helpers/fixtures.js';
import { e2m1Value, e4m3Value } from './helpers/e4m3-by-hand.js';

const M = 'model.layers.0.mlp.down_proj';
/** 0, the smallest and largest subnormals, the smallest normal, 1, 448 (0x7e, the largest), and negatives. */
const EDGE_SCALES = [0x00, 0x01, 0x02, 0x07, 0x08, 0x38, 0x7e, 0x80, 0x81, 0xfe];

/** bf16 bits of a value exact in bf16, by hand: the top half of its float32 bits. */
function bf16Bits(x: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, x, true);
  expect(view.getFloat32(0, true), `${x} is not exact in float32`).toBe(x);
  expect(view.getUint16(0, true), `${x} is not exact in bf16`).toBe(0);
  return view.getUint16(2, true);
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

async function view(l: Layout) {
  const tensors: FixtureTensor[] = [
    { name: `${M}.weight`, dtype: 'U8', shape: [l.rows, l.cols / 2], data: l.packed },
    { name: `${M}.weight_scale`, dtype: 'F8_E4M3', shape: [l.rows, l.cols / l.group], data: l.scales },
    { name: `${M}.weight_scale_2`, dtype: 'F32', shape: [], data: [Math.fround(0.000731)] },
    { name: `${M}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0017)] },
  ];
  const base = await openBaseModel(memoryInputFileSet({ 'model.safetensors': buildSafetensors(tensors), 'config.json': '{"model_type":"llama"}' }, 'llama-fp4'));
  return (await nvfp4BaseModel(base, { algo: 'NVFP4', groupSize: l.group })).base;
}

/** Every value's expected bf16 bits: element 2k is the low nibble of byte k, its scale that of its group of the row. */
function expectedBits(l: Layout): Uint16Array {
  const out = new Uint16Array(l.rows * l.cols);
  for (let r = 0; r < l.rows; r++) for (let c = 0; c < l.cols; c++) {
    const v = r * l.cols + c;
    const byte = l.packed[Math.floor(v / 2)];
    const nibble = v % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
    out[v] = bf16Bits(e2m1Value(nibble) * e4m3Value(l.scales[r * (l.cols / l.group) + Math.floor(c / l.group)]));
  }
  return out;
}

/** The whole tensor read in pieces of these many values in turn (starting and ending mid-row, mid-byte), as bf16 bits. */
async function readInPieces(v: Awaited<ReturnType<typeof view>>, total: number, pieces: readonly number[]): Promise<Uint16Array> {
  const got = new Uint16Array(total);
  for (let at = 0, k = 0; at < total; k++) {
    const n = Math.min(pieces[k % pieces.length], total - at);
    const bytes = await v.readPart(`${M}.weight`, at * 2, n * 2);
    expect(bytes.length).toBe(n * 2);
    got.set(new Uint16Array(bytes.slice().buffer), at);
    at += n;
  }
  return got;
}

describe('ModelOpt NVFP4 weights read through the view', () => {
  it('all 16 e2m1 codes × edge E4M3 block scales, read in pieces that start and end mid-row, are e2m1 × e4m3 exactly', async () => {
    const l = layout(7, 5, 16, EDGE_SCALES); // 80 inputs a row
    const want = expectedBits(l);
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

  for (const nan of [0x7f, 0xff]) {
    it(`a NaN block scale (0x${nan.toString(16)}) is refused naming the tensor and its row, for any read of that row; other rows read`, async () => {
      const l = layout(6, 5, 16, [0x38]);
      l.scales[4 * 5 + 3] = nan; // row 4, inputs 48–63
      const v = await view(l);
      const row = l.cols * 2;
      // Inputs 2–9 of row 4: its NaN block is not among them, but the read is refused all the same.
      await expect(v.readPart(`${M}.weight`, 4 * row + 4, 16)).rejects.toThrow(`llama-fp4: tensor "${M}.weight_scale" holds NaN (row 4)`);
      await expect(v.readPart(`${M}.weight`, 3 * row + 2, row)).rejects.toThrow(`llama-fp4: tensor "${M}.weight_scale" holds NaN (row 4)`);
      const want = expectedBits(layout(6, 5, 16, [0x38]));
      const got = new Uint16Array((await v.readPart(`${M}.weight`, 2, 4 * row - 4)).slice().buffer);
      expect(got.findIndex((x, i) => x !== want[i + 1])).toBe(-1);
    });
  }
});
