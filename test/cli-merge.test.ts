/**
 * File-to-file merges through the CLI, as users run them: real-layout PEFT folders (every config
 * option), kohya LoCon files on a diffusers model and an SD1 LoRA on a single-file checkpoint, sharded
 * folders, several adapters; every output tensor is compared with float64 truth computed here with
 * plain loops.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, errorLines } from './helpers/cli.js';
import {
  buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, tempDirs,
  type DecodedTensor, type FixtureTensor,
} from './helpers/fixtures.js';

type Float = 'F32' | 'F16' | 'BF16';
const temp = tempDirs();
afterAll(temp.removeAll);
const tempDir = temp.make;

// --- reading safetensors in the test, independently of the library ------------------------------

type Tensor = DecodedTensor;

function readSafetensors(path: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const file = readFileSync(path);
  return decodeSafetensors(new Uint8Array(file.buffer, file.byteOffset, file.byteLength));
}

// --- float64 truth --------------------------------------------------------------------------------

/** ΔW[o][i] = Σ_k B[o][k]·A[k][i], as an (out × in) row-major array. */
function product(b: Float64Array, a: Float64Array, out: number, rank: number, inn: number): Float64Array {
  const d = new Float64Array(out * inn);
  for (let o = 0; o < out; o++)
    for (let k = 0; k < rank; k++) {
      const bk = b[o * rank + k];
      for (let i = 0; i < inn; i++) d[o * inn + i] += bk * a[k * inn + i];
    }
  return d;
}

/** Adds s·ΔW to w; `transposed` when w is stored (in × out). */
function addScaled(w: Float64Array, delta: Float64Array, s: number, out: number, inn: number, transposed: boolean): void {
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++) w[transposed ? i * out + o : o * inn + i] += s * delta[o * inn + i];
}

/**
 * Expects `got` to be `exact` rounded once to `dtype`: never more than 1 ulp off (f32: 1e-5 of the
 * magnitude of the summed terms, since W + ΔW may cancel). Returns how many elements were not the
 * correctly rounded value; callers check that share over a whole model.
 */
function checkRoundedOnce(name: string, got: Tensor, exact: Float64Array, dtype: Float, magnitude?: Float64Array): number {
  expect(got.dtype, name).toBe(dtype);
  expect(got.values.length, name).toBe(exact.length);
  let inexact = 0;
  for (let j = 0; j < exact.length; j++) {
    const want = roundForDType(exact[j], dtype);
    if (got.values[j] === want) continue;
    inexact++;
    const scale = Math.max(Math.abs(exact[j]), magnitude ? magnitude[j] * 2 ** -24 * 64 : 0);
    const mag = Math.max(scale, 2 ** -14);
    const tolerance = dtype === 'F32'
      ? 1e-5 * Math.max(Math.abs(exact[j]), magnitude?.[j] ?? 0) + 1e-30
      : 2 ** (Math.floor(Math.log2(mag)) - (dtype === 'F16' ? 10 : 7));
    if (Math.abs(got.values[j] - exact[j]) > tolerance) {
      throw new Error(`${name}[${j}]: got ${got.values[j]}, want ${want} (exact ${exact[j]})`);
    }
  }
  return inexact;
}

/** One tensor: the share of not correctly rounded elements is checked over the model by callers. */
function expectRoundedOnce(name: string, got: Tensor, exact: Float64Array, dtype: Float): void {
  const inexact = checkRoundedOnce(name, got, exact, dtype);
  if (dtype !== 'F32') expect(inexact, `${name}: elements not correctly rounded`).toBeLessThanOrEqual(Math.max(1, exact.length * 0.001));
}

function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

// --- a Llama-shaped sharded base with two PEFT adapters ---------------------------------------------

describe('PEFT adapters on a sharded transformers folder', () => {
  const rand = seededRandom(7);
  const hidden = 45; // odd on purpose
  const inter = 37;
  const kv = 15;
  const vocab = 53;
  const dtype: Float = 'BF16';
  const shapes: Record<string, number[]> = {
    'model.embed_tokens.weight': [vocab, hidden],
    'model.layers.0.self_attn.q_proj.weight': [hidden, hidden],
    'model.layers.0.self_attn.k_proj.weight': [kv, hidden],
    'model.layers.0.self_attn.v_proj.weight': [kv, hidden],
    'model.layers.0.mlp.up_proj.weight': [inter, hidden],
    'model.layers.0.mlp.down_proj.weight': [hidden, inter],
    'model.layers.0.input_layernorm.weight': [hidden],
    'model.layers.1.self_attn.q_proj.weight': [hidden, hidden],
    'model.layers.1.mlp.down_proj.weight': [hidden, inter],
    'lm_head.weight': [vocab, hidden],
  };
  const base = new Map<string, Float64Array>();
  for (const [name, shape] of Object.entries(shapes)) {
    const values = randomValues(shape.reduce((a, b) => a * b, 1), rand);
    base.set(name, values.map((x) => roundForDType(x, dtype)));
  }
  const names = Object.keys(shapes);
  const shard1 = names.slice(0, 5);
  const shard2 = names.slice(5);
  const tensorsOf = (list: string[]): FixtureTensor[] => list.map((n) => ({ name: n, dtype, shape: shapes[n], data: base.get(n)! }));
  const int64Tensor: FixtureTensor = { name: 'model.rotary.inv_freq_steps', dtype: 'I64', shape: [3], data: [1, 2, 3] };
  const baseDir = tempDir({
    'model-00001-of-00002.safetensors': buildSafetensors(tensorsOf(shard1), { format: 'pt' }),
    'model-00002-of-00002.safetensors': buildSafetensors([...tensorsOf(shard2), int64Tensor], { format: 'pt' }),
    'model.safetensors.index.json': json({
      metadata: { total_size: 0 },
      weight_map: Object.fromEntries([...shard1.map((n) => [n, 'model-00001-of-00002.safetensors']), ...shard2.map((n) => [n, 'model-00002-of-00002.safetensors']), [int64Tensor.name, 'model-00002-of-00002.safetensors']]),
    }),
    'config.json': json({ model_type: 'llama', hidden_size: hidden }),
    'tokenizer.json': json({ version: '1.0' }),
  });

  // Adapter 1: rank_pattern / alpha_pattern, rsLoRA, an embedding, f32 factors, an adapter name in keys.
  interface Module { module: string; rank: number; a: Float64Array; b: Float64Array; out: number; inn: number; transposed: boolean }
  const makeModule = (module: string, rank: number, out: number, inn: number, transposed = false): Module => ({
    module, rank, out, inn, transposed, a: randomValues(rank * inn, rand, 0.5), b: randomValues(out * rank, rand, 0.5),
  });
  const a1 = [
    makeModule('model.layers.0.self_attn.q_proj', 8, hidden, hidden),
    makeModule('model.layers.0.self_attn.v_proj', 3, kv, hidden),
    makeModule('model.layers.1.self_attn.q_proj', 8, hidden, hidden),
    makeModule('model.layers.0.mlp.down_proj', 1, hidden, inter),
  ];
  // PEFT embeddings: A (r × vocab), B (dim × r), ΔW = (B·A)ᵀ against the (vocab × dim) table.
  const emb = makeModule('model.embed_tokens', 4, hidden, vocab, true);
  const a1Config = {
    peft_type: 'LORA', r: 8, lora_alpha: 16, use_rslora: true, target_modules: ['q_proj', 'v_proj', 'down_proj', 'embed_tokens'],
    rank_pattern: { v_proj: 3, 'layers.0.mlp.down_proj': 1, embed_tokens: 4 }, alpha_pattern: { 'layers.1.self_attn.q_proj': 4 },
  };
  const rs = (alpha: number, r: number) => alpha / Math.sqrt(r);
  const a1Scales = [rs(16, 8), rs(16, 3), rs(4, 8), rs(16, 1)];
  const embScale = rs(16, 4);
  const adapter1 = tempDir({
    'adapter_config.json': json(a1Config),
    'adapter_model.safetensors': buildSafetensors([
      ...a1.flatMap((m) => [
        { name: `base_model.model.${m.module}.lora_A.weight`, dtype: 'F32' as const, shape: [m.rank, m.inn], data: m.a },
        { name: `base_model.model.${m.module}.lora_B.weight`, dtype: 'F32' as const, shape: [m.out, m.rank], data: m.b },
      ]),
      { name: `base_model.model.${emb.module}.lora_embedding_A`, dtype: 'F32', shape: [emb.rank, vocab], data: emb.a },
      { name: `base_model.model.${emb.module}.lora_embedding_B`, dtype: 'F32', shape: [hidden, emb.rank], data: emb.b },
    ]),
  });
  // Adapter 2: bf16 factors on a shared tensor (q_proj of layer 0) and the MLP, negative weight.
  const a2 = [makeModule('model.layers.0.self_attn.q_proj', 5, hidden, hidden), makeModule('model.layers.0.mlp.up_proj', 5, inter, hidden)];
  for (const m of a2) {
    m.a = m.a.map((x) => roundForDType(x, 'BF16'));
    m.b = m.b.map((x) => roundForDType(x, 'BF16'));
  }
  const adapter2 = tempDir({
    'adapter_config.json': json({ peft_type: 'LORA', r: 5, lora_alpha: 10, target_modules: ['q_proj', 'up_proj'] }),
    'adapter_model.safetensors': buildSafetensors(a2.flatMap((m) => [
      { name: `base_model.model.${m.module}.lora_A.default.weight`, dtype: 'BF16' as const, shape: [m.rank, m.inn], data: m.a },
      { name: `base_model.model.${m.module}.lora_B.default.weight`, dtype: 'BF16' as const, shape: [m.out, m.rank], data: m.b },
    ])),
  });
  const w2 = -0.75;

  /** W + Σ w·s·B·A in float64; with `absolute`, the same sum of magnitudes (for f32 tolerances). */
  function expected(absolute = false): Map<string, Float64Array> {
    const f = (x: Float64Array) => (absolute ? x.map(Math.abs) : x);
    const g = (x: number) => (absolute ? Math.abs(x) : x);
    const exact = new Map([...base].map(([k, v]) => [k, f(v.slice())]));
    a1.forEach((m, j) => addScaled(exact.get(`${m.module}.weight`)!, product(f(m.b), f(m.a), m.out, m.rank, m.inn), a1Scales[j], m.out, m.inn, false));
    addScaled(exact.get(`${emb.module}.weight`)!, product(f(emb.b), f(emb.a), emb.out, emb.rank, emb.inn), embScale, emb.out, emb.inn, true);
    a2.forEach((m) => addScaled(exact.get(`${m.module}.weight`)!, product(f(m.b), f(m.a), m.out, m.rank, m.inn), g(w2 * 2), m.out, m.inn, false));
    return exact;
  }

  for (const [backend, outDtype] of [['webgpu', undefined], ['cpu', 'f16'], ['webgpu', 'f32']] as const) {
    it(`merges both adapters (--backend ${backend}${outDtype ? ` --dtype ${outDtype}` : ''}) and mirrors the folder`, async () => {
      const out = join(tempDir({}), 'merged');
      const args = ['merge', '--base', baseDir, '--adapter', adapter1, '--adapter', adapter2, '--weight', String(w2), '--out', out, '--backend', backend];
      if (outDtype) args.push('--dtype', outDtype);
      const result = await runCli(args);
      expect(errorLines(result.stderr), result.stderr).toEqual([]);
      expect(result.code).toBe(0);
      const want = (outDtype?.toUpperCase() ?? dtype) as Float;
      const exact = expected();
      const magnitude = expected(true);
      const merged = new Map<string, Tensor>();
      for (const shard of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
        const { tensors, metadata } = readSafetensors(join(out, shard));
        expect(metadata.format).toBe('pt');
        expect(metadata['loramerge.adapters']).toContain('"weight":-0.75');
        // The rule the tensors below are checked against, as the file states it.
        expect(metadata['loramerge.rule']).toMatch(/rounded once to the output dtype: f16\/bf16\/fp8 correctly rounded .*f32 within 1 ulp$/);
        for (const [k, v] of tensors) merged.set(k, v);
      }
      let inexact = 0;
      let elements = 0;
      for (const name of names) {
        const got = merged.get(name)!;
        expect(got.shape, name).toEqual(shapes[name]);
        inexact += checkRoundedOnce(name, got, exact.get(name)!, want, magnitude.get(name));
        elements += got.values.length;
      }
      if (want !== 'F32') expect(inexact / elements, 'share of elements not correctly rounded').toBeLessThanOrEqual(0.001);
      // Untouched tensors: byte for byte when the dtype is kept.
      if (!outDtype) {
        const original = readSafetensors(join(baseDir, 'model-00002-of-00002.safetensors')).tensors.get('model.layers.0.input_layernorm.weight');
        expect(merged.get('model.layers.0.input_layernorm.weight')!.bytes).toEqual(original!.bytes);
      }
      expect(merged.get(int64Tensor.name)!.dtype).toBe('I64');
      expect([...merged.get(int64Tensor.name)!.values]).toEqual([1, 2, 3]);
      // The index is rewritten with the new total size; config.json says what was written; other small files are copied unchanged.
      const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
      const totalBytes = [...merged.values()].reduce((s, t) => s + t.bytes.byteLength, 0);
      expect(index.metadata.total_size).toBe(totalBytes);
      expect(Object.keys(index.weight_map).length).toBe(names.length + 1);
      expect(readFileSync(join(out, 'tokenizer.json'), 'utf8')).toBe(readFileSync(join(baseDir, 'tokenizer.json'), 'utf8'));
      const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[want];
      expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))).toEqual({
        ...JSON.parse(readFileSync(join(baseDir, 'config.json'), 'utf8')), dtype: torchDtype, torch_dtype: torchDtype,
      });
    });
  }
});

// --- GPT-2: fan_in_fan_out, no `transformer.` prefix in the checkpoint, DoRA, lora_bias, modules_to_save

describe('GPT-2 style PEFT adapter on a single file', () => {
  const rand = seededRandom(11);
  const d = 23;
  const dtype: Float = 'F16';
  const cAttn = randomValues(d * 3 * d, rand).map((x) => roundForDType(x, dtype)); // Conv1D: (in, out) = (d, 3d)
  const cProj = randomValues(d * d, rand).map((x) => roundForDType(x, dtype));
  const cProjBias = randomValues(d, rand).map((x) => roundForDType(x, dtype));
  const score = randomValues(2 * d, rand).map((x) => roundForDType(x, dtype));
  const basePath = join(tempDir({
    'gpt2.safetensors': buildSafetensors([
      { name: 'h.0.attn.c_attn.weight', dtype, shape: [d, 3 * d], data: cAttn },
      { name: 'h.0.attn.c_proj.weight', dtype, shape: [d, d], data: cProj },
      { name: 'h.0.attn.c_proj.bias', dtype, shape: [d], data: cProjBias },
      { name: 'score.weight', dtype, shape: [2, d], data: score },
      { name: 'h.0.attn.empty_buffer', dtype, shape: [0, d], data: [] }, // zero-size tensors are valid
    ]),
  }), 'gpt2.safetensors');
  const r = 6;
  const attnA = randomValues(r * d, rand, 0.5), attnB = randomValues(3 * d * r, rand, 0.5);
  const projA = randomValues(r * d, rand, 0.5), projB = randomValues(d * r, rand, 0.5);
  const projBiasB = randomValues(d, rand, 0.5);
  // DoRA magnitude for c_attn: one per output feature (3d).
  const magnitude = randomValues(3 * d, rand).map((x) => 1 + Math.abs(x));
  const newScore = randomValues(2 * d, rand);
  // PEFT refuses use_dora with lora_bias in one config: DoRA (and modules_to_save) in one adapter, lora_bias in another.
  const adapter = tempDir({
    'adapter_config.json': json({
      peft_type: 'LORA', r, lora_alpha: 12, fan_in_fan_out: true, use_dora: true,
      target_modules: ['c_attn'], modules_to_save: ['score'],
    }),
    'adapter_model.safetensors': buildSafetensors([
      { name: 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', dtype: 'F32', shape: [r, d], data: attnA },
      { name: 'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight', dtype: 'F32', shape: [3 * d, r], data: attnB },
      { name: 'base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector', dtype: 'F32', shape: [3 * d], data: magnitude },
      { name: 'base_model.model.score.modules_to_save.default.weight', dtype: 'F32', shape: [2, d], data: newScore },
    ]),
  });
  const biasAdapter = tempDir({
    'adapter_config.json': json({ peft_type: 'LORA', r, lora_alpha: 12, fan_in_fan_out: true, lora_bias: true, target_modules: ['c_proj'] }),
    'adapter_model.safetensors': buildSafetensors([
      { name: 'base_model.model.transformer.h.0.attn.c_proj.lora_A.weight', dtype: 'F32', shape: [r, d], data: projA },
      { name: 'base_model.model.transformer.h.0.attn.c_proj.lora_B.weight', dtype: 'F32', shape: [d, r], data: projB },
      { name: 'base_model.model.transformer.h.0.attn.c_proj.lora_B.bias', dtype: 'F32', shape: [d], data: projBiasB },
    ]),
  });

  it.each(['webgpu', 'cpu'])('merges with DoRA on a transposed weight (--backend %s)', async (backend) => {
    const out = join(tempDir({}), 'merged.safetensors');
    const result = await runCli(['merge', '--base', basePath, '--adapter', adapter, '--adapter', biasAdapter, '--out', out, '--backend', backend]);
    expect(errorLines(result.stderr), result.stderr).toEqual([]);
    expect(result.code).toBe(0);
    const { tensors } = readSafetensors(out);
    const s = 12 / r;
    // c_attn: V = W + s·(B·A)ᵀ stored (in, out); DoRA norm per output feature = per stored column.
    const v = cAttn.slice();
    addScaled(v, product(attnB, attnA, 3 * d, r, d), s, 3 * d, d, true);
    for (let o = 0; o < 3 * d; o++) {
      let norm = 0;
      for (let i = 0; i < d; i++) norm += v[i * 3 * d + o] ** 2;
      norm = Math.sqrt(norm);
      for (let i = 0; i < d; i++) v[i * 3 * d + o] *= magnitude[o] / norm;
    }
    expectRoundedOnce('c_attn', tensors.get('h.0.attn.c_attn.weight')!, v, dtype);
    // lora_bias: b += s·bias_B.
    expectRoundedOnce('c_proj.bias', tensors.get('h.0.attn.c_proj.bias')!, cProjBias.map((x, i) => x + s * projBiasB[i]), dtype);
    // modules_to_save replaces the tensor (rounded once to the base dtype).
    expectRoundedOnce('score', tensors.get('score.weight')!, newScore, dtype);
    expect(tensors.get('h.0.attn.empty_buffer')).toMatchObject({ dtype, shape: [0, d] });
  });
});

// --- kohya LoCon onto a diffusers UNet -------------------------------------------------------------

describe('kohya LoCon file on a diffusers folder', () => {
  const rand = seededRandom(5);
  const dtype: Float = 'F16';
  const cin = 6, cout = 10, k = 3, lin = 19, lout = 11;
  const conv = randomValues(cout * cin * k * k, rand).map((x) => roundForDType(x, dtype));
  const proj = randomValues(lout * lin, rand).map((x) => roundForDType(x, dtype));
  const baseDir = tempDir({
    'diffusion_pytorch_model.safetensors': buildSafetensors([
      { name: 'down_blocks.0.resnets.0.conv1.weight', dtype, shape: [cout, cin, k, k], data: conv },
      { name: 'down_blocks.0.attentions.0.proj_in.weight', dtype, shape: [lout, lin], data: proj },
    ]),
    'config.json': json({ _class_name: 'UNet2DConditionModel' }),
  });
  const r = 4;
  const down = randomValues(r * cin * k * k, rand, 0.5), up = randomValues(cout * r, rand, 0.5);
  const pdown = randomValues(r * lin, rand, 0.5), pup = randomValues(lout * r, rand, 0.5);
  const kohya = join(tempDir({
    'style.safetensors': buildSafetensors([
      { name: 'lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight', dtype: 'F16', shape: [r, cin, k, k], data: down.map((x) => roundForDType(x, 'F16')) },
      { name: 'lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight', dtype: 'F16', shape: [cout, r, 1, 1], data: up.map((x) => roundForDType(x, 'F16')) },
      { name: 'lora_unet_down_blocks_0_resnets_0_conv1.alpha', dtype: 'F32', shape: [], data: [2] },
      // no alpha: scale 1
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', dtype: 'F32', shape: [r, lin], data: pdown },
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', dtype: 'F32', shape: [lout, r], data: pup },
    ], { ss_network_dim: '4', ss_network_alpha: '2' }),
  }), 'style.safetensors');

  it('merges a 3×3 LoCon and a linear module with a negative weight', async () => {
    const out = join(tempDir({}), 'unet-merged');
    const w = -1.5;
    const result = await runCli(['merge', '--base', baseDir, '--adapter', kohya, '--weight', String(w), '--out', out, '--backend', 'webgpu']);
    expect(errorLines(result.stderr), result.stderr).toEqual([]);
    expect(result.code).toBe(0);
    const { tensors } = readSafetensors(join(out, 'diffusion_pytorch_model.safetensors'));
    const downR = down.map((x) => roundForDType(x, 'F16')), upR = up.map((x) => roundForDType(x, 'F16'));
    const convExact = conv.slice();
    addScaled(convExact, product(upR, downR, cout, r, cin * k * k), w * (2 / r), cout, cin * k * k, false);
    expectRoundedOnce('conv1', tensors.get('down_blocks.0.resnets.0.conv1.weight')!, convExact, dtype);
    const projExact = proj.slice();
    addScaled(projExact, product(pup, pdown, lout, r, lin), w * 1, lout, lin, false);
    expectRoundedOnce('proj_in', tensors.get('down_blocks.0.attentions.0.proj_in.weight')!, projExact, dtype);
    expect(existsSync(join(out, 'config.json'))).toBe(true);
  });

  it('merges a LyCORIS LoHa file: (w1a·w1b) ⊙ (w2a·w2b) · α/r on a linear and a flattened conv', async () => {
    const r1 = 3, r2 = 2, alpha = 1.5;
    const conv1 = { out: cout, inn: cin * k * k };
    const linear = { out: lout, inn: lin };
    const factors = (m: { out: number; inn: number }) => ({
      w1a: randomValues(m.out * r1, rand, 0.5), w1b: randomValues(r1 * m.inn, rand, 0.5),
      w2a: randomValues(m.out * r2, rand, 0.5), w2b: randomValues(r2 * m.inn, rand, 0.5),
    });
    const fc = factors(conv1), fl = factors(linear);
    const tensorsOf = (key: string, f: ReturnType<typeof factors>, m: { out: number; inn: number }): FixtureTensor[] => [
      { name: `${key}.hada_w1_a`, dtype: 'F32', shape: [m.out, r1], data: f.w1a },
      { name: `${key}.hada_w1_b`, dtype: 'F32', shape: [r1, m.inn], data: f.w1b },
      { name: `${key}.hada_w2_a`, dtype: 'F32', shape: [m.out, r2], data: f.w2a },
      { name: `${key}.hada_w2_b`, dtype: 'F32', shape: [r2, m.inn], data: f.w2b },
      { name: `${key}.alpha`, dtype: 'F32', shape: [], data: [alpha] },
    ];
    const loha = join(tempDir({
      'loha.safetensors': buildSafetensors([
        ...tensorsOf('lora_unet_down_blocks_0_resnets_0_conv1', fc, conv1),
        ...tensorsOf('lora_unet_down_blocks_0_attentions_0_proj_in', fl, linear),
      ]),
    }), 'loha.safetensors');
    const out = join(tempDir({}), 'unet-loha');
    const result = await runCli(['merge', '--base', baseDir, '--adapter', loha, '--out', out, '--backend', 'webgpu']);
    expect(errorLines(result.stderr), result.stderr).toEqual([]);
    expect(result.code).toBe(0);
    const { tensors } = readSafetensors(join(out, 'diffusion_pytorch_model.safetensors'));
    const expectLoha = (name: string, w: Float64Array, f: ReturnType<typeof factors>, m: { out: number; inn: number }) => {
      const p1 = product(f.w1a, f.w1b, m.out, r1, m.inn);
      const p2 = product(f.w2a, f.w2b, m.out, r2, m.inn);
      expectRoundedOnce(name, tensors.get(name)!, w.map((x, i) => x + (alpha / r1) * p1[i] * p2[i]), dtype);
    };
    expectLoha('down_blocks.0.resnets.0.conv1.weight', conv, fc, conv1);
    expectLoha('down_blocks.0.attentions.0.proj_in.weight', proj, fl, linear);
  });

  it('inspect describes the kohya file and the base', async () => {
    const a = await runCli(['inspect', kohya]);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/kohya/);
    expect(a.stdout).toMatch(/lora_unet_down_blocks_0_resnets_0_conv1\s+r=4 α=2 scale=0\.5/);
    expect(a.stdout).toMatch(/proj_in\s+r=4 α=4 scale=1/);
    const b = await runCli(['inspect', baseDir]);
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(/diffusers/);
    expect(b.stdout).toMatch(/F16 ×2/);
  });
});

// --- an SD1 kohya LoRA (diffusers module names) onto a single-file LDM checkpoint ------------------

describe('SD1 kohya LoRA on a single-file LDM checkpoint', () => {
  const rand = seededRandom(11);
  const dtype: Float = 'F16';
  const r = 3;
  const ldm = (path: string) => `model.diffusion_model.${path}.weight`;
  // Each module: its LDM key, the kohya module key (diffusers names), its shape, and the flattened
  // (out, in) shape the update has; 1×1 convs and 3×3 LoCon included.
  const modules = [
    { key: ldm('input_blocks.4.0.in_layers.2'), lora: 'lora_unet_down_blocks_1_resnets_0_conv1', shape: [6, 5, 3, 3], downShape: [r, 5, 3, 3], upShape: [6, r, 1, 1] },
    { key: ldm('input_blocks.1.1.proj_in'), lora: 'lora_unet_down_blocks_0_attentions_0_proj_in', shape: [7, 9, 1, 1], downShape: [r, 9, 1, 1], upShape: [7, r, 1, 1] },
    { key: ldm('middle_block.1.transformer_blocks.0.attn2.to_k'), lora: 'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k', shape: [8, 11], downShape: [r, 11], upShape: [8, r] },
    { key: ldm('output_blocks.2.1.conv'), lora: 'lora_unet_up_blocks_0_upsamplers_0_conv', shape: [4, 4, 3, 3], downShape: [r, 4, 3, 3], upShape: [4, r, 1, 1] },
    { key: 'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', lora: 'lora_te_text_model_encoder_layers_0_self_attn_q_proj', shape: [10, 10], downShape: [r, 10], upShape: [10, r] },
  ].map((m) => {
    const out = m.shape[0], inn = m.shape.slice(1).reduce((a, b) => a * b, 1);
    return {
      ...m, out, inn,
      w: randomValues(out * inn, rand).map((x) => roundForDType(x, dtype)),
      down: randomValues(r * inn, rand, 0.5).map((x) => roundForDType(x, 'F16')),
      up: randomValues(out * r, rand, 0.5).map((x) => roundForDType(x, 'F16')),
    };
  });
  // Tensors the LoRA does not touch, one of them an upsampler the mapping must not pick instead.
  const untouched: FixtureTensor[] = [
    { name: ldm('output_blocks.5.2.conv'), dtype, shape: [4, 4, 3, 3], data: randomValues(144, rand).map((x) => roundForDType(x, dtype)) },
    { name: 'first_stage_model.decoder.conv_out.weight', dtype, shape: [3, 4, 3, 3], data: randomValues(108, rand).map((x) => roundForDType(x, dtype)) },
  ];
  const checkpoint = join(tempDir({
    'sd15-model.safetensors': buildSafetensors([
      ...modules.map((m) => ({ name: m.key, dtype, shape: m.shape, data: m.w })),
      ...untouched,
    ]),
  }), 'sd15-model.safetensors');
  const alpha = 2;
  const lora = join(tempDir({
    'style.safetensors': buildSafetensors(modules.flatMap((m): FixtureTensor[] => [
      { name: `${m.lora}.lora_down.weight`, dtype: 'F16', shape: m.downShape, data: m.down },
      { name: `${m.lora}.lora_up.weight`, dtype: 'F16', shape: m.upShape, data: m.up },
      { name: `${m.lora}.alpha`, dtype: 'F32', shape: [], data: [alpha] },
    ])),
  }), 'style.safetensors');

  it('maps diffusers UNet names onto the checkpoint and merges every module once', async () => {
    const out = join(tempDir({}), 'merged.safetensors');
    const w = 0.8;
    const result = await runCli(['merge', '--base', checkpoint, '--adapter', lora, '--weight', String(w), '--out', out, '--backend', 'cpu']);
    expect(errorLines(result.stderr), result.stderr).toEqual([]);
    expect(result.code).toBe(0);
    const { tensors } = readSafetensors(out);
    for (const m of modules) {
      const exact = m.w.slice();
      addScaled(exact, product(m.up, m.down, m.out, r, m.inn), w * (alpha / r), m.out, m.inn, false);
      expectRoundedOnce(m.key, tensors.get(m.key)!, exact, dtype);
    }
    for (const t of untouched) expect(Array.from(tensors.get(t.name)!.values), t.name).toEqual(Array.from(t.data));
  });
});
