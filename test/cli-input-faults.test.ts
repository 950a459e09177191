/**
 * Inputs reached another way than by the path given, and inputs that change or a terminal that
 * closes while combine, resize or extract runs: an input behind a link from an input folder (a
 * Hugging Face snapshot links into its blob store), a hard link or bind mount of an input, a base
 * rewritten mid-run, SIGHUP. Each is one line, nothing is left at --out, no input changes.
 */
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, linkSync, mkdirSync, openSync, readFileSync, statSync, symlinkSync, utimesSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { merge } from '../src/node.js';
import { CLI, errorLines, expectOneLine, listDir, mergeArgs, runCli, runCliActingAtStart } from './helpers/cli.js';
import { canDropPrivileges, canMount, runCliUnprivileged, runCliWithMounts } from './helpers/cli-faults.js';
import { buildSafetensors, randomValues, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const rand = seededRandom(29);
const d = 16;
const r = 2;
const q = 'model.layers.0.self_attn.q_proj';
const baseBytes = buildSafetensors([
  { name: `${q}.weight`, dtype: 'F16', shape: [d, d], data: randomValues(d * d, rand) },
  { name: 'model.norm.weight', dtype: 'F16', shape: [d], data: randomValues(d, rand) },
]);
const adapterConfig = JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: 4, target_modules: ['q_proj'] });
const adapterWeights = buildSafetensors([
  { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: randomValues(r * d, rand) },
  { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: randomValues(d * r, rand) },
]);

/** Bytes of every file under `dir`, by relative path: to see that nothing changed. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of listDir(dir)) {
    const path = join(dir, name);
    out[name] = statSync(path).isDirectory() ? JSON.stringify(contents(path)) : readFileSync(path).toString('base64');
  }
  return out;
}

describe('an --out that is an input by another path is refused, and no input changes', () => {
  it('the blob folder a Hugging Face snapshot links into (--overwrite), and a file an adapter folder links to', async () => {
    // models--org--name/{blobs/<sha256>, snapshots/<commit>/model.safetensors -> ../../blobs/<sha256>}
    const repo = temp.make({ 'blobs/3f2a9c': baseBytes, 'blobs/77b1e0': '{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}' });
    const snapshot = join(repo, 'snapshots', '0123abcd');
    mkdirSync(snapshot, { recursive: true });
    symlinkSync('../../blobs/3f2a9c', join(snapshot, 'model.safetensors'));
    symlinkSync('../../blobs/77b1e0', join(snapshot, 'config.json'));
    const adapter = temp.make({ 'adapter_config.json': adapterConfig, 'adapter_model.safetensors': adapterWeights });
    const blobs = join(repo, 'blobs');
    const before = contents(blobs);
    // The folder's path was compared, not the files it links to: the blob store was replaced by the merge.
    const run = await runCli(mergeArgs(snapshot, adapter, blobs, '--overwrite'));
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, new RegExp(`${blobs}: holds input ${snapshot}/(config\\.json|model\\.safetensors); choose another output path$`));
    expect(contents(blobs)).toEqual(before);

    // An adapter folder whose weights are a link to a file elsewhere, and --out that file: the
    // output replaced the adapter's weights.
    const shared = temp.make({ 'lora-q.safetensors': adapterWeights });
    const linked = temp.make({ 'adapter_config.json': adapterConfig });
    symlinkSync(join(shared, 'lora-q.safetensors'), join(linked, 'adapter_model.safetensors'));
    const baseDir = temp.make({ 'model.safetensors': baseBytes });
    const target = join(shared, 'lora-q.safetensors');
    const intoLink = await runCli(mergeArgs(join(baseDir, 'model.safetensors'), linked, target));
    expect(intoLink.code, intoLink.stderr).toBe(2);
    expectOneLine(intoLink.stderr, new RegExp(`${target}: output would overwrite input ${linked}/adapter_model\\.safetensors; choose another output path$`));
    expect(listDir(shared)).toEqual(['lora-q.safetensors']);
    expect(readFileSync(target).equals(Buffer.from(adapterWeights))).toBe(true);

    // The library's merge() likewise.
    const refused = await merge({ base: join(baseDir, 'model.safetensors'), adapters: [linked], out: target, backend: 'cpu' }).then(() => undefined, (e: Error) => e);
    expect(refused?.message).toBe(`${target}: output would overwrite input ${linked}/adapter_model.safetensors; choose another output path`);
    expect(readFileSync(target).equals(Buffer.from(adapterWeights))).toBe(true);
  });

  it('a hard link of the base', async () => {
    const dir = temp.make({ 'model.safetensors': baseBytes });
    const adapter = temp.make({ 'adapter_config.json': adapterConfig, 'adapter_model.safetensors': adapterWeights });
    const base = join(dir, 'model.safetensors');
    linkSync(base, join(dir, 'merged.safetensors'));
    const run = await runCli(mergeArgs(base, adapter, join(dir, 'merged.safetensors')));
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, /merged\.safetensors: is input .*model\.safetensors under another name \(a hard link or a bind mount\); choose another output path$/);
    expect(readFileSync(base).equals(Buffer.from(baseBytes))).toBe(true);
    expect(listDir(dir)).toEqual(['merged.safetensors', 'model.safetensors']);
  });

  it.skipIf(!canMount)('a bind mount of the base, which is written through', async () => {
    // A mounted --out is copied into on commit: the merged bytes went into the base itself, exit 0.
    const dir = temp.make({ 'model.safetensors': baseBytes, 'merged.safetensors': 'placeholder' });
    const adapter = temp.make({ 'adapter_config.json': adapterConfig, 'adapter_model.safetensors': adapterWeights });
    const base = join(dir, 'model.safetensors');
    const out = join(dir, 'merged.safetensors');
    const run = await runCliWithMounts(`mount --bind '${base}' '${out}'`, mergeArgs(base, adapter, out), dir);
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, new RegExp(`${out}: is input ${base} under another name \\(a hard link or a bind mount\\); choose another output path$`));
    expect(readFileSync(base).equals(Buffer.from(baseBytes))).toBe(true);
    expect(run.listing).toEqual(['merged.safetensors', 'model.safetensors']);
  });

  /** A folder holding a base folder (`model/`) and a PEFT adapter folder (`adapter/`), and an empty `mnt/` beside it. */
  function inputsFolder(): { top: string; inputs: string; base: string; adapter: string; mnt: string } {
    const top = temp.make({
      'inputs/model/model.safetensors': baseBytes, 'inputs/model/config.json': '{"model_type": "llama"}',
      'inputs/adapter/adapter_config.json': adapterConfig, 'inputs/adapter/adapter_model.safetensors': adapterWeights,
    });
    mkdirSync(join(top, 'mnt'));
    const inputs = join(top, 'inputs');
    return { top, inputs, base: join(inputs, 'model'), adapter: join(inputs, 'adapter'), mnt: join(top, 'mnt') };
  }

  it.skipIf(!canMount)('a bind mount of a folder holding the inputs, and a path inside an input folder through one', async () => {
    // `mnt` is `inputs` mounted again: --out mnt --overwrite emptied the mount point entry by entry,
    // deleting the base and the adapter (exit 0); the paths differ and mnt's device and inode were
    // compared only with the inputs themselves, not with the folders holding them.
    const { inputs, base, adapter, mnt } = inputsFolder();
    const before = contents(inputs);
    const mount = `mount --bind '${inputs}' '${mnt}'`;
    const merged = await runCliWithMounts(mount, mergeArgs(base, adapter, mnt, '--overwrite'), mnt);
    expect(merged.code, merged.stderr).toBe(2);
    expectOneLine(merged.stderr, new RegExp(`^error: ${mnt}: is folder ${inputs} under another path \\(a bind mount\\), which holds input ${base}; choose another output path$`));
    expect(contents(inputs)).toEqual(before);
    // resize writes a PEFT folder: the same rule.
    const resized = await runCliWithMounts(mount, ['resize', '--adapter', adapter, '--rank', '1', '--out', mnt, '--backend', 'cpu', '--overwrite'], mnt);
    expect(resized.code, resized.stderr).toBe(2);
    expectOneLine(resized.stderr, new RegExp(`^error: ${mnt}: is folder ${inputs} under another path \\(a bind mount\\), which holds input ${adapter}; choose another output path$`));
    // Into the adapter folder through the mount: a path inside an input folder, as by path.
    const inside = join(mnt, 'adapter', 'merged');
    const into = await runCliWithMounts(mount, mergeArgs(base, adapter, inside), mnt);
    expect(into.code, into.stderr).toBe(2);
    expectOneLine(into.stderr, new RegExp(`^error: ${inside}: would be written inside input ${adapter} \\(${mnt}/adapter is that folder under another path, a bind mount\\); choose another output path$`));
    expect(contents(inputs)).toEqual(before);
    // The base's own name in a mount of its folder, --out DIR/ included: the base itself.
    for (const out of [join(mnt, 'model', 'model.safetensors'), join(mnt, 'model') + '/']) {
      const same = await runCliWithMounts(mount, mergeArgs(join(base, 'model.safetensors'), adapter, out), mnt);
      expect(same.code, same.stderr).toBe(2);
      expectOneLine(same.stderr, new RegExp(`^error: ${out}: is input ${base}/model\\.safetensors under another name \\(a hard link or a bind mount\\); choose another output path$`));
    }
    expect(contents(inputs)).toEqual(before);
    // A Hugging Face snapshot's blob store mounted elsewhere: a folder holding the files the
    // snapshot's links lead to, though no input path names it.
    const repo = temp.make({ 'blobs/3f2a9c': baseBytes, 'blobs/77b1e0': '{"model_type": "llama"}' });
    const snapshot = join(repo, 'snapshots', '0123abcd');
    mkdirSync(snapshot, { recursive: true });
    symlinkSync('../../blobs/3f2a9c', join(snapshot, 'model.safetensors'));
    symlinkSync('../../blobs/77b1e0', join(snapshot, 'config.json'));
    const blobs = contents(join(repo, 'blobs'));
    const store = await runCliWithMounts(`mount --bind '${join(repo, 'blobs')}' '${mnt}'`, mergeArgs(snapshot, adapter, mnt, '--overwrite'), mnt);
    expect(store.code, store.stderr).toBe(2);
    expectOneLine(store.stderr, new RegExp(`^error: ${mnt}: is folder ${repo}/blobs under another path \\(a bind mount\\), which holds input ${snapshot}/(config\\.json|model\\.safetensors); choose another output path$`));
    expect(contents(join(repo, 'blobs'))).toEqual(blobs);
    // A new file beside the input folders is no input's: written.
    const beside = await runCliWithMounts(mount, mergeArgs(join(base, 'model.safetensors'), adapter, join(mnt, 'merged.safetensors')), mnt);
    expect(beside.code, beside.stderr).toBe(0);
    expect(beside.listing).toEqual(['adapter', 'merged.safetensors', 'model']);
  });

  it('a symbolic link to a folder holding the inputs, or into an input folder', async () => {
    const { top, inputs, base, adapter } = inputsFolder();
    const before = contents(inputs);
    const link = join(top, 'link');
    symlinkSync(inputs, link);
    const cases: [string[], string][] = [
      [mergeArgs(base, adapter, link, '--overwrite'), `${link}: holds input ${base}`],
      [mergeArgs(base, adapter, join(link, 'adapter', 'merged')), `${join(link, 'adapter', 'merged')}: is inside input folder ${adapter}`],
      [['resize', '--adapter', join(link, 'adapter'), '--rank', '1', '--out', inputs, '--backend', 'cpu', '--overwrite'], `${inputs}: holds input ${join(link, 'adapter')}`],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(args);
      expect(run.code, run.stderr).toBe(2);
      expectOneLine(run.stderr, new RegExp(`^error: ${message.replace(/[.*+?^$()|[\]\\]/g, '\\$&')}; choose another output path$`));
    }
    expect(contents(inputs)).toEqual(before);
  });
});

/** A base and a fine-tuned copy of it, four 1024 × 1024 q_proj weights each: an extract that runs a moment. */
function extractInputs(): { base: string; tuned: string } {
  const n = 1024;
  const g = seededRandom(5);
  const tensors: FixtureTensor[] = [];
  const tuned: FixtureTensor[] = [];
  for (let i = 0; i < 4; i++) {
    const name = `model.layers.${i}.self_attn.q_proj.weight`;
    const w = randomValues(n * n, g);
    tensors.push({ name, dtype: 'F32', shape: [n, n], data: w });
    tuned.push({ name, dtype: 'F32', shape: [n, n], data: w.map((x, j) => x + 0.01 * Math.sin(j)) });
  }
  const dir = temp.make({ 'base/model.safetensors': buildSafetensors(tensors), 'tuned/model.safetensors': buildSafetensors(tuned) });
  // Written a while ago: a rewrite within the file system's timestamp tick would not change the time.
  for (const file of ['base/model.safetensors', 'tuned/model.safetensors']) utimesSync(join(dir, file), new Date(2020, 0, 1), new Date(2020, 0, 1));
  return { base: join(dir, 'base', 'model.safetensors'), tuned: join(dir, 'tuned', 'model.safetensors') };
}

function extractArgs(inputs: { base: string; tuned: string }, out: string): string[] {
  return ['extract', '--base', inputs.base, '--tuned', inputs.tuned, '--rank', '8', '--out', out, '--backend', 'cpu'];
}

/** Rewrites the last 4 bytes of `path` in place (same size, new content), as dd conv=notrunc would. */
function rewriteInPlace(path: string): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from([0, 0, 0xc0, 0x3f]), 0, 4, statSync(path).size - 4);
  closeSync(fd);
}

describe('combine, resize and extract', () => {
  it('cancel on SIGHUP (a closed terminal) as on SIGINT: exit 130, one line, nothing left, not even the lock', async () => {
    const inputs = extractInputs();
    for (const out of ['extracted', 'extracted.safetensors']) {
      const outDir = temp.make();
      const child = spawn(process.execPath, [CLI, ...extractArgs(inputs, join(outDir, out))], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      let sent = false;
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (!sent && stderr.includes('backend:')) sent = child.kill('SIGHUP');
      });
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      expect(code, stderr).toBe(130);
      expect(errorLines(stderr)).toEqual([`error: extract cancelled; nothing was written to ${join(outDir, out)}`]);
      expect(listDir(outDir)).toEqual([]);
    }
  });

  it('a second signal while the cancelled extract cleans up does not end it early: exit 130, nothing left', async () => {
    // The handlers came off when the cancelled part ended; a signal before the exit killed the process.
    const inputs = extractInputs();
    for (const out of ['extracted', 'extracted.safetensors']) {
      const outDir = temp.make();
      const { code, stderr } = await runCliActingAtStart(extractArgs(inputs, join(outDir, out)), (child) => {
        child.kill('SIGHUP');
        const again = setInterval(() => (child.exitCode === null && child.signalCode === null ? child.kill('SIGINT') : clearInterval(again)), 2);
      });
      expect(code, stderr).toBe(130);
      expect(errorLines(stderr)).toEqual([`error: extract cancelled; nothing was written to ${join(outDir, out)}`]);
      expect(listDir(outDir)).toEqual([]);
    }
  });

  it('extract aborts when the base is rewritten in place while it runs: exit 1, nothing written', async () => {
    const inputs = extractInputs();
    const outDir = temp.make();
    const { code, stderr } = await runCliActingAtStart(extractArgs(inputs, join(outDir, 'extracted')), () => rewriteInPlace(inputs.base));
    expect(code, stderr).toBe(1);
    expectOneLine(stderr, new RegExp(`^error: ${inputs.base} was modified while the extract read it; nothing was written; run the extract again once it stays unchanged$`));
    expect(listDir(outDir)).toEqual([]);
  });

  it('the library\'s merge() aborts when the base is rewritten while it merges', async () => {
    const dir = temp.make({ 'model.safetensors': baseBytes });
    const base = join(dir, 'model.safetensors');
    utimesSync(base, new Date(2020, 0, 1), new Date(2020, 0, 1));
    const adapter = temp.make({ 'adapter_config.json': adapterConfig, 'adapter_model.safetensors': adapterWeights });
    const outDir = temp.make();
    let rewritten = false;
    const refused = await merge({
      base, adapters: [adapter], out: join(outDir, 'merged.safetensors'), backend: 'cpu',
      onProgress: () => {
        if (!rewritten) rewriteInPlace(base);
        rewritten = true;
      },
    }).then(() => undefined, (e: Error) => e);
    expect(rewritten).toBe(true);
    expect(refused?.message).toBe(`${base} was modified while the merge read it; nothing was written; run the merge again once it stays unchanged`);
    expect(listDir(outDir)).toEqual([]);
  });
});

describe('sample DIR', () => {
  it('refuses a DIR holding files the sample did not write, and changes none of them; a rerun into its own DIR works', async () => {
    // DIR/merged was replaced whole (the user's notes deleted) and DIR/base/model.safetensors
    // overwritten, exit 0; a stray DIR/base/tokenizer.json was merged into the sample.
    const dir = temp.make({ 'merged/notes.txt': 'my notes', 'base/model.safetensors': baseBytes });
    const before = contents(dir);
    const run = await runCli(['sample', dir, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(2);
    expectOneLine(run.stderr, new RegExp(`^error: ${dir}/merged/notes\\.txt: not written by loramerge sample, which writes base/, adapter/ and merged/ into ${dir}; name a new or empty folder$`));
    expect(contents(dir)).toEqual(before);
    const linked = temp.make();
    symlinkSync(join(dir, 'base'), join(linked, 'base'));
    const throughLink = await runCli(['sample', linked, '--backend', 'cpu']);
    expect(throughLink.code, throughLink.stderr).toBe(2);
    expectOneLine(throughLink.stderr, /base: not written by loramerge sample/);
    expect(contents(dir)).toEqual(before);

    const own = join(temp.make(), 'sample');
    for (let i = 0; i < 2; i++) {
      const again = await runCli(['sample', own, '--backend', 'cpu']);
      expect(again.code, again.stderr).toBe(0);
    }
    expect(listDir(own)).toEqual(['adapter', 'base', 'merged']);
    expect(listDir(join(own, 'merged'))).toEqual(['config.json', 'model.safetensors']);
  });

  it.skipIf(!canMount)('disk full while writing the sample: the file named, nothing left', async () => {
    const mnt = temp.make();
    const run = await runCliWithMounts(`mount -t tmpfs -o size=100k tmpfs '${mnt}'`, ['sample', join(mnt, 's'), '--backend', 'cpu'], mnt);
    expect(run.code, run.stderr).toBe(3);
    // The error named no file ("(write): no space left …") and the half-written sample stayed.
    expectOneLine(run.stderr, new RegExp(`^error: ${mnt}/s/base/model\\.safetensors: no space left on the device while writing \\(ENOSPC\\); free some space or choose another sample DIR$`));
    expect(run.listing).toEqual([]);
  });
});

describe('an input that cannot be read', () => {
  it.skipIf(!canDropPrivileges)('names the input and says to check its permissions, not to choose another --out', async () => {
    // Each was "cannot open (EACCES)" with no fix, or "permission denied while listing it (EACCES);
    // check the permissions of the folder or choose another --out", pointing at the wrong path.
    const dir = temp.make({ 'model.safetensors': baseBytes, 'adapter/adapter_config.json': adapterConfig, 'adapter/adapter_model.safetensors': adapterWeights });
    const outDir = join(dir, 'out');
    mkdirSync(outDir);
    for (const path of [dir, join(dir, 'adapter')]) chmodSync(path, 0o755);
    chmodSync(outDir, 0o777);
    const base = join(dir, 'model.safetensors');
    const adapter = join(dir, 'adapter');
    const cases: [string, number, string][] = [
      [base, 0o644, 'opening it'],
      [join(adapter, 'adapter_model.safetensors'), 0o644, 'opening it'],
      [join(adapter, 'adapter_config.json'), 0o644, 'reading it'],
      [adapter, 0o755, 'listing it'],
    ];
    for (const path of [base, join(adapter, 'adapter_model.safetensors'), join(adapter, 'adapter_config.json')]) chmodSync(path, 0o644);
    for (const [path, mode, doing] of cases) {
      chmodSync(path, 0);
      const run = await runCliUnprivileged(mergeArgs(base, adapter, join(outDir, 'merged.safetensors')));
      chmodSync(path, mode);
      expect(run.code, run.stderr).toBe(3);
      expectOneLine(run.stderr, new RegExp(`^error: ${path}: permission denied while ${doing} \\(EACCES\\); check its permissions \\(inputs are only read\\)$`));
      expect(listDir(outDir)).toEqual([]);
    }
  });
});
