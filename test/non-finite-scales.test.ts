/**
 * Inf, NaN or overflow that only appears once a factor multiplies V: a DoRA magnitude of Inf (an
 * f16 `dora_scale` of 70000 is stored as Inf), or one so large that m · V / ‖V‖ overflows the
 * output dtype. The kernels' own non-finite flags speak for V; the scale is applied afterwards
 * (when results are certified in float64) or in the exact recomputation of listed elements, and
 * every one of those places must report it. Found by the surfaces fuzzer (seed 60531881): the
 * WebAssembly and WebGPU executors wrote NaN with exit 0 where plain JavaScript refused. Also a
 * GLoRA factor holding Inf next to a zero: the float64 pass skips products with a zero factor, so
 * V looked finite, and the exact recomputation met the Inf and failed with an internal error.
 * And a module scale past float32 (--weight 2.5 times a kohya α of 3.4e38) on factors whose
 * products are all zero: W' = W, but the f32 kernel folds the scale into its f32 left factor (Inf)
 * and Inf · 0 is NaN; it was refused as "merged values up to 1.5 overflow BF16" (found by the
 * surfaces fuzzer, comfy-quant world, seed 3). Such elements are recomputed exactly now.
 * The float64 step executor (DoRA, GLoRA…) too: a GLoRA s·(W·a1) past float64 times an a2 of
 * zeros was NaN there and refused as "too large for any float dtype" where W' = W. A DoRA norm
 * that gives no number (W + ΔW zero on a row with PEFT's ε = 0: PEFT merges m / 0 · 0 = NaN) was
 * refused with that same false message, and one whose squares pass float64 (‖V‖² = Inf, m / Inf
 * = 0) was merged into zeros with exit 0: both are refused now, naming the feature.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeFileInMemory, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { decodeSafetensors, tempDirs } from './helpers/fixtures.js';
import { errorLines, runCli } from './helpers/cli.js';

const backends = mergeBackends({ cpu: 'both' });
const rand = seededRandom(60531881);
const vals = (n: number, dtype: FixtureDType, scale = 1) => randomValues(n, rand, scale).map((x) => roundForDType(x, dtype));

/** Merges and returns the error's message, or undefined when the merge wrote its output. */
async function mergeError(backend: MergeBackend, base: FixtureTensor[], adapter: Record<string, Uint8Array | string>, adapterName: string, weight = 1): Promise<string | undefined> {
  const prepared = await prepareMerge(memoryInputFileSet({ 'model.safetensors': buildSafetensors(base) }, 'base'),
    [{ files: memoryInputFileSet(adapter, adapterName), weight }]);
  expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
  try {
    await mergeModel({ prepared, output: createBlobOutputTarget(), backend, slabBytes: 4096 });
    return undefined;
  } catch (e) {
    return (e as Error).message;
  } finally {
    await prepared.close();
  }
}

// LyCORIS LoRA with weight decomposition on a Linear of the SD UNet: norms per input column.
const unetKey = 'down_blocks.1.attentions.0.proj_in';
const flat = `lora_unet_${unetKey.replaceAll('.', '_')}`;
const out = 40, inF = 24, r = 4;

function lycorisDora(magnitude: number[], wDtype: FixtureDType, mDtype: FixtureDType, w = vals(out * inF, wDtype), down = vals(r * inF, 'F16')) {
  return {
    base: [{ name: `${unetKey}.weight`, dtype: wDtype, shape: [out, inF], data: w }] as FixtureTensor[],
    adapter: {
      'dora.safetensors': buildSafetensors([
        { name: `${flat}.lora_down.weight`, dtype: 'F16', shape: [r, inF], data: down },
        { name: `${flat}.lora_up.weight`, dtype: 'F16', shape: [out, r], data: vals(out * r, 'F16') },
        { name: `${flat}.alpha`, dtype: 'F32', shape: [], data: [r] },
        { name: `${flat}.dora_scale`, dtype: mDtype, shape: [1, inF], data: magnitude },
      ], { ss_network_module: 'lycoris.kohya', ss_network_args: '{"algo": "lora", "dora_wd": "True"}' }),
    },
  };
}

// PEFT DoRA on a Llama projection: norms per output row.
const llmKey = 'model.layers.0.self_attn.o_proj';
function peftDora(magnitude: number[], wDtype: FixtureDType, w = vals(out * inF, wDtype), up = vals(out * r, 'F32')) {
  return {
    base: [{ name: `${llmKey}.weight`, dtype: wDtype, shape: [out, inF], data: w }] as FixtureTensor[],
    adapter: {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8, use_dora: true, target_modules: ['o_proj'] }),
      'adapter_model.safetensors': buildSafetensors([
        { name: `base_model.model.${llmKey}.lora_A.weight`, dtype: 'F32', shape: [r, inF], data: vals(r * inF, 'F32') },
        { name: `base_model.model.${llmKey}.lora_B.weight`, dtype: 'F32', shape: [out, r], data: up },
        { name: `base_model.model.${llmKey}.lora_magnitude_vector`, dtype: 'F32', shape: [out], data: magnitude },
      ]),
    },
  };
}

const ones = (n: number) => Array.from({ length: n }, () => 1);

// LyCORIS GLoRA: W + W·a1·a2 + b1·b2 (scaled by α/r), the second term's b2 holding Inf.
function glora(b1: ArrayLike<number>, b2: ArrayLike<number>, a1: ArrayLike<number> = vals(inF, 'BF16', 0.2), a2: ArrayLike<number> = vals(inF, 'BF16', 0.2)) {
  const rank = 1;
  return {
    base: [{ name: `${unetKey}.weight`, dtype: 'F16', shape: [out, inF], data: vals(out * inF, 'F16') }] as FixtureTensor[],
    adapter: {
      'glora.safetensors': buildSafetensors([
        { name: `${flat}.a1.weight`, dtype: 'BF16', shape: [inF, rank], data: a1 },
        { name: `${flat}.a2.weight`, dtype: 'BF16', shape: [rank, inF], data: a2 },
        { name: `${flat}.b1.weight`, dtype: 'BF16', shape: [out, rank], data: b1 },
        { name: `${flat}.b2.weight`, dtype: 'BF16', shape: [rank, inF], data: b2 },
        { name: `${flat}.alpha`, dtype: 'F32', shape: [], data: [1] },
      ]),
    },
  };
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it('refuses a GLoRA factor holding Inf beside zeros (0 · Inf is NaN), naming the factor', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const b1 = Array.from({ length: out }, (_, i) => (i === 0 ? -2.1e-5 : 0));
    const b2 = vals(inF, 'BF16');
    b2[2] = Infinity;
    const c = glora(b1, b2);
    expect(await mergeError(backend, c.base, c.adapter, 'glora.safetensors')).toMatch(/b2\.weight holds 1 NaN or Inf value \(element 2\); the adapter file is broken/);
  });

  it('refuses a LyCORIS dora_scale holding Inf (an f16 70000), naming it', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    for (const wDtype of ['F32', 'BF16', 'F16'] as const) {
      const m = ones(inF);
      m[7] = 70000; // stored as f16: Inf
      const c = lycorisDora(m, wDtype, 'F16');
      expect(await mergeError(backend, c.base, c.adapter, 'dora.safetensors'), wDtype).toMatch(/dora_scale holds 1 NaN or Inf value \(element 7\); the adapter file is broken/);
    }
  });

  it('refuses a PEFT magnitude holding Inf, naming it', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const m = ones(out);
    m[33] = Infinity;
    const c = peftDora(m, 'BF16');
    expect(await mergeError(backend, c.base, c.adapter, 'peft-dora')).toMatch(/lora_magnitude_vector holds 1 NaN or Inf value \(element 33\); the adapter file is broken/);
  });

  it('merges a module whose scale is past float32 but whose products are all zero (W\' = W), and refuses it when they are not', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const key = 'double_stream_modulation_img.lin';
    const stem = `lora_unet_${key.replaceAll('.', '_')}`;
    const w = vals(6 * 64, 'BF16');
    const base = { 'flux2.safetensors': buildSafetensors([{ name: `${key}.weight`, dtype: 'BF16', shape: [6, 64], data: w }]) };
    const lora = (down: number[]) => ({ files: { 'lora.safetensors': buildSafetensors([
      { name: `${stem}.lora_down.weight`, dtype: 'F16', shape: [1, 64], data: down },
      { name: `${stem}.lora_up.weight`, dtype: 'F16', shape: [6, 1], data: [0, 0, 0, -1, 0, 0.5] },
      { name: `${stem}.alpha`, dtype: 'F32', shape: [], data: [3.4e38] },
    ]) }, weight: 2.5 });
    for (const outDtype of [undefined, 'f16', 'f32']) {
      const { bytes } = await mergeFileInMemory({ backend, base, adapters: [lora(Array(64).fill(0))], ...(outDtype ? { outDtype } : {}) });
      const merged = decodeSafetensors(bytes).tensors.get(`${key}.weight`)!;
      expect(Array.from(merged.values), outDtype).toEqual(Array.from(w));
    }
    const down = Array(64).fill(0);
    down[5] = 1; // ΔW rows of 8.5e38: past every float dtype
    expect(await refusalsInMemory({ backend, base, adapters: [lora(down)] })).toEqual([expect.stringMatching(/overflow BF16|too large/)]);
  });

  it('merges a GLoRA whose W·a1 passes float64 under a huge scale but meets an a2 of zeros (W\' = W), exactly', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // s = 1e290 (--weight, α = rank): s · (V·a1) is past float64 (Inf), and Inf · 0 is NaN in the
    // float64 pass, where the exact W + s·W·a1·a2 + s·b1·b2 is W (a2 and b1 all zero).
    const a1 = vals(inF, 'BF16').map((x) => roundForDType(x * 1e30, 'BF16'));
    const c = glora(Array(out).fill(0), vals(inF, 'BF16'), a1, Array(inF).fill(0));
    const { tensors } = await mergeInMemory({ backend, base: { 'model.safetensors': buildSafetensors(c.base) }, adapters: [{ files: c.adapter, weight: 1e290 }] });
    expect(Array.from(tensors.get(`${unetKey}.weight`)!.values)).toEqual(Array.from(c.base[0].data as number[]));
  });

  it('refuses a PEFT DoRA row where W + ΔW is zero (m / 0 · 0: PEFT merges NaN), naming the row, not an overflow', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const w = vals(out * inF, 'BF16');
    const up = vals(out * r, 'F32');
    w.fill(0, 5 * inF, 6 * inF); // a pruned row, and an adapter whose lora_B leaves it alone
    up.fill(0, 5 * r, 6 * r);
    const m = ones(out);
    const c = peftDora(m, 'BF16', w, up);
    const message = await mergeError(backend, c.base, c.adapter, 'peft-dora');
    expect(message).toMatch(/tensor "model\.layers\.0\.self_attn\.o_proj\.weight": DoRA norm of output feature 5: W \+ ΔW is zero there .* 1 \/ 0 \(PEFT merges NaN there\)/);
    expect(message).not.toMatch(/overflow|too large/);
  });

  it('refuses a PEFT DoRA whose W + ΔW is too large for float64 squares, rather than writing zeros', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // ΔW about 1e160: ‖V‖² is Inf in float64, and m / Inf would make every merged value 0.
    const c = peftDora(ones(out), 'BF16');
    expect(await mergeError(backend, c.base, c.adapter, 'peft-dora', 1e160)).toMatch(/DoRA norm of output feature \d+: W \+ ΔW before the DoRA step is too large for its squares in float64/);
  });

  it('merges a LyCORIS DoRA column where W + ΔW is zero (its ε keeps the factor finite): zeros stay zero', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const w = vals(out * inF, 'F32');
    const down = vals(r * inF, 'F16');
    for (let o = 0; o < out; o++) w[o * inF + 9] = 0;
    for (let k = 0; k < r; k++) down[k * inF + 9] = 0;
    const c = lycorisDora(ones(inF), 'F32', 'F32', w, down);
    const { tensors } = await mergeInMemory({ backend, base: { 'model.safetensors': buildSafetensors(c.base) }, adapters: [{ files: c.adapter }] });
    const merged = tensors.get(`${unetKey}.weight`)!.values;
    for (let o = 0; o < out; o++) expect(merged[o * inF + 9]).toBe(0);
  });

  it('refuses finite magnitudes whose result overflows f16, and merges the same file when it fits', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // m / ‖V‖ · V: a column of norm about 1 scaled to 1e6 cannot be written in f16 (largest 65504).
    const big = ones(inF);
    big[3] = 1e6;
    const c = lycorisDora(big, 'F16', 'F32');
    expect(await mergeError(backend, c.base, c.adapter, 'dora.safetensors')).toMatch(/not finite|overflow/);
    const rows = ones(out);
    rows[5] = 1e6;
    const p = peftDora(rows, 'F16');
    expect(await mergeError(backend, p.base, p.adapter, 'peft-dora')).toMatch(/not finite|overflow/);
    // The same files with magnitudes that fit are merged (the refusals above are about the values).
    const fits = lycorisDora(ones(inF), 'F16', 'F32');
    expect(await mergeError(backend, fits.base, fits.adapter, 'dora.safetensors')).toBeUndefined();
  });
});

describe('the CLI, where a layer this large is merged on its worker threads', () => {
  const dirs = tempDirs();
  afterAll(() => dirs.removeAll());

  it('merges a module whose scale is past float32 on zero products into W\' = W', async () => {
    const key = 'transformer_blocks.0.img_mod.1';
    const stem = `lora_unet_${key.replaceAll('.', '_')}`;
    const rows = 256, cols = 512; // past the worker pool's smallest op
    const w = vals(rows * cols, 'BF16');
    const base = buildSafetensors([{ name: `${key}.weight`, dtype: 'BF16', shape: [rows, cols], data: w }]);
    const up = Array(rows).fill(0);
    up[7] = -1;
    const lora = buildSafetensors([
      { name: `${stem}.lora_down.weight`, dtype: 'F16', shape: [1, cols], data: Array(cols).fill(0) },
      { name: `${stem}.lora_up.weight`, dtype: 'F16', shape: [rows, 1], data: up },
      { name: `${stem}.alpha`, dtype: 'F32', shape: [], data: [3.4e38] },
    ]);
    const dir = dirs.make({ 'qwen_image.safetensors': base, 'lora.safetensors': lora });
    const outPath = join(dir, 'merged.safetensors');
    const r = await runCli(['merge', '--base', join(dir, 'qwen_image.safetensors'), '--adapter', join(dir, 'lora.safetensors'), '--weight', '2.5', '--out', outPath, '--backend', 'cpu']);
    expect(errorLines(r.stderr), r.stderr).toEqual([]);
    expect(r.code).toBe(0);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(outPath))).tensors.get(`${key}.weight`)!;
    expect(merged.values.findIndex((x, i) => x !== w[i])).toBe(-1);
  });

  it('refuses a PEFT DoRA row where W + ΔW is zero with the row named, from its worker threads', async () => {
    const rows = 256, cols = 512, rank = 2; // past the worker pool's smallest op
    const w = vals(rows * cols, 'BF16');
    const up = vals(rows * rank, 'F32');
    // In the first piece of rows, which the first worker thread takes.
    w.fill(0, 10 * cols, 11 * cols);
    up.fill(0, 10 * rank, 11 * rank);
    const peft = 'base_model.model.' + llmKey;
    const dir = dirs.make({
      'model.safetensors': buildSafetensors([{ name: `${llmKey}.weight`, dtype: 'BF16', shape: [rows, cols], data: w }]),
      'dora/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: 4, use_dora: true, target_modules: ['o_proj'] }),
      'dora/adapter_model.safetensors': buildSafetensors([
        { name: `${peft}.lora_A.weight`, dtype: 'F32', shape: [rank, cols], data: vals(rank * cols, 'F32') },
        { name: `${peft}.lora_B.weight`, dtype: 'F32', shape: [rows, rank], data: up },
        { name: `${peft}.lora_magnitude_vector`, dtype: 'F32', shape: [rows], data: ones(rows) },
      ]),
    });
    const outPath = join(dir, 'merged.safetensors');
    const r = await runCli(['merge', '--base', join(dir, 'model.safetensors'), '--adapter', join(dir, 'dora'), '--out', outPath, '--backend', 'cpu']);
    expect(errorLines(r.stderr), r.stderr).toEqual([expect.stringMatching(/^error: tensor "model\.layers\.0\.self_attn\.o_proj\.weight": DoRA norm of output feature 10: W \+ ΔW is zero there/)]);
    expect(r.code).toBe(1);
    expect(existsSync(outPath)).toBe(false);
  });
});
