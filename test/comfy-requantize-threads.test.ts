/**
 * ComfyUI's re-quantization of merged `int8_tensorwise` and `nvfp4` comfy_quant layers runs on the
 * CPU pool's worker threads (formats/comfy-requantize.ts), as the fp8 passes do: two threads (slabs
 * in shared memory, as the command line reads them), two threads through the pool's scratch (a
 * page's pool) and one thread write the same bytes, and those bytes are ComfyUI's quantizers of W'
 * computed here in float64 (w = f32(W')):
 * - int8_tensorwise (comfy_kitchen's quantize_int8_tensorwise / _rowwise): `<m>.weight` I8 with
 *   `<m>.weight_scale` F32 () per tensor or (rows, 1) per row; s = max(f32(amax / 127), f32(1e-30)),
 *   code = clamp(round(f32(w / s)), −128, 127);
 * - nvfp4 (comfy_kitchen's quantize_nvfp4): `<m>.weight` U8 (rows, cols/2), element 2k high,
 *   `<m>.weight_scale` F8_E4M3 per 16 inputs, swizzled, `<m>.weight_scale_2` F32 ().
 * A Comfy-Org-style FLUX.2 file (`model.diffusion_model.` keys, `<m>.comfy_quant` U8 JSON) and an
 * ai-toolkit LoRA (PEFT form under `diffusion_model.`, bf16 factors, scale 1).
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { FLUX2, flux2BflTensors, type Flux2Dims } from './helpers/dit-fixtures.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mm } from './helpers/dense-f64.js';
import { blockedOrder, comfyInt8Requantize, comfyNvfp4Requantize, comfyNvfp4Value } from './helpers/e4m3-by-hand.js';
import { threadBackends } from './helpers/thread-backends.js';

const rand = seededRandom(20261207);
const R = 16;
const threads = threadBackends();
const P = 'model.diffusion_model.';
const DIMS: Flux2Dims = { ...FLUX2, h: 256, head: 64 };
const json = (s: string) => Array.from(new TextEncoder().encode(s));
const bf16Factors = (n: number) => Array.from({ length: n }, () => roundForDType((rand() - 0.5) * 0.02, 'BF16'));

/** The merged layers: their format, and for int8 whether the scale is per row. */
const LAYERS: Record<string, { format: 'int8' | 'nvfp4'; perRow?: boolean }> = {
  'single_blocks.0.linear1': { format: 'int8' },
  'double_blocks.1.img_mlp.0': { format: 'int8', perRow: true },
  'double_blocks.0.img_mlp.0': { format: 'nvfp4' },
};

interface Layer { real: Float64Array; rows: number; cols: number; format: 'int8' | 'nvfp4'; perRow: boolean }

/** The base, the LoRA and each merged layer's W' in float64. */
function comfyCase(): { base: Uint8Array; lora: Uint8Array; layers: Map<string, Layer> } {
  const tensors: FixtureTensor[] = [];
  const lora: FixtureTensor[] = [];
  const layers = new Map<string, Layer>();
  for (const t of flux2BflTensors(rand, 'BF16', DIMS, P)) {
    const m = t.name.slice(P.length, -'.weight'.length);
    const spec = LAYERS[m];
    if (!spec) {
      tensors.push(t);
      continue;
    }
    const [rows, cols] = t.shape;
    const key = `${P}${m}`;
    let real: Float64Array;
    if (spec.format === 'int8') {
      const codes = Array.from({ length: rows * cols }, (_, i) => (i % 61 === 0 ? 0 : Math.floor(rand() * 255) - 127));
      const scales = Array.from({ length: spec.perRow ? rows : 1 }, () => Math.fround(0.0002 + rand() * 0.0006));
      real = Float64Array.from(codes, (q, i) => q * scales[spec.perRow ? Math.floor(i / cols) : 0]);
      tensors.push({ name: t.name, dtype: 'I8', shape: [rows, cols], data: codes });
      tensors.push({ name: `${key}.weight_scale`, dtype: 'F32', shape: spec.perRow ? [rows, 1] : [], data: scales });
      tensors.push({ name: `${key}.comfy_quant`, dtype: 'U8', shape: [json('{"format": "int8_tensorwise"}').length], data: json('{"format": "int8_tensorwise"}') });
    } else {
      const blocks = cols / 16;
      const codes = Array.from({ length: rows * cols }, () => Math.floor(rand() * 16));
      const scaleBytes = Array.from({ length: rows * blocks }, () => 0x28 + Math.floor(rand() * 0x30));
      const s2 = Math.fround(0.0005 + rand() * 0.0002);
      real = Float64Array.from(codes, (c, i) => comfyNvfp4Value(c, scaleBytes[Math.floor(i / 16)], s2));
      tensors.push({ name: t.name, dtype: 'U8', shape: [rows, cols / 2], data: Array.from({ length: rows * cols / 2 }, (_, k) => (codes[2 * k] << 4) | codes[2 * k + 1]) });
      const { order, shape } = blockedOrder(rows, blocks);
      tensors.push({ name: `${key}.weight_scale`, dtype: 'F8_E4M3', shape, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : scaleBytes[at])) });
      tensors.push({ name: `${key}.weight_scale_2`, dtype: 'F32', shape: [], data: [s2] });
      tensors.push({ name: `${key}.comfy_quant`, dtype: 'U8', shape: [json('{"format": "nvfp4"}').length], data: json('{"format": "nvfp4"}') });
    }
    const a = bf16Factors(R * cols), b = bf16Factors(rows * R);
    const d = mm(b, a, rows, R, cols);
    layers.set(t.name, { real: real.map((w, i) => w + d[i]), rows, cols, format: spec.format, perRow: !!spec.perRow });
    lora.push({ name: `diffusion_model.${m}.lora_A.weight`, dtype: 'BF16', shape: [R, cols], data: a });
    lora.push({ name: `diffusion_model.${m}.lora_B.weight`, dtype: 'BF16', shape: [rows, R], data: b });
  }
  return { base: buildSafetensors(tensors), lora: buildSafetensors(lora), layers };
}

async function mergeOn(c: ReturnType<typeof comfyCase>, backend: CpuBackend): Promise<Uint8Array> {
  const file = 'flux2_dev_mixed.safetensors';
  const prepared = await prepareMerge(memoryInputFileSet({ [file]: c.base }, file), [{ files: memoryInputFileSet({ 'style.safetensors': c.lora }, 'style.safetensors') }]);
  const output = createBlobOutputTarget();
  try {
    expect(prepared.plan.problems).toEqual([]);
    // 512 KiB slabs: each layer in one or more, each of at least 64 Ki values (the pool's least).
    await mergeModel({ prepared, output, backend, slabBytes: 512 * 1024 });
  } finally {
    await prepared.close();
  }
  return new Uint8Array(await output.files()[0].blob.arrayBuffer());
}

describe('ComfyUI int8 and nvfp4 re-quantization on the worker threads', () => {
  it('two threads (shared slabs, the pool\'s scratch) write the bytes of one thread, ComfyUI\'s re-quantization of W\'', async () => {
    const c = comfyCase();
    const { shared, scratch, single } = threads.three();
    const sent = () => [threads.sharedPool.sent.comfyCodePieces, threads.scratchPool.sent.comfyCodePieces];
    const before = sent();
    const onShared = await mergeOn(c, shared);
    const onScratch = await mergeOn(c, scratch);
    const after = sent();
    expect(after[0]).toBeGreaterThan(before[0]);
    expect(after[1]).toBeGreaterThan(before[1]);
    const oneThread = await mergeOn(c, single);
    expect(Buffer.from(onShared).equals(Buffer.from(oneThread))).toBe(true);
    expect(Buffer.from(onScratch).equals(Buffer.from(oneThread))).toBe(true);
    const written = decodeSafetensors(onShared).tensors;
    for (const [key, { real, rows, cols, format, perRow }] of c.layers) {
      const m = key.slice(0, -'.weight'.length);
      if (format === 'int8') {
        const want = comfyInt8Requantize(real, rows, perRow);
        expect(Array.from(written.get(`${m}.weight_scale`)!.values), key).toEqual(want.scales);
        const got = written.get(key)!;
        expect(got.dtype).toBe('I8');
        const wrong = got.values.findIndex((q, i) => q !== want.codes[i]);
        expect(wrong, `${key}: code ${wrong} is ${got.values[wrong]}, expected ${want.codes[wrong]}`).toBe(-1);
      } else {
        const want = comfyNvfp4Requantize(real, rows, cols);
        expect(written.get(`${m}.weight_scale_2`)!.values[0], key).toBe(want.s2);
        expect(Buffer.from(written.get(`${m}.weight_scale`)!.bytes).equals(Buffer.from(want.scales)), `${key} block scales`).toBe(true);
        const got = written.get(key)!.bytes;
        const wrong = got.findIndex((b, i) => b !== want.packed[i]);
        expect(wrong, `${key}: byte ${wrong} is ${got[wrong]}, expected ${want.packed[wrong]}`).toBe(-1);
      }
    }
  });
});
