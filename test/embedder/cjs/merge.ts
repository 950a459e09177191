// An embedder's CommonJS script under the classic TypeScript configuration ("module": "commonjs",
// so node10 resolution, which reads no "exports"): `loramerge/node` must still resolve, with its
// types, and run through require(). Usage: node merge.js DIR
import { generateSample, isMergeError, merge } from 'loramerge/node';
import { formatBytes } from 'loramerge';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

async function main(dir: string): Promise<void> {
  const sample = await generateSample({ layers: 1, hidden: 256, intermediate: 512, vocab: 512 });
  for (const [folder, files] of [['base', sample.base], ['adapter', sample.adapter]] as const) {
    await mkdir(join(dir, folder), { recursive: true });
    for (const [path, bytes] of Object.entries(files)) await writeFile(join(dir, folder, path), bytes);
  }
  const result = await merge({ base: join(dir, 'base'), adapters: [{ source: join(dir, 'adapter'), weight: 0.25 }], out: join(dir, 'merged'), backend: 'cpu' });
  console.log(JSON.stringify({ files: result.files, written: formatBytes(result.bytesWritten), options: sample.options }));
}

main(process.argv[2]).catch((error: unknown) => {
  console.error(isMergeError(error) ? `${error.code}: ${error.message}` : error);
  process.exitCode = 1;
});
