/** Small DOM helpers shared by the panels. */
import { printable } from '../src/shown-text.js';

/**
 * Text from files (names, messages quoting them) as the page shows it: as text, never markup (no
 * innerHTML anywhere), and with control characters and bidirectional overrides written as \u
 * escapes, so a name cannot reorder the message around it.
 */
export const shown = printable;

/** The longest name a chart draws (a legend entry, an axis label, a tooltip line) before its middle is left out. */
export const MAX_CHART_LABEL = 64;

/**
 * A name as a chart draws it on its canvas: shown (a bidi override would reorder the label, and
 * the tooltip and legend beside it), and one line of at most MAX_CHART_LABEL characters, its start
 * and end kept, since a name can be kilobytes and a label of that size covers the chart.
 */
export function chartLabel(name: string): string {
  const line = shown(name).replace(/\s*\n\s*/g, ' ');
  if (line.length <= MAX_CHART_LABEL) return line;
  const tail = Math.floor((MAX_CHART_LABEL - 1) / 3);
  return `${line.slice(0, MAX_CHART_LABEL - 1 - tail)}…${line.slice(-tail)}`;
}
/**
 * Whether focus is lost: on no element, or on one that is disabled. A button disabled under the
 * focus (Merge, Cancel, Combine, once pressed) drops it to the page's start, where a keyboard or
 * screen-reader user has to find their way back.
 */
export function focusLost(): boolean {
  const active = document.activeElement;
  return active === null || active === document.body || active.matches(':disabled');
}

/**
 * The most items the page lists in one list or table (problems, modules left out, modules matched).
 * An adapter of many thousands of modules the base lacks made as many list items at once, which
 * froze the tab for seconds; the rest are counted in a last line instead.
 */
export const MAX_LISTED_ROWS = 1000;

/** The first MAX_LISTED_ROWS of `items`, and how many are left unlisted. */
export function listed<T>(items: readonly T[]): { rows: readonly T[]; more: number } {
  return { rows: items.length > MAX_LISTED_ROWS ? items.slice(0, MAX_LISTED_ROWS) : items, more: Math.max(0, items.length - MAX_LISTED_ROWS) };
}

/** The line that stands for the items a list or table leaves out: how many, and which it shows. */
export function unlistedLine(more: number, what: string): string {
  return `… and ${more} more ${what}, not listed: the page lists the first ${MAX_LISTED_ROWS}`;
}

export function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
}

/** An element with text; long names wrap (CSS) and keep their full text in a tooltip. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const shownProps: Record<string, unknown> = { ...props };
  for (const key of ['textContent', 'title'] as const) {
    if (typeof shownProps[key] === 'string') shownProps[key] = shown(shownProps[key] as string);
  }
  const node = Object.assign(document.createElement(tag), shownProps);
  node.append(...children.map((c) => (typeof c === 'string' ? shown(c) : c)));
  return node;
}

/**
 * A message as the page shows it: one line as text; a list of problems (`n problems in …:` then
 * `  - …` lines, src/plan/problems.ts) as its title and a list, one item per problem, as text.
 * Long names inside it wrap as {@link nameNodes} wraps a file name ({@link textNodes}).
 */
export function messageNodes(message: string): (Node | string)[] {
  const lines = shown(message).split('\n');
  if (lines.length === 1) return textNodes(lines[0]);
  const [title, ...rest] = lines;
  return [
    el('p', { className: 'message-title' }, ...textNodes(title)),
    el('ul', { className: 'message-list' }, ...rest.map((line) => el('li', {}, ...textNodes(line.replace(/^\s*(- )?/, ''))))),
  ];
}

/** A run of text this long with no space in it (a tensor's name, a path) gets break points of its own. */
const LONG_WORD = /\S{16,}/g;

/**
 * Text from files or the engine (a message, a warning, a note) as nodes: the text itself, shown,
 * with each long run of it that has no space in it (a tensor's name
 * `model.diffusion_model.double_blocks.12.img_attn.qkv.lora_down.weight`, a path) broken as
 * {@link nameNodes} breaks a file name: a `<wbr>` after its `_ . - /`, never inside a word on a
 * phone. The nodes' text is the text, unchanged (a `<wbr>` has none), so a screen reader, copying
 * and searching read the same string; nothing is markup.
 */
export function textNodes(text: string): (Node | string)[] {
  const line = shown(text);
  const out: (Node | string)[] = [];
  let at = 0;
  for (const word of line.matchAll(LONG_WORD)) {
    if (word.index > at) out.push(line.slice(at, word.index));
    out.push(...nameNodes(word[0]));
    at = word.index + word[0].length;
  }
  if (at < line.length) out.push(line.slice(at));
  return out;
}

/**
 * What is read out for a message: a list of problems as its title (which counts them) and its first
 * problem, not every line at once; the list itself is on the page to go through item by item.
 */
export function spokenMessage(message: string, where = 'in the plan'): string {
  const lines = message.split('\n');
  if (lines.length === 1) return message;
  return `${lines[0].replace(/:\s*$/, '')}, listed ${where}. The first: ${lines[1].replace(/^\s*(- )?/, '')}`;
}

/** Facts this short stay on one line; longer ones (a warning) wrap as any text does. */
const SHORT_FACT = 24;

/**
 * An adapter's facts joined by ` · ` (the text reads as before), each short one (`α/r = 2`) kept on
 * one line: on a phone a fact broke at its `=`, its value alone on the next line.
 */
export function factNodes(facts: readonly string[]): (Node | string)[] {
  return facts.flatMap((fact, i) => {
    const text = shown(fact);
    const nodes = text.length <= SHORT_FACT ? [el('span', { className: 'fact' }, text)] : textNodes(text);
    return i === 0 ? nodes : [' · ', ...nodes];
  });
}

/**
 * A file or folder name that wraps where a person would break it: a `<wbr>` after each `_`, `.`,
 * `-` and `/` (`adapter_model.` / `safetensors`, not `adapter_mod` / `el.safetensors` as the page's
 * overflow-wrap alone did on a phone). A part still too long for the line breaks anywhere, as before.
 * The text is unchanged (no hyphen is added), so copying, searching and the accessible name read
 * the whole name.
 */
export function nameNodes(name: string): (Node | string)[] {
  const parts = name.split(/(?<=[_.\-/])(?=.)/);
  return parts.flatMap((part, i) => (i === 0 ? [part] : [document.createElement('wbr'), part]));
}

