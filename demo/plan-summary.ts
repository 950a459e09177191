/**
 * Runs in the worker: reads the headers of the base and the adapters, prepares the merge with
 * every weight at 1, measures each update, and boils it all down to what the page shows.
 * Weights are left out on purpose: the page scales scales and ratios by the sliders itself.
 */
import {
  ADAPTER_FORMAT_NAMES, estimateUpdateMagnitudes, prepareMerge, type InputFileSet, type ParsedAdapter,
} from '../src/index.js';
import type { AdapterSummary, PlanSummary } from './worker-protocol.js';

function range(values: number[]): string {
  const distinct = [...new Set(values.map((v) => Number(v.toPrecision(4))))].sort((a, b) => a - b);
  if (distinct.length === 0) return '—';
  return distinct.length === 1 ? String(distinct[0]) : `${distinct[0]}–${distinct[distinct.length - 1]}`;
}

function summarizeAdapter(adapter: ParsedAdapter): AdapterSummary {
  return {
    name: adapter.name,
    format: ADAPTER_FORMAT_NAMES[adapter.format],
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
  const prepared = await prepareMerge(base, adapterSets.map((files) => ({ files, weight: 1 })));
  try {
    const { plan } = prepared;
    const model = prepared.base;
    const magnitudes = await estimateUpdateMagnitudes(plan, (key, rowStart, rowCount) => model.readRows(key, rowStart, rowCount));
    const allTensors = [...model.tensors.values()];
    return {
      base: {
        name: base.name,
        files: model.shards.length,
        tensors: allTensors.length,
        bytes: allTensors.reduce((n, t) => n + t.byteLength, 0),
        dtype: mostCommon(allTensors.map((t) => t.storedType)),
      },
      adapters: prepared.adapters.map(({ adapter }) => summarizeAdapter(adapter)),
      modules: plan.updates.flatMap((u) => u.terms.map((t) => ({
        adapter: t.adapterIndex, module: t.moduleName, target: u.baseKey, shape: u.shape, scale: t.scale,
      }))),
      problems: [
        ...plan.problems.map((p) => ({ severity: 'error' as const, message: p.message })),
        ...plan.warnings.map((message) => ({ severity: 'warning' as const, message })),
      ],
      magnitudes: magnitudes.map((m) => ({
        adapter: m.adapterIndex, module: m.module, target: m.baseKey, layer: m.layer, moduleType: m.moduleType, ratio: m.ratio,
      })),
      mergeable: plan.problems.length === 0,
    };
  } finally {
    await prepared.close();
  }
}
