/**
 * Builds of the GGUF block encoders against each other in one process: each `dist` folder given (a
 * copy of `dist/` built from an older commit, a second copy of it for the noise floor, the current
 * build) encodes the same random normal values (and importance weights, as bench/imatrix-encode.mjs
 * draws them) through the type's codec, the builds taking turns rep by rep so that a machine whose
 * load changes slows each alike; the least user CPU time and wall time of each kept, bytes compared
 * with the first build's. CPU time says more than wall time on a loaded machine.
 *
 * usage: node bench/encoder-builds.mjs [--reps N] [--rows N] [--types IQ2_XXS,IQ2_S,IQ2_S-plain] DIST...
 *   (a type ending in -plain runs the codec's encode without weights; `cp -r dist /tmp/old` before a change, then
 *    `node bench/encoder-builds.mjs /tmp/old /tmp/old-copy dist`)
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { encodeData } from './encode-data.mjs';

const { values: opts, positionals: dirs } = parseArgs({
  allowPositionals: true,
  options: { reps: { type: 'string', default: '9' }, rows: { type: 'string', default: '64' }, types: { type: 'string', default: 'IQ2_XXS,IQ2_XS,IQ2_S,IQ2_S-plain' } },
});
if (dirs.length === 0) throw new Error('give one or more dist folders');
const reps = Number(opts.reps);
const ROWS = Number(opts.rows);
const COLS = 4096;
const builds = [];
for (const d of dirs) {
  const at = (p) => pathToFileURL(resolve(d, p)).href;
  builds.push({ name: d, registry: await import(at('formats/gguf/codecs/registry.js')), types: await import(at('formats/gguf/ggml-types.js')) });
}

const { values, qw } = encodeData(20261207, ROWS, COLS);

/** Row by row, as a tensor is encoded. */
function rows(codec, type, weighted) {
  const rowBytes = (COLS / type.blockSize) * type.blockBytes;
  const out = new Uint8Array(ROWS * rowBytes);
  for (let r = 0; r < ROWS; r++) {
    const src = values.subarray(r * COLS, (r + 1) * COLS);
    const dst = out.subarray(r * rowBytes, (r + 1) * rowBytes);
    if (weighted) codec.encodeWeighted(src, dst, qw);
    else codec.encode(src, dst);
  }
  return out;
}

let differ = 0;
for (const spec of opts.types.split(',')) {
  const weighted = !spec.endsWith('-plain');
  const name = spec.replace(/-plain$/, '').toUpperCase();
  const runs = builds.map((b) => {
    const type = b.types.ggmlTypeByName(name);
    if (!type) throw new Error(`--types: no ggml type ${name}`);
    const codec = b.registry.blockCodec(type);
    rows(codec, type, weighted); // the grid tables and the module are set up outside the timing
    return { type, codec, cpu: Infinity, wall: Infinity, out: undefined };
  });
  for (let i = 0; i < reps; i++) {
    for (const r of runs) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      r.out = rows(r.codec, r.type, weighted);
      r.wall = Math.min(r.wall, performance.now() - t0);
      r.cpu = Math.min(r.cpu, process.cpuUsage(c0).user / 1000);
    }
  }
  const same = runs.every((r) => Buffer.from(r.out).equals(Buffer.from(runs[0].out)));
  if (!same) differ++;
  const each = runs.map((r, k) => `${dirs[k]} ${r.cpu.toFixed(0)} ms CPU (${(runs[0].cpu / r.cpu).toFixed(3)}×), ${r.wall.toFixed(0)} ms wall`).join('; ');
  console.log(`${name} ${weighted ? 'with weights' : 'without weights'}, ${ROWS}×${COLS} (${(ROWS * COLS) / 256} blocks), least of ${reps}: ${each}; bytes ${same ? 'identical' : 'DIFFER'}`);
}
if (differ) process.exitCode = 1;
