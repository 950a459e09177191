/**
 * Files people end up with in place of the weights they meant to download, given to the CLI as a
 * base or adapter: an HTML or JSON error page, a Git LFS pointer, an archive, a PyTorch pickle, a
 * GGUF or safetensors file under the other format's name. Each is one line saying what the file
 * is and what to do, exit 1, and nothing is left at --out.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLine, listDir, mergeArgs, runCli } from './helpers/cli.js';
import { buildSafetensors, concatBytes, randomValues, seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf } from './helpers/gguf-builder.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const rand = seededRandom(71);
const d = 8;
const q = 'model.layers.0.self_attn.q_proj';
const baseBytes = buildSafetensors([{ name: `${q}.weight`, dtype: 'F16', shape: [d, d], data: randomValues(d * d, rand) }]);
const peft = {
  'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: ['q_proj'] }),
  'adapter_model.safetensors': buildSafetensors([
    { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [2, d], data: randomValues(2 * d, rand) },
    { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [d, 2], data: randomValues(d * 2, rand) },
  ]),
};

const ascii = (s: string) => new TextEncoder().encode(s);
/** A zip's first local file header naming `entry` (what `zip` and torch.save write first). */
const zipStart = (entry: string) => concatBytes([
  new Uint8Array([0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, entry.length, 0, 0, 0]),
  ascii(entry), new Uint8Array(64),
]);

const HTML = ascii('<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n');
const LFS = ascii('version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 123456789\n');
const JSON_ERROR = ascii('{"error":"Repository Not Found for url: https://huggingface.co/api/models/org/name."}');
const SEVEN_Z = concatBytes([new Uint8Array([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0, 4]), new Uint8Array(40)]);
const GZIP = concatBytes([new Uint8Array([0x1f, 0x8b, 8, 0]), new Uint8Array(40)]);
/** pickle protocol 2, as torch.save's legacy format starts. */
const PICKLE = concatBytes([new Uint8Array([0x80, 0x02, 0x8a, 0x0a]), new Uint8Array(40)]);

const cases: [string, Uint8Array, RegExp][] = [
  ['an HTML error page', HTML, /: an HTML page, not model weights \(an error or login page saved in place of the file\?\): download the file again$/],
  ['a Git LFS pointer', LFS, /: a Git LFS pointer, not the file it stands for .*: run "git lfs pull" in the clone, or download the file itself$/],
  ['a JSON error', JSON_ERROR, /: a JSON document, not model weights .*: download the file again$/],
  ['a zip archive', zipStart('my-lora/adapter_model.safetensors'), /: a zip archive: extract it and give the weight file \(or the adapter or model folder\) inside$/],
  ['a 7z archive', SEVEN_Z, /: a 7z archive: extract it/],
  ['a gzip archive', GZIP, /: a gzip archive \(\.gz, \.tar\.gz\): extract it/],
  ['a PyTorch zip checkpoint', zipStart('archive/data.pkl'), /: a PyTorch pickle checkpoint .*, not safetensors: .*convert it to safetensors first$/],
  ['a legacy PyTorch pickle', PICKLE, /: a PyTorch pickle checkpoint .*convert it to safetensors first$/],
  ['a GGUF file', buildGguf({ metadata: [], tensors: [] }), /: a GGUF file under a \.safetensors name: name it \.gguf/],
];

describe('a file that is not what its .safetensors name says', () => {
  for (const [what, bytes, message] of cases) {
    it(`${what}, as the adapter and as the base, is named for what it is`, async () => {
      const dir = temp.make({ 'base.safetensors': baseBytes, 'lora.safetensors': bytes, ...Object.fromEntries(Object.entries(peft).map(([k, v]) => [`peft/${k}`, v])) });
      const out = join(dir, 'merged.safetensors');
      const asAdapter = await runCli(mergeArgs(join(dir, 'base.safetensors'), join(dir, 'lora.safetensors'), out));
      expect(asAdapter.code, asAdapter.stderr).toBe(1);
      expectOneLine(asAdapter.stderr, new RegExp(`^error: ${join(dir, 'lora.safetensors').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}${message.source}`));
      writeFileSync(join(dir, 'model.safetensors'), bytes);
      const asBase = await runCli(mergeArgs(join(dir, 'model.safetensors'), join(dir, 'peft'), out));
      expect(asBase.code, asBase.stderr).toBe(1);
      expectOneLine(asBase.stderr, message);
      expect(listDir(dir)).not.toContain('merged.safetensors');
    });
  }
});

describe('a file that is not what its .gguf name says', () => {
  it('an HTML page saved as .gguf is named as one', async () => {
    const dir = temp.make({ 'model.gguf': HTML, ...Object.fromEntries(Object.entries(peft).map(([k, v]) => [`peft/${k}`, v])) });
    const run = await runCli(mergeArgs(join(dir, 'model.gguf'), join(dir, 'peft'), join(dir, 'merged.gguf')));
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /model\.gguf: an HTML page, not model weights .*: download the file again$/);
  });

  it('a safetensors model under a .gguf name is told to take its own name', async () => {
    const dir = temp.make({ 'model.gguf': baseBytes, ...Object.fromEntries(Object.entries(peft).map(([k, v]) => [`peft/${k}`, v])) });
    const run = await runCli(mergeArgs(join(dir, 'model.gguf'), join(dir, 'peft'), join(dir, 'merged.gguf')));
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /model\.gguf: a safetensors file under a \.gguf name: name it \.safetensors/);
    expect(listDir(dir)).not.toContain('merged.gguf');
  });
});

describe('an archive given by its own name', () => {
  for (const name of ['lora.zip', 'lora.7z', 'model.tar.gz']) {
    it(`${name} as the adapter and as the base says to extract it`, async () => {
      const dir = temp.make({ 'base.safetensors': baseBytes, [name]: zipStart('x'), ...Object.fromEntries(Object.entries(peft).map(([k, v]) => [`peft/${k}`, v])) });
      const out = join(dir, 'merged.safetensors');
      const asAdapter = await runCli(mergeArgs(join(dir, 'base.safetensors'), join(dir, name), out));
      expect(asAdapter.code, asAdapter.stderr).toBe(1);
      expectOneLine(asAdapter.stderr, new RegExp(`${name.replace(/\./g, '\\.')}: an archive; extract it and give the weight file \\(or the adapter or model folder\\) inside$`));
      const asBase = await runCli(mergeArgs(join(dir, name), join(dir, 'peft'), out));
      expect(asBase.code, asBase.stderr).toBe(1);
      expectOneLine(asBase.stderr, /: an archive; extract it/);
      const inspect = await runCli(['inspect', join(dir, name)]);
      expectOneLine(inspect.stderr, /: an archive; extract it/);
      expect(listDir(dir)).not.toContain('merged.safetensors');
    });
  }
});

describe('a safetensors file cut short inside its header', () => {
  it('says it may be a truncated download, and to download it again', async () => {
    const dir = temp.make({ 'base.safetensors': baseBytes, 'lora.safetensors': peft['adapter_model.safetensors'].slice(0, 60) });
    const run = await runCli(mergeArgs(join(dir, 'base.safetensors'), join(dir, 'lora.safetensors'), join(dir, 'merged.safetensors')));
    expect(run.code, run.stderr).toBe(1);
    expectOneLine(run.stderr, /lora\.safetensors: header claims \d+ bytes but the file has only 52 after the length prefix \(truncated download\?\): download the file again$/);
  });
});

describe('a pickle or another format given by its own name', () => {
  const quoted = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  it('names the file once, as the adapter and as the base; a pickle in a folder is named inside it', async () => {
    const dir = temp.make({
      'base.safetensors': baseBytes, 'lora.ckpt': PICKLE, 'pytorch_model.bin': PICKLE, 'model.onnx': ascii('onnx'),
      'peft-bin/adapter_config.json': peft['adapter_config.json'], 'peft-bin/adapter_model.bin': PICKLE,
      ...Object.fromEntries(Object.entries(peft).map(([k, v]) => [`peft/${k}`, v])),
    });
    const out = join(dir, 'merged.safetensors');
    const expectRefusal = async (base: string, adapter: string, line: string) => {
      const run = await runCli(mergeArgs(join(dir, base), join(dir, adapter), out));
      expect(run.code, run.stderr).toBe(1);
      expectOneLine(run.stderr, new RegExp(`^error: ${quoted(line)}$`));
    };
    await expectRefusal('base.safetensors', 'lora.ckpt',
      `${join(dir, 'lora.ckpt')}: pickle checkpoints are refused (loading one can run arbitrary code); convert it to .safetensors first`);
    await expectRefusal('base.safetensors', 'peft-bin',
      `${join(dir, 'peft-bin')}/adapter_model.bin: pickle checkpoints are refused (loading one can run arbitrary code); convert it to .safetensors first`);
    await expectRefusal('pytorch_model.bin', 'peft', `${join(dir, 'pytorch_model.bin')} is a pickle file; loramerge reads weights from .safetensors and .gguf files only (convert it to .safetensors first)`);
    await expectRefusal('model.onnx', 'peft', `${join(dir, 'model.onnx')} is neither a safetensors nor a GGUF file; loramerge reads weights from .safetensors and .gguf files only`);
    expect(listDir(dir)).not.toContain('merged.safetensors');
  });
});
