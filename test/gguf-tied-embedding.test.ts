/**
 * A tied model in GGUF (token_embd.weight and no output.weight: convert_hf_to_gguf writes no head
 * for it and llama.cpp multiplies by token_embd as the head). A PEFT LoRA or saved copy on
 * embed_tokens trained the input embedding alone, so merging it would change the head too: it is
 * refused in one line. Under ensure_weight_tying PEFT applies it to both: merged once, float64
 * truth; so is a lone lm_head LoRA under it, which PEFT loads into the embedding's tied factors too. A llama.cpp LoRA's token_embd pair merges into the one tensor, as export-lora does.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { runCli } from './helpers/cli.js';
import { cellBaseGguf, cellPeftAdapter, expectCellsMerged, transposedWhole, whole, type CellCase } from './helpers/gguf-cell-truth.js';
import { mergeFileInMemory } from './helpers/merge-backends.js';
import { ggufLoraAdapter } from './helpers/gguf-models.js';
import { buildGguf, readGguf, type MetaValue } from './helpers/gguf-builder.js';

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu?.dispose());
const temp = tempDirs();
afterAll(temp.removeAll);

const H = 64, V = 48;
/** Llama 3.2 1B's shape of file, shrunk: tied, so no output.weight. */
const tied: CellCase = {
  arch: 'llama', hfModel: 'meta-llama/Llama-3.2-1B',
  tensors: [['token_embd.weight', [H, V]], ['blk.0.attn_v.weight', [H, 32]], ['blk.0.attn_norm.weight', [H]], ['output_norm.weight', [H]]],
  metadata: [
    ['llama.block_count', { type: 'u32', value: 1 }], ['llama.embedding_length', { type: 'u32', value: H }],
    ['llama.attention.head_count', { type: 'u32', value: 4 }], ['llama.attention.head_count_kv', { type: 'u32', value: 2 }],
  ],
  targets: [
    { module: 'model.embed_tokens', out: H, in: V, lands: transposedWhole('token_embd.weight'), embedding: true },
    { module: 'model.layers.0.self_attn.v_proj', out: 32, in: H, lands: whole('blk.0.attn_v.weight') },
  ],
  rank: 4, alpha: 8,
};
const untied: CellCase = { ...tied, tensors: [...tied.tensors, ['output.weight', [H, V]]] };

const baseFiles = (c: CellCase) => ({ 'Llama-3.2-1B-BF16.gguf': cellBaseGguf(c, []).bytes });
const prepare = (c: CellCase, adapter: Record<string, Uint8Array | string>) =>
  prepareMerge(memoryInputFileSet(baseFiles(c), 'base'), [{ files: memoryInputFileSet(adapter, 'peft') }]);

/** The head's tied copy PEFT gives lm_head under ensure_weight_tying: lora_A = Bᵀ (r, H), lora_B = Aᵀ (V, r). */
function headMirror(f: { a: Float64Array; b: Float64Array }, r: number): FixtureTensor[] {
  return [
    { name: 'base_model.model.lm_head.lora_A.weight', dtype: 'F32', shape: [r, H], data: Float64Array.from({ length: r * H }, (_, x) => f.b[(x % H) * r + Math.floor(x / H)]) },
    { name: 'base_model.model.lm_head.lora_B.weight', dtype: 'F32', shape: [V, r], data: Float64Array.from({ length: V * r }, (_, x) => f.a[(x % r) * V + Math.floor(x / r)]) },
  ];
}

describe('an embedding update on a tied GGUF', () => {
  it('refuses a PEFT LoRA on embed_tokens: it would change the head that token_embd also is', async () => {
    await expect(prepare(tied, cellPeftAdapter(tied).files)).rejects.toThrow(
      'peft: a LoRA on model.embed_tokens lands on token_embd.weight, which this GGUF also uses as its output head (it has no output.weight: the model ties them), while training changed the input embedding alone; merged here it would change the head too, so it is not merged (merge into the safetensors model, where the head is written as its own tensor, or train with ensure_weight_tying)',
    );
  });

  it('refuses it on the command line in one line, leaving nothing at --out', async () => {
    const adapter = cellPeftAdapter(tied).files;
    const dir = temp.make({ 'Llama-3.2-1B-BF16.gguf': cellBaseGguf(tied, []).bytes, 'adapter_config.json': adapter['adapter_config.json'], 'adapter_model.safetensors': adapter['adapter_model.safetensors'] });
    const out = join(dir, 'merged.gguf');
    const result = await runCli(['merge', '--base', join(dir, 'Llama-3.2-1B-BF16.gguf'), '--adapter', dir, '--out', out, '--backend', 'cpu']);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^error: ${dir}: a LoRA on model\\.embed_tokens lands on token_embd\\.weight, which this GGUF also uses as its output head`))]);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a modules_to_save copy of embed_tokens likewise', async () => {
    const saved: FixtureTensor = { name: 'base_model.model.model.embed_tokens.modules_to_save.default.weight', dtype: 'F32', shape: [V, H], data: new Float64Array(V * H).fill(0.25) };
    const { files } = cellPeftAdapter(tied, [tied.targets[1]], { modules_to_save: ['embed_tokens'] }, [saved]);
    await expect(prepare(tied, files)).rejects.toThrow(/^peft: a saved model\.embed_tokens\.weight lands on token_embd\.weight, which this GGUF also uses as its output head/);
  });

  it('merges the same LoRA into a GGUF whose output.weight is its own tensor', async () => {
    const prepared = await prepare(untied, cellPeftAdapter(untied).files);
    expect(prepared.plan.problems).toEqual([]);
    await prepared.close();
  });

  it('under ensure_weight_tying merges the embedding LoRA once into token_embd, the head staying tied, as float64 truth says', async () => {
    const adapter = cellPeftAdapter(tied, tied.targets, { ensure_weight_tying: true });
    const prepared = await prepare(tied, adapter.files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes).toEqual(['the output head stays tied to token_embd.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both']);
    await prepared.close();
    const base = cellBaseGguf(tied, []);
    const { bytes } = await mergeFileInMemory({
      backend: cpu, base: { 'Llama-3.2-1B-BF16.gguf': base.bytes }, adapters: [{ files: adapter.files, name: 'peft', weight: 1 }], outDtype: 'f32', dtypeMergedOnly: true,
    });
    expectCellsMerged(bytes, base, adapter.factors, tied.rank, tied.alpha / tied.rank);
  });

  it('under ensure_weight_tying with the head\'s tied copy saved: the file tells the tie (no output.weight), the update is merged once, as float64 truth says', async () => {
    const config = { ensure_weight_tying: true };
    const { factors } = cellPeftAdapter(tied, tied.targets, config);
    const { files } = cellPeftAdapter(tied, tied.targets, config, headMirror(factors[0], tied.rank));
    const prepared = await prepare(tied, files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes).toEqual(["the output head stays tied to token_embd.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both, once (PEFT's merge_and_unload adds the head's tied LoRA to the shared weight a second time)"]);
    await prepared.close();
    const base = cellBaseGguf(tied, []);
    const { bytes } = await mergeFileInMemory({
      backend: cpu, base: { 'Llama-3.2-1B-BF16.gguf': base.bytes }, adapters: [{ files, name: 'peft', weight: 1 }], outDtype: 'f32', dtypeMergedOnly: true,
    });
    expectCellsMerged(bytes, base, factors, tied.rank, tied.alpha / tied.rank);
  });

  // PEFT ties the head's LoRA to the embedding's (lora/model.py _create_and_replace: lora_A = emb_B.t(),
  // lora_B = emb_A.t(), views of the same storage), so a file holding only the head's factors fills both
  // on loading: the shared weight gains s·B·A once, as the embedding's LoRA would give it.
  const lmHead = { module: 'lm_head', out: V, in: H, lands: whole('token_embd.weight') };

  it('merges a lone lm_head LoRA under ensure_weight_tying once into token_embd, the head staying tied (float64 truth)', async () => {
    const config = { ensure_weight_tying: true, target_modules: ['lm_head', 'v_proj'] };
    const adapter = cellPeftAdapter(tied, [lmHead, tied.targets[1]], config);
    const prepared = await prepare(tied, adapter.files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes).toEqual(['the output head stays tied to token_embd.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both; peft saved the lm_head LoRA without the embed_tokens LoRA it is tied to, which PEFT fills from it on loading, so it is merged into token_embd.weight']);
    await prepared.close();
    const base = cellBaseGguf(tied, []);
    const { bytes } = await mergeFileInMemory({
      backend: cpu, base: { 'Llama-3.2-1B-BF16.gguf': base.bytes }, adapters: [{ files: adapter.files, name: 'peft', weight: 1 }], outDtype: 'f32', dtypeMergedOnly: true,
    });
    expectCellsMerged(bytes, base, adapter.factors, tied.rank, tied.alpha / tied.rank);
  });

  it('refuses a lone lm_head LoRA under ensure_weight_tying whose alpha_pattern names lm_head (the tied pair would scale apart)', async () => {
    const config = { ensure_weight_tying: true, target_modules: ['lm_head', 'v_proj'], alpha_pattern: { lm_head: 32 } };
    const { files } = cellPeftAdapter(tied, [lmHead, tied.targets[1]], config);
    await expect(prepare(tied, files)).rejects.toThrow('peft: its lm_head LoRA under ensure_weight_tying has no embed_tokens LoRA beside it, and its rank_pattern or alpha_pattern names lm_head or embed_tokens, so the two tied layers may scale the shared factors differently, which the one token_embd.weight of this GGUF (it has no output.weight) cannot hold; it is not merged');
  });

  it('refuses a lone lm_head DoRA under ensure_weight_tying (the head and the embedding each take their own magnitude)', async () => {
    const config = { ensure_weight_tying: true, target_modules: ['lm_head', 'v_proj'], use_dora: true };
    const magnitude = { name: 'base_model.model.lm_head.lora_magnitude_vector', dtype: 'F32' as const, shape: [V], data: new Float64Array(V).fill(1) };
    const { files } = cellPeftAdapter(tied, [lmHead], config, [magnitude]);
    await expect(prepare(tied, files)).rejects.toThrow('peft: its lm_head LoRA under ensure_weight_tying has no embed_tokens LoRA beside it, and it uses DoRA, whose magnitude and norms the head and the embedding each take from their own layer, which the one token_embd.weight of this GGUF (it has no output.weight) cannot hold; it is not merged');
  });

  it('refuses the head\'s tied copy on a GGUF whose output.weight is its own tensor (PEFT puts no adapter there)', async () => {
    const config = { ensure_weight_tying: true };
    const { factors } = cellPeftAdapter(untied, untied.targets, config);
    const { files } = cellPeftAdapter(untied, untied.targets, config, headMirror(factors[0], untied.rank));
    // The GGUF has no config.json: its own output.weight is what says the model is not tied.
    await expect(prepare(untied, files)).rejects.toThrow(
      'peft/adapter_config.json: module "lm_head" is in peft/adapter_model.safetensors only as a layer tied to the embedding under ensure_weight_tying (not targeted by target_modules ["embed_tokens","v_proj"] otherwise), but the base GGUF base/Llama-3.2-1B-BF16.gguf stores its own output.weight, so the model is not tied and PEFT finds no tied layer to put an adapter on (it would leave these tensors unused)',
    );
  });

  it('merges a llama.cpp LoRA\'s token_embd pair into the one tensor, as export-lora does (float64 truth)', async () => {
    const lora = ggufLoraAdapter([{ tensor: 'token_embd.weight', rank: 4, in: V, out: H, aType: 'F32', bType: 'F16' }], 8);
    const base = cellBaseGguf(tied, []);
    const { bytes } = await mergeFileInMemory({
      backend: cpu, base: { 'Llama-3.2-1B-BF16.gguf': base.bytes }, adapters: [{ files: { 'lora.gguf': lora.bytes }, name: 'lora.gguf', weight: 0.5 }], outDtype: 'f32', dtypeMergedOnly: true,
    });
    const f = lora.factors.get('token_embd.weight')!;
    // export-lora: scale = 0.5 · α / r, ΔW = (B·A)ᵀ on the (vocabulary, dim) table.
    expectCellsMerged(bytes, base, [{ ...tied.targets[0], a: Float64Array.from(f.a), b: Float64Array.from(f.b) }], 4, 0.5 * 8 / 4);
  });

  it('keeps the plan of a safetensors adapter with modules on neither side', async () => {
    const { files } = cellPeftAdapter(tied, [tied.targets[1]]);
    const prepared = await prepare(tied, files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes).toEqual([]);
    await prepared.close();
  });
});

/** A file with neither token_embd.weight nor output.weight (the tie cannot be read from it): llama's blocks only. */
const headless: CellCase = { ...tied, tensors: tied.tensors.filter(([name]) => name !== 'token_embd.weight') };

describe('a GGUF holding neither token_embd.weight nor output.weight', () => {
  it('merges a LoRA on its other modules with no tie note or refusal (float64 truth)', async () => {
    const adapter = cellPeftAdapter(headless, [headless.targets[1]]);
    const prepared = await prepare(headless, adapter.files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes).toEqual([]);
    await prepared.close();
    const base = cellBaseGguf(headless, []);
    const { bytes } = await mergeFileInMemory({
      backend: cpu, base: { 'Llama-3.2-1B-BF16.gguf': base.bytes }, adapters: [{ files: adapter.files, name: 'peft', weight: 1 }], outDtype: 'f32', dtypeMergedOnly: true,
    });
    expectCellsMerged(bytes, base, adapter.factors, tied.rank, tied.alpha / tied.rank);
  });

  it('an embed_tokens or lm_head LoRA finds no tensor there; it is not taken for a tied head', async () => {
    const lmHead = { module: 'lm_head', out: V, in: H, lands: whole('output.weight') };
    const prepared = await prepare(headless, cellPeftAdapter(headless, [headless.targets[0], lmHead]).files);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'peft: module "model.embed_tokens": no matching tensor in the base model',
      'peft: module "lm_head": no matching tensor in the base model',
    ]);
    await prepared.close();
  });

  it('under ensure_weight_tying, a layer the config admits only as tied is refused in one line: the file cannot tell the tie', async () => {
    const config = { ensure_weight_tying: true };
    const { factors } = cellPeftAdapter(tied, tied.targets, config);
    const { files } = cellPeftAdapter(headless, [headless.targets[1]], { ...config, target_modules: ['embed_tokens', 'v_proj'] }, headMirror(factors[0], tied.rank));
    await expect(prepare(headless, files)).rejects.toThrow(
      'peft/adapter_config.json: module "lm_head" is in peft/adapter_model.safetensors only as a layer tied to the embedding under ensure_weight_tying (not targeted by target_modules ["embed_tokens","v_proj"] otherwise), but the base GGUF base/Llama-3.2-1B-BF16.gguf stores neither token_embd.weight nor output.weight, so whether the model ties them cannot be told',
    );
  });
});

describe('a split GGUF whose token_embd.weight is in one part and no part holds output.weight', () => {
  /** gguf-split's parts of the tied file: the model's metadata in the first only, token_embd there, the blocks in the second. */
  function splitTied(bytes: Uint8Array): Record<string, Uint8Array> {
    const file = readGguf(bytes);
    const split = (no: number): [string, MetaValue][] => [
      ['split.no', { type: 'u16', value: no }], ['split.count', { type: 'u16', value: 2 }], ['split.tensors.count', { type: 'i32', value: file.tensors.length }],
    ];
    // cellBaseGguf's keys, which gguf-split keeps in the first part.
    const metadata: [string, MetaValue][] = [
      ['general.architecture', { type: 'string', value: 'llama' }], ['general.name', { type: 'string', value: 'llama tiny' }],
      ...tied.metadata, ['general.file_type', { type: 'u32', value: 32 }],
    ];
    const tensors = file.tensors.map((t) => ({ name: t.name, type: t.typeId, ne: t.ne, data: t.data }));
    return {
      'Llama-3.2-1B-BF16-00001-of-00002.gguf': buildGguf({ metadata: [...metadata, ...split(0)], tensors: tensors.filter((t) => t.name === 'token_embd.weight') }),
      'Llama-3.2-1B-BF16-00002-of-00002.gguf': buildGguf({ metadata: split(1), tensors: tensors.filter((t) => t.name !== 'token_embd.weight') }),
    };
  }
  const prepareSplit = (adapter: Record<string, Uint8Array | string>) =>
    prepareMerge(memoryInputFileSet(splitTied(cellBaseGguf(tied, []).bytes), 'base'), [{ files: memoryInputFileSet(adapter, 'peft') }]);

  it('is tied across its parts: an embed_tokens LoRA is refused as on the single file', async () => {
    await expect(prepareSplit(cellPeftAdapter(tied).files)).rejects.toThrow(/^peft: a LoRA on model\.embed_tokens lands on token_embd\.weight, which this GGUF also uses as its output head/);
  });

  it('under ensure_weight_tying merges the embedding LoRA once into the first part\'s token_embd (float64 truth)', async () => {
    const adapter = cellPeftAdapter(tied, tied.targets, { ensure_weight_tying: true });
    const prepared = await prepareSplit(adapter.files);
    try {
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.notes).toEqual(['the output head stays tied to token_embd.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both']);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: cpu, outDtype: 'f32', dtypeMergedOnly: true });
      const parts = await Promise.all(output.files().map(async (f) => readGguf(new Uint8Array(await f.blob.arrayBuffer()))));
      expect(parts.map((p) => p.tensors.map((t) => t.name))).toEqual([['token_embd.weight'], ['blk.0.attn_v.weight', 'blk.0.attn_norm.weight', 'output_norm.weight']]);
      // The parts' tensors as one file, for the cell-by-cell check against the single file's truth.
      const whole = buildGguf({ tensors: parts.flatMap((p) => p.tensors.map((t) => ({ name: t.name, type: t.typeId, ne: t.ne, data: t.data }))) });
      expectCellsMerged(whole, cellBaseGguf(tied, []), adapter.factors, tied.rank, tied.alpha / tied.rank);
    } finally {
      await prepared.close();
    }
  });
});
