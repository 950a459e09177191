/**
 * `loramerge sample [DIR]`: writes the built-in sample (a small Llama-shaped model and a PEFT
 * adapter for it) to DIR/base and DIR/adapter, merges them into DIR/merged, and checks one merged
 * tensor against a float64 recomputation, so a newcomer sees the whole job work end to end.
 */
import { lstat, mkdir, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeToF32, type FloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import { openSafetensors } from '../formats/safetensors-reader.js';
import { fsError, onPath } from '../io/fs-errors.js';
import { openNodeByteSource } from '../io/node-byte-source.js';
import { isLoramergeEntry } from '../io/temp-files.js';
import { generateSample } from '../sample/index.js';
import type { SampleCommand } from './args.js';
import { runMerge, type MergeOutput } from './merge-command.js';
import { listingLine, stderrLine } from './terminal-text.js';

/**
 * DIR may hold only what an earlier sample wrote (its files are replaced): DIR/base and DIR/merged
 * are overwritten and replaced whole, so a model or notes of the user's there would be lost, and a
 * stray file in DIR/base would be merged as part of the sample. A link is not followed.
 */
async function refuseForeignEntries(dir: string, layout: Record<string, string[]>): Promise<void> {
  const listing = async (path: string): Promise<string[]> => {
    try {
      return await readdir(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fsError(e, path, 'listing it', 'sample DIR');
    }
  };
  const foreign = (path: string) => new MergeError('OUTPUT_EXISTS',
    `${path}: not written by loramerge sample, which writes base/, adapter/ and merged/ into ${dir}; name a new or empty folder`);
  for (const entry of await listing(dir)) {
    if (isLoramergeEntry(entry)) continue;
    const path = join(dir, entry);
    if (!layout[entry] || !(await lstat(path)).isDirectory()) throw foreign(path);
    for (const file of await listing(path)) if (!layout[entry].includes(file)) throw foreign(join(path, file));
  }
}

async function writeFolder(dir: string, files: Record<string, Uint8Array>): Promise<void> {
  await onPath(dir, 'creating it', () => mkdir(dir, { recursive: true }), 'sample DIR');
  for (const [name, bytes] of Object.entries(files)) await onPath(join(dir, name), 'writing', () => writeFile(join(dir, name), bytes), 'sample DIR');
}

export async function runSample(cmd: SampleCommand, io?: MergeOutput): Promise<number> {
  const log = io ? io.err : stderrLine;
  const sample = await generateSample('small');
  const baseDir = join(cmd.dir, 'base');
  const adapterDir = join(cmd.dir, 'adapter');
  const mergedDir = join(cmd.dir, 'merged');
  const baseNames = Object.keys(sample.base);
  await refuseForeignEntries(cmd.dir, { base: baseNames, adapter: Object.keys(sample.adapter), merged: baseNames });
  try {
    await writeFolder(baseDir, sample.base);
    await writeFolder(adapterDir, sample.adapter);
  } catch (e) {
    // A full disk: leave no half-written sample (both folders hold only the sample's files, checked above).
    await Promise.all([baseDir, adapterDir].map((d) => rm(d, { recursive: true, force: true })));
    await rmdir(cmd.dir).catch(() => undefined); // only if now empty
    throw e;
  }
  log(listingLine(`sample written to ${baseDir} and ${adapterDir}`));
  const code = await runMerge({
    command: 'merge',
    base: baseDir,
    adapters: [{ path: adapterDir, weight: 1 }],
    out: mergedDir,
    backend: cmd.backend,
    dryRun: false,
    overwrite: true,
  }, io);
  if (code !== 0) return code;
  const worst = await checkOneTensor(baseDir, adapterDir, mergedDir, sample.options.alpha / sample.options.rank);
  log(`check: ${worst.name} matches a float64 recomputation (largest difference ${worst.ulps} ulp of ${worst.dtype})`);
  return 0;
}

/** Recomputes the first layer's q_proj in float64 and compares it with the merged file. */
async function checkOneTensor(baseDir: string, adapterDir: string, mergedDir: string, scale: number) {
  const open = async (path: string) => openSafetensors(await openNodeByteSource(path));
  const [base, adapter, merged] = await Promise.all([
    open(join(baseDir, 'model.safetensors')),
    open(join(adapterDir, 'adapter_model.safetensors')),
    open(join(mergedDir, 'model.safetensors')),
  ]);
  try {
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const module = 'base_model.model.model.layers.0.self_attn.q_proj';
    const read = async (file: typeof base, key: string) => {
      const entry = file.get(key);
      if (!entry) throw new MergeError('NOT_FOUND', `sample: tensor ${key} missing`);
      return { entry, values: decodeToF32(await file.read(entry), entry.dtype as FloatDType) };
    };
    const w = await read(base, name);
    const a = await read(adapter, `${module}.lora_A.weight`);
    const b = await read(adapter, `${module}.lora_B.weight`);
    const out = await read(merged, name);
    const [rows, cols] = w.entry.shape;
    const rank = a.entry.shape[0];
    let worstUlps = 0;
    for (let o = 0; o < rows; o++) {
      for (let i = 0; i < cols; i++) {
        let delta = 0;
        for (let k = 0; k < rank; k++) delta += b.values[o * rank + k] * a.values[k * cols + i];
        const exact = w.values[o * cols + i] + scale * delta;
        const got = out.values[o * cols + i];
        // One ulp of bf16 at this magnitude: 2^(exponent - 7).
        const ulp = 2 ** (Math.floor(Math.log2(Math.max(Math.abs(exact), 2 ** -126))) - 7);
        worstUlps = Math.max(worstUlps, Math.abs(got - exact) / ulp);
      }
    }
    if (worstUlps > 1) throw new MergeError('NON_FINITE', `sample check failed: ${name} is ${worstUlps.toFixed(2)} ulp off`);
    return { name, ulps: worstUlps.toFixed(2), dtype: out.entry.dtype };
  } finally {
    await Promise.all([base.source.close(), adapter.source.close(), merged.source.close()]);
  }
}
