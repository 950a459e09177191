/**
 * The command line itself, fuzzed: argument lists generated from the CLI's grammar (every command,
 * every option in both `--opt value` and `--opt=value` forms, repeated and missing options and
 * values, options of another command, near-miss spellings, bad numbers, unknown types and
 * backends, stray arguments, `--`, `-`, `-x`, `--help`) over real paths (a small base, a tuned copy
 * and two PEFT adapters in a folder made for each case), paths that do not exist, a folder where a
 * file is meant, an input as --out, an --out in a folder that does not exist; convert's --outtype
 * (each value, values it does not take, given twice) over adapters of f32, f16, bf16 and mixed
 * factor types and one whose factors are whole Q8_0 rows, each converted tensor's type and bytes
 * checked against plain f16/bf16 rounding, a plain ggml Q8_0 quantizer and auto's rule. Each case knows what
 * the CLI documents for it (README, "exit code"), worked out here from the faults the case holds:
 *   - a usage fault found while parsing: exit 2 and stderr exactly one line, `error: … (see
 *     loramerge --help)`, naming the option (when the case holds one fault);
 *   - `--help` / `-h` before any `--`: exit 0 and the usage on stdout;
 *   - an input that is missing or not what it should be: exit 1; an --out that cannot be used or a
 *     --dtype the base's format lacks: exit 2 (after the inputs are read);
 *   - none: exit 0, and the output re-opened with the library's readers; a merge's values against
 *     W + Σ w·α/r·(B·A) worked out here in float64 (a weight past f32/f16 range: exit 1);
 * and for every case: one `error:` line at most, last, after only the CLI's own report lines; no
 * stack trace, `[object Object]`, `undefined` or `NaN` the user did not type; nothing new in the
 * case's folder after a refusal (no output, no temporary, no lock) and every input byte unchanged;
 * each case done in a few seconds. Most cases run the built front end in a worker thread (a hang is
 * stopped by ending the worker), a few as the real `loramerge` process.
 * `npm test` runs a bounded number of cases; `npm run fuzz` more (FUZZ_ARGS_RUNS,
 * FUZZ_ARGS_CLI_RUNS, FUZZ_SEED; FUZZ_PATH replays one case). Run `npm run build:lib` first when
 * calling vitest directly: the cases run the built CLI.
 */
import fc from 'fast-check';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeToF32, type FloatDType } from '../src/dtype.js';
import { openAdapter } from '../src/formats/adapter.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { openNodeByteSource } from '../src/io/node-byte-source.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { runCli, snapshot, type CliResult } from './helpers/cli.js';
import { fuzzSettings } from './helpers/cli-fuzz.js';
import { buildSafetensors, roundForDType, tempDirs, type FixtureDType } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { ggufRowOf } from './helpers/gguf-models.js';

const settings = fuzzSettings('FUZZ_ARGS_RUNS', 'FUZZ_ARGS_CLI_RUNS', { runs: 200, cliRuns: 3 });
/** convert's cases (a property of their own, so that the main one's draws for a seed stay as they were): a quarter as many. */
const CONVERT_RUNS = Math.max(1, Math.ceil(settings.runs / 4));
/** A case's own time limit (the slowest valid case takes well under a second here). */
const CASE_MS = 8000;
/** The worker is ended after this long: the case hung. */
const HANG_MS = 20_000;

// --- the files every case starts from -------------------------------------------------------

const N = 8;
const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.0.self_attn.v_proj';
/** Values on the f32 grid, so the files hold them exactly. */
const grid = (n: number, seed: number, scale = 0.5) => Float64Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 1.7 + seed) * scale));
const W: Record<string, Float64Array> = { [Q]: grid(N * N, 1), [V]: grid(N * N, 2) };
const TUNED: Record<string, Float64Array> = { [Q]: grid(N * N, 1.1), [V]: W[V] };
interface Lora { r: number; alpha: number; modules: Record<string, { A: Float64Array; B: Float64Array }> }
const LORAS: Record<string, Lora> = {
  adapter: { r: 2, alpha: 4, modules: { [Q]: { A: grid(2 * N, 3), B: grid(N * 2, 4) } } },
  adapter2: { r: 3, alpha: 3, modules: { [Q]: { A: grid(3 * N, 5), B: grid(N * 3, 6) }, [V]: { A: grid(3 * N, 7), B: grid(N * 3, 8) } } },
};

function model(values: Record<string, Float64Array>): Uint8Array {
  return buildSafetensors(Object.entries(values).map(([name, data]) => ({ name: `${name}.weight`, dtype: 'F32' as const, shape: [N, N], data })));
}

/** Heads of the GGUF model convert's LoRA is for (its q rows are permuted per head, as convert_hf_to_gguf permutes them). */
const HEADS = 2;
/** The GGUF the adapters are converted for: a one-layer llama as convert_hf_to_gguf writes one (q, v and the norm; F32). */
const GGUF_MODEL = buildGguf({
  metadata: [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: 'Tiny Llama' }],
    ['llama.block_count', { type: 'u32', value: 1 }],
    ['llama.context_length', { type: 'u32', value: 256 }],
    ['llama.embedding_length', { type: 'u32', value: N }],
    ['llama.feed_forward_length', { type: 'u32', value: 2 * N }],
    ['llama.attention.head_count', { type: 'u32', value: HEADS }],
    ['llama.attention.head_count_kv', { type: 'u32', value: HEADS }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['general.file_type', { type: 'u32', value: 0 }],
  ],
  tensors: [
    { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [N], data: tensorData('F32', new Float64Array(N).fill(1)) },
    { name: 'blk.0.attn_q.weight', type: 'F32', ne: [N, N], data: tensorData('F32', W[Q]) },
    { name: 'blk.0.attn_v.weight', type: 'F32', ne: [N, N], data: tensorData('F32', W[V]) },
  ],
});

const FILES: Record<string, Uint8Array | string> = {
  'base.safetensors': model(W),
  'tuned.safetensors': model(TUNED),
  'model.gguf': GGUF_MODEL,
  'old.safetensors': 'not written by loramerge: replaced only by a merge that succeeds',
  'old.gguf': 'not written by loramerge: replaced only by a convert that succeeds',
  'notes/readme.txt': 'a folder with something in it',
};
for (const [name, lora] of Object.entries(LORAS)) {
  FILES[`${name}/adapter_config.json`] = JSON.stringify({ peft_type: 'LORA', r: lora.r, lora_alpha: lora.alpha, target_modules: Object.keys(lora.modules).map((m) => m.split('.').pop()) });
  FILES[`${name}/adapter_model.safetensors`] = buildSafetensors(Object.entries(lora.modules).flatMap(([m, { A, B }]) => [
    { name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32' as const, shape: [lora.r, N], data: A },
    { name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32' as const, shape: [N, lora.r], data: B },
  ]));
}

// --- convert's --outtype: more adapters (factors stored f16, bf16, of mixed types) and a model wide
// enough that Q8_0 blocks (32 values along ne[0]) fit its factors -------------------------------

/** Width of the wide model and the rank of its adapter: lora_a's rows (in) and lora_b's (r) are whole Q8_0 blocks. */
const WN = 64, WR = 32, WHEADS = 4;
/**
 * A factor of the wide adapter: f32 values with a few blocks made to tell quantizers apart: halves
 * at d = 1 (round half away from zero, not to even), an all-zero block (d = 0), a block whose d is
 * below f16's smallest subnormal (stored 0, yet the values quantized by 1/d as ggml does), and
 * values halfway between f16 and between bf16 neighbours (round to even).
 */
function wideFactor(rows: number, cols: number, seed: number, special: boolean): Float64Array {
  const v = Float64Array.from({ length: rows * cols }, (_, i) => Math.fround(Math.sin(i * 0.37 + seed) * 0.3 * (1 + (i % 7))));
  if (special) {
    v.set([127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 126.5, -126.5, 63.5], 0);
    v.fill(0, 32, 64);
    for (let j = 64; j < 96; j++) v[j] = Math.fround(Math.sin(j) * 1e-6);
    v.set([1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -8), 1 + 3 * 2 ** -8, 2 ** -24 * 1.5, 2 ** -25, 65504, 65520 - 1, 6.103515625e-5 * (1 - 2 ** -12)], 96);
  }
  return v;
}
const WQ = 'model.layers.0.self_attn.q_proj', WV = 'model.layers.0.self_attn.v_proj';
/** The wide model as convert_hf_to_gguf writes one (F32). */
const WIDE_GGUF = buildGguf({
  metadata: [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: 'Wide Llama' }],
    ['llama.block_count', { type: 'u32', value: 1 }],
    ['llama.context_length', { type: 'u32', value: 256 }],
    ['llama.embedding_length', { type: 'u32', value: WN }],
    ['llama.feed_forward_length', { type: 'u32', value: 2 * WN }],
    ['llama.attention.head_count', { type: 'u32', value: WHEADS }],
    ['llama.attention.head_count_kv', { type: 'u32', value: WHEADS }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['general.file_type', { type: 'u32', value: 0 }],
  ],
  tensors: [
    { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [WN], data: tensorData('F32', new Float64Array(WN).fill(1)) },
    { name: 'blk.0.attn_q.weight', type: 'F32', ne: [WN, WN], data: tensorData('F32', grid(WN * WN, 9)) },
    { name: 'blk.0.attn_v.weight', type: 'F32', ne: [WN, WN], data: tensorData('F32', grid(WN * WN, 10)) },
  ],
});

/** An adapter for convert: each module's factors with the safetensors type they are stored in, the values those hold. */
interface ConvertLora { width: number; heads: number; base: string; r: number; alpha: number; modules: Record<string, { A: Float64Array; B: Float64Array; aType: FixtureDType; bType: FixtureDType }> }
/** A stored value: `x` rounded to `dtype` (the fixture's writer rounds it so; the reference takes the file's values). */
const stored = (x: Float64Array, dtype: FixtureDType) => x.map((v) => roundForDType(v, dtype));
const small = (name: string, aType: FixtureDType, bType: FixtureDType, vType: [FixtureDType, FixtureDType] = [aType, bType]): [string, ConvertLora] => [name, {
  width: N, heads: HEADS, base: 'model.gguf', r: 2, alpha: 2,
  modules: {
    [Q]: { A: stored(grid(2 * N, 11, 3), aType), B: stored(grid(N * 2, 12, 3), bType), aType, bType },
    [V]: { A: stored(grid(2 * N, 13, 3), vType[0]), B: stored(grid(N * 2, 14, 3), vType[1]), aType: vType[0], bType: vType[1] },
  },
}];
const CONVERT_LORAS: Record<string, ConvertLora> = {
  ...Object.fromEntries(Object.entries(LORAS).map(([name, l]) => [name, {
    width: N, heads: HEADS, base: 'model.gguf', r: l.r, alpha: l.alpha,
    modules: Object.fromEntries(Object.entries(l.modules).map(([m, f]) => [m, { ...f, aType: 'F32' as const, bType: 'F32' as const }])),
  }])),
  wide: {
    width: WN, heads: WHEADS, base: 'wide.gguf', r: WR, alpha: 16,
    modules: {
      [WQ]: { A: wideFactor(WR, WN, 1, true), B: wideFactor(WN, WR, 2, false), aType: 'F32', bType: 'F32' },
      [WV]: { A: wideFactor(WR, WN, 3, false), B: wideFactor(WN, WR, 4, true), aType: 'F32', bType: 'F32' },
    },
  },
  ...Object.fromEntries([
    small('lora-f16', 'F16', 'F16'),
    small('lora-bf16', 'BF16', 'BF16'),
    // The first pair (q's, by sorted name) of mixed types: auto refuses it.
    small('lora-mixed', 'F16', 'F32'),
    // Mixed only in the second pair: auto takes the first (f16).
    small('lora-mixed-late', 'F16', 'F16', ['BF16', 'F32']),
  ]),
};
/** The adapters convert's property draws besides `adapter` and `adapter2`. */
const MORE_CONVERT = ['wide', 'wide', 'lora-f16', 'lora-bf16', 'lora-mixed', 'lora-mixed-late'];
FILES['wide.gguf'] = WIDE_GGUF;
for (const name of new Set(MORE_CONVERT)) {
  const lora = CONVERT_LORAS[name];
  FILES[`${name}/adapter_config.json`] = JSON.stringify({ peft_type: 'LORA', r: lora.r, lora_alpha: lora.alpha, target_modules: ['q_proj', 'v_proj'] });
  FILES[`${name}/adapter_model.safetensors`] = buildSafetensors(Object.entries(lora.modules).flatMap(([m, { A, B, aType, bType }]) => [
    { name: `base_model.model.${m}.lora_A.weight`, dtype: aType, shape: [lora.r, lora.width], data: A },
    { name: `base_model.model.${m}.lora_B.weight`, dtype: bType, shape: [lora.width, lora.r], data: B },
  ]));
}

/** Folders that exist empty. */
const EMPTY_FOLDERS = ['emptydir'];

// --- the grammar ------------------------------------------------------------------------------

/** What a fault makes of the case (see the module comment); `why` must be in the error line. */
type FaultKind = 'usage' | 'help' | 'early-usage' | 'input' | 'dtype-usage' | 'late-usage' | 'late-input';
/** `ofOut`: a fault of the --out value drawn first, gone when a later fault replaces that value. */
interface Fault { kind: FaultKind; why: RegExp; ofOut?: true }

/** One option as it will be typed. */
interface Opt { name: string; value?: string; eq: boolean }

interface Built {
  command: string;
  /** The command as typed, where a fault misspelt it (the other faults still follow `command`'s grammar). */
  typed?: string;
  opts: Opt[];
  positionals: string[];
  /** Arguments added after everything else (`--` and what follows it). */
  tail: string[];
  faults: Fault[];
  /** Where a successful run writes (relative to the case folder), and as what. */
  output?: { path: string; kind: 'merged' | 'adapter-file' | 'adapter-folder' | 'sample' | 'lora-gguf' };
  /** convert's adapter and --outtype, for the factors its GGUF must hold. */
  convert?: { adapter: string; outtype: string };
  /** Merge adapters and weights, for the float64 reference. */
  merge?: { adapters: { name: string; weight: number }[]; dtype?: string; mergedOnly: boolean; dryRun: boolean };
}

const VALID_WEIGHTS = ['1', '0.5', '-1', '2e-1', '+3', '.5', '1.', '-0', '0', '1e-400', '-2.5e3', '1e7', '1e30', '1e308'];
const BAD_WEIGHTS = ['abc', 'NaN', 'Infinity', '-Infinity', '1e400', '-1e400', '0x10', '', ' 1', '1 ', '１', '٣', '1,5', '1e', 'e5', '1_000', '∞', '0b1', '--1'];
const VALID_DTYPES = ['f32', 'f16', 'bf16', 'fp32', 'fp16', 'float32', 'float16', 'bfloat16', 'F16', 'BF16'];
/** Not type names at all: refused while parsing. */
const MALFORMED_DTYPES = ['f16 ', 'f-16', '', 'ƒ16', 'f16;x', 'f16\n'];
/** Type names safetensors has no such type for: refused once the base is open. */
const FOREIGN_DTYPES = ['f64', 'int8', 'q4_k', 'q8_0', 'FLOAT99', 'f8', 'double', 'e4m2'];
const BAD_BACKENDS = ['gpu', 'CPU', '', 'cuda', 'web-gpu', 'auto ', 'ｃｐｕ'];
const BAD_THREADS = ['0', '-1', '1025', '1.5', '1e2', 'abc', '', '２', '0x4', ' 4', '99999999999999999999', 'NaN'];
const BAD_RANKS = ['0', '-3', '1.0', '1e3', '', 'abc', '99999999999999999999', '٢'];
const BAD_FRACTIONS = ['0', '1.5', '-0.5', '1e400', 'NaN', '', '0x1', '1e-400', 'Infinity'];
const BAD_SEEDS = ['-1', '1.5', '9007199254740992', '', '1e3', 'x'];
/** convert's --outtype values (convert_lora_to_gguf.py's). */
const OUTTYPES = ['f32', 'f16', 'bf16', 'q8_0', 'auto'];
/** Values it does not take: other spellings, merge's names, other GGUF types, case. */
const BAD_OUTTYPES = ['F16', 'fp16', 'float16', 'q8', 'Q8_0', 'q4_0', 'f64', '', 'auto ', 'tq1_0', 'bf-16', 'q8_0,f16'];
const METHODS = ['cat', 'svd', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune'];
/** The commands the main property draws (convert has a property of its own: see CONVERT_RUNS). */
const COMMANDS = ['merge', 'combine', 'resize', 'extract', 'inspect', 'sample'];
/** Each command's options, from `loramerge --help`. */
const OPTIONS: Record<string, string[]> = {
  merge: ['base', 'adapter', 'weight', 'out', 'dtype', 'dtype-merged-only', 'imatrix', 'backend', 'threads', 'dry-run', 'overwrite', 'onetrainer-coft'],
  combine: ['adapter', 'weight', 'method', 'rank', 'density', 'majority-sign', 'seed', 'clamp-quantile', 'base', 'out', 'backend', 'threads', 'overwrite'],
  resize: ['adapter', 'rank', 'sv-ratio', 'sv-fro', 'sv-cumulative', 'base', 'out', 'backend', 'threads', 'overwrite'],
  extract: ['base', 'tuned', 'rank', 'energy', 'out', 'backend', 'threads', 'overwrite'],
  inspect: [],
  sample: ['backend'],
  convert: ['adapter', 'base', 'out', 'outtype', 'overwrite'],
};
const BOOLEANS = new Set(['dtype-merged-only', 'dry-run', 'overwrite']);
const ALL_OPTIONS = [...new Set(Object.values(OPTIONS).flat())];

/** The random choices of one case; `build` turns them into a command line and its faults. */
interface Recipe {
  command: string;
  picks: number[];
  faults: { which: number; pick: number }[];
  eq: boolean[];
  absolute: boolean[];
  shuffle: number;
}

const recipe: fc.Arbitrary<Recipe> = fc.record({
  // sample takes a second a case: rarely.
  command: fc.constantFrom(...COMMANDS.filter((c) => c !== 'sample'), 'merge', 'merge', 'merge', 'merge', 'combine', 'resize', 'extract', 'inspect', 'sample'),
  picks: fc.array(fc.nat(1000), { minLength: 16, maxLength: 16 }),
  // Mostly one fault: each then has its own expected message; some cases none, some two.
  faults: fc.oneof(
    { arbitrary: fc.constant<{ which: number; pick: number }[]>([]), weight: 3 },
    { arbitrary: fc.array(fc.record({ which: fc.nat(1000), pick: fc.nat(1000) }), { minLength: 1, maxLength: 1 }), weight: 6 },
    { arbitrary: fc.array(fc.record({ which: fc.nat(1000), pick: fc.nat(1000) }), { minLength: 2, maxLength: 2 }), weight: 1 },
  ),
  eq: fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
  absolute: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
  shuffle: fc.nat(1000),
});

const pick = <T>(list: readonly T[], n: number): T => list[n % list.length];
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A valid command line for `r.command`, then the faults of `r.faults` applied to it. */
function build(r: Recipe): Built {
  const p = r.picks;
  let eqAt = 0;
  const opt = (name: string, value?: string): Opt => ({ name, value, eq: value !== undefined && r.eq[eqAt++ % r.eq.length] });
  const b: Built = { command: r.command, opts: [], positionals: [], tail: [], faults: [] };
  const outFile = pick(['out.safetensors', './sub.safetensors', 'old.safetensors', 'newdir/', 'emptydir/', '-', 'out ü ✓.safetensors', 'new\nline.safetensors'], p[0]);
  switch (r.command) {
    case 'merge': {
      const adapters = p[1] % 4 === 0 ? ['adapter', 'adapter2'] : p[1] % 4 === 1 ? ['adapter', 'adapter'] : [pick(['adapter', 'adapter2'], p[2])];
      b.opts.push(opt('base', 'base.safetensors'));
      const merge: NonNullable<Built['merge']> = { adapters: [], mergedOnly: false, dryRun: p[3] % 6 === 0 };
      adapters.forEach((a, i) => {
        b.opts.push(opt('adapter', a));
        const weighted = p[4 + i] % 3 !== 0;
        const w = weighted ? pick(VALID_WEIGHTS, p[6 + i]) : '1';
        if (weighted) b.opts.push(opt('weight', w));
        merge.adapters.push({ name: a, weight: Number(w) });
      });
      if (p[8] % 3 === 0) {
        merge.dtype = pick(VALID_DTYPES, p[9]);
        b.opts.push(opt('dtype', merge.dtype));
        if (p[10] % 3 === 0) {
          merge.mergedOnly = true;
          b.opts.push(opt('dtype-merged-only'));
        }
      }
      b.opts.push(opt('backend', 'cpu'));
      if (p[11] % 4 === 0) b.opts.push(opt('threads', pick(['1', '2', '3', '01'], p[12])));
      if (p[13] % 5 === 0) b.opts.push(opt('overwrite'));
      if (merge.dryRun) {
        b.opts.push(opt('dry-run'));
        if (p[14] % 2) b.opts.push(opt('out', outFile));
      } else {
        b.opts.push(opt('out', outFile));
        b.output = { path: outFile.endsWith('/') ? `${outFile}base.safetensors` : outFile, kind: 'merged' };
      }
      b.merge = merge;
      break;
    }
    case 'combine': {
      const method = pick(METHODS, p[1]);
      const adapters = p[2] % 2 ? ['adapter', 'adapter2'] : ['adapter'];
      for (const a of adapters) {
        b.opts.push(opt('adapter', a));
        if (p[3] % 2) b.opts.push(opt('weight', pick(['1', '0.5', '-1', '2'], p[4])));
      }
      b.opts.push(opt('method', method));
      if (method === 'svd' || p[5] % 3 === 0) b.opts.push(opt('rank', pick(['1', '2', '3'], p[6])));
      if (['ties', 'dare_linear', 'dare_ties', 'magnitude_prune'].includes(method) || p[7] % 4 === 0) b.opts.push(opt('density', pick(['0.5', '1', '0.25'], p[8])));
      if (p[9] % 4 === 0) b.opts.push(opt('majority-sign', pick(['total', 'frequency'], p[10])));
      if (p[11] % 4 === 0) b.opts.push(opt('seed', pick(['0', '42', '9007199254740991'], p[12])));
      if (p[13] % 5 === 0) b.opts.push(opt('clamp-quantile', pick(['0.99', '1'], p[14])));
      break;
    }
    case 'resize': {
      b.opts.push(opt('adapter', pick(['adapter', 'adapter2'], p[1])));
      const rule = pick(['rank', 'sv-ratio', 'sv-fro', 'sv-cumulative'], p[2]);
      b.opts.push(opt(rule, rule === 'rank' ? pick(['1', '2', '5'], p[3]) : rule === 'sv-ratio' ? pick(['2', '1e300', '0.5'], p[3]) : pick(['0.9', '1', '0.5'], p[3])));
      break;
    }
    case 'extract': {
      b.opts.push(opt('base', 'base.safetensors'), opt('tuned', 'tuned.safetensors'));
      b.opts.push(p[1] % 2 ? opt('rank', pick(['1', '4', '100'], p[2])) : opt('energy', pick(['0.9', '1', '0.5'], p[2])));
      break;
    }
    case 'inspect':
      b.positionals.push(pick(['base.safetensors', 'adapter', 'adapter2', 'tuned.safetensors', 'adapter/adapter_model.safetensors'], p[1]));
      // A PEFT file without the config beside it is refused (its r and lora_alpha are there).
      if (b.positionals[0].includes('/')) b.faults.push({ kind: 'input', why: /adapter_model\.safetensors: looks like a PEFT adapter but adapter_config\.json is missing/ });
      break;
    case 'convert': {
      // Half the cases one of the adapters made for --outtype (the wide one for Q8_0 blocks, f16,
      // bf16 and mixed-type factors for auto), from picks the other draws leave alone.
      const a = p[2] % 2 ? pick(['adapter', 'adapter2'], p[1]) : pick(MORE_CONVERT, p[5]);
      const lora = CONVERT_LORAS[a];
      b.opts.push(opt('adapter', a), opt('base', lora.base));
      const out = pick(['lora.gguf', './sub.gguf', 'old.gguf', 'LoRA ü ✓.GGUF', 'new\nline.gguf', '-.gguf', 'newdir/lora.gguf'], p[15]);
      if (out.startsWith('newdir/')) b.faults.push({ kind: 'early-usage', why: /newdir.*does not exist; create it or choose another --out/, ofOut: true });
      else b.output = { path: out, kind: 'lora-gguf' };
      b.opts.push(opt('out', out));
      if (p[14] % 5 === 0) b.opts.push(opt('overwrite'));
      // --outtype: left out (f32), one of its values, a value it does not take, or given twice.
      const how = p[3] % 8;
      let outtype = 'f32';
      if (how >= 2 && how <= 5) {
        // (the wide adapter, the one whose factors are whole Q8_0 rows, q8_0 more often)
        outtype = pick(a === 'wide' ? ['q8_0', ...OUTTYPES] : OUTTYPES, p[4]);
        b.opts.push(opt('outtype', outtype));
      } else if (how === 6) {
        const bad = pick(BAD_OUTTYPES, p[4]);
        b.opts.push(opt('outtype', bad));
        b.faults.push({ kind: 'usage', why: new RegExp(`--outtype must be f32, f16, bf16, q8_0 or auto \\(convert_lora_to_gguf\\.py's\\), not "${escape(bad)}"`) });
      } else if (how === 7) {
        b.opts.push(opt('outtype', pick(OUTTYPES, p[4])), opt('outtype', pick(OUTTYPES, p[4] >> 3)));
        b.faults.push({ kind: 'usage', why: /--outtype given twice/ });
      }
      // auto takes the first pair's type (sorted names: q's), and refuses a first pair of mixed types.
      const firstPair = lora.modules[Object.keys(lora.modules).sort()[0]];
      if (outtype === 'auto' && firstPair.aType !== firstPair.bType) {
        b.faults.push({ kind: 'late-input', why: new RegExp(`${escape(a)}\\S*: --outtype auto takes the type of the first module's factors, and module "[^"]*${escape(Object.keys(lora.modules).sort()[0])}" has factors of F16 and F32 \\(convert_lora_to_gguf\\.py stops on it\\): give --outtype f32, f16, bf16 or q8_0$`) });
      }
      b.convert = { adapter: a, outtype };
      break;
    }
    case 'sample':
      b.positionals.push('smp');
      b.opts.push(opt('backend', 'cpu'));
      b.output = { path: 'smp', kind: 'sample' };
      break;
  }
  if (['combine', 'resize', 'extract'].includes(r.command)) {
    const out = pick(['o.safetensors', 'o-peft', 'emptydir', 'old.safetensors', 'newdir/o.safetensors', '-', 'ü peft', 'peft\nout'], p[15]);
    if (out.startsWith('newdir/')) b.faults.push({ kind: 'early-usage', why: /newdir.*does not exist; create it or choose another --out/, ofOut: true });
    else b.output = { path: out, kind: out.endsWith('.safetensors') ? 'adapter-file' : 'adapter-folder' };
    b.opts.push(opt('backend', 'cpu'));
    b.opts.push(opt('out', out));
    if (p[14] % 5 === 0) b.opts.push(opt('overwrite'));
    // As merge's; drawn from what is left of the picks already used, so that earlier seeds' cases keep their other draws.
    if (Math.floor(p[14] / 5) % 4 === 0) b.opts.push(opt('threads', pick(['1', '2', '3', '01'], p[15] >> 3)));
  }
  // Options in another order (an --adapter keeps the --weight after it, adapters their order),
  // before the faults, which may depend on where they put things.
  const groups: Opt[][] = [];
  for (const o of b.opts) {
    if (o.name === 'weight' && groups.length && groups[groups.length - 1][0].name === 'adapter' && groups[groups.length - 1].length === 1) groups[groups.length - 1].push(o);
    else groups.push([o]);
  }
  const rotate = r.shuffle % Math.max(1, groups.length);
  const adapterOrder = groups.filter((g) => g[0].name === 'adapter');
  const others = groups.filter((g) => g[0].name !== 'adapter');
  const mixed = [...others.slice(rotate), ...others.slice(0, rotate)];
  // Adapters stay in their order (the reference applies them in that order, and a fault may need it).
  mixed.splice(r.shuffle % (mixed.length + 1), 0, ...adapterOrder);
  b.opts = mixed.flat();
  for (const f of r.faults) applyFault(b, f.which, f.pick, opt);
  return b;
}

/** A file's path with a trailing slash: a file used as a folder, named as such (exit 1, as a missing input). */
const UNDER_A_FILE = /base\.safetensors\/: a part of the path is not a folder while reading its status \(ENOTDIR\); check the input path/;

/** One fault of the catalogue, chosen by `which`, applied to the built command line. */
function applyFault(b: Built, which: number, n: number, opt: (name: string, value?: string) => Opt): void {
  const usage = (why: RegExp) => b.faults.push({ kind: 'usage', why });
  const own = OPTIONS[b.command];
  const valued = own.filter((o) => !BOOLEANS.has(o));
  const takesPaths = !['inspect', 'sample'].includes(b.command);
  const faults: (() => void)[] = [
    // An option near-missed: case, underscore, plural, a letter dropped, one dash.
    () => {
      const o = own.length ? pick(own, n) : 'base';
      const typo = pick([`--${o.toUpperCase()}`, `--${o.replace('-', '_')}s`, `--${o.slice(0, -1)}`, `-${o}`], n >> 2);
      b.tail.unshift(typo);
      // The option meant is named where the typo is close enough to tell (not `--ou`).
      const norm = typo.replace(/^-+/, '').toLowerCase().replace(/_/g, '-');
      const hinted = own.length && (norm === o || norm.length >= 3);
      usage(new RegExp(`${b.command} has no option ${escape(typo)}${hinted ? `; did you mean --${o}\\?` : ''}`));
    },
    // An option of another command.
    () => {
      const foreign = ALL_OPTIONS.filter((o) => !own.includes(o));
      const o = pick(foreign, n);
      b.opts.push(BOOLEANS.has(o) ? opt(o) : opt(o, 'x'));
      // Another tool's name for this command's option (convert's --outtype, the --dtype of merge and extract) is offered first.
      const alias = o === 'outtype' && own.includes('dtype');
      usage(new RegExp(`${b.command} has no option --${o}; ${alias ? `did you mean --dtype\\? \\(--${o} is an option of` : 'it is an option of'}`));
    },
    // A lone short flag (not -h or -v).
    () => {
      const flag = pick(['-x', '-q', '-o', '-a', '-Z'], n);
      b.tail.unshift(flag);
      usage(new RegExp(`${b.command} has no option ${flag}`));
    },
    // A stray argument, plain, `-`, or after `--`.
    () => {
      const stray = pick(['foo', '-', 'base.safetensors', '--weird'], n);
      const dashes = stray.startsWith('--') || n % 3 === 0;
      if (b.command === 'inspect') usage(/inspect takes exactly one PATH/);
      else if (b.command === 'sample') usage(/sample takes at most one DIR/);
      else usage(new RegExp(`unexpected argument "${escape(stray)}"`));
      // Not right after a value-taking option left without its value (the fault below): it would
      // become that value (`--adapter -`: seed 20261217, case 1747).
      const last = b.tail[b.tail.length - 1];
      const at = valued.some((o) => last === `--${o}`) ? b.tail.length - 1 : b.tail.length;
      b.tail.splice(at, 0, ...(dashes ? ['--', stray] : [stray]));
    },
    // A value-taking option with nothing after it, or with another option in its value's place.
    () => {
      if (!valued.length) return faults[2]();
      const o = pick(valued, n);
      if (n % 2) {
        b.tail.push(`--${o}`);
        usage(new RegExp(`--${o} needs a value`));
      } else {
        const next = b.opts.findIndex((x) => x.name !== o);
        if (next < 0 || b.command === 'inspect') return faults[2]();
        b.opts.splice(next, 0, { name: o, value: undefined, eq: false });
        usage(new RegExp(`--${o} needs a value \\(.*\\) before --`));
      }
    },
    // An option given twice (--adapter may repeat; a --weight may not, for one adapter).
    () => {
      const once = own.filter((o) => !['adapter', 'weight', ...BOOLEANS].includes(o));
      if (!once.length) return faults[2]();
      const o = pick(once, n);
      const fine: Record<string, string> = {
        base: 'base.safetensors', imatrix: 'imatrix.gguf', tuned: 'tuned.safetensors', out: 'x.safetensors', dtype: 'f16', backend: 'cpu', threads: '2', method: 'cat', rank: '1',
        density: '0.5', 'majority-sign': 'total', seed: '1', 'clamp-quantile': '0.5', energy: '0.5', 'sv-ratio': '2', 'sv-fro': '0.5', 'sv-cumulative': '0.5', outtype: 'f32',
      };
      const value = fine[o];
      b.opts.push(opt(o, value), opt(o, value));
      if (b.command === 'resize' && ['rank', 'sv-ratio', 'sv-fro', 'sv-cumulative'].includes(o)) usage(/resize takes exactly one of/);
      else if (b.command === 'extract' && ['rank', 'energy'].includes(o)) usage(/extract takes exactly one of --rank and --energy/);
      else usage(new RegExp(`--${o} given twice`));
    },
    // A boolean option given a value.
    () => {
      const bools = own.filter((o) => BOOLEANS.has(o));
      if (!bools.length) return faults[2]();
      const o = pick(bools, n);
      b.tail.push(`--${o}=${pick(['1', 'yes', '', 'false'], n >> 2)}`);
      usage(new RegExp(`Option '--${o}' does not take an argument`));
    },
    // A required option left out.
    () => {
      const required: Record<string, string[]> = { merge: ['base', 'adapter', 'out'], combine: ['adapter', 'method', 'out'], resize: ['adapter', 'rank', 'out'], extract: ['base', 'tuned', 'out'], inspect: [], sample: [], convert: ['adapter', 'base', 'out'] };
      const o = pick(required[b.command], n);
      if (!o) return faults[3]();
      if (o === 'out' && b.merge?.dryRun) return faults[2]();
      if (b.command === 'resize' && o === 'rank') {
        b.opts = b.opts.filter((x) => !['rank', 'sv-ratio', 'sv-fro', 'sv-cumulative'].includes(x.name));
        return usage(/resize takes exactly one of/);
      }
      b.opts = b.opts.filter((x) => x.name !== o && !(o === 'adapter' && x.name === 'weight'));
      usage(new RegExp(o === 'method' ? 'missing --method' : `missing --${o}`));
    },
    // A wrong value for an option.
    () => {
      const choices: Record<string, string[]> = {
        weight: BAD_WEIGHTS, threads: BAD_THREADS, dtype: MALFORMED_DTYPES, backend: BAD_BACKENDS, rank: BAD_RANKS, density: BAD_FRACTIONS,
        'clamp-quantile': BAD_FRACTIONS, 'sv-fro': BAD_FRACTIONS, 'sv-cumulative': BAD_FRACTIONS, energy: BAD_FRACTIONS, seed: BAD_SEEDS,
        'sv-ratio': ['0', '-1', '1e400', 'abc', '', 'NaN'], method: ['concat', 'SVD', '', 'dare', 'ties '], 'majority-sign': ['sum', 'Total', ''],
        outtype: BAD_OUTTYPES,
      };
      const o = pick(own.filter((x) => choices[x] && !(b.command === 'resize' && x !== 'rank' && !b.opts.some((y) => y.name === x))), n);
      if (!o) return faults[2]();
      const value = pick(choices[o], n >> 3);
      const at = b.opts.findIndex((x) => x.name === o);
      if (o === 'weight') {
        const a = b.opts.findIndex((x) => x.name === 'adapter');
        const w = b.opts.findIndex((x, i) => i === a + 1 && x.name === 'weight');
        if (w >= 0) b.opts[w] = opt('weight', value);
        else b.opts.splice(a + 1, 0, opt('weight', value));
      } else if (at >= 0) b.opts[at] = opt(o, value);
      else b.opts.push(opt(o, value));
      usage(new RegExp(`--${o}`));
    },
    // A --weight before any --adapter.
    () => {
      if (!own.includes('weight')) return faults[1]();
      b.opts.unshift(opt('weight', '0.5'));
      usage(/--weight must follow the --adapter it belongs to/);
    },
    // An empty path.
    () => {
      if (!takesPaths) {
        b.positionals = [''];
        return usage(b.command === 'inspect' ? /inspect's PATH is empty/ : /sample's DIR is empty/);
      }
      // Among the paths the command line holds (combine's and resize's --base is optional).
      const o = pick(own.filter((x) => ['base', 'adapter', 'tuned'].includes(x) && b.opts.some((y) => y.name === x)), n);
      const at = b.opts.findIndex((x) => x.name === o);
      b.opts[at] = { name: o, value: '', eq: true };
      usage(new RegExp(`--${o} is empty`));
    },
    // An unknown command (a near miss).
    () => {
      const bad = pick(['merg', 'Merge', 'combin', 'extracts', 'inspekt', '', 'mergee', 'run'], n);
      b.typed = bad;
      usage(new RegExp(`unknown command "${escape(bad)}"`));
    },
    // --help or -h among the options.
    () => {
      b.tail.unshift(pick(['--help', '-h'], n));
      b.faults.push({ kind: 'help', why: /^usage:/ });
    },
    // --dtype-merged-only without --dtype.
    () => {
      if (b.command !== 'merge' || b.opts.some((x) => x.name === 'dtype')) return faults[6]();
      b.opts.push(opt('dtype-merged-only'));
      usage(/--dtype-merged-only needs a --dtype/);
    },
    // A --dtype the base's format does not have (refused once the base is open). It replaces every
    // --dtype typed, so not after any fault made of one (given twice: seed 20261217, case 1377; a
    // malformed value: seed 20261218, case 2214).
    () => {
      if (b.command !== 'merge' || b.faults.some((f) => /dtype/.test(f.why.source))) return faults[15]();
      b.opts = b.opts.filter((x) => x.name !== 'dtype');
      const d = pick(FOREIGN_DTYPES, n);
      b.opts.push(opt('dtype', d));
      b.faults.push({ kind: 'dtype-usage', why: new RegExp(`--dtype.*${escape(d)}`) });
    },
    // An input path that is not there, or is a folder, or the wrong kind of thing.
    () => {
      const inputs = b.opts.filter((x) => ['base', 'adapter', 'tuned'].includes(x.name) && x.value);
      if (!inputs.length) {
        // (inspect's PATH, unless a fault emptied it already: that one stands)
        if (b.command !== 'inspect' || b.positionals[0] === '') return faults[16]();
        b.positionals = [pick(['nope.safetensors', 'missing/dir', 'base.safetensors/'], n)];
        return void b.faults.push({ kind: 'input', why: b.positionals[0] === 'base.safetensors/' ? UNDER_A_FILE : new RegExp(`${escape(b.positionals[0])}: no such file or folder`) });
      }
      const target = pick(inputs, n);
      const choices: [string, RegExp][] = [
        ['nope.safetensors', /nope\.safetensors: no such file or folder/],
        ['missing/adapter', /missing\/adapter: no such file or folder/],
        ['base.safetensors/', UNDER_A_FILE],
        ['emptydir', target.name === 'adapter' ? /emptydir: no adapter found/ : /emptydir: no \.safetensors weights found/],
      ];
      if (target.name === 'adapter') choices.push(['base.safetensors', /base\.safetensors: not a LoRA adapter.*is it the base model/]);
      // convert's --base a model it cannot name the GGUF tensors of (safetensors with no config.json): exit 2, once it is read.
      if (b.command === 'convert' && target.name === 'base') {
        choices.push(['base.safetensors', /base\.safetensors: a model without config\.json, whose GGUF tensor names loramerge derives for .*; give the GGUF model the LoRA is for/]);
        const [path, why] = pick(choices, n >> 2);
        target.value = path;
        return void b.faults.push({ kind: path === 'base.safetensors' ? 'late-usage' : 'input', why });
      }
      const [path, why] = pick(choices, n >> 2);
      target.value = path;
      b.faults.push({ kind: 'input', why });
    },
    // An --out that cannot be used: an input, inside an input, in a folder that does not exist,
    // under a file, a folder where a file goes, a non-empty folder.
    () => {
      const out = b.opts.find((x) => x.name === 'out' && x.value !== undefined);
      if (!out || b.merge?.dryRun) return faults[3]();
      const inputs = b.opts.filter((x) => ['base', 'adapter', 'tuned'].includes(x.name) && x.value).map((x) => x.value!);
      // The output's folder is checked before any input is read (early); the rest once the inputs say what is written (late).
      // An input made missing by an earlier fault may sit in a folder that does not exist: then the
      // output's folder is refused first (seed 20261211, case 4702: --out and --tuned both missing/adapter).
      const asOut = (p: string): [string, RegExp, FaultKind] => p.startsWith('missing/')
        ? [p, new RegExp(`${escape(p)}: folder .*missing does not exist; create it or choose another --out`), 'early-usage']
        : [p, /would overwrite input/, 'late-usage'];
      // convert writes only a name ending in .gguf, and says so while parsing, before anything else about --out.
      const notGguf = (p: string): [string, RegExp, FaultKind] => [p, new RegExp(`--out (.*/)?${escape(p)}: convert writes a llama\\.cpp LoRA GGUF; give --out a name ending in \\.gguf`), 'usage'];
      const convertOut = (c: [string, RegExp, FaultKind]) => (b.command === 'convert' && !/\.gguf$/i.test(c[0]) ? notGguf(c[0]) : c);
      if (b.command === 'convert') {
        const [path, why, kind] = convertOut(pick<[string, RegExp, FaultKind]>([
          ...(inputs.length ? [asOut(pick(inputs, n))] : []),
          ['missing/out.gguf', /missing\/out\.gguf: folder .*missing does not exist; create it or choose another --out/, 'early-usage'],
          ['base.safetensors/x.gguf', /folder .*base\.safetensors is not a folder; create it or choose another --out/, 'early-usage'],
          [b.convert!.adapter === 'wide' ? 'wide.gguf' : 'model.gguf', /would overwrite input (.*\/)?(model|wide)\.gguf;/, 'late-usage'],
          ['emptydir', /./, 'usage'],
        ], n >> 2));
        out.value = path;
        b.output = undefined;
        b.faults = b.faults.filter((f) => !f.ofOut);
        return void b.faults.push({ kind, why, ofOut: true });
      }
      const choices: [string, RegExp, FaultKind][] = [
        ...(inputs.length ? [asOut(pick(inputs, n))] : []),
        ['missing/out.safetensors', /missing\/out\.safetensors: folder .*missing does not exist; create it or choose another --out/, 'early-usage'],
        ['base.safetensors/x.safetensors', /folder .*base\.safetensors is not a folder; create it or choose another --out/, 'early-usage'],
      ];
      if (inputs.includes('adapter')) choices.push(['adapter/adapter_model.safetensors', /would overwrite input (.*\/)?adapter\/adapter_model\.safetensors;/, 'late-usage']);
      // merge writes a file for a file base; the others a file only for an --out named *.safetensors.
      if (b.command === 'merge') choices.push(['emptydir', /emptydir: exists and is not a file; choose another output path/, 'late-usage']);
      else if (!b.opts.some((x) => x.name === 'overwrite')) choices.push(['notes', /notes: folder exists and is not empty; choose another --out, or pass --overwrite/, 'late-usage']);
      const [path, why, kind] = pick(choices, n >> 2);
      out.value = path;
      b.output = undefined;
      // The --out drawn first is no longer on the line (seed 20261206, case 199: newdir/ replaced by notes;
      // seed 20261209, case 299: this fault drawn twice, missing/out.safetensors replaced by the adapter).
      b.faults = b.faults.filter((f) => !f.ofOut);
      b.faults.push({ kind, why, ofOut: true });
    },
  ];
  // An --out that cannot be used is drawn twice as often: its refusals come after the output's lock
  // is taken, where a file left behind would show.
  faults.push(faults[16]);
  pick(faults, which)();
}

/** The command line, paths relative to the case folder or absolute. */
function render(b: Built, r: Recipe, dir: string): string[] {
  const pathOptions = new Set(['base', 'adapter', 'tuned', 'out']);
  let k = 0;
  const path = (p: string) => (p !== '' && r.absolute[k++ % r.absolute.length] ? join(dir, p) : p);
  const args = [b.typed ?? b.command];
  for (const o of b.opts) {
    if (o.value === undefined) args.push(`--${o.name}`);
    else {
      const v = pathOptions.has(o.name) ? path(o.value) : o.value;
      if (o.eq) args.push(`--${o.name}=${v}`);
      else args.push(`--${o.name}`, v);
    }
  }
  args.push(...b.positionals.map((p) => (b.command === 'inspect' ? path(p) : p)), ...b.tail);
  return args;
}

// --- the float64 reference -------------------------------------------------------------------

const OUT_TYPES: Record<string, FixtureDType> = { f32: 'F32', fp32: 'F32', float32: 'F32', f16: 'F16', fp16: 'F16', float16: 'F16', F16: 'F16', bf16: 'BF16', bfloat16: 'BF16', BF16: 'BF16' };
const LARGEST: Record<string, number> = { F32: 3.4028234663852886e38, F16: 65504, BF16: 3.3895313892515355e38 };

/** Each tensor of the merge in float64 (W + Σ w·α/r·(B·A)) with the magnitude of its terms; or why it must fail. */
function reference(m: NonNullable<Built['merge']>): { failure?: RegExp; tensors: Map<string, { exact: Float64Array; magnitude: Float64Array; dtype: FixtureDType; merged: boolean }> } {
  const tensors = new Map<string, { exact: Float64Array; magnitude: Float64Array; dtype: FixtureDType; merged: boolean }>();
  for (const name of [Q, V]) {
    const exact = Float64Array.from(W[name]);
    const magnitude = exact.map(Math.abs);
    let merged = false;
    for (const { name: a, weight } of m.adapters) {
      const lora = LORAS[a];
      const mod = lora.modules[name];
      if (!mod) continue;
      const s = weight * (lora.alpha / lora.r);
      if (!Number.isFinite(s)) return { failure: /past float64; use a smaller --weight/, tensors };
      merged = true;
      for (let o = 0; o < N; o++) {
        for (let i = 0; i < N; i++) {
          let d = 0, dm = 0;
          for (let k = 0; k < lora.r; k++) {
            d += mod.B[o * lora.r + k] * mod.A[k * N + i];
            dm += Math.abs(mod.B[o * lora.r + k] * mod.A[k * N + i]);
          }
          exact[o * N + i] += s * d;
          magnitude[o * N + i] += Math.abs(s) * dm;
        }
      }
    }
    const dtype = m.dtype && (merged || !m.mergedOnly) ? OUT_TYPES[m.dtype] : 'F32';
    if (exact.some((x) => Math.abs(roundForDType(x, dtype)) > LARGEST[dtype] || !Number.isFinite(roundForDType(x, dtype)))) {
      return { failure: new RegExp(`${escape(name)}.*(overflow|too large for any float dtype)`), tensors };
    }
    tensors.set(name, { exact, magnitude, dtype, merged });
  }
  return { tensors };
}

/** Half an ulp of `dtype` at `x` (the rounding of the result, once), plus the f32 work's own error. */
function tolerance(x: number, magnitude: number, dtype: FixtureDType): number {
  const mant = dtype === 'F16' ? 10 : dtype === 'BF16' ? 7 : 23;
  const minExp = dtype === 'F16' ? -14 : -126;
  const e = Math.max(x === 0 ? minExp : Math.floor(Math.log2(Math.abs(x))), minExp);
  return 2 ** (e - mant - 1) + 2 ** -22 * magnitude;
}

async function checkMerged(path: string, m: NonNullable<Built['merge']>, context: string): Promise<string> {
  const ref = reference(m);
  expect(ref.failure, `merged although the reference says it must fail\n${context}`).toBeUndefined();
  const file = await openSafetensors(await openNodeByteSource(path));
  try {
    for (const [name, want] of ref.tensors) {
      const entry = file.get(`${name}.weight`)!;
      expect(entry, `${name} in the output\n${context}`).toBeDefined();
      expect(entry.dtype, `${name}'s type\n${context}`).toBe(want.dtype);
      const got = decodeToF32(await file.read(entry), entry.dtype as FloatDType);
      for (let i = 0; i < got.length; i++) {
        if (!want.merged) {
          expect(got[i], `${name}[${i}], copied\n${context}`).toBe(roundForDType(want.exact[i], want.dtype));
          continue;
        }
        expect(Math.abs(got[i] - want.exact[i]), `${name}[${i}]: ${got[i]} vs exact ${want.exact[i]}\n${context}`)
          .toBeLessThanOrEqual(tolerance(want.exact[i], want.magnitude[i], want.dtype));
      }
    }
  } finally {
    await file.source.close();
  }
  return 'merged, matches float64';
}

// --- running and checking ---------------------------------------------------------------------

function materialise(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  for (const [rel, content] of Object.entries(FILES)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), content);
  }
  for (const f of EMPTY_FOLDERS) mkdirSync(join(dir, f), { recursive: true });
}

/** The built front end in a worker thread, replaced after a hang. */
class Runner {
  private worker: Worker | undefined;
  private id = 0;
  run(argv: string[]): Promise<(CliResult & { ms: number }) | { hung: true }> {
    this.worker ??= new Worker(new URL('./helpers/fuzz-worker.mjs', import.meta.url));
    const w = this.worker;
    const id = ++this.id;
    return new Promise((done) => {
      const timer = setTimeout(() => {
        w.off('message', onMessage);
        void w.terminate();
        this.worker = undefined;
        done({ hung: true });
      }, HANG_MS);
      const onMessage = (m: CliResult & { id: number; ms: number }) => {
        if (m.id !== id) return;
        clearTimeout(timer);
        w.off('message', onMessage);
        done(m);
      };
      w.on('message', onMessage);
      w.postMessage({ id, argv });
    });
  }
  close = async () => void (await this.worker?.terminate());
}

/** Lines the CLI writes to stderr besides its one error line (the merge report, notes, warnings). */
const REPORT_LINE = /^(base: |adapter \d+: |plan: |backend: |warning: |note: |sample written to |  )/;
/** …and after a success: what it did. */
const SUCCESS_LINE = new RegExp(`${REPORT_LINE.source}|^(merged |wrote |check: )`);
const HELP_START = 'usage:\n  loramerge merge --base PATH --adapter PATH';

function expectedOutcome(b: Built): { code: number; why?: RegExp; parse: boolean } {
  const before = (kind: FaultKind) => b.faults.filter((f) => f.kind === kind);
  // --help or -h before any `--` is read first, whatever else the line holds (the command too).
  if (before('help').length) return { code: 0, parse: true };
  const usage = before('usage');
  if (usage.length) return { code: 2, why: usage.length === 1 ? usage[0].why : undefined, parse: true };
  // An --out whose folder cannot take it, before any input is read.
  const early = before('early-usage');
  if (early.length) return { code: 2, why: early.length === 1 ? early[0].why : undefined, parse: false };
  const input = before('input');
  if (input.length) return { code: 1, why: input.length === 1 ? input[0].why : undefined, parse: false };
  // Then, in the order the merge meets them: the base's type for --dtype; the plan (a weight whose
  // product with α/r is past float64); the output (--out); the values, past the output type's
  // range (worked out only when merging, not in a dry run).
  const dtype = before('dtype-usage');
  if (dtype.length) return { code: 2, why: dtype[dtype.length - 1].why, parse: false }; // the last --dtype given stands
  const ref = b.merge && reference(b.merge);
  if (ref?.failure && /float64/.test(ref.failure.source)) return { code: 1, why: ref.failure, parse: false };
  const late = before('late-usage');
  if (late.length) return { code: 2, why: late.length === 1 ? late[0].why : undefined, parse: false };
  // What the command meets in the inputs once it runs (convert's auto over a first pair of mixed types).
  const lateInput = before('late-input');
  if (lateInput.length) return { code: 1, why: lateInput.length === 1 ? lateInput[0].why : undefined, parse: false };
  if (ref?.failure && !b.merge!.dryRun) return { code: 1, why: ref.failure, parse: false };
  return { code: 0, parse: false };
}

async function checkCase(b: Built, argv: string[], dir: string, before: Map<string, Buffer | null>, result: CliResult & { ms?: number }): Promise<string> {
  const shown = argv.map((a) => JSON.stringify(a)).join(' ');
  const context = `loramerge ${shown}\n→ exit ${result.code}${result.ms !== undefined ? ` in ${result.ms.toFixed(0)} ms` : ''}\nstderr:\n${result.stderr}\nstdout:\n${result.stdout.slice(0, 400)}`;
  const want = expectedOutcome(b);
  const typed = argv.join(' ');
  expect(result.stderr, context).not.toMatch(/^ {4}at |\n\s+at |internal error|runCommandLine threw|\[object Object\]/m);
  if (!typed.includes('undefined')) expect(result.stderr, context).not.toMatch(/undefined/);
  if (!typed.includes('NaN')) expect(result.stderr, context).not.toMatch(/NaN/);
  if (result.ms !== undefined) expect(result.ms, `took too long\n${context}`).toBeLessThan(CASE_MS);
  expect(result.code, `exit code (wanted ${want.code}${want.why ? `, ${want.why}` : ''})\n${context}`).toBe(want.code);
  const after = snapshot(dir);
  const lines = result.stderr.replace(/\n$/, '') === '' ? [] : result.stderr.replace(/\n$/, '').split('\n');
  const errors = lines.filter((l) => l.startsWith('error:'));
  if (result.code !== 0) {
    expect(errors, `one error line\n${context}`).toHaveLength(1);
    expect(lines[lines.length - 1], `the error line comes last\n${context}`).toBe(errors[0]);
    for (const l of lines.slice(0, -1)) expect(l, `a line that is not the CLI's report\n${context}`).toMatch(REPORT_LINE);
    if (want.parse) {
      expect(lines, `a usage error found while parsing is the only line\n${context}`).toHaveLength(1);
      expect(errors[0], context).toMatch(/ \(see loramerge --help\)$/);
    }
    if (want.why) expect(errors[0], `the error names the fault\n${context}`).toMatch(want.why);
    expect([...after.keys()].sort(), `files left or removed after a refusal\n${context}`).toEqual([...before.keys()].sort());
    for (const [p, bytes] of before) if (bytes) expect(after.get(p)!.equals(bytes), `${p} changed by a refusal\n${context}`).toBe(true);
    return `refused ${result.code}`;
  }
  expect(errors, context).toEqual([]);
  for (const l of lines) expect(l, `a line that is not the CLI's report\n${context}`).toMatch(SUCCESS_LINE);
  if (b.faults.some((f) => f.kind === 'help')) {
    expect(result.stdout.startsWith(HELP_START), context).toBe(true);
    for (const c of ['merge', 'inspect', 'sample', 'combine', 'resize', 'extract', 'convert']) expect(result.stdout, context).toContain(`loramerge ${c}`);
    expect(result.stderr, context).toBe('');
    expect(after, `--help wrote something\n${context}`).toEqual(before);
    return 'help';
  }
  // Whatever changed lies at the output; every other file is as it was.
  const outPrefix = b.output ? b.output.path.replace(/^\.\//, '') : undefined;
  const atOutput = (p: string) => outPrefix !== undefined && (p === outPrefix || p.startsWith(outPrefix.replace(/\/?$/, '/')) || `${p}` === outPrefix.replace(/[^/]+$/, ''));
  for (const [p, bytes] of before) {
    if (atOutput(p)) continue;
    expect(after.has(p), `${p} removed\n${context}`).toBe(true);
    if (bytes) expect(after.get(p)!.equals(bytes), `${p} changed\n${context}`).toBe(true);
  }
  for (const p of after.keys()) if (!before.has(p)) expect(atOutput(p), `${p} appeared beside the output\n${context}`).toBe(true);
  if (!b.output || b.merge?.dryRun) {
    expect([...after.keys()].sort(), `${b.command} wrote something\n${context}`).toEqual([...before.keys()].sort());
    if (b.command === 'inspect') expect(result.stdout.length, context).toBeGreaterThan(0);
    if (b.merge?.dryRun) expect(result.stdout, context).toMatch(/q_proj\.weight/);
    return b.merge?.dryRun ? 'dry run' : 'inspected';
  }
  const out = join(dir, b.output.path);
  switch (b.output.kind) {
    case 'merged':
      return checkMerged(out, b.merge!, context);
    case 'adapter-file':
    case 'adapter-folder': {
      const adapter = await openAdapter(await openNodeInputFileSet(out));
      try {
        expect(adapter.modules.length, context).toBeGreaterThan(0);
        expect(adapter.format, context).toBe(b.output.kind === 'adapter-file' ? 'kohya' : 'peft');
      } finally {
        await adapter.file.source.close();
      }
      expect(result.stdout, context).toMatch(/^module +rank +kept\n/);
      return `${b.command}, re-opened`;
    }
    case 'sample':
      expect(snapshot(out).has('merged/model.safetensors'), context).toBe(true);
      return 'sample';
    case 'lora-gguf':
      expect(result.stdout, context).toMatch(/^module +rank +kept\n/);
      return checkConverted(out, b.convert!, context);
  }
}

/**
 * A float64 value rounded to a binary float of `mant` stored mantissa bits and exponent bias
 * `bias` (normals from 2^(1-bias)), to nearest with ties to even, subnormals included; its bits.
 * Plain on purpose: f16 is (10, 15), bf16 (7, 127).
 */
function floatBits(x: number, mant: number, bias: number): number {
  const expBits = bias === 15 ? 5 : 8;
  const sign = x < 0 || Object.is(x, -0) ? 1 << (mant + expBits) : 0;
  const a = Math.abs(x);
  const inf = ((1 << expBits) - 1) << mant;
  if (a === Infinity) return sign | inf;
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const minExp = 1 - bias;
  // The value in units of the last place where it lands (a subnormal's: 2^(minExp - mant)).
  const q = a / 2 ** (Math.max(e, minExp) - mant);
  const f = Math.floor(q);
  const n = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  if (e < minExp) return sign | n; // n = 2^mant is the smallest normal's bits
  const biased = n === 2 ** (mant + 1) ? e + 1 + bias : e + bias;
  if (biased >= (1 << expBits) - 1) return sign | inf;
  return sign | (biased << mant) | (n & ((1 << mant) - 1));
}
const f16Of = (x: number) => floatBits(x, 10, 15);
const bf16Of = (x: number) => floatBits(x, 7, 127);

/**
 * Q8_0 blocks of `values` (whole blocks of 32), as ggml's quantize_row_q8_0_ref and gguf-py's
 * Q8_0 quantize them in f32: d = amax/127, id = 1/d (0 where d is 0), q = roundf(x·id) (half
 * away from zero), d stored as f16 (to nearest even); each block d (2 bytes) then 32 int8.
 */
function q8_0Bytes(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array((values.length / 32) * 34);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < values.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(Math.fround(values[b * 32 + j])));
    const d = Math.fround(amax / 127);
    const id = d === 0 ? 0 : Math.fround(1 / d);
    dv.setUint16(b * 34, f16Of(d), true);
    for (let j = 0; j < 32; j++) {
      const x = Math.fround(Math.fround(values[b * 32 + j]) * id);
      dv.setInt8(b * 34 + 2 + j, Math.sign(x) * Math.floor(Math.abs(x) + 0.5));
    }
  }
  return out;
}

/** GGML type ids (ggml.h) of what convert writes. */
const GGML_ID: Record<string, number> = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 };

/** `values` as the bytes of `type` (F32, F16, BF16, Q8_0), by the plain rules above. */
function expectedBytes(values: Float64Array, type: string): Uint8Array {
  if (type === 'Q8_0') return q8_0Bytes(values);
  const size = type === 'F32' ? 4 : 2;
  const out = new Uint8Array(values.length * size);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => (type === 'F32' ? dv.setFloat32(i * 4, v, true) : dv.setUint16(i * 2, type === 'F16' ? f16Of(v) : bf16Of(v), true)));
  return out;
}

/**
 * convert's GGUF against the PEFT adapter it came from, as convert_lora_to_gguf.py writes one: an
 * adapter file for llama with PEFT's α, per module llama.cpp's names, lora_a ne [in, r] holding A
 * and lora_b ne [r, out] holding B (q's rows where convert_hf_to_gguf moves them), each in the type
 * --outtype gives it: f32 (the default: the stored values exactly), f16 or bf16 (each value rounded
 * to nearest even from float64), q8_0 (Q8_0 blocks where a row, ne[0], is whole blocks, else F16,
 * as gguf-py falls back), auto (f16 where the first pair by sorted tensor name is f16, else bf16).
 * Every tensor's bytes are compared with the bytes worked out here.
 */
function checkConverted(path: string, c: NonNullable<Built['convert']>, context: string): string {
  const file = readGguf(readFileSync(path));
  const lora = CONVERT_LORAS[c.adapter];
  const wide = lora.width;
  expect(file.metadata.get('general.type')?.value, context).toBe('adapter');
  expect(file.metadata.get('adapter.type')?.value, context).toBe('lora');
  expect(file.metadata.get('general.architecture')?.value, context).toBe('llama');
  expect(file.metadata.get('adapter.lora.alpha')?.value, context).toBe(lora.alpha);
  const tensors = new Map(file.tensors.map((t) => [t.name, t]));
  const ggufName = (m: string) => (m.endsWith('q_proj') ? 'blk.0.attn_q.weight' : 'blk.0.attn_v.weight');
  expect([...tensors.keys()].sort(), context).toEqual(Object.keys(lora.modules).map(ggufName).flatMap((n) => [`${n}.lora_a`, `${n}.lora_b`]).sort());
  const first = lora.modules[Object.keys(lora.modules).sort()[0]];
  const autoType = first.aType === 'F16' && first.bType === 'F16' ? 'F16' : 'BF16';
  const typeOf = (ne0: number) => {
    switch (c.outtype) {
      case 'f32': return 'F32';
      case 'f16': return 'F16';
      case 'bf16': return 'BF16';
      case 'q8_0': return ne0 % 32 === 0 ? 'Q8_0' : 'F16';
      case 'auto': return autoType;
      default: throw new Error(`no --outtype ${c.outtype}`);
    }
  };
  const seen = new Set<string>();
  for (const [m, { A, B }] of Object.entries(lora.modules)) {
    const name = ggufName(m);
    const a = tensors.get(`${name}.lora_a`)!, b = tensors.get(`${name}.lora_b`)!;
    expect([a.ne, b.ne], `${name}'s shapes\n${context}`).toEqual([[wide, lora.r], [lora.r, wide]]);
    const permuted = new Float64Array(wide * lora.r);
    for (let o = 0; o < wide; o++) {
      const row = m.endsWith('q_proj') ? ggufRowOf(o, wide, lora.heads) : o;
      for (let k = 0; k < lora.r; k++) permuted[row * lora.r + k] = B[o * lora.r + k];
    }
    for (const [t, want] of [[a, A], [b, permuted]] as const) {
      const type = typeOf(t.ne[0]);
      seen.add(type);
      expect(typeName(t.typeId), `${t.name}'s type (--outtype ${c.outtype})\n${context}`).toBe(type);
      expect(t.typeId, context).toBe(GGML_ID[type]);
      const bytes = expectedBytes(want, type);
      expect(t.data.byteLength, `${t.name}'s size\n${context}`).toBe(bytes.byteLength);
      const at = t.data.findIndex((x, i) => x !== bytes[i]);
      const unit = type === 'Q8_0' ? 34 : type === 'F32' ? 4 : 2;
      expect(at, `${t.name} (${type}): first differing byte ${at} (value or block ${Math.floor(at / unit)}: got ${Array.from(t.data.subarray(at - (at % unit), at - (at % unit) + unit))}, want ${Array.from(bytes.subarray(at - (at % unit), at - (at % unit) + unit))})\n${context}`).toBe(-1);
    }
  }
  return `converted ${c.outtype} (${[...seen].sort().join('+')}), bytes exact`;
}

describe('fuzzing the command line', () => {
  const temp = tempDirs();
  const root = temp.make();
  const runner = new Runner();
  const cwd = process.cwd();
  afterAll(async () => {
    process.chdir(cwd);
    await runner.close();
    temp.removeAll();
  });
  const counts = new Map<string, number>();
  const count = (what: string) => counts.set(what, (counts.get(what) ?? 0) + 1);

  /** One case in a fresh folder, the CLI started there (relative paths are the folder's). */
  async function runCase(r: Recipe, n: number, run: (argv: string[]) => Promise<(CliResult & { ms?: number }) | { hung: true }>): Promise<void> {
    const dir = join(root, `case-${n}`);
    materialise(dir);
    const b = build(r);
    const argv = render(b, r, dir);
    const before = snapshot(dir);
    process.chdir(dir);
    try {
      const result = await run(argv);
      if ('hung' in result) throw new Error(`hung for ${HANG_MS} ms: loramerge ${argv.map((a) => JSON.stringify(a)).join(' ')}`);
      const outcome = await checkCase(b, argv, dir, before, result);
      count(`${b.command || '(none)'}: ${outcome}${outcome === 'refused 1' && b.faults.length === 1 && b.faults[0].kind === 'late-input' ? ' (auto, first pair of mixed types)' : ''}`);
    } finally {
      process.chdir(cwd);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it(`${settings.runs} command lines through the CLI's front end in-process`, async () => {
    let n = 0;
    const started = performance.now();
    await fc.assert(fc.asyncProperty(recipe, (r) => runCase(r, n++, (argv) => runner.run(argv))),
      { seed: settings.seed, numRuns: settings.path ? 1 : settings.runs, endOnFailure: true, ...(settings.path ? { path: settings.path } : {}) });
    const outcomes = [...counts].sort().map(([k, v]) => `${k} ×${v}`).join(', ');
    console.log(`argv fuzz: ${n} cases in ${((performance.now() - started) / 1000).toFixed(1)} s: ${outcomes}`);
    if (!settings.path) {
      const total = (re: RegExp) => [...counts].filter(([k]) => re.test(k)).reduce((s, [, v]) => s + v, 0);
      // The grammar must reach every kind of outcome, or the property proves little.
      expect(total(/refused 2/)).toBeGreaterThan(settings.runs / 5);
      expect(total(/refused 1/)).toBeGreaterThan(0);
      expect(total(/merged, matches float64/)).toBeGreaterThan(settings.runs / 20);
      expect(total(/re-opened/)).toBeGreaterThan(0);
    }
  }, Math.max(300_000, settings.runs * 2000));

  it(`${CONVERT_RUNS} convert command lines through the CLI's front end in-process`, async () => {
    let n = 0;
    const started = performance.now();
    const before = new Map(counts);
    // The same recipes (another seed), every one a convert: the main property's draws stay those of its seeds.
    // A quarter of them without faults (picks[0], which convert leaves alone), for the --outtype values' files.
    await fc.assert(fc.asyncProperty(recipe.map((r) => ({ ...r, command: 'convert', faults: r.picks[0] % 4 === 0 ? [] : r.faults })), (r) => runCase(r, 200_000 + n++, (argv) => runner.run(argv))),
      { seed: settings.seed + 2, numRuns: CONVERT_RUNS, endOnFailure: true });
    const mine = [...counts].filter(([k]) => k.startsWith('convert:')).map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const).filter(([, v]) => v > 0);
    console.log(`argv fuzz: ${n} convert cases in ${((performance.now() - started) / 1000).toFixed(1)} s: ${mine.sort().map(([k, v]) => `${k} ×${v}`).join(', ')}`);
    const total = (re: RegExp) => mine.filter(([k]) => re.test(k)).reduce((s, [, v]) => s + v, 0);
    expect(total(/refused 2/)).toBeGreaterThan(CONVERT_RUNS / 5);
    expect(total(/refused 1/)).toBeGreaterThan(0);
    expect(total(/converted .*, bytes exact/)).toBeGreaterThan(CONVERT_RUNS / 20);
    // Every --outtype reached, Q8_0 blocks among them, when the run is long enough to.
    if (CONVERT_RUNS >= 100) for (const t of ['f32 ', 'f16 ', 'bf16 ', 'auto ', 'Q8_0']) expect(total(new RegExp(`converted .*${escape(t)}`)), t).toBeGreaterThan(0);
  }, Math.max(300_000, CONVERT_RUNS * 2000));

  it(`${settings.cliRuns} command lines through the real loramerge process`, async () => {
    let n = 0;
    await fc.assert(fc.asyncProperty(recipe, (r) => runCase(r, 100_000 + n++, (argv) => runCli(argv))),
      { seed: settings.seed + 1, numRuns: settings.cliRuns, endOnFailure: true });
  }, Math.max(120_000, settings.cliRuns * 20_000));

  it('the real process: a usage error is one line, exit 2; --help is the usage, exit 0', async () => {
    const dir = temp.make();
    const bad = await runCli(['merge', '--base', join(dir, 'b.safetensors'), '--adapter', join(dir, 'a'), '--out', join(dir, 'o.safetensors'), '--threads', '1e400']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('error: --threads must be an integer from 1 to 1024, not "1e400" (see loramerge --help)\n');
    const help = await runCli(['merge', '--bse', '-h']);
    expect([help.code, help.stderr]).toEqual([0, '']);
    expect(help.stdout.startsWith(HELP_START)).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
  });
});
