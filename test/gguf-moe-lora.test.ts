/**
 * llama.cpp LoRA adapters for mixture-of-experts models (convert_lora_to_gguf on per-expert PEFT
 * modules): 3-D factors lora_a ne = [in, r, experts], lora_b ne = [r, out, experts] on a base's
 * stacked expert tensors ne = [in, out, experts], as llama.cpp's ggml_mul_mat_id applies them:
 * expert e gets s·B_e·A_e. Checked end to end against float64 truth written here, for an F16 and a
 * Q4_K base and F16, F32 and Q8_0 factors; and the refusals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { seededRandom } from './helpers/fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorData, tensorValues, type MetaValue } from './helpers/gguf-builder.js';
import { ggufMoeLoraAdapter, type GgufExpertFactors } from './helpers/gguf-models.js';

const EXPERTS = 4;
const HIDDEN = 256;
const FFN = 256;

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu?.dispose());

function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

const meta = (arch: string, extra: [string, MetaValue][] = []): [string, MetaValue][] => [
  ['general.architecture', { type: 'string', value: arch }], ...extra,
];

/** A Mixtral-like block: router, norms and the three stacked expert tensors of type `type`. */
function moeBase(type: string, expertCount = EXPERTS, gateOnly = false) {
  const g = gaussian(5);
  const specs: { name: string; ne: number[]; type: string }[] = [
    { name: 'blk.0.ffn_norm.weight', ne: [HIDDEN], type: 'F32' },
    { name: 'blk.0.ffn_gate_inp.weight', ne: [HIDDEN, expertCount], type: 'F32' },
    { name: 'blk.0.ffn_gate_exps.weight', ne: [HIDDEN, FFN, expertCount], type },
    { name: 'blk.0.ffn_down_exps.weight', ne: [FFN, HIDDEN, expertCount], type: gateOnly ? 'F16' : type },
    { name: 'blk.0.ffn_up_exps.weight', ne: [HIDDEN, FFN, expertCount], type: gateOnly ? 'F16' : type },
  ];
  const { tensors, values } = randomTensors(specs, g);
  const metadata = meta('llama', [
    ['llama.expert_count', { type: 'u32', value: expertCount }], ['llama.expert_used_count', { type: 'u32', value: 2 }],
    ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: type === 'F16' ? 1 : 15 }],
  ]);
  return { files: { 'tiny-moe.gguf': buildGguf({ metadata, tensors }) }, values, specs };
}

/** A MoE LoRA as convert_lora_to_gguf writes it (gguf-models.ts), for this file's experts. */
const moeLora = (targets: Parameters<typeof ggufMoeLoraAdapter>[0], alpha: number, experts = EXPERTS) => ggufMoeLoraAdapter(targets, alpha, experts);

/** Expert e's rows of W (experts·out, in) plus scale·B_e·A_e, in float64. */
function truth(w: Float64Array, f: GgufExpertFactors, scale: number): Float64Array {
  const out = w.slice();
  for (let e = 0; e < f.a.length; e++) {
    for (let o = 0; o < f.out; o++) {
      for (let c = 0; c < f.in; c++) {
        let sum = 0;
        for (let k = 0; k < f.rank; k++) sum += f.b[e][o * f.rank + k] * f.a[e][k * f.in + c];
        out[(e * f.out + o) * f.in + c] += scale * sum;
      }
    }
  }
  return out;
}

async function merge(base: Record<string, Uint8Array>, lora: Uint8Array, weight: number, outDtype?: string) {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'moe-lora.gguf': lora }, 'lora'), weight }]);
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: cpu, outDtype, slabBytes: 64 * 1024 });
    return { out: readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer())), plan: prepared.plan };
  } finally {
    await prepared.close();
  }
}

const TARGETS = [
  { tensor: 'blk.0.ffn_gate_exps.weight', in: HIDDEN, out: FFN, rank: 4, aType: 'F16', bType: 'F16' },
  { tensor: 'blk.0.ffn_down_exps.weight', in: FFN, out: HIDDEN, rank: 32, aType: 'Q8_0', bType: 'Q8_0' },
  { tensor: 'blk.0.ffn_up_exps.weight', in: HIDDEN, out: FFN, rank: 1, aType: 'F32', bType: 'F16' },
];

describe('GGUF LoRA with per-expert factors', () => {
  it('adds each expert\'s update to that expert\'s slice of an F16 base (f32 output: within f32 accumulation of float64 truth)', async () => {
    const base = moeBase('F16');
    const lora = moeLora(TARGETS, 16);
    const weight = 0.8;
    const { out, plan } = await merge(base.files, lora.bytes, weight, 'f32');
    // One update per stacked tensor, one term per expert, each on its own rows.
    expect(plan.updates.map((u) => [u.baseKey, u.terms.length])).toEqual(TARGETS.map((t) => [t.tensor, EXPERTS]));
    for (const t of TARGETS) {
      const f = lora.factors.get(t.tensor)!;
      const want = truth(base.values.get(t.tensor)!, f, weight * 16 / t.rank);
      const got = tensorValues('F32', out.tensors.find((x) => x.name === t.tensor)!.data);
      expect(got.length).toBe(EXPERTS * t.out * t.in);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (Math.abs(want[i]) + 1e-3));
      expect(worst, t.tensor).toBeLessThan(1e-5);
      // Untouched experts would equal the base: every expert here moved.
      for (let e = 0; e < EXPERTS; e++) {
        const at = e * t.out * t.in;
        expect(got[at + 7]).not.toBe(base.values.get(t.tensor)![at + 7]);
      }
    }
    // The stacked tensors keep their three dimensions; the router and the norm are byte-copied.
    expect(out.tensors.find((x) => x.name === 'blk.0.ffn_down_exps.weight')!.ne).toEqual([FFN, HIDDEN, EXPERTS]);
  });

  it('requantizes a Q4_K base\'s stacked experts to Q4_K (α = 0: the weight alone)', async () => {
    const base = moeBase('Q4_K', EXPERTS, true);
    const lora = moeLora(TARGETS.slice(0, 1), 0);
    const { out } = await merge(base.files, lora.bytes, 1);
    const { out: f32 } = await merge(base.files, lora.bytes, 1, 'f32');
    const t = out.tensors.find((x) => x.name === 'blk.0.ffn_gate_exps.weight')!;
    expect(t.typeId).toBe(12);
    const merged = tensorValues('F32', f32.tensors.find((x) => x.name === 'blk.0.ffn_gate_exps.weight')!.data);
    const want = truth(base.values.get('blk.0.ffn_gate_exps.weight')!, lora.factors.get('blk.0.ffn_gate_exps.weight')!, 1);
    for (let i = 0; i < want.length; i += 97) expect(Math.abs(merged[i] - want[i])).toBeLessThan(1e-6);
    // Q4_K of the merged f32 values (the codec itself is held to the reference elsewhere), at
    // the start and the end of every expert's slice.
    for (let e = 0; e < EXPERTS; e++) {
      for (const b of [e * 256, e * 256 + 255]) {
        expect([...t.data.subarray(b * 144, (b + 1) * 144)]).toEqual([...tensorData('Q4_K', merged.subarray(b * 256, (b + 1) * 256))]);
      }
    }
  });

  it('refuses factors whose experts do not match the base\'s, and 3-D factors paired with 2-D ones', async () => {
    const base = moeBase('F16');
    const lora = moeLora(TARGETS.slice(0, 1), 16, 2);
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet({ 'l.gguf': lora.bytes }, 'two-experts') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    expect(messages.join('\n')).toMatch(/two-experts: blk\.0\.ffn_gate_exps\.weight has lora factors for 2 experts, but the base holds 4 \(llama\.expert_count\)/);
    // Each expert's factors say why they have no place, not that the tensor is missing.
    expect(messages.filter((m) => /no matching tensor/.test(m))).toEqual([]);
    expect(messages).toContain('two-experts: module "blk.0.ffn_gate_exps.weight[1]": expert 1 of the adapter\'s 2, but blk.0.ffn_gate_exps.weight holds 4 experts (llama.expert_count); llama.cpp pairs them expert by expert');

    const mixed = buildGguf({
      metadata: meta('llama', [['general.type', { type: 'string', value: 'adapter' }], ['adapter.type', { type: 'string', value: 'lora' }]]),
      tensors: [
        { name: 'blk.0.ffn_up_exps.weight.lora_a', type: 'F32', ne: [HIDDEN, 2, EXPERTS], data: new Uint8Array(HIDDEN * 2 * EXPERTS * 4) },
        { name: 'blk.0.ffn_up_exps.weight.lora_b', type: 'F32', ne: [2, FFN], data: new Uint8Array(2 * FFN * 4) },
      ],
    });
    await expect(prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet({ 'm.gguf': mixed }, 'mixed') }]))
      .rejects.toThrow(/module "blk\.0\.ffn_up_exps\.weight": lora_a ne \[256, 2, 4\] and lora_b ne \[2, 256\]/);
  });
});
