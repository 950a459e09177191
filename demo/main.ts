/**
 * The demo page: pick a base and adapters, read the plan, merge in a Web Worker, save the result.
 * All library calls happen in merge-worker.ts; this file only keeps the page's state and DOM.
 */
import { renderAdapters, type AdapterEntry } from './adapter-list.js';
import { Downloads } from './downloads.js';
import { mergeSets, setFromInput, setsFromDrop, type PickedSet } from './file-picking.js';
import { formatBytes, formatDuration } from './format.js';
import { MagnitudeChart } from './magnitude-chart.js';
import { renderModuleScales, renderPlan } from './plan-view.js';
import { ProgressView } from './progress-view.js';
import { CancelledError, MergeWorkerClient } from './worker-client.js';
import type { OutDTypeChoice, OutputChoice, PlanSummary } from './worker-protocol.js';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
};

const client = new MergeWorkerClient();
const chart = new MagnitudeChart($<HTMLCanvasElement>('magnitude-chart'));
const progress = new ProgressView($<HTMLProgressElement>('progress'), $('progress-text'));
const downloads = new Downloads($<HTMLUListElement>('downloads'));
const planElements = {
  stats: $('plan-stats'),
  problems: $<HTMLUListElement>('plan-problems'),
  modules: $<HTMLTableElement>('plan-modules').tBodies[0],
};

const state: {
  base?: PickedSet;
  adapters: AdapterEntry[];
  plan?: PlanSummary;
  /** Only the newest plan request may update the page. */
  planRequest: number;
  merging?: { cancel(): void };
} = { adapters: [], planRequest: 0 };

// --- backend ---------------------------------------------------------------------------------

client.backend.then(
  (info) => {
    $('backend').textContent = info.kind === 'webgpu' ? `webgpu · ${info.description.replace(/^WebGPU:\s*/i, '')}` : info.description;
    $('backend-dot').className = `backend-dot ${info.kind}`;
  },
  (error: Error) => { $('backend').textContent = error.message; },
);

// --- picking files ---------------------------------------------------------------------------

function setBase(set: PickedSet | undefined): void {
  if (!set) return;
  state.base = set;
  const summary = $('base-summary');
  const total = set.files.reduce((n, f) => n + f.file.size, 0);
  const heading = document.createElement('div');
  heading.innerHTML = '<b></b> · ';
  heading.querySelector('b')!.textContent = set.name;
  heading.append(`${set.files.length} file${set.files.length === 1 ? '' : 's'}, ${formatBytes(total)}`);
  const list = document.createElement('ul');
  for (const f of set.files) list.append(Object.assign(document.createElement('li'), { textContent: f.path }));
  summary.replaceChildren(heading, list);
  summary.hidden = false;
  inputsChanged();
}

function addAdapters(sets: PickedSet[]): void {
  for (const set of sets) state.adapters.push({ set, weight: 1 });
  inputsChanged();
}

function wireInput(id: string, take: (set: PickedSet | undefined) => void): void {
  const input = $<HTMLInputElement>(id);
  input.addEventListener('change', () => {
    take(setFromInput(input));
    input.value = ''; // the same file picked again must fire change again
  });
}

wireInput('base-input', setBase);
wireInput('base-folder-input', setBase);
wireInput('adapter-input', (set) => set && addAdapters([set]));
wireInput('adapter-folder-input', (set) => set && addAdapters([set]));

function wireDrop(id: string, take: (sets: PickedSet[]) => void): void {
  const zone = $(id);
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    if (event.dataTransfer) setsFromDrop(event.dataTransfer).then(take, showError);
  });
}

wireDrop('base-drop', (sets) => setBase(mergeSets(sets)));
wireDrop('adapter-drop', addAdapters);

// --- plan ------------------------------------------------------------------------------------

const weights = (): number[] => state.adapters.map((a) => a.weight);

function drawAdapters(): void {
  renderAdapters($<HTMLUListElement>('adapter-list'), state.adapters, {
    onWeight(index, weight) {
      state.adapters[index].weight = weight;
      if (state.plan) {
        chart.update(state.plan.magnitudes, weights());
        renderModuleScales(planElements.modules, state.plan, weights());
      }
    },
    onRemove(index) {
      state.adapters.splice(index, 1);
      inputsChanged();
    },
  });
}

function inputsChanged(): void {
  drawAdapters();
  updateMergeButton();
  void refreshPlan();
}

async function refreshPlan(): Promise<void> {
  const request = ++state.planRequest;
  state.plan = undefined;
  const status = $('plan-status');
  if (!state.base || state.adapters.length === 0) {
    $('plan').hidden = true;
    status.hidden = false;
    return;
  }
  status.hidden = false;
  status.className = 'hint';
  status.textContent = 'Reading headers and measuring each update…';
  try {
    const plan = await client.plan(state.base.name, state.base.files, adapterInputs());
    if (request !== state.planRequest) return;
    state.plan = plan;
    plan.adapters.forEach((summary, i) => { if (state.adapters[i]) state.adapters[i].summary = summary; });
    drawAdapters();
    status.hidden = true;
    $('plan').hidden = false;
    renderPlan(planElements, plan, weights());
    chart.update(plan.magnitudes, weights());
  } catch (error) {
    if (request !== state.planRequest) return;
    $('plan').hidden = true;
    status.className = 'error-text';
    status.textContent = (error as Error).message;
  }
}

function adapterInputs() {
  return state.adapters.map((a) => ({ name: a.set.name, files: a.set.files, weight: a.weight }));
}

// --- merge -----------------------------------------------------------------------------------

function updateMergeButton(): void {
  $<HTMLButtonElement>('merge-button').disabled = !state.base || state.adapters.length === 0 || !!state.merging;
  $<HTMLButtonElement>('cancel-button').disabled = !state.merging;
  $<HTMLButtonElement>('sample-button').disabled = !!state.merging;
}

const canPickFolder = typeof (window as { showDirectoryPicker?: unknown }).showDirectoryPicker === 'function';
if (!canPickFolder) $<HTMLOptionElement>('destination-directory').disabled = true;

/** Asks for the folder while the click still counts as a user gesture. */
async function chooseOutput(): Promise<OutputChoice | undefined> {
  if ($<HTMLSelectElement>('destination').value !== 'directory') return { kind: 'memory' };
  try {
    const handle = await (window as unknown as { showDirectoryPicker(o: object): Promise<FileSystemDirectoryHandle> })
      .showDirectoryPicker({ id: 'loramerge-output', mode: 'readwrite' });
    return { kind: 'directory', handle };
  } catch {
    return undefined; // the user closed the picker
  }
}

/** `inMemory`: skip the folder picker (after an await the click no longer counts as a gesture). */
async function merge(inMemory = false): Promise<void> {
  if (!state.base || state.adapters.length === 0 || state.merging) return;
  const output = inMemory ? { kind: 'memory' as const } : await chooseOutput();
  if (!output) return;
  downloads.clear();
  progress.start();
  const job = client.merge({
    baseName: state.base.name,
    base: state.base.files,
    adapters: adapterInputs(),
    outDtype: $<HTMLSelectElement>('out-dtype').value as OutDTypeChoice,
    output,
    onProgress: (p) => progress.update(p),
  });
  state.merging = job;
  updateMergeButton();
  try {
    const { files, seconds } = await job.done;
    const bytes = files.reduce((n, f) => n + f.size, 0);
    const where = output.kind === 'directory' ? ` into ${output.handle.name}/` : '';
    progress.finish(`Merged ${formatBytes(bytes)}${where} in ${formatDuration(seconds)} (${formatBytes(bytes / Math.max(seconds, 1e-3))}/s).`);
    downloads.show(files);
  } catch (error) {
    if (error instanceof CancelledError) progress.fail('Cancelled. Nothing was written.');
    else progress.fail((error as Error).message);
  } finally {
    state.merging = undefined;
    updateMergeButton();
  }
}

$('merge-button').addEventListener('click', () => void merge());
$('cancel-button').addEventListener('click', () => state.merging?.cancel());

// --- the built-in sample -----------------------------------------------------------------------

$('sample-button').addEventListener('click', async () => {
  const preset = $<HTMLSelectElement>('sample-size').value as 'small' | 'large';
  progress.start();
  $('progress-text').textContent = `Generating the ${preset} sample…`;
  try {
    const sample = await client.sample(preset);
    state.base = undefined;
    state.adapters = [];
    setBase({ name: `sample-${preset}`, files: sample.base });
    addAdapters([{ name: `sample-${preset}-lora`, files: sample.adapter }]);
    await merge(true);
  } catch (error) {
    showError(error);
  }
});

function showError(error: unknown): void {
  progress.fail(error instanceof Error ? error.message : String(error));
}

updateMergeButton();
