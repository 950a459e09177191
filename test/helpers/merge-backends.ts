/**
 * The backends a merge test runs on, made before the file's tests and disposed after them: the CPU
 * (its JavaScript and WebAssembly executors, or its default one alone) and WebGPU where Node's
 * `webgpu` finds an adapter (SwiftShader here; absent, the WebGPU cases skip or fail as they say).
 * And one in-memory merge through the library, read back with the plain safetensors decoder.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend, type PreparedMerge } from '../../src/index.js';
import { CpuBackend } from '../../src/engine/cpu/cpu-backend.js';
import { createWebGpuBackend } from '../../src/engine/create-backend.js';
import { getNodeGpu, type NodeGpu } from '../../src/engine/gpu/node-gpu.js';
import { decodeSafetensors, type DecodedTensor } from './fixtures.js';

export interface BackendChoice {
  /** 'both': `cpu (js)` and `cpu (wasm)`; 'default': `cpu` alone. */
  cpu: 'both' | 'default';
  /** More WebGPU backends, by name, with these device limits. */
  gpuLimits?: Record<string, Record<string, number>>;
}

/** Backends by name (`webgpu` undefined where no adapter was found), filled in beforeAll. */
export function mergeBackends(choice: BackendChoice): Record<string, MergeBackend | undefined> {
  const backends: Record<string, MergeBackend | undefined> = {};
  let nodeGpu: NodeGpu | undefined;
  beforeAll(async () => {
    if (choice.cpu === 'both') {
      backends['cpu (js)'] = new CpuBackend('test', { executor: 'js' });
      backends['cpu (wasm)'] = new CpuBackend('test');
    } else backends.cpu = new CpuBackend('test');
    nodeGpu = await getNodeGpu();
    try {
      backends.webgpu = await createWebGpuBackend(nodeGpu.gpu);
      for (const [name, limits] of Object.entries(choice.gpuLimits ?? {})) backends[name] = await createWebGpuBackend(nodeGpu.gpu, limits);
    } catch (e) {
      if ((e as { code?: string }).code !== 'GPU_UNAVAILABLE') throw e;
    }
  });
  afterAll(() => {
    for (const b of Object.values(backends)) b?.dispose();
    nodeGpu?.dispose();
  });
  return backends;
}

export interface InMemoryAdapter {
  /** The adapter's files by name (a kohya file, or a PEFT folder's config and weights). */
  files: Record<string, Uint8Array | string>;
  /** Its input's name; `adapter<i>` by default. */
  name?: string;
  weight?: number;
  /** AdapterInput.oneTrainerCoft. */
  oneTrainerCoft?: boolean | number;
}

export interface InMemoryMerge {
  backend: MergeBackend;
  base: Record<string, Uint8Array | string>;
  /** The base input's name, which messages give; `base` by default. */
  baseName?: string;
  adapters: InMemoryAdapter[];
  outDtype?: string;
  /** Convert only the merged tensors to outDtype. */
  dtypeMergedOnly?: boolean;
  /** Row slab size; 4 KiB by default. */
  slabBytes?: number;
  /** Looks at the prepared merge after it ran, before it is closed. */
  inspect?: (prepared: PreparedMerge) => Promise<void> | void;
  /** Receives the merge's warnings (a type written in place of another, …), as mergeModel gives them. */
  onWarning?: (message: string) => void;
}

/**
 * Merges in memory in row slabs, after checking the plan has no problems; returns the (first)
 * output file's bytes and the plan's warnings.
 */
export async function mergeFileInMemory(m: InMemoryMerge): Promise<{ bytes: Uint8Array; warnings: string[] }> {
  const prepared = await prepareInMemory(m);
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({
      prepared, output, backend: m.backend, slabBytes: m.slabBytes ?? 4096,
      ...(m.outDtype ? { outDtype: m.outDtype } : {}), ...(m.dtypeMergedOnly ? { dtypeMergedOnly: true } : {}),
      ...(m.onWarning ? { onWarning: m.onWarning } : {}),
    });
    await m.inspect?.(prepared);
    return { bytes: new Uint8Array(await output.files()[0].blob.arrayBuffer()), warnings: prepared.plan.warnings };
  } finally {
    await prepared.close();
  }
}

function prepareInMemory(m: Pick<InMemoryMerge, 'base' | 'baseName' | 'adapters'>): Promise<PreparedMerge> {
  return prepareMerge(memoryInputFileSet(m.base, m.baseName ?? 'base'),
    m.adapters.map((a, i) => ({ files: memoryInputFileSet(a.files, a.name ?? `adapter${i}`), weight: a.weight ?? 1, ...(a.oneTrainerCoft !== undefined ? { oneTrainerCoft: a.oneTrainerCoft } : {}) })));
}

/**
 * Why a merge in memory is refused: the error reading the base, the plan's problems, or the merge's
 * error, each message one entry; [] when it merges.
 */
export async function refusalsInMemory(m: Omit<InMemoryMerge, 'inspect' | 'slabBytes' | 'onWarning'>): Promise<string[]> {
  let prepared: PreparedMerge;
  try {
    prepared = await prepareInMemory(m);
  } catch (e) {
    return [(e as Error).message];
  }
  try {
    if (prepared.plan.problems.length) return prepared.plan.problems.map((p) => p.message);
    await mergeModel({ prepared, output: createBlobOutputTarget(), backend: m.backend, ...(m.outDtype ? { outDtype: m.outDtype } : {}) });
    return [];
  } catch (e) {
    return [(e as Error).message];
  } finally {
    await prepared.close();
  }
}

/** {@link mergeFileInMemory} of a safetensors model: the output's tensors and the plan's warnings. */
export async function mergeInMemory(m: InMemoryMerge): Promise<{ tensors: Map<string, DecodedTensor>; warnings: string[] }> {
  const { bytes, warnings } = await mergeFileInMemory(m);
  return { tensors: decodeSafetensors(bytes).tensors, warnings };
}
