/**
 * Refusals of the format readers that no other test reached (found by mutating each check to
 * false and running the tests that touch its file): each case is the smallest file of the format
 * it stands for that breaks one rule, and the test asserts the one line that names the file or
 * tensor and what is wrong.
 */
import { describe, expect, it } from 'vitest';
import { MergeError, type MergeErrorCode } from '../src/errors.js';
import { checkJsonBounds, parseBoundedJson } from '../src/formats/bounded-json.js';
import { openGgufModel } from '../src/formats/gguf/gguf-model.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { safetensorsContainer } from '../src/formats/safetensors-container.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { MAX_CONFIG_NESTING, MAX_CONFIG_VALUES, MAX_METADATA_ENTRIES, MAX_TENSOR_DIMS, MAX_TENSORS } from '../src/limits.js';
import { bytesSource, memoryInputFileSet } from '../src/io/memory-source.js';
import { createBlobOutputTarget, mergeModel, prepareMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, concatBytes, sparseSource, type FixtureTensor } from './helpers/fixtures.js';
import { hfModelFolder, peftFolder } from './helpers/hf-folder.js';
import { buildGguf, tensorData, type MetaValue } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, splitF16Llama } from './helpers/gguf-models.js';

/** The MergeError `run` rejects with: its code, one line, and every fragment in `mentions`. */
async function refusal(run: () => Promise<unknown>, code: MergeErrorCode, ...mentions: string[]): Promise<string> {
  let caught: unknown;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(MergeError);
  const error = caught as MergeError;
  expect(error.code, error.message).toBe(code);
  expect(error.message).not.toContain('\n');
  for (const m of mentions) expect(error.message).toContain(m);
  return error.message;
}

const ST = 'unet/diffusion_pytorch_model.safetensors';

/** A safetensors file of exactly this header text (8-byte little-endian length, header, data). */
function safetensorsOf(header: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const text = new TextEncoder().encode(header);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(text.byteLength), true);
  return concatBytes([prefix, text, data]);
}

const openSt = (header: string, data?: Uint8Array) => () => openSafetensors(bytesSource(safetensorsOf(header, data), ST));

/** One real tensor entry of a UNet: conv_in's bias, 320 f16 values. */
const CONV_IN_BIAS = '"conv_in.bias":{"dtype":"F16","shape":[320],"data_offsets":[0,640]}';

describe('safetensors header: hostile headers refused in one line', () => {
  it('a header of only spaces is refused as empty', async () => {
    expect(await refusal(openSt('        '), 'INVALID_HEADER')).toBe(`${ST}: header is not valid JSON (the header is empty at the end)`);
  });

  it('a second __metadata__ object is refused, not merged over the first', async () => {
    const message = await refusal(openSt(`{"__metadata__":{"format":"pt"},"__metadata__":{"format":"pt"},${CONV_IN_BIAS}}`, new Uint8Array(640)), 'INVALID_HEADER');
    expect(message).toBe(`${ST}: __metadata__ appears twice`);
  });

  it('a __metadata__ key given twice is refused, naming the key', async () => {
    const message = await refusal(openSt(`{"__metadata__":{"format":"pt","format":"flax"},${CONV_IN_BIAS}}`, new Uint8Array(640)), 'INVALID_HEADER');
    expect(message).toBe(`${ST}: __metadata__ key "format" appears twice`);
  });

  it(`__metadata__ with more than MAX_METADATA_ENTRIES (${MAX_METADATA_ENTRIES}) entries is refused by the limit`, async () => {
    const entries = Array.from({ length: MAX_METADATA_ENTRIES + 1 }, (_, i) => `"k${i}":""`).join(',');
    const message = await refusal(openSt(`{"__metadata__":{${entries}}}`), 'LIMIT_EXCEEDED');
    expect(message).toBe(`${ST}: __metadata__ has more than ${MAX_METADATA_ENTRIES} entries (the limit MAX_METADATA_ENTRIES)`);
  });

  it('data_offsets of more than two numbers past the element budget, or a dtype nested too deep, are refused by name', async () => {
    const offsets = Array.from({ length: MAX_TENSOR_DIMS + 2 }, (_, i) => i * 640).join(',');
    const message = await refusal(openSt(`{"conv_in.bias":{"dtype":"F16","shape":[320],"data_offsets":[${offsets}]}}`), 'INVALID_HEADER');
    expect(message).toBe(`${ST}: tensor "conv_in.bias": "data_offsets" is not a [begin, end] pair`);
    const dtype = await refusal(openSt('{"conv_in.bias":{"dtype":[[["F16"]]],"shape":[320],"data_offsets":[0,640]}}'), 'INVALID_HEADER');
    expect(dtype).toBe(`${ST}: tensor "conv_in.bias": "dtype" is not a dtype name`);
  });

  it('a shape of 33 dimensions is refused by MAX_TENSOR_DIMS (32); one of 32 is read', async () => {
    const shape = (dims: number) => `{"w":{"dtype":"F16","shape":[${Array(dims).fill(1).join(',')}],"data_offsets":[0,2]}}`;
    const message = await refusal(openSt(shape(33), new Uint8Array(2)), 'INVALID_SHAPE');
    expect(message).toBe(`${ST}: tensor "w": shape has more than 32 dimensions or is not a list of numbers (the limit MAX_TENSOR_DIMS)`);
    const file = await openSt(shape(32), new Uint8Array(2))();
    expect(file.get('w')?.shape).toEqual(Array(32).fill(1));
  });

  it('a tensor name with an escape JSON does not define is refused as bad JSON, with its offset', async () => {
    const message = await refusal(openSt('{"conv_in\\q.bias":{"dtype":"F16","shape":[320],"data_offsets":[0,640]}}', new Uint8Array(640)), 'INVALID_HEADER');
    expect(message).toBe(`${ST}: header is not valid JSON (bad escape in a string at byte 1)`);
  });
});

describe('safetensors header: numbers as the reference reader (serde, usize) takes them', () => {
  const shaped = (shape: string) => openSt(`{"conv_in.bias":{"dtype":"F16","shape":${shape},"data_offsets":[0,0]}}`);

  it('a sign with no digits, a "." or exponent with no digit after it: refused as bad JSON at its byte', async () => {
    expect(await refusal(shaped('[-]'), 'INVALID_HEADER')).toBe(`${ST}: header is not valid JSON (unexpected "-" at byte 40)`);
    expect(await refusal(shaped('[0, 320.]'), 'INVALID_HEADER')).toBe(`${ST}: header is not valid JSON (a digit must follow "." at byte 47)`);
    expect(await refusal(shaped('[0, 3e]'), 'INVALID_HEADER')).toBe(`${ST}: header is not valid JSON (a digit must follow the exponent at byte 45)`);
  });

  it('an integer of 16 digits below 2^53 is read exactly; one above 2^53 is refused quoting its digits', async () => {
    const file = await shaped('[0,1000000000000000]')();
    expect(file.get('conv_in.bias')?.shape).toEqual([0, 1e15]);
    expect(await refusal(shaped('[0,9007199254740993]'), 'INVALID_SHAPE'))
      .toBe(`${ST}: tensor "conv_in.bias": "shape" holds 9007199254740993, larger than 2^53, past what this reader (and any tensor) can use`);
  });
});

describe('GGUF reader: a metadata key written twice', () => {
  it('is refused by the count of distinct keys, before anything reads the second value', async () => {
    const bytes = buildGguf({ metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['general.name', { type: 'string', value: 'Tiny' }], ['general.name', { type: 'string', value: 'Other' }]] });
    expect(await refusal(() => openGguf(bytesSource(bytes, 'tiny-llama-F16.gguf')), 'INVALID_HEADER'))
      .toBe('tiny-llama-F16.gguf: 3 metadata entries declared but 2 distinct keys read (a key is duplicated or reserved)');
  });
});

describe('bounded JSON: configs refused before JSON.parse builds them', () => {
  it(`nesting deeper than MAX_CONFIG_NESTING (${MAX_CONFIG_NESTING}) is refused naming the file`, () => {
    const deep = `{"lora_alpha":${'['.repeat(MAX_CONFIG_NESTING)}1${']'.repeat(MAX_CONFIG_NESTING)}}`;
    expect(() => parseBoundedJson(deep, 'adapter/adapter_config.json')).toThrow(
      `adapter/adapter_config.json: nests deeper than ${MAX_CONFIG_NESTING} levels (the limit MAX_CONFIG_NESTING); not a config this tool reads`,
    );
    // One level less is only JSON.parse's to judge.
    const ok = `{"lora_alpha":${'['.repeat(MAX_CONFIG_NESTING - 1)}1${']'.repeat(MAX_CONFIG_NESTING - 1)}}`;
    expect(() => checkJsonBounds(ok, 'adapter/adapter_config.json')).not.toThrow();
  });

  it(`more than MAX_CONFIG_VALUES (${MAX_CONFIG_VALUES}) values is refused naming the file`, () => {
    const many = `{"target_modules":[${Array.from({ length: MAX_CONFIG_VALUES + 1 }, () => '0').join(',')}]}`;
    let caught: unknown;
    try {
      parseBoundedJson(many, 'adapter/adapter_config.json');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(MergeError);
    expect((caught as MergeError).code).toBe('LIMIT_EXCEEDED');
    expect((caught as MergeError).message).toBe(`adapter/adapter_config.json: holds more than ${MAX_CONFIG_VALUES} values (the limit MAX_CONFIG_VALUES); not a config this tool reads`);
  });
});

const u64 = (n: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
};
const u32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};

/**
 * A GGUF of `size` bytes whose header holds `strings` metadata strings of 9 MB each (each within
 * MAX_GGUF_STRING_BYTES), every other byte zero: served sparsely, so a 60 MB file costs no
 * memory. Six of them take 54 MB, past MAX_GGUF_HEADER_BYTES (50 MB).
 */
function hugeHeaderGguf(name: string, size: number, strings: number) {
  const enc = new TextEncoder();
  const pieces: [number, Uint8Array][] = [[0, concatBytes([enc.encode('GGUF'), u32(3), u64(0), u64(strings)])]];
  let at = 24;
  for (let i = 0; i < strings; i++) {
    const key = enc.encode(`tokenizer.chat_template.part${i}`);
    pieces.push([at, concatBytes([u64(key.length), key, u32(8 /* STRING */), u64(9_000_000)])]);
    at += 8 + key.length + 4 + 8 + 9_000_000;
  }
  return sparseSource(name, size, pieces);
}

describe('GGUF reader: headers past MAX_GGUF_HEADER_BYTES', () => {
  it('a header larger than MAX_GGUF_HEADER_BYTES in a larger file is refused as too large', async () => {
    const message = await refusal(() => openGguf(hugeHeaderGguf('Llama-3-8B-Q4_K_M.gguf', 60_000_000, 6)), 'HEADER_TOO_LARGE');
    expect(message).toBe('Llama-3-8B-Q4_K_M.gguf: GGUF header is larger than 50000000 bytes (metadata "tokenizer.chat_template.part5" runs to byte 54000318); not a model this tool merges');
  });

  it('a header that claims more than a smaller file holds is refused as truncated', async () => {
    const message = await refusal(() => openGguf(hugeHeaderGguf('Llama-3-8B-Q4_K_M.gguf', 49_000_000, 6)), 'TRUNCATED');
    expect(message).toBe('Llama-3-8B-Q4_K_M.gguf: metadata "tokenizer.chat_template.part5" runs to byte 54000318, but the file has only 49000000 (truncated download?): download the file again');
  });
});

/** A small GGUF base: a llama's output norm and head in F32, with any extra metadata. */
function tinyLlama(extra: [string, MetaValue][] = [], names = ['output_norm.weight', 'output.weight']): Uint8Array {
  return buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ...extra],
    tensors: names.map((name) => ({ name, type: 'F32', ne: name.endsWith('norm.weight') ? [8] : [8, 4], data: tensorData('F32', new Float64Array(name.endsWith('norm.weight') ? 8 : 32).fill(0.5)) })),
  });
}

/** The split metadata gguf-split writes into part `no` (0-based) of `count`. */
const splitKv = (no: number, count: number, tensors: number): [string, MetaValue][] => [
  ['split.no', { type: 'u16', value: no }],
  ['split.count', { type: 'u16', value: count }],
  ['split.tensors.count', { type: 'i32', value: tensors }],
];

describe('GGUF base: model folders and split sets refused in one line', () => {
  it('a folder with no .gguf file is refused', async () => {
    const message = await refusal(() => openGgufModel(memoryInputFileSet({ 'config.json': '{}' }, 'llama-base')), 'NOT_FOUND');
    expect(message).toBe('llama-base: no .gguf file found');
  });

  it('a folder holding two models is refused, naming both', async () => {
    const files = { 'tiny-llama-Q4_K_M.gguf': tinyLlama(), 'tiny-llama-F16.gguf': tinyLlama() };
    const message = await refusal(() => openGgufModel(memoryInputFileSet(files, 'llama-base')), 'BAD_ARGUMENT');
    expect(message).toMatch(/^llama-base: holds 2 GGUF models \(tiny-llama-(Q4_K_M|F16)\.gguf, tiny-llama-(Q4_K_M|F16)\.gguf…\); point at one$/);
  });

  it('a llama.cpp LoRA adapter given as the base is refused, saying to pass it with --adapter', async () => {
    const adapter = tinyLlama([['general.type', { type: 'string', value: 'adapter' }], ['adapter.type', { type: 'string', value: 'lora' }]]);
    const message = await refusal(() => openGgufModel(memoryInputFileSet({ 'lora.gguf': adapter }, 'llama-base')), 'BAD_ARGUMENT');
    expect(message).toMatch(/lora\.gguf: is a LoRA adapter \(general\.type = adapter\), not a base model; pass it with --adapter$/);
  });

  it('a split part named out of its place is refused, naming the file and the name expected', async () => {
    const parts = splitF16Llama().files;
    const [first, second] = Object.keys(parts).sort();
    const files = { [first]: parts[first], [second.replace('00002-of-00002', '00003-of-00002')]: parts[second] };
    const message = await refusal(() => openGgufModel(memoryInputFileSet(files, 'llama-base')), 'BAD_CONFIG');
    expect(message).toBe('llama-base: tiny-llama-F16-00003-of-00002.gguf is not part 2 of 2 by its name (expected …-00002-of-00002.gguf)');
  });

  it('split parts whose split.no disagrees with their names (swapped files) are refused', async () => {
    const parts = splitF16Llama().files;
    const [first, second] = Object.keys(parts).sort();
    const message = await refusal(() => openGgufModel(memoryInputFileSet({ [first]: parts[second], [second]: parts[first] }, 'llama-base')), 'BAD_CONFIG');
    expect(message).toMatch(/tiny-llama-F16-00001-of-00002\.gguf: its split\.no\/split\.count metadata say part 1 of 2, its name part 0 of 2$/);
  });

  it('split.tensors.count other than the tensors the parts hold is refused (a part from another conversion)', async () => {
    const files = {
      'tiny-llama-F16-00001-of-00002.gguf': tinyLlama(splitKv(0, 2, 3), ['output_norm.weight']),
      'tiny-llama-F16-00002-of-00002.gguf': buildGguf({ metadata: splitKv(1, 2, 3), tensors: [{ name: 'output.weight', type: 'F32', ne: [8, 4], data: tensorData('F32', new Float64Array(32)) }] }),
    };
    const message = await refusal(() => openGgufModel(memoryInputFileSet(files, 'llama-base')), 'BAD_CONFIG');
    expect(message).toBe('llama-base: split.tensors.count is 3 but the parts hold 2 tensors');
  });

  it(`a split set of more than MAX_TENSORS (${MAX_TENSORS}) tensors over its parts is refused by the limit, as a sharded safetensors model is`, async () => {
    // Two parts of 80 001 one-value tensors: each part under the limit, the set 160 002.
    const half = 80_001;
    const one = tensorData('F32', new Float64Array(1));
    const part = (no: number) => buildGguf({
      metadata: splitKv(no, 2, 2 * half),
      tensors: Array.from({ length: half }, (_, i) => ({ name: `t${no}.${i}`, type: 'F32', ne: [1], data: one })),
    });
    const files = { 'many-00001-of-00002.gguf': part(0), 'many-00002-of-00002.gguf': part(1) };
    const message = await refusal(() => openGgufModel(memoryInputFileSet(files, 'many-base')), 'LIMIT_EXCEEDED');
    expect(message).toBe('many-base: more than 160000 tensors over its files (the limit MAX_TENSORS)');
  }, 60_000);

  it('a tensor in two parts of a split set is refused by name', async () => {
    const files = {
      'tiny-llama-F16-00001-of-00002.gguf': tinyLlama(splitKv(0, 2, 3), ['output_norm.weight', 'output.weight']),
      'tiny-llama-F16-00002-of-00002.gguf': buildGguf({ metadata: splitKv(1, 2, 3), tensors: [{ name: 'output.weight', type: 'F32', ne: [8, 4], data: tensorData('F32', new Float64Array(32)) }] }),
    };
    const message = await refusal(() => openGgufModel(memoryInputFileSet(files, 'llama-base')), 'BAD_CONFIG');
    expect(message).toBe('llama-base: tensor "output.weight" is in two parts');
  });
});

// --- integer weight-only bases: GPTQ, AWQ GEMM, compressed-tensors --------------------------------

const QP = 'model.layers.0.self_attn.q_proj';
/** The LoRA on q_proj (8 outputs, 32 inputs) that every int base below is opened with. */
const QLORA = peftFolder({ r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, [
  { name: `base_model.model.${QP}.lora_A.weight`, dtype: 'F32', shape: [1, 32], data: Array.from({ length: 32 }, (_, i) => (i % 5) / 8) },
  { name: `base_model.model.${QP}.lora_B.weight`, dtype: 'F32', shape: [8, 1], data: Array.from({ length: 8 }, (_, i) => i / 16) },
]);
const EMBED: FixtureTensor = { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [16, 32], data: new Array(512).fill(0.25) };

/** A llama base of one quantized q_proj (8 × 32) with config.json's quantization_config. */
function intBase(quantization: Record<string, unknown>, tensors: FixtureTensor[]) {
  return hfModelFolder([EMBED, ...tensors], { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 32, torch_dtype: 'float16', quantization_config: quantization });
}
const openInt = (files: Record<string, string | Uint8Array>, name = 'llama-int4') => () => prepareMerge(memoryInputFileSet(files, name), [{ files: memoryInputFileSet(QLORA, 'qlora') }]);

/** The UNSUPPORTED_FORMAT refusal met while merging the QLoRA into `files` (named `name`) on the CPU, for values the plan does not read. */
async function mergeRefusal(files: Record<string, string | Uint8Array>, name = 'llama-int4', outDtype: 'BF16' | 'F16' = 'BF16'): Promise<string> {
  const backend = await createNodeBackend('cpu');
  try {
    const prepared = await openInt(files, name)();
    return await refusal(async () => {
      try {
        await mergeModel({ prepared, output: createBlobOutputTarget(), backend, outDtype });
      } finally {
        await prepared.close();
      }
    }, 'UNSUPPORTED_FORMAT');
  } finally {
    backend.dispose();
  }
}

/** AutoGPTQ's 4-bit q_proj, group 32: qweight (in/8, out), qzeros (groups, out/8), scales (groups, out), g_idx (in). */
const GPTQ = { bits: 4, group_size: 32, desc_act: false, sym: false, checkpoint_format: 'gptq', quant_method: 'gptq' };
const gptqTensors = (): FixtureTensor[] => [
  { name: `${QP}.qweight`, dtype: 'I32', shape: [4, 8], data: new Array(32).fill(0x12345678) },
  { name: `${QP}.qzeros`, dtype: 'I32', shape: [1, 1], data: [0x77777777] },
  { name: `${QP}.scales`, dtype: 'F16', shape: [1, 8], data: new Array(8).fill(0.01) },
  { name: `${QP}.g_idx`, dtype: 'I32', shape: [32], data: new Array(32).fill(0) },
];
/** AutoAWQ's GEMM q_proj: qweight (in, out/8), qzeros (groups, out/8), scales (groups, out). */
const AWQ = { bits: 4, group_size: 32, quant_method: 'awq', version: 'gemm', zero_point: true };
const awqTensors = (): FixtureTensor[] => [
  { name: `${QP}.qweight`, dtype: 'I32', shape: [32, 1], data: new Array(32).fill(0x12345678) },
  { name: `${QP}.qzeros`, dtype: 'I32', shape: [1, 1], data: [0x88888888 | 0] },
  { name: `${QP}.scales`, dtype: 'F16', shape: [1, 8], data: new Array(8).fill(0.01) },
];
/** llm-compressor's pack-quantized W4A16 group 32 q_proj: weight_packed (out, in/8), weight_scale (out, groups), weight_shape. */
const ctConfig = (weights: Record<string, unknown>, extra: Record<string, unknown> = {}, format = 'pack-quantized') => ({
  quant_method: 'compressed-tensors', format, ...extra,
  config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 32, dynamic: false, ...weights } } },
});
const ctTensors = (): FixtureTensor[] => [
  { name: `${QP}.weight_packed`, dtype: 'I32', shape: [8, 4], data: new Array(32).fill(0x12345678) },
  { name: `${QP}.weight_scale`, dtype: 'BF16', shape: [8, 1], data: new Array(8).fill(0.01) },
  { name: `${QP}.weight_shape`, dtype: 'I64', shape: [2], data: [8, 32] },
];
/** llm-compressor's int-quantized W8A8 q_proj: weight I8 (out, in), weight_scale (out, 1). */
const ct8Tensors = (): FixtureTensor[] => [
  { name: `${QP}.weight`, dtype: 'I8', shape: [8, 32], data: Array.from({ length: 256 }, (_, i) => (i % 7) - 3) },
  { name: `${QP}.weight_scale`, dtype: 'BF16', shape: [8, 1], data: new Array(8).fill(0.01) },
];
const CT8 = ctConfig({ num_bits: 8, strategy: 'channel', group_size: null }, {}, 'int-quantized');
const swapT = (tensors: FixtureTensor[], name: string, t: Partial<FixtureTensor> | null) =>
  t === null ? tensors.filter((x) => x.name !== name) : tensors.map((x) => (x.name === name ? { ...x, ...t } : x));
const CFG = (format: string, why: string) => `llama-int4: config.json quantization_config (${format}): ${why}; merging into such a base is not supported: use the unquantized model`;
const NOT = (format: string, why: string) => `llama-int4: ${QP}.weight is not a ${format} weight as it writes them (${why})`;

describe('integer weight-only bases: configs and tensors their tools do not write, refused in one line', () => {
  const cases: [string, Record<string, string | Uint8Array>, string][] = [
    ['GPTQ group_size 0', intBase({ ...GPTQ, group_size: 0 }, gptqTensors()), CFG('gptq', 'group_size 0')],
    ['GPTQ without qzeros', intBase(GPTQ, swapT(gptqTensors(), `${QP}.qzeros`, null)), NOT('GPTQ', `${QP}.qzeros is missing`)],
    ['GPTQ scales of another output count', intBase(GPTQ, swapT(gptqTensors(), `${QP}.scales`, { shape: [1, 16], data: new Array(16).fill(0.01) })), NOT('GPTQ', `${QP}.scales has shape [1, 16]; expected (groups, 8)`)],
    ['GPTQ qzeros not I32', intBase(GPTQ, swapT(gptqTensors(), `${QP}.qzeros`, { dtype: 'F32', data: [1] })), NOT('GPTQ', `${QP}.qzeros is F32 [1, 1]; expected I32 (1, 1)`)],
    ['GPTQ g_idx of another length', intBase(GPTQ, swapT(gptqTensors(), `${QP}.g_idx`, { shape: [16], data: new Array(16).fill(0) })), NOT('GPTQ', `${QP}.g_idx is I32 [16]; expected I32 (32)`)],
    ['GPTQ without g_idx, scales for another group count', intBase({ ...GPTQ, group_size: 16 }, swapT(gptqTensors(), `${QP}.g_idx`, null)), NOT('GPTQ', `${QP}.scales has 1 groups for 32 inputs in groups of 16`)],
    ['AWQ 8-bit', intBase({ ...AWQ, bits: 8 }, awqTensors()), CFG('awq', 'bits 8 is not read (only 4)')],
    ['AWQ without zero points', intBase({ ...AWQ, zero_point: false }, awqTensors()), CFG('awq', 'zero_point false is not read')],
    ['AWQ group_size 0', intBase({ ...AWQ, group_size: 0 }, awqTensors()), CFG('awq', 'group_size 0')],
    ['AWQ without scales', intBase(AWQ, swapT(awqTensors(), `${QP}.scales`, null)), NOT('AWQ GEMM', `${QP}.scales is missing`)],
    ['AWQ qweight not I32', intBase(AWQ, swapT(awqTensors(), `${QP}.qweight`, { dtype: 'F32' })), NOT('AWQ GEMM', `${QP}.qweight is F32 [32, 1]; expected I32 (in, out/8)`)],
    ['AWQ scales for another group count', intBase(AWQ, swapT(awqTensors(), `${QP}.scales`, { shape: [2, 8], data: new Array(16).fill(0.01) })), NOT('AWQ GEMM', `${QP}.scales has shape [2, 8]; expected (1, 8) for 32 inputs in groups of 32`)],
    ['AWQ qzeros of another width', intBase(AWQ, swapT(awqTensors(), `${QP}.qzeros`, { shape: [1, 2], data: [0, 0] })), NOT('AWQ GEMM', `${QP}.qzeros is I32 [1, 2]; expected I32 (1, 1)`)],
    ['compressed-tensors groups in two formats', intBase({ ...ctConfig({}), config_groups: { group_0: { ...ctConfig({}).config_groups.group_0, format: 'pack-quantized' }, group_1: { ...ctConfig({}).config_groups.group_0, format: 'int-quantized' } } }, ctTensors()),
      CFG('compressed-tensors int', 'config groups in several formats (pack-quantized, int-quantized) are not read')],
    ['compressed-tensors format marlin-24', intBase(ctConfig({}, {}, 'marlin-24'), ctTensors()), CFG('compressed-tensors int', 'format "marlin-24" is not read (only pack-quantized and int-quantized)')],
    ['compressed-tensors groups of 4 and 8 bits', intBase({ ...ctConfig({}), config_groups: { group_0: ctConfig({}).config_groups.group_0, group_1: ctConfig({ num_bits: 8 }).config_groups.group_0 } }, ctTensors()),
      CFG('compressed-tensors int', 'config groups with different num_bits (4, 8) are not read')],
    ['compressed-tensors int-quantized 4-bit', intBase(ctConfig({ strategy: 'channel' }, {}, 'int-quantized'), ct8Tensors()), CFG('compressed-tensors int', 'num_bits 4 is not read in int-quantized')],
    ['compressed-tensors group_size null under strategy group', intBase(ctConfig({ group_size: null }), ctTensors()), CFG('compressed-tensors int', 'group_size null')],
    ['compressed-tensors strategy block', intBase(ctConfig({ strategy: 'block' }), ctTensors()), CFG('compressed-tensors int', 'weight strategy "block" is not read (only group, channel and tensor)')],
    ['compressed-tensors dynamic weights', intBase(ctConfig({ dynamic: true }), ctTensors()), CFG('compressed-tensors int', 'dynamic weight quantization is not read')],
    ['compressed-tensors weight_g_idx of another length', intBase(ctConfig({}), [...ctTensors(), { name: `${QP}.weight_g_idx`, dtype: 'I32', shape: [16], data: new Array(16).fill(0) }]),
      NOT('compressed-tensors pack-quantized', `${QP}.weight_g_idx is I32 [16]; expected I32 (32)`)],
    ['compressed-tensors scales per row not a config group size', intBase(ctConfig({}), swapT(ctTensors(), `${QP}.weight_scale`, { shape: [8, 3], data: new Array(24).fill(0.01) })),
      NOT('compressed-tensors pack-quantized', `${QP}.weight_scale has 3 scales per row for 32 inputs; config.json's group_size is 32`)],
    ['compressed-tensors without weight_scale', intBase(ctConfig({}), swapT(ctTensors(), `${QP}.weight_scale`, null)), NOT('compressed-tensors pack-quantized', `${QP}.weight_scale is missing`)],
    ['compressed-tensors weight_scale of another row count', intBase(ctConfig({}), swapT(ctTensors(), `${QP}.weight_scale`, { shape: [4, 2], data: new Array(8).fill(0.01) })),
      NOT('compressed-tensors pack-quantized', `${QP}.weight_scale has shape [4, 2]; expected (8, groups)`)],
    ['compressed-tensors without weight_shape', intBase(ctConfig({}), swapT(ctTensors(), `${QP}.weight_shape`, null)), NOT('compressed-tensors pack-quantized', `${QP}.weight_shape is missing`)],
    ['compressed-tensors weight_shape of three dims', intBase(ctConfig({}), swapT(ctTensors(), `${QP}.weight_shape`, { shape: [3], data: [8, 32, 1] })),
      NOT('compressed-tensors pack-quantized', `${QP}.weight_shape is I64 [3]; expected two integers`)],
    ['compressed-tensors weight_packed not matching weight_shape', intBase(ctConfig({}), swapT(ctTensors(), `${QP}.weight_shape`, { data: [8, 64] })),
      NOT('compressed-tensors pack-quantized', `${QP}.weight_packed is I32 [8, 4]; for ${QP}.weight_shape (8, 64) and num_bits 4 expected I32 (8, 8)`)],
    ['compressed-tensors zero points of another shape', intBase(ctConfig({ symmetric: false }), [...ctTensors(), { name: `${QP}.weight_zero_point`, dtype: 'I8', shape: [4, 1], data: new Array(4).fill(0) }]),
      NOT('compressed-tensors pack-quantized', `${QP}.weight_zero_point is I8 [4, 1]; expected I8 (8, 1) or I32 packed along the outputs (1, 1)`)],
    ['compressed-tensors int8 weight of three dims', intBase(CT8, swapT(ct8Tensors(), `${QP}.weight`, { shape: [8, 4, 8] })), NOT('compressed-tensors int-quantized', 'its shape is [8, 4, 8]; expected (out, in)')],
    ['compressed-tensors int8 scales not dividing the row', intBase(CT8, swapT(ct8Tensors(), `${QP}.weight_scale`, { shape: [8, 3], data: new Array(24).fill(0.01) })),
      NOT('compressed-tensors int-quantized', `${QP}.weight_scale has 3 scales per row for 32 inputs`)],
    ['compressed-tensors int8 with weight_g_idx', intBase(CT8, [...ct8Tensors(), { name: `${QP}.weight_g_idx`, dtype: 'I32', shape: [32], data: new Array(32).fill(0) }]),
      NOT('compressed-tensors int-quantized', `${QP}.weight_g_idx beside int8 codes is not read`)],
  ];
  for (const [name, files, message] of cases) {
    it(name, async () => {
      expect(await refusal(openInt(files), 'UNSUPPORTED_FORMAT')).toBe(message);
    });
  }
});

describe('GGUF base: a weight of a type loramerge does not decode', () => {
  it('an F64 attn_q a LoRA changes is a plan problem naming adapter, module, tensor and type', async () => {
    const base = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }]],
      tensors: [
        { name: 'blk.0.attn_q.weight', type: 28 /* F64 */, ne: [8, 8], data: new Uint8Array(8 * 8 * 8) },
        { name: 'output_norm.weight', type: 'F32', ne: [8], data: tensorData('F32', new Float64Array(8).fill(1)) },
      ],
    });
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 1, in: 8, out: 8, aType: 'F32', bType: 'F32' }], 1);
    const prepared = await prepareMerge(memoryInputFileSet({ 'tiny-llama-F64.gguf': base }, 'llama-base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      const problems = prepared.plan.problems.filter((p) => p.code === 'UNSUPPORTED_FORMAT');
      expect(problems).toHaveLength(1);
      expect(problems[0].message).toMatch(/^lora: module "[^"]+": base tensor blk\.0\.attn_q\.weight is F64, which loramerge cannot decode \(it reads F32, F16, BF16, Q8_0, /);
    } finally {
      await prepared.close();
    }
  });
});

// --- ModelOpt NVFP4 (nvidia/Llama-3.1-8B-Instruct-FP4 layout) -------------------------------------

/** ModelOpt's NVFP4 q_proj (8 × 32): U8 codes (out, in/2), F8_E4M3 block scales (out, in/16), weight_scale_2 and input_scale F32 scalars. */
const nvfp4Tensors = (): FixtureTensor[] => [
  EMBED,
  { name: `${QP}.weight`, dtype: 'U8', shape: [8, 16], data: Uint8Array.from({ length: 128 }, (_, i) => (i * 37) & 0xff) },
  { name: `${QP}.weight_scale`, dtype: 'F8_E4M3', shape: [8, 2], data: new Uint8Array(16).fill(0x38) /* 1.0 */ },
  { name: `${QP}.weight_scale_2`, dtype: 'F32', shape: [], data: [0.000731] },
  { name: `${QP}.input_scale`, dtype: 'F32', shape: [], data: [0.0017] },
];
const NVFP4_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 32, torch_dtype: 'bfloat16',
  quantization_config: { quant_method: 'modelopt', quant_algo: 'NVFP4', group_size: 16, ignore: ['lm_head'] },
};
const nvfp4Base = (tensors: FixtureTensor[]) => hfModelFolder(tensors, NVFP4_CONFIG);
const NV = (why: string) => `llama-int4: ${QP}.weight is not an NVFP4 weight as ModelOpt writes it (${why})`;

describe('ModelOpt NVFP4 bases: tensors ModelOpt does not write, refused in one line naming the tensor', () => {
  const cases: [string, FixtureTensor[], string][] = [
    ['weight_scale missing', swapT(nvfp4Tensors(), `${QP}.weight_scale`, null), NV(`${QP}.weight_scale is missing`)],
    ['codes stored as BF16', swapT(nvfp4Tensors(), `${QP}.weight`, { dtype: 'BF16', data: new Uint8Array(256) }), NV('its dtype is BF16 [8, 16]; expected U8 codes (out, in/2)')],
    ['block scales stored as F32', swapT(nvfp4Tensors(), `${QP}.weight_scale`, { dtype: 'F32', data: new Array(16).fill(1) }), NV(`${QP}.weight_scale is F32 [8, 2]; expected F8_E4M3 (8, in/16)`)],
    ['weight_scale_2 of two values', swapT(nvfp4Tensors(), `${QP}.weight_scale_2`, { shape: [2], data: [0.0007, 0.0007] }), NV(`${QP}.weight_scale_2 is F32 [2]; expected one F32 value`)],
    ['weight_scale_2 stored as F16', swapT(nvfp4Tensors(), `${QP}.weight_scale_2`, { dtype: 'F16' }), NV(`${QP}.weight_scale_2 is F16 []; expected one F32 value`)],
    ['weight_scale_2 and weight_scale left beside no weight', swapT(nvfp4Tensors(), `${QP}.weight`, null), NV(`${QP}.weight is missing`)],
    ['codes in three dimensions', swapT(nvfp4Tensors(), `${QP}.weight`, { shape: [8, 4, 4] }), NV('its dtype is U8 [8, 4, 4]; expected U8 codes (out, in/2)')],
    ['block scales flattened to one dimension', swapT(nvfp4Tensors(), `${QP}.weight_scale`, { shape: [16] }), NV(`${QP}.weight_scale is F8_E4M3 [16]; expected F8_E4M3 (8, in/16)`)],
    ['block scales for 4 rows of an 8-row weight', swapT(nvfp4Tensors(), `${QP}.weight_scale`, { shape: [4, 4] }), NV(`${QP}.weight_scale is F8_E4M3 [4, 4]; expected F8_E4M3 (8, in/16)`)],
  ];
  for (const [name, tensors, message] of cases) {
    it(name, async () => {
      expect(await refusal(openInt(nvfp4Base(tensors)), 'UNSUPPORTED_FORMAT')).toBe(message);
    });
  }

  it('a negative or NaN weight_scale_2 is refused naming the tensor and the value', async () => {
    for (const [value, shown] of [[-0.000731, String(Math.fround(-0.000731))], [NaN, 'NaN']] as const) {
      const files = nvfp4Base(swapT(nvfp4Tensors(), `${QP}.weight_scale_2`, { data: [value] }));
      expect(await refusal(openInt(files), 'UNSUPPORTED_FORMAT')).toBe(`llama-int4: tensor "${QP}.weight_scale_2" holds the scale ${shown}; scales must be finite and not negative`);
    }
  });
});

describe('ModelOpt NVFP4 bases: a NaN block scale met while merging', () => {
  it('is refused naming the scale tensor and its row', async () => {
    const scales = new Uint8Array(16).fill(0x38);
    scales[11] = 0x7f; // e4m3 NaN, row 5 (two scales a row)
    const files = nvfp4Base(swapT(nvfp4Tensors(), `${QP}.weight_scale`, { data: scales }));
    expect(await mergeRefusal(files)).toBe(`llama-int4: tensor "${QP}.weight_scale" holds 1 NaN scale (row 5); the base file is broken: use an intact copy of the base`);
  });
});

// --- block FP8 (Qwen/Qwen3-8B-FP8 layout: quant_method fp8, weight_scale_inv per 128 × 128 block) --

const fp8Tensors = (scale = 0.002): FixtureTensor[] => [
  EMBED,
  { name: `${QP}.weight`, dtype: 'F8_E4M3', shape: [8, 32], data: new Uint8Array(256).fill(0x38) },
  { name: `${QP}.weight_scale_inv`, dtype: 'F32', shape: [1, 1], data: [scale] },
];
const fp8Base = (quantization: Record<string, unknown>, tensors = fp8Tensors()) =>
  hfModelFolder(tensors, { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 32, torch_dtype: 'bfloat16', quantization_config: quantization });
const FP8 = { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128] };
const QC = 'llama-fp8: config.json quantization_config';

describe('block FP8 bases: configs and scales the format does not define, refused in one line', () => {
  it('fmt e5m2 is refused (only e4m3 is read)', async () => {
    expect(await refusal(openInt(fp8Base({ ...FP8, fmt: 'e5m2' }), 'llama-fp8'), 'UNSUPPORTED_FORMAT')).toBe(`${QC}: fp8 format "e5m2" is not supported (only e4m3)`);
  });

  it('a weight_block_size that is not two positive sizes is refused, quoting it', async () => {
    expect(await refusal(openInt(fp8Base({ ...FP8, weight_block_size: [128] }), 'llama-fp8'), 'UNSUPPORTED_FORMAT'))
      .toBe(`${QC}.weight_block_size is [128]; expected two positive block sizes`);
    expect(await refusal(openInt(fp8Base({ ...FP8, weight_block_size: [128, 0] }), 'llama-fp8'), 'UNSUPPORTED_FORMAT'))
      .toBe(`${QC}.weight_block_size is [128,0]; expected two positive block sizes`);
  });

  it('a weight_block_size with NaN or Infinity in it (Python\'s json.dumps literals) is quoted with them, not as null', async () => {
    for (const [literal, shown] of [['[NaN, 128]', '[NaN,128]'], ['[128, Infinity]', '[128,Infinity]'], ['[1e400, -Infinity]', '[Infinity,-Infinity]']]) {
      const folder = fp8Base({ ...FP8, weight_block_size: 'SIZES' });
      folder['config.json'] = (folder['config.json'] as string).replace('"SIZES"', literal);
      expect(await refusal(openInt(folder, 'llama-fp8'), 'UNSUPPORTED_FORMAT')).toBe(`${QC}.weight_block_size is ${shown}; expected two positive block sizes`);
    }
  });

  it('a negative block scale is refused naming the tensor, the value and the element', async () => {
    expect(await refusal(openInt(fp8Base(FP8, fp8Tensors(-0.002)), 'llama-fp8'), 'UNSUPPORTED_FORMAT'))
      .toBe(`llama-fp8: tensor "${QP}.weight_scale_inv" holds the scale ${Math.fround(-0.002)} (element 0); scales must be finite and not negative`);
  });
});

// --- mlx affine (mlx-community/*-4bit layout: uint32 codes, f16 scales and biases per group) ------

const mlxTensors = (): FixtureTensor[] => [
  EMBED,
  { name: `${QP}.weight`, dtype: 'U32', shape: [8, 4], data: new Uint8Array(128).fill(0x5a) },
  { name: `${QP}.scales`, dtype: 'F16', shape: [8, 1], data: new Array(8).fill(0.01) },
  { name: `${QP}.biases`, dtype: 'F16', shape: [8, 1], data: new Array(8).fill(-0.08) },
];
const mlxBase = (quantization: Record<string, unknown>, tensors = mlxTensors()) =>
  hfModelFolder(tensors, { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 32, torch_dtype: 'float16', quantization }, { metadata: { format: 'mlx' } });
const MLX = { group_size: 32, bits: 4 };
const MLXCFG = (why: string) => `llama-mlx: config.json quantization_config (mlx): ${why}; merging into such a base is not supported: use the unquantized model`;
const MLXNOT = (format: string, why: string) => `llama-mlx: ${QP}.weight is not a ${format} weight as it writes them (${why})`;

describe('mlx affine bases: configs and tensors mlx does not write, refused in one line', () => {
  const cases: [string, Record<string, string | Uint8Array>, string][] = [
    ['a per-layer entry that is neither an object nor false', mlxBase({ ...MLX, [QP]: 4 }), MLXCFG(`quantization."${QP}" is 4, neither a {group_size, bits} object nor false`)],
    ['a layer config says is not quantized, stored quantized', mlxBase({ ...MLX, [QP]: false }),
      MLXNOT('mlx', `config.json quantization."${QP}" is false (not quantized), but it is stored as uint32 codes with scales and biases`)],
    ['group_size 0', mlxBase({ ...MLX, group_size: 0 }), MLXCFG('quantization.group_size 0')],
    ['codes of one dimension', mlxBase(MLX, swapT(mlxTensors(), `${QP}.weight`, { shape: [32] })),
      MLXNOT('mlx affine', 'it is [32]; a quantized weight is (out, in·bits/32), or (experts, out, in·bits/32) stacked')],
    ['rows not whole groups', mlxBase({ ...MLX, group_size: 64 }), MLXNOT('mlx affine', 'its 32 inputs per row are not a whole number of groups of 64')],
  ];
  for (const [name, files, message] of cases) {
    it(name, async () => {
      expect(await refusal(openInt(files, 'llama-mlx'), 'UNSUPPORTED_FORMAT')).toBe(message);
    });
  }

  it('a NaN scale met while merging is refused naming the tensor and element', async () => {
    const scales = new Array(8).fill(0.01);
    scales[3] = NaN;
    const files = mlxBase(MLX, swapT(mlxTensors(), `${QP}.scales`, { data: scales }));
    expect(await mergeRefusal(files, 'llama-mlx', 'F16')).toBe(`llama-mlx: tensor "${QP}.scales" holds 1 value that is NaN or Inf (row 3); scales and biases must be finite`);
  });
});

// --- base folders: diffusers pipelines and shard series -------------------------------------------

const UNET_INDEX = { _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.30.0', scheduler: ['diffusers', 'PNDMScheduler'], unet: ['diffusers', 'UNet2DConditionModel'] };
const CONV_IN = buildSafetensors([{ name: 'conv_in.bias', dtype: 'F16', shape: [4], data: [0, 0, 0, 0] }]);
const openFolder = (files: Record<string, string | Uint8Array>) => () => prepareMerge(memoryInputFileSet(files, 'sd15'), [{ files: memoryInputFileSet(QLORA, 'qlora') }]);

describe('base folders refused in one line', () => {
  it('a model_index.json that is not an object is refused naming it', async () => {
    expect(await refusal(openFolder({ 'model_index.json': '[]', 'unet/diffusion_pytorch_model.safetensors': CONV_IN }), 'BAD_CONFIG')).toBe('sd15/model_index.json: expected a JSON object');
  });

  it('a pipeline component stored only as a pickle is refused naming the file', async () => {
    const files = { 'model_index.json': JSON.stringify(UNET_INDEX), 'unet/config.json': '{}', 'unet/diffusion_pytorch_model.bin': new Uint8Array(16), 'scheduler/scheduler_config.json': '{}' };
    expect(await refusal(openFolder(files), 'PICKLE_REFUSED'))
      .toBe('sd15: unet/diffusion_pytorch_model.bin is a pickle file; loramerge reads weights from .safetensors and .gguf files only (convert the unet component to .safetensors first)');
  });

  it('a model_index.json none of whose components holds .safetensors weights is refused', async () => {
    const files = { 'model_index.json': JSON.stringify(UNET_INDEX), 'unet/config.json': '{}', 'scheduler/scheduler_config.json': '{}' };
    expect(await refusal(openFolder(files), 'NOT_FOUND')).toBe('sd15: model_index.json names no component with .safetensors weights');
  });

  it('shards of one series that disagree on the shard count are refused naming both', async () => {
    const files = {
      'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }),
      'model-00001-of-00002.safetensors': buildSafetensors([EMBED]),
      'model-00002-of-00003.safetensors': buildSafetensors([{ name: 'lm_head.weight', dtype: 'BF16', shape: [16, 32], data: new Array(512).fill(0.25) }]),
    };
    expect(await refusal(openInt(files, 'llama'), 'BAD_CONFIG')).toBe('llama: shard model-00002-of-00003.safetensors disagrees with model-00001-of-00002.safetensors on the shard count');
  });

  it(`more than MAX_TENSORS (${MAX_TENSORS}) tensors over two shards, each under the limit, is refused by the limit`, async () => {
    // Empty F32 tensors: each header alone is a valid file of MAX_TENSORS / 2 + 1 tensors.
    const shard = (prefix: string) => {
      const entries = Array.from({ length: MAX_TENSORS / 2 + 1 }, (_, i) => `"${prefix}.${i}.weight":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
      return safetensorsOf(`{${entries.join(',')}}`);
    };
    const files = {
      'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }),
      'model-00001-of-00002.safetensors': shard('a'),
      'model-00002-of-00002.safetensors': shard('b'),
    };
    expect(await refusal(openInt(files, 'llama'), 'LIMIT_EXCEEDED')).toBe(`llama: more than ${MAX_TENSORS} tensors over its files (the limit MAX_TENSORS)`);
  });
});

describe('integer weight-only bases: a group index past the groups, met while merging', () => {
  const gIdx = Array.from({ length: 32 }, (_, i) => (i === 7 ? 5 : 0)); // one group; input 7 says group 5

  it('GPTQ g_idx', async () => {
    const files = intBase(GPTQ, swapT(gptqTensors(), `${QP}.g_idx`, { data: gIdx }));
    expect(await mergeRefusal(files)).toBe(NOT('GPTQ', `${QP}.g_idx[7] is 5, outside its 1 groups`));
  });

  it('compressed-tensors weight_g_idx', async () => {
    const files = intBase(ctConfig({ actorder: 'group' }), [...ctTensors(), { name: `${QP}.weight_g_idx`, dtype: 'I32', shape: [32], data: gIdx }]);
    expect(await mergeRefusal(files)).toBe(NOT('compressed-tensors pack-quantized', `${QP}.weight_g_idx[7] is 5, outside its 1 groups`));
  });
});

describe('safetensors container: conversions it does not make', () => {
  it('an integer tensor is never converted to a float type (the writer keeps integer tensors as stored)', () => {
    const container = safetensorsContainer([], []);
    expect(() => container.convert(new Uint8Array(8), 'I32', 'F16')).toThrow('cannot convert I32 to F16');
    expect(() => container.convert(new Uint8Array(8), 'F32', 'I8')).toThrow('cannot convert F32 to I8');
  });
});
