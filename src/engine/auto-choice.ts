/**
 * How `auto` picks a backend without timing where the answer is clear. A rule decides from what the
 * WebGPU adapter says about itself; only where no rule applies (an integrated or unknown GPU, whose
 * speed against the CPU depends on the machine) are both backends timed, and that answer is kept
 * per machine and adapter (see backend-decision-cache.ts).
 */
import type { FloatDType } from '../dtype.js';

/** What an adapter says about itself (GPUAdapterInfo), as plain strings. */
export interface AdapterFacts {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** The adapter calls itself a fallback (software) adapter. */
  isFallbackAdapter: boolean;
}

/** The backend auto chose, where the choice came from, and why, for the user to read. */
export interface AutoDecision {
  backend: 'cpu' | 'webgpu';
  source: 'rule' | 'cache' | 'timing';
  reason: string;
}

/** Software rasterisers that present themselves as GPUs: they run on the same cores as the CPU backend. */
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|\bwarp\b|microsoft basic render/i;

/** Vendors whose WebGPU adapters are discrete cards (or, for Apple, unified-memory GPUs) far faster than WASM on the cores. */
const CLEARLY_FASTER_VENDORS = /^(nvidia|amd|ati|apple)$/i;
const CLEARLY_FASTER_NAMES = /nvidia|geforce|quadro|tesla|rtx|radeon|\bamd\b|apple m\d|apple gpu/i;

/** What `auto` looks at in a WebGPU adapter: its vendor, architecture, device and description. */
export function adapterFactsOf(adapter: GPUAdapter): AdapterFacts {
  const info = (adapter.info ?? {}) as Partial<GPUAdapterInfo> & { isFallbackAdapter?: boolean };
  const legacy = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const text = (s: unknown): string => (typeof s === 'string' ? s : '');
  return {
    vendor: text(info.vendor), architecture: text(info.architecture), device: text(info.device),
    description: text(info.description), isFallbackAdapter: info.isFallbackAdapter === true || legacy === true,
  };
}

export function isSoftwareAdapter(facts: AdapterFacts): boolean {
  return facts.isFallbackAdapter || SOFTWARE_ADAPTER.test(`${facts.vendor} ${facts.architecture} ${facts.device} ${facts.description}`);
}

/** "nvidia ampere (NVIDIA GeForce RTX 3090)": the adapter as users know it. */
export function adapterName(facts: AdapterFacts): string {
  const head = [facts.vendor, facts.architecture].filter(Boolean).join(' ');
  const detail = facts.description || facts.device;
  return [head, detail ? `(${detail})` : ''].filter(Boolean).join(' ') || 'unknown adapter';
}

/**
 * The rule's choice, or undefined where only timing can tell. `adapter` is null when WebGPU exists
 * but offers no adapter, undefined when there is no WebGPU at all.
 */
export function decideByRule(adapter: AdapterFacts | null | undefined): Omit<AutoDecision, 'source'> | undefined {
  if (adapter === undefined) return { backend: 'cpu', reason: 'no WebGPU in this environment' };
  if (adapter === null) return { backend: 'cpu', reason: 'WebGPU offers no adapter' };
  if (isSoftwareAdapter(adapter)) {
    return { backend: 'cpu', reason: `the only GPU adapter is a software one (${adapterName(adapter)}), which runs on the same cores, slower` };
  }
  if (CLEARLY_FASTER_VENDORS.test(adapter.vendor) || CLEARLY_FASTER_NAMES.test(`${adapter.description} ${adapter.device}`)) {
    return { backend: 'webgpu', reason: `a hardware GPU (${adapterName(adapter)})` };
  }
  return undefined;
}

/** "chosen by rule: …", "chosen from the cache: …", "chosen by timing: …". */
export function describeDecision(d: Omit<AutoDecision, 'backend'>): string {
  const how = d.source === 'rule' ? 'by rule' : d.source === 'cache' ? 'from the cache' : 'by timing';
  return `auto, chosen ${how}: ${d.reason}`;
}

/** The class of kernel a dtype runs on: 2-byte floats share paths, f32 and fp8 have their own. */
export function dtypeClass(dtype: FloatDType): string {
  if (dtype === 'F16' || dtype === 'BF16') return '16-bit';
  if (dtype === 'F32') return '32-bit';
  return '8-bit';
}

/**
 * The cache key of a timed decision: the machine, the adapter and its driver, the library's
 * version (kernels change between versions) and the dtype class timed.
 */
export function decisionKey(parts: { machine: string; adapter: AdapterFacts; driver: string; version: string; dtype: FloatDType }): string {
  const a = parts.adapter;
  return [parts.machine, `${a.vendor}|${a.architecture}|${a.device}|${a.description}`, parts.driver,
    `loramerge ${parts.version}`, dtypeClass(parts.dtype)].join(' / ');
}
