/**
 * The merge's optional importance matrix (the CLI's --imatrix), shown while the base is a GGUF:
 * llama-imatrix's file, read in the worker as soon as it is picked, so a file that is not one is
 * refused at once in the library's one line, under the picker and aloud, Merge off until it is
 * removed or replaced; read, it says how many tensors it covers. The merge takes it.
 */
import type { Announcer } from '../announcer.js';
import { byId, messageNodes, spokenMessage, textNodes } from '../dom.js';
import { busyWith, type PageState, type PageStore } from '../page-state.js';
import type { MergeWorkerClient } from '../worker-client.js';

export function mountImatrixPanel(store: PageStore, client: MergeWorkerClient, announcer: Pick<Announcer, 'say' | 'error'>): (state: PageState) => void {
  const box = byId('imatrix-box');
  const input = byId<HTMLInputElement>('imatrix-input');
  const button = byId<HTMLButtonElement>('imatrix-button');
  const remove = byId<HTMLButtonElement>('imatrix-remove');
  const picked = byId('imatrix-picked');
  const facts = byId('imatrix-facts');
  button.addEventListener('click', () => input.click());
  remove.addEventListener('click', () => {
    const dropped = store.setImatrix(undefined);
    client.forgetImatrix();
    button.focus(); // the Remove button hides with what it removed, under the focus
    announcer.say(`Importance matrix removed: the merged tensors are re-quantized without one.${dropped ? ` ${dropped} is written only with one: the Output dtype is back to “keep each tensor’s type”.` : ''}`);
  });
  input.addEventListener('change', () => {
    const file = input.files?.[0];
    input.value = ''; // the same file picked again must fire change again
    if (!file) return;
    // A chooser opened before a merge started and answered after would change the running merge's inputs.
    const busy = busyWith(store.state);
    if (busy) return announcer.error(`Nothing picked was added, as ${busy}: pick it again when that is over.`);
    const picked = { path: file.name, file };
    store.setImatrix(picked);
    client.readImatrix(picked).then(
      (tensors) => {
        if (store.state.imatrix?.file !== picked) return;
        store.setImatrixInfo({ file: picked, status: 'ready', tensors });
        // The types written only with one join the Output dtype menu: said, as a screen reader would not see them come.
        const plan = store.state.plan;
        const added = plan.status === 'ready' ? (plan.plan.output.imatrixTypes ?? []).map((t) => t.name) : [];
        const offered = added.length ? ` The Output dtype menu also offers ${added.slice(0, -1).join(', ')}${added.length > 1 ? ' and ' : ''}${added[added.length - 1]} with it.` : '';
        announcer.say(`Importance matrix read: ${file.name}, ${factsLine(tensors)}.${offered}`);
      },
      (error: Error) => {
        if (store.state.imatrix?.file !== picked) return;
        store.setImatrixInfo({ file: picked, status: 'failed', message: error.message });
        announcer.error(spokenMessage(error.message, 'under the importance matrix'));
      },
    );
  });

  let shown: unknown;
  return (state) => {
    box.hidden = !store.imatrixApplies();
    const busy = state.busy !== undefined;
    button.disabled = busy;
    remove.disabled = busy;
    const imatrix = state.imatrix;
    button.textContent = imatrix ? 'Choose another importance matrix…' : 'Choose an importance matrix…';
    if (shown === imatrix) return;
    shown = imatrix;
    picked.hidden = !imatrix;
    if (!imatrix) return facts.replaceChildren();
    facts.className = imatrix.status === 'failed' ? 'base-facts error-text' : 'base-facts';
    const name = imatrix.file.path;
    facts.replaceChildren(...(imatrix.status === 'failed' ? messageNodes(imatrix.message)
      : textNodes(`${name}: ${imatrix.status === 'reading' ? 'reading…' : factsLine(imatrix.tensors)}`)));
  };
}

/** What a read importance matrix gives the merge, in words. */
function factsLine(tensors: number): string {
  return `importance matrix for ${tensors} tensor${tensors === 1 ? '' : 's'}; the merged tensors are re-quantized with it`;
}
