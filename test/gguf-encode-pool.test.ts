/**
 * GGUF requantization on the CPU backend's worker threads: the blocks equal those the codecs write
 * on the calling thread (every thread runs the same reference encoder), the work does go to the
 * workers, a whole requantizing merge gives the same file as on one thread, and cancelling stops it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { CpuWorkerPool } from '../src/engine/cpu/cpu-worker-pool.js';
import { blockCodec } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { seededRandom } from './helpers/fixtures.js';
import { peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';
import { threadBackends } from './helpers/thread-backends.js';

const threads = threadBackends();
let pool: CpuWorkerPool;
let threaded: CpuBackend;
let single: CpuBackend;

beforeAll(() => {
  pool = threads.pool(3);
  threaded = threads.backend(pool);
  single = threads.backend();
});

describe('GGML blocks encoded on the worker threads', () => {
  for (const name of ['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_0', 'Q4_0', 'Q5_1', 'MXFP4', 'NVFP4', 'Q1_0', 'Q2_0', 'TQ1_0', 'TQ2_0']) {
    it(`${name}: the same bytes as the codec on the calling thread`, async () => {
      const type = ggmlTypeByName(name)!;
      const rand = seededRandom(type.id);
      // An odd number of blocks, so the last piece is short.
      const blocks = Math.ceil(200_000 / type.blockSize) | 1;
      const values = Float32Array.from({ length: blocks * type.blockSize }, () => (rand() - 0.5) * (rand() < 0.01 ? 50 : 1));
      const here = new Uint8Array(blocks * type.blockBytes);
      blockCodec(type)!.encode(values, here);
      const before = pool.sent.encodePieces;
      const there = await threaded.encodeBlocks(name, type.blockSize, type.blockBytes, values);
      expect(there).toBeDefined();
      expect(pool.sent.encodePieces - before).toBeGreaterThanOrEqual(2);
      expect(Buffer.from(there!).equals(Buffer.from(here))).toBe(true);
      // Without a pool the backend leaves encoding to the caller.
      expect(await single.encodeBlocks(name, type.blockSize, type.blockBytes, values)).toBeUndefined();
    });
  }

  it('with importance weights (--imatrix): whole rows per piece, each row its expert\'s weights, the same bytes as on the calling thread', async () => {
    for (const name of ['Q4_K', 'Q4_0', 'IQ4_XS']) {
      const type = ggmlTypeByName(name)!;
      const rand = seededRandom(type.id + 1);
      // 3 experts of 67 rows of 1024 values, a slab from row 5: pieces cross experts and end mid-expert.
      const cols = 1024, rowsPerExpert = 67, firstRow = 5, rows = 3 * rowsPerExpert - firstRow;
      const values = Float32Array.from({ length: rows * cols }, () => (rand() - 0.5) * 0.05);
      const weights = Float32Array.from({ length: 3 * cols }, () => Math.exp(4 * (rand() - 0.5)));
      const rowBytes = (cols / type.blockSize) * type.blockBytes;
      const here = new Uint8Array(rows * rowBytes);
      for (let r = 0; r < rows; r++) {
        const e = Math.floor((firstRow + r) / rowsPerExpert);
        blockCodec(type)!.encodeWeighted!(values.subarray(r * cols, (r + 1) * cols), here.subarray(r * rowBytes, (r + 1) * rowBytes), weights.subarray(e * cols, (e + 1) * cols));
      }
      const before = pool.sent.encodePieces;
      const there = await threaded.encodeBlocks(name, type.blockSize, type.blockBytes, values, undefined, { weights, cols, rowsPerExpert, firstRow });
      expect(pool.sent.encodePieces - before, name).toBeGreaterThanOrEqual(2);
      expect(Buffer.from(there!).equals(Buffer.from(here)), name).toBe(true);
    }
  });

  it('a requantizing GGUF merge writes the same file on the workers as on one thread', async () => {
    const base = q4kmLlama();
    const adapter = peftLlamaAdapter();
    const run = async (backend: CpuBackend) => {
      const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(adapter.files, 'peft') }]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend });
      await prepared.close();
      return new Uint8Array(await output.files()[0].blob.arrayBuffer());
    };
    const before = pool.sent.encodePieces;
    const [a, b] = [await run(threaded), await run(single)];
    expect(pool.sent.encodePieces).toBeGreaterThan(before);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  it('values IQ3_S cannot hold: the codec\'s own refusal (its code and words), as on the calling thread, not a worker failure', async () => {
    // Found by the surface fuzz (a type-mix merge, --dtype iq3_m, a weight of 2.5e38): ggml's IQ3
    // quantizer overflows f32 on such blocks and aborts, which the codec refuses.
    const type = ggmlTypeByName('IQ3_S')!;
    const blocks = 401;
    const values = Float32Array.from({ length: blocks * type.blockSize }, (_, i) => ((i % 7) - 3) / 8);
    // In the first piece, which a worker takes (the calling thread takes a later one, and its own refusal would come first).
    values[10 * type.blockSize + 5] = 2.5e38;
    let here: unknown;
    try {
      blockCodec(type)!.encode(values, new Uint8Array(blocks * type.blockBytes));
    } catch (e) {
      here = e;
    }
    expect(here).toMatchObject({ code: 'NON_FINITE' });
    const before = pool.sent.encodePieces;
    await expect(threaded.encodeBlocks('IQ3_S', type.blockSize, type.blockBytes, values)).rejects.toMatchObject({ code: 'NON_FINITE', message: (here as Error).message });
    expect(pool.sent.encodePieces - before).toBeGreaterThanOrEqual(2);
  });

  it('stops when cancelled', async () => {
    const values = new Float32Array(256 * 4096);
    const controller = new AbortController();
    controller.abort();
    await expect(threaded.encodeBlocks('Q4_K', 256, 144, values, controller.signal)).rejects.toMatchObject({ code: 'ABORTED' });
  });
});
