/**
 * Tensor lists of real models and per-kind tables of the types llama-quantize gives them, for the
 * type-mix tests: the tests write each table out from llama-quant.cpp's rules; these helpers only
 * build the names and shapes and run the mix with llama-quantize's fallback.
 */
import { expect } from 'vitest';
import { mixContext, typeMix } from '../../src/formats/gguf/type-mixes.js';
import { fittingType } from '../../src/formats/gguf/quantize-rule.js';
import type { MergeBackend } from '../../src/index.js';
import { mergeFileInMemory } from './merge-backends.js';
import { seededRandom } from './fixtures.js';
import { buildGguf, readGguf, tensorData } from './gguf-builder.js';
import { bf16LlamaGguf } from './gguf-models.js';

/** A llama-style model's sizes; `experts` stacks the FFN as ffn_*_exps. */
export interface Dims { layers: number; hidden: number; q: number; kv: number; ffn: number; vocab: number; tied?: boolean; experts?: number }

/** A llama-style tensor list (shapes slowest first: [out, in], experts [n, out, in]), norms and router included. */
export function modelTensors(d: Dims) {
  const t: { name: string; shape: number[] }[] = [{ name: 'token_embd.weight', shape: [d.vocab, d.hidden] }];
  for (let i = 0; i < d.layers; i++) {
    t.push(
      { name: `blk.${i}.attn_norm.weight`, shape: [d.hidden] },
      { name: `blk.${i}.attn_q.weight`, shape: [d.q, d.hidden] },
      { name: `blk.${i}.attn_k.weight`, shape: [d.kv, d.hidden] },
      { name: `blk.${i}.attn_v.weight`, shape: [d.kv, d.hidden] },
      { name: `blk.${i}.attn_output.weight`, shape: [d.hidden, d.q] },
      { name: `blk.${i}.ffn_norm.weight`, shape: [d.hidden] },
    );
    if (d.experts) {
      t.push(
        { name: `blk.${i}.ffn_gate_inp.weight`, shape: [d.experts, d.hidden] },
        { name: `blk.${i}.ffn_gate_exps.weight`, shape: [d.experts, d.ffn, d.hidden] },
        { name: `blk.${i}.ffn_up_exps.weight`, shape: [d.experts, d.ffn, d.hidden] },
        { name: `blk.${i}.ffn_down_exps.weight`, shape: [d.experts, d.hidden, d.ffn] },
      );
    } else {
      t.push(
        { name: `blk.${i}.ffn_gate.weight`, shape: [d.ffn, d.hidden] },
        { name: `blk.${i}.ffn_up.weight`, shape: [d.ffn, d.hidden] },
        { name: `blk.${i}.ffn_down.weight`, shape: [d.hidden, d.ffn] },
      );
    }
  }
  t.push({ name: 'output_norm.weight', shape: [d.hidden] });
  if (!d.tied) t.push({ name: 'output.weight', shape: [d.vocab, d.hidden] });
  return t;
}

/** The type written for every quantized tensor: the mix's choice, then llama-quantize's fallback for rows that are not whole blocks. */
export function written(mixName: string, arch: string, meta: Record<string, unknown>, tensors: { name: string; shape: number[] }[]) {
  const all: Record<string, unknown> = { 'general.architecture': arch };
  for (const [k, v] of Object.entries(meta)) all[`${arch}.${k}`] = v;
  const model = mixContext((key) => all[key], tensors);
  const mix = typeMix(mixName)!;
  return new Map(tensors.filter((t) => t.shape.length > 1 && !t.name.includes('gate_inp'))
    .map((t) => [t.name, fittingType(mix.typeOf(t.name, t.shape, model), t.shape[t.shape.length - 1])]));
}

/** Per tensor kind, the expected type (a function of the layer where it depends on it). */
export type Table = Record<'token_embd' | 'output' | 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_gate' | 'ffn_up' | 'ffn_down', string | ((layer: number) => string)>;

/** Checks every tensor's type against the table's rule for its kind. */
export function expectTable(types: Map<string, string>, table: Table) {
  const expected = new Map<string, string>();
  for (const name of types.keys()) {
    const m = /^blk\.(\d+)\.([a-z_]+?)(_exps)?\.weight$/.exec(name);
    const kind = (m ? m[2] : name.replace('.weight', '')) as keyof Table;
    const rule = table[kind];
    expected.set(name, typeof rule === 'function' ? rule(Number(m![1])) : rule);
  }
  expect(Object.fromEntries(types)).toEqual(Object.fromEntries(expected));
}

/**
 * The end-to-end case both mix tests merge: an 8-layer BF16 llama GGUF (hidden 256, 4 heads, 1
 * key-value head, FFN 512, vocabulary 64; values from `seed`) and a llama.cpp LoRA (r = 2, α = 2)
 * on blk.0.ffn_down. `run` merges it with `--dtype outDtype` on `backend()` (the test's backends
 * exist only once its hooks ran) and reads the output back.
 */
export function tinyLlamaMixCase(seed: number, backend: () => MergeBackend) {
  const LAYERS = 8, HIDDEN = 256, HEADS = 4, KV_HEADS = 1, FFN = 512, VOCAB = 64;
  const rand = seededRandom(seed);
  const g = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const { specs, values: baseValues, bytes: baseBytes } = bf16LlamaGguf({ layers: LAYERS, hidden: HIDDEN, heads: HEADS, kvHeads: KV_HEADS, ffn: FFN, vocab: VOCAB }, g);
  const MERGED = 'blk.0.ffn_down.weight';
  const r = 2;
  const loraBytes = buildGguf({
    metadata: [
      ['general.architecture', { type: 'string', value: 'llama' }], ['general.type', { type: 'string', value: 'adapter' }],
      ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 2 }],
    ],
    tensors: [
      { name: `${MERGED}.lora_a`, type: 'F32', ne: [FFN, r], data: tensorData('F32', Float64Array.from({ length: r * FFN }, () => 0.05 * g())) },
      { name: `${MERGED}.lora_b`, type: 'F32', ne: [r, HIDDEN], data: tensorData('F32', Float64Array.from({ length: HIDDEN * r }, () => 0.05 * g())) },
    ],
  });

  async function run(outDtype: string, dtypeMergedOnly = false) {
    const { bytes } = await mergeFileInMemory({
      backend: backend(), base: { 'tiny-llama-BF16.gguf': baseBytes },
      adapters: [{ files: { 'tiny-lora.gguf': loraBytes }, name: 'tiny-lora', weight: 1 }], outDtype, dtypeMergedOnly,
    });
    return readGguf(bytes);
  }
  return { specs, baseValues, loraBytes, MERGED, run };
}
