/**
 * Text from files (tensor names, config keys, metadata) as the command line and the page show it:
 * shown, never obeyed. A control character or a bidirectional override in a name would rewrite a
 * terminal, or reorder the rest of a message on a page (`\u202e` turns "exe.txt" into "txt.exe" and
 * everything after it), and a name of megabytes would make a message of that size.
 */

/** C0 controls but tab and newline, DEL, C1 controls, line and paragraph separators, bidi overrides and isolates. */
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with each control character written as a \u escape; newlines and tabs are kept. */
export function printable(text: string): string {
  return text.replace(CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * The longest message line printed whole. A file can hold a name or metadata string of megabytes
 * (GGUF strings reach 10 MB), and a message quoting it was a line of that size.
 */
export const MAX_MESSAGE_CHARS = 4096;

/**
 * One message on one line: its own line breaks (and any in the names it quotes) become "; ", and
 * past MAX_MESSAGE_CHARS its middle is left out; its end, which says what to do, is kept.
 */
export function oneLine(text: string): string {
  const line = text.replace(/\s*\n\s*/g, '; ').trim();
  if (line.length <= MAX_MESSAGE_CHARS) return line;
  const tail = MAX_MESSAGE_CHARS / 4;
  const head = MAX_MESSAGE_CHARS - tail;
  return `${line.slice(0, head)} […${line.length - head - tail} characters left out…] ${line.slice(-tail)}`;
}
