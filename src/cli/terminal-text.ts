/**
 * What the command line prints is partly text from the files it reads: tensor names, config keys,
 * metadata. Those are shown, never obeyed: an escape sequence in a tensor name would recolour,
 * retitle or rewrite the user's terminal, a carriage return would hide what came before it, and a
 * newline would start a line that reads as a message of its own (`error: …` in a warning).
 */
import { inlineText, printable } from '../shown-text.js';

export { MAX_MESSAGE_CHARS, oneLine, printable } from '../shown-text.js';

/** One line of a listing (a tensor or module per line): line breaks in the names it shows escaped like other controls. */
export function listingLine(text: string): string {
  return inlineText(text);
}

/** Writes one line (or a block of lines) to stdout, printable. */
export function stdoutLine(line: string): void {
  process.stdout.write(printable(line) + '\n');
}

/** Writes one line to stderr, printable. */
export function stderrLine(line: string): void {
  process.stderr.write(printable(line) + '\n');
}
