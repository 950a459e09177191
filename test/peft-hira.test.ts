/**
 * PEFT HiRA folders (peft_type HIRA): `<module>.hira_A` (r, in) and `<module>.hira_B` (out, r), a
 * conv's (r, in, kh, kw) and (out, r, 1, 1), an embedding's hira_embedding_A (r, vocab) and
 * hira_embedding_B (dim, r). PEFT merges W' = W + W ⊙ (B·A), with no scaling. The
 * truth forms B·A and the Hadamard product in float64, element by element.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, expectPeftCliRefusal } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(67);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT writes to a HiRA adapter_config.json. */
const config = (fields: object) => ({
  peft_type: 'HIRA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.18.0', revision: null,
  r: 3, hira_dropout: 0, fan_in_fan_out: false, init_weights: true, target_modules: ['q_proj', 'v_proj'], exclude_modules: null,
  layers_to_transform: null, layers_pattern: null, rank_pattern: {}, bias: 'none', modules_to_save: null, inference_mode: true, ...fields,
});

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** W[o, i] + s·W[o, i]·Σ_k B[o, k]·A[k, i]. */
function truth(w: Float64Array, a: Float64Array, b: Float64Array, out: number, inF: number, r: number, s = 1): Float64Array {
  const res = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inF; i++) {
      let m = 0;
      for (let k = 0; k < r; k++) m += b[o * r + k] * a[k * inF + i];
      res[o * inF + i] = w[o * inF + i] + s * w[o * inF + i] * m;
    }
  }
  return res;
}

/** X (rows × cols) transposed. */
const transposed = (x: Float64Array, rows: number, cols: number) => Float64Array.from({ length: rows * cols }, (_, k) => x[(k % rows) * cols + Math.floor(k / rows)]);

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';

describe.each(['cpu', 'webgpu'])('HiRA (PEFT), %s', (name) => {
  it('W + W ⊙ B·A on two projections (r = 3 with f32 factors on a bf16 base, r = 1 with f16 factors)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 10, inF = 7;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16');
    const aq = vals(3 * inF, 'F32'), bq = vals(out * 3, 'F32'), av = vals(inF, 'F16'), bv = vals(out, 'F16');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv)],
      config({ rank_pattern: { v_proj: 1 } }), [
        t(`base_model.model.${q}.hira_A`, 'F32', [3, inF], aq), t(`base_model.model.${q}.hira_B`, 'F32', [out, 3], bq),
        t(`base_model.model.${v}.hira_A`, 'F16', [1, inF], av), t(`base_model.model.${v}.hira_B`, 'F16', [out, 1], bv),
      ]);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(wq, aq, bq, out, inF, 3), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, truth(wv, av, bv, out, inF, 1), 'BF16', v);
  });

  it('r = 16 with bf16 factors on an f32 base (33 × 20), and a user weight of 0.5 scaling the added part', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 33, inF = 20, r = 16;
    const w = vals(out * inF, 'F32'), a = vals(r * inF, 'BF16'), b = vals(out * r, 'BF16');
    const tensors = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], config({ r }),
      [t(`base_model.model.${q}.hira_A`, 'BF16', [r, inF], a), t(`base_model.model.${q}.hira_B`, 'BF16', [out, r], b)], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, a, b, out, inF, r, 0.5), 'F32', q);
  });

  it('a 3×3 conv: B·A at every kernel position, over in·kh·kw', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const conv = 'unet.down_blocks.0.resnets.0.conv1', out = 6, cin = 3, n = cin * 9, r = 2;
    const w = vals(out * n, 'F16'), a = vals(r * n, 'F32'), b = vals(out * r, 'F32');
    const tensors = await run(backend, [t(`${conv}.weight`, 'F16', [out, cin, 3, 3], w)], config({ r, target_modules: ['conv1'], task_type: null }),
      [t(`base_model.model.${conv}.hira_A`, 'F32', [r, cin, 3, 3], a), t(`base_model.model.${conv}.hira_B`, 'F32', [out, r, 1, 1], b)]);
    expectMerged(tensors.get(`${conv}.weight`)!.values, truth(w, a, b, out, n, r), 'F16', conv);
  });
});

describe.each(['cpu', 'webgpu'])('HiRA (PEFT) on weights stored (in, out), %s', (name) => {
  it('an embedding: hira_embedding_B·hira_embedding_A is (dim, vocab), the stored (vocab, dim) weight transposed', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const e = 'model.embed_tokens', vocab = 11, dim = 6, r = 2;
    const w = vals(vocab * dim, 'BF16'), a = vals(r * vocab, 'F32'), b = vals(dim * r, 'F32');
    const tensors = await run(backend, [t(`${e}.weight`, 'BF16', [vocab, dim], w)], config({ r, target_modules: ['embed_tokens'] }),
      [t(`base_model.model.${e}.hira_embedding_A`, 'F32', [r, vocab], a), t(`base_model.model.${e}.hira_embedding_B`, 'F32', [dim, r], b)]);
    expectMerged(tensors.get(`${e}.weight`)!.values, transposed(truth(transposed(w, vocab, dim), a, b, dim, vocab, r), dim, vocab), 'BF16', e);
  });

  it('a GPT-2 Conv1D under fan_in_fan_out: hira_A (r, in), hira_B (out, r) on a weight stored (in, out)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const c = 'transformer.h.0.attn.c_attn', inF = 5, out = 9, r = 3;
    const w = vals(inF * out, 'F16'), a = vals(r * inF, 'F16'), b = vals(out * r, 'F16');
    const tensors = await run(backend, [t(`${c}.weight`, 'F16', [inF, out], w)], config({ r, fan_in_fan_out: true, target_modules: ['c_attn'] }),
      [t(`base_model.model.${c}.hira_A`, 'F16', [r, inF], a), t(`base_model.model.${c}.hira_B`, 'F16', [out, r], b)]);
    expectMerged(tensors.get(`${c}.weight`)!.values, transposed(truth(transposed(w, inF, out), a, b, out, inF, r), out, inF), 'F16', c);
  });
});

describe('HiRA refusals through the CLI: one line, nothing written', () => {
  const refuse = expectPeftCliRefusal;
  const w = (key: string, shape: number[]) => t(`${key}.weight`, 'F32', shape, vals(shape[0] * shape[1], 'F32'));
  const factors = (key: string, r: number, out: number, inF: number) => [
    t(`base_model.model.${key}.hira_A`, 'F32', [r, inF], vals(r * inF, 'F32')), t(`base_model.model.${key}.hira_B`, 'F32', [out, r], vals(out * r, 'F32')),
  ];

  it('factors whose rank disagrees with r, a hira_A without its hira_B, bad shapes, a layer\'s factors mixed with an embedding\'s', async () => {
    await refuse([w(q, [4, 5])], config({ r: 3 }), factors(q, 2, 4, 5), /q_proj": hira_A \(2, 5\) has rank 2 but the config's r is 3/);
    await refuse([w(q, [4, 5])], config({ r: 2 }), factors(q, 2, 4, 5).slice(0, 1), /q_proj" has hira_A without hira_B/);
    await refuse([w(q, [4, 5])], config({ r: 2 }), [...factors(q, 2, 4, 5).slice(0, 1), t(`base_model.model.${q}.hira_B`, 'F32', [4, 3], vals(12, 'F32'))],
      /hira_A \(2, 5\) and hira_B \(4, 3\) are not \(r, inputs\) and \(outputs, r\)/);
    await refuse([w(q, [6, 5])], config({ r: 2 }), factors(q, 2, 4, 5), /q_proj.*\(4, 5\)/);
    const e = 'model.embed_tokens';
    await refuse([w(e, [8, 4])], config({ r: 2, target_modules: ['embed_tokens'] }),
      [...factors(e, 2, 4, 8), t(`base_model.model.${e}.hira_embedding_A`, 'F32', [2, 8], vals(16, 'F32')), t(`base_model.model.${e}.hira_embedding_B`, 'F32', [4, 2], vals(8, 'F32'))],
      /embed_tokens": mixes a layer's hira_A\/hira_B with an embedding's hira_embedding_A\/hira_embedding_B/);
    await refuse([w(e, [8, 4])], config({ r: 2, target_modules: ['embed_tokens'] }),
      [t(`base_model.model.${e}.hira_embedding_A`, 'F32', [2, 8], vals(16, 'F32')), t(`base_model.model.${e}.hira_embedding_B`, 'F32', [4, 3], vals(12, 'F32'))],
      /hira_embedding_A \(2, 8\) and hira_embedding_B \(4, 3\) are not \(r, vocabulary\) and \(embedding dim, r\)/);
  });

  it('resize: a map of W is no low-rank product', async () => {
    await refuse([w(q, [4, 5])], config({ r: 2 }), factors(q, 2, 4, 5), /q_proj" is HiRA \(PEFT\), whose update is not a low-rank product; resize cannot express it/, 'resize');
  });
});
