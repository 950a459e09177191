/** Many problems, one error: the CLI prints it as one line per problem, the first few in full. */
import { MergeError, type MergeErrorCode } from '../errors.js';
import { inlineText } from '../shown-text.js';

/** How many problems a message lists before it only counts the rest. */
export const MAX_LISTED_PROBLEMS = 12;

/**
 * `n problems in <what>:` then the first few messages, one per line, then "... and k more". A line
 * break inside a message (from a name it quotes) is escaped, so each problem is one line and a
 * hostile name cannot add a false one.
 */
export function formatProblemList(what: string, messages: readonly string[]): string {
  if (messages.length === 1) return inlineText(messages[0]);
  const listed = messages.slice(0, MAX_LISTED_PROBLEMS).map((m) => `  - ${inlineText(m)}`);
  const rest = messages.length - listed.length;
  if (rest > 0) listed.push(`  ... and ${rest} more`);
  return `${messages.length} problems in ${what}:\n${listed.join('\n')}`;
}

/** Throws one MergeError for all problems (with the first problem's code), if there are any. */
export function throwIfProblems(what: string, problems: readonly { code: MergeErrorCode; message: string }[]): void {
  if (problems.length === 0) return;
  throw new MergeError(problems[0].code, formatProblemList(what, problems.map((p) => p.message)), { lines: true });
}
