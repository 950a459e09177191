/**
 * spacepxl's Wan 2.1 control LoRA and the Wan single file it merges onto, with float64 truth
 * (wan-control-reshape.test.ts and the page's test share them; see there for the rule).
 */
import { expect } from 'vitest';
import { WAN, tensor, wanOriginalTensors } from './diffusion-fixtures.js';
import { expectMerged } from './expect-merged.js';
import type { DecodedTensor, FixtureTensor } from './fixtures.js';

type Rand = () => number;

const { dim, ffn } = WAN;
export const D = 'diffusion_model.';
/** The LoRA's rank. */
export const R = 2;
/** The kernel's t·h·w: Wan's patch (1, 2, 2). */
export const K = 4;

/** Wan 2.1 T2V in Wan's own naming (Comfy-Org's wan2.1_t2v_1.3B_bf16.safetensors): no image parts; the Conv3d patch embedding. */
export function wanT2v(rand: Rand): FixtureTensor[] {
  const i2v = /img_emb|k_img|v_img/;
  return [
    ...wanOriginalTensors(rand, 'BF16').filter((t) => !i2v.test(t.name)),
    tensor(rand, 'patch_embedding.weight', [dim, 16, 1, 2, 2], 'BF16'), tensor(rand, 'patch_embedding.bias', [dim], 'F32'),
  ];
}

/** The LoRA's `reshape_weight`: ComfyUI pads patch_embedding to (dim, channels, 1, 2, 2). */
export const reshape = (channels: number): FixtureTensor => ({ name: `${D}patch_embedding.reshape_weight`, dtype: 'I64', shape: [5], data: [dim, channels, 1, 2, 2] });

/** The control LoRA: patch_embedding at `channels` inputs with its reshape_weight, and Linears of block 0 (one with α). */
export function controlLora(rand: Rand, channels: number): FixtureTensor[] {
  const f32 = (name: string, shape: number[]) => tensor(rand, name, shape, 'F32', 0.5);
  return [
    f32(`${D}patch_embedding.lora_A.weight`, [R, channels, 1, 2, 2]), f32(`${D}patch_embedding.lora_B.weight`, [dim, R, 1, 1, 1]),
    reshape(channels),
    f32(`${D}blocks.0.self_attn.q.lora_A.weight`, [R, dim]), f32(`${D}blocks.0.self_attn.q.lora_B.weight`, [dim, R]),
    f32(`${D}blocks.0.ffn.0.lora_A.weight`, [R, dim]), f32(`${D}blocks.0.ffn.0.lora_B.weight`, [ffn, R]),
    { name: `${D}blocks.0.ffn.0.alpha`, dtype: 'F32', shape: [], data: [1] },
  ];
}

/** B (out × r) · A (r × cols), plainly. */
export function product(b: ArrayLike<number>, a: ArrayLike<number>, out: number, r: number): Float64Array {
  const cols = a.length / r;
  const result = new Float64Array(out * cols);
  for (let o = 0; o < out; o++) for (let c = 0; c < cols; c++) {
    let sum = 0;
    for (let k = 0; k < r; k++) sum += b[o * r + k] * a[k * cols + c];
    result[o * cols + c] = sum;
  }
  return result;
}

/**
 * The merged tensors as float64: the patch embedding padded to `channels` input channels (the
 * base's 16 first in each row's channels, zeros after, each channel its kernel's K values), then
 * w·B·A; the Linears W + w·(α/r)·B·A; `diffB` adds w·diff_b to the bias; the rest unchanged.
 */
export function truth(base: Map<string, DecodedTensor>, lora: Map<string, DecodedTensor>, w: number, channels: number, prefix = ''): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const [k, t] of base) out.set(k, Float64Array.from(t.values));
  const delta = (m: string, rows: number) => product(lora.get(`${D}${m}.lora_B.weight`)!.values, lora.get(`${D}${m}.lora_A.weight`)!.values, rows, R);
  const w0 = base.get(`${prefix}patch_embedding.weight`)!.values;
  const padded = new Float64Array(dim * channels * K);
  for (let o = 0; o < dim; o++) for (let i = 0; i < 16 * K; i++) padded[o * channels * K + i] = w0[o * 16 * K + i];
  const patch = delta('patch_embedding', dim);
  out.set(`${prefix}patch_embedding.weight`, padded.map((x, i) => x + w * patch[i]));
  const q = delta('blocks.0.self_attn.q', dim);
  out.set(`${prefix}blocks.0.self_attn.q.weight`, out.get(`${prefix}blocks.0.self_attn.q.weight`)!.map((x, i) => x + w * q[i]));
  const f = delta('blocks.0.ffn.0', ffn);
  out.set(`${prefix}blocks.0.ffn.0.weight`, out.get(`${prefix}blocks.0.ffn.0.weight`)!.map((x, i) => x + w * (1 / R) * f[i]));
  const diffB = lora.get(`${D}patch_embedding.diff_b`);
  if (diffB) out.set(`${prefix}patch_embedding.bias`, out.get(`${prefix}patch_embedding.bias`)!.map((x, i) => x + w * diffB.values[i]));
  return out;
}

/** Every tensor of the merged file: the base's names, the patch embedding at its new shape, values against the truth. */
export function expectAll(merged: Map<string, DecodedTensor>, base: Map<string, DecodedTensor>, want: Map<string, Float64Array>, channels: number, prefix = ''): void {
  expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
  expect(merged.get(`${prefix}patch_embedding.weight`)!.shape).toEqual([dim, channels, 1, 2, 2]);
  expect(merged.get(`${prefix}patch_embedding.bias`)!.shape).toEqual([dim]);
  for (const [key, b] of base) {
    const got = merged.get(key)!;
    expect(got.dtype, key).toBe(b.dtype);
    if (key !== `${prefix}patch_embedding.weight`) expect(got.shape, key).toEqual(b.shape);
    expectMerged(got.values, want.get(key)!, b.dtype as 'BF16' | 'F32', key);
  }
}

/** Comfy-Org's repackaged 1.3B T2V file. */
export const WAN_FILE = 'wan2.1_t2v_1.3B_bf16.safetensors';
/** spacepxl's tile control LoRA, ComfyUI form. */
export const LORA_FILE = 'wan2.1-1.3b-control-lora-tile-v0.2_comfy.safetensors';
