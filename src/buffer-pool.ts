/**
 * Buffers handed out and taken back once nobody reads them (a slab's input once merged and
 * written, a backend's output once written: MergeBackend.recycle), so that a stream of row slabs
 * reuses a few buffers instead of allocating (and page-faulting in) fresh memory for every slab.
 * Only buffers handed out here and not yet returned are taken back: anything else given to
 * `recycle` is ignored, and a buffer is never handed out twice at once. Browser-safe.
 *
 * Two kinds of memory:
 * - ArrayBuffers (the default): every buffer exactly the size asked for, its view the whole of it
 *   (callers may use `.buffer`, as the GPU uploads do); only same-size slabs share one.
 * - shared memory from `allocate` (the CPU backend's threads read and write it in place): a view
 *   may be shorter than its buffer (users go by byteOffset and byteLength), so slabs of every size
 *   (a tensor's last slab, other tensors' rows) share a few buffers of the largest slab's size.
 *   This matters twice over: a SharedArrayBuffer is freed only when the garbage collector runs,
 *   which its size does not hasten (fresh ones per slab raised peak RSS by 270 MiB).
 */

/**
 * How many returned buffers are kept: the merge pipeline holds at most three inputs at once (one
 * read ahead, one merging, one being written), and more would raise peak memory for nothing (four
 * kept cost about 15 MiB more on the bench's model). Two were kept before, but at every layer's end
 * the norms' small reads let all three come back before the next tensor's first slab, and the
 * dropped one was allocated again: a fresh 4 MiB buffer per layer to fault in (in the page's merge
 * worker 34 000 page faults per 0.97 GB merge, 26 000 keeping three), and a shared one freed only
 * when the garbage collector ran.
 */
const KEPT = 3;
/** Shared buffers are allocated in multiples of this, so that nearby sizes fit one. */
const SHARED_GRANULE = 1 << 20;

/** Fresh shared memory of `bytes` for a {@link BufferPool}. */
export type Allocate = (bytes: number) => ArrayBuffer | SharedArrayBuffer;

export class BufferPool {
  private readonly free: (ArrayBuffer | SharedArrayBuffer)[] = [];
  private readonly out = new WeakSet<ArrayBuffer | SharedArrayBuffer>();

  /** `allocate`: shared memory, handed out as views of buffers at least the size asked for. */
  constructor(private readonly allocate?: Allocate) {}

  /** A view of exactly `bytes` (zeroed only when new: callers overwrite every byte they read). */
  take(bytes: number): Uint8Array {
    let i = -1;
    if (this.allocate) {
      // The smallest free buffer that holds `bytes`.
      for (let j = 0; j < this.free.length; j++) {
        const cap = this.free[j].byteLength;
        if (cap >= bytes && (i < 0 || cap < this.free[i].byteLength)) i = j;
      }
    } else {
      i = this.free.findIndex((b) => b.byteLength === bytes);
    }
    const buffer = i >= 0 ? this.free.splice(i, 1)[0] : this.allocate ? this.allocateShared(this.allocate, bytes) : new ArrayBuffer(bytes);
    this.out.add(buffer);
    return new Uint8Array(buffer, 0, bytes);
  }

  /** The largest shared buffer allocated so far. */
  private largest = 0;

  /**
   * New shared buffers are as large as the largest so far: the few buffers a stream of slabs
   * needs then settle at the largest slab's size and serve every smaller one.
   */
  private allocateShared(allocate: Allocate, bytes: number): ArrayBuffer | SharedArrayBuffer {
    this.largest = Math.max(this.largest, Math.ceil(bytes / SHARED_GRANULE) * SHARED_GRANULE);
    return allocate(this.largest);
  }

  /** Takes back a view from {@link take} (whole, as it was handed out) whose contents nobody reads any more. */
  recycle(bytes: Uint8Array): void {
    const buffer = bytes.buffer;
    if (!this.out.has(buffer) || bytes.byteOffset !== 0 || (!this.allocate && bytes.byteLength !== buffer.byteLength)) return;
    this.out.delete(buffer);
    this.free.push(buffer);
    // The oldest goes first: slabs of the tensor being streamed come back soonest.
    if (this.free.length > KEPT) this.free.shift();
  }
}
