// Writes ggml-iq1-golden.json: 256-value blocks of many kinds, importance weights for them, and the
// bytes ggml's own quantize_iq1_s and quantize_iq1_m write for them with those weights
// (llama-quantize --imatrix), through the harness ggml-iq1-harness.c (its header says how to build
// it), plus an FNV-1a checksum of the tables its iq2xs_init_impl builds for IQ1 (the harness's
// `tables` dump; IQ1_S and IQ1_M share one grid and one table).
// Run: node ggml-iq1-golden.mjs ./harness
import { writeFileSync } from 'node:fs';
import { block, harnessBlocks, hex, seededRandom, tablesChecksum, valuesAndWeights } from './ggml-golden-common.mjs';

const harness = process.argv[2] ?? './harness';
const { rand, gauss } = seededRandom(20261208);
// imatrix values: mean squared activations, positive, spread over a few decades.
const weights = () => block(() => Math.exp(2 * gauss()) * 0.1);
const ternary = () => Math.floor(rand() * 3) - 1;

const cases = [
  ['zeros', block(() => 0), weights()],
  ['gaussian weights (σ 0.02)', block(() => gauss() * 0.02), weights()],
  ['gaussian (σ 1)', block(() => gauss()), weights()],
  ['gaussian (σ 1), all importance 1', block(() => gauss()), block(() => 1)],
  ['heavy-tailed', block(() => gauss() ** 3 * 0.01), weights()],
  ['ties: multiples of 1/4', block(() => Math.round(gauss() * 4) / 4), weights()],
  ['ties: small integers', block(() => Math.round(gauss() * 7)), weights()],
  ['ties: small integers, equal importance', block(() => Math.round(gauss() * 3)), block(() => 0.5)],
  ['ties: three values, equal importance', block(() => ternary() * 0.01), block(() => 1)],
  ['on the grid, shifted up: (t + 1/8) times 0.02', block(() => (ternary() + 0.125) * 0.02), weights()],
  ['on the grid, shifted down: (t − 1/8) times 0.02', block(() => (ternary() - 0.125) * 0.02), weights()],
  ['shifted up in the first 8 of 16, down in the second', block((i) => (ternary() + ((i & 15) < 8 ? 0.125 : -0.125)) * 0.5), weights()],
  ['equal magnitudes of both signs', block(() => (rand() < 0.5 ? -0.125 : 0.125)), weights()],
  ['all equal and positive', block(() => 0.3), weights()],
  ['all equal and negative', block(() => -0.3), weights()],
  ['one 32 all zero', block((i) => (i >> 5 === 2 ? 0 : gauss() * 0.02)), weights()],
  ['first and fifth 32 all zero', block((i) => (i >> 5 === 0 || i >> 5 === 4 ? 0 : gauss())), weights()],
  ['one 16 below 1e-7 (GROUP_MAX_EPS_IQ1_M)', block((i) => (i >> 4 === 5 ? gauss() * 1e-9 : gauss() * 0.02)), weights()],
  ['subnormal', block(() => gauss() * 1e-39), weights()],
  ['tiny (1e-13, below GROUP_MAX_EPS_IQ1_S)', block(() => gauss() * 1e-13), weights()],
  ['around GROUP_MAX_EPS_IQ1_S', block(() => gauss() * 5e-13), weights()],
  ['1e-9 (between the two epsilons)', block(() => gauss() * 1e-9), weights()],
  ['1e-20 (weights underflow)', block(() => gauss() * 1e-20), weights()],
  ['scales falling per 32', block((i) => gauss() * 10 ** -(i >> 5)), weights()],
  ['scales falling per 16', block((i) => gauss() * 2 ** -(i >> 4)), weights()],
  ['sparse', block(() => (rand() < 0.05 ? gauss() : 0)), weights()],
  ['all negative', block(() => -Math.abs(gauss())), weights()],
  ['all positive', block(() => Math.abs(gauss())), weights()],
  ['large (1e4)', block(() => gauss() * 1e4), weights()],
  ['1e8 (the f16 scale overflows)', block(() => gauss() * 1e8), weights()],
  ['1e18 (sums overflow f32)', block(() => gauss() * 1e18), weights()],
  ['zero importance everywhere', block(() => gauss()), block(() => 0)],
  ['zero importance on half', block(() => gauss()), block((i) => (i & 1 ? 0 : 1))],
  ['importance 0 on one 32', block(() => gauss()), block((i) => (i >> 5 === 3 ? 0 : 1))],
  ['importance 0 on one 8', block(() => gauss()), block((i) => (i >> 3 === 9 ? 0 : 1))],
  ['huge importance (1e30)', block(() => gauss()), block(() => 1e30)],
  ['huge importance (1e30), values 1e3', block(() => gauss() * 1e3), block(() => 1e30)],
  ['subnormal importance', block(() => gauss()), block(() => 1e-42)],
  ['a NaN', block((i) => (i === 77 ? NaN : gauss())), weights()],
  ['an Inf', block((i) => (i === 200 ? -Infinity : gauss())), weights()],
  ['a NaN importance', block(() => gauss()), block((i) => (i === 40 ? NaN : 1))],
];
for (let k = 0; k < 16; k++) cases.push([`random ${k}`, block(() => gauss() * 10 ** (rand() * 6 - 4)), weights()]);

const all = valuesAndWeights(cases);
const run = (type, size) => harnessBlocks(harness, ['q', type], all, cases.length, size);
const s = run('s', 50);
const m = run('m', 56);
const m0 = run('m0', 56);
const tables = (t) => tablesChecksum(harness, t);
const [ts, tm] = [tables('s'), tables('m')];
if (ts !== tm) throw new Error('IQ1_S and IQ1_M tables differ');
writeFileSync(new URL('./ggml-iq1-golden.json', import.meta.url), JSON.stringify({
  source: 'ggml-quants.c quantize_iq1_s / quantize_iq1_m with quant_weights, and quantize_iq1_m without (ggml-org/ggml d99724f, August 2026), gcc 12.2 -O2 -DNDEBUG -ffp-contract=off, x86-64, glibc 2.36',
  note: 'x, qw: the 256 f32 inputs and importance weights, little-endian hex; IQ1_S / IQ1_M: the block ggml writes, hex, or null where ggml aborts; IQ1_M_unweighted: quantize_iq1_m with quant_weights NULL (x² weights), qw unused; tables: FNV-1a of the harness\'s `tables` dump (the same for both)',
  tables: ts,
  blocks: cases.map(([name, x, w], i) => ({ name, x: hex(new Uint8Array(x.buffer)), qw: hex(new Uint8Array(w.buffer)), IQ1_S: s[i], IQ1_M: m[i], IQ1_M_unweighted: m0[i] })),
}, null, 1) + '\n');
console.log('blocks', cases.length, 'aborted (s, m, m0):', s.filter((v) => v === null).length, m.filter((v) => v === null).length, m0.filter((v) => v === null).length);
