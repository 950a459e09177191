/**
 * Python's json.dumps writes a float that is NaN or infinite as the bare literal NaN, Infinity or
 * -Infinity, and json.loads (PEFT, transformers) reads it back: such a config is JSON as they read
 * it. A non-finite value where it does not matter (lora_dropout, which PEFT compares with 0 and so
 * leaves out) is accepted; one where it does (lora_alpha, r) is refused naming the field and value.
 */
import { describe, expect, it } from 'vitest';
import { parseBoundedJson } from '../src/formats/bounded-json.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { mergeIntoFolder } from './helpers/merged-folder.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { randomTensor } from './helpers/hf-folder.js';
import { planProblems, planRefusal, type Files } from './helpers/plan-problems.js';

const rand = seededRandom(4242);
const Q = 'model.layers.0.self_attn.q_proj';
const llama = (): Files => ({ 'model.safetensors': buildSafetensors([randomTensor(`${Q}.weight`, [8, 8], 'F32', rand)]) });
/** A PEFT folder whose adapter_config.json is `config` as written (Python's json.dumps output). */
const adapter = (config: string): Files => ({
  'adapter_config.json': config,
  'adapter_model.safetensors': buildSafetensors([
    randomTensor(`base_model.model.${Q}.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`base_model.model.${Q}.lora_B.weight`, [8, 2], 'F32', rand),
  ]),
});

describe('JSON configs with Python\'s NaN / Infinity literals', () => {
  it('reads a NaN beside a string of 100000 escaped NULs, which it tells apart from the NaN, without a scan per NUL', () => {
    const nuls = '\\u0000'.repeat(100_000);
    const v = parseBoundedJson(`{"a": NaN, "s": "NaN${nuls}"}`, 'c.json') as Record<string, unknown>;
    expect(v.a).toBeNaN();
    expect(v.s).toBe(`NaN${'\u0000'.repeat(100_000)}`);
  });

  it('reads the literals outside strings as json.loads does, and leaves strings alone', () => {
    const v = parseBoundedJson('{"a": NaN, "b": -Infinity, "c": [Infinity, 1], "s": "NaN \\" Infinity", "z": "NaN\\u0000"}', 'c.json') as Record<string, unknown>;
    expect(v.a).toBeNaN();
    expect(v.b).toBe(-Infinity);
    expect(v.c).toEqual([Infinity, 1]);
    expect(v.s).toBe('NaN " Infinity');
    expect(v.z).toBe('NaN\u0000');
  });

  it('refuses what json.loads refuses: -NaN, nan, NaNx', () => {
    for (const text of ['{"a": -NaN}', '{"a": nan}', '{"a": NaNx}']) expect(() => parseBoundedJson(text, 'c.json')).toThrow(/c\.json: not valid JSON/);
  });

  it('"lora_dropout": NaN merges (PEFT leaves the dropout out, as NaN > 0 is false)', async () => {
    const config = '{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "lora_dropout": NaN, "target_modules": ["q_proj"]}';
    expect(await planProblems(llama(), { adapter: adapter(config) })).toEqual([]);
  });

  it('"lora_alpha": Infinity is refused naming lora_alpha and the value', async () => {
    const config = '{"peft_type": "LORA", "r": 2, "lora_alpha": Infinity, "lora_dropout": 0.0, "target_modules": ["q_proj"]}';
    expect(await planRefusal(llama(), { adapter: adapter(config) })).toMatch(/adapter_config\.json: "lora_alpha" must be a (finite )?number, got Infinity/);
  });

  it('a base config.json is written back with its numbers as it wrote them: NaN and Infinity as json.dumps writes them, not null; 8.0 not 8; 2^63 - 1 exactly', async () => {
    // Llama 3.1's rope_scaling as a user's script left it, one factor infinite; JSON.stringify wrote
    // null for that, which transformers reads as another value (None), and 8.0 as 8, which Python
    // reads as an int (transformers warns that the llama3 factor must be a float).
    const configText = '{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "torch_dtype": "float32", "rope_theta": 500000.0, ' +
      '"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": Infinity}, "initializer_range": NaN, "attention_bias": false, ' +
      '"logit_floor": -Infinity, "rms_norm_eps": 1e-05, "max_position_embeddings": 9223372036854775807, "eos_token_id": [128001, 128008, 128009]}';
    const prepared = await prepareMerge(memoryInputFileSet({ ...llama(), 'config.json': configText }, 'Llama-3.1-tiny'), [
      { files: memoryInputFileSet(adapter('{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}'), 'adapter'), weight: 1 },
    ]);
    const merged = await mergeIntoFolder(prepared, await createNodeBackend('cpu'));
    const text = merged.text('config.json');
    expect(text).toMatch(/\n {4}"high_freq_factor": Infinity\n {2}\},\n/);
    expect(text).toMatch(/\n {2}"initializer_range": NaN,\n/);
    expect(text).toMatch(/\n {2}"logit_floor": -Infinity,\n/);
    expect(text).not.toMatch(/null/);
    for (const kept of ['"rope_theta": 500000.0,', '"factor": 8.0,', '"low_freq_factor": 1.0,', '"rms_norm_eps": 1e-05,', '"max_position_embeddings": 9223372036854775807,', '128008,']) {
      expect(text).toContain(kept);
    }
    // Read back as json.loads reads it: the same fields, the dtype the merge wrote added.
    const back = parseBoundedJson(text, 'config.json') as Record<string, any>;
    expect(back.rope_scaling).toEqual({ rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: Infinity });
    expect(back.initializer_range).toBeNaN();
    expect(back.logit_floor).toBe(-Infinity);
    expect(back.attention_bias).toBe(false);
  });
});

