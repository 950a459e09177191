/**
 * The slab buffer pool: a buffer is handed out to one holder at a time, exactly the size asked
 * for, and comes back only when it is one of the pool's own, whole.
 */
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../src/buffer-pool.js';

describe('BufferPool', () => {
  it('reuses a returned buffer for the next slab of the same size; every view is its whole buffer', () => {
    const pool = new BufferPool();
    const a = pool.take(4_000_000);
    expect(a.byteLength).toBe(4_000_000);
    expect(a.buffer.byteLength).toBe(4_000_000);
    pool.recycle(a);
    const other = pool.take(3_900_000);
    expect(other.buffer).not.toBe(a.buffer);
    expect(other.buffer.byteLength).toBe(3_900_000);
    expect(pool.take(4_000_000).buffer).toBe(a.buffer);
  });

  it('never hands out a buffer that is still held, nor twice after one return', () => {
    const pool = new BufferPool();
    const a = pool.take(1 << 20);
    const b = pool.take(1 << 20);
    expect(b.buffer).not.toBe(a.buffer);
    pool.recycle(a);
    pool.recycle(a); // a second return of the same buffer is ignored
    const c = pool.take(1 << 20);
    const d = pool.take(1 << 20);
    expect(c.buffer).toBe(a.buffer);
    expect(d.buffer).not.toBe(a.buffer);
    expect(d.buffer).not.toBe(b.buffer);
  });

  it('ignores memory it did not hand out, and parts of its own buffers', () => {
    const pool = new BufferPool();
    const foreign = new Uint8Array(1 << 20);
    pool.recycle(foreign);
    expect(pool.take(1 << 20).buffer).not.toBe(foreign.buffer);
    const own = pool.take(1 << 20);
    pool.recycle(own.subarray(0, 1000));
    expect(pool.take(1 << 20).buffer).not.toBe(own.buffer);
  });

  it('keeps at most three returned buffers, dropping the oldest', () => {
    const pool = new BufferPool();
    const held = Array.from({ length: 4 }, () => pool.take(1 << 20));
    held.forEach((x) => pool.recycle(x));
    const again = Array.from({ length: 4 }, () => pool.take(1 << 20).buffer);
    for (let i = 0; i < 3; i++) expect(again[i]).toBe(held[i + 1].buffer);
    expect(held.map((x) => x.buffer)).not.toContain(again[3]);
  });

  it('three slabs in flight that all come back at once (a layer\'s norms) need no new memory for the next layer', () => {
    // The merge pipeline's pattern at a layer's end (bench model, f16): a 4 MiB slab read ahead,
    // one merging, one being written, then the 4 KiB norms; all three come back before the next
    // layer's k_proj (256 × 2048 f16 = 1 MiB) slabs are taken.
    const made: number[] = [];
    const pool = new BufferPool((bytes) => (made.push(bytes), new SharedArrayBuffer(bytes)));
    for (let layer = 0; layer < 4; layer++) {
      const inFlight = [pool.take(4_194_304), pool.take(4_194_304), pool.take(4096)];
      inFlight.forEach((x) => pool.recycle(x));
      const next = [pool.take(1_048_576), pool.take(1_048_576), pool.take(4_190_208)];
      next.forEach((x) => pool.recycle(x));
    }
    expect(made).toEqual([4 << 20, 4 << 20, 4 << 20]);
  });

  it('with shared memory: views of exactly the bytes asked for, every size served by a few buffers of the largest', () => {
    const made: number[] = [];
    const pool = new BufferPool((bytes) => (made.push(bytes), new SharedArrayBuffer(bytes)));
    const a = pool.take(4_190_208);
    expect(a.byteLength).toBe(4_190_208);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    const b = pool.take(1_048_576); // new buffers are as large as the largest so far
    expect(b.buffer).not.toBe(a.buffer);
    expect(made).toEqual([4 << 20, 4 << 20]);
    pool.recycle(a);
    pool.recycle(b);
    // A stream of slabs of every size up to the largest needs no new memory.
    for (const bytes of [2_117_632, 4_194_304, 1_048_576, 100, 4_190_208]) {
      const x = pool.take(bytes);
      const y = pool.take(bytes);
      expect(x.byteLength).toBe(bytes);
      expect(x.byteOffset).toBe(0);
      expect(y.buffer).not.toBe(x.buffer);
      pool.recycle(x);
      pool.recycle(y);
    }
    expect(made).toEqual([4 << 20, 4 << 20]);
    // A larger one: a new buffer of its size; returned, it serves the small ones first.
    const c = pool.take((4 << 20) + 1);
    expect(c.buffer.byteLength).toBe(5 << 20);
    pool.recycle(c);
    expect(pool.take(3_000_000).buffer.byteLength).toBe(4 << 20);
  });
});
