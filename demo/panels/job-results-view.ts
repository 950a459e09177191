/**
 * A job's adapter: download links to its disk-backed files in browser storage. A PEFT folder comes
 * first as one zip (`<name>.zip` holding `<name>/adapter_config.json` and
 * `adapter_model.safetensors`), then its files one by one; a kohya adapter is one
 * `<name>.safetensors`; a conversion's llama.cpp LoRA one `<name>.gguf`. A result made with other settings than the current ones is marked out of
 * date and its links change test ids, as the merge's do.
 */
import { byId, el, textNodes } from '../dom.js';
import { formatBytes, formatDuration } from '../format.js';
import type { JobResult } from '../job-state.js';
import { DownloadsView } from './downloads-view.js';

const DONE: Record<JobResult['mode'], string> = { combine: 'Combined', resize: 'Resized', extract: 'Extracted', convert: 'Converted' };

export class JobResultsView extends DownloadsView<JobResult> {
  private readonly note = byId('job-results-note');
  private readonly warnings = byId<HTMLUListElement>('job-warnings');

  constructor() {
    super(byId('job-results'), byId<HTMLUListElement>('job-downloads'), 'job-download-link');
  }

  protected describe(result: JobResult): void {
    const ranks = result.report.map((m) => m.rank);
    const range = ranks.length ? (Math.min(...ranks) === Math.max(...ranks) ? `rank ${ranks[0]}` : `ranks ${Math.min(...ranks)}–${Math.max(...ranks)}`) : '';
    this.note.textContent = result.stale
      ? 'Out of date: a setting or a weight changed after this ran. Run it again to get the current settings. These files are deleted from browser storage when the page makes its next result, of any mode: save them first if you want them.'
      // A conversion runs no algebra: nothing ran it to name.
      : `${DONE[result.mode]}${result.mode === 'convert' ? '' : ` on ${result.backend}`} in ${formatDuration(result.seconds)}: ${result.report.length} LoRA module${result.report.length === 1 ? '' : 's'}${range ? `, ${range}` : ''}.`;
  }

  protected build(result: JobResult | undefined): void {
    this.warnings.replaceChildren(...(result?.warnings ?? []).map((w) => el('li', { className: 'warning' }, ...textNodes(`warning: ${w}`))));
    if (!result) return;
    if (result.zip?.file) {
      this.list.append(this.item(result.zip.file, `${result.outName}.zip`, 'primary', `${result.outName}.zip (the PEFT folder)`));
    }
    for (const f of result.files) {
      if (!f.file) continue;
      // One file: named after the job, not the library's adapter.safetensors or adapter.gguf.
      const one = result.format === 'kohya' ? '.safetensors' : result.format === 'gguf' ? '.gguf' : undefined;
      this.list.append(this.item(f.file, one ? `${result.outName}${one}` : f.path, one ? 'primary' : 'extra', one ? `${result.outName}${one}` : f.path));
    }
  }

  private item(file: File, downloadName: string, role: 'primary' | 'extra', label: string): HTMLLIElement {
    return el('li', {}, this.link(file, downloadName, role, label), ` (${formatBytes(file.size)})`);
  }
}
