/**
 * Large overlapped reads for sources where each read has a fixed cost (a browser Blob: every
 * slice is a round trip to the browser's blob store). A run of sequential reads is served from
 * windows of `windowBytes` read in one go, with `ahead` further windows always in flight, so the
 * source is read while the caller computes; a read that spans windows is put together from them.
 * Anything else (headers, factors, sampled rows) reads straight through. Memory: `ahead + 1`
 * windows, plus those a read spans, plus at most `SPARE_WINDOWS` kept for reuse. Where the source
 * can read into a given buffer (`readTransferring`), a window's memory is filled again once no read
 * needs it, by this source or by the next one opened on the same thread (a {@link WindowPool}),
 * rather than allocating fresh memory for each window.
 */
import type { ByteSource } from './types.js';

/**
 * Twice the merge's 4 MiB slabs, the largest read served from windows (a longer one reads straight
 * through). With one byte stream per sequential run (blob-byte-source.ts) a window is only the
 * buffer the stream fills, so its size no longer sets the number of round trips; smaller windows
 * touch less fresh memory. Measured on the 0.97 GB page merge, seven alternating runs each: 16 MiB
 * windows with two ahead, 44 000–47 000 page faults in the merging worker and 1.52–2.02 s of its
 * CPU; 8 MiB with three ahead, 34 000–37 000 and 1.30–1.76 s. (Before the single stream, when each
 * window was a slice read of its own: one 32 MiB read at a time 2.15 s for the file, three of
 * 16 MiB in flight 1.19 s.)
 */
export const DEFAULT_READ_AHEAD_BYTES = 8 * 1024 * 1024;
/** Windows kept in flight beyond the one being read. */
export const DEFAULT_READ_AHEAD_WINDOWS = 3;

/**
 * The window runs of small reads are served from, with none read ahead (reads over half of it go
 * straight through): tiny tensors one after another (fp8 scales beside expert weights, a shard of
 * norms) come from one read instead of one each. A read costs a file read with its promises in
 * Node and a round trip to the browser's blob store in a page (about 3 ms in Chromium: a page's
 * merge of 160 000 two-byte tensors in 61 shards ran at 300 tensors a second).
 */
export const SMALL_READ_WINDOW_BYTES = 64 * 1024;

/** `source` with runs of small sequential reads served from {@link SMALL_READ_WINDOW_BYTES} windows. */
export function smallReadWindows(source: ByteSource): ByteSource {
  return readAheadSource(source, SMALL_READ_WINDOW_BYTES, 0);
}

/** Window buffers kept for the next windows once no read needs them: a new run's first ones. */
const SPARE_WINDOWS = DEFAULT_READ_AHEAD_WINDOWS + 1;

/**
 * Window buffers no read needs any more, for the next windows of every source that shares the
 * pool. The page plans, then merges, opening the same files again each time: with a pool per
 * source every merge faulted in six fresh 16 MiB windows (in the page's worker 45 000 page faults
 * for a 0.97 GB merge, about 0.5 s of CPU on a VM).
 */
export class WindowPool {
  private readonly free = new Map<number, ArrayBuffer[]>();

  /** `keep`: buffers of each size kept at most. */
  constructor(private readonly keep = SPARE_WINDOWS) {}

  /** A buffer of `bytes`, one given back if there is one. */
  take(bytes: number): ArrayBuffer {
    return this.free.get(bytes)?.pop() ?? new ArrayBuffer(bytes);
  }

  /** Takes back a buffer nobody reads any more (dropped when `keep` of its size are kept). */
  give(buffer: ArrayBuffer): void {
    let list = this.free.get(buffer.byteLength);
    if (!list) this.free.set(buffer.byteLength, (list = []));
    if (list.length < this.keep && buffer.byteLength > 0) list.push(buffer);
  }
}

/** The pool of this thread's sources unless one is given. */
const threadPool = new WindowPool();

interface Window {
  start: number;
  length: number;
  bytes: Promise<Uint8Array>;
  /** The bytes once read: a window dropped after its read is kept for the very next one. */
  done?: Uint8Array;
  /** Reads copying out of this window now; its memory is reused only after the last. */
  readers: number;
  /** No longer among the windows: its memory may go to a new one once `readers` is 0. */
  dropped: boolean;
}

/**
 * `source` with sequential runs served from windows (see the file's comment). `enabled`: windows
 * are started only while it returns true; until then every read goes straight through, so one open
 * file can be planned from (reading only what is asked) and then merged (read ahead).
 */
export function readAheadSource(
  source: ByteSource, windowBytes = DEFAULT_READ_AHEAD_BYTES, ahead = DEFAULT_READ_AHEAD_WINDOWS, pool: WindowPool = threadPool,
  enabled: () => boolean = () => true,
): ByteSource {
  /** Consecutive windows, the one being read first. */
  let windows: Window[] = [];
  let lastEnd = -1;
  /**
   * Bytes read by the run of reads so far that each began where the one before ended. Windows are
   * read (and read ahead) only for a run that has read a quarter of a window: a file's header is
   * read as two small reads (its length, then its JSON), and sampled rows (the page's plan
   * measuring ‖ΔW‖ / ‖W‖) end one tensor where the next begins; windows read for those pulled 48 MiB
   * of the base in at every plan and merge, and 640 MB of a 0.97 GB base into one plan.
   */
  let runBytes = 0;
  const windowAt = (start: number): Window => {
    const length = Math.min(windowBytes, source.size - start);
    const bytes = source.readTransferring
      ? source.readTransferring(start, length, pool.take(windowBytes))
      : source.read(start, length);
    const w: Window = { start, length, bytes, readers: 0, dropped: false };
    bytes.then((b) => (w.done = b), () => {}); // a failed prefetch is reported by the read that needs it
    return w;
  };
  const endOf = (w: Window) => w.start + w.length;
  const release = (w: Window) => {
    if (!w.dropped || w.readers > 0 || !source.readTransferring) return;
    const keep = (bytes: Uint8Array) => {
      const memory = bytes.buffer;
      if (memory instanceof ArrayBuffer && memory.byteLength === windowBytes) pool.give(memory);
    };
    // At once where the read is done: a jump drops windows and starts new ones in the same call.
    if (w.done) keep(w.done);
    else w.bytes.then(keep, () => {});
  };
  const drop = (gone: Window[]) => {
    for (const w of gone) {
      w.dropped = true;
      release(w);
    }
  };

  return {
    name: source.name,
    size: source.size,
    async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
      const sequential = offset === lastEnd;
      const streaming = sequential && runBytes * 4 >= windowBytes && enabled();
      runBytes = sequential ? runBytes + length : length;
      lastEnd = offset + length;
      const end = offset + length;
      if (length * 2 > windowBytes || length === 0 || end > source.size) return source.read(offset, length, into);
      const first = windows.findIndex((w) => w.start <= offset && offset < endOf(w));
      if (first >= 0) drop(windows.splice(0, first));
      else if (streaming) drop(windows.splice(0, windows.length, windowAt(offset)));
      else return source.read(offset, length, into);
      // Windows up to the read's end, then `ahead` more beyond it while the run goes on (reads that
      // skip ahead inside the windows, as sampled rows do, read no further).
      const tail = () => endOf(windows[windows.length - 1]);
      while (tail() < end) windows.push(windowAt(tail()));
      const spanned = windows.filter((w) => w.start < end).length;
      if (streaming) while (windows.length < spanned + ahead && tail() < source.size) windows.push(windowAt(tail()));

      // A copy (into the caller's buffer when offered): callers may keep, reuse or transfer it.
      const out = into && into.byteLength === length ? into : new Uint8Array(length);
      const used = windows.slice(0, spanned);
      for (const w of used) w.readers++;
      try {
        for (const w of used) {
          const bytes = await w.bytes;
          const from = Math.max(offset, w.start);
          const to = Math.min(end, endOf(w));
          out.set(bytes.subarray(from - w.start, to - w.start), from - offset);
        }
      } finally {
        for (const w of used) {
          w.readers--;
          release(w);
        }
      }
      return out;
    },
    close: () => {
      // Its windows go to the pool (those still being read, once read).
      drop(windows.splice(0));
      return source.close();
    },
  };
}
