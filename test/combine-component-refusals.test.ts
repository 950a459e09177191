/**
 * combine's refusals where an output cannot hold what its inputs update: a PEFT folder names a
 * module by its path alone, so a diffusers SDXL LoRA's two text encoders (text_encoder.… and
 * text_encoder_2.…, both text_model.… below) cannot both be written there; a kohya file can, and
 * its update is checked against float64 math.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { combineAdapters } from '../src/adapter-ops/combine.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import { openAdapter, type ParsedAdapter } from '../src/formats/adapter.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { kohyaFile } from './helpers/adapter-fixtures.js';
import { buildSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { dense, gaussian, product, type Dense, writtenUpdate, relativeError } from './helpers/svd-reference.js';

const temp = tempDirs();
const opened: ParsedAdapter[] = [];
const cpu = new CpuAlgebra();
afterAll(async () => {
  cpu.dispose();
  await Promise.all(opened.map((a) => a.file.source.close()));
  temp.removeAll();
});

interface Factors { path: string; b: Dense; a: Dense }

/**
 * A LoRA as diffusers' StableDiffusionXLLoraLoaderMixin.save_lora_weights writes it
 * (pytorch_lora_weights.safetensors: `unet.`, `text_encoder.`, `text_encoder_2.` before PEFT's
 * `lora_A`/`lora_B`, no alphas: scale 1), of SDXL's real shapes.
 */
function diffusersLora(seed: number, modules: [path: string, out: number, inp: number][]): { bytes: Uint8Array; factors: Factors[] } {
  const rand = seededRandom(seed);
  const r = 4;
  const tensors: FixtureTensor[] = [];
  const factors = modules.map(([path, out, inp]) => {
    const a = dense(r, inp, () => gaussian(rand) * 0.05), b = dense(out, r, () => gaussian(rand) * 0.05);
    tensors.push({ name: `${path}.lora_A.weight`, dtype: 'F32', shape: [r, inp], data: a.data });
    tensors.push({ name: `${path}.lora_B.weight`, dtype: 'F32', shape: [out, r], data: b.data });
    return { path, b, a };
  });
  return { bytes: buildSafetensors(tensors, { format: 'pt' }), factors };
}

async function open(bytes: Uint8Array, name = 'pytorch_lora_weights.safetensors'): Promise<ParsedAdapter> {
  const a = await openAdapter(await openNodeInputFileSet(join(temp.make({ [name]: bytes }), name)));
  opened.push(a);
  return a;
}

const Q1 = 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj';
const Q2 = 'text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj';
const UNET_Q = 'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q';

describe("a diffusers SDXL LoRA's two text encoders and a PEFT folder", () => {
  it('combine to a PEFT folder is refused in one line that says why and names the .safetensors way; a kohya file holds them, exactly', async () => {
    const { bytes, factors } = diffusersLora(71, [[UNET_Q, 640, 640], [Q1, 768, 768], [Q2, 1280, 1280]]);
    const sdxl = await open(bytes);
    const inputs = [{ adapter: sdxl, weight: 0.5 }];
    const err = await combineAdapters(inputs, { method: 'cat', format: 'peft' }, cpu).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/a PEFT folder cannot hold updates for both text_encoder and text_encoder_2: .*"text_model\.encoder\.layers\.0\.self_attn\.q_proj"; write a \.safetensors file instead \(give --out a name ending in \.safetensors\)/);
    expect(err?.message).not.toMatch(/both named/);
    expect(err?.message.split('\n')).toHaveLength(1);
    // The kohya file keeps each component's prefix: lora_unet_, lora_te1_, lora_te2_.
    const kohya = await combineAdapters(inputs, { method: 'cat', format: 'kohya' }, cpu);
    const want: Record<string, Dense> = {};
    for (const f of factors) {
      const name = f.path.startsWith('unet.') ? `lora_unet_${f.path.slice(5).replace(/\./g, '_')}`
        : `lora_${f.path.startsWith('text_encoder_2.') ? 'te2' : 'te1'}_${f.path.replace(/^text_encoder(_2)?\./, '').replace(/\./g, '_')}`;
      const p = product(f.b, f.a);
      want[name] = dense(p.rows, p.cols, (i, j) => 0.5 * p.data[i * p.cols + j]);
    }
    expect(kohya.adapter.modules.map((m) => m.name).sort()).toEqual(Object.keys(want).sort());
    for (const m of kohya.adapter.modules) expect(relativeError(writtenUpdate(m), want[m.name]), m.name).toBeLessThan(1e-6);
  });

  it('two adapters, one per text encoder, to a PEFT folder: the same refusal, not a shape mismatch', async () => {
    const te1 = await open(diffusersLora(72, [[Q1, 768, 768]]).bytes);
    const te2 = await open(diffusersLora(73, [[Q2, 1280, 1280]]).bytes);
    const err = await combineAdapters([{ adapter: te1, weight: 1 }, { adapter: te2, weight: 1 }], { method: 'svd', rank: 4, format: 'peft' }, cpu).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/a PEFT folder cannot hold updates for both text_encoder and text_encoder_2/);
    expect(err?.message).not.toMatch(/update of/);
  });

  it('the UNet and one text encoder still make a PEFT folder (their paths do not meet)', async () => {
    const { bytes, factors } = diffusersLora(74, [[UNET_Q, 640, 640], [Q1, 768, 768]]);
    const out = await combineAdapters([{ adapter: await open(bytes), weight: 2 }], { method: 'cat', format: 'peft' }, cpu);
    expect(out.adapter.modules.map((m) => m.name).sort()).toEqual(factors.map((f) => f.path.replace(/^(unet|text_encoder)\./, '')).sort());
    for (const m of out.adapter.modules) {
      const f = factors.find((x) => x.path.endsWith(m.name))!;
      const p = product(f.b, f.a);
      expect(relativeError(writtenUpdate(m), dense(p.rows, p.cols, (i, j) => 2 * p.data[i * p.cols + j])), m.name).toBeLessThan(1e-6);
    }
  });
});

describe("an SDXL refiner's text encoder LoRA beside an SDXL base one", () => {
  const rand = seededRandom(81);
  const f = (out: number, inp: number, alpha: number) => ({ b: dense(out, 4, () => gaussian(rand) * 0.05), a: dense(4, inp, () => gaussian(rand) * 0.05), alpha });
  /** (α/r)·B·A·w summed, in float64. */
  const target = (parts: { m: { b: Dense; a: Dense; alpha: number }; w: number }[]) => {
    const ps = parts.map(({ m, w }) => ({ p: product(m.b, m.a), s: (w * m.alpha) / m.b.cols }));
    return dense(ps[0].p.rows, ps[0].p.cols, (i, j) => ps.reduce((t, { p, s }) => t + s * p.data[i * p.cols + j], 0));
  };
  // ComfyUI maps `lora_te_` to a refiner's only encoder, its OpenCLIP-G (hidden 1280, MLP 5120);
  // kohya's SDXL LoRAs name the base's CLIP-L `lora_te1_` and its CLIP-G `lora_te2_`.
  const REFINER_Q = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
  const REFINER_FC1 = 'lora_te_text_model_encoder_layers_3_mlp_fc1';
  const BASE_Q = 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj';

  it('combine refuses them in one line naming both modules: a refiner takes only lora_te_ (ComfyUI maps no lora_te2_ there), SDXL base only lora_te2_', async () => {
    const refiner = await open(kohyaFile([{ name: REFINER_Q, ...f(1280, 1280, 4) }, { name: REFINER_FC1, ...f(5120, 1280, 4) }]), 'refiner.safetensors');
    const base = await open(kohyaFile([{ name: BASE_Q, ...f(1280, 1280, 2) }]), 'sdxl.safetensors');
    for (const inputs of [[refiner, base], [base, refiner]]) {
      const err = await combineAdapters(inputs.map((adapter) => ({ adapter, weight: 1 })), { method: 'cat', format: 'kohya' }, cpu).then(() => undefined, (e: Error) => e);
      expect(err?.message).toMatch(/^combine: .*refiner\.safetensors's module "lora_te_text_model_encoder_layers_0_self_attn_q_proj" is a CLIP-G update .*an SDXL refiner.*, but .*sdxl\.safetensors's "lora_te2_text_model_encoder_layers_0_self_attn_q_proj" .*SDXL.*; adapters of different base models cannot be combined into one$/);
    }
  });

  it('two refiner LoRAs combine onto its CLIP-G, and SDXL base ones with a CLIP-L lora_te_ still combine, exactly', async () => {
    const [q1, q2, fc1] = [f(1280, 1280, 4), f(1280, 1280, 8), f(5120, 1280, 2)];
    const r1 = await open(kohyaFile([{ name: REFINER_Q, ...q1 }, { name: REFINER_FC1, ...fc1 }]), 'refiner-a.safetensors');
    const r2 = await open(kohyaFile([{ name: REFINER_Q, ...q2 }]), 'refiner-b.safetensors');
    const out = await combineAdapters([{ adapter: r1, weight: 1 }, { adapter: r2, weight: -0.5 }], { method: 'cat', format: 'kohya' }, cpu);
    const want: Record<string, Dense> = { [REFINER_Q]: target([{ m: q1, w: 1 }, { m: q2, w: -0.5 }]), [REFINER_FC1]: target([{ m: fc1, w: 1 }]) };
    expect(out.adapter.modules.map((m) => m.name)).toEqual(Object.keys(want));
    for (const m of out.adapter.modules) expect(relativeError(writtenUpdate(m), want[m.name]), m.name).toBeLessThan(1e-6);
    // SDXL base: a CLIP-L `lora_te_` (768) beside `lora_te1_` and `lora_te2_`.
    const [l1, l2, g] = [f(768, 768, 4), f(768, 768, 2), f(1280, 1280, 4)];
    const a = await open(kohyaFile([{ name: 'lora_te_text_model_encoder_layers_0_self_attn_q_proj', ...l1 }]), 'sdxl-a.safetensors');
    const b = await open(kohyaFile([{ name: 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', ...l2 }, { name: BASE_Q, ...g }]), 'sdxl-b.safetensors');
    const sdxl = await combineAdapters([{ adapter: a, weight: 1 }, { adapter: b, weight: 2 }], { method: 'cat', format: 'kohya' }, cpu);
    const wantSdxl: Record<string, Dense> = { lora_te_text_model_encoder_layers_0_self_attn_q_proj: target([{ m: l1, w: 1 }, { m: l2, w: 2 }]), [BASE_Q]: target([{ m: g, w: 2 }]) };
    expect(sdxl.adapter.modules.map((m) => m.name)).toEqual(Object.keys(wantSdxl));
    for (const m of sdxl.adapter.modules) expect(relativeError(writtenUpdate(m), wantSdxl[m.name]), m.name).toBeLessThan(1e-6);
  });
});
