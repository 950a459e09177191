/**
 * Mistakes a newcomer makes with real inputs, through the CLI: a LoRA given as the base (the two
 * inputs swapped, or the adapter given twice). Each is one line saying what is wrong and what to
 * do, and nothing is left at --out.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLine, listDir, mergeArgs, runCli } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { sdxlKohyaPair } from './helpers/sdxl-kohya-pair.js';
import { peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

describe('a LoRA given as the base', () => {
  // Each module was listed as "no matching tensor in the base model", one per module, without
  // saying that the base was not a model.
  it('a kohya SDXL LoRA as the base of itself is named a LoRA, not a model', async () => {
    const pair = sdxlKohyaPair(8, 3);
    const dir = temp.make({ 'style.safetensors': pair.kohya, 'unet.safetensors': pair.base });
    const run = await runCli(mergeArgs(join(dir, 'style.safetensors'), join(dir, 'style.safetensors'), join(dir, 'merged.safetensors')));
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /^error: .*style\.safetensors: the base is a LoRA adapter, not a model \(its tensors are factors such as "lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q\.lora_(down|up)\.weight"\): give the model this adapter was trained for as the base$/);
    expect(listDir(dir).sort()).toEqual(['style.safetensors', 'unet.safetensors']);
  });

  it("a PEFT adapter's weights file as the base, its folder as the adapter", async () => {
    const { files } = llamaWithPeft(5);
    const dir = temp.make(files);
    const run = await runCli(mergeArgs(join(dir, 'llama-lora', 'adapter_model.safetensors'), join(dir, 'llama-lora'), join(dir, 'merged.safetensors')));
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /llama-lora: the base is a LoRA adapter, not a model \(its tensors are factors such as "base_model\.model\.model\.layers\.0\.[a-z_.]+\.lora_[AB]\.weight"\): give the model this adapter was trained for as the base$/);
    expect(listDir(dir)).not.toContain('merged.safetensors');
  });

  it('the right base still merges', async () => {
    const { files } = llamaWithPeft(6);
    const dir = temp.make(files);
    const run = await runCli(mergeArgs(join(dir, 'llama.safetensors'), join(dir, 'llama-lora'), join(dir, 'merged.safetensors')));
    expect(run.code, run.stderr).toBe(0);
  });
});

describe('a GGUF model given as the adapter', () => {
  // Said: a GGUF file whose general.type is null, not "adapter" (a model converted before
  // general.type existed has none), without saying the file is a model.
  it('is named a GGUF model, not a LoRA, with what to do', async () => {
    const model = q4kmLlama(13);
    const dir = temp.make({ ...model.files, ...Object.fromEntries(Object.entries(peftLlamaAdapter(3).files).map(([k, v]) => [`lora/${k}`, v])) });
    const run = await runCli(mergeArgs(join(dir, 'lora'), join(dir, 'tiny-llama-Q4_K_M.gguf'), join(dir, 'merged.gguf')));
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /^error: .*tiny-llama-Q4_K_M\.gguf: a GGUF model, not a LoRA adapter \(a llama\.cpp LoRA GGUF has general\.type "adapter"\): is it the base, given as an adapter\? pass a base model with --base$/);
    expect(listDir(dir)).not.toContain('merged.gguf');
  });
});

describe('--out named for the other format', () => {
  // A safetensors merge written to merged.gguf (or a GGUF one to .safetensors) succeeded, leaving a
  // file whose name sends it to a loader that cannot read it.
  it('a safetensors base with --out merged.gguf is refused before merging, naming the format to use', async () => {
    const { files } = llamaWithPeft(7);
    const dir = temp.make(files);
    const run = await runCli(mergeArgs(join(dir, 'llama.safetensors'), join(dir, 'llama-lora'), join(dir, 'merged.gguf')));
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, /^error: --out .*merged\.gguf: the base is a safetensors model and the merged model is written in the base's format, not GGUF \(loramerge does not convert between safetensors and GGUF\); name the output \.safetensors$/);
    expect(listDir(dir)).not.toContain('merged.gguf');
  });

  it('a GGUF base with --out merged.safetensors is refused the same way', async () => {
    const model = q4kmLlama(14);
    const dir = temp.make({ ...model.files, ...Object.fromEntries(Object.entries(peftLlamaAdapter(4).files).map(([k, v]) => [`lora/${k}`, v])) });
    const run = await runCli(mergeArgs(join(dir, 'tiny-llama-Q4_K_M.gguf'), join(dir, 'lora'), join(dir, 'merged.safetensors')));
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, /: the base is a GGUF model and the merged model is written in the base's format, not safetensors .*; name the output \.gguf$/);
    expect(listDir(dir)).not.toContain('merged.safetensors');
  });

  it('any other name is the user\'s choice', async () => {
    const { files } = llamaWithPeft(8);
    const dir = temp.make(files);
    const run = await runCli(mergeArgs(join(dir, 'llama.safetensors'), join(dir, 'llama-lora'), join(dir, 'merged.bin.safetensors')));
    expect(run.code, run.stderr).toBe(0);
    const plain = await runCli(mergeArgs(join(dir, 'llama.safetensors'), join(dir, 'llama-lora'), join(dir, 'merged')));
    expect(plain.code, plain.stderr).toBe(0);
  });
});

describe('an --out folder that holds files', () => {
  // The refusal ended "remove it or allow overwriting (the CLI's --overwrite,
  // createNodeOutputTarget's overwrite option)": a library function's name, in a CLI line.
  it('says to choose another --out or pass --overwrite, in the CLI\'s words first', async () => {
    const { files } = llamaWithPeft(9);
    const dir = temp.make({ 'model/model.safetensors': files['llama.safetensors'], 'model/config.json': '{}', 'lora/adapter_config.json': files['llama-lora/adapter_config.json'], 'lora/adapter_model.safetensors': files['llama-lora/adapter_model.safetensors'], 'merged/notes.txt': 'mine' });
    const run = await runCli(mergeArgs(join(dir, 'model'), join(dir, 'lora'), join(dir, 'merged')));
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, /merged: folder exists and is not empty; choose another --out, or pass --overwrite to replace it once the merge has succeeded \(in the library: createNodeOutputTarget's overwrite option\)$/);
    expect(listDir(join(dir, 'merged'))).toEqual(['notes.txt']);
  });
});
