/**
 * The benchmark's GGUF case: the bench's Llama shape (fewer layers: re-encoding k-quants is the
 * slow part) as a Q4_K_M-style GGUF, merged with an r=16 PEFT LoRA on all seven projections
 * through the CLI on the CPU backend (what `auto` picks without a GPU): keeping every tensor's type
 * (requantized by llama.cpp's reference rules; the CLI re-encodes on every CPU thread, and the same
 * merge on one thread shows what that gains), and writing merged tensors as F16 as llama.cpp's
 * export-lora does (`--dtype f16 --dtype-merged-only`), beside a `cp` of the base.
 * Then the quality table: the error of a merged Q4_K (and Q6_K) tensor against its float64
 * truth, next to the error of quantizing that truth directly and of the F16 output.
 */
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { blockCodec } from '../dist/formats/gguf/codecs/registry.js';
import { openGguf } from '../dist/formats/gguf/gguf-reader.js';
import { openSafetensors } from '../dist/formats/safetensors-reader.js';
import { openNodeByteSource } from '../dist/io/node-byte-source.js';
import { decodeToF32 } from '../dist/dtype.js';
import { writeGgufBase } from './gguf-model.mjs';
import { writeAdapter } from './make-model.mjs';

/** Decoded values of one GGUF tensor. */
async function ggufValues(path, name) {
  const file = await openGguf(await openNodeByteSource(path));
  try {
    const t = file.tensor(name);
    const bytes = await file.readPart(t, 0, t.byteLength);
    const out = new Float32Array((bytes.byteLength / t.type.blockBytes) * t.type.blockSize);
    blockCodec(t.type).decode(bytes, out);
    return { values: out, type: t.type, rows: t.shape[0], cols: t.shape[1] };
  } finally {
    await file.source.close();
  }
}

async function adapterFactors(dir, module) {
  const file = await openSafetensors(await openNodeByteSource(join(dir, 'adapter_model.safetensors')));
  try {
    const read = async (name) => {
      const e = file.get(name);
      return { values: decodeToF32(await file.read(e), e.dtype), shape: e.shape };
    };
    return { a: await read(`base_model.model.${module}.lora_A.weight`), b: await read(`base_model.model.${module}.lora_B.weight`) };
  } finally {
    await file.source.close();
  }
}

function errors(got, truth) {
  let sq = 0;
  let max = 0;
  for (let i = 0; i < truth.length; i++) {
    const e = Math.abs(got[i] - truth[i]);
    sq += e * e;
    if (e > max) max = e;
  }
  return { rms: Math.sqrt(sq / truth.length), max };
}

/** W + s·B·A in float64 for one module (o_proj and down_proj: no row permutation in GGUF). */
async function quality(baseFile, adapterDir, outputs, tensor, module, scale) {
  const base = await ggufValues(baseFile, tensor);
  const { a, b } = await adapterFactors(adapterDir, module);
  const r = a.shape[0];
  const truth = new Float64Array(base.values.length);
  for (let o = 0; o < base.rows; o++) {
    for (let c = 0; c < base.cols; c++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += b.values[o * r + k] * a.values[k * base.cols + c];
      truth[o * base.cols + c] = base.values[o * base.cols + c] + scale * s;
    }
  }
  const codec = blockCodec(base.type);
  const direct = new Float32Array(truth.length);
  const blocks = new Uint8Array((truth.length / base.type.blockSize) * base.type.blockBytes);
  codec.encode(Float32Array.from(truth), blocks);
  codec.decode(blocks, direct);
  const row = { tensor, type: base.type.name, delta: errors(base.values, truth), direct: errors(direct, truth) };
  for (const [name, path] of Object.entries(outputs)) row[name] = errors((await ggufValues(path, tensor)).values, truth);
  return row;
}

export async function runGgufBench(dir, model, { runNode, runTimed, root, log, reps }) {
  const o = { ...model, layers: model.ggufLayers };
  const baseFile = join(dir, 'gguf-base.gguf');
  const adapterDir = join(dir, 'gguf-adapter');
  const t0 = performance.now();
  const base = await writeGgufBase(baseFile, o);
  await writeAdapter(adapterDir, o);
  log(`gguf model: ${(base.bytes / 1e9).toFixed(3)} GB Q4_K_M-style, ${o.layers} layers (written in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const cli = (extra) => async (out) => {
    const r = await runNode(join(root, 'bin', 'loramerge.js'),
      ['merge', '--base', baseFile, '--adapter', adapterDir, '--out', out, '--backend', 'cpu', ...extra], dir);
    return { ...r, note: /^backend: (.*)$/m.exec(r.stderr)?.[1] };
  };
  const contestants = [
    { name: 'cp', run: async (out) => ({ ...(await runTimed('cp', [baseFile, out])), rssMiB: undefined }) },
    { name: 'keep types', run: cli([]) },
    {
      name: 'keep types, 1 thread',
      run: async (out) => {
        const r = await runNode(join(root, 'bench', 'gguf-one-thread.mjs'), [baseFile, adapterDir, out], dir);
        return { ...r, note: /^backend: (.*)$/m.exec(r.stderr)?.[1] };
      },
    },
    { name: 'merged as F16', run: cli(['--dtype', 'f16', '--dtype-merged-only']) },
  ];
  const runs = [];
  const outputs = {};
  for (const c of contestants) {
    const out = join(dir, `gguf-out-${runs.length}.gguf`);
    let best;
    for (let i = 0; i < reps; i++) {
      await rm(out, { force: true });
      const r = await c.run(out);
      if (!best || r.seconds < best.seconds) best = r;
    }
    runs.push({ name: c.name, seconds: best.seconds, rssMiB: best.rssMiB, bytes: (await stat(out)).size, note: best.note });
    log(`gguf ${c.name}: ${best.seconds.toFixed(2)} s`);
    if (c.name === 'cp') await rm(out, { force: true });
    else outputs[c.name] = out;
  }
  // Threads change the time, never the bytes.
  const [threaded, oneThread] = await Promise.all([readFile(outputs['keep types']), readFile(outputs['keep types, 1 thread'])]);
  const sameBytes = threaded.equals(oneThread);
  const scale = model.alpha / model.rank;
  const table = [
    await quality(baseFile, adapterDir, outputs, 'blk.0.attn_output.weight', 'model.layers.0.self_attn.o_proj', scale),
    await quality(baseFile, adapterDir, outputs, 'blk.0.ffn_down.weight', 'model.layers.0.mlp.down_proj', scale),
  ];
  for (const path of Object.values(outputs)) await rm(path, { force: true });
  const merged = o.layers * 7;
  return { model: { ...o, baseBytes: base.bytes, mergedTensors: merged }, runs, sameBytes, quality: table };
}

const fmt = (x, d = 2) => (x === undefined ? '–' : x.toFixed(d));
const sci = (x) => x.toExponential(2);

function tableText(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function printGgufTables({ model, runs, sameBytes, quality: q }) {
  const cp = runs.find((r) => r.name === 'cp');
  const out = [];
  out.push(`GGUF: a ${(model.baseBytes / 1e9).toFixed(2)} GB Q4_K_M-style llama (${model.layers} layers, hidden ${model.hidden}, MLP ${model.intermediate}, ` +
    `vocab ${model.vocab}) with the same r=${model.rank} LoRA on q,k,v,o,gate,up,down (${model.mergedTensors} tensors re-encoded), file to file:`);
  out.push('');
  out.push(tableText(['run', 'seconds', 'vs cp', 'output GB', 'peak RSS MiB'], runs.map((r) => [
    r.name, fmt(r.seconds), r === cp ? '1' : `${fmt(r.seconds / cp.seconds, 1)}× slower`, fmt(r.bytes / 1e9, 3), r.rssMiB ? fmt(r.rssMiB, 0) : '–',
  ])));
  for (const r of runs) if (r.note) out.push(`${r.name} backend: ${r.note}`);
  const [threaded, one] = [runs.find((r) => r.name === 'keep types'), runs.find((r) => r.name === 'keep types, 1 thread')];
  out.push(`re-encoding on every CPU thread: ${fmt(one.seconds / threaded.seconds)}× faster than on one thread; outputs ${sameBytes ? 'byte-identical' : 'DIFFER'}`);
  out.push('');
  out.push('Error against the float64 truth W + s·B·A (RMS / max |error|); the update itself is "ΔW":');
  out.push('');
  out.push(tableText(['tensor', 'type', 'ΔW', 'merged, type kept', 'truth quantized directly', 'merged as F16'], q.map((r) => [
    r.tensor, r.type, `${sci(r.delta.rms)} / ${sci(r.delta.max)}`, `${sci(r['keep types'].rms)} / ${sci(r['keep types'].max)}`,
    `${sci(r.direct.rms)} / ${sci(r.direct.max)}`, `${sci(r['merged as F16'].rms)} / ${sci(r['merged as F16'].max)}`,
  ])));
  process.stdout.write(out.join('\n') + '\n\n');
}
