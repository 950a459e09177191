/** The plan as text: what will change, at which scale, and what is wrong. */
import type { PreparedMerge } from '../pipeline/prepare-merge.js';
import { formatBytes, formatScale } from '../format.js';
import { algorithmNamed } from '../formats/algorithms/index.js';
import { scaleFacts } from '../formats/scale-facts.js';
import { modulesAsPlanned, type PlannedTerm } from '../plan/merge-plan.js';
import { listingLine } from './terminal-text.js';

export function describePlan(prepared: PreparedMerge, detailed: boolean): string {
  const { plan, base } = prepared;
  const lines: string[] = [];
  lines.push(`base: ${prepared.baseFiles.name} (${base.kind}, ${base.tensors.size} tensors in ${base.shards.length} file${base.shards.length === 1 ? '' : 's'})`);
  plan.adapters.forEach((a, i) => {
    const adapter = prepared.adapters[i].adapter;
    lines.push(
      `adapter ${i + 1}: ${a.name} (${a.format}, ${a.modules} module${a.modules === 1 ? '' : 's'}${a.replacements ? `, ${a.replacements} full tensors` : ''}, ` +
        `${[`weight ${a.weight}`, ...scaleFacts(modulesAsPlanned(plan, i, adapter.modules))].join(', ')})`,
    );
  });
  const s = plan.summary;
  lines.push(
    `plan: ${s.tensorsTouched} tensors change, ${s.terms} module updates, ${formatBytes(s.bytesToRead)} to read, ` +
      `${(s.flops / 1e9).toFixed(2)} GFLOP${plan.leftOut.length ? `, ${plan.leftOut.length} module${plan.leftOut.length === 1 ? '' : 's'} left out (see warnings)` : ''}`,
  );
  if (detailed) {
    for (const u of plan.updates) {
      const terms = u.terms.map((t) => `${t.moduleName} ${termText(t)}${placementText(t)}`).join(', then ');
      const start = u.source ? ` (from ${u.source.adapter}:${u.source.tensor.name})` : '';
      lines.push(`  ${u.baseKey} [${u.shape.join('×')}] ${u.layout}${start} ← ${terms}`);
    }
    for (const r of plan.rowSets) {
      lines.push(`  ${r.baseKey} rows set: ${r.terms.map((t) => `${t.indices.length} token${t.indices.length === 1 ? '' : 's'} from ${t.adapter}`).join(', ')}`);
    }
    for (const b of plan.biasUpdates) {
      const start = b.source ? ` (from ${b.source.adapter}:${b.source.tensor.name})` : '';
      lines.push(`  ${b.baseKey} (bias)${start} ← ${b.terms.map((t) => `${t.moduleName} ${t.map ? 'rotation' : t.glora ? 'GLoRA bias path scale' : t.multiply ? 'scaling' : 'scale'}=${formatScale(t.scale)}`).join(', then ')}`);
    }
    for (const r of plan.replacements) lines.push(`  ${r.baseKey} replaced by ${r.adapter}:${r.tensor.name}`);
    for (const m of plan.leftOut) lines.push(`  left out: ${m.adapter}:${m.module}: ${m.reason}`);
    for (const n of plan.notes) lines.push(`note: ${n}`);
    for (const p of plan.problems) lines.push(`problem: ${p.message}`);
  }
  return lines.map(listingLine).join('\n');
}

/**
 * `LoKr r=8 scale=0.5 +DoRA`: the algorithm, its rank where it has one, the scale applied, and
 * where the weight entered it squared, the tool whose rule that is.
 */
function termText(t: PlannedTerm): string {
  const shape = t.module.update;
  const rank = shape.kind === 'low-rank' ? ` r=${t.module.rank}` : '';
  const squared = t.module.weightSquared ? ` (weight², as ${t.module.weightSquared.tool} applies it)` : '';
  return `${algorithmNamed(t.module.algorithm).title}${rank} scale=${formatScale(t.scale)}${squared}${t.dora ? ' +DoRA' : ''}`;
}

/** ` → rows 0–1279` when a term lands on part of its tensor. */
function placementText(t: PlannedTerm): string {
  if (t.transposedBlocks) {
    // One block is the whole ΔW transposed (open_clip's text_projection).
    const n = t.transposedBlocks.starts.length;
    const w = t.transposedBlocks.within;
    if (w) {
      // Inside a larger tensor (one expert's slab of a fused parameter), seen as baseRows × rows.
      const last = w.first + (n * w.inputs - 1) * w.stride;
      return ` → transposed, on rows ${w.first}–${last}${w.stride > 1 ? ` every ${w.stride}` : ''} of ${w.baseRows} × ${t.transposedBlocks.rows}`;
    }
    return n === 1 ? ' → transposed' : ` → ${n} blocks of ${t.transposedBlocks.rows} rows, each transposed`;
  }
  if (t.columns) return ' → its columns reordered';
  const placement = t.placement;
  if (!placement) return '';
  return ` → rows ${placement.segments.map((g) => (g.src === g.dst ? `${g.dst}–${g.dst + g.count - 1}` : `${g.dst}–${g.dst + g.count - 1} (from ${g.src}–${g.src + g.count - 1})`)).join(', ')}`;
}
