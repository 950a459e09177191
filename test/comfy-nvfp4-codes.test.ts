/**
 * ComfyUI `comfy_quant` nvfp4 layers (Comfy-Org's FLUX.2 nvfp4 files: `<m>.weight` U8 (rows,
 * cols/2), element 2k in the high nibble; `<m>.weight_scale` F8_E4M3 in cuBLAS' swizzled layout;
 * `<m>.weight_scale_2` F32 (); `<m>.comfy_quant` `{"format": "nvfp4"}`) as the view lists them:
 * f32 values as comfy_kitchen's dequantize_nvfp4 computes them into float32 (its CUDA kernel and
 * eager reference), f32(e2m1(code) × f32(e4m3(block scale) × weight_scale_2)), code 8 being −0.
 * Every one of the 16 codes under edge block scales (zero, subnormals, the smallest normal, one,
 * 448, negatives) and some whose product with weight_scale_2 rounds; 144 rows, so the scales span
 * two swizzled row tiles and are padded both ways; read back in pieces that start and end mid-row
 * and mid-byte. The truth is decoded by hand here in float32 steps (Math.fround) and compared bit
 * for bit; weight_scale_2 is one where that order and the exact product rounded once differ.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet } from '../src/index.js';
import { openBaseModel } from '../src/formats/base-model.js';
import { readComfyNvfp4 } from '../src/formats/comfy-nvfp4.js';
import { buildSafetensors, type FixtureTensor } from './helpers/fixtures.js';
import { blockedOrder, comfyNvfp4Value, e2m1Value, e4m3Value } from './helpers/e4m3-by-hand.js';

const M = 'model.diffusion_model.double_blocks.0.img_attn.qkv';
const FILE = 'flux2_dev_nvfp4mixed.safetensors';
/** json.dumps as ComfyUI writes it. */
const NVFP4_CONFIG = Array.from(new TextEncoder().encode('{"format": "nvfp4"}'));
/** As modelopt-nvfp4-codes.test.ts: edge bytes, then 0x4d, 0x5b and 0x35, whose products with GLOBAL round in f32. */
const EDGE_SCALES = [0x00, 0x01, 0x02, 0x07, 0x08, 0x38, 0x7e, 0x80, 0x81, 0xfe, 0x4d, 0x5b, 0x35];
const GLOBAL = Math.fround(0.000731);
const ROWS = 144, COLS = 80, BLOCKS = COLS / 16;

function f32Bits(x: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, x, true);
  expect(Object.is(view.getFloat32(0, true), x), `${x} is not a float32 value`).toBe(true);
  return view.getUint32(0, true);
}

/** Each block holds all 16 codes (rotated by the block's index, so each sits in both nibbles); scale bytes cycle through EDGE_SCALES. */
const codes = Array.from({ length: ROWS * COLS }, (_, v) => (v % 16 + Math.floor(v / 16)) % 16);
const grid = Array.from({ length: ROWS * BLOCKS }, (_, b) => EDGE_SCALES[b % EDGE_SCALES.length]);

async function layer(global = GLOBAL) {
  const { order, shape } = blockedOrder(ROWS, BLOCKS);
  const tensors: FixtureTensor[] = [
    { name: `${M}.weight`, dtype: 'U8', shape: [ROWS, COLS / 2], data: Array.from({ length: ROWS * COLS / 2 }, (_, k) => (codes[2 * k] << 4) | codes[2 * k + 1]) },
    { name: `${M}.weight_scale`, dtype: 'F8_E4M3', shape, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : grid[at])) },
    { name: `${M}.weight_scale_2`, dtype: 'F32', shape: [], data: [global] },
    { name: `${M}.comfy_quant`, dtype: 'U8', shape: [NVFP4_CONFIG.length], data: NVFP4_CONFIG },
  ];
  const base = await openBaseModel(memoryInputFileSet({ [FILE]: buildSafetensors(tensors) }, FILE));
  return readComfyNvfp4(base, M, 'comfy_quant');
}

/** Every value's expected f32 bits in comfy_kitchen's order, or (`exact`) e2m1 × e4m3 × GLOBAL in float64 rounded once. */
function expectedBits(exact = false): Uint32Array {
  return Uint32Array.from(codes, (code, v) => {
    const scale = grid[Math.floor(v / COLS) * BLOCKS + Math.floor((v % COLS) / 16)];
    return f32Bits(exact ? Math.fround(e2m1Value(code) * e4m3Value(scale) * GLOBAL) : comfyNvfp4Value(code, scale, GLOBAL));
  });
}

describe('ComfyUI nvfp4 layers read through the view', () => {
  it('all 16 e2m1 codes × edge E4M3 block scales, swizzled over two row tiles, read in pieces: comfy_kitchen\'s float32 values bit for bit, code 8 as −0', async () => {
    const want = expectedBits();
    // The order matters for these values: rounded once from the exact product, some differ.
    const exact = expectedBits(true);
    expect(want.filter((x, i) => x !== exact[i]).length).toBeGreaterThan(4);
    // Code 8 under a positive block scale is −0 (0x80000000), not +0.
    expect(want.filter((x, i) => codes[i] === 8 && x === 0x80000000).length).toBeGreaterThan(4);
    const entry = await layer();
    expect([entry.codeDtype, entry.scales[0], entry.view!.dtype, entry.view!.shape]).toEqual(['F32', 1, 'F32', [ROWS, COLS]]);
    const total = ROWS * COLS;
    for (const pieces of [[total], [1, 37, 80, 3, 91, 161, 2], [79, 81, 15, 17], [128 * COLS - 3, 7]]) {
      const got = new Uint32Array(total);
      for (let at = 0, k = 0; at < total; k++) {
        const n = Math.min(pieces[k % pieces.length], total - at);
        const bytes = await entry.view!.readPart(at * 4, n * 4);
        expect(bytes.length).toBe(n * 4);
        got.set(new Uint32Array(bytes.slice().buffer), at);
        at += n;
      }
      const wrong = got.findIndex((x, i) => x !== want[i]);
      expect(wrong, `pieces ${pieces.join(',')}: value ${wrong} is 0x${got[wrong]?.toString(16)}, expected 0x${want[wrong]?.toString(16)}`).toBe(-1);
    }
  });

  it('a weight_scale_2 whose product with the largest block scale (448) is beyond float32 is refused in one line naming the tensor', async () => {
    const huge = Math.fround(2 ** 120); // 448 × 2^120 > 3.4 × 10^38
    await expect(layer(huge)).rejects.toThrow(`${FILE}: tensor "${M}.weight_scale_2" holds the scale ${huge}; times the largest block scale (448) it is beyond float32, so ComfyUI's dequantization gives no finite weight`);
    // 2^119 × 448 is still a float32: read.
    expect((await (await layer(Math.fround(2 ** 119))).view!.readPart(0, 4)).length).toBe(4);
  });
});
