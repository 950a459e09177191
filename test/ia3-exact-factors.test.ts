/**
 * (IA)³ factors are computed, not read: LyCORIS's 1 + s·w, PEFT's vector l (merged as 1 + s·(l − 1)),
 * the bias's too. Each is carried in float64, so the merged weight is W·factor rounded once. Rounded
 * to f32 first, the factor moved these elements across a rounding tie of f16: the values below were
 * found that way (the LyCORIS one by the fuzz), and the truth is float64 math written out here, each
 * exact result checked to lie far (in float64 terms) from the tie it is near.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, roundForDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });
const f32 = Math.fround;

/** The f16 neighbours of x and x's distance from their midpoint, relative to x. */
function tieMargin(x: number): number {
  const a = roundForDType(x, 'F16');
  const ulp = 2 ** (Math.floor(Math.log2(Math.abs(a))) - 10);
  const mid = x > a ? a + ulp / 2 : a - ulp / 2;
  return Math.abs(x - mid) / Math.abs(x);
}

describe.each(['cpu', 'webgpu'])('(IA)³ factors in float64, %s', (name) => {
  it('LyCORIS (kohya file), per output channel, weight 2.5: W·(1 + 2.5·w) rounded once to f16', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const w = [0, 0, f32(0.0237862729), f32(0.160714284), f32(-0.0000218451023), f32(-0.01116071455180645)];
    const wRow5 = [0.005126953125, 0.25, -0.5, 0.0001220703125, 0.75, -0.125, 1.5, -2];
    const W = Array.from({ length: 48 }, (_, i) => (Math.floor(i / 8) === 5 ? wRow5[i % 8] : roundForDType(((i * 37) % 23) / 23 - 0.5, 'F16')));
    const key = 'down_blocks.0.attentions.0.proj_in';
    const base: FixtureTensor[] = [
      { name: `${key}.weight`, dtype: 'F16', shape: [6, 8], data: W },
      { name: 'mid_block.attentions.0.proj_out.weight', dtype: 'F16', shape: [8, 6], data: new Array(48).fill(0.25) },
      { name: 'conv_in.bias', dtype: 'F16', shape: [4], data: [0, 0, 0, 0] },
    ];
    const k = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const adapter: FixtureTensor[] = [
      { name: `${k}.weight`, dtype: 'F32', shape: [6], data: w },
      { name: `${k}.on_input`, dtype: 'I64', shape: [], data: [0] },
    ];
    const { tensors } = await mergeInMemory({
      backend,
      base: { 'base.safetensors': buildSafetensors(base) },
      adapters: [{ files: { 'lycoris.safetensors': buildSafetensors(adapter) }, weight: 2.5 }],
    });
    const exact = W.map((x, i) => x * (1 + 2.5 * w[Math.floor(i / 8)]));
    // Element 40 (row 5, column 0): 0.0049839019741284…, 1.8e-9 below the tie of 0.00498199… and 0.00498581…
    expect(tieMargin(exact[40])).toBeGreaterThan(1e-10);
    expect(roundForDType(exact[40], 'F16')).toBe(0.00498199462890625);
    expect(Array.from(tensors.get(`${key}.weight`)!.values)).toEqual(exact.map((x) => roundForDType(x, 'F16')));
  });

  it('PEFT, vectors below 1/2 (l − 1 is no f32 value there), on the weight and its bias', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const q = 'model.layers.0.self_attn.q_proj';
    // Rows: each W value with its l (found so that W·l lies near an f16 tie).
    const rows: [number, number][] = [[0.79833984375, f32(0.14973242580890656)], [0.95166015625, f32(0.3048999607563019)], [0.70849609375, f32(0.17569778859615326)], [0.5, f32(0.25)]];
    const W = rows.flatMap(([x]) => [x, x / 2, -x]);
    const l = rows.map(([, v]) => v);
    const bias = rows.map(([x]) => x);
    const base: FixtureTensor[] = [
      { name: `${q}.weight`, dtype: 'F16', shape: [4, 3], data: W },
      { name: `${q}.bias`, dtype: 'F16', shape: [4], data: bias },
    ];
    const { tensors } = await mergeInMemory({
      backend,
      base: { 'model.safetensors': buildSafetensors(base) },
      adapters: [{
        files: {
          'adapter_config.json': JSON.stringify({ peft_type: 'IA3', target_modules: ['q_proj'], feedforward_modules: [] }),
          'adapter_model.safetensors': buildSafetensors([{ name: `base_model.model.${q}.ia3_l`, dtype: 'F32', shape: [4, 1], data: l }]),
        },
      }],
    });
    const exactW = W.map((x, i) => x * l[Math.floor(i / 3)]);
    const exactBias = bias.map((x, o) => x * l[o]);
    for (const o of [0, 1, 2]) expect(tieMargin(exactW[o * 3])).toBeGreaterThan(1e-10);
    expect(roundForDType(exactW[0], 'F16')).toBe(0.11956787109375);
    expect(Array.from(tensors.get(`${q}.weight`)!.values)).toEqual(exactW.map((x) => roundForDType(x, 'F16')));
    expect(Array.from(tensors.get(`${q}.bias`)!.values)).toEqual(exactBias.map((x) => roundForDType(x, 'F16')));
  });
});
