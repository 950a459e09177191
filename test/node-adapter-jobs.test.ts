/**
 * The adapter jobs of `loramerge/node` (combineLoras, resizeLora, extractLora) with the contract of
 * its merge(): sources are paths on disk (a PEFT folder, a kohya file, a model folder or file), an
 * `out` path is written as the command line writes it (a `.safetensors` name a kohya file, anything
 * else a PEFT folder) and refused as it refuses one (an existing folder without overwrite, an
 * output that is an input: the inputs stay as they were and nothing new appears), a Hub URL is read
 * with the Hugging Face token (hfToken, or HF_TOKEN sent to HF_ENDPOINT's Hub), and a script that
 * runs a job ends on its own, the CPU algebra on worker threads as the CPU merge runs. Every written adapter is read plainly and checked against float64
 * truth computed here.
 *
 * One local server is the Hub (its host made HF_TOKEN_HOSTS, `localhost:PORT`) and, under another
 * name (`hf-mirror.test:PORT`), the Hub HF_ENDPOINT names; the global fetch carries both to it over
 * plain HTTP (test/helpers/hub-transport.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { workerExecArgv } from '../src/engine/cpu/cpu-worker-pool.js';
import { MergeError } from '../src/errors.js';
import { combineLoras, extractLora, resizeLora } from '../src/node.js';
import { kohyaFile, peftFiles } from './helpers/adapter-fixtures.js';
import { REPO_ROOT } from './helpers/cli.js';
import { useFakeHub } from './helpers/fake-hub.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { kohyaUpdates, peftUpdates, relativeError } from './helpers/lora-truth.js';
import { dense, frob2, gaussian, minus, weightedSum, withSpectrum, type Dense } from './helpers/svd-reference.js';

const hubHosts = vi.hoisted(() => [] as string[]);
vi.mock('../src/io/hf-token-hosts.js', () => ({ HF_TOKEN_HOSTS: hubHosts }));

const temp = tempDirs();
const TOKEN = 'hf_NodeJobsTokenK3v8Zq1';
/** A module as a PEFT path and as the kohya key of the same module: combine groups them as one. */
const PROJ = 'down_blocks.1.attentions.0.proj_in';
const PROJ_KEY = 'lora_unet_down_blocks_1_attentions_0_proj_in';
const Q = 'model.layers.0.self_attn.q_proj';

/** A Gaussian matrix rounded to f32, as the files store it: the truth below is of these values. */
const f32Dense = (rows: number, cols: number, rand: () => number, scale = 1): Dense => dense(rows, cols, () => Math.fround(gaussian(rand) * scale));
const rand = seededRandom(20261206);
/** A PEFT folder: r 3, α 6 (scale 2), on PROJ. */
const PEFT = { b: f32Dense(24, 3, rand), a: f32Dense(3, 20, rand) };
/** A kohya file: r 2, α 3 (scale 1.5), on the same module. */
const KOHYA = { b: f32Dense(24, 2, rand), a: f32Dense(2, 20, rand) };
const PEFT_FILES = peftFiles([{ name: PROJ, ...PEFT }], { r: 3, lora_alpha: 6, target_modules: ['proj_in'] });
const KOHYA_BYTES = kohyaFile([{ name: PROJ_KEY, ...KOHYA, alpha: 3 }]);
/** An LLM-style PEFT adapter for the Hub: r 3, α 6 on q_proj. */
const HUB = { b: f32Dense(16, 3, rand), a: f32Dense(3, 12, rand) };
const HUB_FILES = peftFiles([{ name: Q, ...HUB }], { r: 3, lora_alpha: 6 });

/** Each module's α/r·B·A of a PEFT folder on disk. */
function folderUpdates(folder: string): Map<string, Dense> {
  return peftUpdates(readFileSync(join(folder, 'adapter_config.json'), 'utf8'), new Uint8Array(readFileSync(join(folder, 'adapter_model.safetensors'))));
}

/** What a call threw, a MergeError. */
async function refusal(run: Promise<unknown>): Promise<MergeError> {
  const e = await run.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(MergeError);
  return e as MergeError;
}

/** Every file under `dir` with its bytes, to show that a refused job changed nothing there. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) out[join(entry.parentPath, entry.name).slice(dir.length)] = readFileSync(join(entry.parentPath, entry.name)).toString('base64');
  }
  return out;
}

/** A folder holding the PEFT adapter (`one/`) and the kohya file (`two.safetensors`). */
const adaptersDir = () => temp.make({ ...Object.fromEntries(Object.entries(PEFT_FILES).map(([f, bytes]) => [`one/${f}`, bytes])), 'two.safetensors': KOHYA_BYTES });

const fake = useFakeHub(new Map(Object.entries(HUB_FILES).map(([f, bytes]) => [`gated/lora/resolve/main/${f}`, bytes])), TOKEN, hubHosts, temp);

describe('loramerge/node jobs from paths to an out path', () => {
  it('combineLoras cat of a PEFT folder and a kohya file writes the kohya file out names: Σ w·(α/r)·B·A', async () => {
    const dir = adaptersDir();
    const out = join(dir, 'combined.safetensors');
    const outcome = await combineLoras({
      adapters: [{ source: join(dir, 'one'), weight: 0.7 }, { source: join(dir, 'two.safetensors'), weight: -0.5 }],
      method: 'cat', out, backend: 'cpu',
    });
    expect([outcome.format, outcome.blobs, outcome.modules.map((m) => [m.name, m.rank])]).toEqual(['kohya', [], [[PROJ_KEY, 5]]]);
    const got = kohyaUpdates(new Uint8Array(readFileSync(out))).get(PROJ_KEY)!;
    expect(relativeError(got, weightedSum([{ ...PEFT, scale: 0.7 * 2 }, { ...KOHYA, scale: -0.5 * 1.5 }]))).toBeLessThan(1e-6);
    expect(readdirSync(dir).sort()).toEqual(['combined.safetensors', 'one', 'two.safetensors']);
  });

  it('resizeLora at full rank from a PEFT folder into a new folder reproduces (α/r)·B·A', async () => {
    const dir = adaptersDir();
    const out = join(dir, 'resized');
    const outcome = await resizeLora({ adapter: join(dir, 'one'), rule: { kind: 'rank', rank: 3 }, out, backend: 'cpu' });
    expect(outcome.format).toBe('peft');
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(relativeError(folderUpdates(out).get(PROJ)!, weightedSum([{ ...PEFT, scale: 2 }]))).toBeLessThan(1e-5);
  });

  it('extractLora at full rank from a model folder and a model file reproduces tuned − base, and names the base', async () => {
    const base = f32Dense(16, 12, rand, 0.1);
    const diff = weightedSum([{ b: f32Dense(16, 12, rand), a: dense(12, 12, (i, j) => (i === j ? 1 : 0)), scale: 0.05 }]);
    const tuned = dense(16, 12, (i, j) => Math.fround(base.data[i * 12 + j] + diff.data[i * 12 + j]));
    const model = (w: Dense) => buildSafetensors([{ name: `${Q}.weight`, dtype: 'F32', shape: [16, 12], data: w.data }]);
    const dir = temp.make({ 'base/model.safetensors': model(base), 'base/config.json': '{"_name_or_path": "org/tiny"}', 'tuned.safetensors': model(tuned) });
    const out = join(dir, 'extracted');
    await extractLora({ base: join(dir, 'base'), tuned: join(dir, 'tuned.safetensors'), rank: 12, out, backend: 'cpu' });
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe('org/tiny');
    // The truth is the difference of the two stored f32 models, in float64.
    const truth = dense(16, 12, (i, j) => tuned.data[i * 12 + j] - base.data[i * 12 + j]);
    expect(relativeError(folderUpdates(out).get(Q)!, truth)).toBeLessThan(1e-5);
  });
});

describe('loramerge/node jobs refuse an out path as the command line does, changing nothing', () => {
  it('an existing folder without overwrite (OUTPUT_EXISTS), then replaced with overwrite; an existing kohya file replaced', async () => {
    const dir = adaptersDir();
    const out = join(dir, 'resized');
    mkdirSync(out);
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const before = snapshot(dir);
    const e = await refusal(resizeLora({ adapter: join(dir, 'one'), rule: { kind: 'rank', rank: 3 }, out, backend: 'cpu' }));
    expect([e.code, e.message]).toEqual(['OUTPUT_EXISTS', `${out}: folder exists and is not empty; choose another out, or pass overwrite: true to replace it once the merge has succeeded`]);
    expect(snapshot(dir)).toEqual(before);
    await resizeLora({ adapter: join(dir, 'one'), rule: { kind: 'rank', rank: 3 }, out, overwrite: true, backend: 'cpu' });
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    // A kohya file is one file, replaced as the command line replaces it.
    const file = join(dir, 'resized.safetensors');
    writeFileSync(file, 'old');
    await resizeLora({ adapter: join(dir, 'two.safetensors'), rule: { kind: 'rank', rank: 2 }, out: file, backend: 'cpu' });
    expect(relativeError(kohyaUpdates(new Uint8Array(readFileSync(file))).get(PROJ_KEY)!, weightedSum([{ ...KOHYA, scale: 1.5 }]))).toBeLessThan(1e-5);
  });

  it('out that is an input file, or a folder inside an input folder (OUTPUT_IS_INPUT)', async () => {
    const dir = adaptersDir();
    const before = snapshot(dir);
    const input = join(dir, 'two.safetensors');
    const asInput = await refusal(resizeLora({ adapter: input, rule: { kind: 'rank', rank: 1 }, out: input, backend: 'cpu' }));
    expect([asInput.code, asInput.message]).toEqual(['OUTPUT_IS_INPUT', `${input}: output would overwrite input ${input}; choose another output path`]);
    const inside = join(dir, 'one', 'combined');
    const intoInput = await refusal(combineLoras({ adapters: [join(dir, 'one'), join(dir, 'one')], method: 'cat', out: inside, backend: 'cpu' }));
    expect([intoInput.code, intoInput.message]).toEqual(['OUTPUT_IS_INPUT', `${inside}: is inside input folder ${join(dir, 'one')}; choose another output path`]);
    expect(snapshot(dir)).toEqual(before);
  });

  it('a format the out path contradicts, and a kohya input into a folder, before anything is written', async () => {
    const dir = adaptersDir();
    const before = snapshot(dir);
    const peftIntoFile = await refusal(resizeLora({ adapter: join(dir, 'one'), rule: { kind: 'rank', rank: 1 }, format: 'peft', out: join(dir, 'x.safetensors') }));
    expect([peftIntoFile.code, peftIntoFile.message]).toEqual(['BAD_ARGUMENT', `format is peft, but out "${join(dir, 'x.safetensors')}" names a kohya file (a name ending in .safetensors); leave format out, or name a PEFT folder`]);
    const kohyaIntoFolder = await refusal(resizeLora({ adapter: join(dir, 'two.safetensors'), rule: { kind: 'rank', rank: 1 }, out: join(dir, 'resized'), backend: 'cpu' }));
    const gguf = join(dir, 'resized.gguf');
    const ggufOut = await refusal(resizeLora({ adapter: join(dir, 'one'), rule: { kind: 'rank', rank: 1 }, out: gguf, backend: 'cpu' }));
    // A PEFT adapter into a llama.cpp LoRA GGUF needs the model it is for (test/node-gguf-lora-jobs.test.ts writes one).
    expect([ggufOut.code, ggufOut.message]).toEqual(['BAD_ARGUMENT', `${join(dir, 'one')}: a peft adapter's module names are not llama.cpp's tensor names, and renaming them needs the GGUF model it is for: give it as base MODEL.gguf`]);
    expect(kohyaIntoFolder.message).toBe(`${join(dir, 'two.safetensors')}: a kohya adapter's module names (lora_unet_…) cannot be written as a PEFT folder; give out a name ending in .safetensors (a kohya file) instead of "${join(dir, 'resized')}"`);
    expect(snapshot(dir)).toEqual(before);
  });

  it('a cancel from the progress listener leaves nothing at out', async () => {
    const dir = adaptersDir();
    const before = snapshot(dir);
    const controller = new AbortController();
    const e = await refusal(combineLoras({
      adapters: [join(dir, 'one'), join(dir, 'two.safetensors')], method: 'svd', rank: 2, out: join(dir, 'combined.safetensors'),
      backend: 'cpu', signal: controller.signal, onProgress: () => controller.abort(),
    }));
    expect([e.code, e.message]).toEqual(['ABORTED', 'combine cancelled']);
    expect(snapshot(dir)).toEqual(before);
    expect(readdirSync(dir).sort()).toEqual(['one', 'two.safetensors']);
  });
  it('an input file rewritten while the job reads it (INPUT_CHANGED) leaves nothing at out', async () => {
    const dir = adaptersDir();
    const input = join(dir, 'two.safetensors');
    let rewritten = false;
    const e = await refusal(resizeLora({
      adapter: input, rule: { kind: 'rank', rank: 1 }, out: join(dir, 'resized.safetensors'), backend: 'cpu',
      onProgress: () => {
        if (!rewritten) writeFileSync(input, Buffer.concat([KOHYA_BYTES, Buffer.from(' ')]));
        rewritten = true;
      },
    }));
    expect([e.code, e.message]).toEqual(['INPUT_CHANGED', `${input} changed size from ${KOHYA_BYTES.byteLength} to ${KOHYA_BYTES.byteLength + 1} bytes while the resize read it; nothing was written; run the resize again once it stays unchanged`]);
    expect(readdirSync(dir).sort()).toEqual(['one', 'two.safetensors']);
  });
});

describe('loramerge/node jobs read Hub URLs with the Hugging Face token', () => {
  const hubUrl = (path: string) => `https://localhost:${fake.hub.port}/${path}`;

  it('combineLoras of a gated repository URL with hfToken: every request carries it, and the folder written is exact', async () => {
    const out = join(temp.make(), 'combined');
    await combineLoras({ adapters: [{ source: hubUrl('gated/lora'), weight: 0.5 }], method: 'cat', hfToken: TOKEN, out, backend: 'cpu' });
    expect(relativeError(folderUpdates(out).get(Q)!, weightedSum([{ ...HUB, scale: 0.5 * 2 }]))).toBeLessThan(1e-6);
    expect(new Set(fake.hub.seen.map((s) => s.path))).toEqual(new Set(['gated/lora/resolve/main/adapter_config.json', 'gated/lora/resolve/main/adapter_model.safetensors']));
    expect(fake.hub.seen.map((s) => s.authorization)).toEqual(fake.hub.seen.map(() => `Bearer ${TOKEN}`));
  });

  it('resizeLora of a repository on HF_ENDPOINT\'s Hub sends HF_TOKEN there', async () => {
    vi.stubEnv('HF_ENDPOINT', `https://hf-mirror.test:${fake.hub.port}`);
    vi.stubEnv('HF_TOKEN', TOKEN);
    const { blobs } = await resizeLora({ adapter: `https://hf-mirror.test:${fake.hub.port}/gated/lora`, rule: { kind: 'rank', rank: 3 }, backend: 'cpu' });
    const file = (path: string) => blobs.find((b) => b.path === path)!.blob;
    const updates = peftUpdates(await file('adapter_config.json').text(), new Uint8Array(await file('adapter_model.safetensors').arrayBuffer()));
    expect(relativeError(updates.get(Q)!, weightedSum([{ ...HUB, scale: 2 }]))).toBeLessThan(1e-5);
    expect(fake.hub.seen.length).toBeGreaterThan(0);
    expect(fake.hub.seen.map((s) => s.authorization)).toEqual(fake.hub.seen.map(() => `Bearer ${TOKEN}`));
  });
});

describe('a script that runs the jobs from loramerge/node', () => {
  it('ends on its own, with nothing disposed by the script (the built package, in a child node)', () => {
    const dir = adaptersDir();
    const node = pathToFileURL(join(REPO_ROOT, 'dist/node.js')).href;
    const script = `
      const { combineLoras, resizeLora } = await import(${JSON.stringify(node)});
      const dir = process.argv[1];
      await combineLoras({ adapters: [dir + '/one', dir + '/two.safetensors'], method: 'svd', rank: 2, out: dir + '/combined.safetensors' });
      await resizeLora({ adapter: dir + '/one', rule: { kind: 'rank', rank: 2 }, out: dir + '/resized' });
    `;
    // A timeout (a pool, a worker or Dawn kept alive) fails the test.
    execFileSync(process.execPath, ['--input-type=module', '-e', script, dir], { encoding: 'utf8', timeout: 60_000 });
    expect(existsSync(join(dir, 'combined.safetensors'))).toBe(true);
    expect(readdirSync(join(dir, 'resized')).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });
});

describe('the jobs of loramerge/node on the CPU', () => {
  it('run on worker threads, one per core (at most 8), and a script that extracts, is cancelled and fails still ends on its own, run from a file or by --input-type=module -e', () => {
    // A planted rank-8 difference between a 512 × 1024 base and its tuned weights, both F32: the
    // randomized SVD's products (512 × 1024 by 18 columns) are large enough for the threads.
    const rand = seededRandom(97);
    const base = f32Dense(512, 1024, rand, 0.02);
    const planted = [4, 3, 2, 1.5, 1, 0.5, 0.25, 0.125];
    const diff = withSpectrum(512, 1024, planted, rand);
    const tuned = dense(512, 1024, (i, j) => Math.fround(base.data[i * 1024 + j] + diff.data[i * 1024 + j]));
    const model = (w: Dense) => buildSafetensors([{ name: `${Q}.weight`, dtype: 'F32', shape: [512, 1024], data: w.data }]);
    const dir = temp.make({ 'base.safetensors': model(base), 'tuned.safetensors': model(tuned) });
    const node = pathToFileURL(join(REPO_ROOT, 'dist/node.js')).href;
    const script = `
      const { extractLora } = await import(${JSON.stringify(node)});
      const dir = process.argv.at(-1);
      const job = (more) => extractLora({ base: dir + '/base.safetensors', tuned: dir + '/tuned.safetensors', rank: 8, backend: 'cpu', ...more });
      const done = await job({ out: dir + '/extracted', overwrite: true });
      const controller = new AbortController();
      const cancelled = await job({ out: dir + '/cancelled', signal: controller.signal, onProgress: () => controller.abort() }).catch((e) => e.code);
      const failed = await job({ out: { name: 'broken', createFile: async () => { throw new Error('the disk is full'); }, commit: async () => {}, abort: async () => {} } })
        .catch((e) => e.message);
      console.log(JSON.stringify({ backend: done.backend, singularValues: done.modules[0].singularValues.slice(0, 8), cancelled, failed }));
    `;
    writeFileSync(join(dir, 'run.mjs'), script);
    // A timeout (a worker thread kept alive) fails the test.
    const report = JSON.parse(execFileSync(process.execPath, [join(dir, 'run.mjs'), dir], { encoding: 'utf8', timeout: 60_000 }));
    // Worker threads inherit the process's Node options, and refuse --input-type: the pool leaves it out.
    const evaluated = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script, dir], { encoding: 'utf8', timeout: 60_000 }));
    expect(evaluated).toEqual(report);
    const threads = Math.min(availableParallelism(), 8);
    expect(report.backend).toBe(threads > 1 ? `CPU (WebAssembly SIMD, ${threads} threads)` : 'CPU (WebAssembly SIMD, 1 thread)');
    expect(report.cancelled).toBe('ABORTED');
    expect(report.failed).toMatch(/the disk is full/);
    expect(existsSync(join(dir, 'cancelled'))).toBe(false);
    const stored = minus(tuned, base);
    const got = folderUpdates(join(dir, 'extracted')).get(Q)!;
    expect(Math.sqrt(frob2(minus(got, stored)) / frob2(stored))).toBeLessThan(2e-5);
    expect(report.singularValues.map((s: number, i: number) => s / planted[i])).toEqual(planted.map(() => expect.closeTo(1, 5)));
  });

  it('a worker thread gets the process\'s Node options less --input-type, in either spelling', () => {
    expect(workerExecArgv(['--input-type=module', '--no-warnings', '-e', 'await 1'])).toEqual(['--no-warnings', '-e', 'await 1']);
    expect(workerExecArgv(['--input-type', 'module', '--max-old-space-size=4096'])).toEqual(['--max-old-space-size=4096']);
  });
});
