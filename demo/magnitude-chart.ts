/**
 * The plan's chart: how large each update is relative to its weight, ‖s·B·A‖ / ‖W‖, by layer (x)
 * and module kind (one bar series each). The worker measures each adapter's ratio once at weight 1;
 * moving a slider only rescales it by |weight|, so the chart redraws without asking the worker.
 * Several adapters on one module add up to at most Σ |wᵢ|·ratioᵢ (triangle inequality): shown as such.
 */
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from 'chart.js';
import type { UpdateMagnitude } from './worker-protocol.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export class MagnitudeChart {
  private chart?: Chart<'bar'>;

  constructor(private readonly canvas: HTMLCanvasElement) {}

  update(magnitudes: UpdateMagnitude[], weights: number[]): void {
    const layers: string[] = [];
    const kinds: string[] = [];
    const sums = new Map<string, number>();
    for (const m of magnitudes) {
      const layer = m.layer === null ? 'other' : String(m.layer);
      const kind = m.moduleType;
      if (!layers.includes(layer)) layers.push(layer);
      if (!kinds.includes(kind)) kinds.push(kind);
      const key = `${layer}\u0000${kind}`;
      sums.set(key, (sums.get(key) ?? 0) + Math.abs(weights[m.adapter] ?? 0) * m.ratio * 100);
    }
    layers.sort((a, b) => (a === 'other' ? 1 : b === 'other' ? -1 : Number(a) - Number(b)));
    const datasets = kinds.map((kind, i) => ({
      label: kind,
      data: layers.map((layer) => sums.get(`${layer}\u0000${kind}`) ?? 0),
      backgroundColor: PALETTE[i % PALETTE.length],
      borderWidth: 0,
    }));
    const labels = layers.map((l) => (l === 'other' ? 'other' : `layer ${l}`));
    if (this.chart) {
      this.chart.data.labels = labels;
      this.chart.data.datasets = datasets;
      this.chart.update('none');
      return;
    }
    const text = getComputedStyle(this.canvas).color;
    const grid = 'rgba(128, 128, 128, 0.2)';
    this.chart = new Chart(this.canvas, {
      type: 'bar',
      data: { labels, datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        color: text,
        scales: {
          x: { ticks: { color: text }, grid: { display: false } },
          y: {
            beginAtZero: true,
            ticks: { color: text, callback: (v) => `${v} %` },
            grid: { color: grid },
            title: { display: true, text: '‖s·B·A‖ / ‖W‖', color: text },
          },
        },
        plugins: {
          legend: { position: 'bottom', labels: { color: text, boxWidth: 12 } },
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${Number(c.parsed.y).toPrecision(3)} %` } },
        },
      },
    });
  }

  clear(): void {
    this.chart?.destroy();
    this.chart = undefined;
  }
}
