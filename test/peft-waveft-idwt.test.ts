/**
 * PEFT WaveFT with `use_idwt` true (PEFT's default): the coefficients go through PEFT's one-level
 * inverse 2-D wavelet transform (tuners/waveft: get_delta_weight pads, centres, splits into quadrants,
 * waverec2d, crops the centre (out, in)), ΔW = that·scaling.
 *
 * test/reference/peft-waveft-idwt.json was written by PEFT's own layer.py, waverec2d.py, wavelet.py
 * and constants.py on torch 1.13 (CPU), by the script beside it: each case's positions, ΔW from a
 * float64 spectrum (PEFT's code in float64) and, for the small ones, from a float32 one; every
 * family's filters as PEFT's Wavelet forms them; WAVELET_REDUCTIONS; and what PEFT does with the
 * families it cannot reconstruct. Merges are checked against W + s·(PEFT's float64 ΔW).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { peftWaveft, peftWaveletReduction } from '../src/formats/algorithms/peft-waveft.js';
import { spectrumPositions } from '../src/formats/algorithms/peft-fourierft.js';
import { PEFT_WAVELET_FAMILIES, peftWaveletFilters } from '../src/algorithms/math/wavelet-filters.js';
import type { AdapterModule } from '../src/formats/adapter.js';
import type { SafetensorsFile } from '../src/formats/safetensors-types.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, tempDirs } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { peftFolder } from './helpers/hf-folder.js';
import { runCli } from './helpers/cli.js';
import { expectPeftCliRefusal, fixtureTensor as t, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

interface WaveCase {
  name: string; wavelet_family: string; out: number; in: number; n_frequency: number; random_loc_seed: number; scaling: number;
  spectrum_dtype: 'F32' | 'BF16'; spectrum: number[]; rows: number[]; cols: number[]; delta: number[]; delta32?: number[];
}
const reference = JSON.parse(readFileSync(new URL('./reference/peft-waveft-idwt.json', import.meta.url), 'utf8')) as {
  producedBy: string;
  wavelet_reductions: Record<string, [number, number]>;
  filters: Record<string, { rec_lo: number[]; rec_hi: number[] }>;
  cases: WaveCase[];
  refused: { wavelet_family: string; out: number; in: number; delta_shape?: number[]; error?: string }[];
};
const wave = (name: string) => reference.cases.find((c) => c.name === name)!;

const backends = mergeBackends({ cpu: 'default' });
const vals = gridValues(seededRandom(131));
const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';

/** The fields PEFT 0.18 writes to a WaveFT adapter_config.json (use_idwt true, its default). */
const waveConfig = (fields: object) => ({
  peft_type: 'WAVEFT', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.18.0', revision: null,
  n_frequency: 2592, scaling: 25.0, wavelet_family: 'db1', use_idwt: true, random_loc_seed: 777, fan_in_fan_out: false, target_modules: ['q_proj', 'v_proj'],
  exclude_modules: null, bias: 'none', modules_to_save: null, layers_to_transform: null, layers_pattern: null, n_frequency_pattern: {},
  proportional_parameters: false, init_weights: true, inference_mode: true, ...fields,
});
const spectrumOf = (path: string, c: WaveCase) => t(`base_model.model.${path}.waveft_spectrum`, c.spectrum_dtype, [c.spectrum.length], Float64Array.from(c.spectrum));

/** The algorithm's ΔW/scaling for a case, read back in slabs of `slab` rows. */
async function algorithmDelta(c: WaveCase, slab: number): Promise<Float32Array> {
  const data = new Uint8Array(Float32Array.from(c.spectrum).buffer);
  const spectrum = { name: `base_model.model.${q}.waveft_spectrum`, dtype: 'F32', shape: [c.spectrum.length], start: 0, end: data.length, byteLength: data.length };
  const file = { source: { name: 'adapter_model.safetensors' }, read: async () => data } as unknown as SafetensorsFile;
  const module = {
    name: q, tensors: { spectrum },
    options: { r: c.n_frequency, random_loc_seed: c.random_loc_seed, use_idwt: true, wavelet_family_index: PEFT_WAVELET_FAMILIES.indexOf(c.wavelet_family) },
  } as unknown as AdapterModule;
  const [piece] = await peftWaveft.load(file, module, { out: c.out, in: c.in });
  const got = new Float32Array(c.out * c.in);
  for (let r = 0; r < c.out; r += slab) {
    const n = Math.min(slab, c.out - r);
    const part = await (piece as { rows(s: number, n: number): Promise<{ data: Uint8Array }> }).rows(r, n);
    got.set(new Float32Array(part.data.buffer, part.data.byteOffset, n * c.in), r * c.in);
  }
  return got;
}

describe("PEFT's wavelet tables and layout, as PEFT's code gave them", () => {
  it("every family wavelet.py has: rec_lo and rec_hi bit for bit as PEFT's Wavelet(name) forms them (coif4's and coif5's tables as PEFT has them)", () => {
    expect(PEFT_WAVELET_FAMILIES).toEqual(Object.keys(reference.filters));
    expect(PEFT_WAVELET_FAMILIES).toHaveLength(24);
    for (const [family, f] of Object.entries(reference.filters)) {
      const mine = peftWaveletFilters(family)!;
      expect(Array.from(mine.recLo), family).toEqual(f.rec_lo);
      expect(Array.from(mine.recHi), family).toEqual(f.rec_hi);
    }
    expect(peftWaveletFilters('haar')).toBeUndefined();
    expect(peftWaveletFilters('db11')).toBeUndefined();
  });

  it('WAVELET_REDUCTIONS: every name PEFT lists with its padding, and no other name', () => {
    expect(Object.keys(reference.wavelet_reductions)).toHaveLength(74);
    for (const [family, [rows, cols]] of Object.entries(reference.wavelet_reductions)) {
      expect(rows, family).toBe(cols);
      expect(peftWaveletReduction(family), family).toBe(rows);
    }
    for (const other of ['haar', 'db0', 'db39', 'db01', 'sym1', 'sym21', 'coif0', 'coif18', 'DB2', ' db1', 'bior1.3', 'db100']) expect(peftWaveletReduction(other), other).toBeUndefined();
  });

  it("the positions are PEFT's (update_layer's randperm), and PEFT's float64 ΔW is its float32 ΔW to float32's rounding", () => {
    for (const c of reference.cases) {
      const { rowOf, colOf } = spectrumPositions(c.name, c.n_frequency, c.out, c.in, c.random_loc_seed);
      expect(Array.from(rowOf), c.name).toEqual(c.rows);
      expect(Array.from(colOf), c.name).toEqual(c.cols);
      if (!c.delta32) continue;
      const scale = Math.max(...c.delta.map(Math.abs));
      c.delta.forEach((x, i) => expect(Math.abs(x - c.delta32![i]), `${c.name}[${i}]`).toBeLessThan(1e-5 * scale));
    }
  });
});

describe("the algorithm's ΔW against PEFT's", () => {
  it('every family PEFT can reconstruct with (23), odd and even shapes, (1, 1), every cell a coefficient, read in slabs of 1, 2 and all rows', async () => {
    const families = new Set<string>();
    for (const c of reference.cases) {
      families.add(c.wavelet_family);
      const truth = c.delta.map((x) => x / c.scaling);
      let scale = 0;
      for (const x of truth) scale = Math.max(scale, Math.abs(x));
      for (const slab of [1, 2, c.out]) {
        const got = await algorithmDelta(c, slab);
        // float64 work rounded once to f32: within half an f32 ulp of PEFT's float64 ΔW, plus float64 summation order.
        got.forEach((x, i) => {
          if (Math.abs(x - truth[i]) > 2 ** -24 * Math.abs(truth[i]) + 1e-13 * scale) expect.fail(`${c.name} (slab ${slab})[${i}]: got ${x}, PEFT ${truth[i]}`);
        });
      }
    }
    expect(families.size).toBe(23);
  });
});

describe.each(['cpu', 'webgpu'])('WaveFT (PEFT) with use_idwt true, %s', (name) => {
  it('db1 on a (48, 64) layer and sym5 on an odd (33, 20) one from n_frequency_pattern under one seed, user weight −0.5', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // One seed and one family per adapter: two adapters, one per layer.
    const a = wave('db1-merge'), b = wave('sym5-merge');
    const wq = vals(48 * 64, 'F32'), wv = vals(33 * 20, 'BF16');
    const first = await mergePeftFolder(backend, [t(`${q}.weight`, 'F32', [48, 64], wq)],
      // PEFT's defaults for wavelet_family (db1) and scaling (25): both left out.
      waveConfig({ n_frequency: 300, wavelet_family: undefined, scaling: undefined, use_idwt: undefined, target_modules: ['q_proj'] }), [spectrumOf(q, a)], -0.5);
    expectMerged(first.tensors.get(`${q}.weight`)!.values, wq.map((x, i) => x - 0.5 * a.delta[i]), 'F32', q);
    const second = await mergePeftFolder(backend, [t(`${v}.weight`, 'BF16', [33, 20], wv)],
      waveConfig({ n_frequency: 9, n_frequency_pattern: { v_proj: 200 }, wavelet_family: 'sym5', random_loc_seed: b.random_loc_seed, scaling: b.scaling }), [spectrumOf(v, b)]);
    expectMerged(second.tensors.get(`${v}.weight`)!.values, wv.map((x, i) => x + b.delta[i]), 'BF16', v);
  });

  it('db2 with a bf16 spectrum on an f16 (12, 17) layer, and coif4 (PEFT\'s own table) on (5, 7) beside it', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const c = wave('db2-bf16');
    const w = vals(12 * 17, 'F16');
    const { tensors } = await mergePeftFolder(backend, [t(`${q}.weight`, 'F16', [12, 17], w)],
      waveConfig({ n_frequency: c.n_frequency, wavelet_family: 'db2', random_loc_seed: c.random_loc_seed, scaling: c.scaling, target_modules: ['q_proj'] }), [spectrumOf(q, c)]);
    expect(c.spectrum.every((x) => roundForDType(x, 'BF16') === x)).toBe(true);
    expectMerged(tensors.get(`${q}.weight`)!.values, w.map((x, i) => x + c.delta[i]), 'F16', q);
    const k = wave('coif4');
    const w4 = vals(35, 'F32');
    const r4 = await mergePeftFolder(backend, [t(`${q}.weight`, 'F32', [5, 7], w4)],
      waveConfig({ n_frequency: k.n_frequency, wavelet_family: 'coif4', random_loc_seed: k.random_loc_seed, scaling: k.scaling, target_modules: ['q_proj'] }), [spectrumOf(q, k)], 2);
    expectMerged(r4.tensors.get(`${q}.weight`)!.values, w4.map((x, i) => x + 2 * k.delta[i]), 'F32', q);
  });
});

describe('WaveFT (PEFT) with use_idwt true through the CLI', () => {
  it('a PEFT folder with sym5 on (33, 20) merges to W + ΔW', async () => {
    const c = wave('sym5-merge');
    const w = vals(33 * 20, 'F32');
    const temp = tempDirs();
    try {
      const dir = temp.make({
        'base.safetensors': buildSafetensors([t(`${v}.weight`, 'F32', [33, 20], w)]),
        ...Object.fromEntries(Object.entries(peftFolder(waveConfig({ n_frequency: 200, wavelet_family: 'sym5', random_loc_seed: c.random_loc_seed, scaling: c.scaling, target_modules: ['v_proj'] }), [spectrumOf(v, c)])).map(([f, d]) => [`adapter/${f}`, d])),
      });
      const out = join(dir, 'out.safetensors');
      const r = await runCli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', join(dir, 'adapter'), '--out', out, '--backend', 'cpu']);
      expect(r.code, r.stderr).toBe(0);
      const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors.get(`${v}.weight`)!;
      expectMerged(merged.values, w.map((x, i) => x + c.delta[i]), 'F32', v);
    } finally {
      temp.removeAll();
    }
  });
});

describe('WaveFT use_idwt refusals, named', () => {
  const c = wave('sym3');
  const base = [t(`${q}.weight`, 'F32', [5, 7], vals(35, 'F32'))];
  const open = (fields: object) => preparePeftFolder(base, waveConfig({ n_frequency: c.n_frequency, random_loc_seed: c.random_loc_seed, target_modules: ['q_proj'], ...fields }), [spectrumOf(q, c)]);

  it("families PEFT lists but has no filters for: PEFT's get_delta_weight raises, so they are refused", async () => {
    for (const r of reference.refused.filter((x) => x.error)) {
      expect(r.error).toMatch(new RegExp(`^ValueError: Unknown wavelet name '${r.wavelet_family}'`));
      await expect(open({ wavelet_family: r.wavelet_family })).rejects.toThrow(new RegExp(`WaveFT "wavelet_family" "${r.wavelet_family}" has no filters in PEFT's wavelet\\.py \\(db1–db10, sym2–sym10, coif1–coif5\\), so PEFT's get_delta_weight raises ValueError`));
    }
    // With use_idwt false the family is not read: db11 merges as the plain coefficients.
    await expect(open({ wavelet_family: 'db11', use_idwt: false })).resolves.toBeDefined();
  });

  it("coif5: PEFT's 48-tap table makes its ΔW smaller than the layer, which PEFT cannot add", async () => {
    for (const r of reference.refused.filter((x) => x.wavelet_family === 'coif5')) {
      expect(r.delta_shape![0], `${r.out}×${r.in}`).toBeLessThan(r.out);
    }
    await expect(open({ wavelet_family: 'coif5' })).rejects.toThrow(/WaveFT "wavelet_family" "coif5": PEFT's filter for it has 48 taps while its WAVELET_REDUCTIONS pads for 30, so PEFT's inverse transform comes out smaller than the layer/);
    await expectPeftCliRefusal(base, waveConfig({ n_frequency: c.n_frequency, wavelet_family: 'coif5', target_modules: ['q_proj'] }), [spectrumOf(q, c)], /"coif5": PEFT's filter for it has 48 taps/);
  });

  it('a name WaveFTConfig refuses (haar, null, wrong case), use_idwt or not', async () => {
    for (const family of ['haar', null, 'DB2', 'db39', 3]) {
      for (const use_idwt of [true, false]) {
        await expect(open({ wavelet_family: family, use_idwt })).rejects.toThrow(/WaveFT "wavelet_family" .* is not one PEFT lists \(db1–db38, sym2–sym20, coif1–coif17; WaveFTConfig raises ValueError\)/);
      }
    }
  });
});
