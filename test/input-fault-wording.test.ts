/**
 * Broken inputs whose refusal used to name the wrong thing: a config that is a login page, a Git
 * LFS pointer or empty (said "Unexpected token" instead of what it is), a shard index that names a
 * file outside its folder (said "missing"), a tensor in two shards (said "misplaced"), and a kohya
 * LoRA refused by merge that `inspect` listed as a base model, an input path behind a link loop or
 * a locked folder (said "no such file or folder"). Through the built CLI: one line, nothing at --out.
 */
import { chmodSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLine, listDir, mergeArgs, runCli } from './helpers/cli.js';
import { canDropPrivileges, runCliUnprivileged } from './helpers/cli-faults.js';
import { MergeError } from '../src/errors.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { bytesSource } from '../src/io/memory-source.js';
import { merge } from '../src/node.js';
import { buildSafetensors, randomValues, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const rand = seededRandom(7);
const d = 8;
const r = 2;
const q = 'model.layers.0.self_attn.q_proj';
const k = 'model.layers.0.self_attn.k_proj';
const qWeight: FixtureTensor = { name: `${q}.weight`, dtype: 'F32', shape: [d, d], data: randomValues(d * d, rand) };
const kWeight: FixtureTensor = { name: `${k}.weight`, dtype: 'F32', shape: [d, d], data: randomValues(d * d, rand) };
const PEFT_WEIGHTS = buildSafetensors([
  { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: randomValues(r * d, rand) },
  { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [d, r], data: randomValues(d * r, rand) },
]);
const PEFT_CONFIG = JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4, target_modules: ['q_proj'] });
const LOGIN_PAGE = '<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Sign in to continue</body></html>\n';
const LFS_POINTER = 'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 475\n';

/** Merges `adapter` into `base` (a folder or a file under it) into a fresh folder; the run and what that folder holds after. */
async function mergeInto(base: string, adapter: string): Promise<{ code: number; stderr: string; left: string[] }> {
  const outDir = temp.make();
  const run = await runCli(mergeArgs(base, adapter, join(outDir, 'merged')));
  return { ...run, left: listDir(outDir) };
}

describe('a JSON file that is no JSON is named for what it is', () => {
  const cases: [string, string, RegExp][] = [
    ['a login page', LOGIN_PAGE, /: an HTML page, not JSON \(an error or login page saved in place of the file\?\): download the file again$/],
    ['a Git LFS pointer', LFS_POINTER, /: a Git LFS pointer, not the file it stands for \(the repository was cloned without Git LFS\?\): run "git lfs pull" in the clone, or download the file itself$/],
    ['an empty file', '', /: empty, not JSON \(an interrupted download\?\): download the file again$/],
  ];

  it.each(cases)('adapter_config.json that is %s', async (_, text, message) => {
    const base = temp.make({ 'model.safetensors': buildSafetensors([qWeight]) });
    const adapter = temp.make({ 'adapter_config.json': text, 'adapter_model.safetensors': PEFT_WEIGHTS });
    const run = await mergeInto(base, adapter);
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, new RegExp(`^error: ${adapter}/adapter_config\\.json${message.source}`));
    expect(run.left).toEqual([]);
  });

  it.each(cases)('a model folder\'s model.safetensors.index.json that is %s', async (_, text, message) => {
    const base = temp.make({
      'model-00001-of-00002.safetensors': buildSafetensors([qWeight]),
      'model-00002-of-00002.safetensors': buildSafetensors([kWeight]),
      'model.safetensors.index.json': text,
    });
    const adapter = temp.make({ 'adapter_config.json': PEFT_CONFIG, 'adapter_model.safetensors': PEFT_WEIGHTS });
    const run = await mergeInto(base, adapter);
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, new RegExp(`^error: ${base}/model\\.safetensors\\.index\\.json${message.source}`));
    expect(run.left).toEqual([]);
  });

  it('a config cut short still says where JSON.parse stopped', async () => {
    const base = temp.make({ 'model.safetensors': buildSafetensors([qWeight]) });
    const adapter = temp.make({ 'adapter_config.json': PEFT_CONFIG.slice(0, 30), 'adapter_model.safetensors': PEFT_WEIGHTS });
    const run = await mergeInto(base, adapter);
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, new RegExp(`^error: ${adapter}/adapter_config\\.json: not valid JSON \\(.+\\)$`));
  });
});

describe('a sharded model\'s index and shards that disagree', () => {
  const adapter = () => temp.make({ 'adapter_config.json': PEFT_CONFIG, 'adapter_model.safetensors': PEFT_WEIGHTS });
  const index = (map: Record<string, string>) => JSON.stringify({ metadata: { total_size: 2 * 4 * d * d }, weight_map: map });

  it('a shard named outside the folder (../, an absolute path) is refused as such, not as missing, and never read', async () => {
    for (const outside of ['../model.safetensors', '/tmp/model.safetensors']) {
      // A file of that name beside the folder: the index may not reach it.
      const parent = temp.make({
        'model.safetensors': buildSafetensors([qWeight]),
        'sub/model-00001-of-00001.safetensors': buildSafetensors([kWeight]),
        'sub/model.safetensors.index.json': index({ [qWeight.name]: outside, [kWeight.name]: 'model-00001-of-00001.safetensors' }),
      });
      const base = join(parent, 'sub');
      const run = await mergeInto(base, adapter());
      expect(run.code, run.stderr).toBe(1);
      expectOneLine(run.stderr, new RegExp(`^error: ${base}/model\\.safetensors\\.index\\.json: tensor "${q}\\.weight" maps to "${outside.replace(/\./g, '\\.')}", outside the model's folder; an index names shards of its own folder$`));
      expect(run.left).toEqual([]);
    }
  });

  it('a tensor in two shards, one of them where the index puts it, is named as in both', async () => {
    const base = temp.make({
      'model-00001-of-00002.safetensors': buildSafetensors([qWeight, kWeight]),
      'model-00002-of-00002.safetensors': buildSafetensors([kWeight]),
      'model.safetensors.index.json': index({ [qWeight.name]: 'model-00001-of-00002.safetensors', [kWeight.name]: 'model-00002-of-00002.safetensors' }),
    });
    const run = await mergeInto(base, adapter());
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, new RegExp(`^error: ${base}: tensor "${k}\\.weight" is in both model-00002-of-00002\\.safetensors and model-00001-of-00002\\.safetensors$`));
    expect(run.left).toEqual([]);
  });

  it('a tensor in one shard that the index puts in another is still named as misplaced', async () => {
    const base = temp.make({
      'model-00001-of-00002.safetensors': buildSafetensors([qWeight]),
      'model-00002-of-00002.safetensors': buildSafetensors([kWeight]),
      'model.safetensors.index.json': index({ [qWeight.name]: 'model-00002-of-00002.safetensors', [kWeight.name]: 'model-00001-of-00002.safetensors' }),
    });
    const run = await mergeInto(base, adapter());
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /model\.safetensors\.index\.json puts tensor "model\.layers\.0\.self_attn\.q_proj\.weight" in model-00002-of-00002\.safetensors but it is in model-00001-of-00002\.safetensors$/);
  });
});

describe('inspect of a kohya LoRA that merge refuses', () => {
  const m = 'lora_unet_down_blocks_0_attentions_0_proj_in';
  const factors: FixtureTensor[] = [
    { name: `${m}.lora_down.weight`, dtype: 'F32', shape: [r, d], data: randomValues(r * d, rand) },
    { name: `${m}.lora_up.weight`, dtype: 'F32', shape: [d, r], data: randomValues(d * r, rand) },
  ];

  it('names the refusal (an α of several values), exit 1, instead of listing the LoRA as a base model', async () => {
    const dir = temp.make({ 'lora.safetensors': buildSafetensors([...factors, { name: `${m}.alpha`, dtype: 'F32', shape: [r], data: [4, 4] }]) });
    const run = await runCli(['inspect', join(dir, 'lora.safetensors')]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toBe('');
    expectOneLine(run.stderr, new RegExp(`module "${m}" has an alpha that is not one finite number: ${m}\\.alpha is F32 \\(2\\) with 2 values$`));
  });

  it('still lists a model whose tensors only partly fit adapter names as a base model', async () => {
    // A VAE-like block named `.up.weight` beside plain weights and biases: a model, not an adapter.
    const dir = temp.make({ 'model.safetensors': buildSafetensors([
      { name: 'decoder.mid.up.weight', dtype: 'F32', shape: [d, d], data: randomValues(d * d, rand) },
      { name: 'decoder.mid.proj.weight', dtype: 'F32', shape: [d, d], data: randomValues(d * d, rand) },
      { name: 'decoder.mid.proj.bias', dtype: 'F32', shape: [d], data: randomValues(d, rand) },
    ]) });
    const run = await runCli(['inspect', join(dir, 'model.safetensors')]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/model\.safetensors: base model \(/);
  });
});

describe('an input path that is there but cannot be followed', () => {
  const peft = () => temp.make({ 'adapter_config.json': PEFT_CONFIG, 'adapter_model.safetensors': PEFT_WEIGHTS });

  it('a link loop and a file used as a folder are named as such, not as missing (base, adapter, inspect)', async () => {
    const dir = temp.make({ 'model.safetensors': buildSafetensors([qWeight]) });
    symlinkSync('loop-b', join(dir, 'loop-a'));
    symlinkSync('loop-a', join(dir, 'loop-b'));
    const loop = join(dir, 'loop-a');
    const underFile = join(dir, 'model.safetensors', 'adapter');
    const looped = new RegExp(`^error: ${loop}: too many levels of symbolic links while reading its status \\(ELOOP\\); check the input path$`);
    const notFolder = new RegExp(`^error: ${underFile}: a part of the path is not a folder while reading its status \\(ENOTDIR\\); check the input path$`);
    const runs = await Promise.all([
      runCli(mergeArgs(loop, peft(), join(dir, 'merged.safetensors'))),
      runCli(mergeArgs(join(dir, 'model.safetensors'), loop, join(dir, 'merged.safetensors'))),
      runCli(['inspect', loop]),
      runCli(mergeArgs(join(dir, 'model.safetensors'), underFile, join(dir, 'merged.safetensors'))),
    ]);
    for (const [i, run] of runs.entries()) {
      expect(run.code, run.stderr).toBe(1); // the input is not there as typed, as a missing one (exit 3 is the filesystem refusing)
      expectOneLine(run.stderr, i === 3 ? notFolder : looped);
    }
    expect(listDir(dir)).toEqual(['loop-a', 'loop-b', 'model.safetensors']);
  });

  it.skipIf(!canDropPrivileges)('a folder this user may not enter is "permission denied", not missing', async () => {
    const locked = temp.make({ 'lora/adapter_config.json': PEFT_CONFIG, 'lora/adapter_model.safetensors': PEFT_WEIGHTS });
    chmodSync(locked, 0o700); // others may not enter it
    const base = temp.make({ 'model.safetensors': buildSafetensors([qWeight]) });
    chmodSync(base, 0o755);
    const outDir = temp.make();
    chmodSync(outDir, 0o777);
    const run = await runCliUnprivileged(mergeArgs(join(base, 'model.safetensors'), join(locked, 'lora'), join(outDir, 'merged.safetensors')));
    expect(run.code, run.stderr).not.toBe(0);
    expectOneLine(run.stderr, new RegExp(`^error: ${locked}/lora: permission denied while reading its status \\(EACCES\\); check its permissions \\(inputs are only read\\)$`));
    expect(listDir(outDir)).toEqual([]);
  });
});

describe('the code of a weight file that is something else', () => {
  const ascii = (s: string) => new TextEncoder().encode(s);
  /** torch.save's legacy format: pickle protocol 2, then its magic number (long enough to pass for a header length). */
  const pickle = new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, ...new Uint8Array(40)]);
  const page = ascii(LOGIN_PAGE);
  const refusal = async (open: () => Promise<unknown>): Promise<MergeError> => {
    const e = await open().then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(MergeError);
    return e as MergeError;
  };

  it('is PICKLE_REFUSED for a pickle and UNSUPPORTED_FORMAT for a page, read as safetensors or GGUF, not a header-length or truncation code', async () => {
    for (const [bytes, code] of [[pickle, 'PICKLE_REFUSED'], [page, 'UNSUPPORTED_FORMAT'], [page.subarray(0, 40), 'UNSUPPORTED_FORMAT']] as const) {
      for (const [name, open] of [['model.safetensors', openSafetensors], ['model.gguf', openGguf]] as const) {
        const e = await refusal(() => open(bytesSource(bytes, name)));
        expect([e.code, e.message]).toEqual([code, expect.stringMatching(new RegExp(`^${name.replace('.', '\\.')}: (a PyTorch pickle checkpoint|an HTML page)`))]);
      }
    }
  });

  it('reaches a caller of merge() from loramerge/node, with the CLI\'s line', async () => {
    const dir = temp.make({ 'model.safetensors': pickle, 'lora/adapter_config.json': PEFT_CONFIG, 'lora/adapter_model.safetensors': PEFT_WEIGHTS });
    const e = await refusal(() => merge({ base: join(dir, 'model.safetensors'), adapters: [join(dir, 'lora')], out: join(dir, 'merged.safetensors'), backend: 'cpu' }));
    expect(e.code).toBe('PICKLE_REFUSED');
    expect(e.message).toMatch(/model\.safetensors: a PyTorch pickle checkpoint .*convert it to safetensors first$/);
    expect(listDir(dir)).toEqual(['lora', 'model.safetensors']);
  });
});
