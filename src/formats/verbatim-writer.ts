/**
 * A safetensors file written byte for byte as its source was: the source's own header, then each
 * tensor's bytes in file order. Used for files a merge mirrors unchanged (an untouched component
 * of a pipeline) while their tensors still stream through the usual checks; the reader has already
 * checked that the data is contiguous with no trailing bytes, so the result is identical.
 */
import { MergeError } from '../errors.js';
import type { ByteSink } from '../io/types.js';
import type { SafetensorsWriter } from './safetensors-writer.js';
import type { SafetensorsFile } from './safetensors-types.js';

export async function createVerbatimWriter(sink: ByteSink, source: SafetensorsFile): Promise<SafetensorsWriter> {
  const dataBytes = source.tensors.reduce((n, t) => n + t.byteLength, 0);
  const header = await source.source.read(0, source.source.size - dataBytes);
  await sink.write(header);
  const tensors = source.tensors;
  let index = 0;
  let written = 0;
  const outOfOrder = (name: string) =>
    new MergeError('PLAN_INVALID', `${source.source.name}: tensor "${name}" written out of order while mirroring the file`);
  const write = async (name: string, bytes: Uint8Array) => {
    // Step past the tensors already complete; a zero-size one is complete before its one (empty) piece.
    while (index < tensors.length && written === tensors[index].byteLength && tensors[index].name !== name) [index, written] = [index + 1, 0];
    const entry = tensors[index];
    if (!entry || entry.name !== name || written + bytes.byteLength > entry.byteLength) throw outOfOrder(name);
    await sink.write(bytes);
    written += bytes.byteLength;
  };
  return {
    byteLength: source.source.size,
    writeTensor: write,
    writeChunk: write,
    async finish() {
      const last = tensors.length - 1;
      if (tensors.length > 0 && (index !== last || written !== tensors[last].byteLength)) throw outOfOrder(tensors[Math.min(index, last)].name);
      await sink.close();
    },
  };
}
