/**
 * Bases whose weights are quantized codes beside scale tensors that the merge does not read, as the
 * Hub ships them: ModelOpt FP8 per block, weight-only (`quant_algo: "FP8_PB_WO"`: `weight_scale`
 * per 128 × 128 block). Block-wise fp8, compressed-tensors FP8 (scaled-fp8-bases.test.ts), ModelOpt
 * FP8 per tensor and ModelOpt NVFP4 (modelopt-bases.test.ts), compressed-tensors int, GPTQ and AWQ
 * (int-quant-bases.test.ts) are merged. Adding ΔW to the codes as if they were weights would write a wrong model
 * without a word, so each is refused by name until it is read as what it is; the CLI leaves nothing
 * at the output path.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { runCli } from './helpers/cli.js';
import { buildSafetensors, randomValues, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const rand = seededRandom(4242);
const d = 256;
const r = 4;
const q = 'model.layers.0.self_attn.q_proj';

const peftLora = {
  'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8, target_modules: ['q_proj'] }),
  'adapter_model.safetensors': buildSafetensors([
    { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: randomValues(r * d, rand) },
    { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: randomValues(d * r, rand) },
  ]),
};

const fp8Codes = (name: string, rows: number, cols: number): FixtureTensor => ({
  name, dtype: 'F8_E4M3', shape: [rows, cols], data: Array.from(randomValues(rows * cols, rand), (x) => Math.round(x * 8) / 16),
});
const norm: FixtureTensor = { name: 'model.norm.weight', dtype: 'BF16', shape: [d], data: randomValues(d, rand) };

interface QuantizedCase { name: string; tensors: FixtureTensor[]; quantization: Record<string, unknown>; scale: string; method: string }

const CASES: QuantizedCase[] = [
  {
    name: 'ModelOpt FP8 per block, weight-only (quant_algo FP8_PB_WO)',
    tensors: [
      fp8Codes(`${q}.weight`, d, d),
      { name: `${q}.weight_scale`, dtype: 'F32', shape: [d / 128, d / 128], data: [0.002, 0.003, 0.002, 0.001] },
      norm,
    ],
    quantization: { quant_method: 'modelopt', quant_algo: 'FP8_PB_WO', kv_cache_quant_algo: null },
    scale: `${q}.weight_scale`, method: 'modelopt',
  },
];

const folder = (c: QuantizedCase) => ({
  'model.safetensors': buildSafetensors(c.tensors),
  'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', quantization_config: c.quantization }),
});

const temp = tempDirs();
afterAll(temp.removeAll);

describe('quantized bases the merge does not read are refused by name', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const prepared = await prepareMerge(memoryInputFileSet(folder(c), 'model'), [{ files: memoryInputFileSet(peftLora, 'adapter'), weight: 1 }]);
      try {
        const messages = prepared.plan.problems.map((p) => p.message);
        expect(messages).toHaveLength(1);
        expect(messages[0]).toContain(`module "${q}"`);
        // Packed U8 and int8 weights are refused for their dtype before any scale is looked at; fp8 codes for their scale.
        if (c.tensors[0].dtype === 'F8_E4M3') expect(messages[0]).toContain(`scale in ${c.scale} (config.json quantization_config: ${c.method})`);
      } finally {
        await prepared.close();
      }
    });
  }

  it('the CLI says so in one line and writes nothing', async () => {
    const dir = temp.make({ ...Object.fromEntries(Object.entries(folder(CASES[0])).map(([k, v]) => [`base/${k}`, v])), ...Object.fromEntries(Object.entries(peftLora).map(([k, v]) => [`adapter/${k}`, v])) });
    const out = join(dir, 'merged');
    const run = await runCli(['merge', '--base', join(dir, 'base'), '--adapter', join(dir, 'adapter'), '--out', out, '--backend', 'cpu']);
    expect(run.code).not.toBe(0);
    const errorLines = run.stderr.trim().split('\n').filter((l) => l.startsWith('error'));
    expect(errorLines).toHaveLength(1);
    expect(errorLines[0]).toMatch(/q_proj\.weight is stored quantized, with its scale in .*weight_scale .*use the unquantized model/);
    expect(existsSync(out)).toBe(false);
  });

  it('a config.json naming another quantization method refuses a weight without scale tensors too', async () => {
    const files = {
      'model.safetensors': buildSafetensors([{ name: `${q}.weight`, dtype: 'F16', shape: [d, d], data: randomValues(d * d, rand) }, norm]),
      'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], quantization_config: { quant_method: 'eetq' } }),
    };
    const prepared = await prepareMerge(memoryInputFileSet(files, 'model'), [{ files: memoryInputFileSet(peftLora, 'adapter'), weight: 1 }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([expect.stringContaining('config.json says the base is quantized with eetq')]);
    } finally {
      await prepared.close();
    }
  });
});

/**
 * Bases that store a quantized layer under names of their own and no `weight` at all: HQQ as
 * transformers saves it (HQQLinear's state dict: `W_q` packed 4-bit codes of the weight reshaped to
 * rows of group_size, `scale` and `zero` per group, the meta fields as tensors) and optimum-quanto
 * (`weight._data` int8 codes, `weight._scale` per output channel). The module finds no tensor; the
 * refusal names the quantization method rather than saying the module is missing.
 */
describe('quantized layers stored without a weight are refused naming the method', () => {
  const d = 256;
  const groups = (d * d) / 64;
  const norm: FixtureTensor = { name: 'model.norm.weight', dtype: 'BF16', shape: [d], data: randomValues(d, rand) };
  const cases: { name: string; method: string; tensors: FixtureTensor[]; quantization: Record<string, unknown>; stored: string }[] = [
    {
      name: 'HQQ 4-bit, group_size 64, axis 1 (transformers HqqConfig)', method: 'hqq',
      tensors: [
        { name: `${q}.W_q`, dtype: 'U8', shape: [groups / 2, 64], data: Array.from({ length: (groups / 2) * 64 }, (_, i) => (i * 37) % 256) },
        { name: `${q}.scale`, dtype: 'F16', shape: [groups, 1], data: Array(groups).fill(0.0625) },
        { name: `${q}.zero`, dtype: 'F16', shape: [groups, 1], data: Array(groups).fill(7.5) },
        { name: `${q}.shape`, dtype: 'I64', shape: [2], data: [d, d] },
        { name: `${q}.nbits`, dtype: 'I64', shape: [], data: [4] },
        { name: `${q}.group_size`, dtype: 'I64', shape: [], data: [64] },
        norm,
      ],
      quantization: {
        quant_method: 'hqq', skip_modules: ['lm_head'],
        quant_config: { offload_meta: false, scale_quant_params: null, zero_quant_params: null, weight_quant_params: { nbits: 4, group_size: 64, axis: 1, channel_wise: true, optimize: true, round_zero: true, view_as_float: false } },
      },
      stored: `${q}.{W_q, scale, zero, …}`,
    },
    {
      name: 'optimum-quanto int8 weights (QuantoConfig)', method: 'quanto',
      tensors: [
        { name: `${q}.weight._data`, dtype: 'I8', shape: [d, d], data: Array.from({ length: d * d }, (_, i) => ((i * 13) % 255) - 127) },
        { name: `${q}.weight._scale`, dtype: 'BF16', shape: [d, 1], data: Array(d).fill(0.0078125) },
        { name: `${q}.input_scale`, dtype: 'F32', shape: [], data: [1] },
        { name: `${q}.output_scale`, dtype: 'F32', shape: [], data: [1] },
        norm,
      ],
      quantization: { quant_method: 'quanto', weights: 'int8', activations: null, modules_to_not_convert: null },
      stored: `${q}.{weight._data, weight._scale, input_scale, …}`,
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const prepared = await prepareMerge(memoryInputFileSet({
        'model.safetensors': buildSafetensors(c.tensors),
        'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', quantization_config: c.quantization }),
      }, 'model'), [{ files: memoryInputFileSet(peftLora, 'adapter'), weight: 1 }]);
      await prepared.close();
      expect(prepared.plan.problems.map((p) => [p.code, p.message])).toEqual([[
        'UNSUPPORTED_FORMAT',
        `adapter: module "${q}": config.json says the base is quantized with ${c.method} (quantization_config.quant_method), which stores this module as ${c.stored} and no float weight; merging into such weights is not supported: use the unquantized model`,
      ]]);
    });
  }

  it('the CLI says so for HQQ in one line and writes nothing', async () => {
    const c = cases[0];
    const dir = temp.make({
      'base/model.safetensors': buildSafetensors(c.tensors),
      'base/config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', quantization_config: c.quantization }),
      ...Object.fromEntries(Object.entries(peftLora).map(([k, v]) => [`adapter/${k}`, v])),
    });
    const out = join(dir, 'merged');
    const run = await runCli(['merge', '--base', join(dir, 'base'), '--adapter', join(dir, 'adapter'), '--out', out, '--backend', 'cpu']);
    expect(run.code).not.toBe(0);
    const errorLines = run.stderr.trim().split('\n').filter((l) => l.startsWith('error'));
    expect(errorLines).toHaveLength(1);
    expect(errorLines[0]).toContain('quantized with hqq (quantization_config.quant_method), which stores this module as');
    expect(existsSync(out)).toBe(false);
  });

  it("a module naming a parent of quantized layers (HQQ's q_proj under self_attn) is a missing tensor, not a quantized one", async () => {
    const parent = 'model.layers.0.self_attn';
    const adapter = {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8, target_modules: ['self_attn'] }),
      'adapter_model.safetensors': buildSafetensors([
        { name: `base_model.model.${parent}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: randomValues(r * d, rand) },
        { name: `base_model.model.${parent}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: randomValues(d * r, rand) },
      ]),
    };
    const prepared = await prepareMerge(memoryInputFileSet({
      'model.safetensors': buildSafetensors(cases[0].tensors),
      'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', quantization_config: cases[0].quantization }),
    }, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: 1 }]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([`adapter: module "${parent}": no matching tensor in the base model`]);
  });

  it('without a quantization method in config.json, a module with no weight is still a missing tensor', async () => {
    const prepared = await prepareMerge(memoryInputFileSet({
      'model.safetensors': buildSafetensors(cases[0].tensors),
      'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }),
    }, 'model'), [{ files: memoryInputFileSet(peftLora, 'adapter'), weight: 1 }]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([`adapter: module "${q}": no matching tensor in the base model`]);
  });
});
