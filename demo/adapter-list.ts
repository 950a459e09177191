/** Section 2: one card per adapter with its r, α, α/r and a weight slider from −2 to 2. */
import { formatScale } from './format.js';
import type { PickedSet } from './file-picking.js';
import type { AdapterSummary } from './worker-protocol.js';

export interface AdapterEntry {
  set: PickedSet;
  weight: number;
  summary?: AdapterSummary;
}

export interface AdapterListEvents {
  onWeight(index: number, weight: number): void;
  onRemove(index: number): void;
}

export function renderAdapters(list: HTMLUListElement, adapters: AdapterEntry[], events: AdapterListEvents): void {
  list.replaceChildren(...adapters.map((adapter, index) => adapterCard(adapter, index, events)));
}

function facts(adapter: AdapterEntry): string {
  const files = `${adapter.set.files.length} file${adapter.set.files.length === 1 ? '' : 's'}`;
  const s = adapter.summary;
  if (!s) return `${files} · reading…`;
  return `${s.format} · ${s.modules} modules · r = ${s.rank} · α = ${s.alpha} · α/r = ${s.scale}`;
}

function adapterCard(adapter: AdapterEntry, index: number, events: AdapterListEvents): HTMLLIElement {
  const item = document.createElement('li');
  item.className = 'adapter';
  item.dataset.testid = 'adapter';

  const head = document.createElement('div');
  const name = document.createElement('div');
  name.className = 'adapter-name';
  name.textContent = adapter.set.name;
  const info = document.createElement('div');
  info.className = 'adapter-facts';
  info.dataset.testid = 'adapter-facts';
  info.textContent = facts(adapter);
  head.append(name, info);

  const remove = document.createElement('button');
  remove.className = 'remove';
  remove.textContent = 'Remove';
  remove.addEventListener('click', () => events.onRemove(index));

  const weightRow = document.createElement('label');
  weightRow.className = 'adapter-weight';
  const slider = document.createElement('input');
  slider.type = 'range';
  slider.min = '-2';
  slider.max = '2';
  slider.step = '0.05';
  slider.value = String(adapter.weight);
  slider.dataset.testid = 'adapter-weight';
  slider.setAttribute('aria-label', `Weight of ${adapter.set.name}`);
  const value = document.createElement('output');
  value.textContent = formatScale(adapter.weight);
  slider.addEventListener('input', () => {
    const weight = Number(slider.value);
    value.textContent = formatScale(weight);
    events.onWeight(index, weight);
  });
  weightRow.append('weight', slider, value);

  item.append(head, remove, weightRow);
  return item;
}
