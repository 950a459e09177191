/**
 * The benchmark's quantized-base case: the bench's Llama projections (fewer layers) as an
 * AutoGPTQ 4-bit checkpoint (`checkpoint_format` "gptq", group 128, symmetric: `<m>.qweight` I32
 * (in/8, out), `<m>.qzeros` I32 (groups, out/8) storing z − 1, `<m>.scales` F16 (groups, out),
 * `<m>.g_idx` I32 (in)), merged with the same r=16 PEFT LoRA on all seven projections through the
 * CLI on the CPU backend: with its default threads (the worker pool decodes the GPTQ rows and
 * runs the merge's algebra) and with `--threads 1` (everything on the calling thread), in the same
 * run. Threads change the time, never the bytes: both outputs' SHA-256 are printed.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createSafetensorsWriter } from '../dist/formats/safetensors-writer.js';
import { sampleModelConfig, sampleProjections } from '../dist/sample/llama-tensors.js';
import { createXorshift } from './fill-random.mjs';
import { writeAdapter } from './make-model.mjs';
import { fileSink } from './file-sink.mjs';

const BITS = 4;
const GROUP = 128;
/** Layers of the bench model quantized: six (264 M weights) take a few seconds on two cores. */
const LAYERS = 6;

/**
 * base/{config.json, model.safetensors}: every projection of `o.layers` layers as GPTQ 4-bit;
 * codes drawn uniformly, zero points 8 (stored as 7, as AutoGPTQ's symmetric quantizer writes
 * them), scales f16 in 2^-9 … 2^-8.
 */
async function writeGptqBase(dir, o) {
  await mkdir(dir, { recursive: true });
  const quantization = {
    bits: BITS, group_size: GROUP, damp_percent: 0.01, desc_act: false, static_groups: false, sym: true, true_sequential: true,
    model_name_or_path: null, model_file_base_name: null, quant_method: 'gptq', checkpoint_format: 'gptq',
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...sampleModelConfig(o), torch_dtype: 'float16', quantization_config: quantization }, null, 2) + '\n');
  const perWord = 32 / BITS;
  const tensors = [];
  for (const p of sampleProjections(o)) {
    const groups = p.in / GROUP;
    tensors.push(
      { name: `${p.module}.qweight`, dtype: 'I32', shape: [p.in / perWord, p.out], fill: (a, next) => a.forEach((_, i) => (a[i] = next())) },
      { name: `${p.module}.qzeros`, dtype: 'I32', shape: [groups, p.out / perWord], fill: (a) => a.fill(0x77777777) },
      { name: `${p.module}.scales`, dtype: 'F16', shape: [groups, p.out], fill: (a, next) => a.forEach((_, i) => (a[i] = 0x1800 | (next() & 0x3ff))) },
      { name: `${p.module}.g_idx`, dtype: 'I32', shape: [p.in], fill: (a) => a.forEach((_, i) => (a[i] = Math.floor(i / GROUP))) },
    );
  }
  // The writer lays tensors out in name order, as safetensors' own writer does; they come in that order.
  tensors.sort((a, b) => (a.name < b.name ? -1 : 1));
  const path = join(dir, 'model.safetensors');
  const writer = await createSafetensorsWriter(await fileSink(path), tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })), { format: 'pt' });
  const next = createXorshift(o.seed ^ 0x6a09e667);
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const a = t.dtype === 'F16' ? new Uint16Array(n) : new Uint32Array(n);
    t.fill(a, next);
    await writer.writeChunk(t.name, new Uint8Array(a.buffer));
  }
  await writer.finish();
  return { path, bytes: writer.byteLength, projections: sampleProjections(o).length };
}

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

/** The case: writes the base and adapter into `dir`, merges on the pool's threads and on one, best of `reps` each. */
export async function runGptqBench(dir, model, { runNode, root, log, reps }) {
  const o = { ...model, layers: LAYERS };
  const baseDir = join(dir, 'gptq-base');
  const adapterDir = join(dir, 'gptq-adapter');
  const t0 = performance.now();
  const base = await writeGptqBase(baseDir, o);
  await writeAdapter(adapterDir, o);
  log(`gptq model: ${(base.bytes / 1e9).toFixed(3)} GB GPTQ 4-bit group ${GROUP}, ${o.layers} layers (written in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const cli = (extra) => async (out) => {
    const r = await runNode(join(root, 'bin', 'loramerge.js'), ['merge', '--base', baseDir, '--adapter', adapterDir, '--out', out, '--dtype', 'f16', '--backend', 'cpu', ...extra], dir);
    return { ...r, note: /^backend: (.*)$/m.exec(r.stderr)?.[1] };
  };
  const runs = [];
  for (const [name, extra] of [['pool threads', []], ['1 thread', ['--threads', '1']]]) {
    // A folder base (config.json names the quantization): the merged model is a folder.
    const out = join(dir, `gptq-out-${runs.length}`);
    const weights = join(out, 'model.safetensors');
    let best;
    for (let i = 0; i < reps; i++) {
      await rm(out, { recursive: true, force: true });
      const r = await cli(extra)(out);
      if (!best || r.seconds < best.seconds) best = r;
    }
    const run = { name, seconds: best.seconds, userSeconds: best.usage.userSeconds, rssMiB: best.rssMiB, bytes: (await stat(weights)).size, sha256: await sha256(weights), note: best.note };
    await rm(out, { recursive: true, force: true });
    runs.push(run);
    log(`gptq ${name}: ${run.seconds.toFixed(2)} s, user CPU ${run.userSeconds.toFixed(2)} s`);
  }
  await rm(baseDir, { recursive: true, force: true });
  await rm(adapterDir, { recursive: true, force: true });
  return { model: { ...o, baseBytes: base.bytes, mergedTensors: base.projections }, runs, sameBytes: runs[0].sha256 === runs[1].sha256 };
}

export function printGptqTable({ model, runs, sameBytes }) {
  const [pool, one] = runs;
  const out = [];
  out.push(`GPTQ: a ${(model.baseBytes / 1e9).toFixed(2)} GB 4-bit llama base (${model.layers} layers, hidden ${model.hidden}, MLP ${model.intermediate}, group ${GROUP}) ` +
    `with the same r=${model.rank} LoRA on q,k,v,o,gate,up,down (${model.mergedTensors} tensors), written as F16 on the CPU backend:`);
  for (const r of runs) {
    out.push(`  ${r.name.padEnd(12)} ${r.seconds.toFixed(2)} s, user CPU ${r.userSeconds.toFixed(2)} s, peak RSS ${r.rssMiB.toFixed(0)} MiB, ` +
      `${(r.bytes / 1e9).toFixed(3)} GB, sha256 ${r.sha256.slice(0, 16)}${r.note ? ` (${r.note})` : ''}`);
  }
  out.push(`decoding and merging on the pool's threads: ${(one.seconds / pool.seconds).toFixed(2)}× faster than on one thread; outputs ${sameBytes ? 'byte-identical' : 'DIFFER'}`);
  process.stdout.write(out.join('\n') + '\n\n');
  return sameBytes ? 0 : 1;
}
