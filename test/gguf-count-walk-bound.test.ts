/**
 * The wrong-count walk (gguf-counts.ts) on a header built against it (helpers/braided-gguf.ts):
 * every metadata entry's end starts a run of tensor infos, and every run joins one shared run
 * after two infos. Read anew for each count, the runs were entries × tensors infos (300 × 3000:
 * 900 000 type lookups); each info is now read once, and the answers are the same: which counts'
 * runs hold the declared tensors with their data inside the file.
 *
 * Work is counted, not timed: the GGML type lookups (ggmlTypeById, once a tensor info read).
 */
import { describe, expect, it, vi } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { Pacer } from '../src/event-turns.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { MAX_TENSORS } from '../src/limits.js';
import { braidedGguf, type BraidedGguf } from './helpers/braided-gguf.js';
import { sparseSource } from './helpers/fixtures.js';

const watch = vi.hoisted(() => ({ lookups: 0, onLookup: undefined as undefined | (() => void) }));
vi.mock('../src/formats/gguf/ggml-types.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/gguf/ggml-types.js')>();
  return { ...real, ggmlTypeById: (id: number) => (watch.lookups++, watch.onLookup?.(), real.ggmlTypeById(id)) };
});

const ENTRIES = 300;
const TENSORS = 3000;
const braided = braidedGguf(ENTRIES, TENSORS, TENSORS);

/**
 * Where the data of the run from entry c's start ends when it holds `n` (≥ 3) tensor infos: its
 * n-th info is the trunk's N_{c+n-2}; the data starts at the infos' end padded to 32 bytes.
 */
function runDataEnd(b: BraidedGguf, c: number, n: number): number {
  const last = b.trunk[c + n - 2];
  return Math.ceil(last.end / 32) * 32 + Number(last.offset + last.bytes);
}

/** openGguf's refusal of the braided header in a file of `size` bytes, and the type lookups it made. */
async function refusal(b: BraidedGguf, size: number, pacer = new Pacer()): Promise<{ message: string; code: string; lookups: number }> {
  watch.lookups = 0;
  const e = await openGguf(sparseSource('braided.gguf', size, [[0, b.header]]), pacer).catch((x: unknown) => x);
  if (!isMergeError(e)) throw new Error(`expected a MergeError, got ${String(e)}`);
  return { message: e.message, code: e.code, lookups: watch.lookups };
}

const tensorCountWrong = `braided.gguf: the header declares ${TENSORS} tensors, but no tensor info follows its metadata (byte ${braided.entryStarts[ENTRIES]} starts no other): the header's tensor count is wrong, or the file is cut short or damaged: download or convert it again`;

describe('the wrong-count walk of a header whose every entry starts a run of tensor infos', () => {
  it('reads each info once (2 for each count, and the shared run once), and names the one count whose run fits', async () => {
    // The file ends where the data of the first entry's run ends: only that run's 3000 tensors fit.
    const size = runDataEnd(braided, 0, TENSORS);
    const r = await refusal(braided, size);
    expect(r.code).toBe('INVALID_HEADER');
    expect(r.message).toBe(`braided.gguf: the header declares ${ENTRIES} metadata entries, but 0 are followed by the ${TENSORS} tensor infos it declares (from byte 24): the header's metadata count is wrong; the file is damaged: download or convert it again`);
    // Each count's own two infos, and the shared run once: not the 900 000 of a walk per count.
    expect(r.lookups).toBeLessThanOrEqual(2 * ENTRIES + TENSORS + 8);
  });

  it('where no run fits, or two do, says the tensor count is wrong (the run of the declared count has none)', async () => {
    const fitsNone = runDataEnd(braided, 0, TENSORS) - 1;
    const fitsTwo = runDataEnd(braided, 1, TENSORS);
    expect(fitsTwo).toBeGreaterThan(fitsNone + 1);
    for (const size of [fitsNone, fitsTwo]) {
      const r = await refusal(braided, size);
      expect(r).toMatchObject({ code: 'INVALID_HEADER', message: tensorCountWrong });
      expect(r.lookups).toBeLessThanOrEqual(2 * ENTRIES + TENSORS + 8);
    }
  });

  it('stops at the next tick once cancelled: no info read after the abort', async () => {
    const controller = new AbortController();
    let after = 0;
    watch.lookups = 0;
    // The 1000th lookup is in the shared run, which the first count's walk reads.
    watch.onLookup = () => {
      if (controller.signal.aborted) after++;
      else if (watch.lookups === 1000) controller.abort('stop');
    };
    let outcome: unknown;
    try {
      outcome = await openGguf(sparseSource('braided.gguf', runDataEnd(braided, 0, TENSORS), [[0, braided.header]]), new Pacer(controller.signal, 0)).catch((x: unknown) => x);
    } finally {
      watch.onLookup = undefined;
    }
    expect(outcome).toMatchObject({ code: 'ABORTED', cause: 'stop' });
    expect(after).toBe(0);
  });

  it('refuses, naming the file and its counts, once the runs hold more infos than the walk reads', async () => {
    // A shared run of 650 000 infos whose data fit a file of 2⁴⁰ bytes: more than four files' worth.
    const budget = 4 * (MAX_TENSORS + 1);
    const long = braidedGguf(10, 650_000, MAX_TENSORS);
    const r = await refusal(long, 2 ** 40);
    expect(r).toMatchObject({
      code: 'INVALID_HEADER',
      message: `braided.gguf: the header declares 10 metadata entries and ${MAX_TENSORS} tensors, which do not match what follows them, and no count that does was found in the ${budget} tensor infos read looking for one: the file is damaged: download or convert it again`,
    });
    // The header is read in windows that double; the walk begins anew in each.
    expect(r.lookups).toBeLessThanOrEqual(3 * budget);
  }, 60_000);
});
