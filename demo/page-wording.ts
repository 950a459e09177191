/**
 * The engine's messages in the page's words. The CLI, the library and the page share one set of
 * messages, and their advice names the command line's options (`write with --dtype bf16 or f32, or
 * lower --weight`); the page has controls for those instead: the "Output dtype" menu, the box
 * "only for the tensors the merge changes", each adapter's weight, the Base model and Adapters
 * sections. Each rule rewrites one way an option is mentioned into those controls, keeping the
 * sentence's meaning; an option the page has no control for (--out, --overwrite) and other
 * programs' options (llama-quantize --imatrix, --pure) are left as they are. (The "CPU threads" box
 * checks its own entry; a worker thread that died asks for one thread, which names that box.)
 */
import { applyWordingRules, DTYPE_NAMES, OPTION_END, OPTION_START, type WordingRule } from '../src/wording-rules.js';

/**
 * The adapter card's setting for a OneTrainer OFT file of the COFT commits saved without its
 * training config (the CLI's --onetrainer-coft, the library's oneTrainerCoft), and its choices.
 */
export const COFT_LABEL = 'OneTrainer COFT';
export const COFT_CHOICES = {
  unsaid: 'not said (the file is refused)',
  off: 'off',
  on: 'on, coft_eps 1e-4 (OneTrainer’s default)',
  eps: 'on, the run’s coft_eps',
} as const;

/** The Output dtype menu's first choice: no conversion. */
const KEEP_TYPES = '“keep each tensor’s type”';
/** The label of the box under the Output dtype menu (the CLI's --dtype-merged-only). */
const MERGED_ONLY = '“only for the tensors the merge changes”';

const START = OPTION_START;
const END = OPTION_END;
const TYPES = DTYPE_NAMES;

/** Most specific first: a phrase rule must run before the option's plain mention is rewritten. */
const RULES: readonly WordingRule[] = [
  // --dtype-merged-only, the box under the menu.
  [new RegExp(`${START}--dtype-merged-only would ([^;]*); leave it out`, 'g'), `checking ${MERGED_ONLY} would $1; uncheck it`],
  [new RegExp(`, or ${START}--dtype-merged-only${END}`, 'g'), `, or check ${MERGED_ONLY}`],
  [new RegExp(`${START}--dtype-merged-only${END}`, 'g'), MERGED_ONLY],
  // --dtype, the Output dtype menu.
  [new RegExp(`\\b(?:write|merge) with --dtype ${TYPES}`, 'g'), 'choose $1 as the Output dtype'],
  [new RegExp(`\\bchoose --dtype ${TYPES}`, 'g'), 'choose $1 as the Output dtype'],
  [new RegExp(`\\bleave out --dtype${END}`, 'g'), `set the Output dtype to ${KEEP_TYPES}`],
  [new RegExp(`\\bchoose another --dtype${END}`, 'g'), 'choose another Output dtype'],
  [new RegExp(`\\bunless --dtype chooses another type\\b`, 'g'), 'unless another Output dtype is chosen'],
  [new RegExp(`\\bneeds --dtype${END}`, 'g'), 'needs an Output dtype'],
  [new RegExp(`${START}--dtype ${TYPES}`, 'g'), 'the Output dtype $1'],
  [new RegExp(`${START}--dtype${END}`, 'g'), `an Output dtype other than ${KEEP_TYPES}`],
  // --weight, each adapter's weight slider and box.
  [new RegExp(`\\buse a smaller --weight${END}`, 'g'), 'use a smaller weight'],
  [new RegExp(`\\bcheck the adapter and --weight${END}`, 'g'), 'check the adapter and its weight'],
  [new RegExp(`${START}--weight${END}`, 'g'), 'the adapter’s weight'],
  // --base and --adapter, the page's Base model and Adapters sections.
  [new RegExp(`\\bpass a base model with --base${END}`, 'g'), 'pick a base model under “Base model”'],
  [new RegExp(`\\bpass it with --adapter${END}`, 'g'), 'pick it under “Adapters”'],
  [new RegExp(`\\bin --adapter order\\b`, 'g'), 'in the order of the adapter list'],
  // --imatrix, the Importance matrix picker (llama-quantize's own --imatrix is left as it is).
  [new RegExp(`\\bgive --imatrix FILE \\(made by llama-imatrix for this model\\)`, 'g'), 'choose an importance matrix (llama-imatrix’s file for this model)'],
  [new RegExp(`\\bleave out --imatrix${END}`, 'g'), 'remove the importance matrix'],
  [new RegExp(`\\(--imatrix\\)`, 'g'), '(“Choose an importance matrix…”)'],
  [new RegExp(`\\bwith --imatrix${END}`, 'g'), 'with an importance matrix'],
  // --onetrainer-coft, the "OneTrainer COFT" setting on the adapter's card (offered where the file asks for it).
  [new RegExp(`\\bmerge it with --onetrainer-coft off, --onetrainer-coft on \\(coft_eps 1e-4, OneTrainer's default\\) or --onetrainer-coft EPS${END}`, 'g'),
    `choose “${COFT_CHOICES.off}”, “${COFT_CHOICES.on}” or “${COFT_CHOICES.eps}” under “${COFT_LABEL}” on the adapter’s card`],
  [new RegExp(`${START}--onetrainer-coft${END}`, 'g'), `the adapter’s “${COFT_LABEL}”`],
  // --threads 1, the CPU threads box (a worker thread that died asks for it).
  [new RegExp(`\\(--threads 1\\)`, 'g'), '(1 in the “CPU threads” box)'],
];

/**
 * A split GGUF with parts missing: the command line looks beside the part it is given, a page
 * reads only the files picked, so the advice is to pick them all (the message names no option,
 * so it is rewritten apart from the option rules).
 */
const SPLIT_PARTS_MISSING = /\bsplit GGUF of (\d+) parts but (\d+) found \(incomplete download\?\)/g;
const SPLIT_PARTS_ADVICE = 'split GGUF of $1 parts but $2 picked: pick all $1 parts together';

/**
 * `message` (an error, a plan's problem, warning or note, an adapter's or a merge's warning, a
 * reason an output type is refused) with each mention of a command-line option the page has a
 * control for rewritten to name that control; everything else, quoted names included, as it was.
 */
export function pageWording(message: string): string {
  return applyWordingRules(message.replace(SPLIT_PARTS_MISSING, SPLIT_PARTS_ADVICE), RULES);
}
