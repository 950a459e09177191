/**
 * The read-ahead windows in front of a browser Blob: every read returns exactly the bytes a plain
 * read does, whatever the pattern (sequential runs, reads across window edges, jumps back and
 * forth, reads larger than a window, reads past the end), and a sequential scan reads each byte of
 * the source once, with a bounded number of windows in flight.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readAheadSource, WindowPool } from '../src/io/read-ahead.js';
import type { ByteSource } from '../src/io/types.js';
import { MergeError } from '../src/errors.js';
import { seededRandom } from './helpers/fixtures.js';

/**
 * A source over `bytes` that records each read and how many are in flight at once. `transferring`
 * adds `readTransferring` as a Blob's byte stream does it: the offered buffer is detached and the
 * bytes come back in its memory under a new ArrayBuffer, so a window reused while a read still
 * copies from it reads as empty.
 */
function recordingSource(bytes: Uint8Array, transferring = false) {
  const reads: [number, number][] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const handedOut = new WeakSet<ArrayBuffer>();
  let freshBuffers = 0;
  const checked = async (offset: number, length: number) => {
    if (offset < 0 || length < 0 || offset + length > bytes.length) throw new MergeError('TRUNCATED', `model.safetensors: ${offset}+${length}`);
    reads.push([offset, length]);
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    await new Promise((resolve) => setTimeout(resolve, 0));
    inFlight--;
  };
  const source: ByteSource = {
    name: 'model.safetensors',
    size: bytes.length,
    async read(offset, length) {
      await checked(offset, length);
      return bytes.slice(offset, offset + length);
    },
    close: async () => {},
  };
  if (transferring) {
    source.readTransferring = async (offset, length, buffer) => {
      if (!handedOut.has(buffer)) freshBuffers++;
      const moved: ArrayBuffer = structuredClone(buffer, { transfer: [buffer] });
      await checked(offset, length);
      const view = new Uint8Array(moved, 0, length);
      view.set(bytes.subarray(offset, offset + length));
      handedOut.add(moved);
      return view;
    };
  }
  return { source, reads, maxInFlight: () => maxInFlight, freshBuffers: () => freshBuffers };
}

function fileOf(size: number, seed: number): Uint8Array {
  const rand = seededRandom(seed);
  return Uint8Array.from({ length: size }, () => Math.floor(rand() * 256));
}

/**
 * Reads a file of `size` bytes front to back through 4096-byte windows, 2 ahead, in slabs that end
 * anywhere relative to the windows, two reads outstanding as the merge pipeline has, checking each.
 */
async function scanInSlabs(size: number, seed: number, transferring: boolean) {
  const bytes = fileOf(size, seed);
  const recorded = recordingSource(bytes, transferring);
  const windows = readAheadSource(recorded.source, 4096, 2, new WindowPool());
  const rand = seededRandom(seed + 1);
  const pending: Promise<void>[] = [];
  for (let offset = 0; offset < size;) {
    const length = Math.min(size - offset, 1 + Math.floor(rand() * 1500));
    const at = offset;
    pending.push(windows.read(at, length).then((got) => expect(got).toEqual(bytes.subarray(at, at + length))));
    if (pending.length > 1) await pending.shift();
    offset += length;
  }
  await Promise.all(pending);
  return recorded;
}

describe('read-ahead windows', () => {
  it('returns the same bytes as a plain read for any pattern of reads', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 8, max: 700 }), fc.integer({ min: 0, max: 3 }),
      fc.array(fc.tuple(fc.boolean(), fc.nat(), fc.nat({ max: 900 }), fc.boolean(), fc.boolean()), { maxLength: 40 }), fc.boolean(),
      async (size, windowBytes, ahead, steps, transferring) => {
        const bytes = fileOf(size, size ^ windowBytes);
        const { source } = recordingSource(bytes, transferring);
        const windows = readAheadSource(source, windowBytes, ahead, new WindowPool());
        let at = 0;
        // Up to two reads outstanding, as the merge pipeline has: a window dropped by the later
        // read may still be copied from by the earlier one.
        let earlier: Promise<void> = Promise.resolve();
        for (const [jump, where, length, offerBuffer, overlap] of steps) {
          const offset = jump ? where % (size + 10) : at;
          at = offset + length;
          const into = offerBuffer ? new Uint8Array(length) : undefined;
          const read = offset + length > size
            ? expect(windows.read(offset, length, into)).rejects.toMatchObject({ code: 'TRUNCATED' }).then(() => {})
            : windows.read(offset, length, into).then((got) => expect(got).toEqual(bytes.subarray(offset, offset + length)));
          if (!overlap) await earlier;
          earlier = read;
        }
        await earlier;
      },
    ), { numRuns: 300 });
  });

  it('reads each byte once on a sequential scan in uneven slabs, with at most ahead + 2 reads in flight', async () => {
    const size = 100_003;
    const recorded = await scanInSlabs(size, 5, false);
    const read = recorded.reads.reduce((sum, [, length]) => sum + length, 0);
    expect(read).toBe(size);
    expect(recorded.reads.every(([, length]) => length <= 4096)).toBe(true);
    expect(recorded.maxInFlight()).toBeLessThanOrEqual(4);
    expect(recorded.maxInFlight()).toBeGreaterThanOrEqual(2); // the next windows are read while the caller works
  });

  it('starts no windows for a header read as two reads, its length and then its JSON, only once a run has read a quarter of a window', async () => {
    const recorded = recordingSource(fileOf(50_000, 3), true);
    const source = readAheadSource(recorded.source, 4096, 2, new WindowPool());
    await source.read(0, 8);
    await source.read(8, 1200);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(recorded.reads).toEqual([[0, 8], [8, 1200]]);
    // A read in a run that has read a quarter of a window starts the windows, within that read (no
    // wait for timers: on a loaded machine a few milliseconds may not be enough for them).
    await source.read(1208, 100);
    expect(recorded.reads.length).toBeGreaterThan(3);
  });

  it('reads no further ahead for reads that skip forward inside the windows, as sampled rows do', async () => {
    const size = 400_000;
    const recorded = recordingSource(fileOf(size, 5), true);
    const source = readAheadSource(recorded.source, 4096, 2, new WindowPool());
    for (let at = 0; at < 3000; at += 1000) await source.read(at, 1000); // a run starts the windows
    // Samples 1.5 windows apart (inside the windows read ahead), as a norm estimate reads evenly
    // spaced rows of each tensor, in pairs where one tensor's last sample ends at the next one's first.
    for (let at = 5000; at + 128 < size; at += 6000) {
      await source.read(at, 64);
      await source.read(at + 64, 64);
    }
    const read = recorded.reads.reduce((sum, [, length]) => sum + length, 0);
    expect(read).toBeLessThan(size / 4);
  });

  it('gives a closed source\'s windows to the next source on the same pool', async () => {
    const bytes = fileOf(60_000, 4);
    const recorded = recordingSource(bytes, true);
    const pool = new WindowPool();
    const scan = async () => {
      const source = readAheadSource(recorded.source, 4096, 2, pool);
      for (let at = 0; at < bytes.length; at += 1000) {
        const length = Math.min(1000, bytes.length - at);
        expect(await source.read(at, length)).toEqual(bytes.subarray(at, at + length));
      }
      await source.close();
    };
    await scan();
    const first = recorded.freshBuffers();
    expect(first).toBeGreaterThanOrEqual(3);
    await scan(); // a plan, then the merge, over the same file
    expect(recorded.freshBuffers() - first).toBeLessThanOrEqual(1);
  });

  it('fills the same few window buffers again on a sequential scan when the source reads into them', async () => {
    const size = 100_003;
    const recorded = await scanInSlabs(size, 7, true);
    expect(recorded.reads.reduce((sum, [, length]) => sum + length, 0)).toBe(size); // each byte once
    expect(recorded.reads.length).toBeGreaterThanOrEqual(25); // in about 25 windows
    // Windows in flight (ahead + the one being read + one a read spans) and the spares: no more.
    expect(recorded.freshBuffers()).toBeLessThanOrEqual(6);
    expect(recorded.freshBuffers()).toBeGreaterThanOrEqual(3);
  });
});
