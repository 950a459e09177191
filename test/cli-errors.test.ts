/**
 * Every kind of broken input through the CLI: a non-zero exit, one `error:` line that names the
 * file, tensor or module at fault, no stack trace, and nothing at (or beside) --out.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../src/cli/args.js';
import { errorLines, expectOneLine, listDir, longMergeInputs, runCli, runCliActingAtStart } from './helpers/cli.js';
import { buildRawSafetensors, buildSafetensors, randomValues, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);
const tempDir = temp.make;

const rand = seededRandom(3);
const d = 12;
const r = 2;
const baseTensors: FixtureTensor[] = [
  { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F16', shape: [d, d], data: randomValues(d * d, rand) },
  { name: 'model.layers.0.self_attn.v_proj.weight', dtype: 'F16', shape: [d, d], data: randomValues(d * d, rand) },
];
const goodBase = buildSafetensors(baseTensors);
const config = JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'] });
function adapterTensors(module: string, inFeatures = d, values?: ArrayLike<number>): FixtureTensor[] {
  return [
    { name: `base_model.model.${module}.lora_A.weight`, dtype: 'F32', shape: [r, inFeatures], data: values ?? randomValues(r * inFeatures, rand) },
    { name: `base_model.model.${module}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: randomValues(d * r, rand) },
  ];
}
const goodAdapter = { 'adapter_config.json': config, 'adapter_model.safetensors': buildSafetensors(adapterTensors('model.layers.0.self_attn.q_proj')) };

interface Case {
  name: string;
  base?: Uint8Array;
  adapter?: Record<string, Uint8Array | string>;
  extraArgs?: string[];
  /** The error line must match this. */
  message: RegExp;
}

const nanValues = randomValues(r * d, rand);
nanValues[5] = NaN;
const cases: Case[] = [
  { name: 'empty base file', base: new Uint8Array(0), message: /base\.safetensors.*(empty|too small|shorter)/i },
  { name: 'truncated base file', base: goodBase.subarray(0, goodBase.byteLength - 7), message: /base\.safetensors/ },
  {
    name: 'header that lies about its length',
    base: (() => {
      const bytes = goodBase.slice();
      new DataView(bytes.buffer).setBigUint64(0, BigInt(bytes.byteLength * 4), true);
      return bytes;
    })(),
    message: /base\.safetensors/,
  },
  {
    name: 'header that is not JSON',
    base: buildRawSafetensors('{"a": [1, 2', new Uint8Array(8)),
    message: /base\.safetensors.*(JSON|header)/i,
  },
  {
    name: 'tensor whose size disagrees with its shape',
    base: buildRawSafetensors({ 'model.layers.0.self_attn.q_proj.weight': { dtype: 'F16', shape: [d, d], data_offsets: [0, 10] } }, new Uint8Array(10)),
    message: /base\.safetensors.*model\.layers\.0\.self_attn\.q_proj\.weight/,
  },
  {
    name: 'factor shapes that do not fit the base',
    adapter: { 'adapter_config.json': config, 'adapter_model.safetensors': buildSafetensors(adapterTensors('model.layers.0.self_attn.q_proj', d + 3)) },
    message: /model\.layers\.0\.self_attn\.q_proj/,
  },
  {
    name: 'unknown modules (all of them reported)',
    adapter: {
      'adapter_config.json': JSON.stringify({ ...JSON.parse(config), target_modules: ['q_proj', 'gate_proj'] }),
      'adapter_model.safetensors': buildSafetensors([...adapterTensors('model.layers.7.self_attn.q_proj'), ...adapterTensors('model.layers.0.mlp.gate_proj')]),
    },
    // The plan's list, one item after another on the error's one line.
    message: /^error: 2 problems in the merge plan: - [^;]*model\.layers\.7\.self_attn\.q_proj[^;]*; - [^;]*model\.layers\.0\.mlp\.gate_proj/,
  },
  {
    name: 'NaN in a factor',
    adapter: { 'adapter_config.json': config, 'adapter_model.safetensors': buildSafetensors(adapterTensors('model.layers.0.self_attn.q_proj', d, nanValues)) },
    message: /model\.layers\.0\.self_attn\.q_proj.*(finite|NaN)/i,
  },
  {
    name: 'broken adapter config',
    adapter: { 'adapter_config.json': '{"r": 2, "lora_alpha": ', 'adapter_model.safetensors': goodAdapter['adapter_model.safetensors'] },
    message: /adapter_config\.json/,
  },
  {
    name: 'config whose r disagrees with the factors',
    adapter: { 'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 5, lora_alpha: 4 }), 'adapter_model.safetensors': goodAdapter['adapter_model.safetensors'] },
    message: /q_proj.*rank|rank.*q_proj/i,
  },
  {
    name: 'pickle adapter',
    adapter: { 'adapter_config.json': config, 'adapter_model.bin': new Uint8Array([0x80, 0x02, 0x7d]) },
    message: /adapter_model\.bin.*pickle/i,
  },
  {
    name: 'single-file DoRA magnitude (PEFT form) of the wrong length',
    adapter: { 'adapter_model.safetensors': buildSafetensors([
      ...adapterTensors('model.layers.0.self_attn.q_proj').map((t) => ({ ...t, name: t.name.replace('base_model.model.', '') })),
      { name: 'model.layers.0.self_attn.q_proj.lora_magnitude_vector', dtype: 'F32', shape: [d + 1], data: randomValues(d + 1, rand) },
    ]) },
    message: /q_proj\.lora_magnitude_vector \(13\) should hold one value per output feature \(12\)/,
  },
  {
    name: 'a module with both LyCORIS\'s and PEFT\'s DoRA magnitudes',
    adapter: { 'adapter_model.safetensors': buildSafetensors([
      ...adapterTensors('model.layers.0.self_attn.q_proj').map((t) => ({ ...t, name: t.name.replace('base_model.model.', '') })),
      { name: 'model.layers.0.self_attn.q_proj.lora_magnitude_vector', dtype: 'F32', shape: [d], data: randomValues(d, rand) },
      { name: 'model.layers.0.self_attn.q_proj.dora_scale', dtype: 'F32', shape: [1, d], data: randomValues(d, rand) },
    ]) },
    message: /q_proj.*two DoRA magnitudes/,
  },
  { name: 'weight that is not a number', extraArgs: ['--weight', 'strong'], message: /--weight/ },
];

describe('broken input through the CLI', () => {
  it.each(cases)('$name', async (c) => {
    const baseDir = tempDir({ 'base.safetensors': c.base ?? goodBase });
    const adapterDir = tempDir(c.adapter ?? goodAdapter);
    const outDir = tempDir({});
    const out = join(outDir, 'merged.safetensors');
    const args = ['merge', '--base', join(baseDir, 'base.safetensors'), '--adapter', adapterDir, ...(c.extraArgs ?? []), '--out', out, '--backend', 'cpu'];
    const result = await runCli(args);
    expect(result.code, result.stderr).not.toBe(0);
    const lines = errorLines(result.stderr);
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(c.message);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(listDir(outDir)).toEqual([]); // nothing at --out, no temp file beside it
  });

  it('runs the same checks on WebGPU: NaN is caught on the GPU too', async () => {
    const baseDir = tempDir({ 'base.safetensors': goodBase });
    const adapterDir = tempDir(cases.find((c) => c.name === 'NaN in a factor')!.adapter!);
    const outDir = tempDir({});
    const result = await runCli(['merge', '--base', join(baseDir, 'base.safetensors'), '--adapter', adapterDir, '--out', join(outDir, 'm.safetensors'), '--backend', 'webgpu']);
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)[0]).toMatch(/model\.layers\.0\.self_attn\.q_proj.*(finite|NaN)/i);
    expect(listDir(outDir)).toEqual([]);
  });

  it('refuses an --out that is one of the inputs and leaves the input untouched', async () => {
    const baseDir = tempDir({ 'base.safetensors': goodBase });
    const adapterDir = tempDir(goodAdapter);
    const basePath = join(baseDir, 'base.safetensors');
    const result = await runCli(['merge', '--base', basePath, '--adapter', adapterDir, '--out', basePath]);
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)[0]).toMatch(/base\.safetensors/);
    expect(new Uint8Array(readFileSync(basePath))).toEqual(goodBase);
    expect(listDir(baseDir)).toEqual(['base.safetensors']);
    const into = await runCli(['merge', '--base', basePath, '--adapter', adapterDir, '--out', join(adapterDir, 'adapter_model.safetensors')]);
    expect(into.code).not.toBe(0);
    expect(errorLines(into.stderr)[0]).toMatch(/adapter_model\.safetensors/);
  });

  it('keeps an existing output folder unless --overwrite is given, then replaces it whole', async () => {
    const baseDir = tempDir({ 'model.safetensors': goodBase, 'config.json': '{}' });
    const adapterDir = tempDir(goodAdapter);
    const outDir = tempDir({ 'old-shard.safetensors': 'stale' });
    const refused = await runCli(['merge', '--base', baseDir, '--adapter', adapterDir, '--out', outDir, '--backend', 'cpu']);
    expect(refused.code).not.toBe(0);
    expect(errorLines(refused.stderr)[0]).toMatch(/not empty.*--overwrite/);
    expect(listDir(outDir)).toEqual(['old-shard.safetensors']);
    const replaced = await runCli(['merge', '--base', baseDir, '--adapter', adapterDir, '--out', outDir, '--backend', 'cpu', '--overwrite']);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(listDir(outDir)).toEqual(['config.json', 'model.safetensors']);
  });

  it('names a missing input', async () => {
    const outDir = tempDir({});
    const result = await runCli(['merge', '--base', join(outDir, 'nope.safetensors'), '--adapter', outDir, '--out', join(outDir, 'x.safetensors')]);
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)[0]).toMatch(/nope\.safetensors/);
    expect(listDir(outDir)).toEqual([]);
  });

  it('prints usage errors for a --weight without an adapter, and for two on one adapter (merge and combine)', async () => {
    for (const [args, message] of [
      [['merge', '--weight', '2', '--base', 'x', '--adapter', 'y', '--out', 'z'], /--weight must follow/],
      [['merge', '--base', 'x', '--adapter', 'y', '--weight', '2', '--weight', '3', '--out', 'z'], /adapter y has two --weight values/],
      [['combine', '--weight', '2', '--adapter', 'y', '--method', 'cat', '--out', 'z'], /--weight must follow/],
      [['combine', '--adapter', 'y', '--weight', '2', '--weight', '3', '--method', 'cat', '--out', 'z'], /adapter y has two --weight values/],
    ] as [string[], RegExp][]) {
      const result = await runCli(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(errorLines(result.stderr), args.join(' ')).toHaveLength(1);
      expect(errorLines(result.stderr)[0], args.join(' ')).toMatch(message);
    }
  });

  it('says how several weights are given when they come as a list or after the last adapter', async () => {
    // Other tools take `--ratios 1,0.5`; `--weight 1,0.5` was refused only as "not a finite
    // decimal number", and two --weight after the last --adapter without saying where they go.
    const how = 'each --weight belongs to the --adapter just before it (--adapter A --weight 1 --adapter B --weight 0.5)';
    for (const [args, message] of [
      [['merge', '--base', 'x', '--adapter', 'a', '--adapter', 'b', '--weight', '1,0.5', '--out', 'z'], `error: --weight "1,0.5" for adapter b is a list, and a --weight is one number: ${how} (see loramerge --help)`],
      [['combine', '--adapter', 'a', '--weight', '0.7 0.3', '--method', 'cat', '--out', 'z'], `error: --weight "0.7 0.3" for adapter a is a list, and a --weight is one number: ${how} (see loramerge --help)`],
      [['merge', '--base', 'x', '--adapter', 'a', '--adapter', 'b', '--weight', '1', '--weight', '0.5', '--out', 'z'], `error: adapter b has two --weight values: ${how} (see loramerge --help)`],
      [['merge', '--base', 'x', '--adapter', 'a', '--weight', '1,x', '--out', 'z'], 'error: --weight "1,x" for adapter a is not a finite decimal number (see loramerge --help)'],
    ] as [string[], string][]) {
      const result = await runCli(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(errorLines(result.stderr), args.join(' ')).toEqual([message]);
    }
  });
});

describe('usage', () => {
  it('shows the usage, exit 0, for --help or -h after any command, not for a --help after --', async () => {
    for (const command of ['merge', 'inspect', 'sample', 'combine', 'resize', 'extract']) {
      for (const flag of ['--help', '-h']) {
        const result = await runCli([command, '--base', 'x', flag]);
        expect(result.code, `${command} ${flag}: ${result.stderr}`).toBe(0);
        expect(result.stdout, `${command} ${flag}`).toMatch(/^usage:\n {2}loramerge merge --base PATH/);
        expect(result.stdout).toMatch(new RegExp(`^ {2}loramerge ${command} `, 'm'));
      }
    }
    const positional = await runCli(['inspect', '--', '--help']);
    expect(positional.code).not.toBe(0);
    expect(errorLines(positional.stderr)[0]).toMatch(/--help/);
  });

  it('a bare loramerge (no command) is a usage fault: the usage on stderr, nothing on stdout, exit 2', async () => {
    const bare = await runCli([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toMatch(/^usage:\n {2}loramerge merge --base PATH/);
    // Asked for, the usage is the result: stdout, exit 0.
    for (const asked of [['--help'], ['-h'], ['help']]) {
      const help = await runCli(asked);
      expect(help.code, asked[0]).toBe(0);
      expect(help.stderr, asked[0]).toBe('');
      expect(help.stdout, asked[0]).toMatch(/^usage:\n {2}loramerge merge --base PATH/);
    }
  });

  it('says what each command does and that an existing output file is replaced', async () => {
    // combine, resize and extract had a synopsis and no word on what they do; an existing --out
    // file is replaced without --overwrite, which the help did not say.
    const { stdout } = await runCli(['--help']);
    for (const command of ['inspect', 'sample', 'combine', 'resize', 'extract']) {
      expect(stdout, command).toMatch(new RegExp(`^ {2}${command} {2,}\\S`, 'm'));
    }
    expect(stdout).toMatch(/^ {2}combine {4}one adapter from several: cat .*\n.*\n.*need --density D/m);
    expect(stdout).toMatch(/^ {2}extract {4}a LoRA of the difference between a fine-tuned model \(--tuned\) and its --base/m);
    expect(stdout).toMatch(/--overwrite .*\n\s+an existing output file is replaced without it, also only on success/);
  });

  it('refuses a negative or malformed number for every numeric option in one line naming the option and its range, exit 2', async () => {
    // A value starting with "-" was Node's parseArgs refusal: "Option '--seed' argument is ambiguous."
    // And Number() took "0x1" as a density of 1.
    const combine = ['combine', '--adapter', 'a', '--method', 'ties', '--out', 'o'];
    const cases: [string[], string][] = [
      [[...combine, '--density', '0.5', '--seed', '-1'], '--seed must be an integer from 0 to 9007199254740991, not "-1"'],
      [[...combine, '--density', '0.5', '--seed', '1.5'], '--seed must be an integer from 0 to 9007199254740991, not "1.5"'],
      [[...combine, '--density', '0.5', '--seed', '9007199254740992'], '--seed must be an integer from 0 to 9007199254740991, not "9007199254740992"'],
      [[...combine, '--density', '-0.5'], '--density must be a number in (0, 1], not "-0.5"'],
      [[...combine, '--density', '0x1'], '--density must be a number in (0, 1], not "0x1"'],
      [[...combine, '--density', '0.5', '--rank', '-2'], '--rank must be a positive integer, not "-2"'],
      [[...combine, '--density', '0.5', '--clamp-quantile', '-1e-3'], '--clamp-quantile must be a number in (0, 1], not "-1e-3"'],
      [['resize', '--adapter', 'a', '--rank', '-3', '--out', 'o'], '--rank must be a positive integer, not "-3"'],
      [['resize', '--adapter', 'a', '--sv-ratio', '-3', '--out', 'o'], '--sv-ratio must be a number above 0, not "-3"'],
      [['resize', '--adapter', 'a', '--sv-ratio', '0b11', '--out', 'o'], '--sv-ratio must be a number above 0, not "0b11"'],
      [['resize', '--adapter', 'a', '--sv-fro', '-.5', '--out', 'o'], '--sv-fro must be a number in (0, 1], not "-.5"'],
      [['resize', '--adapter', 'a', '--sv-cumulative', '-1', '--out', 'o'], '--sv-cumulative must be a number in (0, 1], not "-1"'],
      [['extract', '--base', 'b', '--tuned', 't', '--rank', '-8', '--out', 'o'], '--rank must be a positive integer, not "-8"'],
      [['extract', '--base', 'b', '--tuned', 't', '--energy', '-0.1', '--out', 'o'], '--energy must be a number in (0, 1], not "-0.1"'],
      [['merge', '--base', 'b', '--adapter', 'a', '--weight', '-inf', '--out', 'o'], '--weight "-inf" for adapter a is not a finite decimal number'],
      [['combine', '--adapter', 'a', '--weight', '-0x1', '--method', 'cat', '--out', 'o'], '--weight "-0x1" for adapter a is not a finite decimal number'],
      // No value at all, or another option where the value should be.
      [[...combine, '--density', '0.5', '--seed'], `--seed needs a value: an integer from 0 to 9007199254740991`],
      [['resize', '--adapter', 'a', '--rank', '--out', 'o'], '--rank needs a value (a positive integer) before --out'],
      [['merge', '--base', 'b', '--adapter', 'a', '--weight', '--out', 'o'], '--weight needs a value (a finite decimal number, negative to subtract) before --out'],
      [['sample', '--backend'], '--backend needs a value: auto, webgpu or cpu'],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(args);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(2);
      expectOneLine(run.stderr, new RegExp(`^error: ${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(see loramerge --help\\)$`));
    }
  });

  it('takes a negative --weight, and any value starting with "-" after an option that takes one', () => {
    expect(parseCommandLine(['combine', '--adapter', 'a', '--weight', '-0.5', '--adapter', 'b', '--weight', '-2e-1', '--method', 'svd', '--out', '-o']))
      .toMatchObject({ adapters: [{ path: 'a', weight: -0.5 }, { path: 'b', weight: -0.2 }], out: '-o' });
    expect(parseCommandLine(['merge', '--base', '-b', '--adapter', 'a', '--weight', '-.25', '--out', 'o']))
      .toMatchObject({ base: '-b', adapters: [{ path: 'a', weight: -0.25 }] });
    // A "-" after `--` stays a positional (refused as one).
    expect(() => parseCommandLine(['resize', '--adapter', 'a', '--rank', '2', '--out', 'o', '--', '-3'])).toThrow('unexpected argument "-3"');
  });

  it.each([
    [['merge', 'model.safetensors', '--adapter', 'a', '--out', 'o'], 'model.safetensors', '--base MODEL --adapter ADAPTER --out OUTPUT'],
    [['combine', '--adapter', 'a', 'b', '--method', 'svd', '--out', 'o'], 'b', '--adapter ADAPTER --adapter ADAPTER --out OUTPUT'],
    [['resize', 'a', '--rank', '2', '--out', 'o'], 'a', '--adapter ADAPTER --out OUTPUT'],
    [['extract', '--base', 'b', 'tuned', '--rank', '2', '--out', 'o'], 'tuned', '--base MODEL --tuned MODEL --out OUTPUT'],
  ])('names the options that take the paths when %j holds a bare path', (argv, word, paths) => {
    let message = '';
    try {
      parseCommandLine(argv);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe(`unexpected argument "${word}": name each path with its option (${paths}) (see loramerge --help)`);
  });
});

describe('cancelling the CLI', () => {
  it('stops on Ctrl-C (SIGINT), exits 130 and leaves nothing at --out', async () => {
    // One 64 MB f32 tensor with an update: long enough on any backend to be interrupted.
    const { base, adapter } = longMergeInputs(tempDir, 'model.layers.0.self_attn.q_proj', 64);
    const outDir = tempDir({});
    const { code, stderr } = await runCliActingAtStart(['merge', '--base', base, '--adapter', adapter,
      '--out', join(outDir, 'merged.safetensors'), '--backend', 'webgpu'], (child) => child.kill('SIGINT'));
    expect(code, stderr).toBe(130);
    expect(errorLines(stderr)).toEqual([`error: merge cancelled; nothing was written to ${join(outDir, 'merged.safetensors')}`]);
    expect(listDir(outDir)).toEqual([]);
  });
});
