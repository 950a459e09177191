/**
 * PEFT FourierFT folders (peft_type FOURIERFT): `<module>.fourierft_spectrum` (n_frequency), at
 * positions PEFT draws when it builds the layer: the first n of torch.randperm(out·in) from
 * torch.Generator().manual_seed(random_loc_seed). PEFT merges W += Re(ifft2(spectrum))·scaling.
 *
 * test/reference/torch-cpu-random.json was written by torch 1.13 on CPU (its generator script
 * beside it): randperm prefixes, and for each FourierFT case torch's own positions and, for the
 * small ones, torch's float32 ΔW. randperm_cpu's algorithm (Fisher–Yates on random() % (n − i) below
 * 2³²/20 entries) is the same in current PyTorch's aten/src/ATen/native/TensorFactories.cpp. The
 * truth here is ΔW[p, q] = scaling/(out·in)·Σ_k c_k·cos(2π(p·u_k/out + q·v_k/in)) summed plainly in
 * float64 at torch's positions, checked against torch's ΔW first.
 */
import { describe, expect, it } from 'vitest';
import { RANDPERM_SMALL_LIMIT, TorchCpuGenerator, randpermPrefix } from '../src/algorithms/math/torch-cpu-random.js';
import { peftFourierft } from '../src/formats/algorithms/peft-fourierft.js';
import type { AdapterModule } from '../src/formats/adapter.js';
import type { SafetensorsFile } from '../src/formats/safetensors-types.js';
import { roundForDType, seededRandom } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { deltaTruth, fourier, fourierftConfig as config, reference, type FourierCase } from './helpers/fourierft-truth.js';
import { expectPeftCliRefusal, fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });
const vals = gridValues(seededRandom(97));
const t = fixtureTensor;

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';
const spectrumOf = (path: string, c: FourierCase, dtype: 'F32' | 'BF16' = 'F32') =>
  t(`base_model.model.${path}.fourierft_spectrum`, dtype, [c.spectrum.length], Float64Array.from(c.spectrum));

describe("torch's CPU generator", () => {
  it(`randperm prefixes are ${reference.producedBy}'s, for sizes 1 to 2²¹ and seeds past 32 bits and below 0`, () => {
    for (const c of reference.randperm) {
      expect(Array.from(randpermPrefix(c.n, c.first.length, new TorchCpuGenerator(BigInt(c.seed)))), `seed ${c.seed}, n ${c.n}`).toEqual(c.first);
    }
  });

  it('the positions of every FourierFT case, n_frequency 1000 and n = out·in included, are torch\'s', () => {
    for (const c of reference.fourierft) {
      const flat = randpermPrefix(c.out * c.in, c.n_frequency, new TorchCpuGenerator(BigInt(c.random_loc_seed)));
      expect(Array.from(flat, (e) => Math.floor(e / c.in)), c.name).toEqual(c.rows);
      expect(Array.from(flat, (e) => e % c.in), c.name).toEqual(c.cols);
    }
  });

  it('the plain float64 truth is torch\'s ifft2(…).real·scaling (float32) to its rounding', () => {
    for (const c of reference.fourierft.filter((f) => f.delta)) {
      const d = deltaTruth(c);
      const scale = Math.max(...d.map(Math.abs));
      d.forEach((x, i) => expect(Math.abs(x - c.delta![i]), `${c.name}[${i}]`).toBeLessThan(2e-6 * scale));
    }
  });

  it('randperm lengths from 2³²/20 on (torch\'s random64 shuffle) are refused by the module, naming the layer', async () => {
    expect(RANDPERM_SMALL_LIMIT).toBe(214748364);
    expect(() => randpermPrefix(RANDPERM_SMALL_LIMIT, 1, new TorchCpuGenerator(0n))).toThrow(RangeError);
    const spectrum = { name: `base_model.model.${q}.fourierft_spectrum`, dtype: 'F32', shape: [4], start: 0, end: 16 };
    const module = { name: q, tensors: { spectrum }, options: { r: 4, random_loc_seed: 777 } } as unknown as AdapterModule;
    const file = {} as SafetensorsFile;
    await expect(peftFourierft.load(file, module, { out: 4, in: RANDPERM_SMALL_LIMIT / 4 })).rejects.toThrow(/FourierFT module "model\.layers\.0\.self_attn\.q_proj": the layer has 214748364 weights; torch\.randperm .* random64 shuffle \(from 214748364 entries on\)/);
    await expect(peftFourierft.load(file, module, { out: 3, in: 1 })).rejects.toThrow(/n_frequency 4 is more than the layer's 3·1 = 3 weights \(PEFT's update_layer raises ValueError\)/);
  });
});

describe.each(['cpu', 'webgpu'])('FourierFT (PEFT), %s', (name) => {
  it('odd (5, 7) layer with seed 777 and scaling 150, and a (3, 4) layer whose every cell is a frequency, from n_frequency_pattern', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const odd = fourier('odd'), every = fourier('every-cell');
    // One seed per adapter: the second case's positions come from seed 1, so it is its own adapter's shape under seed 777 here.
    const everyHere = { ...every, random_loc_seed: 777 };
    const flat = randpermPrefix(12, 12, new TorchCpuGenerator(777n));
    everyHere.rows = Array.from(flat, (e) => Math.floor(e / 4));
    everyHere.cols = Array.from(flat, (e) => e % 4);
    const wq = vals(5 * 7, 'BF16'), wv = vals(3 * 4, 'F32');
    const { tensors } = await mergePeftFolder(backend, [t(`${q}.weight`, 'BF16', [5, 7], wq), t(`${v}.weight`, 'F32', [3, 4], wv)],
      config({ n_frequency: 9, n_frequency_pattern: { v_proj: 12 } }), [spectrumOf(q, odd), spectrumOf(v, every)]);
    const dq = deltaTruth(odd), dv = deltaTruth(everyHere, 150);
    expectMerged(tensors.get(`${q}.weight`)!.values, wq.map((x, i) => x + dq[i]), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, wv.map((x, i) => x + dv[i]), 'F32', v);
  });

  it('PEFT\'s default n_frequency 1000 on a (48, 64) layer, one frequency on (6, 6) with seed 0, user weight −0.5', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const big = fourier('default-n');
    const w = vals(48 * 64, 'F32');
    // A config that leaves n_frequency, scaling and random_loc_seed to PEFT's defaults (1000, 150, 777).
    const { tensors } = await mergePeftFolder(backend, [t(`${q}.weight`, 'F32', [48, 64], w)], { peft_type: 'FOURIERFT', target_modules: ['q_proj'] }, [spectrumOf(q, big)], -0.5);
    const d = deltaTruth(big);
    expectMerged(tensors.get(`${q}.weight`)!.values, w.map((x, i) => x - 0.5 * d[i]), 'F32', q);

    const one = fourier('one');
    const w1 = vals(36, 'F32');
    const r1 = await mergePeftFolder(backend, [t(`${v}.weight`, 'F32', [6, 6], w1)], config({ n_frequency: 1, random_loc_seed: 0, target_modules: ['v_proj'] }), [spectrumOf(v, one)]);
    const d1 = deltaTruth(one);
    expectMerged(r1.tensors.get(`${v}.weight`)!.values, w1.map((x, i) => x + d1[i]), 'F32', v);
  });

  it('a (96, 200) layer (inputs not a power of two), bf16 spectrum on an f16 base', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const c = fourier('bluestein');
    const w = vals(96 * 200, 'F16');
    // The file holds the spectrum rounded to bf16, which is what PEFT then reads.
    const stored = { ...c, spectrum: c.spectrum.map((x) => roundForDType(x, 'BF16')) };
    const spectrum = spectrumOf(q, stored, 'BF16');
    const { tensors } = await mergePeftFolder(backend, [t(`${q}.weight`, 'F16', [96, 200], w)],
      config({ n_frequency: c.n_frequency, random_loc_seed: c.random_loc_seed, scaling: c.scaling, target_modules: ['q_proj'] }), [spectrum]);
    const d = deltaTruth(stored);
    expectMerged(tensors.get(`${q}.weight`)!.values, w.map((x, i) => x + d[i]), 'F16', q);
  });
});

/** The fields PEFT 0.18 writes to a WaveFT adapter_config.json, here with use_idwt false. */
const waveConfig = (fields: object) => ({
  peft_type: 'WAVEFT', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.18.0', revision: null,
  n_frequency: 2592, scaling: 25.0, wavelet_family: 'db1', use_idwt: false, random_loc_seed: 777, fan_in_fan_out: false, target_modules: ['q_proj', 'v_proj'],
  exclude_modules: null, bias: 'none', modules_to_save: null, layers_to_transform: null, layers_pattern: null, n_frequency_pattern: {},
  proportional_parameters: false, init_weights: true, inference_mode: true, ...fields,
});
const waveSpectrum = (path: string, c: FourierCase) => t(`base_model.model.${path}.waveft_spectrum`, 'F32', [c.spectrum.length], Float64Array.from(c.spectrum));
/** W + s·scaling·c_k at each of torch's positions. */
const waveTruth = (w: Float64Array, c: FourierCase, s: number) => {
  const res = w.slice();
  c.spectrum.forEach((x, k) => { res[c.rows[k] * c.in + c.cols[k]] += s * x; });
  return res;
};

describe.each(['cpu', 'webgpu'])('WaveFT (PEFT) with use_idwt false, %s', (name) => {
  it('coefficients added at torch\'s positions on an odd (5, 7) layer and a (96, 200) one from n_frequency_pattern, user weight 2', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const odd = fourier('odd'), wide = fourier('bluestein');
    // Both cases under seed 31337 here: the odd one's positions are drawn again for it.
    const oddHere = { ...odd, random_loc_seed: wide.random_loc_seed };
    const flat = randpermPrefix(35, 9, new TorchCpuGenerator(BigInt(wide.random_loc_seed)));
    oddHere.rows = Array.from(flat, (e) => Math.floor(e / 7));
    oddHere.cols = Array.from(flat, (e) => e % 7);
    const wq = vals(35, 'F32'), wv = vals(96 * 200, 'BF16');
    const { tensors } = await mergePeftFolder(backend, [t(`${q}.weight`, 'F32', [5, 7], wq), t(`${v}.weight`, 'BF16', [96, 200], wv)],
      waveConfig({ n_frequency: 9, n_frequency_pattern: { v_proj: 300 }, random_loc_seed: wide.random_loc_seed, scaling: 3 }), [waveSpectrum(q, oddHere), waveSpectrum(v, wide)], 2);
    expectMerged(tensors.get(`${q}.weight`)!.values, waveTruth(wq, oddHere, 6), 'F32', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, waveTruth(wv, wide, 6), 'BF16', v);
  });

  it('proportional_parameters: the spectrum\'s length is the layer\'s share, whatever n_frequency says; use_idwt null is false; scaling left to its default 25', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const c = fourier('default-n');
    const w = vals(48 * 64, 'F32');
    const { tensors } = await mergePeftFolder(backend, [t(`${q}.weight`, 'F32', [48, 64], w)],
      waveConfig({ proportional_parameters: true, use_idwt: null, target_modules: ['q_proj'], scaling: undefined }), [waveSpectrum(q, c)]);
    expectMerged(tensors.get(`${q}.weight`)!.values, waveTruth(w, c, 25), 'F32', q);
  });
});

describe('WaveFT refusals', () => {
  const odd = fourier('odd');
  const base = [t(`${q}.weight`, 'F32', [5, 7], vals(35, 'F32'))];
  // use_idwt true (PEFT's default) and its refusals: peft-waveft-idwt.test.ts.
  it('a spectrum that is not n_frequency long, a fractional seed, a transposed weight, more coefficients than weights', async () => {
    const open = (cfg: object, baseTensors = base) => preparePeftFolder(baseTensors, cfg, [waveSpectrum(q, odd)]);
    await expect(open(waveConfig({ n_frequency: 8 }))).rejects.toThrow(/q_proj": waveft_spectrum \(9\) is not \(n_frequency\) for the config's n_frequency 8/);
    await expect(open(waveConfig({ n_frequency: 9, random_loc_seed: -0.5 }))).rejects.toThrow(/WaveFT "random_loc_seed" must be an integer/);
    // A square weight under fan_in_fan_out true without a config.json is taken as stored (in, out): no dense update there.
    const square = await preparePeftFolder([t(`${q}.weight`, 'F32', [6, 6], vals(36, 'F32'))], waveConfig({ n_frequency: 1, fan_in_fan_out: true }), [waveSpectrum(q, fourier('one'))]);
    expect(square.plan.problems.map((p) => p.message)).toEqual(['adapter: module "model.layers.0.self_attn.q_proj": WaveFT (PEFT) on a weight stored (in, out) is not supported']);
    await expect(mergePeftFolder(backends.cpu!, [t(`${q}.weight`, 'F32', [2, 4], vals(8, 'F32'))], waveConfig({ n_frequency: 9 }), [waveSpectrum(q, odd)]))
      .rejects.toThrow(/WaveFT module "model\.layers\.0\.self_attn\.q_proj": n_frequency 9 is more than the layer's 2·4 = 8 weights/);
  });
});

describe('FourierFT refusals through the CLI: one line, nothing written', () => {
  const refuse = expectPeftCliRefusal;
  const odd = fourier('odd');
  const base = [t(`${q}.weight`, 'F32', [5, 7], vals(35, 'F32'))];

  it('a spectrum whose length is not n_frequency, a null seed, a fractional seed, more frequencies than weights', async () => {
    const open = (cfg: object, baseTensors = base) => preparePeftFolder(baseTensors, cfg, [spectrumOf(q, odd)]);
    await expect(open(config({ n_frequency: 8 }))).rejects.toThrow(/q_proj": fourierft_spectrum \(9\) is not \(n_frequency\) for the config's n_frequency 8/);
    await expect(open(config({ n_frequency: 9, random_loc_seed: null }))).rejects.toThrow(/"random_loc_seed" is null, which PEFT cannot load \(torch\.Generator\(\)\.manual_seed\(None\) raises TypeError\)/);
    await expect(open(config({ n_frequency: 9, random_loc_seed: 1.5 }))).rejects.toThrow(/FourierFT "random_loc_seed" must be an integer \(torch\.Generator\(\)\.manual_seed takes one\), got 1\.5/);
    // 2^70 as JSON writes it, 1.1805916207174113e+21: a float to Python's json, which manual_seed refuses (2^60, written whole, it takes).
    await expect(open(config({ n_frequency: 9, random_loc_seed: 2 ** 70 }))).rejects.toThrow(/FourierFT "random_loc_seed" must be an integer \(torch\.Generator\(\)\.manual_seed takes one\), got 1\.1805916207174113e\+21$/);
    // JSON writes 2^60 as 1152921504606847000, an int to Python (past 2^53: read from the text, not
    // as the double 2^60); torch keeps its low 32 bits, so the positions are those of that seed.
    const merged = async (seed: number) => Array.from((await mergePeftFolder(backends.cpu!, base, config({ n_frequency: 9, random_loc_seed: seed }), [spectrumOf(q, odd)])).tensors.get(`${q}.weight`)!.values);
    const low = Number(BigInt.asUintN(32, 1152921504606847000n));
    expect(low).not.toBe(0);
    expect(await merged(2 ** 60)).toEqual(await merged(low));
    expect(await merged(2 ** 60)).not.toEqual(await merged(0));
    // The built CLI: one line, nothing written.
    await refuse([t(`${q}.weight`, 'F32', [2, 4], vals(8, 'F32'))], config({ n_frequency: 9 }), [spectrumOf(q, odd)], /FourierFT module "model\.layers\.0\.self_attn\.q_proj": n_frequency 9 is more than the layer's 2·4 = 8 weights/);
  });

  it('a GPT-2 Conv1D weight stored (in, out): the engine has no dense update on a transposed weight, so it is refused', async () => {
    const attn = 'transformer.h.0.attn.c_attn';
    const c = fourier('conv1d');
    const { plan } = await preparePeftFolder([t(`${attn}.weight`, 'F32', [40, 12], vals(480, 'F32'))],
      config({ n_frequency: 30, random_loc_seed: c.random_loc_seed, scaling: c.scaling, target_modules: ['c_attn'], fan_in_fan_out: true }), [spectrumOf(attn, c)], { model_type: 'gpt2' });
    expect(plan.problems.map((p) => p.message)).toEqual(['adapter: module "transformer.h.0.attn.c_attn": FourierFT (PEFT) on a weight stored (in, out) is not supported']);
    // Without a config.json a square weight under fan_in_fan_out true is taken as stored (in, out), as for PEFT's other methods.
    const square = await preparePeftFolder([t(`${q}.weight`, 'F32', [6, 6], vals(36, 'F32'))], config({ n_frequency: 1, random_loc_seed: 0, fan_in_fan_out: true }), [spectrumOf(q, fourier('one'))]);
    expect(square.plan.problems.map((p) => p.message)).toEqual(['adapter: module "model.layers.0.self_attn.q_proj": FourierFT (PEFT) on a weight stored (in, out) is not supported']);
  });

  it('resize: a Fourier update is no low-rank product', async () => {
    await refuse(base, config({ n_frequency: 9 }), [spectrumOf(q, odd)], /q_proj" is FourierFT \(PEFT\), whose update is not a low-rank product; resize cannot express it/, 'resize');
  });
});
