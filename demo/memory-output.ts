/**
 * An OutputTarget that keeps each merged file as a Blob. Chunks go straight into the Blob's parts
 * (the browser may page them to disk); nothing is visible until commit(), and abort() drops it all.
 */
import type { ByteSink, OutputTarget } from '../src/index.js';

export class MemoryOutput implements OutputTarget {
  readonly name = 'download';
  private readonly pending = new Map<string, BlobPart[]>();
  private committed: { path: string; blob: Blob }[] | undefined;

  async createFile(path: string): Promise<ByteSink> {
    const parts: BlobPart[] = [];
    this.pending.set(path, parts);
    return {
      async write(chunk: Uint8Array) { parts.push(chunk.slice()); },
      async close() {},
    };
  }

  async commit(): Promise<void> {
    this.committed = [...this.pending].map(([path, parts]) => ({ path, blob: new Blob(parts) }));
    this.pending.clear();
  }

  async abort(): Promise<void> {
    this.pending.clear();
    this.committed = undefined;
  }

  /** The files after commit(), in the order they were created. */
  files(): { path: string; blob: Blob }[] {
    return this.committed ?? [];
  }
}
