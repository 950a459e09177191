/**
 * Command-line refusals the argument fuzzer (fuzz-cli-args.test.ts) found, as plain cases: an empty
 * path, an unknown option, and the reports of combine/resize/extract reaching the caller's output.
 * Each runs the CLI's front end in-process, as an embedder or a test does.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCommandLine } from '../src/cli/run-cli.js';
import { listDir } from './helpers/cli.js';
import { buildSafetensors, randomValues, seededRandom, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

async function run(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCommandLine(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

const rand = seededRandom(7);
const module = 'model.layers.0.self_attn.q_proj';
const files = {
  'base.safetensors': buildSafetensors([{ name: `${module}.weight`, dtype: 'F32', shape: [6, 6], data: randomValues(36, rand) }]),
  'adapter/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2 }),
  'adapter/adapter_model.safetensors': buildSafetensors([
    { name: `base_model.model.${module}.lora_A.weight`, dtype: 'F32', shape: [2, 6], data: randomValues(12, rand) },
    { name: `base_model.model.${module}.lora_B.weight`, dtype: 'F32', shape: [6, 2], data: randomValues(12, rand) },
  ]),
};

describe('an empty path is a usage error naming its option', () => {
  // Before, each was looked up as a file named "" and refused with exit 1 as ": no such file or folder".
  it.each([
    [['merge', '--base', 'b.safetensors', '--adapter=', '--out', 'o.safetensors'], /^error: --adapter is empty; name an adapter file or folder/],
    [['merge', '--base=', '--adapter', 'a', '--out', 'o.safetensors'], /^error: --base is empty; name a model file or folder/],
    [['combine', '--adapter', '', '--method', 'cat', '--out', 'o.safetensors'], /^error: --adapter is empty/],
    [['resize', '--adapter=', '--rank', '1', '--out', 'o.safetensors'], /^error: --adapter is empty/],
    [['extract', '--base', 'b', '--tuned=', '--rank', '1', '--out', 'o.safetensors'], /^error: --tuned is empty; name a model file or folder/],
    [['extract', '--base=', '--tuned', 't', '--rank', '1', '--out', 'o.safetensors'], /^error: --base is empty/],
    [['inspect', ''], /^error: inspect's PATH is empty/],
  ])('%j', async (argv, message) => {
    const { code, err } = await run(argv);
    expect(code).toBe(2);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(message);
  });

  it('sample "" refuses instead of writing the sample into the current folder over its base/ and adapter/', async () => {
    const dir = temp.make({ 'base/notes.txt': 'mine', 'adapter/adapter_config.json': '{"mine": true}' });
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const { code, err } = await run(['sample', '']);
      expect(err.join('\n')).toMatch(/^error: sample's DIR is empty; name a new or empty folder/);
      expect(err).toHaveLength(1);
      expect(code).toBe(2);
    } finally {
      process.chdir(cwd);
    }
    expect(listDir(dir)).toEqual(['adapter', 'base']);
    expect(listDir(join(dir, 'base'))).toEqual(['notes.txt']);
    expect(readFileSync(join(dir, 'adapter', 'adapter_config.json'), 'utf8')).toBe('{"mine": true}');
  });
});

describe('an unknown option is named as typed, with what was likely meant', () => {
  // parseArgs' words advised putting it after `--` (which these commands refuse as a stray
  // argument), named `-base` as `-b`, and left a quote unclosed.
  it.each([
    [['merge', '--bse', 'x'], 'merge has no option --bse; did you mean --base?'],
    [['merge', '--Base', 'x'], 'merge has no option --Base; did you mean --base?'],
    [['merge', '-base', 'x'], 'merge has no option -base; did you mean --base?'],
    [['merge', '--dry_run'], 'merge has no option --dry_run; did you mean --dry-run?'],
    [['merge', '--weights=2'], 'merge has no option --weights; did you mean --weight?'],
    [['merge', '--method', 'cat'], 'merge has no option --method; it is an option of combine'],
    [['merge', '--rank', '3'], 'merge has no option --rank; it is an option of combine, resize and extract'],
    [['resize', '--tuned', 't'], 'resize has no option --tuned; it is an option of extract'],
    [['combine', '--adapters', 'a'], 'combine has no option --adapters; did you mean --adapter?'],
    [['merge', '-x'], 'merge has no option -x'],
    [['inspect', '-x'], 'inspect has no option -x; a PATH that starts with "-" goes after --'],
  ])('%j', async (argv, message) => {
    const { code, err } = await run(argv);
    expect(code).toBe(2);
    expect(err).toEqual([`error: ${message} (see loramerge --help)`]);
  });
});

describe("another tool's name for an option points to ours", () => {
  // `--output`, `--lora`, `--model`, `--scale`, `-o` are what users of kohya's, diffusers' and
  // PEFT's merge scripts type first; each was refused with no hint, being too far from our
  // spelling for the edit-distance check.
  it.each([
    [['merge', '--output', 'o.safetensors'], 'merge has no option --output; did you mean --out?'],
    [['merge', '-o', 'o.safetensors'], 'merge has no option -o; did you mean --out?'],
    [['merge', '--save_to', 'o.safetensors'], 'merge has no option --save_to; did you mean --out?'],
    [['merge', '--lora', 'a'], 'merge has no option --lora; did you mean --adapter?'],
    [['merge', '--model', 'b'], 'merge has no option --model; did you mean --base?'],
    [['merge', '--base_model', 'b'], 'merge has no option --base_model; did you mean --base?'],
    [['merge', '--scale', '0.8'], 'merge has no option --scale; did you mean --weight?'],
    [['merge', '--ratios', '0.8'], 'merge has no option --ratios; did you mean --weight?'],
    [['merge', '--save_precision', 'fp16'], 'merge has no option --save_precision; did you mean --dtype?'],
    [['merge', '--force'], 'merge has no option --force; did you mean --overwrite?'],
    // convert_hf_to_gguf's --outtype is merge's --dtype, and loramerge convert's own option: both said.
    [['merge', '--outtype', 'f16'], 'merge has no option --outtype; did you mean --dtype? (--outtype is an option of convert)'],
    [['combine', '--outtype', 'f16'], 'combine has no option --outtype; it is an option of convert'],
    [['merge', '--device', 'cpu'], 'merge has no option --device; did you mean --backend?'],
    [['combine', '--lora', 'a'], 'combine has no option --lora; did you mean --adapter?'],
    [['extract', '--model', 'b'], 'extract has no option --model; did you mean --base?'],
    // resize's --base is the GGUF model a .gguf --out is for.
    [['resize', '--model', 'b'], 'resize has no option --model; did you mean --base?'],
    // Only options the command has are pointed to: convert runs no products, and takes no --backend.
    [['convert', '--device', 'cpu'], 'convert has no option --device'],
  ])('%j', async (argv, message) => {
    const { code, err } = await run(argv);
    expect(code).toBe(2);
    expect(err).toEqual([`error: ${message} (see loramerge --help)`]);
  });
});

describe("combine's --method named as PEFT's add_weighted_adapter names it", () => {
  // `--method linear` and `--method ties_svd` (PEFT's combination_type values) got only the list.
  const list = 'cat, svd, ties, dare_linear, dare_ties, magnitude_prune';
  it.each([
    ['linear', `--method must be one of ${list}, not "linear"; PEFT's linear combines A and B separately (with cross terms) and is not offered: cat keeps the weighted sum exactly, svd brings it to a rank`],
    ['ties_svd', `--method must be one of ${list}, not "ties_svd"; PEFT's ties_svd is --method ties here (every rule ends with the SVD to --rank)`],
    ['dare_linear_svd', `--method must be one of ${list}, not "dare_linear_svd"; PEFT's dare_linear_svd is --method dare_linear here (every rule ends with the SVD to --rank)`],
    ['average', `--method must be one of ${list}, not "average"`],
  ])('%s', async (method, message) => {
    const { code, err } = await run(['combine', '--adapter', 'a', '--method', method, '--out', 'o']);
    expect(code).toBe(2);
    expect(err).toEqual([`error: ${message} (see loramerge --help)`]);
  });
});

describe("combine, resize and extract print their report to the caller's output", () => {
  // The report went to process.stdout whatever output runCommandLine was given.
  it.each([
    ['resize', (d: string) => ['resize', '--adapter', join(d, 'adapter'), '--rank', '1', '--out', join(d, 'r.safetensors'), '--backend', 'cpu']],
    ['combine', (d: string) => ['combine', '--adapter', join(d, 'adapter'), '--method', 'cat', '--out', join(d, 'c.safetensors'), '--backend', 'cpu']],
  ])('%s', async (_name, argv) => {
    const dir = temp.make(files);
    const { code, out, err } = await run(argv(dir));
    expect(code, err.join('\n')).toBe(0);
    expect(out.join('\n')).toMatch(/^module +rank +kept\n.*q_proj +[12] +\d+\.\d{4}%$/);
  });
});

describe('a line break in an output path is shown escaped: each report line stays one line', () => {
  // `--out $'a\nb'` printed "merged … into a" and "b: …" as two lines of stderr.
  it.each([
    ['merge', (d: string) => ['merge', '--base', join(d, 'base.safetensors'), '--adapter', join(d, 'adapter'), '--out', join(d, 'new\nline.safetensors'), '--backend', 'cpu'], /^merged 1 of 1 tensors into .*new\\u000aline\.safetensors: /],
    ['resize', (d: string) => ['resize', '--adapter', join(d, 'adapter'), '--rank', '1', '--out', join(d, 'peft\nout'), '--backend', 'cpu'], /^wrote 1 LoRA module to .*peft\\u000aout \(PEFT folder\)/],
  ])('%s', async (_name, argv, line) => {
    const dir = temp.make(files);
    const { code, err } = await run(argv(dir));
    expect(code, err.join('\n')).toBe(0);
    const lines = err.join('\n').split('\n');
    for (const l of lines) expect(l).toMatch(/^(base|adapter \d+|plan|backend|merged \d+|wrote \d+)[: ]/);
    expect(lines.filter((l) => line.test(l)), err.join('\n')).toHaveLength(1);
  });
});
