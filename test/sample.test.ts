/**
 * The built-in sample: deterministic, Llama-shaped, and a PEFT adapter that fits its base. Files are
 * decoded here with a plain reader of the safetensors layout, independent of the library's reader.
 */
import { describe, expect, it } from 'vitest';
import { generateSample, sampleProjections } from '../src/sample/index.js';
import { decodeSafetensors, type DecodedTensor } from './helpers/fixtures.js';

/** Every tensor decoded; the data must end exactly at the end of the file. */
function readSafetensors(bytes: Uint8Array): Map<string, DecodedTensor> {
  const { tensors, dataEnd } = decodeSafetensors(bytes);
  expect(dataEnd).toBe(bytes.byteLength);
  return tensors;
}

const frobenius = (v: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
};

const json = (bytes: Uint8Array): any => JSON.parse(new TextDecoder().decode(bytes));

describe('built-in sample', () => {
  it('is byte-identical for the same seed and different for another', async () => {
    const a = await generateSample({ seed: 7, layers: 1, hidden: 32, intermediate: 88, heads: 4, kvHeads: 2, vocab: 50 });
    const b = await generateSample({ seed: 7, layers: 1, hidden: 32, intermediate: 88, heads: 4, kvHeads: 2, vocab: 50 });
    const c = await generateSample({ seed: 8, layers: 1, hidden: 32, intermediate: 88, heads: 4, kvHeads: 2, vocab: 50 });
    expect(a.base['model.safetensors']).toEqual(b.base['model.safetensors']);
    expect(a.adapter['adapter_model.safetensors']).toEqual(b.adapter['adapter_model.safetensors']);
    expect(a.base['model.safetensors']).not.toEqual(c.base['model.safetensors']);
    expect(a.adapter['adapter_model.safetensors']).not.toEqual(c.adapter['adapter_model.safetensors']);
  });

  it('describes a Llama model whose tensors have the shapes config.json promises', async () => {
    const sample = await generateSample('small');
    const config = json(sample.base['config.json']);
    expect(config.model_type).toBe('llama');
    const tensors = readSafetensors(sample.base['model.safetensors']);
    const hidden = config.hidden_size;
    const kv = (config.num_key_value_heads * hidden) / config.num_attention_heads;
    expect(tensors.get('model.embed_tokens.weight')!.shape).toEqual([config.vocab_size, hidden]);
    expect(tensors.get('lm_head.weight')!.shape).toEqual([config.vocab_size, hidden]);
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `model.layers.${l}`;
      expect(tensors.get(`${p}.self_attn.q_proj.weight`)!.shape).toEqual([hidden, hidden]);
      expect(tensors.get(`${p}.self_attn.k_proj.weight`)!.shape).toEqual([kv, hidden]);
      expect(tensors.get(`${p}.self_attn.v_proj.weight`)!.shape).toEqual([kv, hidden]);
      expect(tensors.get(`${p}.self_attn.o_proj.weight`)!.shape).toEqual([hidden, hidden]);
      expect(tensors.get(`${p}.mlp.gate_proj.weight`)!.shape).toEqual([config.intermediate_size, hidden]);
      expect(tensors.get(`${p}.mlp.up_proj.weight`)!.shape).toEqual([config.intermediate_size, hidden]);
      expect(tensors.get(`${p}.mlp.down_proj.weight`)!.shape).toEqual([hidden, config.intermediate_size]);
      expect(tensors.get(`${p}.input_layernorm.weight`)!.shape).toEqual([hidden]);
    }
    expect(tensors.size).toBe(3 + 9 * config.num_hidden_layers);
    for (const t of tensors.values()) expect(t.dtype).toBe('BF16');
    // Trained-looking values: weights with std near 0.02, norms near 1.
    const q = tensors.get('model.layers.0.self_attn.q_proj.weight')!.values;
    expect(frobenius(q) / Math.sqrt(q.length)).toBeGreaterThan(0.015);
    expect(frobenius(q) / Math.sqrt(q.length)).toBeLessThan(0.025);
    for (const x of tensors.get('model.norm.weight')!.values) expect(Math.abs(x - 1)).toBeLessThanOrEqual(0.1);
  });

  it('has a PEFT adapter on all seven projections whose update is a few percent of each weight', async () => {
    const sample = await generateSample({ seed: 3, dtype: 'F16', layers: 2, hidden: 48, intermediate: 130, heads: 3, kvHeads: 1, vocab: 97 });
    const config = json(sample.adapter['adapter_config.json']);
    expect(config.peft_type).toBe('LORA');
    expect(config.target_modules).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    const scale = config.lora_alpha / config.r;
    const base = readSafetensors(sample.base['model.safetensors']);
    const adapter = readSafetensors(sample.adapter['adapter_model.safetensors']);
    expect(adapter.size).toBe(2 * 7 * 2);
    for (const t of base.values()) expect(t.dtype).toBe('F16');
    for (const name of adapter.keys()) {
      const m = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(name);
      if (!m) {
        expect(name).toMatch(/^base_model\.model\..+\.lora_B\.weight$/);
        continue;
      }
      const a = adapter.get(name)!;
      const b = adapter.get(name.replace('lora_A', 'lora_B'))!;
      const w = base.get(`${m[1]}.weight`)!;
      const [out, inF] = w.shape;
      expect(a.shape).toEqual([config.r, inF]);
      expect(b.shape).toEqual([out, config.r]);
      // ‖s·B·A‖ / ‖W‖ in float64
      const delta = new Float64Array(out * inF);
      for (let o = 0; o < out; o++) {
        for (let k = 0; k < config.r; k++) {
          const bk = scale * b.values[o * config.r + k];
          for (let i = 0; i < inF; i++) delta[o * inF + i] += bk * a.values[k * inF + i];
        }
      }
      const ratio = frobenius(delta) / frobenius(w.values);
      expect(ratio, m[1]).toBeGreaterThan(0.003);
      expect(ratio, m[1]).toBeLessThan(0.1);
    }
  });

  it('lists one projection per targeted module and layer', () => {
    const projections = sampleProjections({ seed: 1, layers: 3, hidden: 64, intermediate: 172, heads: 4, kvHeads: 4, vocab: 10, dtype: 'BF16', rank: 8, alpha: 16, adapterDtype: 'F32' });
    expect(projections).toHaveLength(21);
    expect(projections[20]).toEqual({ module: 'model.layers.2.mlp.down_proj', layer: 2, out: 64, in: 172 });
  });
});
