/**
 * LoRAs merged into integer weight-only quantized LLM checkpoints, with the tensors, dtypes and
 * config.json `quantization_config` blocks their tools write:
 * - compressed-tensors `pack-quantized` (RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16):
 *   `<m>.weight_packed` I32 (out, ⌈in/p⌉), `<m>.weight_scale` BF16 (out, groups), `<m>.weight_shape`
 *   I64 (2,), asymmetric schemes `<m>.weight_zero_point` I32 packed along the outputs, act-order
 *   `<m>.weight_g_idx` I32 (in); `int-quantized` (…-quantized.w8a8): `<m>.weight` I8 and
 *   `<m>.weight_scale` (out, 1);
 * - GPTQ (hugging-quants/Meta-Llama-3.1-8B-Instruct-GPTQ-INT4): `<m>.qweight` I32 (in/p, out),
 *   `<m>.qzeros` I32 (groups, out/p), `<m>.scales` F16 (groups, out), `<m>.g_idx` I32 (in);
 * - AWQ GEMM (hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4): `<m>.qweight` I32 (in, out/8) in
 *   AWQ's nibble order, `<m>.qzeros` I32 (groups, out/8), `<m>.scales` F16 (groups, out).
 * The fixtures are made from integer codes drawn here and packed as each format defines; the truth
 * is W = (q − zero) × scale of the input's group from those codes, in float64, plus weight · α/r ·
 * B·A, rounded once. Written only dequantized (--dtype); both backends; odd sizes, ragged last
 * groups, act-order permutations; slabs small enough that every weight streams in several.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { mergeFolders } from './helpers/cli.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { mergeSingleFile } from './helpers/single-file-merge.js';
import { peftUpdates } from './helpers/lora-truth.js';
import { hfModelFolder, readMergedFolder } from './helpers/hf-folder.js';
import { AWQ_ORDER, pack, packGptq3 } from './helpers/int-packing.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const rand = seededRandom(20261202);
const L = 'model.layers.0';
const Q = `${L}.self_attn.q_proj`;
const K = `${L}.self_attn.k_proj`;
const V = `${L}.self_attn.v_proj`;
const MODULES = [Q, K, V];
const WEIGHT = 0.8;

type Files = Record<string, Uint8Array | string>;

/** A base made here: its files and, per module, its real weight (out × in, float64). */
interface IntCase {
  name: string;
  files: Files;
  rows: Record<string, number>;
  cols: number;
  real: Map<string, Float64Array>;
  /** What the plan's note calls its weights. */
  note: RegExp;
}

const randomInt = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const randomScale = (dtype: 'F16' | 'BF16') => roundForDType(0.0005 + rand() * 0.02, dtype);
/** A random permutation of 0…n−1. */
function permutation(n: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

const plainTensors = (cols: number): FixtureTensor[] => [
  { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [48, cols], data: Array.from(randomValues(48 * cols, rand), (x) => roundForDType(x, 'BF16')) },
  { name: 'lm_head.weight', dtype: 'BF16', shape: [48, cols], data: Array.from(randomValues(48 * cols, rand), (x) => roundForDType(x, 'BF16')) },
];
const llamaConfig = (cols: number, quantization: Record<string, unknown>, torchDtype = 'bfloat16') => JSON.stringify({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: cols, torch_dtype: torchDtype, quantization_config: quantization,
});

// --- compressed-tensors --------------------------------------------------------------------------

interface PackedScheme { bits: number; strategy: 'group' | 'channel'; group?: number; symmetric: boolean; actorder?: 'group' }

function compressedTensorsPacked(s: PackedScheme): IntCase {
  const cols = 212; // 7 groups of 32, the last one 20 inputs; at 4 bits 27 words of 8 nibbles, 4 of them padding
  const rows: Record<string, number> = { [Q]: 37, [K]: 21, [V]: 21 };
  const tensors = plainTensors(cols);
  const real = new Map<string, Float64Array>();
  const half = 2 ** (s.bits - 1);
  for (const m of MODULES) {
    const n = rows[m];
    const groups = s.strategy === 'group' ? Math.ceil(cols / s.group!) : 1;
    const q = Array.from({ length: n * cols }, () => randomInt(-half, half - 1));
    const z = s.symmetric ? undefined : Array.from({ length: n * groups }, () => randomInt(-half, half - 1));
    const scale = Array.from({ length: n * groups }, () => randomScale('BF16'));
    const perm = s.actorder ? permutation(cols) : undefined;
    const groupOf = (c: number) => (s.strategy === 'channel' ? 0 : Math.floor((perm ? perm[c] : c) / s.group!));
    const w = new Float64Array(n * cols);
    for (let r = 0; r < n; r++) for (let c = 0; c < cols; c++) {
      const g = groupOf(c);
      w[r * cols + c] = (q[r * cols + c] - (z ? z[r * groups + g] : 0)) * scale[r * groups + g];
    }
    real.set(m, w);
    // Stored unsigned: q + 2^(bits−1), the zero point likewise.
    const packed = pack(q.map((x) => x + half), n, cols, s.bits, 'cols');
    tensors.push({ name: `${m}.weight_packed`, dtype: 'I32', ...packed });
    tensors.push({ name: `${m}.weight_scale`, dtype: 'BF16', shape: [n, groups], data: scale });
    tensors.push({ name: `${m}.weight_shape`, dtype: 'I64', shape: [2], data: [n, cols] });
    if (z) tensors.push({ name: `${m}.weight_zero_point`, dtype: 'I32', ...pack(z.map((x) => x + half), n, groups, s.bits, 'rows') });
    if (perm) tensors.push({ name: `${m}.weight_g_idx`, dtype: 'I32', shape: [cols], data: Array.from({ length: cols }, (_, c) => groupOf(c)) });
  }
  const quantization = {
    config_groups: {
      group_0: {
        input_activations: null, output_activations: null, targets: ['Linear'],
        weights: {
          actorder: s.actorder ?? null, block_structure: null, dynamic: false, group_size: s.group ?? null, num_bits: s.bits, observer: 'minmax',
          observer_kwargs: {}, strategy: s.strategy, symmetric: s.symmetric, type: 'int',
        },
      },
    },
    format: 'pack-quantized', global_compression_ratio: 1.89, ignore: ['lm_head'], kv_cache_scheme: null, quant_method: 'compressed-tensors', quantization_status: 'compressed',
  };
  return {
    name: `compressed-tensors pack-quantized W${s.bits}A16 ${s.strategy}${s.group ? ` ${s.group}` : ''} ${s.symmetric ? 'symmetric' : 'asymmetric'}${s.actorder ? ' act-order' : ''}`,
    files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(cols, quantization) }, rows, cols, real,
    note: /3 compressed-tensors int weights/,
  };
}

/** W8A8: per output channel and symmetric, or (`tensor`) one scale and one zero point per tensor. */
function compressedTensorsInt8(strategy: 'channel' | 'tensor' = 'channel'): IntCase {
  const cols = 203;
  const rows: Record<string, number> = { [Q]: 37, [K]: 21, [V]: 21 };
  const tensors = plainTensors(cols);
  const real = new Map<string, Float64Array>();
  for (const m of MODULES) {
    const n = rows[m];
    const q = Array.from({ length: n * cols }, () => randomInt(-128, 127));
    const scale = Array.from({ length: strategy === 'channel' ? n : 1 }, () => randomScale('BF16'));
    const zero = strategy === 'tensor' ? randomInt(-20, 20) : 0;
    real.set(m, Float64Array.from(q, (x, i) => (x - zero) * scale[strategy === 'channel' ? Math.floor(i / cols) : 0]));
    tensors.push({ name: `${m}.weight`, dtype: 'I8', shape: [n, cols], data: q });
    tensors.push({ name: `${m}.weight_scale`, dtype: 'BF16', shape: strategy === 'channel' ? [n, 1] : [1], data: scale });
    if (strategy === 'tensor') tensors.push({ name: `${m}.weight_zero_point`, dtype: 'I8', shape: [1], data: [zero] });
    // Static asymmetric activations: a scale and a zero point per tensor, for the runtime only.
    tensors.push({ name: `${m}.input_scale`, dtype: 'BF16', shape: [1], data: [roundForDType(0.0213, 'BF16')] });
    tensors.push({ name: `${m}.input_zero_point`, dtype: 'I8', shape: [1], data: [-3] });
  }
  const int8 = { num_bits: 8, observer: 'minmax', observer_kwargs: {}, symmetric: true, type: 'int', dynamic: false, group_size: null, block_structure: null, actorder: null };
  const quantization = {
    config_groups: {
      group_0: {
        input_activations: { ...int8, strategy: 'tensor', symmetric: false }, output_activations: null, targets: ['Linear'],
        weights: { ...int8, strategy, symmetric: strategy === 'channel' },
      },
    },
    format: 'int-quantized', global_compression_ratio: 1.46, ignore: ['lm_head'], kv_cache_scheme: null, quant_method: 'compressed-tensors', quantization_status: 'compressed',
  };
  return {
    name: `compressed-tensors int-quantized W8A8 ${strategy === 'channel' ? 'channel symmetric' : 'tensor asymmetric'}, static activations`, files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(cols, quantization) },
    rows, cols, real, note: /3 compressed-tensors int weights/,
  };
}

// --- GPTQ ----------------------------------------------------------------------------------------

interface GptqScheme { bits: 2 | 3 | 4 | 8; group: number; descAct: boolean; sym: boolean; format: 'gptq' | 'gptq_v2'; rows?: Record<string, number> }

/**
 * 2, 4 and 8 bits: q_proj 40 outputs, k_proj and v_proj 24 (ragged last words of qzeros). 3 bits:
 * AutoGPTQ and GPTQModel pack 32 values into 3 words on both axes, so 3, 1 and 5 runs of 32 outputs.
 */
const gptqRows = (bits: number): Record<string, number> => (bits === 3 ? { [Q]: 96, [K]: 32, [V]: 160 } : { [Q]: 40, [K]: 24, [V]: 24 });

function gptq(s: GptqScheme): IntCase {
  const cols = 224; // inputs: 7 groups of 32, 4 of 64 or 2 of 128 with a ragged last one, or one (group_size −1); 7 runs of 32 at 3 bits
  const rows = s.rows ?? gptqRows(s.bits);
  const tensors = plainTensors(cols);
  const real = new Map<string, Float64Array>();
  const max = 2 ** s.bits - 1;
  const size = s.group === -1 ? cols : s.group;
  const groups = Math.ceil(cols / size);
  const packed = (values: number[], r: number, c: number, axis: 'rows' | 'cols') => (s.bits === 3 ? packGptq3(values, r, c, axis) : pack(values, r, c, s.bits, axis));
  for (const m of MODULES) {
    const n = rows[m];
    const perm = s.descAct ? permutation(cols) : undefined;
    const gIdx = Array.from({ length: cols }, (_, i) => Math.floor((perm ? perm[i] : i) / size));
    const q = Array.from({ length: cols * n }, () => randomInt(0, max)); // (in, out)
    // v1 stores zero − 1, so its zero points are 1…2^bits − 1; symmetric: 2^(bits−1).
    const z = Array.from({ length: groups * n }, () => (s.sym ? 2 ** (s.bits - 1) : randomInt(s.format === 'gptq' ? 1 : 0, max)));
    const scale = Array.from({ length: groups * n }, () => randomScale('F16'));
    const w = new Float64Array(n * cols);
    for (let o = 0; o < n; o++) for (let i = 0; i < cols; i++) {
      const g = gIdx[i];
      w[o * cols + i] = (q[i * n + o] - z[g * n + o]) * scale[g * n + o];
    }
    real.set(m, w);
    tensors.push({ name: `${m}.qweight`, dtype: 'I32', ...packed(q, cols, n, 'rows') });
    tensors.push({ name: `${m}.qzeros`, dtype: 'I32', ...packed(z.map((x) => (s.format === 'gptq' ? x - 1 : x)), groups, n, 'cols') });
    tensors.push({ name: `${m}.scales`, dtype: 'F16', shape: [groups, n], data: scale });
    tensors.push({ name: `${m}.g_idx`, dtype: 'I32', shape: [cols], data: gIdx });
  }
  const quantization = {
    bits: s.bits, checkpoint_format: s.format, damp_percent: 0.1, desc_act: s.descAct, group_size: s.group, model_file_base_name: null,
    model_name_or_path: null, quant_method: 'gptq', static_groups: false, sym: s.sym, true_sequential: true,
  };
  // AutoGPTQ's own copy of the config, which a dequantized model must not keep.
  const { quant_method: _, ...quantizeConfig } = quantization;
  return {
    name: `GPTQ ${s.bits}-bit group ${s.group}${s.descAct ? ' desc_act' : ''} ${s.sym ? 'sym' : 'asym'} ${s.format}`,
    files: {
      'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(cols, quantization, 'float16'),
      'quantize_config.json': JSON.stringify({ ...quantizeConfig, model_file_base_name: 'model' }),
    },
    rows, cols, real,
    note: /3 GPTQ weights/,
  };
}

// --- AWQ -----------------------------------------------------------------------------------------


function awq(group: number): IntCase {
  const cols = 224;
  const rows: Record<string, number> = { [Q]: 40, [K]: 24, [V]: 24 };
  const tensors = plainTensors(cols);
  const real = new Map<string, Float64Array>();
  const groups = cols / group;
  for (const m of MODULES) {
    const n = rows[m];
    const q = Array.from({ length: cols * n }, () => randomInt(0, 15)); // (in, out)
    const z = Array.from({ length: groups * n }, () => randomInt(0, 15));
    const scale = Array.from({ length: groups * n }, () => randomScale('F16'));
    const w = new Float64Array(n * cols);
    for (let o = 0; o < n; o++) for (let i = 0; i < cols; i++) {
      const g = Math.floor(i / group);
      w[o * cols + i] = (q[i * n + o] - z[g * n + o]) * scale[g * n + o];
    }
    real.set(m, w);
    tensors.push({ name: `${m}.qweight`, dtype: 'I32', ...pack(q, cols, n, 4, 'cols', AWQ_ORDER) });
    tensors.push({ name: `${m}.qzeros`, dtype: 'I32', ...pack(z, groups, n, 4, 'cols', AWQ_ORDER) });
    tensors.push({ name: `${m}.scales`, dtype: 'F16', shape: [groups, n], data: scale });
  }
  const quantization = { bits: 4, group_size: group, modules_to_not_convert: null, quant_method: 'awq', version: 'gemm', zero_point: true };
  return {
    name: `AWQ GEMM 4-bit group ${group}`, files: { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(cols, quantization, 'float16') },
    rows, cols, real, note: /3 AWQ GEMM weights/,
  };
}

// --- the adapter: PEFT LoRA, r = 16 on q_proj, r = 1 on v_proj ------------------------------------

function peftLora(rows: Record<string, number>, cols: number): Files {
  const tensors: FixtureTensor[] = [Q, V].flatMap((m): FixtureTensor[] => {
    const r = m === Q ? 16 : 1;
    return [
      { name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32', shape: [r, cols], data: Array.from(randomValues(r * cols, rand, 0.3), Math.fround) },
      { name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32', shape: [rows[m], r], data: Array.from(randomValues(rows[m] * r, rand, 0.3), Math.fround) },
    ];
  });
  return {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 16, lora_alpha: 16, rank_pattern: { 'model.layers.0.self_attn.v_proj': 1 }, target_modules: ['q_proj', 'v_proj'] }),
    'adapter_model.safetensors': buildSafetensors(tensors),
  };
}

const backends = mergeBackends({ cpu: 'default' });

const merge = (base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, backend: MergeBackend, outDtype?: string) =>
  mergeSingleFile(base, adapter, backend, WEIGHT, outDtype);

const temp = tempDirs();
afterAll(temp.removeAll);

const CASES: IntCase[] = [
  compressedTensorsPacked({ bits: 4, strategy: 'group', group: 32, symmetric: true }),
  compressedTensorsPacked({ bits: 4, strategy: 'group', group: 32, symmetric: false }),
  compressedTensorsPacked({ bits: 4, strategy: 'group', group: 32, symmetric: true, actorder: 'group' }),
  compressedTensorsPacked({ bits: 8, strategy: 'channel', symmetric: false }),
  // Other widths pack ⌊32/num_bits⌋ values to a word and leave its top bits unused (pack_to_int32),
  // unlike GPTQ's 3-bit runs across words: 3 bits 10 a word (2 bits spare), 6 bits 5 (2 spare), 2 bits 16.
  compressedTensorsPacked({ bits: 3, strategy: 'group', group: 32, symmetric: false, actorder: 'group' }),
  compressedTensorsPacked({ bits: 6, strategy: 'channel', symmetric: false }),
  compressedTensorsPacked({ bits: 2, strategy: 'group', group: 32, symmetric: true }),
  compressedTensorsInt8(),
  compressedTensorsInt8('tensor'),
  gptq({ bits: 4, group: 32, descAct: false, sym: true, format: 'gptq' }),
  gptq({ bits: 4, group: 64, descAct: true, sym: false, format: 'gptq' }),
  gptq({ bits: 8, group: 32, descAct: true, sym: false, format: 'gptq_v2' }),
  gptq({ bits: 2, group: 64, descAct: false, sym: false, format: 'gptq_v2' }),
  // 3 bits: TheBloke's gptq-3bit-128g-actorder_True branches (AutoGPTQ), GPTQModel's v2 exports.
  gptq({ bits: 3, group: 128, descAct: true, sym: true, format: 'gptq' }),
  gptq({ bits: 3, group: 32, descAct: false, sym: false, format: 'gptq' }),
  gptq({ bits: 3, group: 64, descAct: true, sym: false, format: 'gptq_v2' }),
  gptq({ bits: 3, group: -1, descAct: false, sym: false, format: 'gptq_v2' }),
  awq(32),
];

describe.each(CASES)('$name', (c) => {
  const adapter = peftLora(c.rows, c.cols);
  const updates = peftUpdates(adapter['adapter_config.json'] as string, adapter['adapter_model.safetensors'] as Uint8Array);
  const truth = (m: string) => {
    const w = Float64Array.from(c.real.get(m)!);
    const d = updates.get(m);
    if (d) for (let i = 0; i < w.length; i++) w[i] += WEIGHT * d.data[i];
    return w;
  };

  for (const backendName of ['cpu', 'webgpu']) {
    it(`on ${backendName}: --dtype bf16 and f32 write W + ΔW rounded once, every quantized weight dequantized, the quantization tensors and config gone`, async () => {
      for (const dtype of ['BF16', 'F32'] as const) {
        const { weights, config, paths } = await merge(c.files, adapter, backends[backendName]!, dtype.toLowerCase());
        expect(config.quantization_config).toBeUndefined();
        expect(paths).toEqual(['config.json', 'model.safetensors']);
        expect(config.torch_dtype).toBe(dtype === 'BF16' ? 'bfloat16' : 'float32');
        expect([...weights.keys()].sort()).toEqual(['lm_head.weight', 'model.embed_tokens.weight', ...MODULES.map((m) => `${m}.weight`)].sort());
        for (const m of MODULES) {
          const w = weights.get(`${m}.weight`)!;
          expect([w.dtype, w.shape], m).toEqual([dtype, [c.rows[m], c.cols]]);
          // f32: where the float64 truth (off by a few 2^-53 of itself) straddles a rounding boundary, either neighbour.
          const near = (x: number, got: number) => (dtype === 'BF16' ? [x] : [x, x * (1 + 2 ** -50), x * (1 - 2 ** -50)]).some((t) => roundForDType(t, dtype) === got);
          const real = truth(m);
          const wrong = real.findIndex((x, i) => !near(x, w.values[i]));
          expect(wrong, `${m} in ${dtype}: element ${wrong} is ${w.values[wrong]}, expected ${real[wrong]}`).toBe(-1);
        }
      }
    });
  }

  it('the plan says how it is merged; without --dtype (or with an fp8 one) the CLI refuses in one line and writes nothing', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(c.files, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
    await prepared.close();
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes.join('\n')).toMatch(c.note);
    expect(prepared.plan.notes.join('\n')).toMatch(/written dequantized, with --dtype bf16 \(or f16, f32\) only/);
    for (const extra of [[], ['--dtype', 'f8_e5m2']]) {
      const { run, out, lines } = await mergeFolders(temp.make, c.files, adapter, extra);
      expect(run.code, extra.join(' ')).not.toBe(0);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/weights are written only dequantized .*merge with --dtype bf16 \(or f16, f32\)/);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('--dtype bf16 --dtype-merged-only: one line naming its own kind, offering no --dtype-less merge (it is refused), nothing written', async () => {
    const [kind, format] = c.name.startsWith('GPTQ') ? ['GPTQ', 'GPTQ'] : c.name.startsWith('AWQ') ? ['AWQ', 'AWQ'] : ['compressed-tensors int', 'compressed-tensors int'];
    const { run, out, lines } = await mergeFolders(temp.make, c.files, adapter, ['--dtype', 'bf16', '--dtype-merged-only']);
    expect(run.code).not.toBe(0);
    expect(lines).toEqual([expect.stringMatching(/^error: .*: --dtype-merged-only /)]);
    expect(lines[0].replace(/^error: .*?: --dtype-merged-only/, '--dtype-merged-only')).toBe(
      `--dtype-merged-only would leave its ${kind} weights half dequantized; leave it out (every ${kind} weight is then dequantized to that dtype: re-quantizing to ${format} is not supported)`,
    );
    expect(existsSync(out)).toBe(false);
  });
});

describe('the 3-bit GPTQ packer of these tests', () => {
  // One run of 32 values: 6 at 0, 5 (0b101) at 10, 7 at 11, 3 (0b011) at 21, 7 at 31, 0 elsewhere.
  // AutoGPTQ's pack(): word 0 = 6 | 5 << 30 (its low 2 bits) = 0x40000006; word 1 = 5 >> 2 (its
  // high bit) | 7 << 1 | 3 << 31 (its low bit) = 0x8000000f; word 2 = 3 >> 1 (its high 2 bits) |
  // 7 << 29 = 0xe0000001; read as int32.
  const values = Array.from({ length: 32 }, (_, j) => ({ 0: 6, 10: 5, 11: 7, 21: 3, 31: 7 } as Record<number, number>)[j] ?? 0);
  const byHand = [0x40000006, 0x8000000f - 2 ** 32, 0xe0000001 - 2 ** 32];
  it('matches words worked out by hand, along the inputs (qweight) and along the outputs (qzeros)', () => {
    expect(packGptq3(values, 32, 1, 'rows')).toEqual({ shape: [3, 1], data: byHand });
    expect(packGptq3(values, 1, 32, 'cols')).toEqual({ shape: [1, 3], data: byHand });
    // A second run and a second column land in words of their own.
    const two = packGptq3([...values.flatMap((x) => [x, 0]), ...values.flatMap((x) => [0, x])], 64, 2, 'rows');
    expect(two).toEqual({ shape: [6, 2], data: [byHand[0], 0, byHand[1], 0, byHand[2], 0, 0, byHand[0], 0, byHand[1], 0, byHand[2]] });
  });
});

describe('a sharded GPTQ base (a weight\'s qweight and g_idx in different shards)', () => {
  const c = gptq({ bits: 4, group: 32, descAct: true, sym: false, format: 'gptq' });
  const stored = decodeSafetensors(c.files['model.safetensors'] as Uint8Array).tensors;
  const tensors = [...stored].map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: Array.from(t.values) }));
  const files = hfModelFolder(tensors, JSON.parse(c.files['config.json'] as string) as object, { shards: 3 });
  const adapter = peftLora(c.rows, c.cols);
  const updates = peftUpdates(adapter['adapter_config.json'] as string, adapter['adapter_model.safetensors'] as Uint8Array);

  it('is merged to the same values, the index mapping only the float weights', async () => {
    const input = (JSON.parse(files['model.safetensors.index.json'] as string) as { weight_map: Record<string, string> }).weight_map;
    expect(MODULES.some((m) => input[`${m}.qweight`] !== input[`${m}.g_idx`])).toBe(true);
    const prepared = await prepareMerge(memoryInputFileSet(files, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
    const output = createBlobOutputTarget();
    try {
      expect(prepared.plan.problems).toEqual([]);
      await mergeModel({ prepared, output, backend: backends.cpu!, outDtype: 'bf16', slabBytes: 4096 });
    } finally {
      await prepared.close();
    }
    const merged = readMergedFolder(new Map(await Promise.all(output.files().map(async (f) => [f.path, new Uint8Array(await f.blob.arrayBuffer())] as const))));
    const index = merged.json('model.safetensors.index.json') as { weight_map: Record<string, string> };
    expect(Object.keys(index.weight_map).sort()).toEqual(['lm_head.weight', 'model.embed_tokens.weight', ...MODULES.map((m) => `${m}.weight`)].sort());
    for (const m of MODULES) {
      const w = Float64Array.from(c.real.get(m)!);
      const d = updates.get(m);
      if (d) for (let i = 0; i < w.length; i++) w[i] += WEIGHT * d.data[i];
      const got = merged.tensors.get(`${m}.weight`)!.values;
      expect(w.findIndex((x, i) => roundForDType(x, 'BF16') !== got[i]), m).toBe(-1);
    }
  });
});

describe('what is not read is refused in one line, naming what, and nothing is written', () => {
  const base = gptq({ bits: 4, group: 32, descAct: false, sym: false, format: 'gptq' });
  const adapter = peftLora(base.rows, base.cols);
  const withConfig = (c: IntCase, edit: (q: Record<string, unknown>) => void): Files => {
    const config = JSON.parse(c.files['config.json'] as string) as { quantization_config: Record<string, unknown> };
    edit(config.quantization_config);
    return { ...c.files, 'config.json': JSON.stringify(config) };
  };
  const awqBase = awq(32);
  const gptq3 = gptq({ bits: 3, group: 32, descAct: false, sym: false, format: 'gptq' });
  /** gptq3 with k_proj at 40 outputs, its qzeros padded to 2 runs (6 words). */
  function gptq3Outputs40(): Files {
    const n = 40;
    const groups = 7;
    const stored = decodeSafetensors(gptq3.files['model.safetensors'] as Uint8Array).tensors;
    const tensors = [...stored].filter(([name]) => !name.startsWith(`${K}.`)).map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: Array.from(t.values) }));
    tensors.push({ name: `${K}.qweight`, dtype: 'I32', ...packGptq3(Array.from({ length: gptq3.cols * n }, (_, i) => i % 8), gptq3.cols, n, 'rows') });
    tensors.push({ name: `${K}.qzeros`, dtype: 'I32', ...packGptq3(Array.from({ length: groups * 64 }, () => 3), groups, 64, 'cols') });
    tensors.push({ name: `${K}.scales`, dtype: 'F16', shape: [groups, n], data: Array.from({ length: groups * n }, () => 0.01) });
    tensors.push({ name: `${K}.g_idx`, dtype: 'I32', shape: [gptq3.cols], data: Array.from({ length: gptq3.cols }, (_, i) => Math.floor(i / 32)) });
    return { ...gptq3.files, 'model.safetensors': buildSafetensors(tensors) };
  }
  const w8a8 = compressedTensorsInt8();
  const w8a16 = compressedTensorsPacked({ bits: 8, strategy: 'channel', symmetric: false });
  const cases: [string, Files, RegExp, Files?][] = [
    ['GPTQ repacked for Marlin', withConfig(base, (q) => { q.checkpoint_format = 'marlin'; }), /quantization_config \(gptq\): checkpoint_format "marlin" .*is not read/],
    ['GPTQ 5-bit', withConfig(base, (q) => { q.bits = 5; }), /quantization_config \(gptq\): bits 5 is not read \(only 2, 3, 4 and 8\)/],
    // 28 words of 4-bit codes are not whole runs of 3 words of 3-bit ones.
    ['GPTQ 4-bit tensors under bits 3', withConfig(base, (q) => { q.bits = 3; }), /q_proj\.weight is not a GPTQ weight as it writes them \(.*q_proj\.qweight is I32 \[28, 40\]; expected I32 \(in\/32·3, out\)/],
    ['GPTQ 3-bit with 40 outputs (not whole runs of 32, which AutoGPTQ and GPTQModel do not write)', gptq3Outputs40(), /k_proj\.weight is not a GPTQ weight as it writes them \(.*k_proj\.qweight has 40 outputs; 3-bit GPTQ packs the zero points of 32 outputs into 3 words/, peftLora(gptq3.rows, gptq3.cols)],
    ['AWQ GEMV', withConfig(awqBase, (q) => { q.version = 'gemv'; }), /quantization_config \(awq\): version "gemv" is not read; only the GEMM layout/],
    // 224 inputs in groups of 36: 7 groups, the last of 8, as the stored scales have them; AutoAWQ's
    // WQLinear_GEMM asserts in_features % group_size == 0, so such a weight is never loaded.
    ['AWQ with inputs not whole groups', withConfig(awqBase, (q) => { q.group_size = 36; }),
      /(q|k|v)_proj\.weight is not a AWQ GEMM weight as it writes them \(.*(q|k|v)_proj\.qweight has 224 inputs, not whole groups of 36/],
    ['compressed-tensors with a sparse format', withConfig(compressedTensorsInt8(), (q) => { q.sparsity_config = { format: 'sparse-24-bitmask' }; }), /sparsity format "sparse-24-bitmask" is not read/],
    // compressed-tensors' decompressor for the config's format reads only that format's tensors.
    ['compressed-tensors int8 weights under format pack-quantized', withConfig(w8a8, (q) => { q.format = 'pack-quantized'; }),
      /tensor "model\.layers\.0\.self_attn\.q_proj\.weight" is stored int-quantized, but config\.json quantization_config says format "pack-quantized"/, peftLora(w8a8.rows, w8a8.cols)],
    ['compressed-tensors packed 8-bit weights under format int-quantized', withConfig(w8a16, (q) => { q.format = 'int-quantized'; }),
      /tensor "model\.layers\.0\.self_attn\.q_proj\.weight_packed" is stored pack-quantized, but config\.json quantization_config says format "int-quantized"/, peftLora(w8a16.rows, w8a16.cols)],
  ];
  for (const [name, files, message, own] of cases) {
    it(name, async () => {
      const { run, out, lines } = await mergeFolders(temp.make, files, own ?? adapter, ['--dtype', 'bf16']);
      expect(run.code).not.toBe(0);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(message);
      expect(existsSync(out)).toBe(false);
    });
  }

  it('DoRA on a GPTQ weight: refused in one line naming the module', async () => {
    const a = decodeSafetensors(adapter['adapter_model.safetensors'] as Uint8Array).tensors;
    const tensors: FixtureTensor[] = [...a].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: Array.from(t.values) }));
    for (const m of [Q, V]) tensors.push({ name: `base_model.model.${m}.lora_magnitude_vector`, dtype: 'F32', shape: [base.rows[m]], data: Array.from({ length: base.rows[m] }, () => 1) });
    const config = { ...JSON.parse(adapter['adapter_config.json'] as string), use_dora: true };
    const dora = { 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) };
    const { run, out, lines } = await mergeFolders(temp.make, base.files, dora, ['--dtype', 'bf16']);
    expect(run.code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/DoRA on the GPTQ weight model\.layers\.0\.self_attn\.(q|v)_proj\.weight .*not supported/);
    expect(existsSync(out)).toBe(false);
  });

  it('a GPTQ v1 zero point of 0 (stored as 2^bits − 1, which that format cannot hold) is refused naming the tensor', async () => {
    const tensors = decodeSafetensors(base.files['model.safetensors'] as Uint8Array).tensors;
    const rebuilt = [...tensors].map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: name === `${K}.qzeros` ? Array.from(t.values, (x, i) => (i === 0 ? x | 0xf : x)) : Array.from(t.values) }));
    const { run, out, lines } = await mergeFolders(temp.make, { ...base.files, 'model.safetensors': buildSafetensors(rebuilt) }, adapter, ['--dtype', 'bf16']);
    expect(run.code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/k_proj\.weight is not a GPTQ weight as it writes them \(.*k_proj\.qzeros stores 15 for group 0 of output 0: a zero point of 0/);
    expect(existsSync(out)).toBe(false);
  });

  it('a 3-bit GPTQ v1 zero point of 0 at output 10 (stored 7, its bits in two words) is refused naming the tensor', async () => {
    const tensors = decodeSafetensors(gptq3.files['model.safetensors'] as Uint8Array).tensors;
    // Output 10 of group 0: bits 30 and 31 of word 0 and bit 0 of word 1 (k_proj: 32 outputs, 3 words a group).
    const stored7 = (x: number, i: number) => (i === 0 ? x | 0xc0000000 : i === 1 ? x | 1 : x);
    const rebuilt = [...tensors].map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: name === `${K}.qzeros` ? Array.from(t.values, stored7) : Array.from(t.values) }));
    const { run, out, lines } = await mergeFolders(temp.make, { ...gptq3.files, 'model.safetensors': buildSafetensors(rebuilt) }, peftLora(gptq3.rows, gptq3.cols), ['--dtype', 'bf16']);
    expect(run.code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/k_proj\.weight is not a GPTQ weight as it writes them \(.*k_proj\.qzeros stores 7 for group 0 of output 10: a zero point of 0/);
    expect(existsSync(out)).toBe(false);
  });

  it('GPTQ scales holding a NaN and a negative scale: how many, the first and the last, naming the tensor', async () => {
    const tensors = decodeSafetensors(base.files['model.safetensors'] as Uint8Array).tensors;
    const rebuilt = [...tensors].map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: name === `${K}.scales` ? Array.from(t.values, (x, i) => (i === 1 ? NaN : i === 5 ? -1 : x)) : Array.from(t.values) }));
    const { run, out, lines } = await mergeFolders(temp.make, { ...base.files, 'model.safetensors': buildSafetensors(rebuilt) }, adapter, ['--dtype', 'bf16']);
    expect(run.code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/: tensor "model\.layers\.0\.self_attn\.k_proj\.scales" holds 2 scales that are NaN, Inf or negative \(first NaN in element 1, last -1 in element 5\); scales must be finite and not negative$/);
    expect(existsSync(out)).toBe(false);
  });

  it('F32 scales (whose products with the codes may not be exact in f32) are refused naming the tensor', async () => {
    const tensors = decodeSafetensors(awqBase.files['model.safetensors'] as Uint8Array).tensors;
    const rebuilt = [...tensors].map(([name, t]): FixtureTensor => ({ name, dtype: name === `${Q}.scales` ? 'F32' : t.dtype, shape: t.shape, data: Array.from(t.values) }));
    await expect(prepareMerge(memoryInputFileSet({ ...awqBase.files, 'model.safetensors': buildSafetensors(rebuilt) }, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: 1 }]))
      .rejects.toThrow(/tensor "model\.layers\.0\.self_attn\.q_proj\.scales" holds F32 scales; only F16 and BF16/);
  });
});
