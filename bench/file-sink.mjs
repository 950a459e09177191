/** A writer's sink onto a new file at `path`: each chunk written whole, then the file closed. */
import { open } from 'node:fs/promises';

export async function fileSink(path) {
  const handle = await open(path, 'w');
  return {
    async write(chunk) {
      let done = 0;
      while (done < chunk.byteLength) done += (await handle.write(chunk, done, chunk.byteLength - done)).bytesWritten;
    },
    close: () => handle.close(),
  };
}
