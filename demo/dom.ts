/** Small DOM helpers shared by the panels. */
import { printable } from '../src/shown-text.js';

/**
 * Text from files (names, messages quoting them) as the page shows it: as text, never markup (no
 * innerHTML anywhere), and with control characters and bidirectional overrides written as \u
 * escapes, so a name cannot reorder the message around it.
 */
export const shown = printable;
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
