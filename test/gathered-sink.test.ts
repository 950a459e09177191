/**
 * Small writes gathered before they reach a file (src/io/gathered-sink.ts), against a sink that
 * records what it is given: the bytes arrive whole and in order whatever the mix of sizes, runs of
 * small chunks reach the file in a few large writes, a chunk may be reused once its write resolves,
 * and the file's own errors still surface.
 */
import { describe, expect, it } from 'vitest';
import { GATHER_BYTES, SMALL_WRITE_BYTES, gatherSmallWrites } from '../src/io/gathered-sink.js';
import type { ByteSink } from '../src/io/types.js';
import { seededRandom } from './helpers/fixtures.js';

/** A file that takes its time: it reads each chunk a task later, and fails once past `failAt` bytes. */
function recordingSink(failAt = Infinity): ByteSink & { writes: number[]; bytes: () => Uint8Array; closed: boolean } {
  const parts: Uint8Array[] = [];
  let total = 0;
  const sink = {
    writes: [] as number[],
    closed: false,
    async write(chunk: Uint8Array): Promise<void> {
      if (sink.closed) throw new Error('write after close');
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (total + chunk.byteLength > failAt) throw Object.assign(new Error('no space left on the device'), { code: 'ENOSPC' });
      parts.push(chunk.slice()); // read only now: the chunk must not have changed since write()
      sink.writes.push(chunk.byteLength);
      total += chunk.byteLength;
    },
    async close(): Promise<void> {
      sink.closed = true;
    },
    bytes: () => {
      const out = new Uint8Array(total);
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.byteLength;
      }
      return out;
    },
  };
  return sink;
}

describe('gathered small writes', () => {
  it('passes every byte in order, runs of small chunks in few writes, large ones as they are; chunks reused once written, with writes awaited or overlapping', async () => {
    const random = seededRandom(7);
    for (let round = 0; round < 5; round++) {
      const file = recordingSink();
      const sink = gatherSmallWrites(file, 'out.safetensors');
      const expected: Uint8Array[] = [];
      let smallWrites = 0;
      let smallBytes = 0;
      let large = 0;
      const inFlight: [Promise<void>, Uint8Array][] = [];
      for (let i = 0; i < 400; i++) {
        const r = random();
        const length = r < 0.8 ? Math.floor(random() * 3000) : r < 0.95 ? SMALL_WRITE_BYTES - 1 - Math.floor(random() * 10) : SMALL_WRITE_BYTES + Math.floor(random() * 200_000);
        const chunk = new Uint8Array(length);
        for (let k = 0; k < length; k++) chunk[k] = Math.floor(random() * 256);
        expected.push(chunk.slice());
        if (length >= SMALL_WRITE_BYTES) large++;
        else {
          smallWrites++;
          smallBytes += length;
        }
        if (round % 2 === 0) {
          await sink.write(chunk);
          chunk.fill(0xee); // the caller's buffer goes back to its pool
        } else {
          // Two writes outstanding: each chunk is reused once its own write resolved.
          inFlight.push([sink.write(chunk), chunk]);
          if (inFlight.length === 2) {
            const [done, used] = inFlight.shift()!;
            await done;
            used.fill(0xee);
          }
        }
      }
      for (const [done] of inFlight.splice(0)) await done;
      await sink.close();
      expect(file.closed).toBe(true);
      expect(Buffer.from(file.bytes()).equals(Buffer.concat(expected))).toBe(true);
      // Each large chunk as it is, and the small ones in gathered runs of at most GATHER_BYTES, one
      // run cut short by each large chunk: far fewer writes than small chunks.
      expect(file.writes.length).toBeLessThanOrEqual(2 * large + 1 + Math.ceil(smallBytes / (GATHER_BYTES - SMALL_WRITE_BYTES)));
      expect(file.writes.length).toBeLessThan(smallWrites / 2);
    }
  });

  it('refuses a write after close, and a failing file fails the write or the close that reaches it', async () => {
    const sink = gatherSmallWrites(recordingSink(), 'out.safetensors');
    await sink.close();
    await expect(sink.write(new Uint8Array(10))).rejects.toThrow('out.safetensors: write after close');

    // 3 MB of small chunks into a file that takes 2 MB: a gathered write fails, and no later write succeeds silently.
    const full = gatherSmallWrites(recordingSink(2_000_000));
    let error: unknown;
    try {
      for (let i = 0; i < 1000; i++) await full.write(new Uint8Array(3000));
      await full.close();
    } catch (e) {
      error = e;
    }
    expect((error as { code?: string })?.code).toBe('ENOSPC');

    // Small chunks only, all fitting in the buffer: the failure comes at close.
    const late = gatherSmallWrites(recordingSink(100));
    await late.write(new Uint8Array(200));
    await expect(late.close()).rejects.toThrow('no space left on the device');
  });
});
