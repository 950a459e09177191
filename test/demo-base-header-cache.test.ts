/**
 * The merge worker's reuse of a base's headers (demo/base-header-cache.ts): the bytes the pick read
 * are served again only for the very File read (the page's key for it), unchanged in size and
 * modification time, and only once that reading succeeded; anything else reads the file. Counted
 * as File.slice calls, the reads a browser File serves.
 */
import { describe, expect, it } from 'vitest';
import { openModel } from '../src/index.js';
import { reusingHeaders } from '../demo/base-header-cache.js';
import { pickedFileSet } from '../demo/picked-file-set.js';
import type { PickedFile } from '../demo/worker-protocol.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const fixture = llamaWithPeft(65);
const NAME = 'llama.safetensors';

/** A File that counts the slices read from it. */
class CountedFile extends File {
  slices = 0;
  override slice(start?: number, end?: number, type?: string): Blob {
    this.slices++;
    return super.slice(start, end, type);
  }
}

const picked = (file: File, key: number | undefined): PickedFile[] => [{ path: NAME, file, key }];

/** Opens the base's headers as the plan does (through the kept reading), and closes it. */
async function plan(files: PickedFile[]): Promise<void> {
  const model = await openModel(reusingHeaders(pickedFileSet(NAME, files, 'plan'), files).files);
  expect(model.tensors.size).toBe(5);
  await model.close();
}

/** The pick's reading, kept unless `keep` is false (a reading that failed or was dropped). */
async function pick(files: PickedFile[], keep = true): Promise<void> {
  const recorded = reusingHeaders(pickedFileSet(NAME, files, 'plan'), files, true);
  const model = await openModel(recorded.files);
  await model.close();
  if (keep) recorded.keep();
}

describe("the worker's kept base headers", () => {
  it('serve the same File again without reading it, and no other File, changed File, or unkept reading', async () => {
    const file = new CountedFile([fixture.base as Uint8Array<ArrayBuffer>], NAME, { lastModified: 1_000 });
    await pick(picked(file, 1));
    const read = file.slices;
    expect(read).toBeGreaterThan(0);
    await plan(picked(file, 1));
    await plan(picked(file, 1));
    expect(file.slices).toBe(read);

    // Another File object (another key), the same bytes and name: read from its own file.
    const other = new CountedFile([fixture.base as Uint8Array<ArrayBuffer>], NAME, { lastModified: 1_000 });
    await plan(picked(other, 2));
    expect(other.slices).toBe(read);
    // The same key on a File that changed (another modification time, another size): read.
    const touched = new CountedFile([fixture.base as Uint8Array<ArrayBuffer>], NAME, { lastModified: 2_000 });
    await plan(picked(touched, 1));
    expect(touched.slices).toBe(read);
    const grown = new CountedFile([fixture.base as Uint8Array<ArrayBuffer>, new Uint8Array(8)], NAME, { lastModified: 1_000 });
    // (Refused as it stands, its 8 bytes past the last tensor: what matters is that it was read.)
    await expect(plan(picked(grown, 1))).rejects.toThrow('8 unexpected bytes after the last tensor');
    expect(grown.slices).toBeGreaterThan(0);
    // No key (a File the page did not name): read.
    await plan(picked(file, undefined));
    expect(file.slices).toBe(2 * read);

    // A reading not kept (it failed, or another base was picked meanwhile) leaves the last one kept.
    const dropped = new CountedFile([fixture.base as Uint8Array<ArrayBuffer>], NAME, { lastModified: 1_000 });
    await pick(picked(dropped, 3), false);
    await plan(picked(dropped, 3));
    expect(dropped.slices).toBe(2 * read);
    await plan(picked(file, 1));
    expect(file.slices).toBe(2 * read);
  });

  it("keeps one model per slot: extract's base and fine-tuned model both served, a slot's new pick replacing only its own", async () => {
    const base = new CountedFile([fixture.base as Uint8Array<ArrayBuffer>], NAME, { lastModified: 1_000 });
    const tuned = new CountedFile([llamaWithPeft(68).base as Uint8Array<ArrayBuffer>], NAME, { lastModified: 1_000 });
    const open = async (files: PickedFile[], slot: string, record: boolean) => {
      const reading = reusingHeaders(pickedFileSet(NAME, files, 'plan'), files, record, slot);
      await (await openModel(reading.files)).close();
      reading.keep();
    };
    await open(picked(base, 11), 'base', true);
    await open(picked(tuned, 12), 'tuned', true);
    const [baseRead, tunedRead] = [base.slices, tuned.slices];
    await open(picked(base, 11), 'base', false);
    await open(picked(tuned, 12), 'tuned', false);
    expect([base.slices, tuned.slices]).toEqual([baseRead, tunedRead]);
    // Each slot serves its own model only.
    await open(picked(tuned, 12), 'base', false);
    expect(tuned.slices).toBe(2 * tunedRead);
  });
});
