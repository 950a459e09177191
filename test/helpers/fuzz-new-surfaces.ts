/**
 * The surface fuzzer's worlds for the newest input surfaces (fuzz-surfaces.ts draws them):
 *   - `modular-index`: a diffusers Stable Diffusion pipeline folder whose index is diffusers' Modular
 *     Pipelines `modular_model_index.json` (every component `[library, class, {type_hint,
 *     pretrained_model_name_or_path, subfolder, variant, revision}]`, as MiniMax-H3's conversion and
 *     save_pretrained write it), alone or beside a `model_index.json`, with a kohya LoRA on the UNet and
 *     the text encoder; hostile: one component's spec loading from another repository or none, from
 *     another subfolder, a variant, a spec that is no object, the two indexes disagreeing on a class;
 *   - `kandinsky-config`: kandinskylab's Kandinsky 5 `lora.safetensors` (PEFT lora_A / lora_B under the
 *     DiT's bare names, or with `base_model.model.` / `transformer.`) beside its `config_lora.json` (a PEFT
 *     LoraConfig: r, lora_alpha, use_rslora, alpha_pattern), given as its folder or as the file alone
 *     (the config read from beside it), on a Kandinsky 5 DiT file; hostile: r not the factors' rank,
 *     lora_alpha a string, huge, alpha_pattern values of another type, the config an array or not JSON;
 *   - `deepseek-v4`: a DeepSeek-V4 folder in DeepSeek's names (config.json `quantization_config` fp8
 *     e4m3 / ue8m0, `expert_dtype: fp4`): attention `wq_a` block-wise fp8 with an F8_E8M0 scale grid,
 *     routed experts packed FP4 (I8 or U8 (out, in/2), or F4 (out, in)) with an F8_E8M0 scale per 32
 *     inputs, and a PEFT LoRA in transformers 5's names (q_a_proj; the fused experts' down_proj by
 *     target_parameters), merged and written back as fp8 / FP4 (scales as DeepSeek's kernels compute
 *     them); hostile: a merged group's scale 255 (E8M0's NaN) or 2^127 under a code of 2 or more, a
 *     scale grid of the wrong shape, a zero-size tensor beside them;
 *   - `onetrainer-oft`: OneTrainer's OFT file (`<module>.oft_R.weight`, optional `.oft_R.scaled_oft`) on an
 *     SD 1.5 UNet, its header's `ot_revision` (first-series, COFT-period, later commits; texts naming no
 *     commit) and `ot_config` (COFT on, off, default ε; hostile: not JSON, an array, null, another
 *     peft_type, oft_coft a string, coft_eps negative, 0 or a string), the marker absent, 1, or stray;
 *   - `deepseek-v3-ue8m0`: DeepSeek-V3.1 (F32 weight_scale_inv under scale_fmt "ue8m0") with a PEFT LoRA;
 *     hostile: a merged weight's scale no power of two, NaN, Inf or negative, its grid transposed.
 * The truth is float64 math from each tool's rule (kohya α/r; PEFT α/r or α/√r, alpha_pattern by the
 * module's name; DeepSeek's dequantization code × 2^(byte − 127) or × its F32 scale, the merge rounded once
 * to f32 and quantized as DeepSeek's kernels do; OneTrainer's Cayley–Neumann series and COFT projection). Nothing here imports the library under test.
 */
import fc from 'fast-check';
import { e2m1CodeValue, f8BitsSaturating, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { mm } from './dense-f64.js';
import { otRotated } from './onetrainer-oft-truth.js';
import { powerOfTwo, quantizeUe8m0Blocks } from './deepseek-ue8m0-truth.js';
import { added, configScale, mergedF32, type Decoded, type DecodedTensor, type ExpectedMerge, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

const st = (name: string, dtype: FixtureDType, shape: number[], data: ArrayLike<number> | Uint8Array): FixtureTensor => ({ name, dtype, shape, data });
const vals = (rand: () => number, n: number, dtype: FixtureDType = 'BF16') => Array.from({ length: n }, () => roundForDType((rand() * 2 - 1) * 0.5, dtype));
const parsed = (text: string | undefined): unknown => {
  try {
    return text === undefined ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
};
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

// --- modular_model_index.json -------------------------------------------------------------------

const UNET_KEY = 'down_blocks.0.attentions.0.proj_in';
const KOHYA_UNET = 'lora_unet_down_blocks_0_attentions_0_proj_in';
const TE_KEY = 'text_model.encoder.layers.0.self_attn.q_proj';
const KOHYA_TE = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
const REPO = 'stable-diffusion-v1-5/stable-diffusion-v1-5';
const COMPONENTS: [string, string, string][] = [['unet', 'diffusers', 'UNet2DConditionModel'], ['text_encoder', 'transformers', 'CLIPTextModel'], ['scheduler', 'diffusers', 'PNDMScheduler'], ['tokenizer', 'transformers', 'CLIPTokenizer']];
type ModularHostile = 'repo' | 'no-repo' | 'subfolder' | 'variant' | 'not-object' | 'disagree';

export const modularIndexWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    both: fc.boolean(), r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 2, 8), seed: fc.integer(),
    hostile: fc.option(fc.record({ what: fc.constantFrom<ModularHostile>('repo', 'no-repo', 'subfolder', 'variant', 'not-object', 'disagree'), on: fc.constantFrom('unet', 'text_encoder') }), { freq: 2 }),
  })
  .map(({ both, r, alpha, seed, hostile }) => {
    const rand = seededRandom(seed);
    const O = 6, I = 8;
    const modular: Record<string, unknown> = { _class_name: 'StableDiffusionModularPipeline', _diffusers_version: '0.36.0', _blocks_class_name: 'StableDiffusionAutoBlocks' };
    const plain: Record<string, unknown> = { _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.36.0' };
    for (const [name, library, className] of COMPONENTS) {
      const spec: Record<string, unknown> = { type_hint: [library, className], pretrained_model_name_or_path: REPO, subfolder: name, variant: null, revision: null };
      if (hostile?.on === name) {
        if (hostile.what === 'repo') spec.pretrained_model_name_or_path = 'someone/another-model';
        if (hostile.what === 'no-repo') delete spec.pretrained_model_name_or_path;
        if (hostile.what === 'subfolder') spec.subfolder = `${name}_ema`;
        if (hostile.what === 'variant') spec.variant = 'fp16';
      }
      modular[name] = hostile?.on === name && hostile.what === 'not-object' ? [library, className, `${REPO}/${name}`] : [library, className, spec];
      plain[name] = [library, hostile?.on === name && hostile.what === 'disagree' ? `${className}WithLora` : className];
    }
    // 'disagree' needs both files.
    const withPlain = both || hostile?.what === 'disagree';
    const lora = (k: string, out: number, inF: number) => [
      st(`${k}.lora_down.weight`, 'BF16', [r, inF], vals(rand, r * inF)), st(`${k}.lora_up.weight`, 'BF16', [out, r], vals(rand, out * r)), st(`${k}.alpha`, 'F32', [], [alpha]),
    ];
    const files: Record<string, SpecFile> = {
      'pipe/modular_model_index.json': { kind: 'json', value: modular },
      ...(withPlain ? { 'pipe/model_index.json': { kind: 'json', value: plain } as SpecFile } : {}),
      'pipe/unet/config.json': { kind: 'json', value: { _class_name: 'UNet2DConditionModel' } },
      'pipe/unet/diffusion_pytorch_model.safetensors': { kind: 'safetensors', tensors: [st(`${UNET_KEY}.weight`, 'BF16', [O, I], vals(rand, O * I)), st('conv_in.bias', 'F32', [4], vals(rand, 4))] },
      'pipe/text_encoder/config.json': { kind: 'json', value: { architectures: ['CLIPTextModel'] } },
      'pipe/text_encoder/model.safetensors': { kind: 'safetensors', tensors: [st(`${TE_KEY}.weight`, 'BF16', [I, I], vals(rand, I * I))] },
      'pipe/scheduler/scheduler_config.json': { kind: 'json', value: { _class_name: 'PNDMScheduler' } },
      'lora.safetensors': { kind: 'safetensors', tensors: [...lora(KOHYA_UNET, O, I), ...lora(KOHYA_TE, I, I)] },
    };
    return {
      name: `modular-index: ${withPlain ? 'both indexes' : 'modular_model_index.json alone'}${hostile ? `, ${hostile.on} ${hostile.what}` : ''} + kohya LoRA`,
      files, base: 'pipe', adapter: 'lora.safetensors', out: 'merged', refusalsChecked: true,
      truth: (d: Decoded, w: number): Truth => {
        if (hostile) return { kind: 'invalid', why: `${hostile.on}: ${hostile.what}`, names: `"${hostile.on}"` };
        const t = (name: string) => d.tensors.get(`/${name}`)!.values;
        const scale = (k: string) => w * (t(`${k}.alpha`)[0] === 0 ? 1 : t(`${k}.alpha`)[0] / r);
        const unet = `pipe/unet/${UNET_KEY}.weight`, text = `pipe/text_encoder/${TE_KEY}.weight`;
        return {
          kind: 'expected',
          merged: new Map([
            [unet, added(d.tensors.get(unet)!.values, mm(t(`${KOHYA_UNET}.lora_up.weight`), t(`${KOHYA_UNET}.lora_down.weight`), O, r, I), scale(KOHYA_UNET))],
            [text, added(d.tensors.get(text)!.values, mm(t(`${KOHYA_TE}.lora_up.weight`), t(`${KOHYA_TE}.lora_down.weight`), I, r, I), scale(KOHYA_TE))],
          ]),
        };
      },
    };
  });

// --- kandinskylab config_lora.json --------------------------------------------------------------

const K_M = 8, K_FF = 12;
/** [module, out, in] of the Kandinsky 5 DiT the LoRA holds. */
const K_MODULES: [string, number, number][] = [
  ['visual_transformer_blocks.0.self_attention.to_query', K_M, K_M],
  ['visual_transformer_blocks.0.cross_attention.to_value', K_M, K_M],
  ['visual_transformer_blocks.0.feed_forward.in_layer', K_FF, K_M],
  ['text_transformer_blocks.0.self_attention.out_layer', K_M, K_M],
];
type KandinskyHostile = 'rank' | 'alpha-string' | 'alpha-huge' | 'alpha-nan' | 'pattern-string' | 'array' | 'deep' | 'rslora-string';
/** The hostile configs whose refusal must name config_lora.json. */
const NAMES_CONFIG: ReadonlySet<KandinskyHostile | null> = new Set<KandinskyHostile | null>(['alpha-string', 'array', 'deep', 'pattern-string']);

export const kandinskyConfigWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    r: fc.integer({ min: 1, max: 4 }), alpha: fc.constantFrom(1, 4, 8, 16, 0.5), rslora: fc.constantFrom<boolean | undefined>(undefined, false, true),
    pattern: fc.option(fc.constantFrom(2, 0.25, -1), { nil: undefined }), prefix: fc.constantFrom('', '', 'base_model.model.', 'transformer.'),
    lone: fc.boolean(), seed: fc.integer(), factorDtype: fc.constantFrom<FixtureDType>('BF16', 'F32'),
    hostile: fc.option(fc.constantFrom<KandinskyHostile>('rank', 'alpha-string', 'alpha-huge', 'alpha-nan', 'pattern-string', 'array', 'deep', 'rslora-string'), { freq: 2 }),
  })
  .map(({ r, alpha, rslora, pattern, prefix, lone, seed, factorDtype, hostile }) => {
    const rand = seededRandom(seed);
    const config: Record<string, unknown> = {
      r: hostile === 'rank' ? r + 1 : r, lora_alpha: hostile === 'alpha-string' ? String(alpha) : hostile === 'alpha-huge' ? 1e308 : hostile === 'alpha-nan' ? { rawJson: 'NaN' } : alpha,
      lora_dropout: 0, bias: 'none', init_lora_weights: true, target_modules: ['to_query', 'to_key', 'to_value', 'out_layer', 'in_layer'],
    };
    if (rslora !== undefined || hostile === 'rslora-string') config.use_rslora = hostile === 'rslora-string' ? 'yes' : rslora;
    if (pattern !== undefined || hostile === 'pattern-string') config.alpha_pattern = { 'feed_forward.in_layer': hostile === 'pattern-string' ? 'two' : pattern };
    const lora: FixtureTensor[] = K_MODULES.flatMap(([m, out, inF]) => [
      st(`${prefix}${m}.lora_A.weight`, factorDtype, [r, inF], vals(rand, r * inF, factorDtype)), st(`${prefix}${m}.lora_B.weight`, factorDtype, [out, r], vals(rand, out * r, factorDtype)),
    ]);
    const base: FixtureTensor[] = K_MODULES.flatMap(([m, out, inF]) => [st(`${m}.weight`, 'BF16', [out, inF], vals(rand, out * inF)), st(`${m}.bias`, 'BF16', [out], vals(rand, out))]);
    base.push(st('visual_transformer_blocks.0.self_attention.query_norm.weight', 'F32', [4], vals(rand, 4, 'F32')));
    const files: Record<string, SpecFile> = {
      'kandinsky5lite_t2v.safetensors': { kind: 'safetensors', tensors: base },
      'k5lora/lora.safetensors': { kind: 'safetensors', tensors: lora },
      // 'deep': 100,000 nested arrays (jsonText writes the sentinel so).
      'k5lora/config_lora.json': { kind: 'json', value: hostile === 'array' ? [config] : hostile === 'deep' ? { deep: 100_000 } : config },
    };
    return {
      name: `kandinsky-config: ${lone ? 'lora.safetensors alone, config beside it' : 'folder'}${prefix ? `, ${prefix}` : ''}${hostile ? `, ${hostile}` : ''}`,
      files, base: 'kandinsky5lite_t2v.safetensors', adapter: lone ? 'k5lora/lora.safetensors' : 'k5lora', out: 'merged.safetensors', refusalsChecked: true,
      configReads: ['alpha_pattern'],
      truth: (d: Decoded, w: number): Truth => {
        const path = 'k5lora/config_lora.json';
        const raw = parsed(d.json.get(path));
        if (!isObject(raw)) return { kind: 'invalid', why: `${path}: not a JSON object`, ...(NAMES_CONFIG.has(hostile) ? { names: 'config_lora.json' } : {}) };
        if (typeof raw.lora_alpha === 'string') return { kind: 'invalid', why: 'lora_alpha a string (PEFT: a TypeError)', ...(NAMES_CONFIG.has(hostile) ? { names: 'config_lora.json' } : {}) };
        if (raw.use_rslora !== undefined && typeof raw.use_rslora !== 'boolean') return { kind: 'unknown', why: 'use_rslora not a boolean' };
        const scale = configScale(d, path, 'lora_alpha', r, true);
        if (typeof scale !== 'number') return scale;
        const patterns = raw.alpha_pattern;
        if (patterns !== undefined && !isObject(patterns)) return { kind: 'unknown', why: 'alpha_pattern not an object' };
        const merged = new Map<string, ExpectedMerge>();
        for (const [m, out, inF] of K_MODULES) {
          // PEFT's get_pattern_key: a key matches a module name that is it or ends in `.key`.
          const key = Object.keys(patterns ?? {}).find((k) => m === k || m.endsWith(`.${k}`));
          const a = key === undefined ? raw.lora_alpha as number : (patterns as Record<string, unknown>)[key];
          if (typeof a !== 'number') return { kind: 'invalid', why: `alpha_pattern ${JSON.stringify(a)} for ${m}`, ...(NAMES_CONFIG.has(hostile) ? { names: 'config_lora.json' } : {}) };
          const s = w * a / (raw.use_rslora === true ? Math.sqrt(r) : r);
          const A = d.tensors.get(`k5lora/${prefix}${m}.lora_A.weight`)!.values, B = d.tensors.get(`k5lora/${prefix}${m}.lora_B.weight`)!.values;
          merged.set(`/${m}.weight`, added(d.tensors.get(`/${m}.weight`)!.values, mm(B, A, out, r, inF), s));
        }
        return { kind: 'expected', merged };
      },
    };
  });

// --- DeepSeek-V4: E8M0 scales, packed FP4 experts -----------------------------------------------

const D_H = 64, D_Q = 32, D_I = 32, D_E = 2, D_V = 8;
const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
/** The nearest E2M1 code of q clamped to ±6, ties to the even code, −0 (8) for a negative rounding to 0. */
function e2m1Code(q: number): number {
  const a = Math.min(Math.abs(q), 6);
  let best = 0;
  for (let c = 1; c < 8; c++) {
    const diff = Math.abs(E2M1[c] - a) - Math.abs(E2M1[best] - a);
    if (diff < 0 || (diff === 0 && c % 2 === 0)) best = c;
  }
  return (q < 0 ? 8 : 0) | best;
}
/** DeepSeek's convert.py FP4_TABLE: code 8 (−0) read as +0. */
const fp4Value = (code: number) => (code === 8 ? 0 : e2m1CodeValue(code));
const f32Tensor = (values: Float64Array, shape: number[]): DecodedTensor => ({ dtype: 'F32', shape, values, bytes: new Uint8Array(Float32Array.from(values).buffer) });
type DeepseekHostile = 'nan-scale' | 'huge-scale' | 'scale-shape' | 'zero-size';

export const deepseekV4World: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    codes: fc.constantFrom<'I8' | 'U8' | 'F4'>('I8', 'I8', 'U8', 'F4'), onAttention: fc.boolean(), onExperts: fc.boolean(), r: fc.integer({ min: 1, max: 3 }),
    alpha: fc.constantFrom(1, 2, 4, 16), seed: fc.integer(),
    hostile: fc.option(fc.record({ what: fc.constantFrom<DeepseekHostile>('nan-scale', 'huge-scale', 'scale-shape', 'zero-size'), expert: fc.integer({ min: 0, max: D_E - 1 }), row: fc.nat(D_H - 1) }), { freq: 2 }),
  })
  .map(({ codes, onAttention, onExperts: drawnExperts, r, alpha, seed, hostile }) => {
    const rand = seededRandom(seed);
    const onExperts = drawnExperts || !onAttention;
    const bytes = (n: number, pick: () => number) => Uint8Array.from({ length: n }, pick);
    // e4m3 codes of moderate size (no NaN, 0x7f/0xff).
    const e4m3 = () => { const b = Math.floor(rand() * 256); return (b & 0x78) === 0x78 ? b & 0xb7 : b; };
    const base: FixtureTensor[] = [
      st('embed.weight', 'BF16', [D_V, D_H], vals(rand, D_V * D_H)),
      st('layers.0.attn_norm.weight', 'BF16', [D_H], vals(rand, D_H)),
      st('layers.0.attn.wq_a.weight', 'F8_E4M3', [D_Q, D_H], bytes(D_Q * D_H, e4m3)),
      st('layers.0.attn.wq_a.scale', 'F8_E8M0' as FixtureDType, [1, 1], Uint8Array.of(117 + Math.floor(rand() * 6))),
      st('layers.0.ffn.gate.weight', 'BF16', [D_E, D_H], vals(rand, D_E * D_H)),
    ];
    if (hostile?.what === 'zero-size') base.push(st('layers.0.attn.attn_sink', 'F32', [0], []));
    for (let e = 0; e < D_E; e++) {
      for (const [w, out, inF] of [['w1', D_I, D_H], ['w2', D_H, D_I], ['w3', D_I, D_H]] as const) {
        const stem = `layers.0.ffn.experts.${e}.${w}`;
        const packed = bytes((out * inF) / 2, () => Math.floor(rand() * 256));
        const scales = bytes((out * inF) / 32, () => 119 + Math.floor(rand() * 5));
        let scaleShape = [out, inF / 32];
        if (hostile && hostile.expert === e && w === 'w2') {
          const at = (hostile.row % out) * (inF / 32);
          if (hostile.what === 'nan-scale') scales[at] = 255;
          if (hostile.what === 'huge-scale') {
            scales[at] = 254;
            packed[(at * 32) / 2] = (packed[(at * 32) / 2] & 0xf0) | 0x07; // code 6 there: 6·2^127 past f32
          }
          if (hostile.what === 'scale-shape') scaleShape = [out / 2, (inF / 32) * 2];
        }
        base.push(
          st(`${stem}.weight`, codes === 'F4' ? 'F4' as FixtureDType : codes, codes === 'F4' ? [out, inF] : [out, inF / 2], packed),
          st(`${stem}.scale`, 'F8_E8M0' as FixtureDType, scaleShape, scales),
        );
      }
    }
    base.push(st('norm.weight', 'BF16', [D_H], vals(rand, D_H)), st('head.weight', 'BF16', [D_V, D_H], vals(rand, D_V * D_H)));
    const factor = (n: number) => Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * 64) / 1024);
    const adapter: FixtureTensor[] = [];
    const targets: string[] = [];
    if (onAttention) {
      adapter.push(st('base_model.model.model.layers.0.self_attn.q_a_proj.lora_A.weight', 'F32', [r, D_H], factor(r * D_H)), st('base_model.model.model.layers.0.self_attn.q_a_proj.lora_B.weight', 'F32', [D_Q, r], factor(D_Q * r)));
      targets.push('q_a_proj');
    }
    if (onExperts) {
      adapter.push(st('base_model.model.model.layers.0.mlp.experts.lora_A.weight', 'F32', [r * D_E, D_I], factor(r * D_E * D_I)), st('base_model.model.model.layers.0.mlp.experts.lora_B.weight', 'F32', [D_H, r * D_E], factor(D_H * r * D_E)));
    }
    const config = {
      architectures: ['DeepseekV4ForCausalLM'], model_type: 'deepseek_v4', torch_dtype: 'bfloat16', hidden_size: D_H, q_lora_rank: D_Q, num_hidden_layers: 1,
      n_routed_experts: D_E, n_shared_experts: 0, moe_intermediate_size: D_I, vocab_size: D_V, expert_dtype: 'fp4',
      quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', scale_fmt: 'ue8m0', weight_block_size: [128, 128] },
    };
    const files: Record<string, SpecFile> = {
      'ds/config.json': { kind: 'json', value: config },
      'ds/model.safetensors': { kind: 'safetensors', tensors: base },
      'peft/adapter_config.json': {
        kind: 'json', value: {
          peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'deepseek-ai/DeepSeek-V4-Flash', peft_version: '0.19.1', r, lora_alpha: alpha,
          target_modules: targets, ...(onExperts ? { target_parameters: ['mlp.experts.down_proj'] } : {}),
        },
      },
      'peft/adapter_model.safetensors': { kind: 'safetensors', tensors: adapter },
    };
    return {
      name: `deepseek-v4: ${codes} FP4 experts${onAttention ? ', LoRA on wq_a' : ''}${onExperts ? ', LoRA on the experts\' w2' : ''}${hostile ? `, ${hostile.what}` : ''}`,
      files, base: 'ds', adapter: 'peft', out: 'merged', refusalsChecked: true,
      truth: (d: Decoded, w: number): Truth => {
        const scale = configScale(d, 'peft/adapter_config.json', 'lora_alpha', r, true);
        if (typeof scale !== 'number') return scale;
        const s = w * scale;
        const tensor = (name: string) => d.tensors.get(`ds/${name}`)!;
        const merged = new Map<string, ExpectedMerge>();
        if (hostile?.what === 'scale-shape') return { kind: 'invalid', why: 'an FP4 scale grid of the wrong shape', names: `layers.0.ffn.experts.${hostile.expert}.w2` };
        if (onAttention) {
          const W = tensor('layers.0.attn.wq_a.weight').values.map((c) => c * tensor('layers.0.attn.wq_a.scale').values[0]);
          const a = d.tensors.get('peft/base_model.model.model.layers.0.self_attn.q_a_proj.lora_A.weight')!, b = d.tensors.get('peft/base_model.model.model.layers.0.self_attn.q_a_proj.lora_B.weight')!;
          const m = mergedF32(W, { layer: 'q_a_proj', a, b, rank: r, scale: s, rows: D_Q, cols: D_H });
          if (!m) return { kind: 'invalid', why: 'wq_a: a merged value past f32' };
          let amax = 0;
          for (const x of m) amax = Math.max(amax, Math.abs(x));
          const q = powerOfTwo(amax, 448, 1e-4);
          if (!(q >= 2 ** -127 && q <= 2 ** 127)) return { kind: 'invalid', why: 'wq_a: a block scale past E8M0' };
          const codeBytes = Uint8Array.from(m, (x) => f8BitsSaturating(x / q, 'F8_E4M3'));
          merged.set('ds/layers.0.attn.wq_a.weight', { values: Float64Array.from(codeBytes, (c) => f8Value(c)), magnitude: 0, exact: true });
          merged.set('ds/layers.0.attn.wq_a.scale', { values: Float64Array.of(q), magnitude: 0, exact: true });
        }
        if (onExperts) {
          const A = d.tensors.get('peft/base_model.model.model.layers.0.mlp.experts.lora_A.weight')!.values, B = d.tensors.get('peft/base_model.model.model.layers.0.mlp.experts.lora_B.weight')!.values;
          for (let e = 0; e < D_E; e++) {
            const stem = `layers.0.ffn.experts.${e}.w2`;
            const wt = tensor(`${stem}.weight`), sc = tensor(`${stem}.scale`).bytes;
            const packed = wt.bytes;
            const W = new Float64Array(D_H * D_I);
            for (let i = 0; i < W.length; i++) W[i] = fp4Value(i & 1 ? packed[i >> 1] >> 4 : packed[i >> 1] & 15) * (sc[Math.floor(i / 32)] === 255 ? NaN : 2 ** (sc[Math.floor(i / 32)] - 127));
            if (!W.every((x) => Number.isFinite(Math.fround(x)))) return { kind: 'invalid', why: `${stem}: a scale of 255 or past f32`, names: `${stem}.scale` };
            // PEFT 0.19.1's target_parameters on experts stored (E, out, in): A grouped by expert, B interleaved.
            const Ae = A.slice(e * r * D_I, (e + 1) * r * D_I), Be = Float64Array.from({ length: D_H * r }, (_, i) => B[Math.floor(i / r) * r * D_E + (i % r) * D_E + e]);
            const m = mergedF32(W, { layer: stem, a: f32Tensor(Ae, [r, D_I]), b: f32Tensor(Be, [D_H, r]), rank: r, scale: s, rows: D_H, cols: D_I });
            if (!m) return { kind: 'invalid', why: `${stem}: a merged value past f32` };
            const out = new Uint8Array(packed.length), scales = new Float64Array(sc.length);
            for (let g = 0; g < sc.length; g++) {
              let amax = 0;
              for (let k = 0; k < 32; k++) amax = Math.max(amax, Math.abs(m[g * 32 + k]));
              const q = powerOfTwo(amax, 6, 6 * 2 ** -126);
              if (!(q >= 2 ** -127 && q <= 2 ** 127)) return { kind: 'invalid', why: `${stem}: an FP4 scale past E8M0` };
              scales[g] = q;
              for (let k = 0; k < 32; k += 2) out[(g * 32 + k) >> 1] = e2m1Code(m[g * 32 + k] / q) | (e2m1Code(m[g * 32 + k + 1] / q) << 4);
            }
            const codeValues = wt.dtype === 'F4' ? Float64Array.from({ length: out.length * 2 }, (_, i) => e2m1CodeValue(i & 1 ? out[i >> 1] >> 4 : out[i >> 1] & 15))
              : wt.dtype === 'I8' ? Float64Array.from(new Int8Array(out.buffer)) : Float64Array.from(out);
            merged.set(`ds/${stem}.weight`, { values: codeValues, magnitude: 0, exact: true });
            merged.set(`ds/${stem}.scale`, { values: scales, magnitude: 0, exact: true });
          }
        }
        return { kind: 'expected', merged };
      },
    };
  });

/** An e4m3fn byte's value (no infinities; 0x7f / 0xff NaN). */
function f8Value(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1, e = (byte >> 3) & 15, m = byte & 7;
  if (e === 15 && m === 7) return NaN;
  return sign * (e === 0 ? m / 8 * 2 ** -6 : (1 + m / 8) * 2 ** (e - 7));
}

// --- OneTrainer OFT: ot_revision, ot_config, the Scaled OFT marker ---------------------------------

const OT_Q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const OT_CONV = 'down_blocks.0.resnets.0.conv1';
const kohyaName = (path: string) => `lora_unet_${path.replace(/\./g, '_')}`;
/** [module, base shape, in·kh·kw, block size, a Conv2d] of the SD 1.5 UNet layers the OFT file trains. */
const OT_MODULES: [string, number[], number, number, boolean][] = [[OT_Q, [8, 12], 12, 4, false], [OT_CONV, [4, 2, 3, 3], 18, 6, true]];
/** OneTrainer commits by period (onetrainer-revisions' lists) and revision texts that name no commit. */
const FIRST_SERIES = ['1336b9b8', '607470f7', '75ee0917', '86ae3811'];
const WITH_COFT = ['b46986d6', '7c255ac4', '7c255ac4afac', '3374137f'];
const LATER = ['e928ddab', '23df3832', 'deadbeef0'];
const NOT_COMMITS = ['git not installed', '', 'master', 'v1.0', '7c255ac4-dirty', '7c25', 'zzzzzzzz', '7c255ac4 7c255ac4'];
type OtConfig = 'none' | 'coft-on' | 'coft-default' | 'coft-off' | 'no-coft' | 'not-json' | 'array' | 'null' | 'lora' | 'coft-string' | 'eps-negative' | 'eps-zero' | 'eps-string';

const otConfigText = (c: OtConfig, eps: number): string | undefined => {
  const base = { __version: 9, training_method: 'LORA', model_type: 'STABLE_DIFFUSION_15', peft_type: 'OFT_2', oft_block_size: 4, oft_block_share: false };
  switch (c) {
    case 'none': return undefined;
    case 'coft-on': return JSON.stringify({ ...base, oft_coft: true, coft_eps: eps });
    case 'coft-default': return JSON.stringify({ ...base, oft_coft: true });
    case 'coft-off': return JSON.stringify({ ...base, oft_coft: false, coft_eps: eps });
    case 'no-coft': return JSON.stringify(base);
    case 'not-json': return '{"peft_type": "OFT_2", oft_coft: true';
    case 'array': return JSON.stringify([{ ...base, oft_coft: true }]);
    case 'null': return 'null';
    case 'lora': return JSON.stringify({ ...base, peft_type: 'LORA', oft_coft: true });
    case 'coft-string': return JSON.stringify({ ...base, oft_coft: 'true' });
    case 'eps-negative': return JSON.stringify({ ...base, oft_coft: true, coft_eps: -eps });
    case 'eps-zero': return JSON.stringify({ ...base, oft_coft: true, coft_eps: 0 });
    case 'eps-string': return JSON.stringify({ ...base, oft_coft: true, coft_eps: String(eps) });
  }
};

export const onetrainerOftWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    revision: fc.oneof(
      { arbitrary: fc.constantFrom(...FIRST_SERIES), weight: 3 }, { arbitrary: fc.constantFrom(...WITH_COFT), weight: 3 }, { arbitrary: fc.constantFrom(...LATER), weight: 2 },
      { arbitrary: fc.constantFrom(...NOT_COMMITS, undefined), weight: 2 }, { arbitrary: fc.constantFrom('7C255AC4', ' 86ae3811\n'), weight: 1 },
    ),
    config: fc.oneof(
      { arbitrary: fc.constantFrom<OtConfig>('none', 'coft-on', 'coft-default', 'coft-off', 'no-coft'), weight: 3 },
      { arbitrary: fc.constantFrom<OtConfig>('not-json', 'array', 'null', 'lora', 'coft-string', 'eps-negative', 'eps-zero', 'eps-string'), weight: 1 },
    ),
    eps: fc.constantFrom(0.05, 0.2, 1),
    // The Scaled OFT marker on every module (its value: OneTrainer's True, or a stray one).
    scaled: fc.constantFrom<number | undefined>(undefined, undefined, undefined, undefined, 1, 1, 0, 2),
    share: fc.boolean(), spread: fc.constantFrom(0.05, 0.3), seed: fc.integer(),
  })
  .map(({ revision, config, eps, scaled, share, spread, seed }) => {
    const rand = seededRandom(seed);
    const base: FixtureTensor[] = OT_MODULES.flatMap(([m, shape]) => [st(`${m}.weight`, 'F16', shape, vals(rand, shape.reduce((a, b) => a * b, 1), 'F16')), st(`${m}.bias`, 'F16', [shape[0]], vals(rand, shape[0], 'F16'))]);
    const oft: FixtureTensor[] = OT_MODULES.flatMap(([m, , inF, b]) => {
      const rows = share ? 1 : inF / b, n = (b * (b - 1)) / 2;
      return [
        st(`${kohyaName(m)}.oft_R.weight`, 'BF16', [rows, n], Array.from({ length: rows * n }, () => roundForDType((rand() * 2 - 1) * spread, 'BF16'))),
        ...(scaled === undefined ? [] : [st(`${kohyaName(m)}.oft_R.scaled_oft`, 'BOOL' as FixtureDType, [], [scaled])]),
      ];
    });
    const metadata: Record<string, string> = {
      'modelspec.sai_model_spec': '1.0.0', 'modelspec.architecture': 'stable-diffusion-v1/lora', 'modelspec.implementation': 'https://github.com/huggingface/diffusers',
      'modelspec.title': 'Stable Diffusion 1.5 LoRA', 'modelspec.date': '2026-12-07', ot_branch: 'master',
    };
    if (revision !== undefined) metadata.ot_revision = revision;
    const configText = otConfigText(config, eps);
    if (configText !== undefined) metadata.ot_config = configText;
    // BOOL holds 0 or 1: a stray marker value is saved as bf16 (the saver's .to(dtype) writes it so).
    if (scaled !== undefined && scaled !== 1) for (const t of oft) if (t.name.endsWith('scaled_oft')) t.dtype = 'BF16';
    const files: Record<string, SpecFile> = {
      'v1-5-pruned.safetensors': { kind: 'safetensors', tensors: base },
      'ot/oft_sd15_OneTrainer.safetensors': { kind: 'safetensors', tensors: oft, metadata },
    };
    return {
      name: `onetrainer-oft: ot_revision ${JSON.stringify(revision)}, ot_config ${config}${scaled === undefined ? '' : `, scaled_oft ${scaled}`}${share ? ', block share' : ''}`,
      files, base: 'v1-5-pruned.safetensors', adapter: 'ot/oft_sd15_OneTrainer.safetensors', out: 'merged.safetensors', refusalsChecked: true,
      truth: (d: Decoded, w: number): Truth => otTruth(d, w),
    };
  });

/** OneTrainer's reading of its own header, from the rules its code followed (oft_utils.py across its history). */
function otTruth(d: Decoded, w: number): Truth {
  const header = d.headers.get('ot/oft_sd15_OneTrainer.safetensors') ?? {};
  const first = kohyaName(OT_MODULES[0][0]);
  const markers = OT_MODULES.map(([m]) => d.tensors.get(`ot/${kohyaName(m)}.oft_R.scaled_oft`)?.values[0]);
  if (markers.some((v) => v !== undefined && v !== 1)) return { kind: 'invalid', why: 'a scaled_oft marker that is not True', names: first };
  const scaled = markers.some((v) => v === 1);
  if (scaled && markers.some((v) => v === undefined)) return { kind: 'unknown', why: 'a marker on some modules only (a mutation)' };
  // `git rev-parse --short HEAD` writes lowercase hex; a commit's leading 7–40 digits, case and surrounding blanks aside.
  const raw = header.ot_revision;
  const rev = raw?.trim().toLowerCase();
  const isCommit = rev !== undefined && /^[0-9a-f]{7,40}$/.test(rev);
  const of = (list: string[]) => isCommit && list.some((c) => c.startsWith(rev) || rev.startsWith(c.slice(0, 8)));
  if (isCommit && !of(FIRST_SERIES) && !of(WITH_COFT) && !of(LATER)) return { kind: 'unknown', why: `a revision not drawn: ${raw}` };
  const firstSeries = of(FIRST_SERIES), hadCoft = firstSeries || of(WITH_COFT);
  // Scaled OFT (29 May 2026) proves the current series, COFT gone; a commit from before it contradicts it.
  if (scaled && hadCoft) return { kind: 'invalid', why: 'scaled_oft from a OneTrainer before Scaled OFT', names: first };
  if (!scaled && !isCommit) return { kind: 'invalid', why: `ot_revision ${JSON.stringify(raw)} names no commit: which series cannot be told`, names: first };
  let coftEps: number | undefined;
  if (hadCoft && !scaled) {
    const text = header.ot_config;
    if (text === undefined) return { kind: 'invalid', why: 'COFT period, no ot_config', names: first };
    let c: unknown;
    try {
      c = JSON.parse(text);
    } catch {
      return { kind: 'invalid', why: 'ot_config not JSON', names: first };
    }
    if (!isObject(c) || c.peft_type !== 'OFT_2' || (c.oft_coft !== undefined && typeof c.oft_coft !== 'boolean')) return { kind: 'invalid', why: 'ot_config not OneTrainer\'s OFT_2 config', names: first };
    if (c.oft_coft === true) {
      if (c.coft_eps === undefined) coftEps = 1e-4; // TrainConfig's default
      else if (typeof c.coft_eps === 'number' && Number.isFinite(c.coft_eps) && c.coft_eps > 0) coftEps = c.coft_eps;
      else return { kind: 'invalid', why: `coft_eps ${JSON.stringify(c.coft_eps)}`, names: first };
    }
  }
  const merged = new Map<string, ExpectedMerge>();
  for (const [m, shape, inF, b, conv] of OT_MODULES) {
    const W = d.tensors.get(`/${m}.weight`)!.values, R = d.tensors.get(`ot/${kohyaName(m)}.oft_R.weight`)!;
    if (R.shape.length !== 2 || R.shape[1] !== (b * (b - 1)) / 2 || (R.shape[0] !== 1 && R.shape[0] !== inF / b) || W.length !== shape.reduce((a, x) => a * x, 1)) return { kind: 'unknown', why: 'shapes mutated' };
    const values = otRotated(W, R.values, { rows: R.shape[0], b, inF, conv, scaled }, w, coftEps, firstSeries);
    let magnitude = 0;
    for (const x of W) magnitude = Math.max(magnitude, Math.abs(x) * b * 4);
    merged.set(`/${m}.weight`, { values, magnitude });
  }
  return { kind: 'expected', merged };
}

// --- DeepSeek-V3.1 / V3.2: F32 weight_scale_inv under scale_fmt "ue8m0" -----------------------------

const V3_H = 160, V3_Q = 48, V3_I = 24;
/** [module, out, in] of the fp8 weights a PEFT LoRA in transformers' DeepseekV3 names lands on. */
const V3_TARGETS: [string, number, number][] = [['model.layers.0.self_attn.q_a_proj', V3_Q, V3_H], ['model.layers.0.mlp.experts.0.down_proj', V3_H, V3_I]];
type V3Hostile = 'not-pow2' | 'nan' | 'inf' | 'negative' | 'grid-shape' | 'grid-dtype';

export const deepseekV3Ue8m0World: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 2, 4), seed: fc.integer(), untouched: fc.boolean(),
    hostile: fc.option(fc.record({ what: fc.constantFrom<V3Hostile>('not-pow2', 'nan', 'inf', 'negative', 'grid-shape', 'grid-dtype'), on: fc.nat(V3_TARGETS.length - 1), block: fc.nat(3) }), { freq: 2 }),
  })
  .map(({ r, alpha, seed, untouched, hostile }) => {
    const rand = seededRandom(seed);
    const e4m3 = () => { const b = Math.floor(rand() * 256); return (b & 0x78) === 0x78 ? b & 0xb7 : b; };
    const fp8 = (m: string, out: number, inF: number, bad?: { what: V3Hostile; block: number }): FixtureTensor[] => {
      let grid = [Math.ceil(out / 128), Math.ceil(inF / 128)];
      const scales = Array.from({ length: grid[0] * grid[1] }, () => 2 ** (-12 + Math.floor(rand() * 6)));
      const at = (bad?.block ?? 0) % scales.length;
      if (bad?.what === 'not-pow2') scales[at] = 0.0005;
      if (bad?.what === 'nan') scales[at] = NaN;
      if (bad?.what === 'inf') scales[at] = Infinity;
      if (bad?.what === 'negative') scales[at] = -scales[at];
      if (bad?.what === 'grid-shape') grid = [grid[1], grid[0]];
      return [
        st(`${m}.weight`, 'F8_E4M3', [out, inF], Uint8Array.from({ length: out * inF }, e4m3)),
        bad?.what === 'grid-dtype' ? st(`${m}.weight_scale_inv`, 'BF16', grid, scales) : st(`${m}.weight_scale_inv`, 'F32', grid, new Uint8Array(Float32Array.from(scales).buffer)),
      ];
    };
    const base: FixtureTensor[] = [
      st('model.embed_tokens.weight', 'BF16', [8, V3_H], vals(rand, 8 * V3_H)),
      ...V3_TARGETS.flatMap(([m, out, inF], k) => fp8(m, out, inF, hostile?.on === k ? hostile : undefined)),
      // An fp8 weight no module lands on, its scale no power of two where drawn: copied as stored.
      ...fp8('model.layers.0.self_attn.o_proj', V3_H, 40, untouched ? { what: 'not-pow2', block: 0 } : undefined),
      st('model.layers.0.mlp.gate.e_score_correction_bias', 'F32', [2], [0.125, -0.5]),
      st('lm_head.weight', 'BF16', [8, V3_H], vals(rand, 8 * V3_H)),
    ];
    const factor = (n: number) => Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * 64) / 1024);
    const adapter = V3_TARGETS.flatMap(([m, out, inF]) => [st(`base_model.model.${m}.lora_A.weight`, 'F32', [r, inF], factor(r * inF)), st(`base_model.model.${m}.lora_B.weight`, 'F32', [out, r], factor(out * r))]);
    const files: Record<string, SpecFile> = {
      'v31/config.json': {
        kind: 'json', value: {
          architectures: ['DeepseekV3ForCausalLM'], model_type: 'deepseek_v3', torch_dtype: 'bfloat16', hidden_size: V3_H, q_lora_rank: V3_Q, num_hidden_layers: 1,
          n_routed_experts: 1, moe_intermediate_size: V3_I, vocab_size: 8,
          quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', scale_fmt: 'ue8m0', weight_block_size: [128, 128] },
        },
      },
      'v31/model.safetensors': { kind: 'safetensors', tensors: base },
      'peft/adapter_config.json': { kind: 'json', value: { peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'deepseek-ai/DeepSeek-V3.1', peft_version: '0.17.1', r, lora_alpha: alpha, target_modules: ['q_a_proj', 'down_proj'] } },
      'peft/adapter_model.safetensors': { kind: 'safetensors', tensors: adapter },
    };
    return {
      name: `deepseek-v3-ue8m0: F32 weight_scale_inv${untouched ? ', an untouched one no power of two' : ''}${hostile ? `, ${V3_TARGETS[hostile.on][0].split('.').pop()} ${hostile.what}` : ''}`,
      files, base: 'v31', adapter: 'peft', out: 'merged', refusalsChecked: true,
      truth: (d: Decoded, w: number): Truth => {
        const scale = configScale(d, 'peft/adapter_config.json', 'lora_alpha', r, true);
        if (typeof scale !== 'number') return scale;
        const merged = new Map<string, ExpectedMerge>();
        for (const [m, out, inF] of V3_TARGETS) {
          const wt = d.tensors.get(`v31/${m}.weight`)!, sc = d.tensors.get(`v31/${m}.weight_scale_inv`)!;
          const gr = Math.ceil(out / 128), gc = Math.ceil(inF / 128);
          if ((sc.dtype !== 'F32' && sc.dtype !== 'BF16') || sc.shape.length !== 2 || sc.shape[0] !== gr || sc.shape[1] !== gc) return { kind: 'invalid', why: `${m}: a scale grid not (⌈out/128⌉, ⌈in/128⌉)`, names: `${m}.weight_scale_inv` };
          // scale_fmt "ue8m0": every scale 2^k (DeepSeek's kernels compute no other); NaN, ±Inf, negatives and others contradict the config.
          if (!sc.values.every((x) => x > 0 && Number.isFinite(x) && 2 ** Math.round(Math.log2(x)) === x)) return { kind: 'invalid', why: `${m}: a scale no power of two under ue8m0`, names: `${m}.weight_scale_inv` };
          const W = wt.values.map((c, i) => c * sc.values[Math.floor(Math.floor(i / inF) / 128) * gc + Math.floor((i % inF) / 128)]);
          const a = d.tensors.get(`peft/base_model.model.${m}.lora_A.weight`)!, b = d.tensors.get(`peft/base_model.model.${m}.lora_B.weight`)!;
          const v = mergedF32(W, { layer: m, a, b, rank: r, scale: w * scale, rows: out, cols: inF });
          if (!v) return { kind: 'invalid', why: `${m}: a merged value past f32` };
          const { codes, scales } = quantizeUe8m0Blocks(v, out, inF);
          if (!scales.every((q) => q >= 2 ** -126 && q <= 2 ** 127)) return { kind: 'unknown', why: `${m}: a scale past f32's normals` };
          merged.set(`v31/${m}.weight`, { values: Float64Array.from(codes, (c) => f8Value(c)), magnitude: 0, exact: true });
          merged.set(`v31/${m}.weight_scale_inv`, { values: Float64Array.from(scales), magnitude: 0, exact: true });
        }
        return { kind: 'expected', merged };
      },
    };
  });
