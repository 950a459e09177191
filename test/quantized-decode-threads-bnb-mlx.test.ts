/**
 * bitsandbytes and mlx affine bases decoded on the CPU backend's worker threads
 * (formats/row-decoders.ts `bnb-4bit`, `bnb-int8`, `mlx-affine`): SmolLM2-135M-shaped attention
 * projections (hidden 576, 9 heads, 3 KV heads) merged with a PEFT LoRA on two threads (slabs read
 * into shared memory, as the command line reads them), on two threads through the pool's scratch
 * (a page's pool) and on one thread with no pool give the same bytes; those bytes are W + α/r·B·A
 * rounded once to f16, W dequantized here in float64 by the tools' own formulas; the decoding did
 * go to the workers; and a file the decoder refuses is refused with the same line on every thread.
 *
 * bitsandbytes (nn/modules.py `_save_to_state_dict`, functional.py `QuantState.as_dict`,
 * `dequantize_4bit`, `dequantize_blockwise`, `int8_vectorwise_dequant`; csrc/kernels.cu
 * `kDequantizeBlockwise`): a Linear4bit weight is `<m>.weight` U8 (n/2, 1) of nibbles, the high
 * nibble first, `.absmax` (F32 per block, or under double quant U8 codes into `.nested_quant_map`
 * scaled by `.nested_absmax` per 256 blocks plus `nested_offset`), `.quant_map` (the NF4 or FP4
 * table) and the quant state's JSON; value v = T(f32(code[nibble_v] · absmax[⌊v/blocksize⌋])), T
 * the quant state's dtype; nested absmax[j] = f32(f32(code₂[q_j] · nested_absmax[⌊j/256⌋]) +
 * offset). A Linear8bitLt weight is `<m>.weight` I8 (out, in) with `<m>.SCB` F32 (out); value =
 * f32(f32(q · SCB[row]) · f32(1/127)).
 * mlx (mx.quantize / mx.dequantize, affine mode, as `mlx_lm.convert -q` writes): `<m>.weight` U32
 * (out, in·bits/32), each row's codes one little-endian bit stream; `<m>.scales` and `<m>.biases`
 * (out, in/group_size); W[o, i] = q·scale + bias of i's group.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { isMergeError } from '../src/errors.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { threadBackends, peftLoraOn } from './helpers/thread-backends.js';
import { FP4, fourBitStats, fourBitTruth, NF4 } from './helpers/bnb-tables.js';

const rand = seededRandom(20261207);
const L = 'model.layers.0';
const Q = `${L}.self_attn.q_proj`;
const K = `${L}.self_attn.k_proj`;
const V = `${L}.self_attn.v_proj`;
/** Outputs of each module (SmolLM2-135M: 9 heads and 3 KV heads of 64); k_proj no adapter changes. */
const ROWS: Record<string, number> = { [Q]: 576, [K]: 192, [V]: 192 };
const COLS = 576;
const R = 16, ALPHA = 32;
/** 192 f32 rows of 576 (110 592 values, enough for the pool): in f32, q_proj in three slabs, k_proj and v_proj in one. */
const SLAB_BYTES = 192 * COLS * 4;

/**
 * Slabs of the three weights read as the view's dtype, `width` bytes a value (a 4-bit weight's is
 * its quant state's dtype; the others' f32): each a source of its own rows, cut into pieces.
 */
const slabsOf = (width: number) => [Q, K, V].reduce((n, m) => n + Math.ceil((ROWS[m] * COLS * width) / SLAB_BYTES), 0);

type Files = Record<string, Uint8Array | string>;
interface Case { name: string; files: Files; real: Map<string, Float64Array>; width: number }

const randomInt = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const f32Bytes = (values: ArrayLike<number>) => new Uint8Array(Float32Array.from(values).buffer);
const jsonBytes = (value: object) => new TextEncoder().encode(JSON.stringify(value));
const smolConfig = (fields: object) => JSON.stringify({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: COLS, intermediate_size: 1536, num_attention_heads: 9,
  num_key_value_heads: 3, head_dim: 64, num_hidden_layers: 1, torch_dtype: 'bfloat16', ...fields,
});

/**
 * A Linear4bit base: random nibbles per module, block statistics plain or double-quantized; the
 * truth is what dequantize_4bit returns, cast to the quant state's dtype.
 */
function fourBitCase(type: 'nf4' | 'fp4', blocksize: number, dtype: 'BF16' | 'F16', nested: boolean): Case {
  const code = type === 'nf4' ? NF4 : FP4;
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Float64Array>();
  for (const m of [Q, K, V]) {
    const name = `${m}.weight`;
    const n = ROWS[m] * COLS;
    const blocks = Math.ceil(n / blocksize);
    const packed = Uint8Array.from({ length: n / 2 }, () => randomInt(0, 255));
    const state: Record<string, unknown> = { quant_type: type, blocksize, dtype: dtype === 'BF16' ? 'bfloat16' : 'float16', shape: [ROWS[m], COLS] };
    const { absmax, stats, state: nestedState } = fourBitStats(name, blocks, nested, { rand, int: randomInt });
    Object.assign(state, nestedState);
    tensors.push(
      { name, dtype: 'U8', shape: [n / 2, 1], data: packed }, ...stats,
      { name: `${name}.quant_map`, dtype: 'F32', shape: [16], data: f32Bytes(code) },
      { name: `${name}.quant_state.bitsandbytes__${type}`, dtype: 'U8', shape: [jsonBytes(state).length], data: jsonBytes(state) },
    );
    real.set(m, fourBitTruth(packed, n, code, absmax, blocksize, dtype));
  }
  const quantization = {
    quant_method: 'bitsandbytes', load_in_4bit: true, load_in_8bit: false, bnb_4bit_quant_type: type, bnb_4bit_use_double_quant: nested,
    bnb_4bit_compute_dtype: 'bfloat16', bnb_4bit_quant_storage: 'uint8', llm_int8_threshold: 6.0,
  };
  return {
    name: `bitsandbytes ${type.toUpperCase()} blocksize ${blocksize} ${dtype}${nested ? ' double-quantized' : ''}`,
    files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': smolConfig({ quantization_config: quantization }) }, real, width: 2,
  };
}

/** A Linear8bitLt base (LLM.int8, row-wise SCB, weight_format 0). */
function int8Case(): Case {
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Float64Array>();
  const inv127 = Math.fround(7.874015718698502e-3);
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    const q = Array.from({ length: n * COLS }, () => randomInt(-127, 127));
    const scb = Array.from({ length: n }, () => Math.fround(0.05 + rand() * 0.2)); // each row's absmax
    real.set(m, Float64Array.from(q, (x, i) => Math.fround(Math.fround(x * scb[Math.floor(i / COLS)]) * inv127)));
    tensors.push(
      { name: `${m}.SCB`, dtype: 'F32', shape: [n], data: f32Bytes(scb) },
      { name: `${m}.weight`, dtype: 'I8', shape: [n, COLS], data: q },
      { name: `${m}.weight_format`, dtype: 'U8', shape: [], data: [0] },
    );
  }
  const quantization = { quant_method: 'bitsandbytes', load_in_4bit: false, load_in_8bit: true, llm_int8_threshold: 6.0, llm_int8_has_fp16_weight: false };
  return { name: 'bitsandbytes LLM.int8', files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': smolConfig({ torch_dtype: 'float16', quantization_config: quantization }) }, real, width: 4 };
}

/** Codes as mlx packs a row: one little-endian bit stream over uint32 words, code i at bits [bits·i, bits·i + bits). */
function mlxPack(codes: readonly number[], rows: number, bits: number): number[] {
  const words = (COLS * bits) / 32;
  const out = new Array<number>(rows * words).fill(0);
  for (let o = 0; o < rows; o++) for (let i = 0; i < COLS; i++) {
    for (let b = 0; b < bits; b++) {
      if ((codes[o * COLS + i] >> b) & 1) {
        const bit = bits * i + b;
        out[o * words + Math.floor(bit / 32)] += 2 ** (bit % 32);
      }
    }
  }
  return out;
}

/**
 * An mlx-community base (`mlx_lm.convert -q --q-bits B --q-group-size G`), bf16 scales and biases:
 * each bias a bf16 of 2^-6 … 2^-5 and each scale of 2^-9 … 2^-8, so that q·scale + bias is exact in f32.
 */
function mlxCase(bits: number, groupSize: number): Case {
  const groups = COLS / groupSize;
  const tensors: FixtureTensor[] = [];
  const real = new Map<string, Float64Array>();
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    const codes = Array.from({ length: n * COLS }, () => randomInt(0, 2 ** bits - 1));
    const scales = Array.from({ length: n * groups }, () => roundForDType(2 ** -9 * (1 + rand()), 'BF16'));
    const biases = Array.from({ length: n * groups }, () => roundForDType((rand() < 0.5 ? -1 : 1) * 2 ** -6 * (1 + rand() * 0.99), 'BF16'));
    real.set(m, Float64Array.from(codes, (q, v) => {
      const g = Math.floor(v / COLS) * groups + Math.floor((v % COLS) / groupSize);
      return q * scales[g] + biases[g];
    }));
    tensors.push(
      { name: `${m}.biases`, dtype: 'BF16', shape: [n, groups], data: biases },
      { name: `${m}.scales`, dtype: 'BF16', shape: [n, groups], data: scales },
      { name: `${m}.weight`, dtype: 'U32', shape: [n, (COLS * bits) / 32], data: mlxPack(codes, n, bits) },
    );
  }
  const quantization = { group_size: groupSize, bits };
  return {
    name: `mlx affine ${bits}-bit group ${groupSize}`,
    files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': smolConfig({ quantization, quantization_config: quantization }) }, real, width: 4,
  };
}

const threads = threadBackends();

const lora = peftLoraOn({ [Q]: ROWS[Q], [V]: ROWS[V] }, COLS, R, ALPHA, rand);

async function mergeOn(files: Files, backend: CpuBackend): Promise<Uint8Array> {
  const prepared = await prepareMerge(memoryInputFileSet(files, 'model'), [{ files: memoryInputFileSet(lora.files, 'adapter') }]);
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

/** The refusal a merge of `files` ends in: its code and line. */
async function refusalOn(files: Files, backend: CpuBackend): Promise<{ code: string; message: string }> {
  try {
    await mergeOn(files, backend);
  } catch (e) {
    if (!isMergeError(e)) throw e;
    return { code: e.code, message: e.message };
  }
  throw new Error('the merge was not refused');
}

describe('bitsandbytes and mlx affine base weights decoded on the worker threads', () => {
  const cases = [
    fourBitCase('nf4', 64, 'BF16', true), fourBitCase('fp4', 128, 'F16', false), int8Case(), mlxCase(4, 64), mlxCase(3, 64),
  ];
  for (const c of cases) {
    it(`${c.name}: two threads (shared slabs, or the pool's scratch) write the bytes of one thread, W + α/r·B·A rounded once`, async () => {
      const { shared, scratch, single } = threads.three();
      const [pieces, sources] = [threads.sharedPool.sent.decodePieces, threads.sharedPool.sent.decodeSources];
      const scratchPieces = threads.scratchPool.sent.decodePieces;
      const threaded = await mergeOn(c.files, shared);
      // Each slab's rows (k_proj's: copied, not merged), stored by output, went to shared memory
      // once, and were cut into pieces, the first of each to the worker (the calling thread takes the next).
      const slabs = slabsOf(c.width);
      expect(threads.sharedPool.sent.decodeSources - sources).toBe(slabs);
      expect(threads.sharedPool.sent.decodePieces - pieces).toBeGreaterThanOrEqual(slabs);
      const throughScratch = await mergeOn(c.files, scratch);
      expect(threads.scratchPool.sent.decodePieces - scratchPieces).toBeGreaterThanOrEqual(slabs);
      const oneThread = await mergeOn(c.files, single);
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

  it('an mlx value not exact in f32 (a bias far below its scale) is refused with the same line on every thread, the worker\'s keeping its code', async () => {
    const c = mlxCase(4, 64);
    const tensors = decodeSafetensors(c.files['model.safetensors'] as Uint8Array).tensors;
    // Row 0 of q_proj, the first piece of its first slab: the worker's on two threads.
    const biases = Array.from(tensors.get(`${Q}.biases`)!.values);
    biases[0] = 2 ** -40;
    const hostile = {
      ...c.files,
      'model.safetensors': buildSafetensors([...tensors].map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype as FixtureTensor['dtype'], shape: t.shape, data: name === `${Q}.biases` ? biases : t.bytes }))),
    };
    const { shared, scratch, single } = threads.three();
    const pieces = threads.sharedPool.sent.decodePieces;
    const refusals = [await refusalOn(hostile, shared), await refusalOn(hostile, scratch), await refusalOn(hostile, single)];
    expect(threads.sharedPool.sent.decodePieces - pieces).toBeGreaterThanOrEqual(1);
    expect(refusals[0]).toEqual({
      code: 'UNSUPPORTED_FORMAT',
      message: expect.stringMatching(/^model: model\.layers\.0\.self_attn\.q_proj\.weight\[0, \d+\] = \d+·[\d.e-]+ \+ 9\.094947017729282e-13 is not exact in f32, in which the merge reads dequantized weights$/),
    });
    expect(refusals[1]).toEqual(refusals[0]);
    expect(refusals[2]).toEqual(refusals[0]);
  });

  it('two mlx values not exact in f32, in two pieces of one slab (the first a worker\'s, the second the calling thread\'s), are refused naming the first on every thread', async () => {
    const c = mlxCase(4, 64);
    const groups = COLS / 64;
    const tensors = decodeSafetensors(c.files['model.safetensors'] as Uint8Array).tensors;
    // q_proj's first slab is rows 0–191, cut into pieces of 48 rows: rows 0–47 go to the worker and
    // rows 48–95 to the calling thread, which decodes them before the worker replies.
    const biases = Array.from(tensors.get(`${Q}.biases`)!.values);
    biases[5 * groups] = 2 ** -40;
    biases[60 * groups] = 2 ** -41;
    const hostile = {
      ...c.files,
      'model.safetensors': buildSafetensors([...tensors].map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype as FixtureTensor['dtype'], shape: t.shape, data: name === `${Q}.biases` ? biases : t.bytes }))),
    };
    const { shared, scratch, single } = threads.three();
    const pieces = threads.sharedPool.sent.decodePieces;
    const refusals = [await refusalOn(hostile, single), await refusalOn(hostile, shared), await refusalOn(hostile, scratch)];
    expect(threads.sharedPool.sent.decodePieces - pieces).toBeGreaterThanOrEqual(1);
    // Row 5, input 0 (the first of its group): q·scale + 2^-40, the first value in row order the decoder refuses.
    expect(refusals[0]).toEqual({
      code: 'UNSUPPORTED_FORMAT',
      message: expect.stringMatching(/^model: model\.layers\.0\.self_attn\.q_proj\.weight\[5, 0\] = \d+·[\d.e-]+ \+ 9\.094947017729282e-13 is not exact in f32, in which the merge reads dequantized weights$/),
    });
    expect(refusals[1]).toEqual(refusals[0]);
    expect(refusals[2]).toEqual(refusals[0]);
    // The refusals left the pools as they were: the intact file merges on them to one thread's bytes.
    const intact = await mergeOn(c.files, single);
    expect(Buffer.from(await mergeOn(c.files, shared)).equals(Buffer.from(intact))).toBe(true);
    expect(Buffer.from(await mergeOn(c.files, scratch)).equals(Buffer.from(intact))).toBe(true);
  });

  it('hostile statistics are refused with the same line on every thread: an mlx scale that is NaN, a bitsandbytes absmax of the wrong length', async () => {
    const mlx = mlxCase(4, 64);
    const mlxTensors = decodeSafetensors(mlx.files['model.safetensors'] as Uint8Array).tensors;
    const nanScales = {
      ...mlx.files,
      'model.safetensors': buildSafetensors([...mlxTensors].map(([name, t]): FixtureTensor => (
        { name, dtype: t.dtype as FixtureTensor['dtype'], shape: t.shape, data: name === `${V}.scales` ? t.values.map((x, i) => (i === 700 ? NaN : x)) : t.bytes }))),
    };
    const nf4 = fourBitCase('nf4', 64, 'BF16', true);
    const nf4Tensors = decodeSafetensors(nf4.files['model.safetensors'] as Uint8Array).tensors;
    const shortAbsmax = {
      ...nf4.files,
      'model.safetensors': buildSafetensors([...nf4Tensors].map(([name, t]): FixtureTensor => (
        name === `${K}.weight.absmax` ? { name, dtype: 'U8', shape: [t.shape[0] - 1], data: t.bytes.subarray(1) } : { name, dtype: t.dtype as FixtureTensor['dtype'], shape: t.shape, data: t.bytes }))),
    };
    const { shared, scratch, single } = threads.three();
    for (const [files, expected] of [
      [nanScales, { code: 'UNSUPPORTED_FORMAT', message: `model: tensor "${V}.scales" holds 1 value that is NaN or Inf (row ${Math.floor(700 / (COLS / 64))}); scales and biases must be finite` }],
      [shortAbsmax, { code: 'UNSUPPORTED_FORMAT', message: `model: tensor "${K}.weight" ${K}.weight.absmax is U8 with 1727 values; expected 1728 U8` }],
    ] as const) {
      for (const backend of [shared, scratch, single]) expect(await refusalOn(files, backend)).toEqual(expected);
    }
  });
});
