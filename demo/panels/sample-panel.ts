/** The built-in sample: generated in the worker, it replaces the base and adapters, then merges. */
import { byId, focusLost } from '../dom.js';
import type { PageState, PageStore } from '../page-state.js';
import type { MergeWorkerClient } from '../worker-client.js';
import type { MergePanel } from './merge-panel.js';

export function mountSamplePanel(store: PageStore, client: MergeWorkerClient, merge: MergePanel,
  onError: (message: string) => void): (state: PageState) => void {
  const button = byId<HTMLButtonElement>('sample-button');
  const size = byId<HTMLSelectElement>('sample-size');
  button.addEventListener('click', async () => {
    // The sample merges as soon as it is made, with the merge's settings: not with a thread count
    // other than the one the box shows.
    if (store.state.threadsProblem) {
      onError(`${store.state.threadsProblem} The sample merges with the count in the box.`);
      return;
    }
    const preset = size.value as 'small' | 'large';
    store.setBusy('sample');
    merge.progress.start(`Generating the ${preset} sample…`);
    try {
      const sample = await client.sample(preset);
      store.useSample(
        { name: `sample-${preset}`, files: sample.base, origin: 'sample' },
        { name: `sample-${preset}-lora`, files: sample.adapter, origin: 'sample' },
      );
      await merge.mergeNow(true);
    } catch (error) {
      merge.progress.fail((error as Error).message);
      onError((error as Error).message);
    } finally {
      if (store.state.busy === 'sample') store.setBusy(undefined);
      // A sample that could not be made leaves the focus on its disabled button: back to it.
      if (focusLost()) button.focus();
    }
  });
  return (state) => {
    button.disabled = state.busy !== undefined;
    size.disabled = state.busy !== undefined;
  };
}
