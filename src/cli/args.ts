/**
 * Command-line parsing on node:util's parseArgs. `--weight` belongs to the `--adapter` before it, so
 * options are read as ordered tokens rather than as a flat record.
 */
import { parseArgs } from 'node:util';
import { MergeError } from '../errors.js';
import { MAX_THREADS } from '../limits.js';
import { THREADS_RANGE } from './threads-option.js';
import { editDistance } from '../api-arguments.js';

import type { BackendChoice } from '../engine/backend-choice.js';
import { ADAPTER_USAGE, WEIGHT_VALUES, parseCombine, parseConvert, parseExtract, parseResize, type CombineCommand, type ConvertCommand, type ExtractCommand, type ResizeCommand } from './adapter-args.js';
export type { BackendChoice };

export interface MergeCommand {
  command: 'merge';
  base: string;
  adapters: { path: string; weight: number }[];
  out: string;
  /** As typed; the base's container checks it (f32/f16/bf16/fp8 for safetensors, GGML types for GGUF). */
  dtype?: string;
  /** --dtype for the merged tensors only. */
  dtypeMergedOnly?: boolean;
  /** --imatrix: llama-imatrix's importance matrix, for re-quantizing a GGUF's merged tensors with it. */
  imatrix?: string;
  backend: BackendChoice;
  /** --threads: the CPU backend's threads, the calling one included (default: one per core, at most 8). */
  threads?: number;
  dryRun: boolean;
  /** Replace a non-empty output folder (a file at --out is always replaced, on success only). */
  overwrite: boolean;
  /** --onetrainer-coft, for every adapter (AdapterInput.oneTrainerCoft). */
  oneTrainerCoft?: boolean | number;
}

export interface InspectCommand { command: 'inspect'; path: string }
export interface SampleCommand { command: 'sample'; dir: string; backend: BackendChoice }
/** `asked`: --help, -h or `help`; false for a bare `loramerge`, which is a usage fault (no command). */
export interface HelpCommand { command: 'help'; asked: boolean }
export interface VersionCommand { command: 'version' }
export type Command = MergeCommand | InspectCommand | SampleCommand | HelpCommand | VersionCommand
  | CombineCommand | ResizeCommand | ExtractCommand | ConvertCommand;

export const USAGE = `usage:
  loramerge merge --base PATH --adapter PATH [--weight W] [--adapter PATH [--weight W] ...]
                  --out PATH [--dtype TYPE [--dtype-merged-only]] [--imatrix FILE]
                  [--backend auto|webgpu|cpu] [--threads N] [--dry-run] [--overwrite]
                  [--onetrainer-coft on|off|EPS]
  loramerge inspect PATH
  loramerge sample [DIR] [--backend auto|webgpu|cpu]
${ADAPTER_USAGE}

  --base     a .safetensors or .gguf file (or any part of a split .gguf), or a model folder
             (sharded Hugging Face, diffusers, or a split GGUF)
  --adapter  a PEFT folder (adapter_config.json + adapter_model.safetensors), a kohya .safetensors,
             or a llama.cpp LoRA .gguf
  --weight   weight of the adapter before it (default 1; negative subtracts)
  an input PATH (--base, --adapter, --tuned, inspect) may be an http:// or https:// URL of one
             file, read with Range requests (the server must answer them with 206), not downloaded
  --out      a file when the base is a file, a folder when the base is a folder or a split GGUF
  --dtype    safetensors: f32, f16, bf16, f8_e4m3 or f8_e5m2 for every float tensor, fp8 ones
             included; GGUF: the type of every matrix llama-quantize would quantize, merged or not
             (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k,
             mxfp4, nvfp4, q1_0, q2_0, tq1_0, tq2_0, iq3_xxs, iq3_s, iq4_nl, iq4_xs, or one of
             llama-quantize's mixes q1_0_mix, q2_0_mix, q4_0_mix, q4_1_mix, q5_0_mix, q5_1_mix,
             tq1_0_mix, tq2_0_mix, q2_k_mix, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s,
             q5_k_m, q6_k_mix, iq3_s_mix, iq3_m, iq4_nl_mix, iq4_xs_mix, mxfp4_moe: <type>_mix is
             llama-quantize's file type of that name, <type> that type throughout as --pure;
             norms keep theirs). Default: each tensor keeps the base's type. torch's names
             (float32, float16, bfloat16, float8_e4m3fn, float8_e5m2) and fp32, fp16 work too
  --dtype-merged-only  --dtype for the tensors the merge changes only; the others are copied
             as stored (export-lora's F16 output, or Q8_0 merged tensors in a Q4_K_M model)
  --imatrix  GGUF: llama-imatrix's importance matrix (.gguf or legacy .dat); the merged tensors
             are re-quantized with it as llama-quantize --imatrix does (untouched ones are copied)
  --backend  auto picks the fastest available; webgpu fails when WebGPU is unavailable
  --threads  threads of the CPU merge, or of combine's, resize's and extract's products on the CPU
             (default: one per core, at most 8; each adds about 14 MiB of memory)
  --dry-run  print the plan and stop (--out optional; given, its folder is checked)
  --overwrite  replace an existing, non-empty output folder (only once the merge has succeeded);
             an existing output file is replaced without it, also only on success
  --onetrainer-coft  how OneTrainer OFT files saved without their training config (ot_config) by
             a OneTrainer of 14 November 2025 – 10 May 2026, which had COFT, were trained: off, on
             (coft_eps 1e-4, OneTrainer's default) or the run's coft_eps; without it such files are
             refused. A file's own ot_config wins
  inspect    print what a base model or adapter holds
  sample     write a small generated model and adapter to DIR (default ./loramerge-sample), merge them
  combine    one adapter from several: cat (exact, the ranks added), svd (the best rank --rank K of
             the weighted sum), ties, dare_linear, dare_ties, magnitude_prune (PEFT's rules, which
             need --density D, the share of each update kept)
  resize     the adapter at a lower rank (kohya's resize_lora): --rank K, or per module the rank its
             singular values give under --sv-ratio, --sv-fro or --sv-cumulative, at most --rank K
             where one is given too (kohya's --new_rank with --dynamic_method)
  extract    a LoRA of the difference between a fine-tuned model (--tuned) and its --base (mergekit's
             extract_lora): --rank K, or per module the smallest rank keeping the share --energy X
             of the difference's squared norm
  convert    a PEFT adapter as a llama.cpp LoRA GGUF for the GGUF model --base (as llama.cpp's
             convert_lora_to_gguf.py --base): its tensor names, q/k row order and one pair per
             tensor, the factors as they are, in --outtype f32 (the default, as the script's),
             f16, bf16, q8_0 or auto`;

export function usageError(message: string): MergeError {
  return new MergeError('BAD_ARGUMENT', `${message} (see loramerge --help)`);
}

/**
 * A bare word where a command takes only options: most often a path given without its option
 * (`loramerge merge base adapter`), so the message says which options name the command's paths.
 */
export function unexpectedArgument(positional: string, paths: string): MergeError {
  return usageError(`unexpected argument "${positional}": name each path with its option (${paths})`);
}

export function parseBackend(value: string): BackendChoice {
  if (value === 'auto' || value === 'webgpu' || value === 'cpu') return value;
  throw usageError(`--backend must be auto, webgpu or cpu, not "${value}"`);
}

/** A plain decimal, optionally with an exponent: no hex (0x10), octal, binary, Infinity or blanks. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** `value` as a plain decimal (see DECIMAL), or undefined: Number() alone takes "0x10", " 2" and "". */
export function plainDecimal(value: string): number | undefined {
  const n = Number(value);
  return DECIMAL.test(value) && Number.isFinite(n) ? n : undefined;
}

/** The one-line refusal of a number outside what --`name` takes (`range`, as the usage says it). */
export function outOfRange(name: string, range: string, value: string): Error {
  return usageError(`--${name} must be ${range}, not "${value}"`);
}

/** Digits only, as a count, rank or seed is written (no sign, exponent, blanks or hex), in [min, max]. */
export function wholeNumber(name: string, value: string, min: number, range: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) throw outOfRange(name, range, value);
  return n;
}

/**
 * --threads of merge, combine, resize and extract: the CPU's threads, the calling one included, as
 * digits from 1 to MAX_THREADS (the library's limit); anything else is one usage line naming the range.
 */
export function parseThreads(value: string): number {
  return wholeNumber('threads', value, 1, THREADS_RANGE, MAX_THREADS);
}

/** How the weights of several adapters are given, for the refusals that see a user try otherwise. */
const ONE_WEIGHT_EACH = 'each --weight belongs to the --adapter just before it (--adapter A --weight 1 --adapter B --weight 0.5)';

export function parseWeight(value: string, adapter: string | undefined): number {
  const weight = plainDecimal(value);
  if (weight === undefined) {
    // `--weight 1,0.5` (other tools' --ratios list): say how several weights are given.
    const list = /[,;\s]/.test(value.trim()) && value.split(/[,;\s]+/).filter(Boolean).every((v) => plainDecimal(v) !== undefined);
    throw usageError(`--weight "${value}"${adapter ? ` for adapter ${adapter}` : ''} ${list ? `is a list, and a --weight is one number: ${ONE_WEIGHT_EACH}` : 'is not a finite decimal number'}`);
  }
  return weight;
}

/**
 * Binds each value-taking option to the argument after it, before parseArgs reads them. parseArgs
 * takes an argument that starts with "-" for an option and refuses the pair in its own words
 * (`--seed -1`: "Option '--seed' argument is ambiguous"), so a negative number never reached the
 * option's own check, which names the allowed range, nor worked where negatives mean something
 * (`--weight -0.5`). Bound as `--seed=-1`, it does; the commands have no short options to take it
 * for (-h is read before). An option followed by nothing or by another `--option` is refused here,
 * naming what it takes (`--out=--odd-name` still gives a value that starts with "--").
 * `takes`: each value-taking option's name and what its value is, for that refusal.
 */
export function bindOptionValues(args: readonly string[], takes: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    out.push(arg);
    if (arg === '--') return out.concat(args.slice(i + 1));
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    if (name === undefined || !Object.hasOwn(takes, name)) continue;
    const next = args[i + 1];
    if (next === undefined || next.startsWith('--')) {
      throw usageError(next === undefined ? `--${name} needs a value: ${takes[name]}` : `--${name} needs a value (${takes[name]}) before ${next}`);
    }
    if (next.startsWith('-')) {
      out[out.length - 1] = `${arg}=${next}`;
      i++;
    }
  }
  return out;
}

/**
 * An input path as given to --`option`, refused when empty (`--adapter=`, `--tuned ""`): an empty
 * path was looked up as a file named "" and refused as `: no such file or folder`, naming nothing.
 * `what` says what the option names.
 */
export function nonEmptyPath(option: string, value: string, what: string): string {
  if (value === '') throw usageError(`--${option} is empty; name ${what}`);
  return value;
}

/** An --adapter as given, with the --weight that followed it (1 where none did). */
export interface AdapterArg {
  path: string;
  weight: number;
  weighted: boolean;
}

/** A --weight belongs to the --adapter just before it, and an adapter takes one. */
export function weighLastAdapter(adapters: AdapterArg[], value: string): void {
  const last = adapters[adapters.length - 1];
  if (!last) throw usageError('--weight must follow the --adapter it belongs to');
  if (last.weighted) throw usageError(`adapter ${last.path} has two --weight values: ${ONE_WEIGHT_EACH}`);
  last.weight = parseWeight(value, last.path);
  last.weighted = true;
}

export function parseCommandLine(argv: string[]): Command {
  const [command, ...rest] = argv;
  if (command === undefined) return { command: 'help', asked: false };
  if (command === 'help' || command === '--help' || command === '-h') return { command: 'help', asked: true };
  if (command === '--version' || command === '-v' || command === 'version') return { command: 'version' };
  if (asksForHelp(rest)) return { command: 'help', asked: true };
  if (command === 'merge') return parseMerge(rest);
  if (command === 'inspect') return parseInspect(rest);
  if (command === 'sample') return parseSample(rest);
  if (command === 'combine') return parseCombine(rest);
  if (command === 'resize') return parseResize(rest);
  if (command === 'extract') return parseExtract(rest);
  if (command === 'convert') return parseConvert(rest);
  throw usageError(`unknown command "${command}"`);
}

/** `loramerge merge --help`: a --help or -h among a command's options (not after `--`) shows the usage. */
function asksForHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
}

/** Each command's options, by name without the dashes: what a refusal of an unknown one may point to. */
export const COMMAND_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  merge: ['base', 'adapter', 'weight', 'out', 'dtype', 'dtype-merged-only', 'imatrix', 'backend', 'threads', 'dry-run', 'overwrite', 'onetrainer-coft'],
  inspect: [],
  sample: ['backend'],
  combine: ['adapter', 'weight', 'method', 'rank', 'density', 'majority-sign', 'seed', 'clamp-quantile', 'base', 'out', 'backend', 'threads', 'overwrite'],
  resize: ['adapter', 'rank', 'sv-ratio', 'sv-fro', 'sv-cumulative', 'base', 'out', 'backend', 'threads', 'overwrite'],
  extract: ['base', 'tuned', 'rank', 'energy', 'out', 'backend', 'threads', 'overwrite'],
  convert: ['adapter', 'base', 'out', 'outtype', 'overwrite'],
};

/**
 * Other tools' names for our options (kohya's and diffusers' merge scripts, PEFT examples,
 * llama.cpp's export-lora, the usual short flags), as unknownOption compares them (lower case,
 * `-` for `_`): `--output`, `--lora`, `--model`, `--scale` are what a newcomer types first, and
 * they are too far from `--out`, `--adapter`, `--base`, `--weight` for the spelling check.
 */
const OTHER_TOOLS_NAMES: Readonly<Record<string, string>> = {
  o: 'out', output: 'out', outfile: 'out', 'output-file': 'out', 'output-path': 'out', 'out-path': 'out', 'output-dir': 'out', outdir: 'out', 'out-dir': 'out', 'save-to': 'out', save: 'out', 'save-path': 'out', dest: 'out',
  a: 'adapter', l: 'adapter', lora: 'adapter', loras: 'adapter', 'lora-path': 'adapter', 'lora-model': 'adapter', 'lora-model-path': 'adapter', 'lora-adapter': 'adapter', 'lora-base': 'adapter', adapters: 'adapter', 'adapter-path': 'adapter', peft: 'adapter', 'peft-model': 'adapter', 'peft-model-path': 'adapter', models: 'adapter',
  b: 'base', m: 'base', model: 'base', 'base-model': 'base', 'base-model-path': 'base', 'base-path': 'base', 'model-path': 'base', 'model-base': 'base', 'model-name-or-path': 'base', 'pretrained-model-name-or-path': 'base', ckpt: 'base', checkpoint: 'base', 'sd-model': 'base',
  w: 'weight', scale: 'weight', 'lora-scale': 'weight', ratio: 'weight', ratios: 'weight', strength: 'weight', multiplier: 'weight',
  precision: 'dtype', 'save-precision': 'dtype', outtype: 'dtype', 'out-type': 'dtype', 'torch-dtype': 'dtype', type: 'dtype',
  f: 'overwrite', force: 'overwrite', y: 'overwrite', yes: 'overwrite', replace: 'overwrite',
  device: 'backend', j: 'threads', jobs: 'threads', 'num-threads': 'threads',
};

/**
 * The refusal of an option `command` does not have, as typed (`arg`): the option it most likely
 * meant (`--bse`, `--Base`, `--dry_run`, `-base`, or another tool's name for it: `--output`,
 * `--lora`, `-o`), or the commands that do have it (`merge --method`). parseArgs' own words advised putting it after `--`, which these commands then refuse
 * as a stray argument, and named only the first letter of `-base`.
 */
function unknownOption(command: string, arg: string): MergeError {
  const own = COMMAND_OPTIONS[command] ?? [];
  const typed = arg.replace(/^-+/, '').split('=')[0];
  const wanted = typed.toLowerCase().replace(/_/g, '-');
  const scored = own.map((name) => ({ name, d: name === wanted ? 0 : editDistance(wanted, name) }));
  const best = scored.sort((x, y) => x.d - y.d)[0];
  const shown = arg.split('=')[0];
  const alias = Object.hasOwn(OTHER_TOOLS_NAMES, wanted) && own.includes(OTHER_TOOLS_NAMES[wanted]) ? OTHER_TOOLS_NAMES[wanted] : undefined;
  const others = Object.keys(COMMAND_OPTIONS).filter((c) => c !== command && COMMAND_OPTIONS[c].includes(wanted));
  const ofOthers = `${others.length > 1 ? `${others.slice(0, -1).join(', ')} and ` : ''}${others[others.length - 1]}`;
  let hint = '';
  if (best && (best.d === 0 || (best.d <= 2 && wanted.length >= 3))) hint = `; did you mean --${best.name}?`;
  // Another tool's name for one of ours that is also another command's option (convert's --outtype on merge): both.
  else if (alias) hint = `; did you mean --${alias}?${others.length ? ` (--${wanted} is an option of ${ofOthers})` : ''}`;
  else if (others.length) hint = `; it is an option of ${ofOthers}`;
  else if (command === 'inspect' || command === 'sample') hint = `; a ${command === 'inspect' ? 'PATH' : 'DIR'} that starts with "-" goes after --`;
  return usageError(`${command} has no option ${shown}${hint}`);
}

/**
 * parseArgs messages made usage errors (ours stay as they are): an unknown option in our words
 * (unknownOption), the others' first line. `command` and `args` (as typed) name what was unknown.
 */
export function parseOrExplain<T>(run: () => T, command?: string, args?: readonly string[]): T {
  try {
    return run();
  } catch (e) {
    if (e instanceof MergeError) throw e;
    const err = e as Error & { code?: string };
    const name = /'(-[^']*)'/.exec(err.message)?.[1];
    if (command && err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && name) {
      const options = args ? args.slice(0, args.includes('--') ? args.indexOf('--') : args.length) : [];
      // `-base` reaches parseArgs as the short options -b -a -s -e: name the argument as typed.
      const typed = name.startsWith('--') ? name : options.find((a) => !a.startsWith('--') && a.startsWith(name)) ?? name;
      throw unknownOption(command, typed);
    }
    throw usageError(err.message.split('\n')[0]);
  }
}

/** What each of merge's value-taking options takes (see bindOptionValues). */
const MERGE_VALUES: Readonly<Record<string, string>> = {
  base: 'a model file or folder',
  adapter: 'an adapter file or folder',
  weight: WEIGHT_VALUES,
  out: 'the output file or folder',
  dtype: 'a type name (f16, bf16, q4_k, …)',
  imatrix: 'an importance matrix file (llama-imatrix output)',
  backend: 'auto, webgpu or cpu',
  threads: THREADS_RANGE,
  'onetrainer-coft': 'on, off or a coft_eps',
};

/** --onetrainer-coft: off, on (OneTrainer's default coft_eps), or a coft_eps above 0. */
function parseOneTrainerCoft(value: string): boolean | number {
  if (value === 'on') return true;
  if (value === 'off') return false;
  const eps = /^\s*$/.test(value) ? NaN : Number(value);
  if (Number.isFinite(eps) && eps > 0) return eps;
  throw usageError(`--onetrainer-coft must be on, off or the run's coft_eps (a number above 0), not "${value}"`);
}

function parseMerge(rawArgs: string[]): MergeCommand {
  const args = bindOptionValues(rawArgs, MERGE_VALUES);
  const { tokens, positionals } = parseOrExplain(() =>
    parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      tokens: true,
      options: {
        base: { type: 'string' },
        adapter: { type: 'string', multiple: true },
        weight: { type: 'string', multiple: true },
        out: { type: 'string' },
        dtype: { type: 'string' },
        'dtype-merged-only': { type: 'boolean' },
        imatrix: { type: 'string' },
        backend: { type: 'string' },
        threads: { type: 'string' },
        'dry-run': { type: 'boolean' },
        overwrite: { type: 'boolean' },
        'onetrainer-coft': { type: 'string' },
      },
    }), 'merge', args,
  );
  if (positionals.length > 0) throw unexpectedArgument(positionals[0], '--base MODEL --adapter ADAPTER --out OUTPUT');
  let base: string | undefined;
  let out: string | undefined;
  let dtype: string | undefined;
  let dtypeMergedOnly = false;
  let imatrix: string | undefined;
  let backend: BackendChoice | undefined;
  let threads: number | undefined;
  let dryRun = false;
  let overwrite = false;
  let oneTrainerCoft: boolean | number | undefined;
  const adapters: AdapterArg[] = [];
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const value = token.value ?? '';
    switch (token.name) {
      case 'base':
        if (base !== undefined) throw usageError('--base given twice');
        base = nonEmptyPath('base', value, 'a model file or folder');
        break;
      case 'out':
        if (out !== undefined) throw usageError('--out given twice');
        out = value;
        break;
      case 'adapter':
        adapters.push({ path: nonEmptyPath('adapter', value, 'an adapter file or folder'), weight: 1, weighted: false });
        break;
      case 'weight':
        weighLastAdapter(adapters, value);
        break;
      case 'dtype':
        if (dtype !== undefined) throw usageError('--dtype given twice');
        if (!/^[a-z0-9_]+$/i.test(value)) throw usageError(`--dtype "${value}" is not a type name (f16, bf16, q4_k, …)`);
        dtype = value;
        break;
      case 'dtype-merged-only':
        dtypeMergedOnly = true;
        break;
      case 'imatrix':
        if (imatrix !== undefined) throw usageError('--imatrix given twice');
        imatrix = nonEmptyPath('imatrix', value, 'an importance matrix file');
        break;
      case 'backend':
        if (backend !== undefined) throw usageError('--backend given twice');
        backend = parseBackend(value);
        break;
      case 'threads':
        if (threads !== undefined) throw usageError('--threads given twice');
        threads = parseThreads(value);
        break;
      case 'dry-run':
        dryRun = true;
        break;
      case 'overwrite':
        overwrite = true;
        break;
      case 'onetrainer-coft':
        if (oneTrainerCoft !== undefined) throw usageError('--onetrainer-coft given twice');
        oneTrainerCoft = parseOneTrainerCoft(value);
        break;
    }
  }
  if (!base) throw usageError('missing --base');
  if (adapters.length === 0) throw usageError('missing --adapter');
  if (!out && !dryRun) throw usageError('missing --out');
  if (dtypeMergedOnly && dtype === undefined) throw usageError('--dtype-merged-only needs a --dtype');
  return {
    command: 'merge',
    base,
    adapters: adapters.map(({ path, weight }) => ({ path, weight })),
    out: out ?? '',
    dtype,
    dtypeMergedOnly,
    ...(imatrix !== undefined ? { imatrix } : {}),
    backend: backend ?? 'auto',
    ...(threads !== undefined ? { threads } : {}),
    dryRun,
    overwrite,
    ...(oneTrainerCoft !== undefined ? { oneTrainerCoft } : {}),
  };
}

function parseInspect(args: string[]): InspectCommand {
  const { positionals } = parseOrExplain(() => parseArgs({ args, allowPositionals: true, strict: true }), 'inspect', args);
  if (positionals.length !== 1) throw usageError('inspect takes exactly one PATH');
  if (positionals[0] === '') throw usageError('inspect\'s PATH is empty; name a model or adapter file or folder');
  return { command: 'inspect', path: positionals[0] };
}

function parseSample(args: string[]): SampleCommand {
  const { positionals, values } = parseOrExplain(() =>
    parseArgs({ args: bindOptionValues(args, { backend: MERGE_VALUES.backend }), allowPositionals: true, strict: true, options: { backend: { type: 'string', multiple: true } } }), 'sample', args,
  );
  if (positionals.length > 1) throw usageError('sample takes at most one DIR');
  // An empty DIR was the current folder: the sample's base/ and adapter/ replaced the user's own.
  if (positionals[0] === '') throw usageError('sample\'s DIR is empty; name a new or empty folder (or none, for ./loramerge-sample)');
  if ((values.backend?.length ?? 0) > 1) throw usageError('--backend given twice');
  const backend = values.backend?.length ? parseBackend(values.backend[0]) : 'auto';
  return { command: 'sample', dir: positionals[0] ?? 'loramerge-sample', backend };
}
