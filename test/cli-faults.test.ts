/**
 * Faults around the CLI, each real where this machine allows it: signals mid-write, a reader that
 * goes away, a full disk, a read-only file system, no permission, a mount point, long names, two
 * merges at once, links and odd --out values. Every failure is one line naming the path, with a
 * documented exit code, and nothing is left behind.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cancellable, handleCancelSignals } from '../src/cli/cancel-signals.js';
import { CANCEL_SIGNALS, EXIT_CANCELLED } from '../src/cli/exit-codes.js';
import { CLI, errorLines, expectOneLine, listDir, longMergeInputs, mergeArgs, runCli, type CliResult } from './helpers/cli.js';
import { canDropPrivileges, canMount, runCliUnprivileged, runCliWithMounts } from './helpers/cli-faults.js';
import { buildSafetensors, decodeSafetensors, randomValues, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const rand = seededRandom(17);
const d = 16;
const r = 2;
const q = 'model.layers.0.self_attn.q_proj';
const baseTensors: FixtureTensor[] = [
  { name: `${q}.weight`, dtype: 'F16', shape: [d, d], data: randomValues(d * d, rand) },
  { name: 'model.norm.weight', dtype: 'F16', shape: [d], data: randomValues(d, rand) },
];
const baseBytes = buildSafetensors(baseTensors);
const adapterFiles = {
  'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 2 }),
  'adapter_model.safetensors': buildSafetensors([
    { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: randomValues(r * d, rand) },
    { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: randomValues(d * r, rand) },
  ]),
};

/** A base file, a base folder and an adapter, readable by anyone (for the unprivileged runs). */
function inputs() {
  const dir = temp.make({ 'base.safetensors': baseBytes, 'model/model.safetensors': baseBytes, 'model/config.json': '{}', ...prefixed('adapter/', adapterFiles) });
  chmodSync(dir, 0o755);
  return { baseFile: join(dir, 'base.safetensors'), baseFolder: join(dir, 'model'), adapter: join(dir, 'adapter') };
}

function prefixed(prefix: string, files: Record<string, string | Uint8Array>): Record<string, string | Uint8Array> {
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [prefix + k, v]));
}

/** A 64 MB base and a rank-16 adapter: a merge long enough to be interrupted. */
const bigInputs = () => longMergeInputs(temp.make, q, 16);

/**
 * Starts a merge and sends `signal` once `ready(stderr, outDir)` holds; then, if `again` is given,
 * those signals in turn every 2 ms until it exits (Ctrl-C pressed again and again).
 */
function interrupt(args: string[], outDir: string, signal: NodeJS.Signals, ready: () => boolean, again: NodeJS.Signals[] = []): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let sent = 0;
  const poll = setInterval(() => {
    if (sent > 0 && again.length > 0) child.kill(again[sent++ % again.length]);
    else if (sent === 0 && stderr.includes('backend:') && ready()) {
      child.kill(signal);
      sent = 1;
      if (again.length === 0) clearInterval(poll);
    }
  }, 2);
  return new Promise((resolve) => child.on('exit', (code) => {
    clearInterval(poll);
    resolve({ code, stderr });
  }));
}

describe('signals and pipes', () => {
  it('cancels on SIGHUP like on SIGTERM: exit 130, nothing left', async () => {
    const { base, adapter } = bigInputs();
    const outDir = temp.make();
    const { code, stderr } = await interrupt(mergeArgs(base, adapter, join(outDir, 'merged.safetensors')), outDir, 'SIGHUP', () => true);
    expect(code, stderr).toBe(130);
    expect(errorLines(stderr)).toEqual([`error: merge cancelled; nothing was written to ${join(outDir, 'merged.safetensors')}`]);
    expect(listDir(outDir)).toEqual([]);
  });

  it('Ctrl-C while the program is still loading (before any argument is read): exit 130 and the one line, not a silent death', async () => {
    // The engine's modules take a third of a second to load; main.ts had them as static imports, so
    // its handlers came after them and a signal in that time ended the process by the signal, with
    // nothing printed. A module hook sends SIGINT when run-cli.js is asked for and holds it back for
    // a while: the signal lands exactly in that time.
    const { baseFile: base, adapter } = inputs();
    const outDir = temp.make();
    const hooks = temp.make({
      'hooks.mjs': `export async function resolve(specifier, context, next) {
        if (specifier.endsWith('/run-cli.js')) {
          process.kill(process.pid, 'SIGINT');
          await new Promise((r) => setTimeout(r, 3000));
        }
        return next(specifier, context);
      }`,
      'register.mjs': `import { register } from 'node:module'; register(new URL('./hooks.mjs', import.meta.url));`,
    });
    const out = join(outDir, 'merged.safetensors');
    const run = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', join(hooks, 'register.mjs'), CLI, ...mergeArgs(base, adapter, out)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('exit', (code, signal) => resolve({ code, signal, stderr }));
    });
    expect({ code: run.code, signal: run.signal }, run.stderr).toEqual({ code: 130, signal: null });
    expect(errorLines(run.stderr)).toEqual([`error: merge cancelled; nothing was written to ${out}`]);
    expect(listDir(outDir)).toEqual([]);
  });

  it('signals that keep coming while it cleans up do not end it early: exit 130, nothing left, not even the lock', async () => {
    // Each command took its handlers off once its cancelled part had ended; a second signal in the
    // moments before the exit killed the process by the signal (no exit code), often before the
    // error line.
    const { base, adapter } = bigInputs();
    for (const [out, again] of [['merged.safetensors', ['SIGINT']], ['merged', ['SIGTERM', 'SIGHUP', 'SIGINT']]] as const) {
      const outDir = temp.make();
      const { code, stderr } = await interrupt(mergeArgs(out === 'merged' ? dirname(base) : base, adapter, join(outDir, out)), outDir, 'SIGINT', () => true, [...again]);
      expect(code, stderr).toBe(130);
      expect(errorLines(stderr)).toEqual([`error: merge cancelled; nothing was written to ${join(outDir, out)}`]);
      expect(stderr).not.toMatch(/\n\s+at |internal error/);
      expect(listDir(outDir)).toEqual([]);
    }
  });

  it('handleCancelSignals: while a cancellable part runs every signal aborts it and none exits; after it, one exits with the code', async () => {
    // process.emit calls the listeners as a delivered signal would, deterministically.
    const before = new Map(CANCEL_SIGNALS.map((s) => [s, process.listeners(s)]));
    const exits: number[] = [];
    let finished: number | undefined;
    handleCancelSignals((code) => exits.push(code), () => finished ?? EXIT_CANCELLED);
    try {
      let release!: () => void;
      let seen: AbortSignal | undefined;
      const part = cancellable(async (signal) => {
        seen = signal;
        await new Promise<void>((resolve) => (release = resolve)); // the cleanup, still running
        return 'cleaned up';
      });
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGINT'] as const) process.emit(s);
      expect(seen?.aborted).toBe(true);
      expect(exits).toEqual([]);
      release();
      expect(await part).toBe('cleaned up');
      process.emit('SIGINT');
      expect(exits).toEqual([130]);
      finished = 0;
      process.emit('SIGHUP');
      expect(exits).toEqual([130, 0]);
    } finally {
      for (const s of CANCEL_SIGNALS) for (const l of process.listeners(s)) if (!before.get(s)!.includes(l)) process.off(s, l);
    }
  });

  it('after SIGKILL mid-write, the next merge into the same place removes the stale temporary', async () => {
    const { base, adapter } = bigInputs();
    const outDir = temp.make();
    const out = join(outDir, 'merged.safetensors');
    const killed = await interrupt(mergeArgs(base, adapter, out), outDir, 'SIGKILL', () => listDir(outDir).some((f) => f.endsWith('.tmp')));
    expect(killed.code).toBeNull();
    const left = listDir(outDir);
    expect(left.some((f) => /^\.loramerge-\d+-[0-9a-f]{12}\.tmp$/.test(f)), left.join()).toBe(true);
    // An older version's temporary (no process id in its name) is only reported, with the command.
    writeFileSync(join(outDir, '.merged.safetensors.loramerge-0123456789ab.tmp'), 'old');
    const small = inputs();
    const next = await runCli(mergeArgs(small.baseFile, small.adapter, out));
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toMatch(/note: removed .*\.loramerge-\d+-[0-9a-f]{12}\.tmp, left by an interrupted merge \(process \d+\)/);
    expect(next.stderr).toMatch(/note: .*\.merged\.safetensors\.loramerge-0123456789ab\.tmp looks like a temporary file .*rm -r/);
    expect(listDir(outDir)).toEqual(['.merged.safetensors.loramerge-0123456789ab.tmp', 'merged.safetensors']);
  });

  it('ends quietly when the reader of its output goes away (inspect X | head -1)', async () => {
    // 3000 modules: far more output than a pipe buffers.
    const tensors: FixtureTensor[] = [];
    for (let i = 0; i < 3000; i++) {
      tensors.push({ name: `base_model.model.layers.${i}.proj.lora_A.weight`, dtype: 'F32', shape: [1, 1], data: [1] });
      tensors.push({ name: `base_model.model.layers.${i}.proj.lora_B.weight`, dtype: 'F32', shape: [1, 1], data: [1] });
    }
    const adapterDir = temp.make({ 'adapter_config.json': JSON.stringify({ r: 1, lora_alpha: 1 }), 'adapter_model.safetensors': buildSafetensors(tensors) });
    // A real pipe, as a shell makes it (a child's 'pipe' stdio is a socket, which behaves otherwise).
    const script = `"$0" "$1" inspect "$2" | head -1; exit \${PIPESTATUS[0]}`;
    const child = spawn('bash', ['-c', script, process.execPath, CLI, adapterDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(stdout).toMatch(/^.*PEFT LoRA adapter \(3000 modules\)\n$/);
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
  it('writes all of its output to a reader that is slow to start (inspect X | less)', async () => {
    // A pipe holds 64 KiB; the rest waited in the stream and process.exit dropped it.
    const tensors: FixtureTensor[] = [];
    for (let i = 0; i < 3000; i++) {
      tensors.push({ name: `base_model.model.model.layers.${i}.self_attn.q_proj.lora_A.weight`, dtype: 'F32', shape: [1, 1], data: [1] });
      tensors.push({ name: `base_model.model.model.layers.${i}.self_attn.q_proj.lora_B.weight`, dtype: 'F32', shape: [1, 1], data: [1] });
    }
    const adapterDir = temp.make({ 'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 1, lora_alpha: 1 }), 'adapter_model.safetensors': buildSafetensors(tensors) });
    const wholeRun = runCli(['inspect', adapterDir]);
    const script = `"$0" "$1" inspect "$2" | (sleep 0.5; wc -c); exit \${PIPESTATUS[0]}`;
    const child = spawn('bash', ['-c', script, process.execPath, CLI, adapterDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const whole = await wholeRun;
    expect(Buffer.byteLength(whole.stdout)).toBeGreaterThan(200_000);
    expect(code).toBe(0);
    expect(Number(stdout.trim())).toBe(Buffer.byteLength(whole.stdout));
  });
});

describe('filesystem errors are one line naming the path, exit 3, nothing left', () => {
  /** A merge of `base` (tensors beside ${q}.weight of `cols` columns) into a 1 MB tmpfs: exit 3, one ENOSPC line, nothing left. */
  async function mergeIntoFullDisk(base: FixtureTensor[], cols: number, while_: string): Promise<void> {
    const baseDir = temp.make({ 'base.safetensors': buildSafetensors(base) });
    const adapter = temp.make({
      'adapter_config.json': JSON.stringify({ r: 1, lora_alpha: 1 }),
      'adapter_model.safetensors': buildSafetensors([
        { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [1, cols], data: new Uint8Array(4 * cols) },
        { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [cols, 1], data: new Uint8Array(4 * cols) },
      ]),
    });
    const mnt = temp.make();
    const out = join(mnt, 'merged.safetensors');
    const run = await runCliWithMounts(`mount -t tmpfs -o size=1m tmpfs '${mnt}'`, mergeArgs(join(baseDir, 'base.safetensors'), adapter, out), mnt);
    expect(run.code, run.stderr).toBe(3);
    expectOneLine(run.stderr, new RegExp(`${out}: no space left on the device while ${while_} \\(ENOSPC\\); free some space or choose another --out`));
    expect(run.listing).toEqual([]);
  }

  it.skipIf(!canMount)('disk full (a 1 MB tmpfs): ENOSPC while writing', async () => {
    // A base larger than the tmpfs: 2 MB of f16.
    await mergeIntoFullDisk([{ name: `${q}.weight`, dtype: 'F16', shape: [1024, 1024], data: new Uint8Array(2 * 1024 * 1024) }], 1024, 'writing');
  });

  it.skipIf(!canMount)('disk full with many small tensors (writes gathered before they reach the file): ENOSPC, nothing left', async () => {
    // 4 000 tensors of 512 bytes (2 MB) beside the adapted one: every write is under the 64 KiB a
    // write is gathered below, so the file system first refuses a gathered write or the final flush.
    const small = Array.from({ length: 4000 }, (_, i) => ({ name: `model.layers.${i >> 6}.mlp.experts.${i & 63}.down_proj.weight_scale_inv`, dtype: 'F32' as const, shape: [8, 16], data: new Uint8Array(512) }));
    await mergeIntoFullDisk([{ name: `${q}.weight`, dtype: 'F16', shape: [4, 4], data: new Uint8Array(32) }, ...small], 4, '(writing|flushing to disk)');
  });

  it.skipIf(!canMount)('a read-only file system: EROFS for a file output and for a folder output alike', async () => {
    const { baseFile, baseFolder, adapter } = inputs();
    const mnt = temp.make();
    const setup = `mount -t tmpfs -o size=1m tmpfs '${mnt}' && mount -o remount,ro '${mnt}'`;
    const file = await runCliWithMounts(setup, mergeArgs(baseFile, adapter, join(mnt, 'merged.safetensors')), mnt);
    expect(file.code, file.stderr).toBe(3);
    // Found before any input is read, by the check of --out's folder.
    expectOneLine(file.stderr, /merged\.safetensors: the file system is read-only while checking that its folder can be written \(EROFS\); choose an --out on a writable file system/);
    const folder = await runCliWithMounts(setup, mergeArgs(baseFolder, adapter, join(mnt, 'merged')), mnt);
    expect(folder.code, folder.stderr).toBe(3);
    expectOneLine(folder.stderr, /merged: the file system is read-only .*\(EROFS\)/);
    expect([...file.listing, ...folder.listing]).toEqual([]);
  });

  it.skipIf(!canDropPrivileges)('no permission to write the folder: EACCES', async () => {
    const { baseFile, adapter } = inputs();
    const outDir = temp.make();
    chmodSync(outDir, 0o755); // readable, not writable, by others
    const run = await runCliUnprivileged(mergeArgs(baseFile, adapter, join(outDir, 'merged.safetensors')));
    expect(run.code, run.stderr).toBe(3);
    expectOneLine(run.stderr, /merged\.safetensors: permission denied while checking that its folder can be written \(EACCES\); check the permissions of the folder or choose another --out/);
    expect(listDir(outDir)).toEqual([]);
  });

  it('a file-size limit (ulimit -f): EFBIG named, nothing left, not even the lock file', async () => {
    /** The CLI under `ulimit -f blocks` (1 KiB each); Node ignores SIGXFSZ, so the write fails with EFBIG. */
    const underLimit = (blocks: number, args: string[]) => new Promise<CliResult>((resolve) => {
      execFile('bash', ['-c', 'ulimit -f "$1"; shift; exec "$@"', 'bash', String(blocks), process.execPath, CLI, ...args], (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
      });
    });
    const { baseFile, adapter } = inputs();
    // No byte may be written: the lock file, created and then not written, was left behind.
    const locked = temp.make();
    const atLockRun = underLimit(0, mergeArgs(baseFile, adapter, join(locked, 'merged.safetensors')));
    // 8 KiB of q_proj in a 4 KiB limit: the output itself fails.
    const big = temp.make({ 'base.safetensors': buildSafetensors([{ name: `${q}.weight`, dtype: 'F16', shape: [64, 64], data: randomValues(64 * 64, rand) }]) });
    const wide = temp.make({
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 2 }),
      'adapter_model.safetensors': buildSafetensors([
        { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, 64], data: randomValues(r * 64, rand) },
        { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [64, r], data: randomValues(64 * r, rand) },
      ]),
    });
    const outDir = temp.make();
    const [atLock, writing] = await Promise.all([atLockRun, underLimit(4, mergeArgs(join(big, 'base.safetensors'), wide, join(outDir, 'merged.safetensors')))]);
    expect(atLock.code, atLock.stderr).toBe(3);
    expectOneLine(atLock.stderr, /merged\.safetensors: the file would be larger than the file-size limit \(ulimit -f\) or the file system allows while creating a lock file beside it \(EFBIG\); raise the limit or choose an --out/);
    expect(listDir(locked)).toEqual([]);
    expect(writing.code, writing.stderr).toBe(3);
    expectOneLine(writing.stderr, /merged\.safetensors: the file would be larger .* while (writing|flushing to disk) \(EFBIG\)/);
    expect(listDir(outDir)).toEqual([]);
  });

  it('a name too long for the file system (256 bytes) fails at once; 248 bytes works', async () => {
    const { baseFile, adapter } = inputs();
    const outDir = temp.make();
    const tooLong = await runCli(mergeArgs(baseFile, adapter, join(outDir, 'm'.repeat(256))));
    expect(tooLong.code).toBe(3);
    expectOneLine(tooLong.stderr, /longer than 255 bytes.*\(ENAMETOOLONG\); choose a shorter --out/);
    const legal = await runCli(mergeArgs(baseFile, adapter, join(outDir, 'm'.repeat(248))));
    expect(legal.code, legal.stderr).toBe(0);
    expect(listDir(outDir)).toEqual(['m'.repeat(248)]);
  });
});

describe('where --out may point', () => {
  it.skipIf(!canMount)('a mount point is written through, for a folder and for a bind-mounted file', async () => {
    const { baseFile, baseFolder, adapter } = inputs();
    const mnt = temp.make();
    const folder = await runCliWithMounts(`mount -t tmpfs -o size=4m tmpfs '${mnt}'`, mergeArgs(baseFolder, adapter, mnt), mnt);
    expect(folder.code, folder.stderr).toBe(0);
    expect(folder.listing).toEqual(['config.json', 'model.safetensors']);
    // A mounted folder holding an older output: refused without --overwrite, replaced in place with it.
    const stale = `mount -t tmpfs -o size=4m tmpfs '${mnt}' && echo old > '${mnt}/stale-shard.safetensors'`;
    const kept = await runCliWithMounts(stale, mergeArgs(baseFolder, adapter, mnt), mnt);
    expect(kept.code, kept.stderr).toBe(2);
    expect(kept.listing).toEqual(['stale-shard.safetensors']);
    const replaced = await runCliWithMounts(stale, mergeArgs(baseFolder, adapter, mnt, '--overwrite'), mnt);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.listing).toEqual(['config.json', 'model.safetensors']);
    const dir = temp.make({ 'target.safetensors': 'old', 'merged.safetensors': 'placeholder' });
    const target = join(dir, 'target.safetensors');
    const out = join(dir, 'merged.safetensors');
    const file = await runCliWithMounts(`mount --bind '${target}' '${out}'`, mergeArgs(baseFile, adapter, out), dir);
    expect(file.code, file.stderr).toBe(0);
    expect(file.listing).toEqual(['merged.safetensors', 'target.safetensors']);
    // The bind mount is gone with its namespace; what was written through it is in the target.
    const merged = decodeSafetensors(new Uint8Array(readFileSync(target)));
    expect([...merged.tensors.keys()]).toEqual([`${q}.weight`, 'model.norm.weight']);
  });

  it('a symbolic link is written through: the link stays, its target is replaced', async () => {
    const { baseFile, baseFolder, adapter } = inputs();
    const dir = temp.make({ 'real.safetensors': 'old', 'real-folder/.keep-me-not': '' });
    symlinkSync(join(dir, 'real.safetensors'), join(dir, 'link.safetensors'));
    const file = await runCli(mergeArgs(baseFile, adapter, join(dir, 'link.safetensors')));
    expect(file.code, file.stderr).toBe(0);
    expect(lstatSync(join(dir, 'link.safetensors')).isSymbolicLink()).toBe(true);
    expect(decodeSafetensors(new Uint8Array(readFileSync(join(dir, 'real.safetensors')))).tensors.size).toBe(2);
    mkdirSync(join(dir, 'empty'));
    symlinkSync(join(dir, 'empty'), join(dir, 'folder-link'));
    const folder = await runCli(mergeArgs(baseFolder, adapter, join(dir, 'folder-link')));
    expect(folder.code, folder.stderr).toBe(0);
    expect(readlinkSync(join(dir, 'folder-link'))).toBe(join(dir, 'empty'));
    expect(listDir(join(dir, 'empty'))).toEqual(['config.json', 'model.safetensors']);
  });

  it('--out DIR/ with a file base writes DIR/<base name>, creating DIR on success only', async () => {
    const { baseFile, adapter } = inputs();
    const dir = temp.make();
    const run = await runCli(mergeArgs(baseFile, adapter, join(dir, 'merged') + '/'));
    expect(run.code, run.stderr).toBe(0);
    expect(listDir(join(dir, 'merged'))).toEqual(['base.safetensors']);
    const failed = await runCli(mergeArgs(baseFile, adapter, join(dir, 'other') + '/', '--weight', '0x1'));
    expect(failed.code).toBe(2);
    expect(listDir(dir)).toEqual(['merged']);
  });

  it('--out . (or a folder above the current one) is refused, and the current folder stays', async () => {
    const { baseFolder, adapter } = inputs();
    const cwd = temp.make();
    for (const out of ['.', '..', './']) {
      const child = spawn(process.execPath, [CLI, ...mergeArgs(baseFolder, adapter, out)], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      expect(code, stderr).toBe(2);
      expectOneLine(stderr, /is the current folder or contains it; name a new folder/);
      expect(existsSync(cwd)).toBe(true);
      expect(listDir(cwd)).toEqual([]);
    }
  });

  it('a second merge into the same output is refused at once while the first runs', async () => {
    const { base, adapter } = bigInputs();
    const outDir = temp.make();
    const out = join(outDir, 'merged.safetensors');
    const first = spawn(process.execPath, [CLI, ...mergeArgs(base, adapter, out)], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => first.on('exit', (c) => resolve(c)));
    let stderr = '';
    first.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    while (!stderr.includes('backend:') && first.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 5));
    const second = await runCli(mergeArgs(base, adapter, out));
    const code = await exited;
    expect(code, stderr).toBe(0);
    if (second.code !== 0) {
      expect(second.code).toBe(2);
      expectOneLine(second.stderr, /another merge \(process \d+\) is writing this output; wait for it to finish or choose another --out/);
    } // else the first had already finished: then the second simply replaced the file
    expect(listDir(outDir)).toEqual(['merged.safetensors']);
  });
});
