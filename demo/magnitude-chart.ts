/**
 * The plan's chart: how large each update is next to the weight it changes, w·‖ΔW‖ / ‖W‖ in % (ΔW:
 * s·B·A of a low-rank module, W' − W of a map of W or a dense update, the module alone),
 * by block of the model (x) and module kind (one bar series each); the worker places each tensor
 * (chart-groups.ts). The sign is the weight's: below zero, the adapter is subtracted. The worker
 * measures each ratio once at weight 1, so moving a slider redraws without asking it. Several
 * adapters on one tensor add up their signed values (an upper bound on the size when signs agree);
 * several tensors of one kind in one block (MoE experts, a UNet block's attention layers) are
 * averaged, so a block of many modules is not drawn as a larger change. The tooltip says how many.
 */
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from 'chart.js';
import { orderGroups, type BlockGroup } from './chart-groups.js';
import { readByKeys, type ChartKeys } from './chart-keys.js';
import { chartLabel } from './dom.js';
import type { UpdateMagnitude } from './worker-protocol.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

/** What the caption says about the axes, so the chart is readable without the picture too. */
export const CHART_CAPTION =
  'Each bar: how much the merge changes that block’s weights of one module kind, as weight × ‖ΔW‖ / ‖W‖ in percent ' +
  '(ΔW: the module’s own change, s·B·A for a low-rank adapter, W′ − W for one that maps the weight, such as OFT, HiRA or RoAd; ' +
  '1 % means the update is a hundredth of the weight’s size; several tensors of a kind in a block, such as MoE experts, are averaged). ' +
  'Blocks follow the model: layers, UNet down/mid/up blocks, Flux double and single blocks, SD3 joint blocks, each text encoder, a vision tower. ' +
  'Below zero: the adapter is subtracted (negative weight). Hover a bar for its values (or Tab to the chart and step through its blocks with the arrow keys); the table of matched modules below lists each module’s algorithm, scale and own size. ' +
  'Sizes are measured on sampled rows of a large weight; PEFT DEFT and PEANuT modules on a large weight are not measured before the merge (their change depends on every row of W) and have no bar.';

export class MagnitudeChart {
  private chart?: Chart<'bar'>;
  /** Tensors averaged into each bar, by dataset and label index, for the tooltip. */
  private counts: number[][] = [];

  private readonly keys: ChartKeys;

  /** `readout`: the line under the chart that says the block stepped to by keys. */
  constructor(private readonly canvas: HTMLCanvasElement, readout: HTMLElement) {
    // The text colour follows the page's theme when the system switches it.
    matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => this.applyTextColor());
    // By keys, a block at a time, as a hover shows every kind's bar of one block.
    this.keys = readByKeys(canvas, readout, () => this.chart as Chart | undefined, () => {
      const data = this.chart?.data;
      if (!data) return [];
      return (data.labels as string[]).map((label, index) => ({
        points: data.datasets.map((_, datasetIndex) => ({ datasetIndex, index })),
        text: `${label}: ${data.datasets.map((d, datasetIndex) => this.barText(String(d.label), datasetIndex, index, Number(d.data[index]))).join('; ')}`,
      }));
    });
  }

  /** A bar's value as its tooltip says it: `kind: +1.23 %`, and how many tensors it averages. */
  private barText(kind: string, datasetIndex: number, index: number, value: number): string {
    const n = this.counts[datasetIndex]?.[index] ?? 0;
    return `${kind}: ${value >= 0 ? '+' : ''}${value.toPrecision(3)} %${n > 1 ? ` (mean of ${n} tensors)` : ''}`;
  }

  private applyTextColor(): void {
    const options = this.chart?.options;
    if (!options) return;
    const text = getComputedStyle(this.canvas).color;
    options.color = text;
    for (const axis of [options.scales?.x, options.scales?.y]) {
      if (!axis) continue;
      if (axis.ticks) axis.ticks.color = text;
      if (axis.title) (axis.title as { color?: string }).color = text;
    }
    if (options.plugins?.legend?.labels) options.plugins.legend.labels.color = text;
    this.chart!.update('none');
  }

  update(magnitudes: UpdateMagnitude[], weights: number[]): void {
    const groups = new Map<string, BlockGroup>();
    const kinds: string[] = [];
    /** block label → kind → target → signed sum over adapters. */
    const perTarget = new Map<string, Map<string, Map<string, number>>>();
    for (const m of magnitudes) {
      // Not measured before the merge (PEFT DEFT or PEANuT on a large weight): no bar rather than a zero.
      if (Number.isNaN(m.ratio)) continue;
      const { group, kind } = m.place;
      groups.set(group.label, group);
      if (!kinds.includes(kind)) kinds.push(kind);
      const byKind = perTarget.get(group.label) ?? new Map<string, Map<string, number>>();
      perTarget.set(group.label, byKind);
      const targets = byKind.get(kind) ?? new Map<string, number>();
      byKind.set(kind, targets);
      const ratio = Number.isFinite(m.ratio) ? m.ratio : 0;
      targets.set(m.target, (targets.get(m.target) ?? 0) + (weights[m.adapter] ?? 0) * ratio * 100);
    }
    const labels = orderGroups([...groups.values()]).map((g) => g.label);
    const cell = (label: string, kind: string) => [...(perTarget.get(label)?.get(kind)?.values() ?? [])];
    this.counts = kinds.map((kind) => labels.map((label) => cell(label, kind).length));
    const datasets = kinds.map((kind, i) => ({
      label: chartLabel(kind),
      data: labels.map((label) => {
        const values = cell(label, kind);
        return values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0;
      }),
      backgroundColor: PALETTE[i % PALETTE.length],
      borderWidth: 0,
    }));
    const biggest = Math.max(0, ...datasets.flatMap((d) => d.data.map(Math.abs)));
    this.canvas.setAttribute('aria-label', `Bar chart of update size by block: ${labels.length} blocks, ${kinds.length} module kinds, largest ${biggest.toPrecision(3)} %; ` +
      `module kinds: ${datasets.map((d) => d.label).join(', ')}`);
    // Block labels come from the rules in chart-groups.ts, but `other` and a section's name can quote the file.
    const shownLabels = labels.map(chartLabel);
    this.keys.reset();
    if (this.chart) {
      this.chart.data.labels = shownLabels;
      this.chart.data.datasets = datasets;
      this.chart.update('none');
      return;
    }
    const text = getComputedStyle(this.canvas).color;
    const grid = 'rgba(128, 128, 128, 0.25)';
    this.chart = new Chart(this.canvas, {
      type: 'bar',
      data: { labels: shownLabels, datasets },
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
            title: { display: true, text: 'w·‖ΔW‖ / ‖W‖', color: text },
          },
        },
        plugins: {
          legend: { position: 'bottom', labels: { color: text, boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: (c) => this.barText(String(c.dataset.label), c.datasetIndex, c.dataIndex, Number(c.parsed.y)),
            },
          },
        },
      },
    });
  }

  clear(): void {
    this.keys.reset();
    this.chart?.destroy();
    this.chart = undefined;
  }
}
