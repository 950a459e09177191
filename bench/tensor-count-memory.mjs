/**
 * Peak RSS of `loramerge inspect` and `loramerge merge` on a base of N tiny tensors named like a
 * mixture-of-experts checkpoint's (model.layers.NN.mlp.experts.NNN.gate_proj.weight), with an
 * adapter on one of them: the memory MAX_TENSORS bounds. Run after `npm run build:lib`:
 *   node bench/tensor-count-memory.mjs 50000,100000
 * Counts above MAX_TENSORS are refused (and measured as such). `--shards S` splits the base into S
 * files with a model.safetensors.index.json, as a large checkpoint is shipped:
 *   node bench/tensor-count-memory.mjs 140000 --shards 61
 * `--page` also merges each base in the demo page (built and served as `npm run build` ships it,
 * default settings, output to browser storage) and reports the browser's peak memory above idle.
 */
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBenchBrowser, mergeInPage, serveDemo } from './page-merge.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'loramerge-tensor-count-'));

/** A safetensors file from header pieces; the data section left sparse (zeros). */
function writeSparse(path, parts, dataBytes) {
  const buffers = parts.map((p) => Buffer.from(p));
  let length = buffers.reduce((n, p) => n + p.length, 0);
  const pad = (8 - (length % 8)) % 8;
  buffers.push(Buffer.alloc(pad, 0x20));
  length += pad;
  const fd = openSync(path, 'w');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(length));
  writeSync(fd, prefix);
  for (const b of buffers) writeSync(fd, b);
  ftruncateSync(fd, 8 + length + dataBytes);
  closeSync(fd);
}

const name = (j) => `model.layers.${String(Math.floor(j / 3000)).padStart(2, '0')}.mlp.experts.${String(Math.floor(j / 3) % 1000).padStart(3, '0')}.${['gate_proj', 'up_proj', 'down_proj'][j % 3]}.weight`;

/** The header of tensors [from, to): each BF16 [1, 1], two bytes. */
function header(from, to) {
  const parts = ['{'];
  for (let i = from; i < to; i += 10_000) {
    const chunk = [];
    for (let j = i; j < Math.min(to, i + 10_000); j++) chunk.push(`${j > from ? ',' : ''}"${name(j)}":{"dtype":"BF16","shape":[1,1],"data_offsets":[${(j - from) * 2},${(j - from) * 2 + 2}]}`);
    parts.push(chunk.join(''));
  }
  parts.push('}');
  return parts;
}

/** The base: one file, or `shards` files and their index in a folder. */
function writeBase(count, shards) {
  if (shards <= 1) {
    const path = join(dir, `base-${count}.safetensors`);
    writeSparse(path, header(0, count), count * 2);
    return path;
  }
  const folder = join(dir, `base-${count}`);
  mkdirSync(folder);
  const weightMap = {};
  for (let s = 0; s < shards; s++) {
    const from = Math.floor((count * s) / shards);
    const to = Math.floor((count * (s + 1)) / shards);
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    writeSparse(join(folder, file), header(from, to), (to - from) * 2);
    for (let j = from; j < to; j++) weightMap[name(j)] = file;
  }
  writeFileSync(join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: count * 2 }, weight_map: weightMap }));
  return folder;
}

const module = name(0).replace(/\.weight$/, '');
mkdirSync(join(dir, 'adapter'));
writeFileSync(join(dir, 'adapter', 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 1, lora_alpha: 1 }));
writeSparse(join(dir, 'adapter', 'adapter_model.safetensors'), [JSON.stringify({
  [`base_model.model.${module}.lora_A.weight`]: { dtype: 'F32', shape: [1, 1], data_offsets: [0, 4] },
  [`base_model.model.${module}.lora_B.weight`]: { dtype: 'F32', shape: [1, 1], data_offsets: [4, 8] },
})], 8);

let site;
try {
  const shardsAt = process.argv.indexOf('--shards');
  const shards = shardsAt > 0 ? Number(process.argv[shardsAt + 1]) : 1;
  if (!Number.isInteger(shards) || shards < 1) throw new Error(`--shards takes a positive integer, not "${process.argv[shardsAt + 1]}"`);
  site = process.argv.includes('--page') ? await serveDemo() : undefined;
  const counts = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : '50000,100000';
  for (const count of counts.split(',').map(Number)) {
    const base = writeBase(count, shards);
    const out = join(dir, shards > 1 ? `merged-${count}` : `merged-${count}.safetensors`);
    for (const args of [['inspect', base], ['merge', '--base', base, '--adapter', join(dir, 'adapter'), '--out', out, '--backend', 'cpu']]) {
      const rssFile = join(dir, 'rss.txt');
      rmSync(rssFile, { force: true });
      const started = Date.now();
      const run = spawnSync(process.execPath, ['--import', join(root, 'bench', 'rss-preload.mjs'), join(root, 'bin', 'loramerge.js'), ...args], {
        env: { ...process.env, LORAMERGE_BENCH_RSS_FILE: rssFile }, encoding: 'utf8', maxBuffer: 1 << 28,
      });
      const peakMiB = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) / 1024;
      const error = run.stderr.split('\n').find((l) => l.startsWith('error: ')) ?? '';
      console.log(`${count} tensors, ${args[0]}: exit ${run.status}, peak RSS ${peakMiB.toFixed(0)} MiB, ${((Date.now() - started) / 1000).toFixed(1)} s ${error}`);
    }
    if (site) {
      const started = Date.now();
      const browser = await launchBenchBrowser();
      try {
        const files = shards > 1 ? readdirSync(base).map((f) => join(base, f)) : base;
        const adapterFiles = ['adapter_config.json', 'adapter_model.safetensors'].map((f) => join(dir, 'adapter', f));
        const r = await mergeInPage(browser, site.url, { base: files, adapterFiles, backend: 'cpu' });
        console.log(`${count} tensors, page merge: peak ${((r.peakBytes - r.idleBytes) / 2 ** 20).toFixed(0)} MiB above idle ` +
          `(idle ${(r.idleBytes / 2 ** 20).toFixed(0)} MiB), merge ${r.seconds.toFixed(1)} s, ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
      } catch (e) {
        console.log(`${count} tensors, page merge: failed: ${e.message.split('\n')[0]}`);
      } finally {
        await browser.close();
      }
    }
    rmSync(base, { recursive: true });
    rmSync(out, { recursive: true, force: true });
  }
} finally {
  await site?.close();
  rmSync(dir, { recursive: true, force: true });
}
