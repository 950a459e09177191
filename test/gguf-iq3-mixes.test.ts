/**
 * `--dtype iq3_s_mix`, `iq3_m`, `q2_k_mix` and `q6_k_mix`: llama-quantize's IQ3_S, IQ3_M, Q2_K and
 * Q6_K file types (llama-quant.cpp, llama_tensor_get_type_impl, no importance matrix). The type
 * each tensor of real models gets is written out below from the C rules, model by model (Llama 3
 * 8B with 4 query heads per key-value head, Llama 2 7B without grouping, Llama 3 70B, Mixtral 8x7B
 * with 8 experts, Qwen3-30B-A3B with 128, Llama 3.2 1B and Qwen2.5 0.5B with a tied head), then end
 * to end on a small llama GGUF: types and general.file_type as llama-quantize writes them. IQ3_XXS,
 * IQ3_XS and Q2_K_S, which llama-quantize writes only with an importance matrix, are refused
 * (test/cli-gguf-output.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { typeMix } from '../src/formats/gguf/type-mixes.js';
import { tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectTable, modelTensors, tinyLlamaMixCase, written, type Dims } from './helpers/mix-tables.js';

const backends = mergeBackends({ cpu: 'default' });

// use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2.
const MORE_BITS_32 = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];

const LLAMA3_8B: Dims = { layers: 32, hidden: 4096, q: 4096, kv: 1024, ffn: 14336, vocab: 128256 };
const LLAMA3_8B_META = { block_count: 32, 'attention.head_count': 32, 'attention.head_count_kv': 8 };

describe('llama-quantize\'s IQ3_S, IQ3_M, Q2_K and Q6_K mixes, tensor by tensor', () => {
  it('the mixes\' general.file_type and llama-quantize names (llama.h: Q2_K 10, Q6_K 18, IQ3_S 26, IQ3_M 27)', () => {
    expect(['q2_k_mix', 'q6_k_mix', 'iq3_s_mix', 'iq3_m'].map((n) => [typeMix(n)!.fileTypeName, typeMix(n)!.fileType]))
      .toEqual([['Q2_K', 10], ['Q6_K', 18], ['IQ3_S', 26], ['IQ3_M', 27]]);
    // The type names keep meaning one type throughout.
    for (const n of ['q2_k', 'q6_k', 'iq3_s', 'iq3_xxs', 'iq3_xs', 'q2_k_s']) expect(typeMix(n), n).toBeUndefined();
  });

  it('Llama 3 8B (GQA 4): attn_v Q4_K in all but Q6_K; IQ3_M attn_output Q4_K and ffn_down of layers 0-3 Q4_K; Q2_K attn_output and ffn_down Q3_K', () => {
    const t = modelTensors(LLAMA3_8B);
    expectTable(written('iq3_s_mix', 'llama', LLAMA3_8B_META, t), {
      token_embd: 'IQ3_S', output: 'Q6_K', attn_q: 'IQ3_S', attn_k: 'IQ3_S', attn_v: 'Q4_K', attn_output: 'IQ3_S', ffn_gate: 'IQ3_S', ffn_up: 'IQ3_S', ffn_down: 'IQ3_S',
    });
    expectTable(written('iq3_m', 'llama', LLAMA3_8B_META, t), {
      token_embd: 'IQ3_S', output: 'Q6_K', attn_q: 'IQ3_S', attn_k: 'IQ3_S', attn_v: 'Q4_K', attn_output: 'Q4_K', ffn_gate: 'IQ3_S', ffn_up: 'IQ3_S',
      ffn_down: (i) => (i < 4 ? 'Q4_K' : 'IQ3_S'),
    });
    expectTable(written('q2_k_mix', 'llama', LLAMA3_8B_META, t), {
      token_embd: 'Q2_K', output: 'Q6_K', attn_q: 'Q2_K', attn_k: 'Q2_K', attn_v: 'Q4_K', attn_output: 'Q3_K', ffn_gate: 'Q2_K', ffn_up: 'Q2_K', ffn_down: 'Q3_K',
    });
    expectTable(written('q6_k_mix', 'llama', LLAMA3_8B_META, t), {
      token_embd: 'Q6_K', output: 'Q6_K', attn_q: 'Q6_K', attn_k: 'Q6_K', attn_v: 'Q6_K', attn_output: 'Q6_K', ffn_gate: 'Q6_K', ffn_up: 'Q6_K', ffn_down: 'Q6_K',
    });
  });

  it('Llama 2 7B (no grouping, n_gqa 1): attn_v IQ3_S under IQ3_S, Q3_K under Q2_K, Q4_K under IQ3_M', () => {
    const t = modelTensors({ layers: 32, hidden: 4096, q: 4096, kv: 4096, ffn: 11008, vocab: 32000 });
    const meta = { block_count: 32, 'attention.head_count': 32, 'attention.head_count_kv': 32 };
    expect(written('iq3_s_mix', 'llama', meta, t).get('blk.7.attn_v.weight')).toBe('IQ3_S');
    expect(written('q2_k_mix', 'llama', meta, t).get('blk.7.attn_v.weight')).toBe('Q3_K');
    expect(written('iq3_m', 'llama', meta, t).get('blk.7.attn_v.weight')).toBe('Q4_K');
    // 11008 = 43 * 256: ffn_down's rows are whole blocks.
    expect(written('iq3_m', 'llama', meta, t).get('blk.7.ffn_down.weight')).toBe('IQ3_S');
  });

  it('Gemma 2 2B (8 heads over 4 key-value heads, n_gqa 2, tied): attn_v keeps IQ3_S under IQ3_S and takes Q3_K under Q2_K', () => {
    const t = modelTensors({ layers: 26, hidden: 2304, q: 2048, kv: 1024, ffn: 9216, vocab: 256000, tied: true });
    const meta = { block_count: 26, 'attention.head_count': 8, 'attention.head_count_kv': 4 };
    expectTable(written('iq3_s_mix', 'gemma2', meta, t), {
      token_embd: 'Q6_K', output: 'unused', attn_q: 'IQ3_S', attn_k: 'IQ3_S', attn_v: 'IQ3_S', attn_output: 'IQ3_S', ffn_gate: 'IQ3_S', ffn_up: 'IQ3_S', ffn_down: 'IQ3_S',
    });
    expect(written('q2_k_mix', 'gemma2', meta, t).get('blk.3.attn_v.weight')).toBe('Q3_K');
    expect(written('iq3_m', 'gemma2', meta, t).get('blk.3.attn_v.weight')).toBe('Q4_K');
  });

  it('Llama 3 70B (80 blocks, GQA 8, sized 70B): attn_v Q5_K where it would be Q4_K; IQ3_M ffn_down of layers 0-9 Q4_K', () => {
    const t = modelTensors({ layers: 80, hidden: 8192, q: 8192, kv: 1024, ffn: 28672, vocab: 128256 });
    const meta = { block_count: 80, 'attention.head_count': 64, 'attention.head_count_kv': 8 };
    for (const m of ['iq3_s_mix', 'iq3_m', 'q2_k_mix']) expect(written(m, 'llama', meta, t).get('blk.40.attn_v.weight'), m).toBe('Q5_K');
    expect(written('q6_k_mix', 'llama', meta, t).get('blk.40.attn_v.weight')).toBe('Q6_K');
    const m3 = written('iq3_m', 'llama', meta, t);
    expect([9, 10].map((i) => m3.get(`blk.${i}.ffn_down.weight`))).toEqual(['Q4_K', 'IQ3_S']);
  });

  it('Mixtral 8x7B (8 experts): attn_v and attn_k Q8_0, attn_output Q5_K (Q6_K under Q6_K); IQ3_M ffn_down_exps Q4_K on the "more bits" layers by block number', () => {
    const t = modelTensors({ ...LLAMA3_8B, vocab: 32000, experts: 8 });
    const meta = { ...LLAMA3_8B_META, expert_count: 8 };
    // The loader sorts by block number, then name; a file stored in another order gets the same types.
    const shuffled = [...t].reverse();
    expectTable(written('iq3_s_mix', 'llama', meta, shuffled), {
      token_embd: 'IQ3_S', output: 'Q6_K', attn_q: 'IQ3_S', attn_k: 'Q8_0', attn_v: 'Q8_0', attn_output: 'Q5_K', ffn_gate: 'IQ3_S', ffn_up: 'IQ3_S', ffn_down: 'IQ3_S',
    });
    expectTable(written('iq3_m', 'llama', meta, shuffled), {
      token_embd: 'IQ3_S', output: 'Q6_K', attn_q: 'IQ3_S', attn_k: 'Q8_0', attn_v: 'Q8_0', attn_output: 'Q5_K', ffn_gate: 'IQ3_S', ffn_up: 'IQ3_S',
      ffn_down: (i) => (MORE_BITS_32.includes(i) ? 'Q4_K' : 'IQ3_S'),
    });
    expectTable(written('q2_k_mix', 'llama', meta, t), {
      token_embd: 'Q2_K', output: 'Q6_K', attn_q: 'Q2_K', attn_k: 'Q8_0', attn_v: 'Q8_0', attn_output: 'Q5_K', ffn_gate: 'Q2_K', ffn_up: 'Q2_K', ffn_down: 'Q3_K',
    });
    expectTable(written('q6_k_mix', 'llama', meta, t), {
      token_embd: 'Q6_K', output: 'Q6_K', attn_q: 'Q6_K', attn_k: 'Q8_0', attn_v: 'Q8_0', attn_output: 'Q6_K', ffn_gate: 'Q6_K', ffn_up: 'Q6_K', ffn_down: 'Q6_K',
    });
  });

  it('Qwen3-30B-A3B (128 experts, GQA 8): no 8-expert rules; IQ3_M ffn_down_exps of layers 0-5 Q4_K, attn_output Q4_K', () => {
    const t = modelTensors({ layers: 48, hidden: 2048, q: 4096, kv: 512, ffn: 768, vocab: 151936, experts: 128 });
    const meta = { block_count: 48, 'attention.head_count': 32, 'attention.head_count_kv': 4, expert_count: 128, expert_used_count: 8 };
    expectTable(written('iq3_s_mix', 'qwen3moe', meta, t), {
      token_embd: 'IQ3_S', output: 'Q6_K', attn_q: 'IQ3_S', attn_k: 'IQ3_S', attn_v: 'Q4_K', attn_output: 'IQ3_S', ffn_gate: 'IQ3_S', ffn_up: 'IQ3_S', ffn_down: 'IQ3_S',
    });
    expectTable(written('iq3_m', 'qwen3moe', meta, t), {
      token_embd: 'IQ3_S', output: 'Q6_K', attn_q: 'IQ3_S', attn_k: 'IQ3_S', attn_v: 'Q4_K', attn_output: 'Q4_K', ffn_gate: 'IQ3_S', ffn_up: 'IQ3_S',
      ffn_down: (i) => (i < 6 ? 'Q4_K' : 'IQ3_S'),
    });
    expectTable(written('q2_k_mix', 'qwen3moe', meta, t), {
      token_embd: 'Q2_K', output: 'Q6_K', attn_q: 'Q2_K', attn_k: 'Q2_K', attn_v: 'Q4_K', attn_output: 'Q3_K', ffn_gate: 'Q2_K', ffn_up: 'Q2_K', ffn_down: 'Q3_K',
    });
  });

  it('Llama 3.2 1B (tied head): the token embedding is the head, Q6_K under every mix', () => {
    const t = modelTensors({ layers: 16, hidden: 2048, q: 2048, kv: 512, ffn: 8192, vocab: 128256, tied: true });
    const meta = { block_count: 16, 'attention.head_count': 32, 'attention.head_count_kv': 8 };
    for (const m of ['iq3_s_mix', 'iq3_m', 'q2_k_mix', 'q6_k_mix']) expect(written(m, 'llama', meta, t).get('token_embd.weight'), m).toBe('Q6_K');
    expect([1, 2].map((i) => written('iq3_m', 'llama', meta, t).get(`blk.${i}.ffn_down.weight`))).toEqual(['Q4_K', 'IQ3_S']); // 16 / 8 = 2
  });

  it('Qwen2.5 0.5B (tied, rows of 896 = 3.5 blocks of 256): head Q8_0, IQ3_S falls back to IQ4_NL, Q4_K to Q5_0, Q2_K/Q3_K to Q4_0, Q6_K to Q8_0', () => {
    const t = modelTensors({ layers: 24, hidden: 896, q: 896, kv: 128, ffn: 4864, vocab: 151936, tied: true });
    const meta = { block_count: 24, 'attention.head_count': 14, 'attention.head_count_kv': 2 };
    expectTable(written('iq3_s_mix', 'qwen2', meta, t), {
      token_embd: 'Q8_0', output: 'unused', attn_q: 'IQ4_NL', attn_k: 'IQ4_NL', attn_v: 'Q5_0', attn_output: 'IQ4_NL', ffn_gate: 'IQ4_NL', ffn_up: 'IQ4_NL', ffn_down: 'IQ3_S',
    });
    expectTable(written('iq3_m', 'qwen2', meta, t), {
      token_embd: 'Q8_0', output: 'unused', attn_q: 'IQ4_NL', attn_k: 'IQ4_NL', attn_v: 'Q5_0', attn_output: 'Q5_0', ffn_gate: 'IQ4_NL', ffn_up: 'IQ4_NL',
      ffn_down: (i) => (i < 3 ? 'Q4_K' : 'IQ3_S'),
    });
    expectTable(written('q2_k_mix', 'qwen2', meta, t), {
      token_embd: 'Q8_0', output: 'unused', attn_q: 'Q4_0', attn_k: 'Q4_0', attn_v: 'Q5_0', attn_output: 'Q4_0', ffn_gate: 'Q4_0', ffn_up: 'Q4_0', ffn_down: 'Q3_K',
    });
    expectTable(written('q6_k_mix', 'qwen2', meta, t), {
      token_embd: 'Q8_0', output: 'unused', attn_q: 'Q8_0', attn_k: 'Q8_0', attn_v: 'Q8_0', attn_output: 'Q8_0', ffn_gate: 'Q8_0', ffn_up: 'Q8_0', ffn_down: 'Q6_K',
    });
  });

  it('phi3\'s fused attn_qkv takes attn_v\'s rule (its own branch is never reached): Q4_K under IQ3_M, IQ3_S under IQ3_S without grouping', () => {
    const t = modelTensors({ layers: 32, hidden: 3072, q: 3072, kv: 3072, ffn: 8192, vocab: 32064 })
      .map((x) => ({ ...x, name: x.name.replace('attn_v.weight', 'attn_qkv.weight') })).filter((x) => !/attn_[qk]\.weight/.test(x.name));
    const meta = { block_count: 32, 'attention.head_count': 32, 'attention.head_count_kv': 32 };
    expect(written('iq3_m', 'phi3', meta, t).get('blk.3.attn_qkv.weight')).toBe('Q4_K');
    expect(written('iq3_s_mix', 'phi3', meta, t).get('blk.3.attn_qkv.weight')).toBe('IQ3_S');
  });
});

describe('--dtype iq3_m and q2_k_mix end to end', () => {
  const { specs, baseValues, MERGED, run } = tinyLlamaMixCase(7, () => backends.cpu!);

  /** llama-quantize's choice for this 8-layer model (GQA 4, 8 / 8 = 1 layer in the first eighth), written out. */
  function expected(mixName: 'iq3_m' | 'q2_k_mix', name: string): string {
    if (name.endsWith('norm.weight')) return 'F32';
    if (name === 'output.weight') return 'Q6_K';
    if (name.endsWith('attn_v.weight')) return 'Q4_K';
    if (mixName === 'iq3_m') {
      if (name.endsWith('attn_output.weight')) return 'Q4_K';
      if (name === 'blk.0.ffn_down.weight') return 'Q4_K';
      return 'IQ3_S';
    }
    if (name.endsWith('attn_output.weight') || name.endsWith('ffn_down.weight')) return 'Q3_K';
    return 'Q2_K';
  }

  it('writes each tensor in the type llama-quantize\'s IQ3_M and Q2_K give it, labelled file type 27 and 10; the k-quant tensors hold the reference quantizer\'s blocks', async () => {
    const merged = tensorValues('F32', (await run('f32', true)).tensors.find((t) => t.name === MERGED)!.data);
    expect(merged.some((v, i) => v !== baseValues.get(MERGED)![i])).toBe(true);
    for (const [mixName, fileType] of [['iq3_m', 27], ['q2_k_mix', 10]] as const) {
      const out = await run(mixName);
      const got = Object.fromEntries(out.tensors.map((t) => [t.name, typeName(t.typeId)]));
      expect(got, mixName).toEqual(Object.fromEntries(specs.map((s) => [s.name, expected(mixName, s.name)])));
      expect(out.metadata.get('general.file_type')!.value, mixName).toBe(fileType);
      // IQ3_S blocks are held to ggml's golden blocks in gguf-iq3-codecs.test.ts; the k-quants here to the test's own reference quantizer.
      for (const t of out.tensors.filter((x) => /^Q\d_K$/.test(typeName(x.typeId)))) {
        const values = t.name === MERGED ? merged : baseValues.get(t.name)!;
        expect(Buffer.from(t.data).equals(Buffer.from(tensorData(typeName(t.typeId), values))), `${mixName} ${t.name}`).toBe(true);
      }
    }
  }, 120_000);
});
