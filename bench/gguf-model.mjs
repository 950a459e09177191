/**
 * The benchmark's GGUF inputs, written tensor by tensor: the bench's Llama shape as a Q4_K_M-style
 * GGUF (Q4_K matrices, Q6_K for output, attn_v and ffn_down, Q5_K for attn_k, F32 norms, llama
 * metadata with head counts) whose blocks are drawn at random (valid blocks with the scales of
 * trained weights, so no time goes into quantizing inputs), and the float64 truth of one tensor
 * after a PEFT adapter, for the quality table.
 */
import { createGgufWriter } from '../dist/formats/gguf/gguf-writer.js';
import { GGUFValueType } from '../dist/formats/gguf/gguf-metadata.js';
import { ggmlTypeByName } from '../dist/formats/gguf/ggml-types.js';
import { numberToF16Bits } from '../dist/dtype.js';
import { createXorshift } from './fill-random.mjs';
import { fileSink } from './file-sink.mjs';

/** The Q4_K_M recipe the tests use, at the bench's size. */
export function q4kmType(name) {
  if (name === 'output.weight' || name.endsWith('attn_v.weight') || name.endsWith('ffn_down.weight')) return 'Q6_K';
  if (name.endsWith('attn_k.weight')) return 'Q5_K';
  return 'Q4_K';
}

/** GGUF tensors of the bench's Llama shape: name, ne (fastest first), type. */
export function ggufTensors(o) {
  const kv = (o.hidden / o.heads) * o.kvHeads;
  const t = [['token_embd.weight', [o.hidden, o.vocab]]];
  for (let i = 0; i < o.layers; i++) {
    t.push(
      [`blk.${i}.attn_norm.weight`, [o.hidden]],
      [`blk.${i}.attn_q.weight`, [o.hidden, o.hidden]],
      [`blk.${i}.attn_k.weight`, [o.hidden, kv]],
      [`blk.${i}.attn_v.weight`, [o.hidden, kv]],
      [`blk.${i}.attn_output.weight`, [o.hidden, o.hidden]],
      [`blk.${i}.ffn_norm.weight`, [o.hidden]],
      [`blk.${i}.ffn_gate.weight`, [o.hidden, o.intermediate]],
      [`blk.${i}.ffn_up.weight`, [o.hidden, o.intermediate]],
      [`blk.${i}.ffn_down.weight`, [o.intermediate, o.hidden]],
    );
  }
  t.push(['output_norm.weight', [o.hidden]], ['output.weight', [o.hidden, o.vocab]]);
  return t.map(([name, ne]) => ({ name, ne, type: ggmlTypeByName(ne.length === 1 ? 'F32' : q4kmType(name)) }));
}

function metadata(o) {
  const u32 = (key, value) => ({ key, type: GGUFValueType.UINT32, value });
  return [
    { key: 'general.architecture', type: GGUFValueType.STRING, value: 'llama' },
    { key: 'general.name', type: GGUFValueType.STRING, value: 'loramerge bench' },
    { key: 'general.file_type', type: GGUFValueType.UINT32, value: 15 },
    u32('llama.block_count', o.layers), u32('llama.embedding_length', o.hidden), u32('llama.feed_forward_length', o.intermediate),
    u32('llama.attention.head_count', o.heads), u32('llama.attention.head_count_kv', o.kvHeads), u32('llama.context_length', 4096),
    { key: 'llama.attention.layer_norm_rms_epsilon', type: GGUFValueType.FLOAT32, value: 1e-5 },
    { key: 'tokenizer.ggml.model', type: GGUFValueType.STRING, value: 'llama' },
    { key: 'tokenizer.ggml.tokens', type: GGUFValueType.ARRAY, subType: GGUFValueType.STRING, value: Array.from({ length: o.vocab }, (_, i) => `t${i}`) },
    u32('general.quantization_version', 2),
  ];
}

/** Random valid blocks: scales like trained weights' (|w| ≲ 0.05), levels uniform. */
function fillBlocks(type, bytes, next) {
  const d = numberToF16Bits(type.name === 'Q6_K' ? 1.2e-5 : 1.3e-4);
  const dmin = numberToF16Bits(4e-4);
  for (let at = 0; at < bytes.length; at += type.blockBytes) {
    for (let i = 0; i < type.blockBytes; i += 4) {
      const x = next();
      bytes[at + i] = x & 0xff; bytes[at + i + 1] = (x >>> 8) & 0xff; bytes[at + i + 2] = (x >>> 16) & 0xff; bytes[at + i + 3] = x >>> 24;
    }
    if (type.name === 'Q6_K') {
      bytes[at + 208] = d & 0xff; bytes[at + 209] = d >>> 8;
    } else {
      bytes[at] = d & 0xff; bytes[at + 1] = d >>> 8; bytes[at + 2] = dmin & 0xff; bytes[at + 3] = dmin >>> 8;
    }
  }
}

/** Writes the GGUF base; returns its path and size. */
export async function writeGgufBase(path, o) {
  const tensors = ggufTensors(o);
  const writer = await createGgufWriter(await fileSink(path), metadata(o), tensors, 32);
  const next = createXorshift(o.seed ^ 0x9e37);
  for (const t of tensors) {
    const elements = t.ne.reduce((a, b) => a * b, 1);
    const rowBytes = (t.ne[0] / t.type.blockSize) * t.type.blockBytes;
    const rows = elements / t.ne[0];
    const perChunk = Math.max(1, Math.floor((16 << 20) / rowBytes));
    for (let r = 0; r < rows; r += perChunk) {
      const chunk = new Uint8Array(Math.min(perChunk, rows - r) * rowBytes);
      if (t.type.name === 'F32') new Float32Array(chunk.buffer).fill(1);
      else fillBlocks(t.type, chunk, next);
      await writer.writeChunk(t.name, chunk);
    }
  }
  await writer.finish();
  return { path, bytes: writer.byteLength };
}
