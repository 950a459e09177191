/**
 * Hostile and damaged inputs against the readers and writers added last: each is refused in one
 * line naming the file, tensor or module and what to do, exit code 1 (2 for a bad option),
 * nothing at the output path and the inputs as they were; or, where the tool it comes from loads
 * it, merged as that tool does.
 * - `--imatrix` whose weights are all 0 over a super-block (an in_sum2 of zeros beside a count
 *   that is not), or too small for f32: ggml's Q2_K/Q4_K/Q5_K quantizers divided by the sum of the
 *   block's weights (make_qp_quants) and wrote NaN scales, which llama-quantize's check of its
 *   output (ggml_validate_row_data) stops on; the refusal blamed the merged values ("too large …
 *   lower --weight"). Current ggml (b466b4d on) writes zero scales there, a block of zeros for
 *   values that are not, which is refused the same way. ggml's IQ3 search failing (negative weights, or values past f32 in its
 *   distances) gave a line naming neither the importance matrix nor the tensor.
 * - A GGUF imatrix without llama-imatrix's imatrix.* metadata, which llama-quantize refuses
 *   ("missing imatrix metadata"), was applied.
 * - `--dry-run --imatrix` read the file but did not match it to the model: an importance matrix
 *   of another model passed the dry run and was refused by the real one.
 * - LongCat-Video's LoRANetwork files: `lora_up.blocks.01.weight` was read as block 1 (torch's
 *   ModuleList names blocks str(i), so LoRANetwork's load_state_dict has no such key and block 1
 *   keeps its zeros), and beside `blocks.1` it silently replaced it; an alpha_scale of shape (1,)
 *   or (1, 1) was read, where LoRAModule's 0-d buffer refuses it.
 * - combine and resize writing f16 factors (the inputs' type): a weight of 1e30, or α/r folded
 *   into B for a llama.cpp GGUF, took values past 65504, written as Inf (exit code 0) for PEFT,
 *   kohya's loaders and llama.cpp to apply.
 * - fbgemm_fp8 (Llama 3.1 405B FP8) weight_scale tensors FbgemmFp8Linear does not load (transposed,
 *   flat, NaN, negative): refused naming the scale tensor (these held already; they had no test).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { readImportanceMatrix } from '../src/formats/gguf/imatrix.js';
import { bytesSource } from '../src/io/memory-source.js';
import { merge as browserMerge } from '../src/merge.js';
import { oneErrorLine, runCli, snapshot } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { hfModelFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { buildGguf, tensorData, type MetaValue } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

/** llama-imatrix's metadata (llama-quantize requires all three keys). */
const IMATRIX_META: [string, MetaValue][] = [
  ['general.type', { type: 'string', value: 'imatrix' }],
  ['imatrix.datasets', { type: 'array', itemType: 'string', value: ['calibration_datav3.txt'] }],
  ['imatrix.chunk_count', { type: 'u32', value: 125 }],
  ['imatrix.chunk_size', { type: 'u32', value: 512 }],
];

/** llama-imatrix's GGUF output: `<name>.in_sum2` F32 ne [ne0, n] and `<name>.counts` F32 ne [1, n]. */
function imatrixGguf(entries: { name: string; sums: number[]; counts: number[] }[], metadata = IMATRIX_META): Uint8Array {
  return buildGguf({
    metadata,
    tensors: entries.flatMap((e) => [
      { name: `${e.name}.in_sum2`, type: 'F32', ne: [e.sums.length / e.counts.length, e.counts.length], data: tensorData('F32', e.sums) },
      { name: `${e.name}.counts`, type: 'F32', ne: [1, e.counts.length], data: tensorData('F32', e.counts) },
    ]),
  });
}

/** A CLI run of `args` (which name files in `dir`) refused: one line, `code`, nothing at `out`, `dir` unchanged. */
async function refused(dir: string, out: string, args: string[], code = 1): Promise<string> {
  const before = snapshot(dir);
  const run = await runCli(args);
  const line = oneErrorLine(run);
  expect(run.stderr).not.toMatch(/\n\s+at |internal error/);
  expect(run.code, run.stderr).toBe(code);
  expect(existsSync(out)).toBe(false);
  expect(snapshot(dir)).toEqual(before);
  return line;
}

describe('--imatrix whose weights make ggml\'s quantizer write NaN scales', () => {
  const cols = LLAMA.hidden;
  // The Q4_K_M llama's ffn_up is Q4_K: merged, it is re-quantized with the entry's weights.
  const lora = () => ggufLoraAdapter([{ tensor: 'blk.0.ffn_up.weight', rank: 4, in: cols, out: LLAMA.ffn, aType: 'F32', bType: 'F32' }], 8);
  const cases: [string, number[], number][] = [
    // A count of 40 with every sum 0: weights of 0, whose sum make_qp_quants divides by (0 since b466b4d).
    ['in_sum2 all 0 (count 40)', new Array(cols).fill(0), 40],
    // Sums of 1e-44 (f32 subnormals): the weights times sqrt(σ² + x²) are 0 in f32.
    ['in_sum2 of subnormals', new Array(cols).fill(1e-44), 4],
  ];
  it.for(cases.flatMap(([what, sums, count]) => ['1', '2'].map((threads) => [what, threads, sums, count] as const)))(
    '%s, --threads %s: refused naming the importance matrix and the tensor, exit code 1, nothing written',
    async ([, threads, sums, count]) => {
      const base = q4kmLlama();
      const dir = temp.make({ ...base.files, 'lora.gguf': lora().bytes, 'llama.imatrix.gguf': imatrixGguf([{ name: 'blk.0.ffn_up.weight', sums, counts: [count] }]) });
      const out = join(dir, 'merged.gguf');
      const line = await refused(dir, out, ['merge', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--adapter', join(dir, 'lora.gguf'), '--imatrix', join(dir, 'llama.imatrix.gguf'), '--out', out, '--backend', 'cpu', '--threads', threads]);
      expect(line).toMatch(/^error: importance matrix \S+llama\.imatrix\.gguf: tensor "blk\.0\.ffn_up\.weight" quantized to Q4_K with its weights comes out NaN, Inf or zeroed/);
      expect(line).toMatch(/leave out --imatrix$/);
      expect(line).not.toMatch(/lower --weight/);
    },
  );

  it('the library, IQ3_XXS with negative weights (ggml\'s grid search finds no neighbour and aborts): the importance matrix named', async () => {
    const base = q4kmLlama();
    // in_sum2 of -1 (no sum of squares is negative): every weighted distance of the search is negative or NaN.
    const importance = await readImportanceMatrix(bytesSource(imatrixGguf([{ name: 'blk.0.ffn_up.weight', sums: new Array(cols).fill(-1), counts: [1] }]), 'llama.imatrix.gguf'));
    const run = (extra: object) => browserMerge({
      base: new File([base.files['tiny-llama-Q4_K_M.gguf'] as Uint8Array<ArrayBuffer>], 'tiny-llama-Q4_K_M.gguf'),
      adapters: [new File([lora().bytes as Uint8Array<ArrayBuffer>], 'lora.gguf')], backend: 'cpu', dtype: 'iq3_xxs', ...extra,
    });
    await expect(run({ importance })).rejects.toThrow(/^importance matrix llama\.imatrix\.gguf: tensor "blk\.0\.ffn_up\.weight" quantized to IQ3_XXS with its weights comes out NaN, Inf or zeroed .*leave out importance$/);
    // Without the weights the same merge is written.
    expect((await run({})).blobs).toHaveLength(1);
  });

  it('without an imatrix, merged values too large for IQ3_XXS (ggml\'s search overflows f32): the line names the file and tensor', async () => {
    const base = q4kmLlama();
    const merged = browserMerge({
      base: new File([base.files['tiny-llama-Q4_K_M.gguf'] as Uint8Array<ArrayBuffer>], 'tiny-llama-Q4_K_M.gguf'),
      adapters: [{ source: new File([lora().bytes as Uint8Array<ArrayBuffer>], 'lora.gguf'), weight: 1e16 }], backend: 'cpu', dtype: 'iq3_xxs',
    });
    await expect(merged).rejects.toThrow(/^tiny-llama-Q4_K_M\.gguf: tensor "blk\.0\.ffn_up\.weight": values too large \(or not finite\) for an IQ3 block (in row \d+|in \d+ rows \(first in row \d+, last in row \d+\)): /);
  });

  it('the same merge without --imatrix, and with weights that are not all 0, is written', async () => {
    const base = q4kmLlama();
    const sums = Array.from({ length: cols }, (_, i) => (i % 64 === 0 ? 0 : 3 + (i % 7)));
    const dir = temp.make({ ...base.files, 'lora.gguf': lora().bytes, 'llama.imatrix.gguf': imatrixGguf([{ name: 'blk.0.ffn_up.weight', sums, counts: [40] }]) });
    for (const extra of [[], ['--imatrix', join(dir, 'llama.imatrix.gguf')]]) {
      const run = await runCli(['merge', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, `out-${extra.length}.gguf`), '--backend', 'cpu', ...extra]);
      expect(run.code, run.stderr).toBe(0);
    }
  });
});

describe('a GGUF importance matrix without imatrix.* metadata (llama-quantize: "missing imatrix metadata")', () => {
  const pair = imatrixGguf([{ name: 'blk.0.attn_q.weight', sums: [4, 8, 12, 16], counts: [4] }], []);
  it.for(IMATRIX_META.slice(1).map(([key]) => key))('without %s: refused naming the file and the key', async (key) => {
    const bytes = imatrixGguf([{ name: 'blk.0.attn_q.weight', sums: [4, 8, 12, 16], counts: [4] }], IMATRIX_META.filter(([k]) => k !== key));
    await expect(readImportanceMatrix(bytesSource(bytes, 'llama.imatrix.gguf'))).rejects.toThrow(
      `importance matrix llama.imatrix.gguf: its metadata has no ${key}, which llama-imatrix writes and llama-quantize requires ("missing imatrix metadata"); make it again with llama-imatrix`,
    );
  });

  it('without any: all three named; with all three the weights are in_sum2 / count', async () => {
    await expect(readImportanceMatrix(bytesSource(pair, 'i.gguf'))).rejects.toThrow(/its metadata has no imatrix\.datasets, imatrix\.chunk_count, imatrix\.chunk_size, /);
    const im = await readImportanceMatrix(bytesSource(imatrixGguf([{ name: 'blk.0.attn_q.weight', sums: [4, 8, 12, 16], counts: [4] }]), 'i.gguf'));
    expect([...im.entries.get('blk.0.attn_q.weight')!]).toEqual([1, 2, 3, 4]);
  });
});

describe('--dry-run --imatrix: the importance matrix matched to the base as the real run matches it', () => {
  const cols = LLAMA.hidden;
  const entry = (name: string) => ({ name, sums: Array.from({ length: cols }, (_, i) => 1 + (i % 5)), counts: [10] });
  const cases: [string, { name: string; sums: number[]; counts: number[] }[], string[], RegExp][] = [
    ['an entry naming no tensor of the model', [entry('blk.0.attn_q.weight'), entry('blk.7.attn_q.weight')], [], /its entry "blk\.7\.attn_q\.weight" is no tensor of this model \(was it made for another model\?\)$/],
    ['an entry of another length', [{ ...entry('blk.0.attn_q.weight'), sums: [1, 2, 3, 4] }], [], /its entry "blk\.0\.attn_q\.weight" has 4 values, but the tensor \[256, 256\] takes 256/],
    ['--dtype converting tensors the merge leaves', ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'].map((m) => entry(`blk.0.${m}.weight`)), ['--dtype', 'q4_k'], /"blk\.0\.attn_k\.weight" is converted to Q4_K by --dtype without being merged, .*add --dtype-merged-only/],
  ];
  it.for(cases)('%s: the dry run refuses it in the real run\'s words, exit code 2, and writes nothing', async ([, entries, extra, message]) => {
    const base = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: cols, out: cols, aType: 'F32', bType: 'F32' }], 8);
    const dir = temp.make({ ...base.files, 'lora.gguf': lora.bytes, 'llama.imatrix.gguf': imatrixGguf(entries) });
    const out = join(dir, 'merged.gguf');
    const args = ['merge', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--adapter', join(dir, 'lora.gguf'), '--imatrix', join(dir, 'llama.imatrix.gguf'), '--backend', 'cpu', ...extra];
    const dry = await refused(dir, out, [...args, '--dry-run'], 2);
    expect(dry).toMatch(message);
    expect(await refused(dir, out, [...args, '--out', out], 2)).toBe(dry);
  });

  it('an importance matrix that fits: the dry run passes, as the real run writes', async () => {
    const base = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: cols, out: cols, aType: 'F32', bType: 'F32' }], 8);
    const dir = temp.make({ ...base.files, 'lora.gguf': lora.bytes, 'llama.imatrix.gguf': imatrixGguf([entry('blk.0.attn_q.weight')]) });
    const run = await runCli(['merge', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--adapter', join(dir, 'lora.gguf'), '--imatrix', join(dir, 'llama.imatrix.gguf'), '--dry-run']);
    expect(run.code, run.stderr).toBe(0);
  });
});

describe("LongCat-Video's LoRANetwork files with blocks or alpha_scale LoRANetwork does not load", () => {
  const rand = seededRandom(20261207);
  const h = 8, r = 2;
  // meituan-longcat/LongCat-Video dit/ (bare names), block 0's fused qkv and ffn.w1.
  const DIT = 'diffusion_pytorch_model.safetensors';
  const dit = {
    [DIT]: buildSafetensors([tensor(rand, 'blocks.0.attn.qkv.weight', [3 * h, h], 'BF16'), tensor(rand, 'blocks.0.ffn.w1.weight', [20, h], 'BF16')]),
    'config.json': JSON.stringify({ _class_name: 'LongCatVideoTransformer3DModel', hidden_size: 4096, depth: 48 }),
  };
  const P = 'lora___lorahyphen___blocks___lorahyphen___0___lorahyphen___attn___lorahyphen___qkv';
  const alphaScale = (shape: number[]): FixtureTensor => ({ name: `${P}.alpha_scale`, dtype: 'BF16', shape, data: [0.5] });
  /** cfg_step_lora's form on attn.qkv: lora_down (n·r, in), lora_up.blocks.<i> (out/n, r), alpha_scale 0.5. */
  const qkv = (blocks: string[], scale = alphaScale([])): FixtureTensor[] => [
    tensor(rand, `${P}.lora_down.weight`, [blocks.length * r, h], 'BF16'),
    ...blocks.map((i) => tensor(rand, `${P}.lora_up.blocks.${i}.weight`, [(3 * h) / blocks.length, r], 'BF16')),
    scale,
  ];
  const refusal = (tensors: FixtureTensor[]) => prepareMerge(memoryInputFileSet(dit, 'dit'), [{ files: memoryInputFileSet({ 'cfg_step_lora.safetensors': buildSafetensors(tensors) }, 'cfg_step_lora.safetensors'), weight: 1 }])
    .then(async (p) => { await p.close(); return p.plan.problems.map((x) => x.message).join('\n'); }, (e: Error) => e.message);

  const cases: [string, FixtureTensor[], RegExp][] = [
    ['blocks 0, 01, 2 (01 is no ModuleList name)', qkv(['0', '01', '2']), /tensor "lora___\S+qkv\.lora_up\.blocks\.01\.weight" is not in LongCat-Video's LoRANetwork form/],
    ['blocks 0, 1, 01, 2 (01 beside 1)', qkv(['0', '1', '01', '2']), /tensor "lora___\S+qkv\.lora_up\.blocks\.01\.weight" is not in LongCat-Video's LoRANetwork form/],
    ['an alpha_scale of shape (1,)', qkv(['0', '1', '2'], alphaScale([1])), /module "blocks\.0\.attn\.qkv" \(LongCat-Video LoRA\) has an alpha_scale that is not one finite number: \S+\.alpha_scale is BF16 \(1\), not a 0-d float tensor$/],
    ['an alpha_scale of shape (1, 1)', qkv(['0', '1', '2'], alphaScale([1, 1])), /alpha_scale is BF16 \(1, 1\), not a 0-d float tensor$/],
  ];
  it.for(cases)('%s: refused naming the tensor or module', async ([, tensors, message]) => {
    expect(await refusal(tensors)).toMatch(message);
  });

  it('the same file with blocks 0, 1, 2 and a 0-d alpha_scale is planned (LoRANetwork loads it)', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(dit, 'dit'), [{ files: memoryInputFileSet({ 'cfg_step_lora.safetensors': buildSafetensors(qkv(['0', '1', '2'])) }, 'cfg_step_lora.safetensors'), weight: 1 }]);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual(['blocks.0.attn.qkv.weight']);
    await prepared.close();
  });

  it('the command line: one line naming the tensor, exit code 1, nothing written, the inputs unchanged', async () => {
    const dir = temp.make({ 'dit/diffusion_pytorch_model.safetensors': dit[DIT], 'dit/config.json': dit['config.json'], 'cfg_step_lora.safetensors': buildSafetensors(qkv(['0', '01', '2'])) });
    const out = join(dir, 'merged');
    const line = await refused(dir, out, ['merge', '--base', join(dir, 'dit'), '--adapter', join(dir, 'cfg_step_lora.safetensors'), '--out', out, '--backend', 'cpu']);
    expect(line).toMatch(/lora_up\.blocks\.01\.weight" is not in LongCat-Video's LoRANetwork form/);
  });
});

describe('combine and resize whose factors overflow the inputs\' f16 when written', () => {
  const { hidden: h, ffn } = LLAMA;
  // convert_lora_to_gguf --outtype f16 LoRAs: α 8 on attn_q (r 4); α 4 on attn_q and ffn_down (r 2).
  const a = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: h, out: h, aType: 'F16', bType: 'F16' }], 8, 41);
  const b = ggufLoraAdapter([
    { tensor: 'blk.0.attn_q.weight', rank: 2, in: h, out: h, aType: 'F16', bType: 'F16' },
    { tensor: 'blk.0.ffn_down.weight', rank: 2, in: ffn, out: h, aType: 'F16', bType: 'F16' },
  ], 4, 42);
  // An f16 LoRA whose α (f32 3e38) folded into B as α/r (its modules' ranks differ) passes 65504.
  const hugeAlpha = ggufLoraAdapter([
    { tensor: 'blk.0.attn_q.weight', rank: 4, in: h, out: h, aType: 'F16', bType: 'F16' },
    { tensor: 'blk.0.ffn_down.weight', rank: 2, in: ffn, out: h, aType: 'F16', bType: 'F16' },
  ], 3e38, 44);
  // kohya's sd-scripts LoRA (f16, r 4, α 4) on an SD1.5 UNet projection.
  const K = 'lora_unet_down_blocks_0_attentions_0_proj_in';
  const rand = seededRandom(7);
  const kohya = buildSafetensors([
    tensor(rand, `${K}.lora_down.weight`, [4, 32], 'F16', 0.05), tensor(rand, `${K}.lora_up.weight`, [32, 4], 'F16', 0.05),
    { name: `${K}.alpha`, dtype: 'F16', shape: [], data: [4] },
  ], { ss_network_module: 'networks.lora', ss_network_dim: '4', ss_network_alpha: '4.0' });
  const cases: [string, string, (dir: string) => string[], RegExp][] = [
    ['combine --weight 1e30 of f16 GGUF LoRAs, --threads 1', 'out.gguf', (dir) => ['combine', '--adapter', join(dir, 'a.gguf'), '--weight', '1e30', '--adapter', join(dir, 'b.gguf'), '--method', 'cat', '--threads', '1'], /module "blk\.0\.attn_q\.weight": \d+ values of its lora_a \(up to [\d.e+]+\) overflow F16/],
    ['combine --weight 1e30 of f16 GGUF LoRAs, --threads 2', 'out.gguf', (dir) => ['combine', '--adapter', join(dir, 'a.gguf'), '--weight', '1e30', '--adapter', join(dir, 'b.gguf'), '--method', 'cat', '--threads', '2'], /module "blk\.0\.attn_q\.weight": \d+ values of its lora_a \(up to [\d.e+]+\) overflow F16/],
    ['resize of an f16 GGUF LoRA whose α/r folded into B passes f16', 'out.gguf', (dir) => ['resize', '--adapter', join(dir, 'huge.gguf'), '--rank', '2'], /module "blk\.0\.attn_q\.weight": \d+ values of its lora_b \(α\/r = [\d.e+]+ folded in\) \(up to [\d.e+]+\) overflow F16/],
    ['combine --weight 1e30 of f16 kohya LoRAs', 'out.safetensors', (dir) => ['combine', '--adapter', join(dir, 'k1.safetensors'), '--weight', '1e30', '--adapter', join(dir, 'k2.safetensors'), '--method', 'cat'], /module "lora_unet_down_blocks_0_attentions_0_proj_in": \d+ values of its lora_down \(up to [\d.e+]+\) overflow F16/],
  ];
  it.for(cases)('%s: refused in one line, exit code 1, nothing written, the inputs unchanged', async ([, outName, args, message]) => {
    const dir = temp.make({ 'a.gguf': a.bytes, 'b.gguf': b.bytes, 'huge.gguf': hugeAlpha.bytes, 'k1.safetensors': kohya, 'k2.safetensors': kohya });
    const out = join(dir, outName);
    const line = await refused(dir, out, [...args(dir), '--out', out, '--backend', 'cpu']);
    expect(line).toMatch(message);
    expect(line).toMatch(/would be written as Inf; lower --weight \(or the adapter's α\), or give the inputs with f32 factors$/);
  });
});

describe('meta-llama/Llama-3.1-405B-Instruct-FP8 (fbgemm_fp8) with weight_scale tensors it does not load', () => {
  // Its config.json (cut): quant_method fbgemm_fp8, activation_scale_ub, the head left out; each
  // quantized Linear's weight F8_E4M3 with FbgemmFp8Linear's weight_scale (out, 1), F32.
  const rand = seededRandom(7411);
  const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, quantization_config: { activation_scale_ub: 1200.0, modules_to_not_convert: ['lm_head'], quant_method: 'fbgemm_fp8' } };
  const q = 'model.layers.0.self_attn.q_proj';
  const scale = (shape: number[], values: number[], dtype: 'F32' | 'BF16' | 'I32' = 'F32'): FixtureTensor => ({ name: `${q}.weight_scale`, dtype, shape, data: values });
  const base = (s: FixtureTensor) => hfModelFolder([
    randomTensor('model.embed_tokens.weight', [16, 8], 'BF16', rand), randomTensor(`${q}.weight`, [8, 8], 'F8_E4M3', rand, 100), s, randomTensor('lm_head.weight', [16, 8], 'BF16', rand),
  ], config);
  const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, [
    randomTensor(`base_model.model.${q}.lora_A.weight`, [2, 8], 'F32', rand, 0.5), randomTensor(`base_model.model.${q}.lora_B.weight`, [8, 2], 'F32', rand, 0.5),
  ]);
  const row = new Array(8).fill(0.01);
  const cases: [string, FixtureTensor, RegExp][] = [
    ['a scale per column, (1, out)', scale([1, 8], row), /tensor "model\.layers\.0\.self_attn\.q_proj\.weight_scale" has shape \[1, 8\], which is no grid of scales over model\.layers\.0\.self_attn\.q_proj\.weight \[8, 8\]/],
    ['a flat (out,) scale', scale([8], row), /weight_scale" has shape \[8\], which is no grid of scales/],
    ['a NaN scale', scale([8, 1], [0.01, NaN, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]), /weight_scale" holds the scale NaN \(element 1\); scales must be finite and not negative/],
    ['a negative scale', scale([8, 1], [0.01, 0.01, -0.5, 0.01, 0.01, 0.01, 0.01, 0.01]), /weight_scale" holds the scale -0\.5 \(element 2\); scales must be finite and not negative/],
    ['an Inf scale and a negative one', scale([8, 1], [0.01, Infinity, 0.01, 0.01, 0.01, 0.01, -0.5, 0.01]),
      /weight_scale" holds 2 scales that are NaN, Inf or negative \(first Infinity in element 1, last -0\.5 in element 6\); scales must be finite and not negative$/],
  ];
  it.for(cases)('%s: refused in one line naming the scale tensor, exit code 1, nothing written', async ([, s, message]) => {
    const dir = temp.make({ ...Object.fromEntries(Object.entries(base(s)).map(([k, v]) => [`base/${k}`, v])), ...Object.fromEntries(Object.entries(adapter).map(([k, v]) => [`adapter/${k}`, v])) });
    const out = join(dir, 'merged');
    const line = await refused(dir, out, ['merge', '--base', join(dir, 'base'), '--adapter', join(dir, 'adapter'), '--out', out, '--dtype', 'bf16', '--backend', 'cpu']);
    expect(line).toMatch(message);
  });
});
