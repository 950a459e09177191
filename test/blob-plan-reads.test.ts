/**
 * How many bytes the page pulls from picked Files (every byte passes through the browser process):
 * the plan (demo/plan-summary.ts on the worker's file sets, demo/picked-file-set.ts) pulls about
 * what it asks for, the headers, factors and sampled rows of W, even where a layer's k_proj and
 * v_proj, read whole, end where o_proj's first sampled rows begin; the merge's sets still read a
 * file front to back through one byte stream, those the worker's merge plans from first only once
 * planned. A Llama model with TinyLlama's attention (hidden
 * 2048, 32 heads, 4 key-value heads) and a PEFT LoRA on q, k, v and o, counted at the Blob.
 */
import { describe, expect, it } from 'vitest';
import { pickedFileSet } from '../demo/picked-file-set.js';
import { summarizePlan } from '../demo/plan-summary.js';
import { buildSafetensors, f16BitsFromF64, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftFiles, type FixtureModule } from './helpers/adapter-fixtures.js';

const HIDDEN = 2048, HEADS = 32, KV_HEADS = 4, INTERMEDIATE = 512, VOCAB = 1024, LAYERS = 2;
const KV = (HIDDEN / HEADS) * KV_HEADS;
const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
const MiB = 1024 * 1024;

const config = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: HIDDEN, intermediate_size: INTERMEDIATE,
  num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, num_hidden_layers: LAYERS, vocab_size: VOCAB,
  max_position_embeddings: 2048, rms_norm_eps: 1e-5, hidden_act: 'silu', tie_word_embeddings: false, torch_dtype: 'float16',
};

/** f16 bytes of a tensor: small positive values from a cheap pattern (only their count matters here). */
function f16Tensor(name: string, shape: number[]): FixtureTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const words = new Uint16Array(n);
  const bits = Array.from({ length: 64 }, (_, i) => f16BitsFromF64((i - 31.5) / 256));
  for (let i = 0; i < n; i++) words[i] = bits[(i * 7) & 63];
  return { name, dtype: 'F16', shape, data: new Uint8Array(words.buffer) };
}

/** (out, in) of each projection of a layer. */
const shapes: Record<string, [number, number]> = {
  q_proj: [HIDDEN, HIDDEN], k_proj: [KV, HIDDEN], v_proj: [KV, HIDDEN], o_proj: [HIDDEN, HIDDEN],
  gate_proj: [INTERMEDIATE, HIDDEN], up_proj: [INTERMEDIATE, HIDDEN], down_proj: [HIDDEN, INTERMEDIATE],
};
const path = (layer: number, m: string) => `model.layers.${layer}.${m.endsWith('_proj') && !TARGETS.includes(m) ? 'mlp' : 'self_attn'}.${m}`;

/**
 * The base's tensors in module order (as `state_dict()` lists them, and as the bench model is
 * written) or sorted by name (as safetensors' `save_file` writes a one-dtype file).
 */
function baseTensors(order: 'module' | 'sorted'): FixtureTensor[] {
  const out = [f16Tensor('model.embed_tokens.weight', [VOCAB, HIDDEN])];
  for (let layer = 0; layer < LAYERS; layer++) {
    out.push(f16Tensor(`model.layers.${layer}.input_layernorm.weight`, [HIDDEN]));
    for (const m of [...TARGETS, 'gate_proj', 'up_proj', 'down_proj']) out.push(f16Tensor(`${path(layer, m)}.weight`, shapes[m]));
    out.push(f16Tensor(`model.layers.${layer}.post_attention_layernorm.weight`, [HIDDEN]));
  }
  out.push(f16Tensor('model.norm.weight', [HIDDEN]), f16Tensor('lm_head.weight', [VOCAB, HIDDEN]));
  return order === 'sorted' ? out.sort((a, b) => (a.name < b.name ? -1 : 1)) : out;
}

function adapterFiles(): Record<string, Uint8Array | string> {
  const rand = seededRandom(91);
  const dense = (rows: number, cols: number) => ({ rows, cols, data: Float64Array.from({ length: rows * cols }, () => Math.fround(rand() - 0.5)) });
  const modules: FixtureModule[] = [];
  for (let layer = 0; layer < LAYERS; layer++) {
    for (const m of TARGETS) modules.push({ name: path(layer, m), b: dense(shapes[m][0], 4), a: dense(4, shapes[m][1]), alpha: 8 });
  }
  return peftFiles(modules, { target_modules: TARGETS, lora_alpha: 8, r: 4 });
}

/** What was pulled out of one Blob: by slice reads and by byte streams. */
interface Pulled { sliced: number; streamed: number; streams: number }

/** `blob` as the page's File, counting every byte a slice or a byte stream hands over. */
function counted(blob: Blob, pulled: Pulled): Blob {
  const wrap = (b: Blob): Blob => ({
    size: b.size,
    type: '',
    slice: (start?: number, end?: number) => wrap(b.slice(start, end)),
    arrayBuffer: async () => {
      const bytes = await b.arrayBuffer();
      pulled.sliced += bytes.byteLength;
      return bytes;
    },
    stream: () => {
      pulled.streams++;
      const stream = b.stream();
      return {
        getReader: (options: { mode: 'byob' }) => {
          const reader = stream.getReader(options);
          return {
            read: async (view: Uint8Array) => {
              const got = await reader.read(view);
              if (got.value) pulled.streamed += got.value.byteLength;
              return got;
            },
            cancel: (reason?: unknown) => reader.cancel(reason),
            releaseLock: () => reader.releaseLock(),
            closed: reader.closed,
          };
        },
      };
    },
  }) as unknown as Blob;
  return wrap(blob);
}

function picked(files: Record<string, Uint8Array | string>, pulled: Pulled) {
  return Object.entries(files).map(([path, bytes]) => ({ path, file: counted(new Blob([bytes as Uint8Array<ArrayBuffer>]), pulled) as File }));
}

/**
 * The bytes of W the plan asks for, written out from how it measures ‖W‖: a tensor of at most 2^20
 * elements whole, a larger one as 8 runs of ⌊2^18 / 8 / in⌋ rows.
 */
function askedOfW(): number {
  let bytes = 0;
  for (let layer = 0; layer < LAYERS; layer++) {
    for (const m of TARGETS) {
      const [rows, cols] = shapes[m];
      bytes += 2 * (rows * cols <= 2 ** 20 ? rows * cols : 8 * Math.floor(2 ** 18 / 8 / cols) * cols);
    }
  }
  return bytes;
}

describe('bytes the page pulls from picked files', () => {
  for (const order of ['module', 'sorted'] as const) {
    it(`plans a ${LAYERS}-layer Llama with its tensors in ${order} order pulling about the bytes it reads, none read ahead`, async () => {
      const model = buildSafetensors(baseTensors(order), { format: 'pt' });
      const base: Pulled = { sliced: 0, streamed: 0, streams: 0 };
      const lora: Pulled = { sliced: 0, streamed: 0, streams: 0 };
      const adapter = adapterFiles();
      const summary = await summarizePlan(
        pickedFileSet('llama', picked({ 'config.json': JSON.stringify(config), 'model.safetensors': model }, base), 'plan'),
        [{ files: pickedFileSet('lora', picked(adapter, lora), 'plan'), weight: 1 }],
      );
      expect(summary.mergeable).toBe(true);
      expect(summary.magnitudes).toHaveLength(LAYERS * TARGETS.length);
      // The header twice (the plan prepares at the sliders' weights and at weight 1), a config, W's samples.
      const header = 8 + Number(new DataView(model.buffer, model.byteOffset).getBigUint64(0, true));
      const asked = askedOfW() + 2 * header + JSON.stringify(config).length;
      expect(base.streams).toBe(0);
      expect(base.sliced + base.streamed).toBeGreaterThanOrEqual(askedOfW());
      // Small reads come from 64 KiB windows: at most one window's slack per sampled run.
      expect(base.sliced + base.streamed).toBeLessThanOrEqual(asked + LAYERS * TARGETS.length * 8 * 64 * 1024);
      // No byte streams (each a data pipe left open until a read elsewhere) for a plan's reads.
      expect(lora.streams).toBe(0);
      // The adapter's factors are read once each (the file holds little else).
      const adapterBytes = (adapter['adapter_model.safetensors'] as Uint8Array).byteLength + (adapter['adapter_config.json'] as string).length;
      expect(lora.sliced + lora.streamed).toBeLessThanOrEqual(adapterBytes + 2 * MiB);
    });
  }

  it('reads the merge\'s sets front to back through one byte stream, each byte once', async () => {
    const model = buildSafetensors(baseTensors('module'), { format: 'pt' });
    const pulled: Pulled = { sliced: 0, streamed: 0, streams: 0 };
    const source = await pickedFileSet('llama', picked({ 'model.safetensors': model }, pulled), 'merge').open('model.safetensors');
    // In the merge's 4 MiB slabs: the first read plainly, the rest from windows read ahead.
    for (let at = 0; at < model.byteLength; at += 4 * MiB) {
      const length = Math.min(4 * MiB, model.byteLength - at);
      const got = await source.read(at, length);
      expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(model.subarray(at, at + length)), `bytes at ${at}`).toBe(true);
    }
    await source.close();
    expect(pulled.streams).toBe(1);
    expect(pulled.sliced + pulled.streamed).toBe(model.byteLength);
  });

  it('reads a set planned and then merged (the worker\'s merge) without windows until the plan is done, then front to back through one stream', async () => {
    const model = buildSafetensors(baseTensors('module'), { format: 'pt' });
    const pulled: Pulled = { sliced: 0, streamed: 0, streams: 0 };
    let planned = false;
    const source = await pickedFileSet('llama', picked({ 'model.safetensors': model }, pulled), () => planned).open('model.safetensors');
    // A plan's run of sequential reads long enough to start windows (a GGUF's metadata read in chunks): 3 MiB asked.
    for (let at = 0; at < 3 * MiB; at += MiB) await source.read(at, MiB);
    expect(pulled).toEqual({ sliced: 3 * MiB, streamed: 0, streams: 0 });
    planned = true;
    for (let at = 0; at < model.byteLength; at += 4 * MiB) {
      const length = Math.min(4 * MiB, model.byteLength - at);
      const got = await source.read(at, length);
      expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(model.subarray(at, at + length)), `bytes at ${at}`).toBe(true);
    }
    await source.close();
    expect(pulled.streams).toBe(1);
    expect(pulled.sliced + pulled.streamed).toBe(3 * MiB + model.byteLength);
  });
});
