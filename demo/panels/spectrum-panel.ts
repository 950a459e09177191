/**
 * What a job chose per module: a menu of the modules, the chosen one's singular values as a chart
 * (log scale, the rank marked, the share kept on hover) and as a table with the same numbers for
 * keyboard and screen-reader users, and a table of every module's rank and share kept. An exact
 * concatenation (combine's cat) has no singular values: only the ranks are shown.
 */
import { byId, el, textNodes } from '../dom.js';
import type { ModuleReport } from '../../src/index.js';
import { formatShare, keptShares, SpectrumChart } from '../spectrum-chart.js';

const CAPTION =
  'Each point is one singular value σᵢ of the module’s update, largest first, on a log scale. Round points are kept, diamonds dropped; ' +
  'the dashed line marks the rank chosen. Hover a point (or Tab to the chart and step with the arrow keys) for the share of ‖ΔW‖_F that keeping the values up to it would keep; ' +
  'the table below lists the same numbers.';

export interface SpectrumPanel {
  /** Shows a job's report (undefined hides it); the same report again keeps the module picked. */
  /** `converted`: a conversion's modules, their factors as they were (no singular values were taken). */
  show(report: ModuleReport[] | undefined, converted?: boolean): void;
}

export function mountSpectrumPanel(): SpectrumPanel {
  const heading = byId('spectrum-heading');
  const note = byId('spectrum-note');
  const picker = byId('spectrum-picker');
  const select = byId<HTMLSelectElement>('spectrum-module');
  const figure = byId('spectrum-figure');
  const details = byId('spectrum-details');
  const table = byId<HTMLTableElement>('spectrum-table').tBodies[0];
  const modules = byId<HTMLTableElement>('job-modules').tBodies[0];
  const chart = new SpectrumChart(byId<HTMLCanvasElement>('spectrum-chart'), byId('spectrum-readout'));
  byId('spectrum-caption').textContent = CAPTION;
  let shown: ModuleReport[] | undefined;
  let withValues: ModuleReport[] = [];

  const draw = () => {
    const m = withValues[Number(select.value)];
    if (!m) return;
    chart.update({ module: m.name, values: m.singularValues, rank: m.rank, normSquared: m.normSquared });
    const shares = keptShares(m.singularValues, m.normSquared);
    table.replaceChildren(...m.singularValues.map((s, i) => {
      const kept = i < m.rank;
      const row = el('tr', { className: i + 1 === m.rank ? 'chosen' : kept ? '' : 'dropped' },
        el('td', { textContent: String(i + 1) }),
        el('td', { textContent: s.toPrecision(6) }),
        el('td', { textContent: formatShare(shares[i]) }),
        el('td', { textContent: i + 1 === m.rank ? 'kept · the rank chosen' : kept ? 'kept' : 'dropped' }));
      return row;
    }));
  };
  select.addEventListener('change', draw);

  return {
    show(report, converted = false) {
      if (report === shown) return;
      shown = report;
      if (!report) {
        chart.clear();
        return;
      }
      // A conversion chose no rank: its modules are listed with the ranks they came with.
      heading.textContent = converted ? 'Each module’s rank' : 'Singular values and the rank chosen';
      withValues = report.filter((m) => m.singularValues.length > 0);
      const exact = withValues.length === 0;
      // No module at all (an extract whose changes were all saved whole) is no concatenation.
      note.textContent = report.length === 0
        ? 'No low-rank module was made, so there are no singular values to show: the files above hold what changed.'
        : exact && converted
        ? 'A conversion keeps every module’s factors as they are: there are no singular values to choose from.'
        : exact
        ? 'An exact concatenation keeps every rank of every adapter: there are no singular values to choose from.'
        : `${withValues.length} module${withValues.length === 1 ? '' : 's'}: pick one to see its singular values and where its rank was cut.`;
      picker.hidden = exact;
      figure.hidden = exact;
      details.hidden = exact;
      select.replaceChildren(...withValues.map((m, i) => el('option', { value: String(i), textContent: `${m.name} (rank ${m.rank}, ${formatShare(m.froKept)})` })));
      modules.replaceChildren(...report.map((m) => el('tr', {},
        el('td', { title: m.name }, ...textNodes(m.name)),
        el('td', { textContent: String(m.rank) }),
        el('td', { textContent: formatShare(m.froKept) }))));
      if (exact) chart.clear();
      else draw();
    },
  };
}
