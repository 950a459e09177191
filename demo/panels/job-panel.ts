/**
 * The adapter jobs' section: combine, resize, extract or convert, whichever mode the page is in. Inputs
 * (job-inputs-panel), each mode's options (only those that apply are shown; values are checked as
 * they are typed and the run button says what is wrong), run and cancel, progress, every problem
 * of a failure listed and announced, and the result: downloads and the chart of singular values.
 * The jobs run in a worker of their own (job-worker.ts), on the backend and CPU threads the header
 * chooses.
 */
import type { BackendChoice, CombineMethod, MajoritySign, RankRule } from '../../src/index.js';
import { byId, el, focusLost, spokenMessage, textNodes } from '../dom.js';
import { formatDuration } from '../format.js';
import { JobWorkerClient } from '../job-client.js';
import type { JobMode, JobSpec, OutputKind } from '../job-protocol.js';
import jobSectionHtml from '../job-section.html?raw';
import { JobStore, type JobAdapter, type ModelSlot, type PageMode } from '../job-state.js';
import type { PickedSet } from '../page-state.js';
import { baseFactsLine } from './base-panel.js';
import { beforeNewResult, keepResultsOf } from '../stored-results.js';
import '../jobs.css';
import { ProgressView } from '../progress-view.js';
import { stemOf } from '../save-choice.js';
import { CancelledError } from '../worker-client.js';
import { mountJobInputsPanel } from './job-inputs-panel.js';
import { JobResultsView } from './job-results-view.js';
import { mountSpectrumPanel } from './spectrum-panel.js';

export interface JobPanel {
  setMode(mode: PageMode): void;
  busy(): boolean;
  /** The current mode's run button's name (`Combine`…), or `Merge` in the merge mode. */
  runLabel(): string;
  /** Draws the section again (the header's threads changed). */
  refresh(): void;
  subscribe(listener: () => void): void;
}

/**
 * The header's "Run on" and "CPU threads", which every job takes: the backend choice, a count
 * (undefined: the library's default) or what is wrong with the entry.
 */
export interface JobHeader {
  backendChoice: BackendChoice;
  threads?: number;
  threadsProblem?: string;
}

/** The header's settings: as they stand (for drawing), and as a run starts (what is typed committed first). */
export interface JobHeaders {
  now(): JobHeader;
  forRun(): JobHeader;
}

const TITLES: Record<JobMode, { heading: string; hint: string; run: string; noun: string }> = {
  combine: {
    heading: 'Combine adapters', run: 'Combine', noun: 'combination',
    hint: 'Several adapters for the same model become one, each at its weight (negative subtracts).',
  },
  resize: {
    heading: 'Resize an adapter', run: 'Resize', noun: 'resizing',
    hint: 'Every module gets a new rank from its singular values; its α changes so that its effect stays the same.',
  },
  extract: {
    heading: 'Extract an adapter', run: 'Extract', noun: 'extraction',
    hint: 'Per weight, the best low-rank approximation of fine-tuned − base; changed norms and embeddings are saved whole (PEFT only).',
  },
  convert: {
    heading: 'Convert to a llama.cpp LoRA (GGUF)', run: 'Convert', noun: 'conversion',
    hint: 'A PEFT LoRA for a language model, written as one .gguf that llama.cpp loads with --lora: each module renamed onto the model’s tensors, its factors as they are, at its own scale.',
  },
};

/** What the run's line says it did. */
const DONE: Record<JobMode, string> = { combine: 'Combined', resize: 'Resized', extract: 'Extracted', convert: 'Converted' };

/** How the section names each model slot, in what is said aloud. */
const SLOT_NAMES: Record<ModelSlot, { title: string; under: string }> = {
  base: { title: 'Base', under: 'under the base' },
  tuned: { title: 'Fine-tuned model', under: 'under the fine-tuned model' },
  target: { title: 'Model', under: 'under the model the LoRA is for' },
};

const METHOD_HINTS: Record<CombineMethod, string> = {
  cat: 'Exact: the ranks add up (r₁ + r₂ + …) and each adapter’s weight × α/r is folded into its factors.',
  svd: 'The best rank-k approximation of Σ weight·α/r·B·A, found from the factors (rank: the largest input rank unless set).',
  ties: 'PEFT’s TIES on the full updates: keep each one’s largest values (density), elect a sign per element, average those that agree; then the best rank-k approximation.',
  dare_linear: 'PEFT’s DARE: drop values at random (kept with probability density, rescaled), weighted sum; then the best rank-k approximation. The seed makes the drops repeatable.',
  dare_ties: 'DARE’s random drops, then TIES’s sign election; then the best rank-k approximation.',
  magnitude_prune: 'Keep each update’s largest values (density), weighted sum; then the best rank-k approximation.',
};

interface RuleInput {
  label: string;
  hint: string;
  min: string;
  max: string;
  step: string;
  value: string;
}

const RESIZE_RULES: Record<RankRule['kind'], RuleInput> = {
  rank: { label: 'Rank', hint: 'Every module gets this rank.', min: '1', max: '', step: '1', value: '8' },
  sv_ratio: { label: 'Largest σ₁/σᵢ', hint: 'Per module, keep the singular values within this factor of the largest (kohya’s sv_ratio), at most the largest rank below, or the module’s own rank.', min: '1', max: '', step: '0.5', value: '10' },
  sv_fro: { label: 'Share of ‖ΔW‖_F', hint: 'Per module, the smallest rank keeping this share of the update’s Frobenius norm (kohya’s sv_fro), at most the largest rank below, or the module’s own rank.', min: '0', max: '1', step: '0.01', value: '0.9' },
  sv_cumulative: { label: 'Share of Σσ', hint: 'Per module, the smallest rank keeping this share of the sum of singular values (kohya’s sv_cumulative), at most the largest rank below, or the module’s own rank.', min: '0', max: '1', step: '0.01', value: '0.9' },
};

const EXTRACT_RULES: Record<'rank' | 'energy', RuleInput> = {
  rank: { label: 'Rank', hint: 'Every module gets this rank: the best rank-k approximation of fine-tuned − base (mergekit’s extract_lora).', min: '1', max: '', step: '1', value: '16' },
  energy: { label: 'Share of ‖ΔW‖²_F', hint: 'Per module, the smallest rank keeping this share of the difference’s energy (at most rank 512).', min: '0', max: '1', step: '0.001', value: '0.99' },
};

/**
 * Mounts the section. `showError`: a refused pick or drop, said aloud and shown on the page until
 * the next one (as the merge's pickers say theirs), not only read out.
 */
export function mountJobPanel(say: { error(m: string): void; say(m: string): void }, headers: JobHeaders,
  showError: (message: string) => void): JobPanel {
  const header = headers.now;
  document.querySelector('main')!.insertAdjacentHTML('beforeend', jobSectionHtml);
  const store = new JobStore();
  const client = new JobWorkerClient();
  const listeners: (() => void)[] = [];

  const section = byId('job-section');
  const heading = byId('job-heading');
  const hint = byId('job-hint');
  const method = byId<HTMLSelectElement>('job-method');
  const rank = byId<HTMLInputElement>('job-rank');
  const density = byId<HTMLInputElement>('job-density');
  const majority = byId<HTMLSelectElement>('job-majority');
  const seed = byId<HTMLInputElement>('job-seed');
  const clamp = byId<HTMLInputElement>('job-clamp');
  const resizeRule = byId<HTMLSelectElement>('job-resize-rule');
  const resizeValue = byId<HTMLInputElement>('job-resize-value');
  // A dynamic rule's cap (kohya's --new_rank beside a --dynamic_method); empty leaves each module's own rank.
  const resizeMax = byId<HTMLInputElement>('job-resize-max');
  const extractRule = byId<HTMLSelectElement>('job-extract-rule');
  const extractValue = byId<HTMLInputElement>('job-extract-value');
  const format = byId<HTMLSelectElement>('job-format');
  const optionsHeading = byId('job-options-heading');
  const optionsGroup = byId('job-options');
  const peftOption = format.querySelector<HTMLOptionElement>('option[value="peft"]')!;
  const methodHint = byId('job-method-hint');
  const formatHint = byId('job-format-hint');
  const runButton = byId<HTMLButtonElement>('job-run');
  const cancelButton = byId<HTMLButtonElement>('job-cancel');
  const blocked = byId('job-blocked');
  const errorsBox = byId('job-errors');
  const errorsHeading = byId('job-errors-heading');
  const errorList = byId<HTMLUListElement>('job-error-list');
  const fields = [...section.querySelectorAll<HTMLElement>('.job-options .field')];
  const controls = [method, rank, density, majority, seed, clamp, resizeRule, resizeValue, resizeMax, extractRule, extractValue, format];
  const progress = new ProgressView(byId<HTMLProgressElement>('job-progress'), byId('job-progress-text'), 'modules', () => store.inputsRevision);
  const results = new JobResultsView();
  const spectrum = mountSpectrumPanel();
  let running: { cancel(): void } | undefined;
  /** Whether the page, not the user, switched the output to kohya (kohya module names). */
  let forcedKohya = false;

  const renderInputs = mountJobInputsPanel(store, (made) => describe(made), showError, readModel);
  const readingModel: Partial<Record<ModelSlot, { cancel(): void }>> = {};
  store.onWithdraw = (result) => { client.withdraw(result.job).catch(() => {}); };
  keepResultsOf(store);

  function describe(adapters: JobAdapter[]): void {
    // Picked for a conversion: what convert refuses whatever the model is said now, not when Convert is pressed.
    const check = store.state.mode === 'convert' ? 'convert' : undefined;
    for (const adapter of adapters) {
      client.describe({ name: adapter.set.name, files: adapter.set.files }, check).then(
        (facts) => {
          if (facts.convertRefusal === undefined) {
            store.setAdapterInfo(adapter.id, { status: 'ready', facts });
            return checkConvert();
          }
          store.setAdapterInfo(adapter.id, { status: 'failed', message: facts.convertRefusal, refused: true });
          say.error(facts.convertRefusal);
        },
        (error: Error) => {
          store.setAdapterInfo(adapter.id, { status: 'failed', message: error.message });
          say.error(error.message);
        },
      );
    }
  }

  /**
   * Once a conversion's adapter and model are both read: what convert refuses of that adapter on
   * that model, said on the adapter's card and aloud before Convert is pressed (an adapter for
   * another model, a module the model has no tensor for). Only the newest pair's answer counts.
   */
  function checkConvert(): void {
    const { toConvert: adapter, target, modelInfo } = store.state;
    if (!adapter || !target || adapter.info.status !== 'ready' || modelInfo.target?.status !== 'ready') return;
    store.setConvertCheck({ adapterId: adapter.id, target, status: 'checking' });
    client.checkConvert({ name: adapter.set.name, files: adapter.set.files }, { name: target.name, files: target.files }).then(
      (refusal) => {
        store.setConvertCheck({ adapterId: adapter.id, target, status: 'done', ...(refusal !== undefined && { refusal }) });
        if (refusal !== undefined && store.state.toConvert === adapter && store.state.target === target) say.error(refusal);
      },
      // Not a refusal of this pair (the worker failed): Convert then says what it meets.
      () => store.setConvertCheck({ adapterId: adapter.id, target, status: 'done' }),
    );
  }

  /**
   * Reads an extraction's model as soon as it is picked, as the merge's base is: what it holds, or
   * why it cannot be read, under it and aloud; only the newest pick's answer counts.
   */
  function readModel(which: ModelSlot, set: PickedSet): void {
    readingModel[which]?.cancel();
    const handle = client.readModel({ name: set.name, files: set.files }, which);
    readingModel[which] = handle;
    const what = SLOT_NAMES[which].title;
    handle.done.then(
      (facts) => {
        if (store.state[which] !== set) return;
        store.setModelInfo(which, set, { status: 'ready', facts });
        say.say(`${what} read: ${set.name}, ${baseFactsLine(facts).replaceAll(' · ', ', ')}.`);
        if (which === 'target') checkConvert();
      },
      (error: Error) => {
        if (store.state[which] !== set || error.name === 'AbortError') return;
        store.setModelInfo(which, set, { status: 'failed', message: error.message });
        say.error(spokenMessage(error.message, SLOT_NAMES[which].under));
      },
    );
  }

  const applyRule = (input: HTMLInputElement, labelId: string, rule: RuleInput) => {
    byId(labelId).textContent = rule.label;
    input.min = rule.min;
    input.max = rule.max;
    input.step = rule.step;
    input.value = rule.value;
  };
  resizeRule.addEventListener('change', () => applyRule(resizeValue, 'job-resize-value-label', RESIZE_RULES[resizeRule.value as RankRule['kind']]));
  extractRule.addEventListener('change', () => applyRule(extractValue, 'job-extract-value-label', EXTRACT_RULES[extractRule.value as 'rank' | 'energy']));
  format.addEventListener('input', () => { forcedKohya = false; });
  for (const control of controls) {
    control.addEventListener('input', () => store.settingsChanged());
    control.addEventListener('change', () => store.settingsChanged());
  }

  /** The current mode's job as the worker takes it, or what is wrong with the options. */
  function readSpec(): { spec: JobSpec } | { problem: string } {
    const s = store.state;
    const kind = format.value as OutputKind;
    const number = (input: HTMLInputElement, name: string, check: (x: number) => boolean, rule: string): number | string | undefined => {
      if (input.value.trim() === '') return input.validity.badInput ? `${name} is not a number.` : undefined;
      const x = Number(input.value);
      return Number.isFinite(x) && check(x) ? x : `${name} must be ${rule}.`;
    };
    const positiveInteger = (x: number) => Number.isSafeInteger(x) && x >= 1;
    const share = (x: number) => x > 0 && x <= 1;
    if (s.mode === 'combine') {
      const m = method.value as CombineMethod;
      const values = {
        rank: m === 'cat' ? undefined : number(rank, 'Rank', positiveInteger, 'a whole number of at least 1'),
        density: m === 'cat' || m === 'svd' ? undefined : number(density, 'Density', share, 'above 0 and at most 1'),
        seed: m.startsWith('dare') ? number(seed, 'Seed', (x) => Number.isSafeInteger(x) && x >= 0, 'a whole number of at least 0') : undefined,
        clamp: m === 'cat' ? undefined : number(clamp, 'Clamp quantile', share, 'above 0 and at most 1 (or empty for none)'),
      };
      const problem = Object.values(values).find((v) => typeof v === 'string');
      if (typeof problem === 'string') return { problem };
      if (values.density === undefined && m !== 'cat' && m !== 'svd') return { problem: `Method ${m} needs a density.` };
      return {
        spec: {
          kind: 'combine', method: m, format: kind,
          adapters: s.adapters.map((a) => ({ name: a.set.name, files: a.set.files, weight: a.weight })),
          rank: values.rank as number | undefined, density: values.density as number | undefined,
          // Only where the method reads them: combineLoras warns of any other it is given.
          majoritySign: m.endsWith('ties') ? majority.value as MajoritySign : undefined, seed: values.seed as number | undefined,
          clampQuantile: values.clamp as number | undefined,
        },
      };
    }
    if (s.mode === 'resize') {
      const ruleKind = resizeRule.value as RankRule['kind'];
      const value = ruleKind === 'rank' ? number(resizeValue, 'Rank', positiveInteger, 'a whole number of at least 1')
        : ruleKind === 'sv_ratio' ? number(resizeValue, 'The ratio', (x) => x > 0, 'above 0')
          : number(resizeValue, 'The share', share, 'above 0 and at most 1');
      if (typeof value !== 'number') return { problem: value ?? `Give the ${RESIZE_RULES[ruleKind].label.toLowerCase()}.` };
      const maxRank = ruleKind === 'rank' ? undefined : number(resizeMax, 'Largest rank', positiveInteger, 'a whole number of at least 1 (or empty for the module’s own)');
      if (typeof maxRank === 'string') return { problem: maxRank };
      const rule: RankRule = ruleKind === 'rank' ? { kind: 'rank', rank: value } : { kind: ruleKind, value, ...(maxRank !== undefined && { maxRank }) };
      const adapter = s.single!;
      return { spec: { kind: 'resize', adapter: { name: adapter.set.name, files: adapter.set.files }, rule, format: kind } };
    }
    if (s.mode === 'convert') {
      const adapter = s.toConvert!;
      const { name, files, namesFolder } = adapter.set;
      return { spec: { kind: 'convert', adapter: { name, files, ...(namesFolder && { namesFolder }) }, base: { name: s.target!.name, files: s.target!.files } } };
    }
    const byRank = extractRule.value === 'rank';
    const value = byRank ? number(extractValue, 'Rank', positiveInteger, 'a whole number of at least 1')
      : number(extractValue, 'The share', share, 'above 0 and at most 1');
    if (typeof value !== 'number') return { problem: value ?? 'Give the rank or the share to keep.' };
    return {
      spec: {
        kind: 'extract', format: kind, base: { name: s.base!.name, files: s.base!.files }, tuned: { name: s.tuned!.name, files: s.tuned!.files },
        ...(byRank ? { rank: value } : { energy: value }),
      },
    };
  }

  store.settingsKey = (mode) => {
    if (mode === 'combine') {
      return JSON.stringify(['combine', method.value, rank.value, density.value, majority.value, seed.value, clamp.value, format.value, store.state.adapters.map((a) => a.weight)]);
    }
    if (mode === 'resize') return JSON.stringify(['resize', resizeRule.value, resizeValue.value, resizeRule.value === 'rank' ? '' : resizeMax.value, format.value]);
    // Nothing to set: a conversion writes the factors as they are, always as a GGUF.
    if (mode === 'convert') return JSON.stringify(['convert']);
    return JSON.stringify([mode, extractRule.value, extractValue.value, format.value]);
  };

  function outName(spec: JobSpec): string {
    if (spec.kind === 'combine') return `${stemOf(spec.adapters[0].name)}-combined`;
    if (spec.kind === 'resize') return `${stemOf(spec.adapter.name)}-resized`;
    if (spec.kind === 'convert') return `${stemOf(spec.adapter.name)}-converted`;
    return `${stemOf(spec.tuned.name)}-extracted`;
  }

  async function run(): Promise<void> {
    const mode = store.state.mode;
    if (mode === 'merge' || store.blocker()) return;
    const started = headers.forRun();
    if (started.threadsProblem) return;
    const read = readSpec();
    if ('problem' in read) return;
    const { spec } = read;
    const words = TITLES[mode];
    // As on the merge page: the pressed button is disabled under the focus, Cancel takes it.
    const focusOnStart = document.activeElement === runButton || focusLost();
    store.setResult(undefined);
    store.setErrors([]);
    store.setBusy(true);
    if (focusOnStart) cancelButton.focus();
    progress.start();
    const settings = store.settingsKey(mode);
    const name = outName(spec);
    const handle = client.run(spec, started.backendChoice, started.threads, name, (p) => progress.update(p));
    running = handle;
    try {
      const done = await handle.done;
      const message = `${DONE[mode]} ${done.report.length} module${done.report.length === 1 ? '' : 's'} in ${formatDuration(done.seconds)}.`;
      progress.finish(message);
      store.setBusy(false);
      beforeNewResult();
      store.setResult({ ...done, mode, outName: name, settings, stale: settings !== store.settingsKey(mode) });
      // Its warnings said too (a vocabulary grown past the base's: the adapter loads only on a base resized so).
      const warned = done.warnings.length === 0 ? '' : ` ${done.warnings.length === 1 ? 'Warning' : `${done.warnings.length} warnings, listed with it`}: ${done.warnings.slice(0, 3).join(' · ')}${done.warnings.length > 3 ? ' · …' : ''}`;
      say.say(`${message} The adapter is under “Your adapter”, with ${mode === 'convert' ? 'each module’s rank' : 'the rank chosen for each module'}.${warned}`);
      results.focus();
    } catch (error) {
      const focusOnCancel = document.activeElement === cancelButton || focusLost();
      store.setBusy(false);
      if (focusOnCancel) (runButton.disabled ? section : runButton).focus();
      if (error instanceof CancelledError) {
        progress.fail('Cancelled. Nothing was kept.');
        say.say('Cancelled. Nothing was kept.');
      } else {
        const lines = problemsOf((error as Error).message);
        store.setErrors(lines);
        progress.fail(`The ${words.noun} failed: see the problems below.`);
        say.error(`The ${words.noun} failed: ${lines.length === 1 ? lines[0] : `${lines.length} problems. First: ${lines[0]}`}`);
      }
    } finally {
      running = undefined;
    }
  }

  runButton.addEventListener('click', () => void run());
  cancelButton.addEventListener('click', () => running?.cancel());
  window.addEventListener('beforeunload', (event) => {
    if (!store.state.busy) return;
    event.preventDefault();
    event.returnValue = ''; // older engines need it set to show the prompt
  });

  const render = () => {
    const s = store.state;
    section.hidden = s.mode === 'merge';
    if (s.mode === 'merge') return;
    const words = TITLES[s.mode];
    heading.textContent = words.heading;
    hint.textContent = words.hint;
    runButton.textContent = words.run;
    const m = method.value as CombineMethod;
    for (const field of fields) {
      const modes = field.dataset.modes?.split(' ') ?? [];
      const methods = field.dataset.methods?.split(' ');
      const rules = field.dataset.rules?.split(' ');
      field.hidden = !modes.includes(s.mode) || (s.mode === 'combine' && methods !== undefined && !methods.includes(m))
        || (s.mode === 'resize' && rules !== undefined && !rules.includes(resizeRule.value));
    }
    // A conversion has no options: no empty group to read through.
    optionsGroup.hidden = optionsHeading.hidden = fields.every((field) => field.hidden);
    for (const control of controls) control.disabled = s.busy;
    methodHint.textContent = s.mode === 'combine' ? METHOD_HINTS[m]
      : s.mode === 'resize' ? RESIZE_RULES[resizeRule.value as RankRule['kind']].hint
        : s.mode === 'extract' ? EXTRACT_RULES[extractRule.value as 'rank' | 'energy'].hint
          : 'Only PEFT adapters (their modules named as the model’s Hugging Face weights) can be renamed onto a GGUF model’s tensors; q and k rows are permuted as llama.cpp’s converter permutes the model’s.';

    // Only a kohya file can name a kohya adapter's modules.
    // A conversion's format is its own: the menu, hidden then, stays as the other modes left it.
    const converting = s.mode === 'convert';
    const kohya = converting ? undefined : store.modeAdapters().find((a) => a.info.status === 'ready' && a.info.facts.kohyaNames);
    if (!converting) peftOption.disabled = kohya !== undefined;
    if (!converting && kohya && format.value === 'peft') {
      format.value = 'kohya';
      forcedKohya = true;
    } else if (!converting && !kohya && forcedKohya) {
      format.value = 'peft';
      forcedKohya = false;
    }
    formatHint.textContent = converting
      ? 'One .gguf file, a llama.cpp LoRA adapter: load it beside the model with llama.cpp’s --lora.'
      : kohya
      ? `${kohya.set.name} has kohya module names (lora_unet_…), which only a kohya file can hold.`
      : format.value === 'peft'
        ? 'A zip of a PEFT folder: adapter_config.json and adapter_model.safetensors, as PEFT saves an adapter.'
        : `One .safetensors file with lora_down, lora_up and alpha per module, as kohya’s scripts write it.${s.mode === 'extract' ? ' It cannot hold whole tensors or bias updates: they are left out, with a warning.' : ''}`;

    // The header's threads hold every job, as they hold the merge.
    const blocker = store.blocker() ?? header().threadsProblem;
    const read = blocker ? undefined : readSpec();
    const problem = blocker ?? (read && 'problem' in read ? read.problem : undefined);
    runButton.disabled = problem !== undefined;
    blocked.replaceChildren(...textNodes(s.busy ? '' : problem ?? ''));
    cancelButton.disabled = !s.busy;
    if (!s.busy) progress.forgetIfOutdated();

    errorsBox.hidden = s.errors.length === 0;
    errorsHeading.textContent = s.errors.length === 1 ? `The ${words.noun} failed` : `The ${words.noun} failed: ${s.errors.length} problems`;
    errorList.replaceChildren(...s.errors.map((e) => el('li', { className: 'error' }, ...textNodes(e))));

    const result = store.result();
    results.render(result);
    spectrum.show(result?.report, result?.mode === 'convert');
  };
  renderInputs(store.state);
  store.subscribe((state) => {
    render();
    renderInputs(state);
    for (const listener of listeners) listener();
  });

  return {
    setMode: (mode) => {
      store.setMode(mode);
      render();
      renderInputs(store.state);
    },
    busy: () => store.state.busy,
    runLabel: () => (store.state.mode === 'merge' ? 'Merge' : TITLES[store.state.mode].run),
    refresh: render,
    subscribe: (listener) => { listeners.push(listener); },
  };
}

/** A MergeError's lines: one problem, or `n problems in …:` and a `  - …` line per problem. */
function problemsOf(message: string): string[] {
  const lines = message.split('\n');
  if (lines.length === 1) return lines;
  return lines.slice(1).map((l) => l.replace(/^\s*-\s*/, '').trim()).filter(Boolean);
}
