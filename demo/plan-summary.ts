/**
 * Runs in the worker: reads the headers of the base and the adapters, prepares the merge with
 * every weight at 1, measures each update, and boils it all down to what the page shows.
 * Weights are left out on purpose: the page scales scales and ratios by the sliders itself.
 * The adapters' facts are worded here, from the plan's data, so the page needs no list of formats.
 */
import {
  ADAPTER_FORMAT_NAMES, estimateUpdateMagnitudes, prepareMerge, type InputFileSet, type ParsedAdapter,
} from '../src/index.js';
import { familyMismatch } from '../src/plan/model-family.js';
import type { AdapterSummary, PlanSummary, Problem } from './worker-protocol.js';

function range(values: number[]): string {
  const distinct = [...new Set(values.map((v) => Number(v.toPrecision(4))))].sort((a, b) => a - b);
  if (distinct.length === 0) return '—';
  return distinct.length === 1 ? String(distinct[0]) : `${distinct[0]}–${distinct[distinct.length - 1]}`;
}

export function summarizeAdapter(adapter: ParsedAdapter): AdapterSummary {
  const m = adapter.modules;
  return {
    name: adapter.name,
    facts: [
      ADAPTER_FORMAT_NAMES[adapter.format] ?? adapter.format,
      `${m.length} module${m.length === 1 ? '' : 's'}`,
      `r = ${range(m.map((x) => x.rank))}`,
      `α = ${range(m.map((x) => x.alpha))}`,
      `α/r = ${range(m.map((x) => x.scale))}`,
      ...(adapter.replacements.length ? [`${adapter.replacements.length} tensors replaced`] : []),
    ],
    warnings: adapter.warnings.slice(),
  };
}

function mostCommon(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '—';
}

/** `…attn2.to_out.0.weight` → `to_out`, `…self_attn.q_proj.weight` → `q_proj`: the chart's series. */
function moduleKind(baseKey: string): string {
  const parts = baseKey.replace(/\.(weight|bias)$/, '').split('.');
  while (parts.length > 1 && /^\d+$/.test(parts[parts.length - 1])) parts.pop();
  return parts[parts.length - 1];
}

export async function summarizePlan(base: InputFileSet, adapterSets: InputFileSet[]): Promise<PlanSummary> {
  const prepared = await prepareMerge(base, adapterSets.map((files) => ({ files, weight: 1 })));
  try {
    const { plan } = prepared;
    const model = prepared.base;
    const magnitudes = await estimateUpdateMagnitudes(plan, (key, rowStart, rowCount) => model.readRows(key, rowStart, rowCount));
    const allTensors = [...model.tensors.values()];
    // An adapter for another kind of model is named as such, ahead of its unmatched modules.
    const mismatches: Problem[] = [];
    for (const { adapter } of prepared.adapters) {
      if (!plan.problems.some((p) => p.adapter === adapter.name)) continue;
      const why = familyMismatch(adapter.name, adapter.modules.map((x) => x.key), model.tensors.keys());
      if (why) mismatches.push({ severity: 'error', message: why });
    }
    return {
      base: {
        name: base.name,
        files: model.shards.length,
        tensors: allTensors.length,
        bytes: allTensors.reduce((n, t) => n + t.byteLength, 0),
        dtype: mostCommon(allTensors.map((t) => t.storedType)),
        kind: model.kind,
      },
      adapters: prepared.adapters.map(({ adapter }) => summarizeAdapter(adapter)),
      modules: plan.updates.flatMap((u) => u.terms.map((t) => ({
        adapter: t.adapterIndex, module: t.moduleName, target: u.baseKey, shape: u.shape, scale: t.scale,
      }))),
      problems: [
        ...mismatches,
        ...plan.problems.map((p) => ({ severity: 'error' as const, message: p.message })),
        ...plan.warnings.map((message) => ({ severity: 'warning' as const, message })),
        ...plan.notes.map((message) => ({ severity: 'note' as const, message })),
      ],
      magnitudes: magnitudes.map((m) => ({
        adapter: m.adapterIndex, module: m.module, target: m.baseKey, moduleType: moduleKind(m.baseKey), ratio: m.ratio,
      })),
      mergeable: plan.problems.length === 0,
    };
  } finally {
    await prepared.close();
  }
}
