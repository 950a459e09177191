/**
 * Writes a LoRA adapter as a llama.cpp LoRA GGUF, as convert_lora_to_gguf.py writes one and
 * llama.cpp's llama-adapter.cpp loads it: metadata `general.architecture` (the inputs'),
 * `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha` (f32) and
 * `general.quantization_version` (2), and no `general.file_type` (the script's LoRA class writes
 * its own parameters only, where a model's write that key); for convert, the `general.*` keys the
 * script derives from the adapter's folder (gguf-lora-card.ts: general.name and the rest); per base tensor `<name>.lora_a`
 * with ne = [in, r] and `<name>.lora_b` with ne = [r, out] (GGML order, fastest first: the
 * row-major A (r, in) and B (out, r) as they are), except `token_embd.weight`, whose A llama.cpp takes as ne = [r, vocab] (A transposed). A stacked
 * expert tensor's pair (`ffn_up_exps`) is 3-D, as convert_lora_to_gguf stacks per-expert modules:
 * lora_a ne = [in, r, experts], lora_b ne = [r, out, experts].
 *
 * Factors of Q8_0 inputs (or convert --outtype q8_0) are written Q8_0, a tensor whose rows are not
 * whole 32-value blocks (most lora_b) F16, as convert_lora_to_gguf --outtype q8_0 writes them.
 *
 * llama.cpp scales every pair by one α: s = α / r with r = lora_b's ne[0], or 1 where α is 0.
 * Where every module has one α, that α is written and the factors as they are (each pair's rank
 * divides it); else (a resize to per-module ranks, a combine of adapters of different ranks) each module's own
 * α_m / r_m is folded into its B and α is written 0, so that every pair applies at its own scale.
 */
import type { FloatDType } from '../../dtype.js';
import { throwIfAborted } from '../../errors.js';
import type { OutputTarget } from '../../io/types.js';
import type { AdapterToWrite, WrittenModule } from '../adapter-writer.js';
import { encodeFactor } from '../written-factors.js';
import { blockCodec } from './codecs/registry.js';
import { ggmlTypeByName, type GgmlType } from './ggml-types.js';
import { ggufLoraGeneral, ggufLoraTotalParams } from './gguf-lora-card.js';
import { GGUFValueType, type GgufKeyValue } from './gguf-metadata.js';
import { createGgufWriter, type GgufWriterTensor } from './gguf-writer.js';

/** GGUF's default alignment (general.alignment unset), which convert_lora_to_gguf keeps. */
const ALIGNMENT = 32;

/** The float types convert_lora_to_gguf writes (--outtype f32, f16, bf16; q8_0 is `ggufType`). */
const FLOAT_TYPES: readonly FloatDType[] = ['F32', 'F16', 'BF16'];
/** gguf-py's GGML_QUANT_VERSION, the block layouts' version. */
const GGML_QUANT_VERSION = 2;

/**
 * The α the file states, and whether each module's α_m/r_m must be folded into its B (no one α
 * carries every scale). llama.cpp divides α by each pair's own rank, so modules of one α and
 * different ranks (a PEFT rank_pattern) share it; an α of 0 would mean scale 1, so it is folded.
 */
export function ggufLoraAlpha(modules: readonly WrittenModule[]): { alpha: number; fold: boolean } {
  const first = modules[0];
  const uniform = first !== undefined && first.alpha !== 0 && modules.every((m) => m.alpha === first.alpha);
  return uniform ? { alpha: first.alpha, fold: false } : { alpha: 0, fold: true };
}

/**
 * Writes `adapter` (format `gguf`, its `architecture` set) as one GGUF file to `output`; `signal`
 * is looked at before each tensor (a cancel stops the writing there, ABORTED).
 */
export async function writeGgufLora(output: OutputTarget, adapter: AdapterToWrite, signal?: AbortSignal): Promise<void> {
  if (adapter.architecture === undefined) throw new Error('a GGUF LoRA needs the architecture of its model');
  // convert_lora_to_gguf writes f32, f16, bf16 or q8_0; the ops choose among the first three.
  if (!FLOAT_TYPES.includes(adapter.dtype)) throw new Error(`a GGUF LoRA is not written in ${adapter.dtype}`);
  const float = ggmlTypeByName(adapter.dtype)!;
  const q8 = adapter.ggufType === 'Q8_0' ? ggmlTypeByName('Q8_0')! : undefined;
  const f16 = ggmlTypeByName('F16')!;
  // convert_hf_to_gguf quantizes each tensor to Q8_0 where its rows (ne[0]) are whole blocks, else
  // (gguf.QuantError) writes it F16: lora_b's rows are r values, most often fewer than 32.
  const typeFor = (ne: number[]) => (q8 ? (ne[0] % q8.blockSize === 0 ? q8 : f16) : float);
  const { alpha, fold } = ggufLoraAlpha(adapter.modules);
  const tensors: GgufWriterTensor[] = [];
  // Each tensor's values, made when written, and what to call it if they overflow its type.
  const data: { values: () => Float32Array; module: string; factor: string }[] = [];
  for (const m of adapter.modules) {
    const embedding = m.kind === 'embedding';
    // A stacked expert tensor's pair is 3-D: one (r, in) A and (out, r) B per expert, slowest.
    const experts = m.experts ?? 1;
    const [out, vocabOrIn] = [m.upShape[m.upShape.length - 2], m.down.length / m.rank / experts];
    const stack = m.experts === undefined ? [] : [experts];
    const aNe = embedding ? [m.rank, vocabOrIn] : [vocabOrIn, m.rank, ...stack];
    const bNe = [m.rank, out, ...stack];
    tensors.push({ name: `${m.name}.lora_a`, type: typeFor(aNe), ne: aNe });
    tensors.push({ name: `${m.name}.lora_b`, type: typeFor(bNe), ne: bNe });
    data.push({ values: () => (embedding ? transpose(m.down, m.rank, vocabOrIn) : m.down), module: m.name, factor: 'lora_a' });
    data.push({ values: () => (fold ? scaled(m.up, m.alpha / m.rank) : m.up), module: m.name, factor: fold ? `lora_b (α/r = ${m.alpha / m.rank} folded in)` : 'lora_b' });
  }
  // In convert_lora_to_gguf's order: the writer's architecture, set_type's, set_gguf_meta_model's
  // general.* (from the adapter's folder, convert only), set_gguf_parameters' alpha, then the quantization version.
  const pairs = [];
  for (let i = 0; i < tensors.length; i += 2) pairs.push({ aNe: tensors[i].ne, bNe: tensors[i + 1].ne });
  const metadata: GgufKeyValue[] = [
    { key: 'general.architecture', type: GGUFValueType.STRING, value: adapter.architecture },
    { key: 'general.type', type: GGUFValueType.STRING, value: 'adapter' },
    { key: 'adapter.type', type: GGUFValueType.STRING, value: 'lora' },
    ...(adapter.card ? ggufLoraGeneral(adapter.card, ggufLoraTotalParams(pairs)) : []),
    { key: 'adapter.lora.alpha', type: GGUFValueType.FLOAT32, value: alpha },
    // convert_hf_to_gguf's prepare_metadata writes it to every file, LoRAs included (GGML_QUANT_VERSION).
    { key: 'general.quantization_version', type: GGUFValueType.UINT32, value: GGML_QUANT_VERSION },
    // How the adapter was made: loramerge_command → loramerge.command, GGUF's dotted key style.
    ...Object.entries(adapter.metadata).map(([k, v]) => ({ key: k.replace(/^loramerge_/, 'loramerge.'), type: GGUFValueType.STRING, value: v })),
  ];
  const sink = await output.createFile('adapter.gguf');
  const writer = await createGgufWriter(sink, metadata, tensors, ALIGNMENT);
  for (const [i, t] of tensors.entries()) {
    throwIfAborted(signal);
    await writer.writeChunk(t.name, encoded(data[i], t.type));
  }
  await writer.finish();
}

/**
 * A tensor's values in `type`: a float type (refused where a value overflows it, naming the module
 * and factor), or Q8_0 by llama.cpp's reference quantizer (gguf-py's, the same bytes).
 */
function encoded(tensor: { values: () => Float32Array; module: string; factor: string }, type: GgmlType): Uint8Array {
  const values = tensor.values();
  const codec = type.name === 'Q8_0' ? blockCodec(type) : undefined;
  if (!codec) return encodeFactor(values, type.name as FloatDType, tensor.module, tensor.factor);
  const out = new Uint8Array((values.length / type.blockSize) * type.blockBytes);
  codec.encode(values, out);
  return out;
}

/** `values` (rows × cols, row-major) transposed. */
function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = values[r * cols + c];
  return t;
}

function scaled(values: Float32Array, s: number): Float32Array {
  return values.map((v) => v * s);
}
