/**
 * The header's "CPU threads" box, beside "Run on" (the command line's --threads, the library's
 * `threads`): one count for every job the page runs, the merge and the adapter jobs alike. A whole
 * number from 1 to MAX_THREADS, filled in with the library's default here ("auto": one per core the
 * browser reports, at most 8). On WebGPU the threads still run what the GPU leaves to the CPU, so
 * the box stays on there and says so. Where the page is not cross-origin isolated the CPU has one
 * thread whatever is asked: the box is off and says why. An entry that is no such number (0, 1.5,
 * nothing) keeps the run button of the current mode off, said under the box and, once committed,
 * read out. A count is taken once committed, not per key, and the same count again asks for nothing;
 * a run started while a count is typed but not committed commits it first (PageStore.forRun).
 */
import { browserCpuPoolUnavailable } from '../../src/engine/cpu/browser-pool-unavailable.js';
import { DEFAULT_MAX_CPU_THREADS, defaultCpuThreads } from '../../src/engine/cpu/default-threads.js';
import { MAX_THREADS } from '../../src/limits.js';
import { byId } from '../dom.js';
import type { PageState, PageStore } from '../page-state.js';

/** The box's entry as a thread count, or what is wrong with it in one line (`auto`: the default here, to name in it). */
export function readThreads(value: string, badInput: boolean, auto: number): { threads: number } | { problem: string } {
  const rule = `enter a whole number from 1 to ${MAX_THREADS} (auto here: ${auto})`;
  const entry = value.trim();
  if (entry === '') return { problem: `CPU threads ${badInput ? 'is not a number' : 'is empty'}: ${rule}.` };
  const n = Number(entry);
  if (Number.isInteger(n) && n >= 1 && n <= MAX_THREADS) return { threads: n };
  return { problem: `CPU threads is ${entry.length > 24 ? `${entry.slice(0, 24)}…` : entry}: ${rule}.` };
}

/** What else the box answers to: the adapter jobs' section (its run button's name, whether a job runs). */
export interface ThreadsContext {
  /** The button the current mode runs with (`Merge`, `Combine`, `Resize`, `Extract`). */
  runLabel(): string;
  /** An adapter job runs: the box keeps the count it started with. */
  jobBusy(): boolean;
}

export function mountThreadsPanel(store: PageStore, say: { error(m: string): void }, context: ThreadsContext): (state: PageState) => void {
  const input = byId<HTMLInputElement>('threads');
  const hint = byId('threads-hint');
  // The page's own context answers as the workers' would: a dedicated worker shares its page's isolation.
  const lost = browserCpuPoolUnavailable();
  const cores = navigator.hardwareConcurrency;
  const auto = defaultCpuThreads(cores);
  input.max = String(MAX_THREADS);
  input.value = lost ? '1' : String(auto);
  // Asked for explicitly (the same count as the library's default), so the header's backend, the
  // jobs and this box speak of one number.
  store.state.threads = lost ? undefined : auto;

  const read = () => readThreads(input.value, input.validity.badInput, auto);
  // As typed, a wrong entry holds the run buttons at once; a count is taken only once committed
  // (Tab or a click away, Enter, an arrow key: the change event), as each new count asks the header
  // for a new backend, which with `auto` measures the machine again: typing 12 asked for 1, then 12.
  input.addEventListener('input', () => {
    const entry = read();
    store.setThreadsProblem('problem' in entry ? entry.problem : undefined);
  });
  // A run started with a count typed but not committed takes that count (PageStore.forRun). A refused
  // entry needs nothing here: the input event above has already held the run buttons.
  store.commitThreads = () => {
    const entry = read();
    if (!lost && 'threads' in entry) store.setThreads(entry.threads);
  };
  input.addEventListener('change', () => {
    const entry = read();
    if ('threads' in entry) return store.setThreads(entry.threads);
    store.setThreadsProblem(entry.problem);
    say.error(`${entry.problem} ${context.runLabel()} stays off until it is fixed.`);
  });

  const coresSaid = Number.isFinite(cores) && cores >= 1
    ? `one per processor core the browser reports (${cores}), at most ${DEFAULT_MAX_CPU_THREADS}`
    : `the browser reports no processor count, so 1`;
  return (state) => {
    input.disabled = lost !== undefined || state.busy !== undefined || context.jobBusy();
    input.setAttribute('aria-invalid', String(state.threadsProblem !== undefined));
    hint.className = state.threadsProblem ? 'error-text small' : 'hint small';
    if (lost) {
      hint.textContent = `1 only: ${lost}; the CPU runs every job on one thread. More need a server that sends the Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy headers.`;
      return;
    }
    if (state.threadsProblem) {
      hint.textContent = state.threadsProblem;
      return;
    }
    const onGpu = state.backend?.kind === 'webgpu'
      ? 'On WebGPU the CPU threads run what the GPU leaves to the CPU (f32 outputs, DoRA and other update steps, a tensor or product the device cannot bind); the rest runs on the GPU. '
      : '';
    hint.textContent = `${onGpu}Auto here: ${auto} (${coresSaid}), for every job the page runs. 1 runs on one thread, without worker threads. Each thread holds about 14 MiB and those past the cores add no speed; the output is the same for any count.`;
  };
}
