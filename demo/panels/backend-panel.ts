/**
 * The header's backend: a choice like the CLI's --backend (auto | webgpu | cpu; `?backend=` in the
 * address sets it) and what it resolved to, in the backend's own words, made with the header's
 * "CPU threads" (asked again when they change, so the line says the count a merge will use; on
 * WebGPU, the library's description says the threads for what the GPU leaves to the CPU). The
 * choice is off while a merge or an adapter job runs.
 */
import type { BackendChoice } from '../../src/index.js';
import { byId } from '../dom.js';
import type { PageState, PageStore } from '../page-state.js';
import type { MergeWorkerClient } from '../worker-client.js';
import type { BackendInfo } from '../worker-protocol.js';

const CHOICES: BackendChoice[] = ['auto', 'webgpu', 'cpu'];

export function mountBackendPanel(store: PageStore, client: MergeWorkerClient, onError: (message: string) => void,
  jobBusy: () => boolean): (state: PageState) => void {
  const select = byId<HTMLSelectElement>('backend-choice');
  const text = byId('backend');
  const dot = byId('backend-dot');
  const fromAddress = new URLSearchParams(location.search).get('backend') as BackendChoice | null;
  if (fromAddress && CHOICES.includes(fromAddress)) select.value = fromAddress;
  store.setBackendChoice(select.value as BackendChoice);

  /** The threads of the last request sent; whether one is unanswered, and whether a newer wish waits for it. */
  let askedThreads = store.state.threads;
  let asking = false;
  let waiting = false;
  const show = (info: BackendInfo) => {
    text.textContent = `${info.kind === 'webgpu' ? 'webgpu' : 'cpu'} · ${info.description.replace(/^WebGPU:\s*/i, '')}`;
    dot.className = `backend-dot ${info.kind}`;
  };
  // One request at a time, the newest wish after it: a backend asked for per arrow key pressed in
  // the threads box (or per menu choice) started a pool of workers, and with `auto` a measurement
  // of the machine, for each, side by side.
  const choose = () => {
    text.textContent = 'starting…';
    dot.className = 'backend-dot';
    if (asking) {
      waiting = true;
      return;
    }
    asking = true;
    waiting = false;
    askedThreads = store.state.threads;
    const answered = (settle: () => void) => {
      asking = false;
      if (waiting) choose();
      else settle();
    };
    client.setBackend(select.value as BackendChoice, askedThreads).then(
      (info) => answered(() => {
        show(info);
        store.setBackend(info);
      }),
      (error: Error) => answered(() => {
        text.textContent = `${select.value}: ${error.message}`;
        store.setBackend(undefined);
        onError(error.message);
      }),
    );
  };
  select.addEventListener('change', () => {
    store.setBackendChoice(select.value as BackendChoice);
    choose();
  });
  choose();
  let shownResult: PageState['result'];
  return (state) => {
    // Not while anything runs, an adapter job included: the header then named a backend the job
    // did not run on, and its new pool of workers (or its measurement) ran beside the job.
    select.disabled = state.busy !== undefined || jobBusy();
    if (state.threads !== askedThreads) choose();
    // What a merge actually ran on (auto may pick again for the merge's dtype), said once when it
    // arrives: redrawn later, it put the old backend back beside a choice made since.
    if (state.result !== shownResult && state.result) show(state.result.backend);
    shownResult = state.result;
  };
}
