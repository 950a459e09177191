/**
 * The library's merge() with a Hugging Face Hub URL as an adapter, as the command line takes it: a
 * repository, a `tree/REV/SUBFOLDER` page and a `resolve/…/adapter_model.safetensors` link are read
 * as the PEFT folder at `resolve/REV/…`, in merge() from loramerge/node (with the token) and in the
 * browser entry's merge() (no token), each exact against W + w·(α/r)·B·A in float64; a repository
 * as the base, a repository without adapter_config.json, and PEFT weights whose repository has no
 * config are refused in one message, as on the command line.
 *
 * The Hub's hosts (HF_TOKEN_HOSTS) are made the local server here (`localhost:PORT`), and the
 * global fetch carries `https://localhost:PORT/…` to it over plain HTTP (test/helpers/hub-transport.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { merge as browserMerge } from '../src/merge.js';
import { merge as nodeMerge } from '../src/node-merge.js';
import { MergeError } from '../src/errors.js';
import { decodeSafetensors, tempDirs } from './helpers/fixtures.js';
import { BASE, mergedAgainstTruth, PEFT_CONFIG, PEFT_WEIGHTS, useFakeHub } from './helpers/fake-hub.js';
import { sdxlKohyaPair } from './helpers/sdxl-kohya-pair.js';

const hubHosts = vi.hoisted(() => [] as string[]);
vi.mock('../src/io/hf-token-hosts.js', () => ({ HF_TOKEN_HOSTS: hubHosts }));

const temp = tempDirs();
const TOKEN = 'hf_LibraryHubTokenR7q2Wx5';
const { base: SDXL_BASE, kohya: KOHYA, mergedTruth: kohyaTruth } = sdxlKohyaPair(8, 20261216);

const HUB_FILES = new Map<string, Uint8Array | string>([
  ['org/tiny-lora/resolve/main/adapter_config.json', PEFT_CONFIG],
  ['org/tiny-lora/resolve/main/adapter_model.safetensors', PEFT_WEIGHTS],
  ['org/multi/resolve/main/sub/adapter_config.json', PEFT_CONFIG],
  ['org/multi/resolve/main/sub/adapter_model.safetensors', PEFT_WEIGHTS],
  ['gated/tiny-lora/resolve/main/adapter_config.json', PEFT_CONFIG],
  ['gated/tiny-lora/resolve/main/adapter_model.safetensors', PEFT_WEIGHTS],
  ['org/weights-only/resolve/main/adapter_model.safetensors', PEFT_WEIGHTS],
  ['org/kohya/resolve/main/adapter_model.safetensors', KOHYA],
  ['org/empty/resolve/main/README.md', '# no adapter here'],
]);

const fake = useFakeHub(HUB_FILES, TOKEN, hubHosts, temp);

const hubUrl = (path: string) => `https://localhost:${fake.hub.port}/${path}`;
const paths = () => new Set(fake.hub.seen.map((s) => s.path));
const readdir = (dir: string) => readdirSync(dir).sort();

/** The merged file's weights equal W + w·(α/r)·B·A rounded once to F16, every one. */
function expectExact(bytes: Uint8Array, weight: number): void {
  for (const [name, got, want] of mergedAgainstTruth(bytes, weight)) {
    expect(got.length, name).toBe(want.length);
    expect(got, name).toEqual(want);
  }
}

/** What a merge() call threw. */
async function refusal(run: Promise<unknown>): Promise<MergeError> {
  const e = await run.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(MergeError);
  return e as MergeError;
}

describe('merge() from loramerge/node', () => {
  it('a repository URL is read as resolve/main/{adapter_config.json, adapter_model.safetensors}: the merge is exact', async () => {
    const dir = temp.make({ 'base.safetensors': BASE });
    const out = join(dir, 'merged.safetensors');
    await nodeMerge({ base: join(dir, 'base.safetensors'), adapters: [{ source: hubUrl('org/tiny-lora'), weight: 0.75 }], out, backend: 'cpu' });
    expectExact(new Uint8Array(readFileSync(out)), 0.75);
    expect(paths()).toEqual(new Set(['org/tiny-lora/resolve/main/adapter_config.json', 'org/tiny-lora/resolve/main/adapter_model.safetensors']));
  });

  it('a tree/main/sub URL (as a URL object) reads that subfolder; the merge is exact', async () => {
    const dir = temp.make({ 'base.safetensors': BASE });
    const out = join(dir, 'merged.safetensors');
    await nodeMerge({ base: join(dir, 'base.safetensors'), adapters: [{ source: new URL(hubUrl('org/multi/tree/main/sub')), weight: -1.5 }], out, backend: 'cpu' });
    expectExact(new Uint8Array(readFileSync(out)), -1.5);
    expect(paths()).toEqual(new Set(['org/multi/resolve/main/sub/adapter_config.json', 'org/multi/resolve/main/sub/adapter_model.safetensors']));
  });

  it('a gated repository is read with hfToken, sent with both files\' requests', async () => {
    const { blobs } = await nodeMerge({ base: new File([BASE as Uint8Array<ArrayBuffer>], 'model.safetensors'), adapters: [hubUrl('gated/tiny-lora')], hfToken: TOKEN, backend: 'cpu' });
    expectExact(new Uint8Array(await blobs[0].blob.arrayBuffer()), 1);
    expect(paths()).toEqual(new Set(['gated/tiny-lora/resolve/main/adapter_config.json', 'gated/tiny-lora/resolve/main/adapter_model.safetensors']));
    expect(fake.hub.seen.every((s) => s.authorization === `Bearer ${TOKEN}`)).toBe(true);
  });

  it('a repository URL as the base: refused saying to give one file\'s URL, before any request; nothing at out', async () => {
    const dir = temp.make();
    const e = await refusal(nodeMerge({ base: hubUrl('org/tiny-lora'), adapters: [hubUrl('org/multi/tree/main/sub')], out: join(dir, 'm.safetensors'), backend: 'cpu' }));
    expect(e.code).toBe('BAD_ARGUMENT');
    expect(e.message).toBe(`${hubUrl('org/tiny-lora')}: names a Hugging Face repository or folder; the base takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its path (only an adapter is read from a repository's URL)`);
    expect(fake.hub.seen).toEqual([]);
    expect(readdir(dir)).toEqual([]);
  });

  it('a repository without adapter_config.json: NOT_FOUND naming what was looked for where, and what to give instead', async () => {
    const dir = temp.make({ 'base.safetensors': BASE });
    const url = hubUrl('org/empty');
    const e = await refusal(nodeMerge({ base: join(dir, 'base.safetensors'), adapters: [url], out: join(dir, 'm.safetensors'), backend: 'cpu' }));
    expect(e.code).toBe('NOT_FOUND');
    expect(e.message).toBe(`${url}: no PEFT adapter there: looked for adapter_config.json and adapter_model.safetensors at ${hubUrl('org/empty/resolve/main/')} (adapter_config.json: HTTP 404); a single-file LoRA is given by its file's download link, such as ${hubUrl('org/empty/resolve/main/')}FILE.safetensors`);
    expect(readdir(dir)).toEqual(['base.safetensors']);
  });

  it('a resolve link of PEFT weights whose repository has no config: refused saying the repository has none there', async () => {
    const dir = temp.make({ 'base.safetensors': BASE });
    const url = hubUrl('org/weights-only/resolve/main/adapter_model.safetensors');
    const e = await refusal(nodeMerge({ base: join(dir, 'base.safetensors'), adapters: [url], out: join(dir, 'm.safetensors'), backend: 'cpu' }));
    expect(e.code).toBe('BAD_CONFIG');
    expect(e.message).toBe(`${url}: is a PEFT adapter's weights, which need its adapter_config.json (r and lora_alpha) beside them, and the repository has none there (${hubUrl('org/weights-only/resolve/main/adapter_config.json')}: HTTP 404); download the weights and their adapter_config.json into a folder and give the folder's path`);
    expect(readdir(dir)).toEqual(['base.safetensors']);
  });

  it('a resolve link of a kohya file named adapter_model.safetensors, its config absent, merges as one file', async () => {
    const url = hubUrl('org/kohya/resolve/main/adapter_model.safetensors');
    const { blobs } = await nodeMerge({ base: new File([SDXL_BASE as Uint8Array<ArrayBuffer>], 'sdxl.safetensors'), adapters: [{ source: url, weight: 0.5 }], backend: 'cpu' });
    const merged = decodeSafetensors(new Uint8Array(await blobs[0].blob.arrayBuffer())).tensors;
    for (const [name, want] of kohyaTruth(0.5)) expect(Array.from(merged.get(name)!.values), name).toEqual(Array.from(want));
    expect(paths()).toEqual(new Set(['org/kohya/resolve/main/adapter_config.json', 'org/kohya/resolve/main/adapter_model.safetensors']));
  });
});

describe('merge() of the browser entry (src/merge.ts)', () => {
  it('a repository URL and a tree/main/sub URL are each read as their PEFT folder: the merges are exact', async () => {
    for (const [url, folder] of [[hubUrl('org/tiny-lora'), 'org/tiny-lora/resolve/main'], [hubUrl('org/multi/tree/main/sub/'), 'org/multi/resolve/main/sub']]) {
      fake.hub.seen.length = 0;
      const { blobs } = await browserMerge({ base: new File([BASE as Uint8Array<ArrayBuffer>], 'model.safetensors'), adapters: [{ source: url, weight: 0.5 }], backend: 'cpu' });
      expect(blobs.map((b) => b.path)).toEqual(['model.safetensors']);
      expectExact(new Uint8Array(await blobs[0].blob.arrayBuffer()), 0.5);
      expect(paths(), url).toEqual(new Set([`${folder}/adapter_config.json`, `${folder}/adapter_model.safetensors`]));
    }
  });

  it('sends no token, even with HF_TOKEN set: a gated repository answers 401', async () => {
    vi.stubEnv('HF_TOKEN', TOKEN);
    const e = await refusal(browserMerge({ base: new File([BASE as Uint8Array<ArrayBuffer>], 'model.safetensors'), adapters: [hubUrl('gated/tiny-lora')], backend: 'cpu' }));
    expect(e.message).toMatch(new RegExp(`^${hubUrl('gated/tiny-lora/resolve/main/adapter_config.json')}: HTTP 401 Unauthorized for the file; `));
    expect(fake.hub.seen.map((s) => s.authorization)).toEqual([undefined]);
  });

  it('refuses a repository URL as the base, and a repository without adapter_config.json, as loramerge/node does', async () => {
    const asBase = await refusal(browserMerge({ base: hubUrl('org/tiny-lora/tree/main'), adapters: [hubUrl('org/tiny-lora')], backend: 'cpu' }));
    expect(asBase.message).toBe(`${hubUrl('org/tiny-lora/tree/main')}: names a Hugging Face repository or folder; the base takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its files (only an adapter is read from a repository's URL)`);
    expect(fake.hub.seen).toEqual([]);
    const empty = await refusal(browserMerge({ base: new File([BASE as Uint8Array<ArrayBuffer>], 'model.safetensors'), adapters: [hubUrl('org/empty')], backend: 'cpu' }));
    expect(empty.code).toBe('NOT_FOUND');
    expect(empty.message).toMatch(new RegExp(`^${hubUrl('org/empty')}: no PEFT adapter there: looked for adapter_config.json and adapter_model.safetensors at `));
  });
});
