/**
 * Small GGUF models and adapters as llama.cpp users hold them, built in the test with real tensor
 * names, types and metadata: a Q4_K_M-style llama (Q4_K, Q5_K and Q6_K matrices, F32 norms), a
 * split F16 llama, a llama.cpp LoRA adapter, and a PEFT adapter for the same model; plus the
 * float64 truth of merging them, with llama.cpp's q/k row permutation written out here from
 * convert_hf_to_gguf.py's description (reshape (heads, 2, d/heads/2), swap axes 1 and 2).
 */
import { buildSafetensors, seededRandom } from './fixtures.js';
import { buildGguf, randomTensors, tensorData, tensorValues, type FixtureTensor, type MetaValue } from './gguf-builder.js';

export const LLAMA = { hidden: 256, heads: 4, kvHeads: 2, ffn: 256, vocab: 64, layers: 1 };

function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

export interface GgufModelFixture {
  /** Files by name (a split model has several). */
  files: Record<string, Uint8Array>;
  /** Tensor name → type, torch shape (rows, cols) and exact values of what is stored. */
  tensors: Map<string, { type: string; shape: number[]; values: Float64Array; data: Uint8Array }>;
  metadata: [string, MetaValue][];
}

/** Every tensor of a small llama: name, ne (GGML order) and its type under the given recipe. */
function llamaTensors(typeOf: (name: string) => string): { name: string; ne: number[]; type: string }[] {
  const { hidden: h, kvHeads, heads, ffn, vocab, layers } = LLAMA;
  const kv = (h / heads) * kvHeads;
  const out: { name: string; ne: number[]; type: string }[] = [{ name: 'token_embd.weight', ne: [h, vocab], type: '' }];
  for (let i = 0; i < layers; i++) {
    out.push(
      { name: `blk.${i}.attn_norm.weight`, ne: [h], type: '' },
      { name: `blk.${i}.attn_q.weight`, ne: [h, h], type: '' },
      { name: `blk.${i}.attn_k.weight`, ne: [h, kv], type: '' },
      { name: `blk.${i}.attn_v.weight`, ne: [h, kv], type: '' },
      { name: `blk.${i}.attn_output.weight`, ne: [h, h], type: '' },
      { name: `blk.${i}.ffn_norm.weight`, ne: [h], type: '' },
      { name: `blk.${i}.ffn_gate.weight`, ne: [h, ffn], type: '' },
      { name: `blk.${i}.ffn_up.weight`, ne: [h, ffn], type: '' },
      { name: `blk.${i}.ffn_down.weight`, ne: [ffn, h], type: '' },
    );
  }
  out.push({ name: 'output_norm.weight', ne: [h], type: '' }, { name: 'output.weight', ne: [h, vocab], type: '' });
  return out.map((t) => ({ ...t, type: t.ne.length === 1 ? 'F32' : typeOf(t.name) }));
}

/** What llama.cpp's Q4_K_M recipe gives a small llama: Q6_K for output, attn_v and ffn_down, Q5_K here for attn_k. */
export function q4kmType(name: string): string {
  if (name === 'output.weight' || name.endsWith('attn_v.weight') || name.endsWith('ffn_down.weight')) return 'Q6_K';
  if (name.endsWith('attn_k.weight')) return 'Q5_K';
  return 'Q4_K';
}

function llamaMetadata(fileType: number): [string, MetaValue][] {
  const { hidden, heads, kvHeads, ffn, vocab, layers } = LLAMA;
  return [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: 'Tiny Llama Test' }],
    ['llama.block_count', { type: 'u32', value: layers }],
    ['llama.context_length', { type: 'u32', value: 2048 }],
    ['llama.embedding_length', { type: 'u32', value: hidden }],
    ['llama.feed_forward_length', { type: 'u32', value: ffn }],
    ['llama.attention.head_count', { type: 'u32', value: heads }],
    ['llama.attention.head_count_kv', { type: 'u32', value: kvHeads }],
    ['llama.rope.freq_base', { type: 'f32', value: 500000 }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['general.file_type', { type: 'u32', value: fileType }],
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: Array.from({ length: vocab }, (_, i) => `tok${i}`) }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: Array.from({ length: vocab }, () => 1) }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 1 }],
    ['general.quantization_version', { type: 'u32', value: 2 }],
  ];
}

function makeTensors(specs: { name: string; ne: number[]; type: string }[], seed: number): GgufModelFixture['tensors'] {
  const g = gaussian(seededRandom(seed));
  const tensors: GgufModelFixture['tensors'] = new Map();
  for (const s of specs) {
    const n = s.ne.reduce((a, b) => a * b, 1);
    const raw = Float64Array.from({ length: n }, () => (s.ne.length === 1 ? 1 + 0.1 * g() : 0.02 * g()));
    const data = tensorData(s.type, raw);
    tensors.set(s.name, { type: s.type, shape: [...s.ne].reverse(), values: tensorValues(s.type, data), data });
  }
  return tensors;
}

function asFixtures(names: string[], tensors: GgufModelFixture['tensors'], ne: Map<string, number[]>): FixtureTensor[] {
  return names.map((name) => ({ name, type: tensors.get(name)!.type, ne: ne.get(name)!, data: tensors.get(name)!.data }));
}

/** A small llama quantized as Q4_K_M (general.file_type 15) in one file. */
export function q4kmLlama(seed = 11): GgufModelFixture {
  const specs = llamaTensors(q4kmType);
  const tensors = makeTensors(specs, seed);
  const metadata = llamaMetadata(15);
  const ne = new Map(specs.map((s) => [s.name, s.ne]));
  const bytes = buildGguf({ metadata, tensors: asFixtures(specs.map((s) => s.name), tensors, ne) });
  return { files: { 'tiny-llama-Q4_K_M.gguf': bytes }, tensors, metadata };
}

/** The same llama in F16 (norms F32), split in two parts as gguf-split writes them. */
export function splitF16Llama(seed = 12): GgufModelFixture {
  const specs = llamaTensors(() => 'F16');
  const tensors = makeTensors(specs, seed);
  const metadata = llamaMetadata(1);
  const ne = new Map(specs.map((s) => [s.name, s.ne]));
  const names = specs.map((s) => s.name);
  const cut = Math.ceil(names.length / 2);
  const parts = [names.slice(0, cut), names.slice(cut)];
  const split = (no: number): [string, MetaValue][] => [
    ['split.no', { type: 'u16', value: no }],
    ['split.count', { type: 'u16', value: 2 }],
    ['split.tensors.count', { type: 'i32', value: names.length }],
  ];
  const files: Record<string, Uint8Array> = {
    'tiny-llama-F16-00001-of-00002.gguf': buildGguf({ metadata: [...metadata, ...split(0)], tensors: asFixtures(parts[0], tensors, ne) }),
    // gguf-split keeps the model's metadata in the first part only.
    'tiny-llama-F16-00002-of-00002.gguf': buildGguf({ metadata: split(1), tensors: asFixtures(parts[1], tensors, ne) }),
  };
  return { files, tensors, metadata };
}

// --- adapters -----------------------------------------------------------------------------------

/** A PEFT module's factors as trained: A (r, in), B (out, r), HF row order. */
export interface PeftFactors {
  module: string;
  gguf: string;
  rank: number;
  alpha: number;
  a: Float64Array;
  b: Float64Array;
  out: number;
  in: number;
}

const PEFT_TARGETS: [string, string][] = [
  ['self_attn.q_proj', 'attn_q'], ['self_attn.k_proj', 'attn_k'], ['self_attn.v_proj', 'attn_v'], ['self_attn.o_proj', 'attn_output'],
  ['mlp.gate_proj', 'ffn_gate'], ['mlp.up_proj', 'ffn_up'], ['mlp.down_proj', 'ffn_down'],
];

/**
 * A PEFT adapter on every linear layer of the llama: r = 8 with down_proj at r = 4
 * (rank_pattern), α = 16 with v_proj at α = 32 (alpha_pattern), rsLoRA, bf16 factors.
 */
export function peftLlamaAdapter(seed = 21): { files: Record<string, Uint8Array | string>; factors: PeftFactors[]; scale: (f: PeftFactors) => number } {
  const g = gaussian(seededRandom(seed));
  const { hidden: h, heads, kvHeads, ffn, layers } = LLAMA;
  const kv = (h / heads) * kvHeads;
  const dims: Record<string, [number, number]> = {
    attn_q: [h, h], attn_k: [kv, h], attn_v: [kv, h], attn_output: [h, h], ffn_gate: [ffn, h], ffn_up: [ffn, h], ffn_down: [h, ffn],
  };
  const factors: PeftFactors[] = [];
  const tensors = [];
  for (let i = 0; i < layers; i++) {
    for (const [hf, gguf] of PEFT_TARGETS) {
      const [out, inn] = dims[gguf];
      const rank = gguf === 'ffn_down' ? 4 : 8;
      const alpha = gguf === 'attn_v' ? 32 : 16;
      const module = `model.layers.${i}.${hf}`;
      // Values on the bf16 grid, so the truth uses exactly what the file holds.
      const bf16 = (x: number) => { const f = new Float32Array([x]); const u = new Uint32Array(f.buffer); u[0] &= 0xffff0000; return f[0]; };
      const a = Float64Array.from({ length: rank * inn }, () => bf16(0.05 * g()));
      const b = Float64Array.from({ length: out * rank }, () => bf16(0.05 * g()));
      factors.push({ module, gguf: `blk.${i}.${gguf}.weight`, rank, alpha, a, b, out, in: inn });
      tensors.push({ name: `base_model.model.${module}.lora_A.weight`, dtype: 'BF16' as const, shape: [rank, inn], data: a });
      tensors.push({ name: `base_model.model.${module}.lora_B.weight`, dtype: 'BF16' as const, shape: [out, rank], data: b });
    }
  }
  const config = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'tiny-llama', r: 8, lora_alpha: 16, use_rslora: true,
    rank_pattern: { down_proj: 4 }, alpha_pattern: { v_proj: 32 }, target_modules: PEFT_TARGETS.map(([hf]) => hf.split('.')[1]),
  };
  return {
    files: { 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) },
    factors,
    scale: (f) => f.alpha / Math.sqrt(f.rank),
  };
}

/**
 * Where convert_hf_to_gguf puts HF row `src` of q (heads) or k (kv heads): the rows are viewed as
 * (heads, 2, d/2) and axes 1 and 2 swapped, so (h, j, i) moves to (h, i, j).
 */
export function ggufRowOf(src: number, rows: number, heads: number): number {
  const d = rows / heads;
  const h = Math.floor(src / d);
  const within = src % d;
  const j = Math.floor(within / (d / 2));
  const i = within % (d / 2);
  return h * d + i * 2 + j;
}

/** W + scale·B·A in float64, in GGUF row order (q and k rows permuted for llama). */
export function truthWithPeft(w: Float64Array, f: PeftFactors, scale: number): Float64Array {
  const out = w.slice();
  const permuteHeads = f.gguf.includes('attn_q') ? LLAMA.heads : f.gguf.includes('attn_k') ? LLAMA.kvHeads : 0;
  for (let o = 0; o < f.out; o++) {
    const row = permuteHeads ? ggufRowOf(o, f.out, permuteHeads) : o;
    for (let c = 0; c < f.in; c++) {
      let sum = 0;
      for (let k = 0; k < f.rank; k++) sum += f.b[o * f.rank + k] * f.a[k * f.in + c];
      out[row * f.in + c] += scale * sum;
    }
  }
  return out;
}

/** A llama.cpp LoRA adapter (convert_lora_to_gguf layout) for `targets`, factors of the given types. */
export function ggufLoraAdapter(
  targets: { tensor: string; rank: number; in: number; out: number; aType: string; bType: string }[],
  alpha: number, seed = 31, extra: FixtureTensor[] = [], extraMetadata: [string, MetaValue][] = [],
): { bytes: Uint8Array; factors: Map<string, { a: Float64Array; b: Float64Array; rank: number }> } {
  const g = gaussian(seededRandom(seed));
  const tensors: FixtureTensor[] = [];
  const factors = new Map<string, { a: Float64Array; b: Float64Array; rank: number }>();
  for (const t of targets) {
    const embd = t.tensor === 'token_embd.weight';
    // A as the file stores it: ne [in, r] (or [r, vocab] for token_embd), values on the type's grid.
    const aNe = embd ? [t.rank, t.in] : [t.in, t.rank];
    const aData = tensorData(t.aType, Float64Array.from({ length: t.rank * t.in }, () => 0.05 * g()));
    const bData = tensorData(t.bType, Float64Array.from({ length: t.rank * t.out }, () => 0.05 * g()));
    const stored = tensorValues(t.aType, aData);
    // A (r, in) as the merge uses it.
    const a = embd ? Float64Array.from({ length: t.rank * t.in }, (_, x) => stored[(x % t.in) * t.rank + Math.floor(x / t.in)]) : stored;
    factors.set(t.tensor, { a, b: tensorValues(t.bType, bData), rank: t.rank });
    tensors.push({ name: `${t.tensor}.lora_a`, type: t.aType, ne: aNe, data: aData });
    tensors.push({ name: `${t.tensor}.lora_b`, type: t.bType, ne: [t.rank, t.out], data: bData });
  }
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.type', { type: 'string', value: 'adapter' }],
    ['adapter.type', { type: 'string', value: 'lora' }],
    ['adapter.lora.alpha', { type: 'f32', value: alpha }],
    ...extraMetadata,
  ];
  return { bytes: buildGguf({ metadata, tensors: [...tensors, ...extra] }), factors };
}

/** A MoE LoRA's factors per expert e: A_e (r, in) and B_e (out, r). */
export interface GgufExpertFactors { a: Float64Array[]; b: Float64Array[]; rank: number; in: number; out: number }

/**
 * A llama.cpp LoRA for a MoE model as convert_lora_to_gguf writes it from per-expert PEFT modules:
 * per stacked tensor A ne [in, r, experts] and B ne [r, out, experts], of the given types.
 */
export function ggufMoeLoraAdapter(
  targets: { tensor: string; in: number; out: number; rank: number; aType: string; bType: string }[], alpha: number, experts: number, seed = 9,
): { bytes: Uint8Array; factors: Map<string, GgufExpertFactors> } {
  const g = gaussian(seededRandom(seed));
  const tensors: FixtureTensor[] = [];
  const factors = new Map<string, GgufExpertFactors>();
  for (const t of targets) {
    const aData = tensorData(t.aType, Float64Array.from({ length: experts * t.rank * t.in }, () => 0.05 * g()));
    const bData = tensorData(t.bType, Float64Array.from({ length: experts * t.out * t.rank }, () => 0.05 * g()));
    const a = tensorValues(t.aType, aData);
    const b = tensorValues(t.bType, bData);
    factors.set(t.tensor, {
      a: Array.from({ length: experts }, (_, e) => a.slice(e * t.rank * t.in, (e + 1) * t.rank * t.in)),
      b: Array.from({ length: experts }, (_, e) => b.slice(e * t.out * t.rank, (e + 1) * t.out * t.rank)),
      rank: t.rank, in: t.in, out: t.out,
    });
    tensors.push({ name: `${t.tensor}.lora_a`, type: t.aType, ne: [t.in, t.rank, experts], data: aData });
    tensors.push({ name: `${t.tensor}.lora_b`, type: t.bType, ne: [t.rank, t.out, experts], data: bData });
  }
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.type', { type: 'string', value: 'adapter' }], ['adapter.type', { type: 'string', value: 'lora' }],
    ['adapter.lora.alpha', { type: 'f32', value: alpha }],
  ];
  return { bytes: buildGguf({ metadata, tensors }), factors };
}

/** W + scale·B·A in float64 for a (rows, cols) tensor; for token_embd W is (vocab, dim) and ΔW = (B·A)ᵀ. */
export function truthWithLora(w: Float64Array, rows: number, cols: number, f: { a: Float64Array; b: Float64Array; rank: number }, scale: number, transposed: boolean): Float64Array {
  const out = w.slice();
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const [o, i, inF] = transposed ? [c, r, rows] : [r, c, cols];
      let sum = 0;
      for (let k = 0; k < f.rank; k++) sum += f.b[o * f.rank + k] * f.a[k * inF + i];
      out[r * cols + c] += scale * sum;
    }
  }
  return out;
}

// --- an NVIDIA ModelOpt NVFP4 checkpoint as convert_hf_to_gguf writes it --------------------------

/**
 * convert_hf_to_gguf.py's `_nvfp4_pack`: a ModelOpt NVFP4 weight (rows of nibble-packed E2M1
 * codes, value 2k in the low nibble of byte k and 2k + 1 in the high) and its E4M3 scales, one per
 * 16 values, into ggml's NVFP4 blocks of 64 values: the four scales with their sign bit cleared,
 * then per 16 values 8 bytes, value j in the low nibble of byte j and value j + 8 in the high.
 */
export function packModelOptNvfp4(codes: Uint8Array, scales: Uint8Array, rows: number, cols: number): Uint8Array {
  const subBlocks = cols / 16;
  const out = new Uint8Array(rows * (cols / 64) * 36);
  let at = 0;
  for (let r = 0; r < rows; r++) {
    const code = (b: number, j: number) => {
      const byte = codes[r * (cols / 2) + b * 8 + (j >> 1)];
      return j & 1 ? byte >> 4 : byte & 0x0f;
    };
    for (let s = 0; s < subBlocks / 4; s++, at += 36) {
      for (let k = 0; k < 4; k++) {
        const b = s * 4 + k;
        out[at + k] = scales[r * subBlocks + b] & 0x7f;
        for (let j = 0; j < 8; j++) out[at + 4 + k * 8 + j] = code(b, j) | (code(b, j + 8) << 4);
      }
    }
  }
  return out;
}

export interface Nvfp4LlamaFixture extends GgufModelFixture {
  /** Weight → its `.scale` values (ModelOpt's weight_scale_2; one per expert of a stacked tensor). */
  scales: Map<string, number[]>;
}

/**
 * A small llama quantized by ModelOpt to NVFP4 and converted as convert_hf_to_gguf writes it
 * (`_generate_nvfp4_tensors`): every attention and MLP weight NVFP4 of random codes and E4M3 block
 * scales, each followed by its `.scale` and `.input_scale` (F32 (1), or one per expert beside
 * stacked experts), written before the other tensors; embeddings BF16 and norms F32. `experts`:
 * a Mixtral-like block whose experts are stacked (`ffn_*_exps`, ne [in, out, experts]) beside a
 * router; `scaledHead`: the head quantized too (`output.scale`), else BF16.
 */
export function modelOptNvfp4Llama(options: { experts?: number; scaledHead?: boolean; seed?: number; arch?: string } = {}): Nvfp4LlamaFixture {
  const { experts = 0, scaledHead = false, seed = 41, arch = 'llama' } = options;
  const rand = seededRandom(seed);
  const { hidden: h, heads, kvHeads, ffn, vocab } = LLAMA;
  const kv = (h / heads) * kvHeads;
  const quantized: { name: string; ne: number[] }[] = [
    { name: 'blk.0.attn_q.weight', ne: [h, h] }, { name: 'blk.0.attn_k.weight', ne: [h, kv] },
    { name: 'blk.0.attn_v.weight', ne: [h, kv] }, { name: 'blk.0.attn_output.weight', ne: [h, h] },
    ...(experts > 0
      ? [{ name: 'blk.0.ffn_gate_exps.weight', ne: [h, ffn, experts] }, { name: 'blk.0.ffn_down_exps.weight', ne: [ffn, h, experts] }, { name: 'blk.0.ffn_up_exps.weight', ne: [h, ffn, experts] }]
      : [{ name: 'blk.0.ffn_gate.weight', ne: [h, ffn] }, { name: 'blk.0.ffn_down.weight', ne: [ffn, h] }, { name: 'blk.0.ffn_up.weight', ne: [h, ffn] }]),
    ...(scaledHead ? [{ name: 'output.weight', ne: [h, vocab] }] : []),
  ];
  const tensors: GgufModelFixture['tensors'] = new Map();
  const scales = new Map<string, number[]>();
  const fixtures: FixtureTensor[] = [];
  const f32 = (name: string, values: number[]) => {
    const data = tensorData('F32', values);
    tensors.set(name, { type: 'F32', shape: [values.length], values: tensorValues('F32', data), data });
    fixtures.push({ name, type: 'F32', ne: [values.length], data });
  };
  for (const { name, ne } of quantized) {
    const [cols, rows, count = 1] = ne;
    const codes = Uint8Array.from({ length: count * rows * cols / 2 }, () => Math.floor(rand() * 256));
    // E4M3 block scales from 0.25 (0x28) to 448 (0x7e), as ModelOpt's amax / 6 / weight_scale_2 gives them.
    const blockScales = Uint8Array.from({ length: count * rows * cols / 16 }, () => 0x28 + Math.floor(rand() * (0x7e - 0x28 + 1)));
    const data = packModelOptNvfp4(codes, blockScales, count * rows, cols);
    tensors.set(name, { type: 'NVFP4', shape: count > 1 ? [count, rows, cols] : [rows, cols], values: tensorValues('NVFP4', data), data });
    fixtures.push({ name, type: 'NVFP4', ne, data });
    const scale = Array.from({ length: count }, () => Math.fround((0.5 + rand()) * 2 ** -9));
    scales.set(name, scale);
    f32(name.replace('.weight', '.scale'), scale);
    f32(name.replace('.weight', '.input_scale'), Array.from({ length: count }, () => Math.fround((0.5 + rand()) * 2 ** -6)));
  }
  const g = gaussian(rand);
  const rest: { name: string; ne: number[]; type: string }[] = [
    { name: 'token_embd.weight', ne: [h, vocab], type: 'BF16' },
    { name: 'blk.0.attn_norm.weight', ne: [h], type: 'F32' },
    { name: 'blk.0.ffn_norm.weight', ne: [h], type: 'F32' },
    ...(experts > 0 ? [{ name: 'blk.0.ffn_gate_inp.weight', ne: [h, experts], type: 'F32' }] : []),
    { name: 'output_norm.weight', ne: [h], type: 'F32' },
    ...(scaledHead ? [] : [{ name: 'output.weight', ne: [h, vocab], type: 'BF16' }]),
  ];
  for (const { name, ne, type } of rest) {
    const data = tensorData(type, Float64Array.from({ length: ne.reduce((a, b) => a * b, 1) }, () => (ne.length === 1 ? 1 + 0.1 * g() : 0.02 * g())));
    tensors.set(name, { type, shape: [...ne].reverse(), values: tensorValues(type, data), data });
    fixtures.push({ name, type, ne, data });
  }
  const metadata: [string, MetaValue][] = [
    ...llamaMetadata(39), // LLAMA_FTYPE_MOSTLY_NVFP4, as the converter labels an NVFP4 checkpoint
    ...(experts > 0 ? [['llama.expert_count', { type: 'u32', value: experts }], ['llama.expert_used_count', { type: 'u32', value: 2 }]] as [string, MetaValue][] : []),
  ].map(([key, value]): [string, MetaValue] => key === 'general.architecture' ? [key, { type: 'string', value: arch }] : [key.replace(/^llama\./, `${arch}.`), value]);
  return { files: { 'tiny-llama-NVFP4.gguf': buildGguf({ metadata, tensors: fixtures }) }, tensors, metadata, scales };
}

/** Sizes of a small llama; kv width is hidden / heads · kvHeads. */
export interface LlamaSizes { layers: number; hidden: number; heads: number; kvHeads: number; ffn: number; vocab: number }

/**
 * A BF16 llama GGUF as convert_hf_to_gguf writes one (`general.file_type` 32, norms F32, llama.*
 * keys), values drawn from `g`: what llama-quantize's type mixes start from. Its tensors' specs (ne
 * in GGML order), their exact values by name, and the file's bytes.
 */
export function bf16LlamaGguf(s: LlamaSizes, g: () => number): {
  specs: { name: string; ne: number[]; type: string }[];
  values: Map<string, Float64Array>;
  bytes: Uint8Array;
} {
  const kv = (s.hidden / s.heads) * s.kvHeads;
  const specs: { name: string; ne: number[]; type: string }[] = [{ name: 'token_embd.weight', ne: [s.hidden, s.vocab], type: 'BF16' }];
  for (let i = 0; i < s.layers; i++) {
    specs.push(
      { name: `blk.${i}.attn_norm.weight`, ne: [s.hidden], type: 'F32' },
      { name: `blk.${i}.attn_q.weight`, ne: [s.hidden, s.hidden], type: 'BF16' },
      { name: `blk.${i}.attn_k.weight`, ne: [s.hidden, kv], type: 'BF16' },
      { name: `blk.${i}.attn_v.weight`, ne: [s.hidden, kv], type: 'BF16' },
      { name: `blk.${i}.attn_output.weight`, ne: [s.hidden, s.hidden], type: 'BF16' },
      { name: `blk.${i}.ffn_norm.weight`, ne: [s.hidden], type: 'F32' },
      { name: `blk.${i}.ffn_gate.weight`, ne: [s.hidden, s.ffn], type: 'BF16' },
      { name: `blk.${i}.ffn_up.weight`, ne: [s.hidden, s.ffn], type: 'BF16' },
      { name: `blk.${i}.ffn_down.weight`, ne: [s.ffn, s.hidden], type: 'BF16' },
    );
  }
  specs.push({ name: 'output_norm.weight', ne: [s.hidden], type: 'F32' }, { name: 'output.weight', ne: [s.hidden, s.vocab], type: 'BF16' });
  const base = randomTensors(specs, g);
  const u32 = (value: number): MetaValue => ({ type: 'u32', value });
  const bytes = buildGguf({
    metadata: [
      ['general.architecture', { type: 'string', value: 'llama' }], ['general.name', { type: 'string', value: 'Tiny Llama BF16' }],
      ['llama.block_count', u32(s.layers)], ['llama.context_length', u32(2048)], ['llama.embedding_length', u32(s.hidden)],
      ['llama.feed_forward_length', u32(s.ffn)], ['llama.attention.head_count', u32(s.heads)], ['llama.attention.head_count_kv', u32(s.kvHeads)],
      ['llama.rope.freq_base', { type: 'f32', value: 500000 }], ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
      ['general.file_type', u32(32)], ['general.quantization_version', u32(2)],
    ],
    tensors: base.tensors,
  });
  return { specs, values: base.values, bytes };
}

/**
 * Two llama.cpp LoRAs for the tiny llama, as convert_lora_to_gguf writes them with --outtype f16:
 * the first at α 8 on attn_q (r 4) and token_embd (r 4), the second at α 4 on attn_q and ffn_down (r 2).
 */
export function twoLlamaCppLoras(): [ReturnType<typeof ggufLoraAdapter>, ReturnType<typeof ggufLoraAdapter>] {
  const { hidden: h, vocab, ffn } = LLAMA;
  return [
    ggufLoraAdapter([
      { tensor: 'blk.0.attn_q.weight', rank: 4, in: h, out: h, aType: 'F16', bType: 'F16' },
      { tensor: 'token_embd.weight', rank: 4, in: vocab, out: h, aType: 'F16', bType: 'F16' },
    ], 8, 41),
    ggufLoraAdapter([
      { tensor: 'blk.0.attn_q.weight', rank: 2, in: h, out: h, aType: 'F16', bType: 'F16' },
      { tensor: 'blk.0.ffn_down.weight', rank: 2, in: ffn, out: h, aType: 'F16', bType: 'F16' },
    ], 4, 42),
  ];
}
