/**
 * Section 3: what the plan found, before anything is merged: counts, every problem (listed and
 * announced), the chart and the table of matched modules. Weight changes only redraw the chart
 * and the table's last column.
 */
import { byId, el } from '../dom.js';
import { formatBytes, formatScale } from '../format.js';
import { CHART_CAPTION, MagnitudeChart } from '../magnitude-chart.js';
import type { PageState } from '../page-state.js';
import type { PlanSummary } from '../worker-protocol.js';

function stat(value: string, label: string): HTMLElement {
  return el('div', { className: 'stat' }, el('b', { textContent: value }), el('span', { textContent: label }));
}

export function mountPlanPanel(): (state: PageState) => void {
  const status = byId('plan-status');
  const planBox = byId('plan');
  const stats = byId('plan-stats');
  const problemsHeading = byId('plan-problems-heading');
  const problems = byId<HTMLUListElement>('plan-problems');
  const body = byId<HTMLTableElement>('plan-modules').tBodies[0];
  const canvas = byId<HTMLCanvasElement>('magnitude-chart');
  const figure = canvas.closest('figure')!;
  const chart = new MagnitudeChart(canvas);
  byId('chart-caption').textContent = CHART_CAPTION;
  let shownPlan: PlanSummary | undefined;
  let shownWeights = '';

  return (state) => {
    const plan = state.plan.status === 'ready' ? state.plan.plan : undefined;
    const weights = state.adapters.map((a) => a.weight);
    status.className = 'hint';
    planBox.hidden = !plan;
    status.hidden = !!plan;
    if (state.plan.status === 'none') status.textContent = 'Pick a base model and at least one adapter to see what will change.';
    if (state.plan.status === 'planning') status.textContent = 'Reading headers and measuring each update…';
    if (state.plan.status === 'failed') {
      status.className = 'error-text';
      status.textContent = state.plan.message;
    }
    if (!plan) {
      shownPlan = undefined;
      return;
    }
    if (plan !== shownPlan) {
      shownPlan = plan;
      shownWeights = '';
      const targets = new Set(plan.modules.map((m) => m.target));
      stats.replaceChildren(
        stat(String(plan.modules.length), 'modules matched'),
        stat(String(targets.size), 'base tensors changed'),
        stat(String(plan.base.tensors), 'base tensors'),
        stat(formatBytes(plan.base.bytes), `base (${plan.base.dtype})`),
      );
      const errors = plan.problems.filter((p) => p.severity === 'error').length;
      const warnings = plan.problems.length - errors;
      problemsHeading.hidden = errors === 0;
      problemsHeading.textContent = `${errors} error${errors === 1 ? '' : 's'} stop the merge`;
      problems.replaceChildren(...(plan.problems.length
        ? plan.problems.map((p) => el('li', { className: p.severity, textContent: `${p.severity}: ${p.message}` }))
        : [el('li', { className: 'ok', textContent: '✓ Every adapter module found its base tensor.' })]));
      if (errors === 0 && warnings > 0) problemsHeading.hidden = true;
    }
    figure.hidden = plan.magnitudes.length === 0; // nothing matched: no chart to show
    const key = weights.join(',');
    if (key !== shownWeights) {
      shownWeights = key;
      chart.update(plan.magnitudes, weights);
      body.replaceChildren(...plan.modules.map((m) => {
        const row = el('tr');
        for (const text of [m.module, m.target, m.shape.join(' × '), formatScale(m.scale * (weights[m.adapter] ?? 0))]) {
          row.append(el('td', { textContent: text, title: text }));
        }
        return row;
      }));
    }
  };
}
