/**
 * An adapter with tens of thousands of modules: a PEFT LoRA on every expert of Qwen3-235B-A22B
 * (94 layers × 128 experts × gate/up/down = 36,096 modules, as PEFT saves per-expert targets). The
 * shapes are tiny; the names and their number are the real ones. Work that grows with the square
 * of the module count shows here as seconds to minutes before anything is merged.
 */
import { describe, expect, it } from 'vitest';
import { describePlan } from '../src/cli/plan-report.js';
import { openAdapter } from '../src/formats/adapter.js';
import { scaleFacts } from '../src/formats/scale-facts.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { prepareMerge } from '../src/pipeline/prepare-merge.js';
import { buildSafetensors, type FixtureTensor } from './helpers/fixtures.js';

const layers = 94, experts = 128, hidden = 16, inter = 8, r = 2, alpha = 4;
const projections: [string, number, number][] = [['gate_proj', inter, hidden], ['up_proj', inter, hidden], ['down_proj', hidden, inter]];

function moeFiles() {
  const zeros = (n: number) => new Uint8Array(2 * n); // BF16 zeros: the values do not matter here
  const base: FixtureTensor[] = [], lora: FixtureTensor[] = [];
  for (let l = 0; l < layers; l++) {
    for (let e = 0; e < experts; e++) {
      for (const [p, out, inp] of projections) {
        const m = `model.layers.${l}.mlp.experts.${e}.${p}`;
        base.push({ name: `${m}.weight`, dtype: 'BF16', shape: [out, inp], data: zeros(out * inp) });
        lora.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'BF16', shape: [r, inp], data: zeros(r * inp) });
        lora.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'BF16', shape: [out, r], data: zeros(out * r) });
      }
    }
  }
  const config = {
    architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: hidden, moe_intermediate_size: inter,
    num_experts: experts, num_experts_per_tok: 8, num_hidden_layers: layers, num_attention_heads: 2, num_key_value_heads: 2, head_dim: 8,
  };
  const adapterConfig = {
    peft_type: 'LORA', r, lora_alpha: alpha, target_modules: ['gate_proj', 'up_proj', 'down_proj'],
    base_model_name_or_path: 'Qwen/Qwen3-235B-A22B', task_type: 'CAUSAL_LM',
  };
  return {
    base: memoryInputFileSet({ 'model.safetensors': buildSafetensors(base, { format: 'pt' }), 'config.json': JSON.stringify(config) }, 'Qwen3-235B-A22B'),
    adapter: memoryInputFileSet({ 'adapter_model.safetensors': buildSafetensors(lora), 'adapter_config.json': JSON.stringify(adapterConfig) }, 'experts-lora'),
  };
}

describe('an adapter with 36,096 modules (every expert of Qwen3-235B-A22B)', () => {
  const files = moeFiles();

  it("its α and scale in words take milliseconds, not a copy of every earlier module's scale per module", async () => {
    // scaleFacts copied the list of scales under a rule for each module it added: 36,096²/2 copies,
    // 15 s of a 20 s dry run. Now 0.1 s when measured (a 2-core machine, other tests running): the
    // bound is 50 times that, for a loaded machine, and a third of the quadratic copy's time.
    const adapter = await openAdapter(files.adapter);
    expect(adapter.modules).toHaveLength(layers * experts * 3);
    const started = performance.now();
    const facts = scaleFacts(adapter.modules);
    const took = performance.now() - started;
    expect(facts).toEqual([`α = ${alpha}`, `α/r = ${alpha / r}`]);
    expect(took).toBeLessThan(5000);
  });

  it("the whole plan, as the CLI prints it, names every module once, within the test's timeout", async () => {
    const prepared = await prepareMerge(files.base, [{ files: files.adapter, weight: 1 }]);
    const text = describePlan(prepared, false);
    const n = layers * experts * 3;
    const lines = text.split('\n');
    expect(lines[1]).toBe(`adapter 1: experts-lora (peft, ${n} modules, weight 1, α = ${alpha}, α/r = ${alpha / r})`);
    expect(lines[2]).toMatch(new RegExp(`^plan: ${n} tensors change, ${n} module updates, `));
    // About 2 s of CPU alone; quadratic work shows as the test's timeout, set wide for a full suite
    // on two cores (speed itself is the bench's to show).
  }, 120_000);
});
