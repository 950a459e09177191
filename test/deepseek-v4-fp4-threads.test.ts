/**
 * DeepSeek-V4's packed FP4 experts (E2M1 codes, element 2k in the low nibble of byte k, an F8_E8M0
 * scale per 32 inputs) decoded by the row decoder and quantized by rows, on the calling thread and
 * on the CPU backend's worker threads (shared slabs, the pool's scratch, one thread): every way
 * gives the bytes of the per-value code these replaced (kept below as `previousDecode` and
 * `previousQuantize`) and of a float64 reference written plainly here, on random codes and values
 * with every scale byte (subnormal values from scale bytes 0–3, the largest finite 250–254), ties
 * between E2M1 values, −0, f32 subnormals, groups at the quantizer's floor, and values past f32
 * (Inf, NaN) refused in the same line. Then one expert in DeepSeek's names with a PEFT LoRA
 * (`target_parameters`), merged through the pipeline on each kind of backend (WebGPU too, its CPU
 * executor's threads doing the FP4 rows): float64 truth's bytes.
 */
import { describe, expect, it } from 'vitest';
import { deepseekPowerOfTwoScale, e8m0Byte, e8m0Value, fp4Quantize, fp4QuantizeOn, fp4ViewTensor, type Fp4Weight } from '../src/formats/deepseek-v4-fp4.js';
import { decodeSourceRows, type RowSource } from '../src/formats/row-decoders.js';
import { MergeError } from '../src/errors.js';
import { seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { threadBackends } from './helpers/thread-backends.js';
import { hfModelFolder, peftFolder, prepareOne } from './helpers/hf-folder.js';
import { rawTensors } from './helpers/fp8-checkpoint-fixtures.js';
import { fp4QuantizeTruth } from './helpers/deepseek-fp4-truth.js';
import { createBlobOutputTarget, mergeModel, type MergeBackend } from '../src/index.js';
import { createWebGpuBackend } from '../src/engine/create-backend.js';
import { getNodeGpu } from '../src/engine/gpu/node-gpu.js';

const threads = threadBackends();
const rand = seededRandom(20261208);
const MAGNITUDES = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/** The value of code c (code 8, −0, read as +0) times 2^(s − 127), in float64. */
const truthValue = (c: number, s: number) => (c === 8 ? 0 : (c & 8 ? -1 : 1) * MAGNITUDES[c & 7] * 2 ** (s - 127));

/** The decoder this file checks against, as it was: value by value, f32(code × 2^(s − 127)), a value past f32 refused. */
function previousDecode(packed: Uint8Array, scales: Uint8Array, cols: number, r0: number): Float32Array {
  const values = new Float32Array(packed.length * 2);
  for (let i = 0; i < values.length; i++) {
    const byte = packed[i >> 1];
    const code = i & 1 ? byte >> 4 : byte & 0x0f;
    const s = scales[Math.floor(i / 32)];
    const v = Math.fround((code === 8 ? 0 : (code & 8 ? -1 : 1) * MAGNITUDES[code & 7]) * e8m0Value(s));
    if (!Number.isFinite(v)) {
      const row = r0 + Math.floor(i / cols), col = i % cols;
      throw new Error(`model: tensor "e.scale" holds ${s === 255 ? "255 (E8M0's NaN)" : `the scale 2^${s - 127}`} for row ${row}, inputs ${col - (col % 32)}–${col - (col % 32) + 31} of e.weight, whose value there is ${v}, not a finite float32 weight`);
    }
    values[i] = v;
  }
  return values;
}

/** The quantizer this file checks against, as it was: each code the nearest E2M1 value by search, ties to the even code. */
function previousCode(q: number): number {
  const sign = q < 0 || Object.is(q, -0) ? 8 : 0;
  const a = Math.min(Math.abs(q), 6);
  let best = 0;
  for (let c = 1; c < 8; c++) {
    const d = Math.abs(MAGNITUDES[c] - a), db = Math.abs(MAGNITUDES[best] - a);
    if (d < db || (d === db && (c & 1) === 0)) best = c;
  }
  return sign | best;
}
function previousQuantize(weightKey: string, values: Float32Array, rowStart: number, cols: number, scaleBytes: Uint8Array): Uint8Array {
  const rows = values.length / cols;
  const groups = cols / 32;
  const out = new Uint8Array((rows * cols) / 2);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const at = r * cols + g * 32;
      let amax = 0;
      for (let k = 0; k < 32; k++) amax = Math.max(amax, Math.abs(values[at + k]));
      const s = deepseekPowerOfTwoScale(amax, 6, 6 * 2 ** -126);
      if (!(s >= 2 ** -127 && s <= 2 ** 127)) {
        throw new MergeError('NON_FINITE', `tensor "${weightKey}": its merged row ${rowStart + r}, inputs ${g * 32}–${g * 32 + 31} (largest magnitude ${amax}) needs an FP4 scale past E8M0's range; merge with --dtype bf16 (or f16, f32) to write the weights dequantized`);
      }
      scaleBytes[(rowStart + r) * groups + g] = e8m0Byte(s);
      for (let k = 0; k < 32; k += 2) out[(at + k) >> 1] = previousCode(values[at + k] / s) | (previousCode(values[at + k + 1] / s) << 4);
    }
  }
  return out;
}

/** Random packed codes, and scale bytes drawn from `pick`. */
function randomFp4(rows: number, cols: number, pick: () => number): { packed: Uint8Array; scales: Uint8Array } {
  return {
    packed: Uint8Array.from({ length: (rows * cols) / 2 }, () => Math.floor(rand() * 256)),
    scales: Uint8Array.from({ length: (rows * cols) / 32 }, pick),
  };
}
/** Scale bytes: subnormal values (0–3), the largest finite for every code (250–252), and the usual 110–130. */
const anyFiniteScale = () => { const k = rand(); return k < 0.2 ? Math.floor(rand() * 4) : k < 0.4 ? 250 + Math.floor(rand() * 3) : 110 + Math.floor(rand() * 21); };

/** The 2-bit-mantissa float64 truth of the codes, as f32. */
function truth(packed: Uint8Array, scales: Uint8Array): Float32Array {
  return Float32Array.from({ length: packed.length * 2 }, (_, i) => truthValue(i & 1 ? packed[i >> 1] >> 4 : packed[i >> 1] & 15, scales[Math.floor(i / 32)]));
}

/** The first byte at which two arrays differ (their lengths, where those do), or −1: a plain loop, as toEqual on 10⁵ elements takes seconds. */
function firstDifference(a: ArrayBufferView, b: ArrayBufferView): number {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength), y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length) return Math.min(x.length, y.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}
const sameBits = (a: ArrayBufferView, b: ArrayBufferView) => expect(firstDifference(a, b)).toBe(-1);

/** A weight of rows × cols over the given bytes, as the view reads it. */
function viewOf(rows: number, cols: number, packed: Uint8Array, scales: Uint8Array) {
  const w: Fp4Weight = { key: 'e.weight', scaleKey: 'e.scale', rows, cols, storedDtype: 'I8', storedShape: [rows, cols / 2] };
  const base = {
    name: 'model',
    async readPart(key: string, start: number, length: number) {
      return (key === 'e.weight' ? packed : scales).slice(start, start + length);
    },
  };
  return fp4ViewTensor(base as unknown as Parameters<typeof fp4ViewTensor>[0], w);
}

/**
 * Merged values W' (f32) of every kind the quantizer meets: random spreads, E2M1 midpoints of the
 * group's scale (ties), −0 and negatives that round to −0, f32 subnormals, groups of zeros and at
 * the floor, and the largest f32 magnitudes.
 */
function mergedValues(rows: number, cols: number): Float32Array {
  const values = new Float32Array(rows * cols);
  const midpoints = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 5.5, 6, 7];
  for (let g = 0; g < values.length / 32; g++) {
    const at = g * 32, kind = g % 7;
    const e = Math.floor(rand() * 250) - 124;
    for (let k = 0; k < 32; k++) {
      const sign = rand() < 0.5 ? -1 : 1;
      if (kind === 0) values[at + k] = sign * rand() * 2 ** (Math.floor(rand() * 40) - 20);
      // Ties: 6·2^e sets the scale to 2^e exactly; the rest are midpoints between E2M1 values.
      else if (kind === 1) values[at + k] = k === 0 ? 6 * 2 ** Math.min(e, 125) : sign * midpoints[Math.floor(rand() * midpoints.length)] * 2 ** Math.min(e, 125);
      else if (kind === 2) values[at + k] = k === 0 ? 6 : k % 3 === 0 ? -0 : sign * rand() * 0.2;
      else if (kind === 3) values[at + k] = sign * Math.floor(rand() * 2 ** 20) * 2 ** -149; // f32 subnormals: the floor scale
      else if (kind === 4) values[at + k] = k % 2 ? -0 : 0;
      else if (kind === 5) values[at + k] = sign * (3.4028234663852886e38 - rand() * 1e37); // near f32's largest
      else values[at + k] = sign * rand() * 2 ** e;
    }
  }
  return values;
}

describe("DeepSeek-V4's FP4 experts on the worker threads: the bytes of the value-by-value code and of float64 truth", () => {
  it('decodes every code with every finite scale byte as the previous decoder and float64 do, on any thread and for any byte range', async () => {
    const rows = 96, cols = 2048; // 196 Ki values: above the pool's floor
    const { packed, scales } = randomFp4(rows, cols, anyFiniteScale);
    // Every code beside every scale byte 0–252 at least once.
    for (let s = 0; s < 253; s++) scales[s] = s;
    for (let i = 0; i < 16 * 253; i++) packed[i] = (i % 16) | ((i * 7) % 16) << 4;
    const want = truth(packed, scales);
    sameBits(previousDecode(packed, scales, cols, 0), want);
    const source: RowSource = { name: 'e.weight', model: 'model', decoder: 'deepseek-fp4', cols, firstRow: 0, arrays: { codes: new Int8Array(packed.buffer), scales: new Int8Array(scales.buffer) }, params: {} };
    sameBits(decodeSourceRows(source, 0, rows), want);
    const { shared, scratch, single } = threads.three();
    for (const backend of [shared, scratch, single]) {
      const got = (await backend.decodeRows(source, 0, rows)) ?? decodeSourceRows(source, 0, rows);
      sameBits(got, want);
    }
    // The view, through the threads, at whole rows into offered memory and at ragged ranges.
    const view = viewOf(rows, cols, packed, scales);
    const decodeOn = (src: RowSource, r0: number, r1: number, out?: Float32Array) => shared.decodeRows(src, r0, r1, undefined, out);
    for (const [start, length] of [[0, rows * cols * 4], [cols * 4 * 3, cols * 4 * 40], [4 * 37, 4 * 5000], [cols * 4 * 95 + 8, cols * 4 - 8]]) {
      const wantBytes = new Uint8Array(want.buffer, start, length);
      const into = new Uint8Array(new SharedArrayBuffer(length));
      sameBits(await view.readPart(start, length, into, decodeOn), wantBytes);
      sameBits(into, wantBytes);
      sameBits(await view.readPart(start, length), wantBytes);
    }
  });

  it('decodes rows holding scale bytes 253 and 254 where their values are finite, and refuses a value past f32 or a scale 255 in the same line as before', async () => {
    const rows = 4, cols = 64;
    const { packed, scales } = randomFp4(rows, cols, () => 120);
    scales[3] = 254; // 2^127: codes ±0, ±½, ±1, ±1½ finite
    scales[5] = 253; // 2^126: codes up to ±3 finite
    for (let i = 48; i < 64; i++) packed[i] = (i % 4) | ((i % 3) << 4) | 0x88;
    for (let i = 80; i < 96; i++) packed[i] = (i % 6) | ((5 - (i % 6)) << 4);
    const want = truth(packed, scales);
    const view = viewOf(rows, cols, packed, scales);
    sameBits(await view.readPart(0, rows * cols * 4), want);
    for (const [at, byte, scale] of [[50, 0x07, 254], [82, 0x60, 253], [33, 0x11, 255]] as const) {
      const p = packed.slice(), s = scales.slice();
      p[at] = byte;
      s[Math.floor((at * 2) / 32)] = scale;
      const message = (() => { try { previousDecode(p, s, cols, 0); } catch (e) { return (e as Error).message; } })();
      expect(message).toMatch(/not a finite float32 weight/);
      await expect(viewOf(rows, cols, p, s).readPart(0, rows * cols * 4)).rejects.toThrow(message!);
    }
  });

  it('quantizes W\' as the previous quantizer and float64 truth do (ties, −0, subnormals, the floor, the largest f32), on any thread, rows cut anywhere', async () => {
    const rows = 80, cols = 1024; // 80 Ki values: above the pool's floor
    const values = mergedValues(rows, cols);
    const [wantCodes, wantScales] = fp4QuantizeTruth(values);
    const previousScales = new Uint8Array(rows * cols / 32);
    sameBits(previousQuantize('e.weight', values, 0, cols, previousScales), wantCodes);
    sameBits(previousScales, wantScales);
    // Every code, each midpoint, −0 (code 8), the floor scale (byte 1) and byte 253 were met.
    const nibbles = new Set([...wantCodes].flatMap((b) => [b & 15, b >> 4]));
    expect(nibbles.size).toBe(16);
    expect(new Set(wantScales).has(1) && new Set(wantScales).has(253)).toBe(true);
    const scales = new Uint8Array(rows * cols / 32);
    sameBits(fp4Quantize('e.weight', values, 0, cols, scales), wantCodes);
    sameBits(scales, wantScales);
    const { shared, scratch, single } = threads.three();
    for (const backend of [shared, scratch, single]) {
      const into = new Uint8Array(new SharedArrayBuffer(rows * cols / 32 + 64));
      // A slab of rows 16… of a longer weight: its scale bytes land from row 16's.
      const slab = values.subarray(16 * cols);
      const codes = await fp4QuantizeOn(backend, 'e.weight', slab, 16, cols, into);
      sameBits(codes, wantCodes.subarray(16 * cols / 2));
      sameBits(into.subarray(16 * cols / 32, rows * cols / 32), wantScales.subarray(16 * cols / 32));
    }
  });

  it('refuses a W\' past f32 or NaN in the previous quantizer\'s line, naming the first such group, on any thread', async () => {
    const rows = 80, cols = 1024;
    for (const bad of [Infinity, -Infinity, NaN]) {
      const values = mergedValues(rows, cols);
      values[37 * cols + 300] = bad;
      values[60 * cols + 5] = bad;
      const message = (() => { try { previousQuantize('e.weight', values, 8, cols, new Uint8Array((rows + 8) * cols / 32)); } catch (e) { return (e as Error).message; } })();
      expect(message).toContain('its merged row 45, inputs 288–319');
      expect(() => fp4Quantize('e.weight', values, 8, cols, new Uint8Array((rows + 8) * cols / 32))).toThrow(message!);
      for (const backend of Object.values(threads.three())) {
        await expect(fp4QuantizeOn(backend, 'e.weight', values, 8, cols, new Uint8Array(new SharedArrayBuffer((rows + 8) * cols / 32)))).rejects.toThrow(message!);
      }
    }
    expect(e8m0Value(255)).toBeNaN();
  });

  it('an expert merged through the pipeline on two threads (shared slabs, the pool\'s scratch), on one and on WebGPU: float64 truth\'s codes and scales each way', async () => {
    // One routed expert's w2 (hidden 512, moe_intermediate 256) in DeepSeek's names, slabs of 75 000 values (above the pool's floor).
    const HIDDEN = 512, INTER = 256, r = 2;
    const { packed, scales } = randomFp4(HIDDEN, INTER, () => 119 + Math.floor(rand() * 5));
    const stem = 'layers.0.ffn.experts.0.w2';
    const base: FixtureTensor[] = [
      { name: `${stem}.weight`, dtype: 'I8', shape: [HIDDEN, INTER / 2], data: packed },
      { name: `${stem}.scale`, dtype: 'F8_E8M0' as FixtureDType, shape: [HIDDEN, INTER / 32], data: scales },
    ];
    const config = {
      architectures: ['DeepseekV4ForCausalLM'], model_type: 'deepseek_v4', torch_dtype: 'bfloat16', hidden_size: HIDDEN, num_hidden_layers: 1, n_routed_experts: 1,
      moe_intermediate_size: INTER, vocab_size: 16, expert_dtype: 'fp4',
      quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', scale_fmt: 'ue8m0', weight_block_size: [128, 128] },
    };
    const A = Float64Array.from({ length: r * INTER }, () => Math.round((rand() * 2 - 1) * 64) / 1024);
    const B = Float64Array.from({ length: HIDDEN * r }, () => Math.round((rand() * 2 - 1) * 64) / 1024);
    const adapter = peftFolder({ r, lora_alpha: 4, peft_version: '0.19.1', target_modules: [], target_parameters: ['mlp.experts.down_proj'] }, [
      { name: 'base_model.model.model.layers.0.mlp.experts.lora_A.weight', dtype: 'F32', shape: [r, INTER], data: A },
      { name: 'base_model.model.model.layers.0.mlp.experts.lora_B.weight', dtype: 'F32', shape: [HIDDEN, r], data: B },
    ]);
    // W' = code × 2^(s − 127) + 2·B·A in float64, rounded once to f32, quantized as DeepSeek's kernel.
    const real = truth(packed, scales);
    const merged = Float32Array.from(real, (v, i) => {
      const o = Math.floor(i / INTER), c = i % INTER;
      let d = 0;
      for (let k = 0; k < r; k++) d += B[o * r + k] * A[k * INTER + c];
      return v + 2 * d;
    });
    const [wantCodes, wantScales] = fp4QuantizeTruth(merged);
    const mergeOn = async (backend: MergeBackend) => {
      const prepared = await prepareOne(hfModelFolder(base, config), adapter);
      const output = createBlobOutputTarget();
      try {
        expect(prepared.plan.problems).toEqual([]);
        await mergeModel({ prepared, output, backend, slabBytes: 300_000 });
      } finally {
        await prepared.close();
      }
      const file = output.files().find((f) => f.path === 'model.safetensors')!;
      return rawTensors(new Uint8Array(await file.blob.arrayBuffer()));
    };
    const { shared, scratch, single } = threads.three();
    for (const backend of [shared, scratch, single]) {
      const out = await mergeOn(backend);
      sameBits(out.get(`${stem}.weight`)!.bytes, wantCodes);
      sameBits(out.get(`${stem}.scale`)!.bytes, wantScales);
    }
    // WebGPU hands the FP4 rows to its CPU executor's threads (Dawn's adapter here; none: nothing to check).
    const nodeGpu = await getNodeGpu();
    const pool = threads.pool(2, { sharedSlabs: false });
    const gpu = await createWebGpuBackend(nodeGpu.gpu, undefined, () => pool).catch((e: unknown) => {
      if ((e as { code?: string }).code === 'GPU_UNAVAILABLE') return undefined;
      throw e;
    });
    if (gpu) {
      try {
        const out = await mergeOn(gpu);
        sameBits(out.get(`${stem}.weight`)!.bytes, wantCodes);
        sameBits(out.get(`${stem}.scale`)!.bytes, wantScales);
        expect([pool.sent.decodePieces > 0, pool.sent.comfyCodePieces > 0]).toEqual([true, true]);
      } finally {
        gpu.dispose();
      }
    }
  });
});
