/**
 * fp8 re-quantization's two passes over the merged values (each block's largest magnitude, then the
 * codes: formats/fp8-block-codes.ts) run on the CPU pool's worker threads, as do the maxima of a
 * per-tensor scale's first pass over the whole tensor. Two threads (slabs in shared memory, as the
 * command line reads them), two threads through the pool's scratch (a page's pool) and one thread
 * write the same bytes, and those bytes are the source tool's re-quantization of W' computed here in
 * float64 (w = f32(W')):
 * - Comfy-Org's fp8mixed FLUX.2 layout ("flux2_dev_fp8mixed.safetensors": each block's Linear
 *   F8_E4M3 with `<m>.weight_scale` F32 () and `<m>.comfy_quant` U8 `{"format": "float8_e4m3fn"}`),
 *   an ai-toolkit LoRA (PEFT form under `diffusion_model.`, bf16 factors): ComfyUI's ops.py
 *   set_weight with scale "recalculate": s = f32(max |w| / 448), code = e4m3(clamp(f32(w · f32(1 / s)), ±448));
 *   slabs smaller than a layer, so its maximum takes a pass of its own over all its slabs, whose W'
 *   is kept for the codes where the layer's f32 values fit in 64 slabs (each row merged once) and
 *   merged again above that (twice);
 * - a Qwen3-FP8 folder (`weight_scale_inv` F32 per 128 × 128 block, quantization_config fp8 with
 *   weight_block_size [128, 128]) and a PEFT LoRA: transformers' FineGrainedFP8 quantizer per block,
 *   q = f32(448 / amax), code = e4m3(clamp(f32(w · q), ±448)), scale_inv = f32(1 / q).
 * The pool's counters show the pieces went to the workers.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import type { MergeOp } from '../src/engine/merge-op.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { flux2Fp8mixed } from './helpers/comfy-fp8mixed.js';
import { FLUX2, type Flux2Dims } from './helpers/dit-fixtures.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mm } from './helpers/dense-f64.js';
import { comfyRequantize, e4m3Value, fineGrainedFp8 } from './helpers/e4m3-by-hand.js';
import { threadBackends } from './helpers/thread-backends.js';

const rand = seededRandom(20261208);
const R = 16;
const threads = threadBackends();

/** A random e4m3fn code of magnitude at most 224 (0x76): one code of 448 (0x7e) then holds its block's largest magnitude alone. */
const randomCode = () => {
  let b: number;
  do b = Math.floor(rand() * 256); while ((b & 0x7f) > 0x76);
  return b;
};
/** e4m3fn's largest finite value. */
const LARGEST = 0x7e;
const bf16Factors = (n: number) => Array.from({ length: n }, () => roundForDType((rand() - 0.5) * 0.02, 'BF16'));

interface Case {
  files: Record<string, Uint8Array | string>;
  entry: string;
  adapter: Record<string, Uint8Array | string>;
  adapterEntry: string;
  /** W' in float64 of each merged weight. */
  merged: Map<string, { real: Float64Array; rows: number; cols: number }>;
  slabBytes: number;
}

// --- ComfyUI fp8mixed FLUX.2 (a per-tensor weight_scale) -------------------------------------------

const P = 'model.diffusion_model.';
const DIMS: Flux2Dims = { ...FLUX2, h: 256, head: 64 };
const COMFY_MERGED: Record<string, [number, number]> = {
  'single_blocks.0.linear1': [9 * DIMS.h, DIMS.h],
  'double_blocks.1.img_mlp.0': [6 * DIMS.h, DIMS.h],
};

function comfyCase(): Case {
  const { tensors, real } = flux2Fp8mixed(rand, DIMS, P, randomCode, (codes, cols) => {
    // The tensor's largest magnitude in row 255 alone: the last row of the first piece of rows (a
    // worker's) of its first slab, whose maximum the first pass must carry to the last.
    codes[255 * cols + 17] = e4m3Value(LARGEST);
  });
  const lora: FixtureTensor[] = [];
  const merged: Case['merged'] = new Map();
  for (const [m, [out, inF]] of Object.entries(COMFY_MERGED)) {
    const a = bf16Factors(R * inF), b = bf16Factors(out * R);
    const d = mm(b, a, out, R, inF);
    const key = `${P}${m}.weight`;
    merged.set(key, { real: real.get(key)!.map((w, i) => w + d[i]), rows: out, cols: inF });
    lora.push({ name: `diffusion_model.${m}.lora_A.weight`, dtype: 'BF16', shape: [R, inF], data: a });
    lora.push({ name: `diffusion_model.${m}.lora_B.weight`, dtype: 'BF16', shape: [out, R], data: b });
  }
  const file = 'flux2_dev_fp8mixed.safetensors';
  // 256 KiB slabs: linear1 (2304 × 256 codes) goes in three, each of at least 64 Ki values (the pool's least).
  return { files: { [file]: buildSafetensors(tensors) }, entry: file, adapter: { 'style.safetensors': buildSafetensors(lora) }, adapterEntry: 'style.safetensors', merged, slabBytes: 256 * 1024 };
}

// --- Qwen3-FP8 (weight_scale_inv per 128 × 128 block) ----------------------------------------------

const QWEN_MERGED: Record<string, [number, number]> = {
  'model.layers.0.mlp.gate_proj': [1024, 512],
  'model.layers.0.mlp.down_proj': [512, 1024],
};

function blockCase(weights: Record<string, [number, number]> = QWEN_MERGED): Case {
  const tensors: FixtureTensor[] = [];
  const lora: FixtureTensor[] = [];
  const merged: Case['merged'] = new Map();
  for (const [m, [rows, cols]] of Object.entries(weights)) {
    const codes = Array.from({ length: rows * cols }, (_, i) => (i % 89 === 0 ? 0 : e4m3Value(randomCode())));
    // Each block's largest magnitude alone in its last row, the last row of a piece of the rows.
    for (let band = 0; band < rows / 128; band++) for (let cb = 0; cb < cols / 128; cb++) codes[(band * 128 + 127) * cols + cb * 128 + 5] = e4m3Value(LARGEST | (cb % 2 ? 0x80 : 0));
    const grid = [rows / 128, cols / 128];
    const scales = Array.from({ length: grid[0] * grid[1] }, () => Math.fround(0.0004 + rand() * 0.0002));
    tensors.push({ name: `${m}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], data: codes });
    tensors.push({ name: `${m}.weight_scale_inv`, dtype: 'F32', shape: grid, data: scales });
    const a = bf16Factors(R * cols), b = bf16Factors(rows * R);
    const d = mm(b, a, rows, R, cols);
    const real = Float64Array.from(codes, (c, i) => c * scales[Math.floor(Math.floor(i / cols) / 128) * grid[1] + Math.floor((i % cols) / 128)] + d[i]);
    merged.set(`${m}.weight`, { real, rows, cols });
    lora.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'BF16', shape: [R, cols], data: a });
    lora.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'BF16', shape: [rows, R], data: b });
  }
  const config = {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: Object.values(weights)[0][1], intermediate_size: Object.values(weights)[0][0], num_hidden_layers: 1, torch_dtype: 'bfloat16',
    quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', weight_block_size: [128, 128] },
  };
  const adapterConfig = { peft_type: 'LORA', r: R, lora_alpha: R, target_modules: Object.keys(weights).map((m) => m.split('.').pop()!), base_model_name_or_path: 'Qwen/Qwen3-8B-FP8' };
  return {
    files: { 'config.json': JSON.stringify(config), 'model.safetensors': buildSafetensors(tensors) }, entry: 'model',
    adapter: { 'adapter_config.json': JSON.stringify(adapterConfig), 'adapter_model.safetensors': buildSafetensors(lora) }, adapterEntry: 'adapter',
    // Slabs of two block rows (256 × 1024 codes at most): the codes pass runs per slab, on the pool.
    merged, slabBytes: 256 * 1024,
  };
}

async function mergeOn(c: Case, backend: CpuBackend): Promise<Uint8Array> {
  const prepared = await prepareMerge(memoryInputFileSet(c.files, c.entry), [{ files: memoryInputFileSet(c.adapter, c.adapterEntry) }]);
  const output = createBlobOutputTarget();
  try {
    expect(prepared.plan.problems).toEqual([]);
    await mergeModel({ prepared, output, backend, slabBytes: c.slabBytes });
  } finally {
    await prepared.close();
  }
  const weights = output.files().find((f) => f.path.endsWith('.safetensors'))!;
  return new Uint8Array(await weights.blob.arrayBuffer());
}

/** The bytes of two threads (shared slabs, the pool's scratch) and of one; the pieces each pool sent its workers. */
async function onEveryThreadCount(c: Case) {
  const { shared, scratch, single } = threads.three();
  const before = { shared: { ...threads.sharedPool.sent }, scratch: { ...threads.scratchPool.sent } };
  const onShared = await mergeOn(c, shared);
  const onScratch = await mergeOn(c, scratch);
  const oneThread = await mergeOn(c, single);
  const sent = (after: typeof threads.sharedPool.sent, was: typeof after) => ({
    maxima: after.fp8MaximaPieces - was.fp8MaximaPieces, codes: after.fp8CodePieces - was.fp8CodePieces,
  });
  return { onShared, onScratch, oneThread, sent: { shared: sent(threads.sharedPool.sent, before.shared), scratch: sent(threads.scratchPool.sent, before.scratch) } };
}

/**
 * The tensors two threads wrote, once both passes (the maxima, each slab's codes) went to the
 * workers of either pool and every thread count wrote the same bytes.
 */
async function writtenOnWorkers(c: Case) {
  const { onShared, onScratch, oneThread, sent } = await onEveryThreadCount(c);
  for (const pool of [sent.shared, sent.scratch]) {
    expect(pool.maxima).toBeGreaterThan(0);
    expect(pool.codes).toBeGreaterThan(0);
  }
  expect(Buffer.from(onShared).equals(Buffer.from(oneThread))).toBe(true);
  expect(Buffer.from(onScratch).equals(Buffer.from(oneThread))).toBe(true);
  return decodeSafetensors(onShared).tensors;
}

describe('fp8 re-quantization on the worker threads', () => {
  it('ComfyUI fp8mixed (per-tensor weight_scale, layers in several slabs): two threads write the bytes of one thread, ComfyUI\'s re-quantization of W\'', async () => {
    const c = comfyCase();
    const written = await writtenOnWorkers(c);
    for (const [key, { real }] of c.merged) {
      const expected = comfyRequantize(real);
      expect(written.get(key.replace(/\.weight$/, '.weight_scale'))!.values[0], key).toBe(expected.scale);
      const codes = written.get(key)!;
      expect(codes.dtype).toBe('F8_E4M3');
      const wrong = codes.values.findIndex((got, i) => got !== expected.codes[i]);
      expect(wrong, `${key}: code ${wrong} is ${codes.values[wrong]}, expected ${expected.codes[wrong]}`).toBe(-1);
    }
  });

  it('block fp8 (weight_scale_inv 128 × 128): two threads write the bytes of one thread, transformers\' FineGrainedFP8 quantization of W\'', async () => {
    const c = blockCase();
    const written = await writtenOnWorkers(c);
    for (const [key, { real, rows, cols }] of c.merged) {
      const expected = fineGrainedFp8(real, rows, cols);
      expect(Array.from(written.get(key.replace(/\.weight$/, '.weight_scale_inv'))!.values), key).toEqual(expected.scaleInv);
      const codes = written.get(key)!;
      const wrong = codes.values.findIndex((got, i) => got !== expected.codes[i]);
      expect(wrong, `${key}: code ${wrong} is ${codes.values[wrong]}, expected ${expected.codes[wrong]}`).toBe(-1);
    }
  });

  it.for([
    // 256 KiB slabs: both layers' W' (2.4 and 1.6 MB of f32) fit in 64 slabs and are held between the passes.
    { slabBytes: 256 * 1024, twice: [] as string[] },
    // 32 KiB slabs (2 MiB for 64): linear1's W' (2304 × 256 f32) does not, and is merged again for its codes; img_mlp.0's does.
    { slabBytes: 32 * 1024, twice: [`${P}single_blocks.0.linear1.weight`] },
  ])('ComfyUI fp8mixed in slabs of $slabBytes bytes: each row of a layer merged once where its W\' is held (twice where it is too large), on one thread and two; ComfyUI\'s re-quantization of W\'', async ({ slabBytes, twice }) => {
    const c = { ...comfyCase(), slabBytes };
    const { shared, single } = threads.three();
    const outputs: Uint8Array[] = [];
    for (const backend of [shared, single]) {
      const rows = new Map<string, number>();
      // The backend seen with every merge's rows counted by tensor.
      const counted = Object.create(backend, {
        merge: { value: (op: MergeOp, signal?: AbortSignal) => (rows.set(op.name, (rows.get(op.name) ?? 0) + (op.rowCount ?? op.rows)), backend.merge(op, signal)) },
      }) as CpuBackend;
      outputs.push(await mergeOn(c, counted));
      for (const [key, { rows: n }] of c.merged) expect(rows.get(key), key).toBe(twice.includes(key) ? 2 * n : n);
    }
    expect(Buffer.from(outputs[0]).equals(Buffer.from(outputs[1]))).toBe(true);
    const written = decodeSafetensors(outputs[0]).tensors;
    for (const [key, { real }] of c.merged) {
      const expected = comfyRequantize(real);
      expect(written.get(key.replace(/\.weight$/, '.weight_scale'))!.values[0], key).toBe(expected.scale);
      const wrong = written.get(key)!.values.findIndex((got, i) => got !== expected.codes[i]);
      expect(wrong, `${key}: code ${wrong} is ${written.get(key)!.values[wrong]}, expected ${expected.codes[wrong]}`).toBe(-1);
    }
  });

  it('block fp8 on two threads with shared slabs: each slab\'s joined rows and its codes are shared memory the workers use in place, copied through no scratch', async () => {
    const c = blockCase({ 'model.layers.0.mlp.gate_proj': [1024, 512], 'model.layers.0.mlp.down_proj': [512, 1024] });
    const { shared, scratch, single } = threads.three();
    const copies = (pool: typeof threads.sharedPool) => pool.sent.fp8Copies;
    const [sharedBefore, scratchBefore] = [copies(threads.sharedPool), copies(threads.scratchPool)];
    const onShared = await mergeOn(c, shared);
    const onScratch = await mergeOn(c, scratch);
    expect(copies(threads.sharedPool) - sharedBefore).toBe(0);
    // A page's pool (no shared slabs) copies them, each pass: the count sees copies where there are some.
    expect(copies(threads.scratchPool) - scratchBefore).toBeGreaterThan(0);
    const oneThread = await mergeOn(c, single);
    expect(Buffer.from(onShared).equals(Buffer.from(oneThread))).toBe(true);
    expect(Buffer.from(onScratch).equals(Buffer.from(oneThread))).toBe(true);
    const written = decodeSafetensors(onShared).tensors;
    for (const [key, { real, rows, cols }] of c.merged) {
      const expected = fineGrainedFp8(real, rows, cols);
      expect(Array.from(written.get(key.replace(/\.weight$/, '.weight_scale_inv'))!.values), key).toEqual(expected.scaleInv);
      const wrong = written.get(key)!.values.findIndex((got, i) => got !== expected.codes[i]);
      expect(wrong, `${key}: code ${wrong} is ${written.get(key)!.values[wrong]}, expected ${expected.codes[wrong]}`).toBe(-1);
    }
  });

  it('block fp8 on two threads: a slab\'s per-block-row outputs are given back as they are joined, so shared memory is allocated a few times, not per slab', async () => {
    // A gate_proj of 4096 × 512 in slabs of 1024 rows: 4 slabs of 8 block rows, one op each (on the pool's threads).
    const c = { ...blockCase({ 'model.layers.0.mlp.gate_proj': [4096, 512] }), slabBytes: 512 * 1024 };
    const pool = threads.sharedPool;
    let allocations = 0;
    // The pool seen with its shared memory counted (the backend's outputs and the pipeline's slabs come from it).
    const counted = Object.create(pool, { slabMemory: { value: (bytes: number) => (allocations++, pool.slabMemory!(bytes)) } }) as typeof pool;
    const onShared = await mergeOn(c, new CpuBackend('test', { pool: counted }));
    // Holding a slab's eight outputs until they were joined allocated 28 buffers here (6 giving each back as it is joined).
    expect(allocations).toBeLessThanOrEqual(10);
    const { single } = threads.three();
    expect(Buffer.from(onShared).equals(Buffer.from(await mergeOn(c, single)))).toBe(true);
  });
});
