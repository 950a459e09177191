/**
 * Inputs found by the fuzzer of GGUF, LyCORIS, PEFT-method and model-folder inputs
 * (fuzz-surfaces.test.ts), each of which once crashed or merged silently wrong, through the CLI:
 * one clear error line naming the file and what is wrong, and nothing at --out.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, listDir, mergeFolders, runCli } from './helpers/cli.js';
import { buildSafetensors, tempDirs } from './helpers/fixtures.js';
import { buildGguf, tensorData, type MetaValue } from './helpers/gguf-builder.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const Q = 'model.layers.0.self_attn.q_proj';
const values = (n: number) => Array.from({ length: n }, (_, i) => ((i * 7) % 11) / 11 - 0.5);

/** A GGUF base with one matrix and a llama.cpp LoRA on it, with the given architectures (null: none) and α. */
function ggufPair(baseArch: MetaValue | null, adapterArch: MetaValue | null, alpha: MetaValue): { base: Uint8Array; lora: Uint8Array } {
  const base = buildGguf({
    metadata: [...(baseArch ? [['general.architecture', baseArch] as [string, MetaValue]] : []), ['llama.attention.head_count', { type: 'u32', value: 2 }]],
    tensors: [{ name: 'blk.0.ffn_up.weight', type: 'F32', ne: [8, 6], data: tensorData('F32', values(48)) }],
  });
  const lora = buildGguf({
    metadata: [
      ...(adapterArch ? [['general.architecture', adapterArch] as [string, MetaValue]] : []), ['general.type', { type: 'string', value: 'adapter' }],
      ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', alpha],
    ],
    tensors: [
      { name: 'blk.0.ffn_up.weight.lora_a', type: 'F32', ne: [8, 2], data: tensorData('F32', values(16)) },
      { name: 'blk.0.ffn_up.weight.lora_b', type: 'F32', ne: [2, 6], data: tensorData('F32', values(12)) },
    ],
  });
  return { base, lora };
}

describe('hostile GGUF, PEFT-method and LyCORIS inputs', () => {
  it('refuses a deeply nested PEFT LoHa config with one line instead of overflowing the stack', async () => {
    const depth = 80_000;
    const config = `{"peft_type":"LOHA","r":2,"alpha":8,"target_modules":["q_proj"],"rank_dropout":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const p = `base_model.model.${Q}`;
    const dir = temp.make({
      'base.safetensors': buildSafetensors([{ name: `${Q}.weight`, dtype: 'F32', shape: [6, 8], data: values(48) }]),
      'adapter/adapter_config.json': config,
      'adapter/adapter_model.safetensors': buildSafetensors([
        { name: `${p}.hada_w1_a`, dtype: 'F32', shape: [6, 2], data: values(12) }, { name: `${p}.hada_w1_b`, dtype: 'F32', shape: [2, 8], data: values(16) },
        { name: `${p}.hada_w2_a`, dtype: 'F32', shape: [6, 2], data: values(12) }, { name: `${p}.hada_w2_b`, dtype: 'F32', shape: [2, 8], data: values(16) },
      ]),
      'out/.keep': '',
    });
    for (const mode of [['--dry-run'], ['--out', join(dir, 'out', 'merged.safetensors')]]) {
      const result = await runCli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', join(dir, 'adapter'), ...mode, '--backend', 'cpu']);
      expect(result.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(errorLines(result.stderr)).toEqual([`error: ${join(dir, 'adapter', 'adapter_config.json')}: nests deeper than 64 levels (the limit MAX_CONFIG_NESTING); not a config this tool reads`]);
      expect(result.code).toBe(1);
      expect(listDir(join(dir, 'out'))).toEqual(['.keep']);
    }
  });

  // llama.cpp reads adapter.lora.alpha with gguf_get_val_f32: another type aborts there, and a NaN
  // α makes every scale NaN. Each was taken as "no α" (scale = the weight alone) and merged.
  // llama.cpp reads general.architecture with gguf_get_val_str (no other type) and refuses an
  // adapter whose architecture is not the model's ("" when missing). A non-string one on the
  // adapter was skipped by the check and merged; on the base it crashed the message, and under a
  // safetensors LoRA (which names no architecture) was written into the merged file.
  it.each<[string, MetaValue | null, MetaValue | null, string]>([
    ['the adapter\'s is a u64', { type: 'u64', value: 2n ** 63n }, { type: 'string', value: 'llama' }, 'lora.gguf: general.architecture is missing or not a string; llama.cpp refuses a LoRA that does not name its model\'s architecture'],
    ['the adapter has none', null, { type: 'string', value: 'llama' }, 'lora.gguf: general.architecture is missing or not a string; llama.cpp refuses a LoRA that does not name its model\'s architecture'],
    // The base's is refused when it is opened, whatever the adapter: the merged file would keep it.
    ['the base\'s is an i64', { type: 'string', value: 'llama' }, { type: 'i64', value: -5n }, 'base.gguf: general.architecture holds -5, not a string; llama.cpp and ComfyUI-GGUF read the model\'s architecture from it (the file\'s metadata is damaged: download or convert it again)'],
    // It said "but the base is undefined".
    ['the base has none', { type: 'string', value: 'llama' }, null, 'lora.gguf: a LoRA for architecture "llama", but the base names none (it has no general.architecture)'],
  ])('refuses a GGUF LoRA when %s', async (_, adapterArch, baseArch, message) => {
    const { base, lora } = ggufPair(baseArch, adapterArch, { type: 'f32', value: 4 });
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': lora, 'out/.keep': '' });
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'out', 'merged.gguf'), '--backend', 'cpu']);
    expect(result.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(errorLines(result.stderr)).toEqual([`error: ${join(dir, message)}`]);
    expect(result.code).not.toBe(0);
    expect(listDir(join(dir, 'out'))).toEqual(['.keep']);
  });

  it('refuses a GGUF base whose general.architecture is a number under a safetensors LoRA, which names no architecture', async () => {
    // ComfyUI-GGUF files keep the model's own tensor names, so a LoRA lands without the architecture;
    // the merged file used to keep the damaged entry (an f32 0), which no loader reads.
    const { base } = ggufPair({ type: 'f32', value: 0 }, null, { type: 'f32', value: 4 });
    const lora = buildSafetensors([
      { name: 'blk.0.ffn_up.lora_A.weight', dtype: 'F32', shape: [2, 8], data: values(16) },
      { name: 'blk.0.ffn_up.lora_B.weight', dtype: 'F32', shape: [6, 2], data: values(12) },
    ]);
    const dir = temp.make({ 'base.gguf': base, 'lora.safetensors': lora, 'out/.keep': '' });
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.safetensors'), '--out', join(dir, 'out', 'merged.gguf'), '--backend', 'cpu']);
    expect(result.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(errorLines(result.stderr)).toEqual([`error: ${join(dir, 'base.gguf')}: general.architecture holds 0, not a string; llama.cpp and ComfyUI-GGUF read the model's architecture from it (the file's metadata is damaged: download or convert it again)`]);
    expect(result.code).toBe(1);
    expect(listDir(join(dir, 'out'))).toEqual(['.keep']);
  });

  it.each<[string, MetaValue, string]>([
    ['NaN', { type: 'f32', value: NaN }, 'NaN (GGUF type FLOAT32)'],
    ['infinite', { type: 'f32', value: -Infinity }, '-Infinity (GGUF type FLOAT32)'],
    ['a string', { type: 'string', value: '8' }, '"8" (GGUF type STRING)'],
    ['a u64', { type: 'u64', value: 8n }, '8 (GGUF type UINT64)'],
    ['an f64', { type: 'f64', value: 8 }, '8 (GGUF type FLOAT64)'],
  ])('refuses a GGUF LoRA whose adapter.lora.alpha is %s', async (_, alpha, shown) => {
    const { base, lora } = ggufPair({ type: 'string', value: 'llama' }, { type: 'string', value: 'llama' }, alpha);
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': lora, 'out/.keep': '' });
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'out', 'merged.gguf'), '--backend', 'cpu']);
    expect(result.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(errorLines(result.stderr)).toEqual([`error: ${join(dir, 'lora.gguf')}: adapter.lora.alpha must be a finite f32, got ${shown}`]);
    expect(result.code).toBe(1);
    expect(listDir(join(dir, 'out'))).toEqual(['.keep']);
  });
});

// GGUF strings may be 10 MB long (the parser's own limit), and a message quoting one was a line of
// that size, cut short at 64 KiB when stderr is a pipe: the part saying what was wrong was lost.
describe.concurrent('a megabyte string in a GGUF header is not a megabyte error line', () => {
  it('a tensor name past GGML_MAX_NAME is refused by its length, quoting 63 bytes of it', async () => {
    const name = `blk.0.ffn_up.weight${'.x'.repeat(500_000)}`;
    const base = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }]],
      tensors: [{ name, type: 'F32', ne: [8, 6], data: tensorData('F32', values(48)) }],
    });
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': ggufPair({ type: 'string', value: 'llama' }, { type: 'string', value: 'llama' }, { type: 'f32', value: 4 }).lora, 'out/.keep': '' });
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'out', 'merged.gguf'), '--backend', 'cpu']);
    expect(errorLines(result.stderr)).toEqual([`error: ${join(dir, 'base.gguf')}: tensor "${name.slice(0, 63)}…" has a name of ${name.length} bytes, longer than GGML's 63`]);
    expect(result.code).toBe(1);
    expect(listDir(join(dir, 'out'))).toEqual(['.keep']);
  });

  it('any other message quoting one keeps its start and its end, the middle left out', async () => {
    const arch = 'x'.repeat(1_000_000);
    const { base, lora } = ggufPair({ type: 'string', value: arch }, { type: 'string', value: 'llama' }, { type: 'f32', value: 4 });
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': lora, 'out/.keep': '' });
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'out', 'merged.gguf'), '--backend', 'cpu']);
    const lines = errorLines(result.stderr);
    expect(lines).toHaveLength(1);
    const message = `${join(dir, 'lora.gguf')}: a LoRA for architecture "llama", but the base is "${arch}"`;
    expect(lines[0]).toBe(`error: ${message.slice(0, 3072)} […${message.length - 4096} characters left out…] ${message.slice(-1024)}`);
    expect(result.code).toBe(1);
    expect(listDir(join(dir, 'out'))).toEqual(['.keep']);
  });
});

// JSON kept inside a file (safetensors metadata, a base's config.json read for its name) was handed
// to JSON.parse whole: 40 MB of `[[[…` in lora_adapter_metadata or _quantization_metadata took
// 2 GB and 21 s before the refusal, 30 MB in config.json 1.5 GB during an extract. It is held to
// the config limits (MAX_CONFIG_NESTING, MAX_CONFIG_VALUES) first, like adapter_config.json.
describe.concurrent('JSON inside files is bounded like a config', () => {
  const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  const nested = (where: string) => `${where}: nests deeper than 64 levels (the limit MAX_CONFIG_NESTING); not a config this tool reads`;
  // SD 2.x UNet (diffusers names): a linear proj_in of 320 × 320.
  const toQ = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
  const unet = { 'diffusion_pytorch_model.safetensors': buildSafetensors([{ name: `${toQ}.weight`, dtype: 'F16', shape: [320, 320], data: values(320 * 320) }]) };
  const kohyaQ = `lora_unet_${toQ.replaceAll('.', '_')}`;

  async function refusedMerge(base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, message: string): Promise<void> {
    const { run, out, lines } = await mergeFolders(temp.make, base, adapter);
    expect(run.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(lines).toEqual([`error: ${message.replaceAll('DIR', join(out, '..'))}`]);
    expect(run.code).toBe(1);
    expect(listDir(join(out, '..'))).toEqual(['adapter', 'base']);
  }

  it('diffusers\' lora_adapter_metadata of a LoRA file', async () => {
    const lora = buildSafetensors([
      { name: `unet.${toQ}.lora_A.weight`, dtype: 'F32', shape: [4, 320], data: values(4 * 320) },
      { name: `unet.${toQ}.lora_B.weight`, dtype: 'F32', shape: [320, 4], data: values(320 * 4) },
    ], { format: 'pt', lora_adapter_metadata: `{"unet.r": 4, "unet.lora_alpha": 8, "unet.target_modules": ${deep(100_000)}}` });
    await refusedMerge(unet, { 'lora.safetensors': lora }, nested('DIR/adapter/lora.safetensors: metadata "lora_adapter_metadata"'));
  });

  it('kohya\'s ss_network_args of a LyCORIS GLoRA file (read for rs_lora)', async () => {
    const r = 4;
    const glora = buildSafetensors([
      { name: `${kohyaQ}.a1.weight`, dtype: 'F32', shape: [320, r], data: values(320 * r) },
      { name: `${kohyaQ}.a2.weight`, dtype: 'F32', shape: [r, 320], data: values(r * 320) },
      { name: `${kohyaQ}.b1.weight`, dtype: 'F32', shape: [320, r], data: values(320 * r) },
      { name: `${kohyaQ}.b2.weight`, dtype: 'F32', shape: [r, 320], data: values(r * 320) },
      { name: `${kohyaQ}.alpha`, dtype: 'F32', shape: [], data: [r] },
    ], { ss_network_module: 'lycoris.kohya', ss_network_dim: String(r), ss_network_args: `{"algo": "glora", "rs_lora": "True", "preset": ${deep(100_000)}}` });
    await refusedMerge(unet, { 'glora.safetensors': glora }, nested('DIR/adapter/glora.safetensors: metadata "ss_network_args"'));
  });

  it('ComfyUI\'s _quantization_metadata of a base checkpoint', async () => {
    const key = 'model.diffusion_model.input_blocks.1.1.proj_in';
    const checkpoint = buildSafetensors([{ name: `${key}.weight`, dtype: 'F16', shape: [320, 320], data: values(320 * 320) }],
      { _quantization_metadata: `{"format_version": "1.0", "layers": ${deep(100_000)}}` });
    const kohya = buildSafetensors([
      { name: 'lora_unet_input_blocks_1_1_proj_in.lora_down.weight', dtype: 'F32', shape: [4, 320], data: values(4 * 320) },
      { name: 'lora_unet_input_blocks_1_1_proj_in.lora_up.weight', dtype: 'F32', shape: [320, 4], data: values(320 * 4) },
      { name: 'lora_unet_input_blocks_1_1_proj_in.alpha', dtype: 'F32', shape: [], data: [4] },
    ]);
    await refusedMerge({ 'checkpoint.safetensors': checkpoint }, { 'lora.safetensors': kohya },
      nested('DIR/base: checkpoint.safetensors\'s _quantization_metadata header entry'));
  });

  it('a base\'s config.json, read by extract only for the name it records', async () => {
    const q = 'model.layers.0.self_attn.q_proj.weight';
    const dir = temp.make({
      'base/model.safetensors': buildSafetensors([{ name: q, dtype: 'F32', shape: [64, 64], data: values(64 * 64) }]),
      'base/config.json': deep(5_000_000), // 10 MB, under MAX_CONFIG_BYTES
      'tuned/model.safetensors': buildSafetensors([{ name: q, dtype: 'F32', shape: [64, 64], data: values(64 * 64).map((x, i) => x + (i % 7) / 64) }]),
    });
    const out = join(dir, 'adapter');
    // A heap JSON.parse of the config alone would overrun many times over.
    const result = await runCli(['extract', '--base', join(dir, 'base'), '--tuned', join(dir, 'tuned'), '--rank', '2', '--out', out, '--backend', 'cpu'], {}, ['--max-old-space-size=64']);
    expect(result.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(result.code, result.stderr).toBe(0);
    // What a config that cannot be read costs: the name, which is then the path.
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(join(dir, 'base'));
  });
});
