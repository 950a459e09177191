/**
 * A GGUF converted from an NVIDIA ModelOpt NVFP4 checkpoint (convert_hf_to_gguf's
 * `_generate_nvfp4_tensors`): each weight NVFP4 as ModelOpt quantized it, and beside it `.scale`
 * (weight_scale_2; one per expert beside stacked experts) and `.input_scale`. llama.cpp multiplies
 * the matmul's output by `.scale`, so the model's weight is W = w · s. A PEFT LoRA, trained on W,
 * is merged as w + ΔW / s with every scale kept, on the CPU and on WebGPU, against float64 truth
 * written here; the merged NVFP4 blocks are ggml's reference quantizer's. A llama.cpp LoRA is
 * merged the same way (llama.cpp adds its product after the scale), with a warning naming
 * export-lora's other rule. `--dtype` converts the stored values and keeps the scales beside them.
 * What cannot be divided by a scale is refused naming the weight and its scale, through the CLI
 * with nothing written.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName, type ReadGguf } from './helpers/gguf-builder.js';
import {
  ggufLoraAdapter, ggufMoeLoraAdapter, LLAMA, modelOptNvfp4Llama, peftLlamaAdapter, truthWithLora, truthWithPeft, type Nvfp4LlamaFixture, type PeftFactors,
} from './helpers/gguf-models.js';
import { mergeBackends, mergeFileInMemory, type InMemoryAdapter } from './helpers/merge-backends.js';
import { readKeptScales } from '../src/formats/gguf/kept-scales.js';

const backends = mergeBackends({ cpu: 'default' });
const temp = tempDirs();
afterAll(temp.removeAll);

const { hidden: HIDDEN, ffn: FFN, heads: HEADS, kvHeads: KV_HEADS } = LLAMA;
const KV = (HIDDEN / HEADS) * KV_HEADS;
const EXPERTS = 4;
const BASE_NAME = 'tiny-llama-NVFP4.gguf';

const abs = (x: Float64Array) => x.map(Math.abs);

/**
 * Every value within a few f32 ulps of the magnitude of the sum it is (the engine rounds an f32
 * accumulation of |w| + Σ|terms| once): `magnitude` is that sum of absolute values.
 */
function expectNearTruth(got: ArrayLike<number>, want: Float64Array, magnitude: Float64Array, rank: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (Math.abs(got[i] - want[i]) > (rank + 2) * magnitude[i] * 2 ** -24) {
      expect.fail(`${what}[${i}]: got ${got[i]}, truth ${want[i]}`);
    }
  }
}

function tensorOf(file: ReadGguf, name: string) {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`no tensor ${name}`);
  return t;
}

/** Every tensor of `input` but `changed` is in `output` byte for byte, the scales among them. */
function expectCopied(input: ReadGguf, output: ReadGguf, changed: ReadonlySet<string>): void {
  expect(output.tensors.map((t) => t.name)).toEqual(input.tensors.map((t) => t.name));
  for (const t of input.tensors) {
    if (changed.has(t.name)) continue;
    expect(Buffer.from(tensorOf(output, t.name).data).equals(Buffer.from(t.data)), `${t.name} is copied as it is`).toBe(true);
  }
}

async function merge(backend: string, base: Nvfp4LlamaFixture, adapters: InMemoryAdapter[], outDtype?: string, dtypeMergedOnly = false) {
  const chosen = backends[backend]!;
  const { bytes, warnings } = await mergeFileInMemory({
    backend: chosen, base: base.files, adapters, slabBytes: 16 * 1024, ...(outDtype ? { outDtype } : {}), dtypeMergedOnly,
  });
  return { out: readGguf(bytes), warnings };
}

describe('a PEFT LoRA on every linear layer of a ModelOpt NVFP4 llama', () => {
  const base = modelOptNvfp4Llama();
  const adapter = peftLlamaAdapter();
  const input = readGguf(base.files[BASE_NAME]);
  const scaleOf = (f: PeftFactors) => base.scales.get(f.gguf)![0];
  // The model's weight is w·s: ΔW / s on the stored values (q and k rows permuted as the converter permutes them).
  const truth = (f: PeftFactors) => truthWithPeft(base.tensors.get(f.gguf)!.values, f, adapter.scale(f) / scaleOf(f));
  const magnitude = (f: PeftFactors) => truthWithPeft(abs(base.tensors.get(f.gguf)!.values), { ...f, a: abs(f.a), b: abs(f.b) }, adapter.scale(f) / scaleOf(f));
  const merged = new Set(adapter.factors.map((f) => f.gguf));

  it.for(['cpu', 'webgpu'])('adds ΔW / scale to each stored weight, keeps it NVFP4 as ggml\'s reference quantizer writes it, and copies every .scale and .input_scale, on %s', async (name, ctx) => {
    if (!backends[name]) return ctx.skip();
    const inF32 = await merge(name, base, [{ files: adapter.files, name: 'peft' }], 'f32', true);
    for (const f of adapter.factors) {
      const t = tensorOf(inF32.out, f.gguf);
      expect(typeName(t.typeId)).toBe('F32');
      expectNearTruth(tensorValues('F32', t.data), truth(f), magnitude(f), f.rank, f.gguf);
    }
    expectCopied(input, inF32.out, merged);

    const kept = await merge(name, base, [{ files: adapter.files, name: 'peft' }]);
    for (const f of adapter.factors) {
      const t = tensorOf(kept.out, f.gguf);
      expect(typeName(t.typeId)).toBe('NVFP4');
      // The merged f32 values (checked above against the truth), quantized by quantize_row_nvfp4_ref.
      const want = tensorData('NVFP4', tensorValues('F32', tensorOf(inF32.out, f.gguf).data));
      expect(Buffer.from(t.data).equals(Buffer.from(want)), `${f.gguf} blocks`).toBe(true);
    }
    expectCopied(input, kept.out, merged);
    expect(kept.out.metadata.get('general.file_type')!.value).toBe(39);
    expect(kept.warnings.join('\n')).not.toMatch(/export-lora/);
  });

  it('--dtype q8_0 converts the stored values of every matrix (merged: w + ΔW / s) and keeps the scales beside them', async () => {
    const { out } = await merge('cpu', base, [{ files: adapter.files, name: 'peft' }], 'q8_0');
    const inF32 = (await merge('cpu', base, [{ files: adapter.files, name: 'peft' }], 'f32', true)).out;
    for (const t of input.tensors) {
      const converted = tensorOf(out, t.name);
      if (typeName(t.typeId) !== 'NVFP4') {
        const matrix = t.ne.length > 1 && !t.name.endsWith('_norm.weight');
        expect(typeName(converted.typeId), t.name).toBe(matrix ? 'Q8_0' : typeName(t.typeId));
        if (!matrix) expect(Buffer.from(converted.data).equals(Buffer.from(t.data)), `${t.name} (a scale or a norm) is copied`).toBe(true);
        continue;
      }
      // Still the stored values (times .scale in llama.cpp), not the scale folded in.
      const values = merged.has(t.name) ? tensorValues('F32', tensorOf(inF32, t.name).data) : base.tensors.get(t.name)!.values;
      expect(typeName(converted.typeId)).toBe('Q8_0');
      expect(Buffer.from(converted.data).equals(Buffer.from(tensorData('Q8_0', values))), t.name).toBe(true);
    }
  });
});

describe('a llama.cpp LoRA on a ModelOpt NVFP4 llama', () => {
  const base = modelOptNvfp4Llama();
  const targets = [
    { tensor: 'blk.0.attn_v.weight', rank: 4, in: HIDDEN, out: KV, aType: 'F32', bType: 'F16' },
    { tensor: 'blk.0.ffn_down.weight', rank: 4, in: FFN, out: HIDDEN, aType: 'F16', bType: 'F32' },
  ];
  const lora = ggufLoraAdapter(targets, 8);

  it.for(['cpu', 'webgpu'])('is merged as ΔW / scale too (llama.cpp adds its product after the scale), saying export-lora differs, on %s', async (name, ctx) => {
    if (!backends[name]) return ctx.skip();
    const { out, warnings } = await merge(name, base, [{ files: { 'lora.gguf': lora.bytes }, name: 'lora.gguf' }], 'f32', true);
    for (const t of targets) {
      const f = lora.factors.get(t.tensor)!;
      const s = (8 / t.rank) / base.scales.get(t.tensor)![0];
      const want = truthWithLora(base.tensors.get(t.tensor)!.values, t.out, t.in, f, s, false);
      const magnitude = truthWithLora(abs(base.tensors.get(t.tensor)!.values), t.out, t.in, { ...f, a: abs(f.a), b: abs(f.b) }, s, false);
      expectNearTruth(tensorValues('F32', tensorOf(out, t.tensor).data), want, magnitude, t.rank, t.tensor);
    }
    expect(warnings).toContainEqual(expect.stringMatching(/^lora\.gguf: 2 weights it changes \(blk\.0\.attn_v\.weight, blk\.0\.ffn_down\.weight\) carry a llama\.cpp scale \(\.scale\): its update is divided by that scale .*export-lora, which does not read \.scale, would add ΔW to the stored values/));
  });
});

/** Per expert e: A_e (r, in) and B_e (out, r), F32 values. */
function expertFactors(rand: () => number, rank: number, inF: number, out: number) {
  return Array.from({ length: EXPERTS }, () => ({
    a: Float64Array.from({ length: rank * inF }, () => Math.fround(0.1 * (rand() - 0.5))),
    b: Float64Array.from({ length: out * rank }, () => Math.fround(0.1 * (rand() - 0.5))),
  }));
}

/** w plus, on expert e's rows (rows per expert × cols), `scale`·B_e·A_e / s[e]. */
function expertTruth(w: Float64Array, rows: number, cols: number, rank: number, factors: { a: Float64Array; b: Float64Array }[], scale: number, s: readonly number[], absolute = false): Float64Array {
  const out = absolute ? abs(w) : w.slice();
  const v = (x: number) => (absolute ? Math.abs(x) : x);
  factors.forEach(({ a, b }, e) => {
    for (let o = 0; o < rows; o++) {
      for (let c = 0; c < cols; c++) {
        let sum = 0;
        for (let k = 0; k < rank; k++) sum += v(b[o * rank + k]) * v(a[k * cols + c]);
        out[(e * rows + o) * cols + c] += (scale / s[e]) * sum;
      }
    }
  });
  return out;
}

describe('a ModelOpt NVFP4 Mixtral-like llama: one scale per expert of each stacked tensor', () => {
  const base = modelOptNvfp4Llama({ experts: EXPERTS });
  const input = readGguf(base.files[BASE_NAME]);
  const rank = 4, alpha = 8;
  const rand = seededRandom(7);
  // Mixtral's w1 (gate), w2 (down), w3 (up) of every expert, as PEFT saves them.
  const modules = [
    { w: 'w1', tensor: 'blk.0.ffn_gate_exps.weight', out: FFN, in: HIDDEN },
    { w: 'w2', tensor: 'blk.0.ffn_down_exps.weight', out: HIDDEN, in: FFN },
    { w: 'w3', tensor: 'blk.0.ffn_up_exps.weight', out: FFN, in: HIDDEN },
  ].map((m) => ({ ...m, factors: expertFactors(rand, rank, m.in, m.out) }));
  const files = {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'mistralai/Mixtral-8x7B-v0.1', r: rank, lora_alpha: alpha, target_modules: ['w1', 'w2', 'w3'] }),
    'adapter_model.safetensors': buildSafetensors(modules.flatMap((m) => m.factors.flatMap(({ a, b }, e) => [
      { name: `base_model.model.model.layers.0.block_sparse_moe.experts.${e}.${m.w}.lora_A.weight`, dtype: 'F32' as const, shape: [rank, m.in], data: a },
      { name: `base_model.model.model.layers.0.block_sparse_moe.experts.${e}.${m.w}.lora_B.weight`, dtype: 'F32' as const, shape: [m.out, rank], data: b },
    ]))),
  };

  it.for(['cpu', 'webgpu'])('divides expert e\'s ΔW by its own scale, on %s', async (name, ctx) => {
    if (!backends[name]) return ctx.skip();
    const { out } = await merge(name, base, [{ files, name: 'mixtral-experts' }], 'f32', true);
    for (const m of modules) {
      const s = base.scales.get(m.tensor)!;
      expect(new Set(s).size, 'the experts\' scales differ').toBe(EXPERTS);
      const w = base.tensors.get(m.tensor)!.values;
      const want = expertTruth(w, m.out, m.in, rank, m.factors, alpha / rank, s);
      expectNearTruth(tensorValues('F32', tensorOf(out, m.tensor).data), want, expertTruth(w, m.out, m.in, rank, m.factors, alpha / rank, s, true), rank, m.tensor);
    }
    expectCopied(input, out, new Set(modules.map((m) => m.tensor)));
  });

  it.for(['cpu', 'webgpu'])('divides expert e\'s slice of a llama.cpp MoE LoRA (3-D factors) by its own scale, saying so, on %s', async (name, ctx) => {
    if (!backends[name]) return ctx.skip();
    const tensor = 'blk.0.ffn_down_exps.weight';
    const lora = ggufMoeLoraAdapter([{ tensor, in: FFN, out: HIDDEN, rank: 2, aType: 'F32', bType: 'F16' }], 4, EXPERTS);
    const { out, warnings } = await merge(name, base, [{ files: { 'moe-lora.gguf': lora.bytes }, name: 'moe-lora.gguf' }], 'f32', true);
    const f = lora.factors.get(tensor)!;
    const factors = f.a.map((a, e) => ({ a, b: f.b[e] }));
    const [w, s] = [base.tensors.get(tensor)!.values, base.scales.get(tensor)!];
    expectNearTruth(tensorValues('F32', tensorOf(out, tensor).data), expertTruth(w, HIDDEN, FFN, 2, factors, 4 / 2, s), expertTruth(w, HIDDEN, FFN, 2, factors, 4 / 2, s, true), 2, tensor);
    expect(warnings).toContainEqual(expect.stringMatching(/^moe-lora\.gguf: one weight it changes \(blk\.0\.ffn_down_exps\.weight\) carries a llama\.cpp scale \(\.scale\)/));
  });

  it('refuses a llama.cpp LoRA that lands on every expert of a stacked tensor at once, whose scales differ', async () => {
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.ffn_up_exps.weight', rank: 2, in: HIDDEN, out: EXPERTS * FFN, aType: 'F32', bType: 'F32' }], 2);
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet({ 'whole.gguf': lora.bytes }, 'whole.gguf') }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([
        expect.stringMatching(/^whole\.gguf: module "blk\.0\.ffn_up_exps\.weight": lands on experts 0–3 of blk\.0\.ffn_up_exps\.weight \(each expert times its value in blk\.0\.ffn_up_exps\.scale, as llama\.cpp reads it\), whose scales differ/),
      ]);
    } finally {
      await prepared.close();
    }
  });
});

describe('PEFT target_parameters on the fused experts of a ModelOpt NVFP4 Qwen3-MoE', () => {
  const base = modelOptNvfp4Llama({ experts: EXPERTS, arch: 'qwen3moe' });
  const rank = 2, alpha = 6;
  const rand = seededRandom(9);
  const factor = (n: number) => Float64Array.from({ length: n }, () => Math.fround(0.1 * (rand() - 0.5)));
  // transformers 5's Qwen3-MoE experts (E, out, in): gate_up_proj (E, 2·ffn, hidden), gate the first half; down_proj (E, hidden, ffn).
  const gateUp = { a: factor(rank * EXPERTS * HIDDEN), b: factor(2 * FFN * rank * EXPERTS) };
  const down = { a: factor(rank * EXPERTS * FFN), b: factor(HIDDEN * rank * EXPERTS) };
  const prefix = 'base_model.model.model.layers.0.mlp.experts';
  const files = {
    'adapter_config.json': JSON.stringify({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen3-30B-A3B', r: rank, lora_alpha: alpha,
      target_modules: [], target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj'], peft_version: '0.19.1',
    }),
    'adapter_model.safetensors': buildSafetensors([
      { name: `${prefix}.base_layer.lora_A.weight`, dtype: 'F32', shape: [rank * EXPERTS, HIDDEN], data: gateUp.a },
      { name: `${prefix}.base_layer.lora_B.weight`, dtype: 'F32', shape: [2 * FFN, rank * EXPERTS], data: gateUp.b },
      { name: `${prefix}.lora_A.weight`, dtype: 'F32', shape: [rank * EXPERTS, FFN], data: down.a },
      { name: `${prefix}.lora_B.weight`, dtype: 'F32', shape: [HIDDEN, rank * EXPERTS], data: down.b },
    ]),
  };
  /** PEFT's per-expert factors (A_e rows e·r…, B_e columns k·E + e), from row `from` of B, `rows` of them. */
  const perExpert = (f: { a: Float64Array; b: Float64Array }, inF: number, from: number, rows: number) => Array.from({ length: EXPERTS }, (_, e) => ({
    a: f.a.slice(e * rank * inF, (e + 1) * rank * inF),
    b: Float64Array.from({ length: rows * rank }, (_, x) => f.b[(from + Math.floor(x / rank)) * rank * EXPERTS + (x % rank) * EXPERTS + e]),
  }));
  const targets = [
    { tensor: 'blk.0.ffn_gate_exps.weight', rows: FFN, cols: HIDDEN, factors: perExpert(gateUp, HIDDEN, 0, FFN) },
    { tensor: 'blk.0.ffn_up_exps.weight', rows: FFN, cols: HIDDEN, factors: perExpert(gateUp, HIDDEN, FFN, FFN) },
    { tensor: 'blk.0.ffn_down_exps.weight', rows: HIDDEN, cols: FFN, factors: perExpert(down, FFN, 0, HIDDEN) },
  ];

  it.for(['cpu', 'webgpu'])('divides each expert\'s term of the fused parameter by that expert\'s scale on each tensor, on %s', async (name, ctx) => {
    if (!backends[name]) return ctx.skip();
    const { out } = await merge(name, base, [{ files, name: 'qwen-experts' }], 'f32', true);
    for (const t of targets) {
      const s = base.scales.get(t.tensor)!;
      const w = base.tensors.get(t.tensor)!.values;
      expectNearTruth(tensorValues('F32', tensorOf(out, t.tensor).data), expertTruth(w, t.rows, t.cols, rank, t.factors, alpha / rank, s),
        expertTruth(w, t.rows, t.cols, rank, t.factors, alpha / rank, s, true), rank, t.tensor);
    }
  });
});

describe('what cannot be divided by a scale', () => {
  const scaledHead = modelOptNvfp4Llama({ scaledHead: true });
  const g = seededRandom(3);
  const lora = (targets: string[], extra: Record<string, unknown> = {}, more: { name: string; dtype: 'F32'; shape: number[]; data: Float64Array }[] = []) => ({
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'nvidia/Llama-3.1-8B-Instruct-FP4', r: 2, lora_alpha: 4, target_modules: targets, ...extra }),
    'adapter_model.safetensors': buildSafetensors([
      ...targets.flatMap((t) => {
        const [out, inF] = t === 'q_proj' ? [HIDDEN, HIDDEN] : [KV, HIDDEN];
        return [
          { name: `base_model.model.model.layers.0.self_attn.${t}.lora_A.weight`, dtype: 'F32' as const, shape: [2, inF], data: Float64Array.from({ length: 2 * inF }, () => g() - 0.5) },
          { name: `base_model.model.model.layers.0.self_attn.${t}.lora_B.weight`, dtype: 'F32' as const, shape: [out, 2], data: Float64Array.from({ length: 2 * out }, () => g() - 0.5) },
        ];
      }),
      ...more,
    ]),
  });

  async function problems(base: Record<string, Uint8Array>, files: Record<string, Uint8Array | string>): Promise<string[]> {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet(files, 'adapter') }]);
    try {
      return prepared.plan.problems.map((p) => p.message);
    } finally {
      await prepared.close();
    }
  }

  it('DoRA: refused through the CLI in one line naming the weight and its .scale, nothing written', async () => {
    const dora = lora(['v_proj'], { use_dora: true }, [
      { name: 'base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector', dtype: 'F32', shape: [KV], data: Float64Array.from({ length: KV }, () => 1 + g()) },
    ]);
    const dir = temp.make({ [`base/${BASE_NAME}`]: scaledHead.files[BASE_NAME], ...Object.fromEntries(Object.entries(dora).map(([k, v]) => [`dora/${k}`, v])) });
    const out = join(dir, 'merged.gguf');
    const run = await runCli(['merge', '--base', join(dir, 'base'), '--adapter', join(dir, 'dora'), '--out', out, '--backend', 'cpu']);
    expect(run.code).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([expect.stringMatching(/module "model\.layers\.0\.self_attn\.v_proj": DoRA on blk\.0\.attn_v\.weight \(times blk\.0\.attn_v\.scale, as llama\.cpp reads it\) is not supported$/)]);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir)).toEqual(['base', 'dora']);
  });

  it('--dtype that would take output.weight out of NVFP4 beside output.scale: refused through the CLI, nothing written', async () => {
    const dir = temp.make({ [`base/${BASE_NAME}`]: scaledHead.files[BASE_NAME], ...Object.fromEntries(Object.entries(lora(['v_proj'])).map(([k, v]) => [`peft/${k}`, v])) });
    // A folder base gives a folder: an --out named .gguf is refused on its own account.
    const out = join(dir, 'merged');
    const run = await runCli(['merge', '--base', join(dir, 'base'), '--adapter', join(dir, 'peft'), '--out', out, '--dtype', 'q4_k', '--backend', 'cpu']);
    expect(run.code).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([expect.stringMatching(/tensor "output\.weight": llama\.cpp reads output\.scale and output\.input_scale only beside an NVFP4 output\.weight .* cannot be written as Q4_K; keep it NVFP4/)]);
    expect(listDir(dir)).toEqual(['base', 'peft']);
  });

  it('IA3 and modules_to_save on scaled weights are refused naming each weight and its .scale', async () => {
    const ia3 = {
      'adapter_config.json': JSON.stringify({ peft_type: 'IA3', task_type: 'CAUSAL_LM', target_modules: ['down_proj'], feedforward_modules: ['down_proj'] }),
      'adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.model.layers.0.mlp.down_proj.ia3_l', dtype: 'F32', shape: [1, FFN], data: Float64Array.from({ length: FFN }, () => 1 + 0.1 * g()) },
      ]),
    };
    expect(await problems(scaledHead.files, ia3)).toEqual([
      expect.stringMatching(/\(IA\)³ \(PEFT\) on blk\.0\.ffn_down\.weight \(times blk\.0\.ffn_down\.scale, as llama\.cpp reads it\) is not supported/),
    ]);
    const saved = lora(['v_proj'], { modules_to_save: ['lm_head'] }, [
      { name: 'base_model.model.lm_head.modules_to_save.default.weight', dtype: 'F32', shape: [LLAMA.vocab, HIDDEN], data: Float64Array.from({ length: LLAMA.vocab * HIDDEN }, () => g()) },
    ]);
    expect(await problems(scaledHead.files, saved)).toEqual([
      expect.stringMatching(/replacing output\.weight \(times output\.scale, as llama\.cpp reads it\) is not supported/),
    ]);
  });

  it('a .scale that is zero, or one value beside stacked experts, is refused naming it when its weight is merged', async () => {
    const input = readGguf(scaledHead.files[BASE_NAME]);
    const zeroed = buildGguf({
      metadata: scaledHead.metadata,
      tensors: input.tensors.map((t) => ({ name: t.name, type: typeName(t.typeId), ne: t.ne, data: t.name === 'blk.0.attn_v.scale' ? tensorData('F32', [0]) : t.data })),
    });
    expect(await problems({ [BASE_NAME]: zeroed }, lora(['v_proj']))).toEqual([
      expect.stringMatching(/module "model\.layers\.0\.self_attn\.v_proj": blk\.0\.attn_v\.scale \(F32 \(1\)\) holds 0, which cannot divide the update of blk\.0\.attn_v\.weight/),
    ]);
    const moe = modelOptNvfp4Llama({ experts: EXPERTS });
    const moeInput = readGguf(moe.files[BASE_NAME]);
    const single = buildGguf({
      metadata: moe.metadata,
      tensors: moeInput.tensors.map((t) => (t.name === 'blk.0.ffn_up_exps.scale'
        ? { name: t.name, type: 'F32', ne: [1], data: tensorData('F32', [0.002]) }
        : { name: t.name, type: typeName(t.typeId), ne: t.ne, data: t.data })),
    });
    // One expert's module (Mixtral's w3 of expert 1) on ffn_up_exps.
    const prepared = await prepareMerge(memoryInputFileSet({ [BASE_NAME]: single }, 'base'), [{
      files: memoryInputFileSet({
        'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: ['w3'] }),
        'adapter_model.safetensors': buildSafetensors([
          { name: 'base_model.model.model.layers.0.block_sparse_moe.experts.1.w3.lora_A.weight', dtype: 'F32', shape: [2, HIDDEN], data: Float64Array.from({ length: 2 * HIDDEN }, () => g()) },
          { name: 'base_model.model.model.layers.0.block_sparse_moe.experts.1.w3.lora_B.weight', dtype: 'F32', shape: [FFN, 2], data: Float64Array.from({ length: 2 * FFN }, () => g()) },
        ]),
      }, 'one-expert'),
    }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([
        expect.stringMatching(/blk\.0\.ffn_up_exps\.scale \(F32 \(1\)\) should hold one scale per expert \(4\), as llama\.cpp reads it beside blk\.0\.ffn_up_exps\.weight/),
      ]);
    } finally {
      await prepared.close();
    }
  });
});

describe('a `.scale` that is the model\'s own parameter', () => {
  const per = (name: string) => ({ dtype: 'F32' as const, data: new Uint8Array(Float32Array.of(0.5, 2, 4, 8).buffer), name });
  const stored = (downType: string) => new Map([
    ['blk.0.ffn_down_exps.weight', { type: downType, shape: [4, 32, 16] }],
    ['blk.0.ffn_down_exps.scale', { type: 'F32', shape: [4] }],
  ]);
  it('Gemma 4\'s per-expert output scale (ffn_down_exps.scale) divides nothing; for another architecture the same tensor is a stored scale', async () => {
    const gemma = await readKeptScales(stored('Q8_0'), async (n) => per(n), 'gemma4');
    expect([...gemma.scales.keys(), ...gemma.unusable.keys()]).toEqual([]);
    const qwen = await readKeptScales(stored('Q8_0'), async (n) => per(n), 'qwen3moe');
    expect(qwen.scales.get('blk.0.ffn_down_exps.weight')?.values).toEqual([0.5, 2, 4, 8]);
  });
  it('beside NVFP4 experts in a Gemma 4 file, where an NVFP4 conversion\'s scale goes by the same name, a merge is refused naming it', async () => {
    const gemma = await readKeptScales(stored('NVFP4'), async (n) => per(n), 'gemma4');
    expect(gemma.scales.size).toBe(0);
    expect(gemma.unusable.get('blk.0.ffn_down_exps.weight')).toMatch(/blk\.0\.ffn_down_exps\.scale names both gemma4's own per-expert output scale and an NVFP4 conversion's/);
  });
});
