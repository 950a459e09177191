/**
 * GGUF merges end to end, file to file, checked against float64 truth computed in the test:
 * a PEFT adapter (rsLoRA, rank and alpha patterns, llama's q/k permutation) onto a Q4_K_M-style
 * base, requantized block for block as llama.cpp's reference quantizer does; a llama.cpp LoRA
 * adapter onto a split F16 base; and the refusals.
 */
import { join } from 'node:path';
import { setFloat16 } from '@petamoriken/float16';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors } from './helpers/fixtures.js';
import { referenceQuantizeBlock, REF_BLOCK, type RefType } from './helpers/ggml-reference.js';
import { buildGguf, readGguf, tensorValues, typeName, type FixtureTensor, type ReadGguf } from './helpers/gguf-builder.js';
import { runCli } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';
import {
  ggufLoraAdapter, ggufRowOf, LLAMA, peftLlamaAdapter, q4kmLlama, splitF16Llama, truthWithLora, truthWithPeft, type PeftFactors,
} from './helpers/gguf-models.js';

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu?.dispose());
const temp = tempDirs();
afterAll(temp.removeAll);

async function merge(base: Record<string, Uint8Array>, adapters: { files: Record<string, Uint8Array | string>; weight?: number }[], outDtype?: string) {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), adapters.map((a, i) => ({ files: memoryInputFileSet(a.files, `adapter${i}`), weight: a.weight })));
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: cpu, outDtype, slabBytes: 64 * 1024 });
    const files = new Map<string, ReadGguf & { bytes: Uint8Array }>();
    for (const f of output.files()) {
      const bytes = new Uint8Array(await f.blob.arrayBuffer());
      files.set(f.path, { ...readGguf(bytes), bytes });
    }
    return { files, plan: prepared.plan };
  } finally {
    await prepared.close();
  }
}

/**
 * The engine accumulates in f32 and rounds once: an error of a few f32 ulps of the terms'
 * magnitude |W| + |s|·Σ|B·A| (not of a result that cancels).
 */
function f32Tolerance(w: Float64Array, f: PeftFactors, scale: number): Float64Array {
  const mag = w.map(Math.abs);
  const heads = f.gguf.includes('attn_q') ? LLAMA.heads : f.gguf.includes('attn_k') ? LLAMA.kvHeads : 0;
  for (let o = 0; o < f.out; o++) {
    const row = heads ? ggufRowOf(o, f.out, heads) : o;
    for (let c = 0; c < f.in; c++) {
      let sum = 0;
      for (let k = 0; k < f.rank; k++) sum += Math.abs(f.b[o * f.rank + k] * f.a[k * f.in + c]);
      mag[row * f.in + c] += Math.abs(scale) * sum;
    }
  }
  return mag.map((m) => (f.rank + 2) * m * 2 ** -24);
}

describe('PEFT adapter onto a Q4_K_M-style GGUF', () => {
  const base = q4kmLlama();
  const adapter = peftLlamaAdapter();
  const truth = new Map(adapter.factors.map((f) => [f.gguf, truthWithPeft(base.tensors.get(f.gguf)!.values, f, adapter.scale(f))]));
  // Each merge once, shared by the tests below.
  let inF32: ReturnType<typeof merge> | undefined;
  let keptTypes: ReturnType<typeof merge> | undefined;
  const mergedF32 = () => (inF32 ??= merge(base.files, [{ files: adapter.files }], 'f32'));
  const mergedKeepingTypes = () => (keptTypes ??= merge(base.files, [{ files: adapter.files }]));

  it('merges in f32: every value within one f32 ulp of float64 truth (names mapped, q/k rows permuted, rsLoRA and patterns)', async () => {
    const { files } = await mergedF32();
    const out = files.get('tiny-llama-Q4_K_M.gguf')!;
    for (const f of adapter.factors) {
      const want = truth.get(f.gguf)!;
      const tolerance = f32Tolerance(base.tensors.get(f.gguf)!.values, f, adapter.scale(f));
      const t = out.tensors.find((x) => x.name === f.gguf)!;
      expect(typeName(t.typeId)).toBe('F32');
      const got = tensorValues('F32', t.data);
      const off = firstMiss(want.length, (i) => Math.abs(got[i] - want[i]) <= tolerance[i]);
      expect(off, `${f.gguf}[${off}]: got ${got[off]}, truth ${want[off]}`).toBe(-1);
    }
    // --dtype converts the untouched matrices too (as llama-quantize would); norms stay F32.
    expect(typeName(out.tensors.find((x) => x.name === 'output.weight')!.typeId)).toBe('F32');
    expect(typeName(out.tensors.find((x) => x.name === 'output_norm.weight')!.typeId)).toBe('F32');
    // The types changed: general.file_type now names the type holding most weights.
    expect(out.metadata.get('general.file_type')!.value).toBe(0);
  });

  it('keeps every tensor\'s type, requantizing merged tensors block for block as quantize_row_*_ref does', async () => {
    const [{ files }, { files: f32Files }] = [await mergedKeepingTypes(), await mergedF32()];
    const out = files.get('tiny-llama-Q4_K_M.gguf')!;
    const inF32 = f32Files.get('tiny-llama-Q4_K_M.gguf')!;
    const input = readGguf(base.files['tiny-llama-Q4_K_M.gguf']);
    expect(out.tensors.map((t) => [t.name, t.typeId, t.ne])).toEqual(input.tensors.map((t) => [t.name, t.typeId, t.ne]));
    let merged = 0;
    for (const t of out.tensors) {
      const original = input.tensors.find((x) => x.name === t.name)!;
      if (!truth.has(t.name)) {
        expectSameBytes(t.data, original.data, `${t.name} is byte-copied`);
        continue;
      }
      merged++;
      const type = typeName(t.typeId) as RefType;
      expect(type).toBe(base.tensors.get(t.name)!.type);
      // The blocks are what the reference quantizer makes of the merged f32 values.
      const values = tensorValues('F32', inF32.tensors.find((x) => x.name === t.name)!.data);
      const { size, bytes } = REF_BLOCK[type];
      for (let b = 0; b < values.length / size; b++) {
        const want = referenceQuantizeBlock(type, values.subarray(b * size, (b + 1) * size));
        expect([...t.data.subarray(b * bytes, (b + 1) * bytes)], `${t.name} block ${b}`).toEqual([...want]);
      }
      // And the values are the truth up to one more quantization (checked on one Q4_K and one Q6_K tensor).
      if (!/attn_q|ffn_down/.test(t.name)) continue;
      const got = tensorValues(type, t.data);
      const want = truth.get(t.name)!;
      const direct = tensorValues(type, Uint8Array.from(Array.from({ length: want.length / size }, (_, b) => [...referenceQuantizeBlock(type, want.subarray(b * size, (b + 1) * size))]).flat()));
      let worst = 0;
      let worstDirect = 0;
      for (let i = 0; i < want.length; i++) {
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
        worstDirect = Math.max(worstDirect, Math.abs(direct[i] - want[i]));
      }
      expect(worst, t.name).toBeLessThan(2.5 * worstDirect);
    }
    expect(merged).toBe(LLAMA.layers * 7);
    // Metadata kept, types unchanged so file_type too; provenance added.
    for (const [key] of base.metadata) expect(out.metadata.get(key), key).toEqual(input.metadata.get(key));
    expect(out.metadata.get('general.file_type')!.value).toBe(15);
    expect(JSON.parse(out.metadata.get('loramerge.adapters')!.value as string)[0]).toMatchObject({ format: 'peft', modules: LLAMA.layers * 7 });
    expect(out.keys.slice(0, base.metadata.length)).toEqual(base.metadata.map(([k]) => k));
  });

  it('merges like the adapter converted to a GGUF LoRA the way convert_lora_to_gguf does (B rows permuted)', async () => {
    // A as ne [in, r]; B's rows permuted for q and k; each module's own scale folded into B
    // (f32, α = 0 so the file's scale is the weight alone), since a GGUF LoRA has one α. Folding
    // α/√r into f32 rounds B, so each merge is correctly rounded from slightly different factors:
    // merged tensors are held to the PEFT adapter's float64 truth within the f32 tolerance (a wrong
    // row or scale is far off), copied ones equal byte for byte.
    const tensors: FixtureTensor[] = [];
    for (const f of adapter.factors) {
      const heads = f.gguf.includes('attn_q') ? LLAMA.heads : f.gguf.includes('attn_k') ? LLAMA.kvHeads : 0;
      const b = new Float32Array(f.out * f.rank);
      for (let o = 0; o < f.out; o++) {
        const row = heads ? ggufRowOf(o, f.out, heads) : o;
        for (let k = 0; k < f.rank; k++) b[row * f.rank + k] = adapter.scale(f) * f.b[o * f.rank + k];
      }
      tensors.push({ name: `${f.gguf}.lora_a`, type: 'F32', ne: [f.in, f.rank], data: new Uint8Array(Float32Array.from(f.a).buffer) });
      tensors.push({ name: `${f.gguf}.lora_b`, type: 'F32', ne: [f.rank, f.out], data: new Uint8Array(b.buffer) });
    }
    const lora = buildGguf({
      metadata: [
        ['general.architecture', { type: 'string', value: 'llama' }], ['general.type', { type: 'string', value: 'adapter' }],
        ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 0 }],
      ],
      tensors,
    });
    const [{ files: fromPeft }, { files: fromGguf }] = [await mergedF32(), await merge(base.files, [{ files: { 'lora.gguf': lora } }], 'f32')];
    const a = fromPeft.get('tiny-llama-Q4_K_M.gguf')!;
    const b = fromGguf.get('tiny-llama-Q4_K_M.gguf')!;
    let merged = 0;
    for (const t of a.tensors) {
      const other = b.tensors.find((x) => x.name === t.name)!.data;
      const f = adapter.factors.find((x) => x.gguf === t.name);
      if (f) {
        merged++;
        const want = truth.get(f.gguf)!;
        const tolerance = f32Tolerance(base.tensors.get(f.gguf)!.values, f, adapter.scale(f));
        const got = tensorValues('F32', other);
        const off = firstMiss(want.length, (i) => Math.abs(got[i] - want[i]) <= tolerance[i]);
        expect(off, `${f.gguf}[${off}]: got ${got[off]}, truth ${want[off]}`).toBe(-1);
      } else {
        expectSameBytes(other, t.data, t.name);
      }
    }
    expect(merged).toBe(adapter.factors.length);
  });

  it('refuses modules it cannot map, naming each', async () => {
    const cfg = JSON.parse(adapter.files['adapter_config.json'] as string);
    const { buildSafetensors } = await import('./helpers/fixtures.js');
    const files = {
      'adapter_config.json': JSON.stringify({ ...cfg, target_modules: [...cfg.target_modules, 'rotary'] }),
      'adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.model.layers.0.self_attn.rotary.lora_A.weight', dtype: 'F32', shape: [8, 256], data: new Float32Array(8 * 256) },
        { name: 'base_model.model.model.layers.0.self_attn.rotary.lora_B.weight', dtype: 'F32', shape: [256, 8], data: new Float32Array(8 * 256) },
        { name: 'base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [8, 256], data: new Float32Array(8 * 256) },
        { name: 'base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [256, 8], data: new Float32Array(8 * 256) },
      ]),
    };
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(files, 'bad-adapter') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    expect(messages).toHaveLength(2);
    expect(messages[0]).toMatch(/module "model\.layers\.0\.self_attn\.rotary": no matching tensor/);
    expect(messages[1]).toMatch(/module "model\.layers\.7\.self_attn\.q_proj": names block 7, but the base has 1 \(llama\.block_count\)/);
  });
});

describe('llama.cpp LoRA adapter onto a split F16 GGUF', () => {
  const base = splitF16Llama();
  const { hidden: h, ffn, vocab } = LLAMA;
  const targets = [
    { tensor: 'blk.0.attn_q.weight', rank: 4, in: h, out: h, aType: 'F16', bType: 'F16' },
    { tensor: 'blk.0.ffn_down.weight', rank: 8, in: ffn, out: h, aType: 'Q8_0', bType: 'F32' },
    { tensor: 'token_embd.weight', rank: 4, in: vocab, out: h, aType: 'BF16', bType: 'F16' },
    { tensor: 'output.weight', rank: 32, in: h, out: vocab, aType: 'Q8_0', bType: 'Q8_0' },
  ];
  const norm = { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [h], data: new Uint8Array(h * 4) };

  for (const alpha of [16, 0]) {
    it(`merges into a split output with the same parts (α = ${alpha}: scale ${alpha ? 'weight·α/r' : 'the weight alone'})`, async () => {
      const lora = ggufLoraAdapter(targets, alpha, 31, [norm]);
      const weight = 0.7;
      const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora'), weight }]);
      expect(prepared.plan.warnings.join('\n')).toMatch(/1 norm tensor \(blk\.0\.attn_norm\.weight\) ignored/);
      await prepared.close();
      const { files } = await merge(base.files, [{ files: { 'lora.gguf': lora.bytes }, weight }]);
      expect([...files.keys()]).toEqual(Object.keys(base.files));
      const inputs = Object.entries(base.files).map(([path, bytes]) => [path, readGguf(bytes)] as const);
      let exact = 0;
      let count = 0;
      for (const [path, input] of inputs) {
        const out = files.get(path)!;
        expect(out.tensors.map((t) => [t.name, t.typeId, t.ne])).toEqual(input.tensors.map((t) => [t.name, t.typeId, t.ne]));
        for (const key of input.keys) expect(out.metadata.get(key), `${path} ${key}`).toEqual(input.metadata.get(key));
        // Provenance goes to the first part only; the others keep just their split.* keys.
        expect(out.keys.length).toBe(input.keys.length + (path.includes('00001') ? 2 : 0));
        for (const t of out.tensors) {
          const f = lora.factors.get(t.name);
          const original = input.tensors.find((x) => x.name === t.name)!;
          if (!f) {
            expectSameBytes(t.data, original.data, `${t.name} is byte-copied`);
            continue;
          }
          const [rows, cols] = [t.ne[1], t.ne[0]];
          const scale = alpha ? weight * alpha / f.rank : weight;
          const want = truthWithLora(base.tensors.get(t.name)!.values, rows, cols, f, scale, t.name === 'token_embd.weight');
          const got = tensorValues('F16', t.data);
          const rounded = tensorValues('F16', new Uint8Array(Uint16Array.from(want, f16).buffer));
          count += want.length;
          for (let i = 0; i < want.length; i++) if (got[i] === rounded[i]) exact++;
          // Otherwise within one f16 ulp (f32 accumulation may miss a near-tie).
          const off = firstMiss(want.length, (i) => Math.abs(got[i] - want[i]) <= 2 ** Math.max(Math.floor(Math.log2(Math.abs(want[i]))) - 10, -24));
          expect(off, `${t.name}[${off}]: got ${got[off]}, truth ${want[off]}`).toBe(-1);
        }
      }
      expect(count).toBe(h * h + ffn * h + vocab * h + h * vocab);
      expect(exact / count).toBeGreaterThan(0.999);
    });
  }

  it('refuses an adapter for another architecture, a base tensor it cannot rewrite, and a split set with a part missing', async () => {
    const lora = ggufLoraAdapter(targets.slice(0, 1), 16);
    const qwen = lora.bytes.slice();
    // Same length: "llama" → "qwen3" in general.architecture.
    const at = Buffer.from(qwen).indexOf('llama');
    qwen.set(new TextEncoder().encode('qwen3'), at);
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet({ 'a.gguf': qwen }, 'qwen-lora') }]);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual(['qwen-lora: a LoRA for architecture "qwen3", but the base is "llama"']);
    await prepared.close();

    const onePart = { 'tiny-llama-F16-00001-of-00002.gguf': base.files['tiny-llama-F16-00001-of-00002.gguf'] };
    await expect(prepareMerge(memoryInputFileSet(onePart, 'base'), [{ files: memoryInputFileSet({ 'a.gguf': lora.bytes }, 'lora') }]))
      .rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/split GGUF of 2 parts but 1 found/) });
  });
});

function expectSameBytes(got: Uint8Array, want: Uint8Array, label: string): void {
  expect(got.byteLength, label).toBe(want.byteLength);
  const off = firstMiss(want.length, (i) => got[i] === want[i]);
  expect(off, `${label}: byte ${off} differs`).toBe(-1);
}

/** The first index for which `ok` fails, or −1. */
function firstMiss(n: number, ok: (i: number) => boolean): number {
  for (let i = 0; i < n; i++) if (!ok(i)) return i;
  return -1;
}

function f16(x: number): number {
  // Rounded once from the double by @petamoriken/float16, independently of src/.
  const view = new DataView(new ArrayBuffer(2));
  setFloat16(view, 0, x, true);
  return view.getUint16(0, true);
}

describe('the plan', () => {
  it('says in one line that a wider llama\'s PEFT LoRA fits no tensor, q and k (rows permuted in the GGUF) named with both shapes like the rest', async () => {
    const r = 4;
    const factor = (name: string, shape: number[]) => ({ name, dtype: 'F32' as const, shape, data: new Array(shape[0] * shape[1]).fill(0.01) });
    // A model twice as wide (hidden 512, kv 256) as the base's (hidden 256, kv 128).
    const shapes: [string, number, number][] = [['self_attn.q_proj', 512, 512], ['self_attn.k_proj', 256, 512], ['mlp.down_proj', 512, 512]];
    const adapter = {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8, target_modules: ['q_proj', 'k_proj', 'down_proj'] }),
      'adapter_model.safetensors': buildSafetensors(shapes.flatMap(([m, out, inF]) => [
        factor(`base_model.model.model.layers.0.${m}.lora_A.weight`, [r, inF]), factor(`base_model.model.model.layers.0.${m}.lora_B.weight`, [out, r]),
      ])),
    };
    const prepared = await prepareMerge(memoryInputFileSet(q4kmLlama().files, 'base'), [{ files: memoryInputFileSet(adapter, 'wide') }]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'wide: none of its 3 modules fits this base: 3 have other shapes than the tensors they name (such as module "model.layers.0.self_attn.q_proj": ΔW (512, 512) does not fit base blk.0.attn_q.weight (256, 256), whose rows hf-to-gguf reorders: ΔW has 512 rows (outputs), the base 256); it was trained on another model or another size of this one (an SD 1.5 LoRA on SDXL, a 7B model\'s LoRA on a 13B one): pick the base it was trained on',
    ]);
  });

  it('says that merged quantized tensors are re-quantized, which adds the quantization error once more', async () => {
    const base = q4kmLlama();
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(peftLlamaAdapter().files, 'peft') }]);
    await prepared.close();
    expect(prepared.plan.warnings).toEqual([
      'base: unless --dtype chooses another type, the merged tensors (4 Q4_K, 1 Q5_K, 2 Q6_K) are re-quantized to their own types by llama.cpp\'s reference rules; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)',
    ]);
  });

  // The warning said "unless --dtype chooses another type" to a user who had passed --dtype f16.
  it.each([
    // Every merged matrix dequantized to F16, or quantized to Q8_0 (another type: the output's own warning says so).
    ['f16', []],
    ['q8_0', []],
    // Q4_K matrices stay Q4_K, re-quantized; the Q5_K and Q6_K ones become Q4_K.
    ['q4_k', ['base: with --dtype q4_k, the merged tensors (4 Q4_K) are re-quantized to their own types by llama.cpp\'s reference rules; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)']],
  ])('with a dtype chosen (%s), it names only the merged tensors that keep their own quantized type', async (dtype, warnings) => {
    const prepared = await prepareMerge(memoryInputFileSet(q4kmLlama().files, 'base'), [{ files: memoryInputFileSet(peftLlamaAdapter().files, 'peft') }], { dtype });
    await prepared.close();
    expect(prepared.plan.warnings).toEqual(warnings);
  });

  it('the command line with --dtype f16 prints no re-quantizing warning; without --dtype it does', async () => {
    const model = q4kmLlama();
    const dir = temp.make({ ...model.files, ...Object.fromEntries(Object.entries(peftLlamaAdapter().files).map(([k, v]) => [`peft/${k}`, v])) });
    const args = ['merge', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--adapter', join(dir, 'peft'), '--dry-run'];
    const chosen = await runCli([...args, '--dtype', 'f16']);
    expect(chosen.code, chosen.stderr).toBe(0);
    expect(chosen.stderr).not.toMatch(/re-quantized|--dtype chooses/);
    const kept = await runCli(args);
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stderr).toMatch(/^warning: .*tiny-llama-Q4_K_M\.gguf: unless --dtype chooses another type, the merged tensors \(4 Q4_K, 1 Q5_K, 2 Q6_K\) are re-quantized/m);
  });
});
