/**
 * The adapter jobs' inputs: adapter cards for combine (weight slider and number box, as the
 * merge's), resize and convert (one adapter, no weight), the base and fine-tuned models for
 * extract, and the model a conversion's llama.cpp LoRA is for.
 * Each adapter is read in the worker as soon as it is picked, so its card says what it is; each
 * model too, its summary then saying what it holds, or the library's one line on why it cannot be read.
 */
import { ADAPTER_ACCEPT, BASE_ACCEPT } from '../accepted-files.js';
import { byId, el, factNodes, messageNodes, nameNodes, textNodes } from '../dom.js';
import { adapterSets } from '../file-picking.js';
import { formatBytes } from '../format.js';
import type { JobAdapter, JobState, JobStore, ModelInfo, ModelSlot } from '../job-state.js';
import type { PickedSet } from '../page-state.js';
import { makeCard, type Card } from './adapters-panel.js';
import { baseFactsLine } from './base-panel.js';
import { mergeSets, mountInputPanel } from './input-panel.js';

function pickerIds(prefix: string) {
  return {
    filesButton: `${prefix}-files-button`, folderButton: `${prefix}-folder-button`,
    filesInput: `${prefix}-input`, folderInput: `${prefix}-folder-input`, drop: `${prefix}-drop`,
  };
}

/**
 * `onAdded`: adapters picked, to be read; `onModel`: a model picked for an extraction, to be read
 * (its answer goes to the store's modelInfo).
 */
export function mountJobInputsPanel(store: JobStore, onAdded: (adapters: JobAdapter[]) => void,
  onError: (message: string) => void, onModel: (which: ModelSlot, set: PickedSet) => void): (state: JobState) => void {
  const adapterPickers = mountInputPanel(pickerIds('job-adapter'), ADAPTER_ACCEPT, (sets) => onAdded(store.addAdapters(adapterSets(sets))), onError);
  const modelPickers = (['base', 'tuned', 'target'] as const).map((which) => mountInputPanel(pickerIds(`job-${which}`), BASE_ACCEPT, (sets) => {
    const set = mergeSets(sets);
    if (!set) return;
    store.setModel(which, set);
    onModel(which, set);
  }, onError));
  const adapterBox = byId('job-adapter-box');
  const modelsBox = byId('job-models-box');
  const targetBox = byId('job-target-box');
  const list = byId<HTMLUListElement>('job-adapter-list');
  const listLabel = byId('job-adapters-heading');
  const adapterHint = byId('job-adapter-hint');
  const adapterHintNodes = [...adapterHint.childNodes];
  const summaries = { base: byId('job-base-summary'), tuned: byId('job-tuned-summary'), target: byId('job-target-summary') };
  const cards = new Map<number, Card>();
  let shownIds = '';
  const shownModels: Partial<Record<ModelSlot, PickedSet>> = {};
  const shownInfo: Partial<Record<ModelSlot, ModelInfo>> = {};
  const factLines: Partial<Record<ModelSlot, HTMLElement>> = {};

  return (state) => {
    const mode = state.mode;
    adapterBox.hidden = mode !== 'combine' && mode !== 'resize' && mode !== 'convert';
    modelsBox.hidden = mode !== 'extract';
    targetBox.hidden = mode !== 'convert';
    listLabel.textContent = mode === 'resize' ? 'Adapter to resize' : mode === 'convert' ? 'PEFT adapter to convert' : 'Adapters to combine';
    // A conversion takes PEFT's module names only (a kohya file is refused by it).
    if (mode === 'convert') adapterHint.textContent = 'A PEFT folder (adapter_config.json + adapter_model.safetensors), or its two files.';
    else if (adapterHint.firstChild !== adapterHintNodes[0]) adapterHint.replaceChildren(...adapterHintNodes);
    const busyWith = state.busy ? 'a job was running' : undefined;
    adapterPickers.setBusy(busyWith);
    for (const pickers of modelPickers) pickers.setBusy(busyWith);

    const adapters = store.modeAdapters();
    const ids = `${mode}:${adapters.map((a) => a.id).join(',')}`;
    if (ids !== shownIds) {
      shownIds = ids;
      const focusedId = [...cards].find(([, c]) => c.item.contains(document.activeElement))?.[0];
      cards.clear();
      list.replaceChildren(...adapters.map((adapter) => {
        const card = makeCard(adapter, store);
        // Apart from the merge's cards (same page, other mode).
        card.item.dataset.testid = 'job-adapter';
        card.facts.dataset.testid = 'job-adapter-facts';
        card.slider.dataset.testid = 'job-adapter-weight';
        card.number.dataset.testid = 'job-adapter-weight-number';
        card.slider.closest<HTMLElement>('.adapter-weight')!.hidden = mode !== 'combine';
        cards.set(adapter.id, card);
        return card.item;
      }));
      if (focusedId !== undefined && !cards.has(focusedId)) listLabel.focus();
    }
    for (const adapter of adapters) {
      const card = cards.get(adapter.id)!;
      card.facts.className = 'adapter-facts';
      const info = adapter.info;
      // convert's refusal of it on the model picked with it, once both were read.
      const refusal = mode === 'convert' && info.status === 'ready' ? store.convertRefusal() : undefined;
      if (refusal !== undefined) {
        // One line, or the list of every module it cannot place.
        card.facts.replaceChildren(...messageNodes(refusal));
        card.facts.classList.add('error-text');
      } else if (info.status === 'reading') card.facts.textContent = 'reading…';
      else if (info.status === 'ready') card.facts.replaceChildren(...factNodes([...info.facts.facts, ...info.facts.warnings.map((w) => `warning: ${w}`)]));
      else {
        card.facts.replaceChildren(...textNodes(info.message));
        card.facts.classList.add('error-text');
      }
      for (const input of [card.slider, card.number]) input.disabled = state.busy;
      card.remove.disabled = state.busy;
      if (document.activeElement !== card.number) card.number.value = String(adapter.weight);
      if (document.activeElement !== card.slider) card.slider.value = String(adapter.weight);
    }

    for (const which of ['base', 'tuned', 'target'] as const) {
      const set = state[which];
      if (shownModels[which] !== set) {
        shownModels[which] = set;
        shownInfo[which] = undefined;
        const box = summaries[which];
        box.hidden = !set;
        if (!set) {
          box.replaceChildren();
          continue;
        }
        const total = set.files.reduce((n, f) => n + f.file.size, 0);
        const facts = el('p', { className: 'base-facts' });
        facts.dataset.testid = `job-${which}-facts`;
        factLines[which] = facts;
        box.replaceChildren(el('div', {}, el('b', { title: set.name }, ...nameNodes(set.name)), ` · ${set.files.length} file${set.files.length === 1 ? '' : 's'}, ${formatBytes(total)}`), facts);
      }
      const info = state.modelInfo[which];
      if (!set || shownInfo[which] === info) continue;
      shownInfo[which] = info;
      const facts = factLines[which]!;
      facts.className = info?.status === 'failed' ? 'base-facts error-text' : 'base-facts';
      facts.replaceChildren(...(info?.status === 'ready' ? textNodes(baseFactsLine(info.facts))
        : info?.status === 'failed' ? messageNodes(info.message) : ['Reading its headers…']));
    }
  };
}
