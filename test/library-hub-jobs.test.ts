/**
 * The library's adapter jobs with Hugging Face Hub URLs, as merge() and the command line take them:
 * combineLoras and resizeLora read a repository, `tree/REV/SUBFOLDER` page or weights link as the
 * PEFT folder at `resolve/REV/…` (checked against Σ w·(α/r)·B·A in float64), with merge()'s
 * refusals; extractLora, whose inputs are models, refuses a repository or `tree/` URL as merge()
 * refuses one as the base. A `blob/` page (HTML about a file) and a `tree/` page where one file is
 * read are refused by merge() (both entries) and the jobs before any request, naming the URL and,
 * for a `blob/` page, the file's `resolve/` link.
 *
 * One local server is the Hub (its host made HF_TOKEN_HOSTS, `localhost:PORT`) and, under another
 * name (`hf-mirror.test:PORT`), the Hub HF_ENDPOINT names; the global fetch carries both to it over
 * plain HTTP (test/helpers/hub-transport.ts), and every request it sees is counted.
 */
import { describe, expect, it, vi } from 'vitest';
import { combineLoras, extractLora, resizeLora } from '../src/adapter-jobs.js';
import { ggufLoraCardOf } from '../src/adapter-ops/convert.js';
import { MergeError } from '../src/errors.js';
import { hubAdapterFolder, openHubAdapter } from '../src/io/hub-adapters.js';
import { merge as browserMerge } from '../src/merge.js';
import { merge as nodeMerge } from '../src/node-merge.js';
import { peftFiles } from './helpers/adapter-fixtures.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { BASE, useFakeHub } from './helpers/fake-hub.js';
import { peftUpdates, relativeError } from './helpers/lora-truth.js';
import { dense, gaussian, weightedSum, type Dense } from './helpers/svd-reference.js';

const hubHosts = vi.hoisted(() => [] as string[]);
vi.mock('../src/io/hf-token-hosts.js', () => ({ HF_TOKEN_HOSTS: hubHosts }));

const temp = tempDirs();
const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.0.self_attn.v_proj';

/** A Gaussian matrix rounded to f32, as the adapter file stores it: the truth below is of these values. */
const f32Dense = (rows: number, cols: number, rand: () => number): Dense => dense(rows, cols, () => Math.fround(gaussian(rand)));
const rand = seededRandom(20261205);
/** Adapter one: r 3, α 6 (scale 2), on q_proj and v_proj. */
const ONE = { q: { b: f32Dense(24, 3, rand), a: f32Dense(3, 20, rand) }, v: { b: f32Dense(12, 3, rand), a: f32Dense(3, 20, rand) } };
/** Adapter two: r 2, α 1 (scale 0.5), on q_proj. */
const TWO = { q: { b: f32Dense(24, 2, rand), a: f32Dense(2, 20, rand) } };
const ONE_FILES = peftFiles([{ name: Q, ...ONE.q }, { name: V, ...ONE.v }], { r: 3, lora_alpha: 6 });
const TWO_FILES = peftFiles([{ name: Q, ...TWO.q }], { r: 2, lora_alpha: 1 });

const HUB_FILES = new Map<string, Uint8Array | string>([
  ...Object.entries(ONE_FILES).map(([f, bytes]) => [`org/one/resolve/main/${f}`, bytes] as const),
  ...Object.entries(TWO_FILES).map(([f, bytes]) => [`org/two/resolve/v2/sub/${f}`, bytes] as const),
  ['org/weights-only/resolve/main/adapter_model.safetensors', ONE_FILES['adapter_model.safetensors']],
  ['org/empty/resolve/main/README.md', '# no adapter here'],
  ['org/base/resolve/main/model.safetensors', BASE],
]);

const fake = useFakeHub(HUB_FILES, 'hf_unused', hubHosts, temp);

const hubUrl = (path: string) => `https://localhost:${fake.hub.port}/${path}`;
const mirrorUrl = (path: string) => `https://hf-mirror.test:${fake.hub.port}/${path}`;
const paths = () => new Set(fake.hub.seen.map((s) => s.path));
const blobText = (blobs: { path: string; blob: Blob }[], path: string) => blobs.find((b) => b.path === path)!.blob;

/** Each module's α/r·B·A of a PEFT folder the job gave back as Blobs. */
async function updatesOf(blobs: { path: string; blob: Blob }[]): Promise<Map<string, Dense>> {
  const config = await blobText(blobs, 'adapter_config.json').text();
  return peftUpdates(config, new Uint8Array(await blobText(blobs, 'adapter_model.safetensors').arrayBuffer()));
}

/** What a call threw, a MergeError. */
async function refusal(run: Promise<unknown>): Promise<MergeError> {
  const e = await run.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(MergeError);
  return e as MergeError;
}

const baseFile = () => new File([BASE as Uint8Array<ArrayBuffer>], 'model.safetensors');

describe('combineLoras and resizeLora with Hub adapter URLs', () => {
  it('combineLoras cat of a repository URL and a tree/v2/sub URL: the factors give Σ w·(α/r)·B·A', async () => {
    const { blobs, format, modules } = await combineLoras({
      adapters: [{ source: hubUrl('org/one'), weight: 0.7 }, { source: new URL(hubUrl('org/two/tree/v2/sub')), weight: -0.5 }],
      method: 'cat', backend: 'cpu',
    });
    expect(format).toBe('peft');
    expect(modules.map((m) => [m.name, m.rank])).toEqual([[Q, 5], [V, 3]]);
    const updates = await updatesOf(blobs);
    expect(relativeError(updates.get(Q)!, weightedSum([{ ...ONE.q, scale: 0.7 * 2 }, { ...TWO.q, scale: -0.5 * 0.5 }]))).toBeLessThan(1e-6);
    expect(relativeError(updates.get(V)!, weightedSum([{ ...ONE.v, scale: 0.7 * 2 }]))).toBeLessThan(1e-6);
    expect(paths()).toEqual(new Set([
      'org/one/resolve/main/adapter_config.json', 'org/one/resolve/main/adapter_model.safetensors',
      'org/two/resolve/v2/sub/adapter_config.json', 'org/two/resolve/v2/sub/adapter_model.safetensors',
    ]));
  });

  // convert_lora_to_gguf.py names a LoRA GGUF (general.name …) by the adapter's folder: a Hub URL's
  // last segment is that folder only for a repository or a subfolder, not for a revision or a file.
  it('convert takes a folder name from a repository URL or a tree/REV/SUB page, none from a tree/REV page or a weights link', async () => {
    const folderOf = async (text: string) => (await ggufLoraCardOf((await openHubAdapter(text, hubAdapterFolder(text, undefined)!, {}, undefined)).files)).folder;
    expect(await folderOf(hubUrl('org/one'))).toBe('one');
    expect(await folderOf(hubUrl('org/two/tree/v2/sub'))).toBe('sub');
    expect(await folderOf(hubUrl('org/one/tree/main'))).toBeUndefined();
    expect(await folderOf(hubUrl('org/one/tree/main/'))).toBeUndefined();
    expect(await folderOf(hubUrl('org/one/resolve/main/adapter_model.safetensors'))).toBeUndefined();
  });

  it('resizeLora at full rank of a weights link reproduces (α/r)·B·A of the folder it names', async () => {
    const { blobs, modules } = await resizeLora({ adapter: hubUrl('org/one/resolve/main/adapter_model.safetensors'), rule: { kind: 'rank', rank: 3 }, backend: 'cpu' });
    expect(modules.map((m) => [m.name, m.rank])).toEqual([[Q, 3], [V, 3]]);
    const updates = await updatesOf(blobs);
    expect(relativeError(updates.get(Q)!, weightedSum([{ ...ONE.q, scale: 2 }]))).toBeLessThan(1e-5);
    expect(relativeError(updates.get(V)!, weightedSum([{ ...ONE.v, scale: 2 }]))).toBeLessThan(1e-5);
    expect(paths()).toEqual(new Set(['org/one/resolve/main/adapter_config.json', 'org/one/resolve/main/adapter_model.safetensors']));
  });

  it('refuses as merge() does: a repository without adapter_config.json, and PEFT weights whose repository has none', async () => {
    const empty = await refusal(combineLoras({ adapters: [hubUrl('org/one'), hubUrl('org/empty')], method: 'cat', backend: 'cpu' }));
    expect(empty.code).toBe('NOT_FOUND');
    expect(empty.message).toBe(`${hubUrl('org/empty')}: no PEFT adapter there: looked for adapter_config.json and adapter_model.safetensors at ${hubUrl('org/empty/resolve/main/')} (adapter_config.json: HTTP 404); a single-file LoRA is given by its file's download link, such as ${hubUrl('org/empty/resolve/main/')}FILE.safetensors`);
    const url = hubUrl('org/weights-only/resolve/main/adapter_model.safetensors');
    const lone = await refusal(resizeLora({ adapter: url, rule: { kind: 'rank', rank: 1 }, backend: 'cpu' }));
    expect(lone.code).toBe('BAD_CONFIG');
    expect(lone.message).toBe(`${url}: is a PEFT adapter's weights, which need its adapter_config.json (r and lora_alpha) beside them, and the repository has none there (${hubUrl('org/weights-only/resolve/main/adapter_config.json')}: HTTP 404); download the weights and their adapter_config.json into a folder and give the folder's path`);
  });
});

describe('extractLora', () => {
  it('refuses a repository URL as the base and a tree/ URL as the tuned model, saying to give one file\'s URL, before any request', async () => {
    const file = hubUrl('org/base/resolve/main/model.safetensors');
    const asBase = await refusal(extractLora({ base: hubUrl('org/base'), tuned: file, rank: 2, backend: 'cpu' }));
    expect(asBase.code).toBe('BAD_ARGUMENT');
    expect(asBase.message).toBe(`${hubUrl('org/base')}: names a Hugging Face repository or folder; base takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its files (only an adapter is read from a repository's URL)`);
    const asTuned = await refusal(extractLora({ base: file, tuned: hubUrl('org/base/tree/main'), rank: 2, backend: 'cpu' }));
    expect(asTuned.message).toBe(`${hubUrl('org/base/tree/main')}: names a Hugging Face repository or folder; tuned takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its files (only an adapter is read from a repository's URL)`);
    expect(fake.hub.seen).toEqual([]);
  });
});

describe('a blob/ page, or a tree/ page where one file is read: refused before any request', () => {
  const page = () => hubUrl('org/one/blob/main/adapter_model.safetensors');
  const pageRefusal = () => `${page()}: is Hugging Face's web page about the file, not the file; give its download link ${hubUrl('org/one/resolve/main/adapter_model.safetensors')}`;

  it('merge() of the browser entry and from loramerge/node: a blob/ page as an adapter or the base', async () => {
    const basePage = hubUrl('org/base/blob/main/model.safetensors');
    const basePageRefusal = `${basePage}: is Hugging Face's web page about the file, not the file; give its download link ${hubUrl('org/base/resolve/main/model.safetensors')}`;
    for (const [run, message] of [
      [() => browserMerge({ base: baseFile(), adapters: [hubUrl('org/one'), { source: page(), weight: 0.5 }], backend: 'cpu' }), pageRefusal()],
      [() => nodeMerge({ base: baseFile(), adapters: [hubUrl('org/one'), { source: new URL(page()), weight: 0.5 }], backend: 'cpu' }), pageRefusal()],
      [() => browserMerge({ base: basePage, adapters: [hubUrl('org/one')], backend: 'cpu' }), basePageRefusal],
      [() => nodeMerge({ base: basePage, adapters: [hubUrl('org/one')], backend: 'cpu' }), basePageRefusal],
    ] as const) {
      const e = await refusal(run());
      expect([e.code, e.message]).toEqual(['BAD_ARGUMENT', message]);
    }
    expect(fake.hub.seen).toEqual([]);
  });

  it('the jobs: combineLoras, resizeLora and extractLora refuse a blob/ page, naming its resolve/ link', async () => {
    for (const run of [
      () => combineLoras({ adapters: [hubUrl('org/one'), page()], method: 'cat', backend: 'cpu' }),
      () => resizeLora({ adapter: page(), rule: { kind: 'rank', rank: 1 }, backend: 'cpu' }),
      () => extractLora({ base: hubUrl('org/base/resolve/main/model.safetensors'), tuned: page(), rank: 1, backend: 'cpu' }),
    ]) {
      const e = await refusal(run());
      expect([e.code, e.message]).toEqual(['BAD_ARGUMENT', pageRefusal()]);
    }
    expect(fake.hub.seen).toEqual([]);
  });

  it('a dataset\'s tree/ page as an adapter, and a blob/ page in a list of URLs (a folder\'s files), are refused naming them', async () => {
    const tree = hubUrl('datasets/org/one/tree/main');
    const asAdapter = await refusal(browserMerge({ base: baseFile(), adapters: [tree], backend: 'cpu' }));
    expect(asAdapter.message).toBe(`${tree}: names a folder; adapters[0] takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its files`);
    const inList = await refusal(resizeLora({ adapter: [hubUrl('org/one/resolve/main/adapter_config.json'), page()], rule: { kind: 'rank', rank: 1 }, backend: 'cpu' }));
    expect(inList.message).toBe(pageRefusal());
    const listAsBase = await refusal(nodeMerge({ base: [hubUrl('org/base/tree/main')], adapters: [hubUrl('org/one')], backend: 'cpu' }));
    expect(listAsBase.message).toBe(`${hubUrl('org/base/tree/main')}: names a Hugging Face repository or folder; the base[0] takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its path (only an adapter is read from a repository's URL)`);
    expect(fake.hub.seen).toEqual([]);
  });

  it('on HF_ENDPOINT\'s Hub under a path of its own (named blob), merge() from loramerge/node links the file\'s resolve/', async () => {
    vi.stubEnv('HF_ENDPOINT', `https://hf-mirror.test:${fake.hub.port}/blob`);
    const url = mirrorUrl('blob/org/one/blob/main/adapter_model.safetensors');
    const e = await refusal(nodeMerge({ base: baseFile(), adapters: [url], backend: 'cpu' }));
    expect(e.message).toBe(`${url}: is Hugging Face's web page about the file, not the file; give its download link ${mirrorUrl('blob/org/one/resolve/main/adapter_model.safetensors')}`);
    expect(fake.hub.seen).toEqual([]);
  });
});
