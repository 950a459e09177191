/**
 * BFL's FLUX.1 control LoRAs (black-forest-labs/FLUX.1-Canny-dev-lora `flux1-canny-dev-lora.safetensors`,
 * FLUX.1-Depth-dev-lora): BFL names without a prefix, a LoRA on every Linear with `lora_B.bias`,
 * no α, BF16; the q/k norm scales in full; `img_in.lora_A` with twice the base's input channels
 * (128 for FLUX.1-dev's 64). Merged as BFL's loader, diffusers and ComfyUI apply them, checked
 * against float64 truth written here, on the CPU and on WebGPU:
 * W' = W + w·B·A, b' = b + w·lora_B.bias (scale 1), norm scales replaced whatever w, and img_in
 * W' = [W | 0] + w·B·A, written wider than the base's.
 * Dims scaled down (hidden 3072 → 8, head 128 → 4, in_channels 64 → 16, text 4096 → 12,
 * pooled 768 → 10, time 256 → 6, rank 128 → 4), keeping their ratios where the model has them.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { errorLines, runCli } from './helpers/cli.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectMerged } from './helpers/expect-merged.js';
import {
  controlLora, diffusersNorm, diffusersRows, DOUBLE, expectAll, fluxDevBfl, fluxDevDiffusers, fluxNorms, H, HEAD, identity, IN, R, SINGLE, truth, TXT,
} from './helpers/flux-control-fixtures.js';

const rand = seededRandom(20261203);

const backends = mergeBackends({ cpu: 'default' });
const loraBytes = buildSafetensors(controlLora(rand));
const lora = decodeSafetensors(loraBytes).tensors;

describe('FLUX.1 control LoRA on flux1-dev.safetensors', () => {
  for (const [dtype, w] of [['BF16', 1], ['F8_E4M3', 0.75]] as const) {
    const baseBytes = buildSafetensors(fluxDevBfl(rand, dtype), { format: 'pt' });
    const base = decodeSafetensors(baseBytes).tensors;
    for (const kind of ['cpu', 'webgpu'] as const) {
      it(`${dtype} base, weight ${w}: LoRA and lora_B.bias added, norms replaced, img_in widened from ${IN} to ${2 * IN} columns, on ${kind}`, async () => {
        const { tensors, warnings } = await mergeInMemory({
          backend: backends[kind]!, base: { 'flux1-dev.safetensors': baseBytes },
          adapters: [{ files: { 'flux1-canny-dev-lora.safetensors': loraBytes }, weight: w }],
        });
        expectAll(tensors, base, truth(base, lora, w, identity, (n) => n));
        expect(tensors.get('img_in.weight')!.shape).toEqual([H, 2 * IN]);
        const normWarnings = warnings.filter((x) => /does not apply to the replaced tensor/.test(x));
        expect(normWarnings.length).toBe(w === 1 ? 0 : fluxNorms().length);
      });
    }
  }
});

describe('FLUX.1 control LoRA on other BFL-named bases', () => {
  it('Comfy-Org\'s checkpoint form (`model.diffusion_model.` + BFL names): lands the same, on cpu', async () => {
    const P = 'model.diffusion_model.';
    const bare = fluxDevBfl(rand, 'BF16');
    const baseBytes = buildSafetensors(bare.map((t) => ({ ...t, name: P + t.name })), { format: 'pt' });
    const { tensors } = await mergeInMemory({ backend: backends.cpu!, base: { 'flux1-dev.safetensors': baseBytes }, adapters: [{ files: { 'flux1-canny-dev-lora.safetensors': loraBytes } }] });
    const base = decodeSafetensors(buildSafetensors(bare)).tensors;
    const unprefixed = new Map([...tensors].map(([k, v]) => [k.slice(P.length), v]));
    expectAll(unprefixed, base, truth(base, lora, 1, identity, (n) => n));
  });

  it('a base already 2× wide (FLUX.1-Canny-dev itself): the LoRA applies without widening, as diffusers and ComfyUI apply it', async () => {
    const bare = fluxDevBfl(rand, 'BF16').map((t) => t.name === 'img_in.weight' ? tensor(rand, t.name, [H, 2 * IN], 'BF16') : t);
    const baseBytes = buildSafetensors(bare, { format: 'pt' });
    const { tensors } = await mergeInMemory({ backend: backends.cpu!, base: { 'flux1-canny-dev.safetensors': baseBytes }, adapters: [{ files: { 'flux1-canny-dev-lora.safetensors': loraBytes } }] });
    const base = decodeSafetensors(baseBytes).tensors;
    // The truth pads a base of IN columns; this one has 2·IN, so its img_in is added to as it is.
    const want = truth(new Map([...base].map(([k, v]) => [k, k === 'img_in.weight' ? { ...v, shape: [H, IN] } : v])), lora, 1, identity, (n) => n);
    const w0 = base.get('img_in.weight')!.values, a = lora.get('img_in.lora_A.weight')!.values, b = lora.get('img_in.lora_B.weight')!.values;
    want.set('img_in.weight', { shape: [H, 2 * IN], values: Float64Array.from(w0, (x, i) => {
      const [o, c] = [Math.floor(i / (2 * IN)), i % (2 * IN)];
      let sum = 0;
      for (let k = 0; k < R; k++) sum += b[o * R + k] * a[k * 2 * IN + c];
      return x + sum;
    }) });
    expectAll(tensors, base, want);
  });
});

describe('FLUX.1 control LoRA on a diffusers FluxTransformer2DModel folder', () => {
  const baseBytes = buildSafetensors(fluxDevDiffusers(rand), { format: 'pt' });
  const base = decodeSafetensors(baseBytes).tensors;
  const config = { _class_name: 'FluxTransformer2DModel', _diffusers_version: '0.30.0.dev0', attention_head_dim: HEAD, guidance_embeds: true, in_channels: IN, num_layers: DOUBLE, num_single_layers: SINGLE };
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`lands as diffusers converts it (qkv and linear1 split, final modulation halves swapped), x_embedder widened, on ${kind}`, async () => {
      const { tensors } = await mergeInMemory({
        backend: backends[kind]!, base: { 'diffusion_pytorch_model.safetensors': baseBytes, 'config.json': JSON.stringify(config) },
        adapters: [{ files: { 'flux1-canny-dev-lora.safetensors': loraBytes }, weight: 1.25 }],
      });
      expectAll(tensors, base, truth(base, lora, 1.25, diffusersRows, diffusersNorm));
    });
  }

  it('config.json says in_channels 2× and keeps out_channels at the old width (diffusers reads out_channels = in_channels when absent)', async () => {
    const prepared = await prepareMerge(memoryInputFileSet({ 'diffusion_pytorch_model.safetensors': baseBytes, 'config.json': JSON.stringify(config) }, 'FLUX.1-dev'),
      [{ files: memoryInputFileSet({ 'flux1-canny-dev-lora.safetensors': loraBytes }, 'canny'), weight: 1 }]);
    try {
      expect(prepared.plan.problems).toEqual([]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: backends.cpu! });
      const files = new Map(output.files().map((f) => [f.path, f.blob]));
      const written = JSON.parse(await files.get('config.json')!.text());
      expect(written).toEqual({ ...config, in_channels: 2 * IN, out_channels: IN });
    } finally {
      await prepared.close();
    }
  });

  it('refuses a config.json whose in_channels is not x_embedder\'s width', async () => {
    expect(await refusalsInMemory({
      backend: backends.cpu!, base: { 'diffusion_pytorch_model.safetensors': baseBytes, 'config.json': JSON.stringify({ ...config, in_channels: 64 }) },
      adapters: [{ files: { 'flux1-canny-dev-lora.safetensors': loraBytes } }],
    })).toEqual(['adapter0: widens x_embedder.weight to 32 input columns, but config.json says in_channels 64, not the base\'s 16']);
  });

describe('ComfyUI\'s own set_weight names (its convert_lora_bfl_control output, old and current)', () => {
  const baseBytes = buildSafetensors(fluxDevBfl(rand, 'BF16'), { format: 'pt' });
  const base = decodeSafetensors(baseBytes).tensors;
  const current = tensor(rand, 'diffusion_model.double_blocks.1.txt_attn.norm.key_norm.scale.set_weight', [HEAD], 'BF16');
  const older = tensor(rand, 'diffusion_model.single_blocks.0.norm.query_norm.set_weight', [HEAD], 'BF16');
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`replace the tensors they name whatever the weight, beside a LoRA, on ${kind}`, async () => {
      const lora = [tensor(rand, 'diffusion_model.txt_in.lora_down.weight', [R, TXT], 'BF16'), tensor(rand, 'diffusion_model.txt_in.lora_up.weight', [H, R], 'BF16')];
      const bytes = buildSafetensors([current, older, ...lora]);
      const adapter = decodeSafetensors(bytes).tensors;
      const { tensors, warnings } = await mergeInMemory({
        backend: backends[kind]!, base: { 'flux1-dev.safetensors': baseBytes }, adapters: [{ files: { 'comfy.safetensors': bytes }, weight: 0.5 }],
      });
      expect(tensors.get('double_blocks.1.txt_attn.norm.key_norm.scale')!.values).toEqual(adapter.get(current.name)!.values);
      expect(tensors.get('single_blocks.0.norm.query_norm.scale')!.values).toEqual(adapter.get(older.name)!.values);
      const down = adapter.get('diffusion_model.txt_in.lora_down.weight')!.values, up = adapter.get('diffusion_model.txt_in.lora_up.weight')!.values;
      const w0 = base.get('txt_in.weight')!.values;
      const want = Float64Array.from(w0, (x, i) => {
        const [o, c] = [Math.floor(i / TXT), i % TXT];
        let sum = 0;
        for (let k = 0; k < R; k++) sum += up[o * R + k] * down[k * TXT + c];
        return x + 0.5 * sum;
      });
      expectMerged(tensors.get('txt_in.weight')!.values, want, 'BF16', 'txt_in.weight');
      for (const [key, b] of base) if (!['double_blocks.1.txt_attn.norm.key_norm.scale', 'single_blocks.0.norm.query_norm.scale', 'txt_in.weight'].includes(key)) expect(tensors.get(key)!.bytes, key).toEqual(b.bytes);
      expect(warnings.filter((x) => /weight 0\.5 does not apply to the replaced tensor .* \(set_weight: ComfyUI, diffusers and BFL copy it whatever the weight\)/.test(x)).length).toBe(2);
    });
  }
});

});

describe('FLUX.1 control LoRA on a diffusers FluxPipeline folder, transformer in two shards', () => {
  const all = fluxDevDiffusers(rand);
  const first = all.filter((t) => t.name.startsWith('x_embedder') || t.name.startsWith('transformer_blocks.0.'));
  const second = all.filter((t) => !first.includes(t));
  const shardNames = ['diffusion_pytorch_model-00001-of-00002.safetensors', 'diffusion_pytorch_model-00002-of-00002.safetensors'];
  const shards = [buildSafetensors(first, { format: 'pt' }), buildSafetensors(second, { format: 'pt' })];
  const config = { _class_name: 'FluxTransformer2DModel', _diffusers_version: '0.30.0.dev0', in_channels: IN, out_channels: null, guidance_embeds: true };
  const totalSize = (parts: Uint8Array[]) => parts.reduce((n, b) => n + [...decodeSafetensors(b).tensors.values()].reduce((m, t) => m + t.bytes.length, 0), 0);
  const files: Record<string, Uint8Array | string> = {
    'model_index.json': JSON.stringify({ _class_name: 'FluxPipeline', transformer: ['diffusers', 'FluxTransformer2DModel'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'] }),
    'scheduler/scheduler_config.json': JSON.stringify({ _class_name: 'FlowMatchEulerDiscreteScheduler' }),
    'transformer/config.json': JSON.stringify(config),
    'transformer/diffusion_pytorch_model.safetensors.index.json': JSON.stringify({
      metadata: { total_size: totalSize(shards) },
      weight_map: Object.fromEntries([...first.map((t) => [t.name, shardNames[0]]), ...second.map((t) => [t.name, shardNames[1]])]),
    }),
    [`transformer/${shardNames[0]}`]: shards[0], [`transformer/${shardNames[1]}`]: shards[1],
  };
  it('writes the widened x_embedder in its shard\'s header, the index\'s total size and transformer/config.json to match', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(files, 'FLUX.1-dev'), [{ files: memoryInputFileSet({ 'flux1-depth-dev-lora.safetensors': loraBytes }, 'depth'), weight: 1 }]);
    try {
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.notes).toContainEqual(expect.stringMatching(/^transformer\.x_embedder\.weight is written \(8, 32\), 16 zero columns added .*; transformer\/config\.json in_channels follows \(16 → 32\), out_channels written as 16$/));
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: backends.cpu! });
      const out = new Map(output.files().map((f) => [f.path, f.blob]));
      const bytes = await Promise.all(shardNames.map(async (n) => new Uint8Array(await out.get(`transformer/${n}`)!.arrayBuffer())));
      const merged = new Map([...decodeSafetensors(bytes[0]).tensors, ...decodeSafetensors(bytes[1]).tensors]);
      const base = new Map([...decodeSafetensors(shards[0]).tensors, ...decodeSafetensors(shards[1]).tensors]);
      expectAll(merged, base, truth(base, lora, 1, diffusersRows, diffusersNorm));
      expect(JSON.parse(await out.get('transformer/config.json')!.text())).toEqual({ ...config, in_channels: 2 * IN, out_channels: IN });
      const index = JSON.parse(await out.get('transformer/diffusion_pytorch_model.safetensors.index.json')!.text());
      expect(index.metadata.total_size).toBe(totalSize(bytes));
      expect(await out.get('scheduler/scheduler_config.json')!.text()).toBe(files['scheduler/scheduler_config.json']);
    } finally {
      await prepared.close();
    }
  });
});

describe('refused, one line naming the tensor', () => {
  const refusals = (base: FixtureTensor[], adapter: FixtureTensor[]) => refusalsInMemory({
    backend: backends.cpu!, base: { 'flux1-dev.safetensors': buildSafetensors(base) },
    adapters: [{ files: { 'flux1-canny-dev-lora.safetensors': buildSafetensors(adapter) } }],
  });

  it('a norm scale of another shape than the base\'s', async () => {
    const adapter = controlLora(rand).map((t) => t.name === 'single_blocks.1.norm.key_norm.scale' ? tensor(rand, t.name, [2 * HEAD], 'BF16') : t);
    expect(await refusals(fluxDevBfl(rand, 'BF16'), adapter)).toEqual([
      'adapter0: module "single_blocks.1.norm.key_norm.scale": set_weight single_blocks.1.norm.key_norm.scale (8) does not match base single_blocks.1.norm.key_norm.scale (4)',
    ]);
  });

  it('an img_in already wider than the LoRA widens it to', async () => {
    const base = fluxDevBfl(rand, 'BF16').map((t) => t.name === 'img_in.weight' ? tensor(rand, t.name, [H, 3 * IN], 'BF16') : t);
    expect(await refusals(base, controlLora(rand))).toEqual([
      expect.stringMatching(/module "diffusion_model\.img_in": base img_in\.weight \(8, 48\) is already wider than the 32 input columns the adapter widens it to$/),
    ]);
  });

  // e4m3fn files are merged in real values and quantized again; e5m2 ones in place (code + ΔW / scale), which the plan refuses itself.
  for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
    it(`an img_in stored as scaled fp8 (${dtype} code × scale_weight): widening it is refused, naming the weight`, async () => {
      const base = fluxDevBfl(rand, dtype);
      const scales = base.filter((t) => t.dtype === dtype).map((t): FixtureTensor => ({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [1 / 64] }));
      expect(await refusals([...base, ...scales, { name: 'scaled_fp8', dtype, shape: [0], data: [] }], controlLora(rand))).toEqual([
        expect.stringMatching(/module "diffusion_model\.img_in": widening img_in\.weight \(8, 16\) to 32 input columns is not supported on the scaled fp8 weight img_in\.weight.*; merge into a safetensors base in F32, F16, BF16 or plain fp8$/),
      ]);
    });
  }

  it('a plain LoRA on img_in after the control LoRA has widened it', async () => {
    const plain = [tensor(rand, 'lora_unet_img_in.lora_down.weight', [R, IN], 'BF16'), tensor(rand, 'lora_unet_img_in.lora_up.weight', [H, R], 'BF16')];
    expect(await refusalsInMemory({
      backend: backends.cpu!, base: { 'flux1-dev.safetensors': buildSafetensors(fluxDevBfl(rand, 'BF16')) },
      adapters: [{ files: { 'flux1-canny-dev-lora.safetensors': loraBytes } }, { files: { 'style.safetensors': buildSafetensors(plain) } }],
    })).toEqual([expect.stringMatching(/^adapter1: module "lora_unet_img_in": ΔW \(8, 16\) has the base's width, but img_in\.weight is widened to 32 columns in this merge; adapter0 \(module "diffusion_model\.img_in"\) updates it at 32 columns, merge the two one after the other$/)]);
  });

  it('a crafted img_in (lora_A 3-D, NaN in lora_A or lora_B.bias) or NaN in a norm scale: one line naming the tensor', async () => {
    const crafted = (name: string, edit: (t: FixtureTensor) => FixtureTensor) => controlLora(rand).map((t) => t.name === name ? edit(t) : t);
    const nan = (t: FixtureTensor): FixtureTensor => ({ ...t, data: (t.data as number[]).map((v, i) => i === 1 ? NaN : v) });
    const base = fluxDevBfl(rand, 'BF16');
    expect(await refusals(base, crafted('img_in.lora_A.weight', (t) => ({ ...t, shape: [R, 2 * IN, 1] })))).toEqual([
      'adapter0: module "diffusion_model.img_in": ΔW (8, 32, 1) does not fit base img_in.weight (8, 16): 3-D factors fit no layer with a 2-D weight (expected 2-D factors, or a 1×1 conv\'s 4-D ones)',
    ]);
    expect(await refusals(base, crafted('img_in.lora_A.weight', nan))).toEqual([
      'adapter0 module "diffusion_model.img_in": factor img_in.lora_A.weight holds 1 NaN or Inf value (row 0); the adapter file is broken (base/flux1-dev.safetensors: tensor "img_in.weight")',
    ]);
    expect(await refusals(base, crafted('img_in.lora_B.bias', nan))).toEqual(['adapter0 module "diffusion_model.img_in": img_in.lora_B.bias holds 1 NaN or Inf value (element 1); the adapter file is broken']);
    // A replaced tensor is named as one (it was called a tensor "saved with the adapter").
    expect(await refusals(base, crafted('single_blocks.0.norm.key_norm.scale', nan))).toEqual([
      'adapter0: tensor "single_blocks.0.norm.key_norm.scale" (replacing single_blocks.0.norm.key_norm.scale, set_weight) holds 1 NaN or Inf value (element 1); the adapter file is broken',
    ]);
  });

  it('a base bias holding NaN that lora_B.bias updates: the base is named as broken, not an overflow', async () => {
    const nan = (t: FixtureTensor): FixtureTensor => ({ ...t, data: (t.data as number[]).map((v, i) => i === 3 ? NaN : v) });
    const base = fluxDevBfl(rand, 'BF16').map((t) => t.name === 'txt_in.bias' ? nan(t) : t);
    expect(await refusals(base, controlLora(rand))).toEqual([
      'base/flux1-dev.safetensors: tensor "txt_in.bias" already holds 1 NaN or Inf value in the base (element 3), and the merge updates it; the base file is broken: use an intact copy of the base',
    ]);
  });

  it('a norm scale set_weight replaces that does not fit --dtype f16 (1e5 in BF16): refused with the fix, not written as Inf', async () => {
    const big = (t: FixtureTensor): FixtureTensor => ({ ...t, data: (t.data as number[]).map((v, i) => i === 2 ? 1e5 : v) });
    const adapter = controlLora(rand).map((t) => t.name === 'single_blocks.0.norm.key_norm.scale' ? big(t) : t);
    expect(await refusalsInMemory({
      backend: backends.cpu!, base: { 'flux1-dev.safetensors': buildSafetensors(fluxDevBfl(rand, 'BF16')) },
      adapters: [{ files: { 'flux1-canny-dev-lora.safetensors': buildSafetensors(adapter) } }], outDtype: 'f16',
    })).toEqual([
      'adapter0: tensor "single_blocks.0.norm.key_norm.scale" (replacing single_blocks.0.norm.key_norm.scale, set_weight): values overflow F16 (largest finite 65504) when converted; write with --dtype bf16 or f32',
    ]);
  });

  it('an img_in of other rows than the LoRA\'s', async () => {
    const adapter = controlLora(rand).map((t) => t.name === 'img_in.lora_B.weight' ? tensor(rand, t.name, [2 * H, R], 'BF16') : t.name === 'img_in.lora_B.bias' ? tensor(rand, t.name, [2 * H], 'BF16') : t);
    expect(await refusals(fluxDevBfl(rand, 'BF16'), adapter)).toEqual([expect.stringMatching(/module "diffusion_model\.img_in": ΔW \(16, 32\) does not fit base img_in\.weight \(8, 32\)/)]);
  });
});

describe('the CLI (loramerge merge) on flux1-dev.safetensors', () => {
  const temp = tempDirs();
  afterAll(() => temp.removeAll());
  const baseBytes = buildSafetensors(fluxDevBfl(rand, 'BF16'), { format: 'pt' });

  it('writes img_in (8, 32) in the header and says so; a refused one writes nothing', async () => {
    const dir = temp.make({ 'flux1-dev.safetensors': baseBytes, 'flux1-canny-dev-lora.safetensors': loraBytes });
    const out = join(dir, 'flux1-canny-merged.safetensors');
    const run = await runCli(['merge', '--base', join(dir, 'flux1-dev.safetensors'), '--adapter', join(dir, 'flux1-canny-dev-lora.safetensors'), '--out', out, '--backend', 'cpu']);
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.stdout + run.stderr).toMatch(/note: img_in\.weight is written \(8, 32\), 16 zero columns added to the base's 16 before the adapter's update: the merged model takes 32 input channels where the base took 16/);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    const base = decodeSafetensors(baseBytes).tensors;
    expectAll(merged, base, truth(base, lora, 1, identity, (n) => n));

    const wide = temp.make({ 'flux1-dev.safetensors': buildSafetensors(fluxDevBfl(rand, 'BF16').map((t) => t.name === 'img_in.weight' ? tensor(rand, t.name, [H, 3 * IN], 'BF16') : t)), 'flux1-canny-dev-lora.safetensors': loraBytes });
    const refused = await runCli(['merge', '--base', join(wide, 'flux1-dev.safetensors'), '--adapter', join(wide, 'flux1-canny-dev-lora.safetensors'), '--out', join(wide, 'x.safetensors'), '--backend', 'cpu']);
    expect(refused.code).not.toBe(0);
    expect(errorLines(refused.stderr)).toEqual([expect.stringMatching(/module "diffusion_model\.img_in": base img_in\.weight \(8, 48\) is already wider than the 32 input columns the adapter widens it to/)]);
    expect(existsSync(join(wide, 'x.safetensors'))).toBe(false);
  });

  it('resize and combine refuse a control LoRA (widened img_in) and a ComfyUI set_weight rather than drop them, writing nothing', async () => {
    const comfy = buildSafetensors([
      tensor(rand, 'diffusion_model.single_blocks.0.norm.query_norm.scale.set_weight', [HEAD], 'BF16'),
      tensor(rand, 'diffusion_model.txt_in.lora_down.weight', [R, TXT], 'BF16'), tensor(rand, 'diffusion_model.txt_in.lora_up.weight', [H, R], 'BF16'),
    ]);
    const dir = temp.make({ 'flux1-canny-dev-lora.safetensors': loraBytes, 'comfy.safetensors': comfy });
    const resize = await runCli(['resize', '--adapter', join(dir, 'comfy.safetensors'), '--rank', '2', '--out', join(dir, 'small.safetensors'), '--backend', 'cpu']);
    expect(resize.code).not.toBe(0);
    expect(errorLines(resize.stderr).join('\n')).toMatch(/"diffusion_model\.single_blocks\.0\.norm\.query_norm\.scale\.set_weight" replaces single_blocks\.0\.norm\.query_norm\.scale \(ComfyUI's set_weight\), which resize cannot write into a LoRA file/);
    const combine = await runCli(['combine', '--adapter', join(dir, 'flux1-canny-dev-lora.safetensors'), '--adapter', join(dir, 'comfy.safetensors'), '--method', 'cat', '--out', join(dir, 'both.safetensors'), '--backend', 'cpu']);
    expect(combine.code).not.toBe(0);
    expect(combine.stderr).toMatch(/module "diffusion_model\.img_in" widens its base weight to 32 input columns \(a FLUX\.1 control LoRA's img_in\), which combine cannot write into a LoRA file/);
    expect(existsSync(join(dir, 'small.safetensors')) || existsSync(join(dir, 'both.safetensors'))).toBe(false);
  });
});
