/**
 * combine of an SDXL refiner UNet LoRA and an SDXL base one: kohya names both UNets alike
 * (`lora_unet_input_blocks_…`, sgm's naming), so only their widths tell them apart: the refiner's
 * model_channels 384 (blocks of 384, 768 and 1536 channels, cross-attention from CLIP-G's 1280)
 * against SDXL base's 320 (320, 640, 1280, cross-attention from 2048). Modules on blocks only one
 * of them touches share no name, and were written into one file no model loads whole.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { combineAdapters } from '../src/adapter-ops/combine.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import { openAdapter, type ParsedAdapter } from '../src/formats/adapter.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { kohyaFile } from './helpers/adapter-fixtures.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { dense, gaussian, product, type Dense, relativeError, writtenUpdate } from './helpers/svd-reference.js';

const temp = tempDirs();
const opened: ParsedAdapter[] = [];
const cpu = new CpuAlgebra();
afterAll(async () => {
  cpu.dispose();
  await Promise.all(opened.map((a) => a.file.source.close()));
  temp.removeAll();
});

async function open(bytes: Uint8Array, name: string): Promise<ParsedAdapter> {
  const a = await openAdapter(await openNodeInputFileSet(join(temp.make({ [name]: bytes }), name)));
  opened.push(a);
  return a;
}

const rand = seededRandom(384);
const f = (out: number, inp: number, alpha: number) => ({ b: dense(out, 4, () => gaussian(rand) * 0.05), a: dense(4, inp, () => gaussian(rand) * 0.05), alpha });

/** Σ w·(α/r)·B·A, in float64. */
function target(parts: { m: { b: Dense; a: Dense; alpha: number }; w: number }[]): Dense {
  const ps = parts.map(({ m, w }) => ({ p: product(m.b, m.a), s: (w * m.alpha) / m.b.cols }));
  return dense(ps[0].p.rows, ps[0].p.cols, (i, j) => ps.reduce((t, { p, s }) => t + s * p.data[i * p.cols + j], 0));
}

// The refiner: input_blocks.4 and .7 hold its 768- and 1536-channel attention (to_k from CLIP-G's 1280).
const REFINER_Q = 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q';
const REFINER_K = 'lora_unet_input_blocks_7_1_transformer_blocks_0_attn2_to_k';
// SDXL base: output_blocks.0's 1280-channel attention (to_k from 2048), which the refiner LoRA does not touch.
const BASE_Q = 'lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_q';
const BASE_K = 'lora_unet_output_blocks_0_1_transformer_blocks_0_attn2_to_k';

const combine = (inputs: ParsedAdapter[], weights = inputs.map(() => 1)) =>
  combineAdapters(inputs.map((adapter, i) => ({ adapter, weight: weights[i] })), { method: 'cat', format: 'kohya' }, cpu);

describe("an SDXL refiner's UNet LoRA beside an SDXL base one", () => {
  it('combine refuses them in one line naming both adapters and a module of each, whichever comes first', async () => {
    const refiner = await open(kohyaFile([{ name: REFINER_Q, ...f(768, 768, 4) }, { name: REFINER_K, ...f(1536, 1280, 4) }]), 'refiner.safetensors');
    const base = await open(kohyaFile([{ name: BASE_Q, ...f(1280, 1280, 2) }, { name: BASE_K, ...f(1280, 2048, 2) }]), 'sdxl.safetensors');
    const messages: string[] = [];
    for (const inputs of [[refiner, base], [base, refiner]]) {
      const err = await combine(inputs).then(() => undefined, (e: Error) => e);
      expect(err?.message.split('\n')).toHaveLength(1);
      // The adapters' names are their paths; the folders are temporary.
      messages.push(err!.message.replace(/\S*\/(?=[\w-]+\.safetensors's)/g, ''));
    }
    const refinerSaid = 'refiner.safetensors\'s UNet modules are an SDXL refiner\'s (model channels 384: "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" updates a weight of 768 outputs)';
    const baseSaid = 'sdxl.safetensors\'s UNet modules are SDXL base\'s or SD1/SD2\'s (model channels 320: "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_q" updates a weight of 1280 outputs)';
    const tail = '; adapters of different base models cannot be combined into one';
    expect(messages).toEqual([`combine: ${refinerSaid}, but ${baseSaid}${tail}`, `combine: ${baseSaid}, but ${refinerSaid}${tail}`]);
  });

  it('two refiner UNet LoRAs still combine, and two SDXL base ones, exactly', async () => {
    const [q1, q2, k1] = [f(768, 768, 4), f(768, 768, 8), f(1536, 1280, 2)];
    const r1 = await open(kohyaFile([{ name: REFINER_Q, ...q1 }, { name: REFINER_K, ...k1 }]), 'refiner-a.safetensors');
    const r2 = await open(kohyaFile([{ name: REFINER_Q, ...q2 }]), 'refiner-b.safetensors');
    const refined = await combine([r1, r2], [1, -0.5]);
    const want: Record<string, Dense> = { [REFINER_Q]: target([{ m: q1, w: 1 }, { m: q2, w: -0.5 }]), [REFINER_K]: target([{ m: k1, w: 1 }]) };
    expect(refined.adapter.modules.map((m) => m.name)).toEqual(Object.keys(want));
    for (const m of refined.adapter.modules) expect(relativeError(writtenUpdate(m), want[m.name]), m.name).toBeLessThan(1e-6);

    const [bq, bk] = [f(1280, 1280, 4), f(1280, 2048, 2)];
    const b1 = await open(kohyaFile([{ name: BASE_Q, ...bq }]), 'sdxl-a.safetensors');
    const b2 = await open(kohyaFile([{ name: BASE_K, ...bk }]), 'sdxl-b.safetensors');
    const based = await combine([b1, b2], [1, 2]);
    const wantBase: Record<string, Dense> = { [BASE_Q]: target([{ m: bq, w: 1 }]), [BASE_K]: target([{ m: bk, w: 2 }]) };
    expect(based.adapter.modules.map((m) => m.name)).toEqual(Object.keys(wantBase));
    for (const m of based.adapter.modules) expect(relativeError(writtenUpdate(m), wantBase[m.name]), m.name).toBeLessThan(1e-6);
  });
});
