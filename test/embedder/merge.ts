// An embedder's Node script, compiled with strict TypeScript under a plain Node configuration
// (no DOM lib, no @webgpu/types) against the installed package. Usage: node merge.js DIR
import { createNodeBackend, generateSample, isMergeError, merge, resizeLora, type MergeProgress } from 'loramerge/node';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node merge.js DIR');
const sample = await generateSample({ layers: 1, hidden: 256, intermediate: 512, vocab: 512 });
for (const [folder, files] of [['base', sample.base], ['adapter', sample.adapter]] as const) {
  await mkdir(join(dir, folder), { recursive: true });
  for (const [path, bytes] of Object.entries(files)) await writeFile(join(dir, folder, path), bytes);
}

// Paths in, a folder out, with progress.
const events: MergeProgress[] = [];
const fromPaths = await merge({
  base: join(dir, 'base'),
  adapters: [{ source: join(dir, 'adapter'), weight: 0.5 }],
  out: join(dir, 'merged'),
  dtype: 'f16',
  backend: 'auto',
  onProgress: (event) => events.push(event),
});

// Blobs and Files in, Blobs out, on a backend of our own that is never disposed: the process must
// still exit when the script ends.
const backend = await createNodeBackend('cpu');
const file = (path: string, bytes: Uint8Array) => new File([bytes as Uint8Array<ArrayBuffer>], path);
const fromBlobs = await merge({
  base: new Blob([sample.base['model.safetensors'] as Uint8Array<ArrayBuffer>]),
  adapters: [Object.entries(sample.adapter).map(([path, bytes]) => file(path, bytes))],
  backend,
});
const [merged] = fromBlobs.blobs;
await writeFile(join(dir, 'from-blobs.safetensors'), new Uint8Array(await merged.blob.arrayBuffer()));

// A cancelled merge is a MergeError with code ABORTED, named AbortError as a cancelled fetch is,
// and leaves nothing behind.
const controller = new AbortController();
controller.abort();
let cancelled = '';
try {
  await merge({ base: join(dir, 'base'), adapters: [join(dir, 'adapter')], out: join(dir, 'cancelled'), signal: controller.signal });
} catch (error) {
  if (!isMergeError(error)) throw error;
  cancelled = `${error.name} ${error.code}`;
}

// WebGPU asked for where the optional `webgpu` package was left out: one line saying what to do.
let noWebgpu = '';
try {
  await merge({ base: join(dir, 'base'), adapters: [join(dir, 'adapter')], out: join(dir, 'on-gpu'), backend: 'webgpu' });
} catch (error) {
  if (!isMergeError(error)) throw error;
  noWebgpu = `${error.code}: ${error.message}`;
}

// An adapter job of the Node entry: a path in, a folder path out (Node's options: `overwrite`).
const resized = await resizeLora({ adapter: join(dir, 'adapter'), rule: { kind: 'rank', rank: 1 }, out: join(dir, 'resized'), overwrite: false });

console.log(JSON.stringify({
  resized: { format: resized.format, ranks: [...new Set(resized.modules.map((m) => m.rank))], files: (await readdir(join(dir, 'resized'))).sort() },
  files: fromPaths.files, backend: fromPaths.backend, cpu: backend.description, events: events.length,
  lastPhase: events[events.length - 1]?.phase,
  progressRises: events.every((e, i) => i === 0 || (e.bytesDone >= events[i - 1].bytesDone && e.tensorsDone >= events[i - 1].tensorsDone && e.bytesTotal === events[0].bytesTotal)),
  lastFraction: events.length ? events[events.length - 1].bytesDone / events[events.length - 1].bytesTotal : undefined, blobPath: merged.path, cancelled, noWebgpu, options: sample.options,
}));
