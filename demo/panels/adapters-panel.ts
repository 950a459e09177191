/**
 * Section 2: one card per adapter with its facts (worded by the worker from the plan), a weight
 * slider from −2 to 2 with a number box beside it (any finite weight), and a remove button.
 * Cards are rebuilt only when the adapters change, so a slider keeps focus while it moves.
 */
import { ADAPTER_ACCEPT } from '../accepted-files.js';
import { byId, el, factNodes, messageNodes, nameNodes, shown, textNodes } from '../dom.js';
import { adapterSets } from '../file-picking.js';
import { busyWith, type AdapterEntry, type PageState, type PageStore } from '../page-state.js';
import { makeCoftField, type CoftField } from './coft-field.js';
import { mountInputPanel } from './input-panel.js';

export interface Card {
  item: HTMLLIElement;
  facts: HTMLElement;
  slider: HTMLInputElement;
  number: HTMLInputElement;
  remove: HTMLButtonElement;
}

export function mountAdaptersPanel(store: PageStore, onError: (message: string) => void): (state: PageState) => void {
  const pickers = mountInputPanel(
    { filesButton: 'adapter-files-button', folderButton: 'adapter-folder-button', filesInput: 'adapter-input', folderInput: 'adapter-folder-input', drop: 'adapter-drop' },
    ADAPTER_ACCEPT,
    (sets) => store.addAdapters(adapterSets(sets)),
    onError,
  );
  const list = byId<HTMLUListElement>('adapter-list');
  const cards = new Map<number, Card>();
  const coftFields = new Map<number, CoftField>();
  let shownIds = '';

  return (state) => {
    const busy = state.busy !== undefined;
    pickers.setBusy(busyWith(state));
    const ids = state.adapters.map((a) => a.id).join(',');
    if (ids !== shownIds) {
      shownIds = ids;
      const focusedId = [...cards].find(([, c]) => c.item.contains(document.activeElement))?.[0];
      cards.clear();
      // A card kept keeps its COFT field (what it showed, what was typed in it); a new one starts hidden.
      const fields = new Map(coftFields);
      coftFields.clear();
      list.replaceChildren(...state.adapters.map((adapter) => {
        const card = makeCard(adapter, store);
        const field = fields.get(adapter.id) ?? makeCoftField(adapter, store);
        card.item.append(field.box);
        cards.set(adapter.id, card);
        coftFields.set(adapter.id, field);
        return card.item;
      }));
      // A removed card's focus goes to the adapters heading rather than to the page's start.
      if (focusedId !== undefined && !cards.has(focusedId)) byId('adapters-heading').focus();
    }
    state.adapters.forEach((adapter, index) => {
      const card = cards.get(adapter.id)!;
      card.facts.className = 'adapter-facts';
      if (state.plan.status === 'ready') card.facts.replaceChildren(...factNodes(state.plan.plan.adapters[index]?.facts ?? []));
      else if (state.plan.status === 'planning') card.facts.textContent = 'reading…';
      else if (state.plan.status === 'failed') {
        // Read alone, each adapter says its own: its facts, or why it cannot be read.
        const reading = state.plan.adapters?.[index];
        if (reading && 'facts' in reading) card.facts.replaceChildren(...factNodes(reading.facts));
        else {
          card.facts.replaceChildren(...(reading ? cannotBeRead(reading.error) : ['not read: see the error in the plan']));
          card.facts.classList.add('error-text');
        }
      } else card.facts.textContent = '';
      // The plan's word on whether the file asks for its COFT setting (undefined while a plan is made).
      const asks = state.plan.status === 'ready' ? state.plan.plan.adapters[index]?.asksCoft === true
        : state.plan.status === 'failed' ? state.plan.adapters?.[index]?.asksCoft === true : undefined;
      coftFields.get(adapter.id)!.render(adapter, asks, busy);
      for (const input of [card.slider, card.number]) input.disabled = busy;
      card.remove.disabled = busy;
      if (document.activeElement !== card.number) card.number.value = String(adapter.weight);
      if (document.activeElement !== card.slider) card.slider.value = String(adapter.weight);
    });
  };
}

/**
 * A card's own refusal: one line as it is; a list of problems folded under its title (the plan may
 * list the same ones), so that a phone's screen is not two long lists.
 */
function cannotBeRead(message: string): (Node | string)[] {
  const [title, ...rest] = message.split('\n');
  const line = textNodes(`cannot be read: ${title}`);
  if (rest.length === 0) return line;
  return [el('details', {}, el('summary', {}, ...line), ...messageNodes(message).slice(1))];
}

/** One adapter's card; the adapter jobs' panel makes the same cards over its own store. */
export function makeCard(adapter: AdapterEntry, store: Pick<PageStore, 'removeAdapter' | 'setWeight'>): Card {
  const name = adapter.set.name;
  const facts = el('div', { className: 'adapter-facts' });
  facts.dataset.testid = 'adapter-facts';
  const remove = el('button', { type: 'button', className: 'remove', textContent: 'Remove' });
  remove.setAttribute('aria-label', `Remove ${name}`);
  remove.addEventListener('click', () => store.removeAdapter(adapter.id));

  const slider = el('input', { type: 'range', min: '-2', max: '2', step: '0.05', value: String(adapter.weight) });
  slider.dataset.testid = 'adapter-weight';
  slider.setAttribute('aria-label', `Weight of ${name}`);
  const number = el('input', { type: 'number', step: '0.05', value: String(adapter.weight), inputMode: 'decimal' });
  number.dataset.testid = 'adapter-weight-number';
  number.setAttribute('aria-label', `Weight of ${name}, as a number`);
  slider.addEventListener('input', () => {
    number.value = slider.value;
    store.setWeight(adapter.id, Number(slider.value));
  });
  number.addEventListener('input', () => {
    if (number.value === '' || !Number.isFinite(number.valueAsNumber)) return; // mid-typing ("-", "0.")
    slider.value = String(number.valueAsNumber);
    store.setWeight(adapter.id, number.valueAsNumber);
  });
  number.addEventListener('change', () => {
    if (!Number.isFinite(number.valueAsNumber)) number.value = String(adapter.weight);
  });

  const weightRow = el('div', { className: 'adapter-weight' }, el('span', { textContent: 'weight', ariaHidden: 'true' }), slider, number);
  // The facts span the card under the name and its Remove button: an unreadable adapter's list of
  // problems squeezed beside the button was a column a few words wide on a phone.
  const item = el('li', { className: 'adapter' }, el('div', { className: 'adapter-name', title: name }, ...nameNodes(name)), remove, facts, weightRow);
  item.dataset.testid = 'adapter';
  return { item, facts, slider, number, remove };
}
