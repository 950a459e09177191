/**
 * The engine's messages in the library's words. The CLI, the library and the page share one set of
 * messages, and their advice names the command line's options (`choose another --out, or pass
 * --overwrite`, `write with --dtype bf16 or f32, or lower --weight`); a caller of `merge()`,
 * `combineLoras`, `resizeLora` or `extractLora` gave options of the call instead (`out`,
 * `overwrite: true`, `dtype: 'bf16'`, an adapter's `{ source, weight }`, `base`, `adapters`). The
 * one-call entries pass their errors, warnings and notes through here, so a message reads in the
 * words of the call that got it. Other programs' options (llama-quantize --imatrix, --pure) and
 * names the engine quotes are left as they are; loramerge's own --imatrix becomes `importance`.
 */
import { MergeError, isMergeError } from './errors.js';
import { applyWordingRules, DTYPE_NAME, DTYPE_NAMES, OPTION_END, OPTION_START, type WordingRule } from './wording-rules.js';

/** Where an adapter's weight is given in a call: the same words as the refusal of a `weight` option. */
const ADAPTER_WEIGHT = '(adapters: [{ source, weight }])';

const rule = (pattern: string, words: WordingRule[1]): WordingRule => [new RegExp(pattern, 'g'), words];
const START = OPTION_START;
const END = OPTION_END;

/** `bf16 or f32` as the values `dtype` takes: `'bf16' or 'f32'`. */
const quotedTypes = (types: string): string => types.replace(new RegExp(DTYPE_NAME, 'g'), "'$&'");

/** Most specific first: a phrase rule must run before the option's plain mention is rewritten. */
const RULES: readonly WordingRule[] = [
  // --dtype-merged-only: only mergeModel takes it (the one-call entries convert every tensor they convert).
  rule(`${START}--dtype-merged-only${END}`, "mergeModel's dtypeMergedOnly"),
  // --dtype: the call's `dtype`, with the values it names as they are given.
  rule(`\\bneeds --dtype${END}`, 'needs a dtype'),
  rule(`${START}--dtype ${DTYPE_NAMES}`, (_match, types) => `dtype: ${quotedTypes(types)}`),
  rule(`${START}--dtype${END}`, 'dtype'),
  // --weight: each adapter's own weight.
  rule(`\\bcheck the adapter and --weight${END}`, `check the adapter and its weight ${ADAPTER_WEIGHT}`),
  rule(`\\buse a smaller --weight${END}`, `use a smaller weight ${ADAPTER_WEIGHT}`),
  rule(`${START}--weight${END}`, `the adapter's weight ${ADAPTER_WEIGHT}`),
  // --overwrite: a boolean option.
  rule(`${START}--overwrite${END}`, 'overwrite: true'),
  // --base and --adapter: the base and the adapters list.
  rule(`\\bpass a base model with --base${END}`, 'pass a base model as base'),
  rule(`\\bpass it with --adapter${END}`, 'pass it in adapters'),
  rule(`${START}--base${END}`, 'base'),
  rule(`${START}--adapter${END}`, 'adapters'),
  // --imatrix: merge()'s `importance` (llama-quantize's own --imatrix is left as it is).
  rule(`\\bgive --imatrix FILE \\(made by llama-imatrix for this model\\)`, "give importance (readImportanceMatrix of llama-imatrix's file for this model)"),
  rule(`\\bleave out --imatrix${END}`, 'leave out importance'),
  rule(`\\(--imatrix\\)`, '(importance)'),
  rule(`\\bwith --imatrix${END}`, 'with an importance matrix'),
  // --onetrainer-coft: merge()'s per-adapter oneTrainerCoft.
  rule(`${START}--onetrainer-coft off, --onetrainer-coft on \\(coft_eps 1e-4, OneTrainer's default\\) or --onetrainer-coft EPS${END}`,
    "oneTrainerCoft: false, true (coft_eps 1e-4, OneTrainer's default) or the run's coft_eps (adapters: [{ source, oneTrainerCoft }])"),
  rule(`${START}--onetrainer-coft${END}`, "the adapter's oneTrainerCoft (adapters: [{ source, oneTrainerCoft }])"),
  // --threads 1: the calls' threads option (a worker thread that died asks for it).
  rule(`${START}--threads 1${END}`, 'threads: 1'),
  // Options named alike in the calls.
  rule(`${START}--(out|backend|tuned|rank|energy|method|density|seed|threads)${END}`, '$1'),
];

/**
 * `message` (an error, a plan's warning, note or problem, a job's warning) with each mention of a
 * command-line option of loramerge rewritten to name the library call's option; everything else,
 * quoted names and other programs' options included, as it was.
 */
export function libraryWording(message: string): string {
  return applyWordingRules(message, RULES);
}

/**
 * `e` as a library caller is to see it: a MergeError whose message names command-line options
 * becomes one with the same code and cause whose message names the call's options; anything else
 * (another MergeError, an error that is not one) is returned as it is.
 */
export function inLibraryWords(e: unknown): unknown {
  if (!isMergeError(e)) return e;
  const message = libraryWording(e.message);
  if (message === e.message) return e;
  // Its line breaks are the list's own: MergeError escaped those of the names it quotes.
  return new MergeError(e.code, message, e.cause === undefined ? { lines: true } : { cause: e.cause, lines: true });
}
