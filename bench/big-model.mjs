/**
 * The large case of `npm run bench`: a Llama-2-7B-shaped f16 model cut to 9 layers (4.17 GB, hidden
 * 4096, MLP 11008) with an r=16 LoRA on all seven projections. Written once and kept in
 * bench/.cache (it takes longer to write than to merge), rewritten when its shape changes.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeAdapter, writeBaseModel } from './make-model.mjs';

export const BIG_MODEL = {
  seed: 11, layers: 9, hidden: 4096, intermediate: 11008, heads: 32, kvHeads: 32, vocab: 32000,
  dtype: 'F16', rank: 16, alpha: 32, adapterDtype: 'F32',
};

const cacheDir = join(dirname(fileURLToPath(import.meta.url)), '.cache', 'big-model');

/** { baseDir, adapterDir, baseBytes, generateSeconds } — generateSeconds is 0 when reused. */
export async function ensureBigModel(log = () => {}) {
  const stamp = join(cacheDir, 'complete.json');
  const want = JSON.stringify(BIG_MODEL);
  const baseDir = join(cacheDir, 'base'), adapterDir = join(cacheDir, 'adapter');
  try {
    const done = JSON.parse(await readFile(stamp, 'utf8'));
    if (JSON.stringify(done.model) === want) return { baseDir, adapterDir, baseBytes: done.baseBytes, generateSeconds: 0 };
  } catch { /* not written yet, or by another shape */ }
  await rm(cacheDir, { recursive: true, force: true });
  await mkdir(cacheDir, { recursive: true });
  log(`writing the ${BIG_MODEL.layers}-layer hidden-${BIG_MODEL.hidden} model once into bench/.cache …`);
  const t0 = performance.now();
  const base = await writeBaseModel(baseDir, BIG_MODEL);
  await writeAdapter(adapterDir, BIG_MODEL);
  await writeFile(stamp, JSON.stringify({ model: BIG_MODEL, baseBytes: base.bytes }) + '\n');
  return { baseDir, adapterDir, baseBytes: base.bytes, generateSeconds: (performance.now() - t0) / 1000 };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await ensureBigModel((l) => process.stderr.write(l + '\n'));
  process.stdout.write(JSON.stringify(r) + '\n');
}
