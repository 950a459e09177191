/**
 * What page tests check a merged download against: W + Σ scale·B·A in float64, rounded once, for
 * PEFT adapters whose module names are `base_model.model.<tensor without .weight>`; and how they
 * take the download a person would click (the `download-link` once it has an href).
 */
import type { Page } from 'puppeteer';
import { expect } from 'vitest';
import { decodeSafetensors, roundForDType, type DecodedTensor, type FixtureDType } from './fixtures.js';

type Decoded = DecodedTensor;

export const readSafetensors = (bytes: Uint8Array): Map<string, Decoded> => decodeSafetensors(bytes).tensors;

/** One PEFT adapter as the test knows it: factors in float64 and the scale w·α/r. */
export interface TruthAdapter { tensors: Map<string, Decoded>; scale: number }

/** W + Σ scale·B·A in float64 for every adapted tensor, rounded once to `dtype`. */
function expectedWeight(name: string, w: Decoded, adapters: TruthAdapter[], dtype: FixtureDType): Float64Array | undefined {
  const module = `base_model.model.${name.replace(/\.weight$/, '')}`;
  const [rows, cols] = w.shape;
  const out = Float64Array.from(w.values);
  let touched = false;
  for (const { tensors, scale } of adapters) {
    const a = tensors.get(`${module}.lora_A.weight`);
    const b = tensors.get(`${module}.lora_B.weight`);
    if (!a || !b) continue;
    touched = true;
    const r = a.shape[0];
    for (let o = 0; o < rows; o++) {
      for (let i = 0; i < cols; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += b.values[o * r + k] * a.values[k * cols + i];
        out[o * cols + i] += scale * s;
      }
    }
  }
  return touched ? out.map((x) => roundForDType(x, dtype)) : undefined;
}

/** Distance in units of the last place of `dtype` at the expected value. */
function ulps(got: number, want: number, dtype: FixtureDType): number {
  if (got === want) return 0;
  const mant = dtype === 'F16' ? 10 : dtype === 'BF16' ? 7 : 23;
  const minExp = dtype === 'F16' ? -14 : -126;
  const e = Math.max(Math.floor(Math.log2(Math.abs(want) || 2 ** minExp)), minExp);
  return Math.abs(got - want) / 2 ** (e - mant);
}

/** Compares every output tensor with the truth: adapted ones within 1 ulp (nearly all exact), others byte-equal. */
export function checkMerged(output: Uint8Array, base: Map<string, Decoded>, adapters: TruthAdapter[], outDtype?: FixtureDType): void {
  const merged = readSafetensors(output);
  expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
  let exact = 0;
  let total = 0;
  for (const [name, w] of base) {
    const got = merged.get(name)!;
    const dtype = outDtype ?? w.dtype;
    expect(got.dtype, name).toBe(dtype);
    expect(got.shape, name).toEqual(w.shape);
    const want = expectedWeight(name, w, adapters, dtype);
    if (!want) {
      if (dtype === w.dtype) expect(got.bytes, name).toEqual(w.bytes);
      else expect(Array.from(got.values), name).toEqual(Array.from(w.values, (x) => roundForDType(x, dtype)));
      continue;
    }
    for (let i = 0; i < want.length; i++) {
      if (dtype === 'F32') {
        // f32 output: within 1e-5 of the values' size (W + ΔW may cancel far below both).
        const size = Math.max(Math.abs(want[i]), Math.abs(w.values[i]));
        if (Math.abs(got.values[i] - want[i]) > 1e-5 * size) expect.fail(`${name}[${i}]: got ${got.values[i]}, want ${want[i]}`);
        if (got.values[i] === want[i]) exact++;
        total++;
        continue;
      }
      const d = ulps(got.values[i], want[i], dtype);
      // Where W + ΔW cancels far below |W|, the f32 accumulation's own error (about 2^-24·|W|) is
      // larger than the output's ulp there: allowed, as long as it stays that small.
      const size = Math.max(Math.abs(want[i]), Math.abs(w.values[i]));
      if (d > 1 && Math.abs(got.values[i] - want[i]) > 2 ** -20 * size) {
        expect.fail(`${name}[${i}]: got ${got.values[i]}, want ${want[i]} (${d} ulps)`);
      }
      if (d === 0) exact++;
      total++;
    }
  }
  // f16/bf16: nearly all correctly rounded; f32 keeps f32 accumulation error, checked above.
  if (outDtype !== 'F32') expect(exact / total).toBeGreaterThan(0.99);
}

export async function downloadBytes(page: Page, testid = 'download-link'): Promise<Uint8Array> {
  await page.waitForFunction((id: string) => !!document.querySelector<HTMLAnchorElement>(`[data-testid="${id}"]`)?.href, { timeout: 90_000 }, testid);
  const base64 = await page.evaluate(async (id) => {
    const link = document.querySelector<HTMLAnchorElement>(`[data-testid="${id}"]`)!;
    const bytes = new Uint8Array(await (await fetch(link.href)).arrayBuffer());
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  }, testid);
  return new Uint8Array(Buffer.from(base64, 'base64'));
}

