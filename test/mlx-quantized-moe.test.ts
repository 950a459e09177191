/**
 * mlx-community quantized checkpoints beyond dense 2/4/8-bit layers: 3-, 5- and 6-bit codes, and
 * MoE models whose experts mlx-lm stacks (`switch_mlp`, QuantizedSwitchLinear: weight U32
 * (E, out, in·bits/32), scales and biases (E, out, in/group_size)). The codes are packed here as
 * mlx's quantizer writes them (mlx/backend/cpu/quantized.cpp `quantize`: each pack of codes OR-ed
 * at k·bits into one integer, its low bytes written in order: 8 codes in 3 bytes for 3 bits, in 5
 * for 5 bits, 4 codes in 3 bytes for 6 bits; whole uint32 words for 2, 4, 8 bits), the packer
 * itself pinned by bytes worked out by hand from mlx's `extract_bits` masks. Configs as
 * mlx_lm.convert writes them (Qwen3-MoE's quant_predicate keeps `mlp.gate` at 8 bits; a mixed
 * recipe gives one layer 6 bits). Merged values are compared with float64 truth written out below
 * (W = q·scale + bias, then LoRASwitchLinear.fuse: W[e] + scale·lora_b[e]·lora_a[e], or PEFT's
 * W + α/r·B·A on one expert's slab), on the CPU and WebGPU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mergeFolders } from './helpers/cli.js';
import { roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder, prepareOne as prepare } from './helpers/hf-folder.js';
import { mergeIntoFolder } from './helpers/merged-folder.js';
import { expectValues } from './helpers/merge-truth.js';
import { linearTruth, mlxFolder } from './helpers/mlx-lm-folder.js';
import { refusalsInMemory } from './helpers/merge-backends.js';

const rand = seededRandom(90210);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));
const KINDS = ['cpu', 'webgpu'] as const;
const dirs = tempDirs();
afterAll(() => dirs.removeAll());
/** mx.save_safetensors (mlx_lm.convert) writes `format: mlx` into each shard's metadata. */
const MLX = { format: 'mlx' };

/** Codes packed as mlx's quantize writes them (bytes, read back as the U32 tensor's little-endian words). */
function packMlx(codes: readonly number[], bits: number): Uint8Array {
  const bytes: number[] = [];
  if (bits === 2 || bits === 4 || bits === 8) {
    const per = 32 / bits;
    for (let j = 0; j < codes.length; j += per) {
      let word = 0;
      for (let k = 0; k < per; k++) word += codes[j + k] * 2 ** (k * bits);
      bytes.push(word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff, Math.floor(word / 2 ** 24) & 0xff);
    }
    return Uint8Array.from(bytes);
  }
  const [per, packBytes] = bits === 6 ? [4, 3] : [8, bits === 3 ? 3 : 5];
  for (let j = 0; j < codes.length; j += per) {
    let pack = 0n;
    for (let k = 0; k < per; k++) pack |= BigInt(codes[j + k]) << BigInt(k * bits);
    for (let b = 0; b < packBytes; b++) bytes.push(Number((pack >> BigInt(8 * b)) & 0xffn));
  }
  return Uint8Array.from(bytes);
}

/**
 * A layer as mlx_lm.convert -q writes it: `lead` leading dimensions (a stacked layer's experts), out
 * rows of `inF` inputs; scales ±, the bias a group's edge value q0·scale, both bf16 (mlx's quantizer:
 * the scale is negative where the group's largest magnitude is its minimum). `real`: q·scale + bias.
 */
function quantized(stem: string, lead: number[], out: number, inF: number, bits: number, groupSize: number) {
  const rows = lead.reduce((a, b) => a * b, 1) * out;
  const codes = Array.from({ length: rows * inF }, () => Math.floor(Math.abs(rand()) * 2 ** bits) % 2 ** bits);
  const groups = inF / groupSize;
  const sv = Array.from({ length: rows * groups }, (_, g) => roundForDType((g % 3 === 0 ? -1 : 1) * (0.002 + Math.abs(rand()) / 100), 'BF16'));
  const bv = sv.map((x) => roundForDType(-(2 ** (bits - 1)) * x * (1 + rand() / 100), 'BF16'));
  const real = new Float64Array(rows * inF);
  for (let o = 0; o < rows; o++) for (let i = 0; i < inF; i++) {
    const g = o * groups + Math.floor(i / groupSize);
    real[o * inF + i] = codes[o * inF + i] * sv[g] + bv[g];
  }
  const tensors: FixtureTensor[] = [
    { name: `${stem}.weight`, dtype: 'U32', shape: [...lead, out, (inF * bits) / 32], data: packMlx(codes, bits) },
    { name: `${stem}.scales`, dtype: 'BF16', shape: [...lead, out, groups], data: sv },
    { name: `${stem}.biases`, dtype: 'BF16', shape: [...lead, out, groups], data: bv },
  ];
  return { tensors, real, shape: [...lead, out, inF] };
}

/** W (out, in) as a decoded tensor, for the truth helpers. */
const asMatrix = (values: Float64Array, out: number, inF: number): DecodedTensor => ({ dtype: 'F32', shape: [out, inF], values, bytes: new Uint8Array(0) } as unknown as DecodedTensor);

/** Expert e's slab of a stacked (E, out, in) tensor. */
const slab = (values: Float64Array, e: number, out: number, inF: number) => values.slice(e * out * inF, (e + 1) * out * inF);

/** W_e + scale·lora_b[e]·lora_a[e] (LoRASwitchLinear.fuse) for every expert, stacked again. */
function switchTruth(w: Float64Array, a: DecodedTensor, b: DecodedTensor, scale: number): Float64Array {
  const [experts, r, inF] = a.shape;
  const out = b.shape[1];
  const merged = w.slice();
  for (let e = 0; e < experts; e++) for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let sum = 0;
    for (let k = 0; k < r; k++) sum += b.values[(e * out + o) * r + k] * a.values[(e * r + k) * inF + i];
    merged[(e * out + o) * inF + i] += scale * sum;
  }
  return merged;
}

describe('mlx\'s packing, as written here', () => {
  it('matches bytes worked out by hand from mlx\'s extract_bits (codes straddle bytes for 3, 5 and 6 bits)', () => {
    const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    expect(hex(packMlx([1, 2, 3, 4, 5, 6, 7, 0], 3))).toBe('d1 58 1f');
    expect(hex(packMlx([1, 30, 17, 4, 25, 6, 19, 31], 5))).toBe('c1 47 92 cd fc');
    expect(hex(packMlx([1, 62, 35, 12, 45, 6, 7, 63], 6))).toBe('81 3f 32 ad 71 fc');
    expect(hex(packMlx([1, 2, 3, 4, 5, 6, 7, 8], 4))).toBe('21 43 65 87');
  });
});

describe('3-, 5- and 6-bit mlx-community layers', () => {
  // A Llama layer as mlx_lm.convert -q --q-bits 3 writes it, with per-layer entries (a mixed recipe) for k_proj and v_proj.
  const IN = 64;
  const q = quantized('model.layers.0.self_attn.q_proj', [], 5, IN, 3, 32);
  const k = quantized('model.layers.0.self_attn.k_proj', [], 3, IN, 5, 64);
  const v = quantized('model.layers.0.self_attn.v_proj', [], 3, IN, 6, 32);
  const o = quantized('model.layers.0.self_attn.o_proj', [], 7, IN, 3, 64);
  const norm = randomTensor('model.layers.0.input_layernorm.weight', [IN], 'BF16', rand);
  const quantization = {
    group_size: 32, bits: 3, mode: 'affine',
    'model.layers.0.self_attn.k_proj': { group_size: 64, bits: 5 },
    'model.layers.0.self_attn.v_proj': { group_size: 32, bits: 6 },
    'model.layers.0.self_attn.o_proj': { group_size: 64, bits: 3 },
  };
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', hidden_size: IN, num_hidden_layers: 1, vocab_size: 7,
    quantization, quantization_config: quantization,
  };
  const base = hfModelFolder([...q.tensors, ...k.tensors, ...v.tensors, ...o.tensors, norm], config, { metadata: MLX });
  const modules = [['model.layers.0.self_attn.q_proj', q, 5], ['model.layers.0.self_attn.k_proj', k, 3], ['model.layers.0.self_attn.v_proj', v, 3]] as const;
  // r = 1, lora_a (in, r) and lora_b (r, out) as LoRALinear saves them.
  const factors = modules.flatMap(([path, , out]) => [
    randomTensor(`${path}.lora_a`, [IN, 1], 'F32', rand, 0.5), randomTensor(`${path}.lora_b`, [1, out], 'F32', rand, 0.5),
  ]);
  const adapter = mlxFolder({ lora_parameters: { rank: 1, dropout: 0, scale: 20 } }, factors);

  for (const kind of KINDS) {
    it(`a QLoRA merged into q·scale + bias of 3-, 5- and 6-bit codes, written dequantized in bf16, on ${kind}`, async () => {
      const prepared = await prepare(base, adapter);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backends[kind]!, 'BF16', 4096);
      const a = decoded(factors);
      for (const [stem, layer, out] of modules) {
        expectValues(`${stem}.weight`, merged.tensors.get(`${stem}.weight`)!, linearTruth(asMatrix(layer.real, out, IN), a.get(`${stem}.lora_a`)!, a.get(`${stem}.lora_b`)!, 20));
      }
      expectValues('model.layers.0.self_attn.o_proj.weight', merged.tensors.get('model.layers.0.self_attn.o_proj.weight')!, o.real);
      expect([...merged.tensors.keys()].sort()).toEqual(['input_layernorm', 'self_attn.k_proj', 'self_attn.o_proj', 'self_attn.q_proj', 'self_attn.v_proj'].map((m) => `model.layers.0.${m}.weight`));
      const written = merged.json('config.json');
      expect([written.quantization, written.quantization_config]).toEqual([undefined, undefined]);
    });
  }
});

describe('mlx-community MoE checkpoints (stacked switch_mlp experts)', () => {
  // Qwen3-MoE as mlx_lm.convert -q writes it (sizes scaled down, 3 experts): every Linear 4-bit in
  // groups of 64, the router kept at 8 bits by the model's quant_predicate, down_proj at 6 bits in
  // groups of 32 by a mixed recipe's per-layer entry.
  const HIDDEN = 64, FFN = 96, EXPERTS = 3, VOCAB = 7;
  const L = 'model.layers.0';
  const embed = quantized('model.embed_tokens', [], VOCAB, HIDDEN, 4, 64);
  const qProj = quantized(`${L}.self_attn.q_proj`, [], HIDDEN, HIDDEN, 4, 64);
  const router = quantized(`${L}.mlp.gate`, [], EXPERTS, HIDDEN, 8, 64);
  const gate = quantized(`${L}.mlp.switch_mlp.gate_proj`, [EXPERTS], FFN, HIDDEN, 4, 64);
  const up = quantized(`${L}.mlp.switch_mlp.up_proj`, [EXPERTS], FFN, HIDDEN, 4, 64);
  const down = quantized(`${L}.mlp.switch_mlp.down_proj`, [EXPERTS], HIDDEN, FFN, 6, 32);
  const head = quantized('lm_head', [], VOCAB, HIDDEN, 4, 64);
  const norm = randomTensor(`${L}.input_layernorm.weight`, [HIDDEN], 'BF16', rand);
  const quantization = {
    group_size: 64, bits: 4, mode: 'affine',
    [`${L}.mlp.gate`]: { group_size: 64, bits: 8 },
    [`${L}.mlp.switch_mlp.down_proj`]: { group_size: 32, bits: 6 },
  };
  const qwenConfig = {
    architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', torch_dtype: 'bfloat16', hidden_size: HIDDEN, moe_intermediate_size: FFN,
    num_experts: EXPERTS, num_experts_per_tok: 2, num_hidden_layers: 1, vocab_size: VOCAB, tie_word_embeddings: false,
    quantization, quantization_config: quantization,
  };
  const qwen = hfModelFolder([embed, qProj, router, gate, up, down, head].flatMap((l) => l.tensors).concat(norm), qwenConfig, { shards: 2, metadata: MLX });
  const switchFactors = (path: string, inF: number, outF: number) => [
    randomTensor(`${path}.lora_a`, [EXPERTS, 1, inF], 'F32', rand, 0.5), randomTensor(`${path}.lora_b`, [EXPERTS, outF, 1], 'F32', rand, 0.5),
  ];
  const factors = [
    ...switchFactors(`${L}.mlp.switch_mlp.gate_proj`, HIDDEN, FFN), ...switchFactors(`${L}.mlp.switch_mlp.down_proj`, FFN, HIDDEN),
    randomTensor(`${L}.self_attn.q_proj.lora_a`, [HIDDEN, 1], 'F32', rand, 0.5), randomTensor(`${L}.self_attn.q_proj.lora_b`, [1, HIDDEN], 'F32', rand, 0.5),
  ];
  const adapter = mlxFolder({ model: 'mlx-community/Qwen3-30B-A3B-4bit', lora_parameters: { rank: 1, dropout: 0, scale: 8, keys: ['mlp.switch_mlp.gate_proj', 'mlp.switch_mlp.down_proj', 'self_attn.q_proj'] } }, factors);

  for (const kind of KINDS) {
    it(`Qwen3-MoE: LoRASwitchLinear.fuse on each expert's slab, written as mlx-lm stacks it (E, out, in) in bf16, every other weight dequantized, on ${kind}`, async () => {
      const prepared = await prepare(qwen, adapter);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backends[kind]!, 'BF16', 4096);
      const a = decoded(factors);
      const at = (key: string) => merged.tensors.get(key)!;
      expect(at(`${L}.mlp.switch_mlp.gate_proj.weight`).shape).toEqual([EXPERTS, FFN, HIDDEN]);
      expect(at(`${L}.mlp.switch_mlp.down_proj.weight`).shape).toEqual([EXPERTS, HIDDEN, FFN]);
      expect(at(`${L}.mlp.switch_mlp.up_proj.weight`).shape).toEqual([EXPERTS, FFN, HIDDEN]);
      for (const [proj, layer] of [['gate_proj', gate], ['down_proj', down]] as const) {
        const p = `${L}.mlp.switch_mlp.${proj}`;
        expectValues(`${p}.weight`, at(`${p}.weight`), switchTruth(layer.real, a.get(`${p}.lora_a`)!, a.get(`${p}.lora_b`)!, 8));
      }
      expectValues(`${L}.self_attn.q_proj.weight`, at(`${L}.self_attn.q_proj.weight`), linearTruth(asMatrix(qProj.real, HIDDEN, HIDDEN), a.get(`${L}.self_attn.q_proj.lora_a`)!, a.get(`${L}.self_attn.q_proj.lora_b`)!, 8));
      for (const [key, layer] of [[`${L}.mlp.switch_mlp.up_proj`, up], [`${L}.mlp.gate`, router], ['model.embed_tokens', embed], ['lm_head', head]] as const) {
        expect(at(`${key}.weight`).shape, key).toEqual(layer.shape);
        expectValues(`${key}.weight`, at(`${key}.weight`), layer.real);
      }
      expect([...merged.tensors.keys()].filter((key) => !key.endsWith('.weight'))).toEqual([]);
      const written = merged.json('config.json');
      expect([written.quantization, written.quantization_config, written.num_experts]).toEqual([undefined, undefined, EXPERTS]);
      const index = merged.json('model.safetensors.index.json') as { weight_map: Record<string, string> };
      expect(Object.keys(index.weight_map).sort()).toEqual([...merged.tensors.keys()].sort());
    });
  }

  // Mixtral as mlx-lm stacks it: block_sparse_moe.experts.E.w1 / w3 / w2 become switch_mlp.gate_proj / up_proj / down_proj.
  const M = 'model.layers.0.block_sparse_moe';
  const w1 = quantized(`${M}.switch_mlp.gate_proj`, [EXPERTS], FFN, HIDDEN, 4, 64);
  const w2 = quantized(`${M}.switch_mlp.down_proj`, [EXPERTS], HIDDEN, FFN, 4, 32);
  const mixtralQuant = { group_size: 64, bits: 4, [`${M}.gate`]: { group_size: 64, bits: 8 }, [`${M}.switch_mlp.down_proj`]: { group_size: 32, bits: 4 } };
  const mixtralRouter = quantized(`${M}.gate`, [], EXPERTS, HIDDEN, 8, 64);
  const mixtralConfig = {
    architectures: ['MixtralForCausalLM'], model_type: 'mixtral', torch_dtype: 'bfloat16', hidden_size: HIDDEN, intermediate_size: FFN,
    num_local_experts: EXPERTS, num_experts_per_tok: 2, num_hidden_layers: 1, vocab_size: VOCAB, quantization: mixtralQuant, quantization_config: mixtralQuant,
  };
  const mixtral = hfModelFolder([...w1.tensors, ...w2.tensors, ...mixtralRouter.tensors, norm], mixtralConfig, { metadata: MLX });
  // A PEFT LoRA trained on the Hugging Face checkpoint, whose experts are modules of their own.
  const peftModules = [[`${M}.experts.1.w1`, HIDDEN, FFN], [`${M}.experts.2.w2`, FFN, HIDDEN], [`${M}.experts.0.w2`, FFN, HIDDEN]] as const;
  const peftTensors = peftModules.flatMap(([path, inF, outF]) => [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [2, inF], 'F32', rand, 0.5), randomTensor(`base_model.model.${path}.lora_B.weight`, [outF, 2], 'F32', rand, 0.5),
  ]);
  const peft = peftFolder({ r: 2, lora_alpha: 6, target_modules: ['w1', 'w2'], base_model_name_or_path: 'mistralai/Mixtral-8x7B-v0.1' }, peftTensors);

  for (const kind of KINDS) {
    it(`Mixtral: a PEFT LoRA on per-expert modules (experts.K.w1, w2) lands on expert K's slab of switch_mlp, on ${kind}`, async () => {
      const prepared = await prepare(mixtral, peft);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backends[kind]!, 'F32', 4096);
      const t = decoded(peftTensors);
      const want = { gate_proj: w1.real.slice(), down_proj: w2.real.slice() };
      for (const [path, inF, outF] of peftModules) {
        const [, expert, name] = /experts\.(\d)\.(w\d)$/.exec(path)!;
        const e = Number(expert);
        const target = name === 'w1' ? want.gate_proj : want.down_proj;
        const A = t.get(`base_model.model.${path}.lora_A.weight`)!;
        const B = t.get(`base_model.model.${path}.lora_B.weight`)!;
        // PEFT's Linear: W + (α/r)·B·A, here 6/2 = 3, on rows [e·out, (e+1)·out).
        const w = slab(target, e, outF, inF);
        for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) {
          w[o * inF + i] += 3 * (B.values[o * 2] * A.values[i] + B.values[o * 2 + 1] * A.values[inF + i]);
        }
        target.set(w, e * outF * inF);
      }
      expect(merged.tensors.get(`${M}.switch_mlp.gate_proj.weight`)!.shape).toEqual([EXPERTS, FFN, HIDDEN]);
      expectValues(`${M}.switch_mlp.gate_proj.weight`, merged.tensors.get(`${M}.switch_mlp.gate_proj.weight`)!, want.gate_proj);
      expectValues(`${M}.switch_mlp.down_proj.weight`, merged.tensors.get(`${M}.switch_mlp.down_proj.weight`)!, want.down_proj);
      expectValues(`${M}.gate.weight`, merged.tensors.get(`${M}.gate.weight`)!, mixtralRouter.real);
    });
  }

  it('through the CLI: `loramerge merge --dtype bf16` writes the stacked experts merged; without --dtype it refuses in one line', async () => {
    const { run, out } = await mergeFolders(dirs.make, qwen, adapter, ['--dtype', 'bf16']);
    expect(run.code, run.stderr).toBe(0);
    const merged = readMergedFolder(new Map(readdirSync(out).map((f) => [f, new Uint8Array(readFileSync(join(out, f)))])));
    const a = decoded(factors);
    const p = `${L}.mlp.switch_mlp.gate_proj`;
    expect(merged.tensors.get(`${p}.weight`)!.shape).toEqual([EXPERTS, FFN, HIDDEN]);
    expectValues(`${p}.weight`, merged.tensors.get(`${p}.weight`)!, switchTruth(gate.real, a.get(`${p}.lora_a`)!, a.get(`${p}.lora_b`)!, 8));
    const refused = await mergeFolders(dirs.make, qwen, adapter);
    expect(refused.run.code).not.toBe(0);
    expect(refused.lines).toEqual([expect.stringMatching(/its mlx affine weights are written only dequantized .*merge with --dtype bf16/)]);
  });

  it('refused in one line each: an expert the base does not stack, another expert count in an mlx-lm adapter, a full fine-tune replacing quantized experts, scales not stacked like the codes, bits 7', async () => {
    const beyond = peftFolder({ r: 2, lora_alpha: 6, target_modules: ['w1'] }, [
      randomTensor(`base_model.model.${M}.experts.5.w1.lora_A.weight`, [2, HIDDEN], 'F32', rand), randomTensor(`base_model.model.${M}.experts.5.w1.lora_B.weight`, [FFN, 2], 'F32', rand),
    ]);
    expect(await refusalsInMemory({ backend: backends.cpu!, base: mixtral, adapters: [{ files: beyond }], outDtype: 'BF16' })).toEqual([
      `adapter0: module "${M}.experts.5.w1": names expert 5, but ${M}.switch_mlp.gate_proj.weight [3, 96, 64] stacks 3 experts`,
    ]);
    // mlx-lm itself fails to load 4 or 2 experts' factors onto 3 (load_adapters compares their shapes with the layer's): one line for the module.
    const four = mlxFolder({ lora_parameters: { rank: 1, dropout: 0, scale: 8 } }, [
      randomTensor(`${L}.mlp.switch_mlp.up_proj.lora_a`, [4, 1, HIDDEN], 'F32', rand), randomTensor(`${L}.mlp.switch_mlp.up_proj.lora_b`, [4, FFN, 1], 'F32', rand),
    ]);
    const two = mlxFolder({ lora_parameters: { rank: 1, dropout: 0, scale: 8 } }, [
      randomTensor(`${L}.mlp.switch_mlp.up_proj.lora_a`, [2, 1, HIDDEN], 'F32', rand), randomTensor(`${L}.mlp.switch_mlp.up_proj.lora_b`, [2, FFN, 1], 'F32', rand),
    ]);
    for (const [files, count] of [[four, 4], [two, 2]] as const) {
      expect(await refusalsInMemory({ backend: backends.cpu!, base: qwen, adapters: [{ files }], outDtype: 'BF16' })).toEqual([
        `adapter0: module "${L}.mlp.switch_mlp.up_proj": its factors are stacked for ${count} experts, but the base has 3 (${L}.mlp.experts.0–2.up_proj, expert 0 on ${L}.mlp.switch_mlp.up_proj.weight); mlx-lm loads LoRASwitchLinear factors only onto a layer of the model's own count of experts: merge into the model the adapter was trained on`,
      ]);
    }
    // A full fine-tune's float stacked weight on quantized experts: mlx-lm's load_adapters refuses it (the layer holds U32 codes).
    const full = mlxFolder({ fine_tune_type: 'full', lora_parameters: null }, [randomTensor(`${L}.mlp.switch_mlp.up_proj.weight`, [EXPERTS, FFN, HIDDEN], 'BF16', rand)]);
    expect(await refusalsInMemory({ backend: backends.cpu!, base: qwen, adapters: [{ files: full }], outDtype: 'BF16' })).toEqual([
      `adapter0: module "${L}.mlp.switch_mlp.up_proj.weight": replacing the mlx affine weight ${L}.mlp.switch_mlp.up_proj.weight (and its ${L}.mlp.switch_mlp.up_proj.scales) is not supported; merge it into the unquantized model`,
    ]);
    const flatScales = hfModelFolder([...up.tensors.map((t) => (t.name.endsWith('.scales') ? { ...t, shape: [EXPERTS * FFN, 1] } : t)), norm], qwenConfig, { metadata: MLX });
    expect(await refusalsInMemory({ backend: backends.cpu!, base: flatScales, adapters: [{ files: adapter }], outDtype: 'BF16' })).toEqual([
      `base: ${L}.mlp.switch_mlp.up_proj.weight is not a mlx affine weight as it writes them (${L}.mlp.switch_mlp.up_proj.scales has shape [288, 1]; expected (3, 96, 1) for 4-bit codes in groups of 64)`,
    ]);
    const seven = { ...qwen, 'config.json': JSON.stringify({ ...qwenConfig, quantization: { ...quantization, bits: 7 } }) };
    expect(await refusalsInMemory({ backend: backends.cpu!, base: seven, adapters: [{ files: adapter }], outDtype: 'BF16' })).toEqual([
      expect.stringMatching(/^base: config\.json quantization_config \(mlx\): quantization\.bits 7 is not read \(only 2, 3, 4, 5, 6 and 8, as mx\.quantize writes them\)/),
    ]);
  });
});
