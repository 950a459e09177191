/**
 * The surface fuzzer's `split-experts` world (fuzz-surfaces.ts draws it): a LoRA on one expert's
 * Linear layer of experts a trainer split into Linear layers, on a checkpoint that stores them
 * fused (E, in, out), as the trainers' merges put it back:
 *   - Unsloth's gpt-oss (`mlp.experts.gate_up_projs.K`, Linear(hidden, 2·inter), its outputs
 *     gpt-oss's interleaved gate/up columns as they are; `down_projs.K`, Linear(inter, hidden)) on
 *     openai/gpt-oss in bf16 (GptOssForCausalLM);
 *   - axolotl's linearized Llama 4 (`feed_forward.experts.gate_projs.K` / `up_projs.K`,
 *     Linear(hidden, inter), the first and second half of slab K's columns; `down_projs.K`) on
 *     meta-llama's checkpoint (Llama4ForConditionalGeneration, under `language_model.`).
 * Hostile variants, refused naming the module: an expert past the last, an expert numbered with a
 * leading zero (`gate_up_projs.01`: torch names a ModuleList's layers str(K)), gate_projs on
 * gpt-oss (whose gate and up columns interleave), a Linear with one input more than the slab's rows.
 * The truth is the trainers' merge in float64: fused[K][i][col(o)] += w·(α/r)·(B·A)[o][i], every
 * other element as stored (or rounded once to `--dtype`). Nothing here imports the library.
 */
import fc from 'fast-check';
import { seededRandom, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { configScale, configToCompare, convertRest, pastDtype, type Decoded, type ExpectedMerge, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

type Model = 'gpt-oss' | 'llama4';
type Split = 'gate_up_projs' | 'gate_projs' | 'up_projs' | 'down_projs';
type Hostile = 'past E' | 'leading zero' | 'gate on gpt-oss' | 'wider';

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const invalid = (why: string): Truth => ({ kind: 'invalid', why });
const unknown = (why: string): Truth => ({ kind: 'unknown', why });

/** The experts' prefix on each checkpoint. */
const EXPERTS: Record<Model, string> = { 'gpt-oss': 'model.layers.0.mlp.experts', llama4: 'language_model.model.layers.0.feed_forward.experts' };

/** A split Linear: its outputs, inputs, fused tensor and the slab column of output o. */
function linear(split: Split, h: number, f: number): { out: number; inF: number; fused: 'gate_up_proj' | 'down_proj'; column: (o: number) => number } {
  switch (split) {
    case 'gate_up_projs': return { out: 2 * f, inF: h, fused: 'gate_up_proj', column: (o) => o };
    case 'gate_projs': return { out: f, inF: h, fused: 'gate_up_proj', column: (o) => o };
    case 'up_projs': return { out: f, inF: h, fused: 'gate_up_proj', column: (o) => f + o };
    case 'down_projs': return { out: h, inF: f, fused: 'down_proj', column: (o) => o };
  }
}

export const splitExpertsWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    model: fc.constantFrom<Model>('gpt-oss', 'llama4'),
    wDtype: fc.constantFrom<FixtureDType>('BF16', 'BF16', 'F16', 'F32'), fDtype: fc.constantFrom<FixtureDType>('F32', 'BF16'),
    experts: fc.integer({ min: 2, max: 4 }), h: fc.integer({ min: 2, max: 6 }), f: fc.integer({ min: 2, max: 5 }), r: fc.integer({ min: 1, max: 2 }),
    alpha: fc.constantFrom(1, 2, 16), picks: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), seed: fc.integer(),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant<null>(null) }, { weight: 1, arbitrary: fc.constantFrom<Hostile>('past E', 'leading zero', 'gate on gpt-oss', 'wider') }),
  })
  .map(({ model, wDtype, fDtype, experts, h, f, r, alpha, picks, seed, hostile: drawn }) => {
    // Llama 4's gate_projs are its own: that variant is gpt-oss's alone.
    const hostile = drawn === 'gate on gpt-oss' && model !== 'gpt-oss' ? null : drawn;
    const rand = seededRandom(seed);
    const vals = (n: number, s = 0.5) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
    const stem = EXPERTS[model];
    const splits: Split[] = model === 'gpt-oss' ? ['gate_up_projs', 'down_projs'] : ['gate_projs', 'up_projs', 'down_projs'];
    // Distinct (split, expert) Linears: no two land on the same elements.
    const chosen = [...new Map(picks.map((p) => {
      const split = splits[p % splits.length], expert = Math.floor(p / splits.length) % experts;
      return [`${split}.${expert}`, { split, expert, index: String(expert), wider: false }];
    })).values()];
    if (hostile === 'past E') chosen.push({ split: splits[0], expert: experts, index: String(experts), wider: false });
    if (hostile === 'leading zero') chosen[0] = { ...chosen[0], index: `0${chosen[0].index}` };
    if (hostile === 'gate on gpt-oss') chosen.push({ split: 'gate_projs', expert: 0, index: '0', wider: false });
    if (hostile === 'wider') chosen[0] = { ...chosen[0], wider: true };
    const tensors: FixtureTensor[] = [
      { name: `${stem.replace(/experts$/, '')}router.weight`, dtype: wDtype, shape: [experts, h], data: vals(experts * h) },
      // gate_up_proj (E, hidden, 2·inter), down_proj (E, inter, hidden); −0 every 5th element, which rows no Linear reaches keep.
      { name: `${stem}.gate_up_proj`, dtype: wDtype, shape: [experts, h, 2 * f], data: vals(experts * h * 2 * f).map((x, j) => (j % 5 ? x : -0)) },
      { name: `${stem}.down_proj`, dtype: wDtype, shape: [experts, f, h], data: vals(experts * f * h).map((x, j) => (j % 5 ? x : -0)) },
    ];
    const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[wDtype as 'F32'];
    const config = model === 'gpt-oss'
      ? { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: h, intermediate_size: f, num_local_experts: experts, num_hidden_layers: 1, tie_word_embeddings: false, torch_dtype: torchDtype }
      : {
        architectures: ['Llama4ForConditionalGeneration'], model_type: 'llama4', tie_word_embeddings: false, torch_dtype: torchDtype,
        text_config: { model_type: 'llama4_text', hidden_size: h, intermediate_size: f, num_local_experts: experts, num_hidden_layers: 1 },
      };
    const factors = chosen.flatMap(({ split, index, wider }): FixtureTensor[] => {
      const { out, inF } = linear(split, h, f);
      const m = `base_model.model.${stem}.${split}.${index}`;
      const i = inF + (wider ? 1 : 0);
      return [{ name: `${m}.lora_A.weight`, dtype: fDtype, shape: [r, i], data: vals(r * i) }, { name: `${m}.lora_B.weight`, dtype: fDtype, shape: [out, r], data: vals(out * r) }];
    });
    const files: Record<string, SpecFile> = {
      'model/config.json': { kind: 'json', value: config },
      'model/model.safetensors': { kind: 'safetensors', tensors, metadata: { format: 'pt' } },
      // PEFT matches a listed name as the module path's tail: each expert's Linear by `gate_up_projs.1`.
      'adapter/adapter_config.json': { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: alpha, lora_dropout: 0, bias: 'none', target_modules: chosen.map((c) => `${c.split}.${c.index}`), peft_version: '0.17.1' } },
      'adapter/adapter_model.safetensors': { kind: 'safetensors', tensors: factors },
    };
    const names = tensors.map((t) => t.name);
    return {
      name: `split-experts: ${model === 'gpt-oss' ? "Unsloth's gpt-oss" : "axolotl's Llama 4"} split Linears on fused experts${hostile ? ` (${hostile})` : ''}`,
      files, base: 'model', adapter: 'adapter', out: 'merged', refusalsChecked: true,
      outDtypes: ['bf16', 'f16', 'f32'],
      configReads: ['architectures'],
      truth: (d: Decoded, w: number, outDtype): Truth => {
        const read = configToCompare(d, 'model/config.json', ['model/config.json', 'adapter/adapter_config.json']);
        if (!('config' in read)) return read;
        const cfg = read.config;
        const architectures = Array.isArray(cfg?.architectures) ? cfg.architectures.filter((a): a is string => typeof a === 'string') : [];
        const s = configScale(d, 'adapter/adapter_config.json', 'lora_alpha', r, true);
        if (typeof s !== 'number') return s;
        const merged = new Map<string, ExpectedMerge>();
        for (const { split, expert, index, wider } of chosen) {
          const { out, inF, fused, column } = linear(split, h, f);
          if (/^0\d/.test(index)) return invalid(`${split}.${index}: no trainer's Linear is numbered with a leading zero`);
          if (expert >= experts) return invalid(`${split}.${index}: expert past the base's ${experts}`);
          if (split !== 'gate_up_projs' && split !== 'down_projs' && !architectures.some((a) => /^Llama4For/.test(a))) return invalid(`${split}: which half of the columns is known for Llama 4 alone`);
          if (wider) return invalid(`${split}.${index}: ${inF + 1} inputs, the slab has ${inF} rows`);
          const key = `model/${stem}.${fused}`;
          const stored = d.tensors.get(key)!;
          const cols = stored.shape[2];
          const m = `adapter/base_model.model.${stem}.${split}.${index}`;
          const a = d.tensors.get(`${m}.lora_A.weight`)!.values, b = d.tensors.get(`${m}.lora_B.weight`)!.values;
          const cur = merged.get(key) ?? { values: stored.values.slice(), magnitude: maxAbs(stored.values) };
          let most = 0;
          for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
            let sum = 0;
            for (let k = 0; k < r; k++) sum += b[o * r + k] * a[k * inF + i];
            cur.values[(expert * inF + i) * cols + column(o)] += w * s * sum;
            most = Math.max(most, Math.abs(sum));
          }
          cur.magnitude += Math.abs(w * s) * most;
          merged.set(key, cur);
        }
        for (const [key, e] of merged) if (e.values.some((x) => !Number.isFinite(x))) return invalid(`${key}: merged values are not finite`);
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
