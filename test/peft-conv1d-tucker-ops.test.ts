/**
 * resize and combine on PEFT's LoHa and LoKr on an nn.Conv1d with use_effective_conv2d: ΔW is built
 * (out, in, k, 1) from Tucker cores (r, r, k, 1) and reshaped to the layer's (out, in, k), so the
 * LoRA written for that layer is PEFT's Conv1d pair, lora_A (r, in, k) and lora_B (out, r, 1), as
 * nn.Conv1d(in, r, k) and nn.Conv1d(r, out, 1) hold them. Truth: make_weight_cp's einsum
 * "i j k l, i p, j r -> p r k l" in float64, and the Eckart–Young optimum of that update.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { combineAdapters } from '../src/adapter-ops/combine.js';
import { resizeAdapter } from '../src/adapter-ops/resize.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import { openAdapter, type ParsedAdapter } from '../src/formats/adapter.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { peftFolder } from './helpers/hf-folder.js';
import { randomValues, roundForDType, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { tuckerConv1d } from './helpers/peft-delta-truth.js';
import { dense, frob2, minus, optimalError, type Dense, writtenUpdate } from './helpers/svd-reference.js';

const temp = tempDirs();
const opened: ParsedAdapter[] = [];
afterAll(async () => {
  await Promise.all(opened.map((a) => a.file.source.close()));
  temp.removeAll();
});

const backend = new CpuAlgebra();
const rand = seededRandom(4242);
const values = (n: number) => randomValues(n, rand, 0.4).map((x) => roundForDType(x, 'F32'));
const t = (name: string, shape: number[], data: Float64Array): FixtureTensor => ({ name, dtype: 'F32', shape, data });
const P = 'base_model.model.model.encoder.conv1';
const OUT = 8, IN = 6, K = 3, R = 2, ALPHA = 3;

/** PEFT's Tucker core of this test's rank and kernel: (p, q, K) row-major. */
const cp = (core: Float64Array, wa: Float64Array, wb: Float64Array, p: number, q: number) => tuckerConv1d(core, wa, wb, R, p, q, K);

async function open(config: object, tensors: FixtureTensor[]): Promise<ParsedAdapter> {
  const adapter = await openAdapter(await openNodeInputFileSet(temp.make(peftFolder(config, tensors))));
  opened.push(adapter);
  return adapter;
}

/** PEFT LoHa, Conv1d, Tucker: its α/r · ΔW as (out, in·k). */
async function loha(): Promise<{ adapter: ParsedAdapter; delta: Dense }> {
  const t1 = values(R * R * K), t2 = values(R * R * K), w1a = values(R * OUT), w1b = values(R * IN), w2a = values(R * OUT), w2b = values(R * IN);
  const adapter = await open({ peft_type: 'LOHA', r: R, alpha: ALPHA, target_modules: ['conv1'], use_effective_conv2d: true }, [
    t(`${P}.hada_t1`, [R, R, K, 1], t1), t(`${P}.hada_w1_a`, [R, OUT], w1a), t(`${P}.hada_w1_b`, [R, IN], w1b),
    t(`${P}.hada_t2`, [R, R, K, 1], t2), t(`${P}.hada_w2_a`, [R, OUT], w2a), t(`${P}.hada_w2_b`, [R, IN], w2b),
  ]);
  const s1 = cp(t1, w1a, w1b, OUT, IN), s2 = cp(t2, w2a, w2b, OUT, IN);
  return { adapter, delta: dense(OUT, IN * K, (i, j) => (ALPHA / R) * s1[i * IN * K + j] * s2[i * IN * K + j]) };
}

/** PEFT LoKr, Conv1d, Tucker: kron(W₁ (2, 2), cp(t2, w2_a, w2_b) (4, 3, k)), α/r · ΔW as (out, in·k). */
async function lokr(): Promise<{ adapter: ParsedAdapter; delta: Dense }> {
  const w1 = values(4), t2 = values(R * R * K), w2a = values(R * 4), w2b = values(R * 3);
  const adapter = await open({ peft_type: 'LOKR', r: R, alpha: ALPHA, target_modules: ['conv1'], use_effective_conv2d: true }, [
    t(`${P}.lokr_w1`, [2, 2], w1), t(`${P}.lokr_t2`, [R, R, K, 1], t2), t(`${P}.lokr_w2_a`, [R, 4], w2a), t(`${P}.lokr_w2_b`, [R, 3], w2b),
  ]);
  const w2 = cp(t2, w2a, w2b, 4, 3);
  const delta = dense(OUT, IN * K, () => 0);
  for (let i1 = 0; i1 < 2; i1++) for (let o2 = 0; o2 < 4; o2++) for (let c1 = 0; c1 < 2; c1++) for (let c2 = 0; c2 < 3; c2++) for (let k = 0; k < K; k++) {
    delta.data[(i1 * 4 + o2) * IN * K + (c1 * 3 + c2) * K + k] = (ALPHA / R) * w1[i1 * 2 + c1] * w2[(o2 * 3 + c2) * K + k];
  }
  return { adapter, delta };
}


describe('PEFT Conv1d Tucker LoHa / LoKr through resize and combine', () => {
  for (const [title, make] of [['LoHa', loha], ['LoKr', lokr]] as const) {
    it(`resize of a ${title}: Conv1d factors (r, in, k) and (out, r, 1), at the rank-2 optimum`, async () => {
      const { adapter, delta } = await make();
      const [m] = (await resizeAdapter(adapter, { kind: 'rank', rank: 2 }, 'peft', backend)).adapter.modules;
      expect(m.downShape).toEqual([2, IN, K]);
      expect(m.upShape).toEqual([OUT, 2, 1]);
      const err = Math.sqrt(frob2(minus(writtenUpdate(m), delta)));
      expect(Math.abs(err - optimalError(delta, 2))).toBeLessThan(1e-5 * Math.sqrt(frob2(delta)));
    });
  }

  it('combine cat of the LoHa and a PEFT LoRA of the same Conv1d: one Conv1d pair holding both updates', async () => {
    const { adapter: x, delta: dx } = await loha();
    const a = values(R * IN * K), b = values(OUT * R);
    const y = await open({ r: R, lora_alpha: 4, target_modules: ['conv1'] }, [t(`${P}.lora_A.weight`, [R, IN, K], a), t(`${P}.lora_B.weight`, [OUT, R, 1], b)]);
    const dy = dense(OUT, IN * K, (i, j) => { let s = 0; for (let q = 0; q < R; q++) s += b[i * R + q] * a[q * IN * K + j]; return (4 / R) * s; });
    const [m] = (await combineAdapters([{ adapter: x, weight: 0.5 }, { adapter: y, weight: 1 }], { method: 'cat', format: 'peft' }, backend)).adapter.modules;
    expect(m.downShape.slice(1)).toEqual([IN, K]);
    expect(m.upShape).toEqual([OUT, m.rank, 1]);
    const want = dense(OUT, IN * K, (i, j) => 0.5 * dx.data[i * IN * K + j] + dy.data[i * IN * K + j]);
    expect(Math.sqrt(frob2(minus(writtenUpdate(m), want)) / frob2(want))).toBeLessThan(1e-6);
  });
});
