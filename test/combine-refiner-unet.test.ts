/**
 * combine of an SDXL refiner UNet LoRA and an SDXL base one: kohya names both UNets alike
 * (`lora_unet_input_blocks_…`, sgm's naming), so only their widths tell them apart: the refiner's
 * model_channels 384 (blocks of 384, 768 and 1536 channels, cross-attention from CLIP-G's 1280)
 * against SDXL base's 320 (320, 640, 1280, cross-attention from 2048). Modules on blocks only one
 * of them touches share no name, and were written into one file no model loads whole. An adapter
 * whose UNet modules show both widths (a file already mixing the two) says neither, whichever of
 * its modules comes first, and is left to the other checks. The refiner's CLIP-G as its checkpoint
 * names it (sd_xl_refiner_1.0.safetensors' `conditioner.embedders.0.model.`, open_clip's names) is
 * its first encoder: one module with kohya's `lora_te_`, and refused beside SDXL base's `lora_te2_`.
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

describe('an adapter whose UNet modules show both widths', () => {
  // SDXL base's input_blocks.4 is 640 wide (the refiner's is 768); its output_blocks.0 1280.
  const BASE_640 = 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q';

  it('is neither a refiner\'s nor SDXL base\'s, whichever width its first module has: it combines beside either, exactly', async () => {
    // A base width first, then a refiner's, beside a refiner LoRA.
    const [q640, k1, k2] = [f(640, 640, 4), f(1536, 1280, 4), f(1536, 1280, 2)];
    const mixedBaseFirst = await open(kohyaFile([{ name: BASE_640, ...q640 }, { name: REFINER_K, ...k1 }]), 'mixed-a.safetensors');
    const refiner = await open(kohyaFile([{ name: REFINER_K, ...k2 }]), 'refiner.safetensors');
    for (const [inputs, weights] of [[[mixedBaseFirst, refiner], [1, 0.5]], [[refiner, mixedBaseFirst], [0.5, 1]]] as const) {
      const out = await combine([...inputs], [...weights]);
      const want: Record<string, Dense> = { [BASE_640]: target([{ m: q640, w: 1 }]), [REFINER_K]: target([{ m: k1, w: 1 }, { m: k2, w: 0.5 }]) };
      expect(out.adapter.modules.map((m) => m.name).sort()).toEqual(Object.keys(want).sort());
      for (const m of out.adapter.modules) expect(relativeError(writtenUpdate(m), want[m.name]), m.name).toBeLessThan(1e-6);
    }
    // A refiner width first, then a base's, beside an SDXL base LoRA.
    const [q768, bq1, bq2] = [f(768, 768, 4), f(1280, 1280, 4), f(1280, 1280, 8)];
    const mixedRefinerFirst = await open(kohyaFile([{ name: REFINER_Q, ...q768 }, { name: BASE_Q, ...bq1 }]), 'mixed-b.safetensors');
    const base = await open(kohyaFile([{ name: BASE_Q, ...bq2 }]), 'sdxl.safetensors');
    for (const [inputs, weights] of [[[mixedRefinerFirst, base], [1, -1]], [[base, mixedRefinerFirst], [-1, 1]]] as const) {
      const out = await combine([...inputs], [...weights]);
      const want: Record<string, Dense> = { [REFINER_Q]: target([{ m: q768, w: 1 }]), [BASE_Q]: target([{ m: bq1, w: 1 }, { m: bq2, w: -1 }]) };
      expect(out.adapter.modules.map((m) => m.name).sort()).toEqual(Object.keys(want).sort());
      for (const m of out.adapter.modules) expect(relativeError(writtenUpdate(m), want[m.name]), m.name).toBeLessThan(1e-6);
    }
  });
});

describe("the SDXL refiner's CLIP-G as its checkpoint names it (conditioner.embedders.0.model., open_clip's names)", () => {
  // sd_xl_refiner_1.0.safetensors: OpenCLIP-G (hidden 1280, MLP 5120) alone, as embedders.0; its
  // resblocks' c_fc is transformers' fc1 row for row, and ComfyUI maps lora_te_ there.
  const SGM_FC1 = 'conditioner.embedders.0.model.transformer.resblocks.3.mlp.c_fc';
  const KOHYA_FC1 = 'lora_te_text_model_encoder_layers_3_mlp_fc1';

  it('is one module with kohya\'s lora_te_ of the same layer, exactly', async () => {
    const [sgm, kohya] = [f(5120, 1280, 4), f(5120, 1280, 2)];
    const a = await open(kohyaFile([{ name: SGM_FC1, ...sgm }]), 'refiner-sgm.safetensors');
    const b = await open(kohyaFile([{ name: KOHYA_FC1, ...kohya }]), 'refiner-kohya.safetensors');
    const out = await combine([b, a], [1, 0.25]);
    expect(out.adapter.modules.map((m) => m.name)).toEqual([KOHYA_FC1]);
    expect(relativeError(writtenUpdate(out.adapter.modules[0]), target([{ m: kohya, w: 1 }, { m: sgm, w: 0.25 }]))).toBeLessThan(1e-6);
  });

  it('is refused beside an SDXL base LoRA\'s lora_te2_ (its CLIP-G as SDXL\'s second encoder), in one line naming both modules', async () => {
    const refiner = await open(kohyaFile([{ name: SGM_FC1, ...f(5120, 1280, 4) }]), 'refiner-sgm.safetensors');
    const base = await open(kohyaFile([{ name: 'lora_te2_text_model_encoder_layers_3_mlp_fc1', ...f(5120, 1280, 4) }]), 'sdxl.safetensors');
    for (const inputs of [[refiner, base], [base, refiner]]) {
      const err = await combine(inputs).then(() => undefined, (e: Error) => e);
      expect(err?.message.split('\n')).toHaveLength(1);
      expect(err?.message).toMatch(/^combine: \S*refiner-sgm\.safetensors's module "conditioner\.embedders\.0\.model\.transformer\.resblocks\.3\.mlp\.c_fc" is a CLIP-G update named as its model's first text encoder \(an SDXL refiner's or Stable Cascade's\), but \S*sdxl\.safetensors's "lora_te2_text_model_encoder_layers_3_mlp_fc1" names SDXL's second encoder; .*adapters of different base models cannot be combined into one$/);
    }
  });
});
