/**
 * The read-ahead windows in front of a browser Blob: every read returns exactly the bytes a plain
 * read does, whatever the pattern (sequential runs, reads across window edges, jumps back and
 * forth, reads larger than a window, reads past the end), and a sequential scan reads each byte of
 * the source once, with a bounded number of windows in flight.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readAheadSource } from '../src/io/read-ahead.js';
import type { ByteSource } from '../src/io/types.js';
import { MergeError } from '../src/errors.js';
import { seededRandom } from './helpers/fixtures.js';

/** A source over `bytes` that records each read and how many are in flight at once. */
function recordingSource(bytes: Uint8Array) {
  const reads: [number, number][] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const source: ByteSource = {
    name: 'model.safetensors',
    size: bytes.length,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > bytes.length) throw new MergeError('TRUNCATED', `model.safetensors: ${offset}+${length}`);
      reads.push([offset, length]);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 0));
      inFlight--;
      return bytes.slice(offset, offset + length);
    },
    close: async () => {},
  };
  return { source, reads, maxInFlight: () => maxInFlight };
}

function fileOf(size: number, seed: number): Uint8Array {
  const rand = seededRandom(seed);
  return Uint8Array.from({ length: size }, () => Math.floor(rand() * 256));
}

describe('read-ahead windows', () => {
  it('returns the same bytes as a plain read for any pattern of reads', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 8, max: 700 }), fc.integer({ min: 0, max: 3 }),
      fc.array(fc.tuple(fc.boolean(), fc.nat(), fc.nat({ max: 900 }), fc.boolean()), { maxLength: 40 }),
      async (size, windowBytes, ahead, steps) => {
        const bytes = fileOf(size, size ^ windowBytes);
        const { source } = recordingSource(bytes);
        const windows = readAheadSource(source, windowBytes, ahead);
        let at = 0;
        for (const [jump, where, length, offerBuffer] of steps) {
          const offset = jump ? where % (size + 10) : at;
          at = offset + length;
          const into = offerBuffer ? new Uint8Array(length) : undefined;
          if (offset + length > size) {
            await expect(windows.read(offset, length, into)).rejects.toMatchObject({ code: 'TRUNCATED' });
            continue;
          }
          const got = await windows.read(offset, length, into);
          expect(got).toEqual(bytes.subarray(offset, offset + length));
        }
      },
    ), { numRuns: 150 });
  });

  it('reads each byte once on a sequential scan in uneven slabs, with at most ahead + 2 reads in flight', async () => {
    const size = 100_003;
    const bytes = fileOf(size, 5);
    const recorded = recordingSource(bytes);
    const windows = readAheadSource(recorded.source, 4096, 2);
    const rand = seededRandom(6);
    // Slabs that end anywhere relative to the windows; two reads outstanding, as the merge pipeline has.
    const pending: Promise<void>[] = [];
    for (let offset = 0; offset < size;) {
      const length = Math.min(size - offset, 1 + Math.floor(rand() * 1500));
      const at = offset;
      pending.push(windows.read(at, length).then((got) => expect(got).toEqual(bytes.subarray(at, at + length))));
      if (pending.length > 1) await pending.shift();
      offset += length;
    }
    await Promise.all(pending);
    const read = recorded.reads.reduce((sum, [, length]) => sum + length, 0);
    expect(read).toBe(size);
    expect(recorded.reads.every(([, length]) => length <= 4096)).toBe(true);
    expect(recorded.maxInFlight()).toBeLessThanOrEqual(4);
    expect(recorded.maxInFlight()).toBeGreaterThanOrEqual(2); // the next windows are read while the caller works
  });
});
