/**
 * HF_ENDPOINT, the Hub mirror huggingface_hub users set: a repository, `tree/` or `blob/` URL on its
 * host (under its path) is a Hub URL as huggingface.co's are, and the token goes to its origin, over
 * its own scheme (http too, as huggingface_hub sends it there), to no other host, and not past a
 * redirect to another host (a CDN, or huggingface.co itself); huggingface.co keeps the token as
 * before; a value that is no http(s) URL is refused in one line naming the variable. Merges are
 * exact against W + w·(α/r)·B·A in float64.
 *
 * Three local servers: the mirror, the Hub (its host made HF_TOKEN_HOSTS) and a CDN; the global
 * fetch carries any host on their ports to them over plain HTTP (test/helpers/hub-transport.ts), so
 * the mirror is `hf-mirror.test:PORT` here and `other.test:PORT` is another host on the same server.
 */
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { MergeError } from '../src/errors.js';
import { parseHfEndpoint } from '../src/io/hf-endpoint.js';
import { merge as nodeMerge } from '../src/node-merge.js';
import { oneErrorLine, runCliInProcess } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';
import { BASE, expectExactCliMerge, mergedAgainstTruth, PEFT_CONFIG, PEFT_WEIGHTS, startFakeHub, type FakeHub } from './helpers/fake-hub.js';
import { localFetch, stubTokenlessHome } from './helpers/hub-transport.js';

const hubHosts = vi.hoisted(() => [] as string[]);
vi.mock('../src/io/hf-token-hosts.js', () => ({ HF_TOKEN_HOSTS: hubHosts }));

const temp = tempDirs();
const TOKEN = 'hf_MirrorTokenZ3k8Pq1Vb6';
const BEARER = `Bearer ${TOKEN}`;

let mirror: FakeHub, hub: FakeHub, cdn: FakeHub;
const mirrorUrl = (path: string, scheme = 'https', host = 'hf-mirror.test') => `${scheme}://${host}:${mirror.port}/${path}`;
const hubUrl = (path: string) => `https://localhost:${hub.port}/${path}`;

const adapterFiles = (folder: string): [string, string | Uint8Array][] => [[`${folder}/adapter_config.json`, PEFT_CONFIG], [`${folder}/adapter_model.safetensors`, PEFT_WEIGHTS]];

beforeAll(async () => {
  cdn = await startFakeHub(new Map([['signed/adapter_model.safetensors', PEFT_WEIGHTS]]), TOKEN);
  hub = await startFakeHub(new Map([...adapterFiles('org/tiny-lora/resolve/main'), ...adapterFiles('gated/tiny-lora/resolve/main')]), TOKEN);
  // The mirror's weights of `gated/to-cdn` redirect to the CDN, those of `gated/to-hub` to huggingface.co's host.
  mirror = await startFakeHub(new Map([
    ...adapterFiles('gated/tiny-lora/resolve/main'),
    ...adapterFiles('hub/org/multi/resolve/main/sub'),
    ['gated/to-cdn/resolve/main/adapter_config.json', PEFT_CONFIG],
    ['gated/to-hub/resolve/main/adapter_config.json', PEFT_CONFIG],
    ['gated/base/resolve/main/model.safetensors', BASE],
  ]), TOKEN, (path) => ({
    'gated/to-cdn/resolve/main/adapter_model.safetensors': `https://cdn.test:${cdn.port}/signed/adapter_model.safetensors`,
    'gated/to-hub/resolve/main/adapter_model.safetensors': hubUrl('org/tiny-lora/resolve/main/adapter_model.safetensors'),
  } as Record<string, string>)[path]);
  hubHosts.push(`localhost:${hub.port}`);
});

afterAll(async () => {
  for (const server of [mirror, hub, cdn]) await server.close();
  temp.removeAll();
});

beforeEach(() => {
  vi.stubGlobal('fetch', localFetch(() => [mirror.port, hub.port, cdn.port]));
  stubTokenlessHome(() => temp.make());
  for (const server of [mirror, hub, cdn]) server.seen.length = 0;
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.unstubAllEnvs();
});

const cli = runCliInProcess;

const oneError = oneErrorLine;


const paths = (server: FakeHub) => new Set(server.seen.map((s) => s.path));
const authorizations = (server: FakeHub) => new Set(server.seen.map((s) => s.authorization));

describe('a Hub URL on HF_ENDPOINT\'s host', () => {
  it('a repository URL (HF_ENDPOINT with a trailing slash) is read as its PEFT folder, with the token: exact', async () => {
    vi.stubEnv('HF_ENDPOINT', `https://hf-mirror.test:${mirror.port}/`);
    vi.stubEnv('HF_TOKEN', TOKEN);
    await expectExactCliMerge(temp, mirrorUrl('gated/tiny-lora'), 0.75);
    expect(paths(mirror)).toEqual(new Set(['gated/tiny-lora/resolve/main/adapter_config.json', 'gated/tiny-lora/resolve/main/adapter_model.safetensors']));
    expect(authorizations(mirror)).toEqual(new Set([BEARER]));
  });

  it('under HF_ENDPOINT\'s path: merge() from loramerge/node reads a tree/main/sub URL as that folder: exact', async () => {
    vi.stubEnv('HF_ENDPOINT', `https://hf-mirror.test:${mirror.port}/hub//`);
    const url = mirrorUrl('hub/org/multi/tree/main/sub');
    const { blobs } = await nodeMerge({ base: new File([BASE as Uint8Array<ArrayBuffer>], 'model.safetensors'), adapters: [{ source: url, weight: -0.5 }], backend: 'cpu' });
    for (const [name, got, want] of mergedAgainstTruth(new Uint8Array(await blobs[0].blob.arrayBuffer()), -0.5)) expect(got, name).toEqual(want);
    expect(paths(mirror)).toEqual(new Set(['hub/org/multi/resolve/main/sub/adapter_config.json', 'hub/org/multi/resolve/main/sub/adapter_model.safetensors']));
  });

  it('a blob/ page on it is refused as Hugging Face\'s are, giving its resolve/ link; a repository URL as --base too', async () => {
    vi.stubEnv('HF_ENDPOINT', `https://hf-mirror.test:${mirror.port}`);
    const page = await cli(['inspect', mirrorUrl('org/tiny-lora/blob/main/adapter_model.safetensors')]);
    expect(page.code).toBe(2);
    expect(oneError(page)).toBe(`error: ${mirrorUrl('org/tiny-lora/blob/main/adapter_model.safetensors')}: is Hugging Face's web page about the file, not the file; give its download link ${mirrorUrl('org/tiny-lora/resolve/main/adapter_model.safetensors')}`);
    const asBase = await cli(['merge', '--base', mirrorUrl('org/tiny-lora'), '--adapter', mirrorUrl('gated/tiny-lora'), '--out', join(temp.make(), 'm.safetensors')]);
    expect(asBase.code).toBe(2);
    expect(oneError(asBase)).toMatch(/: names a Hugging Face repository or folder; --base takes the URL of one file/);
    expect(mirror.seen).toEqual([]);
  });
});

describe('where the token goes with HF_ENDPOINT set', () => {
  it('an http:// HF_ENDPOINT gets it over http, as huggingface_hub sends it', async () => {
    vi.stubEnv('HF_ENDPOINT', `http://hf-mirror.test:${mirror.port}`);
    vi.stubEnv('HF_TOKEN', TOKEN);
    await expectExactCliMerge(temp, mirrorUrl('gated/tiny-lora', 'http'));
    expect(mirror.seen.length).toBeGreaterThan(1);
    expect(authorizations(mirror)).toEqual(new Set([BEARER]));
  });

  it('an https:// one\'s host over plain http, and another host on the same server, get none', async () => {
    vi.stubEnv('HF_ENDPOINT', `https://hf-mirror.test:${mirror.port}`);
    vi.stubEnv('HF_TOKEN', TOKEN);
    for (const url of [mirrorUrl('gated/base/resolve/main/model.safetensors', 'http'), mirrorUrl('gated/base/resolve/main/model.safetensors', 'https', 'other.test')]) {
      mirror.seen.length = 0;
      const run = await cli(['inspect', url]);
      expect(run.code, url).toBe(1);
      expect(oneError(run)).toMatch(new RegExp(`^error: ${url.replace(/[.]/g, '\\.')}: HTTP 401 Unauthorized for its size \\(HEAD\\); the file needs a login`));
      expect(mirror.seen.map((s) => s.authorization)).toEqual([undefined]);
    }
    // The control: the same file at the endpoint's own origin is read with the token.
    mirror.seen.length = 0;
    const run = await cli(['inspect', mirrorUrl('gated/base/resolve/main/model.safetensors')]);
    expect(run.code, run.stderr).toBe(0);
    expect(authorizations(mirror)).toEqual(new Set([BEARER]));
  });

  it('not past a redirect to another host: neither the CDN nor huggingface.co\'s own host gets it; the merges are exact', async () => {
    vi.stubEnv('HF_ENDPOINT', `https://hf-mirror.test:${mirror.port}`);
    vi.stubEnv('HF_TOKEN', TOKEN);
    await expectExactCliMerge(temp, mirrorUrl('gated/to-cdn'), 0.5);
    expect(cdn.seen.length).toBeGreaterThan(1);
    expect(authorizations(cdn)).toEqual(new Set([undefined]));
    await expectExactCliMerge(temp, mirrorUrl('gated/to-hub'), 0.5);
    expect(hub.seen.length).toBeGreaterThan(1);
    expect(authorizations(hub)).toEqual(new Set([undefined]));
    expect(authorizations(mirror)).toEqual(new Set([BEARER]));
  });

  it('huggingface.co keeps it with HF_ENDPOINT set: its repository URL is read with the token', async () => {
    vi.stubEnv('HF_ENDPOINT', `https://hf-mirror.test:${mirror.port}`);
    vi.stubEnv('HF_TOKEN', TOKEN);
    await expectExactCliMerge(temp, hubUrl('gated/tiny-lora'));
    expect(authorizations(hub)).toEqual(new Set([BEARER]));
    expect(mirror.seen).toEqual([]);
  });
});

describe('a bad HF_ENDPOINT', () => {
  it.each([
    ['hf-mirror.com', 'HF_ENDPOINT ("hf-mirror.com") is not an http:// or https:// URL'],
    ['ftp://mirror.example', 'HF_ENDPOINT ("ftp://mirror.example") is not an http:// or https:// URL'],
    ['https://user:secret@mirror.example', 'HF_ENDPOINT holds a user name or password, which no request may carry in its URL'],
    ['https://mirror.example/?x=1', 'HF_ENDPOINT (https://mirror.example/…) has a query or fragment, on which no Hub URL can be built'],
  ])('%s: one line naming the variable, exit 2, before any request; merge() from loramerge/node refuses it too', async (value, message) => {
    vi.stubEnv('HF_ENDPOINT', value);
    const advice = '; set it to the Hub\'s address, such as https://hf-mirror.com, or unset it to use https://huggingface.co';
    const run = await cli(['inspect', hubUrl('org/tiny-lora')]);
    expect(run.code).toBe(2);
    expect(oneError(run)).toBe(`error: ${message}${advice}`);
    const e = await nodeMerge({ base: new File([BASE as Uint8Array<ArrayBuffer>], 'model.safetensors'), adapters: [hubUrl('org/tiny-lora')], backend: 'cpu' }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(MergeError);
    expect((e as MergeError).code).toBe('BAD_ARGUMENT');
    expect((e as MergeError).message).toBe(`${message}${advice}`);
    expect(hub.seen).toEqual([]);
    expect(run.stderr + (e as Error).message).not.toContain('secret');
  });

  it('is not read where no URL is: a merge of files on disk goes ahead', async () => {
    vi.stubEnv('HF_ENDPOINT', 'hf-mirror.com');
    const dir = temp.make({ 'base.safetensors': BASE, 'lora/adapter_config.json': PEFT_CONFIG, 'lora/adapter_model.safetensors': PEFT_WEIGHTS });
    const run = await cli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', join(dir, 'lora'), '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
  });

  it('unset or empty is huggingface.co alone; trailing slashes are dropped, as huggingface_hub does', () => {
    expect(parseHfEndpoint(undefined)).toBeUndefined();
    expect(parseHfEndpoint('')).toBeUndefined();
    expect(parseHfEndpoint('https://hf-mirror.com///')).toEqual({ origin: 'https://hf-mirror.com', path: '' });
    expect(parseHfEndpoint('http://hub.internal:8080/hf/')).toEqual({ origin: 'http://hub.internal:8080', path: '/hf' });
  });
});
