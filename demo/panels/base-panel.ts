/** Section 1: the base model's pickers and what was picked (files listed only for folders). */
import { BASE_ACCEPT } from '../accepted-files.js';
import { byId, el, listed, MAX_LISTED_ROWS, unlistedLine } from '../dom.js';
import { formatBytes } from '../format.js';
import { busyWith, type PageState, type PageStore } from '../page-state.js';
import { mergeSets, mountInputPanel } from './input-panel.js';
import type { PickedFile } from '../worker-protocol.js';

export function mountBasePanel(store: PageStore, onError: (message: string) => void): (state: PageState) => void {
  const pickers = mountInputPanel(
    { filesButton: 'base-files-button', folderButton: 'base-folder-button', filesInput: 'base-input', folderInput: 'base-folder-input', drop: 'base-drop' },
    BASE_ACCEPT,
    (sets) => {
      const set = mergeSets(sets);
      if (set) store.setBase(set);
    },
    onError,
  );
  const summary = byId('base-summary');
  let shown: unknown;
  return (state) => {
    pickers.setBusy(busyWith(state));
    if (shown === state.base) return;
    shown = state.base;
    const set = state.base;
    summary.hidden = !set;
    if (!set) return summary.replaceChildren();
    const total = set.files.reduce((n, f) => n + f.file.size, 0);
    const count = `${set.files.length} file${set.files.length === 1 ? '' : 's'}, ${formatBytes(total)}`;
    const heading = el('div', {}, el('b', { textContent: set.name, title: set.name }), ` · ${count}${set.origin === 'sample' ? ' · the sample' : ''}`);
    const only = set.files.length === 1 && set.files[0].path === set.name;
    summary.replaceChildren(heading, ...(only ? [] : [el('ul', {}, ...listedPaths(set.files).map((path) => el('li', { textContent: path, title: path })))]));
  };
}

/**
 * The lines of the summary's list: a folder's paths in order, the first MAX_LISTED_ROWS of them
 * (a line for each of 9,000, a dataset or a cache beside the weights, held the page still for most
 * of a second while they were laid out) and a line for the rest; the files at the folder's top
 * first when it is cut short (the weights and configs are there).
 */
function listedPaths(files: readonly PickedFile[]): string[] {
  const ordered = files.length <= MAX_LISTED_ROWS ? files : [...files.filter((f) => !f.path.includes('/')), ...files.filter((f) => f.path.includes('/'))];
  const { rows, more } = listed(ordered);
  return [...rows.map((f) => f.path), ...(more ? [unlistedLine(more, 'files')] : [])];
}
