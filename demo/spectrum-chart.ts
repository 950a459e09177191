/**
 * One module's singular values, largest first, on a log scale: the ones kept in the colour of the
 * page's accent, the dropped ones muted, and a dashed line at the rank chosen. Hovering a point
 * (or stepping to it with the arrow keys, the chart focused) shows σᵢ and the share of ‖ΔW‖_F that
 * rank i would keep. Zeros have no place on a log scale and
 * are counted in the label instead.
 */
import { Chart, Legend, LinearScale, LineController, LineElement, LogarithmicScale, PointElement, Tooltip, type Plugin } from 'chart.js';
import { oneLine } from '../src/shown-text.js';
import { readByKeys, type ChartKeys } from './chart-keys.js';
import { shown } from './dom.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, LogarithmicScale, Tooltip, Legend);

/** Log-axis labels at 1, 2 and 5 times a power of ten only, so they never crowd. */
function logTick(value: number | string): string {
  const v = Number(value);
  if (!(v > 0)) return '';
  const mantissa = Number((v / 10 ** Math.floor(Math.log10(v) + 1e-9)).toFixed(6));
  if (mantissa !== 1 && mantissa !== 2 && mantissa !== 5) return '';
  return v >= 1e-3 && v < 1e4 ? String(Number(v.toPrecision(1))) : v.toExponential(0);
}

export interface Spectrum {
  module: string;
  /** Singular values found, descending. */
  values: number[];
  rank: number;
  /** ‖ΔW‖²_F; without it the shares are of the values found. */
  normSquared?: number;
}

/** The share of ‖ΔW‖_F kept by ranks 1…n: √(Σ_{j≤i} σⱼ² / ‖ΔW‖²_F). */
export function keptShares(values: readonly number[], normSquared?: number): number[] {
  let total = normSquared ?? 0;
  if (!(total > 0)) total = values.reduce((s, x) => s + x * x, 0);
  let run = 0;
  return values.map((x) => {
    run += x * x;
    return total > 0 ? Math.min(1, Math.sqrt(run / total)) : 1;
  });
}

export function formatShare(share: number): string {
  return `${(100 * share).toFixed(4)} %`;
}

const cssVar = (name: string, fallback: string): string =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

/** The dashed line between the last kept value and the first dropped one. */
const rankLine: Plugin<'line'> = {
  id: 'rankLine',
  afterDatasetsDraw(chart, _args, options: { rank?: number; color?: string }) {
    const rank = options.rank;
    if (!rank) return;
    const { ctx, chartArea, scales } = chart;
    const x = scales.x.getPixelForValue(rank + 0.5);
    if (x < chartArea.left || x > chartArea.right) return;
    ctx.save();
    ctx.strokeStyle = options.color ?? '#888';
    ctx.fillStyle = options.color ?? '#888';
    ctx.lineWidth = 2;
    ctx.setLineDash([6, 4]);
    ctx.beginPath();
    ctx.moveTo(x, chartArea.top);
    ctx.lineTo(x, chartArea.bottom);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.font = '12px system-ui, sans-serif';
    const label = `rank ${rank}`;
    const width = ctx.measureText(label).width;
    ctx.fillText(label, x + 4 + width > chartArea.right ? x - 4 - width : x + 4, chartArea.top + 12);
    ctx.restore();
  },
};

export class SpectrumChart {
  private chart?: Chart<'line', { x: number; y: number }[]>;
  private shownSpectrum?: Spectrum;
  private readonly keys: ChartKeys;
  /** What each drawn point's tooltip says, by its x (i), for the keys. */
  private pointText: (i: number) => string = () => '';

  /** `readout`: the line under the chart that says the value stepped to by keys. */
  constructor(private readonly canvas: HTMLCanvasElement, readout: HTMLElement) {
    // By keys, one drawn value at a time, left to right, as a hover shows the nearest one.
    this.keys = readByKeys(canvas, readout, () => this.chart as Chart | undefined, () =>
      (this.chart?.data.datasets ?? []).flatMap((d, datasetIndex) => d.data.map((p, index) => ({ x: p.x, points: [{ datasetIndex, index }] })))
        .sort((a, b) => a.x - b.x)
        .map(({ x, points }) => ({ points, text: this.pointText(x) })));
    // Its text, points and rank line take the page's colours: drawn again in the new ones when the
    // system switches the theme (the light theme's dark text was unreadable on the dark card).
    matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
      const spectrum = this.shownSpectrum;
      if (!spectrum || !this.chart) return;
      this.clear();
      this.update(spectrum);
    });
  }

  update(spectrum: Spectrum): void {
    this.shownSpectrum = spectrum;
    const shares = keptShares(spectrum.values, spectrum.normSquared);
    const point = (i: number) => ({ x: i + 1, y: spectrum.values[i] });
    const kept: { x: number; y: number }[] = [];
    const dropped: { x: number; y: number }[] = [];
    spectrum.values.forEach((v, i) => {
      if (!(v > 0)) return;
      (i < spectrum.rank ? kept : dropped).push(point(i));
    });
    const zeros = spectrum.values.length - kept.length - dropped.length;
    const positive = spectrum.values.filter((v) => v > 0);
    const chosenShare = shares[Math.min(spectrum.rank, shares.length) - 1] ?? 1;
    this.canvas.dataset.rank = String(spectrum.rank);
    // The whole name, which is not drawn: a screen reader reads it as the module's name elsewhere on the page.
    this.canvas.setAttribute('aria-label',
      `Singular values of ${oneLine(shown(spectrum.module))} on a log scale: ${spectrum.values.length} values` +
      (positive.length ? ` from ${positive[0].toPrecision(3)} down to ${positive[positive.length - 1].toPrecision(3)}` : '') +
      (zeros ? `, ${zeros} of them zero (not drawn)` : '') +
      `; rank ${spectrum.rank} chosen, keeping ${formatShare(chosenShare)} of the update.`);

    const text = getComputedStyle(this.canvas).color;
    const accent = cssVar('--accent', '#1d5bc4');
    const muted = cssVar('--muted', '#556070');
    const marker = cssVar('--warn', '#8a5a00');
    const datasets = [
      { label: `kept (rank ≤ ${spectrum.rank})`, data: kept, borderColor: accent, backgroundColor: accent, pointRadius: 3, pointStyle: 'circle' as const },
      { label: 'dropped', data: dropped, borderColor: muted, backgroundColor: muted, pointRadius: 4, pointStyle: 'rectRot' as const, borderDash: [4, 4] },
    ];
    // Room above the largest value and below the smallest, so no point sits on the frame.
    const yRange = positive.length ? { min: positive[positive.length - 1] / 1.6, max: positive[0] * 1.6 } : { min: undefined, max: undefined };
    const tooltipLabel = (i: number): string[] => [
      `σ${i} = ${spectrum.values[i - 1].toPrecision(4)}`,
      `rank ${i} keeps ${formatShare(shares[i - 1])} of ‖ΔW‖_F`,
      i === spectrum.rank ? '(the rank chosen)' : `chosen: rank ${spectrum.rank}, ${formatShare(chosenShare)}`,
    ];
    this.pointText = (i) => tooltipLabel(i).join(', ');
    this.keys.reset();
    if (this.chart) {
      this.chart.data.datasets = datasets;
      this.chart.options.plugins!.tooltip!.callbacks!.label = (c) => tooltipLabel(c.parsed.x as number);
      (this.chart.options.plugins as Record<string, unknown>).rankLine = { rank: spectrum.rank, color: marker };
      (this.chart.options.scales!.x as { max?: number }).max = Math.max(spectrum.values.length, spectrum.rank) + 0.5;
      Object.assign(this.chart.options.scales!.y!, yRange);
      this.chart.update('none');
      return;
    }
    const grid = 'rgba(128, 128, 128, 0.25)';
    this.chart = new Chart(this.canvas, {
      type: 'line',
      data: { datasets },
      plugins: [rankLine],
      options: {
        animation: false,
        maintainAspectRatio: false,
        color: text,
        parsing: false,
        interaction: { mode: 'nearest', intersect: false, axis: 'x' },
        scales: {
          x: {
            type: 'linear', min: 0.5, max: Math.max(spectrum.values.length, spectrum.rank) + 0.5,
            ticks: { color: text, precision: 0, callback: (v) => (Number.isInteger(Number(v)) && Number(v) > 0 ? String(v) : '') },
            grid: { display: false },
            title: { display: true, text: 'i (largest first)', color: text },
          },
          y: {
            type: 'logarithmic',
            ...yRange,
            ticks: { color: text, callback: logTick },
            grid: { color: grid },
            title: { display: true, text: 'σᵢ (log scale)', color: text },
          },
        },
        plugins: {
          legend: { position: 'bottom', labels: { color: text, boxWidth: 12 } },
          tooltip: { callbacks: { title: () => '', label: (c) => tooltipLabel(c.parsed.x as number) } },
          ...({ rankLine: { rank: spectrum.rank, color: marker } } as object),
        },
      },
    });
  }

  clear(): void {
    this.keys.reset();
    this.shownSpectrum = undefined;
    this.chart?.destroy();
    this.chart = undefined;
  }
}
