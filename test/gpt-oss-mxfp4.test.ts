/**
 * gpt-oss as openai ships it (config.json `quantization_config.quant_method: "mxfp4"`, each
 * layer's experts as `gate_up_proj_blocks` / `_scales` and `down_proj_blocks` / `_scales`) with a
 * PEFT adapter trained as the OpenAI cookbook's recipe trains it: on the model loaded with
 * Mxfp4Config(dequantize=True), whose experts are bf16 parameters (E, in, out), LoRAs on the
 * attention and `target_parameters` on some layers' experts. The truth here is written plainly:
 * the MXFP4 decode from the FP4 table (transformers' FP4_VALUES, low nibble first, × 2^(scale −
 * 127), transposed to (E, in, out)), PEFT 0.17's `e i o` einsum, the sum in float64, rounded once
 * to bf16.
 */
import { join } from 'node:path';
import { readFileSync, existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { mergeBackends } from './helpers/merge-backends.js';
import { createBlobOutputTarget, mergeModel } from '../src/index.js';
import { mergeIntoFolder } from './helpers/merged-folder.js';
import { decodeSafetensors, decodeValues, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, prepareOne, randomTensor, readMergedFolder, type Files, type MergedFolder } from './helpers/hf-folder.js';
import { errorLines, runCli } from './helpers/cli.js';

const rand = seededRandom(20261206);
const backends = mergeBackends({ cpu: 'default' });
const temp = tempDirs();
afterAll(temp.removeAll);

// Sizes scaled down, shapes as gpt-oss's: hidden 96 (3 blocks of 32), intermediate 32, 3 experts.
const E = 3;
const H = 96;
const I = 32;
const LAYERS = 2;

/** transformers' FP4_VALUES: e2m1 by its 4-bit code, sign in bit 3. */
const FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

function bytes(name: string, shape: number[], pick: () => number): FixtureTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype: 'U8', shape, data: Uint8Array.from({ length: n }, pick) };
}

/** Scale bytes as trained weights have them (2^-10 … 2^-3), with a few tiny ones (2^-127 …, decoded to bf16 subnormals) and a few large. */
function scaleByte(): number {
  const u = rand();
  if (u < 0.03) return Math.floor(rand() * 3); // 0, 1, 2
  if (u < 0.05) return 127 + Math.floor(rand() * 4);
  return 117 + Math.floor(rand() * 8);
}

function gptOssBase(): FixtureTensor[] {
  const t: FixtureTensor[] = [randomTensor('model.embed_tokens.weight', [40, H], 'BF16', rand)];
  for (let l = 0; l < LAYERS; l++) {
    const p = `model.layers.${l}`;
    t.push(
      randomTensor(`${p}.input_layernorm.weight`, [H], 'BF16', rand),
      randomTensor(`${p}.self_attn.q_proj.weight`, [64, H], 'BF16', rand),
      randomTensor(`${p}.self_attn.q_proj.bias`, [64], 'BF16', rand),
      randomTensor(`${p}.self_attn.sinks`, [4], 'BF16', rand),
      randomTensor(`${p}.mlp.router.weight`, [E, H], 'BF16', rand),
      randomTensor(`${p}.mlp.router.bias`, [E], 'BF16', rand),
      bytes(`${p}.mlp.experts.gate_up_proj_blocks`, [E, 2 * I, H / 32, 16], () => Math.floor(rand() * 256)),
      bytes(`${p}.mlp.experts.gate_up_proj_scales`, [E, 2 * I, H / 32], scaleByte),
      randomTensor(`${p}.mlp.experts.gate_up_proj_bias`, [E, 2 * I], 'BF16', rand),
      bytes(`${p}.mlp.experts.down_proj_blocks`, [E, H, I / 32, 16], () => Math.floor(rand() * 256)),
      bytes(`${p}.mlp.experts.down_proj_scales`, [E, H, I / 32], scaleByte),
      randomTensor(`${p}.mlp.experts.down_proj_bias`, [E, H], 'BF16', rand),
    );
  }
  t.push(randomTensor('model.norm.weight', [H], 'BF16', rand), randomTensor('lm_head.weight', [40, H], 'BF16', rand));
  return t;
}

const CONFIG = {
  architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', torch_dtype: 'bfloat16', hidden_size: H, intermediate_size: I,
  num_hidden_layers: LAYERS, num_local_experts: E, experts_per_token: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16,
  vocab_size: 40, tie_word_embeddings: false, swiglu_limit: 7.0, layer_types: ['sliding_attention', 'full_attention'],
  quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'] },
};

const BASE = gptOssBase();
const BASE_FILES = hfModelFolder(BASE, CONFIG, { shards: 2 });
const STORED = new Map(BASE.map((t) => [t.name, t]));

/**
 * The parameter transformers makes of `<param>_blocks` and `_scales`: stored (E, out, in/32, 16)
 * nibbles, value 2k of a block the low nibble of byte k, × 2^(scale − 127); then (E, in, out).
 */
function decodeByHand(param: string, stored = STORED): { shape: number[]; values: Float64Array } {
  const blocks = stored.get(`${param}_blocks`)!;
  const scales = stored.get(`${param}_scales`)!;
  const [experts, out, groups] = blocks.shape;
  const inF = groups * 32;
  const values = new Float64Array(experts * inF * out);
  for (let e = 0; e < experts; e++) {
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inF; i++) {
        const g = Math.floor(i / 32);
        const byte = (blocks.data as Uint8Array)[((e * out + o) * groups + g) * 16 + Math.floor((i % 32) / 2)];
        const code = i % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
        const scale = (scales.data as Uint8Array)[(e * out + o) * groups + g];
        values[(e * inF + i) * out + o] = FP4[code] * Math.pow(2, scale - 127);
      }
    }
  }
  return { shape: [experts, inF, out], values };
}

/** PEFT 0.17's delta on gpt-oss's (E, in, out) parameter (`e i o`): W[e][i][o] += s·Σ_k B[o][k·E + e]·A[e·r + k][i]. */
function addExpertDelta(w: Float64Array, shape: number[], a: DecodedTensor, b: DecodedTensor, r: number, s: number): Float64Array {
  const [experts, inF, out] = shape;
  const sum = Float64Array.from(w);
  for (let e = 0; e < experts; e++) {
    for (let i = 0; i < inF; i++) {
      for (let o = 0; o < out; o++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += b.values[o * r * experts + k * experts + e] * a.values[(e * r + k) * inF + i];
        sum[(e * inF + i) * out + o] += s * d;
      }
    }
  }
  return sum;
}

/** Every element is `truth` rounded once to the tensor's dtype. */
function expectRoundedOnce(key: string, got: DecodedTensor | undefined, truth: Float64Array, dtype: 'BF16' | 'F32', shape: number[]): void {
  expect(got, key).toBeDefined();
  expect([got!.dtype, got!.shape], key).toEqual([dtype, shape]);
  let wrong = 0;
  let first = '';
  for (let j = 0; j < truth.length; j++) {
    const want = roundForDType(truth[j], dtype);
    // Signed: a code of −0 decodes to −0 (transformers' FP4_VALUES), kept where no ΔW is added.
    if (Object.is(got!.values[j], want)) continue;
    if (!wrong) first = `[${j}]: got ${got!.values[j]}, want ${want}`;
    wrong++;
  }
  expect(wrong, `${key}: ${wrong} elements not rounded once from the truth, first ${first}`).toBe(0);
}

const ATTN = (l: number) => `base_model.model.model.layers.${l}.self_attn.q_proj`;
const EXPERTS = (l: number) => `base_model.model.model.layers.${l}.mlp.experts`;

/**
 * The cookbook's adapter, scaled down: LoRAs on the attention's q_proj of every layer and, on
 * layer 1 only, target_parameters gate_up_proj and down_proj (one module, two nested wrappers:
 * gate_up_proj registered first, so its is the inner one, saved under `base_layer`).
 */
function cookbookAdapter(r: number, alpha: number): { files: Files; tensors: FixtureTensor[] } {
  const tensors: FixtureTensor[] = [];
  for (let l = 0; l < LAYERS; l++) {
    tensors.push(randomTensor(`${ATTN(l)}.lora_A.weight`, [r, H], 'F32', rand, 0.3), randomTensor(`${ATTN(l)}.lora_B.weight`, [64, r], 'F32', rand, 0.3));
  }
  tensors.push(
    randomTensor(`${EXPERTS(1)}.base_layer.lora_A.weight`, [r * E, H], 'F32', rand, 0.3),
    randomTensor(`${EXPERTS(1)}.base_layer.lora_B.weight`, [2 * I, r * E], 'F32', rand, 0.3),
    randomTensor(`${EXPERTS(1)}.lora_A.weight`, [r * E, I], 'F32', rand, 0.3),
    randomTensor(`${EXPERTS(1)}.lora_B.weight`, [H, r * E], 'F32', rand, 0.3),
  );
  const config = {
    r, lora_alpha: alpha, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', base_model_name_or_path: 'openai/gpt-oss-20b',
    target_modules: ['q_proj'], target_parameters: ['1.mlp.experts.gate_up_proj', '1.mlp.experts.down_proj'], peft_version: '0.17.1',
  };
  return { files: peftFolder(config, tensors), tensors };
}

/** The merged model against the truth: experts of layer 1 with their LoRAs, layer 0's decoded alone, attention merged, the rest as stored. */
function expectMergedModel(merged: MergedFolder, adapter: FixtureTensor[], r: number, s: number, dtype: 'BF16' | 'F32', base = BASE): void {
  const a = decoded(adapter);
  const b = decoded(base);
  const stored = new Map(base.map((t) => [t.name, t]));
  for (let l = 0; l < LAYERS; l++) {
    for (const [param, wrapper] of [['gate_up_proj', `${EXPERTS(l)}.base_layer`], ['down_proj', EXPERTS(l)]] as const) {
      const key = `model.layers.${l}.mlp.experts.${param}`;
      const { shape, values } = decodeByHand(key, stored);
      const truth = l === 1 ? addExpertDelta(values, shape, a.get(`${wrapper}.lora_A.weight`)!, a.get(`${wrapper}.lora_B.weight`)!, r, s) : values;
      expectRoundedOnce(key, merged.tensors.get(key), truth, dtype, shape);
      expect(merged.tensors.has(`${key}_blocks`) || merged.tensors.has(`${key}_scales`), key).toBe(false);
    }
    const q = `model.layers.${l}.self_attn.q_proj.weight`;
    const delta = new Float64Array(64 * H);
    const A = a.get(`${ATTN(l)}.lora_A.weight`)!;
    const B = a.get(`${ATTN(l)}.lora_B.weight`)!;
    for (let o = 0; o < 64; o++) for (let i = 0; i < H; i++) for (let k = 0; k < r; k++) delta[o * H + i] += B.values[o * r + k] * A.values[k * H + i];
    expectRoundedOnce(q, merged.tensors.get(q), b.get(q)!.values.map((w, j) => w + s * delta[j]), dtype, [64, H]);
  }
  // Everything else as stored (biases included: transformers keeps them float, PEFT never wraps them).
  for (const [name, t] of b) {
    if (/experts\.(gate_up_proj|down_proj)_(blocks|scales)$/.test(name) || name.endsWith('q_proj.weight')) continue;
    if (dtype === 'BF16') expect(merged.tensors.get(name)?.bytes, name).toEqual(t.bytes);
    else expect(merged.tensors.get(name)?.values, name).toEqual(t.values);
  }
  expect(merged.tensors.size).toBe(b.size - 2 * LAYERS);
  // transformers' dequantized load drops the quantization config (HfQuantizer.remove_quantization_config); the rest is kept.
  const { quantization_config: _dropped, ...rest } = CONFIG;
  expect(merged.json('config.json')).toEqual({ ...rest, ...(dtype === 'F32' ? { torch_dtype: 'float32', dtype: 'float32' } : {}) });
  const index = merged.json('model.safetensors.index.json');
  expect(Object.keys(index.weight_map).sort()).toEqual([...merged.tensors.keys()].sort());
}

describe('gpt-oss with MXFP4 experts and a LoRA on them (target_parameters)', () => {
  for (const kind of ['cpu', 'webgpu'] as const) {
    for (const r of [1, 3]) {
      it(`decodes every MXFP4 parameter as transformers does, merges the expert LoRAs before the one rounding, writes bf16 and drops quantization_config (r=${r}, ${kind})`, async () => {
        const backend = backends[kind];
        if (!backend) throw new Error(`no ${kind} backend`);
        const { files, tensors } = cookbookAdapter(r, 2 * r + 1);
        const prepared = await prepareOne(BASE_FILES, files);
        expect(prepared.plan.problems).toEqual([]);
        expect(prepared.plan.notes.filter((n) => n.includes('MXFP4'))).toEqual([
          'the base stores its 4 expert parameters (such as model.layers.0.mlp.experts.gate_up_proj) as MXFP4 (_blocks and _scales) and an adapter changes them: '
            + 'every one is decoded exactly as transformers does with Mxfp4Config(dequantize=True) (e2m1 code × 2^(scale − 127), each expert (in, out)), '
            + 'adapters are merged into those values, and each is written under its own name in bf16 (or the --dtype asked), as merge_and_unload saves it; '
            + 'config.json drops quantization_config. The output is larger: those parameters take 111 KB in bf16 instead of 29.4 KB (3.8×)', // 2 layers × (3·96·64 + 3·32·96) values: × 2 bytes, × 17/32 bytes
        ]);
        const merged = await mergeIntoFolder(prepared, backend, undefined, r === 3 ? 4096 : undefined);
        expectMergedModel(merged, tensors, r, (2 * r + 1) / r, 'BF16');
      });
    }
  }

  it('--dtype f32 writes every tensor f32, the experts decoded and merged exactly the same way', async () => {
    const { files, tensors } = cookbookAdapter(2, 4);
    const merged = await mergeIntoFolder(await prepareOne(BASE_FILES, files), backends.cpu!, 'F32');
    expectMergedModel(merged, tensors, 2, 2, 'F32');
  });

  it('the fixture holds what the decode must get right: scales that give bf16 subnormals, codes of −0, every value exact in bf16', () => {
    // Scale bytes 0–2 give values down to 0.5·2^-127.
    const { values } = decodeByHand('model.layers.0.mlp.experts.down_proj');
    const tiny = values.filter((v) => v !== 0 && Math.abs(v) < 2 ** -126);
    expect(tiny.length).toBeGreaterThan(0);
    expect(values.some((v) => Object.is(v, -0))).toBe(true);
    for (const v of values) expect(roundForDType(v, 'BF16')).toBe(v);
  });

  it('refused in one line: a scale byte of 255 (E8M0 NaN), a value past bf16, --dtype f8_e4m3; nothing is written', async () => {
    const scalesKey = 'model.layers.0.mlp.experts.down_proj_scales';
    const nan = BASE.map((t) => (t.name === scalesKey ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (v, j) => (j === 5 ? 255 : v)) } : t));
    const { files } = cookbookAdapter(1, 2);
    const output = createBlobOutputTarget();
    const prepared = await prepareOne(hfModelFolder(nan, CONFIG), files);
    await expect(mergeModel({ prepared, output, backend: backends.cpu! })).rejects.toThrow(
      `base: tensor "${scalesKey}" holds 255 (E8M0's NaN) at [0, 5, 0]; transformers would decode its block to Inf, and its zero codes to NaN`,
    );
    await prepared.close();
    expect(output.files()).toEqual([]);
    // Scale byte 254 under code 7 (6): 6·2^127, past bf16's largest value (transformers: Inf).
    const blocksKey = 'model.layers.0.mlp.experts.down_proj_blocks';
    const inf = BASE.map((t) => (t.name === scalesKey ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (v, j) => (j === 5 ? 254 : v)) }
      : t.name === blocksKey ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (v, j) => (j === 5 * 16 ? 0x77 : v)) } : t));
    // down_proj has one block a row (in 32): block 5 is expert 0's output 5, its code k the value at
    // [0, k, 5]. Under 2^127 every code of magnitude 2 or more passes bf16: each is counted.
    const block = (inf.find((t) => t.name === blocksKey)!.data as Uint8Array).subarray(5 * 16, 6 * 16);
    const codes = Array.from({ length: 32 }, (_, k) => (k % 2 ? block[k >> 1] >> 4 : block[k >> 1] & 15));
    const past = codes.map((c, k) => [k, Math.abs(FP4[c])]).filter(([, m]) => m * 2 ** 127 > (2 - 2 ** -7) * 2 ** 127);
    expect(past.slice(0, 2)).toEqual([[0, 6], [1, 6]]);
    const [first, last] = [past[0], past[past.length - 1]];
    const overflow = await prepareOne(hfModelFolder(inf, CONFIG), files);
    await expect(mergeModel({ prepared: overflow, output: createBlobOutputTarget(), backend: backends.cpu! })).rejects.toThrow(
      `base: model.layers.0.mlp.experts.down_proj holds ${past.length} values that overflow bf16 (first model.layers.0.mlp.experts.down_proj[0, ${first[0]}, 5] = ${first[1]}·2^127, ` +
        `last model.layers.0.mlp.experts.down_proj[0, ${last[0]}, 5] = ${last[1]}·2^127); transformers would decode them to Inf`,
    );
    await overflow.close();
    const f8 = await prepareOne(BASE_FILES, files);
    await expect(mergeModel({ prepared: f8, output: createBlobOutputTarget(), backend: backends.cpu!, outDtype: 'F8_E4M3' })).rejects.toThrow(
      'base: its MXFP4 weights are written only dequantized (re-quantizing them to MXFP4 is not supported); merge with --dtype bf16 (or f16, f32)',
    );
    await f8.close();
  });

  it('without a LoRA on the experts the MXFP4 tensors and quantization_config are kept as they are', async () => {
    const tensors = [randomTensor(`${ATTN(0)}.lora_A.weight`, [2, H], 'F32', rand), randomTensor(`${ATTN(0)}.lora_B.weight`, [64, 2], 'F32', rand)];
    const prepared = await prepareOne(BASE_FILES, peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, tensors));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes.some((n) => n.includes('MXFP4'))).toBe(false);
    const merged = await mergeIntoFolder(prepared, backends.cpu!);
    for (const t of BASE) if (t.dtype === 'U8') expect(merged.tensors.get(t.name)?.bytes, t.name).toEqual(decoded([t]).get(t.name)!.bytes);
    expect(merged.json('config.json').quantization_config).toEqual(CONFIG.quantization_config);
  });
});

/**
 * Unsloth trains gpt-oss with its experts split into Linear layers (`experts.gate_up_projs.K`,
 * Linear(hidden, 2·inter), `down_projs.K`, Linear(inter, hidden)); its merge into openai's MXFP4
 * checkpoint dequantizes each parameter to (E, in, out) and folds expert K's LoRA into W[K]ᵀ, so
 * ΔWᵀ lands on slab K of the decoded parameter, gate and up columns interleaved as they are.
 */
describe("gpt-oss with MXFP4 experts and Unsloth's LoRA on one expert's Linear layer (gate_up_projs.K, down_projs.K)", () => {
  const SPLIT = [
    { path: 'model.layers.1.mlp.experts.gate_up_projs.2', key: 'model.layers.1.mlp.experts.gate_up_proj', expert: 2, out: 2 * I, inF: H },
    { path: 'model.layers.0.mlp.experts.down_projs.0', key: 'model.layers.0.mlp.experts.down_proj', expert: 0, out: H, inF: I },
  ];
  for (const [kind, dtype] of [['cpu', 'BF16'], ['webgpu', 'BF16'], ['cpu', 'F32']] as const) {
    it(`decodes every MXFP4 parameter and adds each expert's ΔWᵀ on its slab before the one rounding to ${dtype} (${kind})`, async () => {
      const backend = backends[kind];
      if (!backend) throw new Error(`no ${kind} backend`);
      const r = 2;
      const tensors = SPLIT.flatMap((m) => [
        randomTensor(`base_model.model.${m.path}.lora_A.weight`, [r, m.inF], 'F32', rand, 0.3),
        randomTensor(`base_model.model.${m.path}.lora_B.weight`, [m.out, r], 'F32', rand, 0.3),
      ]);
      const config = { r, lora_alpha: 3, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', base_model_name_or_path: 'unsloth/gpt-oss-20b', target_modules: ['gate_up_projs.2', 'down_projs.0'], peft_version: '0.17.1' };
      const prepared = await prepareOne(BASE_FILES, peftFolder(config, tensors));
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backend, dtype === 'F32' ? 'F32' : undefined, 4096);
      const a = decoded(tensors);
      for (let l = 0; l < LAYERS; l++) {
        for (const param of ['gate_up_proj', 'down_proj']) {
          const key = `model.layers.${l}.mlp.experts.${param}`;
          const { shape, values } = decodeByHand(key);
          const [, inF, out] = shape;
          for (const m of SPLIT.filter((x) => x.key === key)) {
            const A = a.get(`base_model.model.${m.path}.lora_A.weight`)!;
            const B = a.get(`base_model.model.${m.path}.lora_B.weight`)!;
            // W[K][i][o] += α/r·Σ_k B[o][k]·A[k][i]: the Linear's (out, in) weight is slab K transposed.
            for (let o = 0; o < out; o++) {
              for (let i = 0; i < inF; i++) {
                let d = 0;
                for (let k = 0; k < r; k++) d += B.values[o * r + k] * A.values[k * inF + i];
                values[(m.expert * inF + i) * out + o] += (3 / r) * d;
              }
            }
          }
          expectRoundedOnce(key, merged.tensors.get(key), values, dtype, shape);
        }
      }
      for (const [name, t] of decoded(BASE)) {
        if (/experts\.(gate_up_proj|down_proj)_(blocks|scales)$/.test(name)) continue;
        if (dtype === 'BF16') expect(merged.tensors.get(name)?.bytes, name).toEqual(t.bytes);
        else expect(merged.tensors.get(name)?.values, name).toEqual(t.values);
      }
      expect(merged.json('config.json').quantization_config).toBeUndefined();
    });
  }
});

/** e2m1 codes whose value times 2^(scale − 127) bf16 holds: all 16 up to scale 252; then |code| ≤ 3 (253) and ≤ 1.5 (254), since 4·2^126 and 2·2^127 are 2^128, Inf in transformers' tensor. */
function finiteCodes(scale: number): number[] {
  const largest = scale <= 252 ? 6 : scale === 253 ? 3 : 1.5;
  return FP4.flatMap((v, code) => (Math.abs(v) <= largest ? [code] : []));
}

/**
 * Layer 0's gate_up_proj with every byte value (code pair) its scale allows under the scale bytes
 * at E8M0's edges and around 127: 0 (values down to 0.5·2^-127, bf16 subnormals), 1, 2, 126, 127
 * (the codes themselves), 128, 252, 253 and 254 (the largest finite values); its blocks scattered
 * over the experts, rows and groups, the rest random.
 */
function edgeBase(): FixtureTensor[] {
  const key = 'model.layers.0.mlp.experts.gate_up_proj';
  const blocks = Uint8Array.from({ length: E * 2 * I * (H / 32) * 16 }, () => Math.floor(rand() * 256));
  const scales = Uint8Array.from({ length: E * 2 * I * (H / 32) }, scaleByte);
  let j = 0;
  for (const scale of [0, 1, 2, 126, 127, 128, 252, 253, 254]) {
    const codes = finiteCodes(scale);
    const pairs = codes.flatMap((lo) => codes.map((hi) => lo | (hi << 4)));
    for (let at = 0; at < pairs.length; at += 16, j++) {
      const block = (j * 37) % scales.length; // 37 is prime to the block count: the edge blocks spread over the tensor
      scales[block] = scale;
      for (let k = 0; k < 16; k++) blocks[block * 16 + k] = pairs[(at + k) % pairs.length];
    }
  }
  return BASE.map((t) => (t.name === `${key}_blocks` ? { ...t, data: blocks } : t.name === `${key}_scales` ? { ...t, data: scales } : t));
}

describe('every MXFP4 byte under every edge scale byte', () => {
  const key = 'model.layers.0.mlp.experts.gate_up_proj';
  const base = edgeBase();

  it('the fixture holds all 256 byte values under scales 0, 127 and 252, the finite ones under 253 and 254', () => {
    const blocks = base.find((t) => t.name === `${key}_blocks`)!.data as Uint8Array;
    const scales = base.find((t) => t.name === `${key}_scales`)!.data as Uint8Array;
    for (const scale of [0, 1, 2, 126, 127, 128, 252, 253, 254]) {
      const seen = new Set<number>();
      scales.forEach((s, block) => { if (s === scale) for (let k = 0; k < 16; k++) seen.add(blocks[block * 16 + k]); });
      expect(seen.size, `scale ${scale}`).toBe(finiteCodes(scale).length ** 2);
    }
    const { values } = decodeByHand(key, new Map(base.map((t) => [t.name, t])));
    expect(values.some((v) => Math.abs(v) === 0.5 * 2 ** -127)).toBe(true);
    expect(values.some((v) => Math.abs(v) === 1.5 * 2 ** 127)).toBe(true);
  });

  it('merged with slabs that end mid-expert, they decode as transformers does; the view read at any bf16 offset gives the same values', async () => {
    const { files, tensors } = cookbookAdapter(2, 4);
    const prepared = await prepareOne(hfModelFolder(base, CONFIG, { shards: 2 }), files);
    // Reads that start and end inside rows, span rows, and cross from one expert into the next.
    const truth = decodeByHand(key, new Map(base.map((t) => [t.name, t]))).values;
    const rowBytes = 2 * I * 2;
    for (const [start, length] of [[0, truth.length * 2], [2, rowBytes - 4], [rowBytes - 2, 3 * rowBytes + 4], [H * rowBytes - 6, 2 * rowBytes + 10], [5 * rowBytes + 6, 2]]) {
      const got = decodeValues(await prepared.base.readPart(key, start, length), 'BF16');
      const want = truth.subarray(start / 2, (start + length) / 2);
      expect(got.length).toBe(want.length);
      const wrong = [...got].findIndex((v, j) => !Object.is(v, want[j]));
      expect(wrong, `bytes ${start}+${length}: value ${wrong}: got ${got[wrong]}, want ${want[wrong]}`).toBe(-1);
    }
    const merged = await mergeIntoFolder(prepared, backends.cpu!, undefined, 3000);
    expectMergedModel(merged, tensors, 2, 2, 'BF16', base);
  });

  it('refused in one line: scale 255 (E8M0\'s NaN) under any codes, zeros too, and each code whose value overflows bf16 under 253 and 254', async () => {
    const { files } = cookbookAdapter(1, 2);
    const cases: { scale: number; byte: number; error: string }[] = [
      { scale: 255, byte: 0x00, error: `base: tensor "${key}_scales" holds 255 (E8M0's NaN) at [1, 7, 2]; transformers would decode its block to Inf, and its zero codes to NaN` },
      { scale: 255, byte: 0x21, error: `base: tensor "${key}_scales" holds 255 (E8M0's NaN) at [1, 7, 2]; transformers would decode its block to Inf, and its zero codes to NaN` },
    ];
    for (const scale of [253, 254]) {
      for (let code = 0; code < 16; code++) {
        if (finiteCodes(scale).includes(code)) continue;
        // The code as the high nibble of byte 3: input 2·3 + 1 of group 2.
        cases.push({ scale, byte: code << 4, error: `base: ${key}[1, ${2 * 32 + 7}, 7] = ${Math.abs(FP4[code])}·2^${scale - 127} overflows bf16 (transformers would decode it to Inf)` });
      }
    }
    expect(cases.length).toBe(2 + 4 + 8);
    const block = (1 * 2 * I + 7) * (H / 32) + 2; // expert 1, stored row 7, group 2
    for (const c of cases) {
      const bad = BASE.map((t) => (t.name === `${key}_scales` ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (v, j) => (j === block ? c.scale : v)) }
        : t.name === `${key}_blocks` ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (v, j) => (j >= block * 16 && j < block * 16 + 16 ? (j === block * 16 + 3 ? c.byte : 0) : v)) } : t));
      const prepared = await prepareOne(hfModelFolder(bad, CONFIG), files);
      await expect(prepared.base.readPart(key, 0, 2 * 2 * I * H * E), `scale ${c.scale}, byte ${c.byte}`).rejects.toThrow(c.error);
      await prepared.close();
    }
  });
});

describe('the CLI, end to end', () => {
  it('merges the cookbook adapter into the MXFP4 model: bf16 experts, no quantization_config; --dry-run says so', async () => {
    const base = temp.make(BASE_FILES);
    const { files, tensors } = cookbookAdapter(2, 16);
    const adapter = temp.make(files);
    const out = join(temp.make(), 'merged');
    const dry = await runCli(['merge', '--base', base, '--adapter', adapter, '--out', out, '--backend', 'cpu', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout + dry.stderr).toMatch(/stores its 4 expert parameters \(such as model\.layers\.0\.mlp\.experts\.gate_up_proj\) as MXFP4 .* written under its own name in bf16/);
    expect(existsSync(out)).toBe(false);
    const run = await runCli(['merge', '--base', base, '--adapter', adapter, '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    expect(errorLines(run.stderr)).toEqual([]);
    const files2 = new Map<string, Uint8Array>();
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    for (const shard of new Set(Object.values(index.weight_map))) files2.set(shard, new Uint8Array(readFileSync(join(out, shard))));
    for (const name of ['config.json', 'model.safetensors.index.json']) files2.set(name, new Uint8Array(readFileSync(join(out, name))));
    expect([...files2.keys()].filter((p) => p.endsWith('.safetensors')).every((p) => decodeSafetensors(files2.get(p)!).tensors.size > 0)).toBe(true);
    expectMergedModel(readMergedFolder(files2), tensors, 2, 8, 'BF16');
  });

  it('factors that fit no expert layout: one line naming the parameter, the MXFP4 blocks and scales it is decoded from, and what to do; nothing written', async () => {
    const base = temp.make(BASE_FILES);
    // gate_up_proj's lora_A for a hidden size of 64 (another model's), on this one's 96.
    const { files, tensors } = cookbookAdapter(2, 4);
    const wrongA = randomTensor(`${EXPERTS(1)}.base_layer.lora_A.weight`, [2 * E, 64], 'F32', rand, 0.3);
    const adapter = temp.make(peftFolder(JSON.parse(files['adapter_config.json'] as string), tensors.map((t) => (t.name === wrongA.name ? wrongA : t))));
    const out = join(temp.make(), 'merged');
    const run = await runCli(['merge', '--base', base, '--adapter', adapter, '--out', out, '--backend', 'cpu']);
    expect(run.code).not.toBe(0);
    const p = 'model.layers.1.mlp.experts.gate_up_proj';
    expect(errorLines(run.stderr)).toEqual([
      `error: ${adapter}: module "${p}": on ${p}: lora_A (6, 64) and lora_B (64, 6) fit neither (E, out, in) nor (E, in, out) of the base tensor (3, 96, 64); `
        + `the base tensor is decoded from MXFP4 ${p}_blocks (3, 64, 3, 16) and ${p}_scales (3, 64, 3) (each expert's stored (out, in) transposed, as transformers' Mxfp4Config(dequantize=True) loads it): `
        + 'the adapter was trained on another model or size; merge it into the one it was trained on',
    ]);
    expect(existsSync(out)).toBe(false);
  });

  it('--dtype bf16 --dtype-merged-only: one line naming the MXFP4 expert parameters and what to pass instead; nothing written', async () => {
    const base = temp.make(BASE_FILES);
    const adapter = temp.make(cookbookAdapter(2, 4).files);
    const out = join(temp.make(), 'merged');
    const run = await runCli(['merge', '--base', base, '--adapter', adapter, '--out', out, '--backend', 'cpu', '--dtype', 'bf16', '--dtype-merged-only']);
    expect(run.code).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([
      `error: ${base}: --dtype-merged-only would leave its MXFP4 expert parameters half dequantized, which transformers cannot load (it reads them all as MXFP4 or all as floats); `
        + 'leave it out (every MXFP4 expert parameter is then dequantized to that dtype) or leave out --dtype (they are written bf16, as transformers dequantizes them)',
    ]);
    expect(existsSync(out)).toBe(false);
  });
});
