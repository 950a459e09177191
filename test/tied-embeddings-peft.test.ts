/**
 * Tied input and output embeddings against PEFT's rules (tuners_utils.py _check_tied_modules,
 * lora/model.py _add_targets_to_tie / _add_modules_to_save_to_tie, other.py
 * _get_module_names_tied_with_embedding) and transformers' (config class defaults of
 * `tie_word_embeddings`, `_tied_weights_keys`, save_pretrained leaving tied copies out). Each base
 * is saved as transformers saves a tied model: the embedding only, no `lm_head.weight`. Values are
 * checked against float64 math written out here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, mergeModel, type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { errorLines, runCli } from './helpers/cli.js';
import { seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder, type MergedFolder, prepareOne as prepare } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';

const rand = seededRandom(4511);
let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu.dispose());


async function merge(prepared: PreparedMerge): Promise<MergedFolder> {
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend: cpu });
  } finally {
    await prepared.close();
  }
  const files = new Map<string, Uint8Array>();
  for (const f of output.files()) files.set(f.path, new Uint8Array(await f.blob.arrayBuffer()));
  return readMergedFolder(files);
}

function transpose(values: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

function plus(w: DecodedTensor, delta: Float64Array): Float64Array {
  return w.values.map((x, i) => x + delta[i]);
}

const V = 48, H = 8, R = 2;

/** A decoder LM saved tied: embedding, one projection, final norm; no lm_head.weight. */
function tiedBase(): FixtureTensor[] {
  return [
    randomTensor('model.embed_tokens.weight', [V, H], 'F32', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [H, H], 'F32', rand),
    randomTensor('model.norm.weight', [H], 'F32', rand),
  ];
}

/** PEFT's saved embedding LoRA and, under ensure_weight_tying, the head's tied copy (lora_A = Bᵀ, lora_B = Aᵀ). */
function embeddingLora(withHeadMirror: boolean): FixtureTensor[] {
  const A = randomTensor('base_model.model.model.embed_tokens.lora_embedding_A', [R, V], 'F32', rand, 0.5);
  const B = randomTensor('base_model.model.model.embed_tokens.lora_embedding_B', [H, R], 'F32', rand, 0.5);
  if (!withHeadMirror) return [A, B];
  const d = decoded([A, B]);
  return [
    A, B,
    { name: 'base_model.model.lm_head.lora_A.weight', dtype: 'F32', shape: [R, H], data: transpose(d.get(B.name)!.values, H, R) },
    { name: 'base_model.model.lm_head.lora_B.weight', dtype: 'F32', shape: [V, R], data: transpose(d.get(A.name)!.values, R, V) },
  ];
}

/** ΔW of an embedding LoRA, (B·A)ᵀ: rows are tokens (scale 1: lora_alpha = r). */
function embeddingDelta(adapter: FixtureTensor[]): Float64Array {
  const d = decoded(adapter);
  return transpose(product(d.get('base_model.model.model.embed_tokens.lora_embedding_B')!, d.get('base_model.model.model.embed_tokens.lora_embedding_A')!), H, V);
}

const GEMMA2 = { architectures: ['Gemma2ForCausalLM'], model_type: 'gemma2', torch_dtype: 'float32', vocab_size: V, hidden_size: H };
const LLAMA = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float32', vocab_size: V, hidden_size: H };
const QWEN2 = { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', torch_dtype: 'float32', vocab_size: V, hidden_size: H };

describe('a config.json without tie_word_embeddings: the config class default', () => {
  it('Gemma 2 (Gemma2Config defaults to true): ensure_weight_tying ties the head, the embedding LoRA goes into the one tensor once', async () => {
    const base = tiedBase();
    const adapter = embeddingLora(true);
    const prepared = await prepare(hfModelFolder(base, GEMMA2), peftFolder({ r: R, lora_alpha: R, ensure_weight_tying: true, target_modules: ['embed_tokens'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes).toEqual([
      "the output head stays tied to model.embed_tokens.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both, once (PEFT's merge_and_unload adds the head's tied LoRA to the shared weight a second time)",
    ]);
    const merged = await merge(prepared);
    expect([...merged.tensors.keys()].sort()).toEqual(base.map((t) => t.name).sort());
    expectValues('embed_tokens', merged.tensors.get('model.embed_tokens.weight')!, plus(decoded(base).get('model.embed_tokens.weight')!, embeddingDelta(adapter)));
    expect('tie_word_embeddings' in merged.json('config.json')).toBe(false);
  });

  for (const [name, config] of [['Llama', LLAMA], ['Qwen2', QWEN2]] as const) {
    it(`${name} (its config class defaults to false): the head's tied LoRA is refused, as PEFT finds no tied layer`, async () => {
      const prepared = prepare(hfModelFolder(tiedBase(), config), peftFolder({ r: R, lora_alpha: R, ensure_weight_tying: true, target_modules: ['embed_tokens'] }, embeddingLora(true)));
      await expect(prepared).rejects.toThrow(
        `adapter1/adapter_config.json: module "lm_head" is in adapter1/adapter_model.safetensors only as a layer tied to the embedding under ensure_weight_tying (not targeted by target_modules ["embed_tokens"] otherwise), but the base's config.json has no tie_word_embeddings and model_type "${config.model_type}" defaults to false, so PEFT finds no tied layer and puts no adapter on it (it would leave these tensors unused)`,
      );
    });
  }

  it('a model type whose default is not known, or a multimodal config, is refused as before', async () => {
    const unknown = { architectures: ['InternLM3ForCausalLM'], model_type: 'internlm3', torch_dtype: 'float32', vocab_size: V };
    const vlm = { architectures: ['Gemma3ForConditionalGeneration'], model_type: 'gemma3', text_config: { model_type: 'gemma3_text', vocab_size: V } };
    for (const config of [unknown, vlm]) {
      await expect(prepare(hfModelFolder(tiedBase(), config), peftFolder({ r: R, lora_alpha: R, ensure_weight_tying: true, target_modules: ['embed_tokens'] }, embeddingLora(true))))
        .rejects.toThrow("but the base's config.json has no tie_word_embeddings and its model_type has no known default (the model class's), so whether PEFT tied it cannot be told");
    }
  });

  it('a stated tie_word_embeddings wins over the class default (Llama saying true)', async () => {
    const prepared = await prepare(hfModelFolder(tiedBase(), { ...LLAMA, tie_word_embeddings: true }), peftFolder({ r: R, lora_alpha: R, ensure_weight_tying: true, target_modules: ['embed_tokens'] }, embeddingLora(true)));
    expect(prepared.plan.problems).toEqual([]);
    await prepared.close();
  });
});

describe('LoRA on the head of a tied model', () => {
  it('ensure_weight_tying with target_modules ["lm_head"] (Qwen2, tied): PEFT moves the LoRA to the embedding; it goes in once', async () => {
    const base = tiedBase();
    const adapter = embeddingLora(true);
    const prepared = await prepare(hfModelFolder(base, { ...QWEN2, tie_word_embeddings: true }), peftFolder({ r: R, lora_alpha: R, ensure_weight_tying: true, target_modules: ['lm_head'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared);
    expect([...merged.tensors.keys()].sort()).toEqual(base.map((t) => t.name).sort());
    expectValues('embed_tokens', merged.tensors.get('model.embed_tokens.weight')!, plus(decoded(base).get('model.embed_tokens.weight')!, embeddingDelta(adapter)));
    expect(merged.json('config.json').tie_word_embeddings).toBe(true);
  });

  it('without ensure_weight_tying, LoRAs on both (Gemma 2, tied by its class default): each side gets its own update, the head is written and untied', async () => {
    // merge_and_unload would add both updates to the one tensor and keep the tie; training saw
    // the embedding's update on the inputs only and the head's on the logits only.
    const base = tiedBase();
    const head = [
      randomTensor('base_model.model.lm_head.lora_A.weight', [R, H], 'F32', rand, 0.5),
      randomTensor('base_model.model.lm_head.lora_B.weight', [V, R], 'F32', rand, 0.5),
    ];
    const embeddingOnly = embeddingLora(false);
    const prepared = await prepare(hfModelFolder(base, GEMMA2), peftFolder({ r: R, lora_alpha: R, target_modules: ['embed_tokens', 'lm_head'] }, [...embeddingOnly, ...head]));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes[0]).toMatch(/^lm_head\.weight is written as its own tensor and tie_word_embeddings set to false: /);
    const merged = await merge(prepared);
    const shared = decoded(base).get('model.embed_tokens.weight')!;
    const h = decoded(head);
    expectValues('embed_tokens', merged.tensors.get('model.embed_tokens.weight')!, plus(shared, embeddingDelta(embeddingOnly)));
    expectValues('lm_head', merged.tensors.get('lm_head.weight')!, plus(shared, product(h.get(head[1].name)!, h.get(head[0].name)!)));
    expect(merged.json('config.json').tie_word_embeddings).toBe(false);
  });
});

describe('ensure_weight_tying with the head in modules_to_save (Qwen2, tied)', () => {
  // PEFT's _add_modules_to_save_to_tie replaces lm_head with the embedding in modules_to_save (the
  // saved config lists "model.embed_tokens"), and the head's copy is a Linear on the embedding
  // copy's parameter: the file holds that one tensor under both names.
  const config = { ...QWEN2, tie_word_embeddings: true };
  const adapterConfig = { r: R, lora_alpha: R, ensure_weight_tying: true, target_modules: ['q_proj'], modules_to_save: ['model.embed_tokens'] };
  const q = [
    randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [R, H], 'F32', rand, 0.5),
    randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [H, R], 'F32', rand, 0.5),
  ];

  it('the saved copy replaces the one tied tensor; no lm_head.weight is written and the tie stays', async () => {
    const base = tiedBase();
    const trained = randomTensor('base_model.model.model.embed_tokens.weight', [V, H], 'F32', rand);
    const adapter = [...q, trained, { ...trained, name: 'base_model.model.lm_head.weight' }];
    const prepared = await prepare(hfModelFolder(base, config), peftFolder(adapterConfig, adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes).toEqual(['the output head stays tied to model.embed_tokens.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both']);
    const merged = await merge(prepared);
    expect([...merged.tensors.keys()].sort()).toEqual(base.map((t) => t.name).sort());
    expect([...merged.tensors.get('model.embed_tokens.weight')!.values]).toEqual([...decoded([trained]).get(trained.name)!.values]);
    expect(merged.json('config.json').tie_word_embeddings).toBe(true);
  });

  it('where the two saved copies differ, the head\'s is the value: PEFT loads it last into the one parameter', async () => {
    const base = tiedBase();
    const embedding = randomTensor('base_model.model.model.embed_tokens.weight', [V, H], 'F32', rand);
    const head = randomTensor('base_model.model.lm_head.weight', [V, H], 'F32', rand);
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ ...adapterConfig, modules_to_save: ['lm_head'] }, [...q, embedding, head]));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared);
    expect([...merged.tensors.keys()].sort()).toEqual(base.map((t) => t.name).sort());
    expect([...merged.tensors.get('model.embed_tokens.weight')!.values]).toEqual([...decoded([head]).get(head.name)!.values]);
  });
});

describe('T5: shared, encoder.embed_tokens, decoder.embed_tokens and lm_head are one tensor', () => {
  // transformers saves T5ForConditionalGeneration with shared.weight only (the others are its
  // _tied_weights_keys); t5-small's config ties the head too.
  const T5 = { architectures: ['T5ForConditionalGeneration'], model_type: 't5', d_model: H, vocab_size: V, tie_word_embeddings: true, torch_dtype: 'float32' };
  const base = (): FixtureTensor[] => [
    randomTensor('shared.weight', [V, H], 'F32', rand),
    randomTensor('encoder.block.0.layer.0.SelfAttention.q.weight', [H, H], 'F32', rand),
    randomTensor('decoder.block.0.layer.0.SelfAttention.q.weight', [H, H], 'F32', rand),
  ];
  const lora = (path: string, out: number, inF: number) => [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [R, inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${path}.lora_B.weight`, [out, R], 'F32', rand, 0.5),
  ];
  const embedding = (path: string) => [
    randomTensor(`base_model.model.${path}.lora_embedding_A`, [R, V], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${path}.lora_embedding_B`, [H, R], 'F32', rand, 0.5),
  ];

  it('a LoRA on lm_head, on shared, on encoder/decoder embed_tokens, or a saved shared is refused, naming the module and the tie', async () => {
    const cases: [object, FixtureTensor[], string][] = [
      [{ target_modules: ['lm_head'] }, lora('lm_head', V, H), 'adapter1: module "lm_head" lands on lm_head.weight, which the model ties to shared.weight, encoder.embed_tokens.weight, decoder.embed_tokens.weight (one shared tensor), while training applied it to that module alone; a tied tensor cannot hold that, so it is not merged'],
      [{ target_modules: ['shared'] }, embedding('shared'), 'adapter1: module "shared" lands on shared.weight, which the model ties to encoder.embed_tokens.weight, decoder.embed_tokens.weight, lm_head.weight'],
      [{ target_modules: ['embed_tokens'] }, [...embedding('encoder.embed_tokens'), ...embedding('decoder.embed_tokens')], 'adapter1: module "encoder.embed_tokens" lands on encoder.embed_tokens.weight, which the model ties to shared.weight, decoder.embed_tokens.weight, lm_head.weight'],
      [{ target_modules: ['q'], modules_to_save: ['shared'] }, [...lora('encoder.block.0.layer.0.SelfAttention.q', H, H), randomTensor('base_model.model.shared.weight', [V, H], 'F32', rand)], 'adapter1: saved tensor "base_model.model.shared.weight" lands on shared.weight'],
    ];
    for (const [config, tensors, message] of cases) {
      await expect(prepare(hfModelFolder(base(), T5), peftFolder({ r: R, lora_alpha: R, ...config }, tensors))).rejects.toThrow(message);
    }
  });

  it('BART keeps the same tie under model.: a LoRA on its embed_tokens is refused too', async () => {
    const bart = { architectures: ['BartForConditionalGeneration'], model_type: 'bart', d_model: H, vocab_size: V, torch_dtype: 'float32' };
    const b = [
      randomTensor('model.shared.weight', [V, H], 'F32', rand),
      randomTensor('model.encoder.layers.0.self_attn.q_proj.weight', [H, H], 'F32', rand),
      randomTensor('model.decoder.layers.0.self_attn.q_proj.weight', [H, H], 'F32', rand),
    ];
    await expect(prepare(hfModelFolder(b, bart), peftFolder({ r: R, lora_alpha: R, target_modules: ['embed_tokens'] }, embedding('model.encoder.embed_tokens'))))
      .rejects.toThrow('adapter1: module "model.encoder.embed_tokens" lands on model.encoder.embed_tokens.weight, which the model ties to model.shared.weight, model.decoder.embed_tokens.weight, lm_head.weight (one shared tensor)');
    const q = lora('model.encoder.layers.0.self_attn.q_proj', H, H);
    const prepared = await prepare(hfModelFolder(b, bart), peftFolder({ r: R, lora_alpha: R, target_modules: ['q_proj'] }, q));
    expect(prepared.plan.problems).toEqual([]);
    await prepared.close();
  });

  it('the command line refuses it in one line and writes nothing', async () => {
    const temp = tempDirs();
    try {
      const baseDir = temp.make(hfModelFolder(base(), T5));
      const adapterDir = temp.make(peftFolder({ r: R, lora_alpha: R, target_modules: ['lm_head'] }, lora('lm_head', V, H)));
      const out = join(temp.make(), 'merged');
      const result = await runCli(['merge', '--base', baseDir, '--adapter', adapterDir, '--out', out, '--backend', 'cpu']);
      expect(result.code).toBe(1);
      expect(errorLines(result.stderr)).toEqual([
        `error: ${adapterDir}: module "lm_head" lands on lm_head.weight, which the model ties to shared.weight, encoder.embed_tokens.weight, decoder.embed_tokens.weight (one shared tensor), while training applied it to that module alone; a tied tensor cannot hold that, so it is not merged`,
      ]);
      expect(existsSync(out)).toBe(false);
    } finally {
      temp.removeAll();
    }
  });

  it('an untied T5 (lm_head stored, tie_word_embeddings false) merges a LoRA on lm_head into lm_head alone', async () => {
    const b = [...base(), randomTensor('lm_head.weight', [V, H], 'F32', rand)];
    const adapter = lora('lm_head', V, H);
    const prepared = await prepare(hfModelFolder(b, { ...T5, tie_word_embeddings: false }), peftFolder({ r: R, lora_alpha: R, target_modules: ['lm_head'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared);
    const a = decoded(adapter);
    expectValues('lm_head', merged.tensors.get('lm_head.weight')!, plus(decoded(b).get('lm_head.weight')!, product(a.get(adapter[1].name)!, a.get(adapter[0].name)!)));
    expect(merged.tensors.get('shared.weight')!.bytes).toEqual(decoded(b).get('shared.weight')!.bytes);
  });

  it('a LoRA on the attention of a tied T5 merges as before', async () => {
    const b = base();
    const adapter = lora('encoder.block.0.layer.0.SelfAttention.q', H, H);
    const prepared = await prepare(hfModelFolder(b, T5), peftFolder({ r: R, lora_alpha: R, target_modules: ['q'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    await prepared.close();
  });
});

describe('multimodal models: language_model.lm_head tied to language_model.model.embed_tokens', () => {
  it('LLaVA (old naming), ensure_weight_tying: the embedding LoRA goes once into the language model\'s embedding; the head stays tied', async () => {
    const base: FixtureTensor[] = [
      randomTensor('language_model.model.embed_tokens.weight', [V, H], 'F32', rand),
      randomTensor('language_model.model.layers.0.self_attn.q_proj.weight', [H, H], 'F32', rand),
      randomTensor('vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', [H, H], 'F32', rand),
    ];
    const config = { architectures: ['LlavaForConditionalGeneration'], model_type: 'llava', torch_dtype: 'float32', tie_word_embeddings: true, text_config: { model_type: 'llama', vocab_size: V } };
    const rename = (t: FixtureTensor): FixtureTensor => ({ ...t, name: t.name.replace('base_model.model.model.', 'base_model.model.language_model.model.').replace('base_model.model.lm_head', 'base_model.model.language_model.lm_head') });
    const adapter = embeddingLora(true).map(rename);
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r: R, lora_alpha: R, ensure_weight_tying: true, target_modules: ['embed_tokens'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes[0]).toMatch(/^the output head stays tied to language_model\.model\.embed_tokens\.weight: .*, once/);
    const merged = await merge(prepared);
    expect([...merged.tensors.keys()].sort()).toEqual(base.map((t) => t.name).sort());
    const d = decoded(adapter);
    const delta = transpose(product(d.get('base_model.model.language_model.model.embed_tokens.lora_embedding_B')!, d.get('base_model.model.language_model.model.embed_tokens.lora_embedding_A')!), H, V);
    expectValues('embed_tokens', merged.tensors.get('language_model.model.embed_tokens.weight')!, plus(decoded(base).get('language_model.model.embed_tokens.weight')!, delta));
  });
});

describe('ensure_weight_tying with the head\'s LoRA alone', () => {
  // PEFT makes the embedding's LoRA and ties the head's to it (lora/model.py _create_and_replace:
  // lora_A = emb_B.t(), lora_B = emb_A.t(), views of one storage), so loading a file that holds only
  // the head's factors fills both: the shared weight gains B·A once and the head stays tied.
  const head = () => [randomTensor('base_model.model.lm_head.lora_A.weight', [R, H], 'F32', rand, 0.5), randomTensor('base_model.model.lm_head.lora_B.weight', [V, R], 'F32', rand, 0.5)];

  it('merges it once into the embedding, the head staying tied (float64 truth)', async () => {
    const base = tiedBase();
    const adapter = head();
    const prepared = await prepare(hfModelFolder(base, GEMMA2), peftFolder({ r: R, lora_alpha: R, ensure_weight_tying: true, target_modules: ['lm_head'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes[0]).toBe('the output head stays tied to model.embed_tokens.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both; adapter1 saved the lm_head LoRA without the embed_tokens LoRA it is tied to, which PEFT fills from it on loading, so it is merged into model.embed_tokens.weight');
    const merged = await merge(prepared);
    expect([...merged.tensors.keys()].sort()).toEqual(base.map((t) => t.name).sort());
    expect('tie_word_embeddings' in merged.json('config.json')).toBe(false); // Gemma 2's default: tied
    const d = decoded(adapter);
    expectValues('embed_tokens', merged.tensors.get('model.embed_tokens.weight')!, plus(decoded(base).get('model.embed_tokens.weight')!, product(d.get(adapter[1].name)!, d.get(adapter[0].name)!)));
  });

  it('refuses it in one line where alpha_pattern names lm_head (the tied pair would scale the shared factors apart)', async () => {
    await expect(prepare(hfModelFolder(tiedBase(), GEMMA2), peftFolder({ r: R, lora_alpha: R, alpha_pattern: { lm_head: 4 * R }, ensure_weight_tying: true, target_modules: ['lm_head'] }, head()))).rejects.toThrow(
      'adapter1: its lm_head LoRA under ensure_weight_tying has no embed_tokens LoRA beside it, and its rank_pattern or alpha_pattern names lm_head or embed_tokens, so the two tied layers may scale the shared factors differently, which the one model.embed_tokens.weight cannot hold; it is not merged',
    );
  });
});

