/**
 * The fuzzer: valid safetensors bases, PEFT configs and kohya files, mutated (bit flips, truncation,
 * header edits, JSON type changes, huge numbers, deep nesting, pathological regexes, NaN/Inf and
 * overflowing values, bytes that are not UTF-8 and numbers written `8.0`, `8e0` or `-0` inside
 * headers and the config), run through the CLI. For every mutation, either
 *   - exit 0, and the output equals the float64 truth worked out from the mutated files
 *     (fuzz-reference.ts), NaN/Inf copied from the base is warned about, and --out holds only the
 *     output; or
 *   - one clear `error:` line, no stack trace, no internal error, a documented exit code, and
 *     nothing at --out;
 * the inputs unchanged, and every case ends in bounded time and memory. Most cases run the CLI's
 * own front end in a worker thread, a few the real `loramerge` process with its peak RSS measured
 * (cli-fuzz.ts). The run is seeded; `npm test`
 * runs a bounded number of cases, `npm run fuzz` many more (FUZZ_RUNS, FUZZ_CLI_RUNS, FUZZ_SEED;
 * FUZZ_PATH replays one failing case, FUZZ_KEEP keeps the cases' files).
 * Run `npm run build:lib` first when calling vitest directly: the cases run the built CLI.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { describeCliFuzz, fuzzSettings, type CliCase } from './helpers/cli-fuzz.js';
import { decodeSafetensors, roundForDType } from './helpers/fixtures.js';
import { fuzzCase, writeCase, type CaseFiles, type FuzzCase } from './helpers/fuzz-cases.js';
import { referenceMerge, type Reference } from './helpers/fuzz-reference.js';

/** The case's files: base.safetensors, and a PEFT folder or a kohya file under adapter/. */
function prepare(c: FuzzCase): CliCase & { files: CaseFiles } {
  const files = writeCase(c);
  const inputs = new Map([['base.safetensors', files.base]]);
  let adapter = 'adapter';
  if (c.world.kind === 'peft') {
    inputs.set('adapter/adapter_model.safetensors', files.adapter);
    inputs.set('adapter/adapter_config.json', files.config ?? new Uint8Array());
  } else {
    adapter = 'adapter/lora.safetensors';
    inputs.set(adapter, files.adapter);
  }
  const { command, dtype, weight } = c.command;
  return {
    label: command,
    files,
    inputs,
    output: command === 'merge' ? 'merged.safetensors' : null,
    argv(inDir, outDir) {
      const base = join(inDir, 'base.safetensors');
      if (command === 'inspect-base') return ['inspect', base];
      if (command === 'inspect-adapter') return ['inspect', join(inDir, adapter)];
      const args = ['merge', '--base', base, '--adapter', join(inDir, adapter)];
      if (weight !== undefined) args.push('--weight', weight);
      if (dtype) args.push('--dtype', dtype);
      args.push(...(command === 'dry-run' ? ['--dry-run'] : ['--out', join(outDir, 'merged.safetensors')]), '--backend', 'cpu');
      return args;
    },
  };
}

/**
 * The largest difference allowed between a written value and the exact one: half an ulp, plus the
 * float64 reference's own rounding, so a rounding rule off by one ulp (truncating, ties away)
 * fails. f16 and bf16 values are the exact result rounded once (README, "Rounding guarantee"); f32
 * ones are promised within one ulp, and found rounded once too (f64 sums, certified).
 */
function tolerance(exact: number, magnitude: number, underflow: number, dtype: string): number {
  const mant = dtype === 'F16' ? 10 : dtype === 'BF16' ? 7 : 23;
  const minExp = dtype === 'F16' ? -14 : -126;
  const e = Math.max(exact === 0 ? minExp : Math.floor(Math.log2(Math.abs(exact))), minExp);
  return 2 ** (e - mant - 1) + 2 ** -44 * magnitude + 2 ** -148 * (4 + underflow);
}

/** The merged file against the float64 reference worked out from the (mutated) files. */
function checkOutput(c: FuzzCase, p: CliCase & { files: CaseFiles }, outPath: string, result: { stderr: string }, context: string): string {
  const reference: Reference = referenceMerge(p.files, c.world.kind, c.command);
  if (reference.kind === 'unknown') return 'unknown';
  expect(reference.kind === 'invalid' ? reference.why : 'valid', `the merge succeeded on inputs the reference refuses\n${context}`).toBe('valid');
  if (reference.kind !== 'expected') return reference.kind;
  const output = decodeSafetensors(new Uint8Array(readFileSync(outPath)));
  expect([...output.tensors.keys()], context).toEqual(reference.tensors.map((t) => t.name));
  for (const want of reference.tensors) {
    const got = output.tensors.get(want.name)!;
    expect([got.dtype, got.shape], `${want.name}\n${context}`).toEqual([want.dtype, want.shape]);
    if (want.values === null) {
      expect(Buffer.from(got.bytes).equals(Buffer.from(want.bytes)), `${want.name} copied bit for bit\n${context}`).toBe(true);
      continue;
    }
    for (let i = 0; i < want.values.length; i++) {
      const exact = want.values[i];
      const value = got.values[i];
      if (want.copied || !want.magnitude) {
        // Converted once from the stored value (NaN stays NaN; finite values may not overflow).
        const rounded = roundForDType(exact, want.dtype);
        expect(Object.is(value, rounded) || (Number.isNaN(value) && Number.isNaN(rounded)) || value === rounded, `${want.name}[${i}]: ${value} vs ${rounded}\n${context}`).toBe(true);
        if (Number.isFinite(exact)) expect(Number.isFinite(value), `${want.name}[${i}] overflowed\n${context}`).toBe(true);
      } else {
        expect(Number.isFinite(value), `${want.name}[${i}] = ${value}\n${context}`).toBe(true);
        expect(Math.abs(value - exact), `${want.name}[${i}]: ${value} vs exact ${exact}\n${context}`).toBeLessThanOrEqual(tolerance(exact, want.magnitude[i], want.underflow?.[i] ?? 0, want.dtype));
      }
    }
  }
  for (const name of reference.nonFiniteCopies) {
    expect(result.stderr, `no warning about ${name}\n${context}`).toMatch(new RegExp(`warning: .*already holds? NaN or Inf.*${name.replaceAll('.', '\\.')}`));
  }
  return 'expected';
}

describeCliFuzz('fuzzing the CLI with mutated inputs', {
  name: 'fuzz',
  cases: fuzzCase,
  prepare,
  checkOutput,
  mergeDetail: (stats) => `${stats.outcomes.get('merged, unknown') ?? 0} outside the reference's model`,
  expectReach(stats, runs) {
    expect(stats.merged).toBeGreaterThan(runs / 10);
    expect(stats.refused).toBeGreaterThan(runs / 10);
  },
}, fuzzSettings('FUZZ_RUNS', 'FUZZ_CLI_RUNS', { runs: 800, cliRuns: 10 }));
