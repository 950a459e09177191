/**
 * The plan's chart: how large each update is next to the weight it changes, w·‖s·B·A‖ / ‖W‖ in %,
 * by block of the model (x) and module kind (one bar series each). The sign is the weight's: below
 * zero, the adapter is subtracted. The worker measures each ratio once at weight 1, so moving a
 * slider redraws without asking it. Several adapters on one block add up their signed values (an
 * upper bound on the size when signs agree); the tooltip lists each module's share.
 */
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from 'chart.js';
import { blockOf, orderGroups, type BlockGroup } from './chart-groups.js';
import type { UpdateMagnitude } from './worker-protocol.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

/** What the caption says about the axes, so the chart is readable without the picture too. */
export const CHART_CAPTION =
  'Each bar: how much the merge changes that block’s weights, as weight × ‖s·B·A‖ / ‖W‖ in percent ' +
  '(1 % means the update is a hundredth of the weight’s size), one colour per module kind. Below zero: the ' +
  'adapter is subtracted (negative weight). Hover a bar for its values; the table of matched modules below lists each module’s scale.';

export class MagnitudeChart {
  private chart?: Chart<'bar'>;

  constructor(private readonly canvas: HTMLCanvasElement) {}

  update(magnitudes: UpdateMagnitude[], weights: number[]): void {
    const groups = new Map<string, BlockGroup>();
    const kinds: string[] = [];
    const sums = new Map<string, number>();
    for (const m of magnitudes) {
      const group = blockOf(m.target);
      groups.set(group.label, group);
      if (!kinds.includes(m.moduleType)) kinds.push(m.moduleType);
      const key = `${group.label}\u0000${m.moduleType}`;
      const ratio = Number.isFinite(m.ratio) ? m.ratio : 0;
      sums.set(key, (sums.get(key) ?? 0) + (weights[m.adapter] ?? 0) * ratio * 100);
    }
    const labels = orderGroups([...groups.values()]).map((g) => g.label);
    const datasets = kinds.map((kind, i) => ({
      label: kind,
      data: labels.map((label) => sums.get(`${label}\u0000${kind}`) ?? 0),
      backgroundColor: PALETTE[i % PALETTE.length],
      borderWidth: 0,
    }));
    const biggest = Math.max(0, ...datasets.flatMap((d) => d.data.map(Math.abs)));
    this.canvas.setAttribute('aria-label', `Bar chart of update size by block: ${labels.length} blocks, ${kinds.length} module kinds, largest ${biggest.toPrecision(3)} %`);
    if (this.chart) {
      this.chart.data.labels = labels;
      this.chart.data.datasets = datasets;
      this.chart.update('none');
      return;
    }
    const text = getComputedStyle(this.canvas).color;
    const grid = 'rgba(128, 128, 128, 0.25)';
    this.chart = new Chart(this.canvas, {
      type: 'bar',
      data: { labels, datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        color: text,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { ticks: { color: text, autoSkip: true }, grid: { display: false }, title: { display: true, text: 'block of the model', color: text } },
          y: {
            ticks: { color: text, callback: (v) => `${v} %` },
            grid: { color: grid, lineWidth: (c) => (c.tick.value === 0 ? 2 : 1) },
            title: { display: true, text: 'w·‖s·B·A‖ / ‖W‖', color: text },
          },
        },
        plugins: {
          legend: { position: 'bottom', labels: { color: text, boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: (c) => `${c.dataset.label}: ${Number(c.parsed.y) >= 0 ? '+' : ''}${Number(c.parsed.y).toPrecision(3)} %`,
            },
          },
        },
      },
    });
  }

  clear(): void {
    this.chart?.destroy();
    this.chart = undefined;
  }
}
