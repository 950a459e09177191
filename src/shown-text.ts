/**
 * Messages quote text from the files they read: tensor names, config keys, metadata. Those are
 * shown, never obeyed: an escape sequence in a tensor name would recolour, retitle or rewrite a
 * terminal (or a log viewer) that prints the message, a carriage return would hide what came before
 * it, and a name or GGUF string of megabytes would make a message of that size. Every MergeError's
 * message passes through here when it is made; the CLI and the page use the same functions for what
 * they show (on a page a bidirectional override `\u202e` would reorder the rest of a message).
 */

/** C0 controls but tab and newline, DEL, C1 controls, line and paragraph separators, bidi overrides and isolates. */
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with each control character written as a \u escape; newlines and tabs are kept. */
export function printable(text: string): string {
  return text.replace(CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Text from a file (a tensor or entry name) quoted inside one line of a message or a listing: its
 * line breaks escaped as `\u000a`, as printable escapes the other controls, so that a name never
 * starts a line of its own (a message keeps its own line breaks: a list of problems is one per line).
 */
export function inlineText(text: string): string {
  return text.replace(/\n/g, '\\u000a');
}

/**
 * The longest message line kept whole. A file can hold a name or metadata string of megabytes
 * (GGUF strings reach 10 MB), and a message quoting it was a line of that size.
 */
export const MAX_MESSAGE_CHARS = 4096;

/** Lines a message keeps (a list of problems is at most 14: its title, 12 problems and a count). */
export const MAX_MESSAGE_LINES = 16;

const TAIL = MAX_MESSAGE_CHARS / 4;
const HEAD = MAX_MESSAGE_CHARS - TAIL;
const LEFT_OUT = /^ \[…\d+ characters left out…\] /;

/**
 * Past MAX_MESSAGE_CHARS, `line` without its middle; its end, which says what to do, is kept. A
 * line cut here already is kept as it is (the CLI shows messages the library has cut).
 */
function cappedLine(line: string): string {
  if (line.length <= MAX_MESSAGE_CHARS) return line;
  const mark = LEFT_OUT.exec(line.slice(HEAD));
  if (mark && line.length === HEAD + mark[0].length + TAIL) return line;
  return `${line.slice(0, HEAD)} […${line.length - HEAD - TAIL} characters left out…] ${line.slice(-TAIL)}`;
}

/**
 * One message on one line: its own line breaks (and any in the names it quotes) become "; " (a
 * space after a line that ends in a colon: "problems in the merge plan: - …; - …"), and past
 * MAX_MESSAGE_CHARS its middle is left out; its end, which says what to do, is kept.
 */
export function oneLine(text: string): string {
  return cappedLine(text.replace(/:[ \t]*\n\s*/g, ': ').replace(/\s*\n\s*/g, '; ').trim());
}

/**
 * A message as a MergeError holds it: printable, each line capped like oneLine, and no more than
 * MAX_MESSAGE_LINES lines. Its line breaks are kept: a list of problems is one per line.
 */
export function boundedMessage(text: string): string {
  const lines = printable(text).split('\n');
  const kept = lines.length > MAX_MESSAGE_LINES
    ? [...lines.slice(0, MAX_MESSAGE_LINES - 1), `[…${lines.length - MAX_MESSAGE_LINES + 1} more lines left out…]`]
    : lines;
  return kept.map(cappedLine).join('\n');
}

/** Characters of a list a message quotes before it only counts the rest (see shownList). */
export const MAX_LISTED_CHARS = 400;

/** An entry as a list in a message shows it: JSON, a long string cut before it is quoted. */
function shownEntry(item: unknown): string {
  if (typeof item === 'string' && item.length > MAX_LISTED_CHARS) return `${JSON.stringify(item.slice(0, MAX_LISTED_CHARS))}…`;
  return JSON.stringify(item) ?? String(item);
}

/**
 * The first entries of `items`, each as `show` writes it (JSON by default), joined by `separator`
 * until MAX_LISTED_CHARS are written (the first is always shown), then "… and k more": cut while
 * it is built, so a config list of 600 000 names costs the few shown, not a string of megabytes
 * that the message would cut anyway. `total` is the number of items where the caller knows it;
 * else the rest are counted, not shown.
 */
export function shownList<T>(items: Iterable<T>, show: (item: T) => string = shownEntry, separator = ', ', total?: number): string {
  let text = '';
  let shown = 0;
  let rest = 0;
  for (const item of items) {
    if (text.length >= MAX_LISTED_CHARS) {
      if (total !== undefined) {
        rest = total - shown;
        break;
      }
      rest++;
      continue;
    }
    text += (shown === 0 ? '' : separator) + show(item);
    shown++;
  }
  return rest > 0 ? `${text}${separator}… and ${rest} more` : text;
}

/** A list as JSON shows it (`["q_proj","v_proj"]`), cut as {@link shownList} cuts it. */
export function shownJsonList(items: readonly unknown[]): string {
  return `[${shownList(items, shownEntry, ',', items.length)}]`;
}
