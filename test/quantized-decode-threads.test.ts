/**
 * Quantized base weights decoded on the CPU backend's worker threads (formats/row-decoders.ts): a
 * GPTQ, an AWQ and two compressed-tensors Llama layers, merged with a PEFT LoRA on two threads (slabs read into shared
 * memory, as the command line reads them), on two threads through the pool's scratch (a page's
 * pool, whose slabs are no shared memory) and on one thread with no pool, give the same bytes;
 * those bytes are W + α/r·B·A rounded once to f16, W dequantized here in float64 by the tools'
 * own formulas; and the decoding did go to the workers, each weight's arrays shared once.
 *
 * GPTQ (AutoGPTQ's `checkpoint_format` "gptq", as TheBloke's `gptq-4bit-32g-actorder_True`
 * branches): `<m>.qweight` I32 (in/8, out), `<m>.qzeros` I32 (groups, out/8) storing z − 1,
 * `<m>.scales` F16 (groups, out), `<m>.g_idx` I32 (in) under desc_act; W[o, i] =
 * (q[i, o] − z[g_idx[i], o]) · scale[g_idx[i], o] (AutoGPTQ's dequantization, zeros + 1).
 * AWQ GEMM (AutoAWQ): `<m>.qweight` I32 (in, out/8) and `<m>.qzeros` I32 (groups, out/8) in AWQ's
 * nibble order, `<m>.scales` F16 (groups, out); W[o, i] = (q[i, o] − z[⌊i/g⌋, o]) · scale[⌊i/g⌋, o]
 * (packing_utils.py `dequantize_gemm`). compressed-tensors (forward.py `dequantize`): W[o, i] =
 * (q[o, i] − z[o, g(i)]) · scale[o, g(i)], codes and zero points packed unsigned with an offset of
 * 2^(bits−1) (pack_quantized.py), g(i) = `weight_g_idx[i]` under act-order; int8 codes as stored.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { AWQ_ORDER, compressedTensorsConfig, pack } from './helpers/int-packing.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { threadBackends, peftLoraOn } from './helpers/thread-backends.js';

const rand = seededRandom(20261206);
const L = 'model.layers.0';
const Q = `${L}.self_attn.q_proj`;
const K = `${L}.self_attn.k_proj`;
const V = `${L}.self_attn.v_proj`;
/** Outputs of each module; k_proj no adapter changes (it is decoded and written all the same). */
const ROWS: Record<string, number> = { [Q]: 384, [K]: 128, [V]: 256 };
const COLS = 512;
const R = 16, ALPHA = 32;
/** 128 f32 rows of 512: 65 536 values a slab, enough for the pool, and q_proj in three slabs. */
const SLAB_BYTES = 128 * COLS * 4;

type Files = Record<string, Uint8Array | string>;
interface Case { name: string; files: Files; real: Map<string, Float64Array> }

const randomInt = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const randomScale = () => roundForDType(0.0005 + rand() * 0.02, 'F16');
const llamaConfig = (quantization: object) => JSON.stringify({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: COLS, intermediate_size: 1376, num_attention_heads: 8, torch_dtype: 'float16', quantization_config: quantization,
});

/** An act-order `g_idx`: each input column's group, the columns a random permutation of group-sized runs. */
function actOrderGroups(group: number): number[] {
  const order = Array.from({ length: COLS }, (_, i) => i);
  for (let i = COLS - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order.map((j) => Math.floor(j / group));
}

/** GPTQ 4-bit, group 32, act-order (g_idx a permutation of ⌊i/32⌋), asymmetric, AutoGPTQ's v1 zeros. */
function gptqCase(): Case {
  const group = 32, groups = COLS / group;
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Float64Array>();
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    const gIdx = actOrderGroups(group);
    const q = Array.from({ length: COLS * n }, () => randomInt(0, 15)); // (in, out)
    const z = Array.from({ length: groups * n }, () => randomInt(1, 15)); // v1 stores z − 1: 0…14
    const scale = Array.from({ length: groups * n }, randomScale);
    const w = new Float64Array(n * COLS);
    for (let o = 0; o < n; o++) for (let i = 0; i < COLS; i++) w[o * COLS + i] = (q[i * n + o] - z[gIdx[i] * n + o]) * scale[gIdx[i] * n + o];
    real.set(m, w);
    tensors.push({ name: `${m}.qweight`, dtype: 'I32', ...pack(q, COLS, n, 4, 'rows') });
    tensors.push({ name: `${m}.qzeros`, dtype: 'I32', ...pack(z.map((x) => x - 1), groups, n, 4, 'cols') });
    tensors.push({ name: `${m}.scales`, dtype: 'F16', shape: [groups, n], data: scale });
    tensors.push({ name: `${m}.g_idx`, dtype: 'I32', shape: [COLS], data: gIdx });
  }
  const quantization = {
    bits: 4, checkpoint_format: 'gptq', damp_percent: 0.1, desc_act: true, group_size: group, model_file_base_name: null,
    model_name_or_path: null, quant_method: 'gptq', static_groups: false, sym: false, true_sequential: true,
  };
  return { name: 'GPTQ 4-bit group 32 desc_act', files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(quantization) }, real };
}

/** AWQ GEMM 4-bit, group 64. */
function awqCase(): Case {
  const group = 64, groups = COLS / group;
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Float64Array>();
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    const q = Array.from({ length: COLS * n }, () => randomInt(0, 15)); // (in, out)
    const z = Array.from({ length: groups * n }, () => randomInt(0, 15));
    const scale = Array.from({ length: groups * n }, randomScale);
    const w = new Float64Array(n * COLS);
    for (let o = 0; o < n; o++) for (let i = 0; i < COLS; i++) {
      const g = Math.floor(i / group);
      w[o * COLS + i] = (q[i * n + o] - z[g * n + o]) * scale[g * n + o];
    }
    real.set(m, w);
    tensors.push({ name: `${m}.qweight`, dtype: 'I32', ...pack(q, COLS, n, 4, 'cols', AWQ_ORDER) });
    tensors.push({ name: `${m}.qzeros`, dtype: 'I32', ...pack(z, groups, n, 4, 'cols', AWQ_ORDER) });
    tensors.push({ name: `${m}.scales`, dtype: 'F16', shape: [groups, n], data: scale });
  }
  const quantization = { bits: 4, group_size: group, modules_to_not_convert: null, quant_method: 'awq', version: 'gemm', zero_point: true };
  return { name: 'AWQ GEMM 4-bit group 64', files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(quantization) }, real };
}


/**
 * compressed-tensors `pack-quantized` W4A16, group 128, asymmetric, act-order (RedHatAI's
 * `*-quantized.w4a16` layout): codes and zero points stored as q + 8, eight to a word.
 */
function packedCase(): Case {
  const group = 128, groups = COLS / group;
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Float64Array>();
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    const gIdx = actOrderGroups(group);
    const q = Array.from({ length: n * COLS }, () => randomInt(-8, 7)); // (out, in)
    const z = Array.from({ length: n * groups }, () => randomInt(-8, 7));
    const scale = Array.from({ length: n * groups }, () => roundForDType(0.0005 + rand() * 0.02, 'BF16'));
    const w = new Float64Array(n * COLS);
    for (let o = 0; o < n; o++) for (let i = 0; i < COLS; i++) w[o * COLS + i] = (q[o * COLS + i] - z[o * groups + gIdx[i]]) * scale[o * groups + gIdx[i]];
    real.set(m, w);
    tensors.push({ name: `${m}.weight_packed`, dtype: 'I32', ...pack(q.map((x) => x + 8), n, COLS, 4, 'cols') });
    tensors.push({ name: `${m}.weight_scale`, dtype: 'BF16', shape: [n, groups], data: scale });
    tensors.push({ name: `${m}.weight_shape`, dtype: 'I64', shape: [2], data: [n, COLS] });
    tensors.push({ name: `${m}.weight_zero_point`, dtype: 'I32', ...pack(z.map((x) => x + 8), n, groups, 4, 'rows') });
    tensors.push({ name: `${m}.weight_g_idx`, dtype: 'I32', shape: [COLS], data: gIdx });
  }
  const quantization = compressedTensorsConfig('pack-quantized', { actorder: 'group', group_size: group, num_bits: 4, strategy: 'group', symmetric: false });
  return { name: 'compressed-tensors pack-quantized W4A16 group 128 asymmetric act-order', files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(quantization) }, real };
}

/** compressed-tensors `int-quantized` W8A16, one BF16 scale per output channel, symmetric. */
function int8Case(): Case {
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Float64Array>();
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    const q = Array.from({ length: n * COLS }, () => randomInt(-128, 127));
    const scale = Array.from({ length: n }, () => roundForDType(0.0005 + rand() * 0.02, 'BF16'));
    real.set(m, Float64Array.from(q, (x, i) => x * scale[Math.floor(i / COLS)]));
    tensors.push({ name: `${m}.weight`, dtype: 'I8', shape: [n, COLS], data: q });
    tensors.push({ name: `${m}.weight_scale`, dtype: 'BF16', shape: [n, 1], data: scale });
  }
  const quantization = compressedTensorsConfig('int-quantized', { actorder: null, group_size: null, num_bits: 8, strategy: 'channel', symmetric: true });
  return { name: 'compressed-tensors int-quantized W8A16 channel', files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(quantization) }, real };
}


const threads = threadBackends();

const lora = peftLoraOn({ [Q]: ROWS[Q], [V]: ROWS[V] }, COLS, R, ALPHA, rand);

async function mergeOn(c: Case, backend: CpuBackend): Promise<Uint8Array> {
  const prepared = await prepareMerge(memoryInputFileSet(c.files, 'model'), [{ files: memoryInputFileSet(lora.files, 'adapter') }]);
  const output = createBlobOutputTarget();
  try {
    expect(prepared.plan.problems).toEqual([]);
    await mergeModel({ prepared, output, backend, outDtype: 'f16', slabBytes: SLAB_BYTES });
  } finally {
    await prepared.close();
  }
  const file = output.files().find((f) => f.path === 'model.safetensors')!;
  return new Uint8Array(await file.blob.arrayBuffer());
}

describe('quantized base weights decoded on the worker threads', () => {
  for (const make of [gptqCase, awqCase, packedCase, int8Case]) {
    const c = make();
    it(`${c.name}: two threads (shared slabs, or the pool's scratch) write the bytes of one thread, W + α/r·B·A rounded once`, async () => {
      const { shared: onShared, scratch: onScratch, single } = threads.three();
      const [pieces, sources] = [threads.sharedPool.sent.decodePieces, threads.sharedPool.sent.decodeSources];
      const scratchPieces = threads.scratchPool.sent.decodePieces;
      const threaded = await mergeOn(c, onShared);
      // q_proj in 3 slabs, k_proj in 1, v_proj in 2, each cut into 4 pieces of 32 rows; the
      // calling thread takes some, so at least one a slab went to the worker. GPTQ's and AWQ's
      // codes (stored transposed, every slab reads them whole) went to shared memory once a
      // weight, not once a slab; compressed-tensors' rows, stored by output, once a slab.
      expect(threads.sharedPool.sent.decodePieces - pieces).toBeGreaterThanOrEqual(6);
      expect(threads.sharedPool.sent.decodeSources - sources).toBe(c.name.startsWith('compressed-tensors') ? 6 : 3);
      const throughScratch = await mergeOn(c, onScratch);
      expect(threads.scratchPool.sent.decodePieces - scratchPieces).toBeGreaterThanOrEqual(6);
      const oneThread = await mergeOn(c, single);
      expect(Buffer.from(threaded).equals(Buffer.from(oneThread))).toBe(true);
      expect(Buffer.from(throughScratch).equals(Buffer.from(oneThread))).toBe(true);

      const written = decodeSafetensors(threaded).tensors;
      for (const m of [Q, K, V]) {
        const t = written.get(`${m}.weight`)!;
        expect([t.dtype, t.shape], m).toEqual(['F16', [ROWS[m], COLS]]);
        const w = c.real.get(m)!;
        const d = lora.delta.get(m);
        const wrong = t.values.findIndex((got, i) => got !== roundForDType(w[i] + (d ? d[i] : 0), 'F16'));
        expect(wrong, `${m}: element ${wrong} is ${t.values[wrong]}, expected ${w[wrong] + (d ? d[wrong] : 0)}`).toBe(-1);
      }
    });
  }
});
