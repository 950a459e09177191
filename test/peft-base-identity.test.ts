/**
 * A PEFT adapter whose adapter_config.json names a base of another model family than the base
 * folder's config.json (a Llama 3 8B LoRA on Mistral 7B, whose projections have the same shapes):
 * it merges as asked, with one warning line naming both. Names that differ only as people's folders
 * do (local paths, organisation renames, "-Instruct", quantized uploads, a VLM whose language model
 * is of that family) give no warning. PEFT's own loading does not compare the names at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { runCli } from './helpers/cli.js';
import { seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { expectValues } from './helpers/merge-truth.js';

const rand = seededRandom(8808);
let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu.dispose());
const temp = tempDirs();
afterAll(temp.removeAll);

// Llama-3-8B and Mistral-7B-v0.1 alike: hidden 4096, 8 key-value heads of 128 (k_proj 1024 rows),
// here scaled down by 128 (hidden 32, k_proj 8 rows).
const hidden = 32;
const kv = 8;
const q = 'model.layers.0.self_attn.q_proj';
const k = 'model.layers.0.self_attn.k_proj';

const baseTensors: FixtureTensor[] = [
  randomTensor('model.embed_tokens.weight', [64, hidden], 'BF16', rand),
  randomTensor(`${q}.weight`, [hidden, hidden], 'BF16', rand),
  randomTensor(`${k}.weight`, [kv, hidden], 'BF16', rand),
  randomTensor('model.layers.0.input_layernorm.weight', [hidden], 'BF16', rand),
  randomTensor('model.norm.weight', [hidden], 'BF16', rand),
  randomTensor('lm_head.weight', [64, hidden], 'BF16', rand),
];
const mistralConfig = {
  _name_or_path: 'mistralai/Mistral-7B-v0.1', architectures: ['MistralForCausalLM'], model_type: 'mistral',
  hidden_size: hidden, num_key_value_heads: 1, num_attention_heads: 4, num_hidden_layers: 1, vocab_size: 64, torch_dtype: 'bfloat16',
};
const llamaConfig = { ...mistralConfig, _name_or_path: 'meta-llama/Meta-Llama-3-8B', architectures: ['LlamaForCausalLM'], model_type: 'llama' };

const adapterTensors: FixtureTensor[] = [
  randomTensor(`base_model.model.${q}.lora_A.weight`, [2, hidden], 'F32', rand, 0.5),
  randomTensor(`base_model.model.${q}.lora_B.weight`, [hidden, 2], 'F32', rand, 0.5),
  randomTensor(`base_model.model.${k}.lora_A.weight`, [2, hidden], 'F32', rand, 0.5),
  randomTensor(`base_model.model.${k}.lora_B.weight`, [kv, 2], 'F32', rand, 0.5),
];
const adapter = (baseName: string) => peftFolder({
  base_model_name_or_path: baseName, r: 2, lora_alpha: 16, target_modules: ['q_proj', 'k_proj'], task_type: 'CAUSAL_LM', lora_dropout: 0.05, bias: 'none',
}, adapterTensors);

async function warningsFor(baseConfig: object, baseName: string): Promise<string[]> {
  const prepared = await prepareMerge(memoryInputFileSet(hfModelFolder(baseTensors, baseConfig), 'base'), [{ files: memoryInputFileSet(adapter(baseName), 'adapter1'), weight: 1 }]);
  await prepared.close();
  expect(prepared.plan.problems).toEqual([]);
  return prepared.plan.warnings;
}

describe('an adapter trained on another model family than the base', () => {
  it('a Llama 3 LoRA on Mistral 7B (the same shapes) merges exactly, with one warning naming both', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(hfModelFolder(baseTensors, mistralConfig), 'base'), [{ files: memoryInputFileSet(adapter('meta-llama/Meta-Llama-3-8B'), 'adapter1'), weight: 1 }]);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.warnings).toEqual([
      'adapter1: adapter_config.json says it was trained on "meta-llama/Meta-Llama-3-8B" (a Llama model), but the base\'s config.json says model_type "mistral", architectures MistralForCausalLM, _name_or_path "mistralai/Mistral-7B-v0.1": the merge goes on where the shapes fit; check that this is the base the adapter was trained on',
    ]);
    const merged = await mergeIntoFolder(prepared, cpu);
    const b = decoded(baseTensors);
    const a = decoded(adapterTensors);
    // W + (α/r)·B·A in float64, α/r = 16/2.
    for (const [key, rows] of [[q, hidden], [k, kv]] as const) {
      const A = a.get(`base_model.model.${key}.lora_A.weight`)!.values;
      const B = a.get(`base_model.model.${key}.lora_B.weight`)!.values;
      const truth = Float64Array.from(b.get(`${key}.weight`)!.values);
      for (let o = 0; o < rows; o++) {
        for (let i = 0; i < hidden; i++) truth[o * hidden + i] += 8 * (B[o * 2] * A[i] + B[o * 2 + 1] * A[hidden + i]);
      }
      expectValues(`${key}.weight`, merged.tensors.get(`${key}.weight`)!, truth);
    }
  });

  for (const [title, config, name] of [
    ['a Qwen2.5 LoRA on a Llama base', llamaConfig, 'Qwen/Qwen2.5-7B-Instruct'],
    ['a Mistral 7B LoRA on Mixtral (another model_type)', { ...mistralConfig, _name_or_path: 'mistralai/Mixtral-8x7B-v0.1', architectures: ['MixtralForCausalLM'], model_type: 'mixtral' }, 'mistralai/Mistral-7B-Instruct-v0.2'],
    ['a Mistral 7B LoRA on Mixtral, both in a Hub cache folder', { ...mistralConfig, _name_or_path: '/root/.cache/huggingface/hub/models--mistralai--Mixtral-8x7B-v0.1/snapshots/985aa055896a8f943d4a9f2572e6ea1341823841', architectures: ['MixtralForCausalLM'], model_type: 'mixtral' }, '/root/.cache/huggingface/hub/models--mistralai--Mistral-7B-v0.1/snapshots/27d67f1b5f57dc0953326b2601d68371d40ea8da'],
    ['a Gemma 2 LoRA on a Phi-3 base whose name is a local folder', { ...mistralConfig, _name_or_path: '/models/mini', architectures: ['Phi3ForCausalLM'], model_type: 'phi3' }, 'google/gemma-2-2b-it'],
  ] as const) {
    it(`${title}: warned`, async () => {
      const warnings = await warningsFor(config, name);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`trained on "${name}"`);
      expect(warnings[0]).toContain(`model_type "${config.model_type}"`);
    });
  }
});

describe('names that differ as people\'s folders do are not warned about', () => {
  for (const [title, config, name] of [
    ['the -Instruct model of the base', llamaConfig, 'meta-llama/Meta-Llama-3-8B-Instruct'],
    ['a local path to the base', llamaConfig, '/home/phil/models/Meta-Llama-3-8B'],
    ['a trainer\'s checkpoint folder of the base', llamaConfig, '/scratch/runs/Meta-Llama-3-8B/checkpoint-500'],
    ['Mixtral named by its organisation on Mixtral', { ...mistralConfig, _name_or_path: '', architectures: ['MixtralForCausalLM'], model_type: 'mixtral' }, 'mistralai/Mixtral-8x7B-Instruct-v0.1'],
    ['a Windows path with no family word', llamaConfig, 'C:\\Users\\me\\checkpoints\\base'],
    ['a quantized upload under another organisation', llamaConfig, 'unsloth/llama-3-8b-bnb-4bit'],
    ['a fine-tune named without a family word', llamaConfig, 'mlabonne/NeuralDaredevil-8B-abliterated'],
    ['a fine-tune whose name holds "phi" inside a word (Yi 1.5 is a Llama model)', llamaConfig, 'cognitivecomputations/dolphin-2.9.1-yi-1.5-34b'],
    ['a base config.json that keeps no name', { ...llamaConfig, _name_or_path: undefined }, 'meta-llama/Llama-3.1-8B'],
    ['Falcon3 (a Llama model), its config.json keeping no name', { ...llamaConfig, _name_or_path: undefined }, 'tiiuae/Falcon3-7B-Instruct'],
    ['SmolLM2 (a Llama model)', { ...llamaConfig, _name_or_path: '' }, 'HuggingFaceTB/SmolLM2-135M-Instruct'],
    ['a LLaVA-NeXT base whose language model is Mistral', {
      _name_or_path: '', architectures: ['LlavaNextForConditionalGeneration'], model_type: 'llava_next', text_config: { model_type: 'mistral', hidden_size: hidden },
    }, 'llava-hf/llava-v1.6-mistral-7b-hf'],
    ['a DeepSeek distill of Qwen on Qwen2', { ...mistralConfig, _name_or_path: '', architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }, 'deepseek-ai/DeepSeek-R1-Distill-Qwen-7B'],
    ['no base_model_name_or_path (null, as PEFT writes an unknown one)', llamaConfig, null],
  ] as const) {
    it(title, async () => {
      expect(await warningsFor(config, name as string)).toEqual([]);
    });
  }

  it('a base folder without config.json says nothing to compare', async () => {
    const files = { 'model.safetensors': hfModelFolder(baseTensors, {})['model.safetensors'] };
    const prepared = await prepareMerge(memoryInputFileSet(files, 'base'), [{ files: memoryInputFileSet(adapter('Qwen/Qwen2.5-7B'), 'adapter1'), weight: 1 }]);
    await prepared.close();
    expect(prepared.plan.warnings).toEqual([]);
  });
});

it('the CLI prints the warning on one line and writes the merged model', async () => {
  const dir = temp.make({
    ...Object.fromEntries(Object.entries(hfModelFolder(baseTensors, mistralConfig)).map(([p, v]) => [`base/${p}`, v])),
    ...Object.fromEntries(Object.entries(adapter('meta-llama/Meta-Llama-3-8B')).map(([p, v]) => [`adapter/${p}`, v])),
  });
  const run = await runCli(['merge', '--base', join(dir, 'base'), '--adapter', join(dir, 'adapter'), '--out', join(dir, 'merged'), '--backend', 'cpu']);
  expect(run.code).toBe(0);
  const lines = run.stderr.split('\n').filter((l) => l.includes('trained on "meta-llama/Meta-Llama-3-8B"'));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^warning: \S*adapter: adapter_config\.json says it was trained on .*model_type "mistral"/);
});
