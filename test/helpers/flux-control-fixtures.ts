/**
 * BFL's FLUX.1 control LoRAs (flux1-canny-dev-lora.safetensors, flux1-depth-dev-lora.safetensors) and
 * the FLUX.1-dev bases they merge into, small, with their real names, dtypes and ratios: every
 * Linear of FLUX.1-dev with its bias, the q/k norm scales, BFL's single file and diffusers'
 * FluxTransformer2DModel; and the merged model's float64 truth as BFL's loader, diffusers and
 * ComfyUI apply such a file. Nothing here imports the library under test.
 */
import { expect } from 'vitest';
import type { DecodedTensor, FixtureDType, FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';
import { expectMerged } from './expect-merged.js';

export const H = 8, HEAD = 4, IN = 16, TXT = 12, VEC = 10, TIME = 6, R = 4, DOUBLE = 2, SINGLE = 2;

/** Every Linear of FLUX.1-dev in BFL's names, (out, in); all have biases (qkv_bias True). */
export function fluxLinears(): [string, number, number][] {
  const out: [string, number, number][] = [
    ['img_in', H, IN], ['txt_in', H, TXT],
    ['time_in.in_layer', H, TIME], ['time_in.out_layer', H, H],
    ['vector_in.in_layer', H, VEC], ['vector_in.out_layer', H, H],
    ['guidance_in.in_layer', H, TIME], ['guidance_in.out_layer', H, H],
  ];
  for (let i = 0; i < DOUBLE; i++) {
    for (const s of ['img', 'txt']) {
      out.push([`double_blocks.${i}.${s}_mod.lin`, 6 * H, H], [`double_blocks.${i}.${s}_attn.qkv`, 3 * H, H], [`double_blocks.${i}.${s}_attn.proj`, H, H],
        [`double_blocks.${i}.${s}_mlp.0`, 4 * H, H], [`double_blocks.${i}.${s}_mlp.2`, H, 4 * H]);
    }
  }
  for (let i = 0; i < SINGLE; i++) {
    out.push([`single_blocks.${i}.linear1`, 7 * H, H], [`single_blocks.${i}.linear2`, H, 5 * H], [`single_blocks.${i}.modulation.lin`, 3 * H, H]);
  }
  out.push(['final_layer.adaLN_modulation.1', 2 * H, H], ['final_layer.linear', IN, H]);
  return out;
}

export function fluxNorms(): string[] {
  const out: string[] = [];
  for (let i = 0; i < DOUBLE; i++) for (const s of ['img', 'txt']) for (const n of ['query', 'key']) out.push(`double_blocks.${i}.${s}_attn.norm.${n}_norm.scale`);
  for (let i = 0; i < SINGLE; i++) for (const n of ['query', 'key']) out.push(`single_blocks.${i}.norm.${n}_norm.scale`);
  return out;
}

/** flux1-dev.safetensors: weights in `dtype`, biases and norm scales BF16 (as BFL's bf16 file; Comfy-Org's fp8 keeps those BF16). */
export function fluxDevBfl(rand: Rand, dtype: FixtureDType): FixtureTensor[] {
  return [
    ...fluxLinears().flatMap(([m, o, i]) => [tensor(rand, `${m}.weight`, [o, i], dtype), tensor(rand, `${m}.bias`, [o], 'BF16')]),
    ...fluxNorms().map((n) => tensor(rand, n, [HEAD], 'BF16')),
  ];
}

/** BFL name → diffusers FluxTransformer2DModel names and the rows of the BFL tensor each holds (written from diffusers' converter). */
export function diffusersRows(bfl: string, out: number): { key: string; src: number; count: number; dst: number }[] {
  const one = (key: string) => [{ key, src: 0, count: out, dst: 0 }];
  const fixed: Record<string, string> = {
    img_in: 'x_embedder', txt_in: 'context_embedder',
    'time_in.in_layer': 'time_text_embed.timestep_embedder.linear_1', 'time_in.out_layer': 'time_text_embed.timestep_embedder.linear_2',
    'vector_in.in_layer': 'time_text_embed.text_embedder.linear_1', 'vector_in.out_layer': 'time_text_embed.text_embedder.linear_2',
    'guidance_in.in_layer': 'time_text_embed.guidance_embedder.linear_1', 'guidance_in.out_layer': 'time_text_embed.guidance_embedder.linear_2',
    'final_layer.linear': 'proj_out',
  };
  if (fixed[bfl]) return one(fixed[bfl]);
  // BFL's final modulation is (shift, scale), diffusers' norm_out.linear (scale, shift).
  if (bfl === 'final_layer.adaLN_modulation.1') return [{ key: 'norm_out.linear', src: 0, count: H, dst: H }, { key: 'norm_out.linear', src: H, count: H, dst: 0 }];
  let m = /^double_blocks\.(\d+)\.(img|txt)_(mod\.lin|attn\.qkv|attn\.proj|mlp\.0|mlp\.2)$/.exec(bfl);
  if (m) {
    const b = `transformer_blocks.${m[1]}`, img = m[2] === 'img';
    switch (m[3]) {
      case 'mod.lin': return one(`${b}.${img ? 'norm1' : 'norm1_context'}.linear`);
      case 'attn.proj': return one(`${b}.attn.${img ? 'to_out.0' : 'to_add_out'}`);
      case 'mlp.0': return one(`${b}.${img ? 'ff' : 'ff_context'}.net.0.proj`);
      case 'mlp.2': return one(`${b}.${img ? 'ff' : 'ff_context'}.net.2`);
      default: return (img ? ['to_q', 'to_k', 'to_v'] : ['add_q_proj', 'add_k_proj', 'add_v_proj']).map((p, j) => ({ key: `${b}.attn.${p}`, src: j * H, count: H, dst: 0 }));
    }
  }
  m = /^single_blocks\.(\d+)\.(linear1|linear2|modulation\.lin)$/.exec(bfl);
  if (!m) throw new Error(`no diffusers name for ${bfl}`);
  const b = `single_transformer_blocks.${m[1]}`;
  if (m[2] === 'linear2') return one(`${b}.proj_out`);
  if (m[2] === 'modulation.lin') return one(`${b}.norm.linear`);
  return [...['to_q', 'to_k', 'to_v'].map((p, j) => ({ key: `${b}.attn.${p}`, src: j * H, count: H, dst: 0 })), { key: `${b}.proj_mlp`, src: 3 * H, count: 4 * H, dst: 0 }];
}

export function diffusersNorm(bfl: string): string {
  const m = /^(double|single)_blocks\.(\d+)\.(?:(img|txt)_attn\.)?norm\.(query|key)_norm\.scale$/.exec(bfl)!;
  const n = m[4] === 'query' ? 'q' : 'k';
  return m[1] === 'single' ? `single_transformer_blocks.${m[2]}.attn.norm_${n}.weight` : `transformer_blocks.${m[2]}.attn.norm_${m[3] === 'txt' ? 'added_' : ''}${n}.weight`;
}

/** transformer/diffusion_pytorch_model.safetensors of FLUX.1-dev, every tensor BF16. */
export function fluxDevDiffusers(rand: Rand): FixtureTensor[] {
  const out: FixtureTensor[] = [];
  const seen = new Set<string>();
  for (const [m, o, i] of fluxLinears()) {
    for (const t of diffusersRows(m, o)) {
      if (seen.has(t.key)) continue;
      seen.add(t.key);
      const rows = diffusersRows(m, o).filter((x) => x.key === t.key).reduce((n, x) => n + x.count, 0);
      out.push(tensor(rand, `${t.key}.weight`, [rows, i], 'BF16'), tensor(rand, `${t.key}.bias`, [rows], 'BF16'));
    }
  }
  for (const n of fluxNorms()) out.push(tensor(rand, diffusersNorm(n), [HEAD], 'BF16'));
  return out;
}

/** flux1-canny-dev-lora.safetensors: BF16, no α, no metadata; img_in's lora_A twice as wide as the base's img_in. */
export function controlLora(rand: Rand): FixtureTensor[] {
  return [
    ...fluxLinears().flatMap(([m, o, i]) => [
      tensor(rand, `${m}.lora_A.weight`, [R, m === 'img_in' ? 2 * i : i], 'BF16', 0.5),
      tensor(rand, `${m}.lora_B.weight`, [o, R], 'BF16', 0.5),
      tensor(rand, `${m}.lora_B.bias`, [o], 'BF16', 0.5),
    ]),
    ...fluxNorms().map((n) => tensor(rand, n, [HEAD], 'BF16')),
  ];
}

/**
 * The merged model's tensors in float64, by base key: every LoRA's B·A rows (and lora_B.bias) added
 * at weight `w` where `rowsOf` puts them, img_in's base zero-padded to the LoRA's width first, the
 * norm scales taken from the LoRA as they are.
 */
export function truth(
  base: Map<string, DecodedTensor>, lora: Map<string, DecodedTensor>, w: number,
  rowsOf: (bfl: string, out: number) => { key: string; src: number; count: number; dst: number }[], normOf: (bfl: string) => string,
): Map<string, { shape: number[]; values: Float64Array }> {
  const out = new Map<string, { shape: number[]; values: Float64Array }>();
  for (const [bfl, o, inBase] of fluxLinears()) {
    const a = lora.get(`${bfl}.lora_A.weight`)!, b = lora.get(`${bfl}.lora_B.weight`)!.values, bias = lora.get(`${bfl}.lora_B.bias`)!.values;
    const cols = a.shape[1];
    for (const t of rowsOf(bfl, o)) {
      const weightKey = [...base.keys()].find((k) => k === `${t.key}.weight`)!;
      let cur = out.get(weightKey);
      if (!cur) {
        const w0 = base.get(weightKey)!;
        const values = new Float64Array(w0.shape[0] * cols);
        for (let r = 0; r < w0.shape[0]; r++) for (let c = 0; c < inBase; c++) values[r * cols + c] = w0.values[r * inBase + c];
        out.set(weightKey, (cur = { shape: [w0.shape[0], cols], values }));
        out.set(`${t.key}.bias`, { shape: [w0.shape[0]], values: base.get(`${t.key}.bias`)!.values.slice() });
      }
      const biasOut = out.get(`${t.key}.bias`)!.values;
      for (let r = 0; r < t.count; r++) {
        for (let c = 0; c < cols; c++) {
          let sum = 0;
          for (let k = 0; k < R; k++) sum += b[(t.src + r) * R + k] * a.values[k * cols + c];
          cur.values[(t.dst + r) * cols + c] += w * sum;
        }
        biasOut[t.dst + r] += w * bias[t.src + r];
      }
    }
  }
  for (const n of fluxNorms()) out.set(normOf(n), { shape: [HEAD], values: lora.get(n)!.values.slice() });
  return out;
}

export function expectAll(merged: Map<string, DecodedTensor>, base: Map<string, DecodedTensor>, want: Map<string, { shape: number[]; values: Float64Array }>): void {
  expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
  for (const [key, b] of base) {
    const got = merged.get(key)!, t = want.get(key);
    expect(got.dtype, key).toBe(b.dtype);
    expect(t, `${key} has a truth (every tensor of FLUX.1-dev changes)`).toBeDefined();
    expect(got.shape, key).toEqual(t!.shape);
    expectMerged(got.values, t!.values, got.dtype as FixtureDType, key);
  }
}

/** Each BFL module on itself (a BFL-named base). */
export const identity = (bfl: string, out: number) => [{ key: bfl, src: 0, count: out, dst: 0 }];

/**
 * A control LoRA in diffusers' own names, as examples/flux-control/train_control_lora_flux.py saves it
 * (FluxControlPipeline.save_lora_weights of get_peft_model_state_dict): `transformer.<module>.lora_A.weight`
 * on every Linear of FluxTransformer2DModel, F32 (PEFT keeps adapter weights in float32),
 * `lora_B.bias` with --use_lora_bias, x_embedder's lora_A twice the base's in_channels; with
 * --train_norm_layers the q/k norms (BF16, the model's dtype) under `normPrefix` + their diffusers names.
 */
export function diffusersControlLora(rand: Rand, opts: { bias?: boolean; normPrefix?: string } = {}): FixtureTensor[] {
  const out: FixtureTensor[] = [];
  for (const t of fluxDevDiffusers(rand)) {
    if (!t.name.endsWith('.weight') || t.shape.length !== 2) continue;
    const m = t.name.slice(0, -'.weight'.length);
    const [o, i] = t.shape;
    out.push(tensor(rand, `transformer.${m}.lora_A.weight`, [R, m === 'x_embedder' ? 2 * i : i], 'F32', 0.5), tensor(rand, `transformer.${m}.lora_B.weight`, [o, R], 'F32', 0.5));
    if (opts.bias) out.push(tensor(rand, `transformer.${m}.lora_B.bias`, [o], 'F32', 0.5));
  }
  if (opts.normPrefix !== undefined) for (const n of fluxNorms()) out.push(tensor(rand, `${opts.normPrefix}${diffusersNorm(n)}`, [HEAD], 'BF16'));
  return out;
}
