/**
 * spacepxl's Wan 2.1 control LoRAs (spacepxl/Wan2.1-control-loras, `wan2.1-1.3b-control-lora-tile-v0.2_comfy.safetensors`):
 * `diffusion_model.` + Wan's names, `lora_A`/`lora_B` on every Linear of the blocks and on the Conv3d
 * `patch_embedding` ((r, 32, 1, 2, 2) and (dim, r, 1, 1, 1)), and `diffusion_model.patch_embedding.reshape_weight`,
 * an I64 list (dim, 32, 1, 2, 2): the control latents are concatenated to the 16 noise channels.
 * ComfyUI (comfy/weight_adapter/lora.py, base.py pad_tensor_to_shape) pads the base weight with
 * zeros at the end of each dimension to that shape, then adds strength·α/r·B·A; the bias keeps its
 * size; its model detection reads Wan's in_dim from patch_embedding.weight's dim 1, so the merged
 * single file is the model ComfyUI ran. Truth is float64, written out below; CPU and WebGPU.
 * Dims scaled down (dim 1536 → 8, ffn 8960 → 20, text 4096 → 12, freq 256 → 6), names and layouts real.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarizePlan } from '../demo/plan-summary.js';
import { memoryInputFileSet } from '../src/index.js';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { WAN, tensor, wanDiffusersTensors } from './helpers/diffusion-fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { fluxDevBfl, H as FLUX_H, IN as FLUX_IN } from './helpers/flux-control-fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorValues, typeName, type MetaValue } from './helpers/gguf-builder.js';
import { mergeBackends, mergeFileInMemory, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';

import * as wan from './helpers/wan-control-fixtures.js';
import { D, K, LORA_FILE, R, WAN_FILE, expectAll, product, reshape, truth } from './helpers/wan-control-fixtures.js';

const rand = seededRandom(20261205);
const { dim } = WAN;
const wanT2v = () => wan.wanT2v(rand);
const controlLora = (channels: number) => wan.controlLora(rand, channels);

const backends = mergeBackends({ cpu: 'default' });

describe('a Wan control LoRA with reshape_weight on a Wan single file', () => {
  const baseBytes = buildSafetensors(wanT2v(), { format: 'pt' });
  const base = decodeSafetensors(baseBytes).tensors;
  const loraBytes = buildSafetensors([...controlLora(32), tensor(rand, `${D}patch_embedding.diff_b`, [dim], 'F32', 0.5)]);
  const lora = decodeSafetensors(loraBytes).tensors;
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`pads patch_embedding (${dim}, 16, 1, 2, 2) to (${dim}, 32, 1, 2, 2) with zeros, then adds the update; the bias keeps its size, on ${kind}`, async () => {
      const { tensors } = await mergeInMemory({ backend: backends[kind]!, base: { [WAN_FILE]: baseBytes }, adapters: [{ files: { [LORA_FILE]: loraBytes }, weight: 0.8 }] });
      expectAll(tensors, base, truth(base, lora, 0.8, 32), 32);
    });
  }

  it('the 14B checkpoint form (`model.diffusion_model.` names) widened to 48 channels, weight −0.5: the padding does not depend on the weight', async () => {
    const P = 'model.diffusion_model.';
    const prefixedBytes = buildSafetensors(wanT2v().map((t) => ({ ...t, name: P + t.name })), { format: 'pt' });
    const prefixed = decodeSafetensors(prefixedBytes).tensors;
    const wide = buildSafetensors(controlLora(48));
    const { tensors } = await mergeInMemory({ backend: backends.cpu!, base: { 'wan2.1_t2v_14B_bf16.safetensors': prefixedBytes }, adapters: [{ files: { [LORA_FILE]: wide }, weight: -0.5 }] });
    expectAll(tensors, prefixed, truth(prefixed, decodeSafetensors(wide).tensors, -0.5, 48, P), 48, P);
  });

  it('a reshape to the base\'s own shape (a base already widened) pads nothing: the LoRA is added as it is', async () => {
    const wideBase = wanT2v().map((t) => t.name === 'patch_embedding.weight' ? tensor(rand, t.name, [dim, 32, 1, 2, 2], 'BF16') : t);
    const bytes = buildSafetensors(wideBase, { format: 'pt' });
    const wideDecoded = decodeSafetensors(bytes).tensors;
    const loraBytes = buildSafetensors(controlLora(32));
    const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { [WAN_FILE]: bytes }, adapters: [{ files: { [LORA_FILE]: loraBytes } }] });
    expect(warnings).toEqual([]);
    const lora = decodeSafetensors(loraBytes).tensors;
    const delta = product(lora.get(`${D}patch_embedding.lora_B.weight`)!.values, lora.get(`${D}patch_embedding.lora_A.weight`)!.values, dim, R);
    const got = tensors.get('patch_embedding.weight')!;
    expect(got.shape).toEqual([dim, 32, 1, 2, 2]);
    expectMerged(got.values, Float64Array.from(wideDecoded.get('patch_embedding.weight')!.values, (x, i) => x + delta[i]), 'BF16', 'patch_embedding.weight');
  });

  it('weight 0 still pads, as ComfyUI pads before it scales the update, and the warning says so', async () => {
    const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { [WAN_FILE]: baseBytes }, adapters: [{ files: { [LORA_FILE]: loraBytes }, weight: 0 }] });
    expectAll(tensors, base, truth(base, lora, 0, 32), 32);
    expect(warnings).toEqual([`adapter0: weight 0 changes no values; its tensors are written unchanged except that the base weights of "${D}patch_embedding" are still zero-padded to the adapter's width, as its loader pads them before the update (was another weight meant?)`]);
  });

  it('two adapters with the same reshape both add at the new shape', async () => {
    const first = buildSafetensors(controlLora(32)), second = buildSafetensors(controlLora(32));
    const { tensors } = await mergeInMemory({ backend: backends.cpu!, base: { [WAN_FILE]: baseBytes }, adapters: [{ files: { 'a.safetensors': first } }, { files: { 'b.safetensors': second }, weight: 0.5 }] });
    const one = truth(base, decodeSafetensors(first).tensors, 1, 32);
    const two = truth(base, decodeSafetensors(second).tensors, 0.5, 32);
    const padded = truth(base, decodeSafetensors(first).tensors, 0, 32).get('patch_embedding.weight')!;
    const want = padded.map((x, i) => x + (one.get('patch_embedding.weight')![i] - x) + (two.get('patch_embedding.weight')![i] - x));
    expectMerged(tensors.get('patch_embedding.weight')!.values, want, 'BF16', 'patch_embedding.weight');
  });

  it('the page\'s plan says the tensor is written wider, and lists the module as a LoRA on patch_embedding', async () => {
    const summary = await summarizePlan(memoryInputFileSet({ [WAN_FILE]: baseBytes }, WAN_FILE), [
      { files: memoryInputFileSet({ [LORA_FILE]: loraBytes }, LORA_FILE), weight: 1 },
    ]);
    expect(summary.mergeable).toBe(true);
    expect(summary.notes).toContainEqual(`patch_embedding.weight is written (${dim}, 32, 1, 2, 2), 16 zero input channels added to the base's 16 before the adapter's update (ComfyUI's reshape_weight): the merged model takes 32 input channels where the base took 16, as ComfyUI reads them from this tensor`);
    expect(summary.modules.find((m) => m.module === `${D}patch_embedding`)).toMatchObject({ target: 'patch_embedding.weight', rank: R });
  });
});

/**
 * ComfyUI-GGUF's Wan files (wan2.1-t2v-1.3b-Q8_0.gguf): `general.architecture` "wan", bare names,
 * the weights quantized, 1-D tensors F32, and the Conv3d patch embedding added by its
 * fix_5d_tensors.py as a 5-D F32 tensor (ne [2, 2, 1, 16, dim]), which its loader reads in the
 * reversed shape. ComfyUI pads it the same way there (the weight dequantized, then padded), and
 * reads in_dim from the wider tensor.
 */
describe('the same LoRA on a Wan GGUF file with its 5-D F32 patch embedding', () => {
  const str = (value: string): MetaValue => ({ type: 'string', value });
  const sym = () => 2 * rand() - 1;
  const specs = (patchType: string) => [
    { name: 'patch_embedding.weight', ne: [2, 2, 1, 16, dim], type: patchType }, { name: 'patch_embedding.bias', ne: [dim], type: 'F32' },
    { name: 'text_embedding.2.weight', ne: [32, 32], type: 'Q8_0' }, { name: 'head.modulation', ne: [dim, 2, 1], type: 'F32' },
  ];
  const gguf = (patchType: string) => {
    const { tensors, values } = randomTensors(specs(patchType), sym);
    return { bytes: buildGguf({ metadata: [['general.architecture', str('wan')], ['general.quantization_version', { type: 'u32', value: 2 }]], tensors }), values };
  };
  const patchOnly = () => controlLora(32).filter((t) => t.name.includes('patch_embedding'));

  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`writes patch_embedding with ne [2, 2, 1, 32, ${dim}], padded and merged; every other tensor byte for byte, on ${kind}`, async () => {
      const base = gguf('F32');
      const loraBytes = buildSafetensors(patchOnly());
      const { bytes } = await mergeFileInMemory({ backend: backends[kind]!, base: { 'wan2.1-t2v-1.3b-Q8_0.gguf': base.bytes }, adapters: [{ files: { [LORA_FILE]: loraBytes }, weight: 0.7 }] });
      const input = readGguf(base.bytes), out = readGguf(bytes);
      expect(out.tensors.map((t) => [t.name, typeName(t.typeId), t.ne])).toEqual(input.tensors.map((t) => [t.name, typeName(t.typeId), t.name === 'patch_embedding.weight' ? [2, 2, 1, 32, dim] : t.ne]));
      for (const t of input.tensors.filter((x) => x.name !== 'patch_embedding.weight')) {
        expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
      }
      const lora = decodeSafetensors(loraBytes).tensors;
      const delta = product(lora.get(`${D}patch_embedding.lora_B.weight`)!.values, lora.get(`${D}patch_embedding.lora_A.weight`)!.values, dim, R);
      const w0 = base.values.get('patch_embedding.weight')!;
      const want = new Float64Array(dim * 32 * K);
      for (let o = 0; o < dim; o++) for (let i = 0; i < 32 * K; i++) want[o * 32 * K + i] = (i < 16 * K ? w0[o * 16 * K + i] : 0) + 0.7 * delta[o * 32 * K + i];
      expectMerged(tensorValues('F32', out.tensors.find((x) => x.name === 'patch_embedding.weight')!.data), want, 'F32', 'patch_embedding.weight');
    });
  }

  it('a 5-D BF16 patch embedding is refused: ComfyUI-GGUF patches a BF16 tensor only when it dequantizes it, so Wan would read 16 channels from it', async () => {
    expect(await refusalsInMemory({ backend: backends.cpu!, base: { 'wan.gguf': gguf('BF16').bytes }, adapters: [{ files: { [LORA_FILE]: buildSafetensors(patchOnly()) } }] })).toEqual([
      `adapter0: module "${D}patch_embedding": widening patch_embedding.weight (${dim}, 16, 1, 2, 2) to ${32 * K} input columns is not supported on a GGUF base's BF16 tensor: ComfyUI-GGUF patches a BF16 tensor only when it dequantizes it for each step, so the model still reads ${16 * K} input columns from the stored tensor, feeds no control latents and stops on the shape mismatch; it widens one stored in F32 or F16 (merge into such a GGUF, or a safetensors base in F32, F16, BF16 or plain fp8)`,
    ]);
  });

  it('a 5-D tensor of a quantized type is refused as GGML refuses it', async () => {
    const bad = buildGguf({ metadata: [['general.architecture', str('wan')]], tensors: randomTensors([{ name: 'patch_embedding.weight', ne: [32, 2, 1, 16, dim], type: 'Q8_0' }], sym).tensors });
    expect(await refusalsInMemory({ backend: backends.cpu!, base: { 'wan.gguf': bad }, adapters: [{ files: { [LORA_FILE]: buildSafetensors(patchOnly()) } }] })).toEqual([
      'base/wan.gguf: tensor "patch_embedding.weight" has 5 dimensions; GGML allows at most 4 (5 only for an F32, F16 or BF16 tensor, as ComfyUI-GGUF stores a Conv3d)',
    ]);
  });
});

describe('FLUX.1\'s img_in, the other input layer ComfyUI reads a width from', () => {
  it('a ComfyUI file with img_in.reshape_weight (h, 2·in) on flux1-dev.safetensors: img_in padded with zero columns, then w·B·A', async () => {
    const baseBytes = buildSafetensors(fluxDevBfl(rand, 'BF16'), { format: 'pt' });
    const lora: FixtureTensor[] = [
      tensor(rand, `${D}img_in.lora_up.weight`, [FLUX_H, R], 'BF16'), tensor(rand, `${D}img_in.lora_down.weight`, [R, 2 * FLUX_IN], 'BF16'),
      { name: `${D}img_in.reshape_weight`, dtype: 'I64', shape: [2], data: [FLUX_H, 2 * FLUX_IN] },
    ];
    const loraBytes = buildSafetensors(lora);
    const { tensors } = await mergeInMemory({ backend: backends.cpu!, base: { 'flux1-dev.safetensors': baseBytes }, adapters: [{ files: { 'comfy.safetensors': loraBytes }, weight: 1.5 }] });
    const base = decodeSafetensors(baseBytes).tensors, adapter = decodeSafetensors(loraBytes).tensors;
    const delta = product(adapter.get(`${D}img_in.lora_up.weight`)!.values, adapter.get(`${D}img_in.lora_down.weight`)!.values, FLUX_H, R);
    const w0 = base.get('img_in.weight')!.values;
    const want = Float64Array.from(delta, (d, i) => {
      const [o, c] = [Math.floor(i / (2 * FLUX_IN)), i % (2 * FLUX_IN)];
      return (c < FLUX_IN ? w0[o * FLUX_IN + c] : 0) + 1.5 * d;
    });
    expect(tensors.get('img_in.weight')!.shape).toEqual([FLUX_H, 2 * FLUX_IN]);
    expectMerged(tensors.get('img_in.weight')!.values, want, 'BF16', 'img_in.weight');
    for (const [key, b] of base) if (key !== 'img_in.weight') expect(tensors.get(key)!.bytes, key).toEqual(b.bytes);
  });
});

describe('refused, one line naming the tensor', () => {
  const refusals = (base: FixtureTensor[], adapters: FixtureTensor[][], files: Record<string, string> = {}) => refusalsInMemory({
    backend: backends.cpu!, base: { [Object.keys(files).length ? 'diffusion_pytorch_model.safetensors' : WAN_FILE]: buildSafetensors(base), ...files },
    adapters: adapters.map((a, i) => ({ files: { [`control${i}.safetensors`]: buildSafetensors(a) } })),
  });
  const withReshape = (data: number[]) => controlLora(32).map((t) => t.name.endsWith('reshape_weight') ? { ...t, shape: [data.length], data } : t);

  it('a diffusers WanTransformer3DModel folder, whose config.json in_channels would have to change: says to merge into the single file', async () => {
    const diffusers = [...wanDiffusersTensors(rand, 'BF16'), tensor(rand, 'patch_embedding.weight', [dim, 16, 1, 2, 2], 'BF16'), tensor(rand, 'patch_embedding.bias', [dim], 'F32')];
    const config = JSON.stringify({ _class_name: 'WanTransformer3DModel', _diffusers_version: '0.33.0', in_channels: 16, out_channels: 16, patch_size: [1, 2, 2] });
    expect(await refusals(diffusers, [controlLora(32)], { 'config.json': config })).toEqual([
      `adapter0: module "${D}patch_embedding": reshape_weight pads patch_embedding.weight (${dim}, 16, 1, 2, 2) to (${dim}, 32, 1, 2, 2); ComfyUI reads Wan's in_dim from that tensor only in a single file in Wan's own naming (head.modulation beside it), and this base is not one (a diffusers folder's config.json in_channels would have to change): merge into the single-file checkpoint (Comfy-Org's repackaged file, bare or under model.diffusion_model.) instead`,
    ]);
  });

  it('a reshape to a smaller size, or of another rank', async () => {
    expect(await refusals(wanT2v(), [withReshape([dim, 8, 1, 2, 2])])).toEqual([
      `adapter0: module "${D}patch_embedding": reshape_weight pads patch_embedding.weight (${dim}, 16, 1, 2, 2) to (${dim}, 8, 1, 2, 2), smaller in dimension 1; ComfyUI's pad_tensor_to_shape only pads and refuses it`,
    ]);
    expect(await refusals(wanT2v(), [withReshape([dim, 32 * K])])).toEqual([
      `adapter0: module "${D}patch_embedding": reshape_weight pads patch_embedding.weight (${dim}, 16, 1, 2, 2) to (${dim}, 128), another number of dimensions, which ComfyUI's pad_tensor_to_shape refuses`,
    ]);
  });

  it('a reshape that grows the outputs or the kernel, not only the input channels', async () => {
    expect(await refusals(wanT2v(), [withReshape([dim + 2, 32, 1, 2, 2])])).toEqual([
      `adapter0: module "${D}patch_embedding": reshape_weight pads patch_embedding.weight (${dim}, 16, 1, 2, 2) to (${dim + 2}, 32, 1, 2, 2): only the input channels (dimension 1) may grow, not dimension 0 (the outputs, which its bias and the next layer keep)`,
    ]);
    expect(await refusals(wanT2v(), [withReshape([dim, 32, 1, 4, 4])])).toEqual([
      `adapter0: module "${D}patch_embedding": reshape_weight pads patch_embedding.weight (${dim}, 16, 1, 2, 2) to (${dim}, 32, 1, 4, 4): only the input channels (dimension 1) may grow, not dimension 3 (the kernel, which is the model's patch size)`,
    ]);
  });

  it('two adapters with conflicting reshapes of one tensor', async () => {
    expect(await refusals(wanT2v(), [controlLora(32), controlLora(48)])).toEqual([
      `adapter1: module "${D}patch_embedding": reshape_weight pads patch_embedding.weight (${dim}, 16, 1, 2, 2) to (${dim}, 48, 1, 2, 2), but adapter0 (module "${D}patch_embedding") makes it (${dim}, 32, 1, 2, 2) in this merge; merge the two one after the other`,
    ]);
  });

  it('a reshape on a tensor no loader reads a width from (a block\'s Linear)', async () => {
    const lora = [
      tensor(rand, `${D}blocks.0.self_attn.k.lora_A.weight`, [R, 2 * dim], 'F32'), tensor(rand, `${D}blocks.0.self_attn.k.lora_B.weight`, [dim, R], 'F32'),
      { name: `${D}blocks.0.self_attn.k.reshape_weight`, dtype: 'I64', shape: [2], data: [dim, 2 * dim] } as FixtureTensor,
    ];
    expect(await refusals(wanT2v(), [lora])).toEqual([
      `adapter0: module "${D}blocks.0.self_attn.k": reshape_weight pads blocks.0.self_attn.k.weight (${dim}, ${dim}) to (${dim}, ${2 * dim}), but no loader reads a model's width from blocks.0.self_attn.k.weight, so the merged model would not load; ComfyUI's single files take a wider patch_embedding.weight (Wan) or img_in.weight (FLUX.1)`,
    ]);
  });

  it('a reshape_weight beside a DoRA magnitude', async () => {
    const dora = [...controlLora(32), tensor(rand, `${D}patch_embedding.dora_scale`, [1, 32, 1, 1, 1], 'F32')];
    expect(await refusals(wanT2v(), [dora])).toEqual([
      `adapter0/control0.safetensors: module "${D}patch_embedding" has "${D}patch_embedding.reshape_weight" beside a DoRA magnitude: padding a weight DoRA renormalizes is not supported`,
    ]);
  });

  it('a reshape_weight beside no LoRA, beside a bias diff alone, or of floats', async () => {
    expect(await refusals(wanT2v(), [[reshape(32)]])).toEqual([
      `adapter0/control0.safetensors: module "${D}patch_embedding" has "${D}patch_embedding.reshape_weight" and no update of its weight: ComfyUI reads reshape_weight only beside a LoRA of the weight (lora_up/lora_down, lora_A/lora_B) and leaves it unread otherwise; remove it`,
    ]);
    expect(await refusals(wanT2v(), [[tensor(rand, `${D}patch_embedding.diff_b`, [dim], 'F32'), reshape(32)]])).toEqual([
      `adapter0/control0.safetensors: module "${D}patch_embedding" has "${D}patch_embedding.reshape_weight" beside a bias diff alone: ComfyUI reads reshape_weight only beside a LoRA of the weight (lora_up/lora_down, lora_A/lora_B) and leaves it unread otherwise; remove it`,
    ]);
    const floats = controlLora(32).map((t) => t.name.endsWith('reshape_weight') ? { ...t, dtype: 'F32' as const } : t);
    expect(await refusals(wanT2v(), [floats])).toEqual([
      `adapter0/control0.safetensors: module "${D}patch_embedding" has a reshape_weight ComfyUI cannot pad to: ${D}patch_embedding.reshape_weight is F32 (5), not an integer type (torch.zeros takes whole sizes)`,
    ]);
  });
});

describe('the CLI (loramerge merge) on wan2.1_t2v_1.3B_bf16.safetensors', () => {
  const temp = tempDirs();
  afterAll(() => temp.removeAll());
  const baseBytes = buildSafetensors(wanT2v(), { format: 'pt' });
  const loraBytes = buildSafetensors(controlLora(32));

  it('writes patch_embedding (8, 32, 1, 2, 2) in the header and says so; a refused one leaves nothing at --out', async () => {
    const dir = temp.make({ [WAN_FILE]: baseBytes, [LORA_FILE]: loraBytes });
    const out = join(dir, 'wan2.1_t2v_1.3B_tile.safetensors');
    const run = await runCli(['merge', '--base', join(dir, WAN_FILE), '--adapter', join(dir, LORA_FILE), '--weight', '0.9', '--out', out, '--backend', 'cpu']);
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.stdout + run.stderr).toMatch(/note: patch_embedding\.weight is written \(8, 32, 1, 2, 2\), 16 zero input channels added to the base's 16 before the adapter's update \(ComfyUI's reshape_weight\): the merged model takes 32 input channels where the base took 16/);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    const base = decodeSafetensors(baseBytes).tensors;
    expectAll(merged, base, truth(base, decodeSafetensors(loraBytes).tensors, 0.9, 32), 32);

    const small = temp.make({ [WAN_FILE]: baseBytes, [LORA_FILE]: buildSafetensors(controlLora(32).map((t) => t.name.endsWith('reshape_weight') ? { ...t, data: [dim, 8, 1, 2, 2] } : t)) });
    const refused = await runCli(['merge', '--base', join(small, WAN_FILE), '--adapter', join(small, LORA_FILE), '--out', join(small, 'x.safetensors'), '--backend', 'cpu']);
    expect(refused.code).not.toBe(0);
    expect(errorLines(refused.stderr)).toEqual([expect.stringMatching(/module "diffusion_model\.patch_embedding": reshape_weight pads patch_embedding\.weight \(8, 16, 1, 2, 2\) to \(8, 8, 1, 2, 2\), smaller in dimension 1/)]);
    expect(existsSync(join(small, 'x.safetensors'))).toBe(false);
    expect(listDir(small)).toEqual([LORA_FILE, WAN_FILE].sort());
  });

  it('resize refuses the padded module by name rather than drop it, writing nothing', async () => {
    const dir = temp.make({ [LORA_FILE]: loraBytes });
    const resize = await runCli(['resize', '--adapter', join(dir, LORA_FILE), '--rank', '1', '--out', join(dir, 'small.safetensors'), '--backend', 'cpu']);
    expect(resize.code).not.toBe(0);
    expect(errorLines(resize.stderr).join('\n')).toMatch(/module "diffusion_model\.patch_embedding" pads its base weight to \(8, 32, 1, 2, 2\) \(ComfyUI's reshape_weight\), which resize cannot write into a LoRA file/);
    expect(listDir(dir)).toEqual([LORA_FILE]);
  });
});
