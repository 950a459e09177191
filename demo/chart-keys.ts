/**
 * A chart's hover values by keyboard: the canvas takes the focus (Tab), and the arrow keys (Home,
 * End) step through what a pointer hovers (the plan's chart: a block's bars; the spectrum: one
 * singular value), showing the same tooltip and writing its words in a polite line under the chart,
 * so a keyboard or screen-reader user reads each value a mouse user reads by hovering.
 */
import type { ActiveDataPoint, Chart } from 'chart.js';

/** One step: the points a hover there makes active, and what its tooltip says, as one line. */
export interface ChartStep {
  points: ActiveDataPoint[];
  text: string;
}

/** What the chart's owner tells the keys: the steps are new (another plan or module). */
export interface ChartKeys {
  reset(): void;
}

/**
 * Makes `canvas` focusable and its values readable by keys. `steps()` lists the current chart's
 * steps in order, left to right; `readout` is the line that says the one stepped to.
 */
export function readByKeys(canvas: HTMLCanvasElement, readout: HTMLElement, chart: () => Chart | undefined, steps: () => ChartStep[]): ChartKeys {
  canvas.tabIndex = 0;
  let at = -1;
  const show = (points: ActiveDataPoint[]) => {
    const c = chart();
    if (!c) return;
    c.setActiveElements(points);
    const first = points[0] && c.getDatasetMeta(points[0].datasetIndex).data[points[0].index];
    c.tooltip?.setActiveElements(points, { x: first?.x ?? 0, y: first?.y ?? 0 });
    c.update('none');
  };
  canvas.addEventListener('keydown', (event) => {
    const all = steps();
    if (all.length === 0) return;
    const next = event.key === 'ArrowRight' || event.key === 'ArrowDown' ? Math.min(at + 1, all.length - 1)
      : event.key === 'ArrowLeft' || event.key === 'ArrowUp' ? Math.max(at - 1, 0)
        : event.key === 'Home' ? 0 : event.key === 'End' ? all.length - 1 : undefined;
    if (next === undefined) return;
    event.preventDefault(); // the arrows would scroll the page
    at = next;
    show(all[at].points);
    readout.textContent = all[at].text;
  });
  canvas.addEventListener('blur', () => show([]));
  return {
    reset() {
      at = -1;
      readout.textContent = '';
    },
  };
}
