/**
 * The engine's messages name the command line's options in their advice (`write with --dtype bf16
 * or f32, or lower --weight`). Each front end other than the command line words those mentions its
 * own way (the library: library-wording.ts; the page: demo/page-wording.ts) with a list of rules
 * applied here; the words stay in each front end's file, the way of applying them and the patterns
 * an option mention is made of are shared.
 */

/** A rewrite: every match of the (global) pattern replaced, as String.prototype.replace takes it. */
export type WordingRule = readonly [RegExp, string | ((match: string, ...groups: string[]) => string)];

/** An option's start: not inside a word or a longer option. */
export const OPTION_START = '(?<![\\w-])';
/** An option's end: not followed by more of a longer option's name (`--dtype` is not `--dtype-merged-only`). */
export const OPTION_END = '(?![\\w-])';

/** One dtype name as the command line takes it (`bf16`, `q4_k`, `f8_e4m3`, `iq4_xs`): every one has a digit. */
export const DTYPE_NAME = '[a-z][a-z0-9_]*[0-9][a-z0-9_]*';
/**
 * The types an option mention names, as one group: `f32`, `bf16 or f32`, `f16, bf16 or f32`,
 * `f32/f16/bf16`, `bf16 (or f16, f32)`, `q4_k (or q5_k, q6_k, …)`.
 */
export const DTYPE_NAMES = `(${DTYPE_NAME}(?:(?:, ${DTYPE_NAME})* or ${DTYPE_NAME}|(?:/${DTYPE_NAME})+)?(?: \\(or ${DTYPE_NAME}(?:, ${DTYPE_NAME})*(?:, …)?\\))?)`;

/** Names the engine quotes ("model.layers.0.q_proj.weight") are the user's own: never rewritten. */
const QUOTED = /("[^"\n]*")/;

/**
 * `message` with `rules` applied in order (most specific first) to each part outside double-quoted
 * names; a message that mentions no option (no `--`) comes back as it is.
 */
export function applyWordingRules(message: string, rules: readonly WordingRule[]): string {
  if (!message.includes('--')) return message;
  // The two replace calls are one: TypeScript picks String.replace's overload by the narrowed type.
  return message
    .split(QUOTED)
    .map((part, i) => (i % 2 === 1 ? part : rules.reduce((text, [rule, words]) => (typeof words === 'string' ? text.replace(rule, words) : text.replace(rule, words)), part)))
    .join('');
}
