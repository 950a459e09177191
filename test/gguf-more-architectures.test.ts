/**
 * PEFT adapters onto GGUF bases of architectures whose Hugging Face module names or q/k order differ
 * from llama's, end to end, against float64 truth written here:
 * - Phi-2 (`phi2`): `self_attn.dense` is attn_output, `mlp.fc1`/`fc2` are ffn_up/ffn_down, q and k
 *   as they are;
 * - MiniCPM (`minicpm`): MiniCPMModel.modify_tensors permutes q and k with LlamaModel.permute (GQA:
 *   k with the kv-head count), so GGUF row h·d + 2i + j holds HF row h·d + j·d/2 + i;
 * - EXAONE 3.5 (`exaone`): GPT-2-style paths (`transformer.h.0.attn.attention.q_proj`,
 *   `mlp.c_fc_0` the gate, `c_fc_1` the up projection), not permuted;
 * - LFM2 (`lfm2`): a short-convolution block's `conv.in_proj`/`out_proj` on `shortconv.*`, the MLP's
 *   `feed_forward.w1` (gate) and `w2` (down).
 * Each base is one block with the tensors, types and metadata keys the converter writes.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorValues, type MetaValue } from './helpers/gguf-builder.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });

const HIDDEN = 32, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 8, FFN = 48, VOCAB = 16, WEIGHT = 0.7;
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

/** A trained module: its HF path, the GGUF tensor it lands on, (out, in), and whether its rows are permuted by `heads`. */
interface Target { module: string; tensor: string; out: number; in: number; permuteHeads?: number }

interface Case {
  arch: string;
  hfClass: string;
  type: 'F16' | 'BF16';
  /** GGUF tensors as [name, ne (columns first)]. */
  tensors: [string, number[]][];
  targets: Target[];
  rank: number;
  alpha: number;
  targetModules: string[];
}

const Q = HEADS * HEAD_DIM, KV = KV_HEADS * HEAD_DIM;

/** One block as LlamaModel-like converters write it (gate, up, down; no head of its own). */
const LLAMA_LIKE: [string, number[]][] = [
  ['token_embd.weight', [HIDDEN, VOCAB]],
  ['blk.0.attn_norm.weight', [HIDDEN]],
  ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_k.weight', [HIDDEN, KV]], ['blk.0.attn_v.weight', [HIDDEN, KV]],
  ['blk.0.attn_output.weight', [Q, HIDDEN]],
  ['blk.0.ffn_norm.weight', [HIDDEN]],
  ['blk.0.ffn_gate.weight', [HIDDEN, FFN]], ['blk.0.ffn_up.weight', [HIDDEN, FFN]], ['blk.0.ffn_down.weight', [FFN, HIDDEN]],
  ['output_norm.weight', [HIDDEN]],
];

const CASES: Case[] = [
  {
    arch: 'phi2', hfClass: 'microsoft/phi-2', type: 'F16', rank: 4, alpha: 8,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'],
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_norm.bias', [HIDDEN]],
      ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_q.bias', [Q]],
      ['blk.0.attn_k.weight', [HIDDEN, Q]], ['blk.0.attn_k.bias', [Q]],
      ['blk.0.attn_v.weight', [HIDDEN, Q]], ['blk.0.attn_v.bias', [Q]],
      ['blk.0.attn_output.weight', [Q, HIDDEN]], ['blk.0.attn_output.bias', [HIDDEN]],
      ['blk.0.ffn_up.weight', [HIDDEN, FFN]], ['blk.0.ffn_up.bias', [FFN]],
      ['blk.0.ffn_down.weight', [FFN, HIDDEN]], ['blk.0.ffn_down.bias', [HIDDEN]],
      ['output_norm.weight', [HIDDEN]], ['output_norm.bias', [HIDDEN]],
      ['output.weight', [HIDDEN, VOCAB]], ['output.bias', [VOCAB]],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN },
      { module: 'model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: Q, in: HIDDEN },
      { module: 'model.layers.0.self_attn.dense', tensor: 'blk.0.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'model.layers.0.mlp.fc1', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN },
      { module: 'model.layers.0.mlp.fc2', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
  {
    arch: 'minicpm', hfClass: 'openbmb/MiniCPM-2B-sft-bf16', type: 'F16', rank: 1, alpha: 3,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    // Tied head: no output.weight.
    tensors: LLAMA_LIKE,
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN, permuteHeads: HEADS },
      { module: 'model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN, permuteHeads: KV_HEADS },
      { module: 'model.layers.0.self_attn.v_proj', tensor: 'blk.0.attn_v.weight', out: KV, in: HIDDEN },
      { module: 'model.layers.0.mlp.gate_proj', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
    ],
  },
  {
    // A short-convolution block (LFM2's conv layers have no attention).
    arch: 'lfm2', hfClass: 'LiquidAI/LFM2-1.2B', type: 'BF16', rank: 2, alpha: 4,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'in_proj', 'w1', 'w2', 'w3'],
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]],
      ['blk.0.shortconv.conv.weight', [3, HIDDEN]],
      ['blk.0.shortconv.in_proj.weight', [HIDDEN, 3 * HIDDEN]], ['blk.0.shortconv.out_proj.weight', [HIDDEN, HIDDEN]],
      ['blk.0.ffn_norm.weight', [HIDDEN]],
      ['blk.0.ffn_gate.weight', [HIDDEN, FFN]], ['blk.0.ffn_up.weight', [HIDDEN, FFN]], ['blk.0.ffn_down.weight', [FFN, HIDDEN]],
      ['token_embd_norm.weight', [HIDDEN]],
    ],
    targets: [
      { module: 'model.layers.0.conv.in_proj', tensor: 'blk.0.shortconv.in_proj.weight', out: 3 * HIDDEN, in: HIDDEN },
      { module: 'model.layers.0.conv.out_proj', tensor: 'blk.0.shortconv.out_proj.weight', out: HIDDEN, in: HIDDEN },
      { module: 'model.layers.0.feed_forward.w1', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
      { module: 'model.layers.0.feed_forward.w2', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
  {
    arch: 'exaone', hfClass: 'LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct', type: 'BF16', rank: 12, alpha: 16,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'c_fc_0', 'c_fc_1', 'c_proj'],
    tensors: [...LLAMA_LIKE, ['output.weight', [HIDDEN, VOCAB]]],
    targets: [
      { module: 'transformer.h.0.attn.attention.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN },
      { module: 'transformer.h.0.attn.attention.out_proj', tensor: 'blk.0.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'transformer.h.0.mlp.c_fc_0', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
      { module: 'transformer.h.0.mlp.c_fc_1', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN },
      { module: 'transformer.h.0.mlp.c_proj', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
];

function baseGguf(c: Case) {
  const specs = c.tensors.map(([name, ne]) => ({ name, ne, type: ne.length === 1 ? 'F32' : c.type }));
  const { tensors, values } = randomTensors(specs, gaussian(3));
  const a = c.arch;
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: a }],
    ['general.name', { type: 'string', value: `${a} tiny` }],
    [`${a}.block_count`, u32(1)], [`${a}.context_length`, u32(2048)], [`${a}.embedding_length`, u32(HIDDEN)],
    [`${a}.feed_forward_length`, u32(FFN)], [`${a}.attention.head_count`, u32(HEADS)],
    [`${a}.attention.head_count_kv`, u32(a === 'phi2' ? HEADS : KV_HEADS)],
    ['general.file_type', u32(c.type === 'F16' ? 1 : 32)],
  ];
  return { bytes: buildGguf({ metadata, tensors }), values };
}

function peftAdapter(c: Case) {
  const g = gaussian(29);
  const factors = c.targets.map((t) => ({
    ...t,
    a: Float64Array.from({ length: c.rank * t.in }, () => Math.fround(0.1 * g())),
    b: Float64Array.from({ length: t.out * c.rank }, () => Math.fround(0.1 * g())),
  }));
  const files = {
    'adapter_config.json': JSON.stringify({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: c.hfClass, r: c.rank, lora_alpha: c.alpha,
      target_modules: c.targetModules, peft_version: '0.17.1',
    }),
    'adapter_model.safetensors': buildSafetensors(factors.flatMap((f) => [
      { name: `base_model.model.${f.module}.lora_A.weight`, dtype: 'F32', shape: [c.rank, f.in], data: f.a },
      { name: `base_model.model.${f.module}.lora_B.weight`, dtype: 'F32', shape: [f.out, c.rank], data: f.b },
    ])),
  };
  return { files, factors };
}

/** The HF row a GGUF row holds: LlamaModel.permute with `heads` heads, or the same row. */
function hfRow(row: number, rows: number, heads?: number): number {
  if (!heads) return row;
  const d = rows / heads;
  const h = Math.floor(row / d), within = row % d;
  const i = Math.floor(within / 2), j = within % 2;
  return h * d + j * (d / 2) + i;
}

describe.each(CASES)('PEFT LoRA on a $arch GGUF', (c) => {
  const base = baseGguf(c);
  const adapter = peftAdapter(c);

  it.for(['cpu', 'webgpu'])('lands each module on its tensor (rows permuted where the converter permutes them), as float64 truth says, on %s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes } = await mergeFileInMemory({
      backend, base: { [`${c.arch}-tiny-${c.type}.gguf`]: base.bytes }, adapters: [{ files: adapter.files, name: `${c.arch}-lora`, weight: WEIGHT }],
      outDtype: 'f32', dtypeMergedOnly: true, slabBytes: 1024,
    });
    const out = readGguf(bytes);
    const scale = WEIGHT * c.alpha / c.rank;
    for (const f of adapter.factors) {
      const w = base.values.get(f.tensor)!;
      const merged = tensorValues('F32', out.tensors.find((t) => t.name === f.tensor)!.data);
      expect(merged.length, f.tensor).toBe(f.out * f.in);
      let worst = 0;
      for (let row = 0; row < f.out; row++) {
        const src = hfRow(row, f.out, f.permuteHeads);
        for (let col = 0; col < f.in; col++) {
          let sum = 0;
          for (let k = 0; k < c.rank; k++) sum += f.b[src * c.rank + k] * f.a[k * f.in + col];
          const want = w[row * f.in + col] + scale * sum;
          worst = Math.max(worst, Math.abs(merged[row * f.in + col] - want) / (Math.abs(want) + 1e-3));
        }
      }
      expect(worst, f.tensor).toBeLessThan(1e-5);
    }
    const touched = new Set(adapter.factors.map((f) => f.tensor));
    for (const t of readGguf(base.bytes).tensors.filter((x) => !touched.has(x.name))) {
      expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
    }
  });
});
