/**
 * `merge --dry-run` refuses what the merge refuses on the tensors an adapter saves whole
 * (modules_to_save, trainable-token rows) before writing: the page's plan found these
 * (savedTensorRefusals) while the dry run passed them (exit 0) and only the real run stopped. The
 * dry run now lists each as a problem line and exits with the real run's error line and code, at
 * the output type the real run would write (--dtype), and writes nothing.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectDryRunRefusesAsMerge, oneErrorLine, runCli } from './helpers/cli.js';
import { seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { hfModelFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { H, llama, P, poison } from './helpers/non-finite-cases.js';
import { buildSafetensors } from './helpers/fixtures.js';
import { LLAMA, peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(() => temp.removeAll());

// Llama cut small (vocab 20, hidden 256), f16, as transformers saves it.
const CONFIG = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16', vocab_size: 20, tie_word_embeddings: false };

/** The dry run's and the real run's outcome on one PEFT folder: both refuse, with the same line; nothing written. */
async function bothRefuse(config: object, adapter: FixtureTensor[], extra: string[] = []): Promise<{ line: string; stdout: string; base: string; lora: string }> {
  const rand = seededRandom(20261207);
  const base = temp.make(hfModelFolder(llama(rand), CONFIG));
  const lora = temp.make(peftFolder(config, adapter));
  const out = join(temp.make(), 'merged');
  const args = ['merge', '--base', base, '--adapter', lora, '--backend', 'cpu', ...extra];
  return { ...(await expectDryRunRefusesAsMerge(args, out, [base, lora])), base, lora };
}

describe('merge --dry-run: the tensors an adapter saves whole, refused in the real run\'s words', () => {
  const rand = seededRandom(20261208);
  const q = [
    randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, H], 'F32', rand),
    randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [H, 2], 'F32', rand),
  ];
  const lmHead = randomTensor(`${P}.lm_head.modules_to_save.default.weight`, [20, H], 'F32', rand);

  it('a modules_to_save lm_head holding NaN in rows 3 and 12', async () => {
    const { line, stdout, lora } = await bothRefuse(
      { r: 2, target_modules: ['q_proj'], modules_to_save: ['lm_head'] },
      [...q, poison(lmHead, [3 * H + 1, 12 * H + 7], NaN)],
    );
    const message = `${lora}: tensor "base_model.model.lm_head.modules_to_save.default.weight" (replacing lm_head.weight, modules_to_save) holds 2 NaN or Inf values (first in row 3, last in row 12); the adapter file is broken`;
    expect(line).toBe(`error: ${message}`);
    expect(stdout).toContain(`problem: ${message}`);
  });

  it('trainable-token rows that overflow the f16 embedding; none at --dtype f32, where both runs pass', async () => {
    const delta = poison(randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [2, H], 'F32', rand), [H + 9], 1e6);
    const config = { r: 2, trainable_token_indices: [4, 17] };
    const { line, base: refusedBase } = await bothRefuse(config, [delta]);
    expect(line).toBe(`error: ${join(refusedBase, 'model.safetensors')}: tensor "model.embed_tokens.weight": values of row 17 (set by trainable tokens) overflow F16 (largest finite 65504) when converted; write with --dtype bf16 or f32`);
    // The same folder written as f32 holds the value: the dry run says so, as the real run writes it.
    const base = temp.make(hfModelFolder(llama(seededRandom(20261207)), CONFIG));
    const lora = temp.make(peftFolder(config, [delta]));
    const args = ['merge', '--base', base, '--adapter', lora, '--backend', 'cpu', '--dtype', 'f32'];
    const dry = await runCli([...args, '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    const run = await runCli([...args, '--out', join(temp.make(), 'merged')]);
    expect(run.code, run.stderr).toBe(0);
  });
  it('two refusals: both problem lines, the error listing both with the real run\'s line first; nothing written', async () => {
    const delta = poison(randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [2, H], 'F32', rand), [H + 9], 1e6);
    const base = temp.make(hfModelFolder(llama(seededRandom(20261207)), CONFIG));
    const lora = temp.make(peftFolder(
      { r: 2, target_modules: ['q_proj'], modules_to_save: ['lm_head'], trainable_token_indices: [4, 17] },
      [...q, poison(lmHead, [3 * H + 1], NaN), delta],
    ));
    const out = join(temp.make(), 'merged');
    const args = ['merge', '--base', base, '--adapter', lora, '--backend', 'cpu'];
    const dry = await runCli([...args, '--dry-run']);
    const run = await runCli([...args, '--out', out]);
    expect([dry.code, run.code]).toEqual([1, 1]);
    const first = oneErrorLine(run).slice('error: '.length);
    const second = `${lora}: tensor "base_model.model.lm_head.modules_to_save.default.weight" (replacing lm_head.weight, modules_to_save) holds 1 NaN or Inf value (row 3); the adapter file is broken`;
    expect(first).toMatch(/^.*model\.safetensors: tensor "model\.embed_tokens\.weight": values of row 17 \(set by trainable tokens\) overflow F16/);
    expect(dry.stdout.split('\n').filter((l) => l.startsWith('problem: '))).toEqual([`problem: ${first}`, `problem: ${second}`]);
    // As the plan's own problems: one line, each after a dash.
    expect(oneErrorLine(dry)).toBe(`error: 2 problems in the merge: - ${first}; - ${second}`);
    expect(existsSync(out)).toBe(false);
  });

  it('a GGUF base: a modules_to_save head too large for its Q6_K blocks, refused by the dry run as by the real run', async () => {
    const model = q4kmLlama();
    const baseDir = temp.make(model.files);
    const base = join(baseDir, 'tiny-llama-Q4_K_M.gguf');
    const peft = peftLlamaAdapter();
    const config = { ...JSON.parse(peft.files['adapter_config.json'] as string), modules_to_save: ['lm_head'] };
    // Finite in f32 and in the adapter; re-quantized to output.weight's Q6_K, the blocks' f16 scales overflow.
    const head = Float64Array.from({ length: LLAMA.vocab * LLAMA.hidden }, (_, i) => ((i % 7) - 3) * 1e9);
    const tensors: FixtureTensor[] = peft.factors.flatMap((f) => [
      { name: `${P}.${f.module}.lora_A.weight`, dtype: 'BF16' as const, shape: [f.rank, f.in], data: f.a },
      { name: `${P}.${f.module}.lora_B.weight`, dtype: 'BF16' as const, shape: [f.out, f.rank], data: f.b },
    ]);
    tensors.push({ name: `${P}.lm_head.weight`, dtype: 'F32', shape: [LLAMA.vocab, LLAMA.hidden], data: head });
    const lora = temp.make({ 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) });
    const out = join(temp.make(), 'merged.gguf');
    const args = ['merge', '--base', base, '--adapter', lora, '--backend', 'cpu'];
    const dry = await runCli([...args, '--dry-run']);
    const run = await runCli([...args, '--out', out]);
    expect([dry.code, run.code], dry.stderr + run.stderr).toEqual([1, 1]);
    const line = `error: ${base}: tensor "output.weight": merged values up to 3.00e+9 are too large for Q6_K blocks: 16384 values (first in row 0, last in row 63) would be NaN or Inf, the blocks' f16 scales overflow; write with --dtype f32 or bf16, or lower --weight`;
    expect(oneErrorLine(dry)).toBe(line);
    expect(oneErrorLine(run)).toBe(line);
    expect(dry.stdout).toContain(`problem: ${line.slice('error: '.length)}`);
    expect(existsSync(out)).toBe(false);
    // f32 holds them: both runs pass.
    expect((await runCli([...args, '--dtype', 'f32', '--dry-run'])).code).toBe(0);
  });
});
