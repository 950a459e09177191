/**
 * Section 1: the base model's pickers and what was picked (files listed only for folders), read at
 * once: its headers (the plan reads them only once an adapter is added, and a text file named
 * .safetensors said nothing until then), then what it is, or the library's refusal, shown and said.
 */
import { BASE_ACCEPT } from '../accepted-files.js';
import type { Announcer } from '../announcer.js';
import { byId, el, listed, MAX_LISTED_ROWS, messageNodes, nameNodes, spokenMessage, unlistedLine } from '../dom.js';
import { formatBytes } from '../format.js';
import { busyWith, type PageState, type PageStore } from '../page-state.js';
import { mergeSets, mountInputPanel } from './input-panel.js';
import type { MergeWorkerClient } from '../worker-client.js';
import type { BaseFacts, PickedFile } from '../worker-protocol.js';

/** `safetensors · 291 tensors · BF16 · 16.1 GB of weights`: what the plan's figures say of the base, before any plan. */
export function baseFactsLine(facts: BaseFacts): string {
  const files = facts.files > 1 ? ` · ${facts.files} weight files` : '';
  return `${facts.container}${files} · ${facts.tensors} tensor${facts.tensors === 1 ? '' : 's'} · ${facts.dtype} · ${formatBytes(facts.bytes)} of weights`;
}

export function mountBasePanel(
  store: PageStore, onError: (message: string) => void, client: MergeWorkerClient, announcer: Pick<Announcer, 'say' | 'error'>,
): (state: PageState) => void {
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
  let reading: { cancel(): void } | undefined;
  /** Reads `set`'s headers; only the newest base's answer reaches the page (an older one is cancelled). */
  const read = (set: NonNullable<PageState['base']>, facts: HTMLElement) => {
    reading?.cancel();
    const handle = client.readBase(set.name, set.files);
    reading = handle;
    const current = () => reading === handle && store.state.base === set;
    // The plan, once an adapter is there, says the same of the base (or why it failed): said once.
    const alone = () => store.state.adapters.length === 0;
    handle.done.then(
      (base) => {
        if (!current()) return;
        facts.className = 'base-facts';
        facts.replaceChildren(...messageNodes(baseFactsLine(base)));
        if (alone()) announcer.say(`Base read: ${set.name}, ${baseFactsLine(base).replaceAll(' · ', ', ')}. Add an adapter to see the plan.`);
      },
      (error: Error) => {
        if (!current() || error.name === 'AbortError') return;
        facts.className = 'base-facts error-text';
        facts.replaceChildren(...messageNodes(error.message));
        if (alone()) announcer.error(spokenMessage(error.message, 'under the base'));
      },
    );
  };
  return (state) => {
    pickers.setBusy(busyWith(state));
    if (shown === state.base) return;
    shown = state.base;
    const set = state.base;
    summary.hidden = !set;
    if (!set) {
      reading?.cancel();
      reading = undefined;
      return summary.replaceChildren();
    }
    const total = set.files.reduce((n, f) => n + f.file.size, 0);
    const count = `${set.files.length} file${set.files.length === 1 ? '' : 's'}, ${formatBytes(total)}`;
    const heading = el('div', {}, el('b', { title: set.name }, ...nameNodes(set.name)), ` · ${count}${set.origin === 'sample' ? ' · the sample' : ''}`);
    const only = set.files.length === 1 && set.files[0].path === set.name;
    const facts = el('p', { className: 'base-facts', textContent: 'Reading its headers…' });
    facts.dataset.testid = 'base-facts';
    summary.replaceChildren(heading, facts, ...(only ? [] : [el('ul', {}, ...listedPaths(set.files).map((path) => el('li', { textContent: path, title: path })))]));
    read(set, facts);
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
