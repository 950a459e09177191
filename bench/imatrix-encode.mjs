/**
 * The bench's importance-matrix case: one 512×4096 tensor (random normal values, random positive
 * importance weights, as llama-imatrix's mean squared activations are) quantized row by row with
 * importance weights (`llama-quantize --imatrix`'s quantize_row_*_impl) by each k-quant's, legacy
 * type's, IQ4's, IQ3's, IQ2's and IQ1's codec's encodeWeighted (WebAssembly where it compiles), against the TypeScript quantizer it must equal byte for byte, measured in the
 * same run (the two taking turns, the fastest of each kept), and beside the same type's encode without weights (IQ2 and IQ1 have
 * none: ggml writes them only with weights, but for IQ2_S and IQ1_M, which llama-quantize writes without them for
 * token_embd/output: timed against their TypeScript twin in the same run, as IQ3's). Single thread, no I/O.
 *
 * usage: node bench/imatrix-encode.mjs [--reps N] [--types IQ3_XXS,IQ1_S]   (also run by bench/run.mjs, every type; `--skip imatrix` leaves it out)
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { blockCodec } from '../dist/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../dist/formats/gguf/ggml-types.js';
import { encodeScaleMinBlocks } from '../dist/formats/gguf/codecs/q4_k.js';
import { encodeQ2KBlocks } from '../dist/formats/gguf/codecs/q2_k.js';
import { encodeQ3KBlocks } from '../dist/formats/gguf/codecs/q3_k.js';
import { encodeQ6KBlocks } from '../dist/formats/gguf/codecs/q6_k.js';
import { encodeQ4_0Weighted } from '../dist/formats/gguf/codecs/q4_0.js';
import { encodeQ5_0Weighted } from '../dist/formats/gguf/codecs/q5_0.js';
import { encodeAffineWeighted } from '../dist/formats/gguf/codecs/affine-weighted.js';
import { encodeNl, encodeXs } from '../dist/formats/gguf/codecs/iq4.js';
import { encodeS as encodeIq3S, encodeXxs as encodeIq3Xxs } from '../dist/formats/gguf/codecs/iq3.js';
import { encodeIq1MRow, encodeIq1SRow } from '../dist/formats/gguf/codecs/iq1-search.js';
import { encodeIq2SRow, encodeIq2XsRow, encodeIq2XxsRow } from '../dist/formats/gguf/codecs/iq2-search.js';
import { encodeData } from './encode-data.mjs';

const ROWS = 512;
const COLS = 4096;

/** The TypeScript quantizers with importance weights, one row. */
const TS_WEIGHTED = {
  Q4_0: (src, out, qw) => encodeQ4_0Weighted(src, out, qw),
  Q5_0: (src, out, qw) => encodeQ5_0Weighted(src, out, qw),
  Q4_1: (src, out, qw) => encodeAffineWeighted(src, out, qw, 15),
  Q5_1: (src, out, qw) => encodeAffineWeighted(src, out, qw, 31),
  Q2_K: (src, out, qw) => encodeQ2KBlocks(src, out, qw),
  Q3_K: (src, out, qw) => encodeQ3KBlocks(src, out, qw),
  Q4_K: (src, out, qw) => encodeScaleMinBlocks(src, out, 15, qw),
  Q5_K: (src, out, qw) => encodeScaleMinBlocks(src, out, 31, qw),
  Q6_K: (src, out, qw) => encodeQ6KBlocks(src, out, qw),
  IQ4_NL: (src, out, qw) => encodeNl(src, out, qw),
  IQ4_XS: (src, out, qw) => encodeXs(src, out, qw),
  IQ3_XXS: (src, out, qw) => encodeIq3Xxs(src, out, qw),
  IQ3_S: (src, out, qw) => encodeIq3S(src, out, qw),
  IQ2_XXS: (src, out, qw) => encodeIq2XxsRow(src, out, qw),
  IQ2_XS: (src, out, qw) => encodeIq2XsRow(src, out, qw),
  IQ2_S: (src, out, qw) => encodeIq2SRow(src, out, qw),
  IQ1_S: (src, out, qw) => encodeIq1SRow(src, out, qw),
  IQ1_M: (src, out, qw) => encodeIq1MRow(src, out, qw),
};

/**
 * Types whose encode without weights moved to WebAssembly too: their TypeScript twin, timed beside it.
 * IQ2_S and IQ1_M are written without weights only for token_embd.weight, per_layer_token_embd.weight
 * and output.weight (quantize_iq2_s / quantize_iq1_m with quant_weights NULL), the others of their
 * kind never.
 */
const TS_PLAIN = {
  IQ3_XXS: (src, out) => encodeIq3Xxs(src, out),
  IQ3_S: (src, out) => encodeIq3S(src, out),
  IQ2_S: (src, out) => encodeIq2SRow(src, out, undefined),
  IQ1_M: (src, out) => encodeIq1MRow(src, out, undefined),
};

/** One row at a time, as the TypeScript quantizers run a tensor (IQ2_S's and IQ1_M's take one row). */
function plainRows(encodeRow, type, values) {
  return rowsBy((s, o) => encodeRow(s, o), type, values, undefined);
}

const data = (seed) => encodeData(seed, ROWS, COLS);

function rowsBy(encodeRow, type, values, qw) {
  const rowBytes = (COLS / type.blockSize) * type.blockBytes;
  const out = new Uint8Array(ROWS * rowBytes);
  for (let r = 0; r < ROWS; r++) encodeRow(values.subarray(r * COLS, (r + 1) * COLS), out.subarray(r * rowBytes, (r + 1) * rowBytes), qw);
  return out;
}

/**
 * The fastest of `reps` runs of each function (a falsy entry is left out), the functions taking turns
 * run by run so that a machine whose load changes slows each of them alike.
 */
function bestOfEach(reps, fs) {
  const runs = fs.map((f) => f && { seconds: Infinity, result: undefined });
  for (let i = 0; i < reps; i++) {
    fs.forEach((f, k) => {
      if (!f) return;
      const t0 = performance.now();
      runs[k].result = f();
      runs[k].seconds = Math.min(runs[k].seconds, (performance.now() - t0) / 1000);
    });
  }
  return runs;
}

export function runImatrixBench({ reps = 3, log = () => {}, types = Object.keys(TS_WEIGHTED) } = {}) {
  const { values, qw } = data(20261207);
  const rows = [];
  for (const name of types) {
    const type = ggmlTypeByName(name);
    const codec = blockCodec(type);
    const blocksOf = () => new Uint8Array((values.length / type.blockSize) * type.blockBytes);
    // One row each first: the IQ grids' search tables are built on first use, outside the timing.
    const rowBytes = (COLS / type.blockSize) * type.blockBytes;
    TS_WEIGHTED[name](values.subarray(0, COLS), new Uint8Array(rowBytes), qw);
    codec.encodeWeighted(values.subarray(0, COLS), new Uint8Array(rowBytes), qw);
    const [ts, codecRun, plain, plainTs] = bestOfEach(reps, [
      () => rowsBy(TS_WEIGHTED[name], type, values, qw),
      () => rowsBy((s, o, w) => codec.encodeWeighted(s, o, w), type, values, qw),
      // IQ1 and IQ2 are written only with importance weights (their encode refuses), but for IQ2_S
      // and IQ1_M's token_embd/output (TS_PLAIN lists them), which run row by row as a tensor does.
      !codec.needsImportance ? (() => {
        const out = blocksOf();
        codec.encode(values, out);
        return out;
      }) : TS_PLAIN[name] && (() => plainRows((s, o) => codec.encode(s, o), type, values)),
      TS_PLAIN[name] && (() => {
        if (codec.needsImportance) return plainRows(TS_PLAIN[name], type, values);
        const out = blocksOf();
        TS_PLAIN[name](values, out);
        return out;
      }),
    ]);
    const same = Buffer.from(ts.result).equals(Buffer.from(codecRun.result)) && (!plainTs || Buffer.from(plainTs.result).equals(Buffer.from(plain.result)));
    rows.push({ type: name, ts: ts.seconds, weighted: codecRun.seconds, ...(plain ? { plain: plain.seconds } : {}), ...(plainTs ? { plainTs: plainTs.seconds } : {}), same });
    log(`imatrix ${name}: TypeScript ${ts.seconds.toFixed(3)} s, encodeWeighted ${codecRun.seconds.toFixed(3)} s${plain ? `, encode ${plain.seconds.toFixed(3)} s` : ''}${plainTs ? ` (TypeScript ${plainTs.seconds.toFixed(3)} s)` : ''}`);
  }
  return { rows: ROWS, cols: COLS, results: rows };
}

export function printImatrixTable({ rows, cols, results }) {
  const out = [`GGUF --imatrix re-quantization: a ${rows}×${cols} tensor, row by row with importance weights, one thread:`, ''];
  const header = ['type', 'TypeScript s', 'encodeWeighted s', 'vs TypeScript', 'bytes', 'encode (no imatrix) s'];
  const cells = results.map((r) => [r.type, r.ts.toFixed(3), r.weighted.toFixed(3), `${(r.ts / r.weighted).toFixed(1)}× faster`, r.same ? 'identical' : 'DIFFER', r.plain === undefined ? '(imatrix only)' : r.plain.toFixed(3)]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  out.push(line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line));
  const blocks = (rows * cols) / 256;
  for (const r of results.filter((r) => r.plain === undefined)) {
    out.push(`${r.type} blocks/s (importance weights only): TypeScript ${Math.round(blocks / r.ts)}, WebAssembly ${Math.round(blocks / r.weighted)} (${(r.ts / r.weighted).toFixed(1)}× faster)`);
  }
  for (const r of results.filter((r) => r.plainTs !== undefined)) {
    out.push(`${r.type} blocks/s: with weights TypeScript ${Math.round(blocks / r.ts)}, WebAssembly ${Math.round(blocks / r.weighted)}; without TypeScript ${Math.round(blocks / r.plainTs)}, WebAssembly ${Math.round(blocks / r.plain)} (${(r.plainTs / r.plain).toFixed(1)}× faster)`);
  }
  process.stdout.write(out.join('\n') + '\n\n');
  return results.filter((r) => !r.same).length;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { reps: { type: 'string', default: '3' }, types: { type: 'string' } } });
  const types = values.types?.split(',').map((t) => t.trim().toUpperCase());
  const unknown = types?.filter((t) => !TS_WEIGHTED[t]);
  if (unknown?.length) throw new Error(`--types: no weighted quantizer benchmarked for ${unknown.join(', ')} (${Object.keys(TS_WEIGHTED).join(', ')})`);
  const result = runImatrixBench({ reps: Number(values.reps), log: (m) => process.stderr.write(m + '\n'), ...(types ? { types } : {}) });
  if (printImatrixTable(result)) process.exitCode = 1;
}
