/**
 * fp8 (safetensors F8_E4M3 = torch float8_e4m3fn, F8_E5M2) as base and output dtypes: every one of
 * the 256 codes decoded exactly, and encoding rounded to nearest even with saturation, checked on
 * exact ties, just off them and beyond the largest finite value, on every executor: the TypeScript
 * codecs, the JavaScript executor (rounding from f64), the WASM kernel and the WebGPU kernel in
 * both of its conversion variants. The reference is the fixtures' plain arithmetic rounding.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToF32, encodeFromF32, type F8DType } from '../src/dtype.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { f64ToF8Bits } from '../src/engine/cpu/round-f64.js';
import { requestAdapter, requestMergeDevice } from '../src/engine/gpu/gpu-device.js';
import { getNodeGpu, type NodeGpu } from '../src/engine/gpu/node-gpu.js';
import { WebGpuBackend } from '../src/engine/gpu/webgpu-backend.js';
import type { MergeBackend, MergeOp } from '../src/engine/merge-op.js';
import { decodeValues, f8BitsSaturating, roundF8Saturating } from './helpers/fixtures.js';
import { compareWithReference, randomOp, type OpSpec } from './helpers/reference-math.js';

const FORMATS: F8DType[] = ['F8_E4M3', 'F8_E5M2'];
const ALL_CODES = Uint8Array.from({ length: 256 }, (_, i) => i);
const isNanCode = (b: number, dtype: F8DType) => (dtype === 'F8_E4M3' ? (b & 0x7f) === 0x7f : (b & 0x7f) > 0x7c);
const MAX: Record<F8DType, number> = { F8_E4M3: 448, F8_E5M2: 57344 };

/** Values that stress encoding: every code, every midpoint between neighbours (ties), values just
 *  off each tie (as f32), and values beyond the largest finite one. All exactly f32. */
function hardValues(dtype: F8DType): number[] {
  const codes = decodeValues(ALL_CODES, dtype);
  const finite = [...new Set([...codes].filter((v) => Number.isFinite(v) && v >= 0))].sort((a, b) => a - b);
  const out: number[] = [];
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const nudge = (x: number, d: number) => { f32[0] = x; u32[0] += d; return f32[0]; };
  for (let i = 0; i < finite.length; i++) {
    out.push(finite[i]);
    if (i + 1 < finite.length) {
      const mid = (finite[i] + finite[i + 1]) / 2;
      out.push(mid, nudge(mid, 1), mid > 0 ? nudge(mid, -1) : mid);
    }
  }
  const max = MAX[dtype];
  out.push(max * 1.03, max * 1.0625, max * 1.0625 + max / 256, max * 1.5, max * 2, 1e6, 3e38, 1e-30, 2 ** -20);
  return [...out, ...out.map((v) => -v), -0];
}

describe('fp8 codecs (TypeScript)', () => {
  for (const dtype of FORMATS) {
    it(`${dtype}: all 256 codes decode exactly`, () => {
      const got = decodeToF32(ALL_CODES, dtype);
      const want = decodeValues(ALL_CODES, dtype);
      for (let b = 0; b < 256; b++) {
        if (Number.isNaN(want[b])) expect(Number.isNaN(got[b]), `code ${b.toString(16)}`).toBe(true);
        else expect(Object.is(got[b], want[b]) || got[b] === want[b], `code ${b.toString(16)}: ${got[b]} vs ${want[b]}`).toBe(true);
      }
      // Every non-NaN code survives a decode–encode round trip.
      const back = encodeFromF32(got, dtype);
      for (let b = 0; b < 256; b++) if (!isNanCode(b, dtype)) expect(back[b], `code ${b.toString(16)}`).toBe(b);
    });

    it(`${dtype}: f32 → fp8 rounds ties to even and saturates at ±${MAX[dtype]}`, () => {
      const values = Float32Array.from(hardValues(dtype));
      const got = encodeFromF32(values, dtype);
      for (let i = 0; i < values.length; i++) {
        expect(got[i], `${values[i]}`).toBe(f8BitsSaturating(values[i], dtype));
      }
      expect(roundF8Saturating(MAX[dtype] * 10, dtype)).toBe(MAX[dtype]);
    });

    it(`${dtype}: f64 → fp8 rounds once (values f32 cannot hold, just off ties)`, () => {
      for (const v of hardValues(dtype)) {
        for (const x of [v, v * (1 + 2 ** -30), v * (1 - 2 ** -30), v + 2 ** -60]) {
          expect(f64ToF8Bits(x, dtype), `${x}`).toBe(f8BitsSaturating(x, dtype));
        }
      }
      expect(f64ToF8Bits(NaN, dtype) & 0x7f).toBe(dtype === 'F8_E4M3' ? 0x7f : 0x7e);
      expect(f64ToF8Bits(-Infinity, dtype)).toBe(dtype === 'F8_E4M3' ? 0xff : 0xfc);
      // Finite values past float32 saturate as any value past the format's largest does.
      const largest = dtype === 'F8_E4M3' ? 0x7e : 0x7b;
      for (const x of [3.4028235677973366e38, 1.667e39, 1e300, Number.MAX_VALUE]) {
        expect(f64ToF8Bits(x, dtype), `${x}`).toBe(largest);
        expect(f64ToF8Bits(-x, dtype), `${-x}`).toBe(largest | 0x80);
      }
    });
  }
});

// --- the executors --------------------------------------------------------------------------------

let nodeGpu: NodeGpu | undefined;
const executors: Record<string, MergeBackend | undefined> = {};
beforeAll(async () => {
  executors.js = new CpuBackend('test', { executor: 'js' });
  executors.wasm = new CpuBackend('test');
  nodeGpu = await getNodeGpu();
  try {
    const device = async () => requestMergeDevice(await requestAdapter(nodeGpu!.gpu));
    executors['webgpu (shifts)'] = new WebGpuBackend(await device(), { shiftFree: false });
    // Shift-free runs (and is exact) on SwiftShader only; it is refused on other adapters.
    const d = await device();
    if (/swiftshader/i.test(d.description)) executors['webgpu (shift-free)'] = new WebGpuBackend(d, { shiftFree: true });
  } catch (e) {
    if ((e as { code?: string }).code !== 'GPU_UNAVAILABLE') throw e;
  }
});
afterAll(() => {
  for (const b of Object.values(executors)) b?.dispose();
  nodeGpu?.dispose();
});

/** W (f32 or fp8 values) through an executor with no terms: a pure conversion. */
async function convert(backend: MergeBackend, base: Uint8Array, inDtype: 'F32' | F8DType, outDtype: 'F32' | F8DType, cols: number): Promise<Uint8Array> {
  const width = inDtype === 'F32' ? 4 : 1;
  const op: MergeOp = { name: 'convert', rows: base.byteLength / width / cols, cols, layout: 'out-in', base: { dtype: inDtype, data: base }, terms: [], outDtype };
  return backend.merge(op);
}

for (const kind of ['js', 'wasm', 'webgpu (shifts)', 'webgpu (shift-free)']) {
  describe(`fp8 on ${kind}`, () => {
    for (const dtype of FORMATS) {
      it(`${dtype} → f32: every finite code exactly`, async (ctx) => {
        const backend = executors[kind];
        if (!backend) return ctx.skip('not on this machine (no WebGPU adapter, or shift-free on a GPU other than SwiftShader)');
        const codes = ALL_CODES.filter((b) => !isNanCode(b, dtype) && !(dtype === 'F8_E5M2' && (b & 0x7f) === 0x7c));
        const padded = new Uint8Array(Math.ceil(codes.length / 16) * 16); // zero codes fill the last row
        padded.set(codes);
        const out = new Float32Array((await convert(backend, padded, dtype, 'F32', 16)).slice().buffer);
        const want = decodeValues(padded, dtype);
        for (let i = 0; i < padded.length; i++) expect(out[i] === want[i] + 0, `code ${padded[i].toString(16)}: ${out[i]} vs ${want[i]}`).toBe(true);
      });

      it(`f32 → ${dtype}: ties to even, just off ties, saturation`, async (ctx) => {
        const backend = executors[kind];
        if (!backend) return ctx.skip('not on this machine (no WebGPU adapter, or shift-free on a GPU other than SwiftShader)');
        const values = hardValues(dtype).filter((v) => !Object.is(v, -0));
        const cols = 24; // not a multiple of 16: exercises the padded tail
        const padded = new Float32Array(Math.ceil(values.length / cols) * cols);
        padded.set(values);
        const out = await convert(backend, new Uint8Array(padded.buffer), 'F32', dtype, cols);
        for (let i = 0; i < values.length; i++) expect(out[i], `${values[i]}`).toBe(f8BitsSaturating(values[i], dtype));
      });

      const merges: [string, OpSpec][] = [
        [`${dtype} base, low-rank update, out ${dtype}`, { rows: 37, cols: 45, baseDtype: dtype, ranks: [4, 1], weights: [1, -0.6] }],
        [`bf16 → ${dtype} with row slabs`, { rows: 40, cols: 33, baseDtype: 'BF16', outDtype: dtype, ranks: [8], rowStart: 5, rowCount: 30 }],
        [`${dtype} → bf16, r = 32`, { rows: 64, cols: 50, baseDtype: dtype, outDtype: 'BF16', factorDtype: 'F16', ranks: [32] }],
      ];
      merges.forEach(([name, spec], i) => {
        it(`merges: ${name}`, async (ctx) => {
          const backend = executors[kind];
          if (!backend) return ctx.skip('not on this machine (no WebGPU adapter, or shift-free on a GPU other than SwiftShader)');
          const op = randomOp(40 + i, spec);
          const c = compareWithReference(op, await backend.merge(op));
          expect(c.maxUlp, c.firstMismatch).toBeLessThanOrEqual(1);
          expect(c.count - c.exact, c.firstMismatch).toBeLessThanOrEqual(Math.max(1, Math.floor(c.count * 0.01)));
        });
      });

      it(`a merge that overshoots ${dtype}'s range saturates instead of failing`, async (ctx) => {
        const backend = executors[kind];
        if (!backend) return ctx.skip('not on this machine (no WebGPU adapter, or shift-free on a GPU other than SwiftShader)');
        const op = randomOp(7, { rows: 8, cols: 16, baseDtype: dtype, ranks: [1] });
        op.base = { dtype, data: encodeFromF32(new Float32Array(128).fill(MAX[dtype]), dtype) };
        op.terms[0] = { ...op.terms[0], scale: MAX[dtype] * 4 };
        const c = compareWithReference(op, await backend.merge(op));
        expect(c.exact, c.firstMismatch).toBe(c.count);
      });
    }
  });
}
