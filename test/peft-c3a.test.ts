/**
 * PEFT C3A folders (peft_type C3A): `<module>.c3a_kernel` (out/b, in/b, b). PEFT merges
 * W' = W + C / in, C the block-circulant matrix its get_circulant_fast forms through FFTs. The truth
 * builds C block by block from the kernel (block (m, n) row j, column t: w_mn[(t − j) mod b]), and a
 * first test checks that rule against PEFT's own formula, fft(ifft(x) ⊙ fft(w)).real, evaluated with
 * plain float64 DFTs on every basis vector.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, expectPeftCliRefusal } from './helpers/peft-method-folder.js';
import { circulant } from './helpers/peft-delta-truth.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(73);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT writes to a C3A adapter_config.json. */
const config = (fields: object) => ({
  peft_type: 'C3A', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.18.0', revision: null,
  block_size: 4, target_modules: ['q_proj', 'v_proj'], bias: 'none', modules_to_save: null, layers_to_transform: null, layers_pattern: null,
  block_size_pattern: {}, init_weights: 'xavier_uniform', inference_mode: true, ...fields,
});

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** W + s·C / in. */
const truth = (w: Float64Array, kernel: Float64Array, m: number, n: number, b: number, s = 1) => {
  const c = circulant(kernel, m, n, b);
  return w.map((x, i) => x + s * c[i] / (n * b));
};

type Complex = [number, number];
/** Σ_t z_t·e^(sign·2πi·k·t/b) (÷ b for the inverse, as torch's ifft). */
const dft = (z: Complex[], sign: 1 | -1): Complex[] => z.map((_, k) => {
  let re = 0, im = 0;
  z.forEach(([a, bb], tt) => {
    const ang = sign * 2 * Math.PI * k * tt / z.length;
    re += a * Math.cos(ang) - bb * Math.sin(ang);
    im += a * Math.sin(ang) + bb * Math.cos(ang);
  });
  return sign === 1 ? [re / z.length, im / z.length] : [re, im];
});

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';

it("the circulant's index rule is PEFT's fft(ifft(x) ⊙ fft(w)).real, summed over input blocks", () => {
  const m = 2, n = 3, b = 5;
  const w = vals(m * n * b, 'F32');
  const c = circulant(w, m, n, b);
  for (let i = 0; i < n * b; i++) {
    // Input e_i, as get_circulant_fast feeds the identity's rows.
    for (let mi = 0; mi < m; mi++) {
      const acc: Complex[] = Array.from({ length: b }, () => [0, 0]);
      for (let ni = 0; ni < n; ni++) {
        const x = dft(Array.from({ length: b }, (_, tt): Complex => [ni * b + tt === i ? 1 : 0, 0]), 1);
        const fw = dft(Array.from({ length: b }, (_, tt): Complex => [w[(mi * n + ni) * b + tt], 0]), -1);
        x.forEach(([a, bb], k) => {
          acc[k][0] += a * fw[k][0] - bb * fw[k][1];
          acc[k][1] += a * fw[k][1] + bb * fw[k][0];
        });
      }
      dft(acc, -1).forEach(([re], j) => expect(re).toBeCloseTo(c[(mi * b + j) * n * b + i], 12));
    }
  }
});

describe.each(['cpu', 'webgpu'])('C3A (PEFT), %s', (name) => {
  it('blocks of 4 on two projections (f32 kernel on a bf16 base, bf16 kernel with its own block size 3 from block_size_pattern)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 12, inF = 24;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16');
    const kq = vals(3 * 6 * 4, 'F32'), kv = vals(4 * 8 * 3, 'BF16');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv)],
      config({ block_size_pattern: { v_proj: 3 } }), [
        t(`base_model.model.${q}.c3a_kernel`, 'F32', [3, 6, 4], kq), t(`base_model.model.${v}.c3a_kernel`, 'BF16', [4, 8, 3], kv),
      ]);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(wq, kq, 3, 6, 4), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, truth(wv, kv, 4, 8, 3), 'BF16', v);
  });

  it('one block of 35 (block_size = in = out), f16 kernel on an f32 base, user weight 0.5', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const b = 35;
    const w = vals(b * b, 'F32'), k = vals(b, 'F16');
    const tensors = await run(backend, [t(`${q}.weight`, 'F32', [b, b], w)], config({ block_size: b }), [t(`base_model.model.${q}.c3a_kernel`, 'F16', [1, 1, b], k)], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, k, 1, 1, b, 0.5), 'F32', q);
  });

  it('a rectangular layer of blocks of 1 (a plain scaled diff), f16 base', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 5, inF = 9;
    const w = vals(out * inF, 'F16'), k = vals(out * inF, 'F32', 4);
    const tensors = await run(backend, [t(`${v}.weight`, 'F16', [out, inF], w)], config({ block_size: 1 }), [t(`base_model.model.${v}.c3a_kernel`, 'F32', [out, inF, 1], k)]);
    expectMerged(tensors.get(`${v}.weight`)!.values, truth(w, k, out, inF, 1), 'F16', v);
  });
});

describe('C3A refusals through the CLI: one line, nothing written', () => {
  const refuse = expectPeftCliRefusal;
  const w = (key: string, shape: number[]) => t(`${key}.weight`, 'F32', shape, vals(shape[0] * shape[1], 'F32'));
  const kernel = (key: string, shape: number[]) => t(`base_model.model.${key}.c3a_kernel`, 'F32', shape, vals(shape.reduce((a, b) => a * b, 1), 'F32'));

  it('a kernel whose block size is not the config\'s, a kernel of two dims, a layer it does not fit', async () => {
    await refuse([w(q, [8, 8])], config({ block_size: 4 }), [kernel(q, [4, 4, 2])], /q_proj": c3a_kernel \(4, 4, 2\) is not \(outputs \/ b, inputs \/ b, b\) for the config's block size b = 4/);
    await refuse([w(q, [8, 8])], config({ block_size: 4 }), [kernel(q, [2, 8])], /q_proj": c3a_kernel \(2, 8\) is not \(outputs \/ b, inputs \/ b, b\)/);
    await refuse([w(q, [8, 12])], config({ block_size: 4 }), [kernel(q, [2, 2, 4])], /q_proj.*\(8, 8\)/);
  });

  it('resize: a block-circulant update is no low-rank product', async () => {
    await refuse([w(q, [8, 8])], config({ block_size: 4 }), [kernel(q, [2, 2, 4])], /q_proj" is C3A \(PEFT\), whose update is not a low-rank product; resize cannot express it/, 'resize');
  });
});
