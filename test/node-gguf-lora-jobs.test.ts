/**
 * `loramerge/node`'s llama.cpp LoRA GGUFs: combineLoras and resizeLora with an `out` ending in
 * `.gguf` (of GGUF LoRAs, or of PEFT adapters given a `base`: one part of a split GGUF, or a
 * one-file GGUF) and convertLora write the very bytes
 * the command line's combine, resize and convert write for the same inputs (whose content
 * test/cli-gguf-lora-convert.test.ts checks against llama.cpp's rules and a float64 truth);
 * refusals are one line with the command line's reasons in the call's words; a cancel leaves
 * nothing at `out`.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MergeError } from '../src/errors.js';
import { combineLoras, convertLora, extractLora, resizeLora } from '../src/node.js';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama, splitF16Llama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const { hidden: h, heads, kvHeads, ffn } = LLAMA;
const kv = (h / heads) * kvHeads;
const BASE_PART = 'tiny-llama-F16-00001-of-00002.gguf';

/**
 * A PEFT LoRA of the tiny llama as PEFT saves one: rsLoRA, q/k/v/o and the MLP of layer 0 at r 8
 * (down_proj r 4 by rank_pattern), α 16 (v_proj α 32 by alpha_pattern), bf16 factors.
 */
function peftFiles(seed: number): Record<string, string | Uint8Array> {
  const rand = seededRandom(seed);
  const specs: [string, number, number][] = [
    ['self_attn.q_proj', h, h], ['self_attn.k_proj', kv, h], ['self_attn.v_proj', kv, h], ['self_attn.o_proj', h, h],
    ['mlp.gate_proj', ffn, h], ['mlp.up_proj', ffn, h], ['mlp.down_proj', h, ffn],
  ];
  const tensors = specs.flatMap(([path, out, inF]) => {
    const r = path === 'mlp.down_proj' ? 4 : 8;
    const g = () => 0.05 * (rand() - 0.5);
    return [
      { name: `base_model.model.model.layers.0.${path}.lora_A.weight`, dtype: 'BF16' as const, shape: [r, inF], data: Float64Array.from({ length: r * inF }, g) },
      { name: `base_model.model.model.layers.0.${path}.lora_B.weight`, dtype: 'BF16' as const, shape: [out, r], data: Float64Array.from({ length: out * r }, g) },
    ];
  });
  const config = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'tiny-llama', r: 8, lora_alpha: 16, use_rslora: true,
    rank_pattern: { down_proj: 4 }, alpha_pattern: { v_proj: 32 }, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  };
  return { 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) };
}

const within = (folder: string, files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [`${folder}/${k}`, v]));

/** The base (a split F16 llama GGUF), two PEFT adapters and two llama.cpp LoRAs of it, in one folder. */
function inputs(): string {
  const lora = (seed: number) => ggufLoraAdapter([
    { tensor: 'blk.0.attn_q.weight', rank: 4, in: h, out: h, aType: 'F32', bType: 'F32' },
    { tensor: 'blk.0.ffn_up.weight', rank: 2, in: h, out: ffn, aType: 'F16', bType: 'F16' },
  ], 8, seed).bytes;
  return temp.make({ ...splitF16Llama().files, ...within('peft', peftFiles(71)), ...within('peft2', peftFiles(72)), 'a.gguf': lora(31), 'b.gguf': lora(32) });
}

async function cliBytes(args: string[], out: string): Promise<Buffer> {
  const run = await runCli([...args, '--out', out]);
  expect(run.code, run.stderr).toBe(0);
  return readFileSync(out);
}

async function refusal(job: Promise<unknown>): Promise<MergeError> {
  const e = await job.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(MergeError);
  return e as MergeError;
}

describe('the library writes the command line\'s llama.cpp LoRA GGUF, byte for byte', () => {
  const dir = inputs();
  const [peft, peft2, base] = [join(dir, 'peft'), join(dir, 'peft2'), join(dir, BASE_PART)];

  it('convertLora of a PEFT adapter for a split GGUF base (one part named)', async () => {
    const want = await cliBytes(['convert', '--adapter', peft, '--base', base], join(dir, 'cli-convert.gguf'));
    const out = join(dir, 'lib-convert.gguf');
    const events: string[] = [];
    const outcome = await convertLora({ adapter: peft, base, out, onProgress: (e) => events.push(e.phase) });
    expect(Buffer.compare(readFileSync(out), want)).toBe(0);
    expect([outcome.format, outcome.files, outcome.modules.length]).toEqual(['gguf', ['adapter.gguf'], 7]);
    expect(events.filter((p) => p === 'merge').length).toBe(7);
  });

  it('convertLora and resizeLora for a one-file GGUF base (no split part: it is the model)', async () => {
    // A path that is no split part once reached the split reader and failed with a TypeError.
    const oneFile = join(temp.make(q4kmLlama().files), 'tiny-llama-Q4_K_M.gguf');
    const want = await cliBytes(['convert', '--adapter', peft, '--base', oneFile], join(dir, 'cli-convert-one.gguf'));
    const out = join(dir, 'lib-convert-one.gguf');
    const outcome = await convertLora({ adapter: peft, base: oneFile, out });
    expect([outcome.format, outcome.modules.length]).toEqual(['gguf', 7]);
    expect(Buffer.compare(readFileSync(out), want)).toBe(0);
    const wantResize = await cliBytes(['resize', '--adapter', peft, '--rank', '2', '--base', oneFile, '--backend', 'cpu'], join(dir, 'cli-resize-one.gguf'));
    const outResize = join(dir, 'lib-resize-one.gguf');
    await resizeLora({ adapter: peft, rule: { kind: 'rank', rank: 2 }, base: oneFile, out: outResize, backend: 'cpu' });
    expect(Buffer.compare(readFileSync(outResize), wantResize)).toBe(0);
  });

  it('resizeLora of a PEFT adapter with base, and of a llama.cpp LoRA without', async () => {
    const want = await cliBytes(['resize', '--adapter', peft, '--rank', '4', '--base', base, '--backend', 'cpu'], join(dir, 'cli-resize.gguf'));
    const out = join(dir, 'lib-resize.gguf');
    const outcome = await resizeLora({ adapter: peft, rule: { kind: 'rank', rank: 4 }, base, out, backend: 'cpu' });
    expect(outcome.format).toBe('gguf');
    expect(Buffer.compare(readFileSync(out), want)).toBe(0);
    const wantGguf = await cliBytes(['resize', '--adapter', join(dir, 'a.gguf'), '--sv-fro', '0.9', '--backend', 'cpu'], join(dir, 'cli-resize-gguf.gguf'));
    const outGguf = join(dir, 'lib-resize-gguf.gguf');
    await resizeLora({ adapter: join(dir, 'a.gguf'), rule: { kind: 'sv_fro', value: 0.9 }, out: outGguf, backend: 'cpu' });
    expect(Buffer.compare(readFileSync(outGguf), wantGguf)).toBe(0);
  });

  it('combineLoras of two PEFT adapters with base (svd), and of two llama.cpp LoRAs (cat)', async () => {
    const want = await cliBytes(['combine', '--adapter', peft, '--weight', '0.25', '--adapter', peft2, '--weight', '0.75', '--method', 'svd', '--rank', '8',
      '--base', base, '--backend', 'cpu'], join(dir, 'cli-combine.gguf'));
    const out = join(dir, 'lib-combine.gguf');
    await combineLoras({ adapters: [{ source: peft, weight: 0.25 }, { source: peft2, weight: 0.75 }], method: 'svd', rank: 8, base, out, backend: 'cpu' });
    expect(Buffer.compare(readFileSync(out), want)).toBe(0);
    const wantCat = await cliBytes(['combine', '--adapter', join(dir, 'a.gguf'), '--adapter', join(dir, 'b.gguf'), '--weight', '-1', '--method', 'cat', '--backend', 'cpu'], join(dir, 'cli-cat.gguf'));
    const outCat = join(dir, 'lib-cat.gguf');
    await combineLoras({ adapters: [join(dir, 'a.gguf'), { source: join(dir, 'b.gguf'), weight: -1 }], method: 'cat', out: outCat, backend: 'cpu' });
    expect(Buffer.compare(readFileSync(outCat), wantCat)).toBe(0);
  });
});

describe('refusals: one line, the command line\'s reasons, nothing written', () => {
  const dir = inputs();
  const [peft, base] = [join(dir, 'peft'), join(dir, BASE_PART)];

  // Each: the CLI's arguments, the library's call, and the reason both give (the option named each's way).
  const cases: { name: string; cli: string[]; lib: () => Promise<unknown>; cliLine: RegExp; libLine: RegExp }[] = [
    {
      name: 'a PEFT adapter into a .gguf without a base',
      cli: ['resize', '--adapter', peft, '--rank', '2', '--out', join(dir, 'x.gguf'), '--backend', 'cpu'],
      lib: () => resizeLora({ adapter: peft, rule: { kind: 'rank', rank: 2 }, out: join(dir, 'x.gguf'), backend: 'cpu' }),
      cliLine: /^error: .*peft: a peft adapter's module names are not llama\.cpp's tensor names, and renaming them needs the GGUF model it is for: give it as --base MODEL\.gguf$/,
      libLine: /^.*peft: a peft adapter's module names are not llama\.cpp's tensor names, and renaming them needs the GGUF model it is for: give it as base MODEL\.gguf$/,
    },
    {
      name: 'a base with an output that is no GGUF',
      cli: ['combine', '--adapter', peft, '--method', 'cat', '--base', base, '--out', join(dir, 'x'), '--backend', 'cpu'],
      lib: () => combineLoras({ adapters: [peft], method: 'cat', base, out: join(dir, 'x'), backend: 'cpu' }),
      cliLine: /^error: --base .*00001-of-00002\.gguf: combine reads a base only to name a llama\.cpp LoRA's tensors; give --out a \.gguf name, or leave out --base$/,
      libLine: /^base .*00001-of-00002\.gguf: combine reads a base only to name a llama\.cpp LoRA's tensors; give out a \.gguf name, or leave out base$/,
    },
    {
      name: 'a llama.cpp LoRA given a base',
      cli: ['resize', '--adapter', join(dir, 'a.gguf'), '--rank', '1', '--base', base, '--out', join(dir, 'x.gguf'), '--backend', 'cpu'],
      lib: () => resizeLora({ adapter: join(dir, 'a.gguf'), rule: { kind: 'rank', rank: 1 }, base, out: join(dir, 'x.gguf'), backend: 'cpu' }),
      cliLine: /^error: .*a\.gguf: a llama\.cpp LoRA already names the GGUF's tensors; leave out --base \(it is for PEFT adapters\)$/,
      libLine: /^.*a\.gguf: a llama\.cpp LoRA already names the GGUF's tensors; leave out base \(it is for PEFT adapters\)$/,
    },
    {
      name: 'a PEFT adapter combined with a llama.cpp LoRA',
      cli: ['combine', '--adapter', join(dir, 'a.gguf'), '--adapter', peft, '--method', 'cat', '--out', join(dir, 'x.gguf'), '--backend', 'cpu'],
      lib: () => combineLoras({ adapters: [join(dir, 'a.gguf'), peft], method: 'cat', out: join(dir, 'x.gguf'), backend: 'cpu' }),
      cliLine: /^error: .*peft: a peft adapter is not combined with llama\.cpp LoRAs; write it as one first \(combine --adapter .*peft --method cat --base MODEL\.gguf --out .*peft\.gguf\), then combine the GGUF LoRAs$/,
      libLine: /^.*peft: a peft adapter is not combined with llama\.cpp LoRAs; write it as one first \(convertLora\(\{ adapter: ".*peft", base: "MODEL\.gguf", out: ".*peft\.gguf" \}\)\), then combine the GGUF LoRAs$/,
    },
  ];

  it.for(cases)('$name', async ({ cli, lib, cliLine, libLine }) => {
    const before = listDir(dir);
    const run = await runCli(cli);
    expect(run.code).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([expect.stringMatching(cliLine)]);
    const e = await refusal(lib());
    expect(e.code).toBe('BAD_ARGUMENT');
    expect(e.message).toMatch(libLine);
    expect(listDir(dir)).toEqual(before);
  });

  it('convertLora: out must be a .gguf path and base is required; extractLora writes no GGUF', async () => {
    const before = listDir(dir);
    const noGguf = await refusal(convertLora({ adapter: peft, base, out: join(dir, 'x.safetensors') }));
    expect(noGguf.message).toBe(`out "${join(dir, 'x.safetensors')}": convertLora writes a llama.cpp LoRA GGUF; give out a path ending in .gguf`);
    const noBase = await refusal(convertLora({ adapter: peft, out: join(dir, 'x.gguf') } as unknown as Parameters<typeof convertLora>[0]));
    expect(noBase.message).toBe('convertLora needs base, the GGUF model (or Hugging Face safetensors folder) the LoRA is for');
    const extracted = await refusal(extractLora({ base: peft, tuned: peft, rank: 2, out: join(dir, 'x.gguf') }));
    expect(extracted.message).toBe(`out "${join(dir, 'x.gguf')}": extractLora writes no GGUF (it reads safetensors models, whose module names are not llama.cpp's); name out a folder (PEFT) and convert it with convertLora`);
    expect(listDir(dir)).toEqual(before);
  });
});

describe('a cancel leaves nothing at out', () => {
  it('convertLora and resizeLora with base, cancelled from the progress listener after the first module', async () => {
    const dir = inputs();
    const [peft, base] = [join(dir, 'peft'), join(dir, BASE_PART)];
    // An older file at out stays as it was.
    writeFileSync(join(dir, 'old.gguf'), 'older');
    const before = listDir(dir);
    for (const job of [
      (signal: AbortSignal, onProgress: () => void) => convertLora({ adapter: peft, base, out: join(dir, 'old.gguf'), signal, onProgress }),
      (signal: AbortSignal, onProgress: () => void) => resizeLora({ adapter: peft, rule: { kind: 'rank', rank: 2 }, base, out: join(dir, 'new.gguf'), backend: 'cpu', signal, onProgress }),
    ]) {
      const controller = new AbortController();
      let events = 0;
      const e = await refusal(job(controller.signal, () => { if (++events === 2) controller.abort(new Error('stop')); }));
      expect(e.code).toBe('ABORTED');
      expect(e.message).not.toContain('\n');
      expect(listDir(dir)).toEqual(before);
      expect(readFileSync(join(dir, 'old.gguf'), 'utf8')).toBe('older');
      expect(existsSync(join(dir, 'new.gguf'))).toBe(false);
    }
  });
});
