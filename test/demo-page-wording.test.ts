/**
 * The page's wording of the engine's messages (demo/page-wording.ts): each message whose advice
 * names a command-line option, as the engine produces it (through the library, or the function that
 * builds it; a few, whose inputs take a quantized checkpoint to reach, copied word for word from
 * their source), must read in the page's control names, with the words written here; messages that
 * name other programs' options, or quote a name holding an option, are left as they are.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type DoraSpec, type StoredTensor } from '../src/index.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { doraFactor } from '../src/engine/column-norms.js';
import { notWritten } from '../src/formats/gguf/gguf-blocks.js';
import { convertTensorBytes } from '../src/formats/gguf/gguf-convert.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { keptScaleTypeProblem } from '../src/formats/gguf/kept-scales.js';
import { PURE_FILE_TYPES } from '../src/formats/gguf/type-mixes.js';
import { GGUF_OUTPUT_TYPES } from '../src/formats/output-types.js';
import type { ScaledFp8Base } from '../src/formats/scaled-fp8.js';
import { scaledFp8Note } from '../src/pipeline/scaled-fp8-output.js';
import { pageWording } from '../demo/page-wording.js';
import { buildSafetensors, encodeValues } from './helpers/fixtures.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { refusalsInMemory } from './helpers/merge-backends.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

/** No option of the CLI's that the page has a control for is left in page words. */
const OPTION = /--(dtype|weight|adapter|base|backend)\b/;

/**
 * `engine` holds `cli` once; the page's wording is the same message with `cli` replaced by `page`
 * (so names, numbers and the rest of the sentence are untouched) and no option left.
 */
function expectPageWords(engine: string, cli: string, page: string): void {
  expect(engine.split(cli).length - 1, engine).toBe(1);
  const worded = pageWording(engine);
  expect(worded).toBe(engine.replace(cli, page));
  expect(worded).not.toMatch(OPTION);
}

const backend = new CpuBackend('test');
const KEEP = '“keep each tensor’s type”';
const MERGED_ONLY = '“only for the tensors the merge changes”';

/** The one message of a merge that fails (or whose plan has one problem). */
async function oneRefusal(...args: Parameters<typeof refusalsInMemory>): Promise<string> {
  const messages = await refusalsInMemory(...args);
  expect(messages).toHaveLength(1);
  return messages[0];
}

describe('the engine’s messages in the page’s words', () => {
  const llama = llamaWithPeft(71);
  const adapterFiles = { 'adapter_config.json': llama.files['llama-lora/adapter_config.json'], 'adapter_model.safetensors': llama.adapter };

  it('a merged f16 tensor that overflows: the Output dtype and the adapter’s weight', async () => {
    const engine = await oneRefusal({ backend, base: { 'llama.safetensors': llama.base }, adapters: [{ files: adapterFiles, weight: 1e6 }] });
    expect(engine).toMatch(/overflow F16 \(largest finite 65504\): \d+ values? \((row \d+|first in row \d+, last in row \d+)\), after the update from adapter0 module /);
    expectPageWords(engine, 'write with --dtype bf16 or f32, or lower --weight', 'choose bf16 or f32 as the Output dtype, or lower the adapter’s weight');
  });

  it('a weight whose update is past every float: the adapter and its weight', async () => {
    const engine = await oneRefusal({ backend, base: { 'llama.safetensors': llama.base }, adapters: [{ files: adapterFiles, weight: 1e40 }] });
    expectPageWords(engine, 'check the adapter and --weight', 'check the adapter and its weight');
  });

  it('a weight whose scale is past float64 (a plan problem, one per module): a smaller weight', async () => {
    const problems = await refusalsInMemory({ backend, base: { 'llama.safetensors': llama.base }, adapters: [{ files: adapterFiles, weight: 1e308 }] });
    expect(problems).toHaveLength(4);
    const engine = problems[0];
    expect(engine).toMatch(/its scale 2 times the weight 1e\+308 is past float64/);
    expectPageWords(engine, 'use a smaller --weight', 'use a smaller weight');
  });

  it('a copied tensor that overflows the chosen dtype: the Output dtype', async () => {
    const base = (value: number) => buildSafetensors([
      { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [16, 16], data: new Float64Array(256).fill(0.5) },
      { name: 'model.norm.weight', dtype: 'F32', shape: [16], data: new Float64Array(16).fill(value) },
    ]);
    const lora = buildSafetensors([
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [2, 16], data: new Float64Array(32).fill(0.1) },
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [16, 2], data: new Float64Array(32).fill(0.1) },
    ]);
    const adapter = { files: { 'adapter_config.json': llama.files['llama-lora/adapter_config.json'], 'adapter_model.safetensors': lora } };
    const toF16 = await oneRefusal({ backend, base: { 'm.safetensors': base(1e6) }, adapters: [adapter], outDtype: 'f16' });
    expectPageWords(toF16, 'write with --dtype bf16 or f32, or keep the base\'s dtype', 'choose bf16 or f32 as the Output dtype, or keep the base\'s dtype');
    const toBf16 = await oneRefusal({ backend, base: { 'm.safetensors': base(3.4e38) }, adapters: [adapter], outDtype: 'bf16' });
    expectPageWords(toBf16, 'write with --dtype f32, or keep', 'choose f32 as the Output dtype, or keep');
  });

  it('a GGUF base: the requantization warning, an adapter picked as the base, a model picked as an adapter', async () => {
    const model = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_output.weight', rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    const prepared = await prepareMerge(memoryInputFileSet(model.files, 'tiny-llama-Q4_K_M.gguf'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora.gguf') }]);
    try {
      const warning = prepared.plan.warnings.find((w) => w.includes('re-quantized'))!;
      expectPageWords(warning, 'unless --dtype chooses another type', 'unless another Output dtype is chosen');
      const format = prepared.base.format;
      const tensor = (type: string, shape: number[]) => ({ name: 'blk.0.ffn_norm.weight', type, shape }) as unknown as StoredTensor;
      expectPageWords(format.checkOutputType(tensor('F16', [4, 32]), 'Q4_K')!, 'choose another --dtype', 'choose another Output dtype');
      expectPageWords(format.checkOutputType(tensor('NOT_A_TYPE', [4, 256]), 'Q8_0')!, 'leave out --dtype to copy it as stored', `set the Output dtype to ${KEEP} to copy it as stored`);
    } finally {
      await prepared.close();
    }
    const refusal = async (base: Record<string, Uint8Array>, adapter: Record<string, Uint8Array>) => {
      try {
        await (await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet(adapter, 'adapter') }])).close();
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('merged');
    };
    expectPageWords(await refusal({ 'lora.gguf': lora.bytes }, { 'lora2.gguf': lora.bytes }), 'pass it with --adapter', 'pick it under “Adapters”');
    expectPageWords(await refusal(model.files, model.files), 'pass a base model with --base', 'pick a base model under “Base model”');
  });

  it('GGUF types: not written, kept scales, conversions that fail, the Q8_0 file type', async () => {
    // Q8_K: a GGML type not written (every type read is written now, the IQ1 and IQ2 ones with an importance matrix).
    const q8k = notWritten('Q8_K');
    const list = /choose --dtype q4_k \(or ([a-z0-9_, ]+)\)$/.exec(q8k)![1];
    expect(pageWording(q8k)).toBe(q8k.replace(`choose --dtype q4_k (or ${list})`, `choose q4_k (or ${list}) as the Output dtype`));
    expect(pageWording(q8k)).not.toMatch(OPTION);
    expectPageWords(
      keptScaleTypeProblem(new Set(['output.scale']), { name: 'output.weight', type: 'NVFP4' }, 'Q8_0')!,
      'keep it NVFP4 (--dtype nvfp4, or --dtype-merged-only when the head is not merged)',
      `keep it NVFP4 (the Output dtype nvfp4, or check ${MERGED_ONLY} when the head is not merged)`,
    );
    const failed = async (values: number[], from: string, to: string) => {
      try {
        await convertTensorBytes(encodeValues(values, from as 'F32'), ggmlTypeByName(from)!, ggmlTypeByName(to)!);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('converted');
    };
    const f32 = (x: number) => Array.from({ length: 256 }, (_, i) => (i === 0 ? x : 0.5));
    expectPageWords(await failed(f32(NaN), 'F32', 'IQ4_NL'), 'leave out --dtype to copy it as stored, or choose f16, bf16 or f32', `set the Output dtype to ${KEEP} to copy it as stored, or choose f16, bf16 or f32`);
    expectPageWords(await failed(f32(1e6), 'F32', 'F16'), 'choose --dtype bf16 or f32', 'choose bf16 or f32 as the Output dtype');
    expectPageWords(await failed(Array.from({ length: 256 }, (_, i) => 1e30 * (i % 7 + 1)), 'F32', 'Q6_K'), 'choose --dtype f32 or bf16', 'choose f32 or bf16 as the Output dtype');
    expectPageWords(PURE_FILE_TYPES.Q8_0_MIX, '--dtype q8_0 writes that file', 'the Output dtype q8_0 writes that file');
  });

  it('a DoRA norm past float64: the adapter’s weight', () => {
    let engine = '';
    try {
      doraFactor('model.layers.0.self_attn.q_proj.weight', { epsilon: 0, normAxis: 'out' } as DoraSpec, 3, 1, Infinity);
    } catch (e) {
      engine = (e as Error).message;
    }
    expectPageWords(engine, 'lower --weight', 'lower the adapter’s weight');
  });

  it('a CPU worker thread that died: one thread in the CPU threads box', () => {
    // The pool's line (row-block-pool.ts, workerDied) for a worker killed mid-merge.
    const engine = 'tensor "model.layers.0.mlp.down_proj.weight": a CPU worker thread exited (code 1); the thread was killed, ran out of memory or crashed: '
      + 'retry with one thread (--threads 1), or fewer threads or more memory';
    expectPageWords(engine, '(--threads 1)', '(1 in the “CPU threads” box)');
    expect(pageWording(engine)).not.toMatch(/--threads/);
  });

  it('the plan’s notes on quantized checkpoints: the Output dtype, and what it leaves out', () => {
    const weights = new Map([['model.layers.0.mlp.down_proj.weight', {}]]) as unknown as ScaledFp8Base['weights'];
    const note = (scaled: Partial<ScaledFp8Base>) => scaledFp8Note({ unread: [], ...scaled } as ScaledFp8Base)!;
    expectPageWords(note({ kind: 'comfy-scaled-fp8', rule: 'comfy', weights }), 'or dequantized with --dtype f32/f16/bf16', 'or dequantized with the Output dtype f32/f16/bf16');
    const withKv = note({ kind: 'block-fp8', rule: 'reciprocal', weights, quantizationOnly: ['model.layers.0.self_attn.k_scale'] });
    expect(pageWording(withKv)).toBe(withKv
      .replace('or dequantized with --dtype f32/f16/bf16', 'or dequantized with the Output dtype f32/f16/bf16')
      .replace('; --dtype also leaves out', `; an Output dtype other than ${KEEP} also leaves out`));
    expectPageWords(note({ kind: 'gptq', rule: 'dequantize-only', weights }), 'with --dtype bf16 (or f16, f32) only', 'with the Output dtype bf16 (or f16, f32) only');
  });

  // Reached only with quantized checkpoints of a kind each (src/pipeline/scaled-fp8-output.ts,
  // fp8-requantize.ts, comfy-int8.ts, src/formats/gguf/gguf-model.ts, codecs/iq3-search.ts): copied word for word.
  it.each([
    [
      'model: --dtype-merged-only would leave its block-wise fp8 weights half dequantized; leave it out (every block-wise fp8 weight is then dequantized) or leave out --dtype',
      `model: checking ${MERGED_ONLY} would leave its block-wise fp8 weights half dequantized; uncheck it (every block-wise fp8 weight is then dequantized) or set the Output dtype to ${KEEP}`,
    ],
    [
      'model: --dtype-merged-only would leave its GPTQ weights half dequantized; leave it out (every GPTQ weight is then dequantized to that dtype: re-quantizing to GPTQ is not supported)',
      `model: checking ${MERGED_ONLY} would leave its GPTQ weights half dequantized; uncheck it (every GPTQ weight is then dequantized to that dtype: re-quantizing to GPTQ is not supported)`,
    ],
    [
      'model: --dtype-merged-only would leave its MXFP4 expert parameters half dequantized, which transformers cannot load (it reads them all as MXFP4 or all as floats); leave it out (every MXFP4 expert parameter is then dequantized to that dtype) or leave out --dtype (they are written bf16, as transformers dequantizes them)',
      `model: checking ${MERGED_ONLY} would leave its MXFP4 expert parameters half dequantized, which transformers cannot load (it reads them all as MXFP4 or all as floats); uncheck it (every MXFP4 expert parameter is then dequantized to that dtype) or set the Output dtype to ${KEEP} (they are written bf16, as transformers dequantizes them)`,
    ],
    [
      'model: tensor "w" (block-wise fp8) keeps its codes and scales or is written dequantized: --dtype f8_e5m2 would convert its scale tensors (such as "w_scale_inv") as if they were weights, with or without --dtype-merged-only; leave out --dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized',
      `model: tensor "w" (block-wise fp8) keeps its codes and scales or is written dequantized: the Output dtype f8_e5m2 would convert its scale tensors (such as "w_scale_inv") as if they were weights, with or without ${MERGED_ONLY}; set the Output dtype to ${KEEP} (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized`,
    ],
    [
      'model: tensor "w" is stored quantized, with its scale in w.scale, in a form not read here (no quantization config that names it), so --dtype would write its codes as if they were the weights; leave out --dtype (unchanged tensors are copied as they are)',
      `model: tensor "w" is stored quantized, with its scale in w.scale, in a form not read here (no quantization config that names it), so an Output dtype other than ${KEEP} would write its codes as if they were the weights; set the Output dtype to ${KEEP} (unchanged tensors are copied as they are)`,
    ],
    [
      'model: tensor "w" cannot be dequantized: it is stored quantized in a way not read here; leave out --dtype',
      `model: tensor "w" cannot be dequantized: it is stored quantized in a way not read here; set the Output dtype to ${KEEP}`,
    ],
    [
      'model: its GPTQ weights are written only dequantized (re-quantizing them to GPTQ is not supported); merge with --dtype bf16 (or f16, f32)',
      'model: its GPTQ weights are written only dequantized (re-quantizing them to GPTQ is not supported); choose bf16 (or f16, f32) as the Output dtype',
    ],
    [
      'tensor "w": its merged block at row 0, column 0 (largest magnitude 1e+40) needs a scale that w.weight_scale (F8_E4M3) cannot hold (it would be Infinity, its factor 1); merge with --dtype bf16 (or f16, f32) to write the weights dequantized',
      'tensor "w": its merged block at row 0, column 0 (largest magnitude 1e+40) needs a scale that w.weight_scale (F8_E4M3) cannot hold (it would be Infinity, its factor 1); choose bf16 (or f16, f32) as the Output dtype to write the weights dequantized',
    ],
    [
      'values too large (or not finite) for an IQ3 block in 2 rows (first in row 2, last in row 13): ggml\'s IQ3 quantizer overflows f32 on them and aborts, so llama-quantize cannot write them either; choose --dtype f16, bf16 or f32',
      'values too large (or not finite) for an IQ3 block in 2 rows (first in row 2, last in row 13): ggml\'s IQ3 quantizer overflows f32 on them and aborts, so llama-quantize cannot write them either; choose f16, bf16 or f32 as the Output dtype',
    ],
    // loramerge's --imatrix is the importance matrix picker; llama-quantize's --imatrix stays.
    [
      'IQ2_XXS is written only with an importance matrix: ggml\'s IQ2_XXS quantizer requires one, and llama-quantize refuses IQ2_XXS without --imatrix; give --imatrix FILE (made by llama-imatrix for this model), or choose another --dtype',
      'IQ2_XXS is written only with an importance matrix: ggml\'s IQ2_XXS quantizer requires one, and llama-quantize refuses IQ2_XXS without --imatrix; choose an importance matrix (llama-imatrix’s file for this model), or choose another Output dtype',
    ],
    [
      'model: the merged tensors (1 IQ2_XS: blk.0.attn_q.weight) are written as F16, as llama.cpp\'s export-lora writes a merged tensor, unless an importance matrix is given (--imatrix): llama-quantize writes IQ2_XS only with one',
      'model: the merged tensors (1 IQ2_XS: blk.0.attn_q.weight) are written as F16, as llama.cpp\'s export-lora writes a merged tensor, unless an importance matrix is given (“Choose an importance matrix…”): llama-quantize writes IQ2_XS only with one',
    ],
    ['the importance matrix gives NaN scales: make the importance matrix again, or leave out --imatrix', 'the importance matrix gives NaN scales: make the importance matrix again, or remove the importance matrix'],
  ])('%s', (engine, page) => {
    expect(pageWording(engine)).toBe(page);
  });

  it('leaves other programs’ options, options the page has no control for, and quoted names as they are', () => {
    const untouched = [
      'tensors already quantized (3 Q4_K) are quantized again to Q8_0, as llama-quantize --allow-requantize does: that adds the new type\'s error to the old one (quantizing from an F16 or BF16 model is better)',
      'lora.safetensors: tensor "transformer.transformer.norm.weight" is a norm weight under "transformer." twice (as diffusers\' train_control_lora_flux.py saves --train_norm_layers), which FluxControlPipeline.load_lora_weights does not load',
      'out.safetensors: no space left on the device while writing (ENOSPC); free some space or choose another --out',
      'model: tensor "blk.0 --weight 2 --dtype f16": merged values up to 1e5 are too large',
      ...GGUF_OUTPUT_TYPES.types.map((t) => t.note),
    ];
    expect(untouched.some((m) => m.includes('--pure')) && untouched.some((m) => m.includes('--imatrix'))).toBe(true);
    for (const message of untouched) expect(pageWording(message)).toBe(message);
  });
});
