/**
 * Section 4: output options, merge and cancel, progress, and the result. Merge stays disabled (and
 * says why) while there is nothing to merge, the plan is pending or has errors, or work runs.
 * The output dtype menu offers what the base's container writes (from the plan), each choice's
 * rule said beside it. A merge asks for its destination inside the click, runs in the worker, and
 * on success moves focus to the result, with any warning the merge itself found listed and
 * announced; closing the tab mid-merge asks first.
 */
import { byId, el, focusLost, spokenMessage, textNodes } from '../dom.js';
import { formatBytes, formatDuration } from '../format.js';
import type { PageState, PageStore } from '../page-state.js';
import { ProgressView } from '../progress-view.js';
import { canPickDestination, pickDestination, type PickedDestination } from '../save-choice.js';
import { CancelledError, type MergeWorkerClient } from '../worker-client.js';
import type { PlanSummary } from '../worker-protocol.js';
import { ResultsView } from './results-view.js';
import { beforeNewResult } from '../stored-results.js';

export interface MergePanel {
  render(state: PageState): void;
  /** Merges into browser storage without asking for a destination (the sample's way). */
  mergeNow(useBrowserStorage?: boolean): Promise<void>;
  readonly progress: ProgressView;
}

const DESTINATION_HINTS = {
  'browser-storage': 'Written to this browser’s private disk space (not memory, whatever the size), then offered as downloads. Removed when you merge again, change the inputs, or come back later; once out of date, when the page makes its next result of any mode.',
  picked: 'Streamed straight to disk: a one-file model to a file you choose (the browser asks before replacing one); a folder model into a new folder named after the base inside the folder you choose.',
  unavailable: 'This browser cannot save straight into a file or folder you pick; the browser’s storage is used.',
};

export function mountMergePanel(store: PageStore, client: MergeWorkerClient, say: { error(m: string): void; say(m: string): void }): MergePanel {
  const mergeButton = byId<HTMLButtonElement>('merge-button');
  const cancelButton = byId<HTMLButtonElement>('cancel-button');
  const blocked = byId('merge-blocked');
  const dtype = byId<HTMLSelectElement>('out-dtype');
  const dtypeHint = byId('out-dtype-hint');
  const mergedOnly = byId<HTMLInputElement>('dtype-merged-only');
  const mergedOnlyBox = byId('dtype-merged-only-box');
  const mergedOnlyHint = byId('dtype-merged-only-hint');
  let shownChoices: PlanSummary['output'] | undefined;
  /** How many types the menu lists (the IQ2 types come and go with the importance matrix). */
  let shownCount = 0;
  const destination = byId<HTMLSelectElement>('destination');
  const destinationHint = byId('destination-hint');
  const progress = new ProgressView(byId<HTMLProgressElement>('progress'), byId('progress-text'), 'tensors', () => store.inputsRevision);
  const results = new ResultsView({ zip: (job, folder) => client.zip(job, folder), onError: (m) => say.error(m) });
  let job: { cancel(): void } | undefined;

  const pickable = canPickDestination();
  if (!pickable) byId<HTMLOptionElement>('destination-picked').disabled = true;
  const showHint = () => {
    destinationHint.textContent = !pickable ? DESTINATION_HINTS.unavailable : DESTINATION_HINTS[destination.value as 'browser-storage' | 'picked'];
  };
  showHint();
  destination.addEventListener('change', showHint);
  dtype.addEventListener('change', () => {
    store.setOutDtype(dtype.value);
    const plan = store.state.plan.status === 'ready' ? store.state.plan.plan : undefined;
    const refused = plan?.output.refused[dtype.value];
    if (refused) say.say(`This model cannot be written as ${dtype.value}: ${refused}. Merge stays off until another output dtype is chosen.`);
  });
  mergedOnly.addEventListener('change', () => store.setDtypeMergedOnly(mergedOnly.checked));
  cancelButton.addEventListener('click', () => job?.cancel());
  mergeButton.addEventListener('click', () => void mergeNow(false));
  window.addEventListener('beforeunload', (event) => {
    if (store.state.busy !== 'merge') return;
    event.preventDefault();
    event.returnValue = ''; // older engines need it set to show the prompt
  });

  async function mergeNow(useBrowserStorage = true): Promise<void> {
    const state = store.state;
    if (store.mergeBlocker() && !(useBrowserStorage && state.busy === 'sample')) return;
    const base = state.base!;
    const plan = state.plan.status === 'ready' ? state.plan.plan : undefined;
    const revision = store.inputsRevision;
    let picked: PickedDestination | undefined;
    if (!useBrowserStorage && pickable && destination.value === 'picked') {
      try {
        picked = await pickDestination(base.name, plan?.base.files === 1 && plan.base.kind === 'file');
      } catch (error) {
        say.error(`could not open the destination: ${(error as Error).message}`);
        return;
      }
      if (!picked) return; // the user closed the picker
      // A picker is not modal on every system: a base or adapters picked while it was open would
      // have been merged with the base (and into the kind of destination) chosen for the old ones.
      const blocker = store.mergeBlocker();
      const refused = store.inputsRevision !== revision
        ? 'Nothing was merged: the base or the adapters changed while the destination was being chosen. Press Merge again to merge what is picked now.'
        : blocker && `Nothing was merged. ${blocker}`;
      if (refused) {
        await picked.cleanUp();
        progress.refuse(refused);
        say.error(refused);
        return;
      }
    }
    // Pressed by keyboard, Merge is disabled under the person's focus: Cancel, the one button that
    // now does something, takes it (the sample's button, disabled while it was made, too).
    const focusOnStart = document.activeElement === mergeButton || focusLost();
    // The header as the merge starts (after the picker, which is not modal everywhere).
    const header = store.forRun();
    store.setResult(undefined);
    store.setBusy('merge');
    if (focusOnStart) cancelButton.focus();
    progress.start();
    const settings = store.settingsKey();
    const handle = client.merge({
      baseName: base.name,
      base: base.files,
      adapters: state.adapters.map((a) => ({ name: a.set.name, files: a.set.files, weight: a.weight, ...(a.oneTrainerCoft !== undefined ? { oneTrainerCoft: a.oneTrainerCoft } : {}) })),
      outDtype: state.outDtype,
      dtypeMergedOnly: state.outDtype !== 'same' && state.dtypeMergedOnly,
      output: picked?.output ?? { kind: 'browser-storage' },
      choice: header.backendChoice,
      threads: header.threads,
      ...(store.imatrixApplies() && state.imatrix?.status === 'ready' ? { imatrix: state.imatrix.file } : {}),
      onProgress: (p) => progress.update(p),
    });
    job = handle;
    try {
      const done = await handle.done;
      const bytes = done.files.reduce((n, f) => n + f.size, 0);
      const where = picked?.where ?? '';
      const message = `Merged${bytes ? ` ${formatBytes(bytes)}` : ''}${where} in ${formatDuration(done.seconds)}${bytes ? ` (${formatBytes(bytes / Math.max(done.seconds, 1e-3))}/s)` : ''}.`;
      progress.finish(message);
      store.setBusy(undefined);
      beforeNewResult();
      store.setResult({
        job: done.job, files: done.files, where, baseName: base.name, seconds: done.seconds, backend: done.backend,
        warnings: done.warnings, settings, stale: settings !== store.settingsKey(),
      });
      const warned = done.warnings.length
        ? ` The merge found ${done.warnings.length === 1 ? 'one thing' : `${done.warnings.length} things`} to know: ${done.warnings.map((w) => `Warning: ${w}`).join(' ')}`
        : '';
      say.say(`${message} The files are listed under “Merged files”.${warned}`);
      results.focus();
    } catch (error) {
      await picked?.cleanUp();
      const message = error instanceof CancelledError ? 'Cancelled. Nothing was written.' : (error as Error).message;
      progress.fail(message);
      const focusOnCancel = document.activeElement === cancelButton || focusLost();
      store.setBusy(undefined);
      // Cancel is disabled under the focus it took: it goes back to Merge, or the section when Merge waits on the plan.
      if (focusOnCancel) (mergeButton.disabled ? byId('merge-section') : mergeButton).focus();
      if (error instanceof CancelledError) say.say(message);
      else say.error(`The merge failed: ${spokenMessage(message, 'under the progress bar')}`);
    } finally {
      job = undefined;
    }
  }

  return {
    progress,
    mergeNow,
    render(state) {
      const blocker = store.mergeBlocker();
      mergeButton.disabled = blocker !== undefined;
      blocked.replaceChildren(...textNodes(state.busy === 'merge' ? '' : blocker ?? ''));
      cancelButton.disabled = state.busy !== 'merge';
      if (state.busy === undefined) progress.forgetIfOutdated();
      const plan = state.plan.status === 'ready' ? state.plan.plan : undefined;
      const offered = store.offeredTypes();
      if (plan && (plan.output !== shownChoices || offered.length !== shownCount)) {
        shownChoices = plan.output;
        shownCount = offered.length;
        // One type throughout first, then the mixes under their heading (llama-quantize's file types).
        // A type this model cannot take says so in the menu; chosen, the hint below says why.
        const label = (name: string, text: string) => (plan.output.refused[name] ? `${text} (not for this model)` : text);
        const option = (t: { name: string }) => el('option', { value: t.name, textContent: label(t.name, t.name) });
        const groups = [...new Set(plan.output.types.flatMap((t) => (t.group ? [t.group] : [])))];
        // Written only with the importance matrix (IQ2_XXS, IQ2_XS, IQ2_S): listed while one is picked, under their own heading.
        const withMatrix = offered.slice(plan.output.types.length);
        dtype.replaceChildren(
          el('option', { value: 'same', textContent: label('same', 'keep each tensor’s type') }),
          ...plan.output.types.filter((t) => !t.group).map(option),
          ...(withMatrix.length ? [el('optgroup', { label: 'with the importance matrix' }, ...withMatrix.map(option))] : []),
          ...groups.map((label) => el('optgroup', { label }, ...plan.output.types.filter((t) => t.group === label).map(option))),
        );
      }
      if (dtype.value !== state.outDtype) dtype.value = state.outDtype;
      const choice = offered.find((t) => t.name === state.outDtype);
      const refused = plan?.output.refused[state.outDtype];
      dtypeHint.className = refused ? 'error-text small' : 'hint small';
      dtypeHint.textContent = !plan
        ? 'The types to choose from depend on the base’s format (safetensors or GGUF): they appear with the plan.'
        : refused ? `Not for this model: ${refused}.` : choice?.note ?? plan.output.keep;
      // Not while the sample is made either: it sets the dtype itself when it arrives.
      dtype.disabled = state.busy !== undefined;
      // Only a chosen type can be limited to the merged tensors.
      mergedOnlyBox.hidden = mergedOnlyHint.hidden = state.outDtype === 'same';
      mergedOnly.checked = state.dtypeMergedOnly;
      mergedOnly.disabled = state.busy !== undefined;
      destination.disabled = state.busy !== undefined;
      results.render(state.result);
    },
  };
}
