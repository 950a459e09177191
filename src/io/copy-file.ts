/** Copies one file from an input set into an output unchanged (configs, tokenizers, READMEs). */
import type { InputFileSet, OutputTarget } from './types.js';

/** Large enough to be efficient, small enough to never hold a big file in memory. */
const COPY_CHUNK_BYTES = 8 * 1024 * 1024;

export async function copyInputFile(
  inputs: InputFileSet,
  path: string,
  target: OutputTarget,
  destPath: string = path,
): Promise<void> {
  const source = await inputs.open(path);
  try {
    const sink = await target.createFile(destPath);
    for (let at = 0; at < source.size; at += COPY_CHUNK_BYTES) {
      await sink.write(await source.read(at, Math.min(COPY_CHUNK_BYTES, source.size - at)));
    }
    await sink.close();
  } finally {
    await source.close();
  }
}
