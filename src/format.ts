/** Numbers as people read them, shared by the CLI and the demo page. */

/** 1234567 → "1.2 MB" (decimal units, as disks and downloads count). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** Scales like 2, 0.125 or 1.414: short, but exact when they are simple. */
export function formatScale(x: number): string {
  return Number.isInteger(x) ? String(x) : Number(x.toPrecision(4)).toString();
}
