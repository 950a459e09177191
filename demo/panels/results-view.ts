/**
 * The merged files: download links to disk-backed files in browser storage (the model first,
 * named `<base>-merged.safetensors` (or `.gguf`) for a one-file model; a folder model keeps its
 * file names, a file in a sub-folder (a pipeline's `unet/…`) downloads as `unet_…`, and one
 * streamed zip keeps the folders), or where a picker saved them; above them, any warning the merge
 * itself found. A result made with other settings than the current ones is marked out of date and
 * its links change test ids, so nobody takes it for the current one.
 */
import { byId, el, textNodes } from '../dom.js';
import { formatBytes, formatDuration } from '../format.js';
import type { MergeResultState } from '../page-state.js';
import { stemOf, weightsExtension } from '../save-choice.js';
import type { MergedFile } from '../worker-protocol.js';
import { DownloadsView } from './downloads-view.js';

export interface ResultsActions {
  zip(job: string, folder: string): Promise<File>;
  onError(message: string): void;
}

export class ResultsView extends DownloadsView<MergeResultState> {
  private readonly note = byId('results-note');
  private readonly warningsBox = byId('merge-warnings-box');
  private readonly warningsHeading = byId('merge-warnings-heading');
  private readonly warnings = byId<HTMLUListElement>('merge-warnings');

  constructor(private readonly actions: ResultsActions) {
    super(byId('results'), byId<HTMLUListElement>('downloads'), 'download-link');
  }

  protected describe(result: MergeResultState): void {
    const nested = result.files.some((f) => f.path.includes('/'));
    this.note.textContent = result.stale
      ? `Out of date: a weight or the dtype changed after this merge. Merge again to get the current settings.${result.job ? ' These files are deleted from browser storage when the page makes its next result, of any mode: save them first if you want them.' : ''}`
      : `Merged on ${result.backend.description}${result.where} in ${formatDuration(result.seconds)}.` +
        (result.job && result.files.length > 1
          ? ` A folder model keeps its files’ own names (its index refers to them)${nested ? '; files in sub-folders download as folder_name' : ''}: pack them into one zip, which holds the folder ${stemOf(result.baseName)}-merged/${nested ? ' with its sub-folders' : ''}, to keep them together.`
          : '');
  }

  protected build(result: MergeResultState | undefined): void {
    const warnings = result?.warnings ?? [];
    this.warningsBox.hidden = warnings.length === 0;
    this.warningsHeading.textContent = `The merge found ${warnings.length === 1 ? 'one thing' : `${warnings.length} things`} to know`;
    this.warnings.replaceChildren(...warnings.map((w) => el('li', { className: 'warning' }, ...textNodes(`warning: ${w}`))));
    if (!result) return;
    const files = primaryFirst(result.files);
    const single = result.files.length === 1;
    files.forEach((file, i) => {
      // A path's folders become part of the name, as the browser would write them (`unet_config.json`), so names never collide.
      const name = single ? `${stemOf(result.baseName)}-merged${weightsExtension(file.path)}` : file.path.replace(/\//g, '_');
      if (!file.file) {
        this.list.append(el('li', { textContent: `${file.path} (saved)`, title: file.path }));
        return;
      }
      this.list.append(el('li', {}, this.link(file.file, name, i === 0 ? 'primary' : 'extra', single ? name : file.path), ` (${formatBytes(file.size)})`));
    });
    if (result.job && !single) this.list.append(this.zipItem(result.job, `${stemOf(result.baseName)}-merged`));
  }

  /** The button that packs the files into one zip, then the zip's link; both marked out of date with the result's other links. */
  private zipItem(job: string, folder: string): HTMLLIElement {
    const button = el('button', { type: 'button' });
    button.dataset.label = `Pack all files into ${folder}.zip`;
    button.dataset.currentTestid = 'zip-button';
    this.label(button);
    const item = el('li', {}, button);
    button.addEventListener('click', () => {
      button.disabled = true;
      button.textContent = `Packing ${folder}.zip…`;
      this.actions.zip(job, folder).then((zip) => {
        if (this.shown?.job !== job) return;
        const link = this.link(zip, `${folder}.zip`, 'extra', `${folder}.zip`);
        link.dataset.currentTestid = 'download-zip';
        this.label(link);
        item.replaceChildren(link, ` (${formatBytes(zip.size)}, the folder as it is, uncompressed)`);
        link.focus();
      }, (error: Error) => {
        button.disabled = false;
        this.label(button);
        this.actions.onError(`could not pack the zip: ${error.message}`);
      });
    });
    return item;
  }
}

/** Weight files first (safetensors or GGUF), in path order (shard 1 of N leads), then indexes and configs. */
function primaryFirst(files: MergedFile[]): MergedFile[] {
  const rank = (f: MergedFile): number => (/\.(safetensors|gguf)$/.test(f.path) ? 0 : 1);
  return files.slice().sort((a, b) => rank(a) - rank(b) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
