/**
 * `convert --outtype` (convert_lora_to_gguf.py's f32, f16, bf16, q8_0, auto; default f32) and the
 * library's `convertLora({ outtype })`: every factor's type and bytes checked against encodings
 * written independently of src/ (the builder's float encoders, ggml's Q8_0 reference quantizer in
 * test/helpers/ggml-reference.ts): Q8_0 where a tensor's rows (ne[0]) are whole 32-value blocks,
 * else F16, as gguf-py falls back (QuantError); `auto` as convert_hf_to_gguf's GUESSED picks (f16 where
 * the first pair in the adapter's sorted tensor names is f16, else bf16). Also: the
 * library refuses `overwrite` (one .gguf file, always replaced) and a bad `outtype`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MergeError } from '../src/errors.js';
import { convertLora } from '../src/node.js';
import { errorLines, listDir, runCliInProcess as runCli } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { readGguf, tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { LLAMA, splitF16Llama } from './helpers/gguf-models.js';
import { referenceQuantizeBlock } from './helpers/ggml-reference.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const { hidden: h, heads, kvHeads, ffn, vocab } = LLAMA;
const kv = (h / heads) * kvHeads;
const BASE_PART = 'tiny-llama-F16-00001-of-00002.gguf';

type Dt = 'F32' | 'F16' | 'BF16';
interface Factor { tensor: string; values: Float64Array }

/**
 * A PEFT LoRA of the tiny llama: v_proj at r 8, down_proj at r 32 (rank_pattern: its lora_b rows
 * are one Q8_0 block), the token embedding at r 8; α 16. Factors of `dtype` (per module where
 * given). Returns the files and, per GGUF factor tensor, the values stored (A of token_embd
 * transposed, as the GGUF holds it).
 */
function peft(dtype: Dt | ((path: string) => Dt), seed = 5): { files: Record<string, string | Uint8Array>; factors: Factor[] } {
  const rand = seededRandom(seed);
  const dt = typeof dtype === 'string' ? () => dtype : dtype;
  // Values the stored dtype holds exactly: whole multiples of 2⁻¹², |x| < 2⁻³.
  const g = () => Math.round((rand() - 0.5) * 512) / 4096;
  const specs = [
    { path: 'model.layers.0.self_attn.v_proj', tensor: 'blk.0.attn_v.weight', r: 8, out: kv, in: h },
    { path: 'model.layers.0.mlp.down_proj', tensor: 'blk.0.ffn_down.weight', r: 32, out: h, in: ffn },
  ];
  const tensors = [];
  const factors: Factor[] = [];
  for (const s of specs) {
    const a = Float64Array.from({ length: s.r * s.in }, g);
    const b = Float64Array.from({ length: s.out * s.r }, g);
    tensors.push({ name: `base_model.model.${s.path}.lora_A.weight`, dtype: dt(s.path), shape: [s.r, s.in], data: a });
    tensors.push({ name: `base_model.model.${s.path}.lora_B.weight`, dtype: dt(s.path), shape: [s.out, s.r], data: b });
    factors.push({ tensor: `${s.tensor}.lora_a`, values: a }, { tensor: `${s.tensor}.lora_b`, values: b });
  }
  const [r, a, b] = [8, Float64Array.from({ length: 8 * vocab }, g), Float64Array.from({ length: h * 8 }, g)];
  tensors.push({ name: 'base_model.model.model.embed_tokens.lora_embedding_A', dtype: dt('model.embed_tokens'), shape: [r, vocab], data: a });
  tensors.push({ name: 'base_model.model.model.embed_tokens.lora_embedding_B', dtype: dt('model.embed_tokens'), shape: [h, r], data: b });
  const aT = new Float64Array(a.length);
  for (let k = 0; k < r; k++) for (let v = 0; v < vocab; v++) aT[v * r + k] = a[k * vocab + v];
  factors.push({ tensor: 'token_embd.weight.lora_a', values: aT }, { tensor: 'token_embd.weight.lora_b', values: b });
  const config = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'tiny-llama', r: 8, lora_alpha: 16,
    rank_pattern: { down_proj: 32 }, target_modules: ['v_proj', 'down_proj', 'embed_tokens'],
  };
  return { files: { 'peft/adapter_config.json': JSON.stringify(config), 'peft/adapter_model.safetensors': buildSafetensors(tensors) }, factors };
}

/** ggml's Q8_0 of `values` (rows of ne[0] values, whole blocks), block by block. */
function q8(values: Float64Array): Uint8Array {
  const out = new Uint8Array((values.length / 32) * 34);
  for (let i = 0; i < values.length / 32; i++) out.set(referenceQuantizeBlock('Q8_0', values.subarray(i * 32, (i + 1) * 32)), i * 34);
  return out;
}

const base = splitF16Llama();

async function convert(dtype: Dt | ((path: string) => Dt), outtype?: string) {
  const adapter = peft(dtype);
  const dir = temp.make({ ...base.files, ...adapter.files });
  const out = join(dir, 'lora.gguf');
  const run = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, BASE_PART), '--out', out, ...(outtype ? ['--outtype', outtype] : [])]);
  expect(run.code, run.stderr).toBe(0);
  const file = readGguf(readFileSync(out));
  return { dir, out, file, factors: adapter.factors, types: Object.fromEntries(file.tensors.map((t) => [t.name, typeName(t.typeId)])) };
}

describe('convert --outtype, as convert_lora_to_gguf.py writes each type', () => {
  it('f32 by default (the script\'s default), whatever the factors are stored in', async () => {
    const { file, factors, types } = await convert('BF16');
    // The script's LoRA class writes no general.file_type; every file gets the quantization version.
    expect(file.metadata.get('general.file_type')).toBeUndefined();
    expect(file.metadata.get('general.quantization_version')).toEqual({ type: 4, value: 2 });
    for (const f of factors) {
      expect(types[f.tensor], f.tensor).toBe('F32');
      expect(tensorValues('F32', file.tensors.find((t) => t.name === f.tensor)!.data), f.tensor).toEqual(f.values);
    }
    // token_embd's A transposed: ne [r, vocab]; down_proj's B ne [32, hidden].
    expect(file.tensors.find((t) => t.name === 'token_embd.weight.lora_a')!.ne).toEqual([8, vocab]);
    expect(file.tensors.find((t) => t.name === 'blk.0.ffn_down.weight.lora_b')!.ne).toEqual([32, h]);
  });

  it('f16 and bf16: every factor in that type, its bytes the type\'s rounding of the values', async () => {
    for (const [outtype, type] of [['f16', 'F16'], ['bf16', 'BF16']] as const) {
      const { file, factors, types } = await convert('F32', outtype);
      for (const f of factors) {
        expect(types[f.tensor], f.tensor).toBe(type);
        expect(Buffer.compare(file.tensors.find((t) => t.name === f.tensor)!.data, tensorData(type, f.values)), `${outtype} ${f.tensor}`).toBe(0);
      }
    }
  });

  it('q8_0: Q8_0 where rows are whole 32-value blocks (every lora_a of a linear, down_proj\'s r-32 lora_b), else F16, as gguf-py falls back', async () => {
    const { file, factors, types } = await convert('BF16', 'q8_0');
    expect(types).toEqual({
      'blk.0.attn_v.weight.lora_a': 'Q8_0', 'blk.0.attn_v.weight.lora_b': 'F16',
      'blk.0.ffn_down.weight.lora_a': 'Q8_0', 'blk.0.ffn_down.weight.lora_b': 'Q8_0',
      // ne [8, vocab] and [8, hidden]: rows of 8.
      'token_embd.weight.lora_a': 'F16', 'token_embd.weight.lora_b': 'F16',
    });
    for (const f of factors) {
      const want = types[f.tensor] === 'Q8_0' ? q8(f.values) : tensorData('F16', f.values);
      expect(Buffer.compare(file.tensors.find((t) => t.name === f.tensor)!.data, want), f.tensor).toBe(0);
    }
    // The merge reads it back: within Q8_0's step of the values.
    const lora = file.tensors.find((t) => t.name === 'blk.0.ffn_down.weight.lora_b')!;
    const back = tensorValues('Q8_0', lora.data);
    const want = factors.find((f) => f.tensor === 'blk.0.ffn_down.weight.lora_b')!.values;
    for (let i = 0; i < want.length; i++) expect(Math.abs(back[i] - want[i])).toBeLessThanOrEqual(0.125 / 127 / 2 + 1e-9);
  });

  it('auto: f16 where the first pair in sorted tensor names is f16, else bf16 (f32 too), as convert_hf_to_gguf\'s GUESSED', async () => {
    expect(new Set(Object.values((await convert('BF16', 'auto')).types))).toEqual(new Set(['BF16']));
    expect(new Set(Object.values((await convert('F16', 'auto')).types))).toEqual(new Set(['F16']));
    // An f32 adapter: not float16, so bf16 (the script's else branch).
    const f32 = await convert('F32', 'auto');
    expect(new Set(Object.values(f32.types))).toEqual(new Set(['BF16']));
    // base_model.model.model.embed_tokens… sorts before …model.layers…: its pair decides.
    const mixed = await convert((path) => (path === 'model.embed_tokens' ? 'BF16' : 'F16'), 'auto');
    expect(new Set(Object.values(mixed.types))).toEqual(new Set(['BF16']));
    const f16First = await convert((path) => (path === 'model.embed_tokens' ? 'F16' : 'BF16'), 'auto');
    expect(new Set(Object.values(f16First.types))).toEqual(new Set(['F16']));
    // An f32 pair first decides too: bf16, though every other module is f16.
    const f32First = await convert((path) => (path === 'model.embed_tokens' ? 'F32' : 'F16'), 'auto');
    expect(new Set(Object.values(f32First.types))).toEqual(new Set(['BF16']));
  });

  it('refuses another --outtype in one line, nothing written; combine and resize take none', async () => {
    const adapter = peft('BF16');
    const dir = temp.make({ ...base.files, ...adapter.files });
    const before = listDir(dir);
    for (const [args, line] of [
      [['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, BASE_PART), '--out', join(dir, 'x.gguf'), '--outtype', 'q4_k'], /^error: --outtype must be f32, f16, bf16, q8_0 or auto \(convert_lora_to_gguf\.py's\), not "q4_k" \(see loramerge --help\)$/],
      [['resize', '--adapter', join(dir, 'peft'), '--rank', '2', '--base', join(dir, BASE_PART), '--out', join(dir, 'x.gguf'), '--outtype', 'f16'], /^error: resize has no option --outtype; it is an option of convert/],
    ] as const) {
      const run = await runCli([...args]);
      expect(run.code, run.stderr).toBe(2);
      expect(errorLines(run.stderr)).toEqual([expect.stringMatching(line)]);
    }
    expect(listDir(dir)).toEqual(before);
  });
});

describe('convertLora({ outtype })', () => {
  it('writes the command line\'s bytes for each outtype; refuses a bad one and overwrite, naming them', async () => {
    const adapter = peft('BF16');
    const dir = temp.make({ ...base.files, ...adapter.files });
    for (const outtype of ['f32', 'f16', 'bf16', 'q8_0', 'auto'] as const) {
      const cli = join(dir, `cli-${outtype}.gguf`);
      const run = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, BASE_PART), '--out', cli, '--outtype', outtype]);
      expect(run.code, run.stderr).toBe(0);
      const lib = join(dir, `lib-${outtype}.gguf`);
      const outcome = await convertLora({ adapter: join(dir, 'peft'), base: join(dir, BASE_PART), out: lib, outtype });
      expect(outcome.format).toBe('gguf');
      expect(Buffer.compare(readFileSync(lib), readFileSync(cli)), outtype).toBe(0);
    }
    const before = listDir(dir);
    const refused = async (options: Record<string, unknown>) => {
      const e = await convertLora({ adapter: join(dir, 'peft'), base: join(dir, BASE_PART), out: join(dir, 'x.gguf'), ...options } as Parameters<typeof convertLora>[0]).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(MergeError);
      return (e as MergeError).message;
    };
    expect(await refused({ outtype: 'q4_0' })).toBe('outtype must be f32, f16, bf16, q8_0 or auto, not the string "q4_0" (did you mean "q8_0"?)');
    expect(await refused({ overwrite: true })).toBe('convertLora options: unknown option "overwrite"; convertLora writes one .gguf file, which replaces a file already at out once the job succeeded; leave out overwrite (it is for the PEFT folders combineLoras and resizeLora write)');
    expect(listDir(dir)).toEqual(before);
  });
});
