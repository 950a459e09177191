// Writes ggml-iq3-golden.json: 256-value blocks of many kinds and the bytes ggml's own
// quantize_iq3_xxs / quantize_iq3_s (quant_weights = NULL) write for them, through the harness
// ggml-iq3-harness.c (its header says how to build it), plus an FNV-1a checksum of the tables its
// iq3xs_init_impl builds (the harness's `tables` dump). Run: node ggml-iq3-golden.mjs ./harness
import { writeFileSync } from 'node:fs';
import { block, harnessBlocks, hex, seededRandom, tablesChecksum } from './ggml-golden-common.mjs';

const harness = process.argv[2] ?? './harness';
const { rand, gauss } = seededRandom(20240229);
/**
 * 0.02·gaussian values from their own seed: these seeds (found by a search) give blocks whose f16
 * scale d·1.0125 (IQ3_XXS) or d·1.033 (IQ3_S) rounds differently when the factor is not first
 * rounded to f32 as C's 1.0125f is.
 */
const seeded = (seed) => {
  const { gauss: g } = seededRandom(seed);
  return block(() => g() * 0.02);
};

const cases = [
  ['zeros', block(() => 0)],
  ['gaussian weights (σ 0.02)', block(() => gauss() * 0.02)],
  ['gaussian (σ 1)', block(() => gauss())],
  ['heavy-tailed', block(() => gauss() ** 3 * 0.01)],
  ['ties: multiples of 1/4', block(() => Math.round(gauss() * 4) / 4)],
  ['ties: small integers', block(() => Math.round(gauss() * 7))],
  ['on the grid: odd levels times 0.01', block(() => (2 * Math.floor(rand() * 8) + 1) * (rand() < 0.5 ? -1 : 1) * 0.01)],
  ['equal magnitudes of both signs', block(() => (rand() < 0.5 ? -0.125 : 0.125))],
  ['all equal and positive', block(() => 0.3)],
  ['one negative per 8 (IQ3_XXS gives up a sign)', block((i) => (i % 8 === 3 ? -1 : 1) * (0.5 + rand()) * 0.01)],
  ['one 32 all zero (IQ3_S: later entries shift)', block((i) => (i >> 5 === 2 ? 0 : gauss() * 0.02))],
  ['first and fifth 32 all zero', block((i) => (i >> 5 === 0 || i >> 5 === 4 ? 0 : gauss()))],
  ['subnormal', block(() => gauss() * 1e-39)],
  ['tiny (below IQ3_XXS\'s 1e-8)', block(() => gauss() * 1e-9)],
  ['around 1e-8', block(() => gauss() * 3e-9)],
  ['1e-20 (weights underflow)', block(() => gauss() * 1e-20)],
  ['scales falling per 32', block((i) => gauss() * 10 ** -(i >> 5))],
  ['sparse', block(() => (rand() < 0.05 ? gauss() : 0))],
  ['all negative', block(() => -Math.abs(gauss()))],
  ['large (1e4)', block(() => gauss() * 1e4)],
  ['1e8 (the f16 scale overflows)', block(() => gauss() * 1e8)],
  ['5e12 (distances overflow f32)', block(() => gauss() * 5e12)],
  ['1e30 (ggml aborts)', block(() => gauss() * 1e30)],
  ['a NaN', block((i) => (i === 77 ? NaN : gauss()))],
  ['an Inf', block((i) => (i === 200 ? -Infinity : gauss()))],
  ['IQ3_XXS f16 scale at the fudge factor\'s rounding (seed 13184)', seeded(13184)],
  ['IQ3_XXS f16 scale at the fudge factor\'s rounding (seed 17955)', seeded(17955)],
  ['IQ3_S f16 scale at the fudge factor\'s rounding (seed 55061)', seeded(55061)],
];

const all = new Float32Array(cases.length * 256);
cases.forEach(([, x], i) => all.set(x, i * 256));
const run = (type, size) => harnessBlocks(harness, [type], all, cases.length, size);
const xxs = run('xxs', 98);
const s = run('s', 110);
const tables = (gs) => tablesChecksum(harness, gs);
writeFileSync(new URL('./ggml-iq3-golden.json', import.meta.url), JSON.stringify({
  source: 'ggml-quants.c quantize_iq3_xxs / quantize_iq3_s, quant_weights = NULL (ggml-org/ggml d99724f, August 2026), gcc 12.2 -O2 -DNDEBUG -ffp-contract=off, x86-64',
  note: 'x: the 256 f32 inputs, little-endian hex; IQ3_XXS / IQ3_S: the block ggml writes, hex, or null where ggml aborts',
  tables: { IQ3_XXS: tables(256), IQ3_S: tables(512) },
  blocks: cases.map(([name, x], i) => ({ name, x: hex(new Uint8Array(x.buffer)), IQ3_XXS: xxs[i], IQ3_S: s[i] })),
}, null, 1) + '\n');
console.log('aborted (xxs, s):', xxs.filter((v) => v === null).length, s.filter((v) => v === null).length);
