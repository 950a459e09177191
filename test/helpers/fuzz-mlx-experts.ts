/**
 * The surface fuzzer's `mlx-experts` world (fuzz-surfaces.ts draws it): a Qwen3-MoE layer whose
 * experts are stored either stacked in float, as an unquantized mlx-lm checkpoint holds them
 * (`mlp.switch_mlp.gate_proj.weight` (E, out, in) in F32, F16 or BF16, `format: mlx`), or one tensor
 * per expert, as the Hugging Face checkpoint does (`mlp.experts.K.gate_proj.weight` (out, in)), with
 *   - an mlx-lm LoRASwitchLinear adapter folder (`switch_mlp.<proj>.lora_a` (E', r, in), `lora_b`
 *     (E', out, r), lora_parameters rank and scale), E' the base's count or, hostile, one more or
 *     one fewer (mlx-lm's load_adapters refuses factors of another shape than the layer's: refused);
 *   - a PEFT LoRA trained on the per-expert checkpoint (`mlp.experts.K.<proj>.lora_A.weight`) on
 *     some experts, hostile: an expert past E (no such expert: refused).
 * The truth is mlx-lm's LoRASwitchLinear.fuse and PEFT's merge in float64, written here:
 *   switch  W[e] += w·scale·lora_b[e]·lora_a[e]   for every expert e (scale as the config says it)
 *   PEFT    W[K] += w·(α/r)·B·A                    for the experts K the adapter names
 * where W[e] is expert e's (out, in) slab of the stacked tensor or its own tensor; every other
 * tensor as stored (or rounded once to `--dtype`).
 */
import fc from 'fast-check';
import { seededRandom, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { mlxConfig } from './mlx-lm-folder.js';
import { configScale, configToCompare, convertRest, pastDtype, type Decoded, type ExpectedMerge, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

const L = 'model.layers.0.mlp';
const PROJS = ['gate_proj', 'up_proj', 'down_proj'] as const;
type Proj = (typeof PROJS)[number];

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const invalid = (why: string): Truth => ({ kind: 'invalid', why });
const unknown = (why: string): Truth => ({ kind: 'unknown', why });

/** (out, in) of a projection: gate/up (F, H), down (H, F). */
const dims = (p: Proj, h: number, f: number): [number, number] => (p === 'down_proj' ? [h, f] : [f, h]);

/** b·a of expert e, (out, in), from factors stacked (E, out, r) and (E, r, in), or 2-D (out, r) / (r, in) with e = 0. */
function expertProduct(b: Float64Array, a: Float64Array, e: number, out: number, r: number, inF: number): Float64Array {
  const d = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let s = 0;
    for (let k = 0; k < r; k++) s += b[(e * out + o) * r + k] * a[(e * r + k) * inF + i];
    d[o * inF + i] = s;
  }
  return d;
}

export const mlxExpertsWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    base: fc.constantFrom<'stacked' | 'per-expert'>('stacked', 'per-expert'),
    adapter: fc.constantFrom<'switch' | 'peft'>('switch', 'switch', 'peft'),
    wDtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16'), fDtype: fc.constantFrom<FixtureDType>('F32', 'BF16'),
    experts: fc.integer({ min: 2, max: 4 }), h: fc.integer({ min: 3, max: 8 }), f: fc.integer({ min: 2, max: 6 }), r: fc.integer({ min: 1, max: 2 }),
    scale: fc.constantFrom(20, 2, 0.5, -1, 0), alpha: fc.constantFrom(1, 2, 8),
    projs: fc.subarray([...PROJS], { minLength: 1 }), seed: fc.integer(),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant<null>(null) }, { weight: 1, arbitrary: fc.constantFrom<'one more' | 'one fewer'>('one more', 'one fewer') }),
  })
  .map(({ base, adapter, wDtype, fDtype, experts, h, f, r, scale, alpha, projs, seed, hostile }) => {
    const rand = seededRandom(seed);
    const vals = (n: number, s = 0.5) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
    // The factors' expert count; a PEFT adapter's hostile part is an expert past E instead.
    const counted = adapter === 'switch' && hostile ? experts + (hostile === 'one more' ? 1 : -1) : experts;
    const tensors: FixtureTensor[] = [
      { name: `${L}.gate.weight`, dtype: wDtype, shape: [experts, h], data: vals(experts * h) },
      { name: 'model.layers.0.input_layernorm.weight', dtype: wDtype, shape: [h], data: vals(h) },
    ];
    for (const p of PROJS) {
      const [o, i] = dims(p, h, f);
      if (base === 'stacked') tensors.push({ name: `${L}.switch_mlp.${p}.weight`, dtype: wDtype, shape: [experts, o, i], data: vals(experts * o * i) });
      else for (let e = 0; e < experts; e++) tensors.push({ name: `${L}.experts.${e}.${p}.weight`, dtype: wDtype, shape: [o, i], data: vals(o * i) });
    }
    const config = {
      architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[wDtype as 'F32'],
      hidden_size: h, moe_intermediate_size: f, num_experts: experts, num_experts_per_tok: 2, decoder_sparse_step: 1, mlp_only_layers: [], norm_topk_prob: true,
      num_hidden_layers: 1, vocab_size: 5, tie_word_embeddings: false,
    };
    const files: Record<string, SpecFile> = {
      'model/config.json': { kind: 'json', value: config },
      'model/model.safetensors': { kind: 'safetensors', tensors, metadata: { format: base === 'stacked' ? 'mlx' : 'pt' } },
    };
    // PEFT: the experts it names (the hostile one past E).
    const peftExperts = [...new Set([0, experts - 1, ...(hostile ? [experts] : [])])];
    if (adapter === 'switch') {
      const factors = projs.flatMap((p): FixtureTensor[] => {
        const [o, i] = dims(p, h, f);
        return [
          { name: `${L}.switch_mlp.${p}.lora_a`, dtype: fDtype, shape: [counted, r, i], data: vals(counted * r * i) },
          { name: `${L}.switch_mlp.${p}.lora_b`, dtype: fDtype, shape: [counted, o, r], data: vals(counted * o * r) },
        ];
      });
      files['adapter/adapter_config.json'] = { kind: 'json', value: JSON.parse(mlxConfig({ model: 'Qwen/Qwen3-30B-A3B', fine_tune_type: 'lora', num_layers: 1, lora_parameters: { rank: r, dropout: 0.0, scale } })) };
      files['adapter/adapters.safetensors'] = { kind: 'safetensors', tensors: factors, metadata: { format: 'mlx' } };
    } else {
      const factors = projs.flatMap((p) => peftExperts.flatMap((e): FixtureTensor[] => {
        const [o, i] = dims(p, h, f);
        const m = `base_model.model.${L}.experts.${e}.${p}`;
        return [{ name: `${m}.lora_A.weight`, dtype: fDtype, shape: [r, i], data: vals(r * i) }, { name: `${m}.lora_B.weight`, dtype: fDtype, shape: [o, r], data: vals(o * r) }];
      }));
      files['adapter/adapter_config.json'] = { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen3-30B-A3B', r, lora_alpha: alpha, use_rslora: false, target_modules: projs, lora_dropout: 0.0, bias: 'none' } };
      files['adapter/adapter_model.safetensors'] = { kind: 'safetensors', tensors: factors };
    }
    const names = tensors.map((t) => t.name);
    return {
      name: `mlx-experts: ${adapter === 'switch' ? 'LoRASwitchLinear' : 'PEFT per-expert LoRA'} on ${base} experts${hostile ? ` (${adapter === 'switch' ? `factors for ${hostile} expert` : 'an expert past E'})` : ''}`,
      files, base: 'model', adapter: 'adapter', out: 'merged', refusalsChecked: true,
      outDtypes: ['bf16', 'f16', 'f32'],
      configReads: ['lora_parameters'],
      truth: (d: Decoded, w: number, outDtype): Truth => {
        const read = configToCompare(d, 'adapter/adapter_config.json', ['model/config.json', 'adapter/adapter_config.json']);
        if (!('config' in read)) return read;
        const cfg = read.config;
        // The expert count the base holds, counted on its tensors (config.json's num_experts is not what mlx-lm compares).
        const merged = new Map<string, ExpectedMerge>();
        const addTo = (p: Proj, e: number, delta: Float64Array, s: number): Truth | undefined => {
          const [o, i] = dims(p, h, f);
          if (e >= experts) return invalid(`${p}: expert ${e} past the base's ${experts}`);
          const key = base === 'stacked' ? `model/${L}.switch_mlp.${p}.weight` : `model/${L}.experts.${e}.${p}.weight`;
          const stored = d.tensors.get(key)!;
          const cur = merged.get(key) ?? { values: stored.values.slice(), magnitude: maxAbs(stored.values) };
          const at = base === 'stacked' ? e * o * i : 0;
          for (let k = 0; k < o * i; k++) cur.values[at + k] += s * delta[k];
          cur.magnitude += Math.abs(s) * maxAbs(delta);
          merged.set(key, cur);
          return undefined;
        };
        if (adapter === 'switch') {
          const lp = cfg.lora_parameters as Record<string, unknown> | undefined;
          if (typeof lp !== 'object' || lp === null || typeof lp.rank !== 'number' || typeof lp.scale !== 'number') return unknown('lora_parameters edited');
          if (lp.rank !== r) return invalid(`lora_parameters.rank ${lp.rank}, the factors' rank is ${r}`);
          if (!Number.isFinite(lp.scale)) return invalid('scale not finite');
          // mlx-lm builds LoRASwitchLinear with the layer's own count and refuses factors of another.
          if (counted !== experts) return invalid(`factors for ${counted} experts, the base has ${experts}`);
          for (const p of projs) {
            const [o, i] = dims(p, h, f);
            const a = d.tensors.get(`adapter/${L}.switch_mlp.${p}.lora_a`)!.values, b = d.tensors.get(`adapter/${L}.switch_mlp.${p}.lora_b`)!.values;
            for (let e = 0; e < experts; e++) addTo(p, e, expertProduct(b, a, e, o, r, i), w * (lp.scale as number));
          }
        } else {
          const s = configScale(d, 'adapter/adapter_config.json', 'lora_alpha', r, true);
          if (typeof s !== 'number') return s;
          for (const p of projs) {
            const [o, i] = dims(p, h, f);
            for (const e of peftExperts) {
              const m = `adapter/base_model.model.${L}.experts.${e}.${p}`;
              const refused = addTo(p, e, expertProduct(d.tensors.get(`${m}.lora_B.weight`)!.values, d.tensors.get(`${m}.lora_A.weight`)!.values, 0, o, r, i), w * s);
              if (refused) return refused;
            }
          }
        }
        if ([...d.tensors].some(([k, t]) => k.startsWith('model/') && t.values.some((x) => !Number.isFinite(x))) && outDtype) return unknown('a base tensor holding NaN or Inf converted');
        if (outDtype) {
          const refused = pastDtype(merged, outDtype) ?? convertRest(d, names, (n) => `model/${n}`, () => false, merged, outDtype);
          if (refused) return refused;
          for (const e of merged.values()) if (!e.dtype) e.dtype = { bf16: 'BF16', f16: 'F16', f32: 'F32' }[outDtype] as FixtureDType;
        }
        return { kind: 'expected', merged };
      },
    };
  });
