/**
 * Runs in the worker: reads the headers of the base and the adapters, builds the merge plan with
 * every weight at 1, measures each update, and boils it all down to what the page shows.
 * Weights are left out on purpose: the page scales scales and ratios by the sliders itself.
 */
import {
  buildMergePlan, estimateUpdateMagnitudes, openAdapter, openSafetensors,
  type InputFileSet, type ParsedAdapter, type SafetensorsFile,
} from '../src/index.js';
import type { AdapterSummary, PlanSummary } from './worker-protocol.js';

/** Every .safetensors file of the base (one file, or the shards of a folder), opened. */
export async function openBaseFiles(base: InputFileSet): Promise<SafetensorsFile[]> {
  const paths = base.list().filter((p) => p.toLowerCase().endsWith('.safetensors'));
  const files: SafetensorsFile[] = [];
  for (const path of paths) files.push(await openSafetensors(await base.open(path)));
  return files;
}

function range(values: number[]): string {
  const distinct = [...new Set(values.map((v) => Number(v.toPrecision(4))))].sort((a, b) => a - b);
  if (distinct.length === 0) return '—';
  return distinct.length === 1 ? String(distinct[0]) : `${distinct[0]}–${distinct[distinct.length - 1]}`;
}

function summarizeAdapter(adapter: ParsedAdapter): AdapterSummary {
  return {
    name: adapter.name,
    format: adapter.format === 'peft' ? 'PEFT' : 'kohya',
    modules: adapter.modules.length,
    rank: range(adapter.modules.map((m) => m.rank)),
    alpha: range(adapter.modules.map((m) => m.alpha)),
    scale: range(adapter.modules.map((m) => m.scale)),
    warnings: adapter.warnings.slice(),
  };
}

function mostCommon(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '—';
}

export async function summarizePlan(base: InputFileSet, adapterSets: InputFileSet[]): Promise<PlanSummary> {
  const baseFiles = await openBaseFiles(base);
  const adapters: ParsedAdapter[] = [];
  try {
    for (const set of adapterSets) adapters.push(await openAdapter(set));
    const owner = new Map<string, SafetensorsFile>();
    const tensors = new Map<string, { dtype: string; shape: number[] }>();
    for (const file of baseFiles) {
      for (const t of file.tensors) {
        owner.set(t.name, file);
        tensors.set(t.name, { dtype: t.dtype, shape: t.shape });
      }
    }
    const plan = buildMergePlan({ tensors: tensors as never }, adapters.map((adapter) => ({ adapter, weight: 1 })));
    const magnitudes = await estimateUpdateMagnitudes(plan, async (key, rowStart, rowCount) => {
      const file = owner.get(key)!;
      const entry = file.get(key)!;
      const rowBytes = entry.byteLength / entry.shape[0];
      return { dtype: entry.dtype as 'F32' | 'F16' | 'BF16', data: await file.readPart(entry, rowStart * rowBytes, rowCount * rowBytes) };
    });
    const allTensors = baseFiles.flatMap((f) => f.tensors);
    return {
      base: {
        name: base.name,
        files: baseFiles.length,
        tensors: allTensors.length,
        bytes: allTensors.reduce((n, t) => n + t.byteLength, 0),
        dtype: mostCommon(allTensors.map((t) => t.dtype)),
      },
      adapters: adapters.map(summarizeAdapter),
      modules: plan.updates.flatMap((u) => u.terms.map((t) => ({
        adapter: t.adapterIndex, module: t.moduleName, target: u.baseKey, shape: u.shape, scale: t.scale,
      }))),
      problems: [
        ...plan.problems.map((p) => ({ severity: 'error' as const, message: p.message })),
        ...plan.warnings.map((message) => ({ severity: 'warning' as const, message })),
      ],
      magnitudes: magnitudes.map((m) => ({ adapter: m.adapterIndex, module: m.module, target: m.baseKey, ratio: m.ratio })),
      mergeable: plan.problems.length === 0,
    };
  } finally {
    for (const f of baseFiles) await f.source.close();
    for (const a of adapters) await a.file.source.close();
  }
}
