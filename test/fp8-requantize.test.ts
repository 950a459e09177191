/**
 * The fp8 re-quantizer on its own: slabs of f32 values to e4m3fn codes with each block's scale
 * recomputed, by the WebAssembly SIMD encoder (in pieces cut anywhere, also mid-block) and by the
 * TypeScript one, against the quantizers' rules written plainly here: transformers' FineGrainedFP8
 * (q = f32(448 / amax), code = e4m3(clamp(f32(w·q), ±448)), weight_scale_inv = f32(1 / q)) and
 * compressed-tensors (s = max(f32(amax / 448), 2^-23) in the scale's dtype, code = e4m3(clamp(
 * f32(w / s), ±448))). Values sit on e4m3 ties after scaling, in its subnormal range, and at zero
 * (both signs); grids are block (128 × 128 and odd shapes), channel and tensor.
 */
import { describe, expect, it } from 'vitest';
import type { ScaledFp8Weight } from '../src/formats/scaled-fp8.js';
import { requantizeSlab } from '../src/pipeline/fp8-requantize.js';
import { f8BitsSaturating, roundForDType, seededRandom } from './helpers/fixtures.js';

type Rule = 'reciprocal' | 'divide';

function weight(rows: number, cols: number, blockRows: number, blockCols: number, scaleDtype: ScaledFp8Weight['scaleDtype'] = 'F32'): ScaledFp8Weight {
  const n = Math.ceil(rows / blockRows) * Math.ceil(cols / blockCols);
  return {
    weightKey: 'model.layers.0.mlp.down_proj.weight', codeDtype: 'F8_E4M3', scaleKey: 'model.layers.0.mlp.down_proj.weight_scale_inv', scaleDtype,
    rows, cols, blockRows, blockCols, scales: new Float64Array(n).fill(0.125),
  };
}

/** Values of a weight: random, a block of zeros (+0 and −0), a few exact e4m3 ties after scaling, a few in e4m3's subnormal range. */
function values(rows: number, cols: number, seed: number, zeroBlock?: { r0: number; r1: number; c0: number; c1: number }): Float32Array {
  const rand = seededRandom(seed);
  const v = new Float32Array(rows * cols);
  for (let i = 0; i < v.length; i++) {
    const pick = rand();
    const x = (rand() * 2 - 1) * 0.3;
    // Codes at most 448 / amax · x: ×2^-10 lands in e4m3's subnormal range, 1.0625 (a midpoint of 1 and 1.125) on a tie.
    v[i] = pick < 0.05 ? x * 2 ** -10 : pick < 0.1 ? Math.sign(x) * 1.0625 * 2 ** -8 : x;
  }
  if (zeroBlock) {
    for (let r = zeroBlock.r0; r < zeroBlock.r1; r++) for (let c = zeroBlock.c0; c < zeroBlock.c1; c++) v[r * cols + c] = (r + c) % 2 ? -0 : 0;
  }
  return v;
}

/** The quantizers' rules over the slab's rows, block by block. */
function reference(w: ScaledFp8Weight, rule: Rule, v: Float32Array, rowStart: number, rowCount: number, tensorMax?: number) {
  // E8M0 scales (DeepSeek-V4) are checked against their own reference in deepseek-v4-checkpoint.test.ts.
  if (w.scaleDtype === 'F8_E8M0') throw new Error('no E8M0 reference here');
  const scaleDtype = w.scaleDtype;
  const scales = Float64Array.from(w.scales);
  const codes = new Uint8Array(rowCount * w.cols);
  const nCB = Math.ceil(w.cols / w.blockCols);
  const firstBand = Math.floor(rowStart / w.blockRows), lastBand = Math.floor((rowStart + rowCount - 1) / w.blockRows);
  const e4m3 = (x: number) => f8BitsSaturating(Math.min(448, Math.max(-448, x)) || x, 'F8_E4M3'); // clamp, keeping −0
  for (let rb = firstBand; rb <= lastBand; rb++) {
    for (let cb = 0; cb < nCB; cb++) {
      const cells: number[] = [];
      for (let r = Math.max(rowStart, rb * w.blockRows); r < Math.min(rowStart + rowCount, (rb + 1) * w.blockRows); r++) {
        for (let c = cb * w.blockCols; c < Math.min(w.cols, (cb + 1) * w.blockCols); c++) cells.push((r - rowStart) * w.cols + c);
      }
      const amax = tensorMax ?? cells.reduce((m, i) => Math.max(m, Math.abs(v[i])), 0);
      if (rule === 'reciprocal') {
        const q = amax === 0 ? 0 : Math.fround(448 / amax);
        if (amax !== 0) scales[rb * nCB + cb] = roundForDType(Math.fround(1 / q), scaleDtype);
        for (const i of cells) codes[i] = e4m3(Math.fround(v[i] * q));
      } else {
        const s = roundForDType(Math.max(Math.fround(amax / 448), 2 ** -23), scaleDtype);
        scales[rb * nCB + cb] = s;
        for (const i of cells) codes[i] = e4m3(Math.fround(v[i] / s));
      }
    }
  }
  return { codes, scales };
}

function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `element ${i}: ${a[i]} against ${b[i]}`;
  return 'none';
}

const ENCODERS = [
  { name: 'WebAssembly, one call', options: { encoder: 'wasm' as const } },
  { name: 'WebAssembly, pieces of 1000 values (cut inside blocks)', options: { encoder: 'wasm' as const, pieceValues: 1000 } },
  { name: 'TypeScript', options: { encoder: 'js' as const } },
];

describe.each(ENCODERS)('fp8 re-quantization, $name', ({ options }) => {
  const cases: [string, ScaledFp8Weight, Rule, number, number][] = [
    // [label, weight, rule, rowStart, rowCount]
    ['block-wise 128 × 128, partial blocks both ways, two block rows of a slab', weight(300, 203, 128, 128), 'reciprocal', 128, 172],
    ['block-wise 128 × 128, the first block row', weight(300, 203, 128, 128), 'reciprocal', 0, 128],
    ['odd blocks 5 × 7 (block_structure "5x7"), bf16 scales', weight(23, 31, 5, 7, 'BF16'), 'divide', 10, 13],
    ['per channel, f16 scales, 3 columns (shorter than a SIMD lane group)', weight(41, 3, 1, 3, 'F16'), 'divide', 7, 20],
    ['per channel, bf16 scales', weight(64, 129, 1, 129, 'BF16'), 'divide', 0, 64],
  ];
  it.each(cases)('%s: codes and scales as the quantizer\'s rule', (_, w, rule, rowStart, rowCount) => {
    const v = values(rowCount, w.cols, w.rows * 7 + rowStart, { r0: 0, r1: Math.min(rowCount, w.blockRows), c0: 0, c1: Math.min(w.cols, w.blockCols) });
    const want = reference(w, rule, v, rowStart, rowCount);
    const scales = Float64Array.from(w.scales);
    const codes = requantizeSlab(w, rule, v, rowStart, rowCount, scales, undefined, options);
    expect(firstDifference(codes, want.codes)).toBe('none');
    expect(firstDifference(scales, want.scales)).toBe('none');
    // The zero block kept its scale (block-wise) or got the smallest one (compressed-tensors); its codes are ±0.
    const zeroAt = Math.floor(rowStart / w.blockRows) * Math.ceil(w.cols / w.blockCols);
    expect(scales[zeroAt]).toBe(rule === 'reciprocal' ? 0.125 : roundForDType(2 ** -23, w.scaleDtype as 'F32' | 'BF16' | 'F16'));
    expect(codes[0] === 0 || codes[0] === 0x80).toBe(true);
  });

  it('a per-tensor scale: the whole tensor\'s maximum, a slab starting anywhere inside its one block', () => {
    const w = weight(50, 37, 50, 37);
    const v = values(17, 37, 5);
    const tensorMax = 0.4; // over rows this slab does not hold
    const want = reference(w, 'divide', v, 13, 17, tensorMax);
    const scales = Float64Array.from(w.scales);
    expect(firstDifference(requantizeSlab(w, 'divide', v, 13, 17, scales, tensorMax, options), want.codes)).toBe('none');
    expect(scales[0]).toBe(Math.fround(0.4 / 448));
  });

  it('codes saturate at ±448 where w·q rounds past it (q = f32(448 / amax) rounded up)', () => {
    // amax = f32(3/7): q = f32(448 / amax) is a little above the quotient, so amax·q rounds to
    // 448.00003, which must stay 448 (0x7e).
    const a = Math.fround(3 / 7);
    const w = weight(4, 8, 4, 8);
    const v = Float32Array.from({ length: 32 }, (_, i) => (i % 2 ? -a : a) * (i < 8 ? 1 : 0.5));
    expect(Math.fround(a * Math.fround(448 / a))).toBeGreaterThan(448);
    const codes = requantizeSlab(w, 'reciprocal', v, 0, 4, Float64Array.from(w.scales), undefined, options);
    expect(Array.from(codes.subarray(0, 8))).toEqual([0x7e, 0xfe, 0x7e, 0xfe, 0x7e, 0xfe, 0x7e, 0xfe]);
    expect(firstDifference(codes, reference(w, 'reciprocal', v, 0, 4).codes)).toBe('none');
  });
});

describe('fp8 re-quantization, WebAssembly and TypeScript alike', () => {
  it('a block so small that q overflows f32, or a scale its dtype cannot hold: refused naming the weight and the block, by both', () => {
    // q = f32(448 / amax) overflows for amax = 2^-140: its codes would be NaN and its scale 0.
    const w = weight(8, 16, 4, 8);
    const tiny = values(8, 16, 11);
    for (let r = 0; r < 4; r++) for (let c = 0; c < 8; c++) tiny[r * 16 + c] = (c % 3 - 1) * 2 ** -140;
    // An F16 weight_scale_inv: amax / 448 past 65504 would be stored as Inf.
    const f16 = weight(8, 16, 4, 8, 'F16');
    const big = values(8, 16, 12);
    big[5 * 16 + 9] = 4e7;
    for (const { options } of ENCODERS) {
      expect(() => requantizeSlab(w, 'reciprocal', tiny, 0, 8, Float64Array.from(w.scales), undefined, options))
        .toThrow(/^tensor "model\.layers\.0\.mlp\.down_proj\.weight": its merged block at row 0, column 0 \(largest magnitude .*\) needs a scale that model\.layers\.0\.mlp\.down_proj\.weight_scale_inv \(F32\) cannot hold .*--dtype bf16/);
      expect(() => requantizeSlab(f16, 'reciprocal', big, 0, 8, Float64Array.from(f16.scales), undefined, options))
        .toThrow(/its merged block at row 4, column 8 \(largest magnitude 4\d+\) needs a scale that .*weight_scale_inv \(F16\) cannot hold \(it would be Infinity/);
      // ComfyUI's rule on a per-tensor F16 scale: f16(amax / 448) is 0 for amax = 2^-20, its reciprocal Inf.
      const comfy = { ...weight(8, 16, 8, 16, 'F16'), scaleKey: 'double_blocks.0.img_attn.qkv.weight_scale' };
      const small = values(8, 16, 13).map((x) => x * 2 ** -20);
      expect(() => requantizeSlab(comfy, 'comfy', small, 0, 8, Float64Array.from(comfy.scales), undefined, options))
        .toThrow(/block at row 0, column 0 .* double_blocks\.0\.img_attn\.qkv\.weight_scale \(F16\) cannot hold \(it would be 0, its factor Infinity/);
      // The same values with an F32 scale are quantized as the rule says.
      expect(() => requantizeSlab({ ...comfy, scaleDtype: 'F32' }, 'comfy', small, 0, 8, Float64Array.from(comfy.scales), undefined, options)).not.toThrow();
    }
  });

  it('random slabs of many shapes: byte for byte', () => {
    const rand = seededRandom(4242);
    for (let t = 0; t < 40; t++) {
      const rows = 1 + Math.floor(rand() * 70), cols = 1 + Math.floor(rand() * 90);
      const bm = 1 + Math.floor(rand() * rows), bn = 1 + Math.floor(rand() * cols);
      const w = weight(rows, cols, bm, bn, (['F32', 'BF16', 'F16'] as const)[t % 3]);
      const band = Math.floor(rand() * Math.ceil(rows / bm));
      const rowStart = band * bm, rowCount = rows - rowStart;
      const rule: Rule = t % 2 ? 'reciprocal' : 'divide';
      const v = values(rowCount, cols, 900 + t);
      const want = reference(w, rule, v, rowStart, rowCount);
      for (const options of ENCODERS.map((e) => e.options)) {
        const scales = Float64Array.from(w.scales);
        const codes = requantizeSlab(w, rule, v, rowStart, rowCount, scales, undefined, { ...options, pieceValues: options.pieceValues && 37 });
        expect(firstDifference(codes, want.codes), `${rows}×${cols} blocks ${bm}×${bn} from row ${rowStart}, ${options.encoder}`).toBe('none');
        expect(firstDifference(scales, want.scales)).toBe('none');
      }
    }
  });
});
