/**
 * The surface fuzzer's `t5-alone` world (fuzz-surfaces.ts draws it): a diffusers pipeline whose only
 * text encoder is T5-XXL (google/t5-v1_1-xxl's config, in text_encoder/; ChromaPipeline,
 * PixArtSigmaPipeline, LTXPipeline, MochiPipeline, CogVideoXPipeline, AllegroPipeline) with a kohya
 * LoRA on that T5's self-attention, its modules under `lora_te_`, `lora_te1_`, `lora_te2_` or
 * `lora_te3_`. The names that reach the T5 are those its tools write and apply (ComfyUI maps
 * `lora_te1_` to a T5 it loads alone; OneTrainer writes `lora_te1_` and `lora_te_` for Chroma and
 * PixArt, sd-scripts `lora_te3_` for Chroma; no tool applies a T5 LoRA to Allegro): those merge, the
 * others are left out with a warning; a LoRA none of whose modules lands, or with two names that
 * land on one tensor (`lora_te_` and `lora_te1_` on Chroma's), is refused.
 * The truth is kohya's merge in float64: W += w·(α/r)·up·down for each module that reaches the T5.
 * Nothing here imports the library under test.
 */
import fc from 'fast-check';
import { roundForDType, seededRandom, type FixtureTensor } from './fixtures.js';
import { t5EncoderTensors, t5XxlConfig, T5_SELF_ATTENTION } from './t5-fixtures.js';
import { type Decoded, type ExpectedMerge, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

/** Each model's pipeline class, its transformer's class and one key of it, and the kohya prefixes that reach its T5. */
const MODELS = {
  Chroma: { pipeline: 'ChromaPipeline', transformer: 'ChromaTransformer2DModel', key: 'distilled_guidance_layer.in_proj.weight', reach: ['lora_te_', 'lora_te1_', 'lora_te3_'] },
  PixArt: { pipeline: 'PixArtSigmaPipeline', transformer: 'PixArtTransformer2DModel', key: 'adaln_single.linear.weight', reach: ['lora_te_', 'lora_te1_'] },
  'LTX-Video': { pipeline: 'LTXPipeline', transformer: 'LTXVideoTransformer3DModel', key: 'proj_in.weight', reach: ['lora_te1_'] },
  Mochi: { pipeline: 'MochiPipeline', transformer: 'MochiTransformer3DModel', key: 'patch_embed.proj.weight', reach: ['lora_te1_'] },
  CogVideoX: { pipeline: 'CogVideoXPipeline', transformer: 'CogVideoXTransformer3DModel', key: 'patch_embed.proj.weight', reach: ['lora_te1_'] },
  Allegro: { pipeline: 'AllegroPipeline', transformer: 'AllegroTransformer3DModel', key: 'pos_embed.proj.weight', reach: [] as string[] },
} as const;
type Model = keyof typeof MODELS;
const PREFIXES = ['lora_te_', 'lora_te1_', 'lora_te2_', 'lora_te3_'] as const;
const PROJS = ['q', 'k', 'v', 'o'] as const;
/** The T5 encoder's width (t5EncoderTensors: d_model 10). */
const D = 10;

export const t5AloneWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    model: fc.constantFrom<Model>(...(Object.keys(MODELS) as Model[])),
    modules: fc.array(fc.record({ prefix: fc.constantFrom(...PREFIXES), proj: fc.constantFrom(...PROJS) }), { minLength: 1, maxLength: 4 }),
    r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 2, 8), seed: fc.integer(),
  })
  .map(({ model, modules: drawn, r, alpha, seed }) => {
    const rand = seededRandom(seed);
    const m = MODELS[model];
    const flat = T5_SELF_ATTENTION.replaceAll('.', '_');
    // One module per name (a second of the same name would be the same tensors).
    const modules = [...new Map(drawn.map((x) => [`${x.prefix}${flat}_${x.proj}`, x])).values()];
    const vals = (n: number) => Array.from({ length: n }, () => roundForDType((rand() * 2 - 1) * 0.5, 'BF16'));
    const lora: FixtureTensor[] = modules.flatMap(({ prefix, proj }): FixtureTensor[] => {
      const name = `${prefix}${flat}_${proj}`;
      return [
        { name: `${name}.lora_down.weight`, dtype: 'BF16', shape: [r, D], data: vals(r * D) },
        { name: `${name}.lora_up.weight`, dtype: 'BF16', shape: [D, r], data: vals(D * r) },
        { name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] },
      ];
    });
    const t5 = t5EncoderTensors(rand, '');
    const files: Record<string, SpecFile> = {
      'pipe/model_index.json': {
        kind: 'json', value: {
          _class_name: m.pipeline, _diffusers_version: '0.35.0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
          text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'], transformer: ['diffusers', m.transformer],
        },
      },
      'pipe/transformer/diffusion_pytorch_model.safetensors': { kind: 'safetensors', tensors: [{ name: m.key, dtype: 'BF16', shape: [8, 8], data: vals(64) }] },
      'pipe/text_encoder/config.json': { kind: 'json', value: t5XxlConfig() },
      'pipe/text_encoder/model.safetensors': { kind: 'safetensors', tensors: t5 },
      'lora.safetensors': { kind: 'safetensors', tensors: lora },
    };
    return {
      name: `t5-alone: ${model} pipeline ← kohya T5 LoRA`,
      files, base: 'pipe', adapter: 'lora.safetensors', out: 'merged', refusalsChecked: true,
      truth: (d: Decoded, w: number): Truth => {
        const merged = new Map<string, ExpectedMerge>();
        for (const { prefix, proj } of modules) {
          if (!(m.reach as readonly string[]).includes(prefix)) continue; // left out with a warning
          const name = `/${prefix}${flat}_${proj}`;
          const down = d.tensors.get(`${name}.lora_down.weight`)!.values, up = d.tensors.get(`${name}.lora_up.weight`)!.values;
          const a = d.tensors.get(`${name}.alpha`)!.values[0];
          // kohya: α/r, an α of 0 (or none) meaning r.
          const s = w * (a === 0 ? 1 : a / r);
          const key = `pipe/text_encoder/${T5_SELF_ATTENTION}.${proj}.weight`;
          // Two names of one adapter on one tensor (lora_te_ and lora_te1_): no tool writes both, and the merge refuses the pair.
          if (merged.has(key)) return { kind: 'invalid', why: `two modules on ${key}` };
          const stored = d.tensors.get(key)!;
          const cur = merged.get(key) ?? { values: stored.values.slice(), magnitude: stored.values.reduce((x, v) => Math.max(x, Math.abs(v)), 0) };
          let most = 0;
          for (let o = 0; o < D; o++) for (let i = 0; i < D; i++) {
            let sum = 0;
            for (let k = 0; k < r; k++) sum += up[o * r + k] * down[k * D + i];
            cur.values[o * D + i] += s * sum;
            most = Math.max(most, Math.abs(sum));
          }
          cur.magnitude += Math.abs(s) * most;
          merged.set(key, cur);
        }
        if (merged.size === 0) return { kind: 'invalid', why: `no module reaches ${model}'s T5` };
        return { kind: 'expected', merged };
      },
    };
  });
