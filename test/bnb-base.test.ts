/**
 * bitsandbytes-quantized bases as QLoRA users hold them: 4-bit NF4 (with nested statistics) and
 * FP4 weights and 8-bit LLM.int8 weights, with the tensors and quant-state JSON bitsandbytes saves
 * (nn/modules.py, functional.py QuantState.as_dict), dequantized as its kernels compute
 * (csrc/kernels.cu kDequantizeBlockwise, _ops.py int8_vectorwise_dequant), merged, and compared
 * with float64 truth written out below, on the CPU and on WebGPU; the output's config.json drops
 * quantization_config and says what was written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { FP4_CODE } from '../src/formats/bnb/bnb-codes.js';
import { isMergeError } from '../src/errors.js';
import { buildSafetensors, roundForDType, seededRandom, type DecodedTensor, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder, type MergedFolder } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';
import { FP4, NF4 } from './helpers/bnb-tables.js';

const rand = seededRandom(4404);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

function f32Bytes(values: number[] | Float32Array): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

function jsonTensor(name: string, value: object): FixtureTensor {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return { name, dtype: 'U8', shape: [bytes.length], data: bytes };
}

interface FourBit {
  tensors: FixtureTensor[];
  /** The values bitsandbytes' dequantize_4bit returns, as doubles, row-major. */
  values: Float64Array;
}

/**
 * A Linear4bit weight as bitsandbytes saves it: random nibbles and block scales, optionally with
 * the scales themselves 8-bit quantized against a 256-entry map in blocks of 256 (nested).
 */
function fourBitWeight(name: string, shape: number[], type: 'nf4' | 'fp4', blocksize: number, dtype: 'BF16' | 'F16', nested: boolean): FourBit {
  const n = shape[0] * shape[1];
  const packed = new Uint8Array(Math.ceil(n / 2)).map(() => Math.floor(rand() * 256));
  const blocks = Math.ceil(n / blocksize);
  const code = type === 'nf4' ? NF4 : FP4;
  let absmax: number[];
  const tensors: FixtureTensor[] = [];
  const state: Record<string, unknown> = { quant_type: type, blocksize, dtype: dtype === 'BF16' ? 'bfloat16' : 'float16', shape };
  if (nested) {
    const dynamicMap = Array.from({ length: 256 }, (_, i) => Math.fround(Math.sign(i - 127.5) * ((Math.abs(i - 127.5) + 0.5) / 128) ** 3));
    const q = Array.from({ length: blocks }, () => Math.floor(rand() * 256));
    const nestedAbsmax = Array.from({ length: Math.ceil(blocks / 256) }, () => Math.fround(0.05 + rand() * 0.1));
    const offset = Math.fround(0.02 + rand() * 0.01);
    // dequantize_blockwise (float32 products) then `absmax += offset` (a float32 add).
    absmax = q.map((qj, j) => Math.fround(Math.fround(dynamicMap[qj] * nestedAbsmax[Math.floor(j / 256)]) + offset));
    Object.assign(state, { nested_blocksize: 256, nested_dtype: 'float32', nested_offset: offset });
    tensors.push(
      { name: `${name}.absmax`, dtype: 'U8', shape: [blocks], data: Uint8Array.from(q) },
      { name: `${name}.nested_absmax`, dtype: 'F32', shape: [nestedAbsmax.length], data: f32Bytes(nestedAbsmax) },
      { name: `${name}.nested_quant_map`, dtype: 'F32', shape: [256], data: f32Bytes(dynamicMap) },
    );
  } else {
    absmax = Array.from({ length: blocks }, () => Math.fround(0.01 + rand() * 0.2));
    tensors.push({ name: `${name}.absmax`, dtype: 'F32', shape: [blocks], data: f32Bytes(absmax) });
  }
  tensors.unshift({ name, dtype: 'U8', shape: [packed.length, 1], data: packed });
  tensors.push(
    { name: `${name}.quant_map`, dtype: 'F32', shape: [16], data: f32Bytes(code) },
    jsonTensor(`${name}.quant_state.bitsandbytes__${type}`, state),
  );
  const values = new Float64Array(n);
  for (let v = 0; v < n; v++) {
    const nibble = v % 2 === 0 ? packed[v >> 1] >> 4 : packed[v >> 1] & 15;
    values[v] = roundForDType(Math.fround(code[nibble] * absmax[Math.floor(v / blocksize)]), dtype);
  }
  return { tensors, values };
}

/** A Linear8bitLt weight: int8 rows, SCB per row, weight_format 0; values as int8_vectorwise_dequant returns them. */
function int8Weight(module: string, shape: [number, number]): FourBit {
  const q = Int8Array.from({ length: shape[0] * shape[1] }, () => Math.floor(rand() * 255) - 127);
  const scb = Array.from({ length: shape[0] }, () => Math.fround(0.5 + rand() * 3));
  const inv127 = Math.fround(7.874015718698502e-3);
  const values = Float64Array.from(q, (x, i) => Math.fround(Math.fround(x * scb[Math.floor(i / shape[1])]) * inv127));
  return {
    tensors: [
      { name: `${module}.weight`, dtype: 'I8', shape, data: new Uint8Array(q.buffer) },
      { name: `${module}.SCB`, dtype: 'F32', shape: [shape[0]], data: f32Bytes(scb) },
      { name: `${module}.weight_format`, dtype: 'U8', shape: [], data: new Uint8Array([0]) },
    ],
    values,
  };
}

async function merge(prepared: PreparedMerge, kind: 'cpu' | 'webgpu', options: { outDtype?: 'F32' | 'F16' | 'BF16'; slabBytes?: number } = {}): Promise<MergedFolder> {
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend: backends[kind]!, ...options });
  } finally {
    await prepared.close();
  }
  const files = new Map<string, Uint8Array>();
  for (const f of output.files()) files.set(f.path, new Uint8Array(await f.blob.arrayBuffer()));
  return readMergedFolder(files);
}

/** Decoded values with their shape and dtype, for expectValues. */
function asTensor(values: Float64Array, shape: number[], dtype: FixtureDType): DecodedTensor {
  return { values, shape, dtype, bytes: new Uint8Array(0) };
}

function lora(path: string, out: number, inF: number, r: number): FixtureTensor[] {
  return [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.05),
  ];
}

const L = 'model.layers.0.self_attn';
const QUANTIZATION = {
  quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: true,
  bnb_4bit_compute_dtype: 'bfloat16', bnb_4bit_quant_storage: 'uint8',
};

describe('bitsandbytes code tables', () => {
  it('the kernel\'s printed FP4 constants are get_4bit_type\'s float32 values', () => {
    expect([...FP4_CODE]).toEqual(FP4);
  });
});

describe('4-bit NF4 base with nested statistics', () => {
  // q_proj crosses slab and block boundaries and has two nested blocks; k_proj has an odd number of values.
  const q = fourBitWeight(`${L}.q_proj.weight`, [200, 96], 'nf4', 64, 'BF16', true);
  const k = fourBitWeight(`${L}.k_proj.weight`, [5, 7], 'nf4', 64, 'BF16', true);
  const v = fourBitWeight(`${L}.v_proj.weight`, [8, 96], 'nf4', 64, 'BF16', true);
  const plain = [
    randomTensor('model.embed_tokens.weight', [16, 96], 'BF16', rand),
    randomTensor('model.norm.weight', [96], 'BF16', rand),
    randomTensor('lm_head.weight', [16, 96], 'BF16', rand),
  ];
  const base = [plain[0], ...q.tensors, ...k.tensors, ...v.tensors, plain[1], plain[2]];
  const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', quantization_config: QUANTIZATION };
  const adapter = [...lora(`${L}.q_proj`, 200, 96, 4), ...lora(`${L}.k_proj`, 5, 7, 1)];

  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`dequantizes exactly, merges, and writes a plain bf16 model on ${kind}`, async () => {
      const prepared = await prepareMerge(memoryInputFileSet(hfModelFolder(base, config, { shards: 2 }), 'llama-bnb-4bit'), [
        { files: memoryInputFileSet(peftFolder({ r: 4, lora_alpha: 8, rank_pattern: { k_proj: 1 }, alpha_pattern: { k_proj: 1 } }, adapter), 'qlora') },
      ]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.warnings).toEqual([expect.stringContaining('merges best into the original high-precision base')]);
      expect(prepared.plan.notes[0]).toContain('3 4-bit bitsandbytes weights');
      const merged = await merge(prepared, kind, { slabBytes: 4096 });
      const a = decoded(adapter);
      const ab = (m: string) => product(a.get(`base_model.model.${L}.${m}.lora_B.weight`)!, a.get(`base_model.model.${L}.${m}.lora_A.weight`)!);
      const qOut = merged.tensors.get(`${L}.q_proj.weight`)!;
      expect([qOut.dtype, qOut.shape]).toEqual(['BF16', [200, 96]]);
      const qDelta = ab('q_proj');
      expectValues('q_proj', qOut, q.values.map((w, i) => w + 2 * qDelta[i]));
      const kDelta = ab('k_proj');
      expectValues('k_proj', merged.tensors.get(`${L}.k_proj.weight`)!, k.values.map((w, i) => w + kDelta[i]));
      // Unmerged: bitsandbytes' bf16 values as they are.
      expect([...merged.tensors.get(`${L}.v_proj.weight`)!.values]).toEqual([...v.values]);
      const b = decoded(plain);
      for (const t of plain) expect(merged.tensors.get(t.name)!.bytes).toEqual(b.get(t.name)!.bytes);
      // Nothing of the quantization is left: no statistics, no quant state.
      expect([...merged.tensors.keys()].sort()).toEqual([...plain.map((t) => t.name), ...['q', 'k', 'v'].map((p) => `${L}.${p}_proj.weight`)].sort());
      const index = merged.json('model.safetensors.index.json');
      expect(index.metadata.total_size).toBe(merged.tensorBytes);
      expect(Object.keys(index.weight_map).sort()).toEqual([...merged.tensors.keys()].sort());
      const out = merged.json('config.json');
      expect(out.quantization_config).toBeUndefined();
      expect([out.dtype, out.torch_dtype]).toEqual(['bfloat16', 'bfloat16']);
    });
  }

  it('writes the dequantized model in the dtype asked for', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(hfModelFolder(base, config), 'llama-bnb-4bit'), [
      { files: memoryInputFileSet(peftFolder({ r: 4, lora_alpha: 8, rank_pattern: { k_proj: 1 }, alpha_pattern: { k_proj: 1 } }, adapter), 'qlora') },
    ]);
    const merged = await merge(prepared, 'cpu', { outDtype: 'F32' });
    expect([...merged.tensors.get(`${L}.v_proj.weight`)!.values]).toEqual([...v.values]);
    expect(merged.tensors.get(`${L}.v_proj.weight`)!.dtype).toBe('F32');
    expect(merged.json('config.json').torch_dtype).toBe('float32');
  });
});

describe('4-bit FP4 and 8-bit bases', () => {
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`FP4 without nested statistics, float16, an odd row length across slabs, on ${kind}`, async () => {
      const q = fourBitWeight(`${L}.q_proj.weight`, [130, 41], 'fp4', 32, 'F16', false);
      const base = [...q.tensors, randomTensor('model.norm.weight', [41], 'F16', rand)];
      const adapter = lora(`${L}.q_proj`, 130, 41, 2);
      const prepared = await prepareMerge(memoryInputFileSet(hfModelFolder(base, {
        architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16',
        quantization_config: { ...QUANTIZATION, bnb_4bit_quant_type: 'fp4', bnb_4bit_use_double_quant: false, bnb_4bit_compute_dtype: 'float16' },
      }), 'fp4'), [{ files: memoryInputFileSet(peftFolder({ r: 2, lora_alpha: 2 }, adapter), 'qlora'), weight: -0.5 }]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind, { slabBytes: 4096 });
      const a = decoded(adapter);
      const delta = product(a.get(adapter[1].name)!, a.get(adapter[0].name)!);
      const got = merged.tensors.get(`${L}.q_proj.weight`)!;
      expect([got.dtype, got.shape]).toEqual(['F16', [130, 41]]);
      expectValues('q_proj', got, q.values.map((w, i) => w - 0.5 * delta[i]));
      const out = merged.json('config.json');
      expect([out.quantization_config, out.dtype, out.torch_dtype]).toEqual([undefined, 'float16', 'float16']);
    });

    it(`8-bit LLM.int8 weights: f32 dequantized values merged and rounded once to the model's float16, on ${kind}`, async () => {
      const q = int8Weight(`${L}.q_proj`, [24, 16]);
      const o = int8Weight(`${L}.o_proj`, [16, 24]);
      const base = [...q.tensors, ...o.tensors, randomTensor('lm_head.weight', [8, 16], 'F16', rand)];
      const adapter = lora(`${L}.q_proj`, 24, 16, 3);
      const prepared = await prepareMerge(memoryInputFileSet(hfModelFolder(base, {
        architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16',
        quantization_config: { quant_method: 'bitsandbytes', load_in_8bit: true, llm_int8_threshold: 6.0 },
      }), 'int8'), [{ files: memoryInputFileSet(peftFolder({ r: 3, lora_alpha: 6 }, adapter), 'qlora') }]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.notes[0]).toContain('2 8-bit bitsandbytes weights');
      const merged = await merge(prepared, kind);
      const a = decoded(adapter);
      const delta = product(a.get(adapter[1].name)!, a.get(adapter[0].name)!);
      expectValues('q_proj', merged.tensors.get(`${L}.q_proj.weight`)!, q.values.map((w, i) => w + 2 * delta[i]));
      expectValues('o_proj', merged.tensors.get(`${L}.o_proj.weight`)!, o.values);
      expect(merged.tensors.get(`${L}.o_proj.weight`)!.dtype).toBe('F16');
      expect([...merged.tensors.keys()].sort()).toEqual(['lm_head.weight', `${L}.o_proj.weight`, `${L}.q_proj.weight`]);
      expect(merged.json('config.json').quantization_config).toBeUndefined();
    });
  }

  it('8-bit values written as float32 are int8_vectorwise_dequant\'s, bit for bit', async () => {
    const o = int8Weight(`${L}.o_proj`, [64, 48]);
    const adapter = lora(`${L}.q_proj`, 24, 16, 1);
    const base = [...int8Weight(`${L}.q_proj`, [24, 16]).tensors, ...o.tensors];
    const prepared = await prepareMerge(memoryInputFileSet(hfModelFolder(base, { architectures: ['LlamaForCausalLM'], model_type: 'llama' }), 'int8'), [
      { files: memoryInputFileSet(peftFolder({ r: 1 }, adapter), 'qlora') },
    ]);
    // 4 KiB chunks start mid-row: each value still takes its own row's SCB.
    const merged = await merge(prepared, 'cpu', { outDtype: 'F32', slabBytes: 4096 });
    expect([...merged.tensors.get(`${L}.o_proj.weight`)!.values]).toEqual([...o.values]);
  });
});

describe('bitsandbytes files it could not have written', () => {
  const open = (tensors: FixtureTensor[]) => prepareMerge(memoryInputFileSet(hfModelFolder(tensors, { architectures: ['LlamaForCausalLM'], model_type: 'llama' }), 'bad'), [
    { files: memoryInputFileSet(peftFolder({ r: 1 }, lora(`${L}.q_proj`, 4, 4, 1)), 'qlora') },
  ]);
  async function failure(tensors: FixtureTensor[]): Promise<string> {
    try {
      const prepared = await open(tensors);
      await prepared.close();
    } catch (e) {
      if (isMergeError(e)) return e.message;
      throw e;
    }
    return expect.fail('should have been refused');
  }

  it('names the tensor and what is wrong', async () => {
    const good = fourBitWeight(`${L}.q_proj.weight`, [4, 4], 'nf4', 64, 'BF16', false).tensors;
    const swap = (name: string, t: Partial<FixtureTensor>) => good.map((x) => (x.name === name ? { ...x, ...t } : x));
    expect(await failure(swap(`${L}.q_proj.weight.quant_map`, { data: f32Bytes(FP4) })))
      .toBe(`bad: tensor "${L}.q_proj.weight" ${L}.q_proj.weight.quant_map differs from bitsandbytes' NF4 table, which its kernels use`);
    expect(await failure(swap(`${L}.q_proj.weight`, { shape: [9, 1], data: new Uint8Array(9) })))
      .toBe(`bad: tensor "${L}.q_proj.weight" packed weight has 9 bytes; 16 values of 4 bits need 8`);
    expect(await failure(good.filter((t) => !t.name.endsWith('.absmax'))))
      .toBe(`bad: tensor "${L}.q_proj.weight" ${L}.q_proj.weight.absmax is missing`);
    const int8 = int8Weight(`${L}.q_proj`, [4, 4]).tensors;
    expect(await failure(int8.map((t) => (t.name.endsWith('weight_format') ? { ...t, data: new Uint8Array([2]) } : t))))
      .toBe(`bad: tensor "${L}.q_proj.weight" ${L}.q_proj.weight_format is 2, a tiled layout bitsandbytes no longer reads; only 0 (row-major) is supported`);
  });

  it('names each quant-state field bitsandbytes would not have written, and 8-bit tensors out of place', async () => {
    const W = `${L}.q_proj.weight`;
    const key = (type: 'nf4' | 'fp4') => `${W}.quant_state.bitsandbytes__${type}`;
    const plain = fourBitWeight(W, [4, 4], 'nf4', 64, 'BF16', false).tensors;
    const nested = fourBitWeight(W, [4, 4], 'nf4', 64, 'BF16', true).tensors;
    const stateOf = (tensors: FixtureTensor[]) => JSON.parse(new TextDecoder().decode(tensors.find((t) => t.name === key('nf4'))!.data as Uint8Array)) as Record<string, unknown>;
    // The same weight with its quant-state tensor holding these bytes instead.
    const withState = (tensors: FixtureTensor[], data: Uint8Array, dtype: FixtureTensor['dtype'] = 'U8') =>
      tensors.map((t) => (t.name === key('nf4') ? { ...t, dtype, shape: [data.length], data } : t));
    const edited = (tensors: FixtureTensor[], edit: Record<string, unknown>) =>
      withState(tensors, new TextEncoder().encode(JSON.stringify({ ...stateOf(tensors), ...edit })));
    const refused = (what: string) => `bad: tensor "${W}" ${what}`;

    expect(await failure(plain.filter((t) => t.name !== W))).toBe(refused(`has a quant state (${key('nf4')}) but no packed weight`));
    expect(await failure(withState(plain, plain.find((t) => t.name === key('nf4'))!.data as Uint8Array, 'I8'))).toBe(refused(`${key('nf4')} is I8, not the uint8 JSON bitsandbytes writes`));
    expect(await failure(withState(plain, new Uint8Array(32 * 1024 * 1024 + 1).fill(0x20))))
      .toBe(refused(`${key('nf4')} is 33554433 bytes, above the limit MAX_CONFIG_BYTES for JSON (33554432)`));
    expect(await failure(withState(plain, new TextEncoder().encode(`${'['.repeat(65)}${']'.repeat(65)}`))))
      .toBe(refused(`${key('nf4')}: nests deeper than 64 levels (the limit MAX_CONFIG_NESTING); not a config this tool reads`));
    expect(await failure(withState(plain, new TextEncoder().encode('quant_type=nf4')))).toBe(refused(`${key('nf4')} does not hold JSON`));
    expect(await failure(withState(plain, new TextEncoder().encode('["nf4", 64]')))).toBe(refused(`${key('nf4')} does not hold a JSON object`));
    expect(await failure(edited(plain, { quant_type: 'fp4' }))).toBe(refused(`${key('nf4')} says quant_type "fp4"`));
    expect(await failure(edited(plain, { blocksize: 100 }))).toBe(refused('blocksize 100 is not one bitsandbytes uses'));
    expect(await failure(edited(plain, { dtype: 'float64' }))).toBe(refused('dtype "float64" is not float32, float16 or bfloat16'));
    expect(await failure(edited(plain, { shape: [4, -4] }))).toBe(refused('shape [4,-4] is not a list of dimensions'));
    expect(await failure(edited(plain, { nested_blocksize: 256 }))).toBe(refused(`the quant state is nested but ${W}.nested_absmax is missing`));
    expect(await failure(edited(nested, { nested_blocksize: 100 }))).toBe(refused('nested_blocksize 100 is not one bitsandbytes uses'));
    expect(await failure(edited(nested, { nested_dtype: 'float16' }))).toBe(refused('nested_dtype "float16" is not float32'));
    expect(await failure(edited(nested, { nested_offset: '0.03' }))).toBe(refused('nested_offset "0.03" is not a finite number'));
    // Python's json writes a float NaN or inf as the bare literal: named as such, not as JSON.stringify's null.
    const literal = (tensors: FixtureTensor[], field: string, value: string) =>
      withState(tensors, new TextEncoder().encode(JSON.stringify({ ...stateOf(tensors), [field]: 0 }).replace(`"${field}":0`, `"${field}": ${value}`)));
    expect(await failure(literal(nested, 'nested_offset', 'NaN'))).toBe(refused('nested_offset NaN is not a finite number'));
    expect(await failure(literal(nested, 'nested_offset', '-Infinity'))).toBe(refused('nested_offset -Infinity is not a finite number'));
    expect(await failure(literal(plain, 'blocksize', 'NaN'))).toBe(refused('blocksize NaN is not one bitsandbytes uses'));
    expect(await failure(literal(nested, 'nested_blocksize', 'Infinity'))).toBe(refused('nested_blocksize Infinity is not one bitsandbytes uses'));

    const int8 = int8Weight(`${L}.q_proj`, [4, 4]).tensors;
    expect(await failure(int8.filter((t) => t.name !== W))).toBe(refused(`has SCB statistics (${L}.q_proj.SCB) but no int8 weight`));
    expect(await failure(int8.map((t) => (t.name === W ? { ...t, dtype: 'U8' as const } : t)))).toBe(refused('is U8 (4, 4); an 8-bit bitsandbytes weight is a 2-D int8 tensor'));
    expect(await failure(int8.map((t) => (t.name.endsWith('weight_format') ? { ...t, dtype: 'F32' as const, data: new Uint8Array(4) } : t))))
      .toBe(refused(`${L}.q_proj.weight_format is not a uint8 scalar`));
  });
});

/**
 * Each value the correctly rounded bf16 truth or within one bf16 ulp of it, except where the sum
 * cancels far below the tensor's scale: f32 accumulation then errs by about 1e-7 of the summands.
 */
function expectClose(key: string, got: DecodedTensor, truth: Float64Array): void {
  const scale = truth.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  let exact = 0;
  for (let i = 0; i < truth.length; i++) {
    if (got.values[i] === roundForDType(truth[i], 'BF16')) {
      exact++;
      continue;
    }
    const ulp = 2 ** (Math.floor(Math.log2(Math.max(Math.abs(truth[i]), 2 ** -126))) - 7);
    expect(Math.abs(got.values[i] - truth[i]), `${key}[${i}]: got ${got.values[i]}, truth ${truth[i]}`).toBeLessThanOrEqual(Math.max(ulp, 1e-6 * scale));
  }
  expect(exact / truth.length, `${key}: share exactly rounded`).toBeGreaterThanOrEqual(0.99);
}

describe('bitsandbytes bases with the other adapter algorithms and the value checks', () => {
  const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', quantization_config: QUANTIZATION };

  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`a PEFT DoRA module, then a LyCORIS DoRA module whose column norms take their own pass over the dequantized slabs, on ${kind}`, async () => {
      // q_proj spans ten 4 KiB slabs, so the per-column norms need the pass over all of them first.
      const q = fourBitWeight(`${L}.q_proj.weight`, [200, 96], 'nf4', 64, 'BF16', true);
      const k = fourBitWeight(`${L}.k_proj.weight`, [24, 96], 'nf4', 64, 'BF16', true);
      const base = [...q.tensors, ...k.tensors, randomTensor('model.norm.weight', [96], 'BF16', rand)];
      const peftDora = [...lora(`${L}.k_proj`, 24, 96, 2), randomTensor(`base_model.model.${L}.k_proj.lora_magnitude_vector.weight`, [24], 'F32', rand)];
      const lyco = 'lycoris_model_layers_0_self_attn_q_proj';
      const lycoris: FixtureTensor[] = [
        randomTensor(`${lyco}.lora_down.weight`, [3, 96], 'F32', rand, 0.5),
        randomTensor(`${lyco}.lora_up.weight`, [200, 3], 'F32', rand, 0.05),
        { name: `${lyco}.alpha`, dtype: 'F32', shape: [], data: [1.5] },
        randomTensor(`${lyco}.dora_scale`, [1, 96], 'F32', rand),
      ];
      const prepared = await prepareMerge(memoryInputFileSet(hfModelFolder(base, config), 'llama-bnb-4bit'), [
        { files: memoryInputFileSet(peftFolder({ r: 2, lora_alpha: 4, use_dora: true }, peftDora), 'qdora') },
        { files: memoryInputFileSet({ 'lycoris.safetensors': buildSafetensors(lycoris) }, 'lycoris.safetensors') },
      ]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind, { slabBytes: 4096 });
      const a = decoded([...peftDora, ...lycoris]);

      // PEFT: V = W + 2·B·A, row o scaled to m_o / ‖V_o‖.
      const kDelta = product(a.get(`base_model.model.${L}.k_proj.lora_B.weight`)!, a.get(`base_model.model.${L}.k_proj.lora_A.weight`)!);
      const kTruth = k.values.map((w, i) => w + 2 * kDelta[i]);
      const m = a.get(`base_model.model.${L}.k_proj.lora_magnitude_vector.weight`)!.values;
      for (let o = 0; o < 24; o++) {
        const row = kTruth.subarray(o * 96, (o + 1) * 96);
        const norm = Math.sqrt(row.reduce((s, x) => s + x * x, 0));
        for (let c = 0; c < 96; c++) row[c] *= m[o] / norm;
      }
      expectClose('k_proj', merged.tensors.get(`${L}.k_proj.weight`)!, kTruth);

      // LyCORIS: V = W + (α/r)·up·down, column c scaled to dora_scale_c / (‖V_:,c‖ + eps), eps = 2^-23.
      const qDelta = product(a.get(`${lyco}.lora_up.weight`)!, a.get(`${lyco}.lora_down.weight`)!);
      const qTruth = q.values.map((w, i) => w + 0.5 * qDelta[i]);
      const scale = a.get(`${lyco}.dora_scale`)!.values;
      for (let c = 0; c < 96; c++) {
        let ss = 0;
        for (let o = 0; o < 200; o++) ss += qTruth[o * 96 + c] ** 2;
        const f = scale[c] / (Math.sqrt(ss) + 2 ** -23);
        for (let o = 0; o < 200; o++) qTruth[o * 96 + c] *= f;
      }
      expectClose('q_proj', merged.tensors.get(`${L}.q_proj.weight`)!, qTruth);
      expect(merged.json('config.json').quantization_config).toBeUndefined();
    });
  }

  it('a NaN block scale is named: refused in a weight the merge updates, warned about in one it copies', async () => {
    const q = fourBitWeight(`${L}.q_proj.weight`, [8, 64], 'nf4', 64, 'BF16', false);
    const v = fourBitWeight(`${L}.v_proj.weight`, [8, 64], 'nf4', 64, 'BF16', false);
    const withNaN = (t: FixtureTensor[], block: number) => t.map((x) => {
      if (!x.name.endsWith('.absmax')) return x;
      const values = new Float32Array((x.data as Uint8Array).slice().buffer);
      values[block] = NaN;
      return { ...x, data: new Uint8Array(values.buffer) };
    });
    const open = (tensors: FixtureTensor[]) => prepareMerge(memoryInputFileSet(hfModelFolder(tensors, config), 'llama-bnb-4bit'), [
      { files: memoryInputFileSet(peftFolder({ r: 2, lora_alpha: 2 }, lora(`${L}.q_proj`, 8, 64, 2)), 'qlora') },
    ]);
    // Updated: every value of block 3 (row 3) is NaN.
    const refused = await merge(await open([...withNaN(q.tensors, 3), ...v.tensors]), 'cpu').then(() => undefined, (e: unknown) => e);
    expect(isMergeError(refused) && refused.message).toBe(
      `llama-bnb-4bit/model.safetensors: tensor "${L}.q_proj.weight" already holds 64 NaN or Inf values in the base (row 3), and the merge updates it; the base file is broken: use an intact copy of the base`,
    );
    // Copied (dequantized and converted): the base's own NaN, warned about.
    const warnings: string[] = [];
    const output = createBlobOutputTarget();
    const prepared = await open([...q.tensors, ...withNaN(v.tensors, 5)]);
    try {
      await mergeModel({ prepared, output, backend: backends.cpu!, onWarning: (w) => warnings.push(w) });
    } finally {
      await prepared.close();
    }
    expect(warnings).toEqual([`llama-bnb-4bit/model.safetensors: 1 tensor already holds NaN or Inf in the base and is copied as it is: ${L}.v_proj.weight (64 values)`]);
  });
});
