/**
 * A browser File or Blob as a ByteSource: `read` slices just the bytes asked for; `readTransferring`
 * serves sequential reads from one stream of the file.
 */
import { MergeError } from '../errors.js';
import { checkReadRange } from './read-range.js';
import type { ByteSource } from './types.js';

/**
 * Readers of streams being read. Nothing else in JavaScript holds a stream while its read is
 * pending (the waiting code hangs off the stream's own promise), and in Chromium a collected
 * stream's read never settles: a prefetched window then hung the merge.
 */
const reading = new Set<ReadableStreamBYOBReader>();

/** A BYOB read's `min` option (Streams spec; TypeScript's DOM lib does not declare it yet). Browsers without it ignore it and the loop reads on. */
type ReaderWithMin = {
  read(view: Uint8Array, options: { min: number }): Promise<ReadableStreamReadResult<Uint8Array>>;
};

export function blobByteSource(blob: Blob, name: string = (blob as File).name ?? 'blob'): ByteSource {
  const size = blob.size;
  const unreadable = (e: unknown) =>
    // Browsers fail reads of a File that changed or vanished since it was picked.
    new MergeError('NOT_FOUND', `${name}: could not be read (changed or removed since it was chosen?)`, { cause: e });
  const truncated = (got: number, length: number, offset: number) =>
    new MergeError('TRUNCATED', `${name}: got ${got} of ${length} bytes at ${offset}`);
  /** Whether this browser's Blob streams take a buffer to read into (byte streams). */
  let byob = true;

  const source: ByteSource = {
    name,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(name, size, offset, length);
      let buffer: ArrayBuffer;
      try {
        buffer = await blob.slice(offset, offset + length).arrayBuffer();
      } catch (e) {
        throw unreadable(e);
      }
      if (buffer.byteLength !== length) throw truncated(buffer.byteLength, length, offset);
      return new Uint8Array(buffer);
    },

    /**
     * Reads into `buffer` from a byte stream of the rest of the file that successive sequential
     * calls keep reading (a read elsewhere starts a new one). In Chromium each `arrayBuffer()` is
     * fresh memory the renderer faults in and later collects: for a 0.97 GB file in 16 MiB slices
     * that cost 5–6 s of CPU against 1.5–2 s when the same three buffers are filled again and
     * again. A stream per slice costs the browser a new data pipe and reader each time: one stream
     * for the whole run took the browser process from 2.1–2.2 s of CPU to 1.2–1.3 s, and the page's
     * merge of that file from a median 4.67 s to 4.08 s (five pairs, as `bench/run.mjs --pairs 5`).
     */
    readTransferring(offset: number, length: number, buffer: ArrayBuffer): Promise<Uint8Array> {
      // Calls are served one at a time, in order: a run's stream is read by one caller at a time.
      const result = queue.then(() => {
        checkReadRange(name, size, offset, length);
        return readFromRun(offset, length, buffer);
      });
      queue = result.then(() => {}, () => {});
      return result;
    },
    async close(): Promise<void> {
      closed = true;
      endRun();
    },
  };

  let queue: Promise<void> = Promise.resolve();
  /** Reads still queued when the source is closed (windows read ahead) must not open a stream again. */
  let closed = false;
  /** The stream of a sequential run of reads, and where its next byte lies in the file. */
  let run: { reader: ReadableStreamBYOBReader; at: number } | undefined;
  const endRun = () => {
    run?.reader.cancel().catch(() => {});
    run = undefined;
  };

  async function readFromRun(offset: number, length: number, buffer: ArrayBuffer): Promise<Uint8Array> {
    if (closed) throw new MergeError('ABORTED', `${name}: read after the file was closed`);
    if (run && run.at !== offset) endRun();
    if (!run && byob) {
      try {
        run = { reader: blob.slice(offset).stream().getReader({ mode: 'byob' }), at: offset };
      } catch {
        byob = false; // not a byte stream here: plain reads
      }
    }
    const current = run;
    if (!current) return source.read(offset, length);
    const { reader } = current;
    let memory = buffer;
    let got = 0;
    reading.add(reader);
    try {
      while (got < length) {
        // `min` resolves once the view is full: without it Chromium hands over about 128 KiB a
        // read, some 8 000 reads per GiB, each a task and a promise in this worker.
        const { done, value } = await (reader as ReaderWithMin).read(new Uint8Array(memory, got, length - got), { min: length - got });
        if (value) memory = value.buffer as ArrayBuffer;
        if (done || !value) break;
        got += value.byteLength;
      }
    } catch (e) {
      if (run === current) endRun();
      throw unreadable(e);
    } finally {
      reading.delete(reader);
    }
    if (got !== length) {
      if (run === current) endRun();
      throw closed ? new MergeError('ABORTED', `${name}: closed while being read`) : truncated(got, length, offset);
    }
    current.at = offset + length;
    return new Uint8Array(memory, 0, length);
  }
  return source;
}
