/**
 * PEFT modules_to_save onto a GGUF base: each saved tensor replaces the GGUF tensor that
 * convert_hf_to_gguf.py makes of it (lm_head → output, a q_proj → attn_q with llama's rows
 * permuted), written in the base tensor's own type by the reference quantizer, once; a resized
 * vocabulary and one expert of a stacked tensor are refused, saying why. On Gemma 3, whose
 * converter keeps only the tokenizer's rows of embed_tokens, a longer copy is refused for that reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { ggufRowOf, LLAMA, peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';
import { cellBaseGguf, cellPeftAdapter, whole, type CellCase } from './helpers/gguf-cell-truth.js';

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu?.dispose());

const { hidden: H, vocab: V, heads } = LLAMA;

/** The llama PEFT adapter with extra saved tensors (keys as PEFT's save_pretrained writes them). */
function withSaved(saved: { key: string; shape: number[]; values: Float32Array }[], modulesToSave: string[]) {
  const base = peftLlamaAdapter();
  const config = { ...JSON.parse(base.files['adapter_config.json'] as string), modules_to_save: modulesToSave };
  // Rebuild the adapter's safetensors with the LoRA factors on q_proj removed (a replaced tensor
  // takes no LoRA terms) plus the saved tensors.
  const tensors: FixtureTensor[] = base.factors.filter((f) => !f.module.endsWith('q_proj')).flatMap((f) => [
    { name: `base_model.model.${f.module}.lora_A.weight`, dtype: 'BF16' as const, shape: [f.rank, f.in], data: f.a },
    { name: `base_model.model.${f.module}.lora_B.weight`, dtype: 'BF16' as const, shape: [f.out, f.rank], data: f.b },
  ]);
  for (const s of saved) tensors.push({ name: s.key, dtype: 'F32', shape: s.shape, data: Float64Array.from(s.values) });
  return { 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) };
}

function randomValues(n: number, seed: number): Float32Array {
  const rand = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (rand() - 0.5) * 0.1);
}

describe('modules_to_save onto a GGUF base', () => {
  it('replaces output and a permuted attn_q, requantized once to their own types (Q6_K, Q4_K)', async () => {
    const base = q4kmLlama();
    const head = randomValues(V * H, 1);
    const q = randomValues(H * H, 2);
    const files = withSaved([
      { key: 'base_model.model.lm_head.weight', shape: [V, H], values: head },
      { key: 'base_model.model.model.layers.0.self_attn.q_proj.modules_to_save.default.weight', shape: [H, H], values: q },
    ], ['lm_head', 'q_proj']);
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(files, 'peft') }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      expect(prepared.plan.replacements.map((r) => r.baseKey).sort()).toEqual(['blk.0.attn_q.weight', 'output.weight']);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: cpu, slabBytes: 64 * 1024 });
      const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
      const output_ = out.tensors.find((t) => t.name === 'output.weight')!;
      expect(typeName(output_.typeId)).toBe('Q6_K');
      expect([...output_.data]).toEqual([...tensorData('Q6_K', head)]);
      // HF row r of q goes to the GGUF row convert_hf_to_gguf.py puts it in.
      const permuted = new Float32Array(H * H);
      for (let r = 0; r < H; r++) permuted.set(q.subarray(r * H, (r + 1) * H), ggufRowOf(r, H, heads) * H);
      const attnQ = out.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
      expect(typeName(attnQ.typeId)).toBe('Q4_K');
      expect([...attnQ.data]).toEqual([...tensorData('Q4_K', permuted)]);
      // And with --dtype f32 the replaced values come back exactly, in GGUF row order.
      const f32Out = createBlobOutputTarget();
      await mergeModel({ prepared, output: f32Out, backend: cpu, outDtype: 'f32' });
      const f32 = readGguf(new Uint8Array(await f32Out.files()[0].blob.arrayBuffer()));
      expect([...tensorValues('F32', f32.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!.data)]).toEqual([...permuted]);
    } finally {
      await prepared.close();
    }
  });

  it('refuses a resized vocabulary, explaining that the GGUF tokenizer would have to change too', async () => {
    const base = q4kmLlama();
    const files = withSaved([{ key: 'base_model.model.model.embed_tokens.weight', shape: [V + 2, H], values: randomValues((V + 2) * H, 3) }], ['embed_tokens']);
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(files, 'resized') }]);
    const messages = prepared.plan.problems.map((p) => p.message).join('\n');
    await prepared.close();
    expect(messages).toMatch(/does not match base token_embd\.weight/);
    expect(messages).toMatch(/resized: model\.embed_tokens\.weight has 66 rows for the base's 64-token vocabulary \(token_embd\.weight\): a resized vocabulary needs the GGUF's tokenizer/);
  });

  it('refuses one expert of a stacked expert tensor: it would replace some rows only', async () => {
    const E = 2;
    const base = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.expert_count', { type: 'u32', value: E }]],
      tensors: [{ name: 'blk.0.ffn_gate_exps.weight', type: 'F16', ne: [32, 32, E], data: new Uint8Array(32 * 32 * E * 2) }],
    });
    const adapter = {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: [], modules_to_save: ['w1'] }),
      'adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.model.layers.0.block_sparse_moe.experts.1.w1.weight', dtype: 'F32', shape: [32, 32], data: new Float64Array(32 * 32) },
      ]),
    };
    const prepared = await prepareMerge(memoryInputFileSet({ 'moe.gguf': base }, 'base'), [{ files: memoryInputFileSet(adapter, 'one-expert') }]);
    const messages = prepared.plan.problems.map((p) => p.message).join('\n');
    await prepared.close();
    expect(messages).toMatch(/replacement tensor base_model\.model\.model\.layers\.0\.block_sparse_moe\.experts\.1\.w1\.weight: it maps to some rows of blk\.0\.ffn_gate_exps\.weight only \(hf-to-gguf\), not a whole tensor to replace/);
  });

  /**
   * Gemma 3 4B in GGUF, shrunk: tied (no output.weight), token_embd holding the tokenizer's rows
   * only (convert_hf_to_gguf.py Gemma3Model cuts embed_tokens' 262208 rows to the tokenizer's
   * 262144; here 64 of 72). The adapter saved Gemma3ForConditionalGeneration's embedding whole.
   */
  const GH = 32, KEPT = 64, HF_ROWS = 72;
  const gemma3: CellCase = {
    arch: 'gemma3', hfModel: 'google/gemma-3-4b-it',
    tensors: [['token_embd.weight', [GH, KEPT]], ['blk.0.attn_q.weight', [GH, GH]], ['blk.0.attn_norm.weight', [GH]], ['output_norm.weight', [GH]]],
    metadata: [
      ['gemma3.block_count', { type: 'u32', value: 1 }], ['gemma3.embedding_length', { type: 'u32', value: GH }],
      ['gemma3.attention.head_count', { type: 'u32', value: 4 }], ['gemma3.attention.head_count_kv', { type: 'u32', value: 1 }],
    ],
    targets: [{ module: 'model.language_model.layers.0.self_attn.q_proj', out: GH, in: GH, lands: whole('blk.0.attn_q.weight') }],
    rank: 2, alpha: 4,
  };
  const gemmaAdapter = (rows: number) => cellPeftAdapter(gemma3, gemma3.targets, { ensure_weight_tying: true, modules_to_save: ['embed_tokens'] }, [
    { name: 'base_model.model.model.language_model.embed_tokens.weight', dtype: 'BF16', shape: [rows, GH], data: Float64Array.from(randomValues(rows * GH, 4)) },
  ]).files;
  const gemmaProblems = async (rows: number) => {
    const prepared = await prepareMerge(memoryInputFileSet({ 'gemma-3-4b-it-BF16.gguf': cellBaseGguf(gemma3, []).bytes }, 'base'), [{ files: memoryInputFileSet(gemmaAdapter(rows), 'gemma-peft') }]);
    await prepared.close();
    return prepared.plan.problems.filter((p) => p.code === 'UNSUPPORTED_FORMAT').map((p) => p.message);
  };

  it('refuses a Gemma 3 embedding copy longer than token_embd saying the converter dropped the rows past the tokenizer, not that the vocabulary was resized', async () => {
    expect(await gemmaProblems(HF_ROWS)).toEqual([
      "gemma-peft: model.language_model.embed_tokens.weight has 72 rows, token_embd.weight 64: convert_hf_to_gguf.py keeps only the rows of Gemma 3's embed_tokens that its tokenizer has tokens for and drops the rest, so whether the copy's 8 rows past them are only those dropped rows or tokens a resized vocabulary added cannot be told from the GGUF; merge into the Hugging Face model and convert it with convert_hf_to_gguf.py",
    ]);
  });

  it('still calls a shorter Gemma 3 copy a resized vocabulary (the converter never adds rows)', async () => {
    expect(await gemmaProblems(KEPT - 2)).toEqual([
      "gemma-peft: model.language_model.embed_tokens.weight has 62 rows for the base's 64-token vocabulary (token_embd.weight): a resized vocabulary needs the GGUF's tokenizer (tokenizer.ggml.*) rewritten too, which the adapter cannot give; merge into the Hugging Face model and convert it with convert_hf_to_gguf.py",
    ]);
  });
});
