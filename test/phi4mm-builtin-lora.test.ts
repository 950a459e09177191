/**
 * Phi-4-multimodal (`Phi4MMForCausalLM`, remote code modeling_phi4mm.py): its __init__ wraps the
 * language model with get_peft_model for the built-in `vision` and `speech` LoRAs, so the checkpoint
 * stores each wrapped projection as `<module>.base_layer.weight` beside `lora_A.vision.weight`,
 * `lora_B.vision.weight`, `lora_A.speech.weight`, `lora_B.speech.weight`. A PEFT adapter trained on
 * it names the module (`…self_attn.qkv_proj`); PEFT's merge adds its ΔW to the base layer's weight.
 * Float64 truth on base_layer.weight, the built-in LoRA tensors byte for byte unchanged; a module
 * naming a built-in LoRA layer is refused in one line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne, randomTensor } from './helpers/hf-folder.js';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMergedFile, type TruthTerm } from './helpers/merge-truth.js';

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu?.dispose());

/** Phi-4-multimodal's language model shrunk: hidden 3072 → 32, 24 heads of 128 → 4 of 8, 8 KV heads → 2, vocabulary 200064 → 48. */
const H = 32, HEAD = 8, KV = 2, FF = 48, V = 48, BUILT_IN_R = 4;
const QKV = H + 2 * KV * HEAD;
const PROJECTIONS: [string, number, number][] = [
  ['self_attn.qkv_proj', QKV, H], ['self_attn.o_proj', H, H], ['mlp.gate_up_proj', 2 * FF, H], ['mlp.down_proj', H, FF],
];
const CONFIG = {
  architectures: ['Phi4MMForCausalLM'], model_type: 'phi4mm', auto_map: { AutoModelForCausalLM: 'modeling_phi4mm.Phi4MMForCausalLM' },
  hidden_size: H, intermediate_size: FF, num_attention_heads: 4, num_key_value_heads: KV, num_hidden_layers: 1, vocab_size: V, tie_word_embeddings: true,
  // As in microsoft/Phi-4-multimodal-instruct's config.json (r and alpha shrunk).
  vision_lora: { dp: 0.0, layer: 'layers.*((self_attn\\.(qkv|o)_proj)|(mlp\\.(gate_up|down)_proj))', lora_alpha: 8, r: BUILT_IN_R },
  speech_lora: { dp: 0.01, layer: '((layers.*self_attn\\.(qkv|o)_proj)|(layers.*mlp\\.(gate_up|down)_proj))', lora_alpha: 10, r: BUILT_IN_R },
};

function phi4mmCheckpoint(): FixtureTensor[] {
  const rand = seededRandom(41);
  const tensors = [randomTensor('model.embed_tokens.weight', [V, H], 'BF16', rand)];
  for (const [name, out, inn] of PROJECTIONS) {
    const m = `model.layers.0.${name}`;
    tensors.push(randomTensor(`${m}.base_layer.weight`, [out, inn], 'BF16', rand));
    for (const adapter of ['speech', 'vision']) {
      tensors.push(randomTensor(`${m}.lora_A.${adapter}.weight`, [BUILT_IN_R, inn], 'BF16', rand, 0.1));
      tensors.push(randomTensor(`${m}.lora_B.${adapter}.weight`, [out, BUILT_IN_R], 'BF16', rand, 0.1));
    }
  }
  tensors.push(randomTensor('model.layers.0.input_layernorm.weight', [H], 'BF16', rand), randomTensor('model.layers.0.post_attention_layernorm.weight', [H], 'BF16', rand));
  tensors.push(randomTensor('model.norm.weight', [H], 'BF16', rand));
  return tensors;
}

/** A PEFT LoRA on the model (PeftModel wrapping Phi4MMForCausalLM): keys under base_model.model.model.layers. */
function userAdapter(targets: [string, number, number][], r: number, alpha: number) {
  const rand = seededRandom(7);
  const tensors = targets.flatMap(([name, out, inn]) => [
    randomTensor(`base_model.model.model.layers.0.${name}.lora_A.weight`, [r, inn], 'F32', rand, 0.2),
    randomTensor(`base_model.model.model.layers.0.${name}.lora_B.weight`, [out, r], 'F32', rand, 0.2),
  ]);
  const config = { r, lora_alpha: alpha, target_modules: targets.map(([name]) => name.split('.').pop()), task_type: 'CAUSAL_LM', base_model_name_or_path: 'microsoft/Phi-4-multimodal-instruct' };
  return { files: peftFolder(config, tensors), tensors: decoded(tensors) };
}

describe('a PEFT LoRA on Phi-4-multimodal, whose checkpoint carries its own LoRA layers', () => {
  it('lands on each module\'s base_layer.weight as float64 truth says, the built-in speech and vision LoRAs copied unchanged', async () => {
    const checkpoint = phi4mmCheckpoint();
    const targets = PROJECTIONS.filter(([name]) => name !== 'self_attn.o_proj');
    const adapter = userAdapter(targets, 2, 6);
    const prepared = await prepareOne(hfModelFolder(checkpoint, CONFIG), adapter.files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(targets.map(([name]) => `model.layers.0.${name}.base_layer.weight`).sort());
    const merged = await mergeIntoFolder(prepared, cpu);
    const terms: TruthTerm[] = targets.map(([name]) => ({
      baseKey: `model.layers.0.${name}.base_layer.weight`, scale: 6 / 2,
      a: adapter.tensors.get(`base_model.model.model.layers.0.${name}.lora_A.weight`)!,
      b: adapter.tensors.get(`base_model.model.model.layers.0.${name}.lora_B.weight`)!,
    }));
    // Every other tensor, lora_A.speech … lora_B.vision among them, comes back byte for byte.
    expectMergedFile(decoded(checkpoint), merged.tensors, terms);
  });

  it('refuses in one line a module that names a built-in LoRA layer, rather than merge into it', async () => {
    const rand = seededRandom(3);
    const files = peftFolder({ r: 2, lora_alpha: 2, target_modules: ['speech'] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.speech.lora_A.weight', [2, H], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.speech.lora_B.weight', [BUILT_IN_R, 2], 'F32', rand),
    ]);
    const prepared = await prepareOne(hfModelFolder(phi4mmCheckpoint(), CONFIG), files);
    await prepared.close();
    expect(prepared.plan.updates).toEqual([]);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "model.layers.0.self_attn.qkv_proj.lora_A.speech": names lora_A.speech of model.layers.0.self_attn.qkv_proj, a LoRA layer the base model carries itself (its checkpoint stores model.layers.0.self_attn.qkv_proj.base_layer.weight beside its own LoRA weights): those are kept as they are, not merged into; target the layer model.layers.0.self_attn.qkv_proj to change its base weight',
    ]);
  });
});
