/**
 * A cancel while a GGUF header is read. The header of a hostile-but-legal file (tens of thousands
 * of tensor infos, a tokenizer of hundreds of thousands of tokens, up to MAX_GGUF_ARRAY_ELEMENTS
 * elements) is seconds of work: two walks over the metadata, the tensor infos, the read-back of
 * the metadata, the tensors' layout, and for a file with bytes after its last tensor the
 * wrong-count walk. The reader ticks the open's pacer once a metadata entry, once a tensor info
 * and once every GGUF_ELEMENTS_PER_TICK array elements in each of them, and stops at the first
 * tick after an abort.
 *
 * Work is counted, not timed: the strings the reader decodes (TextDecoder.decode), the u32 fields
 * it reads (DataView.getUint32), the strings the read-back encodes (TextEncoder.encodeInto) and the
 * GGML types it looks up (ggmlTypeById, once a tensor in the layout and in the wrong-count walk).
 * The abort is asked for from inside that work, mid-phase; the pacer yields at every tick (a turn
 * of 0 ms), so the count after the abort does not depend on the machine's speed.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Pacer } from '../src/event-turns.js';
import { GGUF_ELEMENTS_PER_TICK } from '../src/formats/gguf/gguf-header-scan.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { openModelPaced } from '../src/formats/open-model.js';
import type { ByteSource, InputFileSet } from '../src/io/types.js';
import { concatBytes, sparseSource } from './helpers/fixtures.js';
import { encodeKv, ggufString, type MetaValue } from './helpers/gguf-builder.js';

/** Work the reader does, by kind; `hook` sees each piece as it starts. */
type Work = 'decode' | 'u32' | 'encode' | 'type';
const watch = vi.hoisted(() => ({ hook: undefined as undefined | ((work: 'decode' | 'u32' | 'encode' | 'type', text?: string) => void) }));

vi.mock('../src/formats/gguf/ggml-types.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/gguf/ggml-types.js')>();
  return { ...real, ggmlTypeById: (id: number) => (watch.hook?.('type'), real.ggmlTypeById(id)) };
});

/** The GGUF base's model built (ggufContainer, once a model) and its scales read (readKeptScales). */
const built = vi.hoisted(() => ({ containers: 0, scales: 0, onContainer: undefined as undefined | (() => void) }));
vi.mock('../src/formats/gguf/gguf-container.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/gguf/gguf-container.js')>();
  return { ...real, ggufContainer: (...args: Parameters<typeof real.ggufContainer>) => (built.containers++, built.onContainer?.(), real.ggufContainer(...args)) };
});
/** The loader-order view of the tensors that llama-quantize's mixes need (mixContext), made. */
const mixes = vi.hoisted(() => ({ made: 0 }));
vi.mock('../src/formats/gguf/type-mixes.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/gguf/type-mixes.js')>();
  return { ...real, mixContext: (...args: Parameters<typeof real.mixContext>) => (mixes.made++, real.mixContext(...args)) };
});
vi.mock('../src/formats/gguf/kept-scales.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/gguf/kept-scales.js')>();
  return { ...real, readKeptScales: (...args: Parameters<typeof real.readKeptScales>) => (built.scales++, real.readKeptScales(...args)) };
});

const originals = {
  decode: TextDecoder.prototype.decode,
  getUint32: DataView.prototype.getUint32,
  encodeInto: TextEncoder.prototype.encodeInto,
};
beforeAll(() => {
  TextDecoder.prototype.decode = function (this: TextDecoder, ...args: Parameters<TextDecoder['decode']>) {
    const text = originals.decode.apply(this, args);
    watch.hook?.('decode', text);
    return text;
  };
  DataView.prototype.getUint32 = function (this: DataView, ...args: Parameters<DataView['getUint32']>) {
    watch.hook?.('u32');
    return originals.getUint32.apply(this, args);
  };
  TextEncoder.prototype.encodeInto = function (this: TextEncoder, ...args: Parameters<TextEncoder['encodeInto']>) {
    watch.hook?.('encode');
    return originals.encodeInto.apply(this, args);
  };
});
afterAll(() => {
  TextDecoder.prototype.decode = originals.decode;
  DataView.prototype.getUint32 = originals.getUint32;
  TextEncoder.prototype.encodeInto = originals.encodeInto;
});

/** llama.cpp's per-block tensor names (llama-arch.cpp LLM_ARCH_LLAMA). */
const BLOCK_TENSORS = ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'];
const TENSORS = 36_000;
const BLOCKS = TENSORS / BLOCK_TENSORS.length;
/** A SentencePiece vocabulary of this many tokens ("▁" marks a word's start, as in Llama 2's). */
const VOCAB = 200_000;

/**
 * A header-only llama GGUF (its data a hole of zeros) of `metadata` and TENSORS small F32 tensors
 * named as llama.cpp names them, as its header and the size of the file.
 */
function headerOnly(metadata: [string, MetaValue][]): { header: Uint8Array; size: number } {
  const infos: Uint8Array[] = [];
  const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
  const u64 = (n: number) => new Uint8Array(new BigUint64Array([BigInt(n)]).buffer);
  // F32 (type 0), ne [64] for norms and [64, 64] for matrices, each at the previous one's end (a multiple of 32).
  let offset = 0;
  for (let b = 0; b < BLOCKS; b++) {
    for (const t of BLOCK_TENSORS) {
      const ne = t.endsWith('norm') ? [64] : [64, 64];
      infos.push(ggufString(`blk.${b}.${t}.weight`), u32(ne.length), ...ne.map(u64), u32(0), u64(offset));
      offset += 4 * ne.reduce((x, y) => x * y, 1);
    }
  }
  const header = concatBytes([new TextEncoder().encode('GGUF'), u32(3), u64(TENSORS), u64(metadata.length), ...metadata.map(([k, v]) => encodeKv(k, v)), ...infos]);
  const dataStart = Math.ceil(header.byteLength / 32) * 32;
  return { header, size: dataStart + offset };
}

const llama: [string, MetaValue][] = [
  ['general.architecture', { type: 'string', value: 'llama' }],
  ['general.name', { type: 'string', value: 'Llama 2 7B' }],
  ['llama.block_count', { type: 'u32', value: BLOCKS }],
];
const tokenizer: [string, MetaValue][] = [
  ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
  ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: Array.from({ length: VOCAB }, (_, i) => `▁tok${i}`) }],
  ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: Array.from({ length: VOCAB }, (_, i) => -i) }],
  ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: Array.from({ length: VOCAB }, () => 1) }],
];

let file: { header: Uint8Array; size: number } | undefined;
/** The llama GGUF with its tokenizer, `trailing` bytes after its last tensor's data. */
function llamaGguf(trailing = 0): ByteSource {
  file ??= headerOnly([...llama, ...tokenizer]);
  return sparseSource('llama-2-7b.Q4_K_M.gguf', file.size + trailing, [[0, file.header]]);
}

interface Phase {
  what: string;
  trailing?: number;
  /** The work counted. */
  counted: Work;
  /** Whether a piece of work is the phase's (`state.tokensKeys`: how often the tokens' key was decoded, once a walk). */
  ours: (work: Work, text: string | undefined, state: { tokensKeys: number }) => boolean;
  /** The counted piece at which the abort is asked for. */
  abortAt: number;
  /** The most counted pieces allowed after the abort. */
  most: number;
}

const phases: Phase[] = [
  {
    // The first walk reads each token's u64 length (two u32 reads) and skips its bytes.
    what: 'the first walk over tokenizer.ggml.tokens (lengths only)', counted: 'u32',
    ours: (work, _t, s) => work === 'u32' && s.tokensKeys === 1, abortAt: VOCAB, most: 2 * GGUF_ELEMENTS_PER_TICK + 16,
  },
  {
    what: 'the second walk decoding tokenizer.ggml.tokens', counted: 'decode',
    ours: (work, text) => work === 'decode' && text!.startsWith('▁'), abortAt: Math.floor(VOCAB / 3), most: GGUF_ELEMENTS_PER_TICK,
  },
  {
    what: 'the tensor infos', counted: 'decode',
    ours: (work, text) => work === 'decode' && text!.startsWith('blk.'), abortAt: TENSORS / 3, most: 0,
  },
  {
    what: 'the read-back of the metadata', counted: 'encode',
    ours: (work) => work === 'encode', abortAt: Math.floor(VOCAB / 3), most: GGUF_ELEMENTS_PER_TICK,
  },
  {
    what: "the tensors' layout", counted: 'type',
    ours: (work) => work === 'type', abortAt: TENSORS / 3, most: 0,
  },
  {
    // Bytes after the last tensor: the header is walked again, with other counts (gguf-counts.ts).
    what: 'the wrong-count walk of a file with bytes after its last tensor', trailing: 4096, counted: 'type',
    ours: (work) => work === 'type', abortAt: TENSORS + TENSORS / 3, most: 0,
  },
];

/** Opens the file with the reader's work watched: how many pieces of `phase`'s work there were in all. */
async function countAll(phase: Phase): Promise<number> {
  const source = llamaGguf(phase.trailing);
  const state = { tokensKeys: 0 };
  let n = 0;
  watch.hook = (work, text) => {
    if (work === 'decode' && text === 'tokenizer.ggml.tokens') state.tokensKeys++;
    if (phase.ours(work, text, state)) n++;
  };
  try {
    await openGguf(source, new Pacer());
  } finally {
    watch.hook = undefined;
  }
  return n;
}

describe.each(phases)('a cancel during $what', (phase) => {
  it('stops the read at the next tick: at most one batch of that work after the abort', async () => {
    // Uncancelled, there is this much of it (so that without ticks most of it would follow the abort).
    const all = await countAll(phase);
    expect(all).toBeGreaterThan(phase.abortAt + 10 * Math.max(phase.most, 1000));
    const source = llamaGguf(phase.trailing);
    const controller = new AbortController();
    const reason = new Error('user pressed stop');
    const state = { tokensKeys: 0 };
    let seen = 0;
    let after = 0;
    watch.hook = (work, text) => {
      if (work === 'decode' && text === 'tokenizer.ggml.tokens') state.tokensKeys++;
      if (!phase.ours(work, text, state)) return;
      if (controller.signal.aborted) after++;
      else if (++seen === phase.abortAt) controller.abort(reason);
    };
    let outcome: unknown;
    try {
      outcome = await openGguf(source, new Pacer(controller.signal, 0)).catch((e: unknown) => e);
    } finally {
      watch.hook = undefined;
    }
    expect(controller.signal.aborted, 'the abort was asked for').toBe(true);
    // Without the phase's ticks the read went on to its end: all of the work left.
    expect(after, `${after} of the ${all - phase.abortAt} pieces of ${phase.counted} work left were done after the abort`).toBeLessThanOrEqual(phase.most);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
  }, 120_000);
});

describe('openModel of a GGUF base', () => {
  /** The llama GGUF as a base model's files. */
  const llamaFiles = (): InputFileSet => {
    const source = llamaGguf();
    return { name: 'llama-2-7b.Q4_K_M.gguf', list: () => ['llama-2-7b.Q4_K_M.gguf'], readText: () => Promise.reject(new Error('no text files')), open: async () => source };
  };

  it('builds no model once a cancel is asked for as the last tensor is laid out, and reads no scales once asked for as the model is built', async () => {
    built.containers = built.scales = mixes.made = 0;
    const model = await openModelPaced(llamaFiles(), new Pacer());
    expect([built.containers, built.scales]).toEqual([1, 1]);
    // The mixes' view of all 36 000 tensors (sorted in the loader's order) is made when a mix is
    // asked for, not when the model is opened.
    expect(mixes.made).toBe(0);
    const attnV = { name: 'blk.0.attn_v.weight', type: 'F32', shape: [64, 64], byteLength: 4 * 64 * 64 };
    expect(model.format.outputType(attnV, true, 'Q8_0')).toBe('Q8_0');
    expect(mixes.made).toBe(0);
    expect(model.format.outputType(attnV, true, model.format.parseOutputType('q4_k_m'))).toMatch(/^Q/);
    expect(model.format.outputType(attnV, true, 'Q4_K_M')).toMatch(/^Q/);
    expect(mixes.made).toBe(1);
    await model.close();
    // Asked for at the last tensor's type lookup (the layout's, the header's last work).
    const atLayout = new AbortController();
    let lookups = 0;
    watch.hook = (work) => {
      if (work === 'type' && ++lookups === TENSORS) atLayout.abort('stop');
    };
    built.containers = built.scales = 0;
    try {
      await expect(openModelPaced(llamaFiles(), new Pacer(atLayout.signal, 0))).rejects.toMatchObject({ name: 'AbortError', code: 'ABORTED', cause: 'stop' });
    } finally {
      watch.hook = undefined;
    }
    // Without the tick before it, the model was built over all 36,000 tensors (unpaced, its scales read too).
    expect([built.containers, built.scales]).toEqual([0, 0]);
    // Asked for as the model is built (its container made): its scales are not read.
    const atModel = new AbortController();
    built.containers = built.scales = 0;
    built.onContainer = () => atModel.abort('stop');
    try {
      await expect(openModelPaced(llamaFiles(), new Pacer(atModel.signal, 0))).rejects.toMatchObject({ name: 'AbortError', code: 'ABORTED', cause: 'stop' });
    } finally {
      built.onContainer = undefined;
    }
    expect([built.containers, built.scales]).toEqual([1, 0]);
  }, 120_000);

  it("describes the model's tensors paced: a cancel asked for at the 12 000th stops the next", async () => {
    // Each tensor as the plan sees it (a map entry holding its stored type), counted as made.
    const set = Map.prototype.set;
    const described = { all: 0, seen: 0, after: 0 };
    const controller = new AbortController();
    Map.prototype.set = function <K, V>(this: Map<K, V>, key: K, value: V) {
      if (typeof value === 'object' && value !== null && 'storedType' in value) {
        described.all++;
        if (controller.signal.aborted) described.after++;
        else if (++described.seen === TENSORS / 3) controller.abort('stop');
      }
      return set.call(this, key, value) as Map<K, V>;
    };
    built.containers = 0;
    try {
      await expect(openModelPaced(llamaFiles(), new Pacer(controller.signal, 0))).rejects.toMatchObject({ name: 'AbortError', code: 'ABORTED', cause: 'stop' });
    } finally {
      Map.prototype.set = set;
    }
    // Without a tick per tensor the other 24 000 were described after the abort.
    expect(described).toEqual({ all: TENSORS / 3, seen: TENSORS / 3, after: 0 });
    expect(built.containers).toBe(0);
  }, 120_000);

  it("hands its pacer to the header's read: an abort at its 1000th tick ends the open there", async () => {
    const files = llamaFiles();
    const controller = new AbortController();
    let ticks = 0;
    class Aborting extends Pacer {
      override tick() {
        if (++ticks === 1000) controller.abort('stop');
        return super.tick();
      }
    }
    await expect(openModelPaced(files, new Aborting(controller.signal, 0))).rejects.toMatchObject({ name: 'AbortError', code: 'ABORTED', cause: 'stop' });
    expect(ticks).toBe(1000);
  }, 120_000);
});
