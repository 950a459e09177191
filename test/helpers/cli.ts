/** Runs the built CLI (`bin/loramerge.js`) as a user would, capturing its exit code and output. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { runCommandLine } from '../../src/cli/run-cli.js';
import { buildSafetensors } from './fixtures.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(REPO_ROOT, 'bin', 'loramerge.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...nodeArgs, CLI, ...args],
      { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Lines of stderr that are the CLI's own (drivers may print their own noise). */
export function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('error: '));
}

/**
 * Runs the command line in this process, so that the test's stubs (of fetch, of the environment,
 * of mocked modules) reach it, capturing its exit code and output (stack traces on).
 */
export async function runCliInProcess(args: string[]): Promise<CliResult> {
  const out: string[] = [], err: string[] = [];
  const code = await runCommandLine(args, { out: (line) => out.push(line), err: (line) => err.push(line), debug: true });
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

/** A run's one error line (the test fails if there are none or several). */
export function oneErrorLine(run: { stderr: string }): string {
  const lines = errorLines(run.stderr);
  expect(lines, run.stderr).toHaveLength(1);
  return lines[0];
}

/** The CLI's arguments for a merge of one adapter on the CPU backend. */
export function mergeArgs(base: string, adapter: string, out: string, ...extra: string[]): string[] {
  return ['merge', '--base', base, '--adapter', adapter, '--out', out, '--backend', 'cpu', ...extra];
}

/** The CLI reported exactly one error line, matching `message`, and no stack trace or internal error. */
export function expectOneLine(stderr: string, message: RegExp): void {
  const lines = errorLines(stderr);
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(stderr).not.toMatch(/\n\s+at |internal error/);
}

/** Every file under dir (relative path → bytes) and every folder (→ null). */
export function snapshot(dir: string): Map<string, Buffer | null> {
  const out = new Map<string, Buffer | null>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) {
        out.set(relative(dir, path) + '/', null);
        walk(path);
      } else out.set(relative(dir, path), readFileSync(path));
    }
  };
  walk(dir);
  return out;
}

/**
 * `args` (a merge without `--out`) run as `--dry-run` and then for real into `out`: both exit 1
 * with the same one error line and no stack trace, nothing is written at `out`, and no file under
 * `inputs` changes. Returns the line and the dry run's output.
 */
export async function expectDryRunRefusesAsMerge(args: string[], out: string, inputs: string[]): Promise<{ line: string; stdout: string }> {
  const before = inputs.map(snapshot);
  const dry = await runCli([...args, '--dry-run']);
  const run = await runCli([...args, '--out', out]);
  for (const r of [dry, run]) {
    expect(r.stderr).not.toMatch(/\n\s+at |internal error/);
    expect(r.code, r.stderr).toBe(1);
  }
  expect(oneErrorLine(dry)).toBe(oneErrorLine(run));
  expect(existsSync(out)).toBe(false);
  expect(inputs.map(snapshot)).toEqual(before);
  return { line: oneErrorLine(dry), stdout: dry.stdout };
}

/** Everything in a folder, including dot-files (temporary outputs would be dot-files). */
export function listDir(dir: string): string[] {
  return readdirSync(dir).sort();
}

/**
 * Runs the built CLI and calls `act` once, as soon as it has said which backend it runs on (the
 * work has begun: a moment to interrupt it or change its inputs); resolves when it exits.
 */
export function runCliActingAtStart(args: string[], act: (child: ChildProcess) => void): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let acted = false;
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (!acted && stderr.includes('backend:')) {
      acted = true;
      act(child);
    }
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

/**
 * `loramerge merge` on the CPU of a base folder and an adapter folder made from these files in a
 * temp folder of `makeDir`, writing `<folder>/merged`: the run, the output path and its error lines.
 */
export async function mergeFolders(
  makeDir: (files: Record<string, Uint8Array | string>) => string,
  base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, extra: string[] = [],
): Promise<{ run: CliResult; out: string; lines: string[] }> {
  const dir = makeDir({
    ...Object.fromEntries(Object.entries(base).map(([k, v]) => [`base/${k}`, v])),
    ...Object.fromEntries(Object.entries(adapter).map(([k, v]) => [`adapter/${k}`, v])),
  });
  const out = join(dir, 'merged');
  const run = await runCli(['merge', '--base', join(dir, 'base'), '--adapter', join(dir, 'adapter'), '--out', out, '--backend', 'cpu', ...extra]);
  return { run, out, lines: errorLines(run.stderr) };
}

/**
 * A merge long enough to interrupt on any backend: one 64 MB f32 tensor (4096 × 4096, zeros) at
 * `module`.weight and a PEFT LoRA of rank `rank` on it, in folders made by `makeDir`.
 */
export function longMergeInputs(makeDir: (files: Record<string, Uint8Array | string>) => string, module: string, rank: number): { base: string; adapter: string } {
  const rows = 4096, cols = 4096;
  const baseDir = makeDir({
    'base.safetensors': buildSafetensors([{ name: `${module}.weight`, dtype: 'F32', shape: [rows, cols], data: new Uint8Array(rows * cols * 4) }]),
  });
  const adapter = makeDir({
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: rank }),
    'adapter_model.safetensors': buildSafetensors([
      { name: `base_model.model.${module}.lora_A.weight`, dtype: 'F32', shape: [rank, cols], data: new Uint8Array(rank * cols * 4) },
      { name: `base_model.model.${module}.lora_B.weight`, dtype: 'F32', shape: [rows, rank], data: new Uint8Array(rows * rank * 4) },
    ]),
  });
  return { base: join(baseDir, 'base.safetensors'), adapter };
}

/** The files a process has open (Linux: its /proc/<pid>/fd links). */
export function openFiles(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
  } catch {
    return [];
  }
}

/** What {@link runCliSignalledOnceOpen} saw: the exit, the output, and ms from the signal's moment to the exit. */
export interface SignalledRun { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; afterSignalMs: number }

/**
 * Runs the CLI and, `delayMs` after the process has `file` open (polled through /proc, so Linux
 * only), sends `signal` if one is given. `afterSignalMs`: ms from that moment (the signal sent, or
 * when it would have been) to the exit, NaN if the run ended before it.
 */
export function runCliSignalledOnceOpen(args: string[], file: string, delayMs: number, signal?: NodeJS.Signals): Promise<SignalledRun> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let sent: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const poll = setInterval(() => {
    if (!openFiles(child.pid!).includes(file)) return;
    clearInterval(poll);
    timer = setTimeout(() => {
      sent = performance.now();
      if (signal) child.kill(signal);
    }, delayMs);
  }, 2);
  return new Promise((resolve) => child.on('exit', (code, sig) => {
    clearInterval(poll);
    clearTimeout(timer);
    resolve({ code, signal: sig, stdout, stderr, afterSignalMs: sent === undefined ? NaN : performance.now() - sent });
  }));
}
