/**
 * How `auto` chooses a backend: the rule (adapter info → choice) as a pure function, the cache of
 * timed decisions (valid, corrupt and hostile documents; the Node file store), the whole choice on
 * an adapter no rule covers (timed once, then taken from the cache), and the CLI's backend line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adapterName, decideByRule, decisionKey, type AdapterFacts } from '../src/engine/auto-choice.js';
import {
  formatDecisions, parseDecisions, readDecision, writeDecision, type CachedDecision, type DecisionStore,
} from '../src/engine/backend-decision-cache.js';
import { decisionCacheDir, decisionCacheMode, nodeDecisionStore } from '../src/engine/node-decision-store.js';
import { createBackend } from '../src/engine/create-backend.js';
import { getNodeGpu, onlySoftwareVulkan, type NodeGpu } from '../src/engine/gpu/node-gpu.js';
import { VERSION } from '../src/version.js';
import { REPO_ROOT, runCli } from './helpers/cli.js';

/** GPUAdapterInfo as the implementations report it (Dawn in Node here; the others as Chrome reports them). */
const facts = (vendor: string, architecture: string, description = '', device = '', isFallbackAdapter = false): AdapterFacts =>
  ({ vendor, architecture, device, description, isFallbackAdapter });
const DAWN_SWIFTSHADER = facts('google', 'swiftshader', 'SwiftShader driver 5.0.0', 'swiftshader-device-subzero-', true);

describe('the rule', () => {
  it('no WebGPU or no adapter → CPU', () => {
    expect(decideByRule(undefined)).toEqual({ backend: 'cpu', reason: 'no WebGPU in this environment' });
    expect(decideByRule(null)?.backend).toBe('cpu');
  });

  it('software adapters → CPU, whether they call themselves fallback or only say what they are', () => {
    for (const a of [
      DAWN_SWIFTSHADER,
      facts('google', 'swiftshader'), // Chrome's SwiftShader without isFallbackAdapter (older Chrome)
      facts('mesa', '', 'llvmpipe (LLVM 15.0.7, 256 bits)'),
      facts('mesa', '', 'lavapipe'),
      facts('microsoft', '', 'Microsoft Basic Render Driver'),
      facts('', '', '', '', true),
    ]) {
      const d = decideByRule(a);
      expect(d?.backend, JSON.stringify(a)).toBe('cpu');
      expect(d?.reason).toMatch(/software/);
    }
  });

  it('discrete and Apple GPUs → WebGPU', () => {
    for (const a of [
      facts('nvidia', 'ampere', 'NVIDIA GeForce RTX 3090'),
      facts('nvidia', 'hopper'),
      facts('amd', 'rdna-3', 'AMD Radeon RX 7900 XTX'),
      facts('apple', 'metal-3'),
      facts('', '', 'NVIDIA H200'), // a vendor string left empty by the implementation
    ]) {
      expect(decideByRule(a)?.backend, JSON.stringify(a)).toBe('webgpu');
    }
  });

  it('integrated and unknown GPUs have no rule: they are timed', () => {
    for (const a of [facts('intel', 'gen-12lp', 'Intel(R) UHD Graphics 770'), facts('qualcomm', 'adreno-7xx'), facts('arm', 'valhall'), facts('', '')]) {
      expect(decideByRule(a), JSON.stringify(a)).toBeUndefined();
    }
  });

  it('names the adapter as users know it', () => {
    expect(adapterName(DAWN_SWIFTSHADER)).toBe('google swiftshader (SwiftShader driver 5.0.0)');
    expect(adapterName(facts('', ''))).toBe('unknown adapter');
  });

  it('the cache key changes with the machine, adapter, driver, version and dtype class, not within a class', () => {
    const base = { machine: 'host, 8 × cpu', adapter: facts('intel', 'gen-12lp'), driver: 'webgpu 0.6.2', version: '1.0.0', dtype: 'F16' as const };
    const key = decisionKey(base);
    expect(decisionKey({ ...base, dtype: 'BF16' })).toBe(key);
    for (const other of [
      { machine: 'other' }, { adapter: facts('intel', 'xe-lpg') }, { driver: 'webgpu 0.7.0' }, { version: '1.0.1' }, { dtype: 'F32' as const }, { dtype: 'F8_E4M3' as const },
    ]) {
      expect(decisionKey({ ...base, ...other })).not.toBe(key);
    }
  });

  it('the library version in the key is package.json\'s', async () => {
    expect(VERSION).toBe(JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')).version);
  });
});

function memoryStore(text?: string): DecisionStore & { text?: string; saves: number } {
  const store = {
    text, saves: 0,
    load: async () => store.text,
    save: async (t: string) => {
      store.text = t;
      store.saves++;
    },
  };
  return store;
}

const DECISION: CachedDecision = { backend: 'webgpu', cpuMs: 6.5, gpuMs: 1.25, at: 1_700_000_000_000 };

describe('the cache of timed decisions', () => {
  it('writes, reads back, and keeps other keys', async () => {
    const store = memoryStore();
    await writeDecision(store, 'a', DECISION);
    await writeDecision(store, 'b', { ...DECISION, backend: 'cpu' });
    expect(await readDecision(store, 'a')).toEqual(DECISION);
    expect((await readDecision(store, 'b'))?.backend).toBe('cpu');
    expect(await readDecision(store, 'c')).toBeUndefined();
  });

  it('keeps the newest 64 entries', async () => {
    const store = memoryStore();
    for (let i = 0; i < 70; i++) await writeDecision(store, `k${i}`, DECISION);
    const entries = parseDecisions(store.text);
    expect(entries.size).toBe(64);
    expect(entries.has('k0')).toBe(false);
    expect(entries.has('k69')).toBe(true);
  });

  const valid = formatDecisions(new Map([['a', DECISION]]));
  const corrupt: [string, string][] = [
    ['empty', ''],
    ['not JSON', 'not json at all'],
    ['truncated', valid.slice(0, valid.length / 2)],
    ['another format', JSON.stringify({ format: 'something else', entries: [['a', DECISION]] })],
    ['null', 'null'],
    ['entries not a list', JSON.stringify({ format: 'loramerge backend decisions 1', entries: { a: DECISION } })],
    ['too big', valid + ' '.repeat(70 * 1024)],
  ];
  for (const [what, text] of corrupt) {
    it(`a ${what} document is ignored and rewritten whole`, async () => {
      const store = memoryStore(text);
      expect(await readDecision(store, 'a')).toBeUndefined();
      await writeDecision(store, 'b', DECISION);
      expect(parseDecisions(store.text)).toEqual(new Map([['b', DECISION]]));
    });
  }

  it('invalid entries are dropped one by one, valid ones kept; nothing reaches prototypes', async () => {
    const entries = [
      ['good', DECISION],
      ['__proto__', DECISION],
      ['bad backend', { ...DECISION, backend: 'gpu' }],
      ['negative', { ...DECISION, cpuMs: -1 }],
      ['string number', { ...DECISION, gpuMs: '1' }],
      ['no time', { backend: 'cpu', cpuMs: 1, gpuMs: 2 }],
      [42, DECISION],
      ['x'.repeat(2000), DECISION],
      'not a pair',
      ['extra', DECISION, 'third'],
    ];
    const store = memoryStore(JSON.stringify({ format: 'loramerge backend decisions 1', entries }));
    const parsed = parseDecisions(store.text);
    expect([...parsed.keys()].sort()).toEqual(['__proto__', 'good']);
    expect(({} as Record<string, unknown>).backend).toBeUndefined();
    expect(await readDecision(store, 'toString')).toBeUndefined();
    expect(await readDecision(store, 'good')).toEqual(DECISION);
  });

  it('a store that throws on load or save never fails the choice', async () => {
    const broken: DecisionStore = { load: async () => { throw new Error('denied'); }, save: async () => { throw new Error('full'); } };
    expect(await readDecision(broken, 'a')).toBeUndefined();
    await expect(writeDecision(broken, 'a', DECISION)).resolves.toBeUndefined();
  });
});

describe('the Node cache file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'loramerge-decisions-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('lives in $XDG_CACHE_HOME/loramerge, else ~/.cache/loramerge; the mode comes from LORAMERGE_BACKEND_CACHE', () => {
    expect(decisionCacheDir({ XDG_CACHE_HOME: '/x/cache' })).toBe('/x/cache/loramerge');
    expect(decisionCacheDir({ XDG_CACHE_HOME: 'relative' })).toMatch(/\.cache\/loramerge$/);
    expect(decisionCacheDir({})).toMatch(/\.cache\/loramerge$/);
    expect(decisionCacheMode({})).toBe('use');
    expect(decisionCacheMode({ LORAMERGE_BACKEND_CACHE: 'refresh' })).toBe('refresh');
    expect(decisionCacheMode({ LORAMERGE_BACKEND_CACHE: 'off' })).toBe('off');
  });

  it('creates its folder, writes, reads back', async () => {
    const store = nodeDecisionStore(join(dir, 'new', 'loramerge'));
    await writeDecision(store, 'k', DECISION);
    expect(await readDecision(store, 'k')).toEqual(DECISION);
  });

  it('a corrupt file is ignored and replaced', async () => {
    const d = join(dir, 'corrupt');
    await mkdir(d);
    await writeFile(join(d, 'backend-decisions.json'), '{"format": "loramerge backend decisions 1", "entries": [["k", {"backend"');
    const store = nodeDecisionStore(d);
    expect(await readDecision(store, 'k')).toBeUndefined();
    await writeDecision(store, 'k', DECISION);
    expect(await readDecision(store, 'k')).toEqual(DECISION);
  });

  it('a folder, a FIFO or a symlink in its place neither hangs nor crashes; a symlink is replaced, not followed', async () => {
    const asDir = join(dir, 'as-dir');
    await mkdir(join(asDir, 'backend-decisions.json'), { recursive: true });
    expect(await readDecision(nodeDecisionStore(asDir), 'k')).toBeUndefined();
    await expect(writeDecision(nodeDecisionStore(asDir), 'k', DECISION)).resolves.toBeUndefined();

    const asFifo = join(dir, 'as-fifo');
    await mkdir(asFifo);
    execFileSync('mkfifo', [join(asFifo, 'backend-decisions.json')]);
    expect(await readDecision(nodeDecisionStore(asFifo), 'k')).toBeUndefined();

    const asLink = join(dir, 'as-link');
    await mkdir(asLink);
    const target = join(dir, 'elsewhere.txt');
    await writeFile(target, 'keep me');
    await symlink(target, join(asLink, 'backend-decisions.json'));
    await writeDecision(nodeDecisionStore(asLink), 'k', DECISION);
    expect(await readFile(target, 'utf8')).toBe('keep me');
    expect(await readDecision(nodeDecisionStore(asLink), 'k')).toEqual(DECISION);
  });
});

describe('auto on an adapter no rule covers', () => {
  let nodeGpu: NodeGpu;
  let disguised: GPU | undefined;
  beforeAll(async () => {
    nodeGpu = await getNodeGpu();
    if (!(await nodeGpu.gpu.requestAdapter().catch(() => null))) return;
    // SwiftShader presenting itself as an integrated GPU: the rule cannot tell, so auto must time it.
    // A fresh adapter per request, as a real one (an adapter opens one device only).
    const disguise = (real: GPUAdapter) => new Proxy(real, {
      get(t, key) {
        if (key === 'info') return { vendor: 'intel', architecture: 'gen-12lp', device: '', description: 'Intel(R) UHD Graphics 770', isFallbackAdapter: false };
        if (key === 'isFallbackAdapter') return false;
        const v = Reflect.get(t, key);
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    disguised = { requestAdapter: async () => disguise((await nodeGpu.gpu.requestAdapter())!) } as unknown as GPU;
  });
  afterAll(() => nodeGpu.dispose());

  it('times once, keeps the answer, takes it from the cache next time; refresh times again, off keeps nothing', async (ctx) => {
    if (!disguised) return ctx.skip();
    const store = memoryStore();
    const options = { kind: 'auto' as const, gpu: disguised, decisionStore: store, machine: 'test machine', driver: 'test driver' };
    const first = await createBackend(options);
    first.dispose();
    expect(first.description).toMatch(/auto, chosen by timing: test merge: GPU [\d.]+ ms, CPU [\d.]+ ms on a F16 slab/);
    expect(store.saves).toBe(1);
    const [[key, kept]] = [...parseDecisions(store.text)];
    expect(key).toContain('Intel(R) UHD Graphics 770');
    expect(key).toContain('test machine');
    expect(kept.backend).toBe(first.kind === 'webgpu' ? 'webgpu' : 'cpu');

    const second = await createBackend(options);
    second.dispose();
    expect(second.kind).toBe(first.kind);
    expect(second.description).toMatch(/auto, chosen from the cache: timed \d{4}-\d\d-\d\d: GPU [\d.]+ ms, CPU [\d.]+ ms on a 16-bit slab/);
    expect(store.saves).toBe(1);

    // A decision edited to the other backend is followed: the cache, not a new timing, chose.
    store.text = formatDecisions(new Map([[key, { ...kept, backend: kept.backend === 'cpu' ? 'webgpu' : 'cpu' }]]));
    const edited = await createBackend(options);
    edited.dispose();
    expect(edited.kind).not.toBe(first.kind);
    expect(edited.description).toMatch(/chosen from the cache/);

    const refreshed = await createBackend({ ...options, decisionCache: 'refresh' });
    refreshed.dispose();
    expect(refreshed.description).toMatch(/chosen by timing/);
    expect(store.saves).toBe(2);

    const off = await createBackend({ ...options, decisionCache: 'off' });
    off.dispose();
    expect(off.description).toMatch(/chosen by timing/);
    expect(store.saves).toBe(2);
  });
});

describe('the CLI says where auto\'s choice came from', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'loramerge-auto-cli-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('by rule, without starting WebGPU where no hardware driver exists, and writes no cache', async (ctx) => {
    // Starting Dawn in this process (the tests above) named SwiftShader in process.env; the CLI must
    // see the user's environment without it.
    const unnamed = { VK_ICD_FILENAMES: '', VK_DRIVER_FILES: '' };
    if (!onlySoftwareVulkan({ ...process.env, ...unnamed })) return ctx.skip(); // a machine with a GPU driver asks the adapter
    const cache = join(dir, 'cache');
    const r = await runCli(['sample', join(dir, 's1'), '--backend', 'auto'], { XDG_CACHE_HOME: cache, ...unnamed });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^backend: CPU \(.*auto, chosen by rule: .*software/m);
    await expect(readFile(join(cache, 'loramerge', 'backend-decisions.json'))).rejects.toThrow();
  });

  it('by rule from the adapter, where WebGPU has to be asked (a Vulkan driver named by the user)', async (ctx) => {
    const icd = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib64/chromium/vk_swiftshader_icd.json'].find((p) => {
      try { execFileSync('test', ['-f', p]); return true; } catch { return false; }
    });
    if (!icd) return ctx.skip();
    const r = await runCli(['sample', join(dir, 's2'), '--backend', 'auto'], { XDG_CACHE_HOME: join(dir, 'cache2'), VK_ICD_FILENAMES: icd });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^backend: CPU \(.*auto, chosen by rule: the only GPU adapter is a software one \(google swiftshader/m);
  });
});
