/**
 * Sections 1 and 2's pickers: real buttons (focusable, announced) that open hidden file inputs,
 * and drop zones for files and folders. What was picked goes to `take`, unless work runs: then a
 * pick or a drop is refused in words.
 */
import { mergeSets, setFromInput, setsFromDrop } from '../file-picking.js';
import { byId } from '../dom.js';
import type { PickedSet } from '../page-state.js';

export interface InputPanelIds {
  filesButton: string;
  folderButton: string;
  filesInput: string;
  folderInput: string;
  drop: string;
}

export function mountInputPanel(ids: InputPanelIds, accept: string[], take: (sets: PickedSet[]) => void,
  onError: (message: string) => void): { setBusy(busyWith: string | undefined): void } {
  const filesInput = byId<HTMLInputElement>(ids.filesInput);
  const folderInput = byId<HTMLInputElement>(ids.folderInput);
  filesInput.accept = accept.join(',');
  const filesButton = byId<HTMLButtonElement>(ids.filesButton);
  const folderButton = byId<HTMLButtonElement>(ids.folderButton);
  filesButton.addEventListener('click', () => filesInput.click());
  folderButton.addEventListener('click', () => folderInput.click());
  /** What runs while the pickers are off ('a merge was running', as a refused pick or drop says it); undefined while they are on. */
  let busy: string | undefined;
  for (const input of [filesInput, folderInput]) {
    input.addEventListener('change', () => {
      // A file chooser is not modal on every system: one opened before the work started and
      // answered after would change the running work's inputs.
      if (busy !== undefined) {
        input.value = '';
        return onError(`Nothing picked was added, as ${busy}: pick it again when that is over.`);
      }
      let set;
      try {
        set = setFromInput(input);
      } catch (e) {
        onError((e as Error).message);
        return;
      } finally {
        input.value = ''; // the same file picked again must fire change again
      }
      if (set) take([set]);
    });
  }
  const zone = byId(ids.drop);
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    if (busy === undefined) zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    // A drop is not a button that can be shown disabled: one ignored in silence looked taken.
    if (busy !== undefined) return onError(`Nothing dropped was added, as ${busy}: drop it again when that is over.`);
    if (!event.dataTransfer) return;
    setsFromDrop(event.dataTransfer).then(take, (e: Error) => onError(`could not read what was dropped: ${e.message}`));
  });
  return {
    /** Turns the pickers and the drop zone off while `busyWith` (what runs, as a refused drop says it) runs; undefined turns them on. */
    setBusy(busyWith) {
      busy = busyWith;
      filesButton.disabled = busy !== undefined;
      folderButton.disabled = busy !== undefined;
    },
  };
}

export { mergeSets };
