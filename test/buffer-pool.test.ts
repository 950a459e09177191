/**
 * The slab buffer pool: a buffer is handed out to one holder at a time, comes back only when it is
 * one of the pool's own, and is reused for slabs of similar size only.
 */
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../src/buffer-pool.js';

describe('BufferPool', () => {
  it('reuses a returned buffer for the next slab of a similar size, with exactly the bytes asked for', () => {
    const pool = new BufferPool();
    const a = pool.take(4_000_000);
    expect(a.byteLength).toBe(4_000_000);
    a[0] = 7;
    pool.recycle(a);
    const b = pool.take(3_900_000);
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteLength).toBe(3_900_000);
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

  it('ignores memory it did not hand out, and keeps small slabs out of large buffers', () => {
    const pool = new BufferPool();
    const foreign = new Uint8Array(1 << 20);
    pool.recycle(foreign);
    expect(pool.take(1 << 20).buffer).not.toBe(foreign.buffer);
    const big = pool.take(8 << 20);
    pool.recycle(big);
    expect(pool.take(1000).buffer).not.toBe(big.buffer);
    expect(pool.take(8 << 20).buffer).toBe(big.buffer);
  });

  it('keeps at most four returned buffers, dropping the smallest', () => {
    const pool = new BufferPool();
    const sizes = [1, 3, 5, 7, 9].map((m) => m << 20);
    const held = sizes.map((n) => pool.take(n));
    held.forEach((x) => pool.recycle(x));
    // The 1 MiB one was dropped: a new 1 MiB slab gets fresh memory, the others come back.
    expect(held.map((x) => x.buffer)).not.toContain(pool.take(1 << 20).buffer);
    expect(pool.take(9 << 20).buffer).toBe(held[4].buffer);
  });
});
