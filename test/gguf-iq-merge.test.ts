/**
 * Merging into an IQ-quantized GGUF: loramerge reads IQ blocks and writes IQ3_XXS, IQ3_S, IQ4_NL
 * and IQ4_XS (test/gguf-iq3-codecs.test.ts, test/gguf-iq4-codecs.test.ts), the IQ1 and IQ2 types
 * only with an importance matrix (gguf-iq1-codecs.test.ts, gguf-iq2-codecs.test.ts). llama-quantize
 * writes IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS and IQ2_S only with an importance matrix, so without one a
 * merged tensor of one of them is written as F16, as llama.cpp's export-lora writes every merged tensor it
 * dequantized (get_out_tensor_type: F32 stays F32, anything else F16), with a warning naming it;
 * untouched ones are byte-copied. With --dtype the merged and the untouched matrices are written in
 * that type (the reference quantizer of the exactly decoded values) and norms stay. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockDecoder } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { encodeIq2XxsRow } from '../src/formats/gguf/codecs/iq2-search.js';
import { createBlobOutputTarget, memoryInputFileSet, merge, mergeModel, prepareMerge, type ImportanceMatrix, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { runCli } from './helpers/cli.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { ggufLoraAdapter } from './helpers/gguf-models.js';

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu?.dispose());
const temp = tempDirs();
afterAll(temp.removeAll);

/** Random blocks of an IQ type with small finite f16 scales (as a quantized model's). */
function iqBlocks(name: string, values: number, seed: number): Uint8Array {
  const type = ggmlTypeByName(name)!;
  const rand = seededRandom(seed);
  const bytes = new Uint8Array((values / type.blockSize) * type.blockBytes);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
  for (let at = 0; at < bytes.length; at += type.blockBytes) {
    if (name === 'IQ1_M') {
      // IQ1_M's f16 d is the top nibbles of its four u16 scales (bytes 48–55), lowest first: 0x10?? too.
      const nibbles = [Math.floor(rand() * 16), Math.floor(rand() * 16), Math.floor(rand() * 4), 1];
      nibbles.forEach((n, i) => (bytes[at + 49 + 2 * i] = (bytes[at + 49 + 2 * i] & 0x0f) | (n << 4)));
      continue;
    }
    bytes[at] = Math.floor(rand() * 256);
    bytes[at + 1] = 0x10 | Math.floor(rand() * 4); // d ≈ 5e-4
  }
  return bytes;
}

function decoded(name: string, bytes: Uint8Array): Float32Array {
  const type = ggmlTypeByName(name)!;
  const out = new Float32Array((bytes.length / type.blockBytes) * type.blockSize);
  blockDecoder(type)!.decode(bytes, out);
  return out;
}

describe('an IQ-quantized GGUF base', () => {
  const q = iqBlocks('IQ2_XXS', 256 * 64, 1);
  const up = iqBlocks('IQ4_XS', 256 * 32, 2);
  const k = iqBlocks('IQ2_XXS', 256 * 128, 3);
  const norm = tensorData('F32', new Float64Array(256).fill(1));
  const base = {
    'iq.gguf': buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: 19 }]],
      tensors: [
        { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [256], data: norm },
        { name: 'blk.0.attn_q.weight', type: 'IQ2_XXS', ne: [256, 64], data: q },
        { name: 'blk.0.attn_k.weight', type: 'IQ2_XXS', ne: [256, 128], data: k },
        { name: 'blk.0.ffn_up.weight', type: 'IQ4_XS', ne: [256, 32], data: up },
      ],
    }),
  };
  const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: 256, out: 64, aType: 'F32', bType: 'F32' }], 4);

  async function run(outDtype?: string, backend = cpu) {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      expect(prepared.plan.problems).toEqual([]);
      const output = createBlobOutputTarget();
      const warnings: string[] = [];
      await mergeModel({ prepared, output, backend, outDtype, onWarning: (w) => warnings.push(w) });
      return { out: readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer())), warnings, planWarnings: prepared.plan.warnings };
    } finally {
      await prepared.close();
    }
  }

  it.each(['cpu', 'webgpu'] as const)('writes the merged IQ2_XXS tensor as F16 of its exact values plus the update (float64 truth), as export-lora does; the rest byte-copied (%s)', async (kind) => {
    const backend = kind === 'cpu' ? cpu : await createNodeBackend('webgpu');
    const { out, planWarnings } = await run(undefined, backend).finally(() => kind === 'webgpu' && backend.dispose());
    const byName = (name: string) => out.tensors.find((t) => t.name === name)!;
    expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['F32', 'F16', 'IQ2_XXS', 'IQ4_XS']);
    expect(Buffer.from(byName('blk.0.attn_k.weight').data).equals(Buffer.from(k))).toBe(true);
    expect(Buffer.from(byName('blk.0.ffn_up.weight').data).equals(Buffer.from(up))).toBe(true);
    const f = lora.factors.get('blk.0.attn_q.weight')!;
    const w = decoded('IQ2_XXS', q);
    const merged = tensorValues('F16', byName('blk.0.attn_q.weight').data);
    let moved = 0;
    for (let o = 0; o < 64; o++) {
      for (let c = 0; c < 256; c++) {
        let s = 0;
        for (let r = 0; r < 4; r++) s += f.b[o * 4 + r] * f.a[r * 256 + c];
        const truth = w[o * 256 + c] + s;
        // One f16 rounding of the f32 result: half an f16 step (2⁻¹¹ relative, 2⁻²⁵ at subnormals), plus f32 slack.
        expect(Math.abs(merged[o * 256 + c] - truth)).toBeLessThanOrEqual(Math.abs(truth) * 2 ** -11 + 2 ** -25 + 1e-7);
        if (Math.abs(merged[o * 256 + c] - w[o * 256 + c]) > 1e-4) moved++;
      }
    }
    expect(moved).toBeGreaterThan(64 * 256 * 0.9);
    expect(planWarnings.join('\n')).toContain("base: the merged tensors (1 IQ2_XXS: blk.0.attn_q.weight) are written as F16, as llama.cpp's export-lora writes a merged tensor, unless an importance matrix is given (--imatrix): llama-quantize writes IQ2_XXS only with one, and with one loramerge quantizes it to IQ2_XXS as llama-quantize --imatrix does");
    // IQ2_XXS still holds the most weights: the file keeps its type (LLAMA_FTYPE_MOSTLY_IQ2_XXS).
    expect(out.metadata.get('general.file_type')!.value).toBe(19);
  });

  it('with --dtype q4_k writes the merged and the untouched matrices as Q4_K of their exact values; the norm stays F32', async () => {
    const { out: inF32 } = await run('f32');
    const { out, warnings } = await run('q4_k');
    const byName = (file: typeof out, name: string) => file.tensors.find((t) => t.name === name)!;
    expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['F32', 'Q4_K', 'Q4_K', 'Q4_K']);
    expect(Buffer.from(byName(out, 'blk.0.attn_norm.weight').data).equals(Buffer.from(norm))).toBe(true);
    // The merged tensor: W decoded exactly, plus the update (within f32 accumulation of float64 truth).
    const f = lora.factors.get('blk.0.attn_q.weight')!;
    const w = decoded('IQ2_XXS', q);
    const merged = tensorValues('F32', byName(inF32, 'blk.0.attn_q.weight').data);
    for (let o = 0; o < 64; o += 7) {
      for (let c = 0; c < 256; c += 5) {
        let s = 0;
        for (let k = 0; k < 4; k++) s += f.b[o * 4 + k] * f.a[k * 256 + c];
        expect(Math.abs(merged[o * 256 + c] - (w[o * 256 + c] + s))).toBeLessThan(1e-6);
      }
    }
    expect(Buffer.from(byName(out, 'blk.0.attn_q.weight').data).equals(Buffer.from(tensorData('Q4_K', merged)))).toBe(true);
    expect(Buffer.from(byName(out, 'blk.0.ffn_up.weight').data).equals(Buffer.from(tensorData('Q4_K', decoded('IQ4_XS', up))))).toBe(true);
    expect(warnings.join('\n')).toMatch(/tensors already quantized \(2 IQ2_XXS, 1 IQ4_XS\) are quantized again to Q4_K/);
    // Q4_K holds the most weights now: LLAMA_FTYPE_MOSTLY_Q4_K_M (15), as llama.cpp's loader guesses.
    expect(out.metadata.get('general.file_type')!.value).toBe(15);
  });

  // An importance matrix known to the plan (prepareMerge's importance, merge()'s, the CLI's
  // --imatrix read first): the warning says what the merge does with it, not "F16 unless".
  const weights = Float32Array.from({ length: 256 }, (_, i) => 0.5 + ((i * 37) % 11));
  const withQ: ImportanceMatrix = { file: 'llama.imatrix.gguf', entries: new Map([['blk.0.attn_q.weight', weights]]) };
  const withoutQ: ImportanceMatrix = { file: 'other.imatrix.gguf', entries: new Map([['blk.0.attn_k.weight', weights]]) };

  it('with an importance matrix given to the plan, the warning says the merged IQ2_XXS tensor is quantized with it, and it is', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }], { importance: withQ });
    try {
      expect(prepared.plan.problems).toEqual([]);
      const said = prepared.plan.warnings.filter((w) => w.includes('IQ2_XXS'));
      expect(said).toEqual(["base: the merged tensors (1 IQ2_XXS: blk.0.attn_q.weight) are re-quantized to IQ2_XXS with the importance matrix llama.imatrix.gguf, as llama-quantize --imatrix quantizes them; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)"]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: cpu, importance: withQ });
      const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
      const written = out.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
      expect(typeName(written.typeId)).toBe('IQ2_XXS');
      // The blocks ggml's weighted search gives the merged f32 values (the same merge written as F32).
      const { out: inF32 } = await run('f32');
      const x = tensorValues('F32', inF32.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!.data);
      const want = new Uint8Array(66 * 64);
      for (let r = 0; r < 64; r++) encodeIq2XxsRow(Float32Array.from(x.subarray(256 * r, 256 * (r + 1))), want.subarray(66 * r, 66 * (r + 1)), weights);
      expect(Buffer.from(written.data).equals(Buffer.from(want))).toBe(true);
    } finally {
      await prepared.close();
    }
  });

  it('merge() with importance returns that warning; an importance matrix without the tensor\'s entry draws no F16 warning, and the merge is refused naming it', async () => {
    const outcome = await merge({ base: memoryInputFileSet(base, 'base'), adapters: [memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora')], importance: withQ, backend: cpu });
    expect(outcome.plan.warnings.join('\n')).toContain('the merged tensors (1 IQ2_XXS: blk.0.attn_q.weight) are re-quantized to IQ2_XXS with the importance matrix llama.imatrix.gguf');
    expect(outcome.plan.warnings.join('\n')).not.toMatch(/written as F16|unless an importance matrix/);
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }], { importance: withoutQ });
    try {
      expect(prepared.plan.warnings.join('\n')).not.toMatch(/IQ2_XXS/);
      await expect(mergeModel({ prepared, output: createBlobOutputTarget(), backend: cpu, importance: withoutQ })).rejects.toThrow(/"blk\.0\.attn_q\.weight" is written as IQ2_XXS, which is quantized only with importance weights, and this importance matrix has no entry for it/);
    } finally {
      await prepared.close();
    }
    await expect(prepareMerge(memoryInputFileSet(base, 'base'), [], { importance: 'llama.imatrix' as unknown as ImportanceMatrix })).rejects.toThrow(/^prepareMerge options: importance must be what readImportanceMatrix returned, not the string "llama\.imatrix"$/);
  });

  it('with --dtype given (q4_k), the plan does not say F16', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }], { dtype: 'q4_k' });
    await prepared.close();
    expect(prepared.plan.warnings.join('\n')).not.toMatch(/written as F16|re-quantized/);
  });
});

/** ΔW = s·B·A of a llama.cpp LoRA's factors, in float64: (out, in) row-major. */
function updateOf(f: { a: Float64Array; b: Float64Array; rank: number }, out: number, cols: number, scale: number): Float64Array {
  const d = new Float64Array(out * cols);
  for (let o = 0; o < out; o++) for (let c = 0; c < cols; c++) {
    let s = 0;
    for (let r = 0; r < f.rank; r++) s += f.b[o * f.rank + r] * f.a[r * cols + c];
    d[o * cols + c] = scale * s;
  }
  return d;
}

describe.each(['IQ1_S', 'IQ1_M', 'IQ2_XS', 'IQ2_S'])('a merged %s tensor', (type) => {
  // An IQ1_S/IQ2_XS file's shape of layer, shrunk: the merged matrix and the untouched one beside it.
  const q = iqBlocks(type, 256 * 32, 11);
  const gate = iqBlocks(type, 256 * 48, 12);
  const files = {
    [`Llama-3-8B-${type}.gguf`]: buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }]],
      tensors: [
        { name: 'blk.0.attn_output.weight', type, ne: [256, 32], data: q },
        { name: 'blk.0.ffn_gate.weight', type, ne: [256, 48], data: gate },
      ],
    }),
  };
  const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_output.weight', rank: 2, in: 256, out: 32, aType: 'F32', bType: 'F16' }], 8, 5);

  it('is written as F16 of the decoded values plus the update (float64 truth), the untouched one byte-copied', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(files, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora'), weight: 0.5 }]);
    try {
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.warnings.join('\n')).toContain(`the merged tensors (1 ${type}: blk.0.attn_output.weight) are written as F16`);
      // IQ1 and IQ2 are written when an importance matrix is given, and the warning says so.
      expect(prepared.plan.warnings.join('\n')).toContain(`unless an importance matrix is given (--imatrix): llama-quantize writes ${type} only with one`);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: cpu });
      const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
      expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['F16', type]);
      expect(Buffer.from(out.tensors[1].data).equals(Buffer.from(gate))).toBe(true);
      // export-lora's scale: weight · α / r = 0.5 · 8 / 2.
      const d = updateOf(lora.factors.get('blk.0.attn_output.weight')!, 32, 256, 0.5 * 8 / 2);
      const w = decoded(type, q);
      const merged = tensorValues('F16', out.tensors[0].data);
      for (let i = 0; i < d.length; i++) {
        const truth = w[i] + d[i];
        expect(Math.abs(merged[i] - truth)).toBeLessThanOrEqual(Math.abs(truth) * 2 ** -11 + 2 ** -25 + 1e-7);
      }
    } finally {
      await prepared.close();
    }
  });
});

describe('an IQ2_XXS GGUF merged on the command line', () => {
  const q = iqBlocks('IQ2_XXS', 256 * 32, 21);
  const base = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: 19 }]],
    tensors: [{ name: 'blk.0.attn_v.weight', type: 'IQ2_XXS', ne: [256, 32], data: q }],
  });
  const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 2, in: 256, out: 32, aType: 'F32', bType: 'F32' }], 2, 9);

  it('writes the merged tensor as F16 with one warning line naming it, exit 0', async () => {
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': lora.bytes });
    const out = join(dir, 'merged.gguf');
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', out, '--backend', 'cpu']);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/warning: \S*base\.gguf: the merged tensors \(1 IQ2_XXS: blk\.0\.attn_v\.weight\) are written as F16, as llama\.cpp's export-lora writes a merged tensor/);
    const merged = readGguf(new Uint8Array(readFileSync(out)));
    expect(typeName(merged.tensors[0].typeId)).toBe('F16');
    const d = updateOf(lora.factors.get('blk.0.attn_v.weight')!, 32, 256, 1);
    const w = decoded('IQ2_XXS', q);
    const values = tensorValues('F16', merged.tensors[0].data);
    for (let i = 0; i < d.length; i++) expect(Math.abs(values[i] - (w[i] + d[i]))).toBeLessThanOrEqual(Math.abs(w[i] + d[i]) * 2 ** -11 + 2 ** -25 + 1e-7);
  });

  it('with --dtype q8_0 --dtype-merged-only writes it as Q8_0 of those values, no F16 warning', async () => {
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': lora.bytes });
    const out = join(dir, 'merged.gguf');
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', out, '--backend', 'cpu', '--dtype', 'q8_0', '--dtype-merged-only']);
    expect(result.code).toBe(0);
    expect(result.stderr).not.toMatch(/written as F16/);
    const merged = readGguf(new Uint8Array(readFileSync(out)));
    expect(typeName(merged.tensors[0].typeId)).toBe('Q8_0');
    expect(existsSync(out)).toBe(true);
  });
});
