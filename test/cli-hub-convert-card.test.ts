/**
 * `convert` of a PEFT adapter given by its Hugging Face Hub URL writes the general.* keys that
 * llama.cpp's convert_lora_to_gguf.py writes for the downloaded folder: the script reads README.md,
 * config.json and generation_config.json beside the adapter (gguf-lora-card.ts), so convert fetches
 * them from the folder's download links too. Each expectation is the same convert of the same files
 * in a folder of the repository's name on disk (test/gguf-lora-general.test.ts holds that one to
 * the script's keys, worked out by hand). A file the Hub does not have (HTTP 404) is left out, as a
 * folder without it; one that cannot be fetched (HTTP 500), or is not UTF-8, is refused in one line
 * naming it, nothing written.
 *
 * The Hub's hosts are the local server (test/helpers/fake-hub.ts), as in test/cli-hub-adapters.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { listDir, oneErrorLine, runCliInProcess } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { readGguf } from './helpers/gguf-builder.js';
import { LLAMA, splitF16Llama } from './helpers/gguf-models.js';
import { useFakeHub } from './helpers/fake-hub.js';

const hubHosts = vi.hoisted(() => [] as string[]);
vi.mock('../src/io/hf-token-hosts.js', () => ({ HF_TOKEN_HOSTS: hubHosts }));

const temp = tempDirs();
const BASE_PART = 'tiny-llama-F16-00001-of-00002.gguf';
const { hidden: h } = LLAMA;

/** A PEFT LoRA of the tiny llama's q_proj (h × h), r 8. */
const rand = seededRandom(7);
const f = (n: number) => Float64Array.from({ length: n }, () => 0.01 * (rand() - 0.5));
const ADAPTER: Record<string, string | Uint8Array> = {
  'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', r: 8, lora_alpha: 16, target_modules: ['q_proj'] }),
  'adapter_model.safetensors': buildSafetensors([
    { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [8, h], data: f(8 * h) },
    { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [h, 8], data: f(h * 8) },
  ]),
};

/** What a PEFT repository holds beside the adapter: its model card, and a config and generation config. */
const CARD: Record<string, string | Uint8Array> = {
  'README.md': [
    '---', 'base_model: meta-llama/Llama-3.2-1B', 'library_name: peft', 'license: llama3.2', 'pipeline_tag: text-generation', 'tags:',
    '- base_model:adapter:meta-llama/Llama-3.2-1B', '- lora', '---', '', '# Model Card', '',
  ].join('\n'),
  'config.json': JSON.stringify({ _name_or_path: 'meta-llama/Llama-3.2-1B-Instruct', architectures: ['LlamaForCausalLM'] }),
  'generation_config.json': JSON.stringify({ do_sample: true, temperature: 0.6, top_p: 0.9 }),
};

const REPO = 'Llama-3.2-1B-Instruct-lora';
const hubFiles = (repo: string, files: Record<string, string | Uint8Array>): [string, string | Uint8Array][] =>
  Object.entries(files).map(([name, body]) => [`org/${repo}/resolve/main/${name}`, body]);

const HUB_FILES = new Map<string, Uint8Array | string>([
  ...hubFiles(REPO, { ...ADAPTER, ...CARD }),
  ...hubFiles('bare-lora', ADAPTER),
  ...hubFiles('busy-lora', { ...ADAPTER, ...CARD }),
  ...hubFiles('latin1-lora', { ...ADAPTER, 'README.md': Uint8Array.from([0x2d, 0x2d, 0x2d, 0x0a, 0x6c, 0x69, 0x63, 0x65, 0x6e, 0x73, 0x65, 0x3a, 0x20, 0xe9, 0x0a, 0x2d, 0x2d, 0x2d, 0x0a]) }),
]);

// busy-lora's config.json answers HTTP 500 (a Hub that is failing), its README.md is there.
const fake = useFakeHub(HUB_FILES, 'hf_unused', hubHosts, temp, (path) => (path === 'org/busy-lora/resolve/main/config.json' ? 500 : undefined));
const hubUrl = (path: string) => `https://localhost:${fake.hub.port}/${path}`;

/** Converts `adapter` (a path or URL) against the tiny llama's split GGUF in a fresh folder; the run, the folder and the output. */
async function convert(adapter: string | ((dir: string) => string), files: Record<string, string | Uint8Array> = {}) {
  const dir = temp.make({ ...splitF16Llama().files, ...files });
  const out = join(dir, 'lora.gguf');
  const run = await runCliInProcess(['convert', '--adapter', typeof adapter === 'string' ? adapter : adapter(dir), '--base', join(dir, BASE_PART), '--out', out]);
  return { run, dir, out };
}

/** The GGUF's keys in order, loramerge's own (which name the input as given) left out. */
function keysOf(out: string): [string, unknown][] {
  return [...readGguf(readFileSync(out)).metadata].filter(([k]) => !k.startsWith('loramerge')).map(([k, v]) => [k, v.value]);
}

/** The same convert of `files` in a folder named `folder` on disk: its keys. */
async function localKeys(folder: string, files: Record<string, string | Uint8Array>): Promise<[string, unknown][]> {
  const local = await convert((dir) => join(dir, folder), Object.fromEntries(Object.entries(files).map(([k, v]) => [`${folder}/${k}`, v])));
  expect(local.run.code, local.run.stderr).toBe(0);
  return keysOf(local.out);
}

describe('convert of a Hub adapter reads README.md, config.json and generation_config.json beside it, as the script reads the downloaded folder', () => {
  it('a repository with all three: the general.* keys of the same folder on disk (license, base model, tags, sampling)', async () => {
    const { run, out } = await convert(hubUrl(`org/${REPO}`));
    expect(run.code, run.stderr).toBe(0);
    const keys = keysOf(out);
    expect(keys).toEqual(await localKeys(REPO, { ...ADAPTER, ...CARD }));
    const names = keys.map(([k]) => k);
    expect(names).toEqual(expect.arrayContaining(['general.license', 'general.base_model.0.name', 'general.tags', 'general.sampling.temp', 'general.sampling.top_p']));
    expect(new Set(fake.hub.seen.map((s) => s.path))).toEqual(new Set(Object.keys({ ...ADAPTER, ...CARD }).map((name) => `org/${REPO}/resolve/main/${name}`)));
  });

  it('a repository with none of them (HTTP 404 each): the keys of a folder without them, from its name alone', async () => {
    const { run, out } = await convert(hubUrl('org/bare-lora'));
    expect(run.code, run.stderr).toBe(0);
    const keys = keysOf(out);
    expect(keys).toEqual(await localKeys('bare-lora', ADAPTER));
    expect(keys.map(([k]) => k)).not.toContain('general.license');
    expect(fake.hub.seen.map((s) => s.path)).toEqual(expect.arrayContaining(['README.md', 'config.json', 'generation_config.json'].map((name) => `org/bare-lora/resolve/main/${name}`)));
  });

  it('one that the Hub fails to send (HTTP 500): refused in one line naming it, nothing written', async () => {
    const { run, dir } = await convert(hubUrl('org/busy-lora'));
    expect(run.code).toBe(1);
    expect(oneErrorLine(run)).toMatch(new RegExp(`^error: ${hubUrl('org/busy-lora')}: config\\.json beside the adapter could not be fetched \\(${hubUrl('org/busy-lora/resolve/main/config.json')}: HTTP 500 .*\\); convert_lora_to_gguf\\.py reads it from the downloaded folder for the general\\.\\* keys`));
    expect(listDir(dir)).not.toContain('lora.gguf');
  });

  it('a README.md that is not UTF-8: refused as the same file on disk is, nothing written', async () => {
    const { run, dir } = await convert(hubUrl('org/latin1-lora'));
    expect(run.code).toBe(1);
    expect(oneErrorLine(run)).toMatch(new RegExp(`^error: ${hubUrl('org/latin1-lora')}: README\\.md is not UTF-8 \\(.*\\), and convert_lora_to_gguf\\.py stops on it`));
    expect(listDir(dir)).not.toContain('lora.gguf');
  });
});
