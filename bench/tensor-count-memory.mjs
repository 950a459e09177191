/**
 * Peak RSS of `loramerge inspect` and `loramerge merge` on a base of N tiny tensors named like a
 * mixture-of-experts checkpoint's (model.layers.NN.mlp.experts.NNN.gate_proj.weight), with an
 * adapter on one of them: the memory MAX_TENSORS bounds. Run after `npm run build:lib`:
 *   node bench/tensor-count-memory.mjs 50000,100000
 * Counts above MAX_TENSORS are refused (and measured as such).
 */
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

function header(count) {
  const parts = ['{'];
  for (let i = 0; i < count; i += 10_000) {
    const chunk = [];
    for (let j = i; j < Math.min(count, i + 10_000); j++) chunk.push(`${j ? ',' : ''}"${name(j)}":{"dtype":"BF16","shape":[1,1],"data_offsets":[${j * 2},${j * 2 + 2}]}`);
    parts.push(chunk.join(''));
  }
  parts.push('}');
  return parts;
}

const module = name(0).replace(/\.weight$/, '');
mkdirSync(join(dir, 'adapter'));
writeFileSync(join(dir, 'adapter', 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 1, lora_alpha: 1 }));
writeSparse(join(dir, 'adapter', 'adapter_model.safetensors'), [JSON.stringify({
  [`base_model.model.${module}.lora_A.weight`]: { dtype: 'F32', shape: [1, 1], data_offsets: [0, 4] },
  [`base_model.model.${module}.lora_B.weight`]: { dtype: 'F32', shape: [1, 1], data_offsets: [4, 8] },
})], 8);

try {
  for (const count of (process.argv[2] ?? '50000,100000').split(',').map(Number)) {
    const base = join(dir, `base-${count}.safetensors`);
    writeSparse(base, header(count), count * 2);
    const out = join(dir, `merged-${count}.safetensors`);
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
    rmSync(base);
    rmSync(out, { force: true });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
