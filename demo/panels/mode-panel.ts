/**
 * What the page does: merge into a model (the four sections), or one of the adapter jobs
 * (combine, resize, extract, convert: one section of their own). A group of radio buttons: labelled by its
 * legend, moved through with the arrow keys, and each change announced. `?mode=` in the address
 * sets it. The switch is disabled while a merge or a job runs.
 */
import { byId } from '../dom.js';
import type { PageMode } from '../job-state.js';
import modeSwitchHtml from '../mode-switch.html?raw';

const MODES: PageMode[] = ['merge', 'combine', 'resize', 'extract', 'convert'];

/** What the skip link skips to, in each job mode. */
const NOUNS: Record<Exclude<PageMode, 'merge'>, string> = { combine: 'combination', resize: 'resizing', extract: 'extraction', convert: 'conversion' };

const HINTS: Record<PageMode, string> = {
  merge: 'Bake adapters into a base model: pick the base and the adapters below.',
  combine: 'Make one adapter from several, weighted: exactly (cat) or at a rank you choose.',
  resize: 'Give an adapter a new rank, fixed or chosen per module from its singular values, as kohya’s resize does.',
  extract: 'Make an adapter from a fine-tuned model and its base: the best low-rank approximation of their difference.',
  convert: 'Write a PEFT LoRA as a llama.cpp LoRA (GGUF) for a model, as llama.cpp’s convert_lora_to_gguf.py does.',
};

const ANNOUNCED: Record<PageMode, string> = {
  merge: 'Merge mode: base model, adapters, plan and merge are shown.',
  combine: 'Combine mode: pick the adapters to combine and the method.',
  resize: 'Resize mode: pick one adapter and the rule for its new rank.',
  extract: 'Extract mode: pick the base model and the fine-tuned model.',
  convert: 'Convert mode: pick the PEFT adapter and the model it is for.',
};

export interface ModePanel {
  readonly mode: PageMode;
  /** Redraws the switch (enabled unless something runs). */
  render(): void;
}

export function mountModePanel(onMode: (mode: PageMode) => void, say: (message: string) => void, isBusy: () => boolean): ModePanel {
  const main = document.querySelector('main')!;
  main.insertAdjacentHTML('afterbegin', modeSwitchHtml);
  const radios = [...document.querySelectorAll<HTMLInputElement>('#mode-switch input[name="mode"]')];
  const hint = byId('mode-hint');
  const skip = document.querySelector<HTMLAnchorElement>('a.skip');
  const mergeSections = [
    document.querySelector<HTMLElement>('main > section.sample'),
    ...['base-section', 'adapters-section', 'plan-section', 'merge-section'].map((id) => document.getElementById(id)),
  ].filter((e): e is HTMLElement => e !== null);
  let mode: PageMode = 'merge';

  const show = (next: PageMode, announce: boolean) => {
    mode = next;
    for (const radio of radios) radio.checked = radio.value === next;
    for (const section of mergeSections) section.hidden = next !== 'merge';
    hint.textContent = HINTS[next];
    if (skip) {
      skip.href = next === 'merge' ? '#merge-section' : '#job-section';
      skip.textContent = next === 'merge' ? 'Skip to the merge' : `Skip to the ${NOUNS[next]}`;
    }
    onMode(next);
    if (announce) say(ANNOUNCED[next]);
  };

  for (const radio of radios) radio.addEventListener('change', () => { if (radio.checked) show(radio.value as PageMode, true); });
  const fromAddress = new URLSearchParams(location.search).get('mode') as PageMode | null;
  show(fromAddress && MODES.includes(fromAddress) ? fromAddress : 'merge', false);

  return {
    get mode() { return mode; },
    render() {
      const busy = isBusy();
      for (const radio of radios) radio.disabled = busy;
    },
  };
}
