/**
 * GGUF through the CLI as llama.cpp users run it: a split base given by one of its parts gives a
 * split output folder, `--dtype` takes GGUF types, `inspect` reads bases and adapters, and broken
 * or unsupported inputs fail with one line naming the file or tensor and nothing at --out.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { concatBytes, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName, type MetaValue } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, peftLlamaAdapter, q4kmLlama, splitF16Llama, truthWithLora } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

describe('loramerge with GGUF', () => {
  it('merges a llama.cpp LoRA into a split base named by one part, writing the same parts', async () => {
    const base = splitF16Llama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 4, in: LLAMA.hidden, out: 128, aType: 'F32', bType: 'F16' }], 8);
    const dir = temp.make({ ...base.files, 'lora.gguf': lora.bytes });
    const out = join(dir, 'merged');
    const result = await runCli(['merge', '--base', join(dir, 'tiny-llama-F16-00002-of-00002.gguf'), '--adapter', join(dir, 'lora.gguf'), '--weight', '-1', '--out', out, '--backend', 'cpu']);
    expect(result.stderr).not.toMatch(/error/);
    expect(result.code).toBe(0);
    expect(listDir(out)).toEqual(Object.keys(base.files));
    const part1 = readGguf(readFileSync(join(out, 'tiny-llama-F16-00001-of-00002.gguf')));
    const v = part1.tensors.find((t) => t.name === 'blk.0.attn_v.weight')!;
    const f = lora.factors.get('blk.0.attn_v.weight')!;
    const want = truthWithLora(base.tensors.get('blk.0.attn_v.weight')!.values, 128, LLAMA.hidden, f, -8 / 4, false);
    const got = tensorValues('F16', v.data);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / 2 ** Math.max(Math.floor(Math.log2(Math.abs(want[i]))) - 10, -24));
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('merges a task LoRA exactly and names its task and prompt prefix, which the merged model no longer carries', async () => {
    // convert_hf_to_gguf writes these beside jina-embeddings-v3's task LoRAs; llama.cpp only reports them.
    const base = splitF16Llama();
    const prefix = 'Represent the query for retrieving evidence documents: ';
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 4, in: LLAMA.hidden, out: 128, aType: 'F32', bType: 'F32' }], 8, 31, [], [
      ['adapter.lora.task_name', { type: 'string', value: 'retrieval.query' }], ['adapter.lora.prompt_prefix', { type: 'string', value: prefix }],
    ]);
    const dir = temp.make({ ...base.files, 'task.gguf': lora.bytes });
    const out = join(dir, 'merged');
    const result = await runCli(['merge', '--base', join(dir, 'tiny-llama-F16-00001-of-00002.gguf'), '--adapter', join(dir, 'task.gguf'), '--out', out, '--backend', 'cpu']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr.split('\n')).toContain(`warning: ${join(dir, 'task.gguf')}: adapter.lora.task_name = "retrieval.query", adapter.lora.prompt_prefix = "${prefix}": the merged model does not record them (llama.cpp only reports a task adapter's name and prompt prefix, it applies the weights to every token); prepend that prefix to the merged model's inputs yourself, as llama.cpp leaves it to the caller with the adapter too`);
    const part1 = readGguf(readFileSync(join(out, 'tiny-llama-F16-00001-of-00002.gguf')));
    expect([...part1.metadata.keys()].filter((k) => k.startsWith('adapter.'))).toEqual([]);
    const f = lora.factors.get('blk.0.attn_v.weight')!;
    const want = truthWithLora(base.tensors.get('blk.0.attn_v.weight')!.values, 128, LLAMA.hidden, f, 8 / 4, false);
    const got = tensorValues('F16', part1.tensors.find((t) => t.name === 'blk.0.attn_v.weight')!.data);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / 2 ** Math.max(Math.floor(Math.log2(Math.abs(want[i]))) - 10, -24));
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('merges a base and an adapter with bytes after their last tensor as llama.cpp loads them, saying the base\'s are not written', async () => {
    // llama.cpp reads only the tensors' ranges; the output is laid out anew, so the extra bytes have no place in it.
    const base = q4kmLlama().files['tiny-llama-Q4_K_M.gguf'];
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: 256, out: 256, aType: 'F16', bType: 'F16' }], 8).bytes;
    const extra = new Uint8Array(100).fill(0x5a);
    const sound = temp.make({ 'base.gguf': base, 'lora.gguf': lora });
    const longer = temp.make({ 'base.gguf': concatBytes([base, extra]), 'lora.gguf': concatBytes([lora, extra.subarray(0, 9)]) });
    const outputs = [];
    for (const dir of [sound, longer]) {
      const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu']);
      expect(result.code, result.stderr).toBe(0);
      const warnings = result.stderr.split('\n').filter((l) => /after the last tensor/.test(l));
      expect(warnings).toEqual(dir === sound ? [] : [`warning: ${join(dir, 'base.gguf')}: 100 bytes after the last tensor's data, which llama.cpp does not read, are not written to the output`]);
      outputs.push(readFileSync(join(dir, 'out.gguf')));
    }
    expect(Buffer.compare(outputs[0], outputs[1])).toBe(0);
    expect(readGguf(outputs[1]).tensors.length).toBe(readGguf(base).tensors.length);
  });

  it('--dtype converts every matrix llama-quantize would quantize, merged or not, as llama-quantize --pure does; norms stay F32', async () => {
    const base = q4kmLlama();
    const adapter = peftLlamaAdapter();
    const dir = temp.make({ 'base.gguf': base.files['tiny-llama-Q4_K_M.gguf'], ...Object.fromEntries(Object.entries(adapter.files).map(([k, v]) => [`peft/${k}`, v])) });
    const out = join(dir, 'merged-q8.gguf');
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'peft'), '--out', out, '--dtype', 'q8_0', '--backend', 'cpu']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/warning: tensors already quantized \(\d+ Q4_K, \d+ Q5_K, \d+ Q6_K\) are quantized again to Q8_0/);
    const merged = readGguf(readFileSync(out));
    const types = Object.fromEntries(merged.tensors.map((t) => [t.name, typeName(t.typeId)]));
    expect(types['blk.0.attn_q.weight']).toBe('Q8_0');
    expect(types['blk.0.ffn_down.weight']).toBe('Q8_0');
    expect(types['blk.0.attn_norm.weight']).toBe('F32');
    expect(types['output_norm.weight']).toBe('F32');
    // Untouched matrices too, each the reference Q8_0 of its exactly decoded values.
    for (const name of ['output.weight', 'token_embd.weight']) {
      const t = merged.tensors.find((x) => x.name === name)!;
      expect(typeName(t.typeId)).toBe('Q8_0');
      expect(Buffer.from(t.data).equals(Buffer.from(tensorData('Q8_0', base.tensors.get(name)!.values))), name).toBe(true);
    }
    // Q8_0 now holds most weights: LLAMA_FTYPE_MOSTLY_Q8_0.
    expect(merged.metadata.get('general.file_type')!.value).toBe(7);
    expect(merged.metadata.get('loramerge.dtype')!.value).toBe('Q8_0');
  });

  it('--dtype-merged-only writes only the merged tensors in --dtype, the rest byte-copied (export-lora\'s way)', async () => {
    const base = q4kmLlama();
    const adapter = peftLlamaAdapter();
    const dir = temp.make({ 'base.gguf': base.files['tiny-llama-Q4_K_M.gguf'], ...Object.fromEntries(Object.entries(adapter.files).map(([k, v]) => [`peft/${k}`, v])) });
    const out = join(dir, 'merged-f16.gguf');
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'peft'), '--out', out, '--dtype', 'f16', '--dtype-merged-only', '--backend', 'cpu']);
    expect(result.code, result.stderr).toBe(0);
    const merged = readGguf(readFileSync(out));
    const input = readGguf(base.files['tiny-llama-Q4_K_M.gguf']);
    const types = Object.fromEntries(merged.tensors.map((t) => [t.name, typeName(t.typeId)]));
    expect(types['blk.0.attn_q.weight']).toBe('F16');
    expect(types['blk.0.ffn_down.weight']).toBe('F16');
    for (const name of ['output.weight', 'token_embd.weight', 'blk.0.attn_norm.weight']) {
      expect(Buffer.from(merged.tensors.find((t) => t.name === name)!.data).equals(Buffer.from(input.tensors.find((t) => t.name === name)!.data)), name).toBe(true);
    }
    const usage = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'peft'), '--out', out, '--dtype-merged-only']);
    expect(usage.code).toBe(2);
    expect(errorLines(usage.stderr)).toEqual(['error: --dtype-merged-only needs a --dtype (see loramerge --help)']);
  });

  it('refuses a PEFT LoRA on a GGUF whose head count does not fit attn_q, naming the metadata key, and writes nothing', async () => {
    // 6 heads do not divide attn_q's 256 rows, so convert_hf_to_gguf's RoPE row order for q cannot be rebuilt.
    const base = q4kmLlama();
    const metadata = base.metadata.map(([k, v]): typeof base.metadata[number] => [k, k === 'llama.attention.head_count' ? { type: 'u32', value: 6 } : v]);
    const names = [...base.tensors.keys()];
    const edited = buildGguf({ metadata, tensors: names.map((name) => {
      const t = base.tensors.get(name)!;
      return { name, type: t.type, ne: [...t.shape].reverse(), data: t.data };
    }) });
    const adapter = peftLlamaAdapter();
    const dir = temp.make({ 'base.gguf': edited, ...Object.fromEntries(Object.entries(adapter.files).map(([k, v]) => [`peft/${k}`, v])) });
    const out = join(dir, 'merged.gguf');
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'peft'), '--out', out, '--backend', 'cpu']);
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toEqual([
      `error: ${join(dir, 'peft')}: module "model.layers.0.self_attn.q_proj": `
      + 'cannot be placed where convert_hf_to_gguf put its rows: blk.0.attn_q.weight has 256 rows, '
      + "which do not split into 6 heads (llama.attention.head_count) of an even size, as llama.cpp's RoPE row order needs; "
      + 'check the GGUF is whole and unedited, or merge into the safetensors model and convert that',
    ]);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir)).toEqual(['base.gguf', 'peft']);
  });

  it('inspects a GGUF base and a GGUF adapter', async () => {
    const base = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: 256, out: 256, aType: 'F16', bType: 'F16' }], 8);
    const dir = temp.make({ 'base.gguf': base.files['tiny-llama-Q4_K_M.gguf'], 'lora.gguf': lora.bytes });
    const b = await runCli(['inspect', join(dir, 'base.gguf')]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/base model \(gguf\)/);
    expect(b.stdout).toMatch(/Q4_K ×\d+, .*Q6_K/);
    // The architecture a llama.cpp LoRA must name, and the file type llama-quantize wrote (15: Q4_K_M).
    expect(b.stdout.split('\n')).toContain('  gguf: architecture llama (general.architecture), file type Q4_K_M (general.file_type 15)');
    const a = await runCli(['inspect', join(dir, 'lora.gguf')]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toMatch(/llama\.cpp GGUF LoRA adapter \(1 module\)/);
    expect(a.stdout).toMatch(/blk\.0\.attn_q\.weight {2}r=4 α=8 scale=2/);
  });

  const small = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 2 }]],
    tensors: [{ name: 'blk.0.ffn_up.weight', type: 'F16', ne: [64, 32], data: tensorData('F16', new Float64Array(64 * 32).fill(0.5)) }],
  });
  const smallLora = ggufLoraAdapter([{ tensor: 'blk.0.ffn_up.weight', rank: 2, in: 64, out: 32, aType: 'F32', bType: 'F32' }], 2).bytes;

  it('falls back as llama-quantize does when rows are not whole blocks of the --dtype, and says so', async () => {
    const dir = temp.make({ 'base.gguf': small, 'lora.gguf': smallLora });
    const out = join(dir, 'out.gguf');
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', out, '--backend', 'cpu', '--dtype', 'q4_k']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/warning: 1 tensor is written as Q5_0, not Q4_K: its rows are not whole Q4_K blocks, and llama-quantize falls back to Q5_0 for such rows \(blk\.0\.ffn_up\.weight\)/);
    expect(typeName(readGguf(readFileSync(out)).tensors[0].typeId)).toBe('Q5_0');
  });

  it.each([
    ['--dtype iq1_s without --imatrix (written only with one, as IQ2_XXS is)', { 'base.gguf': small, 'lora.gguf': smallLora }, ['--dtype', 'iq1_s'], 2,
      /^error: --dtype iq1_s: IQ1_S is written only with an importance matrix: ggml's IQ1_S quantizer requires one, and llama-quantize refuses IQ1_S without --imatrix; give --imatrix FILE \(made by llama-imatrix for this model\), or choose another --dtype$/m],
    ['--dtype iq1_m without --imatrix', { 'base.gguf': small, 'lora.gguf': smallLora }, ['--dtype', 'iq1_m'], 2,
      /^error: --dtype iq1_m: IQ1_M is written only with an importance matrix: llama-quantize refuses IQ1_M without --imatrix \(but for token_embd\.weight and output\.weight\); give --imatrix FILE \(made by llama-imatrix for this model\), or choose another --dtype$/m],
    ['a --dtype of a type written only with an importance matrix, without --imatrix', { 'base.gguf': small, 'lora.gguf': smallLora }, ['--dtype', 'iq2_xs'], 2,
      /^error: --dtype iq2_xs: IQ2_XS is written only with an importance matrix: ggml's IQ2_XS quantizer requires one, and llama-quantize refuses IQ2_XS without --imatrix; give --imatrix FILE \(made by llama-imatrix for this model\), or choose another --dtype$/m],
    ['a --dtype that is no GGML type', { 'base.gguf': small, 'lora.gguf': smallLora }, ['--dtype', 'q7_k'], 2, /--dtype for a GGUF model must be one of f32, f16, bf16, q8_0/],
    ['a --dtype a safetensors base does not take', undefined, ['--dtype', 'q4_k'], 2, /--dtype must be f32, f16, bf16, f8_e4m3 or f8_e5m2, not "q4_k" \(for a safetensors model\)/],
    ['a truncated base', { 'base.gguf': small.subarray(0, small.byteLength - 100), 'lora.gguf': smallLora }, [], 1, /base\.gguf: tensor "blk\.0\.ffn_up\.weight" ends at byte \d+ but the file has only \d+ \(truncated download\?\): download the file again$/],
    ['an adapter given as the base', { 'base.gguf': smallLora, 'lora.gguf': smallLora }, [], 2, /base\.gguf: is a LoRA adapter \(general\.type = adapter\), not a base model/],
  ])('refuses %s', async (_what, files, extra, code, message) => {
    const dir = files ? temp.make(files) : temp.make({});
    if (!files) {
      const { buildSafetensors } = await import('./helpers/fixtures.js');
      writeFileSync(join(dir, 'base.gguf'), small);
      writeFileSync(join(dir, 'base.safetensors'), buildSafetensors([{ name: 'w.weight', dtype: 'F16', shape: [2, 2], data: [1, 2, 3, 4] }]));
      writeFileSync(join(dir, 'lora.gguf'), smallLora);
    }
    const base = join(dir, files ? 'base.gguf' : 'base.safetensors');
    const out = join(dir, 'out.gguf');
    const result = await runCli(['merge', '--base', base, '--adapter', join(dir, 'lora.gguf'), '--out', out, '--backend', 'cpu', ...(extra as string[])]);
    expect(result.code, result.stderr).toBe(code);
    const lines = errorLines(result.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message as RegExp);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir).filter((f) => f.startsWith('out') || f.startsWith('.out'))).toEqual([]);
  });
});

describe('llama.cpp files that hold no LoRA to merge', () => {
  const h = LLAMA.hidden;
  const adapterMeta = (extra: [string, MetaValue][]): [string, MetaValue][] => [
    ['general.architecture', { type: 'string', value: 'llama' }], ['general.type', { type: 'string', value: 'adapter' }],
    ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 16 }], ...extra,
  ];
  const factors = [
    { name: 'blk.0.attn_q.weight.lora_a', type: 'F32', ne: [h, 8], data: tensorData('F32', new Float64Array(h * 8).fill(0.01)) },
    { name: 'blk.0.attn_q.weight.lora_b', type: 'F32', ne: [8, h], data: tensorData('F32', new Float64Array(h * 8).fill(0.01)) },
  ];
  // convert_lora_to_gguf.py writes a PEFT aLoRA's alora_invocation_tokens as this u32 array.
  const alora = buildGguf({ metadata: adapterMeta([['adapter.alora.invocation_tokens', { type: 'array', itemType: 'u32', value: [32, 1001, 7] }]]), tensors: factors });
  // What llama.cpp's cvector-generator writes: one direction per layer from 1.
  const controlVector = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'controlvector' }], ['controlvector.model_hint', { type: 'string', value: 'llama' }], ['controlvector.layer_count', { type: 'i32', value: 1 }]],
    tensors: [{ name: 'direction.1', type: 'F32', ne: [h], data: tensorData('F32', new Float64Array(h).fill(0.1)) }],
  });
  const aloraLine = /^error: \S*alora\.gguf: an Activated LoRA \(adapter\.alora\.invocation_tokens holds 3 tokens\): llama\.cpp applies it only after those tokens, which no merged model can do; load it at run time \(llama\.cpp's --lora\) instead$/;
  const cvecLine = /^error: \S*cvec\.gguf: a llama\.cpp control vector \(general\.architecture "controlvector"\), which llama\.cpp adds to each layer's output at run time \(--control-vector\); it holds no weights, so it is neither a base model nor a LoRA adapter to merge$/;

  async function expectRefused(args: string[], dir: string, line: RegExp): Promise<void> {
    const result = await runCli(args);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).toBe('');
    expect(errorLines(result.stderr)).toEqual([expect.stringMatching(line)]);
    expect(listDir(dir).filter((f) => f.startsWith('out') || f.startsWith('.out'))).toEqual([]);
  }

  it('refuses an Activated LoRA (aLoRA) GGUF in merge and inspect: llama.cpp applies it only after its invocation tokens', async () => {
    const dir = temp.make({ 'base.gguf': q4kmLlama().files['tiny-llama-Q4_K_M.gguf'], 'alora.gguf': alora });
    await expectRefused(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'alora.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu'], dir, aloraLine);
    // inspect names the refusal, not "is a LoRA adapter …, not a base model; pass it with --adapter".
    await expectRefused(['inspect', join(dir, 'alora.gguf')], dir, aloraLine);
    // An empty list is no aLoRA: llama.cpp then applies the LoRA to every token.
    const plain = buildGguf({ metadata: adapterMeta([['adapter.alora.invocation_tokens', { type: 'array', itemType: 'u32', value: [] }]]), tensors: factors });
    writeFileSync(join(dir, 'plain.gguf'), plain);
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'plain.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu', '--dry-run']);
    expect(result.code, result.stderr).toBe(0);
  });

  it('refuses a control vector given as the adapter, as the base, or to inspect', async () => {
    const dir = temp.make({ 'base.gguf': q4kmLlama().files['tiny-llama-Q4_K_M.gguf'], 'cvec.gguf': controlVector, 'lora.gguf': ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: h, out: h, aType: 'F16', bType: 'F16' }], 8).bytes });
    await expectRefused(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'cvec.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu'], dir, cvecLine);
    await expectRefused(['merge', '--base', join(dir, 'cvec.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu'], dir, cvecLine);
    await expectRefused(['inspect', join(dir, 'cvec.gguf')], dir, cvecLine);
  });

  it('refuses a llama.cpp LoRA on a safetensors model in one line that says its names are a GGUF\'s', async () => {
    const { buildSafetensors } = await import('./helpers/fixtures.js');
    const w = (name: string, shape: number[]) => ({ name, dtype: 'BF16' as const, shape, data: new Array(shape.reduce((a, b) => a * b, 1)).fill(0.01) });
    const base = buildSafetensors([
      w('model.embed_tokens.weight', [LLAMA.vocab, h]), w('model.layers.0.self_attn.q_proj.weight', [h, h]), w('model.layers.0.self_attn.k_proj.weight', [128, h]),
      w('model.layers.0.input_layernorm.weight', [h]), w('model.norm.weight', [h]), w('lm_head.weight', [LLAMA.vocab, h]),
    ]);
    const lora = ggufLoraAdapter([
      { tensor: 'blk.0.attn_q.weight', rank: 4, in: h, out: h, aType: 'F16', bType: 'F16' }, { tensor: 'blk.0.attn_k.weight', rank: 4, in: h, out: 128, aType: 'F16', bType: 'F16' },
    ], 8).bytes;
    const dir = temp.make({ 'model.safetensors': base, 'lora.gguf': lora });
    await expectRefused(['merge', '--base', join(dir, 'model.safetensors'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'out.safetensors'), '--backend', 'cpu'], dir,
      /^error: \S*lora\.gguf: a llama\.cpp LoRA names the tensors of a GGUF model \(such as "blk\.0\.attn_q\.weight"\), and the base is not one: merge it into the GGUF model it was made for, or merge the PEFT adapter it was converted from into this model$/);
  });

  it('refuses an adapter whose lora_a is not transposed (llama.cpp\'s old finetune example), as llama.cpp does, saying so', async () => {
    // lora_a ne [r, in] = [8, 256]: llama.cpp takes [in, r] and stops with "lora_a tensor is not transposed".
    const old = buildGguf({ metadata: adapterMeta([]), tensors: [{ ...factors[0], ne: [8, h] }, factors[1]] });
    const dir = temp.make({ 'base.gguf': q4kmLlama().files['tiny-llama-Q4_K_M.gguf'], 'finetune.gguf': old });
    await expectRefused(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'finetune.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu'], dir,
      /^error: \S*finetune\.gguf: module "blk\.0\.attn_q\.weight": lora_a ne \[8, 256\] is not transposed \(ne \[r, in\] where llama\.cpp takes \[in, r\]\), as adapters from llama\.cpp's old finetune example store it; llama\.cpp no longer loads them either/);
  });

  it('refuses a LoRA on the per-layer token embedding (Gemma 3n, Gemma 4), which llama.cpp loads but never applies, saying so', async () => {
    // convert_lora_to_gguf transposes A of every *token_embd.weight, so A is ne [r, vocab] here, as
    // llama-adapter.cpp checks it; the graphs read per_layer_token_embd with a plain get_rows.
    const perLayer = buildGguf({ metadata: adapterMeta([]), tensors: [
      factors[0], factors[1],
      { name: 'per_layer_token_embd.weight.lora_a', type: 'F32', ne: [4, 64], data: tensorData('F32', new Float64Array(256)) },
      { name: 'per_layer_token_embd.weight.lora_b', type: 'F32', ne: [4, h], data: tensorData('F32', new Float64Array(4 * h)) },
    ] });
    const dir = temp.make({ 'base.gguf': q4kmLlama().files['tiny-llama-Q4_K_M.gguf'], 'ple.gguf': perLayer });
    await expectRefused(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'ple.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu'], dir,
      /^error: \S*ple\.gguf: module "per_layer_token_embd\.weight": a LoRA on the per-layer token embedding, which llama\.cpp loads but never applies \(Gemma 3n and Gemma 4 read that table by token id outside its LoRA path\) and llama-export-lora cannot merge: no llama\.cpp result exists to reproduce; merge the PEFT adapter it was converted from into the safetensors model instead, or convert the adapter without that module$/);
    expect(listDir(dir).filter((f) => f.startsWith('out') || f.startsWith('.out'))).toEqual([]);
  });

  it('inspect names why a PEFT aLoRA folder is refused, rather than listing its factors as a base model', async () => {
    const peft = peftLlamaAdapter();
    const config = { ...JSON.parse(peft.files['adapter_config.json'] as string), alora_invocation_tokens: [32, 1001] };
    const dir = temp.make({ 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': peft.files['adapter_model.safetensors'] });
    const result = await runCli(['inspect', dir]);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).toBe('');
    expect(errorLines(result.stderr)).toEqual([expect.stringMatching(/adapter_config\.json: "alora_invocation_tokens" is set: Activated LoRA applies only from its invocation tokens on/)]);
  });
});
