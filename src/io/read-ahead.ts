/**
 * Large overlapped reads for sources where each read has a fixed cost (a browser Blob: every
 * slice is a round trip to the browser's blob store). A run of sequential reads is served from a
 * window of `windowBytes` read in one go, and the next window is fetched while the current one is
 * consumed; anything else (headers, factors, sampled rows) reads straight through. Memory: two
 * windows at most.
 */
import type { ByteSource } from './types.js';

/** Measured in Chromium on a 0.97 GB file: 4 MiB reads took 2.0–2.9 s, 64 MiB ones 1.5 s. */
export const DEFAULT_READ_AHEAD_BYTES = 32 * 1024 * 1024;

interface Window {
  start: number;
  bytes: Promise<Uint8Array>;
  length: number;
}

export function readAheadSource(source: ByteSource, windowBytes = DEFAULT_READ_AHEAD_BYTES): ByteSource {
  let current: Window | undefined;
  let next: Window | undefined;
  let lastEnd = -1;
  const windowAt = (start: number): Window | undefined => {
    const length = Math.min(windowBytes, source.size - start);
    if (length <= 0) return undefined;
    const bytes = source.read(start, length);
    bytes.catch(() => {}); // a failed prefetch is reported by the read that needs it
    return { start, length, bytes };
  };
  const covers = (w: Window | undefined, offset: number, length: number): w is Window =>
    !!w && offset >= w.start && offset + length <= w.start + w.length;

  return {
    name: source.name,
    size: source.size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      const sequential = offset === lastEnd;
      lastEnd = offset + length;
      if (length * 2 > windowBytes) return source.read(offset, length);
      if (!covers(current, offset, length)) {
        if (covers(next, offset, length)) {
          current = next;
        } else if (sequential) {
          current = windowAt(offset);
        } else {
          return source.read(offset, length);
        }
        next = undefined;
      }
      const window = current!;
      if (!next && offset + length > window.start + window.length / 2) next = windowAt(window.start + window.length);
      const bytes = await window.bytes;
      const at = offset - window.start;
      return bytes.slice(at, at + length); // a copy: callers may keep or transfer it
    },
    close: () => source.close(),
  };
}
