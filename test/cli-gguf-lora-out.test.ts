/**
 * `combine` and `resize` writing a llama.cpp LoRA GGUF (`--out *.gguf`) from llama.cpp LoRAs: the
 * file holds what convert_lora_to_gguf.py writes and llama-adapter.cpp checks (general.type
 * adapter, adapter.type lora, an f32 adapter.lora.alpha, the input's general.architecture, pairs
 * `<tensor>.lora_a` ne [in, r] / `.lora_b` ne [r, out], token_embd's A as ne [r, vocab]); applied
 * by llama.cpp's rule (s = α/r with r = lora_b's ne[0], or 1 where α is 0) it is the weighted sum
 * of its inputs, and merged onto a GGUF base it gives what the inputs merged directly give, both
 * against float64 truth written here. Inputs it cannot write are refused in one line, nothing left.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, expectOneLine, listDir, runCli } from './helpers/cli.js';
import { canMount, runCliWithMounts } from './helpers/cli-faults.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName, type ReadGguf } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, ggufMoeLoraAdapter, LLAMA, peftLlamaAdapter, splitF16Llama, twoLlamaCppLoras } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const { hidden: h, vocab, ffn } = LLAMA;
type Factors = { a: Float64Array; b: Float64Array; rank: number };

const [lora1, lora2] = twoLlamaCppLoras();
// The same second LoRA written with --outtype f32.
const lora2f32 = ggufLoraAdapter([
  { tensor: 'blk.0.attn_q.weight', rank: 2, in: h, out: h, aType: 'F32', bType: 'F32' },
  { tensor: 'blk.0.ffn_down.weight', rank: 2, in: ffn, out: h, aType: 'F32', bType: 'F32' },
], 4, 42);

/** ΔW (out × in, row-major) = Σ coefficient·B·A in float64. */
function update(out: number, inF: number, terms: { f: Factors; c: number }[]): Float64Array {
  const d = new Float64Array(out * inF);
  for (const { f, c } of terms) {
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inF; i++) {
        let s = 0;
        for (let k = 0; k < f.rank; k++) s += f.b[o * f.rank + k] * f.a[k * inF + i];
        d[o * inF + i] += c * s;
      }
    }
  }
  return d;
}

/** The update llama.cpp applies for `tensor` from a written file: its own rule, from the bytes. */
function appliedUpdate(file: ReadGguf, tensor: string): { delta: Float64Array; out: number; in: number } {
  const a = file.tensors.find((t) => t.name === `${tensor}.lora_a`)!;
  const b = file.tensors.find((t) => t.name === `${tensor}.lora_b`)!;
  const alpha = file.metadata.get('adapter.lora.alpha')!.value as number;
  const rank = b.ne[0];
  const scale = alpha ? alpha / rank : 1;
  const av = tensorValues(typeName(a.typeId), a.data);
  const embd = tensor.endsWith('token_embd.weight');
  // A (r, in): stored as is (ne [in, r]), or for token_embd transposed (ne [r, vocab]).
  const inF = embd ? a.ne[1] : a.ne[0];
  const A = embd ? Float64Array.from({ length: rank * inF }, (_, x) => av[(x % inF) * rank + Math.floor(x / inF)]) : av;
  const out = b.ne[1];
  return { delta: update(out, inF, [{ f: { a: A, b: tensorValues(typeName(b.typeId), b.data), rank }, c: scale }]), out, in: inF };
}

function worstRelative(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / scale);
  return worst;
}

/** The truth of combining lora1 at 0.5 and lora2 at -2: s = α/r each, times the weight. */
const truths = new Map<string, { out: number; in: number; delta: Float64Array }>([
  ['blk.0.attn_q.weight', { out: h, in: h, delta: update(h, h, [{ f: lora1.factors.get('blk.0.attn_q.weight')!, c: 0.5 * 8 / 4 }, { f: lora2.factors.get('blk.0.attn_q.weight')!, c: -2 * 4 / 2 }]) }],
  ['token_embd.weight', { out: h, in: vocab, delta: update(h, vocab, [{ f: lora1.factors.get('token_embd.weight')!, c: 0.5 * 8 / 4 }]) }],
  ['blk.0.ffn_down.weight', { out: h, in: ffn, delta: update(h, ffn, [{ f: lora2.factors.get('blk.0.ffn_down.weight')!, c: -2 * 4 / 2 }]) }],
]);

/** Every tensor of the GGUF files in `dir`, by name, as float64. */
function mergedTensors(dir: string): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.gguf'))) {
    for (const t of readGguf(readFileSync(join(dir, name))).tensors) out.set(t.name, tensorValues(typeName(t.typeId), t.data));
  }
  return out;
}

describe('combine --out *.gguf of llama.cpp LoRAs', () => {
  it('writes a LoRA GGUF with llama.cpp\'s metadata and shapes whose update is the weighted sum of its inputs', async () => {
    const dir = temp.make({ 'a.gguf': lora1.bytes, 'b.gguf': lora2.bytes });
    const out = join(dir, 'combined.gguf');
    const run = await runCli(['combine', '--adapter', join(dir, 'a.gguf'), '--weight', '0.5', '--adapter', join(dir, 'b.gguf'), '--weight', '-2', '--method', 'cat', '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/wrote 3 LoRA modules to .*combined\.gguf \(llama\.cpp LoRA GGUF\)/);
    const file = readGguf(readFileSync(out));
    expect(file.version).toBe(3);
    const kv = (key: string) => file.metadata.get(key);
    expect(kv('general.type')).toEqual({ type: 8, value: 'adapter' });
    expect(kv('adapter.type')).toEqual({ type: 8, value: 'lora' });
    expect(kv('general.architecture')).toEqual({ type: 8, value: 'llama' });
    // gguf_get_val_f32 takes only an f32 (type 6). The ranks differ (6, 4, 2), so no one α gives
    // every pair its scale: each is in its B, and α 0 makes llama.cpp apply the pairs as they are.
    expect(kv('adapter.lora.alpha')).toEqual({ type: 6, value: 0 });
    // Every input factor is f16 (token_embd's A too, stored transposed), so f16 is written, as
    // convert_lora_to_gguf --outtype f16 writes every pair, token_embd's included.
    expect(kv('general.file_type')).toBeUndefined();
    expect(kv('general.quantization_version')).toEqual({ type: 4, value: 2 });
    expect(kv('loramerge.command')?.value).toBe('combine');
    expect(file.tensors.map((t) => [t.name, t.ne, typeName(t.typeId)])).toEqual([
      ['blk.0.attn_q.weight.lora_a', [h, 6], 'F16'], ['blk.0.attn_q.weight.lora_b', [6, h], 'F16'],
      ['token_embd.weight.lora_a', [4, vocab], 'F16'], ['token_embd.weight.lora_b', [4, h], 'F16'],
      ['blk.0.ffn_down.weight.lora_a', [ffn, 2], 'F16'], ['blk.0.ffn_down.weight.lora_b', [2, h], 'F16'],
    ]);
    for (const [tensor, truth] of truths) {
      const got = appliedUpdate(file, tensor);
      expect([got.out, got.in], tensor).toEqual([truth.out, truth.in]);
      // The weights' factors here (0.5·2, -2·2) are powers of two: the factors are exact.
      expect(worstRelative(got.delta, truth.delta), tensor).toBeLessThan(1e-6);
    }
  });

  it('merged onto a GGUF base gives what its inputs merged directly give, both as float64 truth', async () => {
    const base = splitF16Llama();
    const dir = temp.make({ ...base.files, 'a.gguf': lora1.bytes, 'b.gguf': lora2.bytes });
    const combined = join(dir, 'combined.gguf');
    const c = await runCli(['combine', '--adapter', join(dir, 'a.gguf'), '--weight', '0.5', '--adapter', join(dir, 'b.gguf'), '--weight', '-2', '--method', 'cat', '--out', combined, '--backend', 'cpu']);
    expect(c.code, c.stderr).toBe(0);
    const baseArg = join(dir, 'tiny-llama-F16-00001-of-00002.gguf');
    const viaFile = await runCli(['merge', '--base', baseArg, '--adapter', combined, '--out', join(dir, 'via-file'), '--dtype', 'f32', '--backend', 'cpu']);
    expect(viaFile.code, viaFile.stderr).toBe(0);
    const direct = await runCli(['merge', '--base', baseArg, '--adapter', join(dir, 'a.gguf'), '--weight', '0.5', '--adapter', join(dir, 'b.gguf'), '--weight', '-2', '--out', join(dir, 'direct'), '--dtype', 'f32', '--backend', 'cpu']);
    expect(direct.code, direct.stderr).toBe(0);
    const [got, want] = [mergedTensors(join(dir, 'via-file')), mergedTensors(join(dir, 'direct'))];
    for (const [tensor, truth] of truths) {
      const w = base.tensors.get(tensor)!.values;
      // token_embd is stored (vocab, dim): ΔW (dim × vocab) lands transposed.
      const embd = tensor === 'token_embd.weight';
      const expected = Float64Array.from(w, (v, x) => v + (embd ? truth.delta[(x % truth.out) * truth.in + Math.floor(x / truth.out)] : truth.delta[x]));
      expect(worstRelative(got.get(tensor)!, expected), `${tensor} via the written GGUF`).toBeLessThan(1e-6);
      expect(worstRelative(want.get(tensor)!, expected), `${tensor} merged directly`).toBeLessThan(1e-6);
    }
    // A tensor no adapter touches is the base's.
    expect(got.get('blk.0.attn_k.weight')).toEqual(base.tensors.get('blk.0.attn_k.weight')!.values);
  });
});

describe('resize --out *.gguf of a llama.cpp LoRA', () => {
  it('keeps the input\'s f32 factors and its scale in one α where every module has one rank', async () => {
    const dir = temp.make({ 'lora.gguf': lora2f32.bytes });
    const out = join(dir, 'resized.gguf');
    const run = await runCli(['resize', '--adapter', join(dir, 'lora.gguf'), '--rank', '2', '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const file = readGguf(readFileSync(out));
    // kohya's resize keeps α/r: α 4 at r 2 stays α 4 at r 2.
    expect(file.metadata.get('adapter.lora.alpha')).toEqual({ type: 6, value: 4 });
    expect(file.metadata.get('general.file_type')).toBeUndefined();
    expect(file.metadata.get('general.architecture')?.value).toBe('llama');
    expect(file.tensors.map((t) => [t.name, t.ne, typeName(t.typeId)])).toEqual([
      ['blk.0.attn_q.weight.lora_a', [h, 2], 'F32'], ['blk.0.attn_q.weight.lora_b', [2, h], 'F32'],
      ['blk.0.ffn_down.weight.lora_a', [ffn, 2], 'F32'], ['blk.0.ffn_down.weight.lora_b', [2, h], 'F32'],
    ]);
    for (const tensor of ['blk.0.attn_q.weight', 'blk.0.ffn_down.weight']) {
      const truth = update(h, tensor.includes('ffn_down') ? ffn : h, [{ f: lora2f32.factors.get(tensor)!, c: 4 / 2 }]);
      // At the module's own rank the SVD keeps the whole update (f32 rounding only).
      expect(worstRelative(appliedUpdate(file, tensor).delta, truth), tensor).toBeLessThan(1e-5);
    }
  });

  it('writes f16 factors of an f16 input, as convert_lora_to_gguf --outtype f16 does', async () => {
    const dir = temp.make({ 'lora.gguf': lora2.bytes });
    const out = join(dir, 'resized.gguf');
    const run = await runCli(['resize', '--adapter', join(dir, 'lora.gguf'), '--rank', '2', '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const file = readGguf(readFileSync(out));
    expect(file.metadata.get('general.file_type')).toBeUndefined();
    expect(file.tensors.map((t) => typeName(t.typeId))).toEqual(['F16', 'F16', 'F16', 'F16']);
    const truth = update(h, h, [{ f: lora2.factors.get('blk.0.attn_q.weight')!, c: 4 / 2 }]);
    expect(worstRelative(appliedUpdate(file, 'blk.0.attn_q.weight').delta, truth)).toBeLessThan(2e-3);
  });

  it('writes Q8_0 factors of a Q8_0 input, F16 where rows are not whole blocks, as convert_lora_to_gguf --outtype q8_0 does', async () => {
    // As --outtype q8_0 writes it: lora_a (rows of h) Q8_0, lora_b (rows of r = 2) F16, gguf-py's fallback.
    const q8 = ggufLoraAdapter([
      { tensor: 'blk.0.attn_q.weight', rank: 2, in: h, out: h, aType: 'Q8_0', bType: 'F16' },
      { tensor: 'blk.0.ffn_down.weight', rank: 2, in: ffn, out: h, aType: 'Q8_0', bType: 'F16' },
    ], 4, 44);
    const dir = temp.make({ 'lora.gguf': q8.bytes });
    const out = join(dir, 'resized.gguf');
    const run = await runCli(['resize', '--adapter', join(dir, 'lora.gguf'), '--rank', '2', '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const file = readGguf(readFileSync(out));
    expect(file.metadata.get('general.file_type')).toBeUndefined();
    expect(file.tensors.map((t) => [t.name, typeName(t.typeId)])).toEqual([
      ['blk.0.attn_q.weight.lora_a', 'Q8_0'], ['blk.0.attn_q.weight.lora_b', 'F16'],
      ['blk.0.ffn_down.weight.lora_a', 'Q8_0'], ['blk.0.ffn_down.weight.lora_b', 'F16'],
    ]);
    for (const tensor of ['blk.0.attn_q.weight', 'blk.0.ffn_down.weight']) {
      const truth = update(h, tensor.includes('ffn_down') ? ffn : h, [{ f: q8.factors.get(tensor)!, c: 4 / 2 }]);
      // Q8_0 keeps 8 bits a value (each block's scale from its largest): 1 % of the largest value.
      expect(worstRelative(appliedUpdate(file, tensor).delta, truth), tensor).toBeLessThan(1e-2);
    }
  });

  it('folds each module\'s scale into its B (α 0) where a dynamic rule gives the modules different ranks', async () => {
    // attn_q stored at r 4 whose B has two zero columns (an update of rank 2), token_embd at a
    // full r 4, α 8: --sv-ratio 1000 keeps 1 + #{σᵢ > σ₁/1000} (kohya's rule), rank 3 of the one
    // and 4 (its own rank, the cap) of the other, each whole.
    const rand = seededRandom(43);
    const g = () => rand() - 0.5;
    const qA = tensorData('F32', Float64Array.from({ length: 4 * h }, g));
    const qB = tensorData('F32', Float64Array.from({ length: h * 4 }, (_, x) => (x % 4 < 2 ? g() : 0)));
    const eA = tensorData('F32', Float64Array.from({ length: 4 * vocab }, g));
    const eB = tensorData('F32', Float64Array.from({ length: h * 4 }, g));
    const bytes = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['general.type', { type: 'string', value: 'adapter' }],
        ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 8 }]],
      tensors: [
        { name: 'blk.0.attn_q.weight.lora_a', type: 'F32', ne: [h, 4], data: qA }, { name: 'blk.0.attn_q.weight.lora_b', type: 'F32', ne: [4, h], data: qB },
        { name: 'token_embd.weight.lora_a', type: 'F32', ne: [4, vocab], data: eA }, { name: 'token_embd.weight.lora_b', type: 'F32', ne: [4, h], data: eB },
      ],
    });
    const dir = temp.make({ 'lora.gguf': bytes });
    const out = join(dir, 'resized.gguf');
    const run = await runCli(['resize', '--adapter', join(dir, 'lora.gguf'), '--sv-ratio', '1000', '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const file = readGguf(readFileSync(out));
    expect(file.tensors.map((t) => [t.name, t.ne])).toEqual([
      ['blk.0.attn_q.weight.lora_a', [h, 3]], ['blk.0.attn_q.weight.lora_b', [3, h]],
      ['token_embd.weight.lora_a', [4, vocab]], ['token_embd.weight.lora_b', [4, h]],
    ]);
    expect(file.metadata.get('adapter.lora.alpha')).toEqual({ type: 6, value: 0 });
    const ev = tensorValues('F32', eA);
    const truths: [string, number, Factors][] = [
      ['blk.0.attn_q.weight', h, { a: tensorValues('F32', qA), b: tensorValues('F32', qB), rank: 4 }],
      // token_embd's A is stored (vocab, r): A (r, vocab) is its transpose.
      ['token_embd.weight', vocab, { a: Float64Array.from({ length: 4 * vocab }, (_, x) => ev[(x % vocab) * 4 + Math.floor(x / vocab)]), b: tensorValues('F32', eB), rank: 4 }],
    ];
    for (const [tensor, inF, f] of truths) {
      expect(worstRelative(appliedUpdate(file, tensor).delta, update(h, inF, [{ f, c: 8 / 4 }])), tensor).toBeLessThan(1e-5);
    }
  });
});

describe('a .gguf --out that cannot be written', () => {
  const peft = peftLlamaAdapter();

  async function expectRefused(args: string[], dir: string, line: RegExp, code = 2): Promise<void> {
    const before = listDir(dir);
    const run = await runCli([...args, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(code);
    expect(errorLines(run.stderr)).toEqual([expect.stringMatching(line)]);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir)).toEqual(before);
  }

  it('refuses a PEFT adapter without --base, and beside a GGUF LoRA: its module names are not llama.cpp\'s', async () => {
    const dir = temp.make({ ...Object.fromEntries(Object.entries(peft.files).map(([k, v]) => [`peft/${k}`, v])), 'a.gguf': lora1.bytes });
    await expectRefused(['resize', '--adapter', join(dir, 'peft'), '--rank', '2', '--out', join(dir, 'small.gguf')], dir,
      /^error: .*peft: a peft adapter's module names are not llama\.cpp's tensor names, and renaming them needs the GGUF model it is for: give it as --base MODEL\.gguf$/);
    await expectRefused(['combine', '--adapter', join(dir, 'a.gguf'), '--adapter', join(dir, 'peft'), '--method', 'cat', '--out', join(dir, 'both.GGUF')], dir,
      /^error: .*peft: a peft adapter is not combined with llama\.cpp LoRAs; write it as one first \(combine --adapter .*peft --method cat --base MODEL\.gguf --out .*peft\.gguf\), then combine the GGUF LoRAs$/);
  });

  it('refuses extract to a .gguf, which reads safetensors models', async () => {
    const dir = temp.make({ 'a.gguf': lora1.bytes });
    await expectRefused(['extract', '--base', join(dir, 'base.safetensors'), '--tuned', join(dir, 'tuned.safetensors'), '--rank', '1', '--out', join(dir, 'small.gguf')], dir,
      /^error: --out .*small\.gguf: extract writes no GGUF \(it reads safetensors models, whose module names are not llama\.cpp's\); name --out a folder \(PEFT\) and convert it with llama\.cpp's convert_lora_to_gguf\.py$/);
  });

  it('refuses LoRAs of two architectures, which llama.cpp would not load onto one model', async () => {
    const qwen = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'qwen2' }], ['general.type', { type: 'string', value: 'adapter' }],
        ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 8 }]],
      tensors: [
        { name: 'blk.0.attn_q.weight.lora_a', type: 'F32', ne: [h, 4], data: tensorData('F32', new Float64Array(h * 4).fill(0.01)) },
        { name: 'blk.0.attn_q.weight.lora_b', type: 'F32', ne: [4, h], data: tensorData('F32', new Float64Array(h * 4).fill(0.01)) },
      ],
    });
    const dir = temp.make({ 'a.gguf': lora1.bytes, 'qwen.gguf': qwen });
    await expectRefused(['combine', '--adapter', join(dir, 'a.gguf'), '--adapter', join(dir, 'qwen.gguf'), '--method', 'cat', '--out', join(dir, 'c.gguf')], dir,
      /^error: the GGUF LoRAs are for different architectures \(llama, qwen2\); llama\.cpp loads a LoRA only onto a model of its own general\.architecture$/);
  });

  it('writes mixture-of-experts LoRAs (3-D factors) back as one 3-D pair per tensor: cat is the sum of the experts\' updates, resize to their rank the same update', async () => {
    const [inF, out, experts] = [64, 32, 4];
    const moe1 = ggufMoeLoraAdapter([{ tensor: 'blk.0.ffn_gate_exps.weight', in: inF, out, rank: 2, aType: 'F32', bType: 'F32' }], 4, experts, 11);
    const moe2 = ggufMoeLoraAdapter([{ tensor: 'blk.0.ffn_gate_exps.weight', in: inF, out, rank: 3, aType: 'F32', bType: 'F32' }], 6, experts, 12);
    const rand = seededRandom(13);
    const w = Float64Array.from({ length: experts * out * inF }, () => Math.fround(rand() - 0.5));
    const base = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.block_count', { type: 'u32', value: 1 }],
        ['llama.expert_count', { type: 'u32', value: experts }], ['llama.attention.head_count', { type: 'u32', value: 4 }]],
      tensors: [{ name: 'blk.0.ffn_gate_exps.weight', type: 'F32', ne: [inF, out, experts], data: tensorData('F32', w) }],
    });
    const dir = temp.make({ 'moe1.gguf': moe1.bytes, 'moe2.gguf': moe2.bytes, 'base.gguf': base });
    /** W's expert rows plus Σ s·B_e·A_e of the given LoRAs, in float64. */
    const truth = (loras: { f: ReturnType<typeof ggufMoeLoraAdapter>; s: number }[]) => {
      const t = w.slice();
      for (const { f, s: scale } of loras) {
        const { a, b, rank } = f.factors.get('blk.0.ffn_gate_exps.weight')!;
        for (let e = 0; e < experts; e++) {
          for (let o = 0; o < out; o++) {
            for (let i = 0; i < inF; i++) {
              let sum = 0;
              for (let k = 0; k < rank; k++) sum += b[e][o * rank + k] * a[e][k * inF + i];
              t[(e * out + o) * inF + i] += scale * sum;
            }
          }
        }
      }
      return t;
    };
    const merged = async (lora: string) => {
      const m = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, lora), '--out', join(dir, `merged-${lora}`), '--backend', 'cpu']);
      expect(m.code, m.stderr).toBe(0);
      const t = readGguf(readFileSync(join(dir, `merged-${lora}`))).tensors[0];
      return tensorValues(typeName(t.typeId), t.data);
    };
    const cat = await runCli(['combine', '--adapter', join(dir, 'moe1.gguf'), '--adapter', join(dir, 'moe2.gguf'), '--method', 'cat', '--out', join(dir, 'cat.gguf'), '--backend', 'cpu']);
    expect(cat.code, cat.stderr).toBe(0);
    const catFile = readGguf(readFileSync(join(dir, 'cat.gguf')));
    // Ranks 2 and 3 side by side in each expert, cat's scales in B: α' = r = 5, scale 1.
    expect(catFile.tensors.map((t) => [t.name, t.ne])).toEqual([
      ['blk.0.ffn_gate_exps.weight.lora_a', [inF, 5, experts]], ['blk.0.ffn_gate_exps.weight.lora_b', [5, out, experts]],
    ]);
    expect(catFile.metadata.get('adapter.lora.alpha')).toEqual({ type: 6, value: 5 });
    expect(worstRelative(await merged('cat.gguf'), truth([{ f: moe1, s: 2 }, { f: moe2, s: 2 }]))).toBeLessThan(1e-6);
    const resized = await runCli(['resize', '--adapter', join(dir, 'moe2.gguf'), '--rank', '3', '--out', join(dir, 'resized.gguf'), '--backend', 'cpu']);
    expect(resized.code, resized.stderr).toBe(0);
    const resizedFile = readGguf(readFileSync(join(dir, 'resized.gguf')));
    expect(resizedFile.tensors.map((t) => t.ne)).toEqual([[inF, 3, experts], [3, out, experts]]);
    expect(worstRelative(await merged('resized.gguf'), truth([{ f: moe2, s: 2 }]))).toBeLessThan(1e-5);
  });

  it('refuses a folder at --out, and replaces an existing file only once the output is whole', async () => {
    // A single-file --out is replaced atomically on success (as a kohya .safetensors is), and a
    // failed run leaves it as it was; a folder of that name is never replaced by a file.
    const dir = temp.make({ 'a.gguf': lora1.bytes, 'b.gguf': lora2.bytes, 'old.gguf': 'kept until a run succeeds', 'taken.gguf/x': 'a folder' });
    await expectRefused(['resize', '--adapter', join(dir, 'a.gguf'), '--rank', '4', '--out', join(dir, 'taken.gguf')], dir, /^error: .*taken\.gguf: exists and is not a file; choose another output path$/);
    // An adapter whose factor holds NaN is found while the output is being made: old.gguf stays.
    const nan = Float64Array.from({ length: h * 4 }, (_, x) => (x === 7 ? NaN : 0.01));
    writeFileSync(join(dir, 'nan.gguf'), buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['general.type', { type: 'string', value: 'adapter' }],
        ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: 8 }]],
      tensors: [
        { name: 'blk.0.attn_q.weight.lora_a', type: 'F32', ne: [h, 4], data: tensorData('F32', nan) },
        { name: 'blk.0.attn_q.weight.lora_b', type: 'F32', ne: [4, h], data: tensorData('F32', new Float64Array(h * 4).fill(0.01)) },
      ],
    }));
    const failed = await runCli(['combine', '--adapter', join(dir, 'a.gguf'), '--adapter', join(dir, 'nan.gguf'), '--method', 'svd', '--out', join(dir, 'old.gguf'), '--backend', 'cpu']);
    expect(errorLines(failed.stderr)).toEqual([expect.stringMatching(/nan\.gguf: tensor "blk\.0\.attn_q\.weight\.lora_a" holds 1 NaN or Inf value \(row 0\); the adapter file is broken$/)]);
    expect(failed.code, failed.stderr).not.toBe(0);
    expect(readFileSync(join(dir, 'old.gguf'), 'utf8')).toBe('kept until a run succeeds');
    const replaced = await runCli(['resize', '--adapter', join(dir, 'a.gguf'), '--rank', '4', '--out', join(dir, 'old.gguf'), '--backend', 'cpu']);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(readGguf(readFileSync(join(dir, 'old.gguf'))).metadata.get('general.type')?.value).toBe('adapter');
    expect(listDir(dir)).toEqual(['a.gguf', 'b.gguf', 'nan.gguf', 'old.gguf', 'taken.gguf']);
  });

  it.skipIf(!canMount)('disk full (an 8 KiB tmpfs): ENOSPC, nothing left at --out', async () => {
    const dir = temp.make({ 'a.gguf': lora1.bytes, 'b.gguf': lora2.bytes });
    const mnt = temp.make();
    const out = join(mnt, 'combined.gguf');
    writeFileSync(join(dir, 'unused'), '');
    const run = await runCliWithMounts(`mount -t tmpfs -o size=8k tmpfs '${mnt}'`,
      ['combine', '--adapter', join(dir, 'a.gguf'), '--adapter', join(dir, 'b.gguf'), '--method', 'cat', '--out', out, '--backend', 'cpu'], mnt);
    expect(run.code, run.stderr).toBe(3);
    expectOneLine(run.stderr, new RegExp(`${out}: no space left on the device while .*\\(ENOSPC\\)`));
    expect(run.listing).toEqual([]);
  });
});
