/** Numbers as people read them: the library's formatters plus the page's own. */
export { formatBytes } from '../src/index.js';
export { formatScale } from '../src/format.js';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 1) return '<1 s';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function formatPercent(ratio: number): string {
  const percent = ratio * 100;
  return `${percent >= 10 ? percent.toFixed(1) : percent.toPrecision(2)} %`;
}
