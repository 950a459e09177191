/**
 * Mistakes a newcomer makes with real inputs, through the CLI: a LoRA given as the base (the two
 * inputs swapped, or the adapter given twice). Each is one line saying what is wrong and what to
 * do, and nothing is left at --out.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLine, listDir, mergeArgs, runCli } from './helpers/cli.js';
import { buildSafetensors, randomValues, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { ggufLoraAdapter, LLAMA, peftLlamaAdapter, q4kmLlama, splitF16Llama } from './helpers/gguf-models.js';
import { llamaWithPeft, sdxlWithKohya } from './helpers/page-fixtures.js';
import { sdxlKohyaPair } from './helpers/sdxl-kohya-pair.js';

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

describe("a folder's config file given where the folder was meant", () => {
  // The adapter's was refused as "has adapter_config.json but no adapter_model.safetensors", which
  // the folder has; the base's as "no .safetensors weights found".
  it('adapter_config.json as --adapter, config.json as --base: each named a JSON file, with the folder to give', async () => {
    const { files } = llamaWithPeft(7);
    const dir = temp.make({ 'model/model.safetensors': files['llama.safetensors'], 'model/config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }), 'llama-lora/adapter_config.json': files['llama-lora/adapter_config.json'], 'llama-lora/adapter_model.safetensors': files['llama-lora/adapter_model.safetensors'] });
    const lora = join(dir, 'llama-lora'), model = join(dir, 'model');
    for (const [base, adapter, given, folder] of [[model, join(lora, 'adapter_config.json'), join(lora, 'adapter_config.json'), lora], [join(model, 'config.json'), lora, join(model, 'config.json'), model]]) {
      const run = await runCli(mergeArgs(base, adapter, join(dir, 'merged')));
      expect(run.code, run.stderr).toBe(1);
      expectOneLine(run.stderr, new RegExp(`^error: ${escape(given)}: a JSON file, not the weights: give the folder that holds it \\(${escape(folder)}\\), not the file$`));
    }
    const inspect = await runCli(['inspect', join(lora, 'adapter_config.json')]);
    expectOneLine(inspect.stderr, /adapter_config\.json: a JSON file, not the weights: give the folder that holds it \(.*llama-lora\), not the file$/);
    expect(listDir(dir).sort()).toEqual(['llama-lora', 'model']);
  });
});

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

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

  // combine and resize take no base, yet were told to "pass a base model with --base".
  it('to combine or resize: says the command takes LoRA adapters only, naming no --base; nothing at --out', async () => {
    const model = q4kmLlama(17);
    const dir = temp.make({ ...model.files, ...Object.fromEntries(Object.entries(peftLlamaAdapter(4).files).map(([k, v]) => [`lora/${k}`, v])) });
    const gguf = join(dir, 'tiny-llama-Q4_K_M.gguf');
    for (const [command, args] of [
      ['combine', ['--adapter', join(dir, 'lora'), '--adapter', gguf, '--method', 'cat']],
      ['resize', ['--adapter', gguf, '--rank', '1']],
    ] as const) {
      const run = await runCli([command, ...args, '--out', join(dir, 'out'), '--backend', 'cpu']);
      expect(run.code, run.stderr).toBe(1);
      expectOneLine(run.stderr, new RegExp(`^error: .*tiny-llama-Q4_K_M\\.gguf: a GGUF model, not a LoRA adapter \\(a llama\\.cpp LoRA GGUF has general\\.type "adapter"\\): ${command} takes LoRA adapters only, no model; give the adapter's files$`));
      expect(run.stderr).not.toMatch(/--base/);
    }
    expect(listDir(dir).sort()).toEqual(['lora', 'tiny-llama-Q4_K_M.gguf']);
  });

  it('to combineLoras or resizeLora (loramerge/node): the same, naming the call', async () => {
    const { combineLoras, resizeLora } = await import('../src/node.js');
    const model = q4kmLlama(18);
    const dir = temp.make({ ...model.files, ...Object.fromEntries(Object.entries(peftLlamaAdapter(5).files).map(([k, v]) => [`lora/${k}`, v])) });
    const gguf = join(dir, 'tiny-llama-Q4_K_M.gguf');
    const combined = await combineLoras({ adapters: [join(dir, 'lora'), gguf], method: 'cat', backend: 'cpu' }).catch((e: unknown) => e as Error);
    expect((combined as Error).message).toBe(`${gguf}: a GGUF model, not a LoRA adapter (a llama.cpp LoRA GGUF has general.type "adapter"): combineLoras takes LoRA adapters only, no model; give the adapter's files`);
    const resized = await resizeLora({ adapter: gguf, rule: { kind: 'rank', rank: 1 }, backend: 'cpu' }).catch((e: unknown) => e as Error);
    expect((resized as Error).message).toBe(`${gguf}: a GGUF model, not a LoRA adapter (a llama.cpp LoRA GGUF has general.type "adapter"): resizeLora takes LoRA adapters only, no model; give the adapter's files`);
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
    expectOneLine(run.stderr, /merged: folder exists and is not empty; choose another --out, or pass --overwrite to replace it once the merge has succeeded$/);
    expect(listDir(join(dir, 'merged'))).toEqual(['notes.txt']);
  });
});

describe('inspect says which base an adapter was trained for, where its files say it', () => {
  // What to pick as --base was in the files (PEFT's base_model_name_or_path, kohya's ss_* keys, a
  // model spec, a LoRA GGUF's architecture) but inspect did not show it.
  it('a PEFT folder, a kohya file, a LoRA GGUF, and a file that says nothing', async () => {
    const peft = peftLlamaAdapter(5).files;
    const kohya = buildSafetensors([
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', dtype: 'F32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] },
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', dtype: 'F32', shape: [4, 2], data: [1, 2, 3, 4, 5, 6, 7, 8] },
    ], { ss_base_model_version: 'sd_v1', ss_sd_model_name: 'v1-5-pruned-emaonly.safetensors', 'modelspec.architecture': 'stable-diffusion-v1/lora' });
    const bare = buildSafetensors([
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', dtype: 'F32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] },
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', dtype: 'F32', shape: [4, 2], data: [1, 2, 3, 4, 5, 6, 7, 8] },
    ]);
    // A name written over several lines is shown on one: it lands in an error line too.
    const multiline = buildSafetensors([
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', dtype: 'F32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] },
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', dtype: 'F32', shape: [4, 2], data: [1, 2, 3, 4, 5, 6, 7, 8] },
    ], { ss_sd_model_name: 'my\nmodel\r\n  v1' });
    const gguf = ggufLoraAdapter([{ tensor: 'blk.0.attn_output.weight', rank: 2, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 4);
    const dir = temp.make({
      ...Object.fromEntries(Object.entries(peft).map(([k, v]) => [`peft/${k}`, v])), 'kohya.safetensors': kohya, 'bare.safetensors': bare, 'lora.gguf': gguf.bytes,
      'multiline.safetensors': multiline,
    });
    const line = async (path: string) => {
      const run = await runCli(['inspect', join(dir, path)]);
      expect(run.code, run.stderr).toBe(0);
      return run.stdout.split('\n').find((l) => l.startsWith('  trained for: '));
    };
    expect(await line('peft')).toBe('  trained for: tiny-llama (base_model_name_or_path)');
    expect(await line('kohya.safetensors')).toBe('  trained for: stable-diffusion-v1/lora (modelspec.architecture), sd_v1 (ss_base_model_version), v1-5-pruned-emaonly.safetensors (ss_sd_model_name)');
    expect(await line('lora.gguf')).toBe('  trained for: llama (general.architecture)');
    expect(await line('bare.safetensors')).toBeUndefined();
    expect(await line('multiline.safetensors')).toBe('  trained for: my model v1 (ss_sd_model_name)');
  });
});

describe('a --dtype spelled as other tools spell it', () => {
  // `q8` and `q4km` were refused with the list of 45 names and no pointer to the one meant; a GGUF
  // type asked of a safetensors model gave no word on why it is not there.
  const gguf = () => {
    const model = q4kmLlama(15);
    const dir = temp.make({ ...model.files, ...Object.fromEntries(Object.entries(peftLlamaAdapter(6).files).map(([k, v]) => [`lora/${k}`, v])) });
    return { dir, args: (dtype: string) => mergeArgs(join(dir, 'tiny-llama-Q4_K_M.gguf'), join(dir, 'lora'), join(dir, 'merged.gguf'), '--dtype', dtype) };
  };

  it('a GGUF type name without its separators, or a digit short, points to the one meant', async () => {
    const { dir, args } = gguf();
    for (const [typed, meant] of [['q8', 'q8_0'], ['q4km', 'q4_k_m'], ['IQ4XS', 'iq4_xs'], ['q6k', 'q6_k']]) {
      const run = await runCli(args(typed));
      expect(run.code, run.stderr).toBe(2);
      expectOneLine(run.stderr, new RegExp(`^error: --dtype for a GGUF model must be one of f32, .*, not "${typed}"; did you mean ${meant}\\?$`));
    }
    // Several a digit away (q4_0, q4_1, q4_k): no guess.
    const q4 = await runCli(args('q4'));
    expectOneLine(q4.stderr, /, not "q4"$/);
    expect(listDir(dir)).not.toContain('merged.gguf');
  });

  it('a GGUF type asked of a safetensors model says the output stays safetensors and how to get a GGUF', async () => {
    const { files } = llamaWithPeft(10);
    const dir = temp.make(files);
    const run = await runCli(mergeArgs(join(dir, 'llama.safetensors'), join(dir, 'llama-lora'), join(dir, 'merged.safetensors'), '--dtype', 'q4_k_m'));
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, /^error: --dtype must be f32, f16, bf16, f8_e4m3 or f8_e5m2, not "q4_k_m" \(for a safetensors model\); q4_k_m is a GGUF type, and a merged safetensors model stays safetensors: convert it to GGUF afterwards \(llama\.cpp's convert_hf_to_gguf\.py, then llama-quantize\), or merge into a GGUF base$/);
    expect(listDir(dir)).not.toContain('merged.safetensors');
  });
});

describe('a PEFT adapter for a larger model onto a GGUF base', () => {
  // A LoRA trained on a deeper, wider llama (a 13B's on a 7B GGUF): the modules on the blocks both
  // have did not fit, the others named blocks past the file's last. That was a list of one problem
  // per module, without the line saying the adapter is for another size of the model.
  it('is one line: none of its modules fits, trained on another size', async () => {
    const model = q4kmLlama(16);
    const rand = seededRandom(17);
    const hidden = 128, rank = 2;
    const tensors: FixtureTensor[] = [];
    for (const layer of [0, 1, 2]) {
      for (const proj of ['q_proj', 'o_proj']) {
        const m = `base_model.model.model.layers.${layer}.self_attn.${proj}`;
        tensors.push({ name: `${m}.lora_A.weight`, dtype: 'F32', shape: [rank, hidden], data: randomValues(rank * hidden, rand, 0.1) });
        tensors.push({ name: `${m}.lora_B.weight`, dtype: 'F32', shape: [hidden, rank], data: randomValues(hidden * rank, rand, 0.1) });
      }
    }
    const dir = temp.make({
      ...model.files,
      'lora/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: rank, target_modules: ['q_proj', 'o_proj'] }),
      'lora/adapter_model.safetensors': buildSafetensors(tensors),
    });
    const run = await runCli(mergeArgs(join(dir, 'tiny-llama-Q4_K_M.gguf'), join(dir, 'lora'), join(dir, 'merged.gguf')));
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /^error: .*lora: none of its 6 modules fits this base: 2 have other shapes than the tensors they name \(such as module "model\.layers\.0\.self_attn\.q_proj": ΔW \(128, 128\) does not fit .*\), 4 name no tensor in it; it was trained on another model or another size of this one .*: pick the base it was trained on$/);
    expect(listDir(dir)).not.toContain('merged.gguf');
  });
});

describe('a module on a block past a GGUF base\'s last', () => {
  // "names block 1, but the base has 1 (llama.block_count)" read as if block 1 were there.
  it('says the blocks are numbered from 0', async () => {
    const model = q4kmLlama(18);
    const rand = seededRandom(19);
    const h = LLAMA.hidden;
    const m = 'base_model.model.model.layers.1.self_attn.q_proj';
    const dir = temp.make({
      ...model.files,
      'lora/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: ['q_proj'] }),
      'lora/adapter_model.safetensors': buildSafetensors([
        { name: `${m}.lora_A.weight`, dtype: 'F32', shape: [2, h], data: randomValues(2 * h, rand, 0.1) },
        { name: `${m}.lora_B.weight`, dtype: 'F32', shape: [h, 2], data: randomValues(h * 2, rand, 0.1) },
      ]),
    });
    const run = await runCli(mergeArgs(join(dir, 'tiny-llama-Q4_K_M.gguf'), join(dir, 'lora'), join(dir, 'merged.gguf')));
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /module "model\.layers\.1\.self_attn\.q_proj": names block 1, but the base has 1 \(llama\.block_count\), numbered from 0: an adapter for a deeper model/);
  });
});

describe('a weight file\'s name as --out for a folder base', () => {
  // `--base unet/ --out merged.safetensors` wrote a folder named merged.safetensors, holding
  // config.json and diffusion_pytorch_model.safetensors, where one file was expected.
  it('a diffusers component folder: refused before merging, saying the output is a folder and how to get one file', async () => {
    const dir = temp.make(sdxlWithKohya(4).files);
    const run = await runCli(mergeArgs(join(dir, 'unet'), join(dir, 'sdxl-style.safetensors'), join(dir, 'merged.safetensors')));
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, /^error: --out .*merged\.safetensors: the base is a folder, so the merged model is a folder of the same files; name --out as a folder, without \.safetensors \(or, where the base's weights are one file, give that file as --base for one merged file\)$/);
    expect(listDir(dir)).not.toContain('merged.safetensors');
    const asFolder = await runCli(mergeArgs(join(dir, 'unet'), join(dir, 'sdxl-style.safetensors'), join(dir, 'merged')));
    expect(asFolder.code, asFolder.stderr).toBe(0);
  });

  it('a split GGUF: refused the same way', async () => {
    const model = splitF16Llama(20);
    const dir = temp.make({ ...model.files, ...Object.fromEntries(Object.entries(peftLlamaAdapter(7).files).map(([k, v]) => [`lora/${k}`, v])) });
    const run = await runCli(mergeArgs(join(dir, 'tiny-llama-F16-00001-of-00002.gguf'), join(dir, 'lora'), join(dir, 'merged.gguf')));
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, /^error: --out .*merged\.gguf: the base is a folder or a split GGUF, so the merged model is a folder of the same files; name --out as a folder, without \.gguf \(or, where the base's weights are one file, give that file as --base for one merged file\)$/);
    expect(listDir(dir)).not.toContain('merged.gguf');
  });
});

describe('--dtype f16 on a quantized GGUF, as the requantization warning advises', () => {
  // The plan's warning says f16 or q8_0 keep more of the update; taking that advice drew a second
  // warning that the Q4_K tensors were "quantized again to F16", which dequantizes them.
  it('draws no warning that the tensors are quantized again; q8_0 still does', async () => {
    const model = q4kmLlama(21);
    const dir = temp.make({ ...model.files, ...Object.fromEntries(Object.entries(peftLlamaAdapter(8).files).map(([k, v]) => [`lora/${k}`, v])) });
    const f16 = await runCli(mergeArgs(join(dir, 'tiny-llama-Q4_K_M.gguf'), join(dir, 'lora'), join(dir, 'f16.gguf'), '--dtype', 'f16'));
    expect(f16.code, f16.stderr).toBe(0);
    // With --dtype f16 nothing is re-quantized: the plan's warning, worded for a merge without --dtype, is not drawn either.
    expect(f16.stderr).not.toMatch(/re-quantized|f16 or q8_0 keep more of the update/);
    expect(f16.stderr).not.toMatch(/quantized again/);
    const q8 = await runCli(mergeArgs(join(dir, 'tiny-llama-Q4_K_M.gguf'), join(dir, 'lora'), join(dir, 'q8.gguf'), '--dtype', 'q8_0'));
    expect(q8.code, q8.stderr).toBe(0);
    expect(q8.stderr).toMatch(/warning: tensors already quantized \(\d+ Q4_K, \d+ Q5_K, \d+ Q6_K\) are quantized again to Q8_0/);
  });
});

describe('a refusal of the wrong base names the base the adapter\'s files say it was trained on', () => {
  // "pick the base it was trained on" left the user to find which; the adapter's own metadata
  // often says (PEFT's base_model_name_or_path, kohya's ss_base_model_version).
  it('a PEFT adapter for a wider llama, and a kohya SDXL LoRA on a language model', async () => {
    const { files } = llamaWithPeft(11);
    const rand = seededRandom(23);
    const wide = 32;
    const m = 'base_model.model.model.layers.0.self_attn.q_proj';
    const kohya = buildSafetensors([
      { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight', dtype: 'F32', shape: [2, 8], data: randomValues(16, rand) },
      { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight', dtype: 'F32', shape: [8, 2], data: randomValues(16, rand) },
    ], { ss_base_model_version: 'sdxl_base_v1-0' });
    const dir = temp.make({
      ...files,
      'wide/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: ['q_proj'], base_model_name_or_path: 'org/llama-wide' }),
      'wide/adapter_model.safetensors': buildSafetensors([m, m.replace('layers.0', 'layers.1')].flatMap((name): FixtureTensor[] => [
        { name: `${name}.lora_A.weight`, dtype: 'F32', shape: [2, wide], data: randomValues(2 * wide, rand) },
        { name: `${name}.lora_B.weight`, dtype: 'F32', shape: [wide, 2], data: randomValues(wide * 2, rand) },
      ])),
      'sdxl.safetensors': kohya,
    });
    const peft = await runCli(mergeArgs(join(dir, 'llama.safetensors'), join(dir, 'wide'), join(dir, 'merged.safetensors')));
    expect(peft.code, peft.stderr).toBe(1);
    expectOneLine(peft.stderr, /: pick the base it was trained on; its files name org\/llama-wide \(base_model_name_or_path\)$/);
    const sdxl = await runCli(mergeArgs(join(dir, 'llama.safetensors'), join(dir, 'sdxl.safetensors'), join(dir, 'merged.safetensors')));
    expect(sdxl.code, sdxl.stderr).toBe(1);
    expectOneLine(sdxl.stderr, /this adapter is for a diffusion UNet, but the base is a language model: .*; pick the base it was trained on; its files name sdxl_base_v1-0 \(ss_base_model_version\)$/);
    expect(listDir(dir)).not.toContain('merged.safetensors');
  });
});

describe('a weight that looks like a percentage', () => {
  // `--weight 80` (for 80 %) merged the update 80-fold, exit 0, without a word.
  it('is merged as given, with a warning that a weight is a multiplier', async () => {
    const { files } = llamaWithPeft(12);
    const dir = temp.make(files);
    const args = (w: string, out: string) => mergeArgs(join(dir, 'llama.safetensors'), join(dir, 'llama-lora'), join(dir, out), '--weight', w);
    const eighty = await runCli(args('80', 'a.safetensors'));
    expect(eighty.code, eighty.stderr).toBe(0);
    expect(eighty.stderr).toMatch(/^warning: .*llama-lora: weight 80 scales its update 80-fold: a weight is a multiplier, not a percentage \(1 applies the adapter as trained, 0\.8 at 80 %\) \(was 0\.8 meant\?\)$/m);
    const negative = await runCli(args('-250', 'b.safetensors'));
    expect(negative.stderr).toMatch(/^warning: .*llama-lora: weight -250 scales its update 250-fold: a weight is a multiplier, not a percentage \(1 applies the adapter as trained, 0\.8 at 80 %\)$/m);
    const slider = await runCli(args('-4', 'c.safetensors'));
    expect(slider.code, slider.stderr).toBe(0);
    expect(slider.stderr).not.toMatch(/warning/);
  });
});

describe('combine, resize or extract of safetensors inputs with --out named .gguf', () => {
  // Any --out but a .safetensors one was a PEFT folder: `resize --out small.gguf` wrote a PEFT folder
  // named small.gguf, exit 0. A .gguf --out is a llama.cpp LoRA GGUF, written of GGUF LoRAs, or of
  // PEFT adapters with --base, the GGUF model that names its tensors.
  it('is refused before any work, saying why and how to get a LoRA GGUF', async () => {
    const { files } = llamaWithPeft(13);
    const dir = temp.make(files);
    const peftLine = /^error: .*llama-lora: a peft adapter's module names are not llama\.cpp's tensor names, and renaming them needs the GGUF model it is for: give it as --base MODEL\.gguf$/;
    for (const [args, line] of [
      [['resize', '--adapter', join(dir, 'llama-lora'), '--rank', '1', '--out', join(dir, 'small.gguf')], peftLine],
      [['combine', '--adapter', join(dir, 'llama-lora'), '--method', 'cat', '--out', join(dir, 'small.GGUF')], peftLine],
      [['extract', '--base', join(dir, 'llama.safetensors'), '--tuned', join(dir, 'llama.safetensors'), '--rank', '1', '--out', join(dir, 'small.gguf')],
        /^error: --out .*small\.gguf: extract writes no GGUF \(it reads safetensors models, whose module names are not llama\.cpp's\); name --out a folder \(PEFT\) and convert it with llama\.cpp's convert_lora_to_gguf\.py$/],
    ] as [string[], RegExp][]) {
      const run = await runCli([...args, '--backend', 'cpu']);
      expect(run.code, run.stderr).toBe(2);
      expectOneLine(run.stderr, line);
    }
    expect(listDir(dir).sort()).toEqual(['llama-lora', 'llama.safetensors']);
  });
});

describe('extract given a LoRA as one of its models', () => {
  // The LoRA's factors were listed as "tensors missing from" the other model, "are they the same
  // architecture?", without saying one input was an adapter.
  it('names the LoRA as an adapter, not a model, and says what extract takes', async () => {
    const { files } = llamaWithPeft(14);
    const dir = temp.make(files);
    const cases: [string, string, RegExp][] = [
      [join(dir, 'llama.safetensors'), join(dir, 'llama-lora'), /^error: .*llama-lora: a LoRA adapter, not a model/],
      [join(dir, 'llama-lora', 'adapter_model.safetensors'), join(dir, 'llama.safetensors'), /^error: .*llama-lora\/adapter_model\.safetensors: a LoRA adapter, not a model/],
    ];
    for (const [base, tuned, who] of cases) {
      const run = await runCli(['extract', '--base', base, '--tuned', tuned, '--rank', '1', '--out', join(dir, 'extracted'), '--backend', 'cpu']);
      expect(run.code, run.stderr).toBe(1);
      expectOneLine(run.stderr, who);
      expectOneLine(run.stderr, / \(its tensors are factors such as "base_model\.model\.model\.layers\.0\.[a-z_.]+\.lora_[AB]\.weight"\): extract takes a base model and a fine-tuned version of it; a LoRA is merged into its base \(loramerge merge\), not extracted from$/);
    }
    expect(listDir(dir).sort()).toEqual(['llama-lora', 'llama.safetensors']);
  });
});
