/**
 * What the one-call merge() pulls out of Blob inputs while it plans: the same bytes a set read
 * without read-ahead pulls for that plan (what the plan asks for), none read ahead, no byte stream
 * opened; the merge that follows on the same open files reads ahead again. A GGUF llama in F16
 * whose metadata holds a BPE tokenizer's merges (a run of several MiB that the GGUF parser reads in
 * sequential chunks, long enough to start read-ahead windows, which pulled the tensors behind it
 * into the plan), a llama.cpp LoRA on blk.0.ffn_down, counted at the Blob. The merged tensor is
 * checked against float64 truth.
 */
import { describe, expect, it, vi } from 'vitest';
import { merge } from '../src/merge.js';
import { blobInputFileSet, prepareMerge } from '../src/index.js';
import { buildGguf, readGguf, tensorValues, type FixtureTensor, type MetaValue } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, splitF16Llama, truthWithLora } from './helpers/gguf-models.js';

/** Whether the one-call merge is still planning: prepareMerge has not returned yet. */
const phase = vi.hoisted(() => ({ planning: true }));
vi.mock('../src/pipeline/prepare-merge.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/pipeline/prepare-merge.js')>();
  return {
    ...real,
    prepareMerge: async (...args: Parameters<typeof real.prepareMerge>) => {
      const prepared = await real.prepareMerge(...args);
      phase.planning = false;
      return prepared;
    },
  };
});

interface Pulled { bytes: number; streams: number }
interface Phases { plan: Pulled; merge: Pulled }

/** A File counting every byte its slices and byte streams hand over, by phase. */
class CountedFile extends File {
  constructor(private readonly inner: Blob, name: string, private readonly pulled: Phases) {
    super([], name);
  }
  private get now(): Pulled {
    return phase.planning ? this.pulled.plan : this.pulled.merge;
  }
  override get size(): number {
    return this.inner.size;
  }
  override slice(start?: number, end?: number): Blob {
    return new CountedFile(this.inner.slice(start, end), this.name, this.pulled);
  }
  override async arrayBuffer(): Promise<ArrayBuffer> {
    const bytes = await this.inner.arrayBuffer();
    this.now.bytes += bytes.byteLength;
    return bytes;
  }
  override stream(): ReadableStream<Uint8Array<ArrayBuffer>> {
    const at = this.now;
    at.streams++;
    const stream = this.inner.stream();
    return {
      getReader: (options: { mode: 'byob' }) => {
        const reader = stream.getReader(options);
        return {
          read: async (view: Uint8Array) => {
            const got = await reader.read(view as Uint8Array<ArrayBuffer>);
            if (got.value) at.bytes += got.value.byteLength;
            return got;
          },
          cancel: (reason?: unknown) => reader.cancel(reason),
          releaseLock: () => reader.releaseLock(),
          closed: reader.closed,
        };
      },
    } as unknown as ReadableStream<Uint8Array<ArrayBuffer>>;
  }
}

const phases = (): Phases => ({ plan: { bytes: 0, streams: 0 }, merge: { bytes: 0, streams: 0 } });
const TARGET = 'blk.0.ffn_down.weight';

/** The split F16 llama in one file, its tokenizer given 200 000 BPE merges, and a 32 000-token vocabulary's embeddings. */
function llamaGguf(): { bytes: Uint8Array; w: Float64Array } {
  const fixture = splitF16Llama();
  const VOCAB = 32000;
  const metadata: [string, MetaValue][] = fixture.metadata.map(([k, v]) => (k === 'tokenizer.ggml.tokens'
    ? [k, { type: 'array', itemType: 'string', value: Array.from({ length: VOCAB }, (_, i) => `tok${i}`) }]
    : k === 'tokenizer.ggml.token_type' ? [k, { type: 'array', itemType: 'i32', value: Array.from({ length: VOCAB }, () => 1) }] : [k, v]));
  metadata.push(['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: Array.from({ length: 200000 }, (_, i) => `Ġt${i % 977} e${i}`) }]);
  const tensors: FixtureTensor[] = [...fixture.tensors].map(([name, t]) => (name === 'token_embd.weight' || name === 'output.weight'
    // F16 0x2000 (2^-7) everywhere: only the size matters for these.
    ? { name, type: 'F16', ne: [LLAMA.hidden, VOCAB], data: new Uint8Array(new Uint16Array(LLAMA.hidden * VOCAB).fill(0x2000).buffer) }
    : { name, type: t.type, ne: [...t.shape].reverse(), data: t.data }));
  return { bytes: buildGguf({ metadata, tensors }), w: fixture.tensors.get(TARGET)!.values };
}

describe('one-call merge() of Blobs: planning reads no windows ahead', () => {
  it('pulls for the plan what a set without read-ahead pulls, then merges reading ahead, the merged tensor as float64 truth says', async () => {
    const { bytes, w } = llamaGguf();
    const lora = ggufLoraAdapter([{ tensor: TARGET, rank: 8, in: LLAMA.ffn, out: LLAMA.hidden, aType: 'F32', bType: 'F16' }], 16);

    // What the plan asks for: the same plan over sets read without read-ahead.
    const asked = phases();
    phase.planning = true;
    const plain = await prepareMerge(
      blobInputFileSet('llama', new Map([['llama.gguf', new CountedFile(new Blob([bytes as Uint8Array<ArrayBuffer>]), 'llama.gguf', asked)]]), undefined, { readAhead: false }),
      [{ files: blobInputFileSet('lora', new Map([['lora.gguf', new Blob([lora.bytes as Uint8Array<ArrayBuffer>])]]), undefined, { readAhead: false }) }],
    );
    await plain.close();
    expect(asked.plan.bytes).toBeGreaterThan(4 * 1024 * 1024); // the metadata (read twice: parsed, then checked) is a run of MiBs

    const base = phases(), adapter = phases();
    phase.planning = true;
    const { blobs } = await merge({
      base: new CountedFile(new Blob([bytes as Uint8Array<ArrayBuffer>]), 'llama.gguf', base),
      adapters: [{ source: new CountedFile(new Blob([lora.bytes as Uint8Array<ArrayBuffer>]), 'lora.gguf', adapter), weight: 0.5 }],
      dtype: 'f32',
      backend: 'cpu',
    });
    // With read-ahead while planning: 43.4 MB pulled (the windows ran through every tensor of this
    // 38.5 MB file) for 10.9 MB asked; now 10.9 MB, and the merge's own 33.6 MB after it.
    expect(base.plan.bytes).toBe(asked.plan.bytes);
    expect(base.plan.streams + adapter.plan.streams).toBe(0);
    // The merge reads the file front to back through a byte stream (windows read ahead).
    expect(base.merge.streams).toBeGreaterThan(0);
    expect(base.plan.bytes + base.merge.bytes).toBeLessThanOrEqual(bytes.byteLength + asked.plan.bytes);

    const truth = truthWithLora(w, LLAMA.hidden, LLAMA.ffn, lora.factors.get(TARGET)!, 0.5 * 16 / 8, false);
    const merged = readGguf(new Uint8Array(await blobs[0].blob.arrayBuffer())).tensors.find((x) => x.name === TARGET)!;
    const got = tensorValues('F32', merged.data);
    const scale = truth.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (let i = 0; i < truth.length; i++) expect(Math.abs(got[i] - truth[i]), `${i}`).toBeLessThan(2e-6 * scale);
  });
});
