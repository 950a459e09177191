/**
 * The one-call adapter jobs (combineLoras, resizeLora, extractLora) as an embedder calls them: on
 * in-memory inputs, Blobs back. Outputs are read plainly and checked against float64 truth
 * computed here; bad options are refused before any file is read; a cancel leaves the output
 * aborted, never committed.
 */
import { describe, expect, it } from 'vitest';
import { combineLoras, extractLora, resizeLora } from '../src/adapter-jobs.js';
import { isMergeError } from '../src/errors.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import type { ByteSink, OutputTarget } from '../src/io/types.js';
import { kohyaFile, peftFiles } from './helpers/adapter-fixtures.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaUpdates, peftUpdates, relativeError } from './helpers/lora-truth.js';
import { dense, frob2, gaussian, minus, optimalError, product, singularValues, withSpectrum, type Dense } from './helpers/svd-reference.js';

const gaussianDense = (rows: number, cols: number, rand: () => number, scale = 1): Dense => dense(rows, cols, () => gaussian(rand) * scale);
const blobBytes = async (blob: Blob) => new Uint8Array(await blob.arrayBuffer());
const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.0.self_attn.v_proj';

function weightedSum(terms: { b: Dense; a: Dense; scale: number }[]): Dense {
  const out = dense(terms[0].b.rows, terms[0].a.cols, () => 0);
  for (const t of terms) {
    const p = product(t.b, t.a);
    for (let i = 0; i < out.data.length; i++) out.data[i] += t.scale * p.data[i];
  }
  return out;
}

async function refused(work: Promise<unknown>): Promise<{ code: string; message: string }> {
  const error = await work.then(() => undefined, (e: unknown) => e);
  expect(isMergeError(error), String(error)).toBe(true);
  return error as { code: string; message: string };
}

describe('combineLoras', () => {
  it('cat reproduces the weighted sum of two PEFT adapters of different ranks and alphas', async () => {
    const rand = seededRandom(3);
    const one = { q: { b: gaussianDense(24, 3, rand), a: gaussianDense(3, 20, rand) }, v: { b: gaussianDense(12, 3, rand), a: gaussianDense(3, 20, rand) } };
    const two = { q: { b: gaussianDense(24, 2, rand), a: gaussianDense(2, 20, rand) } };
    const outcome = await combineLoras({
      adapters: [
        { source: memoryInputFileSet(peftFiles([{ name: Q, ...one.q }, { name: V, ...one.v }], { r: 3, lora_alpha: 6 }), 'one'), weight: 0.7 },
        { source: memoryInputFileSet(peftFiles([{ name: Q, ...two.q }], { r: 2, lora_alpha: 1 }), 'two'), weight: -0.5 },
      ],
      method: 'cat', backend: 'cpu',
    });
    expect(outcome.format).toBe('peft');
    expect(outcome.files.sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(outcome.modules.map((m) => [m.name, m.rank])).toEqual([[Q, 5], [V, 3]]);
    const blob = (path: string) => outcome.blobs.find((b) => b.path === path)!.blob;
    const updates = peftUpdates(await blob('adapter_config.json').text(), await blobBytes(blob('adapter_model.safetensors')));
    expect(relativeError(updates.get(Q)!, weightedSum([{ ...one.q, scale: 0.7 * 2 }, { ...two.q, scale: -0.5 * 0.5 }]))).toBeLessThan(1e-6);
    expect(relativeError(updates.get(V)!, weightedSum([{ ...one.v, scale: 0.7 * 2 }]))).toBeLessThan(1e-6);
  });

  it('svd on a kohya input writes a kohya file by default, within 1e-3 of the optimal error', async () => {
    const rand = seededRandom(4);
    const key = 'lora_unet_down_blocks_1_attentions_0_proj_in';
    const b1 = gaussianDense(30, 4, rand), a1 = gaussianDense(4, 26, rand), b2 = gaussianDense(30, 3, rand), a2 = gaussianDense(3, 26, rand);
    const outcome = await combineLoras({
      adapters: [
        memoryInputFileSet({ 'one.safetensors': kohyaFile([{ name: key, b: b1, a: a1, alpha: 2 }]) }, 'one.safetensors'),
        { source: memoryInputFileSet({ 'two.safetensors': kohyaFile([{ name: key, b: b2, a: a2, alpha: 3 }]) }, 'two.safetensors'), weight: 0.5 },
      ],
      method: 'svd', rank: 3, backend: 'cpu',
    });
    expect(outcome.format).toBe('kohya');
    expect(outcome.files).toEqual(['adapter.safetensors']);
    const got = kohyaUpdates(await blobBytes(outcome.blobs[0].blob)).get(key)!;
    const target = weightedSum([{ b: b1, a: a1, scale: 2 / 4 }, { b: b2, a: a2, scale: 0.5 * 3 / 3 }]);
    const err = Math.sqrt(frob2(minus(got, target)));
    expect(err).toBeLessThanOrEqual(optimalError(target, 3) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
    expect(outcome.modules[0].normSquared).toBeCloseTo(frob2(target), 3);
  });

  it('warns of each option the method does not read, and of none it reads', async () => {
    const rand = seededRandom(5);
    const files = () => memoryInputFileSet(peftFiles([{ name: Q, b: gaussianDense(24, 3, rand), a: gaussianDense(3, 20, rand) }], { r: 3, lora_alpha: 6 }), 'one');
    const all = { rank: 2, density: 0.5, majoritySign: 'frequency', seed: 7, clampQuantile: 0.99 } as const;
    const warned = async (method: 'cat' | 'svd' | 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune') =>
      (await combineLoras({ adapters: [files()], method, ...all, backend: 'cpu' })).warnings.filter((w) => /no effect/.test(w));
    expect(await warned('cat')).toEqual(['rank', 'density', 'majoritySign', 'seed', 'clampQuantile'].map((o) => `${o} has no effect with method cat (an exact concatenation)`));
    expect(await warned('svd')).toEqual(['density', 'majoritySign', 'seed'].map((o) => `${o} has no effect with method svd`));
    expect(await warned('dare_linear')).toEqual(['majoritySign has no effect with method dare_linear']);
    expect(await warned('magnitude_prune')).toEqual(['majoritySign has no effect with method magnitude_prune']);
    expect(await warned('ties')).toEqual([]);
    expect(await warned('dare_ties')).toEqual([]);
  });

  it('refuses bad options before reading anything, and a PEFT folder for kohya names', async () => {
    const missing = memoryInputFileSet({}, 'nothing');
    expect((await refused(combineLoras({ adapters: [missing], method: 'ties' }))).message).toMatch(/method ties needs a density/);
    expect((await refused(combineLoras({ adapters: [missing], method: 'svd', rank: 0 }))).message).toMatch(/rank must be a positive integer, not 0/);
    expect((await refused(combineLoras({ adapters: [{ source: missing, weight: Number.NaN }], method: 'cat' }))).message).toMatch(/^adapters\[0\]\.weight must be a finite number .*not NaN$/);
    expect((await refused(resizeLora({ adapter: missing, rule: { kind: 'sv_fro', value: 1.5 } }))).message).toMatch(/sv_fro must be a number in \(0, 1\]/);
    expect((await refused(extractLora({ base: missing, tuned: missing, rank: 4, energy: 0.9 }))).message).toMatch(/^extractLora takes exactly one of rank \(every module's rank\) and energy .*; not both$/);
    const rand = seededRandom(5);
    const kohya = memoryInputFileSet({ 'style.safetensors': kohyaFile([{ name: 'lora_te_text_model_encoder_layers_0_mlp_fc1', b: gaussianDense(8, 2, rand), a: gaussianDense(2, 6, rand) }]) }, 'style.safetensors');
    const error = await refused(resizeLora({ adapter: kohya, rule: { kind: 'rank', rank: 1 }, format: 'peft' }));
    expect(error.code).toBe('BAD_ARGUMENT');
    expect(error.message).toMatch(/^style\.safetensors: a kohya adapter's module names .* cannot be written as a PEFT folder/);
  });
});

describe('resizeLora', () => {
  it('is cancelled from its progress listener: the output is aborted, never committed', async () => {
    const rand = seededRandom(6);
    const adapter = memoryInputFileSet(peftFiles([{ name: Q, b: gaussianDense(16, 4, rand), a: gaussianDense(4, 16, rand) }]), 'lora');
    const calls: string[] = [];
    const out: OutputTarget = {
      name: 'out',
      createFile: async (path): Promise<ByteSink> => { calls.push(`create ${path}`); return { write: async () => {}, close: async () => {} }; },
      commit: async () => { calls.push('commit'); },
      abort: async () => { calls.push('abort'); },
    };
    const controller = new AbortController();
    const error = await refused(resizeLora({ adapter, rule: { kind: 'rank', rank: 2 }, out, backend: 'cpu', signal: controller.signal, onProgress: () => controller.abort() }));
    expect(error.code).toBe('ABORTED');
    expect(error.message).toBe('resize cancelled');
    expect(calls).toEqual(['abort']);
  });
});

describe('resizeLora with a dynamic rule and maxRank', () => {
  it("writes the rule's rank capped at maxRank, the best approximation at that rank", async () => {
    const rand = seededRandom(19);
    const b = gaussianDense(24, 6, rand), a = gaussianDense(6, 20, rand);
    const adapter = memoryInputFileSet(peftFiles([{ name: Q, b, a }]), 'lora');
    // sv_fro 1 written out as kohya's rule would keep all 6 values and one more (its off-by-one): 7, above the cap.
    const outcome = await resizeLora({ adapter, rule: { kind: 'sv_fro', value: 1, maxRank: 3 }, backend: 'cpu' });
    expect(outcome.modules.map((m) => m.rank)).toEqual([3]);
    const target = product(b, a);
    const sv = singularValues(target);
    const kept = Math.sqrt(sv.slice(0, 3).reduce((s, x) => s + x * x, 0) / sv.reduce((s, x) => s + x * x, 0));
    expect(outcome.modules[0].froKept).toBeCloseTo(kept, 5);
  });
});

describe('extractLora', () => {
  it('recovers a difference of known singular values within 1e-3 of the optimum and names the base', async () => {
    const rand = seededRandom(7);
    const base = gaussianDense(64, 64, rand, 0.1);
    const spectrum = [3, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02];
    const diff = withSpectrum(64, 64, spectrum, rand);
    const tuned = dense(64, 64, (i, j) => base.data[i * 64 + j] + diff.data[i * 64 + j]);
    const model = (w: Dense) => buildSafetensors([{ name: `${Q}.weight`, dtype: 'F32', shape: [64, 64], data: w.data }]);
    const outcome = await extractLora({
      base: memoryInputFileSet({ 'model.safetensors': model(base), 'config.json': '{"_name_or_path": "org/tiny"}' }, 'base'),
      tuned: memoryInputFileSet({ 'model.safetensors': model(tuned) }, 'tuned'),
      rank: 4, backend: 'cpu',
    });
    const blob = (path: string) => outcome.blobs.find((b) => b.path === path)!.blob;
    const configText = await blob('adapter_config.json').text();
    expect(JSON.parse(configText).base_model_name_or_path).toBe('org/tiny');
    const got = peftUpdates(configText, await blobBytes(blob('adapter_model.safetensors'))).get(Q)!;
    const optimum = Math.sqrt(spectrum.slice(4).reduce((s, x) => s + x * x, 0));
    expect(Math.sqrt(frob2(minus(got, diff)))).toBeLessThanOrEqual(optimum * (1 + 1e-3));
    expect(outcome.modules[0].singularValues.slice(0, 4).map((s, i) => s / spectrum[i])).toEqual(spectrum.slice(0, 4).map(() => expect.closeTo(1, 5)));
  });

  /** A Llama slice: q_proj (hidden × hidden) and embed_tokens (vocab × hidden), F32. */
  const llama = (rand: () => number, hidden: number, vocab: number, q?: Dense) => buildSafetensors([
    { name: `${Q}.weight`, dtype: 'F32', shape: [hidden, hidden], data: (q ?? gaussianDense(hidden, hidden, rand)).data },
    { name: 'model.embed_tokens.weight', dtype: 'F32', shape: [vocab, hidden], data: gaussianDense(vocab, hidden, rand).data },
  ]);

  it('refuses a "fine-tune" of another size (hidden 32 against 16) in one line naming the tensor, rather than saving its weights whole', async () => {
    const rand = seededRandom(8);
    const work = extractLora({
      base: memoryInputFileSet({ 'model.safetensors': llama(rand, 16, 50) }, 'base'),
      tuned: memoryInputFileSet({ 'model.safetensors': llama(rand, 32, 50) }, 'tuned'),
      rank: 4, backend: 'cpu',
    });
    const error = await refused(work);
    expect(error.code).toBe('SHAPE_MISMATCH');
    expect(error.message).toBe(`tuned: tensor "${Q}.weight" is (32, 32) here but (16, 16) in base (and 1 more); extract takes a fine-tune of the same model and size (only an embedding's vocabulary may grow): are they the same architecture and size?`);
  });

  it('keeps a vocabulary grown for added tokens (embed_tokens 50 → 52 rows, PEFT\'s resized embedding) whole, beside the low-rank update', async () => {
    const rand = seededRandom(9);
    const base = gaussianDense(16, 16, rand);
    const diff = withSpectrum(16, 16, [2, 1], rand);
    const tunedQ = dense(16, 16, (i, j) => base.data[i * 16 + j] + diff.data[i * 16 + j]);
    const tuned = llama(rand, 16, 52, tunedQ);
    const outcome = await extractLora({
      base: memoryInputFileSet({ 'model.safetensors': llama(rand, 16, 50, base) }, 'base'),
      tuned: memoryInputFileSet({ 'model.safetensors': tuned }, 'tuned'),
      rank: 2, backend: 'cpu',
    });
    const blob = (path: string) => outcome.blobs.find((b) => b.path === path)!.blob;
    const configText = await blob('adapter_config.json').text();
    expect(JSON.parse(configText).modules_to_save).toEqual(['model.embed_tokens']);
    const got = peftUpdates(configText, await blobBytes(blob('adapter_model.safetensors'))).get(Q)!;
    expect(relativeError(got, diff)).toBeLessThan(1e-4);    // Said, and carried: the adapter loads only on a base resized to 52 rows the same way.
    expect(outcome.grownRows).toEqual([{ tensor: 'model.embed_tokens.weight', baseRows: 50, rows: 52 }]);
    expect(outcome.warnings).toEqual([
      'tuned has a vocabulary grown for added tokens: model.embed_tokens.weight has 52 rows (50 in base); saved whole, so the adapter loads only on a base resized to 52 rows the same way (transformers\' resize_token_embeddings) before it is loaded',
    ]);
  });

  it('a vocabulary of the same size carries no grown rows and no warning', async () => {
    const rand = seededRandom(10);
    const base = gaussianDense(16, 16, rand);
    const tunedQ = dense(16, 16, (i, j) => base.data[i * 16 + j] + (i === j ? 0.5 : 0));
    const outcome = await extractLora({
      base: memoryInputFileSet({ 'model.safetensors': llama(seededRandom(11), 16, 50, base) }, 'base'),
      tuned: memoryInputFileSet({ 'model.safetensors': llama(seededRandom(11), 16, 50, tunedQ) }, 'tuned'),
      rank: 2, backend: 'cpu',
    });
    expect(outcome.grownRows).toEqual([]);
    expect(outcome.warnings).toEqual([]);
  });
});
