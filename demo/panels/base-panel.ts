/** Section 1: the base model's pickers and what was picked (files listed only for folders). */
import { BASE_ACCEPT } from '../accepted-files.js';
import { byId, el } from '../dom.js';
import { formatBytes } from '../format.js';
import { busyWith, type PageState, type PageStore } from '../page-state.js';
import { mergeSets, mountInputPanel } from './input-panel.js';

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
    summary.replaceChildren(heading, ...(only ? [] : [el('ul', {}, ...set.files.map((f) => el('li', { textContent: f.path, title: f.path })))]));
  };
}
