/**
 * BFL's FLUX.1 control LoRAs (flux1-canny-dev-lora.safetensors) on ComfyUI-GGUF's FLUX.1-dev files
 * (city96's flux1-dev-Q8_0.gguf, flux1-dev-Q4_K_S.gguf, …): `general.architecture` "flux", BFL's
 * names bare, the blocks' weights quantized, 1-D tensors F32 (convert.py keeps them so), and the
 * embedders — `img_in.weight` (3072, 64) as ne [64, 3072] — left unquantized in their source type
 * (convert.py's first blacklist wrote them F16; its lcpp.patch keeps `img_in.` out of llama.cpp's
 * quantizer, so the K-quants keep the type of the file they were made from: F16, or BF16 for one
 * converted from the BF16 checkpoint).
 *
 * ComfyUI reads the LoRA through comfy/lora_convert.py `convert_lora_bfl_control`: `lora_B.bias` →
 * `diff_b`, the norm scales → `set_weight`, and `img_in.reshape_weight` = (lora_B rows, lora_A
 * columns). ComfyUI-GGUF's GGUFModelPatcher patches a tensor stored F32 or F16 in place when the model
 * loads (comfy.lora.calculate_weight: zero-padded to the reshape, then w·B·A), so img_in becomes
 * (3072, 128) and FLUX.1's `concat_cond` reads 128 / 4 = 32 input channels from it and feeds the
 * control latents: the merged file, img_in written at ne [128, 3072], is that model. A BF16 or
 * quantized tensor it patches only when ops.py dequantizes it for a step, keeping the stored shape:
 * the model reads 64 columns, feeds no control latents and stops on the shape mismatch, so such a
 * base is refused naming it. Float64 truth (flux-control-fixtures.ts), on the CPU and on WebGPU.
 * Dims scaled down as in flux-control-lora.test.ts (hidden 3072 → 8, in_channels 64 → 16): the
 * only block weights whose rows are whole Q8_0 blocks at that size, `img_mlp.2`/`txt_mlp.2`
 * (in 4·hidden = 32), are Q8_0; the other block weights are F16, as in flux1-dev-F16.gguf.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { controlLora, diffusersControlLora, fluxLinears, fluxNorms, H, HEAD, identity, IN, R, truth } from './helpers/flux-control-fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorValues, typeName, type MetaValue } from './helpers/gguf-builder.js';
import { mergeBackends, mergeFileInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectQ8Near } from './helpers/merge-truth.js';

const rand = seededRandom(20261204);
const sym = () => 2 * rand() - 1;
const backends = mergeBackends({ cpu: 'default' });
const str = (value: string): MetaValue => ({ type: 'string', value });
const GGUF_FILE = 'flux1-dev-Q8_0.gguf';
const LORA_FILE = 'flux1-canny-dev-lora.safetensors';

/** A weight's GGUF type in the scaled-down flux1-dev-Q8_0.gguf: embedders and final layer as `imgIn`/F16, blocks Q8_0 where a row is whole blocks. */
function weightType(module: string, inDim: number, imgIn: string): string {
  if (module === 'img_in') return imgIn;
  return /^(double|single)_blocks\./.test(module) && inDim % 32 === 0 ? 'Q8_0' : 'F16';
}

/** The GGUF base (ne reversed from the (out, in) shape), its stored values, and its tensors as truth() reads them. */
function fluxGguf(imgIn: string, imgInColumns = IN) {
  const specs = [
    ...fluxLinears().flatMap(([m, o, i]) => {
      const cols = m === 'img_in' ? imgInColumns : i;
      return [{ name: `${m}.weight`, ne: [cols, o], type: weightType(m, cols, imgIn) }, { name: `${m}.bias`, ne: [o], type: 'F32' }];
    }),
    ...fluxNorms().map((name) => ({ name, ne: [HEAD], type: 'F32' })),
  ];
  const { tensors, values } = randomTensors(specs, sym);
  const bytes = buildGguf({ metadata: [['general.architecture', str('flux')], ['general.quantization_version', { type: 'u32', value: 2 }], ['general.file_type', { type: 'u32', value: 7 }]], tensors });
  const asDecoded = new Map(specs.map((s): [string, DecodedTensor] => [s.name, { dtype: 'F32', shape: s.ne.slice().reverse(), values: values.get(s.name)!, bytes: new Uint8Array() }]));
  return { bytes, specs, asDecoded };
}

/** Every tensor of the merged GGUF in its base's type, img_in at ne [2·IN, H], every value the truth's. */
function expectGgufMerged(out: Uint8Array, base: ReturnType<typeof fluxGguf>, want: Map<string, { shape: number[]; values: Float64Array }>): void {
  const read = readGguf(out);
  expect(read.tensors.map((t) => [t.name, typeName(t.typeId), t.ne])).toEqual(base.specs.map((s) => [s.name, s.type, s.name === 'img_in.weight' ? [2 * IN, H] : s.ne]));
  expect(read.metadata.get('general.architecture')?.value).toBe('flux');
  for (const t of read.tensors) {
    const type = typeName(t.typeId), truthOf = want.get(t.name);
    expect(truthOf, `${t.name} has a truth (every tensor of FLUX.1-dev changes)`).toBeDefined();
    expect(t.ne.slice().reverse(), t.name).toEqual(truthOf!.shape);
    const got = tensorValues(type, t.data);
    if (type === 'Q8_0') expectQ8Near(got, truthOf!.values, t.name);
    else expectMerged(got, truthOf!.values, type as 'F32' | 'F16', t.name);
  }
}

/** The LoRA in ComfyUI's own form, as convert_lora_bfl_control writes it (current ComfyUI: `_norm.scale` → `_norm.set_weight`). */
function comfyConverted(bfl: FixtureTensor[]): FixtureTensor[] {
  const out = bfl.map((t) => ({ ...t, name: `diffusion_model.${t.name.replace('.lora_B.bias', '.diff_b').replace('_norm.scale', '_norm.set_weight')}` }));
  const rows = bfl.find((t) => t.name === 'img_in.lora_B.weight')!.shape[0], cols = bfl.find((t) => t.name === 'img_in.lora_A.weight')!.shape[1];
  return [...out, { name: 'diffusion_model.img_in.reshape_weight', dtype: 'I64', shape: [2], data: [rows, cols] }];
}

const loraTensors = controlLora(rand);
const loraBytes = buildSafetensors(loraTensors);
const lora = decodeSafetensors(loraBytes).tensors;

describe('FLUX.1 control LoRA on a ComfyUI-GGUF FLUX.1-dev file whose img_in is F16 (city96\'s flux1-dev-Q8_0.gguf)', () => {
  const base = fluxGguf('F16');
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`img_in widened to ne [${2 * IN}, ${H}] (zero columns, then w·B·A), LoRA and lora_B.bias added to the F16, Q8_0 and F32 tensors, norms replaced, weight 0.75, on ${kind}`, async () => {
      let notes: string[] = [];
      const { bytes, warnings } = await mergeFileInMemory({
        backend: backends[kind]!, base: { [GGUF_FILE]: base.bytes }, adapters: [{ files: { [LORA_FILE]: loraBytes }, weight: 0.75 }],
        inspect: (prepared) => { notes = prepared.plan.notes; },
      });
      expectGgufMerged(bytes, base, truth(base.asDecoded, lora, 0.75, identity, (n) => n));
      expect(notes).toContainEqual(expect.stringMatching(new RegExp(`^img_in\\.weight is written \\(${H}, ${2 * IN}\\), ${IN} zero columns added to the base's ${IN} before the adapter's update`)));
      expect(warnings.filter((x) => /does not apply to the replaced tensor/.test(x)).length).toBe(fluxNorms().length);
    });
  }

  it('an F32 img_in (another converter\'s float32 embedders) widens the same way, on cpu', async () => {
    const f32 = fluxGguf('F32');
    const { bytes } = await mergeFileInMemory({ backend: backends.cpu!, base: { [GGUF_FILE]: f32.bytes }, adapters: [{ files: { [LORA_FILE]: loraBytes } }] });
    expectGgufMerged(bytes, f32, truth(f32.asDecoded, lora, 1, identity, (n) => n));
  });

  it('ComfyUI\'s converted form (diff_b, set_weight, img_in.reshape_weight (h, 2·in)) merges to the same model, on cpu', async () => {
    const comfyBytes = buildSafetensors(comfyConverted(loraTensors));
    const { bytes } = await mergeFileInMemory({ backend: backends.cpu!, base: { [GGUF_FILE]: base.bytes }, adapters: [{ files: { 'flux1-canny-dev-lora_comfy.safetensors': comfyBytes }, weight: 1.5 }] });
    expectGgufMerged(bytes, base, truth(base.asDecoded, lora, 1.5, identity, (n) => n));
  });

  it('a file\'s own img_in.reshape_weight beside a LoRA of img_in alone: padded and merged, every other tensor byte for byte', async () => {
    const own: FixtureTensor[] = [
      { ...loraTensors.find((t) => t.name === 'img_in.lora_B.weight')!, name: 'diffusion_model.img_in.lora_up.weight' },
      { ...loraTensors.find((t) => t.name === 'img_in.lora_A.weight')!, name: 'diffusion_model.img_in.lora_down.weight' },
      { name: 'diffusion_model.img_in.reshape_weight', dtype: 'I64', shape: [2], data: [H, 2 * IN] },
    ];
    const { bytes } = await mergeFileInMemory({ backend: backends.cpu!, base: { [GGUF_FILE]: base.bytes }, adapters: [{ files: { 'comfy.safetensors': buildSafetensors(own) }, weight: -0.5 }] });
    const input = readGguf(base.bytes), out = readGguf(bytes);
    for (const t of input.tensors.filter((x) => x.name !== 'img_in.weight')) expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
    const img = out.tensors.find((t) => t.name === 'img_in.weight')!;
    expect([typeName(img.typeId), img.ne]).toEqual(['F16', [2 * IN, H]]);
    const w0 = base.asDecoded.get('img_in.weight')!.values, a = lora.get('img_in.lora_A.weight')!.values, b = lora.get('img_in.lora_B.weight')!.values;
    const want = new Float64Array(H * 2 * IN);
    for (let o = 0; o < H; o++) {
      for (let c = 0; c < 2 * IN; c++) {
        let sum = 0;
        for (let k = 0; k < R; k++) sum += b[o * R + k] * a[k * 2 * IN + c];
        want[o * 2 * IN + c] = (c < IN ? w0[o * IN + c] : 0) - 0.5 * sum;
      }
    }
    expectMerged(tensorValues('F16', img.data), want, 'F16', 'img_in.weight');
  });
});

describe('refused where ComfyUI-GGUF would not widen img_in, one line naming the tensor', () => {
  const deferred = (type: string, cols: number) => `widening img_in.weight (${H}, ${cols}) to ${2 * cols} input columns is not supported on a GGUF base's ${type} tensor: ComfyUI-GGUF patches a ${type} tensor only when it dequantizes it for each step, so the model still reads ${cols} input columns from the stored tensor, feeds no control latents and stops on the shape mismatch; it widens one stored in F32 or F16 (merge into such a GGUF, or a safetensors base in F32, F16, BF16 or plain fp8)`;

  it('a BF16 img_in (a file converted from the BF16 checkpoint), BFL\'s file or ComfyUI\'s converted form', async () => {
    const bf16 = fluxGguf('BF16');
    expect(await refusalsInMemory({ backend: backends.cpu!, base: { 'flux1-dev-BF16.gguf': bf16.bytes }, adapters: [{ files: { [LORA_FILE]: loraBytes } }] }))
      .toEqual([`adapter0: module "diffusion_model.img_in": ${deferred('BF16', IN)}`]);
    expect(await refusalsInMemory({ backend: backends.cpu!, base: { 'flux1-dev-BF16.gguf': bf16.bytes }, adapters: [{ files: { 'comfy.safetensors': buildSafetensors(comfyConverted(loraTensors)) } }] }))
      .toEqual([`adapter0: module "diffusion_model.img_in": ${deferred('BF16', IN)}`]);
  });

  it('a quantized img_in (Q8_0, 32 columns: whole blocks), the LoRA twice as wide', async () => {
    const q8 = fluxGguf('Q8_0', 2 * IN);
    const wide = controlLora(rand).map((t) => t.name === 'img_in.lora_A.weight' ? { ...t, shape: [R, 4 * IN], data: Array.from({ length: R * 4 * IN }, () => 0.25) } : t);
    expect(await refusalsInMemory({ backend: backends.cpu!, base: { [GGUF_FILE]: q8.bytes }, adapters: [{ files: { [LORA_FILE]: buildSafetensors(wide) } }] }))
      .toEqual([`adapter0: module "diffusion_model.img_in": ${deferred('Q8_0', 2 * IN)}`]);
  });

  it('diffusers\' control LoRA (transformer.x_embedder twice as wide): ComfyUI has no reshape_weight for it', async () => {
    const base = fluxGguf('F16');
    const refusals = await refusalsInMemory({ backend: backends.cpu!, base: { [GGUF_FILE]: base.bytes }, adapters: [{ files: { 'pytorch_lora_weights.safetensors': buildSafetensors(diffusersControlLora(rand, { bias: true })) } }] });
    expect(refusals).toEqual([
      `adapter0: module "transformer.x_embedder": widening img_in.weight (${H}, ${IN}) to ${2 * IN} input columns is not supported on a GGUF base: ComfyUI-GGUF, which loads it, widens a weight only by ComfyUI's reshape_weight (a file's own, or the one ComfyUI gives BFL's control LoRA), and ComfyUI does not widen for a diffusers LoRA of another width (it reports the shape mismatch and leaves the weight as it is); merge into a safetensors base in F32, F16, BF16 or plain fp8`,
    ]);
  });
});

describe('the CLI (loramerge merge) on flux1-dev-Q8_0.gguf', () => {
  const temp = tempDirs();
  afterAll(() => temp.removeAll());

  it('writes the merged GGUF with img_in at ne [2·in, h] and says so; a BF16 img_in is refused and nothing is written', async () => {
    const base = fluxGguf('F16');
    const dir = temp.make({ [GGUF_FILE]: base.bytes, [LORA_FILE]: loraBytes });
    const out = join(dir, 'flux1-canny-dev-Q8_0.gguf');
    const run = await runCli(['merge', '--base', join(dir, GGUF_FILE), '--adapter', join(dir, LORA_FILE), '--out', out, '--backend', 'cpu']);
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.stdout + run.stderr).toMatch(new RegExp(`note: img_in\\.weight is written \\(${H}, ${2 * IN}\\), ${IN} zero columns added to the base's ${IN} before the adapter's update: the merged model takes ${2 * IN} input channels where the base took ${IN}`));
    expectGgufMerged(new Uint8Array(readFileSync(out)), base, truth(base.asDecoded, lora, 1, identity, (n) => n));

    const bf16 = temp.make({ 'flux1-dev-BF16.gguf': fluxGguf('BF16').bytes, [LORA_FILE]: loraBytes });
    const refused = await runCli(['merge', '--base', join(bf16, 'flux1-dev-BF16.gguf'), '--adapter', join(bf16, LORA_FILE), '--out', join(bf16, 'x.gguf'), '--backend', 'cpu']);
    expect(refused.code).not.toBe(0);
    expect(errorLines(refused.stderr)).toEqual([expect.stringMatching(/module "diffusion_model\.img_in": widening img_in\.weight \(8, 16\) to 32 input columns is not supported on a GGUF base's BF16 tensor: ComfyUI-GGUF patches a BF16 tensor only when it dequantizes it/)]);
    expect(existsSync(join(bf16, 'x.gguf'))).toBe(false);
  });
});
