/** Command lines of combine, resize and extract (the contract in the README), parsed strictly. */
import { parseArgs } from 'node:util';
import type { MajoritySign } from '../algebra/merge-rules.js';
import type { RankRule } from '../algebra/rank-rules.js';
import type { CombineMethod } from '../adapter-ops/combine.js';
import { GGUF_OUT_TYPES, type GgufOutType } from '../adapter-ops/convert.js';
import { bindOptionValues, nonEmptyPath, outOfRange, parseBackend, parseOrExplain, parseThreads, plainDecimal, unexpectedArgument, usageError, weighLastAdapter, wholeNumber, type AdapterArg, type BackendChoice } from './args.js';
import { THREADS_RANGE } from './threads-option.js';

export interface CombineCommand {
  command: 'combine';
  adapters: { path: string; weight: number }[];
  method: CombineMethod;
  rank?: number;
  density?: number;
  /** As given (undefined: the default, total), so that one the method ignores can be reported. */
  majoritySign?: MajoritySign;
  /** As given (undefined: the default, 0). */
  seed?: number;
  clampQuantile?: number;
  /** --base: the GGUF model a `.gguf` --out of PEFT adapters is for (its tensor names and row order). */
  base?: string;
  out: string;
  backend: BackendChoice;
  /** --threads: the CPU algebra's threads, the calling one included (default: one per core, at most 8), as merge's; absent where not given. */
  threads?: number;
  overwrite: boolean;
}

export interface ResizeCommand {
  command: 'resize';
  adapter: string;
  rule: RankRule;
  /** --base: the GGUF model a `.gguf` --out of a PEFT adapter is for (its tensor names and row order). */
  base?: string;
  out: string;
  backend: BackendChoice;
  /** --threads: the CPU algebra's threads, the calling one included (default: one per core, at most 8), as merge's; absent where not given. */
  threads?: number;
  overwrite: boolean;
}

/** `loramerge convert`: a PEFT adapter as a llama.cpp LoRA GGUF for the GGUF model --base, factors as they are. */
export interface ConvertCommand {
  command: 'convert';
  adapter: string;
  /** The GGUF model the LoRA is for (its tensor names and row order). */
  base: string;
  out: string;
  /** --outtype: the factors' type, as convert_lora_to_gguf.py's (default f32). */
  outtype: GgufOutType;
  /** No products run: the CPU, on the calling thread. */
  backend: 'cpu';
  threads: 1;
  overwrite: boolean;
}

export interface ExtractCommand {
  command: 'extract';
  base: string;
  tuned: string;
  rank?: number;
  energy?: number;
  out: string;
  backend: BackendChoice;
  /** --threads: the CPU algebra's threads, the calling one included (default: one per core, at most 8), as merge's; absent where not given. */
  threads?: number;
  overwrite: boolean;
}

export const ADAPTER_USAGE = `  loramerge combine --adapter PATH [--weight W] [--adapter PATH [--weight W] ...]
                    --method cat|svd|ties|dare_linear|dare_ties|magnitude_prune [--rank K] [--density D]
                    [--majority-sign total|frequency] [--seed N] [--clamp-quantile Q] [--base MODEL.gguf] --out PATH
  loramerge resize  --adapter PATH (--rank K | (--sv-ratio X | --sv-fro X | --sv-cumulative X) [--rank MAX])
                    [--base MODEL.gguf] --out PATH
  loramerge extract --base PATH --tuned PATH (--rank K | --energy X) --out PATH
  loramerge convert --adapter PATH --base MODEL.gguf --out PATH.gguf [--outtype f32|f16|bf16|q8_0|auto] [--overwrite]
    (combine, resize, extract also take [--backend auto|webgpu|cpu] [--threads N] [--overwrite];
     an --out ending in .safetensors is a kohya file, in .gguf a llama.cpp LoRA GGUF (of llama.cpp
     LoRAs, or of PEFT adapters with --base, the GGUF model it is for), any other a PEFT folder)`;

const METHODS: readonly CombineMethod[] = ['cat', 'svd', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune'];

/**
 * What a PEFT add_weighted_adapter combination_type not offered here maps to: `linear` (and its
 * kin) averages A and B separately, which adds cross terms; `*_svd` are the rules this command
 * already ends with an SVD.
 */
function methodHint(value: string): string {
  const name = value.toLowerCase().replace(/-/g, '_');
  if (name === 'linear' || name === 'weighted' || name === 'concat') {
    return `; PEFT's ${name === 'concat' ? 'concatenation is cat' : `${name} combines A and B separately (with cross terms) and is not offered: cat keeps the weighted sum exactly, svd brings it to a rank`}`;
  }
  const svd = /^(ties|dare_linear|dare_ties|magnitude_prune)_svd$/.exec(name);
  if (svd) return `; PEFT's ${name} is --method ${svd[1]} here (every rule ends with the SVD to --rank)`;
  return '';
}

/**
 * What --weight takes, for its refusals (merge's too: args.ts imports this module, so a constant of
 * its own would not be set yet when this one's tables are built).
 */
export const WEIGHT_VALUES = 'a finite decimal number, negative to subtract';

/** The numbers these commands take, each with its allowed range as every refusal of it says it. */
const RANGES = {
  rank: 'a positive integer',
  seed: `an integer from 0 to ${Number.MAX_SAFE_INTEGER}`,
  fraction: 'a number in (0, 1]',
  svRatio: 'a number above 0',
} as const;

/** What each value-taking option takes (see bindOptionValues). */
const VALUES: Readonly<Record<string, string>> = {
  adapter: 'an adapter file or folder',
  weight: WEIGHT_VALUES,
  method: METHODS.join(', '),
  rank: RANGES.rank,
  density: RANGES.fraction,
  'majority-sign': 'total or frequency',
  seed: RANGES.seed,
  'clamp-quantile': RANGES.fraction,
  'sv-ratio': RANGES.svRatio,
  'sv-fro': RANGES.fraction,
  'sv-cumulative': RANGES.fraction,
  base: 'a model file or folder',
  tuned: 'a model file or folder',
  energy: RANGES.fraction,
  out: 'the output file or folder',
  backend: 'auto, webgpu or cpu',
  threads: THREADS_RANGE,
  outtype: 'f32, f16, bf16, q8_0 or auto',
};

const positiveInteger = (name: string, value: string) => wholeNumber(name, value, 1, RANGES.rank);

function fraction(name: string, value: string): number {
  const n = plainDecimal(value);
  if (n === undefined || n <= 0 || n > 1) throw outOfRange(name, RANGES.fraction, value);
  return n;
}

// Listed as multiple so that a repeated option is refused rather than the last one silently taken.
const common = {
  out: { type: 'string', multiple: true },
  backend: { type: 'string', multiple: true },
  threads: { type: 'string', multiple: true },
  overwrite: { type: 'boolean' },
} as const;

function once<T>(current: T | undefined, name: string, value: T): T {
  if (current !== undefined) throw usageError(`--${name} given twice`);
  return value;
}

export function parseCombine(rawArgs: string[]): CombineCommand {
  const { tokens, positionals } = parseOrExplain(() => parseArgs({
    args: bindOptionValues(rawArgs, VALUES), allowPositionals: true, strict: true, tokens: true,
    options: {
      ...common,
      adapter: { type: 'string', multiple: true },
      weight: { type: 'string', multiple: true },
      method: { type: 'string' },
      rank: { type: 'string' },
      density: { type: 'string' },
      'majority-sign': { type: 'string' },
      seed: { type: 'string' },
      'clamp-quantile': { type: 'string' },
      base: { type: 'string', multiple: true },
    },
  }), 'combine', rawArgs);
  if (positionals.length > 0) throw unexpectedArgument(positionals[0], '--adapter ADAPTER --adapter ADAPTER --out OUTPUT');
  const adapters: AdapterArg[] = [];
  let method: CombineMethod | undefined, rank: number | undefined, density: number | undefined, majority: MajoritySign | undefined;
  let threads: number | undefined;
  let seed: number | undefined, clamp: number | undefined, out: string | undefined, base: string | undefined;
  let backend: BackendChoice | undefined, overwrite = false;
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const value = token.value ?? '';
    switch (token.name) {
      case 'adapter': adapters.push({ path: nonEmptyPath('adapter', value, 'an adapter file or folder'), weight: 1, weighted: false }); break;
      case 'weight':
        weighLastAdapter(adapters, value);
        break;
      case 'method':
        if (!METHODS.includes(value as CombineMethod)) throw usageError(`--method must be one of ${METHODS.join(', ')}, not "${value}"${methodHint(value)}`);
        method = once(method, 'method', value as CombineMethod);
        break;
      case 'rank': rank = once(rank, 'rank', positiveInteger('rank', value)); break;
      case 'density': density = once(density, 'density', fraction('density', value)); break;
      case 'majority-sign':
        if (value !== 'total' && value !== 'frequency') throw usageError(`--majority-sign must be total or frequency, not "${value}"`);
        majority = once(majority, 'majority-sign', value);
        break;
      case 'seed': seed = once(seed, 'seed', wholeNumber('seed', value, 0, RANGES.seed)); break;
      case 'clamp-quantile': clamp = once(clamp, 'clamp-quantile', fraction('clamp-quantile', value)); break;
      case 'out': out = once(out, 'out', value); break;
      case 'base': base = once(base, 'base', nonEmptyPath('base', value, VALUES.base)); break;
      case 'backend': backend = once(backend, 'backend', parseBackend(value)); break;
      case 'threads':
        if (threads !== undefined) throw usageError('--threads given twice');
        threads = parseThreads(value);
        break;
      case 'overwrite': overwrite = true; break;
    }
  }
  if (adapters.length === 0) throw usageError('missing --adapter');
  if (!method) throw usageError('missing --method (cat, svd, ties, dare_linear, dare_ties or magnitude_prune)');
  if (!out) throw usageError('missing --out');
  if (density === undefined && (method === 'ties' || method.startsWith('dare') || method === 'magnitude_prune')) {
    throw usageError(`--method ${method} needs --density (the fraction of each update kept, 0 < D ≤ 1)`);
  }
  return {
    command: 'combine', adapters: adapters.map(({ path, weight }) => ({ path, weight })), method, rank, density,
    majoritySign: majority, seed, clampQuantile: clamp, ...(base !== undefined ? { base } : {}), out, backend: backend ?? 'auto', ...(threads !== undefined ? { threads } : {}), overwrite,
  };
}

export function parseResize(args: string[]): ResizeCommand {
  const { values, positionals } = parseOrExplain(() => parseArgs({
    args: bindOptionValues(args, VALUES), allowPositionals: true, strict: true,
    options: {
      ...common,
      adapter: { type: 'string', multiple: true },
      rank: { type: 'string', multiple: true },
      'sv-ratio': { type: 'string', multiple: true },
      'sv-fro': { type: 'string', multiple: true },
      'sv-cumulative': { type: 'string', multiple: true },
      base: { type: 'string', multiple: true },
    },
  }), 'resize', args);
  if (positionals.length > 0) throw unexpectedArgument(positionals[0], '--adapter ADAPTER --out OUTPUT');
  const adapter = nonEmptyPath('adapter', single(values.adapter, 'adapter'), 'an adapter file or folder');
  const ranks = (values.rank ?? []).map((v) => positiveInteger('rank', v));
  const rules: Extract<RankRule, { value: number }>[] = [];
  for (const v of values['sv-ratio'] ?? []) {
    const x = plainDecimal(v);
    if (x === undefined || x <= 0) throw outOfRange('sv-ratio', RANGES.svRatio, v);
    rules.push({ kind: 'sv_ratio', value: x });
  }
  for (const v of values['sv-fro'] ?? []) rules.push({ kind: 'sv_fro', value: fraction('sv-fro', v) });
  for (const v of values['sv-cumulative'] ?? []) rules.push({ kind: 'sv_cumulative', value: fraction('sv-cumulative', v) });
  if (ranks.length > 1 || rules.length > 1 || ranks.length + rules.length === 0) {
    throw usageError('resize takes exactly one of --rank, --sv-ratio, --sv-fro, --sv-cumulative (a --sv-* rule may add --rank, its maximum rank)');
  }
  // Beside a dynamic rule --rank is the most rank it keeps, as kohya's --new_rank is beside --dynamic_method.
  const [rule] = rules;
  const chosen: RankRule = rule === undefined ? { kind: 'rank', rank: ranks[0] } : ranks.length === 1 ? { ...rule, maxRank: ranks[0] } : rule;
  return {
    command: 'resize', adapter: adapter!, rule: chosen,
    ...(values.base ? { base: nonEmptyPath('base', single(values.base, 'base'), VALUES.base) } : {}),
    out: single(values.out, 'out')!,
    backend: values.backend ? parseBackend(single(values.backend, 'backend')) : 'auto',
    ...threadsOption(values.threads), overwrite: values.overwrite ?? false,
  };
}

export function parseConvert(args: string[]): ConvertCommand {
  const { values, positionals } = parseOrExplain(() => parseArgs({
    args: bindOptionValues(args, VALUES), allowPositionals: true, strict: true,
    options: {
      out: common.out,
      overwrite: common.overwrite,
      adapter: { type: 'string', multiple: true },
      base: { type: 'string', multiple: true },
      outtype: { type: 'string', multiple: true },
    },
  }), 'convert', args);
  if (positionals.length > 0) throw unexpectedArgument(positionals[0], '--adapter ADAPTER --base MODEL.gguf --out OUTPUT.gguf');
  const out = single(values.out, 'out');
  if (!/\.gguf$/i.test(out)) throw usageError(`--out ${out}: convert writes a llama.cpp LoRA GGUF; give --out a name ending in .gguf`);
  return {
    command: 'convert',
    adapter: nonEmptyPath('adapter', single(values.adapter, 'adapter'), VALUES.adapter),
    base: nonEmptyPath('base', single(values.base, 'base'), VALUES.base),
    out, outtype: values.outtype ? parseOutType(single(values.outtype, 'outtype')) : 'f32', backend: 'cpu', threads: 1, overwrite: values.overwrite ?? false,
  };
}

function parseOutType(value: string): GgufOutType {
  const found = GGUF_OUT_TYPES.find((t) => t === value);
  if (found === undefined) throw usageError(`--outtype must be f32, f16, bf16, q8_0 or auto (convert_lora_to_gguf.py's), not "${value}"`);
  return found;
}

export function parseExtract(args: string[]): ExtractCommand {
  const { values, positionals } = parseOrExplain(() => parseArgs({
    args: bindOptionValues(args, VALUES), allowPositionals: true, strict: true,
    options: {
      ...common,
      base: { type: 'string', multiple: true },
      tuned: { type: 'string', multiple: true },
      rank: { type: 'string', multiple: true },
      energy: { type: 'string', multiple: true },
    },
  }), 'extract', args);
  if (positionals.length > 0) throw unexpectedArgument(positionals[0], '--base MODEL --tuned MODEL --out OUTPUT');
  const ranks = values.rank ?? [], energies = values.energy ?? [];
  if (ranks.length + energies.length !== 1) throw usageError('extract takes exactly one of --rank and --energy');
  return {
    command: 'extract',
    base: nonEmptyPath('base', single(values.base, 'base'), 'a model file or folder'),
    tuned: nonEmptyPath('tuned', single(values.tuned, 'tuned'), 'a model file or folder'),
    rank: ranks.length ? positiveInteger('rank', ranks[0]) : undefined,
    energy: energies.length ? fraction('energy', energies[0]) : undefined,
    out: single(values.out, 'out')!,
    backend: values.backend ? parseBackend(single(values.backend, 'backend')) : 'auto',
    ...threadsOption(values.threads), overwrite: values.overwrite ?? false,
  };
}

/** `threads` where --threads was given, parsed as merge's; absent where it was not, as in merge's command. */
function threadsOption(values: string[] | undefined): { threads?: number } {
  return values === undefined ? {} : { threads: parseThreads(single(values, 'threads')) };
}

function single(value: string | string[] | undefined, name: string): string {
  const list = value === undefined ? [] : Array.isArray(value) ? value : [value];
  if (list.length === 0) throw usageError(`missing --${name}`);
  if (list.length > 1) throw usageError(`--${name} given twice`);
  return list[0];
}
