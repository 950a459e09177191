/**
 * Buffers handed out and taken back once nobody reads them (a slab's input once merged and
 * written, a backend's output once written: MergeBackend.recycle), so that a stream of row slabs
 * reuses a few buffers instead of allocating (and page-faulting in) fresh memory for every slab.
 * Only buffers handed out here and not yet returned are taken back: anything else given to
 * `recycle` is ignored, and a buffer is never handed out twice at once. Browser-safe.
 */

/** How many returned buffers are kept (the pipeline has at most three slabs alive). */
const KEPT = 4;
/** Capacities are rounded up to this, so that slabs of nearby sizes share buffers. */
const GRANULE = 64 * 1024;

export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private readonly out = new WeakSet<ArrayBuffer>();

  /** A buffer of exactly `bytes` (zeroed only when new: callers overwrite every byte they read). */
  take(bytes: number): Uint8Array {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const cap = this.free[i].byteLength;
      if (cap >= bytes && cap <= 2 * bytes + GRANULE && (best < 0 || cap < this.free[best].byteLength)) best = i;
    }
    const buffer = best >= 0 ? this.free.splice(best, 1)[0] : new ArrayBuffer(Math.ceil(bytes / GRANULE) * GRANULE);
    this.out.add(buffer);
    return new Uint8Array(buffer, 0, bytes);
  }

  /** Takes back a buffer from {@link take} whose contents nobody reads any more. */
  recycle(bytes: Uint8Array): void {
    const buffer = bytes.buffer;
    if (!(buffer instanceof ArrayBuffer) || !this.out.has(buffer)) return;
    this.out.delete(buffer);
    this.free.push(buffer);
    if (this.free.length > KEPT) {
      // Drop the smallest: the large ones are the expensive ones to allocate.
      let small = 0;
      for (let i = 1; i < this.free.length; i++) if (this.free[i].byteLength < this.free[small].byteLength) small = i;
      this.free.splice(small, 1);
    }
  }
}
