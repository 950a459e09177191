/**
 * Inputs that used to give a silently wrong result or hang, through the CLI: every output value is
 * checked (copied, converted, replaced, merged), NaN/Inf is blamed on the file it comes from,
 * inputs that change while merging abort the merge, suspicious requests are warned about, and a
 * pathological regex in a config cannot hang anything.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../src/cli/args.js';
import { DiffusersLoraMetadata } from '../src/formats/diffusers-metadata.js';
import { parsePeftConfig } from '../src/formats/peft-config.js';
import { MergeError } from '../src/errors.js';
import { openModel } from '../src/formats/open-model.js';
import { bytesSource, memoryInputFileSet } from '../src/io/memory-source.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { buildGguf, tensorData } from './helpers/gguf-builder.js';
import { errorLines, listDir, longMergeInputs, runCli, runCliActingAtStart, type CliResult } from './helpers/cli.js';
import { buildRawSafetensors, buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const rand = seededRandom(91);
const d = 12;
const r = 2;
const q = 'model.layers.0.self_attn.q_proj';
const v = 'model.layers.0.self_attn.v_proj';
const norm = 'model.norm.weight';

function base(values: { q?: ArrayLike<number>; v?: ArrayLike<number>; norm?: ArrayLike<number> } = {}): FixtureTensor[] {
  return [
    { name: `${q}.weight`, dtype: 'F32', shape: [d, d], data: values.q ?? randomValues(d * d, rand) },
    { name: `${v}.weight`, dtype: 'F32', shape: [d, d], data: values.v ?? randomValues(d * d, rand) },
    { name: norm, dtype: 'F32', shape: [d], data: values.norm ?? randomValues(d, rand) },
  ];
}

const aValues = randomValues(r * d, rand);
const bValues = randomValues(d * r, rand);
function adapter(config: Record<string, unknown> = {}, extra: FixtureTensor[] = []): Record<string, string | Uint8Array> {
  return {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4, ...config }),
    'adapter_model.safetensors': buildSafetensors([
      { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: aValues },
      { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: bValues },
      ...extra,
    ]),
  };
}

interface Run extends CliResult {
  outDir: string;
  out: string;
}

async function merge(baseTensors: FixtureTensor[], adapterFiles: Record<string, string | Uint8Array>, extra: string[] = []): Promise<Run> {
  const baseDir = temp.make({ 'base.safetensors': buildSafetensors(baseTensors) });
  const adapterDir = temp.make(adapterFiles);
  const outDir = temp.make();
  const out = join(outDir, 'merged.safetensors');
  const result = await runCli(['merge', '--base', join(baseDir, 'base.safetensors'), '--adapter', adapterDir, '--out', out, '--backend', 'cpu', ...extra]);
  return { ...result, outDir, out };
}

/** One `error:` line, no stack trace, nothing at or beside --out. */
function expectRefused(run: Run, message: RegExp): void {
  expect(run.code, run.stderr).not.toBe(0);
  const lines = errorLines(run.stderr);
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expect(listDir(run.outDir)).toEqual([]);
}

function warnings(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('warning: '));
}

describe('every output value is checked', () => {
  it('refuses f32 values that overflow f16 in a tensor that is only converted, and names the fix', async () => {
    const normValues = randomValues(d, rand);
    normValues[3] = 1e5;
    const tensors = base({ norm: normValues });
    const run = await merge(tensors, adapter(), ['--dtype', 'f16']);
    expectRefused(run, /base\.safetensors: tensor "model\.norm\.weight": 1 value overflows F16.*--dtype bf16/);
    // bf16 holds 1e5: the same merge then succeeds, the value rounded once.
    const ok = await merge(tensors, adapter(), ['--dtype', 'bf16']);
    expect(ok.code, ok.stderr).toBe(0);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(ok.out))).tensors.get(norm)!;
    expect(merged.values[3]).toBe(roundForDType(1e5, 'BF16'));
  });

  it('refuses a modules_to_save tensor holding NaN, naming the adapter tensor', async () => {
    const head = randomValues(d * d, rand);
    head[7] = NaN;
    const run = await merge(base(), adapter({ modules_to_save: ['v_proj'] }, [
      { name: `base_model.model.${v}.modules_to_save.default.weight`, dtype: 'F32', shape: [d, d], data: head },
    ]));
    expectRefused(run, /modules_to_save\.default\.weight.*replacing model\.layers\.0\.self_attn\.v_proj\.weight.*NaN or Inf.*adapter file is broken/);
  });

  it('copies NaN the base already holds bit for bit, with a warning naming the tensor and the file', async () => {
    const vValues = randomValues(d * d, rand);
    vValues[0] = NaN;
    vValues[5] = -Infinity;
    const tensors = base({ v: vValues });
    const run = await merge(tensors, adapter());
    expect(run.code, run.stderr).toBe(0);
    expect(warnings(run.stderr).join('\n')).toMatch(/base\.safetensors: 1 tensor already holds NaN or Inf in the base and is copied as it is: model\.layers\.0\.self_attn\.v_proj\.weight \(2 values\)/);
    const before = decodeSafetensors(buildSafetensors(tensors)).tensors.get(`${v}.weight`)!;
    const after = decodeSafetensors(new Uint8Array(readFileSync(run.out))).tensors.get(`${v}.weight`)!;
    expect(Buffer.from(after.bytes).equals(Buffer.from(before.bytes))).toBe(true);
  });

  it('blames the base, not the merge, for NaN in a tensor the merge updates', async () => {
    const qValues = randomValues(d * d, rand);
    qValues[d * 4 + 2] = NaN;
    const run = await merge(base({ q: qValues }), adapter());
    expectRefused(run, /base\.safetensors: tensor "model\.layers\.0\.self_attn\.q_proj\.weight" already holds 1 NaN or Inf value in the base.*base file is broken/);
  });

  it('names the module whose factor holds Inf, and overflow of the output dtype by the merge itself', async () => {
    const broken = adapter();
    const a = Float64Array.from(aValues);
    a[1] = Infinity;
    broken['adapter_model.safetensors'] = buildSafetensors([
      { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: a },
      { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: bValues },
    ]);
    expectRefused(await merge(base(), broken), /module "model\.layers\.0\.self_attn\.q_proj": factor .*lora_A\.weight holds 1 NaN or Inf value \(row 0\); the adapter file is broken/);
    // Finite factors whose update overflows f16 but not f32: the fix is a wider dtype.
    const run = await merge(base(), adapter(), ['--dtype', 'f16', '--weight', '40000']);
    expectRefused(run, /tensor "model\.layers\.0\.self_attn\.q_proj\.weight": merged values up to .* overflow F16.*--dtype bf16 or f32/);
  });
});

describe('inputs stay consistent', () => {
  it('aborts when the base is rewritten in place during the merge (dd conv=notrunc)', async () => {
    // A 64 MB tensor takes long enough to merge that the rewrite lands mid-merge.
    const { base: basePath, adapter: adapterDir } = longMergeInputs(temp.make, q, 16);
    const outDir = temp.make();
    const { code, stderr } = await runCliActingAtStart(['merge', '--base', basePath, '--adapter', adapterDir,
      '--out', join(outDir, 'merged.safetensors'), '--backend', 'cpu'], () => {
      // Same size, new content, written in place like dd conv=notrunc (never truncated).
      const fd = openSync(basePath, 'r+');
      const value = Buffer.alloc(4);
      value.writeFloatLE(1.5);
      writeSync(fd, value, 0, 4, statSync(basePath).size - 4);
      closeSync(fd);
    });
    expect(code, stderr).toBe(1);
    expect(errorLines(stderr)).toHaveLength(1);
    expect(errorLines(stderr)[0]).toMatch(/base\.safetensors was modified while the merge read it; nothing was written/);
    expect(listDir(outDir)).toEqual([]);
  });
});

describe('suspicious but legal requests are said aloud', () => {
  it('warns about weight 0 and about lora_alpha 0', async () => {
    const zero = await merge(base(), adapter(), ['--weight', '0']);
    expect(zero.code, zero.stderr).toBe(0);
    expect(warnings(zero.stderr).join('\n')).toMatch(/weight 0 changes nothing/);
    const alpha = await merge(base(), adapter({ lora_alpha: 0 }));
    expect(alpha.code, alpha.stderr).toBe(0);
    expect(warnings(alpha.stderr).join('\n')).toMatch(/every module has alpha 0, so scale 0: it changes nothing/);
  });

  it('says what weight 0 still changes: a PEFT DoRA sets each row of W to its magnitude, and the merge does so', async () => {
    const w = randomValues(d * d, rand);
    const m = randomValues(d, rand).map((x) => 0.5 + Math.abs(x));
    const dora = adapter({ use_dora: true }, [{ name: `base_model.model.${q}.lora_magnitude_vector`, dtype: 'F32', shape: [d], data: m }]);
    const run = await merge(base({ q: w }), dora, ['--weight', '0']);
    expect(run.code, run.stderr).toBe(0);
    const said = warnings(run.stderr).join('\n');
    expect(said).not.toMatch(/changes nothing/);
    expect(said).toMatch(/weight 0 leaves out its updates, but not all of its changes: 1 DoRA module still scales its weight to the trained magnitudes \(PEFT scales only ΔW by the weight\)/);
    // PEFT at weight 0: W' = m / ‖W row‖ · W row, in float64, rounded once to f32.
    const merged = decodeSafetensors(new Uint8Array(readFileSync(run.out))).tensors.get(`${q}.weight`)!;
    let moved = 0;
    for (let o = 0; o < d; o++) {
      const row = Array.from({ length: d }, (_, i) => roundForDType(w[o * d + i], 'F32'));
      const norm = Math.hypot(...row);
      for (let i = 0; i < d; i++) {
        const want = roundForDType((roundForDType(m[o], 'F32') / norm) * row[i], 'F32');
        expect(Math.abs(merged.values[o * d + i] - want)).toBeLessThanOrEqual(Math.abs(want) * 2 ** -23);
        if (merged.values[o * d + i] !== row[i]) moved++;
      }
    }
    expect(moved).toBeGreaterThan(d * d / 2);
  });

  it('warns when the same adapter is given twice, by path or as a copy, but not for a different checkpoint', async () => {
    const baseDir = temp.make({ 'base.safetensors': buildSafetensors(base()) });
    const one = temp.make(adapter());
    const copy = temp.make(adapter());
    const other = adapter();
    const b2 = Float64Array.from(bValues);
    b2[0] += 0.5; // same table, other values: a later checkpoint
    other['adapter_model.safetensors'] = buildSafetensors([
      { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: aValues },
      { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: b2 },
    ]);
    const later = temp.make(other);
    const dry = (adapters: string[]) => runCli(['merge', '--dry-run', '--base', join(baseDir, 'base.safetensors'), ...adapters.flatMap((a) => ['--adapter', a])]);
    expect(warnings((await dry([one, one])).stderr).join('\n')).toMatch(/is given twice: it is applied twice, weights 1 and 1 adding up to 2/);
    expect(warnings((await dry([one, copy])).stderr).join('\n')).toMatch(/is the same adapter as .*identical files/);
    expect(warnings((await dry([one, later])).stderr)).toEqual([]);
  });

  it('reads --weight as a plain decimal only', async () => {
    for (const weight of ['0x10', '0b1', '1_0', ' 2', 'Infinity']) {
      const run = await runCli(['merge', '--base', 'b', '--adapter', 'a', '--weight', weight, '--out', 'o']);
      expect(run.code, weight).toBe(2);
      expect(errorLines(run.stderr)[0]).toMatch(/--weight .* is not a finite decimal number/);
    }
  });
  it('refuses an option given twice instead of taking the last one', () => {
    // --dtype, --backend (every command) and resize's and extract's --out took the last value silently:
    // `resize --out a --out b` wrote b.
    const cases: [string[], string][] = [
      [['merge', '--base', 'b', '--adapter', 'a', '--out', 'o', '--dtype', 'f16', '--dtype', 'bf16'], '--dtype'],
      [['merge', '--base', 'b', '--adapter', 'a', '--out', 'o', '--backend', 'cpu', '--backend', 'webgpu'], '--backend'],
      [['sample', '--backend', 'cpu', '--backend', 'auto'], '--backend'],
      [['combine', '--adapter', 'a', '--adapter', 'b', '--method', 'cat', '--out', 'o', '--backend', 'cpu', '--backend', 'cpu'], '--backend'],
      [['resize', '--adapter', 'a', '--rank', '2', '--out', 'o1', '--out', 'o2'], '--out'],
      [['resize', '--adapter', 'a', '--rank', '2', '--out', 'o', '--backend', 'cpu', '--backend', 'webgpu'], '--backend'],
      [['extract', '--base', 'b', '--tuned', 't', '--rank', '2', '--out', 'o1', '--out', 'o2'], '--out'],
      [['extract', '--base', 'b', '--tuned', 't', '--rank', '2', '--out', 'o', '--backend', 'webgpu', '--backend', 'cpu'], '--backend'],
    ];
    for (const [argv, option] of cases) expect(() => parseCommandLine(argv), argv.join(' ')).toThrow(`${option} given twice (see loramerge --help)`);
    expect(parseCommandLine(['resize', '--adapter', 'a', '--rank', '2', '--out', 'o', '--backend', 'cpu'])).toMatchObject({ out: 'o', backend: 'cpu' });
    expect(parseCommandLine(['merge', '--base', 'b', '--adapter', 'a', '--out', 'o'])).toMatchObject({ backend: 'auto', dtype: undefined });
  });

  it('refuses a finite --weight whose product with a module\'s α/r is past float64, at the plan', async () => {
    // 1e308 × α/r 2 is Infinity: the plan listed scale=Infinity and the merge failed in the kernel's
    // checks, naming neither the adapter nor the weight.
    expectRefused(await merge(base(), adapter(), ['--weight', '1e308']),
      /: module "model\.layers\.0\.self_attn\.q_proj": its scale 2 times the weight 1e\+308 is past float64; use a smaller --weight$/);
    const baseDir = temp.make({ 'base.safetensors': buildSafetensors(base()) });
    const dry = await runCli(['merge', '--dry-run', '--base', join(baseDir, 'base.safetensors'), '--adapter', temp.make(adapter()), '--weight', '-1e308']);
    expect(dry.code).toBe(1);
    expect(errorLines(dry.stderr)).toEqual([expect.stringMatching(/its scale 2 times the weight -1e\+308 is past float64/)]);
  });
});

describe('config values are quoted as read', () => {
  it('a number past float64 is Infinity, not null, a long value is cut at 80 characters, a byte-order mark is named', () => {
    // Python's json reads 1e400 as inf, and so does JSON.parse; JSON.stringify then showed it as null.
    const refusal = (config: string) => {
      try {
        parsePeftConfig(config, 'adapter_config.json');
      } catch (e) {
        return (e as Error).message;
      }
      return undefined;
    };
    const peft = (fields: string) => `{"peft_type": "LORA", "task_type": "CAUSAL_LM", ${fields}, "target_modules": ["q_proj", "v_proj"]}`;
    expect(refusal(peft('"r": 16, "lora_alpha": 1e400'))).toBe('adapter_config.json: "lora_alpha" must be a number, got Infinity');
    expect(refusal(peft('"r": -1e999, "lora_alpha": 32'))).toBe('adapter_config.json: "r" must be a positive integer, got -Infinity');
    expect(refusal(peft('"r": 16, "lora_alpha": 32, "alpha_pattern": {"model.layers.0.self_attn.q_proj": 1e400}')))
      .toBe('adapter_config.json: alpha_pattern["model.layers.0.self_attn.q_proj"] must be a number, got Infinity');
    // Saved by an editor that writes a byte-order mark: Python's json.load raises "Unexpected UTF-8 BOM".
    expect(refusal(`\ufeff${peft('"r": 16, "lora_alpha": 32')}`)).toBe('adapter_config.json: starts with a byte-order mark (U+FEFF), which Python\'s json (PEFT, transformers) refuses; save it as UTF-8 without one');
    const long = Array.from({ length: 10_000 }, (_, i) => i);
    expect(refusal(peft(`"r": ${JSON.stringify(long)}, "lora_alpha": 32`))).toBe(`adapter_config.json: "r" must be a positive integer, got ${JSON.stringify(long).slice(0, 80)}…`);
  });
});

describe('diffusers\' lora_adapter_metadata', () => {
  it('refuses an α past float64 instead of merging with α = r', () => {
    // Each component's fields went back through JSON text, where Infinity is written as null: the α
    // counted as absent and the file merged at α/r = 1 with exit 0. diffusers' scale would be inf.
    const metadata = { format: 'pt', lora_adapter_metadata: '{"unet.r": 4, "unet.lora_alpha": 1e400, "unet.target_modules": ["to_k", "to_q", "to_v", "to_out.0"], "unet.use_dora": false}' };
    expect(() => DiffusersLoraMetadata.parse('pytorch_lora_weights.safetensors', metadata))
      .toThrow('pytorch_lora_weights.safetensors: metadata "lora_adapter_metadata" (unet): "lora_alpha" must be a number, got Infinity');
    const finite = DiffusersLoraMetadata.parse('pytorch_lora_weights.safetensors', { ...metadata, lora_adapter_metadata: metadata.lora_adapter_metadata.replace('1e400', '8') });
    expect(finite!.alphaFor('unet', 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q')).toEqual({ alpha: 8, rsLora: false });
  });
});

describe('no regex from a config can hang', () => {
  const evil = { alpha_pattern: { '((.*)*)*z': 1, '(a|aa)+$': 3 }, rank_pattern: { '(.*a){25}': 4 } };

  it('merges, plans and inspects with catastrophic patterns, matching them as PEFT does', async () => {
    const tensors = base();
    const run = await merge(tensors, adapter(evil));
    expect(run.code, run.stderr).toBe(0);
    // No pattern matches q_proj: alpha stays 4 and r 2, so W' = W + 2·B·A (float64 truth; f32 output
    // accumulated in f32, so within a few f32 rounding steps of the terms' magnitude).
    const w = decodeSafetensors(buildSafetensors(tensors)).tensors.get(`${q}.weight`)!.values;
    const merged = decodeSafetensors(new Uint8Array(readFileSync(run.out))).tensors.get(`${q}.weight`)!.values;
    for (let o = 0; o < d; o++) {
      for (let i = 0; i < d; i++) {
        let delta = 0;
        let size = Math.abs(w[o * d + i]);
        for (let k = 0; k < r; k++) {
          const term = roundForDType(bValues[o * r + k], 'F32') * roundForDType(aValues[k * d + i], 'F32');
          delta += term;
          size += 2 * Math.abs(term);
        }
        const exact = w[o * d + i] + 2 * delta;
        expect(Math.abs(merged[o * d + i] - exact)).toBeLessThanOrEqual(4 * 2 ** -24 * size);
      }
    }
    const baseDir = temp.make({ 'base.safetensors': buildSafetensors(tensors) });
    const adapterDir = temp.make(adapter(evil));
    const dry = await runCli(['merge', '--dry-run', '--base', join(baseDir, 'base.safetensors'), '--adapter', adapterDir]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/q_proj LoRA r=2 scale=2/);
    const inspect = await runCli(['inspect', adapterDir]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(/q_proj {2}r=2 α=4 scale=2/);
  });

  it('refuses a pattern that has no linear-time match (lookaround, backreference), naming it', async () => {
    const run = await merge(base(), adapter({ rank_pattern: { '(q)_pro\\1': 2 } }));
    expectRefused(run, /adapter_config\.json: rank_pattern key "\(q\)_pro\\1" is not a pattern this tool can match safely/);
  });
});

describe('names from files are shown, not obeyed', () => {
  // A tensor name may hold any string. These were written to the terminal as they are: the escape
  // sequence retitled it (OSC 0) and the bell rang, the carriage return hid the line's start, and the
  // newline started a line of stderr of the name's choosing.
  const injected = '\nerror: all is well\x1b]0;owned\x07\r\x1b[2K\u202e';
  const shown = '\\u000aerror: all is well\\u001b]0;owned\\u0007\\u000d\\u001b[2K\\u202e';
  const raw = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]/;

  it('in an error, a warning, inspect and the dry-run plan', async () => {
    const k = `model.layers.0.self_attn.k_proj${injected}`;
    const normValues = randomValues(d, rand);
    normValues[2] = NaN;
    const tensors = base();
    tensors[2] = { ...tensors[2], name: `model.norm${injected}.weight`, data: normValues };
    const baseDir = temp.make({ 'base.safetensors': buildSafetensors(tensors) });
    // A LoRA factor's name has no line break (PEFT's key pattern stops at one, and at a carriage return).
    const q2 = 'model.layers.0.self_attn.q_proj\x1b]0;owned\x07\u202e';
    const dryBase = temp.make({ 'base.safetensors': buildSafetensors([{ name: `${q2}.weight`, dtype: 'F32', shape: [d, d], data: randomValues(d * d, rand) }]) });
    const dryAdapter = temp.make({
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4 }),
      'adapter_model.safetensors': buildSafetensors([
        { name: `base_model.model.${q2}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: aValues },
        { name: `base_model.model.${q2}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: bValues },
      ]),
    });
    const [refused, copied, inspect, dry] = await Promise.all([
      merge(base(), adapter({}, [
        { name: `base_model.model.${k}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: aValues },
        { name: `base_model.model.${k}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: bValues },
      ])),
      merge(tensors, adapter()),
      runCli(['inspect', join(baseDir, 'base.safetensors')]),
      runCli(['merge', '--dry-run', '--base', join(dryBase, 'base.safetensors'), '--adapter', dryAdapter]),
    ]);

    expect(refused.stderr).not.toMatch(raw);
    expectRefused(refused, /tensor "base_model\.model\.model\.layers\.0\.self_attn\.k_proj\\u000aerror: all is well\\u001b\]0;owned\\u0007\\u000d\\u001b\[2K\\u202e\.lora_A\.weight" is neither a LoRA factor/);

    expect(copied.code, copied.stderr).toBe(0);
    expect(copied.stderr).not.toMatch(raw);
    expect(errorLines(copied.stderr)).toEqual([]);
    expect(warnings(copied.stderr)).toEqual([expect.stringContaining('copied as it is: model.norm; error: all is well\\u001b]0;owned\\u0007\\u000d\\u001b[2K\\u202e.weight (1 value)')]);
    // The output keeps the name as it is.
    expect([...decodeSafetensors(new Uint8Array(readFileSync(copied.out))).tensors.keys()]).toContain(`model.norm${injected}.weight`);

    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).not.toMatch(raw);
    expect(inspect.stdout).toContain(`\n    model.norm${shown}.weight [12] F32 48 B\n`);

    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout + dry.stderr).not.toMatch(raw);
    const shown2 = 'model.layers.0.self_attn.q_proj\\u001b]0;owned\\u0007\\u202e';
    expect(dry.stdout + dry.stderr).toContain(`  ${shown2}.weight [12×12] out-in ← ${shown2} LoRA r=2 scale=2\n`);
  });
});

describe('malformed files and paths are refused by name', () => {
  const aName = `base_model.model.${q}.lora_A.weight`;
  const bName = `base_model.model.${q}.lora_B.weight`;
  /** The adapter's file with its header text edited (offsets stay right: only numbers' spelling changes). */
  function editedAdapter(edit: (header: string) => string): Record<string, string | Uint8Array> {
    const header = {
      [aName]: { dtype: 'F32', shape: [r, d], data_offsets: [0, 4 * r * d] },
      [bName]: { dtype: 'F32', shape: [d, r], data_offsets: [4 * r * d, 8 * r * d] },
    };
    const data = new Uint8Array(new Float32Array([...aValues, ...bValues]).buffer);
    return { ...adapter(), 'adapter_model.safetensors': buildRawSafetensors(edit(JSON.stringify(header)), data) };
  }

  it('a config that is not UTF-8, naming the file and the first bad byte; a tensor name likewise', async () => {
    // Python's json.load raises UnicodeDecodeError on it; it was read with U+FFFD in place of 0xff.
    const text = new TextEncoder().encode(JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4, base_model_name_or_path: 'ab' }));
    const at = text.indexOf(0x61); // the "a" of "ab"
    text[at] = 0xff;
    const config = await merge(base(), { ...adapter(), 'adapter_config.json': text });
    expectRefused(config, new RegExp(`adapter_config\\.json: is not valid UTF-8 \\(byte 0xff at offset ${at}\\), which Python's json \\(PEFT, transformers\\) refuses; save it as UTF-8$`));
    expect(config.code).toBe(1);
    // The same rule through the library, for files handed over as bytes: the byte named is the one
    // that starts the bad sequence (0xc3, whose continuation "(" is not one), as Python names it.
    const files = memoryInputFileSet({ 'config.json': new Uint8Array([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]) }, 'model');
    await expect(files.readText('config.json')).rejects.toThrow('model/config.json: is not valid UTF-8 (byte 0xc3 at offset 2)');
    // An overlong "/" (0xc0 0xaf) in a tensor name: the safetensors format requires UTF-8 JSON.
    const header = new TextEncoder().encode(JSON.stringify({ 'q.weight': { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }));
    const slash = header.indexOf(0x2e); // the "." of "q.weight"
    const bytes = new Uint8Array([...header.subarray(0, slash), 0xc0, 0xaf, ...header.subarray(slash + 1)]);
    // buildRawSafetensors writes its header as UTF-8, so these bytes go in by hand.
    const raw = new Uint8Array(8 + bytes.length + 4);
    new DataView(raw.buffer).setBigUint64(0, BigInt(bytes.length), true);
    raw.set(bytes, 8);
    await expect(openModel(memoryInputFileSet({ 'model.safetensors': raw }, 'm'))).rejects.toThrow(`m/model.safetensors: header is not valid UTF-8 (byte 0xc0 at offset ${8 + slash}), which the safetensors format requires`);
  });

  it('a GGUF tensor name that is not UTF-8, by the first bad byte; a name that holds U+FFFD itself is read', async () => {
    // @huggingface/gguf decodes names leniently: 0xff became U+FFFD, and an output would have had the
    // name changed. A three-byte sequence cut short (0xe2 0x82, then "n") became one U+FFFD of three bytes.
    const build = (name: string) => buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }]],
      tensors: [{ name, type: 'F32', ne: [4], data: tensorData('F32', [1, 2, 3, 4]) }],
    });
    const badByte = build('blk.0.attn_q.weighX');
    const atX = badByte.lastIndexOf(0x58);
    badByte[atX] = 0xff;
    const cut = build('blk.0.attn_q.XYn');
    const atCut = cut.lastIndexOf(0x58);
    cut.set([0xe2, 0x82], atCut);
    await expect(openGguf(bytesSource(badByte, 'lora.gguf'))).rejects.toThrow(`lora.gguf: a tensor name is not valid UTF-8 (byte 0xff at offset ${atX}), which GGUF strings must be`);
    await expect(openGguf(bytesSource(cut, 'lora.gguf'))).rejects.toThrow(`lora.gguf: a tensor name is not valid UTF-8 (byte 0xe2 at offset ${atCut}), which GGUF strings must be`);
    const file = await openGguf(bytesSource(build('blk.0.attn_q.\ufffd'), 'lora.gguf'));
    expect(file.tensors.map((t) => t.name)).toEqual(['blk.0.attn_q.\ufffd']);
  });

  it('a shape or offset written 8.0, 8e0 or -0, which the reference reader refuses, naming the tensor and the field', async () => {
    const runs = await Promise.all([
      merge(base(), editedAdapter((h) => h.replace(`"shape":[${r},${d}]`, `"shape":[${r}.0,${d}]`))),
      merge(base(), editedAdapter((h) => h.replace('"data_offsets":[0,', '"data_offsets":[0.0,'))),
      merge(base(), editedAdapter((h) => h.replace(`"shape":[${d},${r}]`, `"shape":[${d},${r}e0]`))),
      merge(base(), editedAdapter((h) => h.replace('"data_offsets":[0,', '"data_offsets":[-0,'))),
    ]);
    const why = 'not an unsigned integer (the safetensors reference reader refuses a sign, fraction or exponent: write it as digits)';
    expectRefused(runs[0], new RegExp(`tensor "${aName}": "shape" holds 2\\.0, ${escape(why)}$`));
    expectRefused(runs[1], new RegExp(`tensor "${aName}": "data_offsets" holds 0\\.0, ${escape(why)}$`));
    expectRefused(runs[2], new RegExp(`tensor "${bName}": "shape" holds 2e0, ${escape(why)}$`));
    expectRefused(runs[3], new RegExp(`tensor "${aName}": "data_offsets" holds -0, ${escape(why)}$`));
  });

  it('an offset past 2^53 is quoted as written, not as a double rounds it', async () => {
    const run = await merge(base(), editedAdapter((h) => h.replace(`"data_offsets":[${4 * r * d},${8 * r * d}]`, `"data_offsets":[${4 * r * d},9007199254740993]`)));
    expectRefused(run, new RegExp(`tensor "${bName}": "data_offsets" holds 9007199254740993, larger than 2\\^53`));
  });

  it('3-D LoRA factors on a Linear, and a 3-D lora_B beside a 2-D lora_A, are no layer\'s', async () => {
    // A Conv1d's pair, lora_A (r, in, 1) and lora_B (out, r, 1), fits no layer with a 2-D weight:
    // PEFT's Linear lora_A is (r, in).
    const files = adapter();
    files['adapter_model.safetensors'] = buildSafetensors([
      { name: aName, dtype: 'F32', shape: [r, d, 1], data: aValues },
      { name: bName, dtype: 'F32', shape: [d, r, 1], data: bValues },
    ]);
    expectRefused(await merge(base(), files), /module "model\.layers\.0\.self_attn\.q_proj": ΔW \(12, 12, 1\) does not fit base model\.layers\.0\.self_attn\.q_proj\.weight \(12, 12\): 3-D factors fit no layer with a 2-D weight/);
    // lora_B (out, r, 1) beside a 2-D lora_A: no layer's pair either.
    files['adapter_model.safetensors'] = buildSafetensors([
      { name: aName, dtype: 'F32', shape: [r, d], data: aValues },
      { name: bName, dtype: 'F32', shape: [d, r, 1], data: bValues },
    ]);
    expectRefused(await merge(base(), files), /module "model\.layers\.0\.self_attn\.q_proj": lora_B \(12, 2, 1\) does not fit lora_A \(2, 12\) \(expected \(out, 2\)\)$/);
    // The same pair in kohya's form.
    const k = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const unet = temp.make({ 'unet.safetensors': buildSafetensors([{ name: 'down_blocks.0.attentions.0.proj_in.weight', dtype: 'F32', shape: [d, d], data: randomValues(d * d, rand) }]) });
    const kohya = temp.make({ 'lora.safetensors': buildSafetensors([
      { name: `${k}.lora_down.weight`, dtype: 'F32', shape: [r, d], data: aValues },
      { name: `${k}.lora_up.weight`, dtype: 'F32', shape: [d, r, 1], data: bValues },
    ]) });
    const outDir = temp.make();
    const run = await runCli(['merge', '--base', join(unet, 'unet.safetensors'), '--adapter', join(kohya, 'lora.safetensors'), '--out', join(outDir, 'm.safetensors'), '--backend', 'cpu']);
    expectRefused({ ...run, outDir, out: join(outDir, 'm.safetensors') }, new RegExp(`up ${k}\\.lora_up\\.weight \\(12, 2, 1\\) does not fit down ${k}\\.lora_down\\.weight \\(2, 12\\)`));
  });

  it('a kohya .alpha that is Inf or NaN, naming the value', async () => {
    const k = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const unet = temp.make({ 'unet.safetensors': buildSafetensors([{ name: 'down_blocks.0.attentions.0.proj_in.weight', dtype: 'F32', shape: [d, d], data: randomValues(d * d, rand) }]) });
    const runs = await Promise.all([Infinity, NaN].map((alpha) => {
      const dir = temp.make({ 'lora.safetensors': buildSafetensors([
        { name: `${k}.lora_down.weight`, dtype: 'F32', shape: [r, d], data: aValues },
        { name: `${k}.lora_up.weight`, dtype: 'F32', shape: [d, r], data: bValues },
        { name: `${k}.alpha`, dtype: 'F32', shape: [], data: [alpha] },
      ]) });
      const outDir = temp.make();
      return runCli(['merge', '--base', join(unet, 'unet.safetensors'), '--adapter', join(dir, 'lora.safetensors'), '--out', join(outDir, 'm.safetensors'), '--backend', 'cpu'])
        .then((result) => ({ ...result, outDir, out: join(outDir, 'm.safetensors') }));
    }));
    expectRefused(runs[0], new RegExp(`module "${k}" has an alpha that is not one finite number: ${k}\\.alpha is F32 \\(\\) holding Infinity$`));
    expectRefused(runs[1], new RegExp(`module "${k}" has an alpha that is not one finite number: ${k}\\.alpha is F32 \\(\\) holding NaN$`));
  });

  it('a FIFO, a socket, a character device or a folder where a file belongs is named for what it is, not read', async () => {
    const dir = temp.make();
    const fifo = join(dir, 'adapter.safetensors');
    execFileSync('mkfifo', [fifo]);
    // A Unix socket listening as the base: opening it would fail (ENXIO) or, read as a stream, hang.
    const socketPath = join(temp.make(), 'base.safetensors');
    const server = createServer();
    await new Promise<void>((done) => server.listen(socketPath, done));
    const baseDir = temp.make({ 'base.safetensors': buildSafetensors(base()) });
    // A FIFO inside an adapter folder was skipped, and the folder then read as having no weights.
    const folder = temp.make(adapter());
    const inFolder = join(folder, 'extra.safetensors');
    execFileSync('mkfifo', [inFolder]);
    // A folder named adapter_config.json: the config read as missing.
    const { 'adapter_config.json': _, ...weights } = adapter();
    const configFolder = temp.make({ ...weights, 'adapter_config.json/.keep': '' });
    const outDir = temp.make();
    const out = join(outDir, 'm.safetensors');
    const runs = await Promise.all([
      runCli(['merge', '--base', join(baseDir, 'base.safetensors'), '--adapter', fifo, '--out', out]),
      runCli(['merge', '--base', '/dev/zero', '--adapter', folder, '--out', out]),
      runCli(['merge', '--base', join(baseDir, 'base.safetensors'), '--adapter', folder, '--out', out]),
      runCli(['merge', '--base', join(baseDir, 'base.safetensors'), '--adapter', configFolder, '--out', out]),
      runCli(['merge', '--base', socketPath, '--adapter', folder, '--out', out]),
    ]).finally(() => server.close());
    const lines = runs.map((run) => {
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(errorLines(run.stderr)).toHaveLength(1);
      return errorLines(run.stderr)[0];
    });
    expect(lines[0]).toBe(`error: ${fifo}: is a FIFO (named pipe), not a regular file or folder; give the model's or adapter's file or folder`);
    expect(lines[1]).toBe(`error: /dev/zero: is a character device, not a regular file or folder; give the model's or adapter's file or folder`);
    expect(lines[2]).toBe(`error: ${inFolder}: is a FIFO (named pipe), not a regular file; give the model's or adapter's file or folder`);
    expect(lines[3]).toBe(`error: ${join(configFolder, 'adapter_config.json')}: is a folder, not a regular file; give the model's or adapter's file or folder`);
    expect(lines[4]).toBe(`error: ${socketPath}: is a socket, not a regular file or folder; give the model's or adapter's file or folder`);
    expect(listDir(outDir)).toEqual([]);
  }, 20_000);

  it('an input folder past MAX_INPUT_FILES files or MAX_INPUT_DEPTH levels is refused in one line naming the limit and what to do', async () => {
    // 10 001 files: a home folder or a whole cache given for the adapter.
    const many = temp.make(adapter());
    for (let i = 0; i < 10_000; i++) writeFileSync(join(many, `f${i}.txt`), '');
    // A link to its own folder: a loop that nests for ever.
    const loop = temp.make(adapter());
    symlinkSync('.', join(loop, 'again'));
    const baseFile = join(temp.make({ 'base.safetensors': buildSafetensors(base()) }), 'base.safetensors');
    const outDir = temp.make();
    const runs = await Promise.all([many, loop].map((folder) =>
      runCli(['merge', '--base', baseFile, '--adapter', folder, '--out', join(outDir, 'm.safetensors')])));
    const lines = runs.map((run) => {
      expect(run.code, run.stderr).toBe(2);
      expect(errorLines(run.stderr)).toHaveLength(1);
      return errorLines(run.stderr)[0];
    });
    expect(lines[0]).toBe(`error: ${many}: more than 10000 files (the limit MAX_INPUT_FILES); point at the model's own folder`);
    expect(lines[1]).toBe(`error: ${loop}: folders nest deeper than 8 levels (the limit MAX_INPUT_DEPTH; a link loop?); point at the model's own folder`);
    expect(listDir(outDir)).toEqual([]);
  }, 30_000);

  it('--out in a folder that does not exist is a usage error (exit 2)', async () => {
    const outDir = temp.make();
    const out = join(outDir, 'missing', 'm.safetensors');
    const refused = await runCli(['merge', '--base', join(temp.make({ 'base.safetensors': buildSafetensors(base()) }), 'base.safetensors'), '--adapter', temp.make(adapter()), '--out', out, '--backend', 'cpu']);
    expect(refused.code, refused.stderr).toBe(2);
    expect(errorLines(refused.stderr)).toEqual([`error: ${out}: folder ${join(outDir, 'missing')} does not exist; create it or choose another --out`]);
    expect(listDir(outDir)).toEqual([]);
  });

  it('--dry-run with an --out in a folder that does not exist says so as the real run would (exit 2), and prints no plan', async () => {
    const outDir = temp.make({ 'a-file': 'x' });
    const inputs = [join(temp.make({ 'base.safetensors': buildSafetensors(base()) }), 'base.safetensors'), temp.make(adapter())];
    for (const [out, folder, why] of [
      [join(outDir, 'missing', 'm.safetensors'), join(outDir, 'missing'), 'does not exist'],
      [join(outDir, 'a-file', 'm.safetensors'), join(outDir, 'a-file'), 'is not a folder'],
    ]) {
      const dry = await runCli(['merge', '--dry-run', '--base', inputs[0], '--adapter', inputs[1], '--out', out]);
      expect(dry.code, dry.stderr).toBe(2);
      expect(errorLines(dry.stderr)).toEqual([`error: ${out}: folder ${folder} ${why}; create it or choose another --out`]);
      expect(dry.stdout).toBe('');
    }
    // Without --out a dry run has no output to check, and plans as before.
    const planned = await runCli(['merge', '--dry-run', '--base', inputs[0], '--adapter', inputs[1]]);
    expect(planned.code, planned.stderr).toBe(0);
    expect(listDir(outDir)).toEqual(['a-file']);
  });

  it('an --out whose folder is missing or a file is refused before any input is read or the plan printed (merge, combine, resize, extract)', async () => {
    const outDir = temp.make({ 'a-file': 'x' });
    const inputs = temp.make({ 'base.safetensors': buildSafetensors(base()), ...Object.fromEntries(Object.entries(adapter()).map(([k, x]) => [`lora/${k}`, x])) });
    const good = { base: join(inputs, 'base.safetensors'), lora: join(inputs, 'lora') };
    // An input that does not exist: named first if it were read before --out's folder was looked at.
    const gone = join(inputs, 'gone');
    for (const [out, folder, why] of [
      [join(outDir, 'missing', 'm.safetensors'), join(outDir, 'missing'), 'does not exist'],
      [join(outDir, 'a-file', 'm.safetensors'), join(outDir, 'a-file'), 'is not a folder'],
      [join(outDir, 'missing', 'sub') + '/', join(outDir, 'missing'), 'does not exist'],
    ]) {
      for (const args of [
        ['merge', '--base', good.base, '--adapter', good.lora],
        ['merge', '--base', gone, '--adapter', gone],
        ['combine', '--adapter', gone, '--method', 'cat'],
        ['resize', '--adapter', gone, '--rank', '1'],
        ['extract', '--base', gone, '--tuned', gone, '--rank', '1'],
      ]) {
        const run = await runCli([...args, '--out', out, '--backend', 'cpu']);
        expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(2);
        // The one line is the whole of stderr: no plan, no note, no warning before it.
        expect(run.stderr, args.join(' ')).toBe(`error: ${out}: folder ${folder} ${why}; create it or choose another --out\n`);
      }
    }
    expect(listDir(outDir)).toEqual(['a-file']);
  });

  it('merge() and combineLoras from loramerge/node refuse an out whose folder is missing before reading a source, naming out', async () => {
    const node = await import('../src/node.js');
    const outDir = temp.make();
    const out = join(outDir, 'missing', 'm.safetensors');
    const gone = join(outDir, 'gone');
    const merged = await node.merge({ base: gone, adapters: [join(outDir, 'gone too')], out, backend: 'cpu' }).catch((e: unknown) => e as MergeError);
    expect(merged).toMatchObject({ code: 'BAD_ARGUMENT', message: `${out}: folder ${join(outDir, 'missing')} does not exist; create it or choose another out` });
    const combined = await node.combineLoras({ adapters: [gone], method: 'cat', out, backend: 'cpu' }).catch((e: unknown) => e as MergeError);
    expect(combined).toMatchObject({ code: 'BAD_ARGUMENT', message: `${out}: folder ${join(outDir, 'missing')} does not exist; create it or choose another out` });
    expect(listDir(outDir)).toEqual([]);
  });

  it('an --out in a folder this user may not write in is refused before any input is read (where permissions bind this user)', async () => {
    const outDir = temp.make({ 'locked/.keep': '' });
    const locked = join(outDir, 'locked');
    execFileSync('chmod', ['555', locked]);
    const out = join(locked, 'm.safetensors');
    const run = await runCli(['merge', '--base', join(outDir, 'gone'), '--adapter', join(outDir, 'gone'), '--out', out, '--backend', 'cpu']);
    execFileSync('chmod', ['755', locked]);
    // Root writes in any folder: the missing input is then what is refused.
    if (process.getuid?.() === 0) return void expect(run.code).toBe(1);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stderr).toBe(`error: ${out}: permission denied while checking that its folder can be written (EACCES); check the permissions of the folder or choose another --out\n`);
  });

  it('null for lora_alpha, r or a pattern table, which PEFT cannot load, is refused rather than taken for unset', () => {
    // LoraConfig.from_pretrained passes None on; update_layer then computes `lora_alpha / r` (TypeError).
    const refusal = (fields: Record<string, unknown>) => {
      try {
        parsePeftConfig(JSON.stringify({ peft_type: 'LORA', r: 16, lora_alpha: 32, ...fields }), 'adapter_config.json');
      } catch (e) {
        return (e as Error).message;
      }
      return undefined;
    };
    expect(refusal({ lora_alpha: null })).toBe('adapter_config.json: "lora_alpha" is null, which PEFT cannot load (`lora_alpha / r` raises TypeError); give a number or leave the field out for PEFT\'s default');
    expect(refusal({ r: null })).toBe('adapter_config.json: "r" is null, which PEFT cannot load (`r <= 0` raises TypeError); give a number or leave the field out for PEFT\'s default');
    expect(refusal({ alpha_pattern: null })).toBe('adapter_config.json: "alpha_pattern" is null, which PEFT cannot load (`alpha_pattern.keys()` raises AttributeError); give an object or leave the field out for PEFT\'s default');
    expect(refusal({ rank_pattern: null })).toContain('"rank_pattern" is null');
    // Left out, each takes PEFT's default.
    expect(refusal({ lora_alpha: undefined, rank_pattern: undefined })).toBeUndefined();
  });

  it('a library error quoting a crafted name is bounded and its control characters escaped', async () => {
    // An embedder shows err.message as it is: a 4 KB tensor name with escape sequences was in it raw.
    const name = `model.\x1b]0;owned\x07${'x'.repeat(4055)}\r\u202e.weight`;
    const file = buildRawSafetensors(JSON.stringify({ [name]: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }), new Uint8Array(4));
    const error = await openModel(memoryInputFileSet({ 'model.safetensors': file }, 'm')).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MergeError);
    const message = (error as MergeError).message;
    expect(message).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
    expect(message.startsWith('m/model.safetensors: tensor "model.\\u001b]0;owned\\u0007xxx')).toBe(true);
    expect(message.endsWith('xxx\\u000d\\u202e.weight": unknown dtype "F33", which is no safetensors dtype: the file is damaged or not safetensors; download it again')).toBe(true);
    const full = `m/model.safetensors: tensor "${name.replace(/[\x1b\x07\r\u202e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}": unknown dtype "F33", which is no safetensors dtype: the file is damaged or not safetensors; download it again`;
    expect(message).toBe(`${full.slice(0, 3072)} […${full.length - 4096} characters left out…] ${full.slice(-1024)}`);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
