/**
 * The header's backend: a choice like the CLI's --backend (auto | webgpu | cpu; `?backend=` in the
 * address sets it) and what it resolved to, in the backend's own words, made with the header's
 * "CPU threads" (asked again when they change, so the line says the count a merge will use; on
 * WebGPU, the library's description says the threads for what the GPU leaves to the CPU).
 */
import type { BackendChoice } from '../../src/index.js';
import { byId } from '../dom.js';
import type { PageState, PageStore } from '../page-state.js';
import type { MergeWorkerClient } from '../worker-client.js';
import type { BackendInfo } from '../worker-protocol.js';

const CHOICES: BackendChoice[] = ['auto', 'webgpu', 'cpu'];

export function mountBackendPanel(store: PageStore, client: MergeWorkerClient, onError: (message: string) => void): (state: PageState) => void {
  const select = byId<HTMLSelectElement>('backend-choice');
  const text = byId('backend');
  const dot = byId('backend-dot');
  const fromAddress = new URLSearchParams(location.search).get('backend') as BackendChoice | null;
  if (fromAddress && CHOICES.includes(fromAddress)) select.value = fromAddress;

  let request = 0;
  let askedThreads = store.state.threads;
  const show = (info: BackendInfo) => {
    text.textContent = `${info.kind === 'webgpu' ? 'webgpu' : 'cpu'} · ${info.description.replace(/^WebGPU:\s*/i, '')}`;
    dot.className = `backend-dot ${info.kind}`;
  };
  const choose = () => {
    const mine = ++request;
    askedThreads = store.state.threads;
    text.textContent = 'starting…';
    dot.className = 'backend-dot';
    client.setBackend(select.value as BackendChoice, askedThreads).then(
      (info) => {
        if (mine !== request) return;
        show(info);
        store.setBackend(info);
      },
      (error: Error) => {
        if (mine !== request) return;
        text.textContent = `${select.value}: ${error.message}`;
        store.setBackend(undefined);
        onError(error.message);
      },
    );
  };
  select.addEventListener('change', choose);
  choose();
  let shownResult: PageState['result'];
  return (state) => {
    select.disabled = state.busy !== undefined;
    if (state.threads !== askedThreads) choose();
    // What a merge actually ran on (auto may pick again for the merge's dtype), said once when it
    // arrives: redrawn later, it put the old backend back beside a choice made since.
    if (state.result !== shownResult && state.result) show(state.result.backend);
    shownResult = state.result;
  };
}
