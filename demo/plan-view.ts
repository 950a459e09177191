/** Section 3: what the plan found, before anything is merged. */
import { formatBytes, formatScale } from './format.js';
import type { PlanSummary } from './worker-protocol.js';

export interface PlanElements {
  stats: HTMLElement;
  problems: HTMLUListElement;
  modules: HTMLTableSectionElement;
}

function stat(value: string, label: string): HTMLElement {
  const box = document.createElement('div');
  box.className = 'stat';
  const b = document.createElement('b');
  b.textContent = value;
  const span = document.createElement('span');
  span.textContent = label;
  box.append(b, span);
  return box;
}

export function renderPlan(el: PlanElements, plan: PlanSummary, weights: number[]): void {
  const matchedTargets = new Set(plan.modules.map((m) => m.target));
  el.stats.replaceChildren(
    stat(String(plan.modules.length), 'modules matched'),
    stat(String(matchedTargets.size), 'base tensors changed'),
    stat(String(plan.base.tensors), 'base tensors'),
    stat(formatBytes(plan.base.bytes), `base (${plan.base.dtype})`),
  );
  el.problems.replaceChildren(...(plan.problems.length
    ? plan.problems.map((p) => {
      const li = document.createElement('li');
      li.className = p.severity;
      li.textContent = p.message;
      return li;
    })
    : [Object.assign(document.createElement('li'), { className: 'ok', textContent: '✓ Every adapter module found its base tensor.' })]));
  renderModuleScales(el.modules, plan, weights);
}

/** The table's last column follows the sliders. */
export function renderModuleScales(body: HTMLTableSectionElement, plan: PlanSummary, weights: number[]): void {
  body.replaceChildren(...plan.modules.map((m) => {
    const row = document.createElement('tr');
    const scaled = m.scale * (weights[m.adapter] ?? 0);
    for (const text of [m.module, m.target, m.shape.join(' × '), formatScale(scaled)]) {
      const td = document.createElement('td');
      td.textContent = text;
      row.append(td);
    }
    return row;
  }));
}
