// Writes ggml-iq2-golden.json: 256-value blocks of many kinds, importance weights for them, and the
// bytes ggml's own quantize_iq2_xxs, quantize_iq2_xs and quantize_iq2_s write for them with those weights (llama-quantize --imatrix),
// through the harness ggml-iq2-harness.c (its header says how to build it), plus an FNV-1a
// checksum of the tables its iq2xs_init_impl builds (the harness's `tables` dump).
// Run: node ggml-iq2-golden.mjs ./harness
import { writeFileSync } from 'node:fs';
import { block, harnessBlocks, hex, seededRandom, tablesChecksum, valuesAndWeights } from './ggml-golden-common.mjs';

const harness = process.argv[2] ?? './harness';
const { rand, gauss } = seededRandom(20261207);
// imatrix values: mean squared activations, positive, spread over a few decades.
const weights = () => block(() => Math.exp(2 * gauss()) * 0.1);

const cases = [
  ['zeros', block(() => 0), weights()],
  ['gaussian weights (σ 0.02)', block(() => gauss() * 0.02), weights()],
  ['gaussian (σ 1)', block(() => gauss()), weights()],
  ['gaussian (σ 1), all importance 1', block(() => gauss()), block(() => 1)],
  ['heavy-tailed', block(() => gauss() ** 3 * 0.01), weights()],
  ['ties: multiples of 1/4', block(() => Math.round(gauss() * 4) / 4), weights()],
  ['ties: small integers', block(() => Math.round(gauss() * 7)), weights()],
  ['ties: small integers, equal importance', block(() => Math.round(gauss() * 3)), block(() => 0.5)],
  ['on the grid: levels 1, 3, 5 times 0.01', block(() => (2 * Math.floor(rand() * 3) + 1) * (rand() < 0.5 ? -1 : 1) * 0.01), weights()],
  ['equal magnitudes of both signs', block(() => (rand() < 0.5 ? -0.125 : 0.125)), weights()],
  ['all equal and positive', block(() => 0.3), weights()],
  ['one negative per 8 (a sign given up)', block((i) => (i % 8 === 3 ? -1 : 1) * (0.5 + rand()) * 0.01), weights()],
  ['one 32 all zero', block((i) => (i >> 5 === 2 ? 0 : gauss() * 0.02)), weights()],
  ['first and fifth 32 all zero', block((i) => (i >> 5 === 0 || i >> 5 === 4 ? 0 : gauss())), weights()],
  ['subnormal', block(() => gauss() * 1e-39), weights()],
  ['tiny (1e-16, below GROUP_MAX_EPS)', block(() => gauss() * 1e-16), weights()],
  ['around GROUP_MAX_EPS', block(() => gauss() * 5e-16), weights()],
  ['1e-20 (weights underflow)', block(() => gauss() * 1e-20), weights()],
  ['scales falling per 32', block((i) => gauss() * 10 ** -(i >> 5)), weights()],
  ['sparse', block(() => (rand() < 0.05 ? gauss() : 0)), weights()],
  ['all negative', block(() => -Math.abs(gauss())), weights()],
  ['large (1e4)', block(() => gauss() * 1e4), weights()],
  ['1e8 (the f16 scale overflows)', block(() => gauss() * 1e8), weights()],
  ['1e18 (sums overflow f32)', block(() => gauss() * 1e18), weights()],
  ['zero importance everywhere', block(() => gauss()), block(() => 0)],
  ['zero importance on half', block(() => gauss()), block((i) => (i & 1 ? 0 : 1))],
  ['importance 0 on one 32', block(() => gauss()), block((i) => (i >> 5 === 3 ? 0 : 1))],
  ['huge importance (1e30)', block(() => gauss()), block(() => 1e30)],
  ['subnormal importance', block(() => gauss()), block(() => 1e-42)],
  ['a NaN', block((i) => (i === 77 ? NaN : gauss())), weights()],
  ['an Inf', block((i) => (i === 200 ? -Infinity : gauss())), weights()],
];
for (let k = 0; k < 8; k++) cases.push([`random ${k}`, block(() => gauss() * 10 ** (rand() * 6 - 4)), weights()]);

const all = valuesAndWeights(cases);
const run = (type, size) => harnessBlocks(harness, ['q', type], all, cases.length, size);
const xxs = run('xxs', 66);
const xs = run('xs', 74);
const s = run('s', 82);
const s0 = run('s0', 82);
const tables = (t) => tablesChecksum(harness, t);
writeFileSync(new URL('./ggml-iq2-golden.json', import.meta.url), JSON.stringify({
  source: 'ggml-quants.c quantize_iq2_xxs / quantize_iq2_xs / quantize_iq2_s with quant_weights, and quantize_iq2_s without (ggml-org/ggml d99724f, August 2026), gcc 12.2 -O2 -DNDEBUG -ffp-contract=off, x86-64',
  note: 'x, qw: the 256 f32 inputs and importance weights, little-endian hex; IQ2_XXS / IQ2_XS / IQ2_S: the block ggml writes, hex, or null where ggml aborts; IQ2_S_unweighted: quantize_iq2_s with quant_weights NULL (weights σ²/4 + x²), qw unused; tables: FNV-1a of the harness\'s `tables` dump',
  tables: { IQ2_XXS: tables('xxs'), IQ2_XS: tables('xs'), IQ2_S: tables('s') },
  blocks: cases.map(([name, x, w], i) => ({ name, x: hex(new Uint8Array(x.buffer)), qw: hex(new Uint8Array(w.buffer)), IQ2_XXS: xxs[i], IQ2_XS: xs[i], IQ2_S: s[i], IQ2_S_unweighted: s0[i] })),
}, null, 1) + '\n');
console.log('blocks', cases.length, 'aborted (xxs, xs, s, s0):', xxs.filter((v) => v === null).length, xs.filter((v) => v === null).length, s.filter((v) => v === null).length, s0.filter((v) => v === null).length);
