/**
 * A job's adapter: download links to its disk-backed files in browser storage. A PEFT folder comes
 * first as one zip (`<name>.zip` holding `<name>/adapter_config.json` and
 * `adapter_model.safetensors`), then its files one by one; a kohya adapter is one
 * `<name>.safetensors`. A result made with other settings than the current ones is marked out of
 * date and its links change test ids, as the merge's do.
 */
import { byId, el } from '../dom.js';
import { formatBytes } from '../format.js';
import type { JobResult } from '../job-state.js';

const DONE: Record<JobResult['mode'], string> = { combine: 'Combined', resize: 'Resized', extract: 'Extracted' };

export class JobResultsView {
  private readonly box = byId('job-results');
  private readonly list = byId<HTMLUListElement>('job-downloads');
  private readonly note = byId('job-results-note');
  private readonly warnings = byId<HTMLUListElement>('job-warnings');
  private urls: string[] = [];
  private shown?: JobResult;
  private shownStale = false;

  render(result: JobResult | undefined): void {
    if (result === this.shown && result?.stale === this.shownStale) return;
    if (result !== this.shown) this.build(result);
    this.shown = result;
    this.shownStale = result?.stale ?? false;
    if (!result) return;
    this.box.classList.toggle('stale', result.stale);
    const ranks = result.report.map((m) => m.rank);
    const range = ranks.length ? (Math.min(...ranks) === Math.max(...ranks) ? `rank ${ranks[0]}` : `ranks ${Math.min(...ranks)}–${Math.max(...ranks)}`) : '';
    this.note.textContent = result.stale
      ? 'Out of date: a setting or a weight changed after this ran. Run it again to get the current settings.'
      : `${DONE[result.mode]} on ${result.backend} in ${result.seconds.toFixed(1)} s: ${result.report.length} LoRA module${result.report.length === 1 ? '' : 's'}${range ? `, ${range}` : ''}.`;
    for (const link of this.list.querySelectorAll<HTMLAnchorElement>('a[data-role]')) {
      link.dataset.testid = `job-download-link${link.dataset.role === 'primary' ? '' : '-extra'}${result.stale ? '-stale' : ''}`;
      link.textContent = `${result.stale ? 'Out of date: ' : ''}${link.dataset.label}`;
    }
  }

  /** Moves focus to the result, so keyboard and screen-reader users land on it. */
  focus(): void {
    this.box.focus();
  }

  private build(result: JobResult | undefined): void {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    this.list.replaceChildren();
    this.warnings.replaceChildren(...(result?.warnings ?? []).map((w) => el('li', { className: 'warning', textContent: `warning: ${w}` })));
    this.box.hidden = !result;
    if (!result) return;
    if (result.zip?.file) {
      this.list.append(this.item(result.zip.file, `${result.outName}.zip`, 'primary', `${result.outName}.zip (the PEFT folder)`));
    }
    for (const f of result.files) {
      if (!f.file) continue;
      const kohya = result.format === 'kohya';
      this.list.append(this.item(f.file, kohya ? `${result.outName}.safetensors` : f.path, kohya ? 'primary' : 'extra', kohya ? `${result.outName}.safetensors` : f.path));
    }
  }

  private item(file: File, downloadName: string, role: 'primary' | 'extra', label: string): HTMLLIElement {
    const url = URL.createObjectURL(file); // a disk-backed File: the link holds no copy
    this.urls.push(url);
    const link = el('a', { href: url, download: downloadName, title: label });
    link.dataset.role = role;
    link.dataset.label = `Download ${label}`;
    link.dataset.testid = role === 'primary' ? 'job-download-link' : 'job-download-link-extra';
    link.textContent = link.dataset.label;
    return el('li', {}, link, ` (${formatBytes(file.size)})`);
  }
}
