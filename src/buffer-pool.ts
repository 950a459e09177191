/**
 * Buffers handed out and taken back once nobody reads them (a slab's input once merged and
 * written, a backend's output once written: MergeBackend.recycle), so that a stream of row slabs
 * reuses a few buffers instead of allocating (and page-faulting in) fresh memory for every slab.
 * Every buffer is exactly the size asked for, its view the whole of it (callers may use
 * `.buffer`). Only buffers handed out here and not yet returned are taken back: anything else
 * given to `recycle` is ignored, and a buffer is never handed out twice at once. Browser-safe.
 */

/**
 * How many returned buffers are kept: the pipeline has at most three slabs alive, and more would
 * raise peak memory for nothing (four kept cost about 15 MiB more on the bench's model).
 */
const KEPT = 2;

export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private readonly out = new WeakSet<ArrayBuffer>();

  /** A buffer of exactly `bytes` (zeroed only when new: callers overwrite every byte they read). */
  take(bytes: number): Uint8Array {
    const i = this.free.findIndex((b) => b.byteLength === bytes);
    const buffer = i >= 0 ? this.free.splice(i, 1)[0] : new ArrayBuffer(bytes);
    this.out.add(buffer);
    return new Uint8Array(buffer);
  }

  /** Takes back a whole buffer from {@link take} whose contents nobody reads any more. */
  recycle(bytes: Uint8Array): void {
    const buffer = bytes.buffer;
    if (!(buffer instanceof ArrayBuffer) || !this.out.has(buffer) || bytes.byteOffset !== 0 || bytes.byteLength !== buffer.byteLength) return;
    this.out.delete(buffer);
    this.free.push(buffer);
    // The oldest goes first: slabs of the tensor being streamed come back soonest.
    if (this.free.length > KEPT) this.free.shift();
  }
}
