/**
 * An adapter card's "OneTrainer COFT" (the CLI's --onetrainer-coft, the library's oneTrainerCoft):
 * how a OneTrainer OFT file saved without its training config by a OneTrainer that had COFT was
 * trained, which the file cannot say and is refused without. Shown only where the plan says the
 * file asks for it (AdapterSummary.asksCoft), and kept while a new plan is made, so the menu does
 * not vanish under the focus that changed it. Each choice makes the plan again.
 */
import { el } from '../dom.js';
import { COFT_CHOICES, COFT_LABEL } from '../page-wording.js';
import type { AdapterEntry, PageStore } from '../page-state.js';

export interface CoftField {
  box: HTMLElement;
  /** Shows or hides the field (`asks`: the latest plan's word; undefined while one is made) and matches it to the adapter's setting. */
  render(adapter: AdapterEntry, asks: boolean | undefined, busy: boolean): void;
}

const HINT = 'This OneTrainer OFT file was saved by a OneTrainer of 14 November 2025 – 10 May 2026, which had COFT (oft_coft, off by default), '
  + 'without its training config (ot_config), so only you can say whether COFT projected its blocks: choose as the run was trained. '
  + 'A training config in the file’s metadata wins over this setting.';
const EPS_PROBLEM = 'coft_eps is a number above 0 (the run’s coft_eps, as in its training config).';

type Choice = keyof typeof COFT_CHOICES;

/** The choice that stands for a setting (a number is the run's own coft_eps). */
function choiceOf(coft: boolean | number | undefined): Choice {
  if (coft === undefined) return 'unsaid';
  return coft === false ? 'off' : coft === true ? 'on' : 'eps';
}

export function makeCoftField(adapter: AdapterEntry, store: Pick<PageStore, 'setOneTrainerCoft'>): CoftField {
  const id = `coft-${adapter.id}`;
  const name = adapter.set.name;
  const select = el('select', { id });
  select.dataset.testid = 'adapter-coft';
  for (const [value, text] of Object.entries(COFT_CHOICES)) select.append(el('option', { value, textContent: text }));
  const eps = el('input', { id: `${id}-eps`, type: 'number', min: '0', step: 'any', inputMode: 'decimal' });
  eps.dataset.testid = 'adapter-coft-eps';
  const hint = el('p', { id: `${id}-hint`, className: 'hint small', textContent: HINT });
  const problem = el('p', { id: `${id}-problem`, className: 'error-text small', textContent: EPS_PROBLEM });
  problem.hidden = true;
  select.setAttribute('aria-describedby', hint.id);
  eps.setAttribute('aria-describedby', `${hint.id} ${problem.id}`);
  // The name is said to a screen reader, which may meet several cards' menus; the card shows it already.
  const label = el('label', { htmlFor: id }, COFT_LABEL, el('span', { className: 'visually-hidden', textContent: ` of ${name}` }));
  const epsLabel = el('label', { htmlFor: eps.id }, 'coft_eps', el('span', { className: 'visually-hidden', textContent: ` of ${name}` }));
  const epsBox = el('span', { className: 'labelled' }, epsLabel, eps);
  epsBox.hidden = true;
  const box = el('div', { className: 'adapter-coft' }, el('span', { className: 'labelled' }, label, select), epsBox, problem, hint);
  box.dataset.testid = 'adapter-coft-box';
  box.hidden = true;

  /** The box's entry as a coft_eps, or undefined where it is none (empty, 0, negative, not a number). */
  const typedEps = (): number | undefined => (eps.value !== '' && Number.isFinite(eps.valueAsNumber) && eps.valueAsNumber > 0 ? eps.valueAsNumber : undefined);
  const showProblem = (shown: boolean) => {
    problem.hidden = !shown;
    eps.setAttribute('aria-invalid', String(shown));
  };
  select.addEventListener('change', () => {
    const choice = select.value as Choice;
    epsBox.hidden = choice !== 'eps';
    showProblem(false);
    // "The run's coft_eps" with nothing typed yet says nothing: the file stays refused until one is.
    store.setOneTrainerCoft(adapter.id, choice === 'off' ? false : choice === 'on' ? true : choice === 'eps' ? typedEps() : undefined);
  });
  // Taken once committed (Enter, Tab away, an arrow), not per key: "0." on the way to "0.2" is no coft_eps.
  eps.addEventListener('change', () => {
    const value = typedEps();
    showProblem(value === undefined);
    store.setOneTrainerCoft(adapter.id, value);
  });

  let shown = false;
  return {
    box,
    render(entry, asks, busy) {
      // A plan on its way keeps what the last one said; a setting given keeps the field, so it can be taken back.
      if (asks !== undefined) shown = asks || entry.oneTrainerCoft !== undefined || select.value !== 'unsaid';
      box.hidden = !shown;
      select.disabled = eps.disabled = busy;
      const want = choiceOf(entry.oneTrainerCoft);
      // "The run's coft_eps" chosen with no number (yet) stands for no setting: left as the person chose it.
      if (document.activeElement !== select && !(want === 'unsaid' && select.value === 'eps')) select.value = want;
      epsBox.hidden = select.value !== 'eps';
      if (typeof entry.oneTrainerCoft === 'number' && document.activeElement !== eps && eps.valueAsNumber !== entry.oneTrainerCoft) eps.value = String(entry.oneTrainerCoft);
    },
  };
}
