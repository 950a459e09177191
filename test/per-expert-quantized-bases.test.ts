/**
 * A LoRA on a fused expert parameter (PEFT target_parameters, `mlp.experts.gate_up_proj`) merged
 * into a quantized checkpoint that stores one tensor per expert (the per-expert-tensors layout):
 * Qwen3-30B-A3B-FP8's block-wise fp8 experts (`experts.e.gate_proj.weight` F8_E4M3 with
 * `weight_scale_inv` F32 per 128 × 128 block) and a bitsandbytes NF4 Qwen3-MoE (`experts.e.gate_proj.weight`
 * packed U8 with `absmax`, `quant_map` and `quant_state.bitsandbytes__nf4`; LLM.int8's I8 with `SCB`). Expert e's ΔW rows go
 * to its real values (code × scale, or bitsandbytes' dequantized values), never to the codes:
 * float64 truth, and for fp8 kept as fp8 each block requantized by transformers' FineGrainedFP8 rule.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { expectValues } from './helpers/merge-truth.js';
import { NF4 } from './helpers/bnb-tables.js';

const rand = seededRandom(6061);
let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu.dispose());

/** Qwen3-30B-A3B shrunk: 128 experts of 768 × 2048 → 2 of 130 × 136 (two 128-blocks each way, the last ones partial). */
const E = 2, I = 130, HID = 136, R = 2, ALPHA = 4;
const EXPERTS = 'model.layers.0.mlp.experts';
const PARTS = [['gate_proj', I, HID], ['up_proj', I, HID], ['down_proj', HID, I]] as const;

/** PEFT 0.19's ParamWrapper factors on gate_up_proj (E, 2·I, HID): lora_A (R·E, HID), lora_B (2·I, R·E). */
function gateUpAdapter() {
  const a: FixtureTensor = { name: `base_model.model.${EXPERTS}.lora_A.weight`, dtype: 'F32', shape: [R * E, HID], data: Array.from(randomValues(R * E * HID, rand, 0.3), Math.fround) };
  const b: FixtureTensor = { name: `base_model.model.${EXPERTS}.lora_B.weight`, dtype: 'F32', shape: [2 * I, R * E], data: Array.from(randomValues(2 * I * R * E, rand, 0.3), Math.fround) };
  const files = {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: R, lora_alpha: ALPHA, target_modules: [], target_parameters: ['mlp.experts.gate_up_proj'], peft_version: '0.19.1', base_model_name_or_path: 'Qwen/Qwen3-30B-A3B' }),
    'adapter_model.safetensors': buildSafetensors([a, b]),
  };
  const f = decodeSafetensors(files['adapter_model.safetensors']).tensors;
  return { files, a: f.get(a.name)!, b: f.get(b.name)! };
}

/** Expert e's ΔW = B_e·A_e (2·I × HID), B_e's column k being lora_B's column k·E + e, A_e lora_A's rows [e·R, (e+1)·R). */
function expertDelta(A: DecodedTensor, B: DecodedTensor, e: number): Float64Array {
  const out = new Float64Array(2 * I * HID);
  for (let o = 0; o < 2 * I; o++) {
    for (let i = 0; i < HID; i++) {
      let sum = 0;
      for (let k = 0; k < R; k++) sum += B.values[o * R * E + k * E + e] * A.values[(e * R + k) * HID + i];
      out[o * HID + i] = sum;
    }
  }
  return out;
}

/** The real weight plus α/r · its rows of ΔW (gate: rows [0, I), up: [I, 2·I)), as doubles. */
function truthOf(real: ArrayLike<number>, delta: Float64Array, part: 'gate_proj' | 'up_proj'): Float64Array {
  const from = part === 'gate_proj' ? 0 : I;
  return Float64Array.from(real, (w, x) => w + (ALPHA / R) * delta[from * HID + x]);
}

async function mergeFiles(base: Record<string, string | Uint8Array>, adapter: Record<string, string | Uint8Array>, outDtype?: string) {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter') }], { dtype: outDtype });
  expect(prepared.plan.problems).toEqual([]);
  expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual(
    Array.from({ length: E }, (_, e) => [`${EXPERTS}.${e}.gate_proj.weight`, `${EXPERTS}.${e}.up_proj.weight`]).flat().map((k) => [k, 'per-expert-tensors']).sort(),
  );
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend: cpu, outDtype });
  } finally {
    await prepared.close();
  }
  const file = output.files().find((f) => f.path.endsWith('.safetensors'))!;
  return decodeSafetensors(new Uint8Array(await file.blob.arrayBuffer())).tensors;
}

describe('block-wise fp8 experts (Qwen3-30B-A3B-FP8)', () => {
  const tensors: FixtureTensor[] = [];
  for (let e = 0; e < E; e++) {
    for (const [part, out, inn] of PARTS) {
      tensors.push({ name: `${EXPERTS}.${e}.${part}.weight`, dtype: 'F8_E4M3', shape: [out, inn], data: Array.from(randomValues(out * inn, rand), (x) => roundForDType(x * 440, 'F8_E4M3')) });
      const grid = [Math.ceil(out / 128), Math.ceil(inn / 128)];
      tensors.push({ name: `${EXPERTS}.${e}.${part}.weight_scale_inv`, dtype: 'F32', shape: grid, data: Array.from({ length: grid[0] * grid[1] }, () => Math.fround(0.0005 + rand() * 0.0001)) });
    }
  }
  const config = {
    architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: HID, moe_intermediate_size: I, num_experts: E, torch_dtype: 'bfloat16',
    quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', weight_block_size: [128, 128] },
  };
  const base = { 'model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify(config) };
  const original = decodeSafetensors(base['model.safetensors']).tensors;
  const adapter = gateUpAdapter();

  /** code × its block's scale_inv, as doubles. */
  function real(key: string): Float64Array {
    const w = original.get(`${key}.weight`)!, s = original.get(`${key}.weight_scale_inv`)!;
    const cols = w.shape[1], nCB = Math.ceil(cols / 128);
    return w.values.map((c, x) => c * s.values[Math.floor(Math.floor(x / cols) / 128) * nCB + Math.floor((x % cols) / 128)]);
  }

  it('with --dtype bf16: each expert\'s gate and up rows of ΔW added to its real weights, as float64 truth says', async () => {
    const merged = await mergeFiles(base, adapter.files, 'bf16');
    for (let e = 0; e < E; e++) {
      const delta = expertDelta(adapter.a, adapter.b, e);
      for (const part of ['gate_proj', 'up_proj'] as const) {
        const key = `${EXPERTS}.${e}.${part}`;
        expectValues(key, merged.get(`${key}.weight`)!, truthOf(real(key), delta, part));
      }
      expectValues(`${EXPERTS}.${e}.down_proj`, merged.get(`${EXPERTS}.${e}.down_proj.weight`)!, real(`${EXPERTS}.${e}.down_proj`));
    }
  });

  it('kept fp8: each merged block quantized again as FineGrainedFP8 does (q = 448 / amax, code = e4m3(w·q), scale_inv = 1 / q); down_proj byte for byte', async () => {
    const merged = await mergeFiles(base, adapter.files);
    for (let e = 0; e < E; e++) {
      const delta = expertDelta(adapter.a, adapter.b, e);
      for (const part of ['gate_proj', 'up_proj'] as const) {
        const key = `${EXPERTS}.${e}.${part}`;
        const w32 = truthOf(real(key), delta, part).map(Math.fround);
        const codes = merged.get(`${key}.weight`)!, scales = merged.get(`${key}.weight_scale_inv`)!;
        expect(codes.dtype).toBe('F8_E4M3');
        const nCB = Math.ceil(HID / 128);
        for (let rb = 0; rb < Math.ceil(I / 128); rb++) {
          for (let cb = 0; cb < nCB; cb++) {
            const cells: number[] = [];
            for (let i = rb * 128; i < Math.min(I, (rb + 1) * 128); i++) for (let j = cb * 128; j < Math.min(HID, (cb + 1) * 128); j++) cells.push(i * HID + j);
            const q = Math.fround(448 / cells.reduce((m, c) => Math.max(m, Math.abs(w32[c])), 0));
            expect(scales.values[rb * nCB + cb], `${key} block ${rb},${cb}`).toBe(Math.fround(1 / q));
            const wrong = cells.find((c) => codes.values[c] !== roundForDType(Math.min(448, Math.max(-448, Math.fround(w32[c] * q))), 'F8_E4M3'));
            expect(wrong, `${key}: element ${wrong}`).toBeUndefined();
          }
        }
      }
      for (const name of ['weight', 'weight_scale_inv']) {
        const key = `${EXPERTS}.${e}.down_proj.${name}`;
        expect(merged.get(key)!.bytes, key).toEqual(original.get(key)!.bytes);
      }
    }
  });
});

describe('bitsandbytes NF4 experts (a Qwen3-MoE saved with load_in_4bit)', () => {
  const BLOCK = 64;
  const tensors: FixtureTensor[] = [];
  /** What dequantize_4bit returns per weight (nibble's code × its block's absmax, in float32, then bf16), row-major. */
  const values = new Map<string, Float64Array>();
  for (let e = 0; e < E; e++) {
    for (const [part, out, inn] of PARTS) {
      const name = `${EXPERTS}.${e}.${part}.weight`;
      const n = out * inn;
      const packed = new Uint8Array(n / 2).map(() => Math.floor(rand() * 256));
      const absmax = Array.from({ length: Math.ceil(n / BLOCK) }, () => Math.fround(0.01 + rand() * 0.2));
      const state = new TextEncoder().encode(JSON.stringify({ quant_type: 'nf4', blocksize: BLOCK, dtype: 'bfloat16', shape: [out, inn] }));
      tensors.push(
        { name, dtype: 'U8', shape: [packed.length, 1], data: packed },
        { name: `${name}.absmax`, dtype: 'F32', shape: [absmax.length], data: new Uint8Array(Float32Array.from(absmax).buffer) },
        { name: `${name}.quant_map`, dtype: 'F32', shape: [16], data: new Uint8Array(Float32Array.from(NF4).buffer) },
        { name: `${name}.quant_state.bitsandbytes__nf4`, dtype: 'U8', shape: [state.length], data: state },
      );
      values.set(name, Float64Array.from({ length: n }, (_, v) => roundForDType(Math.fround(NF4[v % 2 === 0 ? packed[v >> 1] >> 4 : packed[v >> 1] & 15] * absmax[Math.floor(v / BLOCK)]), 'BF16')));
    }
  }
  const config = {
    architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: HID, moe_intermediate_size: I, num_experts: E, torch_dtype: 'bfloat16',
    quantization_config: {
      quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: false,
      bnb_4bit_compute_dtype: 'bfloat16', bnb_4bit_quant_storage: 'uint8',
    },
  };
  const base = { 'model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify(config) };

  it('each expert\'s gate and up rows of ΔW added to bitsandbytes\' dequantized weights, written as floats, as float64 truth says', async () => {
    const adapter = gateUpAdapter();
    const merged = await mergeFiles(base, adapter.files);
    for (let e = 0; e < E; e++) {
      const delta = expertDelta(adapter.a, adapter.b, e);
      for (const part of ['gate_proj', 'up_proj'] as const) {
        const key = `${EXPERTS}.${e}.${part}.weight`;
        expect(merged.get(key)!.shape, key).toEqual([I, HID]);
        expectValues(key, merged.get(key)!, truthOf(values.get(key)!, delta, part));
      }
      const down = `${EXPERTS}.${e}.down_proj.weight`;
      expectValues(down, merged.get(down)!, values.get(down)!);
      expect(merged.has(`${down}.absmax`)).toBe(false);
    }
  });
});

describe('bitsandbytes LLM.int8 experts (a Qwen3-MoE saved with load_in_8bit)', () => {
  const tensors: FixtureTensor[] = [];
  /** int8_vectorwise_dequant: q · SCB[row] · (1/127), in float32. */
  const values = new Map<string, Float64Array>();
  const inv127 = Math.fround(7.874015718698502e-3);
  for (let e = 0; e < E; e++) {
    for (const [part, out, inn] of PARTS) {
      const name = `${EXPERTS}.${e}.${part}`;
      const q = Int8Array.from({ length: out * inn }, () => Math.floor(rand() * 255) - 127);
      const scb = Array.from({ length: out }, () => Math.fround(0.5 + rand() * 3));
      tensors.push(
        { name: `${name}.weight`, dtype: 'I8', shape: [out, inn], data: new Uint8Array(q.buffer) },
        { name: `${name}.SCB`, dtype: 'F32', shape: [out], data: new Uint8Array(Float32Array.from(scb).buffer) },
        { name: `${name}.weight_format`, dtype: 'U8', shape: [], data: new Uint8Array([0]) },
      );
      values.set(`${name}.weight`, Float64Array.from(q, (x, i) => Math.fround(Math.fround(x * scb[Math.floor(i / inn)]) * inv127)));
    }
  }
  const config = {
    architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: HID, moe_intermediate_size: I, num_experts: E, torch_dtype: 'bfloat16',
    quantization_config: { quant_method: 'bitsandbytes', load_in_8bit: true, llm_int8_threshold: 6.0 },
  };
  const base = { 'model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify(config) };

  it('each expert\'s gate and up rows of ΔW added to the dequantized int8 weights, as float64 truth says', async () => {
    const adapter = gateUpAdapter();
    const merged = await mergeFiles(base, adapter.files, 'f32');
    for (let e = 0; e < E; e++) {
      const delta = expertDelta(adapter.a, adapter.b, e);
      for (const part of ['gate_proj', 'up_proj'] as const) {
        const key = `${EXPERTS}.${e}.${part}.weight`;
        expectValues(key, merged.get(key)!, truthOf(values.get(key)!, delta, part));
      }
      const down = `${EXPERTS}.${e}.down_proj.weight`;
      expectValues(down, merged.get(down)!, values.get(down)!);
      expect(merged.has(`${EXPERTS}.${e}.down_proj.SCB`)).toBe(false);
    }
  });
});
