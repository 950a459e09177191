/**
 * `--dtype q4_0_mix`, `q4_1_mix`, `q5_0_mix`, `q5_1_mix`, `q1_0_mix`, `q2_0_mix`, `tq1_0_mix`,
 * `tq2_0_mix`, `iq4_nl_mix` and `iq4_xs_mix`: llama-quantize's file types named after one type,
 * which without `--pure` still give some tensors other types (llama-quant.cpp at 007dbbf,
 * llama_tensor_get_type_impl, no importance matrix). The type each tensor of real models gets is
 * written out below from the C rules, model by model (Llama 3 8B, Llama 2 7B, Llama 3 70B, Gemma 2
 * 2B, Mixtral 8x7B, Qwen3-30B-A3B, Llama 3.2 1B, Qwen2.5 0.5B, Falcon 7B), then end to end on a
 * small BF16 llama GGUF with a merged LoRA: types, the reference quantizers' bytes and
 * general.file_type as llama-quantize writes them. Q8_0's rules keep Q8_0 everywhere, so it has no
 * `_mix` name.
 */
import { describe, expect, it } from 'vitest';
import { typeMix } from '../src/formats/gguf/type-mixes.js';
import { ggufContainer } from '../src/formats/gguf/gguf-container.js';
import { tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectTable, modelTensors, tinyLlamaMixCase, written, type Dims, type Table } from './helpers/mix-tables.js';

const backends = mergeBackends({ cpu: 'default' });

const LEGACY = ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q1_0'] as const;
const LLAMA3_8B: Dims = { layers: 32, hidden: 4096, q: 4096, kv: 1024, ffn: 14336, vocab: 128256 };
const LLAMA3_8B_META = { block_count: 32, 'attention.head_count': 32, 'attention.head_count_kv': 8 };

/** One type for every kind of tensor, then the given exceptions. */
const all = (type: string, rest: Partial<Table> = {}): Table => ({
  token_embd: type, output: type, attn_q: type, attn_k: type, attn_v: type, attn_output: type, ffn_gate: type, ffn_up: type, ffn_down: type, ...rest,
});

describe('llama-quantize\'s single-type file types as mixes, tensor by tensor', () => {
  it('names (<type>_mix) and general.file_type (llama.h: Q4_0 2, Q4_1 3, Q5_0 8, Q5_1 9, IQ4_NL 25, IQ4_XS 30, TQ1_0 36, TQ2_0 37, Q1_0 40, Q2_0 41)', () => {
    const names = ['q4_0_mix', 'q4_1_mix', 'q5_0_mix', 'q5_1_mix', 'iq4_nl_mix', 'iq4_xs_mix', 'tq1_0_mix', 'tq2_0_mix', 'q1_0_mix', 'q2_0_mix'];
    expect(names.map((n) => [typeMix(n)!.name, typeMix(n)!.fileTypeName, typeMix(n)!.fileType])).toEqual([
      ['Q4_0_MIX', 'Q4_0', 2], ['Q4_1_MIX', 'Q4_1', 3], ['Q5_0_MIX', 'Q5_0', 8], ['Q5_1_MIX', 'Q5_1', 9], ['IQ4_NL_MIX', 'IQ4_NL', 25],
      ['IQ4_XS_MIX', 'IQ4_XS', 30], ['TQ1_0_MIX', 'TQ1_0', 36], ['TQ2_0_MIX', 'TQ2_0', 37], ['Q1_0_MIX', 'Q1_0', 40], ['Q2_0_MIX', 'Q2_0', 41],
    ]);
    // The type names keep meaning one type throughout; Q8_0's file type is Q8_0 throughout, so no mix.
    for (const n of ['q4_0', 'iq4_xs', 'tq1_0', 'q8_0', 'q8_0_mix']) expect(typeMix(n), n).toBeUndefined();
    // Every branch of llama_tensor_get_type_impl keeps Q8_0 under the Q8_0 file type: the name is refused, pointing to q8_0.
    expect(() => ggufContainer([], []).parseOutputType('q8_0_mix')).toThrow(/^--dtype q8_0_mix: llama-quantize's Q8_0 file type gives every tensor it quantizes Q8_0 \(its output head too\), so there is no Q8_0 mix; --dtype q8_0 writes that file$/);
    expect(ggufContainer([], []).parseOutputType('q8_0')).toBe('Q8_0');
  });

  it('Llama 3 8B (GQA 4): the head Q6_K; IQ4_NL/IQ4_XS attn_v Q5_K and ffn_down of layers 0-3 Q5_K; TQ1_0/TQ2_0/Q2_0 the token embedding Q4_K', () => {
    const t = modelTensors(LLAMA3_8B);
    for (const type of LEGACY) expectTable(written(`${type}_mix`, 'llama', LLAMA3_8B_META, t), all(type, { output: 'Q6_K' }));
    for (const type of ['IQ4_NL', 'IQ4_XS']) {
      expectTable(written(`${type}_mix`, 'llama', LLAMA3_8B_META, t), all(type, { output: 'Q6_K', attn_v: 'Q5_K', ffn_down: (i) => (i < 4 ? 'Q5_K' : type) }));
    }
    for (const type of ['TQ1_0', 'TQ2_0', 'Q2_0']) expectTable(written(`${type}_mix`, 'llama', LLAMA3_8B_META, t), all(type, { token_embd: 'Q4_K', output: 'Q6_K' }));
  });

  it('Llama 2 7B (no grouping): IQ4 attn_v keeps the main type; ffn_down (11008 = 43 blocks) of layers 0-3 Q5_K', () => {
    const t = modelTensors({ layers: 32, hidden: 4096, q: 4096, kv: 4096, ffn: 11008, vocab: 32000 });
    const meta = { block_count: 32, 'attention.head_count': 32, 'attention.head_count_kv': 32 };
    expectTable(written('iq4_nl_mix', 'llama', meta, t), all('IQ4_NL', { output: 'Q6_K', ffn_down: (i) => (i < 4 ? 'Q5_K' : 'IQ4_NL') }));
    expectTable(written('q5_1_mix', 'llama', meta, t), all('Q5_1', { output: 'Q6_K' }));
  });

  it('Llama 3 70B (sized 70B, GQA 8): the 70B rule raises only Q3_K/Q4_K, so Q4_0 attn_v stays Q4_0; IQ4_XS ffn_down of layers 0-9 Q5_K', () => {
    const t = modelTensors({ layers: 80, hidden: 8192, q: 8192, kv: 1024, ffn: 28672, vocab: 128256 });
    const meta = { block_count: 80, 'attention.head_count': 64, 'attention.head_count_kv': 8 };
    expectTable(written('q4_0_mix', 'llama', meta, t), all('Q4_0', { output: 'Q6_K' }));
    expectTable(written('iq4_xs_mix', 'llama', meta, t), all('IQ4_XS', { output: 'Q6_K', attn_v: 'Q5_K', ffn_down: (i) => (i < 10 ? 'Q5_K' : 'IQ4_XS') }));
  });

  it('Gemma 2 2B (tied, n_gqa 2): the token embedding is the head (Q6_K, before the TQ rule), IQ4 attn_v keeps the main type, ffn_down of layers 0-2 Q5_K', () => {
    const t = modelTensors({ layers: 26, hidden: 2304, q: 2048, kv: 1024, ffn: 9216, vocab: 256000, tied: true });
    const meta = { block_count: 26, 'attention.head_count': 8, 'attention.head_count_kv': 4 };
    expectTable(written('q4_0_mix', 'gemma2', meta, t), all('Q4_0', { token_embd: 'Q6_K', output: 'unused' }));
    expectTable(written('tq1_0_mix', 'gemma2', meta, t), all('TQ1_0', { token_embd: 'Q6_K', output: 'unused' }));
    expectTable(written('iq4_xs_mix', 'gemma2', meta, t), all('IQ4_XS', { token_embd: 'Q6_K', output: 'unused', ffn_down: (i) => (i < 3 ? 'Q5_K' : 'IQ4_XS') }));
  });

  it('Mixtral 8x7B (8 experts): attn_v and attn_k Q8_0 under all; IQ4 attn_output Q5_K and ffn_down_exps of blocks 0-3 Q5_K', () => {
    const t = modelTensors({ ...LLAMA3_8B, vocab: 32000, experts: 8 });
    const meta = { ...LLAMA3_8B_META, expert_count: 8 };
    const shuffled = [...t].reverse();
    for (const type of LEGACY) expectTable(written(`${type}_mix`, 'llama', meta, shuffled), all(type, { output: 'Q6_K', attn_k: 'Q8_0', attn_v: 'Q8_0' }));
    for (const type of ['IQ4_NL', 'IQ4_XS']) {
      expectTable(written(`${type}_mix`, 'llama', meta, shuffled), all(type, {
        output: 'Q6_K', attn_k: 'Q8_0', attn_v: 'Q8_0', attn_output: 'Q5_K', ffn_down: (i) => (i < 4 ? 'Q5_K' : type),
      }));
    }
    expectTable(written('tq2_0_mix', 'llama', meta, t), all('TQ2_0', { token_embd: 'Q4_K', output: 'Q6_K', attn_k: 'Q8_0', attn_v: 'Q8_0' }));
  });

  it('Qwen3-30B-A3B (128 experts, GQA 8): no 8-expert rules; IQ4_NL attn_v Q5_K, ffn_down_exps of blocks 0-5 Q5_K', () => {
    const t = modelTensors({ layers: 48, hidden: 2048, q: 4096, kv: 512, ffn: 768, vocab: 151936, experts: 128 });
    const meta = { block_count: 48, 'attention.head_count': 32, 'attention.head_count_kv': 4, expert_count: 128, expert_used_count: 8 };
    expectTable(written('iq4_nl_mix', 'qwen3moe', meta, t), all('IQ4_NL', { output: 'Q6_K', attn_v: 'Q5_K', ffn_down: (i) => (i < 6 ? 'Q5_K' : 'IQ4_NL') }));
    expectTable(written('q5_0_mix', 'qwen3moe', meta, t), all('Q5_0', { output: 'Q6_K' }));
  });

  it('Llama 3.2 1B (tied): the token embedding Q6_K under every mix', () => {
    const t = modelTensors({ layers: 16, hidden: 2048, q: 2048, kv: 512, ffn: 8192, vocab: 128256, tied: true });
    const meta = { block_count: 16, 'attention.head_count': 32, 'attention.head_count_kv': 8 };
    for (const n of ['q4_0_mix', 'q4_1_mix', 'q5_0_mix', 'q5_1_mix', 'iq4_nl_mix', 'iq4_xs_mix', 'tq1_0_mix', 'tq2_0_mix', 'q1_0_mix', 'q2_0_mix']) {
      expect(written(n, 'llama', meta, t).get('token_embd.weight'), n).toBe('Q6_K');
    }
  });

  it('Qwen2.5 0.5B (tied, rows of 896 = 28 blocks of 32, 3.5 of 256): the head Q6_K falls back to Q8_0, or is Q8_0 for IQ4_XS and TQ; IQ4_XS → IQ4_NL, Q5_K → Q5_1, TQ1_0 → Q4_0', () => {
    const t = modelTensors({ layers: 24, hidden: 896, q: 896, kv: 128, ffn: 4864, vocab: 151936, tied: true });
    const meta = { block_count: 24, 'attention.head_count': 14, 'attention.head_count_kv': 2 };
    for (const type of LEGACY) expectTable(written(`${type}_mix`, 'qwen2', meta, t), all(type, { token_embd: 'Q8_0', output: 'unused' }));
    expectTable(written('iq4_nl_mix', 'qwen2', meta, t), all('IQ4_NL', { token_embd: 'Q8_0', output: 'unused', attn_v: 'Q5_1', ffn_down: (i) => (i < 3 ? 'Q5_K' : 'IQ4_NL') }));
    expectTable(written('iq4_xs_mix', 'qwen2', meta, t), all('IQ4_NL', { token_embd: 'Q8_0', output: 'unused', attn_v: 'Q5_1', ffn_down: (i) => (i < 3 ? 'Q5_K' : 'IQ4_XS') }));
    expectTable(written('tq1_0_mix', 'qwen2', meta, t), all('Q4_0', { token_embd: 'Q8_0', output: 'unused', ffn_down: 'TQ1_0' }));
    expectTable(written('q2_0_mix', 'qwen2', meta, t), all('Q2_0', { token_embd: 'Q8_0', output: 'unused' }));
  });

  it('Falcon 7B (fused attn_qkv, 71 heads over 1, rows of 4544): the head Q8_0; IQ4_XS attn_qkv Q5_K → Q5_1, ffn_down of layers 0-3 Q5_K, the rest IQ4_NL', () => {
    const h = 4544, ffn = 18176;
    const t: { name: string; shape: number[] }[] = [{ name: 'token_embd.weight', shape: [65024, h] }];
    for (let i = 0; i < 32; i++) {
      t.push(
        { name: `blk.${i}.attn_norm.weight`, shape: [h] }, { name: `blk.${i}.attn_norm.bias`, shape: [h] },
        { name: `blk.${i}.attn_qkv.weight`, shape: [4672, h] }, { name: `blk.${i}.attn_output.weight`, shape: [h, h] },
        { name: `blk.${i}.ffn_up.weight`, shape: [ffn, h] }, { name: `blk.${i}.ffn_down.weight`, shape: [h, ffn] },
      );
    }
    t.push({ name: 'output_norm.weight', shape: [h] }, { name: 'output_norm.bias', shape: [h] }, { name: 'output.weight', shape: [65024, h] });
    const meta = { block_count: 32, 'attention.head_count': 71, 'attention.head_count_kv': 1 };
    const expected = (qkv: string, down: (i: number) => string, rest: string) => Object.fromEntries(t.filter((x) => x.shape.length > 1).map((x) => {
      const i = Number(/^blk\.(\d+)\./.exec(x.name)?.[1]);
      if (x.name === 'output.weight') return [x.name, 'Q8_0'];
      if (x.name.endsWith('attn_qkv.weight')) return [x.name, qkv];
      if (x.name.endsWith('ffn_down.weight')) return [x.name, down(i)];
      return [x.name, rest];
    }));
    expect(Object.fromEntries(written('q4_0_mix', 'falcon', meta, t))).toEqual(expected('Q4_0', () => 'Q4_0', 'Q4_0'));
    expect(Object.fromEntries(written('iq4_xs_mix', 'falcon', meta, t))).toEqual(expected('Q5_1', (i) => (i < 4 ? 'Q5_K' : 'IQ4_XS'), 'IQ4_NL'));
  });
});

describe('the plain mixes end to end', () => {
  const { specs, baseValues, MERGED, run } = tinyLlamaMixCase(11, () => backends.cpu!);

  /** llama-quantize's choice for this 8-layer model (GQA 4, untied, 8 / 8 = 1 layer in the first eighth), written out. */
  function expected(mixName: string, name: string): string {
    const main = mixName.replace(/_mix$/, '').toUpperCase();
    if (name.endsWith('norm.weight')) return 'F32';
    if (name === 'output.weight') return 'Q6_K';
    if (main === 'IQ4_XS' || main === 'IQ4_NL') return name.endsWith('attn_v.weight') || name === 'blk.0.ffn_down.weight' ? 'Q5_K' : main;
    if (main === 'TQ1_0' || main === 'TQ2_0' || main === 'Q2_0') return name === 'token_embd.weight' ? 'Q4_K' : main;
    return main;
  }

  /** Merges with each mix and checks every tensor's type, the file type and every quantized tensor's bytes. */
  async function expectMixes(mixes: readonly (readonly [string, number])[]) {
    const merged = tensorValues('F32', (await run('f32', true)).tensors.find((t) => t.name === MERGED)!.data);
    expect(merged.some((v, i) => v !== baseValues.get(MERGED)![i])).toBe(true);
    for (const [mixName, fileType] of mixes) {
      const out = await run(mixName);
      const got = Object.fromEntries(out.tensors.map((t) => [t.name, typeName(t.typeId)]));
      expect(got, mixName).toEqual(Object.fromEntries(specs.map((s) => [s.name, expected(mixName, s.name)])));
      expect(out.metadata.get('general.file_type')!.value, mixName).toBe(fileType);
      for (const t of out.tensors.filter((x) => typeName(x.typeId) !== 'F32')) {
        const values = t.name === MERGED ? merged : baseValues.get(t.name)!;
        expect(Buffer.from(t.data).equals(Buffer.from(tensorData(typeName(t.typeId), values))), `${mixName} ${t.name}`).toBe(true);
      }
    }
  }

  it('writes each tensor in the type llama-quantize\'s IQ4_XS, Q4_0 and TQ1_0 give it (the merged ffn_down Q5_K under IQ4_XS), labelled 30, 2 and 36, holding the reference quantizers\' blocks', async () => {
    await expectMixes([['iq4_xs_mix', 30], ['q4_0_mix', 2], ['tq1_0_mix', 36]]);
  }, 180_000);

  it('and IQ4_NL, Q4_1, Q5_0, Q5_1, Q1_0, Q2_0 and TQ2_0 (llama.h\'s file types 25, 3, 8, 9, 40, 41, 37)', async () => {
    await expectMixes([['iq4_nl_mix', 25], ['q4_1_mix', 3], ['q5_0_mix', 8], ['q5_1_mix', 9], ['q1_0_mix', 40], ['q2_0_mix', 41], ['tq2_0_mix', 37]]);
  }, 300_000);
});
